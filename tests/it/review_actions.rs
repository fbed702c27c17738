//! Issue 12, item 2: a person resolves review items with actions that go
//! through the state machine, against the real PostgreSQL. Each action on a
//! kind it fits, its effect on the order, its payments, ledger and money
//! movements, and on the report and the journal (checked against
//! independent SQL sums); a resolution is final, recorded with who, when
//! and why in an append-only ledger; a misfit is refused naming what fits;
//! a group resolves together; and the command line says so with its exit
//! codes.

use assert_cmd::Command;
use chrono::{NaiveDate, NaiveDateTime};
use ipn_reconciler::domain::review::{ReviewAction, allowed_actions};
use ipn_reconciler::domain::sweep::SweepPolicy;
use ipn_reconciler::domain::{
    BodyDigest, EventIdentity, Money, OrderState, Outcome, PaymentEvent, ReviewKind, StatusField,
};
use ipn_reconciler::ipn::{Algorithm, KeyId};
use ipn_reconciler::services::review::{ResolveError, ResolveRequest, resolve};
use ipn_reconciler::services::sweep::sweep;
use ipn_reconciler::store::review::group_items;
use ipn_reconciler::store::{NewOrder, ReportBasis, ReportPeriod, ReviewStatus, Store};
use predicates::prelude::*;

use crate::cli_reconcile::{cli, create_books, import_and_process_fixtures};
use crate::helpers::TestDb;

/// A tokenized notification: `identity` names the notification (its
/// signed values), `body` the delivery (a repeat has the identity of an
/// earlier one and a body of its own).
fn event(
    order_ref: &str,
    refno: &str,
    status: &str,
    amount: &str,
    identity: &str,
    body: &str,
    ipn_date: Option<NaiveDateTime>,
) -> PaymentEvent {
    PaymentEvent {
        carries_message_id: false,
        digest: BodyDigest::of(format!("body|{order_ref}|{body}").as_bytes()),
        identity: EventIdentity::parse(
            BodyDigest::of(format!("identity|{order_ref}|{identity}").as_bytes()).as_str(),
        )
        .expect("identity"),
        processor_ref: refno.to_owned(),
        merchant_ref: Some(order_ref.to_owned()),
        status: StatusField::parse(status),
        fraud_denied: false,
        test_order: false,
        amount: Money::iso(amount, "EUR").expect("amount"),
        payment_method: Some("CCVISAMC".to_owned()),
        sale_date: None,
        payment_date: None,
        complete_date: None,
        ipn_date,
        key_id: KeyId::parse("test-2026").expect("key id"),
        algorithm: Algorithm::Sha3_256,
        customer_pseudonym: None,
        pan_fields: Vec::new(),
        licences: Vec::new(),
        chargeback: None,
        money: Default::default(),
    }
}

/// A notification delivered once, with its own identity.
fn once(order_ref: &str, refno: &str, status: &str, amount: &str, tag: &str) -> PaymentEvent {
    event(order_ref, refno, status, amount, tag, tag, None)
}

fn day(d: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 11, d)
        .and_then(|d| d.and_hms_opt(9, 0, 0))
        .expect("date")
}

async fn books() -> (TestDb, Store) {
    let db = TestDb::new();
    let store = db.store().await;
    (db, store)
}

async fn import(store: &Store, order_ref: &str, amount: &str) {
    store
        .import_orders(&[NewOrder::new(order_ref, Money::iso(amount, "EUR").unwrap()).unwrap()])
        .await
        .expect("import");
}

async fn apply(store: &Store, event: &PaymentEvent) -> Outcome {
    store
        .apply(event, chrono::Utc::now(), &Default::default())
        .await
        .expect("apply")
        .outcome
}

/// The open items of `kind` for the order, oldest first.
async fn open_items(store: &Store, order_ref: &str, kind: ReviewKind) -> Vec<i64> {
    let mut ids: Vec<i64> = store
        .review_items_by_status(ReviewStatus::Open, Some(kind))
        .await
        .expect("items")
        .into_iter()
        .filter(|i| i.order_ref.as_deref() == Some(order_ref))
        .map(|i| i.id)
        .collect();
    ids.sort();
    ids
}

async fn sql(db: &TestDb) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

async fn count(client: &tokio_postgres::Client, query: &str) -> i64 {
    client
        .query_one(query, &[])
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .get(0)
}

/// The report (by creation and by event) and the journal agree with
/// independent sums: of the payments table, and of the money movements.
async fn books_balance(db: &TestDb, store: &Store) {
    let client = sql(db).await;
    let facts = client
        .query(
            "SELECT o.currency, sum(p.paid_minor)::int8, \
                    sum(CASE WHEN p.paid_minor > 0 THEN p.refunded_minor ELSE 0 END)::int8, \
                    sum(CASE WHEN p.paid_minor > 0 AND p.reversed THEN p.paid_minor ELSE 0 END)::int8 \
             FROM payments p JOIN orders o ON o.id = p.order_id GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .expect("payments");
    let moved = |kind: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT coalesce(sum(amount_minor), 0)::int8 FROM money_movements \
                     WHERE currency = 'EUR' AND kind = $1",
                    &[&kind],
                )
                .await
                .expect("movements")
                .get::<_, i64>(0)
        }
    };
    assert_eq!(facts.len(), 1, "EUR only");
    let (paid, refunded, charged_back): (i64, i64, i64) =
        (facts[0].get(1), facts[0].get(2), facts[0].get(3));
    assert_eq!(moved("payment").await, paid);
    assert_eq!(moved("refund").await, refunded);
    assert_eq!(moved("chargeback").await, charged_back);
    for by in [ReportBasis::Created, ReportBasis::Event] {
        let report = store
            .finance_report(&ReportPeriod {
                by,
                ..ReportPeriod::all()
            })
            .await
            .expect("report");
        let eur = report
            .totals
            .iter()
            .find(|t| t.currency == "EUR")
            .expect("EUR");
        assert_eq!(eur.figures.paid, paid, "{by:?}");
        assert_eq!(eur.figures.refunded, refunded, "{by:?}");
        assert_eq!(eur.figures.charged_back, charged_back, "{by:?}");
    }
    let journal = store
        .journal_movements(&ReportPeriod::all())
        .await
        .expect("journal");
    let sum = |kind: &str| -> i64 {
        journal
            .iter()
            .filter(|m| m.kind.as_str() == kind)
            .map(|m| m.amount.minor_units())
            .sum()
    };
    assert_eq!(sum("payment"), paid);
    assert_eq!(sum("refund"), refunded);
    // Every ledger row has one cause: a notification or a resolution.
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM order_events \
             WHERE num_nonnulls(notification_id, resolution_id) <> 1"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_confirmed_possible_second_event_is_applied_once_and_the_resolution_is_final() {
    let (db, store) = books().await;
    import(&store, "SHOP-A", "25.00").await;
    apply(
        &store,
        &once("SHOP-A", "900001", "COMPLETE", "25.00", "pay"),
    )
    .await;
    let refund = |body: &str, at| event("SHOP-A", "900001", "REFUND", "5.00", "r1", body, at);
    assert_eq!(
        apply(&store, &refund("first", Some(day(2)))).await,
        Outcome::Applied
    );
    assert_eq!(
        apply(&store, &refund("late", Some(day(6)))).await,
        Outcome::Duplicate
    );
    let items = open_items(&store, "SHOP-A", ReviewKind::PossibleSecondEvent).await;
    assert_eq!(items.len(), 1);
    let item = items[0];

    // Misfit: refused, listing what fits; nothing written.
    let err = resolve(
        &store,
        &ResolveRequest::new(item, ReviewAction::LinkOrder, "finance-anna", "x"),
    )
    .await
    .expect_err("misfit");
    assert!(matches!(err, ResolveError::Misfit { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("allowed: apply_repeat, accept_as_is, dismiss"),
        "{err}"
    );
    assert_eq!(
        open_items(&store, "SHOP-A", ReviewKind::PossibleSecondEvent).await,
        [item]
    );

    let done = resolve(
        &store,
        &ResolveRequest::new(
            item,
            ReviewAction::ApplyRepeat,
            "finance-anna",
            "second refund confirmed with the processor, ticket 881",
        ),
    )
    .await
    .expect("resolved");
    assert_eq!(done.items, [item]);
    assert_eq!(done.order_state, Some(OrderState::PartiallyRefunded));
    assert_eq!(done.notifications_applied.len(), 1);
    assert_eq!(done.amount.as_deref(), Some("5.00"));
    let order = store.order("SHOP-A").await.unwrap().unwrap();
    assert_eq!(order.refunded, "10.00");
    assert!(
        order
            .events
            .iter()
            .any(|e| e.reason.contains("confirmed by finance-anna")),
        "{:?}",
        order.events
    );
    let client = sql(&db).await;
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM money_movements WHERE kind = 'refund' AND amount_minor = 500"
        )
        .await,
        2
    );
    // The resolution row: who, when, why, which action, item and notification.
    let row = client
        .query_one(
            "SELECT action, resolved_by, note, notification_id, order_ref, created_at IS NOT NULL \
             FROM review_resolutions WHERE review_item_id = $1",
            &[&item],
        )
        .await
        .expect("resolution row");
    assert_eq!(row.get::<_, String>(0), "apply_repeat");
    assert_eq!(row.get::<_, String>(1), "finance-anna");
    assert!(row.get::<_, String>(2).contains("ticket 881"));
    assert_eq!(
        row.get::<_, Option<i64>>(3),
        Some(done.notifications_applied[0])
    );
    assert_eq!(row.get::<_, Option<String>>(4).as_deref(), Some("SHOP-A"));
    assert!(row.get::<_, bool>(5));

    // Final: the same item again is refused, whatever the action.
    for action in [ReviewAction::ApplyRepeat, ReviewAction::Dismiss] {
        let err = resolve(
            &store,
            &ResolveRequest::new(item, action, "finance-bob", "again"),
        )
        .await
        .expect_err("already resolved");
        assert!(
            matches!(err, ResolveError::AlreadyResolved { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("finance-anna"), "{err}");
    }
    assert_eq!(
        store.order("SHOP-A").await.unwrap().unwrap().refunded,
        "10.00"
    );
    books_balance(&db, &store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_orphan_payment_is_linked_to_its_order_through_the_state_machine() {
    let (db, store) = books().await;
    let pay = once("GHOST-1", "900010", "COMPLETE", "40.00", "ghost-pay");
    assert_eq!(apply(&store, &pay).await, Outcome::OrderNotFound);
    store
        .open_review_item(
            ReviewKind::OrphanPayment,
            Some("GHOST-1"),
            Some(pay.digest.as_str()),
            "payment of 40.00 EUR for an order that never appeared",
        )
        .await
        .expect("orphan item");
    let item = open_items(&store, "GHOST-1", ReviewKind::OrphanPayment).await[0];

    // To an order that does not exist: refused, nothing written.
    let to = |order: &str| ResolveRequest {
        order_ref: Some(order.to_owned()),
        ..ResolveRequest::new(
            item,
            ReviewAction::LinkOrder,
            "finance-anna",
            "the shop's order SHOP-B",
        )
    };
    let err = resolve(&store, &to("SHOP-B"))
        .await
        .expect_err("no such order");
    assert!(matches!(err, ResolveError::UnknownOrder(_)), "{err:?}");
    // --order is for link_order only.
    let err = resolve(
        &store,
        &ResolveRequest {
            order_ref: Some("SHOP-B".to_owned()),
            ..ResolveRequest::new(item, ReviewAction::Dismiss, "finance-anna", "x")
        },
    )
    .await
    .expect_err("order not taken");
    assert!(matches!(err, ResolveError::OrderNotTaken(_)), "{err:?}");

    import(&store, "SHOP-B", "40.00").await;
    let done = resolve(&store, &to("SHOP-B")).await.expect("linked");
    assert_eq!(done.order_ref.as_deref(), Some("SHOP-B"));
    assert_eq!(done.order_state, Some(OrderState::Paid));
    let order = store.order("SHOP-B").await.unwrap().unwrap();
    assert_eq!(order.paid, "40.00");
    assert_eq!(order.payments.len(), 1);
    assert_eq!(order.payments[0].processor_ref, "900010");
    assert!(
        order.events[0].reason.contains("linked to order SHOP-B"),
        "{:?}",
        order.events
    );
    let client = sql(&db).await;
    let outcome: String = client
        .query_one(
            "SELECT outcome FROM notifications WHERE body_sha256 = $1",
            &[&pay.digest.as_str()],
        )
        .await
        .expect("notification")
        .get(0);
    assert_eq!(outcome, "applied");
    let linked: String = client
        .query_one(
            "SELECT order_ref FROM review_resolutions WHERE review_item_id = $1",
            &[&item],
        )
        .await
        .expect("row")
        .get(0);
    assert_eq!(linked, "SHOP-B");
    books_balance(&db, &store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_double_charge_refunded_outside_the_processor_is_booked_as_a_refund() {
    let (db, store) = books().await;
    import(&store, "SHOP-C", "30.00").await;
    apply(&store, &once("SHOP-C", "900020", "COMPLETE", "30.00", "c1")).await;
    apply(&store, &once("SHOP-C", "900021", "COMPLETE", "30.00", "c2")).await;
    let item = open_items(&store, "SHOP-C", ReviewKind::DuplicatePayment).await[0];
    // A misfit names the kind's actions.
    let err = resolve(
        &store,
        &ResolveRequest::new(item, ReviewAction::ApplyRepeat, "finance-anna", "x"),
    )
    .await
    .expect_err("misfit");
    let allowed: Vec<&str> = allowed_actions(ReviewKind::DuplicatePayment)
        .iter()
        .map(|a| a.as_str())
        .collect();
    assert!(
        err.to_string()
            .ends_with(&format!("allowed: {}", allowed.join(", "))),
        "{err}"
    );

    let done = resolve(
        &store,
        &ResolveRequest::new(
            item,
            ReviewAction::MarkRefundedOutside,
            "finance-anna",
            "extra charge returned by bank transfer 2026-11-30",
        ),
    )
    .await
    .expect("refunded outside");
    assert_eq!(done.amount.as_deref(), Some("30.00"));
    assert_eq!(
        done.order_state,
        Some(OrderState::Paid),
        "one payment stands"
    );
    let order = store.order("SHOP-C").await.unwrap().unwrap();
    assert_eq!(order.paid, "60.00");
    assert_eq!(order.refunded, "30.00");
    let refunded: Vec<_> = order
        .payments
        .iter()
        .filter(|p| p.state == "refunded")
        .map(|p| p.processor_ref.as_str())
        .collect();
    assert_eq!(refunded, ["900021"]);
    // The ledger row of a person's action names its resolution, not a
    // notification, and carries the money it moved.
    let manual = order
        .events
        .iter()
        .find(|e| e.resolution_id.is_some())
        .expect("the action's ledger row");
    assert_eq!(manual.order_status, "mark_refunded_outside");
    assert!(manual.notification_sha256.is_none());
    assert!(manual.reason.contains("finance-anna"), "{}", manual.reason);
    let client = sql(&db).await;
    let row = client
        .query_one(
            "SELECT m.kind, m.amount_minor, m.processor_ref, r.action, r.amount_minor \
             FROM money_movements m JOIN review_resolutions r ON r.id = m.resolution_id",
            &[],
        )
        .await
        .expect("one movement of the resolution");
    assert_eq!(row.get::<_, String>(0), "refund");
    assert_eq!(row.get::<_, i64>(1), 3000);
    assert_eq!(row.get::<_, String>(2), "900021");
    assert_eq!(row.get::<_, String>(3), "mark_refunded_outside");
    assert_eq!(row.get::<_, Option<i64>>(4), Some(3000));
    books_balance(&db, &store).await;
    // The processor never debits a refund made outside it: long after,
    // the sweep does not call it a refund not debited (the payments stay
    // unsettled: no settlement file was imported).
    let swept = sweep(
        &store,
        chrono::Utc::now() + chrono::Duration::days(30),
        &SweepPolicy::default(),
    )
    .await
    .expect("sweep");
    assert!(swept.ran);
    assert!(
        open_items(&store, "SHOP-C", ReviewKind::RefundNotDebited)
            .await
            .is_empty()
    );
    assert_eq!(
        open_items(&store, "SHOP-C", ReviewKind::UnsettledPayment)
            .await
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canceled_order_paid_and_refunded_outside_ends_refunded() {
    let (db, store) = books().await;
    import(&store, "SHOP-D", "12.50").await;
    apply(&store, &once("SHOP-D", "900030", "CANCELED", "12.50", "d0")).await;
    apply(&store, &once("SHOP-D", "900030", "COMPLETE", "12.50", "d1")).await;
    let item = open_items(&store, "SHOP-D", ReviewKind::CanceledThenPaid).await[0];
    let done = resolve(
        &store,
        &ResolveRequest::new(
            item,
            ReviewAction::MarkRefundedOutside,
            "finance-anna",
            "refunded by the shop, voucher 12",
        ),
    )
    .await
    .expect("refunded outside");
    assert_eq!(done.order_state, Some(OrderState::Refunded));
    let order = store.order("SHOP-D").await.unwrap().unwrap();
    assert_eq!(order.status, OrderState::Refunded);
    assert_eq!(order.refunded, "12.50");
    books_balance(&db, &store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_resolves_together_and_record_only_actions_change_no_figure() {
    let (db, store) = books().await;
    import(&store, "SHOP-E", "10.00").await;
    for (refno, tag) in [("900040", "e1"), ("900041", "e2"), ("900042", "e3")] {
        apply(&store, &once("SHOP-E", refno, "COMPLETE", "10.00", tag)).await;
    }
    let items = open_items(&store, "SHOP-E", ReviewKind::DuplicatePayment).await;
    assert_eq!(items.len(), 2);
    // Listed as one group: count and ids.
    let listed = group_items(
        store
            .review_items_by_status(ReviewStatus::Open, None)
            .await
            .unwrap(),
    );
    let group = listed
        .iter()
        .find(|g| g.item.kind == ReviewKind::DuplicatePayment)
        .expect("the group");
    assert_eq!(group.count, 2);
    let mut ids = group.item_ids.clone();
    ids.sort();
    assert_eq!(ids, items);
    assert_eq!(
        listed
            .iter()
            .filter(|g| g.item.kind == ReviewKind::DuplicatePayment)
            .count(),
        1
    );

    // The group refunded outside, by naming its newest item.
    let done = resolve(
        &store,
        &ResolveRequest {
            group: true,
            ..ResolveRequest::new(
                items[1],
                ReviewAction::MarkRefundedOutside,
                "finance-anna",
                "both extra charges returned by transfer",
            )
        },
    )
    .await
    .expect("group");
    assert_eq!(done.items, [items[1], items[0]]);
    assert_eq!(done.amount.as_deref(), Some("20.00"));
    let order = store.order("SHOP-E").await.unwrap().unwrap();
    assert_eq!(
        (order.paid.as_str(), order.refunded.as_str()),
        ("30.00", "20.00")
    );
    assert_eq!(order.status, OrderState::Paid);
    assert!(
        open_items(&store, "SHOP-E", ReviewKind::DuplicatePayment)
            .await
            .is_empty()
    );
    let client = sql(&db).await;
    assert_eq!(
        count(
            &client,
            &format!(
                "SELECT count(*) FROM review_resolutions WHERE group_of = {} \
                 AND action = 'mark_refunded_outside'",
                items[1]
            )
        )
        .await,
        2
    );

    // Write-off and dismissal record only: no figure moves.
    import(&store, "SHOP-F", "10.00").await;
    apply(&store, &once("SHOP-F", "900050", "COMPLETE", "10.00", "f1")).await;
    apply(&store, &once("SHOP-F", "900050", "REFUND", "15.00", "f2")).await;
    let over = open_items(&store, "SHOP-F", ReviewKind::OverRefund).await[0];
    let movements_before = count(&client, "SELECT count(*) FROM money_movements").await;
    let done = resolve(
        &store,
        &ResolveRequest::new(
            over,
            ReviewAction::WriteOff,
            "finance-anna",
            "excess refund booked as a loss",
        ),
    )
    .await
    .expect("write off");
    assert_eq!(
        done.amount.as_deref(),
        Some("5.00"),
        "the refunds above the payment"
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM money_movements").await,
        movements_before
    );
    let order = store.order("SHOP-F").await.unwrap().unwrap();
    assert_eq!(
        (order.paid.as_str(), order.refunded.as_str()),
        ("10.00", "15.00")
    );
    books_balance(&db, &store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resolutions_are_append_only_and_the_system_closing_an_item_is_one() {
    let (db, store) = books().await;
    import(&store, "SHOP-G", "20.00").await;
    // A refund before its payment: held, with an item the payment closes.
    apply(&store, &once("SHOP-G", "900060", "REFUND", "5.00", "g1")).await;
    let held = open_items(&store, "SHOP-G", ReviewKind::UnmatchedRefund).await[0];
    apply(&store, &once("SHOP-G", "900060", "COMPLETE", "20.00", "g2")).await;
    let client = sql(&db).await;
    let row = client
        .query_one(
            "SELECT action, resolved_by FROM review_resolutions WHERE review_item_id = $1",
            &[&held],
        )
        .await
        .expect("the system's resolution row");
    assert_eq!(row.get::<_, String>(0), "closed_by_system");
    assert_eq!(row.get::<_, String>(1), "system");

    for statement in [
        "UPDATE review_resolutions SET note = 'changed'",
        "DELETE FROM review_resolutions",
        // Plain TRUNCATE is refused by the ledger's foreign keys already.
        "TRUNCATE review_resolutions CASCADE",
    ] {
        let err = client.execute(statement, &[]).await.expect_err(statement);
        assert!(
            format!("{err:?}").contains("is append-only"),
            "{statement}: {err:?}"
        );
    }
    // A resolved item keeps its resolution.
    let err = client
        .execute(
            "UPDATE review_items SET status = 'open', resolved_at = NULL WHERE id = $1",
            &[&held],
        )
        .await
        .expect_err("reopen");
    assert!(
        format!("{err:?}").contains("a resolution is final"),
        "{err:?}"
    );
    let err = resolve(
        &store,
        &ResolveRequest::new(held, ReviewAction::Dismiss, "finance-anna", "x"),
    )
    .await
    .expect_err("final");
    assert!(
        err.to_string().contains("closed_by_system by system"),
        "{err}"
    );
}

fn stdout(cmd: &mut Command) -> String {
    let output = cmd.assert().success().get_output().stdout.clone();
    String::from_utf8(output).expect("utf-8")
}

fn fixture_item(db: &TestDb, kind: &str) -> i64 {
    let items: serde_json::Value = serde_json::from_str(&stdout(
        cli(db).args(["review", "list", "--kind", kind, "--format", "json"]),
    ))
    .expect("json");
    items[0]["id"].as_i64().expect("id")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_command_line_resolves_with_actions_and_says_why_not() {
    let db = TestDb::new();
    create_books(&db);
    import_and_process_fixtures(&db);
    let id = fixture_item(&db, "amount_mismatch").to_string();

    // A misfit: exit 1, the allowed actions listed.
    cli(&db)
        .args(["review", "resolve", &id, "--action", "apply_repeat"])
        .args(["--by", "finance-42", "--note", "x"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "allowed: accept_as_is, write_off, collect_difference, dismiss",
        ));
    // An unknown action: a usage error naming the valid ones.
    cli(&db)
        .args(["review", "resolve", &id, "--action", "refund"])
        .args(["--by", "finance-42", "--note", "x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("mark_refunded_outside"));
    // --order without link_order: a usage error.
    cli(&db)
        .args([
            "review", "resolve", &id, "--action", "dismiss", "--order", "X",
        ])
        .args(["--by", "finance-42", "--note", "x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("link_order"));
    // No such item: 1.
    cli(&db)
        .args(["review", "resolve", "999999", "--action", "dismiss"])
        .args(["--by", "finance-42", "--note", "x"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no review item #999999"));

    cli(&db)
        .args(["review", "resolve", &id, "--action", "accept_as_is"])
        .args([
            "--by",
            "finance-42",
            "--note",
            "price agreed with the customer",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "review item #{id} resolved: accept_as_is"
        )));
    // Final: exit 1, saying by whom.
    cli(&db)
        .args(["review", "resolve", &id, "--action", "dismiss"])
        .args(["--by", "finance-7", "--note", "again"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("already resolved"))
        .stderr(predicate::str::contains("finance-42"));

    // review show: the item, its actions, its resolution, the order's
    // payments and ledger, the notifications with key, algorithm, digests.
    let shown: serde_json::Value = serde_json::from_str(&stdout(
        cli(&db).args(["review", "show", &id, "--format", "json"]),
    ))
    .expect("json");
    assert_eq!(shown["item"]["id"].as_i64(), id.parse().ok());
    assert_eq!(shown["resolution"]["action"], "accept_as_is");
    assert_eq!(shown["resolution"]["resolved_by"], "finance-42");
    assert_eq!(
        shown["allowed_actions"],
        serde_json::json!(["accept_as_is", "write_off", "collect_difference", "dismiss"])
    );
    let notifications = shown["notifications"].as_array().expect("notifications");
    assert!(!notifications.is_empty(), "{shown}");
    for n in notifications {
        for field in ["key_id", "algorithm", "body_sha256", "identity", "outcome"] {
            assert!(!n[field].is_null(), "{field} in {n}");
        }
        assert!(n.get("customer_pseudonym").is_none(), "{n}");
    }
    assert!(shown["order"]["events"].as_array().is_some(), "{shown}");
    let table = stdout(cli(&db).args(["review", "show", &format!("#{id}")]));
    for text in [
        "actions ",
        "resolution ",
        "payments:",
        "ledger:",
        "notifications:",
        "key ",
    ] {
        assert!(table.contains(text), "{text}: {table}");
    }
    cli(&db).args(["review", "show", "999999"]).assert().code(1);

    // The old spellings still work: apply-repeat is taken (exit 1, no such
    // item, rather than 2, an unknown action), and --action note is a
    // dismissal.
    cli(&db)
        .args(["review", "resolve", "999999", "--action", "apply-repeat"])
        .args(["--by", "finance-42", "--note", "x"])
        .assert()
        .code(1);
    let chargeback = fixture_item(&db, "reversed_after_payment").to_string();
    cli(&db)
        .args(["review", "resolve", &chargeback, "--action", "note"])
        .args(["--by", "finance-42", "--note", "chargeback accepted"])
        .assert()
        .success()
        .stdout(predicate::str::contains("resolved: dismiss"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_command_line_lists_a_group_on_one_line_and_resolves_it() {
    let (db, store) = books().await;
    import(&store, "SHOP-H", "10.00").await;
    for (refno, tag) in [("900070", "h1"), ("900071", "h2"), ("900072", "h3")] {
        apply(&store, &once("SHOP-H", refno, "COMPLETE", "10.00", tag)).await;
    }
    let items = open_items(&store, "SHOP-H", ReviewKind::DuplicatePayment).await;
    assert_eq!(items.len(), 2);
    let newest = items[1];
    let grouped = stdout(cli(&db).args(["review", "list", "--kind", "duplicate_payment"]));
    let lines = item_rows(&grouped);
    assert_eq!(lines.len(), 1, "{grouped}");
    // The group's line: its newest item, COUNT 2, ITEM IDS both.
    let words: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(words[0], newest.to_string(), "{grouped}");
    let (newest_id, older_id) = (newest.to_string(), items[0].to_string());
    assert!(
        words
            .windows(3)
            .any(|w| w == ["2", newest_id.as_str(), older_id.as_str()]),
        "{grouped}"
    );
    assert!(grouped.contains("2 item(s) in 1 line(s)"), "{grouped}");
    assert!(
        grouped.contains(&format!("review resolve {newest} --group")),
        "{grouped}"
    );
    let one_by_one = stdout(cli(&db).args([
        "review",
        "list",
        "--kind",
        "duplicate_payment",
        "--ungrouped",
    ]));
    assert_eq!(item_rows(&one_by_one).len(), 2, "{one_by_one}");
    assert!(!one_by_one.contains("--group"), "{one_by_one}");
    let csv_text = stdout(cli(&db).args([
        "review",
        "list",
        "--kind",
        "duplicate_payment",
        "--format",
        "csv",
    ]));
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 1);
    let header = reader.headers().expect("header").clone();
    let column = |name: &str| {
        header
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    assert_eq!(&rows[0][column("count")], "2");
    assert_eq!(
        rows[0][column("item_ids")],
        format!("{newest} {}", items[0])
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(cli(&db).args([
        "review",
        "list",
        "--kind",
        "duplicate_payment",
        "--format",
        "json",
    ])))
    .expect("json");
    assert_eq!(json[0]["count"], 2);
    assert_eq!(json[0]["item_ids"], serde_json::json!([newest, items[0]]));

    cli(&db)
        .args(["review", "resolve", &newest.to_string(), "--group"])
        .args(["--action", "accept_as_is", "--by", "finance-42"])
        .args(["--note", "the customer bought three licences"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "review item #{newest} resolved: accept_as_is, with #{} of its group",
            items[0]
        )));
    assert!(
        open_items(&store, "SHOP-H", ReviewKind::DuplicatePayment)
            .await
            .is_empty()
    );
}

/// The lines of `review list`'s table that are items (their first column
/// an id), not the header, the count line or the hint under them.
fn item_rows(table: &str) -> Vec<&str> {
    table
        .lines()
        .filter(|line| {
            // Its first column an id, and a time in it (not the count
            // line, `4 item(s)`).
            line.split_whitespace()
                .next()
                .is_some_and(|id| id.parse::<i64>().is_ok())
                && line.split_whitespace().any(|word| {
                    word.len() == 20 && word.as_bytes()[10] == b'T' && word.ends_with('Z')
                })
        })
        .collect()
}
