//! The processor clearing account, reconciled to the bank: what the
//! settlement and payout files book besides fees (reserves, dispute holds,
//! the processor's adjustments, payouts), and `report clearing`, the
//! account's statement per currency with what explains a balance that is
//! not zero.
//!
//! The statement is computed from the journal's own lines
//! ([`super::journal::journal_movements_in`]) through the posting rules
//! ([`crate::domain::journal::clearing_statements`]), so every movement
//! that posts to clearing counts, whoever adds it. The items that explain
//! the balance are decided in [`crate::domain::clearing`]; here they are
//! read, as of the period's end, in the statement's snapshot.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use super::journal::{JournalMovement, journal_movements_in};
use super::reports::{ReportPeriod, rfc3339};
use super::sql::Stored;
use super::{Store, StoreError};
use crate::domain::clearing::{
    ClearingItem, ClearingItemKind, ClearingLine, PaymentPosition, batch_item, clearing_line,
    payment_items, unmatched_line_item,
};
use crate::domain::journal::{
    MovementKind, clearing_statements, payout_movement, settlement_line_movement,
};
use crate::domain::settlement::LineKind;
use crate::domain::{Currencies, Currency, Money};

#[derive(diesel::QueryableByName)]
struct OtherLineRow {
    #[diesel(sql_type = Timestamptz)]
    at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    occurred: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    batch_id: String,
    #[diesel(sql_type = Text)]
    order_ref: String,
    #[diesel(sql_type = Text)]
    processor_ref: String,
    #[diesel(sql_type = Text)]
    #[diesel(deserialize_as = Stored<LineKind>)]
    kind: LineKind,
    #[diesel(sql_type = BigInt)]
    gross_minor: i64,
    #[diesel(sql_type = Text)]
    currency: String,
}

#[derive(diesel::QueryableByName)]
struct ConversionRow {
    #[diesel(sql_type = Timestamptz)]
    at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    occurred: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    batch_id: String,
    #[diesel(sql_type = Text)]
    order_ref: String,
    #[diesel(sql_type = Text)]
    processor_ref: String,
    #[diesel(sql_type = Text)]
    order_currency: String,
    #[diesel(sql_type = BigInt)]
    out_minor: i64,
    #[diesel(sql_type = Text)]
    line_currency: String,
    #[diesel(sql_type = BigInt)]
    in_minor: i64,
}

#[derive(diesel::QueryableByName)]
struct PayoutRow {
    #[diesel(sql_type = Timestamptz)]
    at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    occurred: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    batch_id: String,
    #[diesel(sql_type = BigInt)]
    amount_minor: i64,
    #[diesel(sql_type = Text)]
    currency: String,
}

fn currency_of(currencies: &Currencies, code: &str) -> Result<Currency, StoreError> {
    currencies
        .currency(code)
        .map_err(|err| StoreError::Invalid(format!("settlement currency: {err}")))
}

/// `at >= $1 AND at < $2`, open bounds infinite.
fn in_period(at: &str) -> String {
    format!(
        "{at} >= coalesce($1, '-infinity'::timestamptz) \
         AND {at} < coalesce($2, 'infinity'::timestamptz)"
    )
}

/// When a payout of `paid_on` is booked: the midnight that begins its day
/// in the time zone bound as `$3`.
const PAYOUT_AT: &str = "(p.paid_on::timestamp AT TIME ZONE $3)";

/// What the settlement and payout files book besides fees, dated in
/// `period`: the gross of every line that settles no payment (`fee`,
/// `adjustment`, `reserve`, `dispute_hold`), each on its own account
/// ([`settlement_line_movement`]), dated by the line; and every payout
/// (bank ← clearing; a negative one the other way), dated at the midnight
/// that begins its day in `zone`.
pub(super) async fn settlement_movements_in(
    conn: &mut AsyncPgConnection,
    period: &ReportPeriod,
    zone: &str,
    currencies: &Currencies,
) -> Result<Vec<JournalMovement>, StoreError> {
    // Booked at the later of their own date and where the open books
    // began when they were imported (books close).
    let line_at = "greatest(l.settled_at, l.books_open_from)";
    let lines: Vec<OtherLineRow> = diesel::sql_query(format!(
        "SELECT {line_at} AS at, l.settled_at AS occurred, l.batch_id, \
                coalesce(o.order_ref, l.order_ref, '') AS order_ref, \
                coalesce(l.processor_ref, '') AS processor_ref, l.kind, l.gross_minor, l.currency \
         FROM settlement_lines AS l LEFT JOIN orders AS o ON o.id = l.order_id \
         WHERE l.status = 'other' AND l.gross_minor <> 0 AND {} \
         ORDER BY 1, l.id",
        in_period(line_at)
    ))
    .bind::<Nullable<Timestamptz>, _>(period.from)
    .bind::<Nullable<Timestamptz>, _>(period.to)
    .load(conn)
    .await?;
    let payout_at = format!("greatest({PAYOUT_AT}, p.books_open_from)");
    let payouts: Vec<PayoutRow> = diesel::sql_query(format!(
        "SELECT {payout_at} AS at, {PAYOUT_AT} AS occurred, p.batch_id, p.amount_minor, \
                p.currency \
         FROM settlement_payouts AS p \
         WHERE p.amount_minor <> 0 AND {} \
         ORDER BY 1, p.id",
        in_period(&payout_at)
    ))
    .bind::<Nullable<Timestamptz>, _>(period.from)
    .bind::<Nullable<Timestamptz>, _>(period.to)
    .bind::<Text, _>(zone)
    .load(conn)
    .await?;
    // Sales settled in another currency: moved between the clearings.
    let conversions: Vec<ConversionRow> = diesel::sql_query(format!(
        "SELECT {line_at} AS at, l.settled_at AS occurred, l.batch_id, o.order_ref, \
                p.processor_ref, o.currency AS order_currency, \
                greatest(p.paid_minor - p.vat_minor, 0)::int8 AS out_minor, \
                l.currency AS line_currency, l.gross_minor AS in_minor \
         FROM settlement_lines AS l \
         JOIN payments AS p ON p.id = l.payment_id \
         JOIN orders AS o ON o.id = p.order_id \
         WHERE l.status = 'matched' AND l.kind = 'sale' AND l.currency <> o.currency \
           AND p.paid_minor > 0 AND {} \
         ORDER BY 1, l.id",
        in_period(line_at)
    ))
    .bind::<Nullable<Timestamptz>, _>(period.from)
    .bind::<Nullable<Timestamptz>, _>(period.to)
    .load(conn)
    .await?;
    let mut moved = Vec::with_capacity(lines.len() + payouts.len() + 2 * conversions.len());
    for c in conversions {
        let sides = [
            (MovementKind::ConversionOut, c.out_minor, &c.order_currency),
            (MovementKind::ConversionIn, c.in_minor, &c.line_currency),
        ];
        for (kind, minor, currency) in sides {
            if minor <= 0 {
                continue;
            }
            moved.push(JournalMovement {
                at: c.at,
                occurred: c.occurred,
                order_ref: c.order_ref.clone(),
                processor_ref: c.processor_ref.clone(),
                kind,
                amount: Money::from_minor(minor, currency_of(currencies, currency)?),
                batch_id: Some(c.batch_id.clone()),
            });
        }
    }
    for line in lines {
        let Some(kind) = settlement_line_movement(line.kind, line.gross_minor) else {
            continue;
        };
        moved.push(JournalMovement {
            at: line.at,
            occurred: line.occurred,
            order_ref: line.order_ref,
            processor_ref: line.processor_ref,
            kind,
            amount: Money::from_minor(
                line.gross_minor.saturating_abs(),
                currency_of(currencies, &line.currency)?,
            ),
            batch_id: Some(line.batch_id),
        });
    }
    for payout in payouts {
        let Some(kind) = payout_movement(payout.amount_minor) else {
            continue;
        };
        moved.push(JournalMovement {
            at: payout.at,
            occurred: payout.occurred,
            order_ref: String::new(),
            processor_ref: String::new(),
            kind,
            amount: Money::from_minor(
                payout.amount_minor.saturating_abs(),
                currency_of(currencies, &payout.currency)?,
            ),
            batch_id: Some(payout.batch_id),
        });
    }
    Ok(moved)
}

/// The clearing account of one currency over a period. Amounts are exact
/// decimal strings, each line the signed effect of its movements on the
/// account (debits positive): `opening + sales + refunds + chargebacks +
/// fees + vat + commission + payouts + adjustments + conversions + write_offs +
/// other =
/// closing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClearingTotals {
    pub currency: String,
    pub opening: String,
    pub sales: String,
    pub refunds: String,
    pub chargebacks: String,
    pub fees: String,
    pub vat: String,
    pub commission: String,
    pub payouts: String,
    pub adjustments: String,
    pub conversions: String,
    pub write_offs: String,
    pub other: String,
    pub closing: String,
    /// The sum of the effects of this currency's items.
    pub explained: String,
    /// `closing − explained`: what no item accounts for (a fee of a
    /// payment not settled yet, a write-off, a conversion).
    pub unexplained: String,
    /// The effect of each movement kind, for those who book them apart.
    pub movements: Vec<ClearingMovement>,
    /// The figures in minor units, for code (not exported).
    #[serde(skip)]
    pub minor: ClearingMinor,
}

/// One movement kind's effect on clearing in a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClearingMovement {
    pub movement: MovementKind,
    pub amount: String,
}

/// [`ClearingTotals`] in minor units.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClearingMinor {
    pub opening: i64,
    pub lines: BTreeMap<ClearingLine, i64>,
    pub closing: i64,
    pub explained: i64,
}

/// One item that explains part of a closing balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClearingItemView {
    pub kind: ClearingItemKind,
    pub currency: String,
    pub order_ref: Option<String>,
    pub processor_ref: Option<String>,
    pub batch_id: Option<String>,
    /// When: the payment's movement, the line's settlement, the batch's
    /// last line.
    #[serde(serialize_with = "rfc3339::option")]
    pub at: Option<DateTime<Utc>>,
    /// What it is about, positive.
    pub amount: String,
    /// Its effect on the closing balance, signed.
    pub effect: String,
    /// The open review item about it, when there is one.
    pub review_item_id: Option<i64>,
    /// The effect in minor units, for code (not exported).
    #[serde(skip)]
    pub effect_minor: i64,
}

/// `report clearing`: the statement of each currency of the clearing
/// account, and the items that explain its closing balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClearingReport {
    pub period: ReportPeriod,
    /// The time zone payouts are dated in.
    pub timezone: String,
    pub currencies: Vec<ClearingTotals>,
    pub items: Vec<ClearingItemView>,
}

#[derive(diesel::QueryableByName)]
struct PositionRow {
    #[diesel(sql_type = Text)]
    order_ref: String,
    #[diesel(sql_type = Text)]
    processor_ref: String,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    at: Option<DateTime<Utc>>,
    #[diesel(sql_type = BigInt)]
    paid: i64,
    #[diesel(sql_type = BigInt)]
    refunded: i64,
    #[diesel(sql_type = BigInt)]
    taken_back: i64,
    #[diesel(sql_type = BigInt)]
    vat: i64,
    #[diesel(sql_type = BigInt)]
    commission: i64,
    #[diesel(sql_type = BigInt)]
    sales: i64,
    #[diesel(sql_type = BigInt)]
    sales_elsewhere: i64,
    #[diesel(sql_type = BigInt)]
    refunds_debited: i64,
    #[diesel(sql_type = BigInt)]
    taken_back_debited: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    review_item_id: Option<i64>,
}

#[derive(diesel::QueryableByName)]
struct UnmatchedRow {
    #[diesel(sql_type = Text)]
    batch_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    order_ref: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    processor_ref: Option<String>,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = Timestamptz)]
    at: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    gross_minor: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    review_item_id: Option<i64>,
}

#[derive(diesel::QueryableByName)]
struct BatchRow {
    #[diesel(sql_type = Text)]
    batch_id: String,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    at: Option<DateTime<Utc>>,
    #[diesel(sql_type = BigInt)]
    net: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    payout: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    review_item_id: Option<i64>,
}

/// The payments' positions as of `$1` (the period's end): the ledger's
/// movements dated before it, and the matched lines settled before it.
const POSITIONS_SQL: &str = "\
WITH mv AS ( \
    SELECT m.order_id, m.processor_ref, \
           coalesce(sum(m.amount_minor) FILTER (WHERE m.kind = 'payment'), 0)::int8 AS paid, \
           coalesce(sum(m.amount_minor) FILTER (WHERE m.kind = 'refund'), 0)::int8 AS refunded, \
           (coalesce(sum(m.amount_minor) FILTER (WHERE m.kind IN ('chargeback', 'reversal')), 0) \
            - coalesce(sum(m.amount_minor) FILTER (WHERE m.kind = 'chargeback_reversal'), 0))::int8 \
               AS taken_back, \
           (coalesce(sum(m.amount_minor) FILTER (WHERE m.kind = 'vat'), 0) \
            - coalesce(sum(m.amount_minor) FILTER (WHERE m.kind = 'vat_refund'), 0))::int8 AS vat, \
           (coalesce(sum(m.amount_minor) FILTER (WHERE m.kind = 'commission'), 0) \
            - coalesce(sum(m.amount_minor) FILTER (WHERE m.kind = 'commission_refund'), 0))::int8 \
               AS commission, \
           min(m.booked_at) FILTER (WHERE m.kind = 'payment') AS at \
    FROM money_movements AS m \
    WHERE m.booked_at < coalesce($1, 'infinity'::timestamptz) \
    GROUP BY m.order_id, m.processor_ref), \
ls AS ( \
    SELECT l.payment_id, \
           count(*) FILTER (WHERE l.kind = 'sale' AND l.currency = o.currency)::int8 AS sales, \
           count(*) FILTER (WHERE l.kind = 'sale' AND l.currency <> o.currency)::int8 \
               AS sales_elsewhere, \
           coalesce(sum(-l.gross_minor) FILTER ( \
               WHERE l.kind = 'refund' AND l.currency = o.currency), 0)::int8 AS refunds_debited, \
           coalesce(sum(-l.gross_minor) FILTER ( \
               WHERE l.kind IN ('chargeback', 'reversal') AND l.currency = o.currency), 0)::int8 \
               AS taken_back_debited \
    FROM settlement_lines AS l JOIN orders AS o ON o.id = l.order_id \
    WHERE l.status = 'matched' AND l.settled_at < coalesce($1, 'infinity'::timestamptz) \
    GROUP BY l.payment_id) \
SELECT o.order_ref, mv.processor_ref, o.currency, mv.at, mv.paid, mv.refunded, mv.taken_back, \
       mv.vat, mv.commission, \
       coalesce(ls.sales, 0)::int8 AS sales, coalesce(ls.sales_elsewhere, 0)::int8 AS sales_elsewhere, \
       coalesce(ls.refunds_debited, 0)::int8 AS refunds_debited, \
       coalesce(ls.taken_back_debited, 0)::int8 AS taken_back_debited, \
       (SELECT min(r.id) FROM review_items AS r \
        WHERE r.status = 'open' AND r.order_ref = o.order_ref \
          AND r.processor_ref = mv.processor_ref) AS review_item_id \
FROM mv JOIN orders AS o ON o.id = mv.order_id \
LEFT JOIN payments AS p ON p.order_id = mv.order_id AND p.processor_ref = mv.processor_ref \
LEFT JOIN ls ON ls.payment_id = p.id \
WHERE mv.paid <> 0 OR mv.refunded <> 0 OR mv.taken_back <> 0 \
ORDER BY mv.at NULLS LAST, o.order_ref, mv.processor_ref";

/// Lines that differ from their payment or that no payment has, settled
/// before `$1`.
const UNMATCHED_SQL: &str = "\
SELECT l.batch_id, coalesce(o.order_ref, l.order_ref) AS order_ref, l.processor_ref, l.currency, \
       l.settled_at AS at, l.gross_minor, l.review_item_id \
FROM settlement_lines AS l LEFT JOIN orders AS o ON o.id = l.order_id \
WHERE l.status IN ('differs', 'unknown') AND l.settled_at < coalesce($1, 'infinity'::timestamptz) \
ORDER BY l.settled_at, l.id";

/// Per batch and currency: the net of its lines settled before `$1`, and
/// its payout when paid on a day that begins (in the zone `$2`) before it.
const BATCHES_SQL: &str = "\
WITH b AS ( \
    SELECT batch_id, currency, sum(net_minor)::int8 AS net, max(settled_at) AS at \
    FROM settlement_lines WHERE settled_at < coalesce($1, 'infinity'::timestamptz) \
    GROUP BY batch_id, currency), \
p AS ( \
    SELECT batch_id, currency, amount_minor, review_item_id, \
           (paid_on::timestamp AT TIME ZONE $2) AS at \
    FROM settlement_payouts \
    WHERE (paid_on::timestamp AT TIME ZONE $2) < coalesce($1, 'infinity'::timestamptz)) \
SELECT coalesce(b.batch_id, p.batch_id) AS batch_id, coalesce(b.currency, p.currency) AS currency, \
       coalesce(b.at, p.at) AS at, coalesce(b.net, 0)::int8 AS net, p.amount_minor AS payout, \
       p.review_item_id \
FROM b FULL JOIN p ON p.batch_id = b.batch_id AND p.currency = b.currency \
ORDER BY 3, 1, 2";

/// The items that explain the clearing balances at `to`, oldest first
/// within each kind.
async fn items_at(
    conn: &mut AsyncPgConnection,
    to: Option<DateTime<Utc>>,
    zone: &str,
    currencies: &Currencies,
) -> Result<Vec<(Currency, ClearingItemView)>, StoreError> {
    let mut items = Vec::new();
    let view = |currency: Currency,
                item: ClearingItem,
                order_ref: Option<String>,
                processor_ref: Option<String>,
                batch_id: Option<String>,
                at: Option<DateTime<Utc>>,
                review_item_id: Option<i64>| {
        (
            currency,
            ClearingItemView {
                kind: item.kind,
                currency: currency.as_str().to_owned(),
                order_ref,
                processor_ref,
                batch_id,
                at,
                amount: Money::from_minor(item.amount, currency).format_amount(),
                effect: Money::from_minor(item.effect, currency).format_amount(),
                review_item_id,
                effect_minor: item.effect,
            },
        )
    };
    let positions: Vec<PositionRow> = diesel::sql_query(POSITIONS_SQL)
        .bind::<Nullable<Timestamptz>, _>(to)
        .load(conn)
        .await?;
    for row in positions {
        let currency = currency_of(currencies, &row.currency)?;
        let position = PaymentPosition {
            paid: row.paid,
            refunded: row.refunded,
            taken_back: row.taken_back,
            vat: row.vat,
            commission: row.commission,
            sales: row.sales,
            sales_elsewhere: row.sales_elsewhere,
            refunds_debited: row.refunds_debited,
            taken_back_debited: row.taken_back_debited,
        };
        for item in payment_items(&position) {
            items.push(view(
                currency,
                item,
                Some(row.order_ref.clone()),
                Some(row.processor_ref.clone()),
                None,
                row.at,
                row.review_item_id,
            ));
        }
    }
    let unmatched: Vec<UnmatchedRow> = diesel::sql_query(UNMATCHED_SQL)
        .bind::<Nullable<Timestamptz>, _>(to)
        .load(conn)
        .await?;
    for row in unmatched {
        let currency = currency_of(currencies, &row.currency)?;
        if let Some(item) = unmatched_line_item(row.gross_minor) {
            items.push(view(
                currency,
                item,
                row.order_ref,
                row.processor_ref,
                Some(row.batch_id),
                Some(row.at),
                row.review_item_id,
            ));
        }
    }
    let batches: Vec<BatchRow> = diesel::sql_query(BATCHES_SQL)
        .bind::<Nullable<Timestamptz>, _>(to)
        .bind::<Text, _>(zone)
        .load(conn)
        .await?;
    for row in batches {
        let currency = currency_of(currencies, &row.currency)?;
        if let Some(item) = batch_item(row.net, row.payout) {
            items.push(view(
                currency,
                item,
                None,
                None,
                Some(row.batch_id),
                row.at,
                row.review_item_id,
            ));
        }
    }
    Ok(items)
}

impl Store {
    /// `report clearing`: per currency, the clearing account's balance at
    /// the period's start, the effect of each kind of movement in it
    /// (from the journal's lines: [`Store::journal_movements_zoned`]),
    /// its balance at the end, and the items that explain that balance
    /// ([`crate::domain::clearing`]). Payouts are dated in `zone` (an IANA
    /// name). Read in one snapshot.
    pub async fn clearing_report(
        &self,
        period: &ReportPeriod,
        zone: &str,
    ) -> Result<ClearingReport, StoreError> {
        let period = *period;
        let currencies = self.currencies();
        let mut conn = self.conn().await?;
        let (moved, items) = conn
            .build_transaction()
            .read_only()
            .repeatable_read()
            .run::<_, StoreError, _>(async |conn| {
                let until = ReportPeriod {
                    from: None,
                    ..period
                };
                let moved = journal_movements_in(conn, &until, zone, currencies).await?;
                let items = items_at(conn, period.to, zone, currencies).await?;
                Ok((moved, items))
            })
            .await?;
        let (before, during): (Vec<_>, Vec<_>) = moved
            .iter()
            .partition(|m| period.from.is_some_and(|from| m.at < from));
        let statements = clearing_statements(
            before.iter().map(|m| (m.kind, m.amount)),
            during.iter().map(|m| (m.kind, m.amount)),
        );
        let mut explained: BTreeMap<Currency, i64> = BTreeMap::new();
        for (currency, item) in &items {
            let sum = explained.entry(*currency).or_default();
            *sum = sum.saturating_add(item.effect_minor);
        }
        let mut codes: Vec<Currency> = statements.keys().copied().collect();
        codes.extend(explained.keys().copied());
        codes.sort();
        codes.dedup();
        let totals = codes
            .into_iter()
            .map(|currency| {
                let statement = statements.get(&currency).cloned().unwrap_or_default();
                let money = |minor: i64| Money::from_minor(minor, currency).format_amount();
                let mut lines: BTreeMap<ClearingLine, i64> =
                    ClearingLine::ALL.iter().map(|l| (*l, 0)).collect();
                for (kind, effect) in &statement.by_kind {
                    let line = lines.entry(clearing_line(*kind)).or_default();
                    *line = line.saturating_add(*effect);
                }
                let line = |which: ClearingLine| money(lines.get(&which).copied().unwrap_or(0));
                let explained = explained.get(&currency).copied().unwrap_or(0);
                ClearingTotals {
                    currency: currency.as_str().to_owned(),
                    opening: money(statement.opening),
                    sales: line(ClearingLine::Sales),
                    refunds: line(ClearingLine::Refunds),
                    chargebacks: line(ClearingLine::Chargebacks),
                    fees: line(ClearingLine::Fees),
                    vat: line(ClearingLine::Vat),
                    commission: line(ClearingLine::Commission),
                    payouts: line(ClearingLine::Payouts),
                    adjustments: line(ClearingLine::Adjustments),
                    conversions: line(ClearingLine::Conversions),
                    write_offs: line(ClearingLine::WriteOffs),
                    other: line(ClearingLine::Other),
                    closing: money(statement.closing),
                    explained: money(explained),
                    unexplained: money(statement.closing.saturating_sub(explained)),
                    movements: statement
                        .by_kind
                        .iter()
                        .map(|(kind, effect)| ClearingMovement {
                            movement: *kind,
                            amount: money(*effect),
                        })
                        .collect(),
                    minor: ClearingMinor {
                        opening: statement.opening,
                        lines,
                        closing: statement.closing,
                        explained,
                    },
                }
            })
            .collect();
        Ok(ClearingReport {
            period,
            timezone: zone.to_owned(),
            currencies: totals,
            items: items.into_iter().map(|(_, item)| item).collect(),
        })
    }
}
