//! `simulate --target queue|http`: the simulator delivering like the
//! processor, against the real RabbitMQ and the standalone `intake`.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::helpers::amqp::{TestQueue, seal_keys, wait_until};
use crate::helpers::daemon::Daemon;
use crate::helpers::repo_path;
use chrono::Utc;
use ipn_reconciler::queue::{MessageMeta, SEALED_CONTENT_TYPE};

fn simulate(queue: &TestQueue, out: &std::path::Path, extra: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ipn-reconciler"))
        .args(["simulate", "--seed", "3", "--orders", "25", "--key-file"])
        .arg(repo_path("fixtures/keys/test.keys"))
        .arg("--out")
        .arg(out)
        .args(extra)
        .envs(queue.env())
        .output()
        .expect("run simulate");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The summary line `"<n> deliveries (<g> genuine, <d> duplicate, ...)"`
/// from stdout: the total and the count of each kind.
fn counts(stdout: &str) -> (u32, BTreeMap<String, u32>) {
    let line = stdout
        .lines()
        .find(|l| l.contains(" deliveries ("))
        .expect("summary line");
    let (total, rest) = line.split_once(" deliveries (").expect("total");
    let inner = rest.split_once(')').expect("closing parenthesis").0;
    let kinds = inner
        .split(", ")
        .map(|part| {
            let (n, kind) = part.split_once(' ').expect("<n> <kind>");
            (kind.to_owned(), n.parse().expect("a count"))
        })
        .collect();
    (total.parse().expect("the total"), kinds)
}

/// Deliveries whose signature does not verify: the intake refuses them.
/// The copies the intake refuses at the door: forged and unsigned ones,
/// and those with two names swapped (they verify, but the processor never
/// lays out a body so).
fn forged(kinds: &BTreeMap<String, u32>) -> u32 {
    kinds["tampered"] + kinds["unsigned"] + kinds.get("swapped").copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_simulator_publishes_to_the_queue() {
    let queue = TestQueue::new("1s");
    queue.declare().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, stdout, stderr) = simulate(&queue, dir.path(), &["--target", "queue"]);
    assert!(ok, "{stdout}\n{stderr}");
    let (total, kinds) = counts(&stdout);
    assert_eq!(kinds.values().sum::<u32>(), total);
    assert!(stdout.contains("published (confirmed)"), "{stdout}");
    assert!(stdout.contains(&format!("{total} published")), "{stdout}");
    assert_eq!(queue.ready(queue.topology().work_queue()).await, total);
    // Sealed as the intake seals them: the broker holds no body in clear,
    // and each opens with the seal key file to a notification body.
    let sealer = seal_keys();
    let messages = queue.browse(queue.topology().work_queue()).await;
    assert_eq!(messages.len() as u32, total);
    for (properties, body) in &messages {
        let meta = MessageMeta::from_properties(properties, Utc::now());
        assert_eq!(meta.content_type.as_deref(), Some(SEALED_CONTENT_TYPE));
        assert_eq!(meta.sealed_by.as_deref(), Some("test-seal-2026"));
        let plain = sealer
            .open(&meta, body)
            .expect("opens with the seal key file");
        assert!(plain.starts_with(b"GIFT_ORDER="), "a notification body");
        assert!(
            !body.windows(9).any(|w| w == b"REFNOEXT="),
            "no body in clear"
        );
    }
    assert!(dir.path().join("orders.csv").is_file());
    assert!(dir.path().join("expected.json").is_file());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_simulator_posts_to_the_intake_and_checks_every_receipt() {
    let queue = TestQueue::new("1s");
    queue.declare().await;
    // The intake binds port 0 and the test reads the address from its log.
    let mut intake = Daemon::start_command("intake", &queue, &[]);
    let url = format!("http://{}/ipn", intake.intake_addr().await);
    let probe = url.clone();
    let up = wait_until(Duration::from_secs(20), || {
        let probe = probe.clone();
        async move {
            reqwest::get(&probe)
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    assert!(up, "intake answers its GET probe");

    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, stdout, stderr) = simulate(
        &queue,
        dir.path(),
        &["--target", "http", "--intake-url", &url],
    );
    intake.signal("TERM");
    let status = intake.wait(Duration::from_secs(30)).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(status, Some(0), "intake drains and exits 0 on SIGTERM");
    let (total, kinds) = counts(&stdout);
    let refused = forged(&kinds);
    assert!(kinds["tampered"] > 0, "the run has forged copies: {stdout}");
    assert!(
        stdout.contains(&format!("{refused} forged copies refused")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{} receipts checked", total - refused)),
        "{stdout}"
    );
    assert_eq!(
        queue.ready(queue.topology().work_queue()).await,
        total - refused,
        "everything answered with a receipt is queued, forged copies are not"
    );
}

/// `--import-orders` registers the simulated orders before anything is
/// sent, so the notifications find their orders instead of landing as
/// unknown ones; without it, the database is not touched.
#[tokio::test(flavor = "multi_thread")]
async fn the_simulator_can_import_its_orders_before_sending() {
    let queue = TestQueue::new("1s");
    queue.declare().await;
    let db = crate::helpers::TestDb::new();
    let store = db.store().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_ipn-reconciler"))
        .args(["simulate", "--seed", "3", "--orders", "25", "--key-file"])
        .arg(repo_path("fixtures/keys/test.keys"))
        .arg("--out")
        .arg(dir.path())
        .args(["--target", "queue", "--import-orders"])
        .envs(queue.env())
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("run simulate");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("imported 25 new order(s)"), "{stdout}");
    assert_eq!(store.list_orders(None).await.expect("orders").len(), 25);
}
