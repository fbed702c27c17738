//! `ipn-reconciler settlement import|report` (the processor's payout
//! export against the ledger) and `ipn-reconciler sweep` (what never
//! happened becomes a review item).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use clap::Subcommand;

use super::args::{self, ConfigFile, DatabaseFlags, PeriodFlags, SettlementFlags};
use super::dates::PeriodBound;
use super::{CliError, CliResult, EXIT_INVALID, OutputFormat, block_on, settings_error};
use crate::domain::settlement::{LineStatus, Mapping, Tolerance, parse_payouts, parse_settlement};
use crate::domain::{Money, ReviewKind};
use crate::services::settlement::{ImportError, ImportOptions, ImportSummary};
use crate::services::sweep::sweep as sweep_once;
use crate::services::sweep::{
    SweepOutcome, database_now as sweep_database_now, dry_run as sweep_dry_run,
};
use crate::store::reports::rfc3339;
use crate::store::settlement::{BatchTotals, SettlementLineView};
use crate::store::{SchemaPolicy, Store, StoreError};

#[derive(Debug, Subcommand)]
pub enum SettlementCommand {
    /// Import the processor's payout export and match each line to the
    /// ledger: by REFNO (processor_ref) when the line has one (a REFNO of
    /// no payment, or of another order's, is settlement_unknown), else by
    /// order reference when that order has one payment. Default columns batch_id,processor_ref,
    /// order_ref,type,gross,fee,net,currency,settled_at (type: sale,
    /// refund, chargeback, reversal, fee, adjustment); --mapping reads
    /// another export's columns and words. One transaction; a line
    /// imported before is skipped, so importing a file again changes
    /// nothing. Differences open review items: settlement_unknown (no
    /// payment has its references), settlement_amount_differs (beyond the
    /// tolerance), payout_total_differs (with --payouts: a batch's net
    /// lines do not sum to its transfer).
    #[command(
        after_help = "Exit codes: 0 imported and every new line agrees with the ledger, 1 \
imported (or, with --dry-run, checked) and differences opened (would open) review items, 2 a \
malformed file or mapping (every bad line named; nothing imported) or a file larger than 64 \
MiB, a payout imported before \
with another amount, or another usage or configuration error, 3 a file cannot be read or the \
database fails."
    )]
    Import {
        #[command(flatten)]
        db: DatabaseFlags,
        #[command(flatten)]
        settlement: SettlementFlags,
        /// The settlement CSV.
        #[arg(value_name = "FILE.csv")]
        file: PathBuf,
        /// TOML file mapping another export's column names, type words,
        /// delimiter, date and number formats (decimal commas, thousands
        /// separators), title lines above the header, the sign rule for
        /// refunds written positive, and deduction columns summed into the
        /// fee (see docs/finance.md, "Another export's columns").
        #[arg(long, value_name = "FILE")]
        mapping: Option<PathBuf>,
        /// How far a line's amount may be from the ledger's and still
        /// match (0.01); default: settlement-tolerance.
        #[arg(long, value_name = "AMOUNT", value_parser = Tolerance::parse)]
        tolerance: Option<Tolerance>,
        /// The bank transfers, columns batch_id,paid_on,amount,currency:
        /// each batch's net lines must sum to its transfer.
        #[arg(long, value_name = "FILE.csv")]
        payouts: Option<PathBuf>,
        /// Match and show what would open, writing nothing.
        #[arg(long)]
        dry_run: bool,
        /// Who imports (a name or staff id), for the action log, which
        /// also records the operating-system account and host; default:
        /// the operating-system account.
        #[arg(long, value_name = "WHO")]
        by: Option<String>,
    },
    /// Per batch and currency: matched and unmatched lines and their gross,
    /// fees, net and the payout; with --unmatched, the lines that differ or
    /// that no payment has, each with its review item.
    #[command(
        after_help = "Exit codes: 0 printed (nothing imported yet too), 2 usage error or \
invalid configuration, 3 the database cannot be read."
    )]
    Report {
        #[command(flatten)]
        db: DatabaseFlags,
        /// Only this batch.
        #[arg(long, value_name = "ID")]
        batch: Option<String>,
        /// Also list the unmatched lines themselves (csv: only them).
        #[arg(long)]
        unmatched: bool,
        /// table: for people, the columns of csv aligned (with
        /// --unmatched, the lines' table under the batches'); csv: one row
        /// per batch and currency (columns
        /// batch_id,currency,first_settled_at,last_settled_at,lines,
        /// matched_lines,matched_gross,unmatched_lines,unmatched_gross,
        /// other_lines,other_net,gross,fees,net,payout,paid_on,
        /// payout_difference), or with --unmatched one row per line
        /// (id,batch_id,status,type,processor_ref,order_ref,currency,gross,
        /// fee,net,expected,settled_at,review_item_id); json: {"batches":
        /// [...], "unmatched_lines": [...]} with the same names.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
}

/// `sweep`: once, now.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Items a sweep opens are permanent (a person resolves them; the sweep closes \
only those whose cause went away), so --dry-run first shows what it would open and close \
without writing anything, and a real sweep --as-of a time after the database's clock is \
refused. A payment whose sale line matched it with another amount is a \
settlement_amount_differs item, never also an unsettled_payment one.

Exit codes: 0 swept or dry-run (whether or not it opened items), or skipped because \
another instance is sweeping, 2 usage error or invalid configuration (a future --as-of \
without --dry-run), 3 the database fails."
)]
pub struct SweepArgs {
    #[command(flatten)]
    pub db: DatabaseFlags,
    #[command(flatten)]
    pub settlement: SettlementFlags,
    #[command(flatten)]
    pub periods: PeriodFlags,
    /// Sweep as if it were this time (an RFC 3339 time, or the first
    /// instant of a month 2026-11 or a date 2026-11-30 in report-timezone)
    /// instead of now: what would be late by then. Items it opens stay
    /// open, so a time after the database's clock is refused unless with
    /// --dry-run.
    #[arg(long, value_name = "TIME", value_parser = PeriodBound::parse)]
    pub as_of: Option<PeriodBound>,
    /// Decide and print what the sweep would open and close, in the same
    /// form as a sweep, and write nothing (a read-only transaction).
    #[arg(long)]
    pub dry_run: bool,
}

/// The largest settlement or payouts file read (64 MiB, several hundred
/// thousand lines): the whole file is parsed in memory before anything is
/// written, so an unbounded one (a wrong file, a runaway export) would
/// exhaust memory instead of being refused.
pub const MAX_SETTLEMENT_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Why a settlement or payouts file was refused before being parsed.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path}: the file is larger than the limit of {limit} MiB for a settlement or payouts file \
({size}); split it by batch and import each part"
)]
pub struct TooLarge {
    path: String,
    limit: u64,
    /// What is known of its size: `N bytes`, or `more` for a stream.
    size: String,
}

/// A reader that fails, rather than ends, once more than `left` bytes are
/// read: a stream (a pipe, a device) has no size to check beforehand, and
/// cutting it short would parse a truncated file as if it were whole.
struct Capped<R> {
    inner: R,
    left: u64,
    tripped: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<R: std::io::Read> std::io::Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Read one byte past the limit to tell "exactly the limit" apart
        // from "more".
        let want = usize::try_from(self.left.saturating_add(1))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let Some(buf) = buf.get_mut(..want) else {
            return Ok(0);
        };
        let read = self.inner.read(buf)?;
        let read_u64 = u64::try_from(read).unwrap_or(u64::MAX);
        if read_u64 > self.left {
            self.tripped.set(true);
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the file is larger than the limit",
            ));
        }
        self.left -= read_u64;
        Ok(read)
    }
}

/// Opens a settlement or payouts file, refusing one larger than `limit`
/// bytes: by its size when it has one, else while it is read (the flag
/// tells the caller the limit was hit).
fn read_capped(
    path: &Path,
    limit: u64,
) -> Result<(Capped<std::fs::File>, std::rc::Rc<std::cell::Cell<bool>>), CliError> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open {}", path.display()))
        .map_err(CliError::operational)?;
    if let Ok(meta) = file.metadata()
        && meta.is_file()
        && meta.len() > limit
    {
        return Err(CliError::usage(too_large(
            path,
            limit,
            format!("{} bytes", meta.len()),
        )));
    }
    let tripped = std::rc::Rc::new(std::cell::Cell::new(false));
    Ok((
        Capped {
            inner: file,
            left: limit,
            tripped: tripped.clone(),
        },
        tripped,
    ))
}

fn too_large(path: &Path, limit: u64, size: String) -> TooLarge {
    TooLarge {
        path: path.display().to_string(),
        limit: limit / (1024 * 1024),
        size,
    }
}

/// Parses a settlement or payouts file at `path` with `parse`, within
/// [`MAX_SETTLEMENT_FILE_BYTES`]; a malformed or too large file is a usage
/// error (exit 2) naming the file.
fn parse_file<T>(
    path: &Path,
    parse: impl FnOnce(
        Capped<std::fs::File>,
    ) -> Result<T, crate::domain::settlement::SettlementFileError>,
) -> Result<T, CliError> {
    let (reader, tripped) = read_capped(path, MAX_SETTLEMENT_FILE_BYTES)?;
    parse(reader).map_err(|err| {
        if tripped.get() {
            CliError::usage(too_large(
                path,
                MAX_SETTLEMENT_FILE_BYTES,
                "more than that read".to_owned(),
            ))
        } else {
            CliError::usage(anyhow::Error::new(err).context(path.display().to_string()))
        }
    })
}

pub fn run(config: &ConfigFile, command: SettlementCommand) -> CliResult {
    match command {
        SettlementCommand::Import {
            db,
            settlement,
            file,
            mapping,
            tolerance,
            payouts,
            dry_run,
            by,
        } => {
            let actor = super::actor::actor(by.as_deref())?;
            let loaded = args::load(config, &[&db, &settlement]).map_err(settings_error)?;
            let tolerance = tolerance.unwrap_or(loaded.settings.settlement.settlement_tolerance.0);
            let mut database = loaded.database().map_err(settings_error)?;
            database.schema = SchemaPolicy::EXISTING;
            let mapping = match &mapping {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))
                        .map_err(CliError::operational)?;
                    Mapping::from_toml(&text)
                        .with_context(|| path.display().to_string())
                        .map_err(CliError::usage)?
                }
                None => Mapping::default(),
            };
            let lines = parse_file(&file, |reader| {
                parse_settlement(reader, &mapping, &database.currencies)
            })?;
            let payouts = match &payouts {
                Some(path) => {
                    parse_file(path, |reader| parse_payouts(reader, &database.currencies))?
                }
                None => Vec::new(),
            };
            // The file's name, not its path: what was imported, for the log.
            let subject = file
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .filter(|name| crate::domain::pan::check_free_text("file", name).is_ok())
                .unwrap_or_else(|| "(file name withheld)".to_owned());
            block_on(async move {
                let store = Store::connect(database).await?;
                let bar = progress_bar(lines.len() as u64);
                let summary = crate::services::settlement::import(
                    &store,
                    &lines,
                    &payouts,
                    ImportOptions { tolerance, dry_run },
                    crate::services::settlement::Importer {
                        actor: &actor,
                        subject: &subject,
                    },
                    &|n| bar.inc(n),
                )
                .await;
                bar.finish_and_clear();
                let summary = summary.map_err(|err| match err {
                    ImportError::PayoutDiffers { .. }
                    | ImportError::Store(StoreError::Invalid(_)) => CliError::usage(err),
                    other => CliError::operational(other),
                })?;
                let mut out = std::io::stdout().lock();
                print_import(&mut out, &file, &summary, tolerance)?;
                Ok(if summary.opened.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(EXIT_INVALID)
                })
            })
        }
        SettlementCommand::Report {
            db,
            batch,
            unmatched,
            format,
        } => {
            let settings = super::args::database(config, &db)?;
            block_on(async move {
                let store = Store::connect(settings).await?;
                let batches = store.settlement_report(batch.as_deref()).await?;
                let lines = if unmatched {
                    Some(store.unmatched_settlement_lines(batch.as_deref()).await?)
                } else {
                    None
                };
                let mut out = std::io::stdout().lock();
                match format {
                    OutputFormat::Table => {
                        write_report_table(&mut out, &batches, lines.as_deref())?
                    }
                    OutputFormat::Csv => match &lines {
                        Some(lines) => write_lines_csv(&mut out, lines)?,
                        None => write_batches_csv(&mut out, &batches)?,
                    },
                    OutputFormat::Json => {
                        let mut object = serde_json::json!({ "batches": batches });
                        if let Some(lines) = &lines {
                            object["unmatched_lines"] = serde_json::to_value(lines)?;
                        }
                        serde_json::to_writer_pretty(&mut out, &object)?;
                        writeln!(out)?;
                    }
                }
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}

/// A progress bar on standard error for big files on a terminal.
fn progress_bar(len: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if len < 5_000 || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "    {bar:40} {pos}/{len} settlement lines ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}

fn print_import(
    out: &mut impl Write,
    file: &Path,
    summary: &ImportSummary,
    tolerance: Tolerance,
) -> std::io::Result<()> {
    let new = summary.lines - summary.already_imported;
    writeln!(
        out,
        "{}{}: {} line(s), {} imported before (skipped), {new} new; tolerance {tolerance}",
        if summary.dry_run {
            "dry run, nothing written: "
        } else {
            ""
        },
        file.display(),
        summary.lines,
        summary.already_imported,
    )?;
    writeln!(
        out,
        "matched {} (by order reference {}), differs {}, unknown {}, other (fees, adjustments) {}",
        summary.count(LineStatus::Matched),
        summary.matched_by_order_ref,
        summary.count(LineStatus::Differs),
        summary.count(LineStatus::Unknown),
        summary.count(LineStatus::Other),
    )?;
    if !summary.totals.is_empty() {
        writeln!(
            out,
            "  {:<4} {:<8} {:>6} {:>14} {:>12} {:>14}",
            "CUR", "STATUS", "LINES", "GROSS", "FEES", "NET"
        )?;
        for ((currency, status), t) in &summary.totals {
            let money = |minor: i64| Money::from_minor(minor, *currency).format_amount();
            writeln!(
                out,
                "  {:<4} {:<8} {:>6} {:>14} {:>12} {:>14}",
                currency.as_str(),
                status.as_str(),
                t.lines,
                money(t.gross),
                money(t.fees),
                money(t.net)
            )?;
        }
    }
    if summary.payouts > 0 {
        let differs = summary
            .opened
            .iter()
            .filter(|f| f.kind == ReviewKind::PayoutTotalDiffers)
            .count();
        writeln!(
            out,
            "payouts: {} ({} imported before), {differs} not the sum of their batch's net lines",
            summary.payouts, summary.payouts_already_imported
        )?;
    }
    if summary.opened.is_empty() {
        writeln!(
            out,
            "no review item {}",
            if summary.dry_run {
                "would open"
            } else {
                "opened"
            }
        )?;
    } else {
        writeln!(
            out,
            "{} review item(s) {}:",
            summary.opened.len(),
            if summary.dry_run {
                "would open"
            } else {
                "opened"
            }
        )?;
        for finding in &summary.opened {
            writeln!(
                out,
                "  {:<26} {:<16} {}",
                finding.kind.as_str(),
                finding.order_ref.as_deref().unwrap_or("-"),
                finding.details
            )?;
        }
    }
    Ok(())
}

/// Totals per batch and currency (`view::settlement::batches`).
fn batches_table(batches: &[BatchTotals]) -> crate::view::Table {
    let caption = format!("{} batch(es) and currencies", batches.len());
    crate::view::settlement::batches(batches, caption)
}

/// The unmatched lines (`view::settlement::lines`).
fn lines_table(lines: &[SettlementLineView]) -> crate::view::Table {
    crate::view::settlement::lines(lines, format!("{} unmatched line(s)", lines.len()))
}

fn write_batches_csv(mut out: impl Write, batches: &[BatchTotals]) -> Result<(), CliError> {
    out.write_all(&batches_table(batches).csv()?)?;
    Ok(())
}

fn write_lines_csv(mut out: impl Write, lines: &[SettlementLineView]) -> Result<(), CliError> {
    out.write_all(&lines_table(lines).csv()?)?;
    Ok(())
}

/// For people: the batches' listing, and with --unmatched the lines'
/// listing under it, each with the columns of its CSV.
fn write_report_table(
    out: &mut impl Write,
    batches: &[BatchTotals],
    lines: Option<&[SettlementLineView]>,
) -> std::io::Result<()> {
    batches_table(batches).write_text(out)?;
    if let Some(lines) = lines {
        writeln!(out)?;
        lines_table(lines).write_text(out)?;
    }
    Ok(())
}

pub fn sweep(config: &ConfigFile, args: SweepArgs) -> CliResult {
    let loaded =
        args::load(config, &[&args.db, &args.settlement, &args.periods]).map_err(settings_error)?;
    let policy = loaded.sweep_policy();
    let mut database = loaded.database().map_err(settings_error)?;
    database.schema = SchemaPolicy::EXISTING;
    let zone = loaded.settings.finance.report_timezone.0;
    let as_of = args.as_of.map(|as_of| as_of.start(zone));
    let now = as_of.unwrap_or_else(Utc::now);
    let dry_run = args.dry_run;
    block_on(async move {
        let store = Store::connect(database).await?;
        if let Some(as_of) = as_of
            && !dry_run
        {
            let database_now = sweep_database_now(&store).await?;
            if as_of > database_now {
                return Err(CliError::usage(anyhow::anyhow!(
                    "sweep --as-of {} is after the database's time {}: a future sweep would \
                     write permanent review items for causes that have not happened yet; \
                     add --dry-run to see what it would open and close",
                    rfc3339::format(&as_of),
                    rfc3339::format(&database_now)
                )));
            }
        }
        let outcome = if dry_run {
            sweep_dry_run(&store, now, &policy).await?
        } else {
            sweep_once(&store, now, &policy).await?
        };
        let mut out = std::io::stdout().lock();
        if !outcome.ran {
            writeln!(out, "another instance is sweeping; nothing done")?;
            return Ok(ExitCode::SUCCESS);
        }
        write_sweep(&mut out, &now, dry_run, &outcome)?;
        Ok(ExitCode::SUCCESS)
    })
}

/// A sweep's outcome: the header, then one line per item opened and one
/// per item closed. A dry run prints the same, marked as one.
fn write_sweep(
    out: &mut impl Write,
    now: &chrono::DateTime<Utc>,
    dry_run: bool,
    outcome: &SweepOutcome,
) -> std::io::Result<()> {
    if dry_run {
        write!(out, "dry run, nothing written: ")?;
    }
    writeln!(
        out,
        "swept as of {}: opened {} review item(s), closed {} whose cause went away",
        rfc3339::format(now),
        outcome.opened.len(),
        outcome.closed
    )?;
    for finding in &outcome.opened {
        writeln!(
            out,
            "  {:<20} {:<16} {}",
            finding.kind.as_str(),
            finding.order_ref.as_deref().unwrap_or("-"),
            finding.details
        )?;
    }
    for item in &outcome.closed_items {
        writeln!(
            out,
            "  closed #{} {:<20} {:<16} {}",
            item.id,
            item.kind.as_str(),
            item.order_ref.as_deref().unwrap_or("-"),
            item.note
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn capped(
        bytes: &'static [u8],
        limit: u64,
    ) -> (Capped<&'static [u8]>, std::rc::Rc<std::cell::Cell<bool>>) {
        let tripped = std::rc::Rc::new(std::cell::Cell::new(false));
        (
            Capped {
                inner: bytes,
                left: limit,
                tripped: tripped.clone(),
            },
            tripped,
        )
    }

    /// Issue 22 item 5: a stream of exactly the limit is read whole; one
    /// byte more fails (never a silently truncated file).
    #[test]
    fn a_stream_is_read_up_to_the_limit_and_refused_beyond_it() {
        let (mut reader, tripped) = capped(b"0123456789", 10);
        let mut all = Vec::new();
        reader.read_to_end(&mut all).expect("exactly the limit");
        assert_eq!(all, b"0123456789");
        assert!(!tripped.get());

        let (mut reader, tripped) = capped(b"0123456789A", 10);
        let err = reader
            .read_to_end(&mut Vec::new())
            .expect_err("one byte more");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(tripped.get());
    }

    #[test]
    fn the_size_error_names_the_file_and_the_limit() {
        let err = too_large(
            Path::new("/tmp/export.csv"),
            MAX_SETTLEMENT_FILE_BYTES,
            "67108865 bytes".to_owned(),
        );
        assert_eq!(
            err.to_string(),
            "/tmp/export.csv: the file is larger than the limit of 64 MiB for a settlement or payouts file (67108865 bytes); split it by batch and import each part"
        );
    }
}
