//! Parsing of the processor's `application/x-www-form-urlencoded` body.
//!
//! The signature covers every value *in wire order*, so the parser keeps the
//! body as an ordered list of `(name, value)` pairs instead of a map: repeated
//! names, `NAME[]` arrays and the position of every field survive parsing.
//!
//! Values are decoded exactly once (`+` to space, then `%XX` to a byte) and
//! must be valid UTF-8: the signature's length prefixes count UTF-8 bytes, so a
//! value we cannot decode is a value we cannot verify.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
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
                        name: String::from_utf8_lossy(&text[start..value]).into_owned(),
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
                        name: name.to_owned(),
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

    /// Calls `each(name, value)` for every value in the order of
    /// [`FormBody::grouped`], without building the groups when every array's
    /// elements are contiguous on the wire (the usual case).
    pub(crate) fn for_each_grouped(
        &self,
        mut each: impl FnMut(&str, &str),
    ) -> Result<(), FormError> {
        if self.arrays_are_contiguous()? {
            for (name, value) in self.pairs() {
                each(name, value);
            }
        } else {
            for (name, values) in self.grouped()? {
                for value in values {
                    each(name, value);
                }
            }
        }
        Ok(())
    }

    /// Whether grouping keeps wire order: `Ok(false)` when some array's
    /// elements are split by other fields, an error for a repeated scalar
    /// (the one `grouped` reports).
    fn arrays_are_contiguous(&self) -> Result<bool, FormError> {
        let mut seen: HashSet<&str, NameHasher> =
            HashSet::with_capacity_and_hasher(self.spans.len(), NameHasher::new());
        let mut previous = None;
        for (name, _) in self.pairs() {
            let repeated = if previous == Some(name) {
                true
            } else if seen.insert(name) {
                false
            } else if is_array_name(name) {
                // Not contiguous: `grouped` decides, errors included.
                return Ok(false);
            } else {
                true
            };
            if repeated && !is_array_name(name) {
                return Err(FormError::RepeatedScalar {
                    name: name.to_owned(),
                });
            }
            previous = Some(name);
        }
        Ok(true)
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

/// A fast, per-process seeded hasher for field names: hashing every name
/// with SipHash cost more than the rest of the verification. Names are
/// attacker-chosen, so the seed is random and `FormLimits::max_fields` bounds
/// the damage of any collision.
#[derive(Clone, Copy)]
struct NameHasher {
    state: u64,
}

impl NameHasher {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;

    fn new() -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        let seed = *SEED.get_or_init(|| std::hash::RandomState::new().hash_one(0x1b_u64));
        Self { state: seed }
    }

    fn add(&mut self, word: u64) {
        self.state = (self.state.rotate_left(23) ^ word).wrapping_mul(Self::K);
    }
}

impl BuildHasher for NameHasher {
    type Hasher = Self;

    fn build_hasher(&self) -> Self {
        *self
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let tail = chunks.remainder();
        let mut word = [0; 8];
        word[..tail.len()].copy_from_slice(tail);
        self.add(u64::from_le_bytes(word) ^ ((tail.len() as u64) << 59));
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        let h = self.state ^ (self.state >> 31);
        let h = h.wrapping_mul(Self::K);
        h ^ (h >> 29)
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
        while i < raw.len() && !SPECIAL[usize::from(raw[i])] {
            i += 1;
        }
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
    fn encode_round_trips() {
        let form = parse("N=Caf%C3%A9+%26+co&E=&A%5B%5D=1").unwrap();
        assert_eq!(parse(&form.encode()).unwrap(), form);
    }

    #[test]
    fn debug_never_shows_values() {
        let form = parse("CUSTOMEREMAIL=jane%40example.com").unwrap();
        let shown = format!("{form:?}");
        assert!(shown.contains("CUSTOMEREMAIL"));
        assert!(!shown.contains("jane"));
    }
}
