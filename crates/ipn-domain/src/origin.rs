//! Which order a notification is about, and where orders come from.
//!
//! A merchant who imports its orders names each one in the checkout
//! (`REFNOEXT`, the merchant reference). A merchant who sells through the
//! processor's hosted cart often names none: `REFNOEXT` arrives empty, and
//! every automatic renewal is a new order the processor made by itself
//! (docs/protocol.md §14). Those orders exist only in the
//! processor's notices, and the processor's own reference, `REFNO`, is
//! their key.
//!
//! The operator says which kind it runs with [`OrderSource`]
//! (`order-source`); [`OrderSource::key`] decides, as a pure function of
//! the setting and the notice, which order a notice belongs to and whether
//! that order may be created from it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::tokenize::PaymentEvent;

/// Where orders come from (`order-source`, `IPN_ORDER_SOURCE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderSource {
    /// Every notice must name an imported order (`REFNOEXT`); a notice
    /// that names none, or an order nobody imported, is an orphan.
    Merchant,
    /// Orders come from verified notices, keyed by `REFNO`; a merchant
    /// reference in the notice is kept beside it.
    Processor,
    /// A notice that names a merchant reference is matched against the
    /// imported orders; one that names none creates or updates the
    /// processor's order.
    #[default]
    Both,
}

impl OrderSource {
    /// Every source, in the order the settings' help lists them.
    pub const ALL: [OrderSource; 3] = [
        OrderSource::Merchant,
        OrderSource::Processor,
        OrderSource::Both,
    ];

    /// The setting's value.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderSource::Merchant => "merchant",
            OrderSource::Processor => "processor",
            OrderSource::Both => "both",
        }
    }

    /// The order `event` is about, and whether the notice may create it.
    ///
    /// A test order (`TEST_ORDER=1`) never creates one: a sandbox purchase
    /// must not appear in the books as a sale.
    pub fn key(self, event: &PaymentEvent) -> OrderKey {
        let merchant = event.merchant_ref.as_deref();
        let (origin, order_ref) = match (self, merchant) {
            (OrderSource::Merchant | OrderSource::Both, Some(merchant)) => {
                (OrderOrigin::Merchant, merchant)
            }
            // Merchant: the notice names no order of ours. It is looked for
            // as a processor order, which this source never creates, so it
            // takes the orphan path (a person links it or it stays open).
            (OrderSource::Merchant, None) | (OrderSource::Processor | OrderSource::Both, _) => {
                (OrderOrigin::Processor, event.processor_ref.as_str())
            }
        };
        OrderKey {
            origin,
            order_ref: order_ref.to_owned(),
            creates: origin == OrderOrigin::Processor
                && self != OrderSource::Merchant
                && !event.test_order,
        }
    }
}

impl fmt::Display for OrderSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `order-source` value that is none of `merchant`, `processor`, `both`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected one of merchant, processor, both")]
pub struct UnknownOrderSource;

impl FromStr for OrderSource {
    type Err = UnknownOrderSource;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        OrderSource::ALL
            .into_iter()
            .find(|source| source.as_str() == value)
            .ok_or(UnknownOrderSource)
    }
}

/// Who made an order: the merchant (imported, keyed by its reference) or
/// the processor (made from its notices, keyed by `REFNO`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::Display,
    strum::VariantArray,
    strum::EnumCount,
)]
#[strum(serialize_all = "snake_case")]
#[strum(
    parse_err_ty = UnknownOrderOrigin,
    parse_err_fn = UnknownOrderOrigin::of
)]
pub enum OrderOrigin {
    Merchant,
    Processor,
}

string_forms!(OrderOrigin, UnknownOrderOrigin, "order origin");

/// A stored order origin that is neither `merchant` nor `processor`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown order origin `{0}`")]
pub struct UnknownOrderOrigin(String);

impl UnknownOrderOrigin {
    fn of(value: &str) -> Self {
        Self(crate::status::clip_for_display(
            value,
            crate::status::UNKNOWN_VALUE_MAX_CHARS,
        ))
    }
}

/// The order a notice is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrderKey {
    pub origin: OrderOrigin,
    /// The order's reference (`orders.order_ref`): the merchant reference
    /// of a merchant order, `REFNO` of a processor order.
    pub order_ref: String,
    /// Whether the notice creates the order when it does not exist yet.
    pub creates: bool,
}

/// The amount a processor order is expected to total, once `event` is
/// counted: the largest amount any of its notices carried.
///
/// A processor order has no amount of its own; its notices say it. The
/// payment notices (`PENDING`, `PAYMENT_AUTHORIZED`, `COMPLETE`) carry the
/// order's total, a refund carries at most that total, so the largest
/// absolute amount is the total whatever the arrival order (a refund that
/// overtakes its payment sets a lower figure that the payment then
/// raises). A notice in another currency leaves it unchanged: the decision
/// raises the currency mismatch.
pub fn processor_expected(expected: Money, event: &PaymentEvent) -> Money {
    let amount = event.amount.abs();
    if amount.currency() == expected.currency() && amount.minor_units() > expected.minor_units() {
        amount
    } else {
        expected
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use crate::tokenize::tests_support::event;

    fn keyed(source: OrderSource, merchant: Option<&str>, test: bool) -> OrderKey {
        let mut event = event("129611332", merchant, "COMPLETE", "10.00", "EUR");
        event.test_order = test;
        source.key(&event)
    }

    #[test]
    fn a_merchant_reference_is_matched_unless_the_processor_keys_every_order() {
        for source in [OrderSource::Merchant, OrderSource::Both] {
            let key = keyed(source, Some("ORD-1"), false);
            assert_eq!(key.origin, OrderOrigin::Merchant, "{source}");
            assert_eq!(key.order_ref, "ORD-1");
            assert!(!key.creates, "{source}: merchant orders are imported");
        }
        let key = keyed(OrderSource::Processor, Some("ORD-1"), false);
        assert_eq!(key.origin, OrderOrigin::Processor);
        assert_eq!(key.order_ref, "129611332");
        assert!(key.creates);
    }

    #[test]
    fn a_notice_without_a_merchant_reference_is_the_processors_order() {
        for source in [OrderSource::Processor, OrderSource::Both] {
            let key = keyed(source, None, false);
            assert_eq!(key.origin, OrderOrigin::Processor);
            assert_eq!(key.order_ref, "129611332");
            assert!(key.creates, "{source}");
        }
        // Merchant: looked for, never created: the orphan path.
        let key = keyed(OrderSource::Merchant, None, false);
        assert_eq!(key.origin, OrderOrigin::Processor);
        assert!(!key.creates);
    }

    #[test]
    fn a_test_order_never_creates_an_order() {
        for source in OrderSource::ALL {
            for merchant in [None, Some("ORD-1")] {
                assert!(!keyed(source, merchant, true).creates, "{source}");
            }
        }
    }

    #[test]
    fn order_sources_parse_their_own_names_only() {
        for source in OrderSource::ALL {
            assert_eq!(source.as_str().parse::<OrderSource>(), Ok(source));
        }
        assert!("Both".parse::<OrderSource>().is_err());
        assert!("".parse::<OrderSource>().is_err());
        assert_eq!(OrderSource::default(), OrderSource::Both);
    }

    #[test]
    fn order_origin_strings() {
        assert_string_forms!(OrderOrigin, ["merchant", "processor"]);
    }

    #[test]
    fn the_expected_total_is_the_largest_amount_whatever_the_order() {
        let eur = Currency::iso("EUR").unwrap();
        let zero = Money::zero(eur);
        let refund = event("1", None, "REFUND", "-30.00", "EUR");
        let paid = event("1", None, "COMPLETE", "100.00", "EUR");
        let refund_first = processor_expected(processor_expected(zero, &refund), &paid);
        let paid_first = processor_expected(processor_expected(zero, &paid), &refund);
        assert_eq!(refund_first, paid_first);
        assert_eq!(paid_first.minor_units(), 10000);
        // Another currency is the decision's mismatch, not a new total.
        let usd = event("1", None, "COMPLETE", "500.00", "USD");
        assert_eq!(processor_expected(paid_first, &usd), paid_first);
    }
}
