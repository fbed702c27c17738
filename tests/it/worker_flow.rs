//! The worker in process against the real RabbitMQ and PostgreSQL: each test
//! has its own queues (`ipn.test.<uuid>`) and its own database.

use std::time::Duration;

use crate::helpers::amqp::{
    RunningWorker, TestQueue, close_connections, count, import_fixture_orders, import_orders_csv,
    live_connections, pipeline_config, read, resigned, run_cli, test_key, wait_until,
};
use crate::helpers::{TestDb, dump_all_text, fixture_files};
use ipn_reconciler::domain::OrderState;
use ipn_reconciler::ipn::{KeyRing, SecretKey};
use ipn_reconciler::pipeline::Pipeline;

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_published_twice_are_applied_once() {
    let db = TestDb::new();
    let store = db.store().await;
    import_fixture_orders(&store).await;
    let queue = TestQueue::new("200ms,500ms");
    queue.declare().await;
    let bodies: Vec<Vec<u8>> = fixture_files().iter().map(|p| read(p)).collect();
    let worker = RunningWorker::spawn(store.clone(), &queue, |_| {});
    queue.publish(&bodies).await;
    queue.publish(&bodies).await;

    let total = 2 * bodies.len() as u64;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            worker.metrics.handled() >= total
        })
        .await,
        "handled {} of {total}",
        worker.metrics.handled()
    );
    let text = worker.metrics.encode();
    worker.stop().await;
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM notifications").await,
        22
    );
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM order_events").await,
        22
    );
    assert_eq!(
        metric(&text, "ipn_notifications_total{outcome=\"duplicate\"}"),
        22,
        "{text}"
    );
    assert_eq!(queue.ready(&queue.topology().parking_queue()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_before_its_order_is_retried_until_the_order_exists() {
    let db = TestDb::new();
    let store = db.store().await;
    let queue = TestQueue::new("200ms,500ms");
    queue.declare().await;
    let worker = RunningWorker::spawn(store.clone(), &queue, |settings| {
        settings.orphan_window = Duration::from_secs(40);
    });
    let body = read(&crate::helpers::repo_path(
        "fixtures/ipn/03-shop-1001-complete.txt",
    ));
    queue.publish(&[body]).await;

    // At least two broker-side retries happen while the order is missing.
    assert!(
        wait_until(Duration::from_secs(15), || async {
            let text = worker.metrics.encode();
            metric(&text, "ipn_retries_total{delay=\"200ms\"}")
                + metric(&text, "ipn_retries_total{delay=\"500ms\"}")
                >= 2
        })
        .await,
        "{}",
        worker.metrics.encode()
    );
    import_fixture_orders(&store).await;
    let paid = wait_until(Duration::from_secs(15), || async {
        matches!(store.order("SHOP-1001").await, Ok(Some(order)) if order.status == OrderState::Paid)
    })
    .await;
    worker.stop().await;
    assert!(paid, "SHOP-1001 paid after its order was imported");
    assert_eq!(count(&db.url, "SELECT count(*) FROM order_events").await, 1);
    assert_eq!(queue.ready(&queue.topology().parking_queue()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_that_never_appears_becomes_an_orphan_payment_and_is_parked() {
    let db = TestDb::new();
    let store = db.store().await;
    let queue = TestQueue::new("200ms");
    queue.declare().await;
    let worker = RunningWorker::spawn(store.clone(), &queue, |settings| {
        settings.orphan_window = Duration::from_millis(900);
    });
    let body = read(&crate::helpers::repo_path(
        "fixtures/ipn/03-shop-1001-complete.txt",
    ));
    queue.publish(&[body]).await;
    let parking = queue.topology().parking_queue();
    assert!(
        wait_until(Duration::from_secs(15), || async {
            queue.ready(&parking).await == 1
        })
        .await,
        "parked"
    );
    worker.stop().await;
    assert_eq!(
        count(
            &db.url,
            "SELECT count(*) FROM review_items WHERE kind = 'orphan_payment' AND order_ref = 'SHOP-1001'"
        )
        .await,
        1
    );
}

/// Orders `W-0000`.. at 107.00 EUR and, for each, the fixture lifecycle of
/// SHOP-1001 (authorized, complete) re-signed for it.
fn paid_stream(orders: usize) -> (String, Vec<Vec<u8>>) {
    let key = test_key();
    let mut csv = String::from("order_ref,amount,currency\n");
    let mut bodies = Vec::new();
    for n in 0..orders {
        let order_ref = format!("W-{n:04}");
        csv.push_str(&format!("{order_ref},107.00,EUR\n"));
        let refno = 80_000_000 + n as u64;
        bodies.push(resigned(
            "02-shop-1001-authorized.txt",
            &order_ref,
            refno,
            &key,
        ));
        bodies.push(resigned(
            "03-shop-1001-complete.txt",
            &order_ref,
            refno,
            &key,
        ));
    }
    (csv, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_recovers_when_the_broker_closes_its_connections() {
    let db = TestDb::new();
    let store = db.store().await;
    let (csv, bodies) = paid_stream(600);
    import_orders_csv(&store, &csv).await;
    let queue = TestQueue::new("200ms,500ms");
    queue.declare().await;
    queue.publish(&bodies).await;
    let worker = RunningWorker::spawn(store.clone(), &queue, |settings| {
        settings.concurrency = 1;
        settings.prefetch = 4;
    });
    assert!(
        wait_until(Duration::from_secs(20), || async {
            worker.metrics.handled() >= 10
        })
        .await
    );
    let closed = close_connections(&queue.base).await;
    assert!(closed >= 1, "the consumer connection was found and closed");
    let at_close = worker.metrics.handled();
    assert!(
        at_close < 1200,
        "closed in the middle of the stream ({at_close})"
    );

    let all = wait_until(Duration::from_secs(45), || async {
        count(&db.url, "SELECT count(*) FROM notifications").await == 1200
    })
    .await;
    let text = worker.metrics.encode();
    worker.stop().await;
    // No connection of this worker survives it (a zombie would replay its
    // consumer and hold messages).
    let gone = wait_until(Duration::from_secs(10), || async {
        live_connections(&queue.base).await == 0
    })
    .await;
    assert!(gone, "connections left behind");
    assert!(all, "every notification recorded after the forced close");
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM order_events").await,
        1200
    );
    assert_eq!(
        count(
            &db.url,
            "SELECT count(*) FROM orders WHERE status <> 'paid'"
        )
        .await,
        0
    );
    assert!(text.contains("ipn_broker_connected 1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_with_conflicting_events_agree_with_sequential_decisions() {
    let key = test_key();
    let fixtures = [
        "04-shop-1002-authorized.txt",
        "05-shop-1002-complete.txt",
        "06-shop-1002-partial-refund.txt",
        "07-shop-1002-refund.txt",
        "16-shop-1009-chargeback.txt",
    ];
    let mut csv = String::from("order_ref,amount,currency\n");
    let mut bodies = Vec::new();
    for n in 0..30u64 {
        let order_ref = format!("C-{n:03}");
        csv.push_str(&format!("{order_ref},49.99,USD\n"));
        // Every order gets its events in another order.
        let mut events: Vec<_> = fixtures
            .iter()
            .map(|f| resigned(f, &order_ref, 90_000_000 + n, &key))
            .collect();
        events.rotate_left((n % 5) as usize);
        if n % 2 == 1 {
            events.reverse();
        }
        bodies.extend(events);
    }

    // The oracle: the same bodies, one at a time, on a database of its own.
    let oracle_db = TestDb::new();
    let oracle = oracle_db.store().await;
    import_orders_csv(&oracle, &csv).await;
    let pipeline = Pipeline::new(pipeline_config(), oracle.clone());
    for body in &bodies {
        pipeline
            .handle(body, chrono::Utc::now())
            .await
            .expect("oracle");
    }

    let db = TestDb::new();
    let store = db.store().await;
    import_orders_csv(&store, &csv).await;
    let queue = TestQueue::new("200ms,500ms");
    queue.declare().await;
    let workers: Vec<_> = (0..3)
        .map(|_| RunningWorker::spawn(store.clone(), &queue, |s| s.concurrency = 3))
        .collect();
    queue.publish(&bodies).await;
    let done = wait_until(Duration::from_secs(40), || async {
        count(&db.url, "SELECT count(*) FROM notifications").await == bodies.len() as i64
    })
    .await;
    let mut handled = Vec::new();
    for worker in workers {
        handled.push(worker.metrics.handled());
        worker.stop().await;
    }
    assert!(done, "all notifications recorded");
    assert!(
        handled.iter().filter(|&&n| n > 0).count() >= 2,
        "the work was shared: {handled:?}"
    );
    let summary = |orders: Vec<ipn_reconciler::store::OrderView>| {
        orders
            .into_iter()
            .map(|o| (o.order_ref, o.status, o.paid, o.refunded))
            .collect::<Vec<_>>()
    };
    let expected = summary(oracle.list_orders(None).await.expect("oracle orders"));
    let actual = summary(store.list_orders(None).await.expect("orders"));
    assert_eq!(actual, expected);
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM order_events").await,
        count(&oracle_db.url, "SELECT count(*) FROM order_events").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_and_malformed_bodies_are_parked_and_can_be_requeued() {
    let db = TestDb::new();
    let store = db.store().await;
    import_fixture_orders(&store).await;
    let queue = TestQueue::new("200ms");
    queue.declare().await;
    let new_key = SecretKey::new(b"ipn-reconciler-TEST-ONLY-2027-key".to_vec());
    let forged = resigned("03-shop-1001-complete.txt", "SHOP-1001", 71000101, &new_key);
    let malformed = b"REFNO=%FF&REFNOEXT=SHOP-1001".to_vec();
    let worker = RunningWorker::spawn(store.clone(), &queue, |_| {});
    queue.publish(&[forged.clone(), malformed.clone()]).await;
    let parking = queue.topology().parking_queue();
    assert!(
        wait_until(Duration::from_secs(15), || async {
            queue.ready(&parking).await == 2
        })
        .await,
        "both parked"
    );
    let text = worker.metrics.encode();
    worker.stop().await;
    assert_eq!(
        metric(
            &text,
            "ipn_notifications_total{outcome=\"invalid_signature\"}"
        ),
        1
    );
    assert_eq!(
        metric(&text, "ipn_notifications_total{outcome=\"malformed\"}"),
        1
    );
    assert!(
        text.lines()
            .filter(|line| line.starts_with("ipn_retries_total{"))
            .all(|line| line.ends_with(" 0")),
        "never retried: {text}"
    );
    assert_eq!(
        count(
            &db.url,
            "SELECT count(*) FROM notifications WHERE outcome IN ('invalid_signature', 'malformed')"
        )
        .await,
        2
    );
    let stored = dump_all_text(&db.url).await;
    assert!(
        !stored.iter().any(|(_, _, value)| value.contains("REFNO=")),
        "no body stored"
    );

    let list = run_cli(vec!["parked".into(), "list".into()], queue.env()).await;
    assert!(list.0, "parked list: {}", list.2);
    assert!(list.1.contains("invalid_signature"), "{}", list.1);
    assert!(list.1.contains("malformed"), "{}", list.1);
    assert!(list.1.contains("2 parked"), "{}", list.1);
    assert_eq!(queue.ready(&parking).await, 2, "listing leaves them parked");

    // The operator adds the missing key and requeues the forged-looking one.
    let forged_id = ipn_reconciler::domain::BodyDigest::of(&forged).as_str()[..12].to_owned();
    let mut config = pipeline_config();
    config.keys = KeyRing::parse(
        "test-2026 ipn-reconciler-TEST-ONLY-2026-key\ntest-2027 ipn-reconciler-TEST-ONLY-2027-key\n",
    )
    .expect("keys");
    let worker = RunningWorker::spawn_with(store.clone(), &queue, config, |_| {});
    // `parked requeue` writes each move to the action log: it needs the
    // database too.
    let mut env = queue.env();
    env.push(("DATABASE_URL", db.url.clone()));
    let requeue = run_cli(
        vec![
            "parked".into(),
            "requeue".into(),
            forged_id.clone(),
            "--by".into(),
            "ops-anna".into(),
        ],
        env.clone(),
    )
    .await;
    assert!(requeue.0, "parked requeue: {}", requeue.2);
    assert!(requeue.1.contains("1 requeued"), "{}", requeue.1);
    assert_eq!(
        count(
            &db.url,
            "SELECT count(*) FROM console_actions WHERE action = 'requeue_parked' \
             AND user_name = 'ops-anna' AND source = 'cli'"
        )
        .await,
        1,
        "one row for the one message moved"
    );
    let paid = wait_until(Duration::from_secs(15), || async {
        matches!(store.order("SHOP-1001").await, Ok(Some(order)) if order.status == OrderState::Paid)
    })
    .await;
    assert!(paid, "the requeued notification was applied");
    assert_eq!(
        queue.ready(&parking).await,
        1,
        "the malformed one is still parked"
    );

    // Requeueing the malformed body parks it again: it is never retried.
    let all = run_cli(vec!["parked".into(), "requeue".into(), "--all".into()], env).await;
    assert!(all.1.contains("1 requeued"), "{}", all.1);
    assert!(
        wait_until(Duration::from_secs(15), || async {
            worker
                .metrics
                .encode()
                .contains("ipn_parked_total{reason=\"malformed\"} 1")
        })
        .await
    );
    worker.stop().await;
    assert_eq!(queue.ready(&parking).await, 1);
}
