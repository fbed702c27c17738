//! The command line: one subcommand per job, each with its own `--help`.
//!
//! Commands are thin: they read input, call the library, and turn outcomes
//! into output and exit codes. Anything worth testing lives in the library.

mod demo;
mod finance;
mod intake;
mod ipn;
mod orders;
mod parked;
mod process;
mod publish;
mod serve;
mod simulate;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::domain::{PseudonymKey, ReconcilePolicy};
use crate::ipn::{FormLimits, KeyRing, SignaturePolicy};
use crate::pipeline::PipelineConfig;
use crate::store::{DEFAULT_DATABASE_URL, DatabaseSettings};

/// Exit code for "the input is invalid" (a bad signature).
pub const EXIT_INVALID: u8 = 1;
/// Exit code for malformed input or a usage error (clap uses 2 as well).
pub const EXIT_USAGE: u8 = 2;
/// Exit code for an operational failure (database, broker, I/O).
pub const EXIT_OPERATIONAL: u8 = 3;

/// Receives, verifies and reconciles Avangate / 2Checkout Instant Payment
/// Notifications (IPN) against the merchant's orders.
#[derive(Debug, Parser)]
#[command(name = "ipn-reconciler", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with single notification bodies: verify, sign, build receipts.
    #[command(subcommand)]
    Ipn(ipn::IpnCommand),
    /// Apply pending database migrations (other commands do it too, unless
    /// AUTO_MIGRATE=false).
    Migrate {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Import, show and list the merchant's orders.
    #[command(subcommand)]
    Orders(orders::OrdersCommand),
    /// Replay notification files through verify -> tokenize -> apply,
    /// without the broker. Prints one outcome line per file.
    Process(process::ProcessArgs),
    /// Run the worker daemon: consume notifications from RabbitMQ, reconcile
    /// them, and serve /healthz, /readyz and /metrics.
    Serve(Box<serve::ServeArgs>),
    /// The whole system in one command, for newcomers: simulated orders
    /// over HTTP through intake and worker, then the finance summary.
    Demo(demo::DemoArgs),
    /// Run the processor-facing intake alone (`serve` runs it too): POST
    /// /ipn answers with a read receipt once the notification is queued.
    Intake(Box<intake::IntakeCommandArgs>),
    /// Publish notification bodies to the work exchange (persistent, with
    /// publisher confirms), as the intake does.
    Publish(publish::PublishArgs),
    /// List or requeue the messages in the parking queue.
    #[command(subcommand)]
    Parked(parked::ParkedCommand),
    /// Finance summary: orders by state, totals per currency, open
    /// exceptions by kind.
    Report(finance::ReportArgs),
    /// The review queue: exceptions a person must look at.
    #[command(subcommand)]
    Review(finance::ReviewCommand),
    /// Simulate the payment processor: seeded, reproducible notifications
    /// for N orders with anomalies, the orders CSV and the expected states.
    Simulate(simulate::SimulateArgs),
}

/// An error and its causes on one line. A cause whose text its parent
/// already quotes (`"cannot connect: {source}"`) is not repeated.
pub fn render_error(err: &anyhow::Error) -> String {
    let mut message = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Ipn(command) => ipn::run(command),
        Command::Migrate { db } => orders::migrate(db),
        Command::Orders(command) => orders::run(command),
        Command::Process(args) => process::run(args),
        Command::Serve(args) => serve::run(*args),
        Command::Demo(args) => demo::run(args),
        Command::Intake(args) => intake::run(*args),
        Command::Publish(args) => publish::run(args),
        Command::Parked(command) => parked::run(command),
        Command::Report(args) => finance::report(args),
        Command::Review(command) => finance::review(command),
        Command::Simulate(args) => simulate::run(args),
    }
}

/// Where keys come from: `--key-file`, else `IPN_KEYS_FILE`.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// Key file: one key per line, `KEY_ID SECRET`; the first line is the
    /// current key, later lines are older keys still accepted. A line with
    /// only a secret gets the id `default`.
    #[arg(long, env = "IPN_KEYS_FILE", value_name = "FILE")]
    pub key_file: PathBuf,
}

impl KeyArgs {
    pub fn load(&self) -> anyhow::Result<KeyRing> {
        Ok(KeyRing::from_file(&self.key_file)?)
    }
}

/// Reads a notification body from a file, or standard input for `-`,
/// refusing to read more than the body limit (plus one byte, so an
/// oversized body is reported as such by the parser).
///
/// Trailing raw line breaks are dropped: a form-encoded body cannot end in
/// one (a newline in a value is sent as `%0A`), but files saved by editors
/// and the output of `ipn sign` do. Dropping them keeps the body digest
/// equal to the one of the body as the processor sent it.
pub fn read_body(source: &Path, limits: &FormLimits) -> anyhow::Result<Vec<u8>> {
    let cap = u64::try_from(limits.max_body_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut body = Vec::new();
    if source == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(cap)
            .read_to_end(&mut body)
            .context("cannot read standard input")?;
    } else {
        std::fs::File::open(source)
            .with_context(|| format!("cannot open {}", source.display()))?
            .take(cap)
            .read_to_end(&mut body)
            .with_context(|| format!("cannot read {}", source.display()))?;
    }
    while matches!(body.last(), Some(b'\n' | b'\r')) {
        body.pop();
    }
    Ok(body)
}

/// Runs a future on a fresh multi-threaded runtime (the migration harness
/// needs one).
pub fn block_on<T>(future: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(future)
}

/// Where the database is.
#[derive(Clone, clap::Args)]
pub struct DbArgs {
    /// PostgreSQL URL. The database is created when missing (if the user may).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
    /// Apply pending migrations before running (`false` to leave the schema alone).
    #[arg(long, env = "AUTO_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_migrate: bool,
}

impl DbArgs {
    pub fn settings(&self) -> DatabaseSettings {
        let mut settings = DatabaseSettings::new(self.database_url.clone());
        settings.migrate = self.auto_migrate;
        settings
    }
}

/// How notifications are judged: keys, algorithms, limits, pseudonyms.
#[derive(Debug, Clone, clap::Args)]
pub struct PipelineArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Accept legacy HMAC-MD5 `HASH` signatures.
    #[arg(long, env = "IPN_ALLOW_MD5")]
    pub allow_md5: bool,
    /// File with the key for customer e-mail pseudonyms (keyed HMAC). Without
    /// it, no pseudonym is stored.
    #[arg(long, env = "PSEUDONYM_KEY_FILE", value_name = "FILE")]
    pub pseudonym_key_file: Option<PathBuf>,
    /// Let TEST_ORDER=1 notifications change orders (sandboxes, the demo).
    #[arg(long, env = "IPN_APPLY_TEST_ORDERS")]
    pub apply_test_orders: bool,
    /// Largest accepted notification body, in bytes.
    #[arg(long, env = "IPN_MAX_BODY_BYTES", default_value_t = FormLimits::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
}

impl PipelineArgs {
    pub fn config(&self) -> anyhow::Result<PipelineConfig> {
        let pseudonym_key = match &self.pseudonym_key_file {
            None => None,
            Some(path) => {
                let text = std::fs::read(path).with_context(|| {
                    format!("cannot read pseudonym key file {}", path.display())
                })?;
                let key = text.trim_ascii();
                if key.is_empty() {
                    anyhow::bail!("pseudonym key file {} is empty", path.display());
                }
                Some(PseudonymKey::new(key))
            }
        };
        Ok(PipelineConfig {
            keys: self.keys.load()?,
            signatures: SignaturePolicy {
                allow_md5: self.allow_md5,
            },
            limits: FormLimits {
                max_body_bytes: self.max_body_bytes,
                ..FormLimits::default()
            },
            pseudonym_key,
            reconcile: ReconcilePolicy {
                apply_test_orders: self.apply_test_orders,
            },
        })
    }
}

impl std::fmt::Debug for DbArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs may carry a password: never print them whole.
        f.debug_struct("DbArgs")
            .field(
                "database_url",
                &crate::store::redact_url(&self.database_url),
            )
            .field("auto_migrate", &self.auto_migrate)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_render_each_cause_once() {
        let io = std::io::Error::other("connection refused");
        let err = anyhow::Error::new(crate::ipn::KeyError::Read {
            path: "/etc/keys".into(),
            source: io,
        })
        .context("cannot start");
        assert_eq!(
            render_error(&err),
            "cannot start: cannot read key file /etc/keys: connection refused"
        );
    }

    #[test]
    fn debug_of_parsed_command_lines_hides_url_passwords() {
        for args in [
            vec![
                "ipn-reconciler",
                "orders",
                "list",
                "--database-url",
                "postgres://app:S3CRET-PW@db/x",
            ],
            vec![
                "ipn-reconciler",
                "publish",
                "--amqp-url",
                "amqp://app:S3CRET-PW@mq:5672/%2f",
                "f.txt",
            ],
            vec![
                "ipn-reconciler",
                "demo",
                "--database-url",
                "postgres://app:S3CRET-PW@db/x_demo",
                "--amqp-url",
                "amqp://app:S3CRET-PW@mq:5672/%2f",
            ],
        ] {
            let cli = Cli::try_parse_from(&args).expect("parses");
            let shown = format!("{cli:?}");
            assert!(!shown.contains("S3CRET-PW"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
    }
}
