//! The PAN guard: finds card numbers (Primary Account Numbers) where none
//! should be.
//!
//! The processor never sends a full card number in a notification, but the
//! shop or the shopper can put one in a free-text field (a note, an address
//! line, a product option), and once stored it would bring the whole database
//! into PCI-DSS scope. So every field of every notification is scanned, and a
//! field that holds a card number is reported *by name only*: its value is
//! dropped and never returned, logged or kept. The same guard, with any
//! character but a digit or a line break as a separator
//! ([`find_pan_in_free_text`]), refuses the free text that people type
//! (`review resolve --note --by`, `books close --by --note`, the console's
//! forms, mapping files).
//!
//! # What counts as a card number
//!
//! 13 to 19 decimal digits that pass the Luhn check, anywhere in the text
//! (`please charge 4111111111111111 thanks`), written in any grouping:
//!
//! - digits of any script, with their value: ASCII `0-9`, full-width
//!   `０-９`, Arabic-Indic `٠-٩` and every other Unicode decimal digit
//!   ([`crate::ipn::digits`]);
//! - between two digits, nothing or up to [`MAX_SEPARATORS`] separator
//!   characters: spaces (any horizontal space, no-break and full-width
//!   ones included, and tabs), dashes (`-`, Unicode dashes and minus,
//!   full-width `－`), dots (`.`, `．`), slashes (`/`, `／`, `⁄`) and the
//!   invisible zero-width characters. So `4111 1111 1111 1111`,
//!   `4111-1111-1111-1111`, `4111.1111.1111.1111`, `4111 / 1111 / 1111 /
//!   1111` and `４１１１　１１１１…` are all found. Any grouping counts, not
//!   only the 4-4-4-4 of most brands: Amex is 4-6-5, and people type
//!   numbers in odd groups.
//!
//! A *run* is a maximal sequence of digits joined that way; anything else
//! (a letter, `:`, `,`, a line break, more than [`MAX_SEPARATORS`]
//! separators in a row) ends it. The separators split a run into *groups*
//! of contiguous digits (`4111 1111-1111 1111` is one run of four groups).
//! The candidates checked with Luhn are:
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
//! Counting dots and slashes as separators has a price too: a long decimal
//! number (`0.92345678901234`) or a list of dates on one line is one run,
//! and trips the guard one time in ten. Values the processor sends are
//! short (amounts have two decimals; dates are cut by `:`), so the price is
//! paid only by unusual free text, as a review item.

use std::ops::Range;

use crate::ipn::digits::decimal_value;
use crate::ipn::form::name_must_be_masked;
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

/// What is reported instead of a field *name* that itself holds a long
/// number, so that the report cannot become the leak (the same text as in
/// errors and logs).
pub use crate::ipn::form::REDACTED_FIELD_NAME;

/// The most separator characters between two digits of one card number
/// (`4111 - 1111`: three).
pub const MAX_SEPARATORS: usize = 3;

/// Field names are reported clipped to this many characters: names come
/// from the wire and end up in review items.
pub const MAX_REPORTED_NAME_CHARS: usize = 64;

/// Whether a field is skipped by the guard (see [`SKIPPED_FIELDS`]).
pub fn is_skipped_field(name: &str) -> bool {
    Algorithm::is_signature_field(name) || SKIPPED_FIELDS.contains(&name)
}

/// The names of the fields whose value contains a card number, each once,
/// in wire order. Values are neither returned nor kept; a name with 13 or
/// more digits is reported as [`REDACTED_FIELD_NAME`].
pub fn find_pan_fields(form: &FormBody) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for (name, value) in form.pairs() {
        if is_skipped_field(name) || !contains_pan(value) {
            continue;
        }
        let name = if name_must_be_masked(name) {
            REDACTED_FIELD_NAME.to_owned()
        } else {
            clip_for_display(name, MAX_REPORTED_NAME_CHARS)
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
    find_pan(text).is_some()
}

/// Where the first card number of `text` is, as defined in the module
/// docs: the byte range from its first digit to the end of its last one
/// (separators between them included). The one scanner behind
/// [`contains_pan`], [`find_pan_fields`] and [`check_free_text`].
pub fn find_pan(text: &str) -> Option<Range<usize>> {
    find_pan_joined_by(text, is_separator, MAX_SEPARATORS)
}

/// The most characters between two digits of one card number typed by a
/// person ([`check_free_text`]): `4111 -- 1111`, `(4111)(1111)`.
pub const MAX_FREE_TEXT_SEPARATORS: usize = 4;

/// Where the first card number of free text typed by a person is: as
/// [`find_pan`], but any character that is neither a digit nor a line
/// break may stand between two digits (up to
/// [`MAX_FREE_TEXT_SEPARATORS`] in a row): `4111_1111_1111_1111`,
/// `4111,1111,1111,1111`, `(4111)(1111)(1111)(1111)`, `4111--1111--...`.
/// Stricter than the notices' guard, whose fields hold lists and
/// decimals the processor writes; a person writing a note can always say
/// `card ending 1111` instead.
pub fn find_pan_in_free_text(text: &str) -> Option<Range<usize>> {
    find_pan_joined_by(
        text,
        |c| !is_line_break(c) && decimal_value(c).is_none(),
        MAX_FREE_TEXT_SEPARATORS,
    )
}

/// Line breaks: they end a run in free text (numbers one per line are a
/// list).
fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{000B}' | '\u{000C}' | '\u{0085}' | '\u{2028}' | '\u{2029}'
    )
}

/// The scanner: runs of digits joined by up to `max_separators`
/// characters for which `separator` holds.
fn find_pan_joined_by(
    text: &str,
    separator: impl Fn(char) -> bool,
    max_separators: usize,
) -> Option<Range<usize>> {
    let mut run = Run::default();
    // Separators seen since the last digit of the run.
    let mut separators = 0;
    for (at, c) in text.char_indices() {
        if let Some(value) = decimal_value(c) {
            run.push(value, separators > 0, at..at + c.len_utf8());
            separators = 0;
            continue;
        }
        // A separator continues the run only between two digits: while the
        // run is open, and until a digit follows (else the run ends at the
        // next character that is neither).
        if separator(c) && !run.is_empty() && separators < max_separators {
            separators += 1;
            continue;
        }
        if let Some(found) = run.find() {
            return Some(found);
        }
        run.clear();
        separators = 0;
    }
    run.find()
}

/// The characters that may stand between the digits of one card number
/// (see the module docs). Line breaks are not among them: numbers one per
/// line are a list, not a card number.
fn is_separator(c: char) -> bool {
    matches!(
        c,
        // spaces
        ' ' | '\t' | '\u{00A0}' | '\u{1680}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}'
            | '\u{3000}'
            // dashes and minus signs
            | '-' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE58}' | '\u{FE63}' | '\u{FF0D}'
            // dots
            | '.' | '\u{2024}' | '\u{FF0E}'
            // slashes
            | '/' | '\u{2044}' | '\u{2215}' | '\u{FF0F}'
            // invisible: zero-width space and joiners, word joiner, BOM, soft hyphen
            | '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}'
    )
}

/// One run of digits (see the module docs) being scanned.
#[derive(Default)]
struct Run {
    /// The value of each digit.
    digits: Vec<u8>,
    /// Where each digit is in the text.
    spans: Vec<Range<usize>>,
    /// Where each group starts, as an index into `digits`.
    group_starts: Vec<usize>,
}

impl Run {
    fn is_empty(&self) -> bool {
        self.digits.is_empty()
    }

    fn clear(&mut self) {
        self.digits.clear();
        self.spans.clear();
        self.group_starts.clear();
    }

    fn push(&mut self, value: u8, after_separator: bool, span: Range<usize>) {
        if self.digits.is_empty() || after_separator {
            self.group_starts.push(self.digits.len());
        }
        self.digits.push(value);
        self.spans.push(span);
    }

    /// The text range of the first candidate that passes Luhn.
    fn find(&self) -> Option<Range<usize>> {
        let (first, end) = run_pan(&self.digits, &self.group_starts)?;
        Some(self.spans[first].start..self.spans[end - 1].end)
    }
}

/// The first candidate of one run that passes Luhn, as a range of digit
/// indices (see the module docs).
fn run_pan(run: &[u8], group_starts: &[usize]) -> Option<(usize, usize)> {
    if run.len() < MIN_PAN_DIGITS {
        return None;
    }
    let group_end = |g: usize| group_starts.get(g + 1).copied().unwrap_or(run.len());
    for (first, &start) in group_starts.iter().enumerate() {
        // 1. Spans of whole groups. Each group holds at least one digit, so
        // at most 19 groups are looked at from each start: linear overall.
        for last in first..group_starts.len() {
            let end = group_end(last);
            let span = &run[start..end];
            if span.len() > MAX_PAN_DIGITS {
                break;
            }
            if span.len() >= MIN_PAN_DIGITS && luhn_valid(span) {
                return Some((start, end));
            }
        }
        // 2. Windows inside a group too long to be one card number.
        let end = group_end(first);
        if end - start > MAX_PAN_DIGITS {
            for len in MIN_PAN_DIGITS..=MAX_PAN_DIGITS {
                for from in start..=end - len {
                    if luhn_valid(&run[from..from + len]) {
                        return Some((from, from + len));
                    }
                }
            }
        }
    }
    None
}

/// Why free text typed by a person (a review note, a name) was refused.
/// Names what was refused, never its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} contains what looks like a card number (13-19 digits that pass the Luhn check, \
     in any grouping): nothing was stored; write it without the number, for example \
     `card ending 1111`"
)]
pub struct PanInFreeText {
    /// What was refused, as the person knows it (`--note`).
    pub what: &'static str,
}

/// Refuses free text that holds a card number, written in any grouping
/// with any separators ([`find_pan_in_free_text`]), so that what people
/// type cannot put one in the database either.
pub fn check_free_text(what: &'static str, text: &str) -> Result<(), PanInFreeText> {
    match find_pan_in_free_text(text) {
        Some(_) => Err(PanInFreeText { what }),
        None => Ok(()),
    }
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

/// The number of `name=value` pairs of a form-encoded body whose decoded
/// value holds a card number, skipping the fields the PAN guard skips
/// (signatures, `IPN_DATE`). Lenient where `FormBody::parse` is strict
/// (size, repeated fields, invalid UTF-8), because the worker runs it on
/// bodies that parse refused; it also scans names, which a sender chooses.
/// The worker keeps no copy of a malformed body this finds a card number
/// in, and the intake, which must not refuse such a body (the processor
/// would send the number again for two days), asks the same question
/// ([`crate::pipeline::parked_as_malformed`]). Values are neither returned
/// nor kept.
pub fn lenient_pan_fields(body: &[u8]) -> usize {
    body.split(|&b| b == b'&')
        .filter(|pair| {
            let mut parts = pair.splitn(2, |&b| b == b'=');
            let name = form_decode(parts.next().unwrap_or_default());
            let value = form_decode(parts.next().unwrap_or_default());
            !is_skipped_field(&name) && (contains_pan(&value) || contains_pan(&name))
        })
        .count()
}

/// `application/x-www-form-urlencoded` decoding that never fails: `+` is a
/// space, `%XX` a byte, anything else itself; invalid UTF-8 is replaced.
fn form_decode(raw: &[u8]) -> zeroize::Zeroizing<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let escaped = (b == b'%')
            .then(|| raw.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (b, escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (other, None) => {
                out.push(other);
                i += 1;
            }
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    zeroize::Zeroize::zeroize(&mut out);
    zeroize::Zeroizing::new(text)
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
            "4111.1111.1111.1111",
            "4111/1111/1111/1111",
            "4111  1111 1111 1111",
            "4111 - 1111 - 1111 - 1111",
            "4111 / 1111 / 1111 / 1111",
            "3782 822463 10005",
            "please charge 4111111111111111 thanks",
            "card:4111111111111111.",
            "REF99994111111111111111",
            "41111111111111114111111111111111",
            "4111111111111111 4111111111111111",
            "order 12 4111 1111 1111 1111",
            "20160601122509 4111 1111 1111 1111 x",
            "4222222222222",
            // Full-width digits and separators, as a Japanese keyboard types.
            "\u{FF14}\u{FF11}\u{FF11}\u{FF11}\u{3000}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF0D}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF0E}\u{FF11}\u{FF11}\u{FF11}\u{FF11}",
            // Arabic-Indic digits.
            "\u{0664}\u{0661}\u{0661}\u{0661}\u{0661}\u{0661}\u{0661}\u{0661}\u{0661}\u{0661}\u{0661}\u{0661}\u{0661}\u{0661}\u{0661}\u{0661}",
            // Scripts mixed, no-break and zero-width spaces, Unicode dashes.
            "4111\u{00A0}\u{FF11}111\u{200B}1111\u{2013}1111",
            "4111\t1111\u{2212}1111\u{2044}1111",
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
            // Four separators in a row end a run: two runs of 8 digits.
            "4111 1111    1111 1111",
            "4111 1111 1111 111",
            // A line break ends a run: a list, not a number.
            "4111 1111\n1111 1111",
            "4111:1111:1111:1111",
            "4111,1111,1111,1111",
            "2016-06-01 12:22:09",
            "2026/11/02 09:15:31",
            "9999-12-31 23:59:59",
            "123456789",
            "254510700124",
            "951-121-2121",
            "+34 612 345 678",
            "107.00",
            "213.233.121.50",
            "12/29",
            "-4111 ",
            "Café au lait",
            "\u{FF14}\u{FF11}\u{FF11}\u{FF11}",
            "½ ² Ⅻ ① 4111",
        ] {
            assert!(!contains_pan(text), "{text}");
        }
    }

    #[test]
    fn the_span_found_is_the_card_number_with_its_separators() {
        let text = "order 12, card 4111.1111/1111-1111 thanks";
        let found = find_pan(text).unwrap();
        assert_eq!(&text[found], "4111.1111/1111-1111");
        let text = "x \u{FF14}\u{FF11}\u{FF11}\u{FF11}1111 1111 1111.";
        let found = find_pan(text).unwrap();
        assert!(text[found.clone()].starts_with('\u{FF14}'), "{found:?}");
        assert!(text[found].ends_with("1111"));
        assert_eq!(find_pan("no number"), None);
    }

    #[test]
    fn free_text_with_a_card_number_is_refused_without_quoting_it() {
        assert_eq!(
            check_free_text("--note", "card ending 1111 refunded"),
            Ok(())
        );
        let err = check_free_text("--note", "card 4111111111111111 refunded").unwrap_err();
        assert_eq!(err, PanInFreeText { what: "--note" });
        let shown = err.to_string();
        assert!(shown.starts_with("--note contains"), "{shown}");
        assert!(!shown.contains("4111"), "{shown}");
        assert!(check_free_text("--by", "agent 4111-1111-1111-1111").is_err());
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
        // 13 digits in any grouping, Luhn-valid or not, mask a name.
        let body = form(&[
            ("N\u{FF11}234.5678/9012 3", "4111111111111111"),
            ("OPTION_123456_TEXT", "4111111111111111"),
        ]);
        assert_eq!(
            find_pan_fields(&body),
            [REDACTED_FIELD_NAME, "OPTION_123456_TEXT"]
        );
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

    /// A Luhn-valid card number of 13 to 19 digits.
    fn luhn_valid_pan() -> impl Strategy<Value = String> {
        (12usize..=18).prop_flat_map(|len| {
            prop::collection::vec(0u8..10, len).prop_map(|body| {
                let body: String = body.iter().map(|d| char::from(b'0' + d)).collect();
                with_check_digit(&body)
            })
        })
    }

    /// The zero of the digits a digit is written in: ASCII, full-width,
    /// Arabic-Indic, Devanagari, mathematical bold.
    fn digit_script() -> impl Strategy<Value = u32> {
        prop::sample::select(vec![0x30, 0xFF10, 0x0660, 0x0966, 0x1D7CE])
    }

    /// What people put between digits: nothing, or 1-3 separators.
    fn gap() -> impl Strategy<Value = String> {
        prop_oneof![
            2 => Just(String::new()),
            3 => prop::collection::vec(
                prop::sample::select(vec![
                    ' ', '-', '.', '/', '\t', '\u{00A0}', '\u{3000}', '\u{FF0D}', '\u{FF0E}',
                    '\u{FF0F}', '\u{2013}', '\u{200B}',
                ]),
                1..=MAX_SEPARATORS,
            )
            .prop_map(|chars| chars.into_iter().collect()),
        ]
    }

    /// `pan` written digit by digit in random scripts, with random gaps.
    fn written(pan: &str, scripts: &[u32], gaps: &[String]) -> String {
        let mut text = String::new();
        for (i, digit) in pan.bytes().enumerate() {
            let zero = scripts[i % scripts.len()];
            text.push(char::from_u32(zero + u32::from(digit - b'0')).unwrap());
            if i + 1 < pan.len() {
                text.push_str(&gaps[i % gaps.len()]);
            }
        }
        text
    }

    proptest! {
        #[test]
        fn any_luhn_valid_number_in_any_grouping_is_found(
            pan in luhn_valid_pan(),
            scripts in prop::collection::vec(digit_script(), 1..4),
            gaps in prop::collection::vec(gap(), 18),
            prefix in "[a-zA-Z .:,]{0,20}",
            suffix in "[a-zA-Z .:,]{0,20}",
        ) {
            let number = written(&pan, &scripts, &gaps);
            let text = format!("{prefix}{number}{suffix}");
            prop_assert!(contains_pan(&text), "{:?}", text);
            // What is found lies within the number (a shorter span of its
            // groups may pass Luhn first).
            let found = find_pan(&text).unwrap();
            prop_assert!(found.start >= prefix.len(), "{:?} in {:?}", found, text);
            prop_assert!(found.end <= prefix.len() + number.len(), "{:?} in {:?}", found, text);
            let body = form(&[("REFNO", "1"), ("FREE_TEXT", &text)]);
            prop_assert_eq!(find_pan_fields(&body), vec!["FREE_TEXT".to_owned()]);
            // The same number in a field *name* masks the name.
            let name = format!("NOTE_{number}[]");
            prop_assert!(name_must_be_masked(&name));
            prop_assert_eq!(crate::ipn::form::printable_name(&name), REDACTED_FIELD_NAME);
            let body = form(&[(name.as_str(), text.as_str())]);
            prop_assert_eq!(find_pan_fields(&body), vec![REDACTED_FIELD_NAME.to_owned()]);
            prop_assert!(check_free_text("--note", &text).is_err());
        }

        /// Issue 23, item 4: in what a person types, any characters but
        /// digits and line breaks may join the groups, repeated.
        #[test]
        fn people_cannot_type_a_card_number_with_any_separators(
            pan in luhn_valid_pan(),
            sizes in prop::collection::vec(1usize..=6, 19),
            separators in prop::collection::vec(
                prop::collection::vec(
                    prop::char::any().prop_filter("neither a digit nor a line break", |c| {
                        decimal_value(*c).is_none() && !is_line_break(*c)
                    }),
                    1..=MAX_FREE_TEXT_SEPARATORS,
                ),
                19,
            ),
            prefix in "[a-zA-Z :]{0,12}",
        ) {
            let mut number = String::new();
            let mut written = 0;
            for (i, size) in sizes.iter().enumerate() {
                if written >= pan.len() {
                    break;
                }
                let end = (written + size).min(pan.len());
                number.push_str(&pan[written..end]);
                written = end;
                if written < pan.len() {
                    number.extend(separators[i].iter());
                }
            }
            let text = format!("{prefix} {number} thanks");
            prop_assert!(check_free_text("--note", &text).is_err(), "{:?}", text);
        }

        #[test]
        fn short_digit_strings_are_never_found(text in "[0-9]{0,12}") {
            prop_assert!(!contains_pan(&text));
        }

        #[test]
        fn short_runs_with_separators_are_never_found(
            groups in prop::collection::vec("[0-9]{1,4}", 1..5),
            filler in "[a-z:,;]{1,3}",
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

    #[test]
    fn notes_with_the_separators_people_use_are_refused() {
        for note in [
            "4111_1111_1111_1111",
            "4111,1111,1111,1111",
            "(4111)(1111)(1111)(1111)",
            "4111 -- 1111 -- 1111 -- 1111",
            "card: 4111__1111__1111__1111.",
            "4111*1111*1111*1111",
        ] {
            assert!(check_free_text("--note", note).is_err(), "{note}");
        }
        // Numbers one per line are a list; a reference and an amount apart
        // are not one number; a card's last four is fine.
        for note in [
            "4111\n1111\n1111\n1111",
            "card ending 1111, refunded 49.99 EUR",
            "order SHOP-1002, ticket 88120",
        ] {
            assert!(check_free_text("--note", note).is_ok(), "{note}");
        }
    }

    #[test]
    fn the_lenient_scan_finds_card_numbers_in_any_encoding_and_skips_dates() {
        assert_eq!(lenient_pan_fields(b"A=1&NOTE=card+4111+1111+1111+1111"), 1);
        assert_eq!(lenient_pan_fields(b"NOTE=4111%201111%201111%201111&X=2"), 1);
        assert_eq!(
            lenient_pan_fields(b"N1=4111111111111111&N2=5500-0000-0000-0004&N1=x"),
            2
        );
        // A name that is itself a card number counts too.
        assert_eq!(lenient_pan_fields(b"4111111111111111=x"), 1);
        // IPN_DATE passes the Luhn check one time in ten; it is skipped as
        // by the pipeline's guard.
        assert!(contains_pan("20261102092040"), "a Luhn-valid date");
        assert_eq!(
            lenient_pan_fields(b"IPN_DATE=20261102092040&REFNO=12345678"),
            0
        );
        // Broken escapes and invalid UTF-8 do not stop the scan.
        assert_eq!(lenient_pan_fields(b"A=%ZZ%&B=\xff4111111111111111"), 1);
        assert_eq!(lenient_pan_fields(b""), 0);
    }
}
