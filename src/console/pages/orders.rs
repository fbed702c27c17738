//! `/orders`: orders by state, currency and creation period, or found by
//! order reference, REFNO, or a customer's e-mail through its pseudonym;
//! `/orders/{ref}`: one order, its payments, its ledger as a timeline and
//! the authenticity record of each notification.
//!
//! The e-mail search is a POST: an address in a URL would stay in the
//! browser's history, the server's access logs and any proxy's. It is
//! pseudonymized as `orders find --email` does, and never shown back,
//! logged or stored.

use axum::Form;
use axum::extract::{Path, Query, RawQuery, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Cell, PageError, Paging, Table, csv_download, csv_time, given, layout, parse_bound,
    query_without, shown_time,
};
use crate::console::login::Session;
use crate::console::{Ctx, csrf};
use crate::domain::{OrderState, ReviewKind};
use crate::store::console::{NotificationFilter, OrderFilter};
use crate::store::review::ReviewStatus;
use crate::store::{OrderView, Store};

/// At most this many of one customer's orders (found by e-mail, a POST
/// that is not paged: a link to a next page would carry the address).
const CUSTOMER_LIMIT: i64 = 1000;

#[derive(Debug, Default, Deserialize)]
pub struct OrdersQuery {
    status: Option<String>,
    currency: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// An order reference or a REFNO.
    q: Option<String>,
    page: Option<String>,
    #[serde(alias = "per_page")]
    per: Option<String>,
    csv: Option<String>,
}

pub use crate::view::orders::order_href;

fn search_forms(session: &Session, query: &OrdersQuery, email_enabled: bool) -> Markup {
    html! {
        form.filters method="get" action="/orders" {
            p {
                label for="q" { "Order reference or REFNO" }
                input #q type="search" name="q" value=[given(&query.q)];
            }
            p {
                label for="status" { "State" }
                select #status name="status" {
                    option value="" { "any" }
                    @for state in OrderState::ALL {
                        option value=(state) selected[given(&query.status) == Some(state.as_str())] { (state) }
                    }
                }
            }
            p {
                label for="currency" { "Currency" }
                input #currency type="text" name="currency" size="4" maxlength="3" value=[given(&query.currency)];
            }
            p {
                label for="from" { "Created from" }
                input #from type="date" name="from" value=[given(&query.from)];
            }
            p {
                label for="to" { "Created to (included)" }
                input #to type="date" name="to" value=[given(&query.to)];
            }
            p { button type="submit" { "Find orders" } }
        }
        form.filters method="post" action="/orders/by-email" {
            input type="hidden" name=(csrf::FIELD) value=(session.csrf);
            p {
                label for="email" { "Customer e-mail" }
                input #email type="email" name="email" autocomplete="off" disabled[!email_enabled];
            }
            p { button type="submit" disabled[!email_enabled] { "Find the customer's orders" } }
            @if !email_enabled {
                p.note { "The search by e-mail needs the pseudonym key (pseudonym-key-file) the pipeline uses." }
            } @else {
                p.note { "The address is turned into its keyed pseudonym, as the pipeline stores it; it is not kept or shown." }
            }
        }
    }
}

/// `GET /orders?status=&currency=&from=&to=&q=`.
pub async fn list(
    State(console): State<Ctx>,
    session: Session,
    Query(query): Query<OrdersQuery>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    // Days and months begin at midnight in report-timezone.
    let zone = console.settings.report_timezone;
    let status = given(&query.status)
        .map(|s| OrderState::parse(s).map_err(|_| PageError::bad_request("Unknown order state.")))
        .transpose()?;
    let filter = OrderFilter {
        status,
        currency: given(&query.currency).map(str::to_ascii_uppercase),
        from: parse_bound("from", given(&query.from), false, zone)?,
        to: parse_bound("to", given(&query.to), true, zone)?,
        reference: given(&query.q).map(str::to_owned),
        customer: None,
    };
    // The download holds every matching order, the page one page of them.
    if given(&query.csv).is_some() {
        let orders = console.store.orders_matching(&filter, 0, i64::MAX).await?;
        let table =
            crate::view::orders::table(&orders, format!("{} order(s), oldest first", orders.len()));
        if let Some(download) = csv_download(&[&table], given(&query.csv)) {
            return Ok(download);
        }
    }
    let paging = Paging::read(given(&query.page), given(&query.per))?;
    let mut orders = console
        .store
        .orders_matching(&filter, paging.offset(), paging.fetch())
        .await?;
    let more = paging.cut(&mut orders);
    let table = crate::view::orders::table(
        &orders,
        paging.caption("order(s)", "oldest first", orders.len(), more),
    );
    let raw = raw.as_deref();
    let body = html! {
        h1 { "Orders" }
        (search_forms(&session, &query, console.pseudonym_key.is_some()))
        (super::render_table(&table, "/orders", &query_without(raw, &["csv", "page", "per", "per_page"])))
        (paging.links("/orders", &query_without(raw, &["csv", "page"]), "page", more))
    };
    Ok(layout("Orders", Some(&session), body).into_response())
}

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    email: String,
    #[serde(default)]
    csv: Option<String>,
}

/// `POST /orders/by-email`: one customer's orders.
pub async fn by_email(
    State(console): State<Ctx>,
    session: Session,
    Form(form): Form<EmailForm>,
) -> Result<Response, PageError> {
    session.check_csrf(form.csrf.as_deref())?;
    let email = zeroize::Zeroizing::new(form.email);
    let Some(key) = console.pseudonym_key.as_ref() else {
        return Err(PageError::bad_request(
            "The search by e-mail needs the pseudonym key: set pseudonym-key-file to the key \
             file serve and process read.",
        ));
    };
    let Some(customer) = key.pseudonymize_email(&email) else {
        return Err(PageError::bad_request("Type an e-mail address."));
    };
    let filter = OrderFilter {
        customer: Some(customer),
        ..OrderFilter::default()
    };
    let orders = console
        .store
        .orders_matching(&filter, 0, CUSTOMER_LIMIT)
        .await?;
    let table = crate::view::orders::table(
        &orders,
        format!("{} order(s) of the customer, oldest first", orders.len()),
    );
    if let Some(download) = csv_download(&[&table], form.csv.as_deref()) {
        return Ok(download);
    }
    let body = html! {
        h1 { "Orders" }
        (search_forms(&session, &OrdersQuery::default(), true))
        p.note role="status" {
            "Orders named by notifications that carried the customer's pseudonym "
            "(orders paid before the pseudonym key was set are not found)."
        }
        (super::render_table(&table, "/orders", ""))
    };
    Ok(layout("Orders", Some(&session), body).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct OrderQuery {
    csv: Option<String>,
}

/// `GET /orders/{ref}`.
pub async fn show(
    State(console): State<Ctx>,
    session: Session,
    Path(order_ref): Path<String>,
    Query(query): Query<OrderQuery>,
) -> Result<Response, PageError> {
    let Some(order) = console.store.order(&order_ref).await? else {
        return Err(PageError::not_found(format!(
            "No order {order_ref}: the shop never registered it (see the review queue for \
             notifications of unknown orders)."
        )));
    };
    let tables = order_tables(&console.store, &order).await?;
    let [payments, ledger, notes, reviews] = &tables;
    if let Some(download) = csv_download(&[payments, ledger, notes, reviews], given(&query.csv)) {
        return Ok(download);
    }
    let path = order_href(&order.order_ref);
    let title = format!("Order {}", order.order_ref);
    let body = html! {
        h1 { (title) }
        dl.summary {
            dt { "State" } dd { (order.status) }
            dt { "Amount" } dd { (order.amount) " " (order.currency) }
            dt { "Paid" } dd { (order.paid) " " (order.currency) }
            dt { "Refunded" } dd { (order.refunded) " " (order.currency) }
            dt { "Charged back" } dd { (order.charged_back) " " (order.currency) }
            dt { "Processor reference" } dd { (order.processor_ref.as_deref().unwrap_or("-")) }
            dt { "Created" } dd { (shown_time(&order.created_at)) }
            dt { "Updated" } dd { (shown_time(&order.updated_at)) " (version " (order.version) ")" }
        }
        (super::render_table(payments, &path, ""))
        h2 { "Ledger" }
        ol.timeline {
            @for e in &order.events {
                li {
                    time datetime=(csv_time(&e.at)) { (shown_time(&e.at)) }
                    " "
                    strong { (e.order_status) }
                    " " (e.effect) ": " (e.old_status) " → " (e.new_status)
                    ", " (e.amount) " " (e.currency)
                    " (" (e.reason) ")"
                }
            }
            @if order.events.is_empty() { li { "No notification has reached this order yet." } }
        }
        (super::render_table(ledger, &path, ""))
        (super::render_table(notes, &path, ""))
        (super::render_table(reviews, &path, ""))
    };
    Ok(layout(&title, Some(&session), body).into_response())
}

async fn order_tables(store: &Store, order: &OrderView) -> Result<[Table; 4], PageError> {
    let mut payments = Table::new(
        "payments",
        "Payments (one per processor reference)",
        &[
            "processor_ref",
            "state",
            "authorized",
            "paid",
            "refunded",
            "reversed",
        ],
    );
    for p in &order.payments {
        payments.push(vec![
            Cell::Text(p.processor_ref.clone()),
            Cell::Text(p.state.to_owned()),
            Cell::Text(p.authorized.to_string()),
            Cell::Number(p.paid.clone()),
            Cell::Number(p.refunded.clone()),
            Cell::Text(p.reversed.to_string()),
        ]);
    }
    let mut ledger = Table::new(
        "ledger",
        "Ledger rows",
        &[
            "at",
            "order_status",
            "effect",
            "old_status",
            "new_status",
            "amount",
            "currency",
            "reason",
            "processor_ref",
            "notification_sha256",
        ],
    );
    for e in &order.events {
        ledger.push(vec![
            Cell::Text(csv_time(&e.at)),
            Cell::Text(e.order_status.clone()),
            Cell::Text(e.effect.to_string()),
            Cell::Text(e.old_status.to_string()),
            Cell::Text(e.new_status.to_string()),
            Cell::Number(e.amount.clone()),
            Cell::Text(e.currency.clone()),
            Cell::Text(e.reason.clone()),
            Cell::Text(e.processor_ref.clone().unwrap_or_default()),
            Cell::Text(e.notification_sha256.clone().unwrap_or_default()),
        ]);
    }
    let records = store
        .notifications_with_ledger(&NotificationFilter {
            order_ref: Some(order.order_ref.clone()),
            limit: 1000,
            ..NotificationFilter::default()
        })
        .await?;
    let notes = super::notifications::notifications_table(
        &records,
        "Notifications: the authenticity record (which key and algorithm verified each)".into(),
    );
    let items = store
        .review_items_by_status(ReviewStatus::All, None::<ReviewKind>)
        .await?;
    let mut reviews = Table::new(
        "review_items",
        "Review items of this order",
        &[
            "id",
            "status",
            "kind",
            "created_at",
            "details",
            "resolved_by",
            "resolution_note",
        ],
    );
    for item in items
        .iter()
        .filter(|i| i.order_ref.as_deref() == Some(order.order_ref.as_str()))
    {
        reviews.push(vec![
            Cell::Link {
                href: format!("/review/{}", item.id),
                text: format!("#{}", item.id),
            },
            Cell::Text(item.status.clone()),
            Cell::Text(item.kind.to_string()),
            Cell::Text(csv_time(&item.created_at)),
            Cell::Text(item.details.clone()),
            Cell::Text(item.resolved_by.clone().unwrap_or_default()),
            Cell::Text(item.resolution_note.clone().unwrap_or_default()),
        ]);
    }
    Ok([payments, ledger, notes, reviews])
}
