//! Exact money: an ISO 4217 currency and an integer count of its minor units.
//!
//! The processor sends amounts as decimal strings (`IPN_TOTALGENERAL=107.00`,
//! docs/protocol.md §1.1 and §10). They are parsed straight into integer minor units and
//! never pass through a float: `0.1 + 0.2` must equal `0.3` when we compare
//! what was paid with what was ordered, and a refund total must reach the paid
//! total exactly. How many minor units a currency has is its ISO 4217
//! exponent (`107.00 EUR` is 10700 cents, `1000 JPY` is 1000 yen, `1.234 BHD`
//! is 1234 fils).

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ISO 4217 alphabetic currency code, always upper-case.
///
/// Parsing upper-cases the code, so `eur` and `EUR` are the same currency and
/// comparing two `Currency` values is comparing currencies.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

/// Why a currency code was refused. Never quotes the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CurrencyError {
    #[error("currency code is not 3 characters long")]
    WrongLength,
    #[error("currency code has a character other than the letters A-Z")]
    NotAlphabetic,
}

impl CurrencyError {
    /// A short, stable label for metrics and error records.
    pub fn reason(&self) -> &'static str {
        match self {
            CurrencyError::WrongLength => "currency code is not 3 letters",
            CurrencyError::NotAlphabetic => "currency code is not alphabetic",
        }
    }
}

/// Currencies whose ISO 4217 minor unit is 0 (no decimals).
const EXPONENT_0: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
    "VUV", "XAF", "XOF", "XPF",
];
/// Currencies whose ISO 4217 minor unit is 3.
const EXPONENT_3: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
/// Currencies whose ISO 4217 minor unit is 4 (Chilean and Uruguayan
/// indexed units of account). Listed so that no code is silently given the
/// wrong scale; the processor is not known to use them.
const EXPONENT_4: &[&str] = &["CLF", "UYW"];

/// ISO 4217 currencies with a minor unit: the codes in use (list of
/// 2026), and those withdrawn since 2021, for which a late refund may
/// still arrive. Left out on purpose: codes without a minor unit (gold,
/// silver and the other metals, bond-market units, XDR, XSU, XUA) and the
/// codes for testing and for "no currency" (XTS, XXX); an operator who
/// needs one allows it with its exponent (`allow-currency`).
const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP",
    "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP",
    "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HRK", "HTG", "HUF", "IDR",
    "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW",
    "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA",
    "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD",
    "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG",
    "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE",
    "SLL", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP",
    "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
    "ZWL",
];

/// The currencies the operator allowed beyond [`ISO_4217`]
/// (`allow-currency CODE=EXPONENT`), for the whole process.
///
/// An exponent gives stored minor units their meaning, so every part of
/// the process must read a currency the same way: importing an order,
/// parsing a notification's amount, formatting a report. It is therefore
/// one table per process, set once at start (by the command line, from the
/// settings) before any amount is read, rather than a value handed to each
/// of those places.
static ALLOWED: OnceLock<Vec<(Currency, u32)>> = OnceLock::new();

/// The largest exponent an allowed currency may have (ISO 4217's largest).
pub const MAX_ALLOWED_EXPONENT: u32 = 4;

/// Why [`allow_currencies`] refused a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowCurrencyError {
    #[error("{0} is an ISO 4217 currency: it needs no allowing, and its exponent is fixed")]
    Iso(Currency),
    #[error("the exponent of {0} must be 0 to {MAX_ALLOWED_EXPONENT}")]
    Exponent(Currency),
    #[error("{0} is allowed twice with different exponents")]
    Twice(Currency),
    #[error("other currencies were already allowed in this process")]
    AlreadySet,
}

/// Checks a table of allowed currencies (`allow-currency`): codes outside
/// ISO 4217, exponents 0-4, each code once.
pub fn check_allowed(allowed: &[(Currency, u32)]) -> Result<(), AllowCurrencyError> {
    for (i, &(code, exponent)) in allowed.iter().enumerate() {
        if code.is_iso4217() {
            return Err(AllowCurrencyError::Iso(code));
        }
        if exponent > MAX_ALLOWED_EXPONENT {
            return Err(AllowCurrencyError::Exponent(code));
        }
        if allowed[..i]
            .iter()
            .any(|&(other, e)| other == code && e != exponent)
        {
            return Err(AllowCurrencyError::Twice(code));
        }
    }
    Ok(())
}

/// Makes `allowed` known to the whole process (see [`ALLOWED`]). Setting
/// the same table again is harmless; another table is refused, since
/// amounts already read would disagree with those read after.
pub fn allow_currencies(allowed: &[(Currency, u32)]) -> Result<(), AllowCurrencyError> {
    check_allowed(allowed)?;
    let table = ALLOWED.get_or_init(|| allowed.to_vec());
    if table.as_slice() == allowed {
        Ok(())
    } else {
        Err(AllowCurrencyError::AlreadySet)
    }
}

impl Currency {
    /// Parses a 3-letter code, upper-casing it.
    ///
    /// Any three ASCII letters are accepted, not only the codes in use today:
    /// the processor adds currencies over time, and refusing a payment
    /// because our list is stale would be worse than reconciling it with the
    /// default exponent of 2, which is right for almost every currency.
    pub fn parse(code: &str) -> Result<Self, CurrencyError> {
        if code.chars().count() != 3 {
            return Err(CurrencyError::WrongLength);
        }
        let bytes = code.as_bytes();
        if bytes.len() != 3 {
            // Three characters but more than three bytes: not ASCII letters.
            return Err(CurrencyError::NotAlphabetic);
        }
        let mut upper = [0u8; 3];
        for (slot, &b) in upper.iter_mut().zip(bytes) {
            if !b.is_ascii_alphabetic() {
                return Err(CurrencyError::NotAlphabetic);
            }
            *slot = b.to_ascii_uppercase();
        }
        Ok(Self(upper))
    }

    /// The code, upper-case.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored, so this cannot fail; the
        // fallback keeps the function total without a panic path.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// The number of decimal digits of the minor unit (ISO 4217 "minor
    /// unit"): 0 for JPY, 3 for BHD, 2 for EUR and most others; for a
    /// currency the operator allowed, the exponent given with it.
    pub fn exponent(&self) -> u32 {
        self.exponent_with(ALLOWED.get().map_or(&[], Vec::as_slice))
    }

    /// [`Currency::exponent`] with `allowed` as the allowed currencies.
    fn exponent_with(&self, allowed: &[(Currency, u32)]) -> u32 {
        let code = self.as_str();
        if EXPONENT_0.contains(&code) {
            0
        } else if EXPONENT_3.contains(&code) {
            3
        } else if EXPONENT_4.contains(&code) {
            4
        } else if let Some(&(_, exponent)) = allowed.iter().find(|(c, _)| c == self) {
            exponent
        } else {
            2
        }
    }

    /// Whether the code is an ISO 4217 currency with a minor unit.
    pub fn is_iso4217(&self) -> bool {
        ISO_4217.contains(&self.as_str())
    }

    /// Whether the currency is in ISO 4217 or allowed by the operator
    /// (`allow-currency`): what an imported order may be in.
    pub fn is_known(&self) -> bool {
        self.is_iso4217()
            || ALLOWED
                .get()
                .is_some_and(|allowed| allowed.iter().any(|(c, _)| c == self))
    }

    /// `10^exponent`: how many minor units make one major unit.
    fn scale(&self) -> u64 {
        10u64.pow(self.exponent())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

impl FromStr for Currency {
    type Err = CurrencyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Currency::parse(&code).map_err(serde::de::Error::custom)
    }
}

/// An exact amount of money: a signed number of minor units of a currency.
///
/// Negative amounts exist on the wire (refunds and reversals are shown
/// negative, docs/protocol.md §2.4), so the count is signed. Every `i64` is a valid
/// count, which is why the constructor [`Money::from_minor`] cannot fail.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

/// Why an amount was refused. Never quotes the input: a malformed amount
/// field is exactly where a careless integration pastes a card number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("invalid currency: {0}")]
    Currency(#[from] CurrencyError),
    #[error("amount is empty")]
    Empty,
    #[error(
        "amount is not a plain decimal number (digits, optional leading '-', optional '.' and digits)"
    )]
    NotDecimal,
    #[error("amount has more decimals than {currency} has minor-unit digits ({exponent})")]
    TooManyDecimals { currency: Currency, exponent: u32 },
    #[error("amount does not fit in 64-bit minor units")]
    Overflow,
}

impl MoneyError {
    /// A short, stable, value-free label (metrics, tokenization errors).
    pub fn reason(&self) -> &'static str {
        match self {
            MoneyError::Currency(err) => err.reason(),
            MoneyError::Empty => "amount is empty",
            MoneyError::NotDecimal => "amount is not a plain decimal number",
            MoneyError::TooManyDecimals { .. } => "amount has more decimals than the currency",
            MoneyError::Overflow => "amount is out of range",
        }
    }
}

impl Money {
    /// An amount of `minor` minor units (cents for EUR, yen for JPY).
    pub fn from_minor(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    /// Zero in `currency`.
    pub fn zero(currency: Currency) -> Self {
        Self::from_minor(0, currency)
    }

    /// Parses a decimal amount and a currency code, as the processor sends
    /// them in `IPN_TOTALGENERAL` and `CURRENCY`.
    pub fn parse(amount: &str, currency: &str) -> Result<Self, MoneyError> {
        let currency = Currency::parse(currency)?;
        Self::parse_amount(amount, currency)
    }

    /// Parses a decimal amount in an already parsed currency.
    ///
    /// Accepted: an optional `-`, one or more ASCII digits, then optionally
    /// `.` and one or more digits (`107.00`, `-107.00`, `1000`, `1.234`).
    /// Refused, rather than guessed at: `.5`, `5.`, `+5`, `1e3`, `1,000.00`,
    /// surrounding spaces, and decimals beyond the currency's exponent unless
    /// they are zeros (`10.500 EUR` is 1050 cents, `10.505 EUR` is an error:
    /// rounding money we were told about would hide a disagreement).
    pub fn parse_amount(amount: &str, currency: Currency) -> Result<Self, MoneyError> {
        if amount.is_empty() {
            return Err(MoneyError::Empty);
        }
        let (negative, unsigned) = match amount.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, amount),
        };
        let (int_part, frac_part) = match unsigned.split_once('.') {
            Some((int_part, frac_part)) => (int_part, Some(frac_part)),
            None => (unsigned, None),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(int_part) || frac_part.is_some_and(|f| !all_digits(f)) {
            return Err(MoneyError::NotDecimal);
        }
        let exponent = currency.exponent();
        let frac = frac_part.unwrap_or("");
        let exp = exponent as usize;
        let (kept, extra) = frac.split_at(frac.len().min(exp));
        if extra.bytes().any(|b| b != b'0') {
            return Err(MoneyError::TooManyDecimals { currency, exponent });
        }

        // The magnitude is built as u64 so that i64::MIN (whose magnitude is
        // one more than i64::MAX) still parses: Display prints it, so parse
        // must read it back.
        let mut magnitude: u64 = 0;
        let digits = int_part
            .bytes()
            .chain(kept.bytes())
            .chain(std::iter::repeat_n(b'0', exp - kept.len()));
        for digit in digits {
            magnitude = magnitude
                .checked_mul(10)
                .and_then(|m| m.checked_add(u64::from(digit - b'0')))
                .ok_or(MoneyError::Overflow)?;
        }
        let minor = if negative {
            0i64.checked_sub_unsigned(magnitude)
        } else {
            i64::try_from(magnitude).ok()
        }
        .ok_or(MoneyError::Overflow)?;
        Ok(Self { minor, currency })
    }

    /// The amount in minor units.
    pub fn minor_units(&self) -> i64 {
        self.minor
    }

    /// The currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn is_negative(&self) -> bool {
        self.minor < 0
    }

    pub fn is_positive(&self) -> bool {
        self.minor > 0
    }

    /// The absolute amount. `i64::MIN` minor units has no positive
    /// counterpart and saturates to `i64::MAX`: no real amount is anywhere
    /// near 92 quadrillion units, and a saturated value still compares
    /// greater than any real total, which is the conservative direction.
    pub fn abs(&self) -> Self {
        Self {
            minor: self.minor.checked_abs().unwrap_or(i64::MAX),
            currency: self.currency,
        }
    }

    /// `self + other`, or `None` when the currencies differ or the sum
    /// overflows.
    pub fn checked_add(&self, other: &Money) -> Option<Money> {
        if self.currency != other.currency {
            return None;
        }
        self.minor
            .checked_add(other.minor)
            .map(|minor| Money::from_minor(minor, self.currency))
    }

    /// `self - other`, or `None` when the currencies differ or the
    /// difference overflows.
    pub fn checked_sub(&self, other: &Money) -> Option<Money> {
        if self.currency != other.currency {
            return None;
        }
        self.minor
            .checked_sub(other.minor)
            .map(|minor| Money::from_minor(minor, self.currency))
    }

    /// The decimal amount without the currency: `107.00`, `1000`, `-5.00`.
    ///
    /// Always exactly `exponent` decimals, so the result parses back to the
    /// same value and sorts the same way as text within one currency.
    pub fn format_amount(&self) -> String {
        let exponent = self.currency.exponent();
        let magnitude = self.minor.unsigned_abs();
        let sign = if self.minor < 0 { "-" } else { "" };
        if exponent == 0 {
            return format!("{sign}{magnitude}");
        }
        let scale = self.currency.scale();
        format!(
            "{sign}{}.{:0width$}",
            magnitude / scale,
            magnitude % scale,
            width = exponent as usize
        )
    }
}

impl fmt::Display for Money {
    /// `107.00 EUR`, `1000 JPY`, `1.234 BHD`, `-5.00 EUR`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.format_amount(), self.currency)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({self})")
    }
}

/// The serialized shape: both parts as strings, so no JSON consumer ever
/// reads the amount as a float.
#[derive(Serialize, Deserialize)]
struct MoneyRepr {
    amount: String,
    currency: String,
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        MoneyRepr {
            amount: self.format_amount(),
            currency: self.currency.as_str().to_owned(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = MoneyRepr::deserialize(deserializer)?;
        Money::parse(&repr.amount, &repr.currency).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cur(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    fn money(amount: &str, currency: &str) -> Money {
        Money::parse(amount, currency).unwrap()
    }

    #[test]
    fn currency_is_upper_cased_and_validated() {
        assert_eq!(cur("eur").as_str(), "EUR");
        assert_eq!(cur("Jpy"), cur("JPY"));
        assert_eq!(Currency::parse("EU"), Err(CurrencyError::WrongLength));
        assert_eq!(Currency::parse("EURO"), Err(CurrencyError::WrongLength));
        assert_eq!(Currency::parse(""), Err(CurrencyError::WrongLength));
        assert_eq!(Currency::parse("E1R"), Err(CurrencyError::NotAlphabetic));
        assert_eq!(Currency::parse(" EU"), Err(CurrencyError::NotAlphabetic));
        assert_eq!(Currency::parse("EÜR"), Err(CurrencyError::NotAlphabetic));
        assert_eq!(Currency::parse("€"), Err(CurrencyError::WrongLength));
        assert_eq!(Currency::parse("€€€"), Err(CurrencyError::NotAlphabetic));
    }

    #[test]
    fn exponents_follow_iso_4217() {
        for code in [
            "JPY", "KRW", "CLP", "ISK", "VND", "XAF", "XOF", "UGX", "PYG",
        ] {
            assert_eq!(cur(code).exponent(), 0, "{code}");
        }
        for code in ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"] {
            assert_eq!(cur(code).exponent(), 3, "{code}");
        }
        for code in ["EUR", "USD", "GBP", "HUF", "CHF", "RON", "TWD"] {
            assert_eq!(cur(code).exponent(), 2, "{code}");
        }
        assert_eq!(cur("CLF").exponent(), 4);
    }

    #[test]
    fn iso_4217_is_known_and_holds_every_special_exponent() {
        for code in [
            "EUR", "USD", "JPY", "BHD", "CLF", "XCG", "ZWG", "SLE", "HRK",
        ] {
            assert!(cur(code).is_iso4217(), "{code}");
        }
        for code in ["XYZ", "ABC", "XTS", "XXX", "XAU", "EUO"] {
            assert!(!cur(code).is_iso4217(), "{code}");
            assert!(!cur(code).is_known(), "{code}");
        }
        for code in EXPONENT_0.iter().chain(EXPONENT_3).chain(EXPONENT_4) {
            assert!(ISO_4217.contains(code), "{code}");
        }
        let mut sorted = ISO_4217.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, ISO_4217, "sorted, each code once");
    }

    #[test]
    fn an_allowed_currency_has_its_own_exponent_and_iso_codes_cannot_be_changed() {
        let allowed = [(cur("XYZ"), 3), (cur("ABC"), 0)];
        assert_eq!(check_allowed(&allowed), Ok(()));
        assert_eq!(cur("XYZ").exponent_with(&allowed), 3);
        assert_eq!(cur("ABC").exponent_with(&allowed), 0);
        assert_eq!(cur("QQQ").exponent_with(&allowed), 2);
        assert_eq!(cur("JPY").exponent_with(&[(cur("JPY"), 2)]), 0);
        assert_eq!(
            check_allowed(&[(cur("EUR"), 3)]),
            Err(AllowCurrencyError::Iso(cur("EUR")))
        );
        assert_eq!(
            check_allowed(&[(cur("XYZ"), 5)]),
            Err(AllowCurrencyError::Exponent(cur("XYZ")))
        );
        assert_eq!(
            check_allowed(&[(cur("XYZ"), 2), (cur("XYZ"), 3)]),
            Err(AllowCurrencyError::Twice(cur("XYZ")))
        );
        assert_eq!(check_allowed(&[(cur("XYZ"), 2), (cur("XYZ"), 2)]), Ok(()));
    }

    #[test]
    fn parses_decimal_strings_into_minor_units() {
        assert_eq!(money("107.00", "EUR").minor_units(), 10700);
        assert_eq!(money("-107.00", "EUR").minor_units(), -10700);
        assert_eq!(money("107", "EUR").minor_units(), 10700);
        assert_eq!(money("107.5", "EUR").minor_units(), 10750);
        assert_eq!(money("10.500", "EUR").minor_units(), 1050);
        assert_eq!(money("1000", "JPY").minor_units(), 1000);
        assert_eq!(money("1000.00", "JPY").minor_units(), 1000);
        assert_eq!(money("1.234", "BHD").minor_units(), 1234);
        assert_eq!(money("0.00", "usd").currency(), cur("USD"));
        assert_eq!(money("-0.00", "EUR").minor_units(), 0);
        assert_eq!(money("007.00", "EUR").minor_units(), 700);
    }

    #[test]
    fn refuses_anything_but_plain_decimals() {
        let eur = cur("EUR");
        for bad in [
            ".5", "5.", "+5", "1e3", "1E3", "1,000.00", " 1.00", "1.00 ", "--1", "-", "-.5",
            "1.2.3", "0x10", "NaN", "inf", "١٢", "1_000",
        ] {
            assert_eq!(
                Money::parse_amount(bad, eur),
                Err(MoneyError::NotDecimal),
                "{bad:?}"
            );
        }
        assert_eq!(Money::parse_amount("", eur), Err(MoneyError::Empty));
        assert_eq!(
            Money::parse("10.505", "EUR"),
            Err(MoneyError::TooManyDecimals {
                currency: eur,
                exponent: 2
            })
        );
        assert!(matches!(
            Money::parse("1000.5", "JPY"),
            Err(MoneyError::TooManyDecimals { exponent: 0, .. })
        ));
        assert!(matches!(
            Money::parse("1.2345", "BHD"),
            Err(MoneyError::TooManyDecimals { exponent: 3, .. })
        ));
        assert_eq!(
            Money::parse("1.00", "EU"),
            Err(MoneyError::Currency(CurrencyError::WrongLength))
        );
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert_eq!(
            Money::parse("92233720368547758.08", "EUR"),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Money::parse("92233720368547758.07", "EUR")
                .unwrap()
                .minor_units(),
            i64::MAX
        );
        assert_eq!(
            Money::parse("-92233720368547758.08", "EUR")
                .unwrap()
                .minor_units(),
            i64::MIN
        );
        assert_eq!(
            Money::parse("-92233720368547758.09", "EUR"),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Money::parse(&"9".repeat(400), "JPY"),
            Err(MoneyError::Overflow)
        );
    }

    #[test]
    fn displays_with_the_currency_exponent() {
        assert_eq!(money("107.00", "EUR").to_string(), "107.00 EUR");
        assert_eq!(money("1000", "JPY").to_string(), "1000 JPY");
        assert_eq!(money("1.234", "BHD").to_string(), "1.234 BHD");
        assert_eq!(money("-5", "EUR").to_string(), "-5.00 EUR");
        assert_eq!(money("-0.05", "EUR").to_string(), "-0.05 EUR");
        assert_eq!(money("0.001", "KWD").format_amount(), "0.001");
        assert_eq!(
            Money::from_minor(i64::MIN, cur("EUR")).to_string(),
            "-92233720368547758.08 EUR"
        );
        assert_eq!(format!("{:?}", money("1.5", "EUR")), "Money(1.50 EUR)");
    }

    #[test]
    fn abs_and_checked_arithmetic() {
        let eur = cur("EUR");
        assert_eq!(money("-107.00", "EUR").abs(), money("107.00", "EUR"));
        assert_eq!(
            Money::from_minor(i64::MIN, eur).abs().minor_units(),
            i64::MAX
        );
        assert_eq!(
            money("1.10", "EUR").checked_add(&money("2.20", "EUR")),
            Some(money("3.30", "EUR"))
        );
        assert_eq!(
            money("1.10", "EUR").checked_sub(&money("2.20", "EUR")),
            Some(money("-1.10", "EUR"))
        );
        assert_eq!(money("1", "EUR").checked_add(&money("1", "USD")), None);
        assert_eq!(
            Money::from_minor(i64::MAX, eur).checked_add(&Money::from_minor(1, eur)),
            None
        );
    }

    #[test]
    fn serializes_as_strings() {
        let json = serde_json::to_string(&money("107.00", "EUR")).unwrap();
        assert_eq!(json, r#"{"amount":"107.00","currency":"EUR"}"#);
        let back: Money = serde_json::from_str(&json).unwrap();
        assert_eq!(back, money("107.00", "EUR"));
        assert!(serde_json::from_str::<Money>(r#"{"amount":"1.005","currency":"EUR"}"#).is_err());
        assert_eq!(serde_json::to_string(&cur("jpy")).unwrap(), r#""JPY""#);
    }

    fn any_currency() -> impl Strategy<Value = Currency> {
        prop::sample::select(vec!["EUR", "USD", "JPY", "KRW", "BHD", "KWD", "CLF", "HUF"])
            .prop_map(|code| Currency::parse(code).unwrap())
    }

    proptest! {
        #[test]
        fn parse_inverts_display(minor in any::<i64>(), currency in any_currency()) {
            let m = Money::from_minor(minor, currency);
            prop_assert_eq!(Money::parse(&m.format_amount(), currency.as_str()), Ok(m));
            let shown = m.to_string();
            let (amount, code) = shown.split_once(' ').unwrap();
            prop_assert_eq!(Money::parse(amount, code), Ok(m));
        }

        #[test]
        fn trailing_zeros_do_not_change_the_value(
            minor in any::<i64>(), currency in any_currency(), zeros in 1usize..5
        ) {
            let m = Money::from_minor(minor, currency);
            let mut text = m.format_amount();
            if currency.exponent() == 0 {
                text.push('.');
            }
            text.push_str(&"0".repeat(zeros));
            prop_assert_eq!(Money::parse_amount(&text, currency), Ok(m));
        }

        #[test]
        fn parse_never_panics(amount in ".{0,40}", code in ".{0,5}") {
            let _ = Money::parse(&amount, &code);
        }
    }
}
