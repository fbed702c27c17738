//! The dates and periods of the command line and the console: `--from`
//! and `--to` take a month (`2026-10`), a date (`2026-10-31`) or an RFC
//! 3339 time, shared by `report`, `export journal`, `notifications list`,
//! `sweep --as-of`, `subscriptions list --expiring-before`, `parked requeue
//! --since` and the console's filters.
//!
//! A month or a date is a stretch of the calendar, and where it begins and
//! ends depends on the time zone the books are kept in (`report-timezone`,
//! UTC by default): 1 November in Bucharest begins at 22:00 UTC on 31
//! October. So the command line parses the text into a [`PeriodBound`]
//! (what was typed, refused at once when it is no month, date or time) and
//! the command turns it into an instant once the settings name the zone.
//! A day is the stretch between two local midnights, so a day on which
//! the clocks change lasts 23 or 25 hours.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::CliError;
use crate::store::ReportPeriod;
use crate::store::reports::{ReportBasis, rfc3339};

/// What a person typed for a period's bound, before the time zone says
/// where calendar days begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodBound {
    /// A whole month (`2026-10`), held as its first day.
    Month(NaiveDate),
    /// A whole day (`2026-10-31`).
    Day(NaiveDate),
    /// An instant (RFC 3339, with its offset): no zone applies.
    At(DateTime<Utc>),
}

/// The years a month or a date may name: beyond them the next day or month
/// (the end of a `--to`) and the zone's offsets cannot be computed.
const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

const FORMS: &str = "give a month (2026-11), a date (2026-11-30) or an RFC 3339 time \
(2026-11-30T12:00:00Z)";

impl PeriodBound {
    /// Reads a month (`YYYY-MM`, two digits for the month), a date
    /// (`YYYY-MM-DD`) or an RFC 3339 time; the refusal says which forms
    /// are accepted, and what is wrong with a month that almost is one.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(month) = month_shape(text) {
            return month.map(PeriodBound::Month);
        }
        if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            if !YEARS.contains(&day.year()) {
                return Err(format!(
                    "{text}: the date is out of range (years 0001 to 9999)"
                ));
            }
            return Ok(PeriodBound::Day(day));
        }
        DateTime::parse_from_rfc3339(text)
            .map(|at| PeriodBound::At(at.with_timezone(&Utc)))
            .map_err(|_| format!("{text}: {FORMS}"))
    }

    /// The first instant of the bound: a month's or a day's first local
    /// midnight in `zone`, a time itself (`--from`, included).
    pub fn start(&self, zone: Tz) -> DateTime<Utc> {
        match *self {
            PeriodBound::Month(first) | PeriodBound::Day(first) => day_start(first, zone),
            PeriodBound::At(at) => at,
        }
    }

    /// The end of the bound, excluded: the first instant after a month or
    /// a day (so a `--to` month or date is included whole), a time itself
    /// (`--to`, excluded).
    pub fn end(&self, zone: Tz) -> DateTime<Utc> {
        match *self {
            PeriodBound::Month(first) => day_start(next_month(first), zone),
            PeriodBound::Day(day) => day_start(day.succ_opt().unwrap_or(day), zone),
            PeriodBound::At(at) => at,
        }
    }
}

/// `Some` when `text` is shaped like a month (`YYYY-M` or `YYYY-MM`, digits
/// only): the month, or why it is none. `None` for anything else, which is
/// then read as a date or a time.
fn month_shape(text: &str) -> Option<Result<NaiveDate, String>> {
    let (year, month) = text.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if year.len() != 4 || !digits(year) || !digits(month) || month.len() > 2 {
        return None;
    }
    if month.len() != 2 {
        return Some(Err(format!(
            "{text}: a month has two digits (2026-01 for January)"
        )));
    }
    let (Ok(y), Ok(m)) = (year.parse::<i32>(), month.parse::<u32>()) else {
        return Some(Err(format!("{text}: {FORMS}")));
    };
    Some(
        NaiveDate::from_ymd_opt(y, m, 1)
            .filter(|first| YEARS.contains(&first.year()))
            .ok_or_else(|| format!("{text}: there is no month {month} (01 to 12)")),
    )
}

/// The first day of the month after the one `first` begins (December rolls
/// into January of the next year).
fn next_month(first: NaiveDate) -> NaiveDate {
    let (year, month) = if first.month() == 12 {
        (first.year() + 1, 1)
    } else {
        (first.year(), first.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(first)
}

/// The first instant of `day` in `zone`: its local midnight, the earlier
/// one when the clocks go back across midnight, or the first local time
/// that exists when they skip it (a zone that moves its clocks at 00:00).
pub fn day_start(day: NaiveDate, zone: Tz) -> DateTime<Utc> {
    let midnight = day.and_time(chrono::NaiveTime::MIN);
    // Gaps last at most a few hours; stepping a minute at a time finds the
    // first local time after one.
    let mut local: NaiveDateTime = midnight;
    while local < midnight + Duration::days(1) {
        if let Some(at) = zone.from_local_datetime(&local).earliest() {
            return at.with_timezone(&Utc);
        }
        local += Duration::minutes(1);
    }
    midnight.and_utc()
}

/// A bound's first instant in UTC, as clap reads it, for the options whose
/// dates are the processor's own or the broker's, not the books' periods
/// (`subscriptions list --expiring-before`, `parked requeue --since`).
pub(crate) fn utc_start(text: &str) -> Result<DateTime<Utc>, String> {
    PeriodBound::parse(text).map(|bound| bound.start(Tz::UTC))
}

/// The period of `--from`, `--to` and `--by`, their months and days in
/// `zone`; an empty period (from not before to) is a usage error rather
/// than a report of nothing.
pub(crate) fn period(
    from: Option<PeriodBound>,
    to: Option<PeriodBound>,
    by: ReportBasis,
    zone: Tz,
) -> Result<ReportPeriod, CliError> {
    let (from, to) = instants(from, to, zone)?;
    Ok(ReportPeriod { from, to, by })
}

/// A period's start (included) and end (excluded); none for an open bound.
pub(crate) type Instants = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// `--from` and `--to` as instants in `zone`, refused when the period is
/// empty.
pub(crate) fn instants(
    from: Option<PeriodBound>,
    to: Option<PeriodBound>,
    zone: Tz,
) -> Result<Instants, CliError> {
    let from = from.map(|b| b.start(zone));
    let to = to.map(|b| b.end(zone));
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Err(CliError::usage(anyhow::anyhow!(
            "--from {} is not before --to {}: the period is empty (a --to month or date is \
             included whole)",
            rfc3339::format(&from),
            rfc3339::format(&to)
        )));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use chrono_tz::Europe::Bucharest;
    use proptest::prelude::*;

    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("test time")
            .with_timezone(&Utc)
    }

    #[test]
    fn a_month_is_its_first_instant_to_the_first_instant_of_the_next() {
        let october = PeriodBound::parse("2026-10").expect("a month");
        assert_eq!(october.start(Tz::UTC), utc("2026-10-01T00:00:00Z"));
        assert_eq!(october.end(Tz::UTC), utc("2026-11-01T00:00:00Z"));
        let december = PeriodBound::parse("2026-12").expect("a month");
        assert_eq!(december.end(Tz::UTC), utc("2027-01-01T00:00:00Z"));
        let february = PeriodBound::parse("2028-02").expect("a leap year");
        assert_eq!(february.end(Tz::UTC), utc("2028-03-01T00:00:00Z"));
    }

    #[test]
    fn a_date_is_included_whole_and_a_time_is_itself() {
        let day = PeriodBound::parse("2026-11-30").expect("a date");
        assert_eq!(day.start(Tz::UTC), utc("2026-11-30T00:00:00Z"));
        assert_eq!(day.end(Tz::UTC), utc("2026-12-01T00:00:00Z"));
        let at = PeriodBound::parse("2026-11-30T12:00:00+02:00").expect("a time");
        assert_eq!(at.start(Bucharest), utc("2026-11-30T10:00:00Z"));
        assert_eq!(at.end(Bucharest), utc("2026-11-30T10:00:00Z"));
    }

    #[test]
    fn months_that_are_not_are_refused_with_what_is_wrong() {
        let thirteen = PeriodBound::parse("2026-13").expect_err("no month 13");
        assert!(thirteen.contains("no month 13"), "{thirteen}");
        let zero = PeriodBound::parse("2026-00").expect_err("no month 0");
        assert!(zero.contains("no month 00"), "{zero}");
        let short = PeriodBound::parse("2026-1").expect_err("one digit");
        assert!(short.contains("two digits"), "{short}");
        let words = PeriodBound::parse("October").expect_err("a word");
        assert!(words.contains("give a month (2026-11)"), "{words}");
        assert!(PeriodBound::parse("26-10").is_err());
        assert!(PeriodBound::parse("2026-10-32").is_err());
        assert!(PeriodBound::parse("0000-01").is_err());
    }

    #[test]
    fn in_bucharest_a_day_begins_at_its_local_midnight() {
        let november = PeriodBound::parse("2026-11").expect("a month");
        // EET, UTC+2, in November.
        assert_eq!(november.start(Bucharest), utc("2026-10-31T22:00:00Z"));
        assert_eq!(november.end(Bucharest), utc("2026-11-30T22:00:00Z"));
        // EEST, UTC+3, in July.
        let july = PeriodBound::parse("2026-07-15").expect("a date");
        assert_eq!(july.start(Bucharest), utc("2026-07-14T21:00:00Z"));
    }

    #[test]
    fn a_day_when_the_clocks_change_lasts_23_or_25_hours() {
        let hours = |text: &str| {
            let day = PeriodBound::parse(text).expect("a date");
            (day.end(Bucharest) - day.start(Bucharest)).num_hours()
        };
        assert_eq!(hours("2026-10-25"), 25, "clocks go back");
        assert_eq!(hours("2026-03-29"), 23, "clocks go forward");
        assert_eq!(hours("2026-10-26"), 24);
        assert_eq!(hours("2026-10-25"), 25);
        // The month holding the change is an hour longer than its days.
        let october = PeriodBound::parse("2026-10").expect("a month");
        assert_eq!(
            (october.end(Bucharest) - october.start(Bucharest)).num_hours(),
            31 * 24 + 1
        );
        let march = PeriodBound::parse("2026-03").expect("a month");
        assert_eq!(
            (march.end(Bucharest) - march.start(Bucharest)).num_hours(),
            31 * 24 - 1
        );
    }

    #[test]
    fn a_zone_that_skips_midnight_begins_the_day_when_the_clocks_resume() {
        // America/Santiago moved its clocks forward at 00:00 on
        // 2026-09-06 (to 01:00, UTC-3): the day begins at 04:00 UTC.
        let day = PeriodBound::parse("2026-09-06").expect("a date");
        let start = day.start(chrono_tz::America::Santiago);
        assert_eq!(start, utc("2026-09-06T04:00:00Z"));
    }

    #[test]
    fn an_empty_period_is_a_usage_error() {
        let from = PeriodBound::parse("2026-11").ok();
        let to = PeriodBound::parse("2026-10").ok();
        assert!(instants(from, to, Tz::UTC).is_err());
        let same = PeriodBound::parse("2026-11").ok();
        let (a, b) = instants(same, same, Tz::UTC).expect("a month from and to itself");
        assert_eq!(a, Some(utc("2026-11-01T00:00:00Z")));
        assert_eq!(b, Some(utc("2026-12-01T00:00:00Z")));
    }

    fn zones() -> impl Strategy<Value = Tz> {
        prop_oneof![
            Just(Tz::UTC),
            Just(Bucharest),
            Just(chrono_tz::America::New_York),
            Just(chrono_tz::America::Santiago),
            Just(chrono_tz::Australia::Lord_Howe),
            Just(chrono_tz::Asia::Kolkata),
            Just(chrono_tz::Pacific::Chatham),
        ]
    }

    proptest! {
        /// `--from M --to M` covers exactly the days of month M: it begins
        /// where its first day begins, ends where the next month's first
        /// day begins (December into the next year), and every day of the
        /// month, and no other, starts inside it.
        #[test]
        fn a_month_covers_exactly_its_days(year in 1971i32..2100, month in 1u32..=12, zone in zones()) {
            let text = format!("{year:04}-{month:02}");
            let bound = PeriodBound::parse(&text).expect("a month");
            let (from, to) = (bound.start(zone), bound.end(zone));
            let first = NaiveDate::from_ymd_opt(year, month, 1).expect("first day");
            prop_assert_eq!(from, day_start(first, zone));
            let next = if month == 12 {
                NaiveDate::from_ymd_opt(year + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(year, month + 1, 1)
            }
            .expect("next month");
            prop_assert_eq!(to, day_start(next, zone));
            let days = first.iter_days().take_while(|d| *d < next).count();
            prop_assert!((28..=31).contains(&days));
            // The days of the month tile the period: each begins where the
            // one before ended.
            let mut at = from;
            for day in first.iter_days().take(days) {
                let d = PeriodBound::Day(day);
                prop_assert_eq!(d.start(zone), at);
                prop_assert!(d.end(zone) > d.start(zone));
                at = d.end(zone);
            }
            prop_assert_eq!(at, to);
            // Its first instant is in the month in that zone, the instant
            // before is not.
            prop_assert_eq!(from.with_timezone(&zone).date_naive(), first);
            let before = from - Duration::seconds(1);
            prop_assert!(before.with_timezone(&zone).date_naive() < first);
        }

        /// Whatever is typed, parsing never panics, and a month, a date or
        /// a time gives a bound whose end is never before its start.
        #[test]
        fn any_text_is_a_bound_or_a_refusal(text in "\\PC{0,30}", zone in zones()) {
            if let Ok(bound) = PeriodBound::parse(&text) {
                prop_assert!(bound.end(zone) >= bound.start(zone));
            }
        }

        #[test]
        fn a_typed_month_reads_back(year in 1i32..=9999, month in 1u32..=12) {
            let bound = PeriodBound::parse(&format!("{year:04}-{month:02}"));
            prop_assert_eq!(
                bound,
                Ok(PeriodBound::Month(NaiveDate::from_ymd_opt(year, month, 1).expect("a month")))
            );
        }
    }
}
