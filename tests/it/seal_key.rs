//! A seal key of its own (issue 23, item 6), against the real RabbitMQ and
//! PostgreSQL: bodies are sealed with `seal-key-file`, never with keys
//! derived from the processor's secret; the seal binds the headers the
//! worker acts on, so a reset counter makes a message unopenable (parked
//! as `malformed:broken_seal`, never applied) and every retry copy is
//! sealed again; messages sealed before the upgrade are still applied;
//! the parking queue's own TTL expires what the broker dead-letters into
//! it; and the daemon refuses to start without a seal key file.

use std::time::Duration;

use chrono::Utc;
use lapin::options::{BasicGetOptions, BasicRejectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;

use crate::helpers::amqp::{
    RunningWorker, TestQueue, count, import_fixture_orders, key_env, pipeline_config, read,
    run_cli, seal_keys, wait_until,
};
use crate::helpers::{TestDb, repo_path};
use ipn_reconciler::domain::OrderState;
use ipn_reconciler::ipn::KeyRing;
use ipn_reconciler::queue::seal::seal_legacy;
use ipn_reconciler::queue::topology::ParkingTtl;
use ipn_reconciler::queue::{MessageMeta, Publisher};

const COMPLETE: &str = "fixtures/ipn/03-shop-1001-complete.txt";

async fn publish(queue: &TestQueue, messages: &[(Vec<u8>, MessageMeta)]) {
    let publisher = Publisher::connect(queue.settings.clone(), "test-publisher")
        .await
        .expect("publisher");
    for (body, meta) in messages {
        publisher
            .publish_notification(body, meta)
            .await
            .expect("publish");
    }
    publisher.close().await;
}

fn header(properties: &lapin::BasicProperties, name: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(name)? {
        lapin::types::AMQPValue::LongString(value) => {
            Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
        }
        other => Some(format!("{other:?}")),
    }
}

/// Issue 23's "done when": a sealed message whose orphan-attempt header was
/// changed on the broker does not open; the worker parks it as a broken
/// seal and never applies it, though its order exists and its signature
/// is good. The same message untouched is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_message_whose_orphan_attempt_was_reset_is_parked_and_never_applied() {
    let db = TestDb::new();
    let store = db.store().await;
    import_fixture_orders(&store).await;
    let queue = TestQueue::new("200ms");
    queue.declare().await;

    let complete = read(&repo_path(COMPLETE));
    let sealed = seal_keys()
        .seal(
            &complete,
            MessageMeta {
                orphan_attempt: 2,
                first_seen: Some(Utc::now()),
                ..MessageMeta::received(Utc::now(), Some("203.0.113.9".into()))
            },
        )
        .expect("seal");
    let reset = MessageMeta {
        orphan_attempt: 0,
        ..sealed.meta.clone()
    };
    publish(&queue, &[(sealed.body.clone(), reset)]).await;

    let worker = RunningWorker::spawn(store.clone(), &queue, |_| {});
    let parking = queue.topology().parking_queue();
    let parked = wait_until(Duration::from_secs(20), || async {
        queue.ready(&parking).await == 1
    })
    .await;
    assert!(parked, "{}", worker.metrics.encode());
    let messages = queue.browse(&parking).await;
    assert_eq!(
        header(&messages[0].0, "x-park-reason").as_deref(),
        Some("malformed:broken_seal")
    );
    assert_eq!(messages[0].1, sealed.body, "parked as received");
    let view = store
        .order("SHOP-1001")
        .await
        .expect("order")
        .expect("exists");
    assert_ne!(view.status, OrderState::Paid, "never applied");
    assert_eq!(
        count(
            &db.url,
            "SELECT count(*) FROM notifications WHERE outcome = 'malformed' AND reason = 'broken_seal'"
        )
        .await,
        1
    );

    // Untouched, the same sealed body is applied.
    publish(&queue, &[(sealed.body.clone(), sealed.meta.clone())]).await;
    let paid = wait_until(Duration::from_secs(20), || async {
        matches!(store.order("SHOP-1001").await, Ok(Some(order)) if order.status == OrderState::Paid)
    })
    .await;
    worker.stop().await;
    assert!(paid, "the intact message is applied");
}

/// An orphan's retry copy carries a moved-on counter and a first-seen time:
/// the worker seals it again with them (a copy of the bytes as received
/// would no longer open), and the copy with its counter reset does not open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_copy_is_sealed_again_with_its_moved_on_counter() {
    let db = TestDb::new();
    let store = db.store().await;
    // No orders imported: the notification is an orphan.
    let queue = TestQueue::new("10m");
    queue.declare().await;
    let complete = read(&repo_path(COMPLETE));
    let sealed = seal_keys()
        .seal(&complete, MessageMeta::received(Utc::now(), None))
        .expect("seal");
    publish(&queue, &[(sealed.body.clone(), sealed.meta.clone())]).await;

    let worker = RunningWorker::spawn(store, &queue, |_| {});
    let retry = queue.topology().retry_queue(Duration::from_secs(600));
    let retried = wait_until(Duration::from_secs(20), || async {
        queue.ready(&retry).await == 1
    })
    .await;
    worker.stop().await;
    assert!(retried, "the orphan waits in the retry queue");
    let messages = queue.browse(&retry).await;
    let (properties, body) = &messages[0];
    let meta = MessageMeta::from_properties(properties, Utc::now());
    assert_eq!(meta.orphan_attempt, 1);
    assert!(meta.first_seen.is_some());
    assert_eq!(meta.seal.as_deref(), Some("2"));
    assert_ne!(body, &sealed.body, "sealed again, with a fresh nonce");
    assert_eq!(
        seal_keys().open(&meta, body).expect("opens").as_slice(),
        complete.as_slice()
    );
    let reset = MessageMeta {
        orphan_attempt: 0,
        ..meta.clone()
    };
    assert!(seal_keys().open(&reset, body).is_err());
    let no_window = MessageMeta {
        first_seen: None,
        ..meta
    };
    assert!(seal_keys().open(&no_window, body).is_err());
}

/// A message sealed before the upgrade (keys derived from the processor's
/// key, no `x-seal` header) is still opened and applied while that key is
/// in `key-file`; one whose processor key is no longer there is parked as
/// `malformed:unknown_seal_key`. Its park copy is sealed under the new
/// scheme.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sealed_before_the_upgrade_is_still_applied() {
    let db = TestDb::new();
    let store = db.store().await;
    import_fixture_orders(&store).await;
    let queue = TestQueue::new("200ms");
    queue.declare().await;
    let processor = pipeline_config().keys;
    let complete = read(&repo_path(COMPLETE));
    let old = seal_legacy(
        &processor,
        &complete,
        MessageMeta::received(Utc::now(), None),
    )
    .expect("seal");
    assert_eq!(old.meta.seal, None);
    // Derived from a processor key that key-file no longer holds.
    let gone = KeyRing::parse("test-2023 ipn-reconciler-TEST-ONLY-2023-key\n").expect("ring");
    let other = read(&repo_path("fixtures/ipn/05-shop-1002-complete.txt"));
    let orphaned =
        seal_legacy(&gone, &other, MessageMeta::received(Utc::now(), None)).expect("seal");
    publish(
        &queue,
        &[(old.body, old.meta), (orphaned.body, orphaned.meta)],
    )
    .await;

    let worker = RunningWorker::spawn(store.clone(), &queue, |_| {});
    let parking = queue.topology().parking_queue();
    let settled = wait_until(Duration::from_secs(20), || async {
        matches!(store.order("SHOP-1001").await, Ok(Some(order)) if order.status == OrderState::Paid)
            && queue.ready(&parking).await == 1
    })
    .await;
    worker.stop().await;
    assert!(settled, "the old message applied, the other parked");
    let messages = queue.browse(&parking).await;
    assert_eq!(
        header(&messages[0].0, "x-park-reason").as_deref(),
        Some("malformed:unknown_seal_key")
    );
    let view = store
        .order("SHOP-1002")
        .await
        .expect("order")
        .expect("exists");
    assert_ne!(view.status, OrderState::Paid);
}

/// The parking queue is declared with `x-message-ttl` = parking-ttl: a
/// message the broker dead-letters into it by itself (here: rejected from
/// the work queue, as past `delivery-limit`) carries no per-message TTL and
/// still expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_broker_dead_letters_into_the_parking_queue_expires() {
    let mut queue = TestQueue::new("10m");
    queue.settings.topology = queue
        .topology()
        .clone()
        .with_parking_ttl(Duration::from_secs(2));
    let connection = queue.settings.connect("test-setup").await.expect("connect");
    assert_eq!(
        queue
            .topology()
            .declare(&connection)
            .await
            .expect("declare"),
        ParkingTtl::Declared
    );
    queue.publish(&[b"REFNO=1".to_vec()]).await;
    let channel = connection.create_channel().await.expect("channel");
    let message = channel
        .basic_get(
            queue.topology().work_queue().into(),
            BasicGetOptions { no_ack: false },
        )
        .await
        .expect("get")
        .expect("a message");
    assert_eq!(message.delivery.properties.expiration(), &None);
    message
        .delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    let parking = queue.topology().parking_queue();
    let arrived = wait_until(Duration::from_secs(10), || async {
        queue.ready(&parking).await == 1
    })
    .await;
    assert!(
        arrived,
        "the broker dead-lettered it into the parking queue"
    );
    let expired = wait_until(Duration::from_secs(20), || async {
        queue.ready(&parking).await == 0
    })
    .await;
    let _ = connection.close(200, "done".into()).await;
    assert!(expired, "the parking queue's TTL expired it");
}

/// A parking queue declared by an earlier version (without the TTL) cannot
/// be changed by a declaration: `declare` says so and declares the rest,
/// every time, instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parking_queue_declared_without_the_ttl_is_reported_and_the_rest_declared() {
    let queue = TestQueue::new("1s");
    let connection = queue.settings.connect("test-setup").await.expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .queue_declare(
            queue.topology().parking_queue().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the queue as an earlier version declared it");
    for _ in 0..2 {
        assert_eq!(
            queue
                .topology()
                .declare(&connection)
                .await
                .expect("declare"),
            ParkingTtl::Missing
        );
    }
    assert!(connection.status().connected(), "the connection survives");
    // The rest of the topology is there.
    assert_eq!(queue.ready(queue.topology().work_queue()).await, 0);
    assert_eq!(
        queue
            .ready(&queue.topology().retry_queue(Duration::from_secs(1)))
            .await,
        0
    );
    queue.publish(&[b"REFNO=1".to_vec()]).await;
    assert_eq!(queue.ready(queue.topology().work_queue()).await, 1);
    let _ = connection.close(200, "done".into()).await;
}

/// `serve` and `intake` refuse to start without a usable seal key file,
/// naming the setting; a processor-style secret is not a seal key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_refuses_to_start_without_a_seal_key_file() {
    let queue = TestQueue::new("200ms");
    let dir = tempfile::tempdir().expect("temp dir");
    let processor_style = dir.path().join("seal.keys");
    std::fs::write(&processor_style, "k1 ipn-reconciler-TEST-ONLY-2026-key\n").expect("write");
    let base = || -> Vec<(&'static str, String)> {
        let mut env: Vec<_> = queue
            .env()
            .into_iter()
            .chain(key_env())
            .filter(|(name, _)| *name != "IPN_SEAL_KEYS_FILE")
            .collect();
        env.push(("IPN_HTTP_ADDR", "127.0.0.1:0".into()));
        env.push(("IPN_INTAKE_ADDR", "127.0.0.1:0".into()));
        env
    };
    for command in ["serve", "intake"] {
        let (ok, _, stderr) = run_cli(vec![command.into()], base()).await;
        assert!(!ok, "{command} refused");
        assert!(
            stderr.contains("`seal-key-file` is required") && stderr.contains("IPN_SEAL_KEYS_FILE"),
            "{command}: {stderr}"
        );
        let mut env = base();
        env.push(("IPN_SEAL_KEYS_FILE", processor_style.display().to_string()));
        let (ok, _, stderr) = run_cli(vec![command.into()], env).await;
        assert!(!ok, "{command} refused");
        assert!(
            stderr.contains("seal-key-file") && stderr.contains("64 hexadecimal digits"),
            "{command}: {stderr}"
        );
        assert!(!stderr.contains("TEST-ONLY-2026"), "no key shown: {stderr}");
    }
}
