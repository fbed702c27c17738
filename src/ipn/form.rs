//! Parsing of the processor's `application/x-www-form-urlencoded` body.
//!
//! The signature covers every value *in wire order*, so the parser keeps the
//! body as an ordered list of `(name, value)` pairs instead of a map: repeated
//! names, `NAME[]` arrays and the position of every field survive parsing.
//!
//! Values are decoded exactly once (`+` to space, then `%XX` to a byte) and
//! must be valid UTF-8: the signature's length prefixes count UTF-8 bytes, so a
//! value we cannot decode is a value we cannot verify.

use std::fmt;

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
        self.name.ends_with("[]")
    }
}

impl fmt::Debug for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Field")
            .field("name", &self.name)
            .field("value", &format_args!("<{} bytes redacted>", self.value.len()))
            .finish()
    }
}

/// A parsed notification body: every field, in wire order.
///
/// `Debug` shows field names only; values may be personal data.
#[derive(Clone, PartialEq, Eq)]
pub struct FormBody {
    fields: Vec<Field>,
}

impl fmt::Debug for FormBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FormBody")
            .field("fields", &self.fields)
            .finish()
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
        let mut fields = Vec::new();
        for segment in body.split(|&b| b == b'&') {
            if segment.is_empty() {
                continue;
            }
            if fields.len() == limits.max_fields {
                return Err(FormError::TooManyFields {
                    limit: limits.max_fields,
                });
            }
            let position = fields.len() + 1;
            let (raw_name, raw_value) = match segment.iter().position(|&b| b == b'=') {
                Some(eq) => (&segment[..eq], &segment[eq + 1..]),
                None => (segment, &b""[..]),
            };
            let name = String::from_utf8(decode_component(raw_name))
                .map_err(|_| FormError::NameNotUtf8 { position })?;
            if name.is_empty() {
                return Err(FormError::EmptyName { position });
            }
            let value = match String::from_utf8(decode_component(raw_value)) {
                Ok(value) => value,
                Err(_) => return Err(FormError::ValueNotUtf8 { name, position }),
            };
            fields.push(Field { name, value });
        }
        if fields.is_empty() {
            return Err(FormError::Empty);
        }
        Ok(Self { fields })
    }

    /// Builds a body from already decoded fields (simulation and tests).
    pub fn from_fields(fields: Vec<Field>) -> Self {
        Self { fields }
    }

    /// Every field in wire order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The value of a scalar field, or the first element of an array when
    /// `name` ends in `[]`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.as_str())
    }

    /// Every value sent under `name`, in wire order (array elements).
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |f| f.name == name)
            .map(|f| f.value.as_str())
    }

    /// The fields grouped as PHP's `$_POST` would hold them: one group per
    /// distinct name at the position of its first occurrence, array elements
    /// in wire order.
    ///
    /// A repeated name that is not an array is rejected: PHP would keep only
    /// the last value, so the processor cannot have signed such a body.
    pub fn grouped(&self) -> Result<Vec<(&str, Vec<&str>)>, FormError> {
        let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
        for field in &self.fields {
            match groups.iter_mut().find(|(name, _)| *name == field.name) {
                Some((_, values)) if field.is_array_element() => values.push(&field.value),
                Some(_) => {
                    return Err(FormError::RepeatedScalar {
                        name: field.name.clone(),
                    });
                }
                None => groups.push((&field.name, vec![&field.value])),
            }
        }
        Ok(groups)
    }

    /// Encodes the body back to `application/x-www-form-urlencoded`.
    ///
    /// Decoding the result gives the same fields in the same order, which is
    /// all the signature depends on.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (i, field) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            encode_component(&field.name, &mut out);
            out.push('=');
            encode_component(&field.value, &mut out);
        }
        out
    }

    /// Removes every field named `name` and returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.fields.len();
        self.fields.retain(|f| f.name != name);
        before - self.fields.len()
    }

    /// Appends a field at the end of the body.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.fields.push(Field {
            name: name.into(),
            value: value.into(),
        });
    }
}

/// Decodes one name or value: `+` is a space, `%XX` a byte; a `%` not
/// followed by two hex digits stays as it is (PHP's `urldecode` does the same).
fn decode_component(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                match (
                    raw.get(i + 1).and_then(|&h| hex_value(h)),
                    raw.get(i + 2).and_then(|&l| hex_value(l)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
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
            Err(FormError::TooLarge { size: 13, limit: 10 })
        );
        assert_eq!(
            FormBody::parse(b"A=1&B=2&C=3", &limits),
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
