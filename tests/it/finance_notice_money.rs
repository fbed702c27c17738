//! Issue 21, Deliver 4: the money a notice carries beside its gross. A
//! signed hosted-cart COMPLETE in the processor's field order carries VAT
//! (`IPN_VAT[]=17.36`), a commission with more decimals than EUR
//! (`IPN_COMMISSION=5.4950`) and a payout in USD (`PAYABLE_AMOUNT=88.20`).
//! Before any settlement import the report shows VAT and commission, the
//! journal books them on their own accounts and equals the report; a
//! settlement fee replaces the commission, never adds to it, and one that
//! differs beyond the tolerance opens `fee_differs`.
//!
//! A notification a person applies later (an orphan's payment linked to
//! its order, a late repeat confirmed as a genuine second refund) is
//! rebuilt from its stored row: it books the same VAT, commission and
//! payout as applied directly (a row recorded before the notifications
//! kept the money books none). A chargeback notice gives back the VAT and
//! commission it carries, like a full refund.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime};
use ipn_reconciler::domain::journal::Figures;
use ipn_reconciler::domain::notice_money::{Commission, NoticeMoney, Rate};
use ipn_reconciler::domain::review::ReviewAction;
use ipn_reconciler::domain::{
    BodyDigest, EventIdentity, Money, OrderState, Outcome, PaymentEvent, ReviewKind, StatusField,
};
use ipn_reconciler::ipn::{Algorithm, KeyId};
use ipn_reconciler::services::review::{ResolveRequest, resolve};
use ipn_reconciler::store::reports::PayoutTotals;
use ipn_reconciler::store::{NewOrder, ReportBasis, ReportPeriod, ReviewStatus, Store};
use serde_json::Value;

use crate::cli_reconcile::cli;
use crate::helpers::TestDb;
use crate::processor_orders::{Notice, books, json, notice, notice_with, process};

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

#[tokio::test(flavor = "multi_thread")]
async fn finance_a_chargeback_gives_back_the_vat_and_commission_its_notice_carries() {
    let db = books();
    // The chargeback notice: the whole order back, its VAT, commission and
    // payable amount negative, as the processor shows a canceled amount.
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
    let complete = notice(&Notice::hosted(REFNO, "COMPLETE", "100.00"));
    process(&db, None, &[complete, chargeback]);
    let t = eur_totals(&db);
    assert_eq!(t["paid"], "100.00");
    assert_eq!(t["charged_back"], "100.00");
    assert_eq!(t["vat"], "0.00", "the VAT went back with the chargeback");
    assert_eq!(t["commission"], "0.00", "so did the commission");
    assert_eq!(t["net_revenue"], "0.00");
    assert_eq!(t["net"], "0.00");
    let report = json(cli(&db).args(["report", "--format", "json"]));
    assert_eq!(
        report["payouts"],
        serde_json::json!([{"currency": "USD", "expected": "0.00", "settled": "0.00"}])
    );
    // By event the same figures.
    let by_event = json(cli(&db).args(["report", "--by", "event", "--format", "json"]));
    assert_eq!(by_event["totals"], report["totals"], "{by_event}");

    let (sums, balances) = journal(&db);
    assert_eq!(
        sums,
        BTreeMap::from([
            ("chargeback".to_owned(), 10_000),
            ("commission".to_owned(), 550),
            ("commission_refund".to_owned(), 550),
            ("payment".to_owned(), 10_000),
            ("vat".to_owned(), 1736),
            ("vat_refund".to_owned(), 1736),
        ])
    );
    assert_eq!(balances.values().sum::<i64>(), 0, "the journal balances");
    assert_eq!(balances["Processor clearing"], 0);
    assert_eq!(balances["VAT collected by the processor"], 0);
    assert_eq!(balances["Processor commission (provisional)"], 0);
}

/// A tokenized notification carrying VAT, a commission and a USD payout;
/// `identity` names the notification, `body` the delivery.
#[allow(clippy::too_many_arguments)]
fn money_event(
    order_ref: &str,
    refno: &str,
    status: &str,
    amount: &str,
    (identity, body): (&str, &str),
    ipn_date: Option<NaiveDateTime>,
    (vat, commission, payable): (&str, &str, &str),
) -> PaymentEvent {
    let eur = Money::iso(amount, "EUR").expect("amount").currency();
    PaymentEvent {
        carries_message_id: false,
        digest: BodyDigest::of(format!("body|{order_ref}|{body}").as_bytes()),
        identity: EventIdentity::parse(
            BodyDigest::of(format!("identity|{refno}|{identity}").as_bytes()).as_str(),
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
        money: NoticeMoney {
            vat: Some(Money::iso(vat, "EUR").expect("vat")),
            commission: Some(Commission::parse(commission, eur).expect("commission")),
            payable: Some(Money::iso(payable, "USD").expect("payable")),
            fx_rate: Some(Rate::parse("1.0831").expect("rate")),
            fx_markup: Some(Rate::parse("4").expect("markup")),
        },
    }
}

fn day(d: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 11, d)
        .and_then(|d| d.and_hms_opt(9, 0, 0))
        .expect("date")
}

async fn import_order(store: &Store, order_ref: &str) {
    store
        .import_orders(&[
            NewOrder::new(order_ref, Money::iso("100.00", "EUR").expect("amount")).expect("order"),
        ])
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

/// What the books say, by creation and by event: the EUR figures, the
/// payouts, and the journal's sums per movement kind.
async fn books_of(store: &Store) -> (Vec<Figures>, Vec<Vec<PayoutTotals>>, BTreeMap<String, i64>) {
    let mut figures = Vec::new();
    let mut payouts = Vec::new();
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
        figures.push(eur.figures);
        payouts.push(report.payouts);
    }
    let mut sums = BTreeMap::new();
    for m in store
        .journal_movements(&ReportPeriod::all())
        .await
        .expect("journal")
    {
        *sums.entry(m.kind.as_str().to_owned()).or_default() += m.amount.minor_units();
    }
    (figures, payouts, sums)
}

fn usd_payouts(expected: &str) -> Vec<Vec<PayoutTotals>> {
    let one = vec![PayoutTotals {
        currency: "USD".to_owned(),
        expected: expected.to_owned(),
        settled: "0.00".to_owned(),
    }];
    vec![one.clone(), one]
}

/// An orphan's payment (for order GHOST-1, which never appears) carrying
/// VAT, commission and a payout.
fn orphan_payment(order_ref: &str) -> PaymentEvent {
    money_event(
        order_ref,
        "900110",
        "COMPLETE",
        "100.00",
        ("pay", "pay"),
        Some(day(1)),
        ("17.36", "5.4950", "88.20"),
    )
}

/// Records the orphan payment in `store`, opens its `orphan_payment` item
/// and links it to SHOP-B through the review service.
async fn link_orphan(db: &TestDb, store: &Store, older_row: bool) {
    let pay = orphan_payment("GHOST-1");
    assert_eq!(apply(store, &pay).await, Outcome::OrderNotFound);
    if older_row {
        // As a row recorded before the notifications kept the money.
        let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        let updated = client
            .execute(
                "UPDATE notifications SET vat_minor = NULL, commission_e8 = NULL, \
                 payable_minor = NULL, payout_currency = NULL, fx_rate = NULL, fx_markup = NULL \
                 WHERE body_sha256 = $1",
                &[&pay.digest.as_str()],
            )
            .await
            .expect("update");
        assert_eq!(updated, 1);
    }
    store
        .open_review_item(
            ReviewKind::OrphanPayment,
            Some("GHOST-1"),
            Some(pay.digest.as_str()),
            "payment of 100.00 EUR for an order that never appeared",
        )
        .await
        .expect("orphan item");
    let item = store
        .review_items_by_status(ReviewStatus::Open, Some(ReviewKind::OrphanPayment))
        .await
        .expect("items")[0]
        .id;
    import_order(store, "SHOP-B").await;
    let done = resolve(
        store,
        &ResolveRequest {
            order_ref: Some("SHOP-B".to_owned()),
            ..ResolveRequest::new(
                item,
                ReviewAction::LinkOrder,
                "finance-anna",
                "the shop's order",
            )
        },
    )
    .await
    .expect("linked");
    assert_eq!(done.order_state, Some(OrderState::Paid));
}

#[tokio::test(flavor = "multi_thread")]
async fn finance_an_orphan_linked_by_a_person_books_the_money_it_would_have_booked_directly() {
    let linked_db = TestDb::new();
    let linked = linked_db.store().await;
    link_orphan(&linked_db, &linked, false).await;

    let direct_db = TestDb::new();
    let direct = direct_db.store().await;
    import_order(&direct, "SHOP-B").await;
    assert_eq!(
        apply(&direct, &orphan_payment("SHOP-B")).await,
        Outcome::Applied
    );

    let books = books_of(&linked).await;
    assert_eq!(books, books_of(&direct).await, "as if applied directly");
    let (figures, payouts, sums) = books;
    for f in figures {
        assert_eq!((f.paid, f.vat, f.commission), (10_000, 1736, 550));
    }
    assert_eq!(payouts, usd_payouts("88.20"));
    assert_eq!(sums["vat"], 1736);
    assert_eq!(sums["commission"], 550);
    // The payout side as sent, rates included.
    let order = linked.order("SHOP-B").await.expect("read").expect("order");
    assert_eq!(order.paid, "100.00");
    let (client, connection) = tokio_postgres::connect(&linked_db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT commission_e8, payable_minor, payout_currency, fx_rate, fx_markup \
             FROM payments WHERE processor_ref = '900110'",
            &[],
        )
        .await
        .expect("payment");
    assert_eq!(row.get::<_, i64>(0), 549_500_000, "exact");
    assert_eq!(row.get::<_, Option<i64>>(1), Some(8820));
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("USD"));
    assert_eq!(row.get::<_, Option<String>>(3).as_deref(), Some("1.0831"));
    assert_eq!(row.get::<_, Option<String>>(4).as_deref(), Some("4"));
}

#[tokio::test(flavor = "multi_thread")]
async fn finance_an_orphan_recorded_before_the_notifications_kept_money_links_without_it() {
    let db = TestDb::new();
    let store = db.store().await;
    link_orphan(&db, &store, true).await;
    let (figures, payouts, sums) = books_of(&store).await;
    for f in figures {
        assert_eq!(
            (f.paid, f.vat, f.commission),
            (10_000, 0, 0),
            "no money known"
        );
    }
    assert!(payouts.iter().all(Vec::is_empty), "{payouts:?}");
    assert_eq!(sums.get("vat"), None);
    assert_eq!(sums["payment"], 10_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn finance_a_confirmed_second_refund_gives_back_its_vat_and_commission() {
    let pay = money_event(
        "SHOP-A",
        "900120",
        "COMPLETE",
        "100.00",
        ("pay", "pay"),
        Some(day(1)),
        ("17.36", "5.4950", "88.20"),
    );
    let refund = |identity: &str, body: &str, at: u32| {
        money_event(
            "SHOP-A",
            "900120",
            "REFUND",
            "-20.00",
            (identity, body),
            Some(day(at)),
            ("-3.47", "-1.0990", "-17.64"),
        )
    };

    // Confirmed by a person: the same refund notice again, days later.
    let confirmed_db = TestDb::new();
    let confirmed = confirmed_db.store().await;
    import_order(&confirmed, "SHOP-A").await;
    assert_eq!(apply(&confirmed, &pay).await, Outcome::Applied);
    assert_eq!(
        apply(&confirmed, &refund("r1", "first", 2)).await,
        Outcome::Applied
    );
    assert_eq!(
        apply(&confirmed, &refund("r1", "late", 6)).await,
        Outcome::Duplicate
    );
    let item = confirmed
        .review_items_by_status(ReviewStatus::Open, Some(ReviewKind::PossibleSecondEvent))
        .await
        .expect("items")[0]
        .id;
    let done = resolve(
        &confirmed,
        &ResolveRequest::new(
            item,
            ReviewAction::ApplyRepeat,
            "finance-anna",
            "a second refund, confirmed with the processor",
        ),
    )
    .await
    .expect("resolved");
    assert_eq!(done.order_state, Some(OrderState::PartiallyRefunded));

    // Two refunds applied directly.
    let direct_db = TestDb::new();
    let direct = direct_db.store().await;
    import_order(&direct, "SHOP-A").await;
    apply(&direct, &pay).await;
    assert_eq!(
        apply(&direct, &refund("r1", "first", 2)).await,
        Outcome::Applied
    );
    assert_eq!(
        apply(&direct, &refund("r2", "second", 6)).await,
        Outcome::Applied
    );

    let books = books_of(&confirmed).await;
    assert_eq!(books, books_of(&direct).await, "as if applied directly");
    let (figures, payouts, sums) = books;
    for f in figures {
        assert_eq!(f.refunded, 4000);
        assert_eq!(f.vat_refunded, 694, "both refunds' VAT back");
        // 1.0990 twice is 2.1980: rounded as a running total, 2.20.
        assert_eq!(f.commission_refunded, 220);
    }
    // 88.20 − 17.64 − 17.64.
    assert_eq!(payouts, usd_payouts("52.92"));
    assert_eq!(sums["vat_refund"], 694);
    assert_eq!(sums["commission_refund"], 220);
}
