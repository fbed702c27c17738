//! Carrying out a [`Disposition`]: open the review item it asks for,
//! publish the retry or parking copy (with confirms), then ack the
//! original; nack it with requeue when the copy could not be published.
//!
//! Copies carry the delivery's bytes as received, so a sealed body stays
//! sealed (same content type, same `x-sealed-by`) and a body the worker
//! could not open is kept exactly as it came. Parked copies expire after
//! `parking-ttl` (the per-message `expiration` property: the parking
//! queue's own arguments are left as deployments declared them).

use std::time::Duration;

use chrono::Utc;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};

use super::Context;
use super::disposition::{Disposition, ReviewRequest};
use crate::queue::MessageMeta;
use crate::queue::topology::delay_label;

/// How long to hold a delivery whose copy could not be published before
/// returning it: the broker is likely in trouble, and every requeue counts
/// against the work queue's delivery limit.
const REQUEUE_PAUSE: Duration = Duration::from_secs(1);

pub(crate) async fn settle(
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
                context.metrics.retry(*delay);
                tracing::info!(
                    retry_in = %delay_label(*delay),
                    orphan_attempt = meta.orphan_attempt,
                    transient_attempt = meta.transient_attempt,
                    "retry scheduled"
                );
            }
            published
        }
        Disposition::Park { reason, review } => {
            if let Some(review) = review {
                // Best effort: the parked copy keeps the notification either
                // way, and `parked list` shows it.
                if let Err(err) = open_review_item(context, review, digest).await {
                    tracing::warn!(error = %err, kind = %review.kind, "cannot open the review item of a parked notification");
                }
            }
            let parked = MessageMeta {
                park_reason: Some(reason.to_string()),
                parked_at: Some(Utc::now()),
                ..meta.clone()
            };
            let properties = parked
                .to_properties(digest)
                .with_expiration(expiration(context.settings.parking_ttl).into());
            let published = context
                .publisher
                .publish("", &topology.parking_queue(), &delivery.data, properties)
                .await;
            if published.is_ok() {
                context.metrics.park(reason.kind());
                tracing::warn!(reason = %reason, "notification parked");
            }
            published
        }
        Disposition::Discard { review } => {
            // Here the review item is not best effort: with no copy kept,
            // it is how a person hears of the notification. If it cannot be
            // opened, the delivery goes back to the queue and is judged
            // again.
            let opened = match review {
                Some(review) => open_review_item(context, review, digest)
                    .await
                    .map_err(|err| {
                        tracing::warn!(error = %err, kind = %review.kind, "cannot open the review item of a discarded notification");
                    }),
                None => Ok(()),
            };
            if opened.is_ok() {
                tracing::warn!(
                    "notification carries a card number: recorded and acked, no copy kept"
                );
                Ok(())
            } else {
                tokio::time::sleep(REQUEUE_PAUSE).await;
                nack(delivery).await;
                return;
            }
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
            tokio::time::sleep(REQUEUE_PAUSE).await;
            nack(delivery).await;
        }
    }
}

/// Returns a delivery to its queue.
async fn nack(delivery: Delivery) {
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

async fn open_review_item(
    context: &Context,
    review: &ReviewRequest,
    digest: &str,
) -> Result<(), crate::store::StoreError> {
    context
        .pipeline
        .store()
        .open_review_item(
            review.kind,
            review.order_ref.as_deref(),
            Some(digest),
            &review.details,
        )
        .await
}

/// The `expiration` property for a TTL: whole milliseconds, as text.
/// RabbitMQ refuses values above 2^32 - 1 ms (about 49 days); the setting
/// is checked against that at start, and clamped here all the same.
pub(crate) fn expiration(ttl: Duration) -> String {
    ttl.as_millis().min(u128::from(u32::MAX)).to_string()
}
