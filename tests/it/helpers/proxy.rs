//! A TCP proxy that a test can break the way networks break, in front of
//! one service for one test only (the servers the other tests use stay
//! up):
//!
//! - [`Proxy::cut`]: every open connection is dropped (a reset, as a
//!   restarted load balancer or firewall does), and new ones are closed as
//!   soon as they are accepted, until [`Proxy::restore`];
//! - [`Proxy::hold`]: the path goes silent without closing anything (a
//!   half-open connection, a partition): bytes in either direction are
//!   swallowed, on open connections and on new ones, until
//!   [`Proxy::restore`]. Only heartbeats or timeouts can tell.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

const OPEN: u8 = 0;
const CUT: u8 = 1;
const HELD: u8 = 2;

pub struct Proxy {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on an ephemeral port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let mode = Arc::new(AtomicU8::new(OPEN));
        let links = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let mode = mode.clone();
            let links = links.clone();
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    if mode.load(Ordering::SeqCst) == CUT {
                        // An outage: the connection is dropped at once.
                        continue;
                    }
                    let mode = mode.clone();
                    let link = tokio::spawn(async move {
                        // While held, a new connection is accepted and then
                        // hears nothing, like one into a partition.
                        if mode.load(Ordering::SeqCst) == HELD {
                            let (read, _write) = inbound.into_split();
                            swallow(read).await;
                            return;
                        }
                        let Ok(outbound) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let (client_read, client_write) = inbound.into_split();
                        let (server_read, server_write) = outbound.into_split();
                        tokio::select! {
                            () = pump(client_read, server_write, &mode) => {}
                            () = pump(server_read, client_write, &mode) => {}
                        }
                    });
                    links.lock().await.push(link);
                }
            })
        };
        Self {
            addr,
            mode,
            links,
            accept,
        }
    }

    /// Drops every open connection and refuses new ones until `restore`.
    /// Returns how many connections were open.
    pub async fn cut(&self) -> usize {
        self.mode.store(CUT, Ordering::SeqCst);
        let mut open = 0;
        for link in self.links.lock().await.drain(..) {
            if !link.is_finished() {
                open += 1;
            }
            link.abort();
        }
        open
    }

    /// Makes the path silent: nothing is closed, nothing gets through.
    /// Returns how many connections were open.
    pub async fn hold(&self) -> usize {
        self.mode.store(HELD, Ordering::SeqCst);
        let links = self.links.lock().await;
        links.iter().filter(|link| !link.is_finished()).count()
    }

    /// Forwards again. Connections that were held stay broken (what they
    /// carried was lost) and are dropped; new ones get through.
    pub async fn restore(&self) {
        let was = self.mode.swap(OPEN, Ordering::SeqCst);
        if was == HELD {
            for link in self.links.lock().await.drain(..) {
                link.abort();
            }
        }
    }
}

/// Copies one direction until either side closes; while the proxy is
/// held, what is read is thrown away.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: &AtomicU8,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if mode.load(Ordering::SeqCst) == HELD {
            continue;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// Reads and forgets until the peer closes.
async fn swallow(mut from: tokio::net::tcp::OwnedReadHalf) {
    let mut buffer = vec![0u8; 16 * 1024];
    while let Ok(read) = from.read(&mut buffer).await {
        if read == 0 {
            return;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        if let Ok(mut links) = self.links.try_lock() {
            for link in links.drain(..) {
                link.abort();
            }
        }
    }
}
