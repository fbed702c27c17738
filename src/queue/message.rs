//! What travels next to the raw body: AMQP properties and headers.
//!
//! Times are RFC 3339 strings (readable in the management UI); the attempt
//! counter is an integer. Readers are lenient (a header missing or of another
//! type falls back to a default) because other publishers can reach the
//! queue, and a message must never be refused for its metadata alone.

use chrono::{DateTime, Utc};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};

use super::CONTENT_TYPE;

/// Header names.
pub mod headers {
    /// When the intake received the notification (RFC 3339).
    pub const RECEIVED_AT: &str = "x-received-at";
    /// The processor's address as the intake saw it.
    pub const REMOTE_ADDR: &str = "x-remote-addr";
    /// Broker-side retries so far (0 on first delivery).
    pub const ATTEMPT: &str = "x-attempt";
    /// When a worker first saw the notification (RFC 3339): the start of
    /// the `order_not_found` window.
    pub const FIRST_SEEN: &str = "x-first-seen";
    /// Why the message was parked (a short machine reason).
    pub const PARK_REASON: &str = "x-park-reason";
    /// When it was parked (RFC 3339).
    pub const PARKED_AT: &str = "x-parked-at";
    /// Set by the broker when it dead-letters (delivery limit exceeded).
    pub const FIRST_DEATH_REASON: &str = "x-first-death-reason";
}

/// The metadata of one notification message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub received_at: DateTime<Utc>,
    pub remote_addr: Option<String>,
    pub attempt: u32,
    pub first_seen: Option<DateTime<Utc>>,
    pub park_reason: Option<String>,
    pub parked_at: Option<DateTime<Utc>>,
}

impl MessageMeta {
    /// A notification just received.
    pub fn received(at: DateTime<Utc>, remote_addr: Option<String>) -> Self {
        Self {
            received_at: at,
            remote_addr,
            attempt: 0,
            first_seen: None,
            park_reason: None,
            parked_at: None,
        }
    }

    /// Reads the headers of a delivery. `fallback_now` is the receipt time
    /// when a publisher did not send one.
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
        let attempt = int_header(table, headers::ATTEMPT)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        let park_reason = string_header(table, headers::PARK_REASON)
            .or_else(|| string_header(table, headers::FIRST_DEATH_REASON));
        Self {
            received_at,
            remote_addr: string_header(table, headers::REMOTE_ADDR),
            attempt,
            first_seen: time_header(table, headers::FIRST_SEEN),
            park_reason,
            parked_at: time_header(table, headers::PARKED_AT),
        }
    }

    /// The properties of a message carrying this metadata: persistent, form
    /// content type, the body digest as message id.
    pub fn to_properties(&self, body_sha256: &str) -> BasicProperties {
        let mut table = FieldTable::default();
        table.insert(headers::RECEIVED_AT.into(), time_value(self.received_at));
        if let Some(addr) = &self.remote_addr {
            table.insert(
                headers::REMOTE_ADDR.into(),
                AMQPValue::LongString(LongString::from(addr.as_str())),
            );
        }
        table.insert(
            headers::ATTEMPT.into(),
            AMQPValue::LongLongInt(i64::from(self.attempt)),
        );
        if let Some(first_seen) = self.first_seen {
            table.insert(headers::FIRST_SEEN.into(), time_value(first_seen));
        }
        if let Some(reason) = &self.park_reason {
            table.insert(
                headers::PARK_REASON.into(),
                AMQPValue::LongString(LongString::from(reason.as_str())),
            );
        }
        if let Some(parked_at) = self.parked_at {
            table.insert(headers::PARKED_AT.into(), time_value(parked_at));
        }
        let timestamp = u64::try_from(self.received_at.timestamp()).unwrap_or(0);
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(CONTENT_TYPE.into())
            .with_message_id(body_sha256.into())
            .with_timestamp(timestamp)
            .with_headers(table)
    }
}

fn time_value(at: DateTime<Utc>) -> AMQPValue {
    AMQPValue::LongString(LongString::from(
        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    ))
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

    #[test]
    fn metadata_round_trips_through_properties() {
        let at = DateTime::parse_from_rfc3339("2026-11-02T09:20:44.123Z")
            .unwrap()
            .with_timezone(&Utc);
        let meta = MessageMeta {
            received_at: at,
            remote_addr: Some("203.0.113.9".into()),
            attempt: 3,
            first_seen: Some(at),
            park_reason: Some("invalid_signature".into()),
            parked_at: Some(at),
        };
        let properties = meta.to_properties(&"ab".repeat(32));
        assert_eq!(properties.delivery_mode(), &Some(2));
        assert_eq!(MessageMeta::from_properties(&properties, Utc::now()), meta);
    }

    #[test]
    fn missing_headers_fall_back() {
        let now = Utc::now();
        let meta = MessageMeta::from_properties(&BasicProperties::default(), now);
        assert_eq!(meta, MessageMeta::received(now, None));
    }
}
