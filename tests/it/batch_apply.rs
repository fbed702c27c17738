//! The batched apply means exactly what applying one by one means: the same
// Amounts in cents are written `units_cents` (100_00 is 100.00 EUR).
#![allow(clippy::inconsistent_digit_grouping)]
//! seeded streams of notifications (payments under several references,
//! refunds, reversals, redeliveries, repeats of one identity, late repeats,
//! conflicting copies, unknown orders) are applied one by one to one
//! database and in batches of other sizes to others, and everything
//! stored is compared.
//!
//! One by one is `Store::apply`, a batch of one: both sides run the same
//! code, so what this compares is where that code carries what an earlier
//! notification did. In a batch of one it is carried by the database (the
//! rows the next batch reads back); in a larger batch, in memory (roles,
//! histories of identities and facts of orders staged from one item to
//! the next, and written once). A step that forgets or misreads what the
//! batch staged stores something one by one does not.

use chrono::{NaiveDate, Utc};
use ipn_reconciler::domain::{
    BodyDigest, EventIdentity, Money, PaymentEvent, ReconcilePolicy, StatusField,
};
use ipn_reconciler::ipn::{Algorithm, KeyId};
use ipn_reconciler::simulate::rng::Rng;
use ipn_reconciler::store::{BatchItem, NewOrder, Store};

use crate::helpers::TestDb;

/// One event of a stream: `identity` names the notice (repeats share it),
/// `body` the delivery (redeliveries share it).
#[allow(clippy::too_many_arguments)]
fn event(
    order_ref: &str,
    refno: &str,
    status: &str,
    minor: i64,
    identity: u64,
    body: u64,
    day: u32,
    renamed: bool,
) -> PaymentEvent {
    let digest = BodyDigest::of(format!("body-{body}").as_bytes());
    let identity = BodyDigest::of(format!("identity-{identity}").as_bytes());
    PaymentEvent {
        carries_message_id: false,
        digest,
        identity: EventIdentity::parse(identity.as_str()).expect("identity"),
        // A renamed copy says another reference with the same values.
        processor_ref: if renamed {
            "1".to_owned()
        } else {
            refno.to_owned()
        },
        merchant_ref: Some(order_ref.to_owned()),
        status: StatusField::parse(status),
        fraud_denied: false,
        test_order: false,
        amount: Money::iso(&format!("{}.{:02}", minor / 100, minor.abs() % 100), "EUR")
            .expect("amount"),
        payment_method: None,
        sale_date: None,
        payment_date: None,
        complete_date: None,
        ipn_date: NaiveDate::from_ymd_opt(2026, 11, day).and_then(|d| d.and_hms_opt(8, 0, 0)),
        key_id: KeyId::parse("test-2026").expect("key id"),
        algorithm: Algorithm::Sha3_256,
        customer_pseudonym: None,
        pan_fields: Vec::new(),
        licences: Vec::new(),
        chargeback: None,
        money: Default::default(),
    }
}

/// A seeded stream over five orders of 100.00 EUR (and one that does not
/// exist), with every kind of delivery the store must tell apart.
fn stream(seed: u64, len: usize) -> Vec<PaymentEvent> {
    let mut rng = Rng::new(seed);
    let mut events: Vec<PaymentEvent> = Vec::new();
    let mut next_identity = 0u64;
    let mut next_body = 0u64;
    for _ in 0..len {
        let choice = rng.below(10);
        if choice < 2 && !events.is_empty() {
            // Redelivery of the same bytes, or another delivery of the
            // same notice (retry, copy), sometimes days later or renamed.
            let earlier = events[rng.index(events.len())].clone();
            if choice == 0 {
                events.push(earlier);
            } else {
                next_body += 1;
                let day = if rng.below(2) == 0 { 5 } else { 9 };
                let mut repeat = earlier.clone();
                repeat.digest = BodyDigest::of(format!("body-{next_body}").as_bytes());
                repeat.ipn_date =
                    NaiveDate::from_ymd_opt(2026, 11, day).and_then(|d| d.and_hms_opt(8, 0, 0));
                if rng.below(4) == 0 {
                    repeat.processor_ref = "1".to_owned();
                }
                events.push(repeat);
            }
            continue;
        }
        next_identity += 1;
        next_body += 1;
        let order = format!("B-{}", rng.below(6));
        let refno = ["111", "222", "333"][rng.index(3)];
        let (status, minor) = match rng.below(6) {
            0 => ("PAYMENT_AUTHORIZED", 100_00),
            1 | 2 => ("COMPLETE", 100_00),
            3 => ("REFUND", -(rng.range(1, 70) as i64) * 100),
            4 => ("REVERSED", -100_00),
            _ => ("CANCELED", 100_00),
        };
        events.push(event(
            &order,
            refno,
            status,
            minor,
            next_identity,
            next_body,
            4,
            false,
        ));
    }
    events
}

async fn books(db: &TestDb) -> Store {
    let store = db.store().await;
    let orders: Vec<NewOrder> = (0..5)
        .map(|i| {
            NewOrder::new(
                &format!("B-{i}"),
                Money::iso("100.00", "EUR").expect("money"),
            )
            .expect("order")
        })
        .collect();
    store.import_orders(&orders).await.expect("import");
    store
}

/// Everything stored, with notifications named by their body digest (row
/// ids may differ), in a stable order. (Not the orders' `version`: a batch
/// writes an order once however many of its notifications it holds.)
async fn dump(db: &TestDb) -> Vec<String> {
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let queries = [
        "SELECT order_ref || ' ' || status || ' ' || paid_minor || ' ' || refunded_minor || ' ' \
         || charged_back_minor || ' ' || coalesce(processor_ref, '-') || ' ' || authorized || ' ' \
         || reversed || ' ' || canceled || ' ' || suspect || ' ' || mismatch \
         FROM orders ORDER BY order_ref",
        "SELECT o.order_ref || ' ' || p.processor_ref || ' ' || p.authorized || ' ' || p.paid_minor \
         || ' ' || p.refunded_minor || ' ' || p.reversed FROM payments p JOIN orders o ON o.id = p.order_id \
         ORDER BY 1",
        "SELECT n.body_sha256 || ' ' || n.outcome || ' ' || coalesce(n.reason, '-') || ' ' \
         || coalesce(n.identity, '-') || ' ' || coalesce(f.body_sha256, '-') \
         FROM notifications n LEFT JOIN notifications f ON f.id = n.repeat_of ORDER BY 1",
        "SELECT o.order_ref || ' ' || n.body_sha256 || ' ' || e.effect || ' ' || e.old_status || ' ' \
         || e.new_status || ' ' || e.reason FROM order_events e JOIN orders o ON o.id = e.order_id \
         JOIN notifications n ON n.id = e.notification_id ORDER BY e.id",
        "SELECT r.kind || ' ' || coalesce(r.order_ref, '-') || ' ' || coalesce(r.processor_ref, '-') \
         || ' ' || r.status || ' ' || coalesce(n.body_sha256, '-') || ' ' || coalesce(r.resolution_note, '-') \
         FROM review_items r LEFT JOIN notifications n ON n.id = r.notification_id ORDER BY 1",
        "SELECT o.order_ref || ' ' || n.body_sha256 || ' ' || m.processor_ref || ' ' || m.kind \
         || ' ' || m.amount_minor || ' ' || m.currency FROM money_movements m \
         JOIN orders o ON o.id = m.order_id JOIN notifications n ON n.id = m.notification_id \
         ORDER BY m.id",
    ];
    let mut lines = Vec::new();
    for query in queries {
        for row in client.query(query, &[]).await.expect(query) {
            let line: String = row.get(0);
            // Notification numbers in reasons and details name rows, which
            // may be numbered differently; the digests above say which.
            lines.push(strip_row_numbers(&line));
        }
        lines.push("--".to_owned());
    }
    lines
}

fn strip_row_numbers(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '#' {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
        }
    }
    out
}

/// Applies `events` to `store` in consecutive batches of `sizes`.
async fn apply_in_batches(
    store: &Store,
    events: &[PaymentEvent],
    sizes: &[usize],
    policy: &ReconcilePolicy,
) {
    let mut rest = events;
    for &size in sizes {
        let (batch, tail) = rest.split_at(size.min(rest.len()));
        let items: Vec<BatchItem> = batch
            .iter()
            .map(|event| BatchItem {
                event: event.clone(),
                received_at: Utc::now(),
            })
            .collect();
        let reports = store
            .apply_batch(&items, policy)
            .await
            .expect("apply batch");
        assert_eq!(reports.len(), batch.len());
        rest = tail;
    }
    assert!(rest.is_empty(), "the sizes cover the stream");
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_of_any_size_store_what_one_by_one_stores() {
    let policy = ReconcilePolicy::default();
    for seed in [1u64, 2, 3, 4] {
        let events = stream(seed, 80);
        let one_by_one = TestDb::new();
        let store = books(&one_by_one).await;
        for event in &events {
            store
                .apply(event, Utc::now(), &policy)
                .await
                .expect("apply one");
        }
        let expected = dump(&one_by_one).await;
        // Random sizes (a repeat, a redelivery or a handover sometimes in
        // the batch of what it follows, sometimes not), and the whole
        // stream as one batch (everything staged in memory).
        let mut rng = Rng::new(seed ^ 0xBA7C);
        let mut random = Vec::new();
        let mut left = events.len();
        while left > 0 {
            let size = (rng.range(1, 25) as usize).min(left);
            random.push(size);
            left -= size;
        }
        for sizes in [random, vec![events.len()]] {
            let batched = TestDb::new();
            let store = books(&batched).await;
            apply_in_batches(&store, &events, &sizes, &policy).await;
            let actual = dump(&batched).await;
            for (line, (want, got)) in expected.iter().zip(&actual).enumerate() {
                assert_eq!(got, want, "seed {seed}, line {line}, batches {sizes:?}");
            }
            assert_eq!(
                actual.len(),
                expected.len(),
                "seed {seed}, batches {sizes:?}"
            );
        }
    }
}

/// Two workers applying overlapping batches at once (the same orders, in
/// different orders within their batches) neither deadlock nor lose an
/// update: the result equals applying everything one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_on_the_same_orders_do_not_deadlock() {
    let policy = ReconcilePolicy::default();
    let events: Vec<PaymentEvent> = (0..200u64)
        .map(|i| {
            let order = format!("B-{}", i % 5);
            let refno = ["111", "222"][(i % 2) as usize];
            let (status, minor) = if i % 3 == 0 {
                ("REFUND", -1_00)
            } else {
                ("COMPLETE", 100_00)
            };
            event(&order, refno, status, minor, i + 1, i + 1, 4, false)
        })
        .collect();
    let db = TestDb::new();
    let store = books(&db).await;
    let (left, right): (Vec<_>, Vec<_>) = events
        .iter()
        .cloned()
        .partition(|e| e.digest.as_str() < "8");
    let run = |mut mine: Vec<PaymentEvent>, reverse: bool| {
        let store = store.clone();
        tokio::spawn(async move {
            if reverse {
                mine.reverse();
            }
            for chunk in mine.chunks(16) {
                let items: Vec<BatchItem> = chunk
                    .iter()
                    .map(|event| BatchItem {
                        event: event.clone(),
                        received_at: Utc::now(),
                    })
                    .collect();
                // Under contention a batch may hit a serialization failure;
                // the worker retries a failed batch, and so does this test.
                let mut attempts = 0;
                loop {
                    match store.apply_batch(&items, &policy).await {
                        Ok(_) => break,
                        Err(err) if err.is_transient() && attempts < 10 => attempts += 1,
                        Err(err) => panic!("batch failed: {err}"),
                    }
                }
            }
        })
    };
    let a = run(left, false);
    let b = run(right, true);
    a.await.expect("worker a");
    b.await.expect("worker b");

    let reference = TestDb::new();
    let one_by_one = books(&reference).await;
    for event in &events {
        one_by_one
            .apply(event, Utc::now(), &policy)
            .await
            .expect("apply");
    }
    for i in 0..5 {
        let order_ref = format!("B-{i}");
        let got = store.order(&order_ref).await.expect("read").expect("order");
        let want = one_by_one
            .order(&order_ref)
            .await
            .expect("read")
            .expect("order");
        assert_eq!(
            (got.status, got.paid, got.refunded),
            (want.status, want.paid, want.refunded),
            "{order_ref}"
        );
    }
}

/// The worker's fallback: a batch that fails for a permanent reason of one
/// notification (here a constraint the state machine does not know about,
/// added by the test, refuses the ledger row of one order) is applied one
/// by one, so the others are applied once and acked, never retried or
/// parked; only the one that cannot be written is retried, then parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_one_unwritable_notification_applies_the_others_once() {
    use crate::helpers::amqp::{
        RunningWorker, TestQueue, count, import_orders_csv, resigned, test_key, wait_until,
    };
    use std::time::Duration;

    const ORDERS: usize = 30;
    let db = TestDb::new();
    let store = db.store().await;
    let csv: String = std::iter::once("order_ref,amount,currency\n".to_owned())
        .chain((0..=ORDERS).map(|i| format!("FB-{i},107.00,EUR\n")))
        .collect();
    import_orders_csv(&store, &csv).await;
    // FB-0 is the one whose ledger row cannot be written.
    let poison = count(&db.url, "SELECT id FROM orders WHERE order_ref = 'FB-0'").await;
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "ALTER TABLE order_events ADD CONSTRAINT test_unwritable CHECK (order_id <> {poison})"
        ))
        .await
        .expect("constraint");

    let queue = TestQueue::new("100ms,200ms");
    queue.declare().await;
    let key = test_key();
    // The poison in the middle of the batch.
    let bodies: Vec<Vec<u8>> = (1..=ORDERS / 2)
        .chain([0])
        .chain(ORDERS / 2 + 1..=ORDERS)
        .map(|i| {
            resigned(
                "03-shop-1001-complete.txt",
                &format!("FB-{i}"),
                70_000_000 + i as u64,
                &key,
            )
        })
        .collect();
    queue.publish(&bodies).await;
    let worker = RunningWorker::spawn(store, &queue, |settings| {
        settings.batch_size = 64;
        settings.prefetch = 64;
        // Long enough for the whole stream to make one batch.
        settings.batch_wait = Duration::from_millis(500);
    });
    let parked = wait_until(Duration::from_secs(60), || async {
        queue.ready(&queue.topology().parking_queue()).await >= 1
    })
    .await;
    assert!(parked, "the unwritable notification is parked in the end");
    let metrics = worker.metrics.encode();
    worker.stop().await;

    assert_eq!(
        count(
            &db.url,
            "SELECT count(*) FROM orders WHERE status = 'paid' AND order_ref <> 'FB-0'"
        )
        .await,
        ORDERS as i64,
        "every other order is paid"
    );
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM order_events").await,
        ORDERS as i64,
        "each of the others applied exactly once"
    );
    assert_eq!(
        count(
            &db.url,
            "SELECT count(*) FROM orders WHERE order_ref = 'FB-0' AND status = 'pending'"
        )
        .await,
        1,
        "nothing of the unwritable one was written"
    );
    // Only the unwritable one went round the retry queues (once per
    // delay), and only it is parked.
    let retries: u64 = metrics
        .lines()
        .filter(|line| line.starts_with("ipn_retries_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(retries, 2, "retries:\n{metrics}");
    assert_eq!(queue.ready(&queue.topology().parking_queue()).await, 1);
    for retry_or_work in &queue.all_queues()[..3] {
        assert_eq!(queue.ready(retry_or_work).await, 0, "{retry_or_work}");
    }
}
