//! A publisher with confirms on a connection of its own.
//!
//! A message counts as handed over only when the broker confirmed it (it is
//! then on disk, as every message is persistent) and routed it to a queue
//! (`mandatory`): only then may a worker ack the delivery it came from, or
//! the intake answer the processor.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use tokio::sync::Mutex;

use super::{AmqpSettings, MessageMeta, QueueError};
use crate::domain::BodyDigest;

/// Publishes with confirms, (re)connecting on demand: after any failure the
/// link is dropped and the next publish builds a new one, so a broker outage
/// costs the failed publishes (which the caller keeps: nack + requeue) and
/// nothing else.
pub struct Publisher {
    settings: AmqpSettings,
    role: String,
    link: Mutex<Option<Link>>,
    /// When the last attempt to connect failed (cleared by a success):
    /// callers that must answer fast (the intake) skip the attempt while
    /// the broker is known to be away; a watcher keeps trying.
    last_failure: std::sync::Mutex<Option<std::time::Instant>>,
}

/// What the broker says of a queue (on a passive declare).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounts {
    /// Messages ready for delivery (not those delivered and unacked).
    pub messages: u32,
    pub consumers: u32,
}

struct Link {
    connection: Connection,
    channel: Channel,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The link holds lapin handles whose Debug says nothing useful.
        f.debug_struct("Publisher")
            .field("settings", &self.settings)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher that connects on first use.
    pub fn new(settings: AmqpSettings, role: &str) -> Self {
        Self {
            settings,
            role: role.to_owned(),
            link: Mutex::new(None),
            last_failure: std::sync::Mutex::new(None),
        }
    }

    /// A publisher connected now (and the topology declared), so start-up
    /// fails early when the broker is unreachable.
    pub async fn connect(settings: AmqpSettings, role: &str) -> Result<Self, QueueError> {
        let publisher = Self::new(settings, role);
        publisher.channel().await?;
        Ok(publisher)
    }

    pub fn settings(&self) -> &AmqpSettings {
        &self.settings
    }

    async fn channel(&self) -> Result<Channel, QueueError> {
        let mut link = self.link.lock().await;
        if let Some(existing) = link.as_ref()
            && existing.channel.status().connected()
        {
            return Ok(existing.channel.clone());
        }
        if let Some(stale) = link.take() {
            close_quietly(stale.connection);
        }
        let opened = async {
            let connection = self.settings.connect(&self.role).await?;
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            self.settings.topology.declare(&connection).await?;
            Ok::<_, QueueError>((connection, channel))
        }
        .await;
        let mut failed = match self.last_failure.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        match opened {
            Ok((connection, channel)) => {
                *failed = None;
                *link = Some(Link {
                    connection,
                    channel: channel.clone(),
                });
                Ok(channel)
            }
            Err(err) => {
                *failed = Some(std::time::Instant::now());
                Err(err)
            }
        }
    }

    /// Whether the last attempt to connect failed less than `within` ago and
    /// no connection exists since: the broker is known to be away.
    pub fn recently_failed(&self, within: Duration) -> bool {
        let failed = match self.last_failure.lock() {
            Ok(guard) => *guard,
            Err(poisoned) => *poisoned.into_inner(),
        };
        failed.is_some_and(|at| at.elapsed() < within)
    }

    /// Connects now if not connected (health checks).
    pub async fn ensure_connected(&self) -> Result<(), QueueError> {
        self.channel().await.map(|_| ())
    }

    /// Messages ready in `queue` (a passive declare: the queue is not
    /// created). A missing queue closes the channel; the next use reopens it.
    pub async fn queue_depth(&self, queue: &str) -> Result<u32, QueueError> {
        self.queue_counts(queue).await.map(|counts| counts.messages)
    }

    /// Messages ready in `queue` and its consumers, like
    /// [`Publisher::queue_depth`].
    pub async fn queue_counts(&self, queue: &str) -> Result<QueueCounts, QueueError> {
        let channel = self.channel().await?;
        let declared = channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..lapin::options::QueueDeclareOptions::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await;
        match declared {
            Ok(declared) => Ok(QueueCounts {
                messages: declared.message_count(),
                consumers: declared.consumer_count(),
            }),
            Err(err) => {
                self.reset().await;
                Err(err.into())
            }
        }
    }

    async fn reset(&self) {
        if let Some(old) = self.link.lock().await.take() {
            close_quietly(old.connection);
        }
    }

    /// Publishes one message and waits for the broker's confirm.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), QueueError> {
        let channel = self.channel().await?;
        let attempt = async {
            let confirm = channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    body,
                    properties,
                )
                .await?;
            confirm.await
        };
        let target = if exchange.is_empty() {
            routing_key
        } else {
            exchange
        };
        match tokio::time::timeout(self.settings.publish_timeout, attempt).await {
            Err(_) => {
                self.reset().await;
                Err(QueueError::Timeout)
            }
            Ok(Err(err)) => {
                self.reset().await;
                Err(err.into())
            }
            Ok(Ok(confirmation)) => check(confirmation, target),
        }
    }

    /// Publishes a notification to the work exchange. `body` goes as it is
    /// (sealed or not: `meta` says which through its content type and
    /// `x-sealed-by`); the message id is `meta.message_id` (the plain
    /// body's digest of a sealed body) or else the digest of `body`.
    pub async fn publish_notification(
        &self,
        body: &[u8],
        meta: &MessageMeta,
    ) -> Result<(), QueueError> {
        let topology = &self.settings.topology;
        self.publish(
            topology.exchange(),
            topology.routing_key(),
            body,
            notification_properties(body, meta),
        )
        .await
    }

    /// Publishes many notifications to the work exchange, all in flight at
    /// once, then waits for every confirm. Returns, in order, whether each
    /// was confirmed. Bodies and metadata as for
    /// [`Publisher::publish_notification`].
    pub async fn publish_notifications(
        &self,
        messages: &[(Vec<u8>, MessageMeta)],
    ) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        let channel = self.channel().await?;
        let topology = &self.settings.topology;
        let mut pending = Vec::with_capacity(messages.len());
        for (body, meta) in messages {
            let confirm = channel
                .basic_publish(
                    topology.exchange().into(),
                    topology.routing_key().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    body,
                    notification_properties(body, meta),
                )
                .await;
            pending.push(confirm);
        }
        let mut results = Vec::with_capacity(pending.len());
        let mut failed = false;
        for confirm in pending {
            let result = match confirm {
                Err(err) => Err(QueueError::from(err)),
                Ok(confirm) => {
                    match tokio::time::timeout(self.settings.publish_timeout, confirm).await {
                        Err(_) => Err(QueueError::Timeout),
                        Ok(Err(err)) => Err(err.into()),
                        Ok(Ok(confirmation)) => check(confirmation, topology.exchange()),
                    }
                }
            };
            failed |= matches!(result, Err(QueueError::Amqp(_) | QueueError::Timeout));
            results.push(result);
        }
        if failed {
            self.reset().await;
        }
        Ok(results)
    }

    /// Closes the connection cleanly (at shutdown).
    pub async fn close(&self) {
        if let Some(old) = self.link.lock().await.take() {
            super::close_connection(&old.connection, Duration::from_secs(5)).await;
        }
    }
}

/// The properties of a notification message: `meta`'s, with the plain
/// body's digest as message id.
fn notification_properties(body: &[u8], meta: &MessageMeta) -> BasicProperties {
    match &meta.message_id {
        Some(id) => meta.to_properties(id),
        None => meta.to_properties(BodyDigest::of(body).as_str()),
    }
}

fn check(confirmation: Confirmation, target: &str) -> Result<(), QueueError> {
    match confirmation {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(_returned)) => Err(QueueError::Unroutable(target.to_owned())),
        Confirmation::Nack(_) => Err(QueueError::Nacked(target.to_owned())),
    }
}

/// Closes a connection we no longer use, without waiting for it.
fn close_quietly(connection: Connection) {
    tokio::spawn(async move {
        super::close_connection(&connection, Duration::from_secs(120)).await;
    });
}
