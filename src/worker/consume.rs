//! Taking deliveries from the broker: connecting (with backoff), the
//! consume loop of one connection, and one delivery's way from the broker
//! through the pipeline to its [`Disposition`](super::Disposition).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, field};

use super::Context;
use super::disposition::{Verdict, disposition};
use crate::domain::{BodyDigest, LicenceNotice, Outcome, pan};
use crate::metrics::{CommitLatency, SignatureStage};
use crate::pipeline::{Processed, Refusal, Report};
use crate::queue::{MessageMeta, QueueError, SealError, close_connection};
use crate::store::{RejectedNotification, StoreError};

/// Why a consume session ended.
pub enum SessionEnd {
    /// Shutdown was asked for: the consumer is cancelled, the connection open.
    Shutdown(Box<(Connection, Channel)>),
    /// The consumer is gone (why, in words): build a new connection.
    Lost(String),
}

/// How often a session checks that its connection and channel are still
/// open, besides what the consumer stream reports: a loss must never
/// depend on one signal alone.
const WATCHDOG: Duration = Duration::from_secs(1);

/// Connects, declares, sets the prefetch and starts consuming, retrying with
/// backoff until it works or shutdown is asked for (`None`). Each failure
/// updates the broker's health, which logs the outage, not the attempts
/// (wrong credentials are retried too, in case they are put right on the
/// broker's side, with one line a minute at most).
pub(crate) async fn connect(
    context: &Context,
    token: &CancellationToken,
) -> Option<(Connection, Channel, Consumer)> {
    let settings = &context.settings;
    let attempt = || async {
        let connection = settings.amqp.connect("consumer").await?;
        let opened = async {
            let channel = connection.create_channel().await?;
            settings.amqp.topology.declare(&connection).await?;
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
        // Each attempt at debug level; the outage's own lines come
        // from the health state (one when lost, a reminder a minute).
        tracing::debug!(error = %err, retry_in = ?after, "cannot consume yet; retrying");
        context.health.broker().set_down(&err.to_string());
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

/// Takes deliveries from one consumer until shutdown or until the consumer
/// is gone: an error on its stream (the connection failed, was closed by
/// the broker, or went silent past the heartbeat), the end of its stream
/// (the broker cancelled it), or a connection or channel found closed by
/// the watchdog. A lost session is never repaired in place: its deliveries
/// not yet acked return to the queue with the channel, and the caller
/// builds everything again.
pub(crate) async fn session(
    (connection, channel, mut consumer): (Connection, Channel, Consumer),
    context: &Arc<Context>,
    tracker: &TaskTracker,
    permits: &Arc<Semaphore>,
    token: &CancellationToken,
) -> SessionEnd {
    // Shutdown stops taking deliveries by no longer reading the consumer.
    // It is not cancelled: the broker sends at most `prefetch` more, which
    // stay unacked and return to the queue when the channel closes after
    // the work in flight, and acks of the work in flight are never sent
    // after a `basic.cancel` (a quorum queue may already have returned
    // those messages to the queue then, and they would be applied twice).
    let stop = |connection: Connection, channel: Channel| async move {
        SessionEnd::Shutdown(Box::new((connection, channel)))
    };
    let batch_size = context.settings.batch_size.max(1);
    let batch_wait = context.settings.batch_wait;
    // Deliveries collected for the next batch, and when it must go at the
    // latest (a quiet system keeps its latency low).
    let mut pending: Vec<(Delivery, DateTime<Utc>)> = Vec::new();
    let mut due = tokio::time::Instant::now();
    // Whether the pending batch may go: full, or waited `batch_wait`.
    // It goes once a permit is free; until then it keeps filling up to
    // `batch_size`, so that under load (every permit busy) batches grow by
    // themselves instead of leaving one after the other half empty, each
    // paying a whole transaction (measured with `bench`: at 1,000/s offered
    // a 5 ms wait closed batches of about 5, which drained slower than
    // they arrived).
    let mut ready = false;
    let mut watchdog = tokio::time::interval(WATCHDOG);
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lost = |connection: Connection, reason: String| {
        close_in_background(connection);
        SessionEnd::Lost(reason)
    };
    loop {
        let next = tokio::select! {
            biased;
            // Deliveries collected but not started stay unacked and return
            // to the queue when the channel closes.
            () = token.cancelled() => return stop(connection, channel).await,
            _ = watchdog.tick() => {
                if let Some(reason) = broken(&connection, &channel) {
                    return lost(connection, reason);
                }
                continue;
            }
            // The semaphore is never closed.
            Ok(permit) = permits.clone().acquire_owned(), if ready => {
                let batch = std::mem::take(&mut pending);
                ready = false;
                tracker.spawn(handle_batch(context.clone(), batch, permit));
                continue;
            }
            () = tokio::time::sleep_until(due), if !pending.is_empty() && !ready => {
                ready = true;
                continue;
            }
            next = consumer.next(), if pending.len() < batch_size => next,
        };
        match next {
            Some(Ok(delivery)) if batch_size == 1 => {
                let Some(permit) = permit(permits, token).await else {
                    return stop(connection, channel).await;
                };
                tracker.spawn(handle(context.clone(), (delivery, Utc::now()), permit));
            }
            Some(Ok(delivery)) => {
                if pending.is_empty() {
                    due = tokio::time::Instant::now() + batch_wait;
                }
                pending.push((delivery, Utc::now()));
                if pending.len() >= batch_size {
                    ready = true;
                }
            }
            Some(Err(err)) => {
                return lost(
                    connection,
                    format!(
                        "the consumer failed: {}",
                        crate::queue::describe_amqp_error(&err)
                    ),
                );
            }
            None => {
                return lost(connection, "the broker cancelled the consumer".to_owned());
            }
        }
    }
}

/// Why a session's connection or channel can no longer deliver, if so.
fn broken(connection: &Connection, channel: &Channel) -> Option<String> {
    let connection = connection.status();
    let channel = channel.status();
    if connection.errored() {
        Some("the connection failed".to_owned())
    } else if !connection.connected() {
        Some("the connection is closed".to_owned())
    } else if !channel.connected() {
        Some("the channel is closed".to_owned())
    } else {
        None
    }
}

/// A permit to start one more batch (or delivery); `None` on shutdown.
async fn permit(
    permits: &Arc<Semaphore>,
    token: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    tokio::select! {
        biased;
        () = token.cancelled() => None,
        // The semaphore is never closed.
        permit = permits.clone().acquire_owned() => permit.ok(),
    }
}

/// Closes an abandoned connection without holding up the rebuild.
fn close_in_background(connection: Connection) {
    tokio::spawn(async move {
        close_connection(&connection, Duration::from_secs(5)).await;
    });
}

/// A delivery, opened: its metadata, its plain body (or why it cannot be
/// opened) and the digest it is known by.
struct Prepared {
    delivery: Delivery,
    /// When the worker took the delivery from the broker.
    taken_at: DateTime<Utc>,
    meta: MessageMeta,
    /// Of the plain body (what the pipeline digests too), or of the bytes
    /// as received when they cannot be opened: what the database, the logs
    /// and the review items know the notification by.
    digest: String,
    span: tracing::Span,
}

/// The plain body, or why the message cannot be opened.
type Opened = Result<zeroize::Zeroizing<Vec<u8>>, SealError>;

fn prepare(
    context: &Context,
    (delivery, taken_at): (Delivery, DateTime<Utc>),
    now: DateTime<Utc>,
) -> (Prepared, Opened) {
    let meta = MessageMeta::from_properties(&delivery.properties, now);
    let opened = context.sealer.open(&meta, &delivery.data);
    let digest = match &opened {
        Ok(plain) => BodyDigest::of(plain),
        Err(_) => BodyDigest::of(&delivery.data),
    }
    .to_string();
    let span = tracing::info_span!(
        "notification",
        digest = &digest[..12],
        orphan_attempt = meta.orphan_attempt,
        transient_attempt = meta.transient_attempt,
        processor_ref = field::Empty,
        order_ref = field::Empty,
        outcome = field::Empty,
    );
    (
        Prepared {
            delivery,
            taken_at,
            meta,
            digest,
            span,
        },
        opened,
    )
}

/// One delivery: open it, judge it, decide, settle; logged in a span of
/// its own.
async fn handle(
    context: Arc<Context>,
    delivery: (Delivery, DateTime<Utc>),
    _permit: OwnedSemaphorePermit,
) {
    let started = Instant::now();
    context.metrics.in_flight.inc();
    let now = Utc::now();
    let (prepared, opened) = prepare(&context, delivery, now);
    let judged = async {
        match &opened {
            Ok(plain) => context
                .pipeline
                .process(plain, prepared.meta.received_at)
                .await
                .map(|processed| scan_refused(processed, plain)),
            Err(err) => unsealable(&context, err, &prepared.digest, prepared.meta.received_at)
                .await
                .map(Processed::Notification),
        }
    }
    .instrument(prepared.span.clone())
    .await;
    conclude(&context, prepared, opened, judged, now, started).await;
}

/// A batch of deliveries: open them, judge and apply them in one database
/// transaction, then decide and settle each.
///
/// When the batch fails for a reason that retrying will not fix (one
/// notification's decision cannot be written), its deliveries are handled
/// one by one, so one bad notification holds back no other; when it fails
/// for a passing reason (the database is away), every delivery gets the
/// database-failure disposition (a delayed retry), as one by one would.
async fn handle_batch(
    context: Arc<Context>,
    deliveries: Vec<(Delivery, DateTime<Utc>)>,
    _permit: OwnedSemaphorePermit,
) {
    let started = Instant::now();
    let count = deliveries.len();
    context.metrics.in_flight.inc_by(count as i64);
    let now = Utc::now();
    let (prepared, opened): (Vec<Prepared>, Vec<Opened>) = deliveries
        .into_iter()
        .map(|delivery| prepare(&context, delivery, now))
        .unzip();
    let openable: Vec<(&[u8], DateTime<Utc>)> = prepared
        .iter()
        .zip(&opened)
        .filter_map(|(p, opened)| {
            opened
                .as_ref()
                .ok()
                .map(|plain| (plain.as_slice(), p.meta.received_at))
        })
        .collect();
    let batch = context.pipeline.process_batch(&openable).await;
    drop(openable);
    let mut judged: Vec<Option<Result<Processed, StoreError>>> = match batch {
        Ok(all) => {
            let mut all = all.into_iter();
            opened
                .iter()
                .map(|opened| match opened {
                    Ok(plain) => all
                        .next()
                        .map(|processed| Ok(scan_refused(processed, plain))),
                    Err(_) => None,
                })
                .collect()
        }
        Err(err) if err.is_transient() => {
            context.health.database().suspect();
            tracing::debug!(error = %err, notifications = count, "cannot record the batch; retrying later");
            opened
                .iter()
                .map(|opened| {
                    opened.as_ref().ok().map(|_| {
                        Err(StoreError::Pool {
                            message: err.to_string(),
                            transient: true,
                        })
                    })
                })
                .collect()
        }
        Err(err) => {
            tracing::warn!(error = %err, notifications = count, "the batch failed; applying its notifications one by one");
            let mut one_by_one = Vec::with_capacity(count);
            for (p, opened) in prepared.iter().zip(&opened) {
                one_by_one.push(match opened {
                    Ok(plain) => Some(
                        context
                            .pipeline
                            .process(plain, p.meta.received_at)
                            .instrument(p.span.clone())
                            .await
                            .map(|processed| scan_refused(processed, plain)),
                    ),
                    Err(_) => None,
                });
            }
            one_by_one
        }
    };
    for ((p, opened), judged) in prepared.iter().zip(&opened).zip(judged.iter_mut()) {
        if let Err(err) = opened {
            *judged = Some(
                unsealable(&context, err, &p.digest, p.meta.received_at)
                    .instrument(p.span.clone())
                    .await
                    .map(Processed::Notification),
            );
        }
    }
    let settled = prepared
        .into_iter()
        .zip(opened)
        .zip(judged)
        .map(|((p, opened), judged)| {
            let judged = judged.unwrap_or_else(|| {
                Err(StoreError::Invalid("the batch lost a delivery".to_owned()))
            });
            conclude(&context, p, opened, judged, now, started)
        });
    futures::future::join_all(settled).await;
}

/// Observes the judgement, decides the disposition, makes the copy it
/// publishes (sealing the body again with the copy's headers; the plain
/// body is zeroed right after), settles the delivery, and counts it,
/// inside the delivery's span.
async fn conclude(
    context: &Context,
    prepared: Prepared,
    opened: Opened,
    judged: Result<Processed, StoreError>,
    now: DateTime<Utc>,
    started: Instant,
) {
    let Prepared {
        delivery,
        taken_at,
        meta,
        digest,
        span,
    } = prepared;
    async {
        let verdict = match &judged {
            Ok(Processed::Notification(report)) => {
                observe(context, report, &meta);
                Verdict::Handled(report)
            }
            Ok(Processed::Licence(notice)) => {
                observe_licence(context, notice);
                Verdict::Licence
            }
            Err(err) => {
                tracing::Span::current().record("outcome", "database_error");
                if err.is_transient() {
                    // The outage has its own lines (health); one per
                    // notification would flood the log while it lasts.
                    context.health.database().suspect();
                    tracing::debug!(error = %err, "cannot record the notification; retrying later");
                } else {
                    tracing::warn!(error = %err, "cannot record the notification; retrying later");
                }
                Verdict::DatabaseFailed
            }
        };
        let decided = disposition(verdict, &meta, now, &context.policy);
        if matches!(judged, Ok(Processed::Notification(ref report)) if report.outcome != crate::domain::Outcome::OrderNotFound)
        {
            let seconds = |span: chrono::TimeDelta| {
                span.num_microseconds().map_or(0.0, |us| us.max(0) as f64 / 1e6)
            };
            context.metrics.observe_commit_latency(CommitLatency {
                to_delivery: seconds(taken_at - meta.received_at),
                to_commit: seconds(Utc::now() - taken_at),
            });
        }
        let plain = opened.as_ref().ok().map(|plain| plain.as_slice());
        let outgoing = super::settle::outgoing(context, &decided, &meta, plain);
        // The plain body is no longer needed: zeroed now, before the
        // broker's confirm is awaited.
        drop(opened);
        super::settle::settle(context, delivery, &digest, decided, outgoing).await;
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

/// A message whose body cannot be opened (unknown content type, unknown
/// key, broken seal) is a malformed notification: recorded under the
/// digest of the bytes as received, then parked as they are (never opened,
/// so never in clear). Adding the missing key and `parked requeue` brings
/// it back.
async fn unsealable(
    context: &Context,
    err: &SealError,
    digest: &str,
    received_at: DateTime<Utc>,
) -> Result<Report, StoreError> {
    tracing::warn!(error = %err, "cannot open the message body");
    let refusal = Refusal::new(err.reason());
    context
        .pipeline
        .store()
        .record_rejected(&RejectedNotification {
            body_sha256: digest.to_owned(),
            outcome: Outcome::Malformed,
            reason: refusal.to_string(),
            received_at,
            processed_at: Utc::now(),
            pan_fields: Vec::new(),
        })
        .await?;
    Ok(Report::rejected(
        digest.to_owned(),
        Outcome::Malformed,
        refusal,
    ))
}

/// Counts the fields with a card number in a body the pipeline refused as
/// malformed before its own scan (an unparsable form, a missing field), so
/// that such a body is not parked with a card number in it. A malformed
/// body can never be applied, so keeping no copy of it loses nothing.
///
/// Bodies refused for their signature are not scanned: they may become
/// valid once a missing key is added (`parked requeue`), and the guard's
/// false positives on long digit strings would discard them instead.
/// They are parked sealed, as shown by `parked list` without their body.
///
/// The intake refuses at the door the verified bodies this leaves to be
/// parked as malformed, and only those
/// ([`crate::pipeline::parked_as_malformed`]): keep the two in step.
fn scan_refused(processed: Processed, plain: &[u8]) -> Processed {
    match processed {
        Processed::Notification(mut report) => {
            if report.outcome == Outcome::Malformed && report.pan_fields == 0 {
                report.pan_fields = pan::lenient_pan_fields(plain);
            }
            Processed::Notification(report)
        }
        licence @ Processed::Licence(_) => licence,
    }
}

/// Logs and counts a verified licence change notification: references,
/// status and flags only (a [`LicenceNotice`] holds nothing personal).
/// Stored before this by [`crate::pipeline::Pipeline::record_licence`].
fn observe_licence(context: &Context, notice: &LicenceNotice) {
    let span = tracing::Span::current();
    span.record("outcome", "licence");
    tracing::info!(
        licence_code = %notice.licence_code,
        status = notice.status.as_ref().map(tracing::field::display),
        dispatch_reason = notice.dispatch_reason.as_ref().map(tracing::field::display),
        updated_at = %notice.updated_at,
        test = notice.test,
        "licence change notification verified and recorded"
    );
    let metrics = &context.metrics;
    metrics.licence_notice(notice.test);
    metrics.signature_valid(SignatureStage::Worker, notice.algorithm);
    if !notice.pan_fields.is_empty() {
        metrics.pan_detections.inc();
        tracing::warn!(
            fields = ?notice.pan_fields,
            "card number found in a licence change notification; its value was dropped"
        );
    }
}

/// Logs and counts what the pipeline reported.
fn observe(context: &Context, report: &Report, meta: &MessageMeta) {
    let span = tracing::Span::current();
    if let Some(processor_ref) = &report.processor_ref {
        span.record("processor_ref", processor_ref.as_str());
    }
    if let Some(order_ref) = &report.order_ref {
        span.record("order_ref", order_ref.as_str());
    }
    span.record("outcome", report.outcome.as_str());
    tracing::info!(
        outcome = report.outcome.as_str(),
        reason = report.refusal.as_ref().map(tracing::field::display),
        state = report.order_state.map(|s| s.as_str()),
        "notification handled"
    );

    let metrics = &context.metrics;
    metrics.outcome(report.outcome);
    if let Some(verified) = &report.verified {
        metrics.signature_valid(SignatureStage::Worker, verified.algorithm);
    } else if report.outcome == crate::domain::Outcome::InvalidSignature {
        let result = report.refusal.as_ref().map_or("invalid", |r| r.reason());
        metrics.signature_refused(SignatureStage::Worker, report.refused_algorithm, result);
    }
    if report.pan_fields > 0 {
        metrics.pan_detections.inc();
    }
    if let Some(after) = report.reconciled_after {
        metrics
            .order_to_reconciled_seconds
            .observe(after.as_secs_f64());
    }
    if let Some(ipn_date) = report.ipn_date {
        let skew = meta.received_at - ipn_date.and_utc();
        metrics
            .ipn_date_skew_seconds
            .observe(skew.num_milliseconds() as f64 / 1000.0);
    }
}
