//! What finance staff read: the report of a period (orders, money per
//! currency, open exceptions, notifications). The review queue is in
//! [`super::review`].
//!
//! Everything here serializes for spreadsheets and scripts as well as for
//! people: objects with named fields (never `[name, count]` pairs, which a
//! JSON consumer must know the meaning of by position), and every time in
//! one form, RFC 3339 in UTC to the second (`2026-11-02T09:20:44Z`), which
//! spreadsheets and `jq` read alike (see [`rfc3339`]).

use super::sql::Stored;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};

use super::schema::notifications;
use super::{Store, StoreError};
use crate::domain::journal::Figures;
use crate::domain::{Currencies, Currency, Money, OrderState, Outcome, ReviewKind};

/// The money of one currency in a period (amounts as exact decimal
/// strings with the currency's decimals; never summed across currencies).
/// The figures are defined in [`crate::domain::journal`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CurrencyTotals {
    pub currency: String,
    /// Orders counted: created in the period (`--by created`), or with a
    /// money movement in it (`--by event`).
    pub orders: i64,
    /// What those orders should cost.
    pub expected: String,
    /// Gross: every payment captured, double charges included.
    pub paid: String,
    /// Refunds of paid payments.
    pub refunded: String,
    /// Net revenue − commission − fees: what the merchant keeps.
    pub net: String,
    /// Captured money returned by a reversal that is not a chargeback.
    pub reversed: String,
    /// Payments captured, then taken back by a chargeback: what remained
    /// of each after its refunds.
    pub charged_back: String,
    /// Chargebacks reinstated: disputes won (and what a refund recorded
    /// after its chargeback gave back of it).
    pub reinstated: String,
    /// The processor's fees, from settlement lines.
    pub fees: String,
    /// VAT the processor charged on the payments, less what refunds and
    /// chargebacks gave back (`Σ IPN_VAT[]` + `IPN_SHIPPING_TAX`).
    pub vat: String,
    /// The processor's provisional commission (`IPN_COMMISSION`, rounded
    /// per payment), less what refunds and chargebacks gave back and what
    /// a settlement fee replaced: the fee of the payments not settled yet.
    pub commission: String,
    /// Paid − refunded − reversed − (charged back − reinstated) − VAT:
    /// revenue excluding VAT, before fees and commission.
    pub net_revenue: String,
    /// What write-offs resolved in the period took from the clearing
    /// account (shortfalls less excesses written off), already in `net`.
    pub written_off: String,
    /// The same figures in minor units, for code (not exported).
    #[serde(skip)]
    pub figures: Figures,
}

/// The payout of one payout currency in a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PayoutTotals {
    pub currency: String,
    /// `Σ PAYABLE_AMOUNT` of the counted payments, refunds and chargebacks (negative
    /// values included): what the processor's notices say it owes.
    pub expected: String,
    /// The payouts of the imported payout files (paid on a day in the
    /// period).
    pub settled: String,
}

/// Which orders and movements a report counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportBasis {
    /// Orders created in the period, with all their money whenever it
    /// moved (from their payments).
    #[default]
    Created,
    /// Money movements whose booked date falls in the period, whatever
    /// order they belong to: the date the money moved by the processor's
    /// word (a settlement line's fee and the commission it replaces with
    /// their sale), or the first open day when that fell in a period
    /// closed when it was recorded.
    Event,
    /// As `event`, but a settlement line's fee (and the commission it
    /// replaces) is dated by the line's own settlement date.
    Settled,
}

impl ReportBasis {
    /// Whether movements are counted by their booked date (`event`,
    /// `settled`) rather than by their order's creation.
    pub fn by_movement(self) -> bool {
        !matches!(self, Self::Created)
    }
}

/// The period of a report or a journal: `from` inclusive, `to` exclusive,
/// either open (the beginning of the books, now).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ReportPeriod {
    #[serde(serialize_with = "rfc3339::option")]
    pub from: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339::option")]
    pub to: Option<DateTime<Utc>>,
    pub by: ReportBasis,
}

impl ReportPeriod {
    /// Everything, ever (by creation: every order with all its money).
    pub fn all() -> Self {
        Self::default()
    }

    /// Whether `at` falls in the period.
    pub fn contains(&self, at: &DateTime<Utc>) -> bool {
        self.from.is_none_or(|from| *at >= from) && self.to.is_none_or(|to| *at < to)
    }
}

/// The open review items of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenExceptions {
    pub kind: ReviewKind,
    /// Items open now.
    pub open: i64,
    /// When the oldest of them was opened.
    #[serde(serialize_with = "rfc3339::serialize")]
    pub oldest_at: DateTime<Utc>,
    /// Its age when the report was made, in whole seconds.
    pub oldest_age_seconds: i64,
}

/// The state of the books in a period.
///
/// The counts are `(name, count)` pairs in Rust, and objects in JSON:
/// `{"state": "paid", "orders": 3}`, `{"outcome": "applied",
/// "notifications": 16}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FinanceSummary {
    /// Which period, counted how.
    pub period: ReportPeriod,
    /// `(state, number of orders)`, every state that has orders: orders
    /// created in the period, or (`--by event`, `settled`) orders with
    /// money booked in it; by their state now.
    #[serde(serialize_with = "counts::<_, StateCount, _>")]
    pub orders_by_state: Vec<(OrderState, i64)>,
    /// Per currency, in code order.
    pub totals: Vec<CurrencyTotals>,
    /// Per payout currency, in code order: the payout the notices expect
    /// beside what settlement files say.
    pub payouts: Vec<PayoutTotals>,
    /// Items open now that were opened before the period's end, by kind.
    pub open_exceptions: Vec<OpenExceptions>,
    /// `(outcome, notifications)` of the notifications received in the
    /// period.
    #[serde(serialize_with = "counts::<_, OutcomeCount, _>")]
    pub notifications_by_outcome: Vec<(Outcome, i64)>,
    /// Movements booked in the period that belong to an earlier one, closed
    /// when they were recorded (`event` and `settled` only), oldest first.
    /// They are in the totals above: the period they belong to is not
    /// changed.
    pub late_for_closed_period: Vec<LateMovement>,
    /// Where the books are closed when the report was made.
    pub books: BooksState,
}

/// A movement late for a closed period: booked on the first open day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LateMovement {
    /// The date the books carry it.
    #[serde(serialize_with = "rfc3339::serialize")]
    pub booked_at: DateTime<Utc>,
    /// When the money moved: the closed period it belongs to.
    #[serde(serialize_with = "rfc3339::serialize")]
    pub belongs_to: DateTime<Utc>,
    pub order_ref: String,
    pub processor_ref: String,
    pub kind: &'static str,
    pub amount: String,
    pub currency: String,
}

impl From<&super::journal::JournalMovement> for LateMovement {
    fn from(m: &super::journal::JournalMovement) -> Self {
        Self {
            booked_at: m.at,
            belongs_to: m.occurred,
            order_ref: m.order_ref.clone(),
            processor_ref: m.processor_ref.clone(),
            kind: m.kind.as_str(),
            amount: m.amount.format_amount(),
            currency: m.amount.currency().as_str().to_owned(),
        }
    }
}

/// Where the books are closed (`books close`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct BooksState {
    /// The last day closed, in the zone it was given in; `None`: open.
    pub closed_through: Option<chrono::NaiveDate>,
    /// That zone.
    pub time_zone: Option<String>,
    /// The first instant of the first open period.
    #[serde(serialize_with = "rfc3339::option")]
    pub open_from: Option<DateTime<Utc>>,
}

/// `{"state": ..., "orders": N}`.
#[derive(Serialize)]
struct StateCount {
    state: &'static str,
    orders: i64,
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

pub use super::review::{ReviewItem, ReviewStatus};

pub use crate::export::rfc3339;

/// The heading of the report's totals, which names its two figures the
/// way every page that shows them must (the console's overview too): net
/// revenue, and net.
pub const TOTALS_CAPTION: &str = "Totals per currency (net revenue = paid - refunded - reversed - \
     charged back + reinstated - VAT; net = net revenue - commission - fees)";

impl FinanceSummary {
    /// The report as a person reads it.
    pub fn render(&self, out: &mut (impl std::io::Write + ?Sized)) -> std::io::Result<()> {
        let summary = self;
        writeln!(out, "{}", describe_period(&summary.period))?;
        writeln!(out, "\nOrders by state")?;
        let total: i64 = summary.orders_by_state.iter().map(|(_, n)| n).sum();
        for (state, count) in &summary.orders_by_state {
            writeln!(out, "  {state:<20} {count:>7}")?;
        }
        writeln!(out, "  {:<20} {total:>7}", "total")?;
        writeln!(out, "\n{TOTALS_CAPTION}")?;
        fn row<W: std::io::Write + ?Sized>(out: &mut W, cells: [&str; 13]) -> std::io::Result<()> {
            write!(out, "  {:<4} {:>6}", cells[0], cells[1])?;
            for cell in &cells[2..] {
                write!(out, " {cell:>13}")?;
            }
            writeln!(out)
        }
        row(
            out,
            [
                "CUR",
                "ORDERS",
                "EXPECTED",
                "PAID",
                "REFUNDED",
                "REVERSED",
                "CHARGED BACK",
                "REINSTATED",
                "VAT",
                "NET REVENUE",
                "COMMISSION",
                "FEES",
                "NET",
            ],
        )?;
        if summary.totals.is_empty() {
            writeln!(out, "  (none)")?;
        }
        for t in &summary.totals {
            row(
                out,
                [
                    &t.currency,
                    &t.orders.to_string(),
                    &t.expected,
                    &t.paid,
                    &t.refunded,
                    &t.reversed,
                    &t.charged_back,
                    &t.reinstated,
                    &t.vat,
                    &t.net_revenue,
                    &t.commission,
                    &t.fees,
                    &t.net,
                ],
            )?;
        }
        let written: Vec<&CurrencyTotals> = summary
            .totals
            .iter()
            .filter(|t| t.figures.clearing_written_off() != 0)
            .collect();
        if !written.is_empty() {
            writeln!(
                out,
                "\nWritten off from the review queue (in NET: shortfalls less excesses)"
            )?;
            for t in written {
                writeln!(out, "  {:<4} {:>13}", t.currency, t.written_off)?;
            }
        }
        writeln!(
            out,
            "\nPayouts per payout currency (expected from the notices)"
        )?;
        if summary.payouts.is_empty() {
            writeln!(out, "  (none)")?;
        } else {
            writeln!(out, "  {:<4} {:>13} {:>13}", "CUR", "EXPECTED", "SETTLED")?;
        }
        for p in &summary.payouts {
            writeln!(
                out,
                "  {:<4} {:>13} {:>13}",
                p.currency, p.expected, p.settled
            )?;
        }
        writeln!(out, "\nOpen exceptions by kind")?;
        if summary.open_exceptions.is_empty() {
            writeln!(out, "  (none)")?;
        } else {
            writeln!(
                out,
                "  {:<26} {:>7}  {:<16}  OLDEST AGE",
                "KIND", "OPEN", "OLDEST (UTC)"
            )?;
        }
        for e in &summary.open_exceptions {
            writeln!(
                out,
                "  {:<26} {:>7}  {:<16}  {}",
                e.kind,
                e.open,
                e.oldest_at.format("%Y-%m-%d %H:%M"),
                describe_age(e.oldest_age_seconds)
            )?;
        }
        writeln!(out, "\nNotifications by outcome")?;
        if summary.notifications_by_outcome.is_empty() {
            writeln!(out, "  (none)")?;
        }
        for (outcome, count) in &summary.notifications_by_outcome {
            writeln!(out, "  {outcome:<24} {count:>7}")?;
        }
        if let (Some(through), Some(zone)) =
            (&summary.books.closed_through, &summary.books.time_zone)
        {
            writeln!(out, "\nBooks closed through {through} ({zone})")?;
        }
        if !summary.late_for_closed_period.is_empty() {
            writeln!(
                out,
                "\nLate for a closed period (booked here, in the totals above; the closed period \
                 is unchanged)"
            )?;
            writeln!(
                out,
                "  {:<20} {:<20} {:<18} {:<16} {:>13} CUR",
                "BOOKED (UTC)", "BELONGS TO (UTC)", "KIND", "REFNO", "AMOUNT"
            )?;
            for late in &summary.late_for_closed_period {
                writeln!(
                    out,
                    "  {:<20} {:<20} {:<18} {:<16} {:>13} {}",
                    late.booked_at.format("%Y-%m-%d %H:%M"),
                    late.belongs_to.format("%Y-%m-%d %H:%M"),
                    late.kind,
                    late.processor_ref,
                    late.amount,
                    late.currency
                )?;
            }
        }
        Ok(())
    }
}

/// The first line of a report: which period, counted how.
fn describe_period(period: &ReportPeriod) -> String {
    let bound = |at: &Option<DateTime<Utc>>, open: &str| {
        at.as_ref().map_or_else(|| open.to_owned(), rfc3339::format)
    };
    let what = match period.by {
        ReportBasis::Created => "orders created in the period, with all their money",
        ReportBasis::Event => "money booked in the period, dated when it moved",
        ReportBasis::Settled => {
            "money booked in the period, dated when it moved (fees by their settlement date)"
        }
    };
    format!(
        "Period {} to {} (to excluded): {what}",
        bound(&period.from, "the beginning"),
        bound(&period.to, "now")
    )
}

/// An age for people: `45s`, `12m`, `3h 20m`, `4d 2h`.
fn describe_age(seconds: i64) -> String {
    let seconds = seconds.max(0);
    let (days, hours, minutes) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
    );
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

impl Store {
    /// The report of all time: every order with all its money, the open
    /// exceptions, every notification.
    pub async fn finance_summary(&self) -> Result<FinanceSummary, StoreError> {
        self.finance_report(&ReportPeriod::all()).await
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
                    match self.currencies().currency(code) {
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

/// `column >= $1 AND column < $2`: the period's bounds, bound as `$1`
/// (from) and `$2` (to); an open bound is -infinity or infinity.
fn in_period(column: &str) -> String {
    format!(
        "{column} >= coalesce($1, '-infinity'::timestamptz) \
         AND {column} < coalesce($2, 'infinity'::timestamptz)"
    )
}

#[derive(QueryableByName)]
struct StateRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    #[diesel(deserialize_as = Stored<OrderState>)]
    status: OrderState,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    n: i64,
}

#[derive(QueryableByName)]
struct OutcomeRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    #[diesel(deserialize_as = Stored<Outcome>)]
    outcome: Outcome,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    n: i64,
}

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
    #[diesel(sql_type = diesel::sql_types::Int8)]
    reversed: i64,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    charged_back: i64,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    reinstated: i64,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    vat: i64,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    vat_refunded: i64,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    commission: i64,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    commission_refunded: i64,
}

#[derive(QueryableByName)]
struct ExceptionsRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    #[diesel(deserialize_as = Stored<ReviewKind>)]
    kind: ReviewKind,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    open: i64,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    oldest_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    age: i64,
}

impl Store {
    /// The report of `period`: orders by state, money per currency, open
    /// exceptions by kind with the oldest, notifications by outcome. Read
    /// in one read-only snapshot (REPEATABLE READ), fees from settlement
    /// lines included, so its figures agree with each other.
    ///
    /// What each basis counts (see [`ReportBasis`]): `created` takes the
    /// orders created in the period and their payments' figures, whenever
    /// the money moved; `event` takes the money movements whose ledger row
    /// falls in the period (`money_movements`), whatever order they belong
    /// to. Over all time the two agree. Open exceptions are those open now
    /// that were opened before the period's end; notifications are those
    /// received in the period.
    pub async fn finance_report(
        &self,
        period: &ReportPeriod,
    ) -> Result<FinanceSummary, StoreError> {
        let period = *period;
        let mut conn = self.conn().await?;
        conn.build_transaction()
            .read_only()
            .repeatable_read()
            .run::<_, StoreError, _>(async |conn| {
                // The fees in the same snapshot as the rest: a settlement
                // import committed between two reads would otherwise give
                // fees of lines whose payments the report does not show.
                let settled =
                    super::settlement::fee_movements_in(conn, &period, self.currencies()).await?;
                report_in(conn, period, settled, self.currencies()).await
            })
            .await
    }
}

async fn report_in(
    conn: &mut diesel_async::AsyncPgConnection,
    period: ReportPeriod,
    settled: Vec<super::journal::JournalMovement>,
    currencies: &Currencies,
) -> Result<FinanceSummary, StoreError> {
    use diesel::sql_types::{Nullable, Timestamptz};
    let (states_sql, totals_sql) = match period.by {
        ReportBasis::Created => (
            format!(
                "SELECT status, count(*)::int8 AS n FROM orders WHERE {} \
                 GROUP BY status ORDER BY status",
                in_period("created_at")
            ),
            format!(
                "SELECT o.currency, count(*)::int8 AS orders, \
                        coalesce(sum(o.expected_minor), 0)::int8 AS expected, \
                        coalesce(sum(p.paid), 0)::int8 AS paid, \
                        coalesce(sum(p.refunded), 0)::int8 AS refunded, \
                        coalesce(sum(m.reversed), 0)::int8 AS reversed, \
                        coalesce(sum(p.charged_back), 0)::int8 AS charged_back, \
                        coalesce(sum(p.reinstated), 0)::int8 AS reinstated, \
                        coalesce(sum(p.vat), 0)::int8 AS vat, \
                        coalesce(sum(p.vat_refunded), 0)::int8 AS vat_refunded, \
                        coalesce(sum(p.commission), 0)::int8 AS commission, \
                        coalesce(sum(p.commission_refunded), 0)::int8 AS commission_refunded \
                 FROM orders AS o \
                 LEFT JOIN LATERAL ( \
                     SELECT sum(paid_minor) AS paid, \
                            sum(CASE WHEN paid_minor > 0 THEN vat_minor ELSE 0 END \
                                + CASE WHEN dispute_won AND chargeback_minor IS NOT NULL \
                                       THEN charged_back_vat_minor ELSE 0 END) AS vat, \
                            sum(CASE WHEN paid_minor > 0 THEN refunded_vat_minor ELSE 0 END \
                                + CASE WHEN chargeback_minor IS NOT NULL \
                                       THEN charged_back_vat_minor ELSE 0 END) \
                                AS vat_refunded, \
                            sum(CASE WHEN paid_minor > 0 THEN commission_minor ELSE 0 END \
                                + CASE WHEN dispute_won AND chargeback_minor IS NOT NULL \
                                       THEN charged_back_commission_minor ELSE 0 END) \
                                AS commission, \
                            sum(CASE WHEN paid_minor > 0 THEN refunded_commission_minor \
                                     ELSE 0 END \
                                + CASE WHEN chargeback_minor IS NOT NULL \
                                       THEN charged_back_commission_minor ELSE 0 END) \
                                AS commission_refunded, \
                            sum(CASE WHEN paid_minor > 0 THEN refunded_minor ELSE 0 END) \
                                AS refunded, \
                            sum(coalesce(chargeback_minor, 0)) AS charged_back, \
                            sum(reinstated_minor) AS reinstated \
                     FROM payments WHERE order_id = o.id) AS p ON true \
                 LEFT JOIN LATERAL ( \
                     SELECT sum(amount_minor) AS reversed FROM money_movements \
                     WHERE order_id = o.id AND kind = 'reversal') AS m ON true \
                 WHERE {} \
                 GROUP BY o.currency ORDER BY o.currency",
                in_period("o.created_at")
            ),
        ),
        ReportBasis::Event | ReportBasis::Settled => (
            format!(
                "SELECT o.status, count(*)::int8 AS n FROM orders AS o \
                 WHERE EXISTS (SELECT 1 FROM money_movements AS m \
                               WHERE m.order_id = o.id AND {}) \
                 GROUP BY o.status ORDER BY o.status",
                in_period("m.booked_at")
            ),
            format!(
                "WITH moved AS (SELECT * FROM money_movements WHERE {}), \
                 moved_orders AS ( \
                     SELECT o.currency, count(*)::int8 AS orders, \
                            sum(o.expected_minor)::int8 AS expected \
                     FROM orders AS o WHERE o.id IN (SELECT order_id FROM moved) \
                     GROUP BY o.currency), \
                 money AS ( \
                     SELECT currency, \
                            sum(amount_minor) FILTER (WHERE kind = 'payment') AS paid, \
                            sum(amount_minor) FILTER (WHERE kind = 'refund') AS refunded, \
                            sum(amount_minor) FILTER (WHERE kind = 'reversal') AS reversed, \
                            sum(amount_minor) FILTER (WHERE kind = 'chargeback') AS charged_back, \
                            sum(amount_minor) FILTER (WHERE kind = 'chargeback_reversal') \
                                AS reinstated, \
                            sum(amount_minor) FILTER (WHERE kind = 'vat') AS vat, \
                            sum(amount_minor) FILTER (WHERE kind = 'vat_refund') AS vat_refunded, \
                            sum(amount_minor) FILTER (WHERE kind = 'commission') AS commission, \
                            sum(amount_minor) FILTER (WHERE kind = 'commission_refund') \
                                AS commission_refunded \
                     FROM moved GROUP BY currency) \
                 SELECT money.currency, coalesce(moved_orders.orders, 0)::int8 AS orders, \
                        coalesce(moved_orders.expected, 0)::int8 AS expected, \
                        coalesce(paid, 0)::int8 AS paid, coalesce(refunded, 0)::int8 AS refunded, \
                        coalesce(reversed, 0)::int8 AS reversed, \
                        coalesce(charged_back, 0)::int8 AS charged_back, \
                        coalesce(reinstated, 0)::int8 AS reinstated, \
                        coalesce(vat, 0)::int8 AS vat, \
                        coalesce(vat_refunded, 0)::int8 AS vat_refunded, \
                        coalesce(commission, 0)::int8 AS commission, \
                        coalesce(commission_refunded, 0)::int8 AS commission_refunded \
                 FROM money LEFT JOIN moved_orders USING (currency) \
                 ORDER BY money.currency",
                in_period("booked_at")
            ),
        ),
    };
    let states: Vec<StateRow> = diesel::sql_query(states_sql)
        .bind::<Nullable<Timestamptz>, _>(period.from)
        .bind::<Nullable<Timestamptz>, _>(period.to)
        .load(conn)
        .await?;
    let rows: Vec<TotalsRow> = diesel::sql_query(totals_sql)
        .bind::<Nullable<Timestamptz>, _>(period.from)
        .bind::<Nullable<Timestamptz>, _>(period.to)
        .load(conn)
        .await?;
    let exceptions: Vec<ExceptionsRow> = diesel::sql_query(
        "SELECT kind, count(*)::int8 AS open, min(created_at) AS oldest_at, \
                floor(extract(epoch FROM now() - min(created_at)))::int8 AS age \
         FROM review_items \
         WHERE status = 'open' AND created_at < coalesce($1, 'infinity'::timestamptz) \
         GROUP BY kind ORDER BY kind",
    )
    .bind::<Nullable<Timestamptz>, _>(period.to)
    .load(conn)
    .await?;
    let outcomes: Vec<OutcomeRow> = diesel::sql_query(format!(
        "SELECT outcome, count(*)::int8 AS n FROM notifications WHERE {} \
         GROUP BY outcome ORDER BY outcome",
        in_period("received_at")
    ))
    .bind::<Nullable<Timestamptz>, _>(period.from)
    .bind::<Nullable<Timestamptz>, _>(period.to)
    .load(conn)
    .await?;

    let mut by_currency: std::collections::BTreeMap<Currency, (i64, i64, Figures)> =
        std::collections::BTreeMap::new();
    for row in rows {
        let code = currencies
            .currency(&row.currency)
            .map_err(|err| StoreError::Invalid(err.to_string()))?;
        let figures = Figures {
            paid: row.paid,
            refunded: row.refunded,
            reversed: row.reversed,
            charged_back: row.charged_back,
            reinstated: row.reinstated,
            vat: row.vat,
            vat_refunded: row.vat_refunded,
            commission: row.commission,
            commission_refunded: row.commission_refunded,
            ..Figures::default()
        };
        by_currency.insert(code, (row.orders, row.expected, figures));
    }
    // Settlement lines: the fees, and the commission they replaced; and
    // the write-offs resolved in the period, in the same snapshot.
    let written_off = super::journal::write_off_movements_in(conn, &period, currencies).await?;
    for fee in settled.into_iter().chain(written_off) {
        by_currency
            .entry(fee.amount.currency())
            .or_default()
            .2
            .add(fee.kind, fee.amount.minor_units());
    }
    let late_for_closed_period = if period.by.by_movement() {
        late_in(conn, &period, currencies).await?
    } else {
        Vec::new()
    };
    let books = books_state(conn).await?;
    let payouts = super::payouts::payout_totals(conn, &period, currencies).await?;
    let totals = by_currency
        .into_iter()
        .map(|(code, (orders, expected, figures))| {
            let money = |minor: i64| Money::from_minor(minor, code).format_amount();
            CurrencyTotals {
                currency: code.as_str().to_owned(),
                orders,
                expected: money(expected),
                paid: money(figures.paid),
                refunded: money(figures.refunded),
                net: money(figures.net()),
                reversed: money(figures.reversed),
                charged_back: money(figures.charged_back),
                reinstated: money(figures.reinstated),
                fees: money(figures.fees),
                vat: money(figures.net_vat()),
                commission: money(figures.open_commission()),
                net_revenue: money(figures.net_revenue()),
                written_off: money(figures.clearing_written_off()),
                figures,
            }
        })
        .collect();
    Ok(FinanceSummary {
        period,
        orders_by_state: states.into_iter().map(|r| (r.status, r.n)).collect(),
        totals,
        payouts,
        open_exceptions: exceptions
            .into_iter()
            .map(|r| OpenExceptions {
                kind: r.kind,
                open: r.open,
                oldest_at: r.oldest_at,
                oldest_age_seconds: r.age.max(0),
            })
            .collect(),
        notifications_by_outcome: outcomes.into_iter().map(|r| (r.outcome, r.n)).collect(),
        late_for_closed_period,
        books,
    })
}

/// The movements booked in `period` that belong to a closed period before
/// it, fees included.
async fn late_in(
    conn: &mut diesel_async::AsyncPgConnection,
    period: &ReportPeriod,
    currencies: &Currencies,
) -> Result<Vec<LateMovement>, StoreError> {
    let moved = super::journal::journal_movements_in(conn, period, "UTC", currencies).await?;
    Ok(moved
        .iter()
        .filter(|m| m.late())
        .map(LateMovement::from)
        .collect())
}

/// Where the books are closed now (the latest `books_closes` row).
pub(super) async fn books_state(
    conn: &mut diesel_async::AsyncPgConnection,
) -> Result<BooksState, StoreError> {
    use super::schema::books_closes;
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let latest: Option<(Option<chrono::NaiveDate>, Option<DateTime<Utc>>, String)> =
        books_closes::table
            .order(books_closes::id.desc())
            .select((
                books_closes::through,
                books_closes::open_from,
                books_closes::time_zone,
            ))
            .first(conn)
            .await
            .optional()?;
    Ok(match latest {
        Some((Some(through), open_from, zone)) => BooksState {
            closed_through: Some(through),
            time_zone: Some(zone),
            open_from,
        },
        _ => BooksState::default(),
    })
}

/// Money at risk of one kind in one currency, in minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoneyAtRisk {
    /// `paid_unsettled`, `mismatched` or `orphaned`.
    pub kind: &'static str,
    pub currency: Currency,
    pub minor: i64,
}

#[derive(QueryableByName)]
struct RiskRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    currency: String,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    minor: i64,
}

impl Store {
    /// Money at risk per currency (the finance gauges), read in one
    /// snapshot:
    ///
    /// - `orphaned`: payments (COMPLETE, PAYMENT_RECEIVED, AUTHRECEIVED,
    ///   not test orders) the processor reported for an order that does not
    ///   exist and whose `orphan_payment` item is open, one per order and
    ///   REFNO, at the notification's amount in its currency;
    /// - `mismatched`: orders in state `mismatch` (a payment disagreed with
    ///   the order, nothing counted as paid), at the order's amount;
    /// - `paid_unsettled`: standing payments no settlement line has matched
    ///   ([`Store::unsettled_by_currency`]).
    pub async fn money_at_risk(&self) -> Result<Vec<MoneyAtRisk>, StoreError> {
        let unsettled = self.unsettled_by_currency().await?;
        let mut conn = self.conn().await?;
        let (orphaned, mismatched) = conn
            .build_transaction()
            .read_only()
            .repeatable_read()
            .run::<_, StoreError, _>(async |conn| {
                let orphaned: Vec<RiskRow> = diesel::sql_query(
                    "SELECT currency, sum(amount)::int8 AS minor FROM ( \
                         SELECT DISTINCT ON (n.order_ref, n.processor_ref) \
                                n.currency, abs(n.amount_minor) AS amount \
                         FROM notifications AS n \
                         WHERE n.outcome = 'order_not_found' AND NOT n.test_order \
                           AND n.order_status IN ('COMPLETE', 'PAYMENT_RECEIVED', 'AUTHRECEIVED') \
                           AND n.currency IS NOT NULL AND n.amount_minor IS NOT NULL \
                           AND EXISTS (SELECT 1 FROM review_items AS r \
                                       WHERE r.kind = 'orphan_payment' AND r.status = 'open' \
                                         AND r.order_ref = n.order_ref) \
                           AND NOT EXISTS (SELECT 1 FROM orders AS o \
                                           WHERE o.order_ref = n.order_ref) \
                         ORDER BY n.order_ref, n.processor_ref, n.id) AS payments \
                     GROUP BY currency ORDER BY currency",
                )
                .load(conn)
                .await?;
                let mismatched: Vec<RiskRow> = diesel::sql_query(
                    "SELECT currency, sum(expected_minor)::int8 AS minor FROM orders \
                     WHERE status = 'mismatch' GROUP BY currency ORDER BY currency",
                )
                .load(conn)
                .await?;
                Ok((orphaned, mismatched))
            })
            .await?;
        let mut risks = Vec::new();
        for (kind, rows) in [("orphaned", orphaned), ("mismatched", mismatched)] {
            for row in rows {
                // A code that does not parse cannot be labelled honestly.
                if let Ok(currency) = self.currencies().currency(&row.currency) {
                    risks.push(MoneyAtRisk {
                        kind,
                        currency,
                        minor: row.minor,
                    });
                }
            }
        }
        for (currency, minor) in unsettled {
            risks.push(MoneyAtRisk {
                kind: "paid_unsettled",
                currency,
                minor,
            });
        }
        Ok(risks)
    }

    /// Standing money (paid, less refunds, not charged back) of payments
    /// that no settlement line has settled and that the sweep found late
    /// (their `unsettled_payment` item is open: paid more than
    /// `settlement-days` ago), per currency, in minor units. Payments still
    /// within their settlement delay are not at risk yet; a payment whose
    /// item a person resolved is no longer counted either.
    pub async fn unsettled_by_currency(
        &self,
    ) -> Result<std::collections::BTreeMap<Currency, i64>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<RiskRow> = diesel::sql_query(
            "SELECT o.currency, sum(p.paid_minor - least(p.refunded_minor, p.paid_minor) \
                                  - coalesce(p.chargeback_minor, 0) + p.reinstated_minor)::int8 \
                                  AS minor \
             FROM payments AS p JOIN orders AS o ON o.id = p.order_id \
             WHERE p.paid_minor > 0 \
               AND EXISTS (SELECT 1 FROM review_items AS r \
                           WHERE r.kind = 'unsettled_payment' AND r.status = 'open' \
                             AND r.order_ref = o.order_ref AND r.processor_ref = p.processor_ref) \
               AND NOT EXISTS (SELECT 1 FROM settlement_lines AS l \
                               WHERE l.payment_id = p.id AND l.kind = 'sale' \
                                 AND l.status = 'matched') \
             GROUP BY o.currency ORDER BY o.currency",
        )
        .load(&mut conn)
        .await?;
        let mut unsettled = std::collections::BTreeMap::new();
        for row in rows {
            if let Ok(currency) = self.currencies().currency(&row.currency)
                && row.minor > 0
            {
                unsettled.insert(currency, row.minor);
            }
        }
        Ok(unsettled)
    }
}
