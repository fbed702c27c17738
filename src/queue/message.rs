//! What travels next to the raw body: AMQP properties and headers.
//!
//! Times are RFC 3339 strings (readable in the management UI); the retry
//! counters are integers. Readers are lenient (a header missing or of
//! another type falls back to a default) because other publishers can reach
//! the queue, and a message must never be refused for its metadata alone.
//! The content type is the one exception that matters: it says whether the
//! body is sealed, and an unknown one is refused by the worker (see
//! [`super::seal`]).

use chrono::{DateTime, Utc};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};

use super::CONTENT_TYPE;
use crate::ipn::NoticeKind;

/// Header names.
pub mod headers {
    /// When the intake received the notification (RFC 3339).
    pub const RECEIVED_AT: &str = "x-received-at";
    /// The processor's address as the intake saw it.
    pub const REMOTE_ADDR: &str = "x-remote-addr";
    /// Retries because the order was not known yet (0 on first delivery).
    pub const ORPHAN_ATTEMPT: &str = "x-orphan-attempt";
    /// Retries in a row because the database failed (0 on first delivery).
    pub const TRANSIENT_ATTEMPT: &str = "x-transient-attempt";
    /// The single retry counter of messages queued before the two above
    /// existed; read as the transient counter when that one is missing, and
    /// still written (as the sum) for workers that know only this one.
    pub const ATTEMPT: &str = "x-attempt";
    /// When a worker first saw the notification (RFC 3339): the start of
    /// the `order_not_found` window.
    pub const FIRST_SEEN: &str = "x-first-seen";
    /// Why the message was parked (a short machine reason).
    pub const PARK_REASON: &str = "x-park-reason";
    /// When it was parked (RFC 3339).
    pub const PARKED_AT: &str = "x-parked-at";
    /// The id of the seal key that sealed the body.
    pub const SEALED_BY: &str = "x-sealed-by";
    /// The sealing scheme of a sealed body: `2` (keys of `seal-key-file`,
    /// the headers the worker acts on bound to the seal). Absent on bodies
    /// sealed before it existed (keys derived from the processor's key
    /// ring), which are still opened during the migration (see
    /// [`crate::queue::seal`]).
    pub const SEAL: &str = "x-seal";
    /// Set by the broker when it dead-letters (delivery limit exceeded).
    pub const FIRST_DEATH_REASON: &str = "x-first-death-reason";
    /// Which kind of notice the body is, `ipn` or `lcn`, as its publisher
    /// saw it (the intake: the path it came to and its `LICENSE_CODE`).
    /// Only informative: the worker decides from the body itself.
    pub const NOTICE_KIND: &str = "x-notice-kind";
}

/// The metadata of one notification message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub received_at: DateTime<Utc>,
    pub remote_addr: Option<String>,
    /// Retries because the order was unknown: the orphan window's schedule.
    pub orphan_attempt: u32,
    /// Retries in a row because the database failed: the transient
    /// schedule, whose exhaustion parks the message.
    pub transient_attempt: u32,
    pub first_seen: Option<DateTime<Utc>>,
    pub park_reason: Option<String>,
    pub parked_at: Option<DateTime<Utc>>,
    /// The body's content type as published: [`CONTENT_TYPE`] (plain),
    /// [`SEALED_CONTENT_TYPE`](super::SEALED_CONTENT_TYPE), or none (another publisher; read as plain).
    /// Kept as received, so copies and requeues carry it unchanged.
    pub content_type: Option<String>,
    /// The key id of a sealed body (`x-sealed-by`).
    pub sealed_by: Option<String>,
    /// The sealing scheme of a sealed body (`x-seal`); `None` for the
    /// scheme before it existed.
    pub seal: Option<String>,
    /// The `message_id` property: the SHA-256 (hex) of the *plain* body as
    /// this crate's publishers set it (and, on the copies of a message the
    /// worker could not open, of its bytes as received: the digest it was
    /// recorded under). Only informative: it lets `parked` name a sealed
    /// message without opening it; the worker digests what it opened.
    pub message_id: Option<String>,
    /// `x-notice-kind`: a payment notification or a licence change
    /// notification, when the publisher said (a sealed body cannot be
    /// looked at on the way); `None` from publishers that do not say.
    pub notice: Option<NoticeKind>,
}

impl MessageMeta {
    /// A notification just received, its body in clear.
    pub fn received(at: DateTime<Utc>, remote_addr: Option<String>) -> Self {
        Self {
            received_at: at,
            remote_addr,
            orphan_attempt: 0,
            transient_attempt: 0,
            first_seen: None,
            park_reason: None,
            parked_at: None,
            content_type: Some(CONTENT_TYPE.to_owned()),
            sealed_by: None,
            seal: None,
            message_id: None,
            notice: None,
        }
    }

    /// This metadata saying which kind of notice the body is.
    #[must_use]
    pub fn notice(self, kind: NoticeKind) -> Self {
        Self {
            notice: Some(kind),
            ..self
        }
    }

    /// Broker-side retries so far, of both kinds (logs, `parked list`).
    pub fn attempts(&self) -> u32 {
        self.orphan_attempt.saturating_add(self.transient_attempt)
    }

    /// Reads the properties and headers of a delivery. `fallback_now` is
    /// the receipt time when a publisher did not send one.
    pub fn from_properties(properties: &BasicProperties, fallback_now: DateTime<Utc>) -> Self {
        let empty = FieldTable::default();
        let table = properties.headers().as_ref().unwrap_or(&empty);
        let received_at = time_header(table, headers::RECEIVED_AT)
            .or_else(|| {
                properties
                    .timestamp()
                    .and_then(|secs| i64::try_from(secs).ok())
                    .and_then(|secs| DateTime::from_timestamp(secs, 0))
            })
            .unwrap_or(fallback_now);
        let counter = |name| int_header(table, name).and_then(|n| u32::try_from(n).ok());
        let transient_attempt = counter(headers::TRANSIENT_ATTEMPT)
            .or_else(|| counter(headers::ATTEMPT))
            .unwrap_or(0);
        let park_reason = string_header(table, headers::PARK_REASON)
            .or_else(|| string_header(table, headers::FIRST_DEATH_REASON));
        Self {
            received_at,
            remote_addr: string_header(table, headers::REMOTE_ADDR),
            orphan_attempt: counter(headers::ORPHAN_ATTEMPT).unwrap_or(0),
            transient_attempt,
            first_seen: time_header(table, headers::FIRST_SEEN),
            park_reason,
            parked_at: time_header(table, headers::PARKED_AT),
            content_type: properties
                .content_type()
                .as_ref()
                .map(|t| t.as_str().to_owned()),
            sealed_by: string_header(table, headers::SEALED_BY),
            seal: string_header(table, headers::SEAL),
            message_id: properties
                .message_id()
                .as_ref()
                .map(|id| id.as_str().to_owned()),
            notice: string_header(table, headers::NOTICE_KIND)
                .and_then(|kind| NoticeKind::parse(&kind)),
        }
    }

    /// The properties of a message carrying this metadata: persistent, the
    /// content type (and `x-sealed-by`) as they are, `body_sha256` (the
    /// plain body's digest) as message id.
    pub fn to_properties(&self, body_sha256: &str) -> BasicProperties {
        let mut table = FieldTable::default();
        table.insert(headers::RECEIVED_AT.into(), time_value(self.received_at));
        if let Some(addr) = &self.remote_addr {
            table.insert(headers::REMOTE_ADDR.into(), long_string(addr));
        }
        table.insert(
            headers::ORPHAN_ATTEMPT.into(),
            AMQPValue::LongLongInt(i64::from(self.orphan_attempt)),
        );
        table.insert(
            headers::TRANSIENT_ATTEMPT.into(),
            AMQPValue::LongLongInt(i64::from(self.transient_attempt)),
        );
        table.insert(
            headers::ATTEMPT.into(),
            AMQPValue::LongLongInt(i64::from(self.attempts())),
        );
        if let Some(first_seen) = self.first_seen {
            table.insert(headers::FIRST_SEEN.into(), time_value(first_seen));
        }
        if let Some(reason) = &self.park_reason {
            table.insert(headers::PARK_REASON.into(), long_string(reason));
        }
        if let Some(parked_at) = self.parked_at {
            table.insert(headers::PARKED_AT.into(), time_value(parked_at));
        }
        if let Some(key_id) = &self.sealed_by {
            table.insert(headers::SEALED_BY.into(), long_string(key_id));
        }
        if let Some(seal) = &self.seal {
            table.insert(headers::SEAL.into(), long_string(seal));
        }
        if let Some(kind) = self.notice {
            table.insert(headers::NOTICE_KIND.into(), long_string(kind.as_str()));
        }
        let timestamp = u64::try_from(self.received_at.timestamp()).unwrap_or(0);
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(body_sha256.into())
            .with_timestamp(timestamp)
            .with_headers(table);
        match &self.content_type {
            Some(content_type) => properties.with_content_type(content_type.as_str().into()),
            None => properties,
        }
    }
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn time_value(at: DateTime<Utc>) -> AMQPValue {
    AMQPValue::LongString(LongString::from(header_time(at)))
}

/// A time as its header carries it: RFC 3339 UTC in milliseconds. Reading
/// that text back and writing it again gives the same text, which is what
/// lets the seal bind a time ([`super::seal`]) however often it travels.
pub(crate) fn header_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn string_header(table: &FieldTable, name: &str) -> Option<String> {
    match table.inner().get(name)? {
        AMQPValue::LongString(value) => {
            Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
        }
        AMQPValue::ShortString(value) => Some(value.as_str().to_owned()),
        _ => None,
    }
}

fn time_header(table: &FieldTable, name: &str) -> Option<DateTime<Utc>> {
    match table.inner().get(name)? {
        AMQPValue::Timestamp(secs) => DateTime::from_timestamp(i64::try_from(*secs).ok()?, 0),
        _ => DateTime::parse_from_rfc3339(&string_header(table, name)?)
            .ok()
            .map(|at| at.with_timezone(&Utc)),
    }
}

fn int_header(table: &FieldTable, name: &str) -> Option<i64> {
    match table.inner().get(name)? {
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongString(_) | AMQPValue::ShortString(_) => {
            string_header(table, name)?.trim().parse().ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::SEALED_CONTENT_TYPE;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-02T09:20:44.123Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn metadata_round_trips_through_properties() {
        let meta = MessageMeta {
            received_at: at(),
            remote_addr: Some("203.0.113.9".into()),
            orphan_attempt: 3,
            transient_attempt: 2,
            first_seen: Some(at()),
            park_reason: Some("invalid_signature".into()),
            parked_at: Some(at()),
            content_type: Some(SEALED_CONTENT_TYPE.into()),
            sealed_by: Some("k2026".into()),
            seal: Some("2".into()),
            message_id: Some("ab".repeat(32)),
            notice: Some(NoticeKind::Lcn),
        };
        let properties = meta.to_properties(&"ab".repeat(32));
        assert_eq!(properties.delivery_mode(), &Some(2));
        assert_eq!(
            properties.content_type().as_ref().map(|t| t.as_str()),
            Some(SEALED_CONTENT_TYPE)
        );
        assert_eq!(MessageMeta::from_properties(&properties, Utc::now()), meta);
    }

    #[test]
    fn missing_headers_fall_back() {
        let now = Utc::now();
        let meta = MessageMeta::from_properties(&BasicProperties::default(), now);
        assert_eq!(
            meta,
            MessageMeta {
                content_type: None,
                ..MessageMeta::received(now, None)
            }
        );
        assert_eq!(
            MessageMeta::received(now, None).content_type.as_deref(),
            Some(CONTENT_TYPE),
            "this crate's plain publishers say so"
        );
    }

    #[test]
    fn a_header_time_reads_back_as_the_same_text() {
        let precise = at() + chrono::Duration::nanoseconds(456_789);
        let written = header_time(precise);
        assert_eq!(written, "2026-11-02T09:20:44.123Z");
        let meta = MessageMeta::received(precise, None);
        let read = MessageMeta::from_properties(&meta.to_properties("x"), Utc::now());
        assert_eq!(header_time(read.received_at), written);
    }

    #[test]
    fn the_notice_kind_travels_as_a_header_and_an_unknown_one_is_none() {
        for kind in NoticeKind::ALL {
            let meta = MessageMeta::received(at(), None).notice(kind);
            let properties = meta.to_properties("x");
            let table = properties.headers().clone().unwrap_or_default();
            assert_eq!(
                table.inner().get(headers::NOTICE_KIND),
                Some(&long_string(kind.as_str()))
            );
            assert_eq!(
                MessageMeta::from_properties(&properties, at()).notice,
                Some(kind)
            );
        }
        let mut table = FieldTable::default();
        table.insert(headers::NOTICE_KIND.into(), long_string("ins"));
        let other = BasicProperties::default().with_headers(table);
        assert_eq!(MessageMeta::from_properties(&other, at()).notice, None);
        let unsaid = MessageMeta::received(at(), None).to_properties("x");
        let table = unsaid.headers().clone().unwrap_or_default();
        assert_eq!(table.inner().get(headers::NOTICE_KIND), None);
    }

    #[test]
    fn the_old_single_counter_is_read_as_the_transient_one_and_still_written() {
        let mut table = FieldTable::default();
        table.insert(headers::ATTEMPT.into(), AMQPValue::LongLongInt(4));
        let old = BasicProperties::default().with_headers(table);
        let meta = MessageMeta::from_properties(&old, at());
        assert_eq!((meta.orphan_attempt, meta.transient_attempt), (0, 4));

        let meta = MessageMeta {
            orphan_attempt: 2,
            transient_attempt: 1,
            ..MessageMeta::received(at(), None)
        };
        let properties = meta.to_properties("x");
        let table = properties.headers().clone().unwrap_or_default();
        assert_eq!(
            table.inner().get(headers::ATTEMPT),
            Some(&AMQPValue::LongLongInt(3))
        );
        let read = MessageMeta::from_properties(&properties, at());
        assert_eq!((read.orphan_attempt, read.transient_attempt), (2, 1));
    }
}
