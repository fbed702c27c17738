//! What becomes of a delivery once the pipeline has judged it: a pure
//! function of the judgement, the message's metadata, the time and the
//! retry policy.
//!
//! | judgement | disposition |
//! | --- | --- |
//! | applied, duplicate, ignored, mismatch | ack |
//! | order_not_found, within the orphan window | delayed retry (the last delay repeats) |
//! | order_not_found, window passed | park, with an `orphan_payment` review item |
//! | invalid_signature, malformed (incl. a card number in a stored field) | park, never retried |
//! | database error | delayed retry; once the schedule is exhausted, park with an `invalid_notification` review item |
//!
//! Keeping this free of I/O is what lets the table above be its unit
//! tests; [`super::settle`] carries a disposition out.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{Outcome, ReviewKind};
use crate::pipeline::{Refusal, Report};
use crate::queue::{MessageMeta, RetryDelays};

/// The worker's retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispositionPolicy {
    /// The broker-side retry schedule.
    pub retry_delays: RetryDelays,
    /// How long a notification for an unknown order keeps being retried.
    pub orphan_window: Duration,
}

/// What the pipeline said about a delivery.
#[derive(Debug, Clone, Copy)]
pub enum Verdict<'a> {
    /// The notification was judged and its result recorded.
    Handled(&'a Report),
    /// Nothing could be recorded: the database failed (after the store's
    /// own bounded in-process retries).
    DatabaseFailed,
}

/// What to do with a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    Ack,
    /// Publish a copy with `meta` to the retry queue of `delay`, then ack.
    Retry {
        delay: Duration,
        meta: MessageMeta,
    },
    /// Open `review` (if any), publish a copy to the parking queue, then ack.
    Park {
        reason: ParkReason,
        review: Option<ReviewRequest>,
    },
}

/// Why a message was parked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParkReason {
    /// The signature did not verify.
    InvalidSignature(Refusal),
    /// The body could not be parsed or tokenized.
    Malformed(Refusal),
    /// The order never appeared within the orphan window.
    OrderNotFound,
    /// The database kept failing through the whole retry schedule.
    RetriesExhausted,
}

impl ParkReason {
    /// The label of the `ipn_parked_total` metric: a closed set.
    pub fn kind(&self) -> &'static str {
        match self {
            ParkReason::InvalidSignature(_) => Outcome::InvalidSignature.as_str(),
            ParkReason::Malformed(_) => Outcome::Malformed.as_str(),
            ParkReason::OrderNotFound => Outcome::OrderNotFound.as_str(),
            ParkReason::RetriesExhausted => "retries_exhausted",
        }
    }
}

/// The text kept in the parked message's `x-park-reason` header:
/// `invalid_signature:mismatch`, `malformed:missing_field:REFNOEXT`,
/// `order_not_found`, `retries_exhausted:database_error`.
impl fmt::Display for ParkReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParkReason::InvalidSignature(refusal) | ParkReason::Malformed(refusal) => {
                write!(f, "{}:{refusal}", self.kind())
            }
            ParkReason::OrderNotFound => f.write_str(self.kind()),
            ParkReason::RetriesExhausted => write!(f, "{}:database_error", self.kind()),
        }
    }
}

/// A review item to open before parking, so a person hears of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRequest {
    pub kind: ReviewKind,
    pub order_ref: Option<String>,
    /// References and durations only, never personal data.
    pub details: String,
}

/// Decides what becomes of a delivery (see the module's table).
pub fn disposition(
    verdict: Verdict<'_>,
    meta: &MessageMeta,
    now: DateTime<Utc>,
    policy: &DispositionPolicy,
) -> Disposition {
    let first_seen = meta.first_seen.unwrap_or(now);
    let next = |delay| Disposition::Retry {
        delay,
        meta: MessageMeta {
            attempt: meta.attempt.saturating_add(1),
            first_seen: Some(first_seen),
            ..meta.clone()
        },
    };
    let report = match verdict {
        Verdict::Handled(report) => report,
        Verdict::DatabaseFailed => {
            return match policy.retry_delays.get(meta.attempt as usize) {
                Some(delay) => next(delay),
                None => Disposition::Park {
                    reason: ParkReason::RetriesExhausted,
                    review: Some(ReviewRequest {
                        kind: ReviewKind::InvalidNotification,
                        order_ref: None,
                        details: format!("database error after {} retries; parked", meta.attempt),
                    }),
                },
            };
        }
    };
    match report.outcome {
        Outcome::Applied | Outcome::Duplicate | Outcome::Ignored | Outcome::Mismatch => {
            Disposition::Ack
        }
        Outcome::OrderNotFound => {
            let waited = (now - first_seen).to_std().unwrap_or(Duration::ZERO);
            if waited < policy.orphan_window {
                // Within the window the last delay repeats, so a short
                // schedule still covers a long window.
                let delays = &policy.retry_delays;
                let delay = delays
                    .get(meta.attempt as usize)
                    .or_else(|| delays.delays().last().copied());
                if let Some(delay) = delay {
                    return next(delay);
                }
            }
            Disposition::Park {
                reason: ParkReason::OrderNotFound,
                review: Some(ReviewRequest {
                    kind: ReviewKind::OrphanPayment,
                    order_ref: report.order_ref.clone(),
                    details: format!(
                        "no order {} after {}s of retries",
                        report.order_ref.as_deref().unwrap_or("?"),
                        waited.as_secs()
                    ),
                }),
            }
        }
        Outcome::InvalidSignature => Disposition::Park {
            reason: ParkReason::InvalidSignature(refusal_of(report)),
            review: None,
        },
        Outcome::Malformed => Disposition::Park {
            reason: ParkReason::Malformed(refusal_of(report)),
            review: None,
        },
    }
}

fn refusal_of(report: &Report) -> Refusal {
    report
        .refusal
        .clone()
        .unwrap_or_else(|| Refusal::new(report.outcome.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> DispositionPolicy {
        DispositionPolicy {
            retry_delays: RetryDelays::parse("5s,30s").expect("delays"),
            orphan_window: Duration::from_secs(60),
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("time")
    }

    fn meta(attempt: u32, first_seen: Option<i64>) -> MessageMeta {
        MessageMeta {
            attempt,
            first_seen: first_seen.map(at),
            ..MessageMeta::received(at(0), None)
        }
    }

    fn report(outcome: Outcome, refusal: Option<Refusal>) -> Report {
        let mut report = Report::rejected("ab".repeat(32), outcome, Refusal::new("x"));
        report.refusal = refusal;
        report.order_ref = Some("SHOP-1".into());
        report
    }

    #[test]
    fn recorded_outcomes_are_acked() {
        for outcome in [
            Outcome::Applied,
            Outcome::Duplicate,
            Outcome::Ignored,
            Outcome::Mismatch,
        ] {
            let report = report(outcome, None);
            assert_eq!(
                disposition(Verdict::Handled(&report), &meta(0, None), at(0), &policy()),
                Disposition::Ack,
                "{outcome}"
            );
        }
    }

    #[test]
    fn an_unknown_order_is_retried_through_its_window_then_parked_with_a_review_item() {
        let report = report(Outcome::OrderNotFound, None);
        let first = disposition(Verdict::Handled(&report), &meta(0, None), at(0), &policy());
        assert_eq!(
            first,
            Disposition::Retry {
                delay: Duration::from_secs(5),
                meta: meta(1, Some(0)),
            }
        );
        // Past the schedule but inside the window: the last delay repeats.
        let later = disposition(
            Verdict::Handled(&report),
            &meta(7, Some(0)),
            at(59),
            &policy(),
        );
        assert_eq!(
            later,
            Disposition::Retry {
                delay: Duration::from_secs(30),
                meta: meta(8, Some(0)),
            }
        );
        let parked = disposition(
            Verdict::Handled(&report),
            &meta(8, Some(0)),
            at(60),
            &policy(),
        );
        match parked {
            Disposition::Park {
                reason: ParkReason::OrderNotFound,
                review: Some(review),
            } => {
                assert_eq!(review.kind, ReviewKind::OrphanPayment);
                assert_eq!(review.order_ref.as_deref(), Some("SHOP-1"));
                assert_eq!(review.details, "no order SHOP-1 after 60s of retries");
            }
            other => panic!("expected an orphan park, got {other:?}"),
        }
    }

    #[test]
    fn refusals_are_parked_at_once_with_their_reason() {
        let refusal = Refusal::with_field("missing_field", "REFNOEXT");
        let malformed = report(Outcome::Malformed, Some(refusal.clone()));
        let parked = disposition(
            Verdict::Handled(&malformed),
            &meta(0, None),
            at(0),
            &policy(),
        );
        let Disposition::Park { reason, review } = parked else {
            panic!("expected a park, got {parked:?}");
        };
        assert_eq!(reason, ParkReason::Malformed(refusal));
        assert_eq!(reason.kind(), "malformed");
        assert_eq!(reason.to_string(), "malformed:missing_field:REFNOEXT");
        assert_eq!(review, None);

        let invalid = report(Outcome::InvalidSignature, Some(Refusal::new("mismatch")));
        let parked = disposition(Verdict::Handled(&invalid), &meta(0, None), at(0), &policy());
        assert!(matches!(
            parked,
            Disposition::Park { reason: ParkReason::InvalidSignature(ref r), .. } if r.to_string() == "mismatch"
        ));
    }

    #[test]
    fn database_failures_follow_the_schedule_then_park_for_a_person() {
        let retried = disposition(
            Verdict::DatabaseFailed,
            &meta(1, Some(0)),
            at(40),
            &policy(),
        );
        assert_eq!(
            retried,
            Disposition::Retry {
                delay: Duration::from_secs(30),
                meta: meta(2, Some(0)),
            }
        );
        let parked = disposition(
            Verdict::DatabaseFailed,
            &meta(2, Some(0)),
            at(80),
            &policy(),
        );
        let Disposition::Park { reason, review } = parked else {
            panic!("expected a park, got {parked:?}");
        };
        assert_eq!(reason, ParkReason::RetriesExhausted);
        assert_eq!(reason.to_string(), "retries_exhausted:database_error");
        assert_eq!(
            review.map(|r| r.kind),
            Some(ReviewKind::InvalidNotification)
        );
    }
}
