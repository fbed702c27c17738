//! Issue 21, Deliver 4: the money a notice carries beside its gross. A
//! signed hosted-cart COMPLETE in the processor's field order carries VAT
//! (`IPN_VAT[]=17.36`), a commission with more decimals than EUR
//! (`IPN_COMMISSION=5.4950`) and a payout in USD (`PAYABLE_AMOUNT=88.20`).
//! Before any settlement import the report shows VAT and commission, the
//! journal books them on their own accounts and equals the report; a
//! settlement fee replaces the commission, never adds to it, and one that
//! differs beyond the tolerance opens `fee_differs`.

use std::collections::BTreeMap;

use ipn_reconciler::domain::Money;
use serde_json::Value;

use crate::cli_reconcile::cli;
use crate::helpers::TestDb;
use crate::processor_orders::{Notice, books, json, notice, process};

const REFNO: &str = "211153390";

fn eur(v: &Value) -> i64 {
    Money::iso(v.as_str().expect("an amount"), "EUR")
        .expect("exact")
        .minor_units()
}

fn eur_totals(db: &TestDb) -> Value {
    let report = json(cli(db).args(["report", "--format", "json"]));
    report["totals"]
        .as_array()
        .expect("totals")
        .iter()
        .find(|t| t["currency"] == "EUR")
        .cloned()
        .unwrap_or_else(|| panic!("EUR totals in {report}"))
}

/// `export journal` over all time: per movement, the sum (minor units),
/// and the balance of each account.
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
        assert_eq!(line["currency"], "EUR", "{line}");
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

fn paid_books() -> TestDb {
    let db = books();
    let pending = notice(&Notice::hosted(REFNO, "PENDING", "100.00"));
    let complete = notice(&Notice::hosted(REFNO, "COMPLETE", "100.00"));
    // A PENDING before the payment and the payment delivered twice: the
    // VAT and the commission count once, with the capture.
    process(&db, None, &[pending, complete.clone(), complete]);
    db
}

#[tokio::test(flavor = "multi_thread")]
async fn finance_report_shows_vat_and_commission_before_any_settlement_and_the_journal_equals_it() {
    let db = paid_books();
    let t = eur_totals(&db);
    assert_eq!(t["paid"], "100.00");
    assert_eq!(t["vat"], "17.36");
    // 5.4950 rounded half away from zero to the cent.
    assert_eq!(t["commission"], "5.50");
    assert_eq!(t["fees"], "0.00");
    assert_eq!(t["net_revenue"], "82.64", "revenue excluding VAT");
    assert_eq!(t["net"], "77.14", "after the commission");

    let report = json(cli(&db).args(["report", "--format", "json"]));
    assert_eq!(
        report["payouts"],
        serde_json::json!([{"currency": "USD", "expected": "88.20", "settled": "0.00"}])
    );

    let (sums, balances) = journal(&db);
    assert_eq!(
        sums,
        BTreeMap::from([
            ("commission".to_owned(), 550),
            ("payment".to_owned(), 10_000),
            ("vat".to_owned(), 1736),
        ])
    );
    assert_eq!(balances.values().sum::<i64>(), 0, "the journal balances");
    assert_eq!(balances["Processor clearing"], eur(&t["net"]));
    assert_eq!(balances["VAT collected by the processor"], eur(&t["vat"]));
    assert_eq!(
        balances["Processor commission (provisional)"],
        eur(&t["commission"])
    );

    // The table says it too.
    let table = cli(&db).arg("report").output().expect("table");
    let table = String::from_utf8_lossy(&table.stdout);
    for heading in [
        "VAT",
        "NET REVENUE",
        "COMMISSION",
        "Payouts per payout currency",
    ] {
        assert!(table.contains(heading), "{heading} in {table}");
    }
}

fn import_settlement(db: &TestDb, fee: &str) -> std::process::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("settlement.csv");
    let net = Money::iso("100.00", "EUR")
        .expect("gross")
        .checked_sub(&Money::iso(fee, "EUR").expect("fee"))
        .expect("net");
    std::fs::write(
        &path,
        format!(
            "batch_id,processor_ref,order_ref,type,gross,fee,net,currency,settled_at\n\
             B-1,{REFNO},{REFNO},sale,100.00,{fee},{},EUR,2026-11-30\n",
            net.format_amount()
        ),
    )
    .expect("write");
    cli(db)
        .args(["settlement", "import"])
        .arg(&path)
        .output()
        .expect("import")
}

#[tokio::test(flavor = "multi_thread")]
async fn finance_a_settlement_fee_replaces_the_commission_without_double_counting() {
    let db = paid_books();
    let out = import_settlement(&db, "5.50");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let t = eur_totals(&db);
    assert_eq!(t["commission"], "0.00", "the fee replaced it");
    assert_eq!(t["fees"], "5.50");
    assert_eq!(t["net"], "77.14", "counted once: the same net as before");

    let (sums, balances) = journal(&db);
    assert_eq!(sums["commission"], 550);
    assert_eq!(sums["commission_settled"], 550);
    assert_eq!(sums["fee"], 550);
    assert_eq!(balances.values().sum::<i64>(), 0);
    assert_eq!(balances["Processor clearing"], 7714);
    assert_eq!(balances["Processor commission (provisional)"], 0);
    let items = json(cli(&db).args(["review", "list", "--format", "json"]));
    assert!(
        !items.to_string().contains("fee_differs"),
        "the fee agrees: {items}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn finance_a_fee_beyond_the_tolerance_opens_fee_differs_and_still_replaces_the_commission() {
    let db = paid_books();
    let out = import_settlement(&db, "6.00");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "an item opened: {stdout}");
    assert!(stdout.contains("fee_differs"), "{stdout}");
    assert!(stdout.contains("difference 0.50 EUR"), "{stdout}");
    let t = eur_totals(&db);
    assert_eq!(t["commission"], "0.00");
    assert_eq!(t["fees"], "6.00");
    assert_eq!(t["net"], "76.64");
    let (_, balances) = journal(&db);
    assert_eq!(balances["Processor clearing"], 7664);
}
