//! The orders' listing (`orders list`, the console's `/orders`), each
//! order's reference linking to its page in the console.

use super::{Cell, Table};
use crate::export::rfc3339;
use crate::store::OrderView;

/// The columns, in order (scripts read the CSV and the JSON keys by these
/// names; new columns go at the end).
pub const COLUMNS: [&str; 11] = [
    "order_ref",
    "status",
    "amount",
    "currency",
    "paid",
    "refunded",
    "charged_back",
    "processor_ref",
    "created_at",
    "updated_at",
    "origin",
];

/// Orders as a listing, in the order given.
pub fn table(orders: &[OrderView], caption: String) -> Table {
    let mut table = Table::new("orders", caption, &COLUMNS);
    for o in orders {
        table.push(vec![
            Cell::Link {
                href: order_href(&o.order_ref),
                text: o.order_ref.clone(),
            },
            Cell::Text(o.status.to_string()),
            Cell::Number(o.amount.clone()),
            Cell::Text(o.currency.clone()),
            Cell::Number(o.paid.clone()),
            Cell::Number(o.refunded.clone()),
            Cell::Number(o.charged_back.clone()),
            Cell::Text(o.processor_ref.clone().unwrap_or_default()),
            Cell::Text(rfc3339::format(&o.created_at)),
            Cell::Text(rfc3339::format(&o.updated_at)),
            Cell::Text(o.origin.to_string()),
        ]);
    }
    table
}

/// The link to an order's page (its reference percent-encoded).
pub fn order_href(order_ref: &str) -> String {
    let mut href = String::from("/orders/");
    for byte in order_ref.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            href.push(char::from(byte));
        } else {
            href.push_str(&format!("%{byte:02X}"));
        }
    }
    href
}
