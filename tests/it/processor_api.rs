//! The processor's REST API client against the simulated API, over real
//! HTTP on 127.0.0.1 (port 0): look-ups, authentication, retries on 429,
//! the circuit breaker in a 5xx storm, the client-side rate limit, and
//! `check` naming `api-key-file` on a wrong secret. Assertions are on
//! counts and states, never on how long anything took.

use std::num::NonZeroU32;
use std::time::Duration;

use assert_cmd::Command;
use ipn_reconciler::ipn::{API_AUTH_HEADER, Algorithm, SecretKey, api_auth_header};
use ipn_reconciler::processor_api::{
    ApiClient, ApiConfig, ApiCredentials, ApiError, BreakerState, RetryPolicy,
};
use ipn_reconciler::simulate::api::{ApiServer, SimulatedApi, example_order};

use crate::helpers::amqp::TestQueue;
use crate::helpers::{TestDb, repo_path};

const VENDOR: &str = "VENDOR123";
const SECRET: &[u8] = b"the-api-secret";

fn n(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).expect("positive")
}

async fn server() -> ApiServer {
    let api = SimulatedApi::new(VENDOR, SecretKey::new(SECRET.to_vec()));
    api.insert_order(example_order("700001", "shop-1", "COMPLETE"))
        .expect("an order");
    api.serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serves")
}

/// A client with quick retries (the policy, not the wait, is under test)
/// and a rate high enough not to matter unless a test lowers it.
fn config(server: &ApiServer, secret: &[u8]) -> ApiConfig {
    let mut config = ApiConfig::new(
        server.base_url(),
        ApiCredentials::new(VENDOR, SecretKey::new(secret.to_vec())),
        n(1000),
        Duration::from_secs(10),
    );
    config.retry = RetryPolicy {
        max_retries: 3,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    };
    config.breaker_threshold = n(3);
    // Long: a test never waits for it to pass.
    config.breaker_cool_down = Duration::from_secs(3600);
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lookup_returns_the_order_without_anything_personal() {
    let server = server().await;
    let client = ApiClient::new(config(&server, SECRET)).expect("client");
    let order = client.order("700001").await.expect("found");
    assert_eq!(order.ref_no, "700001");
    assert_eq!(order.external_reference.as_deref(), Some("shop-1"));
    assert_eq!(order.status, "COMPLETE");
    assert_eq!(order.approve_status.as_deref(), Some("OK"));
    assert_eq!(order.currency.as_deref(), Some("EUR"));
    assert_eq!(order.payout_currency.as_deref(), Some("USD"));
    assert_eq!(
        order.gross_price.as_ref().map(|d| d.as_str()),
        Some("10.00")
    );
    assert_eq!(order.commission.as_ref().map(|d| d.as_str()), Some("0.50"));
    assert_eq!(order.fx_rate.as_ref().map(|d| d.as_str()), Some("1.125696"));
    assert_eq!(order.items[0].subscription_references, ["SUB700001"]);
    let shown = format!("{order:?}");
    for personal in [
        "Mirela",
        "Ionescu",
        "example.org",
        "Unirii",
        "555555",
        "4444",
        "+40",
    ] {
        assert!(!shown.contains(personal), "{personal} in {shown}");
    }
    // Every algorithm the processor takes is accepted.
    for algorithm in [Algorithm::Sha256, Algorithm::Md5] {
        let mut config = config(&server, SECRET);
        config.credentials = config.credentials.with_algorithm(algorithm);
        let client = ApiClient::new(config).expect("client");
        assert!(client.order("700001").await.is_ok(), "{algorithm}");
    }
    assert!(matches!(
        client.order("999999").await,
        Err(ApiError::NotFound(r)) if r == "999999"
    ));
    assert!(matches!(
        client.order("../admin").await,
        Err(ApiError::BadReference(_))
    ));
    assert_eq!(server.api.authorized(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_is_refused_with_an_error_naming_api_key_file() {
    let server = server().await;
    let client = ApiClient::new(config(&server, b"not-the-secret")).expect("client");
    let err = client.order("700001").await.expect_err("refused");
    assert!(matches!(err, ApiError::Unauthorized), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("`api-key-file`"), "{text}");
    assert!(!text.contains("not-the-secret"), "{text}");
    // A 401 is an answer, not an outage: asked once, no retry, breaker
    // closed.
    assert_eq!(server.api.requests(), 1);
    assert_eq!(client.stats().retries, 0);
    assert_eq!(client.breaker_state(), BreakerState::Closed);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_simulated_api_checks_vendor_hash_and_date() {
    let server = server().await;
    let url = format!("{}orders/700001/", server.base_url());
    let http = reqwest::Client::new();
    let secret = SecretKey::new(SECRET.to_vec());
    let now = chrono::Utc::now().naive_utc();
    let status = |header: String| {
        let request = http.get(&url).header(API_AUTH_HEADER, header);
        async move { request.send().await.expect("answer").status().as_u16() }
    };
    let sha3 = Algorithm::Sha3_256;
    assert_eq!(
        status(api_auth_header(VENDOR, &secret, now, sha3)).await,
        200
    );
    let mut hash_off = api_auth_header(VENDOR, &secret, now, sha3);
    let at = hash_off.find("hash=\"").expect("hash") + 6;
    let flipped = if &hash_off[at..=at] == "0" { "1" } else { "0" };
    hash_off.replace_range(at..=at, flipped);
    assert_eq!(status(hash_off).await, 401);
    let other = SecretKey::new(SECRET.to_vec());
    assert_eq!(
        status(api_auth_header("UNKNOWN", &other, now, sha3)).await,
        401
    );
    let late = now - chrono::Duration::minutes(20);
    assert_eq!(
        status(api_auth_header(VENDOR, &secret, late, sha3)).await,
        401
    );
    let early = now + chrono::Duration::minutes(20);
    assert_eq!(
        status(api_auth_header(VENDOR, &secret, early, sha3)).await,
        401
    );
    let request = http.get(&url).send().await.expect("answer");
    assert_eq!(request.status().as_u16(), 401);
    assert_eq!(server.api.authorized(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_twice_then_answered_within_the_retry_bound() {
    let server = server().await;
    let client = ApiClient::new(config(&server, SECRET)).expect("client");
    server.api.fail_next(429, 2);
    let order = client.order("700001").await.expect("answered on the third");
    assert_eq!(order.ref_no, "700001");
    assert_eq!(server.api.requests(), 3);
    let stats = client.stats();
    assert_eq!((stats.sent, stats.retries), (3, 2));
    assert_eq!(client.breaker_state(), BreakerState::Closed);

    // Past the bound (3 retries: 4 attempts), the caller gets the status.
    let mut config = config(&server, SECRET);
    config.breaker_threshold = n(100);
    let client = ApiClient::new(config).expect("client");
    server.api.fail_next(429, 10);
    let err = client.order("700001").await.expect_err("gave up");
    assert!(
        matches!(
            err,
            ApiError::Status {
                status: 429,
                attempts: 4
            }
        ),
        "{err:?}"
    );
    assert_eq!(server.api.requests(), 3 + 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_5xx_storm_opens_the_breaker_and_later_calls_fail_fast() {
    let server = server().await;
    let client = ApiClient::new(config(&server, SECRET)).expect("client");
    server.api.fail_next(503, 1000);
    // Threshold 3: the third failed attempt opens the breaker, and the
    // call ends there instead of using its last retry.
    let err = client.order("700001").await.expect_err("storm");
    assert!(
        matches!(
            err,
            ApiError::CircuitOpen | ApiError::Status { status: 503, .. }
        ),
        "{err:?}"
    );
    assert_eq!(server.api.requests(), 3);
    assert_eq!(client.breaker_state(), BreakerState::Open);
    // Later calls are refused without a request.
    for _ in 0..5 {
        let err = client.order("700001").await.expect_err("fast");
        assert!(matches!(err, ApiError::CircuitOpen), "{err:?}");
    }
    assert_eq!(server.api.requests(), 3);
    assert_eq!(client.stats().fast_failed, 1 + 5);
    assert_eq!(client.stats().sent, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rate_limit_spaces_requests() {
    let server = server().await;
    let mut config = config(&server, SECRET);
    // 2 a second: the second and third of three calls made at once must
    // wait for their slots (counted by the client, not timed here).
    config.rate = n(2);
    let client = std::sync::Arc::new(ApiClient::new(config).expect("client"));
    let calls = (0..3).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.order("700001").await })
    });
    for call in futures::future::join_all(calls).await {
        call.expect("joined").expect("answered");
    }
    assert_eq!(server.api.requests(), 3);
    let stats = client.stats();
    assert_eq!((stats.sent, stats.paced), (3, 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_api_key_file_when_the_api_refuses_the_secret() {
    let db = TestDb::new();
    db.store().await;
    let queue = TestQueue::new("1s,5s");
    let server = server().await;
    let dir = tempfile::tempdir().expect("dir");
    let run_check = |name: &str, secret: &str| {
        let key_file = dir.path().join(name);
        std::fs::write(&key_file, format!("{secret}\n")).expect("write");
        let mut cmd = Command::cargo_bin("ipn-reconciler").expect("binary");
        cmd.arg("check")
            .env_remove("IPN_CONFIG")
            .env_remove("IPN_CREATE_DB")
            .env_remove("AUTO_MIGRATE")
            .env_remove("PSEUDONYM_KEY_FILE")
            .env("DATABASE_URL", &db.url)
            .env("IPN_KEYS_FILE", repo_path("fixtures/keys/test.keys"))
            .env("IPN_HTTP_ADDR", "127.0.0.1:0")
            .env("IPN_INTAKE_ADDR", "127.0.0.1:0")
            .env("IPN_API_URL", server.base_url())
            .env("IPN_VENDOR_CODE", VENDOR)
            .env("IPN_API_KEY_FILE", &key_file)
            .envs(queue.env());
        cmd
    };
    let wrong = run_check("wrong.key", "a-wrong-secret");
    let good = run_check("good.key", std::str::from_utf8(SECRET).expect("utf-8"));
    let (wrong, good) = tokio::task::spawn_blocking(move || {
        let mut wrong = wrong;
        let mut good = good;
        (wrong.output().expect("runs"), good.output().expect("runs"))
    })
    .await
    .expect("joined");
    let out = String::from_utf8(wrong.stdout).expect("utf-8");
    let line = out
        .lines()
        .find(|l| l.contains("processor api:"))
        .unwrap_or_else(|| panic!("no processor api line:\n{out}"));
    assert!(line.starts_with("FAIL  processor api:"), "{out}");
    assert!(
        line.contains("`api-key-file`") && line.contains("401"),
        "{line}"
    );
    assert!(!out.contains("a-wrong-secret"), "{out}");
    assert_eq!(wrong.status.code(), Some(2), "{out}");

    let out = String::from_utf8(good.stdout).expect("utf-8");
    assert_eq!(good.status.code(), Some(0), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("processor api:"))
        .unwrap_or_else(|| panic!("no processor api line:\n{out}"));
    assert!(
        line.starts_with("ok    processor api:") && line.contains("credentials accepted"),
        "{line}"
    );
}

/// `simulate api` serves the orders of `--orders-json` exactly as written,
/// to a client with the account's credentials and to nobody else.
#[tokio::test(flavor = "multi_thread")]
async fn simulate_api_serves_the_given_orders() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("dir");
    let key_file = dir.path().join("api.key");
    std::fs::write(&key_file, "the-api-secret\n").expect("write");
    let orders = dir.path().join("orders.jsonl");
    std::fs::write(
        &orders,
        format!(
            "{}\n{}\n",
            example_order("800001", "shop-8", "COMPLETE"),
            r#"{"RefNo": 800002, "Status": "PENDING", "Currency": "jpy", "GrossPrice": 1200}"#
        ),
    )
    .expect("write");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("ipn-reconciler"))
        .args([
            "simulate",
            "api",
            "--addr",
            "127.0.0.1:0",
            "--vendor-code",
            VENDOR,
        ])
        .arg("--api-key-file")
        .arg(&key_file)
        .arg("--orders-json")
        .arg(&orders)
        .env_remove("IPN_CONFIG")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reads");
        line
    })
    .await
    .expect("joined");
    let base_url = line
        .trim()
        .strip_prefix("simulated API at ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    let client = |secret: &[u8]| {
        let mut config = ApiConfig::new(
            base_url.clone(),
            ApiCredentials::new(VENDOR, SecretKey::new(secret.to_vec())),
            n(1000),
            Duration::from_secs(10),
        );
        config.retry.max_retries = 0;
        ApiClient::new(config).expect("client")
    };
    let good = client(SECRET);
    let first = good.order("800001").await;
    let second = good.order("800002").await;
    let refused = client(b"wrong").order("800001").await;
    child.kill().expect("stops");
    child.wait().expect("waited");
    let first = first.expect("found");
    assert_eq!(first.external_reference.as_deref(), Some("shop-8"));
    let second = second.expect("found");
    assert_eq!(second.currency.as_deref(), Some("JPY"));
    assert_eq!(
        second.gross_price.as_ref().map(|d| d.as_str()),
        Some("1200")
    );
    assert!(
        matches!(refused, Err(ApiError::Unauthorized)),
        "{refused:?}"
    );
}
