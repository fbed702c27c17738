//! The settlement listings (`settlement report`, the console's
//! `/settlement`): totals per batch and currency, and the lines that differ
//! from the ledger or that no payment has.

use super::orders::order_href;
use super::{Cell, Table};
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
                    href: format!("/review?status=all#item-{id}"),
                    text: id.to_string(),
                },
                None => Cell::Text(String::new()),
            },
        ]);
    }
    table
}
