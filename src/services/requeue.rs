//! Requeueing parked messages with their rows in the action log.
//!
//! The effect is on the broker, so it cannot share a transaction with its
//! row; the closest honest order is this one: for each selected message,
//! its `requeue_parked` row is committed first, then the message is
//! published back and only then removed from the parking queue
//! ([`parked::requeue`]). So no message ever moves without its row; a row
//! whose publish then failed names a move that was tried (the message
//! stays parked, and the requeue reports the error).

use chrono::{DateTime, Utc};

use crate::queue::Sealer;
use crate::queue::parked::{self, ParkedMessage, Selection};
use crate::queue::{AmqpSettings, QueueError};
use crate::store::action_log::{ActionEntry, Actor};
use crate::store::console::ConsoleAction;
use crate::store::{Store, StoreError};

/// Why a requeue stopped: the messages moved before stay moved.
#[derive(Debug, thiserror::Error)]
pub enum RequeueError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("the action log cannot be written, so nothing more was moved: {0}")]
    Store(#[from] StoreError),
}

/// A selection as the action log names it: `id=...`, `reason=...
/// since=...` or `all`.
pub fn selection_text(selection: &Selection) -> String {
    let time = |at: &DateTime<Utc>| crate::export::rfc3339::format(at);
    match selection {
        Selection::Id(id) => format!("id={id}"),
        Selection::Reason {
            reason,
            since: Some(since),
        } => format!("reason={reason} since={}", time(since)),
        Selection::Reason {
            reason,
            since: None,
        } => format!("reason={reason}"),
        Selection::All => "all".to_owned(),
    }
}

/// Moves the selected parked messages back as `actor`, one
/// `requeue_parked` row per message committed before it moves (stamped
/// `at`, or the database's `now()`). Returns the messages moved.
pub async fn requeue(
    store: &Store,
    amqp: &AmqpSettings,
    sealer: Option<&Sealer>,
    selection: &Selection,
    actor: &Actor,
    at: Option<DateTime<Utc>>,
) -> Result<Vec<ParkedMessage>, RequeueError> {
    let chosen = selection_text(selection);
    parked::requeue(amqp, sealer, selection, move |message: ParkedMessage| {
        let (store, actor) = (store.clone(), actor.clone());
        let details = crate::view::terminal_text(&format!(
            "reason {}, {} attempt(s); selected by {chosen}",
            message.reason, message.attempts
        ));
        Box::pin(async move {
            store
                .record_action(&ActionEntry {
                    actor: &actor,
                    action: ConsoleAction::RequeueParked,
                    subject: Some(&message.id),
                    details: Some(&details),
                    at,
                })
                .await?;
            Ok::<(), RequeueError>(())
        })
    })
    .await
}
