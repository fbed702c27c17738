//! The closes of the books (`books_closes`): append-only, each with who
//! did it and, for a reopen, why.
//!
//! A close only records where the open books begin; what it means for the
//! money is applied by the database as movements and settlement lines are
//! written (the `money_movements_dated` and
//! `settlement_lines_books_open_from` triggers, see
//! [`crate::domain::event_time`]). Recording one takes the tables' write
//! locks, so no movement is written against the old close once the new
//! one is visible, and none is left half-dated across it.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;

use super::action_log::{ActionEntry, Actor, record_action};
use super::console::ConsoleAction;
use super::reports::rfc3339;
use super::schema::books_closes;
use super::{Store, StoreError};
use crate::domain::event_time::CloseError;

/// Whether a row closes the books or reopens them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BooksAction {
    Close,
    Reopen,
}

impl BooksAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Close => "close",
            Self::Reopen => "reopen",
        }
    }
}

/// A close or a reopen, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BooksClose {
    pub id: i64,
    pub action: BooksAction,
    /// The last day closed afterwards (in `time_zone`); `None`: nothing is.
    pub through: Option<NaiveDate>,
    /// Where the open books begin afterwards (`None`: at the beginning).
    #[serde(serialize_with = "rfc3339::option")]
    pub open_from: Option<DateTime<Utc>>,
    pub time_zone: String,
    pub done_by: String,
    pub note: String,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
}

/// A close or a reopen to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BooksChange {
    pub action: BooksAction,
    pub through: Option<NaiveDate>,
    pub open_from: Option<DateTime<Utc>>,
    pub time_zone: String,
    /// Who: `done_by` is their name; the action log records them whole.
    pub actor: Actor,
    pub note: String,
}

type CloseRow = (
    i64,
    String,
    Option<NaiveDate>,
    Option<DateTime<Utc>>,
    String,
    String,
    String,
    DateTime<Utc>,
);

fn close_of(row: CloseRow) -> BooksClose {
    let (id, action, through, open_from, time_zone, done_by, note, created_at) = row;
    BooksClose {
        id,
        action: if action == "close" {
            BooksAction::Close
        } else {
            BooksAction::Reopen
        },
        through,
        open_from,
        time_zone,
        done_by,
        note,
        created_at,
    }
}

const COLUMNS: (
    books_closes::id,
    books_closes::action,
    books_closes::through,
    books_closes::open_from,
    books_closes::time_zone,
    books_closes::done_by,
    books_closes::note,
    books_closes::created_at,
) = (
    books_closes::id,
    books_closes::action,
    books_closes::through,
    books_closes::open_from,
    books_closes::time_zone,
    books_closes::done_by,
    books_closes::note,
    books_closes::created_at,
);

impl Store {
    /// Every close and reopen, oldest first: the audit trail.
    pub async fn books_history(&self) -> Result<Vec<BooksClose>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<CloseRow> = books_closes::table
            .order(books_closes::id.asc())
            .select(COLUMNS)
            .load(&mut conn)
            .await?;
        Ok(rows.into_iter().map(close_of).collect())
    }

    /// Records `change` if `check` accepts it against the books' current
    /// close (the last day closed), read under the lock that keeps every
    /// other close, and every write of money, waiting until this one
    /// commits, with its row in the action log (`books_close`,
    /// `books_reopen`) in the same transaction. `Ok(Err(_))`: refused,
    /// nothing recorded.
    pub async fn change_books(
        &self,
        change: BooksChange,
        check: impl FnOnce(Option<NaiveDate>) -> Result<(), CloseError> + Send,
    ) -> Result<Result<BooksClose, CloseError>, StoreError> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, StoreError, _>(async |conn| {
            // Closes one at a time; then no movement or settlement line is
            // being written (those that are finish first, dated by the old
            // close; those that come after wait and see the new one). The
            // function takes `LOCK TABLE books_closes IN EXCLUSIVE MODE` and
            // `LOCK TABLE money_movements, settlement_lines,
            // settlement_payouts IN SHARE ROW EXCLUSIVE MODE` with the
            // owner's rights: the daemon's role may not update those tables,
            // which LOCK TABLE in these modes asks for.
            diesel::sql_query("SELECT books_lock_for_close()")
                .execute(conn)
                .await?;
            let current: Option<Option<NaiveDate>> = books_closes::table
                .order(books_closes::id.desc())
                .select(books_closes::through)
                .first(conn)
                .await
                .optional()?;
            if let Err(refused) = check(current.flatten()) {
                return Ok(Err(refused));
            }
            let row: CloseRow = diesel::insert_into(books_closes::table)
                .values((
                    books_closes::action.eq(change.action.as_str()),
                    books_closes::through.eq(change.through),
                    books_closes::open_from.eq(change.open_from),
                    books_closes::time_zone.eq(&change.time_zone),
                    books_closes::done_by.eq(&change.actor.name),
                    books_closes::note.eq(&change.note),
                ))
                .returning(COLUMNS)
                .get_result(conn)
                .await?;
            let recorded = close_of(row);
            let subject = match recorded.through {
                Some(day) => format!("through {day} ({})", recorded.time_zone),
                None => "nothing closed".to_owned(),
            };
            let details = format!("books_closes #{}", recorded.id);
            record_action(
                conn,
                &ActionEntry {
                    actor: &change.actor,
                    action: match change.action {
                        BooksAction::Close => ConsoleAction::BooksClose,
                        BooksAction::Reopen => ConsoleAction::BooksReopen,
                    },
                    subject: Some(&subject),
                    details: Some(&details),
                    at: None,
                },
            )
            .await?;
            Ok(Ok(recorded))
        })
        .await
    }
}
