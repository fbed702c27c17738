//! `/`: the report of a period (what `report` prints) and a chart of the
//! money moved per day.

use axum::extract::{Query, RawQuery, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::{Cell, PageError, Table, csv_download, csv_time, given, layout, parse_bound};
use crate::console::Ctx;
use crate::console::chart;
use crate::console::login::Session;
use crate::store::{ReportBasis, ReportPeriod};

#[derive(Debug, Default, Deserialize)]
pub struct OverviewQuery {
    from: Option<String>,
    to: Option<String>,
    by: Option<String>,
    csv: Option<String>,
}

/// `GET /?from=&to=&by=created|event`.
pub async fn page(
    State(console): State<Ctx>,
    session: Session,
    Query(query): Query<OverviewQuery>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    // Days and months begin at midnight in report-timezone.
    let zone = console.settings.report_timezone;
    let by = match given(&query.by) {
        None | Some("created") => ReportBasis::Created,
        Some("event") => ReportBasis::Event,
        Some("settled") => ReportBasis::Settled,
        Some(_) => {
            return Err(PageError::bad_request("`by` is created, event or settled."));
        }
    };
    let period = ReportPeriod {
        from: parse_bound("from", given(&query.from), false, zone)?,
        to: parse_bound("to", given(&query.to), true, zone)?,
        by,
    };
    if let (Some(from), Some(to)) = (period.from, period.to)
        && from >= to
    {
        return Err(PageError::bad_request(
            "The period is empty: `from` must be before `to`.",
        ));
    }
    let report = console.store.finance_report(&period).await?;
    let days = console.store.daily_money(&period).await?;

    let mut totals = Table::new(
        "totals",
        crate::store::reports::TOTALS_CAPTION,
        &[
            "currency",
            "orders",
            "expected",
            "paid",
            "refunded",
            "reversed",
            "charged_back",
            "reinstated",
            "vat",
            "net_revenue",
            "commission",
            "fees",
            "net",
        ],
    );
    for t in &report.totals {
        totals.push(vec![
            Cell::Text(t.currency.clone()),
            Cell::Number(t.orders.to_string()),
            Cell::Number(t.expected.clone()),
            Cell::Number(t.paid.clone()),
            Cell::Number(t.refunded.clone()),
            Cell::Number(t.reversed.clone()),
            Cell::Number(t.charged_back.clone()),
            Cell::Number(t.reinstated.clone()),
            Cell::Number(t.vat.clone()),
            Cell::Number(t.net_revenue.clone()),
            Cell::Number(t.commission.clone()),
            Cell::Number(t.fees.clone()),
            Cell::Number(t.net.clone()),
        ]);
    }
    // As `report` lists them: only currencies with a write-off, which
    // its net already holds.
    let mut written_off = Table::new(
        "written_off",
        "Written off from the review queue (in NET: shortfalls less excesses)",
        &["currency", "written_off"],
    );
    for t in report
        .totals
        .iter()
        .filter(|t| t.figures.clearing_written_off() != 0)
    {
        written_off.push(vec![
            Cell::Text(t.currency.clone()),
            Cell::Number(t.written_off.clone()),
        ]);
    }
    let mut states = Table::new("orders_by_state", "Orders by state", &["state", "orders"]);
    for (state, n) in &report.orders_by_state {
        states.push(vec![
            Cell::Link {
                href: format!("/orders?status={state}"),
                text: state.to_string(),
            },
            Cell::Number(n.to_string()),
        ]);
    }
    let mut exceptions = Table::new(
        "open_exceptions",
        "Open exceptions by kind",
        &["kind", "open", "oldest_at", "oldest_age_seconds"],
    );
    for e in &report.open_exceptions {
        exceptions.push(vec![
            Cell::Link {
                href: format!("/review?kind={}", e.kind),
                text: e.kind.to_string(),
            },
            Cell::Number(e.open.to_string()),
            Cell::Text(csv_time(&e.oldest_at)),
            Cell::Number(e.oldest_age_seconds.to_string()),
        ]);
    }
    let mut outcomes = Table::new(
        "notifications_by_outcome",
        "Notifications by outcome",
        &["outcome", "notifications"],
    );
    for (outcome, n) in &report.notifications_by_outcome {
        outcomes.push(vec![
            Cell::Link {
                href: format!("/notifications?outcome={outcome}"),
                text: outcome.to_string(),
            },
            Cell::Number(n.to_string()),
        ]);
    }
    let mut daily = Table::new(
        "daily",
        "Money moved per day (by the time of the ledger rows that moved it; balance = paid - \
         refunded - reversed - charged back + reinstated, before VAT, commission and fees)",
        &[
            "day",
            "currency",
            "paid",
            "refunded",
            "reversed_and_charged_back",
            "balance",
        ],
    );
    for d in &days {
        let amount = |minor| crate::domain::Money::from_minor(minor, d.currency).format_amount();
        daily.push(vec![
            Cell::Text(d.day.to_string()),
            Cell::Text(d.currency.to_string()),
            Cell::Number(amount(d.paid)),
            Cell::Number(amount(d.refunded)),
            Cell::Number(amount(d.taken_back)),
            Cell::Number(amount(d.balance())),
        ]);
    }
    let tables = [
        &totals,
        &written_off,
        &states,
        &exceptions,
        &outcomes,
        &daily,
    ];
    if let Some(download) = csv_download(&tables, given(&query.csv)) {
        return Ok(download);
    }
    let query_string = super::query_without_csv(raw.as_deref());
    let period_text = format!(
        "{} to {} ({}), {}",
        period
            .from
            .as_ref()
            .map_or("the beginning".to_owned(), super::shown_time),
        period
            .to
            .as_ref()
            .map_or("now".to_owned(), super::shown_time),
        "end excluded",
        match by {
            ReportBasis::Created => "orders created in the period, with all their money",
            ReportBasis::Event => "money moved in the period, by the processor's dates",
            ReportBasis::Settled => "money moved in the period, fees by their settlement date",
        }
    );
    let body = html! {
        h1 { "Overview" }
        form.filters method="get" action="/" {
            p {
                label for="from" { "From (date, included; days in " (zone) ")" }
                input #from type="date" name="from" value=[given(&query.from)];
            }
            p {
                label for="to" { "To (date, included; days in " (zone) ")" }
                input #to type="date" name="to" value=[given(&query.to)];
            }
            p {
                label for="by" { "Count" }
                select #by name="by" {
                    option value="created" selected[by == ReportBasis::Created] { "orders created in the period" }
                    option value="event" selected[by == ReportBasis::Event] { "money moved in the period" }
                    option value="settled" selected[by == ReportBasis::Settled] { "money moved in the period, fees by settlement date" }
                }
            }
            p { button type="submit" { "Show" } }
        }
        p.period { "Period: " (period_text) }
        (super::render_table(&totals, "/", &query_string))
        @if !written_off.rows.is_empty() {
            (super::render_table(&written_off, "/", &query_string))
        }
        h2 { "Money per day" }
        (chart::render(&days))
        (super::render_table(&daily, "/", &query_string))
        div.columns {
            (super::render_table(&states, "/", &query_string))
            (super::render_table(&exceptions, "/", &query_string))
            (super::render_table(&outcomes, "/", &query_string))
        }
    };
    Ok(layout("Overview", Some(&session), body).into_response())
}
