//! The software vendor profile (`simulate --profile software-vendor`): a
//! merchant that sells licences through the processor's hosted cart, as
//! processor-traffic.md describes what such a merchant really receives
//! (issue 21, Deliver 6).
//!
//! Each customer buys one thing, told as a [`Plan`]:
//!
//! | plan | notices | ends |
//! |---|---|---|
//! | monthly | first order, then 1-6 renewals a month apart (new `REFNO`, empty `REFNOEXT`, `IPN_LICENSE_TYPE[]=RENEWAL`, `ORIGINAL_REFNOEXT[]` echoing the first order's merchant reference when it had one); sometimes an LCN at purchase and after the last renewal | active, the last renewal paid within the last ten days |
//! | annual | first order, sometimes one renewal a year later | active |
//! | failed renewal | first order, 0-3 renewals, then the LCNs `PASTDUE` and `EXPIRED` | expired |
//! | canceled | first order, 0-3 renewals, then the LCN `CANCELED` (by the customer) | canceled |
//! | trial converted | a tiny trial order (`TRIAL`; its payout is negative), then the paid conversion and 0-3 renewals | active |
//! | trial lapsed | a tiny trial order, then the LCN `EXPIRED` | expired |
//! | lifetime | one order, `IPN_LICENSE_LIFETIME[]=YES`, expiry `9999-12-31 23:59:59` | active, lifetime |
//! | one-off | one order of a product without a licence | no subscription |
//!
//! About 40 % of first orders carry a merchant reference (`REFNOEXT`, the
//! cart's `order-ext-ref`): they are rows of the orders CSV, as the default
//! profile's orders are. The others, and every renewal, are the
//! processor's orders, keyed by `REFNO`. Every notice carries EU or UK VAT
//! (`IPN_VAT[]`), the processor's commission with four decimals, and the
//! payout side in USD (`PAYABLE_AMOUNT`, `FX_RATE`, `FX_MARKUP`).
//!
//! Deliveries: each notice once, plus exact duplicates, the processor's
//! retries (a payment notice stamped with a new `IPN_DATE` and signed
//! again; a licence notice sent again as it was) and second-URL copies
//! (one signature), at the [`AnomalyRates`](super::AnomalyRates) of the
//! config; a customer's notices are shuffled at the out-of-order rate, so
//! licence notices come before, between and after the payment notices. A
//! cancellation is always delivered after the orders it follows: the
//! simulated world never pays a renewal after a cancellation.
//!
//! The expectation ([`VendorExpectation`]) is derived from the plans'
//! intent, never by running the reconciler. Every recurring subscription
//! that does not end with a licence notice saying expired, past due or
//! canceled has its paid term end at least
//! [`VendorExpectation::renewals_due_from`] − base date after the base
//! date: a sweep up to that time plus the grace must raise no
//! `renewal_missing`.
//!
//! The processor settles and pays the vendor out in the payout currency
//! (USD): [`settlement`] writes its settlement and payout files from the
//! same plans, one sale line per captured payment whose net is the
//! notice's `PAYABLE_AMOUNT`.

mod body;
pub mod money;
pub mod settlement;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{NaiveDateTime, TimeDelta};

use crate::domain::subscription::SubscriptionStatus;
use crate::domain::{Currency, Money, OrderState, Outcome};
use crate::ipn::{Algorithm, Field, NoticeKind, SecretKey};
use crate::store::NewOrder;

use super::body::{encode, restamped, sign_fields, sign_fields_with};
use super::people::{Customer, price_in};
use super::rng::Rng;
use super::{
    Delivery, DeliveryKind, ExpectedOutcomes, Simulation, SimulationConfig, SimulationError,
    run_tag,
};

pub use body::{ItemLine, LcnStep, LicenceTerm, VendorOrder, VendorProduct};

/// The payout currency of every simulated notice.
pub const PAYOUT_CURRENCY: &str = "USD";
/// The expiry the processor writes for a lifetime licence.
pub const LIFETIME_EXPIRY: &str = "9999-12-31 23:59:59";
/// How long a trial lasts.
const TRIAL_DAYS: i64 = 14;
/// A monthly term, in days.
const MONTH_DAYS: i64 = 30;
const YEAR_DAYS: i64 = 365;

/// Random streams (apart from the default profile's).
const STREAM_PLAN: u64 = 101;
const STREAM_COPIES: u64 = 102;
const STREAM_INTERLEAVE: u64 = 103;

fn usd() -> Result<Currency, SimulationError> {
    Currency::iso(PAYOUT_CURRENCY).map_err(|_| SimulationError::Internal("payout currency"))
}

/// The vendor's catalogue: one subscription product in three terms, a
/// trial of it, and a one-off add-on without a licence. UTF-8 names, as
/// real catalogues have.
#[allow(clippy::inconsistent_digit_grouping)]
mod catalogue {
    use super::VendorProduct;
    pub const MONTHLY: VendorProduct = VendorProduct {
        id: "5101",
        name: "Éditeur Pro (monthly)",
        code: "EDP-M",
        eur_cents: 9_99,
    };
    pub const ANNUAL: VendorProduct = VendorProduct {
        id: "5102",
        name: "Éditeur Pro (yearly)",
        code: "EDP-Y",
        eur_cents: 99_00,
    };
    pub const LIFETIME: VendorProduct = VendorProduct {
        id: "5103",
        name: "Éditeur Pro — lifetime licence",
        code: "EDP-L",
        eur_cents: 249_00,
    };
    /// A paid trial so small that the processor's fixed fee exceeds it.
    pub const TRIAL: VendorProduct = VendorProduct {
        id: "5101",
        name: "Éditeur Pro (monthly)",
        code: "EDP-M",
        eur_cents: 10,
    };
    pub const TEMPLATES: VendorProduct = VendorProduct {
        id: "5105",
        name: "Vorlagen-Paket „Premium“",
        code: "TPL-1",
        eur_cents: 19_00,
    };
}

/// What one customer buys and how it ends (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Plan {
    Monthly,
    Annual,
    FailedRenewal,
    Canceled,
    TrialConverted,
    TrialLapsed,
    Lifetime,
    OneOff,
}

impl Plan {
    /// Every plan with its weight.
    pub const WEIGHTED: [(Plan, u32); 8] = [
        (Plan::Monthly, 26),
        (Plan::Annual, 12),
        (Plan::FailedRenewal, 12),
        (Plan::Canceled, 12),
        (Plan::TrialConverted, 10),
        (Plan::TrialLapsed, 10),
        (Plan::Lifetime, 10),
        (Plan::OneOff, 8),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Monthly => "monthly",
            Plan::Annual => "annual",
            Plan::FailedRenewal => "failed_renewal",
            Plan::Canceled => "canceled",
            Plan::TrialConverted => "trial_converted",
            Plan::TrialLapsed => "trial_lapsed",
            Plan::Lifetime => "lifetime",
            Plan::OneOff => "one_off",
        }
    }

    /// Whether the subscription stays active and renews by itself: its
    /// paid term must not have ended at the sweep.
    pub fn stays_active(self) -> bool {
        matches!(self, Plan::Monthly | Plan::Annual | Plan::TrialConverted)
    }
}

/// The currencies the vendor sells in, with their weights.
const CURRENCY_MIX: [(&str, u32); 4] = [("EUR", 45), ("USD", 30), ("GBP", 15), ("JPY", 10)];

/// The final state one order must reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedVendorOrder {
    /// `merchant` (in the orders CSV) or `processor` (keyed by `REFNO`).
    pub origin: &'static str,
    pub processor_ref: String,
    pub status: OrderState,
    /// Decimal strings in the order's currency.
    pub paid: String,
    pub refunded: String,
    pub currency: Currency,
    pub plan: Plan,
}

/// What a subscription must look like at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedSubscription {
    pub status: SubscriptionStatus,
    /// The end of the last paid term; `None` for a lifetime licence.
    pub expires_at: Option<NaiveDateTime>,
    pub lifetime: bool,
    /// Paid orders with `IPN_LICENSE_TYPE[]=RENEWAL`.
    pub renewals: usize,
    /// `REFNO` of the first and of the latest paid order.
    pub first_order: String,
    pub latest_order: String,
    /// The first order's merchant reference, echoed by its renewals.
    pub original_order_ref: Option<String>,
    pub plan: Plan,
}

/// The figures of one order currency, in minor units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpectedFigures {
    /// Σ `IPN_TOTALGENERAL` of the payments.
    pub paid: i64,
    /// Σ `IPN_VAT[]` (+ `IPN_SHIPPING_TAX`, always 0 here).
    pub vat: i64,
    /// Σ `IPN_COMMISSION`, each rounded half away from zero to the minor
    /// unit.
    pub commission: i64,
}

impl ExpectedFigures {
    /// Revenue excluding VAT (nothing is refunded in this profile).
    pub fn net_revenue(&self) -> i64 {
        self.paid - self.vat
    }
}

/// One captured payment of the vendor's world, with what its settlement
/// line in the payout currency is computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorPayment {
    /// The reference the daemon keys its order with.
    pub order_key: String,
    /// `REFNO`.
    pub processor_ref: String,
    /// `REFNOEXT`, when the cart set one.
    pub merchant_ref: Option<String>,
    /// The order currency.
    pub currency: Currency,
    /// `Σ IPN_PRICE[] × IPN_QTY[]` (net of VAT), order currency minor units.
    pub net: i64,
    /// `IPN_COMMISSION` rounded half away from zero to the order
    /// currency's minor unit (the provisional fee the books show).
    pub commission: i64,
    /// `PAYABLE_AMOUNT`, minor units of `payout`.
    pub payable: i64,
    /// `PAYOUT_CURRENCY`.
    pub payout: Currency,
    /// When the `COMPLETE` notice was sent (the simulated clock).
    pub completed_at: NaiveDateTime,
}

/// Everything the software vendor's run must end with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VendorExpectation {
    /// By the reference the daemon keys the order with: the merchant
    /// reference, else `REFNO`.
    pub orders: BTreeMap<String, ExpectedVendorOrder>,
    /// By licence reference.
    pub subscriptions: BTreeMap<String, ExpectedSubscription>,
    /// By order currency code.
    pub figures: BTreeMap<String, ExpectedFigures>,
    /// Σ `PAYABLE_AMOUNT` by payout currency code, minor units.
    pub payouts: BTreeMap<String, i64>,
    /// Distinct licence change notifications (each is stored once).
    pub licence_notices: usize,
    /// Every captured payment, in the order the plans paid them: what the
    /// processor settles and pays out ([`settlement`]).
    pub payments: Vec<VendorPayment>,
    /// The earliest end of a paid term among the subscriptions that stay
    /// active: a `renewal_missing` sweep before it plus the grace finds
    /// nothing.
    pub renewals_due_from: Option<NaiveDateTime>,
    /// How many customers follow each plan.
    pub plans: BTreeMap<&'static str, usize>,
}

/// One delivery before interleaving, with its simulated time.
struct Timed {
    at: NaiveDateTime,
    delivery: Delivery,
    /// The signed fields (for copies).
    fields: Vec<Field>,
    /// A cancellation: delivered after every payment notice of its
    /// customer.
    last: bool,
}

/// Generates the software vendor's simulation. Pure.
pub fn simulate(config: &SimulationConfig, key: &SecretKey) -> Result<Simulation, SimulationError> {
    let tag = run_tag(config.seed);
    let mut world = World {
        payout: usd()?,
        config,
        key,
        tag,
        serial: 0,
        message_id: 257_000_000_000 + (u64::from(tag) % 1000) * 1_000_000,
        orders: Vec::new(),
        expected: VendorExpectation::default(),
        outcomes: ExpectedOutcomes::default(),
        personal_data: BTreeSet::new(),
        runs: Vec::new(),
    };
    for index in 0..config.orders {
        world.customer(index as u64)?;
    }
    let World {
        orders,
        expected,
        outcomes,
        personal_data,
        runs,
        ..
    } = world;
    let deliveries = interleave(config.seed, runs);
    Ok(Simulation {
        config: config.clone(),
        orders,
        deliveries,
        expected: BTreeMap::new(),
        expected_orphans: BTreeMap::new(),
        expected_outcomes: outcomes,
        personal_data,
        payments: Vec::new(),
        vendor: Some(expected),
    })
}

struct World<'a> {
    payout: Currency,
    config: &'a SimulationConfig,
    key: &'a SecretKey,
    tag: u16,
    serial: u64,
    message_id: u64,
    orders: Vec<NewOrder>,
    expected: VendorExpectation,
    outcomes: ExpectedOutcomes,
    personal_data: BTreeSet<String>,
    runs: Vec<VecDeque<Delivery>>,
}

/// A customer's purchase: what every order and licence notice shares.
struct Purchase {
    plan: Plan,
    currency: Currency,
    vat_rate_bp: i64,
    customer: Customer,
    customer_reference: u64,
    card_last_digits: String,
    merchant_ref: Option<String>,
    licence_ref: String,
    /// `API` for a merchant-referenced order made through the REST API,
    /// else `Web`.
    origin: &'static str,
}

/// An order of the purchase, as planned.
struct PlannedOrder {
    product: VendorProduct,
    licence_type: &'static str,
    starts_at: NaiveDateTime,
    expires_at: Option<NaiveDateTime>,
    with_addon: bool,
    /// Whether it is the first order (it may carry the merchant
    /// reference).
    first: bool,
    /// A PAYMENT_AUTHORIZED before the COMPLETE.
    authorized_first: bool,
}

/// A planned licence change notification.
struct PlannedLcn {
    at: NaiveDateTime,
    status: &'static str,
    dispatch_reason: &'static str,
    changed_by: &'static str,
    /// Orders paid when it is sent (how many of the planned ones).
    orders_paid: usize,
    /// Still a trial then.
    trial: bool,
}

fn days(n: i64) -> TimeDelta {
    TimeDelta::days(n)
}

fn seconds(rng: &mut Rng, low: u64, high: u64) -> TimeDelta {
    TimeDelta::seconds(i64::try_from(rng.range(low, high)).unwrap_or(0))
}

fn licence_code(rng: &mut Rng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..10)
        .map(|_| char::from(ALPHABET[rng.index(ALPHABET.len())]))
        .collect()
}

impl World<'_> {
    /// One customer: its plan, orders, licence notices, deliveries and
    /// expectation.
    fn customer(&mut self, index: u64) -> Result<(), SimulationError> {
        let mut rng = Rng::derive(self.config.seed, STREAM_PLAN, index);
        let base = self.config.base_date;
        self.serial += 1;
        let serial = self.serial;
        let weights: Vec<u32> = Plan::WEIGHTED.iter().map(|(_, w)| *w).collect();
        let plan = rng
            .weighted(&weights)
            .and_then(|i| Plan::WEIGHTED.get(i))
            .map_or(Plan::Monthly, |(plan, _)| *plan);
        let currency_weights: Vec<u32> = CURRENCY_MIX.iter().map(|(_, w)| *w).collect();
        let code = rng
            .weighted(&currency_weights)
            .and_then(|i| CURRENCY_MIX.get(i))
            .map_or("EUR", |(code, _)| *code);
        let currency =
            Currency::iso(code).map_err(|_| SimulationError::Internal("vendor currency"))?;
        let vat_rate_bp = match code {
            "EUR" => *rng.pick(&[1900, 2000, 2100, 2200, 2300]).unwrap_or(&2100),
            "GBP" => 2000,
            "JPY" => 1000,
            _ => 0,
        };
        let customer = Customer::random(&mut rng, serial);
        self.personal_data
            .extend(customer.personal_values().into_iter().map(str::to_owned));
        let with_merchant_ref = rng.chance(0.4);
        let api = rng.chance(0.5);
        let purchase = Purchase {
            plan,
            currency,
            vat_rate_bp,
            customer_reference: 700_000_000 + rng.below(100_000_000),
            card_last_digits: format!("{:04}", rng.below(10_000)),
            merchant_ref: with_merchant_ref.then(|| format!("WEB-{:04X}-{serial:06}", self.tag)),
            licence_ref: licence_code(&mut rng),
            origin: if with_merchant_ref && api {
                "API"
            } else {
                "Web"
            },
            customer,
        };

        // The plan's orders and licence notices, on the simulated clock.
        let mut orders: Vec<PlannedOrder> = Vec::new();
        let mut lcns: Vec<PlannedLcn> = Vec::new();
        let addon = rng.chance(0.25);
        let purchase_lcn = rng.chance(0.6);
        let later_lcn = rng.chance(0.3);
        let monthly = |orders: &mut Vec<PlannedOrder>, first_start: NaiveDateTime, count: i64| {
            for j in 0..count {
                let starts_at = first_start + days(j * MONTH_DAYS);
                orders.push(PlannedOrder {
                    product: catalogue::MONTHLY,
                    licence_type: if j == 0 && orders.is_empty() {
                        "REGULAR"
                    } else {
                        "RENEWAL"
                    },
                    starts_at,
                    expires_at: Some(starts_at + days(MONTH_DAYS)),
                    with_addon: j == 0 && orders.is_empty() && addon,
                    first: j == 0 && orders.is_empty(),
                    authorized_first: false,
                });
            }
        };
        match plan {
            Plan::Monthly => {
                let renewals = 1 + i64::try_from(rng.below(6)).unwrap_or(0);
                let last = base - seconds(&mut rng, 3600, 10 * 86_400);
                monthly(
                    &mut orders,
                    last - days(renewals * MONTH_DAYS),
                    renewals + 1,
                );
            }
            Plan::Annual => {
                let renewed = rng.chance(0.4);
                let start = if renewed {
                    base - days(YEAR_DAYS) - seconds(&mut rng, 86_400, 200 * 86_400)
                } else {
                    base - seconds(&mut rng, 20 * 86_400, 300 * 86_400)
                };
                for j in 0..=i64::from(renewed) {
                    let starts_at = start + days(j * YEAR_DAYS);
                    orders.push(PlannedOrder {
                        product: catalogue::ANNUAL,
                        licence_type: if j == 0 { "REGULAR" } else { "RENEWAL" },
                        starts_at,
                        expires_at: Some(starts_at + days(YEAR_DAYS)),
                        with_addon: j == 0 && addon,
                        first: j == 0,
                        authorized_first: false,
                    });
                }
            }
            Plan::FailedRenewal => {
                let renewals = i64::try_from(rng.below(4)).unwrap_or(0);
                let end = base - days(8) - seconds(&mut rng, 86_400, 60 * 86_400);
                monthly(
                    &mut orders,
                    end - days((renewals + 1) * MONTH_DAYS),
                    renewals + 1,
                );
                let paid = orders.len();
                lcns.push(PlannedLcn {
                    at: end + seconds(&mut rng, 600, 6 * 3600),
                    status: "PASTDUE",
                    dispatch_reason: "LICENCE_PASTDUE",
                    changed_by: "SYSTEM",
                    orders_paid: paid,
                    trial: false,
                });
                lcns.push(PlannedLcn {
                    at: end + days(7) + seconds(&mut rng, 0, 3600),
                    status: "EXPIRED",
                    dispatch_reason: "LICENCE_EXPIRATION",
                    changed_by: "SYSTEM",
                    orders_paid: paid,
                    trial: false,
                });
            }
            Plan::Canceled => {
                let renewals = i64::try_from(rng.below(4)).unwrap_or(0);
                let end = base - seconds(&mut rng, 86_400, 25 * 86_400);
                monthly(
                    &mut orders,
                    end - days((renewals + 1) * MONTH_DAYS),
                    renewals + 1,
                );
                lcns.push(PlannedLcn {
                    at: end - seconds(&mut rng, 86_400, 20 * 86_400),
                    status: "CANCELED",
                    dispatch_reason: "LICENCE_CHANGE",
                    changed_by: "CUSTOMER",
                    orders_paid: orders.len(),
                    trial: false,
                });
            }
            Plan::TrialConverted => {
                let renewals = i64::try_from(rng.below(4)).unwrap_or(0);
                let last = base - seconds(&mut rng, 3600, 10 * 86_400);
                let conversion = last - days(renewals * MONTH_DAYS);
                let trial_start = conversion - days(TRIAL_DAYS);
                orders.push(PlannedOrder {
                    product: catalogue::TRIAL,
                    licence_type: "TRIAL",
                    starts_at: trial_start,
                    expires_at: Some(conversion),
                    with_addon: false,
                    first: true,
                    authorized_first: false,
                });
                if purchase_lcn {
                    lcns.push(PlannedLcn {
                        at: trial_start + seconds(&mut rng, 400, 3600),
                        status: "ACTIVE",
                        dispatch_reason: "LICENCE_CHANGE",
                        changed_by: "SYSTEM",
                        orders_paid: 1,
                        trial: true,
                    });
                }
                monthly(&mut orders, conversion, renewals + 1);
                lcns.push(PlannedLcn {
                    at: conversion + seconds(&mut rng, 400, 3600),
                    status: "ACTIVE",
                    dispatch_reason: "LICENCE_CHANGE",
                    changed_by: "SYSTEM",
                    orders_paid: 2,
                    trial: false,
                });
            }
            Plan::TrialLapsed => {
                let trial_start = base - days(TRIAL_DAYS) - seconds(&mut rng, 86_400, 60 * 86_400);
                let end = trial_start + days(TRIAL_DAYS);
                orders.push(PlannedOrder {
                    product: catalogue::TRIAL,
                    licence_type: "TRIAL",
                    starts_at: trial_start,
                    expires_at: Some(end),
                    with_addon: false,
                    first: true,
                    authorized_first: false,
                });
                if purchase_lcn {
                    lcns.push(PlannedLcn {
                        at: trial_start + seconds(&mut rng, 400, 3600),
                        status: "ACTIVE",
                        dispatch_reason: "LICENCE_CHANGE",
                        changed_by: "SYSTEM",
                        orders_paid: 1,
                        trial: true,
                    });
                }
                lcns.push(PlannedLcn {
                    at: end + seconds(&mut rng, 600, 3 * 3600),
                    status: "EXPIRED",
                    dispatch_reason: "LICENCE_EXPIRATION",
                    changed_by: "SYSTEM",
                    orders_paid: 1,
                    trial: true,
                });
            }
            Plan::Lifetime => {
                orders.push(PlannedOrder {
                    product: catalogue::LIFETIME,
                    licence_type: "REGULAR",
                    starts_at: base - seconds(&mut rng, 86_400, 200 * 86_400),
                    expires_at: None,
                    with_addon: addon,
                    first: true,
                    authorized_first: false,
                });
            }
            Plan::OneOff => {
                orders.push(PlannedOrder {
                    product: catalogue::TEMPLATES,
                    licence_type: "",
                    starts_at: base - seconds(&mut rng, 86_400, 200 * 86_400),
                    expires_at: None,
                    with_addon: false,
                    first: true,
                    authorized_first: false,
                });
            }
        }
        // The first order is authorized, then completed; some renewals too.
        for order in &mut orders {
            order.authorized_first = order.first || rng.chance(0.3);
        }
        // An LCN at the (first paid) purchase, and one after the last
        // renewal, for subscriptions that renew.
        let recurring = !matches!(plan, Plan::Lifetime | Plan::OneOff);
        if purchase_lcn
            && !matches!(
                plan,
                Plan::TrialConverted | Plan::TrialLapsed | Plan::OneOff
            )
        {
            lcns.push(PlannedLcn {
                at: orders[0].starts_at + seconds(&mut rng, 400, 3600),
                status: "ACTIVE",
                dispatch_reason: "LICENCE_CHANGE",
                changed_by: "SYSTEM",
                orders_paid: 1,
                trial: false,
            });
        }
        if later_lcn && plan == Plan::Monthly {
            let last = orders.len();
            lcns.push(PlannedLcn {
                at: orders[last - 1].starts_at + seconds(&mut rng, 400, 3600),
                status: "ACTIVE",
                dispatch_reason: "LICENCE_CHANGE",
                changed_by: "SYSTEM",
                orders_paid: last,
                trial: false,
            });
        }
        self.tell(&mut rng, &purchase, &orders, &lcns, recurring, serial)
    }

    /// Turns a plan into bodies, deliveries and expectations.
    fn tell(
        &mut self,
        rng: &mut Rng,
        purchase: &Purchase,
        planned: &[PlannedOrder],
        lcns: &[PlannedLcn],
        recurring: bool,
        serial: u64,
    ) -> Result<(), SimulationError> {
        let currency = purchase.currency;
        let mut timed: Vec<Timed> = Vec::new();
        let mut refnos: Vec<u64> = Vec::new();
        let mut built: Vec<VendorOrder> = Vec::new();
        for (j, order) in planned.iter().enumerate() {
            // REFNOs: above the default profile's (whose serials stay
            // below 700,000 in one run), in the seed's block.
            let refno = 100_000_000
                + (u64::from(self.tag) % 800) * 1_000_000
                + 700_000
                + serial * 10
                + j as u64;
            refnos.push(refno);
            let mut lines = vec![self.line(order.product, currency, purchase, order)];
            if order.with_addon {
                let mut addon = self.line(catalogue::TEMPLATES, currency, purchase, order);
                addon.licence = None;
                lines.push(addon);
            }
            let net: i64 = lines.iter().map(ItemLine::net).sum();
            let vat: i64 = lines.iter().map(|l| l.vat).sum();
            let gross = net + vat;
            let commission_e4 = money::commission_e4(gross, currency);
            let payable = money::payable_cents(gross, vat, commission_e4, currency);
            let (fx_rate, fx_markup) = money::fx(currency);
            let merchant_ref = if order.first {
                purchase.merchant_ref.clone().unwrap_or_default()
            } else {
                String::new()
            };
            let vendor_order = VendorOrder {
                refno,
                merchant_ref: merchant_ref.clone(),
                currency,
                lines,
                sale: order.starts_at - TimeDelta::seconds(30),
                customer: purchase.customer.clone(),
                customer_reference: purchase.customer_reference,
                card_last_digits: purchase.card_last_digits.clone(),
                card_type: "visa",
                origin: if order.first { purchase.origin } else { "API" },
                gross,
                vat,
                commission_e4,
                fx_rate,
                fx_markup,
                payable,
                payout: self.payout,
            };
            // Payment notices: authorized (sometimes) then complete.
            let mut at = order.starts_at;
            let mut statuses = Vec::new();
            if order.authorized_first {
                statuses.push(("PAYMENT_AUTHORIZED", at));
                at += seconds(rng, 60, 3600);
            }
            statuses.push(("COMPLETE", at));
            let completed_at = at;
            let payment_date = Some(order.starts_at);
            for (status, at) in statuses {
                self.message_id += 1;
                let step = body::IpnStep {
                    status,
                    at,
                    message_id: self.message_id,
                    payment_date,
                    complete_date: (status == "COMPLETE").then_some(at),
                };
                let fields = sign_fields(body::ipn_fields(&vendor_order, &step), self.key)?;
                let key = order_key(&vendor_order);
                timed.push(Timed {
                    at,
                    delivery: Delivery {
                        sequence: 0,
                        body: encode(fields.clone()),
                        order_ref: key,
                        kind: DeliveryKind::Genuine,
                        notification: timed.len(),
                        order_status: status,
                        known_order: true,
                        has_pan: false,
                        test_order: false,
                        notice: NoticeKind::Ipn,
                    },
                    fields,
                    last: false,
                });
                self.outcomes.add(Outcome::Applied);
            }
            // The books.
            let key = order_key(&vendor_order);
            if order.first && !merchant_ref.is_empty() {
                let mut row = NewOrder::new(&merchant_ref, Money::from_minor(gross, currency))
                    .map_err(SimulationError::Order)?;
                row.created_at = Some(vendor_order.sale.and_utc());
                self.orders.push(row);
            }
            let figures = self
                .expected
                .figures
                .entry(currency.as_str().to_owned())
                .or_default();
            figures.paid += gross;
            figures.vat += vat;
            figures.commission += money::commission_minor(commission_e4, currency);
            *self
                .expected
                .payouts
                .entry(PAYOUT_CURRENCY.to_owned())
                .or_default() += payable;
            self.expected.payments.push(VendorPayment {
                order_key: key.clone(),
                processor_ref: refno.to_string(),
                merchant_ref: (!merchant_ref.is_empty()).then(|| merchant_ref.clone()),
                currency,
                net: vendor_order.lines.iter().map(ItemLine::net).sum(),
                commission: money::commission_minor(commission_e4, currency),
                payable,
                payout: self.payout,
                completed_at,
            });
            self.expected.orders.insert(
                key,
                ExpectedVendorOrder {
                    origin: if merchant_ref.is_empty() {
                        "processor"
                    } else {
                        "merchant"
                    },
                    processor_ref: refno.to_string(),
                    status: OrderState::Paid,
                    paid: Money::from_minor(gross, currency).format_amount(),
                    refunded: Money::from_minor(0, currency).format_amount(),
                    currency,
                    plan: purchase.plan,
                },
            );
            built.push(vendor_order);
        }

        // Licence notices.
        let first = planned.first();
        for lcn in lcns {
            let paid = lcn.orders_paid.clamp(1, planned.len());
            let latest = &planned[paid - 1];
            let renewals = planned[..paid]
                .iter()
                .filter(|o| o.licence_type == "RENEWAL")
                .count();
            let active = lcn.status == "ACTIVE";
            let price = built
                .get(paid.min(built.len()) - 1)
                .map(|o| {
                    if lcn.trial {
                        // The conversion's price: the monthly one.
                        i64::try_from(price_in(catalogue::MONTHLY.eur_cents, currency)).unwrap_or(0)
                    } else {
                        o.lines.first().map_or(0, |l| l.unit_price + l.vat)
                    }
                })
                .unwrap_or(0);
            let step = LcnStep {
                licence_ref: purchase.licence_ref.clone(),
                status: lcn.status,
                dispatch_reason: lcn.dispatch_reason,
                changed_by: lcn.changed_by,
                updated_at: lcn.at,
                expires_at: latest.expires_at,
                starts_at: first.map_or(lcn.at, |o| o.starts_at),
                purchased_at: first.map_or(lcn.at, |o| o.starts_at - TimeDelta::seconds(30)),
                trial: lcn.trial,
                recurring: recurring && lcn.status != "CANCELED",
                product: latest.product,
                next_renewal: latest
                    .expires_at
                    .filter(|_| active && recurring)
                    .map(|at| (at, price)),
                currency,
                original_refno: refnos.first().copied().unwrap_or(0),
                last_refno: refnos.get(paid - 1).copied().unwrap_or(0),
                renewals,
                customer_reference: purchase.customer_reference,
            };
            let fields = sign_fields(
                body::lcn_fields(&step, &purchase.customer, &purchase.card_last_digits),
                self.key,
            )?;
            timed.push(Timed {
                at: lcn.at,
                delivery: Delivery {
                    sequence: 0,
                    body: encode(fields.clone()),
                    order_ref: purchase.licence_ref.clone(),
                    kind: DeliveryKind::Genuine,
                    notification: timed.len(),
                    order_status: lcn.status,
                    known_order: true,
                    has_pan: false,
                    test_order: false,
                    notice: NoticeKind::Lcn,
                },
                fields,
                last: lcn.status == "CANCELED",
            });
            self.expected.licence_notices += 1;
        }

        // The subscription.
        if purchase.plan != Plan::OneOff
            && let (Some(first_refno), Some(latest_refno), Some(last)) =
                (refnos.first(), refnos.last(), planned.last())
        {
            let said = lcns.iter().max_by_key(|l| l.at).map(|l| l.status);
            let status = match said {
                Some("PASTDUE") => SubscriptionStatus::PastDue,
                Some("EXPIRED") => SubscriptionStatus::Expired,
                Some("CANCELED") => SubscriptionStatus::Canceled,
                _ => SubscriptionStatus::Active,
            };
            let expected = ExpectedSubscription {
                status,
                expires_at: last.expires_at,
                lifetime: last.expires_at.is_none(),
                renewals: planned
                    .iter()
                    .filter(|o| o.licence_type == "RENEWAL")
                    .count(),
                first_order: first_refno.to_string(),
                latest_order: latest_refno.to_string(),
                original_order_ref: purchase.merchant_ref.clone().filter(|_| planned.len() > 1),
                plan: purchase.plan,
            };
            if purchase.plan.stays_active()
                && let Some(expires_at) = expected.expires_at
            {
                let due = &mut self.expected.renewals_due_from;
                *due = Some(due.map_or(expires_at, |d| d.min(expires_at)));
            }
            self.expected
                .subscriptions
                .insert(purchase.licence_ref.clone(), expected);
        }
        *self
            .expected
            .plans
            .entry(purchase.plan.as_str())
            .or_default() += 1;

        // Arrival: in time order, or shuffled; copies after their genuine
        // delivery; a cancellation after every payment notice.
        timed.sort_by_key(|t| t.at);
        let mut copies_rng = Rng::derive(self.config.seed, STREAM_COPIES, serial);
        let run = self.deliver(&mut copies_rng, timed)?;
        self.runs.push(run);
        Ok(())
    }

    /// One line item of `product` for `order`.
    fn line(
        &self,
        product: VendorProduct,
        currency: Currency,
        purchase: &Purchase,
        order: &PlannedOrder,
    ) -> ItemLine {
        let unit_price = i64::try_from(price_in(product.eur_cents, currency)).unwrap_or(1);
        ItemLine {
            product,
            quantity: 1,
            unit_price,
            vat: money::vat_of(unit_price, purchase.vat_rate_bp),
            vat_rate_bp: purchase.vat_rate_bp,
            licence: (!order.licence_type.is_empty()).then(|| LicenceTerm {
                licence_ref: purchase.licence_ref.clone(),
                licence_type: order.licence_type,
                starts_at: order.starts_at,
                expires_at: order.expires_at,
                original_order_ref: if order.first {
                    None
                } else {
                    purchase.merchant_ref.clone()
                },
            }),
        }
    }

    /// The deliveries of one customer: genuine ones (shuffled at the
    /// out-of-order rate), exact duplicates, processor retries and
    /// second-URL copies.
    fn deliver(
        &mut self,
        rng: &mut Rng,
        timed: Vec<Timed>,
    ) -> Result<VecDeque<Delivery>, SimulationError> {
        let rates = self.config.rates;
        let shuffle = rng.chance(rates.out_of_order);
        let (mut ordinary, last): (Vec<Timed>, Vec<Timed>) =
            timed.into_iter().partition(|t| !t.last);
        if shuffle {
            rng.shuffle(&mut ordinary);
        }
        let mut run: Vec<Delivery> = Vec::new();
        let mut pending: Vec<(Delivery, Vec<Field>, NaiveDateTime)> = Vec::new();
        for t in ordinary.into_iter().chain(last) {
            pending.push((t.delivery.clone(), t.fields, t.at));
            run.push(t.delivery);
        }
        for (genuine, fields, at) in pending {
            let duplicate = rng.chance(rates.duplicates);
            let retry = rng.chance(rates.processor_retries);
            let retry_after = rng.range(60, 36 * 3600);
            let second = rng.chance(rates.second_url_copies);
            let ipn = genuine.notice == NoticeKind::Ipn;
            let mut copies = Vec::new();
            if duplicate {
                let mut copy = genuine.clone();
                copy.kind = DeliveryKind::Duplicate;
                copies.push(copy);
            }
            if retry {
                let mut copy = genuine.clone();
                copy.kind = DeliveryKind::Retry;
                if ipn {
                    let stamped = at + TimeDelta::seconds(i64::try_from(retry_after).unwrap_or(60));
                    copy.body = restamped(&fields, stamped, self.key, &super::ALGORITHMS)?;
                }
                copies.push(copy);
            }
            if second {
                let mut copy = genuine.clone();
                copy.kind = DeliveryKind::SecondUrl;
                copy.body = encode(sign_fields_with(fields, self.key, &[Algorithm::Sha256])?);
                copies.push(copy);
            }
            for copy in copies {
                if ipn {
                    self.outcomes.add(Outcome::Duplicate);
                }
                let position = run
                    .iter()
                    .position(|d| {
                        d.kind == DeliveryKind::Genuine && d.notification == genuine.notification
                    })
                    .unwrap_or(0);
                // Somewhere after the genuine one.
                let from = (position + 1).min(run.len());
                let at = from + rng.index(run.len() - from + 1);
                run.insert(at.min(run.len()), copy);
            }
        }
        // A copy of a payment notice never follows a cancellation: move
        // every cancellation delivery to the end, in their order.
        let (mut rest, canceled): (Vec<Delivery>, Vec<Delivery>) =
            run.into_iter().partition(|d| d.order_status != "CANCELED");
        rest.extend(canceled);
        Ok(rest.into())
    }
}

/// The reference the daemon keys an order with (`order-source = both`):
/// the merchant reference when the notice names one, else `REFNO`.
fn order_key(order: &VendorOrder) -> String {
    if order.merchant_ref.is_empty() {
        order.refno.to_string()
    } else {
        order.merchant_ref.clone()
    }
}

/// Merges the customers' runs (each kept in its order) into one stream.
fn interleave(seed: u64, runs: Vec<VecDeque<Delivery>>) -> Vec<Delivery> {
    let mut tokens: Vec<usize> = runs
        .iter()
        .enumerate()
        .flat_map(|(i, run)| std::iter::repeat_n(i, run.len()))
        .collect();
    let mut rng = Rng::derive(seed, STREAM_INTERLEAVE, 0);
    rng.shuffle(&mut tokens);
    let mut runs = runs;
    let mut out = Vec::with_capacity(tokens.len());
    for token in tokens {
        if let Some(mut delivery) = runs.get_mut(token).and_then(VecDeque::pop_front) {
            delivery.sequence = out.len() + 1;
            out.push(delivery);
        }
    }
    out
}

/// Writes the vendor's expectation as JSON (amounts as decimal strings).
pub fn write_vendor_json(
    expected: &VendorExpectation,
    mut out: impl std::io::Write,
) -> Result<(), super::WriteError> {
    use serde_json::json;
    let date = |at: Option<NaiveDateTime>| at.map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string());
    let orders: serde_json::Map<String, serde_json::Value> = expected
        .orders
        .iter()
        .map(|(key, o)| {
            (
                key.clone(),
                json!({
                    "origin": o.origin,
                    "processor_ref": o.processor_ref,
                    "status": o.status.as_str(),
                    "currency": o.currency.as_str(),
                    "paid": o.paid,
                    "refunded": o.refunded,
                    "plan": o.plan.as_str(),
                }),
            )
        })
        .collect();
    let subscriptions: serde_json::Map<String, serde_json::Value> = expected
        .subscriptions
        .iter()
        .map(|(licence, s)| {
            (
                licence.clone(),
                json!({
                    "status": s.status.as_str(),
                    "expires_at": date(s.expires_at),
                    "lifetime": s.lifetime,
                    "renewals": s.renewals,
                    "first_order": s.first_order,
                    "latest_order": s.latest_order,
                    "original_order_ref": s.original_order_ref,
                    "plan": s.plan.as_str(),
                }),
            )
        })
        .collect();
    let mut figures = serde_json::Map::new();
    for (code, f) in &expected.figures {
        let currency = Currency::iso(code).map_err(|_| {
            super::WriteError::Json(serde_json::Error::io(std::io::Error::other(
                "not a currency",
            )))
        })?;
        let amount = |minor: i64| Money::from_minor(minor, currency).format_amount();
        figures.insert(
            code.clone(),
            json!({
                "paid": amount(f.paid),
                "vat": amount(f.vat),
                "commission": amount(f.commission),
                "net_revenue": amount(f.net_revenue()),
            }),
        );
    }
    let mut payouts = serde_json::Map::new();
    for (code, minor) in &expected.payouts {
        if let Ok(currency) = Currency::iso(code) {
            payouts.insert(
                code.clone(),
                json!(Money::from_minor(*minor, currency).format_amount()),
            );
        }
    }
    let view = json!({
        "orders": orders,
        "subscriptions": subscriptions,
        "figures": figures,
        "payouts": payouts,
        "licence_notices": expected.licence_notices,
        "renewals_due_from": date(expected.renewals_due_from),
        "plans": expected.plans,
    });
    serde_json::to_writer_pretty(&mut out, &view)?;
    out.write_all(b"\n")
        .and_then(|()| out.flush())
        .map_err(|err| super::WriteError::Json(serde_json::Error::io(err)))?;
    Ok(())
}
