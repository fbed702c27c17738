//! `ipn-reconciler process FILE...`: replays notification bodies from disk
//! through verify -> tokenize -> apply, synchronously, without the broker.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;

use super::{DbArgs, PipelineArgs, block_on, read_body};
use crate::pipeline::Pipeline;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct ProcessArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Notification bodies, one per file, handled in the order given.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Prints one line per file: `<file> <outcome> [details]`. Exit 0 when every
/// file was handled, whatever its outcome; non-zero only when the database
/// or a file could not be read.
pub fn run(args: ProcessArgs) -> anyhow::Result<ExitCode> {
    let config = args.pipeline.config()?;
    block_on(async move {
        let store = Store::connect(args.db.settings()).await?;
        let pipeline = Pipeline::new(config, store);
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
            if let Some(reason) = &report.reason {
                line.push_str(&format!(" reason={reason}"));
            }
            if !report.review_items.is_empty() {
                let kinds: Vec<_> = report.review_items.iter().map(|k| k.as_str()).collect();
                line.push_str(&format!(" review={}", kinds.join(",")));
            }
            println!("{line}");
        }
        Ok(ExitCode::SUCCESS)
    })
}
