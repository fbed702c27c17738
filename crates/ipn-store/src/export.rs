//! The forms data leaves the daemon in (CSV, JSON, tables), shared by every
//! export so that one time looks the same wherever it is read.

/// The one form times are exported in: RFC 3339, UTC, whole seconds
/// (`2026-11-02T09:20:44Z`). Sub-second digits and `+00:00` offsets are
/// what chrono writes by default; some spreadsheets read neither, and two
/// forms of the same time in one export make it harder to compare.
pub mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::Serializer;

    /// `2026-11-02T09:20:44Z`.
    pub fn format(at: &DateTime<Utc>) -> String {
        at.to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    /// Serde `serialize_with` for a time.
    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(at))
    }

    /// Serde `serialize_with` for an optional time (`null` when absent).
    pub fn option<S: Serializer>(
        at: &Option<DateTime<Utc>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => serialize(at, serializer),
            None => serializer.serialize_none(),
        }
    }
}
