//! Shared helpers for the integration tests: a fresh PostgreSQL database per
//! test, dropped when the test ends, and the fixtures.

pub mod amqp;
pub mod console;
pub mod daemon;
pub mod licence;
pub mod proxy;

use std::path::{Path, PathBuf};

use ipn_reconciler::secret::SecretUrl;
use ipn_reconciler::settings::DatabaseSection;
use ipn_reconciler::settings::Settings;
use ipn_reconciler::store::{DatabaseSettings, Store};

/// The server the tests use; override with `TEST_DATABASE_SERVER`.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_SERVER")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A database of its own for one test, dropped (forcefully) on drop.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn new() -> Self {
        Self::with_prefix("ipn_test")
    }

    /// A database named `<prefix>_<uuid>` (the demo wants `demo` in it).
    pub fn with_prefix(prefix: &str) -> Self {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let url = format!("{}/{}", server_url(), name);
        Self { name, url }
    }

    pub fn secret_url(&self) -> SecretUrl {
        SecretUrl::new(self.url.clone())
    }

    pub fn settings(&self) -> DatabaseSettings {
        Settings {
            database: DatabaseSection {
                database_url: self.secret_url(),
                // The test's own database, made on first use.
                create_db: true,
                ..Default::default()
            },
            ..Settings::default()
        }
        .loaded()
        .expect("settings")
        .database()
        .expect("database settings")
    }

    /// Creates the database, migrates it and connects.
    pub async fn store(&self) -> Store {
        Store::connect(self.settings())
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let server = server_url();
        // Drop may run inside a runtime; do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let Ok((client, connection)) =
                    tokio_postgres::connect(&format!("{server}/postgres"), tokio_postgres::NoTls)
                        .await
                else {
                    return;
                };
                tokio::spawn(connection);
                let _ = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await;
            });
        })
        .join();
    }
}

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Every fixture notification file, sorted by name.
pub fn fixture_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_path("fixtures/ipn"))
        .expect("fixtures/ipn")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    files.sort();
    files
}

/// The personal data written into the fixtures (names, e-mails, phones,
/// addresses), which must never be stored or logged.
pub fn personal_data() -> Vec<String> {
    let text = std::fs::read_to_string(repo_path("fixtures/personal-data.json"))
        .expect("fixtures/personal-data.json");
    serde_json::from_str(&text).expect("personal-data.json is a list of strings")
}

/// The final order states the fixtures imply (`fixtures/expected.json`).
pub fn expected_states() -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(repo_path("fixtures/expected.json"))
        .expect("fixtures/expected.json");
    serde_json::from_str(&text).expect("expected.json is an object")
}

/// Every text value of every column of every table of the public schema,
/// but Diesel's own list of applied migrations: their versions are our
/// timestamps, not stored data, and a 14-digit one can pass the Luhn check
/// (`20261207000070` does), which a card-number scan would take for a card.
pub async fn dump_all_text(url: &str) -> Vec<(String, String, String)> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect for dump");
    tokio::spawn(connection);
    let columns = client
        .query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' \
             AND table_name <> '__diesel_schema_migrations' \
             ORDER BY table_name, ordinal_position",
            &[],
        )
        .await
        .expect("list columns");
    let mut values = Vec::new();
    for column in columns {
        let table: String = column.get(0);
        let name: String = column.get(1);
        let rows = client
            .query(
                &format!("SELECT \"{name}\"::text FROM \"{table}\" WHERE \"{name}\" IS NOT NULL"),
                &[],
            )
            .await
            .expect("dump column");
        for row in rows {
            values.push((table.clone(), name.clone(), row.get::<_, String>(0)));
        }
    }
    values
}
