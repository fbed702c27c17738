//! Parsing of the processor's `application/x-www-form-urlencoded` body.
//!
//! The signature covers every value *in wire order*, so the parser keeps the
//! body as an ordered list of `(name, value)` pairs instead of a map: repeated
//! names, `NAME[]` arrays and the position of every field survive parsing.
//!
//! Values are decoded exactly once (`+` to space, then `%XX` to a byte) and
//! must be valid UTF-8: the signature's length prefixes count UTF-8 bytes, so a
//! value we cannot decode is a value we cannot verify.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::OnceLock;

/// Limits that keep a hostile body from costing more than a legitimate one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormLimits {
    /// Largest accepted body, in bytes.
    pub max_body_bytes: usize,
    /// Largest accepted number of fields (array elements count one each).
    pub max_fields: usize,
}

impl FormLimits {
    /// 64 KiB: a notification with dozens of product lines stays under 16 KiB.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
    /// A generous bound on fields; real notifications carry a few hundred.
    pub const DEFAULT_MAX_FIELDS: usize = 2_000;
}

impl Default for FormLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            max_fields: Self::DEFAULT_MAX_FIELDS,
        }
    }
}

/// Why a body is not a well-formed notification form.
///
/// Messages name fields and positions, never values: values may hold personal
/// data or card numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("body is empty")]
    Empty,
    #[error("body is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("body has more than {limit} fields")]
    TooManyFields { limit: usize },
    #[error("field #{position} has an empty name")]
    EmptyName { position: usize },
    #[error("the name of field #{position} is not valid UTF-8")]
    NameNotUtf8 { position: usize },
    #[error("the value of field `{name}` (field #{position}) is not valid UTF-8")]
    ValueNotUtf8 { name: String, position: usize },
    #[error("field `{name}` appears more than once but is not an array (`{name}[]`)")]
    RepeatedScalar { name: String },
}

/// One `name=value` pair as decoded from the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Field {
    /// The decoded name as sent, including a trailing `[]` for array elements.
    pub name: String,
    /// The decoded value. May hold personal data: never log it.
    pub value: String,
}

impl Field {
    /// Whether this field is an element of a PHP-style array (`NAME[]`).
    pub fn is_array_element(&self) -> bool {
        is_array_name(&self.name)
    }
}

/// A field name as it may appear in an error, a log line or a database
/// reason. Names come from the sender, so they are cut to 64 characters,
/// anything but `[A-Za-z0-9_.[]-]` becomes `?`, and runs of 10 or more
/// digits (a card number used as a name) become `#`.
pub fn printable_name(name: &str) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() >= 10 {
            out.push('#');
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in name.chars().take(64) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        flush(&mut digits, &mut out);
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']' | '-') {
            out.push(c);
        } else {
            out.push('?');
        }
    }
    flush(&mut digits, &mut out);
    out
}

/// Whether `name` names an element of a PHP-style array (`NAME[]`).
fn is_array_name(name: &str) -> bool {
    name.ends_with("[]")
}

impl fmt::Debug for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Field")
            .field("name", &self.name)
            .field(
                "value",
                &format_args!("<{} bytes redacted>", self.value.len()),
            )
            .finish()
    }
}

/// Where one field's decoded name and value sit in [`FormBody`]'s text: the
/// name is `text[start..value]`, the value `text[value..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    value: usize,
    end: usize,
}

/// A parsed notification body: every field, in wire order.
///
/// Parsing decodes every name and value into one buffer, so that parsing and
/// verifying a notification does not allocate per field; the owned
/// [`Field`]s of [`FormBody::fields`] are built on first use only.
///
/// `Debug` shows field names only; values may be personal data.
#[derive(Clone, Default)]
pub struct FormBody {
    /// Every decoded name and value, back to back.
    text: String,
    /// One span per field, in wire order.
    spans: Vec<Span>,
    /// The fields as owned values, built by the first call of `fields()`.
    fields: OnceLock<Vec<Field>>,
}

impl PartialEq for FormBody {
    fn eq(&self, other: &Self) -> bool {
        self.spans.len() == other.spans.len() && self.pairs().eq(other.pairs())
    }
}

impl Eq for FormBody {}

impl fmt::Debug for FormBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Redacted<'a>(&'a str, usize);
        impl fmt::Debug for Redacted<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("Field")
                    .field("name", &self.0)
                    .field("value", &format_args!("<{} bytes redacted>", self.1))
                    .finish()
            }
        }
        let fields: Vec<_> = self
            .pairs()
            .map(|(name, value)| Redacted(name, value.len()))
            .collect();
        f.debug_struct("FormBody").field("fields", &fields).finish()
    }
}

impl FormBody {
    /// Parses a form-urlencoded body, enforcing `limits`.
    ///
    /// Empty segments (`a=1&&b=2`) are skipped, a segment without `=` is a
    /// field with an empty value, as PHP reads them.
    pub fn parse(body: &[u8], limits: &FormLimits) -> Result<Self, FormError> {
        if body.len() > limits.max_body_bytes {
            return Err(FormError::TooLarge {
                size: body.len(),
                limit: limits.max_body_bytes,
            });
        }
        // Decoding never makes a component longer.
        let mut text = Vec::with_capacity(body.len());
        let mut spans = Vec::with_capacity((body.len() / 16 + 1).min(limits.max_fields));
        let mut rest = body;
        while let Some(&first) = rest.first() {
            if first == b'&' {
                rest = &rest[1..];
                continue;
            }
            if spans.len() == limits.max_fields {
                return Err(FormError::TooManyFields {
                    limit: limits.max_fields,
                });
            }
            let position = spans.len() + 1;
            let start = text.len();
            let name = decode_component(rest, Component::Name, &mut text);
            rest = &rest[name.consumed..];
            if !name.is_utf8(&text[start..]) {
                return Err(FormError::NameNotUtf8 { position });
            }
            let value = text.len();
            if value == start {
                return Err(FormError::EmptyName { position });
            }
            if name.stop == Some(b'=') {
                let decoded = decode_component(&rest[1..], Component::Value, &mut text);
                rest = &rest[1 + decoded.consumed..];
                if !decoded.is_utf8(&text[value..]) {
                    return Err(FormError::ValueNotUtf8 {
                        name: printable_name(&String::from_utf8_lossy(&text[start..value])),
                        position,
                    });
                }
            }
            spans.push(Span {
                start,
                value,
                end: text.len(),
            });
        }
        if spans.is_empty() {
            return Err(FormError::Empty);
        }
        // Every name and value was checked above, and UTF-8 strings
        // concatenate to UTF-8: this never fails.
        let text = String::from_utf8(text).expect("every decoded component is UTF-8");
        Ok(Self {
            text,
            spans,
            fields: OnceLock::new(),
        })
    }

    /// Builds a body from already decoded fields (simulation and tests).
    pub fn from_fields(fields: Vec<Field>) -> Self {
        let mut body = Self::default();
        for field in &fields {
            body.push_span(&field.name, &field.value);
        }
        body.fields = OnceLock::from(fields);
        body
    }

    /// Every field in wire order.
    pub fn fields(&self) -> &[Field] {
        self.fields.get_or_init(|| {
            self.pairs()
                .map(|(name, value)| Field {
                    name: name.to_owned(),
                    value: value.to_owned(),
                })
                .collect()
        })
    }

    /// Every `(name, value)` pair in wire order, without building
    /// [`Field`]s.
    pub fn pairs(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.spans.iter().map(|span| self.pair(span))
    }

    fn pair(&self, span: &Span) -> (&str, &str) {
        (
            &self.text[span.start..span.value],
            &self.text[span.value..span.end],
        )
    }

    /// The value of a scalar field, or the first element of an array when
    /// `name` ends in `[]`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| value)
    }

    /// Every value sent under `name`, in wire order (array elements).
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs()
            .filter(move |(n, _)| *n == name)
            .map(|(_, value)| value)
    }

    /// The fields grouped as PHP's `$_POST` would hold them: one group per
    /// distinct name at the position of its first occurrence, array elements
    /// in wire order.
    ///
    /// A repeated name that is not an array is rejected: PHP would keep only
    /// the last value, so the processor cannot have signed such a body.
    pub fn grouped(&self) -> Result<Vec<(&str, Vec<&str>)>, FormError> {
        let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (name, value) in self.pairs() {
            // Elements of one array usually come together: no lookup then.
            let group = match groups.last() {
                Some((last, _)) if *last == name => Some(groups.len() - 1),
                _ => index.get(name).copied(),
            };
            match group {
                Some(group) if is_array_name(name) => groups[group].1.push(value),
                Some(_) => {
                    return Err(FormError::RepeatedScalar {
                        name: printable_name(name),
                    });
                }
                None => {
                    index.insert(name, groups.len());
                    groups.push((name, vec![value]));
                }
            }
        }
        Ok(groups)
    }

    /// Appends to `out`, through `each(out, name, value)`, every field in
    /// the order of [`FormBody::grouped`], or fails as `grouped` does.
    ///
    /// Fast path: when no name repeats except in runs of one array's
    /// elements (what the processor sends), grouped order is wire order and
    /// no group needs building; one pass checks that with a table of name
    /// hashes while writing. Anything else (an equal hash, a split array, a
    /// repeated scalar) rolls `out` back and takes `grouped`'s exact path.
    pub(crate) fn write_grouped(
        &self,
        out: &mut Vec<u8>,
        mut each: impl FnMut(&mut Vec<u8>, &[u8], &[u8]),
    ) -> Result<(), FormError> {
        let rollback = out.len();
        let text = self.text.as_bytes();
        let mut seen = NameTable::new(self.spans.len());
        let mut previous: &[u8] = &[];
        let mut fast = true;
        for span in &self.spans {
            let name = &text[span.start..span.value];
            let value = &text[span.value..span.end];
            let continues_array = name == previous && name.ends_with(b"[]");
            if !continues_array && !seen.insert(name) {
                fast = false;
                break;
            }
            each(out, name, value);
            previous = name;
        }
        if fast {
            return Ok(());
        }
        out.truncate(rollback);
        for (name, values) in self.grouped()? {
            for value in values {
                each(out, name.as_bytes(), value.as_bytes());
            }
        }
        Ok(())
    }

    /// The total length of every value, in bytes.
    pub(crate) fn values_len(&self) -> usize {
        self.spans.iter().map(|span| span.end - span.value).sum()
    }

    /// Encodes the body back to `application/x-www-form-urlencoded`.
    ///
    /// Decoding the result gives the same fields in the same order, which is
    /// all the signature depends on.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + self.text.len() / 2);
        for (i, (name, value)) in self.pairs().enumerate() {
            if i > 0 {
                out.push('&');
            }
            encode_component(name, &mut out);
            out.push('=');
            encode_component(value, &mut out);
        }
        out
    }

    /// Removes every field named `name` and returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.spans.len();
        let text = &self.text;
        self.spans
            .retain(|span| &text[span.start..span.value] != name);
        if let Some(fields) = self.fields.get_mut() {
            fields.retain(|f| f.name != name);
        }
        before - self.spans.len()
    }

    /// Appends a field at the end of the body.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let field = Field {
            name: name.into(),
            value: value.into(),
        };
        self.push_span(&field.name, &field.value);
        if let Some(fields) = self.fields.get_mut() {
            fields.push(field);
        }
    }

    fn push_span(&mut self, name: &str, value: &str) {
        let start = self.text.len();
        self.text.push_str(name);
        let value_start = self.text.len();
        self.text.push_str(value);
        self.spans.push(Span {
            start,
            value: value_start,
            end: self.text.len(),
        });
    }
}

/// A set of name hashes for [`FormBody::write_grouped`]'s fast path: an
/// open-addressing table of 64-bit hashes, much cheaper than a `HashSet` of
/// names with SipHash, which cost more than the rest of the verification.
///
/// `insert` answers `false` when the hash was already there: a repeated
/// name, or (rarely) two names with equal hashes; either way the caller
/// takes the exact path, so collisions cost time, never correctness. Names
/// are attacker-chosen: the hash is seeded per process, and
/// `FormLimits::max_fields` bounds the length of any probe sequence.
struct NameTable {
    slots: Vec<u64>,
    mask: usize,
    seed: u64,
}

impl NameTable {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;

    /// A table for up to `names` names, at most one quarter full.
    fn new(names: usize) -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        let seed = *SEED.get_or_init(|| std::hash::RandomState::new().hash_one(0x1b_u64));
        let size = (names * 4).next_power_of_two().max(16);
        Self {
            slots: vec![0; size],
            mask: size - 1,
            seed,
        }
    }

    fn hash(&self, name: &[u8]) -> u64 {
        let mut h = self.seed ^ (name.len() as u64).wrapping_mul(Self::K);
        let mut words = name.chunks_exact(8);
        for word in &mut words {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(word);
            h = (h ^ u64::from_le_bytes(bytes))
                .wrapping_mul(Self::K)
                .rotate_left(29);
        }
        let mut bytes = [0; 8];
        bytes[..words.remainder().len()].copy_from_slice(words.remainder());
        h = (h ^ u64::from_le_bytes(bytes)).wrapping_mul(Self::K);
        h ^= h >> 32;
        h = h.wrapping_mul(Self::K);
        // 0 marks an empty slot.
        (h ^ (h >> 29)) | 1
    }

    /// Adds the hash of `name`; `false` when it was already present.
    fn insert(&mut self, name: &[u8]) -> bool {
        let hash = self.hash(name);
        // The high bits are the best mixed; usize is at least 32 bits wide
        // on every supported target.
        let mut at = (hash >> 32) as usize & self.mask;
        loop {
            match self.slots[at] {
                0 => {
                    self.slots[at] = hash;
                    return true;
                }
                slot if slot == hash => return false,
                _ => at = (at + 1) & self.mask,
            }
        }
    }
}

/// Which part of a `name=value` segment is being decoded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Component {
    /// Ends at the first `=` or `&`.
    Name,
    /// Ends at the first `&`; `=` is an ordinary character.
    Value,
}

/// The bytes that end a plain run while decoding: separators, escapes, and
/// non-ASCII bytes (which call for a UTF-8 check).
const SPECIAL: [bool; 256] = {
    let mut table = [false; 256];
    table[b'&' as usize] = true;
    table[b'=' as usize] = true;
    table[b'+' as usize] = true;
    table[b'%' as usize] = true;
    let mut byte = 0x80;
    while byte < 256 {
        table[byte] = true;
        byte += 1;
    }
    table
};

/// What [`decode_component`] found.
struct Decoded {
    /// How many bytes of the raw input were consumed.
    consumed: usize,
    /// The separator that stopped decoding (`=` or `&`, not consumed),
    /// `None` at the end of the input.
    stop: Option<u8>,
    /// Whether the decoded bytes are all ASCII (and so UTF-8).
    ascii: bool,
}

impl Decoded {
    /// Whether `decoded`, the bytes this decoding produced, are UTF-8.
    fn is_utf8(&self, decoded: &[u8]) -> bool {
        self.ascii || std::str::from_utf8(decoded).is_ok()
    }
}

/// Decodes the name or value at the start of `raw` and appends it to `out`:
/// `+` is a space, `%XX` a byte; a `%` not followed by two hex digits stays
/// as it is (PHP's `urldecode` does the same).
fn decode_component(raw: &[u8], component: Component, out: &mut Vec<u8>) -> Decoded {
    let mut ascii = true;
    let mut i = 0;
    loop {
        // Copy the run of bytes that need no decoding in one go.
        let run = i;
        i = next_special(raw, i);
        out.extend_from_slice(&raw[run..i]);
        let byte = match raw.get(i) {
            None => {
                return Decoded {
                    consumed: i,
                    stop: None,
                    ascii,
                };
            }
            Some(&byte) => byte,
        };
        match byte {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                raw.get(i + 1).and_then(|&h| hex_value(h)),
                raw.get(i + 2).and_then(|&l| hex_value(l)),
            ) {
                (Some(h), Some(l)) => {
                    let decoded = (h << 4) | l;
                    ascii &= decoded.is_ascii();
                    out.push(decoded);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'&' | b'=' if byte == b'&' || component == Component::Name => {
                return Decoded {
                    consumed: i,
                    stop: Some(byte),
                    ascii,
                };
            }
            // `=` in a value, or a non-ASCII byte.
            _ => {
                ascii &= byte.is_ascii();
                out.push(byte);
                i += 1;
            }
        }
    }
}

/// The index of the first byte of `raw[from..]` that [`SPECIAL`] marks, or
/// `raw.len()`: eight bytes at a time, then one by one.
fn next_special(raw: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    /// High bit set in the lowest byte of `word` equal to `byte` (bytes
    /// above a match may be flagged falsely; the lowest flag is exact).
    fn find(word: u64, byte: u8) -> u64 {
        let x = word ^ (ONES * u64::from(byte));
        x.wrapping_sub(ONES) & !x & HIGH
    }
    let mut i = from;
    while let Some(chunk) = raw.get(i..i + 8) {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(chunk);
        let word = u64::from_le_bytes(bytes);
        let flags = find(word, b'&') | find(word, b'=') | find(word, b'+') | find(word, b'%')
            // Non-ASCII bytes.
            | (word & HIGH);
        if flags != 0 {
            return i + (flags.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < raw.len() && !SPECIAL[usize::from(raw[i])] {
        i += 1;
    }
    i
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes one name or value the way browsers encode forms
/// (space as `+`, unreserved characters as they are).
fn encode_component(text: &str, out: &mut String) {
    for &byte in text.as_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[usize::from(byte >> 4)] as char);
                out.push(HEX[usize::from(byte & 0x0f)] as char);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<FormBody, FormError> {
        FormBody::parse(body.as_bytes(), &FormLimits::default())
    }

    #[test]
    fn keeps_wire_order_arrays_and_empty_values() {
        let form = parse("B=2&A=&IPN_PID%5B%5D=1&X=0&IPN_PID[]=2").unwrap();
        let names: Vec<_> = form.fields().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["B", "A", "IPN_PID[]", "X", "IPN_PID[]"]);
        assert_eq!(form.get("A"), Some(""));
        assert_eq!(form.values("IPN_PID[]").collect::<Vec<_>>(), ["1", "2"]);
    }

    #[test]
    fn decodes_plus_and_percent_once() {
        let form = parse("N=Caf%C3%A9+au+lait%2B1&P=100%25&Q=%zz").unwrap();
        assert_eq!(form.get("N"), Some("Café au lait+1"));
        assert_eq!(form.get("P"), Some("100%"));
        assert_eq!(form.get("Q"), Some("%zz"));
    }

    #[test]
    fn segment_without_equals_is_empty_value_and_empty_segments_skipped() {
        let form = parse("A&&B=1&").unwrap();
        assert_eq!(form.fields().len(), 2);
        assert_eq!(form.get("A"), Some(""));
    }

    #[test]
    fn invalid_utf8_value_names_the_field_not_the_value() {
        let err = parse("REFNO=1&FIRSTNAME=J%FCrgen").unwrap_err();
        assert_eq!(
            err,
            FormError::ValueNotUtf8 {
                name: "FIRSTNAME".into(),
                position: 2
            }
        );
        assert!(!err.to_string().contains("rgen"));
    }

    #[test]
    fn limits_are_enforced() {
        let limits = FormLimits {
            max_body_bytes: 10,
            max_fields: 2,
        };
        assert_eq!(
            FormBody::parse(b"A=12345678901", &limits),
            Err(FormError::TooLarge {
                size: 13,
                limit: 10
            })
        );
        assert_eq!(
            FormBody::parse(b"A&B&C", &limits),
            Err(FormError::TooManyFields { limit: 2 })
        );
        assert_eq!(FormBody::parse(b"", &limits), Err(FormError::Empty));
        assert_eq!(FormBody::parse(b"&&", &limits), Err(FormError::Empty));
        assert_eq!(
            FormBody::parse(b"=1", &limits),
            Err(FormError::EmptyName { position: 1 })
        );
    }

    #[test]
    fn grouping_follows_php_and_rejects_repeated_scalars() {
        let form = parse("A[]=1&B=x&A[]=2").unwrap();
        let groups = form.grouped().unwrap();
        assert_eq!(groups, vec![("A[]", vec!["1", "2"]), ("B", vec!["x"])]);
        let err = parse("B=1&B=2").unwrap().grouped().unwrap_err();
        assert_eq!(err, FormError::RepeatedScalar { name: "B".into() });
    }

    #[test]
    fn fields_stay_in_step_with_push_and_remove() {
        let mut form = parse("A=1&B=2").unwrap();
        assert_eq!(form.fields().len(), 2);
        form.push("C", "3");
        assert_eq!(form.remove("A"), 1);
        let names: Vec<_> = form.fields().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["B", "C"]);
        assert_eq!(form.pairs().collect::<Vec<_>>(), [("B", "2"), ("C", "3")]);
        assert_eq!(form, parse("B=2&C=3").unwrap());
        let built = FormBody::from_fields(form.fields().to_vec());
        assert_eq!(built, form);
        assert_eq!(built.get("C"), Some("3"));
    }

    #[test]
    fn long_runs_and_every_special_byte_decode() {
        // Exercises the eight-bytes-at-a-time scan on both sides of each
        // special byte.
        let form =
            parse("LONG_NAME_1234567=abcdefghij%41klmnop+qrstuvwxyz=0123456789%C3%A9").unwrap();
        assert_eq!(
            form.get("LONG_NAME_1234567"),
            Some("abcdefghijAklmnop qrstuvwxyz=0123456789é")
        );
        // Unescaped UTF-8 on the wire is accepted as it is.
        let form = parse("N=abcdefgh\u{e9}ijklmnop&M=1").unwrap();
        assert_eq!(form.get("N"), Some("abcdefghéijklmnop"));
        assert_eq!(form.get("M"), Some("1"));
    }

    #[test]
    fn many_distinct_names_take_the_fast_path_and_match_grouped() {
        let body: Vec<String> = (0..500).map(|i| format!("F{i}={i}")).collect();
        let form = parse(&body.join("&")).unwrap();
        let mut fast = Vec::new();
        form.write_grouped(&mut fast, |out, _, value| out.extend_from_slice(value))
            .unwrap();
        let mut exact = Vec::new();
        for (_, values) in form.grouped().unwrap() {
            for value in values {
                exact.extend_from_slice(value.as_bytes());
            }
        }
        assert_eq!(fast, exact);
    }

    #[test]
    fn encode_round_trips() {
        let form = parse("N=Caf%C3%A9+%26+co&E=&A%5B%5D=1").unwrap();
        assert_eq!(parse(&form.encode()).unwrap(), form);
    }

    #[test]
    fn names_in_errors_are_printable_and_never_hold_a_card_number() {
        assert_eq!(printable_name("IPN_PID[]"), "IPN_PID[]");
        assert_eq!(
            printable_name("IPN_PRODUCT_OPTIONS_4711_TEXT[]"),
            "IPN_PRODUCT_OPTIONS_4711_TEXT[]"
        );
        assert_eq!(printable_name("4111111111111111"), "#");
        assert_eq!(printable_name("a b\n<script>"), "a?b??script?");
        assert_eq!(printable_name(&"N".repeat(500)).len(), 64);
        let err = parse("4111111111111111=1&4111111111111111=2")
            .unwrap()
            .grouped()
            .unwrap_err();
        assert!(!err.to_string().contains("4111"), "{err}");
    }

    #[test]
    fn debug_never_shows_values() {
        let form = parse("CUSTOMEREMAIL=jane%40example.com").unwrap();
        let shown = format!("{form:?}");
        assert!(shown.contains("CUSTOMEREMAIL"));
        assert!(!shown.contains("jane"));
    }
}
