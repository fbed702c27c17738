//! PostgreSQL: the schema, migrations, and every query the daemon runs.
//!
//! Diesel builds the queries; diesel-async runs them over tokio-postgres (no
//! libpq), through a deadpool pool. Decisions are not made here: the store
//! loads facts, asks [`crate::domain::reconcile::decide`], and writes the
//! answer in the same transaction.

pub mod apply;
pub mod orders;
pub mod reports;
pub mod schema;
mod sql;

use std::time::Duration;

use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::{AsyncMigrationHarness, AsyncPgConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub use apply::{ApplyReport, RejectedNotification};
pub use orders::{ImportReport, NewOrder, OrderEventView, OrderView};
pub use reports::{CurrencyTotals, FinanceSummary, ReviewItem};

/// The migrations in `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The database used when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/ipn_reconciler";

/// How to reach the database.
#[derive(Clone)]
pub struct DatabaseSettings {
    /// `postgres://user[:password]@host:port/dbname`.
    pub url: String,
    /// Apply pending migrations when connecting.
    pub migrate: bool,
    /// Create the database when it does not exist (needs the right to).
    pub create_database: bool,
    /// Connections in the pool.
    pub pool_size: usize,
    /// How long to wait for a pooled connection before reporting an outage.
    pub acquire_timeout: Duration,
}

impl DatabaseSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            migrate: true,
            create_database: true,
            pool_size: 8,
            acquire_timeout: Duration::from_secs(5),
        }
    }

    /// The URL with any password replaced by `***`, for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &self.redacted_url())
            .field("migrate", &self.migrate)
            .field("create_database", &self.create_database)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// Replaces the password of a `scheme://user:password@host/...` URL.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid DATABASE_URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot connect to the database at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("database pool: {0}")]
    Pool(String),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migrations failed: {0}")]
    Migration(String),
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    /// Whether trying again later may succeed: lost connections, an
    /// unreachable server, serialization failures and deadlocks.
    pub fn is_transient(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            StoreError::Connect { .. } | StoreError::Pool(_) => true,
            StoreError::Query(Error::DatabaseError(kind, info)) => match kind {
                DatabaseErrorKind::SerializationFailure
                | DatabaseErrorKind::ClosedConnection
                | DatabaseErrorKind::UnableToSendCommand => true,
                DatabaseErrorKind::Unknown => {
                    let message = info.message();
                    message.contains("deadlock detected")
                        || message.contains("terminating connection")
                        || message.contains("connection")
                }
                _ => false,
            },
            StoreError::Query(Error::BrokenTransactionManager) => true,
            _ => false,
        }
    }
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
        f.debug_struct("Store")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Store {
    /// Creates the database if asked and allowed, builds the pool, and
    /// applies pending migrations unless `settings.migrate` is off.
    pub async fn connect(settings: DatabaseSettings) -> Result<Self, StoreError> {
        if settings.create_database {
            ensure_database(&settings).await?;
        }
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(settings.url.clone());
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .wait_timeout(Some(settings.acquire_timeout))
            .create_timeout(Some(settings.acquire_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|err| StoreError::Pool(err.to_string()))?;
        let store = Self { pool, settings };
        if store.settings.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    pub fn settings(&self) -> &DatabaseSettings {
        &self.settings
    }

    /// A connection from the pool.
    pub async fn conn(&self) -> Result<Conn, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|err| StoreError::Pool(err.to_string()))
    }

    /// Applies pending migrations; returns the versions applied.
    pub async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        let url = self.settings.url.clone();
        // The harness blocks (diesel's migrations are synchronous), so it runs
        // on a blocking thread with its own connection.
        let connection = <AsyncPgConnection as diesel_async::AsyncConnection>::establish(&url)
            .await
            .map_err(|err| StoreError::Migration(err.to_string()))?;
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

    /// Empties every table (the demo starts from a clean slate). The ledger's
    /// append-only trigger does not fire on TRUNCATE, which is why only this
    /// deliberate, whole-database reset can remove ledger rows.
    pub async fn reset_all_data(&self) -> Result<(), StoreError> {
        use diesel_async::RunQueryDsl;
        let mut conn = self.conn().await?;
        diesel::sql_query(
            "TRUNCATE review_items, order_events, notifications, orders RESTART IDENTITY",
        )
        .execute(&mut conn)
        .await?;
        Ok(())
    }

    /// Checks that the database answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        use diesel_async::RunQueryDsl;
        let mut conn = self.conn().await?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await?;
        Ok(())
    }
}

/// Creates the database named in the URL when it does not exist, by asking
/// the server's `postgres` maintenance database.
pub async fn ensure_database(settings: &DatabaseSettings) -> Result<(), StoreError> {
    let invalid = |reason: &str| StoreError::InvalidUrl {
        url: settings.redacted_url(),
        reason: reason.to_owned(),
    };
    let config: tokio_postgres::Config = settings
        .url
        .parse()
        .map_err(|_| invalid("not a postgres:// URL"))?;
    let name = config
        .get_dbname()
        .ok_or_else(|| invalid("no database name"))?
        .to_owned();
    let mut maintenance = config.clone();
    maintenance.dbname("postgres");
    maintenance.connect_timeout(settings.acquire_timeout);
    let (client, connection) =
        maintenance
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|source| StoreError::Connect {
                url: settings.redacted_url(),
                source,
            })?;
    let driver = tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(|source| StoreError::Connect {
            url: settings.redacted_url(),
            source,
        })?
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
            Err(source) => {
                return Err(StoreError::Connect {
                    url: settings.redacted_url(),
                    source,
                });
            }
        }
    }
    drop(client);
    let _ = driver.await;
    Ok(())
}
