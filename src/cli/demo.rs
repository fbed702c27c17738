//! `ipn-reconciler demo`: one command that shows the whole system working.

use std::process::ExitCode;

use super::block_on;
use crate::demo::{DemoSettings, run as run_demo};
use crate::queue::DEFAULT_AMQP_URL;
use crate::telemetry::{self, LogFormat};

/// Runs intake and worker in-process against a demo database and queue,
/// POSTs a few hundred simulated orders' notifications (with duplicates,
/// out-of-order delivery, forged copies, wrong amounts, unknown orders and
/// card numbers in free text), waits until all is settled, prints the
/// finance summary, and exits 0 when the result equals the simulator's
/// expectation.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// The demo's database. It is EMPTIED at start, so its name must
    /// contain `demo`; it is created when missing.
    #[arg(long, env = "DEMO_DATABASE_URL", default_value = DemoSettings::DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
    /// RabbitMQ URL.
    #[arg(long, env = "AMQP_URL", default_value = DEFAULT_AMQP_URL, hide_env_values = true, hide_default_value = true)]
    pub amqp_url: String,
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
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    // Parked orphans are expected here: keep the worker's warnings out of the story.
    telemetry::init_with_default(LogFormat::Pretty, "warn,ipn_reconciler::worker=error");
    let mut settings = DemoSettings::new(args.database_url, args.amqp_url);
    settings.queue_base = args.queue;
    settings.orders = args.orders;
    settings.seed = args.seed;
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

impl std::fmt::Debug for DemoArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs may carry a password: never print them whole.
        f.debug_struct("DemoArgs")
            .field(
                "database_url",
                &crate::store::redact_url(&self.database_url),
            )
            .field("amqp_url", &crate::store::redact_url(&self.amqp_url))
            .field("orders", &self.orders)
            .finish_non_exhaustive()
    }
}
