//! Issue 22, Deliver 3: the chargeback lifecycle, on books filled by
//! signed notices in the processor's field order (`ipn process`, the
//! worker's batch path, real Postgres). A dispute is a notice on the
//! original REFNO with `CHARGEBACK_RESOLUTION` other than `NONE` (here
//! with `ORDERSTATUS=COMPLETE`, as the processor's plugins expect it):
//! `OPEN` takes back what the refunds left, `WON` reinstates it, a retry
//! moves nothing twice, an unknown resolution goes to review.
//!
//! Every expected figure is worked out by hand from the notices' amounts
//! (in the comments), and the stored movements are summed by SQL, never
//! read back from the code's own totals.

// Amounts in cents are written `units_cents` (100_00 is 100.00 EUR).
#![allow(clippy::inconsistent_digit_grouping)]

use std::collections::BTreeMap;

use ipn_reconciler::domain::Money;
use serde_json::Value;

use crate::cli_reconcile::cli;
use crate::finance_report::query;
use crate::helpers::TestDb;
use crate::processor_orders::{Notice, books, json, notice, notice_with, process};

const REFNO: &str = "211153391";

fn eur(v: &Value) -> i64 {
    Money::iso(v.as_str().expect("an amount"), "EUR")
        .expect("exact")
        .minor_units()
}

/// The EUR totals of `report` with `args`, in minor units by name.
fn totals(db: &TestDb, args: &[&str]) -> BTreeMap<String, i64> {
    let report = json(cli(db).arg("report").args(args).args(["--format", "json"]));
    let t = report["totals"]
        .as_array()
        .expect("totals")
        .iter()
        .find(|t| t["currency"] == "EUR")
        .cloned()
        .unwrap_or_else(|| panic!("EUR totals in {report}"));
    [
        "paid",
        "refunded",
        "charged_back",
        "reinstated",
        "vat",
        "commission",
        "net_revenue",
        "net",
    ]
    .into_iter()
    .map(|name| (name.to_owned(), eur(&t[name])))
    .collect()
}

/// `export journal` over all time: the sum per movement and the balance
/// per account (debits positive), minor units.
fn journal(db: &TestDb) -> (BTreeMap<String, i64>, BTreeMap<String, i64>) {
    let lines = json(cli(db).args([
        "export",
        "journal",
        "--from",
        "2000-01-01",
        "--to",
        "2100-12-31",
        "--format",
        "json",
    ]));
    let mut sums = BTreeMap::new();
    let mut balances = BTreeMap::new();
    for line in lines.as_array().expect("lines") {
        let amount = eur(&line["amount"]);
        *sums
            .entry(line["movement"].as_str().expect("movement").to_owned())
            .or_default() += amount;
        *balances
            .entry(line["debit_account"].as_str().expect("debit").to_owned())
            .or_default() += amount;
        *balances
            .entry(line["credit_account"].as_str().expect("credit").to_owned())
            .or_default() -= amount;
    }
    (sums, balances)
}

/// The stored movements summed per kind, by SQL.
async fn stored_movements(db: &TestDb) -> BTreeMap<String, i64> {
    query(
        db,
        "SELECT kind, sum(amount_minor)::int8 FROM money_movements GROUP BY kind",
        &[],
    )
    .await
    .iter()
    .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
    .collect()
}

fn payment() -> Vec<u8> {
    notice(&Notice::hosted(REFNO, "COMPLETE", "100.00"))
}

/// A refund of 20.00: a fifth of the capture's money given back (VAT
/// 17.36 / 5 = 3.472, sent as 3.47; commission 5.4950 / 5 = 1.0990;
/// payable 88.20 / 5 = 17.64).
fn refund_20() -> Vec<u8> {
    notice_with(
        &Notice::hosted(REFNO, "REFUND", "-20.00"),
        &[
            ("IPN_PRICE[]", "-16.53"),
            ("IPN_VAT[]", "-3.47"),
            ("IPN_COMMISSION", "-1.0990"),
            ("PAYABLE_AMOUNT", "-17.64"),
            ("IPN_DATE", "20261110100000"),
        ],
    )
}

/// A dispute notice: `ORDERSTATUS=COMPLETE` with the resolution and a
/// reason code, its money fields as given (`(VAT, commission, payable)`),
/// delivered at `ipn_date`, with `message_id`.
fn dispute(
    resolution: &str,
    money: (&str, &str, &str),
    ipn_date: &str,
    message_id: &str,
) -> Vec<u8> {
    notice_with(
        &Notice::hosted(REFNO, "COMPLETE", "100.00"),
        &[
            ("IPN_VAT[]", money.0),
            ("IPN_COMMISSION", money.1),
            ("PAYABLE_AMOUNT", money.2),
            ("CHARGEBACK_RESOLUTION", resolution),
            ("CHARGEBACK_REASON_CODE", "FRAUD"),
            ("IPN_DATE", ipn_date),
            ("MESSAGE_ID", message_id),
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn chargeback_after_a_partial_refund_takes_only_what_remains() {
    let db = books();
    // The dispute takes back the remaining 80.00 and gives back the rest of
    // the money: VAT 17.36 - 3.47 = 13.89, commission 5.4950 - 1.0990 =
    // 4.3960, payable 88.20 - 17.64 = 70.56.
    let open = dispute(
        "OPEN",
        ("-13.89", "-4.3960", "-70.56"),
        "20261120100000",
        "9001",
    );
    process(&db, None, &[payment(), refund_20(), open]);

    let t = totals(&db, &[]);
    assert_eq!(t["paid"], 100_00);
    assert_eq!(t["refunded"], 20_00);
    // 100.00 - 20.00 = 80.00, never the whole payment.
    assert_eq!(t["charged_back"], 80_00);
    assert_eq!(t["reinstated"], 0);
    // VAT 17.36 - 3.47 - 13.89 = 0; commission 5.50 - 1.10 - 4.40 = 0.
    assert_eq!(t["vat"], 0);
    assert_eq!(t["commission"], 0);
    // 100 - 20 - 80 - 0 = 0.
    assert_eq!(t["net_revenue"], 0);
    assert_eq!(t["net"], 0);
    assert_eq!(totals(&db, &["--by", "event"]), t, "by event the same");
    let report = json(cli(&db).args(["report", "--format", "json"]));
    // 88.20 - 17.64 - 70.56 = 0.00 expected from the processor.
    assert_eq!(
        report["payouts"],
        serde_json::json!([{"currency": "USD", "expected": "0.00", "settled": "0.00"}])
    );

    let stored = stored_movements(&db).await;
    assert_eq!(stored["chargeback"], 80_00);
    assert_eq!(stored.get("chargeback_reversal"), None);
    let (sums, balances) = journal(&db);
    assert_eq!(sums["chargeback"], 80_00);
    assert_eq!(balances.values().sum::<i64>(), 0, "the journal balances");
    assert_eq!(balances["Processor clearing"], 0, "clearing holds the net");
    let state = query(
        &db,
        "SELECT status FROM orders WHERE order_ref = $1",
        &[REFNO],
    )
    .await;
    assert_eq!(state[0].get::<_, String>(0), "reversed");
}

#[tokio::test(flavor = "multi_thread")]
async fn chargeback_opened_then_won_brings_the_money_back() {
    let db = books();
    // OPEN gives back all of the capture's money; WON repeats the order's
    // own figures (positive) and charges back nothing.
    let open = dispute(
        "OPEN",
        ("-17.36", "-5.4950", "-88.20"),
        "20261120100000",
        "9001",
    );
    let won = dispute(
        "WON",
        ("17.36", "5.4950", "88.20"),
        "20261201100000",
        "9002",
    );
    process(&db, None, &[payment(), open]);
    let t = totals(&db, &[]);
    assert_eq!(
        (t["charged_back"], t["reinstated"], t["net"]),
        (100_00, 0, 0)
    );

    process(&db, None, &[won]);
    let t = totals(&db, &[]);
    assert_eq!(t["paid"], 100_00);
    assert_eq!(t["charged_back"], 100_00);
    assert_eq!(t["reinstated"], 100_00);
    // Back to the paid figures: VAT 17.36, commission 5.4950 -> 5.50, net
    // revenue 100 - 17.36 = 82.64, net 82.64 - 5.50 = 77.14.
    assert_eq!(t["vat"], 17_36);
    assert_eq!(t["commission"], 5_50);
    assert_eq!(t["net_revenue"], 8264);
    assert_eq!(t["net"], 77_14);
    assert_eq!(totals(&db, &["--by", "event"]), t, "by event the same");
    let report = json(cli(&db).args(["report", "--format", "json"]));
    assert_eq!(
        report["payouts"],
        serde_json::json!([{"currency": "USD", "expected": "88.20", "settled": "0.00"}]),
        "the won dispute gives the payout back"
    );

    // VAT 17.36 charged, given back, charged again: 34.72 and 17.36.
    let expected = BTreeMap::from([
        ("payment".to_owned(), 100_00),
        ("chargeback".to_owned(), 100_00),
        ("chargeback_reversal".to_owned(), 100_00),
        ("vat".to_owned(), 34_72),
        ("vat_refund".to_owned(), 17_36),
        ("commission".to_owned(), 11_00),
        ("commission_refund".to_owned(), 5_50),
    ]);
    assert_eq!(stored_movements(&db).await, expected);
    let (sums, balances) = journal(&db);
    assert_eq!(sums, expected);
    assert_eq!(balances.values().sum::<i64>(), 0, "the journal balances");
    // Clearing: 100 - 34.72 + 17.36 - 11.00 + 5.50 - 100 + 100 = 77.14.
    assert_eq!(balances["Processor clearing"], 77_14);
    assert_eq!(balances["Chargebacks"], 0);
    // `report clearing` says the same: the chargeback and its
    // reinstatement cancel out on the chargebacks line.
    let clearing = json(cli(&db).args(["report", "clearing", "--format", "json"]));
    let eur = clearing["currencies"]
        .as_array()
        .expect("currencies")
        .iter()
        .find(|c| c["currency"] == "EUR")
        .expect("EUR");
    assert_eq!(eur["chargebacks"], "0.00", "{clearing}");
    assert_eq!(eur["sales"], "100.00", "{clearing}");
    assert_eq!(eur["closing"], "77.14", "{clearing}");

    // The order is paid again, its chargeback item closed by the system.
    let rows = query(
        &db,
        "SELECT o.status, \
                (SELECT count(*) FROM review_items WHERE kind = 'reversed_after_payment' \
                   AND status = 'open')::int8, \
                (SELECT count(*) FROM review_items WHERE kind = 'reversed_after_payment')::int8, \
                p.dispute_opened, p.dispute_won, p.chargeback_minor, p.reinstated_minor \
         FROM orders AS o JOIN payments AS p ON p.order_id = o.id WHERE o.order_ref = $1",
        &[REFNO],
    )
    .await;
    let row = &rows[0];
    assert_eq!(row.get::<_, String>(0), "paid");
    assert_eq!((row.get::<_, i64>(1), row.get::<_, i64>(2)), (0, 1));
    assert!(row.get::<_, bool>(3) && row.get::<_, bool>(4));
    assert_eq!(row.get::<_, Option<i64>>(5), Some(100_00));
    assert_eq!(row.get::<_, i64>(6), 100_00);
    let shown = json(cli(&db).args(["orders", "show", REFNO, "--format", "json"]));
    let shown = &shown["payments"][0];
    assert_eq!(
        (&shown["state"], &shown["dispute"], &shown["reinstated"]),
        (
            &Value::from("paid"),
            &Value::from("won"),
            &Value::from("100.00")
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refund_open_won_and_a_retried_won_move_the_money_once() {
    let db = books();
    let open = dispute(
        "OPEN",
        ("-13.89", "-4.3960", "-70.56"),
        "20261120100000",
        "9001",
    );
    let won = dispute(
        "WON",
        ("17.36", "5.4950", "88.20"),
        "20261201100000",
        "9002",
    );
    // The processor's retry: the same notice delivered again with a new
    // IPN_DATE (a duplicate), and a resend under a new MESSAGE_ID (another
    // notification, the same meaning).
    let retry = dispute(
        "WON",
        ("17.36", "5.4950", "88.20"),
        "20261201110000",
        "9002",
    );
    let resend = dispute(
        "WON",
        ("17.36", "5.4950", "88.20"),
        "20261202100000",
        "9003",
    );
    process(
        &db,
        None,
        &[payment(), refund_20(), open, won, retry, resend],
    );

    let t = totals(&db, &[]);
    assert_eq!(t["paid"], 100_00);
    assert_eq!(t["refunded"], 20_00);
    assert_eq!(t["charged_back"], 80_00);
    assert_eq!(t["reinstated"], 80_00);
    // VAT 17.36 - 3.47 - 13.89 + 13.89 = 13.89; commission 5.50 - 1.10 -
    // 4.40 + 4.40 = 4.40; net revenue 100 - 20 - (80 - 80) - 13.89 =
    // 66.11; net 66.11 - 4.40 = 61.71.
    assert_eq!(t["vat"], 13_89);
    assert_eq!(t["commission"], 4_40);
    assert_eq!(t["net_revenue"], 66_11);
    assert_eq!(t["net"], 61_71);
    assert_eq!(totals(&db, &["--by", "event"]), t, "by event the same");

    let counts = query(
        &db,
        "SELECT (SELECT count(*) FROM money_movements WHERE kind = 'chargeback_reversal')::int8, \
                (SELECT count(*) FROM money_movements WHERE kind = 'chargeback')::int8, \
                (SELECT count(*) FROM notifications WHERE chargeback_resolution = 'WON')::int8",
        &[],
    )
    .await;
    assert_eq!(counts[0].get::<_, i64>(0), 1, "reinstated once");
    assert_eq!(counts[0].get::<_, i64>(1), 1, "charged back once");
    assert!(counts[0].get::<_, i64>(2) >= 2, "the WON notices are kept");
    let (sums, balances) = journal(&db);
    assert_eq!(sums["chargeback_reversal"], 80_00);
    assert_eq!(balances.values().sum::<i64>(), 0);
    assert_eq!(balances["Processor clearing"], 61_71);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_resolution_opens_a_review_item_and_moves_nothing() {
    let db = books();
    let odd = dispute(
        "PRE_ARBITRATION",
        ("-17.36", "-5.4950", "-88.20"),
        "20261120100000",
        "9001",
    );
    process(&db, None, &[payment(), odd]);
    let t = totals(&db, &[]);
    assert_eq!((t["charged_back"], t["reinstated"]), (0, 0));
    assert_eq!(t["net"], 77_14, "as paid: 100 - 17.36 - 5.50");
    assert_eq!(
        stored_movements(&db).await,
        BTreeMap::from([
            ("payment".to_owned(), 100_00),
            ("vat".to_owned(), 17_36),
            ("commission".to_owned(), 5_50),
        ])
    );
    let rows = query(
        &db,
        "SELECT r.status, r.processor_ref, r.details, n.chargeback_resolution, \
                n.chargeback_reason_code, n.outcome \
         FROM review_items AS r JOIN notifications AS n ON n.id = r.notification_id \
         WHERE r.kind = 'unknown_chargeback_resolution'",
        &[],
    )
    .await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.get::<_, String>(0), "open");
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some(REFNO));
    assert!(row.get::<_, String>(2).contains("`PRE_ARBITRATION`"));
    assert_eq!(
        row.get::<_, Option<String>>(3).as_deref(),
        Some("PRE_ARBITRATION")
    );
    assert_eq!(row.get::<_, Option<String>>(4).as_deref(), Some("FRAUD"));
    assert_eq!(row.get::<_, String>(5), "ignored");
    let state = query(
        &db,
        "SELECT status FROM orders WHERE order_ref = $1",
        &[REFNO],
    )
    .await;
    assert_eq!(state[0].get::<_, String>(0), "paid");
}

/// `settlement import` of `rows` (after the header).
fn import_settlement(db: &TestDb, rows: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("settlement.csv");
    std::fs::write(
        &path,
        format!("batch_id,processor_ref,order_ref,type,gross,fee,net,currency,settled_at\n{rows}"),
    )
    .expect("write");
    let output = cli(db)
        .args(["settlement", "import"])
        .arg(&path)
        .output()
        .expect("import");
    assert!(
        output.status.code() == Some(0) || output.status.code() == Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_settlement_credit_line_reinstates_a_chargeback_through_review() {
    let db = books();
    let open = dispute(
        "OPEN",
        ("-17.36", "-5.4950", "-88.20"),
        "20261120100000",
        "9001",
    );
    process(&db, None, &[payment(), open]);
    // The sale (fee 3.20), the chargeback with a dispute fee of 15.00, and
    // the processor's credit of the 100.00 when it reinstated it: no WON
    // notice came.
    import_settlement(
        &db,
        &format!(
            "B-1,{REFNO},,sale,100.00,3.20,96.80,EUR,2026-11-30\n\
             B-2,{REFNO},,chargeback,-100.00,15.00,-115.00,EUR,2026-12-01\n\
             B-3,{REFNO},,chargeback,100.00,0,100.00,EUR,2026-12-10\n"
        ),
    );
    let lines = query(
        &db,
        "SELECT batch_id, status, expected_minor FROM settlement_lines ORDER BY batch_id",
        &[],
    )
    .await;
    let lines: Vec<(String, String, Option<i64>)> = lines
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        lines,
        [
            ("B-1".to_owned(), "matched".to_owned(), Some(100_00)),
            ("B-2".to_owned(), "matched".to_owned(), Some(100_00)),
            ("B-3".to_owned(), "differs".to_owned(), Some(100_00)),
        ]
    );
    let item = query(
        &db,
        "SELECT id FROM review_items WHERE kind = 'settlement_reinstatement' AND status = 'open'",
        &[],
    )
    .await;
    assert_eq!(item.len(), 1, "one item for the credit line");
    let item: i64 = item[0].get(0);
    // Fees: both lines' fees are fees (3.20 + 15.00 = 18.20), and the
    // first releases the capture's provisional commission (5.50,
    // `commission_settled`). Before the reinstatement: paid 100 - charged
    // back 100 - VAT (17.36 - 17.36) = 0 net revenue; commission 5.50 -
    // 5.50 given back by the chargeback notice - 5.50 released = -5.50
    // open; net 0 + 5.50 - 18.20 = -12.70.
    let t = totals(&db, &[]);
    assert_eq!((t["charged_back"], t["reinstated"]), (100_00, 0));
    assert_eq!(t["commission"], -5_50);
    assert_eq!(t["net"], -12_70);

    cli(&db)
        .args(["review", "resolve", &item.to_string()])
        .args(["--action", "book_reinstatement"])
        .args(["--by", "finance-42", "--note", "won per settlement B-3"])
        .assert()
        .success();
    let t = totals(&db, &[]);
    assert_eq!(t["charged_back"], 100_00);
    assert_eq!(t["reinstated"], 100_00);
    // VAT 17.36 and commission 5.50 charged again: VAT 17.36 + 17.36 -
    // 17.36 = 17.36; commission 5.50 + 5.50 - 5.50 - 5.50 released = 0;
    // net revenue 100 - 17.36 = 82.64, net 82.64 - 0 - 18.20 = 64.44.
    assert_eq!(t["vat"], 17_36);
    assert_eq!(t["commission"], 0);
    assert_eq!(t["net_revenue"], 8264);
    assert_eq!(t["net"], 64_44);
    assert_eq!(totals(&db, &["--by", "event"]), t, "by event the same");
    let (sums, balances) = journal(&db);
    assert_eq!(sums["chargeback_reversal"], 100_00);
    assert_eq!(sums["fee"], 18_20);
    assert_eq!(balances.values().sum::<i64>(), 0, "the journal balances");
    assert_eq!(balances["Processor clearing"], 64_44);
    let rows = query(
        &db,
        "SELECT (SELECT count(*) FROM money_movements \
                 WHERE kind = 'chargeback_reversal' AND resolution_id IS NOT NULL)::int8, \
                (SELECT status FROM orders WHERE order_ref = $1)",
        &[REFNO],
    )
    .await;
    assert_eq!(rows[0].get::<_, i64>(0), 1, "booked by the resolution");
    assert_eq!(rows[0].get::<_, String>(1), "paid");
    let open = query(
        &db,
        "SELECT count(*)::int8 FROM review_items WHERE status = 'open' \
         AND kind IN ('reversed_after_payment', 'settlement_reinstatement')",
        &[],
    )
    .await;
    assert_eq!(
        open[0].get::<_, i64>(0),
        0,
        "the chargeback's items are closed"
    );
    // Booked once: a second try finds nothing to reinstate (the item is
    // resolved), and a WON notice arriving now moves nothing more.
    let won = dispute(
        "WON",
        ("17.36", "5.4950", "88.20"),
        "20261212100000",
        "9002",
    );
    process(&db, None, &[won]);
    assert_eq!(stored_movements(&db).await["chargeback_reversal"], 100_00);
}
