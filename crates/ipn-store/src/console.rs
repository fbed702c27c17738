//! The finance console's tables (users, sessions, login attempts, the
//! ledger of people's actions), and three listings the commands do not
//! have, named for what they return: orders matching a filter
//! ([`Store::orders_matching`]), notifications with the ledger rows they
//! made ([`Store::notifications_with_ledger`]) and the money moved per day
//! ([`Store::daily_money`]).
//!
//! Every time is given by the caller (the console's clock), never taken
//! from the database's `now()`: expiry and rate limits are then decided on
//! one clock, which tests can set.

use super::sql::Stored;
use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::action_log::{ActionEntry, Actor, record_action};
use super::{OrderView, ReportPeriod, Store, StoreError};
use crate::domain::{Currency, Effect, Money, OrderOrigin, OrderState, Outcome, Pseudonym};

/// What a console user may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::Display,
    serde::Serialize,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ConsoleRole {
    /// Reads every page and downloads every table.
    Viewer,
    /// A viewer who may also resolve review items and requeue parked
    /// messages.
    Resolver,
}

impl ConsoleRole {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A console user as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleUser {
    pub id: i64,
    pub name: String,
    pub role: ConsoleRole,
    /// The argon2id PHC string.
    pub password_hash: String,
    pub disabled: bool,
}

/// The hash stays out of logs.
impl std::fmt::Debug for ConsoleUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleUser")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// A session found by its token's digest, with its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub id: i64,
    pub user_name: String,
    pub role: ConsoleRole,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// Logged out, or ended when its user was disabled or it expired.
    pub ended: bool,
    pub user_disabled: bool,
}

/// An action people take, through the console or on the command line, as
/// the action log names it (see [`crate::action_log`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::Display)]
#[strum(serialize_all = "snake_case")]
pub enum ConsoleAction {
    Login,
    Logout,
    ResolveReview,
    RequeueParked,
    BooksClose,
    BooksReopen,
    SettlementImport,
    UserAdd,
    UserDisable,
    /// A `link_order` above `four-eyes-amount`, asked for: no money moved.
    RequestLinkOrder,
    /// A second resolver confirmed it: the money moved.
    ConfirmLinkOrder,
}

/// One row of the console's ledger.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct ConsoleActionRow {
    #[diesel(sql_type = Text)]
    pub user_name: String,
    #[diesel(sql_type = Text)]
    pub action: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub subject: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub details: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    pub at: DateTime<Utc>,
    /// `console` or `cli`.
    #[diesel(sql_type = Text)]
    pub source: String,
    /// The command line's OS account and host.
    #[diesel(sql_type = Nullable<Text>)]
    pub os_user: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub host: Option<String>,
}

#[derive(QueryableByName)]
struct UserRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    role: String,
    #[diesel(sql_type = Text)]
    password_hash: String,
    #[diesel(sql_type = Bool)]
    disabled: bool,
}

#[derive(QueryableByName)]
struct SessionRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    role: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    last_seen_at: DateTime<Utc>,
    #[diesel(sql_type = Bool)]
    ended: bool,
    #[diesel(sql_type = Bool)]
    disabled: bool,
}

/// The failed logins within a window that decide whether one more may be
/// checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoginAttemptCounts {
    /// Failures of the name typed, from anywhere.
    pub user_failures: i64,
    /// When the name last failed.
    pub last_user_failure: Option<DateTime<Utc>>,
    /// Failures from the caller's address, whatever the name.
    pub address_failures: i64,
}

#[derive(QueryableByName)]
struct FailureRow {
    #[diesel(sql_type = BigInt)]
    by_user: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_by_user: Option<DateTime<Utc>>,
    #[diesel(sql_type = BigInt)]
    by_address: i64,
}

#[derive(QueryableByName)]
struct LockTaken {
    #[diesel(sql_type = Bool)]
    taken: bool,
}

#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn role(text: &str) -> Result<ConsoleRole, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Invalid(format!("unknown console role `{text}`")))
}

impl Store {
    /// Adds a console user as `actor` did, with its `user_add` row in the
    /// action log in the same transaction. Returns false (and changes
    /// nothing, logs nothing) when the name is taken.
    pub async fn add_console_user_by(
        &self,
        actor: &Actor,
        name: &str,
        role: ConsoleRole,
        password_hash: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, StoreError, _>(async |conn| {
            let added = insert_user(conn, name, role, password_hash, at).await?;
            if added {
                let details = format!("role {role}");
                record_action(
                    conn,
                    &ActionEntry {
                        actor,
                        action: ConsoleAction::UserAdd,
                        subject: Some(name),
                        details: Some(&details),
                        at: Some(at),
                    },
                )
                .await?;
            }
            Ok(added)
        })
        .await
    }

    /// Disables a user and ends their sessions as `actor` did, with its
    /// `user_disable` row in the action log in the same transaction.
    /// Returns false (and logs nothing) when there is no such user.
    pub async fn disable_console_user_by(
        &self,
        actor: &Actor,
        name: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, StoreError, _>(async |conn| {
            let found = disable_user(conn, name, at).await?;
            if found {
                record_action(
                    conn,
                    &ActionEntry {
                        actor,
                        action: ConsoleAction::UserDisable,
                        subject: Some(name),
                        details: None,
                        at: Some(at),
                    },
                )
                .await?;
            }
            Ok(found)
        })
        .await
    }

    /// Adds a console user without an action-log row: for tests and tools
    /// that seed users (`console user add` goes through
    /// [`Store::add_console_user_by`]). Returns false (and changes
    /// nothing) when the name is taken.
    pub async fn add_console_user(
        &self,
        name: &str,
        role: ConsoleRole,
        password_hash: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        insert_user(&mut conn, name, role, password_hash, at).await
    }

    /// Disables a user and ends their sessions, without an action-log row
    /// (`console user disable` goes through
    /// [`Store::disable_console_user_by`]). Returns false when there is no
    /// such user.
    pub async fn disable_console_user(
        &self,
        name: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, StoreError, _>(async |conn| disable_user(conn, name, at).await)
            .await
    }

    /// A user by name.
    pub async fn console_user(&self, name: &str) -> Result<Option<ConsoleUser>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<UserRow> = diesel::sql_query(
            "SELECT id, name, role, password_hash, disabled_at IS NOT NULL AS disabled \
             FROM console_users WHERE name = $1",
        )
        .bind::<Text, _>(name)
        .get_result(&mut conn)
        .await
        .optional()?;
        row.map(|r| {
            Ok(ConsoleUser {
                id: r.id,
                role: role(&r.role)?,
                name: r.name,
                password_hash: r.password_hash,
                disabled: r.disabled,
            })
        })
        .transpose()
    }

    /// Counts a login attempt *before* its password is checked, together
    /// with the decision whether it may be checked: under a lock on the
    /// name (a transaction-level advisory lock), the failures at or after
    /// `since` for the name and from the address are counted, and when
    /// `decide` accepts the counts, the attempt is recorded as failed (it
    /// becomes a success only when the password matched:
    /// [`Store::login_attempt_succeeded`]). So parallel attempts for one
    /// name are decided one after another, each seeing those before it,
    /// never all at once. `Err(refusal)`: what `decide` refused with;
    /// nothing recorded.
    pub async fn claim_login_attempt<T: Send>(
        &self,
        username_digest: &str,
        address_digest: &str,
        since: DateTime<Utc>,
        at: DateTime<Utc>,
        decide: impl Fn(&LoginAttemptCounts) -> Result<(), T> + Send + Sync,
    ) -> Result<Result<i64, T>, StoreError> {
        let mut conn = self.conn().await?;
        let username = username_digest.to_owned();
        let address = address_digest.to_owned();
        conn.transaction::<_, StoreError, _>(async |conn| {
            diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))")
                .bind::<Text, _>(&username)
                .execute(conn)
                .await?;
            let counts = failed_counts(conn, &username, &address, since).await?;
            if let Err(refusal) = decide(&counts) {
                return Ok(Err(refusal));
            }
            let id: Counted = diesel::sql_query(
                "INSERT INTO console_login_attempts (username_sha256, address_sha256, succeeded, at) \
                 VALUES ($1, $2, false, $3) RETURNING id AS n",
            )
            .bind::<Text, _>(&username)
            .bind::<Text, _>(&address)
            .bind::<Timestamptz, _>(at)
            .get_result(conn)
            .await?;
            Ok(Ok(id.n))
        })
        .await
    }

    /// Deletes the login attempts made before `before` (their window has
    /// passed: they count for nothing any more). One pruner at a time
    /// (another console pruning at the same moment makes this one skip);
    /// returns how many rows went.
    pub async fn prune_login_attempts(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, StoreError, _>(async |conn| {
            let locked: LockTaken = diesel::sql_query(
                "SELECT pg_try_advisory_xact_lock(hashtextextended('console_login_attempts', 8)) \
                 AS taken",
            )
            .get_result(conn)
            .await?;
            if !locked.taken {
                return Ok(0);
            }
            let deleted = diesel::sql_query("DELETE FROM console_login_attempts WHERE at < $1")
                .bind::<Timestamptz, _>(before)
                .execute(conn)
                .await?;
            Ok(u64::try_from(deleted).unwrap_or(0))
        })
        .await
    }

    /// Marks a claimed attempt ([`Store::claim_login_attempt`]) as a
    /// success: the password matched.
    pub async fn login_attempt_succeeded(&self, attempt: i64) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        diesel::sql_query("UPDATE console_login_attempts SET succeeded = true WHERE id = $1")
            .bind::<BigInt, _>(attempt)
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    /// Failed logins at or after `since`: for this name (with the time of
    /// its latest), and from this address.
    pub async fn failed_logins_since(
        &self,
        username_digest: &str,
        address_digest: &str,
        since: DateTime<Utc>,
    ) -> Result<LoginAttemptCounts, StoreError> {
        let mut conn = self.conn().await?;
        failed_counts(&mut conn, username_digest, address_digest, since).await
    }

    /// Opens a session for `user_id` under the digest of its token.
    pub async fn create_console_session(
        &self,
        token_sha256: &str,
        user_id: i64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        diesel::sql_query(
            "INSERT INTO console_sessions (token_sha256, user_id, created_at, last_seen_at) \
             VALUES ($1, $2, $3, $3)",
        )
        .bind::<Text, _>(token_sha256)
        .bind::<BigInt, _>(user_id)
        .bind::<Timestamptz, _>(at)
        .execute(&mut conn)
        .await?;
        Ok(())
    }

    /// The session whose token has this digest, with its user.
    pub async fn console_session(
        &self,
        token_sha256: &str,
    ) -> Result<Option<ConsoleSession>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<SessionRow> = diesel::sql_query(
            "SELECT s.id, u.name, u.role, s.created_at, s.last_seen_at, \
                    s.ended_at IS NOT NULL AS ended, u.disabled_at IS NOT NULL AS disabled \
             FROM console_sessions AS s JOIN console_users AS u ON u.id = s.user_id \
             WHERE s.token_sha256 = $1",
        )
        .bind::<Text, _>(token_sha256)
        .get_result(&mut conn)
        .await
        .optional()?;
        row.map(|r| {
            Ok(ConsoleSession {
                id: r.id,
                role: role(&r.role)?,
                user_name: r.name,
                created_at: r.created_at,
                last_seen_at: r.last_seen_at,
                ended: r.ended,
                user_disabled: r.disabled,
            })
        })
        .transpose()
    }

    /// Marks a session used at `at` (its idle expiry starts again).
    pub async fn touch_console_session(
        &self,
        id: i64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        diesel::sql_query(
            "UPDATE console_sessions SET last_seen_at = greatest(last_seen_at, $2) WHERE id = $1",
        )
        .bind::<BigInt, _>(id)
        .bind::<Timestamptz, _>(at)
        .execute(&mut conn)
        .await?;
        Ok(())
    }

    /// Ends a session (logout, expiry); ending it twice changes nothing.
    pub async fn end_console_session(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        diesel::sql_query(
            "UPDATE console_sessions SET ended_at = coalesce(ended_at, $2) WHERE id = $1",
        )
        .bind::<BigInt, _>(id)
        .bind::<Timestamptz, _>(at)
        .execute(&mut conn)
        .await?;
        Ok(())
    }

    /// Appends a row by console user `user_name` to the action log, in a
    /// transaction of its own: for the actions that move nothing (a login,
    /// a logout). Money- and queue-moving actions write theirs in their
    /// own transaction ([`crate::action_log::record_action`]).
    pub async fn record_console_action(
        &self,
        user_name: &str,
        action: ConsoleAction,
        subject: Option<&str>,
        details: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let actor = crate::action_log::Actor::console(user_name);
        self.record_action(&crate::action_log::ActionEntry {
            actor: &actor,
            action,
            subject,
            details,
            at: Some(at),
        })
        .await?;
        Ok(())
    }

    /// The console's ledger, newest first: at most `limit` rows after the
    /// first `offset`.
    pub async fn console_actions(
        &self,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<ConsoleActionRow>, StoreError> {
        let mut conn = self.conn().await?;
        Ok(diesel::sql_query(
            "SELECT user_name, action, subject, details, at, source, os_user, host \
             FROM console_actions ORDER BY id DESC LIMIT $1 OFFSET $2",
        )
        .bind::<BigInt, _>(limit.max(0))
        .bind::<BigInt, _>(offset.max(0))
        .load(&mut conn)
        .await?)
    }
}

/// Which orders to list: every criterion given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    pub status: Option<OrderState>,
    pub currency: Option<String>,
    /// Created at or after.
    pub from: Option<DateTime<Utc>>,
    /// Created before.
    pub to: Option<DateTime<Utc>>,
    /// An order reference or a processor reference (REFNO), exactly.
    pub reference: Option<String>,
    /// Orders named by notifications that carried this pseudonym.
    pub customer: Option<Pseudonym>,
}

#[derive(QueryableByName)]
struct OrderRow {
    #[diesel(sql_type = Text)]
    order_ref: String,
    #[diesel(sql_type = Text)]
    #[diesel(deserialize_as = Stored<OrderOrigin>)]
    origin: OrderOrigin,
    #[diesel(sql_type = Nullable<Text>)]
    merchant_ref: Option<String>,
    #[diesel(sql_type = Text)]
    #[diesel(deserialize_as = Stored<OrderState>)]
    status: OrderState,
    #[diesel(sql_type = BigInt)]
    expected_minor: i64,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    paid_minor: i64,
    #[diesel(sql_type = BigInt)]
    refunded_minor: i64,
    #[diesel(sql_type = BigInt)]
    charged_back_minor: i64,
    #[diesel(sql_type = Nullable<Text>)]
    processor_ref: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    version: i64,
}

/// One notification: its identity and authenticity record, and the
/// ledger rows it made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRecord {
    pub id: i64,
    pub received_at: DateTime<Utc>,
    /// REFNO.
    pub processor_ref: Option<String>,
    /// REFNOEXT.
    pub order_ref: Option<String>,
    /// ORDERSTATUS as received.
    pub order_status: Option<String>,
    /// `25.00 EUR`, when it carried an amount.
    pub amount: Option<String>,
    pub key_id: Option<String>,
    pub algorithm: Option<String>,
    /// SHA-256 of the body.
    pub body_sha256: String,
    /// SHA-256 of its signed values without the per-delivery fields.
    pub identity: Option<String>,
    /// The notification it repeats, when it is a repeat.
    pub repeat_of: Option<i64>,
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// The ledger rows it made: `applied paid -> partially_refunded`.
    pub ledger: Vec<LedgerEffect>,
}

/// A ledger row of a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEffect {
    pub order_ref: String,
    pub effect: Effect,
    pub old_status: OrderState,
    pub new_status: OrderState,
    pub reason: String,
}

/// Which notifications to list: every criterion given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationFilter {
    /// Received at or after.
    pub from: Option<DateTime<Utc>>,
    /// Received before.
    pub to: Option<DateTime<Utc>>,
    pub outcome: Option<Outcome>,
    /// ORDERSTATUS as received.
    pub order_status: Option<String>,
    pub order_ref: Option<String>,
    pub processor_ref: Option<String>,
    /// At most this many, newest first...
    pub limit: i64,
    /// ... after skipping this many (a page of the console's listing).
    pub offset: i64,
}

#[derive(QueryableByName)]
struct NotificationRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Timestamptz)]
    received_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Text>)]
    processor_ref: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    order_ref: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    order_status: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    amount_minor: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    currency: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    key_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    algorithm: Option<String>,
    #[diesel(sql_type = Text)]
    body_sha256: String,
    #[diesel(sql_type = Nullable<Text>)]
    identity: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    repeat_of: Option<i64>,
    #[diesel(sql_type = Text)]
    #[diesel(deserialize_as = Stored<Outcome>)]
    outcome: Outcome,
    #[diesel(sql_type = Nullable<Text>)]
    reason: Option<String>,
}

#[derive(QueryableByName)]
struct EffectRow {
    #[diesel(sql_type = BigInt)]
    notification_id: i64,
    #[diesel(sql_type = Text)]
    order_ref: String,
    #[diesel(sql_type = Text)]
    #[diesel(deserialize_as = Stored<Effect>)]
    effect: Effect,
    #[diesel(sql_type = Text)]
    #[diesel(deserialize_as = Stored<OrderState>)]
    old_status: OrderState,
    #[diesel(sql_type = Text)]
    #[diesel(deserialize_as = Stored<OrderState>)]
    new_status: OrderState,
    #[diesel(sql_type = Text)]
    reason: String,
}

/// The money one day moved in one currency, in minor units (the chart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyMoney {
    pub day: NaiveDate,
    pub currency: Currency,
    pub paid: i64,
    pub refunded: i64,
    /// Reversed and charged back, less chargebacks reinstated (negative
    /// on a day that reinstated more than it took back).
    pub taken_back: i64,
}

impl DailyMoney {
    /// The day's balance: paid less refunded, reversed and charged back
    /// (less reinstated: `taken_back` is after chargebacks won). Not the
    /// report's net revenue (no VAT taken off) nor its net (no commission
    /// or fees): a page that shows both names this one apart.
    pub fn balance(&self) -> i64 {
        self.paid - self.refunded - self.taken_back
    }
}

#[derive(QueryableByName)]
struct DailyRow {
    #[diesel(sql_type = diesel::sql_types::Date)]
    day: NaiveDate,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    paid: i64,
    #[diesel(sql_type = BigInt)]
    refunded: i64,
    #[diesel(sql_type = BigInt)]
    taken_back: i64,
}

fn money(minor: i64, currency: Currency) -> String {
    Money::from_minor(minor, currency).format_amount()
}

impl Store {
    /// Orders matching `filter`, oldest first: at most `limit` after the
    /// first `offset` (a page of the console's listing; `0, i64::MAX`:
    /// every one).
    pub async fn orders_matching(
        &self,
        filter: &OrderFilter,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<OrderView>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<OrderRow> = diesel::sql_query(
            "SELECT o.order_ref, o.origin, o.merchant_ref, o.status, o.expected_minor, \
                    o.currency, o.paid_minor, o.refunded_minor, o.charged_back_minor, \
                    o.processor_ref, o.created_at, o.updated_at, o.version \
             FROM orders AS o \
             WHERE ($1::text IS NULL OR o.status = $1) \
               AND ($2::text IS NULL OR o.currency = $2) \
               AND ($3::timestamptz IS NULL OR o.created_at >= $3) \
               AND ($4::timestamptz IS NULL OR o.created_at < $4) \
               AND ($5::text IS NULL OR o.order_ref = $5 OR o.processor_ref = $5 \
                    OR o.merchant_ref = $5 \
                    OR EXISTS (SELECT 1 FROM payments AS p \
                               WHERE p.order_id = o.id AND p.processor_ref = $5)) \
               AND ($6::text IS NULL OR o.order_ref IN ( \
                    SELECT n.order_ref FROM notifications AS n \
                    WHERE n.customer_pseudonym = $6 AND n.order_ref IS NOT NULL)) \
             ORDER BY o.created_at, o.id LIMIT $7 OFFSET $8",
        )
        .bind::<Nullable<Text>, _>(filter.status.map(OrderState::as_str))
        .bind::<Nullable<Text>, _>(filter.currency.as_deref())
        .bind::<Nullable<Timestamptz>, _>(filter.from)
        .bind::<Nullable<Timestamptz>, _>(filter.to)
        .bind::<Nullable<Text>, _>(filter.reference.as_deref())
        .bind::<Nullable<Text>, _>(filter.customer.as_ref().map(Pseudonym::as_str))
        .bind::<BigInt, _>(limit.max(0))
        .bind::<BigInt, _>(offset.max(0))
        .load(&mut conn)
        .await?;
        rows.into_iter()
            .map(|r| {
                let currency = self
                    .currencies()
                    .currency(&r.currency)
                    .map_err(|err| StoreError::Invalid(format!("order {}: {err}", r.order_ref)))?;
                Ok(OrderView {
                    order_ref: r.order_ref,
                    origin: r.origin,
                    merchant_ref: r.merchant_ref,
                    status: r.status,
                    amount: money(r.expected_minor, currency),
                    currency: currency.as_str().to_owned(),
                    paid: money(r.paid_minor, currency),
                    refunded: money(r.refunded_minor, currency),
                    charged_back: money(r.charged_back_minor, currency),
                    processor_ref: r.processor_ref,
                    created_at: r.created_at,
                    updated_at: r.updated_at,
                    version: r.version,
                    payments: Vec::new(),
                    events: Vec::new(),
                })
            })
            .collect()
    }

    /// Notifications matching `filter`, newest first, each with the
    /// ledger rows it made.
    pub async fn notifications_with_ledger(
        &self,
        filter: &NotificationFilter,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<NotificationRow> = diesel::sql_query(
            "SELECT id, received_at, processor_ref, order_ref, order_status, amount_minor, \
                    currency, key_id, algorithm, body_sha256, identity, repeat_of, outcome, reason \
             FROM notifications \
             WHERE ($1::timestamptz IS NULL OR received_at >= $1) \
               AND ($2::timestamptz IS NULL OR received_at < $2) \
               AND ($3::text IS NULL OR outcome = $3) \
               AND ($4::text IS NULL OR order_status = $4) \
               AND ($5::text IS NULL OR order_ref = $5) \
               AND ($6::text IS NULL OR processor_ref = $6) \
             ORDER BY id DESC LIMIT $7 OFFSET $8",
        )
        .bind::<Nullable<Timestamptz>, _>(filter.from)
        .bind::<Nullable<Timestamptz>, _>(filter.to)
        .bind::<Nullable<Text>, _>(filter.outcome.map(Outcome::as_str))
        .bind::<Nullable<Text>, _>(filter.order_status.as_deref())
        .bind::<Nullable<Text>, _>(filter.order_ref.as_deref())
        .bind::<Nullable<Text>, _>(filter.processor_ref.as_deref())
        .bind::<BigInt, _>(filter.limit.max(1))
        .bind::<BigInt, _>(filter.offset.max(0))
        .load(&mut conn)
        .await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let effects: Vec<EffectRow> = diesel::sql_query(
            "SELECT e.notification_id, o.order_ref, e.effect, e.old_status, e.new_status, e.reason \
             FROM order_events AS e JOIN orders AS o ON o.id = e.order_id \
             WHERE e.notification_id = ANY($1) ORDER BY e.id",
        )
        .bind::<Array<BigInt>, _>(&ids)
        .load(&mut conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let amount = r
                    .amount_minor
                    .zip(r.currency.as_deref())
                    .map(|(minor, code)| match self.currencies().currency(code) {
                        Ok(c) => format!("{} {c}", money(minor, c)),
                        Err(_) => format!("{minor} (minor units)"),
                    });
                let ledger = effects
                    .iter()
                    .filter(|e| e.notification_id == r.id)
                    .map(|e| LedgerEffect {
                        order_ref: e.order_ref.clone(),
                        effect: e.effect,
                        old_status: e.old_status,
                        new_status: e.new_status,
                        reason: e.reason.clone(),
                    })
                    .collect();
                NotificationRecord {
                    id: r.id,
                    received_at: r.received_at,
                    processor_ref: r.processor_ref,
                    order_ref: r.order_ref,
                    order_status: r.order_status,
                    amount,
                    key_id: r.key_id,
                    algorithm: r.algorithm,
                    body_sha256: r.body_sha256,
                    identity: r.identity,
                    repeat_of: r.repeat_of,
                    outcome: r.outcome,
                    reason: r.reason,
                    ledger,
                }
            })
            .collect())
    }

    /// The money moved per day and currency in `period` (by the time of
    /// the ledger rows that moved it, as `report --by event` counts).
    pub async fn daily_money(&self, period: &ReportPeriod) -> Result<Vec<DailyMoney>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<DailyRow> = diesel::sql_query(
            "SELECT (booked_at AT TIME ZONE 'UTC')::date AS day, currency, \
                    coalesce(sum(amount_minor) FILTER (WHERE kind = 'payment'), 0)::int8 AS paid, \
                    coalesce(sum(amount_minor) FILTER (WHERE kind = 'refund'), 0)::int8 AS refunded, \
                    (coalesce(sum(amount_minor) FILTER (WHERE kind IN ('reversal', 'chargeback')), 0) \
                     - coalesce(sum(amount_minor) FILTER (WHERE kind = 'chargeback_reversal'), 0)) \
                        ::int8 AS taken_back \
             FROM money_movements \
             WHERE booked_at >= coalesce($1, '-infinity'::timestamptz) \
               AND booked_at < coalesce($2, 'infinity'::timestamptz) \
             GROUP BY 1, 2 ORDER BY 2, 1",
        )
        .bind::<Nullable<Timestamptz>, _>(period.from)
        .bind::<Nullable<Timestamptz>, _>(period.to)
        .load(&mut conn)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(DailyMoney {
                    day: r.day,
                    currency: self.currencies().currency(&r.currency).ok()?,
                    paid: r.paid,
                    refunded: r.refunded,
                    taken_back: r.taken_back,
                })
            })
            .collect())
    }
}

async fn insert_user(
    conn: &mut diesel_async::AsyncPgConnection,
    name: &str,
    role: ConsoleRole,
    password_hash: &str,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let added = diesel::sql_query(
        "INSERT INTO console_users (name, role, password_hash, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
    )
    .bind::<Text, _>(name)
    .bind::<Text, _>(role.as_str())
    .bind::<Text, _>(password_hash)
    .bind::<Timestamptz, _>(at)
    .execute(conn)
    .await?;
    Ok(added == 1)
}

async fn disable_user(
    conn: &mut diesel_async::AsyncPgConnection,
    name: &str,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let found = diesel::sql_query(
        "UPDATE console_users SET disabled_at = coalesce(disabled_at, $2) WHERE name = $1",
    )
    .bind::<Text, _>(name)
    .bind::<Timestamptz, _>(at)
    .execute(&mut *conn)
    .await?;
    diesel::sql_query(
        "UPDATE console_sessions SET ended_at = $2 WHERE ended_at IS NULL \
         AND user_id = (SELECT id FROM console_users WHERE name = $1)",
    )
    .bind::<Text, _>(name)
    .bind::<Timestamptz, _>(at)
    .execute(conn)
    .await?;
    Ok(found == 1)
}

/// Failed logins at or after `since` for a name and from an address, on
/// the caller's connection.
async fn failed_counts(
    conn: &mut diesel_async::AsyncPgConnection,
    username_digest: &str,
    address_digest: &str,
    since: DateTime<Utc>,
) -> Result<LoginAttemptCounts, StoreError> {
    let row: FailureRow = diesel::sql_query(
        "SELECT count(*) FILTER (WHERE username_sha256 = $1)::int8 AS by_user, \
                max(at) FILTER (WHERE username_sha256 = $1) AS last_by_user, \
                count(*) FILTER (WHERE address_sha256 = $2)::int8 AS by_address \
         FROM console_login_attempts \
         WHERE (username_sha256 = $1 OR address_sha256 = $2) AND NOT succeeded AND at >= $3",
    )
    .bind::<Text, _>(username_digest)
    .bind::<Text, _>(address_digest)
    .bind::<Timestamptz, _>(since)
    .get_result(conn)
    .await?;
    Ok(LoginAttemptCounts {
        user_failures: row.by_user,
        last_user_failure: row.last_by_user,
        address_failures: row.by_address,
    })
}
