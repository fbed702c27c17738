//! The order store and reconciliation against the real PostgreSQL, each test
//! in a database of its own.

use std::collections::BTreeMap;

use crate::helpers::TestDb;
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use ipn_reconciler::domain::{
    BodyDigest, Currencies, EventIdentity, Money, OrderFacts, OrderState, OrderStatus, Outcome,
    PaymentEvent, ReconcilePolicy, ReviewKind, StatusField, decide,
};
use ipn_reconciler::ipn::{Algorithm, KeyId};
use ipn_reconciler::store::orders::{ImportError, parse_orders_csv};
use ipn_reconciler::store::schema::{notifications, order_events, orders, review_items};
use ipn_reconciler::store::{NewOrder, Store};

/// A tokenized event as the pipeline would produce it; `tag` makes the
/// digest distinct (two notifications with the same content but different
/// bodies are different notifications).
fn event(order_ref: &str, status: &str, amount: &str, currency: &str, tag: &str) -> PaymentEvent {
    let digest =
        BodyDigest::of(format!("{order_ref}|{status}|{amount}|{currency}|{tag}").as_bytes());
    PaymentEvent {
        carries_message_id: false,
        // Distinct tags are distinct notifications; the same tag is the
        // same notification delivered again.
        identity: EventIdentity::parse(digest.as_str()).expect("identity"),
        digest,
        processor_ref: "71000102".to_owned(),
        merchant_ref: Some(order_ref.to_owned()),
        status: StatusField::parse(status),
        fraud_denied: false,
        test_order: false,
        amount: Money::iso(amount, currency).expect("test amount"),
        payment_method: Some("CCVISAMC".to_owned()),
        sale_date: None,
        payment_date: None,
        complete_date: None,
        ipn_date: None,
        key_id: KeyId::parse("test-2026").expect("key id"),
        algorithm: Algorithm::Sha3_256,
        customer_pseudonym: None,
        pan_fields: Vec::new(),
        licences: Vec::new(),
        chargeback: None,
        money: Default::default(),
    }
}

fn order(order_ref: &str, amount: &str, currency: &str) -> NewOrder {
    NewOrder::new(order_ref, Money::iso(amount, currency).expect("amount")).expect("order")
}

async fn ledger_rows(store: &Store, order_ref: &str) -> i64 {
    let mut conn = store.conn().await.expect("conn");
    order_events::table
        .inner_join(orders::table)
        .filter(orders::order_ref.eq(order_ref))
        .count()
        .get_result(&mut conn)
        .await
        .expect("count ledger")
}

/// The kinds of the order's *open* review items (the system closes those
/// that stop being true, such as a refund that waited for its payment).
async fn review_kinds(store: &Store, order_ref: &str) -> Vec<String> {
    items_in(store, order_ref, "open").await
}

async fn items_in(store: &Store, order_ref: &str, status: &str) -> Vec<String> {
    let mut conn = store.conn().await.expect("conn");
    review_items::table
        .filter(review_items::order_ref.eq(order_ref))
        .filter(review_items::status.eq(status))
        .select(review_items::kind)
        .order(review_items::id)
        .load(&mut conn)
        .await
        .expect("review items")
}

/// The realistic life of one order: authorized, paid, partly then fully refunded.
fn refund_story(order_ref: &str) -> Vec<PaymentEvent> {
    vec![
        event(order_ref, "PAYMENT_AUTHORIZED", "49.99", "USD", "a"),
        event(order_ref, "COMPLETE", "49.99", "USD", "b"),
        event(order_ref, "REFUND", "-20.00", "USD", "c"),
        event(order_ref, "REFUND", "-29.99", "USD", "d"),
    ]
}

fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut all = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first.clone());
            all.push(tail);
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_notification_twice_is_applied_once() {
    let db = TestDb::new();
    let store = db.store().await;
    store
        .import_orders(&[order("D-1", "49.99", "USD")])
        .await
        .expect("import");
    let complete = event("D-1", "COMPLETE", "49.99", "USD", "x");
    let policy = ReconcilePolicy::default();

    let first = store
        .apply(&complete, Utc::now(), &policy)
        .await
        .expect("apply");
    let second = store
        .apply(&complete, Utc::now(), &policy)
        .await
        .expect("apply again");

    assert_eq!(first.outcome, Outcome::Applied);
    assert_eq!(second.outcome, Outcome::Duplicate);
    let view = store
        .order("D-1")
        .await
        .expect("read")
        .expect("order exists");
    assert_eq!(view.status, OrderState::Paid);
    assert_eq!(view.paid, "49.99");
    assert_eq!(view.events.len(), 1);
    assert_eq!(view.version, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_complete_with_another_body_changes_nothing() {
    let db = TestDb::new();
    let store = db.store().await;
    store
        .import_orders(&[order("D-2", "49.99", "USD")])
        .await
        .expect("import");
    let policy = ReconcilePolicy::default();
    for tag in ["first", "invoice-resend"] {
        store
            .apply(
                &event("D-2", "COMPLETE", "49.99", "USD", tag),
                Utc::now(),
                &policy,
            )
            .await
            .expect("apply");
    }
    let view = store.order("D-2").await.expect("read").expect("order");
    assert_eq!(view.status, OrderState::Paid);
    assert_eq!(view.paid, "49.99", "paid is set, not added");
    assert_eq!(view.events.len(), 2, "both notifications are in the ledger");
    assert_eq!(view.events[1].effect.as_str(), "ignored");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_permutation_of_a_refund_story_ends_refunded() {
    let db = TestDb::new();
    let store = db.store().await;
    let stories = permutations(&[0usize, 1, 2, 3]);
    let orders: Vec<NewOrder> = (0..stories.len())
        .map(|i| order(&format!("P-{i}"), "49.99", "USD"))
        .collect();
    store.import_orders(&orders).await.expect("import");
    let policy = ReconcilePolicy::default();
    for (i, permutation) in stories.iter().enumerate() {
        let order_ref = format!("P-{i}");
        let story = refund_story(&order_ref);
        for &step in permutation {
            store
                .apply(&story[step], Utc::now(), &policy)
                .await
                .expect("apply");
        }
        let view = store.order(&order_ref).await.expect("read").expect("order");
        assert_eq!(
            (view.status, view.paid.as_str(), view.refunded.as_str()),
            (OrderState::Refunded, "49.99", "49.99"),
            "permutation {permutation:?}"
        );
        assert_eq!(view.events.len(), 4);
        assert!(
            review_kinds(&store, &order_ref).await.is_empty(),
            "a consistent story opens no review item ({permutation:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_workers_with_conflicting_events_stay_consistent() {
    let db = TestDb::new();
    let store = db.store().await;
    const ORDERS: usize = 30;
    let orders: Vec<NewOrder> = (0..ORDERS)
        .map(|i| order(&format!("C-{i}"), "100.00", "EUR"))
        .collect();
    store.import_orders(&orders).await.expect("import");

    // Conflicting on purpose: a payment, two refunds, a cancellation and a
    // late authorization for every order.
    let story = |i: usize| {
        let r = format!("C-{i}");
        vec![
            event(&r, "PAYMENT_AUTHORIZED", "100.00", "EUR", "auth"),
            event(&r, "COMPLETE", "100.00", "EUR", "paid"),
            event(&r, "REFUND", "-30.00", "EUR", "refund-1"),
            event(&r, "CANCELED", "100.00", "EUR", "cancel"),
            event(&r, "REFUND", "-25.00", "EUR", "refund-2"),
        ]
    };
    let policy = ReconcilePolicy::default();
    // Both tasks apply every event, in opposite orders: each distinct
    // notification must take effect exactly once.
    let forward: Vec<PaymentEvent> = (0..ORDERS).flat_map(story).collect();
    let mut backward = forward.clone();
    backward.reverse();
    let tasks = [forward, backward].map(|events| {
        let store = store.clone();
        tokio::spawn(async move {
            for event in events {
                store
                    .apply(&event, Utc::now(), &policy)
                    .await
                    .expect("apply under contention");
            }
        })
    });
    for task in tasks {
        task.await.expect("task");
    }

    for i in 0..ORDERS {
        let order_ref = format!("C-{i}");
        // What the pure state machine says, applied sequentially.
        let mut facts = OrderFacts::new(Money::iso("100.00", "EUR").expect("money"));
        for event in story(i) {
            facts = decide(&facts, &event, &policy).facts;
        }
        let view = store.order(&order_ref).await.expect("read").expect("order");
        assert_eq!(view.status, facts.state(), "{order_ref}");
        assert_eq!(view.paid, facts.paid_money().format_amount(), "{order_ref}");
        assert_eq!(
            view.refunded,
            facts.refunded_money().format_amount(),
            "{order_ref}"
        );
        assert_eq!(ledger_rows(&store, &order_ref).await, 5, "{order_ref}");
        assert_eq!(
            review_kinds(&store, &order_ref).await,
            vec!["canceled_then_paid".to_owned()],
            "{order_ref}"
        );
    }
    let mut conn = store.conn().await.expect("conn");
    let stored: i64 = notifications::table
        .count()
        .get_result(&mut conn)
        .await
        .expect("count");
    assert_eq!(stored, (ORDERS * 5) as i64);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_amount_or_currency_is_a_mismatch_with_a_review_item() {
    let db = TestDb::new();
    let store = db.store().await;
    store
        .import_orders(&[order("M-1", "30.00", "EUR"), order("M-2", "30.00", "EUR")])
        .await
        .expect("import");
    let policy = ReconcilePolicy::default();

    let amount = store
        .apply(
            &event("M-1", "COMPLETE", "25.00", "EUR", "x"),
            Utc::now(),
            &policy,
        )
        .await
        .expect("apply");
    let currency = store
        .apply(
            &event("M-2", "COMPLETE", "30.00", "USD", "x"),
            Utc::now(),
            &policy,
        )
        .await
        .expect("apply");

    assert_eq!(amount.outcome, Outcome::Mismatch);
    assert_eq!(amount.order_state, Some(OrderState::Mismatch));
    assert_eq!(review_kinds(&store, "M-1").await, ["amount_mismatch"]);
    assert_eq!(currency.outcome, Outcome::Mismatch);
    assert_eq!(review_kinds(&store, "M-2").await, ["currency_mismatch"]);
    let view = store.order("M-1").await.expect("read").expect("order");
    assert_eq!(
        view.paid, "0.00",
        "a mismatched payment is not counted as paid"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notification_before_its_order_is_kept_and_applies_later() {
    let db = TestDb::new();
    let store = db.store().await;
    let policy = ReconcilePolicy::default();
    let early = event("LATE-1", "COMPLETE", "10.00", "EUR", "x");

    let first = store
        .apply(&early, Utc::now(), &policy)
        .await
        .expect("apply");
    assert_eq!(first.outcome, Outcome::OrderNotFound);
    let mut conn = store.conn().await.expect("conn");
    let recorded: String = notifications::table
        .filter(notifications::body_sha256.eq(early.digest.as_str()))
        .select(notifications::outcome)
        .first(&mut conn)
        .await
        .expect("the orphan is recorded");
    assert_eq!(recorded, "order_not_found");

    store
        .import_orders(&[order("LATE-1", "10.00", "EUR")])
        .await
        .expect("import");
    let again = store
        .apply(&early, Utc::now(), &policy)
        .await
        .expect("retry");
    assert_eq!(again.outcome, Outcome::Applied);
    assert_eq!(again.order_state, Some(OrderState::Paid));
    let third = store
        .apply(&early, Utc::now(), &policy)
        .await
        .expect("redelivery");
    assert_eq!(third.outcome, Outcome::Duplicate);
    assert_eq!(ledger_rows(&store, "LATE-1").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refund_before_its_payment_counts_once_the_payment_arrives() {
    let db = TestDb::new();
    let store = db.store().await;
    store
        .import_orders(&[order("R-1", "49.99", "USD")])
        .await
        .expect("import");
    let policy = ReconcilePolicy::default();
    let refund = store
        .apply(
            &event("R-1", "REFUND", "-49.99", "USD", "r"),
            Utc::now(),
            &policy,
        )
        .await
        .expect("refund first");
    assert_ne!(refund.outcome, Outcome::Malformed);
    store
        .apply(
            &event("R-1", "COMPLETE", "49.99", "USD", "p"),
            Utc::now(),
            &policy,
        )
        .await
        .expect("payment later");
    let view = store.order("R-1").await.expect("read").expect("order");
    assert_eq!(view.status, OrderState::Refunded);
    assert_eq!(view.refunded, "49.99");
    assert!(review_kinds(&store, "R-1").await.is_empty());
    // The refund waited, visibly, and the system closed its item once the
    // payment arrived.
    assert_eq!(
        items_in(&store, "R-1", "resolved").await,
        ["unmatched_refund"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ledger_is_append_only() {
    let db = TestDb::new();
    let store = db.store().await;
    store
        .import_orders(&[order("A-1", "1.00", "EUR")])
        .await
        .expect("import");
    store
        .apply(
            &event("A-1", "COMPLETE", "1.00", "EUR", "x"),
            Utc::now(),
            &ReconcilePolicy::default(),
        )
        .await
        .expect("apply");
    let mut conn = store.conn().await.expect("conn");
    let update = diesel::update(order_events::table)
        .set(order_events::reason.eq("rewritten"))
        .execute(&mut conn)
        .await;
    let delete = diesel::delete(order_events::table).execute(&mut conn).await;
    assert!(update.is_err(), "UPDATE of the ledger must be refused");
    assert!(delete.is_err(), "DELETE of the ledger must be refused");
    assert_eq!(ledger_rows(&store, "A-1").await, 1);
}

#[test]
fn bad_csv_rows_are_reported_with_line_numbers() {
    let csv = "order_ref,amount,currency,created_at\n\
               OK-1,10.00,EUR,\n\
               BAD-1,ten,EUR,\n\
               BAD-2,10.001,EUR,\n\
               BAD-3,10.00,EURO,\n\
               ,10.00,EUR,\n\
               OK-1,10.00,EUR,\n\
               BAD-4,10.00,EUR,yesterday\n";
    let Err(ImportError::Rows(rows)) = parse_orders_csv(csv.as_bytes(), &Currencies::iso()) else {
        panic!("bad rows must be refused");
    };
    let lines: Vec<u64> = rows.iter().map(|row| row.line).collect();
    assert_eq!(lines, [3, 4, 5, 6, 7, 8]);
    assert!(rows[5].reason.contains("RFC 3339"), "{:?}", rows[5]);
    assert!(matches!(
        parse_orders_csv("ref,amount\nX,1\n".as_bytes(), &Currencies::iso()),
        Err(ImportError::Header(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_is_all_or_nothing_and_idempotent() {
    let db = TestDb::new();
    let store = db.store().await;
    let first = [order("I-1", "10.00", "EUR"), order("I-2", "2500", "JPY")];
    let report = store.import_orders(&first).await.expect("import");
    assert_eq!((report.inserted, report.unchanged), (2, 0));
    let again = store.import_orders(&first).await.expect("re-import");
    assert_eq!((again.inserted, again.unchanged), (0, 2));

    // A new order next to a conflicting one: nothing of it is imported.
    let conflicting = [order("I-3", "5.00", "EUR"), order("I-1", "11.00", "EUR")];
    let err = store
        .import_orders(&conflicting)
        .await
        .expect_err("conflicting amount");
    assert!(err.to_string().contains("I-1"), "{err}");
    assert!(store.order("I-3").await.expect("read").is_none());
    assert_eq!(store.list_orders(None).await.expect("list").len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_are_listed_by_status() {
    let db = TestDb::new();
    let store = db.store().await;
    store
        .import_orders(&[order("L-1", "1.00", "EUR"), order("L-2", "1.00", "EUR")])
        .await
        .expect("import");
    store
        .apply(
            &event("L-1", "COMPLETE", "1.00", "EUR", "x"),
            Utc::now(),
            &ReconcilePolicy::default(),
        )
        .await
        .expect("apply");
    let paid = store
        .list_orders(Some(OrderState::Paid))
        .await
        .expect("list");
    let pending = store
        .list_orders(Some(OrderState::Pending))
        .await
        .expect("list");
    assert_eq!(
        paid.iter()
            .map(|o| o.order_ref.as_str())
            .collect::<Vec<_>>(),
        ["L-1"]
    );
    assert_eq!(
        pending
            .iter()
            .map(|o| o.order_ref.as_str())
            .collect::<Vec<_>>(),
        ["L-2"]
    );
}

#[test]
fn every_processor_status_has_a_defined_effect() {
    // Guard for the mapping in docs/protocol.md §10: any status, known or not, yields a
    // decision without panicking.
    let policy = ReconcilePolicy::default();
    let facts = OrderFacts::new(Money::iso("1.00", "EUR").expect("money"));
    let mut seen = BTreeMap::new();
    for status in OrderStatus::ALL
        .iter()
        .map(|s| s.as_str().to_owned())
        .chain(["SOMETHING_NEW".to_owned()])
    {
        let decision = decide(
            &facts,
            &event("S-1", &status, "1.00", "EUR", &status),
            &policy,
        );
        seen.insert(status, decision.outcome);
    }
    assert_eq!(seen["COMPLETE"], Outcome::Applied);
    assert_eq!(seen["PENDING"], Outcome::Ignored);
    assert_eq!(seen.len(), OrderStatus::ALL.len() + 1);
    let unknown = decide(
        &facts,
        &event("S-1", "SOMETHING_NEW", "1.00", "EUR", "u"),
        &policy,
    );
    assert_eq!(unknown.review_items[0].kind, ReviewKind::UnknownStatus);
}

/// An error and its causes, as the CLI prints them.
fn with_causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

/// The store reads review kinds as `ReviewKind`: a kind this version does
/// not know (written by a newer one, or by hand) is refused with an error
/// that names it, never shown as something else; filtering by a known kind
/// happens in SQL and is not disturbed by it.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_stored_review_kind_is_refused_by_name() {
    let db = TestDb::new();
    let store = db.store().await;
    store
        .open_review_item(ReviewKind::OrphanPayment, Some("K-1"), None, "known")
        .await
        .expect("open known item");
    let mut conn = store.conn().await.expect("conn");
    diesel::insert_into(review_items::table)
        .values((
            review_items::kind.eq("from_the_future"),
            review_items::details.eq("written by hand"),
        ))
        .execute(&mut conn)
        .await
        .expect("insert unknown kind");

    let err = store
        .review_items(true, None)
        .await
        .expect_err("an unknown kind cannot be listed");
    let shown = with_causes(&err);
    assert!(
        shown.contains("unknown review kind `from_the_future`"),
        "{shown}"
    );
    let err = store
        .finance_summary()
        .await
        .expect_err("an unknown kind cannot be summed up");
    let shown = with_causes(&err);
    assert!(
        shown.contains("unknown review kind `from_the_future`"),
        "{shown}"
    );

    let orphans = store
        .review_items(true, Some(ReviewKind::OrphanPayment))
        .await
        .expect("filtered by a known kind");
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].kind, ReviewKind::OrphanPayment);
}
