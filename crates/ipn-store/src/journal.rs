//! Money movements: written with the ledger row that caused them, read
//! back for `report --by event` and `export journal`.
//!
//! What a movement is, and how it is booked, is decided in
//! [`crate::domain::journal`]; here it is stored (`money_movements`,
//! append-only like the ledger, in the ledger row's transaction) and
//! listed by time.

use super::sql::Stored;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures::future::BoxFuture;

use super::reports::{ReportBasis, ReportPeriod};
use super::reuse::Reuse;
use super::schema::{money_movements, orders};
use super::{Store, StoreError};
use crate::domain::journal::{Movement, MovementKind, reaches_reconciled};
use crate::domain::{Currency, Decision, Money};

/// Writes the movements of a person's action (a ledger row of order
/// `order_id` that names review resolution `resolution_id` instead of a
/// notification, written just before in the same transaction).
pub async fn record_for_resolution(
    conn: &mut AsyncPgConnection,
    order_id: i64,
    resolution_id: i64,
    moved: &[Movement],
) -> Result<(), StoreError> {
    for m in moved {
        diesel::insert_into(money_movements::table)
            .values((
                money_movements::order_id.eq(order_id),
                money_movements::resolution_id.eq(resolution_id),
                money_movements::processor_ref.eq(&m.processor_ref),
                money_movements::kind.eq(Stored(m.kind)),
                money_movements::amount_minor.eq(m.amount.minor_units()),
                money_movements::currency.eq(m.amount.currency().as_str()),
            ))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// The statements that write the movements of many ledger rows (a batch),
/// on a shared connection, to be pipelined with the batch's other writes:
/// `(order id, notification id, movement)`, one statement per 5,000.
pub(super) fn record_many<'a>(
    conn: &'a AsyncPgConnection,
    moved: &[(i64, i64, Movement)],
) -> Vec<BoxFuture<'a, QueryResult<usize>>> {
    let rows: Vec<_> = moved
        .iter()
        .map(|(order_id, notification_id, m)| row(*order_id, *notification_id, m))
        .collect();
    rows.chunks(CHUNK)
        .map(|chunk| {
            diesel::insert_into(money_movements::table)
                .values(chunk)
                .reused()
                .execute(&mut &*conn)
        })
        .collect()
}

type NewRow = (
    diesel::dsl::Eq<money_movements::order_id, i64>,
    diesel::dsl::Eq<money_movements::notification_id, i64>,
    diesel::dsl::Eq<money_movements::processor_ref, String>,
    diesel::dsl::Eq<money_movements::kind, Stored<MovementKind>>,
    diesel::dsl::Eq<money_movements::amount_minor, i64>,
    diesel::dsl::Eq<money_movements::currency, String>,
);

fn row(order_id: i64, notification_id: i64, m: &Movement) -> NewRow {
    (
        money_movements::order_id.eq(order_id),
        money_movements::notification_id.eq(notification_id),
        money_movements::processor_ref.eq(m.processor_ref.clone()),
        money_movements::kind.eq(Stored(m.kind)),
        money_movements::amount_minor.eq(m.amount.minor_units()),
        money_movements::currency.eq(m.amount.currency().as_str().to_owned()),
    )
}

/// Rows per statement: far below PostgreSQL's bind limit.
const CHUNK: usize = 5_000;

/// When the order reconciled by `decision` was created (`order_created`),
/// when `decision` is what made it reconciled; `None` otherwise. The
/// caller measures how long that took with its own clock (the store reads
/// none).
pub(super) fn reconciled_order_created(
    order_created: DateTime<Utc>,
    decision: &Decision,
) -> Option<DateTime<Utc>> {
    reaches_reconciled(decision.old_state, decision.new_state).then_some(order_created)
}

/// One movement as the journal lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalMovement {
    /// When it moved: the time of its ledger row (of the settlement line,
    /// for what a line books; the payout's day, for a payout).
    pub at: DateTime<Utc>,
    /// The merchant's order reference (REFNOEXT); empty for a payout or a
    /// line of no order.
    pub order_ref: String,
    /// The payment's processor reference (REFNO); empty when none.
    pub processor_ref: String,
    pub kind: MovementKind,
    /// Positive; the kind says which way it went.
    pub amount: Money,
    /// The settlement batch, for what a settlement line or a payout books.
    pub batch_id: Option<String>,
}

type MovementRow = (
    DateTime<Utc>,
    String,
    String,
    Stored<MovementKind>,
    i64,
    String,
);

/// Every movement dated in `period` (its `by` is not used: a journal is
/// always by date), oldest first, on the caller's connection (so that a
/// report reads them in its snapshot): the ledger's movements, the fees
/// and released commission of settlement lines, what the other
/// settlement lines book (reserves, dispute holds, adjustments) and the
/// payouts, dated at the midnight that begins their day in `zone` (an
/// IANA name, the report time zone).
pub(super) async fn journal_movements_in(
    conn: &mut AsyncPgConnection,
    period: &ReportPeriod,
    zone: &str,
    currencies: &crate::domain::Currencies,
) -> Result<Vec<JournalMovement>, StoreError> {
    let mut query = money_movements::table
        .inner_join(orders::table)
        .select((
            money_movements::created_at,
            orders::order_ref,
            money_movements::processor_ref,
            money_movements::kind,
            money_movements::amount_minor,
            money_movements::currency,
        ))
        .order((money_movements::created_at.asc(), money_movements::id.asc()))
        .into_boxed();
    if let Some(from) = period.from {
        query = query.filter(money_movements::created_at.ge(from));
    }
    if let Some(to) = period.to {
        query = query.filter(money_movements::created_at.lt(to));
    }
    let rows: Vec<MovementRow> = query.load(conn).await?;
    let mut moved = rows
        .into_iter()
        .map(
            |(at, order_ref, processor_ref, Stored(kind), minor, currency)| {
                let code = currencies
                    .currency(&currency)
                    .map_err(|err| StoreError::Invalid(format!("movement currency: {err}")))?;
                Ok(JournalMovement {
                    at,
                    order_ref,
                    processor_ref,
                    kind,
                    amount: Money::from_minor(minor, code),
                    batch_id: None,
                })
            },
        )
        .collect::<Result<Vec<_>, StoreError>>()?;
    let dated = ReportPeriod {
        by: ReportBasis::Event,
        ..*period
    };
    moved.extend(super::settlement::fee_movements_in(conn, &dated, currencies).await?);
    moved.extend(super::clearing::settlement_movements_in(conn, &dated, zone, currencies).await?);
    // Stable: movements of one instant keep their order.
    moved.sort_by_key(|m| m.at);
    Ok(moved)
}

impl Store {
    /// The money movements whose time falls in `period`, payouts dated in
    /// UTC ([`Store::journal_movements_zoned`]).
    pub async fn journal_movements(
        &self,
        period: &ReportPeriod,
    ) -> Result<Vec<JournalMovement>, StoreError> {
        self.journal_movements_zoned(period, "UTC").await
    }

    /// The money movements whose time falls in `period` (its `by` is not
    /// used: a journal is always by date), oldest first: the ledger's,
    /// and what the settlement and payout files book (fees, released
    /// commission, reserves, dispute holds, adjustments, payouts). A
    /// payout has a day, not a time: it is dated at the midnight that
    /// begins its day in `zone` (the report time zone, an IANA name).
    /// Read in one snapshot.
    pub async fn journal_movements_zoned(
        &self,
        period: &ReportPeriod,
        zone: &str,
    ) -> Result<Vec<JournalMovement>, StoreError> {
        let mut conn = self.conn().await?;
        let currencies = self.currencies();
        conn.build_transaction()
            .read_only()
            .repeatable_read()
            .run::<_, StoreError, _>(async |conn| {
                journal_movements_in(conn, period, zone, currencies).await
            })
            .await
    }

    /// The processor's fees as journal movements, one per settlement line
    /// that carries a fee, dated by the line: settled in `period` (by
    /// event), or for orders created in it (by created; a line of no order,
    /// such as a monthly fee or an unknown line, by its own date, so that
    /// over all time both bases count every fee).
    ///
    /// It is the one place fees come from: the report's `fees` (read in
    /// its snapshot), [`Store::fees_by_currency`], the journal's `fee`
    /// lines.
    pub async fn fee_movements(
        &self,
        period: &ReportPeriod,
    ) -> Result<Vec<JournalMovement>, StoreError> {
        let mut conn = self.conn().await?;
        super::settlement::fee_movements_in(&mut conn, period, self.currencies()).await
    }

    /// The processor's fees per currency in `period`, in minor units: the
    /// report's `fees` figure, the sum of [`Store::fee_movements`].
    pub async fn fees_by_currency(
        &self,
        period: &ReportPeriod,
    ) -> Result<BTreeMap<Currency, i64>, StoreError> {
        let mut fees: BTreeMap<Currency, i64> = BTreeMap::new();
        let moved = self.fee_movements(period).await?;
        for fee in moved.iter().filter(|m| m.kind == MovementKind::Fee) {
            let sum = fees.entry(fee.amount.currency()).or_default();
            *sum = sum.saturating_add(fee.amount.minor_units());
        }
        Ok(fees)
    }
}
