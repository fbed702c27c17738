//! What a repeat of a notification tells a person, whatever the order its
//! deliveries arrived in.
//!
//! A notification (one identity) may arrive many times: the processor's
//! retries within its two-day horizon, the copy for a second URL, a manual
//! resend days later, and an attacker's copy with field names swapped. The
//! first delivery to arrive is the one applied; the others change nothing.
//! Two things about them are worth a review item, and the number of items
//! must not depend on which delivery came first:
//!
//! - **Late repeats** of a refund or chargeback: deliveries more than the
//!   retry horizon apart are not the processor's retries of each other, so
//!   each *group* of deliveries (dates chained by gaps within the horizon)
//!   beyond the first may be a genuine second refund. Open items =
//!   groups - 1: a delivery that starts a new group raises one, a delivery
//!   that bridges groups closes the ones it merged.
//! - **Conflicting copies**: a delivery that says something no earlier
//!   delivery of the identity said (names swapped, so another REFNO or
//!   amount) raises one item: items = distinct meanings - 1.

use chrono::{Duration, NaiveDateTime};

use super::tokenize::PROCESSOR_RETRY_HORIZON_HOURS;

/// The number of groups the dates form, where dates no more than the
/// retry horizon apart (directly or through other dates) are one group.
pub fn delivery_groups(dates: &[NaiveDateTime]) -> usize {
    let mut sorted = dates.to_vec();
    sorted.sort();
    let horizon = Duration::hours(PROCESSOR_RETRY_HORIZON_HOURS);
    let mut groups = 0;
    let mut last: Option<NaiveDateTime> = None;
    for date in sorted {
        if last.is_none_or(|previous| date - previous > horizon) {
            groups += 1;
        }
        last = Some(date);
    }
    groups
}

/// What one more delivery of a money-moving notification does to its late
/// repeat items: raise one (it starts a new group) or close some (it joins
/// groups that were apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LateRepeatChange {
    pub raise: bool,
    pub close: usize,
}

/// The change of late repeat items when a delivery dated `new` joins the
/// earlier deliveries dated `earlier` (every delivery of the identity
/// recorded so far, the first included).
pub fn late_repeat_change(earlier: &[NaiveDateTime], new: NaiveDateTime) -> LateRepeatChange {
    let before = delivery_groups(earlier);
    let mut all = earlier.to_vec();
    all.push(new);
    let after = delivery_groups(&all);
    if before == 0 {
        return LateRepeatChange::default();
    }
    LateRepeatChange {
        raise: after > before,
        close: before.saturating_sub(after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn day(days: i64, hours: i64) -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 11, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("date")
            + Duration::days(days)
            + Duration::hours(hours)
    }

    /// Open items after the deliveries arrive in this order.
    fn open_after(dates: &[NaiveDateTime]) -> usize {
        let mut open = 0usize;
        for (index, date) in dates.iter().enumerate() {
            let change = late_repeat_change(&dates[..index], *date);
            open = open + usize::from(change.raise) - change.close;
        }
        open
    }

    #[test]
    fn retries_within_the_horizon_are_one_group() {
        assert_eq!(delivery_groups(&[day(0, 0), day(0, 1), day(1, 20)]), 1);
        assert_eq!(delivery_groups(&[day(0, 0), day(4, 0)]), 2);
        // Chained: each within 48 hours of the next.
        assert_eq!(delivery_groups(&[day(0, 0), day(1, 12), day(3, 0)]), 1);
    }

    #[test]
    fn a_resend_days_later_is_one_item_whatever_arrives_first() {
        let refund = day(0, 0);
        let retry = day(0, 1);
        let resend = day(4, 0);
        assert_eq!(open_after(&[refund, retry, resend]), 1);
        assert_eq!(open_after(&[resend, refund, retry]), 1);
        assert_eq!(open_after(&[retry, resend, refund]), 1);
    }

    #[test]
    fn a_delivery_bridging_two_groups_closes_the_item() {
        let change = late_repeat_change(&[day(0, 0), day(3, 0)], day(1, 12));
        assert_eq!(
            change,
            LateRepeatChange {
                raise: false,
                close: 1
            }
        );
    }

    proptest! {
        #[test]
        fn open_items_are_groups_minus_one_in_any_order(
            hours in prop::collection::vec(0i64..400, 1..8),
            seed in any::<u64>(),
        ) {
            let dates: Vec<NaiveDateTime> = hours.iter().map(|h| day(0, *h)).collect();
            let mut shuffled = dates.clone();
            // A deterministic shuffle from the seed.
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (state >> 33) as usize % (i + 1));
            }
            let expected = delivery_groups(&dates) - 1;
            prop_assert_eq!(open_after(&dates), expected);
            prop_assert_eq!(open_after(&shuffled), expected);
        }
    }
}
