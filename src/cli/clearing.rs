//! `ipn-reconciler report clearing`: the processor clearing account of a
//! period, per currency, reconciled to the bank, with what explains a
//! closing balance that is not zero (docs/finance.md, "The clearing
//! account").

use std::io::Write;
use std::process::ExitCode;

use super::args::{ConfigFile, DatabaseFlags, PeriodFlags, books_with_zone};
use super::dates::{PeriodBound, period};
use super::{CliResult, OutputFormat, block_on};
use crate::store::clearing::ClearingReport;
use crate::store::reports::rfc3339;
use crate::store::{ReportBasis, Store};

/// The processor clearing account of a period, per currency, reconciled
/// to the bank.
///
/// Per currency: opening balance, what sales, refunds, chargebacks, fees, VAT, commission, payouts and
/// adjustments (reserves, dispute holds, the processor's other debits and
/// credits) did to it, closing balance; then every item that explains a
/// closing balance that is not zero (unsettled payments, refunds and
/// chargebacks not debited, settlement lines that differ or that no
/// payment has, batches not paid out, payouts that differ from their
/// lines).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Each figure is the signed effect on the clearing account (a debit \
positive): opening + sales + refunds + chargebacks + fees + vat + commission + payouts + \
adjustments + conversions + write-offs + other = closing. The figures are those of `export journal` for the same period. \
Items are as of --to; `explained` is the sum of their effects, `unexplained` the rest of the \
closing balance.\n\n\
Exit codes: 0 printed, 2 usage error (a bad date, --from not before --to) or invalid \
configuration, 3 the database cannot be read."
)]
pub struct ClearingArgs {
    #[command(flatten)]
    pub db: DatabaseFlags,
    #[command(flatten)]
    pub periods: PeriodFlags,
    /// Start of the period, included: a month (2026-11), a date
    /// (2026-11-01, from its midnight in report-timezone, UTC by default)
    /// or an RFC 3339 time. Without it: from the beginning of the books
    /// (the opening balance is zero).
    #[arg(long, value_name = "DATE", value_parser = PeriodBound::parse)]
    pub from: Option<PeriodBound>,
    /// End of the period: a month or a date is included whole, an RFC
    /// 3339 time is excluded. Without it: until now.
    #[arg(long, value_name = "DATE", value_parser = PeriodBound::parse)]
    pub to: Option<PeriodBound>,
    /// table: for people; csv: one row per currency (section `clearing`)
    /// and per item (section `item`), columns section,currency,opening,
    /// sales,refunds,chargebacks,fees,vat,commission,payouts,adjustments,
    /// conversions,write_offs,other,closing,explained,unexplained,kind,order_ref,processor_ref,
    /// batch_id,at,amount,effect,review_item_id; json: one object.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// The columns of `report clearing --format csv`. Stable: new ones are
/// added at the end.
pub const CLEARING_CSV_COLUMNS: [&str; 25] = [
    "section",
    "currency",
    "opening",
    "sales",
    "refunds",
    "chargebacks",
    "fees",
    "vat",
    "commission",
    "payouts",
    "adjustments",
    "conversions",
    "write_offs",
    "other",
    "closing",
    "explained",
    "unexplained",
    "kind",
    "order_ref",
    "processor_ref",
    "batch_id",
    "at",
    "amount",
    "effect",
    "review_item_id",
];

pub fn run(config: &ConfigFile, args: ClearingArgs) -> CliResult {
    let (settings, zone) = books_with_zone(config, &args.db, &args.periods)?;
    let period = period(args.from, args.to, ReportBasis::Event, zone)?;
    block_on(async move {
        let store = Store::connect(settings).await?;
        let report = store.clearing_report(&period, zone.name()).await?;
        let mut out = std::io::stdout().lock();
        match args.format {
            OutputFormat::Json => {
                serde_json::to_writer_pretty(&mut out, &report)?;
                writeln!(out)?;
            }
            OutputFormat::Csv => write_csv(&mut out, &report)?,
            OutputFormat::Table => write_table(&mut out, &report)?,
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn write_csv(out: impl Write, report: &ClearingReport) -> Result<(), csv::Error> {
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(CLEARING_CSV_COLUMNS)?;
    for t in &report.currencies {
        let mut row = [""; CLEARING_CSV_COLUMNS.len()].map(str::to_owned);
        for (i, value) in [
            "clearing",
            &t.currency,
            &t.opening,
            &t.sales,
            &t.refunds,
            &t.chargebacks,
            &t.fees,
            &t.vat,
            &t.commission,
            &t.payouts,
            &t.adjustments,
            &t.conversions,
            &t.write_offs,
            &t.other,
            &t.closing,
            &t.explained,
            &t.unexplained,
        ]
        .into_iter()
        .enumerate()
        {
            row[i] = value.to_owned();
        }
        csv.write_record(row)?;
    }
    for item in &report.items {
        let mut row = [""; CLEARING_CSV_COLUMNS.len()].map(str::to_owned);
        // Placed by column name: the statement's columns come first, and
        // grow when a statement line is added.
        let mut put = |name: &str, value: String| {
            if let Some(at) = CLEARING_CSV_COLUMNS.iter().position(|c| *c == name) {
                row[at] = value;
            }
        };
        put("section", "item".to_owned());
        put("currency", item.currency.clone());
        put("kind", item.kind.as_str().to_owned());
        // References can come from outside (a buy-link's REFNOEXT, a file).
        let text = |value: &Option<String>| {
            crate::view::csv_text(value.as_deref().unwrap_or("")).into_owned()
        };
        put("order_ref", text(&item.order_ref));
        put("processor_ref", text(&item.processor_ref));
        put("batch_id", text(&item.batch_id));
        put(
            "at",
            item.at.as_ref().map(rfc3339::format).unwrap_or_default(),
        );
        put("amount", item.amount.clone());
        put("effect", item.effect.clone());
        put(
            "review_item_id",
            item.review_item_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
        );
        csv.write_record(row)?;
    }
    csv.flush()?;
    Ok(())
}

fn write_table(out: &mut impl Write, report: &ClearingReport) -> std::io::Result<()> {
    let bound = |at: Option<chrono::DateTime<chrono::Utc>>, open: &str| {
        at.map_or_else(|| open.to_owned(), |at| rfc3339::format(&at))
    };
    writeln!(
        out,
        "Processor clearing, {} to {} (payouts dated in {})",
        bound(report.period.from, "the beginning"),
        bound(report.period.to, "now"),
        report.timezone
    )?;
    if report.currencies.is_empty() {
        writeln!(out, "\nNothing was booked to clearing.")?;
    }
    for t in &report.currencies {
        writeln!(out, "\n{}", t.currency)?;
        for (name, value) in [
            ("opening balance", &t.opening),
            ("+ sales", &t.sales),
            ("+ refunds", &t.refunds),
            ("+ chargebacks", &t.chargebacks),
            ("+ fees", &t.fees),
            ("+ VAT", &t.vat),
            ("+ commission", &t.commission),
            ("+ payouts", &t.payouts),
            ("+ adjustments", &t.adjustments),
            ("+ conversions", &t.conversions),
            ("+ write-offs", &t.write_offs),
            ("+ other", &t.other),
            ("= closing balance", &t.closing),
            ("  explained by the items", &t.explained),
            ("  unexplained", &t.unexplained),
        ] {
            writeln!(out, "  {name:<26} {value:>16}")?;
        }
    }
    if report.items.is_empty() {
        writeln!(out, "\nNo open item.")?;
        return Ok(());
    }
    writeln!(out, "\n{} item(s):", report.items.len())?;
    writeln!(
        out,
        "{:<26} {:<4} {:<16} {:<12} {:<20} {:>14} {:>14}  REVIEW",
        "ITEM", "CUR", "ORDER", "REFNO", "BATCH", "AMOUNT", "EFFECT"
    )?;
    for item in &report.items {
        writeln!(
            out,
            "{:<26} {:<4} {:<16} {:<12} {:<20} {:>14} {:>14}  {}",
            item.kind.as_str(),
            item.currency,
            item.order_ref.as_deref().unwrap_or("-"),
            item.processor_ref.as_deref().unwrap_or("-"),
            item.batch_id.as_deref().unwrap_or("-"),
            item.amount,
            item.effect,
            item.review_item_id
                .map_or_else(|| "-".to_owned(), |id| format!("#{id}"))
        )?;
    }
    Ok(())
}
