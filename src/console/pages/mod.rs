//! The console's pages: a layout every page shares, tables that render as
//! HTML and download as CSV (`?csv=NAME` on the page's own URL, with the
//! same filters), and the errors pages answer with.
//!
//! Keyboard first: a "skip to content" link, every input with a `<label>`,
//! plain links and buttons (no script), focus outlines kept.

pub mod activity;
pub mod notifications;
pub mod orders;
pub mod overview;
pub mod parked;
pub mod review;
pub mod settlement;

use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{DOCTYPE, Markup, html};

use super::csrf;
use super::login::Session;
use crate::cli::dates::PeriodBound;
use crate::store::StoreError;

/// The stylesheet (the only static file).
const STYLESHEET: &str = include_str!("../static/console.css");

/// `GET /static/console.css`.
pub async fn stylesheet() -> Response {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// The pages of the navigation, in order.
const NAV: [(&str, &str); 7] = [
    ("/", "Overview"),
    ("/orders", "Orders"),
    ("/review", "Review queue"),
    ("/notifications", "Notifications"),
    ("/parked", "Parked"),
    ("/settlement", "Settlement"),
    ("/activity", "Activity"),
];

/// A whole page: the navigation (when logged in), the user and the logout
/// button, and `body`.
pub fn layout(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · ipn-reconciler console" }
                link rel="stylesheet" href="/static/console.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    p.brand { "ipn-reconciler console" }
                    @if let Some(session) = session {
                        nav aria-label="Pages" {
                            ul {
                                @for (href, name) in NAV {
                                    li { a href=(href) aria-current=[(name == title).then_some("page")] { (name) } }
                                }
                            }
                        }
                        form.logout method="post" action="/logout" {
                            span.user { (session.user) " (" (session.role) ")" }
                            input type="hidden" name=(csrf::FIELD) value=(session.csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main #main tabindex="-1" { (body) }
            }
        }
    }
}

/// A refusal or failure, rendered as a page with its status.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
}

impl PageError {
    pub fn forbidden(message: &str) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: message.to_owned(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
}

/// A database failure: the page says the books cannot be read now (503);
/// the cause goes to the log, which holds no personal data either.
impl From<StoreError> for PageError {
    fn from(err: StoreError) -> Self {
        tracing::warn!(error = %err, "console: database request failed");
        let status = if err.is_transient() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        Self {
            status,
            message: "The books cannot be read right now (the database did not answer). \
                      Try again in a moment."
                .to_owned(),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = match self.status {
            StatusCode::FORBIDDEN => "Forbidden",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::BAD_REQUEST => "Cannot do that",
            _ => "Something went wrong",
        };
        let body = html! {
            h1 { (title) }
            p.error role="alert" { (self.message) }
            p { a href="/" { "Back to the overview" } }
        };
        (self.status, layout(title, None, body)).into_response()
    }
}

/// Any unknown path.
pub async fn not_found() -> PageError {
    PageError::not_found("There is no such page.")
}

pub use crate::view::{Cell, Table};

/// Columns of references (batch ids, REFNOs, order references), which can
/// be long: their cells wrap inside a bounded width (`td.ref` in the
/// stylesheet) and carry the whole value in their `title`.
const REFERENCE_COLUMNS: [&str; 4] = ["batch_id", "processor_ref", "order_ref", "merchant_ref"];

/// The table with a link to download it; `query` is the page's query
/// string (its filters), so the CSV holds what the page shows.
pub fn render_table(table: &Table, path: &str, query: &str) -> Markup {
    let separator = if query.is_empty() { "" } else { "&" };
    let href = format!("{path}?{query}{separator}csv={}", table.name);
    html! {
        section.table aria-label=(table.caption) {
            table {
                caption {
                    (table.caption)
                    " "
                    a.csv href=(href) download=(format!("{}.csv", table.name)) { "Download CSV" }
                }
                thead { tr { @for column in &table.columns { th scope="col" { (column.replace('_', " ")) } } } }
                tbody {
                    @if table.rows.is_empty() {
                        tr { td colspan=(table.columns.len()) { "(none)" } }
                    }
                    @for row in &table.rows {
                        tr {
                            @for (column, cell) in table.columns.iter().zip(row) {
                                @let reference = REFERENCE_COLUMNS.contains(column);
                                @match cell {
                                    Cell::Number(text) => td.num { (text) },
                                    Cell::Text(text) if reference => td.ref title=(text) { (text) },
                                    Cell::Text(text) => td { (text) },
                                    Cell::Link { href, text } if reference => td.ref title=(text) { a href=(href) { (text) } },
                                    Cell::Link { href, text } => td { a href=(href) { (text) } },
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// When the query asks for `?csv=NAME`, the response with that table.
pub fn csv_download(tables: &[&Table], wanted: Option<&str>) -> Option<Response> {
    let wanted = wanted?;
    let Some(table) = tables.iter().find(|t| t.name == wanted) else {
        return Some(
            PageError::not_found(format!("This page has no table `{wanted}`.")).into_response(),
        );
    };
    Some(match table.csv() {
        Ok(bytes) => (
            [
                (CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{}.csv\"", table.name),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(err) => PageError::internal(err.to_string()).into_response(),
    })
}

/// A query parameter: `None` when absent or blank.
pub fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// A period's bound as a person types it, read as the command line reads
/// `--from`/`--to` ([`PeriodBound`]): a month (`2026-11`) or a date
/// (`2026-11-01`), whose days begin at midnight in `zone`
/// (`report-timezone`), its first instant, or with `end` the first instant
/// after it, so a `to` month or date is included whole; or an RFC 3339
/// time.
pub fn parse_bound(
    name: &str,
    text: Option<&str>,
    end: bool,
    zone: Tz,
) -> Result<Option<DateTime<Utc>>, PageError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let bound = PeriodBound::parse(text).map_err(|_| {
        PageError::bad_request(format!(
            "`{name}` must be a month (2026-11), a date (2026-11-01) or an RFC 3339 time \
             (2026-11-01T08:00:00Z)."
        ))
    })?;
    Ok(Some(if end {
        bound.end(zone)
    } else {
        bound.start(zone)
    }))
}

/// A time as the pages show it: `2026-11-02 09:20 UTC`.
pub fn shown_time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A time as the CSV downloads hold it: RFC 3339, UTC, seconds.
pub fn csv_time(at: &DateTime<Utc>) -> String {
    crate::export::rfc3339::format(at)
}

/// The query string of a request, for the CSV links (without `csv=`).
pub fn query_without_csv(query: Option<&str>) -> String {
    query_without(query, &["csv"])
}

/// The query string of a request without the parameters `names`.
pub fn query_without(query: Option<&str>, names: &[&str]) -> String {
    query
        .unwrap_or("")
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(name, _)| name);
            !pair.is_empty() && !names.contains(&name)
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Rows on a page of a listing unless `?per=` says otherwise.
pub const ROWS_PER_PAGE: usize = 50;
/// The most rows `?per=` may ask for.
pub const MAX_ROWS_PER_PAGE: usize = 500;

/// Which page of a listing to show (`?page=`, from 1, and `?per=` or
/// `?per_page=`). Listings read one row more than the page holds, so a
/// page knows whether another follows without counting the whole table;
/// their CSV downloads are never paged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub page: usize,
    pub per: usize,
}

impl Paging {
    /// From the query's values; a number out of range is refused (400).
    pub fn read(page: Option<&str>, per: Option<&str>) -> Result<Self, PageError> {
        let number = |name: &str, value: Option<&str>, default: usize, max: usize| {
            value
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map_or(Ok(default), |text| {
                    text.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=max).contains(n))
                        .ok_or_else(|| {
                            PageError::bad_request(format!("`{name}` is a number from 1 to {max}."))
                        })
                })
        };
        Ok(Self {
            page: number("page", page, 1, 1_000_000)?,
            per: number("per", per, ROWS_PER_PAGE, MAX_ROWS_PER_PAGE)?,
        })
    }

    /// The rows before this page.
    pub fn offset(&self) -> i64 {
        i64::try_from((self.page - 1).saturating_mul(self.per)).unwrap_or(i64::MAX)
    }

    /// The rows to read: the page and one more.
    pub fn fetch(&self) -> i64 {
        i64::try_from(self.per + 1).unwrap_or(i64::MAX)
    }

    /// Cuts rows read with [`Paging::fetch`] at [`Paging::offset`] to the
    /// page; whether more follow.
    pub fn cut<T>(&self, rows: &mut Vec<T>) -> bool {
        let more = rows.len() > self.per;
        rows.truncate(self.per);
        more
    }

    /// This page of a listing held whole; whether more follow.
    pub fn slice<'a, T>(&self, rows: &'a [T]) -> (&'a [T], bool) {
        let start = (self.page - 1).saturating_mul(self.per).min(rows.len());
        let end = start.saturating_add(self.per).min(rows.len());
        (&rows[start..end], end < rows.len())
    }

    /// `rows 51 to 100` for `shown` rows on this page.
    pub fn rows_text(&self, shown: usize) -> String {
        let first = (self.page - 1).saturating_mul(self.per);
        if shown == 0 {
            format!("page {}: no rows", self.page)
        } else {
            format!("rows {} to {}", first + 1, first + shown)
        }
    }

    /// A listing's caption: `3 order(s), oldest first` when its first
    /// page holds it whole, else `order(s), oldest first: rows 51 to 100`.
    pub fn caption(&self, what: &str, order: &str, shown: usize, more: bool) -> String {
        if self.page == 1 && !more {
            format!("{shown} {what}, {order}")
        } else {
            format!("{what}, {order}: {}", self.rows_text(shown))
        }
    }

    /// Previous and Next links (as `param=N` on `path?query`, `query`
    /// without `param`), when there is a page before or after.
    pub fn links(&self, path: &str, query: &str, param: &str, more: bool) -> Markup {
        let separator = if query.is_empty() { "" } else { "&" };
        let href = |page: usize| format!("{path}?{query}{separator}{param}={page}");
        html! {
            @if self.page > 1 || more {
                nav.pages aria-label="Pages" {
                    @if self.page > 1 {
                        a rel="prev" href=(href(self.page - 1)) { "Previous" }
                    }
                    span { " Page " (self.page) " " }
                    @if more {
                        a rel="next" href=(href(self.page + 1)) { "Next" }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_downloads_what_it_shows() {
        let mut table = Table::new("orders", "Orders", &["order_ref", "amount"]);
        table.push(vec![
            Cell::Link {
                href: "/orders/A%2C1".into(),
                text: "A,1".into(),
            },
            Cell::Number("10.00".into()),
        ]);
        let csv = String::from_utf8(table.csv().expect("csv")).expect("utf-8");
        assert_eq!(csv, "order_ref,amount\n\"A,1\",10.00\n");
        let html = render_table(&table, "/orders", "status=paid").into_string();
        assert!(
            html.contains("href=\"/orders?status=paid&amp;csv=orders\""),
            "{html}"
        );
        assert!(html.contains("<td class=\"num\">10.00</td>"), "{html}");
    }

    #[test]
    fn bounds_are_months_dates_or_times() {
        let utc = Tz::UTC;
        let from = parse_bound("from", Some("2026-11-01"), false, utc).expect("date");
        assert_eq!(
            from.map(|t| csv_time(&t)).as_deref(),
            Some("2026-11-01T00:00:00Z")
        );
        let to = parse_bound("to", Some("2026-11-30"), true, utc).expect("date");
        assert_eq!(
            to.map(|t| csv_time(&t)).as_deref(),
            Some("2026-12-01T00:00:00Z")
        );
        let month = parse_bound("to", Some("2026-12"), true, utc).expect("month");
        assert_eq!(
            month.map(|t| csv_time(&t)).as_deref(),
            Some("2027-01-01T00:00:00Z")
        );
        // November in Bucharest (UTC+2) begins at 22:00 UTC the day before.
        let bucharest = chrono_tz::Europe::Bucharest;
        let from = parse_bound("from", Some("2026-11"), false, bucharest).expect("month");
        assert_eq!(
            from.map(|t| csv_time(&t)).as_deref(),
            Some("2026-10-31T22:00:00Z")
        );
        assert!(parse_bound("from", Some("yesterday"), false, utc).is_err());
        assert!(parse_bound("from", Some("2026-13"), false, utc).is_err());
        assert_eq!(parse_bound("from", None, false, utc).expect("none"), None);
        assert_eq!(query_without_csv(Some("a=1&csv=x&b=2")), "a=1&b=2");
        assert_eq!(
            query_without(Some("page=2&csvx=1&per=3&q=a"), &["page", "per"]),
            "csvx=1&q=a"
        );
    }

    #[test]
    fn a_page_reads_one_row_more_and_links_its_neighbours() {
        let paging = Paging::read(Some("2"), Some("3")).expect("paging");
        assert_eq!((paging.offset(), paging.fetch()), (3, 4));
        let mut rows = vec![4, 5, 6, 7];
        assert!(paging.cut(&mut rows));
        assert_eq!(rows, [4, 5, 6]);
        assert_eq!(paging.rows_text(3), "rows 4 to 6");
        assert_eq!(
            paging.caption("order(s)", "oldest first", 3, true),
            "order(s), oldest first: rows 4 to 6"
        );
        assert_eq!(
            Paging::read(None, None)
                .expect("first")
                .caption("order(s)", "oldest first", 3, false),
            "3 order(s), oldest first"
        );
        let whole: Vec<i32> = (1..=7).collect();
        assert_eq!(paging.slice(&whole), (&whole[3..6], true));
        let last = Paging::read(Some("3"), Some("3")).expect("paging");
        assert_eq!(last.slice(&whole), (&whole[6..7], false));
        let past = Paging::read(Some("9"), Some("3")).expect("paging");
        assert_eq!(past.slice(&whole), (&whole[7..7], false));
        let links = paging
            .links("/orders", "status=paid", "page", true)
            .into_string();
        assert!(
            links.contains("href=\"/orders?status=paid&amp;page=1\""),
            "{links}"
        );
        assert!(
            links.contains("href=\"/orders?status=paid&amp;page=3\""),
            "{links}"
        );
        let first = Paging::read(None, None).expect("defaults");
        assert_eq!(
            first,
            Paging {
                page: 1,
                per: ROWS_PER_PAGE
            }
        );
        assert!(
            first
                .links("/x", "", "page", false)
                .into_string()
                .is_empty()
        );
        assert!(Paging::read(Some("0"), None).is_err());
        assert!(Paging::read(None, Some("501")).is_err());
        assert!(Paging::read(Some("x"), None).is_err());
    }
}
