//! The vocabularies of reconciliation: what a decision did ([`Effect`]),
//! what became of a notification ([`Outcome`]), and what a person must look
//! at ([`ReviewKind`], [`NewReviewItem`], [`AutoResolution`]).

use strum::{EnumCount, EnumString, IntoStaticStr, VariantArray};

use crate::status::{UNKNOWN_VALUE_MAX_CHARS, clip_for_display};

/// Whether a decision changed what we know about the order.
///
/// The store should write [`Decision::facts`] in every case: an `Ignored`
/// decision may still fill in [`OrderFacts::processor_ref`].
///
/// Stored in the ledger (`order_events.effect`) as its snake_case name.
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
    parse_err_ty = UnknownEffect,
    parse_err_fn = UnknownEffect::new
)]
pub enum Effect {
    /// A fact changed. The state may or may not have changed (a late
    /// authorization after payment is recorded as a fact but leaves the
    /// order `paid`).
    Applied,
    /// No fact changed; the event is only recorded in the ledger.
    Ignored,
}

/// A stored effect name that this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown effect `{0}`")]
pub struct UnknownEffect(String);

impl UnknownEffect {
    fn new(value: &str) -> Self {
        Self(clip_for_display(value, UNKNOWN_VALUE_MAX_CHARS))
    }
}

string_forms!(Effect, UnknownEffect, "effect");

/// The label reported for a processed notification (metrics, logs, the
/// ledger, the CLI). [`decide`] returns only `Applied`, `Ignored` and
/// `Mismatch`; the other variants are for the shell, which meets those
/// cases before there is an order to decide about.
///
/// The string form is the snake_case name (`order_not_found`), as stored in
/// `notifications.outcome`.
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
    parse_err_ty = UnknownOutcome,
    parse_err_fn = UnknownOutcome::new
)]
pub enum Outcome {
    /// The notification changed the order's facts.
    Applied,
    /// The same notification (same identity: the same signed values) was
    /// already processed; this delivery is recorded as a repeat of it.
    Duplicate,
    /// The notification was recorded but changed nothing.
    Ignored,
    /// An amount or currency disagreed with the order.
    Mismatch,
    /// No order with the notification's REFNOEXT (after the grace period).
    OrderNotFound,
    /// The signature did not verify.
    InvalidSignature,
    /// The body could not be parsed or tokenized.
    Malformed,
}

/// A stored outcome name that this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown outcome `{0}`")]
pub struct UnknownOutcome(String);

impl UnknownOutcome {
    fn new(value: &str) -> Self {
        Self(clip_for_display(value, UNKNOWN_VALUE_MAX_CHARS))
    }
}

string_forms!(Outcome, UnknownOutcome, "outcome");

/// The kinds of review items: exceptions finance must look at.
///
/// Stored in `review_items.kind` and shown by the CLI as the snake_case
/// name (`amount_mismatch`).
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
    parse_err_ty = UnknownReviewKind,
    parse_err_fn = UnknownReviewKind::new
)]
pub enum ReviewKind {
    /// A payment or authorization for another amount than the order's.
    AmountMismatch,
    /// A payment, authorization or refund in another currency.
    CurrencyMismatch,
    /// A second payment under another processor reference (a double
    /// charge); closed by the system once the extra charge is refunded or
    /// charged back under its own reference.
    DuplicatePayment,
    /// The order was both canceled and paid.
    CanceledThenPaid,
    /// The order was paid and reversed (chargeback after capture).
    ReversedAfterPayment,
    /// Refunds exceed the payment.
    OverRefund,
    /// The processor flagged the order.
    Suspect,
    /// An ORDERSTATUS we do not know.
    UnknownStatus,
    /// A `CHARGEBACK_RESOLUTION` we do not know (the documented values are
    /// unverified): recorded as it came, nothing moved.
    UnknownChargebackResolution,
    /// A payment for an order that never appeared (raised by the shell).
    OrphanPayment,
    /// A card number in a notification (raised by [`decide`] and the shell).
    PanDetected,
    /// A notification that could not be processed (raised by the shell).
    InvalidNotification,
    /// A refund under a processor reference that has not paid this order:
    /// held, changes nothing; closed by the system if that payment arrives.
    UnmatchedRefund,
    /// A reversal under a processor reference that neither authorized nor
    /// paid this order: held, changes nothing; closed by the system if that
    /// payment arrives.
    UnmatchedReversal,
    /// A refund, reversal or chargeback delivered again after the
    /// processor's retry horizon: a resend, or a genuine second one of the
    /// same amount. No longer raised ([`PossibleSecondEvent`](Self::PossibleSecondEvent)
    /// replaced it); kept for the items raised before.
    LateRepeat,
    /// A money-moving notice without `MESSAGE_ID` delivered again with
    /// another `IPN_DATE` (crate::repeats): a processor retry, or a
    /// genuine second event of the same values (two refunds of the same
    /// amount). Counted once; a person applies it or accepts it as a
    /// retry. Nothing closes it by itself.
    PossibleSecondEvent,
    /// A copy with the same signed values as an earlier notification but
    /// another meaning (field names changed): changed nothing.
    ConflictingCopy,
    /// A settlement line the ledger does not know: settled, but no payment
    /// with its processor reference or order reference (raised by
    /// `settlement import`).
    SettlementUnknown,
    /// A settlement line for a known payment whose amount differs from the
    /// ledger's by more than the tolerance (raised by `settlement import`).
    SettlementAmountDiffers,
    /// A payment paid but not settled after the configured number of days
    /// (raised by the sweep).
    UnsettledPayment,
    /// A refund in the ledger that no settlement line debited after the
    /// configured number of days (raised by the sweep).
    RefundNotDebited,
    /// A payout (one bank transfer for a batch) whose amount is not the sum
    /// of its batch's net lines (raised by `settlement import --payouts`).
    PayoutTotalDiffers,
    /// An order still pending or authorized after the configured age: it
    /// silently never completed (raised by the sweep).
    StaleOrder,
    /// A settlement line credits back a chargeback (a positive chargeback
    /// or reversal line) that no notice reinstated (no `WON`): a person
    /// books the reinstatement (`book_reinstatement`) or looks further
    /// (raised by `settlement import`).
    SettlementReinstatement,
    /// A settlement line's fee for a payment differs from the commission
    /// the payment's notice carried by more than the tolerance (raised by
    /// `settlement import`; the fee replaces the commission either way).
    FeeDiffers,
    /// A recurring subscription whose paid term ended more than the
    /// configured grace ago, with no paid renewal and no licence notice
    /// saying it expired, went past due or was canceled: a renewal the
    /// processor charged whose notice never arrived, or a renewal engine
    /// that stopped silently (raised by the sweep).
    RenewalMissing,
    /// A renewal paid on a subscription the processor's latest licence
    /// notice before the payment said was disabled or canceled: the
    /// customer may be charged for what they canceled (raised by the
    /// sweep).
    RenewalAfterCancel,
}

/// A stored review kind name that this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown review kind `{0}`")]
pub struct UnknownReviewKind(String);

impl UnknownReviewKind {
    fn new(value: &str) -> Self {
        Self(clip_for_display(value, UNKNOWN_VALUE_MAX_CHARS))
    }
}

string_forms!(ReviewKind, UnknownReviewKind, "review kind");

/// A review item to open. `details` is for the human reading the queue and
/// holds only amounts, references, statuses and field names, never personal
/// data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReviewItem {
    pub kind: ReviewKind,
    /// The payment the item is about, when it is about one.
    pub processor_ref: Option<String>,
    pub details: String,
}

impl NewReviewItem {
    pub fn new(kind: ReviewKind, details: impl Into<String>) -> Self {
        Self {
            kind,
            processor_ref: None,
            details: details.into(),
        }
    }

    /// An item about the payment under `processor_ref`.
    pub fn for_payment(kind: ReviewKind, processor_ref: &str, details: impl Into<String>) -> Self {
        Self {
            kind,
            processor_ref: Some(processor_ref.to_owned()),
            details: details.into(),
        }
    }

    /// The item for card numbers found in `fields` (names only).
    pub fn pan_detected(fields: &[String]) -> Self {
        Self::new(
            ReviewKind::PanDetected,
            format!(
                "card number found in field(s) {}; values dropped",
                fields.join(", ")
            ),
        )
    }
}

/// Review items the system closes because their condition stopped holding
/// (a refund's payment arrived, a double charge was refunded). The store
/// resolves up to `count` open items of `kind` for the order (and payment,
/// when given), oldest first, as resolved by `system` with `note`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoResolution {
    pub kind: ReviewKind,
    pub processor_ref: Option<String>,
    pub count: usize,
    pub note: String,
}
