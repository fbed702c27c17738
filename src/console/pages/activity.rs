//! `/activity`: the console's ledger, what people did through it and
//! under which name (logins, logouts, resolutions, requeues).

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::{Cell, PageError, Table, csv_download, csv_time, given, layout};
use crate::console::Ctx;
use crate::console::login::Session;

/// The most recent actions shown.
const LIMIT: i64 = 500;

#[derive(Debug, Default, Deserialize)]
pub struct ActivityQuery {
    csv: Option<String>,
}

/// `GET /activity`.
pub async fn page(
    State(console): State<Ctx>,
    session: Session,
    Query(query): Query<ActivityQuery>,
) -> Result<Response, PageError> {
    let rows = console.store.console_actions(LIMIT).await?;
    let mut table = Table::new(
        "activity",
        format!("The last {} action(s), newest first", rows.len()),
        &["at", "user", "action", "subject", "details"],
    );
    for row in &rows {
        table.push(vec![
            Cell::Text(csv_time(&row.at)),
            Cell::Text(row.user_name.clone()),
            Cell::Text(row.action.clone()),
            Cell::Text(row.subject.clone().unwrap_or_default()),
            Cell::Text(row.details.clone().unwrap_or_default()),
        ]);
    }
    if let Some(download) = csv_download(&[&table], given(&query.csv)) {
        return Ok(download);
    }
    let body = html! {
        h1 { "Activity" }
        p { "What people did through the console, under their names. The ledger is append-only." }
        (super::render_table(&table, "/activity", ""))
    };
    Ok(layout("Activity", Some(&session), body).into_response())
}
