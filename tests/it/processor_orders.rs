//! Issue 21: orders keyed by the processor. A hosted-cart sale and every
//! automatic renewal name no merchant reference (`REFNOEXT=`); with
//! `order-source` `both` (the default) or `processor` the notice makes the
//! order, keyed by `REFNO`, and its money reaches the books; with
//! `merchant` it waits as an orphan, as before.
//!
//! The bodies follow the field list and order of a real notification
//! (docs/protocol.md, the processor's SDK fixture of 2023), personal
//! fields and fields we do not read included, and are signed as the
//! processor signs them.

use assert_cmd::Command;
use ipn_reconciler::ipn::{Algorithm, FormBody, sign};
use serde_json::Value;

use crate::cli_reconcile::{cli, create_books};
use crate::helpers::TestDb;
use crate::helpers::amqp::test_key;

/// What a notice says, for [`notice`].
pub(crate) struct Notice<'a> {
    pub refno: &'a str,
    pub refnoext: &'a str,
    pub status: &'a str,
    pub total: &'a str,
    pub test_order: bool,
    /// `IPN_LICENSE_REF[]`, `IPN_LICENSE_TYPE[]`, `IPN_LICENSE_START[]`,
    /// `IPN_LICENSE_EXP[]` of the one line item.
    pub licence: [&'a str; 4],
    /// `ORIGINAL_REFNOEXT[]` of the line item.
    pub original_refnoext: &'a str,
}

impl<'a> Notice<'a> {
    pub(crate) fn hosted(refno: &'a str, status: &'a str, total: &'a str) -> Self {
        Self {
            refno,
            refnoext: "",
            status,
            total,
            test_order: false,
            licence: [
                "XRILXB9ZI3",
                "REGULAR",
                "2026-11-03 10:01:00",
                "2027-11-03 10:01:00",
            ],
            original_refnoext: "",
        }
    }
}

/// A signed notice in the processor's field order (a subset of the 2023
/// fixture's 110 fields, in their relative order).
pub(crate) fn notice(n: &Notice<'_>) -> Vec<u8> {
    notice_with(n, &[])
}

/// [`notice`] with the values of some fields replaced (`(name, value)`;
/// the field keeps its place): a refund's or chargeback's negative money,
/// for example.
pub(crate) fn notice_with(n: &Notice<'_>, replaced: &[(&str, &str)]) -> Vec<u8> {
    let mut fields: Vec<(&str, &str)> = vec![
        ("GIFT_ORDER", "0"),
        ("SALEDATE", "2026-11-03 10:00:00"),
        ("PAYMENTDATE", "2026-11-03 10:01:00"),
        ("REFNO", n.refno),
        ("REFNOEXT", n.refnoext),
        ("ORIGINAL_REFNOEXT[]", n.original_refnoext),
        ("SHOPPER_REFERENCE_NUMBER", ""),
        ("ORDERNO", "25430"),
        ("ORDERSTATUS", n.status),
        ("PAYMETHOD", "Visa/MasterCard"),
        ("PAYMETHOD_CODE", "CCVISAMC"),
        ("FIRSTNAME", "Jane"),
        ("LASTNAME", "Doe"),
        ("ADDRESS1", "1 Example Street"),
        ("CITY", "Bucharest"),
        ("COUNTRY", "Romania"),
        ("PHONE", "+40 700 000 000"),
        ("CUSTOMEREMAIL", "jane.doe@example.com"),
        ("CURRENCY", "EUR"),
        ("LANGUAGE", "en"),
        ("ORDERFLOW", "REGULAR"),
        ("IPN_PID[]", "35144095"),
        ("IPN_PNAME[]", "Editor Pro"),
        ("IPN_PCODE[]", "EDITOR-PRO"),
        ("IPN_EXTERNAL_REFERENCE[]", ""),
        ("IPN_QTY[]", "1"),
        ("IPN_PRICE[]", "82.64"),
        ("IPN_VAT[]", "17.36"),
        ("IPN_VAT_RATE[]", "21"),
        ("MESSAGE_ID", "250447182633"),
        ("MESSAGE_TYPE", n.status),
        ("IPN_LICENSE_PROD[]", "35144095"),
        ("IPN_LICENSE_TYPE[]", n.licence[1]),
        ("IPN_LICENSE_REF[]", n.licence[0]),
        ("IPN_LICENSE_EXP[]", n.licence[3]),
        ("IPN_LICENSE_START[]", n.licence[2]),
        ("IPN_LICENSE_LIFETIME[]", "NO"),
        ("IPN_TOTAL[]", n.total),
        ("IPN_TOTALGENERAL", n.total),
        ("IPN_SHIPPING", "0"),
        ("IPN_SHIPPING_TAX", "0"),
        ("AVANGATE_CUSTOMER_REFERENCE", "756227060"),
        ("IPN_COMMISSION", "5.4950"),
        ("REFUND_TYPE", ""),
        ("CHARGEBACK_RESOLUTION", "NONE"),
        ("CHARGEBACK_REASON_CODE", ""),
        ("TEST_ORDER", if n.test_order { "1" } else { "0" }),
        ("IPN_ORDER_ORIGIN", "Web"),
        ("FRAUD_STATUS", "APPROVED"),
        ("CARD_TYPE", "Visa"),
        ("CARD_LAST_DIGITS", "1111"),
        ("IPN_DATE", "20261103100100"),
        ("FX_RATE", "1.0831"),
        ("FX_MARKUP", "4"),
        ("PAYABLE_AMOUNT", "88.20"),
        ("PAYOUT_CURRENCY", "USD"),
        ("VENDOR_CODE", "250111206876"),
        ("PROPOSAL_ID", ""),
    ];
    for (name, value) in replaced {
        let field = fields
            .iter_mut()
            .find(|(field, _)| field == name)
            .unwrap_or_else(|| panic!("no field {name} in the notice"));
        field.1 = value;
    }
    let mut form = FormBody::default();
    for (name, value) in fields {
        form.push(name, value);
    }
    let signed = sign(
        &form,
        &test_key(),
        &[Algorithm::Sha256, Algorithm::Sha3_256],
    )
    .expect("signed");
    signed.encode().into_bytes()
}

/// Books with `notices` processed in this order, each from its own file,
/// with `order_source` (none: the default).
pub(crate) fn process(db: &TestDb, order_source: Option<&str>, notices: &[Vec<u8>]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files = Vec::new();
    for (index, body) in notices.iter().enumerate() {
        let path = dir.path().join(format!("{index:02}.txt"));
        std::fs::write(&path, body).expect("write notice");
        files.push(path);
    }
    let mut command = with_source(cli(db), order_source);
    let output = command.arg("process").args(&files).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn with_source(mut command: Command, order_source: Option<&str>) -> Command {
    match order_source {
        Some(source) => command.env("IPN_ORDER_SOURCE", source),
        None => command.env_remove("IPN_ORDER_SOURCE"),
    };
    command
}

pub(crate) fn json(command: &mut Command) -> Value {
    let output = command.output().expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("json")
}

fn order(db: &TestDb, reference: &str) -> Option<Value> {
    let output = cli(db)
        .args(["orders", "show", reference, "--format", "json"])
        .output()
        .expect("runs");
    output
        .status
        .success()
        .then(|| serde_json::from_slice(&output.stdout).expect("json"))
}

pub(crate) fn books() -> TestDb {
    let db = TestDb::new();
    create_books(&db);
    db
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paid_hosted_cart_order_reaches_the_books() {
    let db = books();
    let out = process(
        &db,
        None,
        &[notice(&Notice::hosted("211153389", "COMPLETE", "100.00"))],
    );
    assert!(out.contains(" applied order=211153389 state=paid"), "{out}");

    let order = order(&db, "211153389").expect("the processor's order exists");
    assert_eq!(order["origin"], "processor");
    assert_eq!(order["order_ref"], "211153389");
    assert_eq!(order["processor_ref"], "211153389");
    assert_eq!(order["status"], "paid");
    assert_eq!(order["amount"], "100.00");
    assert_eq!(order["paid"], "100.00");
    assert_eq!(order["currency"], "EUR");

    let listed = json(cli(&db).args(["orders", "list", "--format", "json"]));
    assert_eq!(listed[0]["origin"], "processor", "{listed}");

    let report = json(cli(&db).args(["report", "--format", "json"]));
    let paid = report["orders_by_state"]
        .as_array()
        .expect("orders_by_state")
        .iter()
        .find(|o| o["state"] == "paid")
        .expect("a paid order in the report");
    assert_eq!(paid["orders"], 1, "{report}");

    let journal = cli(&db)
        .args([
            "export",
            "journal",
            "--from",
            "2000-01-01",
            "--to",
            "2100-01-01",
            "--format",
            "csv",
        ])
        .output()
        .expect("runs");
    let journal = String::from_utf8_lossy(&journal.stdout);
    assert!(
        journal
            .lines()
            .any(|line| line.contains("211153389") && line.contains("100.00")),
        "the payment is booked:\n{journal}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_merchant_orders_only_it_waits_as_an_orphan() {
    let db = books();
    let out = process(
        &db,
        Some("merchant"),
        &[notice(&Notice::hosted("211153390", "COMPLETE", "100.00"))],
    );
    assert!(
        out.contains(" order_not_found order=211153390 review=orphan_payment"),
        "{out}"
    );
    assert_eq!(order(&db, "211153390"), None);
    let items =
        json(with_source(cli(&db), Some("merchant")).args(["review", "list", "--format", "json"]));
    let orphan = items
        .as_array()
        .expect("items")
        .iter()
        .find(|item| item["kind"] == "orphan_payment")
        .unwrap_or_else(|| panic!("an orphan item: {items}"));
    assert_eq!(orphan["order_ref"], "211153390");

    // Switched to `both`, the same notice, delivered again by the
    // processor, makes the order.
    let out = process(
        &db,
        Some("both"),
        &[notice(&Notice::hosted("211153390", "COMPLETE", "100.00"))],
    );
    assert!(out.contains(" applied order=211153390 state=paid"), "{out}");
    assert_eq!(
        order(&db, "211153390").expect("made")["status"],
        "paid",
        "the orphan's notice applied"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_test_order_never_makes_an_order() {
    let db = books();
    for source in ["both", "processor"] {
        let test = Notice {
            test_order: true,
            ..Notice::hosted("211153391", "COMPLETE", "100.00")
        };
        process(&db, Some(source), &[notice(&test)]);
        assert_eq!(order(&db, "211153391"), None, "{source}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refund_and_payment_end_the_same_in_either_order() {
    let paid = notice(&Notice::hosted("211153392", "COMPLETE", "100.00"));
    let refund = notice(&Notice::hosted("211153392", "REFUND", "-30.00"));
    let mut ends = Vec::new();
    for sequence in [[paid.clone(), refund.clone()], [refund, paid]] {
        let db = books();
        process(&db, None, &sequence);
        let order = order(&db, "211153392").expect("made");
        ends.push(["status", "amount", "paid", "refunded", "origin"].map(|key| order[key].clone()));
    }
    assert_eq!(ends[0], ends[1]);
    assert_eq!(ends[0][0], "partially_refunded");
    assert_eq!(
        ends[0][1], "100.00",
        "the payment's total, not the refund's"
    );
    assert_eq!(ends[0][3], "30.00");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_processor_orders_a_merchant_reference_is_kept_beside_refno() {
    let db = books();
    let named = Notice {
        refnoext: "SHOP-77",
        ..Notice::hosted("211153393", "COMPLETE", "100.00")
    };
    process(&db, Some("processor"), &[notice(&named)]);
    let order = order(&db, "SHOP-77").expect("found by the merchant reference");
    assert_eq!(order["order_ref"], "211153393");
    assert_eq!(order["merchant_ref"], "SHOP-77");
    assert_eq!(order["origin"], "processor");
    assert_eq!(order["status"], "paid");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_merchant_order_under_a_refno_is_not_the_processors_order() {
    let db = books();
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("orders.csv");
    std::fs::write(&csv, "order_ref,amount,currency\n211153394,55.00,EUR\n").expect("csv");
    cli(&db)
        .args(["orders", "import"])
        .arg(&csv)
        .assert()
        .success();
    let out = process(
        &db,
        None,
        &[notice(&Notice::hosted("211153394", "COMPLETE", "100.00"))],
    );
    assert!(out.contains(" order_not_found order=211153394"), "{out}");
    let merchant = order(&db, "211153394").expect("the merchant's order");
    assert_eq!(merchant["origin"], "merchant");
    assert_eq!(
        merchant["status"], "pending",
        "not paid by another order's notice"
    );
}

/// `orders import` with a `processor_ref` column, from standard input.
fn import(db: &TestDb, csv: &str) -> std::process::Output {
    cli(db)
        .args(["orders", "import", "-"])
        .write_stdin(csv.to_owned())
        .output()
        .expect("runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_before_the_notice_gives_the_processor_order_its_reference_and_amount() {
    let db = books();
    let imported = import(
        &db,
        "order_ref,amount,currency,processor_ref\nSHOP-7,100.00,EUR,211153389\nSHOP-8,50.00,EUR,211153390\n",
    );
    assert!(imported.status.success(), "{imported:?}");
    assert_eq!(
        String::from_utf8_lossy(&imported.stdout),
        "imported 2 new order(s), 0 already present\n"
    );

    // The hosted cart names no merchant reference; REFNO finds the order
    // the import made, which keeps the shop's reference and amount.
    let out = process(
        &db,
        Some("processor"),
        &[
            notice(&Notice::hosted("211153389", "COMPLETE", "100.00")),
            notice(&Notice::hosted("211153390", "COMPLETE", "60.00")),
        ],
    );
    assert!(out.contains(" applied order=211153389 state=paid"), "{out}");

    let paid = order(&db, "SHOP-7").expect("found by the shop's reference");
    assert_eq!(paid["order_ref"], "211153389");
    assert_eq!(paid["merchant_ref"], "SHOP-7");
    assert_eq!(paid["origin"], "processor");
    assert_eq!(paid["status"], "paid");
    // The amount the shop expected is what the notice is held against.
    let short = order(&db, "211153390").expect("the second order");
    assert_eq!(short["amount"], "50.00");
    assert_eq!(short["status"], "mismatch", "{short}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_after_the_notice_attaches_the_reference_once_and_never_rewrites() {
    let db = books();
    process(
        &db,
        None,
        &[notice(&Notice::hosted("211153389", "COMPLETE", "100.00"))],
    );
    let csv = "order_ref,amount,currency,created_at,processor_ref\nSHOP-7,100.00,EUR,,211153389\n";
    let first = import(&db, csv);
    assert!(first.status.success(), "{first:?}");
    assert_eq!(
        String::from_utf8_lossy(&first.stdout),
        "imported 0 new order(s), 0 already present, 1 processor order(s) given their merchant reference\n"
    );
    let again = import(&db, csv);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        "imported 0 new order(s), 1 already present\n"
    );
    assert_eq!(
        order(&db, "SHOP-7").expect("found by the shop's reference")["order_ref"],
        "211153389"
    );

    // Another reference, another amount, or a shop reference that names
    // another order: refused with the line, nothing imported.
    for (csv, reason) in [
        (
            "order_ref,amount,currency,processor_ref\nSHOP-9,100.00,EUR,211153389\n",
            "already has the merchant reference SHOP-7",
        ),
        (
            "order_ref,amount,currency,processor_ref\nSHOP-7,90.00,EUR,211153389\n",
            "different amount or currency",
        ),
        (
            "order_ref,amount,currency,processor_ref\nNEW-1,5.00,EUR,\nSHOP-7,100.00,EUR,211150000\n",
            "the reference already names order 211153389",
        ),
        (
            "order_ref,amount,currency,processor_ref\nSHOP-7,100.00,EUR,21115x389\n",
            "processor_ref must be the processor's REFNO",
        ),
    ] {
        let refused = import(&db, csv);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{csv}: {stderr}");
        assert!(stderr.contains("nothing imported"), "{stderr}");
        assert!(stderr.contains(reason), "{csv}: {stderr}");
        assert!(stderr.contains("line "), "the line is named: {stderr}");
    }
    assert!(order(&db, "NEW-1").is_none(), "all or nothing");
    let kept = order(&db, "211153389").expect("the order");
    assert_eq!(kept["merchant_ref"], "SHOP-7");
    assert_eq!(kept["amount"], "100.00");
}
