//! The workflows: what a person or the daemon asks for, as a sequence of
//! steps in one transaction the service opens itself.
//!
//! A service takes the [`Store`](crate::store::Store) (it opens its
//! transaction on one of the store's connections), its inputs, and the
//! time as an argument where a decision depends on it (`now`); it decides
//! with the pure rules of [`crate::domain`] and with its own pure
//! functions, reads and writes through the store's repository functions
//! (each a query or a statement on the caller's connection), and returns
//! a typed result. The store decides nothing and reads no clock.
//!
//! - [`review`]: resolving a review item with an action
//!   ([`review::resolve`]);
//! - [`settlement`]: importing the processor's settlement and payout files
//!   ([`settlement::import`]);
//! - [`sweep`]: what silently never happened becomes a review item
//!   ([`sweep::sweep`], given `now`).
//!
//! Applying notifications (a batch, or a batch of one) stays in the store,
//! as the one write path (`store/batch.rs`): its decisions are already the
//! domain's pure state machine (`domain::reconcile::decide`), called
//! between pipelined statements that load and write many orders at once;
//! splitting those steps across two layers would cost the round trips
//! the batch exists to save. The review actions that apply a notification
//! use that path's own steps (`store::apply::apply_repeat`,
//! `store::apply::apply_to_order`).

pub mod review;
pub mod settlement;
pub mod sweep;
