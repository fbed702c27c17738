//! Sweeps: what silently never happened becomes a review item.
//!
//! Notifications say what happened; nothing says what did not. An order
//! still `pending` or `authorized` days after it was placed never
//! completed; a payment captured a week ago that no settlement line
//! settled was never paid out; a refund the processor never debited is
//! money the merchant still holds and owes; a subscription whose term
//! ended days ago with no paid renewal and no licence notice saying why
//! is a renewal whose notice never came (`renewal_missing`); and a
//! renewal paid after the processor said the subscription was canceled is
//! a customer charged for what they stopped (`renewal_after_cancel`,
//! [`SubscriptionFacts`]). [`decide`] looks at the facts
//! the store loads and says which items to open and which open ones to
//! close because their cause went away. It takes `now`, so tests inject the
//! time instead of waiting.
//!
//! Each cause is raised once: an item of the same kind for the same order
//! and payment that exists already (open, or resolved by a person) is not
//! opened again. The store leaves out of [`SweepFacts::raised`] the items
//! the system closed because their cause went away, so a cause that comes
//! back (a later refund of the same payment, not debited) is raised again.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, NaiveDateTime, Utc};

use crate::licence::DispatchReason;
use crate::money::{Currency, Money};
use crate::reconcile::ReviewKind;
use crate::settlement::Finding;
use crate::status::OrderState;
use crate::subscription::{Subscription, SubscriptionOrder, SubscriptionStatus};

/// How old things may get before the sweep raises them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepPolicy {
    /// An order `pending` or `authorized` longer than this is stale.
    pub stale_order_age: Duration,
    /// A payment or refund not settled this long after it was recorded is
    /// late.
    pub settlement_days: Duration,
    /// A recurring subscription whose paid term ended more than this ago,
    /// with no paid renewal and no licence notice saying it ended, is
    /// `renewal_missing` (the processor retries a failed charge for a few
    /// days before it says past due).
    pub renewal_grace: Duration,
}

impl Default for SweepPolicy {
    fn default() -> Self {
        Self {
            stale_order_age: Duration::days(3),
            settlement_days: Duration::days(7),
            renewal_grace: Duration::days(3),
        }
    }
}

/// An order waiting for the processor (`pending` or `authorized`), or one
/// with an open `stale_order` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingOrder {
    pub order_ref: String,
    pub state: OrderState,
    pub created_at: DateTime<Utc>,
}

/// A payment of the ledger with what settlement lines settled of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentSettlement {
    pub order_ref: String,
    pub processor_ref: String,
    pub currency: Currency,
    /// Captured, minor units.
    pub paid: i64,
    /// When the ledger recorded the capture (its first payment movement).
    pub paid_at: Option<DateTime<Utc>>,
    /// Whether a sale line matched it.
    pub settled: bool,
    /// Whether a sale line was matched to it but differs in amount (a
    /// `settlement_amount_differs` item for it, open or resolved): the
    /// settlement reached the processor's file, and that one item is where
    /// a person settles the difference, so it is not unsettled too.
    pub amount_differs: bool,
    /// The refunds the ledger recorded: when, how much (minor units).
    pub refunds: Vec<(DateTime<Utc>, i64)>,
    /// What matched refund lines debited, minor units.
    pub debited: i64,
}

/// An open item the sweep raised, and may close.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OpenSweepItem {
    pub id: i64,
    pub kind: ReviewKind,
    pub order_ref: Option<String>,
    pub processor_ref: Option<String>,
}

/// What the sweep knows: the facts, and which causes already have an item
/// (`(kind, order_ref, processor_ref)`, open or resolved).
#[derive(Debug, Clone, Default)]
pub struct SweepFacts {
    pub orders: Vec<WaitingOrder>,
    pub payments: Vec<PaymentSettlement>,
    pub raised: HashSet<(ReviewKind, String, Option<String>)>,
    pub open: Vec<OpenSweepItem>,
    /// The subscriptions that may have a renewal cause, or an open item of
    /// a renewal kind to reconsider.
    pub subscriptions: Vec<SubscriptionFacts>,
}

/// An item to close, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closing {
    pub id: i64,
    pub note: String,
}

/// What the sweep does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepPlan {
    pub open: Vec<Finding>,
    pub close: Vec<Closing>,
}

/// The kinds the sweep raises.
pub const SWEEP_KINDS: [ReviewKind; 5] = [
    ReviewKind::StaleOrder,
    ReviewKind::UnsettledPayment,
    ReviewKind::RefundNotDebited,
    ReviewKind::RenewalMissing,
    ReviewKind::RenewalAfterCancel,
];

fn waiting(state: OrderState) -> bool {
    matches!(state, OrderState::Pending | OrderState::Authorized)
}

/// An age for people: `4d 2h`, `5h`.
fn age(duration: Duration) -> String {
    let hours = duration.num_hours().max(0);
    match (hours / 24, hours % 24) {
        (0, h) => format!("{h}h"),
        (d, 0) => format!("{d}d"),
        (d, h) => format!("{d}d {h}h"),
    }
}

/// One order of a subscription, as the sweep sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribedOrder {
    pub order: SubscriptionOrder,
    /// The order the books keep it under (the merchant's reference, or
    /// the `REFNO` of a processor order); `None` when the books have none
    /// (an orphan): items then name the `REFNO`.
    pub order_ref: Option<String>,
    /// When the processor says the order was paid (`PAYMENTDATE`, else
    /// `IPN_DATE`), in its own time; `None` while unpaid, or when no
    /// paying notice carried a date.
    pub paid_at: Option<NaiveDateTime>,
}

impl SubscribedOrder {
    /// The reference items name the order by.
    fn item_ref(&self) -> &str {
        self.order_ref
            .as_deref()
            .unwrap_or(&self.order.processor_ref)
    }
}

/// What one licence notice (LCN) of a subscription said, as far as the
/// sweep cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenceSaid {
    /// `DATE_UPDATED`: when the processor logged the change.
    pub updated_at: NaiveDateTime,
    pub status: Option<SubscriptionStatus>,
    pub dispatch_reason: Option<DispatchReason>,
    /// `RECURRING`, when sent.
    pub recurring: Option<bool>,
    /// `EXPIRATION_DATE` was the lifetime date.
    pub lifetime: bool,
}

impl LicenceSaid {
    /// Whether the notice says the subscription ended or will: expired,
    /// past due, disabled or canceled (by status or by why it was sent).
    fn says_ended(&self) -> bool {
        matches!(
            self.status,
            Some(
                SubscriptionStatus::Expired
                    | SubscriptionStatus::PastDue
                    | SubscriptionStatus::Disabled
                    | SubscriptionStatus::Canceled
            )
        ) || matches!(
            self.dispatch_reason,
            Some(DispatchReason::Expiration | DispatchReason::PastDue)
        )
    }

    /// Whether it says a cancellation is scheduled.
    fn says_cancellation_scheduled(&self) -> bool {
        self.status == Some(SubscriptionStatus::CancellationScheduled)
            || self.dispatch_reason == Some(DispatchReason::CancellationScheduled)
    }
}

/// A subscription's orders and licence notices: what the renewal kinds
/// are decided from.
///
/// Test orders and test notices never reach it (the store never records
/// them), so a sandbox never raises a renewal item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionFacts {
    pub licence_ref: String,
    pub orders: Vec<SubscribedOrder>,
    /// In `DATE_UPDATED` order (ties in a fixed order).
    pub notices: Vec<LicenceSaid>,
}

/// Why a subscription's renewal is missing: the order whose term lapsed,
/// and the sentence for the item.
struct Missing<'a> {
    latest: &'a SubscribedOrder,
    details: String,
}

impl SubscriptionFacts {
    fn subscription(&self) -> Option<Subscription> {
        let orders: Vec<SubscriptionOrder> = self.orders.iter().map(|o| o.order.clone()).collect();
        Subscription::of(&self.licence_ref, &orders)
    }

    /// Whether the subscription renews by itself.
    ///
    /// A lifetime licence (an order or a notice said so) never does. The
    /// latest licence notice that carried `RECURRING` says it; before any
    /// did, the orders do: the payment notification has no recurring flag
    /// (processor-traffic §2.2), so a licence with an expiry is taken to
    /// renew, unless its latest order is a `TRIAL` (a trial that lapses is
    /// not a missing renewal; one that converts is a paid order).
    pub fn recurring(&self, subscription: &Subscription) -> bool {
        if subscription.lifetime || self.notices.iter().any(|n| n.lifetime) {
            return false;
        }
        if let Some(said) = self.notices.iter().rev().find_map(|n| n.recurring) {
            return said;
        }
        subscription.expires_at.is_some() && subscription.licence_type.as_deref() != Some("TRIAL")
    }

    /// Whether a licence notice logged at or after `since` (every notice
    /// when `None`) said the subscription expired, went past due, was
    /// disabled or canceled, or that its cancellation is scheduled (unless
    /// a later one reverted the cancellation).
    fn said_ended(&self, since: Option<NaiveDateTime>) -> bool {
        let mut scheduled = false;
        for notice in self
            .notices
            .iter()
            .filter(|n| since.is_none_or(|since| n.updated_at >= since))
        {
            if notice.says_ended() {
                return true;
            }
            if notice.says_cancellation_scheduled() {
                scheduled = true;
            } else if notice.dispatch_reason == Some(DispatchReason::CancellationReverted) {
                scheduled = false;
            }
        }
        scheduled
    }

    /// The lapsed renewal, ignoring how long ago: a recurring subscription
    /// whose paid term ended before `now` with no licence notice since the
    /// payment of that term saying it ended. `None` otherwise.
    fn missing(&self, now: DateTime<Utc>) -> Option<(Missing<'_>, NaiveDateTime)> {
        let subscription = self.subscription()?;
        let expires_at = subscription.expires_at?;
        if !self.recurring(&subscription) || expires_at.and_utc() >= now {
            return None;
        }
        let latest = self
            .orders
            .iter()
            .find(|o| o.order.paid && o.order.processor_ref == subscription.latest_order)?;
        // Notices before the payment of the lapsed term speak of an earlier
        // one (a past-due notice the renewal then cured).
        let since = latest.paid_at.or(latest.order.line.starts_at);
        if self.said_ended(since) {
            return None;
        }
        let product = subscription
            .product_code
            .as_deref()
            .map(|code| format!(" ({code})"))
            .unwrap_or_default();
        let details = format!(
            "subscription {}{product} paid until {} by order {}: no paid renewal, and no licence notice says it expired, went past due or was canceled",
            self.licence_ref,
            expires_at.format("%Y-%m-%d %H:%M"),
            latest.order.processor_ref,
        );
        Some((Missing { latest, details }, expires_at))
    }

    /// The renewals paid after the processor said the subscription was
    /// disabled or canceled, each with the sentence for its item.
    ///
    /// A renewal is a paid order of type `RENEWAL`, or any paid order but
    /// the first. What the processor said at the payment is the status of
    /// its latest licence notice logged before it (by `DATE_UPDATED`), so
    /// a notice saying it was active again, logged between, clears it. An
    /// order whose payment date is unknown is never one.
    fn renewals_after_cancel(&self) -> Vec<(&SubscribedOrder, String)> {
        let Some(subscription) = self.subscription() else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for order in &self.orders {
            let Some(paid_at) = order.paid_at.filter(|_| order.order.paid) else {
                continue;
            };
            if !order.order.line.is_renewal()
                && order.order.processor_ref == subscription.first_order
            {
                continue;
            }
            let said = self
                .notices
                .iter()
                .filter(|n| n.updated_at < paid_at)
                .filter_map(|n| n.status.as_ref().map(|status| (n.updated_at, status)))
                .next_back();
            if let Some((updated_at, status)) = said
                && status.is_stopped()
            {
                found.push((
                    order,
                    format!(
                        "renewal {} of subscription {} paid {}, after a licence notice of {} said it was {}",
                        order.order.processor_ref,
                        self.licence_ref,
                        paid_at.format("%Y-%m-%d %H:%M"),
                        updated_at.format("%Y-%m-%d %H:%M"),
                        status.as_str()
                    ),
                ));
            }
        }
        found
    }
}

/// The renewal findings: one per cause (kind, order, `REFNO`); when line
/// items of one order name several subscriptions, one item names them all.
fn renewal_findings(now: DateTime<Utc>, policy: &SweepPolicy, facts: &SweepFacts) -> Vec<Finding> {
    // By order and REFNO, per kind, in a fixed order.
    let mut missing: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut after_cancel: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for sub in &facts.subscriptions {
        if let Some((lapsed, expires_at)) = sub.missing(now)
            && now - expires_at.and_utc() > policy.renewal_grace
        {
            missing
                .entry((
                    lapsed.latest.item_ref().to_owned(),
                    lapsed.latest.order.processor_ref.clone(),
                ))
                .or_default()
                .push(format!(
                    "{} ({} ago; grace {})",
                    lapsed.details,
                    age(now - expires_at.and_utc()),
                    age(policy.renewal_grace)
                ));
        }
        for (order, details) in sub.renewals_after_cancel() {
            after_cancel
                .entry((
                    order.item_ref().to_owned(),
                    order.order.processor_ref.clone(),
                ))
                .or_default()
                .push(details);
        }
    }
    let kinds = [
        (ReviewKind::RenewalMissing, missing),
        (ReviewKind::RenewalAfterCancel, after_cancel),
    ];
    kinds
        .into_iter()
        .flat_map(|(kind, causes)| {
            causes
                .into_iter()
                .map(move |((order_ref, refno), details)| Finding {
                    kind,
                    order_ref: Some(order_ref),
                    processor_ref: Some(refno),
                    details: details.join("; "),
                })
        })
        .filter(|f| {
            !facts.raised.contains(&(
                f.kind,
                f.order_ref.clone().unwrap_or_default(),
                f.processor_ref.clone(),
            ))
        })
        .collect()
}

/// Why an open renewal item's cause went away, if it did: no subscription
/// it is about still has the cause. An item whose order no loaded
/// subscription names stays open (a person decides).
fn renewal_gone(now: DateTime<Utc>, item: &OpenSweepItem, facts: &SweepFacts) -> Option<String> {
    let refno = item.processor_ref.as_deref()?;
    let about: Vec<&SubscriptionFacts> = facts
        .subscriptions
        .iter()
        .filter(|s| s.orders.iter().any(|o| o.order.processor_ref == refno))
        .collect();
    if about.is_empty() {
        return None;
    }
    match item.kind {
        ReviewKind::RenewalMissing => {
            let still = about.iter().any(|s| {
                s.missing(now)
                    .is_some_and(|(m, _)| m.latest.order.processor_ref == refno)
            });
            if still {
                return None;
            }
            let renewed = about.iter().find_map(|s| {
                s.subscription()
                    .filter(|sub| sub.latest_order != refno)
                    .map(|sub| sub.latest_order)
            });
            Some(match renewed {
                Some(latest) => format!("a renewal was paid (order {latest})"),
                None => "a licence notice says the subscription ended, or it no longer renews"
                    .to_owned(),
            })
        }
        ReviewKind::RenewalAfterCancel => {
            let still = about.iter().any(|s| {
                s.renewals_after_cancel()
                    .iter()
                    .any(|(o, _)| o.order.processor_ref == refno)
            });
            (!still).then(|| {
                "a licence notice logged before the payment says the subscription was active"
                    .to_owned()
            })
        }
        _ => None,
    }
}

impl PaymentSettlement {
    /// Whether no settlement line accounts for the capture: nothing matched
    /// it and no sale line of another amount was matched to it (one
    /// difference opens one item: `settlement_amount_differs`, not also
    /// `unsettled_payment`).
    pub fn unsettled(&self) -> bool {
        self.paid > 0 && !self.settled && !self.amount_differs
    }
}

/// Which items to open and which to close, as of `now`.
pub fn decide(now: DateTime<Utc>, policy: &SweepPolicy, facts: &SweepFacts) -> SweepPlan {
    let mut plan = SweepPlan::default();
    let raised = |kind, order_ref: &str, processor_ref: Option<&str>| {
        facts
            .raised
            .contains(&(kind, order_ref.to_owned(), processor_ref.map(str::to_owned)))
    };
    for order in &facts.orders {
        let old = now - order.created_at;
        if waiting(order.state)
            && old >= policy.stale_order_age
            && !raised(ReviewKind::StaleOrder, &order.order_ref, None)
        {
            plan.open.push(Finding {
                kind: ReviewKind::StaleOrder,
                order_ref: Some(order.order_ref.clone()),
                processor_ref: None,
                details: format!(
                    "order {} since {} ({}; stale after {}): it never completed",
                    order.state,
                    order.created_at.format("%Y-%m-%d %H:%M UTC"),
                    age(old),
                    age(policy.stale_order_age)
                ),
            });
        }
    }
    for p in &facts.payments {
        let money = |minor: i64| Money::from_minor(minor, p.currency);
        if let Some(paid_at) = p.paid_at
            && p.unsettled()
            && now - paid_at >= policy.settlement_days
            && !raised(
                ReviewKind::UnsettledPayment,
                &p.order_ref,
                Some(&p.processor_ref),
            )
        {
            plan.open.push(Finding {
                kind: ReviewKind::UnsettledPayment,
                order_ref: Some(p.order_ref.clone()),
                processor_ref: Some(p.processor_ref.clone()),
                details: format!(
                    "payment of {} under processor reference {} recorded {}, not settled after {}",
                    money(p.paid),
                    p.processor_ref,
                    paid_at.format("%Y-%m-%d %H:%M UTC"),
                    age(now - paid_at)
                ),
            });
        }
        let due: i64 = p
            .refunds
            .iter()
            .filter(|(at, _)| now - *at >= policy.settlement_days)
            .map(|(_, minor)| *minor)
            .sum();
        if due > p.debited
            && !raised(
                ReviewKind::RefundNotDebited,
                &p.order_ref,
                Some(&p.processor_ref),
            )
        {
            plan.open.push(Finding {
                kind: ReviewKind::RefundNotDebited,
                order_ref: Some(p.order_ref.clone()),
                processor_ref: Some(p.processor_ref.clone()),
                details: format!(
                    "refunds of {} under processor reference {} recorded more than {} ago; settlement lines debited {} (missing {})",
                    money(due),
                    p.processor_ref,
                    age(policy.settlement_days),
                    money(p.debited).format_amount(),
                    money(due - p.debited).format_amount()
                ),
            });
        }
    }
    plan.open.extend(renewal_findings(now, policy, facts));
    for item in &facts.open {
        let order_ref = item.order_ref.as_deref().unwrap_or("");
        let payment = || {
            facts.payments.iter().find(|p| {
                p.order_ref == order_ref
                    && Some(p.processor_ref.as_str()) == item.processor_ref.as_deref()
            })
        };
        let note = match item.kind {
            ReviewKind::StaleOrder => facts
                .orders
                .iter()
                .find(|o| o.order_ref == order_ref)
                .filter(|o| !waiting(o.state))
                .map(|o| format!("the order is {} now", o.state)),
            ReviewKind::UnsettledPayment => payment().and_then(|p| {
                if p.settled {
                    Some("a settlement line settled the payment".to_owned())
                } else if p.amount_differs {
                    Some(
                        "a sale line of another amount was matched to the payment: \
                         its settlement_amount_differs item stands for it"
                            .to_owned(),
                    )
                } else {
                    None
                }
            }),
            ReviewKind::RefundNotDebited => payment()
                .filter(|p| p.debited >= p.refunds.iter().map(|(_, m)| m).sum::<i64>())
                .map(|_| "settlement lines debited the refunds".to_owned()),
            ReviewKind::RenewalMissing | ReviewKind::RenewalAfterCancel => {
                renewal_gone(now, item, facts)
            }
            _ => None,
        };
        if let Some(note) = note {
            plan.close.push(Closing { id: item.id, note });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    #![allow(clippy::inconsistent_digit_grouping)]
    use proptest::prelude::*;

    use super::*;

    fn at(days: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + Duration::days(20_000 + days)
    }

    fn eur() -> Currency {
        Currency::iso("EUR").expect("EUR")
    }

    fn facts() -> SweepFacts {
        SweepFacts {
            orders: vec![
                WaitingOrder {
                    order_ref: "S-1".into(),
                    state: OrderState::Pending,
                    created_at: at(0),
                },
                WaitingOrder {
                    order_ref: "S-2".into(),
                    state: OrderState::Authorized,
                    created_at: at(2),
                },
            ],
            payments: vec![
                PaymentSettlement {
                    order_ref: "S-3".into(),
                    processor_ref: "R3".into(),
                    currency: eur(),
                    paid: 10_00,
                    paid_at: Some(at(0)),
                    settled: false,
                    amount_differs: false,
                    refunds: vec![(at(1), 4_00), (at(6), 1_00)],
                    debited: 0,
                },
                PaymentSettlement {
                    order_ref: "S-4".into(),
                    processor_ref: "R4".into(),
                    currency: eur(),
                    paid: 10_00,
                    paid_at: Some(at(0)),
                    settled: true,
                    amount_differs: false,
                    refunds: vec![(at(0), 10_00)],
                    debited: 10_00,
                },
            ],
            raised: HashSet::new(),
            open: Vec::new(),
            subscriptions: Vec::new(),
        }
    }

    fn kinds(plan: &SweepPlan) -> Vec<(ReviewKind, Option<String>)> {
        plan.open
            .iter()
            .map(|f| (f.kind, f.order_ref.clone()))
            .collect()
    }

    #[test]
    fn each_cause_is_raised_when_it_is_old_enough() {
        let policy = SweepPolicy::default();
        // Day 2: nothing is old enough.
        assert_eq!(decide(at(2), &policy, &facts()), SweepPlan::default());
        // Day 3: S-1 is three days pending (the boundary is included).
        assert_eq!(
            kinds(&decide(at(3), &policy, &facts())),
            [(ReviewKind::StaleOrder, Some("S-1".into()))]
        );
        // Day 8: the payment is a week old unsettled, the first refund a
        // week old undebited, S-2 stale too; S-4 is settled and debited.
        let plan = decide(at(8), &policy, &facts());
        assert_eq!(
            kinds(&plan),
            [
                (ReviewKind::StaleOrder, Some("S-1".into())),
                (ReviewKind::StaleOrder, Some("S-2".into())),
                (ReviewKind::UnsettledPayment, Some("S-3".into())),
                (ReviewKind::RefundNotDebited, Some("S-3".into())),
            ]
        );
        let refund = &plan.open[3].details;
        assert!(
            refund.contains("refunds of 4.00 EUR") && refund.contains("missing 4.00"),
            "{refund}"
        );
    }

    #[test]
    fn a_cause_already_raised_is_not_raised_again_and_gone_causes_close() {
        let policy = SweepPolicy::default();
        let mut f = facts();
        f.raised
            .insert((ReviewKind::StaleOrder, "S-1".into(), None));
        f.raised.insert((
            ReviewKind::UnsettledPayment,
            "S-3".into(),
            Some("R3".into()),
        ));
        let plan = decide(at(4), &policy, &f);
        assert!(plan.open.is_empty(), "{plan:?}");
        // The order completed, the payment settled: their items close.
        f.orders[0].state = OrderState::Paid;
        f.payments[0].settled = true;
        f.open = vec![
            OpenSweepItem {
                id: 7,
                kind: ReviewKind::StaleOrder,
                order_ref: Some("S-1".into()),
                processor_ref: None,
            },
            OpenSweepItem {
                id: 8,
                kind: ReviewKind::UnsettledPayment,
                order_ref: Some("S-3".into()),
                processor_ref: Some("R3".into()),
            },
            OpenSweepItem {
                id: 9,
                kind: ReviewKind::RefundNotDebited,
                order_ref: Some("S-3".into()),
                processor_ref: Some("R3".into()),
            },
        ];
        let closed: Vec<i64> = decide(at(4), &policy, &f)
            .close
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(closed, [7, 8], "the refund is still not debited");
    }

    /// Issue 22 item 8: a sale line matched to the payment with another
    /// amount opens `settlement_amount_differs`; the sweep does not add
    /// `unsettled_payment` for the same difference, and closes one it had
    /// opened before the line arrived.
    #[test]
    fn a_payment_whose_sale_line_differs_is_not_unsettled() {
        let policy = SweepPolicy::default();
        let mut f = facts();
        f.payments[0].amount_differs = true;
        let plan = decide(at(8), &policy, &f);
        assert!(
            !plan
                .open
                .iter()
                .any(|finding| finding.kind == ReviewKind::UnsettledPayment),
            "{plan:?}"
        );
        // The refund not debited is another cause: still raised.
        assert!(
            plan.open
                .iter()
                .any(|finding| finding.kind == ReviewKind::RefundNotDebited)
        );
        // An unsettled_payment opened before the differing line came closes.
        f.open = vec![OpenSweepItem {
            id: 8,
            kind: ReviewKind::UnsettledPayment,
            order_ref: Some("S-3".into()),
            processor_ref: Some("R3".into()),
        }];
        let close = decide(at(9), &policy, &f).close;
        assert_eq!(close.len(), 1);
        assert_eq!(close[0].id, 8);
        assert!(
            close[0].note.contains("settlement_amount_differs"),
            "{}",
            close[0].note
        );
        // Without the difference the same payment is unsettled.
        f.payments[0].amount_differs = false;
        assert!(decide(at(9), &policy, &f).close.is_empty());
    }

    mod renewals {
        use super::*;
        use crate::subscription::LicenceLine;

        const LICENCE: &str = "TOF6T8VPY3";

        /// Day `d` as the processor writes it (naive, read as UTC).
        fn day(d: i64) -> NaiveDateTime {
            at(d).naive_utc()
        }

        fn order(refno: &str, kind: &str, start: i64, end: i64, paid: bool) -> SubscribedOrder {
            SubscribedOrder {
                order: SubscriptionOrder {
                    processor_ref: refno.to_owned(),
                    paid,
                    line: LicenceLine {
                        licence_ref: LICENCE.to_owned(),
                        product_code: Some("EDITOR".to_owned()),
                        licence_type: Some(kind.to_owned()),
                        starts_at: Some(day(start)),
                        expires_at: Some(day(end)),
                        lifetime: false,
                        original_order_ref: None,
                    },
                },
                order_ref: Some(if refno == "100" {
                    "SHOP-1".to_owned()
                } else {
                    refno.to_owned()
                }),
                paid_at: paid.then(|| day(start)),
            }
        }

        fn said(d: i64, status: &str, reason: Option<DispatchReason>) -> LicenceSaid {
            LicenceSaid {
                updated_at: day(d),
                status: (!status.is_empty()).then(|| SubscriptionStatus::from_lcn(status)),
                dispatch_reason: reason,
                recurring: None,
                lifetime: false,
            }
        }

        /// A monthly subscription paid for days 0 to 30.
        fn monthly() -> SweepFacts {
            SweepFacts {
                subscriptions: vec![SubscriptionFacts {
                    licence_ref: LICENCE.to_owned(),
                    orders: vec![order("100", "REGULAR", 0, 30, true)],
                    notices: Vec::new(),
                }],
                ..SweepFacts::default()
            }
        }

        fn opened(
            now: i64,
            facts: &SweepFacts,
        ) -> Vec<(ReviewKind, Option<String>, Option<String>)> {
            decide(at(now), &SweepPolicy::default(), facts)
                .open
                .into_iter()
                .map(|f| (f.kind, f.order_ref, f.processor_ref))
                .collect()
        }

        fn missing(order_ref: &str, refno: &str) -> (ReviewKind, Option<String>, Option<String>) {
            (
                ReviewKind::RenewalMissing,
                Some(order_ref.into()),
                Some(refno.into()),
            )
        }

        #[test]
        fn a_renewal_missing_past_the_grace_is_raised_naming_the_licence_and_its_order() {
            let facts = monthly();
            assert!(
                opened(33, &facts).is_empty(),
                "three days: within the grace"
            );
            assert_eq!(opened(34, &facts), [missing("SHOP-1", "100")]);
            let plan = decide(at(34), &SweepPolicy::default(), &facts);
            let details = &plan.open[0].details;
            assert!(
                details.contains("subscription TOF6T8VPY3 (EDITOR)")
                    && details.contains("by order 100")
                    && details.contains("4d ago; grace 3d"),
                "{details}"
            );
            // A longer grace waits longer.
            let policy = SweepPolicy {
                renewal_grace: Duration::days(10),
                ..SweepPolicy::default()
            };
            assert!(decide(at(34), &policy, &facts).open.is_empty());
        }

        #[test]
        fn a_notice_saying_it_ended_since_the_payment_means_nothing_is_missing() {
            for (status, reason) in [
                ("PAST_DUE", None),
                ("EXPIRED", None),
                ("DISABLED", None),
                ("CANCELED", None),
                ("ACTIVE", Some(DispatchReason::CancellationScheduled)),
                ("", Some(DispatchReason::Expiration)),
                ("", Some(DispatchReason::PastDue)),
            ] {
                let mut facts = monthly();
                facts.subscriptions[0]
                    .notices
                    .push(said(31, status, reason.clone()));
                assert!(opened(40, &facts).is_empty(), "{status} {reason:?}");
            }
            // A cancellation scheduled then reverted: the renewal is due.
            let mut facts = monthly();
            facts.subscriptions[0].notices = vec![
                said(10, "ACTIVE", Some(DispatchReason::CancellationScheduled)),
                said(12, "ACTIVE", Some(DispatchReason::CancellationReverted)),
            ];
            assert_eq!(opened(40, &facts), [missing("SHOP-1", "100")]);
            // A past-due notice before the payment of this term speaks of
            // the one before.
            let mut facts = monthly();
            facts.subscriptions[0]
                .orders
                .push(order("200", "RENEWAL", 30, 60, true));
            facts.subscriptions[0].notices = vec![said(29, "PAST_DUE", None)];
            assert_eq!(opened(64, &facts), [missing("200", "200")]);
        }

        #[test]
        fn lifetime_licences_trials_and_what_the_notices_say_of_recurring() {
            let mut facts = monthly();
            facts.subscriptions[0].orders[0].order.line.lifetime = true;
            facts.subscriptions[0].orders[0].order.line.expires_at = None;
            assert!(opened(400, &facts).is_empty(), "lifetime");
            let mut facts = monthly();
            facts.subscriptions[0].notices = vec![LicenceSaid {
                lifetime: true,
                ..said(5, "ACTIVE", None)
            }];
            assert!(opened(400, &facts).is_empty(), "a notice said lifetime");
            // A trial lapses unless a notice says it renews.
            let mut facts = monthly();
            facts.subscriptions[0].orders[0].order.line.licence_type = Some("TRIAL".into());
            assert!(opened(40, &facts).is_empty(), "a trial");
            facts.subscriptions[0].notices = vec![LicenceSaid {
                recurring: Some(true),
                ..said(5, "ACTIVE", None)
            }];
            assert_eq!(opened(40, &facts), [missing("SHOP-1", "100")]);
            // The latest notice that says it wins: recurring turned off.
            facts.subscriptions[0].notices.push(LicenceSaid {
                recurring: Some(false),
                ..said(6, "ACTIVE", None)
            });
            assert!(opened(40, &facts).is_empty(), "not recurring any more");
            // Nothing paid, nothing to renew.
            let mut facts = monthly();
            facts.subscriptions[0].orders[0].order.paid = false;
            assert!(opened(400, &facts).is_empty(), "never paid");
        }

        #[test]
        fn a_paid_renewal_prevents_and_closes_the_item() {
            let mut facts = monthly();
            facts.subscriptions[0]
                .orders
                .push(order("200", "RENEWAL", 30, 60, true));
            assert!(opened(40, &facts).is_empty());
            facts.open = vec![OpenSweepItem {
                id: 5,
                kind: ReviewKind::RenewalMissing,
                order_ref: Some("SHOP-1".into()),
                processor_ref: Some("100".into()),
            }];
            let plan = decide(at(40), &SweepPolicy::default(), &facts);
            assert_eq!(
                plan.close,
                [Closing {
                    id: 5,
                    note: "a renewal was paid (order 200)".into()
                }]
            );
            // Still missing: stays open, and is not raised twice.
            let mut facts = monthly();
            facts.open = vec![OpenSweepItem {
                id: 5,
                kind: ReviewKind::RenewalMissing,
                order_ref: Some("SHOP-1".into()),
                processor_ref: Some("100".into()),
            }];
            facts.raised.insert((
                ReviewKind::RenewalMissing,
                "SHOP-1".into(),
                Some("100".into()),
            ));
            assert_eq!(
                decide(at(40), &SweepPolicy::default(), &facts),
                SweepPlan::default()
            );
            // A past-due notice arrives: it closes.
            facts.subscriptions[0]
                .notices
                .push(said(31, "PAST_DUE", None));
            let plan = decide(at(41), &SweepPolicy::default(), &facts);
            assert_eq!(plan.close.len(), 1, "{plan:?}");
            assert!(plan.close[0].note.contains("ended"), "{plan:?}");
        }

        #[test]
        fn one_item_per_order_names_every_licence_it_lapsed() {
            let mut facts = monthly();
            let mut other = facts.subscriptions[0].clone();
            other.licence_ref = "XRILXB9ZI3".into();
            facts.subscriptions.push(other);
            let plan = decide(at(40), &SweepPolicy::default(), &facts);
            assert_eq!(plan.open.len(), 1, "{plan:?}");
            let details = &plan.open[0].details;
            assert!(
                details.contains("TOF6T8VPY3") && details.contains("XRILXB9ZI3"),
                "{details}"
            );
        }

        fn after_cancel(refno: &str) -> (ReviewKind, Option<String>, Option<String>) {
            (
                ReviewKind::RenewalAfterCancel,
                Some(refno.into()),
                Some(refno.into()),
            )
        }

        #[test]
        fn a_renewal_paid_after_a_cancellation_is_raised_once_per_renewal() {
            let mut facts = monthly();
            facts.subscriptions[0]
                .orders
                .push(order("200", "RENEWAL", 30, 60, true));
            facts.subscriptions[0]
                .orders
                .push(order("300", "REGULAR", 60, 90, true));
            facts.subscriptions[0].notices = vec![said(20, "CANCELED", None)];
            assert_eq!(
                opened(61, &facts),
                [after_cancel("200"), after_cancel("300")]
            );
            let plan = decide(at(61), &SweepPolicy::default(), &facts);
            assert!(
                plan.open[0].details.contains("after a licence notice of")
                    && plan.open[0].details.contains("said it was canceled"),
                "{plan:?}"
            );
            // Active again before the renewals: nothing.
            facts.subscriptions[0]
                .notices
                .push(said(25, "ACTIVE", None));
            assert!(opened(61, &facts).is_empty());
            // Disabled between the two renewals: only the second.
            facts.subscriptions[0]
                .notices
                .push(said(45, "DISABLED", None));
            assert_eq!(opened(61, &facts), [after_cancel("300")]);
            // Canceled after the payment, or past due: not this kind.
            let mut facts = monthly();
            facts.subscriptions[0]
                .orders
                .push(order("200", "RENEWAL", 30, 60, true));
            facts.subscriptions[0].notices =
                vec![said(31, "CANCELED", None), said(29, "PAST_DUE", None)];
            facts.subscriptions[0].notices.sort_by_key(|n| n.updated_at);
            assert!(opened(50, &facts).is_empty());
            // The first order is never a renewal.
            let mut facts = monthly();
            facts.subscriptions[0].orders[0].paid_at = Some(day(5));
            facts.subscriptions[0].notices = vec![said(1, "CANCELED", None)];
            assert!(
                !opened(10, &facts)
                    .iter()
                    .any(|k| k.0 == ReviewKind::RenewalAfterCancel)
            );
        }

        #[test]
        fn an_open_renewal_after_cancel_closes_when_a_notice_says_it_was_active() {
            let mut facts = monthly();
            facts.subscriptions[0]
                .orders
                .push(order("200", "RENEWAL", 30, 60, true));
            facts.subscriptions[0].notices =
                vec![said(20, "CANCELED", None), said(25, "ACTIVE", None)];
            facts.open = vec![OpenSweepItem {
                id: 9,
                kind: ReviewKind::RenewalAfterCancel,
                order_ref: Some("200".into()),
                processor_ref: Some("200".into()),
            }];
            let plan = decide(at(40), &SweepPolicy::default(), &facts);
            assert_eq!(plan.close.len(), 1);
            assert_eq!(plan.close[0].id, 9);
        }

        fn arbitrary_facts() -> impl Strategy<Value = SweepFacts> {
            let orders = prop::collection::vec((0i64..4, 0i64..100, 1i64..40, any::<bool>()), 1..4);
            let notices = prop::collection::vec(
                (
                    0i64..150,
                    prop::sample::select(vec![
                        "", "ACTIVE", "PAST_DUE", "EXPIRED", "DISABLED", "CANCELED",
                    ]),
                    prop::option::of(any::<bool>()),
                ),
                0..4,
            );
            (orders, notices, any::<bool>()).prop_map(|(orders, notices, lifetime)| {
                let orders = orders
                    .into_iter()
                    .enumerate()
                    .map(|(i, (kind, start, length, paid))| {
                        let kind = ["REGULAR", "RENEWAL", "TRIAL", "UPGRADE"][kind as usize];
                        let mut o = order(
                            &format!("{}", 100 * (i + 1)),
                            kind,
                            start,
                            start + length,
                            paid,
                        );
                        o.order.line.lifetime = lifetime && i == 0;
                        o
                    })
                    .collect();
                let mut notices: Vec<LicenceSaid> = notices
                    .into_iter()
                    .map(|(d, status, recurring)| LicenceSaid {
                        recurring,
                        ..said(d, status, None)
                    })
                    .collect();
                notices.sort_by_key(|n| n.updated_at);
                SweepFacts {
                    subscriptions: vec![SubscriptionFacts {
                        licence_ref: LICENCE.to_owned(),
                        orders,
                        notices,
                    }],
                    ..SweepFacts::default()
                }
            })
        }

        proptest! {
            /// A lifetime licence never misses a renewal, and neither does
            /// one a notice since its last payment said expired.
            #[test]
            fn never_missing_for_a_lifetime_licence_or_after_an_expired_notice(
                facts in arbitrary_facts(),
                now in 0i64..400,
            ) {
                let mut lifetime = facts.clone();
                for o in &mut lifetime.subscriptions[0].orders {
                    o.order.line.lifetime = true;
                }
                prop_assert!(!opened(now, &lifetime).iter().any(|k| k.0 == ReviewKind::RenewalMissing));
                let mut expired = facts.clone();
                let last_paid = expired.subscriptions[0].orders.iter().filter_map(|o| o.paid_at).max();
                if let Some(last_paid) = last_paid {
                    expired.subscriptions[0].notices.push(LicenceSaid {
                        updated_at: last_paid,
                        ..said(0, "EXPIRED", None)
                    });
                    prop_assert!(!opened(now, &expired).iter().any(|k| k.0 == ReviewKind::RenewalMissing));
                }
            }

            /// A second sweep with the first one's items recorded opens
            /// nothing, and nothing the sweep opens is closed at once.
            #[test]
            fn renewal_items_are_raised_once(facts in arbitrary_facts(), now in 0i64..400) {
                let mut f = facts;
                let first = decide(at(now), &SweepPolicy::default(), &f);
                for (id, finding) in first.open.iter().enumerate() {
                    f.raised.insert((
                        finding.kind,
                        finding.order_ref.clone().unwrap_or_default(),
                        finding.processor_ref.clone(),
                    ));
                    f.open.push(OpenSweepItem {
                        id: id as i64,
                        kind: finding.kind,
                        order_ref: finding.order_ref.clone(),
                        processor_ref: finding.processor_ref.clone(),
                    });
                }
                let second = decide(at(now), &SweepPolicy::default(), &f);
                prop_assert!(second.open.is_empty(), "{:?}", second.open);
                prop_assert!(second.close.is_empty(), "{:?}", second.close);
            }
        }
    }

    proptest! {
        /// Whatever the time and the payment's flags, `unsettled_payment`
        /// is raised only for a capture nothing matched and no differing
        /// sale line was matched to: never beside `settlement_amount_differs`.
        #[test]
        fn unsettled_only_when_no_line_accounts_for_the_capture(
            day in 0i64..40,
            settled: bool,
            amount_differs: bool,
            paid in 0i64..100_00,
        ) {
            let mut f = facts();
            f.payments[0].settled = settled;
            f.payments[0].amount_differs = amount_differs;
            f.payments[0].paid = paid;
            let plan = decide(at(day), &SweepPolicy::default(), &f);
            let raised = plan.open.iter().any(|finding| {
                finding.kind == ReviewKind::UnsettledPayment
                    && finding.order_ref.as_deref() == Some("S-3")
            });
            prop_assert_eq!(
                raised,
                paid > 0 && !settled && !amount_differs && day >= 7
            );
        }
    }

    proptest! {
        /// Deciding twice, with what the first decision opened recorded as
        /// raised, opens nothing the second time, whatever the time.
        #[test]
        fn a_second_sweep_opens_nothing(day in 0i64..40, stale in 1i64..10, settle in 1i64..20) {
            let policy = SweepPolicy {
                stale_order_age: Duration::days(stale),
                settlement_days: Duration::days(settle),
                renewal_grace: Duration::days(3),
            };
            let mut f = facts();
            let first = decide(at(day), &policy, &f);
            for finding in &first.open {
                f.raised.insert((
                    finding.kind,
                    finding.order_ref.clone().unwrap_or_default(),
                    finding.processor_ref.clone(),
                ));
            }
            let second = decide(at(day), &policy, &f);
            prop_assert!(second.open.is_empty());
            // Later, only causes not raised yet can open.
            let later = decide(at(day + 30), &policy, &f);
            for finding in later.open {
                prop_assert!(!f.raised.contains(&(
                    finding.kind,
                    finding.order_ref.clone().unwrap_or_default(),
                    finding.processor_ref.clone(),
                )));
            }
        }
    }
}
