//! ipn-reconciler: receives the payment processor's signed Instant Payment
//! Notifications, verifies them, keeps only tokenized references, and
//! reconciles them against the merchant's orders.
//!
//! The layers, from pure to I/O (see README "Architecture"):
//! - [`ipn`]: the processor's wire protocol (parse, sign, verify, receipt);
//! - [`domain`]: money, statuses, tokenization, the order state machine.

#![forbid(unsafe_code)]

pub mod domain;
pub mod cli;
pub mod ipn;
