//! Issue 21, Deliver 4, last sentence: settlement lines in the payout
//! currency match a payment through its payout amount. The processor
//! takes an EUR order (100.00, commission 5.4950) and pays the merchant
//! out in USD (`PAYABLE_AMOUNT=88.20`, `PAYOUT_CURRENCY=USD`); its
//! settlement and payout files are written in USD. A USD sale line whose
//! net is the notice's payable amount settles the payment (no
//! `settlement_unknown`, no `settlement_amount_differs`); its USD fee
//! replaces the EUR commission, and is not compared with it (no false
//! `fee_differs`: docs/finance.md, "The money in the notice").
//! Refund and chargeback lines in USD match the payable amounts their
//! notices carried.

use std::collections::BTreeMap;

use ipn_reconciler::domain::Money;
use serde_json::Value;

use crate::cli_reconcile::cli;
use crate::helpers::TestDb;
use crate::processor_orders::{Notice, books, json, notice, notice_with, process};

const REFNO: &str = "211153391";

/// A processor order of 100.00 EUR, paid, whose notice says 88.20 USD
/// payable.
fn paid_books() -> TestDb {
    let db = books();
    process(
        &db,
        None,
        &[notice(&Notice::hosted(REFNO, "COMPLETE", "100.00"))],
    );
    db
}

/// Imports `lines` (after the header) with the payouts `payouts` (after
/// theirs): the exit code and the output.
fn import(db: &TestDb, lines: &str, payouts: Option<&str>) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("settlement.csv");
    std::fs::write(
        &path,
        format!("batch_id,processor_ref,order_ref,type,gross,fee,net,currency,settled_at\n{lines}"),
    )
    .expect("write");
    let mut command = cli(db);
    command.args(["settlement", "import"]).arg(&path);
    if let Some(payouts) = payouts {
        let file = dir.path().join("payouts.csv");
        std::fs::write(
            &file,
            format!("batch_id,paid_on,amount,currency\n{payouts}"),
        )
        .expect("write payouts");
        command.arg("--payouts").arg(&file);
    }
    let out = command.output().expect("import");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn totals(db: &TestDb, currency: &str) -> Value {
    let report = json(cli(db).args(["report", "--format", "json"]));
    report["totals"]
        .as_array()
        .expect("totals")
        .iter()
        .find(|t| t["currency"] == currency)
        .cloned()
        .unwrap_or_else(|| panic!("{currency} totals in {report}"))
}

/// The open review items' kinds.
fn open_kinds(db: &TestDb) -> Vec<String> {
    let items = json(cli(db).args(["review", "list", "--format", "json"]));
    items
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["kind"].as_str().expect("kind").to_owned())
        .collect()
}

/// `export journal` over all time: per (movement, currency), the sum in
/// minor units.
fn journal(db: &TestDb) -> BTreeMap<(String, String), i64> {
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
    for line in lines.as_array().expect("lines") {
        let currency = line["currency"].as_str().expect("currency").to_owned();
        let amount = Money::iso(line["amount"].as_str().expect("amount"), &currency)
            .expect("exact")
            .minor_units();
        *sums
            .entry((
                line["movement"].as_str().expect("movement").to_owned(),
                currency,
            ))
            .or_default() += amount;
    }
    sums
}

fn key(movement: &str, currency: &str) -> (String, String) {
    (movement.to_owned(), currency.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn payout_a_usd_settlement_line_settles_the_eur_payment_through_its_payable_amount() {
    let db = paid_books();
    // Gross 94.00 USD, fee 5.80 USD, net 88.20 USD: the payable amount.
    // The fee is not the commission's 5.50 (it is in another currency,
    // converted with a markup): nothing to compare, nothing opened.
    let (code, out) = import(
        &db,
        &format!("B-USD-1,{REFNO},,sale,94.00,5.80,88.20,USD,2026-11-30\n"),
        Some("B-USD-1,2026-12-01,88.20,USD\n"),
    );
    assert_eq!(code, Some(0), "every line agrees: {out}");
    assert!(open_kinds(&db).is_empty(), "{:?}", open_kinds(&db));

    // Matched to the payment: no unmatched line, one matched line.
    let report = json(cli(&db).args(["settlement", "report", "--unmatched", "--format", "json"]));
    assert_eq!(report["unmatched_lines"], serde_json::json!([]), "{report}");
    let batch = &report["batches"][0];
    assert_eq!(batch["currency"], "USD");
    assert_eq!(batch["matched_lines"], 1, "{report}");
    assert_eq!(batch["payout_difference"], "0.00", "{report}");

    // The payment counts as settled: nothing paid and unsettled, even
    // long after (a future sweep only as a dry run: its items would be
    // permanent).
    let sweep = cli(&db)
        .args(["sweep", "--dry-run", "--as-of", "2027-06-01"])
        .output()
        .expect("sweep");
    let swept = String::from_utf8_lossy(&sweep.stdout);
    assert!(
        sweep.status.success() && swept.contains("swept as of 2027-06-01"),
        "{swept}{}",
        String::from_utf8_lossy(&sweep.stderr)
    );
    assert!(!swept.contains("unsettled_payment"), "{swept}");
    assert!(
        !open_kinds(&db).contains(&"unsettled_payment".to_owned()),
        "{:?}",
        open_kinds(&db)
    );

    // The USD fee replaced the EUR commission: booked once, in USD.
    let eur = totals(&db, "EUR");
    assert_eq!(eur["commission"], "0.00", "{eur}");
    assert_eq!(eur["vat"], "17.36");
    assert_eq!(eur["net_revenue"], "82.64");
    let usd = totals(&db, "USD");
    assert_eq!(usd["fees"], "5.80", "{usd}");
    let sums = journal(&db);
    assert_eq!(sums[&key("commission", "EUR")], 550);
    assert_eq!(sums[&key("commission_settled", "EUR")], 550);
    assert_eq!(sums[&key("fee", "USD")], 580);
    // The payout side: what the notices expect is what was paid out.
    let report = json(cli(&db).args(["report", "--format", "json"]));
    assert_eq!(
        report["payouts"],
        serde_json::json!([{"currency": "USD", "expected": "88.20", "settled": "88.20"}])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn payout_a_usd_line_that_is_not_the_payable_amount_differs_and_the_order_currency_still_counts_fees()
 {
    let db = paid_books();
    // One cent over the payable amount, no tolerance: a difference of
    // the payment (not an unknown line).
    let (code, out) = import(
        &db,
        &format!("B-USD-2,{REFNO},,sale,88.21,0.00,88.21,USD,2026-11-30\n"),
        None,
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("settlement_amount_differs"), "{out}");
    assert!(out.contains("difference 0.01 USD"), "{out}");
    assert!(!out.contains("settlement_unknown"), "{out}");
    // Within a cent's tolerance the same amount in another batch agrees.
    let db = paid_books();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("s.csv");
    std::fs::write(
        &path,
        format!(
            "batch_id,processor_ref,order_ref,type,gross,fee,net,currency,settled_at\n\
             B-USD-3,{REFNO},,sale,88.21,0.00,88.21,USD,2026-11-30\n"
        ),
    )
    .expect("write");
    let out = cli(&db)
        .args(["settlement", "import", "--tolerance", "0.01"])
        .arg(&path)
        .output()
        .expect("import");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // In the order currency, the fee is still compared with the
    // commission: 6.00 against 5.50 EUR opens fee_differs.
    let db = paid_books();
    let (code, out) = import(
        &db,
        &format!("B-EUR-1,{REFNO},,sale,100.00,6.00,94.00,EUR,2026-11-30\n"),
        None,
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("fee_differs"), "{out}");
    assert!(out.contains("difference 0.50 EUR"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn payout_usd_refund_and_chargeback_lines_match_the_payable_amounts_their_notices_carried() {
    // A partial refund of 40.00 EUR that takes 35.28 USD from the payout.
    let db = books();
    let refund = notice_with(
        &Notice::hosted(REFNO, "REFUND", "-40.00"),
        &[
            ("IPN_PRICE[]", "-33.06"),
            ("IPN_VAT[]", "-6.94"),
            ("IPN_COMMISSION", "-2.1980"),
            ("PAYABLE_AMOUNT", "-35.28"),
            ("IPN_DATE", "20261110100100"),
        ],
    );
    process(
        &db,
        None,
        &[notice(&Notice::hosted(REFNO, "COMPLETE", "100.00")), refund],
    );
    let (code, out) = import(
        &db,
        &format!(
            "B-USD-4,{REFNO},,sale,88.20,0.00,88.20,USD,2026-11-30\n\
             B-USD-4,{REFNO},,refund,-35.28,0.00,-35.28,USD,2026-11-30\n"
        ),
        Some("B-USD-4,2026-12-01,52.92,USD\n"),
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(open_kinds(&db).is_empty(), "{:?}", open_kinds(&db));
    // A second refund line would debit more than the refunds' payable.
    let (code, out) = import(
        &db,
        &format!("B-USD-5,{REFNO},,refund,-0.01,0.00,-0.01,USD,2026-12-01\n"),
        None,
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("settlement_amount_differs"), "{out}");

    // A chargeback whose notice takes the 88.20 USD back.
    let db = books();
    let chargeback = notice_with(
        &Notice::hosted(REFNO, "REVERSED", "-100.00"),
        &[
            ("IPN_PRICE[]", "-82.64"),
            ("IPN_VAT[]", "-17.36"),
            ("IPN_COMMISSION", "-5.4950"),
            ("PAYABLE_AMOUNT", "-88.20"),
            ("CHARGEBACK_RESOLUTION", "OPEN"),
            ("CHARGEBACK_REASON_CODE", "FRAUD"),
            ("IPN_DATE", "20261201100100"),
        ],
    );
    process(
        &db,
        None,
        &[
            notice(&Notice::hosted(REFNO, "COMPLETE", "100.00")),
            chargeback,
        ],
    );
    let (code, out) = import(
        &db,
        &format!(
            "B-USD-6,{REFNO},,sale,88.20,0.00,88.20,USD,2026-11-30\n\
             B-USD-6,{REFNO},,chargeback,-88.20,0.00,-88.20,USD,2026-12-02\n"
        ),
        None,
    );
    assert_eq!(code, Some(0), "{out}");
    let kinds = open_kinds(&db);
    assert!(
        kinds.iter().all(|k| k == "reversed_after_payment"),
        "only the chargeback's own item: {kinds:?}"
    );
}
