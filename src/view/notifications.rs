//! The notification log's listing (the console's `/notifications` and an
//! order's page): each notification with its identity, the key and
//! algorithm that verified it, its outcome and the ledger rows it made.

use super::orders::order_href;
use super::{Cell, Table};
use crate::export::rfc3339;
use crate::store::console::NotificationRecord;

/// Notifications as a listing, in the order given (the console's log, and
/// an order's page).
pub fn table(records: &[NotificationRecord], caption: String) -> Table {
    let mut table = Table::new(
        "notifications",
        caption,
        &[
            "id",
            "received_at",
            "order_ref",
            "processor_ref",
            "order_status",
            "amount",
            "key_id",
            "algorithm",
            "body_sha256",
            "identity",
            "repeat_of",
            "outcome",
            "reason",
            "ledger",
        ],
    );
    for n in records {
        let ledger = n
            .ledger
            .iter()
            .map(|e| {
                format!(
                    "{} {}: {} -> {} ({})",
                    e.order_ref, e.effect, e.old_status, e.new_status, e.reason
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        table.push(vec![
            Cell::Number(n.id.to_string()),
            Cell::Text(rfc3339::format(&n.received_at)),
            match &n.order_ref {
                Some(order_ref) => Cell::Link {
                    href: order_href(order_ref),
                    text: order_ref.clone(),
                },
                None => Cell::Text(String::new()),
            },
            Cell::Text(n.processor_ref.clone().unwrap_or_default()),
            Cell::Text(n.order_status.clone().unwrap_or_default()),
            Cell::Number(n.amount.clone().unwrap_or_default()),
            Cell::Text(n.key_id.clone().unwrap_or_default()),
            Cell::Text(n.algorithm.clone().unwrap_or_default()),
            Cell::Text(n.body_sha256.clone()),
            Cell::Text(n.identity.clone().unwrap_or_default()),
            Cell::Text(n.repeat_of.map(|id| id.to_string()).unwrap_or_default()),
            Cell::Text(n.outcome.to_string()),
            Cell::Text(n.reason.clone().unwrap_or_default()),
            Cell::Text(ledger),
        ]);
    }
    table
}
