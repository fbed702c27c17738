//! The worker: consumes notifications from RabbitMQ, runs each through the
//! [`Pipeline`], and acks only after the database commit.
//!
//! What happens to a delivery is decided from the pipeline's report:
//!
//! | report | disposition |
//! | --- | --- |
//! | applied, duplicate, ignored, mismatch | ack |
//! | order_not_found, within the orphan window | delayed retry |
//! | order_not_found, window passed | `orphan_payment` review item, park |
//! | invalid_signature, malformed (incl. a PAN in a stored field) | park, never retried |
//! | database error (after the store's own in-process backoff) | delayed retry; park once the schedule is exhausted |
//!
//! A retry or park is a *copy* published with confirms; the original is
//! acked only once the copy is confirmed, and nacked with requeue when the
//! copy could not be published, so no path drops a message.
//!
//! Shutdown follows tokio-rs/mini-redis: one shutdown signal stops taking
//! deliveries (`basic.cancel`), then the worker waits (bounded) for the
//! tasks in flight, then closes channels and connections. Deliveries not
//! acked by then return to the queue when the channel closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, field};

use crate::domain::{Outcome, ReviewKind};
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, PipelineConfig, Report, body_digest};
use crate::queue::topology::delay_label;
use crate::queue::{AmqpSettings, MessageMeta, Publisher, QueueError, close_connection};
use crate::store::{DatabaseSettings, Store, StoreError};

/// How the worker consumes.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub amqp: AmqpSettings,
    /// Unacked deliveries the broker may push to this worker (`basic.qos`).
    pub prefetch: u16,
    /// Notifications processed at the same time.
    pub concurrency: usize,
    /// How long an `order_not_found` notification keeps being retried.
    pub orphan_window: Duration,
    /// How long shutdown waits for the notifications in flight.
    pub shutdown_deadline: Duration,
    /// How long to wait for lapin's own recovery before rebuilding the
    /// connection ourselves.
    pub recovery_stall: Duration,
}

impl WorkerSettings {
    pub const DEFAULT_PREFETCH: u16 = 32;
    pub const DEFAULT_CONCURRENCY: usize = 8;
    pub const DEFAULT_ORPHAN_WINDOW: Duration = Duration::from_secs(3600);
    pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);
    pub const DEFAULT_RECOVERY_STALL: Duration = Duration::from_secs(15);

    pub fn new(amqp: AmqpSettings) -> Self {
        Self {
            amqp,
            prefetch: Self::DEFAULT_PREFETCH,
            concurrency: Self::DEFAULT_CONCURRENCY,
            orphan_window: Self::DEFAULT_ORPHAN_WINDOW,
            shutdown_deadline: Self::DEFAULT_SHUTDOWN_DEADLINE,
            recovery_stall: Self::DEFAULT_RECOVERY_STALL,
        }
    }
}

/// What stops the worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot serve the operations endpoint on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Deliveries handled to the end (acked, retried, parked or returned).
    pub handled: u64,
    /// Tasks still running when the shutdown deadline passed (their
    /// messages return to the queue).
    pub abandoned: usize,
}

/// Shared liveness of the broker and database, for `/readyz` and metrics.
#[derive(Debug, Clone, Default)]
pub struct Health {
    broker: Arc<AtomicBool>,
    database: Arc<AtomicBool>,
}

impl Health {
    pub fn broker_connected(&self) -> bool {
        self.broker.load(Ordering::Relaxed)
    }

    pub fn database_up(&self) -> bool {
        self.database.load(Ordering::Relaxed)
    }

    pub(crate) fn set_broker(&self, metrics: &Metrics, up: bool) {
        self.broker.store(up, Ordering::Relaxed);
        metrics.broker_connected.set(i64::from(up));
    }

    pub(crate) fn set_database(&self, metrics: &Metrics, up: bool) {
        self.database.store(up, Ordering::Relaxed);
        metrics.database_up.set(i64::from(up));
    }
}

/// The consume loop and what it needs.
pub struct Worker {
    pipeline: Pipeline,
    settings: WorkerSettings,
    metrics: Metrics,
    health: Health,
}

/// What each delivery task shares.
struct Context {
    pipeline: Pipeline,
    publisher: Publisher,
    metrics: Metrics,
    health: Health,
    settings: WorkerSettings,
}

/// Why a consume session ended.
enum SessionEnd {
    /// Shutdown was asked for: the consumer is cancelled, the connection open.
    Shutdown(Box<(Connection, Channel)>),
    /// The connection is unusable: build a new one.
    Rebuild,
}

impl Worker {
    pub fn new(pipeline: Pipeline, settings: WorkerSettings, metrics: Metrics) -> Self {
        Self {
            pipeline,
            settings,
            metrics,
            health: Health::default(),
        }
    }

    pub fn with_health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Consumes until `shutdown` completes, then drains (see the module
    /// docs). Broker and database outages are waited out, never returned.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<RunSummary, WorkerError> {
        let token = CancellationToken::new();
        let settings = self.settings.clone();
        let context = Arc::new(Context {
            publisher: Publisher::new(settings.amqp.clone(), "publisher"),
            pipeline: self.pipeline,
            metrics: self.metrics.clone(),
            health: self.health.clone(),
            settings: settings.clone(),
        });
        let tracker = TaskTracker::new();
        let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        let monitor = tokio::spawn(monitor_database(context.clone(), token.clone()));

        let consume = async {
            loop {
                let session = connect_consumer(&settings, &token).await?;
                context.health.set_broker(&context.metrics, true);
                tracing::info!(queue = %settings.amqp.topology.work_queue(), "consuming");
                match consume_session(session, &context, &tracker, &permits, &token).await {
                    SessionEnd::Shutdown(open) => return Some(*open),
                    SessionEnd::Rebuild => {
                        context.health.set_broker(&context.metrics, false);
                        tracing::warn!("rebuilding the broker connection");
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
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    channel.close(200, "shutdown".into()),
                )
                .await;
            }
            close_connection(&connection, Duration::from_secs(10)).await;
        }
        context.publisher.close().await;
        context.health.set_broker(&context.metrics, false);
        monitor.abort();
        let handled = context.metrics.handled();
        tracing::info!(handled, abandoned, "worker stopped");
        Ok(RunSummary { handled, abandoned })
    }
}

/// Connects, declares, sets the prefetch and starts consuming, retrying with
/// backoff until it works or shutdown is asked for (`None`).
async fn connect_consumer(
    settings: &WorkerSettings,
    token: &CancellationToken,
) -> Option<(Connection, Channel, Consumer)> {
    let attempt = || async {
        let connection = settings.amqp.connect("consumer").await?;
        let opened = async {
            let channel = connection.create_channel().await?;
            settings.amqp.topology.declare(&channel).await?;
            channel
                .basic_qos(settings.prefetch.max(1), BasicQosOptions::default())
                .await?;
            let consumer = channel
                .basic_consume(
                    settings.amqp.topology.work_queue().into(),
                    consumer_tag().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, QueueError>((channel, consumer))
        }
        .await;
        match opened {
            Ok((channel, consumer)) => Ok((connection, channel, consumer)),
            Err(err) => {
                let _ = connection.close(200, "setup failed".into()).await;
                Err(err)
            }
        }
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times();
    let connect = attempt.retry(backoff).notify(|err: &QueueError, after| {
        tracing::warn!(error = %err, retry_in = ?after, "cannot consume from RabbitMQ, retrying");
    });
    tokio::select! {
        () = token.cancelled() => None,
        session = connect => session.ok(),
    }
}

fn consumer_tag() -> String {
    static SESSIONS: AtomicU64 = AtomicU64::new(0);
    format!(
        "ipn-reconciler-{}-{}",
        std::process::id(),
        SESSIONS.fetch_add(1, Ordering::Relaxed)
    )
}

/// Takes deliveries from one consumer until shutdown or a broken connection.
async fn consume_session(
    (connection, channel, mut consumer): (Connection, Channel, Consumer),
    context: &Arc<Context>,
    tracker: &TaskTracker,
    permits: &Arc<Semaphore>,
    token: &CancellationToken,
) -> SessionEnd {
    let tag = consumer.tag();
    let stop = |connection: Connection, channel: Channel| async move {
        // Stop the broker from sending more; prefetched deliveries we never
        // started stay unacked and return to the queue when the channel closes.
        let cancel = channel.basic_cancel(tag.clone(), BasicCancelOptions::default());
        if let Err(err) = tokio::time::timeout(Duration::from_secs(5), cancel)
            .await
            .unwrap_or(Ok(()))
        {
            tracing::warn!(error = %err, "basic.cancel failed");
        }
        SessionEnd::Shutdown(Box::new((connection, channel)))
    };
    loop {
        let next = tokio::select! {
            biased;
            () = token.cancelled() => return stop(connection, channel).await,
            next = consumer.next() => next,
        };
        match next {
            Some(Ok(delivery)) => {
                let permit = tokio::select! {
                    biased;
                    () = token.cancelled() => return stop(connection, channel).await,
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        // The semaphore is never closed.
                        Err(_) => return stop(connection, channel).await,
                    },
                };
                tracker.spawn(handle_delivery(context.clone(), delivery, permit));
            }
            Some(Err(err)) => {
                context.health.set_broker(&context.metrics, false);
                tracing::warn!(error = %err, "consumer lost its channel; waiting for recovery");
                let recovered = tokio::select! {
                    () = token.cancelled() => return stop(connection, channel).await,
                    recovered = tokio::time::timeout(
                        context.settings.recovery_stall,
                        channel.wait_for_recovery(err),
                    ) => recovered,
                };
                match recovered {
                    Ok(Ok(())) if channel.status().connected() => {
                        context.health.set_broker(&context.metrics, true);
                        tracing::info!("broker connection recovered");
                    }
                    _ => {
                        close_in_background(connection);
                        return SessionEnd::Rebuild;
                    }
                }
            }
            None => {
                tracing::warn!("the broker ended the consumer");
                close_in_background(connection);
                return SessionEnd::Rebuild;
            }
        }
    }
}

/// Closes an abandoned connection without holding up the rebuild.
fn close_in_background(connection: Connection) {
    tokio::spawn(async move {
        close_connection(&connection, Duration::from_secs(120)).await;
    });
}

/// Keeps the database gauge current even when no notification arrives.
async fn monitor_database(context: Arc<Context>, token: CancellationToken) {
    loop {
        let up = matches!(
            tokio::time::timeout(Duration::from_secs(3), context.pipeline.store().ping()).await,
            Ok(Ok(()))
        );
        context.health.set_database(&context.metrics, up);
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// What to do with a delivery once the pipeline has spoken.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Disposition {
    Ack,
    /// Publish a copy to the retry queue for `delay`, then ack.
    Retry {
        delay: Duration,
        meta: MessageMeta,
    },
    /// Publish a copy to the parking queue, then ack.
    Park {
        reason: String,
    },
}

async fn handle_delivery(context: Arc<Context>, delivery: Delivery, _permit: OwnedSemaphorePermit) {
    let started = Instant::now();
    context.metrics.in_flight.inc();
    let now = Utc::now();
    let meta = MessageMeta::from_properties(&delivery.properties, now);
    let digest = body_digest(&delivery.data);
    let span = tracing::info_span!(
        "notification",
        digest = &digest[..12],
        attempt = meta.attempt,
        processor_ref = field::Empty,
        order_ref = field::Empty,
        outcome = field::Empty,
    );
    async {
        let disposition = judge(&context, &delivery.data, &meta, &digest, now).await;
        settle(&context, delivery, &meta, &digest, disposition).await;
    }
    .instrument(span)
    .await;
    context.metrics.in_flight.dec();
    context
        .metrics
        .processing_seconds
        .observe(started.elapsed().as_secs_f64());
    context.metrics.count_handled();
}

/// Runs the pipeline and decides the disposition.
async fn judge(
    context: &Context,
    body: &[u8],
    meta: &MessageMeta,
    digest: &str,
    now: DateTime<Utc>,
) -> Disposition {
    let span = tracing::Span::current();
    let report = match context.pipeline.handle(body, meta.received_at).await {
        Ok(report) => report,
        Err(err) => {
            if err.is_transient() {
                context.health.set_database(&context.metrics, false);
            }
            span.record("outcome", "database_error");
            tracing::warn!(error = %err, "cannot record the notification; retrying later");
            return retry_or_park(context, meta, now, "database_error", digest, None).await;
        }
    };
    context.health.set_database(&context.metrics, true);
    if let Some(processor_ref) = &report.processor_ref {
        span.record("processor_ref", processor_ref.as_str());
    }
    if let Some(order_ref) = &report.order_ref {
        span.record("order_ref", order_ref.as_str());
    }
    span.record("outcome", report.outcome.as_str());
    count(context, &report, meta.received_at);
    tracing::info!(
        outcome = report.outcome.as_str(),
        reason = report.reason.as_deref(),
        state = report.order_state.map(|s| s.as_str()),
        "notification handled"
    );
    match report.outcome {
        Outcome::Applied | Outcome::Duplicate | Outcome::Ignored | Outcome::Mismatch => {
            Disposition::Ack
        }
        Outcome::OrderNotFound => {
            let first_seen = meta.first_seen.unwrap_or(now);
            let waited = (now - first_seen).to_std().unwrap_or(Duration::ZERO);
            if waited < context.settings.orphan_window {
                let delays = context.settings.amqp.topology.retry_delays();
                // Within the window the last delay repeats, so a short schedule
                // still covers a long window.
                let delay = delays
                    .get(meta.attempt as usize)
                    .or_else(|| delays.delays().last().copied());
                if let Some(delay) = delay {
                    return Disposition::Retry {
                        delay,
                        meta: next_attempt(meta, first_seen),
                    };
                }
            }
            let details = format!(
                "no order {} after {}s of retries",
                report.order_ref.as_deref().unwrap_or("?"),
                waited.as_secs()
            );
            if let Err(err) = context
                .pipeline
                .store()
                .open_review_item(
                    ReviewKind::OrphanPayment,
                    report.order_ref.as_deref(),
                    Some(digest),
                    &details,
                )
                .await
            {
                tracing::warn!(error = %err, "cannot open the orphan_payment review item");
            }
            Disposition::Park {
                reason: "order_not_found".into(),
            }
        }
        Outcome::InvalidSignature | Outcome::Malformed => Disposition::Park {
            reason: match &report.reason {
                Some(reason) => format!("{}:{reason}", report.outcome.as_str()),
                None => report.outcome.as_str().to_owned(),
            },
        },
    }
}

fn next_attempt(meta: &MessageMeta, first_seen: DateTime<Utc>) -> MessageMeta {
    MessageMeta {
        attempt: meta.attempt.saturating_add(1),
        first_seen: Some(first_seen),
        ..meta.clone()
    }
}

/// The next delayed retry, or parking once the schedule is exhausted (with a
/// best-effort review item, so a person hears of it).
async fn retry_or_park(
    context: &Context,
    meta: &MessageMeta,
    now: DateTime<Utc>,
    cause: &str,
    digest: &str,
    order_ref: Option<&str>,
) -> Disposition {
    let first_seen = meta.first_seen.unwrap_or(now);
    match context
        .settings
        .amqp
        .topology
        .retry_delays()
        .get(meta.attempt as usize)
    {
        Some(delay) => Disposition::Retry {
            delay,
            meta: next_attempt(meta, first_seen),
        },
        None => {
            let details = format!("{cause} after {} retries", meta.attempt);
            if let Err(err) = context
                .pipeline
                .store()
                .open_review_item(
                    ReviewKind::InvalidNotification,
                    order_ref,
                    Some(digest),
                    &details,
                )
                .await
            {
                tracing::warn!(error = %err, "cannot open a review item for a parked notification");
            }
            Disposition::Park {
                reason: format!("retries_exhausted:{cause}"),
            }
        }
    }
}

fn count(context: &Context, report: &Report, received_at: DateTime<Utc>) {
    let metrics = &context.metrics;
    metrics.outcome(report.outcome.as_str());
    match (&report.verified, report.outcome) {
        (Some(verified), _) => metrics.signature(verified.algorithm.as_str(), "valid"),
        (None, Outcome::InvalidSignature) => {
            metrics.signature("unknown", report.reason.as_deref().unwrap_or("invalid"))
        }
        _ => {}
    }
    if report.pan_fields > 0 {
        metrics.pan_detections.inc();
    }
    if let Some(ipn_date) = report.ipn_date {
        let skew = received_at - ipn_date.and_utc();
        metrics
            .ipn_date_skew_seconds
            .observe(skew.num_milliseconds() as f64 / 1000.0);
    }
}

/// Carries out a disposition: publish the copy (if any), then ack; nack
/// with requeue when the copy could not be published.
async fn settle(
    context: &Context,
    delivery: Delivery,
    meta: &MessageMeta,
    digest: &str,
    disposition: Disposition,
) {
    let topology = &context.settings.amqp.topology;
    let copied = match &disposition {
        Disposition::Ack => Ok(()),
        Disposition::Retry { delay, meta } => {
            let queue = topology.retry_queue(*delay);
            let published = context
                .publisher
                .publish("", &queue, &delivery.data, meta.to_properties(digest))
                .await;
            if published.is_ok() {
                context.metrics.retry(&delay_label(*delay));
                tracing::info!(retry_in = %delay_label(*delay), attempt = meta.attempt, "retry scheduled");
            }
            published
        }
        Disposition::Park { reason } => {
            let parked = MessageMeta {
                park_reason: Some(reason.clone()),
                parked_at: Some(Utc::now()),
                ..meta.clone()
            };
            let published = context
                .publisher
                .publish(
                    "",
                    &topology.parking_queue(),
                    &delivery.data,
                    parked.to_properties(digest),
                )
                .await;
            if published.is_ok() {
                context.metrics.park(reason);
                tracing::warn!(reason = %reason, "notification parked");
            }
            published
        }
    };
    match copied {
        Ok(()) => match delivery.ack(BasicAckOptions::default()).await {
            Ok(true) => {}
            Ok(false) => tracing::info!(
                "the delivery's channel is gone; the broker redelivers it and the redelivery is a duplicate"
            ),
            Err(err) => tracing::warn!(error = %err, "ack failed; the broker will redeliver"),
        },
        Err(err) => {
            tracing::warn!(error = %err, "cannot publish the retry/park copy; returning the message to the queue");
            // Slow the loop down: the broker is likely in trouble, and every
            // requeue counts against the work queue's delivery limit.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let nack = delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await;
            if let Err(err) = nack {
                tracing::warn!(error = %err, "nack failed; the broker will redeliver");
            }
        }
    }
}

/// Everything `ipn-reconciler serve` runs.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub database: DatabaseSettings,
    pub pipeline: PipelineConfig,
    pub worker: WorkerSettings,
    /// Where the operations endpoint listens (`None`: no endpoint).
    pub http_addr: Option<SocketAddr>,
    /// The processor-facing intake (`None`: worker only).
    pub intake: Option<IntakeListen>,
}

/// Where and how the intake of `serve` listens.
#[derive(Debug, Clone)]
pub struct IntakeListen {
    pub addr: SocketAddr,
    pub settings: crate::intake::IntakeSettings,
}

/// The daemon: connects the store (waiting out an unreachable database),
/// serves the operations endpoint, and runs the worker until `shutdown`.
pub async fn serve(
    settings: ServeSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, WorkerError> {
    let token = CancellationToken::new();
    let shutdown_token = token.clone();
    let signal = async move {
        shutdown.await;
        shutdown_token.cancel();
    };
    tokio::pin!(signal);
    let metrics = Metrics::new();
    let health = Health::default();

    let listener = match settings.http_addr {
        None => None,
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| WorkerError::Http { addr, source })?,
        ),
    };

    // Bound before anything else so a taken port fails start-up at once.
    let intake_listener = match &settings.intake {
        None => None,
        Some(intake) => Some(tokio::net::TcpListener::bind(intake.addr).await.map_err(
            |source| WorkerError::Http {
                addr: intake.addr,
                source,
            },
        )?),
    };

    let connect = connect_store(settings.database.clone());
    let store = tokio::select! {
        store = connect => store?,
        () = &mut signal => return Ok(RunSummary { handled: 0, abandoned: 0 }),
    };
    health.set_database(&metrics, true);

    let http = listener.map(|listener| {
        let state = crate::http::OpsState {
            metrics: metrics.clone(),
            health: health.clone(),
            store: store.clone(),
        };
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "operations endpoint listening");
        }
        let token = token.clone();
        tokio::spawn(crate::http::serve(listener, state, async move {
            token.cancelled().await;
        }))
    });

    let intake = match (intake_listener, settings.intake) {
        (Some(listener), Some(listen)) => {
            // Its own publishing connection: intake traffic never waits
            // behind the worker's retries.
            let publisher = Arc::new(Publisher::new(settings.worker.amqp.clone(), "intake"));
            let intake = Arc::new(crate::intake::Intake {
                settings: listen.settings,
                keys: settings.pipeline.keys.clone(),
                signatures: settings.pipeline.signatures,
                publisher: publisher.clone(),
                metrics: metrics.clone(),
            });
            tracing::info!(addr = %listen.addr, path = %intake.settings.path, "intake listening");
            let token = token.clone();
            let task = tokio::spawn(crate::intake::serve(listener, intake, async move {
                token.cancelled().await;
            }));
            Some((task, publisher))
        }
        _ => None,
    };

    let worker = Worker::new(
        Pipeline::new(settings.pipeline, store),
        settings.worker,
        metrics,
    )
    .with_health(health);
    let run = worker.run(token.clone().cancelled_owned());
    tokio::pin!(run);
    let summary = tokio::select! {
        summary = &mut run => summary,
        // The signal cancels the token, which the worker watches: let it drain.
        () = &mut signal => run.await,
    }?;
    token.cancel();
    if let Some(http) = http {
        let _ = tokio::time::timeout(Duration::from_secs(5), http).await;
    }
    if let Some((task, publisher)) = intake {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        publisher.close().await;
    }
    Ok(summary)
}

/// Connects the store, retrying with backoff while the database is
/// unreachable; other failures (a bad URL, a failed migration) end start-up.
async fn connect_store(settings: DatabaseSettings) -> Result<Store, StoreError> {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times();
    (|| Store::connect(settings.clone()))
        .retry(backoff)
        .when(StoreError::is_transient)
        .notify(|err, after| {
            tracing::warn!(error = %err, retry_in = ?after, "database unreachable, retrying");
        })
        .await
}
