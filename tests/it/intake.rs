//! The processor-facing intake against the real RabbitMQ: receipts,
//! refusals, broker outages and bursts.

use std::time::Duration;

use crate::helpers::amqp::{TestQueue, read, resigned, test_key};
use crate::helpers::repo_path;
use ipn_reconciler::app::{AppConfig, Application};
use ipn_reconciler::domain::Layout;
use ipn_reconciler::intake::ReceiptChoice;
use ipn_reconciler::ipn::{
    Algorithm, FormBody, FormLimits, KeyRing, ReceiptDate, ReceiptFormat, SecretKey, read_receipt,
    sign,
};
use ipn_reconciler::metrics::Metrics;
use ipn_reconciler::secret::SecretUrl;
use ipn_reconciler::settings::{
    BrokerSection, IntakeSection, NotificationSection, PositiveDuration,
};
use ipn_reconciler::settings::{ExpectedFields, Settings};
use tokio_util::sync::CancellationToken;

/// The standalone intake (`ipn-reconciler intake`), started the way the
/// binary starts it, on a free port, until the guard drops.
struct RunningIntake {
    url: String,
    metrics: Metrics,
    stop: CancellationToken,
}

impl Drop for RunningIntake {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts the intake with `settings` (MD5 accepted) and `keys`.
async fn start(settings: Settings, keys: KeyRing) -> RunningIntake {
    let settings = Settings {
        notifications: NotificationSection {
            allow_md5: true,
            ..settings.notifications
        },
        ..settings
    };
    let loaded = settings.loaded().expect("settings");
    let mut config = AppConfig::intake_with_keys(&loaded, keys).expect("intake config");
    config.ops_addr = None;
    let app = Application::build(config).await.expect("intake binds");
    let url = format!("http://{}/ipn", app.intake_addr().expect("intake address"));
    let metrics = app.metrics().clone();
    let stop = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(stop.clone().cancelled_owned()));
    RunningIntake { url, metrics, stop }
}

fn test_ring() -> KeyRing {
    ipn_reconciler::keys::read_key_ring(&repo_path("fixtures/keys/test.keys")).expect("keys")
}

async fn post(url: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
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

/// `body` with the fields named in `remove` left out and those of `set`
/// given a new value (added where the processor sends them when absent or
/// removed), signed again with `key` as the processor signs (its signature
/// fields at the end, in the order of `algorithms`).
fn signed_copy(
    body: &[u8],
    remove: &[&str],
    set: &[(&str, &str)],
    key: &SecretKey,
    algorithms: &[Algorithm],
) -> Vec<u8> {
    let form = FormBody::parse(body, &FormLimits::default()).expect("parses");
    let mut edited = FormBody::default();
    for (name, value) in form.pairs() {
        if remove.contains(&name) {
            continue;
        }
        let value = set
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(value, |(_, v)| *v);
        edited.push(name, value);
    }
    for (name, value) in set {
        if edited.get(name).is_none() {
            edited = Layout::ipn().with_field(&edited, name, value);
        }
    }
    sign(&edited, key, algorithms)
        .expect("sign")
        .encode()
        .into_bytes()
}

/// Fixture 03 (SHOP-1001 complete, no card number anywhere) edited with
/// `signed_copy` and signed with the test key, SHA3-256 and SHA-256.
fn fixture_copy(remove: &[&str], set: &[(&str, &str)]) -> Vec<u8> {
    let body = read(&repo_path("fixtures/ipn/03-shop-1001-complete.txt"));
    signed_copy(
        body.trim_ascii_end(),
        remove,
        set,
        &test_key(),
        &[Algorithm::Sha3_256, Algorithm::Sha256],
    )
}

/// Whether an answer carries a read receipt of either format.
fn has_receipt(text: &str) -> bool {
    text.contains("<sig") || text.contains("<EPAYMENT>")
}

/// The value of `ipn_intake_requests_total{result}` (0 when absent).
fn intake_count(metrics: &Metrics, result: &str) -> u64 {
    let prefix = format!("ipn_intake_requests_total{{result=\"{result}\"}} ");
    metrics
        .encode()
        .lines()
        .find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
        .unwrap_or(0)
}

/// The DATE of a receipt, checked to be "now" in UTC.
fn receipt_date(receipt: &str, marker: &str, end: char) -> ReceiptDate {
    let start = receipt.find(marker).expect("date marker") + marker.len();
    let text: String = receipt[start..].chars().take_while(|c| *c != end).collect();
    let date = ReceiptDate::parse(&text).expect("YmdHis");
    // Compared as times, not as 14-digit numbers (which jump at every
    // minute and hour boundary).
    let stamped = chrono::NaiveDateTime::parse_from_str(&text, "%Y%m%d%H%M%S")
        .expect("YmdHis")
        .and_utc();
    let skew = (chrono::Utc::now() - stamped).num_seconds().abs();
    assert!(skew <= 60, "DATE {text} is UTC now (off by {skew}s)");
    date
}

#[tokio::test(flavor = "multi_thread")]
async fn receipts_are_byte_exact_in_both_formats() {
    let queue = TestQueue::new("1s");
    queue.declare().await;
    // Spec V5 with its key: the receipt HMAC covers IPN_PID[0], IPN_PNAME[0],
    // IPN_DATE and DATE.
    let spec_ring = KeyRing::single("AABBCCDDEEFF");
    let v5 = b"REFNO=1000037&REFNOEXT=&ORDERSTATUS=COMPLETE&IPN_PID%5B%5D=1&IPN_PID%5B%5D=2&IPN_PNAME%5B%5D=Software+program&IPN_PNAME%5B%5D=Caf%C3%A9&IPN_QTY%5B%5D=1&IPN_QTY%5B%5D=0&IPN_DATE=20050303123434&CURRENCY=EUR&HASH=2301bcfc3ec8a77c66450cf53cf4d370&SIGNATURE_SHA2_256=c183824e4ace8ca0e7b1bf3c3c159c2ee15ddd261983cc09f286c4fa7d0eb52a&SIGNATURE_SHA3_256=802213c8220107c6f85f370796cc13dd4d41289d3ef5af4f3f34e9f0d776a12e".to_vec();
    let key = spec_ring.current().secret.clone();
    // V5 has CURRENCY after IPN_DATE, a layout the processor does not
    // send, and no total (its empty `REFNOEXT=` is a hosted-cart order's):
    // the worker would park it, so the intake refuses it. Completed,
    // CURRENCY in its place, with the values the receipt covers unchanged,
    // and signed again, it is answered.
    let body = signed_copy(
        &v5,
        &["CURRENCY"],
        &[
            ("REFNOEXT", "ORD-V5"),
            ("CURRENCY", "EUR"),
            ("IPN_TOTALGENERAL", "10.00"),
        ],
        &key,
        &[Algorithm::Md5, Algorithm::Sha256, Algorithm::Sha3_256],
    );
    let form = FormBody::parse(&body, &FormLimits::default()).expect("parses");

    for (choice, format) in [
        (
            ReceiptChoice::Fixed(ReceiptFormat::Epayment),
            ReceiptFormat::Epayment,
        ),
        (
            ReceiptChoice::Fixed(ReceiptFormat::Sig(Algorithm::Sha256)),
            ReceiptFormat::Sig(Algorithm::Sha256),
        ),
        (ReceiptChoice::Auto, ReceiptFormat::Sig(Algorithm::Sha3_256)),
    ] {
        let settings = Settings {
            intake: IntakeSection {
                receipt_format: choice,
                ..queue.daemon_settings().intake
            },
            ..queue.daemon_settings()
        };
        let intake = start(settings, spec_ring.clone()).await;
        let (status, refused) = post(&intake.url, v5.clone()).await;
        assert_eq!(
            (status, refused.as_str()),
            (
                400,
                "malformed: field `CURRENCY` is out of the processor's order (relative to `IPN_DATE`)\n"
            )
        );
        let (status, receipt) = post(&intake.url, body.clone()).await;
        assert_eq!(status, 200, "{receipt}");
        let date = match format {
            ReceiptFormat::Epayment => receipt_date(&receipt, "<EPAYMENT>", '|'),
            ReceiptFormat::Sig(_) => receipt_date(&receipt, "date=\"", '"'),
        };
        let expected = read_receipt(&form, &key, format, date).expect("receipt");
        assert_eq!(receipt, expected, "byte-exact {format:?}");
    }
    assert_eq!(queue.ready(queue.topology().work_queue()).await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_broker_gets_503_and_no_receipt() {
    let queue = TestQueue::new("1s");
    let settings = Settings {
        broker: BrokerSection {
            // Nothing listens on port 1.
            amqp_url: SecretUrl::new("amqp://guest:guest@127.0.0.1:1/%2f"),
            ..queue.daemon_settings().broker
        },
        intake: IntakeSection {
            // Far longer than the client waits below: an answer that waited
            // for a confirm that cannot come would fail this test.
            confirm_timeout: PositiveDuration::new(Duration::from_secs(600)).expect("positive"),
            ..queue.daemon_settings().intake
        },
        ..queue.daemon_settings()
    };
    let intake = start(settings, test_ring()).await;
    let body = read(&repo_path("fixtures/ipn/03-shop-1001-complete.txt"));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    for _ in 0..3 {
        let response = client
            .post(&intake.url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await
            .expect("an answer, without waiting for the confirm timeout");
        assert_eq!(response.status().as_u16(), 503);
        let text = response.text().await.expect("text");
        assert!(
            !text.contains("<sig") && !text.contains("<EPAYMENT>"),
            "{text}"
        );
    }
    let metrics = intake.metrics.encode();
    assert!(
        metrics.contains("ipn_intake_requests_total{result=\"broker_unavailable\"} 3"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_concurrent_posts_is_queued_exactly_once() {
    let queue = TestQueue::new("1s");
    queue.declare().await;
    // The processor's burst comes from one address: its own cap is the
    // global one here.
    let settings = Settings {
        intake: IntakeSection {
            intake_max_connections_per_client: queue
                .daemon_settings()
                .intake
                .intake_max_connections,
            ..queue.daemon_settings().intake
        },
        ..queue.daemon_settings()
    };
    let intake = start(settings, test_ring()).await;
    let key = test_key();
    const POSTS: usize = 300;
    let bodies: Vec<Vec<u8>> = (0..POSTS)
        .map(|i| {
            resigned(
                "03-shop-1001-complete.txt",
                &format!("B-{i}"),
                80_000_000 + i as u64,
                &key,
            )
        })
        .collect();
    let tasks: Vec<_> = bodies
        .iter()
        .cloned()
        .map(|body| {
            let url = intake.url.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let (status, receipt) = post(&url, body.clone()).await;
                assert_eq!(status, 200, "{receipt}");
                ipn_reconciler::simulate::deliver::check_receipt(&body, &key, &receipt)
                    .expect("valid receipt");
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("POST task");
    }
    assert_eq!(
        queue.ready(queue.topology().work_queue()).await,
        POSTS as u32
    );
    assert!(intake.metrics.encode().contains(&format!(
        "ipn_intake_requests_total{{result=\"queued\"}} {POSTS}"
    )));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_without_a_receipt_and_not_queued() {
    let queue = TestQueue::new("1s");
    queue.declare().await;
    let settings = Settings {
        intake: IntakeSection {
            trusted_forwarded_header: Some("x-forwarded-for".into()),
            trusted_proxies: ipn_reconciler::settings::AllowNetworks(
                ipn_reconciler::intake::parse_allow_list("127.0.0.1").expect("proxy"),
            ),
            allow_networks: ipn_reconciler::settings::AllowNetworks(
                ipn_reconciler::intake::parse_allow_list("127.0.0.0/8").expect("nets"),
            ),
            ..queue.daemon_settings().intake
        },
        ..queue.daemon_settings()
    };
    let intake = start(settings, test_ring()).await;
    let body = read(&repo_path("fixtures/ipn/03-shop-1001-complete.txt"));
    let client = reqwest::Client::new();
    let send = |content_type: &'static str, forwarded: &'static str, body: Vec<u8>| {
        let request = client
            .post(&intake.url)
            .header("content-type", content_type)
            .header("x-forwarded-for", forwarded)
            .body(body);
        async move {
            let response = request.send().await.expect("POST");
            let status = response.status().as_u16();
            (status, response.text().await.expect("text"))
        }
    };
    let form = "application/x-www-form-urlencoded";
    let tampered = String::from_utf8(body.clone())
        .expect("utf-8")
        .replace("IPN_TOTALGENERAL=107.00", "IPN_TOTALGENERAL=1.00")
        .into_bytes();
    let cases: Vec<(u16, (u16, String))> = vec![
        (
            415,
            send("application/json", "127.0.0.1", body.clone()).await,
        ),
        (413, send(form, "127.0.0.1", vec![b'A'; 70 * 1024]).await),
        (
            400,
            send(form, "127.0.0.1", b"REFNO=1&N=%FF".to_vec()).await,
        ),
        (403, send(form, "127.0.0.1", tampered).await),
        (403, send(form, "8.8.8.8", body.clone()).await),
    ];
    for (expected, (status, text)) in cases {
        assert_eq!(status, expected, "{text}");
        assert!(!text.contains("<sig") && !text.contains("<EPAYMENT>"));
        assert!(!text.contains("Muñoz"), "no value echoed: {text}");
    }
    // A client that sends its own forwarded-for line before the proxy's
    // cannot get it read: the proxy's (last) line names the caller.
    let response = client
        .post(&intake.url)
        .header("content-type", form)
        .header("x-forwarded-for", "127.0.0.1")
        .header("x-forwarded-for", "8.8.8.8")
        .body(body.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 403);
    assert_eq!(queue.ready(queue.topology().work_queue()).await, 0);

    // The processor probes a saved URL with GET and expects 200.
    let probe = client.get(&intake.url).send().await.expect("GET");
    assert_eq!(probe.status().as_u16(), 200);
    // And the genuine body from an allowed source is queued.
    let (status, _) = send(form, "10.0.0.1, 127.0.0.1", body).await;
    assert_eq!(status, 200);
    assert_eq!(queue.ready(queue.topology().work_queue()).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_signed_with_an_older_key_is_answered_with_that_key() {
    let queue = TestQueue::new("1s");
    queue.declare().await;
    let ring = test_ring();
    let older = ring.keys()[1].clone();
    assert_eq!(older.id.as_str(), "test-2025");
    let intake = start(queue.daemon_settings(), ring.clone()).await;
    let body = resigned(
        "03-shop-1001-complete.txt",
        "ROTATED-1",
        90_000_001,
        &older.secret,
    );
    let (status, receipt) = post(&intake.url, body.clone()).await;
    assert_eq!(status, 200, "{receipt}");
    let date = receipt_date(&receipt, "date=\"", '"');
    let form = FormBody::parse(&body, &FormLimits::default()).expect("parses");
    let format = ReceiptFormat::Sig(Algorithm::Sha3_256);
    let with_older = read_receipt(&form, &older.secret, format, date).expect("receipt");
    let with_current = read_receipt(&form, &ring.current().secret, format, date).expect("receipt");
    assert_ne!(with_older, with_current);
    assert_eq!(receipt, with_older, "signed with the key that verified");
    assert_eq!(queue.ready(queue.topology().work_queue()).await, 1);
}

/// Verified bodies the worker would park as malformed, and bodies the
/// receipt cannot answer, are refused at the door: 400 with a one-line
/// reason naming the field, no receipt (so the processor retries and shows
/// the error), nothing queued, counted by reason. The same notification
/// completed and signed again, as the processor sends it once its IPN
/// settings are fixed, is answered and queued once.
#[tokio::test(flavor = "multi_thread")]
async fn bodies_the_worker_would_park_are_refused_at_the_door_until_complete() {
    let queue = TestQueue::new("1s");
    queue.declare().await;
    let settings = Settings {
        notifications: NotificationSection {
            expected_fields: ExpectedFields(vec!["TEST_ORDER".to_owned()]),
            ..queue.daemon_settings().notifications
        },
        ..queue.daemon_settings()
    };
    let intake = start(settings, test_ring()).await;
    let work_queue = queue.topology().work_queue();

    let cases: Vec<(Vec<u8>, u16, &str, &str)> = vec![
        (
            fixture_copy(&["REFNO"], &[]),
            400,
            "missing field REFNO\n",
            "missing_field",
        ),
        (
            fixture_copy(&["TEST_ORDER"], &[]),
            400,
            "missing expected field TEST_ORDER\n",
            "missing_expected_field",
        ),
        (
            fixture_copy(&["IPN_PID[]"], &[]),
            400,
            "missing field IPN_PID[] (the read receipt covers it)\n",
            "missing_field",
        ),
        (
            fixture_copy(&["IPN_PNAME[]"], &[]),
            400,
            "missing field IPN_PNAME[] (the read receipt covers it)\n",
            "missing_field",
        ),
        (
            fixture_copy(&[], &[("IPN_TOTALGENERAL", "107,00")]),
            400,
            "invalid field IPN_TOTALGENERAL: ",
            "invalid_field",
        ),
        (
            b"hello world".to_vec(),
            400,
            "malformed: not a notification form: field #1 has no `=`",
            "malformed",
        ),
        // Not signed again: the signature is checked first, so an
        // unsigned body stays a forgery whatever it lacks.
        (
            String::from_utf8(read(&repo_path("fixtures/ipn/03-shop-1001-complete.txt")))
                .expect("utf-8")
                .replace("&REFNO=71000101", "")
                .into_bytes(),
            403,
            "invalid: ",
            "invalid_signature",
        ),
    ];
    for (body, expected_status, expected_text, _) in &cases {
        let (status, text) = post(&intake.url, body.clone()).await;
        assert_eq!(status, *expected_status, "{text}");
        assert!(text.starts_with(expected_text), "{text}");
        assert_eq!(text.lines().count(), 1, "one line: {text}");
        assert!(!has_receipt(&text), "{text}");
        for value in ["71000101", "SHOP-1001", "107", "Backup", "4711", "hello"] {
            assert!(!text.contains(value), "no value echoed: {text}");
        }
    }
    assert_eq!(
        queue.ready(work_queue).await,
        0,
        "nothing refused is queued"
    );
    for (result, expected) in [
        ("missing_field", 3),
        ("missing_expected_field", 1),
        ("invalid_field", 1),
        ("malformed", 1),
        ("invalid_signature", 1),
        ("queued", 0),
    ] {
        assert_eq!(intake_count(&intake.metrics, result), expected, "{result}");
    }

    // The processor retries a refused body as it is: refused again.
    let (status, text) = post(&intake.url, cases[0].0.clone()).await;
    assert_eq!((status, has_receipt(&text)), (400, false), "{text}");

    // Completed and signed again: answered with a valid receipt, queued once.
    let complete = fixture_copy(&[], &[]);
    let (status, receipt) = post(&intake.url, complete.clone()).await;
    assert_eq!(status, 200, "{receipt}");
    ipn_reconciler::simulate::deliver::check_receipt(&complete, &test_key(), &receipt)
        .expect("a valid receipt");
    assert_eq!(queue.ready(work_queue).await, 1);
    assert_eq!(intake_count(&intake.metrics, "queued"), 1);
    let queued = queue.browse(work_queue).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(
        queued[0].0.message_id().as_ref().map(|id| id.to_string()),
        Some(ipn_reconciler::domain::BodyDigest::of(&complete).to_string()),
        "the completed copy is the one queued"
    );
}

/// A body with a card number is never refused at the door, even when the
/// worker will refuse it: the worker records it (`pan_detected`) and keeps
/// no copy, whereas a refusal would have the processor send the number
/// again for two days.
#[tokio::test(flavor = "multi_thread")]
async fn a_body_with_a_card_number_is_answered_even_when_the_worker_will_refuse_it() {
    let queue = TestQueue::new("1s");
    queue.declare().await;
    let intake = start(queue.daemon_settings(), test_ring()).await;
    let bodies = [
        // In a field the worker would store.
        fixture_copy(&[], &[("REFNOEXT", "SHOP-4111111111111111")]),
        // Elsewhere, in a body that lacks a required field.
        fixture_copy(&["REFNO"], &[("ADDRESS2", "card 4111 1111 1111 1111")]),
    ];
    for body in &bodies {
        let (status, receipt) = post(&intake.url, body.clone()).await;
        assert_eq!(status, 200, "{receipt}");
        ipn_reconciler::simulate::deliver::check_receipt(body, &test_key(), &receipt)
            .expect("a valid receipt");
    }
    assert_eq!(queue.ready(queue.topology().work_queue()).await, 2);
    assert_eq!(intake_count(&intake.metrics, "missing_field"), 0);
}

/// The intake's path answers with or without a trailing slash; any other
/// path is a 404 that says which path was asked for and where to post.
#[tokio::test(flavor = "multi_thread")]
async fn the_path_answers_with_a_trailing_slash_and_other_paths_say_where_to_go() {
    let queue = TestQueue::new("1s");
    queue.declare().await;
    let intake = start(queue.daemon_settings(), test_ring()).await;
    let slashed = format!("{}/", intake.url);
    let body = read(&repo_path("fixtures/ipn/03-shop-1001-complete.txt"));
    let (status, receipt) = post(&slashed, body.clone()).await;
    assert_eq!(status, 200, "{receipt}");
    ipn_reconciler::simulate::deliver::check_receipt(&body, &test_key(), &receipt)
        .expect("a valid receipt");
    assert_eq!(queue.ready(queue.topology().work_queue()).await, 1);
    let probe = reqwest::get(&slashed).await.expect("GET");
    assert_eq!(probe.status().as_u16(), 200);

    let base = intake.url.strip_suffix("/ipn").expect("ends in /ipn");
    for (path, shown) in [
        ("/nope", "/nope"),
        ("/ipn//", "/ipn//"),
        ("/ipn/4111111111111111", "<path with 13+ digits>"),
    ] {
        let (status, text) = post(&format!("{base}{path}"), body.clone()).await;
        assert_eq!(status, 404, "{path}: {text}");
        assert_eq!(
            text,
            format!(
                "no such path {shown}: notifications go to POST /ipn, \
                 licence change notifications to POST /lcn\n"
            )
        );
    }
    assert_eq!(queue.ready(queue.topology().work_queue()).await, 1);
    assert_eq!(intake_count(&intake.metrics, "not_found"), 3);
}
