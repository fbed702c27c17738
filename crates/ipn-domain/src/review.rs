//! What a person can do about a review item, and what doing it means.
//!
//! An exception in the review queue ([`ReviewKind`]) is closed by a
//! person with one [`ReviewAction`]. Which actions fit which kind is a
//! finance decision, written once in [`allowed_actions`] (an exhaustive
//! match: a new kind does not compile until someone decides what may be
//! done about it). What an action does to the books is decided here too,
//! without I/O: [`effect`] says which path a resolution takes (record only,
//! apply a repeated notification, apply an orphan's notifications to an
//! order, record a refund made outside the processor, book a payment of
//! the wrong amount or a refund in another currency, write off), and
//! [`refund_outside`] computes the facts after such a refund, so that the
//! money it moves comes from [`crate::journal::movements`] like
//! any notification's.
//!
//! The vocabulary, as a finance person reads it:
//!
//! - **`accept_as_is`**: the exception is real and the books are right as
//!   they stand (a chargeback lost, a processor flag reviewed, a settlement
//!   amount that is the true one). Nothing is booked, but for a payment of
//!   the wrong amount (`amount_mismatch`): the amount the processor
//!   captured is booked into `paid` ([`book_capture`]), nothing written
//!   off, the order sold for what was paid.
//! - **`apply_repeat`**: a repeated payment, refund, reversal or
//!   chargeback (without `MESSAGE_ID`) is a *genuine* second one: its
//!   notification is applied as a notification of its own, through the
//!   state machine (`possible_second_event`, and `late_repeat` raised
//!   before it).
//! - **`mark_refunded_outside`**: the shopper got the money back outside
//!   the processor (a bank transfer, a voucher). For a charge that is
//!   still held (a double charge, an order canceled and paid) a refund of
//!   what the payment still holds is recorded, with its money movement;
//!   for a refund the processor never debited it records that no debit
//!   will come.
//! - **`link_order`**: an orphan payment belongs to an order: its
//!   notifications are applied to that order (the one they name, now that
//!   it exists, or another one a person chose), through the state machine.
//! - **`write_off`**: the difference at stake is written off to the
//!   write-off account (a loss, or a gain the processor paid that nothing
//!   booked). The resolution row keeps what was written off, signed
//!   ([`write_off_movement`] books it): never a payment's amount, the
//!   difference ([`line_write_off`], [`payout_write_off`], the rest of an
//!   order's price for a short payment, which is booked as captured first).
//! - **`collect_difference`**: a payment of the wrong amount is booked as
//!   captured and the rest of the order's price is still owed: the order
//!   stays `mismatch`, with a new item that says how much.
//! - **`book_refund`**: a refund in another currency than its order's is
//!   booked in its own currency ([`book_foreign_refund`]); the order keeps
//!   its state.
//! - **`dismiss`**: not an exception after all (a false alarm, test
//!   traffic, already handled): nothing is booked. Every kind allows it.

use strum::{EnumCount, EnumString, IntoStaticStr, VariantArray};

use crate::money::Money;
use crate::reconcile::{OrderFacts, ReviewKind};
use crate::status::{UNKNOWN_VALUE_MAX_CHARS, clip_for_display};

/// What a person does to resolve a review item.
///
/// Stored in `review_resolutions.action` and typed on the command line as
/// the snake_case name (`mark_refunded_outside`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    IntoStaticStr,
    EnumString,
    strum::Display,
    VariantArray,
    EnumCount,
)]
#[strum(
    serialize_all = "snake_case",
    parse_err_ty = UnknownReviewAction,
    parse_err_fn = UnknownReviewAction::new
)]
pub enum ReviewAction {
    /// The exception is real and the books are right as they stand.
    AcceptAsIs,
    /// A late repeat is a genuine second refund or chargeback: apply it.
    ApplyRepeat,
    /// The shopper was refunded outside the processor.
    MarkRefundedOutside,
    /// The orphan payment belongs to an order: apply it there.
    LinkOrder,
    /// The amount at stake is settled outside the order's books.
    WriteOff,
    /// Not an exception after all: nothing to book.
    Dismiss,
    /// A payment of the wrong amount: book what the processor captured,
    /// and keep the order open for the difference, still to collect.
    CollectDifference,
    /// A refund in another currency than its order's: book it in its own
    /// currency.
    BookRefund,
    /// The processor reinstated a chargeback (its settlement credited it
    /// back) that no notice reinstated: book it as a dispute won.
    BookReinstatement,
}

/// An action name this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown review action `{0}`")]
pub struct UnknownReviewAction(String);

impl UnknownReviewAction {
    fn new(value: &str) -> Self {
        Self(clip_for_display(value, UNKNOWN_VALUE_MAX_CHARS))
    }
}

string_forms!(ReviewAction, UnknownReviewAction, "review action");

impl ReviewAction {
    /// What the action means, in one line (for `--help` and the console).
    pub fn describe(self) -> &'static str {
        match self {
            Self::AcceptAsIs => {
                "the exception is real and the books are right as they stand (a payment of the \
                 wrong amount: book what the processor captured, nothing written off)"
            }
            Self::ApplyRepeat => {
                "the late repeat is a genuine second refund or chargeback: apply its notification"
            }
            Self::MarkRefundedOutside => {
                "the shopper was refunded outside the processor: record the refund"
            }
            Self::LinkOrder => {
                "apply the orphan payment's notifications to an order (--order, or the one they name)"
            }
            Self::WriteOff => {
                "write the difference off (a loss, or a gain the processor paid): to the \
                 write-off account; a payment of the wrong amount is booked as captured first"
            }
            Self::Dismiss => "not an exception after all: nothing to book",
            Self::CollectDifference => {
                "book the amount the processor captured and leave the difference to collect \
                 (the order stays open, a new item says how much)"
            }
            Self::BookRefund => {
                "book the refund in its own currency; the order keeps its state (paid)"
            }
            Self::BookReinstatement => {
                "the processor reinstated the chargeback: book it as a dispute won"
            }
        }
    }
}

use ReviewAction::{
    AcceptAsIs, ApplyRepeat, BookRefund, BookReinstatement, CollectDifference, Dismiss, LinkOrder,
    MarkRefundedOutside, WriteOff,
};

/// The actions that make sense for an item of `kind`, the usual one first.
///
/// Why, per kind:
///
/// - `amount_mismatch`: the payment was not counted (its amount differs).
///   Accepting books the amount the processor captured into `paid` (the
///   order is sold for what was paid, nothing written off); a write-off
///   books it and writes the rest of the order's price off; collecting
///   books it and leaves the difference owed (the order stays `mismatch`
///   and a new item says how much). Dismiss: no exception, nothing booked.
/// - `currency_mismatch`: nothing can be converted here. A refund in
///   another currency is booked in its own currency (`book_refund`), the
///   order keeping its state; otherwise accept or dismiss.
/// - `duplicate_payment`: the extra charge was refunded by the merchant
///   outside the processor (recorded as a refund), or kept on purpose
///   (accept).
/// - `canceled_then_paid`: the canceled order's payment was returned
///   outside the processor (recorded as a refund), or the shop delivers
///   after all (accept).
/// - `reversed_after_payment`: the chargeback is counted already; the loss
///   is accepted, or the item was a false alarm.
/// - `over_refund`: the refunds above the payment are a loss to write
///   off, or the processor's figures are accepted.
/// - `suspect`, `unknown_status`, `unknown_chargeback_resolution`,
///   `pan_detected`, `invalid_notification`,
///   `conflicting_copy`: looked at and understood (accept), or nothing
///   (dismiss); none of them moved money.
/// - `orphan_payment`: link it to its order, write the money off (suspense),
///   or dismiss (test traffic).
/// - `unmatched_refund`, `unmatched_reversal`: held until their payment
///   arrives, which closes them by itself; a person accepts that it never
///   will, or dismisses.
/// - `late_repeat` (raised before issue 23): apply it (a genuine second
///   refund or chargeback), or dismiss (a resend: counted once is right).
/// - `possible_second_event`: apply it (a genuine second event: two
///   refunds of the same amount), or accept it as the processor's retry
///   (counted once is right); dismiss says the same as accepting.
/// - `settlement_unknown`: money settled for nothing in the ledger: write it
///   off (suspense) or dismiss. Linking a settlement line is the
///   settlement import's business, not a resolution's.
/// - `settlement_amount_differs`, `payout_total_differs`: the processor's
///   figure is the true one (accept), the difference is written off, or
///   dismissed.
/// - `settlement_reinstatement`: the processor credited a chargeback back
///   but no notice said the dispute was won: book the reinstatement (the
///   settlement is the processor's word), accept the books as they stand,
///   or dismiss.
/// - `fee_differs`: the settlement fee (which replaced the commission in
///   the books) is the true one (accept), or dismiss.
/// - `unsettled_payment`: the processor will never pay it out (write off),
///   or it was paid out some other way (accept), or dismiss.
/// - `refund_not_debited`: the refund was made outside the processor, so no
///   debit will come (the refund is booked already), accepted, or dismissed.
/// - `stale_order`: the order never completed and never will (accept, the
///   order stays as it is), or dismiss.
/// - `renewal_missing`: a person looks the subscription up at the
///   processor. It renewed and the notice was lost: have the processor
///   resend it (the paid renewal then closes the item by itself) or accept;
///   it stopped and no notice said so: accept as is (nothing to book); a
///   false alarm: dismiss.
/// - `renewal_after_cancel`: a person asks whether the customer meant to
///   renew. A refund is made at the processor, whose refund notice books
///   it; the item is accepted (the renewal stands, or its refund is on the
///   way) or dismissed.
pub fn allowed_actions(kind: ReviewKind) -> &'static [ReviewAction] {
    match kind {
        ReviewKind::AmountMismatch => &[AcceptAsIs, WriteOff, CollectDifference, Dismiss],
        ReviewKind::CurrencyMismatch => &[BookRefund, AcceptAsIs, Dismiss],
        ReviewKind::DuplicatePayment => &[MarkRefundedOutside, AcceptAsIs, Dismiss],
        ReviewKind::CanceledThenPaid => &[MarkRefundedOutside, AcceptAsIs, Dismiss],
        ReviewKind::ReversedAfterPayment => &[AcceptAsIs, Dismiss],
        ReviewKind::OverRefund => &[WriteOff, AcceptAsIs, Dismiss],
        ReviewKind::Suspect => &[AcceptAsIs, Dismiss],
        ReviewKind::UnknownStatus => &[AcceptAsIs, Dismiss],
        ReviewKind::UnknownChargebackResolution => &[AcceptAsIs, Dismiss],
        ReviewKind::OrphanPayment => &[LinkOrder, WriteOff, Dismiss],
        ReviewKind::PanDetected => &[AcceptAsIs, Dismiss],
        ReviewKind::InvalidNotification => &[AcceptAsIs, Dismiss],
        ReviewKind::UnmatchedRefund => &[AcceptAsIs, Dismiss],
        ReviewKind::UnmatchedReversal => &[AcceptAsIs, Dismiss],
        ReviewKind::LateRepeat => &[ApplyRepeat, Dismiss],
        ReviewKind::PossibleSecondEvent => &[ApplyRepeat, AcceptAsIs, Dismiss],
        ReviewKind::ConflictingCopy => &[AcceptAsIs, Dismiss],
        ReviewKind::SettlementUnknown => &[WriteOff, Dismiss],
        ReviewKind::SettlementAmountDiffers => &[AcceptAsIs, WriteOff, Dismiss],
        ReviewKind::UnsettledPayment => &[WriteOff, AcceptAsIs, Dismiss],
        ReviewKind::RefundNotDebited => &[MarkRefundedOutside, AcceptAsIs, Dismiss],
        ReviewKind::PayoutTotalDiffers => &[AcceptAsIs, WriteOff, Dismiss],
        ReviewKind::StaleOrder => &[AcceptAsIs, Dismiss],
        ReviewKind::FeeDiffers => &[AcceptAsIs, Dismiss],
        ReviewKind::SettlementReinstatement => &[BookReinstatement, AcceptAsIs, Dismiss],
        ReviewKind::RenewalMissing => &[AcceptAsIs, Dismiss],
        ReviewKind::RenewalAfterCancel => &[AcceptAsIs, Dismiss],
    }
}

/// An action that does not fit the item's kind. The message lists the
/// ones that do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{action} does not fit an item of kind {kind}; allowed: {}", list(allowed_actions(*kind)))]
pub struct Misfit {
    pub kind: ReviewKind,
    pub action: ReviewAction,
}

impl Misfit {
    /// The actions that would fit.
    pub fn allowed(&self) -> &'static [ReviewAction] {
        allowed_actions(self.kind)
    }
}

fn list(actions: &[ReviewAction]) -> String {
    actions
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What carrying out an action on an item does (the daemon's review
/// service follows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionEffect {
    /// Only the resolution is recorded: no fact, state or figure changes.
    RecordOnly,
    /// The item's notification (a repeat) is applied as a notification of
    /// its own, through [`decide`](crate::reconcile::decide).
    ApplyRepeat,
    /// The notifications that found no order (under the item's order
    /// reference) are applied to the chosen order, through `decide`.
    LinkOrder,
    /// A refund of what the item's payment (every payment, for an item
    /// about the whole order) still holds is recorded ([`refund_outside`]),
    /// with its money movement.
    RefundOutside,
    /// Nothing changes on the order; the resolution row carries the amount
    /// written off ([`write_off_movement`] books it).
    WriteOff,
    /// A payment of the wrong amount is booked as captured
    /// ([`book_capture`]), its difference to the order's price dealt with
    /// as said.
    BookCapture(Difference),
    /// A refund in another currency is booked in its own currency
    /// ([`book_foreign_refund`]).
    BookRefund,
    /// The item's payment's chargeback is reinstated, as a `WON` notice
    /// would ([`reinstate`]), with its money movements.
    Reinstate,
}

/// What becomes of the difference between a payment of the wrong amount
/// and its order's price, once the captured amount is booked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Difference {
    /// Nothing: the order is sold for what was paid (`accept_as_is`).
    Accepted,
    /// Written off to the write-off account (`write_off`).
    WrittenOff,
    /// Still owed: the order stays open (`collect_difference`).
    ToCollect,
}

impl ActionEffect {
    /// Whether the action changes the order's facts (and so writes a
    /// ledger row and, when money moved, money movements).
    pub fn changes_facts(self) -> bool {
        matches!(
            self,
            Self::ApplyRepeat
                | Self::LinkOrder
                | Self::RefundOutside
                | Self::BookCapture(_)
                | Self::BookRefund
                | Self::Reinstate
        )
    }
}

/// What `action` does to an item of `kind`, or why it does not fit.
pub fn effect(kind: ReviewKind, action: ReviewAction) -> Result<ActionEffect, Misfit> {
    if !allowed_actions(kind).contains(&action) {
        return Err(Misfit { kind, action });
    }
    let amount_mismatch = kind == ReviewKind::AmountMismatch;
    Ok(match action {
        AcceptAsIs if amount_mismatch => ActionEffect::BookCapture(Difference::Accepted),
        WriteOff if amount_mismatch => ActionEffect::BookCapture(Difference::WrittenOff),
        CollectDifference => ActionEffect::BookCapture(Difference::ToCollect),
        BookRefund => ActionEffect::BookRefund,
        AcceptAsIs | Dismiss => ActionEffect::RecordOnly,
        ApplyRepeat => ActionEffect::ApplyRepeat,
        LinkOrder => ActionEffect::LinkOrder,
        WriteOff => ActionEffect::WriteOff,
        // A refund the processor never debited is booked already: the
        // action says the debit will not come, and books nothing more.
        MarkRefundedOutside if kind == ReviewKind::RefundNotDebited => ActionEffect::RecordOnly,
        MarkRefundedOutside => ActionEffect::RefundOutside,
        BookReinstatement => ActionEffect::Reinstate,
    })
}

/// Why a chargeback cannot be reinstated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReinstateError {
    /// The item names no payment, or one the order does not have.
    #[error("the order has no payment under processor reference {0}")]
    NoSuchPayment(String),
    /// The payment is not charged back, or its chargeback was reinstated.
    #[error(
        "nothing to reinstate: the payment under processor reference {0} has no chargeback standing"
    )]
    NothingToReinstate(String),
}

/// The facts after the chargeback of the payment under `processor_ref`
/// was reinstated, as a `CHARGEBACK_RESOLUTION=WON` notice would leave
/// them (the dispute won), and the amount reinstated. Facts only grow;
/// the money this moved is `journal::movements(facts, &after)`: the
/// `chargeback_reversal`, and the VAT and commission the chargeback had
/// given back, charged again.
pub fn reinstate(
    facts: &OrderFacts,
    processor_ref: &str,
) -> Result<(OrderFacts, Money), ReinstateError> {
    let payment = facts
        .payments
        .get(processor_ref)
        .ok_or_else(|| ReinstateError::NoSuchPayment(processor_ref.to_owned()))?;
    if !payment.charged_back_counts() || payment.dispute_won {
        return Err(ReinstateError::NothingToReinstate(processor_ref.to_owned()));
    }
    let mut after = facts.clone();
    let won = after
        .payments
        .get_mut(processor_ref)
        .ok_or_else(|| ReinstateError::NoSuchPayment(processor_ref.to_owned()))?;
    let before = won.reinstated();
    won.dispute_won = true;
    let amount = won.reinstated().saturating_sub(before);
    Ok((after, Money::from_minor(amount, facts.expected.currency())))
}

/// Why a refund outside the processor cannot be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundOutsideError {
    /// The payment the item names is not a payment of the order.
    #[error("the order has no payment under processor reference {0}")]
    NoSuchPayment(String),
    /// Everything paid is refunded or charged back already.
    #[error("nothing left to refund: every payment concerned is refunded or charged back already")]
    NothingToRefund,
}

/// The facts after the merchant refunded outside the processor what the
/// payment under `processor_ref` still holds (every payment of the order
/// when `None`): for each such payment that was paid and is neither
/// charged back nor fully refunded, its refunds grow to its payment. Facts
/// only grow, as with any notification; the money this moved is
/// `journal::movements(facts, &after)`, refunds only.
pub fn refund_outside(
    facts: &OrderFacts,
    processor_ref: Option<&str>,
) -> Result<(OrderFacts, Money), RefundOutsideError> {
    if let Some(refno) = processor_ref
        && !facts.payments.contains_key(refno)
    {
        return Err(RefundOutsideError::NoSuchPayment(refno.to_owned()));
    }
    let mut after = facts.clone();
    let mut refunded = 0i64;
    for (refno, payment) in after.payments.iter_mut() {
        if processor_ref.is_some_and(|wanted| wanted != refno) {
            continue;
        }
        let holds = if payment.paid > 0 && !payment.chargeback_notice() {
            payment.paid.saturating_sub(payment.refunded).max(0)
        } else {
            0
        };
        if holds > 0 {
            payment.refunded = payment.refunded.saturating_add(holds);
            refunded = refunded.saturating_add(holds);
        }
    }
    if refunded == 0 {
        return Err(RefundOutsideError::NothingToRefund);
    }
    Ok((
        after,
        Money::from_minor(refunded, facts.expected.currency()),
    ))
}

/// Why a payment of the wrong amount, or a refund in another currency,
/// cannot be booked as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    /// The item's notification is not a capture in the order's currency
    /// with a positive amount, and nothing is booked under its payment.
    #[error(
        "nothing captured to book: the item's notification is not a payment of a positive amount in the order's currency"
    )]
    NotACapture,
    /// The processor captured at least the order's price.
    #[error(
        "nothing to {0}: the processor captured {1}, the order's price is {2}; accept_as_is books it"
    )]
    NoShortfall(&'static str, Money, Money),
    /// The captured amount is booked already and its difference is what
    /// this item is about.
    #[error(
        "the captured amount is booked already and the difference is this item's: accept_as_is, write_off or dismiss it"
    )]
    AlreadyToCollect,
    /// The item's notification is not a refund in another currency.
    #[error("the item's notification is not a refund in another currency than the order's")]
    NotAForeignRefund,
    /// No paid payment under the refund's processor reference.
    #[error("the order has no paid payment under processor reference {0} to refund")]
    NoPaidPayment(String),
}

/// A capture as a stored notification carries it: the payment's
/// reference, the amount, whether its status is a payment's, and the
/// money the notice carried.
#[derive(Debug, Clone, Copy)]
pub struct Capture<'a> {
    pub processor_ref: &'a str,
    pub is_payment: bool,
    pub amount: Money,
    pub money: &'a crate::notice_money::NoticeMoney,
}

/// What accepting a payment of the wrong amount books.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booking {
    /// The facts after: the payment paid at the captured amount (unless it
    /// was booked already), the order out of `mismatch` unless the
    /// difference is to collect or another disagreement is open.
    pub after: OrderFacts,
    /// The amount booked as paid under the payment.
    pub captured: Money,
    /// The order's price less the captured amount: positive when short,
    /// negative when the processor captured more.
    pub difference: Money,
    /// Written off ([`Difference::WrittenOff`]): the shortfall.
    pub written_off: Option<Money>,
    /// The item that keeps the difference open ([`Difference::ToCollect`]).
    pub follow_up: Option<crate::reconcile::NewReviewItem>,
}

/// Books a payment of the wrong amount (`amount_mismatch`) as the processor
/// captured it, and decides what becomes of the difference to the order's
/// price. `booked_refno` is the payment the item is about; `capture`, its
/// notification when it has one; `other_disagreements`, whether another
/// amount or currency item stays open on the order (the order stays
/// `mismatch` then: its last disagreement ends it).
///
/// A payment already paid under that reference (a follow-up item, or the
/// right amount arrived after all) is not booked again: the difference is
/// the order's price less what it paid. Facts only grow but for the
/// `mismatch` flag, which a person's acceptance ends.
pub fn book_capture(
    facts: &OrderFacts,
    booked_refno: Option<&str>,
    capture: Option<Capture<'_>>,
    difference: Difference,
    other_disagreements: bool,
) -> Result<Booking, BookError> {
    let currency = facts.expected.currency();
    let refno = booked_refno
        .or(capture.map(|c| c.processor_ref))
        .ok_or(BookError::NotACapture)?;
    let mut after = facts.clone();
    let already = facts.payments.get(refno).map_or(0, |p| p.paid);
    let captured = if already > 0 {
        if difference == Difference::ToCollect {
            return Err(BookError::AlreadyToCollect);
        }
        already
    } else {
        let capture = capture
            .filter(|c| c.is_payment && c.amount.currency() == currency && c.amount.is_positive())
            .ok_or(BookError::NotACapture)?;
        let first_payment = facts.paid() == 0;
        let payment = after.payments.entry(refno.to_owned()).or_default();
        crate::reconcile::record_capture(payment, capture.amount.minor_units(), capture.money);
        if first_payment {
            after.processor_ref = Some(refno.to_owned());
        }
        capture.amount.minor_units()
    };
    let captured = Money::from_minor(captured, currency);
    let short = facts
        .expected
        .minor_units()
        .saturating_sub(captured.minor_units());
    let difference_money = Money::from_minor(short, currency);
    let mut booking = Booking {
        after,
        captured,
        difference: difference_money,
        written_off: None,
        follow_up: None,
    };
    match difference {
        Difference::Accepted => {}
        Difference::WrittenOff | Difference::ToCollect if short <= 0 => {
            let what = if difference == Difference::WrittenOff {
                "write off"
            } else {
                "collect"
            };
            return Err(BookError::NoShortfall(what, captured, facts.expected));
        }
        Difference::WrittenOff => booking.written_off = Some(difference_money),
        Difference::ToCollect => {
            booking.follow_up = Some(crate::reconcile::NewReviewItem::for_payment(
                ReviewKind::AmountMismatch,
                refno,
                format!(
                    "{captured} captured under processor reference {refno} is booked; \
                     {difference_money} of the order's {} is left to collect",
                    facts.expected
                ),
            ));
        }
    }
    if difference != Difference::ToCollect && !other_disagreements {
        booking.after.mismatch = false;
    }
    Ok(booking)
}

/// Books a refund in another currency than its order's
/// (`currency_mismatch`): a refund movement of its amount in its own
/// currency, under its payment, which must be paid. The order's facts do
/// not count it (they are in the order's currency), so the order keeps its
/// state; only the `mismatch` the refund raised ends, unless another
/// disagreement stays open (`other_disagreements`).
pub fn book_foreign_refund(
    facts: &OrderFacts,
    refund: Capture<'_>,
    is_refund: bool,
    other_disagreements: bool,
) -> Result<(OrderFacts, crate::journal::Movement), BookError> {
    if !is_refund
        || refund.amount.currency() == facts.expected.currency()
        || refund.amount.minor_units() == 0
    {
        return Err(BookError::NotAForeignRefund);
    }
    if facts
        .payments
        .get(refund.processor_ref)
        .is_none_or(|p| p.paid == 0)
    {
        return Err(BookError::NoPaidPayment(refund.processor_ref.to_owned()));
    }
    let mut after = facts.clone();
    if !other_disagreements {
        after.mismatch = false;
    }
    Ok((
        after,
        crate::journal::Movement {
            processor_ref: refund.processor_ref.to_owned(),
            kind: crate::journal::MovementKind::Refund,
            amount: refund.amount.abs(),
        },
    ))
}

/// How a write-off is booked: the journal movement of an amount written
/// off on an item of `kind`, `written_off` signed as the write-off
/// schedule shows it (positive: a shortfall or loss; negative: an excess
/// the processor paid). `None` for nothing written off.
///
/// A short payment and an over-refund never touched the clearing account
/// (revenue and refunds hold them); every other write-off is a difference
/// between the clearing account and what the processor pays out, so the
/// write-off brings clearing to where the bank says.
pub fn write_off_movement(
    kind: ReviewKind,
    written_off: Money,
) -> Option<(crate::journal::MovementKind, Money)> {
    use crate::journal::MovementKind as K;
    let minor = written_off.minor_units();
    if minor == 0 {
        return None;
    }
    let movement = match kind {
        ReviewKind::AmountMismatch if minor > 0 => K::WriteOffShortPayment,
        ReviewKind::OverRefund if minor > 0 => K::WriteOffOverRefund,
        _ if minor > 0 => K::WriteOffShortfall,
        _ => K::WriteOffExcess,
    };
    Some((movement, written_off.abs()))
}

/// A settlement line as an item's write-off reads it: its type, signed
/// gross and net in its currency, and the ledger's figure it was compared
/// with (a magnitude, in the line's currency), `in_ledger_currency` when
/// the line is in its payment's order currency (gross compared) rather
/// than its payout currency (net compared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineAtStake {
    pub kind: crate::settlement::LineKind,
    pub gross: Money,
    pub net: Money,
    pub expected: Option<i64>,
    pub in_ledger_currency: bool,
}

/// What a write-off of a settlement line's item writes off, signed
/// (positive: the ledger holds more than the processor paid out):
///
/// - a line the ledger has no figure for (`settlement_unknown`, a line
///   in a currency the payment has no side in): the whole line, against
///   its sign (a sale nothing booked is money paid out unexplained, an
///   excess; a debit nothing booked, a shortfall);
/// - a line compared with the ledger (`settlement_amount_differs`): the
///   ledger's figure, signed as the line's direction (a sale adds, every
///   other type takes away), less the line's amount (its gross in the
///   order's currency, its net in the payout currency).
pub fn line_write_off(line: &LineAtStake) -> Option<Money> {
    let currency = line.gross.currency();
    let amount = if line.in_ledger_currency {
        line.gross.minor_units()
    } else {
        line.net.minor_units()
    };
    let minor = match line.expected {
        None => line.gross.minor_units().saturating_neg(),
        Some(expected) => {
            let signed = if line.kind == crate::settlement::LineKind::Sale {
                expected
            } else {
                expected.saturating_neg()
            };
            signed.saturating_sub(amount)
        }
    };
    (minor != 0).then(|| Money::from_minor(minor, currency))
}

/// What a write-off of a `payout_total_differs` item writes off: the
/// lines' net less the transfer (positive: the bank got less than the
/// lines say).
pub fn payout_write_off(transferred: Money, lines_net: i64) -> Option<Money> {
    let minor = lines_net.saturating_sub(transferred.minor_units());
    (minor != 0).then(|| Money::from_minor(minor, transferred.currency()))
}

#[cfg(test)]
mod tests {
    // Amounts in cents are written `units_cents` (100_00 is 100.00 EUR).
    #![allow(clippy::inconsistent_digit_grouping)]
    use super::*;
    use crate::journal::{MovementKind, movements};
    use crate::money::Currency;
    use crate::reconcile::PaymentFacts;
    use crate::status::OrderState;
    use proptest::prelude::*;

    #[test]
    fn a_reinstatement_books_what_the_chargeback_took_once() {
        let mut facts = OrderFacts::new(eur(25_00));
        facts.payments.insert(
            "A".into(),
            PaymentFacts {
                paid: 25_00,
                refunded: 5_00,
                reversed: true,
                ..PaymentFacts::default()
            },
        );
        facts.payments.get_mut("A").expect("A").fix_chargeback();
        let (after, amount) = reinstate(&facts, "A").expect("reinstates");
        // 25.00 - 5.00 refunded = 20.00 charged back, 20.00 back.
        assert_eq!(amount, eur(20_00));
        assert!(after.check_grows_from(&facts).is_ok());
        assert_eq!(after.state(), OrderState::PartiallyRefunded);
        let moved: Vec<_> = movements(&facts, &after)
            .into_iter()
            .map(|m| (m.kind, m.amount.minor_units()))
            .collect();
        assert_eq!(moved, [(MovementKind::ChargebackReversal, 20_00)]);
        assert_eq!(
            reinstate(&after, "A"),
            Err(ReinstateError::NothingToReinstate("A".into()))
        );
        assert_eq!(
            reinstate(&facts, "B"),
            Err(ReinstateError::NoSuchPayment("B".into()))
        );
    }

    #[test]
    fn string_forms_are_fixed() {
        assert_string_forms!(
            ReviewAction,
            [
                "accept_as_is",
                "apply_repeat",
                "mark_refunded_outside",
                "link_order",
                "write_off",
                "dismiss",
                "collect_difference",
                "book_refund",
                "book_reinstatement",
            ]
        );
    }

    #[test]
    fn every_kind_has_actions_and_dismiss_is_always_one() {
        for kind in ReviewKind::ALL {
            let actions = allowed_actions(kind);
            assert!(!actions.is_empty(), "{kind}");
            assert!(actions.contains(&Dismiss), "{kind}");
            let mut unique = actions.to_vec();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), actions.len(), "{kind} lists an action twice");
        }
    }

    #[test]
    fn actions_that_change_the_books_fit_only_their_kinds() {
        let kinds_of = |action| {
            ReviewKind::ALL
                .into_iter()
                .filter(|k| allowed_actions(*k).contains(&action))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            kinds_of(ApplyRepeat),
            [ReviewKind::LateRepeat, ReviewKind::PossibleSecondEvent]
        );
        assert_eq!(kinds_of(LinkOrder), [ReviewKind::OrphanPayment]);
        assert_eq!(kinds_of(CollectDifference), [ReviewKind::AmountMismatch]);
        assert_eq!(kinds_of(BookRefund), [ReviewKind::CurrencyMismatch]);
        assert_eq!(
            kinds_of(MarkRefundedOutside),
            [
                ReviewKind::DuplicatePayment,
                ReviewKind::CanceledThenPaid,
                ReviewKind::RefundNotDebited
            ]
        );
    }

    #[test]
    fn a_misfit_lists_the_allowed_actions() {
        let err = effect(ReviewKind::LateRepeat, LinkOrder).unwrap_err();
        assert_eq!(
            err.to_string(),
            "link_order does not fit an item of kind late_repeat; allowed: apply_repeat, dismiss"
        );
        assert_eq!(err.allowed(), &[ApplyRepeat, Dismiss]);
        let err = effect(ReviewKind::OrphanPayment, ApplyRepeat).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("allowed: link_order, write_off, dismiss"),
            "{err}"
        );
    }

    #[test]
    fn effects_per_action() {
        assert_eq!(
            effect(ReviewKind::LateRepeat, ApplyRepeat),
            Ok(ActionEffect::ApplyRepeat)
        );
        assert_eq!(
            effect(ReviewKind::OrphanPayment, LinkOrder),
            Ok(ActionEffect::LinkOrder)
        );
        assert_eq!(
            effect(ReviewKind::DuplicatePayment, MarkRefundedOutside),
            Ok(ActionEffect::RefundOutside)
        );
        assert_eq!(
            effect(ReviewKind::RefundNotDebited, MarkRefundedOutside),
            Ok(ActionEffect::RecordOnly)
        );
        assert_eq!(
            effect(ReviewKind::OrphanPayment, WriteOff),
            Ok(ActionEffect::WriteOff)
        );
        assert_eq!(
            effect(ReviewKind::Suspect, AcceptAsIs),
            Ok(ActionEffect::RecordOnly)
        );
    }

    fn eur(minor: i64) -> Money {
        Money::from_minor(minor, Currency::iso("EUR").unwrap())
    }

    fn paid_twice() -> OrderFacts {
        let mut facts = OrderFacts::new(eur(25_00));
        facts.processor_ref = Some("A".to_owned());
        for refno in ["A", "B"] {
            facts.payments.insert(
                refno.to_owned(),
                PaymentFacts {
                    paid: 25_00,
                    ..PaymentFacts::default()
                },
            );
        }
        facts
    }

    #[test]
    fn refund_outside_refunds_the_named_payment_only() {
        let facts = paid_twice();
        let (after, amount) = refund_outside(&facts, Some("B")).unwrap();
        assert_eq!(amount, eur(25_00));
        assert_eq!(after.payments["B"].refunded, 25_00);
        assert_eq!(after.payments["A"].refunded, 0);
        // The double charge is undone: the order stands paid once.
        assert_eq!(after.state(), OrderState::Paid);
        assert_eq!(after.open_duplicates(), 0);
        let moved = movements(&facts, &after);
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].kind, MovementKind::Refund);
        assert_eq!(moved[0].processor_ref, "B");
        assert_eq!(moved[0].amount, eur(25_00));
        assert_eq!(
            refund_outside(&after, Some("B")),
            Err(RefundOutsideError::NothingToRefund)
        );
        assert_eq!(
            refund_outside(&after, Some("C")),
            Err(RefundOutsideError::NoSuchPayment("C".to_owned()))
        );
    }

    #[test]
    fn refund_outside_of_a_canceled_order_refunds_what_is_left() {
        let mut facts = paid_twice();
        facts.payments.remove("B");
        facts.canceled = true;
        facts.payments.get_mut("A").unwrap().refunded = 5_00;
        let (after, amount) = refund_outside(&facts, None).unwrap();
        assert_eq!(amount, eur(20_00));
        assert_eq!(after.state(), OrderState::Refunded);
        after.check_grows_from(&facts).unwrap();
    }

    fn short_paid() -> OrderFacts {
        let mut facts = OrderFacts::new(eur(100_00));
        facts.mismatch = true;
        facts.processor_ref = Some("A".to_owned());
        facts
    }

    fn capture<'a>(money: &'a crate::notice_money::NoticeMoney, minor: i64) -> Capture<'a> {
        Capture {
            processor_ref: "A",
            is_payment: true,
            amount: eur(minor),
            money,
        }
    }

    #[test]
    fn accepting_a_short_payment_books_what_was_captured_and_ends_the_mismatch() {
        let money = crate::notice_money::NoticeMoney::default();
        let facts = short_paid();
        let booked = book_capture(
            &facts,
            Some("A"),
            Some(capture(&money, 90_00)),
            Difference::Accepted,
            false,
        )
        .expect("booked");
        assert_eq!(booked.captured, eur(90_00));
        assert_eq!(booked.difference, eur(10_00));
        assert_eq!(booked.written_off, None);
        assert_eq!(booked.after.state(), OrderState::Paid);
        assert_eq!(booked.after.paid(), 90_00);
        let moved = movements(&facts, &booked.after);
        assert_eq!(moved.len(), 1);
        assert_eq!(
            (moved[0].kind, moved[0].amount),
            (MovementKind::Payment, eur(90_00))
        );
        // Another disagreement still open: the order stays mismatch.
        let held = book_capture(
            &facts,
            Some("A"),
            Some(capture(&money, 90_00)),
            Difference::Accepted,
            true,
        )
        .expect("booked");
        assert_eq!(held.after.state(), OrderState::Mismatch);
        assert_eq!(held.after.paid(), 90_00);
    }

    #[test]
    fn writing_off_a_short_payment_writes_off_the_difference_not_the_payment() {
        let money = crate::notice_money::NoticeMoney::default();
        let booked = book_capture(
            &short_paid(),
            Some("A"),
            Some(capture(&money, 90_00)),
            Difference::WrittenOff,
            false,
        )
        .expect("booked");
        assert_eq!(booked.written_off, Some(eur(10_00)));
        assert_eq!(booked.after.state(), OrderState::Paid);
        assert_eq!(
            write_off_movement(ReviewKind::AmountMismatch, eur(10_00)),
            Some((MovementKind::WriteOffShortPayment, eur(10_00)))
        );
        // Captured more than the price: nothing to write off or collect.
        for asked in [Difference::WrittenOff, Difference::ToCollect] {
            assert!(matches!(
                book_capture(
                    &short_paid(),
                    Some("A"),
                    Some(capture(&money, 110_00)),
                    asked,
                    false
                ),
                Err(BookError::NoShortfall(..))
            ));
        }
    }

    #[test]
    fn collecting_keeps_the_order_open_with_an_item_that_says_how_much() {
        let money = crate::notice_money::NoticeMoney::default();
        let booked = book_capture(
            &short_paid(),
            Some("A"),
            Some(capture(&money, 90_00)),
            Difference::ToCollect,
            false,
        )
        .expect("booked");
        assert_eq!(booked.after.state(), OrderState::Mismatch);
        assert_eq!(booked.after.paid(), 90_00);
        let item = booked.follow_up.expect("a follow-up item");
        assert_eq!(item.kind, ReviewKind::AmountMismatch);
        assert!(item.details.contains("10.00 EUR"), "{}", item.details);
        // The follow-up, without a notification: the payment is booked.
        let written = book_capture(
            &booked.after,
            Some("A"),
            None,
            Difference::WrittenOff,
            false,
        )
        .expect("written off");
        assert_eq!(written.written_off, Some(eur(10_00)));
        assert_eq!(written.after.state(), OrderState::Paid);
        assert!(
            movements(&booked.after, &written.after).is_empty(),
            "booked once"
        );
        assert_eq!(
            book_capture(&booked.after, Some("A"), None, Difference::ToCollect, false),
            Err(BookError::AlreadyToCollect)
        );
        // Nothing booked and no capture: refused.
        assert_eq!(
            book_capture(&short_paid(), Some("A"), None, Difference::Accepted, false),
            Err(BookError::NotACapture)
        );
    }

    #[test]
    fn a_refund_in_another_currency_is_booked_in_its_own() {
        let money = crate::notice_money::NoticeMoney::default();
        let mut facts = short_paid();
        facts.payments.insert(
            "A".to_owned(),
            PaymentFacts {
                paid: 100_00,
                ..PaymentFacts::default()
            },
        );
        let usd = Money::from_minor(-20_00, Currency::iso("USD").unwrap());
        let refund = Capture {
            processor_ref: "A",
            is_payment: false,
            amount: usd,
            money: &money,
        };
        let (after, moved) = book_foreign_refund(&facts, refund, true, false).expect("booked");
        assert_eq!(after.state(), OrderState::Paid);
        assert_eq!(moved.kind, MovementKind::Refund);
        assert_eq!(moved.amount, usd.abs());
        assert_eq!(
            book_foreign_refund(
                &facts,
                Capture {
                    amount: eur(-20_00),
                    ..refund
                },
                true,
                false
            )
            .unwrap_err(),
            BookError::NotAForeignRefund
        );
        assert_eq!(
            book_foreign_refund(
                &facts,
                Capture {
                    processor_ref: "B",
                    ..refund
                },
                true,
                false
            )
            .unwrap_err(),
            BookError::NoPaidPayment("B".to_owned())
        );
    }

    #[test]
    fn settlement_write_offs_are_signed_so_that_clearing_ends_at_the_bank() {
        use crate::settlement::LineKind;
        // A sale of 90.00 settled for a payment booked at 100.00: 10.00 short.
        let line = LineAtStake {
            kind: LineKind::Sale,
            gross: eur(90_00),
            net: eur(87_00),
            expected: Some(100_00),
            in_ledger_currency: true,
        };
        assert_eq!(line_write_off(&line), Some(eur(10_00)));
        // A refund line debiting 25.00 for 20.00 refunded: 5.00 short.
        let refund = LineAtStake {
            kind: LineKind::Refund,
            gross: eur(-25_00),
            net: eur(-25_00),
            expected: Some(20_00),
            ..line
        };
        assert_eq!(line_write_off(&refund), Some(eur(5_00)));
        // An unknown sale of 40.00: an excess; an unknown debit: a shortfall.
        let unknown = LineAtStake {
            expected: None,
            gross: eur(40_00),
            ..line
        };
        assert_eq!(line_write_off(&unknown), Some(eur(-40_00)));
        let debit = LineAtStake {
            expected: None,
            gross: eur(-15_00),
            ..line
        };
        assert_eq!(line_write_off(&debit), Some(eur(15_00)));
        assert_eq!(
            write_off_movement(ReviewKind::SettlementUnknown, eur(-40_00)),
            Some((MovementKind::WriteOffExcess, eur(40_00)))
        );
        assert_eq!(
            write_off_movement(ReviewKind::UnsettledPayment, eur(25_00)),
            Some((MovementKind::WriteOffShortfall, eur(25_00)))
        );
        assert_eq!(
            write_off_movement(ReviewKind::UnsettledPayment, eur(0)),
            None
        );
        // The bank got 95.00 for lines of 100.00 net: 5.00 short.
        assert_eq!(payout_write_off(eur(95_00), 100_00), Some(eur(5_00)));
        assert_eq!(payout_write_off(eur(100_00), 100_00), None);
    }

    fn arb_payment() -> impl Strategy<Value = PaymentFacts> {
        (any::<bool>(), any::<bool>(), 0i64..=30_00, any::<bool>()).prop_map(
            |(authorized, paid, refunded, reversed)| PaymentFacts {
                authorized,
                paid: if paid { 25_00 } else { 0 },
                refunded,
                reversed,
                ..PaymentFacts::default()
            },
        )
    }

    fn arb_facts() -> impl Strategy<Value = OrderFacts> {
        (
            proptest::collection::btree_map("[A-D]", arb_payment(), 0..4),
            any::<bool>(),
        )
            .prop_map(|(payments, canceled)| {
                let mut facts = OrderFacts::new(eur(25_00));
                facts.canceled = canceled;
                facts.processor_ref = payments.keys().next().cloned();
                facts.payments = payments;
                facts
            })
    }

    proptest! {
        /// Whatever the order's facts, a refund outside the processor only
        /// grows them, moves exactly its amount as refunds of the payments
        /// concerned, and leaves nothing of them to refund.
        #[test]
        fn refund_outside_moves_exactly_what_was_held(
            facts in arb_facts(),
            which in proptest::option::of("[A-D]"),
        ) {
            match refund_outside(&facts, which.as_deref()) {
                Ok((after, amount)) => {
                    prop_assert!(after.check_grows_from(&facts).is_ok());
                    prop_assert!(amount.is_positive());
                    let moved = movements(&facts, &after);
                    prop_assert!(moved.iter().all(|m| m.kind == MovementKind::Refund));
                    prop_assert!(moved
                        .iter()
                        .all(|m| which.as_deref().is_none_or(|w| w == m.processor_ref)));
                    let total: i64 = moved.iter().map(|m| m.amount.minor_units()).sum();
                    prop_assert_eq!(total, amount.minor_units());
                    prop_assert_eq!(after.refunded() - facts.refunded(), total);
                    prop_assert_eq!(after.paid(), facts.paid());
                    prop_assert_eq!(after.charged_back(), facts.charged_back());
                    prop_assert_eq!(
                        refund_outside(&after, which.as_deref()).unwrap_err(),
                        RefundOutsideError::NothingToRefund
                    );
                }
                Err(RefundOutsideError::NoSuchPayment(refno)) => {
                    prop_assert!(!facts.payments.contains_key(&refno));
                }
                Err(RefundOutsideError::NothingToRefund) => {
                    prop_assert!(facts
                        .payments
                        .iter()
                        .filter(|(r, _)| which.as_deref().is_none_or(|w| w == r.as_str()))
                        .all(|(_, p)| p.paid == 0 || p.reversed || p.refunded >= p.paid));
                }
            }
        }

        /// An action fits a kind exactly when `allowed_actions` lists it,
        /// and only `apply_repeat`, `link_order` and a refund outside
        /// change facts.
        #[test]
        fn effect_agrees_with_allowed_actions(
            kind in proptest::sample::select(ReviewKind::ALL.to_vec()),
            action in proptest::sample::select(ReviewAction::ALL.to_vec()),
        ) {
            let allowed = allowed_actions(kind).contains(&action);
            match effect(kind, action) {
                Ok(done) => {
                    prop_assert!(allowed);
                    if done.changes_facts() {
                        prop_assert!(matches!(
                            (kind, action),
                            (
                                _,
                                ApplyRepeat
                                    | LinkOrder
                                    | MarkRefundedOutside
                                    | CollectDifference
                                    | BookRefund
                                    | BookReinstatement
                            ) | (ReviewKind::AmountMismatch, AcceptAsIs | WriteOff)
                        ));
                    }
                }
                Err(misfit) => {
                    prop_assert!(!allowed);
                    let text = misfit.to_string();
                    for fits in allowed_actions(kind) {
                        prop_assert!(text.contains(fits.as_str()));
                    }
                }
            }
        }
    }
}
