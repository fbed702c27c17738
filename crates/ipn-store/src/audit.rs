//! `audit verify`: recomputes every hash chain of the append-only tables
//! and re-derives every order's money and state from the sealed facts
//! (crate::domain::audit says what the chains are and what a finding
//! means).
//!
//! Everything runs in one read-only REPEATABLE READ transaction, so the
//! chains, their heads and the orders are read as of one instant while the
//! worker keeps writing. The chains are recomputed with PostgreSQL's
//! built-in functions only (`to_jsonb`, `sha256`), not with the
//! migration's helper functions, which an owner could replace. Each check
//! is one statement that returns the first row that differs, if any.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use super::{Store, StoreError};
use crate::domain::audit::{Break, Finding};

/// A chained table and the column that names its chain (`None`: one
/// chain). The migration's `audit_chains` lists the same (a test checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chained {
    pub table: &'static str,
    pub key: Option<&'static str>,
}

/// Every chained table: the ledger and its money per order, resolutions
/// per order reference, settlement per batch, the action log and the
/// closes of the books as one chain each.
pub const CHAINED: [Chained; 7] = [
    Chained {
        table: "order_events",
        key: Some("order_id"),
    },
    Chained {
        table: "money_movements",
        key: Some("order_id"),
    },
    Chained {
        table: "review_resolutions",
        key: Some("order_ref"),
    },
    Chained {
        table: "console_actions",
        key: None,
    },
    Chained {
        table: "settlement_lines",
        key: Some("batch_id"),
    },
    Chained {
        table: "settlement_payouts",
        key: Some("batch_id"),
    },
    Chained {
        table: "books_closes",
        key: None,
    },
];

impl Chained {
    /// The SQL of a row's chain key (`t` is the row), as the seal names it.
    fn key_sql(self) -> String {
        match self.key {
            Some(column) => format!("coalesce(to_jsonb(t) ->> '{column}', '')"),
            None => "''".to_owned(),
        }
    }

    /// How a finding names a chain.
    fn chain_name(self, key: &str) -> String {
        match self.key {
            Some(column) => format!("{column}={key}"),
            None => self.table.to_owned(),
        }
    }
}

/// What one audit saw and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// Rows checked per chained table, in [`CHAINED`] order.
    pub rows: Vec<(&'static str, i64)>,
    /// Orders whose money and state were re-derived.
    pub orders: i64,
    /// The first finding of each check that found one; empty: the books
    /// are as they were written.
    pub findings: Vec<Finding>,
}

impl AuditReport {
    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }

    /// Chained rows checked in all.
    pub fn total_rows(&self) -> i64 {
        self.rows.iter().map(|(_, n)| n).sum()
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct ChainBreak {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    chain: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    seq: Option<i64>,
    #[diesel(sql_type = BigInt)]
    expected_seq: i64,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    unsealed: bool,
}

#[derive(QueryableByName)]
struct HeadBreak {
    #[diesel(sql_type = Text)]
    chain: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    head: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    last_seq: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    last_id: Option<i64>,
}

/// The first row of `table` that breaks its chain: each row against the
/// stored digest of the row before it in its chain (`first_break`'s rule).
async fn chain_break(
    conn: &mut AsyncPgConnection,
    chained: Chained,
) -> Result<Option<Finding>, StoreError> {
    let key = chained.key_sql();
    let table = chained.table;
    let sql = format!(
        "WITH c AS ( \
             SELECT t.id, {key} AS chain, t.chain_seq AS seq, t.chain_digest AS digest, \
                    coalesce(lag(t.chain_seq) OVER w, 0) + 1 AS expected_seq, \
                    encode(sha256(convert_to(coalesce(lag(t.chain_digest) OVER w, '') || \
                        jsonb_strip_nulls(to_jsonb(t) - 'chain_seq' - 'chain_digest')::text, \
                        'UTF8')), 'hex') AS recomputed \
             FROM {table} AS t \
             WINDOW w AS (PARTITION BY {key} ORDER BY t.chain_seq NULLS FIRST, t.id)) \
         SELECT id, chain, seq, expected_seq, digest IS NULL OR seq IS NULL AS unsealed \
         FROM c \
         WHERE digest IS NULL OR seq IS NULL OR seq <> expected_seq OR digest <> recomputed \
         ORDER BY chain, seq NULLS FIRST, id LIMIT 1"
    );
    let found: Option<ChainBreak> = diesel::sql_query(sql)
        .get_result(conn)
        .await
        .optional_row()?;
    Ok(found.map(|b| Finding::Chain {
        table: table.to_owned(),
        chain: chained.chain_name(&b.chain),
        id: b.id,
        seq: b.seq,
        why: if b.unsealed {
            Break::Unsealed
        } else if b.seq != Some(b.expected_seq) {
            Break::Gap {
                expected: b.expected_seq,
            }
        } else {
            Break::Differs
        },
    }))
}

/// The first chain of `table` whose newest row is not its recorded head.
async fn head_break(
    conn: &mut AsyncPgConnection,
    chained: Chained,
) -> Result<Option<Finding>, StoreError> {
    let key = chained.key_sql();
    let table = chained.table;
    let sql = format!(
        "WITH last AS ( \
             SELECT DISTINCT ON (chain) chain, seq, digest, id FROM ( \
                 SELECT {key} AS chain, t.chain_seq AS seq, t.chain_digest AS digest, t.id \
                 FROM {table} AS t WHERE t.chain_seq IS NOT NULL) AS s \
             ORDER BY chain, seq DESC), \
         head AS (SELECT chain_key, seq, digest FROM audit_chain_heads \
                  WHERE chain_table = '{table}') \
         SELECT coalesce(head.chain_key, last.chain) AS chain, head.seq AS head, \
                last.seq AS last_seq, last.id AS last_id \
         FROM head FULL JOIN last ON last.chain = head.chain_key \
         WHERE head.seq IS DISTINCT FROM last.seq OR head.digest IS DISTINCT FROM last.digest \
         ORDER BY 1 LIMIT 1"
    );
    let found: Option<HeadBreak> = diesel::sql_query(sql)
        .get_result(conn)
        .await
        .optional_row()?;
    Ok(found.map(|b| Finding::Head {
        table: table.to_owned(),
        chain: chained.chain_name(&b.chain),
        last: b.last_seq.zip(b.last_id),
        head: b.head,
    }))
}

#[derive(QueryableByName)]
struct MoneyBreak {
    #[diesel(sql_type = Text)]
    order_ref: String,
    #[diesel(sql_type = Text)]
    figure: String,
    #[diesel(sql_type = BigInt)]
    stored: i64,
    #[diesel(sql_type = BigInt)]
    derived: i64,
}

/// The first order whose paid, refunded, charged-back or reinstated total
/// is not the sum of its movements of that kind in its currency (a
/// refund booked in another currency is not counted in the order's).
async fn order_money_break(conn: &mut AsyncPgConnection) -> Result<Option<Finding>, StoreError> {
    let found: Option<MoneyBreak> = diesel::sql_query(
        "WITH m AS ( \
             SELECT mm.order_id, \
                    coalesce(sum(mm.amount_minor) FILTER (WHERE mm.kind = 'payment'), 0) AS paid, \
                    coalesce(sum(mm.amount_minor) FILTER (WHERE mm.kind = 'refund'), 0) AS refunded, \
                    coalesce(sum(mm.amount_minor) FILTER (WHERE mm.kind = 'chargeback'), 0) \
                        AS charged_back, \
                    coalesce(sum(mm.amount_minor) FILTER (WHERE mm.kind = 'chargeback_reversal'), \
                             0) AS reinstated \
             FROM money_movements AS mm JOIN orders AS o ON o.id = mm.order_id \
             WHERE mm.currency = o.currency GROUP BY mm.order_id) \
         SELECT o.order_ref, d.col AS figure, d.stored, d.derived \
         FROM orders AS o LEFT JOIN m ON m.order_id = o.id \
         CROSS JOIN LATERAL (VALUES \
             (1, 'paid_minor', o.paid_minor, coalesce(m.paid, 0)::int8), \
             (2, 'refunded_minor', o.refunded_minor, coalesce(m.refunded, 0)::int8), \
             (3, 'charged_back_minor', o.charged_back_minor, coalesce(m.charged_back, 0)::int8), \
             (4, 'reinstated_minor', o.reinstated_minor, coalesce(m.reinstated, 0)::int8)) \
             AS d (n, col, stored, derived) \
         WHERE d.stored <> d.derived \
         ORDER BY o.id, d.n LIMIT 1",
    )
    .get_result(conn)
    .await
    .optional_row()?;
    Ok(found.and_then(|b| {
        let column = match b.figure.as_str() {
            "paid_minor" => "paid_minor",
            "refunded_minor" => "refunded_minor",
            "charged_back_minor" => "charged_back_minor",
            "reinstated_minor" => "reinstated_minor",
            _ => return None,
        };
        Some(Finding::OrderMoney {
            order_ref: b.order_ref,
            column,
            stored: b.stored,
            derived: b.derived,
        })
    }))
}

#[derive(QueryableByName)]
struct StateBreak {
    #[diesel(sql_type = Text)]
    order_ref: String,
    #[diesel(sql_type = Text)]
    stored: String,
    #[diesel(sql_type = Text)]
    derived: String,
}

/// The first order whose state is not the one its newest ledger row left
/// (`pending` for an order without any).
async fn order_state_break(conn: &mut AsyncPgConnection) -> Result<Option<Finding>, StoreError> {
    let found: Option<StateBreak> = diesel::sql_query(
        "SELECT o.order_ref, o.status AS stored, coalesce(e.new_status, 'pending') AS derived \
         FROM orders AS o \
         LEFT JOIN LATERAL (SELECT new_status FROM order_events \
                            WHERE order_id = o.id ORDER BY id DESC LIMIT 1) AS e ON true \
         WHERE o.status <> coalesce(e.new_status, 'pending') \
         ORDER BY o.id LIMIT 1",
    )
    .get_result(conn)
    .await
    .optional_row()?;
    Ok(found.map(|b| Finding::OrderState {
        order_ref: b.order_ref,
        stored: b.stored,
        derived: b.derived,
    }))
}

#[derive(QueryableByName)]
struct PaymentBreak {
    #[diesel(sql_type = Text)]
    order_ref: String,
    #[diesel(sql_type = Text)]
    processor_ref: String,
    #[diesel(sql_type = BigInt)]
    stored: i64,
    #[diesel(sql_type = BigInt)]
    derived: i64,
}

/// The first payment whose captured amount is not the sum of its payment
/// movements.
async fn payment_break(conn: &mut AsyncPgConnection) -> Result<Option<Finding>, StoreError> {
    let found: Option<PaymentBreak> = diesel::sql_query(
        "SELECT o.order_ref, p.processor_ref, p.paid_minor AS stored, \
                coalesce(m.paid, 0)::int8 AS derived \
         FROM payments AS p JOIN orders AS o ON o.id = p.order_id \
         LEFT JOIN (SELECT mm.order_id, mm.processor_ref, sum(mm.amount_minor) AS paid \
                    FROM money_movements AS mm JOIN orders AS o2 ON o2.id = mm.order_id \
                    WHERE mm.kind = 'payment' AND mm.currency = o2.currency \
                    GROUP BY mm.order_id, mm.processor_ref) AS m \
           ON m.order_id = p.order_id AND m.processor_ref = p.processor_ref \
         WHERE p.paid_minor <> coalesce(m.paid, 0) \
         ORDER BY p.id LIMIT 1",
    )
    .get_result(conn)
    .await
    .optional_row()?;
    Ok(found.map(|b| Finding::PaymentMoney {
        order_ref: b.order_ref,
        processor_ref: b.processor_ref,
        stored: b.stored,
        derived: b.derived,
    }))
}

#[derive(QueryableByName)]
struct LedgerBreak {
    #[diesel(sql_type = BigInt)]
    ledger_id: i64,
    #[diesel(sql_type = Text)]
    order_ref: String,
    #[diesel(sql_type = BigInt)]
    notification_id: i64,
    #[diesel(sql_type = Text)]
    why: String,
}

/// The first ledger row whose notification was not verified (no key
/// checked it) or not recorded as taken into account (applied, ignored,
/// mismatch), or whose movements came from a notification not recorded
/// as moving money (applied, mismatch).
async fn ledger_notification_break(
    conn: &mut AsyncPgConnection,
) -> Result<Option<Finding>, StoreError> {
    let found: Option<LedgerBreak> = diesel::sql_query(
        "SELECT e.id AS ledger_id, o.order_ref, n.id AS notification_id, \
                CASE WHEN n.key_id IS NULL THEN 'no key verified' \
                     ELSE 'is recorded as ' || n.outcome END AS why \
         FROM order_events AS e JOIN orders AS o ON o.id = e.order_id \
         JOIN notifications AS n ON n.id = e.notification_id \
         WHERE n.key_id IS NULL \
            OR n.outcome NOT IN ('applied', 'ignored', 'mismatch') \
            OR (n.outcome = 'ignored' AND EXISTS ( \
                    SELECT 1 FROM money_movements AS mm \
                    WHERE mm.order_id = e.order_id AND mm.notification_id = e.notification_id)) \
         ORDER BY e.id LIMIT 1",
    )
    .get_result(conn)
    .await
    .optional_row()?;
    Ok(found.map(|b| Finding::LedgerNotification {
        ledger_id: b.ledger_id,
        order_ref: b.order_ref,
        notification_id: b.notification_id,
        why: b.why,
    }))
}

#[derive(QueryableByName)]
struct ItemBreak {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// The first resolved review item without its resolution row.
async fn resolution_break(conn: &mut AsyncPgConnection) -> Result<Option<Finding>, StoreError> {
    let found: Option<ItemBreak> = diesel::sql_query(
        "SELECT i.id FROM review_items AS i \
         WHERE i.status = 'resolved' \
           AND NOT EXISTS (SELECT 1 FROM review_resolutions AS r WHERE r.review_item_id = i.id) \
         ORDER BY i.id LIMIT 1",
    )
    .get_result(conn)
    .await
    .optional_row()?;
    Ok(found.map(|b| Finding::ResolutionMissing {
        review_item_id: b.id,
    }))
}

#[derive(QueryableByName)]
struct SubscriptionBreak {
    #[diesel(sql_type = Text)]
    licence_ref: String,
    #[diesel(sql_type = Text)]
    processor_ref: String,
}

/// The first subscription order marked paid without a verified payment
/// notice of its order (`store::subscriptions::pays`: a payment status, not
/// a test order, not denied for fraud).
async fn subscription_break(conn: &mut AsyncPgConnection) -> Result<Option<Finding>, StoreError> {
    let found: Option<SubscriptionBreak> = diesel::sql_query(
        "SELECT s.licence_ref, s.processor_ref FROM subscription_orders AS s \
         WHERE s.paid AND NOT EXISTS ( \
             SELECT 1 FROM notifications AS n \
             WHERE n.processor_ref = s.processor_ref AND n.key_id IS NOT NULL \
               AND n.order_status IN ('COMPLETE', 'PAYMENT_RECEIVED', 'AUTHRECEIVED') \
               AND NOT n.test_order AND NOT n.fraud_denied) \
         ORDER BY s.licence_ref, s.processor_ref LIMIT 1",
    )
    .get_result(conn)
    .await
    .optional_row()?;
    Ok(found.map(|b| Finding::SubscriptionPaid {
        licence_ref: b.licence_ref,
        processor_ref: b.processor_ref,
    }))
}

/// `get_result` without a row is `None`.
trait OptionalRow<T> {
    fn optional_row(self) -> Result<Option<T>, diesel::result::Error>;
}

impl<T> OptionalRow<T> for Result<T, diesel::result::Error> {
    fn optional_row(self) -> Result<Option<T>, diesel::result::Error> {
        match self {
            Ok(row) => Ok(Some(row)),
            Err(diesel::result::Error::NotFound) => Ok(None),
            Err(err) => Err(err),
        }
    }
}

/// One step of an audit, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditStep {
    /// About to recompute the chains of a table of `rows` rows.
    Chains { table: &'static str, rows: i64 },
    /// About to re-derive the orders' money and state.
    Orders { orders: i64 },
}

impl Store {
    /// Recomputes every chain and re-derives every order's money and
    /// state, as of one snapshot; `progress` hears of each step. The
    /// audit reads only: it takes no lock a writer waits for.
    pub async fn audit(
        &self,
        progress: &(dyn Fn(AuditStep) + Send + Sync),
    ) -> Result<AuditReport, StoreError> {
        let mut conn = self.conn().await?;
        conn.build_transaction()
            .repeatable_read()
            .read_only()
            .run::<_, StoreError, _>(async |conn| {
                // A large ledger takes longer than the pool's statement
                // timeout; times are read in UTC, as they were sealed.
                conn.batch_execute("SET LOCAL statement_timeout = 0; SET LOCAL timezone = 'UTC'")
                    .await?;
                let mut report = AuditReport::default();
                for chained in CHAINED {
                    let rows: Count =
                        diesel::sql_query(format!("SELECT count(*) AS n FROM {}", chained.table))
                            .get_result(conn)
                            .await?;
                    progress(AuditStep::Chains {
                        table: chained.table,
                        rows: rows.n,
                    });
                    report.rows.push((chained.table, rows.n));
                    if let Some(found) = chain_break(conn, chained).await? {
                        report.findings.push(found);
                    }
                    if let Some(found) = head_break(conn, chained).await? {
                        report.findings.push(found);
                    }
                }
                let orders: Count = diesel::sql_query("SELECT count(*) AS n FROM orders")
                    .get_result(conn)
                    .await?;
                report.orders = orders.n;
                progress(AuditStep::Orders { orders: orders.n });
                for found in [
                    order_money_break(conn).await?,
                    order_state_break(conn).await?,
                    payment_break(conn).await?,
                    ledger_notification_break(conn).await?,
                    resolution_break(conn).await?,
                    subscription_break(conn).await?,
                ]
                .into_iter()
                .flatten()
                {
                    report.findings.push(found);
                }
                Ok(report)
            })
            .await
    }

    /// The chained tables the schema's `audit_chains` lists, with their key
    /// columns (to check them against [`CHAINED`]).
    pub async fn chained_tables(&self) -> Result<Vec<(String, Option<String>)>, StoreError> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            chain_table: String,
            #[diesel(sql_type = Nullable<Text>)]
            key_column: Option<String>,
        }
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT chain_table, key_column FROM audit_chains ORDER BY chain_table",
        )
        .load(&mut conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.chain_table, r.key_column))
            .collect())
    }
}
