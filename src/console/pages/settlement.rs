//! `/settlement`: settlement batches, their matched and unmatched lines per
//! currency. Until settlement files are imported, the page says so.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::{PageError, Table, csv_download, given, layout};
use crate::console::Ctx;
use crate::console::login::Session;

#[derive(Debug, Default, Deserialize)]
pub struct SettlementQuery {
    csv: Option<String>,
}

/// `GET /settlement`.
pub async fn page(
    State(_console): State<Ctx>,
    session: Session,
    Query(query): Query<SettlementQuery>,
) -> Result<Response, PageError> {
    let batches = Table::new(
        "settlement_batches",
        "Settlement batches",
        &[
            "batch",
            "currency",
            "lines",
            "matched",
            "unmatched",
            "matched_amount",
            "unmatched_amount",
        ],
    );
    if let Some(download) = csv_download(&[&batches], given(&query.csv)) {
        return Ok(download);
    }
    let body = html! {
        h1 { "Settlement" }
        p.note role="status" { "No settlement imported: this version's books hold no settlement batches yet." }
        (batches.render("/settlement", ""))
    };
    Ok(layout("Settlement", Some(&session), body).into_response())
}
