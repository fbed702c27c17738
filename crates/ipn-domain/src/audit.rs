//! Tamper evidence: the hash chains of the append-only tables, and what an
//! audit says when the books are not what they were.
//!
//! Every row of an append-only table (the ledger, money movements, review
//! resolutions, the action log, settlement lines and payouts, the closes
//! of the books) is sealed by the database when it is written: its digest
//! is [`chain_digest`] of the previous row's digest in its chain and of its
//! own canonical content, and its sequence number is one more than the
//! previous row's. A row changed afterwards no longer matches its digest;
//! a row removed leaves a gap in the numbers (or, for the newest rows, a
//! chain shorter than its recorded head). [`first_break`] is the rule,
//! written once here so that it can be tested; the store applies the same
//! rule in SQL (`ipn_store::audit`), where the rows are.
//!
//! What the chains cannot show (an owner who rewrites a row and re-seals
//! everything after it, heads included) the audit's second half catches
//! as far as the stored facts allow: every order's money and state must
//! be what its sealed ledger and movements add up to. Both halves report
//! a [`Finding`]: the table, the chain and the row, and what differs.

use std::fmt;

use sha2::{Digest, Sha256};

/// The digest that seals a row: SHA-256 (lower-case hex) of the previous
/// row's digest (hex text; nothing for a chain's first row) followed by
/// the row's canonical content (the row as JSON without the chain columns
/// and without nulls, times in UTC, as PostgreSQL's `jsonb` writes it).
///
/// The migration's `audit_chain_digest` computes the same; an auditor can
/// recompute a chain from an export of its rows with this alone.
pub fn chain_digest(previous: Option<&str>, content: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(previous.unwrap_or("").as_bytes());
    hasher.update(content.as_bytes());
    hex::encode(hasher.finalize())
}

/// A row of a chain as stored: its sequence number and digest (either may
/// be missing: a row written with the chains off, or damaged) and its
/// canonical content now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRow {
    pub seq: Option<i64>,
    pub digest: Option<String>,
    pub content: String,
}

/// Why a row breaks its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Break {
    /// The row carries no seal.
    Unsealed,
    /// Its number is not one more than the previous row's: rows before it
    /// were removed (or it was inserted by hand).
    Gap { expected: i64 },
    /// Its content (or the previous row's digest) is not what it was
    /// sealed with: changed after it was written.
    Differs,
}

/// The first row of one chain (its rows in chain order) that breaks it, by
/// its index, or `None` when every row follows from the one before it.
///
/// Each row is checked against the *stored* digest of the previous row, so
/// a changed row is named itself, not every row after it.
pub fn first_break<'a>(rows: impl IntoIterator<Item = &'a ChainRow>) -> Option<(usize, Break)> {
    let mut previous: Option<(i64, Option<&str>)> = None;
    for (index, row) in rows.into_iter().enumerate() {
        let (Some(seq), Some(digest)) = (row.seq, row.digest.as_deref()) else {
            return Some((index, Break::Unsealed));
        };
        let expected = previous.map_or(1, |(seq, _)| seq.saturating_add(1));
        if seq != expected {
            return Some((index, Break::Gap { expected }));
        }
        if chain_digest(previous.and_then(|(_, d)| d), &row.content) != digest {
            return Some((index, Break::Differs));
        }
        previous = Some((seq, Some(digest)));
    }
    None
}

/// Something the audit found that is not as it was written: the first
/// such row of each check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A row breaks its chain ([`first_break`]).
    Chain {
        table: String,
        /// The chain's key column and value (`order_id=12`), or `table`
        /// for a table with one chain.
        chain: String,
        id: i64,
        seq: Option<i64>,
        why: Break,
    },
    /// A chain's newest row is not the head recorded when it was sealed:
    /// its newest rows were removed (or the head was changed).
    Head {
        table: String,
        chain: String,
        /// The newest row found (sequence number and id), if any.
        last: Option<(i64, i64)>,
        /// The head recorded, if any.
        head: Option<i64>,
    },
    /// An order's summary column is not what its movements add up to.
    OrderMoney {
        order_ref: String,
        column: &'static str,
        stored: i64,
        derived: i64,
    },
    /// An order's state is not the state its newest ledger row left.
    OrderState {
        order_ref: String,
        stored: String,
        derived: String,
    },
    /// A payment's captured amount is not what its movements add up to.
    PaymentMoney {
        order_ref: String,
        processor_ref: String,
        stored: i64,
        derived: i64,
    },
    /// A ledger row names a notification that was not verified and
    /// applied.
    LedgerNotification {
        ledger_id: i64,
        order_ref: String,
        notification_id: i64,
        why: String,
    },
    /// A review item says it is resolved but its resolution is gone.
    ResolutionMissing { review_item_id: i64 },
    /// A subscription's order says it was paid and no verified payment
    /// notice of it is stored.
    SubscriptionPaid {
        licence_ref: String,
        processor_ref: String,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Chain {
                table,
                chain,
                id,
                seq,
                why,
            } => {
                let seq = seq.map_or_else(|| "none".to_owned(), |s| s.to_string());
                write!(f, "{table} row id={id} (chain {chain}, seq {seq}): ")?;
                match why {
                    Break::Unsealed => write!(f, "the row carries no seal"),
                    Break::Gap { expected } => write!(
                        f,
                        "the chain skips from seq {} to it: the row(s) before it were removed",
                        expected - 1
                    ),
                    Break::Differs => write!(
                        f,
                        "its content does not match its digest: it was changed after it was \
                         written"
                    ),
                }
            }
            Finding::Head {
                table,
                chain,
                last,
                head,
            } => {
                write!(f, "{table} chain {chain}: ")?;
                match (last, head) {
                    (Some((seq, id)), Some(head)) => write!(
                        f,
                        "ends at seq {seq} (row id={id}) but its head says seq {head}: its \
                         newest row(s) were removed or changed"
                    ),
                    (None, Some(head)) => write!(
                        f,
                        "has no row but its head says seq {head}: its rows were removed"
                    ),
                    (Some((seq, id)), None) => write!(
                        f,
                        "ends at seq {seq} (row id={id}) but has no head: the head was removed"
                    ),
                    (None, None) => write!(f, "neither rows nor head"),
                }
            }
            Finding::OrderMoney {
                order_ref,
                column,
                stored,
                derived,
            } => write!(
                f,
                "orders row {order_ref}: {column} is {stored} but its money movements add up to \
                 {derived}"
            ),
            Finding::OrderState {
                order_ref,
                stored,
                derived,
            } => write!(
                f,
                "orders row {order_ref}: status is {stored} but its newest ledger row left it \
                 {derived}"
            ),
            Finding::PaymentMoney {
                order_ref,
                processor_ref,
                stored,
                derived,
            } => write!(
                f,
                "payments row {processor_ref} of {order_ref}: paid_minor is {stored} but its \
                 payment movements add up to {derived}"
            ),
            Finding::LedgerNotification {
                ledger_id,
                order_ref,
                notification_id,
                why,
            } => write!(
                f,
                "order_events row id={ledger_id} of {order_ref}: names notification \
                 {notification_id}, which {why}"
            ),
            Finding::ResolutionMissing { review_item_id } => write!(
                f,
                "review_items row id={review_item_id} is resolved but review_resolutions has no \
                 row for it: the resolution was removed"
            ),
            Finding::SubscriptionPaid {
                licence_ref,
                processor_ref,
            } => write!(
                f,
                "subscription_orders row {licence_ref}/{processor_ref} is paid but no verified \
                 payment notice of {processor_ref} is stored"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A chain sealed as the database seals it.
    fn sealed(contents: &[String]) -> Vec<ChainRow> {
        let mut previous: Option<String> = None;
        let mut rows = Vec::new();
        for (i, content) in contents.iter().enumerate() {
            let digest = chain_digest(previous.as_deref(), content);
            rows.push(ChainRow {
                seq: Some(i64::try_from(i).expect("small") + 1),
                digest: Some(digest.clone()),
                content: content.clone(),
            });
            previous = Some(digest);
        }
        rows
    }

    #[test]
    fn the_digest_is_sha256_of_the_previous_digest_and_the_content() {
        // The first row of a chain has no previous digest: the same as an
        // empty one.
        assert_eq!(chain_digest(None, "{}"), chain_digest(Some(""), "{}"));
        let first = chain_digest(None, "a");
        assert_eq!(
            first,
            "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
        );
        assert_eq!(chain_digest(Some(&first), "b"), {
            let mut h = Sha256::new();
            h.update(format!("{first}b").as_bytes());
            hex::encode(h.finalize())
        });
    }

    #[test]
    fn a_chain_as_sealed_has_no_break() {
        let rows = sealed(&["{}".to_owned(), "{\"a\": 1}".to_owned()]);
        assert_eq!(first_break(&rows), None);
        assert_eq!(first_break(&[]), None);
    }

    #[test]
    fn an_unsealed_row_is_named() {
        let mut rows = sealed(&["x".to_owned(), "y".to_owned()]);
        rows[1].digest = None;
        assert_eq!(first_break(&rows), Some((1, Break::Unsealed)));
    }

    #[test]
    fn findings_name_the_table_the_chain_and_the_row() {
        let finding = Finding::Chain {
            table: "order_events".into(),
            chain: "order_id=7".into(),
            id: 41,
            seq: Some(3),
            why: Break::Differs,
        };
        let text = finding.to_string();
        assert!(
            text.starts_with("order_events row id=41 (chain order_id=7, seq 3)"),
            "{text}"
        );
        let gap = Finding::Chain {
            table: "review_resolutions".into(),
            chain: "order_ref=SHOP-1".into(),
            id: 9,
            seq: Some(4),
            why: Break::Gap { expected: 3 },
        };
        assert!(gap.to_string().contains("skips from seq 2"), "{gap}");
    }

    proptest! {
        /// Changing any one row's content is found at that row, and only
        /// there.
        #[test]
        fn a_changed_row_is_named(
            contents in prop::collection::vec("[a-z0-9{}\": ]{0,12}", 1..12),
            pick in any::<prop::sample::Index>(),
            extra in "[a-z]{1,4}",
        ) {
            let mut rows = sealed(&contents);
            let at = pick.index(rows.len());
            rows[at].content.push_str(&extra);
            prop_assert_eq!(first_break(&rows), Some((at, Break::Differs)));
        }

        /// Removing any row but the newest leaves a gap at its successor.
        #[test]
        fn a_removed_row_is_named_by_its_successor(
            contents in prop::collection::vec("[a-z]{0,8}", 2..12),
            pick in any::<prop::sample::Index>(),
        ) {
            let mut rows = sealed(&contents);
            let at = pick.index(rows.len() - 1);
            rows.remove(at);
            let expected = i64::try_from(at).expect("small") + 1;
            prop_assert_eq!(first_break(&rows), Some((at, Break::Gap { expected })));
        }

        /// Changing a row's digest along with its content (without
        /// re-sealing what follows) breaks the next row.
        #[test]
        fn a_reforged_row_breaks_the_next(
            contents in prop::collection::vec("[a-z]{0,8}", 2..12),
            pick in any::<prop::sample::Index>(),
        ) {
            let mut rows = sealed(&contents);
            let at = pick.index(rows.len() - 1);
            rows[at].content.push('!');
            let previous = if at == 0 { None } else { rows[at - 1].digest.clone() };
            rows[at].digest = Some(chain_digest(previous.as_deref(), &rows[at].content));
            prop_assert_eq!(first_break(&rows), Some((at + 1, Break::Differs)));
        }
    }
}
