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
    check_payout, classify, late_lines_finding,
};
use crate::domain::{Currencies, Currency, Money};
use crate::store::action_log::{ActionEntry, Actor, record_action};
use crate::store::console::ConsoleAction;
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

/// Who imports, for the action log: the actor and what they imported (a
/// file's name).
#[derive(Debug, Clone, Copy)]
pub struct Importer<'a> {
    pub actor: &'a Actor,
    pub subject: &'a str,
}

/// Imports settlement `lines` and `payouts` in one transaction (see the
/// module docs), with the `settlement_import` row of the action log
/// naming `importer` (a dry run writes neither); `progress` is told how
/// many lines were handled, as it goes (for a progress bar).
pub async fn import(
    store: &Store,
    lines: &[SettlementLine],
    payouts: &[Payout],
    options: ImportOptions,
    importer: Importer<'_>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ImportSummary, ImportError> {
    let mut conn = store.conn().await?;
    if options.dry_run {
        conn.build_transaction()
            .read_only()
            .repeatable_read()
            .run::<_, ImportError, _>(async |conn| {
                import_in(conn, lines, payouts, options, store.currencies(), progress).await
            })
            .await
    } else {
        conn.transaction::<_, ImportError, _>(async |conn| {
            let summary =
                import_in(conn, lines, payouts, options, store.currencies(), progress).await?;
            let details = format!(
                "{} line(s), {} new, {} payout(s) ({} imported before), {} review item(s) opened",
                summary.lines,
                summary.lines - summary.already_imported,
                summary.payouts,
                summary.payouts_already_imported,
                summary.opened.len()
            );
            record_action(
                conn,
                &ActionEntry {
                    actor: importer.actor,
                    action: ConsoleAction::SettlementImport,
                    subject: Some(importer.subject),
                    details: Some(&details),
                    at: None,
                },
            )
            .await?;
            Ok(summary)
        })
        .await
    }
}

async fn import_in(
    conn: &mut AsyncPgConnection,
    lines: &[SettlementLine],
    payouts: &[Payout],
    options: ImportOptions,
    currencies: &Currencies,
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
    let payments = settlement::ledger_payments(conn, &refnos, &order_refs, currencies).await?;
    let ids: Vec<i64> = payments.keys().copied().collect();
    let mut settled = settlement::settled_so_far(conn, &ids).await?;
    let mut ordered: Vec<LedgerPayment> = payments.values().cloned().collect();
    ordered.sort_by_key(|p| p.payment_id);
    let ledger = Ledger::new(ordered);
    let new_lines: Vec<SettlementLine> = new.iter().map(|(l, _)| (*l).clone()).collect();
    let matches = classify(&new_lines, &ledger, &mut settled, options.tolerance);
    tally(&mut summary, &new_lines, &matches);
    // A fee that replaces a commission it differs from: an item of its
    // own (the line itself matched).
    for finding in fee_findings(&new_lines, &matches, &payments, options.tolerance) {
        if !options.dry_run {
            settlement::open_item(conn, &finding).await?;
        }
        summary.opened.push(finding);
    }

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

    // New lines in a batch whose payout was recorded by an earlier import:
    // the transfer was checked without them.
    for finding in late_lines(conn, &new_lines, options.dry_run).await? {
        if !options.dry_run {
            settlement::open_item(conn, &finding).await?;
        }
        summary.opened.push(finding);
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

/// The `payout_total_differs` findings for `new_lines` that land in a batch
/// and currency whose payout an earlier import recorded (one per batch and
/// currency, in the order the batches first appear). Called before this
/// import's payouts are written, so only earlier payouts count; in a dry
/// run the new lines are not in the database and are added here.
async fn late_lines(
    conn: &mut AsyncPgConnection,
    new_lines: &[SettlementLine],
    dry_run: bool,
) -> Result<Vec<Finding>, ImportError> {
    let mut added: Vec<((String, Currency), usize, i64)> = Vec::new();
    for line in new_lines {
        let at = (line.batch_id.clone(), line.currency());
        match added.iter_mut().find(|(key, ..)| *key == at) {
            Some((_, count, net)) => {
                *count += 1;
                *net = net.saturating_add(line.net.minor_units());
            }
            None => added.push((at, 1, line.net.minor_units())),
        }
    }
    let mut findings = Vec::new();
    for ((batch_id, currency), count, net) in added {
        let Some(payout) = settlement::payout_of(conn, &batch_id, currency).await? else {
            continue;
        };
        let (mut lines, mut lines_net) = settlement::batch_net(conn, &batch_id, currency).await?;
        if dry_run {
            lines = lines.saturating_add(i64::try_from(count).unwrap_or(i64::MAX));
            lines_net = lines_net.saturating_add(net);
        }
        findings.push(late_lines_finding(
            &batch_id,
            payout.paid_on,
            Money::from_minor(payout.amount_minor, currency),
            count,
            net,
            usize::try_from(lines).unwrap_or(0),
            lines_net,
        ));
    }
    Ok(findings)
}

/// The `fee_differs` findings of the matched lines (in file order): a
/// sale line's fee against the commission its payment's notice carried
/// (see [`crate::domain::settlement::fee_finding`]).
pub fn fee_findings(
    lines: &[SettlementLine],
    matches: &[crate::domain::settlement::LineMatch],
    payments: &std::collections::HashMap<i64, LedgerPayment>,
    tolerance: crate::domain::settlement::Tolerance,
) -> Vec<Finding> {
    lines
        .iter()
        .zip(matches)
        .filter_map(|(line, m)| {
            let (payment_id, ..) = m.payment.as_ref()?;
            let payment = payments.get(payment_id)?;
            crate::domain::settlement::fee_finding(line, m, payment, tolerance)
        })
        .collect()
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

#[cfg(test)]
mod tests {
    #![allow(clippy::inconsistent_digit_grouping)]
    use super::*;
    use crate::domain::ReviewKind;
    use crate::domain::settlement::LineKind;

    fn eur(minor: i64) -> Money {
        Money::from_minor(minor, Currency::iso("EUR").expect("EUR"))
    }

    fn usd(minor: i64) -> Money {
        Money::from_minor(minor, Currency::iso("USD").expect("USD"))
    }

    fn line(batch: &str, refno: Option<&str>, order: Option<&str>, gross: Money) -> SettlementLine {
        let fee = Money::from_minor(gross.minor_units() / 10, gross.currency());
        SettlementLine {
            line: 2,
            batch_id: batch.to_owned(),
            processor_ref: refno.map(str::to_owned),
            order_ref: order.map(str::to_owned),
            kind: LineKind::Sale,
            gross,
            fee,
            net: Money::from_minor(gross.minor_units() - fee.minor_units(), gross.currency()),
            settled_at: "2026-12-01T00:00:00Z".parse().expect("time"),
            occurrence: 1,
            fee_parts: Vec::new(),
        }
    }

    fn payout(batch: &str, amount: Money) -> Payout {
        Payout {
            line: 2,
            batch_id: batch.to_owned(),
            paid_on: NaiveDate::from_ymd_opt(2026, 12, 2).expect("day"),
            amount,
        }
    }

    fn sorted(mut values: Vec<String>) -> Vec<String> {
        values.sort();
        values
    }

    #[test]
    fn the_batches_of_lines_and_payouts_are_named_once() {
        let lines = [
            line("S-1", Some("R1"), None, eur(10_00)),
            line("S-1", Some("R2"), None, eur(10_00)),
        ];
        let batches = batches_of(&lines, &[payout("S-1", eur(18_00)), payout("S-2", eur(0))]);
        assert_eq!(sorted(batches), ["S-1", "S-2"]);
    }

    #[test]
    fn a_line_imported_before_is_not_new_but_its_second_copy_is() {
        let first = line("S-1", Some("R1"), None, eur(10_00));
        let mut copy = first.clone();
        copy.occurrence = 2;
        let other = line("S-1", Some("R2"), None, eur(10_00));
        let lines = [first.clone(), copy, other];
        let keys: Vec<String> = lines.iter().map(SettlementLine::key).collect();
        let known = HashSet::from([("S-1".to_owned(), first.key(), 1)]);
        let new: Vec<(u32, Option<&str>)> = new_lines(&lines, &keys, &known)
            .into_iter()
            .map(|(l, key)| {
                assert_eq!(*key, l.key());
                (l.occurrence, l.processor_ref.as_deref())
            })
            .collect();
        assert_eq!(new, [(2, Some("R1")), (1, Some("R2"))]);
    }

    #[test]
    fn the_references_to_load_are_each_named_once() {
        let lines = [
            line("S-1", Some("R1"), Some("SHOP-1"), eur(10_00)),
            line("S-1", Some("R1"), None, eur(10_00)),
            line("S-1", None, Some("SHOP-2"), eur(10_00)),
        ];
        let (refnos, order_refs) = references(lines.iter());
        assert_eq!(refnos, ["R1"]);
        assert_eq!(sorted(order_refs), ["SHOP-1", "SHOP-2"]);
    }

    fn matched(status: LineStatus, by: Option<MatchedBy>, finding: Option<Finding>) -> LineMatch {
        LineMatch {
            status,
            matched_by: by,
            payment: None,
            expected: None,
            finding,
        }
    }

    #[test]
    fn new_lines_are_counted_per_currency_and_status() {
        let lines = [
            line("S-1", Some("R1"), None, eur(10_00)),
            line("S-1", None, Some("SHOP-2"), eur(20_00)),
            line("S-1", Some("R9"), None, usd(5_00)),
        ];
        let unknown = Finding {
            kind: ReviewKind::SettlementUnknown,
            order_ref: None,
            processor_ref: Some("R9".to_owned()),
            details: "unknown".to_owned(),
        };
        let matches = [
            matched(LineStatus::Matched, Some(MatchedBy::ProcessorRef), None),
            matched(LineStatus::Matched, Some(MatchedBy::OrderRef), None),
            matched(LineStatus::Unknown, None, Some(unknown.clone())),
        ];
        let mut summary = ImportSummary::default();
        tally(&mut summary, &lines, &matches);
        let eur_matched = summary.totals[&(eur(0).currency(), LineStatus::Matched)];
        assert_eq!(
            eur_matched,
            StatusTotals {
                lines: 2,
                gross: 30_00,
                fees: 3_00,
                net: 27_00
            }
        );
        assert_eq!(
            summary.totals[&(usd(0).currency(), LineStatus::Unknown)].lines,
            1
        );
        assert_eq!(summary.count(LineStatus::Matched), 2);
        assert_eq!(summary.matched_by_order_ref, 1);
        assert_eq!(summary.opened, [unknown]);
    }

    #[test]
    fn a_dry_run_counts_the_new_lines_of_the_payouts_batch_and_currency() {
        let new = [
            line("S-1", Some("R1"), None, eur(10_00)),
            line("S-1", Some("R2"), None, usd(10_00)),
            line("S-2", Some("R3"), None, eur(10_00)),
        ];
        assert_eq!(
            with_lines_of(&payout("S-1", eur(18_00)), &new, (3, 50_00)),
            (4, 59_00)
        );
        assert_eq!(with_lines_of(&payout("S-3", eur(0)), &new, (0, 0)), (0, 0));
    }
}
