//! The broker topology, declared idempotently at start-up from one base name.
//!
//! ```text
//! publish --> exchange <base> (direct) --key <base>--> quorum queue <base>
//!                ^                                       | x-delivery-limit exceeded
//!                | dead-letter after TTL                 v
//!        <base>.retry.<delay> (TTL queues)        <base>.parked (classic)
//! ```
//!
//! Retries are plain messages published (with confirms) to a TTL queue that
//! no one consumes; when the TTL expires the broker dead-letters them back to
//! the work exchange. This needs no plugin and survives broker restarts,
//! because every queue is durable and every message persistent.

use std::time::Duration;

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

use super::QueueError;

/// The delays between broker-side retries, in order: attempt `n` (0-based)
/// waits `delays[n]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryDelays(Vec<Duration>);

impl RetryDelays {
    /// A schedule of `delays` as given (checked by [`RetryDelays::parse`]
    /// when it comes from an operator).
    pub fn new(delays: Vec<Duration>) -> Self {
        Self(delays)
    }

    /// Parses `5s,30s,2m,10m,1h` (each delay in humantime's forms: `500ms`,
    /// `30s`, `2m`, `1h 30m`). The list must hold 1-20 delays between 1 ms
    /// and 24 h (a message TTL is 32 bits of milliseconds, and longer waits
    /// belong to a person, not a queue).
    pub fn parse(input: &str) -> Result<Self, QueueError> {
        let invalid = |reason: String| QueueError::InvalidDelays {
            input: input.to_owned(),
            reason,
        };
        let mut delays = Vec::new();
        for part in input.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(invalid("empty delay".into()));
            }
            let delay = humantime::parse_duration(part).map_err(|_| {
                invalid(format!(
                    "`{part}` is not a duration such as 500ms, 30s, 2m or 1h"
                ))
            })?;
            if delay < Duration::from_millis(1) || delay > Duration::from_secs(24 * 3600) {
                return Err(invalid(format!("`{part}` is not between 1ms and 24h")));
            }
            delays.push(delay);
        }
        if delays.len() > 20 {
            return Err(invalid("more than 20 delays".into()));
        }
        Ok(Self(delays))
    }

    pub fn delays(&self) -> &[Duration] {
        &self.0
    }

    /// The delay before retry number `attempt` (0-based), if the schedule
    /// has one.
    pub fn get(&self, attempt: usize) -> Option<Duration> {
        self.0.get(attempt).copied()
    }
}

impl std::str::FromStr for RetryDelays {
    type Err = QueueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl std::fmt::Display for RetryDelays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let labels: Vec<String> = self.0.iter().map(|d| delay_label(*d)).collect();
        f.write_str(&labels.join(","))
    }
}

impl serde::Serialize for RetryDelays {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `"5s,30s,2m"` (as in the environment) or `["5s", "30s", "2m"]` (in the
/// configuration file).
impl<'de> serde::Deserialize<'de> for RetryDelays {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = crate::text_list::comma_list(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A short label for a delay (`200ms`, `5s`, `2m`, `1h`): queue names and
/// metric labels.
pub fn delay_label(delay: Duration) -> String {
    let ms = delay.as_millis();
    if ms % 1000 != 0 {
        format!("{ms}ms")
    } else if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// What a queue of the topology is for. Its [`QueueRole::label`] names it
/// in the queue gauges: the same in every deployment whatever the base
/// name, so one dashboard and one set of rules serve them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueRole {
    /// The queue workers consume.
    Work,
    /// The TTL queue of one retry delay.
    Retry(Duration),
    /// Where messages wait for a person.
    Parking,
}

impl QueueRole {
    /// `work`, `retry_<delay>` (`retry_5s`, `retry_200ms`) or `parking`.
    pub fn label(self) -> String {
        match self {
            QueueRole::Work => "work".to_owned(),
            QueueRole::Retry(delay) => format!("retry_{}", delay_label(delay)),
            QueueRole::Parking => "parking".to_owned(),
        }
    }
}

/// The names of everything on the broker, derived from one base name, and
/// the settings that shape it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    base: String,
    retry_delays: RetryDelays,
    /// Deliveries of one message before the broker parks it (poison backstop).
    delivery_limit: u32,
}

impl Topology {
    /// The topology named after `base`; the broker parks a message by
    /// itself after `delivery_limit` deliveries (at least 1).
    pub fn new(
        base: &str,
        retry_delays: RetryDelays,
        delivery_limit: u32,
    ) -> Result<Self, QueueError> {
        let valid = !base.is_empty()
            && base.len() <= 200
            && !base.chars().any(|c| c.is_whitespace() || c.is_control());
        if !valid {
            return Err(QueueError::InvalidName(base.to_owned()));
        }
        Ok(Self {
            base: base.to_owned(),
            retry_delays,
            delivery_limit: delivery_limit.max(1),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn retry_delays(&self) -> &RetryDelays {
        &self.retry_delays
    }

    /// The direct exchange publishers send notifications to.
    pub fn exchange(&self) -> &str {
        &self.base
    }

    /// The routing key binding the work queue to the exchange.
    pub fn routing_key(&self) -> &str {
        &self.base
    }

    /// The quorum queue workers consume.
    pub fn work_queue(&self) -> &str {
        &self.base
    }

    /// Where messages wait for a person.
    pub fn parking_queue(&self) -> String {
        format!("{}.parked", self.base)
    }

    /// The TTL queue holding messages for `delay` before they return.
    pub fn retry_queue(&self, delay: Duration) -> String {
        format!("{}.retry.{}", self.base, delay_label(delay))
    }

    /// Every queue with its role: the work queue, the retry queues in the
    /// order of their delays, the parking queue.
    pub fn queues(&self) -> Vec<(QueueRole, String)> {
        let mut queues = vec![(QueueRole::Work, self.work_queue().to_owned())];
        queues.extend(
            self.retry_delays
                .delays()
                .iter()
                .map(|&delay| (QueueRole::Retry(delay), self.retry_queue(delay))),
        );
        queues.push((QueueRole::Parking, self.parking_queue()));
        queues
    }

    /// Declares everything; declaring what exists with the same arguments is
    /// a no-op, so every worker and publisher may call it at start-up.
    pub async fn declare(&self, channel: &Channel) -> Result<(), QueueError> {
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .exchange_declare(
                self.exchange().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(self.parking_queue().into(), durable, FieldTable::default())
            .await?;
        let mut work_args = FieldTable::default();
        work_args.insert("x-queue-type".into(), long_string("quorum"));
        work_args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
        );
        work_args.insert("x-dead-letter-exchange".into(), long_string(""));
        work_args.insert(
            "x-dead-letter-routing-key".into(),
            long_string(&self.parking_queue()),
        );
        channel
            .queue_declare(self.work_queue().into(), durable, work_args)
            .await?;
        channel
            .queue_bind(
                self.work_queue().into(),
                self.exchange().into(),
                self.routing_key().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        for &delay in self.retry_delays.delays() {
            let mut args = FieldTable::default();
            let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
            args.insert(
                "x-dead-letter-exchange".into(),
                long_string(self.exchange()),
            );
            args.insert(
                "x-dead-letter-routing-key".into(),
                long_string(self.routing_key()),
            );
            channel
                .queue_declare(self.retry_queue(delay).into(), durable, args)
                .await?;
        }
        Ok(())
    }

    /// Deletes everything [`Topology::declare`] made (tests, decommissioning).
    pub async fn delete(&self, channel: &Channel) -> Result<(), QueueError> {
        let mut queues = vec![self.work_queue().to_owned(), self.parking_queue()];
        queues.extend(
            self.retry_delays
                .delays()
                .iter()
                .map(|delay| self.retry_queue(*delay)),
        );
        for queue in queues {
            channel
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await?;
        }
        channel
            .exchange_delete(self.exchange().into(), ExchangeDeleteOptions::default())
            .await?;
        Ok(())
    }
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_default_schedule_and_labels_it_back() {
        let delays = RetryDelays::parse("5s,30s,2m,10m,1h").unwrap();
        assert_eq!(delays.get(2), Some(Duration::from_secs(120)));
        assert_eq!(delays.to_string(), "5s,30s,2m,10m,1h");
        assert_eq!(RetryDelays::parse("1h 30m").unwrap().to_string(), "90m");
        assert_eq!(
            RetryDelays::parse("200ms, 500ms").unwrap().to_string(),
            "200ms,500ms"
        );
    }

    #[test]
    fn refuses_bad_delays() {
        for bad in ["", "5", "5x", "0s", "25h", "5s,,1m", "-1s"] {
            assert!(RetryDelays::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_derive_from_the_base() {
        let delays = RetryDelays::parse("5s,2m").unwrap();
        let topology = Topology::new("ipn.notifications", delays.clone(), 20).unwrap();
        assert_eq!(topology.parking_queue(), "ipn.notifications.parked");
        assert_eq!(
            topology.retry_queue(Duration::from_secs(120)),
            "ipn.notifications.retry.2m"
        );
        assert!(Topology::new("has space", delays, 20).is_err());
    }

    #[test]
    fn every_queue_has_a_role_whose_label_holds_no_base_name() {
        let delays = RetryDelays::parse("200ms,5s,2m").unwrap();
        let topology = Topology::new("ipn.notifications", delays, 20).unwrap();
        let queues: Vec<(String, String)> = topology
            .queues()
            .into_iter()
            .map(|(role, name)| (role.label(), name))
            .collect();
        let expected = [
            ("work", "ipn.notifications"),
            ("retry_200ms", "ipn.notifications.retry.200ms"),
            ("retry_5s", "ipn.notifications.retry.5s"),
            ("retry_2m", "ipn.notifications.retry.2m"),
            ("parking", "ipn.notifications.parked"),
        ];
        assert_eq!(
            queues,
            expected.map(|(role, name)| (role.to_owned(), name.to_owned()))
        );
    }
}
