//! The money a notice carries beside its gross: VAT, the processor's
//! commission, and the payout side (docs/finance.md, "The money in the
//! notice").
//!
//! Every payment and refund notice of the processor says, in the order's
//! currency, the VAT it charged (`IPN_VAT[]` per line item, plus
//! `IPN_SHIPPING_TAX`) and the commission it keeps (`IPN_COMMISSION`),
//! and, in the merchant's payout currency, what the notice adds to the
//! next payout (`PAYABLE_AMOUNT` in `PAYOUT_CURRENCY`, negative on tiny
//! orders whose fixed fee exceeds them), with the exchange rate and markup
//! it used (`FX_RATE`, `FX_MARKUP`). The merchant's IPN settings may leave
//! any of them out: then nothing is booked for it.
//!
//! All of it is exact. VAT and the payable amount are [`Money`] (integer
//! minor units of their currency). The commission may carry more decimals
//! than its currency (`IPN_COMMISSION=2.7678` for a RON order): it is a
//! [`Commission`], an integer count of 10⁻⁸ of the currency's major unit,
//! rounded to the minor unit only where the books need it
//! ([`Commission::rounded`], half away from zero). Rates are [`Rate`]s,
//! decimal text kept as sent, never a float.

use std::fmt;

use crate::money::{Currency, Money};

/// How many decimals a [`Commission`] keeps: the processor's commissions
/// seen so far have four; eight leave room without losing exactness.
pub const COMMISSION_DECIMALS: u32 = 8;

/// The longest [`Rate`] accepted, in characters.
pub const MAX_RATE_CHARS: usize = 40;

/// The processor's commission: an exact decimal amount in the order's
/// currency, with up to [`COMMISSION_DECIMALS`] decimals whatever the
/// currency's exponent.
///
/// Kept exact as received; the books (a journal line, a report figure, a
/// comparison with a settlement fee) need minor units, which
/// [`Commission::rounded`] gives: **half away from zero to the currency's
/// minor unit** (2.7678 RON is 2.77 RON, 2.765 EUR is 2.77 EUR, −2.765 EUR
/// is −2.77 EUR). A payment's commission is rounded once, as a whole; the
/// commission its refunds give back is rounded as their running total, so
/// the rounded movements of a payment always sum to its rounded totals.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Commission {
    /// 10⁻⁸ of a major unit.
    e8: i64,
    currency: Currency,
}

/// Why a decimal field was refused. Never quotes the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("not a plain decimal number")]
    NotDecimal,
    #[error("more than 8 decimals")]
    TooManyDecimals,
    #[error("out of range")]
    Overflow,
    #[error("longer than 40 characters")]
    TooLong,
    #[error("negative")]
    Negative,
}

impl DecimalError {
    /// A short, stable, value-free label.
    pub fn reason(&self) -> &'static str {
        match self {
            DecimalError::NotDecimal => "not a plain decimal number",
            DecimalError::TooManyDecimals => "more than 8 decimals",
            DecimalError::Overflow => "out of range",
            DecimalError::TooLong => "longer than 40 characters",
            DecimalError::Negative => "negative",
        }
    }
}

/// Splits `-123.45` into (negative, "123", "45"), checking the shape:
/// an optional `-`, digits, optionally `.` and digits.
fn decimal_parts(text: &str) -> Result<(bool, &str, &str), DecimalError> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int_part, frac_part) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int_part) || frac_part.is_some_and(|f| !all_digits(f)) {
        return Err(DecimalError::NotDecimal);
    }
    Ok((negative, int_part, frac_part.unwrap_or("")))
}

impl Commission {
    /// Parses the processor's decimal (`2.7678`, `-0.50`, `3`) in
    /// `currency`: exact up to 8 decimals (further decimals must be zeros).
    pub fn parse(text: &str, currency: Currency) -> Result<Self, DecimalError> {
        let (negative, int_part, frac) = decimal_parts(text)?;
        let scale = COMMISSION_DECIMALS as usize;
        let (kept, extra) = frac.split_at(frac.len().min(scale));
        if extra.bytes().any(|b| b != b'0') {
            return Err(DecimalError::TooManyDecimals);
        }
        let mut magnitude: i64 = 0;
        let digits = int_part
            .bytes()
            .chain(kept.bytes())
            .chain(std::iter::repeat_n(b'0', scale - kept.len()));
        for digit in digits {
            magnitude = magnitude
                .checked_mul(10)
                .and_then(|m| m.checked_add(i64::from(digit - b'0')))
                .ok_or(DecimalError::Overflow)?;
        }
        let e8 = if negative { -magnitude } else { magnitude };
        Ok(Self { e8, currency })
    }

    /// A commission of `e8` hundred-millionths of a major unit.
    pub fn from_e8(e8: i64, currency: Currency) -> Self {
        Self { e8, currency }
    }

    /// Zero in `currency`.
    pub fn zero(currency: Currency) -> Self {
        Self::from_e8(0, currency)
    }

    /// The exact amount in 10⁻⁸ of a major unit (what the store keeps).
    pub fn e8(&self) -> i64 {
        self.e8
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The absolute amount.
    pub fn abs(&self) -> Self {
        Self::from_e8(self.e8.saturating_abs(), self.currency)
    }

    /// Rounded half away from zero to the currency's minor unit: the
    /// amount the books use (see the type's documentation).
    pub fn rounded(&self) -> Money {
        Money::from_minor(
            round_e8_to_minor(self.e8, self.currency.exponent()),
            self.currency,
        )
    }

    /// The exact decimal, without trailing zeros beyond the currency's
    /// exponent: `2.7678`, `0.50`, `-3.00`.
    pub fn format_amount(&self) -> String {
        format_e8(self.e8, self.currency.exponent())
    }
}

/// `e8` (10⁻⁸ of a major unit) rounded half away from zero to a minor
/// unit of `exponent` decimals (0 to 8).
pub fn round_e8_to_minor(e8: i64, exponent: u32) -> i64 {
    let exponent = exponent.min(COMMISSION_DECIMALS);
    let divisor = 10i64.pow(COMMISSION_DECIMALS - exponent);
    let quotient = e8 / divisor;
    let remainder = e8 % divisor;
    // Half away from zero: a remainder of at least half a minor unit (in
    // magnitude) moves the quotient one further from zero.
    if remainder.unsigned_abs() * 2 >= divisor.unsigned_abs() {
        quotient + e8.signum()
    } else {
        quotient
    }
}

/// The exact decimal of `e8`, with at least `exponent` decimals and no
/// trailing zeros beyond them.
pub fn format_e8(e8: i64, exponent: u32) -> String {
    let sign = if e8 < 0 { "-" } else { "" };
    let magnitude = e8.unsigned_abs();
    let scale = 10u64.pow(COMMISSION_DECIMALS);
    let frac = format!("{:08}", magnitude % scale);
    let keep = exponent.min(COMMISSION_DECIMALS) as usize;
    let trimmed = frac.trim_end_matches('0');
    let shown = if trimmed.len() > keep {
        trimmed
    } else {
        &frac[..keep]
    };
    if shown.is_empty() {
        format!("{sign}{}", magnitude / scale)
    } else {
        format!("{sign}{}.{shown}", magnitude / scale)
    }
}

impl fmt::Display for Commission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.format_amount(), self.currency)
    }
}

impl fmt::Debug for Commission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Commission({self})")
    }
}

/// A non-negative exact decimal kept as the processor sent it (`FX_RATE`,
/// `FX_MARKUP`): compared and shown as text, stored as NUMERIC-compatible
/// text, never a float.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Rate(String);

impl Rate {
    /// Digits, optionally `.` and digits, at most 40 characters.
    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        if text.len() > MAX_RATE_CHARS {
            return Err(DecimalError::TooLong);
        }
        let (negative, ..) = decimal_parts(text)?;
        if negative {
            return Err(DecimalError::Negative);
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rate({})", self.0)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The money one notice carries beside its gross. `None` where the
/// notice did not send the field (the merchant's IPN settings leave it
/// out): nothing is booked for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoticeMoney {
    /// `Σ IPN_VAT[]` + `IPN_SHIPPING_TAX`, in the order's currency
    /// (negative on a refund notice).
    pub vat: Option<Money>,
    /// `IPN_COMMISSION`, exact, in the order's currency.
    pub commission: Option<Commission>,
    /// `PAYABLE_AMOUNT` in `PAYOUT_CURRENCY`: what the notice adds to the
    /// payout, negative values included.
    pub payable: Option<Money>,
    /// `FX_RATE`: order currency to payout currency.
    pub fx_rate: Option<Rate>,
    /// `FX_MARKUP`: the processor's markup on the rate, in percent.
    pub fx_markup: Option<Rate>,
}

impl NoticeMoney {
    /// Whether the notice carried none of the money fields.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(code: &str) -> Currency {
        Currency::iso(code).unwrap()
    }

    #[test]
    fn a_commission_with_more_decimals_than_its_currency_is_exact() {
        let c = Commission::parse("2.7678", cur("RON")).unwrap();
        assert_eq!(c.e8(), 276_780_000);
        assert_eq!(c.format_amount(), "2.7678");
        assert_eq!(c.rounded(), Money::iso("2.77", "RON").unwrap());
        let c = Commission::parse("0.50", cur("EUR")).unwrap();
        assert_eq!(c.format_amount(), "0.50");
        assert_eq!(c.rounded().minor_units(), 50);
        let c = Commission::parse("3", cur("JPY")).unwrap();
        assert_eq!(c.format_amount(), "3");
        assert_eq!(
            Commission::parse("1.123456789", cur("EUR")),
            Err(DecimalError::TooManyDecimals)
        );
        assert_eq!(
            Commission::parse("1.1234567800", cur("EUR")).unwrap().e8(),
            112_345_678
        );
        for bad in ["", "1e3", ".5", "5.", "+1", "1,00", " 1"] {
            assert_eq!(
                Commission::parse(bad, cur("EUR")),
                Err(DecimalError::NotDecimal),
                "{bad:?}"
            );
        }
        assert_eq!(
            Commission::parse("99999999999999", cur("EUR")),
            Err(DecimalError::Overflow)
        );
    }

    #[test]
    fn rounding_is_half_away_from_zero_to_the_minor_unit() {
        let eur = cur("EUR");
        for (text, minor) in [
            ("2.765", 277),
            ("2.7649", 276),
            ("-2.765", -277),
            ("-2.7649", -276),
            ("0.005", 1),
            ("-0.005", -1),
            ("0.00499999", 0),
            ("2.77", 277),
        ] {
            assert_eq!(
                Commission::parse(text, eur)
                    .unwrap()
                    .rounded()
                    .minor_units(),
                minor,
                "{text}"
            );
        }
        assert_eq!(round_e8_to_minor(150_000_000, 0), 2, "1.5 JPY");
        assert_eq!(round_e8_to_minor(-150_000_000, 0), -2);
        assert_eq!(round_e8_to_minor(123_450_000, 3), 1235, "1.2345 BHD");
    }

    #[test]
    fn rates_are_exact_text() {
        assert_eq!(
            Rate::parse("0.20810660205937").unwrap().as_str(),
            "0.20810660205937"
        );
        assert_eq!(Rate::parse("4").unwrap().to_string(), "4");
        assert_eq!(Rate::parse("-1"), Err(DecimalError::Negative));
        assert_eq!(Rate::parse("1e-3"), Err(DecimalError::NotDecimal));
        assert_eq!(Rate::parse(&"1".repeat(41)), Err(DecimalError::TooLong));
    }
}
