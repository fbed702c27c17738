//! Two status vocabularies that must not be confused:
//!
//! - [`OrderStatus`]: what the *processor* says in `ORDERSTATUS` (docs/protocol.md §2.1).
//!   It describes one notification, can arrive out of order and repeat.
//! - [`OrderState`]: what *we* conclude about a merchant order after
//!   reconciling every notification received for it (design "Order states").
//!   It is derived from accumulated facts (see [`super::reconcile`]), never
//!   copied from the last notification.

use strum::{EnumCount, EnumString, IntoStaticStr, VariantArray};

/// The longest prefix of an unrecognized value that we keep or show.
pub const UNKNOWN_VALUE_MAX_CHARS: usize = 40;

/// Clips `value` to `max_chars` characters and replaces control characters
/// with `?`, so that a value we do not understand can be shown in a log line
/// or a review item without letting it forge lines or grow without bound.
pub(crate) fn clip_for_display(value: &str, max_chars: usize) -> String {
    value
        .chars()
        .take(max_chars)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A value of the processor's `ORDERSTATUS` field (docs/protocol.md §2.1).
///
/// The wire values are derived from the variant names (SCREAMING_SNAKE,
/// `PaymentAuthorized` is `PAYMENT_AUTHORIZED`), except where the processor
/// spells a value its own way. Parsing is exact and case-sensitive: the
/// processor only ever sends upper case, and a value we do not recognize
/// exactly must go to a human, not be guessed at.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    IntoStaticStr,
    EnumString,
    strum::Display,
    VariantArray,
    EnumCount,
)]
#[strum(
    serialize_all = "SCREAMING_SNAKE_CASE",
    parse_err_ty = UnknownOrderStatus,
    parse_err_fn = UnknownOrderStatus::new
)]
pub enum OrderStatus {
    /// Order placed, waiting for bank authorization.
    Pending,
    /// Purchase-order flow: PO approved, shopper has not paid yet.
    PurchasePending,
    /// Waiting for processor-side processing or anti-fraud review.
    PendingApproval,
    /// The bank authorized the payment (also re-sent on approval/shipping).
    PaymentAuthorized,
    /// Money received for offline methods (wire, SEPA direct debit).
    PaymentReceived,
    /// Product needs a delivery confirmation before completion.
    PendingOrderApproval,
    /// Order finished; may be re-sent when an invoice is generated.
    Complete,
    /// A full or partial refund was approved; amounts are shown negative.
    Refund,
    /// Authorization released before capture.
    Reversed,
    Canceled,
    Suspect,
    Invalid,
    /// Handled like COMPLETE by the vendor's own plugin. One word on the
    /// wire, unlike the other statuses.
    #[strum(serialize = "AUTHRECEIVED")]
    AuthReceived,
    /// Discontinued.
    Processing,
    /// Discontinued: test orders are flagged with TEST_ORDER now.
    Test,
}

/// What a processor status means for the order, which is all the state
/// machine needs to know about it (docs/protocol.md §10, "Status mapping").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusCategory {
    /// Progress without money: recorded, no state change.
    Pending,
    /// The payment was authorized.
    Authorization,
    /// The money was captured or received: the order is paid.
    Payment,
    /// Money went back to the shopper.
    Refund,
    /// The authorization was released (or a chargeback).
    Reversal,
    Cancellation,
    /// The processor considers the order fraudulent or invalid.
    Suspect,
}

/// `ORDERSTATUS` held a value that is not in §2.1.
///
/// The message quotes the value, clipped: a status is not personal data, and
/// the operator needs to see what the processor started sending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown ORDERSTATUS `{0}`")]
pub struct UnknownOrderStatus(String);

impl UnknownOrderStatus {
    fn new(value: &str) -> Self {
        Self(clip_for_display(value, UNKNOWN_VALUE_MAX_CHARS))
    }

    /// The offending value, clipped to [`UNKNOWN_VALUE_MAX_CHARS`] with
    /// control characters replaced.
    pub fn value(&self) -> &str {
        &self.0
    }
}

string_forms!(
    OrderStatus,
    UnknownOrderStatus,
    "status, in the order of docs/protocol.md §2.1"
);

impl OrderStatus {
    /// What this status does to an order (docs/protocol.md §10).
    pub fn category(self) -> StatusCategory {
        match self {
            OrderStatus::Pending
            | OrderStatus::PurchasePending
            | OrderStatus::PendingApproval
            | OrderStatus::PendingOrderApproval
            | OrderStatus::Processing
            | OrderStatus::Test => StatusCategory::Pending,
            OrderStatus::PaymentAuthorized => StatusCategory::Authorization,
            OrderStatus::Complete | OrderStatus::PaymentReceived | OrderStatus::AuthReceived => {
                StatusCategory::Payment
            }
            OrderStatus::Refund => StatusCategory::Refund,
            OrderStatus::Reversed => StatusCategory::Reversal,
            OrderStatus::Canceled => StatusCategory::Cancellation,
            OrderStatus::Suspect | OrderStatus::Invalid => StatusCategory::Suspect,
        }
    }
}

/// Our reconciled state of a merchant order (design "Order states").
///
/// Stored in the database and shown by the CLI as [`OrderState::as_str`]:
/// the snake_case variant name (`partially_refunded`), which is what the
/// `orders.status` CHECK constraint allows.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    IntoStaticStr,
    EnumString,
    strum::Display,
    VariantArray,
    EnumCount,
)]
#[strum(
    serialize_all = "snake_case",
    parse_err_ty = UnknownOrderState,
    parse_err_fn = UnknownOrderState::new
)]
pub enum OrderState {
    Pending,
    Authorized,
    Paid,
    PartiallyRefunded,
    Refunded,
    Canceled,
    /// Chargeback or authorization reversal.
    Reversed,
    /// The processor flagged the order (fraud review, INVALID, DENIED).
    Suspect,
    /// An amount or currency disagreed with the order: a human must look.
    Mismatch,
}

/// A stored state name that this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown order state `{0}`")]
pub struct UnknownOrderState(String);

impl UnknownOrderState {
    fn new(value: &str) -> Self {
        Self(clip_for_display(value, UNKNOWN_VALUE_MAX_CHARS))
    }
}

string_forms!(OrderState, UnknownOrderState, "state");

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_status_round_trips() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Ok(status));
        }
        assert_eq!(OrderStatus::parse("COMPLETE"), Ok(OrderStatus::Complete));
        assert_eq!(
            OrderStatus::parse("AUTHRECEIVED"),
            Ok(OrderStatus::AuthReceived)
        );
    }

    #[test]
    fn unknown_status_is_a_typed_error_with_a_clipped_value() {
        let err = OrderStatus::parse("complete").unwrap_err();
        assert_eq!(err.value(), "complete");
        assert_eq!(err.to_string(), "unknown ORDERSTATUS `complete`");
        let long = "X".repeat(500);
        assert_eq!(OrderStatus::parse(&long).unwrap_err().value().len(), 40);
        let forged = OrderStatus::parse("A\nlevel=error fake").unwrap_err();
        assert_eq!(forged.value(), "A?level=error fake");
        // Multi-byte characters are clipped on character boundaries.
        let wide = "é".repeat(60);
        assert_eq!(
            OrderStatus::parse(&wide)
                .unwrap_err()
                .value()
                .chars()
                .count(),
            40
        );
    }

    #[test]
    fn status_categories_follow_spec_section_10() {
        use StatusCategory as C;
        let expected = [
            ("PENDING", C::Pending),
            ("PURCHASE_PENDING", C::Pending),
            ("PENDING_APPROVAL", C::Pending),
            ("PAYMENT_AUTHORIZED", C::Authorization),
            ("PAYMENT_RECEIVED", C::Payment),
            ("PENDING_ORDER_APPROVAL", C::Pending),
            ("COMPLETE", C::Payment),
            ("REFUND", C::Refund),
            ("REVERSED", C::Reversal),
            ("CANCELED", C::Cancellation),
            ("SUSPECT", C::Suspect),
            ("INVALID", C::Suspect),
            ("AUTHRECEIVED", C::Payment),
            ("PROCESSING", C::Pending),
            ("TEST", C::Pending),
        ];
        for (wire, category) in expected {
            assert_eq!(
                OrderStatus::parse(wire).unwrap().category(),
                category,
                "{wire}"
            );
        }
    }

    #[test]
    fn every_state_round_trips() {
        for state in OrderState::ALL {
            assert_eq!(OrderState::parse(state.as_str()), Ok(state));
        }
        assert_eq!(
            OrderState::PartiallyRefunded.to_string(),
            "partially_refunded"
        );
        assert!(OrderState::parse("Paid").is_err());
    }

    #[test]
    fn statuses_have_the_spec_wire_forms() {
        assert_string_forms!(
            OrderStatus,
            [
                "PENDING",
                "PURCHASE_PENDING",
                "PENDING_APPROVAL",
                "PAYMENT_AUTHORIZED",
                "PAYMENT_RECEIVED",
                "PENDING_ORDER_APPROVAL",
                "COMPLETE",
                "REFUND",
                "REVERSED",
                "CANCELED",
                "SUSPECT",
                "INVALID",
                "AUTHRECEIVED",
                "PROCESSING",
                "TEST",
            ]
        );
        // The derived spelling of the one-word status is not accepted.
        assert!(OrderStatus::parse("AUTH_RECEIVED").is_err());
    }

    #[test]
    fn states_have_fixed_string_forms() {
        assert_string_forms!(
            OrderState,
            [
                "pending",
                "authorized",
                "paid",
                "partially_refunded",
                "refunded",
                "canceled",
                "reversed",
                "suspect",
                "mismatch",
            ]
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_clips(value in "\\PC{0,100}") {
            match OrderStatus::parse(&value) {
                Ok(status) => prop_assert_eq!(status.as_str(), value),
                Err(err) => prop_assert!(err.value().chars().count() <= UNKNOWN_VALUE_MAX_CHARS),
            }
        }
    }
}
