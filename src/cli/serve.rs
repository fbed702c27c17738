//! `ipn-reconciler serve`: the worker daemon.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::{DbArgs, EXIT_USAGE, PipelineArgs, block_on};
use crate::queue::topology::parse_duration;
use crate::queue::{AmqpSettings, DEFAULT_AMQP_URL, DEFAULT_QUEUE_BASE, RetryDelays, Topology};
use crate::telemetry::{self, LogFormat};
use crate::worker::{self, ServeSettings, WorkerSettings};

/// Where the broker is and what the queues are called (shared by `serve`,
/// `publish` and `parked`).
#[derive(Clone, clap::Args)]
pub struct AmqpArgs {
    /// RabbitMQ URL. Its password is never logged.
    #[arg(long, env = "AMQP_URL", default_value = DEFAULT_AMQP_URL, hide_env_values = true, hide_default_value = true)]
    pub amqp_url: String,
    /// Base name of the exchange and queues (`<base>`, `<base>.retry.<delay>`,
    /// `<base>.parked`).
    #[arg(long, env = "AMQP_QUEUE", default_value = DEFAULT_QUEUE_BASE)]
    pub amqp_queue: String,
    /// Delays of the broker-side retries, in order (units ms, s, m, h).
    #[arg(long, env = "IPN_RETRY_DELAYS", default_value = "5s,30s,2m,10m,1h", value_parser = RetryDelays::parse)]
    pub retry_delays: RetryDelays,
    /// Deliveries of one message before the broker parks it (poison backstop).
    #[arg(long, env = "IPN_DELIVERY_LIMIT", default_value_t = Topology::DEFAULT_DELIVERY_LIMIT)]
    pub delivery_limit: u32,
}

impl AmqpArgs {
    pub fn settings(&self) -> anyhow::Result<AmqpSettings> {
        let topology = Topology::new(&self.amqp_queue, self.retry_delays.clone())?
            .with_delivery_limit(self.delivery_limit);
        Ok(AmqpSettings::new(self.amqp_url.clone(), topology)?)
    }
}

pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text.trim())
        .ok_or_else(|| format!("`{text}` is not a number followed by ms, s, m or h"))
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    #[command(flatten)]
    pub amqp: AmqpArgs,
    /// Unacked deliveries the broker may push to this worker.
    #[arg(long, env = "IPN_PREFETCH", default_value_t = WorkerSettings::DEFAULT_PREFETCH, value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,
    /// Notifications processed at the same time.
    #[arg(long, env = "IPN_CONCURRENCY", default_value_t = WorkerSettings::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// How long a notification for an unknown order is retried before it
    /// becomes an orphan_payment review item and is parked.
    #[arg(long, env = "IPN_ORPHAN_WINDOW", default_value = "1h", value_parser = duration)]
    pub orphan_window: Duration,
    /// How long SIGTERM/SIGINT waits for notifications in flight.
    #[arg(long, env = "IPN_SHUTDOWN_DEADLINE", default_value = "30s", value_parser = duration)]
    pub shutdown_deadline: Duration,
    /// Address of the operations endpoint (/healthz, /readyz, /metrics).
    #[arg(long, env = "IPN_HTTP_ADDR", default_value = "127.0.0.1:9187")]
    pub http_addr: SocketAddr,
    #[command(flatten)]
    pub intake: super::intake::IntakeArgs,
    /// Run the worker only, without the intake listener (when the intake
    /// runs elsewhere as `ipn-reconciler intake`).
    #[arg(long, env = "IPN_NO_INTAKE")]
    pub no_intake: bool,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty", value_enum)]
    pub log_format: LogFormat,
}

/// Runs until SIGTERM or SIGINT, then drains. Exit 0 after a clean drain;
/// 2 when the configuration is invalid (nothing was started).
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    telemetry::init(args.log_format);
    let settings = match settings(&args) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!(
                "error: invalid configuration: {}",
                super::render_error(&err)
            );
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    tracing::info!(
        amqp = %settings.worker.amqp.redacted_url(),
        queue = %settings.worker.amqp.topology.base(),
        database = %settings.database.redacted_url(),
        retry_delays = %settings.worker.amqp.topology.retry_delays(),
        prefetch = settings.worker.prefetch,
        concurrency = settings.worker.concurrency,
        "starting the worker"
    );
    block_on(async move {
        let shutdown = shutdown_signal()?;
        let summary = worker::serve(settings, shutdown).await?;
        if summary.abandoned > 0 {
            tracing::warn!(
                abandoned = summary.abandoned,
                "stopped with work unfinished"
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn settings(args: &ServeArgs) -> anyhow::Result<ServeSettings> {
    if args.concurrency == 0 {
        anyhow::bail!("--concurrency must be at least 1");
    }
    let mut worker = WorkerSettings::new(args.amqp.settings()?);
    worker.prefetch = args.prefetch;
    worker.concurrency = args.concurrency;
    worker.orphan_window = args.orphan_window;
    worker.shutdown_deadline = args.shutdown_deadline;
    let database = args.db.settings();
    database
        .url
        .parse::<tokio_postgres::Config>()
        .map_err(|_| {
            anyhow::anyhow!(
                "DATABASE_URL {} is not a postgres:// URL",
                database.redacted_url()
            )
        })?;
    let pipeline = args.pipeline.config()?;
    let intake = if args.no_intake {
        None
    } else {
        Some(worker::IntakeListen {
            addr: args.intake.intake_addr,
            settings: args.intake.settings(pipeline.limits)?,
        })
    };
    Ok(ServeSettings {
        database,
        pipeline,
        worker,
        http_addr: Some(args.http_addr),
        intake,
    })
}

/// Completes on the first SIGTERM or SIGINT.
pub(crate) fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

impl std::fmt::Debug for AmqpArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs may carry a password: never print them whole.
        f.debug_struct("AmqpArgs")
            .field("amqp_url", &crate::store::redact_url(&self.amqp_url))
            .field("amqp_queue", &self.amqp_queue)
            .finish_non_exhaustive()
    }
}
