//! Importing the processor's settlement (payout) export: each line
//! compared with the ledger, each payout with its batch's lines, in one
//! transaction.
//!
//! [`import`] takes the imports' advisory lock (two imports of
//! overlapping files run one after the other instead of both judging the
//! same line new), skips the lines imported before (same batch, same
//! values, same copy: importing a file again changes nothing and opens
//! nothing), loads the ledger's payments the new lines name and what
//! earlier lines settled of them, lets [`classify`] and [`check_payout`]
//! decide, and writes the lines (append-only, with how they compared), the
//! payouts and the review items their differences open. A dry run makes
//! the same reads and decisions in a read-only transaction and writes
//! nothing. The reads and writes are the store's
//! ([`crate::store::settlement`]); the counting and the choice of what to
//! read are pure functions here.
//!
//! No clock is read, and no decision depends on the time: lines carry
//! their own dates.

use std::collections::{BTreeMap, HashSet};

use chrono::NaiveDate;
use diesel_async::{AsyncConnection, AsyncPgConnection};

use crate::domain::settlement::Ledger;
use crate::domain::settlement::{
    Finding, LedgerPayment, LineMatch, LineStatus, MatchedBy, Payout, SettlementLine, Tolerance,
    check_payout, classify,
};
use crate::domain::{Currency, Money};
use crate::store::settlement::{self, NewLine};
use crate::store::{Store, StoreError};

/// How an import runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportOptions {
    /// How far a settled amount may be from the ledger's.
    pub tolerance: Tolerance,
    /// Decide everything, write nothing.
    pub dry_run: bool,
}

/// Lines of one currency with one status, summed (minor units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusTotals {
    pub lines: usize,
    pub gross: i64,
    pub fees: i64,
    pub net: i64,
}

/// What an import did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportSummary {
    pub dry_run: bool,
    /// Lines in the file.
    pub lines: usize,
    /// Lines imported before (same batch, values and copy): skipped.
    pub already_imported: usize,
    /// The new lines by currency and status.
    pub totals: BTreeMap<(Currency, LineStatus), StatusTotals>,
    /// How many new lines were matched by their order reference (their
    /// REFNO unknown or absent).
    pub matched_by_order_ref: usize,
    /// Payouts in the payouts file, and those imported before.
    pub payouts: usize,
    pub payouts_already_imported: usize,
    /// The review items opened (or that would open), in file order.
    pub opened: Vec<Finding>,
}

impl ImportSummary {
    /// New lines with `status`, all currencies.
    pub fn count(&self, status: LineStatus) -> usize {
        self.totals
            .iter()
            .filter(|((_, s), _)| *s == status)
            .map(|(_, t)| t.lines)
            .sum()
    }
}

/// Why an import was refused or failed. Nothing is imported in any case.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A payout of the file was imported before with another amount or
    /// day: the files disagree with the books.
    #[error(
        "payouts line {line}: the payout of batch {batch_id} in {currency} was imported before \
         as {before} on {before_paid_on}; nothing was imported"
    )]
    PayoutDiffers {
        line: u64,
        batch_id: String,
        currency: Currency,
        before: Money,
        before_paid_on: NaiveDate,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for ImportError {
    fn from(err: diesel::result::Error) -> Self {
        Self::Store(StoreError::Query(err))
    }
}

/// Imports settlement `lines` and `payouts` in one transaction (see the
/// module docs); `progress` is told how many lines were handled, as it
/// goes (for a progress bar).
pub async fn import(
    store: &Store,
    lines: &[SettlementLine],
    payouts: &[Payout],
    options: ImportOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ImportSummary, ImportError> {
    let mut conn = store.conn().await?;
    if options.dry_run {
        conn.build_transaction()
            .read_only()
            .repeatable_read()
            .run::<_, ImportError, _>(async |conn| {
                import_in(conn, lines, payouts, options, progress).await
            })
            .await
    } else {
        conn.transaction::<_, ImportError, _>(async |conn| {
            import_in(conn, lines, payouts, options, progress).await
        })
        .await
    }
}

async fn import_in(
    conn: &mut AsyncPgConnection,
    lines: &[SettlementLine],
    payouts: &[Payout],
    options: ImportOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ImportSummary, ImportError> {
    settlement::lock_imports(conn).await?;
    let mut summary = ImportSummary {
        dry_run: options.dry_run,
        lines: lines.len(),
        payouts: payouts.len(),
        ..ImportSummary::default()
    };

    // Which lines are new.
    let known = settlement::imported_line_keys(conn, &batches_of(lines, payouts)).await?;
    let keys: Vec<String> = lines.iter().map(SettlementLine::key).collect();
    let new = new_lines(lines, &keys, &known);
    summary.already_imported = lines.len() - new.len();
    progress(summary.already_imported as u64);

    // The ledger's payments the new lines name, and what earlier lines
    // settled of them.
    let (refnos, order_refs) = references(new.iter().map(|(line, _)| *line));
    let payments = settlement::ledger_payments(conn, &refnos, &order_refs).await?;
    let ids: Vec<i64> = payments.keys().copied().collect();
    let mut settled = settlement::settled_so_far(conn, &ids).await?;
    let mut ordered: Vec<LedgerPayment> = payments.into_values().collect();
    ordered.sort_by_key(|p| p.payment_id);
    let ledger = Ledger::new(ordered);
    let new_lines: Vec<SettlementLine> = new.iter().map(|(l, _)| (*l).clone()).collect();
    let matches = classify(&new_lines, &ledger, &mut settled, options.tolerance);
    tally(&mut summary, &new_lines, &matches);

    if !options.dry_run {
        for (chunk_number, chunk) in new.chunks(500).enumerate() {
            let start = chunk_number * 500;
            let mut rows = Vec::with_capacity(chunk.len());
            for (offset, (line, key)) in chunk.iter().enumerate() {
                let m = &matches[start + offset];
                let item = match &m.finding {
                    Some(finding) => Some(settlement::open_item(conn, finding).await?),
                    None => None,
                };
                rows.push(NewLine {
                    line,
                    key,
                    matched: m,
                    review_item: item,
                });
            }
            settlement::insert_lines(conn, &rows).await?;
            progress(chunk.len() as u64);
        }
    } else {
        progress(new.len() as u64);
    }

    // Payouts: each batch's transfer against its net lines, those already
    // in the database and those of this import.
    for payout in payouts {
        let currency = payout.amount.currency();
        if let Some(before) = settlement::payout_of(conn, &payout.batch_id, currency).await? {
            if before.amount_minor == payout.amount.minor_units()
                && before.paid_on == payout.paid_on
            {
                summary.payouts_already_imported += 1;
                continue;
            }
            return Err(ImportError::PayoutDiffers {
                line: payout.line,
                batch_id: payout.batch_id.clone(),
                currency,
                before: Money::from_minor(before.amount_minor, currency),
                before_paid_on: before.paid_on,
            });
        }
        let (mut count, mut net) = settlement::batch_net(conn, &payout.batch_id, currency).await?;
        if options.dry_run {
            // The new lines are not in the database: count them here.
            (count, net) = with_lines_of(payout, &new_lines, (count, net));
        }
        let finding = check_payout(payout, usize::try_from(count).unwrap_or(0), net);
        if let Some(finding) = &finding {
            summary.opened.push(finding.clone());
        }
        if !options.dry_run {
            let item = match &finding {
                Some(finding) => Some(settlement::open_item(conn, finding).await?),
                None => None,
            };
            settlement::insert_payout(conn, payout, net, item).await?;
        }
    }
    Ok(summary)
}

/// The batches the files name (lines and payouts), each once.
pub fn batches_of(lines: &[SettlementLine], payouts: &[Payout]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l.batch_id.clone())
        .chain(payouts.iter().map(|p| p.batch_id.clone()))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect()
}

/// The lines not imported before (`known`: batch, key, copy), in file
/// order, each with its key (`keys`, one per line).
pub fn new_lines<'a>(
    lines: &'a [SettlementLine],
    keys: &'a [String],
    known: &HashSet<(String, String, i32)>,
) -> Vec<(&'a SettlementLine, &'a String)> {
    lines
        .iter()
        .zip(keys)
        .filter(|(line, key)| {
            !known.contains(&(
                line.batch_id.clone(),
                (*key).clone(),
                i32::try_from(line.occurrence).unwrap_or(i32::MAX),
            ))
        })
        .collect()
}

/// The processor references (REFNO) and order references `lines` name,
/// each once: the ledger's payments to load.
pub fn references<'a>(
    lines: impl Iterator<Item = &'a SettlementLine> + Clone,
) -> (Vec<String>, Vec<String>) {
    let refnos = lines
        .clone()
        .filter_map(|l| l.processor_ref.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let order_refs = lines
        .filter_map(|l| l.order_ref.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    (refnos, order_refs)
}

/// Counts the new lines into `summary`: per currency and status, matched
/// by order reference, and the review items their matches open.
pub fn tally(summary: &mut ImportSummary, new_lines: &[SettlementLine], matches: &[LineMatch]) {
    for (line, m) in new_lines.iter().zip(matches) {
        let t = summary
            .totals
            .entry((line.currency(), m.status))
            .or_default();
        t.lines += 1;
        t.gross = t.gross.saturating_add(line.gross.minor_units());
        t.fees = t.fees.saturating_add(line.fee.minor_units());
        t.net = t.net.saturating_add(line.net.minor_units());
        if m.status == LineStatus::Matched && m.matched_by == Some(MatchedBy::OrderRef) {
            summary.matched_by_order_ref += 1;
        }
        if let Some(finding) = &m.finding {
            summary.opened.push(finding.clone());
        }
    }
}

/// A batch's stored lines (`stored`: how many, their net) with the new
/// lines of `payout`'s batch and currency added: what a dry run compares
/// the payout with, the new lines not being in the database.
pub fn with_lines_of(
    payout: &Payout,
    new_lines: &[SettlementLine],
    stored: (i64, i64),
) -> (i64, i64) {
    let currency = payout.amount.currency();
    let (mut count, mut net) = stored;
    for line in new_lines
        .iter()
        .filter(|l| l.batch_id == payout.batch_id && l.currency() == currency)
    {
        count += 1;
        net = net.saturating_add(line.net.minor_units());
    }
    (count, net)
}
