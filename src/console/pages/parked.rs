//! `/parked`: the parking queue, with each message's reason (metadata only,
//! as `parked list` shows it: bodies are never opened); a resolver requeues
//! one message, or every message of one reason parked since a time, after
//! a page that lists what will move and asks to confirm.

use axum::Form;
use axum::extract::{Query, RawQuery, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::{PageError, Paging, csv_download, csv_time, given, layout, parse_bound, query_without};
use crate::console::login::Session;
use crate::console::{Ctx, csrf};
use crate::queue::parked::{self, ParkedMessage, Selection};
use crate::store::action_log::Actor;
use crate::store::console::ConsoleRole;

#[derive(Debug, Default, Deserialize)]
pub struct ParkedQuery {
    requeued: Option<usize>,
    page: Option<String>,
    #[serde(alias = "per_page")]
    per: Option<String>,
    csv: Option<String>,
}

async fn listed(console: &Ctx) -> Result<Vec<ParkedMessage>, PageError> {
    let Some(amqp) = console.amqp.as_ref() else {
        return Err(PageError::bad_request(
            "This console has no broker configured (amqp-url), so it cannot show the parking queue.",
        ));
    };
    parked::list(amqp).await.map_err(|err| {
        tracing::warn!(error = %err, "console: cannot browse the parking queue");
        PageError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "The broker cannot be reached right now, so the parking queue cannot be \
                      shown. Try again in a moment."
                .to_owned(),
        }
    })
}

/// `GET /parked`.
pub async fn page(
    State(console): State<Ctx>,
    session: Session,
    Query(query): Query<ParkedQuery>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let messages = listed(&console).await?;
    // The download holds every parked message, the page one page of them.
    if given(&query.csv).is_some() {
        let table =
            crate::view::parked::table(&messages, format!("{} parked message(s)", messages.len()));
        if let Some(download) = csv_download(&[&table], given(&query.csv)) {
            return Ok(download);
        }
    }
    let paging = Paging::read(given(&query.page), given(&query.per))?;
    let (shown, more) = paging.slice(&messages);
    let table = crate::view::parked::table(
        shown,
        format!(
            "{} parked message(s): {}",
            messages.len(),
            paging.rows_text(shown.len())
        ),
    );
    let raw = raw.as_deref();
    let mut reasons: Vec<&str> = messages.iter().map(|m| m.reason.as_str()).collect();
    reasons.sort_unstable();
    reasons.dedup();
    let resolver = session.role == ConsoleRole::Resolver;
    let body = html! {
        h1 { "Parked" }
        @if let Some(n) = query.requeued {
            p.note role="status" { (n) " message(s) requeued." }
        }
        p {
            "Messages the worker could not process and that wait for a person: fix the cause "
            "(a missing key, an order to import), then requeue them. Bodies stay sealed and are never shown."
        }
        (super::render_table(&table, "/parked", &query_without(raw, &["csv", "page", "per", "per_page", "requeued"])))
        (paging.links("/parked", &query_without(raw, &["csv", "page", "requeued"]), "page", more))
        @if resolver && !messages.is_empty() {
            h2 { "Requeue" }
            form.filters method="post" action="/parked/requeue" {
                input type="hidden" name=(csrf::FIELD) value=(session.csrf);
                p {
                    label for="id" { "One message (its id)" }
                    select #id name="id" {
                        @for m in shown { option value=(m.id) { (m.id) " (" (m.reason) ")" } }
                    }
                }
                p { button type="submit" name="what" value="one" { "Requeue this message…" } }
            }
            form.filters method="post" action="/parked/requeue" {
                input type="hidden" name=(csrf::FIELD) value=(session.csrf);
                p {
                    label for="reason" { "Every message parked for" }
                    select #reason name="reason" {
                        @for r in &reasons { option value=(r) { (r) } }
                    }
                }
                p {
                    label for="since" { "Parked since (date or RFC 3339 time; empty: any time)" }
                    input #since type="text" name="since" placeholder="2026-11-30";
                }
                p { button type="submit" name="what" value="reason" { "Requeue these messages…" } }
            }
        }
    };
    Ok(layout("Parked", Some(&session), body).into_response())
}

#[derive(Deserialize)]
pub struct RequeueForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    what: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    since: Option<String>,
    /// `yes` once the person confirmed on the page that lists the messages.
    #[serde(default)]
    confirm: Option<String>,
}

/// `POST /parked/requeue`: without `confirm=yes`, the page that lists
/// what would move; with it, the move (resolver only, CSRF token checked
/// both times).
pub async fn requeue(
    State(console): State<Ctx>,
    session: Session,
    Form(form): Form<RequeueForm>,
) -> Result<Response, PageError> {
    session.check_csrf(form.csrf.as_deref())?;
    session.require_resolver()?;
    let since_text = given(&form.since);
    let selection = match (given(&form.what), given(&form.id), given(&form.reason)) {
        (Some("one"), Some(id), _) => Selection::Id(id.to_owned()),
        (Some("reason"), _, Some(reason)) => Selection::Reason {
            reason: reason.to_owned(),
            since: parse_bound("since", since_text, false, chrono_tz::Tz::UTC)?,
        },
        _ => {
            return Err(PageError::bad_request(
                "Say which messages: one id, or a reason (and optionally since when).",
            ));
        }
    };
    let Some(amqp) = console.amqp.clone() else {
        return Err(PageError::bad_request(
            "This console has no broker configured.",
        ));
    };
    let subject = match &selection {
        Selection::Id(id) => id.clone(),
        Selection::Reason { reason, since } => match since {
            Some(since) => format!("reason={reason} since={}", csv_time(since)),
            None => format!("reason={reason}"),
        },
        Selection::All => "all".to_owned(),
    };
    if given(&form.confirm) != Some("yes") {
        let messages = listed(&console).await?;
        let chosen: Vec<ParkedMessage> = messages
            .into_iter()
            .filter(|m| selection.matches_listed(m))
            .collect();
        let table = crate::view::parked::table(
            &chosen,
            format!("{} message(s) would be requeued", chosen.len()),
        );
        let body = html! {
            h1 { "Requeue parked messages?" }
            p { "These messages go back to the work queue, still sealed, with their retry counters reset:" }
            (super::render_table(&table, "/parked", ""))
            form method="post" action="/parked/requeue" {
                input type="hidden" name=(csrf::FIELD) value=(session.csrf);
                input type="hidden" name="what" value=[given(&form.what)];
                input type="hidden" name="id" value=[given(&form.id)];
                input type="hidden" name="reason" value=[given(&form.reason)];
                input type="hidden" name="since" value=[since_text];
                input type="hidden" name="confirm" value="yes";
                p {
                    button type="submit" disabled[chosen.is_empty()] { "Yes, requeue " (chosen.len()) " message(s)" }
                    " "
                    a href="/parked" { "Cancel" }
                }
            }
        };
        return Ok(layout("Parked", Some(&session), body).into_response());
    }
    // Each message's row in the action log commits before the message is
    // published: none moves without it.
    let actor = Actor::console(&session.user);
    let moved = crate::services::requeue::requeue(
        &console.store,
        &amqp,
        console.sealer.as_ref(),
        &selection,
        &actor,
        Some(console.clock.now()),
    )
    .await
    .map_err(|err| {
        tracing::warn!(error = %err, "console: requeue failed");
        PageError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "The messages could not all be moved (those already moved stay moved). \
                      Look at the parking queue again."
                .to_owned(),
        }
    })?;
    tracing::info!(user = %session.user, selection = %subject, moved = moved.len(), "console: parked messages requeued");
    Ok((
        StatusCode::SEE_OTHER,
        [(LOCATION, format!("/parked?requeued={}", moved.len()))],
    )
        .into_response())
}
