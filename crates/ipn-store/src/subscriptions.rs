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
use crate::domain::licence::{Expiration, LicenceNotice};
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

/// When the processor says `event` paid its order, in its own time: its
/// `PAYMENTDATE`, else `COMPLETE_DATE`, else `IPN_DATE`; `None` for an
/// event that does not pay ([`pays`]). The processor's time, not ours: a
/// renewal paid after a licence notice said the subscription was canceled
/// (`renewal_after_cancel`) is told by comparing it with the notice's
/// `DATE_UPDATED`.
pub fn paid_when(event: &PaymentEvent) -> Option<NaiveDateTime> {
    pays(event)
        .then(|| {
            event
                .payment_date
                .or(event.complete_date)
                .or(event.ipn_date)
        })
        .flatten()
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
    let mut paid_at = Vec::new();
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
            paid_at.push(paid_when(event));
        }
    }
    if licence_refs.is_empty() {
        return None;
    }
    Some(
        diesel::sql_query(
            "INSERT INTO subscription_orders AS s (licence_ref, processor_ref, product_code, \
                 licence_type, starts_at, expires_at, lifetime, original_order_ref, paid, paid_at) \
             SELECT DISTINCT ON (l, r) l, r, c, t, st, ex, lt, o, p, pa \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamp[], \
                         $6::timestamp[], $7::bool[], $8::text[], $9::bool[], $10::timestamp[]) \
                  AS v(l, r, c, t, st, ex, lt, o, p, pa) \
             ORDER BY l, r, p DESC, pa NULLS LAST \
             ON CONFLICT (licence_ref, processor_ref) DO UPDATE SET \
                 product_code = COALESCE(s.product_code, excluded.product_code), \
                 licence_type = COALESCE(s.licence_type, excluded.licence_type), \
                 starts_at = COALESCE(s.starts_at, excluded.starts_at), \
                 expires_at = GREATEST(s.expires_at, excluded.expires_at), \
                 lifetime = s.lifetime OR excluded.lifetime, \
                 original_order_ref = COALESCE(s.original_order_ref, excluded.original_order_ref), \
                 paid = s.paid OR excluded.paid, \
                 paid_at = LEAST(s.paid_at, excluded.paid_at)",
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
        .bind::<Array<Nullable<Timestamp>>, _>(paid_at)
        .reused()
        .execute(&mut &*conn),
    )
}

#[derive(QueryableByName)]
pub(super) struct LineRow {
    #[diesel(sql_type = Text)]
    pub(super) licence_ref: String,
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
    pub(super) fn into_order(self) -> SubscriptionOrder {
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

/// A subscription with its orders and licence notices, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriptionDetail {
    #[serde(flatten)]
    pub view: SubscriptionView,
    pub orders: Vec<SubscriptionOrderView>,
    /// What the processor's licence notices (LCN) said, by `DATE_UPDATED`.
    pub notices: Vec<LicenceNoticeView>,
}

/// Which subscriptions to list.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionFilter {
    pub status: Option<SubscriptionStatus>,
    /// Only those whose paid term ends before this (lifetime never does).
    pub expiring_before: Option<NaiveDateTime>,
}

/// The status of a subscription: what its latest licence notice (LCN,
/// by `DATE_UPDATED`) said; before any, active once an order paid it,
/// else waiting.
fn status_of(orders: &[SubscriptionOrder], said: Option<&str>) -> SubscriptionStatus {
    match said {
        Some(status) => SubscriptionStatus::from_lcn(status),
        None if orders.iter().any(|order| order.paid) => SubscriptionStatus::Active,
        None => SubscriptionStatus::PendingActivation,
    }
}

/// One licence notice of a subscription, for `subscriptions show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, QueryableByName)]
pub struct LicenceNoticeView {
    /// `DATE_UPDATED`.
    #[diesel(sql_type = Timestamp)]
    pub updated_at: NaiveDateTime,
    #[diesel(sql_type = Nullable<Text>)]
    pub status: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub dispatch_reason: Option<String>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    pub expires_at: Option<NaiveDateTime>,
    #[diesel(sql_type = Bool)]
    pub lifetime: bool,
}

#[derive(QueryableByName)]
struct SaidRow {
    #[diesel(sql_type = Text)]
    licence_ref: String,
    #[diesel(sql_type = Nullable<Text>)]
    status: Option<String>,
}

/// What the latest licence notice of each subscription said, by licence
/// (`licence_ref = $1`, or all when `$1` is NULL).
const LATEST_SAID: &str = "SELECT DISTINCT ON (licence_ref) licence_ref, status \
     FROM licence_notices WHERE status IS NOT NULL AND ($1::text IS NULL OR licence_ref = $1) \
     ORDER BY licence_ref, updated_at DESC, identity DESC";

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
        let said: Vec<SaidRow> = diesel::sql_query(LATEST_SAID)
            .bind::<Nullable<Text>, _>(None::<String>)
            .load(&mut conn)
            .await?;
        let said: std::collections::HashMap<String, Option<String>> = said
            .into_iter()
            .map(|row| (row.licence_ref, row.status))
            .collect();
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
                status: status_of(&orders, said.get(&licence_ref).and_then(Option::as_deref)),
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

    /// Subscription `licence_ref` with its orders and its licence notices,
    /// oldest first; `None` when no payment notice named it.
    pub async fn subscription(
        &self,
        licence_ref: &str,
    ) -> Result<Option<SubscriptionDetail>, StoreError> {
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
        let notices: Vec<LicenceNoticeView> = diesel::sql_query(
            "SELECT updated_at, status, dispatch_reason, expires_at, lifetime \
             FROM licence_notices WHERE licence_ref = $1 ORDER BY updated_at, identity",
        )
        .bind::<Text, _>(licence_ref)
        .load(&mut conn)
        .await?;
        let said = notices.iter().rev().find_map(|n| n.status.clone());
        let status = status_of(&folded, said.as_deref());
        Ok(
            Subscription::of(licence_ref, &folded).map(|subscription| SubscriptionDetail {
                view: SubscriptionView {
                    status,
                    subscription,
                },
                orders,
                notices,
            }),
        )
    }

    /// Records a licence notice's facts, once per notice identity. Test
    /// notices are not recorded: a sandbox never changes a real
    /// subscription. Returns whether the notice was new.
    pub async fn record_licence(
        &self,
        notice: &LicenceNotice,
        received_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        if notice.test {
            return Ok(false);
        }
        let mut conn = self.conn().await?;
        let (expires_at, lifetime) = match notice.expiration {
            Some(Expiration::At(at)) => (Some(at), false),
            Some(Expiration::Lifetime) => (None, true),
            None => (None, false),
        };
        let written = diesel::sql_query(
            "INSERT INTO licence_notices (identity, licence_ref, status, updated_at, expires_at, \
                 lifetime, dispatch_reason, licence_type, recurring, renewals, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (identity) DO NOTHING",
        )
        .bind::<Text, _>(notice.identity.as_str())
        .bind::<Text, _>(&notice.licence_code)
        .bind::<Nullable<Text>, _>(notice.status.as_ref().map(|s| s.as_str().to_owned()))
        .bind::<Timestamp, _>(notice.updated_at)
        .bind::<Nullable<Timestamp>, _>(expires_at)
        .bind::<Bool, _>(lifetime)
        .bind::<Nullable<Text>, _>(
            notice
                .dispatch_reason
                .as_ref()
                .map(|r| r.as_str().to_owned()),
        )
        .bind::<Nullable<Text>, _>(notice.licence_type.as_ref().map(|t| t.as_str().to_owned()))
        .bind::<Nullable<Bool>, _>(notice.recurring)
        .bind::<Nullable<diesel::sql_types::Integer>, _>(
            notice
                .renewals
                .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
        )
        .bind::<diesel::sql_types::Timestamptz, _>(received_at)
        .execute(&mut conn)
        .await?;
        Ok(written == 1)
    }
}
