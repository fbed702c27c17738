//! `ipn-reconciler check` against the real services: a good configuration
//! passes, and each broken dependency fails on its own line with the exit
//! code of its kind (3 a dependency, 2 the configuration), without
//! creating anything.

use std::net::TcpListener;

use assert_cmd::Command;
use assert_cmd::assert::Assert;
use predicates::prelude::*;

use crate::helpers::amqp::{TestQueue, amqp_url};
use crate::helpers::{TestDb, repo_path, server_url};

/// `check` for this database and queue, with listeners on port 0 (any
/// free port: nothing is picked here and released for another to take).
fn check(db: &TestDb, queue: &TestQueue) -> Command {
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
        .envs(queue.env());
    cmd
}

fn stdout(assert: &Assert) -> String {
    String::from_utf8(assert.get_output().stdout.clone()).expect("utf-8")
}

/// The line of check `what`.
fn line<'a>(out: &'a str, what: &str) -> &'a str {
    out.lines()
        .find(|l| l[6..].starts_with(&format!("{what}:")))
        .unwrap_or_else(|| panic!("no line for {what}:\n{out}"))
}

async fn database_exists(name: &str) -> bool {
    let (client, connection) =
        tokio_postgres::connect(&format!("{}/postgres", server_url()), tokio_postgres::NoTls)
            .await
            .expect("connect");
    tokio::spawn(connection);
    client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("query")
        .is_some()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_good_configuration_passes_every_check_and_changes_nothing() {
    let db = TestDb::new();
    db.store().await;
    let queue = TestQueue::new("1s,5s");

    let run = check(&db, &queue).assert().code(0);
    let out = stdout(&run);
    let whats = [
        "configuration",
        "key file",
        "seal key file",
        "pseudonym key",
        "expected fields",
        "database",
        "schema",
        "broker",
        "topology",
        "http-addr",
        "intake-addr",
    ];
    assert_eq!(out.lines().count(), whats.len(), "{out}");
    for what in whats {
        assert!(line(&out, what).starts_with("ok    "), "{out}");
    }
    assert!(
        line(&out, "key file").contains("current `test-2026`"),
        "{out}"
    );
    assert!(
        line(&out, "seal key file").contains("2 key(s) in ")
            && line(&out, "seal key file")
                .contains("sealing with `test-seal-2026`, also opening `test-seal-2025`"),
        "{out}"
    );
    assert!(line(&out, "schema").contains(", 0 pending"), "{out}");
    assert!(
        line(&out, "topology").contains("declared by serve at start"),
        "{out}"
    );
    // Keys and passwords never show.
    assert!(!out.contains("TEST-ONLY"), "{out}");
    assert!(!out.contains("73f2410e"), "{out}");
    assert!(!out.contains("guest:guest"), "{out}");

    // Passive declares created nothing: still absent on a second run.
    let again = stdout(&check(&db, &queue).assert().code(0));
    assert!(
        line(&again, "topology").contains("not declared yet"),
        "{again}"
    );

    // Once serve (here: the test) declared it, every name exists.
    queue.declare().await;
    let declared = stdout(&check(&db, &queue).assert().code(0));
    let topology = line(&declared, "topology");
    assert!(
        topology.contains("exchange and 4 queue(s)") && topology.contains("0 message(s) parked"),
        "{topology}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_database_name_fails_its_line_and_is_not_created() {
    let db = TestDb::new();
    let queue = TestQueue::new("1s");
    let run = check(&db, &queue).assert().code(3);
    let out = stdout(&run);
    let database = line(&out, "database");
    assert!(
        database.starts_with("FAIL  database:") && database.contains("does not exist"),
        "{out}"
    );
    for what in ["configuration", "key file", "broker", "http-addr"] {
        assert!(line(&out, what).starts_with("ok    "), "{out}");
    }
    assert!(
        !database_exists(&db.name).await,
        "check created the database"
    );

    // With create-db, serve would create it: that passes.
    let run = check(&db, &queue)
        .env("IPN_CREATE_DB", "true")
        .assert()
        .code(0);
    assert!(line(&stdout(&run), "database").contains("serve creates it"));
    assert!(
        !database_exists(&db.name).await,
        "check created the database"
    );

    // An empty database without auto-migrate: the schema line fails.
    let (client, connection) =
        tokio_postgres::connect(&format!("{}/postgres", server_url()), tokio_postgres::NoTls)
            .await
            .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE \"{}\"", db.name))
        .await
        .expect("create empty");
    let run = check(&db, &queue)
        .env("AUTO_MIGRATE", "false")
        .assert()
        .code(3);
    let out = stdout(&run);
    assert!(line(&out, "database").starts_with("ok    "), "{out}");
    assert!(
        line(&out, "schema").starts_with("FAIL  schema: none, and auto-migrate is off"),
        "{out}"
    );
    // Nothing was created in it either.
    let run = check(&db, &queue).assert().code(0);
    assert!(line(&stdout(&run), "schema").contains("none yet"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_broker_fails_its_line() {
    let db = TestDb::new();
    db.store().await;
    let queue = TestQueue::new("1s");
    // Nothing listens on port 1 (privileged; never handed out as a free port).
    let closed = "127.0.0.1:1";
    let url = amqp_url().replace("127.0.0.1:5672", closed);
    assert_ne!(url, amqp_url(), "the test broker is on 127.0.0.1:5672");
    let run = check(&db, &queue).env("AMQP_URL", &url).assert().code(3);
    let out = stdout(&run);
    let broker = line(&out, "broker");
    assert!(
        broker.starts_with("FAIL  broker:") && broker.contains(closed),
        "{out}"
    );
    assert!(!broker.contains("guest:guest"), "{broker}");
    assert!(line(&out, "database").starts_with("ok    "), "{out}");
}

/// Wrong broker credentials end `check` at once with the broker's own
/// refusal on the broker's line, and never the password.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_broker_credentials_fail_their_line_with_the_refusal() {
    let db = TestDb::new();
    db.store().await;
    let queue = TestQueue::new("1s");
    let url = amqp_url().replacen("guest:guest@", "guest:not-the-password@", 1);
    assert_ne!(url, amqp_url(), "the test broker's URL has guest:guest");
    let run = check(&db, &queue).env("AMQP_URL", &url).assert().code(3);
    let out = stdout(&run);
    let broker = line(&out, "broker");
    assert!(
        broker.starts_with("FAIL  broker:") && broker.contains("ACCESS_REFUSED"),
        "{out}"
    );
    assert!(!out.contains("not-the-password"), "{out}");
    assert!(line(&out, "database").starts_with("ok    "), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_listener_port_fails_its_line() {
    let db = TestDb::new();
    db.store().await;
    let queue = TestQueue::new("1s");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let run = check(&db, &queue)
        .env("IPN_HTTP_ADDR", addr.to_string())
        .assert()
        .code(3);
    let out = stdout(&run);
    assert!(
        line(&out, "http-addr").starts_with(&format!(
            "FAIL  http-addr: cannot listen on {addr} for the operations endpoint"
        )),
        "{out}"
    );
    assert!(line(&out, "intake-addr").starts_with("ok    "), "{out}");
    drop(taken);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_configuration_exits_2() {
    let db = TestDb::new();
    db.store().await;
    let queue = TestQueue::new("1s");
    check(&db, &queue)
        .args(["--prefetch", "0"])
        .assert()
        .code(2)
        .stdout(predicate::str::starts_with(
            "FAIL  configuration: invalid `prefetch` (from --prefetch)",
        ));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("ipn.toml");
    std::fs::write(&config, "prefech = 3\n").expect("write");
    check(&db, &queue)
        .arg("--config")
        .arg(&config)
        .assert()
        .code(2)
        .stdout(predicate::str::contains("did you mean `prefetch`?"));
    // A key file that cannot be read is configuration too, even when a
    // dependency fails as well; the other checks still run.
    let run = check(&db, &queue)
        .env("IPN_KEYS_FILE", dir.path().join("missing.keys"))
        .env(
            "DATABASE_URL",
            format!("{}/ipn_check_no_such_db", server_url()),
        )
        .assert()
        .code(2);
    let out = stdout(&run);
    assert!(
        line(&out, "key file").starts_with("FAIL  key file:"),
        "{out}"
    );
    assert!(
        line(&out, "database").starts_with("FAIL  database:"),
        "{out}"
    );
    assert!(line(&out, "broker").starts_with("ok    "), "{out}");
}

/// A command that gives up on the broker, refused or on a path that takes
/// TCP and then says nothing (given up after amqp-heartbeat, lapin's I/O
/// thread still waiting on it), exits 3 with the reason, and shuts its
/// runtime down under that thread without a panic.
#[test]
fn commands_that_give_up_on_the_broker_exit_cleanly() {
    // Never accepted: the kernel completes the handshake, nobody speaks.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let refused_addr = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let body = repo_path("fixtures/ipn/01-shop-1001-pending.txt");
    for (addr, reason) in [
        (silent_addr, "no answer within 2s"),
        (refused_addr, "Connection refused"),
    ] {
        for args in [
            vec!["publish".to_owned(), body.display().to_string()],
            vec!["parked".to_owned(), "list".to_owned()],
        ] {
            Command::cargo_bin("ipn-reconciler")
                .expect("binary")
                .args(&args)
                .env_remove("IPN_CONFIG")
                .env("AMQP_URL", format!("amqp://guest:guest@{addr}/%2f"))
                .env("IPN_SEAL_KEYS_FILE", repo_path("fixtures/keys/test.seal"))
                .env("IPN_AMQP_HEARTBEAT", "2s")
                .assert()
                .code(3)
                .stderr(predicate::str::contains(reason))
                .stderr(predicate::str::contains("panicked").not());
        }
    }
    drop(silent);
}
