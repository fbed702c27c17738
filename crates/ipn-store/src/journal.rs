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
use crate::domain::review::write_off_movement;
use crate::domain::{Currency, Decision, Money, ReviewKind};

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

/// A movement a notification made, to be written with its ledger row.
#[derive(Debug, Clone)]
pub(super) struct Moved {
    pub order_id: i64,
    pub notification_id: i64,
    pub movement: Movement,
    /// When the money moved, by the notice's dates
    /// ([`crate::domain::event_time::occurred_at`]); `None`: when
    /// recorded. The database books it (`booked_at`), closes included.
    pub occurred: Option<DateTime<Utc>>,
}

/// The statements that write the movements of many ledger rows (a batch),
/// on a shared connection, to be pipelined with the batch's other writes,
/// one statement per 5,000.
pub(super) fn record_many<'a>(
    conn: &'a AsyncPgConnection,
    moved: &[Moved],
) -> Vec<BoxFuture<'a, QueryResult<usize>>> {
    let rows: Vec<_> = moved.iter().map(row).collect();
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
    Option<diesel::dsl::Eq<money_movements::occurred_at, DateTime<Utc>>>,
);

fn row(moved: &Moved) -> NewRow {
    let m = &moved.movement;
    (
        money_movements::order_id.eq(moved.order_id),
        money_movements::notification_id.eq(moved.notification_id),
        money_movements::processor_ref.eq(m.processor_ref.clone()),
        money_movements::kind.eq(Stored(m.kind)),
        money_movements::amount_minor.eq(m.amount.minor_units()),
        money_movements::currency.eq(m.amount.currency().as_str().to_owned()),
        moved.occurred.map(|at| money_movements::occurred_at.eq(at)),
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

/// A write-off as loaded: when, order reference, REFNO, review kind,
/// signed amount, currency.
#[derive(QueryableByName)]
struct WriteOffRow {
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    order_ref: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    processor_ref: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    #[diesel(deserialize_as = Stored<ReviewKind>)]
    kind: ReviewKind,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    written_off_minor: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    currency: String,
}

/// The write-offs people made from the review queue, as journal
/// movements dated by their resolution, resolved in `period` (whatever its
/// basis: a write-off belongs to no order's creation, it is booked when a
/// person decides it). Read from the resolution ledger
/// (`review_resolutions.written_off_minor`), which also holds those of
/// settlement items about no order; the movement kind and direction are
/// [`write_off_movement`]'s. The only place write-offs come from: the
/// journal's lines and the report's figure.
pub async fn write_off_movements_in(
    conn: &mut AsyncPgConnection,
    period: &ReportPeriod,
    currencies: &crate::domain::Currencies,
) -> Result<Vec<JournalMovement>, StoreError> {
    use diesel::sql_types::{Nullable, Timestamptz};
    let rows: Vec<WriteOffRow> = diesel::sql_query(
        "SELECT r.created_at AS at, coalesce(r.order_ref, i.order_ref, '') AS order_ref, \
                coalesce(i.processor_ref, '') AS processor_ref, r.kind, r.written_off_minor, \
                r.currency \
         FROM review_resolutions AS r JOIN review_items AS i ON i.id = r.review_item_id \
         WHERE r.written_off_minor IS NOT NULL AND r.currency IS NOT NULL \
           AND r.created_at >= coalesce($1, '-infinity'::timestamptz) \
           AND r.created_at < coalesce($2, 'infinity'::timestamptz) \
         ORDER BY r.created_at, r.id",
    )
    .bind::<Nullable<Timestamptz>, _>(period.from)
    .bind::<Nullable<Timestamptz>, _>(period.to)
    .load(conn)
    .await?;
    rows.into_iter()
        .filter_map(|row| {
            let currency = match currencies.currency(&row.currency) {
                Ok(currency) => currency,
                Err(err) => {
                    return Some(Err(StoreError::Invalid(format!(
                        "write-off currency: {err}"
                    ))));
                }
            };
            let (kind, amount) =
                write_off_movement(row.kind, Money::from_minor(row.written_off_minor, currency))?;
            Some(Ok(JournalMovement {
                at: row.at,
                occurred: row.at,
                order_ref: row.order_ref,
                processor_ref: row.processor_ref,
                kind,
                amount,
                batch_id: None,
            }))
        })
        .collect()
}

/// One movement as the journal lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalMovement {
    /// The date the books carry it: when the money moved (a fee: with its
    /// sale, or by its settlement line), or the first open day when that
    /// fell in a period closed when it was recorded.
    pub at: DateTime<Utc>,
    /// When the money moved: the period it belongs to. Earlier than `at`
    /// for a movement late for a closed period ([`JournalMovement::late`]).
    pub occurred: DateTime<Utc>,
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

impl JournalMovement {
    /// Booked after the period it belongs to, because that period was
    /// closed when it was recorded.
    pub fn late(&self) -> bool {
        self.occurred < self.at
    }
}

type MovementRow = (
    DateTime<Utc>,
    DateTime<Utc>,
    String,
    String,
    Stored<MovementKind>,
    i64,
    String,
);

/// Every movement booked in `period`, oldest first, on the caller's
/// connection (so that a report reads them in its snapshot): the ledger's
/// movements by their booked date, the fees and released commission of
/// settlement lines (with their sale by `event`, by the line by
/// `settled`; `created` reads as `event`: a journal is always by date),
/// what the other settlement lines book (reserves, dispute holds,
/// adjustments), the payouts, dated at the midnight that begins their day
/// in `zone` (an IANA name, the report time zone), and the write-offs.
/// Nothing is dated in a period that was closed when it was recorded.
pub(super) async fn journal_movements_in(
    conn: &mut AsyncPgConnection,
    period: &ReportPeriod,
    zone: &str,
    currencies: &crate::domain::Currencies,
) -> Result<Vec<JournalMovement>, StoreError> {
    let mut query = money_movements::table
        .inner_join(orders::table)
        .select((
            money_movements::booked_at,
            money_movements::occurred_at,
            orders::order_ref,
            money_movements::processor_ref,
            money_movements::kind,
            money_movements::amount_minor,
            money_movements::currency,
        ))
        .order((money_movements::booked_at.asc(), money_movements::id.asc()))
        .into_boxed();
    if let Some(from) = period.from {
        query = query.filter(money_movements::booked_at.ge(from));
    }
    if let Some(to) = period.to {
        query = query.filter(money_movements::booked_at.lt(to));
    }
    let rows: Vec<MovementRow> = query.load(conn).await?;
    let mut moved = rows
        .into_iter()
        .map(
            |(at, occurred, order_ref, processor_ref, Stored(kind), minor, currency)| {
                let code = currencies
                    .currency(&currency)
                    .map_err(|err| StoreError::Invalid(format!("movement currency: {err}")))?;
                Ok(JournalMovement {
                    at,
                    occurred,
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
        by: if period.by.by_movement() {
            period.by
        } else {
            ReportBasis::Event
        },
        ..*period
    };
    moved.extend(super::settlement::fee_movements_in(conn, &dated, currencies).await?);
    moved.extend(super::clearing::settlement_movements_in(conn, &dated, zone, currencies).await?);
    // Write-offs: a person's, dated when resolved (never in a closed
    // period: they are recorded now).
    moved.extend(write_off_movements_in(conn, &dated, currencies).await?);
    // Stable: movements of one instant keep their order.
    moved.sort_by_key(|m| m.at);
    Ok(moved)
}

impl Store {
    /// The money movements booked in `period`, payouts dated in UTC
    /// ([`Store::journal_movements_zoned`]).
    pub async fn journal_movements(
        &self,
        period: &ReportPeriod,
    ) -> Result<Vec<JournalMovement>, StoreError> {
        self.journal_movements_zoned(period, "UTC").await
    }

    /// The money movements booked in `period` (by `event`, or `settled`
    /// for the fees' dates), oldest first: the ledger's, and what the
    /// settlement and payout files book (fees, released commission,
    /// reserves, dispute holds, adjustments, payouts), and write-offs. A
    /// payout has a day, not a time: it is dated at the midnight that
    /// begins its day in `zone` (the report time zone, an IANA name). Read
    /// in one snapshot.
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
    /// that carries a fee, dated as [`super::settlement::line_dates`] says:
    /// booked in `period` (by `event`: with their sale; by `settled`: by
    /// the line), or for orders created in it (by created; a line of no
    /// order, such as a monthly fee or an unknown line, by its own date, so
    /// that over all time both bases count every fee).
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
