//! What an operator runs outside the daemon's own code: the example
//! configuration of `deploy/`, and the command line in a pipeline.

use std::time::Duration;

use crate::helpers::TestDb;
use crate::helpers::amqp::{TestQueue, wait_until};
use crate::helpers::daemon::Daemon;
use crate::helpers::repo_path;

/// `serve --config deploy/example.toml` starts and becomes ready: the
/// example is a working configuration, not just documentation. The test's
/// own database, queue and free ports come from the environment, which
/// overrides the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_configuration_serves_and_becomes_ready() {
    let db = TestDb::new();
    db.store().await;
    let queue = TestQueue::new("200ms");
    let example = repo_path("deploy/example.toml").display().to_string();
    let daemon = Daemon::start_with(&db, &queue, &["--config", &example], &[]);
    let ready = wait_until(Duration::from_secs(30), || async {
        matches!(daemon.get("/readyz").await, Some((200, _)))
    })
    .await;
    assert!(ready, "ready; logs:\n{}", daemon.logs());
    let logs = daemon.logs();
    assert!(
        logs.contains("\"keys\":\"test-2026,test-2025\""),
        "the loaded key ids, never the secrets, are logged: {logs}"
    );
    assert!(!logs.contains("TEST-ONLY-2026-key"), "{logs}");
}

/// `ipn-reconciler ... | head` closes standard output early: the command
/// exits quietly with 0 instead of "error: Broken pipe" or a panic.
#[test]
fn a_closed_standard_output_ends_the_command_quietly() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    // Closed before the command starts: its first write fails for certain.
    drop(reader);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ipn-reconciler"))
        .args(["ipn", "verify", "--key-file"])
        .arg(repo_path("fixtures/keys/test.keys"))
        .arg(repo_path("fixtures/ipn/03-shop-1001-complete.txt"))
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "nothing on stderr: {stderr}");
}

/// `/readyz` names the dependency that is really missing. With a database
/// name that does not exist, the database line says so and the broker line
/// says the worker waits for the database (the broker itself is fine);
/// with wrong broker credentials, the broker line carries the broker's
/// refusal and the log has one line for it, not one per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_what_is_missing() {
    let db = TestDb::new();
    let queue = TestQueue::new("200ms");
    let missing = format!("{}/{}_absent", crate::helpers::server_url(), db.name);
    let daemon = Daemon::start(&db, &queue, &[("DATABASE_URL", &missing)]);
    let body = readyz_until(&daemon, |body| body.contains("does not exist")).await;
    assert!(
        body.contains("does not exist"),
        "the database is named; /readyz:\n{body}"
    );
    assert!(
        body.contains("not consuming yet: waiting for the database"),
        "the broker line says what it waits for: {body}"
    );
    assert!(!body.contains("not connected yet"), "{body}");
    drop(daemon);

    let db = TestDb::new();
    db.store().await;
    let url = crate::helpers::amqp::amqp_url().replacen("guest:guest@", "guest:wrong@", 1);
    let daemon = Daemon::start(
        &db,
        &queue,
        &[
            ("AMQP_URL", &url),
            ("RUST_LOG", "info,ipn_reconciler::worker::consume=debug"),
        ],
    );
    let body = readyz_until(&daemon, |body| body.contains("ACCESS_REFUSED")).await;
    assert!(
        body.contains("ACCESS_REFUSED"),
        "the broker's refusal is named; /readyz:\n{body}"
    );
    assert!(!body.contains("guest:wrong"), "no password: {body}");
    // Several refused attempts (each logged at debug level), one line.
    let attempts = wait_until(Duration::from_secs(20), || async {
        daemon
            .logs()
            .matches("cannot consume yet; retrying")
            .count()
            >= 4
    })
    .await;
    assert!(
        attempts,
        "the daemon keeps trying; logs:\n{}",
        daemon.logs()
    );
    let warnings = daemon
        .logs()
        .lines()
        .filter(|line| line.contains("\"WARN\""))
        .filter(|line| line.contains("\"dependency\":\"broker\""))
        .count();
    assert_eq!(
        warnings,
        1,
        "one line for the outage; logs:\n{}",
        daemon.logs()
    );
}

/// The body of `/readyz` once `done` holds for it (polled, 30 s at most),
/// or the last one seen.
async fn readyz_until(daemon: &Daemon, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let body = daemon
            .get("/readyz")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default();
        if done(&body) || tokio::time::Instant::now() >= deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
