//! The intake against hostile or broken clients, over raw TCP where a
//! well-behaved HTTP client cannot misbehave enough: slow headers, slow
//! bodies, too many connections, oversized bodies, refused callers whose
//! bodies must not be read, and the standalone `intake` stopping on
//! SIGTERM while a slow client holds a connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::helpers::amqp::{TestQueue, read, wait_until};
use crate::helpers::daemon::Daemon;
use crate::helpers::repo_path;
use ipn_reconciler::app::{AppConfig, Application};
use ipn_reconciler::metrics::Metrics;
use ipn_reconciler::settings::{AllowNetworks, Settings};
use ipn_reconciler::settings::{IntakeSection, NotificationSection, PositiveDuration};
use std::num::NonZero;

/// An intake in this process, on a free port, until dropped.
struct RunningIntake {
    addr: SocketAddr,
    metrics: Metrics,
    stop: CancellationToken,
}

impl Drop for RunningIntake {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl RunningIntake {
    async fn start(settings: Settings) -> Self {
        let keys = ipn_reconciler::keys::read_key_ring(&repo_path("fixtures/keys/test.keys"))
            .expect("keys");
        let loaded = settings.loaded().expect("settings");
        let mut config = AppConfig::intake_with_keys(&loaded, keys).expect("intake config");
        config.ops_addr = None;
        let app = Application::build(config).await.expect("intake binds");
        let addr = app.intake_addr().expect("intake address");
        let metrics = app.metrics().clone();
        let stop = CancellationToken::new();
        tokio::spawn(app.run_until_stopped(stop.clone().cancelled_owned()));
        Self {
            addr,
            metrics,
            stop,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/ipn", self.addr)
    }

    /// The value of `ipn_intake_requests_total{result=...}` (0 when absent).
    fn count(&self, result: &str) -> u64 {
        let prefix = format!("ipn_intake_requests_total{{result=\"{result}\"}} ");
        self.metrics
            .encode()
            .lines()
            .find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Reads what the server sends until it closes the connection (or resets
/// it, or `limit` passes); returns it with the time it took.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the connection was still open after {limit:?}; received {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

fn genuine_body() -> Vec<u8> {
    read(&repo_path("fixtures/ipn/03-shop-1001-complete.txt"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_sends_its_header_slowly_is_dropped_within_the_timeout() {
    let queue = TestQueue::new("1s");
    let timeout = Duration::from_secs(1);
    let intake = RunningIntake::start(Settings {
        intake: IntakeSection {
            intake_header_timeout: PositiveDuration::new(timeout).expect("positive"),
            ..queue.daemon_settings().intake
        },
        ..queue.daemon_settings()
    })
    .await;

    // A slowloris: a header trickled one byte at a time, which must not
    // keep pushing the deadline back.
    let mut slow = TcpStream::connect(intake.addr).await.expect("connect");
    slow.write_all(b"POST /ipn HTTP/1.1\r\nHost: intake\r\nX-Slow: ")
        .await
        .expect("start of header");
    let (mut reader, mut writer) = slow.into_split();
    let trickle = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(100));
        loop {
            every.tick().await;
            if writer.write_all(b"a").await.is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => panic!("a trickling client held its connection for 10s"),
        }
    }
    let took = started.elapsed();
    trickle.abort();
    let received = String::from_utf8_lossy(&received);
    assert!(
        received.starts_with("HTTP/1.1 408"),
        "answered {received:?}"
    );
    assert!(
        took < timeout + Duration::from_secs(3),
        "dropped after {took:?}"
    );

    // A client that connects and sends nothing is dropped too, silently.
    let mut silent = TcpStream::connect(intake.addr).await.expect("connect");
    let (received, took) = read_until_closed(&mut silent, Duration::from_secs(10)).await;
    assert_eq!(received, "");
    assert!(
        took < timeout + Duration::from_secs(3),
        "dropped after {took:?}"
    );
    assert_eq!(intake.count("header_timeout"), 2);

    // A client that sends its request in time is answered as usual.
    let response = reqwest::Client::new()
        .post(intake.url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(genuine_body())
        .send()
        .await
        .expect("POST");
    // Refused at the broker or queued: either way not a timeout.
    assert_ne!(response.status().as_u16(), 408);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let queue = TestQueue::new("1s");
    let intake = RunningIntake::start(Settings {
        intake: IntakeSection {
            intake_header_timeout: PositiveDuration::new(Duration::from_secs(30))
                .expect("positive"),
            intake_idle_timeout: PositiveDuration::new(Duration::from_secs(1)).expect("positive"),
            ..queue.daemon_settings().intake
        },
        ..queue.daemon_settings()
    })
    .await;
    let mut stream = TcpStream::connect(intake.addr).await.expect("connect");
    stream
        .write_all(b"GET /ipn HTTP/1.1\r\nHost: intake\r\n\r\n")
        .await
        .expect("probe");
    let (received, took) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(received.starts_with("HTTP/1.1 200"), "{received:?}");
    // Closed by the idle timeout, long before the header timeout.
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    assert_eq!(intake.count("header_timeout"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_sends_its_body_slowly_gets_408() {
    let queue = TestQueue::new("1s");
    queue.declare().await;
    let timeout = Duration::from_secs(1);
    let intake = RunningIntake::start(Settings {
        intake: IntakeSection {
            intake_body_timeout: PositiveDuration::new(timeout).expect("positive"),
            ..queue.daemon_settings().intake
        },
        ..queue.daemon_settings()
    })
    .await;
    let body = genuine_body();
    let mut stream = TcpStream::connect(intake.addr).await.expect("connect");
    let head = format!(
        "POST /ipn HTTP/1.1\r\nHost: intake\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("header");
    // Half the body, then nothing.
    stream
        .write_all(&body[..body.len() / 2])
        .await
        .expect("half the body");
    let (received, took) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(received.starts_with("HTTP/1.1 408"), "{received:?}");
    assert!(
        received.contains("body not received within 1s"),
        "{received:?}"
    );
    assert!(!received.contains("<sig"), "{received:?}");
    assert!(
        took < timeout + Duration::from_secs(3),
        "answered after {took:?}"
    );
    assert_eq!(intake.count("body_timeout"), 1);
    assert_eq!(queue.ready(queue.topology().work_queue()).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_connection_over_the_cap_is_refused_and_a_freed_slot_serves_again() {
    let queue = TestQueue::new("1s");
    queue.declare().await;
    let intake = RunningIntake::start(Settings {
        intake: IntakeSection {
            intake_max_connections: NonZero::new(2).expect("positive"),
            intake_header_timeout: PositiveDuration::new(Duration::from_secs(60))
                .expect("positive"),
            ..queue.daemon_settings().intake
        },
        ..queue.daemon_settings()
    })
    .await;
    // Two connections hold the two slots (each accepted before the next
    // connects: the listener accepts in order).
    let first = TcpStream::connect(intake.addr).await.expect("first");
    let _second = TcpStream::connect(intake.addr).await.expect("second");
    let mut third = TcpStream::connect(intake.addr).await.expect("third");
    let (received, took) = read_until_closed(&mut third, Duration::from_secs(10)).await;
    assert!(
        received.starts_with("HTTP/1.1 503"),
        "over the cap: {received:?}"
    );
    assert!(took < Duration::from_secs(5), "refused after {took:?}");
    assert_eq!(intake.count("too_many_connections"), 1);

    // Closing one frees its slot: a notification gets through again.
    drop(first);
    let url = intake.url();
    let queued = wait_until(Duration::from_secs(10), || {
        let url = url.clone();
        async move {
            let response = reqwest::Client::new()
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(genuine_body())
                .send()
                .await;
            response.is_ok_and(|r| r.status().as_u16() == 200)
        }
    })
    .await;
    assert!(queued, "no slot was freed");
    assert_eq!(queue.ready(queue.topology().work_queue()).await, 1);
}

/// Issue 23, item 3: one client that hoards connections (idle, half-sent)
/// is refused past its own cap, and the processor's notice, from another
/// address, is answered at once: the hoarder never reaches the global cap.
/// The hoarder connects from 127.0.0.2 (every 127/8 address is the
/// loopback), the processor from 127.0.0.1.
#[tokio::test(flavor = "multi_thread")]
async fn one_client_hoarding_connections_does_not_delay_the_processors_notice() {
    let queue = TestQueue::new("1s");
    queue.declare().await;
    let intake = RunningIntake::start(Settings {
        intake: IntakeSection {
            intake_max_connections: NonZero::new(8).expect("positive"),
            intake_max_connections_per_client: NonZero::new(4).expect("positive"),
            intake_header_timeout: PositiveDuration::new(Duration::from_secs(60))
                .expect("positive"),
            ..queue.daemon_settings().intake
        },
        ..queue.daemon_settings()
    })
    .await;
    let hoard = || async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.2:0".parse().expect("addr"))
            .expect("bind 127.0.0.2");
        socket.connect(intake.addr).await.expect("connect")
    };
    // Four half-sent requests hold the hoarder's share...
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = hoard().await;
        stream
            .write_all(b"POST /ipn HTTP/1.1\r\nhost: x\r\n")
            .await
            .expect("half a header");
        held.push(stream);
    }
    // ...and every further one is refused at once, a hundred times over.
    for _ in 0..100 {
        let mut more = hoard().await;
        let (received, took) = read_until_closed(&mut more, Duration::from_secs(10)).await;
        assert!(received.starts_with("HTTP/1.1 503"), "{received:?}");
        assert!(took < Duration::from_secs(5), "refused after {took:?}");
    }
    assert_eq!(intake.count("too_many_from_client"), 100);
    assert_eq!(intake.count("too_many_connections"), 0);
    // The processor's notice, meanwhile: queued, within the header timeout
    // by far (no retry, no wait for a slot).
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(intake.url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(genuine_body())
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(queue.ready(queue.topology().work_queue()).await, 1);
    drop(held);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_body_gets_our_413_whether_announced_or_not() {
    let queue = TestQueue::new("1s");
    queue.declare().await;
    let intake = RunningIntake::start(Settings {
        notifications: NotificationSection {
            max_body_bytes: NonZero::new(1024).expect("positive"),
            ..queue.daemon_settings().notifications
        },
        ..queue.daemon_settings()
    })
    .await;
    // Announced: refused from the header, before the body is read.
    let response = reqwest::Client::new()
        .post(intake.url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'A'; 2000])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 413);
    assert_eq!(
        response.text().await.expect("text"),
        "body is over the limit of 1024 bytes\n"
    );
    // Not announced (chunked): refused once the limit is passed.
    let mut stream = TcpStream::connect(intake.addr).await.expect("connect");
    let chunk = "A".repeat(700);
    let request = format!(
        "POST /ipn HTTP/1.1\r\nHost: intake\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         Transfer-Encoding: chunked\r\n\r\n\
         2BC\r\n{chunk}\r\n2BC\r\n{chunk}\r\n0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("chunked");
    let (received, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(received.starts_with("HTTP/1.1 413"), "{received:?}");
    assert!(
        received.ends_with("body is over the limit of 1024 bytes\n"),
        "{received:?}"
    );
    assert_eq!(intake.count("too_large"), 2);
    assert_eq!(queue.ready(queue.topology().work_queue()).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_caller_is_answered_without_its_body_being_read() {
    let queue = TestQueue::new("1s");
    queue.declare().await;
    let intake = RunningIntake::start(Settings {
        intake: IntakeSection {
            // The test client (127.0.0.1) is not in it.
            allow_networks: AllowNetworks(
                ipn_reconciler::intake::parse_allow_list("91.220.121.0/25").expect("nets"),
            ),
            intake_body_timeout: PositiveDuration::new(Duration::from_secs(60)).expect("positive"),
            ..queue.daemon_settings().intake
        },
        ..queue.daemon_settings()
    })
    .await;
    // A huge announced body that never comes, asking for 100-continue:
    // the answer comes at once, without a 100 (which would invite it).
    let mut stream = TcpStream::connect(intake.addr).await.expect("connect");
    stream
        .write_all(
            b"POST /ipn HTTP/1.1\r\nHost: intake\r\n\
              Content-Type: application/x-www-form-urlencoded\r\n\
              Expect: 100-continue\r\n\
              Content-Length: 1000000000\r\n\r\n",
        )
        .await
        .expect("header");
    let (received, took) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(received.starts_with("HTTP/1.1 403"), "{received:?}");
    assert!(!received.contains("100 Continue"), "{received:?}");
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    assert_eq!(intake.count("source_refused"), 1);
    assert_eq!(intake.count("body_timeout"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_standalone_intake_stops_on_sigterm_while_a_slow_client_holds_a_connection() {
    let queue = TestQueue::new("1s");
    queue.declare().await;
    let shutdown_deadline = Duration::from_secs(2);
    let close_timeout = Duration::from_secs(2);
    let mut daemon = Daemon::start_command(
        "intake",
        &queue,
        &[
            ("IPN_SHUTDOWN_DEADLINE", "2s"),
            ("IPN_CLOSE_TIMEOUT", "2s"),
            ("IPN_INTAKE_HEADER_TIMEOUT", "1h"),
            ("IPN_INTAKE_BODY_TIMEOUT", "1h"),
            ("IPN_MAX_BODY_BYTES", "1024"),
        ],
    );
    let intake = daemon.intake_addr().await;
    daemon.ops_addr().await;

    // Oversized: our 413, counted and logged.
    let url = format!("http://{intake}/ipn");
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'A'; 2000])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 413);
    let logged = wait_until(Duration::from_secs(10), || {
        let logs = daemon.logs();
        std::future::ready(logs.lines().any(|line| {
            line.contains("notification refused at the intake") && line.contains("too_large")
        }))
    })
    .await;
    assert!(logged, "no log line for the 413:\n{}", daemon.logs());
    let metrics = daemon.get("/metrics").await.expect("metrics").1;
    assert!(
        metrics.contains("ipn_intake_requests_total{result=\"too_large\"} 1"),
        "{metrics}"
    );

    // A slow client in the middle of its header, and one in its body.
    let mut slow_header = TcpStream::connect(intake).await.expect("connect");
    slow_header
        .write_all(b"POST /ipn HTTP/1.1\r\nHost: intake\r\n")
        .await
        .expect("part of a header");
    let mut slow_body = TcpStream::connect(intake).await.expect("connect");
    slow_body
        .write_all(
            b"POST /ipn HTTP/1.1\r\nHost: intake\r\n\
              Content-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 500\r\n\r\nREFNO=1",
        )
        .await
        .expect("part of a body");
    // Both are being served (the probe answers behind them).
    let probe = reqwest::get(&url).await.expect("GET");
    assert_eq!(probe.status().as_u16(), 200);

    let signalled = Instant::now();
    daemon.signal("TERM");
    let code = daemon
        .wait(shutdown_deadline + close_timeout + Duration::from_secs(2))
        .await;
    assert_eq!(code, Some(0), "logs:\n{}", daemon.logs());
    assert!(
        signalled.elapsed() < shutdown_deadline + close_timeout + Duration::from_secs(2),
        "stopped after {:?}",
        signalled.elapsed()
    );
    // The slow clients were let go, and nothing listens any more.
    let (_, _) = read_until_closed(&mut slow_header, Duration::from_secs(5)).await;
    let (_, _) = read_until_closed(&mut slow_body, Duration::from_secs(5)).await;
    assert!(TcpStream::connect(intake).await.is_err());
}
