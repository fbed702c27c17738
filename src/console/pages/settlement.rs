//! `/settlement`: settlement batches per currency, their matched and
//! unmatched lines (`settlement report`), and the lines that differ from
//! the ledger or that no payment has, each with its review item.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::{Cell, PageError, Table, csv_download, csv_time, given, layout};
use crate::console::Ctx;
use crate::console::login::Session;

#[derive(Debug, Default, Deserialize)]
pub struct SettlementQuery {
    csv: Option<String>,
}

/// `GET /settlement`.
pub async fn page(
    State(console): State<Ctx>,
    session: Session,
    Query(query): Query<SettlementQuery>,
) -> Result<Response, PageError> {
    let report = console.store.settlement_report(None).await?;
    let unmatched = console.store.unmatched_settlement_lines(None).await?;
    let mut batches = Table::new(
        "settlement_batches",
        format!("{} batch(es) per currency, oldest first", report.len()),
        &[
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
        ],
    );
    for b in &report {
        batches.push(vec![
            Cell::Text(b.batch_id.clone()),
            Cell::Text(b.currency.clone()),
            Cell::Text(
                b.first_settled_at
                    .as_ref()
                    .map(csv_time)
                    .unwrap_or_default(),
            ),
            Cell::Text(b.last_settled_at.as_ref().map(csv_time).unwrap_or_default()),
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
    let mut lines = Table::new(
        "unmatched_lines",
        format!(
            "{} line(s) that differ from the ledger or that no payment has",
            unmatched.len()
        ),
        &[
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
        ],
    );
    for l in &unmatched {
        lines.push(vec![
            Cell::Number(l.id.to_string()),
            Cell::Text(l.batch_id.clone()),
            Cell::Text(l.status.to_string()),
            Cell::Text(l.kind.to_string()),
            Cell::Text(l.processor_ref.clone().unwrap_or_default()),
            match &l.order_ref {
                Some(order_ref) => Cell::Link {
                    href: super::orders::order_href(order_ref),
                    text: order_ref.clone(),
                },
                None => Cell::Text(String::new()),
            },
            Cell::Text(l.currency.clone()),
            Cell::Number(l.gross.clone()),
            Cell::Number(l.fee.clone()),
            Cell::Number(l.net.clone()),
            Cell::Number(l.expected.clone().unwrap_or_default()),
            Cell::Text(csv_time(&l.settled_at)),
            match l.review_item_id {
                Some(id) => Cell::Link {
                    href: format!("/review?status=all#item-{id}"),
                    text: format!("#{id}"),
                },
                None => Cell::Text(String::new()),
            },
        ]);
    }
    if let Some(download) = csv_download(&[&batches, &lines], given(&query.csv)) {
        return Ok(download);
    }
    let body = html! {
        h1 { "Settlement" }
        @if report.is_empty() {
            p.note role="status" { "No settlement imported: `settlement import` brings the processor's settlement files." }
        }
        (super::render_table(&batches, "/settlement", ""))
        (super::render_table(&lines, "/settlement", ""))
    };
    Ok(layout("Settlement", Some(&session), body).into_response())
}
