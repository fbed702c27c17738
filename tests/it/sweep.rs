//! Issue 12, item 4: the sweep on the fixtures' books, with injected
//! times (no waiting): stale orders, payments not settled and refunds not
//! debited become review items once; items whose cause went away close;
//! one instance sweeps at a time (the advisory lock); money at risk counts
//! the late unsettled payments.
#![allow(clippy::inconsistent_digit_grouping)]

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use ipn_reconciler::domain::review::ReviewAction;
use ipn_reconciler::domain::sweep::SweepPolicy;
use ipn_reconciler::services::review::{ResolveRequest, resolve};
use ipn_reconciler::services::sweep::sweep;
use ipn_reconciler::store::sweep::SWEEP_LOCK;
use predicates::prelude::*;

use crate::cli_reconcile::{cli, create_books, import_and_process_fixtures};
use crate::finance_report::query;
use crate::helpers::{TestDb, repo_path};

/// Now, or a time after the fixtures' orders were created (2026-11-01),
/// whichever is later: the test does not depend on the machine's clock.
fn base() -> DateTime<Utc> {
    let floor: DateTime<Utc> = "2026-11-05T00:00:00Z".parse().expect("time");
    Utc::now().max(floor)
}

/// Open sweep items: (kind, order_ref, processor_ref).
async fn open_items(db: &TestDb) -> Vec<(String, String, Option<String>)> {
    query(
        db,
        "SELECT kind, order_ref, processor_ref FROM review_items \
         WHERE kind IN ('stale_order', 'unsettled_payment', 'refund_not_debited') \
           AND status = 'open' ORDER BY kind, order_ref",
        &[],
    )
    .await
    .into_iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

fn item(kind: &str, order: &str, refno: Option<&str>) -> (String, String, Option<String>) {
    (kind.to_owned(), order.to_owned(), refno.map(str::to_owned))
}

/// Books with the fixtures processed, and a settlement that settles only
/// SHOP-1001's payment and debits only 20.00 of SHOP-1002's 49.99 refunds
/// (the fees are the commissions the notices carried: no `fee_differs`).
async fn books() -> TestDb {
    let db = TestDb::new();
    create_books(&db);
    import_and_process_fixtures(&db);
    dated_when_recorded(&db).await;
    let file = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(
        file.path(),
        "batch_id,processor_ref,order_ref,type,gross,fee,net,currency,settled_at\n\
         S-1,71000101,SHOP-1001,sale,107.00,5.35,101.65,EUR,2026-11-30\n\
         S-1,71000102,SHOP-1002,sale,49.99,2.49,47.50,USD,2026-11-30\n\
         S-1,71000102,SHOP-1002,refund,-20.00,0,-20.00,USD,2026-11-30\n",
    )
    .expect("write");
    cli(&db)
        .args(["settlement", "import", &file.path().display().to_string()])
        .assert()
        .success();
    db
}

#[tokio::test(flavor = "multi_thread")]
async fn sweeps_raise_each_cause_once_as_time_passes_and_close_what_went_away() {
    let db = books().await;
    let store = db.store().await;
    let policy = SweepPolicy::default();
    let now = base();

    // Now: only SHOP-1008 (pending since 2026-11-01) is old enough.
    let first = sweep(&store, now, &policy).await.expect("sweep");
    assert!(first.ran);
    assert_eq!(
        open_items(&db).await,
        [item("stale_order", "SHOP-1008", None)]
    );
    // Again: nothing new.
    let again = sweep(&store, now, &policy).await.expect("sweep");
    assert!(again.ran && again.opened.is_empty() && again.closed == 0);

    // Six days later: the payments are not late yet.
    sweep(&store, now + Duration::days(6), &policy)
        .await
        .expect("sweep");
    assert_eq!(open_items(&db).await.len(), 1);

    // Eight days later: every captured payment no line settled, and the
    // refunds of SHOP-1002 of which only 20.00 were debited.
    let late = sweep(&store, now + Duration::days(8), &policy)
        .await
        .expect("sweep");
    let expected_unsettled: Vec<(String, String)> = query(
        &db,
        "SELECT o.order_ref, p.processor_ref FROM payments p JOIN orders o ON o.id = p.order_id \
         WHERE p.paid_minor > 0 AND NOT EXISTS (SELECT 1 FROM settlement_lines l \
               WHERE l.payment_id = p.id AND l.kind = 'sale' AND l.status = 'matched') \
         ORDER BY o.order_ref",
        &[],
    )
    .await
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_eq!(
        expected_unsettled
            .iter()
            .map(|(o, _)| o.as_str())
            .collect::<Vec<_>>(),
        ["SHOP-1003", "SHOP-1009", "SHOP-1010", "SHOP-1012"]
    );
    let mut expected = vec![item("refund_not_debited", "SHOP-1002", Some("71000102"))];
    expected.push(item("stale_order", "SHOP-1008", None));
    for (order, refno) in &expected_unsettled {
        expected.push(item("unsettled_payment", order, Some(refno)));
    }
    expected.sort();
    assert_eq!(open_items(&db).await, expected);
    assert_eq!(late.opened.len(), expected.len() - 1);
    let refund = late
        .opened
        .iter()
        .find(|f| f.kind.as_str() == "refund_not_debited")
        .expect("refund item");
    assert!(
        refund.details.contains("refunds of 49.99 USD") && refund.details.contains("missing 29.99"),
        "{}",
        refund.details
    );

    // Money at risk: the standing money of the late unsettled payments,
    // as an independent sum (SHOP-1009 was charged back: nothing stands).
    let at_risk = store.unsettled_by_currency().await.expect("at risk");
    let at_risk: BTreeMap<String, i64> = at_risk
        .into_iter()
        .map(|(c, m)| (c.as_str().to_owned(), m))
        .collect();
    assert_eq!(
        at_risk,
        BTreeMap::from([
            ("EUR".to_owned(), 89_00),
            ("JPY".to_owned(), 2500),
            ("USD".to_owned(), 200_00)
        ])
    );

    // A person resolves one; it is not raised again.
    let id: i64 = query(
        &db,
        "SELECT id FROM review_items WHERE kind = 'stale_order'",
        &[],
    )
    .await[0]
        .get(0);
    resolve(
        &store,
        &ResolveRequest::new(
            id,
            ReviewAction::Dismiss,
            "finance-1",
            "the shop called the customer",
        ),
    )
    .await
    .expect("resolve");
    let later = sweep(&store, now + Duration::days(30), &policy)
        .await
        .expect("sweep");
    assert!(later.opened.is_empty(), "{:?}", later.opened);

    // The rest settles: the items close by themselves.
    let file = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(
        file.path(),
        "batch_id,processor_ref,order_ref,type,gross,fee,net,currency,settled_at\n\
         S-2,71000112,SHOP-1012,sale,89.00,4.45,84.55,EUR,2026-12-03\n\
         S-2,71000102,SHOP-1002,refund,-29.99,0,-29.99,USD,2026-12-03\n",
    )
    .expect("write");
    cli(&db)
        .args(["settlement", "import", &file.path().display().to_string()])
        .assert()
        .success();
    let closing = sweep(&store, now + Duration::days(31), &policy)
        .await
        .expect("sweep");
    assert_eq!(closing.closed, 2);
    let open = open_items(&db).await;
    assert!(
        !open.contains(&item("unsettled_payment", "SHOP-1012", Some("71000112")))
            && !open.iter().any(|i| i.0 == "refund_not_debited"),
        "{open:?}"
    );
    let notes: Vec<String> = query(
        &db,
        "SELECT resolution_note FROM review_items WHERE resolved_by = 'system' ORDER BY resolution_note",
        &[],
    )
    .await
    .into_iter()
    .map(|r| r.get(0))
    .collect();
    assert_eq!(
        notes,
        [
            "a settlement line settled the payment",
            "settlement lines debited the refunds"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_instance_sweeps_at_a_time() {
    let db = books().await;
    let store = db.store().await;
    let policy = SweepPolicy::default();
    let when = base() + Duration::days(8);

    // Another instance holds the lock: this one does nothing.
    let (holder, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&SWEEP_LOCK])
        .await
        .expect("lock");
    let skipped = sweep(&store, when, &policy).await.expect("sweep");
    assert!(!skipped.ran && skipped.opened.is_empty());
    assert!(open_items(&db).await.is_empty());
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&SWEEP_LOCK])
        .await
        .expect("unlock");

    // Two at once: together they open every cause exactly once.
    let other = db.store().await;
    let (a, b) = tokio::join!(sweep(&store, when, &policy), sweep(&other, when, &policy));
    let (a, b) = (a.expect("a"), b.expect("b"));
    assert!(a.ran || b.ran);
    let open = open_items(&db).await;
    assert_eq!(a.opened.len() + b.opened.len(), open.len());
    let mut distinct = open.clone();
    distinct.dedup();
    assert_eq!(distinct, open, "no cause has two open items");
    assert_eq!(open.len(), 1 + 4 + 1, "stale, unsettled, refund");
}

/// Moves every order's and money movement's recording time `days` back,
/// as if the fixtures had been processed that long ago, so that a real
/// `sweep` (whose `--as-of` may not be in the future) finds them late.
/// The movements are append-only: the triggers are bypassed for this one
/// session only (`session_replication_role`), as a restore would.
async fn age_books(db: &TestDb, days: i32) {
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "SET session_replication_role = replica; \
             UPDATE orders SET created_at = created_at - interval '{days} days'; \
             UPDATE money_movements SET created_at = created_at - interval '{days} days', \
                    occurred_at = least(occurred_at, created_at - interval '{days} days'), \
                    booked_at = least(booked_at, created_at - interval '{days} days'); \
             SET session_replication_role = origin;"
        ))
        .await
        .expect("age the books");
}

/// Dates every money movement when it was recorded, as if the processor
/// had paid the fixtures' orders just now: these tests follow causes as
/// time passes from `base()`, whatever the fixtures' own payment dates
/// (which [`ages_count_from_the_processors_payment_date`] uses).
async fn dated_when_recorded(db: &TestDb) {
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute(
            "SET session_replication_role = replica; \
             UPDATE money_movements SET occurred_at = created_at, booked_at = created_at; \
             SET session_replication_role = origin;",
        )
        .await
        .expect("date the movements");
}

/// Every row of `review_items`, each as PostgreSQL's own text of the
/// whole row, in id order: an independent dump to compare byte for byte.
async fn review_items_dump(db: &TestDb) -> String {
    query(
        db,
        "SELECT coalesce(string_agg(r::text, E'\\n' ORDER BY r.id), '') FROM review_items AS r",
        &[],
    )
    .await[0]
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_command_reports_what_it_opened() {
    let db = books().await;
    age_books(&db, 8).await;
    cli(&db).args(["sweep"]).assert().success().stdout(
        predicate::str::contains("opened 6 review item(s)")
            .and(predicate::str::contains("stale_order"))
            .and(predicate::str::contains("unsettled_payment    SHOP-1010"))
            .and(predicate::str::contains("dry run").not()),
    );
    cli(&db)
        .args(["sweep"])
        .assert()
        .success()
        .stdout(predicate::str::contains("opened 0 review item(s)"));
    cli(&db)
        .args(["sweep", "--stale-order-age", "0s"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("stale-order-age"));
    // A configuration file with the settings loads (the example's keys).
    let _ = repo_path("deploy/example.toml");
}

/// Issue 22 item 8: `sweep --dry-run` prints what a sweep would open and
/// close, in the sweep's form, and leaves `review_items` byte for byte as
/// it was; the real sweep then does exactly that.
#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_prints_what_a_sweep_would_do_and_writes_nothing() {
    let db = books().await;
    let store = db.store().await;
    let policy = SweepPolicy::default();
    let late = base() + Duration::days(8);

    let before = review_items_dump(&db).await;
    let output = cli(&db)
        .args(["sweep", "--dry-run", "--as-of", &late.to_rfc3339()])
        .output()
        .expect("run");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("dry run, nothing written: swept as of ")
            && stdout.contains("opened 6 review item(s), closed 0")
            && stdout.contains("unsettled_payment    SHOP-1010")
            && stdout.contains("refund_not_debited   SHOP-1002"),
        "{stdout}"
    );
    assert_eq!(review_items_dump(&db).await, before, "a dry run wrote");
    assert!(open_items(&db).await.is_empty());

    // The real sweep opens exactly what the dry run listed.
    let swept = sweep(&store, late, &policy).await.expect("sweep");
    let mut listed: Vec<String> = stdout
        .lines()
        .skip(1)
        .map(|l| l.trim().to_owned())
        .collect();
    let mut opened: Vec<String> = swept
        .opened
        .iter()
        .map(|f| {
            format!(
                "{:<20} {:<16} {}",
                f.kind.as_str(),
                f.order_ref.as_deref().unwrap_or("-"),
                f.details
            )
        })
        .collect();
    listed.sort();
    opened.sort();
    assert_eq!(listed, opened);

    // Two causes go away: the dry run lists the two closings, writes
    // nothing; the sweep then closes those two.
    let file = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(
        file.path(),
        "batch_id,processor_ref,order_ref,type,gross,fee,net,currency,settled_at\n\
         S-2,71000112,SHOP-1012,sale,89.00,4.45,84.55,EUR,2026-12-03\n\
         S-2,71000102,SHOP-1002,refund,-29.99,0,-29.99,USD,2026-12-03\n",
    )
    .expect("write");
    cli(&db)
        .args(["settlement", "import", &file.path().display().to_string()])
        .assert()
        .success();
    let before = review_items_dump(&db).await;
    assert!(before.contains("unsettled_payment"), "{before}");
    let later = base() + Duration::days(9);
    cli(&db)
        .args(["sweep", "--dry-run", "--as-of", &later.to_rfc3339()])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("dry run, nothing written")
                .and(predicate::str::contains(
                    "opened 0 review item(s), closed 2",
                ))
                .and(predicate::str::contains(
                    "unsettled_payment    SHOP-1012        a settlement line settled the payment",
                ))
                .and(predicate::str::contains(
                    "refund_not_debited   SHOP-1002        settlement lines debited the refunds",
                )),
        );
    assert_eq!(review_items_dump(&db).await, before, "a dry run wrote");
    let closing = sweep(&store, later, &policy).await.expect("sweep");
    assert_eq!(closing.closed, 2);
    assert_ne!(review_items_dump(&db).await, before);
}

/// Issue 22 item 8: the items a sweep writes are permanent, so a real
/// sweep dated after the database's clock is refused (exit 2) and writes
/// nothing; with --dry-run it is answered; a past --as-of still sweeps.
#[tokio::test(flavor = "multi_thread")]
async fn a_future_as_of_is_refused_unless_a_dry_run() {
    let db = books().await;
    let future = (base() + Duration::days(8)).to_rfc3339();
    let before = review_items_dump(&db).await;
    cli(&db)
        .args(["sweep", "--as-of", &future])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("after the database's time")
                .and(predicate::str::contains("permanent"))
                .and(predicate::str::contains("--dry-run")),
        );
    assert_eq!(
        review_items_dump(&db).await,
        before,
        "a refused sweep wrote"
    );
    cli(&db)
        .args(["sweep", "--as-of", &future, "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains("opened 6 review item(s)"));
    assert_eq!(review_items_dump(&db).await, before);
    // A month already past: swept, for real (nothing is late by then).
    cli(&db)
        .args(["sweep", "--as-of", "2026-11"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "swept as of 2026-11-01T00:00:00Z: opened 0",
        ));
}

/// Imports a settlement file whose only line is a sale of 95.00 EUR for
/// SHOP-1012's 89.00 EUR payment: matched to it by its references, and
/// of another amount (`settlement_amount_differs`).
fn import_differing_sale(db: &TestDb) {
    let file = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(
        file.path(),
        "batch_id,processor_ref,order_ref,type,gross,fee,net,currency,settled_at\n\
         S-3,71000112,SHOP-1012,sale,95.00,4.45,90.55,EUR,2026-12-03\n",
    )
    .expect("write");
    // Exit 1: the import opened review items.
    cli(db)
        .args(["settlement", "import", &file.path().display().to_string()])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "settlement_amount_differs  SHOP-1012",
        ));
}

/// The open items of the kinds a payment's settlement raises, for one order.
async fn settlement_items(db: &TestDb, order: &str) -> Vec<(String, String, Option<String>)> {
    query(
        db,
        "SELECT kind, order_ref, processor_ref FROM review_items \
         WHERE order_ref = $1 AND status = 'open' \
           AND kind IN ('settlement_amount_differs', 'unsettled_payment') ORDER BY kind",
        &[order],
    )
    .await
    .into_iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// Issue 22 item 8: one difference opens one item. A sale line matched to
/// a payment with another amount is `settlement_amount_differs`; the
/// sweep does not also call that payment `unsettled_payment`, whether the
/// line came before the sweep or after it had raised the payment, nor
/// once a person resolved the difference.
#[tokio::test(flavor = "multi_thread")]
async fn a_payment_whose_sale_line_differs_opens_one_item() {
    let policy = SweepPolicy::default();
    let late = base() + Duration::days(8);
    let differs = item("settlement_amount_differs", "SHOP-1012", Some("71000112"));
    let unsettled = item("unsettled_payment", "SHOP-1012", Some("71000112"));

    // The line before the sweep: only the difference is open.
    let db = books().await;
    let store = db.store().await;
    import_differing_sale(&db);
    assert_eq!(
        settlement_items(&db, "SHOP-1012").await,
        std::slice::from_ref(&differs)
    );
    let swept = sweep(&store, late, &policy).await.expect("sweep");
    assert!(
        !swept
            .opened
            .iter()
            .any(|f| f.order_ref.as_deref() == Some("SHOP-1012")),
        "{:?}",
        swept.opened
    );
    assert_eq!(
        settlement_items(&db, "SHOP-1012").await,
        std::slice::from_ref(&differs)
    );
    // The other unsettled payments are still raised.
    assert!(open_items(&db).await.contains(&item(
        "unsettled_payment",
        "SHOP-1010",
        Some("71000110")
    )),);
    // A person dismisses the difference: still not unsettled.
    let id: i64 = query(
        &db,
        "SELECT id FROM review_items WHERE kind = 'settlement_amount_differs'",
        &[],
    )
    .await[0]
        .get(0);
    resolve(
        &store,
        &ResolveRequest::new(
            id,
            ReviewAction::Dismiss,
            "finance-1",
            "the processor agreed",
        ),
    )
    .await
    .expect("resolve");
    let later = sweep(&store, late + Duration::days(20), &policy)
        .await
        .expect("sweep");
    assert!(later.opened.is_empty(), "{:?}", later.opened);
    assert!(settlement_items(&db, "SHOP-1012").await.is_empty());

    // The sweep first, then the line: the unsettled item closes, the
    // difference stays the one item.
    let db = books().await;
    let store = db.store().await;
    sweep(&store, late, &policy).await.expect("sweep");
    assert_eq!(settlement_items(&db, "SHOP-1012").await, [unsettled]);
    import_differing_sale(&db);
    let closing = sweep(&store, late + Duration::days(1), &policy)
        .await
        .expect("sweep");
    assert_eq!(closing.closed, 1, "{closing:?}");
    assert!(
        closing.closed_items[0]
            .note
            .contains("settlement_amount_differs"),
        "{closing:?}"
    );
    assert_eq!(settlement_items(&db, "SHOP-1012").await, [differs]);
}

/// Issue 22, item 8: a payment is late for its settlement counted from
/// when the processor says it was paid (`PAYMENTDATE`), not from when the
/// daemon recorded it. The fixtures' payments are dated 2026-11-02 09:16:02
/// (UTC, the default processor-timezone) and recorded today: with
/// settlement-days = 7 a sweep as of 2026-11-09 09:16 finds none of them
/// late, one as of 2026-11-09 09:17 finds every unsettled one.
#[tokio::test(flavor = "multi_thread")]
async fn ages_count_from_the_processors_payment_date() {
    let db = TestDb::new();
    create_books(&db);
    import_and_process_fixtures(&db);
    let store = db.store().await;
    let policy = SweepPolicy::default();
    // The payment dates PostgreSQL holds, independent of the sweep.
    let paid: Vec<String> = query(
        &db,
        "SELECT DISTINCT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') \
         FROM money_movements WHERE kind = 'payment'",
        &[],
    )
    .await
    .into_iter()
    .map(|r| r.get(0))
    .collect();
    assert_eq!(paid, ["2026-11-02 09:16:02"], "the fixtures' PAYMENTDATE");
    let unsettled = |items: Vec<(String, String, Option<String>)>| {
        items
            .into_iter()
            .filter(|(kind, ..)| kind == "unsettled_payment")
            .count()
    };
    let before: DateTime<Utc> = "2026-11-09T09:16:00Z".parse().expect("time");
    sweep(&store, before, &policy).await.expect("sweep");
    assert_eq!(unsettled(open_items(&db).await), 0);
    let after: DateTime<Utc> = "2026-11-09T09:17:00Z".parse().expect("time");
    sweep(&store, after, &policy).await.expect("sweep");
    // Every captured payment (none settled: no settlement was imported).
    let captured: i64 = query(
        &db,
        "SELECT count(*) FROM payments WHERE paid_minor > 0",
        &[],
    )
    .await[0]
        .get(0);
    assert!(captured >= 4, "{captured}");
    assert_eq!(
        i64::try_from(unsettled(open_items(&db).await)).expect("count"),
        captured
    );
}
