//! ipn-reconciler: receives the payment processor's signed Instant Payment
//! Notifications, verifies them, keeps only tokenized references, and
//! reconciles them against the merchant's orders.
//!
//! The layers, from pure to I/O (see README "Architecture"):
//! - [`ipn`]: the processor's wire protocol (parse, sign, verify, receipt);
//! - [`domain`]: money, statuses, tokenization, the order state machine;
//! - [`store`]: PostgreSQL (schema, migrations, atomic apply, orders);
//! - [`pipeline`]: one notification's way through all of the above;
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

pub mod app;
#[cfg(feature = "tools")]
pub mod bench;
pub mod cli;
pub mod console;
#[cfg(feature = "tools")]
pub mod demo;
pub mod domain;
pub mod export;
pub mod health;
pub mod http;
pub mod intake;
pub mod ipn;
pub mod metrics;
pub mod pipeline;
pub mod queue;
pub mod secret;
pub mod settings;
#[cfg(feature = "tools")]
pub mod simulate;
pub mod store;
pub mod telemetry;
pub mod worker;
