//! Issue 22, items 1 and 8: a month can be named (`--from 2026-11 --to
//! 2026-11`), and `report-timezone` says where its days begin. A payment
//! recorded at 2026-10-31T22:30:00Z is 1 November 00:30 in Bucharest: with
//! `IPN_REPORT_TIMEZONE=Europe/Bucharest` it belongs to November's report
//! and journal, not October's; in UTC it belongs to October. Every figure
//! is checked against PostgreSQL's own reading of the zone (`timestamptz
//! '2026-11-01 00:00 Europe/Bucharest'`), not against the code's output.
// Amounts in cents are written `units_cents` (100_00 is 100.00 EUR).
#![allow(clippy::inconsistent_digit_grouping)]

use predicates::prelude::*;

use crate::cli_reconcile::cli;
use crate::finance_report::{Books, SHOPPER, query};
use crate::helpers::TestDb;

/// One order paid just after midnight in Bucharest (22:30 UTC the day
/// before), one just before it (21:30 UTC, 23:30 in Bucharest).
const ORDERS_CSV: &str = "order_ref,amount,currency,created_at
TZ-NOV-1,100.00,EUR,2026-10-31T22:30:00Z
TZ-OCT-1,40.00,EUR,2026-10-31T21:30:00Z
";

/// The books: both orders paid through the pipeline, each payment's ledger
/// row recorded at its order's creation time. The clock cannot be set back
/// to October, so the test moves the two rows there itself, past the
/// append-only trigger (`session_replication_role = replica`, which skips
/// triggers for this one session).
async fn books() -> Books {
    let books = Books::new(ORDERS_CSV).await;
    books
        .notify("TZ-NOV-1", 5001, "COMPLETE", "100.00", "EUR", SHOPPER)
        .await;
    books
        .notify("TZ-OCT-1", 5002, "COMPLETE", "40.00", "EUR", SHOPPER)
        .await;
    let (client, connection) = tokio_postgres::connect(&books.db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute(
            "SET session_replication_role = replica; \
             UPDATE money_movements AS m SET created_at = o.created_at, \
                    occurred_at = o.created_at, booked_at = o.created_at \
             FROM orders AS o WHERE o.id = m.order_id; \
             RESET session_replication_role;",
        )
        .await
        .expect("date the payments");
    books
}

/// What PostgreSQL sums for payments recorded in `[from, to)`, both local
/// midnights in `zone`: EUR minor units.
async fn paid_between(db: &TestDb, zone: &str, from: &str, to: &str) -> i64 {
    let rows = query(
        db,
        "SELECT coalesce(sum(amount_minor), 0)::int8 FROM money_movements \
         WHERE kind = 'payment' AND currency = 'EUR' \
           AND booked_at >= ($2::text::timestamp AT TIME ZONE $1::text) \
           AND booked_at < ($3::text::timestamp AT TIME ZONE $1::text)",
        &[zone, from, to],
    )
    .await;
    rows[0].get(0)
}

/// Orders created in `[from, to)` in `zone`, by PostgreSQL.
async fn orders_between(db: &TestDb, zone: &str, from: &str, to: &str) -> Vec<String> {
    query(
        db,
        "SELECT order_ref FROM orders \
         WHERE created_at >= ($2::text::timestamp AT TIME ZONE $1::text) \
           AND created_at < ($3::text::timestamp AT TIME ZONE $1::text) ORDER BY order_ref",
        &[zone, from, to],
    )
    .await
    .into_iter()
    .map(|r| r.get(0))
    .collect()
}

/// `report --format json` with `IPN_REPORT_TIMEZONE` set (or not).
fn report(db: &TestDb, zone: Option<&str>, args: &[&str]) -> serde_json::Value {
    let mut cmd = cli(db);
    match zone {
        Some(zone) => cmd.env("IPN_REPORT_TIMEZONE", zone),
        None => cmd.env_remove("IPN_REPORT_TIMEZONE"),
    };
    let output = cmd
        .arg("report")
        .args(args)
        .args(["--format", "json"])
        .output()
        .expect("run report");
    assert!(
        output.status.success(),
        "report {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("json")
}

/// EUR paid in a report, in minor units (0 when EUR is not in it).
fn eur_paid(report: &serde_json::Value) -> i64 {
    report["totals"]
        .as_array()
        .expect("totals")
        .iter()
        .find(|t| t["currency"] == "EUR")
        .map_or(0, |t| {
            ipn_reconciler::domain::Money::iso(t["paid"].as_str().expect("paid"), "EUR")
                .expect("an exact amount")
                .minor_units()
        })
}

/// EUR orders counted in a report.
fn eur_orders(report: &serde_json::Value) -> i64 {
    report["totals"]
        .as_array()
        .expect("totals")
        .iter()
        .find(|t| t["currency"] == "EUR")
        .map_or(0, |t| t["orders"].as_i64().expect("orders"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_just_after_midnight_in_bucharest_is_in_novembers_report_there() {
    let books = books().await;
    let db = &books.db;
    let bucharest = Some("Europe/Bucharest");

    // PostgreSQL's reading of the zone: November holds the 100.00, October
    // the 40.00; in UTC October holds both.
    let nov_local = paid_between(db, "Europe/Bucharest", "2026-11-01", "2026-12-01").await;
    let oct_local = paid_between(db, "Europe/Bucharest", "2026-10-01", "2026-11-01").await;
    let nov_utc = paid_between(db, "UTC", "2026-11-01", "2026-12-01").await;
    let oct_utc = paid_between(db, "UTC", "2026-10-01", "2026-11-01").await;
    assert_eq!((nov_local, oct_local), (100_00, 40_00));
    assert_eq!((nov_utc, oct_utc), (0, 140_00));

    // The money movements of a month, named as a month.
    let by_event = ["--by", "event"];
    let nov = report(
        db,
        bucharest,
        &[&["--from", "2026-11", "--to", "2026-11"][..], &by_event].concat(),
    );
    let oct = report(
        db,
        bucharest,
        &[&["--from", "2026-10", "--to", "2026-10"][..], &by_event].concat(),
    );
    assert_eq!(eur_paid(&nov), nov_local, "{nov}");
    assert_eq!(eur_paid(&oct), oct_local, "{oct}");
    // The period it reports is November's midnights in Bucharest.
    assert_eq!(nov["period"]["from"], "2026-10-31T22:00:00Z", "{nov}");
    assert_eq!(nov["period"]["to"], "2026-11-30T22:00:00Z", "{nov}");
    // The same month as dates, and as the flag: the same figures.
    let days = report(
        db,
        None,
        &[
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-30",
            "--by",
            "event",
            "--report-timezone",
            "Europe/Bucharest",
        ],
    );
    assert_eq!(eur_paid(&days), nov_local, "{days}");

    // In UTC (the default) the payment is October's.
    let nov = report(
        db,
        None,
        &[&["--from", "2026-11", "--to", "2026-11"][..], &by_event].concat(),
    );
    let oct = report(
        db,
        None,
        &[&["--from", "2026-10", "--to", "2026-10"][..], &by_event].concat(),
    );
    assert_eq!(eur_paid(&nov), nov_utc, "{nov}");
    assert_eq!(eur_paid(&oct), oct_utc, "{oct}");

    // By creation: the orders created in the month, in each zone.
    let created_nov = orders_between(db, "Europe/Bucharest", "2026-11-01", "2026-12-01").await;
    assert_eq!(created_nov, ["TZ-NOV-1"]);
    let nov = report(db, bucharest, &["--from", "2026-11", "--to", "2026-11"]);
    assert_eq!(
        eur_orders(&nov),
        i64::try_from(created_nov.len()).expect("count")
    );
    assert_eq!(eur_paid(&nov), nov_local, "{nov}");
    let created_oct_utc = orders_between(db, "UTC", "2026-10-01", "2026-11-01").await;
    let oct = report(db, None, &["--from", "2026-10", "--to", "2026-10"]);
    assert_eq!(
        eur_orders(&oct),
        i64::try_from(created_oct_utc.len()).expect("count")
    );
    assert_eq!(eur_paid(&oct), oct_utc, "{oct}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_journal_of_a_month_books_its_lines_on_local_days() {
    let books = books().await;
    let db = &books.db;
    let output = cli(db)
        .env("IPN_REPORT_TIMEZONE", "Europe/Bucharest")
        .args(["export", "journal", "--from", "2026-11", "--to", "2026-11"])
        .output()
        .expect("run export");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    // PostgreSQL's count of the month's movements in Bucharest.
    let expected: i64 = query(
        db,
        "SELECT count(*) FROM money_movements \
         WHERE booked_at >= ('2026-11-01'::timestamp AT TIME ZONE 'Europe/Bucharest') \
           AND booked_at < ('2026-12-01'::timestamp AT TIME ZONE 'Europe/Bucharest')",
        &[],
    )
    .await[0]
        .get(0);
    assert_eq!(
        i64::try_from(rows.len()).expect("count"),
        expected,
        "{text}"
    );
    let line = rows
        .iter()
        .find(|r| &r[2] == "TZ-NOV-1" && &r[4] == "payment")
        .unwrap_or_else(|| panic!("{text}"));
    // The day in Bucharest, the time in UTC.
    assert_eq!((&line[0], &line[1]), ("2026-11-01", "2026-10-31T22:30:00Z"));
    assert_eq!(&line[8], "100.00");
    assert!(!text.contains("TZ-OCT-1"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_zone_or_month_is_refused_naming_what_to_fix() {
    let db = TestDb::new();
    cli(&db)
        .env("IPN_REPORT_TIMEZONE", "Europe/Atlantis")
        .args(["report", "--from", "2026-11"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("report-timezone")
                .and(predicate::str::contains("IPN_REPORT_TIMEZONE"))
                .and(predicate::str::contains("Europe/Atlantis"))
                .and(predicate::str::contains("IANA")),
        );
    cli(&db)
        .args(["report", "--report-timezone", "Mars/Olympus"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--report-timezone"));
    cli(&db)
        .args(["report", "--from", "2026-13"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no month 13"));
    cli(&db)
        .args(["report", "--from", "2026-1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("two digits"));
    cli(&db)
        .args(["report", "--from", "2026-11", "--to", "2026-10"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("the period is empty"));
    let help = cli(&db).args(["report", "--help"]).output().expect("help");
    let help = String::from_utf8(help.stdout).expect("utf-8");
    assert!(help.contains("a month (2026-11"), "{help}");
    assert!(help.contains("--report-timezone"), "{help}");
}
