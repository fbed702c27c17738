//! The review queue: listing the exceptions a person must look at, showing
//! one with everything behind it, and resolving it with an action.
//!
//! What an action may do to an item of a kind, and what it does to the
//! books, is decided in [`crate::domain::review`]; here it is carried out,
//! in one transaction ([`Store::resolve_review`]): the item (and its group)
//! locked, an already resolved one refused, the action applied through the
//! same paths as notifications (a confirmed repeat through
//! `apply::apply_repeat`, an orphan's notifications through
//! `batch::apply_recorded`, a refund outside the processor as a ledger
//! row with its money movements), and one row per item in the append-only
//! `review_resolutions` ledger: who, when, why, which action.
//!
//! Items of one kind for one order are a *group* ([`group_items`]): the
//! same exception seen several times (three double charges, two late
//! repeats of one refund). They are listed as one line and can be
//! resolved together.

use super::sql::Stored;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use backon::Retryable;

use super::apply::{
    ApplyReport, OrderRow, RetryBounds, apply_repeat, load_facts, stored_event, write_facts,
};
use super::orders::OrderView;
use super::reports::rfc3339;
use super::schema::{
    money_movements, notifications, order_events, orders, payments, review_items,
    review_resolutions,
};
use super::{Store, StoreError};
use crate::domain::journal::{MovementKind, movements};
use crate::domain::pan::check_free_text;
use crate::domain::review::{
    ActionEffect, Misfit, RefundOutsideError, ReviewAction, allowed_actions, effect, refund_outside,
};
use crate::domain::{
    Currencies, Decision, Effect, Money, OrderKey, OrderOrigin, OrderState, Outcome,
    ReconcilePolicy, ReviewKind,
};

/// Which review items to list, by status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReviewStatus {
    /// Waiting for a person (the default of `review list`).
    #[default]
    Open,
    /// Resolved by a person or by the system.
    Resolved,
    /// Both.
    All,
}

/// One exception in the review queue.
///
/// Times serialize as RFC 3339 UTC to the second ([`rfc3339`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Queryable)]
pub struct ReviewItem {
    pub id: i64,
    #[diesel(deserialize_as = Stored<ReviewKind>)]
    pub kind: ReviewKind,
    pub order_ref: Option<String>,
    /// The processor's reference (REFNO) of the payment it concerns, when
    /// it concerns one.
    pub processor_ref: Option<String>,
    pub details: String,
    /// `open` or `resolved`.
    pub status: String,
    pub resolution_note: Option<String>,
    pub resolved_by: Option<String>,
    #[serde(serialize_with = "rfc3339::option")]
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    /// The action it was resolved with ([`ReviewAction`], or
    /// `closed_by_system`); none while open.
    pub resolution_action: Option<String>,
}

/// Open items of one kind for one order, listed as one line: the newest
/// item's fields, how many there are and their ids (newest first). A
/// resolved item, or one about no order, is a group of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewGroup {
    /// The newest item of the group.
    #[serde(flatten)]
    pub item: ReviewItem,
    /// Items in the group (1 for an item on its own).
    pub count: usize,
    /// Their ids, newest first (the first is `item.id`).
    pub item_ids: Vec<i64>,
}

impl ReviewGroup {
    /// An item on its own (`--ungrouped`, the console's list).
    pub fn of(item: ReviewItem) -> Self {
        Self {
            item_ids: vec![item.id],
            count: 1,
            item,
        }
    }
}

/// Groups `items` (newest first, as listed): open items of one kind for
/// one order become one group, at the place of its newest item; resolved
/// items and items about no order stay one by one, each with its own
/// resolution.
pub fn group_items(items: Vec<ReviewItem>) -> Vec<ReviewGroup> {
    let mut groups: Vec<ReviewGroup> = Vec::new();
    let mut index: std::collections::HashMap<(ReviewKind, String), usize> =
        std::collections::HashMap::new();
    for item in items {
        let key = match (&item.order_ref, item.status.as_str()) {
            (Some(order_ref), "open") => Some((item.kind, order_ref.clone())),
            _ => None,
        };
        match key {
            Some(key) => match index.get(&key) {
                Some(&at) => {
                    groups[at].count += 1;
                    groups[at].item_ids.push(item.id);
                }
                None => {
                    index.insert(key, groups.len());
                    groups.push(ReviewGroup::of(item));
                }
            },
            None => groups.push(ReviewGroup::of(item)),
        }
    }
    groups
}

/// Lists every item as a group of its own (`review list --ungrouped`).
pub fn ungrouped(items: Vec<ReviewItem>) -> Vec<ReviewGroup> {
    items.into_iter().map(ReviewGroup::of).collect()
}

impl Store {
    /// Review items, newest first; only open ones unless `all`, only of
    /// `kind` when given. A stored kind this version does not know is an
    /// error naming it (see `store::sql`), not an item of some other kind.
    pub async fn review_items(
        &self,
        all: bool,
        kind: Option<ReviewKind>,
    ) -> Result<Vec<ReviewItem>, StoreError> {
        let status = if all {
            ReviewStatus::All
        } else {
            ReviewStatus::Open
        };
        self.review_items_by_status(status, kind).await
    }

    /// Review items with `status`, newest first, only of `kind` when given.
    pub async fn review_items_by_status(
        &self,
        status: ReviewStatus,
        kind: Option<ReviewKind>,
    ) -> Result<Vec<ReviewItem>, StoreError> {
        let mut conn = self.conn().await?;
        let mut query = review_items::table
            .left_join(review_resolutions::table)
            .select(item_columns())
            .order(review_items::id.desc())
            .into_boxed();
        match status {
            ReviewStatus::Open => query = query.filter(review_items::status.eq("open")),
            ReviewStatus::Resolved => query = query.filter(review_items::status.eq("resolved")),
            ReviewStatus::All => {}
        }
        if let Some(kind) = kind {
            query = query.filter(review_items::kind.eq(Stored(kind)));
        }
        Ok(query.load(&mut conn).await?)
    }

    /// Review items grouped as `review list` shows them ([`group_items`]).
    pub async fn review_groups(
        &self,
        status: ReviewStatus,
        kind: Option<ReviewKind>,
    ) -> Result<Vec<ReviewGroup>, StoreError> {
        Ok(group_items(
            self.review_items_by_status(status, kind).await?,
        ))
    }

    /// Marks an open review item resolved with [`ReviewAction::Dismiss`]
    /// (what resolving meant before actions existed: who and why, nothing
    /// booked). Returns false when there is no open item with that id.
    ///
    /// People type `resolved_by` and `note`, so a card number in either is
    /// refused (`StoreError::Invalid`, saying which, never quoting it) and
    /// nothing is written.
    pub async fn resolve_review_item(
        &self,
        id: i64,
        resolved_by: &str,
        note: &str,
    ) -> Result<bool, StoreError> {
        match self
            .resolve_review(&ResolveRequest::new(
                id,
                ReviewAction::Dismiss,
                resolved_by,
                note,
            ))
            .await
        {
            Ok(_) => Ok(true),
            Err(ResolveError::NotFound(_) | ResolveError::AlreadyResolved { .. }) => Ok(false),
            Err(ResolveError::Store(err)) => Err(err),
            Err(other) => Err(StoreError::Invalid(other.to_string())),
        }
    }
}

/// The columns of a [`ReviewItem`], from `review_items` left-joined with
/// its resolution.
type ItemColumns = (
    review_items::id,
    review_items::kind,
    review_items::order_ref,
    review_items::processor_ref,
    review_items::details,
    review_items::status,
    review_items::resolution_note,
    review_items::resolved_by,
    review_items::resolved_at,
    review_items::created_at,
    diesel::dsl::Nullable<review_resolutions::action>,
);

fn item_columns() -> ItemColumns {
    (
        review_items::id,
        review_items::kind,
        review_items::order_ref,
        review_items::processor_ref,
        review_items::details,
        review_items::status,
        review_items::resolution_note,
        review_items::resolved_by,
        review_items::resolved_at,
        review_items::created_at,
        review_resolutions::action.nullable(),
    )
}

/// What a person asks for: resolve item `item_id` with `action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveRequest {
    pub item_id: i64,
    pub action: ReviewAction,
    /// Who (a name or staff id). Stored as typed, trimmed.
    pub resolved_by: String,
    /// Why, for the audit trail. Stored as typed, trimmed.
    pub note: String,
    /// For `link_order`: the order to apply the orphan payment to; without
    /// it, the order its notifications name (now that it exists).
    pub order_ref: Option<String>,
    /// Resolve every open item of the same kind for the same order with
    /// this one (see [`group_items`]).
    pub group: bool,
    /// How notifications apply (test orders), as for the worker.
    pub policy: ReconcilePolicy,
}

impl ResolveRequest {
    /// A request for one item, no target order, the default policy.
    pub fn new(item_id: i64, action: ReviewAction, resolved_by: &str, note: &str) -> Self {
        Self {
            item_id,
            action,
            resolved_by: resolved_by.to_owned(),
            note: note.to_owned(),
            order_ref: None,
            group: false,
            policy: ReconcilePolicy::default(),
        }
    }
}

/// What a resolution did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolveOutcome {
    pub action: ReviewAction,
    /// The items resolved, the one named first.
    pub items: Vec<i64>,
    /// Their rows in the resolution ledger, in the same order.
    pub resolutions: Vec<i64>,
    /// The order the action concerned (for `link_order`, the order linked
    /// to), when it concerned one.
    pub order_ref: Option<String>,
    /// The order's state after the action, when the action changed it or
    /// applied notifications to it.
    pub order_state: Option<OrderState>,
    /// The money the action concerned (refunded, written off, applied), as
    /// an exact decimal in its currency.
    pub amount: Option<String>,
    pub currency: Option<String>,
    /// Notifications applied by the action (a repeat, an orphan's).
    pub notifications_applied: Vec<i64>,
}

/// Why a resolution was refused or failed. Nothing is written in any case.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{what} must not be empty: the audit trail records who resolved an item and why")]
    Blank { what: &'static str },
    /// A card number in what a person typed (names the field, never the value).
    #[error("{0}")]
    PersonalData(String),
    #[error("no review item #{0}")]
    NotFound(i64),
    #[error(
        "review item #{id} is already resolved ({action} by {by} at {at}); a resolution is final"
    )]
    AlreadyResolved {
        id: i64,
        action: String,
        by: String,
        at: String,
    },
    #[error("review item #{id}: {misfit}")]
    Misfit {
        id: i64,
        #[source]
        misfit: Misfit,
    },
    #[error("an order reference is only taken by link_order, not by {0}")]
    OrderNotTaken(ReviewAction),
    #[error("review item #{0} names no order")]
    NoOrder(i64),
    #[error("no order {0}: import it first (orders import), or link to an order that exists")]
    UnknownOrder(String),
    #[error("review item #{0} has no notification to apply")]
    NoNotification(i64),
    #[error("no notification under order reference {0} is waiting for its order: nothing to link")]
    NothingToLink(String),
    #[error("review item #{id}: {source}")]
    Refund {
        id: i64,
        #[source]
        source: RefundOutsideError,
    },
    /// The store refused to apply a notification (not an unapplied repeat).
    #[error("{0}")]
    CannotApply(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for ResolveError {
    fn from(err: diesel::result::Error) -> Self {
        Self::Store(StoreError::Query(err))
    }
}

impl ResolveError {
    /// Whether the request was refused as given (an unknown or resolved
    /// item, an action that does not fit, nothing to do): the person must
    /// change it. Otherwise ([`ResolveError::Store`]) the database failed.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, Self::Store(_))
    }

    /// Whether the refusal is about what was typed (an empty or unsafe
    /// `--by`/`--note`), before any item was looked at.
    pub fn is_bad_text(&self) -> bool {
        matches!(self, Self::Blank { .. } | Self::PersonalData(_))
    }
}

/// A review item as locked for its resolution.
#[derive(Debug, Clone, Queryable)]
struct LockedItem {
    id: i64,
    #[diesel(deserialize_as = Stored<ReviewKind>)]
    kind: ReviewKind,
    status: String,
    order_ref: Option<String>,
    processor_ref: Option<String>,
    notification_id: Option<i64>,
}

const LOCKED_COLUMNS: (
    review_items::id,
    review_items::kind,
    review_items::status,
    review_items::order_ref,
    review_items::processor_ref,
    review_items::notification_id,
) = (
    review_items::id,
    review_items::kind,
    review_items::status,
    review_items::order_ref,
    review_items::processor_ref,
    review_items::notification_id,
);

impl Store {
    /// Resolves a review item (and, with `group`, every open item of the
    /// same kind for the same order) with `action`, in one transaction:
    ///
    /// 1. refuses an empty or unsafe `resolved_by`/`note` (a card number),
    ///    an unknown or already resolved item ([`ResolveError::AlreadyResolved`])
    ///    and an action that does not fit the kind ([`ResolveError::Misfit`],
    ///    listing those that do);
    /// 2. locks the item(s) (`FOR UPDATE`), writes one row per item to the
    ///    append-only `review_resolutions` ledger and marks them resolved;
    /// 3. carries out the action ([`effect`]): a confirmed repeat is applied
    ///    as a notification of its own, an orphan's notifications are
    ///    applied to the chosen order, a refund outside the processor is a
    ///    ledger row with its money movements, through the same writes as
    ///    a notification's, so the report and the journal stay equal.
    ///
    /// Nothing is written when it fails. Transient database errors (a
    /// deadlock with a worker, a lost connection) are retried, bounded.
    pub async fn resolve_review(
        &self,
        request: &ResolveRequest,
    ) -> Result<ResolveOutcome, ResolveError> {
        let by = request.resolved_by.trim();
        let note = request.note.trim();
        for (what, text) in [("the resolver's name", by), ("the resolution note", note)] {
            if text.is_empty() {
                return Err(ResolveError::Blank { what });
            }
            check_free_text(what, text).map_err(|e| ResolveError::PersonalData(e.to_string()))?;
        }
        if let Some(order_ref) = &request.order_ref {
            if request.action != ReviewAction::LinkOrder {
                return Err(ResolveError::OrderNotTaken(request.action));
            }
            check_free_text("the order reference", order_ref)
                .map_err(|e| ResolveError::PersonalData(e.to_string()))?;
        }
        // A deadlock with a worker applying a notification to the same
        // order, or a lost connection, is retried like a notification's
        // apply: the transaction wrote nothing.
        (|| async {
            let mut conn = self.conn().await?;
            conn.transaction::<_, ResolveError, _>(async |conn| {
                resolve_in(conn, request, by, note, self.currencies()).await
            })
            .await
        })
        .retry(RetryBounds::default().backoff())
        .when(|err: &ResolveError| matches!(err, ResolveError::Store(e) if e.is_transient()))
        .await
    }
}

async fn resolve_in(
    conn: &mut AsyncPgConnection,
    request: &ResolveRequest,
    by: &str,
    note: &str,
    currencies: &Currencies,
) -> Result<ResolveOutcome, ResolveError> {
    let id = request.item_id;
    let item: Option<LockedItem> = review_items::table
        .find(id)
        .select(LOCKED_COLUMNS)
        .for_update()
        .first(conn)
        .await
        .optional()?;
    let item = item.ok_or(ResolveError::NotFound(id))?;
    if item.status != "open" {
        let (action, resolved_by, at): (String, String, DateTime<Utc>) = review_resolutions::table
            .filter(review_resolutions::review_item_id.eq(id))
            .select((
                review_resolutions::action,
                review_resolutions::resolved_by,
                review_resolutions::created_at,
            ))
            .first(conn)
            .await?;
        return Err(ResolveError::AlreadyResolved {
            id,
            action,
            by: resolved_by,
            at: rfc3339::format(&at),
        });
    }
    let done =
        effect(item.kind, request.action).map_err(|misfit| ResolveError::Misfit { id, misfit })?;
    let mut items = vec![item];
    if request.group
        && let Some(order_ref) = items[0].order_ref.clone()
    {
        let others: Vec<LockedItem> = review_items::table
            .filter(review_items::kind.eq(Stored(items[0].kind)))
            .filter(review_items::order_ref.eq(&order_ref))
            .filter(review_items::status.eq("open"))
            .filter(review_items::id.ne(id))
            .order(review_items::id.asc())
            .select(LOCKED_COLUMNS)
            .for_update()
            .load(conn)
            .await?;
        items.extend(others);
    }
    let mut run = Run {
        request,
        by,
        note,
        currencies,
        group_of: (request.group && items.len() > 1).then_some(id),
        outcome: ResolveOutcome {
            action: request.action,
            items: items.iter().map(|i| i.id).collect(),
            resolutions: Vec::new(),
            order_ref: items[0].order_ref.clone(),
            order_state: None,
            amount: None,
            currency: None,
            notifications_applied: Vec::new(),
        },
    };
    match done {
        ActionEffect::RecordOnly => {
            for item in &items {
                run.resolve(conn, item, None).await?;
            }
        }
        ActionEffect::WriteOff => {
            let mut total: Option<Money> = None;
            for item in &items {
                let at_stake = at_stake(conn, item, currencies).await?;
                run.resolve(conn, item, at_stake).await?;
                total = add(total, at_stake);
            }
            run.set_amount(total);
        }
        ActionEffect::ApplyRepeat => run.apply_repeats(conn, &items).await?,
        ActionEffect::LinkOrder => run.link_order(conn, &items).await?,
        ActionEffect::RefundOutside => run.refund_outside(conn, &items).await?,
    }
    Ok(run.outcome)
}

/// Sums amounts of one currency (an amount in another currency is left
/// out of the total: never summed across currencies).
fn add(total: Option<Money>, more: Option<Money>) -> Option<Money> {
    match (total, more) {
        (None, more) => more,
        (Some(t), None) => Some(t),
        (Some(t), Some(m)) if t.currency() == m.currency() => Some(Money::from_minor(
            t.minor_units().saturating_add(m.minor_units()),
            t.currency(),
        )),
        (Some(t), Some(_)) => Some(t),
    }
}

/// The amount of an item's notification (a repeat's refund, an orphan's
/// payment), when it has one.
async fn notification_amount(
    conn: &mut AsyncPgConnection,
    item: &LockedItem,
    currencies: &Currencies,
) -> Result<Option<Money>, ResolveError> {
    let Some(notification_id) = item.notification_id else {
        return Ok(None);
    };
    let row: Option<(Option<i64>, Option<String>)> = notifications::table
        .find(notification_id)
        .select((notifications::amount_minor, notifications::currency))
        .first(conn)
        .await
        .optional()?;
    Ok(match row {
        Some((Some(minor), Some(code))) => currencies
            .currency(&code)
            .ok()
            .map(|currency| Money::from_minor(minor.abs(), currency)),
        _ => None,
    })
}

/// The money an item is about, for a write-off: for an item about a
/// payment of a known order, the refunds above the payment (over-refunded)
/// or what the payment still holds (paid, not refunded or charged back);
/// otherwise its notification's amount (an orphan's payment).
async fn at_stake(
    conn: &mut AsyncPgConnection,
    item: &LockedItem,
    currencies: &Currencies,
) -> Result<Option<Money>, ResolveError> {
    if let (Some(order_ref), Some(refno)) = (&item.order_ref, &item.processor_ref) {
        let row: Option<(String, i64, i64, bool)> = payments::table
            .inner_join(orders::table)
            .filter(orders::order_ref.eq(order_ref))
            .filter(payments::processor_ref.eq(refno))
            .select((
                orders::currency,
                payments::paid_minor,
                payments::refunded_minor,
                payments::reversed,
            ))
            .first(conn)
            .await
            .optional()?;
        if let Some((code, paid, refunded, reversed)) = row
            && let Ok(currency) = currencies.currency(&code)
        {
            let minor = if paid > 0 && refunded > paid {
                refunded - paid
            } else if paid > 0 && !reversed {
                paid - refunded
            } else {
                0
            };
            return Ok((minor > 0).then(|| Money::from_minor(minor, currency)));
        }
    }
    notification_amount(conn, item, currencies).await
}

/// One resolution being carried out.
struct Run<'a> {
    request: &'a ResolveRequest,
    by: &'a str,
    note: &'a str,
    /// The store's currency table, for amounts read from rows.
    currencies: &'a Currencies,
    group_of: Option<i64>,
    outcome: ResolveOutcome,
}

impl Run<'_> {
    fn set_amount(&mut self, amount: Option<Money>) {
        self.outcome.amount = amount.map(|m| m.format_amount());
        self.outcome.currency = amount.map(|m| m.currency().as_str().to_owned());
    }

    /// Writes the item's resolution row and marks it resolved; returns the
    /// row's id.
    async fn resolve(
        &mut self,
        conn: &mut AsyncPgConnection,
        item: &LockedItem,
        amount: Option<Money>,
    ) -> Result<i64, ResolveError> {
        let order_ref = match self.request.action {
            ReviewAction::LinkOrder => self.outcome.order_ref.clone(),
            _ => item.order_ref.clone(),
        };
        let resolution: i64 = diesel::insert_into(review_resolutions::table)
            .values((
                review_resolutions::review_item_id.eq(item.id),
                review_resolutions::kind.eq(Stored(item.kind)),
                review_resolutions::action.eq(self.request.action.as_str()),
                review_resolutions::resolved_by.eq(self.by),
                review_resolutions::note.eq(self.note),
                review_resolutions::order_ref.eq(order_ref),
                review_resolutions::notification_id.eq(item.notification_id),
                review_resolutions::amount_minor.eq(amount.map(|m| m.minor_units())),
                review_resolutions::currency.eq(amount.map(|m| m.currency().as_str().to_owned())),
                review_resolutions::group_of.eq(self.group_of),
            ))
            .returning(review_resolutions::id)
            .get_result(conn)
            .await?;
        diesel::update(review_items::table.find(item.id))
            .set((
                review_items::status.eq("resolved"),
                review_items::resolved_by.eq(self.by),
                review_items::resolution_note.eq(self.note),
                review_items::resolved_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
        self.outcome.resolutions.push(resolution);
        Ok(resolution)
    }

    fn applied(&mut self, notification_id: i64, report: &ApplyReport) {
        self.outcome.notifications_applied.push(notification_id);
        if report.order_state.is_some() {
            self.outcome.order_state = report.order_state;
        }
    }

    /// `late_repeat`: each item's repeat applied as a notification of its
    /// own (the path of `Store::apply_confirmed_repeat`).
    async fn apply_repeats(
        &mut self,
        conn: &mut AsyncPgConnection,
        items: &[LockedItem],
    ) -> Result<(), ResolveError> {
        let mut total = None;
        for item in items {
            let notification_id = item
                .notification_id
                .ok_or(ResolveError::NoNotification(item.id))?;
            let amount = notification_amount(conn, item, self.currencies).await?;
            self.resolve(conn, item, amount).await?;
            total = add(total, amount);
            let report = apply_repeat(
                conn,
                notification_id,
                self.by,
                &self.request.policy,
                self.currencies,
            )
            .await
            .map_err(|err| match err {
                StoreError::Invalid(why) => ResolveError::CannotApply(why),
                other => ResolveError::Store(other),
            })?;
            self.applied(notification_id, &report);
        }
        self.set_amount(total);
        Ok(())
    }

    /// `orphan_payment`: the notifications that found no order under the
    /// item's order reference are applied, oldest first, to the chosen
    /// order (the one they name by default) through the state machine.
    async fn link_order(
        &mut self,
        conn: &mut AsyncPgConnection,
        items: &[LockedItem],
    ) -> Result<(), ResolveError> {
        let named = items[0]
            .order_ref
            .clone()
            .ok_or(ResolveError::NoOrder(items[0].id))?;
        let target = self
            .request
            .order_ref
            .as_deref()
            .map(str::trim)
            .unwrap_or(&named)
            .to_owned();
        let origin: Option<Stored<OrderOrigin>> = orders::table
            .filter(orders::order_ref.eq(&target))
            .select(orders::origin)
            .first(conn)
            .await
            .optional()?;
        let Some(Stored(origin)) = origin else {
            return Err(ResolveError::UnknownOrder(target));
        };
        // The notices waiting under the item's reference: those that named
        // it, and those that named no merchant reference and were looked
        // for under their REFNO.
        let waiting: Vec<i64> = notifications::table
            .filter(
                notifications::order_ref
                    .eq(&named)
                    .or(notifications::order_ref
                        .is_null()
                        .and(notifications::processor_ref.eq(&named))),
            )
            .filter(notifications::outcome.eq(Stored(Outcome::OrderNotFound)))
            .filter(notifications::repeat_of.is_null())
            .filter(notifications::identity.is_not_null())
            .order(notifications::id.asc())
            .select(notifications::id)
            .for_update()
            .load(conn)
            .await?;
        if waiting.is_empty() {
            return Err(ResolveError::NothingToLink(named));
        }
        self.outcome.order_ref = Some(target.clone());
        for item in items {
            self.resolve(conn, item, None).await?;
        }
        let ledger_note = format!(
            "linked to order {target} by {}, review item #{}",
            self.by, self.request.item_id
        );
        for notification_id in waiting {
            let event = stored_event(conn, notification_id, self.currencies).await?;
            let key = OrderKey {
                origin,
                order_ref: target.clone(),
                creates: false,
            };
            let report = super::batch::apply_recorded(
                conn,
                &event,
                &key,
                notification_id,
                &self.request.policy,
                self.currencies,
                Some(&ledger_note),
            )
            .await?;
            self.applied(notification_id, &report);
        }
        Ok(())
    }

    /// `duplicate_payment`, `canceled_then_paid`: a refund made outside the
    /// processor of what each item's payment (every payment, for an item
    /// about the whole order) still holds: a ledger row per item that
    /// refunded something, with its money movements.
    async fn refund_outside(
        &mut self,
        conn: &mut AsyncPgConnection,
        items: &[LockedItem],
    ) -> Result<(), ResolveError> {
        let order_ref = items[0]
            .order_ref
            .clone()
            .ok_or(ResolveError::NoOrder(items[0].id))?;
        let order: Option<OrderRow> = orders::table
            .filter(orders::order_ref.eq(&order_ref))
            .select(OrderRow::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()?;
        let order = order.ok_or_else(|| ResolveError::UnknownOrder(order_ref.clone()))?;
        let mut facts = load_facts(conn, &order, self.currencies).await?;
        // Decided before anything is written: which item refunds what.
        let mut steps = Vec::new();
        let mut first_refusal = None;
        for item in items {
            match refund_outside(&facts, item.processor_ref.as_deref()) {
                Ok((after, amount)) => {
                    steps.push((item, Some((facts.clone(), after.clone(), amount))));
                    facts = after;
                }
                Err(source) => {
                    first_refusal.get_or_insert(ResolveError::Refund {
                        id: item.id,
                        source,
                    });
                    steps.push((item, None));
                }
            }
        }
        if steps.iter().all(|(_, step)| step.is_none())
            && let Some(refusal) = first_refusal
        {
            return Err(refusal);
        }
        let mut total = None;
        for (item, step) in steps {
            let amount = step.as_ref().map(|(_, _, amount)| *amount);
            let resolution = self.resolve(conn, item, amount).await?;
            let Some((before, after, amount)) = step else {
                continue;
            };
            total = add(total, Some(amount));
            let refnos: Vec<String> = after
                .payments
                .iter()
                .filter(|(refno, p)| before.payments.get(*refno) != Some(*p))
                .map(|(refno, _)| refno.clone())
                .collect();
            let decision = Decision {
                old_state: before.state(),
                new_state: after.state(),
                facts: after,
                effect: Effect::Applied,
                reason: format!(
                    "refund of {amount} made outside the processor under processor reference {}, \
                     recorded by {} (review item #{})",
                    refnos.join(", "),
                    self.by,
                    item.id
                ),
                review_items: Vec::new(),
                resolutions: Vec::new(),
                outcome: Outcome::Applied,
            };
            write_facts(conn, order.id, &before, &decision).await?;
            diesel::insert_into(order_events::table)
                .values((
                    order_events::order_id.eq(order.id),
                    order_events::resolution_id.eq(resolution),
                    order_events::order_status.eq(ReviewAction::MarkRefundedOutside.as_str()),
                    order_events::effect.eq(Stored(decision.effect)),
                    order_events::old_status.eq(Stored(decision.old_state)),
                    order_events::new_status.eq(Stored(decision.new_state)),
                    order_events::amount_minor.eq(amount.minor_units()),
                    order_events::currency.eq(amount.currency().as_str()),
                    order_events::reason.eq(&decision.reason),
                ))
                .execute(conn)
                .await?;
            let moved = movements(&before, &decision.facts);
            super::journal::record_for_resolution(conn, order.id, resolution, &moved).await?;
            self.outcome.order_state = Some(decision.new_state);
        }
        self.set_amount(total);
        Ok(())
    }
}

/// A row of the resolution ledger, as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Queryable)]
pub struct ResolutionView {
    pub id: i64,
    pub review_item_id: i64,
    #[diesel(deserialize_as = Stored<ReviewKind>)]
    pub kind: ReviewKind,
    /// A [`ReviewAction`], `closed_by_system`, or `note` (resolved before
    /// actions existed).
    pub action: String,
    pub resolved_by: String,
    pub note: String,
    pub order_ref: Option<String>,
    pub notification_id: Option<i64>,
    /// Minor units, with `currency`.
    #[serde(skip)]
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub group_of: Option<i64>,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub at: DateTime<Utc>,
}

const RESOLUTION_COLUMNS: (
    review_resolutions::id,
    review_resolutions::review_item_id,
    review_resolutions::kind,
    review_resolutions::action,
    review_resolutions::resolved_by,
    review_resolutions::note,
    review_resolutions::order_ref,
    review_resolutions::notification_id,
    review_resolutions::amount_minor,
    review_resolutions::currency,
    review_resolutions::group_of,
    review_resolutions::created_at,
) = (
    review_resolutions::id,
    review_resolutions::review_item_id,
    review_resolutions::kind,
    review_resolutions::action,
    review_resolutions::resolved_by,
    review_resolutions::note,
    review_resolutions::order_ref,
    review_resolutions::notification_id,
    review_resolutions::amount_minor,
    review_resolutions::currency,
    review_resolutions::group_of,
    review_resolutions::created_at,
);

impl ResolutionView {
    /// The amount as an exact decimal in its currency, read with
    /// `currencies` (the store's table, [`Store::currencies`]).
    pub fn amount(&self, currencies: &Currencies) -> Option<String> {
        let currency = currencies.currency(self.currency.as_deref()?).ok()?;
        Some(Money::from_minor(self.amount_minor?, currency).format_amount())
    }
}

/// A notification involved in an item: how it was verified and what
/// became of it. No personal data (no pseudonym, no payment method).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotificationView {
    pub id: i64,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub received_at: DateTime<Utc>,
    pub processor_ref: Option<String>,
    /// REFNOEXT, as the processor sent it.
    pub order_ref: Option<String>,
    pub order_status: Option<String>,
    pub amount: Option<String>,
    pub currency: Option<String>,
    /// Which key verified it, and with which algorithm.
    pub key_id: Option<String>,
    pub algorithm: Option<String>,
    /// SHA-256 of the body as received.
    pub body_sha256: String,
    /// The digest of its signed values (what makes repeats one notification).
    pub identity: Option<String>,
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// The notification this one repeats, when it is a repeat.
    pub repeat_of: Option<i64>,
}

type NotificationRow = (
    i64,
    DateTime<Utc>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Stored<Outcome>,
    Option<String>,
    Option<i64>,
);

/// A money movement as loaded: time, REFNO, kind, minor units, currency,
/// notification, resolution.
type MovementRow = (
    DateTime<Utc>,
    String,
    Stored<MovementKind>,
    i64,
    String,
    Option<i64>,
    Option<i64>,
);

/// A money movement of the order, as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MovementView {
    #[serde(serialize_with = "rfc3339::serialize")]
    pub at: DateTime<Utc>,
    pub processor_ref: String,
    pub kind: MovementKind,
    pub amount: String,
    pub currency: String,
    /// The notification that moved it, or the resolution (a person's
    /// action).
    pub notification_id: Option<i64>,
    pub resolution_id: Option<i64>,
}

/// Everything behind one review item (`review show`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewDetail {
    pub item: ReviewItem,
    /// The actions that fit its kind, the usual one first.
    pub allowed_actions: Vec<ReviewAction>,
    /// Open items of its group (same kind, same order), itself included,
    /// newest first: what `review resolve ID --group` resolves.
    pub group: Vec<i64>,
    /// Its row in the resolution ledger, once resolved.
    pub resolution: Option<ResolutionView>,
    /// The order it concerns, with its payments and ledger, when the order
    /// exists.
    pub order: Option<OrderView>,
    /// The order's money movements, oldest first.
    pub movements: Vec<MovementView>,
    /// The notifications involved: the item's own, those naming the order
    /// (REFNOEXT) and those in the order's ledger; oldest first.
    pub notifications: Vec<NotificationView>,
}

impl Store {
    /// One review item with its order's payments, ledger and money
    /// movements, and the notifications involved; `None` when there is no
    /// such item.
    pub async fn review_detail(&self, id: i64) -> Result<Option<ReviewDetail>, StoreError> {
        let mut conn = self.conn().await?;
        let item: Option<ReviewItem> = review_items::table
            .left_join(review_resolutions::table)
            .filter(review_items::id.eq(id))
            .select(item_columns())
            .first(&mut conn)
            .await
            .optional()?;
        let Some(item) = item else {
            return Ok(None);
        };
        let notification_id: Option<i64> = review_items::table
            .find(id)
            .select(review_items::notification_id)
            .first(&mut conn)
            .await?;
        let group = match (&item.order_ref, item.status.as_str()) {
            (Some(order_ref), "open") => {
                review_items::table
                    .filter(review_items::kind.eq(Stored(item.kind)))
                    .filter(review_items::order_ref.eq(order_ref))
                    .filter(review_items::status.eq("open"))
                    .order(review_items::id.desc())
                    .select(review_items::id)
                    .load(&mut conn)
                    .await?
            }
            _ => vec![item.id],
        };
        let resolution: Option<ResolutionView> = review_resolutions::table
            .filter(review_resolutions::review_item_id.eq(id))
            .select(RESOLUTION_COLUMNS)
            .first(&mut conn)
            .await
            .optional()?;
        let order_id: Option<i64> = match &item.order_ref {
            Some(order_ref) => orders::table
                .filter(orders::order_ref.eq(order_ref))
                .select(orders::id)
                .first(&mut conn)
                .await
                .optional()?,
            None => None,
        };
        let mut movement_rows: Vec<MovementRow> = Vec::new();
        let mut ledger_notifications: Vec<i64> = Vec::new();
        if let Some(order_id) = order_id {
            movement_rows = money_movements::table
                .filter(money_movements::order_id.eq(order_id))
                .order(money_movements::id.asc())
                .select((
                    money_movements::created_at,
                    money_movements::processor_ref,
                    money_movements::kind,
                    money_movements::amount_minor,
                    money_movements::currency,
                    money_movements::notification_id,
                    money_movements::resolution_id,
                ))
                .load(&mut conn)
                .await?;
            ledger_notifications = order_events::table
                .filter(order_events::order_id.eq(order_id))
                .filter(order_events::notification_id.is_not_null())
                .select(order_events::notification_id.assume_not_null())
                .load(&mut conn)
                .await?;
        }
        let mut wanted = ledger_notifications;
        wanted.extend(notification_id);
        let mut query = notifications::table
            .filter(notifications::id.eq_any(wanted))
            .into_boxed();
        if let Some(order_ref) = &item.order_ref {
            query = query.or_filter(notifications::order_ref.eq(order_ref));
        }
        let rows: Vec<NotificationRow> = query
            .order(notifications::id.asc())
            .select((
                notifications::id,
                notifications::received_at,
                notifications::processor_ref,
                notifications::order_ref,
                notifications::order_status,
                notifications::amount_minor,
                notifications::currency,
                notifications::key_id,
                notifications::algorithm,
                notifications::body_sha256,
                notifications::identity,
                notifications::outcome,
                notifications::reason,
                notifications::repeat_of,
            ))
            .load(&mut conn)
            .await?;
        drop(conn);
        let notifications = rows
            .into_iter()
            .map(
                |(
                    id,
                    received_at,
                    processor_ref,
                    order_ref,
                    order_status,
                    minor,
                    currency,
                    key_id,
                    algorithm,
                    body_sha256,
                    identity,
                    Stored(outcome),
                    reason,
                    repeat_of,
                )| NotificationView {
                    id,
                    received_at,
                    processor_ref,
                    order_ref,
                    order_status,
                    amount: minor.zip(currency.as_deref()).map(|(minor, code)| {
                        self.currencies().currency(code).map_or_else(
                            |_| minor.to_string(),
                            |c| Money::from_minor(minor, c).format_amount(),
                        )
                    }),
                    currency,
                    key_id,
                    algorithm,
                    body_sha256,
                    identity,
                    outcome,
                    reason,
                    repeat_of,
                },
            )
            .collect();
        let movements = movement_rows
            .into_iter()
            .map(
                |(
                    at,
                    processor_ref,
                    Stored(kind),
                    minor,
                    currency,
                    notification_id,
                    resolution_id,
                )| {
                    MovementView {
                        at,
                        processor_ref,
                        kind,
                        amount: self.currencies().currency(&currency).map_or_else(
                            |_| minor.to_string(),
                            |c| Money::from_minor(minor, c).format_amount(),
                        ),
                        currency,
                        notification_id,
                        resolution_id,
                    }
                },
            )
            .collect();
        let order = match &item.order_ref {
            Some(order_ref) if order_id.is_some() => self.order(order_ref).await?,
            _ => None,
        };
        Ok(Some(ReviewDetail {
            allowed_actions: allowed_actions(item.kind).to_vec(),
            item,
            group,
            resolution,
            order,
            movements,
            notifications,
        }))
    }

    /// Resolutions so far per action (the `review_resolutions` gauge), in
    /// action order.
    pub async fn resolutions_by_action(&self) -> Result<Vec<(String, i64)>, StoreError> {
        use diesel::dsl::count_star;
        let mut conn = self.conn().await?;
        Ok(review_resolutions::table
            .group_by(review_resolutions::action)
            .select((review_resolutions::action, count_star()))
            .order(review_resolutions::action.asc())
            .load(&mut conn)
            .await?)
    }

    /// The resolution ledger, oldest first (all of it, or one item's).
    pub async fn review_resolutions(
        &self,
        item_id: Option<i64>,
    ) -> Result<Vec<ResolutionView>, StoreError> {
        let mut conn = self.conn().await?;
        let mut query = review_resolutions::table
            .select(RESOLUTION_COLUMNS)
            .order(review_resolutions::id.asc())
            .into_boxed();
        if let Some(id) = item_id {
            query = query.filter(review_resolutions::review_item_id.eq(id));
        }
        Ok(query.load(&mut conn).await?)
    }
}
