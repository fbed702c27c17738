//! `ipn-reconciler export journal`: the money movements of a period as
//! double-entry journal lines, for the merchant's accounting system.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde::Serialize;

use super::args::database;
use super::args::{self, ConfigFile, DatabaseFlags, FinanceFlags};
use super::dates::{PeriodBound, period};
use super::{CliResult, OutputFormat, block_on, settings_error, table_time};
use crate::domain::journal::{Account, JournalAccounts, MovementKind, posting, trial_balance};
use crate::domain::{Currency, Money};
use crate::store::journal::JournalMovement;
use crate::store::reports::rfc3339;
use crate::store::{ReportBasis, Store};

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// The money movements of a period as journal lines: one line per
    /// payment, refund, reversal, chargeback, fee, VAT and commission
    /// movement, and per payout and settlement adjustment (reserve,
    /// dispute hold, other processor debit or credit), with its date,
    /// order, processor reference (REFNO), currency, the account it debits,
    /// the account it credits, the amount and the settlement batch.
    /// Movements are dated by their ledger row (fees and adjustments by
    /// their settlement line, payouts by their day in report-timezone), as
    /// `report --by event` counts them, so per currency the lines' sums by
    /// movement equal that report's paid, refunded, reversed, charged back
    /// and fees for the same period.
    #[command(
        after_help = "Posting: payment debits clearing and credits revenue; refund, reversal, \
chargeback and fee debit refunds, reversals, chargebacks and fees and credit clearing; payout \
debits bank and credits clearing (bank_debit the other way); reserve_held, dispute_held and \
processor_debit debit reserve, dispute_hold and processor_adjustments and credit clearing (their \
releases and processor_credit the other way). Name the accounts with --journal-accounts \
(default names: Processor clearing, Sales revenue, Refunds, Reversals, Chargebacks, Payment \
processing fees, Bank, Processor reserve, Dispute holds, Processor adjustments; see \
docs/finance.md, \"The journal\").\n\n\
Exit codes: 0 exported (an empty period too), 2 usage error (a bad date, --from not before \
--to) or invalid configuration (an unknown account), 3 the database cannot be read."
    )]
    Journal {
        #[command(flatten)]
        db: DatabaseFlags,
        #[command(flatten)]
        finance: FinanceFlags,
        /// Start of the period, included: a month (2026-11), a date
        /// (2026-11-01, from its midnight in report-timezone, UTC by
        /// default) or an RFC 3339 time.
        #[arg(long, value_name = "DATE", value_parser = PeriodBound::parse)]
        from: PeriodBound,
        /// End of the period: a month or a date is included whole (--from
        /// 2026-11 --to 2026-11 is November), an RFC 3339 time is
        /// excluded.
        #[arg(long, value_name = "DATE", value_parser = PeriodBound::parse)]
        to: PeriodBound,
        /// csv (for accounting imports): columns date,at,order_ref,
        /// processor_ref,movement,currency,debit_account,credit_account,
        /// amount,moved_at,batch_id (date: the day booked, in
        /// report-timezone; at: the instant booked, RFC 3339 UTC; moved_at:
        /// when the money moved, earlier than at for a movement late for a
        /// closed period; batch_id: the settlement batch of what a
        /// settlement line or a payout books); json: a list of objects with
        /// the same names; table: the lines for people, then the totals per
        /// currency.
        #[arg(long, value_enum, default_value_t = OutputFormat::Csv)]
        format: OutputFormat,
        /// event: every movement dated when the money moved, a settlement
        /// line's fee with its sale; settled: the same, but fees by their
        /// settlement date.
        #[arg(long, value_enum, default_value_t = JournalBasis::Event)]
        by: JournalBasis,
    },
}

/// `export journal --by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JournalBasis {
    Event,
    Settled,
}

impl From<JournalBasis> for ReportBasis {
    fn from(basis: JournalBasis) -> Self {
        match basis {
            JournalBasis::Event => ReportBasis::Event,
            JournalBasis::Settled => ReportBasis::Settled,
        }
    }
}

/// The columns of `export journal --format csv` (and the keys of its
/// JSON). Stable: new ones are added at the end.
pub const JOURNAL_CSV_COLUMNS: [&str; 11] = [
    "date",
    "at",
    "order_ref",
    "processor_ref",
    "movement",
    "currency",
    "debit_account",
    "credit_account",
    "amount",
    "moved_at",
    "batch_id",
];

/// One journal line: one movement, the same amount debited and credited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalLine {
    /// The day it is booked on, in report-timezone (UTC by default):
    /// `2026-11-30`.
    pub date: String,
    /// The instant it is booked at, RFC 3339 UTC to the second: when the
    /// money moved, or the first open instant when that fell in a period
    /// closed when it was recorded.
    #[serde(serialize_with = "rfc3339::serialize")]
    pub at: DateTime<Utc>,
    pub order_ref: String,
    pub processor_ref: String,
    pub movement: MovementKind,
    pub currency: String,
    pub debit_account: String,
    pub credit_account: String,
    /// Positive, exact, with the currency's decimals.
    pub amount: String,
    /// When the money moved, RFC 3339 UTC: the same as `at`, but earlier
    /// for a movement late for a closed period (the period it belongs to).
    #[serde(serialize_with = "rfc3339::serialize")]
    pub moved_at: DateTime<Utc>,
    /// The settlement batch of what a settlement line or a payout books.
    pub batch_id: Option<String>,
}

impl JournalLine {
    fn of(movement: &JournalMovement, accounts: &JournalAccounts, zone: chrono_tz::Tz) -> Self {
        let (debit, credit) = posting(movement.kind);
        Self {
            date: movement
                .at
                .with_timezone(&zone)
                .format("%Y-%m-%d")
                .to_string(),
            at: movement.at,
            order_ref: movement.order_ref.clone(),
            processor_ref: movement.processor_ref.clone(),
            movement: movement.kind,
            currency: movement.amount.currency().as_str().to_owned(),
            debit_account: accounts.name(debit).to_owned(),
            credit_account: accounts.name(credit).to_owned(),
            amount: movement.amount.format_amount(),
            moved_at: movement.occurred,
            batch_id: movement.batch_id.clone(),
        }
    }
}

pub fn run(config: &ConfigFile, command: ExportCommand) -> CliResult {
    let ExportCommand::Journal {
        db,
        finance,
        from,
        to,
        format,
        by,
    } = command;
    let finance_settings = args::load(config, &[&db, &finance])
        .map_err(settings_error)?
        .settings
        .finance;
    let zone = finance_settings.report_timezone.0;
    let period = period(Some(from), Some(to), by.into(), zone)?;
    let accounts = finance_settings.journal_accounts.0;
    let settings = database(config, &db)?;
    block_on(async move {
        let store = Store::connect(settings).await?;
        let movements = store.journal_movements_zoned(&period, zone.name()).await?;
        let lines: Vec<JournalLine> = movements
            .iter()
            .map(|m| JournalLine::of(m, &accounts, zone))
            .collect();
        let mut out = std::io::stdout().lock();
        match format {
            OutputFormat::Csv => write_csv(&mut out, &lines)?,
            OutputFormat::Json => {
                serde_json::to_writer_pretty(&mut out, &lines)?;
                writeln!(out)?;
            }
            OutputFormat::Table => write_table(&mut out, &lines, &movements, &accounts)?,
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn write_csv(out: impl Write, lines: &[JournalLine]) -> Result<(), csv::Error> {
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(JOURNAL_CSV_COLUMNS)?;
    for line in lines {
        csv.write_record([
            line.date.as_str(),
            &rfc3339::format(&line.at),
            // References can come from outside (a buy-link's REFNOEXT).
            &crate::view::csv_text(&line.order_ref),
            &crate::view::csv_text(&line.processor_ref),
            line.movement.as_str(),
            &line.currency,
            &line.debit_account,
            &line.credit_account,
            &line.amount,
            &rfc3339::format(&line.moved_at),
            &crate::view::csv_text(line.batch_id.as_deref().unwrap_or("")),
        ])?;
    }
    csv.flush()?;
    Ok(())
}

/// The lines for people, then per currency the total of each movement and
/// the balance of each account (debits minus credits; they sum to zero,
/// and the clearing account holds the net).
fn write_table(
    out: &mut impl Write,
    lines: &[JournalLine],
    movements: &[JournalMovement],
    accounts: &JournalAccounts,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<16}  {:<16} {:<12} {:<10} {:<4} {:>14}  DEBIT / CREDIT",
        "AT (UTC)", "ORDER", "REFNO", "MOVEMENT", "CUR", "AMOUNT"
    )?;
    for line in lines {
        writeln!(
            out,
            "{:<16}  {:<16} {:<12} {:<10} {:<4} {:>14}  {} / {}",
            table_time(&line.at),
            line.order_ref,
            line.processor_ref,
            line.movement,
            line.currency,
            line.amount,
            line.debit_account,
            line.credit_account
        )?;
    }
    writeln!(out, "{} line(s)", lines.len())?;
    let mut totals: BTreeMap<(Currency, MovementKind), i64> = BTreeMap::new();
    for m in movements {
        let sum = totals.entry((m.amount.currency(), m.kind)).or_default();
        *sum = sum.saturating_add(m.amount.minor_units());
    }
    let balances = trial_balance(movements.iter().map(|m| (m.kind, m.amount)));
    let currencies: std::collections::BTreeSet<Currency> =
        totals.keys().map(|(currency, _)| *currency).collect();
    for currency in currencies {
        writeln!(out, "\n{currency}")?;
        for kind in MovementKind::ALL {
            if let Some(minor) = totals.get(&(currency, kind)) {
                writeln!(
                    out,
                    "  {:<12} {:>14}",
                    kind.as_str(),
                    Money::from_minor(*minor, currency).format_amount()
                )?;
            }
        }
        for account in Account::ALL {
            if let Some(balance) = balances.get(&(currency, account)) {
                writeln!(
                    out,
                    "  balance {:<30} {:>14}",
                    accounts.name(account),
                    Money::from_minor(*balance, currency).format_amount()
                )?;
            }
        }
    }
    Ok(())
}
