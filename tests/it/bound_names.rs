//! Field names are bound (issue 21, Deliver 5), through the real queue,
//! worker and PostgreSQL: a signed body whose flag was renamed
//! (`TEST_ORDER[]`), swapped with `GIFT_ORDER`, or sent twice still
//! verifies (the signature covers values, not names), and is parked as
//! malformed, never applied, with or without `expected-fields`; the
//! genuine copy arriving next is applied as if nothing had come before.

use std::time::Duration;

use lapin::types::AMQPValue;

use crate::helpers::TestDb;
use crate::helpers::amqp::{
    RunningWorker, TestQueue, count, import_fixture_orders, pipeline_config, read, test_key,
    wait_until,
};
use crate::helpers::repo_path;
use ipn_reconciler::domain::OrderState;
use ipn_reconciler::ipn::{Algorithm, FormBody, FormLimits, SignaturePolicy, sign, verify};
use ipn_reconciler::pipeline::PipelineConfig;
use ipn_reconciler::store::Store;

fn fixture(name: &str) -> Vec<u8> {
    read(&repo_path(&format!("fixtures/ipn/{name}")))
        .trim_ascii_end()
        .to_vec()
}

/// `body` with the names of `renames` changed at once (`(from, to)`),
/// values and signatures untouched: what whoever holds one signed body can
/// do.
fn renamed(body: &[u8], renames: &[(&str, &str)]) -> Vec<u8> {
    let form = FormBody::parse(body, &FormLimits::default()).expect("parses");
    let mut out = FormBody::default();
    for (name, value) in form.pairs() {
        let name = renames
            .iter()
            .find(|(from, _)| *from == name)
            .map_or(name, |(_, to)| *to);
        out.push(name, value);
    }
    out.encode().into_bytes()
}

/// Fixture 05 (SHOP-1002, COMPLETE) with `FRAUD_STATUS=DENIED`, signed
/// again as the processor would.
fn denied() -> Vec<u8> {
    let form = FormBody::parse(
        &fixture("05-shop-1002-complete.txt"),
        &FormLimits::default(),
    )
    .expect("parses");
    let mut edited = FormBody::default();
    for (name, value) in form.pairs() {
        edited.push(
            name,
            if name == "FRAUD_STATUS" {
                "DENIED"
            } else {
                value
            },
        );
    }
    sign(
        &edited,
        &test_key(),
        &[Algorithm::Sha3_256, Algorithm::Sha256],
    )
    .expect("sign")
    .encode()
    .into_bytes()
}

/// The `x-park-reason` of every message in the parking queue, sorted.
async fn park_reasons(queue: &TestQueue) -> Vec<String> {
    let mut reasons: Vec<String> = queue
        .browse(&queue.topology().parking_queue())
        .await
        .into_iter()
        .filter_map(|(properties, _)| {
            match properties
                .headers()
                .as_ref()?
                .inner()
                .get("x-park-reason")?
            {
                AMQPValue::LongString(text) => {
                    Some(String::from_utf8_lossy(text.as_bytes()).into_owned())
                }
                _ => None,
            }
        })
        .collect();
    reasons.sort();
    reasons
}

async fn status(store: &Store, order_ref: &str) -> OrderState {
    store
        .order(order_ref)
        .await
        .expect("read")
        .expect("order")
        .status
}

/// One run against a fresh database and queue, with `expected_fields`.
async fn tricked_copies_are_parked_and_the_genuine_ones_apply(expected_fields: &[&str]) {
    let db = TestDb::new();
    let store = db.store().await;
    import_fixture_orders(&store).await;
    let queue = TestQueue::new("1s");
    queue.declare().await;
    let config = PipelineConfig {
        expected_fields: expected_fields.iter().map(|f| (*f).to_owned()).collect(),
        ..pipeline_config()
    };
    let worker = RunningWorker::spawn_with(store.clone(), &queue, config, |_| {});

    // A test order (SHOP-1008), a denied payment (SHOP-1002), a real
    // payment (SHOP-1001), as the processor signed them.
    let test_order = fixture("14-shop-1008-test-order.txt");
    let denied = denied();
    let real = fixture("03-shop-1001-complete.txt");
    let tricked = [
        renamed(&test_order, &[("TEST_ORDER", "TEST_ORDER[]")]),
        renamed(
            &test_order,
            &[("GIFT_ORDER", "TEST_ORDER"), ("TEST_ORDER", "GIFT_ORDER")],
        ),
        renamed(&denied, &[("FRAUD_STATUS", "FRAUD_STATUS[]")]),
        renamed(
            &denied,
            &[
                ("GIFT_ORDER", "FRAUD_STATUS"),
                ("FRAUD_STATUS", "GIFT_ORDER"),
            ],
        ),
        // A second ORDERSTATUS (ORDERNO's value under its name).
        renamed(&real, &[("ORDERNO", "ORDERSTATUS")]),
        renamed(&real, &[("TEST_ORDER", "TEST_ORDER[]")]),
    ];
    // Each still verifies but the repeated ORDERSTATUS, which no reader
    // can group as PHP would.
    let ring =
        ipn_reconciler::keys::read_key_ring(&repo_path("fixtures/keys/test.keys")).expect("keys");
    for (i, body) in tricked.iter().enumerate() {
        let form = FormBody::parse(body, &FormLimits::default()).expect("parses");
        assert_eq!(
            verify(&form, &ring, &SignaturePolicy::default()).is_ok(),
            i != 4,
            "copy #{i}"
        );
    }

    queue.publish(&tricked).await;
    let parking = queue.topology().parking_queue();
    let parked = wait_until(Duration::from_secs(30), || async {
        worker.metrics.handled() >= tricked.len() as u64
            && queue.ready(&parking).await == tricked.len() as u32
    })
    .await;
    assert!(
        parked,
        "every tricked copy parked:\n{}",
        worker.metrics.encode()
    );
    assert_eq!(
        park_reasons(&queue).await,
        [
            "malformed:misplaced_field:FRAUD_STATUS",
            "malformed:misplaced_field:TEST_ORDER",
            "malformed:renamed_field:FRAUD_STATUS",
            "malformed:renamed_field:TEST_ORDER",
            "malformed:renamed_field:TEST_ORDER",
            "malformed:repeated_field:ORDERSTATUS",
        ],
        "with expected fields {expected_fields:?}"
    );
    // Never applied: the orders are as imported, nothing in their ledgers.
    for order_ref in ["SHOP-1008", "SHOP-1002", "SHOP-1001"] {
        let order = store.order(order_ref).await.expect("read").expect("order");
        assert_eq!(order.status, OrderState::Pending, "{order_ref}");
        assert!(order.events.is_empty(), "{order_ref}: {:?}", order.events);
        assert!(order.payments.is_empty(), "{order_ref}");
    }

    // The genuine copies, next: applied as if nothing had come before.
    queue
        .publish(&[test_order.clone(), denied.clone(), real.clone()])
        .await;
    let work = queue.topology().work_queue().to_owned();
    let settled = wait_until(Duration::from_secs(30), || async {
        worker.metrics.handled() >= tricked.len() as u64 + 3 && queue.ready(&work).await == 0
    })
    .await;
    let metrics = worker.metrics.encode();
    worker.stop().await;
    assert!(settled, "{metrics}");
    assert_eq!(
        status(&store, "SHOP-1008").await,
        OrderState::Pending,
        "a test order never pays a real one"
    );
    assert_eq!(status(&store, "SHOP-1002").await, OrderState::Suspect);
    let paid = store
        .order("SHOP-1001")
        .await
        .expect("read")
        .expect("order");
    assert_eq!(
        (paid.status, paid.paid.as_str()),
        (OrderState::Paid, "107.00")
    );
    assert_eq!(
        count(
            &db.url,
            "SELECT count(*) FROM review_items WHERE kind = 'conflicting_copy'"
        )
        .await,
        0,
        "no tricked copy was counted, so the genuine ones conflict with nothing"
    );
    assert_eq!(queue.ready(&parking).await, tricked.len() as u32);
}

#[tokio::test(flavor = "multi_thread")]
async fn tricked_copies_are_parked_without_expected_fields() {
    tricked_copies_are_parked_and_the_genuine_ones_apply(&[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tricked_copies_are_parked_with_expected_fields() {
    tricked_copies_are_parked_and_the_genuine_ones_apply(&["TEST_ORDER", "FRAUD_STATUS"]).await;
}
