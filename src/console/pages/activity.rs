//! `/activity`: the action log, what people did and under which name:
//! through the console (logins, logouts, resolutions, requeues, user
//! changes) and on the command line (with `--by`, and the operating-system
//! account and host the command ran under).

use axum::extract::{Query, RawQuery, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::{Cell, PageError, Paging, Table, csv_download, csv_time, given, layout, query_without};
use crate::console::Ctx;
use crate::console::login::Session;
use crate::store::console::ConsoleActionRow;

#[derive(Debug, Default, Deserialize)]
pub struct ActivityQuery {
    page: Option<String>,
    #[serde(alias = "per_page")]
    per: Option<String>,
    csv: Option<String>,
}

fn table(rows: &[ConsoleActionRow], caption: String) -> Table {
    let mut table = Table::new(
        "activity",
        caption,
        &[
            "at", "user", "source", "run as", "action", "subject", "details",
        ],
    );
    for row in rows {
        // Who ran a command-line action on which machine, as the program
        // read them (never typed): `account@host`.
        let run_as = match (&row.os_user, &row.host) {
            (Some(user), Some(host)) => format!("{user}@{host}"),
            (Some(user), None) => user.clone(),
            (None, Some(host)) => format!("@{host}"),
            (None, None) => String::new(),
        };
        table.push(vec![
            Cell::Text(csv_time(&row.at)),
            Cell::Text(row.user_name.clone()),
            Cell::Text(row.source.clone()),
            Cell::Text(run_as),
            Cell::Text(row.action.clone()),
            Cell::Text(row.subject.clone().unwrap_or_default()),
            Cell::Text(row.details.clone().unwrap_or_default()),
        ]);
    }
    table
}

/// `GET /activity`.
pub async fn page(
    State(console): State<Ctx>,
    session: Session,
    Query(query): Query<ActivityQuery>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    // The download holds the whole ledger, the page one page of it.
    if given(&query.csv).is_some() {
        let rows = console.store.console_actions(0, i64::MAX).await?;
        let table = table(&rows, format!("{} action(s), newest first", rows.len()));
        if let Some(download) = csv_download(&[&table], given(&query.csv)) {
            return Ok(download);
        }
    }
    let paging = Paging::read(given(&query.page), given(&query.per))?;
    let mut rows = console
        .store
        .console_actions(paging.offset(), paging.fetch())
        .await?;
    let more = paging.cut(&mut rows);
    let table = table(
        &rows,
        paging.caption("action(s)", "newest first", rows.len(), more),
    );
    let per = query_without(raw.as_deref(), &["csv", "page"]);
    let body = html! {
        h1 { "Activity" }
        p { "What people did, under their names: through the console, or on the command line (with the account and machine it ran under). The log is append-only and sealed in a hash chain." }
        (super::render_table(&table, "/activity", ""))
        (paging.links("/activity", &per, "page", more))
    };
    Ok(layout("Activity", Some(&session), body).into_response())
}
