//! The review queue: listing the exceptions a person must look at, showing
//! one with everything behind it, and the reads and writes a resolution is
//! made of.
//!
//! Resolving an item is a workflow, [`crate::services::review::resolve`]:
//! it decides (with [`crate::domain::review`]) and owns the transaction;
//! here are the repository functions it runs in it, each taking the
//! caller's connection: lock the item ([`lock_item`]) and its group
//! ([`lock_open_group`]), write a row of the append-only
//! `review_resolutions` ledger ([`record_resolution`]: who, when, why,
//! which action), and the ledger row of a person's action on an order
//! ([`record_resolution_event`]).
//!
//! Items of one kind for one order are a *group* ([`group_items`]): the
//! same exception seen several times (three double charges, two late
//! repeats of one refund). They are listed as one line and can be
//! resolved together.

use super::sql::Stored;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use super::orders::OrderView;
use super::reports::rfc3339;
use super::schema::{
    money_movements, notifications, order_events, orders, payments, review_items,
    review_resolutions, settlement_payouts,
};
use super::{Store, StoreError};
use crate::domain::journal::MovementKind;
use crate::domain::review::{LineAtStake, ReviewAction, allowed_actions};
use crate::domain::settlement::LineKind;
use crate::domain::{Currencies, Currency, Decision, Money, Outcome, ReviewKind};

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    /// The action it was resolved with ([`ReviewAction`], or
    /// `closed_by_system`); none while open.
    pub resolution_action: Option<String>,
    /// The amount the item is about, exact with its currency's decimals,
    /// signed as its source holds it (a refund's line or notice is
    /// negative). Read only from stored columns, never from `details`
    /// ([`item_amounts`]): none when no stored row says (a
    /// `refund_not_debited` item, an invalid notice without an amount) or
    /// the currency is not in the currency table.
    pub amount: Option<String>,
    /// The currency of `amount`.
    pub currency: Option<String>,
    /// `amount` in minor units of `currency`, for code that orders items
    /// by amount (the console's queue); not exported.
    #[serde(skip)]
    pub amount_minor: Option<i64>,
    /// What its resolution wrote off (the write-off schedule), exact with
    /// its currency's decimals: positive, booked money the processor will
    /// never pay out (a loss); negative, money it paid that nothing booked.
    /// None unless resolved with a write-off.
    pub written_off: Option<String>,
    /// The currency of `written_off`.
    pub written_off_currency: Option<String>,
}

/// A [`ReviewItem`] as its columns load, before its amount is added.
#[derive(Queryable)]
struct ItemRow {
    id: i64,
    #[diesel(deserialize_as = Stored<ReviewKind>)]
    kind: ReviewKind,
    order_ref: Option<String>,
    processor_ref: Option<String>,
    details: String,
    status: String,
    resolution_note: Option<String>,
    resolved_by: Option<String>,
    resolved_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    resolution_action: Option<String>,
    written_off_minor: Option<i64>,
    resolution_currency: Option<String>,
}

impl ItemRow {
    fn with_amount(self, amount: Option<&StoredAmount>, currencies: &Currencies) -> ReviewItem {
        let (amount, currency, amount_minor) = match amount {
            Some(a) => {
                let amount = currencies
                    .currency(&a.currency)
                    .ok()
                    .map(|c| Money::from_minor(a.amount_minor, c).format_amount());
                // The minor units only where the amount is shown: an
                // unknown currency has neither.
                let minor = amount.as_ref().map(|_| a.amount_minor);
                (amount, Some(a.currency.clone()), minor)
            }
            None => (None, None, None),
        };
        let written_off = self
            .written_off_minor
            .zip(self.resolution_currency.as_deref())
            .map(|(minor, code)| {
                currencies.currency(code).map_or_else(
                    |_| minor.to_string(),
                    |c| Money::from_minor(minor, c).format_amount(),
                )
            });
        let written_off_currency = self.written_off_minor.and(self.resolution_currency.clone());
        ReviewItem {
            id: self.id,
            kind: self.kind,
            order_ref: self.order_ref,
            processor_ref: self.processor_ref,
            details: self.details,
            status: self.status,
            resolution_note: self.resolution_note,
            resolved_by: self.resolved_by,
            resolved_at: self.resolved_at,
            created_at: self.created_at,
            resolution_action: self.resolution_action,
            amount,
            currency,
            amount_minor,
            written_off,
            written_off_currency,
        }
    }
}

/// The amount an item is about, as a stored row holds it.
#[derive(Debug, Clone, QueryableByName)]
struct StoredAmount {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    amount_minor: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    currency: String,
}

/// The amounts of review items `ids`, from the first stored row that says,
/// in this order:
///
/// 1. the settlement line that opened it (`settlement_unknown`,
///    `settlement_amount_differs`, `fee_differs`): the line's gross;
/// 2. the payout that opened it (`payout_total_differs`): the transfer;
/// 3. the notification that opened it: its amount as the processor sent
///    it (an amount or currency mismatch, a double charge, an orphan
///    payment, a late repeat, ...);
/// 4. an `unsettled_payment`: what its payment (REFNO) paid, in its
///    order's currency;
/// 5. a `stale_order`: what the order expects.
///
/// The free text of `details` is never read.
async fn item_amounts(
    conn: &mut AsyncPgConnection,
    ids: &[i64],
) -> Result<std::collections::HashMap<i64, StoredAmount>, StoreError> {
    if ids.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    let rows: Vec<StoredAmount> = diesel::sql_query(
        "SELECT i.id, a.amount_minor, a.currency \
         FROM review_items AS i \
         CROSS JOIN LATERAL ( \
           SELECT s.amount_minor, s.currency FROM ( \
             SELECT 1 AS source, l.id AS row_id, l.gross_minor AS amount_minor, l.currency \
               FROM settlement_lines AS l WHERE l.review_item_id = i.id \
             UNION ALL \
             SELECT 2, p.id, p.amount_minor, p.currency \
               FROM settlement_payouts AS p WHERE p.review_item_id = i.id \
             UNION ALL \
             SELECT 3, n.id, n.amount_minor, n.currency \
               FROM notifications AS n WHERE n.id = i.notification_id \
                AND n.amount_minor IS NOT NULL AND n.currency IS NOT NULL \
             UNION ALL \
             SELECT 4, pay.id, pay.paid_minor, o.currency \
               FROM payments AS pay JOIN orders AS o ON o.id = pay.order_id \
              WHERE i.kind = 'unsettled_payment' AND o.order_ref = i.order_ref \
                AND pay.processor_ref = i.processor_ref \
             UNION ALL \
             SELECT 5, o.id, o.expected_minor, o.currency \
               FROM orders AS o WHERE i.kind = 'stale_order' AND o.order_ref = i.order_ref \
           ) AS s ORDER BY s.source, s.row_id LIMIT 1 \
         ) AS a \
         WHERE i.id = ANY($1)",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(ids)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|row| (row.id, row)).collect())
}

/// Items as loaded, with their amounts (one more query, on the same
/// connection).
async fn with_amounts(
    conn: &mut AsyncPgConnection,
    rows: Vec<ItemRow>,
    currencies: &Currencies,
) -> Result<Vec<ReviewItem>, StoreError> {
    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
    let amounts = item_amounts(conn, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let amount = amounts.get(&row.id);
            row.with_amount(amount, currencies)
        })
        .collect())
}

/// Open items of one kind for one order, listed as one line: the newest
/// item's fields, how many there are and their ids (newest first). A
/// resolved item, or one about no order, is a group of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewGroup {
    /// The newest item of the group.
    #[serde(flatten)]
    pub item: ReviewItem,
    /// Items in the group (1 for an item on its own).
    pub count: usize,
    /// Their ids, newest first (the first is `item.id`).
    pub item_ids: Vec<i64>,
}

impl ReviewGroup {
    /// An item on its own (`--ungrouped`, the console's list).
    pub fn of(item: ReviewItem) -> Self {
        Self {
            item_ids: vec![item.id],
            count: 1,
            item,
        }
    }
}

/// Groups `items` (newest first, as listed): open items of one kind for
/// one order become one group, at the place of its newest item; resolved
/// items and items about no order stay one by one, each with its own
/// resolution.
pub fn group_items(items: Vec<ReviewItem>) -> Vec<ReviewGroup> {
    let mut groups: Vec<ReviewGroup> = Vec::new();
    let mut index: std::collections::HashMap<(ReviewKind, String), usize> =
        std::collections::HashMap::new();
    for item in items {
        let key = match (&item.order_ref, item.status.as_str()) {
            (Some(order_ref), "open") => Some((item.kind, order_ref.clone())),
            _ => None,
        };
        match key {
            Some(key) => match index.get(&key) {
                Some(&at) => {
                    groups[at].count += 1;
                    groups[at].item_ids.push(item.id);
                }
                None => {
                    index.insert(key, groups.len());
                    groups.push(ReviewGroup::of(item));
                }
            },
            None => groups.push(ReviewGroup::of(item)),
        }
    }
    groups
}

/// Lists every item as a group of its own (`review list --ungrouped`).
pub fn ungrouped(items: Vec<ReviewItem>) -> Vec<ReviewGroup> {
    items.into_iter().map(ReviewGroup::of).collect()
}

impl Store {
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
            .left_join(review_resolutions::table)
            .select(item_columns())
            .order(review_items::id.desc())
            .into_boxed();
        match status {
            ReviewStatus::Open => query = query.filter(review_items::status.eq("open")),
            ReviewStatus::Resolved => query = query.filter(review_items::status.eq("resolved")),
            ReviewStatus::All => {}
        }
        if let Some(kind) = kind {
            query = query.filter(review_items::kind.eq(Stored(kind)));
        }
        let rows: Vec<ItemRow> = query.load(&mut conn).await?;
        with_amounts(&mut conn, rows, self.currencies()).await
    }

    /// Review items grouped as `review list` shows them ([`group_items`]).
    pub async fn review_groups(
        &self,
        status: ReviewStatus,
        kind: Option<ReviewKind>,
    ) -> Result<Vec<ReviewGroup>, StoreError> {
        Ok(group_items(
            self.review_items_by_status(status, kind).await?,
        ))
    }
}

/// The columns of a [`ReviewItem`], from `review_items` left-joined with
/// its resolution.
type ItemColumns = (
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
    diesel::dsl::Nullable<review_resolutions::action>,
    diesel::dsl::Nullable<review_resolutions::written_off_minor>,
    diesel::dsl::Nullable<review_resolutions::currency>,
);

fn item_columns() -> ItemColumns {
    (
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
        review_resolutions::action.nullable(),
        review_resolutions::written_off_minor.nullable(),
        review_resolutions::currency.nullable(),
    )
}

/// A review item as locked for its resolution.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct LockedItem {
    pub id: i64,
    #[diesel(deserialize_as = Stored<ReviewKind>)]
    pub kind: ReviewKind,
    /// `open` or `resolved`.
    pub status: String,
    pub order_ref: Option<String>,
    /// The processor's reference (REFNO) of the payment it concerns.
    pub processor_ref: Option<String>,
    /// The notification that opened it, when one did.
    pub notification_id: Option<i64>,
}

const LOCKED_COLUMNS: (
    review_items::id,
    review_items::kind,
    review_items::status,
    review_items::order_ref,
    review_items::processor_ref,
    review_items::notification_id,
) = (
    review_items::id,
    review_items::kind,
    review_items::status,
    review_items::order_ref,
    review_items::processor_ref,
    review_items::notification_id,
);

/// Review item `id`, locked (`FOR UPDATE`) until the caller's transaction
/// ends; `None` when there is no such item.
pub async fn lock_item(
    conn: &mut AsyncPgConnection,
    id: i64,
) -> Result<Option<LockedItem>, StoreError> {
    Ok(review_items::table
        .find(id)
        .select(LOCKED_COLUMNS)
        .for_update()
        .first(conn)
        .await
        .optional()?)
}

/// The open items of `kind` for `order_ref` other than `except`, oldest
/// first, locked (`FOR UPDATE`): the rest of an item's group.
pub async fn lock_open_group(
    conn: &mut AsyncPgConnection,
    kind: ReviewKind,
    order_ref: &str,
    except: i64,
) -> Result<Vec<LockedItem>, StoreError> {
    Ok(review_items::table
        .filter(review_items::kind.eq(Stored(kind)))
        .filter(review_items::order_ref.eq(order_ref))
        .filter(review_items::status.eq("open"))
        .filter(review_items::id.ne(except))
        .order(review_items::id.asc())
        .select(LOCKED_COLUMNS)
        .for_update()
        .load(conn)
        .await?)
}

/// How an item was resolved: its row in the resolution ledger, in short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastResolution {
    /// A [`ReviewAction`], `closed_by_system`, or `note`.
    pub action: String,
    pub resolved_by: String,
    pub at: DateTime<Utc>,
}

/// How item `id` was resolved (an error when the ledger has no row for
/// it).
pub async fn resolution_of(
    conn: &mut AsyncPgConnection,
    id: i64,
) -> Result<PastResolution, StoreError> {
    let (action, resolved_by, at): (String, String, DateTime<Utc>) = review_resolutions::table
        .filter(review_resolutions::review_item_id.eq(id))
        .select((
            review_resolutions::action,
            review_resolutions::resolved_by,
            review_resolutions::created_at,
        ))
        .first(conn)
        .await?;
    Ok(PastResolution {
        action,
        resolved_by,
        at,
    })
}

/// A row of the append-only resolution ledger, to be written.
#[derive(Debug, Clone)]
pub struct NewResolution<'a> {
    pub item: &'a LockedItem,
    pub action: ReviewAction,
    pub resolved_by: &'a str,
    pub note: &'a str,
    /// The order the resolution concerns (for `link_order`, the order
    /// linked to).
    pub order_ref: Option<String>,
    /// The money it concerns.
    pub amount: Option<Money>,
    /// What it writes off, signed (positive: a shortfall or loss;
    /// negative: an excess), in `amount`'s currency: `amount` is its
    /// magnitude.
    pub written_off: Option<Money>,
    /// The item named in the request, when a group is resolved together.
    pub group_of: Option<i64>,
}

/// Writes a resolution's row to the ledger and marks its item resolved
/// (`resolved_at` is the transaction's `now()`); returns the row's id.
pub async fn record_resolution(
    conn: &mut AsyncPgConnection,
    resolution: &NewResolution<'_>,
) -> Result<i64, StoreError> {
    let item = resolution.item;
    let amount = resolution
        .written_off
        .map(|m| m.abs())
        .or(resolution.amount);
    let written_off = resolution
        .written_off
        .map(|m| m.minor_units())
        .filter(|minor| *minor != 0);
    let id: i64 = diesel::insert_into(review_resolutions::table)
        .values((
            review_resolutions::review_item_id.eq(item.id),
            review_resolutions::kind.eq(Stored(item.kind)),
            review_resolutions::action.eq(resolution.action.as_str()),
            review_resolutions::resolved_by.eq(resolution.resolved_by),
            review_resolutions::note.eq(resolution.note),
            review_resolutions::order_ref.eq(&resolution.order_ref),
            review_resolutions::notification_id.eq(item.notification_id),
            review_resolutions::amount_minor.eq(amount.map(|m| m.minor_units())),
            review_resolutions::currency.eq(amount.map(|m| m.currency().as_str().to_owned())),
            review_resolutions::group_of.eq(resolution.group_of),
            review_resolutions::written_off_minor.eq(written_off),
        ))
        .returning(review_resolutions::id)
        .get_result(conn)
        .await?;
    diesel::update(review_items::table.find(item.id))
        .set((
            review_items::status.eq("resolved"),
            review_items::resolved_by.eq(resolution.resolved_by),
            review_items::resolution_note.eq(resolution.note),
            review_items::resolved_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(id)
}

/// The amount of notification `notification_id` (a repeat's refund, an
/// orphan's payment), as a positive amount, when it carries one in a
/// currency this version knows.
pub async fn notification_amount(
    conn: &mut AsyncPgConnection,
    notification_id: i64,
    currencies: &Currencies,
) -> Result<Option<Money>, StoreError> {
    let row: Option<(Option<i64>, Option<String>)> = notifications::table
        .find(notification_id)
        .select((notifications::amount_minor, notifications::currency))
        .first(conn)
        .await
        .optional()?;
    Ok(match row {
        Some((Some(minor), Some(code))) => currencies
            .currency(&code)
            .ok()
            .map(|currency| Money::from_minor(minor.abs(), currency)),
        _ => None,
    })
}

/// What one payment of an order holds, in minor units of the order's
/// currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentBalance {
    pub currency: Currency,
    pub paid: i64,
    pub refunded: i64,
    pub reversed: bool,
}

/// The payment under `processor_ref` of order `order_ref`; `None` when
/// there is none (or its order's currency is one this version does not
/// know).
pub async fn payment_balance(
    conn: &mut AsyncPgConnection,
    order_ref: &str,
    processor_ref: &str,
    currencies: &Currencies,
) -> Result<Option<PaymentBalance>, StoreError> {
    let row: Option<(String, i64, i64, bool)> = payments::table
        .inner_join(orders::table)
        .filter(orders::order_ref.eq(order_ref))
        .filter(payments::processor_ref.eq(processor_ref))
        .select((
            orders::currency,
            payments::paid_minor,
            payments::refunded_minor,
            payments::reversed,
        ))
        .first(conn)
        .await
        .optional()?;
    Ok(row.and_then(|(code, paid, refunded, reversed)| {
        currencies
            .currency(&code)
            .ok()
            .map(|currency| PaymentBalance {
                currency,
                paid,
                refunded,
                reversed,
            })
    }))
}

/// The settlement line that opened item `item_id`, as its write-off
/// reads it ([`LineAtStake`]); `None` when no line did (or its currency is
/// not in the table).
pub async fn line_at_stake(
    conn: &mut AsyncPgConnection,
    item_id: i64,
    currencies: &Currencies,
) -> Result<Option<LineAtStake>, StoreError> {
    #[derive(QueryableByName)]
    struct LineRow {
        #[diesel(sql_type = diesel::sql_types::Text)]
        #[diesel(deserialize_as = Stored<LineKind>)]
        kind: LineKind,
        #[diesel(sql_type = diesel::sql_types::Int8)]
        gross_minor: i64,
        #[diesel(sql_type = diesel::sql_types::Int8)]
        net_minor: i64,
        #[diesel(sql_type = diesel::sql_types::Text)]
        currency: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Int8>)]
        expected_minor: Option<i64>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        ledger_currency: Option<String>,
    }
    let row: Option<LineRow> = diesel::sql_query(
        "SELECT l.kind, l.gross_minor, l.net_minor, l.currency, l.expected_minor, \
                o.currency AS ledger_currency \
         FROM settlement_lines AS l LEFT JOIN orders AS o ON o.id = l.order_id \
         WHERE l.review_item_id = $1 ORDER BY l.id LIMIT 1",
    )
    .bind::<diesel::sql_types::BigInt, _>(item_id)
    .get_result(conn)
    .await
    .optional()?;
    Ok(row.and_then(|row| {
        let LineRow {
            kind,
            gross_minor: gross,
            net_minor: net,
            currency: code,
            expected_minor: expected,
            ledger_currency: ledger,
        } = row;
        let currency = currencies.currency(&code).ok()?;
        Some(LineAtStake {
            kind,
            gross: Money::from_minor(gross, currency),
            net: Money::from_minor(net, currency),
            expected,
            in_ledger_currency: ledger.is_none_or(|ledger| ledger == code),
        })
    }))
}

/// The payout that opened item `item_id`: what was transferred and what
/// its lines' net sums to (minor units of the transfer's currency).
pub async fn payout_at_stake(
    conn: &mut AsyncPgConnection,
    item_id: i64,
    currencies: &Currencies,
) -> Result<Option<(Money, i64)>, StoreError> {
    let row: Option<(i64, i64, String)> = settlement_payouts::table
        .filter(settlement_payouts::review_item_id.eq(item_id))
        .order(settlement_payouts::id.asc())
        .select((
            settlement_payouts::amount_minor,
            settlement_payouts::lines_net_minor,
            settlement_payouts::currency,
        ))
        .first(conn)
        .await
        .optional()?;
    Ok(row.and_then(|(amount, lines_net, code)| {
        let currency = currencies.currency(&code).ok()?;
        Some((Money::from_minor(amount, currency), lines_net))
    }))
}

/// Whether order `order_ref` has an open item other than `except` about an amount or a
/// currency that disagreed (what keeps it `mismatch`).
pub async fn other_disagreements_open(
    conn: &mut AsyncPgConnection,
    order_ref: &str,
    except: &[i64],
) -> Result<bool, StoreError> {
    use diesel::dsl::{exists, select};
    Ok(select(exists(
        review_items::table
            .filter(review_items::order_ref.eq(order_ref))
            .filter(review_items::id.ne_all(except))
            .filter(review_items::status.eq("open"))
            .filter(review_items::kind.eq_any([
                Stored(ReviewKind::AmountMismatch),
                Stored(ReviewKind::CurrencyMismatch),
            ])),
    ))
    .get_result(conn)
    .await?)
}

/// Opens `item` on order `order_ref`, without a notification (an item a
/// resolution leaves behind, such as a difference to collect); returns its
/// id.
pub async fn open_follow_up(
    conn: &mut AsyncPgConnection,
    item: &crate::domain::NewReviewItem,
    order_ref: &str,
) -> Result<i64, StoreError> {
    Ok(diesel::insert_into(review_items::table)
        .values((
            review_items::kind.eq(Stored(item.kind)),
            review_items::order_ref.eq(order_ref),
            review_items::processor_ref.eq(item.processor_ref.as_deref()),
            review_items::details.eq(&item.details),
        ))
        .returning(review_items::id)
        .get_result(conn)
        .await?)
}

/// The id of order `order_ref`, when it exists.
pub async fn order_id(
    conn: &mut AsyncPgConnection,
    order_ref: &str,
) -> Result<Option<i64>, StoreError> {
    Ok(orders::table
        .filter(orders::order_ref.eq(order_ref))
        .select(orders::id)
        .first(conn)
        .await
        .optional()?)
}

/// The notifications under order reference `order_ref` that found no
/// order and still carry their identity (not repeats), oldest first,
/// locked (`FOR UPDATE`): an orphan's payment waiting for its order.
pub async fn lock_waiting_for_order(
    conn: &mut AsyncPgConnection,
    order_ref: &str,
) -> Result<Vec<i64>, StoreError> {
    // Those that named it, and those that named no merchant reference and
    // were looked for under their REFNO.
    Ok(notifications::table
        .filter(
            notifications::order_ref
                .eq(order_ref)
                .or(notifications::order_ref
                    .is_null()
                    .and(notifications::processor_ref.eq(order_ref))),
        )
        .filter(notifications::outcome.eq(Stored(Outcome::OrderNotFound)))
        .filter(notifications::repeat_of.is_null())
        .filter(notifications::identity.is_not_null())
        .order(notifications::id.asc())
        .select(notifications::id)
        .for_update()
        .load(conn)
        .await?)
}

/// Appends the ledger row (`order_events`) of a person's action on order
/// `order_id`: it names resolution `resolution_id` instead of a
/// notification, `action` as its status, and `decision`'s states, effect
/// and reason, with `amount`.
pub async fn record_resolution_event(
    conn: &mut AsyncPgConnection,
    order_id: i64,
    resolution_id: i64,
    action: ReviewAction,
    decision: &Decision,
    amount: Money,
) -> Result<(), StoreError> {
    diesel::insert_into(order_events::table)
        .values((
            order_events::order_id.eq(order_id),
            order_events::resolution_id.eq(resolution_id),
            order_events::order_status.eq(action.as_str()),
            order_events::effect.eq(Stored(decision.effect)),
            order_events::old_status.eq(Stored(decision.old_state)),
            order_events::new_status.eq(Stored(decision.new_state)),
            order_events::amount_minor.eq(amount.minor_units()),
            order_events::currency.eq(amount.currency().as_str()),
            order_events::reason.eq(&decision.reason),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// A row of the resolution ledger, as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Queryable)]
pub struct ResolutionView {
    pub id: i64,
    pub review_item_id: i64,
    #[diesel(deserialize_as = Stored<ReviewKind>)]
    pub kind: ReviewKind,
    /// A [`ReviewAction`], `closed_by_system`, or `note` (resolved before
    /// actions existed).
    pub action: String,
    pub resolved_by: String,
    pub note: String,
    pub order_ref: Option<String>,
    pub notification_id: Option<i64>,
    /// Minor units, with `currency`.
    #[serde(skip)]
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub group_of: Option<i64>,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub at: DateTime<Utc>,
    /// What it wrote off, signed (positive: a shortfall; negative: an
    /// excess), minor units of `currency`.
    #[serde(skip)]
    pub written_off_minor: Option<i64>,
}

/// The columns of a [`ResolutionView`].
type ResolutionColumns = (
    review_resolutions::id,
    review_resolutions::review_item_id,
    review_resolutions::kind,
    review_resolutions::action,
    review_resolutions::resolved_by,
    review_resolutions::note,
    review_resolutions::order_ref,
    review_resolutions::notification_id,
    review_resolutions::amount_minor,
    review_resolutions::currency,
    review_resolutions::group_of,
    review_resolutions::created_at,
    review_resolutions::written_off_minor,
);

const RESOLUTION_COLUMNS: ResolutionColumns = (
    review_resolutions::id,
    review_resolutions::review_item_id,
    review_resolutions::kind,
    review_resolutions::action,
    review_resolutions::resolved_by,
    review_resolutions::note,
    review_resolutions::order_ref,
    review_resolutions::notification_id,
    review_resolutions::amount_minor,
    review_resolutions::currency,
    review_resolutions::group_of,
    review_resolutions::created_at,
    review_resolutions::written_off_minor,
);

impl ResolutionView {
    /// The amount as an exact decimal in its currency, read with
    /// `currencies` (the store's table, [`Store::currencies`]).
    pub fn amount(&self, currencies: &Currencies) -> Option<String> {
        let currency = currencies.currency(self.currency.as_deref()?).ok()?;
        Some(Money::from_minor(self.amount_minor?, currency).format_amount())
    }

    /// What it wrote off, signed, as an exact decimal in its currency.
    pub fn written_off(&self, currencies: &Currencies) -> Option<String> {
        let currency = currencies.currency(self.currency.as_deref()?).ok()?;
        Some(Money::from_minor(self.written_off_minor?, currency).format_amount())
    }
}

/// A notification involved in an item: how it was verified and what
/// became of it. No personal data (no pseudonym, no payment method).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotificationView {
    pub id: i64,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub received_at: DateTime<Utc>,
    pub processor_ref: Option<String>,
    /// REFNOEXT, as the processor sent it.
    pub order_ref: Option<String>,
    pub order_status: Option<String>,
    pub amount: Option<String>,
    pub currency: Option<String>,
    /// Which key verified it, and with which algorithm.
    pub key_id: Option<String>,
    pub algorithm: Option<String>,
    /// SHA-256 of the body as received.
    pub body_sha256: String,
    /// The digest of its signed values (what makes repeats one notification).
    pub identity: Option<String>,
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// The notification this one repeats, when it is a repeat.
    pub repeat_of: Option<i64>,
}

type NotificationRow = (
    i64,
    DateTime<Utc>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Stored<Outcome>,
    Option<String>,
    Option<i64>,
);

/// A money movement as loaded: time, REFNO, kind, minor units, currency,
/// notification, resolution.
type MovementRow = (
    DateTime<Utc>,
    String,
    Stored<MovementKind>,
    i64,
    String,
    Option<i64>,
    Option<i64>,
);

/// A money movement of the order, as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MovementView {
    #[serde(serialize_with = "rfc3339::serialize")]
    pub at: DateTime<Utc>,
    pub processor_ref: String,
    pub kind: MovementKind,
    pub amount: String,
    pub currency: String,
    /// The notification that moved it, or the resolution (a person's
    /// action).
    pub notification_id: Option<i64>,
    pub resolution_id: Option<i64>,
}

/// Everything behind one review item (`review show`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewDetail {
    pub item: ReviewItem,
    /// The actions that fit its kind, the usual one first.
    pub allowed_actions: Vec<ReviewAction>,
    /// Open items of its group (same kind, same order), itself included,
    /// newest first: what `review resolve ID --group` resolves.
    pub group: Vec<i64>,
    /// Its row in the resolution ledger, once resolved.
    pub resolution: Option<ResolutionView>,
    /// The order it concerns, with its payments and ledger, when the order
    /// exists.
    pub order: Option<OrderView>,
    /// The order's money movements, oldest first.
    pub movements: Vec<MovementView>,
    /// The notifications involved: the item's own, those naming the order
    /// (REFNOEXT) and those in the order's ledger; oldest first.
    pub notifications: Vec<NotificationView>,
}

impl Store {
    /// One review item with its order's payments, ledger and money
    /// movements, and the notifications involved; `None` when there is no
    /// such item.
    pub async fn review_detail(&self, id: i64) -> Result<Option<ReviewDetail>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<ItemRow> = review_items::table
            .left_join(review_resolutions::table)
            .filter(review_items::id.eq(id))
            .select(item_columns())
            .first(&mut conn)
            .await
            .optional()?;
        let Some(item) = with_amounts(&mut conn, row.into_iter().collect(), self.currencies())
            .await?
            .pop()
        else {
            return Ok(None);
        };
        let notification_id: Option<i64> = review_items::table
            .find(id)
            .select(review_items::notification_id)
            .first(&mut conn)
            .await?;
        let group = match (&item.order_ref, item.status.as_str()) {
            (Some(order_ref), "open") => {
                review_items::table
                    .filter(review_items::kind.eq(Stored(item.kind)))
                    .filter(review_items::order_ref.eq(order_ref))
                    .filter(review_items::status.eq("open"))
                    .order(review_items::id.desc())
                    .select(review_items::id)
                    .load(&mut conn)
                    .await?
            }
            _ => vec![item.id],
        };
        let resolution: Option<ResolutionView> = review_resolutions::table
            .filter(review_resolutions::review_item_id.eq(id))
            .select(RESOLUTION_COLUMNS)
            .first(&mut conn)
            .await
            .optional()?;
        let order_id: Option<i64> = match &item.order_ref {
            Some(order_ref) => orders::table
                .filter(orders::order_ref.eq(order_ref))
                .select(orders::id)
                .first(&mut conn)
                .await
                .optional()?,
            None => None,
        };
        let mut movement_rows: Vec<MovementRow> = Vec::new();
        let mut ledger_notifications: Vec<i64> = Vec::new();
        if let Some(order_id) = order_id {
            movement_rows = money_movements::table
                .filter(money_movements::order_id.eq(order_id))
                .order(money_movements::id.asc())
                .select((
                    money_movements::created_at,
                    money_movements::processor_ref,
                    money_movements::kind,
                    money_movements::amount_minor,
                    money_movements::currency,
                    money_movements::notification_id,
                    money_movements::resolution_id,
                ))
                .load(&mut conn)
                .await?;
            ledger_notifications = order_events::table
                .filter(order_events::order_id.eq(order_id))
                .filter(order_events::notification_id.is_not_null())
                .select(order_events::notification_id.assume_not_null())
                .load(&mut conn)
                .await?;
        }
        let mut wanted = ledger_notifications;
        wanted.extend(notification_id);
        let mut query = notifications::table
            .filter(notifications::id.eq_any(wanted))
            .into_boxed();
        if let Some(order_ref) = &item.order_ref {
            query = query.or_filter(notifications::order_ref.eq(order_ref));
        }
        let rows: Vec<NotificationRow> = query
            .order(notifications::id.asc())
            .select((
                notifications::id,
                notifications::received_at,
                notifications::processor_ref,
                notifications::order_ref,
                notifications::order_status,
                notifications::amount_minor,
                notifications::currency,
                notifications::key_id,
                notifications::algorithm,
                notifications::body_sha256,
                notifications::identity,
                notifications::outcome,
                notifications::reason,
                notifications::repeat_of,
            ))
            .load(&mut conn)
            .await?;
        drop(conn);
        let notifications = rows
            .into_iter()
            .map(
                |(
                    id,
                    received_at,
                    processor_ref,
                    order_ref,
                    order_status,
                    minor,
                    currency,
                    key_id,
                    algorithm,
                    body_sha256,
                    identity,
                    Stored(outcome),
                    reason,
                    repeat_of,
                )| NotificationView {
                    id,
                    received_at,
                    processor_ref,
                    order_ref,
                    order_status,
                    amount: minor.zip(currency.as_deref()).map(|(minor, code)| {
                        self.currencies().currency(code).map_or_else(
                            |_| minor.to_string(),
                            |c| Money::from_minor(minor, c).format_amount(),
                        )
                    }),
                    currency,
                    key_id,
                    algorithm,
                    body_sha256,
                    identity,
                    outcome,
                    reason,
                    repeat_of,
                },
            )
            .collect();
        let movements = movement_rows
            .into_iter()
            .map(
                |(
                    at,
                    processor_ref,
                    Stored(kind),
                    minor,
                    currency,
                    notification_id,
                    resolution_id,
                )| {
                    MovementView {
                        at,
                        processor_ref,
                        kind,
                        amount: self.currencies().currency(&currency).map_or_else(
                            |_| minor.to_string(),
                            |c| Money::from_minor(minor, c).format_amount(),
                        ),
                        currency,
                        notification_id,
                        resolution_id,
                    }
                },
            )
            .collect();
        let order = match &item.order_ref {
            Some(order_ref) if order_id.is_some() => self.order(order_ref).await?,
            _ => None,
        };
        Ok(Some(ReviewDetail {
            allowed_actions: allowed_actions(item.kind).to_vec(),
            item,
            group,
            resolution,
            order,
            movements,
            notifications,
        }))
    }

    /// Resolutions so far per action (the `review_resolutions` gauge), in
    /// action order.
    pub async fn resolutions_by_action(&self) -> Result<Vec<(String, i64)>, StoreError> {
        use diesel::dsl::count_star;
        let mut conn = self.conn().await?;
        Ok(review_resolutions::table
            .group_by(review_resolutions::action)
            .select((review_resolutions::action, count_star()))
            .order(review_resolutions::action.asc())
            .load(&mut conn)
            .await?)
    }

    /// The resolution ledger, oldest first (all of it, or one item's).
    pub async fn review_resolutions(
        &self,
        item_id: Option<i64>,
    ) -> Result<Vec<ResolutionView>, StoreError> {
        let mut conn = self.conn().await?;
        let mut query = review_resolutions::table
            .select(RESOLUTION_COLUMNS)
            .order(review_resolutions::id.asc())
            .into_boxed();
        if let Some(id) = item_id {
            query = query.filter(review_resolutions::review_item_id.eq(id));
        }
        Ok(query.load(&mut conn).await?)
    }
}
