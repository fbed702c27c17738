//! The functional core: money, statuses, tokenization and the order state
//! machine. No I/O happens here, and nothing here knows about HTTP,
//! RabbitMQ or PostgreSQL.
//!
//! Keeping the decisions pure is what makes them testable exhaustively:
//! [`reconcile::decide`] is a function `(order facts, event) -> decision`,
//! so property tests can replay any set of notifications in every arrival
//! order and prove they end in the same state, without a database. The
//! shell (`store`, `worker`) loads the facts, calls `decide`, and writes the
//! decision in one transaction.
//!
//! The types *parse* rather than validate: a [`Money`] is always an exact
//! integer amount in a known currency, a [`PaymentEvent`] holds only the
//! allow-listed fields of a notification (design, "Data that may be
//! stored"), already checked. Code that holds one of them need not check
//! again, and code that never sees the raw form cannot leak it.
//!
//! - [`money`]: [`Currency`] and [`Money`] (exact minor units, never floats);
//! - [`status`]: the processor's [`OrderStatus`] and our [`OrderState`];
//! - [`pan`]: the card-number guard;
//! - [`tokenize`](mod@tokenize): from a verified form to a [`PaymentEvent`];
//! - [`reconcile`]: [`OrderFacts`], [`decide`] and its [`Decision`].

pub mod money;
pub mod pan;
pub mod reconcile;
pub mod status;
pub mod tokenize;

pub use money::{Currency, CurrencyError, Money, MoneyError};
pub use pan::{contains_pan, find_pan_fields};
pub use reconcile::{
    Decision, Effect, NewReviewItem, OrderFacts, Outcome, ReconcilePolicy, ReviewKind,
    UnknownOutcome, UnknownReviewKind, decide,
};
pub use status::{OrderState, OrderStatus, StatusCategory, UnknownOrderState, UnknownOrderStatus};
pub use tokenize::{
    BodyDigest, NotSha256Hex, PaymentEvent, Pseudonym, PseudonymKey, StatusField, TokenizeError,
    tokenize,
};
