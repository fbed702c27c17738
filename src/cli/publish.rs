//! `ipn-reconciler publish FILE...`: hands notification bodies to the broker
//! the way the intake does (persistent, confirmed).

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;

use super::serve::AmqpArgs;
use super::{EXIT_OPERATIONAL, block_on, read_body};
use crate::ipn::FormLimits;
use crate::queue::{MessageMeta, Publisher};

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub amqp: AmqpArgs,
    /// Notification bodies, one per file (`-` for standard input).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Prints `published N of M (confirmed)`; exit 0 only when every body was
/// confirmed by the broker.
pub fn run(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let settings = args.amqp.settings()?;
    let limits = FormLimits::default();
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
        println!("published {confirmed} of {} (confirmed)", results.len());
        Ok(if confirmed == results.len() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_OPERATIONAL)
        })
    })
}
