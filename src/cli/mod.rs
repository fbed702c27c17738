//! The command line: one subcommand per job, each with its own `--help`.
//!
//! Commands are thin: they read input, call the library, and turn outcomes
//! into output and exit codes. Anything worth testing lives in the library.
//! The settings flags they share are declared once, in [`args`].
//!
//! Exit codes: 0 success; 1 the input is invalid (a signature that does
//! not verify); 2 usage, configuration or malformed input; 3 an
//! operational failure (database, broker, files).

mod actor;
pub mod args;
mod audit;
#[cfg(feature = "tools")]
mod bench;
mod books;
mod check;
mod clearing;
mod console;
pub(crate) mod dates;
#[cfg(feature = "tools")]
mod demo;
mod export;
mod finance;
mod intake;
mod ipn;
mod keys;
mod notifications;
mod orders;
mod parked;
mod process;
mod publish;
pub mod reference;
mod serve;
mod settlement;
#[cfg(feature = "tools")]
mod simulate;
mod subscriptions;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::ipn::{FormLimits, KeyRing};
use crate::settings::SettingsError;
use args::ConfigFile;

/// Exit code for "the input is invalid" (a bad signature).
pub const EXIT_INVALID: u8 = 1;
/// Exit code for malformed input, a usage or a configuration error (clap
/// uses 2 as well).
pub const EXIT_USAGE: u8 = 2;
/// Exit code for an operational failure (database, broker, I/O).
pub const EXIT_OPERATIONAL: u8 = 3;

/// Receives, verifies and reconciles Avangate / 2Checkout Instant Payment
/// Notifications (IPN) against the merchant's orders.
// The exit codes are the `after_help` (SEE_EACH_COMMAND), printed once.
#[derive(Debug, Parser)]
#[command(
    name = "ipn-reconciler",
    version,
    about,
    long_about,
    after_help = SEE_EACH_COMMAND
)]
#[cfg_attr(
    feature = "tools",
    command(mut_subcommand("simulate", with_exit_codes(SIMULATE_EXIT_CODES)))
)]
pub struct Cli {
    #[command(flatten)]
    pub config: ConfigFile,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with single notification bodies: verify, sign, build receipts.
    #[command(subcommand, after_help = SEE_EACH_COMMAND)]
    Ipn(ipn::IpnCommand),
    /// Validate the whole configuration and reach every dependency serve
    /// needs (database and schema, broker and topology, key files,
    /// listeners), one line per check; changes nothing.
    Check(Box<check::CheckArgs>),
    /// Apply pending database migrations (other commands do it too, unless
    /// AUTO_MIGRATE=false).
    #[command(
        after_help = "Exit codes: 0 migrated (or already up to date), 2 invalid \
configuration, 3 the database cannot be reached or created, or a migration failed."
    )]
    Migrate {
        #[command(flatten)]
        db: args::DatabaseFlags,
    },
    /// Import, show and list the merchant's orders.
    #[command(subcommand, after_help = SEE_EACH_COMMAND)]
    Orders(orders::OrdersCommand),
    /// The subscriptions the processor's notices name: list them, or show
    /// one with its orders and renewals.
    #[command(subcommand, after_help = SEE_EACH_COMMAND)]
    Subscriptions(subscriptions::SubscriptionsCommand),
    /// Replay notification files through verify -> tokenize -> apply,
    /// without the broker. Prints one outcome line per file.
    Process(process::ProcessArgs),
    /// Run the daemon: the intake (POST /ipn), the worker (consumes
    /// RabbitMQ, reconciles in PostgreSQL) and /healthz, /readyz, /metrics.
    Serve(Box<serve::ServeArgs>),
    /// The whole system in one command, for newcomers: simulated orders
    /// over HTTP through intake and worker, then the finance summary.
    #[cfg(feature = "tools")]
    #[command(
        after_help = "Exit codes: 0 the result equals the simulator's expectation, 1 \
it does not, 2 usage error, 3 PostgreSQL or RabbitMQ cannot be reached."
    )]
    Demo(demo::DemoArgs),
    /// Run the processor-facing intake alone (`serve` runs it too): POST
    /// /ipn answers with a read receipt once the notification is queued.
    Intake(Box<intake::IntakeArgs>),
    /// Publish notification bodies to the work exchange (persistent, with
    /// publisher confirms), as the intake does.
    Publish(publish::PublishArgs),
    /// The notification log: `notifications list`, filtered as the
    /// console's /notifications is.
    #[command(subcommand, after_help = SEE_EACH_COMMAND)]
    Notifications(notifications::NotificationsCommand),
    /// List or requeue the messages in the parking queue.
    #[command(subcommand, after_help = SEE_EACH_COMMAND)]
    Parked(parked::ParkedCommand),
    /// The daemon's own keys: `keys seal-new` prints a new line for the
    /// seal key file.
    #[command(subcommand, after_help = SEE_EACH_COMMAND)]
    Keys(keys::KeysCommand),
    /// Finance report of a period: orders by state, money per currency
    /// (paid, refunded, reversed, charged back, fees, net), open exceptions
    /// by kind with the oldest, notifications by outcome.
    Report(finance::ReportArgs),
    /// Close the books through a day (`books close`), reopen them, or show
    /// where they are closed (`books status`).
    #[command(subcommand, after_help = SEE_EACH_COMMAND)]
    Books(books::BooksCommand),
    /// Tamper evidence: `audit verify` recomputes the hash chains of the
    /// append-only tables and re-derives every order from the sealed facts.
    #[command(subcommand, after_help = SEE_EACH_COMMAND)]
    Audit(audit::AuditCommand),
    /// Export the books for an accounting system: `export journal`.
    #[command(subcommand, after_help = SEE_EACH_COMMAND)]
    Export(export::ExportCommand),
    /// The review queue: exceptions a person must look at.
    #[command(subcommand, after_help = SEE_EACH_COMMAND)]
    Review(finance::ReviewCommand),
    /// Simulate the payment processor: seeded, reproducible notifications
    /// for N orders with anomalies, the orders CSV and the expected states.
    #[cfg(feature = "tools")]
    Simulate(Box<simulate::SimulateArgs>),
    /// The finance console, a web page over the books: run it alone
    /// (`console --console-addr ADDR`; `serve --console-addr` runs it in the
    /// daemon), and manage its users (`console user add|disable`).
    Console(Box<console::ConsoleArgs>),
    /// The processor's payout export against the ledger: `settlement
    /// import`, `settlement report`.
    #[command(subcommand, after_help = SEE_EACH_COMMAND)]
    Settlement(settlement::SettlementCommand),
    /// Once, now: orders pending or authorized past stale-order-age,
    /// payments not settled and refunds not debited after settlement-days,
    /// recurring subscriptions not renewed past renewal-grace and renewals
    /// paid after a cancellation become review items (once per cause);
    /// items whose cause went away are closed. `serve` does it every
    /// sweep-interval.
    Sweep(settlement::SweepArgs),
    /// Measure the worker (drain rate, latencies, peak RSS) beside the
    /// broker's and the database's ceilings, from one run; `bench intake`
    /// measures the intake under wrk.
    #[cfg(feature = "tools")]
    Bench(Box<bench::BenchArgs>),
}

/// An error that ends a command, with the exit code it means. Commands
/// choose the code where they know what went wrong; anything else that
/// escapes is operational.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub error: anyhow::Error,
}

impl CliError {
    /// Exit 2: the command line, the configuration or the input is wrong.
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: EXIT_USAGE,
            error: error.into(),
        }
    }

    /// Exit 3: a dependency failed.
    pub fn operational(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: EXIT_OPERATIONAL,
            error: error.into(),
        }
    }

    /// Whether the error is only standard output being closed early
    /// (`ipn-reconciler orders list | head`): not worth a message.
    pub fn is_broken_pipe(&self) -> bool {
        self.error.chain().any(|cause| {
            cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
                || cause
                    .downcast_ref::<csv::Error>()
                    .is_some_and(|csv| matches!(csv.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe))
                || cause
                    .downcast_ref::<serde_json::Error>()
                    .and_then(serde_json::Error::io_error_kind)
                    == Some(std::io::ErrorKind::BrokenPipe)
        })
    }
}

/// Anything a command does not classify is operational.
impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(error: E) -> Self {
        Self::operational(error)
    }
}

/// A configuration that cannot be used is a usage error (exit 2).
pub fn settings_error(error: SettingsError) -> CliError {
    CliError::usage(anyhow::Error::new(error).context("invalid configuration"))
}

/// The result of a command.
pub type CliResult = Result<ExitCode, CliError>;

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
pub fn run(cli: Cli) -> CliResult {
    let config = &cli.config;
    match cli.command {
        Command::Ipn(command) => ipn::run(command),
        Command::Check(args) => check::run(config, *args),
        Command::Migrate { db } => orders::migrate(config, &db),
        Command::Orders(command) => orders::run(config, command),
        Command::Subscriptions(command) => subscriptions::run(config, command),
        Command::Process(args) => process::run(config, args),
        Command::Serve(args) => serve::run(config, *args),
        #[cfg(feature = "tools")]
        Command::Demo(args) => demo::run(args),
        Command::Intake(args) => intake::run(config, *args),
        Command::Publish(args) => publish::run(config, args),
        Command::Notifications(command) => notifications::run(config, command),
        Command::Parked(command) => parked::run(config, command),
        Command::Keys(command) => keys::run(command),
        Command::Report(args) => finance::report(config, args),
        Command::Books(command) => books::run(config, command),
        Command::Audit(command) => audit::run(config, command),
        Command::Export(command) => export::run(config, command),
        Command::Review(command) => finance::review(config, command),
        #[cfg(feature = "tools")]
        Command::Simulate(args) => simulate::run(config, *args),
        Command::Console(args) => console::run(config, *args),
        Command::Settlement(command) => settlement::run(config, command),
        Command::Sweep(args) => settlement::sweep(config, args),
        #[cfg(feature = "tools")]
        Command::Bench(args) => bench::run(*args),
    }
}

/// The `after_help` of the commands that only group others.
const SEE_EACH_COMMAND: &str = "Exit codes: 0 success, 1 invalid input (a signature that does \
not verify, an id that matches nothing), 2 usage, configuration or malformed input, 3 database, \
broker or file failure; each command's --help says which apply to it.";

/// `simulate`'s exit codes. Its `--help` text lives with the simulator;
/// they are added to it here, after whatever it says.
#[cfg(feature = "tools")]
const SIMULATE_EXIT_CODES: &str = "Exit codes: 0 written (and delivered with --target queue or \
http), 2 usage error or an unusable key file or configuration, 3 the output cannot be written or \
a delivery failed.";

/// Adds `exit_codes` to a command's help, short (`-h`) and long
/// (`--help`), after the text it already has.
#[cfg(feature = "tools")]
fn with_exit_codes(exit_codes: &'static str) -> impl FnOnce(clap::Command) -> clap::Command {
    move |command| {
        let join = |text: Option<&clap::builder::StyledStr>| match text {
            Some(text) => format!("{text}\n\n{exit_codes}"),
            None => exit_codes.to_owned(),
        };
        let short = join(command.get_after_help());
        let long = command.get_after_long_help().map(|text| join(Some(text)));
        let command = command.after_help(short);
        match long {
            Some(long) => command.after_long_help(long),
            None => command,
        }
    }
}

/// How a list or report is printed.
///
/// `table` is for people: a listing (orders, review items, settlement,
/// parked messages, notifications) is its view's columns aligned
/// (`view::Table::write_text`), times spelt as in its CSV; the other
/// tables (`report`, `export journal`) show times as `YYYY-MM-DD HH:MM`
/// UTC. `csv` and `json` are for spreadsheets and scripts: stable columns
/// (documented in docs/finance.md, "Exports"), times in RFC 3339 UTC to
/// the second (`2026-11-02T09:20:44Z`), amounts as exact decimal strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

/// A time as tables show it: `2026-11-02 09:20` (UTC).
pub fn table_time(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M").to_string()
}

/// Where keys come from for the single-notification tools: `--key-file`,
/// else `IPN_KEYS_FILE`.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// Key file: one key per line, `KEY_ID SECRET` or `KEY_ID "SECRET"` (a
    /// secret with spaces, `#` or quotes, `\"` and `\\` escaped); the first
    /// line is the current key, later lines are older keys still accepted.
    /// A line with only a secret gets the id `default`.
    #[arg(long, env = "IPN_KEYS_FILE", value_name = "FILE")]
    pub key_file: PathBuf,
}

impl KeyArgs {
    /// The key ring; an unusable key file is a usage error (exit 2).
    pub fn load(&self) -> Result<KeyRing, CliError> {
        crate::keys::read_key_ring(&self.key_file).map_err(CliError::usage)
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
/// needs one), then shuts the runtime down.
///
/// The runtime used to be leaked, to dodge a panic in lapin's I/O thread
/// (`lapin-io-loop`, a thread of its own, not a task of the runtime):
/// between attempts of lapin's own reconnect backoff it sleeps on the
/// runtime's timer, and a timer polled after its runtime has shut down
/// panics ("A Tokio 1.x context was found, but it is being shutdown").
/// No connection of this crate has that backoff any more
/// (`queue::AmqpSettings::connect`: lapin's recovery off, one attempt, the
/// crate's own supervisors retry), so the I/O thread never touches the
/// timer; it waits on socket events, which the runtime's I/O driver ends
/// with an error when it shuts down. A command closes the connections it
/// opened before it returns; tasks still alive here (a connection closing
/// in the background, lapin's heartbeat) are dropped. Blocking tasks (a
/// migration, a password hash) get [`RUNTIME_SHUTDOWN_GRACE`], so a stuck
/// one cannot hold the command's exit.
pub fn block_on<T>(future: impl Future<Output = Result<T, CliError>>) -> Result<T, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(future);
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_GRACE);
    result
}

/// How long [`block_on`] waits for blocking tasks once the command is done.
pub const RUNTIME_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

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
    fn a_closed_pipe_is_recognised_through_the_layers() {
        let pipe = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(CliError::from(pipe()).is_broken_pipe());
        assert!(CliError::from(anyhow::Error::new(pipe()).context("writing")).is_broken_pipe());
        assert!(CliError::from(csv::Error::from(pipe())).is_broken_pipe());
        assert!(CliError::from(serde_json::Error::io(pipe())).is_broken_pipe());
        assert!(!CliError::from(std::io::Error::other("disk full")).is_broken_pipe());
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
            #[cfg(feature = "tools")]
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
        }
    }

    /// Every command, and every group of commands, lists its exit codes
    /// in `-h` and in `--help`.
    #[test]
    fn every_command_documents_its_exit_codes() {
        use clap::CommandFactory;
        fn walk(command: &mut clap::Command, path: &str, missing: &mut Vec<String>) {
            let short = command.get_after_help().map(ToString::to_string);
            if !short.is_some_and(|text| text.contains("Exit codes: 0 ")) {
                missing.push(format!("{path} -h"));
            }
            // Once: a second copy (the doc comment and the after-help)
            // only makes a reader compare two lists.
            let times = command
                .render_long_help()
                .to_string()
                .matches("Exit codes: 0 ")
                .count();
            if times != 1 {
                missing.push(format!("{path} --help ({times} times)"));
            }
            for sub in command.get_subcommands_mut() {
                let name = sub.get_name().to_owned();
                if name != "help" {
                    walk(sub, &format!("{path} {name}"), missing);
                }
            }
        }
        let mut cli = Cli::command();
        cli.build();
        let mut missing = Vec::new();
        walk(&mut cli, "ipn-reconciler", &mut missing);
        assert!(
            missing.is_empty(),
            "exit codes not exactly once in: {missing:?}"
        );
        let count = cli.get_subcommands().count();
        assert!(count >= 14, "the walk saw {count} commands");
    }

    /// `simulate`, `bench` and `demo` are there exactly when built with the
    /// `tools` feature (a production build has none of them).
    #[test]
    fn the_development_tools_come_with_the_tools_feature() {
        use clap::CommandFactory;
        let cli = Cli::command();
        for name in ["simulate", "bench", "demo"] {
            assert_eq!(
                cli.find_subcommand(name).is_some(),
                cfg!(feature = "tools"),
                "{name}"
            );
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
