//! Settlement lines and payouts: the reads and writes of an import, and
//! the reports per batch.
//!
//! An import is a workflow, [`crate::services::settlement::import`]: in
//! one transaction it takes the imports' advisory lock ([`lock_imports`],
//! so two imports of overlapping files run one after the other instead of
//! both judging the same line new), loads which lines were imported before
//! ([`imported_line_keys`]), the ledger's payments the new lines name
//! ([`ledger_payments`]) and what earlier lines settled of them
//! ([`settled_so_far`]), lets [`crate::domain::settlement`] decide, and
//! writes the lines (append-only, with how they compared:
//! [`insert_lines`]), the payouts ([`insert_payout`]) and the review items
//! their differences open ([`open_item`]). Here are those repository
//! functions, each on the caller's connection, and the reports.

use super::sql::Stored;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Date, Int4, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use super::journal::JournalMovement;
use super::reports::{ReportBasis, ReportPeriod, rfc3339};
use super::schema::{review_items, settlement_lines, settlement_payouts};
use super::{Store, StoreError};
use crate::domain::journal::MovementKind;
use crate::domain::settlement::{
    Finding, LedgerPayment, LineKind, LineMatch, LineStatus, MatchedBy, Payout, Settled,
    SettlementLine,
};
use crate::domain::{Currencies, Currency, Money};

/// The advisory lock key of settlement imports (`ipn-settle` in ASCII).
pub const IMPORT_LOCK: i64 = 0x69706e2d736574;

#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = Text)]
    batch_id: String,
    #[diesel(sql_type = Text)]
    line_key: String,
    #[diesel(sql_type = Int4)]
    occurrence: i32,
}

#[derive(QueryableByName)]
struct PaymentRow {
    #[diesel(sql_type = BigInt)]
    payment_id: i64,
    #[diesel(sql_type = BigInt)]
    order_id: i64,
    #[diesel(sql_type = Text)]
    order_ref: String,
    #[diesel(sql_type = Text)]
    processor_ref: String,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    paid: i64,
    #[diesel(sql_type = BigInt)]
    refunded: i64,
    #[diesel(sql_type = BigInt)]
    charged_back: i64,
    #[diesel(sql_type = BigInt)]
    reinstated: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    commission: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    payable_minor: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    payout_currency: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    refunded_payable_minor: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    refunded_payout_currency: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    charged_back_payable_minor: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    charged_back_payout_currency: Option<String>,
}

#[derive(QueryableByName)]
struct SettledRow {
    #[diesel(sql_type = BigInt)]
    payment_id: i64,
    #[diesel(sql_type = Text)]
    #[diesel(deserialize_as = Stored<LineKind>)]
    kind: LineKind,
    /// Whether the lines are in the payment's payout currency (another
    /// than its order currency).
    #[diesel(sql_type = diesel::sql_types::Bool)]
    in_payout: bool,
    /// Whether the lines credit money (a positive chargeback or reversal
    /// line reinstates a chargeback).
    #[diesel(sql_type = diesel::sql_types::Bool)]
    credit: bool,
    #[diesel(sql_type = BigInt)]
    amount: i64,
    #[diesel(sql_type = BigInt)]
    net: i64,
    #[diesel(sql_type = BigInt)]
    lines: i64,
}

#[derive(QueryableByName)]
struct NetRow {
    #[diesel(sql_type = BigInt)]
    lines: i64,
    #[diesel(sql_type = BigInt)]
    net: i64,
}

/// How many ids or references go in one query.
const CHUNK: usize = 2_000;

/// Takes the imports' advisory lock for the caller's transaction
/// (`pg_advisory_xact_lock`: waits for another import to end).
pub async fn lock_imports(conn: &mut AsyncPgConnection) -> Result<(), StoreError> {
    diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
        .bind::<BigInt, _>(IMPORT_LOCK)
        .execute(conn)
        .await?;
    Ok(())
}

/// The lines imported before into `batches`: (batch, line key, copy).
pub async fn imported_line_keys(
    conn: &mut AsyncPgConnection,
    batches: &[String],
) -> Result<HashSet<(String, String, i32)>, StoreError> {
    let mut known: HashSet<(String, String, i32)> = HashSet::new();
    for chunk in batches.chunks(CHUNK) {
        let rows: Vec<KeyRow> = diesel::sql_query(
            "SELECT batch_id, line_key, occurrence FROM settlement_lines \
             WHERE batch_id = ANY($1)",
        )
        .bind::<Array<Text>, _>(chunk)
        .load(conn)
        .await?;
        known.extend(
            rows.into_iter()
                .map(|r| (r.batch_id, r.line_key, r.occurrence)),
        );
    }
    Ok(known)
}

/// The ledger's payments under the processor references `refnos` or of
/// the orders `order_refs`, by payment id.
pub async fn ledger_payments(
    conn: &mut AsyncPgConnection,
    refnos: &[String],
    order_refs: &[String],
    currencies: &Currencies,
) -> Result<HashMap<i64, LedgerPayment>, StoreError> {
    let mut payments: HashMap<i64, LedgerPayment> = HashMap::new();
    for (column, values) in [("p.processor_ref", refnos), ("o.order_ref", order_refs)] {
        for chunk in values.chunks(CHUNK) {
            let rows: Vec<PaymentRow> = diesel::sql_query(format!(
                "SELECT p.id AS payment_id, p.order_id, o.order_ref, p.processor_ref, o.currency, \
                        p.paid_minor AS paid, \
                        CASE WHEN p.paid_minor > 0 THEN p.refunded_minor ELSE 0 END AS refunded, \
                        coalesce(p.chargeback_minor, 0) AS charged_back, \
                        p.reinstated_minor AS reinstated, \
                        CASE WHEN p.commission_e8 > 0 THEN p.commission_minor END AS commission, \
                        CASE WHEN p.paid_minor > 0 THEN p.payable_minor END AS payable_minor, \
                        CASE WHEN p.paid_minor > 0 THEN p.payout_currency END AS payout_currency, \
                        CASE WHEN p.paid_minor > 0 THEN p.refunded_payable_minor END \
                            AS refunded_payable_minor, \
                        CASE WHEN p.paid_minor > 0 THEN p.refunded_payout_currency END \
                            AS refunded_payout_currency, \
                        CASE WHEN p.chargeback_minor IS NOT NULL \
                             THEN p.charged_back_payable_minor END AS charged_back_payable_minor, \
                        CASE WHEN p.chargeback_minor IS NOT NULL \
                             THEN p.charged_back_payout_currency END \
                            AS charged_back_payout_currency \
                 FROM payments AS p JOIN orders AS o ON o.id = p.order_id \
                 WHERE {column} = ANY($1)"
            ))
            .bind::<Array<Text>, _>(chunk)
            .load(conn)
            .await?;
            for row in rows {
                let currency = currencies
                    .currency(&row.currency)
                    .map_err(|err| StoreError::Invalid(format!("order currency: {err}")))?;
                let payout = |minor: Option<i64>, code: Option<&str>| -> Result<_, StoreError> {
                    match (minor, code) {
                        (Some(minor), Some(code)) => {
                            let code = currencies.currency(code).map_err(|err| {
                                StoreError::Invalid(format!("payout currency: {err}"))
                            })?;
                            Ok(Some(Money::from_minor(minor, code)))
                        }
                        _ => Ok(None),
                    }
                };
                let payable = payout(row.payable_minor, row.payout_currency.as_deref())?;
                let refunded_payable = payout(
                    row.refunded_payable_minor,
                    row.refunded_payout_currency.as_deref(),
                )?;
                let charged_back_payable = payout(
                    row.charged_back_payable_minor,
                    row.charged_back_payout_currency.as_deref(),
                )?;
                payments.insert(
                    row.payment_id,
                    LedgerPayment {
                        payment_id: row.payment_id,
                        order_id: row.order_id,
                        order_ref: row.order_ref,
                        processor_ref: row.processor_ref,
                        currency,
                        paid: row.paid,
                        refunded: row.refunded,
                        charged_back: row.charged_back,
                        reinstated: row.reinstated,
                        commission: row.commission,
                        payable,
                        refunded_payable,
                        charged_back_payable,
                    },
                );
            }
        }
    }
    Ok(payments)
}

/// What matched lines imported before settled of the payments `ids`.
pub async fn settled_so_far(
    conn: &mut AsyncPgConnection,
    ids: &[i64],
) -> Result<HashMap<i64, Settled>, StoreError> {
    let mut settled: HashMap<i64, Settled> = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        let rows: Vec<SettledRow> = diesel::sql_query(
            "SELECT l.payment_id, l.kind, l.currency <> o.currency AS in_payout, \
                    l.gross_minor > 0 AS credit, \
                    sum(abs(l.gross_minor))::int8 AS amount, \
                    sum(abs(l.net_minor))::int8 AS net, count(*)::int8 AS lines \
             FROM settlement_lines AS l \
             JOIN payments AS p ON p.id = l.payment_id \
             JOIN orders AS o ON o.id = p.order_id \
             WHERE l.status = 'matched' AND l.payment_id = ANY($1) \
             GROUP BY l.payment_id, l.kind, l.currency <> o.currency, l.gross_minor > 0",
        )
        .bind::<Array<BigInt>, _>(chunk)
        .load(conn)
        .await?;
        for row in rows {
            let entry = settled.entry(row.payment_id).or_default();
            // Lines in the payout currency count by their net, apart
            // (see `domain::settlement::classify`).
            match row.kind {
                LineKind::Sale => {
                    if !row.in_payout {
                        entry.sold += row.amount;
                    }
                    entry.sales += u32::try_from(row.lines).unwrap_or(u32::MAX);
                }
                LineKind::Refund if row.in_payout => entry.refunded_payout += row.net,
                LineKind::Refund => entry.refunded += row.amount,
                LineKind::Chargeback | LineKind::Reversal if row.credit => {
                    entry.credited_back += row.amount;
                }
                LineKind::Chargeback | LineKind::Reversal if row.in_payout => {
                    entry.taken_back_payout += row.net;
                }
                LineKind::Chargeback | LineKind::Reversal => entry.taken_back += row.amount,
                LineKind::Fee
                | LineKind::Adjustment
                | LineKind::Reserve
                | LineKind::DisputeHold => {}
            }
        }
    }
    Ok(settled)
}

/// A settlement line to write: the line, its key, how it compared, and
/// the review item it opened.
#[derive(Debug, Clone, Copy)]
pub struct NewLine<'a> {
    pub line: &'a SettlementLine,
    pub key: &'a str,
    pub matched: &'a LineMatch,
    pub review_item: Option<i64>,
}

/// Writes `lines` (append-only) in one statement.
pub async fn insert_lines(
    conn: &mut AsyncPgConnection,
    lines: &[NewLine<'_>],
) -> Result<(), StoreError> {
    let rows: Vec<LineRow> = lines
        .iter()
        .map(|l| line_row(l.line, l.key, l.matched, l.review_item))
        .collect();
    diesel::insert_into(settlement_lines::table)
        .values(&rows)
        .execute(conn)
        .await?;
    Ok(())
}

/// A payout as imported before: its amount (minor units) and day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub struct StoredPayout {
    #[diesel(sql_type = BigInt)]
    pub amount_minor: i64,
    #[diesel(sql_type = Date)]
    pub paid_on: NaiveDate,
}

/// The payout of batch `batch_id` in `currency` imported before, if any.
pub async fn payout_of(
    conn: &mut AsyncPgConnection,
    batch_id: &str,
    currency: Currency,
) -> Result<Option<StoredPayout>, StoreError> {
    Ok(diesel::sql_query(
        "SELECT amount_minor, paid_on FROM settlement_payouts \
         WHERE batch_id = $1 AND currency = $2",
    )
    .bind::<Text, _>(batch_id)
    .bind::<Text, _>(currency.as_str())
    .get_result(conn)
    .await
    .optional()?)
}

/// The lines of batch `batch_id` in `currency` stored so far: how many,
/// and their net (minor units).
pub async fn batch_net(
    conn: &mut AsyncPgConnection,
    batch_id: &str,
    currency: Currency,
) -> Result<(i64, i64), StoreError> {
    let stored: NetRow = diesel::sql_query(
        "SELECT count(*)::int8 AS lines, coalesce(sum(net_minor), 0)::int8 AS net \
         FROM settlement_lines WHERE batch_id = $1 AND currency = $2",
    )
    .bind::<Text, _>(batch_id)
    .bind::<Text, _>(currency.as_str())
    .get_result(conn)
    .await?;
    Ok((stored.lines, stored.net))
}

/// Writes `payout` with the net of its batch's lines and the review item
/// its difference opened.
pub async fn insert_payout(
    conn: &mut AsyncPgConnection,
    payout: &Payout,
    lines_net: i64,
    review_item: Option<i64>,
) -> Result<(), StoreError> {
    diesel::insert_into(settlement_payouts::table)
        .values((
            settlement_payouts::batch_id.eq(&payout.batch_id),
            settlement_payouts::currency.eq(payout.amount.currency().as_str()),
            settlement_payouts::paid_on.eq(payout.paid_on),
            settlement_payouts::amount_minor.eq(payout.amount.minor_units()),
            settlement_payouts::lines_net_minor.eq(lines_net),
            settlement_payouts::review_item_id.eq(review_item),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

type LineRow = (
    diesel::dsl::Eq<settlement_lines::batch_id, String>,
    diesel::dsl::Eq<settlement_lines::line_key, String>,
    diesel::dsl::Eq<settlement_lines::occurrence, i32>,
    diesel::dsl::Eq<settlement_lines::processor_ref, Option<String>>,
    diesel::dsl::Eq<settlement_lines::order_ref, Option<String>>,
    diesel::dsl::Eq<settlement_lines::kind, Stored<LineKind>>,
    diesel::dsl::Eq<settlement_lines::gross_minor, i64>,
    diesel::dsl::Eq<settlement_lines::fee_minor, i64>,
    diesel::dsl::Eq<settlement_lines::net_minor, i64>,
    diesel::dsl::Eq<settlement_lines::currency, String>,
    diesel::dsl::Eq<settlement_lines::settled_at, DateTime<Utc>>,
    diesel::dsl::Eq<settlement_lines::status, Stored<LineStatus>>,
    diesel::dsl::Eq<settlement_lines::matched_by, Option<Stored<MatchedBy>>>,
    diesel::dsl::Eq<settlement_lines::payment_id, Option<i64>>,
    diesel::dsl::Eq<settlement_lines::order_id, Option<i64>>,
    diesel::dsl::Eq<settlement_lines::expected_minor, Option<i64>>,
    diesel::dsl::Eq<settlement_lines::review_item_id, Option<i64>>,
    diesel::dsl::Eq<settlement_lines::fee_parts, Option<String>>,
);

fn line_row(line: &SettlementLine, key: &str, m: &LineMatch, item: Option<i64>) -> LineRow {
    (
        settlement_lines::batch_id.eq(line.batch_id.clone()),
        settlement_lines::line_key.eq(key.to_owned()),
        settlement_lines::occurrence.eq(i32::try_from(line.occurrence).unwrap_or(i32::MAX)),
        settlement_lines::processor_ref.eq(line.processor_ref.clone()),
        settlement_lines::order_ref.eq(line.order_ref.clone()),
        settlement_lines::kind.eq(Stored(line.kind)),
        settlement_lines::gross_minor.eq(line.gross.minor_units()),
        settlement_lines::fee_minor.eq(line.fee.minor_units()),
        settlement_lines::net_minor.eq(line.net.minor_units()),
        settlement_lines::currency.eq(line.currency().as_str().to_owned()),
        settlement_lines::settled_at.eq(line.settled_at),
        settlement_lines::status.eq(Stored(m.status)),
        settlement_lines::matched_by.eq(m.matched_by.map(Stored)),
        settlement_lines::payment_id.eq(m.payment.as_ref().map(|p| p.0)),
        settlement_lines::order_id.eq(m.payment.as_ref().map(|p| p.1)),
        settlement_lines::expected_minor.eq(m.expected),
        settlement_lines::review_item_id.eq(item),
        settlement_lines::fee_parts.eq(line.fee_parts_json()),
    )
}

/// Opens a review item for `finding`; returns its id.
pub async fn open_item(conn: &mut AsyncPgConnection, finding: &Finding) -> Result<i64, StoreError> {
    Ok(diesel::insert_into(review_items::table)
        .values((
            review_items::kind.eq(Stored(finding.kind)),
            review_items::order_ref.eq(&finding.order_ref),
            review_items::processor_ref.eq(&finding.processor_ref),
            review_items::details.eq(&finding.details),
        ))
        .returning(review_items::id)
        .get_result(conn)
        .await?)
}

/// One batch in one currency: its lines summed by how they compared, and
/// its payout. Amounts as exact decimal strings with the currency's
/// decimals; times RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchTotals {
    pub batch_id: String,
    pub currency: String,
    /// The earliest and latest settled_at of its lines.
    #[serde(serialize_with = "rfc3339::option")]
    pub first_settled_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339::option")]
    pub last_settled_at: Option<DateTime<Utc>>,
    pub lines: i64,
    /// Lines a ledger payment agrees with: how many, their gross.
    pub matched_lines: i64,
    pub matched_gross: String,
    /// Lines that differ or that no payment has (each with a review
    /// item): how many, their gross.
    pub unmatched_lines: i64,
    pub unmatched_gross: String,
    /// Fee and adjustment lines (no payment to match): how many, their net.
    pub other_lines: i64,
    pub other_net: String,
    /// Every line: gross, the processor's fees, net.
    pub gross: String,
    pub fees: String,
    pub net: String,
    /// The bank transfer, when a payouts file gave it.
    pub payout: Option<String>,
    pub paid_on: Option<NaiveDate>,
    /// Payout − net, when there is a payout (0 when they agree).
    pub payout_difference: Option<String>,
    /// The figures in minor units, for code (not exported): matched gross,
    /// unmatched gross, other net, gross, fees, net, payout.
    #[serde(skip)]
    pub minor: BatchMinor,
}

/// [`BatchTotals`] in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchMinor {
    pub matched_gross: i64,
    pub unmatched_gross: i64,
    pub other_net: i64,
    pub gross: i64,
    pub fees: i64,
    pub net: i64,
    pub payout: Option<i64>,
    /// The gross of every line split by what moved it, so that
    /// `sales − refunds − chargebacks + reinstatements + adjustments −
    /// fees = net` holds exactly (each line's net is its gross − fee):
    /// sale lines' gross;
    pub sales: i64,
    /// refund lines' gross, as a positive amount taken back;
    pub refunds: i64,
    /// chargeback and reversal lines that take money back, positive;
    pub chargebacks: i64,
    /// chargeback and reversal lines that credit it back (disputes won);
    pub reinstatements: i64,
    /// the gross of every other line (fee, adjustment, reserve, dispute
    /// hold lines), signed.
    pub adjustments: i64,
}

#[derive(QueryableByName)]
struct BatchRow {
    #[diesel(sql_type = Text)]
    batch_id: String,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    first_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = BigInt)]
    lines: i64,
    #[diesel(sql_type = BigInt)]
    matched_lines: i64,
    #[diesel(sql_type = BigInt)]
    matched_gross: i64,
    #[diesel(sql_type = BigInt)]
    unmatched_lines: i64,
    #[diesel(sql_type = BigInt)]
    unmatched_gross: i64,
    #[diesel(sql_type = BigInt)]
    other_lines: i64,
    #[diesel(sql_type = BigInt)]
    other_net: i64,
    #[diesel(sql_type = BigInt)]
    gross: i64,
    #[diesel(sql_type = BigInt)]
    fees: i64,
    #[diesel(sql_type = BigInt)]
    net: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    payout: Option<i64>,
    #[diesel(sql_type = Nullable<Date>)]
    paid_on: Option<NaiveDate>,
    #[diesel(sql_type = BigInt)]
    sales: i64,
    #[diesel(sql_type = BigInt)]
    refunds: i64,
    #[diesel(sql_type = BigInt)]
    chargebacks: i64,
    #[diesel(sql_type = BigInt)]
    reinstatements: i64,
    #[diesel(sql_type = BigInt)]
    adjustments: i64,
}

/// One settlement line as stored, for people and exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettlementLineView {
    pub id: i64,
    pub batch_id: String,
    pub status: LineStatus,
    #[serde(rename = "type")]
    pub kind: LineKind,
    pub processor_ref: Option<String>,
    pub order_ref: Option<String>,
    pub currency: String,
    pub gross: String,
    pub fee: String,
    pub net: String,
    /// The ledger's amount it was compared with, when one was.
    pub expected: Option<String>,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub settled_at: DateTime<Utc>,
    /// The review item it opened.
    pub review_item_id: Option<i64>,
}

#[derive(QueryableByName)]
struct LineViewRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    batch_id: String,
    #[diesel(sql_type = Text)]
    #[diesel(deserialize_as = Stored<LineStatus>)]
    status: LineStatus,
    #[diesel(sql_type = Text)]
    #[diesel(deserialize_as = Stored<LineKind>)]
    kind: LineKind,
    #[diesel(sql_type = Nullable<Text>)]
    processor_ref: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    order_ref: Option<String>,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    gross_minor: i64,
    #[diesel(sql_type = BigInt)]
    fee_minor: i64,
    #[diesel(sql_type = BigInt)]
    net_minor: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    expected_minor: Option<i64>,
    #[diesel(sql_type = Timestamptz)]
    settled_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<BigInt>)]
    review_item_id: Option<i64>,
}

/// The currency of a settlement row's code, in `currencies` (the store's
/// table).
fn currency_of(currencies: &Currencies, code: &str) -> Result<Currency, StoreError> {
    currencies
        .currency(code)
        .map_err(|err| StoreError::Invalid(format!("settlement currency: {err}")))
}

impl Store {
    /// The settlement report: per batch and currency (oldest batch first),
    /// matched and unmatched totals, fees, net and the payout; only `batch`
    /// when given. A payout whose batch has no line is listed too.
    pub async fn settlement_report(
        &self,
        batch: Option<&str>,
    ) -> Result<Vec<BatchTotals>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<BatchRow> = diesel::sql_query(
            "WITH l AS ( \
                 SELECT batch_id, currency, min(settled_at) AS first_at, max(settled_at) AS last_at, \
                        count(*)::int8 AS lines, \
                        count(*) FILTER (WHERE status = 'matched')::int8 AS matched_lines, \
                        coalesce(sum(gross_minor) FILTER (WHERE status = 'matched'), 0)::int8 \
                            AS matched_gross, \
                        count(*) FILTER (WHERE status IN ('differs', 'unknown'))::int8 \
                            AS unmatched_lines, \
                        coalesce(sum(gross_minor) FILTER (WHERE status IN ('differs', 'unknown')), 0)::int8 \
                            AS unmatched_gross, \
                        count(*) FILTER (WHERE status = 'other')::int8 AS other_lines, \
                        coalesce(sum(net_minor) FILTER (WHERE status = 'other'), 0)::int8 AS other_net, \
                        sum(gross_minor)::int8 AS gross, sum(fee_minor)::int8 AS fees, \
                        sum(net_minor)::int8 AS net, \
                        coalesce(sum(gross_minor) FILTER (WHERE kind = 'sale'), 0)::int8 AS sales, \
                        (-coalesce(sum(gross_minor) FILTER (WHERE kind = 'refund'), 0))::int8 \
                            AS refunds, \
                        (-coalesce(sum(gross_minor) FILTER (WHERE kind IN ('chargeback', 'reversal') \
                            AND gross_minor < 0), 0))::int8 AS chargebacks, \
                        coalesce(sum(gross_minor) FILTER (WHERE kind IN ('chargeback', 'reversal') \
                            AND gross_minor > 0), 0)::int8 AS reinstatements, \
                        coalesce(sum(gross_minor) FILTER (WHERE kind NOT IN \
                            ('sale', 'refund', 'chargeback', 'reversal')), 0)::int8 AS adjustments \
                 FROM settlement_lines WHERE ($1::text IS NULL OR batch_id = $1) \
                 GROUP BY batch_id, currency) \
             SELECT coalesce(l.batch_id, p.batch_id) AS batch_id, \
                    coalesce(l.currency, p.currency) AS currency, \
                    l.first_at, l.last_at, coalesce(l.lines, 0) AS lines, \
                    coalesce(l.matched_lines, 0) AS matched_lines, \
                    coalesce(l.matched_gross, 0) AS matched_gross, \
                    coalesce(l.unmatched_lines, 0) AS unmatched_lines, \
                    coalesce(l.unmatched_gross, 0) AS unmatched_gross, \
                    coalesce(l.other_lines, 0) AS other_lines, \
                    coalesce(l.other_net, 0) AS other_net, \
                    coalesce(l.gross, 0) AS gross, coalesce(l.fees, 0) AS fees, \
                    coalesce(l.net, 0) AS net, \
                    p.amount_minor AS payout, p.paid_on, \
                    coalesce(l.sales, 0) AS sales, coalesce(l.refunds, 0) AS refunds, \
                    coalesce(l.chargebacks, 0) AS chargebacks, \
                    coalesce(l.reinstatements, 0) AS reinstatements, \
                    coalesce(l.adjustments, 0) AS adjustments \
             FROM l FULL JOIN (SELECT * FROM settlement_payouts \
                               WHERE ($1::text IS NULL OR batch_id = $1)) AS p \
                  ON p.batch_id = l.batch_id AND p.currency = l.currency \
             ORDER BY coalesce(l.first_at, p.paid_on::timestamptz), 1, 2",
        )
        .bind::<Nullable<Text>, _>(batch)
        .load(&mut conn)
        .await?;
        rows.into_iter()
            .map(|r| {
                let code = currency_of(self.currencies(), &r.currency)?;
                let money = |minor: i64| Money::from_minor(minor, code).format_amount();
                Ok(BatchTotals {
                    batch_id: r.batch_id,
                    currency: r.currency,
                    first_settled_at: r.first_at,
                    last_settled_at: r.last_at,
                    lines: r.lines,
                    matched_lines: r.matched_lines,
                    matched_gross: money(r.matched_gross),
                    unmatched_lines: r.unmatched_lines,
                    unmatched_gross: money(r.unmatched_gross),
                    other_lines: r.other_lines,
                    other_net: money(r.other_net),
                    gross: money(r.gross),
                    fees: money(r.fees),
                    net: money(r.net),
                    payout: r.payout.map(money),
                    paid_on: r.paid_on,
                    payout_difference: r.payout.map(|p| money(p.saturating_sub(r.net))),
                    minor: BatchMinor {
                        matched_gross: r.matched_gross,
                        unmatched_gross: r.unmatched_gross,
                        other_net: r.other_net,
                        gross: r.gross,
                        fees: r.fees,
                        net: r.net,
                        payout: r.payout,
                        sales: r.sales,
                        refunds: r.refunds,
                        chargebacks: r.chargebacks,
                        reinstatements: r.reinstatements,
                        adjustments: r.adjustments,
                    },
                })
            })
            .collect()
    }

    /// The lines that differ from the ledger or that no payment has (each
    /// with its review item), oldest first; only `batch`'s when given.
    pub async fn unmatched_settlement_lines(
        &self,
        batch: Option<&str>,
    ) -> Result<Vec<SettlementLineView>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<LineViewRow> = diesel::sql_query(
            "SELECT id, batch_id, status, kind, processor_ref, order_ref, currency, gross_minor, \
                    fee_minor, net_minor, expected_minor, settled_at, review_item_id \
             FROM settlement_lines \
             WHERE status IN ('differs', 'unknown') AND ($1::text IS NULL OR batch_id = $1) \
             ORDER BY settled_at, id",
        )
        .bind::<Nullable<Text>, _>(batch)
        .load(&mut conn)
        .await?;
        rows.into_iter()
            .map(|r| {
                let code = currency_of(self.currencies(), &r.currency)?;
                let money = |minor: i64| Money::from_minor(minor, code).format_amount();
                Ok(SettlementLineView {
                    id: r.id,
                    batch_id: r.batch_id,
                    status: r.status,
                    kind: r.kind,
                    processor_ref: r.processor_ref,
                    order_ref: r.order_ref,
                    currency: r.currency,
                    gross: money(r.gross_minor),
                    fee: money(r.fee_minor),
                    net: money(r.net_minor),
                    expected: r.expected_minor.map(money),
                    settled_at: r.settled_at,
                    review_item_id: r.review_item_id,
                })
            })
            .collect()
    }
}

#[derive(QueryableByName)]
struct FeeRow {
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
    fee_minor: i64,
    #[diesel(sql_type = Text)]
    currency: String,
}

/// The sale a settlement line `l` belongs to, as a lateral join named
/// `sale`: when its payment's capture moved (`occurred`) and was booked
/// (`booked`), as long as the daemon had recorded it when the line was
/// imported (so that a line's date, once imported, never changes). Needs
/// `p`, the line's payment (left-joined).
pub(super) const LINE_SALE: &str = "LEFT JOIN LATERAL ( \
         SELECT min(m.occurred_at) AS occurred, min(m.booked_at) AS booked \
         FROM money_movements AS m \
         WHERE m.order_id = p.order_id AND m.processor_ref = p.processor_ref \
           AND m.kind = 'payment' AND m.created_at <= l.imported_at) AS sale ON true";

/// When a settlement line's fee moved and the date the books carry it, as
/// SQL over `l` and [`LINE_SALE`]: with its sale (`event`; by the line
/// when it has none), or by the line (`settled`, `created`); never in a
/// period that was closed when the line was imported.
pub(super) fn line_dates(by: ReportBasis) -> (&'static str, &'static str) {
    match by {
        ReportBasis::Event => (
            "coalesce(sale.occurred, l.settled_at)",
            "greatest(coalesce(sale.booked, l.settled_at), l.books_open_from)",
        ),
        ReportBasis::Settled | ReportBasis::Created => {
            ("l.settled_at", "greatest(l.settled_at, l.books_open_from)")
        }
    }
}

/// The processor's fees as journal movements: one per settlement line with
/// a fee, dated as [`line_dates`] says (see [`Store::fee_movements`]).
pub(super) async fn fee_movements_in(
    conn: &mut AsyncPgConnection,
    period: &ReportPeriod,
    currencies: &Currencies,
) -> Result<Vec<JournalMovement>, StoreError> {
    let filter = if period.by.by_movement() {
        "d.booked >= coalesce($1, '-infinity'::timestamptz) \
         AND d.booked < coalesce($2, 'infinity'::timestamptz)"
    } else {
        // Lines of an order: by the order's creation; lines of none (fees,
        // unknown lines): by their own date, so that over all time both
        // bases count every fee.
        "coalesce(d.order_created, d.booked) >= coalesce($1, '-infinity'::timestamptz) \
         AND coalesce(d.order_created, d.booked) < coalesce($2, 'infinity'::timestamptz)"
    };
    let (occurred, booked) = line_dates(period.by);
    let rows: Vec<FeeRow> = diesel::sql_query(format!(
        "SELECT d.occurred, d.booked, d.batch_id, d.order_ref, d.processor_ref, d.fee_minor, \
                d.currency \
         FROM ( \
             SELECT {occurred} AS occurred, {booked} AS booked, o.created_at AS order_created, \
                    l.batch_id, coalesce(o.order_ref, l.order_ref, '') AS order_ref, \
                    coalesce(l.processor_ref, '') AS processor_ref, l.fee_minor, l.currency, \
                    l.id \
             FROM settlement_lines AS l \
             LEFT JOIN orders AS o ON o.id = l.order_id \
             LEFT JOIN payments AS p ON p.id = l.payment_id \
             {LINE_SALE} \
             WHERE l.fee_minor > 0) AS d \
         WHERE {filter} \
         ORDER BY d.booked, d.id"
    ))
    .bind::<Nullable<Timestamptz>, _>(period.from)
    .bind::<Nullable<Timestamptz>, _>(period.to)
    .load(conn)
    .await?;
    let mut moved = rows
        .into_iter()
        .map(|r| {
            Ok(JournalMovement {
                at: r.booked,
                occurred: r.occurred,
                order_ref: r.order_ref,
                processor_ref: r.processor_ref,
                kind: MovementKind::Fee,
                amount: Money::from_minor(r.fee_minor, currency_of(currencies, &r.currency)?),
                batch_id: Some(r.batch_id),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    moved.extend(super::payouts::commission_settled_in(conn, period, currencies).await?);
    moved.sort_by_key(|m| m.at);
    Ok(moved)
}
