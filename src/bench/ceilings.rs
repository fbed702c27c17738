//! The ceilings a worker is measured against, in the same run:
//!
//! - the broker's: a bare consumer that only acks the same messages with
//!   the same prefetch (no opening, no judging, no database);
//! - the database's: the same writes the worker makes for the same
//!   notifications, in the same batches, as many at once, through
//!   [`Store::apply_batch`] (the bodies judged beforehand, off the clock);
//! - the publisher's (for `bench intake`): publishes with confirms, as many
//!   in flight as the load generator has connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;

use super::BenchError;
use super::workload::SealedBody;
use crate::pipeline::{Judgement, Pipeline};
use crate::queue::{AmqpSettings, Publisher};
use crate::store::BatchItem;

/// A rate measured over a count.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Rate {
    pub count: usize,
    pub seconds: f64,
    pub per_second: f64,
}

impl Rate {
    pub fn of(count: usize, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64();
        Self {
            count,
            seconds,
            per_second: count as f64 / seconds.max(1e-9),
        }
    }
}

/// Consumes and acks `count` messages from the work queue of `amqp`, one
/// ack per delivery as the worker sends them, with `prefetch` unacked.
pub async fn broker(amqp: &AmqpSettings, prefetch: u16, count: usize) -> Result<Rate, BenchError> {
    let connection = amqp.connect("bench-broker-ceiling").await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch.max(1), BasicQosOptions::default())
        .await?;
    let started = Instant::now();
    let mut consumer = channel
        .basic_consume(
            amqp.topology.work_queue().into(),
            "ipn-reconciler-bench-ceiling".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut acked = 0;
    let limit = Duration::from_secs(60) + Duration::from_millis(count as u64);
    let drained = tokio::time::timeout(limit, async {
        while acked < count {
            match consumer.next().await {
                Some(Ok(delivery)) => {
                    delivery.ack(BasicAckOptions::default()).await?;
                    acked += 1;
                }
                Some(Err(err)) => return Err(BenchError::from(err)),
                None => break,
            }
        }
        Ok(())
    })
    .await;
    let rate = Rate::of(acked, started.elapsed());
    let _ = channel.close(200, "ceiling measured".into()).await;
    let _ = connection.close(200, "ceiling measured".into()).await;
    match drained {
        Ok(Ok(())) if acked == count => Ok(rate),
        Ok(Err(err)) => Err(err),
        _ => Err(BenchError::Worker(format!(
            "the bare consumer acked {acked} of {count} messages"
        ))),
    }
}

/// Judges `bodies` (off the clock), then applies them in batches of
/// `batch_size`, `concurrency` batches at once, and times the writes.
/// Returns the rate and the number of bodies that were refused (not
/// written: the bench's stream has none).
pub async fn database(
    pipeline: &Pipeline,
    bodies: &[Vec<u8>],
    batch_size: usize,
    concurrency: usize,
) -> Result<(Rate, usize), BenchError> {
    let now = Utc::now();
    let mut refused = 0;
    let items: Vec<BatchItem> = bodies
        .iter()
        .filter_map(|body| match pipeline.judge(body, now) {
            Judgement::Event(judged) => {
                let (event, _verified) = *judged;
                Some(BatchItem {
                    event,
                    received_at: now,
                })
            }
            // A licence change notification writes nothing either.
            Judgement::Refused(_) | Judgement::Licence(_) => {
                refused += 1;
                None
            }
        })
        .collect();
    let policy = &pipeline.config().reconcile;
    let store = pipeline.store();
    let started = Instant::now();
    futures::stream::iter(items.chunks(batch_size.max(1)))
        .map(|batch| store.apply_batch(batch, policy))
        .buffer_unordered(concurrency.max(1))
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok((Rate::of(items.len(), started.elapsed()), refused))
}

/// Publishes with confirms for `duration`, `in_flight` publishes at once,
/// cycling through `bodies`: the most a publisher on one connection gets
/// confirmed, as the intake publishes (one confirmed publish per request).
pub async fn publisher(
    amqp: &AmqpSettings,
    bodies: Arc<Vec<SealedBody>>,
    in_flight: usize,
    duration: Duration,
) -> Result<Rate, BenchError> {
    let publisher = Arc::new(Publisher::connect(amqp.clone(), "bench-publish-ceiling").await?);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..in_flight.max(1) {
        let publisher = publisher.clone();
        let bodies = bodies.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut confirmed = 0usize;
            while Instant::now() < deadline {
                let index = next.fetch_add(1, Ordering::Relaxed) % bodies.len().max(1);
                let (body, meta) = bodies[index].message()?;
                publisher.publish_notification(&body, &meta).await?;
                confirmed += 1;
            }
            Ok::<_, BenchError>(confirmed)
        }));
    }
    let mut confirmed = 0;
    for task in tasks {
        confirmed += task
            .await
            .map_err(|err| BenchError::Worker(err.to_string()))??;
    }
    let rate = Rate::of(confirmed, started.elapsed());
    publisher.close().await;
    Ok(rate)
}
