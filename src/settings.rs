//! Settings: everything an operator can configure, in one serde tree, and
//! the only place where defaults live.
//!
//! Values come from four layers, each overriding the one before:
//!
//! 1. the defaults of [`Settings::default`];
//! 2. an optional TOML file (`--config FILE` or `IPN_CONFIG`) whose keys are
//!    the long flag names (`http-addr = "127.0.0.1:9187"`);
//! 3. environment variables (`IPN_HTTP_ADDR`, `DATABASE_URL`, ...);
//! 4. command-line flags (`--http-addr`).
//!
//! Every value is checked when the daemon starts, and a refusal names the
//! key and where its value came from (`environment variable
//! IPN_SHUTDOWN_DEADLINE`, `--prefetch`, `config file /etc/...`), so an
//! operator knows what to fix. An unknown key in the file is refused too: a
//! typo must not silently fall back to a default.
//!
//! The layers are merged with figment; the command line declares its flags
//! from the table in `cli::args`, whose long names are these keys.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::{NonZero, NonZeroU16, NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

use crate::domain::four_eyes::FourEyesAmount;
use crate::domain::journal::JournalAccounts;
use crate::domain::money::CurrencyCode;
use crate::domain::settlement::Tolerance;
use crate::domain::sweep::SweepPolicy;
use crate::domain::{Currencies, OrderSource, PseudonymKey, ReconcilePolicy};
use crate::intake::{ConnectionLimits, IntakeSettings, ReceiptChoice, SourcePolicy};
use crate::ipn::{Algorithm, FormLimits, KeyRing, SignaturePolicy};
use crate::pipeline::PipelineConfig;
use crate::queue::{AmqpSettings, RetryDelays, Sealer, Topology};
use crate::secret::SecretUrl;
use crate::store::{DatabaseSettings, SchemaPolicy};
use crate::telemetry::LogFormat;
use crate::worker::WorkerSettings;

/// Every setting, in sections that follow the flag groups of `cli::args`
/// (and the settings table of docs/configuration.md). The sections are
/// flattened: a key of any section is a long flag name and a key of the
/// configuration file, without a section prefix, so the file and the
/// environment operators already use keep working.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    #[serde(flatten)]
    pub database: DatabaseSection,
    #[serde(flatten)]
    pub notifications: NotificationSection,
    #[serde(flatten)]
    pub broker: BrokerSection,
    #[serde(flatten)]
    pub worker: WorkerSection,
    #[serde(flatten)]
    pub intake: IntakeSection,
    #[serde(flatten)]
    pub operations: OperationsSection,
    #[serde(flatten)]
    pub finance: FinanceSection,
    #[serde(flatten)]
    pub settlement: SettlementSection,
    #[serde(flatten)]
    pub console: ConsoleSection,
    #[serde(flatten)]
    pub processor_api: ProcessorApiSection,
}

/// Where PostgreSQL is (flags of `cli::args::DATABASE`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct DatabaseSection {
    /// `postgres://user[:password]@host:port/dbname`.
    pub database_url: SecretUrl,
    /// Apply pending migrations at start.
    pub auto_migrate: bool,
    /// Create the database when it does not exist (`migrate` and `serve`
    /// only; every other command refuses a missing database).
    pub create_db: bool,
    /// Connections in the pool.
    #[serde(deserialize_with = "at_least_one")]
    pub db_pool_size: NonZeroUsize,
    /// How long to wait for a connection (new or pooled) before reporting
    /// the database unreachable.
    pub db_acquire_timeout: PositiveDuration,
    /// Longest a statement may run (PostgreSQL `statement_timeout`); a
    /// timeout is a transient error, retried.
    pub db_statement_timeout: PositiveDuration,
    /// Longest a statement may wait for a row lock (`lock_timeout`).
    pub db_lock_timeout: PositiveDuration,
    /// Currencies outside ISO 4217 that orders may be in, with their
    /// exponents (`XYZ=2`): the currency table, built and checked once
    /// when the settings are read ([`Loaded::currencies`]).
    pub allow_currency: AllowedCurrencies,
}

impl Default for DatabaseSection {
    fn default() -> Self {
        Self {
            database_url: SecretUrl::new("postgres://postgres@127.0.0.1:5432/ipn_reconciler"),
            auto_migrate: true,
            create_db: false,
            db_pool_size: const { NonZero::new(8).expect("positive") },
            db_acquire_timeout: PositiveDuration::from_secs(5),
            db_statement_timeout: PositiveDuration::from_secs(30),
            db_lock_timeout: PositiveDuration::from_secs(10),
            allow_currency: AllowedCurrencies::default(),
        }
    }
}

/// How notifications are judged (flags of `cli::args::NOTIFICATIONS`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct NotificationSection {
    /// The processor's secret keys (see docs/configuration.md, "Key file").
    pub key_file: Option<PathBuf>,
    /// Accept legacy HMAC-MD5 `HASH` signatures.
    pub allow_md5: bool,
    /// A signature every notification must carry (`sha3-256` or `sha256`),
    /// so that stripping it cannot let a weaker one decide.
    pub require_algorithm: RequiredAlgorithm,
    /// Key of the customer e-mail pseudonyms; none: no pseudonym stored.
    pub pseudonym_key_file: Option<PathBuf>,
    /// Let `TEST_ORDER=1` notifications change orders.
    pub apply_test_orders: bool,
    /// Where orders come from: imported by the merchant, made from the
    /// processor's notices (keyed by `REFNO`), or both.
    pub order_source: OrderSource,
    /// The time zone of the processor's date fields (`PAYMENTDATE`,
    /// `IPN_DATE`, ...): how a notice's dates become the time its money
    /// moved.
    pub processor_timezone: IanaZone,
    /// Largest accepted notification body, in bytes.
    #[serde(deserialize_with = "at_least_one")]
    pub max_body_bytes: NonZeroUsize,
    /// Fields the merchant's IPN settings send, which a body must carry
    /// under their own names (see docs/configuration.md, "Which IPN fields
    /// to send").
    pub expected_fields: ExpectedFields,
}

impl Default for NotificationSection {
    fn default() -> Self {
        Self {
            key_file: None,
            allow_md5: false,
            require_algorithm: RequiredAlgorithm(None),
            pseudonym_key_file: None,
            apply_test_orders: false,
            order_source: OrderSource::default(),
            processor_timezone: IanaZone::default(),
            max_body_bytes: const { NonZero::new(FormLimits::DEFAULT_MAX_BODY_BYTES).expect("positive") },
            expected_fields: ExpectedFields::default(),
        }
    }
}

/// Where RabbitMQ is and what the queues are called (flags of
/// `cli::args::BROKER`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct BrokerSection {
    pub amqp_url: SecretUrl,
    /// Base name of the exchange and queues.
    pub amqp_queue: String,
    /// Delays of the broker-side retries, in order.
    pub retry_delays: RetryDelays,
    /// Deliveries of one message before the broker parks it.
    #[serde(deserialize_with = "at_least_one")]
    pub delivery_limit: NonZeroU32,
    /// How long a publisher waits for the broker's confirm.
    pub publish_timeout: PositiveDuration,
    /// How long a silent broker path may last before its connection is
    /// declared lost (AMQP heartbeats at half this interval).
    pub amqp_heartbeat: PositiveDuration,
    /// How long a parked message is kept before the broker drops it
    /// (between 1s and [`MAX_PARKING_TTL`], checked after parsing).
    #[serde(with = "humantime_serde")]
    pub parking_ttl: Duration,
    /// The keys that seal bodies in the broker (see docs/data-handling.md,
    /// "Sealing keys and their rotation"); `serve`, `intake`, `publish`
    /// and `parked requeue` refuse to start without it.
    pub seal_key_file: Option<PathBuf>,
}

impl Default for BrokerSection {
    fn default() -> Self {
        Self {
            amqp_url: SecretUrl::new("amqp://guest:guest@127.0.0.1:5672/%2f"),
            amqp_queue: "ipn.notifications".to_owned(),
            retry_delays: secs_schedule(&[5, 30, 120, 600, 3600]),
            // High enough that crashes and reconnects never reach it; low
            // enough to stop a message that kills workers.
            delivery_limit: const { NonZero::new(20).expect("positive") },
            publish_timeout: PositiveDuration::from_secs(15),
            amqp_heartbeat: const {
                PositiveDuration::new(crate::queue::DEFAULT_HEARTBEAT).expect("positive")
            },
            parking_ttl: crate::queue::topology::DEFAULT_PARKING_TTL,
            seal_key_file: None,
        }
    }
}

/// How the worker consumes (flags of `cli::args::WORKER`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct WorkerSection {
    /// Unacked deliveries the broker may push to one worker.
    #[serde(deserialize_with = "at_least_one")]
    pub prefetch: NonZeroU16,
    /// Batches processed at the same time (notifications, with a batch
    /// size of 1).
    #[serde(deserialize_with = "at_least_one")]
    pub concurrency: NonZeroUsize,
    /// Deliveries applied in one database transaction (1: one by one).
    #[serde(deserialize_with = "at_least_one")]
    pub batch_size: NonZeroUsize,
    /// How long a batch waits to fill before it is applied anyway.
    #[serde(with = "humantime_serde")]
    pub batch_wait: Duration,
    /// How long a notification for an unknown order is retried.
    #[serde(with = "humantime_serde")]
    pub orphan_window: Duration,
    /// No effect any more: lapin's own reconnect, which this bounded, is
    /// off (a lost broker connection is rebuilt at once, with backoff).
    /// Still accepted, so that existing configurations keep working.
    pub recovery_stall: PositiveDuration,
    /// `serve` without the intake listener.
    pub no_intake: bool,
}

impl Default for WorkerSection {
    fn default() -> Self {
        Self {
            // Measured with `ipn-reconciler bench` (docs/throughput.md):
            // enough deliveries in flight to fill `concurrency` batches.
            prefetch: const { NonZero::new(256).expect("positive") },
            concurrency: const { NonZero::new(4).expect("positive") },
            batch_size: const { NonZero::new(64).expect("positive") },
            // 5 ms closed batches of about ten at 1,000/s: more
            // transactions, more of the two cores, a longer queue for the
            // CPU; 10 ms halved the p99 there (15 and 20 ms: no better).
            batch_wait: Duration::from_millis(10),
            orphan_window: Duration::from_secs(3600),
            recovery_stall: PositiveDuration::from_secs(15),
            no_intake: false,
        }
    }
}

/// How the intake listens and answers (flags of `cli::args::INTAKE`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct IntakeSection {
    pub intake_addr: SocketAddr,
    pub intake_path: String,
    /// The path that receives licence change notifications (LCN).
    pub lcn_path: String,
    /// Verify signatures before queueing.
    pub edge_verify: bool,
    pub receipt_format: ReceiptChoice,
    /// A header with the caller's address, set by a proxy you trust.
    pub trusted_forwarded_header: Option<String>,
    /// The proxies whose forwarded header is believed; required with
    /// `trusted_forwarded_header`.
    pub trusted_proxies: AllowNetworks,
    /// Networks allowed to post; empty: anyone.
    pub allow_networks: AllowNetworks,
    /// How long the intake waits for the broker's confirm before a 503.
    pub confirm_timeout: PositiveDuration,
    /// How long a client may take to send a request's header, from
    /// connecting or from its first byte (slow clients are dropped).
    pub intake_header_timeout: PositiveDuration,
    /// How long a client may take to send a body (408 after that).
    pub intake_body_timeout: PositiveDuration,
    /// How long a kept-alive intake connection may wait for its next request.
    pub intake_idle_timeout: PositiveDuration,
    /// Intake connections open at once; more are answered 503.
    #[serde(deserialize_with = "at_least_one")]
    pub intake_max_connections: NonZeroUsize,
    /// Intake connections one client address may hold at once; more from
    /// it are answered 503.
    #[serde(deserialize_with = "at_least_one")]
    pub intake_max_connections_per_client: NonZeroUsize,
}

impl Default for IntakeSection {
    fn default() -> Self {
        let limits = ConnectionLimits::default();
        let positive =
            |d: Duration| PositiveDuration::new(d).unwrap_or(PositiveDuration::from_secs(1));
        Self {
            intake_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            intake_path: "/ipn".to_owned(),
            lcn_path: "/lcn".to_owned(),
            edge_verify: true,
            receipt_format: ReceiptChoice::Auto,
            trusted_forwarded_header: None,
            trusted_proxies: AllowNetworks::default(),
            allow_networks: AllowNetworks::default(),
            confirm_timeout: PositiveDuration::from_secs(5),
            intake_header_timeout: positive(limits.header_timeout),
            intake_body_timeout: positive(limits.body_timeout),
            intake_idle_timeout: positive(limits.idle_timeout),
            intake_max_connections: NonZeroUsize::new(limits.max_connections)
                .unwrap_or(NonZeroUsize::MIN),
            intake_max_connections_per_client: NonZeroUsize::new(limits.max_connections_per_client)
                .unwrap_or(NonZeroUsize::MIN),
        }
    }
}

/// The daemon's own operation: endpoint, logs, shutdown (flags of
/// `cli::args::OPERATIONS`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct OperationsSection {
    /// The operations endpoint (/healthz, /readyz, /metrics).
    pub http_addr: SocketAddr,
    pub log_format: LogFormat,
    /// How long SIGTERM waits for the work in flight.
    #[serde(with = "humantime_serde")]
    pub shutdown_deadline: Duration,
    /// How long to let the broker settle the last acks before the consumer
    /// channel closes at shutdown.
    #[serde(with = "humantime_serde")]
    pub ack_settle_grace: Duration,
    /// How long closing one connection or listener may take at shutdown,
    /// after the work in flight is done.
    pub close_timeout: PositiveDuration,
    /// How often `serve` refreshes the gauges it reads from the database
    /// and the broker (open exceptions, money at risk, parking depth), so
    /// that scrapes never query.
    pub gauge_refresh_interval: PositiveDuration,
    /// How often `serve` runs `audit verify` (the hash chains and the
    /// orders re-derived from them); `off`: never.
    pub audit_interval: OptionalInterval,
}

impl Default for OperationsSection {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 9187)),
            log_format: LogFormat::Pretty,
            shutdown_deadline: Duration::from_secs(30),
            ack_settle_grace: Duration::from_millis(500),
            close_timeout: PositiveDuration::from_secs(5),
            gauge_refresh_interval: PositiveDuration::from_secs(15),
            audit_interval: OptionalInterval::every(PositiveDuration::from_secs(3600)),
        }
    }
}

/// Finance exports (flags of `cli::args::FINANCE`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct FinanceSection {
    /// The names of the journal's accounts (`ACCOUNT=NAME`); accounts not
    /// named keep their default names.
    pub journal_accounts: JournalAccountNames,
    /// The time zone the books are kept in: where the days and months of
    /// `--from`/`--to` (and the console's filters) begin and end.
    pub report_timezone: ReportTimezone,
    /// Above which amount a `link_order` needs a second resolver's
    /// confirmation in the console; empty: never (the default).
    pub four_eyes_amount: FourEyesSetting,
}

/// `four-eyes-amount`: `AMOUNT CUR` entries and at most one bare `AMOUNT`
/// for every other currency, separated by commas; empty: off (see
/// [`FourEyesAmount`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FourEyesSetting(pub FourEyesAmount);

impl Serialize for FourEyesSetting {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for FourEyesSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        FourEyesAmount::parse(&text)
            .map(FourEyesSetting)
            .map_err(serde::de::Error::custom)
    }
}

/// `report-timezone`: the zone the books are kept in.
pub type ReportTimezone = IanaZone;

/// `report-timezone` and `processor-timezone`: an IANA time zone name
/// (`Europe/Bucharest`), `UTC` by default. A name the time zone database
/// does not know is refused, never read as UTC: a month would silently
/// shift by hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IanaZone(pub chrono_tz::Tz);

impl Default for IanaZone {
    fn default() -> Self {
        Self(chrono_tz::Tz::UTC)
    }
}

impl IanaZone {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        text.parse::<chrono_tz::Tz>().map(Self).map_err(|_| {
            // Shown as typed, but never a control character on a terminal.
            let shown: String = text
                .chars()
                .take(64)
                .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
                .collect();
            format!(
                "`{shown}` is not a time zone name of the IANA database: give one such as \
                 Europe/Bucharest, America/New_York or UTC"
            )
        })
    }
}

impl Serialize for IanaZone {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.name())
    }
}

impl<'de> Deserialize<'de> for IanaZone {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Settlement matching and sweeps (flags of `cli::args::SETTLEMENT`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct SettlementSection {
    /// How far a settlement line's amount may be from the ledger's and
    /// still match (a decimal applied in each currency's minor units).
    pub settlement_tolerance: SettlementTolerance,
    /// Days after which a payment not settled, or a refund not debited,
    /// becomes a review item.
    #[serde(deserialize_with = "at_least_one")]
    pub settlement_days: NonZeroU32,
    /// How long an order may stay `pending` or `authorized` before it
    /// becomes a `stale_order` review item.
    pub stale_order_age: PositiveDuration,
    /// How long after a recurring subscription's paid term ended, with no
    /// paid renewal and no licence notice saying it ended, it becomes a
    /// `renewal_missing` review item.
    pub renewal_grace: PositiveDuration,
    /// How often `serve` sweeps (one instance at a time).
    pub sweep_interval: PositiveDuration,
}

impl Default for SettlementSection {
    fn default() -> Self {
        Self {
            settlement_tolerance: SettlementTolerance::default(),
            // The processor settles within days; a week is late.
            settlement_days: const { NonZero::new(7).expect("positive") },
            stale_order_age: PositiveDuration::from_secs(3 * 24 * 3600),
            // The processor retries a failed renewal charge for days
            // before it says past due.
            renewal_grace: PositiveDuration::from_secs(3 * 24 * 3600),
            sweep_interval: PositiveDuration::from_secs(5 * 60),
        }
    }
}

/// The finance console (flags of `cli::args::CONSOLE`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct ConsoleSection {
    /// Where the finance console listens (`HOST:PORT`, or a port alone for
    /// 127.0.0.1); none: `serve` runs no console.
    pub console_addr: Option<ConsoleAddr>,
    /// Console cookies without `Secure` (plain HTTP on one's own machine).
    pub console_insecure_cookies: bool,
    /// A console session unused this long ends.
    pub console_idle_timeout: PositiveDuration,
    /// A console session ends this long after its login, however busy.
    pub console_absolute_timeout: PositiveDuration,
    /// A header with the caller's address, set by the HTTPS proxy in front
    /// of the console; believed only from `console_trusted_proxies`.
    pub console_trusted_forwarded_header: Option<String>,
    /// The proxies whose forwarded header the console believes; required
    /// with `console_trusted_forwarded_header`.
    pub console_trusted_proxies: AllowNetworks,
    /// The console's own key: the digests of login attempts (names typed,
    /// addresses) are keyed with it. None: a random key at each start.
    pub console_key_file: Option<PathBuf>,
}

impl Default for ConsoleSection {
    fn default() -> Self {
        Self {
            console_addr: None,
            console_insecure_cookies: false,
            // Half an hour away from the desk, or a working day, and the
            // books need a password again.
            console_idle_timeout: PositiveDuration::from_secs(30 * 60),
            console_absolute_timeout: PositiveDuration::from_secs(12 * 3600),
            console_trusted_forwarded_header: None,
            console_trusted_proxies: AllowNetworks::default(),
            console_key_file: None,
        }
    }
}

/// The processor's REST API (flags of `cli::args::PROCESSOR_API`), the
/// second witness of issue 24. Unused while `vendor-code` is not set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct ProcessorApiSection {
    /// The API's base URL; order look-ups are `{api-url}orders/{RefNo}/`.
    pub api_url: String,
    /// The account's merchant (vendor) code; none: no API calls at all.
    pub vendor_code: Option<String>,
    /// The file holding the API secret key: a file, so the secret is never
    /// on a command line (visible to every user in `ps`) nor in a log.
    pub api_key_file: Option<PathBuf>,
    /// Requests per second at most, whatever asks (the processor limits
    /// per account, and a burst of look-ups must not use that up).
    #[serde(deserialize_with = "at_least_one")]
    pub api_rate: NonZeroU32,
    /// How long one request may take before it counts as failed.
    pub api_timeout: PositiveDuration,
}

/// The processor's documented REST API 6.0 base (processor-traffic.md §5).
pub const DEFAULT_API_URL: &str = "https://api.2checkout.com/rest/6.0/";

impl Default for ProcessorApiSection {
    fn default() -> Self {
        Self {
            api_url: DEFAULT_API_URL.to_owned(),
            vendor_code: None,
            api_key_file: None,
            // A few look-ups a second is plenty for confirmations and
            // catch-up, and far below any per-account limit.
            api_rate: const { NonZero::new(5).expect("positive") },
            api_timeout: PositiveDuration::from_secs(10),
        }
    }
}

impl Settings {
    /// The settings of `figment`, one section at a time.
    ///
    /// Not `figment.extract::<Settings>()`: serde buffers the values of
    /// flattened sections before it parses them, outside figment's view,
    /// so an error would lose the key and the origin that operators need
    /// to see (`invalid \`prefetch\` (from --prefetch)`). Each section
    /// extracted on its own reads the same flat keys, and its errors keep
    /// them.
    fn extract(figment: &Figment) -> Result<Self, SettingsError> {
        fn section<T: serde::de::DeserializeOwned>(figment: &Figment) -> Result<T, SettingsError> {
            figment.extract_lossy().map_err(|err| from_figment(&err))
        }
        Ok(Self {
            database: section(figment)?,
            notifications: section(figment)?,
            broker: section(figment)?,
            worker: section(figment)?,
            intake: section(figment)?,
            operations: section(figment)?,
            finance: section(figment)?,
            settlement: section(figment)?,
            console: section(figment)?,
            processor_api: section(figment)?,
        })
    }
}

/// The refusal of a zero where a count must be positive, worded as
/// operators have always seen it.
const AT_LEAST_ONE: &str = "must be at least 1";

/// Parses a count that must be positive (`NonZeroUsize`, `NonZeroU32`,
/// `NonZeroU16`), refusing zero with "must be at least 1" rather than
/// serde's "expected a nonzero u16", so a refusal reads as it always did.
fn at_least_one<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<NonZeroU64>,
{
    let n = u64::deserialize(deserializer)?;
    let n = NonZeroU64::new(n).ok_or_else(|| serde::de::Error::custom(AT_LEAST_ONE))?;
    T::try_from(n).map_err(|_| serde::de::Error::custom(format!("{n} is too large")))
}

/// A count given by a program rather than parsed (the bench), with the
/// refusal a parsed zero gets.
pub fn positive<T: TryFrom<NonZeroU64>>(key: &str, n: u64) -> Result<T, SettingsError> {
    let invalid = |reason: String| SettingsError::Invalid {
        key: key.to_owned(),
        origin: "default".to_owned(),
        reason,
    };
    let n = NonZeroU64::new(n).ok_or_else(|| invalid(AT_LEAST_ONE.to_owned()))?;
    T::try_from(n).map_err(|_| invalid(format!("{n} is too large")))
}

/// A duration longer than zero: a timeout or an interval of zero would
/// refuse everything or spin, so such a value cannot be held at all, and
/// parsing `0s` fails with the key named ("must be longer than 0s").
/// Written as [`humantime`] text (`30s`, `5m`, `3days`), like the other
/// durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PositiveDuration(Duration);

impl PositiveDuration {
    /// `None` for zero.
    pub const fn new(duration: Duration) -> Option<Self> {
        if duration.is_zero() {
            None
        } else {
            Some(Self(duration))
        }
    }

    /// A whole number of seconds, for defaults and tests; zero is a
    /// mistake in the program, caught at compile time in a `const`.
    pub const fn from_secs(secs: u64) -> Self {
        assert!(secs > 0, "a positive duration of 0s");
        Self(Duration::from_secs(secs))
    }

    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<PositiveDuration> for Duration {
    fn from(value: PositiveDuration) -> Self {
        value.0
    }
}

impl std::fmt::Display for PositiveDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl Serialize for PositiveDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        humantime_serde::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for PositiveDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let duration: Duration = humantime_serde::deserialize(deserializer)?;
        Self::new(duration).ok_or_else(|| serde::de::Error::custom("must be longer than 0s"))
    }
}

/// An interval that can be switched off: `off` (or `0`, `0s`) for never,
/// else a duration written as the others are (`1h`, `30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalInterval(Option<PositiveDuration>);

impl OptionalInterval {
    pub const OFF: Self = Self(None);

    pub const fn every(interval: PositiveDuration) -> Self {
        Self(Some(interval))
    }

    /// `None`: off.
    pub fn get(self) -> Option<Duration> {
        self.0.map(PositiveDuration::get)
    }
}

impl std::fmt::Display for OptionalInterval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(interval) => interval.fmt(f),
            None => f.write_str("off"),
        }
    }
}

impl Serialize for OptionalInterval {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for OptionalInterval {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// `0` may come as a number from the file.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Text(String),
            Number(u64),
        }
        let text = match Written::deserialize(deserializer)? {
            Written::Number(0) => return Ok(Self::OFF),
            Written::Number(_) => {
                return Err(serde::de::Error::custom(
                    "a duration needs a unit (`1h`, `30m`), or `off`",
                ));
            }
            Written::Text(text) => text,
        };
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") || text == "0" {
            return Ok(Self::OFF);
        }
        let duration = humantime::parse_duration(text).map_err(|err| {
            serde::de::Error::custom(format!("{err}: a duration (`1h`, `30m`) or `off`"))
        })?;
        Ok(Self(PositiveDuration::new(duration)))
    }
}

/// The largest per-message TTL RabbitMQ accepts: 2^32 - 1 milliseconds,
/// rounded down to whole days (49).
pub const MAX_PARKING_TTL: Duration = Duration::from_secs(49 * 24 * 3600);

fn secs_schedule(secs: &[u64]) -> RetryDelays {
    RetryDelays::new(secs.iter().map(|s| Duration::from_secs(*s)).collect())
}

/// Networks allowed to post to the intake: a comma-separated string
/// (`91.220.121.0/25,5.35.210.128/25`, as in the environment) or, in the
/// file, a list of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowNetworks(pub Vec<ipnet::IpNet>);

impl Serialize for AllowNetworks {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        serializer.serialize_str(&text.join(","))
    }
}

impl<'de> Deserialize<'de> for AllowNetworks {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = crate::text_list::comma_list(deserializer)?;
        crate::intake::parse_allow_list(&text)
            .map(AllowNetworks)
            .map_err(serde::de::Error::custom)
    }
}

/// The signature algorithm every notification must carry: `none` (the
/// default), `sha3-256` or `sha256`. MD5 is refused: requiring the weakest
/// algorithm would protect nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequiredAlgorithm(pub Option<Algorithm>);

impl RequiredAlgorithm {
    /// Parses `none` (or nothing), `sha3-256` or `sha256` (and the aliases
    /// of [`Algorithm::parse`]); the error says what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("none") {
            return Ok(Self(None));
        }
        match Algorithm::parse(text) {
            Some(Algorithm::Md5) => {
                Err("MD5 cannot be required: use sha3-256 or sha256 (or none)".to_owned())
            }
            Some(algorithm) => Ok(Self(Some(algorithm))),
            None => Err(format!(
                "`{}`: use sha3-256, sha256 or none",
                crate::ipn::form::printable_name(text)
            )),
        }
    }
}

impl Serialize for RequiredAlgorithm {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.map_or("none", Algorithm::as_str))
    }
}

impl<'de> Deserialize<'de> for RequiredAlgorithm {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Field names a verified body must carry: a comma-separated string
/// (`TEST_ORDER,FRAUD_STATUS`) or, in the file, a list of strings. Names
/// are kept as written; an array may be given with or without `[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpectedFields(pub Vec<String>);

impl Serialize for ExpectedFields {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.join(","))
    }
}

impl<'de> Deserialize<'de> for ExpectedFields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = crate::text_list::comma_list(deserializer)?;
        let mut names = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let valid = name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'[' | b']'));
            if !valid {
                return Err(serde::de::Error::custom(format!(
                    "`{}` is not a field name (letters, digits, `_`, `-`, `[]`)",
                    crate::ipn::form::printable_name(name)
                )));
            }
            names.push(name.trim_end_matches("[]").to_owned());
        }
        Ok(Self(names))
    }
}

/// Currencies outside ISO 4217 that the books may hold, each with its
/// exponent (its number of decimals): `XYZ=2,ABC=0` or, in the file, a
/// list of strings. ISO codes cannot be given (their exponents are fixed).
///
/// Parsing builds the currency table itself ([`Currencies`], checked by
/// [`Currencies::new`]), so a table that loaded is a table that works;
/// it travels from here in the configuration (see [`Loaded::currencies`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedCurrencies(pub Currencies);

impl AllowedCurrencies {
    /// Parses `CODE=EXPONENT,...`; the error says how to write one.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut allowed = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let shown = crate::ipn::form::printable_name(item);
            let usage = || format!("`{shown}`: write CODE=EXPONENT, for example XYZ=2");
            let (code, exponent) = item.split_once('=').ok_or_else(usage)?;
            let code =
                CurrencyCode::parse(code.trim()).map_err(|err| format!("`{shown}`: {err}"))?;
            let exponent = exponent.trim().parse::<u32>().map_err(|_| usage())?;
            allowed.push((code, exponent));
        }
        Currencies::new(&allowed)
            .map(Self)
            .map_err(|err| err.to_string())
    }
}

impl Serialize for AllowedCurrencies {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text: Vec<String> = self
            .0
            .allowed()
            .map(|currency| format!("{currency}={}", currency.exponent()))
            .collect();
        serializer.serialize_str(&text.join(","))
    }
}

impl<'de> Deserialize<'de> for AllowedCurrencies {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = crate::text_list::comma_list(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The journal's account names: `clearing=1150 Processor clearing,fees=6150
/// Card fees` or, in the file, a list of strings (see
/// [`JournalAccounts::parse`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalAccountNames(pub JournalAccounts);

impl Serialize for JournalAccountNames {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text: Vec<String> = self
            .0
            .given()
            .map(|(account, name)| format!("{account}={name}"))
            .collect();
        serializer.serialize_str(&text.join(","))
    }
}

impl<'de> Deserialize<'de> for JournalAccountNames {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = crate::text_list::comma_list(deserializer)?;
        JournalAccounts::parse(&text)
            .map(JournalAccountNames)
            .map_err(serde::de::Error::custom)
    }
}

/// The console's address: `HOST:PORT`, or a port alone (`8090`, `:8090`),
/// which binds 127.0.0.1 (see [`crate::console::parse_addr`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleAddr(pub SocketAddr);

impl Serialize for ConsoleAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for ConsoleAddr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum TextOrPort {
            Text(String),
            Port(u16),
        }
        let text = match TextOrPort::deserialize(deserializer)? {
            TextOrPort::Text(text) => text,
            TextOrPort::Port(port) => port.to_string(),
        };
        crate::console::parse_addr(&text)
            .map(ConsoleAddr)
            .map_err(serde::de::Error::custom)
    }
}

/// `settlement-tolerance`: a non-negative decimal amount (`0`, `0.01`),
/// written as a string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SettlementTolerance(pub Tolerance);

impl Serialize for SettlementTolerance {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for SettlementTolerance {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Tolerance::parse(&text)
            .map(SettlementTolerance)
            .map_err(serde::de::Error::custom)
    }
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `environment variable NAME`.
    Env(&'static str),
    /// `--flag`.
    Flag(&'static str),
}

/// One value given on the command line or in the environment, still text:
/// it is parsed with the others, so that its error names where it came from.
#[derive(Debug, Clone)]
pub struct Override {
    /// The setting's key (the long flag name).
    pub key: &'static str,
    pub value: OverrideValue,
    pub origin: Origin,
}

/// The text of an override; a URL that may carry a password stays a secret.
#[derive(Debug, Clone)]
pub enum OverrideValue {
    Plain(String),
    Secret(SecretUrl),
}

impl OverrideValue {
    fn text(&self) -> &str {
        match self {
            OverrideValue::Plain(text) => text,
            OverrideValue::Secret(url) => url.expose(),
        }
    }
}

impl Override {
    fn describe(&self) -> String {
        match self.origin {
            Origin::Env(name) => format!("environment variable {name}"),
            Origin::Flag(flag) => format!("--{flag}"),
        }
    }
}

/// One override as a figment provider of its own, so an error about its
/// value can name exactly where it came from.
impl Provider for Override {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.describe())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        dict.insert(
            self.key.to_owned(),
            Value::from(self.value.text().to_owned()),
        );
        Ok(Profile::Default.collect(dict))
    }
}

/// Why the settings cannot be used. Every message names the key and where
/// its value came from, never a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the configuration file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("configuration file {path}: unknown key `{key}`{hint}")]
    UnknownKey {
        path: String,
        key: String,
        hint: String,
    },
    #[error("invalid `{key}` (from {origin}): {reason}")]
    Invalid {
        key: String,
        origin: String,
        reason: String,
    },
    #[error("`{key}` is required: set --{key}, {env} or `{key}` in the configuration file")]
    Missing {
        key: &'static str,
        env: &'static str,
    },
    #[error("cannot use `{key}` (from {origin}): {reason}")]
    Unusable {
        key: &'static str,
        origin: String,
        reason: String,
    },
}

/// Settings together with where each value came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    /// Key -> where its value came from, for the keys somebody set.
    origins: BTreeMap<String, String>,
}

impl Loaded {
    /// Where the value of `key` came from (`default` when nobody set it).
    pub fn origin(&self, key: &str) -> String {
        self.origins
            .get(key)
            .cloned()
            .unwrap_or_else(|| "default".to_owned())
    }

    fn invalid(&self, key: &str, reason: impl std::fmt::Display) -> SettingsError {
        SettingsError::Invalid {
            key: key.to_owned(),
            origin: self.origin(key),
            reason: reason.to_string(),
        }
    }
}

/// Every key of [`Settings`], with its default shown as text (help texts,
/// the unknown-key check).
pub fn defaults_as_text() -> &'static BTreeMap<String, String> {
    static TEXT: std::sync::OnceLock<BTreeMap<String, String>> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let data = Serialized::defaults(Settings::default())
            .data()
            .unwrap_or_default();
        data.into_values()
            .flat_map(|dict| dict.into_iter())
            .map(|(key, value)| (key, value_text(&value)))
            .collect()
    })
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(_, text) => text.clone(),
        Value::Char(_, c) => c.to_string(),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => n
            .to_u128()
            .map(|n| n.to_string())
            .or_else(|| n.to_i128().map(|n| n.to_string()))
            .unwrap_or_default(),
        Value::Empty(..) => String::new(),
        Value::Array(_, items) => items.iter().map(value_text).collect::<Vec<_>>().join(","),
        Value::Dict(..) => String::new(),
    }
}

/// Loads the settings: defaults, then `config_file`, then `overrides` in
/// order (environment before flags), then checks every value.
pub fn load(config_file: Option<&Path>, overrides: &[Override]) -> Result<Loaded, SettingsError> {
    let mut figment = Figment::new();
    if let Some(path) = config_file {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| SettingsError::File {
            path: shown.clone(),
            reason: err.to_string(),
        })?;
        let file = Toml::string(&text);
        check_file_keys(&shown, &file)?;
        figment = figment.merge(named(file, format!("configuration file {shown}")));
    }
    // Environment first, then flags, whatever order they were collected in.
    let (env, flags): (Vec<&Override>, Vec<&Override>) = overrides
        .iter()
        .partition(|o| matches!(o.origin, Origin::Env(_)));
    for value in env.into_iter().chain(flags) {
        figment = figment.merge(value.clone());
    }
    let settings = Settings::extract(&figment)?;
    // The figment itself is not kept: its values include the URLs' passwords.
    let origins = defaults_as_text()
        .keys()
        .filter_map(|key| {
            let metadata = figment.find_metadata(key)?;
            Some((key.clone(), metadata.name.to_string()))
        })
        .collect();
    let loaded = Loaded { settings, origins };
    loaded.check()?;
    Ok(loaded)
}

/// A provider with another name in its metadata.
fn named<P: Provider>(provider: P, name: String) -> impl Provider {
    struct Named<P> {
        inner: P,
        name: String,
    }
    impl<P: Provider> Provider for Named<P> {
        fn metadata(&self) -> Metadata {
            Metadata::named(self.name.clone())
        }
        fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
            self.inner.data()
        }
    }
    Named {
        inner: provider,
        name,
    }
}

fn check_file_keys(path: &str, file: &figment::providers::Data<Toml>) -> Result<(), SettingsError> {
    let data = file.data().map_err(|err| SettingsError::File {
        path: path.to_owned(),
        reason: err.to_string(),
    })?;
    let known = defaults_as_text();
    for dict in data.values() {
        for key in dict.keys() {
            if !known.contains_key(key) {
                let hint = closest_key(key, known.keys())
                    .map(|k| format!(" (did you mean `{k}`?)"))
                    .unwrap_or_default();
                return Err(SettingsError::UnknownKey {
                    path: path.to_owned(),
                    key: crate::ipn::form::printable_name(key),
                    hint,
                });
            }
        }
    }
    Ok(())
}

/// The known key closest to a mistyped one, if any is close.
fn closest_key<'a>(typed: &str, known: impl Iterator<Item = &'a String>) -> Option<&'a str> {
    known
        .map(|k| (edit_distance(typed, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

fn from_figment(err: &figment::Error) -> SettingsError {
    let key = err.path.join(".");
    let origin = err
        .metadata
        .as_ref()
        .map(|m| m.name.to_string())
        .unwrap_or_else(|| "default".to_owned());
    SettingsError::Invalid {
        key: if key.is_empty() {
            "(settings)".to_owned()
        } else {
            key
        },
        origin,
        reason: err.kind.to_string(),
    }
}

impl Loaded {
    /// The checks parsing cannot make: ranges and values that must be usable
    /// together. Building every part once is the check, so a refusal at
    /// start and a refusal later can never disagree.
    fn check(&self) -> Result<(), SettingsError> {
        let s = &self.settings;
        // Zero counts and zero durations cannot be parsed at all (see
        // `at_least_one` and `PositiveDuration`); what is left are ranges
        // and values that must fit together.
        if s.broker.parking_ttl < Duration::from_secs(1) || s.broker.parking_ttl > MAX_PARKING_TTL {
            return Err(self.invalid(
                "parking-ttl",
                "must be between 1s and 49days (RabbitMQ's largest message TTL)",
            ));
        }
        if s.console.console_idle_timeout > s.console.console_absolute_timeout {
            return Err(self.invalid(
                "console-idle-timeout",
                "must not be longer than console-absolute-timeout",
            ));
        }
        self.database()?;
        self.amqp()?;
        self.intake()?;
        self.console()?;
        Ok(())
    }

    /// The console's settings, when `console-addr` is set (reads
    /// `console-key-file`).
    pub fn console(&self) -> Result<Option<crate::console::ConsoleSettings>, SettingsError> {
        let s = &self.settings;
        let forwarded_header = self.forwarded_header(
            "console-trusted-forwarded-header",
            &s.console.console_trusted_forwarded_header,
        )?;
        if forwarded_header.is_some() && s.console.console_trusted_proxies.0.is_empty() {
            return Err(self.invalid(
                "console-trusted-proxies",
                "must name the proxies (networks or addresses) whose \
                 console-trusted-forwarded-header is believed: without them any client could \
                 claim any address",
            ));
        }
        let Some(addr) = s.console.console_addr else {
            return Ok(None);
        };
        let attempt_key = match s.console.console_key_file.as_deref() {
            Some(path) => self.console_key(path)?,
            None => crate::console::auth::AttemptKey::random().map_err(|err| {
                SettingsError::Unusable {
                    key: "console-key-file",
                    origin: self.origin("console-key-file"),
                    reason: err.to_string(),
                }
            })?,
        };
        Ok(Some(crate::console::ConsoleSettings {
            addr: addr.0,
            insecure_cookies: s.console.console_insecure_cookies,
            session: crate::console::auth::SessionPolicy {
                idle: s.console.console_idle_timeout.get(),
                absolute: s.console.console_absolute_timeout.get(),
            },
            report_timezone: s.finance.report_timezone.0,
            source: SourcePolicy {
                forwarded_header,
                trusted_proxies: s.console.console_trusted_proxies.0.clone(),
                allow: Vec::new(),
            },
            attempt_key,
            login: crate::console::throttle::LoginPolicy::default(),
            four_eyes: s.finance.four_eyes_amount.0.clone(),
        }))
    }

    /// The key of `console-key-file`: its bytes, trimmed, at least 16.
    fn console_key(&self, path: &Path) -> Result<crate::console::auth::AttemptKey, SettingsError> {
        let unusable = |reason: String| SettingsError::Unusable {
            key: "console-key-file",
            origin: self.origin("console-key-file"),
            reason,
        };
        let text = zeroize::Zeroizing::new(
            std::fs::read(path)
                .map_err(|err| unusable(format!("cannot read {}: {err}", path.display())))?,
        );
        let key = text.trim_ascii();
        if key.len() < 16 {
            return Err(unusable(format!(
                "{} holds fewer than 16 bytes: write a long random key (`openssl rand -hex 32`)",
                path.display()
            )));
        }
        Ok(crate::console::auth::AttemptKey::new(key))
    }

    /// A forwarded header's name as given under `key`, lower-cased; none
    /// when not given or blank.
    fn forwarded_header(
        &self,
        key: &'static str,
        given: &Option<String>,
    ) -> Result<Option<String>, SettingsError> {
        given
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| {
                axum::http::HeaderName::try_from(h.to_ascii_lowercase())
                    .map(|name| name.as_str().to_owned())
                    .map_err(|_| self.invalid(key, "not a header name"))
            })
            .transpose()
    }

    /// How to reach PostgreSQL.
    pub fn database(&self) -> Result<DatabaseSettings, SettingsError> {
        let s = &self.settings;
        let config = s
            .database
            .database_url
            .expose()
            .parse::<tokio_postgres::Config>()
            .map_err(|_| self.invalid("database-url", "not a postgres:// URL"))?;
        if config.get_dbname().is_none_or(str::is_empty) {
            return Err(self.invalid(
                "database-url",
                "names no database (postgres://host:5432/DBNAME)",
            ));
        }
        Ok(DatabaseSettings {
            url: s.database.database_url.clone(),
            schema: if s.database.auto_migrate {
                SchemaPolicy::Migrate {
                    create_database: s.database.create_db,
                }
            } else {
                SchemaPolicy::ConnectOnly {
                    create_database: s.database.create_db,
                }
            },
            pool_size: s.database.db_pool_size.get(),
            acquire_timeout: s.database.db_acquire_timeout.get(),
            statement_timeout: s.database.db_statement_timeout.get(),
            lock_timeout: s.database.db_lock_timeout.get(),
            currencies: self.currencies(),
        })
    }

    /// The currency table (`allow-currency`): ISO 4217 and the currencies
    /// the operator allowed, with their exponents. Every part that reads a
    /// currency code gets this one value (the pipeline, the store through
    /// [`Loaded::database`], the commands and the tools), so they all read
    /// an amount the same way.
    pub fn currencies(&self) -> Currencies {
        self.settings.database.allow_currency.0.clone()
    }

    /// How to reach RabbitMQ, and the names there.
    pub fn amqp(&self) -> Result<AmqpSettings, SettingsError> {
        let s = &self.settings;
        let topology = Topology::new(
            &s.broker.amqp_queue,
            s.broker.retry_delays.clone(),
            s.broker.delivery_limit.get(),
        )
        .map_err(|err| self.invalid("amqp-queue", err))?
        .with_parking_ttl(s.broker.parking_ttl);
        if s.broker.amqp_heartbeat.get() < std::time::Duration::from_secs(2) {
            return Err(self.invalid(
                "amqp-heartbeat",
                "must be at least 2s (heartbeats go at half this interval, in whole seconds)",
            ));
        }
        AmqpSettings::new(
            s.broker.amqp_url.clone(),
            topology,
            s.broker.publish_timeout.get(),
        )
        .map(|amqp| amqp.with_heartbeat(s.broker.amqp_heartbeat.get()))
        .map_err(|err| self.invalid("amqp-url", err))
    }

    /// When the sweep raises what never happened.
    pub fn sweep_policy(&self) -> SweepPolicy {
        let s = &self.settings;
        SweepPolicy {
            stale_order_age: chrono::Duration::from_std(s.settlement.stale_order_age.get())
                .unwrap_or(chrono::Duration::MAX),
            settlement_days: chrono::Duration::days(i64::from(s.settlement.settlement_days.get())),
            renewal_grace: chrono::Duration::from_std(s.settlement.renewal_grace.get())
                .unwrap_or(chrono::Duration::MAX),
        }
    }

    /// How the worker consumes.
    pub fn worker(&self) -> Result<WorkerSettings, SettingsError> {
        let s = &self.settings;
        Ok(WorkerSettings {
            amqp: self.amqp()?,
            prefetch: s.worker.prefetch.get(),
            concurrency: s.worker.concurrency.get(),
            batch_size: s.worker.batch_size.get(),
            batch_wait: s.worker.batch_wait,
            orphan_window: s.worker.orphan_window,
            parking_ttl: s.broker.parking_ttl,
            shutdown_deadline: s.operations.shutdown_deadline,
            close_timeout: s.operations.close_timeout.get(),
            ack_settle_grace: s.operations.ack_settle_grace,
        })
    }

    /// How the intake listens and answers.
    pub fn intake(&self) -> Result<IntakeSettings, SettingsError> {
        let s = &self.settings;
        if !s.intake.intake_path.starts_with('/') {
            return Err(self.invalid("intake-path", "must start with `/`"));
        }
        if !s.intake.lcn_path.starts_with('/') {
            return Err(self.invalid("lcn-path", "must start with `/`"));
        }
        let bare = |path: &str| path.trim_end_matches('/').to_owned();
        if bare(&s.intake.lcn_path) == bare(&s.intake.intake_path) {
            return Err(self.invalid(
                "lcn-path",
                format!(
                    "must differ from intake-path `{}`: licence change notifications have a URL of their own",
                    s.intake.intake_path
                ),
            ));
        }
        let forwarded_header = self.forwarded_header(
            "trusted-forwarded-header",
            &s.intake.trusted_forwarded_header,
        )?;
        if forwarded_header.is_some() && s.intake.trusted_proxies.0.is_empty() {
            return Err(self.invalid(
                "trusted-proxies",
                "must name the proxies (networks or addresses) whose trusted-forwarded-header is \
                 believed: without them any client could claim an allowed address",
            ));
        }
        Ok(IntakeSettings {
            path: s.intake.intake_path.clone(),
            lcn_path: s.intake.lcn_path.clone(),
            verify_at_edge: s.intake.edge_verify,
            receipt: s.intake.receipt_format,
            source: SourcePolicy {
                forwarded_header,
                trusted_proxies: s.intake.trusted_proxies.0.clone(),
                allow: s.intake.allow_networks.0.clone(),
            },
            limits: self.limits(),
            confirm_timeout: s.intake.confirm_timeout.get(),
            connections: ConnectionLimits {
                header_timeout: s.intake.intake_header_timeout.get(),
                body_timeout: s.intake.intake_body_timeout.get(),
                idle_timeout: s.intake.intake_idle_timeout.get(),
                max_connections: s.intake.intake_max_connections.get(),
                max_connections_per_client: s.intake.intake_max_connections_per_client.get(),
            },
        })
    }

    pub fn limits(&self) -> FormLimits {
        FormLimits {
            max_body_bytes: self.settings.notifications.max_body_bytes.get(),
            ..FormLimits::default()
        }
    }

    pub fn signatures(&self) -> SignaturePolicy {
        SignaturePolicy {
            allow_md5: self.settings.notifications.allow_md5,
            require: self.settings.notifications.require_algorithm.0,
        }
    }

    /// The processor's keys, read from `key-file`.
    pub fn keys(&self) -> Result<KeyRing, SettingsError> {
        let path =
            self.settings
                .notifications
                .key_file
                .as_deref()
                .ok_or(SettingsError::Missing {
                    key: "key-file",
                    env: "IPN_KEYS_FILE",
                })?;
        crate::keys::read_key_ring(path).map_err(|err| SettingsError::Unusable {
            key: "key-file",
            origin: self.origin("key-file"),
            reason: err.to_string(),
        })
    }

    /// The processor's API client settings, when `vendor-code` is set
    /// (reads `api-key-file`, which is then required). None: the API is
    /// not used.
    pub fn processor_api(&self) -> Result<Option<crate::processor_api::ApiConfig>, SettingsError> {
        let api = &self.settings.processor_api;
        // An empty code is as good as none (a file's `vendor-code = ""`).
        let Some(vendor_code) = api.vendor_code.as_deref().filter(|c| !c.trim().is_empty()) else {
            return Ok(None);
        };
        let path = api.api_key_file.as_deref().ok_or(SettingsError::Missing {
            key: "api-key-file",
            env: "IPN_API_KEY_FILE",
        })?;
        let credentials = crate::processor_api::ApiCredentials::from_key_file(vendor_code, path)
            .map_err(|err| SettingsError::Unusable {
                key: "api-key-file",
                origin: self.origin("api-key-file"),
                reason: err.reason,
            })?;
        Ok(Some(crate::processor_api::ApiConfig::new(
            api.api_url.clone(),
            credentials,
            api.api_rate,
            api.api_timeout.get(),
        )))
    }

    /// The keys that seal bodies in the broker, read from `seal-key-file`.
    /// Required by whatever puts a sealed body on the broker (`serve`,
    /// `intake`, `publish`, `parked requeue`): there is no unsealed mode,
    /// and the keys are never derived from the processor's.
    pub fn sealer(&self) -> Result<Sealer, SettingsError> {
        let path = self
            .settings
            .broker
            .seal_key_file
            .as_deref()
            .ok_or(SettingsError::Missing {
                key: "seal-key-file",
                env: "IPN_SEAL_KEYS_FILE",
            })?;
        crate::keys::read_seal_keys(path).map_err(|err| SettingsError::Unusable {
            key: "seal-key-file",
            origin: self.origin("seal-key-file"),
            reason: err.to_string(),
        })
    }

    /// The seal keys when `seal-key-file` is set (the console, which can
    /// do without them).
    pub fn sealer_if_set(&self) -> Result<Option<Sealer>, SettingsError> {
        match self.settings.broker.seal_key_file {
            Some(_) => self.sealer().map(Some),
            None => Ok(None),
        }
    }

    /// The pseudonym key, read from `pseudonym-key-file` when one is set.
    pub fn pseudonym_key(&self) -> Result<Option<PseudonymKey>, SettingsError> {
        let Some(path) = self.settings.notifications.pseudonym_key_file.as_deref() else {
            return Ok(None);
        };
        let unusable = |reason: String| SettingsError::Unusable {
            key: "pseudonym-key-file",
            origin: self.origin("pseudonym-key-file"),
            reason,
        };
        let text = std::fs::read(path)
            .map_err(|err| unusable(format!("cannot read {}: {err}", path.display())))?;
        let key = text.trim_ascii();
        if key.is_empty() {
            return Err(unusable(format!("{} is empty", path.display())));
        }
        Ok(Some(PseudonymKey::new(key)))
    }

    /// Everything needed to judge a notification (reads the key files).
    pub fn pipeline(&self) -> Result<PipelineConfig, SettingsError> {
        self.pipeline_with_keys(self.keys()?)
    }

    /// Like [`Loaded::pipeline`], with keys from elsewhere (the demo).
    pub fn pipeline_with_keys(&self, keys: KeyRing) -> Result<PipelineConfig, SettingsError> {
        Ok(PipelineConfig {
            keys,
            signatures: self.signatures(),
            limits: self.limits(),
            pseudonym_key: self.pseudonym_key()?,
            reconcile: ReconcilePolicy {
                apply_test_orders: self.settings.notifications.apply_test_orders,
                order_source: self.settings.notifications.order_source,
                processor_time_zone: crate::domain::event_time::ProcessorTimeZone(
                    self.settings.notifications.processor_timezone.0,
                ),
            },
            expected_fields: self.settings.notifications.expected_fields.0.clone(),
            currencies: self.currencies(),
        })
    }
}

impl Settings {
    /// These settings as if they had been loaded (tests, the demo): every
    /// origin is `default`.
    pub fn loaded(self) -> Result<Loaded, SettingsError> {
        let loaded = Loaded {
            settings: self,
            origins: BTreeMap::new(),
        };
        loaded.check()?;
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(key: &'static str, name: &'static str, value: &str) -> Override {
        Override {
            key,
            value: OverrideValue::Plain(value.to_owned()),
            origin: Origin::Env(name),
        }
    }

    fn flag(key: &'static str, value: &str) -> Override {
        Override {
            key,
            value: OverrideValue::Plain(value.to_owned()),
            origin: Origin::Flag(key),
        }
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write");
        file
    }

    #[test]
    fn defaults_need_nothing() {
        let loaded = load(None, &[]).expect("defaults load");
        assert_eq!(loaded.settings.worker.prefetch.get(), 256);
        assert_eq!(
            loaded.settings.broker.retry_delays.to_string(),
            "5s,30s,2m,10m,1h"
        );
        assert_eq!(loaded.origin("prefetch"), "default");
    }

    #[test]
    fn flags_win_over_the_environment_which_wins_over_the_file() {
        let config = file("prefetch = 5\nconcurrency = 3\nhttp-addr = \"127.0.0.1:1\"\n");
        let loaded = load(
            Some(config.path()),
            &[
                flag("prefetch", "7"),
                env("prefetch", "IPN_PREFETCH", "6"),
                env("concurrency", "IPN_CONCURRENCY", "4"),
            ],
        )
        .expect("loads");
        assert_eq!(loaded.settings.worker.prefetch.get(), 7);
        assert_eq!(loaded.settings.worker.concurrency.get(), 4);
        assert_eq!(loaded.settings.operations.http_addr.port(), 1);
        assert_eq!(loaded.origin("prefetch"), "--prefetch");
        assert_eq!(
            loaded.origin("concurrency"),
            "environment variable IPN_CONCURRENCY"
        );
    }

    #[test]
    fn durations_accept_the_usual_forms() {
        for (text, secs) in [("30s", 30), ("2m", 120), ("1h 30m", 5400), ("1500ms", 1)] {
            let loaded = load(None, &[flag("shutdown-deadline", text)]).expect(text);
            assert_eq!(
                loaded.settings.operations.shutdown_deadline.as_secs(),
                secs,
                "{text}"
            );
        }
    }

    #[test]
    fn a_bad_value_names_the_key_and_the_variable_it_came_from() {
        let err = load(
            None,
            &[env("shutdown-deadline", "IPN_SHUTDOWN_DEADLINE", "soon")],
        )
        .expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("shutdown-deadline"), "{text}");
        assert!(text.contains("IPN_SHUTDOWN_DEADLINE"), "{text}");

        let err = load(None, &[flag("max-body-bytes", "0")]).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "invalid `max-body-bytes` (from --max-body-bytes): must be at least 1"
        );
    }

    #[test]
    fn the_file_refuses_unknown_keys_with_a_suggestion_and_bad_values_with_its_name() {
        let config = file("htp-addr = \"127.0.0.1:1\"\n");
        let err = load(Some(config.path()), &[]).expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("unknown key `htp-addr`"), "{text}");
        assert!(text.contains("did you mean `http-addr`?"), "{text}");

        let config = file("prefetch = \"many\"\n");
        let text = load(Some(config.path()), &[])
            .expect_err("refused")
            .to_string();
        assert!(text.contains("`prefetch`"), "{text}");
        assert!(text.contains("configuration file"), "{text}");

        let text = load(Some(Path::new("/nonexistent/ipn.toml")), &[])
            .expect_err("refused")
            .to_string();
        assert!(text.contains("/nonexistent/ipn.toml"), "{text}");
    }

    /// Issue 23, item 3: a forwarded header is believed only from named
    /// proxies; naming the header without them is refused at start.
    #[test]
    fn a_forwarded_header_needs_its_proxies() {
        let intake = |overrides: &[Override]| load(None, overrides).and_then(|l| l.intake());
        let err =
            intake(&[flag("trusted-forwarded-header", "x-forwarded-for")]).expect_err("no proxies");
        assert!(
            err.to_string()
                .starts_with("invalid `trusted-proxies` (from default): must name the proxies"),
            "{err}"
        );
        let settings = intake(&[
            flag("trusted-forwarded-header", "X-Forwarded-For"),
            env(
                "trusted-proxies",
                "IPN_TRUSTED_PROXIES",
                "10.0.0.5, 192.168.0.0/16",
            ),
        ])
        .expect("with proxies");
        assert_eq!(
            settings.source.forwarded_header.as_deref(),
            Some("x-forwarded-for")
        );
        assert_eq!(
            settings.source.trusted_proxies,
            crate::intake::parse_allow_list("10.0.0.5,192.168.0.0/16").expect("nets")
        );
    }

    #[test]
    fn the_lcn_path_is_its_own_and_starts_with_a_slash() {
        let intake = |overrides: &[Override]| load(None, overrides).and_then(|l| l.intake());
        let settings = intake(&[]).expect("defaults");
        assert_eq!(
            (settings.path.as_str(), settings.lcn_path.as_str()),
            ("/ipn", "/lcn")
        );
        let settings = intake(&[env("lcn-path", "IPN_LCN_PATH", "/hooks/lcn")]).expect("set");
        assert_eq!(settings.lcn_path, "/hooks/lcn");
        let err = intake(&[flag("lcn-path", "lcn")]).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "invalid `lcn-path` (from --lcn-path): must start with `/`"
        );
        for (ipn, lcn) in [("/ipn", "/ipn"), ("/ipn", "/ipn/"), ("/hooks/", "/hooks")] {
            let err = intake(&[flag("intake-path", ipn), flag("lcn-path", lcn)])
                .expect_err("the same path twice");
            assert!(
                err.to_string().contains("must differ from intake-path"),
                "{err}"
            );
        }
    }

    #[test]
    fn switches_accept_what_the_environment_used_to() {
        for (text, expected) in [("true", true), ("1", true), ("yes", true), ("false", false)] {
            let loaded = load(None, &[env("allow-md5", "IPN_ALLOW_MD5", text)]).expect(text);
            assert_eq!(loaded.settings.notifications.allow_md5, expected, "{text}");
        }
    }

    #[test]
    fn the_intake_limits_have_defaults_and_refuse_zero() {
        let limits = load(None, &[])
            .expect("defaults")
            .intake()
            .expect("intake")
            .connections;
        assert_eq!(limits.header_timeout, Duration::from_secs(10));
        assert_eq!(limits.body_timeout, Duration::from_secs(30));
        assert_eq!(limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(limits.max_connections, 512);
        let loaded = load(
            None,
            &[
                env("intake-header-timeout", "IPN_INTAKE_HEADER_TIMEOUT", "2s"),
                flag("intake-max-connections", "3"),
            ],
        )
        .expect("loads");
        let limits = loaded.intake().expect("intake").connections;
        assert_eq!(limits.header_timeout, Duration::from_secs(2));
        assert_eq!(limits.max_connections, 3);
        for (key, value) in [
            ("intake-header-timeout", "0s"),
            ("intake-body-timeout", "0s"),
            ("intake-idle-timeout", "0s"),
            ("intake-max-connections", "0"),
        ] {
            let err = load(None, &[flag(key, value)]).expect_err(key).to_string();
            assert!(err.contains(&format!("`{key}`")), "{err}");
        }
    }

    #[test]
    fn a_required_algorithm_is_sha3_or_sha256_never_md5() {
        let loaded = load(None, &[]).expect("defaults");
        assert_eq!(loaded.signatures().require, None);
        assert_eq!(defaults_as_text()["require-algorithm"], "none");
        for (text, expected) in [
            ("sha3-256", Some(Algorithm::Sha3_256)),
            ("sha256", Some(Algorithm::Sha256)),
            ("none", None),
        ] {
            let loaded = load(
                None,
                &[env("require-algorithm", "IPN_REQUIRE_ALGORITHM", text)],
            )
            .expect(text);
            assert_eq!(loaded.signatures().require, expected, "{text}");
        }
        let err = load(None, &[flag("require-algorithm", "md5")])
            .expect_err("md5 refused")
            .to_string();
        assert!(err.contains("--require-algorithm"), "{err}");
        assert!(err.contains("MD5 cannot be required"), "{err}");
        let err = load(None, &[flag("require-algorithm", "sha1")])
            .expect_err("sha1 refused")
            .to_string();
        assert!(err.contains("use sha3-256, sha256 or none"), "{err}");
        let config = file("require-algorithm = \"sha3-256\"\nallow-md5 = true\n");
        let loaded = load(Some(config.path()), &[]).expect("file");
        assert_eq!(
            loaded.signatures(),
            SignaturePolicy {
                allow_md5: true,
                require: Some(Algorithm::Sha3_256)
            }
        );
    }

    #[test]
    fn lists_come_as_comma_strings_or_as_toml_lists() {
        let config =
            file("allow-networks = [\"10.0.0.0/8\", \"127.0.0.1\"]\nretry-delays = \"1s,2s\"\n");
        let loaded = load(Some(config.path()), &[]).expect("loads");
        assert_eq!(loaded.settings.intake.allow_networks.0.len(), 2);
        assert_eq!(loaded.settings.broker.retry_delays.delays().len(), 2);
        let loaded = load(None, &[flag("allow-networks", "10.0.0.0/8,127.0.0.1")]).expect("loads");
        assert_eq!(loaded.settings.intake.allow_networks.0.len(), 2);
    }

    #[test]
    fn debug_output_hides_url_passwords() {
        let loaded = load(
            None,
            &[
                flag("database-url", "postgres://app:S3CRET-PW@db/x"),
                flag("amqp-url", "amqp://app:S3CRET-PW@mq:5672/%2f"),
            ],
        )
        .expect("loads");
        let shown = format!("{loaded:?}");
        assert!(!shown.contains("S3CRET-PW"), "{shown}");
        assert_eq!(
            loaded.database().expect("database").url.redacted(),
            "postgres://app:***@db/x"
        );
    }

    #[test]
    fn the_example_file_loads_and_shows_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/example.toml");
        let loaded = load(Some(&path), &[]).expect("deploy/example.toml loads");
        assert_eq!(loaded.settings.operations.log_format, LogFormat::Json);
        let text = std::fs::read_to_string(&path).expect("example");
        for key in defaults_as_text().keys() {
            let shown = text.lines().any(|line| {
                let line = line.trim_start_matches(['#', ' ']);
                line.starts_with(&format!("{key} ="))
            });
            assert!(shown, "deploy/example.toml does not mention `{key}`");
        }
    }

    #[test]
    fn the_parking_ttl_defaults_to_two_weeks_and_stays_within_rabbitmqs_limit() {
        let loaded = load(None, &[]).expect("defaults");
        assert_eq!(
            loaded.settings.broker.parking_ttl,
            Duration::from_secs(14 * 86_400)
        );
        assert_eq!(
            loaded.worker().expect("worker").parking_ttl,
            Duration::from_secs(14 * 86_400)
        );
        assert_eq!(defaults_as_text()["parking-ttl"], "14days");
        let loaded = load(None, &[env("parking-ttl", "IPN_PARKING_TTL", "3days")]).expect("3 days");
        assert_eq!(
            loaded.settings.broker.parking_ttl,
            Duration::from_secs(3 * 86_400)
        );
        assert!(u128::from(u32::MAX) >= MAX_PARKING_TTL.as_millis());
        for bad in ["0s", "50days", "never"] {
            let err = load(None, &[flag("parking-ttl", bad)]).expect_err(bad);
            assert!(err.to_string().contains("parking-ttl"), "{err}");
        }
    }

    #[test]
    fn allowed_currencies_come_with_their_exponents() {
        let loaded = load(
            None,
            &[env("allow-currency", "IPN_ALLOW_CURRENCY", "xyz=3, ABC=0")],
        )
        .expect("loads");
        let shown: Vec<(String, u32)> = loaded
            .currencies()
            .allowed()
            .map(|currency| (currency.to_string(), currency.exponent()))
            .collect();
        assert_eq!(shown, [("XYZ".to_owned(), 3), ("ABC".to_owned(), 0)]);
        // The table travels to the parts that read amounts.
        let xyz = loaded.currencies().currency("XYZ").expect("code");
        assert_eq!(xyz.exponent(), 3);
        assert_eq!(
            loaded.database().expect("database").currencies,
            loaded.currencies()
        );
        assert_eq!(
            loaded
                .pipeline_with_keys(crate::ipn::KeyRing::single(b"k"))
                .expect("pipeline")
                .currencies,
            loaded.currencies()
        );
        let config = file("allow-currency = [\"XYZ=2\"]\n");
        let loaded = load(Some(config.path()), &[]).expect("loads");
        assert_eq!(loaded.currencies().allowed().count(), 1);
        assert_eq!(
            loaded
                .currencies()
                .currency("xyz")
                .expect("code")
                .exponent(),
            2
        );
        for (bad, says) in [
            ("XYZ", "CODE=EXPONENT"),
            ("XYZ=two", "CODE=EXPONENT"),
            ("XY=2", "3 characters"),
            ("EUR=3", "ISO 4217"),
            ("XYZ=7", "0 to 4"),
            ("XYZ=2,XYZ=3", "twice"),
        ] {
            let err = load(None, &[flag("allow-currency", bad)]).expect_err(bad);
            let text = err.to_string();
            assert!(
                text.contains("allow-currency") && text.contains(says),
                "{text}"
            );
        }
    }

    #[test]
    fn settlement_and_sweep_settings_have_defaults_and_refuse_what_cannot_work() {
        let text = defaults_as_text();
        assert_eq!(text["settlement-tolerance"], "0");
        assert_eq!(text["settlement-days"], "7");
        assert_eq!(text["stale-order-age"], "3days");
        assert_eq!(text["renewal-grace"], "3days");
        assert_eq!(text["sweep-interval"], "5m");
        let loaded = load(None, &[]).expect("defaults");
        let policy = loaded.sweep_policy();
        assert_eq!(policy.stale_order_age, chrono::Duration::days(3));
        assert_eq!(policy.settlement_days, chrono::Duration::days(7));
        assert_eq!(policy.renewal_grace, chrono::Duration::days(3));
        let config = file(
            "settlement-tolerance = \"0.01\"\nsettlement-days = 10\nstale-order-age = \"36h\"\nrenewal-grace = \"5days\"\n",
        );
        let loaded = load(Some(config.path()), &[flag("sweep-interval", "1m")]).expect("loads");
        let eur = crate::domain::Currency::iso("EUR").expect("EUR");
        assert_eq!(
            loaded
                .settings
                .settlement
                .settlement_tolerance
                .0
                .minor_in(eur),
            1
        );
        assert_eq!(
            loaded.sweep_policy().settlement_days,
            chrono::Duration::days(10)
        );
        assert_eq!(
            loaded.sweep_policy().stale_order_age,
            chrono::Duration::hours(36)
        );
        assert_eq!(
            loaded.sweep_policy().renewal_grace,
            chrono::Duration::days(5)
        );
        let from_env =
            load(None, &[env("renewal-grace", "IPN_RENEWAL_GRACE", "12h")]).expect("loads");
        assert_eq!(
            from_env.sweep_policy().renewal_grace,
            chrono::Duration::hours(12)
        );
        assert_eq!(
            loaded.settings.settlement.sweep_interval.get(),
            Duration::from_secs(60)
        );
        for (key, value, says) in [
            ("settlement-tolerance", "-0.01", "non-negative decimal"),
            ("settlement-tolerance", "0.0000001", "at most 6 decimals"),
            ("settlement-days", "0", "at least 1"),
            ("stale-order-age", "0s", "longer than 0s"),
            ("renewal-grace", "0s", "longer than 0s"),
            ("sweep-interval", "0s", "longer than 0s"),
        ] {
            let err = load(None, &[flag(key, value)]).expect_err(key).to_string();
            assert!(
                err.contains(key) && err.contains(says),
                "{key}={value}: {err}"
            );
        }
    }

    #[test]
    fn journal_accounts_come_as_a_list_and_keep_the_defaults() {
        use crate::domain::journal::Account;
        let loaded = load(
            None,
            &[env(
                "journal-accounts",
                "IPN_JOURNAL_ACCOUNTS",
                "clearing=1150 Processor clearing, fees=6150 Card fees",
            )],
        )
        .expect("loads");
        let accounts = &loaded.settings.finance.journal_accounts.0;
        assert_eq!(accounts.name(Account::Clearing), "1150 Processor clearing");
        assert_eq!(accounts.name(Account::Fees), "6150 Card fees");
        assert_eq!(accounts.name(Account::Revenue), "Sales revenue");
        let config = file("journal-accounts = [\"revenue=4000 Sales\"]\n");
        let loaded = load(Some(config.path()), &[]).expect("file");
        assert_eq!(
            loaded
                .settings
                .finance
                .journal_accounts
                .0
                .name(Account::Revenue),
            "4000 Sales"
        );
        let err = load(None, &[flag("journal-accounts", "till=1000")])
            .expect_err("unknown account")
            .to_string();
        assert!(
            err.contains("--journal-accounts") && err.contains("clearing, revenue"),
            "{err}"
        );
        assert_eq!(defaults_as_text()["gauge-refresh-interval"], "15s");
        let err = load(None, &[flag("gauge-refresh-interval", "0s")])
            .expect_err("zero")
            .to_string();
        assert!(err.contains("gauge-refresh-interval"), "{err}");
    }

    #[test]
    fn the_console_is_off_by_default_and_a_port_alone_binds_loopback() {
        let loaded = load(None, &[]).expect("defaults");
        assert_eq!(loaded.console().expect("console"), None);
        assert_eq!(defaults_as_text()["console-idle-timeout"], "30m");
        assert_eq!(defaults_as_text()["console-absolute-timeout"], "12h");
        let loaded = load(
            None,
            &[
                env("console-addr", "IPN_CONSOLE_ADDR", "8090"),
                flag("console-insecure-cookies", "true"),
            ],
        )
        .expect("loads");
        let console = loaded.console().expect("console").expect("console on");
        assert_eq!(console.addr, SocketAddr::from(([127, 0, 0, 1], 8090)));
        assert!(console.insecure_cookies);
        assert_eq!(console.session.idle, Duration::from_secs(1800));
        let config = file("console-addr = \"0.0.0.0:8443\"\n");
        let loaded = load(Some(config.path()), &[]).expect("file");
        assert_eq!(
            loaded.console().expect("console").map(|c| c.addr),
            Some(SocketAddr::from(([0, 0, 0, 0], 8443)))
        );
        for (key, value, says) in [
            ("console-addr", "somewhere", "HOST:PORT"),
            ("console-idle-timeout", "0s", "longer than 0s"),
            ("console-idle-timeout", "13h", "console-absolute-timeout"),
        ] {
            let err = load(None, &[flag(key, value)])
                .expect_err(value)
                .to_string();
            assert!(err.contains(key) && err.contains(says), "{err}");
        }
    }

    /// Issue 23, item 2: the console believes a forwarded header only from
    /// the proxies named, naming the header without them is refused at
    /// start, and its attempts' digests are keyed with its own key file.
    #[test]
    fn the_console_names_its_proxies_and_keys_its_attempts() {
        let err = load(
            None,
            &[
                flag("console-addr", "8090"),
                flag("console-trusted-forwarded-header", "x-forwarded-for"),
            ],
        )
        .expect_err("no proxies")
        .to_string();
        assert!(
            err.starts_with(
                "invalid `console-trusted-proxies` (from default): must name the proxies"
            ),
            "{err}"
        );
        let key = tempfile::NamedTempFile::new().expect("key file");
        std::fs::write(key.path(), "a console key of 32 characters..\n").expect("write");
        let path = key.path().to_str().expect("utf-8 path");
        let loaded = load(
            None,
            &[
                flag("console-addr", "8090"),
                env(
                    "console-trusted-forwarded-header",
                    "IPN_CONSOLE_TRUSTED_FORWARDED_HEADER",
                    "X-Forwarded-For",
                ),
                env(
                    "console-trusted-proxies",
                    "IPN_CONSOLE_TRUSTED_PROXIES",
                    "10.0.0.0/8, 192.0.2.1",
                ),
                env("console-key-file", "IPN_CONSOLE_KEY_FILE", path),
            ],
        )
        .expect("loads");
        let console = loaded.console().expect("console").expect("console on");
        assert_eq!(
            console.source.forwarded_header.as_deref(),
            Some("x-forwarded-for")
        );
        assert_eq!(console.source.trusted_proxies.len(), 2);
        assert_eq!(
            console.attempt_key,
            crate::console::auth::AttemptKey::new("a console key of 32 characters..")
        );
        // The same file, the same key: limits shared by every console.
        let again = loaded.console().expect("console").expect("console on");
        assert_eq!(again.attempt_key, console.attempt_key);
        // Without a file, a random key at each start.
        let random = load(None, &[flag("console-addr", "8090")]).expect("loads");
        assert_ne!(
            random.console().expect("console").map(|c| c.attempt_key),
            random.console().expect("console").map(|c| c.attempt_key)
        );
        std::fs::write(key.path(), "short\n").expect("write");
        let err = load(
            None,
            &[flag("console-addr", "8090"), flag("console-key-file", path)],
        )
        .expect_err("short key")
        .to_string();
        assert!(
            err.contains("console-key-file") && err.contains("fewer than 16 bytes"),
            "{err}"
        );
        assert!(!err.contains("short"), "the key shows: {err}");
    }

    #[test]
    fn the_schema_policy_follows_auto_migrate_and_create_db() {
        let policy = |overrides: &[Override]| {
            load(None, overrides)
                .expect("loads")
                .database()
                .expect("database")
                .schema
        };
        assert_eq!(
            policy(&[]),
            SchemaPolicy::Migrate {
                create_database: false
            }
        );
        assert_eq!(
            policy(&[flag("create-db", "true")]),
            SchemaPolicy::Migrate {
                create_database: true
            }
        );
        let kept = policy(&[flag("auto-migrate", "false"), flag("create-db", "true")]);
        assert_eq!(
            kept,
            SchemaPolicy::ConnectOnly {
                create_database: true
            }
        );
        assert!(kept.creates_database());
        // Without migrations at start, serve and console require the
        // schema, and still create a missing database as asked.
        assert_eq!(
            kept.require_unless_migrating(),
            SchemaPolicy::RequireSchema {
                create_database: true
            }
        );
        assert!(!SchemaPolicy::EXISTING.creates_database());
        assert_eq!(
            policy(&[]).require_unless_migrating(),
            SchemaPolicy::Migrate {
                create_database: false
            }
        );
    }

    #[test]
    fn zero_counts_and_durations_cannot_be_parsed_and_the_refusal_names_the_key() {
        let counts = [
            "db-pool-size",
            "max-body-bytes",
            "delivery-limit",
            "prefetch",
            "concurrency",
            "batch-size",
            "intake-max-connections",
            "settlement-days",
        ];
        for key in counts {
            let err = load(None, &[flag(key, "0")]).expect_err(key).to_string();
            assert_eq!(
                err,
                format!("invalid `{key}` (from --{key}): must be at least 1")
            );
            let config = file(&format!("{key} = 0\n"));
            let err = load(Some(config.path()), &[]).expect_err(key).to_string();
            assert!(
                err.contains(&format!("invalid `{key}` (from configuration file"))
                    && err.ends_with("must be at least 1"),
                "{err}"
            );
        }
        let durations = [
            "db-acquire-timeout",
            "db-statement-timeout",
            "db-lock-timeout",
            "publish-timeout",
            "amqp-heartbeat",
            "recovery-stall",
            "confirm-timeout",
            "intake-header-timeout",
            "intake-body-timeout",
            "intake-idle-timeout",
            "close-timeout",
            "gauge-refresh-interval",
            "stale-order-age",
            "renewal-grace",
            "sweep-interval",
            "console-idle-timeout",
            "console-absolute-timeout",
            "api-timeout",
        ];
        for key in durations {
            let err = load(None, &[flag(key, "0s")]).expect_err(key).to_string();
            assert_eq!(
                err,
                format!("invalid `{key}` (from --{key}): must be longer than 0s")
            );
        }
        // Too large for its type: refused, named, not wrapped around.
        let err = load(None, &[flag("prefetch", "65536")])
            .expect_err("too large")
            .to_string();
        assert!(
            err.contains("`prefetch`") && err.contains("too large"),
            "{err}"
        );
    }

    #[test]
    fn the_report_timezone_is_an_iana_name_utc_by_default() {
        let loaded = load(None, &[]).expect("defaults");
        assert_eq!(
            loaded.settings.finance.report_timezone.0,
            chrono_tz::Tz::UTC
        );
        let loaded = load(
            None,
            &[env(
                "report-timezone",
                "IPN_REPORT_TIMEZONE",
                "Europe/Bucharest",
            )],
        )
        .expect("a zone");
        assert_eq!(
            loaded.settings.finance.report_timezone.0,
            chrono_tz::Europe::Bucharest
        );
        let config = file("report-timezone = \"America/New_York\"\n");
        let loaded = load(Some(config.path()), &[]).expect("from the file");
        assert_eq!(
            loaded.settings.finance.report_timezone.0,
            chrono_tz::America::New_York
        );
        for (bad, origin) in [
            (
                env("report-timezone", "IPN_REPORT_TIMEZONE", "Europe/Atlantis"),
                "IPN_REPORT_TIMEZONE",
            ),
            (flag("report-timezone", "+02:00"), "--report-timezone"),
            (flag("report-timezone", ""), "--report-timezone"),
        ] {
            let err = load(None, &[bad]).expect_err("refused").to_string();
            assert!(
                err.contains("`report-timezone`") && err.contains(origin) && err.contains("IANA"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_sections_read_the_flat_keys_they_write() {
        let figment = Figment::from(Serialized::defaults(Settings::default()));
        let settings = Settings::extract(&figment).expect("defaults read back");
        let written = Serialized::defaults(&settings).data().expect("data");
        let text: BTreeMap<String, String> = written
            .into_values()
            .flat_map(|dict| dict.into_iter())
            .map(|(key, value)| (key, value_text(&value)))
            .collect();
        assert_eq!(&text, defaults_as_text());
        assert!(text.keys().all(|key| !key.contains('.')), "{text:?}");
        // One per setting: the count moves with every key added (68 with
        // `console-trusted-forwarded-header`, `console-trusted-proxies`,
        // `console-key-file`, `seal-key-file`, `audit-interval` and
        // `four-eyes-amount`; 73 with `api-url`, `vendor-code`,
        // `api-key-file`, `api-rate` and `api-timeout`), so a key that a
        // section failed to flatten shows here.
        assert_eq!(text.len(), 73);
    }

    #[test]
    fn every_key_has_a_default_text() {
        let keys = defaults_as_text();
        for key in [
            "database-url",
            "retry-delays",
            "http-addr",
            "key-file",
            "allow-networks",
        ] {
            assert!(keys.contains_key(key), "{key}");
        }
        assert_eq!(keys["retry-delays"], "5s,30s,2m,10m,1h");
        assert_eq!(keys["key-file"], "");
    }
}
