//! `ipn-reconciler check`: validates the whole configuration and reaches
//! every dependency `serve` needs, one line per check, as operators know it
//! from `nginx -t` or `vector validate`.
//!
//! It changes nothing: no database is created and no migration applied
//! (the schema is only read), the broker's topology is looked at with
//! passive declares (which never create), and the listeners are bound and
//! released at once. So it can run before a deployment, from CI, or next
//! to a daemon that misbehaves (except the listener checks, which fail
//! while a daemon holds the addresses).

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ExchangeKind};

use super::args::{
    self, ApiFlags, BrokerFlags, ConfigFile, ConsoleFlags, DatabaseFlags, IntakeFlags,
    NotificationFlags, OperationsFlags, PeriodFlags, SettlementFlags, WorkerFlags,
};
use super::{CliResult, EXIT_OPERATIONAL, EXIT_USAGE, block_on, render_error};
use crate::queue::{AmqpSettings, QueueError};
use crate::settings::Loaded;
use crate::store::{DatabaseSettings, SchemaPolicy, Store, StoreError};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Checks, one line each (`ok    WHAT: DETAIL` or `FAIL  WHAT: REASON`): \
configuration (which file), key file (key ids, the current key; never a secret), seal key file \
(key ids, the sealing key; never a key), pseudonym key, \
expected fields, database (reachable, exists), schema (applied and pending migrations), broker \
(reachable), topology (which of the exchange and queues exist; absent ones are declared by serve \
at start), and the listeners (http-addr, intake-addr: bound, then released at once, so they \
fail while a daemon holds them), and, when vendor-code is set, the processor api (one look-up \
with the API credentials: a 401 names api-key-file). Nothing is created, migrated or declared.\n\n\
Exit codes: 0 every check passed; 2 the configuration is invalid (a value, the key file, the \
seal key file, the pseudonym key); 3 a dependency failed (database, schema, broker, a listener)."
)]
pub struct CheckArgs {
    #[command(flatten)]
    pub db: DatabaseFlags,
    #[command(flatten)]
    pub notifications: NotificationFlags,
    #[command(flatten)]
    pub broker: BrokerFlags,
    #[command(flatten)]
    pub worker: WorkerFlags,
    #[command(flatten)]
    pub intake: IntakeFlags,
    #[command(flatten)]
    pub operations: OperationsFlags,
    #[command(flatten)]
    pub settlement: SettlementFlags,
    #[command(flatten)]
    pub console: ConsoleFlags,
    /// `report-timezone`, checked with the rest.
    #[command(flatten)]
    pub periods: PeriodFlags,
    /// The processor's API, checked when `vendor-code` is set.
    #[command(flatten)]
    pub api: ApiFlags,
}

/// What a failed check is about, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Failure {
    /// A dependency (exit 3).
    Dependency,
    /// The configuration itself (exit 2): it must be fixed first, so it
    /// wins over a dependency that failed as well.
    Configuration,
}

/// The lines printed so far and the worst failure.
struct Checks<W> {
    out: W,
    worst: Option<Failure>,
}

impl<W: Write> Checks<W> {
    fn ok(&mut self, what: &str, detail: impl std::fmt::Display) -> std::io::Result<()> {
        writeln!(self.out, "ok    {what}: {detail}")
    }

    fn fail(
        &mut self,
        failure: Failure,
        what: &str,
        reason: impl std::fmt::Display,
    ) -> std::io::Result<()> {
        self.worst = self.worst.max(Some(failure));
        writeln!(self.out, "FAIL  {what}: {reason}")
    }

    fn exit_code(&self) -> ExitCode {
        match self.worst {
            None => ExitCode::SUCCESS,
            Some(Failure::Configuration) => ExitCode::from(EXIT_USAGE),
            Some(Failure::Dependency) => ExitCode::from(EXIT_OPERATIONAL),
        }
    }
}

pub fn run(config: &ConfigFile, args: CheckArgs) -> CliResult {
    let mut checks = Checks {
        out: std::io::stdout().lock(),
        worst: None,
    };
    let loaded = args::load(
        config,
        &[
            &args.db,
            &args.notifications,
            &args.broker,
            &args.worker,
            &args.intake,
            &args.operations,
            &args.settlement,
            &args.console,
            &args.periods,
            &args.api,
        ],
    );
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(err) => {
            // Nothing else can be checked without settings.
            checks.fail(Failure::Configuration, "configuration", err)?;
            return Ok(checks.exit_code());
        }
    };
    let source = match &config.path {
        Some(path) => format!(
            "{} (with the environment and flags over it)",
            path.display()
        ),
        None => "no configuration file: defaults, environment and flags".to_owned(),
    };
    checks.ok("configuration", source)?;
    check_keys(&mut checks, &loaded)?;
    let database = loaded.database();
    let amqp = loaded.amqp();
    block_on(async move {
        match database {
            Ok(database) => check_database(&mut checks, database).await?,
            Err(err) => checks.fail(Failure::Configuration, "database", err)?,
        }
        match amqp {
            Ok(amqp) => check_broker(&mut checks, &amqp).await?,
            Err(err) => checks.fail(Failure::Configuration, "broker", err)?,
        }
        check_listeners(&mut checks, &loaded)?;
        check_processor_api(&mut checks, &loaded).await?;
        Ok(checks.exit_code())
    })
}

/// The processor's API, when `vendor-code` is set: one look-up, without
/// retries, of an order that does not exist. Any answer but a 401 means the
/// credentials were accepted (the processor answers an unknown order with
/// an error of its own); a 401 is the configuration's fault and names
/// `api-key-file`. No line when the API is not configured.
async fn check_processor_api(
    checks: &mut Checks<impl Write>,
    loaded: &Loaded,
) -> std::io::Result<()> {
    use crate::processor_api::{ApiClient, ApiError};
    const WHAT: &str = "processor api";
    let mut config = match loaded.processor_api() {
        Ok(Some(config)) => config,
        Ok(None) => return Ok(()),
        Err(err) => return checks.fail(Failure::Configuration, WHAT, err),
    };
    config.retry.max_retries = 0;
    let target = format!(
        "{} as vendor `{}`",
        config.base_url,
        config.credentials.vendor_code()
    );
    let client = match ApiClient::new(config) {
        Ok(client) => client,
        Err(err) => return checks.fail(Failure::Configuration, WHAT, err),
    };
    match client.order("0").await {
        Ok(_) | Err(ApiError::NotFound(_)) => {
            checks.ok(WHAT, format!("{target}: credentials accepted"))
        }
        Err(ApiError::Status { status, .. })
            if !crate::processor_api::RetryPolicy::retryable_status(status) =>
        {
            checks.ok(WHAT, format!("{target}: credentials accepted"))
        }
        Err(err @ ApiError::Unauthorized) => {
            checks.fail(Failure::Configuration, WHAT, format!("{target}: {err}"))
        }
        Err(err) => checks.fail(Failure::Dependency, WHAT, format!("{target}: {err}")),
    }
}

/// The key file and the seal key file (ids only), the pseudonym key
/// (whether set) and the expected fields.
fn check_keys(checks: &mut Checks<impl Write>, loaded: &Loaded) -> std::io::Result<()> {
    match loaded.keys() {
        Ok(ring) => {
            let ids = ring.ids();
            let mut detail = format!(
                "{} key(s) in {}: current `{}`",
                ids.len(),
                loaded
                    .settings
                    .notifications
                    .key_file
                    .as_deref()
                    .map_or_else(String::new, |p| p.display().to_string()),
                ring.current().id
            );
            if ids.len() > 1 {
                detail.push_str(&format!(", also accepted `{}`", ids[1..].join("`, `")));
            }
            checks.ok("key file", detail)?;
        }
        Err(err) => checks.fail(Failure::Configuration, "key file", err)?,
    }
    match loaded.sealer() {
        Ok(sealer) => {
            let ids = sealer.ids();
            let mut detail = format!(
                "{} key(s) in {}: sealing with `{}`",
                ids.len(),
                loaded
                    .settings
                    .broker
                    .seal_key_file
                    .as_deref()
                    .map_or_else(String::new, |p| p.display().to_string()),
                sealer.current_key_id()
            );
            if ids.len() > 1 {
                detail.push_str(&format!(", also opening `{}`", ids[1..].join("`, `")));
            }
            checks.ok("seal key file", detail)?;
        }
        Err(err) => checks.fail(Failure::Configuration, "seal key file", err)?,
    }
    match loaded.pseudonym_key() {
        Ok(Some(_)) => checks.ok(
            "pseudonym key",
            "set: customer e-mails are stored as keyed pseudonyms",
        )?,
        Ok(None) => checks.ok("pseudonym key", "not set: no e-mail pseudonym is stored")?,
        Err(err) => checks.fail(Failure::Configuration, "pseudonym key", err)?,
    }
    let expected = &loaded.settings.notifications.expected_fields.0;
    if expected.is_empty() {
        checks.ok(
            "expected fields",
            "none (docs/configuration.md, \"Which IPN fields to send\": TEST_ORDER,FRAUD_STATUS recommended)",
        )
    } else {
        checks.ok("expected fields", expected.join(","))
    }
}

/// Reaches the database without creating or migrating anything, and says
/// what `serve` would do about a missing database or schema.
async fn check_database(
    checks: &mut Checks<impl Write>,
    mut settings: DatabaseSettings,
) -> std::io::Result<()> {
    let create_db = settings.schema.creates_database();
    let auto_migrate = matches!(settings.schema, SchemaPolicy::Migrate { .. });
    settings.schema = SchemaPolicy::ConnectOnly {
        create_database: false,
    };
    let url = settings.redacted_url();
    let store = match Store::connect(settings).await {
        Ok(store) => store,
        Err(StoreError::NoDatabase { name, .. }) if create_db => {
            checks.ok(
                "database",
                format!("{url}: `{name}` does not exist yet; serve creates it (create-db)"),
            )?;
            return checks.ok("schema", "created by serve at start (auto-migrate)");
        }
        Err(err) => {
            checks.fail(Failure::Dependency, "database", reason(err))?;
            return Ok(());
        }
    };
    match store.has_schema().await {
        Ok(present) => {
            checks.ok("database", format!("{url}: reachable"))?;
            if !present {
                return if auto_migrate {
                    checks.ok("schema", "none yet: serve applies the migrations at start")
                } else {
                    checks.fail(
                        Failure::Dependency,
                        "schema",
                        "none, and auto-migrate is off: run `ipn-reconciler migrate`",
                    )
                };
            }
        }
        Err(err) => {
            return checks.fail(Failure::Dependency, "database", reason(err));
        }
    }
    // Only now: reading the migrations of a database without the schema
    // would create diesel's bookkeeping table.
    match store.schema_status().await {
        Ok(status) => {
            let latest = status.applied.iter().max().map_or("-", String::as_str);
            let detail = format!(
                "{} migration(s) applied (latest {latest}), {} pending",
                status.applied.len(),
                status.pending.len()
            );
            if status.pending.is_empty() {
                checks.ok("schema", detail)
            } else if auto_migrate {
                checks.ok(
                    "schema",
                    format!("{detail}: serve applies them at start (auto-migrate)"),
                )
            } else {
                checks.fail(
                    Failure::Dependency,
                    "schema",
                    format!("{detail}, and auto-migrate is off: run `ipn-reconciler migrate`"),
                )
            }
        }
        Err(err) => checks.fail(Failure::Dependency, "schema", reason(err)),
    }
}

/// Connects to the broker, then looks at the topology with passive
/// declares: they never create anything, and one that fails closes only
/// its own channel.
async fn check_broker(checks: &mut Checks<impl Write>, amqp: &AmqpSettings) -> std::io::Result<()> {
    let url = amqp.redacted_url();
    // A broker that accepts the connection but never answers is a failure
    // too, not a hang.
    let limit = amqp.publish_timeout.max(Duration::from_secs(1));
    let connection = match tokio::time::timeout(limit, amqp.connect("check")).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(err)) => {
            return checks.fail(Failure::Dependency, "broker", reason(err));
        }
        Err(_) => {
            return checks.fail(
                Failure::Dependency,
                "broker",
                format!("{url}: no answer within {}s", limit.as_secs()),
            );
        }
    };
    checks.ok("broker", format!("{url}: reachable"))?;
    let result = tokio::time::timeout(limit, topology(&connection, amqp)).await;
    crate::queue::close_connection(&connection, Duration::from_secs(5)).await;
    match result {
        Ok(Ok(found)) => {
            let absent: Vec<&str> = found
                .iter()
                .filter(|(_, present)| present.is_none())
                .map(|(name, _)| name.as_str())
                .collect();
            let parked = found
                .iter()
                .find(|(name, _)| *name == amqp.topology.parking_queue())
                .and_then(|(_, present)| *present);
            let mut detail = if absent.is_empty() {
                format!(
                    "exchange and {} queue(s) of `{}` exist",
                    found.len() - 1,
                    amqp.topology.base()
                )
            } else if absent.len() == found.len() {
                format!(
                    "`{}` not declared yet (declared by serve at start)",
                    amqp.topology.base()
                )
            } else {
                format!("absent (declared by serve at start): {}", absent.join(", "))
            };
            if let Some(parked) = parked {
                detail.push_str(&format!("; {parked} message(s) parked"));
            }
            checks.ok("topology", detail)
        }
        Ok(Err(err)) => checks.fail(Failure::Dependency, "topology", reason(err)),
        Err(_) => checks.fail(
            Failure::Dependency,
            "topology",
            format!("no answer within {}s", limit.as_secs()),
        ),
    }
}

/// Every name of the topology, the exchange first, with `Some(messages
/// ready)` for a queue that exists (`Some(0)` for the exchange) or `None`.
async fn topology(
    connection: &Connection,
    amqp: &AmqpSettings,
) -> Result<Vec<(String, Option<u32>)>, QueueError> {
    let topology = &amqp.topology;
    let mut found = Vec::new();
    let channel = connection.create_channel().await?;
    let exchange = channel
        .exchange_declare(
            topology.exchange().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    let present = match exchange {
        Ok(()) => {
            let _ = channel.close(200, "checked".into()).await;
            Some(0)
        }
        Err(err) if is_not_found(&err) => None,
        Err(err) => return Err(err.into()),
    };
    found.push((format!("exchange {}", topology.exchange()), present));
    let mut queues = vec![topology.work_queue().to_owned(), topology.parking_queue()];
    queues.extend(
        topology
            .retry_delays()
            .delays()
            .iter()
            .map(|delay| topology.retry_queue(*delay)),
    );
    for queue in queues {
        // A failed passive declare closes its channel: one channel each.
        let channel = connection.create_channel().await?;
        let declared = channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        let present = match declared {
            Ok(declared) => {
                let _ = channel.close(200, "checked".into()).await;
                Some(declared.message_count())
            }
            Err(err) if is_not_found(&err) => None,
            Err(err) => return Err(err.into()),
        };
        found.push((queue, present));
    }
    Ok(found)
}

/// Whether the broker answered 404 NOT_FOUND (what a passive declare of
/// something absent gets).
fn is_not_found(err: &lapin::Error) -> bool {
    matches!(err.kind(), lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 404)
}

/// An error and its causes on one line.
fn reason(err: impl std::error::Error + Send + Sync + 'static) -> String {
    render_error(&anyhow::Error::new(err))
}

/// Binds each listener and releases it at once.
fn check_listeners(checks: &mut Checks<impl Write>, loaded: &Loaded) -> std::io::Result<()> {
    let s = &loaded.settings;
    let mut listeners = vec![(
        "http-addr",
        "the operations endpoint",
        s.operations.http_addr,
    )];
    if !s.worker.no_intake {
        listeners.push(("intake-addr", "the intake", s.intake.intake_addr));
    }
    if let Some(addr) = s.console.console_addr {
        listeners.push(("console-addr", "the finance console", addr.0));
    }
    for (key, what, addr) in listeners {
        match bind(addr) {
            Ok(()) => checks.ok(key, format!("{addr} is free for {what}"))?,
            Err(err) => checks.fail(
                Failure::Dependency,
                key,
                format!("cannot listen on {addr} for {what}: {err}"),
            )?,
        }
    }
    Ok(())
}

fn bind(addr: SocketAddr) -> std::io::Result<()> {
    TcpListener::bind(addr).map(drop)
}
