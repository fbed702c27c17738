//! The parking queue, for operators: browse it and move messages back.
//!
//! Nothing consumes the parking queue automatically: a parked message waits
//! for a person to fix its cause (add a missing key, import an order) and
//! requeue it. Browsing takes messages without acking them and then closes
//! the channel, which returns them all to the queue in their places.

use chrono::{DateTime, Utc};
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::{Channel, Connection};

use super::{AmqpSettings, MessageMeta, Publisher, QueueError};
use crate::domain::BodyDigest;

/// Characters of the body digest shown as a parked message's id.
pub const ID_LEN: usize = 12;

/// One parked message, as shown to an operator: references, never the body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ParkedMessage {
    /// The first [`ID_LEN`] hex digits of the body's SHA-256.
    pub id: String,
    pub body_sha256: String,
    pub reason: String,
    pub attempts: u32,
    pub received_at: DateTime<Utc>,
    pub parked_at: Option<DateTime<Utc>>,
    pub bytes: usize,
}

/// Which parked messages to move back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    /// A prefix of the body digest (as listed), or the full message id.
    Id(String),
}

impl Selection {
    fn matches(&self, digest: &str, message_id: Option<&str>) -> bool {
        match self {
            Selection::All => true,
            Selection::Id(id) => {
                let id = id.to_ascii_lowercase();
                (!id.is_empty() && digest.starts_with(&id)) || message_id == Some(id.as_str())
            }
        }
    }
}

async fn open(settings: &AmqpSettings) -> Result<(Connection, Channel), QueueError> {
    let connection = settings.connect("parked").await?;
    let channel = connection.create_channel().await?;
    settings.topology.declare(&channel).await?;
    Ok((connection, channel))
}

async fn close(connection: Connection, channel: Channel) {
    // Closing the channel returns every message we took and did not ack.
    let _ = channel.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;
}

/// Lists the parked messages; they all stay parked.
pub async fn list(settings: &AmqpSettings) -> Result<Vec<ParkedMessage>, QueueError> {
    let (connection, channel) = open(settings).await?;
    let queue = settings.topology.parking_queue();
    let mut parked = Vec::new();
    let result = async {
        while let Some(message) = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await?
        {
            let delivery = message.delivery;
            let meta = MessageMeta::from_properties(&delivery.properties, Utc::now());
            parked.push(describe(&delivery.data, &meta));
        }
        Ok::<_, QueueError>(())
    }
    .await;
    close(connection, channel).await;
    result.map(|()| parked)
}

fn describe(body: &[u8], meta: &MessageMeta) -> ParkedMessage {
    let digest = BodyDigest::of(body).to_string();
    ParkedMessage {
        id: digest[..ID_LEN].to_owned(),
        body_sha256: digest,
        reason: meta.park_reason.clone().unwrap_or_else(|| "unknown".into()),
        attempts: meta.attempt,
        received_at: meta.received_at,
        parked_at: meta.parked_at,
        bytes: body.len(),
    }
}

/// Moves the selected parked messages back to the work exchange, with
/// confirms, their attempt counter and retry window reset. A message is
/// removed from the parking queue only after its copy was confirmed.
/// Returns the messages moved.
pub async fn requeue(
    settings: &AmqpSettings,
    selection: &Selection,
) -> Result<Vec<ParkedMessage>, QueueError> {
    let publisher = Publisher::connect(settings.clone(), "parked-requeue").await?;
    let (connection, channel) = open(settings).await?;
    let queue = settings.topology.parking_queue();
    let mut moved = Vec::new();
    let result = async {
        while let Some(message) = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await?
        {
            let delivery = message.delivery;
            let digest = BodyDigest::of(&delivery.data).to_string();
            let message_id = delivery
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.as_str());
            if !selection.matches(&digest, message_id) {
                continue;
            }
            let old = MessageMeta::from_properties(&delivery.properties, Utc::now());
            let fresh = MessageMeta::received(old.received_at, old.remote_addr.clone());
            publisher
                .publish_notification(&delivery.data, &fresh)
                .await?;
            delivery.ack(BasicAckOptions::default()).await?;
            moved.push(describe(&delivery.data, &old));
        }
        Ok::<_, QueueError>(())
    }
    .await;
    close(connection, channel).await;
    publisher.close().await;
    result.map(|()| moved)
}
