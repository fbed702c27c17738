//! What becomes of a delivery once the pipeline has judged it: a pure
//! function of the judgement, the message's metadata, the time and the
//! retry policy.
//!
//! | judgement | disposition |
//! | --- | --- |
//! | applied, duplicate, ignored, mismatch | ack |
//! | licence change notification, verified and tokenized | ack (nothing is parked: subscriptions record it, once they exist) |
//! | order_not_found, within the orphan window | delayed retry on the orphan schedule (the last delay repeats) |
//! | order_not_found, window passed | park, with an `orphan_payment` review item |
//! | order_not_found, the body carries a card number | discard, with an `orphan_payment` review item at once (never retried) |
//! | invalid_signature, malformed | park, never retried |
//! | malformed (or invalid_signature), the body carries a card number | discard (with a `pan_detected` review item unless the pipeline opened one) |
//! | database error | delayed retry on the transient schedule; once it is exhausted, park with an `invalid_notification` review item |
//!
//! A body with a card number is never copied to a retry or parking queue,
//! even sealed: its digest, the names of the fields and a review item are
//! all that is kept of it, and the processor can send it again.
//!
//! The two schedules count separately ([`MessageMeta::orphan_attempt`],
//! [`MessageMeta::transient_attempt`]): a database hiccup late in an
//! orphan's window starts the transient schedule from its first delay
//! instead of finding it exhausted, and an unknown order after database
//! failures starts the orphan schedule from its first delay. The transient
//! counter restarts whenever the database answered (an `order_not_found`),
//! so only failures in a row exhaust it.
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
    /// A verified licence change notification (see
    /// [`crate::pipeline::Processed::Licence`]).
    Licence,
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
    /// The body carries a card number: open `review` (if any), then ack
    /// with no copy anywhere. Its record (digest, field names, outcome) is
    /// in the database; the body itself must not outlive this delivery,
    /// not even sealed in a retry or parking queue.
    Discard {
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
    pub fn kind(&self) -> ParkKind {
        match self {
            ParkReason::InvalidSignature(_) => ParkKind::InvalidSignature,
            ParkReason::Malformed(_) => ParkKind::Malformed,
            ParkReason::OrderNotFound => ParkKind::OrderNotFound,
            ParkReason::RetriesExhausted => ParkKind::RetriesExhausted,
        }
    }
}

/// A [`ParkReason`] without its details: the `reason` label of
/// `ipn_parked_total`, every one of which is exported from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::VariantArray)]
pub enum ParkKind {
    InvalidSignature,
    Malformed,
    OrderNotFound,
    RetriesExhausted,
}

impl ParkKind {
    /// Every kind.
    pub const ALL: &[ParkKind] = <ParkKind as strum::VariantArray>::VARIANTS;

    /// The label, and the start of the `x-park-reason` header: the
    /// outcome's name for a refusal or an unknown order.
    pub fn as_str(self) -> &'static str {
        match self {
            ParkKind::InvalidSignature => Outcome::InvalidSignature.as_str(),
            ParkKind::Malformed => Outcome::Malformed.as_str(),
            ParkKind::OrderNotFound => Outcome::OrderNotFound.as_str(),
            ParkKind::RetriesExhausted => "retries_exhausted",
        }
    }
}

impl fmt::Display for ParkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
            ParkReason::OrderNotFound => f.write_str(self.kind().as_str()),
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
    let report = match verdict {
        Verdict::Handled(report) => report,
        Verdict::Licence => return Disposition::Ack,
        Verdict::DatabaseFailed => {
            return match policy.retry_delays.get(meta.transient_attempt as usize) {
                Some(delay) => Disposition::Retry {
                    delay,
                    meta: MessageMeta {
                        transient_attempt: meta.transient_attempt.saturating_add(1),
                        first_seen: Some(first_seen),
                        ..meta.clone()
                    },
                },
                None => Disposition::Park {
                    reason: ParkReason::RetriesExhausted,
                    review: Some(ReviewRequest {
                        kind: ReviewKind::InvalidNotification,
                        order_ref: None,
                        details: format!(
                            "database error after {} retries; parked",
                            meta.transient_attempt
                        ),
                    }),
                },
            };
        }
    };
    let carries_pan = report.pan_fields > 0;
    match report.outcome {
        Outcome::Applied | Outcome::Duplicate | Outcome::Ignored | Outcome::Mismatch => {
            Disposition::Ack
        }
        Outcome::OrderNotFound if carries_pan => Disposition::Discard {
            review: Some(ReviewRequest {
                kind: ReviewKind::OrphanPayment,
                order_ref: report.order_ref.clone(),
                details: format!(
                    "no order {}; the notification was not kept because it carried a card number \
                     ({} field(s), dropped); once the order is imported, re-send the notification \
                     from the processor's control panel",
                    report.order_ref.as_deref().unwrap_or("?"),
                    report.pan_fields
                ),
            }),
        },
        Outcome::OrderNotFound => {
            let waited = (now - first_seen).to_std().unwrap_or(Duration::ZERO);
            if waited < policy.orphan_window {
                // Within the window the last delay repeats, so a short
                // schedule still covers a long window.
                let delays = &policy.retry_delays;
                let delay = delays
                    .get(meta.orphan_attempt as usize)
                    .or_else(|| delays.delays().last().copied());
                if let Some(delay) = delay {
                    return Disposition::Retry {
                        delay,
                        meta: MessageMeta {
                            orphan_attempt: meta.orphan_attempt.saturating_add(1),
                            // The database answered: a later failure
                            // starts the transient schedule afresh.
                            transient_attempt: 0,
                            first_seen: Some(first_seen),
                            ..meta.clone()
                        },
                    };
                }
            }
            Disposition::Park {
                reason: ParkReason::OrderNotFound,
                review: Some(ReviewRequest {
                    kind: ReviewKind::OrphanPayment,
                    order_ref: report.order_ref.clone(),
                    details: format!(
                        "no order {} after {}s of retries{}",
                        report.order_ref.as_deref().unwrap_or("?"),
                        waited.as_secs(),
                        what_it_says(report)
                    ),
                }),
            }
        }
        Outcome::InvalidSignature | Outcome::Malformed if carries_pan => Disposition::Discard {
            // The pipeline opens `pan_detected` itself when it found the
            // card number; one found only by the worker's own scan (a body
            // refused as malformed before tokenizing) needs one here.
            review: (!report.review_items.contains(&ReviewKind::PanDetected)).then(|| {
                ReviewRequest {
                    kind: ReviewKind::PanDetected,
                    order_ref: None,
                    details: format!(
                        "card number in {} field(s) of a notification refused as {}; \
                         the notification was not kept",
                        report.pan_fields,
                        report.outcome.as_str()
                    ),
                }
            }),
        },
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

/// `: COMPLETE of 107.00 EUR under processor reference 71000101`, or
/// nothing when the report does not say.
fn what_it_says(report: &Report) -> String {
    match (&report.order_status, &report.amount, &report.processor_ref) {
        (Some(status), Some(amount), Some(refno)) => {
            format!(": {status} of {amount} under processor reference {refno}")
        }
        _ => String::new(),
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

    /// Metadata after `orphan` unknown-order retries and `transient`
    /// database-failure retries.
    fn meta(orphan: u32, transient: u32, first_seen: Option<i64>) -> MessageMeta {
        MessageMeta {
            orphan_attempt: orphan,
            transient_attempt: transient,
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

    fn with_pan(mut report: Report, recorded: bool) -> Report {
        report.pan_fields = 1;
        if recorded {
            report.review_items.push(ReviewKind::PanDetected);
        }
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
            for report in [report(outcome, None), with_pan(report(outcome, None), true)] {
                assert_eq!(
                    disposition(
                        Verdict::Handled(&report),
                        &meta(0, 0, None),
                        at(0),
                        &policy()
                    ),
                    Disposition::Ack,
                    "{outcome}"
                );
            }
        }
    }

    /// A verified licence change notification is acked, whatever the
    /// metadata says (never retried, never parked: subscriptions will
    /// record it, and the processor has its receipt).
    #[test]
    fn a_licence_change_notification_is_acked() {
        for meta in [meta(0, 0, None), meta(3, 2, Some(0))] {
            assert_eq!(
                disposition(Verdict::Licence, &meta, at(3600), &policy()),
                Disposition::Ack
            );
        }
    }

    #[test]
    fn an_unknown_order_is_retried_through_its_window_then_parked_with_a_review_item() {
        let report = report(Outcome::OrderNotFound, None);
        let first = disposition(
            Verdict::Handled(&report),
            &meta(0, 0, None),
            at(0),
            &policy(),
        );
        assert_eq!(
            first,
            Disposition::Retry {
                delay: Duration::from_secs(5),
                meta: meta(1, 0, Some(0)),
            }
        );
        // Past the schedule but inside the window: the last delay repeats.
        let later = disposition(
            Verdict::Handled(&report),
            &meta(7, 0, Some(0)),
            at(59),
            &policy(),
        );
        assert_eq!(
            later,
            Disposition::Retry {
                delay: Duration::from_secs(30),
                meta: meta(8, 0, Some(0)),
            }
        );
        let parked = disposition(
            Verdict::Handled(&report),
            &meta(8, 0, Some(0)),
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
                let mut said = report.clone();
                said.order_status = Some("COMPLETE".into());
                said.amount = Some(crate::domain::Money::iso("107.00", "EUR").unwrap());
                said.processor_ref = Some("71000101".into());
                assert_eq!(
                    what_it_says(&said),
                    ": COMPLETE of 107.00 EUR under processor reference 71000101"
                );
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
            &meta(0, 0, None),
            at(0),
            &policy(),
        );
        let Disposition::Park { reason, review } = parked else {
            panic!("expected a park, got {parked:?}");
        };
        assert_eq!(reason, ParkReason::Malformed(refusal));
        assert_eq!(reason.kind(), ParkKind::Malformed);
        assert_eq!(reason.to_string(), "malformed:missing_field:REFNOEXT");
        assert_eq!(review, None);

        let invalid = report(Outcome::InvalidSignature, Some(Refusal::new("mismatch")));
        let parked = disposition(
            Verdict::Handled(&invalid),
            &meta(0, 0, None),
            at(0),
            &policy(),
        );
        assert!(matches!(
            parked,
            Disposition::Park { reason: ParkReason::InvalidSignature(ref r), .. } if r.to_string() == "mismatch"
        ));
    }

    #[test]
    fn database_failures_follow_the_schedule_then_park_for_a_person() {
        let retried = disposition(
            Verdict::DatabaseFailed,
            &meta(0, 1, Some(0)),
            at(40),
            &policy(),
        );
        assert_eq!(
            retried,
            Disposition::Retry {
                delay: Duration::from_secs(30),
                meta: meta(0, 2, Some(0)),
            }
        );
        let parked = disposition(
            Verdict::DatabaseFailed,
            &meta(0, 2, Some(0)),
            at(80),
            &policy(),
        );
        let Disposition::Park { reason, review } = parked else {
            panic!("expected a park, got {parked:?}");
        };
        assert_eq!(reason, ParkReason::RetriesExhausted);
        assert_eq!(reason.to_string(), "retries_exhausted:database_error");
        let review = review.expect("a review item");
        assert_eq!(review.kind, ReviewKind::InvalidNotification);
        assert_eq!(review.details, "database error after 2 retries; parked");
    }

    #[test]
    fn a_database_failure_late_in_an_orphans_window_is_retried_not_parked() {
        // Nine orphan retries: far past a schedule of two delays, still in
        // the window. A single shared counter would find the database
        // schedule exhausted and park the notification.
        let late = meta(9, 0, Some(0));
        assert_eq!(
            disposition(Verdict::DatabaseFailed, &late, at(50), &policy()),
            Disposition::Retry {
                delay: Duration::from_secs(5),
                meta: meta(9, 1, Some(0)),
            }
        );
    }

    #[test]
    fn an_unknown_order_after_database_failures_starts_the_orphan_schedule_afresh() {
        // Two database failures exhausted the transient schedule's delays;
        // the unknown order still gets the orphan schedule's first delay,
        // and the database having answered resets the transient count.
        let report = report(Outcome::OrderNotFound, None);
        assert_eq!(
            disposition(
                Verdict::Handled(&report),
                &meta(0, 2, Some(0)),
                at(10),
                &policy()
            ),
            Disposition::Retry {
                delay: Duration::from_secs(5),
                meta: meta(1, 0, Some(0)),
            }
        );
    }

    #[test]
    fn an_unknown_order_with_a_card_number_is_discarded_with_an_orphan_review_item() {
        let report = with_pan(report(Outcome::OrderNotFound, None), false);
        let decided = disposition(
            Verdict::Handled(&report),
            &meta(0, 0, None),
            at(0),
            &policy(),
        );
        let Disposition::Discard {
            review: Some(review),
        } = decided
        else {
            panic!("expected a discard with a review item, got {decided:?}");
        };
        assert_eq!(review.kind, ReviewKind::OrphanPayment);
        assert_eq!(review.order_ref.as_deref(), Some("SHOP-1"));
        assert!(
            review.details.contains("no order SHOP-1"),
            "{}",
            review.details
        );
        assert!(review.details.contains("not kept"), "{}", review.details);
        assert!(review.details.contains("card number"), "{}", review.details);
        assert!(review.details.contains("re-send"), "{}", review.details);
    }

    #[test]
    fn a_refusal_for_a_card_number_is_discarded_never_parked() {
        // The pipeline found it (pan_in_stored_field) and opened
        // `pan_detected` itself: nothing more to open.
        let refusal = Refusal::with_field("pan_in_stored_field", "REFNOEXT");
        let recorded = with_pan(report(Outcome::Malformed, Some(refusal)), true);
        assert_eq!(
            disposition(
                Verdict::Handled(&recorded),
                &meta(0, 0, None),
                at(0),
                &policy()
            ),
            Disposition::Discard { review: None }
        );
        // Found by the worker's own scan of a body refused before the
        // pipeline's scan: the review item is opened on the way out.
        let unparsable = with_pan(
            report(Outcome::Malformed, Some(Refusal::new("repeated_field"))),
            false,
        );
        let decided = disposition(
            Verdict::Handled(&unparsable),
            &meta(0, 0, None),
            at(0),
            &policy(),
        );
        let Disposition::Discard {
            review: Some(review),
        } = decided
        else {
            panic!("expected a discard with a review item, got {decided:?}");
        };
        assert_eq!(review.kind, ReviewKind::PanDetected);
        assert!(review.details.contains("malformed"), "{}", review.details);
        assert_eq!(review.order_ref, None, "a refused body names no order");
        // The pure rule holds for an invalid signature too, should a report
        // ever say so (the worker does not scan those: see consume.rs).
        let invalid = with_pan(
            report(Outcome::InvalidSignature, Some(Refusal::new("mismatch"))),
            false,
        );
        assert!(matches!(
            disposition(
                Verdict::Handled(&invalid),
                &meta(0, 0, None),
                at(0),
                &policy()
            ),
            Disposition::Discard { review: Some(_) }
        ));
    }

    #[test]
    fn park_kinds_are_the_labels_and_header_prefixes() {
        let labels: Vec<&str> = ParkKind::ALL.iter().map(|kind| kind.as_str()).collect();
        assert_eq!(
            labels,
            [
                "invalid_signature",
                "malformed",
                "order_not_found",
                "retries_exhausted"
            ]
        );
        let refusal = Refusal::new("mismatch");
        for reason in [
            ParkReason::InvalidSignature(refusal.clone()),
            ParkReason::Malformed(refusal),
            ParkReason::OrderNotFound,
            ParkReason::RetriesExhausted,
        ] {
            assert!(reason.to_string().starts_with(reason.kind().as_str()));
        }
    }
}
