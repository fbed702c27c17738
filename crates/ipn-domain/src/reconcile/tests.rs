//! Unit and property tests of the state machine.
// Amounts in cents are written `units_cents` (100_00 is 100.00 EUR).
#![allow(clippy::inconsistent_digit_grouping)]
use super::*;
use crate::ipn::{Algorithm, KeyId};
use crate::money::{Currency, Money};
use crate::origin::OrderSource;
use crate::tokenize::{BodyDigest, EventIdentity};
use proptest::prelude::*;
use std::collections::HashSet;

const EXPECTED: i64 = 100_00;

fn eur(minor: i64) -> Money {
    Money::from_minor(minor, Currency::iso("EUR").unwrap())
}

fn usd(minor: i64) -> Money {
    Money::from_minor(minor, Currency::iso("USD").unwrap())
}

fn new_order() -> OrderFacts {
    OrderFacts::new(eur(EXPECTED))
}

/// An event; the digest is derived from `tag`, so equal tags model the
/// same body delivered twice.
fn event_with(tag: &str, status: &str, amount: Money, processor_ref: &str) -> PaymentEvent {
    PaymentEvent {
        carries_message_id: false,
        digest: BodyDigest::of(tag.as_bytes()),
        identity: EventIdentity::parse(BodyDigest::of(tag.as_bytes()).as_str()).unwrap(),
        processor_ref: processor_ref.to_owned(),
        merchant_ref: Some("ORD-1".to_owned()),
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
        licences: Vec::new(),
        chargeback: None,
        money: Default::default(),
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

/// The items still open after the decisions: raised, minus those the
/// system closed.
fn open_kinds(decisions: &[Decision]) -> Vec<ReviewKind> {
    let mut open = Vec::new();
    for d in decisions {
        open.extend(d.review_items.iter().map(|item| item.kind));
        for resolution in &d.resolutions {
            for _ in 0..resolution.count {
                if let Some(at) = open.iter().position(|k| *k == resolution.kind) {
                    open.remove(at);
                }
            }
        }
    }
    open
}

#[test]
fn state_priority() {
    let mut f = new_order();
    assert_eq!(f.state(), OrderState::Pending);
    fn p(f: &mut OrderFacts) -> &mut PaymentFacts {
        f.payments.entry("1".into()).or_default()
    }
    p(&mut f).authorized = true;
    assert_eq!(f.state(), OrderState::Authorized);
    f.canceled = true;
    assert_eq!(f.state(), OrderState::Canceled);
    p(&mut f).paid = EXPECTED;
    assert_eq!(f.state(), OrderState::Paid);
    p(&mut f).refunded = 1;
    assert_eq!(f.state(), OrderState::PartiallyRefunded);
    p(&mut f).refunded = EXPECTED;
    assert_eq!(f.state(), OrderState::Refunded);
    // Refunded in full, a chargeback has nothing left to take.
    let mut all_refunded = f.clone();
    p(&mut all_refunded).reversed = true;
    p(&mut all_refunded).fix_chargeback();
    assert_eq!(all_refunded.state(), OrderState::Refunded);
    assert_eq!(all_refunded.charged_back(), 0);
    p(&mut f).refunded = 1;
    p(&mut f).reversed = true;
    p(&mut f).fix_chargeback();
    assert_eq!(f.state(), OrderState::Reversed);
    assert_eq!(f.charged_back(), EXPECTED - 1);
    // Won: the payment stands again, as it stood before.
    let mut won = f.clone();
    p(&mut won).dispute_won = true;
    assert_eq!(won.state(), OrderState::PartiallyRefunded);
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
    assert_eq!(facts.paid(), EXPECTED);
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
    assert_eq!(facts.paid(), EXPECTED);
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
    assert!(facts.authorized());
}

#[test]
fn wrong_amount_or_currency_is_a_mismatch() {
    let policy = ReconcilePolicy::default();
    let d = decide(&new_order(), &event("COMPLETE", eur(EXPECTED - 1)), &policy);
    assert_eq!(d.new_state, OrderState::Mismatch);
    assert_eq!(d.outcome, Outcome::Mismatch);
    assert_eq!(d.facts.paid(), 0, "a wrong payment is not a payment");
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
    assert!(!d.facts.authorized());

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
    assert_eq!(facts.refunded(), 50_00);
    assert_eq!(facts.paid(), EXPECTED, "a refund never adds to paid");
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
    assert_eq!(facts.refunded(), 0);
    assert_eq!(facts.state(), OrderState::Mismatch);
    assert_eq!(kinds(&d), [ReviewKind::CurrencyMismatch]);
}

#[test]
fn refund_before_payment_is_held_then_counts_and_its_item_closes() {
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
        "refund of 100.00 EUR held: no payment under processor reference 1000037 (yet)"
    );
    assert_eq!(kinds(&d[..1]), [ReviewKind::UnmatchedRefund]);
    assert_eq!(facts.state(), OrderState::Refunded);
    assert_eq!(
        d[1].resolutions,
        [AutoResolution {
            kind: ReviewKind::UnmatchedRefund,
            processor_ref: Some("1000037".into()),
            count: 1,
            note: "the payment under this processor reference arrived; the refund now counts"
                .into(),
        }]
    );
    assert!(open_kinds(&d).is_empty());
}

/// A REFUND or REVERSED under a reference that never paid the order is held
/// and changes no state: it must not refund or reverse a payment it is not
/// about.
#[test]
fn refunds_and_reversals_under_a_foreign_reference_change_nothing() {
    let paid = run(
        &new_order(),
        &[event_with("a", "COMPLETE", eur(EXPECTED), "111")],
    )
    .0;
    let policy = ReconcilePolicy::default();
    let refund = decide(
        &paid,
        &event_with("r", "REFUND", eur(-30_00), "999"),
        &policy,
    );
    assert_eq!(refund.new_state, OrderState::Paid);
    assert_eq!(refund.facts.refunded(), 0);
    assert_eq!(refund.review_items[0].kind, ReviewKind::UnmatchedRefund);
    assert_eq!(refund.review_items[0].processor_ref.as_deref(), Some("999"));

    let reversal = decide(
        &paid,
        &event_with("v", "REVERSED", eur(-EXPECTED), "999"),
        &policy,
    );
    assert_eq!(reversal.new_state, OrderState::Paid);
    assert_eq!(reversal.facts.charged_back(), 0);
    assert_eq!(reversal.review_items[0].kind, ReviewKind::UnmatchedReversal);

    // On an order with nothing paid, a stray reversal reverses nothing either.
    let stray = decide(
        &new_order(),
        &event_with("v", "REVERSED", eur(-EXPECTED), "999"),
        &policy,
    );
    assert_eq!(stray.new_state, OrderState::Pending);
}

/// A double charge (paid under A and again under B) refunded under B, the
/// normal fix: the order stays paid (A stands), and the duplicate_payment
/// item is closed saying so, in either arrival order.
#[test]
fn a_double_charge_refunded_under_its_own_reference_leaves_the_order_paid() {
    let events = [
        event_with("a", "COMPLETE", eur(EXPECTED), "111"),
        event_with("b", "COMPLETE", eur(EXPECTED), "222"),
        event_with("r", "REFUND", eur(-EXPECTED), "222"),
    ];
    for order in permutations_of(3) {
        let sequence: Vec<_> = order.iter().map(|&i| events[i].clone()).collect();
        let (facts, d) = run(&new_order(), &sequence);
        assert_eq!(facts.state(), OrderState::Paid, "{order:?}");
        assert_eq!(facts.paid(), 2 * EXPECTED);
        assert_eq!(facts.refunded(), EXPECTED);
        assert_eq!(facts.standing_count(), 1);
        assert_eq!(
            kinds(&d)
                .iter()
                .filter(|k| **k == ReviewKind::DuplicatePayment)
                .count(),
            1,
            "{order:?}"
        );
        assert!(open_kinds(&d).is_empty(), "{order:?}: {:?}", open_kinds(&d));
    }
    // Not refunded: the duplicate stays open.
    let (_, d) = run(&new_order(), &events[..2]);
    assert_eq!(open_kinds(&d), [ReviewKind::DuplicatePayment]);
}

#[test]
fn a_chargeback_reverses_its_payment_only() {
    let (facts, d) = run(
        &new_order(),
        &[
            event_with("a", "COMPLETE", eur(EXPECTED), "111"),
            event_with("v", "REVERSED", eur(-EXPECTED), "111"),
        ],
    );
    assert_eq!(facts.state(), OrderState::Reversed);
    assert_eq!(facts.charged_back(), EXPECTED);
    assert_eq!(d[1].reason, "chargeback recorded: 100.00 EUR taken back");
    assert_eq!(kinds(&d), [ReviewKind::ReversedAfterPayment]);
    // With a second payment standing, the order stays paid.
    let (facts, _) = run(&facts, &[event_with("b", "COMPLETE", eur(EXPECTED), "222")]);
    assert_eq!(facts.state(), OrderState::Paid);
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
        "refunds under processor reference 1000037 total 120.01 EUR, more than its payment of 100.00 EUR"
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
    assert_eq!(kinds(&d[..1]), [ReviewKind::UnmatchedRefund]);
    assert_eq!(kinds(&d[1..]), [ReviewKind::OverRefund]);
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
    assert_eq!(facts.paid(), 2 * EXPECTED, "both charges are recorded");
    assert_eq!(d[1].effect, Effect::Applied);
    assert_eq!(
        d[1].reason,
        "second payment recorded under processor reference 222"
    );
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
        assert_eq!(
            open_kinds(&d),
            [ReviewKind::ReversedAfterPayment],
            "a reversal held before its payment closes when the payment arrives"
        );
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
    assert_eq!(d.facts.paid(), 0, "a denied payment is not acted upon");
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
        ..ReconcilePolicy::default()
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
            "unknown_chargeback_resolution",
            "orphan_payment",
            "pan_detected",
            "invalid_notification",
            "unmatched_refund",
            "unmatched_reversal",
            "late_repeat",
            "possible_second_event",
            "conflicting_copy",
            "settlement_unknown",
            "settlement_amount_differs",
            "unsettled_payment",
            "refund_not_debited",
            "payout_total_differs",
            "stale_order",
            "settlement_reinstatement",
            "fee_differs",
            "renewal_missing",
            "renewal_after_cancel",
        ]
    );
}

#[test]
fn invariant_checks_catch_violations() {
    let mut f = new_order();
    f.payments.entry("1".into()).or_default().paid = 5;
    f.processor_ref = Some("1".into());
    assert!(f.check_invariants().is_err());
    let mut g = new_order();
    g.payments.entry("1".into()).or_default().authorized = true;
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
        assert_eq!(facts.paid(), EXPECTED);
        assert_eq!(facts.refunded(), EXPECTED);
        assert!(facts.authorized());
        assert!(open_kinds(&decisions).is_empty(), "{order:?}");
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
    use crate::ipn::{FormLimits, SignaturePolicy, parse_and_verify};
    use crate::tokenize::{PseudonymKey, tokenize};
    use std::collections::BTreeMap;
    use std::path::Path;

    // The repository's fixtures, two levels above this crate.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let ring =
        crate::ipn::KeyRing::parse(&std::fs::read_to_string(root.join("keys/test.keys")).unwrap())
            .unwrap();
    let pseudonym_key = PseudonymKey::new(
        std::fs::read(root.join("keys/pseudonym.key"))
            .unwrap()
            .trim_ascii(),
    );
    let personal: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(root.join("personal-data.json")).unwrap())
            .unwrap();

    let mut orders = BTreeMap::new();
    let csv = std::fs::read_to_string(root.join("orders.csv")).unwrap();
    for line in csv.lines().skip(1) {
        let cols: Vec<_> = line.split(',').collect();
        let expected = Money::iso(cols[1], cols[2]).unwrap();
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
        let event = tokenize(
            raw,
            &form,
            &verified,
            &crate::money::Currencies::iso(),
            Some(&pseudonym_key),
        )
        .unwrap();
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
            let key = OrderSource::default().key(event);
            let facts = state.get_mut(&key.order_ref).unwrap();
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
        processor_ref: &'static str,
    },
    Paid {
        status: &'static str,
        right_amount: bool,
        processor_ref: &'static str,
    },
    Refund {
        minor: i64,
        right_currency: bool,
        processor_ref: &'static str,
    },
    Reversed(&'static str),
    /// A dispute notice: `CHARGEBACK_RESOLUTION` (one unknown value among
    /// them), with `ORDERSTATUS` COMPLETE or REVERSED.
    Dispute {
        resolution: &'static str,
        reversed: bool,
        processor_ref: &'static str,
    },
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
        (any::<bool>(), prop::sample::select(vec!["111", "222"])).prop_map(
            |(right_amount, processor_ref)| Kind::Authorized {
                right_amount,
                processor_ref
            }
        ),
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
            // 333 never pays: its refunds and reversals are foreign.
            prop::sample::select(vec!["111", "222", "333"]),
        )
            .prop_map(|(minor, right_currency, processor_ref)| Kind::Refund {
                minor,
                right_currency,
                processor_ref
            }),
        prop::sample::select(vec!["111", "222", "333"]).prop_map(Kind::Reversed),
        (
            prop::sample::select(vec!["OPEN", "WON", "LOST", "ACCEPTED", "PRE_ARBITRATION"]),
            prop::bool::weighted(0.3),
            prop::sample::select(vec!["111", "222", "333"]),
        )
            .prop_map(|(resolution, reversed, processor_ref)| Kind::Dispute {
                resolution,
                reversed,
                processor_ref
            }),
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

/// `event` with the money a processor notice carries beside its gross,
/// derived from the gross (the processor repeats a payment's figures on
/// each of its notices): VAT a sixth, commission with more decimals than
/// the currency, and a payable amount in USD.
fn with_money(mut event: PaymentEvent) -> PaymentEvent {
    use crate::notice_money::{Commission, NoticeMoney};
    let gross = event.amount;
    let currency = gross.currency();
    event.money = NoticeMoney {
        vat: Some(Money::from_minor(gross.minor_units() / 6, currency)),
        commission: Some(Commission::from_e8(
            gross.minor_units().saturating_mul(3_456_789),
            currency,
        )),
        payable: Some(usd(gross.minor_units() / 2 - 57)),
        fx_rate: None,
        fx_markup: None,
    };
    event
}

fn materialize(index: usize, kind: &Kind) -> PaymentEvent {
    with_money(materialize_gross(index, kind))
}

fn materialize_gross(index: usize, kind: &Kind) -> PaymentEvent {
    let tag = format!("event-{index}");
    match *kind {
        Kind::Authorized {
            right_amount,
            processor_ref,
        } => {
            let minor = if right_amount { EXPECTED } else { EXPECTED + 1 };
            event_with(&tag, "PAYMENT_AUTHORIZED", eur(minor), processor_ref)
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
            processor_ref,
        } => {
            let amount = if right_currency {
                eur(minor)
            } else {
                usd(minor)
            };
            event_with(&tag, "REFUND", amount, processor_ref)
        }
        Kind::Reversed(processor_ref) => {
            event_with(&tag, "REVERSED", eur(-EXPECTED), processor_ref)
        }
        Kind::Dispute {
            resolution,
            reversed,
            processor_ref,
        } => {
            let mut e = if reversed {
                event_with(&tag, "REVERSED", eur(-EXPECTED), processor_ref)
            } else {
                event_with(&tag, "COMPLETE", eur(EXPECTED), processor_ref)
            };
            e.chargeback =
                crate::chargeback::ChargebackNotice::read(Some(resolution), Some("FRAUD"));
            e
        }
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
    let mut figures = crate::journal::Figures::default();
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
        for movement in crate::journal::movements(&facts, &decision.facts) {
            prop_assert!(movement.amount.is_positive());
            figures.add(movement.kind, movement.amount.minor_units());
        }
        facts = decision.facts.clone();
        decisions.push(decision);
    }
    // The movements of every step sum to the final figures, and what the
    // network holds never exceeds what the refunds left of the payments
    // (by hand: each paid payment's paid less refunds, at least 0).
    prop_assert_eq!(figures.paid, facts.paid());
    prop_assert_eq!(figures.refunded, facts.refunded());
    prop_assert_eq!(figures.charged_back, facts.charged_back());
    prop_assert_eq!(figures.reinstated, facts.reinstated());
    let left: i64 = facts
        .payments
        .values()
        .filter(|p| p.paid > 0)
        .map(|p| (p.paid - p.refunded).max(0))
        .sum();
    prop_assert!(figures.net_charged_back() <= left);
    Ok((facts, decisions))
}

/// Facts without the first processor reference, which legitimately
/// depends on which payment came first, and without what each chargeback
/// took: fixed when it first counts, so a refund that arrives after it
/// grows the reinstated figure instead (what the network holds, compared
/// apart, is the same in every order).
fn comparable(facts: &OrderFacts) -> OrderFacts {
    let mut facts = OrderFacts {
        processor_ref: None,
        ..facts.clone()
    };
    for payment in facts.payments.values_mut() {
        payment.chargeback = payment.chargeback.map(|_| 0);
    }
    facts
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
        let policy = ReconcilePolicy {
            apply_test_orders,
            ..ReconcilePolicy::default()
        };
        let (expected, expected_decisions) = replay(&canonical, &policy)?;
        let (actual, actual_decisions) = replay(&shuffled, &policy)?;
        prop_assert_eq!(actual.state(), expected.state());
        prop_assert_eq!(actual.paid(), expected.paid());
        prop_assert_eq!(actual.refunded(), expected.refunded());
        prop_assert_eq!(actual.net_charged_back(), expected.net_charged_back());
        prop_assert_eq!(comparable(&actual), comparable(&expected));
        // Order-level conditions raised "where they first hold" are raised
        // exactly once (or never) in every arrival order.
        for kind in [ReviewKind::CanceledThenPaid, ReviewKind::Suspect] {
            let n = count(&actual_decisions, kind);
            prop_assert!(n <= 1, "{kind} raised {n} times");
            prop_assert_eq!(n, count(&expected_decisions, kind), "{}", kind);
        }
        // Payment-level conditions that only grow: once per payment, in
        // every arrival order; one more paid payment, one more double
        // charge raised.
        for kind in [ReviewKind::OverRefund, ReviewKind::DuplicatePayment] {
            let n = count(&actual_decisions, kind);
            prop_assert!(n <= 2, "{kind} raised {n} times for two payments");
            prop_assert_eq!(n, count(&expected_decisions, kind), "{}", kind);
        }
        // Conditions that can stop holding (a refund waiting for its
        // payment, a double charge not undone): what is still open at the
        // end is the same in every arrival order.
        let mut open_actual = open_kinds(&actual_decisions);
        let mut open_expected = open_kinds(&expected_decisions);
        open_actual.sort_by_key(|k| k.as_str());
        open_expected.sort_by_key(|k| k.as_str());
        prop_assert_eq!(open_actual, open_expected);
        // Events whose review items do not depend on order.
        for kind in [
            ReviewKind::AmountMismatch,
            ReviewKind::CurrencyMismatch,
            ReviewKind::UnknownStatus,
            ReviewKind::UnknownChargebackResolution,
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
        let key = crate::tokenize::PseudonymKey::new(b"k");
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

/// A money-bearing notice: VAT, commission and payable as given.
fn with_notice_money(
    mut event: PaymentEvent,
    vat: i64,
    commission_e8: i64,
    payable: i64,
) -> PaymentEvent {
    use crate::notice_money::{Commission, NoticeMoney};
    let currency = event.amount.currency();
    event.money = NoticeMoney {
        vat: Some(Money::from_minor(vat, currency)),
        commission: Some(Commission::from_e8(commission_e8, currency)),
        payable: Some(usd(payable)),
        fx_rate: None,
        fx_markup: None,
    };
    event
}

#[test]
fn a_chargeback_gives_back_the_vat_and_commission_its_notice_carries() {
    use crate::journal::{MovementKind, movements};
    let pay = with_notice_money(event("COMPLETE", eur(EXPECTED)), 17_36, 549_500_000, 88_20);
    // The chargeback notice: negative amounts, as refunds carry them.
    let back = with_notice_money(
        event("REVERSED", eur(-EXPECTED)),
        -17_36,
        -549_500_000,
        -88_20,
    );
    for order in [[pay.clone(), back.clone()], [back.clone(), pay.clone()]] {
        let (facts, decisions) = run(&new_order(), &order);
        let p = &facts.payments["1000037"];
        assert_eq!(p.state(), PaymentState::ChargedBack);
        assert_eq!(p.counted_charged_back_vat(), 17_36);
        assert_eq!(p.counted_charged_back_commission(2), 5_50);
        assert_eq!(p.counted_given_back_vat(), p.counted_vat(), "all VAT back");
        assert_eq!(p.charged_back_payable, Some(usd(-88_20)));
        // The movements over both decisions: VAT and commission out and
        // back, like a full refund's, whatever the arrival order.
        let mut before = new_order();
        let mut sums = std::collections::BTreeMap::new();
        for d in &decisions {
            for m in movements(&before, &d.facts) {
                *sums.entry(m.kind).or_insert(0i64) += m.amount.minor_units();
            }
            before = d.facts.clone();
        }
        assert_eq!(sums[&MovementKind::Vat], 17_36);
        assert_eq!(sums[&MovementKind::VatRefund], 17_36);
        assert_eq!(sums[&MovementKind::Commission], 5_50);
        assert_eq!(sums[&MovementKind::CommissionRefund], 5_50);
        assert_eq!(sums[&MovementKind::Chargeback], EXPECTED);
    }
    // A second REVERSED (another identity) gives nothing back again.
    let again = with_notice_money(
        event_with("again", "REVERSED", eur(-EXPECTED), "1000037"),
        -17_36,
        -549_500_000,
        -88_20,
    );
    let (facts, _) = run(&new_order(), &[pay.clone(), back.clone(), again]);
    assert_eq!(facts.payments["1000037"].counted_given_back_vat(), 17_36);
}

#[test]
fn a_reversal_that_releases_an_authorization_gives_nothing_back() {
    let auth = event("PAYMENT_AUTHORIZED", eur(EXPECTED));
    let back = with_notice_money(
        event("REVERSED", eur(-EXPECTED)),
        -17_36,
        -549_500_000,
        -88_20,
    );
    let (facts, _) = run(&new_order(), &[auth, back]);
    let p = &facts.payments["1000037"];
    assert_eq!(p.state(), PaymentState::Released);
    assert_eq!(p.counted_given_back_vat(), 0);
    assert_eq!(p.counted_given_back_commission(2), 0);
}

#[test]
fn a_chargeback_without_money_fields_gives_nothing_back() {
    let pay = with_notice_money(event("COMPLETE", eur(EXPECTED)), 17_36, 549_500_000, 88_20);
    let back = event("REVERSED", eur(-EXPECTED));
    let (facts, _) = run(&new_order(), &[pay, back]);
    let p = &facts.payments["1000037"];
    assert_eq!(p.state(), PaymentState::ChargedBack);
    assert_eq!(p.counted_given_back_vat(), 0);
    assert_eq!(p.charged_back_payable, None);
}

// ----- the chargeback lifecycle (issue 22, Deliver 3) ---------------------

/// A dispute notice on REFNO 111: `ORDERSTATUS=COMPLETE` with the
/// resolution and a reason code, as the processor's plugins expect them.
fn dispute(tag: &str, resolution: &str) -> PaymentEvent {
    let mut e = event_with(tag, "COMPLETE", eur(EXPECTED), "111");
    e.chargeback = crate::chargeback::ChargebackNotice::read(Some(resolution), Some("FRAUD"));
    e
}

/// Movements summed per kind over the decisions of `events` from a new
/// order, and the final facts.
fn moved(events: &[PaymentEvent]) -> (OrderFacts, crate::journal::Figures, Vec<Decision>) {
    let mut facts = new_order();
    let mut figures = crate::journal::Figures::default();
    let mut decisions = Vec::new();
    for event in events {
        let d = decide(&facts, event, &ReconcilePolicy::default());
        for m in crate::journal::movements(&facts, &d.facts) {
            figures.add(m.kind, m.amount.minor_units());
        }
        facts = d.facts.clone();
        decisions.push(d);
    }
    (facts, figures, decisions)
}

#[test]
fn a_chargeback_after_a_partial_refund_takes_what_remains() {
    let paid = event_with("p", "COMPLETE", eur(100_00), "111");
    let refund = event_with("r", "REFUND", eur(-20_00), "111");
    for chargeback in [
        event_with("c", "REVERSED", eur(-80_00), "111"),
        dispute("c", "OPEN"),
    ] {
        let (facts, figures, d) = moved(&[paid.clone(), refund.clone(), chargeback]);
        // 100.00 - 20.00 = 80.00 charged back; 100 - 20 - 80 = 0 net.
        assert_eq!(figures.paid, 100_00);
        assert_eq!(figures.refunded, 20_00);
        assert_eq!(figures.charged_back, 80_00);
        assert_eq!(figures.reinstated, 0);
        assert_eq!(
            figures.paid - figures.refunded - figures.net_charged_back(),
            0
        );
        assert_eq!(facts.state(), OrderState::Reversed);
        assert!(
            d[2].reason.contains("80.00 EUR taken back"),
            "{}",
            d[2].reason
        );
    }
}

#[test]
fn a_refund_after_the_chargeback_gives_back_what_it_could_not_take() {
    // The same notices, the refund last: the chargeback took 100.00, the
    // refund's 20.00 comes back as reinstated; net the same 0.00.
    let (facts, figures, _) = moved(&[
        event_with("p", "COMPLETE", eur(100_00), "111"),
        dispute("c", "OPEN"),
        event_with("r", "REFUND", eur(-20_00), "111"),
    ]);
    assert_eq!(figures.charged_back, 100_00);
    assert_eq!(figures.reinstated, 20_00);
    assert_eq!(figures.refunded, 20_00);
    assert_eq!(
        figures.paid - figures.refunded - figures.net_charged_back(),
        0
    );
    assert_eq!(facts.state(), OrderState::Reversed);
}

#[test]
fn a_won_chargeback_reinstates_the_payment_and_closes_its_item() {
    let (facts, figures, d) = moved(&[
        event_with("p", "COMPLETE", eur(100_00), "111"),
        dispute("o", "OPEN"),
        dispute("w", "WON"),
    ]);
    assert_eq!(figures.charged_back, 100_00);
    assert_eq!(figures.reinstated, 100_00);
    assert_eq!(figures.paid - figures.net_charged_back(), 100_00);
    assert_eq!(facts.state(), OrderState::Paid);
    assert_eq!(d[1].new_state, OrderState::Reversed);
    assert_eq!(kinds(&d), [ReviewKind::ReversedAfterPayment]);
    assert_eq!(open_kinds(&d), Vec::<ReviewKind>::new());
    assert!(
        d[2].reason.contains("100.00 EUR reinstated"),
        "{}",
        d[2].reason
    );
    // The processor's retry of WON (another identity, same meaning)
    // moves nothing twice.
    let again = decide(&facts, &dispute("w2", "WON"), &ReconcilePolicy::default());
    assert_eq!(again.effect, Effect::Ignored);
    assert!(crate::journal::movements(&facts, &again.facts).is_empty());
    assert!(
        again.reason.contains("already recorded"),
        "{}",
        again.reason
    );
}

#[test]
fn refund_open_won_nets_back_to_what_the_refund_left() {
    let (facts, figures, _) = moved(&[
        event_with("p", "COMPLETE", eur(100_00), "111"),
        event_with("r", "REFUND", eur(-20_00), "111"),
        dispute("o", "OPEN"),
        dispute("w", "WON"),
        dispute("w2", "WON"),
    ]);
    assert_eq!(figures.charged_back, 80_00);
    assert_eq!(figures.reinstated, 80_00);
    // 100 - 20 - (80 - 80) = 80.00 kept.
    assert_eq!(
        figures.paid - figures.refunded - figures.net_charged_back(),
        80_00
    );
    assert_eq!(facts.state(), OrderState::PartiallyRefunded);
}

#[test]
fn lost_is_final_and_takes_the_money_only_once() {
    let (facts, figures, d) = moved(&[
        event_with("p", "COMPLETE", eur(100_00), "111"),
        dispute("o", "OPEN"),
        dispute("l", "LOST"),
    ]);
    assert_eq!(figures.charged_back, 100_00);
    assert!(
        d[2].reason.contains("nothing more moved"),
        "{}",
        d[2].reason
    );
    assert_eq!(facts.state(), OrderState::Reversed);
    // Accepted without an open notice before it: it takes the money.
    let (facts, figures, _) = moved(&[
        event_with("p", "COMPLETE", eur(100_00), "111"),
        dispute("a", "ACCEPTED"),
    ]);
    assert_eq!(figures.charged_back, 100_00);
    assert_eq!(facts.state(), OrderState::Reversed);
}

#[test]
fn an_unknown_resolution_goes_to_review_and_moves_nothing() {
    let (facts, figures, d) = moved(&[
        event_with("p", "COMPLETE", eur(100_00), "111"),
        dispute("x", "PRE_ARBITRATION"),
    ]);
    assert_eq!(figures.charged_back, 0);
    assert_eq!(facts.state(), OrderState::Paid);
    assert_eq!(d[1].effect, Effect::Ignored);
    assert_eq!(kinds(&d), [ReviewKind::UnknownChargebackResolution]);
    assert!(d[1].review_items[0].details.contains("`PRE_ARBITRATION`"));
    assert_eq!(d[1].review_items[0].processor_ref.as_deref(), Some("111"));
}

#[test]
fn a_dispute_before_its_payment_is_held_then_counts() {
    let (facts, figures, d) = moved(&[
        dispute("o", "OPEN"),
        event_with("p", "COMPLETE", eur(100_00), "111"),
    ]);
    assert!(d[0].reason.contains("held"), "{}", d[0].reason);
    assert_eq!(kinds(&d)[0], ReviewKind::UnmatchedReversal);
    assert_eq!(figures.charged_back, 100_00);
    assert_eq!(facts.state(), OrderState::Reversed);
}

#[test]
fn a_won_chargeback_charges_again_the_vat_and_commission_it_gave_back() {
    use crate::notice_money::{Commission, NoticeMoney};
    let money = |vat: i64, commission_e8: i64| NoticeMoney {
        vat: Some(eur(vat)),
        commission: Some(Commission::from_e8(commission_e8, eur(0).currency())),
        ..NoticeMoney::default()
    };
    let mut paid = event_with("p", "COMPLETE", eur(100_00), "111");
    paid.money = money(16_67, 3_456_700_000);
    let mut open = dispute("o", "OPEN");
    open.money = money(-16_67, -3_456_700_000);
    let (_, figures, _) = moved(&[paid, open, dispute("w", "WON")]);
    // VAT: 16.67 charged, 16.67 given back, 16.67 charged again.
    assert_eq!(figures.vat, 16_67 + 16_67);
    assert_eq!(figures.vat_refunded, 16_67);
    assert_eq!(figures.net_vat(), 16_67);
    // Commission 34.567 rounds to 34.57, each time.
    assert_eq!(figures.commission, 34_57 + 34_57);
    assert_eq!(figures.commission_refunded, 34_57);
    assert_eq!(figures.open_commission(), 34_57);
}
