//! `ipn-reconciler notifications list`: the notification log, as the
//! console's `/notifications` shows it (the same filters, the same
//! listing, `view::notifications`), newest first.
//!
//! What it prints is what the log keeps: identities, digests, the key and
//! algorithm that verified a notification, its outcome and the ledger rows
//! it made. Bodies are never stored and the stored fields are tokenized,
//! so nothing personal or secret can be listed.

use std::io::Write;
use std::num::NonZeroU32;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use serde::Serialize;

use super::args::{ConfigFile, DatabaseFlags, PeriodFlags, books_with_zone};
use super::dates::PeriodBound;
use super::{CliError, CliResult, OutputFormat, block_on};
use crate::domain::{Effect, OrderState, Outcome};
use crate::export::rfc3339;
use crate::store::Store;
use crate::store::console::{LedgerEffect, NotificationFilter, NotificationRecord};

/// How many notifications `--limit` lists when not given.
const DEFAULT_LIMIT: u32 = 50;

#[derive(Debug, Subcommand)]
pub enum NotificationsCommand {
    /// List the notifications received, newest first, with their identity,
    /// the key and algorithm that verified them, their outcome and the
    /// ledger rows they made (the console's /notifications). Every filter
    /// given must hold. At most --limit are listed; when more match, the
    /// table's count line says so, and csv and json say it on standard
    /// error.
    #[command(after_help = "Examples:\n  \
ipn-reconciler notifications list\n  \
ipn-reconciler notifications list --outcome mismatch --since 2026-11-01\n  \
ipn-reconciler notifications list --order SHOP-1002 --format json\n  \
ipn-reconciler notifications list --refno 71000102 --limit 500 --format csv\n\n\
Exit codes: 0 listed (an empty list too), 2 an unknown --outcome, a bad date, --since not \
before --until, a --limit out of range, another usage error or invalid configuration, 3 the \
database cannot be read.")]
    List {
        #[command(flatten)]
        db: DatabaseFlags,
        #[command(flatten)]
        periods: PeriodFlags,
        /// Only notifications received at or after this month (2026-11),
        /// date (2026-11-01, from its midnight in report-timezone, UTC by
        /// default) or RFC 3339 time.
        #[arg(long, alias = "from", value_name = "DATE", value_parser = PeriodBound::parse)]
        since: Option<PeriodBound>,
        /// Only notifications received before this time; a month or a date
        /// is included whole (--until 2026-11-30 lists until
        /// 2026-12-01T00:00:00Z in UTC).
        #[arg(long, alias = "to", value_name = "DATE", value_parser = PeriodBound::parse)]
        until: Option<PeriodBound>,
        /// Only notifications with this outcome.
        #[arg(long, value_parser = outcome_parser())]
        outcome: Option<Outcome>,
        /// Only notifications with this ORDERSTATUS as received (any case:
        /// complete is COMPLETE).
        #[arg(long, value_name = "ORDERSTATUS")]
        status: Option<String>,
        /// Only notifications naming this merchant's order reference
        /// (REFNOEXT).
        #[arg(long = "order", value_name = "REF")]
        order: Option<String>,
        /// Only notifications with this processor's reference (REFNO).
        #[arg(long, value_name = "REFNO")]
        refno: Option<String>,
        /// At most this many, the newest (1 to 100000).
        #[arg(long, value_name = "N", default_value_t = NonZeroU32::new(DEFAULT_LIMIT).expect("not zero"), value_parser = limit_parser)]
        limit: NonZeroU32,
        /// table: for people, the columns of csv aligned; csv: columns
        /// id,received_at,order_ref,processor_ref,order_status,amount,
        /// key_id,algorithm,body_sha256,identity,repeat_of,outcome,reason,
        /// ledger (amount as `25.00 EUR`; ledger the rows it made, `REF
        /// effect: old -> new (reason)` joined by `; `); json: a list of
        /// objects with the same names, empty values null and ledger a
        /// list of {order_ref, effect, old_status, new_status, reason}.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
}

/// The largest `--limit`: a listing, not an export of the whole log.
const MAX_LIMIT: u32 = 100_000;

fn limit_parser(text: &str) -> Result<NonZeroU32, String> {
    match text.trim().parse::<NonZeroU32>() {
        Ok(limit) if limit.get() <= MAX_LIMIT => Ok(limit),
        _ => Err(format!("give a number from 1 to {MAX_LIMIT}")),
    }
}

/// `--outcome`: one of the outcomes, listed in `--help` and in the error.
fn outcome_parser() -> impl TypedValueParser<Value = Outcome> {
    PossibleValuesParser::new(Outcome::ALL.map(Outcome::as_str))
        .try_map(|text| Outcome::parse(&text))
}

/// One notification in `--format json`: the listing's columns, with
/// empty values `null` and the ledger rows as objects.
#[derive(Debug, Serialize)]
pub struct NotificationJson<'a> {
    pub id: i64,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub received_at: DateTime<Utc>,
    pub order_ref: Option<&'a str>,
    pub processor_ref: Option<&'a str>,
    pub order_status: Option<&'a str>,
    /// `25.00 EUR`.
    pub amount: Option<&'a str>,
    pub key_id: Option<&'a str>,
    pub algorithm: Option<&'a str>,
    pub body_sha256: &'a str,
    pub identity: Option<&'a str>,
    pub repeat_of: Option<i64>,
    pub outcome: Outcome,
    pub reason: Option<&'a str>,
    pub ledger: Vec<LedgerJson<'a>>,
}

/// A ledger row a notification made.
#[derive(Debug, Serialize)]
pub struct LedgerJson<'a> {
    pub order_ref: &'a str,
    pub effect: Effect,
    pub old_status: OrderState,
    pub new_status: OrderState,
    pub reason: &'a str,
}

impl<'a> From<&'a NotificationRecord> for NotificationJson<'a> {
    fn from(n: &'a NotificationRecord) -> Self {
        Self {
            id: n.id,
            received_at: n.received_at,
            order_ref: n.order_ref.as_deref(),
            processor_ref: n.processor_ref.as_deref(),
            order_status: n.order_status.as_deref(),
            amount: n.amount.as_deref(),
            key_id: n.key_id.as_deref(),
            algorithm: n.algorithm.as_deref(),
            body_sha256: &n.body_sha256,
            identity: n.identity.as_deref(),
            repeat_of: n.repeat_of,
            outcome: n.outcome,
            reason: n.reason.as_deref(),
            ledger: n.ledger.iter().map(LedgerJson::from).collect(),
        }
    }
}

impl<'a> From<&'a LedgerEffect> for LedgerJson<'a> {
    fn from(e: &'a LedgerEffect) -> Self {
        Self {
            order_ref: &e.order_ref,
            effect: e.effect,
            old_status: e.old_status,
            new_status: e.new_status,
            reason: &e.reason,
        }
    }
}

/// The listing's count line: how many are shown, and whether more match.
fn caption(shown: usize, more: bool, limit: u32) -> String {
    if more {
        format!(
            "{shown} notification(s), newest first; more match: raise --limit (now {limit}) or \
             narrow the filters"
        )
    } else {
        format!("{shown} notification(s), newest first")
    }
}

pub fn run(config: &ConfigFile, command: NotificationsCommand) -> CliResult {
    match command {
        NotificationsCommand::List {
            db,
            periods,
            since,
            until,
            outcome,
            status,
            order,
            refno,
            limit,
            format,
        } => {
            let (settings, zone) = books_with_zone(config, &db, &periods)?;
            let since = since.map(|b| b.start(zone));
            let until = until.map(|b| b.end(zone));
            if let (Some(since), Some(until)) = (since, until)
                && since >= until
            {
                return Err(CliError::usage(anyhow::anyhow!(
                    "--since {} is not before --until {}: nothing can match (an --until month \
                     or date is included whole)",
                    rfc3339::format(&since),
                    rfc3339::format(&until)
                )));
            }
            let given =
                |text: Option<String>| text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
            // One more than asked: whether more match, without counting
            // the whole log.
            let filter = NotificationFilter {
                from: since,
                to: until,
                outcome,
                order_status: given(status).map(|s| s.to_ascii_uppercase()),
                order_ref: given(order),
                processor_ref: given(refno),
                limit: i64::from(limit.get()) + 1,
                offset: 0,
            };
            block_on(async move {
                let store = Store::connect(settings).await?;
                let mut records = store.notifications_with_ledger(&filter).await?;
                let limit = limit.get();
                let shown = usize::try_from(limit).unwrap_or(usize::MAX);
                let more = records.len() > shown;
                records.truncate(shown);
                let mut out = std::io::stdout().lock();
                match format {
                    OutputFormat::Table => {
                        crate::view::notifications::table(
                            &records,
                            caption(records.len(), more, limit),
                        )
                        .write_text(&mut out)?;
                    }
                    OutputFormat::Csv => {
                        let table = crate::view::notifications::table(
                            &records,
                            caption(records.len(), more, limit),
                        );
                        out.write_all(&table.csv()?)?;
                    }
                    OutputFormat::Json => {
                        let listed: Vec<NotificationJson> =
                            records.iter().map(NotificationJson::from).collect();
                        serde_json::to_writer_pretty(&mut out, &listed)?;
                        writeln!(out)?;
                    }
                }
                if more && format != OutputFormat::Table {
                    eprintln!("{}", caption(records.len(), more, limit));
                }
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_a_positive_number_within_bounds() {
        assert_eq!(limit_parser("1").map(NonZeroU32::get), Ok(1));
        assert_eq!(limit_parser(" 500 ").map(NonZeroU32::get), Ok(500));
        assert_eq!(limit_parser("100000").map(NonZeroU32::get), Ok(MAX_LIMIT));
        for bad in ["0", "-1", "100001", "ten", ""] {
            assert!(limit_parser(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_count_line_says_when_more_match() {
        assert_eq!(caption(3, false, 50), "3 notification(s), newest first");
        assert!(caption(2, true, 2).contains("more match: raise --limit (now 2)"));
    }
}
