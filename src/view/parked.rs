//! The parking queue's listing: metadata of each parked message, never a
//! body (`parked list` and the console's `/parked`).

use super::{Cell, Table};
use crate::export::rfc3339;
use crate::queue::parked::ParkedMessage;

/// Parked messages as a listing, oldest first as given.
pub fn table(messages: &[ParkedMessage], caption: String) -> Table {
    let mut table = Table::new(
        "parked",
        caption,
        &[
            "id",
            "body_sha256",
            "reason",
            "attempts",
            "received_at",
            "parked_at",
            "bytes",
            "sealed_by",
            "notice",
        ],
    );
    for m in messages {
        table.push(vec![
            Cell::Text(m.id.clone()),
            Cell::Text(m.body_sha256.clone()),
            Cell::Text(m.reason.clone()),
            Cell::Number(m.attempts.to_string()),
            Cell::Text(rfc3339::format(&m.received_at)),
            Cell::Text(
                m.parked_at
                    .as_ref()
                    .map(rfc3339::format)
                    .unwrap_or_default(),
            ),
            Cell::Number(m.bytes.to_string()),
            Cell::Text(m.sealed_by.clone().unwrap_or_default()),
            Cell::Text(m.notice.clone().unwrap_or_default()),
        ]);
    }
    table
}
