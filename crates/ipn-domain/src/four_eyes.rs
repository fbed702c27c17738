//! `link_order`'s second look: what an orphan's money may be linked to,
//! and when a second person must confirm it.
//!
//! An orphan payment (`orphan_payment`) is money the processor took for an
//! order we do not know; `link_order` books it on an order a person
//! names. A wrong name moves real money onto the wrong customer's order,
//! so the link is checked before anything is written ([`check_link`]):
//! the orphan's money must be in the order's currency, and not more than
//! the order still expects ([`open_balance`]). Above `four-eyes-amount`
//! ([`FourEyesAmount`]) the link only records a request: a second,
//! different resolver confirms it before the money moves.

use std::collections::BTreeMap;
use std::fmt;

use crate::money::{Currency, CurrencyCode, Money};
use crate::reconcile::OrderFacts;
use crate::status::StatusCategory;

/// One notification waiting for its order, as the link check reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingNotice {
    /// Its REFNO: payments are told apart by it.
    pub processor_ref: String,
    /// What its status does (`None`: a status this version does not know).
    pub category: Option<StatusCategory>,
    /// `IPN_TOTALGENERAL` in `CURRENCY` (negative for a refund).
    pub amount: Money,
}

/// Why an orphan's money cannot be linked to the order named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefusal {
    #[error(
        "the orphan's money is in {notice}, the order in {order}: link_order does not convert \
         currencies (write it off or link it to an order in {notice})"
    )]
    CurrencyDiffers { order: Currency, notice: Currency },
    #[error(
        "the orphan's payment of {amount} is more than the order still expects ({open}): \
         link_order books no more than the order's open balance"
    )]
    AboveOpenBalance { amount: Money, open: Money },
}

/// What an order still expects: its total less what its payments paid
/// (gross, whatever was refunded or charged back since: a payment that was
/// undone is not an invitation to book another one silently), never below
/// zero, in the order's currency.
pub fn open_balance(facts: &OrderFacts) -> Money {
    let open = facts
        .expected
        .minor_units()
        .saturating_sub(facts.paid())
        .max(0);
    Money::from_minor(open, facts.expected.currency())
}

/// The money a link would book: per payment (REFNO), the largest amount
/// of its paying notices (a `COMPLETE` is re-sent), summed. Refunds and
/// authorizations book no payment and add nothing.
pub fn money_to_link(currency: Currency, waiting: &[WaitingNotice]) -> Money {
    let mut per_payment: BTreeMap<&str, i64> = BTreeMap::new();
    for notice in waiting {
        if notice.category == Some(StatusCategory::Payment) {
            let amount = notice.amount.minor_units().saturating_abs();
            let slot = per_payment.entry(&notice.processor_ref).or_insert(0);
            *slot = (*slot).max(amount);
        }
    }
    let total = per_payment
        .values()
        .fold(0i64, |sum, m| sum.saturating_add(*m));
    Money::from_minor(total, currency)
}

/// Checks a link of `waiting` to an order with `facts`: every notice that
/// carries money is in the order's currency, and the payments together
/// are not more than the order's [`open_balance`]. Returns the money the
/// link books.
pub fn check_link(facts: &OrderFacts, waiting: &[WaitingNotice]) -> Result<Money, LinkRefusal> {
    let order = facts.expected.currency();
    if let Some(notice) = waiting
        .iter()
        .find(|n| n.amount.minor_units() != 0 && n.amount.currency() != order)
    {
        return Err(LinkRefusal::CurrencyDiffers {
            order,
            notice: notice.amount.currency(),
        });
    }
    let amount = money_to_link(order, waiting);
    let open = open_balance(facts);
    if amount.minor_units() > open.minor_units() {
        return Err(LinkRefusal::AboveOpenBalance { amount, open });
    }
    Ok(amount)
}

/// A non-negative decimal amount in a currency's major units, exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decimal {
    mantissa: u64,
    scale: u32,
}

/// The most decimals an amount of `four-eyes-amount` may have.
const MAX_DECIMALS: u32 = 6;

impl Decimal {
    fn parse(text: &str) -> Option<Self> {
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !digits(int) || !digits(frac) || frac.len() > MAX_DECIMALS as usize {
            return None;
        }
        if text.contains('.') && frac.is_empty() {
            return None;
        }
        let mantissa = format!("{int}{frac}").parse::<u64>().ok()?;
        Some(Self {
            mantissa,
            scale: u32::try_from(frac.len()).ok()?,
        })
    }

    /// Whether `minor` minor units of a currency with `exponent` decimals
    /// are strictly more than this amount.
    fn is_exceeded_by(self, minor: i64, exponent: u32) -> bool {
        // minor / 10^exponent > mantissa / 10^scale, in integers.
        let left = i128::from(minor).saturating_mul(10i128.pow(self.scale));
        let right = i128::from(self.mantissa).saturating_mul(10i128.pow(exponent));
        left > right
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = format!("{:0width$}", self.mantissa, width = self.scale as usize + 1);
        let (int, frac) = digits.split_at(digits.len() - self.scale as usize);
        if frac.is_empty() {
            f.write_str(int)
        } else {
            write!(f, "{int}.{frac}")
        }
    }
}

/// `four-eyes-amount`: above which amount a `link_order` needs a second
/// resolver. Off (the default) when empty. Entries separated by commas:
/// `AMOUNT CUR` for one currency (`1000.00 EUR`), and at most one bare
/// `AMOUNT` for every currency not named, read in that currency's major
/// units (`1000` is 1,000.00 EUR and 1,000 JPY: never a currency left
/// without a limit). "Above" is strictly more: a link of exactly the
/// amount moves at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FourEyesAmount {
    any: Option<Decimal>,
    per_currency: BTreeMap<CurrencyCode, Decimal>,
}

impl FourEyesAmount {
    /// No second look.
    pub fn off() -> Self {
        Self::default()
    }

    pub fn is_off(&self) -> bool {
        self.any.is_none() && self.per_currency.is_empty()
    }

    /// Parses the setting's text (see the type's docs).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parsed = Self::default();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let usage = || {
                let shown: String = entry
                    .chars()
                    .take(40)
                    .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
                    .collect();
                format!(
                    "`{shown}`: an entry is an amount and a currency (1000.00 EUR), or one bare \
                     amount for every other currency (1000); a non-negative decimal with at most \
                     {MAX_DECIMALS} decimals"
                )
            };
            let mut words = entry.split_whitespace();
            let amount = words.next().and_then(Decimal::parse).ok_or_else(usage)?;
            match (words.next(), words.next()) {
                (None, _) => {
                    if parsed.any.replace(amount).is_some() {
                        return Err("only one amount may be given without a currency".to_owned());
                    }
                }
                (Some(code), None) => {
                    let code = CurrencyCode::parse(code).map_err(|_| usage())?;
                    if parsed.per_currency.insert(code, amount).is_some() {
                        return Err(format!("{} is given twice", code.as_str()));
                    }
                }
                (Some(_), Some(_)) => return Err(usage()),
            }
        }
        Ok(parsed)
    }

    /// Whether a link of `amount` needs a second resolver: strictly above
    /// the limit of its currency (or the bare one).
    pub fn needs_second_resolver(&self, amount: Money) -> bool {
        let currency = amount.currency();
        self.per_currency
            .get(&currency.code())
            .or(self.any.as_ref())
            .is_some_and(|limit| {
                limit.is_exceeded_by(amount.minor_units().saturating_abs(), currency.exponent())
            })
    }
}

/// The setting's text, entries in a stable order (the bare one last);
/// empty when off.
impl fmt::Display for FourEyesAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut entries: Vec<String> = self
            .per_currency
            .iter()
            .map(|(code, amount)| format!("{amount} {}", code.as_str()))
            .collect();
        entries.extend(self.any.map(|amount| amount.to_string()));
        f.write_str(&entries.join(", "))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::inconsistent_digit_grouping)]
    use super::*;
    use crate::reconcile::PaymentFacts;

    fn eur(minor: i64) -> Money {
        Money::from_minor(minor, Currency::iso("EUR").expect("EUR"))
    }

    fn jpy(minor: i64) -> Money {
        Money::from_minor(minor, Currency::iso("JPY").expect("JPY"))
    }

    fn notice(refno: &str, category: StatusCategory, amount: Money) -> WaitingNotice {
        WaitingNotice {
            processor_ref: refno.to_owned(),
            category: Some(category),
            amount,
        }
    }

    #[test]
    fn a_link_books_each_payment_once_and_refunds_add_nothing() {
        let waiting = [
            notice("1", StatusCategory::Authorization, eur(40_00)),
            notice("1", StatusCategory::Payment, eur(40_00)),
            notice("1", StatusCategory::Payment, eur(40_00)),
            notice("1", StatusCategory::Refund, eur(-5_00)),
            notice("2", StatusCategory::Payment, eur(10_00)),
        ];
        assert_eq!(
            money_to_link(eur(0).currency(), &waiting),
            eur(50_00),
            "40.00 once (COMPLETE re-sent) and 10.00"
        );
    }

    #[test]
    fn a_link_in_another_currency_or_above_the_open_balance_is_refused() {
        let facts = OrderFacts::new(eur(40_00));
        let pay = |m| [notice("1", StatusCategory::Payment, m)];
        assert_eq!(check_link(&facts, &pay(eur(40_00))), Ok(eur(40_00)));
        assert_eq!(check_link(&facts, &pay(eur(39_99))), Ok(eur(39_99)));
        assert!(matches!(
            check_link(&facts, &pay(jpy(4000))),
            Err(LinkRefusal::CurrencyDiffers { .. })
        ));
        let err = check_link(&facts, &pay(eur(40_01))).unwrap_err();
        assert_eq!(
            err,
            LinkRefusal::AboveOpenBalance {
                amount: eur(40_01),
                open: eur(40_00)
            }
        );
        assert!(err.to_string().contains("40.01 EUR"), "{err}");
        // Paid already: it expects nothing more, refunded or not.
        let mut paid = facts.clone();
        paid.payments.insert(
            "9".to_owned(),
            PaymentFacts {
                paid: 40_00,
                refunded: 40_00,
                ..PaymentFacts::default()
            },
        );
        assert_eq!(open_balance(&paid), eur(0));
        assert!(matches!(
            check_link(&paid, &pay(eur(40_00))),
            Err(LinkRefusal::AboveOpenBalance { .. })
        ));
        // Nothing to book (an authorization alone) fits any order.
        let auth = [notice("1", StatusCategory::Authorization, eur(40_00))];
        assert_eq!(check_link(&paid, &auth), Ok(eur(0)));
    }

    #[test]
    fn the_limit_is_per_currency_with_one_bare_amount_for_the_others() {
        let limit = FourEyesAmount::parse("500.00 EUR, 1000").expect("parsed");
        assert!(!limit.is_off());
        assert!(!limit.needs_second_resolver(eur(500_00)), "not above");
        assert!(limit.needs_second_resolver(eur(500_01)));
        // JPY has no entry: the bare 1000, in yen.
        assert!(!limit.needs_second_resolver(jpy(1000)));
        assert!(limit.needs_second_resolver(jpy(1001)));
        assert_eq!(limit.to_string(), "500.00 EUR, 1000");
        assert_eq!(FourEyesAmount::parse(&limit.to_string()), Ok(limit));
        // Only EUR named: other currencies move at once.
        let eur_only = FourEyesAmount::parse("0.5 eur").expect("parsed");
        assert!(eur_only.needs_second_resolver(eur(51)));
        assert!(!eur_only.needs_second_resolver(eur(50)));
        assert!(!eur_only.needs_second_resolver(jpy(1_000_000)));
    }

    #[test]
    fn off_is_empty_and_bad_entries_are_refused() {
        let off = FourEyesAmount::parse("  ").expect("off");
        assert!(off.is_off());
        assert!(!off.needs_second_resolver(eur(i64::MAX)));
        assert_eq!(off.to_string(), "");
        for bad in [
            "-1",
            "1.",
            "1.1234567",
            "EUR 10",
            "10 EURO",
            "10 EUR X",
            "1, 2",
            "1 EUR, 2 eur",
        ] {
            assert!(FourEyesAmount::parse(bad).is_err(), "{bad}");
        }
    }
}
