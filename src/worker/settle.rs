//! Carrying out a [`Disposition`]: open the review item it asks for,
//! publish the retry or parking copy (with confirms), then ack the
//! original; nack it with requeue when the copy could not be published.

use std::time::Duration;

use chrono::Utc;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};

use super::Context;
use super::disposition::Disposition;
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
                context.metrics.retry(&delay_label(*delay));
                tracing::info!(retry_in = %delay_label(*delay), attempt = meta.attempt, "retry scheduled");
            }
            published
        }
        Disposition::Park { reason, review } => {
            if let Some(review) = review {
                // Best effort: the parked copy keeps the notification either
                // way, and `parked list` shows it.
                if let Err(err) = context
                    .pipeline
                    .store()
                    .open_review_item(
                        review.kind,
                        review.order_ref.as_deref(),
                        Some(digest),
                        &review.details,
                    )
                    .await
                {
                    tracing::warn!(error = %err, kind = %review.kind, "cannot open the review item of a parked notification");
                }
            }
            let parked = MessageMeta {
                park_reason: Some(reason.to_string()),
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
                context.metrics.park(reason.kind());
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
            tokio::time::sleep(REQUEUE_PAUSE).await;
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
