//! `/settlement`: settlement batches per currency, their matched and
//! unmatched lines (`settlement report`), and the lines that differ from
//! the ledger or that no payment has, each with its review item.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::{PageError, csv_download, given, layout};
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
    let batches = crate::view::settlement::batches(
        &report,
        format!("{} batch(es) per currency, oldest first", report.len()),
    );
    let lines = crate::view::settlement::lines(
        &unmatched,
        format!(
            "{} line(s) that differ from the ledger or that no payment has",
            unmatched.len()
        ),
    );
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
