//! The parking queue, for operators: browse it and move messages back.
//!
//! Nothing consumes the parking queue automatically: a parked message waits
//! for a person to fix its cause (add a missing key, import an order) and
//! requeue it, or until its TTL (`parking-ttl`, set per message by the
//! worker) runs out. Browsing takes messages without acking them and then
//! closes the channel, which returns them all to the queue in their places.
//!
//! Bodies are never shown here: a parked message is listed by its metadata
//! (digest, reason, counters, times, size, sealing key), so listing needs
//! no key and an operator's terminal never shows personal data. Moving a
//! message back resets its retry counters and window, and the seal binds
//! those ([`super::seal`]): a body sealed under the current scheme is
//! opened in memory and sealed again with the reset headers, which needs
//! the seal keys. Without them, or when it does not open, it goes back
//! with the headers its seal binds unchanged (only the park reason and
//! time are cleared), and the worker judges it again as it is. Plain
//! bodies, and bodies sealed under the earlier scheme (which bound
//! nothing but the key id), go back as they are with their counters
//! reset, as before.

use chrono::{DateTime, Utc};
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::{Channel, Connection};

use super::seal::{BodyForm, SEAL_VERSION};
use super::{AmqpSettings, MessageMeta, Publisher, QueueError, Sealer};
use crate::domain::BodyDigest;

/// Characters of the body digest shown as a parked message's id.
pub const ID_LEN: usize = 12;

/// One parked message, as shown to an operator: references, never the body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ParkedMessage {
    /// The first [`ID_LEN`] hex digits of `body_sha256`.
    pub id: String,
    /// The SHA-256 of the plain body: the digest the database and the logs
    /// know the notification by. For a sealed body, the message id it
    /// carries (the body is not opened here): the plain body's digest, or
    /// that of the sealed bytes when the worker could not open them.
    pub body_sha256: String,
    pub reason: String,
    /// Broker-side retries before it was parked, of both kinds.
    pub attempts: u32,
    #[serde(serialize_with = "crate::export::rfc3339::serialize")]
    pub received_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::export::rfc3339::option")]
    pub parked_at: Option<DateTime<Utc>>,
    /// Size of the message body as queued (sealed bodies are 40 bytes
    /// longer than the plain one).
    pub bytes: usize,
    /// The key id that sealed the body; `None` for a plain body. A key
    /// named here must stay in the key file until the message is gone.
    pub sealed_by: Option<String>,
    /// `ipn` or `lcn`, as the intake said when it queued the body
    /// (`x-notice-kind`); `None` for a message from a publisher that did
    /// not say (bodies are not opened here to find out).
    pub notice: Option<String>,
}

/// Which parked messages to move back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    /// A prefix of the body digest (as listed), or the full message id.
    Id(String),
    /// Every message parked for `reason` (exactly as listed), parked at or
    /// after `since` when given (a message without a parking time counts
    /// from its receipt): once a cause is fixed, what it parked goes back,
    /// and nothing parked for another reason.
    Reason {
        reason: String,
        since: Option<DateTime<Utc>>,
    },
}

impl Selection {
    fn matches(&self, digest: &str, message_id: Option<&str>, meta: &MessageMeta) -> bool {
        match self {
            Selection::All => true,
            Selection::Id(id) => {
                let id = id.to_ascii_lowercase();
                (!id.is_empty() && digest.starts_with(&id)) || message_id == Some(id.as_str())
            }
            Selection::Reason { reason, since } => {
                meta.park_reason.as_deref().unwrap_or("unknown") == reason
                    && since.is_none_or(|since| meta.parked_at.unwrap_or(meta.received_at) >= since)
            }
        }
    }

    /// Whether a listed message is selected: what a person is shown before
    /// confirming a requeue.
    pub fn matches_listed(&self, message: &ParkedMessage) -> bool {
        match self {
            Selection::All => true,
            Selection::Id(id) => {
                let id = id.to_ascii_lowercase();
                !id.is_empty() && message.body_sha256.starts_with(&id)
            }
            Selection::Reason { reason, since } => {
                message.reason == *reason
                    && since.is_none_or(|since| {
                        message.parked_at.unwrap_or(message.received_at) >= since
                    })
            }
        }
    }
}

async fn open(settings: &AmqpSettings) -> Result<(Connection, Channel), QueueError> {
    let connection = settings.connect("parked").await?;
    let channel = connection.create_channel().await?;
    settings.topology.declare(&connection).await?;
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
    let digest = plain_digest(body, meta);
    ParkedMessage {
        id: digest[..ID_LEN].to_owned(),
        body_sha256: digest,
        reason: meta.park_reason.clone().unwrap_or_else(|| "unknown".into()),
        attempts: meta.attempts(),
        received_at: meta.received_at,
        parked_at: meta.parked_at,
        bytes: body.len(),
        sealed_by: meta.sealed_by.clone(),
        notice: meta.notice.map(|kind| kind.as_str().to_owned()),
    }
}

/// The plain body's digest without opening anything: of the body itself
/// when it travels in clear, else the message id its publisher set (when
/// it is one), else of the sealed bytes, so every message still gets an id.
fn plain_digest(body: &[u8], meta: &MessageMeta) -> String {
    let sealed = BodyForm::of_content_type(meta.content_type.as_deref()) != Some(BodyForm::Plain);
    let announced = meta
        .message_id
        .as_deref()
        .and_then(|id| BodyDigest::parse(id).ok());
    match announced {
        Some(digest) if sealed => digest.as_str().to_owned(),
        _ => BodyDigest::of(body).to_string(),
    }
}

/// The metadata of a parked message moved back: counters, retry window and
/// park reason reset; receipt, caller, content type, sealing key and
/// scheme, message id and notice kind unchanged. No expiration: the
/// parking TTL applies only while parked.
fn requeued(old: &MessageMeta) -> MessageMeta {
    MessageMeta {
        content_type: old.content_type.clone(),
        sealed_by: old.sealed_by.clone(),
        seal: old.seal.clone(),
        message_id: old.message_id.clone(),
        notice: old.notice,
        ..MessageMeta::received(old.received_at, old.remote_addr.clone())
    }
}

/// What goes back to the work exchange for a parked message (see the
/// module docs): its bytes and metadata, the counters reset when they can
/// be.
fn moved_back(
    sealer: Option<&Sealer>,
    body: &[u8],
    old: &MessageMeta,
) -> Result<(Vec<u8>, MessageMeta), QueueError> {
    let fresh = requeued(old);
    let sealed = BodyForm::of_content_type(old.content_type.as_deref()) == Some(BodyForm::Sealed);
    if !sealed || old.seal.is_none() {
        return Ok((body.to_vec(), fresh));
    }
    let resealed = match sealer {
        Some(sealer) if old.seal.as_deref() == Some(SEAL_VERSION) => match sealer.open(old, body) {
            Ok(plain) => Some(
                sealer
                    .seal(&plain, fresh)
                    .map_err(|err| QueueError::Seal(err.to_string()))?,
            ),
            Err(err) => {
                tracing::warn!(error = %err, "a parked message does not open here: moved back with its counters as they are");
                None
            }
        },
        _ => {
            tracing::warn!(
                "no seal key here: a parked message goes back with its counters as they are"
            );
            None
        }
    };
    Ok(match resealed {
        Some(sealed) => (sealed.body, sealed.meta),
        None => (
            body.to_vec(),
            MessageMeta {
                park_reason: None,
                parked_at: None,
                ..old.clone()
            },
        ),
    })
}

/// Moves the selected parked messages back to the work exchange, with
/// confirms, their retry counters and retry window reset (sealed again
/// with `sealer`, see the module docs). A message is removed from the
/// parking queue only after its copy was confirmed. Returns the messages
/// moved.
///
/// `before` is awaited for each selected message before it is published
/// (the caller commits its action-log row there): when it fails, that
/// message is not moved and the requeue stops, so no message moves without
/// its row. A row whose publish then fails stays, naming a move that was
/// tried (the message is still parked, the error reported).
pub async fn requeue<E: From<QueueError>>(
    settings: &AmqpSettings,
    sealer: Option<&Sealer>,
    selection: &Selection,
    before: impl Fn(ParkedMessage) -> futures::future::BoxFuture<'static, Result<(), E>> + Send + Sync,
) -> Result<Vec<ParkedMessage>, E> {
    let publisher = Publisher::connect(settings.clone(), "parked-requeue").await?;
    let (connection, channel) = open(settings).await?;
    let queue = settings.topology.parking_queue();
    let mut moved = Vec::new();
    let result = async {
        while let Some(message) = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .map_err(QueueError::from)?
        {
            let delivery = message.delivery;
            let old = MessageMeta::from_properties(&delivery.properties, Utc::now());
            let digest = plain_digest(&delivery.data, &old);
            if !selection.matches(&digest, old.message_id.as_deref(), &old) {
                continue;
            }
            let shown = describe(&delivery.data, &old);
            let (body, fresh) = moved_back(sealer, &delivery.data, &old)?;
            before(shown.clone()).await?;
            publisher.publish_notification(&body, &fresh).await?;
            delivery
                .ack(BasicAckOptions::default())
                .await
                .map_err(QueueError::from)?;
            moved.push(shown);
        }
        Ok::<_, E>(())
    }
    .await;
    close(connection, channel).await;
    publisher.close().await;
    result.map(|()| moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{CONTENT_TYPE, SEALED_CONTENT_TYPE};

    fn parked(content_type: Option<&str>, message_id: Option<&str>) -> MessageMeta {
        MessageMeta {
            orphan_attempt: 4,
            transient_attempt: 1,
            first_seen: Some(Utc::now()),
            park_reason: Some("order_not_found".into()),
            parked_at: Some(Utc::now()),
            content_type: content_type.map(str::to_owned),
            sealed_by: content_type
                .filter(|t| *t == SEALED_CONTENT_TYPE)
                .map(|_| "k1".to_owned()),
            message_id: message_id.map(str::to_owned),
            ..MessageMeta::received(Utc::now(), Some("203.0.113.9".into()))
        }
    }

    #[test]
    fn a_sealed_message_is_named_by_its_plain_digest_without_opening_it() {
        let plain = "ab".repeat(32);
        let meta = parked(Some(SEALED_CONTENT_TYPE), Some(&plain));
        let shown = describe(b"sealed bytes", &meta);
        assert_eq!(shown.body_sha256, plain);
        assert_eq!(shown.id, plain[..ID_LEN]);
        assert_eq!(shown.attempts, 5);
        assert_eq!(shown.sealed_by.as_deref(), Some("k1"));
        assert_eq!(shown.bytes, 12);
    }

    #[test]
    fn a_plain_message_or_one_without_a_usable_id_is_named_by_its_bytes() {
        let bytes = b"REFNO=1";
        let own = BodyDigest::of(bytes).to_string();
        // A plain body's digest is computed, whatever id came with it.
        let meta = parked(Some(CONTENT_TYPE), Some(&"ab".repeat(32)));
        assert_eq!(describe(bytes, &meta).body_sha256, own);
        // A sealed one whose id is not a digest still gets a stable id.
        let meta = parked(Some(SEALED_CONTENT_TYPE), Some("not-a-digest"));
        assert_eq!(describe(bytes, &meta).body_sha256, own);
    }

    #[test]
    fn the_notice_kind_is_the_one_the_intake_said_and_none_otherwise() {
        use crate::ipn::NoticeKind;
        let meta = parked(Some(CONTENT_TYPE), None);
        assert_eq!(describe(b"LICENSE_CODE=X", &meta).notice, None);
        for kind in NoticeKind::ALL {
            let meta = parked(Some(SEALED_CONTENT_TYPE), None).notice(kind);
            assert_eq!(
                describe(b"sealed bytes", &meta).notice.as_deref(),
                Some(kind.as_str())
            );
        }
    }

    #[test]
    fn a_reason_selects_what_it_parked_since_a_time() {
        let meta = parked(Some(CONTENT_TYPE), None);
        let at = meta.parked_at.expect("parked at");
        let since = |secs: i64| Some(at + chrono::Duration::seconds(secs));
        let reason = |r: &str, since| Selection::Reason {
            reason: r.to_owned(),
            since,
        };
        assert!(reason("order_not_found", None).matches("ab", None, &meta));
        assert!(reason("order_not_found", since(0)).matches("ab", None, &meta));
        assert!(!reason("order_not_found", since(1)).matches("ab", None, &meta));
        assert!(!reason("invalid_signature", None).matches("ab", None, &meta));
        let listed = describe(b"REFNO=1", &meta);
        assert!(reason("order_not_found", since(-1)).matches_listed(&listed));
        assert!(!reason("order_not_found", since(1)).matches_listed(&listed));
        assert!(Selection::Id(listed.id.clone()).matches_listed(&listed));
        assert!(!Selection::Id(String::new()).matches_listed(&listed));
    }

    #[test]
    fn requeueing_resets_counters_and_keeps_the_seal() {
        let old = parked(Some(SEALED_CONTENT_TYPE), Some(&"ab".repeat(32)));
        let fresh = requeued(&old);
        assert_eq!((fresh.orphan_attempt, fresh.transient_attempt), (0, 0));
        assert_eq!(fresh.first_seen, None);
        assert_eq!(fresh.park_reason, None);
        assert_eq!(fresh.parked_at, None);
        assert_eq!(fresh.received_at, old.received_at);
        assert_eq!(fresh.remote_addr, old.remote_addr);
        assert_eq!(fresh.content_type.as_deref(), Some(SEALED_CONTENT_TYPE));
        assert_eq!(fresh.sealed_by.as_deref(), Some("k1"));
        assert_eq!(fresh.message_id, old.message_id);
        let properties = fresh.to_properties("x");
        assert_eq!(
            properties.expiration(),
            &None,
            "no parking TTL once requeued"
        );
    }

    /// A parked message as the worker parks one it opened: sealed under
    /// the current scheme, its counters and window bound to the seal.
    fn sealed_parked(sealer: &Sealer, plain: &[u8]) -> (Vec<u8>, MessageMeta) {
        let sealed = sealer
            .seal(plain, parked(Some(CONTENT_TYPE), None))
            .expect("seal");
        (sealed.body, sealed.meta)
    }

    fn seal_keys() -> Sealer {
        Sealer::parse("k1 73f2410e0bf59d6dfec300a9f3c453f14617d1cba4b2ac6672a1ce5d62cb567f\n")
            .expect("seal keys")
    }

    #[test]
    fn requeueing_a_sealed_message_seals_it_again_with_its_counters_reset() {
        let sealer = seal_keys();
        let (body, old) = sealed_parked(&sealer, b"REFNO=1");
        let (moved, fresh) = moved_back(Some(&sealer), &body, &old).expect("moved");
        assert_ne!(moved, body, "sealed again");
        assert_eq!((fresh.orphan_attempt, fresh.transient_attempt), (0, 0));
        assert_eq!(
            (fresh.first_seen, fresh.park_reason.as_deref()),
            (None, None)
        );
        assert_eq!(fresh.message_id, old.message_id);
        let on_the_wire = MessageMeta::from_properties(&fresh.to_properties("x"), Utc::now());
        assert_eq!(
            sealer.open(&on_the_wire, &moved).expect("opens").as_slice(),
            b"REFNO=1"
        );
        // The reset alone, without the key, would not open: what an
        // operator without the key (or someone on the broker) cannot do.
        assert!(sealer.open(&requeued(&old), &body).is_err());
    }

    #[test]
    fn without_the_key_a_sealed_message_goes_back_with_its_counters_as_they_are() {
        let sealer = seal_keys();
        let (body, old) = sealed_parked(&sealer, b"REFNO=1");
        for other in [None, Some(&Sealer::ephemeral().expect("key"))] {
            let (moved, kept) = moved_back(other, &body, &old).expect("moved");
            assert_eq!(moved, body);
            assert_eq!((kept.orphan_attempt, kept.transient_attempt), (4, 1));
            assert_eq!(kept.first_seen, old.first_seen);
            assert_eq!((kept.park_reason.as_deref(), kept.parked_at), (None, None));
            assert!(sealer.open(&kept, &moved).is_ok(), "still opens");
        }
    }

    #[test]
    fn plain_and_earlier_scheme_messages_go_back_as_they_are_with_counters_reset() {
        let ring = crate::ipn::KeyRing::single("processor-secret");
        let legacy =
            super::super::seal::seal_legacy(&ring, b"REFNO=1", parked(None, None)).expect("seal");
        let plain = parked(Some(CONTENT_TYPE), None);
        for (body, old) in [
            (legacy.body.clone(), legacy.meta.clone()),
            (b"REFNO=1".to_vec(), plain),
        ] {
            let (moved, fresh) = moved_back(None, &body, &old).expect("moved");
            assert_eq!(moved, body);
            assert_eq!(fresh, requeued(&old));
        }
        let opened = seal_keys()
            .with_legacy(&ring)
            .open(&requeued(&legacy.meta), &legacy.body)
            .expect("the earlier scheme bound no counter");
        assert_eq!(opened.as_slice(), b"REFNO=1");
    }
}
