//! How an export writes its amounts: which character separates the
//! decimals, which one groups the thousands, and negatives in parentheses.
//!
//! A European export writes one thousand two hundred thirty-four euros
//! fifty-six as `1.234,56` or `1 234,56`, an English one as `1,234.56`; an
//! accounting one writes a debit as `(12.00)`. Read with the wrong
//! separators `1.234` is one euro twenty-three or a thousand and
//! twenty-three: so the separators are the mapping's to say
//! (`decimal_separator`, `thousands_separator`), never guessed, and a
//! thousands separator is accepted only between groups of three digits,
//! so a number written another way is an error on its line rather than an
//! amount off by a factor of a thousand. The value is read exactly, in
//! minor units ([`Money::parse_amount`]); no float is ever involved.

use crate::money::{Currency, Money};

/// The separators of an export's numbers. The default, `.` for decimals
/// and no thousands separator, reads amounts as [`Money::parse_amount`]
/// does (plus parenthesised negatives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberFormat {
    decimal: char,
    thousands: Option<char>,
}

impl Default for NumberFormat {
    fn default() -> Self {
        Self {
            decimal: '.',
            thousands: None,
        }
    }
}

/// The decimal separators a mapping may name.
const DECIMAL_SEPARATORS: [char; 2] = ['.', ','];
/// The thousands separators a mapping may name. A space also accepts the
/// no-break spaces spreadsheets write for it (U+00A0, U+202F).
const THOUSANDS_SEPARATORS: [char; 4] = ['.', ',', ' ', '\''];

impl NumberFormat {
    /// A format with `decimal` (`.` or `,`) and, if any, `thousands` (`.`,
    /// `,`, a space or `'`, not the decimal separator).
    pub fn new(decimal: &str, thousands: Option<&str>) -> Result<Self, String> {
        let one = |text: &str| {
            let mut chars = text.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Some(c),
                _ => None,
            }
        };
        let decimal = one(decimal)
            .filter(|c| DECIMAL_SEPARATORS.contains(c))
            .ok_or_else(|| "decimal_separator must be \".\" or \",\"".to_owned())?;
        let thousands = match thousands {
            None | Some("") => None,
            Some(text) => Some(
                one(text)
                    .filter(|c| THOUSANDS_SEPARATORS.contains(c))
                    .ok_or_else(|| {
                        "thousands_separator must be \".\", \",\", \" \" or \"'\" (or \"\" for none)"
                            .to_owned()
                    })?,
            ),
        };
        if thousands == Some(decimal) {
            return Err(format!(
                "thousands_separator and decimal_separator are both \"{decimal}\""
            ));
        }
        Ok(Self { decimal, thousands })
    }

    /// How one thousand two hundred thirty-four and 56 hundredths is
    /// written in this format (for error messages).
    pub fn example(&self) -> String {
        match self.thousands {
            Some(t) => format!("1{t}234{}56", self.decimal),
            None => format!("1234{}56", self.decimal),
        }
    }

    fn is_thousands(&self, c: char) -> bool {
        match self.thousands {
            Some(' ') => matches!(c, ' ' | '\u{a0}' | '\u{202f}'),
            Some(t) => c == t,
            None => false,
        }
    }

    /// Reads `text` as an amount of `currency`, exactly: `-1.234,56` or
    /// `(1.234,56)` with `,` for decimals and `.` for thousands.
    pub fn parse(&self, text: &str, currency: Currency) -> Result<Money, String> {
        let text = text.trim();
        let wrong = || {
            format!(
                "`{}` is not an amount written like {} or -{}",
                crate::status::clip_for_display(text, 30),
                self.example(),
                self.example()
            )
        };
        let (negative, unsigned) = if let Some(inner) = text
            .strip_prefix('(')
            .and_then(|rest| rest.strip_suffix(')'))
        {
            (true, inner.trim())
        } else if let Some(rest) = text.strip_prefix('-') {
            (true, rest)
        } else {
            (false, text)
        };
        if unsigned.starts_with('-') {
            return Err(wrong());
        }
        let (int, frac) = match unsigned.split_once(self.decimal) {
            Some((int, frac)) => (int, Some(frac)),
            None => (unsigned, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        // The integer part: digits, or groups of three after the first
        // group (one to three digits) when the format has a separator.
        let groups: Vec<&str> = int.split(|c| self.is_thousands(c)).collect();
        let grouped = match groups.as_slice() {
            [] => false,
            [only] => digits(only),
            [first, rest @ ..] => {
                digits(first) && first.len() <= 3 && rest.iter().all(|g| g.len() == 3 && digits(g))
            }
        };
        if !grouped || frac.is_some_and(|f| !digits(f)) {
            return Err(wrong());
        }
        let canonical = format!(
            "{}{}{}",
            if negative { "-" } else { "" },
            groups.concat(),
            frac.map(|f| format!(".{f}")).unwrap_or_default()
        );
        Money::parse_amount(&canonical, currency).map_err(|err| err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur() -> Currency {
        Currency::iso("EUR").expect("EUR")
    }

    fn minor(format: &NumberFormat, text: &str, currency: Currency) -> Result<i64, String> {
        format.parse(text, currency).map(|m| m.minor_units())
    }

    #[test]
    fn each_format_reads_its_amounts_exactly() {
        let eur = eur();
        let jpy = Currency::iso("JPY").expect("JPY");
        let bhd = Currency::iso("BHD").expect("BHD");
        let european = NumberFormat::new(",", Some(".")).expect("format");
        let english = NumberFormat::new(".", Some(",")).expect("format");
        let spaced = NumberFormat::new(",", Some(" ")).expect("format");
        let swiss = NumberFormat::new(".", Some("'")).expect("format");
        let plain = NumberFormat::default();
        // (format, text, currency, minor units by hand)
        let cases: [(&NumberFormat, &str, Currency, i64); 16] = [
            (&european, "1.234,56", eur, 123_456),
            (&european, "-1.234,56", eur, -123_456),
            (&european, "(1.234,56)", eur, -123_456),
            (&european, "1234,56", eur, 123_456),
            (&european, "0,5", eur, 50),
            (&european, "12.345.678,90", eur, 1_234_567_890),
            (&european, "2.500", jpy, 2_500),
            (&european, "1,234", bhd, 1_234),
            (&english, "1,234.56", eur, 123_456),
            (&english, "(12.00)", eur, -1_200),
            (&spaced, "1 234,56", eur, 123_456),
            (&spaced, "1\u{a0}234,56", eur, 123_456),
            (&spaced, "1\u{202f}234\u{202f}567,00", eur, 123_456_700),
            (&swiss, "1'234.56", eur, 123_456),
            (&plain, "-29.99", eur, -2_999),
            (&plain, "(29.99)", eur, -2_999),
        ];
        for (format, text, currency, expected) in cases {
            assert_eq!(
                minor(format, text, currency),
                Ok(expected),
                "{text} in {format:?}"
            );
        }
    }

    #[test]
    fn a_number_written_another_way_is_refused_not_misread() {
        let eur = eur();
        let european = NumberFormat::new(",", Some(".")).expect("format");
        for text in [
            "1,234.56",  // English separators
            "1.23,45",   // a group of two
            "1234.567",  // a group after four digits
            ".234,00",   // no first group
            "1.234,5.6", // a separator in the decimals
            "1,2,3",     // two decimal separators
            "--1,00",
            "(-1,00)",
            "12 €",
            "",
            "1,234", // three decimals in EUR
        ] {
            assert!(european.parse(text, eur).is_err(), "{text:?} was read");
        }
        let error = european.parse("1,234.56", eur).expect_err("refused");
        assert!(error.contains("1.234,56"), "{error}");
        // Without a thousands separator a comma is no digit.
        assert!(NumberFormat::default().parse("1,234.56", eur).is_err());
    }

    #[test]
    fn separators_are_checked_when_the_mapping_is_read() {
        assert!(NumberFormat::new(",", Some(",")).is_err());
        assert!(NumberFormat::new(";", None).is_err());
        assert!(NumberFormat::new(",", Some("_")).is_err());
        assert!(NumberFormat::new(",,", None).is_err());
        assert_eq!(
            NumberFormat::new(".", Some("")).expect("none"),
            NumberFormat::default()
        );
    }
}
