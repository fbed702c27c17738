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
