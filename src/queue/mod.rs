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
pub use seal::{SEALED_CONTENT_TYPE, SealError, SealKeyError, Sealed, Sealer};
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
    /// How long a silent broker path may last before a connection is
    /// declared lost (`amqp-heartbeat`; see [`AmqpSettings::connect`]).
    pub heartbeat: Duration,
}

/// The default of `amqp-heartbeat`.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);

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
            heartbeat: DEFAULT_HEARTBEAT,
        })
    }

    /// The same settings with another `amqp-heartbeat`.
    pub fn with_heartbeat(self, heartbeat: Duration) -> Self {
        Self { heartbeat, ..self }
    }

    /// The URL with any password replaced by `***`, for logs and errors.
    pub fn redacted_url(&self) -> String {
        self.url.redacted()
    }

    /// Opens a connection; `role` names it in the broker's management UI
    /// (and lets tests find it).
    ///
    /// lapin's own recovery is off: every connection this crate opens is
    /// supervised by its owner (the worker's consume loop, the publishers),
    /// which notices the loss, says so, and builds a new connection from
    /// scratch. lapin's recovery replays topology and consumers on a
    /// reconnected socket by itself; after a path that vanished without a
    /// goodbye it could leave a connection object that looked connected
    /// with no consumer behind it, which nothing reported.
    ///
    /// A path that goes silent (a firewall dropping packets, a half-open
    /// TCP connection) is found by AMQP heartbeats: lapin closes the
    /// connection when nothing arrived for two heartbeat intervals, so the
    /// interval negotiated is half of `heartbeat` (at least one second),
    /// and a silent path is declared lost within `heartbeat`. A URL that
    /// sets `heartbeat=` itself keeps its value. The handshake is bounded
    /// by `heartbeat` too: a path that accepts TCP but carries nothing
    /// would otherwise hold the attempt for ever.
    pub async fn connect(&self, role: &str) -> Result<Connection, QueueError> {
        let mut uri: lapin::uri::AMQPUri =
            self.url
                .expose()
                .parse()
                .map_err(|reason| QueueError::InvalidUrl {
                    url: self.redacted_url(),
                    reason,
                })?;
        if uri.query.heartbeat.is_none() {
            uri.query.heartbeat = Some(negotiated_heartbeat(self.heartbeat));
        }
        if uri.query.connection_timeout.is_none() {
            uri.query.connection_timeout = Some(millis(self.heartbeat));
        }
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("ipn-reconciler {role} {}", self.topology.base()).into());
        match tokio::time::timeout(self.heartbeat, Connection::connect_uri(uri, properties)).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(source)) => Err(QueueError::Connect {
                url: self.redacted_url(),
                source,
            }),
            Err(_) => Err(QueueError::ConnectTimeout {
                url: self.redacted_url(),
                after: self.heartbeat,
            }),
        }
    }
}

/// The AMQP heartbeat interval to negotiate, in whole seconds, for a
/// connection that must be declared lost within `lost_within` of silence
/// (lapin gives up after two intervals without a frame).
fn negotiated_heartbeat(lost_within: Duration) -> u16 {
    u16::try_from(lost_within.as_secs() / 2)
        .unwrap_or(u16::MAX)
        .max(1)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
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
    #[error("cannot connect to RabbitMQ at {url}: {}", describe_amqp_error(source))]
    Connect {
        url: String,
        #[source]
        source: lapin::Error,
    },
    #[error("cannot connect to RabbitMQ at {url}: no answer within {}", humantime::format_duration(*after))]
    ConnectTimeout { url: String, after: Duration },
    #[error("RabbitMQ: {}", describe_amqp_error(.0))]
    Amqp(#[from] lapin::Error),
    #[error("the broker refused (nack) a message published to `{0}`")]
    Nacked(String),
    #[error("a message published to `{0}` could not be routed to any queue")]
    Unroutable(String),
    #[error("timed out waiting for the broker")]
    Timeout,
    #[error("cannot seal a message: {0}")]
    Seal(String),
}

/// A broker error in words, with its causes: lapin's own text says
/// "IO error" where the cause says "connection refused".
pub fn describe_amqp_error(err: &lapin::Error) -> String {
    crate::telemetry::with_causes(err)
}

/// Closes a connection for good, waiting at most `horizon` for the
/// broker's answer.
///
/// A connection already closed or failed needs nothing. One whose path
/// went silent cannot answer: after `horizon` it is dropped as it is, and
/// its socket goes with it (the broker notices by its heartbeats). Since
/// lapin's recovery is off ([`AmqpSettings::connect`]), a connection that
/// failed never comes back by itself, so nothing here has to wait for it.
pub async fn close_connection(connection: &Connection, horizon: std::time::Duration) {
    let status = connection.status();
    if !status.connected() {
        return;
    }
    match tokio::time::timeout(horizon, connection.close(200, "closing".into())).await {
        Ok(_) => {}
        Err(_) => {
            tracing::debug!("the broker did not answer the close in time; connection dropped")
        }
    }
}
