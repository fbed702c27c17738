//! Applying one tokenized notification to its order, atomically.
//!
//! One transaction per notification: record the notification (its body digest
//! is unique, so a redelivery ends here as `duplicate`), lock the order row,
//! let the pure state machine decide, write the new facts, append the ledger
//! row, open review items, commit. A crash anywhere before the commit leaves
//! nothing behind; a crash after it makes the redelivery a no-op.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::schema::{notifications, order_events, orders, review_items};
use super::{Store, StoreError};
use crate::domain::{
    Currency, Money, NewReviewItem, OrderFacts, OrderState, Outcome, PaymentEvent, ReconcilePolicy,
    ReviewKind, decide,
};

/// What applying one notification did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    pub outcome: Outcome,
    /// The order's state after the notification, when the order exists.
    pub order_state: Option<OrderState>,
    /// Review items opened by this notification.
    pub review_items: Vec<ReviewKind>,
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
    /// Fields where a card number was found (names only).
    pub pan_fields: Vec<String>,
}

/// Outcomes after which a notification may be processed again: the cause
/// may have been fixed (the order imported, a key added).
const REPROCESSABLE: [Outcome; 3] = [
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
    fn backoff(&self) -> ExponentialBuilder {
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
#[derive(Insertable, AsChangeset, Default)]
#[diesel(table_name = notifications, treat_none_as_null = true)]
struct TokenizedColumns<'a> {
    processor_ref: Option<&'a str>,
    order_ref: Option<&'a str>,
    order_status: Option<&'a str>,
    amount_minor: Option<i64>,
    currency: Option<&'a str>,
    payment_method: Option<&'a str>,
    customer_pseudonym: Option<&'a str>,
    test_order: bool,
    ipn_date: Option<chrono::NaiveDateTime>,
    key_id: Option<&'a str>,
    algorithm: Option<&'a str>,
}

impl<'a> TokenizedColumns<'a> {
    fn of(event: &'a PaymentEvent, currency: &'a Currency) -> Self {
        Self {
            processor_ref: Some(&event.processor_ref),
            order_ref: Some(&event.order_ref),
            order_status: Some(event.status.as_str()),
            amount_minor: Some(event.amount.minor_units()),
            currency: Some(currency.as_str()),
            payment_method: event.payment_method.as_deref(),
            customer_pseudonym: event.customer_pseudonym.as_ref().map(|p| p.as_str()),
            test_order: event.test_order,
            ipn_date: event.ipn_date,
            key_id: Some(event.key_id.as_str()),
            algorithm: Some(event.algorithm.as_str()),
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = notifications)]
struct NewNotification<'a> {
    body_sha256: &'a str,
    #[diesel(embed)]
    tokenized: TokenizedColumns<'a>,
    received_at: DateTime<Utc>,
    processed_at: Option<DateTime<Utc>>,
    outcome: Outcome,
    reason: Option<&'a str>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = orders)]
struct OrderRow {
    id: i64,
    expected_minor: i64,
    currency: String,
    processor_ref: Option<String>,
    paid_minor: i64,
    refunded_minor: i64,
    authorized: bool,
    reversed: bool,
    canceled: bool,
    suspect: bool,
    mismatch: bool,
}

impl OrderRow {
    fn facts(&self) -> Result<OrderFacts, StoreError> {
        let currency = Currency::parse(&self.currency)
            .map_err(|err| StoreError::Invalid(format!("order {}: {err}", self.id)))?;
        Ok(OrderFacts {
            expected: Money::from_minor(self.expected_minor, currency),
            authorized: self.authorized,
            paid: self.paid_minor,
            refunded: self.refunded_minor,
            reversed: self.reversed,
            canceled: self.canceled,
            suspect: self.suspect,
            mismatch: self.mismatch,
            processor_ref: self.processor_ref.clone(),
        })
    }
}

impl Store {
    /// Applies a verified, tokenized notification to its order, retrying
    /// transient database errors with bounded exponential backoff.
    pub async fn apply(
        &self,
        event: &PaymentEvent,
        received_at: DateTime<Utc>,
        policy: &ReconcilePolicy,
    ) -> Result<ApplyReport, StoreError> {
        self.apply_with_retry(event, received_at, policy, RetryBounds::default())
            .await
    }

    /// [`Store::apply`] with explicit retry bounds.
    pub async fn apply_with_retry(
        &self,
        event: &PaymentEvent,
        received_at: DateTime<Utc>,
        policy: &ReconcilePolicy,
        bounds: RetryBounds,
    ) -> Result<ApplyReport, StoreError> {
        (|| async {
            let mut conn = self.conn().await?;
            apply_once(&mut conn, event, received_at, policy).await
        })
        .retry(bounds.backoff())
        .when(StoreError::is_transient)
        .notify(|err, after| {
            tracing::warn!(error = %err, retry_in = ?after, "transient database error, retrying");
        })
        .await
    }

    /// Records a notification that was refused before it could be applied.
    /// A repeat of the same body updates the reason (it is still refused).
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

async fn record_rejected_once(
    conn: &mut AsyncPgConnection,
    rejected: &RejectedNotification,
) -> Result<(), StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let row = NewNotification {
            body_sha256: &rejected.body_sha256,
            tokenized: TokenizedColumns::default(),
            received_at: rejected.received_at,
            processed_at: Some(Utc::now()),
            outcome: rejected.outcome,
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
            insert_review_item(conn, item.kind, None, Some(notification_id), &item.details).await?;
        }
        Ok(())
    })
    .await
}

/// One attempt: the whole decision in one transaction.
pub(crate) async fn apply_once(
    conn: &mut AsyncPgConnection,
    event: &PaymentEvent,
    received_at: DateTime<Utc>,
    policy: &ReconcilePolicy,
) -> Result<ApplyReport, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let Some(notification_id) = claim_notification(conn, event, received_at).await? else {
            return Ok(ApplyReport {
                outcome: Outcome::Duplicate,
                order_state: None,
                review_items: Vec::new(),
            });
        };

        let mut opened = Vec::new();
        let order: Option<OrderRow> = orders::table
            .filter(orders::order_ref.eq(&event.order_ref))
            .select(OrderRow::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()?;
        let Some(order) = order else {
            // `decide` raises `pan_detected` for known orders; an orphan
            // must not wait for its order to report a card number.
            if !event.pan_fields.is_empty() {
                let item = NewReviewItem::pan_detected(&event.pan_fields);
                open_items(conn, event, notification_id, &[item], &mut opened).await?;
            }
            finish_notification(
                conn,
                notification_id,
                Outcome::OrderNotFound,
                "order_not_found",
            )
            .await?;
            return Ok(ApplyReport {
                outcome: Outcome::OrderNotFound,
                order_state: None,
                review_items: opened,
            });
        };

        let facts = order.facts()?;
        let decision = decide(&facts, event, policy);
        let new = &decision.facts;
        let changed = new != &facts;
        if changed {
            diesel::update(orders::table.find(order.id))
                .set((
                    orders::status.eq(decision.new_state),
                    orders::processor_ref.eq(new.processor_ref.as_deref()),
                    orders::paid_minor.eq(new.paid),
                    orders::refunded_minor.eq(new.refunded),
                    orders::authorized.eq(new.authorized),
                    orders::reversed.eq(new.reversed),
                    orders::canceled.eq(new.canceled),
                    orders::suspect.eq(new.suspect),
                    orders::mismatch.eq(new.mismatch),
                    orders::updated_at.eq(diesel::dsl::now),
                    orders::version.eq(orders::version + 1),
                ))
                .execute(conn)
                .await?;
        }
        diesel::insert_into(order_events::table)
            .values((
                order_events::order_id.eq(order.id),
                order_events::notification_id.eq(notification_id),
                order_events::order_status.eq(event.status.as_str()),
                order_events::effect.eq(decision.effect),
                order_events::old_status.eq(decision.old_state),
                order_events::new_status.eq(decision.new_state),
                order_events::amount_minor.eq(event.amount.minor_units()),
                order_events::currency.eq(event.amount.currency().as_str()),
                order_events::reason.eq(&decision.reason),
            ))
            .execute(conn)
            .await?;
        open_items(
            conn,
            event,
            notification_id,
            &decision.review_items,
            &mut opened,
        )
        .await?;
        finish_notification(
            conn,
            notification_id,
            decision.outcome,
            decision.outcome.as_str(),
        )
        .await?;
        Ok(ApplyReport {
            outcome: decision.outcome,
            order_state: Some(decision.new_state),
            review_items: opened,
        })
    })
    .await
}

/// Inserts the notification row, or takes over an earlier row of the same
/// body whose outcome allows processing again. `None`: a duplicate.
async fn claim_notification(
    conn: &mut AsyncPgConnection,
    event: &PaymentEvent,
    received_at: DateTime<Utc>,
) -> Result<Option<i64>, StoreError> {
    let currency = event.amount.currency();
    let row = NewNotification {
        body_sha256: event.digest.as_str(),
        tokenized: TokenizedColumns::of(event, &currency),
        received_at,
        processed_at: None,
        // Provisional; `finish_notification` writes the real outcome before commit.
        outcome: Outcome::OrderNotFound,
        reason: None,
    };
    let inserted: Option<i64> = diesel::insert_into(notifications::table)
        .values(&row)
        .on_conflict(notifications::body_sha256)
        .do_nothing()
        .returning(notifications::id)
        .get_result(conn)
        .await
        .optional()?;
    if inserted.is_some() {
        return Ok(inserted);
    }
    let (id, outcome): (i64, Outcome) = notifications::table
        .filter(notifications::body_sha256.eq(event.digest.as_str()))
        .select((notifications::id, notifications::outcome))
        .for_update()
        .first(conn)
        .await?;
    if !REPROCESSABLE.contains(&outcome) {
        return Ok(None);
    }
    // Processed again (the order now exists, a key was added): refresh the
    // tokenized columns, which a rejected record does not have.
    diesel::update(notifications::table.find(id))
        .set(&row.tokenized)
        .execute(conn)
        .await?;
    Ok(Some(id))
}

async fn finish_notification(
    conn: &mut AsyncPgConnection,
    id: i64,
    outcome: Outcome,
    reason: &str,
) -> Result<(), StoreError> {
    diesel::update(notifications::table.find(id))
        .set((
            notifications::outcome.eq(outcome),
            notifications::reason.eq(reason),
            notifications::processed_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Opens `items` for the event's order and notification, noting each kind
/// in `opened`.
async fn open_items(
    conn: &mut AsyncPgConnection,
    event: &PaymentEvent,
    notification_id: i64,
    items: &[NewReviewItem],
    opened: &mut Vec<ReviewKind>,
) -> Result<(), StoreError> {
    for item in items {
        insert_review_item(
            conn,
            item.kind,
            Some(&event.order_ref),
            Some(notification_id),
            &item.details,
        )
        .await?;
        opened.push(item.kind);
    }
    Ok(())
}

pub(crate) async fn insert_review_item(
    conn: &mut AsyncPgConnection,
    kind: ReviewKind,
    order_ref: Option<&str>,
    notification_id: Option<i64>,
    details: &str,
) -> Result<(), StoreError> {
    diesel::insert_into(review_items::table)
        .values((
            review_items::kind.eq(kind),
            review_items::order_ref.eq(order_ref),
            review_items::notification_id.eq(notification_id),
            review_items::details.eq(details),
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
        insert_review_item(&mut conn, kind, order_ref, notification_id, details).await
    }
}
