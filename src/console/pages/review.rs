//! `/review`: the exception queue, filtered by kind and status, grouped by
//! order; a resolver resolves an item with one of the actions its kind
//! allows ([`allowed_actions`]) and a note, through
//! [`services::review::resolve`](crate::services::review::resolve) (so the
//! resolution ledger names the user as `by`), and the console's ledger
//! records it too.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::{PageError, csv_download, given, layout, shown_time};
use crate::console::login::Session;
use crate::console::{Ctx, csrf};
use crate::domain::ReviewKind;
use crate::domain::review::{ReviewAction, allowed_actions};
use crate::services::review::{ResolveError, ResolveRequest, resolve as resolve_item};
use crate::store::ReviewItem;
use crate::store::console::{ConsoleAction, ConsoleRole};
use crate::store::review::{ReviewGroup, ReviewStatus};

#[derive(Debug, Default, Deserialize)]
pub struct ReviewQuery {
    kind: Option<String>,
    status: Option<String>,
    done: Option<i64>,
    csv: Option<String>,
}

/// `GET /review?kind=&status=open|resolved|all`.
pub async fn page(
    State(console): State<Ctx>,
    session: Session,
    Query(query): Query<ReviewQuery>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let kind = given(&query.kind)
        .map(|k| ReviewKind::parse(k).map_err(|_| PageError::bad_request("Unknown review kind.")))
        .transpose()?;
    let status = match given(&query.status) {
        None | Some("open") => ReviewStatus::Open,
        Some("resolved") => ReviewStatus::Resolved,
        Some("all") => ReviewStatus::All,
        Some(_) => return Err(PageError::bad_request("`status` is open, resolved or all.")),
    };
    let items = console.store.review_items_by_status(status, kind).await?;
    let groups: Vec<ReviewGroup> = items.iter().cloned().map(ReviewGroup::of).collect();
    let table = crate::view::review::table(&groups, format!("{} item(s)", items.len()));
    if let Some(download) = csv_download(&[&table], given(&query.csv)) {
        return Ok(download);
    }
    let mut by_order: BTreeMap<Option<&str>, Vec<&ReviewItem>> = BTreeMap::new();
    for item in &items {
        by_order
            .entry(item.order_ref.as_deref())
            .or_default()
            .push(item);
    }
    let resolver = session.role == ConsoleRole::Resolver;
    let status_name = match status {
        ReviewStatus::Open => "open",
        ReviewStatus::Resolved => "resolved",
        ReviewStatus::All => "all",
    };
    let body = html! {
        h1 { "Review queue" }
        @if let Some(done) = query.done {
            p.note role="status" { "Review item #" (done) " resolved." }
        }
        form.filters method="get" action="/review" {
            p {
                label for="kind" { "Kind" }
                select #kind name="kind" {
                    option value="" { "any" }
                    @for k in ReviewKind::ALL {
                        option value=(k) selected[kind == Some(k)] { (k) }
                    }
                }
            }
            p {
                label for="status" { "Status" }
                select #status name="status" {
                    @for s in ["open", "resolved", "all"] {
                        option value=(s) selected[s == status_name] { (s) }
                    }
                }
            }
            p { button type="submit" { "Filter" } }
        }
        @if !resolver {
            p.note { "Your role is viewer: you see the queue; a resolver resolves items." }
        }
        @if items.is_empty() { p { "No review item matches." } }
        @for (order_ref, group) in &by_order {
            section.group aria-label=(format!("Order {}", order_ref.unwrap_or("(none)"))) {
                h2 {
                    @match order_ref {
                        Some(r) => { "Order " a href=(super::orders::order_href(r)) { (r) } },
                        None => { "No order" },
                    }
                    " (" (group.len()) ")"
                }
                @for item in group {
                    article.item #(format!("item-{}", item.id)) {
                        h3 { "#" (item.id) " " (item.kind) " (" (item.status) ")" }
                        p { (item.details) }
                        p.meta {
                            "Opened " (shown_time(&item.created_at))
                            @if let Some(refno) = &item.processor_ref { ", REFNO " (refno) }
                        }
                        @if let Some(at) = &item.resolved_at {
                            p.meta {
                                "Resolved " (shown_time(at)) " by " (item.resolved_by.as_deref().unwrap_or("-"))
                                @if let Some(action) = &item.resolution_action { " (" (action) ")" }
                                ": " (item.resolution_note.as_deref().unwrap_or("-"))
                            }
                        }
                        @if resolver && item.status == "open" {
                            form.resolve method="post" action=(format!("/review/{}/resolve", item.id)) {
                                input type="hidden" name=(csrf::FIELD) value=(session.csrf);
                                p {
                                    label for=(format!("action-{}", item.id)) { "Action" }
                                    select id=(format!("action-{}", item.id)) name="action" {
                                        @for action in allowed_actions(item.kind) {
                                            option value=(action.as_str()) { (action) ": " (action.describe()) }
                                        }
                                    }
                                }
                                @if allowed_actions(item.kind).contains(&ReviewAction::LinkOrder) {
                                    p {
                                        label for=(format!("order-{}", item.id)) { "Order to link (link_order; empty: the order its notifications name)" }
                                        input id=(format!("order-{}", item.id)) type="text" name="order_ref";
                                    }
                                }
                                p.check {
                                    input id=(format!("group-{}", item.id)) type="checkbox" name="group" value="yes";
                                    label for=(format!("group-{}", item.id)) { "Also every other open " (item.kind) " item of this order" }
                                }
                                p {
                                    label for=(format!("note-{}", item.id)) { "Note (why; no card numbers)" }
                                    textarea id=(format!("note-{}", item.id)) name="note" rows="2" required {}
                                }
                                p { button type="submit" { "Resolve #" (item.id) } }
                            }
                        }
                    }
                }
            }
        }
        (super::render_table(&table, "/review", &super::query_without_csv(raw.as_deref())))
    };
    Ok(layout("Review queue", Some(&session), body).into_response())
}

#[derive(Deserialize)]
pub struct ResolveForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    note: String,
    #[serde(default)]
    order_ref: Option<String>,
    #[serde(default)]
    group: Option<String>,
}

/// `POST /review/{id}/resolve`: resolver only, with the session's CSRF
/// token, an action the item's kind allows and a note.
pub async fn resolve(
    State(console): State<Ctx>,
    session: Session,
    Path(id): Path<i64>,
    Form(form): Form<ResolveForm>,
) -> Result<Response, PageError> {
    session.check_csrf(form.csrf.as_deref())?;
    session.require_resolver()?;
    let Some(action) = given(&form.action) else {
        return Err(PageError::bad_request("Choose an action."));
    };
    let action = ReviewAction::parse(action)
        .map_err(|_| PageError::bad_request("Unknown review action."))?;
    let mut request = ResolveRequest::new(id, action, &session.user, &form.note);
    request.order_ref = given(&form.order_ref).map(str::to_owned);
    request.group = form.group.as_deref() == Some("yes");
    let outcome = resolve_item(&console.store, &request)
        .await
        .map_err(|err| match err {
            ResolveError::Store(err) => PageError::from(err),
            ResolveError::NotFound(_) => PageError::not_found(err.to_string()),
            ResolveError::AlreadyResolved { .. } => PageError {
                status: StatusCode::CONFLICT,
                message: err.to_string(),
            },
            other => PageError::bad_request(other.to_string()),
        })?;
    let items = outcome
        .items
        .iter()
        .map(|i| format!("#{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    console
        .store
        .record_console_action(
            &session.user,
            ConsoleAction::ResolveReview,
            Some(&format!("#{id}")),
            Some(&format!("{action}: {items}")),
            console.clock.now(),
        )
        .await?;
    tracing::info!(user = %session.user, item = id, action = %action, "console: review item resolved");
    Ok((
        StatusCode::SEE_OTHER,
        [(LOCATION, format!("/review?done={id}"))],
    )
        .into_response())
}
