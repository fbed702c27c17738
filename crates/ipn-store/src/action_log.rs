//! The action log (`console_actions`): who did what, for the console and
//! the command line alike.
//!
//! Every money- or queue-moving action writes its row with
//! [`record_action`] on the connection of the transaction that does the
//! effect, so the row and the effect commit together or not at all: a
//! refused or failed action leaves no row, and no effect is without one.
//! The one exception is a requeue of parked messages, whose effect is on
//! the broker: its row commits before the message is published (see
//! `queue::parked`), so a message never moves without a row, and a row
//! whose move then failed says so only by the requeue's own report.
//!
//! The actor is named by who they are where they acted ([`Actor`]): the
//! console's logged-in user, or, on the command line, the name given with
//! `--by` together with the operating-system account and host the command
//! ran under, which the program reads and nobody types.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::console::ConsoleAction;
use super::{Store, StoreError};

/// Where an actor acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::Display)]
#[strum(serialize_all = "snake_case")]
pub enum ActorSource {
    /// The finance console: the logged-in user.
    Console,
    /// The command line: `--by`, with the OS account and host.
    Cli,
}

impl ActorSource {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Who did something, as the action log names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The console user, or the name given with `--by` (trimmed).
    pub name: String,
    pub source: ActorSource,
    /// The command line's operating-system account, when it could be read.
    pub os_user: Option<String>,
    /// The command line's host name, when it could be read.
    pub host: Option<String>,
}

impl Actor {
    /// A console user.
    pub fn console(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            source: ActorSource::Console,
            os_user: None,
            host: None,
        }
    }

    /// A person on the command line: `by` as given, with the machine's
    /// account and host (`None` when they could not be read).
    pub fn cli(by: &str, os_user: Option<String>, host: Option<String>) -> Self {
        Self {
            name: by.trim().to_owned(),
            source: ActorSource::Cli,
            os_user,
            host,
        }
    }
}

/// One row of the action log, to be written.
#[derive(Debug, Clone)]
pub struct ActionEntry<'a> {
    pub actor: &'a Actor,
    pub action: ConsoleAction,
    /// What it was done to: `#12`, a parked message's id, `2026-11-30`.
    pub subject: Option<&'a str>,
    /// References and counts only, never personal data.
    pub details: Option<&'a str>,
    /// When, by the caller's clock; `None`: the transaction's `now()`.
    pub at: Option<DateTime<Utc>>,
}

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Appends `entry` to the action log on `conn`: inside the caller's
/// transaction when it has one, so the row commits with the effect.
/// Returns the row's id.
pub async fn record_action(
    conn: &mut AsyncPgConnection,
    entry: &ActionEntry<'_>,
) -> Result<i64, StoreError> {
    let action: &'static str = entry.action.into();
    let machine = |value: &Option<String>| match entry.actor.source {
        ActorSource::Cli => value.as_deref().map(|v| clip(v, 255)),
        ActorSource::Console => None,
    };
    let row: Id = diesel::sql_query(
        "INSERT INTO console_actions (user_name, action, subject, details, at, source, os_user, host) \
         VALUES ($1, $2, $3, $4, coalesce($5, now()), $6, $7, $8) RETURNING id",
    )
    .bind::<Text, _>(&entry.actor.name)
    .bind::<Text, _>(action)
    .bind::<Nullable<Text>, _>(entry.subject)
    .bind::<Nullable<Text>, _>(entry.details)
    .bind::<Nullable<Timestamptz>, _>(entry.at)
    .bind::<Text, _>(entry.actor.source.as_str())
    .bind::<Nullable<Text>, _>(machine(&entry.actor.os_user))
    .bind::<Nullable<Text>, _>(machine(&entry.actor.host))
    .get_result(conn)
    .await?;
    Ok(row.id)
}

/// At most `max` characters of `text`, without control characters: an
/// account or host name is read from the machine, not checked by anyone.
fn clip(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

impl Store {
    /// Appends `entry` to the action log in a transaction of its own: for
    /// the actions whose effect is not in the database (a login, a
    /// requeue's row written before its broker move).
    pub async fn record_action(&self, entry: &ActionEntry<'_>) -> Result<i64, StoreError> {
        let mut conn = self.conn().await?;
        record_action(&mut conn, entry).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_name_is_clipped_and_loses_its_control_characters() {
        assert_eq!(clip("ops\u{1b}[2Jbox", 255), "ops[2Jbox");
        assert_eq!(clip(&"a".repeat(300), 255).len(), 255);
    }

    #[test]
    fn a_cli_actor_is_trimmed_and_a_console_actor_has_no_machine() {
        let cli = Actor::cli("  finance-anna ", Some("anna".into()), Some("ops-1".into()));
        assert_eq!(cli.name, "finance-anna");
        assert_eq!(cli.source.as_str(), "cli");
        let console = Actor::console("alice");
        assert_eq!(console.source.as_str(), "console");
        assert_eq!((console.os_user, console.host), (None, None));
    }
}
