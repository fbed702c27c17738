//! What finance staff read: the summary of all orders, and the review queue
//! of exceptions a person must look at.
//!
//! Everything here serializes for spreadsheets and scripts as well as for
//! people: objects with named fields (never `[name, count]` pairs, which a
//! JSON consumer must know the meaning of by position), and every time in
//! one form, RFC 3339 in UTC to the second (`2026-11-02T09:20:44Z`), which
//! spreadsheets and `jq` read alike (see [`rfc3339`]).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};

use super::schema::{notifications, orders, review_items};
use super::{Store, StoreError};
use crate::domain::pan::check_free_text;
use crate::domain::{Currency, Money, OrderState, Outcome, ReviewKind};

/// Totals of one currency (amounts as exact decimal strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CurrencyTotals {
    pub currency: String,
    pub orders: i64,
    pub expected: String,
    pub paid: String,
    pub refunded: String,
    /// Paid minus refunded.
    pub net: String,
}

/// The state of the books.
///
/// The counts are `(name, count)` pairs in Rust, and objects in JSON:
/// `{"state": "paid", "orders": 3}`, `{"kind": "suspect", "open": 2}`,
/// `{"outcome": "applied", "notifications": 16}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FinanceSummary {
    /// `(state, number of orders)`, every state that has orders.
    #[serde(serialize_with = "counts::<_, StateCount, _>")]
    pub orders_by_state: Vec<(OrderState, i64)>,
    pub totals: Vec<CurrencyTotals>,
    /// `(kind, open items)`.
    #[serde(serialize_with = "counts::<_, KindCount, _>")]
    pub open_exceptions: Vec<(ReviewKind, i64)>,
    /// `(outcome, notifications)` of every recorded notification.
    #[serde(serialize_with = "counts::<_, OutcomeCount, _>")]
    pub notifications_by_outcome: Vec<(Outcome, i64)>,
}

/// `{"state": ..., "orders": N}`.
#[derive(Serialize)]
struct StateCount {
    state: &'static str,
    orders: i64,
}

/// `{"kind": ..., "open": N}`.
#[derive(Serialize)]
struct KindCount {
    kind: &'static str,
    open: i64,
}

/// `{"outcome": ..., "notifications": N}`.
#[derive(Serialize)]
struct OutcomeCount {
    outcome: &'static str,
    notifications: i64,
}

impl From<(OrderState, i64)> for StateCount {
    fn from((state, orders): (OrderState, i64)) -> Self {
        Self {
            state: state.as_str(),
            orders,
        }
    }
}

impl From<(ReviewKind, i64)> for KindCount {
    fn from((kind, open): (ReviewKind, i64)) -> Self {
        Self {
            kind: kind.as_str(),
            open,
        }
    }
}

impl From<(Outcome, i64)> for OutcomeCount {
    fn from((outcome, notifications): (Outcome, i64)) -> Self {
        Self {
            outcome: outcome.as_str(),
            notifications,
        }
    }
}

/// Serializes `(name, count)` pairs as a list of named objects `O`.
fn counts<T: Copy, O: From<(T, i64)> + Serialize, S: Serializer>(
    pairs: &[(T, i64)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut seq = serializer.serialize_seq(Some(pairs.len()))?;
    for &pair in pairs {
        seq.serialize_element(&O::from(pair))?;
    }
    seq.end()
}

/// Which review items to list, by status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReviewStatus {
    /// Waiting for a person (the default of `review list`).
    #[default]
    Open,
    /// Resolved by a person or by the system.
    Resolved,
    /// Both.
    All,
}

/// One exception in the review queue.
///
/// Times serialize as RFC 3339 UTC to the second ([`rfc3339`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Queryable)]
pub struct ReviewItem {
    pub id: i64,
    pub kind: ReviewKind,
    pub order_ref: Option<String>,
    /// The processor's reference (REFNO) of the payment it concerns, when
    /// it concerns one.
    pub processor_ref: Option<String>,
    pub details: String,
    /// `open` or `resolved`.
    pub status: String,
    pub resolution_note: Option<String>,
    pub resolved_by: Option<String>,
    #[serde(serialize_with = "rfc3339::option")]
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
}

pub use crate::export::rfc3339;

impl FinanceSummary {
    /// The finance summary as a person reads it.
    pub fn render(&self, out: &mut (impl std::io::Write + ?Sized)) -> std::io::Result<()> {
        let summary = self;
        writeln!(out, "Orders by state")?;
        let total: i64 = summary.orders_by_state.iter().map(|(_, n)| n).sum();
        for (state, count) in &summary.orders_by_state {
            writeln!(out, "  {state:<20} {count:>7}")?;
        }
        writeln!(out, "  {:<20} {total:>7}", "total")?;
        writeln!(out, "\nTotals per currency")?;
        writeln!(
            out,
            "  {:<4} {:>7} {:>16} {:>16} {:>16} {:>16}",
            "CUR", "ORDERS", "EXPECTED", "PAID", "REFUNDED", "NET"
        )?;
        for t in &summary.totals {
            writeln!(
                out,
                "  {:<4} {:>7} {:>16} {:>16} {:>16} {:>16}",
                t.currency, t.orders, t.expected, t.paid, t.refunded, t.net
            )?;
        }
        writeln!(out, "\nOpen exceptions by kind")?;
        if summary.open_exceptions.is_empty() {
            writeln!(out, "  (none)")?;
        }
        for (kind, count) in &summary.open_exceptions {
            writeln!(out, "  {kind:<24} {count:>7}")?;
        }
        writeln!(out, "\nNotifications by outcome")?;
        for (outcome, count) in &summary.notifications_by_outcome {
            writeln!(out, "  {outcome:<24} {count:>7}")?;
        }
        Ok(())
    }
}

impl Store {
    /// Orders by state, money per currency, open exceptions by kind.
    pub async fn finance_summary(&self) -> Result<FinanceSummary, StoreError> {
        use diesel::dsl::count_star;
        let mut conn = self.conn().await?;
        let orders_by_state: Vec<(OrderState, i64)> = orders::table
            .group_by(orders::status)
            .select((orders::status, count_star()))
            .order(orders::status)
            .load(&mut conn)
            .await?;
        let rows: Vec<(String, i64, i64, i64, i64)> = diesel::sql_query(
            "SELECT currency, count(*)::int8 AS orders, \
                    coalesce(sum(expected_minor), 0)::int8 AS expected, \
                    coalesce(sum(paid_minor), 0)::int8 AS paid, \
                    coalesce(sum(refunded_minor), 0)::int8 AS refunded \
             FROM orders GROUP BY currency ORDER BY currency",
        )
        .load::<TotalsRow>(&mut conn)
        .await?
        .into_iter()
        .map(|r| (r.currency, r.orders, r.expected, r.paid, r.refunded))
        .collect();
        let totals = rows
            .into_iter()
            .map(|(currency, count, expected, paid, refunded)| {
                let code = Currency::parse(&currency)
                    .map_err(|err| StoreError::Invalid(err.to_string()))?;
                let money = |minor: i64| Money::from_minor(minor, code).format_amount();
                Ok(CurrencyTotals {
                    currency,
                    orders: count,
                    expected: money(expected),
                    paid: money(paid),
                    refunded: money(refunded),
                    net: money(paid.saturating_sub(refunded)),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let open_exceptions: Vec<(ReviewKind, i64)> = review_items::table
            .filter(review_items::status.eq("open"))
            .group_by(review_items::kind)
            .select((review_items::kind, count_star()))
            .order(review_items::kind)
            .load(&mut conn)
            .await?;
        let notifications_by_outcome: Vec<(Outcome, i64)> = notifications::table
            .group_by(notifications::outcome)
            .select((notifications::outcome, count_star()))
            .order(notifications::outcome)
            .load(&mut conn)
            .await?;
        Ok(FinanceSummary {
            orders_by_state,
            totals,
            open_exceptions,
            notifications_by_outcome,
        })
    }

    /// Review items, newest first; only open ones unless `all`, only of
    /// `kind` when given. A stored kind this version does not know is an
    /// error naming it (see `store::sql`), not an item of some other kind.
    pub async fn review_items(
        &self,
        all: bool,
        kind: Option<ReviewKind>,
    ) -> Result<Vec<ReviewItem>, StoreError> {
        let status = if all {
            ReviewStatus::All
        } else {
            ReviewStatus::Open
        };
        self.review_items_by_status(status, kind).await
    }

    /// Review items with `status`, newest first, only of `kind` when given.
    pub async fn review_items_by_status(
        &self,
        status: ReviewStatus,
        kind: Option<ReviewKind>,
    ) -> Result<Vec<ReviewItem>, StoreError> {
        let mut conn = self.conn().await?;
        let mut query = review_items::table
            .select((
                review_items::id,
                review_items::kind,
                review_items::order_ref,
                review_items::processor_ref,
                review_items::details,
                review_items::status,
                review_items::resolution_note,
                review_items::resolved_by,
                review_items::resolved_at,
                review_items::created_at,
            ))
            .order(review_items::id.desc())
            .into_boxed();
        match status {
            ReviewStatus::Open => query = query.filter(review_items::status.eq("open")),
            ReviewStatus::Resolved => query = query.filter(review_items::status.eq("resolved")),
            ReviewStatus::All => {}
        }
        if let Some(kind) = kind {
            query = query.filter(review_items::kind.eq(kind));
        }
        Ok(query.load(&mut conn).await?)
    }

    /// Marks an open review item resolved, with who and why. Returns false
    /// when there is no open item with that id.
    ///
    /// People type `resolved_by` and `note`, so a card number in either is
    /// refused (`StoreError::Invalid`, saying which, never quoting it) and
    /// nothing is written: the PAN guard covers what people type as well as
    /// what the processor sends.
    pub async fn resolve_review_item(
        &self,
        id: i64,
        resolved_by: &str,
        note: &str,
    ) -> Result<bool, StoreError> {
        check_free_text("the resolver's name", resolved_by)
            .and_then(|()| check_free_text("the resolution note", note))
            .map_err(|err| StoreError::Invalid(err.to_string()))?;
        let mut conn = self.conn().await?;
        let updated = diesel::update(
            review_items::table
                .filter(review_items::id.eq(id))
                .filter(review_items::status.eq("open")),
        )
        .set((
            review_items::status.eq("resolved"),
            review_items::resolved_by.eq(resolved_by),
            review_items::resolution_note.eq(note),
            review_items::resolved_at.eq(diesel::dsl::now),
        ))
        .execute(&mut conn)
        .await?;
        Ok(updated == 1)
    }
}

/// What the database recorded of one notification: references, status
/// and amount, never personal data (there is none in those columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedNotification {
    /// REFNO.
    pub processor_ref: Option<String>,
    /// REFNOEXT.
    pub order_ref: Option<String>,
    /// ORDERSTATUS as received.
    pub order_status: Option<String>,
    /// The amount in its currency (`25.00`), when one was recorded.
    pub amount: Option<String>,
    pub currency: Option<String>,
}

impl Store {
    /// The recorded facts of the notification whose body has `body_sha256`,
    /// for messages about it (the `orphan_payment` item of `process`).
    pub async fn recorded_notification(
        &self,
        body_sha256: &str,
    ) -> Result<Option<RecordedNotification>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<RecordedRow> = notifications::table
            .filter(notifications::body_sha256.eq(body_sha256))
            .select((
                notifications::processor_ref,
                notifications::order_ref,
                notifications::order_status,
                notifications::amount_minor,
                notifications::currency,
            ))
            .first(&mut conn)
            .await
            .optional()?;
        Ok(row.map(
            |(processor_ref, order_ref, order_status, minor, currency)| {
                let amount = minor.zip(currency.as_deref()).map(|(minor, code)| {
                    match Currency::parse(code) {
                        Ok(code) => Money::from_minor(minor, code).format_amount(),
                        // Not a currency code: the minor units as stored.
                        Err(_) => minor.to_string(),
                    }
                });
                RecordedNotification {
                    processor_ref,
                    order_ref,
                    order_status,
                    amount,
                    currency,
                }
            },
        ))
    }
}

type RecordedRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
);

#[derive(QueryableByName)]
struct TotalsRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    currency: String,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    orders: i64,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    expected: i64,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    paid: i64,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    refunded: i64,
}
