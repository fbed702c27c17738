//! Applying many tokenized notifications in one transaction.
//!
//! One commit per notification is the throughput wall (PostgreSQL waits for
//! the write-ahead log on every commit), so the worker collects a batch of
//! deliveries and applies them here together, with the same meaning as
//! applying them one by one, in order. This is the only implementation of
//! applying a delivery: [`Store::apply`] is a batch of one, so one by one
//! and together cannot drift apart (`tests/it/batch_apply.rs` compares a
//! stream applied in batches of one with the same stream in larger ones).
//!
//! A delivery is one body (unique SHA-256: the broker's redelivery of the
//! same bytes changes nothing, unless its recorded outcome is one after
//! which it may be processed again, [`REPROCESSABLE`]). A notification is
//! one *identity* (its signed values without the per-delivery `IPN_DATE`,
//! see [`EventIdentity`](crate::domain::EventIdentity)): the first delivery
//! of an identity carries it; every later one (a processor retry, the copy
//! for another URL, a re-encoded copy) is recorded as a repeat of it
//! (`repeat_of`), with its own `IPN_DATE`, key and algorithm, and changes
//! nothing. A repeat that says something else than the first (renamed
//! fields), or a money-moving one without `MESSAGE_ID` dated unlike every
//! earlier delivery (maybe a second event of the same values), opens a
//! review item. A carrier whose order did not exist
//! hands its notification over to the next delivery of its identity.
//!
//! The steps:
//!
//! 1. lock the identities of the batch (advisory locks, in a fixed order, so
//!    two workers never deadlock on them), find the bodies recorded before,
//!    and take a row id for each new body;
//! 2. load the earlier deliveries of the batch's identities, lock the
//!    orders of the batch in the order of their ids (a fixed order again)
//!    and load their payments;
//! 3. decide which delivery carries each identity and which are repeats
//!    (also within the batch: the first in batch order carries it), then
//!    decide with the pure state machine, in batch order, several
//!    notifications of one order one after the other in memory;
//! 4. write the new notification rows (once, as they end: inserting them
//!    first and updating them after wrote every index of the table twice),
//!    orders, payments, ledger rows and review items with multi-row
//!    statements; the caller commits once.
//!
//! The statements of each step are *pipelined*: sent together, without
//! waiting for each answer (PostgreSQL still runs them one after the
//! other, in the order sent). A batch costs five round trips (begin, the
//! three steps that talk to the database, commit) whatever its length;
//! measured with `bench`, the round trips and their wake-ups on both sides
//! were most of what a batch cost at 1,000 notifications/s.
//!
//! A notification whose decision cannot be written (a constraint the state
//! machine did not foresee) fails the whole batch; the worker then applies
//! the batch's notifications one by one, so one bad notification holds back
//! no other.

use super::sql::Stored;
use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::QueryResult;
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Int8, Nullable, Text};
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::future::BoxFuture;

use backon::Retryable;

use super::apply::{
    ApplyReport, Meaning, OrderRow, PaymentRow, REPROCESSABLE, RetryBounds, TokenizedColumns,
    facts_of, repeat_reviews, resolve_items_statement,
};
use super::reuse::Reuse;
use super::schema::{notifications, order_events, orders, payments, review_items};
use super::{Store, StoreError};
use crate::domain::{
    AutoResolution, Currencies, NewReviewItem, OrderFacts, OrderKey, OrderOrigin, Outcome,
    PaymentEvent, ReconcilePolicy, ReviewKind, decide, processor_expected,
};

/// One notification of a batch: the event and when it was received.
#[derive(Debug, Clone)]
pub struct BatchItem {
    pub event: PaymentEvent,
    pub received_at: DateTime<Utc>,
}

impl Store {
    /// Applies a verified, tokenized notification to its order, retrying
    /// transient database errors with bounded exponential backoff.
    ///
    /// A batch of one ([`Store::apply_batch`]): one notification is written
    /// by the same code as many, so their meanings cannot drift apart.
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
    ///
    /// Also retried: the body recorded meanwhile by a path that does not
    /// take the identity's lock ([`Store::record_rejected`]); applied
    /// again, the delivery finds it recorded and is judged against it.
    pub async fn apply_with_retry(
        &self,
        event: &PaymentEvent,
        received_at: DateTime<Utc>,
        policy: &ReconcilePolicy,
        bounds: RetryBounds,
    ) -> Result<ApplyReport, StoreError> {
        let one = [BatchItem {
            event: event.clone(),
            received_at,
        }];
        (|| async {
            let mut reports = self.apply_batch(&one, policy).await?;
            match (reports.pop(), reports.is_empty()) {
                (Some(report), true) => Ok(report),
                _ => Err(StoreError::Invalid(
                    "a batch of one did not report exactly once".to_owned(),
                )),
            }
        })
        .retry(bounds.backoff())
        .when(|err| err.is_transient() || body_recorded_meanwhile(err))
        .notify(|err, after| {
            tracing::warn!(error = %err, retry_in = ?after, "transient database error, retrying");
        })
        .await
    }

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
        let currencies = self.currencies();
        conn.transaction::<_, StoreError, _>(async |conn| {
            apply_batch_in(conn, items, policy, currencies).await
        })
        .await
    }
}

/// Whether `err` is the insert of a body that another transaction recorded
/// after this one looked for it (the unique digest of `notifications`).
fn body_recorded_meanwhile(err: &StoreError) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match err {
        StoreError::Query(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info)) => {
            info.table_name() == Some("notifications")
                && info.constraint_name() == Some("notifications_body_sha256_key")
        }
        _ => false,
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

/// A statement sent on a shared connection, not yet answered: several are
/// pipelined by sending them before awaiting any.
type Pending<'a> = BoxFuture<'a, QueryResult<usize>>;

/// Awaits `statements`, sent together in this order (each is sent when
/// first polled, and they are polled in order). Returns the first error in
/// that order: the statements after a failed one only report that the
/// transaction is aborted.
async fn pipelined(statements: Vec<Pending<'_>>) -> Result<(), StoreError> {
    let mut results = Vec::with_capacity(statements.len());
    let mut statements: Vec<_> = statements
        .into_iter()
        .map(futures::future::maybe_done)
        .collect();
    // Poll every statement once, in order, before awaiting any answer.
    futures::future::poll_fn(|cx| {
        let mut done = true;
        for statement in statements.iter_mut() {
            // A boxed future in a `MaybeDone` is `Unpin`.
            done &= std::pin::Pin::new(statement).poll(cx).is_ready();
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    for statement in statements.iter_mut() {
        if let Some(result) = std::pin::Pin::new(statement).take_output() {
            results.push(result);
        }
    }
    for result in results {
        result?;
    }
    Ok(())
}

async fn apply_batch_in(
    conn: &mut AsyncPgConnection,
    items: &[BatchItem],
    policy: &ReconcilePolicy,
    currencies: &Currencies,
) -> Result<Vec<ApplyReport>, StoreError> {
    let shared: &AsyncPgConnection = conn;
    let mut reports: Vec<ApplyReport> = vec![ApplyReport::only(Outcome::Duplicate); items.len()];

    // Step 1: lock the identities, find the bodies recorded before, and
    // take a row id for each body of the batch (rows are written once, in
    // step 4, when their role and outcome are known).
    let identities: Vec<&str> = items.iter().map(|i| i.event.identity.as_str()).collect();
    let deliveries = Deliveries::of(items);
    let digests: Vec<&str> = deliveries.first_of_digest.keys().copied().collect();
    let lock = diesel::sql_query(
        "SELECT pg_advisory_xact_lock(h) FROM \
         (SELECT DISTINCT hashtextextended(i, 0) AS h FROM unnest($1::text[]) AS i) AS locks \
         ORDER BY h",
    )
    .bind::<Array<Text>, _>(&identities)
    .reused()
    .execute(&mut &*shared);
    // Same bytes, same identity: under the identity's lock, no other
    // worker records these bodies until this transaction ends. (A body
    // recorded meanwhile by another path makes step 4's insert fail on
    // its unique digest, and the batch is applied again.)
    let recorded = notifications::table
        .filter(notifications::body_sha256.eq_any(&digests))
        .select((
            notifications::id,
            notifications::body_sha256,
            notifications::outcome,
        ))
        .for_update()
        .load::<(i64, String, Stored<Outcome>)>(&mut &*shared);
    // `now()` is the transaction's start: what `processed_at = now()`
    // would write in step 4.
    let allocated = diesel::sql_query(
        "SELECT nextval('notifications_id_seq') AS id, now() AS at \
         FROM generate_series(1, $1)",
    )
    .bind::<diesel::sql_types::Integer, _>(i32::try_from(digests.len()).unwrap_or(i32::MAX))
    .reused()
    .load::<AllocatedRow>(&mut &*shared);
    let (locked, recorded, allocated) = futures::join!(lock, recorded, allocated);
    locked?;
    let (recorded, allocated) = (recorded?, allocated?);
    let recorded: Vec<(i64, String, Outcome)> = recorded
        .into_iter()
        .map(|(id, digest, Stored(outcome))| (id, digest, outcome))
        .collect();
    let Some(processed_at) = allocated.iter().map(|a| a.at).next() else {
        return Err(StoreError::Invalid(
            "the database allocated no notification id".to_owned(),
        ));
    };
    let claimed = deliveries.claim(items, recorded, allocated.into_iter().map(|a| a.id))?;
    let rows = &claimed.rows;
    let batch_rows: Vec<i64> = rows.iter().flatten().copied().collect();
    if batch_rows.is_empty() {
        // Every delivery repeats bytes recorded and settled before.
        return Ok(reports);
    }

    // Step 2: the earlier deliveries of the batch's identities, and the
    // orders (locked, in the order of their ids) with their payments.
    let with_rows: Vec<&BatchItem> = items
        .iter()
        .zip(rows)
        .filter(|(_, row)| row.is_some())
        .map(|(item, _)| item)
        .collect();
    let carried: Vec<&str> = with_rows
        .iter()
        .map(|i| i.event.identity.as_str())
        .collect();
    let keys: Vec<OrderKey> = items
        .iter()
        .map(|i| policy.order_source.key(&i.event))
        .collect();
    let keyed: Vec<&OrderKey> = keys
        .iter()
        .zip(rows)
        .filter(|(_, row)| row.is_some())
        .map(|(key, _)| key)
        .collect();
    let order_refs: Vec<&str> = keyed
        .iter()
        .map(|key| key.order_ref.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    // The processor's orders these notices make, before they are locked.
    create_processor_orders(shared, &with_rows, &keyed).await?;
    let carriers = notifications::table
        .filter(notifications::identity.eq_any(&carried))
        .filter(notifications::repeat_of.is_null())
        .filter(notifications::id.ne_all(&batch_rows))
        .select((
            notifications::id,
            notifications::identity,
            notifications::outcome,
        ))
        .for_update()
        .load::<(i64, Option<String>, Stored<Outcome>)>(&mut &*shared);
    // One look-up per identity and per order (`OFFSET 0` keeps each its
    // own index probe): planned as one join, a table that has grown since
    // its statistics were taken (a fresh database fills in seconds) was
    // scanned whole for every batch, which `bench` measured.
    let distinct_identities: Vec<&str> = identities
        .iter()
        .copied()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let history = diesel::sql_query(
        "SELECT n.identity, n.ipn_date, n.processor_ref, n.order_ref, n.order_status, \
                n.amount_minor, n.currency, n.test_order, n.fraud_denied \
         FROM unnest($1::text[]) AS i(identity) \
         CROSS JOIN LATERAL (SELECT * FROM notifications \
                             WHERE identity = i.identity AND id <> ALL($2) OFFSET 0) AS n \
         ORDER BY n.id",
    )
    .bind::<Array<Text>, _>(&distinct_identities)
    .bind::<Array<Int8>, _>(&batch_rows)
    .reused()
    .load::<EarlierDelivery>(&mut &*shared);
    let (order_rows, payment_rows) = lock_orders(shared, &order_refs);
    let (carriers, history, order_rows, payment_rows) =
        futures::join!(carriers, history, order_rows, payment_rows);
    let (carriers, history, order_rows, payment_rows) =
        (carriers?, history?, order_rows?, payment_rows?);
    let carriers: Vec<(i64, Option<String>, Outcome)> = carriers
        .into_iter()
        .map(|(id, identity, Stored(outcome))| (id, identity, outcome))
        .collect();

    // Step 3: decide, in memory.
    let known_orders: HashSet<(OrderOrigin, &str)> = order_rows
        .iter()
        .map(|(r, row)| (row.origin, r.as_str()))
        .collect();
    let (roles, redirects) = assign_roles(items, &keys, rows, carriers, &known_orders);

    // Review items of repeats (a copy that says something new, a possible
    // second event of the same values), each judged against every earlier
    // delivery of its identity: those recorded before, then this batch's
    // in batch order, as one by one.
    let mut effects = Effects::default();
    let mut history = history_by_identity(history);
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
                for review in repeat_reviews(event, row, first, earlier) {
                    reports[index].review_items.push(review.kind);
                    effects
                        .items_to_open
                        .push((review, keys[index].order_ref.clone(), row));
                }
            }
        }
        history
            .entry(identity)
            .or_default()
            .push((event.ipn_date, Meaning::of(event)));
    }

    // The orders of the notifications that carry their identity (all of
    // the batch's are locked; the others stay as they are), decided in
    // batch order.
    let mut books = Books::of(order_rows, payment_rows, currencies)?;
    let mut outcomes: HashMap<i64, (Outcome, String)> = HashMap::new();
    for (index, item) in items.iter().enumerate() {
        let Role::First { row } = roles[index] else {
            continue;
        };
        let finish = effects.decide(
            &mut books,
            (&item.event, &keys[index]),
            row,
            policy,
            None,
            &mut reports[index],
        );
        outcomes.insert(row, finish);
    }

    // Step 4: write, in the order applying one by one would.
    //
    // The connection plans every statement with its arguments
    // (`force_custom_plan`, see `store::pool_config`): the reads above
    // look up tables that grow under them. The writes here, and the
    // foreign-key checks PostgreSQL runs for every row they write, only
    // look rows up by key, which the plan they reuse does whatever the
    // sizes; planning each of those checks again was a tenth of
    // PostgreSQL's time in `bench`. So this transaction's writes reuse
    // their plans.
    let mut writes: Vec<Pending<'_>> = vec![
        diesel::sql_query("SET LOCAL plan_cache_mode = auto")
            .reused()
            .execute(&mut &*shared),
    ];
    // Each new row is written once, as it ends, unless rows recorded
    // before change role in this batch (processed again, or handed over):
    // the unique first of an identity then moves between rows, so the new
    // rows are written first without their identity and finished below,
    // after the rows they take over from have let go of it.
    let staged = !claimed.reprocessed.is_empty() || !redirects.is_empty();
    let finishes = finishes(items, &roles, &outcomes);
    writes.extend(write_new_rows(
        shared,
        items,
        &claimed.fresh,
        &finishes,
        &deliveries.currencies,
        (!staged).then_some(processed_at),
    ));
    writes.extend(claimed.refresh(shared, items, &deliveries.currencies));
    writes.extend(redirects.iter().map(|redirect| redirect.statement(shared)));
    writes.extend(effects.writes(shared, &books));
    // The licences the batch's notifications name (once per identity).
    let carriers: Vec<&PaymentEvent> = items
        .iter()
        .zip(&roles)
        .filter(|(_, role)| matches!(role, Role::First { .. }))
        .map(|(item, _)| &item.event)
        .collect();
    writes.extend(super::subscriptions::record_lines(shared, &carriers));
    if staged {
        writes.extend(finish_rows(shared, &finishes));
    }
    pipelined(writes).await?;
    Ok(reports)
}

/// Applies notification `notification_id`, recorded before, to its order
/// with the decide and write steps of a batch: what a person's decision
/// applies (a confirmed repeat, an orphan linked to its order), where
/// there is no delivery to claim and the row keeps its role (`repeat_of`).
/// `ledger_note` says who, on the ledger row. Called in the caller's
/// transaction; `currencies` is the store's table.
pub(super) async fn apply_recorded(
    conn: &mut AsyncPgConnection,
    event: &PaymentEvent,
    key: &OrderKey,
    notification_id: i64,
    policy: &ReconcilePolicy,
    currencies: &Currencies,
    ledger_note: Option<&str>,
) -> Result<ApplyReport, StoreError> {
    let shared: &AsyncPgConnection = conn;
    let order_refs = [key.order_ref.as_str()];
    let (order_rows, payment_rows) = lock_orders(shared, &order_refs);
    let (order_rows, payment_rows) = futures::join!(order_rows, payment_rows);
    let mut books = Books::of(order_rows?, payment_rows?, currencies)?;
    let mut effects = Effects::default();
    let mut report = ApplyReport::only(Outcome::OrderNotFound);
    let (outcome, reason) = effects.decide(
        &mut books,
        (event, key),
        notification_id,
        policy,
        ledger_note,
        &mut report,
    );
    let mut writes = effects.writes(shared, &books);
    writes.push(
        diesel::update(notifications::table.find(notification_id))
            .set((
                notifications::outcome.eq(Stored(outcome)),
                notifications::reason.eq(reason),
                notifications::processed_at.eq(diesel::dsl::now),
            ))
            .reused()
            .execute(&mut &*shared),
    );
    pipelined(writes).await?;
    Ok(report)
}

/// Creates the processor's orders that `items` (with their `keys`) make
/// and that do not exist yet: reference `REFNO`, the notice's currency,
/// and its amount as the first expected total
/// ([`crate::domain::processor_expected`] raises it as notices come).
///
/// `ON CONFLICT DO NOTHING`: an order made meanwhile by another batch, or
/// a merchant order under the same reference (which the origin check of
/// [`Effects::decide`] then keeps apart), stays as it is. A statement of
/// its own only when some notice creates an order, so the merchant's
/// batches keep their round trips.
async fn create_processor_orders(
    conn: &AsyncPgConnection,
    items: &[&BatchItem],
    keys: &[&OrderKey],
) -> Result<(), StoreError> {
    let mut refs = Vec::new();
    let mut expected = Vec::new();
    let mut currencies = Vec::new();
    let mut merchant_refs = Vec::new();
    for (item, key) in items.iter().zip(keys) {
        if key.creates && !refs.contains(&key.order_ref.as_str()) {
            refs.push(key.order_ref.as_str());
            expected.push(item.event.amount.abs().minor_units());
            currencies.push(item.event.amount.currency().as_str().to_owned());
            merchant_refs.push(item.event.merchant_ref.as_deref());
        }
    }
    if refs.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "INSERT INTO orders (order_ref, processor_ref, expected_minor, currency, merchant_ref, origin) \
         SELECT r, r, e, c, m, 'processor' \
         FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[]) AS v(r, e, c, m) \
         ORDER BY r \
         ON CONFLICT (order_ref) DO NOTHING",
    )
    .bind::<Array<Text>, _>(&refs)
    .bind::<Array<Int8>, _>(&expected)
    .bind::<Array<Text>, _>(&currencies)
    .bind::<Array<Nullable<Text>>, _>(&merchant_refs)
    .reused()
    .execute(&mut &*conn)
    .await?;
    Ok(())
}

/// Rows being loaded on a shared connection, not yet answered.
type Loading<'a, T> = BoxFuture<'a, QueryResult<Vec<T>>>;

/// The rows of the orders named `order_refs`, locked in the order of their
/// ids (a fixed order, so two transactions never deadlock on them), and
/// their payments: two statements, to be pipelined with others.
fn lock_orders<'a>(
    conn: &'a AsyncPgConnection,
    order_refs: &[&str],
) -> (Loading<'a, (String, OrderRow)>, Loading<'a, PaymentRow>) {
    let order_rows = orders::table
        .filter(orders::order_ref.eq_any(order_refs.to_vec()))
        .order(orders::id.asc())
        .select((orders::order_ref, OrderRow::as_select()))
        .for_update()
        .load::<(String, OrderRow)>(&mut &*conn);
    let payment_rows = diesel::sql_query(format!(
        "SELECT p.order_id, p.processor_ref, p.authorized, p.paid_minor, p.refunded_minor, \
                p.reversed, {}, {} \
         FROM orders AS o \
         CROSS JOIN LATERAL (SELECT * FROM payments WHERE order_id = o.id OFFSET 0) AS p \
         WHERE o.order_ref = ANY($1)",
        super::notice_money::SELECT_COLUMNS,
        super::disputes::SELECT_COLUMNS
    ))
    .bind::<Array<Text>, _>(order_refs.to_vec())
    .reused()
    .load::<PaymentRow>(&mut &*conn);
    (Box::pin(order_rows), Box::pin(payment_rows))
}

/// The orders that notifications name, locked and loaded: each order's
/// id, its facts as loaded and as left by the notifications decided so
/// far, and when it was created.
struct Books {
    orders: BTreeMap<String, (i64, OrderFacts, OrderFacts)>,
    origins: HashMap<i64, OrderOrigin>,
    created: HashMap<i64, DateTime<Utc>>,
    /// Processor orders whose expected amount the shop stated.
    stated: HashSet<i64>,
}

impl Books {
    /// The books of the loaded rows, their currencies read with
    /// `currencies` (the store's table).
    fn of(
        order_rows: Vec<(String, OrderRow)>,
        payment_rows: Vec<PaymentRow>,
        currencies: &Currencies,
    ) -> Result<Self, StoreError> {
        let mut payments_by_order: HashMap<i64, Vec<PaymentRow>> = HashMap::new();
        for row in payment_rows {
            payments_by_order.entry(row.order_id).or_default().push(row);
        }
        let mut orders = BTreeMap::new();
        let mut created = HashMap::new();
        let mut origins = HashMap::new();
        let mut stated = HashSet::new();
        for (order_ref, row) in &order_rows {
            let payments = payments_by_order.remove(&row.id).unwrap_or_default();
            let facts = facts_of(row, payments, currencies)?;
            orders.insert(order_ref.clone(), (row.id, facts.clone(), facts));
            created.insert(row.id, row.created_at);
            origins.insert(row.id, row.origin);
            if row.expected_stated {
                stated.insert(row.id);
            }
        }
        Ok(Self {
            orders,
            origins,
            created,
            stated,
        })
    }
}

/// One ledger row to append (`order_events`).
struct LedgerEntry {
    order_id: i64,
    notification_id: i64,
    order_status: String,
    decision_effect: crate::domain::Effect,
    old_state: crate::domain::OrderState,
    new_state: crate::domain::OrderState,
    amount: crate::domain::Money,
    reason: String,
}

/// What deciding notifications stages, to be written together by
/// [`Effects::writes`]: the one place a notification's effects are made.
#[derive(Default)]
struct Effects {
    ledger: Vec<LedgerEntry>,
    moved: Vec<super::journal::Moved>,
    /// `(item, order reference, notification id)`.
    items_to_open: Vec<(NewReviewItem, String, i64)>,
    resolutions: Vec<(String, AutoResolution)>,
    /// Orders that had a notification applied (their orphan items close).
    applied_orders: HashSet<String>,
}

impl Effects {
    /// Decides notification `row` (the carrier of `event`) against its
    /// order (`key`) as `books` has it, stages its effects, leaves the order's new
    /// facts in `books` and fills `report`. Returns the row's outcome and
    /// reason. An order not in `books` does not exist: `order_not_found`.
    fn decide(
        &mut self,
        books: &mut Books,
        (event, key): (&PaymentEvent, &OrderKey),
        row: i64,
        policy: &ReconcilePolicy,
        ledger_note: Option<&str>,
        report: &mut ApplyReport,
    ) -> (Outcome, String) {
        // An order of the other origin under the same reference (a
        // merchant reference that happens to equal a REFNO) is not this
        // notice's order.
        let found = books
            .orders
            .get_mut(&key.order_ref)
            .filter(|(id, ..)| books.origins.get(id) == Some(&key.origin));
        let Some((order_id, _, facts)) = found else {
            // `decide` raises `pan_detected` for known orders; an orphan
            // must not wait for its order to report a card number.
            if !event.pan_fields.is_empty() {
                let review = NewReviewItem::pan_detected(&event.pan_fields);
                report.review_items.push(review.kind);
                self.items_to_open
                    .push((review, key.order_ref.clone(), row));
            }
            report.outcome = Outcome::OrderNotFound;
            return (Outcome::OrderNotFound, "order_not_found".to_owned());
        };
        if key.origin == OrderOrigin::Processor && !books.stated.contains(order_id) {
            // A processor order totals what its notices say, unless the
            // shop stated what it expects.
            facts.expected = processor_expected(facts.expected, event);
        }
        let decision = decide(facts, event, policy);
        for movement in crate::domain::journal::movements(facts, &decision.facts) {
            let occurred = crate::domain::event_time::occurred_at(
                movement.kind,
                event,
                policy.processor_time_zone,
            );
            self.moved.push(super::journal::Moved {
                order_id: *order_id,
                notification_id: row,
                movement,
                occurred,
            });
        }
        if let Some(created_at) = books.created.get(order_id) {
            report.reconciled_order_created =
                super::journal::reconciled_order_created(*created_at, &decision);
        }
        self.ledger.push(LedgerEntry {
            order_id: *order_id,
            notification_id: row,
            order_status: event.status.as_str().to_owned(),
            decision_effect: decision.effect,
            old_state: decision.old_state,
            new_state: decision.new_state,
            amount: event.amount,
            reason: match ledger_note {
                Some(note) => format!("{} ({note})", decision.reason),
                None => decision.reason.clone(),
            },
        });
        for review in &decision.review_items {
            report.review_items.push(review.kind);
            self.items_to_open
                .push((review.clone(), key.order_ref.clone(), row));
        }
        for resolution in &decision.resolutions {
            self.resolutions
                .push((key.order_ref.clone(), resolution.clone()));
        }
        self.applied_orders.insert(key.order_ref.clone());
        report.outcome = decision.outcome;
        report.order_state = Some(decision.new_state);
        *facts = decision.facts;
        (decision.outcome, decision.outcome.as_str().to_owned())
    }

    /// The statements that write what was staged, in the order applying
    /// one by one would: orders and payments, ledger rows, money
    /// movements, review items opened, then closed.
    fn writes<'a>(&self, conn: &'a AsyncPgConnection, books: &Books) -> Vec<Pending<'a>> {
        let mut writes = write_orders(conn, &books.orders);
        if !self.ledger.is_empty() {
            let rows: Vec<_> = self
                .ledger
                .iter()
                .map(|entry| {
                    (
                        order_events::order_id.eq(entry.order_id),
                        order_events::notification_id.eq(entry.notification_id),
                        order_events::order_status.eq(entry.order_status.clone()),
                        order_events::effect.eq(Stored(entry.decision_effect)),
                        order_events::old_status.eq(Stored(entry.old_state)),
                        order_events::new_status.eq(Stored(entry.new_state)),
                        order_events::amount_minor.eq(entry.amount.minor_units()),
                        order_events::currency.eq(entry.amount.currency().as_str().to_owned()),
                        order_events::reason.eq(entry.reason.clone()),
                    )
                })
                .collect();
            writes.push(
                diesel::insert_into(order_events::table)
                    .values(&rows)
                    .reused()
                    .execute(&mut &*conn),
            );
        }
        writes.extend(super::journal::record_many(conn, &self.moved));
        // Opened before the resolutions run, as one by one: an item raised
        // and made untrue within the batch ends resolved.
        writes.extend(open_items(conn, &self.items_to_open));
        for (order_ref, resolution) in &self.resolutions {
            writes.push(resolve_items_statement(conn, order_ref, resolution));
        }
        writes.extend(resolve_orphans(conn, &self.applied_orders));
        writes
    }
}

/// The deliveries of a batch by body: the first delivery of each body
/// (later ones in the batch are redeliveries of it), and each delivery's
/// currency (which the tokenized columns borrow).
struct Deliveries<'a> {
    first_of_digest: HashMap<&'a str, usize>,
    currencies: Vec<crate::domain::Currency>,
}

/// Each delivery's row (`None`: a redelivery), and the rows recorded
/// before that are processed again.
struct Claimed {
    rows: Vec<Option<i64>>,
    /// `(index of the delivery, its new row)`, written in step 4.
    fresh: Vec<(usize, i64)>,
    /// `(row, index of the delivery that takes it over)`.
    reprocessed: Vec<(i64, usize)>,
}

impl<'a> Deliveries<'a> {
    fn of(items: &'a [BatchItem]) -> Self {
        let mut first_of_digest: HashMap<&str, usize> = HashMap::new();
        for (index, item) in items.iter().enumerate() {
            first_of_digest
                .entry(item.event.digest.as_str())
                .or_insert(index);
        }
        Self {
            first_of_digest,
            currencies: items.iter().map(|i| i.event.amount.currency()).collect(),
        }
    }

    /// Each delivery's row: a new one (an id of `allocated`) for a body
    /// not recorded before, or the row recorded before when its outcome
    /// allows processing again; `None` for a redelivery (the bytes were
    /// recorded and settled before, or appear earlier in this batch).
    /// `recorded` holds the rows of the batch's bodies recorded before.
    fn claim(
        &self,
        items: &[BatchItem],
        recorded: Vec<(i64, String, Outcome)>,
        mut allocated: impl Iterator<Item = i64>,
    ) -> Result<Claimed, StoreError> {
        let mut recorded_row: HashMap<String, Option<i64>> = HashMap::new();
        let mut reprocessed = Vec::new();
        for (id, digest, outcome) in recorded {
            if REPROCESSABLE.contains(&outcome) {
                // Processed again (the order now exists, a key was added).
                reprocessed.push((id, self.first_of_digest[digest.as_str()]));
                recorded_row.insert(digest, Some(id));
            } else {
                recorded_row.insert(digest, None);
            }
        }
        let mut rows = Vec::with_capacity(items.len());
        let mut fresh = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let digest = item.event.digest.as_str();
            if self.first_of_digest[digest] != index {
                rows.push(None);
            } else if let Some(row) = recorded_row.get(digest) {
                rows.push(*row);
            } else {
                let id = allocated.next().ok_or_else(|| {
                    StoreError::Invalid("fewer notification ids than bodies".to_owned())
                })?;
                fresh.push((index, id));
                rows.push(Some(id));
            }
        }
        Ok(Claimed {
            rows,
            fresh,
            reprocessed,
        })
    }
}

impl Claimed {
    /// Refreshes the tokenized columns of the rows processed again, which
    /// a rejected record lacks.
    fn refresh<'a>(
        &self,
        conn: &'a AsyncPgConnection,
        items: &[BatchItem],
        currencies: &[crate::domain::Currency],
    ) -> Vec<Pending<'a>> {
        self.reprocessed
            .iter()
            .map(|&(id, index)| {
                diesel::update(notifications::table.find(id))
                    .set(&TokenizedColumns::of(
                        &items[index].event,
                        &currencies[index],
                    ))
                    .reused()
                    .execute(&mut &*conn)
            })
            .collect()
    }
}

/// A change to rows recorded before, decided with the roles.
#[derive(Debug, Clone, Copy)]
enum Redirect {
    /// Rows that repeated `old` (a carrier of this batch whose order does
    /// not exist) repeat `new` now.
    Follow { old: i64, new: i64 },
    /// Row `old` (a first recorded before whose order did not exist) and
    /// its repeats become repeats of row `new`.
    HandOver { old: i64, new: i64 },
}

impl Redirect {
    fn statement<'a>(&self, conn: &'a AsyncPgConnection) -> Pending<'a> {
        match *self {
            Redirect::Follow { old, new } => {
                diesel::update(notifications::table.filter(notifications::repeat_of.eq(old)))
                    .set((
                        notifications::repeat_of.eq(new),
                        notifications::reason.eq(format!("repeat of notification #{new}")),
                    ))
                    .reused()
                    .execute(&mut &*conn)
            }
            Redirect::HandOver { old, new } => diesel::update(
                notifications::table.filter(
                    notifications::id
                        .eq(old)
                        .or(notifications::repeat_of.eq(old)),
                ),
            )
            .set((
                notifications::repeat_of.eq(new),
                notifications::outcome.eq(Stored(Outcome::Duplicate)),
                notifications::reason.eq(format!("repeat of notification #{new}")),
            ))
            .reused()
            .execute(&mut &*conn),
        }
    }
}

/// Decides which row carries each identity: a first recorded before (and
/// settled), or the first delivery of the identity in this batch. A first
/// whose order does not exist (recorded before, or earlier in this batch)
/// hands the notification over to the next delivery of its identity, and
/// its rows become repeats of it: what applying one by one does.
/// `carriers` are the rows recorded before that carry an identity of the
/// batch.
fn assign_roles(
    items: &[BatchItem],
    keys: &[OrderKey],
    rows: &[Option<i64>],
    carriers: Vec<(i64, Option<String>, Outcome)>,
    known_orders: &HashSet<(OrderOrigin, &str)>,
) -> (Vec<Role>, Vec<Redirect>) {
    let mut carrier: HashMap<String, i64> = HashMap::new();
    let mut handed_over: HashMap<String, i64> = HashMap::new();
    for (id, identity, outcome) in carriers {
        let Some(identity) = identity else { continue };
        if REPROCESSABLE.contains(&outcome) {
            handed_over.insert(identity, id);
        } else {
            carrier.insert(identity, id);
        }
    }
    let mut redirects = Vec::new();
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
        if let Some(previous) = unapplied.remove(identity)
            && let Role::First { row: old } = roles[previous]
        {
            // Rows recorded before that pointed to the old carrier follow.
            redirects.push(Redirect::Follow { old, new: row });
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
                    redirects.push(Redirect::HandOver { old, new: row });
                }
                carrier.insert(identity.to_owned(), row);
                let key = &keys[index];
                if !known_orders.contains(&(key.origin, key.order_ref.as_str())) {
                    unapplied.insert(identity.to_owned(), index);
                }
                roles.push(Role::First { row });
            }
        }
    }
    (roles, redirects)
}

/// The deliveries recorded before the batch of each identity in it (date
/// and meaning), oldest first.
fn history_by_identity(
    recorded: Vec<EarlierDelivery>,
) -> HashMap<String, Vec<(Option<NaiveDateTime>, Meaning)>> {
    let mut history: HashMap<String, Vec<(Option<NaiveDateTime>, Meaning)>> = HashMap::new();
    for earlier in recorded {
        if let Some(identity) = earlier.identity {
            history
                .entry(identity)
                .or_default()
                .push((earlier.ipn_date, earlier.meaning));
        }
    }
    history
}

/// A row id taken for a body of the batch, and the transaction's time.
#[derive(QueryableByName)]
struct AllocatedRow {
    #[diesel(sql_type = Int8)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    at: DateTime<Utc>,
}

/// A delivery recorded before the batch, of one of its identities.
#[derive(QueryableByName)]
#[diesel(table_name = notifications)]
struct EarlierDelivery {
    identity: Option<String>,
    ipn_date: Option<NaiveDateTime>,
    #[diesel(embed)]
    meaning: Meaning,
}

/// Writes the orders whose facts changed, and their changed payments, with
/// one statement each.
fn write_orders<'a>(
    conn: &'a AsyncPgConnection,
    orders: &BTreeMap<String, (i64, OrderFacts, OrderFacts)>,
) -> Vec<Pending<'a>> {
    let changed: Vec<&(i64, OrderFacts, OrderFacts)> = orders
        .values()
        .filter(|(_, before, after)| before != after)
        .collect();
    if changed.is_empty() {
        return Vec::new();
    }
    let ids: Vec<i64> = changed.iter().map(|(id, ..)| *id).collect();
    let states: Vec<&str> = changed.iter().map(|(_, _, f)| f.state().as_str()).collect();
    let expected: Vec<i64> = changed
        .iter()
        .map(|(_, _, f)| f.expected.minor_units())
        .collect();
    let refs: Vec<Option<&str>> = changed
        .iter()
        .map(|(_, _, f)| f.processor_ref.as_deref())
        .collect();
    let paid: Vec<i64> = changed.iter().map(|(_, _, f)| f.paid()).collect();
    let refunded: Vec<i64> = changed.iter().map(|(_, _, f)| f.refunded()).collect();
    let charged_back: Vec<i64> = changed.iter().map(|(_, _, f)| f.charged_back()).collect();
    let reinstated: Vec<i64> = changed.iter().map(|(_, _, f)| f.reinstated()).collect();
    let authorized: Vec<bool> = changed.iter().map(|(_, _, f)| f.authorized()).collect();
    let reversed: Vec<bool> = changed.iter().map(|(_, _, f)| f.reversed()).collect();
    let canceled: Vec<bool> = changed.iter().map(|(_, _, f)| f.canceled).collect();
    let suspect: Vec<bool> = changed.iter().map(|(_, _, f)| f.suspect).collect();
    let mismatch: Vec<bool> = changed.iter().map(|(_, _, f)| f.mismatch).collect();
    // `o.id = ANY($1)` lets a reused plan find the rows by key whatever
    // sizes it was made for (a join on `unnest` alone can be planned as a
    // scan of the whole table).
    let mut statements = vec![diesel::sql_query(
        "UPDATE orders AS o SET status = v.status, processor_ref = v.processor_ref, \
             paid_minor = v.paid, refunded_minor = v.refunded, charged_back_minor = v.charged_back, \
             authorized = v.authorized, reversed = v.reversed, canceled = v.canceled, \
             suspect = v.suspect, mismatch = v.mismatch, expected_minor = v.expected, \
             reinstated_minor = v.reinstated, updated_at = now(), version = o.version + 1 \
         FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[], \
                     $7::bool[], $8::bool[], $9::bool[], $10::bool[], $11::bool[], $12::int8[], \
                     $13::int8[]) \
              AS v(id, status, processor_ref, paid, refunded, charged_back, authorized, reversed, \
                   canceled, suspect, mismatch, expected, reinstated) \
         WHERE o.id = v.id AND o.id = ANY($1)",
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
    .bind::<Array<Int8>, _>(&expected)
    .bind::<Array<Int8>, _>(&reinstated)
    .reused()
    .execute(&mut &*conn)];

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
        statements.push(
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
                .reused()
                .execute(&mut &*conn),
        );
    }
    statements.extend(super::notice_money::write_payment_money(conn, &changed));
    statements.extend(super::disputes::write_disputes(conn, &changed));
    statements
}

fn open_items<'a>(
    conn: &'a AsyncPgConnection,
    items: &[(NewReviewItem, String, i64)],
) -> Option<Pending<'a>> {
    if items.is_empty() {
        return None;
    }
    let rows: Vec<_> = items
        .iter()
        .map(|(item, order_ref, notification_id)| {
            (
                review_items::kind.eq(Stored(item.kind)),
                review_items::order_ref.eq(Some(order_ref.clone())),
                review_items::processor_ref.eq(item.processor_ref.clone()),
                review_items::notification_id.eq(Some(*notification_id)),
                review_items::details.eq(item.details.clone()),
            )
        })
        .collect();
    Some(
        diesel::insert_into(review_items::table)
            .values(&rows)
            .on_conflict_do_nothing()
            .reused()
            .execute(&mut &*conn),
    )
}

/// Orphan items of orders that exist now and had a notification applied
/// are no longer true.
fn resolve_orphans<'a>(
    conn: &'a AsyncPgConnection,
    order_refs: &HashSet<String>,
) -> Option<Pending<'a>> {
    if order_refs.is_empty() {
        return None;
    }
    let refs: Vec<&str> = order_refs.iter().map(String::as_str).collect();
    let statement = diesel::update(
        review_items::table
            .filter(review_items::status.eq("open"))
            .filter(review_items::kind.eq(Stored(ReviewKind::OrphanPayment)))
            .filter(review_items::order_ref.eq_any(&refs)),
    )
    .set((
        review_items::status.eq("resolved"),
        review_items::resolved_by.eq(super::apply::SYSTEM_RESOLVER),
        review_items::resolution_note.eq("the order exists now and its notifications apply"),
        review_items::resolved_at.eq(diesel::dsl::now),
    ))
    .reused()
    .execute(&mut &*conn);
    Some(statement)
}

/// How one row of the batch ends.
struct Finish<'a> {
    identity: &'a str,
    repeat_of: Option<i64>,
    outcome: Outcome,
    reason: String,
}

/// How each row of the batch ends, by row.
fn finishes<'a>(
    items: &'a [BatchItem],
    roles: &[Role],
    outcomes: &HashMap<i64, (Outcome, String)>,
) -> BTreeMap<i64, Finish<'a>> {
    let mut finishes = BTreeMap::new();
    for (item, role) in items.iter().zip(roles.iter()) {
        let identity = item.event.identity.as_str();
        let (row, finish) = match role {
            Role::Redelivery => continue,
            Role::First { row } => {
                let (outcome, reason) = outcomes
                    .get(row)
                    .cloned()
                    .unwrap_or((Outcome::OrderNotFound, "order_not_found".to_owned()));
                let finish = Finish {
                    identity,
                    repeat_of: None,
                    outcome,
                    reason,
                };
                (*row, finish)
            }
            Role::Repeat { row, first } | Role::HandedOver { row, first } => {
                let finish = Finish {
                    identity,
                    repeat_of: Some(*first),
                    outcome: Outcome::Duplicate,
                    reason: format!("repeat of notification #{first}"),
                };
                (*row, finish)
            }
        };
        finishes.insert(row, finish);
    }
    finishes
}

/// A notification row first written by a batch. `None` is written as
/// NULL, so that the insert's text depends only on its number of rows
/// (see [`TokenizedColumns`]).
#[derive(Insertable)]
#[diesel(table_name = notifications, treat_none_as_default_value = false)]
struct BatchNotification<'a> {
    id: i64,
    body_sha256: &'a str,
    #[diesel(embed)]
    tokenized: TokenizedColumns<'a>,
    received_at: DateTime<Utc>,
    processed_at: Option<DateTime<Utc>>,
    outcome: Stored<Outcome>,
    reason: Option<&'a str>,
    identity: Option<&'a str>,
    repeat_of: Option<i64>,
}

/// Inserts the batch's new rows (`fresh`) with one statement: as they end
/// when `finished_at` is given, else without identity or role, for
/// [`finish_rows`] to finish. A row that repeats another row of the same
/// statement passes its foreign-key check, which PostgreSQL runs once the
/// statement has written every row.
fn write_new_rows<'a>(
    conn: &'a AsyncPgConnection,
    items: &[BatchItem],
    fresh: &[(usize, i64)],
    finishes: &BTreeMap<i64, Finish<'_>>,
    currencies: &[crate::domain::Currency],
    finished_at: Option<DateTime<Utc>>,
) -> Option<Pending<'a>> {
    if fresh.is_empty() {
        return None;
    }
    let rows: Vec<BatchNotification<'_>> = fresh
        .iter()
        .map(|&(index, id)| {
            let event = &items[index].event;
            let finish = finished_at.and_then(|at| finishes.get(&id).map(|f| (at, f)));
            BatchNotification {
                id,
                body_sha256: event.digest.as_str(),
                tokenized: TokenizedColumns::of(event, &currencies[index]),
                received_at: items[index].received_at,
                processed_at: finish.map(|(at, _)| at),
                outcome: Stored(finish.map_or(Outcome::OrderNotFound, |(_, f)| f.outcome)),
                reason: finish.map(|(_, f)| f.reason.as_str()),
                identity: finish.map(|(_, f)| f.identity),
                repeat_of: finish.and_then(|(_, f)| f.repeat_of),
            }
        })
        .collect();
    Some(insert_new_rows(&rows).reused().execute(&mut &*conn))
}

/// The insert of `rows`.
fn insert_new_rows<'a>(
    rows: &'a [BatchNotification<'_>],
) -> impl diesel::query_builder::QueryFragment<diesel::pg::Pg> + Send + 'a {
    diesel::insert_into(notifications::table).values(rows)
}

/// Writes the identity, role and outcome of `finishes` with one statement.
fn finish_rows<'a>(
    conn: &'a AsyncPgConnection,
    finishes: &BTreeMap<i64, Finish<'_>>,
) -> Option<Pending<'a>> {
    if finishes.is_empty() {
        return None;
    }
    let ids: Vec<i64> = finishes.keys().copied().collect();
    let identities: Vec<&str> = finishes.values().map(|f| f.identity).collect();
    let repeat_of: Vec<Option<i64>> = finishes.values().map(|f| f.repeat_of).collect();
    let outcome_names: Vec<&str> = finishes.values().map(|f| f.outcome.as_str()).collect();
    let reasons: Vec<&str> = finishes.values().map(|f| f.reason.as_str()).collect();
    // `n.id = ANY($1)`: by key, as in `write_orders`.
    let statement = diesel::sql_query(
        "UPDATE notifications AS n SET identity = v.identity, repeat_of = v.repeat_of, \
             outcome = v.outcome, reason = v.reason, processed_at = now() \
         FROM unnest($1::int8[], $2::text[], $3::int8[], $4::text[], $5::text[]) \
              AS v(id, identity, repeat_of, outcome, reason) \
         WHERE n.id = v.id AND n.id = ANY($1)",
    )
    .bind::<Array<Int8>, _>(&ids)
    .bind::<Array<Text>, _>(&identities)
    .bind::<Array<Nullable<Int8>>, _>(&repeat_of)
    .bind::<Array<Text>, _>(&outcome_names)
    .bind::<Array<Text>, _>(&reasons)
    .reused()
    .execute(&mut &*conn);
    Some(statement)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures::FutureExt;

    use super::*;

    /// A statement that logs `sent NAME` when first polled and `answered
    /// NAME` when it answers `answer`, on its `polls`-th poll.
    fn statement(
        name: &'static str,
        log: &Arc<Mutex<Vec<String>>>,
        polls: usize,
        answer: QueryResult<usize>,
    ) -> Pending<'static> {
        let log = log.clone();
        let mut left = polls;
        let mut answer = Some(answer);
        futures::future::poll_fn(move |cx| {
            let note = |what: &str| {
                if let Ok(mut log) = log.lock() {
                    log.push(format!("{what} {name}"));
                }
            };
            if left == polls {
                note("sent");
            }
            left = left.saturating_sub(1);
            if left == 0 {
                note("answered");
                std::task::Poll::Ready(answer.take().unwrap_or(Ok(0)))
            } else {
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        })
        .boxed()
    }

    /// A tokenized event with every optional reference present.
    fn full_event() -> PaymentEvent {
        use crate::domain::{BodyDigest, EventIdentity, Money, StatusField};
        use crate::ipn::{Algorithm, KeyId};
        let digest = BodyDigest::of(b"body");
        PaymentEvent {
            carries_message_id: false,
            identity: EventIdentity::parse(digest.as_str()).unwrap(),
            digest,
            processor_ref: "1000037".to_owned(),
            merchant_ref: Some("SHOP-1".to_owned()),
            status: StatusField::parse("COMPLETE"),
            fraud_denied: false,
            test_order: false,
            amount: Money::iso("10.00", "EUR").unwrap(),
            payment_method: Some("CC".to_owned()),
            sale_date: None,
            payment_date: None,
            complete_date: None,
            ipn_date: chrono::NaiveDate::from_ymd_opt(2026, 11, 30)
                .and_then(|d| d.and_hms_opt(8, 0, 0)),
            key_id: KeyId::parse("default").unwrap(),
            algorithm: Algorithm::Sha256,
            customer_pseudonym: None,
            pan_fields: Vec::new(),
            licences: Vec::new(),
            chargeback: None,
            money: Default::default(),
        }
    }

    /// The batch path keeps one prepared statement per text on each
    /// connection, for as long as the connection lives: a text that varied
    /// with which values are present would prepare a new statement for
    /// almost every batch, and keep it.
    #[test]
    fn the_insert_of_new_rows_has_one_text_per_number_of_rows() {
        let event = full_event();
        let currency = event.amount.currency();
        let full = || BatchNotification {
            id: 2,
            body_sha256: event.digest.as_str(),
            tokenized: TokenizedColumns::of(&event, &currency),
            received_at: Utc::now(),
            processed_at: Some(Utc::now()),
            outcome: Stored(Outcome::Duplicate),
            reason: Some("repeat of notification #1"),
            identity: Some(event.identity.as_str()),
            repeat_of: Some(1),
        };
        let bare = || BatchNotification {
            id: 3,
            body_sha256: event.digest.as_str(),
            tokenized: TokenizedColumns::default(),
            received_at: Utc::now(),
            processed_at: None,
            outcome: Stored(Outcome::OrderNotFound),
            reason: None,
            identity: None,
            repeat_of: None,
        };
        let text = |rows: &[BatchNotification<'_>]| {
            let insert = insert_new_rows(rows);
            let query = diesel::debug_query::<diesel::pg::Pg, _>(&insert).to_string();
            query
                .split(" -- binds")
                .next()
                .unwrap_or_default()
                .to_owned()
        };
        let one = text(&[full()]);
        assert_eq!(one, text(&[bare()]));
        let two = text(&[full(), bare()]);
        assert_eq!(two, text(&[bare(), full()]));
        assert_eq!(two, text(&[bare(), bare()]));
        assert_ne!(one, two, "the text names each row's values");
        assert!(!two.contains("DEFAULT"), "{two}");
    }

    #[tokio::test]
    async fn pipelined_statements_are_all_sent_in_order_before_any_answer() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let statements = vec![
            statement("first", &log, 3, Ok(1)),
            statement("second", &log, 1, Ok(1)),
            statement("third", &log, 2, Ok(1)),
        ];
        assert!(pipelined(statements).await.is_ok());
        let log = log.lock().unwrap().clone();
        let sends: Vec<&str> = log
            .iter()
            .filter_map(|entry| entry.strip_prefix("sent "))
            .collect();
        assert_eq!(sends, ["first", "second", "third"]);
        // One after the other, "third" would be sent only once "first"
        // had answered.
        let at = |entry: &str| log.iter().position(|e| e == entry);
        assert!(at("sent third") < at("answered first"), "{log:?}");
        assert_eq!(log.len(), 6, "{log:?}");
    }

    #[tokio::test]
    async fn the_first_error_in_statement_order_is_returned() {
        let log = Arc::new(Mutex::new(Vec::new()));
        // The later statement answers first, as the aborted transaction's
        // complaint would not: the error of the earlier one still wins.
        let statements = vec![
            statement("ok", &log, 1, Ok(1)),
            statement("fails", &log, 3, Err(diesel::result::Error::NotFound)),
            statement(
                "aborted",
                &log,
                1,
                Err(diesel::result::Error::RollbackTransaction),
            ),
        ];
        let err = pipelined(statements).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Query(diesel::result::Error::NotFound)),
            "{err}"
        );
    }
}
