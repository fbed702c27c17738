//! `ipn-reconciler serve` as a real process: end to end from `publish`,
//! the operations endpoint, clean logs, SIGKILL and SIGTERM.

use std::time::Duration;

use crate::helpers::amqp::{
    TestQueue, count, import_fixture_orders, import_orders_csv, key_env, read, resigned, run_cli,
    test_key, wait_until,
};
use crate::helpers::daemon::Daemon;
use crate::helpers::{TestDb, expected_states, fixture_files, personal_data, repo_path};
use ipn_reconciler::settings::{
    ConsoleSection, DatabaseSection, PositiveDuration, SettlementSection,
};

async fn notifications(db: &TestDb) -> i64 {
    count(&db.url, "SELECT count(*) FROM notifications").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixtures_reconcile_end_to_end_with_metrics_and_clean_logs() {
    let db = TestDb::new();
    let store = db.store().await;
    import_fixture_orders(&store).await;
    let queue = TestQueue::new("200ms,500ms");
    let mut daemon = Daemon::start(&db, &queue, &[]);

    let ready = wait_until(Duration::from_secs(20), || async {
        matches!(daemon.get("/readyz").await, Some((200, _)))
    })
    .await;
    assert!(ready, "ready; logs:\n{}", daemon.logs());
    assert_eq!(daemon.get("/healthz").await.map(|r| r.0), Some(200));

    let files: Vec<String> = fixture_files()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut args = vec!["publish".to_owned()];
    args.extend(files.iter().cloned());
    let (ok, stdout, stderr) = run_cli(args, queue.env()).await;
    assert!(ok, "publish: {stderr}");
    assert!(
        stdout.contains("published 22 of 22 (confirmed)"),
        "{stdout}"
    );

    let settled = wait_until(Duration::from_secs(30), || async {
        notifications(&db).await == 22
    })
    .await;
    assert!(settled, "logs:\n{}", daemon.logs());
    for (order_ref, expected) in expected_states() {
        let order = store
            .order(&order_ref)
            .await
            .expect("query")
            .expect("order");
        assert_eq!(order.status.as_str(), expected["status"], "{order_ref}");
        assert_eq!(order.paid, expected["paid"], "{order_ref}");
        assert_eq!(order.refunded, expected["refunded"], "{order_ref}");
        assert_eq!(
            order.processor_ref.as_deref(),
            expected["processor_ref"].as_str(),
            "{order_ref}"
        );
    }

    let expected_series = [
        "ipn_notifications_total{outcome=\"applied\"} 16",
        "ipn_notifications_total{outcome=\"ignored\"} 5",
        "ipn_notifications_total{outcome=\"mismatch\"} 1",
        "ipn_broker_connected 1",
        "ipn_database_up 1",
        "ipn_processing_seconds_count 22",
        "ipn_in_flight 0",
    ];
    // The last commit lands a moment before its metrics are updated: wait
    // (bounded) for the counters to catch up, then check them.
    wait_until(Duration::from_secs(10), || async {
        daemon
            .get("/metrics")
            .await
            .is_some_and(|(_, m)| expected_series.iter().all(|s| m.contains(s)))
    })
    .await;
    let (status, metrics) = daemon.get("/metrics").await.expect("metrics");
    assert_eq!(status, 200);
    for series in expected_series {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
    // Each verification is counted once, under the stage that made it.
    assert!(
        metrics.contains(
            "ipn_signatures_total{stage=\"worker\",algorithm=\"sha3-256\",result=\"valid\"} 22"
        ),
        "{metrics}"
    );

    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(40)).await, Some(0));

    // The logs: JSON, one span per notification, and nothing personal.
    let logs = daemon.logs();
    assert!(logs.lines().count() > 22);
    assert!(
        logs.lines()
            .all(|line| serde_json::from_str::<serde_json::Value>(line).is_ok())
    );
    assert!(
        logs.contains("\"order_ref\":\"SHOP-1001\""),
        "references are logged"
    );
    for value in personal_data() {
        assert!(!logs.contains(&value), "personal data in the logs: {value}");
    }
    let mut secrets: Vec<String> = std::fs::read_to_string(repo_path("fixtures/keys/test.keys"))
        .expect("keys")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().last().map(str::to_owned))
        .collect();
    secrets.push(
        std::fs::read_to_string(repo_path("fixtures/keys/pseudonym.key"))
            .expect("pseudonym key")
            .trim()
            .to_owned(),
    );
    for secret in secrets {
        assert!(!logs.contains(&secret), "a key secret in the logs");
    }
    assert!(
        !logs.contains("guest:guest"),
        "the AMQP password is redacted"
    );
    for line in logs.lines() {
        assert!(
            !ipn_reconciler::domain::contains_pan(line),
            "a card number in: {line}"
        );
    }
}

/// 1,000 orders, each authorized then completed: 2,000 distinct bodies.
fn stream_of_2000() -> (String, Vec<Vec<u8>>) {
    let key = test_key();
    let mut csv = String::from("order_ref,amount,currency\n");
    let mut bodies = Vec::with_capacity(2000);
    for n in 0..1000u64 {
        let order_ref = format!("K-{n:04}");
        csv.push_str(&format!("{order_ref},107.00,EUR\n"));
        bodies.push(resigned(
            "02-shop-1001-authorized.txt",
            &order_ref,
            60_000_000 + n,
            &key,
        ));
        bodies.push(resigned(
            "03-shop-1001-complete.txt",
            &order_ref,
            60_000_000 + n,
            &key,
        ));
    }
    (csv, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_stream_and_restarted_applies_everything_exactly_once() {
    let db = TestDb::new();
    let store = db.store().await;
    let (csv, bodies) = stream_of_2000();
    import_orders_csv(&store, &csv).await;
    let queue = TestQueue::new("200ms,500ms");
    queue.declare().await;
    queue.publish(&bodies).await;

    let mut first = Daemon::start(&db, &queue, &[("IPN_CONCURRENCY", "8")]);
    let started = wait_until(Duration::from_secs(30), || async {
        notifications(&db).await >= 300
    })
    .await;
    assert!(started, "logs:\n{}", first.logs());
    first.child.kill().expect("SIGKILL");
    let _ = first.wait(Duration::from_secs(10)).await;
    let at_kill = notifications(&db).await;
    assert!(at_kill < 2000, "killed in the middle (at {at_kill})");

    let mut second = Daemon::start(&db, &queue, &[("IPN_CONCURRENCY", "8")]);
    let done = wait_until(Duration::from_secs(50), || async {
        notifications(&db).await == 2000
    })
    .await;
    assert!(done, "all recorded; logs:\n{}", second.logs());
    second.signal("TERM");
    assert_eq!(second.wait(Duration::from_secs(40)).await, Some(0));

    assert_eq!(
        count(&db.url, "SELECT count(*) FROM order_events").await,
        2000
    );
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM orders WHERE status = 'paid'").await,
        1000
    );
    assert_eq!(queue.ready(queue.topology().work_queue()).await, 0);
    assert_eq!(queue.ready(&queue.topology().parking_queue()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_work_and_leaves_the_rest_queued() {
    let db = TestDb::new();
    let store = db.store().await;
    let (csv, mut bodies) = stream_of_2000();
    bodies.truncate(600);
    import_orders_csv(&store, &csv).await;
    let queue = TestQueue::new("200ms,500ms");
    queue.declare().await;
    queue.publish(&bodies).await;

    let mut daemon = Daemon::start(
        &db,
        &queue,
        &[("IPN_CONCURRENCY", "4"), ("IPN_PREFETCH", "50")],
    );
    let started = wait_until(Duration::from_secs(30), || async {
        notifications(&db).await >= 50
    })
    .await;
    assert!(started, "logs:\n{}", daemon.logs());
    daemon.signal("TERM");
    assert_eq!(
        daemon.wait(Duration::from_secs(40)).await,
        Some(0),
        "logs:\n{}",
        daemon.logs()
    );
    let recorded = notifications(&db).await;
    assert!(recorded < 600, "stopped before the end ({recorded})");
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM order_events").await,
        recorded,
        "every recorded notification was committed with its ledger row"
    );
    // Nothing lost: what was not recorded is back in the work queue. (A
    // quorum queue may also return a message whose ack was still being
    // settled when the channel closed; redelivered, it is a duplicate,
    // which the restart below shows changes nothing.)
    let expected = 600 - recorded as u32;
    let work = queue.topology().work_queue().to_owned();
    let all_back = wait_until(Duration::from_secs(10), || async {
        queue.ready(&work).await >= expected
    })
    .await;
    assert!(
        all_back,
        "{} ready, expected at least {expected}; logs:\n{}",
        queue.ready(&work).await,
        daemon
            .logs()
            .lines()
            .filter(|l| !l.contains("notification handled"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // A restart drains the rest: each notification applied exactly once.
    let mut restarted = Daemon::start(&db, &queue, &[]);
    let drained = wait_until(Duration::from_secs(40), || async {
        notifications(&db).await == 600 && queue.ready(&work).await == 0
    })
    .await;
    assert!(drained, "logs:\n{}", restarted.logs());
    restarted.signal("TERM");
    assert_eq!(restarted.wait(Duration::from_secs(40)).await, Some(0));
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM order_events").await,
        600
    );
    let logs = daemon.logs();
    assert!(logs.contains("SIGTERM received"), "{logs}");
    assert!(logs.contains("worker stopped"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_an_invalid_configuration_with_a_clear_message() {
    let queue = TestQueue::new("200ms");
    let cases: Vec<(Vec<(&'static str, String)>, &str)> = vec![
        (vec![("IPN_RETRY_DELAYS", "5s,soon".into())], "soon"),
        (
            vec![("IPN_KEYS_FILE", "/nonexistent/ipn.keys".into())],
            "/nonexistent/ipn.keys",
        ),
        (vec![("AMQP_URL", "rabbit://nowhere".into())], "AMQP_URL"),
        (vec![("IPN_ORPHAN_WINDOW", "forever".into())], "forever"),
    ];
    for (overrides, expected) in cases {
        let mut env = queue.env();
        env.extend(key_env());
        env.push(("IPN_HTTP_ADDR", "127.0.0.1:0".into()));
        env.push(("IPN_INTAKE_ADDR", "127.0.0.1:0".into()));
        env.extend(overrides);
        let (ok, _, stderr) = run_cli(vec!["serve".into()], env).await;
        assert!(!ok, "refused");
        assert!(stderr.contains(expected), "{expected} in: {stderr}");
    }
}

/// `serve` runs the intake next to the worker: a POST answered with a valid
/// receipt ends reconciled, and a forged one is refused without a receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_the_processor_and_reconciles_what_it_queued() {
    let db = TestDb::new();
    let store = db.store().await;
    import_fixture_orders(&store).await;
    let queue = TestQueue::new("200ms,500ms");
    let daemon = Daemon::start(&db, &queue, &[]);
    let ready = wait_until(Duration::from_secs(20), || async {
        matches!(daemon.get("/readyz").await, Some((200, _)))
    })
    .await;
    assert!(ready, "ready; logs:\n{}", daemon.logs());

    let url = format!("http://{}/ipn", daemon.intake_addr().await);
    let client = reqwest::Client::new();
    let body = read(&repo_path("fixtures/ipn/03-shop-1001-complete.txt"));
    let response = client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 200);
    let receipt = response.text().await.expect("receipt");
    ipn_reconciler::simulate::deliver::check_receipt(&body, &test_key(), &receipt)
        .expect("a valid sha3-256 receipt");
    assert!(
        receipt.starts_with("<sig algo=\"sha3-256\" date=\""),
        "{receipt}"
    );

    let forged = String::from_utf8(body)
        .expect("utf-8")
        .replace("IPN_TOTALGENERAL=107.00", "IPN_TOTALGENERAL=7.00");
    let refused = client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(forged)
        .send()
        .await
        .expect("POST");
    assert_eq!(refused.status().as_u16(), 403);
    assert!(!refused.text().await.expect("text").contains("<sig"));

    let applied = wait_until(Duration::from_secs(20), || async {
        store
            .order("SHOP-1001")
            .await
            .ok()
            .flatten()
            .is_some_and(|o| o.paid == "107.00")
    })
    .await;
    assert!(applied, "logs:\n{}", daemon.logs());
    assert_eq!(
        notifications(&db).await,
        1,
        "the forged copy never reached the queue"
    );
}

/// `Application::run_until_stopped` returns only once every task it started
/// has ended: the listeners (intake, operations endpoint, console), the
/// intake's publisher watch, the database watch, the gauges, the sweep and
/// the audit (`audit-interval`); and a standalone intake's (with its queue gauges) likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_in_process_returns_with_no_task_of_its_own_left() {
    use ipn_reconciler::app::{AppConfig, Application};
    use ipn_reconciler::settings::ConsoleAddr;
    use tokio_util::sync::CancellationToken;

    let db = TestDb::new();
    let queue = TestQueue::new("200ms,500ms");
    let any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let settings = ipn_reconciler::settings::Settings {
        database: DatabaseSection {
            database_url: db.secret_url(),
            create_db: true,
            ..queue.daemon_settings().database
        },
        console: ConsoleSection {
            console_addr: Some(ConsoleAddr(any_port)),
            ..queue.daemon_settings().console
        },
        settlement: SettlementSection {
            sweep_interval: PositiveDuration::new(Duration::from_secs(3600)).expect("positive"),
            ..queue.daemon_settings().settlement
        },
        ..queue.daemon_settings()
    };
    let loaded = settings.loaded().expect("settings");

    // (configuration, its name, the tasks it starts once ready)
    let serve = AppConfig::serve(&loaded).expect("serve config");
    assert!(serve.console.is_some() && serve.sweep.is_some());
    let intake = AppConfig::intake(&loaded).expect("intake config");
    for (config, name, started) in [(serve, "serve", 8), (intake, "intake", 4)] {
        let app = Application::build(config).await.expect("binds");
        let ops = app.ops_addr().expect("operations endpoint");
        let tasks = app.tasks();
        let stop = CancellationToken::new();
        let run = tokio::spawn(app.run_until_stopped(stop.clone().cancelled_owned()));

        let client = reqwest::Client::new();
        let ready = wait_until(Duration::from_secs(30), || async {
            let status = client
                .get(format!("http://{ops}/readyz"))
                .send()
                .await
                .map(|answer| answer.status().as_u16());
            matches!(status, Ok(200)) && tasks.running() == started
        })
        .await;
        assert!(
            ready,
            "{name}: ready with {started} tasks running (running: {})",
            tasks.running()
        );
        assert!(!tasks.is_closed(), "{name}");

        stop.cancel();
        tokio::time::timeout(Duration::from_secs(40), run)
            .await
            .unwrap_or_else(|_| panic!("{name} stops within its deadlines"))
            .expect("daemon task")
            .expect("the daemon runs");
        assert!(tasks.is_closed(), "{name}: the task set is closed");
        assert_eq!(tasks.running(), 0, "{name}: no task left running");
    }
}
