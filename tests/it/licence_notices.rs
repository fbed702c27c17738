//! Licence change notifications (LCN, issue 21 Deliver 3) against the real
//! RabbitMQ and PostgreSQL: the intake's `lcn-path` answers its GET probe,
//! answers a verified LCN with the LCN read receipt only once it is
//! durably queued (sealed, marked `x-notice-kind: lcn`), refuses what is
//! not one; the worker verifies and reads it, acknowledges it and records
//! nothing of it yet; and its personal and card data are in no queue, log
//! or table.

use std::time::Duration;

use lapin::types::AMQPValue;

use crate::helpers::amqp::{RunningWorker, TestQueue, count, read, run_cli, seal_keys, wait_until};
use crate::helpers::daemon::Daemon;
use crate::helpers::licence::{CARD_DATA, form, holds_card_data, lcn_fields, signed, signed_lcn};
use crate::helpers::{TestDb, dump_all_text, personal_data, repo_path};
use ipn_reconciler::app::{AppConfig, Application};
use ipn_reconciler::domain::BodyDigest;
use ipn_reconciler::ipn::{Algorithm, KeyRing, ReceiptDate, ReceiptFormat, licence_read_receipt};
use ipn_reconciler::metrics::Metrics;
use ipn_reconciler::queue::{MessageMeta, SEALED_CONTENT_TYPE};
use ipn_reconciler::secret::SecretUrl;
use ipn_reconciler::settings::{
    BrokerSection, IntakeSection, NotificationSection, PositiveDuration, Settings,
};
use tokio_util::sync::CancellationToken;

/// The standalone intake in this process, MD5 accepted, until dropped.
struct RunningIntake {
    base: String,
    metrics: Metrics,
    stop: CancellationToken,
}

impl Drop for RunningIntake {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl RunningIntake {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

async fn start(settings: Settings) -> RunningIntake {
    let settings = Settings {
        notifications: NotificationSection {
            allow_md5: true,
            ..settings.notifications
        },
        ..settings
    };
    let loaded = settings.loaded().expect("settings");
    let mut config = AppConfig::intake_with_keys(&loaded, ring()).expect("intake config");
    config.ops_addr = None;
    let app = Application::build(config).await.expect("intake binds");
    let base = format!("http://{}", app.intake_addr().expect("intake address"));
    let metrics = app.metrics().clone();
    let stop = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(stop.clone().cancelled_owned()));
    RunningIntake {
        base,
        metrics,
        stop,
    }
}

fn ring() -> KeyRing {
    ipn_reconciler::keys::read_key_ring(&repo_path("fixtures/keys/test.keys")).expect("keys")
}

async fn post(url: &str, body: Vec<u8>) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    (status, response.text().await.expect("text"))
}

fn has_receipt(text: &str) -> bool {
    text.contains("<sig") || text.contains("<EPAYMENT>")
}

/// The DATE of a receipt (between `marker` and `end`).
fn receipt_date(receipt: &str, marker: &str, end: char) -> ReceiptDate {
    let start = receipt.find(marker).expect("marker") + marker.len();
    let text: String = receipt[start..].chars().take_while(|c| *c != end).collect();
    ReceiptDate::parse(&text).expect("YmdHis")
}

fn header(properties: &lapin::BasicProperties, name: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        _ => None,
    }
}

/// The fields of an LCN with `edit` applied (`None` removes).
fn edited(edit: &[(&str, Option<&str>)]) -> Vec<(&'static str, String)> {
    lcn_fields("TOF6T8VPY3", "ACTIVE", false)
        .into_iter()
        .filter_map(
            |(name, value)| match edit.iter().find(|(n, _)| *n == name) {
                Some((_, None)) => None,
                Some((_, Some(v))) => Some((name, (*v).to_owned())),
                None => Some((name, value)),
            },
        )
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_lcn_is_answered_with_its_receipt_once_queued_and_refused_when_it_is_not_one() {
    let queue = TestQueue::new("1s");
    queue.declare().await;
    let intake = start(queue.daemon_settings()).await;
    let work = queue.topology().work_queue().to_owned();

    // The processor checks the URL with a GET when it is saved.
    for path in ["/lcn", "/lcn/"] {
        let response = reqwest::get(intake.url(path)).await.expect("GET");
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let text = response.text().await.expect("text");
        assert!(text.contains("licence change notifications"), "{text}");
    }

    // A verified LCN: its receipt, over LICENSE_CODE, EXPIRATION_DATE and
    // DATE, in the algorithm that verified it, byte for byte; and by the
    // time the answer is read the message is in the queue (the intake
    // answers only after the broker's confirm).
    let key = ring().current().secret.clone();
    let body = signed_lcn("TOF6T8VPY3", "ACTIVE", false);
    let (status, receipt) = post(&intake.url("/lcn"), body.clone()).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(queue.ready(&work).await, 1, "queued before the answer");
    let date = receipt_date(&receipt, "date=\"", '"');
    let expected = licence_read_receipt(
        &form(&body),
        &key,
        ReceiptFormat::Sig(Algorithm::Sha3_256),
        date,
    )
    .expect("receipt");
    assert_eq!(receipt, expected);
    // And an MD5-signed one (the legacy endpoints): `<EPAYMENT>`.
    let md5 = signed(
        &lcn_fields("XRILXB9ZI3", "EXPIRED", false),
        &[Algorithm::Md5],
    );
    let (status, receipt) = post(&intake.url("/lcn/"), md5.clone()).await;
    assert_eq!(status, 200, "{receipt}");
    let date = receipt_date(&receipt, "<EPAYMENT>", '|');
    assert_eq!(
        receipt,
        licence_read_receipt(&form(&md5), &key, ReceiptFormat::Epayment, date).expect("receipt")
    );
    assert_eq!(queue.ready(&work).await, 2);

    // Refused, without a receipt, never queued.
    let mut tampered = String::from_utf8(body.clone()).expect("utf-8");
    tampered = tampered.replace("STATUS=ACTIVE", "STATUS=EXPIRED");
    let ipn = read(&repo_path("fixtures/ipn/03-shop-1001-complete.txt"));
    let algorithms = [Algorithm::Sha3_256, Algorithm::Sha256];
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("/lcn", tampered.into_bytes(), 403, "invalid: "),
        (
            "/ipn",
            body.clone(),
            400,
            "malformed: a licence change notification (LICENSE_CODE): they go to POST /lcn\n",
        ),
        (
            "/lcn",
            ipn.trim_ascii_end().to_vec(),
            400,
            "malformed: not a licence change notification form: no LICENSE_CODE field",
        ),
        (
            "/lcn",
            signed(&edited(&[("EXPIRATION_DATE", None)]), &algorithms),
            400,
            "missing field EXPIRATION_DATE (the read receipt covers it)\n",
        ),
        (
            "/lcn",
            signed(&edited(&[("DATE_UPDATED", None)]), &algorithms),
            400,
            "missing field DATE_UPDATED\n",
        ),
        (
            "/lcn",
            {
                let mut fields = edited(&[]);
                for field in &mut fields {
                    if field.0 == "TEST" {
                        field.0 = "TEST[]";
                    }
                }
                signed(&fields, &algorithms)
            },
            400,
            "malformed: field `TEST` appears under another form of its name",
        ),
    ];
    for (path, body, expected_status, expected_text) in cases {
        let (status, text) = post(&intake.url(path), body).await;
        assert_eq!(status, expected_status, "{path}: {text}");
        assert!(text.starts_with(expected_text), "{path}: {text}");
        assert!(!has_receipt(&text), "{text}");
        for value in ["TOF6T8VPY3", "John", "johnsmith", CARD_DATA[0]] {
            assert!(!text.contains(value), "no value echoed: {text}");
        }
    }
    assert_eq!(queue.ready(&work).await, 2, "nothing refused is queued");

    // The queued messages: sealed, marked as LCNs, the bodies as posted.
    let sealer = seal_keys();
    for (properties, sealed) in queue.browse(&work).await {
        let content_type = properties.content_type().as_ref().map(|t| t.to_string());
        assert_eq!(content_type.as_deref(), Some(SEALED_CONTENT_TYPE));
        assert_eq!(header(&properties, "x-notice-kind").as_deref(), Some("lcn"));
        let plain = sealer
            .open(
                &MessageMeta::from_properties(&properties, chrono::Utc::now()),
                &sealed,
            )
            .expect("opens");
        assert!(
            plain.as_slice() == body.as_slice() || plain.as_slice() == md5.as_slice(),
            "the body as posted"
        );
        assert_eq!(
            properties.message_id().as_ref().map(|id| id.to_string()),
            Some(BodyDigest::of(&plain).to_string())
        );
    }
    let metrics = intake.metrics.encode();
    assert!(
        metrics.contains("ipn_intake_requests_total{result=\"queued\"} 2"),
        "{metrics}"
    );
}

/// No confirm, no receipt: with the broker unreachable an LCN gets 503,
/// and the processor retries.
#[tokio::test(flavor = "multi_thread")]
async fn an_lcn_gets_no_receipt_while_the_broker_is_unreachable() {
    let queue = TestQueue::new("1s");
    let settings = Settings {
        broker: BrokerSection {
            amqp_url: SecretUrl::new("amqp://guest:guest@127.0.0.1:1/%2f"),
            ..queue.daemon_settings().broker
        },
        intake: IntakeSection {
            confirm_timeout: PositiveDuration::new(Duration::from_secs(600)).expect("positive"),
            ..queue.daemon_settings().intake
        },
        ..queue.daemon_settings()
    };
    let intake = start(settings).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let response = client
        .post(intake.url("/lcn"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(signed_lcn("TOF6T8VPY3", "ACTIVE", false))
        .send()
        .await
        .expect("an answer, without waiting for the confirm timeout");
    assert_eq!(response.status().as_u16(), 503);
    assert!(!has_receipt(&response.text().await.expect("text")));
}

/// The worker verifies and reads an LCN, acknowledges it (parks nothing
/// valid, records nothing yet), counts it by test flag; a malformed one is
/// parked as any malformed notification.
#[tokio::test(flavor = "multi_thread")]
async fn the_worker_acknowledges_a_verified_lcn_and_parks_a_malformed_one() {
    let db = TestDb::new();
    let store = db.store().await;
    let queue = TestQueue::new("1s");
    queue.declare().await;
    let worker = RunningWorker::spawn(store.clone(), &queue, |_| {});
    let algorithms = [Algorithm::Sha3_256, Algorithm::Sha256];
    queue
        .publish(&[
            signed_lcn("TOF6T8VPY3", "PAST DUE", false),
            signed_lcn("XRILXB9ZI3", "EXPIRED", true),
            signed(&edited(&[("DATE_UPDATED", None)]), &algorithms),
        ])
        .await;
    let parking = queue.topology().parking_queue();
    let work = queue.topology().work_queue().to_owned();
    let settled = wait_until(Duration::from_secs(30), || async {
        worker.metrics.handled() >= 3
            && queue.ready(&work).await == 0
            && queue.ready(&parking).await == 1
    })
    .await;
    let metrics = worker.metrics.encode();
    worker.stop().await;
    assert!(settled, "{metrics}");
    for series in [
        "ipn_licence_notices_total{test=\"false\"} 1",
        "ipn_licence_notices_total{test=\"true\"} 1",
        "ipn_parked_total{reason=\"malformed\"} 1",
        "ipn_signatures_total{stage=\"worker\",algorithm=\"sha3-256\",result=\"valid\"} 3",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
    let parked = queue.browse(&parking).await;
    assert_eq!(
        header(&parked[0].0, "x-park-reason").as_deref(),
        Some("malformed:missing_field:DATE_UPDATED")
    );
    // Only the refusal is recorded (its digest and reason), as for any
    // malformed notification; the valid LCNs are not stored yet.
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM notifications").await,
        1
    );
}

/// The privacy scan for LCNs: posted to `serve`'s intake and published,
/// applied (acknowledged), parked or waiting, their names, e-mail, address,
/// phone and renewal card data are in no queue in clear, no log line and
/// no table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_lcns_personal_and_card_data_are_in_no_queue_log_or_table() {
    let db = TestDb::new();
    db.store().await;
    let queue = TestQueue::new("1s");
    queue.declare().await;
    let mut daemon = Daemon::start(&db, &queue, &[]);
    let url = format!("http://{}/lcn", daemon.intake_addr().await);
    let ready = wait_until(Duration::from_secs(30), || async {
        daemon.ready_status().await == Some(200)
    })
    .await;
    assert!(ready, "ready; logs:\n{}", daemon.tail());

    let posted = [
        signed_lcn("TOF6T8VPY3", "ACTIVE", false),
        signed_lcn("XRILXB9ZI3", "CANCELED", true),
    ];
    for body in &posted {
        let (status, receipt) = post(&url, body.clone()).await;
        assert_eq!(status, 200, "{receipt}");
    }
    // A malformed one, published as another program would (sealed): the
    // worker parks it.
    let dir = tempfile::tempdir().expect("temp dir");
    let malformed = dir.path().join("malformed-lcn.txt");
    std::fs::write(
        &malformed,
        signed(&edited(&[("DATE_UPDATED", None)]), &[Algorithm::Sha3_256]),
    )
    .expect("write");
    let (ok, stdout, stderr) = run_cli(
        vec![
            "publish".into(),
            "--key-file".into(),
            repo_path("fixtures/keys/test.keys").display().to_string(),
            malformed.display().to_string(),
        ],
        queue.env(),
    )
    .await;
    assert!(ok, "publish: {stdout}{stderr}");
    let parking = queue.topology().parking_queue();
    let settled = wait_until(Duration::from_secs(30), || async {
        let metrics = daemon
            .get("/metrics")
            .await
            .map(|(_, m)| m)
            .unwrap_or_default();
        metrics.contains("ipn_licence_notices_total{test=\"false\"} 1")
            && metrics.contains("ipn_licence_notices_total{test=\"true\"} 1")
            && queue.ready(&parking).await == 1
    })
    .await;
    assert!(settled, "logs:\n{}", daemon.tail());
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(40)).await, Some(0));

    // The detector finds what it must in the bodies themselves.
    let personal = personal_data();
    let found = |text: &str| -> Vec<String> {
        let decoded = text.replace('+', " ").replace("%40", "@");
        let mut found: Vec<String> = personal
            .iter()
            .filter(|item| decoded.contains(item.as_str()))
            .cloned()
            .collect();
        if holds_card_data(text) {
            found.push("renewal card data".into());
        }
        found
    };
    for body in &posted {
        let leaks = found(&String::from_utf8_lossy(body));
        assert!(
            leaks.contains(&"johnsmith@email.com".to_owned()),
            "{leaks:?}"
        );
        assert!(leaks.contains(&"renewal card data".to_owned()), "{leaks:?}");
    }

    // Logs: a line per LCN, with its references, nothing personal.
    let logs = daemon.logs();
    assert!(
        logs.contains("licence change notification verified"),
        "{logs}"
    );
    assert!(logs.contains("TOF6T8VPY3"), "references are logged");
    assert_eq!(found(&logs), Vec::<String>::new(), "logs:\n{logs}");

    // Queues: the parked LCN, sealed, marked, nothing in clear.
    for name in queue.all_queues() {
        for (properties, body) in queue.browse(&name).await {
            assert_eq!(
                properties
                    .content_type()
                    .as_ref()
                    .map(|t| t.to_string())
                    .as_deref(),
                Some(SEALED_CONTENT_TYPE),
                "{name}"
            );
            assert_eq!(header(&properties, "x-notice-kind").as_deref(), Some("lcn"));
            assert_eq!(found(&String::from_utf8_lossy(&body)), Vec::<String>::new());
            let shown = format!("{properties:?}");
            assert_eq!(found(&shown), Vec::<String>::new(), "{shown}");
        }
    }

    // Tables: nothing personal at rest.
    for (table, column, value) in dump_all_text(&db.url).await {
        assert_eq!(
            found(&value),
            Vec::<String>::new(),
            "{table}.{column} = {value}"
        );
    }
}
