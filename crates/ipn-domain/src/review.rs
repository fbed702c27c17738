//! What a person can do about a review item, and what doing it means.
//!
//! An exception in the review queue ([`ReviewKind`]) is closed by a
//! person with one [`ReviewAction`]. Which actions fit which kind is a
//! finance decision, written once in [`allowed_actions`] (an exhaustive
//! match: a new kind does not compile until someone decides what may be
//! done about it). What an action does to the books is decided here too,
//! without I/O: [`effect`] says which path a resolution takes (record only,
//! apply a repeated notification, apply an orphan's notifications to an
//! order, record a refund made outside the processor), and
//! [`refund_outside`] computes the facts after such a refund, so that the
//! money it moves comes from [`crate::journal::movements`] like
//! any notification's.
//!
//! The vocabulary, as a finance person reads it:
//!
//! - **`accept_as_is`**: the exception is real and the books are right as
//!   they stand (a chargeback lost, a processor flag reviewed, a settlement
//!   amount that is the true one). Nothing is booked.
//! - **`apply_repeat`**: a refund, reversal or chargeback delivered again
//!   after the processor's retry horizon is a *genuine* second one: its
//!   notification is applied as a notification of its own, through the
//!   state machine (`late_repeat` only).
//! - **`mark_refunded_outside`**: the shopper got the money back outside
//!   the processor (a bank transfer, a voucher). For a charge that is
//!   still held (a double charge, an order canceled and paid) a refund of
//!   what the payment still holds is recorded, with its money movement;
//!   for a refund the processor never debited it records that no debit
//!   will come.
//! - **`link_order`**: an orphan payment belongs to an order: its
//!   notifications are applied to that order (the one they name, now that
//!   it exists, or another one a person chose), through the state machine.
//! - **`write_off`**: the amount at stake is settled outside the order's
//!   books (a loss, or a suspense account in the accounting system). The
//!   order's figures do not change, since no money moved through the
//!   processor; the resolution row keeps the amount for the accountant.
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
            Self::AcceptAsIs => "the exception is real and the books are right as they stand",
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
                "settle the amount outside the order's books (loss or suspense); figures unchanged"
            }
            Self::Dismiss => "not an exception after all: nothing to book",
            Self::BookReinstatement => {
                "the processor reinstated the chargeback: book it as a dispute won"
            }
        }
    }
}

use ReviewAction::{
    AcceptAsIs, ApplyRepeat, BookReinstatement, Dismiss, LinkOrder, MarkRefundedOutside, WriteOff,
};

/// The actions that make sense for an item of `kind`, the usual one first.
///
/// Why, per kind:
///
/// - `amount_mismatch`: the payment was not counted (its amount differs);
///   the shop accepts the order as it stands, writes the difference off,
///   or finds it was no exception.
/// - `currency_mismatch`: nothing can be converted here; accept or dismiss.
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
/// - `late_repeat`: apply it (a genuine second refund or chargeback), or
///   dismiss (a resend: counted once is right). Accepting would say the
///   same as dismissing, so it is not offered.
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
        ReviewKind::AmountMismatch => &[AcceptAsIs, WriteOff, Dismiss],
        ReviewKind::CurrencyMismatch => &[AcceptAsIs, Dismiss],
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
    /// written off.
    WriteOff,
    /// The item's payment's chargeback is reinstated, as a `WON` notice
    /// would ([`reinstate`]), with its money movements.
    Reinstate,
}

impl ActionEffect {
    /// Whether the action changes the order's facts (and so writes a
    /// ledger row and, when money moved, money movements).
    pub fn changes_facts(self) -> bool {
        matches!(
            self,
            Self::ApplyRepeat | Self::LinkOrder | Self::RefundOutside | Self::Reinstate
        )
    }
}

/// What `action` does to an item of `kind`, or why it does not fit.
pub fn effect(kind: ReviewKind, action: ReviewAction) -> Result<ActionEffect, Misfit> {
    if !allowed_actions(kind).contains(&action) {
        return Err(Misfit { kind, action });
    }
    Ok(match action {
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

#[cfg(test)]
mod tests {
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
        assert_eq!(kinds_of(ApplyRepeat), [ReviewKind::LateRepeat]);
        assert_eq!(kinds_of(LinkOrder), [ReviewKind::OrphanPayment]);
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
                            action,
                            ApplyRepeat | LinkOrder | MarkRefundedOutside | BookReinstatement
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
