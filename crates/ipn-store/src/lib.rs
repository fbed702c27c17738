//! PostgreSQL: the schema, migrations, and every query the daemon runs.
//!
//! Diesel builds the queries; diesel-async runs them over tokio-postgres (no
//! libpq), through a deadpool pool. The store is the repository: queries
//! and statements, most as functions on the caller's connection so that a
//! workflow in the daemon's `services` runs them in the one transaction it
//! opens (on [`Store::conn`]). Decisions are not made here, and no clock
//! is read. The one write path of notifications stays here
//! ([`batch`]: a batch, or a batch of one): it loads facts, asks
//! [`crate::domain::reconcile::decide`], and writes the answer in the
//! same transaction.
//!
//! A crate of its own on top of the domain and the protocol: no broker, no
//! HTTP. The migrations are the workspace's top-level `migrations/`. It
//! also holds what the store needs and the rest of the daemon shares:
//! [`secret`] (URLs with passwords), [`export`] (the form of exported
//! times) and [`causes`] (an error's text with its causes).

/// The domain crate, under the name this crate's modules use.
pub(crate) use ipn_domain as domain;
/// The protocol crate, under the name this crate's modules use.
pub(crate) use ipn_protocol as ipn;

pub mod action_log;
pub mod apply;
pub mod audit;
pub mod batch;
pub mod books;
pub mod causes;
pub mod clearing;
pub mod console;
mod disputes;
pub mod export;
pub mod journal;
pub mod link_requests;
mod notice_money;
pub mod orders;
mod payouts;
pub mod reports;
mod reuse;
pub mod review;
pub mod schema;
pub mod secret;
pub mod settlement;
mod sql;
pub mod subscriptions;
pub use sql::Stored;
pub mod sweep;

use std::time::Duration;

use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncMigrationHarness, AsyncPgConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::domain::{Currencies, Currency};
use crate::secret::SecretUrl;

pub use apply::{ApplyReport, RejectedNotification};
pub use batch::BatchItem;
pub use orders::{ImportReport, NewOrder, OrderEventView, OrderView, PaymentView};
pub use reports::{CurrencyTotals, FinanceSummary};
pub use reports::{OpenExceptions, ReportBasis, ReportPeriod};
pub use review::{ReviewDetail, ReviewGroup, ReviewItem, ReviewStatus};
pub use subscriptions::{
    LicenceNoticeView, SubscriptionDetail, SubscriptionFilter, SubscriptionOrderView,
    SubscriptionView,
};

/// The migrations in the workspace's `migrations/`, compiled into the
/// binary (build.rs rebuilds when one is added).
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// How to reach the database (built from the settings, which hold the
/// defaults).
#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    /// `postgres://user[:password]@host:port/dbname`.
    pub url: SecretUrl,
    /// What connecting does about a missing database and the schema.
    pub schema: SchemaPolicy,
    /// Connections in the pool.
    pub pool_size: usize,
    /// How long to wait for a connection before reporting an outage.
    pub acquire_timeout: Duration,
    /// `statement_timeout` of every pooled connection.
    pub statement_timeout: Duration,
    /// `lock_timeout` of every pooled connection.
    pub lock_timeout: Duration,
    /// The currency table (`allow-currency`): the store reads the
    /// currency codes of its rows with it, and checks imported orders
    /// against it, so that a stored amount means what it meant when it
    /// was written. The settings' own
    /// (`settings::Loaded::currencies` in the daemon).
    pub currencies: Currencies,
}

/// What [`Store::connect`] does about a missing database and the schema.
///
/// One value instead of three switches, because the schema gets one of
/// three treatments: migrating it and requiring it at the same time (which
/// the switches allowed) would refuse, before the migration, the very
/// schema the call was asked to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemaPolicy {
    /// Create the database when it does not exist (if `create_database`,
    /// which needs the right to), then apply pending migrations: `serve`
    /// with `auto-migrate`.
    Migrate { create_database: bool },
    /// Create the database when it does not exist (if `create_database`)
    /// and leave the schema alone: the `migrate` command, which applies
    /// the migrations itself to report them, `check`, and the console
    /// beside a worker that migrates.
    ConnectOnly { create_database: bool },
    /// Refuse a database without this project's schema. Commands that
    /// only read or add data use it without `create_database`, so that a
    /// mistyped database name is an error, not an empty set of books;
    /// `serve` without `auto-migrate` keeps `create-db` (the database is
    /// made, and waits for `migrate`).
    RequireSchema { create_database: bool },
}

impl SchemaPolicy {
    /// The policy of commands that read or add data: the database and its
    /// schema must already be there.
    pub const EXISTING: Self = Self::RequireSchema {
        create_database: false,
    };

    /// Whether a missing database is created.
    pub fn creates_database(self) -> bool {
        match self {
            Self::Migrate { create_database }
            | Self::ConnectOnly { create_database }
            | Self::RequireSchema { create_database } => create_database,
        }
    }

    /// This policy without migrations at start: a database without the
    /// schema is refused (`serve` and `console` with `auto-migrate` off),
    /// and a missing one is still created when the policy said so.
    pub fn require_unless_migrating(self) -> Self {
        match self {
            Self::Migrate { .. } | Self::RequireSchema { .. } => self,
            Self::ConnectOnly { create_database } => Self::RequireSchema { create_database },
        }
    }
}

impl DatabaseSettings {
    /// The URL with any password replaced by `***`, for logs and errors.
    pub fn redacted_url(&self) -> String {
        self.url.redacted()
    }
}

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid DATABASE_URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot connect to the database at {url}: {reason}")]
    Connect {
        url: String,
        /// The cause in words ([`describe_connect_error`]).
        reason: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// `message` says what failed, where (the redacted URL) and why.
    #[error("{message}")]
    Pool {
        message: String,
        /// Whether waiting may help (a timeout or an unreachable server),
        /// as opposed to a refusal (wrong password, unknown database).
        transient: bool,
    },
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migrations failed: {0}")]
    Migration(String),
    #[error("cannot open a connection to the database: {0}")]
    Establish(String),
    #[error(
        "database `{name}` does not exist at {url}; check DATABASE_URL for a typo, \
         or create it with `ipn-reconciler migrate --create-db`"
    )]
    NoDatabase { name: String, url: String },
    #[error(
        "database `{name}` at {url} has no ipn-reconciler schema; check DATABASE_URL for a typo, \
         or create the schema with `ipn-reconciler migrate`"
    )]
    NoSchema { name: String, url: String },
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    fn connect(settings: &DatabaseSettings, source: tokio_postgres::Error) -> Self {
        StoreError::Connect {
            url: settings.redacted_url(),
            reason: describe_connect_error(&source),
            source,
        }
    }

    /// Whether trying again later may succeed.
    ///
    /// Connection errors are classified by their SQLSTATE: a server that
    /// refuses us (class 28, invalid authorization; 3D000, unknown database)
    /// will refuse again, while one we cannot reach (no SQLSTATE: refused,
    /// reset, DNS) or that is starting or shutting down (class 57, 53, 08)
    /// may come back. Query errors arrive through diesel-async, which keeps
    /// the SQLSTATE only as a [`DatabaseErrorKind`](diesel::result::DatabaseErrorKind):
    /// the integrity violations it names are permanent (the same
    /// statement fails the same way), a serialization failure and a lost
    /// connection are transient, and the codes it folds into `Unknown`
    /// (deadlock 40P01, lock and statement timeouts 55P03 and 57014,
    /// administrator shutdown 57P01) are treated as transient: retries are
    /// bounded in time, and a notification that exhausts them is parked
    /// for a person, never dropped.
    pub fn is_transient(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            StoreError::Connect { source, .. } => connect_error_is_transient(source),
            StoreError::Pool { transient, .. } => *transient,
            StoreError::Establish(_) => true,
            StoreError::Query(Error::DatabaseError(kind, _)) => !matches!(
                kind,
                DatabaseErrorKind::UniqueViolation
                    | DatabaseErrorKind::ForeignKeyViolation
                    | DatabaseErrorKind::NotNullViolation
                    | DatabaseErrorKind::CheckViolation
                    | DatabaseErrorKind::RestrictViolation
                    | DatabaseErrorKind::ExclusionViolation
                    | DatabaseErrorKind::ReadOnlyTransaction
            ),
            StoreError::Query(Error::BrokenTransactionManager) => true,
            _ => false,
        }
    }
}

/// The SQLSTATE rule of [`StoreError::is_transient`] for a connection error.
pub fn connect_error_is_transient(err: &tokio_postgres::Error) -> bool {
    match err.code() {
        // No SQLSTATE: the server was not reached or the link broke.
        None => true,
        Some(code) => {
            let code = code.code();
            !(code.starts_with("28") || code == "3D000" || code.starts_with("42"))
        }
    }
}

/// A pool error: a timeout, or a connection that could not be made. Both
/// may pass (the server restarts, a password is put right), so both are
/// transient; the daemon's retries are bounded in time either way. The
/// message names the database (its URL without password) and carries the
/// whole chain of causes, which deadpool's own text leaves out.
fn pool_error(
    settings: &DatabaseSettings,
    err: deadpool::managed::PoolError<diesel_async::pooled_connection::PoolError>,
) -> StoreError {
    use deadpool::managed::PoolError;
    let url = settings.redacted_url();
    let message = match &err {
        PoolError::Timeout(_) => format!(
            "no database connection at {url} within {}",
            humantime::format_duration(settings.acquire_timeout)
        ),
        PoolError::Backend(backend) => {
            format!(
                "cannot connect to the database at {url}: {}",
                crate::causes::with_causes(backend)
            )
        }
        other => format!(
            "database pool for {url}: {}",
            crate::causes::with_causes(other)
        ),
    };
    StoreError::Pool {
        message,
        transient: true,
    }
}

/// A connection error in words: what the server said (with its SQLSTATE),
/// or why it could not be reached.
pub fn describe_connect_error(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        let what = match db.code().code() {
            code if code.starts_with("28") => "authentication failed",
            "3D000" => "the database does not exist",
            "53300" => "too many connections",
            "57P03" => "the server is starting up or shutting down",
            _ => "the server refused",
        };
        return format!("{what}: {} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(inner) = cause {
        text = format!("{text}: {inner}");
        cause = inner.source();
    }
    text
}

/// The schema's migrations, applied and pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    pub applied: Vec<String>,
    pub pending: Vec<String>,
}

/// Open review items of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReviewCount {
    pub kind: String,
    pub open: i64,
    pub oldest_open_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A pooled connection.
pub type Conn = Object<AsyncPgConnection>;

/// The application's handle on PostgreSQL. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool<AsyncPgConnection>,
    settings: DatabaseSettings,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pool's Debug lists its connections; the settings say enough.
        f.debug_struct("Store")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Checks that the database exists (creating it only when the
    /// [`SchemaPolicy`] asks to), builds the pool, then refuses a database
    /// without the schema or applies pending migrations, as the policy
    /// says.
    pub async fn connect(settings: DatabaseSettings) -> Result<Self, StoreError> {
        ensure_database(&settings).await?;
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
            settings.url.expose(),
            pool_config(&settings),
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .wait_timeout(Some(settings.acquire_timeout))
            .create_timeout(Some(settings.acquire_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|err| StoreError::Pool {
                message: format!("cannot build the database pool: {err}"),
                transient: false,
            })?;
        let store = Self { pool, settings };
        match store.settings.schema {
            SchemaPolicy::RequireSchema { .. } => {
                if !store.has_schema().await? {
                    return Err(StoreError::NoSchema {
                        name: store.database_name(),
                        url: store.settings.redacted_url(),
                    });
                }
            }
            SchemaPolicy::Migrate { .. } => {
                store.migrate().await?;
            }
            SchemaPolicy::ConnectOnly { .. } => {}
        }
        Ok(store)
    }

    /// Whether the database holds this project's schema (a migration was
    /// ever applied), asked without creating anything.
    pub async fn has_schema(&self) -> Result<bool, StoreError> {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Found {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            present: bool,
        }
        let mut conn = self.conn().await?;
        let found: Found = diesel::sql_query(
            "SELECT to_regclass('public.__diesel_schema_migrations') IS NOT NULL AS present",
        )
        .get_result(&mut conn)
        .await?;
        Ok(found.present)
    }

    fn database_name(&self) -> String {
        self.settings
            .url
            .expose()
            .parse::<tokio_postgres::Config>()
            .ok()
            .and_then(|c| c.get_dbname().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Which of the embedded migrations the database has, and which it
    /// lacks (without applying anything).
    pub async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        let connection = self.establish().await?;
        tokio::task::spawn_blocking(move || {
            let mut harness = AsyncMigrationHarness::new(connection);
            let applied = harness
                .applied_migrations()
                .map_err(|err| StoreError::Migration(err.to_string()))?;
            let pending = harness
                .pending_migrations(MIGRATIONS)
                .map_err(|err| StoreError::Migration(err.to_string()))?;
            Ok(SchemaStatus {
                applied: applied.iter().map(ToString::to_string).collect(),
                pending: pending.iter().map(|m| m.name().to_string()).collect(),
            })
        })
        .await
        .map_err(|err| StoreError::Migration(err.to_string()))?
    }

    /// A connection of its own (not pooled), for the migration harness.
    async fn establish(&self) -> Result<AsyncPgConnection, StoreError> {
        <AsyncPgConnection as diesel_async::AsyncConnection>::establish(self.settings.url.expose())
            .await
            .map_err(|err| StoreError::Establish(err.to_string()))
    }

    pub fn settings(&self) -> &DatabaseSettings {
        &self.settings
    }

    /// The currency table the store was built with
    /// ([`DatabaseSettings::currencies`]).
    pub fn currencies(&self) -> &Currencies {
        &self.settings.currencies
    }

    /// The currency of a code read from a row, in the store's table; a
    /// code that is not three letters is an invalid row.
    pub(crate) fn currency(&self, code: &str) -> Result<Currency, StoreError> {
        self.currencies()
            .currency(code)
            .map_err(|err| StoreError::Invalid(err.to_string()))
    }

    /// A connection from the pool.
    pub async fn conn(&self) -> Result<Conn, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|err| pool_error(&self.settings, err))
    }

    /// Applies pending migrations; returns the versions applied.
    pub async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        // The harness blocks (diesel's migrations are synchronous), so it runs
        // on a blocking thread with its own connection.
        let connection = self.establish().await?;
        tokio::task::spawn_blocking(move || {
            let mut harness = AsyncMigrationHarness::new(connection);
            harness
                .run_pending_migrations(MIGRATIONS)
                .map(|versions| versions.iter().map(ToString::to_string).collect())
                .map_err(|err| StoreError::Migration(err.to_string()))
        })
        .await
        .map_err(|err| StoreError::Migration(err.to_string()))?
    }

    /// Drops every table and migrates again: the demo starts from a clean
    /// slate. The ledger refuses UPDATE, DELETE and TRUNCATE, so only this
    /// deliberate whole-schema reset (for a database whose name says it is a
    /// demo, see `demo.rs`) removes ledger rows.
    pub async fn reset_schema(&self) -> Result<(), StoreError> {
        use diesel_async::SimpleAsyncConnection;
        let mut conn = self.conn().await?;
        conn.batch_execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
            .await?;
        drop(conn);
        self.migrate().await?;
        Ok(())
    }

    /// Open review items per kind, with the oldest's creation time (the
    /// exception gauges).
    pub async fn open_review_counts(&self) -> Result<Vec<OpenReviewCount>, StoreError> {
        use diesel::dsl::{count_star, min};
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use schema::review_items;
        let mut conn = self.conn().await?;
        let rows: Vec<(String, i64, Option<chrono::DateTime<chrono::Utc>>)> = review_items::table
            .filter(review_items::status.eq("open"))
            .group_by(review_items::kind)
            .select((
                review_items::kind,
                count_star(),
                min(review_items::created_at),
            ))
            .load(&mut conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(kind, open, oldest_open_at)| OpenReviewCount {
                kind,
                open,
                oldest_open_at,
            })
            .collect())
    }

    /// Checks that the database answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        use diesel_async::RunQueryDsl;
        let mut conn = self.conn().await?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await?;
        Ok(())
    }
}

/// Every pooled connection gets the statement and lock timeouts, so a
/// statement stuck behind a lock or a runaway query fails (transiently, to
/// be retried) instead of holding a worker forever.
///
/// And custom plans for every prepared statement: diesel-async prepares
/// and caches the batch's statements, and PostgreSQL switches a prepared
/// statement to a generic plan after five executions, planned for a table
/// as it was then. A worker starting on a fresh or small database would
/// keep plans made for an empty `notifications` table (a scan of the whole
/// table for each batch's identities) while the table grows; planning
/// each execution with its real arguments keeps the index look-ups, for a
/// planning cost far below one round trip.
fn pool_config(settings: &DatabaseSettings) -> ManagerConfig<AsyncPgConnection> {
    let setup = format!(
        "SET statement_timeout = {}; SET lock_timeout = {}; SET plan_cache_mode = force_custom_plan",
        settings.statement_timeout.as_millis(),
        settings.lock_timeout.as_millis()
    );
    let mut config = ManagerConfig::default();
    // A broken connection is noticed by the statement that uses it (and
    // that error is transient: the batch is retried); a test query on
    // every checkout would cost each batch one more round trip.
    config.recycling_method = diesel_async::pooled_connection::RecyclingMethod::Fast;
    config.custom_setup = Box::new(move |url| {
        let setup = setup.clone();
        let url = url.to_owned();
        Box::pin(async move {
            use diesel_async::SimpleAsyncConnection;
            // Connected with tokio-postgres first: diesel's `establish`
            // keeps only "error connecting to server" of an error whose
            // cause (refused, reset, authentication failed) is what an
            // operator needs to read.
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|err| {
                diesel::ConnectionError::BadConnection(describe_connect_error(&err))
            })?;
            let mut connection =
                AsyncPgConnection::try_from_client_and_connection(client, connection).await?;
            connection
                .batch_execute(&setup)
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(connection)
        })
    });
    config
}

/// Checks that the database named in the URL exists: connects to it, and
/// when the server says it does not exist (SQLSTATE 3D000), creates it
/// through the server's `postgres` maintenance database if
/// the settings' [`SchemaPolicy`] asks for it, or refuses with the fix in
/// the message.
pub async fn ensure_database(settings: &DatabaseSettings) -> Result<(), StoreError> {
    let config: tokio_postgres::Config =
        settings
            .url
            .expose()
            .parse()
            .map_err(|_| StoreError::InvalidUrl {
                url: settings.redacted_url(),
                reason: "not a postgres:// URL".to_owned(),
            })?;
    let mut probe = config.clone();
    probe.connect_timeout(settings.acquire_timeout);
    match probe.connect(tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            let driver = tokio::spawn(connection);
            drop(client);
            let _ = driver.await;
            Ok(())
        }
        Err(err) if err.code() == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME) => {
            if settings.schema.creates_database() {
                create_database(settings).await
            } else {
                Err(StoreError::NoDatabase {
                    name: config.get_dbname().unwrap_or_default().to_owned(),
                    url: settings.redacted_url(),
                })
            }
        }
        Err(source) => Err(StoreError::connect(settings, source)),
    }
}

/// Creates the database named in the URL, by asking the server's
/// `postgres` maintenance database.
async fn create_database(settings: &DatabaseSettings) -> Result<(), StoreError> {
    let invalid = |reason: &str| StoreError::InvalidUrl {
        url: settings.redacted_url(),
        reason: reason.to_owned(),
    };
    let config: tokio_postgres::Config = settings
        .url
        .expose()
        .parse()
        .map_err(|_| invalid("not a postgres:// URL"))?;
    let name = config
        .get_dbname()
        .ok_or_else(|| invalid("no database name"))?
        .to_owned();
    let mut maintenance = config.clone();
    maintenance.dbname("postgres");
    maintenance.connect_timeout(settings.acquire_timeout);
    let (client, connection) = maintenance
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|source| StoreError::connect(settings, source))?;
    let driver = tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(|source| StoreError::connect(settings, source))?
        .is_some();
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match client
            .batch_execute(&format!("CREATE DATABASE {quoted}"))
            .await
        {
            Ok(()) => tracing::info!(database = %name, "created database"),
            // Someone else created it at the same moment: fine.
            Err(err)
                if err.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(source) => return Err(StoreError::connect(settings, source)),
        }
    }
    drop(client);
    let _ = driver.await;
    Ok(())
}
