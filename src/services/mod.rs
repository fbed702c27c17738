//! The workflows: what a person or the daemon asks for, as a sequence of
//! steps in one transaction the service opens itself.
//!
//! A service takes the [`Store`](crate::store::Store) (it opens its
//! transaction on one of the store's connections), its inputs, and the
//! time as an argument where a decision depends on it (`now`); it decides
//! with the pure rules of [`crate::domain`] and with its own pure
//! functions (unit-tested here), reads and writes through the store's
//! repository functions (each a query or a statement on the caller's
//! connection), and returns a typed result. The store decides nothing and
//! reads no clock.
//!
//! - [`review`]: resolving a review item with an action
//!   ([`review::resolve`]);
//! - [`requeue`]: parked messages moved back, each with its action-log
//!   row committed first ([`requeue::requeue`]);
//! - [`settlement`]: importing the processor's settlement and payout files
//!   ([`settlement::import`]);
//! - [`sweep`]: what silently never happened becomes a review item
//!   ([`sweep::sweep`], given `now`).
//!
//! Applying notifications (a batch, or a batch of one) stays in the store,
//! as the one write path (`crates/ipn-store/src/batch.rs`): its decisions are already the
//! domain's pure state machine (`domain::reconcile::decide`), called
//! between pipelined statements that load and write many orders at once;
//! splitting those steps across two layers would cost the round trips
//! the batch exists to save. The review actions that apply a notification
//! use that path's own steps (`store::apply::apply_repeat`,
//! `store::apply::apply_to_order`).

pub mod requeue;
pub mod review;
pub mod settlement;
pub mod sweep;

#[cfg(test)]
mod tests {
    /// Neither the store nor a service reads the clock: time comes in as
    /// an argument (the caller's: `serve`'s own clock each round,
    /// `--as-of`, a test's) or is the database's `now()`, so that a
    /// workflow can be replayed at any date and tested without waiting.
    /// Checked on the source of every module, up to its tests.
    #[test]
    fn no_module_of_the_store_or_the_services_reads_the_wall_clock() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for (dir, at_least) in [("crates/ipn-store/src", 10), ("src/services", 4)] {
            let mut offenders = Vec::new();
            let mut modules = 0;
            for entry in std::fs::read_dir(root.join(dir)).expect(dir) {
                let path = entry.expect("entry").path();
                if path.extension().is_none_or(|ext| ext != "rs") {
                    continue;
                }
                modules += 1;
                let source = std::fs::read_to_string(&path).expect("module source");
                let code = source.split("#[cfg(test)]").next().unwrap_or_default();
                for clock in ["Utc::now", "SystemTime::now", "Local::now", "Instant::now"] {
                    if code.contains(clock) {
                        offenders.push(format!("{}: {clock}", path.display()));
                    }
                }
            }
            assert!(modules >= at_least, "read {modules} modules of {dir}");
            assert!(offenders.is_empty(), "{dir} reads the clock: {offenders:?}");
        }
    }
}
