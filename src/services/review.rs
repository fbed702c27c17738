//! Resolving a review item: a person's action on an exception, carried out
//! in one transaction.
//!
//! What an action may do to an item of a kind, and what it does to the
//! books, is decided in [`crate::domain::review`] (`allowed_actions`,
//! `effect`, `refund_outside`); the rest of the decisions are here, pure
//! ([`checked_text`], [`write_off_amount`], [`plan_refunds`],
//! [`refund_decision`], [`add`]), and [`resolve`] runs the steps with the
//! store's repository functions, in one transaction it opens: the item
//! (and its group) locked, an already resolved one refused, one row per
//! item in the append-only `review_resolutions` ledger (who, when, why,
//! which action), and the action applied through the same paths as
//! notifications (a confirmed repeat through `store::apply::apply_repeat`,
//! an orphan's notifications through `store::apply::apply_to_order`, both
//! the batch's own decide and write steps; a refund outside the processor
//! as facts that grow, a ledger row that names its resolution and the
//! money movements `journal::movements` computes; a payment of the wrong
//! amount booked as captured and a refund in another currency booked in
//! its own, the same way). A write-off records what it writes off, signed,
//! in the resolution ledger ([`written_off`]), where the journal and the
//! report read it.
//!
//! No clock is read, and no decision depends on the time: the rows are
//! stamped by the database's `now()`, the transaction's time.

use backon::Retryable;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::Serialize;

use crate::domain::four_eyes::{FourEyesAmount, LinkRefusal, WaitingNotice, check_link};
use crate::domain::journal::movements;
use crate::domain::pan::check_free_text;
use crate::domain::review::{
    ActionEffect, BookError, Capture, Difference, Misfit, RefundOutsideError, ReinstateError,
    ReviewAction, book_capture, book_foreign_refund, effect, line_write_off, payout_write_off,
    refund_outside, reinstate,
};
use crate::domain::{
    Currencies, Decision, Effect, Money, OrderFacts, OrderState, Outcome, PaymentEvent,
    ReconcilePolicy, ReviewKind, StatusCategory, StatusField,
};
use crate::export::rfc3339;
use crate::store::action_log::{ActionEntry, Actor, ActorSource, record_action};
use crate::store::apply::{
    ApplyReport, RetryBounds, apply_repeat, apply_to_order, lock_order_facts, stored_event,
    write_facts,
};
use crate::store::console::ConsoleAction;
use crate::store::link_requests::{self, LinkRequest, NewLinkRequest};
use crate::store::review::{self, LockedItem, NewResolution, PaymentBalance};
use crate::store::{Store, StoreError};

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
    /// this one (see [`group_items`](crate::store::review::group_items)).
    pub group: bool,
    /// How notifications apply (test orders), as for the worker.
    pub policy: ReconcilePolicy,
    /// Where the person acted, for the action log: the console, or the
    /// command line with the machine it ran on.
    pub origin: Origin,
    /// `four-eyes-amount`: a `link_order` above it only records a request
    /// that a second resolver confirms ([`confirm_link_order`]).
    pub four_eyes: FourEyesAmount,
}

impl ResolveRequest {
    /// A request for one item, no target order, the default policy, from
    /// the command line of an unnamed machine, without a four-eyes limit.
    pub fn new(item_id: i64, action: ReviewAction, resolved_by: &str, note: &str) -> Self {
        Self {
            item_id,
            action,
            resolved_by: resolved_by.to_owned(),
            note: note.to_owned(),
            order_ref: None,
            group: false,
            policy: ReconcilePolicy::default(),
            origin: Origin::cli(None, None),
            four_eyes: FourEyesAmount::off(),
        }
    }
}

/// Where a person acted, as the action log records it with their name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The console: the name is the logged-in user.
    Console,
    /// The command line: the name is `--by`; the operating-system account
    /// and host it ran under (read by the program, `None` when unreadable).
    Cli {
        os_user: Option<String>,
        host: Option<String>,
    },
}

impl Origin {
    pub fn cli(os_user: Option<String>, host: Option<String>) -> Self {
        Self::Cli { os_user, host }
    }

    /// The actor called `name` acting from here.
    pub fn actor(&self, name: &str) -> Actor {
        match self {
            Self::Console => Actor::console(name.trim()),
            Self::Cli { os_user, host } => Actor::cli(name, os_user.clone(), host.clone()),
        }
    }

    fn source(&self) -> ActorSource {
        match self {
            Self::Console => ActorSource::Console,
            Self::Cli { .. } => ActorSource::Cli,
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
    /// A `link_order` above `four-eyes-amount`: the request recorded
    /// instead (nothing resolved, no money moved) until a second resolver
    /// confirms it.
    pub pending_request: Option<i64>,
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
    /// The orphan's money does not fit the order named (currency, open
    /// balance): nothing written.
    #[error("review item #{id}: cannot link to order {order_ref}: {source}")]
    Link {
        id: i64,
        order_ref: String,
        #[source]
        source: LinkRefusal,
    },
    #[error(
        "review item #{id}: a link_order to {order_ref} asked by {by} waits for a second resolver \
         to confirm it in the console (or resolve the item with another action)"
    )]
    AwaitingConfirmation {
        id: i64,
        order_ref: String,
        by: String,
    },
    #[error("review item #{0}: no link_order waits for a confirmation")]
    NothingToConfirm(i64),
    #[error("review item #{0}: you asked for this link_order; another resolver must confirm it")]
    OwnRequest(i64),
    #[error(
        "review item #{id}: the link asked for booked {asked}, it would now book {now}; resolve \
         the item again"
    )]
    LinkChanged { id: i64, asked: Money, now: Money },
    #[error("review item #{id}: {source}")]
    Book {
        id: i64,
        #[source]
        source: BookError,
    },
    #[error("review item #{id}: {source}")]
    Refund {
        id: i64,
        #[source]
        source: RefundOutsideError,
    },
    #[error("review item #{id}: {source}")]
    Reinstate {
        id: i64,
        #[source]
        source: ReinstateError,
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
pub async fn resolve(
    store: &Store,
    request: &ResolveRequest,
) -> Result<ResolveOutcome, ResolveError> {
    let (by, note) = checked_text(request)?;
    // A deadlock with a worker applying a notification to the same
    // order, or a lost connection, is retried like a notification's
    // apply: the transaction wrote nothing.
    (|| async {
        let mut conn = store.conn().await?;
        conn.transaction::<_, ResolveError, _>(async |conn| {
            resolve_in(conn, request, by, note, store.currencies(), None).await
        })
        .await
    })
    .retry(RetryBounds::default().backoff())
    .when(|err: &ResolveError| matches!(err, ResolveError::Store(e) if e.is_transient()))
    .await
}

/// What a person typed, checked before anything is read: the resolver's
/// name and the note, trimmed, must not be empty and must hold no card
/// number; an order reference is only taken by `link_order`, and must
/// hold no card number either. Returns the trimmed name and note.
pub fn checked_text(request: &ResolveRequest) -> Result<(&str, &str), ResolveError> {
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
    Ok((by, note))
}

/// A confirmation being carried out: the request and who confirms it.
struct Confirming<'a> {
    request: &'a LinkRequest,
    by: &'a Actor,
}

async fn resolve_in(
    conn: &mut AsyncPgConnection,
    request: &ResolveRequest,
    by: &str,
    note: &str,
    currencies: &Currencies,
    confirming: Option<Confirming<'_>>,
) -> Result<ResolveOutcome, ResolveError> {
    let id = request.item_id;
    let item = review::lock_item(conn, id)
        .await?
        .ok_or(ResolveError::NotFound(id))?;
    if item.status != "open" {
        let past = review::resolution_of(conn, id).await?;
        return Err(ResolveError::AlreadyResolved {
            id,
            action: past.action,
            by: past.resolved_by,
            at: rfc3339::format(&past.at),
        });
    }
    // A link waiting for its second resolver is confirmed, or the item
    // resolved otherwise; it is not asked for again.
    if confirming.is_none()
        && request.action == ReviewAction::LinkOrder
        && let Some(waiting) = link_requests::lock_pending(conn, id, currencies).await?
    {
        return Err(ResolveError::AwaitingConfirmation {
            id,
            order_ref: waiting.order_ref,
            by: waiting.requested_by,
        });
    }
    let done =
        effect(item.kind, request.action).map_err(|misfit| ResolveError::Misfit { id, misfit })?;
    let mut items = vec![item];
    if request.group
        && let Some(order_ref) = items[0].order_ref.clone()
    {
        let others = review::lock_open_group(conn, items[0].kind, &order_ref, id).await?;
        items.extend(others);
    }
    let mut run = Run {
        request,
        by,
        note,
        currencies,
        confirming: confirming.as_ref().map(|c| c.request),
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
            pending_request: None,
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
                let written_off = written_off(conn, item, currencies).await?;
                run.resolve_writing_off(conn, item, written_off.map(|m| m.abs()), written_off)
                    .await?;
                total = add(total, written_off);
            }
            run.set_amount(total);
        }
        ActionEffect::BookCapture(difference) => run.book_capture(conn, &items, difference).await?,
        ActionEffect::BookRefund => run.book_refund(conn, &items).await?,
        ActionEffect::ApplyRepeat => run.apply_repeats(conn, &items).await?,
        ActionEffect::LinkOrder => run.link_order(conn, &items).await?,
        ActionEffect::RefundOutside => run.refund_outside(conn, &items).await?,
        ActionEffect::Reinstate => run.reinstate(conn, &items).await?,
    }
    let outcome = run.outcome;
    // The action log's row, in this transaction: it commits with the
    // effect or not at all.
    let (actor, action) = match (&confirming, outcome.pending_request) {
        (Some(c), _) => {
            link_requests::confirm(conn, c.request.id, &c.by.name).await?;
            (c.by.clone(), ConsoleAction::ConfirmLinkOrder)
        }
        (None, Some(_)) => (request.origin.actor(by), ConsoleAction::RequestLinkOrder),
        (None, None) => {
            // Resolved otherwise: a link that waited for its second
            // resolver is not wanted any more.
            link_requests::supersede(conn, &outcome.items).await?;
            (request.origin.actor(by), ConsoleAction::ResolveReview)
        }
    };
    let subject = format!("#{id}");
    let details = log_details(&outcome, confirming.as_ref().map(|c| c.request));
    record_action(
        conn,
        &ActionEntry {
            actor: &actor,
            action,
            subject: Some(&subject),
            details: Some(&details),
            at: None,
        },
    )
    .await?;
    Ok(outcome)
}

/// What the action log says of a resolution: the action, the items, and
/// for a link the order and the money (references and amounts only).
pub fn log_details(outcome: &ResolveOutcome, confirmed: Option<&LinkRequest>) -> String {
    let items: Vec<String> = outcome.items.iter().map(|i| format!("#{i}")).collect();
    let mut details = format!("{}: {}", outcome.action, items.join(" "));
    if outcome.action == ReviewAction::LinkOrder
        && let Some(order_ref) = &outcome.order_ref
    {
        details.push_str(&format!(" -> {order_ref}"));
        if let (Some(amount), Some(currency)) = (&outcome.amount, &outcome.currency) {
            details.push_str(&format!(" ({amount} {currency})"));
        }
    }
    if let Some(request) = outcome.pending_request {
        details.push_str(&format!("; request #{request} waits for a second resolver"));
    }
    if let Some(request) = confirmed {
        details.push_str(&format!(
            "; request #{} asked by {} confirmed",
            request.id, request.requested_by
        ));
    }
    details
}

/// Who confirms a `link_order` that waits for a second resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmRequest {
    pub item_id: i64,
    /// The confirming resolver: the console user.
    pub confirmed_by: String,
    pub origin: Origin,
    /// How notifications apply (test orders), as for the worker.
    pub policy: ReconcilePolicy,
}

/// Confirms the `link_order` that waits on item `item_id`, in one
/// transaction: refused when nothing waits, when the confirming person is
/// the one who asked (the same name, ignoring case and spaces), when the
/// orphan's money no longer fits the order (checked again) or would now
/// book another amount; otherwise the link is carried out as asked
/// (resolution row by the requester, its note naming the confirmer), the
/// request marked confirmed, and one `confirm_link_order` row written to
/// the action log. The money moves here, once: a second confirmation finds
/// the item resolved.
pub async fn confirm_link_order(
    store: &Store,
    confirm: &ConfirmRequest,
) -> Result<ResolveOutcome, ResolveError> {
    let confirmer = confirm.confirmed_by.trim();
    if confirmer.is_empty() {
        return Err(ResolveError::Blank {
            what: "the confirming resolver's name",
        });
    }
    check_free_text("the confirming resolver's name", confirmer)
        .map_err(|e| ResolveError::PersonalData(e.to_string()))?;
    (|| async {
        let mut conn = store.conn().await?;
        conn.transaction::<_, ResolveError, _>(async |conn| {
            let id = confirm.item_id;
            let item = review::lock_item(conn, id)
                .await?
                .ok_or(ResolveError::NotFound(id))?;
            let waiting = link_requests::lock_pending(conn, id, store.currencies()).await?;
            let Some(waiting) = waiting.filter(|_| item.status == "open") else {
                if item.status != "open" {
                    let past = review::resolution_of(conn, id).await?;
                    return Err(ResolveError::AlreadyResolved {
                        id,
                        action: past.action,
                        by: past.resolved_by,
                        at: rfc3339::format(&past.at),
                    });
                }
                return Err(ResolveError::NothingToConfirm(id));
            };
            if same_person(&waiting.requested_by, confirmer) {
                return Err(ResolveError::OwnRequest(id));
            }
            let note = format!(
                "{} (confirmed by {confirmer}, four-eyes request #{})",
                waiting.note, waiting.id
            );
            let request = ResolveRequest {
                order_ref: Some(waiting.order_ref.clone()),
                group: waiting.group,
                policy: confirm.policy,
                origin: match waiting.source.as_str() {
                    "console" => Origin::Console,
                    _ => Origin::cli(None, None),
                },
                ..ResolveRequest::new(id, ReviewAction::LinkOrder, &waiting.requested_by, &note)
            };
            let actor = confirm.origin.actor(confirmer);
            resolve_in(
                conn,
                &request,
                &waiting.requested_by,
                &note,
                store.currencies(),
                Some(Confirming {
                    request: &waiting,
                    by: &actor,
                }),
            )
            .await
        })
        .await
    })
    .retry(RetryBounds::default().backoff())
    .when(|err: &ResolveError| matches!(err, ResolveError::Store(e) if e.is_transient()))
    .await
}

/// Whether two names typed by people name the same person: equal once
/// trimmed, ignoring case.
pub fn same_person(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// Sums amounts of one currency (an amount in another currency is left
/// out of the total: never summed across currencies).
pub fn add(total: Option<Money>, more: Option<Money>) -> Option<Money> {
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
    match item.notification_id {
        Some(notification_id) => {
            Ok(review::notification_amount(conn, notification_id, currencies).await?)
        }
        None => Ok(None),
    }
}

/// What a write-off of an item about this payment writes off: the refunds
/// above the payment (over-refunded), or what the payment still holds
/// (paid, not refunded or charged back); nothing otherwise.
pub fn write_off_amount(balance: &PaymentBalance) -> Option<Money> {
    let PaymentBalance {
        currency,
        paid,
        refunded,
        reversed,
    } = *balance;
    let minor = if paid > 0 && refunded > paid {
        refunded - paid
    } else if paid > 0 && !reversed {
        paid - refunded
    } else {
        0
    };
    (minor > 0).then(|| Money::from_minor(minor, currency))
}

/// The money an item is about, for a write-off: for an item about a
/// payment of a known order, [`write_off_amount`]; otherwise its
/// notification's amount (an orphan's payment).
async fn at_stake(
    conn: &mut AsyncPgConnection,
    item: &LockedItem,
    currencies: &Currencies,
) -> Result<Option<Money>, ResolveError> {
    if let (Some(order_ref), Some(refno)) = (&item.order_ref, &item.processor_ref)
        && let Some(balance) = review::payment_balance(conn, order_ref, refno, currencies).await?
    {
        return Ok(write_off_amount(&balance));
    }
    notification_amount(conn, item, currencies).await
}

/// What a write-off of an item writes off, signed as the write-off
/// schedule shows it (positive: booked money the processor will never pay
/// out; negative: money it paid that nothing booked), in the currency of
/// the figure it comes from:
///
/// - a settlement line's item (`settlement_unknown`,
///   `settlement_amount_differs`): [`line_write_off`];
/// - `payout_total_differs`: [`payout_write_off`];
/// - `orphan_payment`: the orphan's payment, an excess (the processor pays
///   it out, nothing in the books holds it);
/// - an item about a payment (`unsettled_payment`, `over_refund`):
///   [`write_off_amount`], a loss.
///
/// (`amount_mismatch` is written off with its booking, [`book_capture`].)
pub async fn written_off(
    conn: &mut AsyncPgConnection,
    item: &LockedItem,
    currencies: &Currencies,
) -> Result<Option<Money>, ResolveError> {
    match item.kind {
        ReviewKind::SettlementUnknown | ReviewKind::SettlementAmountDiffers => {
            if let Some(line) = review::line_at_stake(conn, item.id, currencies).await? {
                return Ok(line_write_off(&line));
            }
        }
        ReviewKind::PayoutTotalDiffers => {
            if let Some((transferred, lines_net)) =
                review::payout_at_stake(conn, item.id, currencies).await?
            {
                return Ok(payout_write_off(transferred, lines_net));
            }
        }
        ReviewKind::OrphanPayment => {
            return Ok(notification_amount(conn, item, currencies)
                .await?
                .map(|m| Money::from_minor(m.minor_units().saturating_neg(), m.currency())));
        }
        _ => {}
    }
    at_stake(conn, item, currencies).await
}

/// The ledger row of a person's booking on an order: the facts `after`,
/// applied, with `reason`.
pub fn booking_decision(before: &OrderFacts, after: OrderFacts, reason: String) -> Decision {
    Decision {
        old_state: before.state(),
        new_state: after.state(),
        facts: after,
        effect: Effect::Applied,
        reason,
        review_items: Vec::new(),
        resolutions: Vec::new(),
        outcome: Outcome::Applied,
    }
}

/// The capture (or refund) a stored notification describes, as the
/// booking functions read it; and whether its status is a payment's, a
/// refund's.
fn capture_of(event: &PaymentEvent) -> (Capture<'_>, bool) {
    let category = match &event.status {
        StatusField::Known(status) => Some(status.category()),
        StatusField::Unknown(_) => None,
    };
    (
        Capture {
            processor_ref: &event.processor_ref,
            is_payment: category == Some(StatusCategory::Payment),
            amount: event.amount,
            money: &event.money,
        },
        category == Some(StatusCategory::Refund),
    )
}

/// What a refund outside the processor does for one item: the facts
/// before and after, and the amount refunded; `None` for an item whose
/// payment has nothing left to refund.
pub type RefundStep = Option<(OrderFacts, OrderFacts, Money)>;

/// Decides, before anything is written, which item of `items` refunds
/// what of an order with `facts` ([`refund_outside`], one after the other,
/// each on the facts the previous left): one step per item, in order.
/// Refused with the first item's reason when no item refunds anything.
pub fn plan_refunds(
    facts: OrderFacts,
    items: &[LockedItem],
) -> Result<Vec<RefundStep>, ResolveError> {
    let mut facts = facts;
    let mut steps = Vec::new();
    let mut first_refusal = None;
    for item in items {
        match refund_outside(&facts, item.processor_ref.as_deref()) {
            Ok((after, amount)) => {
                steps.push(Some((facts.clone(), after.clone(), amount)));
                facts = after;
            }
            Err(source) => {
                first_refusal.get_or_insert(ResolveError::Refund {
                    id: item.id,
                    source,
                });
                steps.push(None);
            }
        }
    }
    if steps.iter().all(Option::is_none)
        && let Some(refusal) = first_refusal
    {
        return Err(refusal);
    }
    Ok(steps)
}

/// The decision a refund outside the processor stands for: the facts
/// `after` the refund of `amount`, applied, with the reason the ledger
/// row shows (the payments it refunded, who recorded it, which item).
pub fn refund_decision(
    before: &OrderFacts,
    after: OrderFacts,
    amount: Money,
    by: &str,
    item_id: i64,
) -> Decision {
    let refnos: Vec<String> = after
        .payments
        .iter()
        .filter(|(refno, p)| before.payments.get(*refno) != Some(*p))
        .map(|(refno, _)| refno.clone())
        .collect();
    Decision {
        old_state: before.state(),
        new_state: after.state(),
        facts: after,
        effect: Effect::Applied,
        reason: format!(
            "refund of {amount} made outside the processor under processor reference {}, \
             recorded by {by} (review item #{item_id})",
            refnos.join(", "),
        ),
        review_items: Vec::new(),
        resolutions: Vec::new(),
        outcome: Outcome::Applied,
    }
}

/// One resolution being carried out.
struct Run<'a> {
    request: &'a ResolveRequest,
    by: &'a str,
    note: &'a str,
    /// The store's currency table, to read stored amounts with.
    currencies: &'a Currencies,
    /// The four-eyes request a `link_order` carries out, when confirmed.
    confirming: Option<&'a LinkRequest>,
    group_of: Option<i64>,
    outcome: ResolveOutcome,
}

impl Run<'_> {
    fn set_amount(&mut self, amount: Option<Money>) {
        self.outcome.amount = amount.map(|m| m.format_amount());
        self.outcome.currency = amount.map(|m| m.currency().as_str().to_owned());
    }

    /// The order the first of `items` is about, locked, with its facts:
    /// its reference, id and facts.
    async fn lock_items_order(
        &self,
        conn: &mut AsyncPgConnection,
        items: &[LockedItem],
    ) -> Result<(String, i64, OrderFacts), ResolveError> {
        let order_ref = items[0]
            .order_ref
            .clone()
            .ok_or(ResolveError::NoOrder(items[0].id))?;
        let (order_id, facts) = lock_order_facts(conn, &order_ref, self.currencies)
            .await?
            .ok_or_else(|| ResolveError::UnknownOrder(order_ref.clone()))?;
        Ok((order_ref, order_id, facts))
    }

    /// Writes what a person's action decided on order `order_id`: its new
    /// facts, the ledger row naming resolution `resolution`, and the money
    /// that moved (`moved`), in the caller's transaction.
    #[allow(clippy::too_many_arguments)]
    async fn book(
        &mut self,
        conn: &mut AsyncPgConnection,
        order_id: i64,
        resolution: i64,
        action: ReviewAction,
        before: &OrderFacts,
        decision: &Decision,
        amount: Money,
        moved: &[crate::domain::journal::Movement],
    ) -> Result<(), ResolveError> {
        write_facts(conn, order_id, before, decision).await?;
        review::record_resolution_event(conn, order_id, resolution, action, decision, amount)
            .await?;
        crate::store::journal::record_for_resolution(conn, order_id, resolution, moved).await?;
        self.outcome.order_state = Some(decision.new_state);
        Ok(())
    }

    /// Writes the item's resolution row and marks it resolved; returns the
    /// row's id.
    async fn resolve(
        &mut self,
        conn: &mut AsyncPgConnection,
        item: &LockedItem,
        amount: Option<Money>,
    ) -> Result<i64, ResolveError> {
        self.resolve_writing_off(conn, item, amount, None).await
    }

    /// [`Run::resolve`], with what the resolution writes off (signed).
    async fn resolve_writing_off(
        &mut self,
        conn: &mut AsyncPgConnection,
        item: &LockedItem,
        amount: Option<Money>,
        written_off: Option<Money>,
    ) -> Result<i64, ResolveError> {
        let order_ref = match self.request.action {
            ReviewAction::LinkOrder => self.outcome.order_ref.clone(),
            _ => item.order_ref.clone(),
        };
        let resolution = review::record_resolution(
            conn,
            &NewResolution {
                item,
                action: self.request.action,
                resolved_by: self.by,
                note: self.note,
                order_ref,
                amount,
                written_off,
                group_of: self.group_of,
            },
        )
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
    /// own (`store::apply::apply_repeat`).
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
        let Some((_, facts)) = lock_order_facts(conn, &target, self.currencies).await? else {
            return Err(ResolveError::UnknownOrder(target));
        };
        let waiting = review::lock_waiting_for_order(conn, &named).await?;
        if waiting.is_empty() {
            return Err(ResolveError::NothingToLink(named));
        }
        // The orphan's money must fit the order: its currency, and no more
        // than the order still expects.
        let mut notices = Vec::with_capacity(waiting.len());
        for notification_id in &waiting {
            let event = stored_event(conn, *notification_id, self.currencies).await?;
            notices.push(WaitingNotice {
                category: match &event.status {
                    StatusField::Known(status) => Some(status.category()),
                    StatusField::Unknown(_) => None,
                },
                processor_ref: event.processor_ref,
                amount: event.amount,
            });
        }
        let id = self.request.item_id;
        let amount = check_link(&facts, &notices).map_err(|source| ResolveError::Link {
            id,
            order_ref: target.clone(),
            source,
        })?;
        self.outcome.order_ref = Some(target.clone());
        self.set_amount(Some(amount));
        match self.confirming {
            Some(asked) if asked.amount != amount => {
                return Err(ResolveError::LinkChanged {
                    id,
                    asked: asked.amount,
                    now: amount,
                });
            }
            Some(_) => {}
            None if self.request.four_eyes.needs_second_resolver(amount) => {
                // Above four-eyes-amount: asked for, not done.
                let request = link_requests::insert(
                    conn,
                    &NewLinkRequest {
                        review_item_id: id,
                        order_ref: &target,
                        amount,
                        requested_by: self.by,
                        source: self.request.origin.source(),
                        note: self.note,
                        group: self.request.group,
                    },
                )
                .await?;
                self.outcome.pending_request = Some(request);
                self.outcome.items.truncate(1);
                return Ok(());
            }
            None => {}
        }
        for item in items {
            self.resolve(conn, item, None).await?;
        }
        let confirmed = self
            .confirming
            .map(|asked| format!(" (four-eyes request #{})", asked.id))
            .unwrap_or_default();
        let ledger_note = format!(
            "linked to order {target} by {}, review item #{}{confirmed}",
            self.by, self.request.item_id
        );
        for notification_id in waiting {
            let report = apply_to_order(
                conn,
                notification_id,
                &target,
                &self.request.policy,
                self.currencies,
                &ledger_note,
            )
            .await?;
            self.applied(notification_id, &report);
        }
        Ok(())
    }

    /// `amount_mismatch`: each item's payment booked as the processor
    /// captured it ([`book_capture`], one after the other on the facts the
    /// previous left, decided before anything is written), its difference
    /// accepted, written off or left to collect (a new item on the order),
    /// the order leaving `mismatch` when no other disagreement stays open.
    /// A ledger row per item that changed the facts, with the payment's
    /// money movements.
    async fn book_capture(
        &mut self,
        conn: &mut AsyncPgConnection,
        items: &[LockedItem],
        difference: Difference,
    ) -> Result<(), ResolveError> {
        let (order_ref, order_id, facts) = self.lock_items_order(conn, items).await?;
        let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
        let others = review::other_disagreements_open(conn, &order_ref, &ids).await?;
        let mut steps = Vec::new();
        let mut facts = facts;
        for item in items {
            let event = match item.notification_id {
                Some(id) => Some(stored_event(conn, id, self.currencies).await?),
                None => None,
            };
            let capture = event.as_ref().map(|e| capture_of(e).0);
            let booking = match book_capture(
                &facts,
                item.processor_ref.as_deref(),
                capture,
                difference,
                others,
            ) {
                Ok(booking) => Some(booking),
                // Nothing was captured (an authorization of the wrong
                // amount): accepting it books nothing, as before.
                Err(BookError::NotACapture) if difference == Difference::Accepted => None,
                Err(source) => {
                    return Err(ResolveError::Book {
                        id: item.id,
                        source,
                    });
                }
            };
            steps.push((facts.clone(), booking.clone()));
            if let Some(booking) = booking {
                facts = booking.after;
            }
        }
        let mut total = None;
        for (item, (before, booking)) in items.iter().zip(steps) {
            let Some(booking) = booking else {
                self.resolve(conn, item, None).await?;
                continue;
            };
            let amount = match difference {
                Difference::Accepted => booking.captured,
                Difference::WrittenOff | Difference::ToCollect => booking.difference,
            };
            let resolution = self
                .resolve_writing_off(conn, item, Some(amount), booking.written_off)
                .await?;
            total = add(total, Some(amount));
            if let Some(follow_up) = &booking.follow_up {
                review::open_follow_up(conn, follow_up, &order_ref).await?;
            }
            if booking.after == before {
                continue;
            }
            let what = match difference {
                Difference::Accepted => "nothing written off".to_owned(),
                Difference::WrittenOff => format!("{} written off", booking.difference),
                Difference::ToCollect => format!("{} left to collect", booking.difference),
            };
            let reason = format!(
                "payment of {} under processor reference {} booked as captured ({}), \
                 by {} (review item #{})",
                booking.captured,
                item.processor_ref.as_deref().unwrap_or("-"),
                what,
                self.by,
                item.id
            );
            let decision = booking_decision(&before, booking.after, reason);
            let moved = movements(&before, &decision.facts);
            let action = self.request.action;
            self.book(
                conn,
                order_id,
                resolution,
                action,
                &before,
                &decision,
                booking.captured,
                &moved,
            )
            .await?;
        }
        self.set_amount(total);
        Ok(())
    }

    /// `currency_mismatch` about a refund in another currency: booked in
    /// its own currency ([`book_foreign_refund`]), a ledger row and a
    /// refund movement in that currency; the order keeps its state, out of
    /// `mismatch` when no other disagreement stays open.
    async fn book_refund(
        &mut self,
        conn: &mut AsyncPgConnection,
        items: &[LockedItem],
    ) -> Result<(), ResolveError> {
        let (order_ref, order_id, mut facts) = self.lock_items_order(conn, items).await?;
        let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
        let others = review::other_disagreements_open(conn, &order_ref, &ids).await?;
        let mut steps = Vec::new();
        for item in items {
            let notification_id = item
                .notification_id
                .ok_or(ResolveError::NoNotification(item.id))?;
            let event = stored_event(conn, notification_id, self.currencies).await?;
            let (refund, is_refund) = capture_of(&event);
            let (after, moved) =
                book_foreign_refund(&facts, refund, is_refund, others).map_err(|source| {
                    ResolveError::Book {
                        id: item.id,
                        source,
                    }
                })?;
            steps.push((facts.clone(), after.clone(), moved));
            facts = after;
        }
        let mut total = None;
        for (item, (before, after, moved)) in items.iter().zip(steps) {
            let resolution = self.resolve(conn, item, Some(moved.amount)).await?;
            total = add(total, Some(moved.amount));
            let reason = format!(
                "refund of {} under processor reference {} booked in its own currency, by {} \
                 (review item #{})",
                moved.amount, moved.processor_ref, self.by, item.id
            );
            let decision = booking_decision(&before, after, reason);
            let amount = moved.amount;
            self.book(
                conn,
                order_id,
                resolution,
                ReviewAction::BookRefund,
                &before,
                &decision,
                amount,
                &[moved],
            )
            .await?;
        }
        self.set_amount(total);
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
        let (_, order_id, facts) = self.lock_items_order(conn, items).await?;
        // Decided before anything is written: which item refunds what.
        let steps = plan_refunds(facts, items)?;
        let mut total = None;
        for (item, step) in items.iter().zip(steps) {
            let amount = step.as_ref().map(|(_, _, amount)| *amount);
            let resolution = self.resolve(conn, item, amount).await?;
            let Some((before, after, amount)) = step else {
                continue;
            };
            total = add(total, Some(amount));
            let decision = refund_decision(&before, after, amount, self.by, item.id);
            let moved = movements(&before, &decision.facts);
            self.book(
                conn,
                order_id,
                resolution,
                ReviewAction::MarkRefundedOutside,
                &before,
                &decision,
                amount,
                &moved,
            )
            .await?;
        }
        self.set_amount(total);
        Ok(())
    }

    /// `settlement_reinstatement`: the processor credited a chargeback
    /// back; each item's payment is reinstated as a `WON` notice would
    /// (a ledger row with its money movements: the `chargeback_reversal`
    /// and the VAT and commission charged again). Items of one payment
    /// book it once: the first one reinstates, the others only resolve.
    async fn reinstate(
        &mut self,
        conn: &mut AsyncPgConnection,
        items: &[LockedItem],
    ) -> Result<(), ResolveError> {
        let (order_ref, order_id, mut facts) = self.lock_items_order(conn, items).await?;
        let mut total = None;
        let mut booked_any = false;
        let mut first_refusal = None;
        for item in items {
            let refno = item.processor_ref.clone().unwrap_or_default();
            let step = match reinstate(&facts, &refno) {
                Ok(step) => Some(step),
                Err(source) => {
                    first_refusal.get_or_insert(ResolveError::Reinstate {
                        id: item.id,
                        source,
                    });
                    None
                }
            };
            let amount = step.as_ref().map(|(_, amount)| *amount);
            let resolution = self.resolve(conn, item, amount).await?;
            let Some((after, amount)) = step else {
                continue;
            };
            booked_any = true;
            total = add(total, Some(amount));
            let decision = Decision {
                old_state: facts.state(),
                new_state: after.state(),
                facts: after,
                effect: Effect::Applied,
                reason: format!(
                    "chargeback of processor reference {refno} reinstated ({amount}) as the \
                     settlement credited it, booked by {} (review item #{})",
                    self.by, item.id
                ),
                review_items: Vec::new(),
                resolutions: Vec::new(),
                outcome: Outcome::Applied,
            };
            let moved = movements(&facts, &decision.facts);
            self.book(
                conn,
                order_id,
                resolution,
                ReviewAction::BookReinstatement,
                &facts,
                &decision,
                amount,
                &moved,
            )
            .await?;
            // The chargeback no longer stands: its item is closed, as a
            // WON notice would close it.
            crate::store::apply::close_items(
                conn,
                &order_ref,
                &crate::domain::AutoResolution {
                    kind: crate::domain::ReviewKind::ReversedAfterPayment,
                    processor_ref: Some(refno.clone()),
                    count: 1,
                    note: format!(
                        "the chargeback was reinstated by {} (review item #{})",
                        self.by, item.id
                    ),
                },
            )
            .await?;
            self.outcome.order_state = Some(decision.new_state);
            facts = decision.facts;
        }
        if !booked_any && let Some(refusal) = first_refusal {
            return Err(refusal);
        }
        self.set_amount(total);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::inconsistent_digit_grouping)]
    use super::*;
    use crate::domain::review::RefundOutsideError;
    use crate::domain::{Currency, PaymentFacts, ReviewKind};

    fn eur(minor: i64) -> Money {
        Money::from_minor(minor, Currency::iso("EUR").expect("EUR"))
    }

    fn usd(minor: i64) -> Money {
        Money::from_minor(minor, Currency::iso("USD").expect("USD"))
    }

    fn request(action: ReviewAction, by: &str, note: &str) -> ResolveRequest {
        ResolveRequest::new(7, action, by, note)
    }

    #[test]
    fn typed_text_is_trimmed_and_must_say_who_and_why() {
        let asked = request(ReviewAction::Dismiss, "  finance-anna ", " checked \n");
        assert_eq!(checked_text(&asked).unwrap(), ("finance-anna", "checked"));
        let blank = request(ReviewAction::Dismiss, "  ", "checked");
        assert!(matches!(
            checked_text(&blank),
            Err(ResolveError::Blank {
                what: "the resolver's name"
            })
        ));
        let blank = request(ReviewAction::Dismiss, "finance-anna", "");
        assert!(matches!(
            checked_text(&blank),
            Err(ResolveError::Blank {
                what: "the resolution note"
            })
        ));
    }

    #[test]
    fn a_card_number_in_typed_text_is_refused_naming_the_field_not_the_number() {
        let asked = request(
            ReviewAction::Dismiss,
            "finance-anna",
            "card 4111 1111 1111 1111",
        );
        let err = checked_text(&asked).unwrap_err();
        assert!(matches!(err, ResolveError::PersonalData(_)), "{err:?}");
        assert!(err.is_bad_text());
        assert!(err.to_string().contains("resolution note"), "{err}");
        assert!(!err.to_string().contains("4111"), "{err}");
        let mut linked = request(ReviewAction::LinkOrder, "finance-anna", "x");
        linked.order_ref = Some("4111111111111111".to_owned());
        let err = checked_text(&linked).unwrap_err();
        assert!(err.to_string().contains("order reference"), "{err}");
    }

    #[test]
    fn an_order_reference_is_taken_by_link_order_only() {
        let mut asked = request(ReviewAction::Dismiss, "finance-anna", "x");
        asked.order_ref = Some("SHOP-B".to_owned());
        assert!(matches!(
            checked_text(&asked),
            Err(ResolveError::OrderNotTaken(ReviewAction::Dismiss))
        ));
        asked.action = ReviewAction::LinkOrder;
        assert!(checked_text(&asked).is_ok());
    }

    #[test]
    fn amounts_add_up_within_one_currency_only() {
        assert_eq!(add(None, None), None);
        assert_eq!(add(None, Some(eur(5_00))), Some(eur(5_00)));
        assert_eq!(add(Some(eur(5_00)), None), Some(eur(5_00)));
        assert_eq!(add(Some(eur(5_00)), Some(eur(2_50))), Some(eur(7_50)));
        assert_eq!(add(Some(eur(5_00)), Some(usd(2_50))), Some(eur(5_00)));
        assert_eq!(
            add(Some(eur(i64::MAX)), Some(eur(1))),
            Some(eur(i64::MAX)),
            "saturates"
        );
    }

    fn balance(paid: i64, refunded: i64, reversed: bool) -> PaymentBalance {
        PaymentBalance {
            currency: Currency::iso("EUR").expect("EUR"),
            paid,
            refunded,
            reversed,
        }
    }

    #[test]
    fn a_write_off_is_what_a_payment_still_holds_or_was_refunded_above_it() {
        // Paid, not refunded: what it holds.
        assert_eq!(
            write_off_amount(&balance(25_00, 0, false)),
            Some(eur(25_00))
        );
        assert_eq!(
            write_off_amount(&balance(25_00, 5_00, false)),
            Some(eur(20_00))
        );
        // Refunded above the payment: the excess, charged back or not.
        assert_eq!(
            write_off_amount(&balance(25_00, 30_00, false)),
            Some(eur(5_00))
        );
        assert_eq!(
            write_off_amount(&balance(25_00, 30_00, true)),
            Some(eur(5_00))
        );
        // Nothing at stake: refunded in full, charged back, never paid.
        assert_eq!(write_off_amount(&balance(25_00, 25_00, false)), None);
        assert_eq!(write_off_amount(&balance(25_00, 0, true)), None);
        assert_eq!(write_off_amount(&balance(0, 10_00, false)), None);
    }

    fn item(id: i64, processor_ref: Option<&str>) -> LockedItem {
        LockedItem {
            id,
            kind: ReviewKind::DuplicatePayment,
            status: "open".to_owned(),
            order_ref: Some("SHOP-C".to_owned()),
            processor_ref: processor_ref.map(str::to_owned),
            notification_id: None,
        }
    }

    /// An order of 25.00 EUR paid twice, under A and B.
    fn paid_twice() -> OrderFacts {
        let mut facts = OrderFacts::new(eur(25_00));
        facts.processor_ref = Some("A".to_owned());
        for refno in ["A", "B"] {
            facts.payments.insert(
                refno.to_owned(),
                PaymentFacts {
                    paid: 25_00,
                    ..PaymentFacts::default()
                },
            );
        }
        facts
    }

    #[test]
    fn refunds_are_planned_one_after_the_other_before_anything_is_written() {
        let facts = paid_twice();
        let steps = plan_refunds(facts.clone(), &[item(1, Some("B")), item(2, Some("A"))])
            .expect("planned");
        assert_eq!(steps.len(), 2);
        let (before, after, amount) = steps[0].clone().expect("B refunds");
        assert_eq!(before, facts);
        assert_eq!(amount, eur(25_00));
        assert_eq!(after.payments["B"].refunded, 25_00);
        // The second starts where the first ended.
        let (second_before, second_after, amount) = steps[1].clone().expect("A refunds");
        assert_eq!(second_before, after);
        assert_eq!(amount, eur(25_00));
        assert_eq!(second_after.state(), OrderState::Refunded);
    }

    #[test]
    fn an_item_with_nothing_to_refund_is_resolved_without_a_refund_unless_all_are() {
        let facts = paid_twice();
        let steps = plan_refunds(facts.clone(), &[item(1, Some("B")), item(2, Some("B"))])
            .expect("the first refunds");
        assert!(steps[0].is_some());
        assert!(steps[1].is_none(), "B holds nothing any more");
        let err = plan_refunds(facts, &[item(3, Some("C")), item(4, Some("D"))])
            .expect_err("nothing refunds");
        assert!(
            matches!(
                &err,
                ResolveError::Refund {
                    id: 3,
                    source: RefundOutsideError::NoSuchPayment(refno)
                } if refno == "C"
            ),
            "the first refusal: {err:?}"
        );
    }

    #[test]
    fn a_refund_outside_is_an_applied_decision_that_says_who_and_which_payment() {
        let before = paid_twice();
        let (after, amount) = refund_outside(&before, Some("B")).expect("refund");
        let decision = refund_decision(&before, after.clone(), amount, "finance-anna", 12);
        assert_eq!(decision.old_state, before.state());
        assert_eq!(decision.new_state, OrderState::Paid);
        assert_eq!(decision.facts, after);
        assert_eq!(decision.effect, Effect::Applied);
        assert_eq!(decision.outcome, Outcome::Applied);
        assert!(decision.review_items.is_empty() && decision.resolutions.is_empty());
        assert_eq!(
            decision.reason,
            "refund of 25.00 EUR made outside the processor under processor reference B, \
             recorded by finance-anna (review item #12)"
        );
    }
}
