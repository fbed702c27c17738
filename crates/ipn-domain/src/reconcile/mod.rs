//! The order state machine, as a pure function: `(facts, event) -> decision`.
//!
//! Notifications arrive late, twice, and out of order (docs/protocol.md
//! §5): a refund can overtake its payment, a PAYMENT_AUTHORIZED can follow
//! COMPLETE. A state machine driven by "the last event" would end in a
//! different state for each arrival order. So an order is described by
//! [`OrderFacts`] that only ever *grow* (flags go from false to true, totals
//! only increase or get set once), kept per payment (per processor
//! reference), every event adds to them, and the [`OrderState`] is
//! *derived* from the facts by [`OrderFacts::state`]. Adding facts commutes,
//! so every arrival order of the same notifications ends in the same state;
//! the property tests in `tests.rs` check exactly that.
//!
//! Review items (things a human must look at) are raised at the step where
//! their condition *first* becomes true. Conditions that only grow
//! (canceled and paid, a payment charged back, refunds above a payment, one
//! more paid payment) are raised exactly once whatever the arrival order.
//! Conditions that can stop holding (a refund waiting for its payment, a
//! double charge not yet refunded) are raised when they start and closed by
//! the system ([`AutoResolution`]) when they stop, so what is *open* at the
//! end does not depend on the arrival order either.
//!
//! Deduplication of repeated notifications (same identity) is the caller's
//! job and happens before [`decide`]: `decide` treats every event it is
//! given as a distinct notification.

mod facts;
mod labels;
#[cfg(test)]
mod tests;

pub use facts::{OrderFacts, PaymentFacts, PaymentState};
pub use labels::{
    AutoResolution, Effect, NewReviewItem, Outcome, ReviewKind, UnknownEffect, UnknownOutcome,
    UnknownReviewKind,
};

use super::chargeback::{ChargebackNotice, ChargebackResolution};
use super::money::Money;
use super::origin::OrderSource;
use super::status::{OrderState, OrderStatus, StatusCategory};
use super::tokenize::{PaymentEvent, StatusField};

/// Operator choices that change how events apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReconcilePolicy {
    /// Whether `TEST_ORDER=1` notifications change orders (sandboxes, the
    /// demo). Off by default: in production a test notification must never
    /// mark a real order paid (docs/protocol.md §10, "Test orders").
    pub apply_test_orders: bool,
    /// Where orders come from (`order-source`): which order a notice is
    /// about, and whether a notice may create it ([`OrderSource::key`]).
    pub order_source: OrderSource,
    /// The zone of the processor's date fields (`processor-timezone`):
    /// how a notice's dates become the time its money moved
    /// ([`crate::event_time::occurred_at`]).
    pub processor_time_zone: crate::event_time::ProcessorTimeZone,
}

/// What [`decide`] concluded about one event for one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The order's facts after the event (equal to the input when ignored,
    /// but for the processor reference).
    pub facts: OrderFacts,
    pub old_state: OrderState,
    pub new_state: OrderState,
    pub effect: Effect,
    /// Short, human, free of personal data: goes to the ledger and the CLI.
    pub reason: String,
    pub review_items: Vec<NewReviewItem>,
    /// Open review items the event made untrue.
    pub resolutions: Vec<AutoResolution>,
    /// `Applied`, `Ignored` or `Mismatch`.
    pub outcome: Outcome,
}

/// Decides what `event` does to an order with `facts` (design "Order
/// states", docs/protocol.md §10).
///
/// Pure and total: every event gives a decision, unknown statuses and
/// inconsistent notifications included; problems become review items.
pub fn decide(facts: &OrderFacts, event: &PaymentEvent, policy: &ReconcilePolicy) -> Decision {
    let old_state = facts.state();
    let mut step = Step {
        facts: facts.clone(),
        review_items: Vec::new(),
        resolutions: Vec::new(),
        mismatch: false,
    };
    if !event.pan_fields.is_empty() {
        // A card number in a notification is raised even when the event is
        // otherwise ignored: the leak happened whatever the order.
        step.review(NewReviewItem::pan_detected(&event.pan_fields));
    }

    let reason = if event.test_order && !policy.apply_test_orders {
        "test order".to_owned()
    } else {
        if step.facts.processor_ref.is_none() {
            step.facts.processor_ref = Some(event.processor_ref.clone());
        }
        step.apply(event)
    };
    step.raise_and_resolve(facts, &event.processor_ref);

    let effect = if step.facts.same_facts(facts) {
        Effect::Ignored
    } else {
        Effect::Applied
    };
    let outcome = if step.mismatch {
        Outcome::Mismatch
    } else {
        match effect {
            Effect::Applied => Outcome::Applied,
            Effect::Ignored => Outcome::Ignored,
        }
    };
    Decision {
        new_state: step.facts.state(),
        facts: step.facts,
        old_state,
        effect,
        reason,
        review_items: step.review_items,
        resolutions: step.resolutions,
        outcome,
    }
}

/// The facts being built by one [`decide`] call.
struct Step {
    facts: OrderFacts,
    review_items: Vec<NewReviewItem>,
    resolutions: Vec<AutoResolution>,
    /// The event disagreed with the order's amount or currency.
    mismatch: bool,
}

impl Step {
    fn review(&mut self, item: NewReviewItem) {
        self.review_items.push(item);
    }

    fn payment(&mut self, processor_ref: &str) -> &mut PaymentFacts {
        self.facts
            .payments
            .entry(processor_ref.to_owned())
            .or_default()
    }

    /// Applies the event's own meaning and returns the ledger reason.
    fn apply(&mut self, event: &PaymentEvent) -> String {
        if event.fraud_denied {
            // As the vendor's own plugin does: a DENIED order's status is
            // not acted upon, whatever it says (docs/protocol.md §2.3).
            return self.suspect(format!(
                "FRAUD_STATUS=DENIED (ORDERSTATUS={})",
                event.status.as_str()
            ));
        }
        if let Some(notice) = &event.chargeback {
            return self.dispute(event, notice);
        }
        let status = match &event.status {
            StatusField::Known(status) => *status,
            StatusField::Unknown(value) => {
                self.review(NewReviewItem::new(
                    ReviewKind::UnknownStatus,
                    format!("ORDERSTATUS `{value}` is not known; recorded without effect"),
                ));
                return "unknown status recorded: no change".to_owned();
            }
        };
        match status.category() {
            StatusCategory::Pending => format!("{status} recorded: no change"),
            StatusCategory::Authorization => self.authorization(event, status),
            StatusCategory::Payment => self.paid(event, status),
            StatusCategory::Refund => self.refund(event),
            StatusCategory::Reversal => self.reversal(event),
            StatusCategory::Cancellation => {
                if self.facts.canceled {
                    "cancellation already recorded: no change".to_owned()
                } else if self.facts.paid() > 0 {
                    self.facts.canceled = true;
                    "cancellation after payment recorded: state unchanged".to_owned()
                } else {
                    self.facts.canceled = true;
                    "cancellation recorded".to_owned()
                }
            }
            StatusCategory::Suspect => self.suspect(format!("ORDERSTATUS={status}")),
        }
    }

    fn suspect(&mut self, why: String) -> String {
        if self.facts.suspect {
            return format!("already suspect: {why} recorded, no change");
        }
        self.facts.suspect = true;
        self.review(NewReviewItem::new(
            ReviewKind::Suspect,
            format!("processor flagged the order: {why}"),
        ));
        format!("suspect: {why}")
    }

    /// Checks a payment's or authorization's amount against the order and
    /// raises the mismatch; `true` when it matches.
    fn amount_matches(&mut self, event: &PaymentEvent, status: OrderStatus) -> bool {
        let expected = self.facts.expected;
        let got = event.amount;
        let problem = if got.currency() != expected.currency() {
            Some((
                ReviewKind::CurrencyMismatch,
                format!("{status}: expected {expected}, notification has {got}"),
            ))
        } else if got != expected {
            Some((
                ReviewKind::AmountMismatch,
                format!("{status}: expected {expected}, notification has {got}"),
            ))
        } else if !got.is_positive() {
            // `paid > 0` is what "paid" means, so a zero-total order can
            // never be paid by a notification: a human decides.
            Some((
                ReviewKind::AmountMismatch,
                format!("{status}: amount {got} is not positive"),
            ))
        } else {
            None
        };
        match problem {
            None => true,
            Some((kind, details)) => {
                self.facts.mismatch = true;
                self.mismatch = true;
                self.review(NewReviewItem::for_payment(
                    kind,
                    &event.processor_ref,
                    details,
                ));
                false
            }
        }
    }

    fn authorization(&mut self, event: &PaymentEvent, status: OrderStatus) -> String {
        if !self.amount_matches(event, status) {
            return "authorization amount disagrees with the order".to_owned();
        }
        let already_paid = self.facts.paid() > 0;
        let payment = self.payment(&event.processor_ref);
        if payment.authorized {
            return "authorization already recorded: no change".to_owned();
        }
        payment.authorized = true;
        if already_paid {
            // Facts still grow (so every arrival order ends with the same
            // facts), but a paid order stays paid.
            "late authorization after payment: state unchanged".to_owned()
        } else {
            "authorization recorded".to_owned()
        }
    }

    fn paid(&mut self, event: &PaymentEvent, status: OrderStatus) -> String {
        // The amount is checked before anything else, also for an already
        // paid order: whether a wrong-amount payment is flagged must not
        // depend on whether the right one arrived first.
        // A payment of another amount that a person accepted into the
        // books (domain::review::book_capture) is that amount now: the same
        // capture sent again is the payment already recorded, not a new
        // disagreement.
        if self
            .facts
            .payments
            .get(&event.processor_ref)
            .is_some_and(|p| {
                p.paid > 0
                    && event.amount == Money::from_minor(p.paid, self.facts.expected.currency())
            })
        {
            return "payment already recorded: no change".to_owned();
        }
        if !self.amount_matches(event, status) {
            return "payment amount disagrees with the order".to_owned();
        }
        let first_payment = self.facts.paid() == 0;
        let expected = self.facts.expected.minor_units();
        let payment = self.payment(&event.processor_ref);
        if payment.paid > 0 {
            return "payment already recorded: no change".to_owned();
        }
        record_capture(payment, expected, &event.money);
        // A chargeback held for this payment counts from now on: it takes
        // what remains after the refunds counted so far.
        payment.fix_chargeback();
        if first_payment {
            self.facts.processor_ref = Some(event.processor_ref.clone());
            "payment recorded".to_owned()
        } else {
            format!(
                "second payment recorded under processor reference {}",
                event.processor_ref
            )
        }
    }

    fn refund(&mut self, event: &PaymentEvent) -> String {
        let expected = self.facts.expected;
        if event.amount.currency() != expected.currency() {
            self.facts.mismatch = true;
            self.mismatch = true;
            self.review(NewReviewItem::for_payment(
                ReviewKind::CurrencyMismatch,
                &event.processor_ref,
                format!(
                    "REFUND: order is in {}, refund of {}",
                    expected.currency(),
                    event.amount
                ),
            ));
            return "refund currency disagrees with the order".to_owned();
        }
        let amount = event.amount.abs();
        let payment = self.payment(&event.processor_ref);
        payment.refunded = payment.refunded.saturating_add(amount.minor_units());
        // What the refund gives back of VAT and commission (absolute), and
        // what it takes from the payout (signed as sent): summed like the
        // refunded amount, one refund notice at a time.
        let money = &event.money;
        if let Some(vat) = money.vat {
            payment.refunded_vat = payment.refunded_vat.saturating_add(vat.abs().minor_units());
        }
        if let Some(commission) = money.commission {
            payment.refunded_commission_e8 = payment
                .refunded_commission_e8
                .saturating_add(commission.abs().e8());
        }
        if let Some(payable) = money.payable {
            payment.refunded_payable = match payment.refunded_payable {
                None => Some(payable),
                // Another payout currency than the first: kept as the
                // first (the processor pays one merchant in one currency).
                Some(sum) => Some(sum.checked_add(&payable).unwrap_or(sum)),
            };
        }
        if payment.paid > 0 {
            format!("refund of {amount} recorded")
        } else {
            // Held as a fact: it counts once the payment under this
            // reference arrives (design, "A refund that arrives before its
            // payment is held as a fact").
            format!(
                "refund of {amount} held: no payment under processor reference {} (yet)",
                event.processor_ref
            )
        }
    }

    fn reversal(&mut self, event: &PaymentEvent) -> String {
        if self.payment(&event.processor_ref).reversed {
            return "reversal already recorded: no change".to_owned();
        }
        self.take_back_money(event);
        let payment = self.payment(&event.processor_ref);
        payment.reversed = true;
        payment.fix_chargeback();
        let counts = payment.charged_back_counts();
        let taken = payment.charged_back();
        let state = payment.state();
        if counts {
            format!("chargeback recorded: {} taken back", self.minor(taken))
        } else if state == PaymentState::Released {
            "reversal recorded: authorization released".to_owned()
        } else {
            format!(
                "reversal held: nothing under processor reference {} to reverse (yet)",
                event.processor_ref
            )
        }
    }

    /// `minor` units of the order's currency, for the ledger's reasons.
    fn minor(&self, minor: i64) -> crate::money::Money {
        crate::money::Money::from_minor(minor, self.facts.expected.currency())
    }

    /// Keeps what a notice that takes the payment back (a REVERSED, a
    /// dispute opened or lost) gives back of VAT and commission
    /// (absolute) and takes from the payout (signed as sent): counted only
    /// once the chargeback counts (the payment was captured), like a full
    /// refund's. The processor's documentation does not say what a
    /// chargeback notice carries (docs/finance.md, "The money in the
    /// notice"): what it sends is booked, what it leaves out gives nothing
    /// back. VAT and commission in another currency than the order's are
    /// not comparable with the capture's: left out. One chargeback can
    /// arrive as several notices (REVERSED, then the dispute's): each
    /// figure keeps the largest any of them carried, so the facts are the
    /// same in every arrival order and only grow.
    fn take_back_money(&mut self, event: &PaymentEvent) {
        let order_currency = self.facts.expected.currency();
        let payment = self.payment(&event.processor_ref);
        let money = &event.money;
        if event.amount.currency() == order_currency {
            let vat = money.vat.map_or(0, |v| v.abs().minor_units());
            payment.charged_back_vat = payment.charged_back_vat.max(vat);
            let commission = money.commission.map_or(0, |c| c.abs().e8());
            payment.charged_back_commission_e8 = payment.charged_back_commission_e8.max(commission);
        }
        // The larger amount taken from the payout; between equal sizes, the
        // debit (a chargeback takes money).
        let key = |m: &crate::money::Money| (m.minor_units().saturating_abs(), m.is_negative());
        payment.charged_back_payable = match (payment.charged_back_payable, money.payable) {
            (Some(kept), Some(new)) if key(&new) > key(&kept) => Some(new),
            (None, new) => new,
            (kept, _) => kept,
        };
    }

    /// A notice about a dispute (`CHARGEBACK_RESOLUTION` other than empty
    /// or `NONE`, docs/protocol.md §2.4), whatever its `ORDERSTATUS`:
    /// opened and lost take the money back (what remains after refunds),
    /// won reinstates it. A `REVERSED` with a resolution is a chargeback
    /// as without one. An unknown resolution is sent to review and moves
    /// nothing (but a `REVERSED` still takes the money back).
    fn dispute(&mut self, event: &PaymentEvent, notice: &ChargebackNotice) -> String {
        let reversed = event.status.known() == Some(OrderStatus::Reversed);
        let refno = event.processor_ref.clone();
        let Some(resolution) = notice.resolution.known() else {
            self.review(NewReviewItem::for_payment(
                ReviewKind::UnknownChargebackResolution,
                &refno,
                format!(
                    "CHARGEBACK_RESOLUTION `{}` is not known (ORDERSTATUS={}, reason code {}) under processor reference {refno}: recorded without effect",
                    notice.resolution.as_str(),
                    event.status.as_str(),
                    notice.reason_code.as_deref().unwrap_or("none"),
                ),
            ));
            if reversed {
                let booked = self.reversal(event);
                return format!(
                    "{booked}; unknown chargeback resolution `{}` sent to review",
                    notice.resolution.as_str()
                );
            }
            return format!(
                "unknown chargeback resolution `{}` recorded: no change",
                notice.resolution.as_str()
            );
        };
        let already = {
            let p = self.payment(&refno);
            match resolution {
                ChargebackResolution::Open => p.dispute_opened,
                ChargebackResolution::Won => p.dispute_won,
                ChargebackResolution::Lost | ChargebackResolution::Accepted => p.dispute_lost,
            }
        };
        let before = self.payment(&refno).clone();
        if reversed {
            self.reversal(event);
        }
        if resolution.takes() {
            self.take_back_money(event);
        }
        let payment = self.payment(&refno);
        match resolution {
            ChargebackResolution::Open => payment.dispute_opened = true,
            ChargebackResolution::Won => payment.dispute_won = true,
            ChargebackResolution::Lost | ChargebackResolution::Accepted => {
                payment.dispute_lost = true;
            }
        }
        payment.fix_chargeback();
        let after = payment.clone();
        if already && after == before {
            return format!(
                "chargeback {} already recorded: no change",
                notice.describe()
            );
        }
        if !after.charged_back_counts() {
            return format!(
                "chargeback {} held: nothing paid under processor reference {refno} (yet)",
                notice.describe()
            );
        }
        let taken = after.charged_back().saturating_sub(before.charged_back());
        let back = after.reinstated().saturating_sub(before.reinstated());
        let what = notice.describe();
        match (taken > 0, back > 0) {
            (true, true) => format!(
                "chargeback {what} recorded: {} taken back and {} reinstated",
                self.minor(taken),
                self.minor(back)
            ),
            (true, false) => format!(
                "chargeback {what} recorded: {} taken back",
                self.minor(taken)
            ),
            (false, true) => format!(
                "chargeback {what} recorded: {} reinstated",
                self.minor(back)
            ),
            (false, false) => format!("chargeback {what} recorded: nothing more moved"),
        }
    }

    /// Raises the review items whose condition first holds after this
    /// event, and closes those whose condition stopped holding.
    fn raise_and_resolve(&mut self, before: &OrderFacts, processor_ref: &str) {
        let now = self.facts.clone();
        if now.canceled_and_paid() && !before.canceled_and_paid() {
            self.review(NewReviewItem::new(
                ReviewKind::CanceledThenPaid,
                format!("order is canceled and paid ({})", now.paid_money()),
            ));
        }
        // Payment-level conditions concern only the event's payment.
        let empty = PaymentFacts::default();
        let was = before.payments.get(processor_ref).unwrap_or(&empty);
        let is = now.payments.get(processor_ref).unwrap_or(&empty);
        let currency = now.expected.currency();
        let money = |minor| crate::money::Money::from_minor(minor, currency);
        // A chargeback that stands (counted, not won) is looked at; a won
        // dispute closes the item (and one won before anything else was
        // known never raises it).
        let stands = |p: &PaymentFacts| p.charged_back_counts() && !p.dispute_won;
        self.track(
            ReviewKind::ReversedAfterPayment,
            processor_ref,
            stands(was),
            stands(is),
            || {
                format!(
                    "payment of {} under processor reference {processor_ref} was taken back after capture: a chargeback of {}",
                    money(is.paid),
                    money(is.charged_back())
                )
            },
            "the chargeback was won: the money was reinstated",
        );
        if is.over_refunded() && !was.over_refunded() {
            self.review(NewReviewItem::for_payment(
                ReviewKind::OverRefund,
                processor_ref,
                format!(
                    "refunds under processor reference {processor_ref} total {}, more than its payment of {}",
                    money(is.refunded),
                    money(is.paid)
                ),
            ));
        }
        self.track(
            ReviewKind::UnmatchedRefund,
            processor_ref,
            was.has_unmatched_refund(),
            is.has_unmatched_refund(),
            || {
                format!(
                    "refund of {} under processor reference {processor_ref}, which has not paid this order: held, no state changed",
                    money(is.refunded)
                )
            },
            "the payment under this processor reference arrived; the refund now counts",
        );
        self.track(
            ReviewKind::UnmatchedReversal,
            processor_ref,
            was.has_unmatched_reversal(),
            is.has_unmatched_reversal(),
            || {
                format!(
                    "reversal under processor reference {processor_ref}, which neither authorized nor paid this order: held, no state changed"
                )
            },
            "the payment under this processor reference arrived; the reversal now counts",
        );
        // One more paid payment is one more double charge to look at; a
        // double charge refunded or charged back under its own reference
        // closes one. Counted from the facts (see `raised_duplicates`), so
        // the totals do not depend on the arrival order.
        let raise = raised_duplicates(&now) - raised_duplicates(before);
        for _ in 0..raise {
            let others: Vec<&str> = now
                .payments
                .iter()
                .filter(|(refno, p)| p.paid > 0 && refno.as_str() != processor_ref)
                .map(|(refno, _)| refno.as_str())
                .collect();
            self.review(NewReviewItem::for_payment(
                ReviewKind::DuplicatePayment,
                processor_ref,
                format!(
                    "order paid {} times: {} under processor reference {processor_ref}, also paid under {}",
                    now.paid_count(),
                    money(is.paid),
                    others.join(", ")
                ),
            ));
        }
        let close = closed_duplicates(&now) - closed_duplicates(before);
        if close > 0 {
            self.resolutions.push(AutoResolution {
                kind: ReviewKind::DuplicatePayment,
                processor_ref: None,
                count: close,
                note: format!(
                    "the extra charge was undone (refunded or charged back) under processor reference {processor_ref}; {} payment(s) stand",
                    now.standing_count()
                ),
            });
        }
    }

    /// Raises `kind` for the payment when its condition starts to hold, and
    /// closes it when it stops.
    fn track(
        &mut self,
        kind: ReviewKind,
        processor_ref: &str,
        held: bool,
        holds: bool,
        details: impl FnOnce() -> String,
        note: &str,
    ) {
        if holds && !held {
            self.review(NewReviewItem::for_payment(kind, processor_ref, details()));
        }
        if held && !holds {
            self.resolutions.push(AutoResolution {
                kind,
                processor_ref: Some(processor_ref.to_owned()),
                count: 1,
                note: note.to_owned(),
            });
        }
    }
}

/// Records a capture of `paid` minor units on `payment`, with the
/// capture's money (set once with `paid`: a re-sent COMPLETE, another
/// identity of the same payment, changes nothing). Shared by [`decide`]
/// and a person's acceptance of a payment of another amount
/// ([`crate::review::book_capture`]), so both book the same VAT,
/// commission and payout side.
pub fn record_capture(
    payment: &mut PaymentFacts,
    paid: i64,
    money: &crate::notice_money::NoticeMoney,
) {
    payment.paid = paid;
    payment.vat = money.vat.map_or(0, |v| v.abs().minor_units());
    payment.commission_e8 = money.commission.map_or(0, |c| c.abs().e8());
    payment.payable = money.payable;
    payment.fx_rate = money.fx_rate.clone();
    payment.fx_markup = money.fx_markup.clone();
}

/// `duplicate_payment` items raised over an order's life: one per paid
/// payment beyond the first. Only grows.
fn raised_duplicates(facts: &OrderFacts) -> usize {
    facts.paid_count().saturating_sub(1)
}

/// `duplicate_payment` items closed by the system: those raised that no
/// longer have an extra standing payment behind them. Only grows, since a
/// payment stands only from the moment it is paid and stops for good.
fn closed_duplicates(facts: &OrderFacts) -> usize {
    raised_duplicates(facts) - facts.open_duplicates()
}
