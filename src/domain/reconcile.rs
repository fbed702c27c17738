//! The order state machine, as a pure function: `(facts, event) -> decision`.
//!
//! Notifications arrive late, twice, and out of order (docs/protocol.md §5): a refund
//! can overtake its payment, a PAYMENT_AUTHORIZED can follow COMPLETE. A
//! state machine driven by "the last event" would end in a different state
//! for each arrival order. So an order is described by [`OrderFacts`] that
//! only ever *grow* (flags go from false to true, totals only increase or
//! get set once), every event adds to them, and the [`OrderState`] is
//! *derived* from the facts by [`OrderFacts::state`]. Adding facts commutes,
//! so every arrival order of the same notifications ends in the same state;
//! the property tests at the bottom of this file check exactly that.
//!
//! Review items (things a human must look at) are raised at the step where
//! their condition *first* becomes true. Conditions that involve two facts
//! (canceled and paid, reversed and paid, refunds above the payment) are
//! monotone in the facts, so each is raised exactly once whatever the
//! arrival order, at whichever step completes it.
//!
//! Deduplication of identical notifications (same body digest) is the
//! caller's job and happens before [`decide`]: `decide` treats every event
//! it is given as a distinct notification (docs/protocol.md §10, "Duplicates").

use strum::{EnumCount, EnumString, IntoStaticStr, VariantArray};

use super::money::Money;
use super::status::{
    OrderState, OrderStatus, StatusCategory, UNKNOWN_VALUE_MAX_CHARS, clip_for_display,
};
use super::tokenize::{PaymentEvent, StatusField};

/// Operator choices that change how events apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReconcilePolicy {
    /// Whether `TEST_ORDER=1` notifications change orders (sandboxes, the
    /// demo). Off by default: in production a test notification must never
    /// mark a real order paid (docs/protocol.md §10, "Test orders").
    pub apply_test_orders: bool,
}

/// What we know about one merchant order, accumulated from every
/// notification applied to it. Plain values, so the store can keep them as
/// columns of the order row.
///
/// Every field only grows (see [`OrderFacts::check_grows_from`]); the state
/// is derived by [`OrderFacts::state`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFacts {
    /// The order's total as the shop recorded it: what a payment must match.
    pub expected: Money,
    /// A PAYMENT_AUTHORIZED with the right amount was received.
    pub authorized: bool,
    /// Minor units paid: 0, or `expected` once a matching payment arrived.
    /// Payments set it rather than add to it, because COMPLETE is re-sent
    /// (on invoice generation) and PAYMENT_RECEIVED may precede COMPLETE
    /// for the same money.
    pub paid: i64,
    /// Minor units refunded: the sum of the absolute amounts of every
    /// refund notification, including refunds received before the payment.
    /// Saturates at `i64::MAX` instead of overflowing (saturating addition
    /// of non-negative numbers still commutes).
    pub refunded: i64,
    /// A REVERSED notification was received.
    pub reversed: bool,
    /// A CANCELED notification was received.
    pub canceled: bool,
    /// The processor flagged the order (SUSPECT, INVALID, FRAUD_STATUS=DENIED).
    pub suspect: bool,
    /// A payment, authorization or refund disagreed with the order's amount
    /// or currency.
    pub mismatch: bool,
    /// The processor's reference (REFNO) for this order: the one of the
    /// first notification applied, replaced by the paying notification's at
    /// the first payment (the reference settlement files will carry).
    /// Bookkeeping, not a fact the state derives from: filling it in does
    /// not make a decision [`Effect::Applied`].
    pub processor_ref: Option<String>,
}

impl OrderFacts {
    /// A new order: nothing known yet but what it should cost.
    pub fn new(expected: Money) -> Self {
        Self {
            expected,
            authorized: false,
            paid: 0,
            refunded: 0,
            reversed: false,
            canceled: false,
            suspect: false,
            mismatch: false,
            processor_ref: None,
        }
    }

    /// The order's state, derived from the facts.
    ///
    /// The priority puts what needs a human first: a disagreement
    /// (`mismatch`), then the processor's own alarm (`suspect`), then a
    /// reversal (money taken back whatever else happened), then the money
    /// (refunds reduce a payment), and only then the intentions without
    /// money (canceled, authorized).
    pub fn state(&self) -> OrderState {
        if self.mismatch {
            OrderState::Mismatch
        } else if self.suspect {
            OrderState::Suspect
        } else if self.reversed {
            OrderState::Reversed
        } else if self.paid > 0 {
            if self.refunded >= self.paid {
                OrderState::Refunded
            } else if self.refunded > 0 {
                OrderState::PartiallyRefunded
            } else {
                OrderState::Paid
            }
        } else if self.canceled {
            OrderState::Canceled
        } else if self.authorized {
            OrderState::Authorized
        } else {
            OrderState::Pending
        }
    }

    /// The paid total as money.
    pub fn paid_money(&self) -> Money {
        Money::from_minor(self.paid, self.expected.currency())
    }

    /// The refunded total as money.
    pub fn refunded_money(&self) -> Money {
        Money::from_minor(self.refunded, self.expected.currency())
    }

    /// Checks what must hold for any facts `decide` produces.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.paid < 0 {
            return Err(format!("paid is negative ({})", self.paid));
        }
        if self.refunded < 0 {
            return Err(format!("refunded is negative ({})", self.refunded));
        }
        if self.paid != 0 && self.paid != self.expected.minor_units() {
            return Err(format!(
                "paid ({}) is neither 0 nor the expected total ({})",
                self.paid_money(),
                self.expected
            ));
        }
        if self.paid > 0 && self.processor_ref.is_none() {
            return Err("paid without a processor reference".to_owned());
        }
        Ok(())
    }

    /// Checks that `self` only added to `earlier`: no flag went back to
    /// false, no total shrank, the expected total did not change, and the
    /// processor reference, once known, changed only at the first payment.
    pub fn check_grows_from(&self, earlier: &OrderFacts) -> Result<(), String> {
        let flags = [
            ("authorized", earlier.authorized, self.authorized),
            ("reversed", earlier.reversed, self.reversed),
            ("canceled", earlier.canceled, self.canceled),
            ("suspect", earlier.suspect, self.suspect),
            ("mismatch", earlier.mismatch, self.mismatch),
        ];
        for (name, before, after) in flags {
            if before && !after {
                return Err(format!("{name} went from true to false"));
            }
        }
        if self.paid < earlier.paid {
            return Err(format!(
                "paid shrank from {} to {}",
                earlier.paid, self.paid
            ));
        }
        if earlier.paid != 0 && self.paid != earlier.paid {
            return Err(format!(
                "paid changed from {} to {}",
                earlier.paid, self.paid
            ));
        }
        if self.refunded < earlier.refunded {
            return Err(format!(
                "refunded shrank from {} to {}",
                earlier.refunded, self.refunded
            ));
        }
        if self.expected != earlier.expected {
            return Err("the expected total changed".to_owned());
        }
        let first_payment = earlier.paid == 0 && self.paid > 0;
        if earlier.processor_ref.is_some()
            && self.processor_ref != earlier.processor_ref
            && !(first_payment && self.processor_ref.is_some())
        {
            return Err("the processor reference changed outside the first payment".to_owned());
        }
        Ok(())
    }

    /// Whether two fact sets agree on everything the state derives from
    /// (all but the processor reference).
    fn same_order_facts(&self, other: &OrderFacts) -> bool {
        self.expected == other.expected
            && self.authorized == other.authorized
            && self.paid == other.paid
            && self.refunded == other.refunded
            && self.reversed == other.reversed
            && self.canceled == other.canceled
            && self.suspect == other.suspect
            && self.mismatch == other.mismatch
    }

    fn canceled_and_paid(&self) -> bool {
        self.canceled && self.paid > 0
    }

    fn reversed_and_paid(&self) -> bool {
        self.reversed && self.paid > 0
    }

    fn over_refunded(&self) -> bool {
        self.paid > 0 && self.refunded > self.paid
    }
}

/// Whether a decision changed what we know about the order.
///
/// The store should write [`Decision::facts`] in every case: an `Ignored`
/// decision may still fill in [`OrderFacts::processor_ref`].
///
/// Stored in the ledger (`order_events.effect`) as its snake_case name.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    IntoStaticStr,
    EnumString,
    strum::Display,
    VariantArray,
    EnumCount,
)]
#[strum(
    serialize_all = "snake_case",
    parse_err_ty = UnknownEffect,
    parse_err_fn = UnknownEffect::new
)]
pub enum Effect {
    /// A fact changed. The state may or may not have changed (a late
    /// authorization after payment is recorded as a fact but leaves the
    /// order `paid`).
    Applied,
    /// No fact changed; the event is only recorded in the ledger.
    Ignored,
}

/// A stored effect name that this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown effect `{0}`")]
pub struct UnknownEffect(String);

impl UnknownEffect {
    fn new(value: &str) -> Self {
        Self(clip_for_display(value, UNKNOWN_VALUE_MAX_CHARS))
    }
}

string_forms!(Effect, UnknownEffect, "effect");

/// The label reported for a processed notification (metrics, logs, the
/// ledger, the CLI). [`decide`] returns only `Applied`, `Ignored` and
/// `Mismatch`; the other variants are for the shell, which meets those
/// cases before there is an order to decide about.
///
/// The string form is the snake_case name (`order_not_found`). Every
/// outcome but `duplicate` is stored in `notifications.outcome`; a duplicate
/// is the notification already stored under another outcome.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    IntoStaticStr,
    EnumString,
    strum::Display,
    VariantArray,
    EnumCount,
)]
#[strum(
    serialize_all = "snake_case",
    parse_err_ty = UnknownOutcome,
    parse_err_fn = UnknownOutcome::new
)]
pub enum Outcome {
    /// The notification changed the order's facts.
    Applied,
    /// The same body (same digest) was already processed.
    Duplicate,
    /// The notification was recorded but changed nothing.
    Ignored,
    /// An amount or currency disagreed with the order.
    Mismatch,
    /// No order with the notification's REFNOEXT (after the grace period).
    OrderNotFound,
    /// The signature did not verify.
    InvalidSignature,
    /// The body could not be parsed or tokenized.
    Malformed,
}

/// A stored outcome name that this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown outcome `{0}`")]
pub struct UnknownOutcome(String);

impl UnknownOutcome {
    fn new(value: &str) -> Self {
        Self(clip_for_display(value, UNKNOWN_VALUE_MAX_CHARS))
    }
}

string_forms!(Outcome, UnknownOutcome, "outcome");

/// The kinds of review items: exceptions finance must look at.
///
/// Stored in `review_items.kind` and shown by the CLI as the snake_case
/// name (`amount_mismatch`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    IntoStaticStr,
    EnumString,
    strum::Display,
    VariantArray,
    EnumCount,
)]
#[strum(
    serialize_all = "snake_case",
    parse_err_ty = UnknownReviewKind,
    parse_err_fn = UnknownReviewKind::new
)]
pub enum ReviewKind {
    /// A payment or authorization for another amount than the order's.
    AmountMismatch,
    /// A payment, authorization or refund in another currency.
    CurrencyMismatch,
    /// A second payment under another processor reference.
    DuplicatePayment,
    /// The order was both canceled and paid.
    CanceledThenPaid,
    /// The order was paid and reversed (chargeback after capture).
    ReversedAfterPayment,
    /// Refunds exceed the payment.
    OverRefund,
    /// The processor flagged the order.
    Suspect,
    /// An ORDERSTATUS we do not know.
    UnknownStatus,
    /// A payment for an order that never appeared (raised by the shell).
    OrphanPayment,
    /// A card number in a notification (raised by [`decide`] and the shell).
    PanDetected,
    /// A notification that could not be processed (raised by the shell).
    InvalidNotification,
}

/// A stored review kind name that this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown review kind `{0}`")]
pub struct UnknownReviewKind(String);

impl UnknownReviewKind {
    fn new(value: &str) -> Self {
        Self(clip_for_display(value, UNKNOWN_VALUE_MAX_CHARS))
    }
}

string_forms!(ReviewKind, UnknownReviewKind, "review kind");

/// A review item to open. `details` is for the human reading the queue and
/// holds only amounts, references, statuses and field names, never personal
/// data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReviewItem {
    pub kind: ReviewKind,
    pub details: String,
}

impl NewReviewItem {
    pub fn new(kind: ReviewKind, details: impl Into<String>) -> Self {
        Self {
            kind,
            details: details.into(),
        }
    }

    /// The item for card numbers found in `fields` (names only).
    pub fn pan_detected(fields: &[String]) -> Self {
        Self::new(
            ReviewKind::PanDetected,
            format!(
                "card number found in field(s) {}; values dropped",
                fields.join(", ")
            ),
        )
    }
}

/// What [`decide`] concluded about one event for one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The order's facts after the event (equal to the input when ignored).
    pub facts: OrderFacts,
    pub old_state: OrderState,
    pub new_state: OrderState,
    pub effect: Effect,
    /// Short, human, free of personal data: goes to the ledger and the CLI.
    pub reason: String,
    pub review_items: Vec<NewReviewItem>,
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
    step.raise_combined(facts);

    let effect = if step.facts.same_order_facts(facts) {
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
        outcome,
    }
}

/// The facts being built by one [`decide`] call.
struct Step {
    facts: OrderFacts,
    review_items: Vec<NewReviewItem>,
    /// The event disagreed with the order's amount or currency.
    mismatch: bool,
}

impl Step {
    fn review(&mut self, item: NewReviewItem) {
        self.review_items.push(item);
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
            StatusCategory::Payment => self.payment(event, status),
            StatusCategory::Refund => self.refund(event),
            StatusCategory::Reversal => {
                if self.facts.reversed {
                    "reversal already recorded: no change".to_owned()
                } else {
                    self.facts.reversed = true;
                    "reversal recorded".to_owned()
                }
            }
            StatusCategory::Cancellation => {
                if self.facts.canceled {
                    "cancellation already recorded: no change".to_owned()
                } else if self.facts.paid > 0 {
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
                self.review(NewReviewItem::new(kind, details));
                false
            }
        }
    }

    fn authorization(&mut self, event: &PaymentEvent, status: OrderStatus) -> String {
        if !self.amount_matches(event, status) {
            return "authorization amount disagrees with the order".to_owned();
        }
        if self.facts.authorized {
            return "authorization already recorded: no change".to_owned();
        }
        self.facts.authorized = true;
        if self.facts.paid > 0 {
            // Facts still grow (so every arrival order ends with the same
            // facts), but a paid order stays paid.
            "late authorization after payment: state unchanged".to_owned()
        } else {
            "authorization recorded".to_owned()
        }
    }

    fn payment(&mut self, event: &PaymentEvent, status: OrderStatus) -> String {
        // The amount is checked before anything else, also for an already
        // paid order: whether a wrong-amount payment is flagged must not
        // depend on whether the right one arrived first.
        if !self.amount_matches(event, status) {
            return "payment amount disagrees with the order".to_owned();
        }
        if self.facts.paid > 0 {
            return match &self.facts.processor_ref {
                Some(first) if *first != event.processor_ref => {
                    let details = format!(
                        "order already paid under processor reference {first}; \
                         {status} of {} under processor reference {}",
                        event.amount, event.processor_ref
                    );
                    self.review(NewReviewItem::new(ReviewKind::DuplicatePayment, details));
                    "second payment under another processor reference: no change".to_owned()
                }
                _ => "payment already recorded: no change".to_owned(),
            };
        }
        self.facts.paid = event.amount.minor_units();
        self.facts.processor_ref = Some(event.processor_ref.clone());
        "payment recorded".to_owned()
    }

    fn refund(&mut self, event: &PaymentEvent) -> String {
        let expected = self.facts.expected;
        if event.amount.currency() != expected.currency() {
            self.facts.mismatch = true;
            self.mismatch = true;
            self.review(NewReviewItem::new(
                ReviewKind::CurrencyMismatch,
                format!(
                    "REFUND: order is in {}, refund of {}",
                    expected.currency(),
                    event.amount
                ),
            ));
            return "refund currency disagrees with the order".to_owned();
        }
        let amount = event.amount.abs();
        self.facts.refunded = self.facts.refunded.saturating_add(amount.minor_units());
        if self.facts.paid > 0 {
            format!("refund of {amount} recorded")
        } else {
            // Held as a fact: it counts once the payment arrives (design,
            // "A refund that arrives before its payment is held as a fact").
            format!("refund of {amount} recorded before the payment")
        }
    }

    /// Raises the review items whose condition involves two facts, at the
    /// step where it first holds.
    fn raise_combined(&mut self, before: &OrderFacts) {
        let now = self.facts.clone();
        if now.canceled_and_paid() && !before.canceled_and_paid() {
            self.review(NewReviewItem::new(
                ReviewKind::CanceledThenPaid,
                format!("order is canceled and paid ({})", now.paid_money()),
            ));
        }
        if now.reversed_and_paid() && !before.reversed_and_paid() {
            self.review(NewReviewItem::new(
                ReviewKind::ReversedAfterPayment,
                format!(
                    "order is reversed and paid ({}); check for a chargeback",
                    now.paid_money()
                ),
            ));
        }
        if now.over_refunded() && !before.over_refunded() {
            self.review(NewReviewItem::new(
                ReviewKind::OverRefund,
                format!(
                    "refunds total {}, more than the payment of {}",
                    now.refunded_money(),
                    now.paid_money()
                ),
            ));
        }
    }
}

#[cfg(test)]
// Amounts in cents are written `units_cents` (100_00 is 100.00 EUR).
#[allow(clippy::inconsistent_digit_grouping)]
mod tests {
    use super::*;
    use crate::domain::money::Currency;
    use crate::domain::tokenize::BodyDigest;
    use crate::ipn::{Algorithm, KeyId};
    use proptest::prelude::*;
    use std::collections::HashSet;

    const EXPECTED: i64 = 100_00;

    fn eur(minor: i64) -> Money {
        Money::from_minor(minor, Currency::parse("EUR").unwrap())
    }

    fn usd(minor: i64) -> Money {
        Money::from_minor(minor, Currency::parse("USD").unwrap())
    }

    fn new_order() -> OrderFacts {
        OrderFacts::new(eur(EXPECTED))
    }

    /// An event; the digest is derived from `tag`, so equal tags model the
    /// same body delivered twice.
    fn event_with(tag: &str, status: &str, amount: Money, processor_ref: &str) -> PaymentEvent {
        PaymentEvent {
            digest: BodyDigest::of(tag.as_bytes()),
            processor_ref: processor_ref.to_owned(),
            order_ref: "ORD-1".to_owned(),
            status: StatusField::parse(status),
            fraud_denied: false,
            test_order: false,
            amount,
            payment_method: Some("CCVISAMC".to_owned()),
            sale_date: None,
            payment_date: None,
            complete_date: None,
            ipn_date: None,
            key_id: KeyId::parse("default").unwrap(),
            algorithm: Algorithm::Sha256,
            customer_pseudonym: None,
            pan_fields: Vec::new(),
        }
    }

    fn event(status: &str, amount: Money) -> PaymentEvent {
        event_with(&format!("{status} {amount}"), status, amount, "1000037")
    }

    fn run(facts: &OrderFacts, events: &[PaymentEvent]) -> (OrderFacts, Vec<Decision>) {
        let policy = ReconcilePolicy::default();
        let mut facts = facts.clone();
        let mut decisions = Vec::new();
        for event in events {
            let decision = decide(&facts, event, &policy);
            facts = decision.facts.clone();
            decisions.push(decision);
        }
        (facts, decisions)
    }

    fn kinds(decisions: &[Decision]) -> Vec<ReviewKind> {
        decisions
            .iter()
            .flat_map(|d| d.review_items.iter().map(|item| item.kind))
            .collect()
    }

    #[test]
    fn state_priority() {
        let mut f = new_order();
        assert_eq!(f.state(), OrderState::Pending);
        f.authorized = true;
        assert_eq!(f.state(), OrderState::Authorized);
        f.canceled = true;
        assert_eq!(f.state(), OrderState::Canceled);
        f.paid = EXPECTED;
        assert_eq!(f.state(), OrderState::Paid);
        f.refunded = 1;
        assert_eq!(f.state(), OrderState::PartiallyRefunded);
        f.refunded = EXPECTED;
        assert_eq!(f.state(), OrderState::Refunded);
        f.reversed = true;
        assert_eq!(f.state(), OrderState::Reversed);
        f.suspect = true;
        assert_eq!(f.state(), OrderState::Suspect);
        f.mismatch = true;
        assert_eq!(f.state(), OrderState::Mismatch);
    }

    #[test]
    fn authorization_then_payment() {
        let (facts, d) = run(
            &new_order(),
            &[
                event("PAYMENT_AUTHORIZED", eur(EXPECTED)),
                event("COMPLETE", eur(EXPECTED)),
            ],
        );
        assert_eq!(d[0].new_state, OrderState::Authorized);
        assert_eq!(d[0].outcome, Outcome::Applied);
        assert_eq!(d[0].reason, "authorization recorded");
        assert_eq!(d[1].old_state, OrderState::Authorized);
        assert_eq!(d[1].new_state, OrderState::Paid);
        assert_eq!(d[1].reason, "payment recorded");
        assert_eq!(facts.paid, EXPECTED);
        assert_eq!(facts.processor_ref.as_deref(), Some("1000037"));
        assert!(kinds(&d).is_empty());
    }

    #[test]
    fn every_payment_status_pays() {
        for status in ["COMPLETE", "PAYMENT_RECEIVED", "AUTHRECEIVED"] {
            let d = decide(
                &new_order(),
                &event(status, eur(EXPECTED)),
                &ReconcilePolicy::default(),
            );
            assert_eq!(d.new_state, OrderState::Paid, "{status}");
        }
    }

    #[test]
    fn payments_are_idempotent_not_additive() {
        let (facts, d) = run(
            &new_order(),
            &[
                event_with("a", "PAYMENT_RECEIVED", eur(EXPECTED), "1"),
                event_with("b", "COMPLETE", eur(EXPECTED), "1"),
                event_with("c", "COMPLETE", eur(EXPECTED), "1"),
            ],
        );
        assert_eq!(facts.paid, EXPECTED);
        assert_eq!(d[1].effect, Effect::Ignored);
        assert_eq!(d[1].outcome, Outcome::Ignored);
        assert_eq!(d[1].reason, "payment already recorded: no change");
        assert!(kinds(&d).is_empty());
    }

    #[test]
    fn late_authorization_changes_no_state() {
        let (facts, d) = run(
            &new_order(),
            &[
                event("COMPLETE", eur(EXPECTED)),
                event("PAYMENT_AUTHORIZED", eur(EXPECTED)),
            ],
        );
        assert_eq!(d[1].old_state, OrderState::Paid);
        assert_eq!(d[1].new_state, OrderState::Paid);
        assert_eq!(
            d[1].reason,
            "late authorization after payment: state unchanged"
        );
        assert!(facts.authorized);
    }

    #[test]
    fn wrong_amount_or_currency_is_a_mismatch() {
        let policy = ReconcilePolicy::default();
        let d = decide(&new_order(), &event("COMPLETE", eur(EXPECTED - 1)), &policy);
        assert_eq!(d.new_state, OrderState::Mismatch);
        assert_eq!(d.outcome, Outcome::Mismatch);
        assert_eq!(d.facts.paid, 0, "a wrong payment is not a payment");
        assert_eq!(d.review_items[0].kind, ReviewKind::AmountMismatch);
        assert_eq!(
            d.review_items[0].details,
            "COMPLETE: expected 100.00 EUR, notification has 99.99 EUR"
        );

        let d = decide(&new_order(), &event("COMPLETE", usd(EXPECTED)), &policy);
        assert_eq!(d.review_items[0].kind, ReviewKind::CurrencyMismatch);
        assert_eq!(d.new_state, OrderState::Mismatch);

        let d = decide(&new_order(), &event("PAYMENT_AUTHORIZED", eur(1)), &policy);
        assert_eq!(d.review_items[0].kind, ReviewKind::AmountMismatch);
        assert!(!d.facts.authorized);

        // Wrong amount after the right one: still flagged (arrival order
        // must not decide whether a disagreement is seen).
        let (facts, d) = run(
            &new_order(),
            &[event("COMPLETE", eur(EXPECTED)), event("COMPLETE", eur(5))],
        );
        assert_eq!(facts.state(), OrderState::Mismatch);
        assert_eq!(kinds(&d), [ReviewKind::AmountMismatch]);
        assert_eq!(d[1].outcome, Outcome::Mismatch);

        // A second mismatch: new review item, facts unchanged, still Mismatch.
        let d = decide(&facts, &event("COMPLETE", eur(6)), &policy);
        assert_eq!(d.effect, Effect::Ignored);
        assert_eq!(d.outcome, Outcome::Mismatch);
        assert_eq!(d.review_items.len(), 1);
    }

    #[test]
    fn zero_total_payment_needs_a_human() {
        let order = OrderFacts::new(eur(0));
        let d = decide(
            &order,
            &event("COMPLETE", eur(0)),
            &ReconcilePolicy::default(),
        );
        assert_eq!(d.new_state, OrderState::Mismatch);
        assert_eq!(
            d.review_items[0].details,
            "COMPLETE: amount 0.00 EUR is not positive"
        );
        d.facts.check_invariants().unwrap();
    }

    #[test]
    fn refunds_are_additive_and_use_absolute_amounts() {
        let (facts, d) = run(
            &new_order(),
            &[
                event("COMPLETE", eur(EXPECTED)),
                event("REFUND", eur(-30_00)),
                event("REFUND", eur(20_00)),
            ],
        );
        assert_eq!(facts.refunded, 50_00);
        assert_eq!(facts.paid, EXPECTED, "a refund never adds to paid");
        assert_eq!(d[1].new_state, OrderState::PartiallyRefunded);
        assert_eq!(d[1].reason, "refund of 30.00 EUR recorded");
        let d = decide(
            &facts,
            &event("REFUND", eur(-50_00)),
            &ReconcilePolicy::default(),
        );
        assert_eq!(d.new_state, OrderState::Refunded);
        assert!(d.review_items.is_empty());
    }

    #[test]
    fn refund_in_another_currency_is_a_mismatch() {
        let (facts, d) = run(
            &new_order(),
            &[
                event("COMPLETE", eur(EXPECTED)),
                event("REFUND", usd(-10_00)),
            ],
        );
        assert_eq!(facts.refunded, 0);
        assert_eq!(facts.state(), OrderState::Mismatch);
        assert_eq!(kinds(&d), [ReviewKind::CurrencyMismatch]);
    }

    #[test]
    fn refund_before_payment_is_held_silently_then_counts() {
        let (facts, d) = run(
            &new_order(),
            &[
                event("REFUND", eur(-EXPECTED)),
                event("COMPLETE", eur(EXPECTED)),
            ],
        );
        assert_eq!(d[0].new_state, OrderState::Pending);
        assert_eq!(
            d[0].reason,
            "refund of 100.00 EUR recorded before the payment"
        );
        assert_eq!(facts.state(), OrderState::Refunded);
        assert!(kinds(&d).is_empty());
    }

    #[test]
    fn over_refund_is_raised_once_where_it_first_holds() {
        // After the payment.
        let (_, d) = run(
            &new_order(),
            &[
                event("COMPLETE", eur(EXPECTED)),
                event("REFUND", eur(-60_00)),
                event("REFUND", eur(-60_01)),
                event("REFUND", eur(-1_00)),
            ],
        );
        assert_eq!(kinds(&d), [ReviewKind::OverRefund]);
        assert_eq!(d[2].review_items[0].kind, ReviewKind::OverRefund);
        assert_eq!(
            d[2].review_items[0].details,
            "refunds total 120.01 EUR, more than the payment of 100.00 EUR"
        );
        assert_eq!(d[3].new_state, OrderState::Refunded);
        // Before the payment: raised when the payment arrives.
        let (_, d) = run(
            &new_order(),
            &[
                event("REFUND", eur(-150_00)),
                event("COMPLETE", eur(EXPECTED)),
            ],
        );
        assert!(d[0].review_items.is_empty());
        assert_eq!(d[1].review_items[0].kind, ReviewKind::OverRefund);
    }

    #[test]
    fn second_processor_reference_is_a_duplicate_payment() {
        let (facts, d) = run(
            &new_order(),
            &[
                event_with("a", "COMPLETE", eur(EXPECTED), "111"),
                event_with("b", "COMPLETE", eur(EXPECTED), "222"),
            ],
        );
        assert_eq!(facts.processor_ref.as_deref(), Some("111"));
        assert_eq!(facts.paid, EXPECTED);
        assert_eq!(d[1].effect, Effect::Ignored);
        assert_eq!(d[1].new_state, OrderState::Paid);
        assert_eq!(kinds(&d), [ReviewKind::DuplicatePayment]);
        assert!(d[1].review_items[0].details.contains("111"));
        assert!(d[1].review_items[0].details.contains("222"));
    }

    #[test]
    fn canceled_and_paid_in_either_order() {
        for events in [
            [event("CANCELED", eur(0)), event("COMPLETE", eur(EXPECTED))],
            [event("COMPLETE", eur(EXPECTED)), event("CANCELED", eur(0))],
        ] {
            let (facts, d) = run(&new_order(), &events);
            assert_eq!(facts.state(), OrderState::Paid);
            assert!(d[0].review_items.is_empty());
            assert_eq!(kinds(&d), [ReviewKind::CanceledThenPaid]);
        }
        let d = decide(
            &new_order(),
            &event("CANCELED", eur(0)),
            &ReconcilePolicy::default(),
        );
        assert_eq!(d.new_state, OrderState::Canceled);
    }

    #[test]
    fn reversed_and_paid_in_either_order_stays_reversed() {
        for events in [
            [
                event("REVERSED", eur(-EXPECTED)),
                event("COMPLETE", eur(EXPECTED)),
            ],
            [
                event("COMPLETE", eur(EXPECTED)),
                event("REVERSED", eur(-EXPECTED)),
            ],
        ] {
            let (facts, d) = run(&new_order(), &events);
            assert_eq!(facts.state(), OrderState::Reversed);
            assert!(d[0].review_items.is_empty());
            assert_eq!(kinds(&d), [ReviewKind::ReversedAfterPayment]);
        }
        let (facts, d) = run(
            &new_order(),
            &[
                event("PAYMENT_AUTHORIZED", eur(EXPECTED)),
                event("REVERSED", eur(-EXPECTED)),
            ],
        );
        assert_eq!(facts.state(), OrderState::Reversed);
        assert!(kinds(&d).is_empty(), "reversal before capture is normal");
    }

    #[test]
    fn suspect_invalid_and_fraud_denied() {
        let policy = ReconcilePolicy::default();
        for status in ["SUSPECT", "INVALID"] {
            let d = decide(&new_order(), &event(status, eur(EXPECTED)), &policy);
            assert_eq!(d.new_state, OrderState::Suspect);
            assert_eq!(d.review_items[0].kind, ReviewKind::Suspect);
            assert_eq!(d.outcome, Outcome::Applied);
        }
        let mut denied = event("COMPLETE", eur(EXPECTED));
        denied.fraud_denied = true;
        let d = decide(&new_order(), &denied, &policy);
        assert_eq!(d.new_state, OrderState::Suspect);
        assert_eq!(d.facts.paid, 0, "a denied payment is not acted upon");
        assert_eq!(
            d.review_items[0].details,
            "processor flagged the order: FRAUD_STATUS=DENIED (ORDERSTATUS=COMPLETE)"
        );
        // Raised once.
        let again = decide(&d.facts, &event("SUSPECT", eur(EXPECTED)), &policy);
        assert!(again.review_items.is_empty());
        assert_eq!(again.effect, Effect::Ignored);
    }

    #[test]
    fn pending_statuses_change_nothing() {
        for status in [
            "PENDING",
            "PURCHASE_PENDING",
            "PENDING_APPROVAL",
            "PENDING_ORDER_APPROVAL",
            "PROCESSING",
            "TEST",
        ] {
            let d = decide(
                &new_order(),
                &event(status, eur(EXPECTED)),
                &ReconcilePolicy::default(),
            );
            assert_eq!(d.effect, Effect::Ignored, "{status}");
            assert_eq!(d.outcome, Outcome::Ignored);
            let recorded_ref = OrderFacts {
                processor_ref: Some("1000037".into()),
                ..new_order()
            };
            assert_eq!(d.facts, recorded_ref, "only the reference is filled in");
            assert!(d.review_items.is_empty());
            assert_eq!(d.reason, format!("{status} recorded: no change"));
        }
    }

    #[test]
    fn unknown_status_is_a_review_item_not_a_crash() {
        let d = decide(
            &new_order(),
            &event("PARTIALLY_SHIPPED", eur(EXPECTED)),
            &ReconcilePolicy::default(),
        );
        assert_eq!(d.effect, Effect::Ignored);
        assert_eq!(d.outcome, Outcome::Ignored);
        assert_eq!(d.review_items[0].kind, ReviewKind::UnknownStatus);
        assert!(d.review_items[0].details.contains("PARTIALLY_SHIPPED"));
    }

    #[test]
    fn test_orders_are_ignored_unless_enabled() {
        let mut test = event("COMPLETE", eur(EXPECTED));
        test.test_order = true;
        let d = decide(&new_order(), &test, &ReconcilePolicy::default());
        assert_eq!(d.effect, Effect::Ignored);
        assert_eq!(d.reason, "test order");
        assert_eq!(d.new_state, OrderState::Pending);
        let enabled = ReconcilePolicy {
            apply_test_orders: true,
        };
        assert_eq!(
            decide(&new_order(), &test, &enabled).new_state,
            OrderState::Paid
        );
    }

    #[test]
    fn processor_reference_is_the_first_seen_then_the_payer() {
        let (facts, d) = run(
            &new_order(),
            &[
                event_with("a", "PENDING", eur(EXPECTED), "111"),
                event_with("b", "PAYMENT_AUTHORIZED", eur(EXPECTED), "222"),
            ],
        );
        assert_eq!(facts.processor_ref.as_deref(), Some("111"));
        assert_eq!(d[0].effect, Effect::Ignored);
        let (facts, d) = run(&facts, &[event_with("c", "COMPLETE", eur(EXPECTED), "333")]);
        assert_eq!(facts.processor_ref.as_deref(), Some("333"));
        assert!(kinds(&d).is_empty(), "the first payment is not a duplicate");

        let mut test = event_with("t", "COMPLETE", eur(EXPECTED), "444");
        test.test_order = true;
        let d = decide(&new_order(), &test, &ReconcilePolicy::default());
        assert_eq!(
            d.facts.processor_ref, None,
            "ignored test orders record nothing"
        );
    }

    #[test]
    fn pan_fields_raise_a_review_item_even_when_ignored() {
        let mut e = event("PENDING", eur(EXPECTED));
        e.pan_fields = vec!["COMMENTS".into(), "ADDRESS1".into()];
        let d = decide(&new_order(), &e, &ReconcilePolicy::default());
        assert_eq!(d.review_items.len(), 1);
        assert_eq!(d.review_items[0].kind, ReviewKind::PanDetected);
        assert_eq!(
            d.review_items[0].details,
            "card number found in field(s) COMMENTS, ADDRESS1; values dropped"
        );
    }

    #[test]
    fn labels_round_trip() {
        for kind in ReviewKind::ALL {
            assert_eq!(ReviewKind::parse(kind.as_str()), Ok(kind));
        }
        for outcome in Outcome::ALL {
            assert_eq!(Outcome::parse(outcome.as_str()), Ok(outcome));
        }
        assert_eq!(Outcome::OrderNotFound.as_str(), "order_not_found");
        assert!(ReviewKind::parse("nope").is_err());
    }

    #[test]
    fn effects_have_fixed_string_forms() {
        assert_string_forms!(Effect, ["applied", "ignored"]);
    }

    #[test]
    fn outcomes_have_fixed_string_forms() {
        assert_string_forms!(
            Outcome,
            [
                "applied",
                "duplicate",
                "ignored",
                "mismatch",
                "order_not_found",
                "invalid_signature",
                "malformed",
            ]
        );
    }

    #[test]
    fn review_kinds_have_fixed_string_forms() {
        assert_string_forms!(
            ReviewKind,
            [
                "amount_mismatch",
                "currency_mismatch",
                "duplicate_payment",
                "canceled_then_paid",
                "reversed_after_payment",
                "over_refund",
                "suspect",
                "unknown_status",
                "orphan_payment",
                "pan_detected",
                "invalid_notification",
            ]
        );
    }

    #[test]
    fn invariant_checks_catch_violations() {
        let mut f = new_order();
        f.paid = 5;
        f.processor_ref = Some("1".into());
        assert!(f.check_invariants().is_err());
        let mut g = new_order();
        g.authorized = true;
        assert!(new_order().check_grows_from(&g).is_err());
        assert!(g.check_grows_from(&new_order()).is_ok());
    }

    /// authorized -> complete -> partial refund -> rest refunded, in each
    /// of the 24 arrival orders: always `refunded`, never a review item.
    #[test]
    fn realistic_lifecycle_in_every_arrival_order() {
        let events = [
            event("PAYMENT_AUTHORIZED", eur(EXPECTED)),
            event("COMPLETE", eur(EXPECTED)),
            event_with("partial", "REFUND", eur(-30_00), "1000037"),
            event_with("rest", "REFUND", eur(-70_00), "1000037"),
        ];
        let mut permutations = 0;
        for order in permutations_of(4) {
            let sequence: Vec<_> = order.iter().map(|&i| events[i].clone()).collect();
            let (facts, decisions) = run(&new_order(), &sequence);
            assert_eq!(facts.state(), OrderState::Refunded, "{order:?}");
            assert_eq!(facts.paid, EXPECTED);
            assert_eq!(facts.refunded, EXPECTED);
            assert!(facts.authorized);
            assert!(kinds(&decisions).is_empty(), "{order:?}");
            for d in &decisions {
                d.facts.check_invariants().unwrap();
                assert_eq!(d.outcome, Outcome::Applied);
            }
            permutations += 1;
        }
        assert_eq!(permutations, 24);
        // And the canonical order passes through every state.
        let (_, d) = run(&new_order(), &events);
        let states: Vec<_> = d.iter().map(|d| d.new_state).collect();
        assert_eq!(
            states,
            [
                OrderState::Authorized,
                OrderState::Paid,
                OrderState::PartiallyRefunded,
                OrderState::Refunded
            ]
        );
    }

    fn permutations_of(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![Vec::new()];
        }
        let mut out = Vec::new();
        for smaller in permutations_of(n - 1) {
            for position in 0..=smaller.len() {
                let mut p = smaller.clone();
                p.insert(position, n - 1);
                out.push(p);
            }
        }
        out
    }

    /// The signed fixture notifications (`fixtures/`, generated by an
    /// independent Python model) end in the states of `expected.json`, in
    /// wire order and reversed, and leak nothing personal.
    #[test]
    fn fixture_notifications_reach_the_expected_states() {
        use crate::domain::tokenize::{PseudonymKey, tokenize};
        use crate::ipn::{FormLimits, KeyRing, SignaturePolicy, parse_and_verify};
        use std::collections::BTreeMap;
        use std::path::Path;

        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let ring = KeyRing::from_file(&root.join("keys/test.keys")).unwrap();
        let pseudonym_key = PseudonymKey::new(
            std::fs::read(root.join("keys/pseudonym.key"))
                .unwrap()
                .trim_ascii(),
        );
        let personal: Vec<String> = serde_json::from_str(
            &std::fs::read_to_string(root.join("personal-data.json")).unwrap(),
        )
        .unwrap();

        let mut orders = BTreeMap::new();
        let csv = std::fs::read_to_string(root.join("orders.csv")).unwrap();
        for line in csv.lines().skip(1) {
            let cols: Vec<_> = line.split(',').collect();
            let expected = Money::parse(cols[1], cols[2]).unwrap();
            orders.insert(cols[0].to_owned(), OrderFacts::new(expected));
        }

        let mut files: Vec<_> = std::fs::read_dir(root.join("ipn"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
            .collect();
        files.sort();
        let mut events = Vec::new();
        for path in &files {
            let raw = std::fs::read(path).unwrap();
            let raw = raw.trim_ascii_end();
            let (form, verified) = parse_and_verify(
                raw,
                &FormLimits::default(),
                &ring,
                &SignaturePolicy::default(),
            )
            .unwrap();
            let event = tokenize(raw, &form, &verified, Some(&pseudonym_key)).unwrap();
            assert!(event.pan_fields.is_empty(), "{path:?}");
            assert!(event.customer_pseudonym.is_some());
            let shown = format!("{event:?}");
            for value in &personal {
                assert!(!shown.contains(value.as_str()), "{value} in {path:?}");
            }
            events.push(event);
        }

        let expected: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(root.join("expected.json")).unwrap())
                .unwrap();
        for reversed in [false, true] {
            let mut state = orders.clone();
            let sequence: Vec<_> = if reversed {
                events.iter().rev().collect()
            } else {
                events.iter().collect()
            };
            for event in sequence {
                let facts = state.get_mut(&event.order_ref).unwrap();
                let decision = decide(facts, event, &ReconcilePolicy::default());
                for text in std::iter::once(&decision.reason)
                    .chain(decision.review_items.iter().map(|item| &item.details))
                {
                    for value in &personal {
                        assert!(!text.contains(value.as_str()), "{value} in {text}");
                    }
                }
                *facts = decision.facts;
            }
            for (order_ref, want) in &expected {
                let facts = &state[order_ref];
                let context = format!("{order_ref} (reversed: {reversed})");
                assert_eq!(facts.state().as_str(), want["status"], "{context}");
                assert_eq!(
                    facts.paid_money().format_amount(),
                    want["paid"],
                    "{context}"
                );
                assert_eq!(
                    facts.refunded_money().format_amount(),
                    want["refunded"],
                    "{context}"
                );
                assert_eq!(
                    facts.processor_ref.as_deref(),
                    want["processor_ref"].as_str(),
                    "{context}"
                );
            }
        }
    }

    // ----- property tests -------------------------------------------------

    /// The kinds of notification one order can receive.
    #[derive(Debug, Clone)]
    enum Kind {
        Authorized {
            right_amount: bool,
        },
        Paid {
            status: &'static str,
            right_amount: bool,
            processor_ref: &'static str,
        },
        Refund {
            minor: i64,
            right_currency: bool,
        },
        Reversed,
        Canceled,
        Suspect(&'static str),
        FraudDenied,
        Pending(&'static str),
        Unknown,
        TestOrderPayment,
        WithPan,
    }

    fn any_kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            any::<bool>().prop_map(|right_amount| Kind::Authorized { right_amount }),
            (
                prop::sample::select(vec!["COMPLETE", "PAYMENT_RECEIVED", "AUTHRECEIVED"]),
                prop::bool::weighted(0.8),
                prop::sample::select(vec!["111", "222"]),
            )
                .prop_map(|(status, right_amount, processor_ref)| Kind::Paid {
                    status,
                    right_amount,
                    processor_ref
                }),
            (
                prop::sample::select(vec![-EXPECTED, -30_00, 30_00, -70_00, -1, 0, -250_00]),
                prop::bool::weighted(0.9),
            )
                .prop_map(|(minor, right_currency)| Kind::Refund {
                    minor,
                    right_currency
                }),
            Just(Kind::Reversed),
            Just(Kind::Canceled),
            prop::sample::select(vec!["SUSPECT", "INVALID"]).prop_map(Kind::Suspect),
            Just(Kind::FraudDenied),
            prop::sample::select(vec!["PENDING", "PENDING_APPROVAL", "PROCESSING"])
                .prop_map(Kind::Pending),
            Just(Kind::Unknown),
            Just(Kind::TestOrderPayment),
            Just(Kind::WithPan),
        ]
    }

    fn materialize(index: usize, kind: &Kind) -> PaymentEvent {
        let tag = format!("event-{index}");
        match *kind {
            Kind::Authorized { right_amount } => {
                let minor = if right_amount { EXPECTED } else { EXPECTED + 1 };
                event_with(&tag, "PAYMENT_AUTHORIZED", eur(minor), "111")
            }
            Kind::Paid {
                status,
                right_amount,
                processor_ref,
            } => {
                let minor = if right_amount { EXPECTED } else { EXPECTED / 2 };
                event_with(&tag, status, eur(minor), processor_ref)
            }
            Kind::Refund {
                minor,
                right_currency,
            } => {
                let amount = if right_currency {
                    eur(minor)
                } else {
                    usd(minor)
                };
                event_with(&tag, "REFUND", amount, "111")
            }
            Kind::Reversed => event_with(&tag, "REVERSED", eur(-EXPECTED), "111"),
            Kind::Canceled => event_with(&tag, "CANCELED", eur(EXPECTED), "111"),
            Kind::Suspect(status) => event_with(&tag, status, eur(EXPECTED), "111"),
            Kind::FraudDenied => {
                let mut e = event_with(&tag, "COMPLETE", eur(EXPECTED), "111");
                e.fraud_denied = true;
                e
            }
            Kind::Pending(status) => event_with(&tag, status, eur(EXPECTED), "111"),
            Kind::Unknown => event_with(&tag, "SOMETHING_NEW", eur(EXPECTED), "111"),
            Kind::TestOrderPayment => {
                let mut e = event_with(&tag, "COMPLETE", eur(EXPECTED), "111");
                e.test_order = true;
                e
            }
            Kind::WithPan => {
                let mut e = event_with(&tag, "PENDING", eur(EXPECTED), "111");
                e.pan_fields = vec!["COMMENTS".into()];
                e
            }
        }
    }

    /// A delivery sequence: distinct notifications plus redeliveries of some
    /// of them (same body, same digest).
    fn deliveries() -> impl Strategy<Value = Vec<PaymentEvent>> {
        prop::collection::vec(any_kind(), 0..12)
            .prop_flat_map(|kinds| {
                let n = kinds.len();
                let repeats = if n == 0 {
                    Just(Vec::new()).boxed()
                } else {
                    prop::collection::vec(0..n, 0..4).boxed()
                };
                (Just(kinds), repeats)
            })
            .prop_map(|(kinds, repeats)| {
                let mut events: Vec<_> = kinds
                    .iter()
                    .enumerate()
                    .map(|(i, k)| materialize(i, k))
                    .collect();
                for i in repeats {
                    let again = events[i].clone();
                    events.push(again);
                }
                events
            })
    }

    /// Applies deliveries as the shell does: skips a digest already seen,
    /// checks the invariants and growth after every step.
    fn replay(
        events: &[PaymentEvent],
        policy: &ReconcilePolicy,
    ) -> Result<(OrderFacts, Vec<Decision>), TestCaseError> {
        let mut facts = new_order();
        let mut seen = HashSet::new();
        let mut decisions = Vec::new();
        for event in events {
            if !seen.insert(event.digest.clone()) {
                continue;
            }
            let decision = decide(&facts, event, policy);
            decision
                .facts
                .check_invariants()
                .map_err(TestCaseError::fail)?;
            decision
                .facts
                .check_grows_from(&facts)
                .map_err(TestCaseError::fail)?;
            prop_assert_eq!(decision.old_state, facts.state());
            prop_assert_eq!(decision.new_state, decision.facts.state());
            prop_assert_eq!(
                decision.effect == Effect::Ignored,
                comparable(&decision.facts) == comparable(&facts),
                "effect must say whether the facts changed"
            );
            facts = decision.facts.clone();
            decisions.push(decision);
        }
        Ok((facts, decisions))
    }

    /// Facts without the first processor reference, which legitimately
    /// depends on which payment came first.
    fn comparable(facts: &OrderFacts) -> OrderFacts {
        OrderFacts {
            processor_ref: None,
            ..facts.clone()
        }
    }

    fn count(decisions: &[Decision], kind: ReviewKind) -> usize {
        kinds(decisions).into_iter().filter(|k| *k == kind).count()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arrival_order_does_not_change_the_outcome(
            (canonical, shuffled) in deliveries()
                .prop_flat_map(|events| (Just(events.clone()), Just(events).prop_shuffle())),
            apply_test_orders in any::<bool>(),
        ) {
            let policy = ReconcilePolicy { apply_test_orders };
            let (expected, expected_decisions) = replay(&canonical, &policy)?;
            let (actual, actual_decisions) = replay(&shuffled, &policy)?;
            prop_assert_eq!(actual.state(), expected.state());
            prop_assert_eq!(actual.paid, expected.paid);
            prop_assert_eq!(actual.refunded, expected.refunded);
            prop_assert_eq!(comparable(&actual), comparable(&expected));
            // The conditions raised "where they first hold" are raised
            // exactly once (or never) in every arrival order.
            for kind in [
                ReviewKind::CanceledThenPaid,
                ReviewKind::ReversedAfterPayment,
                ReviewKind::OverRefund,
                ReviewKind::Suspect,
            ] {
                let n = count(&actual_decisions, kind);
                prop_assert!(n <= 1, "{kind} raised {n} times");
                prop_assert_eq!(n, count(&expected_decisions, kind), "{}", kind);
            }
            // Events whose review items do not depend on order.
            for kind in [
                ReviewKind::AmountMismatch,
                ReviewKind::CurrencyMismatch,
                ReviewKind::UnknownStatus,
                ReviewKind::PanDetected,
            ] {
                prop_assert_eq!(
                    count(&actual_decisions, kind),
                    count(&expected_decisions, kind),
                    "{}", kind
                );
            }
        }

        #[test]
        fn redelivering_everything_changes_nothing(events in deliveries()) {
            let policy = ReconcilePolicy::default();
            let (once, _) = replay(&events, &policy)?;
            let twice: Vec<_> = events.iter().chain(events.iter()).cloned().collect();
            let (again, _) = replay(&twice, &policy)?;
            prop_assert_eq!(again, once);
        }

        #[test]
        fn decisions_hold_no_pseudonym_or_payment_method(events in deliveries()) {
            let key = crate::domain::tokenize::PseudonymKey::new(b"k");
            let pseudonym = key.pseudonymize_email("jane@example.com").unwrap();
            let events: Vec<_> = events
                .into_iter()
                .map(|mut e| {
                    e.customer_pseudonym = Some(pseudonym.clone());
                    e
                })
                .collect();
            let (_, decisions) = replay(&events, &ReconcilePolicy::default())?;
            for d in decisions {
                let mut texts = vec![d.reason];
                texts.extend(d.review_items.into_iter().map(|item| item.details));
                for text in texts {
                    prop_assert!(!text.contains(pseudonym.as_str()));
                    prop_assert!(!text.contains("CCVISAMC"));
                }
            }
        }
    }
}
