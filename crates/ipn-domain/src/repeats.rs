//! What a repeat of a notification tells a person, whatever the order its
//! deliveries arrived in.
//!
//! A notification (one identity: its signed values without `IPN_DATE`) may
//! arrive many times: the processor's retries within its two-day horizon,
//! the copy for a second URL, a manual resend days later, and an
//! attacker's copy with field names swapped. The first delivery to arrive
//! is the one applied; the others change nothing. Two things about them
//! are worth a review item, and the number of items must not depend on
//! which delivery came first:
//!
//! - **Possible second events.** A notice without `MESSAGE_ID` cannot tell
//!   a processor retry from a genuine second event with the same values: a
//!   second partial refund of the same amount on the same order, issued
//!   two hours after the first, signs exactly the values of the first but
//!   `IPN_DATE`. So every delivery of a money-moving notice (payment,
//!   refund, reversal, chargeback) whose `IPN_DATE` no earlier delivery of
//!   its identity carried is counted once and raises one
//!   `possible_second_event` item: items = distinct dates - 1, in any
//!   arrival order. A copy with a date seen before (the copy for a second
//!   URL, the same bytes re-encoded) raises nothing. A person applies the
//!   repeat (`apply_repeat`) or accepts that it was a retry
//!   (`accept_as_is`); nothing closes such an item by itself, and no date
//!   gap chains one delivery to another. A notice that carries
//!   `MESSAGE_ID` needs no item: the processor's message id is among the
//!   signed values, so two genuine events have two identities and a retry
//!   (same message) has one (docs/protocol.md §11 (f)).
//! - **Conflicting copies**: a delivery that says something no earlier
//!   delivery of the identity said (names swapped, so another REFNO or
//!   amount) raises one item: items = distinct meanings - 1.

use chrono::NaiveDateTime;

/// What the repeat rule needs to know of a delivery that repeats an
/// identity already recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeat {
    /// A payment, refund, reversal or chargeback: a second one would move
    /// money again.
    pub moves_money: bool,
    /// The notice carries a non-empty `MESSAGE_ID`.
    pub carries_message_id: bool,
    /// Its `IPN_DATE`.
    pub ipn_date: Option<NaiveDateTime>,
}

/// Whether a repeat may be a genuine second event of the same values (and
/// so must be judged by a person): a money-moving notice without
/// `MESSAGE_ID`, dated unlike every earlier delivery of its identity
/// (`earlier`, the first included).
pub fn is_possible_second_event(repeat: Repeat, earlier: &[Option<NaiveDateTime>]) -> bool {
    repeat.moves_money
        && !repeat.carries_message_id
        && repeat
            .ipn_date
            .is_some_and(|date| !earlier.contains(&Some(date)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use proptest::prelude::*;

    fn at(minutes: i64) -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 11, 1)
            .and_then(|d| d.and_hms_opt(11, 0, 0))
            .expect("date")
            + Duration::minutes(minutes)
    }

    fn refund(minutes: i64) -> Repeat {
        Repeat {
            moves_money: true,
            carries_message_id: false,
            ipn_date: Some(at(minutes)),
        }
    }

    /// Items raised when the deliveries dated `dates` arrive in this order.
    fn items_after(template: Repeat, dates: &[i64]) -> usize {
        let mut seen: Vec<Option<NaiveDateTime>> = Vec::new();
        let mut items = 0;
        for minutes in dates {
            let repeat = Repeat {
                ipn_date: Some(at(*minutes)),
                ..template
            };
            if !seen.is_empty() && is_possible_second_event(repeat, &seen) {
                items += 1;
            }
            seen.push(repeat.ipn_date);
        }
        items
    }

    #[test]
    fn a_second_refund_two_hours_later_without_message_id_is_judged() {
        assert!(is_possible_second_event(refund(120), &[Some(at(0))]));
        // However close: a retry five minutes later looks the same.
        assert!(is_possible_second_event(refund(5), &[Some(at(0))]));
        // However far: no horizon decides it.
        assert!(is_possible_second_event(
            refund(60 * 24 * 9),
            &[Some(at(0))]
        ));
    }

    #[test]
    fn a_copy_dated_as_an_earlier_delivery_is_no_second_event() {
        // The copy for a second URL, or the same bytes re-encoded.
        assert!(!is_possible_second_event(
            refund(120),
            &[Some(at(0)), Some(at(120))]
        ));
    }

    #[test]
    fn with_message_id_or_without_money_there_is_nothing_to_judge() {
        let with_id = Repeat {
            carries_message_id: true,
            ..refund(120)
        };
        assert!(!is_possible_second_event(with_id, &[Some(at(0))]));
        let pending = Repeat {
            moves_money: false,
            ..refund(120)
        };
        assert!(!is_possible_second_event(pending, &[Some(at(0))]));
        let undated = Repeat {
            ipn_date: None,
            ..refund(120)
        };
        assert!(!is_possible_second_event(undated, &[Some(at(0))]));
    }

    #[test]
    fn no_chaining_a_late_retry_does_not_join_what_is_apart() {
        // First at 0, a retry at 47 h, a second refund at 60 h: two items,
        // whatever a 48-hour horizon would have chained.
        assert_eq!(items_after(refund(0), &[0, 47 * 60, 60 * 60]), 2);
        assert_eq!(items_after(refund(0), &[60 * 60, 0, 47 * 60]), 2);
    }

    proptest! {
        #[test]
        fn items_are_distinct_dates_minus_one_in_any_order(
            minutes in prop::collection::vec(0i64..(60 * 24 * 10), 1..8),
            seed in any::<u64>(),
            carries_message_id in any::<bool>(),
            moves_money in any::<bool>(),
        ) {
            let template = Repeat { moves_money, carries_message_id, ipn_date: None };
            let mut shuffled = minutes.clone();
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (state >> 33) as usize % (i + 1));
            }
            let mut distinct = minutes.clone();
            distinct.sort_unstable();
            distinct.dedup();
            let expected = if moves_money && !carries_message_id { distinct.len() - 1 } else { 0 };
            prop_assert_eq!(items_after(template, &minutes), expected);
            prop_assert_eq!(items_after(template, &shuffled), expected);
        }
    }
}
