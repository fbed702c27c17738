//! What became of one request to the intake: the `result` label of
//! `ipn_intake_requests_total`.
//!
//! A closed set, written once here: the handler and the listener count
//! with these values, and the metrics export every one of them at zero
//! from the start (so `increase()` sees the first refusal after a restart).

/// The result of one intake request (or of a connection dropped before
/// it made one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum IntakeResult {
    /// Durably queued and answered with the receipt (200).
    Queued,
    /// Any path but the intake's (404).
    NotFound,
    /// The caller is not in the allow-list (403).
    SourceRefused,
    /// Not `application/x-www-form-urlencoded` (415).
    UnsupportedMediaType,
    /// Over the size limit (413).
    TooLarge,
    /// The body did not arrive within `intake-body-timeout` (408).
    BodyTimeout,
    /// The body could not be read to its end (400).
    IncompleteBody,
    /// The body is not a form the processor sends (400).
    Malformed,
    /// A field every notification carries is missing (400).
    MissingField,
    /// A field of `expected-fields` is missing (400).
    MissingExpectedField,
    /// A field the worker requires cannot be read (400).
    InvalidField,
    /// The signature did not verify at the edge (403).
    InvalidSignature,
    /// The body could not be sealed (503).
    SealFailed,
    /// The broker is away or refused the message (503).
    BrokerUnavailable,
    /// The broker did not confirm in time (503).
    BrokerTimeout,
    /// Connection closed: no request header in time.
    HeaderTimeout,
    /// Connection refused over the connection cap (503).
    TooManyConnections,
    /// Connection refused over the per-client cap (503).
    TooManyFromClient,
}

impl IntakeResult {
    /// Every result.
    pub const ALL: &[IntakeResult] = <IntakeResult as strum::VariantArray>::VARIANTS;

    /// The label value (`queued`, `too_large`, ...).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written out: the labels are what dashboards and alert rules match,
    /// so renaming a variant must not change one silently.
    #[test]
    fn labels_are_the_documented_names() {
        let labels: Vec<&str> = IntakeResult::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            labels,
            [
                "queued",
                "not_found",
                "source_refused",
                "unsupported_media_type",
                "too_large",
                "body_timeout",
                "incomplete_body",
                "malformed",
                "missing_field",
                "missing_expected_field",
                "invalid_field",
                "invalid_signature",
                "seal_failed",
                "broker_unavailable",
                "broker_timeout",
                "header_timeout",
                "too_many_connections",
                "too_many_from_client",
            ]
        );
    }
}
