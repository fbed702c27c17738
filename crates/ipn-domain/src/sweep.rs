//! Sweeps: what silently never happened becomes a review item.
//!
//! Notifications say what happened; nothing says what did not. An order
//! still `pending` or `authorized` days after it was placed never
//! completed; a payment captured a week ago that no settlement line
//! settled was never paid out; a refund the processor never debited is
//! money the merchant still holds and owes. [`decide`] looks at the facts
//! the store loads and says which items to open and which open ones to
//! close because their cause went away. It takes `now`, so tests inject the
//! time instead of waiting.
//!
//! Each cause is raised once: an item of the same kind for the same order
//! and payment that exists already (open, or resolved by a person) is not
//! opened again. The store leaves out of [`SweepFacts::raised`] the items
//! the system closed because their cause went away, so a cause that comes
//! back (a later refund of the same payment, not debited) is raised again.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};

use crate::money::{Currency, Money};
use crate::reconcile::ReviewKind;
use crate::settlement::Finding;
use crate::status::OrderState;

/// How old things may get before the sweep raises them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepPolicy {
    /// An order `pending` or `authorized` longer than this is stale.
    pub stale_order_age: Duration,
    /// A payment or refund not settled this long after it was recorded is
    /// late.
    pub settlement_days: Duration,
}

impl Default for SweepPolicy {
    fn default() -> Self {
        Self {
            stale_order_age: Duration::days(3),
            settlement_days: Duration::days(7),
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
pub const SWEEP_KINDS: [ReviewKind; 3] = [
    ReviewKind::StaleOrder,
    ReviewKind::UnsettledPayment,
    ReviewKind::RefundNotDebited,
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
            && p.paid > 0
            && !p.settled
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
            ReviewKind::UnsettledPayment => payment()
                .filter(|p| p.settled)
                .map(|_| "a settlement line settled the payment".to_owned()),
            ReviewKind::RefundNotDebited => payment()
                .filter(|p| p.debited >= p.refunds.iter().map(|(_, m)| m).sum::<i64>())
                .map(|_| "settlement lines debited the refunds".to_owned()),
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
                    refunds: vec![(at(0), 10_00)],
                    debited: 10_00,
                },
            ],
            raised: HashSet::new(),
            open: Vec::new(),
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

    proptest! {
        /// Deciding twice, with what the first decision opened recorded as
        /// raised, opens nothing the second time, whatever the time.
        #[test]
        fn a_second_sweep_opens_nothing(day in 0i64..40, stale in 1i64..10, settle in 1i64..20) {
            let policy = SweepPolicy {
                stale_order_age: Duration::days(stale),
                settlement_days: Duration::days(settle),
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
