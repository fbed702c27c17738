//! `ipn-reconciler intake`: the processor-facing endpoint alone (`serve`
//! runs it too, next to the worker), with its own operations endpoint.

use std::process::ExitCode;

use super::args::{self, BrokerFlags, ConfigFile, IntakeFlags, NotificationFlags, OperationsFlags};
use super::{CliResult, block_on, settings_error};
use crate::app::{AppConfig, Application, shutdown_signal};
use crate::telemetry;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 stopped cleanly, 2 invalid configuration, 3 a listener \
could not be bound."
)]
pub struct IntakeArgs {
    #[command(flatten)]
    pub notifications: NotificationFlags,
    #[command(flatten)]
    pub broker: BrokerFlags,
    #[command(flatten)]
    pub intake: IntakeFlags,
    #[command(flatten)]
    pub operations: OperationsFlags,
}

/// Serves the intake until SIGTERM/SIGINT. The broker may be down at start:
/// the intake answers 503 (no receipt) until it is back.
pub fn run(config: &ConfigFile, args: IntakeArgs) -> CliResult {
    let loaded = args::load(
        config,
        &[
            &args.notifications,
            &args.broker,
            &args.intake,
            &args.operations,
        ],
    )
    .map_err(settings_error)?;
    telemetry::init(loaded.settings.operations.log_format);
    let app_config = AppConfig::intake(&loaded).map_err(settings_error)?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        amqp = %app_config.amqp.redacted_url(),
        queue = %app_config.amqp.topology.base(),
        keys = %app_config.pipeline.keys.ids().join(","),
        "starting the intake"
    );
    block_on(async move {
        let shutdown = shutdown_signal()?;
        let app = Application::build(app_config).await?;
        app.run_until_stopped(shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}
