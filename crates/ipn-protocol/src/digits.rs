//! Decimal digits of every script, for the guards that look for numbers
//! where none should be (card numbers in values, long numbers in field
//! names).
//!
//! People do not only type ASCII `0-9`: a Japanese keyboard gives
//! full-width `４１１１`, an Arabic one `٤١١١`, and either is a card number to
//! whoever reads it. Every character of Unicode's general category `Nd`
//! (decimal number) counts, with its value.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// The value (0-9) of `c` when it is a decimal digit of any script: ASCII
/// `0-9`, full-width `０-９`, Arabic-Indic, Devanagari, mathematical digits
/// and the rest of Unicode's category `Nd`. `None` for anything else,
/// including numeric characters that are not digits (`½`, `Ⅻ`, `²`).
pub fn decimal_value(c: char) -> Option<u8> {
    if c.is_ascii() {
        return c.is_ascii_digit().then(|| c as u8 - b'0');
    }
    if !is_decimal(c) {
        return None;
    }
    // Unicode encodes decimal digits in contiguous runs of ten, from 0 to
    // 9 (The Unicode Standard, §4.6 "Numeric Value"); adjacent runs (the
    // five sets of mathematical digits) are whole runs too. So the value is
    // the distance from the start of the block of runs, modulo ten.
    let mut start = u32::from(c);
    while let Some(before) = start.checked_sub(1).and_then(char::from_u32) {
        if !is_decimal(before) {
            break;
        }
        start -= 1;
    }
    // The remainder of a division by ten is a single digit.
    Some(((u32::from(c) - start) % 10) as u8)
}

fn is_decimal(c: char) -> bool {
    c.general_category() == GeneralCategory::DecimalNumber
}

/// How many decimal digits of any script `text` holds.
pub fn count_decimal_digits(text: &str) -> usize {
    text.chars().filter(|&c| decimal_value(c).is_some()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_of_every_script_have_their_value() {
        for (zero, script) in [
            ('0', "ASCII"),
            ('\u{FF10}', "full-width"),
            ('\u{0660}', "Arabic-Indic"),
            ('\u{06F0}', "extended Arabic-Indic"),
            ('\u{0966}', "Devanagari"),
            ('\u{0E50}', "Thai"),
            ('\u{1D7CE}', "mathematical bold"),
            ('\u{1D7D8}', "mathematical double-struck"),
            ('\u{1D7F6}', "mathematical monospace"),
        ] {
            for value in 0..10u8 {
                let digit = char::from_u32(u32::from(zero) + u32::from(value)).unwrap();
                assert_eq!(decimal_value(digit), Some(value), "{script} {digit}");
            }
        }
    }

    #[test]
    fn numbers_that_are_not_digits_are_not_counted() {
        for c in ['a', ' ', '.', '½', 'Ⅻ', '²', '①', '〇', '\u{FF0E}'] {
            assert_eq!(decimal_value(c), None, "{c}");
        }
        assert_eq!(count_decimal_digits("４１１１ 1111-٤"), 9);
    }

    #[test]
    fn every_decimal_digit_has_a_value_and_runs_go_zero_to_nine() {
        let mut runs = 0;
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            let Some(value) = decimal_value(c) else {
                continue;
            };
            if value == 0 {
                runs += 1;
                for step in 1..10u8 {
                    let next = char::from_u32(u32::from(c) + u32::from(step)).unwrap();
                    assert_eq!(decimal_value(next), Some(step), "{:X}", u32::from(c));
                }
            }
        }
        // Unicode 14 had 66 runs; newer versions only add.
        assert!(runs >= 66, "{runs}");
    }
}
