//! RabbitMQ: the topology the daemon relies on, the message metadata that
//! travels next to the raw body, a confirmed publisher, and connections.
//!
//! The body of every message is the processor's raw POST body, byte for
//! byte (the signature covers those exact bytes), sealed with an AEAD
//! ([`seal`]) by the intake and `publish`, or in clear when another program
//! published it (the content type tells which). Everything else (receipt
//! time, retry counters, why a message was parked) travels in headers, so a
//! message can be moved between queues without ever being re-encoded or
//! opened.
//!
//! - [`topology`]: names and idempotent declaration of exchange and queues;
//! - [`message`]: the headers ([`MessageMeta`]) and message properties;
//! - [`seal`]: sealing and opening bodies ([`Sealer`]);
//! - [`publisher`]: a publisher with confirms that reconnects by itself;
//! - [`parked`]: browsing and requeueing the parking queue.

pub mod message;
pub mod parked;
pub mod publisher;
pub mod seal;
pub mod topology;

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

pub use message::{MessageMeta, headers};
pub use publisher::{Publisher, QueueCounts};
pub use seal::{SEALED_CONTENT_TYPE, SealError, Sealed, Sealer};
pub use topology::{QueueRole, RetryDelays, Topology};

use crate::secret::SecretUrl;

/// Content type of a message whose body is the processor's form body in
/// clear (sealed ones carry [`SEALED_CONTENT_TYPE`]).
pub const CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// How to reach the broker and what to call things there.
#[derive(Clone, Debug)]
pub struct AmqpSettings {
    /// `amqp://user:password@host:port/vhost`.
    pub url: SecretUrl,
    /// Names of the topology.
    pub topology: Topology,
    /// How long a publisher waits for the broker's confirm.
    pub publish_timeout: Duration,
}

impl AmqpSettings {
    /// Checks the URL, so a typo fails at start-up rather than on the first
    /// reconnect.
    pub fn new(
        url: SecretUrl,
        topology: Topology,
        publish_timeout: Duration,
    ) -> Result<Self, QueueError> {
        url.expose()
            .parse::<lapin::uri::AMQPUri>()
            .map_err(|reason| QueueError::InvalidUrl {
                url: url.redacted(),
                reason,
            })?;
        Ok(Self {
            url,
            topology,
            publish_timeout,
        })
    }

    /// The URL with any password replaced by `***`, for logs and errors.
    pub fn redacted_url(&self) -> String {
        self.url.redacted()
    }

    /// Opens a connection with lapin's auto-recovery; `role` names it in the
    /// broker's management UI (and lets tests find it).
    pub async fn connect(&self, role: &str) -> Result<Connection, QueueError> {
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("ipn-reconciler {role} {}", self.topology.base()).into())
            .enable_auto_recover()
            // Lapin's own TCP attempts (the first connection's too) are few
            // and quick, so an unreachable broker is reported within a
            // couple of seconds; beyond them the supervisors in this crate
            // retry with their own backoff and report each state change.
            .configure_backoff(|backoff| {
                backoff
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(1))
                    .with_max_times(2)
            });
        Connection::connect(self.url.expose(), properties)
            .await
            .map_err(|source| QueueError::Connect {
                url: self.redacted_url(),
                source,
            })
    }
}

/// What can go wrong talking to the broker.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("invalid AMQP_URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid queue name `{0}`: 1-200 characters, no spaces or control characters")]
    InvalidName(String),
    #[error("invalid retry delays `{input}`: {reason}")]
    InvalidDelays { input: String, reason: String },
    #[error("cannot connect to RabbitMQ at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: lapin::Error,
    },
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker refused (nack) a message published to `{0}`")]
    Nacked(String),
    #[error("a message published to `{0}` could not be routed to any queue")]
    Unroutable(String),
    #[error("timed out waiting for the broker")]
    Timeout,
}

/// Closes a connection for good, even one that lapin is reconnecting.
///
/// `Connection::close` fails while auto-recovery is under way, and a
/// connection left like that would later come back and replay its topology
/// and consumers: a zombie consumer holding messages no one processes. So
/// this waits (up to `horizon`) for a state in which closing is possible.
pub async fn close_connection(connection: &Connection, horizon: std::time::Duration) {
    let deadline = tokio::time::Instant::now() + horizon;
    loop {
        let status = connection.status();
        if status.closed() || status.errored() {
            return;
        }
        if status.connected() {
            let close = connection.close(200, "closing".into());
            if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(5), close).await {
                return;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("could not close a broker connection in time");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
