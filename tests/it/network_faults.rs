//! The paths to the services break under load, the way real networks
//! break: a broker path cut for ten seconds (connections reset, new ones
//! refused), a broker path that goes silent (half-open: nothing closes,
//! nothing gets through; only heartbeats can tell), and a database path
//! cut for ten seconds. Each runs `serve` (worker only) through a TCP proxy
//! of its own while notifications keep arriving, and checks what an
//! operator relies on: `/readyz` is 503 while the path is gone and 200
//! once it is back, the worker consumes again within 30 s, the log has one
//! "lost" and one "back" line, every notification is applied exactly once
//! and nothing is parked, and SIGTERM afterwards stops the daemon within
//! its deadline.

use std::time::{Duration, Instant};

use crate::helpers::TestDb;
use crate::helpers::amqp::{
    TestQueue, amqp_url_via, broker_addr, count, paid_orders, resigned, test_key, wait_until,
};
use crate::helpers::daemon::Daemon;
use crate::helpers::proxy::Proxy;

/// Orders (one payment each) of a run.
const ORDERS: usize = 1_200;

/// How long a cut lasts (the operator test: ten seconds).
const CUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    /// Broker path: connections reset, new ones refused.
    BrokerCut,
    /// Broker path: silent, nothing closed.
    BrokerHeld,
    /// Database path: connections reset, new ones refused.
    DatabaseCut,
}

/// `GET path` of the daemon's operations endpoint, given up after 5 s.
async fn probe(daemon: &Daemon, path: &str) -> Option<(u16, String)> {
    daemon.get_within(path, Duration::from_secs(5)).await
}

async fn run(fault: Fault) {
    let db = TestDb::new();
    let store = db.store().await;
    let bodies = paid_orders(&store, "NET", ORDERS, 70_000_000).await;

    // Retries outlast the database cut (1+2+4+8+16 s), so that nothing is
    // parked because of it.
    let queue = TestQueue::new("1s,2s,4s,8s,16s");
    queue.declare().await;
    let (proxy, upstream_env): (Proxy, (&'static str, String)) = match fault {
        Fault::BrokerCut | Fault::BrokerHeld => {
            let proxy = Proxy::start(broker_addr()).await;
            let url = amqp_url_via(proxy.addr);
            (proxy, ("AMQP_URL", url))
        }
        Fault::DatabaseCut => {
            let proxy = Proxy::start("127.0.0.1:5432".parse().expect("addr")).await;
            let url = format!("postgres://postgres@{}/{}", proxy.addr, db.name);
            (proxy, ("DATABASE_URL", url))
        }
    };
    let mut daemon = Daemon::start_with(
        &db,
        &queue,
        &["--no-intake"],
        &[
            (upstream_env.0, &upstream_env.1),
            ("IPN_AMQP_HEARTBEAT", "2s"),
            ("IPN_DB_ACQUIRE_TIMEOUT", "1s"),
            ("IPN_BATCH_SIZE", "32"),
            ("IPN_SHUTDOWN_DEADLINE", "10s"),
        ],
    );
    let ready = wait_until(Duration::from_secs(30), || async {
        daemon.ready_status().await == Some(200)
    })
    .await;
    assert!(ready, "ready before the fault; logs:\n{}", daemon.tail());

    // The first half flows; the fault strikes once part of it is applied.
    let half = ORDERS / 2;
    queue.publish(&bodies[..half]).await;
    let flowing = wait_until(Duration::from_secs(60), || async {
        count(&db.url, "SELECT count(*) FROM notifications").await >= 100
    })
    .await;
    assert!(flowing, "notifications flow; logs:\n{}", daemon.tail());

    let open = match fault {
        Fault::BrokerHeld => proxy.hold().await,
        Fault::BrokerCut | Fault::DatabaseCut => proxy.cut().await,
    };
    let struck = Instant::now();
    assert!(open > 0, "the daemon had connections on the path");
    // Noticed: with a silent path, only the heartbeats (2 s here) can tell.
    let noticed = wait_until(Duration::from_secs(8), || async {
        daemon.ready_status().await == Some(503)
    })
    .await;
    assert!(
        noticed,
        "{fault:?}: /readyz turns 503; logs:\n{}",
        daemon.tail()
    );
    if fault == Fault::DatabaseCut {
        // The cause, once, with where: the URL (no password) and why.
        let (_, body) = probe(&daemon, "/readyz").await.expect("/readyz");
        let line = body
            .lines()
            .find(|line| line.starts_with("database:"))
            .unwrap_or_default()
            .to_owned();
        assert!(
            line.contains(&proxy.addr.to_string()) && line.matches("database").count() <= 3,
            "the database line names the URL and its cause once: {body}"
        );
        eprintln!("/readyz during the database cut: {line}");
    }
    // The second half arrives while the path is gone.
    queue.publish(&bodies[half..]).await;
    if let Some(rest) = CUT.checked_sub(struck.elapsed()) {
        // The fault's length, not a wait for a condition: the path stays
        // gone for the whole cut while the daemon keeps trying.
        tokio::time::sleep(rest).await;
    }
    assert_eq!(
        daemon.ready_status().await,
        Some(503),
        "{fault:?}: still not ready at the end of the cut"
    );
    assert_eq!(
        probe(&daemon, "/metrics")
            .await
            .map(|(_, metrics)| metrics.contains(match fault {
                Fault::DatabaseCut => "ipn_database_up 0",
                _ => "ipn_broker_connected 0",
            })),
        Some(true),
        "{fault:?}: the gauge says the dependency is down"
    );

    proxy.restore().await;
    let back = wait_until(Duration::from_secs(30), || async {
        daemon.ready_status().await == Some(200)
    })
    .await;
    assert!(
        back,
        "{fault:?}: consuming again within 30 s of the path's return; logs:\n{}",
        daemon.tail()
    );
    let done = wait_until(Duration::from_secs(120), || async {
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
        "{fault:?}: every order paid; {} of {ORDERS}; logs:\n{}",
        count(&db.url, "SELECT count(*) FROM orders WHERE status = 'paid'").await,
        daemon.tail()
    );

    // Exactly once: one notification row and one ledger row per order,
    // nothing else recorded, nothing waiting or parked.
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM notifications").await,
        ORDERS as i64
    );
    assert_eq!(
        count(
            &db.url,
            "SELECT count(*) FROM notifications WHERE outcome = 'applied'"
        )
        .await,
        ORDERS as i64
    );
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM order_events").await,
        ORDERS as i64
    );
    let parking = queue.topology().parking_queue();
    assert_eq!(queue.ready(&parking).await, 0, "nothing parked");
    let work = queue.topology().work_queue().to_owned();
    let drained = wait_until(Duration::from_secs(30), || async {
        queue.ready(&work).await == 0
    })
    .await;
    assert!(drained, "the work queue is empty");

    // One line when the path was lost, one when it came back.
    let (lost, back) = match fault {
        Fault::DatabaseCut => ("database connection lost", "database connection back"),
        _ => ("broker connection lost", "broker connection back"),
    };
    assert_eq!(
        (daemon.lines_with(lost), daemon.lines_with(back)),
        (1, 1),
        "{fault:?}: one `{lost}` and one `{back}` line; logs:\n{}",
        daemon.tail()
    );

    // And it still stops cleanly, within its deadline.
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(15)).await, Some(0));
    let logs = daemon.logs();
    assert!(
        !logs.contains("could not close a broker connection in time"),
        "{fault:?}: shutdown closes its connections; logs:\n{}",
        daemon.tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_cut_of_the_broker_path_loses_nothing_and_says_so() {
    run(Fault::BrokerCut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_broker_path_is_found_by_heartbeats_and_rebuilt() {
    run(Fault::BrokerHeld).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_cut_of_the_database_path_loses_nothing_and_says_so() {
    run(Fault::DatabaseCut).await;
}

/// POSTs `body` to the intake; the status and the answer.
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

/// The standalone intake's side: while its broker path is cut, a
/// notification gets 503 and no receipt (the processor retries) and
/// `/readyz` says the broker is down; once the path is back, the same
/// notification gets its receipt and is queued once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intake_gives_no_receipt_while_its_broker_path_is_cut() {
    let queue = TestQueue::new("1s");
    queue.declare().await;
    let proxy = Proxy::start(broker_addr()).await;
    let amqp = amqp_url_via(proxy.addr);
    let mut intake = Daemon::start_command(
        "intake",
        &queue,
        &[("AMQP_URL", &amqp), ("IPN_AMQP_HEARTBEAT", "2s")],
    );
    let url = format!("http://{}/ipn", intake.intake_addr().await);
    let ready = wait_until(Duration::from_secs(30), || async {
        intake.ready_status().await == Some(200)
    })
    .await;
    assert!(ready, "ready; logs:\n{}", intake.tail());
    let body = resigned(
        "03-shop-1001-complete.txt",
        "NET-INTAKE",
        71_000_001,
        &test_key(),
    );

    assert!(proxy.cut().await > 0, "the intake had a broker connection");
    let (status, answer) = post(&url, body.clone()).await;
    assert_eq!(status, 503, "no receipt without a confirm: {answer}");
    assert!(!answer.contains("<EPAYMENT>") && !answer.contains("<sig"));
    let noticed = wait_until(Duration::from_secs(10), || async {
        intake.ready_status().await == Some(503)
    })
    .await;
    assert!(noticed, "/readyz says the broker is down");
    let work = queue.topology().work_queue().to_owned();
    assert_eq!(queue.ready(&work).await, 0, "nothing queued");

    proxy.restore().await;
    let back = wait_until(Duration::from_secs(30), || async {
        intake.ready_status().await == Some(200)
    })
    .await;
    assert!(back, "ready again; logs:\n{}", intake.tail());
    let (status, answer) = post(&url, body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer.contains("<sig") || answer.contains("<EPAYMENT>"),
        "{answer}"
    );
    assert_eq!(queue.ready(&work).await, 1, "queued once");
    assert_eq!(
        (
            intake.lines_with("broker connection lost"),
            intake.lines_with("broker connection back")
        ),
        (1, 1),
        "logs:\n{}",
        intake.tail()
    );
    intake.signal("TERM");
    assert_eq!(intake.wait(Duration::from_secs(15)).await, Some(0));
}
