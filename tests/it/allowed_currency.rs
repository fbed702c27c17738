//! A currency outside ISO 4217 allowed by the operator (`allow-currency
//! CODE=EXPONENT`) in a daemon built through `Application`, as the tests,
//! the demo and the bench build it: the currency table travels in the
//! settings (to the intake, the worker and the store), so an order in that
//! currency imports and a signed notification of its exact amount pays it.
//! With a table for the whole process set only by the command line, such a
//! daemon read every allowed code with two decimals.

use std::time::Duration;

use ipn_reconciler::app::{AppConfig, Application};
use ipn_reconciler::domain::OrderState;
use ipn_reconciler::settings::{AllowedCurrencies, DatabaseSection, IntakeSection, Settings};
use ipn_reconciler::store::Store;
use tokio_util::sync::CancellationToken;

use crate::helpers::TestDb;
use crate::helpers::amqp::{
    TestQueue, count, import_orders_csv, resigned_with, test_key, wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_currency_is_paid_exactly_through_a_daemon_built_from_settings() {
    let db = TestDb::new();
    let queue = TestQueue::new("200ms,500ms");
    let settings = Settings {
        database: DatabaseSection {
            database_url: db.secret_url(),
            create_db: true,
            allow_currency: AllowedCurrencies::parse("ZZA=0,ZZB=3").expect("table"),
            ..queue.daemon_settings().database
        },
        intake: IntakeSection {
            // The intake judges what it verifies as the worker will.
            edge_verify: true,
            ..queue.daemon_settings().intake
        },
        ..queue.daemon_settings()
    };
    let loaded = settings.loaded().expect("settings");

    // The orders, imported with the store the settings describe (it checks
    // them against the same table): three decimals for ZZB, none for ZZA.
    let store = Store::connect(loaded.database().expect("database"))
        .await
        .expect("store");
    import_orders_csv(
        &store,
        "order_ref,amount,currency\nZZB-1,12.345,ZZB\nZZA-1,1234,zza\n",
    )
    .await;
    let zzb = store.order("ZZB-1").await.expect("order").expect("ZZB-1");
    assert_eq!(
        (zzb.amount.as_str(), zzb.currency.as_str()),
        ("12.345", "ZZB")
    );
    let zza = store.order("ZZA-1").await.expect("order").expect("ZZA-1");
    assert_eq!(
        (zza.amount.as_str(), zza.currency.as_str()),
        ("1234", "ZZA")
    );

    let app = Application::build(AppConfig::serve(&loaded).expect("serve config"))
        .await
        .expect("binds");
    let intake = app.intake_addr().expect("intake");
    let stop = CancellationToken::new();
    let run = tokio::spawn(app.run_until_stopped(stop.clone().cancelled_owned()));

    // Signed notifications of the exact amounts, through the intake: it
    // verifies and judges them with the same table (a receipt, not a 400
    // for too many decimals), and the worker pays the orders with them.
    // (The REFNOs keep the rewritten MESSAGE_ID from looking like a card
    // number, which the intake would let through to the worker unjudged.)
    let key = test_key();
    let client = reqwest::Client::new();
    for (order_ref, refno, amount, currency) in [
        ("ZZB-1", 7_200_001, "12.345", "ZZB"),
        ("ZZA-1", 7_200_002, "1234", "ZZA"),
    ] {
        let body = resigned_with(
            "03-shop-1001-complete.txt",
            order_ref,
            refno,
            &[("IPN_TOTALGENERAL", amount), ("CURRENCY", currency)],
            &key,
        );
        let response = client
            .post(format!("http://{intake}/ipn"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        let text = response.text().await.expect("answer");
        assert_eq!(status, 200, "{order_ref}: {text}");
        assert!(text.starts_with("<sig"), "{order_ref}: {text}");
    }

    let paid = wait_until(Duration::from_secs(30), || async {
        let mut both = true;
        for order_ref in ["ZZB-1", "ZZA-1"] {
            both &= store
                .order(order_ref)
                .await
                .ok()
                .flatten()
                .is_some_and(|o| o.status == OrderState::Paid);
        }
        both
    })
    .await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(40), run)
        .await
        .expect("stops within its deadlines")
        .expect("daemon task")
        .expect("the daemon runs");

    let zzb = store.order("ZZB-1").await.expect("order").expect("ZZB-1");
    let zza = store.order("ZZA-1").await.expect("order").expect("ZZA-1");
    assert!(paid, "paid in time: {zzb:?} {zza:?}");
    assert_eq!(zzb.status, OrderState::Paid, "{zzb:?}");
    assert_eq!(
        (zzb.paid.as_str(), zzb.amount.as_str()),
        ("12.345", "12.345")
    );
    assert_eq!(zzb.events.last().map(|e| e.amount.as_str()), Some("12.345"));
    assert_eq!(zza.status, OrderState::Paid, "{zza:?}");
    assert_eq!((zza.paid.as_str(), zza.amount.as_str()), ("1234", "1234"));
    // In minor units: 12345 thousandths, 1234 whole units.
    let minor =
        |order_ref: &str| format!("SELECT paid_minor FROM orders WHERE order_ref = '{order_ref}'");
    assert_eq!(count(&db.url, &minor("ZZB-1")).await, 12_345);
    assert_eq!(count(&db.url, &minor("ZZA-1")).await, 1_234);
    assert_eq!(
        count(
            &db.url,
            "SELECT count(*) FROM notifications WHERE outcome <> 'applied'"
        )
        .await,
        0,
        "every notification applied"
    );
}
