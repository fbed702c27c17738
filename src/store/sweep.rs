//! The sweep: loads what [`crate::domain::sweep::decide`] needs, and opens
//! and closes the review items it says, in one transaction.
//!
//! Several instances of `serve` may run; one sweep at a time is enough.
//! The transaction first tries a PostgreSQL advisory lock
//! ([`SWEEP_LOCK`]): an instance that does not get it skips this round
//! (another is sweeping), it does not wait. Opening is idempotent anyway:
//! an item is opened only for a cause that has no open item and none a
//! person resolved (one the system closed because its cause went away may
//! be raised again if the cause comes back: a later refund not debited),
//! and a partial
//! unique index keeps one open item per cause even against a writer that
//! ignores the lock.

use super::sql::Stored;
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::apply::SYSTEM_RESOLVER;
use super::{Store, StoreError};
use crate::domain::settlement::Finding;
use crate::domain::sweep::{
    OpenSweepItem, PaymentSettlement, SWEEP_KINDS, SweepFacts, SweepPolicy, WaitingOrder, decide,
};
use crate::domain::{Currencies, OrderState, ReviewKind};

/// The advisory lock key of the sweep (`ipn-swee` in ASCII).
pub const SWEEP_LOCK: i64 = 0x69706e2d73776565;

/// What one sweep did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SweepOutcome {
    /// False when another instance held the lock: this one did nothing.
    pub ran: bool,
    /// The items opened.
    pub opened: Vec<Finding>,
    /// How many open items were closed because their cause went away.
    pub closed: usize,
}

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
    #[diesel(sql_type = Array<Timestamptz>)]
    refund_times: Vec<DateTime<Utc>>,
    #[diesel(sql_type = Array<BigInt>)]
    refund_amounts: Vec<i64>,
    #[diesel(sql_type = BigInt)]
    debited: i64,
}

#[derive(diesel::QueryableByName)]
struct ItemRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    #[diesel(deserialize_as = Stored<ReviewKind>)]
    kind: ReviewKind,
    #[diesel(sql_type = Nullable<Text>)]
    order_ref: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    processor_ref: Option<String>,
    #[diesel(sql_type = Text)]
    status: String,
}

impl Store {
    /// Sweeps once as of `now`: opens an item for each cause
    /// [`decide`] finds that never had one, closes open items whose cause
    /// went away. Returns `ran: false`, having done nothing, when another
    /// instance is sweeping.
    pub async fn sweep(
        &self,
        now: DateTime<Utc>,
        policy: &SweepPolicy,
    ) -> Result<SweepOutcome, StoreError> {
        let mut conn = self.conn().await?;
        let policy = *policy;
        let currencies = self.currencies();
        conn.transaction::<_, StoreError, _>(async |conn| {
            sweep_in(conn, now, &policy, currencies).await
        })
        .await
    }
}

async fn sweep_in(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    policy: &SweepPolicy,
    currencies: &Currencies,
) -> Result<SweepOutcome, StoreError> {
    let locked: Locked = diesel::sql_query("SELECT pg_try_advisory_xact_lock($1) AS locked")
        .bind::<BigInt, _>(SWEEP_LOCK)
        .get_result(conn)
        .await?;
    if !locked.locked {
        return Ok(SweepOutcome::default());
    }
    let kinds: Vec<&str> = SWEEP_KINDS.iter().map(|k| k.as_str()).collect();
    let items: Vec<ItemRow> = diesel::sql_query(
        "SELECT id, kind, order_ref, processor_ref, status FROM review_items \
         WHERE kind = ANY($1) AND (status = 'open' OR resolved_by IS DISTINCT FROM $2)",
    )
    .bind::<Array<Text>, _>(&kinds)
    .bind::<Text, _>(SYSTEM_RESOLVER)
    .load(conn)
    .await?;
    let mut facts = SweepFacts::default();
    for item in items {
        facts.raised.insert((
            item.kind,
            item.order_ref.clone().unwrap_or_default(),
            item.processor_ref.clone(),
        ));
        if item.status == "open" {
            facts.open.push(OpenSweepItem {
                id: item.id,
                kind: item.kind,
                order_ref: item.order_ref,
                processor_ref: item.processor_ref,
            });
        }
    }
    let stale_before = now - policy.stale_order_age;
    let due_before = now - policy.settlement_days;
    let orders: Vec<OrderRow> = diesel::sql_query(
        "SELECT order_ref, status, created_at FROM orders \
         WHERE (status IN ('pending', 'authorized') AND created_at <= $1) \
            OR order_ref IN (SELECT order_ref FROM review_items \
                             WHERE kind = 'stale_order' AND status = 'open')",
    )
    .bind::<Timestamptz, _>(stale_before)
    .load(conn)
    .await?;
    facts.orders = orders
        .into_iter()
        .map(|o| WaitingOrder {
            order_ref: o.order_ref,
            state: o.status,
            created_at: o.created_at,
        })
        .collect();
    // Paid payments that may matter: unsettled and due, with a refund due,
    // or with an open item to reconsider. A refund a person recorded as
    // made outside the processor (`mark_refunded_outside`: its movement
    // names a resolution) is never debited by the processor: not due.
    let payments: Vec<PaymentRow> = diesel::sql_query(
        "SELECT o.order_ref, p.processor_ref, o.currency, p.paid_minor AS paid, pm.paid_at, \
                EXISTS (SELECT 1 FROM settlement_lines AS l WHERE l.payment_id = p.id \
                        AND l.kind = 'sale' AND l.status = 'matched') AS settled, \
                coalesce(r.times, '{}') AS refund_times, coalesce(r.amounts, '{}') AS refund_amounts, \
                coalesce((SELECT sum(abs(l.gross_minor)) FROM settlement_lines AS l \
                          WHERE l.payment_id = p.id AND l.kind = 'refund' \
                            AND l.status = 'matched'), 0)::int8 AS debited \
         FROM payments AS p JOIN orders AS o ON o.id = p.order_id \
         LEFT JOIN LATERAL (SELECT min(created_at) AS paid_at FROM money_movements \
                            WHERE order_id = p.order_id AND processor_ref = p.processor_ref \
                              AND kind = 'payment') AS pm ON true \
         LEFT JOIN LATERAL (SELECT array_agg(created_at ORDER BY id) AS times, \
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
    for p in payments {
        let currency = currencies
            .currency(&p.currency)
            .map_err(|err| StoreError::Invalid(format!("order currency: {err}")))?;
        facts.payments.push(PaymentSettlement {
            order_ref: p.order_ref,
            processor_ref: p.processor_ref,
            currency,
            paid: p.paid,
            paid_at: p.paid_at,
            settled: p.settled,
            refunds: p.refund_times.into_iter().zip(p.refund_amounts).collect(),
            debited: p.debited,
        });
    }

    let plan = decide(now, policy, &facts);
    let mut outcome = SweepOutcome {
        ran: true,
        ..SweepOutcome::default()
    };
    let mut seen = HashSet::new();
    for finding in plan.open {
        if !seen.insert((
            finding.kind,
            finding.order_ref.clone(),
            finding.processor_ref.clone(),
        )) {
            continue;
        }
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
        if inserted == 1 {
            outcome.opened.push(finding);
        }
    }
    for closing in plan.close {
        outcome.closed += diesel::sql_query(
            "UPDATE review_items SET status = 'resolved', resolved_by = $2, \
                    resolution_note = $3, resolved_at = now() \
             WHERE id = $1 AND status = 'open'",
        )
        .bind::<BigInt, _>(closing.id)
        .bind::<Text, _>(SYSTEM_RESOLVER)
        .bind::<Text, _>(&closing.note)
        .execute(conn)
        .await?;
    }
    Ok(outcome)
}
