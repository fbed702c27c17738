//! Exact money: a currency (its code and its exponent) and an integer count
//! of its minor units.
//!
//! The processor sends amounts as decimal strings (`IPN_TOTALGENERAL=107.00`,
//! docs/protocol.md §1.1 and §10). They are parsed straight into integer minor units and
//! never pass through a float: `0.1 + 0.2` must equal `0.3` when we compare
//! what was paid with what was ordered, and a refund total must reach the paid
//! total exactly. How many minor units a currency has is its ISO 4217
//! exponent (`107.00 EUR` is 10700 cents, `1000 JPY` is 1000 yen, `1.234 BHD`
//! is 1234 fils), or, for a currency outside ISO 4217, the exponent the
//! operator gave it (`allow-currency CODE=EXPONENT`).
//!
//! # The currency table is a value
//!
//! Which codes the operator allowed, and with which exponents, is a
//! [`Currencies`] value built once from the settings and handed to whatever
//! reads codes from outside: the tokenizer (notifications), the order and
//! settlement imports, the store (codes read back from rows), the CLI and
//! the tools. There is no table for the whole process: two tables may
//! live side by side (tests, a demo next to a daemon), each consistent in
//! itself.
//!
//! A [`Currency`] carries its exponent, so a [`Money`] describes itself:
//! formatting an amount, or reading it back, needs no table. The only ways
//! to get a `Currency` from a code are the table
//! ([`Currencies::currency`], [`Currencies::of`]) and the ISO-only
//! constructor [`Currency::iso`], which is the table with nothing allowed
//! ([`Currencies::iso`]) and is meant for code no operator table can reach:
//! tests, fixtures with ISO codes, and constants such as a default EUR.
//! Two currencies with the same code and different exponents are not
//! equal, so amounts read through different tables never add up or match
//! by accident.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// A currency code: three ASCII letters, always upper-case. Only the code:
/// what its amounts mean (the exponent) is a question for a [`Currencies`]
/// table, which turns a code into a [`Currency`].
///
/// Parsing upper-cases the code, so `eur` and `EUR` are the same code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CurrencyCode([u8; 3]);

/// A currency: an alphabetic code and its exponent (how many decimal digits
/// its minor unit has). Made only by a [`Currencies`] table (or
/// [`Currency::iso`], the table without allowed currencies), so the exponent
/// is the one the table gives the code.
///
/// Equality, order and hashing look at the code, then the exponent: within
/// one table a code has one exponent, so comparing two `Currency` values
/// is comparing currencies.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: CurrencyCode,
    /// 0 to 4 (ISO 4217's largest, and [`MAX_ALLOWED_EXPONENT`]).
    exponent: u8,
}

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

/// The exponent of a code that is neither in ISO 4217's special lists nor
/// allowed: right for almost every currency (see [`Currencies::of`]).
const DEFAULT_EXPONENT: u8 = 2;

/// The largest exponent an allowed currency may have (ISO 4217's largest).
pub const MAX_ALLOWED_EXPONENT: u32 = 4;

/// Why [`Currencies::new`] refused a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowCurrencyError {
    #[error("{0} is an ISO 4217 currency: it needs no allowing, and its exponent is fixed")]
    Iso(CurrencyCode),
    #[error("the exponent of {0} must be 0 to {MAX_ALLOWED_EXPONENT}")]
    Exponent(CurrencyCode),
    #[error("{0} is allowed twice with different exponents")]
    Twice(CurrencyCode),
}

/// The currency table: ISO 4217, plus the currencies the operator allowed
/// beyond it (`allow-currency CODE=EXPONENT`), each with its exponent.
///
/// An exponent gives stored minor units their meaning, so every part of a
/// daemon or command must read a currency the same way: importing an
/// order, parsing a notification's amount, reading a row back, formatting a
/// report. The table is built once from the settings and travels with the
/// configuration (the pipeline, the store, the console, the commands and
/// the tools each get it), instead of living in a global: a daemon built
/// any way (the CLI, `Application` in a test, the demo) reads the
/// currencies its own settings allow, and two tables in one process do
/// not disturb each other.
///
/// Cheap to clone. [`Default`] is [`Currencies::iso`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Currencies {
    /// The allowed codes (none in ISO 4217, each once) with their
    /// exponents, in the order given.
    allowed: Arc<[(CurrencyCode, u8)]>,
}

impl Currencies {
    /// ISO 4217 alone: the table of a process whose operator allowed no
    /// other currency, and of code that no operator table reaches (tests,
    /// the ISO-only constructors [`Currency::iso`] and [`Money::iso`]).
    pub fn iso() -> Self {
        Self::default()
    }

    /// ISO 4217 and `allowed` (`allow-currency`): codes outside ISO 4217,
    /// exponents 0-4, each code once (given twice with the same exponent
    /// counts once).
    pub fn new(allowed: &[(CurrencyCode, u32)]) -> Result<Self, AllowCurrencyError> {
        let mut table: Vec<(CurrencyCode, u8)> = Vec::with_capacity(allowed.len());
        for &(code, exponent) in allowed {
            if code.is_iso4217() {
                return Err(AllowCurrencyError::Iso(code));
            }
            let exponent = u8::try_from(exponent)
                .ok()
                .filter(|&e| u32::from(e) <= MAX_ALLOWED_EXPONENT)
                .ok_or(AllowCurrencyError::Exponent(code))?;
            match table.iter().find(|(other, _)| *other == code) {
                Some(&(_, e)) if e != exponent => return Err(AllowCurrencyError::Twice(code)),
                Some(_) => {}
                None => table.push((code, exponent)),
            }
        }
        Ok(Self {
            allowed: table.into(),
        })
    }

    /// The currencies allowed beyond ISO 4217, in the order given.
    pub fn allowed(&self) -> impl Iterator<Item = Currency> + '_ {
        self.allowed
            .iter()
            .map(|&(code, exponent)| Currency { code, exponent })
    }

    /// The currency of `code` in this table: its ISO 4217 exponent, the
    /// exponent the operator allowed it with, or else 2.
    ///
    /// Any code is given a currency, not only the known ones: the
    /// processor adds currencies over time, and refusing a payment because
    /// our list is stale would be worse than reconciling it with the
    /// default exponent of 2, which is right for almost every currency.
    /// Where only known currencies may enter the books (an imported order,
    /// a settlement line), ask [`Currencies::is_known`] as well.
    pub fn of(&self, code: CurrencyCode) -> Currency {
        let exponent = code.iso_exponent().unwrap_or_else(|| {
            self.allowed
                .iter()
                .find(|(c, _)| *c == code)
                .map_or(DEFAULT_EXPONENT, |&(_, e)| e)
        });
        Currency { code, exponent }
    }

    /// Parses a 3-letter code (upper-casing it) into its currency in this
    /// table (see [`Currencies::of`]).
    pub fn currency(&self, code: &str) -> Result<Currency, CurrencyError> {
        CurrencyCode::parse(code).map(|code| self.of(code))
    }

    /// Parses a decimal amount and a currency code with this table, as the
    /// processor sends them in `IPN_TOTALGENERAL` and `CURRENCY` (see
    /// [`Money::parse_amount`]).
    pub fn money(&self, amount: &str, currency: &str) -> Result<Money, MoneyError> {
        Money::parse_amount(amount, self.currency(currency)?)
    }

    /// Whether `code` is in ISO 4217 or allowed in this table: what an
    /// imported order or a settlement line may be in.
    pub fn is_known(&self, code: CurrencyCode) -> bool {
        code.is_iso4217() || self.allowed.iter().any(|(c, _)| *c == code)
    }
}

impl fmt::Debug for Currencies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Currencies(ISO 4217")?;
        for currency in self.allowed() {
            write!(f, ", {currency}={}", currency.exponent())?;
        }
        f.write_str(")")
    }
}

impl CurrencyCode {
    /// Parses a 3-letter code, upper-casing it.
    ///
    /// Any three ASCII letters are accepted, not only the codes in use
    /// today (see [`Currencies::of`]).
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

    /// Whether the code is an ISO 4217 currency with a minor unit.
    pub fn is_iso4217(&self) -> bool {
        ISO_4217.contains(&self.as_str())
    }

    /// The exponent ISO 4217 fixes for the code: `None` outside ISO 4217,
    /// where the table decides.
    fn iso_exponent(&self) -> Option<u8> {
        let code = self.as_str();
        if EXPONENT_0.contains(&code) {
            Some(0)
        } else if EXPONENT_3.contains(&code) {
            Some(3)
        } else if EXPONENT_4.contains(&code) {
            Some(4)
        } else if ISO_4217.contains(&code) {
            Some(2)
        } else {
            None
        }
    }
}

impl fmt::Display for CurrencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CurrencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CurrencyCode({})", self.as_str())
    }
}

impl FromStr for CurrencyCode {
    type Err = CurrencyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Currency {
    /// The currency of `code` in the ISO-only table ([`Currencies::iso`]):
    /// the ISO 4217 exponent, or 2 for any other code.
    ///
    /// For code no operator table reaches: tests, ISO fixtures, constants.
    /// A code that comes from outside (a notification, an import file, a
    /// flag, a database row) goes through the [`Currencies`] of the
    /// settings instead, so that an allowed currency keeps its exponent.
    pub fn iso(code: &str) -> Result<Self, CurrencyError> {
        Currencies::iso().currency(code)
    }

    /// The code.
    pub fn code(&self) -> CurrencyCode {
        self.code
    }

    /// The code, upper-case.
    pub fn as_str(&self) -> &str {
        self.code.as_str()
    }

    /// The number of decimal digits of the minor unit (ISO 4217 "minor
    /// unit"): 0 for JPY, 3 for BHD, 2 for EUR and most others; for a
    /// currency the operator allowed, the exponent given with it in the
    /// table this currency came from.
    pub fn exponent(&self) -> u32 {
        u32::from(self.exponent)
    }

    /// Whether the code is an ISO 4217 currency with a minor unit. Whether
    /// it is *known* (ISO 4217 or allowed) is a question for the table:
    /// [`Currencies::is_known`].
    pub fn is_iso4217(&self) -> bool {
        self.code.is_iso4217()
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
        write!(f, "Currency({}, exponent {})", self.as_str(), self.exponent)
    }
}

/// Serialized as its code; there is no `Deserialize`: a code read back
/// needs a table ([`Currencies::currency`]).
impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
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

    /// Parses a decimal amount and a currency code with the ISO-only table
    /// (see [`Currency::iso`]: for tests and ISO constants; amounts from
    /// outside go through [`Currencies::money`]).
    pub fn iso(amount: &str, currency: &str) -> Result<Self, MoneyError> {
        Currencies::iso().money(amount, currency)
    }

    /// Parses a decimal amount in an already parsed currency, with its
    /// exponent.
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
/// reads the amount as a float. There is no `Deserialize`: the code read
/// back needs a table ([`Currencies::money`]).
#[derive(Serialize)]
struct MoneyRepr<'a> {
    amount: String,
    currency: &'a str,
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        MoneyRepr {
            amount: self.format_amount(),
            currency: self.currency.as_str(),
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cur(code: &str) -> Currency {
        Currency::iso(code).unwrap()
    }

    fn money(amount: &str, currency: &str) -> Money {
        Money::iso(amount, currency).unwrap()
    }

    #[test]
    fn currency_is_upper_cased_and_validated() {
        assert_eq!(cur("eur").as_str(), "EUR");
        assert_eq!(cur("Jpy"), cur("JPY"));
        assert_eq!(Currency::iso("EU"), Err(CurrencyError::WrongLength));
        assert_eq!(Currency::iso("EURO"), Err(CurrencyError::WrongLength));
        assert_eq!(Currency::iso(""), Err(CurrencyError::WrongLength));
        assert_eq!(Currency::iso("E1R"), Err(CurrencyError::NotAlphabetic));
        assert_eq!(Currency::iso(" EU"), Err(CurrencyError::NotAlphabetic));
        assert_eq!(Currency::iso("EÜR"), Err(CurrencyError::NotAlphabetic));
        assert_eq!(Currency::iso("€"), Err(CurrencyError::WrongLength));
        assert_eq!(Currency::iso("€€€"), Err(CurrencyError::NotAlphabetic));
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
        let iso = Currencies::iso();
        for code in [
            "EUR", "USD", "JPY", "BHD", "CLF", "XCG", "ZWG", "SLE", "HRK",
        ] {
            assert!(cur(code).is_iso4217(), "{code}");
            assert!(iso.is_known(cur(code).code()), "{code}");
        }
        for code in ["XYZ", "ABC", "XTS", "XXX", "XAU", "EUO"] {
            assert!(!cur(code).is_iso4217(), "{code}");
            assert!(!iso.is_known(cur(code).code()), "{code}");
            assert_eq!(cur(code).exponent(), 2, "{code}: the default");
        }
        for code in EXPONENT_0.iter().chain(EXPONENT_3).chain(EXPONENT_4) {
            assert!(ISO_4217.contains(code), "{code}");
        }
        let mut sorted = ISO_4217.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, ISO_4217, "sorted, each code once");
    }

    fn code(text: &str) -> CurrencyCode {
        CurrencyCode::parse(text).unwrap()
    }

    fn table(allowed: &[(&str, u32)]) -> Currencies {
        let allowed: Vec<(CurrencyCode, u32)> =
            allowed.iter().map(|&(c, e)| (code(c), e)).collect();
        Currencies::new(&allowed).unwrap()
    }

    #[test]
    fn an_allowed_currency_has_its_own_exponent_and_is_known_in_its_table_only() {
        let allowed = table(&[("XYZ", 3), ("abc", 0)]);
        assert_eq!(allowed.currency("XYZ").unwrap().exponent(), 3);
        assert_eq!(allowed.currency("ABC").unwrap().exponent(), 0);
        assert_eq!(allowed.currency("QQQ").unwrap().exponent(), 2);
        assert!(allowed.is_known(code("XYZ")) && allowed.is_known(code("ABC")));
        assert!(!allowed.is_known(code("QQQ")));
        assert!(allowed.is_known(code("EUR")), "ISO 4217 is always known");
        assert!(!Currencies::iso().is_known(code("XYZ")));
        let shown: Vec<(String, u32)> = allowed
            .allowed()
            .map(|c| (c.to_string(), c.exponent()))
            .collect();
        assert_eq!(shown, [("XYZ".to_owned(), 3), ("ABC".to_owned(), 0)]);
        assert_eq!(format!("{allowed:?}"), "Currencies(ISO 4217, XYZ=3, ABC=0)");
    }

    #[test]
    fn two_tables_in_one_process_give_one_code_two_exponents() {
        // With one table for the whole process this was impossible: the
        // second table was refused, and a daemon started without the
        // command line read every allowed code with exponent 2.
        let zero = table(&[("ZZA", 0)]);
        let three = table(&[("ZZA", 3)]);
        let (a0, a3) = (
            zero.currency("ZZA").unwrap(),
            three.currency("zza").unwrap(),
        );
        assert_eq!((a0.exponent(), a3.exponent()), (0, 3));
        assert_eq!(Currency::iso("ZZA").unwrap().exponent(), 2);
        assert_ne!(a0, a3, "same code, another exponent: another currency");
        assert_eq!(a0.code(), a3.code());
        assert_eq!(zero.money("1234", "ZZA").unwrap().minor_units(), 1234);
        assert_eq!(three.money("1.234", "ZZA").unwrap().minor_units(), 1234);
        assert_eq!(Money::from_minor(1234, a0).to_string(), "1234 ZZA");
        assert_eq!(Money::from_minor(1234, a3).to_string(), "1.234 ZZA");
        // Amounts of the two never add up or compare equal.
        let (m0, m3) = (Money::from_minor(1, a0), Money::from_minor(1, a3));
        assert_ne!(m0, m3);
        assert_eq!(m0.checked_add(&m3), None);
    }

    #[test]
    fn an_iso_code_keeps_its_exponent_whatever_the_table_says() {
        for (iso, exponent) in [("JPY", 2), ("EUR", 3), ("BHD", 2), ("eur", 2)] {
            assert_eq!(
                Currencies::new(&[(code(iso), exponent)]),
                Err(AllowCurrencyError::Iso(code(iso))),
                "{iso}"
            );
        }
        let allowed = table(&[("XYZ", 3)]);
        for (iso, exponent) in [("JPY", 0), ("EUR", 2), ("BHD", 3), ("CLF", 4)] {
            assert_eq!(allowed.currency(iso).unwrap().exponent(), exponent, "{iso}");
            assert_eq!(allowed.currency(iso).unwrap(), cur(iso), "{iso}");
        }
        assert_eq!(
            Currencies::new(&[(code("XYZ"), 5)]),
            Err(AllowCurrencyError::Exponent(code("XYZ")))
        );
        assert_eq!(
            Currencies::new(&[(code("XYZ"), u32::MAX)]),
            Err(AllowCurrencyError::Exponent(code("XYZ")))
        );
        assert_eq!(
            Currencies::new(&[(code("XYZ"), 2), (code("XYZ"), 3)]),
            Err(AllowCurrencyError::Twice(code("XYZ")))
        );
        assert_eq!(
            Currencies::new(&[(code("XYZ"), 2), (code("XYZ"), 2)]),
            Ok(table(&[("XYZ", 2)]))
        );
        assert_eq!(
            AllowCurrencyError::Iso(code("EUR")).to_string(),
            "EUR is an ISO 4217 currency: it needs no allowing, and its exponent is fixed"
        );
    }

    #[test]
    fn amounts_parse_and_format_with_the_exponent_of_their_table() {
        let allowed = table(&[("ZZA", 0), ("ZZB", 3), ("ZZC", 4)]);
        let zzb = allowed.money("12.345", "ZZB").unwrap();
        assert_eq!(
            (zzb.minor_units(), zzb.to_string()),
            (12345, "12.345 ZZB".to_owned())
        );
        assert_eq!(allowed.money("12.3", "zzb").unwrap().minor_units(), 12300);
        assert_eq!(allowed.money("7", "ZZA").unwrap().to_string(), "7 ZZA");
        assert_eq!(allowed.money("0.0001", "ZZC").unwrap().minor_units(), 1);
        assert_eq!(
            allowed.money("7.5", "ZZA"),
            Err(MoneyError::TooManyDecimals {
                currency: allowed.currency("ZZA").unwrap(),
                exponent: 0
            })
        );
        assert!(matches!(
            allowed.money("1.2345", "ZZB"),
            Err(MoneyError::TooManyDecimals { exponent: 3, .. })
        ));
        // The ISO-only table reads the same text with the default exponent.
        assert!(Money::iso("12.345", "ZZB").is_err());
        assert_eq!(Money::iso("12.34", "ZZB").unwrap().minor_units(), 1234);
        // A formatted amount reads back through its own table.
        let back = allowed.money(&zzb.format_amount(), zzb.currency().as_str());
        assert_eq!(back, Ok(zzb));
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
            Money::iso("10.505", "EUR"),
            Err(MoneyError::TooManyDecimals {
                currency: eur,
                exponent: 2
            })
        );
        assert!(matches!(
            Money::iso("1000.5", "JPY"),
            Err(MoneyError::TooManyDecimals { exponent: 0, .. })
        ));
        assert!(matches!(
            Money::iso("1.2345", "BHD"),
            Err(MoneyError::TooManyDecimals { exponent: 3, .. })
        ));
        assert_eq!(
            Money::iso("1.00", "EU"),
            Err(MoneyError::Currency(CurrencyError::WrongLength))
        );
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert_eq!(
            Money::iso("92233720368547758.08", "EUR"),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Money::iso("92233720368547758.07", "EUR")
                .unwrap()
                .minor_units(),
            i64::MAX
        );
        assert_eq!(
            Money::iso("-92233720368547758.08", "EUR")
                .unwrap()
                .minor_units(),
            i64::MIN
        );
        assert_eq!(
            Money::iso("-92233720368547758.09", "EUR"),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Money::iso(&"9".repeat(400), "JPY"),
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
        let json = serde_json::to_string(&money("1.234", "BHD")).unwrap();
        assert_eq!(json, r#"{"amount":"1.234","currency":"BHD"}"#);
        assert_eq!(serde_json::to_string(&cur("jpy")).unwrap(), r#""JPY""#);
    }

    fn any_currency() -> impl Strategy<Value = Currency> {
        prop::sample::select(vec!["EUR", "USD", "JPY", "KRW", "BHD", "KWD", "CLF", "HUF"])
            .prop_map(|code| Currency::iso(code).unwrap())
    }

    proptest! {
        #[test]
        fn parse_inverts_display(minor in any::<i64>(), currency in any_currency()) {
            let m = Money::from_minor(minor, currency);
            prop_assert_eq!(Money::iso(&m.format_amount(), currency.as_str()), Ok(m));
            let shown = m.to_string();
            let (amount, code) = shown.split_once(' ').unwrap();
            prop_assert_eq!(Money::iso(amount, code), Ok(m));
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
        fn an_allowed_currency_reads_back_what_it_shows(minor in any::<i64>(), exponent in 0u32..=4) {
            let table = Currencies::new(&[(CurrencyCode::parse("ZZZ").unwrap(), exponent)]).unwrap();
            let currency = table.currency("ZZZ").unwrap();
            prop_assert_eq!(currency.exponent(), exponent);
            let m = Money::from_minor(minor, currency);
            prop_assert_eq!(table.money(&m.format_amount(), "ZZZ"), Ok(m));
        }

        #[test]
        fn parse_never_panics(amount in ".{0,40}", code in ".{0,5}") {
            let _ = Money::iso(&amount, &code);
        }
    }
}
