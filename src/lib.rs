//! ipn-reconciler: receives the payment processor's signed Instant Payment
//! Notifications, verifies them, keeps only tokenized references, and
//! reconciles them against the merchant's orders.
//!
//! The layers, from pure to I/O (docs/architecture.md):
//! - [`ipn`]: the processor's wire protocol (parse, sign, verify, receipt),
//!   the `ipn-protocol` crate: no runtime, no database, no broker, no files;
//! - [`domain`]: money, statuses, tokenization, the order state machine,
//!   review, settlement, sweep and journal rules, the `ipn-domain` crate:
//!   pure, on top of the protocol alone;
//! - [`keys`]: key files read from disk into the protocol's key rings;
//! - [`store`]: PostgreSQL (schema, migrations, atomic apply, orders): the
//!   repository, queries and statements, no workflow and no clock, the
//!   `ipn-store` crate (with [`secret`] and [`export`]);
//! - [`services`]: the workflows (resolving a review item, importing a
//!   settlement file, the sweep), each in a transaction it opens, with the
//!   time as an argument;
//! - [`pipeline`]: one notification's way through all of the above;
//! - [`processor_api`]: the processor's REST API client (a second witness
//!   beside the notifications);
//! - [`queue`]: RabbitMQ topology, message metadata, confirmed publisher;
//! - [`worker`]: the consume loop (retries, parking, graceful shutdown);
//! - [`intake`]: the processor-facing HTTP endpoint (receipt once queued);
//! - [`metrics`], [`health`], [`http`]: Prometheus metrics, dependency
//!   states and the operations endpoint;
//! - [`settings`], [`secret`]: the configuration tree and its defaults;
//! - [`app`]: the daemon assembled from its settings (startup, shutdown);
//! - `simulate`: a seeded processor simulator with known expectations;
//! - `demo`: the whole system in one process, for newcomers;
//! - `bench`: throughput and latency beside same-run ceilings;
//! - [`console`]: the finance console, an authenticated web page;
//! - [`cli`]: the command line.
//!
//! `simulate`, `demo` and `bench` are development tools, built with the
//! `tools` feature (on by default); a production build leaves them out
//! (`cargo build --release --no-default-features`).

#![forbid(unsafe_code)]

/// The domain crate, under the name the daemon's modules use.
pub use ipn_domain as domain;
/// The protocol crate, under the name the daemon's modules use.
pub use ipn_protocol as ipn;
/// The store crate, under the name the daemon's modules use.
pub use ipn_store as store;
/// The form of exported times, in the store crate (its reports use it).
pub use ipn_store::export;
/// URLs with passwords, in the store crate (which connects with them).
pub use ipn_store::secret;

pub mod app;
#[cfg(feature = "tools")]
pub mod bench;
pub mod cli;
pub mod console;
#[cfg(feature = "tools")]
pub mod demo;
pub mod health;
pub mod http;
pub mod intake;
pub mod keys;
pub mod metrics;
pub mod pipeline;
pub mod processor_api;
pub mod queue;
pub mod services;
pub mod settings;
#[cfg(feature = "tools")]
pub mod simulate;
pub mod telemetry;
pub mod text_list;
pub mod view;
pub mod worker;
