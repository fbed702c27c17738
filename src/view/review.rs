//! The review queue's listing (`review list`, the console's `/review`):
//! one row per group of open items of one kind for one order (an item on
//! its own is a group of one), with its resolution when resolved, and the
//! amount it is about when a stored row says
//! ([`ReviewItem::amount`](crate::store::ReviewItem::amount)), and what its
//! resolution wrote off (`--status resolved --kind KIND` is the write-off
//! schedule).

use super::{Cell, Table};
use crate::export::rfc3339;
use crate::store::review::ReviewGroup;

/// The columns, in order (scripts read the CSV by these names).
pub const COLUMNS: [&str; 17] = [
    "id",
    "status",
    "kind",
    "order_ref",
    "processor_ref",
    "amount",
    "currency",
    "created_at",
    "details",
    "resolved_at",
    "resolved_by",
    "resolution_note",
    "count",
    "item_ids",
    "resolution_action",
    "written_off",
    "written_off_currency",
];

/// Review groups as a listing, in the order given (newest first).
pub fn table(groups: &[ReviewGroup], caption: String) -> Table {
    let mut table = Table::new("review_items", caption, &COLUMNS);
    for group in groups {
        let item = &group.item;
        let ids: Vec<String> = group.item_ids.iter().map(i64::to_string).collect();
        table.push(vec![
            Cell::Number(item.id.to_string()),
            Cell::Text(item.status.clone()),
            Cell::Text(item.kind.as_str().to_owned()),
            Cell::Text(item.order_ref.clone().unwrap_or_default()),
            Cell::Text(item.processor_ref.clone().unwrap_or_default()),
            // A number (a refund's is negative), never defused as text.
            Cell::Number(item.amount.clone().unwrap_or_default()),
            Cell::Text(item.currency.clone().unwrap_or_default()),
            Cell::Text(rfc3339::format(&item.created_at)),
            Cell::Text(item.details.clone()),
            Cell::Text(
                item.resolved_at
                    .as_ref()
                    .map(rfc3339::format)
                    .unwrap_or_default(),
            ),
            Cell::Text(item.resolved_by.clone().unwrap_or_default()),
            Cell::Text(item.resolution_note.clone().unwrap_or_default()),
            Cell::Number(group.count.to_string()),
            Cell::Text(ids.join(" ")),
            Cell::Text(item.resolution_action.clone().unwrap_or_default()),
            // The write-off schedule: a number (an excess is negative).
            Cell::Number(item.written_off.clone().unwrap_or_default()),
            Cell::Text(item.written_off_currency.clone().unwrap_or_default()),
        ]);
    }
    table
}
