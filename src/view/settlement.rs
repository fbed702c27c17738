//! The settlement listings (`settlement report`, the console's
//! `/settlement`): totals per batch and currency, and the lines that differ
//! from the ledger or that no payment has.

use super::orders::order_href;
use super::{Cell, Table};
use crate::domain::{Currency, Money};
use crate::export::rfc3339;
use crate::store::settlement::{BatchTotals, SettlementLineView};

/// The columns of the batches' listing, in order.
pub const BATCH_COLUMNS: [&str; 17] = [
    "batch_id",
    "currency",
    "first_settled_at",
    "last_settled_at",
    "lines",
    "matched_lines",
    "matched_gross",
    "unmatched_lines",
    "unmatched_gross",
    "other_lines",
    "other_net",
    "gross",
    "fees",
    "net",
    "payout",
    "paid_on",
    "payout_difference",
];

/// The columns of the console's settlement summary, in order: what moved
/// the money, each kind in a column of its own, so that a row adds up
/// ([`SUMMARY_EQUATION`]).
pub const SUMMARY_COLUMNS: [&str; 15] = [
    "batch_id",
    "currency",
    "settled_on",
    "lines",
    "unmatched_lines",
    "sales",
    "refunds",
    "chargebacks",
    "reinstatements",
    "adjustments",
    "fees",
    "net",
    "payout",
    "paid_on",
    "payout_difference",
];

/// How a summary row adds up, as its caption says.
pub const SUMMARY_EQUATION: &str =
    "net = sales - refunds - chargebacks + reinstatements + adjustments - fees";

/// The day a batch settled, for ordering and showing: its first line's
/// settlement date in `zone` (`report-timezone`), or the payout's date
/// for a payout without lines.
pub fn settled_on(batch: &BatchTotals, zone: chrono_tz::Tz) -> Option<chrono::NaiveDate> {
    batch
        .first_settled_at
        .map(|at| at.with_timezone(&zone).date_naive())
        .or(batch.paid_on)
}

/// Batches in the order people look for them: by the day they settled
/// ([`settled_on`]; a batch without a date last), then by batch id, then
/// by currency.
pub fn sort_batches(batches: &mut [BatchTotals], zone: chrono_tz::Tz) {
    batches.sort_by(|a, b| {
        let day = |batch: &BatchTotals| settled_on(batch, zone).unwrap_or(chrono::NaiveDate::MAX);
        (day(a), &a.batch_id, &a.currency).cmp(&(day(b), &b.batch_id, &b.currency))
    });
}

/// The settlement summary (the console's `/settlement`): per batch and
/// currency, in the order given, sales, refunds, chargebacks,
/// reinstatements, other lines (adjustments) and fees in columns of their
/// own that add up to the net ([`SUMMARY_EQUATION`]); a batch whose
/// currency is not in `currency_of` keeps the store's formatted totals
/// and leaves the breakdown empty.
pub fn summary(
    batches: &[BatchTotals],
    caption: String,
    zone: chrono_tz::Tz,
    currency_of: impl Fn(&str) -> Option<Currency>,
) -> Table {
    let mut table = Table::new("settlement_summary", caption, &SUMMARY_COLUMNS);
    for b in batches {
        let amount = |minor: i64| {
            currency_of(&b.currency)
                .map(|c| Money::from_minor(minor, c).format_amount())
                .unwrap_or_default()
        };
        table.push(vec![
            Cell::Text(b.batch_id.clone()),
            Cell::Text(b.currency.clone()),
            Cell::Text(
                settled_on(b, zone)
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
            ),
            Cell::Number(b.lines.to_string()),
            Cell::Number(b.unmatched_lines.to_string()),
            Cell::Number(amount(b.minor.sales)),
            Cell::Number(amount(b.minor.refunds)),
            Cell::Number(amount(b.minor.chargebacks)),
            Cell::Number(amount(b.minor.reinstatements)),
            Cell::Number(amount(b.minor.adjustments)),
            Cell::Number(b.fees.clone()),
            Cell::Number(b.net.clone()),
            Cell::Number(b.payout.clone().unwrap_or_default()),
            Cell::Text(b.paid_on.map(|d| d.to_string()).unwrap_or_default()),
            Cell::Number(b.payout_difference.clone().unwrap_or_default()),
        ]);
    }
    table
}

/// The columns of the lines' listing, in order.
pub const LINE_COLUMNS: [&str; 13] = [
    "id",
    "batch_id",
    "status",
    "type",
    "processor_ref",
    "order_ref",
    "currency",
    "gross",
    "fee",
    "net",
    "expected",
    "settled_at",
    "review_item_id",
];

/// Totals per batch and currency, in the order given.
pub fn batches(batches: &[BatchTotals], caption: String) -> Table {
    let time = |at: &Option<chrono::DateTime<chrono::Utc>>| {
        at.as_ref().map(rfc3339::format).unwrap_or_default()
    };
    let mut table = Table::new("settlement_batches", caption, &BATCH_COLUMNS);
    for b in batches {
        table.push(vec![
            Cell::Text(b.batch_id.clone()),
            Cell::Text(b.currency.clone()),
            Cell::Text(time(&b.first_settled_at)),
            Cell::Text(time(&b.last_settled_at)),
            Cell::Number(b.lines.to_string()),
            Cell::Number(b.matched_lines.to_string()),
            Cell::Number(b.matched_gross.clone()),
            Cell::Number(b.unmatched_lines.to_string()),
            Cell::Number(b.unmatched_gross.clone()),
            Cell::Number(b.other_lines.to_string()),
            Cell::Number(b.other_net.clone()),
            Cell::Number(b.gross.clone()),
            Cell::Number(b.fees.clone()),
            Cell::Number(b.net.clone()),
            Cell::Number(b.payout.clone().unwrap_or_default()),
            Cell::Text(b.paid_on.map(|d| d.to_string()).unwrap_or_default()),
            Cell::Number(b.payout_difference.clone().unwrap_or_default()),
        ]);
    }
    table
}

/// Settlement lines, each order and review item linking to its page in
/// the console (the CSV holds the reference and the id alone).
pub fn lines(lines: &[SettlementLineView], caption: String) -> Table {
    let mut table = Table::new("unmatched_lines", caption, &LINE_COLUMNS);
    for l in lines {
        table.push(vec![
            Cell::Number(l.id.to_string()),
            Cell::Text(l.batch_id.clone()),
            Cell::Text(l.status.as_str().to_owned()),
            Cell::Text(l.kind.as_str().to_owned()),
            Cell::Text(l.processor_ref.clone().unwrap_or_default()),
            match &l.order_ref {
                Some(order_ref) => Cell::Link {
                    href: order_href(order_ref),
                    text: order_ref.clone(),
                },
                None => Cell::Text(String::new()),
            },
            Cell::Text(l.currency.clone()),
            Cell::Number(l.gross.clone()),
            Cell::Number(l.fee.clone()),
            Cell::Number(l.net.clone()),
            Cell::Number(l.expected.clone().unwrap_or_default()),
            Cell::Text(rfc3339::format(&l.settled_at)),
            match l.review_item_id {
                Some(id) => Cell::Link {
                    href: format!("/review/{id}"),
                    text: id.to_string(),
                },
                None => Cell::Text(String::new()),
            },
        ]);
    }
    table
}

// Amounts in cents are written `units_cents` (100_00 is 100.00 EUR).
#[cfg(test)]
#[allow(clippy::inconsistent_digit_grouping)]
mod tests {
    use super::*;
    use crate::store::settlement::BatchMinor;
    use chrono::TimeZone;

    fn batch(id: &str, settled: Option<(u32, u32)>) -> BatchTotals {
        let at = settled.and_then(|(day, hour)| {
            chrono::Utc
                .with_ymd_and_hms(2026, 11, day, hour, 0, 0)
                .single()
        });
        BatchTotals {
            batch_id: id.into(),
            currency: "EUR".into(),
            first_settled_at: at,
            last_settled_at: at,
            lines: 1,
            matched_lines: 0,
            matched_gross: "0.00".into(),
            unmatched_lines: 0,
            unmatched_gross: "0.00".into(),
            other_lines: 0,
            other_net: "0.00".into(),
            gross: "0.00".into(),
            fees: "0.00".into(),
            net: "0.00".into(),
            payout: None,
            paid_on: None,
            payout_difference: None,
            minor: BatchMinor::default(),
        }
    }

    #[test]
    fn batches_sort_by_the_day_they_settled_then_by_id() {
        // B settled later on the 2nd than C: the same day, so by id.
        let mut batches = vec![
            batch("Z-no-date", None),
            batch("C", Some((2, 6))),
            batch("B", Some((2, 18))),
            batch("A", Some((3, 1))),
        ];
        sort_batches(&mut batches, chrono_tz::Tz::UTC);
        let ids: Vec<&str> = batches.iter().map(|b| b.batch_id.as_str()).collect();
        assert_eq!(ids, ["B", "C", "A", "Z-no-date"]);
        // In Bucharest (UTC+2) 2 November 23:00 UTC is the 3rd.
        let mut late = vec![batch("A", Some((3, 1))), batch("B", Some((2, 23)))];
        sort_batches(&mut late, chrono_tz::Europe::Bucharest);
        assert_eq!(late[0].batch_id, "A");
    }

    #[test]
    fn a_summary_row_shows_each_kind_of_money_in_its_currency() {
        let mut b = batch("B-1", Some((30, 6)));
        b.minor = BatchMinor {
            sales: 100_00,
            refunds: 20_00,
            chargebacks: 30_00,
            reinstatements: 30_00,
            adjustments: -5_00,
            ..BatchMinor::default()
        };
        let eur = Currency::iso("EUR").expect("EUR");
        let table = summary(&[b], "s".into(), chrono_tz::Tz::UTC, |_| Some(eur));
        let cells: Vec<&str> = table.rows[0].iter().map(Cell::text).collect();
        assert_eq!(
            cells[..10],
            [
                "B-1",
                "EUR",
                "2026-11-30",
                "1",
                "0",
                "100.00",
                "20.00",
                "30.00",
                "30.00",
                "-5.00"
            ]
        );
    }
}
