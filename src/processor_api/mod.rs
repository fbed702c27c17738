//! The processor's REST API as a second witness (issue 24, Deliver 1): a
//! client for `GET /rest/6.0/orders/{RefNo}/` (processor-traffic.md §5).
//!
//! - [`auth`]: the credentials (`vendor-code`, the secret from
//!   `api-key-file`, never logged) and the `X-Avangate-Authentication`
//!   header, computed by the protocol crate;
//! - [`order`]: the response parsed into what reconciliation needs, amounts
//!   as exact decimals; billing, delivery, customer and payment details are
//!   dropped while parsing, so nothing personal is ever held;
//! - [`policy`]: the pure parts of the resilience (retry backoff, circuit
//!   breaker, request pacing), each testable without a clock;
//! - [`client`]: the HTTP client that puts them together.
//!
//! Not here yet (later parts of issue 24): the sweep's catch-up, confirm
//! before paying (`api-confirm`) and `orders sync`.

pub mod auth;
pub mod client;
pub mod order;
pub mod policy;

pub use auth::ApiCredentials;
pub use client::{ApiClient, ApiConfig, ApiError, ApiStats};
pub use order::{ApiDecimal, ApiItem, ApiOrder, OrderParseError, parse_order};
pub use policy::{BreakerState, CircuitBreaker, Pacer, RetryPolicy};
