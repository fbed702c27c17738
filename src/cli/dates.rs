//! The dates and periods of the command line: `--from` and `--to` take a
//! date (a whole day, UTC) or an RFC 3339 time, shared by `report`,
//! `export journal`, `settlement import` and `parked requeue --since`.

use chrono::{DateTime, NaiveDate, Utc};

use super::CliError;
use crate::store::ReportPeriod;
use crate::store::reports::{ReportBasis, rfc3339};

/// `--from`: a date is its first instant (00:00 UTC), a time is itself.
pub(crate) fn period_start(text: &str) -> Result<DateTime<Utc>, String> {
    parse_bound(text, false)
}

/// `--to`: a date is included whole (the bound is the next day's 00:00
/// UTC, excluded), a time is itself (excluded).
pub(crate) fn period_end(text: &str) -> Result<DateTime<Utc>, String> {
    parse_bound(text, true)
}

fn parse_bound(text: &str, end_of_day: bool) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let day = if end_of_day {
            day.succ_opt()
        } else {
            Some(day)
        };
        return day
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|at| at.and_utc())
            .ok_or_else(|| "the date is out of range".to_owned());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| {
            "give a date (2026-11-30) or an RFC 3339 time (2026-11-30T12:00:00Z)".to_owned()
        })
}

/// The period of `--from`, `--to` and `--by`; an empty period (from not
/// before to) is a usage error rather than a report of nothing.
pub(crate) fn period(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    by: ReportBasis,
) -> Result<ReportPeriod, CliError> {
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Err(CliError::usage(anyhow::anyhow!(
            "--from {} is not before --to {}: the period is empty (a --to date is included whole)",
            rfc3339::format(&from),
            rfc3339::format(&to)
        )));
    }
    Ok(ReportPeriod { from, to, by })
}
