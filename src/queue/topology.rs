//! The broker topology, declared idempotently at start-up from one base name.
//!
//! ```text
//! publish --> exchange <base> (direct) --key <base>--> quorum queue <base>
//!                ^                                       | x-delivery-limit exceeded
//!                | dead-letter after TTL                 v
//!        <base>.retry.<delay> (TTL queues)        <base>.parked (classic, TTL)
//! ```
//!
//! Retries are plain messages published (with confirms) to a TTL queue that
//! no one consumes; when the TTL expires the broker dead-letters them back to
//! the work exchange. This needs no plugin and survives broker restarts,
//! because every queue is durable and every message persistent.
//!
//! The parking queue is declared with `x-message-ttl` = `parking-ttl`, so
//! that what the broker dead-letters into it by itself (a message past
//! `delivery-limit`) expires like the copies the worker parks (which also
//! carry a per-message `expiration`). A parking queue declared by an
//! earlier version without that argument cannot be changed by a
//! declaration: [`Topology::declare`] says so ([`ParkingTtl::Missing`])
//! and goes on (docs/operations.md, "The parking queue's TTL").

use std::time::Duration;

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ExchangeKind};

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

/// How long a parked message is kept unless `parking-ttl` says otherwise:
/// two weeks, time for a person to look (review items are opened at once)
/// and for the processor's own resend window, without keeping bodies
/// indefinitely.
pub const DEFAULT_PARKING_TTL: Duration = Duration::from_secs(14 * 24 * 3600);

/// Whether the parking queue carries the TTL [`Topology::declare`] asked
/// for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkingTtl {
    /// Declared (or found) with `x-message-ttl` = the topology's parking TTL.
    Declared,
    /// The queue exists with other arguments (declared before the TTL was,
    /// or with another `parking-ttl`): messages the broker dead-letters
    /// into it expire only by a policy, if an operator set one.
    Missing,
}

/// The names of everything on the broker, derived from one base name, and
/// the settings that shape it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    base: String,
    retry_delays: RetryDelays,
    /// Deliveries of one message before the broker parks it (poison backstop).
    delivery_limit: u32,
    /// The parking queue's `x-message-ttl`.
    parking_ttl: Duration,
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
            parking_ttl: DEFAULT_PARKING_TTL,
        })
    }

    /// This topology with another parking TTL (`parking-ttl`; at most 2^32 - 1
    /// ms, clamped there).
    #[must_use]
    pub fn with_parking_ttl(self, parking_ttl: Duration) -> Self {
        Self {
            parking_ttl,
            ..self
        }
    }

    /// The parking queue's message TTL.
    pub fn parking_ttl(&self) -> Duration {
        self.parking_ttl
    }

    /// The arguments the parking queue is declared with.
    fn parking_args(&self) -> FieldTable {
        let mut args = FieldTable::default();
        let ttl = self.parking_ttl.as_millis().min(u128::from(u32::MAX));
        args.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(i64::try_from(ttl).unwrap_or(i64::from(u32::MAX))),
        );
        args
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

    /// Declares everything, on a channel of its own (closed on return);
    /// declaring what exists with the same arguments is a no-op, so every
    /// worker and publisher may call it at start-up.
    ///
    /// A parking queue that exists with other arguments (see
    /// [`ParkingTtl::Missing`]) makes the broker close the channel
    /// (`PRECONDITION_FAILED`); it is then checked passively on another
    /// channel, the rest is declared, a warning says what to do (once per
    /// queue and process), and the answer is `Missing`.
    pub async fn declare(&self, connection: &Connection) -> Result<ParkingTtl, QueueError> {
        let first = connection.create_channel().await?;
        let (ttl, channel) = match self.declare_parking(connection, &first).await {
            Ok(declared) => declared,
            Err(err) => {
                let _ = first.close(200, "declare failed".into()).await;
                return Err(err);
            }
        };
        let rest = self.declare_rest(&channel).await;
        let _ = channel.close(200, "declared".into()).await;
        rest?;
        if ttl == ParkingTtl::Missing {
            warn_missing_ttl(&self.parking_queue(), self.parking_ttl);
        }
        Ok(ttl)
    }

    /// Declares the exchange and the parking queue, with its TTL when it
    /// can; returns a channel that is still open.
    async fn declare_parking(
        &self,
        connection: &Connection,
        channel: &Channel,
    ) -> Result<(ParkingTtl, Channel), QueueError> {
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
        let declared = channel
            .queue_declare(self.parking_queue().into(), durable(), self.parking_args())
            .await;
        match declared {
            Ok(_) => Ok((ParkingTtl::Declared, channel.clone())),
            Err(refused) => {
                // The channel is closed by the refusal. A queue that is
                // there (with other arguments) answers a passive declare.
                let other = connection.create_channel().await?;
                let passive = QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                };
                match other
                    .queue_declare(self.parking_queue().into(), passive, FieldTable::default())
                    .await
                {
                    Ok(_) => Ok((ParkingTtl::Missing, other)),
                    Err(_) => Err(refused.into()),
                }
            }
        }
    }

    /// Declares the work queue, its binding and the retry queues.
    async fn declare_rest(&self, channel: &Channel) -> Result<(), QueueError> {
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
            .queue_declare(self.work_queue().into(), durable(), work_args)
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
                .queue_declare(self.retry_queue(delay).into(), durable(), args)
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

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Says once per parking queue and process that its TTL is missing, and
/// what to do (docs/operations.md, "The parking queue's TTL").
fn warn_missing_ttl(queue: &str, ttl: Duration) {
    static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if warned.iter().any(|q| q == queue) {
        return;
    }
    warned.push(queue.to_owned());
    tracing::warn!(
        queue,
        parking_ttl = %humantime::format_duration(ttl),
        "the parking queue exists without x-message-ttl = parking-ttl (declared by an earlier \
         version, or with another parking-ttl): messages the broker dead-letters into it by \
         itself do not expire. Parked copies still expire (per message). To fix it, set a \
         policy with message-ttl on the queue, or delete the queue once `parked list` shows it \
         empty and restart (docs/operations.md, \"The parking queue's TTL\")"
    );
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
