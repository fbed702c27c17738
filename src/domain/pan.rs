//! The PAN guard: finds card numbers (Primary Account Numbers) where none
//! should be.
//!
//! The processor never sends a full card number in a notification, but the
//! shop or the shopper can put one in a free-text field (a note, an address
//! line, a product option), and once stored it would bring the whole database
//! into PCI-DSS scope. So every field of every notification is scanned, and a
//! field that holds a card number is reported *by name only*: its value is
//! dropped and never returned, logged or kept.
//!
//! # What counts as a card number
//!
//! 13 to 19 ASCII digits that pass the Luhn check, written contiguously or
//! with single spaces or dashes between digits (`4111 1111 1111 1111`,
//! `4111-1111-1111-1111`, `4111111111111111`), anywhere in the value (`please
//! charge 4111111111111111 thanks`). Any grouping is accepted, not only the
//! 4-4-4-4 of most brands: Amex is 4-6-5, and people type numbers in odd
//! groups.
//!
//! A *run* is a maximal sequence of digits joined by at most one separator
//! between two digits; anything else (a letter, `.`, `:`, `/`, two separators
//! in a row) ends it. The separators split a run into *groups* of contiguous
//! digits (`4111 1111-1111 1111` is one run of four groups). The candidates
//! checked with Luhn are:
//!
//! 1. every span of whole consecutive groups holding 13-19 digits: the run
//!    itself when it is 13-19 digits long, and a card number written next to
//!    other numbers (`order 12 4111 1111 1111 1111`);
//! 2. inside a group of *more than 19* contiguous digits, every window of
//!    13-19 digits: such a group cannot be one card number as written, and
//!    a card number glued to other digits (`REF00004111111111111111`, a
//!    number typed twice) is still a leak.
//!
//! Windows are deliberately *not* taken inside groups of 13-19 digits: a
//! 16-digit number has ten 13-19 digit windows, so two numbers in three
//! would trip the guard, and a long numeric merchant reference (REFNOEXT is
//! stored, so a hit there refuses the notification) would be refused most
//! of the time instead of one time in ten. The cost is that a card number
//! glued to a few digits, the whole staying within 19 digits, is missed.
//! Windows inside groups longer than 19 digits do cost false positives
//! (almost every such group has a Luhn-valid window): a review item, not a
//! refusal, unless the field is stored. Fields known to hold long digit
//! strings that are not card numbers are skipped by name instead (see
//! [`SKIPPED_FIELDS`]).
//!
//! Not covered: digits other than ASCII `0-9` (e.g. full-width digits), and
//! separators other than a single space or dash (dots, slashes, tabs,
//! non-breaking spaces).

use crate::ipn::{Algorithm, FormBody};

use super::status::clip_for_display;

/// The fewest digits of a card number (ISO/IEC 7812).
pub const MIN_PAN_DIGITS: usize = 13;
/// The most digits of a card number (ISO/IEC 7812).
pub const MAX_PAN_DIGITS: usize = 19;

/// Fields that are never scanned, with the reason:
///
/// - `HASH`, `SIGNATURE_SHA2_256`, `SIGNATURE_SHA3_256`: hex digests, whose
///   digit runs would trip the guard at random; they are not stored either.
/// - `IPN_DATE`: a 14-digit `YmdHis` timestamp, which passes the Luhn check
///   one time in ten (windows of 13 and 14 digits); it is parsed strictly as
///   a date by the tokenizer, so a card number cannot hide in it.
pub const SKIPPED_FIELDS: [&str; 4] = [
    "HASH",
    "SIGNATURE_SHA2_256",
    "SIGNATURE_SHA3_256",
    "IPN_DATE",
];

/// What is reported instead of a field *name* that itself contains a card
/// number, so that the report cannot become the leak.
pub const REDACTED_FIELD_NAME: &str = "<field name with card number>";

/// Field names are reported clipped to this many characters: names come
/// from the wire and end up in review items.
pub const MAX_REPORTED_NAME_CHARS: usize = 64;

/// Whether a field is skipped by the guard (see [`SKIPPED_FIELDS`]).
pub fn is_skipped_field(name: &str) -> bool {
    Algorithm::is_signature_field(name) || SKIPPED_FIELDS.contains(&name)
}

/// The names of the fields whose value contains a card number, each once,
/// in wire order. Values are neither returned nor kept.
pub fn find_pan_fields(form: &FormBody) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for field in form.fields() {
        if is_skipped_field(&field.name) || !contains_pan(&field.value) {
            continue;
        }
        let name = if contains_pan(&field.name) {
            REDACTED_FIELD_NAME.to_owned()
        } else {
            clip_for_display(&field.name, MAX_REPORTED_NAME_CHARS)
        };
        if !found.contains(&name) {
            found.push(name);
        }
    }
    found
}

/// Whether `text` contains a card number, as defined in the module docs.
///
/// Also used by tests that scan the database and the logs for leaks.
pub fn contains_pan(text: &str) -> bool {
    let bytes = text.as_bytes();
    // Digit values of the current run, and where each of its groups starts.
    // ASCII digits and separators are single bytes in UTF-8 and never part
    // of a multi-byte character, so scanning bytes is exact.
    let mut run: Vec<u8> = Vec::new();
    let mut group_starts: Vec<usize> = Vec::new();
    let mut after_separator = false;
    for (i, &b) in bytes.iter().enumerate() {
        if b.is_ascii_digit() {
            if run.is_empty() || after_separator {
                group_starts.push(run.len());
            }
            after_separator = false;
            run.push(b - b'0');
            continue;
        }
        // A separator continues the run only between two digits; the run
        // is non-empty only if the previous byte was a digit.
        let joins_digits = (b == b' ' || b == b'-')
            && !run.is_empty()
            && bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
        if joins_digits {
            after_separator = true;
            continue;
        }
        if run_contains_pan(&run, &group_starts) {
            return true;
        }
        run.clear();
        group_starts.clear();
    }
    run_contains_pan(&run, &group_starts)
}

/// Checks the candidates of one run (see the module docs).
fn run_contains_pan(run: &[u8], group_starts: &[usize]) -> bool {
    if run.len() < MIN_PAN_DIGITS {
        return false;
    }
    let group_end = |g: usize| group_starts.get(g + 1).copied().unwrap_or(run.len());
    for (first, &start) in group_starts.iter().enumerate() {
        // 1. Spans of whole groups. Each group holds at least one digit, so
        // at most 19 groups are looked at from each start: linear overall.
        for last in first..group_starts.len() {
            let span = &run[start..group_end(last)];
            if span.len() > MAX_PAN_DIGITS {
                break;
            }
            if span.len() >= MIN_PAN_DIGITS && luhn_valid(span) {
                return true;
            }
        }
        // 2. Windows inside a group too long to be one card number.
        let group = &run[start..group_end(first)];
        if group.len() > MAX_PAN_DIGITS
            && (MIN_PAN_DIGITS..=MAX_PAN_DIGITS).any(|len| group.windows(len).any(luhn_valid))
        {
            return true;
        }
    }
    false
}

/// The Luhn (mod 10) check: from the rightmost digit, double every second
/// digit (subtracting 9 when the double exceeds 9); valid when the sum is a
/// multiple of 10.
pub(crate) fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipn::{Field, FormLimits};
    use proptest::prelude::*;

    fn digits(text: &str) -> Vec<u8> {
        text.bytes().map(|b| b - b'0').collect()
    }

    /// Appends the Luhn check digit to `body` (digits as text).
    fn with_check_digit(body: &str) -> String {
        (0..10)
            .map(|d| format!("{body}{d}"))
            .find(|candidate| luhn_valid(&digits(candidate)))
            .unwrap()
    }

    fn form(pairs: &[(&str, &str)]) -> FormBody {
        FormBody::from_fields(
            pairs
                .iter()
                .map(|(name, value)| Field {
                    name: (*name).to_owned(),
                    value: (*value).to_owned(),
                })
                .collect(),
        )
    }

    #[test]
    fn luhn_on_known_test_numbers() {
        for valid in [
            "4111111111111111",
            "5555555555554444",
            "378282246310005",
            "30569309025904",
            "4222222222222",
            "6011000990139424",
            "79927398713",
        ] {
            assert!(luhn_valid(&digits(valid)), "{valid}");
        }
        for invalid in ["4111111111111112", "378282246310006", "79927398710"] {
            assert!(!luhn_valid(&digits(invalid)), "{invalid}");
        }
    }

    #[test]
    fn finds_card_numbers_in_every_written_form() {
        for text in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "4111 1111-1111 1111",
            "3782 822463 10005",
            "please charge 4111111111111111 thanks",
            "card:4111111111111111.",
            "REF99994111111111111111",
            "41111111111111114111111111111111",
            "4111111111111111 4111111111111111",
            "order 12 4111 1111 1111 1111",
            "20160601122509 4111 1111 1111 1111 x",
            "4222222222222",
            &with_check_digit("123456789012345678"),
        ] {
            assert!(contains_pan(text), "{text}");
        }
    }

    #[test]
    fn ignores_what_is_not_a_card_number() {
        for text in [
            "",
            "4111111111111112",
            // Within 19 digits only the whole run counts (see module docs).
            "124111111111111111",
            "4111  1111 1111 1111",
            "4111 1111 1111 111",
            "4111.1111.1111.1111",
            "4111/1111/1111/1111",
            "2016-06-01 12:22:09",
            "9999-12-31 23:59:59",
            "123456789",
            "254510700124",
            "951-121-2121",
            "107.00",
            "213.233.121.50",
            "-4111 ",
            "Café au lait",
        ] {
            assert!(!contains_pan(text), "{text}");
        }
    }

    #[test]
    fn reports_field_names_once_never_values() {
        let body = form(&[
            ("REFNO", "123456789"),
            ("MESSAGE_ID", "254510700124"),
            ("SALEDATE", "2016-06-01 12:22:09"),
            ("IPN_DATE", "20050303123434"),
            ("IPN_INFO[]", "card 4111 1111 1111 1111"),
            ("ADDRESS1", "101 Main Street"),
            ("IPN_INFO[]", "again 5555555555554444"),
            ("HASH", "41111111111111110000000000000000"),
            ("SIGNATURE_SHA2_256", &"4111111111111111".repeat(4)),
            ("SIGNATURE_SHA3_256", &"4111111111111111".repeat(4)),
            ("COMMENTS", "4111-1111-1111-1111"),
        ]);
        assert_eq!(find_pan_fields(&body), ["IPN_INFO[]", "COMMENTS"]);
    }

    #[test]
    fn a_field_name_holding_a_card_number_is_redacted() {
        let body = form(&[("NOTE_4111111111111111", "4111111111111111")]);
        assert_eq!(find_pan_fields(&body), [REDACTED_FIELD_NAME]);
        let long = "N".repeat(500);
        let body = form(&[(long.as_str(), "4111111111111111")]);
        assert_eq!(find_pan_fields(&body)[0].len(), MAX_REPORTED_NAME_CHARS);
    }

    #[test]
    fn the_timestamp_field_is_skipped_because_it_trips_luhn() {
        // 20050303123434 would not trip, but many timestamps do: find one
        // to show why IPN_DATE is skipped.
        let tripping = (0..60)
            .map(|s| format!("200503031234{s:02}"))
            .find(|t| contains_pan(t))
            .unwrap();
        let body = form(&[("IPN_DATE", &tripping), ("OTHER_DATE", &tripping)]);
        assert_eq!(find_pan_fields(&body), ["OTHER_DATE"]);
    }

    #[test]
    fn the_spec_v4_sample_is_clean() {
        let raw = "SALEDATE=2016-06-01+12%3A22%3A09&REFNO=1000037&REFNOEXT=&ORDERSTATUS=COMPLETE\
                   &PAYMETHOD=Wire+transfer&FIRSTNAME=John&ADDRESS1=101+Main+Street\
                   &ZIPCODE=10101&PHONE=951-121-2121&CUSTOMEREMAIL=johnsmith%40email.com\
                   &IPADDRESS=213.233.121.50&CURRENCY=USD&IPN_PID%5B%5D=1&IPN_PRICE%5B%5D=529.00\
                   &IPN_TOTALGENERAL=534.00&IPN_DATE=20050303123434&MESSAGE_ID=254510700124";
        let body = FormBody::parse(raw.as_bytes(), &FormLimits::default()).unwrap();
        assert!(find_pan_fields(&body).is_empty());
    }

    fn luhn_valid_16() -> impl Strategy<Value = String> {
        "[0-9]{15}".prop_map(|body| with_check_digit(&body))
    }

    proptest! {
        #[test]
        fn any_luhn_valid_16_digit_number_is_found(
            pan in luhn_valid_16(),
            separators in prop::collection::vec(prop::sample::select(vec!["", " ", "-"]), 15),
            prefix in "[a-zA-Z .:,]{0,20}",
            suffix in "[a-zA-Z .:,]{0,20}",
        ) {
            let mut text = prefix.clone();
            for (i, c) in pan.chars().enumerate() {
                text.push(c);
                if let Some(sep) = separators.get(i) {
                    text.push_str(sep);
                }
            }
            text.push_str(&suffix);
            prop_assert!(contains_pan(&text));
            let body = form(&[("REFNO", "1"), ("FREE_TEXT", &text)]);
            prop_assert_eq!(find_pan_fields(&body), vec!["FREE_TEXT".to_owned()]);
        }

        #[test]
        fn short_digit_strings_are_never_found(text in "[0-9]{0,12}") {
            prop_assert!(!contains_pan(&text));
        }

        #[test]
        fn short_runs_with_separators_are_never_found(
            groups in prop::collection::vec("[0-9]{1,4}", 1..5),
            filler in "[a-z.:/]{1,3}",
        ) {
            // Runs of at most 12 digits, separated by non-separators.
            let text: Vec<String> = groups.chunks(3).map(|c| c.join(" ")).collect();
            let text = text.join(&filler);
            let longest = groups.chunks(3).map(|c| c.iter().map(String::len).sum::<usize>()).max();
            prop_assume!(longest.unwrap_or(0) < MIN_PAN_DIGITS);
            prop_assert!(!contains_pan(&text));
        }

        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            let _ = contains_pan(&text);
        }
    }
}
