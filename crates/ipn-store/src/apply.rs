//! What the one write path shares, and what is recorded outside of it.
//!
//! A verified, tokenized notification is applied by exactly one
//! implementation, [`super::batch`]: [`Store::apply`] is a batch of one
//! (the pipeline's single notification and the worker's one-by-one
//! fallback after a failed batch alike). What it means to claim a delivery
//! (a body, an identity, a repeat of it) is described there.
//!
//! Here are the pieces that path shares with the others: the report of an
//! apply, the notification and order rows, the review items of a repeat
//! ([`repeat_reviews`]) and the statements that close review items; the
//! record of a notification refused before tokenization
//! ([`Store::record_rejected`]); and the writes of a review action that
//! applies a notification recorded before ([`apply_repeat`],
//! [`apply_to_order`]; they decide and write with the batch's own steps,
//! [`super::batch::apply_recorded`]) or records a refund outside the
//! processor ([`lock_order_facts`], [`write_facts`]), each in the
//! transaction of the workflow that calls it
//! ([`crate::services::review`]).

use super::sql::Stored;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::future::BoxFuture;

use super::reuse::Reuse;
use super::schema::{notifications, orders, payments, review_items};
use super::{Store, StoreError};
use crate::domain::repeats::{Repeat, is_possible_second_event};
use crate::domain::{
    AutoResolution, BodyDigest, Currencies, Currency, Decision, EventIdentity, Money,
    NewReviewItem, OrderFacts, OrderKey, OrderOrigin, OrderState, Outcome, PaymentEvent,
    PaymentFacts, ReconcilePolicy, ReviewKind, StatusCategory, StatusField,
};
use crate::ipn::{Algorithm, KeyId};

/// Who closes the review items that stop being true.
pub const SYSTEM_RESOLVER: &str = "system";

/// What applying one notification did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    pub outcome: Outcome,
    /// The order's state after the notification, when the order exists.
    pub order_state: Option<OrderState>,
    /// Review items opened by this notification.
    pub review_items: Vec<ReviewKind>,
    /// When this notification made its order reconciled
    /// ([`reaches_reconciled`](crate::domain::journal::reaches_reconciled)):
    /// when that order was created, so the caller can measure how long it
    /// took (the finance histogram) with its own clock.
    pub reconciled_order_created: Option<DateTime<Utc>>,
}

impl ApplyReport {
    pub(super) fn only(outcome: Outcome) -> Self {
        Self {
            outcome,
            order_state: None,
            review_items: Vec::new(),
            reconciled_order_created: None,
        }
    }
}

/// A notification refused before tokenization (bad signature, malformed
/// body, card number in a stored field): only its digest and why.
#[derive(Debug, Clone)]
pub struct RejectedNotification {
    pub body_sha256: String,
    pub outcome: Outcome,
    /// Short machine reason, never a field value.
    pub reason: String,
    pub received_at: DateTime<Utc>,
    /// When it was judged: the caller's clock (the store reads none).
    pub processed_at: DateTime<Utc>,
    /// Fields where a card number was found (names only).
    pub pan_fields: Vec<String>,
}

/// Outcomes after which a notification may be processed again: the cause
/// may have been fixed (the order imported, a key added).
pub(super) const REPROCESSABLE: [Outcome; 3] = [
    Outcome::OrderNotFound,
    Outcome::InvalidSignature,
    Outcome::Malformed,
];

/// Bounds of the in-process retry of transient database errors.
#[derive(Debug, Clone, Copy)]
pub struct RetryBounds {
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub max_attempts: usize,
}

impl Default for RetryBounds {
    fn default() -> Self {
        Self {
            first_delay: Duration::from_millis(20),
            max_delay: Duration::from_secs(2),
            max_attempts: 6,
        }
    }
}

impl RetryBounds {
    /// The backoff these bounds describe (with jitter), for `backon`.
    pub fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.first_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_attempts)
            .with_jitter()
    }
}

/// What a notification row keeps of a tokenized event: the allow-listed
/// references, never a body or personal data. All empty for a notification
/// refused before tokenization.
///
/// `None` is written as NULL, both when inserted and when set: as a
/// `DEFAULT` or a skipped column, it would change the statement's text
/// with the values, and the batch path keeps one prepared statement per
/// text ([`super::reuse`]).
#[derive(Insertable, AsChangeset, Default)]
#[diesel(
    table_name = notifications,
    treat_none_as_null = true,
    treat_none_as_default_value = false
)]
pub(super) struct TokenizedColumns<'a> {
    processor_ref: Option<&'a str>,
    order_ref: Option<&'a str>,
    order_status: Option<&'a str>,
    amount_minor: Option<i64>,
    currency: Option<&'a str>,
    payment_method: Option<&'a str>,
    customer_pseudonym: Option<&'a str>,
    test_order: bool,
    fraud_denied: bool,
    ipn_date: Option<NaiveDateTime>,
    key_id: Option<&'a str>,
    algorithm: Option<&'a str>,
    /// The money the notice carries, as sent
    /// ([`super::notice_money::NotificationMoney`]): what a notification
    /// applied later by a person is rebuilt with.
    vat_minor: Option<i64>,
    commission_e8: Option<i64>,
    payable_minor: Option<i64>,
    payout_currency: Option<String>,
    fx_rate: Option<String>,
    fx_markup: Option<String>,
    /// The dispute the notice is about, as read
    /// ([`super::disputes::NotificationDispute`]).
    chargeback_resolution: Option<String>,
    chargeback_reason_code: Option<String>,
}

impl<'a> TokenizedColumns<'a> {
    pub(super) fn of(event: &'a PaymentEvent, currency: &'a Currency) -> Self {
        Self {
            processor_ref: Some(&event.processor_ref),
            order_ref: event.merchant_ref.as_deref(),
            order_status: Some(event.status.as_str()),
            amount_minor: Some(event.amount.minor_units()),
            currency: Some(currency.as_str()),
            payment_method: event.payment_method.as_deref(),
            customer_pseudonym: event.customer_pseudonym.as_ref().map(|p| p.as_str()),
            test_order: event.test_order,
            fraud_denied: event.fraud_denied,
            ipn_date: event.ipn_date,
            key_id: Some(event.key_id.as_str()),
            algorithm: Some(event.algorithm.as_str()),
            vat_minor: event.money.vat.map(|v| v.minor_units()),
            commission_e8: event.money.commission.map(|c| c.e8()),
            payable_minor: event.money.payable.map(|p| p.minor_units()),
            payout_currency: event
                .money
                .payable
                .map(|p| p.currency().as_str().to_owned()),
            fx_rate: event.money.fx_rate.as_ref().map(|r| r.as_str().to_owned()),
            fx_markup: event
                .money
                .fx_markup
                .as_ref()
                .map(|r| r.as_str().to_owned()),
            chargeback_resolution: event
                .chargeback
                .as_ref()
                .map(|c| c.resolution.as_str().to_owned()),
            chargeback_reason_code: event
                .chargeback
                .as_ref()
                .and_then(|c| c.reason_code.clone()),
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = notifications)]
pub(super) struct NewNotification<'a> {
    pub(super) body_sha256: &'a str,
    #[diesel(embed)]
    pub(super) tokenized: TokenizedColumns<'a>,
    pub(super) received_at: DateTime<Utc>,
    pub(super) processed_at: Option<DateTime<Utc>>,
    pub(super) outcome: Stored<Outcome>,
    pub(super) reason: Option<&'a str>,
}

/// What a notification says, as stored: compared between the first
/// delivery of an identity and its repeats.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = notifications)]
pub(super) struct Meaning {
    processor_ref: Option<String>,
    order_ref: Option<String>,
    order_status: Option<String>,
    amount_minor: Option<i64>,
    currency: Option<String>,
    test_order: bool,
    fraud_denied: bool,
}

impl Meaning {
    pub(super) fn of(event: &PaymentEvent) -> Self {
        Self {
            processor_ref: Some(event.processor_ref.clone()),
            order_ref: event.merchant_ref.clone(),
            order_status: Some(event.status.as_str().to_owned()),
            amount_minor: Some(event.amount.minor_units()),
            currency: Some(event.amount.currency().as_str().to_owned()),
            test_order: event.test_order,
            fraud_denied: event.fraud_denied,
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = orders)]
pub(super) struct OrderRow {
    pub(super) id: i64,
    #[diesel(deserialize_as = Stored<OrderOrigin>)]
    pub(super) origin: OrderOrigin,
    pub(super) expected_minor: i64,
    pub(super) currency: String,
    pub(super) processor_ref: Option<String>,
    pub(super) canceled: bool,
    pub(super) suspect: bool,
    pub(super) mismatch: bool,
    pub(super) created_at: DateTime<Utc>,
    /// The shop stated the expected amount (a processor order imported
    /// with its `REFNO`): notices do not raise it.
    pub(super) expected_stated: bool,
}

#[derive(Queryable, QueryableByName, Selectable)]
#[diesel(table_name = payments)]
pub(super) struct PaymentRow {
    pub(super) order_id: i64,
    pub(super) processor_ref: String,
    pub(super) authorized: bool,
    pub(super) paid_minor: i64,
    pub(super) refunded_minor: i64,
    pub(super) reversed: bool,
    /// VAT, commission and the payout side.
    #[diesel(embed)]
    pub(super) money: super::notice_money::PaymentMoneyRow,
    /// The dispute facts.
    #[diesel(embed)]
    pub(super) dispute: super::disputes::PaymentDisputeRow,
}

/// Loads an order's facts: the order row and its payments.
async fn load_facts(
    conn: &mut AsyncPgConnection,
    order: &OrderRow,
    currencies: &Currencies,
) -> Result<OrderFacts, StoreError> {
    let rows: Vec<PaymentRow> = payments::table
        .filter(payments::order_id.eq(order.id))
        .select(PaymentRow::as_select())
        .load(conn)
        .await?;
    facts_of(order, rows, currencies)
}

/// An order's facts from its row and its payments' rows, its currency read
/// with `currencies` (the store's table).
pub(super) fn facts_of(
    order: &OrderRow,
    rows: Vec<PaymentRow>,
    currencies: &Currencies,
) -> Result<OrderFacts, StoreError> {
    let currency = currencies
        .currency(&order.currency)
        .map_err(|err| StoreError::Invalid(format!("order {}: {err}", order.id)))?;
    Ok(OrderFacts {
        expected: Money::from_minor(order.expected_minor, currency),
        canceled: order.canceled,
        suspect: order.suspect,
        mismatch: order.mismatch,
        payments: rows
            .into_iter()
            .map(|row| {
                let mut facts = PaymentFacts {
                    authorized: row.authorized,
                    paid: row.paid_minor,
                    refunded: row.refunded_minor,
                    reversed: row.reversed,
                    ..PaymentFacts::default()
                };
                row.money.fill(&mut facts, currencies)?;
                row.dispute.fill(&mut facts);
                Ok((row.processor_ref, facts))
            })
            .collect::<Result<_, StoreError>>()?,
        processor_ref: order.processor_ref.clone(),
    })
}

impl Store {
    /// Records a notification that was refused before it could be applied.
    /// A repeat of the same body updates nothing (it is still refused).
    pub async fn record_rejected(&self, rejected: &RejectedNotification) -> Result<(), StoreError> {
        (|| async {
            let mut conn = self.conn().await?;
            record_rejected_once(&mut conn, rejected).await
        })
        .retry(RetryBounds::default().backoff())
        .when(StoreError::is_transient)
        .await
    }
}

/// Applies the repeat recorded as notification `notification_id` as a
/// notification of its own, in the caller's transaction: what a person
/// decides for a `late_repeat` (a genuine second refund of the same
/// amount). The ledger row says who confirmed it. Refused
/// (`StoreError::Invalid`) for a notification that is not an unapplied
/// repeat, so a repeat is applied at most once.
pub async fn apply_repeat(
    conn: &mut AsyncPgConnection,
    notification_id: i64,
    confirmed_by: &str,
    policy: &ReconcilePolicy,
    currencies: &Currencies,
) -> Result<ApplyReport, StoreError> {
    let event = stored_event(conn, notification_id, currencies).await?;
    let (Stored(outcome), repeat_of): (Stored<Outcome>, Option<i64>) = notifications::table
        .find(notification_id)
        .select((notifications::outcome, notifications::repeat_of))
        .for_update()
        .first(conn)
        .await?;
    if outcome != Outcome::Duplicate || repeat_of.is_none() {
        return Err(StoreError::Invalid(format!(
            "notification #{notification_id} is not an unapplied repeat (it is {outcome})"
        )));
    }
    let note = format!("repeat confirmed by {confirmed_by} as a notification of its own");
    let key = policy.order_source.key(&event);
    super::batch::apply_recorded(
        conn,
        &event,
        &key,
        notification_id,
        policy,
        currencies,
        Some(&note),
    )
    .await
}

/// Applies notification `notification_id`, recorded before (one that
/// found no order), to order `order_ref` instead of the order it names, in
/// the caller's transaction: an orphan's payment linked to its order by a
/// person. `ledger_note` says who, on the ledger row.
pub async fn apply_to_order(
    conn: &mut AsyncPgConnection,
    notification_id: i64,
    order_ref: &str,
    policy: &ReconcilePolicy,
    currencies: &Currencies,
    ledger_note: &str,
) -> Result<ApplyReport, StoreError> {
    let event = stored_event(conn, notification_id, currencies).await?;
    let origin: Option<Stored<OrderOrigin>> = orders::table
        .filter(orders::order_ref.eq(order_ref))
        .select(orders::origin)
        .first(conn)
        .await
        .optional()?;
    // The order as it is, whatever its origin: a person chose it.
    let key = OrderKey {
        origin: origin.map_or(OrderOrigin::Merchant, |Stored(origin)| origin),
        order_ref: order_ref.to_owned(),
        creates: false,
    };
    super::batch::apply_recorded(
        conn,
        &event,
        &key,
        notification_id,
        policy,
        currencies,
        Some(ledger_note),
    )
    .await
}

/// Order `order_ref`, locked (`FOR UPDATE`) until the caller's
/// transaction ends: its id and its facts; `None` when there is no such
/// order.
pub async fn lock_order_facts(
    conn: &mut AsyncPgConnection,
    order_ref: &str,
    currencies: &Currencies,
) -> Result<Option<(i64, OrderFacts)>, StoreError> {
    let order: Option<OrderRow> = orders::table
        .filter(orders::order_ref.eq(order_ref))
        .select(OrderRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?;
    match order {
        Some(order) => Ok(Some((
            order.id,
            load_facts(conn, &order, currencies).await?,
        ))),
        None => Ok(None),
    }
}

/// Rebuilds the event a stored notification row describes (a verified,
/// tokenized notification: everything `decide` needs is in its columns,
/// the money it carried included), its amount read with `currencies` (the
/// store's table). A row recorded before the notifications kept the money
/// (migration `2026-12-07-000050_notice_money_kept`) has none: it is
/// rebuilt as a notice without money fields, which books no VAT,
/// commission or payout.
pub async fn stored_event(
    conn: &mut AsyncPgConnection,
    notification_id: i64,
    currencies: &Currencies,
) -> Result<PaymentEvent, StoreError> {
    #[derive(Queryable)]
    struct Row {
        body_sha256: String,
        identity: Option<String>,
        meaning: Meaning,
        ipn_date: Option<NaiveDateTime>,
        key_id: Option<String>,
        algorithm: Option<String>,
        money: super::notice_money::NotificationMoney,
        dispute: super::disputes::NotificationDispute,
    }
    let row: Row = notifications::table
        .find(notification_id)
        .select((
            notifications::body_sha256,
            notifications::identity,
            Meaning::as_select(),
            notifications::ipn_date,
            notifications::key_id,
            notifications::algorithm,
            super::notice_money::NotificationMoney::as_select(),
            super::disputes::NotificationDispute::as_select(),
        ))
        .first(conn)
        .await?;
    let invalid =
        |what: &str| StoreError::Invalid(format!("notification #{notification_id}: {what}"));
    let m = row.meaning;
    let currency = m
        .currency
        .as_deref()
        .and_then(|c| currencies.currency(c).ok())
        .ok_or_else(|| invalid("no currency"))?;
    Ok(PaymentEvent {
        carries_message_id: false,
        digest: BodyDigest::parse(&row.body_sha256).map_err(|_| invalid("bad digest"))?,
        identity: row
            .identity
            .as_deref()
            .and_then(|i| EventIdentity::parse(i).ok())
            .ok_or_else(|| invalid("no identity"))?,
        processor_ref: m.processor_ref.ok_or_else(|| invalid("no REFNO"))?,
        merchant_ref: m.order_ref,
        status: StatusField::parse(m.order_status.as_deref().unwrap_or_default()),
        fraud_denied: m.fraud_denied,
        test_order: m.test_order,
        amount: Money::from_minor(
            m.amount_minor.ok_or_else(|| invalid("no amount"))?,
            currency,
        ),
        payment_method: None,
        sale_date: None,
        payment_date: None,
        complete_date: None,
        ipn_date: row.ipn_date,
        key_id: row
            .key_id
            .as_deref()
            .and_then(|k| KeyId::parse(k).ok())
            .ok_or_else(|| invalid("no key id"))?,
        algorithm: row
            .algorithm
            .as_deref()
            .and_then(Algorithm::parse)
            .ok_or_else(|| invalid("no algorithm"))?,
        customer_pseudonym: None,
        pan_fields: Vec::new(),
        // Recorded when the notice was first processed (subscriptions).
        licences: Vec::new(),
        // As read; none on a row recorded before the notifications kept it
        // (migration 2026-12-08-000100).
        chargeback: row.dispute.notice(),
        // As the notice sent it; none on a row recorded before the
        // notifications kept it (migration 2026-12-07-000050).
        money: row
            .money
            .notice_money(currency, currencies)
            .map_err(|err| invalid(&err))?,
    })
}

async fn record_rejected_once(
    conn: &mut AsyncPgConnection,
    rejected: &RejectedNotification,
) -> Result<(), StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let row = NewNotification {
            body_sha256: &rejected.body_sha256,
            tokenized: TokenizedColumns::default(),
            received_at: rejected.received_at,
            processed_at: Some(rejected.processed_at),
            outcome: Stored(rejected.outcome),
            reason: Some(&rejected.reason),
        };
        let inserted: Option<i64> = diesel::insert_into(notifications::table)
            .values(&row)
            .on_conflict(notifications::body_sha256)
            .do_nothing()
            .returning(notifications::id)
            .get_result(conn)
            .await
            .optional()?;
        let Some(notification_id) = inserted else {
            // Seen before: keep the first record (it may even be applied).
            return Ok(());
        };
        if !rejected.pan_fields.is_empty() {
            let item = NewReviewItem::pan_detected(&rejected.pan_fields);
            insert_review_item(conn, &item, None, Some(notification_id)).await?;
        }
        Ok(())
    })
    .await
}

/// The review items of a repeat, given every earlier delivery of its
/// identity (date and meaning): a copy that says something no earlier one
/// said (`conflicting_copy`); a payment, refund, reversal or chargeback
/// without `MESSAGE_ID` dated unlike every earlier delivery
/// (`possible_second_event`: a processor retry or a genuine second event
/// of the same values, which must not be merged silently). The counts do
/// not depend on the order the deliveries arrived in
/// ([`crate::domain::repeats`]).
pub(super) fn repeat_reviews(
    event: &PaymentEvent,
    id: i64,
    first_id: i64,
    history: &[(Option<NaiveDateTime>, Meaning)],
) -> Vec<NewReviewItem> {
    let mut open = Vec::new();
    let meaning = Meaning::of(event);
    if !history.iter().any(|(_, said)| *said == meaning) {
        open.push(NewReviewItem::for_payment(
            ReviewKind::ConflictingCopy,
            &event.processor_ref,
            format!(
                "notification #{id} has the signed values of notification #{first_id} but says {} {} under processor reference {}: \
                 field names were changed; it changed nothing",
                event.status.as_str(),
                event.amount,
                event.processor_ref
            ),
        ));
    }
    let repeat = Repeat {
        moves_money: matches!(
            event.status.known().map(|s| s.category()),
            Some(StatusCategory::Payment | StatusCategory::Refund | StatusCategory::Reversal)
        ),
        carries_message_id: event.carries_message_id,
        ipn_date: event.ipn_date,
    };
    let earlier: Vec<Option<NaiveDateTime>> = history.iter().map(|(date, _)| *date).collect();
    if let (true, Some(this)) = (is_possible_second_event(repeat, &earlier), event.ipn_date) {
        let nearest = earlier
            .iter()
            .flatten()
            .map(|date| (this - *date).abs())
            .min()
            .unwrap_or_default();
        open.push(NewReviewItem::for_payment(
            ReviewKind::PossibleSecondEvent,
            &event.processor_ref,
            format!(
                "{} of {} under processor reference {} has the signed values of notification #{first_id} \
                 but another IPN_DATE ({}, {} minutes from its nearest earlier delivery) and no MESSAGE_ID: \
                 counted once. If it is a second one, resolve with apply_repeat (applies notification #{id}); \
                 if the processor sent it again, accept_as_is",
                event.status.as_str(),
                event.amount.abs(),
                event.processor_ref,
                this.format("%Y-%m-%d %H:%M:%S"),
                nearest.num_minutes(),
            ),
        ));
    }
    open
}

/// Resolves the open items `selected` names, as [`SYSTEM_RESOLVER`] with
/// `note`, in one statement on a shared connection.
fn resolve_open_items<'a>(
    conn: &'a AsyncPgConnection,
    selected: review_items::BoxedQuery<'static, diesel::pg::Pg, diesel::sql_types::Int8>,
    note: &str,
) -> BoxFuture<'a, QueryResult<usize>> {
    diesel::update(
        review_items::table
            .filter(review_items::status.eq("open"))
            .filter(review_items::id.eq_any(selected)),
    )
    .set((
        review_items::status.eq("resolved"),
        review_items::resolved_by.eq(SYSTEM_RESOLVER),
        review_items::resolution_note.eq(note.to_owned()),
        review_items::resolved_at.eq(diesel::dsl::now),
    ))
    .reused()
    .execute(&mut &*conn)
}

/// Writes what changed: the order's summary columns and the payments whose
/// facts changed.
pub async fn write_facts(
    conn: &mut AsyncPgConnection,
    order_id: i64,
    before: &OrderFacts,
    decision: &Decision,
) -> Result<(), StoreError> {
    let new = &decision.facts;
    if new == before {
        return Ok(());
    }
    diesel::update(orders::table.find(order_id))
        .set((
            orders::status.eq(Stored(decision.new_state)),
            orders::expected_minor.eq(new.expected.minor_units()),
            orders::processor_ref.eq(new.processor_ref.as_deref()),
            orders::paid_minor.eq(new.paid()),
            orders::refunded_minor.eq(new.refunded()),
            orders::charged_back_minor.eq(new.charged_back()),
            orders::reinstated_minor.eq(new.reinstated()),
            orders::authorized.eq(new.authorized()),
            orders::reversed.eq(new.reversed()),
            orders::canceled.eq(new.canceled),
            orders::suspect.eq(new.suspect),
            orders::mismatch.eq(new.mismatch),
            orders::updated_at.eq(diesel::dsl::now),
            orders::version.eq(orders::version + 1),
        ))
        .execute(conn)
        .await?;
    for (processor_ref, payment) in &new.payments {
        if before.payments.get(processor_ref) == Some(payment) {
            continue;
        }
        diesel::insert_into(payments::table)
            .values((
                payments::order_id.eq(order_id),
                payments::processor_ref.eq(processor_ref),
                payments::authorized.eq(payment.authorized),
                payments::paid_minor.eq(payment.paid),
                payments::refunded_minor.eq(payment.refunded),
                payments::reversed.eq(payment.reversed),
                payments::dispute_opened.eq(payment.dispute_opened),
                payments::dispute_won.eq(payment.dispute_won),
                payments::dispute_lost.eq(payment.dispute_lost),
                payments::chargeback_minor.eq(payment.chargeback),
                payments::reinstated_minor.eq(payment.reinstated()),
            ))
            .on_conflict((payments::order_id, payments::processor_ref))
            .do_update()
            .set((
                payments::authorized.eq(payment.authorized),
                payments::paid_minor.eq(payment.paid),
                payments::refunded_minor.eq(payment.refunded),
                payments::reversed.eq(payment.reversed),
                payments::dispute_opened.eq(payment.dispute_opened),
                payments::dispute_won.eq(payment.dispute_won),
                payments::dispute_lost.eq(payment.dispute_lost),
                payments::chargeback_minor.eq(payment.chargeback),
                payments::reinstated_minor.eq(payment.reinstated()),
                payments::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Closes the oldest `resolution.count` open items of its kind (and
/// payment) on the order, as resolved by [`SYSTEM_RESOLVER`]: one
/// statement on a shared connection, to be pipelined with others (see
/// [`super::batch`]).
pub(super) fn resolve_items_statement<'a>(
    conn: &'a AsyncPgConnection,
    order_ref: &str,
    resolution: &AutoResolution,
) -> BoxFuture<'a, QueryResult<usize>> {
    let mut oldest_open = review_items::table
        .filter(review_items::status.eq("open"))
        .filter(review_items::order_ref.eq(order_ref.to_owned()))
        .filter(review_items::kind.eq(Stored(resolution.kind)))
        .select(review_items::id)
        .order(review_items::id.asc())
        .into_boxed();
    if let Some(processor_ref) = &resolution.processor_ref {
        oldest_open = oldest_open.filter(review_items::processor_ref.eq(processor_ref.clone()));
    }
    let oldest_open = oldest_open.limit(i64::try_from(resolution.count).unwrap_or(i64::MAX));
    resolve_open_items(conn, oldest_open, &resolution.note)
}

/// Closes, as the system, the open items `resolution` names on order
/// `order_ref`, in the caller's transaction: what a notification's
/// decision does, for a person's action that made their condition untrue
/// (a chargeback reinstated by `book_reinstatement`).
pub async fn close_items(
    conn: &mut AsyncPgConnection,
    order_ref: &str,
    resolution: &AutoResolution,
) -> Result<usize, StoreError> {
    Ok(resolve_items_statement(conn, order_ref, resolution).await?)
}

pub(crate) async fn insert_review_item(
    conn: &mut AsyncPgConnection,
    item: &NewReviewItem,
    order_ref: Option<&str>,
    notification_id: Option<i64>,
) -> Result<(), StoreError> {
    diesel::insert_into(review_items::table)
        .values((
            review_items::kind.eq(Stored(item.kind)),
            review_items::order_ref.eq(order_ref),
            review_items::processor_ref.eq(item.processor_ref.as_deref()),
            review_items::notification_id.eq(notification_id),
            review_items::details.eq(&item.details),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

impl Store {
    /// Opens a review item for a person, outside of a notification's apply
    /// (for example `orphan_payment` once the retry window has passed).
    /// `body_sha256` links it to the recorded notification when there is one;
    /// a notification opens at most one item of each kind.
    pub async fn open_review_item(
        &self,
        kind: ReviewKind,
        order_ref: Option<&str>,
        body_sha256: Option<&str>,
        details: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let notification_id: Option<i64> = match body_sha256 {
            None => None,
            Some(digest) => notifications::table
                .filter(notifications::body_sha256.eq(digest))
                .select(notifications::id)
                .first(&mut conn)
                .await
                .optional()?,
        };
        let item = NewReviewItem::new(kind, details);
        insert_review_item(&mut conn, &item, order_ref, notification_id).await
    }
}
