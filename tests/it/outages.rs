//! A database outage while the worker consumes: nothing is acked without its
//! commit, the messages wait in the retry queues, and everything is applied
//! exactly once after the database comes back. The outage is a TCP proxy
//! cut for this test only; the server the other tests use stays up.

use std::net::SocketAddr;
use std::time::Duration;

use crate::helpers::TestDb;
use crate::helpers::amqp::{
    RunningWorker, TestQueue, count, import_orders_csv, resigned, test_key, wait_until,
};
use crate::helpers::proxy::Proxy;
use ipn_reconciler::secret::SecretUrl;
use ipn_reconciler::store::{SchemaPolicy, Store};

/// A store that reaches the test database through a proxy the test can cut.
async fn store_through_proxy(db: &TestDb) -> (Proxy, Store) {
    let upstream: SocketAddr = "127.0.0.1:5432".parse().expect("addr");
    let proxy = Proxy::start(upstream).await;
    let mut settings = db.settings();
    settings.url = SecretUrl::new(format!("postgres://postgres@{}/{}", proxy.addr, db.name));
    settings.schema = SchemaPolicy::ConnectOnly {
        create_database: false,
    };
    settings.acquire_timeout = Duration::from_secs(1);
    let store = Store::connect(settings).await.expect("store via proxy");
    (proxy, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_delays_notifications_and_loses_none() {
    let db = TestDb::new();
    let direct = db.store().await;
    const ORDERS: usize = 8;
    let csv: String = std::iter::once("order_ref,amount,currency\n".to_owned())
        .chain((0..ORDERS).map(|i| format!("OUT-{i},107.00,EUR\n")))
        .collect();
    import_orders_csv(&direct, &csv).await;

    let (proxy, through_proxy) = store_through_proxy(&db).await;

    let queue = TestQueue::new("300ms,600ms,1s,2s,3s,5s");
    queue.declare().await;
    let worker = RunningWorker::spawn(through_proxy, &queue, |settings| {
        settings.concurrency = 4;
    });

    proxy.cut().await;
    let key = test_key();
    let bodies: Vec<Vec<u8>> = (0..ORDERS)
        .map(|i| {
            resigned(
                "03-shop-1001-complete.txt",
                &format!("OUT-{i}"),
                90_000_000 + i as u64,
                &key,
            )
        })
        .collect();
    queue.publish(&bodies).await;

    let retried = wait_until(Duration::from_secs(30), || async {
        worker
            .metrics
            .encode()
            .lines()
            .any(|l| l.starts_with("ipn_retries_total{") && !l.ends_with(" 0"))
    })
    .await;
    assert!(retried, "the worker sent messages to the retry queues");
    assert!(
        worker.metrics.encode().contains("ipn_database_up 0"),
        "the outage shows in the metrics"
    );
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM notifications").await,
        0,
        "nothing was recorded during the outage"
    );

    proxy.restore().await;
    let applied = wait_until(Duration::from_secs(40), || async {
        count(&db.url, "SELECT count(*) FROM orders WHERE status = 'paid'").await == ORDERS as i64
    })
    .await;
    assert!(applied, "every order is paid once the database is back");
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM order_events").await,
        ORDERS as i64,
        "each notification applied exactly once"
    );
    assert_eq!(queue.ready(&queue.topology().parking_queue()).await, 0);
    let up = wait_until(Duration::from_secs(10), || async {
        worker.metrics.encode().contains("ipn_database_up 1")
    })
    .await;
    assert!(up, "the recovery shows in the metrics");
    worker.stop().await;
}

/// When the outage outlasts every retry, the message is parked (not lost),
/// and an operator requeues it once the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_parks_messages_that_an_operator_requeues() {
    let db = TestDb::new();
    let direct = db.store().await;
    import_orders_csv(&direct, "order_ref,amount,currency\nLONG-1,107.00,EUR\n").await;
    let (proxy, through_proxy) = store_through_proxy(&db).await;
    let queue = TestQueue::new("100ms");
    queue.declare().await;
    let worker = RunningWorker::spawn(through_proxy, &queue, |_| {});

    proxy.cut().await;
    let body = resigned(
        "03-shop-1001-complete.txt",
        "LONG-1",
        91_000_001,
        &test_key(),
    );
    queue.publish(&[body]).await;
    // The copy is visible in the parking queue a moment before the worker
    // counts it: wait for both.
    let parked = wait_until(Duration::from_secs(30), || async {
        queue.ready(&queue.topology().parking_queue()).await == 1
            && worker
                .metrics
                .encode()
                .contains("ipn_parked_total{reason=\"retries_exhausted\"} 1")
    })
    .await;
    assert!(
        parked,
        "the message is parked once its retries are exhausted"
    );
    assert!(
        worker
            .metrics
            .encode()
            .contains("ipn_parked_total{reason=\"retries_exhausted\"} 1"),
        "{}",
        worker.metrics.encode()
    );

    proxy.restore().await;
    let mut env = queue.env();
    env.extend(crate::helpers::amqp::key_env());
    env.push(("DATABASE_URL", db.url.clone()));
    let (ok, stdout, stderr) =
        crate::helpers::amqp::run_cli(vec!["parked".into(), "requeue".into(), "--all".into()], env)
            .await;
    assert!(ok, "{stdout}\n{stderr}");
    let applied = wait_until(Duration::from_secs(30), || async {
        count(&db.url, "SELECT count(*) FROM orders WHERE status = 'paid'").await == 1
    })
    .await;
    assert!(applied, "applied after the requeue");
    worker.stop().await;
}
