//! `/settlement`: settlement batches per currency, sorted by the day they
//! settled then batch id, with what moved the money in columns of their
//! own (sales, refunds, chargebacks, reinstatements, adjustments, fees)
//! that add up to the net, and the lines that differ from the ledger or
//! that no payment has, each with its review item. The columns of
//! `settlement report --format csv` stay downloadable
//! (`?csv=settlement_batches`).

use axum::extract::{Query, RawQuery, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::{PageError, Paging, csv_download, given, layout, query_without};
use crate::console::Ctx;
use crate::console::login::Session;

#[derive(Debug, Default, Deserialize)]
pub struct SettlementQuery {
    /// The page of the batches.
    page: Option<String>,
    /// The page of the unmatched lines.
    lines_page: Option<String>,
    #[serde(alias = "per_page")]
    per: Option<String>,
    csv: Option<String>,
}

/// `GET /settlement`.
pub async fn page(
    State(console): State<Ctx>,
    session: Session,
    Query(query): Query<SettlementQuery>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let zone = console.settings.report_timezone;
    let mut report = console.store.settlement_report(None).await?;
    crate::view::settlement::sort_batches(&mut report, zone);
    let unmatched = console.store.unmatched_settlement_lines(None).await?;
    let currencies = console.store.currencies();
    let summary_caption = |shown: &str| {
        format!(
            "{} batch(es) per currency, by the day they settled (in {zone}), then batch id \
             ({}; refunds and chargebacks as amounts taken back){shown}",
            report.len(),
            crate::view::settlement::SUMMARY_EQUATION
        )
    };
    let lines_caption = |shown: &str| {
        format!(
            "{} line(s) that differ from the ledger or that no payment has{shown}",
            unmatched.len()
        )
    };
    // The downloads hold every batch and every line; the page one page of
    // each (`page` for the batches, `lines_page` for the lines).
    if given(&query.csv).is_some() {
        let summary =
            crate::view::settlement::summary(&report, summary_caption(""), zone, |code| {
                currencies.currency(code).ok()
            });
        let batches = crate::view::settlement::batches(
            &report,
            format!("{} batch(es) per currency", report.len()),
        );
        let lines = crate::view::settlement::lines(&unmatched, lines_caption(""));
        if let Some(download) = csv_download(&[&summary, &batches, &lines], given(&query.csv)) {
            return Ok(download);
        }
    }
    let per = given(&query.per);
    let batch_paging = Paging::read(given(&query.page), per)?;
    let line_paging = Paging::read(given(&query.lines_page), per)?;
    let (batches_shown, more_batches) = batch_paging.slice(&report);
    let (lines_shown, more_lines) = line_paging.slice(&unmatched);
    let summary = crate::view::settlement::summary(
        batches_shown,
        summary_caption(&format!(
            ": {}",
            batch_paging.rows_text(batches_shown.len())
        )),
        zone,
        |code| currencies.currency(code).ok(),
    );
    let lines = crate::view::settlement::lines(
        lines_shown,
        lines_caption(&format!(": {}", line_paging.rows_text(lines_shown.len()))),
    );
    let raw = raw.as_deref();
    let body = html! {
        h1 { "Settlement" }
        @if report.is_empty() {
            p.note role="status" { "No settlement imported: `settlement import` brings the processor's settlement files." }
        }
        (super::render_table(&summary, "/settlement", ""))
        (batch_paging.links("/settlement", &query_without(raw, &["csv", "page"]), "page", more_batches))
        p.note {
            "The columns of " code { "settlement report" } ": "
            a.csv href="/settlement?csv=settlement_batches" download="settlement_batches.csv" { "Download CSV" }
        }
        (super::render_table(&lines, "/settlement", ""))
        (line_paging.links("/settlement", &query_without(raw, &["csv", "lines_page"]), "lines_page", more_lines))
    };
    Ok(layout("Settlement", Some(&session), body).into_response())
}
