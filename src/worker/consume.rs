//! Taking deliveries from the broker: connecting (with backoff), the
//! consume loop of one connection, and one delivery's way from the broker
//! through the pipeline to its [`Disposition`](super::Disposition).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use chrono::Utc;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, field};

use super::Context;
use super::disposition::{Verdict, disposition};
use crate::domain::BodyDigest;
use crate::pipeline::Report;
use crate::queue::{MessageMeta, QueueError, close_connection};

/// Why a consume session ended.
pub enum SessionEnd {
    /// Shutdown was asked for: the consumer is cancelled, the connection open.
    Shutdown(Box<(Connection, Channel)>),
    /// The connection is unusable: build a new one.
    Rebuild,
}

/// Connects, declares, sets the prefetch and starts consuming, retrying with
/// backoff until it works or shutdown is asked for (`None`). Each failure
/// updates the broker's health (logged once per change, not per attempt).
pub(crate) async fn connect(
    context: &Context,
    token: &CancellationToken,
) -> Option<(Connection, Channel, Consumer)> {
    let settings = &context.settings;
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
    let connect = attempt
        .retry(backoff)
        .notify(|err: &QueueError, _after| context.health.broker().set_down(&err.to_string()));
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
pub(crate) async fn session(
    (connection, channel, mut consumer): (Connection, Channel, Consumer),
    context: &Arc<Context>,
    tracker: &TaskTracker,
    permits: &Arc<Semaphore>,
    token: &CancellationToken,
) -> SessionEnd {
    let tag = consumer.tag();
    let close_timeout = context.settings.close_timeout;
    let stop = |connection: Connection, channel: Channel| async move {
        // Stop the broker from sending more; prefetched deliveries we never
        // started stay unacked and return to the queue when the channel closes.
        let cancel = channel.basic_cancel(tag.clone(), BasicCancelOptions::default());
        if let Err(err) = tokio::time::timeout(close_timeout, cancel)
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
                tracker.spawn(handle(context.clone(), delivery, permit));
            }
            Some(Err(err)) => {
                context
                    .health
                    .broker()
                    .set_down(&format!("consumer lost its channel: {err}"));
                let recovered = tokio::select! {
                    () = token.cancelled() => return stop(connection, channel).await,
                    recovered = tokio::time::timeout(
                        context.settings.recovery_stall,
                        channel.wait_for_recovery(err),
                    ) => recovered,
                };
                match recovered {
                    Ok(Ok(())) if channel.status().connected() => {
                        context.health.broker().set_up();
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

/// One delivery: judge it, decide, settle; logged in a span of its own.
async fn handle(context: Arc<Context>, delivery: Delivery, _permit: OwnedSemaphorePermit) {
    let started = Instant::now();
    context.metrics.in_flight.inc();
    let now = Utc::now();
    let meta = MessageMeta::from_properties(&delivery.properties, now);
    let digest = BodyDigest::of(&delivery.data).to_string();
    let span = tracing::info_span!(
        "notification",
        digest = &digest[..12],
        attempt = meta.attempt,
        processor_ref = field::Empty,
        order_ref = field::Empty,
        outcome = field::Empty,
    );
    async {
        let judged = context
            .pipeline
            .handle(&delivery.data, meta.received_at)
            .await;
        let verdict = match &judged {
            Ok(report) => {
                context.health.database().set_up();
                observe(&context, report, &meta);
                Verdict::Handled(report)
            }
            Err(err) => {
                if err.is_transient() {
                    context.health.database().set_down(&err.to_string());
                }
                tracing::Span::current().record("outcome", "database_error");
                tracing::warn!(error = %err, "cannot record the notification; retrying later");
                Verdict::DatabaseFailed
            }
        };
        let decided = disposition(verdict, &meta, now, &context.policy);
        super::settle::settle(&context, delivery, &meta, &digest, decided).await;
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
    metrics.outcome(report.outcome.as_str());
    if let Some(verified) = &report.verified {
        metrics.signature("worker", verified.algorithm.as_str(), "valid");
    } else if report.outcome == crate::domain::Outcome::InvalidSignature {
        let algorithm = report.refused_algorithm.map_or("none", |a| a.as_str());
        let result = report.refusal.as_ref().map_or("invalid", |r| r.reason());
        metrics.signature("worker", algorithm, result);
    }
    if report.pan_fields > 0 {
        metrics.pan_detections.inc();
    }
    if let Some(ipn_date) = report.ipn_date {
        let skew = meta.received_at - ipn_date.and_utc();
        metrics
            .ipn_date_skew_seconds
            .observe(skew.num_milliseconds() as f64 / 1000.0);
    }
}
