//! `/settlement`: settlement batches per currency, sorted by the day they
//! settled then batch id, with what moved the money in columns of their
//! own (sales, refunds, chargebacks, reinstatements, adjustments, fees)
//! that add up to the net, and the lines that differ from the ledger or
//! that no payment has, each with its review item. The columns of
//! `settlement report --format csv` stay downloadable
//! (`?csv=settlement_batches`).

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
    let zone = console.settings.report_timezone;
    let mut report = console.store.settlement_report(None).await?;
    crate::view::settlement::sort_batches(&mut report, zone);
    let unmatched = console.store.unmatched_settlement_lines(None).await?;
    let currencies = console.store.currencies();
    let summary = crate::view::settlement::summary(
        &report,
        format!(
            "{} batch(es) per currency, by the day they settled (in {zone}), then batch id \
             ({}; refunds and chargebacks as amounts taken back)",
            report.len(),
            crate::view::settlement::SUMMARY_EQUATION
        ),
        zone,
        |code| currencies.currency(code).ok(),
    );
    let batches = crate::view::settlement::batches(
        &report,
        format!("{} batch(es) per currency", report.len()),
    );
    let lines = crate::view::settlement::lines(
        &unmatched,
        format!(
            "{} line(s) that differ from the ledger or that no payment has",
            unmatched.len()
        ),
    );
    if let Some(download) = csv_download(&[&summary, &batches, &lines], given(&query.csv)) {
        return Ok(download);
    }
    let body = html! {
        h1 { "Settlement" }
        @if report.is_empty() {
            p.note role="status" { "No settlement imported: `settlement import` brings the processor's settlement files." }
        }
        (super::render_table(&summary, "/settlement", ""))
        p.note {
            "The columns of " code { "settlement report" } ": "
            a.csv href="/settlement?csv=settlement_batches" download="settlement_batches.csv" { "Download CSV" }
        }
        (super::render_table(&lines, "/settlement", ""))
    };
    Ok(layout("Settlement", Some(&session), body).into_response())
}
