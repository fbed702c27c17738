//! Finance staff's commands: `report` (the state of the books) and
//! `review list|resolve` (the exception queue).

use std::io::Write;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use super::args::{ConfigFile, DatabaseFlags};
use super::orders::database;
use super::{CliError, CliResult, block_on};
use crate::domain::ReviewKind;
use crate::domain::pan::check_free_text;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub db: DatabaseFlags,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// List review items (open ones unless --all), newest first.
    List {
        #[command(flatten)]
        db: DatabaseFlags,
        /// Include resolved items.
        #[arg(long)]
        all: bool,
        /// Only items of this kind (amount_mismatch, orphan_payment, ...).
        #[arg(long)]
        kind: Option<ReviewKind>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Mark a review item resolved, saying who and why.
    Resolve {
        #[command(flatten)]
        db: DatabaseFlags,
        /// The item's id (from `review list`).
        id: i64,
        /// Who resolved it (a name or staff id).
        #[arg(long)]
        by: String,
        /// What was done, for the audit trail. Do not paste personal data;
        /// a card number is refused (write `card ending 1111`).
        #[arg(long)]
        note: String,
        /// `note` (default): record the resolution only. `apply-repeat`
        /// (late_repeat items): the repeated refund or chargeback is a
        /// genuine second one; apply it, then resolve.
        #[arg(long, value_enum, default_value_t = ResolveAction::Note)]
        action: ResolveAction,
    },
}

/// What resolving a review item does besides recording who and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ResolveAction {
    Note,
    ApplyRepeat,
}

pub fn report(config: &ConfigFile, args: ReportArgs) -> CliResult {
    let settings = database(config, &args.db)?;
    block_on(async move {
        let store = Store::connect(settings).await?;
        let summary = store.finance_summary().await?;
        let mut out = std::io::stdout().lock();
        match args.format {
            Format::Json => {
                serde_json::to_writer_pretty(&mut out, &summary)?;
                writeln!(out)?;
            }
            Format::Table => summary.render(&mut out)?,
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn review(config: &ConfigFile, command: ReviewCommand) -> CliResult {
    match command {
        ReviewCommand::List {
            db,
            all,
            kind,
            format,
        } => {
            let settings = database(config, &db)?;
            block_on(async move {
                let store = Store::connect(settings).await?;
                let items = store.review_items(all, kind).await?;
                let mut out = std::io::stdout().lock();
                match format {
                    Format::Json => {
                        serde_json::to_writer_pretty(&mut out, &items)?;
                        writeln!(out)?;
                    }
                    Format::Table => {
                        for item in &items {
                            writeln!(
                                out,
                                "#{:<6} {:<9} {:<24} {:<16} {}",
                                item.id,
                                item.status,
                                item.kind,
                                item.order_ref.as_deref().unwrap_or("-"),
                                item.details
                            )?;
                        }
                        writeln!(out, "{} item(s)", items.len())?;
                    }
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        ReviewCommand::Resolve {
            db,
            id,
            by,
            note,
            action: ResolveAction::ApplyRepeat,
        } => {
            check_typed_text(&by, &note)?;
            let settings = database(config, &db)?;
            block_on(async move {
                let store = Store::connect(settings).await?;
                let report = store
                    .resolve_by_applying_repeat(id, by.trim(), note.trim(), &Default::default())
                    .await
                    .map_err(|err| match err {
                        // The item cannot be applied: what the person typed is wrong.
                        StoreError::Invalid(_) => CliError::usage(err),
                        other => CliError::operational(other),
                    })?;
                writeln!(
                    std::io::stdout(),
                    "review item #{id} resolved: the repeat was applied ({}, order now {})",
                    report.outcome,
                    report.order_state.map_or("-", |s| s.as_str())
                )?;
                Ok(ExitCode::SUCCESS)
            })
        }
        ReviewCommand::Resolve {
            db, id, by, note, ..
        } => {
            check_typed_text(&by, &note)?;
            let settings = database(config, &db)?;
            block_on(async move {
                let store = Store::connect(settings).await?;
                if store
                    .resolve_review_item(id, by.trim(), note.trim())
                    .await?
                {
                    writeln!(std::io::stdout(), "review item #{id} resolved")?;
                    Ok(ExitCode::SUCCESS)
                } else {
                    eprintln!("no open review item #{id}");
                    Ok(ExitCode::from(1))
                }
            })
        }
    }
}

/// Refuses a card number in what a person typed (`--by`, `--note`) before
/// anything connects: a usage error, and nothing is stored
/// (`Store::resolve_review_item` checks again).
fn check_typed_text(by: &str, note: &str) -> Result<(), CliError> {
    check_free_text("--by", by).map_err(CliError::usage)?;
    check_free_text("--note", note).map_err(CliError::usage)
}
