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

/// Why a body that parses as a form is still not a notification form.
///
/// [`FormBody::parse`] reads bodies as PHP does, so `hello world` is a form
/// with one field named `hello world`; the processor never sends such a
/// thing. Messages name positions, never names or values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotANotification {
    #[error(
        "field #{position} has no `=` (a body is NAME=VALUE&NAME=VALUE..., as the processor posts it)"
    )]
    NoEquals { position: usize },
    #[error(
        "no IPN_DATE field (the processor sends one in every notification, and its receipt is built from it)"
    )]
    NoIpnDate,
    #[error(
        "no LICENSE_CODE field (the processor sends one in every licence change notification, and its receipt is built from it)"
    )]
    NoLicenceCode,
}

/// Whether `raw`, which parsed as `form`, is a notification form: every
/// field written `NAME=VALUE` (empty segments, such as a trailing `&`,
/// aside) and an `IPN_DATE` field, which the processor sends in every
/// notification and the read receipt echoes.
///
/// `ipn sign` refuses to sign anything else and the intake refuses it as
/// malformed before checking any signature, so that a stray text is told
/// apart from a forged notification.
pub fn check_notification_form(raw: &[u8], form: &FormBody) -> Result<(), NotANotification> {
    check_name_value_pairs(raw)?;
    if form.get("IPN_DATE").is_none() {
        return Err(NotANotification::NoIpnDate);
    }
    Ok(())
}

/// Whether `raw`, which parsed as `form`, is a licence change notification
/// form (LCN, docs/protocol.md §12): every field written `NAME=VALUE` and a
/// `LICENSE_CODE` field, which names the subscription and which the LCN's
/// read receipt echoes. The intake's LCN path refuses anything else before
/// checking a signature, as its IPN path refuses a body without `IPN_DATE`
/// ([`check_notification_form`]).
pub fn check_licence_form(raw: &[u8], form: &FormBody) -> Result<(), NotANotification> {
    check_name_value_pairs(raw)?;
    if form.get(crate::notice::LICENCE_CODE).is_none() {
        return Err(NotANotification::NoLicenceCode);
    }
    Ok(())
}

/// Whether `raw` is a form of either kind of notice the processor posts,
/// and which one: a licence change notification when it has
/// `LICENSE_CODE` ([`crate::NoticeKind::of`]), else a payment notification,
/// which must have `IPN_DATE`. What `ipn sign` accepts.
pub fn check_notice_form(
    raw: &[u8],
    form: &FormBody,
) -> Result<crate::NoticeKind, NotANotification> {
    match crate::NoticeKind::of(form) {
        crate::NoticeKind::Lcn => check_licence_form(raw, form).map(|()| crate::NoticeKind::Lcn),
        crate::NoticeKind::Ipn => {
            check_notification_form(raw, form).map(|()| crate::NoticeKind::Ipn)
        }
    }
}

/// Every non-empty segment of `raw` is written `NAME=VALUE`.
fn check_name_value_pairs(raw: &[u8]) -> Result<(), NotANotification> {
    // Positions count the non-empty segments, as `FormBody::parse` does.
    let without_equals = raw
        .split(|b| *b == b'&')
        .filter(|segment| !segment.is_empty())
        .position(|segment| !segment.contains(&b'='));
    match without_equals {
        Some(index) => Err(NotANotification::NoEquals {
            position: index + 1,
        }),
        None => Ok(()),
    }
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

/// What is shown instead of a field name that holds a long number (see
/// [`name_must_be_masked`]).
pub const REDACTED_FIELD_NAME: &str = "<field name with 13+ digits>";

/// The fewest digits that get a field name masked whole: the length of
/// the shortest card number.
pub const MASKED_NAME_MIN_DIGITS: usize = 13;

/// Whether a field name must never be shown: it holds 13 or more decimal
/// digits, in any script and any grouping (`4111 1111.1111/1111`,
/// `NOTE_４１１１-１１１１-１１１１-１１１１`, digits spread among letters).
///
/// Names come from the sender and the signature does not cover them, so a
/// card number can be sent as a *name*; counting every digit, rather than
/// looking for a Luhn-valid run, leaves no way of writing one that slips
/// through. No field the processor sends comes near 13 digits.
pub fn name_must_be_masked(name: &str) -> bool {
    // Count up to the threshold only: names can be long.
    name.chars()
        .filter(|&c| super::digits::decimal_value(c).is_some())
        .take(MASKED_NAME_MIN_DIGITS)
        .count()
        >= MASKED_NAME_MIN_DIGITS
}

/// A field name as it may appear in an error, a log line, a header or a
/// database row. Names come from the sender, so a name with 13 or more
/// digits is replaced whole by [`REDACTED_FIELD_NAME`]; any other is cut to
/// 64 characters, anything but `[A-Za-z0-9_.[]-]` becomes `?`, and runs of
/// 10 or more digits become `#`.
pub fn printable_name(name: &str) -> String {
    if name_must_be_masked(name) {
        return REDACTED_FIELD_NAME.to_owned();
    }
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
            .field("name", &printable_name(&self.name))
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
/// `Debug` shows field names only, as [`printable_name`] shows them; values
/// may be personal data.
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
                    .field("name", &printable_name(self.0))
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
        let decoded = decode_body(body);
        // Split the decoded text at the separators, checking each field in
        // wire order; a structural error stops the split, but a UTF-8 error
        // in an earlier field is reported first, as when checking field by
        // field.
        let mut spans =
            Vec::with_capacity((decoded.separators.len() / 2 + 1).min(limits.max_fields));
        let mut structural = None;
        let mut start = 0;
        let mut name_end = None;
        let body_end = (decoded.len << 1) | 1;
        for &separator in decoded.separators.iter().chain([&body_end]) {
            let at = separator >> 1;
            if separator & 1 == 0 {
                name_end = Some(at);
                continue;
            }
            // An `&` or the end of the body: the segment is `text[start..at]`.
            let segment = start;
            start = at;
            let value = match name_end.take() {
                // No `=` and no text: an empty segment, skipped.
                None if at == segment => continue,
                None => at,
                Some(value) => value,
            };
            if spans.len() == limits.max_fields {
                structural = Some(FormError::TooManyFields {
                    limit: limits.max_fields,
                });
                break;
            }
            if value == segment {
                structural = Some(FormError::EmptyName {
                    position: spans.len() + 1,
                });
                break;
            }
            spans.push(Span {
                start: segment,
                value,
                end: at,
            });
        }
        let mut text = decoded.text;
        // Past the last field: slack, or what follows a structural error.
        text.truncate(spans.last().map_or(0, |span| span.end));
        let text = utf8_text(text, &spans, decoded.maybe_non_ascii)?;
        if let Some(error) = structural {
            return Err(error);
        }
        if spans.is_empty() {
            return Err(FormError::Empty);
        }
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
    /// hashes while writing. Only the first name of a run is looked up.
    /// Anything else (an equal hash, a split array, a repeated scalar)
    /// rolls `out` back and takes `grouped`'s exact path, so `each` may see
    /// a field twice: once before the rollback, once after.
    pub(crate) fn write_grouped<'a>(
        &'a self,
        out: &mut Vec<u8>,
        mut each: impl FnMut(&mut Vec<u8>, &'a [u8], &'a [u8]),
    ) -> Result<(), FormError> {
        let rollback = out.len();
        let text = self.text.as_bytes();
        let mut seen = NameTable::new(self.spans.len());
        let mut previous: &[u8] = &[];
        let mut fast = true;
        for span in &self.spans {
            let name = &text[span.start..span.value];
            let value = &text[span.value..span.end];
            // Cheapest test first: most names are scalars.
            let continues_array = name.ends_with(b"[]") && same_bytes(name, previous);
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

/// The 8 bytes of `bytes` as a little-endian word.
fn word(bytes: &[u8]) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

/// The 4 bytes of `bytes` as a little-endian word.
fn half(bytes: &[u8]) -> u64 {
    let mut half = [0; 4];
    half.copy_from_slice(bytes);
    u64::from(u32::from_le_bytes(half))
}

/// `a == b` for short byte strings such as field names, a word at a time
/// and without a call to `memcmp`, which costs more than the comparison.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let len = a.len();
    if len != b.len() {
        return false;
    }
    if len < 8 {
        return a == b;
    }
    let words_equal = a
        .chunks_exact(8)
        .zip(b.chunks_exact(8))
        .all(|(a, b)| word(a) == word(b));
    words_equal && word(&a[len - 8..]) == word(&b[len - 8..])
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

    /// A table for up to `names` names, at most half full.
    fn new(names: usize) -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        let seed = *SEED.get_or_init(|| std::hash::RandomState::new().hash_one(0x1b_u64));
        let size = (names * 2).next_power_of_two().max(16);
        Self {
            slots: vec![0; size],
            mask: size - 1,
            seed,
        }
    }

    /// The high and low halves of the 128-bit product, xored: one
    /// multiplication mixes every bit of both inputs.
    fn fold(x: u64, y: u64) -> u64 {
        let product = u128::from(x) * u128::from(y);
        (product as u64) ^ ((product >> 64) as u64)
    }

    /// A seeded hash of `name`. Every byte counts, with no copy into a
    /// padded buffer: the first and last 8 bytes (overlapping in names
    /// under 16 bytes; two overlapping halves, or three bytes, under 8) go
    /// through one multiplication, the words in between, if any, through a
    /// chain of them. Most names take a single multiplication.
    fn hash(&self, name: &[u8]) -> u64 {
        let len = name.len();
        let (first, last) = if len >= 8 {
            (word(&name[..8]), word(&name[len - 8..]))
        } else if len >= 4 {
            (half(&name[..4]), half(&name[len - 4..]))
        } else if len > 0 {
            let bytes = u64::from(name[0]) | (u64::from(name[len / 2]) << 8);
            (bytes, u64::from(name[len - 1]))
        } else {
            (0, 0)
        };
        let mut h = Self::fold(
            first ^ self.seed,
            last ^ Self::K ^ (len as u64).rotate_left(32),
        );
        if len > 16 {
            let mut middle = self.seed;
            // Whole words, the last one overlapping `last` if need be.
            for at in (8..len - 8).step_by(8) {
                middle = Self::fold(middle ^ word(&name[at..at + 8]), Self::K);
            }
            h ^= middle;
        }
        // 0 marks an empty slot.
        h | 1
    }

    /// Adds the hash of `name`; `false` when it was already present.
    #[inline]
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

/// `text`, the fields of `spans` back to back, as a `String`; or the error
/// for the first name or value (in wire order) that is not UTF-8.
///
/// One check over the whole text is much cheaper than one per field; it
/// accepts exactly the same bodies, given that every field boundary falls
/// between two characters (a valid text cut there gives valid fields, and
/// valid fields concatenate to a valid text). Only a body that fails is
/// checked field by field, to name the field.
fn utf8_text(text: Vec<u8>, spans: &[Span], maybe_non_ascii: bool) -> Result<String, FormError> {
    let text = match String::from_utf8(text) {
        Ok(text)
            if !maybe_non_ascii
                || spans.iter().all(|span| {
                    text.is_char_boundary(span.start)
                        && text.is_char_boundary(span.value)
                        && text.is_char_boundary(span.end)
                }) =>
        {
            return Ok(text);
        }
        Ok(text) => text.into_bytes(),
        Err(error) => error.into_bytes(),
    };
    for (index, span) in spans.iter().enumerate() {
        let position = index + 1;
        let name = &text[span.start..span.value];
        if std::str::from_utf8(name).is_err() {
            return Err(FormError::NameNotUtf8 { position });
        }
        if std::str::from_utf8(&text[span.value..span.end]).is_err() {
            return Err(FormError::ValueNotUtf8 {
                name: printable_name(&String::from_utf8_lossy(name)),
                position,
            });
        }
    }
    // Every name and value is UTF-8, and UTF-8 strings concatenate to
    // UTF-8: this is not reached.
    Ok(String::from_utf8(text).expect("every decoded field is UTF-8"))
}

/// What [`decode_body`] produces: the decoded text and where the raw
/// separators fell in it.
struct DecodedBody {
    /// Every decoded name and value, back to back, with the separators
    /// left out; past `len`, only slack.
    text: Vec<u8>,
    /// The length of the decoded text.
    len: usize,
    /// One entry per separator, in wire order: `(position in text << 1) |
    /// 1` for `&`, `position << 1` for the `=` that ends a name.
    separators: Vec<usize>,
    /// `false` when every byte read or decoded is ASCII (and so UTF-8);
    /// `true` only calls for a UTF-8 check.
    maybe_non_ascii: bool,
}

/// The decoder reads the body in blocks of 64 bytes, 8 bytes at a time.
const BLOCK: usize = 64;
const WORD: usize = 8;
/// `0x01` in every byte of a word.
const ONES: u64 = 0x0101_0101_0101_0101;
/// The high bit of every byte of a word.
const HIGH: u64 = 0x8080_8080_8080_8080;
/// How many bytes [`copy_run`] copies at once: most runs between two
/// special bytes are shorter.
const RUN: usize = 16;

/// The high bit of every byte of `word` that may need more than a copy:
/// `%`, `&`, `=` and `+` are always flagged; a few other bytes (`$` and
/// `'`, and some bytes right after a flagged one) may be flagged too, and
/// are then decoded as the ordinary bytes they are.
fn candidates(word: u64) -> u64 {
    /// High bit of the bytes of `x` that are zero (and maybe of some
    /// bytes above them: the borrow of the subtraction).
    fn zero_bytes(x: u64) -> u64 {
        x.wrapping_sub(ONES) & !x
    }
    // `%` (0x25) and `&` (0x26) with their low two bits set are 0x27.
    let percent_or_ampersand = zero_bytes((word | (ONES * 0x03)) ^ (ONES * 0x27));
    let equals = zero_bytes(word ^ (ONES * u64::from(b'=')));
    let plus = zero_bytes(word ^ (ONES * u64::from(b'+')));
    (percent_or_ampersand | equals | plus) & HIGH
}

/// One bit per byte of the block of `raw` that starts at `at`: bit `k` is
/// set when byte `at + k` is a [`candidates`] byte. Also ors every byte
/// into `high`.
fn candidate_bits(raw: &[u8], at: usize, high: &mut u64) -> u64 {
    let padded;
    let block = match raw.get(at..at + BLOCK) {
        Some(block) => block,
        None => {
            // The last block: zeros are never special.
            let tail = raw.get(at..).unwrap_or_default();
            let mut bytes = [0; BLOCK];
            bytes[..tail.len()].copy_from_slice(tail);
            padded = bytes;
            &padded
        }
    };
    let mut bits = 0;
    for (k, word) in block.chunks_exact(WORD).enumerate() {
        let mut bytes = [0; WORD];
        bytes.copy_from_slice(word);
        let word = u64::from_le_bytes(bytes);
        *high |= word;
        // Gathers the eight high bits into the top byte, byte 0 lowest.
        let byte_bits = ((candidates(word) >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56;
        bits |= byte_bits << (k * WORD);
    }
    bits
}

/// Copies `raw[from..to]` to `out[at..]`. The usual short run is copied as
/// one fixed-size block of [`RUN`] bytes, which needs no call to `memcpy`:
/// bytes stored past the run are overwritten later or cut at the end, and
/// `out` has `RUN` bytes of slack for them.
fn copy_run(raw: &[u8], from: usize, to: usize, out: &mut [u8], at: usize) {
    if let (Some(src), Some(dst)) = (raw.get(from..from + RUN), out.get_mut(at..at + RUN)) {
        dst.copy_from_slice(src);
        if to - from <= RUN {
            return;
        }
    }
    out[at..at + (to - from)].copy_from_slice(&raw[from..to]);
}

/// The value of every hex digit; 0xFF for any other byte.
static HEX_VALUE: [u8; 256] = {
    let mut table = [0xFF; 256];
    let mut digit = 0;
    while digit < 16 {
        table[b"0123456789abcdef"[digit] as usize] = digit as u8;
        table[b"0123456789ABCDEF"[digit] as usize] = digit as u8;
        digit += 1;
    }
    table
};

/// Decodes a whole body: `+` is a space, `%XX` a byte; a `%` not followed
/// by two hex digits stays as it is (PHP's `urldecode` does the same).
/// Names end at the first `=` or `&`, values at the first `&`.
///
/// This is most of the cost of verifying a notification, and a notification
/// is dense with special bytes (one in seven: separators, `%5B%5D` of array
/// names, escaped punctuation and UTF-8), so instead of scanning each
/// component for its end and each run for its next special byte (a
/// mispredicted branch or two each time), it first marks the special bytes
/// of a 64-byte block in one word, branch-free, then visits only those,
/// copying the runs between them in fixed-size blocks.
fn decode_body(raw: &[u8]) -> DecodedBody {
    let mut text = vec![0; raw.len() + RUN];
    let mut separators = Vec::with_capacity(raw.len() / 8);
    let mut high = 0;
    // Next raw byte to decode; its position in `text`.
    let mut next = 0;
    let mut end = 0;
    let mut in_name = true;
    for block in (0..raw.len()).step_by(BLOCK) {
        let mut bits = candidate_bits(raw, block, &mut high);
        while bits != 0 {
            let at = block + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if at < next {
                // Part of an escape already decoded.
                continue;
            }
            copy_run(raw, next, at, &mut text, end);
            end += at - next;
            next = at + 1;
            match raw[at] {
                b'%' => {
                    let high_digit = HEX_VALUE[usize::from(raw.get(at + 1).map_or(0, |&b| b))];
                    let low_digit = HEX_VALUE[usize::from(raw.get(at + 2).map_or(0, |&b| b))];
                    if (high_digit | low_digit) < 16 {
                        let byte = (high_digit << 4) | low_digit;
                        high |= u64::from(byte);
                        text[end] = byte;
                        next = at + 3;
                    } else {
                        text[end] = b'%';
                    }
                    end += 1;
                }
                b'+' => {
                    text[end] = b' ';
                    end += 1;
                }
                b'&' => {
                    separators.push((end << 1) | 1);
                    in_name = true;
                }
                b'=' if in_name => {
                    separators.push(end << 1);
                    in_name = false;
                }
                byte => {
                    text[end] = byte;
                    end += 1;
                }
            }
        }
    }
    if next < raw.len() {
        copy_run(raw, next, raw.len(), &mut text, end);
        end += raw.len() - next;
    }
    DecodedBody {
        text,
        len: end,
        separators,
        maybe_non_ascii: high & HIGH != 0,
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

    /// The obvious byte-at-a-time decoder, as a reference for the
    /// block-at-a-time one.
    fn reference_parse(body: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        fn decode(raw: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            let mut i = 0;
            while i < raw.len() {
                let digit = |at: usize| raw.get(at).and_then(|&d| (d as char).to_digit(16));
                match (raw[i], digit(i + 1), digit(i + 2)) {
                    (b'%', Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    (b'+', _, _) => {
                        out.push(b' ');
                        i += 1;
                    }
                    (byte, _, _) => {
                        out.push(byte);
                        i += 1;
                    }
                }
            }
            out
        }
        body.split(|&b| b == b'&')
            .filter(|segment| !segment.is_empty())
            .map(|segment| match segment.iter().position(|&b| b == b'=') {
                Some(eq) => (decode(&segment[..eq]), decode(&segment[eq + 1..])),
                None => (decode(segment), Vec::new()),
            })
            .collect()
    }

    #[test]
    fn block_decoder_matches_the_reference_on_awkward_bodies() {
        let long = "x".repeat(70);
        let bodies = [
            // Bytes the special-byte scan may flag falsely: `$`, `'`, `<`
            // after `=`, `*` after `+`, `,` and `-` after `+`.
            "A=$'<&B==<<&C=+*+,+-&D=%24%27".to_owned(),
            // Runs longer than one copy block, escapes across 64-byte
            // blocks, `=` in values, a trailing lone `%`.
            format!("{long}={long}%41%4&N%5B%5D={long}+{long}=%3D%&E"),
            format!("{}&{}%C3%A9=%zz%%41", "y".repeat(61), "z".repeat(62)),
            "&&A&&B=&=&".replace("&=&", "&"),
        ];
        for body in &bodies {
            let form = parse(body).unwrap();
            let pairs: Vec<_> = form
                .pairs()
                .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect();
            assert_eq!(pairs, reference_parse(body.as_bytes()), "{body}");
        }
    }

    #[test]
    fn utf8_is_checked_per_field_even_when_the_whole_text_is_valid() {
        // `%C3` ends the name and `%A9` starts the value: together they
        // are "é", but neither field is UTF-8 on its own.
        assert_eq!(
            parse("A=1&N%C3=%A9"),
            Err(FormError::NameNotUtf8 { position: 2 })
        );
        assert_eq!(
            parse("A%C3%A9=%C3&B=%A9"),
            Err(FormError::ValueNotUtf8 {
                name: "A?".into(),
                position: 1
            })
        );
        // A UTF-8 error in an earlier field is reported before a
        // structural one in a later field, as field-by-field parsing does.
        assert_eq!(
            parse("A=%FF&=1"),
            Err(FormError::ValueNotUtf8 {
                name: "A".into(),
                position: 1
            })
        );
        assert_eq!(parse("A=1&=%FF"), Err(FormError::EmptyName { position: 2 }));
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
        assert_eq!(printable_name("4111111111111111"), REDACTED_FIELD_NAME);
        for name in [
            "NOTE_4111.1111.1111.1111",
            "4111/1111/1111/1111",
            "card 4111 1111 1111 1111",
            "4111-1111-1111-1111[]",
            "\u{FF14}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}\u{FF11}",
            "a1b2c3d4e5f6g7h8i9j0k1l2m3",
        ] {
            assert_eq!(printable_name(name), REDACTED_FIELD_NAME, "{name}");
            assert!(name_must_be_masked(name), "{name}");
        }
        // 12 digits stay visible (a run of 10 or more as `#`).
        assert_eq!(printable_name("IPN_1234_5678_9012"), "IPN_1234_5678_9012");
        assert_eq!(printable_name("X1234567890Y12"), "X#Y12");
        assert_eq!(printable_name("a b\n<script>"), "a?b??script?");
        assert_eq!(printable_name(&"N".repeat(500)).len(), 64);
        for body in [
            "4111111111111111=1&4111111111111111=2",
            "4111.1111.1111.1111=1&4111.1111.1111.1111=2",
            "%EF%BC%94111+1111+1111+1111=%FF",
        ] {
            let err = match parse(body) {
                Ok(form) => form.grouped().unwrap_err(),
                Err(err) => err,
            };
            assert!(err.to_string().contains(REDACTED_FIELD_NAME), "{err}");
            assert!(!err.to_string().contains("1111"), "{err}");
        }
    }

    #[test]
    fn a_notification_form_has_every_field_with_equals_and_an_ipn_date() {
        let check = |body: &str| check_notification_form(body.as_bytes(), &parse(body).unwrap());
        assert_eq!(check("REFNO=1&IPN_DATE=20261102100000"), Ok(()));
        // Empty segments and empty values are fine.
        assert_eq!(check("REFNO=&&IPN_DATE=20261102100000&"), Ok(()));
        assert_eq!(
            check("hello world"),
            Err(NotANotification::NoEquals { position: 1 })
        );
        // An escaped `=` is part of a name, not a separator.
        assert_eq!(
            check("&&IPN_DATE=1&A%3D1"),
            Err(NotANotification::NoEquals { position: 2 })
        );
        let refused = check("REFNO=1&4111111111111111&IPN_DATE=1").unwrap_err();
        assert_eq!(refused, NotANotification::NoEquals { position: 2 });
        assert!(!refused.to_string().contains("4111"), "{refused}");
        assert_eq!(check("REFNO=1"), Err(NotANotification::NoIpnDate));
        // A renamed IPN_DATE is no IPN_DATE.
        assert_eq!(
            check("REFNO=1&IPN_DATE[]=20261102100000"),
            Err(NotANotification::NoIpnDate)
        );
    }

    #[test]
    fn a_licence_form_has_every_field_with_equals_and_a_licence_code() {
        let check = |body: &str| check_licence_form(body.as_bytes(), &parse(body).unwrap());
        assert_eq!(
            check("LICENSE_CODE=3C343D0FAF&EXPIRATION_DATE=2005-03-03"),
            Ok(())
        );
        assert_eq!(check("LICENSE_CODE=&&STATUS=ACTIVE&"), Ok(()));
        assert_eq!(
            check("STATUS=ACTIVE&hello"),
            Err(NotANotification::NoEquals { position: 2 })
        );
        assert_eq!(check("STATUS=ACTIVE"), Err(NotANotification::NoLicenceCode));
        // A renamed LICENSE_CODE is no LICENSE_CODE.
        assert_eq!(
            check("LICENSE_CODE[]=3C343D0FAF"),
            Err(NotANotification::NoLicenceCode)
        );
        // Either kind, told apart by LICENSE_CODE.
        let either = |body: &str| check_notice_form(body.as_bytes(), &parse(body).unwrap());
        assert_eq!(
            either("LICENSE_CODE=3C343D0FAF&STATUS=ACTIVE"),
            Ok(crate::NoticeKind::Lcn)
        );
        assert_eq!(
            either("REFNO=1&IPN_DATE=20261102100000"),
            Ok(crate::NoticeKind::Ipn)
        );
        assert_eq!(either("REFNO=1"), Err(NotANotification::NoIpnDate));
        assert_eq!(
            either("LICENSE_CODE=1&x"),
            Err(NotANotification::NoEquals { position: 2 })
        );
    }

    #[test]
    fn debug_never_shows_values_or_long_numbers_in_names() {
        let form = parse("CUSTOMEREMAIL=jane%40example.com&4111.1111.1111.1111=x").unwrap();
        for shown in [format!("{form:?}"), format!("{:?}", form.fields())] {
            assert!(shown.contains("CUSTOMEREMAIL"), "{shown}");
            assert!(!shown.contains("jane"), "{shown}");
            assert!(!shown.contains("1111"), "{shown}");
        }
    }
}
