//! The payout side of the books: the payout the processor's notices
//! expect per payout currency (`Σ PAYABLE_AMOUNT`), beside what the
//! imported payout files say; and the provisional commission that a
//! settlement line's fee replaced (`commission_settled` movements).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::StoreError;
use super::journal::JournalMovement;
use super::reports::{PayoutTotals, ReportBasis, ReportPeriod};
use crate::domain::journal::MovementKind;
use crate::domain::{Currencies, Currency, Money};

#[derive(diesel::QueryableByName)]
struct PayoutRow {
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    expected: i64,
    #[diesel(sql_type = BigInt)]
    settled: i64,
}

/// Per payout currency, the payout the counted payments, refunds and
/// chargebacks expect (`PAYABLE_AMOUNT` of the capture, once paid, of its
/// refunds, and of its chargeback once charged back and while not won
/// (a won dispute gives the payout back); negative values
/// included) and the payouts imported.
///
/// By `created`: the payments of orders created in the period. By
/// `event`: a payment's capture payable when its `payment` movement is in
/// the period, its refunds' when a `refund` movement of it is (the last
/// one), its chargeback's when its `chargeback` movement is. Payout files
/// count by the day they were paid on.
pub(super) async fn payout_totals(
    conn: &mut AsyncPgConnection,
    period: &ReportPeriod,
    currencies: &Currencies,
) -> Result<Vec<PayoutTotals>, StoreError> {
    let expected_sql = match period.by {
        ReportBasis::Created => {
            "SELECT c.currency, sum(c.minor)::int8 AS minor FROM ( \
                 SELECT p.payout_currency AS currency, p.payable_minor AS minor \
                 FROM payments AS p JOIN orders AS o ON o.id = p.order_id \
                 WHERE p.paid_minor > 0 AND p.payable_minor IS NOT NULL \
                   AND o.created_at >= coalesce($1, '-infinity'::timestamptz) \
                   AND o.created_at < coalesce($2, 'infinity'::timestamptz) \
                 UNION ALL \
                 SELECT p.refunded_payout_currency, p.refunded_payable_minor \
                 FROM payments AS p JOIN orders AS o ON o.id = p.order_id \
                 WHERE p.paid_minor > 0 AND p.refunded_payable_minor IS NOT NULL \
                   AND o.created_at >= coalesce($1, '-infinity'::timestamptz) \
                   AND o.created_at < coalesce($2, 'infinity'::timestamptz) \
                 UNION ALL \
                 SELECT p.charged_back_payout_currency, p.charged_back_payable_minor \
                 FROM payments AS p JOIN orders AS o ON o.id = p.order_id \
                 WHERE p.chargeback_minor IS NOT NULL AND NOT p.dispute_won \
                   AND p.charged_back_payable_minor IS NOT NULL \
                   AND o.created_at >= coalesce($1, '-infinity'::timestamptz) \
                   AND o.created_at < coalesce($2, 'infinity'::timestamptz)) AS c \
             GROUP BY c.currency"
        }
        ReportBasis::Event | ReportBasis::Settled => {
            "SELECT c.currency, sum(c.minor)::int8 AS minor FROM ( \
                 SELECT p.payout_currency AS currency, p.payable_minor AS minor \
                 FROM payments AS p \
                 WHERE p.paid_minor > 0 AND p.payable_minor IS NOT NULL AND EXISTS ( \
                     SELECT 1 FROM money_movements AS m \
                     WHERE m.order_id = p.order_id AND m.processor_ref = p.processor_ref \
                       AND m.kind = 'payment' \
                       AND m.booked_at >= coalesce($1, '-infinity'::timestamptz) \
                       AND m.booked_at < coalesce($2, 'infinity'::timestamptz)) \
                 UNION ALL \
                 SELECT p.refunded_payout_currency, p.refunded_payable_minor \
                 FROM payments AS p \
                 WHERE p.paid_minor > 0 AND p.refunded_payable_minor IS NOT NULL AND ( \
                     SELECT max(m.booked_at) FROM money_movements AS m \
                     WHERE m.order_id = p.order_id AND m.processor_ref = p.processor_ref \
                       AND m.kind = 'refund') \
                     >= coalesce($1, '-infinity'::timestamptz) AND ( \
                     SELECT max(m.booked_at) FROM money_movements AS m \
                     WHERE m.order_id = p.order_id AND m.processor_ref = p.processor_ref \
                       AND m.kind = 'refund') \
                     < coalesce($2, 'infinity'::timestamptz) \
                 UNION ALL \
                 SELECT p.charged_back_payout_currency, p.charged_back_payable_minor \
                 FROM payments AS p \
                 WHERE p.chargeback_minor IS NOT NULL AND NOT p.dispute_won \
                   AND p.charged_back_payable_minor IS NOT NULL AND EXISTS ( \
                     SELECT 1 FROM money_movements AS m \
                     WHERE m.order_id = p.order_id AND m.processor_ref = p.processor_ref \
                       AND m.kind = 'chargeback' \
                       AND m.booked_at >= coalesce($1, '-infinity'::timestamptz) \
                       AND m.booked_at < coalesce($2, 'infinity'::timestamptz))) AS c \
             GROUP BY c.currency"
        }
    };
    let sql = format!(
        "WITH expected AS ({expected_sql}), \
         settled AS ( \
             SELECT currency, sum(amount_minor)::int8 AS minor FROM settlement_payouts \
             WHERE paid_on >= coalesce($1, '-infinity'::timestamptz)::date \
               AND paid_on < coalesce($2, 'infinity'::timestamptz)::date \
             GROUP BY currency) \
         SELECT currency, coalesce(expected.minor, 0)::int8 AS expected, \
                coalesce(settled.minor, 0)::int8 AS settled \
         FROM expected FULL JOIN settled USING (currency) ORDER BY currency"
    );
    let rows: Vec<PayoutRow> = diesel::sql_query(sql)
        .bind::<Nullable<Timestamptz>, _>(period.from)
        .bind::<Nullable<Timestamptz>, _>(period.to)
        .load(conn)
        .await?;
    let mut totals: BTreeMap<Currency, (i64, i64)> = BTreeMap::new();
    for row in rows {
        let currency = currencies
            .currency(&row.currency)
            .map_err(|err| StoreError::Invalid(format!("payout currency: {err}")))?;
        totals.insert(currency, (row.expected, row.settled));
    }
    Ok(totals
        .into_iter()
        .map(|(currency, (expected, settled))| PayoutTotals {
            currency: currency.as_str().to_owned(),
            expected: Money::from_minor(expected, currency).format_amount(),
            settled: Money::from_minor(settled, currency).format_amount(),
        })
        .collect())
}

#[derive(diesel::QueryableByName)]
struct ReleasedRow {
    #[diesel(sql_type = Timestamptz)]
    occurred: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    booked: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    batch_id: String,
    #[diesel(sql_type = Text)]
    order_ref: String,
    #[diesel(sql_type = Text)]
    processor_ref: String,
    #[diesel(sql_type = BigInt)]
    commission_minor: i64,
    #[diesel(sql_type = Text)]
    currency: String,
}

/// The provisional commission that settlement fees replaced: for each
/// payment with a commission and a matched settlement line that carries a
/// fee, one `commission_settled` movement of what is left of the
/// payment's (rounded) commission once refunds and a chargeback gave
/// their part back (those parts were released by their own
/// `commission_refund` movements: releasing the whole commission again
/// would leave the commission account, and clearing, off by them),
/// dated as the first such line's fee is
/// ([`super::settlement::line_dates`]). Counted by that date (`event`,
/// `settled`) or the order's creation (`created`), as the fees are.
pub(super) async fn commission_settled_in(
    conn: &mut AsyncPgConnection,
    period: &ReportPeriod,
    currencies: &Currencies,
) -> Result<Vec<JournalMovement>, StoreError> {
    let at = if period.by.by_movement() {
        "r.booked"
    } else {
        "r.created_at"
    };
    let (occurred, booked) = super::settlement::line_dates(period.by);
    let sale = super::settlement::LINE_SALE;
    let rows: Vec<ReleasedRow> = diesel::sql_query(format!(
        "SELECT r.occurred, r.booked, r.batch_id, r.order_ref, r.processor_ref, \
                r.commission_minor, r.currency \
         FROM ( \
             SELECT DISTINCT ON (p.id) {occurred} AS occurred, {booked} AS booked, \
                    l.batch_id, o.created_at, o.order_ref, p.processor_ref, \
                    greatest(p.commission_minor - p.refunded_commission_minor \
                             - CASE WHEN p.reversed THEN p.charged_back_commission_minor \
                                    ELSE 0 END, 0)::int8 AS commission_minor, \
                    o.currency \
             FROM settlement_lines AS l \
             JOIN payments AS p ON p.id = l.payment_id \
             JOIN orders AS o ON o.id = p.order_id \
             {sale} \
             WHERE l.status = 'matched' AND l.fee_minor > 0 AND p.paid_minor > 0 \
               AND p.commission_minor > 0 \
             ORDER BY p.id, l.settled_at, l.id) AS r \
         WHERE r.commission_minor > 0 \
           AND {at} >= coalesce($1, '-infinity'::timestamptz) \
           AND {at} < coalesce($2, 'infinity'::timestamptz) \
         ORDER BY r.booked"
    ))
    .bind::<Nullable<Timestamptz>, _>(period.from)
    .bind::<Nullable<Timestamptz>, _>(period.to)
    .load(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            let currency = currencies
                .currency(&r.currency)
                .map_err(|err| StoreError::Invalid(format!("order currency: {err}")))?;
            Ok(JournalMovement {
                at: r.booked,
                occurred: r.occurred,
                order_ref: r.order_ref,
                processor_ref: r.processor_ref,
                kind: MovementKind::CommissionSettled,
                amount: Money::from_minor(r.commission_minor, currency),
                batch_id: Some(r.batch_id),
            })
        })
        .collect()
}
