//! Subscriptions: the licence rows notices leave (`subscription_orders`),
//! and reading a subscription back with its orders.
//!
//! A row is written by the batch write path, once per notification that
//! carries its identity, for every line item naming a licence
//! (`domain::subscription::licence_lines`); its `paid` only ever turns
//! true and its dates fill in, so rows do not depend on the arrival order.
//! What a subscription *is* (first and latest order, expiry, renewals) is
//! folded from its rows by `domain::subscription::Subscription::of`.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, Bool, Nullable, Text, Timestamp};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures::future::BoxFuture;
use serde::Serialize;

use super::reports::rfc3339;
use super::reuse::Reuse;
use super::{Store, StoreError};
use crate::domain::subscription::{
    LicenceLine, Subscription, SubscriptionOrder, SubscriptionStatus,
};
use crate::domain::{PaymentEvent, StatusCategory};

/// Whether `event` pays the order its licence lines belong to: a payment
/// notice of a real order that the processor did not deny.
pub fn pays(event: &PaymentEvent) -> bool {
    event
        .status
        .known()
        .is_some_and(|status| status.category() == StatusCategory::Payment)
        && !event.fraud_denied
        && !event.test_order
}

/// The statement recording the licence lines of `events` (each with its
/// `REFNO`), or none when no event names a licence. Test orders are left
/// out: a sandbox purchase never changes a real subscription.
pub(super) fn record_lines<'a>(
    conn: &'a AsyncPgConnection,
    events: &[&PaymentEvent],
) -> Option<BoxFuture<'a, diesel::QueryResult<usize>>> {
    let mut licence_refs = Vec::new();
    let mut refnos = Vec::new();
    let mut codes = Vec::new();
    let mut types = Vec::new();
    let mut starts = Vec::new();
    let mut expiries = Vec::new();
    let mut lifetimes = Vec::new();
    let mut originals = Vec::new();
    let mut paid = Vec::new();
    for event in events.iter().filter(|event| !event.test_order) {
        for line in &event.licences {
            licence_refs.push(line.licence_ref.clone());
            refnos.push(event.processor_ref.clone());
            codes.push(line.product_code.clone());
            types.push(line.licence_type.clone());
            starts.push(line.starts_at);
            expiries.push(line.expires_at);
            lifetimes.push(line.lifetime);
            originals.push(line.original_order_ref.clone());
            paid.push(pays(event));
        }
    }
    if licence_refs.is_empty() {
        return None;
    }
    Some(
        diesel::sql_query(
            "INSERT INTO subscription_orders AS s (licence_ref, processor_ref, product_code, \
                 licence_type, starts_at, expires_at, lifetime, original_order_ref, paid) \
             SELECT DISTINCT ON (l, r) l, r, c, t, st, ex, lt, o, p \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamp[], \
                         $6::timestamp[], $7::bool[], $8::text[], $9::bool[]) \
                  AS v(l, r, c, t, st, ex, lt, o, p) \
             ORDER BY l, r, p DESC \
             ON CONFLICT (licence_ref, processor_ref) DO UPDATE SET \
                 product_code = COALESCE(s.product_code, excluded.product_code), \
                 licence_type = COALESCE(s.licence_type, excluded.licence_type), \
                 starts_at = COALESCE(s.starts_at, excluded.starts_at), \
                 expires_at = GREATEST(s.expires_at, excluded.expires_at), \
                 lifetime = s.lifetime OR excluded.lifetime, \
                 original_order_ref = COALESCE(s.original_order_ref, excluded.original_order_ref), \
                 paid = s.paid OR excluded.paid",
        )
        .bind::<Array<Text>, _>(licence_refs)
        .bind::<Array<Text>, _>(refnos)
        .bind::<Array<Nullable<Text>>, _>(codes)
        .bind::<Array<Nullable<Text>>, _>(types)
        .bind::<Array<Nullable<Timestamp>>, _>(starts)
        .bind::<Array<Nullable<Timestamp>>, _>(expiries)
        .bind::<Array<Bool>, _>(lifetimes)
        .bind::<Array<Nullable<Text>>, _>(originals)
        .bind::<Array<Bool>, _>(paid)
        .reused()
        .execute(&mut &*conn),
    )
}

#[derive(QueryableByName)]
struct LineRow {
    #[diesel(sql_type = Text)]
    licence_ref: String,
    #[diesel(sql_type = Text)]
    processor_ref: String,
    #[diesel(sql_type = Nullable<Text>)]
    product_code: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    licence_type: Option<String>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    starts_at: Option<NaiveDateTime>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    expires_at: Option<NaiveDateTime>,
    #[diesel(sql_type = Bool)]
    lifetime: bool,
    #[diesel(sql_type = Nullable<Text>)]
    original_order_ref: Option<String>,
    #[diesel(sql_type = Bool)]
    paid: bool,
}

impl LineRow {
    fn into_order(self) -> SubscriptionOrder {
        SubscriptionOrder {
            processor_ref: self.processor_ref,
            paid: self.paid,
            line: LicenceLine {
                licence_ref: self.licence_ref,
                product_code: self.product_code,
                licence_type: self.licence_type,
                starts_at: self.starts_at,
                expires_at: self.expires_at,
                lifetime: self.lifetime,
                original_order_ref: self.original_order_ref,
            },
        }
    }
}

/// A subscription as `subscriptions list` and `show` print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriptionView {
    #[serde(flatten)]
    pub subscription: Subscription,
    pub status: SubscriptionStatus,
}

/// One order of a subscription, for `subscriptions show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriptionOrderView {
    /// `REFNO` of the order.
    pub processor_ref: String,
    /// The order the books keep it under, when there is one.
    pub order_ref: Option<String>,
    pub licence_type: Option<String>,
    pub starts_at: Option<NaiveDateTime>,
    pub expires_at: Option<NaiveDateTime>,
    pub paid: bool,
    /// The order's state in the books.
    pub order_state: Option<String>,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub first_seen_at: DateTime<Utc>,
}

/// Which subscriptions to list.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionFilter {
    pub status: Option<SubscriptionStatus>,
    /// Only those whose paid term ends before this (lifetime never does).
    pub expiring_before: Option<NaiveDateTime>,
}

/// The status of a subscription before any licence notice (LCN) said
/// one: active once an order paid it, else waiting.
fn status_of(orders: &[SubscriptionOrder]) -> SubscriptionStatus {
    if orders.iter().any(|order| order.paid) {
        SubscriptionStatus::Active
    } else {
        SubscriptionStatus::PendingActivation
    }
}

impl Store {
    /// The subscriptions matching `filter`, by licence reference.
    pub async fn subscriptions(
        &self,
        filter: &SubscriptionFilter,
    ) -> Result<Vec<SubscriptionView>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<LineRow> = diesel::sql_query(
            "SELECT licence_ref, processor_ref, product_code, licence_type, starts_at, \
                    expires_at, lifetime, original_order_ref, paid \
             FROM subscription_orders ORDER BY licence_ref, processor_ref",
        )
        .load(&mut conn)
        .await?;
        let mut views = Vec::new();
        let mut rows = rows.into_iter().map(LineRow::into_order).peekable();
        while let Some(first) = rows.next() {
            let licence_ref = first.line.licence_ref.clone();
            let mut orders = vec![first];
            while let Some(next) = rows.next_if(|o| o.line.licence_ref == licence_ref) {
                orders.push(next);
            }
            let Some(subscription) = Subscription::of(&licence_ref, &orders) else {
                continue;
            };
            let view = SubscriptionView {
                status: status_of(&orders),
                subscription,
            };
            let status_matches = filter.status.as_ref().is_none_or(|s| *s == view.status);
            let expiry_matches = filter.expiring_before.is_none_or(|before| {
                view.subscription
                    .expires_at
                    .is_some_and(|expires| expires < before)
            });
            if status_matches && expiry_matches {
                views.push(view);
            }
        }
        Ok(views)
    }

    /// Subscription `licence_ref` with its orders, oldest first; `None`
    /// when no notice named it.
    pub async fn subscription(
        &self,
        licence_ref: &str,
    ) -> Result<Option<(SubscriptionView, Vec<SubscriptionOrderView>)>, StoreError> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(embed)]
            line: LineRow,
            #[diesel(sql_type = Nullable<Text>)]
            order_ref: Option<String>,
            #[diesel(sql_type = Nullable<Text>)]
            order_state: Option<String>,
            #[diesel(sql_type = diesel::sql_types::Timestamptz)]
            first_seen_at: DateTime<Utc>,
        }
        let mut conn = self.conn().await?;
        // The order of a line: the processor's order under its REFNO, or
        // the merchant order one of whose payments has it.
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT s.licence_ref, s.processor_ref, s.product_code, s.licence_type, \
                    s.starts_at, s.expires_at, s.lifetime, s.original_order_ref, s.paid, \
                    s.first_seen_at, o.order_ref, o.status AS order_state \
             FROM subscription_orders AS s \
             LEFT JOIN LATERAL ( \
                 SELECT o.order_ref, o.status FROM orders AS o \
                 WHERE (o.origin = 'processor' AND o.order_ref = s.processor_ref) \
                    OR EXISTS (SELECT 1 FROM payments AS p \
                               WHERE p.order_id = o.id AND p.processor_ref = s.processor_ref) \
                 ORDER BY o.id LIMIT 1) AS o ON true \
             WHERE s.licence_ref = $1 \
             ORDER BY s.starts_at NULLS LAST, s.processor_ref",
        )
        .bind::<Text, _>(licence_ref)
        .load(&mut conn)
        .await?;
        let orders: Vec<SubscriptionOrderView> = rows
            .iter()
            .map(|row| SubscriptionOrderView {
                processor_ref: row.line.processor_ref.clone(),
                order_ref: row.order_ref.clone(),
                licence_type: row.line.licence_type.clone(),
                starts_at: row.line.starts_at,
                expires_at: row.line.expires_at,
                paid: row.line.paid,
                order_state: row.order_state.clone(),
                first_seen_at: row.first_seen_at,
            })
            .collect();
        let folded: Vec<SubscriptionOrder> =
            rows.into_iter().map(|row| row.line.into_order()).collect();
        Ok(Subscription::of(licence_ref, &folded).map(|subscription| {
            (
                SubscriptionView {
                    status: status_of(&folded),
                    subscription,
                },
                orders,
            )
        }))
    }
}
