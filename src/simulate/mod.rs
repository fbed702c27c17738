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
//!
//! plus [`SimulationConfig::test_orders`]: orders whose notifications carry
//! `TEST_ORDER=1` ([`Story::TestOrder`]), ignored by default.
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
//! Review kinds are expected as a *multiset* (sorted by name): every kind
//! a story implies is raised exactly once per cause (once per order for
//! `suspect`, `reversed_after_payment` and `amount_mismatch`; once per
//! notification for `pan_detected` and `orphan_payment`), and a duplicate
//! delivery must not raise anything again. Comparing multisets catches an
//! item raised twice, which comparing sets would hide.

pub mod deliver;
pub mod rng;
pub mod write;

mod body;
mod people;
mod story;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeDelta};

use crate::domain::{Currency, Money, OrderState, Outcome, ReviewKind};
use crate::ipn::{FormError, SecretKey};
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
        }
    }

    /// Each rate with its command-line name.
    pub fn named(&self) -> [(&'static str, f64); 6] {
        [
            ("duplicates", self.duplicates),
            ("out-of-order", self.out_of_order),
            ("tampered", self.tampered),
            ("amount-mismatch", self.amount_mismatch),
            ("unknown-orders", self.unknown_orders),
            ("pan-in-free-text", self.pan_in_free_text),
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
            Currency::parse(code)
                .ok()
                .map(|currency| CurrencyWeight { currency, weight })
        })
        .collect()
    }

    /// Parses `EUR=40,USD=30,JPY=10` (a code without `=` weighs 1).
    pub fn parse_mix(text: &str) -> Result<Vec<CurrencyWeight>, SimulationError> {
        let mut mix = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (code, weight) = match part.split_once('=') {
                Some((code, weight)) => (code.trim(), weight.trim()),
                None => (part, "1"),
            };
            let currency = Currency::parse(code).map_err(|_| {
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
}

impl DeliveryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Genuine => "genuine",
            DeliveryKind::Duplicate => "duplicate",
            DeliveryKind::Tampered => "tampered",
        }
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
    /// ORDERSTATUS of the body.
    pub order_status: &'static str,
    /// Whether the order is in the orders CSV.
    pub known_order: bool,
    /// Whether the body hides a card number in a free-text field.
    pub has_pan: bool,
    /// Whether the body says TEST_ORDER=1.
    pub test_order: bool,
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
            .field("order_status", &self.order_status)
            .field("known_order", &self.known_order)
            .field("has_pan", &self.has_pan)
            .field("test_order", &self.test_order)
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
}

impl Anomaly {
    pub fn as_str(self) -> &'static str {
        match self {
            Anomaly::Duplicates => "duplicates",
            Anomaly::OutOfOrder => "out_of_order",
            Anomaly::Tampered => "tampered",
            Anomaly::PanInFreeText => "pan_in_free_text",
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
            Outcome::Malformed => 0,
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
    }

    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Applied => self.applied += 1,
            Outcome::Ignored => self.ignored += 1,
            Outcome::Mismatch => self.mismatch += 1,
            Outcome::Duplicate => self.duplicate += 1,
            Outcome::OrderNotFound => self.order_not_found += 1,
            Outcome::InvalidSignature | Outcome::Malformed => self.invalid_signature += 1,
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
}

impl Simulation {
    /// Deliveries of one kind.
    pub fn count(&self, kind: DeliveryKind) -> usize {
        self.deliveries.iter().filter(|d| d.kind == kind).count()
    }
}

/// Separate random streams, so that one kind of choice never shifts another.
const STREAM_ORDER: u64 = 1;
const STREAM_ORPHAN: u64 = 2;
const STREAM_INTERLEAVE: u64 = 3;

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
    };
    for index in 0..config.orders {
        let index = index as u64;
        let mut rng = Rng::derive(config.seed, STREAM_ORDER, index);
        let story = choose_story(&mut rng, config);
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
    })
}

/// A 16-bit tag of the seed, part of every order reference and REFNO, so
/// that runs with different seeds can share one database (the demo reuses
/// its database) without colliding references in practice.
fn run_tag(seed: u64) -> u16 {
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
}

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
                    order_status: step.status,
                    known_order: known,
                    has_pan: false,
                    test_order: context.test_order,
                });
            }
            genuine.push(Delivery {
                sequence: 0,
                body: body::encode(signed),
                order_ref: order_ref.clone(),
                kind: DeliveryKind::Genuine,
                order_status: step.status,
                known_order: known,
                has_pan: pan.is_some(),
                test_order: context.test_order,
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
        anomalies.sort();

        let pan_reviews = usize::from(with_pan);
        if known {
            let amount = Money::from_minor(total, currency);
            let mut order = NewOrder::new(&order_ref, amount).map_err(SimulationError::Order)?;
            order.created_at = Some(created.and_utc());
            self.orders.push(order);
            let mut review_kinds = outline.review_kinds.clone();
            review_kinds.extend(std::iter::repeat_n(ReviewKind::PanDetected, pan_reviews));
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
            let mut review_kinds: Vec<ReviewKind> =
                std::iter::repeat_n(ReviewKind::OrphanPayment, n).collect();
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
