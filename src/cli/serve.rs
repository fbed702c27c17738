//! `ipn-reconciler serve`: the daemon.

use std::process::ExitCode;

use super::args::{
    self, BrokerFlags, ConfigFile, ConsoleFlags, DatabaseFlags, FourEyesFlags, IntakeFlags,
    NotificationFlags, OperationsFlags, PeriodFlags, SettlementFlags, WorkerFlags,
};
use super::{CliResult, block_on, settings_error};
use crate::app::{AppConfig, Application, shutdown_signal};
use crate::telemetry;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 stopped cleanly, 2 invalid configuration, 3 a listener \
could not be bound or the database could not be migrated."
)]
pub struct ServeArgs {
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
    pub console: ConsoleFlags,
    #[command(flatten)]
    pub settlement: SettlementFlags,
    /// The console's period filters.
    #[command(flatten)]
    pub periods: PeriodFlags,
    /// The console's second look at a link_order.
    #[command(flatten)]
    pub four_eyes: FourEyesFlags,
}

/// Runs until SIGTERM or SIGINT, then drains. Exit 0 after a clean drain;
/// 2 when the configuration is invalid (nothing was started).
pub fn run(config: &ConfigFile, args: ServeArgs) -> CliResult {
    let loaded = args::load(
        config,
        &[
            &args.db,
            &args.notifications,
            &args.broker,
            &args.worker,
            &args.intake,
            &args.operations,
            &args.console,
            &args.settlement,
            &args.periods,
            &args.four_eyes,
        ],
    )
    .map_err(settings_error)?;
    telemetry::init(loaded.settings.operations.log_format);
    let app_config = AppConfig::serve(&loaded).map_err(settings_error)?;
    let s = &loaded.settings;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        amqp = %app_config.amqp.redacted_url(),
        queue = %app_config.amqp.topology.base(),
        database = %s.database.database_url.redacted(),
        retry_delays = %s.broker.retry_delays,
        prefetch = s.worker.prefetch,
        concurrency = s.worker.concurrency,
        keys = %app_config.pipeline.keys.ids().join(","),
        "starting"
    );
    block_on(async move {
        let shutdown = shutdown_signal()?;
        let app = Application::build(app_config).await?;
        let summary = app.run_until_stopped(shutdown).await?;
        if summary.abandoned > 0 {
            tracing::warn!(
                abandoned = summary.abandoned,
                "stopped with work unfinished"
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
