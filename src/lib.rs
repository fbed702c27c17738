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
//! - [`metrics`], [`http`]: Prometheus metrics and the operations endpoint;
//! - [`cli`]: the command line.

#![forbid(unsafe_code)]

pub mod cli;
pub mod domain;
pub mod http;
pub mod ipn;
pub mod metrics;
pub mod pipeline;
pub mod queue;
pub mod simulate;
pub mod store;
pub mod telemetry;
pub mod worker;
