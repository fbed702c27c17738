//! The intake's HTTP server: an accept loop over hyper's HTTP/1 with the
//! limits a listener that faces the internet needs.
//!
//! `axum::serve` has none of them: a client that sends its headers one byte
//! a minute, or opens connections and sends nothing, holds a task and a
//! socket for as long as it likes, and enough of them exhaust the file
//! descriptors the broker and the database connections need. Here:
//!
//! | client | what happens |
//! | --- | --- |
//! | connects beyond `max_connections` | answered 503 at once and closed (`too_many_connections`) |
//! | holds `max_connections_per_client` connections already (by TCP peer address) | answered 503 at once and closed (`too_many_from_client`): one client cannot take the slots the processor needs |
//! | sends nothing, or not its whole header, within `header_timeout` of connecting or of its first byte | closed; answered 408 when part of a request arrived (`header_timeout`) |
//! | sends its body too slowly (`body_timeout`) | 408, read by the handler (`body_timeout`) |
//! | keeps an idle keep-alive connection past `idle_timeout` | closed |
//!
//! Only HTTP/1 is spoken: the processor posts HTTP/1.1 forms.
//!
//! Shutdown stops accepting at once and closes every connection that has
//! no request in flight (idle ones, and ones whose request is still being
//! sent: the processor retries those); requests in flight are finished
//! and their connections closed after the answer. The caller bounds the
//! wait (`close-timeout`).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::IntakeResult;
use crate::metrics::Metrics;

/// How long connections may take, and how many there may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From connecting (or from the end of the previous answer's idle
    /// time, when the next request starts) to the end of the request's
    /// header.
    pub header_timeout: Duration,
    /// For the whole body, once the header is in (read by the handler).
    pub body_timeout: Duration,
    /// Between two requests on a kept-alive connection.
    pub idle_timeout: Duration,
    /// Connections open at the same time; more are answered 503.
    pub max_connections: usize,
    /// Connections one TCP peer address may hold open at the same time;
    /// more from it are answered 503. Behind a proxy every client is the
    /// proxy: set it as high as `max_connections` there, and let the proxy
    /// limit its clients.
    pub max_connections_per_client: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
            // Half the slots: a client can never take them all, and a
            // burst of the processor's own (its concurrency is not
            // documented) still fits.
            max_connections_per_client: 256,
        }
    }
}

/// The answer to a connection over the cap, written without reading
/// anything from it.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain; charset=utf-8\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 21\r\n\
\r\n\
too many connections\n";

/// The answer to a request whose header did not arrive in time.
const HEADER_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\n\
content-type: text/plain; charset=utf-8\r\n\
connection: close\r\n\
content-length: 36\r\n\
\r\n\
request header not received in time\n";

/// How long an accept error (out of file descriptors, say) pauses the
/// loop: retrying at once would spin while nothing can be accepted.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(500);

/// How long the 408 of a timed-out header may take to be handed over.
const TIMEOUT_ANSWER_GRACE: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until `shutdown` completes (see the
/// module docs), then waits for the requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let clients = PerClient::new(limits.max_connections_per_client);
    let connections = TaskTracker::new();
    let stopping = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            // The client gave up during the handshake: nothing to do.
            Err(err) if is_connection_error(&err) => continue,
            Err(err) => {
                tracing::warn!(error = %err, "the intake cannot accept connections");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        // The client's own cap first: a hoarding client is refused without
        // taking a slot of the global cap.
        let Some(slot) = clients.try_acquire(peer.ip()) else {
            refuse(&stream, peer, &metrics, IntakeResult::TooManyFromClient);
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refuse(&stream, peer, &metrics, IntakeResult::TooManyConnections);
            continue;
        };
        connections.spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            limits,
            metrics.clone(),
            stopping.clone(),
            (permit, slot),
        ));
    }
    // Stop accepting at once: the port refuses new connections from now.
    drop(listener);
    stopping.cancel();
    connections.close();
    connections.wait().await;
    Ok(())
}

fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Answers 503 without reading and closes (the stream is dropped by the
/// caller), counted as `result`. The write does not wait: a socket that
/// cannot take 150 bytes at once is closed without them.
fn refuse(stream: &TcpStream, peer: SocketAddr, metrics: &Metrics, result: IntakeResult) {
    metrics.intake_request(result);
    tracing::debug!(peer = %peer.ip(), result = result.as_str(), "intake connection over a cap: answered 503");
    let _ = stream.try_write(OVER_CAPACITY);
}

/// The connections each TCP peer address holds open.
struct PerClient {
    limit: usize,
    open: Arc<Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

/// One connection of a client, counted until it is dropped.
struct ClientSlot {
    addr: std::net::IpAddr,
    open: Arc<Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

impl PerClient {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            open: Arc::default(),
        }
    }

    /// A slot for one more connection of `addr`, or `None` when it holds
    /// its limit already. An IPv4-mapped IPv6 address counts as its IPv4.
    fn try_acquire(&self, addr: std::net::IpAddr) -> Option<ClientSlot> {
        let addr = match addr {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, std::net::IpAddr::V4),
            v4 => v4,
        };
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(addr).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            addr,
            open: self.open.clone(),
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.addr) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.addr);
            }
        }
    }
}

/// One connection, from accept to close, under the watch of its timers.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    metrics: Metrics,
    stopping: CancellationToken,
    _slots: (OwnedSemaphorePermit, ClientSlot),
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        let router = TowerToHyperService::new(router);
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let busy = activity.request_started();
            let response = router.call(request);
            async move {
                let response = response.await;
                drop(busy);
                response
            }
        })
    };
    let connection = http1::Builder::new()
        // The watch below times headers; hyper's own timer would also cut
        // idle keep-alive connections at the header timeout.
        .header_read_timeout(None::<Duration>)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        let (phase, deadline) = activity.deadline(&limits);
        let changed = activity.changed.notified();
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(peer = %peer.ip(), error = %err, "intake connection ended with an error");
                }
                return;
            }
            () = changed => continue,
            () = sleep_until(deadline) => {
                if activity.deadline(&limits) != (phase, deadline) {
                    continue;
                }
                match phase {
                    Phase::Busy => continue,
                    Phase::Idle => {
                        tracing::debug!(peer = %peer.ip(), "idle intake connection closed");
                        return;
                    }
                    Phase::Fresh => {
                        metrics.intake_request(IntakeResult::HeaderTimeout);
                        tracing::info!(peer = %peer.ip(), "nothing received in time: intake connection closed");
                        return;
                    }
                    Phase::Header => {
                        metrics.intake_request(IntakeResult::HeaderTimeout);
                        tracing::info!(peer = %peer.ip(), "request header not received in time: answered 408");
                        // The next read answers 408 and fails the
                        // connection (see `Watched::poll_read`).
                        activity.answer_timeout.store(true, Ordering::Release);
                        let _ = tokio::time::timeout(TIMEOUT_ANSWER_GRACE, connection.as_mut()).await;
                        return;
                    }
                }
            }
            () = stopping.cancelled(), if !draining => {
                if activity.phase() != Phase::Busy {
                    return;
                }
                // Finish the request in flight, then close.
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Where a connection is in its life, for its timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepted, nothing received yet.
    Fresh,
    /// Bytes of a request arrived; its header is not complete.
    Header,
    /// A request is being handled (its body is read by the handler, which
    /// has its own timeout).
    Busy,
    /// Answered; waiting for the next request.
    Idle,
}

/// A connection's phase and since when, shared by the connection's I/O,
/// its service and its watch.
struct Activity {
    state: Mutex<(Phase, Instant)>,
    /// Told whenever the phase changes, so the watch takes the new deadline.
    changed: Notify,
    /// Set by the watch when the header timed out: the next read writes the
    /// 408 and fails.
    answer_timeout: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            state: Mutex::new((Phase::Fresh, Instant::now())),
            changed: Notify::new(),
            answer_timeout: AtomicBool::new(false),
        }
    }

    fn phase(&self) -> Phase {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0
    }

    fn set(&self, phase: Phase) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = (phase, Instant::now());
        self.changed.notify_one();
    }

    /// Bytes arrived: the start of a request, unless one is under way.
    fn bytes_read(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(state.0, Phase::Fresh | Phase::Idle) {
            *state = (Phase::Header, Instant::now());
            drop(state);
            self.changed.notify_one();
        }
    }

    /// The header is complete and the service runs; idle again when the
    /// guard drops.
    fn request_started(self: &Arc<Self>) -> BusyGuard {
        self.set(Phase::Busy);
        BusyGuard(self.clone())
    }

    /// The phase, and when the connection must be closed if it is still in
    /// it (none while a request is being handled).
    fn deadline(&self, limits: &ConnectionLimits) -> (Phase, Option<Instant>) {
        let (phase, since) = *self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let limit = match phase {
            Phase::Fresh | Phase::Header => Some(limits.header_timeout),
            Phase::Idle => Some(limits.idle_timeout),
            Phase::Busy => None,
        };
        (phase, limit.map(|limit| since + limit))
    }
}

/// Marks a connection idle when its request has been answered.
struct BusyGuard(Arc<Activity>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.set(Phase::Idle);
    }
}

/// The connection's socket, telling its [`Activity`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.activity.answer_timeout.swap(false, Ordering::AcqRel) {
            // Best effort: the client that is too slow to send may be too
            // slow to receive too.
            let _ = this.stream.try_write(HEADER_TIMEOUT);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request header not received in time",
            )));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canned answers are well-formed: their content-length is the
    /// length of their body.
    #[test]
    fn canned_answers_announce_their_length() {
        for answer in [OVER_CAPACITY, HEADER_TIMEOUT] {
            let text = std::str::from_utf8(answer).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(length, body.len(), "{head}");
        }
    }

    #[test]
    fn deadlines_follow_the_phase() {
        let limits = ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1,
            max_connections_per_client: 1,
        };
        let activity = Arc::new(Activity::new());
        // A phase's clock starts when it is entered: between two readings.
        let entered = |change: &dyn Fn(), phase: Phase, limit: Duration| {
            let before = Instant::now();
            change();
            let after = Instant::now();
            let (got, deadline) = activity.deadline(&limits);
            assert_eq!(got, phase);
            let deadline = deadline.expect("a deadline");
            assert!(before + limit <= deadline && deadline <= after + limit);
            deadline
        };
        let (phase, fresh) = activity.deadline(&limits);
        assert_eq!(phase, Phase::Fresh);
        let fresh = fresh.expect("a deadline");
        assert!(fresh > Instant::now() && fresh <= Instant::now() + limits.header_timeout);
        let header = entered(
            &|| activity.bytes_read(),
            Phase::Header,
            limits.header_timeout,
        );
        // More bytes of the same header do not push the deadline back.
        activity.bytes_read();
        assert_eq!(activity.deadline(&limits), (Phase::Header, Some(header)));
        let busy = activity.request_started();
        activity.bytes_read();
        assert_eq!(activity.deadline(&limits), (Phase::Busy, None));
        let busy = std::cell::Cell::new(Some(busy));
        entered(&|| drop(busy.take()), Phase::Idle, limits.idle_timeout);
        // The next request starts its header timer.
        entered(
            &|| activity.bytes_read(),
            Phase::Header,
            limits.header_timeout,
        );
    }

    #[test]
    fn each_client_holds_at_most_its_share_and_gets_it_back() {
        let clients = PerClient::new(2);
        let hoarder: std::net::IpAddr = "127.0.0.2".parse().expect("ip");
        let processor: std::net::IpAddr = "127.0.0.1".parse().expect("ip");
        let first = clients.try_acquire(hoarder).expect("first");
        let _second = clients.try_acquire(hoarder).expect("second");
        assert!(clients.try_acquire(hoarder).is_none(), "over its share");
        // The same client as an IPv4-mapped IPv6 peer is the same client.
        let mapped: std::net::IpAddr = "::ffff:127.0.0.2".parse().expect("ip");
        assert!(clients.try_acquire(mapped).is_none());
        assert!(
            clients.try_acquire(processor).is_some(),
            "others are served"
        );
        drop(first);
        assert!(
            clients.try_acquire(hoarder).is_some(),
            "a freed slot serves again"
        );
    }
}
