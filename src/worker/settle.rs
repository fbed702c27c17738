//! Carrying out a [`Disposition`]: open the review item it asks for,
//! publish the retry or parking copy (with confirms), then ack the
//! original; nack it with requeue when the copy could not be published.
//!
//! A sealed body the worker opened is sealed again for its copy, with the
//! copy's headers ([`outgoing`]): the seal binds the counters and times
//! the worker acts on, so a copy with a counter moved on needs a seal of
//! its own (and a body sealed under the earlier scheme leaves under the
//! current one). A plain body, or one the worker could not open, goes as
//! received. Parked copies expire after `parking-ttl` (the per-message
//! `expiration` property, and the parking queue's own `x-message-ttl`).

use std::time::Duration;

use chrono::Utc;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};

use super::Context;
use super::disposition::{Disposition, ReviewRequest};
use crate::queue::seal::BodyForm;
use crate::queue::topology::delay_label;
use crate::queue::{MessageMeta, SealError};

/// How long to hold a delivery whose copy could not be published before
/// returning it: the broker is likely in trouble, and every requeue counts
/// against the work queue's delivery limit.
const REQUEUE_PAUSE: Duration = Duration::from_secs(1);

/// The copy a retry or a park publishes: its metadata, and its body when
/// it is not the delivery's bytes as received (a seal made again).
pub(crate) struct Outgoing {
    meta: MessageMeta,
    resealed: Option<Vec<u8>>,
}

impl Outgoing {
    /// The copy's body: sealed again, or the delivery's bytes as received.
    fn body<'a>(&'a self, delivery: &'a Delivery) -> &'a [u8] {
        self.resealed.as_deref().unwrap_or(&delivery.data)
    }
}

/// The copy `disposition` publishes, if any (`None` for an ack or a
/// discard): the retry's metadata, or the delivery's with the park reason
/// and time. When the delivery was sealed and `plain` is its opened body,
/// the body is sealed again with the copy's metadata; otherwise the copy
/// carries the bytes as received. Fails only when a seal cannot be made
/// (no randomness): the delivery then goes back to its queue.
pub(crate) fn outgoing(
    context: &Context,
    disposition: &Disposition,
    meta: &MessageMeta,
    plain: Option<&[u8]>,
) -> Result<Option<Outgoing>, SealError> {
    let copy_meta = match disposition {
        Disposition::Ack | Disposition::Discard { .. } => return Ok(None),
        Disposition::Retry { meta, .. } => meta.clone(),
        Disposition::Park { reason, .. } => MessageMeta {
            park_reason: Some(reason.to_string()),
            parked_at: Some(Utc::now()),
            ..meta.clone()
        },
    };
    let sealed = BodyForm::of_content_type(meta.content_type.as_deref()) == Some(BodyForm::Sealed);
    match plain {
        Some(plain) if sealed => {
            let resealed = context.sealer.seal(plain, copy_meta)?;
            Ok(Some(Outgoing {
                meta: resealed.meta,
                resealed: Some(resealed.body),
            }))
        }
        _ => Ok(Some(Outgoing {
            meta: copy_meta,
            resealed: None,
        })),
    }
}

pub(crate) async fn settle(
    context: &Context,
    delivery: Delivery,
    digest: &str,
    disposition: Disposition,
    outgoing: Result<Option<Outgoing>, SealError>,
) {
    let topology = &context.settings.amqp.topology;
    let outgoing = match outgoing {
        Ok(outgoing) => outgoing,
        Err(err) => {
            tracing::warn!(error = %err, "cannot seal the retry/park copy; returning the message to the queue");
            tokio::time::sleep(REQUEUE_PAUSE).await;
            nack(delivery).await;
            return;
        }
    };
    let copied = match &disposition {
        Disposition::Ack => Ok(()),
        Disposition::Retry { delay, meta } => {
            let Some(copy) = &outgoing else {
                return missing_copy(delivery).await;
            };
            let queue = topology.retry_queue(*delay);
            let published = context
                .publisher
                .publish(
                    "",
                    &queue,
                    copy.body(&delivery),
                    copy.meta.to_properties(digest),
                )
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
            let Some(copy) = &outgoing else {
                return missing_copy(delivery).await;
            };
            if let Some(review) = review {
                // Best effort: the parked copy keeps the notification either
                // way, and `parked list` shows it.
                if let Err(err) = open_review_item(context, review, digest).await {
                    tracing::warn!(error = %err, kind = %review.kind, "cannot open the review item of a parked notification");
                }
            }
            let properties = copy
                .meta
                .to_properties(digest)
                .with_expiration(expiration(context.settings.parking_ttl).into());
            let published = context
                .publisher
                .publish(
                    "",
                    &topology.parking_queue(),
                    copy.body(&delivery),
                    properties,
                )
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

/// A retry or park without its copy: [`outgoing`] makes one for both, so
/// this is a mistake in the program, never input. The delivery goes back.
async fn missing_copy(delivery: Delivery) {
    tracing::error!("no copy was made for a retry or park; returning the message to the queue");
    tokio::time::sleep(REQUEUE_PAUSE).await;
    nack(delivery).await;
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
