//! `ipn-reconciler publish FILE...`: hands notification bodies to the broker
//! the way the intake does (persistent, confirmed).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;

use super::args::{self, BrokerFlags, ConfigFile};
use super::{CliResult, EXIT_OPERATIONAL, block_on, read_body, settings_error};
use crate::queue::{MessageMeta, Publisher};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 every body confirmed, 2 invalid configuration, 3 a body \
could not be read or was not confirmed."
)]
pub struct PublishArgs {
    #[command(flatten)]
    pub broker: BrokerFlags,
    /// Notification bodies, one per file (`-` for standard input).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Prints `published N of M (confirmed)`; exit 0 only when every body was
/// confirmed by the broker.
pub fn run(config: &ConfigFile, args: PublishArgs) -> CliResult {
    let loaded = args::load(config, &[&args.broker]).map_err(settings_error)?;
    let settings = loaded.amqp().map_err(settings_error)?;
    let limits = loaded.limits();
    let mut messages = Vec::with_capacity(args.files.len());
    for file in &args.files {
        let body = read_body(file, &limits)?;
        messages.push((body, MessageMeta::received(Utc::now(), None)));
    }
    block_on(async move {
        let publisher = Publisher::connect(settings, "publish").await?;
        let results = publisher.publish_notifications(&messages).await?;
        publisher.close().await;
        let mut confirmed = 0;
        for (file, result) in args.files.iter().zip(&results) {
            match result {
                Ok(()) => confirmed += 1,
                Err(err) => eprintln!("{}: not confirmed: {err}", file.display()),
            }
        }
        writeln!(
            std::io::stdout(),
            "published {confirmed} of {} (confirmed)",
            results.len()
        )?;
        Ok(if confirmed == results.len() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_OPERATIONAL)
        })
    })
}
