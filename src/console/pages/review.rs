//! `/review`: the exception queue as a table, one row per group as `review
//! list` groups them (open items of one kind for one order), filtered by
//! kind and status, sorted on the server by age, amount or kind
//! (`?sort=&dir=`) and paged (`?page=&per=`); `/review/{id}`: one item
//! with everything behind it (`review show`), where a resolver resolves
//! it, alone or with its group, with one of the actions its kind allows
//! ([`allowed_actions`]) and a note, through
//! [`services::review::resolve`](crate::services::review::resolve) (so the
//! resolution ledger names the user as `by`, and the action log records
//! it in the same transaction). A `link_order` above `four-eyes-amount`
//! is only asked for there; another resolver confirms it on the item's
//! page (`POST /review/{id}/confirm`) before its money moves.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Cell, PageError, Table, csv_download, csv_time, given, layout, shown_time};
use crate::console::login::Session;
use crate::console::{Ctx, csrf};
use crate::domain::ReviewKind;
use crate::domain::review::{ReviewAction, allowed_actions};
use crate::services::review::{
    ConfirmRequest, Origin, ResolveError, ResolveRequest, confirm_link_order,
    resolve as resolve_item, same_person,
};
use crate::store::console::ConsoleRole;
use crate::store::review::{ReviewDetail, ReviewStatus};
use crate::view::orders::order_href;
use crate::view::review::{
    PageOf, QueueRow, QueueSort, SortDirection, age_text, queue_rows, sort_queue,
};

/// Rows on a page of the queue unless `?per=` says otherwise.
pub const ROWS_PER_PAGE: usize = 50;
/// The most rows `?per=` may ask for.
const MAX_ROWS_PER_PAGE: usize = 500;

#[derive(Debug, Default, Deserialize)]
pub struct ReviewQuery {
    kind: Option<String>,
    status: Option<String>,
    sort: Option<String>,
    dir: Option<String>,
    page: Option<String>,
    #[serde(alias = "per_page")]
    per: Option<String>,
    done: Option<i64>,
    csv: Option<String>,
}

/// The queue's filters, order and page, as read from the query string.
struct QueueView {
    kind: Option<ReviewKind>,
    status: ReviewStatus,
    sort: QueueSort,
    direction: SortDirection,
    page: usize,
    per: usize,
}

impl QueueView {
    fn read(query: &ReviewQuery) -> Result<Self, PageError> {
        let kind = given(&query.kind)
            .map(|k| {
                ReviewKind::parse(k).map_err(|_| PageError::bad_request("Unknown review kind."))
            })
            .transpose()?;
        let status = match given(&query.status) {
            None | Some("open") => ReviewStatus::Open,
            Some("resolved") => ReviewStatus::Resolved,
            Some("all") => ReviewStatus::All,
            Some(_) => return Err(PageError::bad_request("`status` is open, resolved or all.")),
        };
        let sort = match given(&query.sort) {
            None => QueueSort::default(),
            Some(text) => QueueSort::parse(text)
                .ok_or_else(|| PageError::bad_request("`sort` is age, amount or kind."))?,
        };
        let direction = match given(&query.dir) {
            None => sort.default_direction(),
            Some(text) => SortDirection::parse(text)
                .ok_or_else(|| PageError::bad_request("`dir` is asc or desc."))?,
        };
        let number = |name: &str, value: &Option<String>, default: usize, max: usize| {
            given(value).map_or(Ok(default), |text| {
                text.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| {
                        PageError::bad_request(format!("`{name}` is a number from 1 to {max}."))
                    })
            })
        };
        Ok(Self {
            kind,
            status,
            sort,
            direction,
            page: number("page", &query.page, 1, usize::MAX)?,
            per: number("per", &query.per, ROWS_PER_PAGE, MAX_ROWS_PER_PAGE)?,
        })
    }

    fn status_name(&self) -> &'static str {
        match self.status {
            ReviewStatus::Open => "open",
            ReviewStatus::Resolved => "resolved",
            ReviewStatus::All => "all",
        }
    }

    /// The query string of this view with `sort`, `dir` and `page` set.
    fn href(&self, sort: QueueSort, direction: SortDirection, page: usize) -> String {
        let mut pairs = Vec::new();
        if let Some(kind) = self.kind {
            pairs.push(format!("kind={kind}"));
        }
        pairs.push(format!("status={}", self.status_name()));
        pairs.push(format!("sort={}", sort.as_str()));
        pairs.push(format!("dir={}", direction.as_str()));
        if self.per != ROWS_PER_PAGE {
            pairs.push(format!("per={}", self.per));
        }
        pairs.push(format!("page={page}"));
        format!("/review?{}", pairs.join("&"))
    }

    /// A column header that sorts by `sort`: the other direction when the
    /// queue is already sorted by it.
    fn sort_header(&self, sort: QueueSort, name: &str) -> Markup {
        let current = self.sort == sort;
        let direction = if current {
            self.direction.reversed()
        } else {
            sort.default_direction()
        };
        let sorted = match (current, self.direction) {
            (false, _) => None,
            (true, SortDirection::Ascending) => Some("ascending"),
            (true, SortDirection::Descending) => Some("descending"),
        };
        html! {
            th scope="col" aria-sort=[sorted] {
                a href=(self.href(sort, direction, 1)) { (name) }
                @if let Some(sorted) = sorted { " " span.sorted { (if sorted == "ascending" { "▲" } else { "▼" }) } }
            }
        }
    }
}

/// `GET /review?kind=&status=open|resolved|all&sort=age|amount|kind&dir=asc|desc&page=&per=`.
pub async fn page(
    State(console): State<Ctx>,
    session: Session,
    Query(query): Query<ReviewQuery>,
) -> Result<Response, PageError> {
    let view = QueueView::read(&query)?;
    let items = console
        .store
        .review_items_by_status(view.status, view.kind)
        .await?;
    let item_count = items.len();
    let mut rows = queue_rows(items);
    sort_queue(&mut rows, view.sort, view.direction);
    // The download holds every row of the filtered queue, in the page's
    // order, with the columns of `review list --format csv`.
    let groups: Vec<_> = rows.iter().map(|r| r.group.clone()).collect();
    let table = crate::view::review::table(
        &groups,
        format!("{} row(s), {item_count} item(s)", groups.len()),
    );
    if let Some(download) = csv_download(&[&table], given(&query.csv)) {
        return Ok(download);
    }
    let paging = PageOf::new(view.page, view.per, rows.len());
    let shown = &rows[paging.range()];
    let now = console.clock.now();
    let csv_href = {
        let mut href = view.href(view.sort, view.direction, paging.number);
        href.push_str("&csv=review_items");
        href
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
                        option value=(k) selected[view.kind == Some(k)] { (k) }
                    }
                }
            }
            p {
                label for="status" { "Status" }
                select #status name="status" {
                    @for s in ["open", "resolved", "all"] {
                        option value=(s) selected[s == view.status_name()] { (s) }
                    }
                }
            }
            input type="hidden" name="sort" value=(view.sort.as_str());
            input type="hidden" name="dir" value=(view.direction.as_str());
            p { button type="submit" { "Filter" } }
        }
        @if session.role != ConsoleRole::Resolver {
            p.note { "Your role is viewer: you see the queue; a resolver resolves items." }
        }
        section.table aria-label="Review queue" {
            table.queue {
                caption {
                    (paging.total) " row(s) (" (item_count) " item(s); a row is one item, or the open items of one kind for one order)"
                    @if paging.total > 0 {
                        ", rows " (paging.range().start + 1) " to " (paging.range().end)
                    }
                    " "
                    a.csv href=(csv_href) download="review_items.csv" { "Download CSV" }
                }
                thead {
                    tr {
                        th scope="col" { "item" }
                        (view.sort_header(QueueSort::Kind, "kind"))
                        th scope="col" { "order" }
                        th scope="col" { "REFNO" }
                        (view.sort_header(QueueSort::Amount, "amount"))
                        th scope="col" { "currency" }
                        (view.sort_header(QueueSort::Age, "age"))
                        th scope="col" { "opened" }
                        th scope="col" { "items" }
                        th scope="col" { "status" }
                    }
                }
                tbody {
                    @if shown.is_empty() {
                        tr { td colspan="10" { "No review item matches." } }
                    }
                    @for row in shown { (queue_row(row, now)) }
                }
            }
        }
        @if paging.pages > 1 {
            nav.pages aria-label="Pages of the queue" {
                @if paging.number > 1 {
                    a rel="prev" href=(view.href(view.sort, view.direction, paging.number - 1)) { "Previous" }
                }
                span { " Page " (paging.number) " of " (paging.pages) " " }
                @if paging.number < paging.pages {
                    a rel="next" href=(view.href(view.sort, view.direction, paging.number + 1)) { "Next" }
                }
            }
        }
    };
    Ok(layout("Review queue", Some(&session), body).into_response())
}

/// One row of the queue: its newest item links to its page.
fn queue_row(row: &QueueRow, now: chrono::DateTime<chrono::Utc>) -> Markup {
    let item = &row.group.item;
    let age = (now - row.first_opened).num_seconds();
    html! {
        tr {
            td { a href=(format!("/review/{}", item.id)) { "#" (item.id) } }
            td { (item.kind) }
            td.ref title=[item.order_ref.as_deref()] {
                @if let Some(order_ref) = &item.order_ref { a href=(order_href(order_ref)) { (order_ref) } }
            }
            td.ref title=[item.processor_ref.as_deref()] { (item.processor_ref.as_deref().unwrap_or("")) }
            td.num { (item.amount.as_deref().unwrap_or("")) }
            td { (item.currency.as_deref().unwrap_or("")) }
            td.num title=(format!("{age} seconds")) { (age_text(age)) }
            td { (shown_time(&row.first_opened)) }
            td.num { (row.group.count) }
            td { (item.status) }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct DetailQuery {
    csv: Option<String>,
}

/// `GET /review/{id}`: the item, its group, its order's money and the
/// notifications involved; for a resolver, the form that resolves it.
pub async fn show(
    State(console): State<Ctx>,
    session: Session,
    Path(id): Path<i64>,
    Query(query): Query<DetailQuery>,
) -> Result<Response, PageError> {
    let Some(detail) = console.store.review_detail(id).await? else {
        return Err(PageError::not_found(format!(
            "There is no review item #{id}."
        )));
    };
    let waiting = match detail.item.status.as_str() {
        "open" => console.store.pending_link_request(id).await?,
        _ => None,
    };
    let ReviewDetail {
        item,
        allowed_actions: actions,
        group,
        resolution,
        order,
        movements,
        notifications,
    } = &detail;
    let resolver = session.role == ConsoleRole::Resolver;
    let others: Vec<i64> = group.iter().copied().filter(|g| *g != item.id).collect();
    let mut money = Table::new(
        "movements",
        "Money moved on the order (oldest first)",
        &["at", "processor_ref", "kind", "amount", "currency", "by"],
    );
    for m in movements {
        money.push(vec![
            Cell::Text(csv_time(&m.at)),
            Cell::Text(m.processor_ref.clone()),
            Cell::Text(m.kind.to_string()),
            Cell::Number(m.amount.clone()),
            Cell::Text(m.currency.clone()),
            Cell::Text(match (m.notification_id, m.resolution_id) {
                (Some(n), _) => format!("notification {n}"),
                (None, Some(r)) => format!("resolution {r}"),
                (None, None) => String::new(),
            }),
        ]);
    }
    let mut notes = Table::new(
        "notifications",
        "Notifications involved (oldest first)",
        &[
            "id",
            "received_at",
            "processor_ref",
            "order_status",
            "amount",
            "currency",
            "outcome",
            "reason",
        ],
    );
    for n in notifications {
        notes.push(vec![
            Cell::Number(n.id.to_string()),
            Cell::Text(csv_time(&n.received_at)),
            Cell::Text(n.processor_ref.clone().unwrap_or_default()),
            Cell::Text(n.order_status.clone().unwrap_or_default()),
            Cell::Number(n.amount.clone().unwrap_or_default()),
            Cell::Text(n.currency.clone().unwrap_or_default()),
            Cell::Text(n.outcome.to_string()),
            Cell::Text(n.reason.clone().unwrap_or_default()),
        ]);
    }
    if let Some(download) = csv_download(&[&money, &notes], given(&query.csv)) {
        return Ok(download);
    }
    let path = format!("/review/{id}");
    let age = (console.clock.now() - item.created_at).num_seconds();
    let title = format!("Review item #{id}");
    let body = html! {
        p { a href="/review" { "← Review queue" } }
        h1 { (title) }
        dl.summary {
            dt { "Kind" } dd { (item.kind) }
            dt { "Status" } dd { (item.status) }
            dt { "Order" } dd {
                @match (&item.order_ref, order) {
                    (Some(r), Some(_)) => { a href=(order_href(r)) { (r) } },
                    (Some(r), None) => { (r) " (no such order)" },
                    (None, _) => { "-" },
                }
            }
            dt { "REFNO" } dd { (item.processor_ref.as_deref().unwrap_or("-")) }
            dt { "Amount" } dd {
                @match (&item.amount, &item.currency) {
                    (Some(a), Some(c)) => { (a) " " (c) },
                    _ => { "-" },
                }
            }
            dt { "Opened" } dd { (shown_time(&item.created_at)) " (" (age_text(age)) " ago)" }
            dt { "Details" } dd { (item.details) }
            @if let Some(order) = order {
                dt { "Order state" } dd { (order.status) ": " (order.amount) " " (order.currency) " expected, " (order.paid) " paid, " (order.refunded) " refunded, " (order.charged_back) " charged back" }
            }
            @if let Some(r) = resolution {
                dt { "Resolved" } dd {
                    (shown_time(&r.at)) " by " (r.resolved_by) " (" (r.action) "): " (r.note)
                }
                @if let Some(w) = &item.written_off {
                    dt { "Written off" } dd { (w) " " (item.written_off_currency.as_deref().unwrap_or("")) }
                }
            }
            dt { "Group" } dd {
                @if others.is_empty() {
                    "This item alone."
                } @else {
                    (group.len()) " open " (item.kind) " items of this order: "
                    @for (i, g) in group.iter().enumerate() {
                        @if i > 0 { ", " }
                        @if *g == item.id { "#" (g) " (this one)" } @else { a href=(format!("/review/{g}")) { "#" (g) } }
                    }
                }
            }
        }
        @if let Some(w) = &waiting {
            h2 { "Waiting for a second resolver" }
            p.note role="status" {
                "link_order to " a href=(order_href(&w.order_ref)) { (w.order_ref) }
                " (" (w.amount) ") asked by " (w.requested_by) " (" (w.source) ") at "
                (shown_time(&w.requested_at)) ": " (w.note)
                ". No money moves until another resolver confirms it."
            }
            @if resolver && !same_person(&w.requested_by, &session.user) {
                form.resolve method="post" action=(format!("/review/{id}/confirm")) {
                    input type="hidden" name=(csrf::FIELD) value=(session.csrf);
                    p { button type="submit" { "Confirm link_order to " (w.order_ref) " (" (w.amount) ")" } }
                }
            } @else if resolver {
                p.note { "You asked for it: another resolver confirms it." }
            }
        }
        @if item.status == "open" {
            h2 { "Actions" }
            ul.actions {
                @for action in actions { li { strong { (action) } ": " (action.describe()) } }
            }
            @if resolver {
                (resolve_form(item.id, item.kind, &others, &session))
            } @else {
                p.note { "Your role is viewer: a resolver resolves this item." }
            }
        }
        (super::render_table(&money, &path, ""))
        (super::render_table(&notes, &path, ""))
    };
    Ok(layout(&title, Some(&session), body).into_response())
}

/// The form that resolves item `id` (and, when `others` is not empty, its
/// whole group), with the session's CSRF token.
fn resolve_form(id: i64, kind: ReviewKind, others: &[i64], session: &Session) -> Markup {
    let actions = allowed_actions(kind);
    html! {
        form.resolve method="post" action=(format!("/review/{id}/resolve")) {
            input type="hidden" name=(csrf::FIELD) value=(session.csrf);
            p {
                label for=(format!("action-{id}")) { "Action" }
                select id=(format!("action-{id}")) name="action" {
                    @for action in actions {
                        option value=(action.as_str()) { (action) }
                    }
                }
            }
            @if actions.contains(&ReviewAction::LinkOrder) {
                p {
                    label for=(format!("order-{id}")) { "Order to link (link_order; empty: the order its notifications name)" }
                    input id=(format!("order-{id}")) type="text" name="order_ref";
                }
            }
            @if !others.is_empty() {
                p.check {
                    input id=(format!("group-{id}")) type="checkbox" name="group" value="yes";
                    label for=(format!("group-{id}")) {
                        "Resolve the whole group: also "
                        @for (i, g) in others.iter().enumerate() { @if i > 0 { ", " } "#" (g) }
                    }
                }
            }
            p {
                label for=(format!("note-{id}")) { "Note (why; no card numbers)" }
                textarea id=(format!("note-{id}")) name="note" rows="2" required {}
            }
            p { button type="submit" { "Resolve #" (id) } }
        }
    }
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
    request.origin = Origin::Console;
    request.four_eyes = console.settings.four_eyes.clone();
    // The action log's row is written by the resolution, in its
    // transaction.
    let outcome = resolve_item(&console.store, &request)
        .await
        .map_err(refused)?;
    if let Some(pending) = outcome.pending_request {
        tracing::info!(user = %session.user, item = id, request = pending, "console: link_order asked for, waiting for a second resolver");
        return Ok((
            StatusCode::SEE_OTHER,
            [(LOCATION, format!("/review/{id}?requested={pending}"))],
        )
            .into_response());
    }
    tracing::info!(user = %session.user, item = id, action = %action, "console: review item resolved");
    Ok((
        StatusCode::SEE_OTHER,
        [(LOCATION, format!("/review?done={id}"))],
    )
        .into_response())
}

/// A refused or failed resolution as the page shows it.
fn refused(err: ResolveError) -> PageError {
    match err {
        ResolveError::Store(err) => PageError::from(err),
        ResolveError::NotFound(_) => PageError::not_found(err.to_string()),
        ResolveError::AlreadyResolved { .. } | ResolveError::AwaitingConfirmation { .. } => {
            PageError {
                status: StatusCode::CONFLICT,
                message: err.to_string(),
            }
        }
        ResolveError::OwnRequest(_) => PageError {
            status: StatusCode::FORBIDDEN,
            message: err.to_string(),
        },
        other => PageError::bad_request(other.to_string()),
    }
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    csrf: Option<String>,
}

/// `POST /review/{id}/confirm`: a second resolver confirms the
/// `link_order` that waits on the item (resolver only, with the session's
/// CSRF token, never the one who asked); the money moves now.
pub async fn confirm(
    State(console): State<Ctx>,
    session: Session,
    Path(id): Path<i64>,
    Form(form): Form<ConfirmForm>,
) -> Result<Response, PageError> {
    session.check_csrf(form.csrf.as_deref())?;
    session.require_resolver()?;
    let request = ConfirmRequest {
        item_id: id,
        confirmed_by: session.user.clone(),
        origin: Origin::Console,
        policy: Default::default(),
    };
    confirm_link_order(&console.store, &request)
        .await
        .map_err(refused)?;
    tracing::info!(user = %session.user, item = id, "console: link_order confirmed");
    Ok((
        StatusCode::SEE_OTHER,
        [(LOCATION, format!("/review?done={id}"))],
    )
        .into_response())
}
