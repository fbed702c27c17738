//! The merchant's orders: importing them, and reading them back with their
//! ledger for finance staff and operators.

use super::sql::Stored;
use std::io::Read;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;

use super::reports::rfc3339;
use super::schema::{notifications, order_events, orders, payments};
use super::{Store, StoreError};
use crate::domain::{
    Currencies, Currency, Effect, Money, OrderOrigin, OrderState, PaymentFacts, PaymentState,
    Pseudonym,
};

/// An order as the shop knows it, before any notification.
#[derive(Debug, Clone, Eq)]
pub struct NewOrder {
    /// The merchant's reference; notifications carry it as REFNOEXT.
    pub order_ref: String,
    /// What the shop expects to be paid.
    pub amount: Money,
    pub created_at: Option<DateTime<Utc>>,
    /// The line of the CSV file it was read from (the header is line 1),
    /// so that a refusal found only when importing (an order that already
    /// exists with another amount) names the line to fix. `None` for
    /// orders that did not come from a file.
    pub line: Option<u64>,
    /// The processor's reference (`REFNO`) of the order, when the shop
    /// knows it: the order is then the processor's order keyed by it
    /// (docs/protocol.md §14), and this import attaches the shop's
    /// reference and expected amount to it, creating it when no notice
    /// has yet.
    pub processor_ref: Option<String>,
}

/// Two orders are equal when the shop's facts are: where they were read
/// from is not part of the order.
impl PartialEq for NewOrder {
    fn eq(&self, other: &Self) -> bool {
        self.order_ref == other.order_ref
            && self.amount == other.amount
            && self.created_at == other.created_at
            && self.processor_ref == other.processor_ref
    }
}

impl NewOrder {
    /// Validates an order reference the way the schema does (1-100 chars,
    /// no control characters).
    pub fn new(order_ref: &str, amount: Money) -> Result<Self, String> {
        let order_ref = order_ref.trim();
        if order_ref.is_empty() || order_ref.chars().count() > 100 {
            return Err("order_ref must be 1-100 characters".into());
        }
        if order_ref.chars().any(char::is_control) {
            return Err("order_ref contains a control character".into());
        }
        // A spreadsheet opening an export would run it as a formula.
        if order_ref.starts_with(['=', '+', '-', '@']) {
            return Err("order_ref must not start with =, +, - or @".into());
        }
        if amount.minor_units() < 0 {
            return Err("amount must not be negative".into());
        }
        Ok(Self {
            order_ref: order_ref.to_owned(),
            amount,
            created_at: None,
            line: None,
            processor_ref: None,
        })
    }
}

/// One bad row of an orders CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 1-based line number in the file (the header is line 1); 0 for an
    /// order that did not come from a file (its reason names the order).
    pub line: u64,
    pub reason: String,
}

/// Why an import was refused. Nothing was imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "the header must be `order_ref,amount,currency` then, optionally, `created_at` and \
         `processor_ref` in any order, found `{0}`"
    )]
    Header(String),
    #[error("{} bad row(s):\n{}", .0.len(), render_rows(.0))]
    Rows(Vec<RowError>),
    #[error("cannot read the CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for ImportError {
    fn from(err: diesel::result::Error) -> Self {
        ImportError::Store(StoreError::Query(err))
    }
}

fn render_rows(rows: &[RowError]) -> String {
    rows.iter()
        .map(|row| match row.line {
            0 => format!("  {}", row.reason),
            line => format!("  line {line}: {}", row.reason),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ImportReport {
    /// Orders created by this import.
    pub inserted: usize,
    /// Orders that already existed with the same amount and currency
    /// (and, for a processor order, the same merchant reference).
    pub unchanged: usize,
    /// Processor orders made by notices that this import gave the shop's
    /// reference.
    pub attached: usize,
}

/// The optional columns of an orders CSV, after `order_ref,amount,currency`.
#[derive(Debug, Clone, Copy, Default)]
struct OptionalColumns {
    created_at: Option<usize>,
    processor_ref: Option<usize>,
}

impl OptionalColumns {
    /// Reads the header: the three fixed columns, then each optional one
    /// at most once, in any order.
    fn of(header: &[String]) -> Result<Self, ImportError> {
        let refused = || ImportError::Header(header.join(","));
        if header.len() < 3 || header[..3] != ["order_ref", "amount", "currency"] {
            return Err(refused());
        }
        let mut columns = OptionalColumns::default();
        for (index, name) in header.iter().enumerate().skip(3) {
            let slot = match name.as_str() {
                "created_at" => &mut columns.created_at,
                "processor_ref" => &mut columns.processor_ref,
                _ => return Err(refused()),
            };
            if slot.replace(index).is_some() {
                return Err(refused());
            }
        }
        Ok(columns)
    }

    fn count(self) -> usize {
        3 + usize::from(self.created_at.is_some()) + usize::from(self.processor_ref.is_some())
    }
}

/// Parses an orders CSV (`order_ref,amount,currency`, then optionally
/// `created_at` and `processor_ref`), reporting every bad row with its
/// line number. Currencies are read with `currencies`, the settings'
/// table (the one the store will check them against,
/// [`Store::currencies`]): a currency outside it is a bad row.
pub fn parse_orders_csv(
    input: impl Read,
    currencies: &Currencies,
) -> Result<Vec<NewOrder>, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(input);
    let header: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    let columns = OptionalColumns::of(&header)?;
    let mut orders = Vec::new();
    let mut errors = Vec::new();
    let mut seen = std::collections::HashMap::new();
    let mut seen_processor = std::collections::HashMap::new();
    for record in reader.records() {
        let record = record?;
        let line = record.position().map_or(0, |p| p.line());
        match parse_row(&record, columns, currencies) {
            Ok(mut order) => {
                order.line = Some(line);
                if let Some(first) = seen.insert(order.order_ref.clone(), line) {
                    errors.push(RowError {
                        line,
                        reason: format!("order_ref repeats line {first}"),
                    });
                } else if let Some(first) = order
                    .processor_ref
                    .clone()
                    .and_then(|processor_ref| seen_processor.insert(processor_ref, line))
                {
                    errors.push(RowError {
                        line,
                        reason: format!("processor_ref repeats line {first}"),
                    });
                } else {
                    orders.push(order);
                }
            }
            Err(reason) => errors.push(RowError { line, reason }),
        }
    }
    if errors.is_empty() {
        Ok(orders)
    } else {
        Err(ImportError::Rows(errors))
    }
}

fn parse_row(
    record: &csv::StringRecord,
    columns: OptionalColumns,
    currencies: &Currencies,
) -> Result<NewOrder, String> {
    let expected_fields = columns.count();
    // A file written before the optional columns were added may leave
    // them out of a row; nothing else may be short or long.
    if record.len() != expected_fields && record.len() != 3 {
        return Err(format!(
            "expected {expected_fields} fields, found {}",
            record.len()
        ));
    }
    let field = |i: usize| record.get(i).unwrap_or("");
    // The currency first: an unknown one would make its amount's decimals
    // look wrong, when the currency is what to fix.
    let currency = currencies
        .currency(field(2))
        .map_err(|err| crate::domain::MoneyError::from(err).to_string())?;
    check_currency(currencies, currency)?;
    let amount = Money::parse_amount(field(1), currency).map_err(|err| err.to_string())?;
    let mut order = NewOrder::new(field(0), amount)?;
    let created = columns.created_at.map_or("", field);
    if !created.is_empty() {
        let at = DateTime::parse_from_rfc3339(created)
            .map_err(|_| "created_at must be RFC 3339, e.g. 2026-11-01T08:00:00Z".to_owned())?;
        order.created_at = Some(at.with_timezone(&Utc));
    }
    let processor_ref = columns.processor_ref.map_or("", field);
    if !processor_ref.is_empty() {
        order.processor_ref = Some(check_processor_ref(processor_ref)?);
    }
    Ok(order)
}

/// The processor's order reference, as a shop may write it: `REFNO`, the
/// processor's integer (docs/protocol.md §1.1), read by the same rule as
/// the notices' (digits only, at most
/// [`MAX_PROCESSOR_REF_CHARS`](crate::domain::tokenize::MAX_PROCESSOR_REF_CHARS)).
fn check_processor_ref(processor_ref: &str) -> Result<String, String> {
    use crate::domain::tokenize::MAX_PROCESSOR_REF_CHARS;
    if processor_ref.len() <= MAX_PROCESSOR_REF_CHARS
        && processor_ref.bytes().all(|b| b.is_ascii_digit())
    {
        Ok(processor_ref.to_owned())
    } else {
        Err(format!(
            "processor_ref must be the processor's REFNO (digits only, at most \
             {MAX_PROCESSOR_REF_CHARS}), found `{}`",
            processor_ref
                .chars()
                .take(MAX_PROCESSOR_REF_CHARS + 1)
                .collect::<String>()
        ))
    }
}

/// Refuses a currency that is neither in ISO 4217 nor allowed by the
/// operator (`allow-currency`, in `currencies`). Notifications may carry
/// any three letters (see [`Currencies::of`]), but an order is the shop's
/// own statement: `XYZ` there is a typo far more often than a new
/// currency, and its amount would be read with a guessed exponent.
///
/// An order built by code with a currency from another table (another
/// exponent for the same code) is refused too: its minor units would be
/// stored at a scale the books do not read them with.
fn check_currency(currencies: &Currencies, currency: Currency) -> Result<(), String> {
    if !currencies.is_known(currency.code()) {
        Err(format!(
            "currency {currency} is not an ISO 4217 currency; if it is the one the processor \
             uses, allow it with --allow-currency {currency}=EXPONENT (its number of decimals)"
        ))
    } else if currencies.of(currency.code()) != currency {
        Err(format!(
            "currency {currency} has {} decimals here, but {} in the allowed currencies",
            currency.exponent(),
            currencies.of(currency.code()).exponent()
        ))
    } else {
        Ok(())
    }
}

/// What importing one order with a `processor_ref` did.
enum Attachment {
    /// No order had that `REFNO` yet: the processor order was made now,
    /// with the shop's reference and amount, ready for its notices.
    Created,
    /// The processor order existed without a merchant reference: it has
    /// the shop's now.
    Attached,
    /// The processor order already had this reference and amount.
    Unchanged,
    /// The import would change what the books say; why.
    Refused(String),
}

/// Attaches the shop's reference and expected amount to the processor's
/// order `order.processor_ref`, or makes that order when no notice has yet,
/// in the caller's transaction (locked, so a notice's batch making the same
/// order waits or is waited for). Never changes an amount or a reference
/// already there: that would rewrite what reconciliation decided.
async fn attach_to_processor_order(
    conn: &mut diesel_async::AsyncPgConnection,
    order: &NewOrder,
) -> Result<Attachment, StoreError> {
    let Some(processor_ref) = order.processor_ref.as_deref() else {
        return Ok(Attachment::Refused("no processor_ref".into()));
    };
    // The shop's reference must not already name another order.
    let named: Option<String> = orders::table
        .filter(
            orders::order_ref
                .eq(&order.order_ref)
                .or(orders::merchant_ref.eq(&order.order_ref)),
        )
        .filter(orders::order_ref.ne(processor_ref))
        .select(orders::order_ref)
        .first(conn)
        .await
        .optional()?;
    if let Some(other) = named {
        return Ok(Attachment::Refused(format!(
            "the reference already names order {other}"
        )));
    }
    let existing: Option<(Stored<OrderOrigin>, Option<String>, i64, String)> = orders::table
        .filter(orders::order_ref.eq(processor_ref))
        .select((
            orders::origin,
            orders::merchant_ref,
            orders::expected_minor,
            orders::currency,
        ))
        .for_update()
        .first(conn)
        .await
        .optional()?;
    let amount = order.amount;
    let Some((Stored(origin), merchant_ref, expected_minor, currency)) = existing else {
        diesel::insert_into(orders::table)
            .values((
                orders::order_ref.eq(processor_ref),
                orders::processor_ref.eq(processor_ref),
                orders::origin.eq(OrderOrigin::Processor.as_str()),
                orders::merchant_ref.eq(&order.order_ref),
                orders::expected_stated.eq(true),
                orders::expected_minor.eq(amount.minor_units()),
                orders::currency.eq(amount.currency().as_str()),
                order.created_at.map(|at| orders::created_at.eq(at)),
            ))
            .execute(conn)
            .await?;
        return Ok(Attachment::Created);
    };
    if origin != OrderOrigin::Processor {
        return Ok(Attachment::Refused(format!(
            "{processor_ref} is a merchant order's reference, not a processor order's"
        )));
    }
    if expected_minor != amount.minor_units() || currency != amount.currency().as_str() {
        return Ok(Attachment::Refused(format!(
            "processor order {processor_ref} already exists with a different amount or currency"
        )));
    }
    match merchant_ref {
        Some(known) if known == order.order_ref => Ok(Attachment::Unchanged),
        Some(known) => Ok(Attachment::Refused(format!(
            "processor order {processor_ref} already has the merchant reference {known}"
        ))),
        None => {
            diesel::update(orders::table.filter(orders::order_ref.eq(processor_ref)))
                .set((
                    orders::merchant_ref.eq(&order.order_ref),
                    orders::expected_stated.eq(true),
                ))
                .execute(conn)
                .await?;
            Ok(Attachment::Attached)
        }
    }
}

/// A ledger row as shown to people.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OrderEventView {
    #[serde(serialize_with = "rfc3339::serialize")]
    pub at: DateTime<Utc>,
    /// The processor's ORDERSTATUS of the notification, as received (it
    /// may be a status this version does not know).
    pub order_status: String,
    pub effect: Effect,
    pub old_status: OrderState,
    pub new_status: OrderState,
    pub amount: String,
    pub currency: String,
    pub reason: String,
    pub processor_ref: Option<String>,
    /// The notification of the row; none for a person's action.
    pub notification_sha256: Option<String>,
    /// The review resolution of a person's action (a refund made outside
    /// the processor); none for a notification's row.
    pub resolution_id: Option<i64>,
}

/// A ledger row joined with its notification, as loaded.
type LedgerRow = (
    DateTime<Utc>,
    String,
    Stored<Effect>,
    Stored<OrderState>,
    Stored<OrderState>,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
);

/// One payment of an order (one processor reference), as shown to people.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PaymentView {
    pub processor_ref: String,
    /// `paid`, `partially_refunded`, `refunded`, `charged_back`,
    /// `authorized`, `released` or `unmatched` (refunds or reversals held
    /// without a payment).
    pub state: &'static str,
    pub authorized: bool,
    pub paid: String,
    pub refunded: String,
    pub reversed: bool,
    /// What a chargeback took (what remained after the refunds), and what
    /// came back of it (a dispute won).
    pub charged_back: String,
    pub reinstated: String,
    /// The last resolution a dispute notice gave, when one did: `open`,
    /// `won` or `lost` (`lost` also for accepted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispute: Option<&'static str>,
}

/// An order with its reconciled state, payments and ledger.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OrderView {
    /// The order's reference: the merchant's, or `REFNO` for an order the
    /// processor's notices made (`origin`).
    pub order_ref: String,
    /// Who made the order: `merchant` (imported) or `processor` (from its
    /// notices: hosted cart, renewals).
    pub origin: OrderOrigin,
    /// A processor order's merchant reference, when a notice named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_ref: Option<String>,
    pub status: OrderState,
    pub amount: String,
    pub currency: String,
    /// Paid over every payment (a double charge counts twice).
    pub paid: String,
    /// Refunded on paid payments.
    pub refunded: String,
    /// Paid, then reversed (chargebacks).
    pub charged_back: String,
    pub processor_ref: Option<String>,
    /// When the shop created the order (`created_at` of the CSV, else the
    /// import time).
    #[serde(serialize_with = "rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    /// When a notification last changed it.
    #[serde(serialize_with = "rfc3339::serialize")]
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    /// The payments by processor reference (empty in listings).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub payments: Vec<PaymentView>,
    /// The ledger, oldest first (empty in listings).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<OrderEventView>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = orders)]
struct OrderRecord {
    id: i64,
    order_ref: String,
    #[diesel(deserialize_as = Stored<OrderOrigin>)]
    origin: OrderOrigin,
    merchant_ref: Option<String>,
    expected_minor: i64,
    currency: String,
    #[diesel(deserialize_as = Stored<OrderState>)]
    status: OrderState,
    processor_ref: Option<String>,
    paid_minor: i64,
    refunded_minor: i64,
    charged_back_minor: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

impl OrderRecord {
    /// The view, its amounts read with `currencies` (the store's table).
    fn into_view(self, currencies: &Currencies) -> Result<(i64, OrderView), StoreError> {
        let currency = currencies
            .currency(&self.currency)
            .map_err(|err| StoreError::Invalid(format!("order {}: {err}", self.order_ref)))?;
        let money = |minor| Money::from_minor(minor, currency).format_amount();
        Ok((
            self.id,
            OrderView {
                order_ref: self.order_ref,
                origin: self.origin,
                merchant_ref: self.merchant_ref,
                status: self.status,
                amount: money(self.expected_minor),
                currency: currency.as_str().to_owned(),
                paid: money(self.paid_minor),
                refunded: money(self.refunded_minor),
                charged_back: money(self.charged_back_minor),
                processor_ref: self.processor_ref,
                created_at: self.created_at,
                updated_at: self.updated_at,
                version: self.version,
                payments: Vec::new(),
                events: Vec::new(),
            },
        ))
    }
}

impl Store {
    /// Creates orders, all or nothing. Re-importing the same orders changes
    /// nothing; an existing order with a different amount or currency is an
    /// error (and nothing is imported).
    ///
    /// This is also the function a shop's code calls to register an order.
    pub async fn import_orders(
        &self,
        new_orders: &[NewOrder],
    ) -> Result<ImportReport, ImportError> {
        let mut conn = self.conn().await?;
        let report = conn
            .transaction::<_, ImportError, _>(async |conn| {
                let mut report = ImportReport::default();
                // The same check as the CSV's, for orders registered by code.
                let mut conflicts: Vec<RowError> = new_orders
                    .iter()
                    .filter_map(|order| {
                        check_currency(self.currencies(), order.amount.currency())
                            .err()
                            .map(|reason| RowError {
                                line: order.line.unwrap_or(0),
                                reason: format!("order {}: {reason}", order.order_ref),
                            })
                    })
                    .collect();
                if !conflicts.is_empty() {
                    return Err(ImportError::Rows(conflicts));
                }
                let (attached, plain): (Vec<&NewOrder>, Vec<&NewOrder>) = new_orders
                    .iter()
                    .partition(|order| order.processor_ref.is_some());
                for order in attached {
                    match attach_to_processor_order(conn, order).await? {
                        Attachment::Created => report.inserted += 1,
                        Attachment::Attached => report.attached += 1,
                        Attachment::Unchanged => report.unchanged += 1,
                        Attachment::Refused(reason) => conflicts.push(RowError {
                            line: order.line.unwrap_or(0),
                            reason: format!("order {}: {reason}", order.order_ref),
                        }),
                    }
                }
                // Chunks keep each statement far below PostgreSQL's bind limit.
                for chunk in plain.chunks(1_000) {
                    let rows: Vec<_> = chunk
                        .iter()
                        .map(|order| {
                            (
                                orders::order_ref.eq(&order.order_ref),
                                orders::expected_minor.eq(order.amount.minor_units()),
                                orders::currency.eq(order.amount.currency().as_str().to_owned()),
                                // Without a time of its own, the column's
                                // DEFAULT: the database's `now()`.
                                order.created_at.map(|at| orders::created_at.eq(at)),
                            )
                        })
                        .collect();
                    let inserted: Vec<String> = diesel::insert_into(orders::table)
                        .values(&rows)
                        .on_conflict(orders::order_ref)
                        .do_nothing()
                        .returning(orders::order_ref)
                        .get_results(conn)
                        .await
                        .map_err(StoreError::from)?;
                    report.inserted += inserted.len();
                    let existing: Vec<&NewOrder> = chunk
                        .iter()
                        .copied()
                        .filter(|order| !inserted.contains(&order.order_ref))
                        .collect();
                    if existing.is_empty() {
                        continue;
                    }
                    let refs: Vec<&str> = existing.iter().map(|o| o.order_ref.as_str()).collect();
                    let stored: Vec<(String, i64, String)> = orders::table
                        .filter(orders::order_ref.eq_any(&refs))
                        .select((orders::order_ref, orders::expected_minor, orders::currency))
                        .load(conn)
                        .await
                        .map_err(StoreError::from)?;
                    for order in existing {
                        let same = stored.iter().any(|(r, minor, currency)| {
                            r == &order.order_ref
                                && *minor == order.amount.minor_units()
                                && currency == order.amount.currency().as_str()
                        });
                        if same {
                            report.unchanged += 1;
                        } else {
                            conflicts.push(RowError {
                                line: order.line.unwrap_or(0),
                                reason: format!(
                                    "order {} already exists with a different amount or currency",
                                    order.order_ref
                                ),
                            });
                        }
                    }
                }
                if conflicts.is_empty() {
                    Ok(report)
                } else {
                    Err(ImportError::Rows(conflicts))
                }
            })
            .await?;
        Ok(report)
    }

    /// One order with its ledger, or `None` when the shop never registered it.
    pub async fn order(&self, order_ref: &str) -> Result<Option<OrderView>, StoreError> {
        let mut conn = self.conn().await?;
        // The order's own reference first; else the other reference an
        // order carries (a merchant order's REFNO, a processor order's
        // merchant reference), the oldest such order.
        let mut record: Option<OrderRecord> = orders::table
            .filter(orders::order_ref.eq(order_ref))
            .select(OrderRecord::as_select())
            .first(&mut conn)
            .await
            .optional()?;
        if record.is_none() {
            record = orders::table
                .filter(
                    orders::processor_ref
                        .eq(order_ref)
                        .or(orders::merchant_ref.eq(order_ref)),
                )
                .order(orders::id.asc())
                .select(OrderRecord::as_select())
                .first(&mut conn)
                .await
                .optional()?;
        }
        let Some(record) = record else {
            return Ok(None);
        };
        let (id, mut view) = record.into_view(self.currencies())?;
        let currency = self.currency(&view.currency)?;
        type Row = (
            String,
            bool,
            i64,
            i64,
            bool,
            super::disputes::PaymentDisputeRow,
        );
        let payment_rows: Vec<Row> = payments::table
            .filter(payments::order_id.eq(id))
            .order(payments::id.asc())
            .select((
                payments::processor_ref,
                payments::authorized,
                payments::paid_minor,
                payments::refunded_minor,
                payments::reversed,
                super::disputes::PaymentDisputeRow::as_select(),
            ))
            .load(&mut conn)
            .await?;
        view.payments = payment_rows
            .into_iter()
            .map(
                |(processor_ref, authorized, paid, refunded, reversed, dispute)| {
                    let mut facts = PaymentFacts {
                        authorized,
                        paid,
                        refunded,
                        reversed,
                        ..PaymentFacts::default()
                    };
                    dispute.fill(&mut facts);
                    let amount = |minor| Money::from_minor(minor, currency).format_amount();
                    PaymentView {
                        processor_ref,
                        state: payment_state_name(facts.state()),
                        authorized,
                        paid: amount(paid),
                        refunded: amount(refunded),
                        reversed,
                        charged_back: amount(facts.charged_back()),
                        reinstated: amount(facts.reinstated()),
                        dispute: if facts.dispute_won {
                            Some("won")
                        } else if facts.dispute_lost {
                            Some("lost")
                        } else if facts.dispute_opened {
                            Some("open")
                        } else {
                            None
                        },
                    }
                },
            )
            .collect();
        let rows: Vec<LedgerRow> = order_events::table
            .left_join(notifications::table)
            .filter(order_events::order_id.eq(id))
            .order(order_events::id.asc())
            .select((
                order_events::created_at,
                order_events::order_status,
                order_events::effect,
                order_events::old_status,
                order_events::new_status,
                order_events::amount_minor,
                order_events::currency,
                order_events::reason,
                notifications::processor_ref.nullable(),
                notifications::body_sha256.nullable(),
                order_events::resolution_id,
            ))
            .load(&mut conn)
            .await?;
        view.events = rows
            .into_iter()
            .map(
                |(
                    at,
                    order_status,
                    Stored(effect),
                    Stored(old_status),
                    Stored(new_status),
                    minor,
                    event_currency,
                    reason,
                    processor_ref,
                    sha,
                    resolution_id,
                )| {
                    let amount = self
                        .currencies()
                        .currency(&event_currency)
                        .map(|c| Money::from_minor(minor, c).format_amount())
                        .unwrap_or_else(|_| Money::from_minor(minor, currency).format_amount());
                    OrderEventView {
                        at,
                        order_status,
                        effect,
                        old_status,
                        new_status,
                        amount,
                        currency: event_currency,
                        reason,
                        processor_ref,
                        notification_sha256: sha,
                        resolution_id,
                    }
                },
            )
            .collect();
        Ok(Some(view))
    }

    /// Orders, oldest first, optionally only those in one state.
    pub async fn list_orders(
        &self,
        status: Option<OrderState>,
    ) -> Result<Vec<OrderView>, StoreError> {
        let mut conn = self.conn().await?;
        let mut query = orders::table
            .select(OrderRecord::as_select())
            .order((orders::created_at.asc(), orders::id.asc()))
            .into_boxed();
        if let Some(status) = status {
            query = query.filter(orders::status.eq(Stored(status)));
        }
        let records: Vec<OrderRecord> = query.load(&mut conn).await?;
        records
            .into_iter()
            .map(|record| record.into_view(self.currencies()).map(|(_, view)| view))
            .collect()
    }
}

impl Store {
    /// The orders of one customer: those named (REFNOEXT) by a notification
    /// that carried the customer's e-mail pseudonym, oldest first. Only
    /// notifications processed with `pseudonym-key-file` carry one.
    pub async fn orders_of_customer(
        &self,
        customer: &Pseudonym,
    ) -> Result<Vec<OrderView>, StoreError> {
        let mut conn = self.conn().await?;
        let named = notifications::table
            .filter(notifications::customer_pseudonym.eq(customer.as_str()))
            .select(notifications::order_ref);
        let records: Vec<OrderRecord> = orders::table
            .filter(orders::order_ref.nullable().eq_any(named))
            .select(OrderRecord::as_select())
            .order((orders::created_at.asc(), orders::id.asc()))
            .load(&mut conn)
            .await?;
        records
            .into_iter()
            .map(|record| record.into_view(self.currencies()).map(|(_, view)| view))
            .collect()
    }
}

/// The name a payment's state is shown under.
fn payment_state_name(state: PaymentState) -> &'static str {
    match state {
        PaymentState::Unmatched => "unmatched",
        PaymentState::Authorized => "authorized",
        PaymentState::Released => "released",
        PaymentState::ChargedBack => "charged_back",
        PaymentState::Refunded => "refunded",
        PaymentState::PartiallyRefunded => "partially_refunded",
        PaymentState::Paid => "paid",
    }
}
