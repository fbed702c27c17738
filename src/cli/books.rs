//! `books close|reopen|status`: periods that stay closed.
//!
//! Closing the books through a day makes every period up to it final: a
//! movement that belongs to it but is recorded afterwards (a late notice,
//! a person's action, a settlement line's fee) is booked on the first open
//! day and listed by `report` as late for a closed period
//! (crate::domain::event_time). Each close and reopen is kept, with who
//! did it and, for a reopen, why.

use std::io::Write;
use std::process::ExitCode;

use chrono::{NaiveDate, Utc};
use clap::Subcommand;

use super::args::{ConfigFile, DatabaseFlags, PeriodFlags, books_with_zone};
use super::dates::{PeriodBound, day_start};
use super::{CliError, CliResult, OutputFormat, block_on};
use crate::domain::event_time::{check_close, check_reopen};
use crate::domain::pan::check_free_text;
use crate::store::Store;
use crate::store::books::{BooksAction, BooksChange, BooksClose};

#[derive(Debug, Subcommand)]
pub enum BooksCommand {
    /// Close the books through a day: nothing recorded afterwards changes
    /// the figures up to it. A movement that belongs to a closed period is
    /// booked on the first open day and listed by `report` as late for a
    /// closed period.
    #[command(
        after_help = "Days begin at midnight in report-timezone (UTC by default), the zone \
recorded with the close.\n\n\
Exit codes: 0 closed, 2 usage error (a bad date, a day not over yet, a day not later than the \
current close, an empty --by), 3 the database cannot be read or written."
    )]
    Close {
        #[command(flatten)]
        db: DatabaseFlags,
        #[command(flatten)]
        periods: PeriodFlags,
        /// The last day closed: a date (2026-11-30) or a month (2026-11,
        /// through its last day). It must be over, and later than the
        /// current close.
        #[arg(long, value_name = "DATE", value_parser = PeriodBound::parse)]
        through: PeriodBound,
        /// Who closes them (a name or staff id), for the audit trail.
        #[arg(long, value_name = "WHO")]
        by: String,
        /// Why, or a reference to the month-end checklist.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Reopen the books back to an earlier day (or entirely, without
    /// --through): movements recorded from now on are booked when they
    /// moved again, down to that day. What was booked meanwhile stays
    /// where it was booked.
    #[command(
        after_help = "Exit codes: 0 reopened, 2 usage error (the books are not closed, a day not \
earlier than the current close, an empty --by or --note), 3 the database cannot be read or \
written."
    )]
    Reopen {
        #[command(flatten)]
        db: DatabaseFlags,
        #[command(flatten)]
        periods: PeriodFlags,
        /// The last day that stays closed: a date or a month, earlier than
        /// the current close. Without it, nothing stays closed.
        #[arg(long, value_name = "DATE", value_parser = PeriodBound::parse)]
        through: Option<PeriodBound>,
        /// Who reopens them, for the audit trail.
        #[arg(long, value_name = "WHO")]
        by: String,
        /// Why: required, a reopened period is an event the auditors ask
        /// about.
        #[arg(long)]
        note: String,
    },
    /// Where the books are closed, and every close and reopen with who and
    /// why.
    #[command(after_help = "Exit codes: 0 printed, 3 the database cannot be read.")]
    Status {
        #[command(flatten)]
        db: DatabaseFlags,
        /// table: for people; csv: the history, columns
        /// at,action,through,time_zone,by,note; json: the current close and
        /// the history.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
}

/// The last day a `--through` names: a date itself, a month's last day.
fn last_day(through: PeriodBound) -> Result<NaiveDate, CliError> {
    match through {
        PeriodBound::Day(day) => Ok(day),
        PeriodBound::Month(first) => first
            .checked_add_months(chrono::Months::new(1))
            .and_then(|next| next.pred_opt())
            .ok_or_else(|| CliError::usage(anyhow::anyhow!("{first}: the month is out of range"))),
        PeriodBound::At(_) => Err(CliError::usage(anyhow::anyhow!(
            "--through takes a day (2026-11-30) or a month (2026-11): the books close on day \
             boundaries"
        ))),
    }
}

/// Who and why, as typed: not empty, no card number.
fn audit_text(flag: &'static str, text: &str, required: bool) -> Result<String, CliError> {
    let text = text.trim();
    if required && text.is_empty() {
        return Err(CliError::usage(anyhow::anyhow!(
            "{flag} must not be empty: the audit trail records who changed the books and why"
        )));
    }
    if text.chars().count() > 2000 || text.chars().any(char::is_control) {
        return Err(CliError::usage(anyhow::anyhow!(
            "{flag}: at most 2,000 characters, without control characters"
        )));
    }
    check_free_text(flag, text).map_err(CliError::usage)?;
    Ok(text.to_owned())
}

pub fn run(config: &ConfigFile, command: BooksCommand) -> CliResult {
    match command {
        BooksCommand::Close {
            db,
            periods,
            through,
            by,
            note,
        } => {
            let (settings, zone) = books_with_zone(config, &db, &periods)?;
            let through = last_day(through)?;
            let by = audit_text("--by", &by, true)?;
            if by.chars().count() > 100 {
                return Err(CliError::usage(anyhow::anyhow!(
                    "--by: at most 100 characters"
                )));
            }
            let note = audit_text("--note", &note, false)?;
            let open_from = through
                .succ_opt()
                .map(|next| day_start(next, zone))
                .ok_or_else(|| CliError::usage(anyhow::anyhow!("{through}: out of range")))?;
            let now = Utc::now();
            let change = BooksChange {
                action: BooksAction::Close,
                through: Some(through),
                open_from: Some(open_from),
                time_zone: zone.name().to_owned(),
                actor: super::actor::actor(Some(&by))?,
                note,
            };
            block_on(async move {
                let store = Store::connect(settings).await?;
                let recorded = store
                    .change_books(change, |current| {
                        check_close(through, open_from, zone, current, now)
                    })
                    .await?
                    .map_err(CliError::usage)?;
                let mut out = std::io::stdout().lock();
                writeln!(
                    out,
                    "Books closed through {through} ({zone}) by {}: the open books begin at {}. \
                     Movements that belong before it are booked from then on and listed by \
                     `report` as late for a closed period.",
                    recorded.done_by,
                    crate::store::reports::rfc3339::format(&open_from),
                )?;
                Ok(ExitCode::SUCCESS)
            })
        }
        BooksCommand::Reopen {
            db,
            periods,
            through,
            by,
            note,
        } => {
            let (settings, zone) = books_with_zone(config, &db, &periods)?;
            let through = through.map(last_day).transpose()?;
            let by = audit_text("--by", &by, true)?;
            if by.chars().count() > 100 {
                return Err(CliError::usage(anyhow::anyhow!(
                    "--by: at most 100 characters"
                )));
            }
            let note = audit_text("--note", &note, true)?;
            let open_from = match through {
                Some(day) => Some(
                    day.succ_opt()
                        .map(|next| day_start(next, zone))
                        .ok_or_else(|| CliError::usage(anyhow::anyhow!("{day}: out of range")))?,
                ),
                None => None,
            };
            let change = BooksChange {
                action: BooksAction::Reopen,
                through,
                open_from,
                time_zone: zone.name().to_owned(),
                actor: super::actor::actor(Some(&by))?,
                note,
            };
            block_on(async move {
                let store = Store::connect(settings).await?;
                store
                    .change_books(change, |current| check_reopen(through, current))
                    .await?
                    .map_err(CliError::usage)?;
                let mut out = std::io::stdout().lock();
                match through {
                    Some(day) => writeln!(
                        out,
                        "Books reopened: closed through {day} ({zone}) now; later days are open."
                    )?,
                    None => writeln!(out, "Books reopened: no period is closed now.")?,
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        BooksCommand::Status { db, format } => {
            let settings = super::args::database(config, &db)?;
            block_on(async move {
                let store = Store::connect(settings).await?;
                let history = store.books_history().await?;
                let mut out = std::io::stdout().lock();
                match format {
                    OutputFormat::Json => {
                        let current = history.last().filter(|c| c.through.is_some());
                        serde_json::to_writer_pretty(
                            &mut out,
                            &serde_json::json!({
                                "closed_through": current.and_then(|c| c.through),
                                "time_zone": current.map(|c| c.time_zone.as_str()),
                                "history": history,
                            }),
                        )?;
                        writeln!(out)?;
                    }
                    OutputFormat::Csv => {
                        let mut csv = csv::Writer::from_writer(&mut out);
                        csv.write_record(["at", "action", "through", "time_zone", "by", "note"])?;
                        for c in &history {
                            csv.write_record([
                                crate::store::reports::rfc3339::format(&c.created_at).as_str(),
                                c.action.as_str(),
                                &c.through.map(|d| d.to_string()).unwrap_or_default(),
                                &c.time_zone,
                                &crate::view::csv_text(&c.done_by),
                                &crate::view::csv_text(&c.note),
                            ])?;
                        }
                        csv.flush()?;
                    }
                    OutputFormat::Table => render_status(&mut out, &history)?,
                }
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}

fn render_status(out: &mut impl Write, history: &[BooksClose]) -> std::io::Result<()> {
    match history.last().and_then(|c| c.through.map(|day| (day, c))) {
        Some((day, close)) => writeln!(
            out,
            "Closed through {day} ({}); open from {}.",
            close.time_zone,
            close
                .open_from
                .as_ref()
                .map_or_else(String::new, crate::store::reports::rfc3339::format)
        )?,
        None => writeln!(out, "No period is closed.")?,
    }
    if history.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "\n  {:<16} {:<7} {:<11} {:<20} NOTE",
        "AT (UTC)", "ACTION", "THROUGH", "BY"
    )?;
    for c in history {
        writeln!(
            out,
            "  {:<16} {:<7} {:<11} {:<20} {}",
            super::table_time(&c.created_at),
            c.action.as_str(),
            c.through.map_or_else(|| "-".to_owned(), |d| d.to_string()),
            c.done_by,
            c.note
        )?;
    }
    Ok(())
}
