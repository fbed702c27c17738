//! `ipn-reconciler process FILE...`: replays notification bodies from disk
//! through verify -> tokenize -> apply, synchronously, without the broker.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;

use super::args::{self, ConfigFile, DatabaseFlags, NotificationFlags};
use super::{CliResult, block_on, read_body, settings_error};
use crate::pipeline::Pipeline;
use crate::store::Store;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 every file was handled (whatever its outcome), 2 invalid \
configuration, 3 a file or the database could not be read."
)]
pub struct ProcessArgs {
    #[command(flatten)]
    pub db: DatabaseFlags,
    #[command(flatten)]
    pub notifications: NotificationFlags,
    /// Notification bodies, one per file, handled in the order given.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Prints one line per file: `<file> <outcome> [details]`.
pub fn run(config: &ConfigFile, args: ProcessArgs) -> CliResult {
    let loaded = args::load(config, &[&args.db, &args.notifications]).map_err(settings_error)?;
    let pipeline_config = loaded.pipeline().map_err(settings_error)?;
    let mut database = loaded.database().map_err(settings_error)?;
    // Replaying adds to existing books: never into a database made by a typo.
    database.create_database = false;
    database.require_schema = true;
    block_on(async move {
        let store = Store::connect(database).await?;
        let pipeline = Pipeline::new(pipeline_config, store);
        let mut out = std::io::stdout().lock();
        for file in &args.files {
            let body = read_body(file, &pipeline.config().limits)?;
            let report = pipeline.handle(&body, Utc::now()).await?;
            let mut line = format!("{} {}", file.display(), report.outcome.as_str());
            if let Some(order_ref) = &report.order_ref {
                line.push_str(&format!(" order={order_ref}"));
            }
            if let Some(state) = report.order_state {
                line.push_str(&format!(" state={}", state.as_str()));
            }
            if let Some(refusal) = &report.refusal {
                line.push_str(&format!(" reason={refusal}"));
            }
            if !report.review_items.is_empty() {
                let kinds: Vec<_> = report.review_items.iter().map(|k| k.as_str()).collect();
                line.push_str(&format!(" review={}", kinds.join(",")));
            }
            writeln!(out, "{line}")?;
        }
        Ok(ExitCode::SUCCESS)
    })
}
