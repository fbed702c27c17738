//! The sweep's reads and writes: what [`crate::domain::sweep::decide`]
//! needs, and the review items it says to open and close. The sweep
//! itself, in one transaction, is [`crate::services::sweep::sweep`].
//!
//! Several instances of `serve` may run; one sweep at a time is enough.
//! The transaction first tries a PostgreSQL advisory lock
//! ([`SWEEP_LOCK`], [`try_lock`]): an instance that does not get it skips
//! this round (another is sweeping), it does not wait. Opening is
//! idempotent anyway: an item is opened only for a cause that has no open
//! item and none a person resolved (one the system closed because its
//! cause went away may be raised again if the cause comes back: a later
//! refund not debited), and a partial unique index keeps one open item
//! per cause even against a writer that ignores the lock
//! ([`open_item`]).
//!
//! Nothing here reads a clock: the times that say what is due come in as
//! arguments.

use super::sql::Stored;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamp, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::StoreError;
use super::apply::SYSTEM_RESOLVER;
use crate::domain::licence::DispatchReason;
use crate::domain::settlement::Finding;
use crate::domain::subscription::SubscriptionStatus;
use crate::domain::sweep::{
    LicenceSaid, PaymentSettlement, SWEEP_KINDS, SubscribedOrder, SubscriptionFacts, WaitingOrder,
};
use crate::domain::{Currencies, OrderState, ReviewKind};

/// The advisory lock key of the sweep (`ipn-swee` in ASCII).
pub const SWEEP_LOCK: i64 = 0x69706e2d73776565;

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

#[derive(diesel::QueryableByName)]
struct OrderRow {
    #[diesel(sql_type = Text)]
    order_ref: String,
    #[diesel(sql_type = Text)]
    #[diesel(deserialize_as = Stored<OrderState>)]
    status: OrderState,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

#[derive(diesel::QueryableByName)]
struct PaymentRow {
    #[diesel(sql_type = Text)]
    order_ref: String,
    #[diesel(sql_type = Text)]
    processor_ref: String,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    paid: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    paid_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    settled: bool,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    amount_differs: bool,
    #[diesel(sql_type = Array<Timestamptz>)]
    refund_times: Vec<DateTime<Utc>>,
    #[diesel(sql_type = Array<BigInt>)]
    refund_amounts: Vec<i64>,
    #[diesel(sql_type = BigInt)]
    debited: i64,
}

/// A review item of a kind the sweep raises ([`SWEEP_KINDS`]).
#[derive(Debug, Clone, PartialEq, Eq, diesel::QueryableByName)]
pub struct SweepItem {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    #[diesel(deserialize_as = Stored<ReviewKind>)]
    pub kind: ReviewKind,
    #[diesel(sql_type = Nullable<Text>)]
    pub order_ref: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub processor_ref: Option<String>,
    /// `open` or `resolved`.
    #[diesel(sql_type = Text)]
    pub status: String,
}

/// Tries the sweep's advisory lock for the caller's transaction
/// (`pg_try_advisory_xact_lock`, released at its end); false, without
/// waiting, when another transaction holds it.
pub async fn try_lock(conn: &mut AsyncPgConnection) -> Result<bool, StoreError> {
    let locked: Locked = diesel::sql_query("SELECT pg_try_advisory_xact_lock($1) AS locked")
        .bind::<BigInt, _>(SWEEP_LOCK)
        .get_result(conn)
        .await?;
    Ok(locked.locked)
}

#[derive(diesel::QueryableByName)]
struct DatabaseNow {
    #[diesel(sql_type = Timestamptz)]
    now: DateTime<Utc>,
}

/// The database's `now()` (the start of the current transaction): the
/// database's clock, not this process's, so that `sweep --as-of` can be
/// compared with the time the books are written in.
pub async fn database_now(conn: &mut AsyncPgConnection) -> Result<DateTime<Utc>, StoreError> {
    let now: DatabaseNow = diesel::sql_query("SELECT now() AS now")
        .get_result(conn)
        .await?;
    Ok(now.now)
}

/// The items of the sweep's kinds that are open, or that a person
/// resolved (those the system closed are left out: their cause may be
/// raised again).
pub async fn raised_items(conn: &mut AsyncPgConnection) -> Result<Vec<SweepItem>, StoreError> {
    let kinds: Vec<&str> = SWEEP_KINDS.iter().map(|k| k.as_str()).collect();
    Ok(diesel::sql_query(
        "SELECT id, kind, order_ref, processor_ref, status FROM review_items \
         WHERE kind = ANY($1) AND (status = 'open' OR resolved_by IS DISTINCT FROM $2)",
    )
    .bind::<Array<Text>, _>(&kinds)
    .bind::<Text, _>(SYSTEM_RESOLVER)
    .load(conn)
    .await?)
}

/// The orders still `pending` or `authorized` that were created at or
/// before `stale_before`, and those with an open `stale_order` item.
pub async fn waiting_orders(
    conn: &mut AsyncPgConnection,
    stale_before: DateTime<Utc>,
) -> Result<Vec<WaitingOrder>, StoreError> {
    let orders: Vec<OrderRow> = diesel::sql_query(
        "SELECT order_ref, status, created_at FROM orders \
         WHERE (status IN ('pending', 'authorized') AND created_at <= $1) \
            OR order_ref IN (SELECT order_ref FROM review_items \
                             WHERE kind = 'stale_order' AND status = 'open')",
    )
    .bind::<Timestamptz, _>(stale_before)
    .load(conn)
    .await?;
    Ok(orders
        .into_iter()
        .map(|o| WaitingOrder {
            order_ref: o.order_ref,
            state: o.status,
            created_at: o.created_at,
        })
        .collect())
}

/// The paid payments that may matter to the sweep, with what settlement
/// lines settled of them (and whether a sale line of another amount was
/// matched to them: a `settlement_amount_differs` item, open or resolved): captured at or before `due_before` (so
/// unsettled and due, or with a refund due), or with an open item of the
/// sweep's kinds to reconsider.
pub async fn payments_to_settle(
    conn: &mut AsyncPgConnection,
    due_before: DateTime<Utc>,
    currencies: &Currencies,
) -> Result<Vec<PaymentSettlement>, StoreError> {
    let kinds: Vec<&str> = SWEEP_KINDS.iter().map(|k| k.as_str()).collect();
    // A refund a person recorded as made outside the processor
    // (`mark_refunded_outside`: its movement names a resolution) is never
    // debited by the processor: not due.
    let payments: Vec<PaymentRow> = diesel::sql_query(
        "SELECT o.order_ref, p.processor_ref, o.currency, p.paid_minor AS paid, pm.paid_at, \
                EXISTS (SELECT 1 FROM settlement_lines AS l WHERE l.payment_id = p.id \
                        AND l.kind = 'sale' AND l.status = 'matched') AS settled, \
                EXISTS (SELECT 1 FROM review_items AS d \
                        WHERE d.kind = 'settlement_amount_differs' \
                          AND d.status IN ('open', 'resolved') \
                          AND d.order_ref = o.order_ref \
                          AND d.processor_ref = p.processor_ref) AS amount_differs, \
                coalesce(r.times, '{}') AS refund_times, coalesce(r.amounts, '{}') AS refund_amounts, \
                coalesce((SELECT sum(abs(l.gross_minor)) FROM settlement_lines AS l \
                          WHERE l.payment_id = p.id AND l.kind = 'refund' \
                            AND l.status = 'matched'), 0)::int8 AS debited \
         FROM payments AS p JOIN orders AS o ON o.id = p.order_id \
         LEFT JOIN LATERAL (SELECT min(occurred_at) AS paid_at FROM money_movements \
                            WHERE order_id = p.order_id AND processor_ref = p.processor_ref \
                              AND kind = 'payment') AS pm ON true \
         LEFT JOIN LATERAL (SELECT array_agg(occurred_at ORDER BY id) AS times, \
                                   array_agg(amount_minor ORDER BY id) AS amounts \
                            FROM money_movements \
                            WHERE order_id = p.order_id AND processor_ref = p.processor_ref \
                              AND kind = 'refund' AND resolution_id IS NULL) AS r ON true \
         WHERE p.paid_minor > 0 \
           AND (pm.paid_at <= $1 \
                OR EXISTS (SELECT 1 FROM review_items AS i \
                           WHERE i.status = 'open' AND i.kind = ANY($2) \
                             AND i.order_ref = o.order_ref AND i.processor_ref = p.processor_ref))",
    )
    .bind::<Timestamptz, _>(due_before)
    .bind::<Array<Text>, _>(&kinds)
    .load(conn)
    .await?;
    let mut settlements = Vec::with_capacity(payments.len());
    for p in payments {
        let currency = currencies
            .currency(&p.currency)
            .map_err(|err| StoreError::Invalid(format!("order currency: {err}")))?;
        settlements.push(PaymentSettlement {
            order_ref: p.order_ref,
            processor_ref: p.processor_ref,
            currency,
            paid: p.paid,
            paid_at: p.paid_at,
            settled: p.settled,
            amount_differs: p.amount_differs,
            refunds: p.refund_times.into_iter().zip(p.refund_amounts).collect(),
            debited: p.debited,
        });
    }
    Ok(settlements)
}

#[derive(diesel::QueryableByName)]
struct SubscribedRow {
    #[diesel(embed)]
    line: super::subscriptions::LineRow,
    #[diesel(sql_type = Nullable<Text>)]
    order_ref: Option<String>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    paid_at: Option<NaiveDateTime>,
}

#[derive(diesel::QueryableByName)]
struct SaidRow {
    #[diesel(sql_type = Text)]
    licence_ref: String,
    #[diesel(sql_type = Timestamp)]
    updated_at: NaiveDateTime,
    #[diesel(sql_type = Nullable<Text>)]
    status: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    dispatch_reason: Option<String>,
    #[diesel(sql_type = Nullable<Bool>)]
    recurring: Option<bool>,
    #[diesel(sql_type = Bool)]
    lifetime: bool,
}

/// The subscriptions that may have a renewal cause, with their orders and
/// licence notices: those whose paid term ended at or before
/// `lapsed_before` (lifetime licences never end), those with a renewal
/// paid after a notice said they were disabled or canceled, and those
/// with an open item of a renewal kind to reconsider. Times are the
/// processor's (`IPN_LICENSE_EXP[]`, `DATE_UPDATED`), read as UTC.
pub async fn subscriptions_to_renew(
    conn: &mut AsyncPgConnection,
    lapsed_before: NaiveDateTime,
) -> Result<Vec<SubscriptionFacts>, StoreError> {
    let kinds = [
        ReviewKind::RenewalMissing.as_str(),
        ReviewKind::RenewalAfterCancel.as_str(),
    ];
    let licences: Vec<SaidLicence> = diesel::sql_query(
        "SELECT licence_ref FROM subscription_orders GROUP BY licence_ref \
         HAVING NOT bool_or(paid AND lifetime) \
            AND max(expires_at) FILTER (WHERE paid) <= $1 \
         UNION \
         SELECT n.licence_ref FROM licence_notices AS n \
         WHERE n.status IN ('DISABLED', 'CANCELED') \
           AND EXISTS (SELECT 1 FROM subscription_orders AS s \
                       WHERE s.licence_ref = n.licence_ref AND s.paid \
                         AND s.paid_at > n.updated_at) \
         UNION \
         SELECT s.licence_ref FROM subscription_orders AS s \
         JOIN review_items AS i ON i.processor_ref = s.processor_ref \
         WHERE i.status = 'open' AND i.kind = ANY($2)",
    )
    .bind::<Timestamp, _>(lapsed_before)
    .bind::<Array<Text>, _>(&kinds[..])
    .load(conn)
    .await?;
    let licences: Vec<String> = licences.into_iter().map(|l| l.licence_ref).collect();
    if licences.is_empty() {
        return Ok(Vec::new());
    }
    // The order of a line: the processor's order under its REFNO, or the
    // merchant order one of whose payments has it (as `subscriptions show`).
    let rows: Vec<SubscribedRow> = diesel::sql_query(
        "SELECT s.licence_ref, s.processor_ref, s.product_code, s.licence_type, \
                s.starts_at, s.expires_at, s.lifetime, s.original_order_ref, s.paid, \
                s.paid_at, o.order_ref \
         FROM subscription_orders AS s \
         LEFT JOIN LATERAL ( \
             SELECT o.order_ref FROM orders AS o \
             WHERE (o.origin = 'processor' AND o.order_ref = s.processor_ref) \
                OR EXISTS (SELECT 1 FROM payments AS p \
                           WHERE p.order_id = o.id AND p.processor_ref = s.processor_ref) \
             ORDER BY o.id LIMIT 1) AS o ON true \
         WHERE s.licence_ref = ANY($1) \
         ORDER BY s.licence_ref, s.processor_ref",
    )
    .bind::<Array<Text>, _>(&licences)
    .load(conn)
    .await?;
    let said: Vec<SaidRow> = diesel::sql_query(
        "SELECT licence_ref, updated_at, status, dispatch_reason, recurring, lifetime \
         FROM licence_notices WHERE licence_ref = ANY($1) \
         ORDER BY licence_ref, updated_at, identity",
    )
    .bind::<Array<Text>, _>(&licences)
    .load(conn)
    .await?;
    let mut facts: std::collections::BTreeMap<String, SubscriptionFacts> = licences
        .into_iter()
        .map(|licence_ref| {
            let facts = SubscriptionFacts {
                licence_ref: licence_ref.clone(),
                orders: Vec::new(),
                notices: Vec::new(),
            };
            (licence_ref, facts)
        })
        .collect();
    for row in rows {
        if let Some(sub) = facts.get_mut(&row.line.licence_ref) {
            sub.orders.push(SubscribedOrder {
                order: row.line.into_order(),
                order_ref: row.order_ref,
                paid_at: row.paid_at,
            });
        }
    }
    for row in said {
        if let Some(sub) = facts.get_mut(&row.licence_ref) {
            sub.notices.push(LicenceSaid {
                updated_at: row.updated_at,
                status: row.status.as_deref().map(SubscriptionStatus::from_lcn),
                dispatch_reason: row.dispatch_reason.as_deref().map(DispatchReason::parse),
                recurring: row.recurring,
                lifetime: row.lifetime,
            });
        }
    }
    Ok(facts
        .into_values()
        .filter(|sub| !sub.orders.is_empty())
        .collect())
}

#[derive(diesel::QueryableByName)]
struct SaidLicence {
    #[diesel(sql_type = Text)]
    licence_ref: String,
}

/// Opens a review item for `finding` unless an open one of its cause
/// exists (the partial unique index: `ON CONFLICT DO NOTHING`); true when
/// it was opened.
pub async fn open_item(
    conn: &mut AsyncPgConnection,
    finding: &Finding,
) -> Result<bool, StoreError> {
    let inserted = diesel::sql_query(
        "INSERT INTO review_items (kind, order_ref, processor_ref, details) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind::<Text, _>(finding.kind.as_str())
    .bind::<Nullable<Text>, _>(&finding.order_ref)
    .bind::<Nullable<Text>, _>(&finding.processor_ref)
    .bind::<Text, _>(&finding.details)
    .execute(conn)
    .await?;
    Ok(inserted == 1)
}

/// Closes open item `id` as resolved by the system, with `note`; returns
/// how many were closed (0 when it is no longer open).
pub async fn close_item(
    conn: &mut AsyncPgConnection,
    id: i64,
    note: &str,
) -> Result<usize, StoreError> {
    Ok(diesel::sql_query(
        "UPDATE review_items SET status = 'resolved', resolved_by = $2, \
                resolution_note = $3, resolved_at = now() \
         WHERE id = $1 AND status = 'open'",
    )
    .bind::<BigInt, _>(id)
    .bind::<Text, _>(SYSTEM_RESOLVER)
    .bind::<Text, _>(note)
    .execute(conn)
    .await?)
}
