//! A faithful, seeded simulation of the payment processor: orders, the
//! notifications it would send for them (with every anomaly the real world
//! adds), and the final state each order must reach.
//!
//! [`simulate`] is pure (no I/O, no clock, no global randomness): the same
//! [`SimulationConfig`] and key give the same bytes on every run, machine and
//! crate version, because the generator is this module's own
//! [`rng::Rng`] (see there why not the `rand` crate). The writers in
//! [`write`](mod@write) put a simulation on disk; the `simulate` command wires both.
//!
//! # What is simulated
//!
//! Each order gets a [`Story`] (paid, refunded, chargeback, suspect, ...,
//! see its variants) told as a sequence of notifications with increasing
//! `IPN_DATE`, dressed as realistic bodies (docs/protocol.md §1.1 field order, fake
//! customers with UTF-8 names, several product lines, totals per docs/protocol.md §10)
//! and signed with SHA-256 and SHA3-256 by [`crate::ipn::sign`].
//!
//! Anomalies, each at its own rate ([`AnomalyRates`]):
//!
//! | anomaly | unit | what is delivered | expected effect |
//! |---|---|---|---|
//! | duplicates | per notification | the exact same body again, later | `duplicate`, no change |
//! | out of order | per order | the order's notifications shuffled | same final state (facts commute) |
//! | tampered | per order | an extra forged copy of one notification with another amount and the old signatures; the genuine one is delivered too | `invalid_signature` |
//! | amount mismatch | per order | the story becomes [`Story::AmountMismatch`] | `mismatch`, review `amount_mismatch`, never paid |
//! | unknown orders | per order | an extra order whose reference is *not* in the orders CSV | `order_not_found`; review `orphan_payment` per notification once the retry window passes |
//! | card number in free text | per order | a Luhn-valid test card number in `IPN_INFO[]` or `SHOPPER_REFERENCE_NUMBER` of one notification | value dropped, review `pan_detected`, the notification otherwise applies |
//! | processor retries | per notification* | the same notification stamped with a new `IPN_DATE` minutes to 36 hours later, signed again | `duplicate` |
//! | second URL copies | per notification* | the copy for a second notification URL: SHA-256 only or SHA3-256 only, stamped seconds later | `duplicate` |
//! | manual resends | per notification* | resent from the control panel 3 to 10 days later | `duplicate` (the simulator's notices carry `MESSAGE_ID`, so no `possible_second_event`) |
//! | re-encoded copies | per notification* | the same values in other bytes: a digit of REFNO percent-escaped, a trailing `&`, or an unsigned field the reconciler does not read renamed | `duplicate` |
//! | stripped signatures | per order* | a copy of one notification without its SHA3-256 signature, or without any | `duplicate` (SHA-256 still verifies), or `invalid_signature` |
//! | renamed expected fields | per test or fraud-denied order*, with [`SimulationConfig::expected_fields`] | an attacker's copy with `TEST_ORDER` or `FRAUD_STATUS` renamed | `malformed`, no change |
//! | double charges | per order* | the story becomes [`Story::DoubleChargeRefunded`] or [`Story::DoubleChargeOpen`] | `paid` twice; refunded once and nothing open, or review `duplicate_payment` |
//! | foreign reversals | per order* | the story becomes [`Story::ForeignReversal`] | stays `paid`, review `unmatched_reversal` |
//! | conflicting copies | per order* | the story becomes [`Story::ConflictingCopy`]: its PENDING also comes with two field names swapped, a layout the processor never sends | `malformed` (parked), no change |
//!
//! (*) Known orders only (see `Generator::copies` for why);
//! plus [`SimulationConfig::test_orders`]: orders whose notifications carry
//! `TEST_ORDER=1` ([`Story::TestOrder`]), ignored by default.
//!
//! Copies other than exact duplicates have the identity of their
//! notification (docs/protocol.md §11 (a)), so the first of them to arrive
//! counts, whichever it is, and the others are `duplicate`: the expected
//! outcome counts and final states hold in every arrival order. The
//! processor's own copies are delivered after the genuine one; copies made
//! on the way (re-encoded, stripped, renamed, swapped) may overtake it.
//!
//! # The expectation is an independent oracle
//!
//! [`ExpectedOrder`]s are derived from each story's intent and the
//! conventions of docs/protocol.md §10 ("a refunded story ends refunded with paid =
//! refunded = the total"), never by running
//! [`crate::domain::reconcile::decide`]. A test that replays a simulation
//! through the pipeline and compares with the expectation therefore checks
//! the reconciler against the specification, not against itself.
//!
//! Review kinds are expected as a *multiset* (sorted by name) of the items
//! still *open* at the end: every kind a story implies is raised exactly
//! once per cause (once per order for `suspect`, `reversed_after_payment`,
//! `amount_mismatch`, `duplicate_payment` and `unmatched_reversal`; once
//! per notification for `pan_detected` and
//! `orphan_payment`), and a
//! duplicate delivery must not raise anything again. Items the system
//! closes by itself (a refund that overtook its payment, a double charge
//! refunded) are not expected: whether they were ever opened depends on the
//! arrival order, whether they are open at the end does not. Comparing
//! multisets catches an item raised twice, which comparing sets would hide.

pub mod api;
pub mod deliver;
pub mod rng;
pub mod settlement;
pub mod vendor;
pub mod write;

mod body;
mod people;
mod story;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeDelta};

use crate::domain::{Currencies, Currency, Money, OrderState, Outcome, ReviewKind};
use crate::ipn::{Algorithm, Field, FormError, NoticeKind, SecretKey};
use crate::store::NewOrder;

pub use body::{ALGORITHMS, PanSpot};
pub use people::Customer;
pub use rng::Rng;
pub use story::Story;
pub use write::{
    WriteError, body_file_name, write_all, write_bodies, write_expected_json, write_manifest_json,
    write_orders_csv,
};

use body::{Line, OrderContext};
use story::ExpectedEffect;

/// The probability of each anomaly, each in `0..=1` (see the module docs
/// for what each one counts per).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnomalyRates {
    /// Per notification: delivered once more, byte for byte.
    pub duplicates: f64,
    /// Per order: its notifications delivered in a shuffled order.
    pub out_of_order: f64,
    /// Per order: one forged copy with another amount and the old signature.
    pub tampered: f64,
    /// Per order: COMPLETE for another amount than the order's.
    pub amount_mismatch: f64,
    /// Per order: one more order, unknown to the shop (not in the CSV).
    pub unknown_orders: f64,
    /// Per order: a card number hidden in a free-text field of one
    /// notification.
    pub pan_in_free_text: f64,
    /// Per notification of a known order: the processor's retry, stamped
    /// with a new IPN_DATE within its retry horizon and signed again.
    pub processor_retries: f64,
    /// Per notification of a known order: the copy for a second
    /// notification URL, signed with another algorithm set.
    pub second_url_copies: f64,
    /// Per notification of a known order: resent by hand from the control
    /// panel 3 to 10 days later.
    pub manual_resends: f64,
    /// Per notification of a known order: a copy re-encoded on the way (a
    /// digit percent-escaped, a trailing `&`, an unread field renamed).
    pub reencoded_copies: f64,
    /// Per known order: a copy of one notification with its SHA3-256
    /// signature removed, or with every signature removed.
    pub stripped_signatures: f64,
    /// Per known test order or fraud-denied order, when the reconciler
    /// checks expected fields: an attacker's copy with TEST_ORDER or
    /// FRAUD_STATUS renamed.
    pub renamed_expected_fields: f64,
    /// Per known order: charged twice under two REFNOs
    /// ([`Story::DoubleChargeRefunded`] or [`Story::DoubleChargeOpen`]).
    pub double_charges: f64,
    /// Per known order: a reversal under a REFNO that never paid it
    /// ([`Story::ForeignReversal`]).
    pub foreign_reversals: f64,
    /// Per known order: a copy with two field names swapped, refused
    /// as malformed ([`Story::ConflictingCopy`]).
    pub conflicting_copies: f64,
}

impl AnomalyRates {
    /// No anomaly at all: a clean stream.
    pub const NONE: AnomalyRates = AnomalyRates {
        duplicates: 0.0,
        out_of_order: 0.0,
        tampered: 0.0,
        amount_mismatch: 0.0,
        unknown_orders: 0.0,
        pan_in_free_text: 0.0,
        processor_retries: 0.0,
        second_url_copies: 0.0,
        manual_resends: 0.0,
        reencoded_copies: 0.0,
        stripped_signatures: 0.0,
        renamed_expected_fields: 0.0,
        double_charges: 0.0,
        foreign_reversals: 0.0,
        conflicting_copies: 0.0,
    };

    /// Every anomaly at the same rate.
    pub fn all(rate: f64) -> Self {
        Self {
            duplicates: rate,
            out_of_order: rate,
            tampered: rate,
            amount_mismatch: rate,
            unknown_orders: rate,
            pan_in_free_text: rate,
            processor_retries: rate,
            second_url_copies: rate,
            manual_resends: rate,
            reencoded_copies: rate,
            stripped_signatures: rate,
            renamed_expected_fields: rate,
            double_charges: rate,
            foreign_reversals: rate,
            conflicting_copies: rate,
        }
    }

    /// Each rate with its command-line name.
    pub fn named(&self) -> [(&'static str, f64); 15] {
        [
            ("duplicates", self.duplicates),
            ("out-of-order", self.out_of_order),
            ("tampered", self.tampered),
            ("amount-mismatch", self.amount_mismatch),
            ("unknown-orders", self.unknown_orders),
            ("pan-in-free-text", self.pan_in_free_text),
            ("processor-retries", self.processor_retries),
            ("second-url-copies", self.second_url_copies),
            ("manual-resends", self.manual_resends),
            ("reencoded-copies", self.reencoded_copies),
            ("stripped-signatures", self.stripped_signatures),
            ("renamed-expected-fields", self.renamed_expected_fields),
            ("double-charges", self.double_charges),
            ("foreign-reversals", self.foreign_reversals),
            ("conflicting-copies", self.conflicting_copies),
        ]
    }
}

impl Default for AnomalyRates {
    /// The command line's defaults: every anomaly present, none dominant.
    fn default() -> Self {
        Self {
            duplicates: 0.1,
            out_of_order: 0.2,
            tampered: 0.05,
            amount_mismatch: 0.05,
            unknown_orders: 0.05,
            pan_in_free_text: 0.05,
            processor_retries: 0.1,
            second_url_copies: 0.05,
            manual_resends: 0.03,
            reencoded_copies: 0.03,
            stripped_signatures: 0.03,
            renamed_expected_fields: 0.3,
            double_charges: 0.03,
            foreign_reversals: 0.02,
            conflicting_copies: 0.02,
        }
    }
}

/// How often orders are in one currency, relative to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrencyWeight {
    pub currency: Currency,
    pub weight: u32,
}

impl CurrencyWeight {
    /// The default mix: mostly EUR and USD, and enough JPY (no decimals)
    /// and BHD (three decimals) that every run exercises both exponents.
    /// ISO 4217 codes only, so no operator table applies
    /// ([`Currency::iso`]).
    pub fn default_mix() -> Vec<CurrencyWeight> {
        [
            ("EUR", 40),
            ("USD", 30),
            ("GBP", 10),
            ("JPY", 10),
            ("BHD", 10),
        ]
        .into_iter()
        .filter_map(|(code, weight)| {
            Currency::iso(code)
                .ok()
                .map(|currency| CurrencyWeight { currency, weight })
        })
        .collect()
    }

    /// Parses `EUR=40,USD=30,JPY=10` (a code without `=` weighs 1), each
    /// code read with `currencies` (the settings' table, so that a
    /// currency the operator allowed is simulated with its exponent).
    pub fn parse_mix(
        text: &str,
        currencies: &Currencies,
    ) -> Result<Vec<CurrencyWeight>, SimulationError> {
        let mut mix = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (code, weight) = match part.split_once('=') {
                Some((code, weight)) => (code.trim(), weight.trim()),
                None => (part, "1"),
            };
            let currency = currencies.currency(code).map_err(|_| {
                SimulationError::Currency(format!("`{code}` is not a currency code"))
            })?;
            let weight = weight.parse::<u32>().map_err(|_| {
                SimulationError::Currency(format!("weight of {code} is not a whole number"))
            })?;
            if mix.iter().any(|w: &CurrencyWeight| w.currency == currency) {
                return Err(SimulationError::Currency(format!("{code} is listed twice")));
            }
            mix.push(CurrencyWeight { currency, weight });
        }
        validate_mix(&mix)?;
        Ok(mix)
    }
}

fn validate_mix(mix: &[CurrencyWeight]) -> Result<(), SimulationError> {
    if mix.iter().all(|w| w.weight == 0) {
        return Err(SimulationError::Currency(
            "at least one currency needs a weight above 0".into(),
        ));
    }
    Ok(())
}

/// Everything a simulation depends on. Equal configs (and keys) give equal
/// simulations.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulationConfig {
    pub seed: u64,
    /// How many orders the shop knows (rows of the orders CSV). Unknown
    /// orders come on top.
    pub orders: usize,
    pub rates: AnomalyRates,
    /// Per order: the probability of a test order (TEST_ORDER=1).
    pub test_orders: f64,
    pub currencies: Vec<CurrencyWeight>,
    /// When the first order is created; later ones follow minutes apart.
    pub base_date: NaiveDateTime,
    /// Whether the reconciler checks expected fields (`expected-fields =
    /// TEST_ORDER,FRAUD_STATUS`, docs/protocol.md §11 (c)). Only then are
    /// the [`AnomalyRates::renamed_expected_fields`] copies made, expected
    /// `malformed`: without the check such a copy is a notification that
    /// says another thing under the same identity, and whether it or the
    /// genuine one counts depends on which arrives first, which no
    /// expectation from intent can say.
    pub expected_fields: bool,
    /// Which merchant is simulated (see [`Profile`]).
    pub profile: Profile,
}

/// Which merchant the simulated processor serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Profile {
    /// A shop that imports its orders and names each one in the checkout
    /// (`REFNOEXT`): the stories and anomalies of this module.
    #[default]
    Default,
    /// A software vendor selling through the processor's hosted cart:
    /// orders with and without a merchant reference, subscriptions that
    /// renew, lapse and are canceled, licence change notifications, VAT,
    /// commission and a USD payout ([`vendor`]).
    SoftwareVendor,
}

impl Profile {
    /// The command-line name.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::SoftwareVendor => "software-vendor",
        }
    }
}

impl SimulationConfig {
    /// More orders than this are refused: REFNO is at most 9 digits (spec
    /// §1.1) and each run uses a block of a million of them.
    pub const MAX_ORDERS: usize = 400_000;

    /// A config with the default rates and currency mix, starting
    /// 2026-11-01 08:00:00.
    pub fn new(seed: u64, orders: usize) -> Self {
        Self {
            seed,
            orders,
            rates: AnomalyRates::default(),
            test_orders: 0.05,
            currencies: CurrencyWeight::default_mix(),
            base_date: NaiveDate::from_ymd_opt(2026, 11, 1)
                .and_then(|d| d.and_hms_opt(8, 0, 0))
                .unwrap_or_default(),
            expected_fields: false,
            profile: Profile::Default,
        }
    }

    /// Checks every rate is a probability and the rest is usable.
    pub fn validate(&self) -> Result<(), SimulationError> {
        let rates = self
            .rates
            .named()
            .into_iter()
            .chain([("test-orders", self.test_orders)]);
        for (name, value) in rates {
            if !(0.0..=1.0).contains(&value) {
                return Err(SimulationError::InvalidRate { name, value });
            }
        }
        if self.orders > Self::MAX_ORDERS {
            return Err(SimulationError::TooManyOrders {
                orders: self.orders,
                max: Self::MAX_ORDERS,
            });
        }
        validate_mix(&self.currencies)?;
        if !(1970..=9000).contains(&self.base_date.year()) {
            return Err(SimulationError::BaseDate);
        }
        Ok(())
    }
}

/// Why a simulation could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimulationError {
    #[error("--{name} must be a probability between 0 and 1, got {value}")]
    InvalidRate { name: &'static str, value: f64 },
    #[error("at most {max} orders can be simulated, {orders} were asked for")]
    TooManyOrders { orders: usize, max: usize },
    #[error("the base date must be between the years 1970 and 9000")]
    BaseDate,
    #[error("currency mix: {0}")]
    Currency(String),
    #[error("cannot sign a simulated notification: {0}")]
    Sign(FormError),
    #[error("simulated order is invalid: {0}")]
    Order(String),
    #[error("internal simulator error: {0}")]
    Internal(&'static str),
}

/// How a delivery relates to the processor's notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeliveryKind {
    /// A notification's first delivery.
    Genuine,
    /// The exact bytes of an earlier genuine delivery, again.
    Duplicate,
    /// A forged copy: another amount under the genuine signatures.
    Tampered,
    /// The processor's retry: the same notification with a new IPN_DATE
    /// (minutes to hours later, within its retry horizon), signed again.
    Retry,
    /// The copy for a second notification URL, signed with another
    /// algorithm set and stamped a few seconds later.
    SecondUrl,
    /// Resent by hand from the control panel, days later.
    Resend,
    /// The same values in other bytes: a digit percent-escaped, a trailing
    /// `&`, or an unsigned field the reconciler does not read renamed.
    Reencoded,
    /// The SHA3-256 signature removed, the SHA-256 one intact.
    Stripped,
    /// Every signature removed.
    Unsigned,
    /// An attacker's copy with TEST_ORDER or FRAUD_STATUS renamed (the
    /// signature still verifies: it covers values, not names).
    Renamed,
    /// A copy with two field names swapped: the same signed values and
    /// identity, another meaning, and a layout the processor never sends:
    /// refused as malformed (`domain::layout`).
    Swapped,
}

impl DeliveryKind {
    pub const ALL: [DeliveryKind; 11] = [
        DeliveryKind::Genuine,
        DeliveryKind::Duplicate,
        DeliveryKind::Tampered,
        DeliveryKind::Retry,
        DeliveryKind::SecondUrl,
        DeliveryKind::Resend,
        DeliveryKind::Reencoded,
        DeliveryKind::Stripped,
        DeliveryKind::Unsigned,
        DeliveryKind::Renamed,
        DeliveryKind::Swapped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Genuine => "genuine",
            DeliveryKind::Duplicate => "duplicate",
            DeliveryKind::Tampered => "tampered",
            DeliveryKind::Retry => "retry",
            DeliveryKind::SecondUrl => "second_url",
            DeliveryKind::Resend => "resend",
            DeliveryKind::Reencoded => "reencoded",
            DeliveryKind::Stripped => "stripped",
            DeliveryKind::Unsigned => "unsigned",
            DeliveryKind::Renamed => "renamed",
            DeliveryKind::Swapped => "swapped",
        }
    }

    /// Whether a delivery of this kind is accepted as its notification
    /// (it verifies and carries every expected field): then the first of
    /// them to arrive counts and the others are `duplicate`, whichever
    /// kind arrives first. Forged, unsigned, renamed and swapped copies are
    /// refused and count for nothing.
    pub fn carries_its_notification(self) -> bool {
        !matches!(
            self,
            DeliveryKind::Tampered
                | DeliveryKind::Unsigned
                | DeliveryKind::Renamed
                | DeliveryKind::Swapped
        )
    }

    /// Whether the processor's intake must refuse it at the door (its
    /// signature does not verify).
    pub fn is_forged(self) -> bool {
        matches!(self, DeliveryKind::Tampered | DeliveryKind::Unsigned)
    }
}

impl std::fmt::Display for DeliveryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One POST the processor makes, in delivery order.
#[derive(Clone, PartialEq, Eq)]
pub struct Delivery {
    /// 1-based position in the stream.
    pub sequence: usize,
    /// The raw form-encoded body.
    pub body: Vec<u8>,
    /// REFNOEXT of the body.
    pub order_ref: String,
    pub kind: DeliveryKind,
    /// Which notification of its order it carries: the index of the
    /// story's step (0-based, in story order), shared by the genuine
    /// delivery and all its copies.
    pub notification: usize,
    /// ORDERSTATUS of the body.
    pub order_status: &'static str,
    /// Whether the order is in the orders CSV.
    pub known_order: bool,
    /// Whether the body hides a card number in a free-text field.
    pub has_pan: bool,
    /// Whether the body says TEST_ORDER=1.
    pub test_order: bool,
    /// A payment notification (POSTed to the intake's path) or a licence
    /// change notification (POSTed to its `lcn-path`).
    pub notice: NoticeKind,
}

impl std::fmt::Debug for Delivery {
    /// The body holds (fake) personal data and maybe a card number: only
    /// its length is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("sequence", &self.sequence)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .field("order_ref", &self.order_ref)
            .field("kind", &self.kind)
            .field("notification", &self.notification)
            .field("order_status", &self.order_status)
            .field("known_order", &self.known_order)
            .field("has_pan", &self.has_pan)
            .field("test_order", &self.test_order)
            .field("notice", &self.notice)
            .finish()
    }
}

impl Delivery {
    /// `NNNNN-<order_ref>-<kind>.txt`.
    pub fn file_name(&self) -> String {
        body_file_name(self.sequence, &self.order_ref, self.kind)
    }
}

/// An anomaly that was applied to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Anomaly {
    Duplicates,
    OutOfOrder,
    Tampered,
    PanInFreeText,
    ProcessorRetries,
    SecondUrlCopies,
    ManualResends,
    ReencodedCopies,
    StrippedSignatures,
    RenamedExpectedFields,
}

impl Anomaly {
    pub const ALL: [Anomaly; 10] = [
        Anomaly::Duplicates,
        Anomaly::OutOfOrder,
        Anomaly::Tampered,
        Anomaly::PanInFreeText,
        Anomaly::ProcessorRetries,
        Anomaly::SecondUrlCopies,
        Anomaly::ManualResends,
        Anomaly::ReencodedCopies,
        Anomaly::StrippedSignatures,
        Anomaly::RenamedExpectedFields,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Anomaly::Duplicates => "duplicates",
            Anomaly::OutOfOrder => "out_of_order",
            Anomaly::Tampered => "tampered",
            Anomaly::PanInFreeText => "pan_in_free_text",
            Anomaly::ProcessorRetries => "processor_retries",
            Anomaly::SecondUrlCopies => "second_url_copies",
            Anomaly::ManualResends => "manual_resends",
            Anomaly::ReencodedCopies => "reencoded_copies",
            Anomaly::StrippedSignatures => "stripped_signatures",
            Anomaly::RenamedExpectedFields => "renamed_expected_fields",
        }
    }
}

/// The final state a known order must reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedOrder {
    pub status: OrderState,
    /// Decimal string in the order's currency (`107.00`, `2500`, `0.000`).
    pub paid: String,
    /// Decimal string in the order's currency.
    pub refunded: String,
    /// Sorted by name; a multiset (see the module docs).
    pub review_kinds: Vec<ReviewKind>,
    /// REFNO, once any live (non-test) notification was applied.
    pub processor_ref: Option<String>,
    pub story: Story,
    pub anomalies: Vec<Anomaly>,
}

/// What must come of the notifications of an order the shop never had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedOrphan {
    pub story: Story,
    /// Distinct genuine notifications (each ends `order_not_found`).
    pub notifications: usize,
    /// Sorted by name: `orphan_payment` once per notification (opened by
    /// the shell after the retry window), `pan_detected` for a card number.
    pub review_kinds: Vec<ReviewKind>,
    pub anomalies: Vec<Anomaly>,
}

/// How many deliveries must end with each outcome, when the orders are
/// imported first, every delivery is handled once in order, and test orders
/// are not applied (the default).
///
/// Per notification exactly one accepted delivery counts (applied, ignored
/// or mismatch) and every other accepted one is a `duplicate`, whichever
/// arrives first: the counts do not depend on the arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpectedOutcomes {
    pub applied: usize,
    pub ignored: usize,
    pub mismatch: usize,
    pub duplicate: usize,
    /// Every delivery of an unknown order's body: a repeat is processed
    /// again (the order might exist by now), so it is not a `duplicate`.
    pub order_not_found: usize,
    pub invalid_signature: usize,
    /// Verified but refused: an expected field missing under its own name.
    pub malformed: usize,
}

impl ExpectedOutcomes {
    /// The expected number of deliveries with `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        match outcome {
            Outcome::Applied => self.applied,
            Outcome::Ignored => self.ignored,
            Outcome::Mismatch => self.mismatch,
            Outcome::Duplicate => self.duplicate,
            Outcome::OrderNotFound => self.order_not_found,
            Outcome::InvalidSignature => self.invalid_signature,
            Outcome::Malformed => self.malformed,
        }
    }

    /// Every delivery.
    pub fn total(&self) -> usize {
        self.applied
            + self.ignored
            + self.mismatch
            + self.duplicate
            + self.order_not_found
            + self.invalid_signature
            + self.malformed
    }

    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Applied => self.applied += 1,
            Outcome::Ignored => self.ignored += 1,
            Outcome::Mismatch => self.mismatch += 1,
            Outcome::Duplicate => self.duplicate += 1,
            Outcome::OrderNotFound => self.order_not_found += 1,
            Outcome::InvalidSignature => self.invalid_signature += 1,
            Outcome::Malformed => self.malformed += 1,
        }
    }
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Counts only: the bodies and `personal_data` hold (fake) personal data.
        f.debug_struct("Simulation")
            .field("config", &self.config)
            .field("orders", &self.orders.len())
            .field("deliveries", &self.deliveries.len())
            .field("expected_outcomes", &self.expected_outcomes)
            .finish_non_exhaustive()
    }
}

/// A whole simulated run.
#[derive(Clone)]
pub struct Simulation {
    pub config: SimulationConfig,
    /// The shop's orders (the orders CSV), in creation order.
    pub orders: Vec<NewOrder>,
    /// Every POST, in delivery order.
    pub deliveries: Vec<Delivery>,
    /// Per known order.
    pub expected: BTreeMap<String, ExpectedOrder>,
    /// Per unknown order.
    pub expected_orphans: BTreeMap<String, ExpectedOrphan>,
    pub expected_outcomes: ExpectedOutcomes,
    /// Every personal value written into a body (fake, but to be treated
    /// as real): for tests that scan storage and logs for leaks.
    pub personal_data: BTreeSet<String>,
    /// The payments the ledger must end with (known orders, live
    /// notifications, captured), for the settlement file
    /// ([`settlement::settlement`]).
    pub payments: Vec<settlement::SimulatedPayment>,
    /// The software vendor's expectation (orders keyed as the daemon keys
    /// them, subscriptions, figures), for [`Profile::SoftwareVendor`];
    /// `None` for the default profile.
    pub vendor: Option<vendor::VendorExpectation>,
}

impl Simulation {
    /// Deliveries of one kind.
    pub fn count(&self, kind: DeliveryKind) -> usize {
        self.deliveries.iter().filter(|d| d.kind == kind).count()
    }
}

/// Separate random streams, so that one kind of choice never shifts another.
/// The later streams came with later anomalies: drawing them from streams
/// of their own keeps every earlier seed's output unchanged while their
/// rates are 0.
const STREAM_ORDER: u64 = 1;
const STREAM_ORPHAN: u64 = 2;
const STREAM_INTERLEAVE: u64 = 3;
const STREAM_PAYMENTS: u64 = 4;
const STREAM_COPIES: u64 = 5;

/// Luhn-valid test card numbers of the card schemes' public test ranges.
pub const TEST_PANS: [&str; 6] = [
    "4111111111111111",
    "5555555555554444",
    "378282246310005",
    "4012888888881881",
    "6011111111111117",
    "3530111333300000",
];

/// Generates a simulation. Pure: no I/O, no clock.
pub fn simulate(config: &SimulationConfig, key: &SecretKey) -> Result<Simulation, SimulationError> {
    config.validate()?;
    if config.profile == Profile::SoftwareVendor {
        return vendor::simulate(config, key);
    }
    let tag = run_tag(config.seed);
    let mut generator = Generator {
        config,
        key,
        tag,
        serial: 0,
        message_id: 254_000_000_000 + (u64::from(tag) % 1000) * 1_000_000,
        runs: Vec::new(),
        orders: Vec::new(),
        expected: BTreeMap::new(),
        expected_orphans: BTreeMap::new(),
        outcomes: ExpectedOutcomes::default(),
        personal_data: BTreeSet::new(),
        payments: Vec::new(),
    };
    for index in 0..config.orders {
        let index = index as u64;
        let mut rng = Rng::derive(config.seed, STREAM_ORDER, index);
        let story = choose_story(&mut rng, config);
        let story = payment_story(
            &mut Rng::derive(config.seed, STREAM_PAYMENTS, index),
            config,
            story,
        );
        let created = config.base_date
            + TimeDelta::seconds(i64::try_from(index * 180 + rng.below(170)).unwrap_or(0));
        generator.order(&mut rng, story, created, true)?;

        let mut orphan_rng = Rng::derive(config.seed, STREAM_ORPHAN, index);
        if orphan_rng.chance(config.rates.unknown_orders) {
            let stories = [
                Story::Paid,
                Story::Paid,
                Story::PartiallyRefunded,
                Story::Refunded,
            ];
            let story = *orphan_rng.pick(&stories).unwrap_or(&Story::Paid);
            let created = created + TimeDelta::seconds(90);
            generator.order(&mut orphan_rng, story, created, false)?;
        }
    }
    let deliveries = interleave(config.seed, generator.runs);
    Ok(Simulation {
        config: config.clone(),
        orders: generator.orders,
        deliveries,
        expected: generator.expected,
        expected_orphans: generator.expected_orphans,
        expected_outcomes: generator.outcomes,
        personal_data: generator.personal_data,
        payments: generator.payments,
        vendor: None,
    })
}

/// A 16-bit tag of the seed, part of every order reference and REFNO, so
/// that runs with different seeds can share one database (the demo reuses
/// its database) without colliding references in practice.
pub(crate) fn run_tag(seed: u64) -> u16 {
    (rng::SplitMix64::new(seed).next_u64() >> 48) as u16
}

fn choose_story(rng: &mut Rng, config: &SimulationConfig) -> Story {
    // Draw all three every time: the stream advances the same way whatever
    // the rates, so a rate change alters only the orders it hits.
    let test = rng.chance(config.test_orders);
    let mismatch = rng.chance(config.rates.amount_mismatch);
    let weights: Vec<u32> = Story::ORDINARY.iter().map(|(_, w)| *w).collect();
    let ordinary = rng
        .weighted(&weights)
        .and_then(|i| Story::ORDINARY.get(i))
        .map_or(Story::Paid, |(story, _)| *story);
    if test {
        Story::TestOrder
    } else if mismatch {
        Story::AmountMismatch
    } else {
        ordinary
    }
}

/// Replaces an ordinary story by one about several payments or a
/// conflicting copy, at their rates. Test orders and amount mismatches keep
/// their story: they are chosen first, as before these stories existed.
fn payment_story(rng: &mut Rng, config: &SimulationConfig, story: Story) -> Story {
    let rates = &config.rates;
    let double = rng.chance(rates.double_charges);
    let refunded = rng.chance(0.5);
    let foreign = rng.chance(rates.foreign_reversals);
    let conflicting = rng.chance(rates.conflicting_copies);
    if matches!(story, Story::TestOrder | Story::AmountMismatch) {
        story
    } else if double && refunded {
        Story::DoubleChargeRefunded
    } else if double {
        Story::DoubleChargeOpen
    } else if foreign {
        Story::ForeignReversal
    } else if conflicting {
        Story::ConflictingCopy
    } else {
        story
    }
}

/// One order's deliveries before interleaving.
struct Run {
    deliveries: VecDeque<Delivery>,
}

struct Generator<'a> {
    config: &'a SimulationConfig,
    key: &'a SecretKey,
    tag: u16,
    serial: u64,
    message_id: u64,
    runs: Vec<Run>,
    orders: Vec<NewOrder>,
    expected: BTreeMap<String, ExpectedOrder>,
    expected_orphans: BTreeMap<String, ExpectedOrphan>,
    outcomes: ExpectedOutcomes,
    personal_data: BTreeSet<String>,
    payments: Vec<settlement::SimulatedPayment>,
}

/// One notification of an order as signed, and what its copies need.
struct Signed {
    /// The genuine delivery's fields, signatures included, in wire order.
    fields: Vec<Field>,
    status: &'static str,
    /// IPN_DATE of the genuine delivery.
    at: NaiveDateTime,
    /// FRAUD_STATUS=DENIED.
    fraud_denied: bool,
    has_pan: bool,
}

impl Signed {
    /// A refund or reversal: kept to two bodies when resent (see
    /// `copies`).
    fn moves_money(&self) -> bool {
        matches!(self.status, "REFUND" | "REVERSED")
    }
}

/// What the copies added to a known order.
#[derive(Default)]
struct Copies {
    anomalies: Vec<Anomaly>,
    review_kinds: Vec<ReviewKind>,
}

/// The latest a processor retry is stamped after the first attempt: well
/// inside its two-day retry horizon (docs/protocol.md §5), so that no
/// retry is mistaken for a late repeat.
const RETRY_WITHIN_SECONDS: u64 = 36 * 3600;
/// A manual resend comes 3 to 10 days later: beyond the retry horizon.
const RESEND_AFTER_DAYS: (u64, u64) = (3, 10);
/// Unsigned fields the reconciler never reads, and the names a re-encoding
/// copy gives them: renaming them changes neither the signature nor the
/// meaning.
const UNREAD_RENAMES: [(&str, &str); 3] = [
    ("COMPANY", "COMPANX"),
    ("LANGUAGE", "LANG"),
    ("ORDERFLOW", "ORDER_FLOW"),
];

impl Generator<'_> {
    /// Builds one order (known or not), its deliveries and expectation.
    fn order(
        &mut self,
        rng: &mut Rng,
        story: Story,
        created: NaiveDateTime,
        known: bool,
    ) -> Result<(), SimulationError> {
        self.serial += 1;
        let serial = self.serial;
        let order_ref = format!("SHOP-{:04X}-{serial:06}", self.tag);
        let refno = 100_000_000 + (u64::from(self.tag) % 800) * 1_000_000 + serial;
        // Above every order's own REFNO (at most 899,999,999), and unique in
        // the run: serials stay below a million.
        let other_refno = 900_000_000 + (u64::from(self.tag) % 100) * 1_000_000 + serial;

        let weights: Vec<u32> = self.config.currencies.iter().map(|w| w.weight).collect();
        let currency = rng
            .weighted(&weights)
            .and_then(|i| self.config.currencies.get(i))
            .map(|w| w.currency)
            .ok_or(SimulationError::Internal("empty currency mix"))?;
        let lines = product_lines(rng, currency);
        let total: i64 = lines
            .iter()
            .map(|l| l.unit_price * i64::try_from(l.quantity).unwrap_or(1))
            .sum();
        let sale = created + TimeDelta::seconds(i64::try_from(rng.range(5, 60)).unwrap_or(5));
        let outline = story::outline(story, total, sale, rng);
        let customer = Customer::random(rng, serial);
        self.personal_data
            .extend(customer.personal_values().into_iter().map(str::to_owned));
        let context = OrderContext {
            order_ref: order_ref.clone(),
            refno,
            other_refno,
            currency,
            lines,
            sale,
            customer,
            wire: outline.wire,
            card_last_digits: format!("{:04}", rng.below(10_000)),
            card_type: if rng.chance(0.6) {
                "visa"
            } else {
                "mastercard"
            },
            test_order: story == Story::TestOrder,
            customer_reference: 900_000 + rng.below(100_000),
        };

        // Anomalies. Every draw happens whatever the rates (stable streams).
        let rates = &self.config.rates;
        let n = outline.steps.len();
        let with_pan = rng.chance(rates.pan_in_free_text);
        let tamper = rng.chance(rates.tampered);
        let shuffle = rng.chance(rates.out_of_order);
        let pan_index = rng.index(n);
        let pan_spot = if rng.chance(0.5) {
            PanSpot::ProductInfo
        } else {
            PanSpot::ShopperReference
        };
        let pan_text = pan_text(rng);
        // The forged copy is made of a notification without a card
        // number: whether a forged body's card number is reported is not
        // what this anomaly is about.
        let tamper_candidates: Vec<usize> =
            (0..n).filter(|&i| !with_pan || i != pan_index).collect();
        let tamper_index = rng.pick(&tamper_candidates).copied();
        let tamper_index = if tamper { tamper_index } else { None };
        let mut anomalies = Vec::new();

        // Genuine bodies, in story order.
        let mut genuine: Vec<Delivery> = Vec::with_capacity(n);
        let mut signed_steps: Vec<Signed> = Vec::with_capacity(n);
        let mut forged: Option<Delivery> = None;
        for (i, step) in outline.steps.iter().enumerate() {
            self.message_id += 1;
            let pan = (with_pan && i == pan_index).then_some((pan_spot, pan_text.as_str()));
            let fields = body::fields(&context, step, self.message_id, pan);
            let signed = body::sign_fields(fields, self.key)?;
            if tamper_index == Some(i) {
                // Same sign as the genuine amount, another magnitude.
                let magnitude = story::wrong_amount(step.amount.abs().max(2), rng);
                let forged_minor = if step.amount < 0 {
                    -magnitude
                } else {
                    magnitude
                };
                let forged_amount = Money::from_minor(forged_minor, currency).format_amount();
                forged = Some(Delivery {
                    sequence: 0,
                    body: body::tampered_body(&signed, &forged_amount)?,
                    order_ref: order_ref.clone(),
                    kind: DeliveryKind::Tampered,
                    notification: i,
                    order_status: step.status,
                    known_order: known,
                    has_pan: false,
                    test_order: context.test_order,
                    notice: NoticeKind::Ipn,
                });
            }
            genuine.push(Delivery {
                sequence: 0,
                body: body::encode(signed.clone()),
                order_ref: order_ref.clone(),
                kind: DeliveryKind::Genuine,
                notification: i,
                order_status: step.status,
                known_order: known,
                has_pan: pan.is_some(),
                test_order: context.test_order,
                notice: NoticeKind::Ipn,
            });
            signed_steps.push(Signed {
                fields: signed,
                status: step.status,
                at: step.at,
                fraud_denied: step.fraud == "DENIED",
                has_pan: pan.is_some(),
            });
            let outcome = if !known {
                Outcome::OrderNotFound
            } else {
                match step.effect {
                    ExpectedEffect::Applied => Outcome::Applied,
                    ExpectedEffect::Ignored => Outcome::Ignored,
                    ExpectedEffect::Mismatch => Outcome::Mismatch,
                }
            };
            self.outcomes.add(outcome);
        }
        if with_pan {
            anomalies.push(Anomaly::PanInFreeText);
        }

        if shuffle && n >= 2 {
            let bodies_before: Vec<Vec<u8>> = genuine.iter().map(|d| d.body.clone()).collect();
            rng.shuffle(&mut genuine);
            if genuine.iter().map(|d| &d.body).eq(bodies_before.iter()) {
                genuine.reverse();
            }
            anomalies.push(Anomaly::OutOfOrder);
        }

        let mut run: Vec<Delivery> = genuine;
        let mut position = 0;
        let mut duplicated = false;
        while position < run.len() {
            let draw = rng.chance(rates.duplicates);
            if run[position].kind == DeliveryKind::Genuine && draw {
                let mut copy = run[position].clone();
                copy.kind = DeliveryKind::Duplicate;
                // Somewhere after the original (retries come later).
                let at = position + 1 + rng.index(run.len() - position);
                run.insert(at, copy);
                duplicated = true;
                self.outcomes.add(if known {
                    Outcome::Duplicate
                } else {
                    Outcome::OrderNotFound
                });
            }
            position += 1;
        }
        if duplicated {
            anomalies.push(Anomaly::Duplicates);
        }
        if let Some(forged) = forged {
            let at = rng.index(run.len() + 1);
            run.insert(at, forged);
            anomalies.push(Anomaly::Tampered);
            self.outcomes.add(Outcome::InvalidSignature);
        }

        let mut copies = Copies::default();
        if known {
            let mut copy_rng = Rng::derive(self.config.seed, STREAM_COPIES, serial);
            copies = self.copies(&mut copy_rng, &mut run, &signed_steps, &outline, &context)?;
            anomalies.extend(copies.anomalies.iter().copied());
        }
        anomalies.sort();

        let pan_reviews = usize::from(with_pan);
        if known {
            self.payments.extend(settlement::payments_of(
                &order_ref,
                story,
                &outline,
                currency,
                [refno, other_refno],
            ));
        }
        if known {
            let amount = Money::from_minor(total, currency);
            let mut order = NewOrder::new(&order_ref, amount).map_err(SimulationError::Order)?;
            order.created_at = Some(created.and_utc());
            self.orders.push(order);
            let mut review_kinds = outline.review_kinds.clone();
            review_kinds.extend(std::iter::repeat_n(ReviewKind::PanDetected, pan_reviews));
            review_kinds.extend(copies.review_kinds);
            sort_kinds(&mut review_kinds);
            self.expected.insert(
                order_ref,
                ExpectedOrder {
                    status: outline.state,
                    paid: Money::from_minor(outline.paid, currency).format_amount(),
                    refunded: Money::from_minor(outline.refunded, currency).format_amount(),
                    review_kinds,
                    processor_ref: outline.records_processor_ref.then(|| refno.to_string()),
                    story,
                    anomalies,
                },
            );
        } else {
            // One open orphan_payment item per unknown order, however many
            // of its notifications were parked.
            let mut review_kinds: Vec<ReviewKind> =
                std::iter::repeat_n(ReviewKind::OrphanPayment, usize::from(n > 0)).collect();
            review_kinds.extend(std::iter::repeat_n(ReviewKind::PanDetected, pan_reviews));
            sort_kinds(&mut review_kinds);
            self.expected_orphans.insert(
                order_ref,
                ExpectedOrphan {
                    story,
                    notifications: n,
                    review_kinds,
                    anomalies,
                },
            );
        }
        self.runs.push(Run {
            deliveries: run.into(),
        });
        Ok(())
    }

    /// The processor's habits and the attackers' tricks for one known
    /// order: copies of its notifications added to `run`, each counted in
    /// the expected outcomes, with the review items they imply.
    ///
    /// Unknown orders get none: each delivery of an unknown order waits
    /// out its own retry window, so how many `orphan_payment` items a
    /// notification delivered as several bodies leaves depends on timing,
    /// which no expectation from intent can say.
    ///
    /// A refund or reversal resent by hand
    /// gets no other accepted copy with another body; nor does the one of
    /// which a swapped copy is delivered, which keeps its story to two
    /// bodies. The store compares a repeat with the
    /// notification's *first* delivery, so with three bodies the number of
    /// items would depend on which arrives first; with two it cannot.
    fn copies(
        &mut self,
        rng: &mut Rng,
        run: &mut Vec<Delivery>,
        signed: &[Signed],
        outline: &story::Outline,
        context: &OrderContext,
    ) -> Result<Copies, SimulationError> {
        let rates = self.config.rates;
        let mut copies = Copies::default();
        let mut made: BTreeSet<Anomaly> = BTreeSet::new();
        // Notifications that must keep to two bodies (see above).
        let mut alone = vec![false; signed.len()];
        // Every draw happens whatever the rates (stable streams).
        for (i, step) in signed.iter().enumerate() {
            let retry = rng.chance(rates.processor_retries);
            let retry_after = rng.range(60, RETRY_WITHIN_SECONDS);
            let second = rng.chance(rates.second_url_copies);
            let second_after = rng.range(1, 30);
            let second_algorithms: &[Algorithm] = if rng.chance(0.5) {
                &[Algorithm::Sha256]
            } else {
                &[Algorithm::Sha3_256]
            };
            let resend = rng.chance(rates.manual_resends);
            let resend_after =
                rng.range(RESEND_AFTER_DAYS.0 * 86_400, RESEND_AFTER_DAYS.1 * 86_400);
            let reencode = rng.chance(rates.reencoded_copies);
            let trick = rng.below(3);
            let trick_pick = rng.next_u64();

            let swapped = outline.swapped_copy_of == Some(i);
            let late_resend = resend && step.moves_money();
            let keep_alone = swapped || late_resend;
            if let Some(flag) = alone.get_mut(i) {
                *flag = keep_alone;
            }
            let stamped =
                |after: u64| step.at + TimeDelta::seconds(i64::try_from(after).unwrap_or(60));
            let mut add = |kind: DeliveryKind, body: Vec<u8>, rng: &mut Rng| {
                self.outcomes.add(Outcome::Duplicate);
                insert_copy(rng, run, copy_of(i, kind, body, step, context));
            };
            if retry && !keep_alone {
                let body =
                    body::restamped(&step.fields, stamped(retry_after), self.key, &ALGORITHMS)?;
                add(DeliveryKind::Retry, body, rng);
                made.insert(Anomaly::ProcessorRetries);
            }
            if second && !keep_alone {
                let body = body::restamped(
                    &step.fields,
                    stamped(second_after),
                    self.key,
                    second_algorithms,
                )?;
                add(DeliveryKind::SecondUrl, body, rng);
                made.insert(Anomaly::SecondUrlCopies);
            }
            if resend && !swapped {
                let body =
                    body::restamped(&step.fields, stamped(resend_after), self.key, &ALGORITHMS)?;
                add(DeliveryKind::Resend, body, rng);
                made.insert(Anomaly::ManualResends);
            }
            if reencode && !keep_alone {
                let genuine = body::encode(step.fields.clone());
                let body = match trick {
                    0 => body::percent_encode_digit(&genuine, "REFNO", trick_pick as usize)?,
                    1 => {
                        let mut body = genuine;
                        body.push(b'&');
                        body
                    }
                    _ => {
                        let rename = UNREAD_RENAMES[trick_pick as usize % UNREAD_RENAMES.len()];
                        body::renamed(&step.fields, &[rename])?
                    }
                };
                add(DeliveryKind::Reencoded, body, rng);
                made.insert(Anomaly::ReencodedCopies);
            }
            if swapped {
                // The names are not signed, so the copy verifies; its
                // layout is not the processor's: refused as malformed.
                let body = body::renamed(
                    &step.fields,
                    &[
                        ("IPN_TOTALGENERAL", "IPN_SHIPPING"),
                        ("IPN_SHIPPING", "IPN_TOTALGENERAL"),
                    ],
                )?;
                self.outcomes.add(Outcome::Malformed);
                insert_copy(
                    rng,
                    run,
                    copy_of(i, DeliveryKind::Swapped, body, step, context),
                );
            }
        }

        // Per order: one copy with signatures stripped.
        let strip = rng.chance(rates.stripped_signatures);
        let strip_all = rng.chance(0.5);
        let strip_pick = rng.next_u64();
        // A copy that still verifies is a repeat: not of a notification
        // that must stay alone (see above). One that does not is refused
        // before anything is read: not of one with a card number, whose
        // report is not what this anomaly is about.
        let strippable: Vec<usize> = (0..signed.len())
            .filter(|&i| {
                if strip_all {
                    !signed[i].has_pan
                } else {
                    !alone[i]
                }
            })
            .collect();
        if strip && !strippable.is_empty() {
            let i = strippable[(strip_pick % strippable.len() as u64) as usize];
            let step = &signed[i];
            let (kind, body, outcome) = if strip_all {
                (
                    DeliveryKind::Unsigned,
                    body::stripped(&step.fields, &Algorithm::STRONGEST_FIRST),
                    Outcome::InvalidSignature,
                )
            } else {
                (
                    DeliveryKind::Stripped,
                    body::stripped(&step.fields, &[Algorithm::Sha3_256]),
                    Outcome::Duplicate,
                )
            };
            self.outcomes.add(outcome);
            insert_copy(rng, run, copy_of(i, kind, body, step, context));
            made.insert(Anomaly::StrippedSignatures);
        }

        // Per order: the attacker's renamed copy of what must not count.
        let rename = rng.chance(rates.renamed_expected_fields);
        let rename_pick = rng.next_u64();
        let renameable: Vec<usize> = (0..signed.len())
            .filter(|&i| {
                let step = &signed[i];
                !step.has_pan && (context.test_order || step.fraud_denied)
            })
            .collect();
        if rename && self.config.expected_fields && !renameable.is_empty() {
            let i = renameable[(rename_pick % renameable.len() as u64) as usize];
            let step = &signed[i];
            let field = if context.test_order {
                ("TEST_ORDER", "TESTORDER")
            } else {
                ("FRAUD_STATUS", "FRAUDSTATUS")
            };
            let body = body::renamed(&step.fields, &[field])?;
            let mut copy = copy_of(i, DeliveryKind::Renamed, body, step, context);
            copy.test_order = false;
            self.outcomes.add(Outcome::Malformed);
            insert_copy(rng, run, copy);
            made.insert(Anomaly::RenamedExpectedFields);
        }

        if let Some((first, second)) = outline.payments {
            first_payment_first(run, first, second);
        }
        copies.anomalies = made.into_iter().collect();
        Ok(copies)
    }
}

/// A copy of notification `i` of a known order (only those get copies)
/// with another body.
fn copy_of(
    i: usize,
    kind: DeliveryKind,
    body: Vec<u8>,
    step: &Signed,
    context: &OrderContext,
) -> Delivery {
    Delivery {
        sequence: 0,
        body,
        order_ref: context.order_ref.clone(),
        kind,
        notification: i,
        order_status: step.status,
        known_order: true,
        has_pan: step.has_pan,
        test_order: context.test_order,
        notice: NoticeKind::Ipn,
    }
}

/// Inserts a copy into its order's run. The processor's own copies
/// (retries, the second URL's, resends) come after the genuine delivery,
/// as they do on the wire; copies made on the way (re-encoded, stripped,
/// renamed, swapped) may overtake it, so the first delivery of a
/// notification to arrive is not always the genuine one.
fn insert_copy(rng: &mut Rng, run: &mut Vec<Delivery>, copy: Delivery) {
    let later = matches!(
        copy.kind,
        DeliveryKind::Retry | DeliveryKind::SecondUrl | DeliveryKind::Resend
    );
    let genuine = run
        .iter()
        .position(|d| d.kind == DeliveryKind::Genuine && d.notification == copy.notification);
    let at = match genuine {
        Some(position) if later => position + 1 + rng.index(run.len() - position),
        _ => rng.index(run.len() + 1),
    };
    run.insert(at, copy);
}

/// Moves every accepted delivery of the double charge's second payment
/// that would arrive before the first payment's first accepted delivery to
/// just after it (see `Outline::payments` for why).
fn first_payment_first(run: &mut Vec<Delivery>, first: usize, second: usize) {
    let carries = |d: &Delivery, i: usize| d.notification == i && d.kind.carries_its_notification();
    let Some(anchor) = run.iter().position(|d| carries(d, first)) else {
        return;
    };
    let early: Vec<usize> = (0..anchor).filter(|&p| carries(&run[p], second)).collect();
    if early.is_empty() {
        return;
    }
    let mut moved = Vec::with_capacity(early.len());
    for &p in early.iter().rev() {
        moved.push(run.remove(p));
    }
    moved.reverse();
    let anchor = anchor - moved.len();
    for (offset, delivery) in moved.into_iter().enumerate() {
        run.insert(anchor + 1 + offset, delivery);
    }
}

/// Sorts review kinds by name (the multiset's canonical order).
pub fn sort_kinds(kinds: &mut [ReviewKind]) {
    kinds.sort_by_key(|kind| kind.as_str());
}

/// One to three different products, mostly one of each.
fn product_lines(rng: &mut Rng, currency: Currency) -> Vec<Line> {
    let count = 1 + rng.weighted(&[60, 30, 10]).unwrap_or(0);
    let mut catalogue: Vec<usize> = (0..people::PRODUCTS.len()).collect();
    rng.shuffle(&mut catalogue);
    catalogue
        .into_iter()
        .take(count)
        .filter_map(|i| people::PRODUCTS.get(i))
        .map(|product| {
            let quantity = 1 + rng.weighted(&[80, 15, 5]).unwrap_or(0) as u64;
            Line {
                product: *product,
                quantity,
                unit_price: i64::try_from(people::price_in(product.eur_cents, currency))
                    .unwrap_or(i64::MAX / 4),
            }
        })
        .collect()
}

/// A free-text value with a test card number in one of the ways people
/// write them.
fn pan_text(rng: &mut Rng) -> String {
    let pan = *rng.pick(&TEST_PANS).unwrap_or(&TEST_PANS[0]);
    let written = match rng.below(3) {
        0 => pan.to_owned(),
        style => {
            let separator = if style == 1 { " " } else { "-" };
            pan.as_bytes()
                .chunks(4)
                .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
                .collect::<Vec<_>>()
                .join(separator)
        }
    };
    let templates = [
        "Please charge card {} again",
        "PO for card {}",
        "Karte {} bitte belasten",
        "{}",
    ];
    let template = *rng.pick(&templates).unwrap_or(&"{}");
    template.replace("{}", &written)
}

/// Merges the orders' delivery lists into one stream: a seeded shuffle of
/// "whose turn" tokens, so each order's own sequence (already shuffled for
/// out-of-order orders) is kept while orders interleave.
fn interleave(seed: u64, runs: Vec<Run>) -> Vec<Delivery> {
    let mut tokens: Vec<usize> = runs
        .iter()
        .enumerate()
        .flat_map(|(i, run)| std::iter::repeat_n(i, run.deliveries.len()))
        .collect();
    let mut rng = Rng::derive(seed, STREAM_INTERLEAVE, 0);
    rng.shuffle(&mut tokens);
    let mut runs = runs;
    let mut out = Vec::with_capacity(tokens.len());
    for token in tokens {
        if let Some(mut delivery) = runs.get_mut(token).and_then(|r| r.deliveries.pop_front()) {
            delivery.sequence = out.len() + 1;
            out.push(delivery);
        }
    }
    out
}

#[cfg(test)]
mod tests;
