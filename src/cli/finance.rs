//! Finance staff's commands: `report` (the books of a period) and
//! `review list|resolve` (the exception queue).

use std::io::Write;
use std::process::ExitCode;

use chrono::{DateTime, NaiveDate, Utc};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Subcommand, ValueEnum};

use super::args::{ConfigFile, DatabaseFlags};
use super::orders::database;
use super::{CliError, CliResult, OutputFormat, block_on, table_time};
use crate::domain::ReviewKind;
use crate::domain::pan::check_free_text;
use crate::store::reports::{ReviewStatus, rfc3339};
use crate::store::{FinanceSummary, ReportBasis, ReportPeriod, ReviewItem, Store, StoreError};

/// The books of a period: orders by state, money per currency (paid,
/// refunded, reversed, charged back, fees, net; never summed across
/// currencies), open exceptions by kind with the oldest, notifications by
/// outcome.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 printed, 2 usage error (a bad date, --from not before --to) or \
invalid configuration, 3 the database cannot be read."
)]
pub struct ReportArgs {
    #[command(flatten)]
    pub db: DatabaseFlags,
    /// Start of the period, included: a date (2026-11-01, from 00:00 UTC)
    /// or an RFC 3339 time. Without it: from the beginning of the books.
    #[arg(long, value_name = "DATE", value_parser = period_start)]
    pub from: Option<DateTime<Utc>>,
    /// End of the period: a date is included whole (--to 2026-11-30 counts
    /// until 2026-12-01T00:00:00Z); an RFC 3339 time is excluded. Without
    /// it: until now.
    #[arg(long, value_name = "DATE", value_parser = period_end)]
    pub to: Option<DateTime<Utc>>,
    /// created: the orders created in the period, with all their money
    /// whenever it moved; event: the money movements (payments, refunds,
    /// chargebacks recorded in the ledger) whose time falls in the period,
    /// whatever order they belong to.
    #[arg(long, value_enum, default_value_t = BasisArg::Created)]
    pub by: BasisArg,
    /// table: for people; csv: one row per figure, columns
    /// section,name,count,expected,paid,refunded,net,reversed,charged_back,
    /// fees,oldest_at,oldest_age_seconds; json: one object.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// `report --by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BasisArg {
    Created,
    Event,
}

impl From<BasisArg> for ReportBasis {
    fn from(basis: BasisArg) -> Self {
        match basis {
            BasisArg::Created => ReportBasis::Created,
            BasisArg::Event => ReportBasis::Event,
        }
    }
}

/// `--from`: a date is its first instant (00:00 UTC), a time is itself.
pub(super) fn period_start(text: &str) -> Result<DateTime<Utc>, String> {
    parse_bound(text, false)
}

/// `--to`: a date is included whole (the bound is the next day's 00:00
/// UTC, excluded), a time is itself (excluded).
pub(super) fn period_end(text: &str) -> Result<DateTime<Utc>, String> {
    parse_bound(text, true)
}

fn parse_bound(text: &str, end_of_day: bool) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let day = if end_of_day {
            day.succ_opt()
        } else {
            Some(day)
        };
        return day
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|at| at.and_utc())
            .ok_or_else(|| "the date is out of range".to_owned());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| {
            "give a date (2026-11-30) or an RFC 3339 time (2026-11-30T12:00:00Z)".to_owned()
        })
}

/// The period of `--from`, `--to` and `--by`; an empty period (from not
/// before to) is a usage error rather than a report of nothing.
pub(super) fn period(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    by: ReportBasis,
) -> Result<ReportPeriod, CliError> {
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Err(CliError::usage(anyhow::anyhow!(
            "--from {} is not before --to {}: the period is empty (a --to date is included whole)",
            rfc3339::format(&from),
            rfc3339::format(&to)
        )));
    }
    Ok(ReportPeriod { from, to, by })
}

#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// List review items (open ones unless --status says otherwise),
    /// newest first.
    #[command(
        after_help = "Exit codes: 0 listed (an empty list too), 2 an unknown --kind \
or --status or another usage error, invalid configuration, 3 the database cannot be read."
    )]
    List {
        #[command(flatten)]
        db: DatabaseFlags,
        /// Which items: open (waiting for a person), resolved, or all.
        #[arg(long, value_enum, default_value_t = StatusArg::Open)]
        status: StatusArg,
        /// Same as --status all.
        #[arg(long, conflicts_with = "status")]
        all: bool,
        /// Only items of this kind.
        #[arg(long, value_parser = review_kind_parser())]
        kind: Option<ReviewKind>,
        /// table: for people; csv: columns id,status,kind,order_ref,
        /// processor_ref,created_at,details,resolved_at,resolved_by,
        /// resolution_note; json: a list of objects with the same names.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Mark a review item resolved, saying who and why.
    #[command(
        after_help = "Exit codes: 0 resolved, 1 no open item with that id, 2 a bad id, \
an empty --by or --note, a card number in either, a repeat that cannot be applied, or invalid \
configuration, 3 the database cannot be read or written."
    )]
    Resolve {
        #[command(flatten)]
        db: DatabaseFlags,
        /// The item's id, as `review list` shows it: 12 or #12.
        #[arg(value_parser = parse_review_id)]
        id: i64,
        /// Who resolved it (a name or staff id).
        #[arg(long, value_parser = not_blank)]
        by: String,
        /// What was done, for the audit trail. Do not paste personal data;
        /// a card number is refused (write `card ending 1111`).
        #[arg(long, value_parser = not_blank)]
        note: String,
        /// `note` (default): record the resolution only. `apply-repeat`
        /// (late_repeat items): the repeated refund or chargeback is a
        /// genuine second one; apply it, then resolve.
        #[arg(long, value_enum, default_value_t = ResolveAction::Note)]
        action: ResolveAction,
    },
}

/// `review list --status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    Open,
    Resolved,
    All,
}

impl From<StatusArg> for ReviewStatus {
    fn from(status: StatusArg) -> Self {
        match status {
            StatusArg::Open => ReviewStatus::Open,
            StatusArg::Resolved => ReviewStatus::Resolved,
            StatusArg::All => ReviewStatus::All,
        }
    }
}

/// What resolving a review item does besides recording who and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ResolveAction {
    Note,
    ApplyRepeat,
}

/// `--kind`: one of the kinds this version knows, listed in `--help` and
/// in the error, so a filter that can match nothing (`--kind orphan`) is a
/// usage error rather than an empty list that looks like good news.
fn review_kind_parser() -> impl TypedValueParser<Value = ReviewKind> {
    PossibleValuesParser::new(ReviewKind::ALL.map(ReviewKind::as_str))
        .try_map(|text| ReviewKind::parse(&text))
}

/// A review item id as people copy it from `review list`: `12` or `#12`.
fn parse_review_id(text: &str) -> Result<i64, String> {
    let digits = text.trim();
    let digits = digits.strip_prefix('#').unwrap_or(digits);
    match digits.parse::<i64>() {
        Ok(id) if id > 0 && digits.bytes().all(|b| b.is_ascii_digit()) => Ok(id),
        _ => Err("not a review item id: give the number `review list` shows, 12 or #12".to_owned()),
    }
}

/// `--by` and `--note` are the audit trail: an empty one records nothing
/// of who or why, so it is refused (exit 2) instead of stored.
fn not_blank(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        Err("must not be empty: the audit trail records who resolved an item and why".to_owned())
    } else {
        Ok(text.to_owned())
    }
}

pub fn report(config: &ConfigFile, args: ReportArgs) -> CliResult {
    let period = period(args.from, args.to, args.by.into())?;
    let settings = database(config, &args.db)?;
    block_on(async move {
        let store = Store::connect(settings).await?;
        let summary = store.finance_report(&period).await?;
        let mut out = std::io::stdout().lock();
        match args.format {
            OutputFormat::Json => {
                serde_json::to_writer_pretty(&mut out, &summary)?;
                writeln!(out)?;
            }
            OutputFormat::Csv => write_summary_csv(&mut out, &summary)?,
            OutputFormat::Table => summary.render(&mut out)?,
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The columns of `report --format csv`. Stable: new ones are added at the
/// end, none is renamed or removed.
pub const REPORT_CSV_COLUMNS: [&str; 12] = [
    "section",
    "name",
    "count",
    "expected",
    "paid",
    "refunded",
    "net",
    "reversed",
    "charged_back",
    "fees",
    "oldest_at",
    "oldest_age_seconds",
];

/// The report as one rectangular CSV table, so that it opens in a
/// spreadsheet as it is and can be filtered by `section`:
/// `orders_by_state` (name: state, count: orders), `totals` (name:
/// currency, count: orders, and the amounts), `open_exceptions` (name:
/// kind, count: open items, and the oldest's time and age),
/// `notifications_by_outcome` (name: outcome, count: notifications).
/// Columns that do not apply are empty.
fn write_summary_csv(out: impl Write, summary: &FinanceSummary) -> Result<(), csv::Error> {
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(REPORT_CSV_COLUMNS)?;
    let count_row = |section: &str, name: &str, count: i64| {
        let mut row = [""; 12].map(str::to_owned);
        row[0] = section.to_owned();
        row[1] = name.to_owned();
        row[2] = count.to_string();
        row
    };
    for (state, count) in &summary.orders_by_state {
        csv.write_record(count_row("orders_by_state", state.as_str(), *count))?;
    }
    for t in &summary.totals {
        csv.write_record([
            "totals",
            t.currency.as_str(),
            &t.orders.to_string(),
            &t.expected,
            &t.paid,
            &t.refunded,
            &t.net,
            &t.reversed,
            &t.charged_back,
            &t.fees,
            "",
            "",
        ])?;
    }
    for e in &summary.open_exceptions {
        let mut row = count_row("open_exceptions", e.kind.as_str(), e.open);
        row[10] = rfc3339::format(&e.oldest_at);
        row[11] = e.oldest_age_seconds.to_string();
        csv.write_record(row)?;
    }
    for (outcome, count) in &summary.notifications_by_outcome {
        csv.write_record(count_row(
            "notifications_by_outcome",
            outcome.as_str(),
            *count,
        ))?;
    }
    csv.flush()?;
    Ok(())
}

pub fn review(config: &ConfigFile, command: ReviewCommand) -> CliResult {
    match command {
        ReviewCommand::List {
            db,
            status,
            all,
            kind,
            format,
        } => {
            let status = if all { StatusArg::All } else { status };
            let settings = database(config, &db)?;
            block_on(async move {
                let store = Store::connect(settings).await?;
                let items = store.review_items_by_status(status.into(), kind).await?;
                let mut out = std::io::stdout().lock();
                match format {
                    OutputFormat::Json => {
                        serde_json::to_writer_pretty(&mut out, &items)?;
                        writeln!(out)?;
                    }
                    OutputFormat::Csv => write_review_csv(&mut out, &items)?,
                    OutputFormat::Table => write_review_table(&mut out, &items)?,
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

/// The columns of `review list --format csv` (and the keys of its JSON).
pub const REVIEW_CSV_COLUMNS: [&str; 10] = [
    "id",
    "status",
    "kind",
    "order_ref",
    "processor_ref",
    "created_at",
    "details",
    "resolved_at",
    "resolved_by",
    "resolution_note",
];

fn write_review_csv(out: impl Write, items: &[ReviewItem]) -> Result<(), csv::Error> {
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(REVIEW_CSV_COLUMNS)?;
    for item in items {
        csv.write_record([
            item.id.to_string().as_str(),
            &item.status,
            item.kind.as_str(),
            item.order_ref.as_deref().unwrap_or(""),
            item.processor_ref.as_deref().unwrap_or(""),
            &rfc3339::format(&item.created_at),
            &item.details,
            &item
                .resolved_at
                .as_ref()
                .map(rfc3339::format)
                .unwrap_or_default(),
            item.resolved_by.as_deref().unwrap_or(""),
            item.resolution_note.as_deref().unwrap_or(""),
        ])?;
    }
    csv.flush()?;
    Ok(())
}

/// The review queue for people: a header, one line per item, and under a
/// resolved item who resolved it, when and why.
fn write_review_table(out: &mut impl Write, items: &[ReviewItem]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<7} {:<9} {:<16}  {:<24} {:<16} DETAILS",
        "ID", "STATUS", "CREATED (UTC)", "KIND", "ORDER"
    )?;
    for item in items {
        writeln!(
            out,
            "{:<7} {:<9} {:<16}  {:<24} {:<16} {}",
            format!("#{}", item.id),
            item.status,
            table_time(&item.created_at),
            item.kind,
            item.order_ref.as_deref().unwrap_or("-"),
            item.details
        )?;
        if let Some(at) = &item.resolved_at {
            writeln!(
                out,
                "{:<7} resolved {} by {}: {}",
                "",
                table_time(at),
                item.resolved_by.as_deref().unwrap_or("-"),
                item.resolution_note.as_deref().unwrap_or("-")
            )?;
        }
    }
    writeln!(out, "{} item(s)", items.len())
}

/// Refuses a card number in what a person typed (`--by`, `--note`) before
/// anything connects: a usage error, and nothing is stored
/// (`Store::resolve_review_item` checks again).
fn check_typed_text(by: &str, note: &str) -> Result<(), CliError> {
    check_free_text("--by", by).map_err(CliError::usage)?;
    check_free_text("--note", note).map_err(CliError::usage)
}
