//! What `/metrics` of the real daemons exports for alerting: every counter
//! at zero from the start with its label sets, the queue gauges (moving
//! while no worker consumes, then when one does), and no database gauge on
//! the standalone intake.

use std::time::Duration;

use ipn_reconciler::domain::Outcome;
use ipn_reconciler::intake::IntakeResult;
use ipn_reconciler::queue::topology::delay_label;
use ipn_reconciler::worker::ParkKind;

use crate::helpers::TestDb;
use crate::helpers::amqp::{TestQueue, wait_until};
use crate::helpers::daemon::Daemon;

/// The value of exactly `series` (name and labels) in `metrics`.
fn value<'a>(metrics: &'a str, series: &str) -> Option<&'a str> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
}

/// The samples of `family` (`name{...} value` lines).
fn samples<'a>(metrics: &'a str, family: &str) -> Vec<&'a str> {
    let prefix = format!("{family}{{");
    metrics
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .collect()
}

async fn metrics_of(daemon: &Daemon) -> String {
    let (status, body) = daemon.get("/metrics").await.expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits (bounded) until every series of `expected` has its value.
async fn wait_for_values(daemon: &Daemon, expected: &[(String, &str)]) -> String {
    let reached = wait_until(Duration::from_secs(30), || async {
        let metrics = metrics_of(daemon).await;
        expected
            .iter()
            .all(|(series, wanted)| value(&metrics, series) == Some(*wanted))
    })
    .await;
    let metrics = metrics_of(daemon).await;
    assert!(reached, "{expected:?} in\n{metrics}");
    metrics
}

fn queue_series(role: &str) -> String {
    format!("ipn_queue_messages{{queue=\"{role}\"}}")
}

const WORK_CONSUMERS: &str = "ipn_queue_consumers{queue=\"work\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_serve_exports_every_counter_at_zero_and_its_queues() {
    let db = TestDb::new();
    db.store().await;
    let queue = TestQueue::new("200ms,500ms");
    let daemon = Daemon::start(&db, &queue, &[("IPN_GAUGE_REFRESH_INTERVAL", "100ms")]);
    let ready = wait_until(Duration::from_secs(30), || async {
        matches!(daemon.get("/readyz").await, Some((200, _)))
    })
    .await;
    assert!(ready, "ready; logs:\n{}", daemon.logs());

    // Nothing was sent: every counter is there, at zero.
    let metrics = metrics_of(&daemon).await;
    let mut zeros: Vec<String> = Vec::new();
    zeros.extend(
        Outcome::ALL.map(|outcome| format!("ipn_notifications_total{{outcome=\"{outcome}\"}}")),
    );
    zeros.extend(
        ParkKind::ALL
            .iter()
            .map(|kind| format!("ipn_parked_total{{reason=\"{kind}\"}}")),
    );
    zeros.extend(
        queue
            .topology()
            .retry_delays()
            .delays()
            .iter()
            .map(|delay| format!("ipn_retries_total{{delay=\"{}\"}}", delay_label(*delay))),
    );
    zeros.extend(IntakeResult::ALL.iter().map(|result| {
        format!(
            "ipn_intake_requests_total{{result=\"{}\"}}",
            result.as_str()
        )
    }));
    for stage in ["intake", "worker"] {
        for (algorithm, result) in [
            ("sha3-256", "valid"),
            ("sha256", "mismatch"),
            ("none", "unsigned"),
            ("md5", "md5_not_allowed"),
        ] {
            zeros.push(format!(
                "ipn_signatures_total{{stage=\"{stage}\",algorithm=\"{algorithm}\",result=\"{result}\"}}"
            ));
        }
    }
    zeros.push("ipn_pan_detections_total".to_owned());
    for test in ["false", "true"] {
        zeros.push(format!("ipn_licence_notices_total{{test=\"{test}\"}}"));
    }
    for series in &zeros {
        assert_eq!(value(&metrics, series), Some("0"), "{series} in\n{metrics}");
    }
    assert!(
        value(&metrics, "ipn_retries_total{delay=\"200ms\"}").is_some()
            && value(&metrics, "ipn_retries_total{delay=\"1s\"}").is_none(),
        "the retry delays are the configured ones: {metrics}"
    );
    let signatures = samples(&metrics, "ipn_signatures_total");
    assert_eq!(signatures.len(), 28, "{signatures:#?}");
    assert!(signatures.iter().all(|line| line.ends_with(" 0")));
    assert_eq!(value(&metrics, "ipn_database_up"), Some("1"), "{metrics}");

    // The queues, read from the broker: empty, and the worker consumes.
    wait_for_values(
        &daemon,
        &[
            (queue_series("work"), "0"),
            (queue_series("retry_200ms"), "0"),
            (queue_series("retry_500ms"), "0"),
            (queue_series("parking"), "0"),
            (WORK_CONSUMERS.to_owned(), "1"),
            ("ipn_parking_queue_messages".to_owned(), "0"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intake_alone_has_no_database_gauge_and_sees_the_work_queue_wait_for_a_worker() {
    let queue = TestQueue::new("200ms");
    let intake =
        Daemon::start_command("intake", &queue, &[("IPN_GAUGE_REFRESH_INTERVAL", "100ms")]);
    let metrics = wait_for_values(
        &intake,
        &[
            (queue_series("work"), "0"),
            (WORK_CONSUMERS.to_owned(), "0"),
        ],
    )
    .await;
    assert!(!metrics.contains("ipn_database_up"), "{metrics}");
    assert!(
        !metrics.contains("ipn_review_oldest_open_age_seconds"),
        "{metrics}"
    );
    for result in IntakeResult::ALL {
        let series = format!(
            "ipn_intake_requests_total{{result=\"{}\"}}",
            result.as_str()
        );
        assert_eq!(
            value(&metrics, &series),
            Some("0"),
            "{series} in\n{metrics}"
        );
    }
    let signatures = samples(&metrics, "ipn_signatures_total");
    assert_eq!(signatures.len(), 14, "{signatures:#?}");
    assert!(
        signatures
            .iter()
            .all(|line| line.contains("stage=\"intake\"") && line.ends_with(" 0")),
        "{signatures:#?}"
    );
    assert!(
        samples(&metrics, "ipn_notifications_total").is_empty(),
        "{metrics}"
    );

    // Unsigned bodies wait in the work queue: no one consumes it.
    let bodies: Vec<Vec<u8>> = (0..3)
        .map(|i| format!("REFNO={i}&IPN_DATE=20261130120000").into_bytes())
        .collect();
    queue.publish(&bodies).await;
    wait_for_values(
        &intake,
        &[
            (queue_series("work"), "3"),
            (WORK_CONSUMERS.to_owned(), "0"),
        ],
    )
    .await;

    // A worker comes: it consumes them (and parks them, unsigned), and the
    // intake sees it happen.
    let db = TestDb::new();
    db.store().await;
    let serve = Daemon::start(&db, &queue, &[]);
    let consumed = wait_until(Duration::from_secs(30), || async {
        let metrics = metrics_of(&intake).await;
        value(&metrics, WORK_CONSUMERS) == Some("1")
            && value(&metrics, &queue_series("work")) == Some("0")
            && value(&metrics, &queue_series("parking")) == Some("3")
            && value(&metrics, "ipn_parking_queue_messages") == Some("3")
    })
    .await;
    assert!(
        consumed,
        "{}\nserve logs:\n{}",
        metrics_of(&intake).await,
        serve.logs()
    );
}
