//! The money of a vendor order, computed the way the processor's own
//! notices show it (processor-traffic §3.1), in integers: VAT per line,
//! the commission with four decimals whatever the currency, and the payout
//! `PAYABLE_AMOUNT = (gross − VAT − commission) × FX_RATE` in USD cents,
//! negative when the commission's fixed part exceeds a tiny order.
//!
//! The rounding here is the simulator's own (half away from zero), written
//! independently of the daemon's `Commission::rounded`: the expectation
//! must not borrow the code it checks.

use crate::domain::Currency;

/// `10^n`.
fn pow10(n: u32) -> i64 {
    10i64.pow(n)
}

/// `value / divisor`, rounded half away from zero.
pub fn round_half_away(value: i128, divisor: i128) -> i128 {
    let half = divisor / 2;
    if value >= 0 {
        (value + half) / divisor
    } else {
        -((-value + half) / divisor)
    }
}

/// VAT of a net amount at `rate_bp` hundredths of a percent, minor units,
/// rounded half away from zero.
pub fn vat_of(net: i64, rate_bp: i64) -> i64 {
    i64::try_from(round_half_away(
        i128::from(net) * i128::from(rate_bp),
        10_000,
    ))
    .unwrap_or(0)
}

/// `2100` → `21.00`.
pub fn vat_rate_text(rate_bp: i64) -> String {
    format!("{}.{:02}", rate_bp / 100, rate_bp % 100)
}

/// The processor's commission on a gross amount: 4.9 % plus a fixed fee
/// per currency, in 10⁻⁴ of a major unit (truncated there, as the
/// processor's four-decimal commissions are).
pub fn commission_e4(gross: i64, currency: Currency) -> i64 {
    let exponent = currency.exponent().min(4);
    let gross_e4 = gross * pow10(4 - exponent);
    let fixed_e4 = match currency.as_str() {
        "JPY" => 60 * 10_000,
        "GBP" => 4_000,
        _ => 4_500,
    };
    gross_e4 * 49 / 1000 + fixed_e4
}

/// The commission rounded to the currency's minor units, half away from
/// zero (what the books show).
pub fn commission_minor(commission_e4: i64, currency: Currency) -> i64 {
    let exponent = currency.exponent().min(4);
    i64::try_from(round_half_away(
        i128::from(commission_e4),
        i128::from(pow10(4 - exponent)),
    ))
    .unwrap_or(0)
}

/// `12345` (e4) → `1.2345`, always with four decimals.
pub fn format_e4(value_e4: i64, _currency: Currency) -> String {
    let sign = if value_e4 < 0 { "-" } else { "" };
    let abs = value_e4.unsigned_abs();
    format!("{sign}{}.{:04}", abs / 10_000, abs % 10_000)
}

/// The exchange rate to USD (six decimals, the market rate less the
/// processor's 4 % markup) and the markup, per order currency.
pub fn fx(currency: Currency) -> (&'static str, &'static str) {
    match currency.as_str() {
        "EUR" => ("1.041216", "4"),
        "GBP" => ("1.224960", "4"),
        "JPY" => ("0.006384", "4"),
        _ => ("1", "0"),
    }
}

/// A rate text (`1.041216`, `1`) in millionths.
pub fn rate_e6(rate: &str) -> i64 {
    let (units, decimals) = rate.split_once('.').unwrap_or((rate, ""));
    let units: i64 = units.parse().unwrap_or(0);
    let mut decimals = decimals.to_owned();
    while decimals.len() < 6 {
        decimals.push('0');
    }
    units * 1_000_000 + decimals[..6].parse::<i64>().unwrap_or(0)
}

/// `PAYABLE_AMOUNT` in USD cents: `(gross − VAT − commission) × FX_RATE`,
/// rounded half away from zero.
pub fn payable_cents(gross: i64, vat: i64, commission_e4: i64, currency: Currency) -> i64 {
    let exponent = currency.exponent().min(4);
    let net_e4 = (gross - vat) * pow10(4 - exponent) - commission_e4;
    let (rate, _) = fx(currency);
    // e4 × e6 = e10; cents are e2.
    i64::try_from(round_half_away(
        i128::from(net_e4) * i128::from(rate_e6(rate)),
        100_000_000,
    ))
    .unwrap_or(0)
}

/// The gross of a sale in the payout currency, in its cents, as the
/// processor's own WHMCS module computes it (processor-traffic §3.1):
/// `Σ IPN_PRICE[] × FX_RATE × 100 / (100 − FX_MARKUP)`, the net of VAT
/// at the market rate, rounded half away from zero. The settlement's fee
/// is then this gross less `PAYABLE_AMOUNT` (commission and FX markup).
/// `net` is `Σ IPN_PRICE[] × IPN_QTY[]` in the order currency's minor
/// units.
pub fn gross_in_payout_cents(net: i64, currency: Currency) -> i64 {
    let exponent = currency.exponent().min(4);
    let net_e4 = i128::from(net) * i128::from(pow10(4 - exponent));
    let (rate, markup) = fx(currency);
    let markup: i128 = markup.parse().unwrap_or(0);
    // e4 × e6 = e10; cents are e2; × 100 / (100 − markup).
    i64::try_from(round_half_away(
        net_e4 * i128::from(rate_e6(rate)) * 100,
        100_000_000 * (100 - markup),
    ))
    .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(code: &str) -> Currency {
        Currency::iso(code).unwrap()
    }

    #[test]
    fn the_processors_published_examples_come_out() {
        // processor-traffic §3.1: EUR 10.00, commission 0.50, rate 1.125696
        // gives 10.69; the rate table here differs, so check the formula
        // with the rate of the example by hand.
        let net_e4: i128 = 100_000 - 5_000;
        assert_eq!(round_half_away(net_e4 * 1_125_696, 100_000_000), 1069);
        // EUR 0.03, commission 0.50, rate 1.178496: -0.55.
        let net_e4: i128 = 300 - 5_000;
        assert_eq!(round_half_away(net_e4 * 1_178_496, 100_000_000), -55);
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(round_half_away(5, 10), 1);
        assert_eq!(round_half_away(-5, 10), -1);
        assert_eq!(round_half_away(4, 10), 0);
        assert_eq!(commission_minor(27_678, cur("EUR")), 277);
        assert_eq!(commission_minor(27_650, cur("EUR")), 277);
        assert_eq!(commission_minor(605_000, cur("JPY")), 61);
        assert_eq!(format_e4(27_678, cur("EUR")), "2.7678");
        assert_eq!(format_e4(-5, cur("EUR")), "-0.0005");
        assert_eq!(vat_rate_text(2100), "21.00");
        assert_eq!(vat_of(999, 2100), 210);
        assert_eq!(rate_e6("1"), 1_000_000);
        assert_eq!(rate_e6("0.006384"), 6_384);
    }

    #[test]
    fn a_tiny_order_pays_out_a_negative_amount() {
        let eur = cur("EUR");
        let gross = 12;
        let commission = commission_e4(gross, eur);
        assert!(payable_cents(gross, 2, commission, eur) < 0);
    }

    #[test]
    fn the_payout_gross_is_the_net_at_the_market_rate() {
        // EUR 10.00 net at 1.041216 with a 4 % markup: 10.846 USD, 10.85.
        assert_eq!(gross_in_payout_cents(1_000, cur("EUR")), 1_085);
        // USD is paid out in USD: the net itself.
        assert_eq!(gross_in_payout_cents(1_078, cur("USD")), 1_078);
        // JPY 1,000 at 0.006384 (markup 4 %): 6.65 USD.
        assert_eq!(gross_in_payout_cents(1_000, cur("JPY")), 665);
        // The fee (gross − payable) of a tiny order exceeds its gross.
        let eur = cur("EUR");
        let payable = payable_cents(12, 2, commission_e4(12, eur), eur);
        assert!(gross_in_payout_cents(10, eur) - payable > gross_in_payout_cents(10, eur));
    }
}
