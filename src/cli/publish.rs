//! `ipn-reconciler publish FILE...`: hands notification bodies to the broker
//! the way the intake does (persistent, confirmed, sealed).
//!
//! Bodies are sealed with the key file's current key when one is configured
//! (`--key-file` / `IPN_KEYS_FILE`, as for the daemon). Without one they are
//! published in clear, as before sealing existed, with a warning: scripts
//! that work today keep working, and the worker accepts both.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;

use super::args::{self, BrokerFlags, ConfigFile, NotificationFlags};
use super::{CliResult, EXIT_OPERATIONAL, block_on, read_body, settings_error};
use crate::domain::BodyDigest;
use crate::ipn::{FormBody, NoticeKind};
use crate::queue::{MessageMeta, Publisher, Sealer};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Bodies are sealed for the broker with the key file's current key when \
--key-file (or IPN_KEYS_FILE) is set, and published in clear otherwise.\n\n\
Exit codes: 0 every body confirmed, 2 invalid configuration, 3 a body \
could not be read, sealed or was not confirmed."
)]
pub struct PublishArgs {
    #[command(flatten)]
    pub broker: BrokerFlags,
    /// The key file seals the bodies; the other keys of the group are read
    /// and checked but unused here.
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
    let sealer = match loaded.settings.notifications.key_file {
        Some(_) => Some(Sealer::new(&loaded.keys().map_err(settings_error)?)),
        None => {
            eprintln!("warning: not sealed: set --key-file to seal bodies in the broker");
            None
        }
    };
    let mut messages = Vec::with_capacity(args.files.len());
    for file in &args.files {
        let body = read_body(file, &limits)?;
        let mut meta = MessageMeta::received(Utc::now(), None);
        // Say which kind of notice it is, as the intake does; a body that
        // does not parse is published all the same (the worker refuses it).
        if let Ok(form) = FormBody::parse(&body, &limits) {
            meta = meta.notice(NoticeKind::of(&form));
        }
        messages.push(match &sealer {
            None => (body, meta),
            Some(sealer) => {
                let sealed = sealer
                    .seal(&body)
                    .map_err(|err| anyhow::anyhow!("{}: cannot seal: {err}", file.display()))?;
                let meta = meta.sealed(&sealed, BodyDigest::of(&body).as_str());
                (sealed.body, meta)
            }
        });
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
