//! Issue 22, items 1 and 2: money dated when it moved, and closed periods
//! that stay closed.
//!
//! Every notice here is processed today (December 2026 or later) but
//! dated by the processor in November; the figures a test expects are
//! written out by hand from the notices it sends, never read back from
//! the code under test.
// Amounts in cents are written `units_cents` (100_00 is 100.00 EUR).
#![allow(clippy::inconsistent_digit_grouping)]

use ipn_reconciler::domain::ReviewKind;
use ipn_reconciler::domain::event_time::ProcessorTimeZone;
use ipn_reconciler::domain::review::ReviewAction;
use ipn_reconciler::services::review::{ResolveRequest, resolve};
use predicates::prelude::*;

use crate::cli_reconcile::cli;
use crate::finance_report::{Books, SHOPPER, query, report_json, totals};
use crate::helpers::TestDb;
use crate::helpers::amqp::pipeline_config;

const ORDERS_CSV: &str = "order_ref,amount,currency,created_at
BK-1,100.00,EUR,2026-11-02T08:00:00Z
BK-2,60.00,EUR,2026-11-10T08:00:00Z
BK-3,25.00,EUR,2026-11-12T08:00:00Z
BK-4,40.00,EUR,2026-11-20T08:00:00Z
BK-5,10.00,EUR,2026-12-01T08:00:00Z
";

/// `export journal --format json` of a period, with extra flags.
fn journal(db: &TestDb, from: &str, to: &str, extra: &[&str]) -> Vec<serde_json::Value> {
    let output = cli(db)
        .args(["export", "journal", "--from", from, "--to", to])
        .args(extra)
        .args(["--format", "json"])
        .output()
        .expect("journal");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("json")
}

/// A journal's lines without what only says when they were exported.
fn lines_of(lines: &[serde_json::Value]) -> Vec<(String, String, String, String)> {
    lines
        .iter()
        .map(|l| {
            (
                l["at"].as_str().expect("at").to_owned(),
                l["movement"].as_str().expect("movement").to_owned(),
                l["processor_ref"].as_str().expect("refno").to_owned(),
                l["amount"].as_str().expect("amount").to_owned(),
            )
        })
        .collect()
}

/// EUR `[orders, expected, paid, refunded, reversed, charged back, fees,
/// net before commission]` of a report (zeros when EUR is absent).
fn eur(report: &serde_json::Value) -> [i64; 8] {
    totals(report).get("EUR").copied().unwrap_or_default()
}

/// November's books: BK-1 paid 2 November, BK-2 paid 10 November and
/// refunded 20.00 on 13 November, BK-3 paid 12 November. All processed
/// now, weeks after their dates.
async fn november() -> Books {
    let mut books = Books::new(ORDERS_CSV).await;
    for (order, refno, status, amount, date) in [
        ("BK-1", 3001, "COMPLETE", "100.00", "20261102100000"),
        ("BK-2", 3002, "COMPLETE", "60.00", "20261110100000"),
        ("BK-2", 3002, "REFUND", "-20.00", "20261113100000"),
        ("BK-3", 3003, "COMPLETE", "25.00", "20261112100000"),
    ] {
        books.ipn_date = date.to_owned();
        let report = books
            .notify(order, refno, status, amount, "EUR", SHOPPER)
            .await;
        assert_eq!(report.outcome.as_str(), "applied", "{order} {status}");
    }
    books
}

#[tokio::test(flavor = "multi_thread")]
async fn money_processed_weeks_late_is_dated_when_it_moved() {
    let books = november().await;
    let db = &books.db;
    // November by event: paid 100 + 60 + 25, refunded 20, whatever the day
    // the daemon processed them (today).
    let nov = report_json(
        db,
        &["--by", "event", "--from", "2026-11", "--to", "2026-11"],
    );
    assert_eq!(eur(&nov)[2..4], [185_00, 20_00], "{nov}");
    // Nothing is dated in the month the daemon recorded it.
    let recorded_month: String = query(
        db,
        "SELECT to_char(min(created_at) AT TIME ZONE 'UTC', 'YYYY-MM') FROM money_movements",
        &[],
    )
    .await[0]
        .get(0);
    assert_ne!(recorded_month, "2026-11");
    let later = report_json(db, &["--by", "event", "--from", "2026-12"]);
    assert_eq!(eur(&later)[2..4], [0, 0], "{later}");

    // Each movement carries both times: the processor's and the daemon's.
    let dated = query(
        db,
        "SELECT kind, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), \
                occurred_at = booked_at, created_at > occurred_at \
         FROM money_movements WHERE kind IN ('payment', 'refund') ORDER BY id",
        &[],
    )
    .await;
    let dated: Vec<(String, String, bool, bool)> = dated
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let day = |kind: &str, d: &str| (kind.to_owned(), d.to_owned(), true, true);
    assert_eq!(
        dated,
        [
            day("payment", "2026-11-02"),
            day("payment", "2026-11-10"),
            day("refund", "2026-11-13"),
            day("payment", "2026-11-12"),
        ]
    );

    // A settlement line settled in December for a November sale: its fee
    // is November's by event, December's by settlement date.
    let file = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(
        file.path(),
        "batch_id,processor_ref,order_ref,type,gross,fee,net,currency,settled_at\n\
         S-DEC,3001,BK-1,sale,100.00,3.10,96.90,EUR,2026-12-03\n",
    )
    .expect("write");
    // Exit 1: the fee differs from the notice's commission (an item); the
    // line is imported all the same.
    cli(db)
        .args(["settlement", "import", &file.path().display().to_string()])
        .assert()
        .code(predicate::in_iter([0, 1]));
    let nov = report_json(
        db,
        &["--by", "event", "--from", "2026-11", "--to", "2026-11"],
    );
    assert_eq!(eur(&nov)[6], 3_10, "the fee goes with its sale: {nov}");
    let dec = report_json(
        db,
        &["--by", "settled", "--from", "2026-12", "--to", "2026-12"],
    );
    assert_eq!(eur(&dec)[6], 3_10, "by settlement date: {dec}");
    let nov_settled = report_json(
        db,
        &["--by", "settled", "--from", "2026-11", "--to", "2026-11"],
    );
    assert_eq!(eur(&nov_settled)[6], 0, "{nov_settled}");
    // The journal follows the same dates.
    let lines = journal(db, "2026-11", "2026-11", &[]);
    let fee: Vec<_> = lines.iter().filter(|l| l["movement"] == "fee").collect();
    assert_eq!(fee.len(), 1);
    assert_eq!(fee[0]["date"], "2026-11-02");
    assert_eq!(fee[0]["amount"], "3.10");
    let lines = journal(db, "2026-12", "2026-12", &["--by", "settled"]);
    assert_eq!(
        lines.iter().filter(|l| l["movement"] == "fee").count(),
        1,
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_month_replayed_late_and_in_another_order_books_the_same() {
    // On time: in order. Late: December's notice first, then November's
    // orders in reverse (each order's notices in the processor's order: a
    // refund that arrives before its payment is dated when it can count,
    // by the payment's notice, docs/finance.md). The November report and
    // journal are the same.
    let on_time = november().await;
    let mut late = Books::new(ORDERS_CSV).await;
    late.ipn_date = "20261201100000".to_owned();
    late.notify("BK-5", 3005, "COMPLETE", "10.00", "EUR", SHOPPER)
        .await;
    for (order, refno, status, amount, date) in [
        ("BK-3", 3003, "COMPLETE", "25.00", "20261112100000"),
        ("BK-2", 3002, "COMPLETE", "60.00", "20261110100000"),
        ("BK-2", 3002, "REFUND", "-20.00", "20261113100000"),
        ("BK-1", 3001, "COMPLETE", "100.00", "20261102100000"),
    ] {
        late.ipn_date = date.to_owned();
        late.notify(order, refno, status, amount, "EUR", SHOPPER)
            .await;
    }
    let args = ["--by", "event", "--from", "2026-11", "--to", "2026-11"];
    let a = report_json(&on_time.db, &args);
    let b = report_json(&late.db, &args);
    assert_eq!(a["totals"], b["totals"]);
    assert_eq!(eur(&a)[2..4], [185_00, 20_00]);
    let ja = lines_of(&journal(&on_time.db, "2026-11", "2026-11", &[]));
    let mut jb = lines_of(&journal(&late.db, "2026-11", "2026-11", &[]));
    let mut ja_sorted = ja.clone();
    ja_sorted.sort();
    jb.sort();
    assert_eq!(ja_sorted, jb);
    assert!(ja.iter().any(|l| l.1 == "refund" && l.3 == "20.00"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_month_does_not_change_and_late_money_is_booked_in_the_open_one() {
    let mut books = november().await;
    let db = &books.db;
    // An orphan payment dated November: its order is imported later.
    books.ipn_date = "20261125100000".to_owned();
    let orphan = books
        .notify("BK-404", 3004, "COMPLETE", "40.00", "EUR", SHOPPER)
        .await;
    assert_eq!(orphan.outcome.as_str(), "order_not_found");

    cli(db)
        .args([
            "books",
            "close",
            "--through",
            "2026-11",
            "--by",
            "controller-ines",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("closed through 2026-11-30 (UTC)"));
    let nov_args = ["--by", "event", "--from", "2026-11", "--to", "2026-11"];
    let before = report_json(db, &nov_args);
    let journal_before = lines_of(&journal(db, "2026-11", "2026-11", &[]));
    assert_eq!(eur(&before)[2..4], [185_00, 20_00]);

    // Late notices for November: a refund of BK-1 dated 28 November, and
    // BK-3's refund dated 29 November.
    for (order, refno, status, amount, date) in [
        ("BK-1", 3001, "REFUND", "-30.00", "20261128100000"),
        ("BK-3", 3003, "REFUND", "-25.00", "20261129100000"),
    ] {
        books.ipn_date = date.to_owned();
        let applied = books
            .notify(order, refno, status, amount, "EUR", SHOPPER)
            .await;
        assert_eq!(applied.outcome.as_str(), "applied");
    }
    // A person's action: the orphan linked to its order, imported now.
    crate::helpers::amqp::import_orders_csv(
        &books.store,
        "order_ref,amount,currency,created_at\nBK-9,40.00,EUR,2026-11-25T08:00:00Z\n",
    )
    .await;
    // The worker opens the orphan's item once it gives up waiting; here,
    // as it would.
    let digest: String = query(
        db,
        "SELECT body_sha256 FROM notifications WHERE processor_ref = '3004'",
        &[],
    )
    .await[0]
        .get(0);
    books
        .store
        .open_review_item(
            ReviewKind::OrphanPayment,
            Some("BK-404"),
            Some(digest.as_str()),
            "payment of 40.00 EUR for an order that never appeared",
        )
        .await
        .expect("orphan item");
    let item: i64 = query(
        db,
        "SELECT id FROM review_items WHERE kind = $1 AND status = 'open'",
        &[ReviewKind::OrphanPayment.as_str()],
    )
    .await[0]
        .get(0);
    resolve(
        &books.store,
        &ResolveRequest {
            order_ref: Some("BK-9".to_owned()),
            ..ResolveRequest::new(
                item,
                ReviewAction::LinkOrder,
                "finance-anna",
                "BK-4 is BK-9",
            )
        },
    )
    .await
    .expect("linked");
    // A fee line for a November sale, imported after the close.
    let file = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(
        file.path(),
        "batch_id,processor_ref,order_ref,type,gross,fee,net,currency,settled_at\n\
         S-NOV,3002,BK-2,sale,60.00,1.80,58.20,EUR,2026-11-28\n",
    )
    .expect("write");
    // Exit 1: the fee differs from the notice's commission (an item); the
    // line is imported all the same.
    cli(db)
        .args(["settlement", "import", &file.path().display().to_string()])
        .assert()
        .code(predicate::in_iter([0, 1]));

    // November: the same figures and the same journal, to the cent.
    let after = report_json(db, &nov_args);
    assert_eq!(after["totals"], before["totals"]);
    assert_eq!(after["payouts"], before["payouts"]);
    assert_eq!(
        lines_of(&journal(db, "2026-11", "2026-11", &[])),
        journal_before
    );
    // By settlement date too: the fee line is dated 28 November.
    let settled = report_json(
        db,
        &["--by", "settled", "--from", "2026-11", "--to", "2026-11"],
    );
    assert_eq!(eur(&settled)[6], 0, "{settled}");

    // December holds what came late: refunds 30 + 25, the linked 40.00,
    // the 1.80 fee, each listed as late for November.
    let dec = report_json(db, &["--by", "event", "--from", "2026-12"]);
    let [_, _, paid, refunded, _, _, fees, _] = eur(&dec);
    assert_eq!((paid, refunded, fees), (40_00, 55_00, 1_80), "{dec}");
    let late = dec["late_for_closed_period"].as_array().expect("late");
    let mut listed: Vec<(String, String, String, String)> = late
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().expect("kind").to_owned(),
                l["amount"].as_str().expect("amount").to_owned(),
                l["belongs_to"].as_str().expect("belongs")[..10].to_owned(),
                l["booked_at"].as_str().expect("booked").to_owned(),
            )
        })
        .filter(|l| ["payment", "refund", "fee"].contains(&l.0.as_str()))
        .collect();
    listed.sort();
    let at = "2026-12-01T00:00:00Z".to_owned();
    assert_eq!(
        listed,
        [
            ("fee".into(), "1.80".into(), "2026-11-10".into(), at.clone()),
            (
                "payment".into(),
                "40.00".into(),
                "2026-11-25".into(),
                at.clone()
            ),
            (
                "refund".into(),
                "25.00".into(),
                "2026-11-29".into(),
                at.clone()
            ),
            (
                "refund".into(),
                "30.00".into(),
                "2026-11-28".into(),
                at.clone()
            ),
        ]
    );
    // PostgreSQL's own count of the late movements agrees.
    let late_rows: i64 = query(
        db,
        "SELECT count(*) FROM money_movements \
         WHERE booked_at > occurred_at AND booked_at = '2026-12-01T00:00:00Z'",
        &[],
    )
    .await[0]
        .get(0);
    // (A settlement line's fee and the commission it releases are not
    // rows of money_movements.)
    let listed_movements = late
        .iter()
        .filter(|l| l["kind"] != "fee" && l["kind"] != "commission_settled")
        .count();
    assert_eq!(usize::try_from(late_rows).expect("count"), listed_movements);
    assert_eq!(dec["books"]["closed_through"], "2026-11-30");

    // The table says so too.
    cli(db)
        .args(["report", "--by", "event", "--from", "2026-12"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Late for a closed period").and(
            predicate::str::contains("Books closed through 2026-11-30 (UTC)"),
        ));
}

#[tokio::test(flavor = "multi_thread")]
async fn closes_and_reopens_are_checked_audited_and_kept() {
    let mut books = november().await;
    let db = &books.db;
    // Nothing to reopen yet; a day not over cannot be closed.
    cli(db)
        .args(["books", "reopen", "--by", "x", "--note", "why"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not closed"));
    cli(db)
        .args(["books", "close", "--through", "2999-01-31", "--by", "x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("has not ended yet"));
    cli(db)
        .args(["books", "close", "--through", "2026-11-30", "--by", " "])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--by must not be empty"));
    cli(db)
        .args(["books", "close", "--through", "2026-11-30", "--by", "ines"])
        .assert()
        .success();
    // Not later than the current close: refused.
    cli(db)
        .args(["books", "close", "--through", "2026-10", "--by", "ines"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "closed through 2026-11-30 already",
        ));
    // A reopen needs its reason.
    cli(db)
        .args([
            "books",
            "reopen",
            "--through",
            "2026-10",
            "--by",
            "ines",
            "--note",
            "",
        ])
        .assert()
        .code(2);
    cli(db)
        .args([
            "books",
            "reopen",
            "--through",
            "2026-10",
            "--by",
            "ines",
            "--note",
            "auditor's adjustment AJ-7",
        ])
        .assert()
        .success();
    // Reopened: a late November refund is booked in November again.
    books.ipn_date = "20261127100000".to_owned();
    books
        .notify("BK-1", 3001, "REFUND", "-10.00", "EUR", SHOPPER)
        .await;
    let nov = report_json(
        db,
        &["--by", "event", "--from", "2026-11", "--to", "2026-11"],
    );
    assert_eq!(eur(&nov)[3], 20_00 + 10_00, "{nov}");
    assert_eq!(nov["late_for_closed_period"], serde_json::json!([]));

    // The audit trail, as PostgreSQL holds it, and as `books status` shows.
    let rows = query(
        db,
        "SELECT action, coalesce(through::text, ''), done_by, note FROM books_closes ORDER BY id",
        &[],
    )
    .await;
    let rows: Vec<(String, String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        rows,
        [
            (
                "close".into(),
                "2026-11-30".into(),
                "ines".into(),
                "".into()
            ),
            (
                "reopen".into(),
                "2026-10-31".into(),
                "ines".into(),
                "auditor's adjustment AJ-7".into()
            ),
        ]
    );
    cli(db).args(["books", "status"]).assert().success().stdout(
        predicate::str::contains("Closed through 2026-10-31 (UTC)")
            .and(predicate::str::contains("auditor's adjustment AJ-7")),
    );
    // Append-only, even for the database's owner.
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let err = client
        .batch_execute("UPDATE books_closes SET through = '2026-12-31'")
        .await
        .expect_err("append-only");
    assert!(err.to_string().contains("append-only") || format!("{err:?}").contains("append-only"));
}

/// `processor-timezone`: the processor's dates are read in its zone. A
/// payment dated 2026-11-30 23:30 in Bucharest (UTC+2) moved at 21:30Z.
#[tokio::test(flavor = "multi_thread")]
async fn the_processors_dates_are_read_in_processor_timezone() {
    let mut config = pipeline_config();
    config.reconcile.processor_time_zone = ProcessorTimeZone(chrono_tz::Europe::Bucharest);
    let mut books = Books::with_config(ORDERS_CSV, config).await;
    // The payment date is the notice's day at midnight (see
    // `processor_date`), the refund's is its IPN_DATE.
    books.ipn_date = "20261130233000".to_owned();
    books
        .notify("BK-1", 3001, "COMPLETE", "100.00", "EUR", SHOPPER)
        .await;
    books
        .notify("BK-1", 3001, "REFUND", "-5.00", "EUR", SHOPPER)
        .await;
    let rows = query(
        &books.db,
        "SELECT kind, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') \
         FROM money_movements WHERE kind IN ('payment', 'refund') ORDER BY kind",
        &[],
    )
    .await;
    let rows: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        rows,
        [
            // 2026-11-30 00:00 in Bucharest.
            ("payment".to_owned(), "2026-11-29 22:00".to_owned()),
            // IPN_DATE 2026-11-30 23:30 in Bucharest.
            ("refund".to_owned(), "2026-11-30 21:30".to_owned()),
        ]
    );
}
