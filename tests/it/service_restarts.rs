//! The services themselves restart under load, with the worker left
//! running: PostgreSQL is restarted once (`pg_ctlcluster ... restart`) and
//! the RabbitMQ application is stopped and started once (`rabbitmqctl
//! stop_app` / `start_app`) while 5,000 orders are paid. Every order must
//! end exact, nothing parked, with one "lost" and one "back" line per
//! service in the log.
//!
//! These restart the servers every other test uses, so the test runs alone
//! (`.config/nextest.toml` gives it every test thread), and a guard starts
//! both services again whatever happens to the test.

use std::process::Command;
use std::time::Duration;

use crate::helpers::TestDb;
use crate::helpers::amqp::{TestQueue, count, paid_orders, wait_until};
use crate::helpers::daemon::Daemon;

const ORDERS: usize = 5_000;

/// The PostgreSQL cluster version (`/etc/postgresql/<version>`).
fn pg_version() -> String {
    let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .expect("/etc/postgresql")
        .filter_map(|entry| Some(entry.ok()?.file_name().to_str()?.to_owned()))
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL cluster")
}

fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("{program} {args:?}: {err}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Starts both services again when the test ends, passed or not: the next
/// tests need them.
struct Services;

impl Drop for Services {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").output();
        let _ = Command::new("rabbitmqctl")
            .args(["await_startup", "--timeout", "120"])
            .output();
        let _ = Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &pg_version(), "main", "start"])
            .output();
    }
}

async fn recorded(db: &TestDb) -> i64 {
    count(&db.url, "SELECT count(*) FROM notifications").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_and_a_broker_restart_under_load_lose_nothing() {
    let _services = Services;
    let db = TestDb::new();
    let store = db.store().await;
    let bodies = paid_orders(&store, "RST", ORDERS, 80_000_000).await;
    drop(store);
    // Retries outlast a database restart.
    let queue = TestQueue::new("1s,2s,4s,8s,16s");
    queue.declare().await;
    let mut daemon = Daemon::start_with(
        &db,
        &queue,
        &["--no-intake"],
        &[
            ("IPN_AMQP_HEARTBEAT", "2s"),
            ("IPN_DB_ACQUIRE_TIMEOUT", "1s"),
            ("IPN_SHUTDOWN_DEADLINE", "10s"),
        ],
    );
    let up = wait_until(Duration::from_secs(30), || async {
        daemon.ready_status().await == Some(200)
    })
    .await;
    assert!(up, "ready; logs:\n{}", daemon.tail());

    // A third flows, then PostgreSQL restarts under it.
    let third = ORDERS / 3;
    queue.publish(&bodies[..third]).await;
    let flowing = wait_until(Duration::from_secs(60), || async {
        recorded(&db).await >= 300
    })
    .await;
    assert!(flowing, "notifications flow; logs:\n{}", daemon.tail());
    let version = pg_version();
    run(
        "pg_ctlcluster",
        &["--skip-systemctl-redirect", &version, "main", "restart"],
    );
    queue.publish(&bodies[third..2 * third]).await;
    let back = wait_until(Duration::from_secs(60), || async {
        daemon.ready_status().await == Some(200)
            && daemon.lines_with("database connection back") == 1
    })
    .await;
    assert!(back, "the database is back; logs:\n{}", daemon.tail());

    // Then the broker's application stops and starts.
    let before = recorded(&db).await;
    let flowing = wait_until(Duration::from_secs(60), || async {
        recorded(&db).await >= before + 200
    })
    .await;
    assert!(
        flowing,
        "notifications flow again; logs:\n{}",
        daemon.tail()
    );
    run("rabbitmqctl", &["stop_app"]);
    let noticed = wait_until(Duration::from_secs(20), || async {
        daemon.ready_status().await == Some(503)
    })
    .await;
    run("rabbitmqctl", &["start_app"]);
    run("rabbitmqctl", &["await_startup", "--timeout", "120"]);
    assert!(noticed, "/readyz said 503 while the broker was stopped");
    let back = wait_until(Duration::from_secs(60), || async {
        daemon.ready_status().await == Some(200)
    })
    .await;
    assert!(back, "consuming again; logs:\n{}", daemon.tail());
    queue.publish(&bodies[2 * third..]).await;

    let done = wait_until(Duration::from_secs(180), || async {
        count(
            &db.url,
            "SELECT count(*) FROM orders WHERE status = 'paid' AND paid_minor = 10700",
        )
        .await
            == ORDERS as i64
    })
    .await;
    assert!(
        done,
        "every order paid: {} of {ORDERS}; logs:\n{}",
        count(&db.url, "SELECT count(*) FROM orders WHERE status = 'paid'").await,
        daemon.tail()
    );
    assert_eq!(
        recorded(&db).await,
        ORDERS as i64,
        "one row per notification"
    );
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM order_events").await,
        ORDERS as i64,
        "one ledger row per notification"
    );
    assert_eq!(
        queue.ready(&queue.topology().parking_queue()).await,
        0,
        "nothing parked"
    );
    for message in [
        "database connection lost",
        "database connection back",
        "broker connection lost",
        "broker connection back",
    ] {
        assert_eq!(
            daemon.lines_with(message),
            1,
            "one `{message}` line; logs:\n{}",
            daemon.tail()
        );
    }
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(20)).await, Some(0));
}
