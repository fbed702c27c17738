//! The sweep: what silently never happened (stale orders, unsettled
//! payments, refunds not debited, missing renewals) or should not have
//! (a renewal paid after a cancellation) becomes a review item, as of a
//! time the caller gives.
//!
//! [`sweep()`] opens one transaction: it tries the sweep's advisory lock
//! (another instance sweeping means this one skips the round, without
//! waiting), loads the facts ([`crate::store::sweep`]), lets
//! [`crate::domain::sweep::decide`] say which items to open and which to
//! close, and writes that. Nothing here reads a clock: `serve` passes its
//! own `now` each round, `sweep --as-of` and the tests another.
//!
//! [`dry_run()`] decides the same way in a read-only transaction and
//! writes nothing: a person closing a month sees what a sweep would open
//! and close before any of it becomes a permanent item.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};

use crate::domain::Currencies;
use crate::domain::ReviewKind;
use crate::domain::settlement::Finding;
use crate::domain::sweep::{
    OpenSweepItem, PaymentSettlement, SweepFacts, SweepPlan, SweepPolicy, WaitingOrder, decide,
};
use crate::store::sweep::{self, SweepItem};
use crate::store::{Store, StoreError};

/// What one sweep did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SweepOutcome {
    /// False when another instance held the lock: this one did nothing.
    pub ran: bool,
    /// The items opened.
    pub opened: Vec<Finding>,
    /// How many open items were closed because their cause went away.
    pub closed: usize,
    /// The items closed (or, in a dry run, that would be), with why.
    pub closed_items: Vec<ClosedItem>,
}

/// An open item the sweep closed because its cause went away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedItem {
    pub id: i64,
    pub kind: ReviewKind,
    pub order_ref: Option<String>,
    pub processor_ref: Option<String>,
    /// Why: the resolution note written on the item.
    pub note: String,
}

/// Sweeps once as of `now`: opens an item for each cause [`decide`]
/// finds that never had one, closes open items whose cause went away, in
/// one transaction. Returns `ran: false`, having done nothing, when
/// another instance is sweeping. Nothing refuses a sweep: an error is the
/// database's.
pub async fn sweep(
    store: &Store,
    now: DateTime<Utc>,
    policy: &SweepPolicy,
) -> Result<SweepOutcome, StoreError> {
    let mut conn = store.conn().await?;
    let policy = *policy;
    conn.transaction::<_, StoreError, _>(async |conn| {
        sweep_in(conn, now, &policy, store.currencies()).await
    })
    .await
}

/// Decides as [`sweep()`] would as of `now`, and writes nothing: the
/// facts are read in a read-only, repeatable-read transaction (the
/// database itself refuses any write), so `opened` and `closed_items` say
/// what a sweep would open and close. It takes no lock: reading cannot
/// disturb a sweep in progress, so `ran` is always true.
pub async fn dry_run(
    store: &Store,
    now: DateTime<Utc>,
    policy: &SweepPolicy,
) -> Result<SweepOutcome, StoreError> {
    let mut conn = store.conn().await?;
    let policy = *policy;
    conn.build_transaction()
        .read_only()
        .repeatable_read()
        .run::<_, StoreError, _>(async |conn| {
            let (plan, facts) = plan_in(conn, now, &policy, store.currencies()).await?;
            let closed_items: Vec<ClosedItem> = plan
                .close
                .iter()
                .filter_map(|closing| closed_item(&facts, closing.id, &closing.note))
                .collect();
            Ok(SweepOutcome {
                ran: true,
                opened: once_per_cause(plan.open),
                closed: closed_items.len(),
                closed_items,
            })
        })
        .await
}

/// The database's current time (`now()`): what `sweep --as-of` is
/// compared with, since the items a sweep writes are permanent and a
/// sweep dated after it would raise causes that have not happened yet.
pub async fn database_now(store: &Store) -> Result<DateTime<Utc>, StoreError> {
    let mut conn = store.conn().await?;
    sweep::database_now(&mut conn).await
}

async fn sweep_in(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    policy: &SweepPolicy,
    currencies: &Currencies,
) -> Result<SweepOutcome, StoreError> {
    if !sweep::try_lock(conn).await? {
        return Ok(SweepOutcome::default());
    }
    let (plan, facts) = plan_in(conn, now, policy, currencies).await?;
    let mut outcome = SweepOutcome {
        ran: true,
        ..SweepOutcome::default()
    };
    for finding in once_per_cause(plan.open) {
        if sweep::open_item(conn, &finding).await? {
            outcome.opened.push(finding);
        }
    }
    for closing in plan.close {
        let closed = sweep::close_item(conn, closing.id, &closing.note).await?;
        outcome.closed += closed;
        if closed > 0
            && let Some(item) = closed_item(&facts, closing.id, &closing.note)
        {
            outcome.closed_items.push(item);
        }
    }
    Ok(outcome)
}

/// Loads the facts as of `now` and lets [`decide`] say what to do.
async fn plan_in(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    policy: &SweepPolicy,
    currencies: &Currencies,
) -> Result<(SweepPlan, SweepFacts), StoreError> {
    let items = sweep::raised_items(conn).await?;
    let orders = sweep::waiting_orders(conn, now - policy.stale_order_age).await?;
    let payments =
        sweep::payments_to_settle(conn, now - policy.settlement_days, currencies).await?;
    let subscriptions =
        sweep::subscriptions_to_renew(conn, (now - policy.renewal_grace).naive_utc()).await?;
    let mut facts = facts_of(items, orders, payments);
    facts.subscriptions = subscriptions;
    let plan = decide(now, policy, &facts);
    Ok((plan, facts))
}

/// The open item `id` of `facts`, as closed with `note`.
fn closed_item(facts: &SweepFacts, id: i64, note: &str) -> Option<ClosedItem> {
    facts
        .open
        .iter()
        .find(|item| item.id == id)
        .map(|item| ClosedItem {
            id,
            kind: item.kind,
            order_ref: item.order_ref.clone(),
            processor_ref: item.processor_ref.clone(),
            note: note.to_owned(),
        })
}

/// What [`decide`] is given: the waiting orders and the payments as
/// loaded, every loaded item's cause as raised (open, or resolved by a
/// person), and the open ones as items it may close.
pub fn facts_of(
    items: Vec<SweepItem>,
    orders: Vec<WaitingOrder>,
    payments: Vec<PaymentSettlement>,
) -> SweepFacts {
    let mut facts = SweepFacts {
        orders,
        payments,
        ..SweepFacts::default()
    };
    for item in items {
        facts.raised.insert((
            item.kind,
            item.order_ref.clone().unwrap_or_default(),
            item.processor_ref.clone(),
        ));
        if item.status == "open" {
            facts.open.push(OpenSweepItem {
                id: item.id,
                kind: item.kind,
                order_ref: item.order_ref,
                processor_ref: item.processor_ref,
            });
        }
    }
    facts
}

/// The findings to open, the first of each cause (kind, order, payment)
/// only, in their order.
pub fn once_per_cause(findings: Vec<Finding>) -> Vec<Finding> {
    let mut seen = HashSet::new();
    findings
        .into_iter()
        .filter(|finding| {
            seen.insert((
                finding.kind,
                finding.order_ref.clone(),
                finding.processor_ref.clone(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ReviewKind;

    fn item(id: i64, kind: ReviewKind, order_ref: Option<&str>, status: &str) -> SweepItem {
        SweepItem {
            id,
            kind,
            order_ref: order_ref.map(str::to_owned),
            processor_ref: None,
            status: status.to_owned(),
        }
    }

    #[test]
    fn every_loaded_item_is_raised_and_only_the_open_ones_may_close() {
        let facts = facts_of(
            vec![
                item(1, ReviewKind::StaleOrder, Some("S-1"), "open"),
                // Resolved by a person: raised, never reopened, not closed.
                item(2, ReviewKind::StaleOrder, Some("S-2"), "resolved"),
                item(3, ReviewKind::UnsettledPayment, None, "open"),
            ],
            Vec::new(),
            Vec::new(),
        );
        assert_eq!(facts.raised.len(), 3);
        assert!(
            facts
                .raised
                .contains(&(ReviewKind::StaleOrder, "S-2".to_owned(), None))
        );
        assert!(
            facts
                .raised
                .contains(&(ReviewKind::UnsettledPayment, String::new(), None)),
            "no order reference is the empty one"
        );
        let open: Vec<i64> = facts.open.iter().map(|i| i.id).collect();
        assert_eq!(open, [1, 3]);
        assert_eq!(facts.open[0].order_ref.as_deref(), Some("S-1"));
    }

    fn finding(kind: ReviewKind, order_ref: &str, refno: Option<&str>, details: &str) -> Finding {
        Finding {
            kind,
            order_ref: Some(order_ref.to_owned()),
            processor_ref: refno.map(str::to_owned),
            details: details.to_owned(),
        }
    }

    #[test]
    fn a_cause_is_opened_once_the_first_time_it_is_found() {
        let found = vec![
            finding(ReviewKind::RefundNotDebited, "S-1", Some("R1"), "first"),
            finding(ReviewKind::RefundNotDebited, "S-1", Some("R1"), "second"),
            finding(
                ReviewKind::RefundNotDebited,
                "S-1",
                Some("R2"),
                "other payment",
            ),
            finding(
                ReviewKind::UnsettledPayment,
                "S-1",
                Some("R1"),
                "other kind",
            ),
        ];
        let details: Vec<String> = once_per_cause(found)
            .into_iter()
            .map(|f| f.details)
            .collect();
        assert_eq!(details, ["first", "other payment", "other kind"]);
    }
}
