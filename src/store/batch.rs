//! Applying many tokenized notifications in one transaction.
//!
//! One commit per notification is the throughput wall (PostgreSQL waits for
//! the write-ahead log on every commit), so the worker collects a batch of
//! deliveries and applies them here together, with the same meaning as
//! [`apply_once`](super::apply) one by one, in order:
//!
//! 1. lock the identities of the batch (advisory locks, in a fixed order, so
//!    two workers never deadlock on them);
//! 2. record every delivery with one multi-row insert, and decide which
//!    delivery carries each identity and which are repeats (also within the
//!    batch: the first in batch order carries it);
//! 3. lock the orders of the batch in the order of their ids (a fixed order
//!    again) and load their payments with one query;
//! 4. decide with the pure state machine, in batch order, several
//!    notifications of one order one after the other in memory;
//! 5. write orders, payments, ledger rows, review items and outcomes with
//!    multi-row statements; the caller commits once.
//!
//! A notification whose decision cannot be written (a constraint the state
//! machine did not foresee) fails the whole batch; the worker then applies
//! the batch's notifications one by one, so one bad notification holds back
//! no other.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Int8, Nullable, Text};
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::apply::{
    ApplyReport, Meaning, NewNotification, OrderRow, PaymentRow, REPROCESSABLE, TokenizedColumns,
    close_late_repeats, facts_of, repeat_reviews, resolve_items,
};
use super::schema::{notifications, order_events, orders, payments, review_items};
use super::{Store, StoreError};
use crate::domain::{
    AutoResolution, NewReviewItem, OrderFacts, Outcome, PaymentEvent, ReconcilePolicy, ReviewKind,
    decide,
};

/// One notification of a batch: the event and when it was received.
#[derive(Debug, Clone)]
pub struct BatchItem {
    pub event: PaymentEvent,
    pub received_at: DateTime<Utc>,
}

impl Store {
    /// Applies `items` in one transaction, with the meaning of applying
    /// them one by one in this order. Returns one report per item, in
    /// order. `Err` fails the whole batch (nothing is written): the caller
    /// retries it, or applies its items one by one.
    pub async fn apply_batch(
        &self,
        items: &[BatchItem],
        policy: &ReconcilePolicy,
    ) -> Result<Vec<ApplyReport>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        conn.transaction::<_, StoreError, _>(async |conn| apply_batch_in(conn, items, policy).await)
            .await
    }
}

/// What became of one delivery of the batch.
#[derive(Debug, Clone)]
enum Role {
    /// The same bytes were recorded before (or earlier in this batch).
    Redelivery,
    /// Carries its notification: `row` is its row.
    First { row: i64 },
    /// Repeats the notification that `first` carries.
    Repeat { row: i64, first: i64 },
    /// Carried its notification earlier in this batch, but its order does
    /// not exist, so a later delivery took over: a repeat of that one now,
    /// without a repeat's review items (one by one it was judged as the
    /// carrier when it arrived).
    HandedOver { row: i64, first: i64 },
}

async fn apply_batch_in(
    conn: &mut AsyncPgConnection,
    items: &[BatchItem],
    policy: &ReconcilePolicy,
) -> Result<Vec<ApplyReport>, StoreError> {
    let identities: Vec<&str> = items.iter().map(|i| i.event.identity.as_str()).collect();
    diesel::sql_query(
        "SELECT pg_advisory_xact_lock(h) FROM \
         (SELECT DISTINCT hashtextextended(i, 0) AS h FROM unnest($1::text[]) AS i) AS locks \
         ORDER BY h",
    )
    .bind::<Array<Text>, _>(&identities)
    .execute(conn)
    .await?;

    let rows = record_deliveries(conn, items).await?;
    let refs: Vec<&str> = items.iter().map(|i| i.event.order_ref.as_str()).collect();
    let known_orders: HashSet<String> = orders::table
        .filter(orders::order_ref.eq_any(&refs))
        .select(orders::order_ref)
        .load::<String>(conn)
        .await?
        .into_iter()
        .collect();
    let mut roles = assign_roles(conn, items, &rows, &known_orders).await?;

    // Review items of repeats (a copy that says something new, a late
    // repeat of a refund or chargeback), each judged against every earlier
    // delivery of its identity: those recorded before, then this batch's
    // in batch order, as one by one.
    let mut items_to_open: Vec<(NewReviewItem, String, i64)> = Vec::new();
    let mut late_to_close: Vec<(String, usize)> = Vec::new();
    let mut reports: Vec<ApplyReport> = vec![ApplyReport::only(Outcome::Duplicate); items.len()];
    let mut history = load_history(conn, items, &rows).await?;
    for (index, item) in items.iter().enumerate() {
        let event = &item.event;
        let identity = event.identity.as_str().to_owned();
        match roles[index] {
            Role::Redelivery => continue,
            Role::First { .. } | Role::HandedOver { .. } => {}
            Role::Repeat { row, first } => {
                let earlier = history
                    .get(&identity)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let reviews = repeat_reviews(event, row, first, earlier);
                for review in reviews.open {
                    reports[index].review_items.push(review.kind);
                    items_to_open.push((review, event.order_ref.clone(), row));
                }
                if reviews.close_late > 0 {
                    late_to_close.push((identity.clone(), reviews.close_late));
                }
            }
        }
        history
            .entry(identity)
            .or_default()
            .push((event.ipn_date, Meaning::of(event)));
    }

    // Lock the orders of the notifications that carry their identity, in
    // the order of their ids, and load their payments.
    let order_refs: Vec<&str> = items
        .iter()
        .zip(&roles)
        .filter(|(_, role)| matches!(role, Role::First { .. }))
        .map(|(item, _)| item.event.order_ref.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let order_rows: Vec<(String, OrderRow)> = orders::table
        .filter(orders::order_ref.eq_any(&order_refs))
        .order(orders::id.asc())
        .select((orders::order_ref, OrderRow::as_select()))
        .for_update()
        .load(conn)
        .await?;
    let order_ids: Vec<i64> = order_rows.iter().map(|(_, o)| o.id).collect();
    let payment_rows: Vec<PaymentRow> = payments::table
        .filter(payments::order_id.eq_any(&order_ids))
        .select(PaymentRow::as_select())
        .load(conn)
        .await?;
    let mut payments_by_order: HashMap<i64, Vec<PaymentRow>> = HashMap::new();
    for row in payment_rows {
        payments_by_order.entry(row.order_id).or_default().push(row);
    }
    let mut orders: BTreeMap<String, (i64, OrderFacts, OrderFacts)> = BTreeMap::new();
    let created: HashMap<i64, DateTime<Utc>> = order_rows
        .iter()
        .map(|(_, o)| (o.id, o.created_at))
        .collect();
    for (order_ref, row) in &order_rows {
        let facts = facts_of(row, payments_by_order.remove(&row.id).unwrap_or_default())?;
        orders.insert(order_ref.clone(), (row.id, facts.clone(), facts));
    }

    // Decide, in batch order.
    let mut ledger = Vec::new();
    let mut moved = Vec::new();
    let mut resolutions: Vec<(String, AutoResolution)> = Vec::new();
    let mut outcomes: HashMap<i64, (Outcome, String)> = HashMap::new();
    let mut applied_orders: HashSet<String> = HashSet::new();
    for (index, item) in items.iter().enumerate() {
        let Role::First { row } = roles[index] else {
            continue;
        };
        let event = &item.event;
        let Some((order_id, _, facts)) = orders.get_mut(&event.order_ref) else {
            if !event.pan_fields.is_empty() {
                let review = NewReviewItem::pan_detected(&event.pan_fields);
                reports[index].review_items.push(review.kind);
                items_to_open.push((review, event.order_ref.clone(), row));
            }
            reports[index].outcome = Outcome::OrderNotFound;
            outcomes.insert(row, (Outcome::OrderNotFound, "order_not_found".to_owned()));
            continue;
        };
        let decision = decide(facts, event, policy);
        for movement in crate::domain::journal::movements(facts, &decision.facts) {
            moved.push((*order_id, row, movement));
        }
        if let Some(created_at) = created.get(order_id) {
            reports[index].reconciled_after =
                super::journal::reconciled_after(*created_at, &decision);
        }
        ledger.push((
            order_events::order_id.eq(*order_id),
            order_events::notification_id.eq(row),
            order_events::order_status.eq(event.status.as_str().to_owned()),
            order_events::effect.eq(decision.effect),
            order_events::old_status.eq(decision.old_state),
            order_events::new_status.eq(decision.new_state),
            order_events::amount_minor.eq(event.amount.minor_units()),
            order_events::currency.eq(event.amount.currency().as_str().to_owned()),
            order_events::reason.eq(decision.reason.clone()),
        ));
        for review in &decision.review_items {
            reports[index].review_items.push(review.kind);
            items_to_open.push((review.clone(), event.order_ref.clone(), row));
        }
        for resolution in &decision.resolutions {
            resolutions.push((event.order_ref.clone(), resolution.clone()));
        }
        applied_orders.insert(event.order_ref.clone());
        reports[index].outcome = decision.outcome;
        reports[index].order_state = Some(decision.new_state);
        outcomes.insert(
            row,
            (decision.outcome, decision.outcome.as_str().to_owned()),
        );
        *facts = decision.facts;
    }

    write_orders(conn, &orders).await?;
    if !ledger.is_empty() {
        diesel::insert_into(order_events::table)
            .values(&ledger)
            .execute(conn)
            .await?;
    }
    super::journal::record_many(conn, &moved).await?;
    // Opened before the resolutions run, as one by one: an item raised and
    // made untrue within the batch ends resolved.
    open_items(conn, &items_to_open).await?;
    for (identity, count) in &late_to_close {
        close_late_repeats(conn, identity, *count).await?;
    }
    for (order_ref, resolution) in &resolutions {
        resolve_items(conn, order_ref, resolution).await?;
    }
    resolve_orphans(conn, &applied_orders).await?;
    finish_rows(conn, items, &mut roles, &outcomes).await?;
    Ok(reports)
}

/// Inserts a row per new body, and takes over rows whose earlier outcome
/// allows processing again. Returns each item's row, or `None` for a
/// redelivery (the bytes were recorded and settled before, or appear
/// earlier in this batch).
async fn record_deliveries(
    conn: &mut AsyncPgConnection,
    items: &[BatchItem],
) -> Result<Vec<Option<i64>>, StoreError> {
    let mut first_of_digest: HashMap<&str, usize> = HashMap::new();
    for (index, item) in items.iter().enumerate() {
        first_of_digest
            .entry(item.event.digest.as_str())
            .or_insert(index);
    }
    let currencies: Vec<_> = items.iter().map(|i| i.event.amount.currency()).collect();
    let new_rows: Vec<NewNotification<'_>> = items
        .iter()
        .enumerate()
        .filter(|(index, item)| first_of_digest[item.event.digest.as_str()] == *index)
        .map(|(index, item)| NewNotification {
            body_sha256: item.event.digest.as_str(),
            tokenized: TokenizedColumns::of(&item.event, &currencies[index]),
            received_at: item.received_at,
            processed_at: None,
            outcome: Outcome::OrderNotFound,
            reason: None,
        })
        .collect();
    let inserted: Vec<(i64, String)> = diesel::insert_into(notifications::table)
        .values(&new_rows)
        .on_conflict(notifications::body_sha256)
        .do_nothing()
        .returning((notifications::id, notifications::body_sha256))
        .get_results(conn)
        .await?;
    let mut row_of: HashMap<String, i64> = inserted.into_iter().map(|(id, d)| (d, id)).collect();
    let seen_before: Vec<&str> = first_of_digest
        .keys()
        .copied()
        .filter(|digest| !row_of.contains_key(*digest))
        .collect();
    if !seen_before.is_empty() {
        let existing: Vec<(i64, String, Outcome)> = notifications::table
            .filter(notifications::body_sha256.eq_any(&seen_before))
            .select((
                notifications::id,
                notifications::body_sha256,
                notifications::outcome,
            ))
            .for_update()
            .load(conn)
            .await?;
        for (id, digest, outcome) in existing {
            if !REPROCESSABLE.contains(&outcome) {
                continue;
            }
            // Processed again (the order now exists, a key was added):
            // refresh the tokenized columns, which a rejected record lacks.
            let index = first_of_digest[digest.as_str()];
            diesel::update(notifications::table.find(id))
                .set(&TokenizedColumns::of(
                    &items[index].event,
                    &currencies[index],
                ))
                .execute(conn)
                .await?;
            row_of.insert(digest, id);
        }
    }
    Ok(items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let digest = item.event.digest.as_str();
            (first_of_digest[digest] == index)
                .then(|| row_of.get(digest).copied())
                .flatten()
        })
        .collect())
}

/// Decides which row carries each identity: a first recorded before (and
/// settled), or the first delivery of the identity in this batch. A first
/// whose order does not exist (recorded before, or earlier in this batch)
/// hands the notification over to the next delivery of its identity, and
/// its rows become repeats of it: what applying one by one does.
async fn assign_roles(
    conn: &mut AsyncPgConnection,
    items: &[BatchItem],
    rows: &[Option<i64>],
    known_orders: &HashSet<String>,
) -> Result<Vec<Role>, StoreError> {
    let batch_rows: Vec<i64> = rows.iter().flatten().copied().collect();
    let identities: Vec<&str> = items
        .iter()
        .zip(rows)
        .filter(|(_, row)| row.is_some())
        .map(|(item, _)| item.event.identity.as_str())
        .collect();
    let recorded: Vec<(i64, Option<String>, Outcome)> = notifications::table
        .filter(notifications::identity.eq_any(&identities))
        .filter(notifications::repeat_of.is_null())
        .filter(notifications::id.ne_all(&batch_rows))
        .select((
            notifications::id,
            notifications::identity,
            notifications::outcome,
        ))
        .for_update()
        .load(conn)
        .await?;
    let mut carrier: HashMap<String, i64> = HashMap::new();
    let mut handed_over: HashMap<String, i64> = HashMap::new();
    for (id, identity, outcome) in recorded {
        let Some(identity) = identity else { continue };
        if REPROCESSABLE.contains(&outcome) {
            handed_over.insert(identity, id);
        } else {
            carrier.insert(identity, id);
        }
    }
    // In-batch carriers whose order does not exist: they will end
    // `order_not_found`, so the next delivery of their identity takes over.
    let mut unapplied: HashMap<String, usize> = HashMap::new();
    let mut roles: Vec<Role> = Vec::with_capacity(items.len());
    for (index, (item, row)) in items.iter().zip(rows).enumerate() {
        let Some(row) = *row else {
            roles.push(Role::Redelivery);
            continue;
        };
        let identity = item.event.identity.as_str();
        if let Some(previous) = unapplied.remove(identity) {
            let Role::First { row: old } = roles[previous] else {
                unreachable!("only carriers are remembered as unapplied");
            };
            // Rows recorded before that pointed to the old carrier follow.
            diesel::update(notifications::table.filter(notifications::repeat_of.eq(old)))
                .set((
                    notifications::repeat_of.eq(row),
                    notifications::reason.eq(format!("repeat of notification #{row}")),
                ))
                .execute(conn)
                .await?;
            for role in roles.iter_mut() {
                match role {
                    Role::First { row: r } if *r == old => {
                        *role = Role::HandedOver {
                            row: old,
                            first: row,
                        }
                    }
                    Role::Repeat { first, .. } | Role::HandedOver { first, .. }
                        if *first == old =>
                    {
                        *first = row
                    }
                    _ => {}
                }
            }
            carrier.remove(identity);
        }
        match carrier.get(identity) {
            Some(&first) => roles.push(Role::Repeat { row, first }),
            None => {
                if let Some(old) = handed_over.remove(identity) {
                    hand_over(conn, old, row).await?;
                }
                carrier.insert(identity.to_owned(), row);
                if !known_orders.contains(&item.event.order_ref) {
                    unapplied.insert(identity.to_owned(), index);
                }
                roles.push(Role::First { row });
            }
        }
    }
    Ok(roles)
}

/// Makes row `old` (a first whose order did not exist) and its repeats
/// repeats of row `new`.
async fn hand_over(conn: &mut AsyncPgConnection, old: i64, new: i64) -> Result<(), StoreError> {
    diesel::update(
        notifications::table.filter(
            notifications::id
                .eq(old)
                .or(notifications::repeat_of.eq(old)),
        ),
    )
    .set((
        notifications::repeat_of.eq(new),
        notifications::outcome.eq(Outcome::Duplicate),
        notifications::reason.eq(format!("repeat of notification #{new}")),
    ))
    .execute(conn)
    .await?;
    Ok(())
}

/// The deliveries recorded before the batch of each identity in it (date
/// and meaning), oldest first.
async fn load_history(
    conn: &mut AsyncPgConnection,
    items: &[BatchItem],
    rows: &[Option<i64>],
) -> Result<HashMap<String, Vec<(Option<NaiveDateTime>, Meaning)>>, StoreError> {
    let batch_rows: Vec<i64> = rows.iter().flatten().copied().collect();
    let identities: Vec<&str> = items.iter().map(|i| i.event.identity.as_str()).collect();
    let recorded: Vec<(Option<String>, Option<NaiveDateTime>, Meaning)> = notifications::table
        .filter(notifications::identity.eq_any(&identities))
        .filter(notifications::id.ne_all(&batch_rows))
        .order(notifications::id.asc())
        .select((
            notifications::identity,
            notifications::ipn_date,
            Meaning::as_select(),
        ))
        .load(conn)
        .await?;
    let mut history: HashMap<String, Vec<(Option<NaiveDateTime>, Meaning)>> = HashMap::new();
    for (identity, date, meaning) in recorded {
        if let Some(identity) = identity {
            history.entry(identity).or_default().push((date, meaning));
        }
    }
    Ok(history)
}

/// Writes the orders whose facts changed, and their changed payments, with
/// one statement each.
async fn write_orders(
    conn: &mut AsyncPgConnection,
    orders: &BTreeMap<String, (i64, OrderFacts, OrderFacts)>,
) -> Result<(), StoreError> {
    let changed: Vec<&(i64, OrderFacts, OrderFacts)> = orders
        .values()
        .filter(|(_, before, after)| before != after)
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = changed.iter().map(|(id, ..)| *id).collect();
    let states: Vec<&str> = changed.iter().map(|(_, _, f)| f.state().as_str()).collect();
    let refs: Vec<Option<&str>> = changed
        .iter()
        .map(|(_, _, f)| f.processor_ref.as_deref())
        .collect();
    let paid: Vec<i64> = changed.iter().map(|(_, _, f)| f.paid()).collect();
    let refunded: Vec<i64> = changed.iter().map(|(_, _, f)| f.refunded()).collect();
    let charged_back: Vec<i64> = changed.iter().map(|(_, _, f)| f.charged_back()).collect();
    let authorized: Vec<bool> = changed.iter().map(|(_, _, f)| f.authorized()).collect();
    let reversed: Vec<bool> = changed.iter().map(|(_, _, f)| f.reversed()).collect();
    let canceled: Vec<bool> = changed.iter().map(|(_, _, f)| f.canceled).collect();
    let suspect: Vec<bool> = changed.iter().map(|(_, _, f)| f.suspect).collect();
    let mismatch: Vec<bool> = changed.iter().map(|(_, _, f)| f.mismatch).collect();
    diesel::sql_query(
        "UPDATE orders AS o SET status = v.status, processor_ref = v.processor_ref, \
             paid_minor = v.paid, refunded_minor = v.refunded, charged_back_minor = v.charged_back, \
             authorized = v.authorized, reversed = v.reversed, canceled = v.canceled, \
             suspect = v.suspect, mismatch = v.mismatch, updated_at = now(), version = o.version + 1 \
         FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[], \
                     $7::bool[], $8::bool[], $9::bool[], $10::bool[], $11::bool[]) \
              AS v(id, status, processor_ref, paid, refunded, charged_back, authorized, reversed, \
                   canceled, suspect, mismatch) \
         WHERE o.id = v.id",
    )
    .bind::<Array<Int8>, _>(&ids)
    .bind::<Array<Text>, _>(&states)
    .bind::<Array<Nullable<Text>>, _>(&refs)
    .bind::<Array<Int8>, _>(&paid)
    .bind::<Array<Int8>, _>(&refunded)
    .bind::<Array<Int8>, _>(&charged_back)
    .bind::<Array<Bool>, _>(&authorized)
    .bind::<Array<Bool>, _>(&reversed)
    .bind::<Array<Bool>, _>(&canceled)
    .bind::<Array<Bool>, _>(&suspect)
    .bind::<Array<Bool>, _>(&mismatch)
    .execute(conn)
    .await?;

    let mut payment_rows = Vec::new();
    for (order_id, before, after) in &changed {
        for (processor_ref, payment) in &after.payments {
            if before.payments.get(processor_ref) == Some(payment) {
                continue;
            }
            payment_rows.push((
                payments::order_id.eq(*order_id),
                payments::processor_ref.eq(processor_ref.clone()),
                payments::authorized.eq(payment.authorized),
                payments::paid_minor.eq(payment.paid),
                payments::refunded_minor.eq(payment.refunded),
                payments::reversed.eq(payment.reversed),
            ));
        }
    }
    if !payment_rows.is_empty() {
        diesel::insert_into(payments::table)
            .values(&payment_rows)
            .on_conflict((payments::order_id, payments::processor_ref))
            .do_update()
            .set((
                payments::authorized.eq(excluded(payments::authorized)),
                payments::paid_minor.eq(excluded(payments::paid_minor)),
                payments::refunded_minor.eq(excluded(payments::refunded_minor)),
                payments::reversed.eq(excluded(payments::reversed)),
                payments::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
    }
    Ok(())
}

async fn open_items(
    conn: &mut AsyncPgConnection,
    items: &[(NewReviewItem, String, i64)],
) -> Result<(), StoreError> {
    if items.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = items
        .iter()
        .map(|(item, order_ref, notification_id)| {
            (
                review_items::kind.eq(item.kind),
                review_items::order_ref.eq(Some(order_ref.clone())),
                review_items::processor_ref.eq(item.processor_ref.clone()),
                review_items::notification_id.eq(Some(*notification_id)),
                review_items::details.eq(item.details.clone()),
            )
        })
        .collect();
    diesel::insert_into(review_items::table)
        .values(&rows)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// Orphan items of orders that exist now and had a notification applied
/// are no longer true.
async fn resolve_orphans(
    conn: &mut AsyncPgConnection,
    order_refs: &HashSet<String>,
) -> Result<(), StoreError> {
    if order_refs.is_empty() {
        return Ok(());
    }
    let refs: Vec<&str> = order_refs.iter().map(String::as_str).collect();
    diesel::update(
        review_items::table
            .filter(review_items::status.eq("open"))
            .filter(review_items::kind.eq(ReviewKind::OrphanPayment))
            .filter(review_items::order_ref.eq_any(&refs)),
    )
    .set((
        review_items::status.eq("resolved"),
        review_items::resolved_by.eq(super::apply::SYSTEM_RESOLVER),
        review_items::resolution_note.eq("the order exists now and its notifications apply"),
        review_items::resolved_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes every row's identity, role and outcome with one statement.
async fn finish_rows(
    conn: &mut AsyncPgConnection,
    items: &[BatchItem],
    roles: &mut [Role],
    outcomes: &HashMap<i64, (Outcome, String)>,
) -> Result<(), StoreError> {
    let mut ids = Vec::new();
    let mut identities = Vec::new();
    let mut repeat_of: Vec<Option<i64>> = Vec::new();
    let mut outcome_names = Vec::new();
    let mut reasons = Vec::new();
    for (item, role) in items.iter().zip(roles.iter()) {
        match role {
            Role::Redelivery => {}
            Role::First { row } => {
                let (outcome, reason) = outcomes
                    .get(row)
                    .cloned()
                    .unwrap_or((Outcome::OrderNotFound, "order_not_found".to_owned()));
                ids.push(*row);
                identities.push(item.event.identity.as_str());
                repeat_of.push(None);
                outcome_names.push(outcome.as_str());
                reasons.push(reason);
            }
            Role::Repeat { row, first } | Role::HandedOver { row, first } => {
                ids.push(*row);
                identities.push(item.event.identity.as_str());
                repeat_of.push(Some(*first));
                outcome_names.push(Outcome::Duplicate.as_str());
                reasons.push(format!("repeat of notification #{first}"));
            }
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "UPDATE notifications AS n SET identity = v.identity, repeat_of = v.repeat_of, \
             outcome = v.outcome, reason = v.reason, processed_at = now() \
         FROM unnest($1::int8[], $2::text[], $3::int8[], $4::text[], $5::text[]) \
              AS v(id, identity, repeat_of, outcome, reason) \
         WHERE n.id = v.id",
    )
    .bind::<Array<Int8>, _>(&ids)
    .bind::<Array<Text>, _>(&identities)
    .bind::<Array<Nullable<Int8>>, _>(&repeat_of)
    .bind::<Array<Text>, _>(&outcome_names)
    .bind::<Array<Text>, _>(&reasons)
    .execute(conn)
    .await?;
    Ok(())
}
