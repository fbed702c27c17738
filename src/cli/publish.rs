//! `ipn-reconciler publish FILE...`: hands notification bodies to the broker
//! the way the intake does (persistent, confirmed, sealed).
//!
//! Bodies are sealed with the seal key file's current key
//! (`--seal-key-file` / `IPN_SEAL_KEYS_FILE`, as for the daemon), which is
//! required: nothing this program publishes travels in clear.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;

use super::args::{self, BrokerFlags, ConfigFile, NotificationFlags};
use super::{CliResult, EXIT_OPERATIONAL, block_on, read_body, settings_error};
use crate::ipn::{FormBody, NoticeKind};
use crate::queue::{MessageMeta, Publisher};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Bodies are sealed for the broker with the seal key file's current key \
(--seal-key-file or IPN_SEAL_KEYS_FILE, required).\n\n\
Exit codes: 0 every body confirmed, 2 invalid configuration (no seal key file too), 3 a body \
could not be read, sealed or was not confirmed."
)]
pub struct PublishArgs {
    #[command(flatten)]
    pub broker: BrokerFlags,
    /// Read and checked (the body limit applies); the keys are unused here.
    #[command(flatten)]
    pub notifications: NotificationFlags,
    /// Notification bodies, one per file (`-` for standard input).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Prints `published N of M (confirmed)`; exit 0 only when every body was
/// confirmed by the broker.
pub fn run(config: &ConfigFile, args: PublishArgs) -> CliResult {
    let loaded =
        args::load(config, &[&args.broker, &args.notifications]).map_err(settings_error)?;
    let settings = loaded.amqp().map_err(settings_error)?;
    let limits = loaded.limits();
    let sealer = loaded.sealer().map_err(settings_error)?;
    let mut messages = Vec::with_capacity(args.files.len());
    for file in &args.files {
        let body = read_body(file, &limits)?;
        let mut meta = MessageMeta::received(Utc::now(), None);
        // Say which kind of notice it is, as the intake does; a body that
        // does not parse is published all the same (the worker refuses it).
        if let Ok(form) = FormBody::parse(&body, &limits) {
            meta = meta.notice(NoticeKind::of(&form));
        }
        let sealed = sealer
            .seal(&body, meta)
            .map_err(|err| anyhow::anyhow!("{}: cannot seal: {err}", file.display()))?;
        messages.push((sealed.body, sealed.meta));
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
