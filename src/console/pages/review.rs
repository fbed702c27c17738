//! `/review`: the exception queue, filtered by kind and status, grouped by
//! order; a resolver resolves an item with one of the actions its kind
//! allows and a note, and the resolution names them (`resolved_by`), as
//! does the console's ledger.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::{Cell, PageError, Table, csv_download, csv_time, given, layout, shown_time};
use crate::console::login::Session;
use crate::console::{Ctx, csrf};
use crate::domain::ReviewKind;
use crate::store::console::{ConsoleAction, ConsoleRole};
use crate::store::reports::ReviewStatus;
use crate::store::{ReviewItem, StoreError};

#[derive(Debug, Default, Deserialize)]
pub struct ReviewQuery {
    kind: Option<String>,
    status: Option<String>,
    done: Option<i64>,
    csv: Option<String>,
}

/// A way to resolve an item: its form value and what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolveAction {
    pub value: &'static str,
    pub label: &'static str,
}

/// Mark it resolved: the person looked and dealt with it elsewhere.
const RESOLVE: ResolveAction = ResolveAction {
    value: "resolve",
    label: "Mark resolved (dealt with elsewhere)",
};
/// Apply a late repeat as a notification of its own.
const APPLY_REPEAT: ResolveAction = ResolveAction {
    value: "apply-repeat",
    label: "Apply the repeat (a genuine second refund)",
};

/// The actions an item of `kind` may be resolved with.
pub fn allowed_actions(kind: ReviewKind) -> Vec<ResolveAction> {
    match kind {
        ReviewKind::LateRepeat => vec![RESOLVE, APPLY_REPEAT],
        _ => vec![RESOLVE],
    }
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
    let mut table = Table::new(
        "review_items",
        format!("{} item(s)", items.len()),
        &[
            "id",
            "status",
            "kind",
            "order_ref",
            "processor_ref",
            "created_at",
            "details",
            "resolved_at",
            "resolved_by",
            "resolution_note",
        ],
    );
    for item in &items {
        table.push(vec![
            Cell::Number(item.id.to_string()),
            Cell::Text(item.status.clone()),
            Cell::Text(item.kind.to_string()),
            Cell::Text(item.order_ref.clone().unwrap_or_default()),
            Cell::Text(item.processor_ref.clone().unwrap_or_default()),
            Cell::Text(csv_time(&item.created_at)),
            Cell::Text(item.details.clone()),
            Cell::Text(item.resolved_at.as_ref().map(csv_time).unwrap_or_default()),
            Cell::Text(item.resolved_by.clone().unwrap_or_default()),
            Cell::Text(item.resolution_note.clone().unwrap_or_default()),
        ]);
    }
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
                                            option value=(action.value) { (action.label) }
                                        }
                                    }
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
        (table.render("/review", &super::query_without_csv(raw.as_deref())))
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
    let note = form.note.trim();
    if note.is_empty() {
        return Err(PageError::bad_request(
            "A resolution needs a note: the audit trail says who and why.",
        ));
    }
    let items = console
        .store
        .review_items_by_status(ReviewStatus::Open, None)
        .await?;
    let Some(item) = items.iter().find(|i| i.id == id) else {
        return Err(PageError::not_found(format!("No open review item #{id}.")));
    };
    let action = given(&form.action).unwrap_or(RESOLVE.value);
    let Some(action) = allowed_actions(item.kind)
        .into_iter()
        .find(|a| a.value == action)
    else {
        return Err(PageError::bad_request(format!(
            "An item of kind {} cannot be resolved with `{action}`.",
            item.kind
        )));
    };
    let invalid = |err: StoreError| match err {
        StoreError::Invalid(message) => PageError::bad_request(message),
        other => PageError::from(other),
    };
    let resolved = if action == APPLY_REPEAT {
        console
            .store
            .resolve_by_applying_repeat(id, &session.user, note, &Default::default())
            .await
            .map_err(invalid)?;
        true
    } else {
        console
            .store
            .resolve_review_item(id, &session.user, note)
            .await
            .map_err(invalid)?
    };
    if !resolved {
        return Err(PageError::not_found(format!("No open review item #{id}.")));
    }
    console
        .store
        .record_console_action(
            &session.user,
            ConsoleAction::ResolveReview,
            Some(&format!("#{id}")),
            Some(&format!("{} {}", item.kind, action.value)),
            console.clock.now(),
        )
        .await?;
    tracing::info!(user = %session.user, item = id, action = action.value, "console: review item resolved");
    Ok((
        StatusCode::SEE_OTHER,
        [(LOCATION, format!("/review?done={id}"))],
    )
        .into_response())
}
