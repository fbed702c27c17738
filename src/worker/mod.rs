//! The worker: consumes notifications from RabbitMQ, runs each through the
//! [`Pipeline`], and acks only after the database commit.
//!
//! - [`consume`]: connecting, the consume loop, one delivery's way (the
//!   body opened with the [`Sealer`] first);
//! - [`disposition`]: what becomes of a delivery, as a pure function;
//! - [`settle`]: carrying a disposition out (copy, review item, ack).
//!
//! A retry or park is a *copy* of the delivery, published with confirms: a
//! sealed body opened here is sealed again with the copy's headers (the
//! seal binds the counters and times the worker acts on: see
//! [`crate::queue::seal`]), any other body goes as received. The original
//! is acked only once the copy is confirmed, and nacked with requeue when
//! the copy could not be published, so no path drops a message. The one exception is a body that
//! carries a card number: it is recorded (digest, field names, review item)
//! and acked without any copy, so that it never outlives its delivery.
//!
//! Shutdown follows tokio-rs/mini-redis: one shutdown signal stops taking
//! deliveries (`basic.cancel`), then the worker waits (bounded) for the
//! tasks in flight, then closes channels and connections. Deliveries not
//! acked by then return to the queue when the channel closes.

pub mod consume;
pub mod disposition;
pub mod settle;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::health::Health;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::queue::{AmqpSettings, Publisher, Sealer, close_connection};
pub use consume::SessionEnd;
pub use disposition::{Disposition, DispositionPolicy, ParkKind, ParkReason, Verdict, disposition};

/// How the worker consumes (built from the settings, which hold the
/// defaults).
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub amqp: AmqpSettings,
    /// Unacked deliveries the broker may push to this worker (`basic.qos`).
    pub prefetch: u16,
    /// Batches (or, with `batch_size` 1, notifications) processed at the
    /// same time.
    pub concurrency: usize,
    /// Deliveries applied in one database transaction.
    pub batch_size: usize,
    /// How long a batch waits to fill before it is applied anyway.
    pub batch_wait: Duration,
    /// How long an `order_not_found` notification keeps being retried.
    pub orphan_window: Duration,
    /// How long a parked copy stays in the parking queue before the broker
    /// drops it (its per-message `expiration`, and the queue's own TTL).
    /// Bounds how long a body sits in the broker, and how long a retired
    /// seal key must stay in the seal key file to open it.
    pub parking_ttl: Duration,
    /// How long shutdown waits for the notifications in flight.
    pub shutdown_deadline: Duration,
    /// How long closing a channel or connection may take at shutdown.
    pub close_timeout: Duration,
    /// How long to let the broker settle the last acks before the channel
    /// closes at shutdown.
    pub ack_settle_grace: Duration,
}

impl WorkerSettings {
    /// The retry policy of [`disposition`].
    pub fn policy(&self) -> DispositionPolicy {
        DispositionPolicy {
            retry_delays: self.amqp.topology.retry_delays().clone(),
            orphan_window: self.orphan_window,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunSummary {
    /// Deliveries handled to the end (acked, retried, parked or returned).
    pub handled: u64,
    /// Tasks still running when the shutdown deadline passed (their
    /// messages return to the queue).
    pub abandoned: usize,
}

/// The consume loop and what it needs.
pub struct Worker {
    pipeline: Pipeline,
    sealer: Sealer,
    settings: WorkerSettings,
    metrics: Metrics,
    health: Health,
}

/// What each delivery task shares.
pub(crate) struct Context {
    pub(crate) pipeline: Pipeline,
    /// Opens sealed bodies and seals the copies it publishes: the keys of
    /// `seal-key-file`, and (to open what earlier versions sealed) keys
    /// derived from the pipeline's key ring.
    pub(crate) sealer: Sealer,
    pub(crate) publisher: Publisher,
    pub(crate) metrics: Metrics,
    pub(crate) health: Health,
    pub(crate) settings: WorkerSettings,
    pub(crate) policy: DispositionPolicy,
}

impl Worker {
    /// A worker judging with `pipeline`, opening and sealing bodies with
    /// `sealer` (`seal-key-file`).
    pub fn new(
        pipeline: Pipeline,
        sealer: Sealer,
        settings: WorkerSettings,
        metrics: Metrics,
        health: Health,
    ) -> Self {
        Self {
            pipeline,
            sealer,
            settings,
            metrics,
            health,
        }
    }

    /// Consumes until `shutdown` completes, then drains (see the module
    /// docs). Broker and database outages are waited out, never returned.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> RunSummary {
        let token = CancellationToken::new();
        let settings = self.settings.clone();
        let context = Arc::new(Context {
            publisher: Publisher::new(settings.amqp.clone(), "publisher"),
            sealer: self.sealer.with_legacy(&self.pipeline.config().keys),
            pipeline: self.pipeline,
            metrics: self.metrics.clone(),
            health: self.health.clone(),
            policy: settings.policy(),
            settings: settings.clone(),
        });
        let tracker = TaskTracker::new();
        let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));

        // The broker counts as up exactly while a consumer exists: set up
        // once `basic.consume` is answered, down the moment the session
        // ends, whatever ended it (one "lost" line, with the cause), then
        // up again ("back") once a new connection consumes.
        let consume = async {
            loop {
                let session = consume::connect(&context, &token).await?;
                context.health.broker().set_up();
                tracing::info!(queue = %settings.amqp.topology.work_queue(), "consuming");
                match consume::session(session, &context, &tracker, &permits, &token).await {
                    SessionEnd::Shutdown(open) => return Some(*open),
                    SessionEnd::Lost(reason) => {
                        context
                            .health
                            .broker()
                            .set_down(&format!("{reason}; reconnecting"));
                    }
                }
            }
        };
        tokio::pin!(shutdown);
        tokio::pin!(consume);
        let open = tokio::select! {
            open = &mut consume => open,
            () = &mut shutdown => {
                // Let the consume loop see the signal and cancel its consumer
                // itself: dropping it would drop the channel with it, and the
                // tasks in flight could no longer ack.
                token.cancel();
                consume.await
            }
        };
        // `consume` only returns once the token is cancelled; make sure it is.
        token.cancel();
        tracing::info!(
            in_flight = tracker.len(),
            "shutting down: finishing notifications in flight"
        );
        tracker.close();
        let abandoned = match tokio::time::timeout(settings.shutdown_deadline, tracker.wait()).await
        {
            Ok(()) => 0,
            Err(_) => {
                tracing::warn!(
                    abandoned = tracker.len(),
                    "shutdown deadline passed; unacked notifications return to the queue"
                );
                tracker.len()
            }
        };
        if let Some((connection, channel)) = open {
            if channel.status().connected() {
                // A quorum queue settles acks asynchronously; closing the
                // channel right after a burst of acks (a batch just done)
                // can return some of those messages to the queue. They would
                // only be redelivered as duplicates, which change nothing,
                // but a moment's grace makes a clean stop the usual case.
                tokio::time::sleep(settings.ack_settle_grace).await;
                let _ = tokio::time::timeout(
                    settings.close_timeout,
                    channel.close(200, "shutdown".into()),
                )
                .await;
            }
            close_connection(&connection, settings.close_timeout).await;
        }
        context.publisher.close().await;
        context.health.broker().set_stopped();
        let handled = context.metrics.handled();
        tracing::info!(handled, abandoned, "worker stopped");
        RunSummary { handled, abandoned }
    }
}
