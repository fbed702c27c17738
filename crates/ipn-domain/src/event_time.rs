//! When money moved, by the processor's word, and where the books are
//! closed.
//!
//! The daemon records a movement when it processes a notice; finance needs
//! the day the money moved. A backlog at month end (an outage, the
//! processor's two days of retries, a replay) would otherwise move revenue
//! into the next month while its fee stays behind. So each movement
//! carries the processor's own date ([`occurred_at`]) beside the time it
//! was recorded, and reports and the journal read the former.
//!
//! The processor writes its dates without a zone (`Y-m-d H:i:s`,
//! `YmdHis`); `processor-timezone` says which zone they are in
//! ([`ProcessorTimeZone`]).
//!
//! A closed period never changes: a movement whose date falls in a period
//! closed when it is recorded is booked at the first instant of the first
//! open period ([`booked_at`]), and listed as late for the period it
//! belongs to. The store applies that rule in the database (a trigger on
//! `money_movements`), so that every path that writes money obeys it; the
//! function here is its statement, and the tests hold the two together.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::journal::MovementKind;
use crate::tokenize::PaymentEvent;

/// The time zone of the processor's date fields (`processor-timezone`),
/// UTC unless set. The processor's documentation speaks of "server time"
/// without naming a zone (docs/protocol.md §17), so it is the operator's
/// to state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessorTimeZone(pub Tz);

impl Default for ProcessorTimeZone {
    fn default() -> Self {
        Self(Tz::UTC)
    }
}

impl ProcessorTimeZone {
    /// The instant a date of the processor names. A time that happens
    /// twice (the hour a clock goes back) is the earlier; a time that never
    /// happens (the hour a clock skips) is read with the offset in force
    /// just before, as a clock that had not changed yet would have written
    /// it.
    pub fn instant(self, local: NaiveDateTime) -> DateTime<Utc> {
        match self.0.from_local_datetime(&local) {
            LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at.with_timezone(&Utc),
            LocalResult::None => {
                let before = local - chrono::Duration::hours(3);
                let offset = self
                    .0
                    .from_local_datetime(&before)
                    .earliest()
                    .map(|at| at.naive_local() - at.naive_utc())
                    .unwrap_or_default();
                Utc.from_utc_datetime(&(local - offset))
            }
        }
    }
}

/// When the money of a movement of `kind` caused by `event` moved, by the
/// processor's dates, or `None` when the notice carries none (then it is
/// dated when recorded).
///
/// - A payment, and the VAT and commission it carries: `PAYMENTDATE`, else
///   `COMPLETE_DATE`, else `IPN_DATE` (the processor's own payment time;
///   `SALEDATE` is when the order was placed, not paid).
/// - Everything else (refunds, chargebacks and what they give back): the
///   notice's `IPN_DATE`, the only date a refund or dispute notice carries.
///   The processor re-sends a notice with a new `IPN_DATE`; the daemon
///   applies the first copy that reaches it, so a copy that got through
///   only after the intake missed the earlier ones is dated by itself.
pub fn occurred_at(
    kind: MovementKind,
    event: &PaymentEvent,
    zone: ProcessorTimeZone,
) -> Option<DateTime<Utc>> {
    let local = if is_capture(kind) {
        event
            .payment_date
            .or(event.complete_date)
            .or(event.ipn_date)
    } else {
        event.ipn_date
    };
    local.map(|at| zone.instant(at))
}

/// Whether a movement of `kind` is the capture of a payment (or what the
/// capture carries), dated by the payment's date.
fn is_capture(kind: MovementKind) -> bool {
    matches!(
        kind,
        MovementKind::Payment | MovementKind::Vat | MovementKind::Commission
    )
}

/// The date the books carry a movement: when it moved (never later than
/// when it was recorded: money cannot move after the daemon heard of it),
/// unless that falls before `open_from`, the first instant of the first
/// open period when it was recorded; then `open_from`. The database's
/// `money_movements_dated` trigger computes the same.
pub fn booked_at(
    occurred: Option<DateTime<Utc>>,
    recorded: DateTime<Utc>,
    open_from: Option<DateTime<Utc>>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let occurred = occurred.map_or(recorded, |at| at.min(recorded));
    let booked = open_from.map_or(occurred, |open| occurred.max(open));
    (occurred, booked)
}

/// Why a close or a reopen was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseError {
    #[error(
        "the books are closed through {current} already: close a later day, or reopen first \
         (books reopen)"
    )]
    NotLater { current: NaiveDate },
    #[error("{through} has not ended yet in {zone}: only a day that is over can be closed")]
    NotOver { through: NaiveDate, zone: String },
    #[error("nothing to reopen: the books are not closed")]
    NothingClosed,
    #[error(
        "the books are closed through {current}: a reopen goes back to an earlier day (or \
         give none to open them all)"
    )]
    NotEarlier { current: NaiveDate },
}

/// Checks a close through day `through`, whose open books would begin at
/// `open_from` (the first instant after it in the books' zone), against
/// the books' current close (`current`, the last day closed) at `now`.
pub fn check_close(
    through: NaiveDate,
    open_from: DateTime<Utc>,
    zone: Tz,
    current: Option<NaiveDate>,
    now: DateTime<Utc>,
) -> Result<(), CloseError> {
    if let Some(current) = current
        && through <= current
    {
        return Err(CloseError::NotLater { current });
    }
    if open_from > now {
        return Err(CloseError::NotOver {
            through,
            zone: zone.name().to_owned(),
        });
    }
    Ok(())
}

/// Checks a reopen back to day `through` (`None`: nothing stays closed)
/// against the current close.
pub fn check_reopen(
    through: Option<NaiveDate>,
    current: Option<NaiveDate>,
) -> Result<(), CloseError> {
    let Some(current) = current else {
        return Err(CloseError::NothingClosed);
    };
    match through {
        Some(day) if day >= current => Err(CloseError::NotEarlier { current }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use proptest::prelude::*;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|day| day.and_hms_opt(h, min, 0))
            .expect("a valid date")
    }

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.from_utc_datetime(&at(y, m, d, h, min))
    }

    #[test]
    fn the_processors_dates_are_read_in_its_zone() {
        let bucharest = ProcessorTimeZone(chrono_tz::Europe::Bucharest);
        // Winter: UTC+2.
        assert_eq!(
            bucharest.instant(at(2026, 11, 30, 23, 30)),
            utc(2026, 11, 30, 21, 30)
        );
        // Summer: UTC+3.
        assert_eq!(
            bucharest.instant(at(2026, 7, 1, 0, 30)),
            utc(2026, 6, 30, 21, 30)
        );
        assert_eq!(
            ProcessorTimeZone::default().instant(at(2026, 11, 30, 23, 30)),
            utc(2026, 11, 30, 23, 30)
        );
    }

    #[test]
    fn a_time_the_clock_skips_or_repeats_still_names_one_instant() {
        let bucharest = ProcessorTimeZone(chrono_tz::Europe::Bucharest);
        // 2026-03-29 03:00 local jumps to 04:00 (UTC+2 to UTC+3): 03:30
        // never happens; read with the winter offset.
        assert_eq!(
            bucharest.instant(at(2026, 3, 29, 3, 30)),
            utc(2026, 3, 29, 1, 30)
        );
        // 2026-10-25 04:00 local goes back to 03:00: 03:30 happens twice;
        // the earlier (summer, UTC+3).
        assert_eq!(
            bucharest.instant(at(2026, 10, 25, 3, 30)),
            utc(2026, 10, 25, 0, 30)
        );
    }

    #[test]
    fn a_late_movement_is_booked_where_the_open_books_begin() {
        let recorded = utc(2026, 12, 7, 10, 0);
        let november = Some(utc(2026, 11, 13, 9, 0));
        let open = Some(utc(2026, 12, 1, 0, 0));
        assert_eq!(
            booked_at(november, recorded, None),
            (utc(2026, 11, 13, 9, 0), utc(2026, 11, 13, 9, 0))
        );
        assert_eq!(
            booked_at(november, recorded, open),
            (utc(2026, 11, 13, 9, 0), utc(2026, 12, 1, 0, 0))
        );
        // No date: when recorded. A date after it: when recorded.
        assert_eq!(booked_at(None, recorded, open), (recorded, recorded));
        assert_eq!(
            booked_at(Some(utc(2026, 12, 9, 0, 0)), recorded, open),
            (recorded, recorded)
        );
    }

    #[test]
    fn a_close_goes_forward_over_days_that_are_over() {
        let zone = chrono_tz::Europe::Bucharest;
        let now = utc(2026, 12, 7, 10, 0);
        let nov30 = NaiveDate::from_ymd_opt(2026, 11, 30).expect("date");
        let open = utc(2026, 11, 30, 22, 0);
        assert_eq!(check_close(nov30, open, zone, None, now), Ok(()));
        assert_eq!(
            check_close(nov30, open, zone, Some(nov30), now),
            Err(CloseError::NotLater { current: nov30 })
        );
        let dec7 = NaiveDate::from_ymd_opt(2026, 12, 7).expect("date");
        assert!(matches!(
            check_close(dec7, utc(2026, 12, 7, 22, 0), zone, None, now),
            Err(CloseError::NotOver { .. })
        ));
    }

    #[test]
    fn a_reopen_goes_back() {
        let oct31 = NaiveDate::from_ymd_opt(2026, 10, 31).expect("date");
        let nov30 = NaiveDate::from_ymd_opt(2026, 11, 30).expect("date");
        assert_eq!(check_reopen(Some(oct31), Some(nov30)), Ok(()));
        assert_eq!(check_reopen(None, Some(nov30)), Ok(()));
        assert_eq!(
            check_reopen(Some(nov30), Some(nov30)),
            Err(CloseError::NotEarlier { current: nov30 })
        );
        assert_eq!(
            check_reopen(Some(oct31), None),
            Err(CloseError::NothingClosed)
        );
    }

    proptest! {
        /// The booked date is never before the open books nor before the
        /// money moved, and equals the movement's date when that is open.
        #[test]
        fn booked_is_the_later_of_moved_and_open(
            moved in 0i64..4_000_000,
            recorded in 0i64..4_000_000,
            open in proptest::option::of(0i64..4_000_000),
        ) {
            let t = |s: i64| Utc.timestamp_opt(1_700_000_000 + s, 0).single().expect("instant");
            let (occurred, booked) = booked_at(Some(t(moved)), t(recorded), open.map(t));
            prop_assert!(occurred <= t(recorded));
            prop_assert!(booked >= occurred);
            if let Some(open) = open {
                prop_assert!(booked >= t(open));
                if occurred >= t(open) {
                    prop_assert_eq!(booked, occurred);
                }
            } else {
                prop_assert_eq!(booked, occurred);
            }
        }
    }
}
