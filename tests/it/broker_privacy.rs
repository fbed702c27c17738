//! Nothing personal in clear in the broker: bodies are sealed by the intake
//! and `publish`, stay sealed in the retry and parking queues, a body with a
//! card number is kept in no queue at all, plain bodies from other
//! programs are still applied, and a seal that does not open is parked as
//! malformed, never applied. Against the real RabbitMQ and PostgreSQL.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;

use crate::helpers::amqp::{
    RunningWorker, SEAL_KEYS, TestQueue, count, import_fixture_orders, pipeline_config, read,
    run_cli, seal_keys, test_key, wait_until,
};
use crate::helpers::licence::{holds_card_data, signed_lcn};
use crate::helpers::{TestDb, fixture_files, personal_data, repo_path};
use ipn_reconciler::app::{AppConfig, Application};
use ipn_reconciler::domain::{BodyDigest, OrderState, contains_pan};
use ipn_reconciler::ipn::{Algorithm, FormBody, FormLimits, sign};
use ipn_reconciler::metrics::Metrics;
use ipn_reconciler::queue::{CONTENT_TYPE, MessageMeta, Publisher, SEALED_CONTENT_TYPE, Sealer};
use ipn_reconciler::settings::Settings;
use ipn_reconciler::settings::{BrokerSection, DatabaseSection, WorkerSection};
use tokio_util::sync::CancellationToken;

/// A seal key that the fixtures' seal key file does not hold: a key
/// retired from it too early.
const RETIRED_SEAL_KEY: &str =
    "test-seal-2024 5d1b3c0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c\n";

/// A card number that passes the Luhn check (the test card of most brands).
const PAN: &str = "4111111111111111";

/// A fixture with some fields replaced and others appended, signed again
/// with the current test key.
fn edited(fixture: &str, replace: &[(&str, &str)], append: &[(&str, &str)]) -> Vec<u8> {
    let body = read(&repo_path(&format!("fixtures/ipn/{fixture}")));
    let form = FormBody::parse(&body, &FormLimits::default()).expect("fixture parses");
    let mut fields: Vec<_> = form
        .fields()
        .iter()
        .cloned()
        .map(|mut field| {
            if let Some((_, value)) = replace.iter().find(|(name, _)| *name == field.name) {
                field.value = (*value).to_owned();
            }
            field
        })
        .collect();
    for (name, value) in append {
        let mut field = fields[0].clone();
        field.name = (*name).to_owned();
        field.value = (*value).to_owned();
        fields.push(field);
    }
    sign(
        &FormBody::from_fields(fields),
        &test_key(),
        &[Algorithm::Sha3_256, Algorithm::Sha256],
    )
    .expect("sign")
    .encode()
    .into_bytes()
}

/// `text` as it appears in a form body (`application/x-www-form-urlencoded`).
fn form_encoded(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// The personal data strings (and card numbers) found in `bytes`, in clear
/// or form-encoded.
fn leaks(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut found: Vec<String> = personal_data()
        .into_iter()
        .filter(|item| text.contains(item.as_str()) || text.contains(&form_encoded(item)))
        .collect();
    let decoded = text.replace('+', " ").replace("%20", " ");
    if contains_pan(&text) || contains_pan(&decoded) || text.contains(PAN) {
        found.push("a card number".to_owned());
    }
    found
}

/// `serve` in this process (intake and worker), until `stop` is cancelled.
struct InProcessDaemon {
    intake_url: String,
    metrics: Metrics,
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl InProcessDaemon {
    async fn start(settings: Settings) -> Self {
        let loaded = settings.loaded().expect("settings");
        let mut config = AppConfig::serve(&loaded).expect("serve config");
        config.ops_addr = None;
        let app = Application::build(config).await.expect("binds");
        let intake_url = format!("http://{}/ipn", app.intake_addr().expect("intake address"));
        let metrics = app.metrics().clone();
        let stop = CancellationToken::new();
        let run = app.run_until_stopped(stop.clone().cancelled_owned());
        let handle = tokio::spawn(async move {
            run.await.expect("the daemon runs");
        });
        Self {
            intake_url,
            metrics,
            stop,
            handle,
        }
    }

    /// POSTs `body` as the processor does; returns the status.
    async fn post(&self, body: &[u8]) -> u16 {
        self.post_to(&self.intake_url, body).await
    }

    /// POSTs a licence change notification to the intake's `lcn-path`.
    async fn post_licence(&self, body: &[u8]) -> u16 {
        let url = self.intake_url.replace("/ipn", "/lcn");
        self.post_to(&url, body).await
    }

    async fn post_to(&self, url: &str, body: &[u8]) -> u16 {
        reqwest::Client::new()
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_vec())
            .send()
            .await
            .expect("POST")
            .status()
            .as_u16()
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(40), self.handle)
            .await
            .expect("the daemon stops within its deadline")
            .expect("daemon task");
    }
}

/// `ipn-reconciler publish` of `bodies` (written to files under `dir`),
/// sealed with the test seal key file given as `--seal-key-file`.
async fn publish_sealed(queue: &TestQueue, dir: &Path, bodies: &[(&str, &[u8])]) {
    let mut args = vec![
        "publish".to_owned(),
        "--seal-key-file".to_owned(),
        repo_path(SEAL_KEYS).display().to_string(),
    ];
    for (name, body) in bodies {
        let path = dir.join(name);
        std::fs::write(&path, body).expect("write body");
        args.push(path.display().to_string());
    }
    let (ok, stdout, stderr) = run_cli(args, queue.env()).await;
    assert!(ok, "publish: {stdout}{stderr}");
    assert!(
        stdout.contains(&format!("published {0} of {0}", bodies.len())),
        "{stdout}"
    );
}

fn header(properties: &BasicProperties, name: &str) -> Option<String> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        lapin::types::AMQPValue::LongString(value) => {
            Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
        }
        other => Some(format!("{other:?}")),
    }
}

/// The run of issue 9: bodies through the intake and `publish`, some
/// applied, some parked (a tampered signature, an unknown order, a
/// malformed body), some with a card number; one orphan waiting in a retry
/// queue and two bodies waiting in the work queue. Then every message of
/// every queue is read: all sealed, none with personal data or a card
/// number in clear, and none of the bodies with a card number anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_queue_holds_personal_data_or_a_card_number_in_clear_after_a_run() {
    let db = TestDb::new();
    let store = db.store().await;
    import_fixture_orders(&store).await;
    let queue = TestQueue::new("100ms,10m");
    queue.declare().await;
    let dir = tempfile::tempdir().expect("temp dir");

    // The detector itself finds what it must: every fixture carries
    // personal data in clear, and the card-number bodies carry the number.
    let fixtures: Vec<Vec<u8>> = fixture_files().iter().map(|p| read(p)).collect();
    for (path, body) in fixture_files().iter().zip(&fixtures) {
        assert!(
            !leaks(body).is_empty(),
            "{} has personal data",
            path.display()
        );
    }

    // Not `resigned`: its 20-digit MESSAGE_ID trips the card-number guard
    // (a long digit group almost always holds a Luhn-valid window), and a
    // body with a card number is discarded, not parked.
    let ghost = edited(
        "03-shop-1001-complete.txt",
        &[("REFNOEXT", "GHOST-1"), ("REFNO", "71999001")],
        &[],
    );
    let pan_in_stored_field = edited(
        "05-shop-1002-complete.txt",
        &[("REFNOEXT", "SHOP-4111111111111111")],
        &[],
    );
    let pan_for_unknown_order = edited(
        "03-shop-1001-complete.txt",
        &[
            ("REFNOEXT", "GHOST-PAN"),
            ("REFNO", "71999002"),
            ("ADDRESS2", "card 4111 1111 1111 1111"),
        ],
        &[],
    );
    let tampered = String::from_utf8(read(&repo_path("fixtures/ipn/05-shop-1002-complete.txt")))
        .expect("utf-8")
        .replace("IPN_TOTALGENERAL=", "IPN_TOTALGENERAL=1")
        .into_bytes();
    let mut malformed = read(&repo_path("fixtures/ipn/04-shop-1002-authorized.txt"));
    malformed.extend_from_slice(b"&REFNO=1");
    let mut malformed_with_pan = read(&repo_path("fixtures/ipn/06-shop-1002-partial-refund.txt"));
    malformed_with_pan.extend_from_slice(format!("&REFNO=2&NOTE=card+{PAN}").as_bytes());
    let pan_bodies = [
        &pan_in_stored_field,
        &pan_for_unknown_order,
        &malformed_with_pan,
    ];
    for body in pan_bodies {
        assert!(leaks(body).contains(&"a card number".to_owned()));
    }
    // Licence change notifications (issue 21): the end user's personal
    // data and the renewal card's last digits and expiry.
    let licences = [
        signed_lcn("TOF6T8VPY3", "ACTIVE", false),
        signed_lcn("XRILXB9ZI3", "PAST DUE", true),
    ];
    let waiting_licence = signed_lcn("9WITYHQ6NF", "EXPIRED", false);
    for body in licences.iter().chain([&waiting_licence]) {
        assert!(!leaks(body).is_empty() && holds_card_data(&String::from_utf8_lossy(body)));
    }

    // Phase 1: the daemon, orphans parked at once (a zero window).
    let daemon = InProcessDaemon::start(Settings {
        database: DatabaseSection {
            database_url: db.secret_url(),
            ..queue.daemon_settings().database
        },
        worker: WorkerSection {
            orphan_window: Duration::ZERO,
            ..queue.daemon_settings().worker
        },
        broker: BrokerSection {
            parking_ttl: Duration::from_secs(3600),
            ..queue.daemon_settings().broker
        },
        ..queue.daemon_settings()
    })
    .await;
    let mut queued = 0;
    for body in fixtures
        .iter()
        .chain([&ghost, &pan_in_stored_field, &pan_for_unknown_order])
    {
        if daemon.post(body).await == 200 {
            queued += 1;
        }
    }
    assert_eq!(queued, fixtures.len() + 3, "the intake queued every body");
    for body in &licences {
        assert_eq!(daemon.post_licence(body).await, 200);
    }
    publish_sealed(
        &queue,
        dir.path(),
        &[
            ("tampered.txt", &tampered),
            ("malformed.txt", &malformed),
            ("malformed-pan.txt", &malformed_with_pan),
        ],
    )
    .await;
    let deliveries = queued as u64 + licences.len() as u64 + 3;
    let parking = queue.topology().parking_queue();
    let settled = wait_until(Duration::from_secs(30), || async {
        daemon.metrics.handled() >= deliveries && queue.ready(&parking).await == 3
    })
    .await;
    let metrics = daemon.metrics.encode();
    daemon.stop().await;
    assert!(settled, "handled {deliveries} and parked 3:\n{metrics}");
    for series in [
        "ipn_licence_notices_total{test=\"false\"} 1",
        "ipn_licence_notices_total{test=\"true\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }

    // Phase 2: an orphan inside its window waits in a retry queue.
    let waiting = edited(
        "03-shop-1001-complete.txt",
        &[("REFNOEXT", "GHOST-2"), ("REFNO", "71999003")],
        &[],
    );
    let worker = RunningWorker::spawn(store.clone(), &queue, |settings| {
        settings.orphan_window = Duration::from_secs(3600);
    });
    publish_sealed(&queue, dir.path(), &[("ghost-2.txt", &waiting)]).await;
    let long_retry = queue.topology().retry_queue(Duration::from_secs(600));
    let retried = wait_until(Duration::from_secs(20), || async {
        queue.ready(&long_retry).await == 1
    })
    .await;
    worker.stop().await;
    assert!(retried, "GHOST-2 waits in {long_retry}");

    // Phase 3: no worker; two bodies and a licence change notification
    // wait in the work queue.
    publish_sealed(
        &queue,
        dir.path(),
        &[
            ("a.txt", &fixtures[0]),
            ("b.txt", &fixtures[1]),
            ("lcn.txt", &waiting_licence),
        ],
    )
    .await;

    // Every message of every queue.
    let sealer = seal_keys();
    let pan_digests: Vec<String> = pan_bodies
        .iter()
        .map(|body| BodyDigest::of(body).to_string())
        .collect();
    let mut per_queue = Vec::new();
    let mut licences_queued = 0;
    for name in queue.all_queues() {
        let messages = queue.browse(&name).await;
        per_queue.push((name.clone(), messages.len()));
        for (properties, body) in messages {
            if header(&properties, "x-notice-kind").as_deref() == Some("lcn") {
                licences_queued += 1;
            }
            let content_type = properties.content_type().as_ref().map(|t| t.to_string());
            assert_eq!(content_type.as_deref(), Some(SEALED_CONTENT_TYPE), "{name}");
            assert_eq!(
                header(&properties, "x-sealed-by").as_deref(),
                Some("test-seal-2026")
            );
            assert_eq!(header(&properties, "x-seal").as_deref(), Some("2"));
            assert_eq!(leaks(&body), Vec::<String>::new(), "{name}: sealed body");
            assert!(
                !holds_card_data(&String::from_utf8_lossy(&body)),
                "{name}: a renewal card's data in a sealed body"
            );
            let shown = format!("{properties:?}");
            assert_eq!(
                leaks(shown.as_bytes()),
                Vec::<String>::new(),
                "{name}: {shown}"
            );
            let message_id = properties.message_id().as_ref().map(|id| id.to_string());
            let plain = sealer
                .open(
                    &MessageMeta::from_properties(&properties, Utc::now()),
                    &body,
                )
                .expect("every queued message opens, with the headers it carries");
            assert_eq!(
                message_id,
                Some(BodyDigest::of(&plain).to_string()),
                "the message id is the plain body's digest"
            );
            assert!(
                !pan_digests.contains(&BodyDigest::of(&plain).to_string()),
                "{name} holds a body with a card number"
            );
            if name == parking {
                assert_eq!(
                    properties.expiration().as_ref().map(|e| e.to_string()),
                    Some("3600000".to_owned()),
                    "parked copies expire after parking-ttl"
                );
            }
        }
    }
    let depth = |queue_name: &str| {
        per_queue
            .iter()
            .find(|(name, _)| name == queue_name)
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(depth(queue.topology().work_queue()), 3, "{per_queue:?}");
    assert_eq!(licences_queued, 1, "the waiting LCN, marked as one");
    assert_eq!(depth(&long_retry), 1, "{per_queue:?}");
    assert_eq!(depth(&parking), 3, "{per_queue:?}");

    // What is kept of the card-number bodies: their record and review items.
    let digests = pan_digests
        .iter()
        .map(|d| format!("'{d}'"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        count(
            &db.url,
            &format!("SELECT count(*) FROM notifications WHERE body_sha256 IN ({digests})")
        )
        .await,
        3
    );
    assert_eq!(
        count(
            &db.url,
            "SELECT count(*) FROM review_items WHERE kind = 'pan_detected'"
        )
        .await,
        3,
        "the stored-field refusal and the orphan (pipeline), the malformed body (worker)"
    );
    assert_eq!(
        count(
            &db.url,
            "SELECT count(*) FROM review_items WHERE kind = 'orphan_payment' \
             AND order_ref = 'GHOST-PAN' AND details LIKE '%not kept%'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &db.url,
            "SELECT count(*) FROM review_items WHERE kind = 'orphan_payment' AND order_ref = 'GHOST-1'"
        )
        .await,
        1
    );
    assert!(
        metrics.contains("ipn_parked_total{reason=\"order_not_found\"} 1"),
        "{metrics}"
    );

    // `parked list` shows metadata only.
    let (ok, listed, stderr) = run_cli(vec!["parked".into(), "list".into()], queue.env()).await;
    assert!(ok, "{stderr}");
    assert!(listed.contains("3 parked"), "{listed}");
    assert!(listed.contains("test-seal-2026"), "{listed}");
    // The table shows each body's SHA-256, whose digits a card number
    // scanner may read as one by chance: it is not personal data.
    let shown: Vec<&str> = listed
        .split(' ')
        .filter(|word| !(word.len() == 64 && word.bytes().all(|b| b.is_ascii_hexdigit())))
        .collect();
    let shown = shown.join(" ");
    assert_eq!(leaks(shown.as_bytes()), Vec::<String>::new(), "{listed}");
}

/// Other programs publish plain bodies, with the form content type or with
/// none at all: the worker still applies them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_bodies_published_by_another_program_are_applied() {
    let db = TestDb::new();
    let store = db.store().await;
    import_fixture_orders(&store).await;
    let queue = TestQueue::new("200ms");
    queue.declare().await;
    let worker = RunningWorker::spawn(store.clone(), &queue, |_| {});

    // With the form content type, as MessageMeta::received says.
    let complete = read(&repo_path("fixtures/ipn/03-shop-1001-complete.txt"));
    let meta = MessageMeta::received(Utc::now(), None);
    assert_eq!(meta.content_type.as_deref(), Some(CONTENT_TYPE));
    queue.publish(&[complete]).await;

    // With no properties at all, straight through lapin.
    let other = read(&repo_path("fixtures/ipn/05-shop-1002-complete.txt"));
    let connection = queue
        .settings
        .connect("other-program")
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .basic_publish(
            queue.topology().exchange().into(),
            queue.topology().routing_key().into(),
            BasicPublishOptions::default(),
            &other,
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    let _ = connection.close(200, "done".into()).await;

    let paid = wait_until(Duration::from_secs(20), || async {
        let first = store.order("SHOP-1001").await.ok().flatten();
        let second = store.order("SHOP-1002").await.ok().flatten();
        first.is_some_and(|o| o.status == OrderState::Paid)
            && second.is_some_and(|o| o.status == OrderState::Paid)
    })
    .await;
    worker.stop().await;
    assert!(paid, "both plain bodies applied");
    assert_eq!(queue.ready(&queue.topology().parking_queue()).await, 0);
}

/// A sealed message that does not open (altered bytes, a key the ring no
/// longer holds, a content type nobody knows) is recorded and parked as
/// malformed, as received, and never applied. Once the missing key is back
/// in the key file, `parked requeue` brings the message back, still
/// sealed, and it is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seal_that_does_not_open_is_parked_as_malformed_and_requeued_once_its_key_is_back() {
    let db = TestDb::new();
    let store = db.store().await;
    import_fixture_orders(&store).await;
    let queue = TestQueue::new("200ms");
    queue.declare().await;

    let complete = read(&repo_path("fixtures/ipn/03-shop-1001-complete.txt"));
    let received = MessageMeta::received(Utc::now(), None);
    let mut tampered = seal_keys().seal(&complete, received.clone()).expect("seal");
    let last = tampered.body.len() - 1;
    tampered.body[last] ^= 0x01;
    // Sealed under a seal key the worker's seal key file does not hold (yet).
    let retired = Sealer::parse(RETIRED_SEAL_KEY).expect("seal key");
    let other = read(&repo_path("fixtures/ipn/05-shop-1002-complete.txt"));
    let unknown_key = retired.seal(&other, received.clone()).expect("seal");
    let json = read(&repo_path("fixtures/ipn/08-shop-1003-complete-jpy.txt"));

    let publisher = Publisher::connect(queue.settings.clone(), "test-publisher")
        .await
        .expect("publisher");
    publisher
        .publish_notification(&tampered.body, &tampered.meta)
        .await
        .expect("publish");
    publisher
        .publish_notification(&unknown_key.body, &unknown_key.meta)
        .await
        .expect("publish");
    publisher
        .publish_notification(
            &json,
            &MessageMeta {
                content_type: Some("application/json".into()),
                ..received
            },
        )
        .await
        .expect("publish");
    publisher.close().await;

    let worker = RunningWorker::spawn(store.clone(), &queue, |_| {});
    let parking = queue.topology().parking_queue();
    let parked = wait_until(Duration::from_secs(20), || async {
        queue.ready(&parking).await == 3
    })
    .await;
    let metrics = worker.metrics.encode();
    worker.stop().await;
    assert!(parked, "{metrics}");
    assert!(
        metrics.contains("ipn_parked_total{reason=\"malformed\"} 3"),
        "{metrics}"
    );

    // Parked as received: same bytes, same content type, same key id.
    let messages = queue.browse(&parking).await;
    let mut reasons: Vec<String> = messages
        .iter()
        .map(|(properties, _)| header(properties, "x-park-reason").expect("reason"))
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "malformed:broken_seal",
            "malformed:unknown_content_type",
            "malformed:unknown_seal_key"
        ]
    );
    for (properties, body) in &messages {
        let expected: &[u8] = match header(properties, "x-park-reason").as_deref() {
            Some("malformed:broken_seal") => &tampered.body,
            Some("malformed:unknown_seal_key") => &unknown_key.body,
            _ => &json,
        };
        assert_eq!(body.as_slice(), expected, "parked as received");
    }
    let (_, with_unknown_key) = messages
        .iter()
        .find(|(p, _)| header(p, "x-sealed-by").as_deref() == Some("test-seal-2024"))
        .expect("the message sealed with test-seal-2024");
    assert_eq!(with_unknown_key, &unknown_key.body);

    // Never applied; recorded as malformed.
    for order in ["SHOP-1001", "SHOP-1002", "SHOP-1003"] {
        let view = store.order(order).await.expect("order").expect("exists");
        assert_ne!(view.status, OrderState::Paid, "{order}");
    }
    assert_eq!(
        count(
            &db.url,
            "SELECT count(*) FROM notifications WHERE outcome = 'malformed' \
             AND reason IN ('broken_seal', 'unknown_seal_key', 'unknown_content_type')"
        )
        .await,
        3
    );

    // The retired key goes back into the seal key file (last line: opens,
    // does not seal); the message it sealed is requeued by its id.
    let keys_dir = tempfile::tempdir().expect("temp dir");
    let seal_file = keys_dir.path().join("seal.keys");
    let fixture = std::fs::read_to_string(repo_path(SEAL_KEYS)).expect("seal keys");
    std::fs::write(&seal_file, format!("{fixture}{RETIRED_SEAL_KEY}")).expect("write");
    let with_retired = ipn_reconciler::keys::read_seal_keys(&seal_file).expect("seal keys");
    assert_eq!(with_retired.current_key_id().as_str(), "test-seal-2026");
    let worker = RunningWorker::spawn_sealed(
        store.clone(),
        &queue,
        pipeline_config(),
        with_retired,
        |_| {},
    );
    let env: Vec<(&'static str, String)> = queue
        .env()
        .into_iter()
        .filter(|(name, _)| *name != "IPN_SEAL_KEYS_FILE")
        .chain([("IPN_SEAL_KEYS_FILE", seal_file.display().to_string())])
        .collect();
    // The id `parked list` shows; for a message that could not be opened,
    // the digest of its sealed bytes, under which it was recorded.
    let (ok, listed, stderr) = run_cli(
        vec!["parked".into(), "list".into(), "--json".into()],
        env.clone(),
    )
    .await;
    assert!(ok, "{stderr}");
    let id = listed
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("json"))
        .find(|entry| entry["sealed_by"] == "test-seal-2024")
        .and_then(|entry| entry["id"].as_str().map(str::to_owned))
        .expect("the message sealed with test-seal-2024 is listed");
    assert_eq!(id, BodyDigest::of(&unknown_key.body).as_str()[..12]);
    let (ok, stdout, stderr) = run_cli(vec!["parked".into(), "requeue".into(), id], {
        let mut env = env;
        env.push(("DATABASE_URL", db.url.clone()));
        env
    })
    .await;
    assert!(ok, "parked requeue: {stderr}");
    assert!(stdout.contains("1 requeued"), "{stdout}");
    let paid = wait_until(Duration::from_secs(20), || async {
        matches!(store.order("SHOP-1002").await, Ok(Some(order)) if order.status == OrderState::Paid)
    })
    .await;
    worker.stop().await;
    assert!(paid, "the requeued sealed message was opened and applied");
    assert_eq!(queue.ready(&parking).await, 2);
}

/// A parked copy expires after `parking-ttl`: the broker drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_copies_expire_after_the_parking_ttl() {
    let db = TestDb::new();
    let store = db.store().await;
    let queue = TestQueue::new("200ms");
    queue.declare().await;
    let worker = RunningWorker::spawn(store, &queue, |settings| {
        settings.parking_ttl = Duration::from_secs(1);
    });
    queue
        .publish(&[b"REFNO=%FF&REFNOEXT=SHOP-1001".to_vec()])
        .await;
    let parked = wait_until(Duration::from_secs(20), || async {
        worker
            .metrics
            .encode()
            .contains("ipn_parked_total{reason=\"malformed\"} 1")
    })
    .await;
    assert!(parked, "{}", worker.metrics.encode());
    let parking = queue.topology().parking_queue();
    let expired = wait_until(Duration::from_secs(20), || async {
        queue.ready(&parking).await == 0
    })
    .await;
    worker.stop().await;
    assert!(expired, "the parked copy expired");
}

/// `publish` without a seal key file is refused, naming the setting; with
/// one it seals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_without_a_seal_key_file_is_refused_and_with_one_seals() {
    let queue = TestQueue::new("200ms");
    queue.declare().await;
    let path = repo_path("fixtures/ipn/03-shop-1001-complete.txt");
    let without: Vec<(&'static str, String)> = queue
        .env()
        .into_iter()
        .filter(|(name, _)| *name != "IPN_SEAL_KEYS_FILE")
        .collect();
    let (ok, stdout, stderr) =
        run_cli(vec!["publish".into(), path.display().to_string()], without).await;
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("`seal-key-file` is required") && stderr.contains("IPN_SEAL_KEYS_FILE"),
        "{stderr}"
    );
    assert_eq!(queue.ready(queue.topology().work_queue()).await, 0);
    let (ok, stdout, stderr) = run_cli(
        vec!["publish".into(), path.display().to_string()],
        queue.env(),
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("published 1 of 1"), "{stdout}");
    let messages = queue.browse(queue.topology().work_queue()).await;
    assert_eq!(messages.len(), 1);
    let (properties, body) = &messages[0];
    assert_eq!(
        properties.content_type().as_ref().map(|t| t.to_string()),
        Some(SEALED_CONTENT_TYPE.to_owned())
    );
    assert_eq!(leaks(body), Vec::<String>::new());
    let meta = MessageMeta::from_properties(properties, Utc::now());
    assert_eq!(
        seal_keys().open(&meta, body).expect("opens").as_slice(),
        read(&path).as_slice()
    );
}
