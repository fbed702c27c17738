//! `/notifications`: the notification log, filtered by time, outcome,
//! status, order reference and REFNO; each notification with its identity,
//! the key and algorithm that verified it, its outcome and the ledger rows
//! it made.

use axum::extract::{Query, RawQuery, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::{PageError, Paging, csv_download, given, layout, parse_bound, query_without};
use crate::console::Ctx;
use crate::console::login::Session;
use crate::domain::Outcome;
use crate::store::console::NotificationFilter;

#[derive(Debug, Default, Deserialize)]
pub struct NotificationsQuery {
    from: Option<String>,
    to: Option<String>,
    outcome: Option<String>,
    status: Option<String>,
    order_ref: Option<String>,
    refno: Option<String>,
    page: Option<String>,
    #[serde(alias = "per_page")]
    per: Option<String>,
    csv: Option<String>,
}

pub use crate::view::notifications::table as notifications_table;

/// `GET /notifications?from=&to=&outcome=&status=&order_ref=&refno=`.
pub async fn page(
    State(console): State<Ctx>,
    session: Session,
    Query(query): Query<NotificationsQuery>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    // Days and months begin at midnight in report-timezone.
    let zone = console.settings.report_timezone;
    let outcome = given(&query.outcome)
        .map(|o| Outcome::parse(o).map_err(|_| PageError::bad_request("Unknown outcome.")))
        .transpose()?;
    let filter = NotificationFilter {
        from: parse_bound("from", given(&query.from), false, zone)?,
        to: parse_bound("to", given(&query.to), true, zone)?,
        outcome,
        order_status: given(&query.status).map(str::to_ascii_uppercase),
        order_ref: given(&query.order_ref).map(str::to_owned),
        processor_ref: given(&query.refno).map(str::to_owned),
        limit: i64::MAX,
        offset: 0,
    };
    // The download holds every matching notification, the page one page.
    if given(&query.csv).is_some() {
        let records = console.store.notifications_with_ledger(&filter).await?;
        let table = notifications_table(
            &records,
            format!("{} notification(s), newest first", records.len()),
        );
        if let Some(download) = csv_download(&[&table], given(&query.csv)) {
            return Ok(download);
        }
    }
    let paging = Paging::read(given(&query.page), given(&query.per))?;
    let mut records = console
        .store
        .notifications_with_ledger(&NotificationFilter {
            limit: paging.fetch(),
            offset: paging.offset(),
            ..filter
        })
        .await?;
    let more = paging.cut(&mut records);
    let table = notifications_table(
        &records,
        paging.caption("notification(s)", "newest first", records.len(), more),
    );
    let raw = raw.as_deref();
    let body = html! {
        h1 { "Notifications" }
        form.filters method="get" action="/notifications" {
            p {
                label for="from" { "Received from (days in " (zone) ")" }
                input #from type="date" name="from" value=[given(&query.from)];
            }
            p {
                label for="to" { "Received to (included)" }
                input #to type="date" name="to" value=[given(&query.to)];
            }
            p {
                label for="outcome" { "Outcome" }
                select #outcome name="outcome" {
                    option value="" { "any" }
                    @for o in Outcome::ALL {
                        option value=(o) selected[outcome == Some(o)] { (o) }
                    }
                }
            }
            p {
                label for="status" { "ORDERSTATUS" }
                input #status type="text" name="status" value=[given(&query.status)];
            }
            p {
                label for="order_ref" { "Order reference" }
                input #order_ref type="text" name="order_ref" value=[given(&query.order_ref)];
            }
            p {
                label for="refno" { "REFNO" }
                input #refno type="text" name="refno" value=[given(&query.refno)];
            }
            p { button type="submit" { "Filter" } }
        }
        (super::render_table(&table, "/notifications", &query_without(raw, &["csv", "page", "per", "per_page"])))
        (paging.links("/notifications", &query_without(raw, &["csv", "page"]), "page", more))
    };
    Ok(layout("Notifications", Some(&session), body).into_response())
}
