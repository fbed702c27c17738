//! Prometheus metrics of the worker, served as text on `/metrics`.
//!
//! Labels are closed sets (outcomes, algorithms, delays, reasons), never
//! references or values, so the number of series stays bounded whatever the
//! processor sends.
//!
//! Every counter is exported at zero from the start with every label set
//! it can take (the sets come from the enums that name them: [`Outcome`],
//! [`ParkKind`], [`IntakeResult`], [`VerifyError::every_kind`], the
//! topology's retry delays): a series that appears only at its first event
//! hides that event from `increase()` and `rate()`. Which series exist
//! depends on the daemon's [`Role`]: the standalone intake exports neither
//! the worker's counters nor anything read from the database.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::domain::Outcome;
use crate::intake::IntakeResult;
use crate::ipn::{Algorithm, VerifyError};
use crate::queue::topology::delay_label;
use crate::queue::{Publisher, QueueRole, RetryDelays, Topology};
use crate::worker::ParkKind;

/// Which daemon the metrics describe: it decides which series exist.
#[derive(Debug, Clone)]
pub enum Role {
    /// `serve` (and `demo`, `bench`): the worker with its database, and the
    /// intake unless `no-intake`. `retry_delays` are the topology's: each
    /// has its `ipn_retries_total{delay}` series from the start.
    Serve { retry_delays: RetryDelays },
    /// `intake`: the intake alone, with no database and no worker. No
    /// `ipn_database_up` (nothing to be up), no gauge read from the
    /// database, no worker counter series.
    Intake,
}

/// Where a signature was checked (the `stage` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum SignatureStage {
    /// At the edge, before queueing.
    Intake,
    /// By the worker, before applying.
    Worker,
}

impl SignatureStage {
    pub const ALL: &[SignatureStage] = <SignatureStage as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The `result` of a signature check that passed.
pub const SIGNATURE_VALID: &str = "valid";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignatureLabels {
    /// Where the check ran: `intake` (at the edge) or `worker`.
    pub stage: String,
    /// `sha3_256`, `sha256`, `md5`, or `none` for an unsigned body.
    pub algorithm: String,
    /// `valid` or the refusal reason (`mismatch`, `unsigned`, ...).
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

/// Whether a licence change notification was a test one (`TEST=1`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TestLabels {
    /// `true` or `false`.
    pub test: String,
}

/// A review action (`domain::review::ReviewAction`), or `closed_by_system`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DelayLabels {
    pub delay: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `queued`, `malformed`, `invalid_signature`, `broker_unavailable`, ...
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// A queue of the topology by its role ([`QueueRole::label`]): `work`,
/// `retry_<delay>`, `parking`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: String,
}

/// Money at risk of one kind in one currency. The value is in minor units
/// (an integer: cents for EUR, yen for JPY); `exponent` is the currency's
/// number of decimals, so the amount is `value / 10^exponent`. The
/// currencies are those of the books (ISO 4217 and `allow-currency`), a
/// set that grows only with the merchant's orders.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MoneyLabels {
    /// `paid_unsettled`, `mismatched` or `orphaned`.
    pub kind: String,
    pub currency: String,
    pub exponent: String,
}

/// Every metric the worker updates. Cheap to clone (all handles are shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub notifications: Family<OutcomeLabels, Counter>,
    pub signatures: Family<SignatureLabels, Counter>,
    pub retries: Family<DelayLabels, Counter>,
    pub parked: Family<ReasonLabels, Counter>,
    pub pan_detections: Counter,
    /// Verified licence change notifications, by test flag.
    pub licence_notices: Family<TestLabels, Counter>,
    pub processing_seconds: Histogram,
    pub in_flight: Gauge,
    pub broker_connected: Gauge,
    /// Registered for [`Role::Serve`] only; on the standalone intake it is
    /// not exported (Health still keeps its database state in it).
    pub database_up: Gauge,
    pub ipn_date_skew_seconds: Histogram,
    /// From the intake's receipt to the commit that applied or recorded
    /// the notification.
    pub commit_latency_seconds: Histogram,
    /// Intake requests, by result.
    pub intake_requests: Family<ResultLabels, Counter>,
    /// Messages waiting in the parking queue (refreshed periodically); the
    /// same as `queue_messages{queue="parking"}`, kept for the rules and
    /// dashboards that use it.
    pub parking_queue_messages: Gauge,
    /// Ready messages per queue of the topology (refreshed periodically;
    /// absent while the broker cannot be asked).
    pub queue_messages: Family<QueueLabels, Gauge>,
    /// Consumers of the work queue (refreshed with `queue_messages`).
    pub queue_consumers: Family<QueueLabels, Gauge>,
    /// Open review items by kind (refreshed periodically).
    pub review_items_open: Family<KindLabels, Gauge>,
    /// Age of the oldest open review item, in seconds (0 when none).
    pub review_oldest_open_age_seconds: Gauge,
    /// Age of the oldest open review item of each kind, in seconds
    /// (refreshed periodically, with the counts).
    pub review_oldest_open_age_by_kind_seconds: Family<KindLabels, Gauge>,
    /// Review items resolved so far, by action (from the resolution
    /// ledger, refreshed periodically: people resolve from the CLI or the
    /// console, not in this process).
    pub review_resolutions: Family<ActionLabels, Gauge>,
    /// Money at risk per kind and currency, in minor units (refreshed
    /// periodically; see [`MoneyLabels`]).
    pub money_at_risk_minor_units: Family<MoneyLabels, Gauge>,
    /// From an order's creation to the commit that made it reconciled
    /// (paid, refunded, canceled, charged back), once per order.
    pub order_to_reconciled_seconds: Histogram,
    /// When the last audit (`audit verify`, every `audit-interval`) found
    /// the books as they were written, Unix seconds (0: not yet).
    pub audit_last_ok_timestamp_seconds: Gauge,
    /// Audits that found a row that differs from what was written.
    pub audit_failures: Counter,
    /// `audit-interval` in seconds (0: off), so that a rule can tell an
    /// audit that is late from one that is off.
    pub audit_interval_seconds: Gauge,
    /// Messages handled so far, whatever became of them (tests, logs).
    handled: Arc<AtomicU64>,
    /// Every commit latency, when kept (`bench`): the histogram's buckets
    /// double, too coarse to say whether a p99 is under 50 ms. `None` (the
    /// daemon) keeps nothing.
    commit_samples: Arc<std::sync::Mutex<Option<Vec<CommitLatency>>>>,
}

/// The way of one notification from the intake's receipt to its commit, in
/// two legs: where a latency comes from decides what to tune (the broker's
/// queue, or the worker's batches and database).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommitLatency {
    /// From the intake's receipt (`x-received-at`) until the worker took
    /// the delivery from the broker, seconds.
    pub to_delivery: f64,
    /// From taking the delivery until its transaction committed, seconds.
    pub to_commit: f64,
}

impl CommitLatency {
    /// From receipt to commit, seconds.
    pub fn total(&self) -> f64 {
        self.to_delivery + self.to_commit
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Every metric of `role`, counters at zero with all their label sets.
    pub fn new(role: Role) -> Self {
        let notifications = Family::<OutcomeLabels, Counter>::default();
        let signatures = Family::<SignatureLabels, Counter>::default();
        let retries = Family::<DelayLabels, Counter>::default();
        let parked = Family::<ReasonLabels, Counter>::default();
        let pan_detections = Counter::default();
        let licence_notices = Family::<TestLabels, Counter>::default();
        let processing_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let in_flight = Gauge::default();
        let broker_connected = Gauge::default();
        let database_up = Gauge::default();
        // Signed: negative when the processor's clock runs ahead of ours.
        let ipn_date_skew_seconds = Histogram::new([
            -3600.0, -300.0, -60.0, -10.0, -1.0, 0.0, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
            86400.0,
        ]);

        let intake_requests = Family::<ResultLabels, Counter>::default();
        let commit_latency_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 18));
        let parking_queue_messages = Gauge::default();
        let queue_messages = Family::<QueueLabels, Gauge>::default();
        let queue_consumers = Family::<QueueLabels, Gauge>::default();
        let review_items_open = Family::<KindLabels, Gauge>::default();
        let review_oldest_open_age_seconds = Gauge::default();
        let review_oldest_open_age_by_kind_seconds = Family::<KindLabels, Gauge>::default();
        let review_resolutions = Family::<ActionLabels, Gauge>::default();
        let money_at_risk_minor_units = Family::<MoneyLabels, Gauge>::default();
        let audit_last_ok_timestamp_seconds = Gauge::default();
        let audit_failures = Counter::default();
        let audit_interval_seconds = Gauge::default();
        // A minute to three months: orders are paid within minutes, wire
        // transfers within days, and some wait for a person for weeks.
        let order_to_reconciled_seconds = Histogram::new([
            60.0,
            300.0,
            900.0,
            3_600.0,
            4.0 * 3_600.0,
            12.0 * 3_600.0,
            86_400.0,
            2.0 * 86_400.0,
            7.0 * 86_400.0,
            14.0 * 86_400.0,
            30.0 * 86_400.0,
            90.0 * 86_400.0,
        ]);

        let mut registry = Registry::with_prefix("ipn");
        registry.register(
            "intake_requests",
            "Requests to the intake but its GET probe, by result (queued = answered with a receipt; not_found = another path)",
            intake_requests.clone(),
        );
        registry.register(
            "notifications",
            "Notifications handled, by outcome",
            notifications.clone(),
        );
        registry.register(
            "signatures",
            "Signature checks, by algorithm and result",
            signatures.clone(),
        );
        registry.register(
            "retries",
            "Notifications sent to a delayed retry queue, by delay",
            retries.clone(),
        );
        registry.register(
            "parked",
            "Notifications moved to the parking queue, by reason",
            parked.clone(),
        );
        registry.register(
            "pan_detections",
            "Notifications in which a card number was found and dropped",
            pan_detections.clone(),
        );
        registry.register(
            "licence_notices",
            "Licence change notifications verified by the worker, by test flag (test ones are never recorded)",
            licence_notices.clone(),
        );
        registry.register(
            "processing_seconds",
            "Time from delivery to ack, per notification",
            processing_seconds.clone(),
        );
        registry.register(
            "in_flight",
            "Notifications being processed now",
            in_flight.clone(),
        );
        registry.register(
            "broker_connected",
            "1 when the consumer is connected to RabbitMQ",
            broker_connected.clone(),
        );
        registry.register(
            "ipn_date_skew_seconds",
            "Receipt time minus the signed IPN_DATE",
            ipn_date_skew_seconds.clone(),
        );
        registry.register(
            "commit_latency_seconds",
            "Time from the intake's receipt to the commit of the notification",
            commit_latency_seconds.clone(),
        );
        registry.register(
            "parking_queue_messages",
            "Messages waiting in the parking queue for a person",
            parking_queue_messages.clone(),
        );
        registry.register(
            "queue_messages",
            "Messages ready in each queue of the topology, by role (work, retry_<delay>, parking)",
            queue_messages.clone(),
        );
        registry.register(
            "queue_consumers",
            "Consumers of the work queue, as the broker counts them",
            queue_consumers.clone(),
        );
        registry.register(
            "order_to_reconciled_seconds",
            "Time from an order's creation to the commit that made it reconciled",
            order_to_reconciled_seconds.clone(),
        );
        // A daemon without a database has nothing to say of one: a gauge
        // at 0 there would read as "database down" forever. The gauges
        // refreshed from the database go with it.
        if let Role::Serve { .. } = role {
            registry.register(
                "database_up",
                "1 when PostgreSQL answered the last check",
                database_up.clone(),
            );
            registry.register(
                "review_items_open",
                "Open review items (exceptions), by kind",
                review_items_open.clone(),
            );
            registry.register(
                "review_oldest_open_age_seconds",
                "Age of the oldest open review item (0 when none is open)",
                review_oldest_open_age_seconds.clone(),
            );
            registry.register(
                "review_oldest_open_age_by_kind_seconds",
                "Age of the oldest open review item of each kind",
                review_oldest_open_age_by_kind_seconds.clone(),
            );
            registry.register(
                "review_resolutions",
                "Review items resolved, by action (closed_by_system when the condition stopped \
                 holding)",
                review_resolutions.clone(),
            );
            registry.register(
                "money_at_risk_minor_units",
                "Money at risk in minor units, by kind (paid_unsettled, mismatched, orphaned) and \
                 currency; the amount is value / 10^exponent",
                money_at_risk_minor_units.clone(),
            );
            registry.register(
                "audit_last_ok_timestamp_seconds",
                "When the last audit found every hash chain and every order as written (Unix \
                 seconds; 0 until one has)",
                audit_last_ok_timestamp_seconds.clone(),
            );
            registry.register(
                "audit_failures",
                "Audits that found a row differing from what was written (tampering)",
                audit_failures.clone(),
            );
            registry.register(
                "audit_interval_seconds",
                "How often the daemon audits the books (audit-interval; 0 when off)",
                audit_interval_seconds.clone(),
            );
        }
        let metrics = Self {
            registry: Arc::new(registry),
            notifications,
            signatures,
            retries,
            parked,
            pan_detections,
            licence_notices,
            processing_seconds,
            in_flight,
            broker_connected,
            database_up,
            ipn_date_skew_seconds,
            commit_latency_seconds,
            intake_requests,
            parking_queue_messages,
            queue_messages,
            queue_consumers,
            review_items_open,
            review_oldest_open_age_seconds,
            review_oldest_open_age_by_kind_seconds,
            review_resolutions,
            money_at_risk_minor_units,
            order_to_reconciled_seconds,
            audit_last_ok_timestamp_seconds,
            audit_failures,
            audit_interval_seconds,
            handled: Arc::new(AtomicU64::new(0)),
            commit_samples: Arc::new(std::sync::Mutex::new(None)),
        };
        metrics.start_counters_at_zero(&role);
        metrics
    }

    /// Creates every label set each counter can take, at 0.
    fn start_counters_at_zero(&self, role: &Role) {
        for &result in IntakeResult::ALL {
            at_zero(&self.intake_requests, &result_labels(result));
        }
        let stages = match role {
            Role::Serve { .. } => SignatureStage::ALL,
            Role::Intake => &[SignatureStage::Intake],
        };
        let refusals = VerifyError::every_kind();
        for &stage in stages {
            for algorithm in Algorithm::STRONGEST_FIRST {
                let valid = signature_labels(stage, Some(algorithm), SIGNATURE_VALID);
                at_zero(&self.signatures, &valid);
            }
            for err in &refusals {
                let refused = signature_labels(stage, err.algorithm(), err.reason());
                at_zero(&self.signatures, &refused);
            }
        }
        let Role::Serve { retry_delays } = role else {
            return;
        };
        for outcome in Outcome::ALL {
            at_zero(&self.notifications, &outcome_labels(outcome));
        }
        for &kind in ParkKind::ALL {
            at_zero(&self.parked, &reason_labels(kind));
        }
        for test in [false, true] {
            at_zero(&self.licence_notices, &test_labels(test));
        }
        for &delay in retry_delays.delays() {
            at_zero(&self.retries, &delay_labels(delay));
        }
    }
}

/// Creates the series of `labels` in `family`, at 0 (a no-op when it
/// exists).
fn at_zero<L: Clone + std::hash::Hash + Eq>(family: &Family<L, Counter>, labels: &L) {
    drop(family.get_or_create(labels));
}

fn outcome_labels(outcome: Outcome) -> OutcomeLabels {
    OutcomeLabels {
        outcome: outcome.as_str().to_owned(),
    }
}

fn signature_labels(
    stage: SignatureStage,
    algorithm: Option<Algorithm>,
    result: &str,
) -> SignatureLabels {
    SignatureLabels {
        stage: stage.as_str().to_owned(),
        algorithm: algorithm.map_or("none", Algorithm::as_str).to_owned(),
        result: result.to_owned(),
    }
}

fn delay_labels(delay: Duration) -> DelayLabels {
    DelayLabels {
        delay: delay_label(delay),
    }
}

fn reason_labels(kind: ParkKind) -> ReasonLabels {
    ReasonLabels {
        reason: kind.as_str().to_owned(),
    }
}

fn test_labels(test: bool) -> TestLabels {
    TestLabels {
        test: test.to_string(),
    }
}

fn result_labels(result: IntakeResult) -> ResultLabels {
    ResultLabels {
        result: result.as_str().to_owned(),
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn outcome(&self, outcome: Outcome) {
        self.notifications
            .get_or_create(&outcome_labels(outcome))
            .inc();
    }

    /// Counts one signature that verified at `stage`.
    pub fn signature_valid(&self, stage: SignatureStage, algorithm: Algorithm) {
        self.signatures
            .get_or_create(&signature_labels(stage, Some(algorithm), SIGNATURE_VALID))
            .inc();
    }

    /// Counts one signature refused at `stage`: the algorithm tried
    /// (`none` when none was) and the reason ([`VerifyError::reason`]).
    pub fn signature_refused(
        &self,
        stage: SignatureStage,
        algorithm: Option<Algorithm>,
        reason: &str,
    ) {
        self.signatures
            .get_or_create(&signature_labels(stage, algorithm, reason))
            .inc();
    }

    pub fn retry(&self, delay: Duration) {
        self.retries.get_or_create(&delay_labels(delay)).inc();
    }

    /// Counts a parked message under its reason's kind.
    pub fn park(&self, kind: ParkKind) {
        self.parked.get_or_create(&reason_labels(kind)).inc();
    }

    /// Reads the ready messages of every queue of `topology` and the
    /// consumers of its work queue (passive declares, on `publisher`'s
    /// connection) into `ipn_queue_messages{queue}`,
    /// `ipn_queue_consumers{queue="work"}` and
    /// `ipn_parking_queue_messages`. When the broker cannot be asked, the
    /// queue series are removed until it can: an old depth must not pass
    /// for a current one (`ipn_parking_queue_messages` keeps its last
    /// value, as it always did).
    pub async fn refresh_queues(&self, publisher: &Publisher, topology: &Topology) {
        for (role, name) in topology.queues() {
            match publisher.queue_counts(&name).await {
                Ok(counts) => {
                    let labels = QueueLabels {
                        queue: role.label(),
                    };
                    self.queue_messages
                        .get_or_create(&labels)
                        .set(i64::from(counts.messages));
                    match role {
                        QueueRole::Work => {
                            self.queue_consumers
                                .get_or_create(&labels)
                                .set(i64::from(counts.consumers));
                        }
                        QueueRole::Parking => {
                            self.parking_queue_messages.set(i64::from(counts.messages));
                        }
                        QueueRole::Retry(_) => {}
                    }
                }
                Err(err) => {
                    tracing::debug!(error = %err, queue = %name, "cannot read a queue's depth");
                    self.queue_messages.clear();
                    self.queue_consumers.clear();
                    return;
                }
            }
        }
    }

    /// Sets the open review items per kind; kinds not listed go to 0.
    pub fn set_open_review_items(&self, counts: &[(String, i64)], oldest_age_seconds: i64) {
        self.review_items_open.clear();
        for (kind, count) in counts {
            self.review_items_open
                .get_or_create(&KindLabels { kind: kind.clone() })
                .set(*count);
        }
        self.review_oldest_open_age_seconds
            .set(oldest_age_seconds.max(0));
    }

    /// Sets the age of the oldest open item of each kind; kinds not listed
    /// disappear (none open).
    pub fn set_oldest_open_by_kind(&self, ages: &[(String, i64)]) {
        self.review_oldest_open_age_by_kind_seconds.clear();
        for (kind, age) in ages {
            self.review_oldest_open_age_by_kind_seconds
                .get_or_create(&KindLabels { kind: kind.clone() })
                .set((*age).max(0));
        }
    }

    /// Sets the resolutions so far per action; actions not listed go away.
    pub fn set_review_resolutions(&self, counts: &[(String, i64)]) {
        self.review_resolutions.clear();
        for (action, count) in counts {
            self.review_resolutions
                .get_or_create(&ActionLabels {
                    action: action.clone(),
                })
                .set(*count);
        }
    }

    /// Sets the money at risk: `(kind, currency, exponent, minor units)`;
    /// series not listed disappear (nothing at risk).
    pub fn set_money_at_risk(&self, amounts: &[(String, String, u32, i64)]) {
        self.money_at_risk_minor_units.clear();
        for (kind, currency, exponent, minor) in amounts {
            self.money_at_risk_minor_units
                .get_or_create(&MoneyLabels {
                    kind: kind.clone(),
                    currency: currency.clone(),
                    exponent: exponent.to_string(),
                })
                .set(*minor);
        }
    }

    /// An audit's verdict: `at` (Unix seconds) when it passed; a failure
    /// otherwise.
    pub fn audited(&self, passed: bool, at: i64) {
        if passed {
            self.audit_last_ok_timestamp_seconds.set(at);
        } else {
            self.audit_failures.inc();
        }
    }

    /// A verified licence change notification.
    pub fn licence_notice(&self, test: bool) {
        self.licence_notices.get_or_create(&test_labels(test)).inc();
    }

    pub fn intake_request(&self, result: IntakeResult) {
        self.intake_requests
            .get_or_create(&result_labels(result))
            .inc();
    }

    pub(crate) fn count_handled(&self) {
        self.handled.fetch_add(1, Ordering::Relaxed);
    }

    /// Deliveries handled (acked, retried, parked or returned) so far.
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    /// Keeps every commit latency from now on, for
    /// [`Metrics::commit_latencies`] (`bench`).
    pub fn keep_commit_latencies(&self) {
        let mut samples = self.lock_samples();
        samples.get_or_insert_with(Vec::new);
    }

    /// The commit latencies kept so far, in the order observed.
    pub fn commit_latencies(&self) -> Vec<CommitLatency> {
        self.lock_samples().clone().unwrap_or_default()
    }

    /// Observes the time from the intake's receipt to the commit of one
    /// notification (the histogram, and the sample when kept).
    pub(crate) fn observe_commit_latency(&self, latency: CommitLatency) {
        self.commit_latency_seconds.observe(latency.total());
        if let Some(samples) = self.lock_samples().as_mut() {
            samples.push(latency);
        }
    }

    fn lock_samples(&self) -> std::sync::MutexGuard<'_, Option<Vec<CommitLatency>>> {
        match self.commit_samples.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn serve() -> Metrics {
        Metrics::new(Role::Serve {
            retry_delays: RetryDelays::parse("200ms,5s,2m").expect("delays"),
        })
    }

    /// The samples of `text` as `name{labels}` -> value.
    fn samples(text: &str) -> BTreeMap<String, String> {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.rsplit_once(' '))
            .map(|(series, value)| (series.to_owned(), value.to_owned()))
            .collect()
    }

    /// The values of label `label` among the samples of `family` that are
    /// at 0 (the whole label set of those with one label).
    fn zero_labels(text: &str, family: &str) -> BTreeSet<String> {
        samples(text)
            .into_iter()
            .filter(|(_, value)| value == "0")
            .filter_map(|(series, _)| {
                let labels = series.strip_prefix(family)?.strip_prefix('{')?;
                Some(labels.strip_suffix('}')?.to_owned())
            })
            .collect()
    }

    fn set<const N: usize>(labels: [String; N]) -> BTreeSet<String> {
        labels.into_iter().collect()
    }

    #[test]
    fn a_fresh_serve_exports_every_counter_with_every_label_set_at_zero() {
        let text = serve().encode();
        assert_eq!(
            zero_labels(&text, "ipn_notifications_total"),
            Outcome::ALL
                .iter()
                .map(|o| format!("outcome=\"{o}\""))
                .collect(),
            "{text}"
        );
        assert_eq!(
            zero_labels(&text, "ipn_parked_total"),
            ParkKind::ALL
                .iter()
                .map(|k| format!("reason=\"{k}\""))
                .collect(),
            "{text}"
        );
        assert_eq!(
            zero_labels(&text, "ipn_retries_total"),
            set(["200ms", "5s", "2m"].map(|d| format!("delay=\"{d}\""))),
            "{text}"
        );
        assert_eq!(
            zero_labels(&text, "ipn_intake_requests_total"),
            IntakeResult::ALL
                .iter()
                .map(|r| format!("result=\"{}\"", r.as_str()))
                .collect(),
            "{text}"
        );
        // Written out: the combinations a check can end in, per stage.
        let checks = [
            ("sha3-256", "valid"),
            ("sha256", "valid"),
            ("md5", "valid"),
            ("none", "malformed"),
            ("none", "unsigned"),
            ("md5", "md5_not_allowed"),
            ("sha3-256", "required_algorithm_missing"),
            ("sha256", "required_algorithm_missing"),
            ("sha3-256", "bad_signature_format"),
            ("sha256", "bad_signature_format"),
            ("md5", "bad_signature_format"),
            ("sha3-256", "mismatch"),
            ("sha256", "mismatch"),
            ("md5", "mismatch"),
        ];
        let expected: BTreeSet<String> = ["intake", "worker"]
            .iter()
            .flat_map(|stage| {
                checks.iter().map(move |(algorithm, result)| {
                    format!("stage=\"{stage}\",algorithm=\"{algorithm}\",result=\"{result}\"")
                })
            })
            .collect();
        assert_eq!(zero_labels(&text, "ipn_signatures_total"), expected);
        assert!(text.contains("\nipn_pan_detections_total 0\n"), "{text}");
        // No counter family without a series: every `# TYPE ... counter`
        // has samples, all at 0.
        let counters: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
            .collect();
        assert!(counters.len() >= 6, "{text}");
        let samples = samples(&text);
        for counter in counters {
            let series: Vec<_> = samples
                .iter()
                .filter(|(name, _)| {
                    name.strip_prefix(counter)
                        .and_then(|rest| rest.strip_prefix("_total"))
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
                })
                .collect();
            assert!(!series.is_empty(), "{counter} has no series:\n{text}");
            assert!(series.iter().all(|(_, value)| *value == "0"), "{series:?}");
        }
        assert!(text.contains("\nipn_database_up 0\n"), "{text}");
    }

    #[test]
    fn the_intake_alone_exports_its_own_counters_and_nothing_of_a_database() {
        let text = Metrics::new(Role::Intake).encode();
        assert_eq!(
            zero_labels(&text, "ipn_intake_requests_total").len(),
            IntakeResult::ALL.len(),
            "{text}"
        );
        let signatures = zero_labels(&text, "ipn_signatures_total");
        assert_eq!(signatures.len(), 14, "{text}");
        assert!(
            signatures
                .iter()
                .all(|labels| labels.starts_with("stage=\"intake\"")),
            "{signatures:?}"
        );
        for absent in [
            "ipn_database_up",
            "ipn_review_oldest_open_age_seconds",
            "ipn_review_items_open",
            "ipn_money_at_risk_minor_units",
            "ipn_audit_last_ok_timestamp_seconds",
            "ipn_audit_failures_total",
            "ipn_notifications_total{",
            "ipn_parked_total{",
            "ipn_retries_total{",
        ] {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
    }

    #[test]
    fn counts_show_in_the_text_exposition() {
        let metrics = serve();
        metrics.outcome(Outcome::Applied);
        metrics.outcome(Outcome::Applied);
        metrics.park(ParkKind::Malformed);
        metrics.retry(Duration::from_secs(120));
        metrics.intake_request(IntakeResult::TooLarge);
        metrics.signature_refused(SignatureStage::Intake, None, "unsigned");
        let text = metrics.encode();
        for series in [
            "ipn_retries_total{delay=\"2m\"} 1",
            "ipn_retries_total{delay=\"5s\"} 0",
            "ipn_intake_requests_total{result=\"too_large\"} 1",
            "ipn_signatures_total{stage=\"intake\",algorithm=\"none\",result=\"unsigned\"} 1",
        ] {
            assert!(text.contains(series), "{series} in\n{text}");
        }
        assert!(
            text.contains("ipn_notifications_total{outcome=\"applied\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("ipn_parked_total{reason=\"malformed\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn an_audit_sets_its_time_when_it_passes_and_counts_when_it_fails() {
        let metrics = serve();
        let text = metrics.encode();
        assert!(text.contains("\nipn_audit_failures_total 0\n"), "{text}");
        assert!(
            text.contains("\nipn_audit_last_ok_timestamp_seconds 0\n"),
            "{text}"
        );
        metrics.audited(true, 1_767_225_600);
        metrics.audited(false, 1_767_229_200);
        let text = metrics.encode();
        assert!(
            text.contains("\nipn_audit_last_ok_timestamp_seconds 1767225600\n"),
            "{text}"
        );
        assert!(text.contains("\nipn_audit_failures_total 1\n"), "{text}");
    }

    #[test]
    fn money_at_risk_is_in_minor_units_with_its_exponent() {
        let metrics = serve();
        metrics.set_money_at_risk(&[
            ("orphaned".into(), "EUR".into(), 2, 12_345),
            ("mismatched".into(), "JPY".into(), 0, 2_500),
        ]);
        let text = metrics.encode();
        assert!(
            text.contains(
                "ipn_money_at_risk_minor_units{kind=\"orphaned\",currency=\"EUR\",exponent=\"2\"} 12345"
            ),
            "{text}"
        );
        // Refreshing replaces: what is no longer at risk disappears.
        metrics.set_money_at_risk(&[]);
        assert!(!metrics.encode().contains("currency=\"JPY\""));
    }

    #[test]
    fn resolutions_are_counted_by_action() {
        let metrics = serve();
        metrics.set_review_resolutions(&[("dismiss".into(), 3), ("link_order".into(), 1)]);
        let text = metrics.encode();
        assert!(
            text.contains("ipn_review_resolutions{action=\"dismiss\"} 3"),
            "{text}"
        );
        metrics.set_review_resolutions(&[("link_order".into(), 2)]);
        let text = metrics.encode();
        assert!(!text.contains("action=\"dismiss\""), "{text}");
        assert!(
            text.contains("ipn_review_resolutions{action=\"link_order\"} 2"),
            "{text}"
        );
    }
}
