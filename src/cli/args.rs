//! The settings flags the commands share, declared once.
//!
//! Each flag's long name is a key of [`Settings`](crate::settings::Settings)
//! and of the configuration file; each has the environment variable that
//! operators' deployments already use. A command takes the groups it needs
//! (`#[command(flatten)] db: DatabaseFlags`), and the groups hand their
//! values, still as text and tagged with where they came from, to
//! [`settings::load`], which parses them with the file's. So an invalid
//! value is reported the same way whichever layer it came from, and the
//! defaults shown in `--help` are the ones [`Settings::default`] holds.
//!
//! [`Settings::default`]: crate::settings::Settings

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches};

use super::{CliError, settings_error};
use crate::secret::SecretUrl;
use crate::settings::{self, Loaded, Origin, Override, OverrideValue};
use crate::store::{DatabaseSettings, SchemaPolicy};

/// One settings flag.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// Long name and settings key.
    pub key: &'static str,
    pub env: &'static str,
    pub value_name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Takes a value.
    Value,
    /// A value that may hold a password: never shown in help output.
    Secret,
    /// A switch without a value (`--allow-md5`); its variable takes
    /// true/false, yes/no, on/off or 1/0.
    Switch,
    /// A list: the flag may be repeated (`--allow-currency A=2
    /// --allow-currency B=0`), and takes comma-separated values too, as
    /// its variable does.
    List,
}

const fn value(
    key: &'static str,
    env: &'static str,
    value_name: &'static str,
    help: &'static str,
) -> Flag {
    Flag {
        key,
        env,
        value_name,
        help,
        kind: Kind::Value,
    }
}

const fn list(
    key: &'static str,
    env: &'static str,
    value_name: &'static str,
    help: &'static str,
) -> Flag {
    Flag {
        key,
        env,
        value_name,
        help,
        kind: Kind::List,
    }
}

const fn switch(key: &'static str, env: &'static str, help: &'static str) -> Flag {
    Flag {
        key,
        env,
        value_name: "",
        help,
        kind: Kind::Switch,
    }
}

const fn secret(key: &'static str, env: &'static str, help: &'static str) -> Flag {
    Flag {
        key,
        env,
        value_name: "URL",
        help,
        kind: Kind::Secret,
    }
}

/// Where PostgreSQL is.
pub const DATABASE: &[Flag] = &[
    secret(
        "database-url",
        "DATABASE_URL",
        "PostgreSQL URL (postgres://user[:password]@host:port/dbname). Its password is never shown.",
    ),
    value(
        "auto-migrate",
        "AUTO_MIGRATE",
        "BOOL",
        "Apply pending migrations before running (`false` leaves the schema alone).",
    ),
    switch(
        "create-db",
        "IPN_CREATE_DB",
        "Create the database when it does not exist (migrate and serve; other commands refuse a missing database).",
    ),
    value(
        "db-pool-size",
        "IPN_DB_POOL_SIZE",
        "N",
        "Connections in the database pool.",
    ),
    value(
        "db-acquire-timeout",
        "IPN_DB_ACQUIRE_TIMEOUT",
        "DURATION",
        "How long to wait for a database connection before reporting an outage.",
    ),
    value(
        "db-statement-timeout",
        "IPN_DB_STATEMENT_TIMEOUT",
        "DURATION",
        "Longest a statement may run (PostgreSQL statement_timeout); a timeout is retried.",
    ),
    value(
        "db-lock-timeout",
        "IPN_DB_LOCK_TIMEOUT",
        "DURATION",
        "Longest a statement may wait for a row lock (PostgreSQL lock_timeout); a timeout is retried.",
    ),
    list(
        "allow-currency",
        "IPN_ALLOW_CURRENCY",
        "CODE=EXPONENT",
        "A currency outside ISO 4217 that orders may be in, with its number of decimals (XYZ=2); repeat the flag or separate with commas. Every command that reads the books must be given the same list (put it in the configuration file): the exponent gives stored amounts their meaning.",
    ),
];

/// How notifications are judged.
pub const NOTIFICATIONS: &[Flag] = &[
    value(
        "key-file",
        "IPN_KEYS_FILE",
        "FILE",
        "Key file: one key per line, `KEY_ID SECRET` or `KEY_ID \"SECRET\"` (quoted when it holds spaces, `#` or quotes); the first line is the current key, later lines are older keys still accepted.",
    ),
    switch(
        "allow-md5",
        "IPN_ALLOW_MD5",
        "Accept legacy HMAC-MD5 `HASH` signatures.",
    ),
    value(
        "require-algorithm",
        "IPN_REQUIRE_ALGORITHM",
        "ALGORITHM",
        "Refuse a notification without this signature (sha3-256 or sha256), whatever else it carries, so a stripped stronger signature cannot let a weaker one decide; none: the strongest present decides.",
    ),
    value(
        "pseudonym-key-file",
        "PSEUDONYM_KEY_FILE",
        "FILE",
        "File with the key of customer e-mail pseudonyms (keyed HMAC). Without it, no pseudonym is stored.",
    ),
    switch(
        "apply-test-orders",
        "IPN_APPLY_TEST_ORDERS",
        "Let TEST_ORDER=1 notifications change orders (sandboxes, the demo).",
    ),
    value(
        "order-source",
        "IPN_ORDER_SOURCE",
        "SOURCE",
        "Where orders come from: merchant (every notification must name an imported order, REFNOEXT, else it waits as an orphan), processor (orders are made from verified notifications, keyed by REFNO) or both (a notification naming a merchant reference is matched to the imported order; one naming none makes or updates the processor's order). Test orders never make one.",
    ),
    value(
        "processor-timezone",
        "IPN_PROCESSOR_TIMEZONE",
        "ZONE",
        "IANA time zone of the processor's date fields (PAYMENTDATE, COMPLETE_DATE, IPN_DATE), which date each money movement: UTC unless set; the processor's documentation names none.",
    ),
    value(
        "max-body-bytes",
        "IPN_MAX_BODY_BYTES",
        "BYTES",
        "Largest accepted notification body.",
    ),
    value(
        "expected-fields",
        "IPN_EXPECTED_FIELDS",
        "NAME,...",
        "Fields your IPN settings send that a notification must carry under their own names, for example TEST_ORDER,FRAUD_STATUS: a body lacking one is refused (the signature covers values, not names).",
    ),
];

/// Where RabbitMQ is and what the queues are called.
pub const BROKER: &[Flag] = &[
    secret(
        "amqp-url",
        "AMQP_URL",
        "RabbitMQ URL (amqp://user:password@host:port/vhost). Its password is never shown.",
    ),
    value(
        "amqp-queue",
        "AMQP_QUEUE",
        "NAME",
        "Base name of the exchange and queues (`<base>`, `<base>.retry.<delay>`, `<base>.parked`).",
    ),
    value(
        "retry-delays",
        "IPN_RETRY_DELAYS",
        "LIST",
        "Delays of the broker-side retries, in order (for example 5s,30s,2m).",
    ),
    value(
        "delivery-limit",
        "IPN_DELIVERY_LIMIT",
        "N",
        "Deliveries of one message before the broker parks it (poison backstop).",
    ),
    value(
        "publish-timeout",
        "IPN_PUBLISH_TIMEOUT",
        "DURATION",
        "How long a publisher waits for the broker's confirm.",
    ),
    value(
        "amqp-heartbeat",
        "IPN_AMQP_HEARTBEAT",
        "DURATION",
        "How long a silent broker path may last before its connection is declared lost and rebuilt (AMQP heartbeats go at half this interval; at least 2s). Also bounds each connection attempt.",
    ),
    value(
        "parking-ttl",
        "IPN_PARKING_TTL",
        "DURATION",
        "How long a parked message (its body sealed) is kept before the broker drops it, also the parking queue's x-message-ttl; at most 49days. A retired seal key must stay in the seal key file this long.",
    ),
    value(
        "seal-key-file",
        "IPN_SEAL_KEYS_FILE",
        "FILE",
        "Seal key file: the keys that seal bodies in the broker, one per line, `KEY_ID HEX` (64 hexadecimal digits: `ipn-reconciler keys seal-new` makes one); the first line seals, later lines only open. Required by serve, intake, publish and parked requeue; never derived from the processor's keys.",
    ),
];

/// How the worker consumes.
pub const WORKER: &[Flag] = &[
    value(
        "prefetch",
        "IPN_PREFETCH",
        "N",
        "Unacked deliveries the broker may push to this worker.",
    ),
    value(
        "concurrency",
        "IPN_CONCURRENCY",
        "N",
        "Batches processed at the same time (notifications, with --batch-size 1).",
    ),
    value(
        "batch-size",
        "IPN_BATCH_SIZE",
        "N",
        "Deliveries applied in one database transaction; 1 applies them one by one.",
    ),
    value(
        "batch-wait",
        "IPN_BATCH_WAIT",
        "DURATION",
        "How long a batch waits to fill before it is applied anyway (a quiet system keeps a low latency).",
    ),
    value(
        "orphan-window",
        "IPN_ORPHAN_WINDOW",
        "DURATION",
        "How long a notification for an unknown order is retried before it becomes an orphan_payment review item and is parked.",
    ),
    value(
        "recovery-stall",
        "IPN_RECOVERY_STALL",
        "DURATION",
        "No effect any more (a lost broker connection is rebuilt at once); accepted so that existing configurations keep working.",
    ),
    switch(
        "no-intake",
        "IPN_NO_INTAKE",
        "Run the worker only, without the intake listener (when the intake runs elsewhere as `ipn-reconciler intake`).",
    ),
];

/// How the intake listens and answers.
pub const INTAKE: &[Flag] = &[
    value(
        "intake-addr",
        "IPN_INTAKE_ADDR",
        "ADDR",
        "Address of the processor-facing listener. Keep it apart from the operations endpoint, which must not face the internet.",
    ),
    value(
        "intake-path",
        "IPN_INTAKE_PATH",
        "PATH",
        "Path that receives notifications.",
    ),
    value(
        "lcn-path",
        "IPN_LCN_PATH",
        "PATH",
        "Path that receives licence change notifications (LCN), the LCN URL of the processor's control panel; a GET there answers 200.",
    ),
    value(
        "edge-verify",
        "IPN_EDGE_VERIFY",
        "BOOL",
        "Verify signatures before queueing (forged floods stay out of the queue; the worker verifies again either way).",
    ),
    value(
        "receipt-format",
        "IPN_RECEIPT_FORMAT",
        "FORMAT",
        "Receipt format: auto (the algorithm that signed the notification), sig-sha3, sig-sha256 or epayment (legacy MD5).",
    ),
    value(
        "trusted-forwarded-header",
        "IPN_TRUSTED_FORWARDED_HEADER",
        "HEADER",
        "Header carrying the caller's address, set by a proxy you trust (for example x-forwarded-for), read only from trusted-proxies. Without it, the TCP peer is the caller.",
    ),
    value(
        "trusted-proxies",
        "IPN_TRUSTED_PROXIES",
        "CIDR,...",
        "The proxies (comma-separated CIDR or addresses) whose trusted-forwarded-header is believed; from any other peer the header is ignored. Required with trusted-forwarded-header.",
    ),
    value(
        "allow-networks",
        "IPN_ALLOW_NETWORKS",
        "CIDR,...",
        "Only these networks may post (comma-separated CIDR or addresses, for example the processor's published ranges). Empty: anyone.",
    ),
    value(
        "confirm-timeout",
        "IPN_CONFIRM_TIMEOUT",
        "DURATION",
        "How long to wait for the broker's confirm before answering 503.",
    ),
    value(
        "intake-header-timeout",
        "IPN_INTAKE_HEADER_TIMEOUT",
        "DURATION",
        "How long a client may take to send a request's header, from connecting or from its first byte; slower clients are dropped (408 when part of a request arrived).",
    ),
    value(
        "intake-body-timeout",
        "IPN_INTAKE_BODY_TIMEOUT",
        "DURATION",
        "How long a client may take to send a body once its header is in (408 after that).",
    ),
    value(
        "intake-idle-timeout",
        "IPN_INTAKE_IDLE_TIMEOUT",
        "DURATION",
        "How long a kept-alive intake connection may wait for its next request.",
    ),
    value(
        "intake-max-connections",
        "IPN_INTAKE_MAX_CONNECTIONS",
        "N",
        "Intake connections open at the same time; more are answered 503 and closed.",
    ),
    value(
        "intake-max-connections-per-client",
        "IPN_INTAKE_MAX_CONNECTIONS_PER_CLIENT",
        "N",
        "Intake connections one client address (the TCP peer) may hold at the same time; more from it are answered 503 and closed, so one client cannot take the slots the processor needs. Behind a proxy every client is the proxy: set it as high as intake-max-connections there.",
    ),
];

/// The daemon's own operation: endpoint, logs, shutdown.
pub const OPERATIONS: &[Flag] = &[
    value(
        "http-addr",
        "IPN_HTTP_ADDR",
        "ADDR",
        "Address of the operations endpoint (/healthz, /readyz, /metrics).",
    ),
    value(
        "log-format",
        "LOG_FORMAT",
        "FORMAT",
        "Log format: json (one object per line) or pretty (colours on a terminal only).",
    ),
    value(
        "shutdown-deadline",
        "IPN_SHUTDOWN_DEADLINE",
        "DURATION",
        "How long SIGTERM/SIGINT waits for notifications in flight.",
    ),
    value(
        "ack-settle-grace",
        "IPN_ACK_SETTLE_GRACE",
        "DURATION",
        "How long to let the broker settle the last acks before the consumer channel closes at shutdown.",
    ),
    value(
        "close-timeout",
        "IPN_CLOSE_TIMEOUT",
        "DURATION",
        "How long closing one connection or listener may take at shutdown.",
    ),
    value(
        "gauge-refresh-interval",
        "IPN_GAUGE_REFRESH_INTERVAL",
        "DURATION",
        "How often serve refreshes the gauges read from the database and the broker (open exceptions by kind and their oldest, money at risk, the parking queue's depth); a scrape never queries.",
    ),
    value(
        "audit-interval",
        "IPN_AUDIT_INTERVAL",
        "DURATION",
        "How often serve runs `audit verify` (recomputes the hash chains of the append-only tables and re-derives every order from them), exporting ipn_audit_last_ok_timestamp_seconds and ipn_audit_failures_total; off (or 0) never.",
    ),
];

/// `report-timezone`: a flag of every command that reads a period
/// ([`PERIODS`]), listed with the finance settings.
const REPORT_TIMEZONE: Flag = value(
    "report-timezone",
    "IPN_REPORT_TIMEZONE",
    "ZONE",
    "The time zone the books are kept in, an IANA name (Europe/Bucharest): where the days and months of --from/--to begin and end (report, export journal, notifications list, sweep --as-of) and those of the console's filters; a day on which the clocks change lasts 23 or 25 hours. Times shown stay RFC 3339 UTC; the journal's date column is the day in this zone.",
);

/// `four-eyes-amount`: a flag of the commands that resolve review items
/// ([`FOUR_EYES`]), listed with the finance settings.
const FOUR_EYES_AMOUNT: Flag = value(
    "four-eyes-amount",
    "IPN_FOUR_EYES_AMOUNT",
    "AMOUNTS",
    "Above which amount a link_order (an orphan payment booked on an order) needs a second resolver: it is recorded as a request, and another resolver confirms it in the console before the money moves. Entries AMOUNT CUR (1000.00 EUR), and at most one bare AMOUNT for every currency not named, in its major units (1000: 1,000.00 EUR, 1,000 JPY), separated by commas; a link of exactly the amount moves at once. Empty: off.",
);

/// Finance exports and periods.
pub const FINANCE: &[Flag] = &[
    list(
        "journal-accounts",
        "IPN_JOURNAL_ACCOUNTS",
        "ACCOUNT=NAME",
        "The name of a journal account in your chart of accounts (clearing, revenue, refunds, reversals, chargebacks, fees, vat, commission, write_off, bank, reserve, dispute_hold, processor_adjustments, conversion), for example clearing=1150 Processor clearing; repeat the flag or separate with commas (a name cannot hold a comma). Accounts not named keep their default names.",
    ),
    REPORT_TIMEZONE,
    FOUR_EYES_AMOUNT,
];

/// `four-eyes-amount` alone, for the commands that resolve review items
/// (the key belongs to [`FINANCE`]).
pub const FOUR_EYES: &[Flag] = &[FOUR_EYES_AMOUNT];

/// The period's time zone alone, for the commands that read a period but
/// no journal (the key belongs to [`FINANCE`]).
pub const PERIODS: &[Flag] = &[REPORT_TIMEZONE];

/// Settlement matching and sweeps.
pub const SETTLEMENT: &[Flag] = &[
    value(
        "settlement-tolerance",
        "IPN_SETTLEMENT_TOLERANCE",
        "AMOUNT",
        "How far a settlement line's amount may be from the ledger's and still match: a decimal amount (0.01) applied in each line's currency, rounded down to its minor units (nothing in JPY). `settlement import --tolerance` overrides it.",
    ),
    value(
        "settlement-days",
        "IPN_SETTLEMENT_DAYS",
        "DAYS",
        "Days after which a payment no settlement line settled becomes an unsettled_payment review item, and a refund no line debited a refund_not_debited one (the sweep).",
    ),
    value(
        "stale-order-age",
        "IPN_STALE_ORDER_AGE",
        "DURATION",
        "How long an order may stay pending or authorized before the sweep makes it a stale_order review item.",
    ),
    value(
        "renewal-grace",
        "IPN_RENEWAL_GRACE",
        "DURATION",
        "How long after a recurring subscription's paid term ended, with no paid renewal and no licence notice saying it expired, went past due or was canceled, the sweep makes it a renewal_missing review item.",
    ),
    value(
        "sweep-interval",
        "IPN_SWEEP_INTERVAL",
        "DURATION",
        "How often serve sweeps for stale orders, unsettled payments, refunds not debited and renewals; one instance at a time (a PostgreSQL advisory lock).",
    ),
];

/// The finance console.
pub const CONSOLE: &[Flag] = &[
    value(
        "console-addr",
        "IPN_CONSOLE_ADDR",
        "ADDR",
        "Address of the finance console (HOST:PORT; a port alone binds 127.0.0.1). Not set: serve runs no console. Put it behind an HTTPS proxy unless it stays on this machine.",
    ),
    switch(
        "console-insecure-cookies",
        "IPN_CONSOLE_INSECURE_COOKIES",
        "Console cookies without Secure, for plain HTTP on your own machine (otherwise the browser must reach the console over HTTPS).",
    ),
    value(
        "console-idle-timeout",
        "IPN_CONSOLE_IDLE_TIMEOUT",
        "DURATION",
        "A console session unused this long ends.",
    ),
    value(
        "console-absolute-timeout",
        "IPN_CONSOLE_ABSOLUTE_TIMEOUT",
        "DURATION",
        "A console session ends this long after its login, however busy.",
    ),
    value(
        "console-trusted-forwarded-header",
        "IPN_CONSOLE_TRUSTED_FORWARDED_HEADER",
        "HEADER",
        "Header carrying the browser's address, set by the HTTPS proxy in front of the console (for example x-forwarded-for), read only from console-trusted-proxies. Without it, the TCP peer is the caller.",
    ),
    value(
        "console-trusted-proxies",
        "IPN_CONSOLE_TRUSTED_PROXIES",
        "CIDR,...",
        "The proxies (comma-separated CIDR or addresses) whose console-trusted-forwarded-header the console believes; from any other peer the header is ignored. Required with console-trusted-forwarded-header.",
    ),
    value(
        "console-key-file",
        "IPN_CONSOLE_KEY_FILE",
        "FILE",
        "File with the console's own key (at least 16 bytes): the digests of login attempts are keyed with it. Not set: a random key at each start (limits then start again at a restart and are not shared between consoles).",
    ),
];

/// The processor's REST API (issue 24).
pub const PROCESSOR_API: &[Flag] = &[
    value(
        "api-url",
        "IPN_API_URL",
        "URL",
        "Base URL of the processor's REST API 6.0; an order is looked up at {api-url}orders/{RefNo}/.",
    ),
    value(
        "vendor-code",
        "IPN_VENDOR_CODE",
        "CODE",
        "The account's merchant (vendor) code, sent in the X-Avangate-Authentication header. Not set: the API is not used.",
    ),
    value(
        "api-key-file",
        "IPN_API_KEY_FILE",
        "FILE",
        "File holding the API secret key (Integrations > Webhooks & API in the processor's control panel); a file so the secret is never on a command line nor in a log.",
    ),
    value(
        "api-rate",
        "IPN_API_RATE",
        "PER_SECOND",
        "Requests per second to the processor's API at most (a client-side limit shared by every caller in the process).",
    ),
    value(
        "api-timeout",
        "IPN_API_TIMEOUT",
        "DURATION",
        "How long one request to the processor's API may take before it counts as failed (and is retried, within bounds).",
    ),
];

/// One group of flags with its title, as the generated reference shows it
/// (see `cli::reference`); the groups are the sections of
/// [`Settings`](crate::settings::Settings).
#[derive(Debug, Clone, Copy)]
pub struct Group {
    pub title: &'static str,
    pub flags: &'static [Flag],
}

/// Every group, in the order of the generated reference; the checks that
/// the table and the settings agree read it too.
pub const GROUPS: [Group; 10] = [
    Group {
        title: "PostgreSQL",
        flags: DATABASE,
    },
    Group {
        title: "Judging notifications",
        flags: NOTIFICATIONS,
    },
    Group {
        title: "RabbitMQ",
        flags: BROKER,
    },
    Group {
        title: "Worker",
        flags: WORKER,
    },
    Group {
        title: "Intake (faces the processor)",
        flags: INTAKE,
    },
    Group {
        title: "Operations (keep this listener private)",
        flags: OPERATIONS,
    },
    Group {
        title: "Finance",
        flags: FINANCE,
    },
    Group {
        title: "Settlement and sweeps",
        flags: SETTLEMENT,
    },
    Group {
        title: "Finance console",
        flags: CONSOLE,
    },
    Group {
        title: "Processor API",
        flags: PROCESSOR_API,
    },
];

/// The clap argument of a flag. Its id is the key, so two groups can never
/// declare the same flag twice in one command without clap noticing.
fn arg(flag: &Flag) -> Arg {
    let default = settings::defaults_as_text()
        .get(flag.key)
        .filter(|text| !text.is_empty())
        .map(|text| format!(" [default: {text}]"))
        .unwrap_or_default();
    let arg = Arg::new(flag.key)
        .long(flag.key)
        .env(flag.env)
        .help(format!("{}{default}", flag.help));
    match flag.kind {
        Kind::Value => arg.value_name(flag.value_name).action(ArgAction::Set),
        Kind::List => arg.value_name(flag.value_name).action(ArgAction::Append),
        Kind::Secret => arg
            .value_name(flag.value_name)
            .action(ArgAction::Set)
            .hide_env_values(true),
        // Variables of switches take true/false, yes/no, on/off or 1/0.
        Kind::Switch => arg
            .action(ArgAction::SetTrue)
            .value_parser(clap::builder::BoolishValueParser::new()),
    }
}

/// The values of `group` that were given, with where each came from.
fn collect(matches: &ArgMatches, group: &[Flag]) -> Vec<Override> {
    let mut found = Vec::new();
    for flag in group {
        let origin = match matches.value_source(flag.key) {
            Some(ValueSource::CommandLine) => Origin::Flag(flag.key),
            Some(ValueSource::EnvVariable) => Origin::Env(flag.env),
            _ => continue,
        };
        if flag.kind == Kind::Switch {
            found.push(Override {
                key: flag.key,
                value: OverrideValue::Plain(matches.get_flag(flag.key).to_string()),
                origin,
            });
            continue;
        }
        let Some(values) = matches.get_raw(flag.key) else {
            continue;
        };
        let value = values
            .map(|v| v.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(",");
        let value = match flag.kind {
            Kind::Secret => OverrideValue::Secret(SecretUrl::new(value)),
            Kind::Value | Kind::Switch | Kind::List => OverrideValue::Plain(value),
        };
        found.push(Override {
            key: flag.key,
            value,
            origin,
        });
    }
    found
}

macro_rules! flag_group {
    ($(#[$doc:meta])* $name:ident, $table:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default)]
        pub struct $name {
            /// The values given for this group's flags.
            pub overrides: Vec<Override>,
        }

        impl clap::FromArgMatches for $name {
            fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
                Ok(Self {
                    overrides: collect(matches, $table),
                })
            }

            fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
                self.overrides = collect(matches, $table);
                Ok(())
            }
        }

        impl clap::Args for $name {
            fn augment_args(command: clap::Command) -> clap::Command {
                command.args($table.iter().map(arg))
            }

            fn augment_args_for_update(command: clap::Command) -> clap::Command {
                Self::augment_args(command)
            }
        }

        impl FlagGroup for $name {
            fn overrides(&self) -> &[Override] {
                &self.overrides
            }
        }
    };
}

/// A group of settings flags of one command.
pub trait FlagGroup {
    fn overrides(&self) -> &[Override];
}

flag_group!(
    /// `--database-url` and the pool.
    DatabaseFlags,
    DATABASE
);
flag_group!(
    /// Keys, algorithms, limits and pseudonyms.
    NotificationFlags,
    NOTIFICATIONS
);
flag_group!(
    /// `--amqp-url`, queue names, retry delays.
    BrokerFlags,
    BROKER
);
flag_group!(
    /// Prefetch, concurrency, orphan window.
    WorkerFlags,
    WORKER
);
flag_group!(
    /// The intake listener.
    IntakeFlags,
    INTAKE
);
flag_group!(
    /// Operations endpoint, logs, shutdown.
    OperationsFlags,
    OPERATIONS
);
flag_group!(
    /// The journal's account names and the report time zone.
    FinanceFlags,
    FINANCE
);
flag_group!(
    /// `--report-timezone` alone: the commands that read a period.
    PeriodFlags,
    PERIODS
);
flag_group!(
    /// `--four-eyes-amount` alone: the commands that resolve review items.
    FourEyesFlags,
    FOUR_EYES
);
flag_group!(
    /// Settlement tolerance and the sweep's ages.
    SettlementFlags,
    SETTLEMENT
);
flag_group!(
    /// The finance console.
    ConsoleFlags,
    CONSOLE
);
flag_group!(
    /// The processor's REST API.
    ApiFlags,
    PROCESSOR_API
);

/// The configuration file, for every command that reads settings.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigFile {
    /// TOML configuration file; its keys are the long flag names (for
    /// example `http-addr = "127.0.0.1:9187"`). Environment variables and
    /// flags override it.
    #[arg(
        long = "config",
        env = "IPN_CONFIG",
        value_name = "FILE",
        global = true
    )]
    pub path: Option<PathBuf>,
}

/// Loads the settings from the configuration file and the given groups.
///
/// The allowed currencies (`allow-currency`) are part of them: loading
/// builds and checks the currency table
/// ([`Loaded::currencies`](settings::Loaded::currencies)), a bad table is
/// refused here as an invalid `allow-currency`, and the command hands the
/// table on (through the store's settings, the pipeline, its parsers) to
/// whatever reads an amount.
pub fn load(
    config: &ConfigFile,
    groups: &[&dyn FlagGroup],
) -> Result<Loaded, settings::SettingsError> {
    let overrides: Vec<Override> = groups
        .iter()
        .flat_map(|group| group.overrides().iter().cloned())
        .collect();
    settings::load(config.path.as_deref(), &overrides)
}

/// The database settings of a command that reads or adds to the books: it
/// never creates a database and refuses one without the schema, so a
/// mistyped database name is an error, not empty books.
pub(super) fn database(
    config: &ConfigFile,
    db: &DatabaseFlags,
) -> Result<DatabaseSettings, CliError> {
    let mut settings = load(config, &[db])
        .and_then(|loaded| loaded.database())
        .map_err(settings_error)?;
    settings.schema = SchemaPolicy::EXISTING;
    Ok(settings)
}

/// The database settings and the report time zone (`report-timezone`) of a
/// command that reads a period of the books, loaded once: an unknown zone
/// is refused as any bad setting is (exit 2, naming the key and where it
/// came from).
pub(super) fn books_with_zone(
    config: &ConfigFile,
    db: &DatabaseFlags,
    periods: &dyn FlagGroup,
) -> Result<(DatabaseSettings, chrono_tz::Tz), CliError> {
    let loaded = load(config, &[db, periods]).map_err(settings_error)?;
    let mut settings = loaded.database().map_err(settings_error)?;
    settings.schema = SchemaPolicy::EXISTING;
    Ok((settings, loaded.settings.finance.report_timezone.0))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_flag_is_a_settings_key_and_every_key_has_a_flag() {
        let flags: Vec<&str> = GROUPS
            .iter()
            .flat_map(|group| group.flags.iter().map(|flag| flag.key))
            .collect();
        let unique: BTreeSet<&str> = flags.iter().copied().collect();
        assert_eq!(unique.len(), flags.len(), "a key is declared twice");
        let keys: BTreeSet<&str> = settings::defaults_as_text()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(unique, keys);
        let envs: BTreeSet<&str> = GROUPS
            .iter()
            .flat_map(|group| group.flags.iter().map(|flag| flag.env))
            .collect();
        assert_eq!(
            envs.len(),
            flags.len(),
            "an environment variable is used twice"
        );
    }
}
