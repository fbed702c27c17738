//! Issue 22, the review actions that book what a person accepted (items 3,
//! 4, 7 and 8), against the real PostgreSQL: a payment of the wrong amount
//! accepted into `paid` (the difference accepted, written off or left to
//! collect), a refund in another currency booked in its own currency with
//! the order kept `paid`, write-offs that record the difference (never the
//! payment) with its sign, reach the journal on the write-off account so
//! that clearing ends where the bank says, and the write-off schedule
//! (`review list --status resolved --format csv`). Every expected figure is
//! worked out by hand in the comments, or summed by SQL.
#![allow(clippy::inconsistent_digit_grouping)]

use std::collections::BTreeMap;

use ipn_reconciler::domain::journal::{Account, MovementKind, trial_balance};
use ipn_reconciler::domain::review::ReviewAction;
use ipn_reconciler::domain::{
    BodyDigest, Currency, EventIdentity, Money, OrderState, PaymentEvent, ReviewKind, StatusField,
};
use ipn_reconciler::ipn::{Algorithm, KeyId};
use ipn_reconciler::services::review::{ResolveError, ResolveRequest, resolve};
use ipn_reconciler::store::{NewOrder, ReportBasis, ReportPeriod, ReviewStatus, Store};

use crate::cli_reconcile::cli;
use crate::helpers::TestDb;

/// A notification delivered once, `tag` naming it, in `currency`.
fn notice(
    order_ref: &str,
    refno: &str,
    status: &str,
    amount: &str,
    currency: &str,
    tag: &str,
) -> PaymentEvent {
    PaymentEvent {
        carries_message_id: false,
        digest: BodyDigest::of(format!("body|{order_ref}|{tag}").as_bytes()),
        identity: EventIdentity::parse(
            BodyDigest::of(format!("identity|{order_ref}|{tag}").as_bytes()).as_str(),
        )
        .expect("identity"),
        processor_ref: refno.to_owned(),
        merchant_ref: Some(order_ref.to_owned()),
        status: StatusField::parse(status),
        fraud_denied: false,
        test_order: false,
        amount: Money::iso(amount, currency).expect("amount"),
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
        money: Default::default(),
        chargeback: None,
    }
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

async fn apply(store: &Store, event: &PaymentEvent) {
    store
        .apply(event, chrono::Utc::now(), &Default::default())
        .await
        .expect("apply");
}

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

/// One `i64` a query returns.
async fn one(client: &tokio_postgres::Client, query: &str) -> i64 {
    client
        .query_one(query, &[])
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .get(0)
}

fn request(id: i64, action: ReviewAction) -> ResolveRequest {
    ResolveRequest::new(
        id,
        action,
        "finance-anna",
        "looked at the processor's figures",
    )
}

fn eur() -> Currency {
    Currency::iso("EUR").expect("EUR")
}

/// The journal's balances (per currency and account) over all time.
async fn balances(store: &Store) -> BTreeMap<(Currency, Account), i64> {
    let journal = store
        .journal_movements(&ReportPeriod::all())
        .await
        .expect("journal");
    trial_balance(journal.iter().map(|m| (m.kind, m.amount)))
}

/// The report's EUR totals, by event and by creation.
async fn eur_totals(store: &Store) -> Vec<ipn_reconciler::store::CurrencyTotals> {
    let mut all = Vec::new();
    for by in [ReportBasis::Event, ReportBasis::Created] {
        let report = store
            .finance_report(&ReportPeriod {
                by,
                ..ReportPeriod::all()
            })
            .await
            .expect("report");
        all.push(
            report
                .totals
                .into_iter()
                .find(|t| t.currency == "EUR")
                .expect("EUR"),
        );
    }
    all
}

/// Issue 22 item 8: `accept_as_is` on a payment of 90.00 for an order of
/// 100.00 books the 90.00 the processor captured: the order is paid, the
/// payment's movement and the report say 90.00, nothing is written off,
/// and the same capture sent again changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_short_payment_accepted_is_booked_as_captured() {
    let (db, store) = books().await;
    import(&store, "SHOP-A", "100.00").await;
    apply(
        &store,
        &notice("SHOP-A", "910001", "COMPLETE", "90.00", "EUR", "a1"),
    )
    .await;
    let item = open_items(&store, "SHOP-A", ReviewKind::AmountMismatch).await[0];
    let order = store.order("SHOP-A").await.unwrap().unwrap();
    assert_eq!(
        (order.status, order.paid.as_str()),
        (OrderState::Mismatch, "0.00")
    );

    let done = resolve(&store, &request(item, ReviewAction::AcceptAsIs))
        .await
        .expect("accepted");
    assert_eq!(done.order_state, Some(OrderState::Paid));
    assert_eq!(
        (done.amount.as_deref(), done.currency.as_deref()),
        (Some("90.00"), Some("EUR"))
    );
    let order = store.order("SHOP-A").await.unwrap().unwrap();
    assert_eq!(
        (order.status, order.paid.as_str()),
        (OrderState::Paid, "90.00")
    );
    let client = sql(&db).await;
    assert_eq!(
        one(
            &client,
            "SELECT coalesce(sum(amount_minor), 0)::int8 FROM money_movements \
             WHERE kind = 'payment' AND currency = 'EUR' AND resolution_id IS NOT NULL"
        )
        .await,
        90_00
    );
    assert_eq!(
        one(
            &client,
            &format!(
                "SELECT count(*) FROM review_resolutions WHERE review_item_id = {item} \
                 AND action = 'accept_as_is' AND amount_minor = 9000 \
                 AND written_off_minor IS NULL"
            )
        )
        .await,
        1
    );
    for totals in eur_totals(&store).await {
        assert_eq!(totals.figures.paid, 90_00);
        assert_eq!(totals.figures.net(), 90_00);
    }
    // The same capture sent again (another identity): no new item.
    apply(
        &store,
        &notice("SHOP-A", "910001", "COMPLETE", "90.00", "EUR", "a2"),
    )
    .await;
    assert!(
        open_items(&store, "SHOP-A", ReviewKind::AmountMismatch)
            .await
            .is_empty()
    );
    let order = store.order("SHOP-A").await.unwrap().unwrap();
    assert_eq!(
        (order.status, order.paid.as_str()),
        (OrderState::Paid, "90.00")
    );
}

/// Issue 22 items 3 and 7: `write_off` on the 90.00 payment of a 100.00
/// order books the 90.00 and writes off 10.00 (not 90.00): on the write-off
/// account against revenue (the clearing account holds the 90.00 the
/// processor will pay), and on the write-off schedule.
#[tokio::test(flavor = "multi_thread")]
async fn a_short_payment_written_off_writes_off_the_difference() {
    let (db, store) = books().await;
    import(&store, "SHOP-W", "100.00").await;
    apply(
        &store,
        &notice("SHOP-W", "910002", "COMPLETE", "90.00", "EUR", "w1"),
    )
    .await;
    let item = open_items(&store, "SHOP-W", ReviewKind::AmountMismatch).await[0];
    let done = resolve(&store, &request(item, ReviewAction::WriteOff))
        .await
        .expect("written off");
    assert_eq!(done.amount.as_deref(), Some("10.00"));
    let order = store.order("SHOP-W").await.unwrap().unwrap();
    assert_eq!(
        (order.status, order.paid.as_str()),
        (OrderState::Paid, "90.00")
    );
    let client = sql(&db).await;
    assert_eq!(
        one(
            &client,
            &format!(
                "SELECT written_off_minor FROM review_resolutions WHERE review_item_id = {item} \
                 AND amount_minor = 1000 AND currency = 'EUR'"
            )
        )
        .await,
        10_00
    );
    // Clearing: 90.00 captured. Revenue: 90.00 paid + 10.00 written off.
    let balances = balances(&store).await;
    assert_eq!(balances[&(eur(), Account::Clearing)], 90_00);
    assert_eq!(balances[&(eur(), Account::Revenue)], -100_00);
    assert_eq!(balances[&(eur(), Account::WriteOff)], 10_00);
    let journal = store.journal_movements(&ReportPeriod::all()).await.unwrap();
    let written: Vec<_> = journal
        .iter()
        .filter(|m| m.kind == MovementKind::WriteOffShortPayment)
        .map(|m| {
            (
                m.order_ref.as_str(),
                m.processor_ref.as_str(),
                m.amount.minor_units(),
            )
        })
        .collect();
    assert_eq!(written, [("SHOP-W", "910002", 10_00)]);
    for totals in eur_totals(&store).await {
        // A short payment written off does not touch the clearing account.
        assert_eq!(totals.figures.net(), 90_00);
        assert_eq!(totals.written_off, "0.00");
    }

    // The write-off schedule: the written-off amount and its currency.
    let output = cli(&db)
        .args([
            "review",
            "list",
            "--kind",
            "amount_mismatch",
            "--status",
            "resolved",
        ])
        .args(["--format", "csv"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let mut reader = csv::Reader::from_reader(output.as_slice());
    let headers = reader.headers().expect("headers").clone();
    let column = |name: &str| headers.iter().position(|h| h == name).expect(name);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][column("id")], item.to_string());
    assert_eq!(&rows[0][column("resolution_action")], "write_off");
    assert_eq!(&rows[0][column("written_off")], "10.00");
    assert_eq!(&rows[0][column("written_off_currency")], "EUR");
}

/// Issue 22 item 8: `collect_difference` books the 90.00 and keeps the
/// order open (`mismatch`) with a new item for the 10.00 still owed;
/// writing that item off later writes off 10.00 and books nothing twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_difference_left_to_collect_keeps_the_order_open_until_settled() {
    let (db, store) = books().await;
    import(&store, "SHOP-C", "100.00").await;
    apply(
        &store,
        &notice("SHOP-C", "910003", "COMPLETE", "90.00", "EUR", "c1"),
    )
    .await;
    let item = open_items(&store, "SHOP-C", ReviewKind::AmountMismatch).await[0];
    let done = resolve(&store, &request(item, ReviewAction::CollectDifference))
        .await
        .expect("collect");
    assert_eq!(done.amount.as_deref(), Some("10.00"));
    let order = store.order("SHOP-C").await.unwrap().unwrap();
    assert_eq!(
        (order.status, order.paid.as_str()),
        (OrderState::Mismatch, "90.00")
    );
    let follow_up = open_items(&store, "SHOP-C", ReviewKind::AmountMismatch).await;
    assert_eq!(follow_up.len(), 1);
    let detail = store.review_detail(follow_up[0]).await.unwrap().unwrap();
    assert!(
        detail.item.details.contains("10.00 EUR"),
        "{}",
        detail.item.details
    );
    assert_eq!(detail.item.processor_ref.as_deref(), Some("910003"));

    // Collecting again is refused: the difference is this item's.
    let err = resolve(
        &store,
        &request(follow_up[0], ReviewAction::CollectDifference),
    )
    .await
    .expect_err("refused");
    assert!(matches!(err, ResolveError::Book { .. }), "{err}");

    resolve(&store, &request(follow_up[0], ReviewAction::WriteOff))
        .await
        .expect("written off");
    let order = store.order("SHOP-C").await.unwrap().unwrap();
    assert_eq!(
        (order.status, order.paid.as_str()),
        (OrderState::Paid, "90.00")
    );
    let client = sql(&db).await;
    assert_eq!(
        one(
            &client,
            "SELECT count(*) FROM money_movements WHERE kind = 'payment'"
        )
        .await,
        1,
        "the capture is booked once"
    );
    assert_eq!(
        one(
            &client,
            "SELECT sum(written_off_minor)::int8 FROM review_resolutions \
             WHERE written_off_minor IS NOT NULL"
        )
        .await,
        10_00
    );
}

/// Issue 22 item 3: a refund of 20.00 USD on an order of 100.00 EUR is
/// booked by `book_refund` as a refund movement of 20.00 USD; the order
/// leaves `mismatch` and stays `paid`.
#[tokio::test(flavor = "multi_thread")]
async fn a_refund_in_another_currency_is_booked_in_its_own_currency() {
    let (db, store) = books().await;
    import(&store, "SHOP-R", "100.00").await;
    apply(
        &store,
        &notice("SHOP-R", "910004", "COMPLETE", "100.00", "EUR", "r1"),
    )
    .await;
    apply(
        &store,
        &notice("SHOP-R", "910004", "REFUND", "-20.00", "USD", "r2"),
    )
    .await;
    let order = store.order("SHOP-R").await.unwrap().unwrap();
    assert_eq!(order.status, OrderState::Mismatch);
    let item = open_items(&store, "SHOP-R", ReviewKind::CurrencyMismatch).await[0];
    let done = resolve(&store, &request(item, ReviewAction::BookRefund))
        .await
        .expect("booked");
    assert_eq!(
        (done.amount.as_deref(), done.currency.as_deref()),
        (Some("20.00"), Some("USD"))
    );
    let order = store.order("SHOP-R").await.unwrap().unwrap();
    assert_eq!(
        (order.status, order.paid.as_str(), order.refunded.as_str()),
        (OrderState::Paid, "100.00", "0.00")
    );
    let client = sql(&db).await;
    assert_eq!(
        one(
            &client,
            "SELECT coalesce(sum(amount_minor), 0)::int8 FROM money_movements \
             WHERE kind = 'refund' AND currency = 'USD' AND resolution_id IS NOT NULL \
             AND processor_ref = '910004'"
        )
        .await,
        20_00
    );
    let report = store
        .finance_report(&ReportPeriod {
            by: ReportBasis::Event,
            ..ReportPeriod::all()
        })
        .await
        .unwrap();
    let usd = report
        .totals
        .iter()
        .find(|t| t.currency == "USD")
        .expect("USD");
    assert_eq!(usd.figures.refunded, 20_00);
    let balances = balances(&store).await;
    let usd_code = Currency::iso("USD").unwrap();
    assert_eq!(balances[&(usd_code, Account::Refunds)], 20_00);
    assert_eq!(balances[&(usd_code, Account::Clearing)], -20_00);
    // A refund item of the order's currency cannot be booked so.
    import(&store, "SHOP-P", "10.00").await;
    apply(
        &store,
        &notice("SHOP-P", "910005", "COMPLETE", "12.00", "EUR", "p1"),
    )
    .await;
    let misfit = open_items(&store, "SHOP-P", ReviewKind::AmountMismatch).await[0];
    let err = resolve(&store, &request(misfit, ReviewAction::BookRefund))
        .await
        .expect_err("misfit");
    assert!(err.to_string().contains("does not fit"), "{err}");
}

/// Issue 22 items 3 and 4: settlement write-offs record the line's or the
/// payout's difference with its sign, and the journal books them against
/// the clearing account so that it ends at what the bank received.
///
/// A payment of 100.00 is settled by a sale line of 95.00 (5.00 short:
/// `settlement_amount_differs`), an unknown sale line of 40.00 arrives
/// (40.00 nothing booked: `settlement_unknown`), and the batch's payout is
/// 130.00 for lines of 95.00 + 40.00 = 135.00 net (5.00 short:
/// `payout_total_differs`). Written off: +5.00, -40.00, +5.00; clearing
/// 100.00 - 5.00 + 40.00 - 5.00 = 130.00, the transfer.
#[tokio::test(flavor = "multi_thread")]
async fn settlement_write_offs_bring_clearing_to_what_the_bank_received() {
    let (db, store) = books().await;
    import(&store, "SHOP-S", "100.00").await;
    apply(
        &store,
        &notice("SHOP-S", "910006", "COMPLETE", "100.00", "EUR", "s1"),
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let lines = dir.path().join("lines.csv");
    std::fs::write(
        &lines,
        "batch_id,processor_ref,order_ref,type,gross,fee,net,currency,settled_at\n\
         B-1,910006,SHOP-S,sale,95.00,0,95.00,EUR,2026-12-01\n\
         B-1,919999,,sale,40.00,0,40.00,EUR,2026-12-01\n",
    )
    .expect("lines");
    let payouts = dir.path().join("payouts.csv");
    std::fs::write(
        &payouts,
        "batch_id,paid_on,amount,currency\nB-1,2026-12-02,130.00,EUR\n",
    )
    .expect("payouts");
    cli(&db)
        .args(["settlement", "import"])
        .arg(&lines)
        .arg("--payouts")
        .arg(&payouts)
        .assert()
        .code(1);
    let client = sql(&db).await;
    let item_of = |kind: &'static str| {
        let client = &client;
        async move {
            one(
                client,
                &format!("SELECT id FROM review_items WHERE kind = '{kind}' AND status = 'open'"),
            )
            .await
        }
    };
    let differs = item_of("settlement_amount_differs").await;
    let unknown = item_of("settlement_unknown").await;
    let payout = item_of("payout_total_differs").await;
    let mut shown = Vec::new();
    for id in [differs, unknown, payout] {
        let done = resolve(&store, &request(id, ReviewAction::WriteOff))
            .await
            .expect("written off");
        shown.push(done.amount.expect("an amount"));
    }
    assert_eq!(shown, ["5.00", "-40.00", "5.00"]);
    let written = |id: i64| {
        let client = &client;
        async move {
            one(
                client,
                &format!(
                    "SELECT written_off_minor FROM review_resolutions \
                     WHERE review_item_id = {id} AND currency = 'EUR' \
                     AND amount_minor = abs(written_off_minor)"
                ),
            )
            .await
        }
    };
    assert_eq!(written(differs).await, 5_00);
    assert_eq!(written(unknown).await, -40_00);
    assert_eq!(written(payout).await, 5_00);

    let balances = balances(&store).await;
    // The journal books the payout too: clearing ends at zero, the bank
    // holds the 130.00 transferred.
    assert_eq!(balances[&(eur(), Account::Clearing)], 0);
    assert_eq!(balances[&(eur(), Account::Bank)], 130_00);
    assert_eq!(balances[&(eur(), Account::WriteOff)], 5_00 - 40_00 + 5_00);
    assert_eq!(balances.values().sum::<i64>(), 0);
    for totals in eur_totals(&store).await {
        assert_eq!(totals.figures.net(), 130_00);
        assert_eq!(totals.written_off, "-30.00");
    }

    // The schedule of each kind shows its own write-off.
    for (kind, amount) in [
        ("settlement_amount_differs", "5.00"),
        ("settlement_unknown", "-40.00"),
        ("payout_total_differs", "5.00"),
    ] {
        let output = cli(&db)
            .args(["review", "list", "--kind", kind, "--status", "resolved"])
            .args(["--format", "csv"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let mut reader = csv::Reader::from_reader(output.as_slice());
        let headers = reader.headers().expect("headers").clone();
        let at = |name: &str| headers.iter().position(|h| h == name).expect(name);
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
        assert_eq!(rows.len(), 1, "{kind}");
        assert_eq!(&rows[0][at("written_off")], amount, "{kind}");
        assert_eq!(&rows[0][at("written_off_currency")], "EUR", "{kind}");
    }
    // `review show` says it with its sign.
    let shown = cli(&db)
        .args(["review", "show", &unknown.to_string()])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let shown = String::from_utf8(shown).expect("utf-8");
    assert!(shown.contains("(written off -40.00 EUR)"), "{shown}");
}

/// Issue 22 item 3, the other write-offs: an unsettled payment writes off
/// what it still holds (a shortfall of the clearing account), an
/// over-refund the refunds above its payment (moved from refunds to the
/// write-off account; clearing paid them already).
///
/// SHOP-U: paid 25.00, refunded 5.00, never settled: 20.00 written off.
/// SHOP-O: paid 10.00, refunded 15.00: 5.00 written off.
/// Clearing: 25.00 - 5.00 + 10.00 - 15.00 - 20.00 = -5.00; refunds 5.00 +
/// 15.00 - 5.00 = 15.00; write-offs 20.00 + 5.00 = 25.00.
#[tokio::test(flavor = "multi_thread")]
async fn an_unsettled_payment_and_an_over_refund_write_off_what_they_hold() {
    let (db, store) = books().await;
    import(&store, "SHOP-U", "25.00").await;
    apply(
        &store,
        &notice("SHOP-U", "910010", "COMPLETE", "25.00", "EUR", "u1"),
    )
    .await;
    apply(
        &store,
        &notice("SHOP-U", "910010", "REFUND", "-5.00", "EUR", "u2"),
    )
    .await;
    import(&store, "SHOP-O", "10.00").await;
    apply(
        &store,
        &notice("SHOP-O", "910011", "COMPLETE", "10.00", "EUR", "o1"),
    )
    .await;
    apply(
        &store,
        &notice("SHOP-O", "910011", "REFUND", "-15.00", "EUR", "o2"),
    )
    .await;
    ipn_reconciler::services::sweep::sweep(
        &store,
        chrono::Utc::now() + chrono::Duration::days(30),
        &Default::default(),
    )
    .await
    .expect("sweep");
    let unsettled = open_items(&store, "SHOP-U", ReviewKind::UnsettledPayment).await[0];
    let over = open_items(&store, "SHOP-O", ReviewKind::OverRefund).await[0];
    let done = resolve(&store, &request(unsettled, ReviewAction::WriteOff))
        .await
        .expect("unsettled written off");
    assert_eq!(done.amount.as_deref(), Some("20.00"));
    let done = resolve(&store, &request(over, ReviewAction::WriteOff))
        .await
        .expect("over-refund written off");
    assert_eq!(done.amount.as_deref(), Some("5.00"));
    let client = sql(&db).await;
    for (item, minor) in [(unsettled, 20_00), (over, 5_00)] {
        assert_eq!(
            one(
                &client,
                &format!(
                    "SELECT written_off_minor FROM review_resolutions \
                     WHERE review_item_id = {item} AND amount_minor = {minor}"
                )
            )
            .await,
            minor
        );
    }
    let balances = balances(&store).await;
    assert_eq!(balances[&(eur(), Account::Clearing)], -5_00);
    assert_eq!(balances[&(eur(), Account::Refunds)], 15_00);
    assert_eq!(balances[&(eur(), Account::WriteOff)], 25_00);
    for totals in eur_totals(&store).await {
        assert_eq!(totals.figures.net(), -5_00);
        assert_eq!(totals.written_off, "20.00");
    }
}
