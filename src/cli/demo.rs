//! `ipn-reconciler demo`: one command that shows the whole system working.

use std::process::ExitCode;

use super::{CliResult, block_on};
use crate::demo::{DemoSettings, run as run_demo};
use crate::secret::SecretUrl;
use crate::settings::Settings;
use crate::telemetry::{self, LogFormat};

/// Runs intake and worker in-process against a demo database and queue,
/// POSTs a few hundred simulated orders' notifications (with duplicates,
/// out-of-order delivery, forged copies, wrong amounts, unknown orders and
/// card numbers in free text), waits until all is settled, prints the
/// finance summary; then does the same for a software vendor on the
/// processor's hosted cart (renewals, licence change notifications, VAT,
/// commission, USD payout). Exits 0 when every order, subscription and
/// figure equals the simulator's expectation (1 when one does not, 3 when
/// a service is unreachable).
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The demo's database. It is EMPTIED at start, so its name must
    /// contain `demo`; it is created when missing.
    #[arg(
        long,
        env = "DEMO_DATABASE_URL",
        default_value = DemoSettings::DEFAULT_DATABASE_URL,
        hide_env_values = true,
        value_name = "URL",
        value_parser = secret_url
    )]
    pub database_url: SecretUrl,
    /// RabbitMQ URL.
    #[arg(
        long,
        env = "AMQP_URL",
        hide_env_values = true,
        value_name = "URL",
        value_parser = secret_url
    )]
    pub amqp_url: Option<SecretUrl>,
    /// Base name of the demo's exchange and queues (deleted and declared
    /// again at start).
    #[arg(long, default_value = "ipn.demo")]
    pub queue: String,
    /// Number of simulated orders.
    #[arg(long, default_value_t = 300)]
    pub orders: usize,
    /// Seed of the simulation (the same seed gives the same run).
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Run only this profile (`default` or `software-vendor`); by default
    /// both, one after the other, each on an emptied database.
    #[arg(long, value_enum)]
    pub profile: Option<crate::simulate::Profile>,
    /// Number of the software vendor's simulated customers.
    #[arg(long, default_value_t = 150)]
    pub customers: usize,
}

fn secret_url(text: &str) -> Result<SecretUrl, String> {
    Ok(SecretUrl::new(text))
}

pub fn run(args: DemoArgs) -> CliResult {
    // Parked orphans are expected here: keep the worker's warnings out of the story.
    telemetry::init_with_default(
        LogFormat::Pretty,
        "warn,lapin=off,ipn_reconciler::worker=error",
    );
    let amqp_url = args
        .amqp_url
        .unwrap_or_else(|| Settings::default().broker.amqp_url);
    let mut settings = DemoSettings::new(args.database_url, amqp_url);
    settings.queue_base = args.queue;
    settings.orders = args.orders;
    settings.seed = args.seed;
    settings.vendor_customers = args.customers;
    if let Some(profile) = args.profile {
        settings.profiles = vec![profile];
    }
    block_on(async move {
        let mut out = std::io::stdout();
        let outcome = run_demo(&settings, &mut out).await?;
        Ok(if outcome.differences.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}
