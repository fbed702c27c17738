//! `ipn-reconciler bench`: throughput, latency and peak RSS of the worker
//! beside the broker's and the database's ceilings, from one run; `bench
//! intake`: the intake under `wrk` beside a bare publisher's ceiling.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::{CliError, CliResult, block_on};
use crate::bench::intake::IntakeBenchConfig;
use crate::bench::measure::{WorkerSpec, worker_main};
use crate::bench::{BenchConfig, BenchError, Progress};
use crate::secret::SecretUrl;
use crate::settings::Settings;
use crate::telemetry::{self, LogFormat};

const BENCH_EXIT_CODES: &str = "Exit codes: 0 measured, and every notification sent was \
committed (and, with --require-targets, every target met), 1 a notification was not committed \
or (with --require-targets) a target was missed, 2 usage error, 3 PostgreSQL or RabbitMQ cannot \
be reached, the worker failed, or the output cannot be written.";

const INTAKE_EXIT_CODES: &str = "Exit codes: 0 measured, and every receipt stands for a \
confirmed message (and, with --require-target, the intake reached 0.6 of the ceiling), 1 a \
receipt without a queued message or (with --require-target) the target missed, 2 usage error, \
3 RabbitMQ cannot be reached, wrk cannot run, or the output cannot be written.";

const WORKER_EXIT_CODES: &str = "Exit codes: 0 a report was printed, 2 usage error, 3 \
PostgreSQL or RabbitMQ cannot be reached.";

/// Measures the worker against the real RabbitMQ and PostgreSQL, with
/// fresh databases and queues of its own (dropped after), on simulated
/// notifications with duplicates and refunds, pre-published: its drain
/// rate, publish-to-commit latencies and peak RSS, beside the broker
/// ceiling (a bare consumer acking the same messages) and the database
/// ceiling (the same batched writes without the broker); `ratio` (worker /
/// the lower ceiling), `speedup` (worker / the same worker with batch size
/// 1), a sweep of batch sizes and concurrencies, and an offered-load run.
/// Writes bench.json and bench.svg to --out.
#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = BENCH_EXIT_CODES
)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Notifications (deliveries) to pre-publish and drain.
    #[arg(long, required = true)]
    pub notifications: Option<usize>,
    /// Batches applied at once (default: the daemon's `concurrency`).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Deliveries per transaction (default: the daemon's `batch-size`).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// How long a batch waits to fill (default: the daemon's `batch-wait`).
    #[arg(long, value_name = "DURATION")]
    pub batch_wait: Option<humantime::Duration>,
    /// Unacked deliveries the broker may push (default: the daemon's
    /// `prefetch`); the broker ceiling uses the same.
    #[arg(long)]
    pub prefetch: Option<u16>,
    /// Database connections of the worker (default: `db-pool-size`).
    #[arg(long)]
    pub pool_size: Option<usize>,
    /// Offered load: messages published per second while the worker runs.
    #[arg(long, default_value_t = 1000, value_name = "R")]
    pub offered_rate: u32,
    /// Offered load: for how many seconds (0: no offered-load run).
    #[arg(long, default_value_t = 20, value_name = "S")]
    pub offered_seconds: u32,
    /// Notifications per point of the batch-size and concurrency sweep
    /// (at most --notifications; 0: no sweep).
    #[arg(long, default_value_t = 4000, value_name = "N")]
    pub sweep_notifications: usize,
    /// Seed of the simulated notifications.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Where bench.json, bench.svg and the worker's logs go.
    #[arg(long, default_value = "bench-out", value_name = "DIR")]
    pub out: PathBuf,
    /// Exit 1 when a target is missed (ratio >= 0.6, speedup >= 3, p99 <
    /// 50 ms offered, peak RSS < 64 MiB).
    #[arg(long)]
    pub require_targets: bool,
    #[command(flatten)]
    pub servers: Servers,
}

/// The servers to measure against.
#[derive(Debug, Clone, clap::Args)]
pub struct Servers {
    /// The PostgreSQL server: its database name is replaced by the
    /// bench's own databases (created from a template, dropped after).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL", value_parser = secret_url)]
    pub database_url: Option<SecretUrl>,
    /// RabbitMQ URL; the bench declares queues of its own (deleted after).
    #[arg(long, env = "AMQP_URL", hide_env_values = true, value_name = "URL", value_parser = secret_url)]
    pub amqp_url: Option<SecretUrl>,
}

impl Servers {
    fn urls(&self) -> (SecretUrl, SecretUrl) {
        let defaults = Settings::default();
        (
            self.database_url
                .clone()
                .unwrap_or(defaults.database.database_url),
            self.amqp_url.clone().unwrap_or(defaults.broker.amqp_url),
        )
    }
}

fn secret_url(text: &str) -> Result<SecretUrl, String> {
    Ok(SecretUrl::new(text))
}

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// The intake under a real HTTP load generator (wrk): POST /ipn with
    /// valid signed bodies, requests/s and latency percentiles, beside a
    /// bare publisher with confirms measured in the same run.
    #[command(after_help = INTAKE_EXIT_CODES)]
    Intake(IntakeArgs),
    /// (internal) The worker of one bench phase, in a process of its own
    /// so that its peak RSS is its own; prints one JSON line.
    #[command(hide = true, after_help = WORKER_EXIT_CODES)]
    Worker(WorkerArgs),
}

#[derive(Debug, clap::Args)]
pub struct IntakeArgs {
    /// Connections wrk keeps open (requests in flight); the publisher
    /// ceiling keeps as many publishes in flight.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Seconds of load (and of the ceiling's run).
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// The wrk binary.
    #[arg(long, default_value = "wrk", value_name = "PATH")]
    pub wrk: PathBuf,
    /// Where intake.json and wrk's script go.
    #[arg(long, default_value = "bench-out", value_name = "DIR")]
    pub out: PathBuf,
    /// Exit 1 when the intake stays below 0.6 of the publisher's ceiling.
    #[arg(long)]
    pub require_target: bool,
    #[command(flatten)]
    pub servers: Servers,
}

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    #[arg(long, env = "BENCH_DATABASE_URL", hide_env_values = true, value_parser = secret_url)]
    pub database_url: SecretUrl,
    #[arg(long, env = "BENCH_AMQP_URL", hide_env_values = true, value_parser = secret_url)]
    pub amqp_url: SecretUrl,
    #[arg(long)]
    pub queue: String,
    #[arg(long)]
    pub batch_size: usize,
    #[arg(long)]
    pub batch_wait_ms: u64,
    #[arg(long)]
    pub concurrency: usize,
    #[arg(long)]
    pub prefetch: u16,
    #[arg(long)]
    pub pool_size: usize,
    #[arg(long)]
    pub expect: u64,
    #[arg(long)]
    pub timeout_secs: u64,
}

pub fn run(args: BenchArgs) -> CliResult {
    telemetry::init_with_default(LogFormat::Pretty, "warn,lapin=off");
    match args.command {
        Some(BenchCommand::Intake(intake)) => return run_intake(intake),
        Some(BenchCommand::Worker(worker)) => return run_worker(worker),
        None => {}
    }
    let (database_url, amqp_url) = args.servers.urls();
    let mut config = BenchConfig::new(
        database_url,
        amqp_url,
        args.notifications.unwrap_or_default(),
    );
    if let Some(value) = args.concurrency {
        config.concurrency = value;
    }
    if let Some(value) = args.batch_size {
        config.batch_size = value;
    }
    if let Some(value) = args.batch_wait {
        config.batch_wait = value.into();
    }
    if let Some(value) = args.prefetch {
        config.prefetch = value;
    }
    if let Some(value) = args.pool_size {
        config.pool_size = value;
    }
    config.offered_rate = args.offered_rate;
    config.offered_seconds = args.offered_seconds;
    config.sweep_notifications = args.sweep_notifications;
    config.seed = args.seed;
    config.out = args.out.clone();
    config.worker_exe = std::env::current_exe()
        .map_err(|err| CliError::operational(anyhow::anyhow!("cannot find this binary: {err}")))?;
    let progress = Progress::new(std::io::stderr().is_terminal());
    let report = block_on(async {
        crate::bench::run(&config, &progress)
            .await
            .map_err(bench_error)
    })?;
    let mut out = std::io::stdout().lock();
    report.render(&mut out)?;
    let json = args.out.join("bench.json");
    write_file(&json, &serde_json::to_vec_pretty(&report)?)?;
    let svg = args.out.join("bench.svg");
    let chart = crate::bench::chart::svg(&report)
        .map_err(|err| CliError::operational(anyhow::anyhow!("cannot draw the chart: {err}")))?;
    write_file(&svg, chart.as_bytes())?;
    writeln!(out, "wrote {} and {}", json.display(), svg.display())?;
    let failed =
        !report.all_committed() || (args.require_targets && !report.missed_targets().is_empty());
    Ok(if failed {
        ExitCode::from(super::EXIT_INVALID)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_intake(args: IntakeArgs) -> CliResult {
    let (database_url, amqp_url) = args.servers.urls();
    let config = IntakeBenchConfig {
        database_url,
        amqp_url,
        connections: args.connections,
        threads: args.threads,
        seconds: args.seconds,
        wrk: args.wrk.clone(),
        out: args.out.clone(),
    };
    let progress = Progress::new(std::io::stderr().is_terminal());
    let report = block_on(async {
        crate::bench::intake::run(&config, &progress)
            .await
            .map_err(bench_error)
    })?;
    let mut out = std::io::stdout().lock();
    report.render(&mut out)?;
    let json = args.out.join("intake.json");
    write_file(&json, &serde_json::to_vec_pretty(&report)?)?;
    writeln!(out, "wrote {}", json.display())?;
    let failed = !report.receipts_confirmed()
        || (args.require_target && report.ratio < crate::bench::intake::TARGET_INTAKE_RATIO);
    Ok(if failed {
        ExitCode::from(super::EXIT_INVALID)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_worker(args: WorkerArgs) -> CliResult {
    let spec = WorkerSpec {
        database_url: args.database_url,
        amqp_url: args.amqp_url,
        queue: args.queue,
        batch_size: args.batch_size,
        batch_wait: Duration::from_millis(args.batch_wait_ms),
        concurrency: args.concurrency,
        prefetch: args.prefetch,
        pool_size: args.pool_size,
        expect: args.expect,
        timeout: Duration::from_secs(args.timeout_secs),
    };
    let run = block_on(async { worker_main(spec).await.map_err(bench_error) })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(&run)?)?;
    Ok(ExitCode::SUCCESS)
}

fn bench_error(err: BenchError) -> CliError {
    if err.is_usage() {
        CliError::usage(err)
    } else {
        CliError::operational(err)
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    std::fs::write(path, bytes).map_err(|err| {
        CliError::operational(anyhow::anyhow!("cannot write {}: {err}", path.display()))
    })
}
