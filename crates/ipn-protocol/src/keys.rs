//! Secret keys and the key ring used to verify and sign notifications.
//!
//! Keys are rotated on the processor's side without warning the listener, so
//! the listener keeps a *ring*: the current key first, then older keys still
//! accepted. Each key has an id that is safe to log and store; the secret
//! itself never leaves this module's types in a printable form.
//!
//! # The key file
//!
//! One key per line; the first key is the current one (receipts for
//! notifications not verified at the edge, and `ipn sign`, use it), later
//! lines are older keys still accepted while the processor rotates.
//!
//! | line | meaning |
//! | --- | --- |
//! | blank, or first non-blank character `#` | a comment |
//! | `KEY_ID SECRET` | a key; `SECRET` is one unquoted token, taken literally |
//! | `KEY_ID "SECRET"` | a key whose secret is written in double quotes |
//! | `SECRET` or `"SECRET"` alone | a key with the id `default` (older files) |
//!
//! - `KEY_ID` is 1-64 characters of letters, digits, `.`, `_` and `-`.
//! - An unquoted secret is every character of its token, backslashes and
//!   quotes included; it cannot contain spaces or tabs and cannot start
//!   with `"` (that starts a quoted secret). A line whose first token starts
//!   with `#` is a comment, so a lone secret starting with `#` must be
//!   quoted.
//! - A quoted secret is everything between the double quotes, spaces, tabs
//!   and `#` included; inside it `\"` is a double quote and `\\` a
//!   backslash, and any other backslash is refused (so a secret is never
//!   read two ways).
//! - Spaces and tabs around the tokens are ignored; a UTF-8 byte order mark
//!   at the start of the file is ignored.
//! - Anything else is refused with the line number and how to write it: a
//!   line with more than two tokens (`a b c d`: a secret with spaces must be
//!   quoted; there are no comments at the end of a line, since `#` may be
//!   part of a secret), an unterminated quote, an empty secret, an invalid
//!   id, an id used twice. No error ever quotes a secret.
//!
//! The secret is the HMAC key as its UTF-8 bytes (docs/protocol.md §3.5),
//! so whatever the processor's control panel shows can be written here:
//! [`SigningKey::key_file_line`] writes any secret so that it reads back the
//! same.

use std::fmt;

/// A secret used as the HMAC key, as its literal UTF-8 bytes (docs/protocol.md §3.5).
///
/// `Debug` is redacted; there is deliberately no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(Vec<u8>);

impl SecretKey {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self(secret.into())
    }

    /// The key bytes, for the HMAC only.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        // Best effort: do not leave the key in freed memory.
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// A key's name: safe to log, store and print.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// The id given to a key file line that holds only a secret.
    pub const DEFAULT: &'static str = "default";

    /// Parses an id: 1-64 characters of `[A-Za-z0-9._-]`.
    pub fn parse(id: &str) -> Result<Self, KeyError> {
        let valid = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(Self(id.to_owned()))
        } else {
            Err(KeyError::InvalidId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One key of the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub id: KeyId,
    pub secret: SecretKey,
}

impl SigningKey {
    pub fn new(id: KeyId, secret: SecretKey) -> Self {
        Self { id, secret }
    }

    /// This key as one line of a key file (without the line break), the
    /// secret quoted when it could not be read back otherwise: it reads
    /// back as the same id and the same bytes through [`KeyRing::parse`].
    ///
    /// The line holds the secret, so it is wiped from memory when dropped.
    /// A secret that is not UTF-8 text or holds a line break cannot be
    /// written in a key file and is refused.
    pub fn key_file_line(&self) -> Result<zeroize::Zeroizing<String>, KeyError> {
        let secret =
            std::str::from_utf8(self.secret.expose()).map_err(|_| KeyError::NotWritable)?;
        if secret.contains(['\n', '\r']) {
            return Err(KeyError::NotWritable);
        }
        let mut line = zeroize::Zeroizing::new(String::with_capacity(
            self.id.as_str().len() + secret.len() + 8,
        ));
        line.push_str(self.id.as_str());
        line.push(' ');
        let bare =
            !secret.is_empty() && !secret.starts_with(['"', '#']) && !secret.contains(is_blank);
        if bare {
            line.push_str(secret);
        } else {
            line.push('"');
            for c in secret.chars() {
                if matches!(c, '"' | '\\') {
                    line.push('\\');
                }
                line.push(c);
            }
            line.push('"');
        }
        Ok(line)
    }
}

/// Why a key file or key ring was refused. Never quotes a secret.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path} line {line}: {reason}")]
    Line {
        path: String,
        line: usize,
        reason: &'static str,
    },
    #[error("key id must be 1-64 characters of letters, digits, '.', '_' or '-'")]
    InvalidId,
    #[error("key ring is empty: at least one key is needed")]
    Empty,
    #[error("key id `{0}` appears twice in the key ring")]
    DuplicateId(String),
    #[error(
        "a secret that is not UTF-8 text or holds a line break cannot be written in a key file"
    )]
    NotWritable,
}

/// Spaces and tabs: what separates the tokens of a key file line.
fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// One token of a key file line.
enum Token<'a> {
    /// Written as it is: every character up to the next blank.
    Bare(&'a str),
    /// Written in double quotes, escapes resolved. Wiped when dropped: it
    /// may be the secret.
    Quoted(zeroize::Zeroizing<String>),
}

/// Why a line was refused; shown with the file and the line number. Says
/// how to write the line, never what it holds.
mod reason {
    pub const TOO_MANY_TOKENS: &str = "more than two parts: write `KEY_ID SECRET`, and put a \
        secret that contains spaces in double quotes, as in `KEY_ID \"SECRET WITH SPACES\"` \
        (there are no comments at the end of a line)";
    pub const UNTERMINATED: &str = "the quoted secret has no closing double quote (`\"`)";
    pub const BAD_ESCAPE: &str = "inside double quotes, write a double quote as `\\\"` and a \
        backslash as `\\\\`; no other backslash is allowed";
    pub const TEXT_AFTER_QUOTE: &str = "text follows the closing double quote: the whole \
        secret goes inside the quotes";
    pub const BAD_ID: &str = "the key id is not 1-64 letters, digits, '.', '_' or '-'";
    pub const EMPTY_SECRET: &str = "the secret is empty";
}

/// Splits a key file line (trimmed, not a comment) into at most three
/// tokens: three already means the line is refused.
fn tokens(line: &str) -> Result<Vec<Token<'_>>, &'static str> {
    let mut found = Vec::new();
    let mut rest = line;
    while found.len() < 3 {
        rest = rest.trim_start_matches(is_blank);
        let Some(quoted) = rest.strip_prefix('"') else {
            if rest.is_empty() {
                break;
            }
            let end = rest.find(is_blank).unwrap_or(rest.len());
            found.push(Token::Bare(&rest[..end]));
            rest = &rest[end..];
            continue;
        };
        let mut value = zeroize::Zeroizing::new(String::new());
        let mut chars = quoted.char_indices();
        let after = loop {
            match chars.next() {
                None => return Err(reason::UNTERMINATED),
                Some((at, '"')) => break &quoted[at + 1..],
                Some((_, '\\')) => match chars.next() {
                    Some((_, c @ ('"' | '\\'))) => value.push(c),
                    _ => return Err(reason::BAD_ESCAPE),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if after.starts_with(|c: char| !is_blank(c)) {
            return Err(reason::TEXT_AFTER_QUOTE);
        }
        found.push(Token::Quoted(value));
        rest = after;
    }
    Ok(found)
}

/// One key from one line (trimmed, not a comment).
fn parse_line(line: &str) -> Result<SigningKey, &'static str> {
    let mut tokens = tokens(line)?;
    let (id, secret) = match tokens.len() {
        1 => (KeyId(KeyId::DEFAULT.to_owned()), tokens.remove(0)),
        2 => {
            let secret = tokens.remove(1);
            let id = match tokens.remove(0) {
                Token::Bare(id) => KeyId::parse(id).map_err(|_| reason::BAD_ID)?,
                Token::Quoted(_) => return Err(reason::BAD_ID),
            };
            (id, secret)
        }
        _ => return Err(reason::TOO_MANY_TOKENS),
    };
    let bytes = match &secret {
        Token::Bare(text) => text.as_bytes(),
        Token::Quoted(text) => text.as_bytes(),
    };
    if bytes.is_empty() {
        return Err(reason::EMPTY_SECRET);
    }
    Ok(SigningKey::new(id, SecretKey::new(bytes)))
}

/// The keys a notification may be signed with: current key first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRing {
    keys: Vec<SigningKey>,
}

impl KeyRing {
    /// Builds a ring; the first key is the current one (used for receipts
    /// and signing).
    pub fn new(keys: Vec<SigningKey>) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        for (i, key) in keys.iter().enumerate() {
            if keys[..i].iter().any(|k| k.id == key.id) {
                return Err(KeyError::DuplicateId(key.id.to_string()));
            }
        }
        Ok(Self { keys })
    }

    /// A ring of one key named `default` (tests, the simulator).
    pub fn single(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            keys: vec![SigningKey::new(
                KeyId(KeyId::DEFAULT.to_owned()),
                SecretKey::new(secret),
            )],
        }
    }

    /// Parses the text of the key file at `path` (format in the module
    /// docs), naming the file in errors; the first key is the current one.
    /// Reading the file is the caller's: this crate does no I/O.
    pub fn parse_file(path: &str, text: &str) -> Result<Self, KeyError> {
        Self::parse(text).map_err(|err| match err {
            KeyError::Line { line, reason, .. } => KeyError::Line {
                path: path.to_owned(),
                line,
                reason,
            },
            other => other,
        })
    }

    /// Parses the key file format (see the module docs).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut keys = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim_matches(is_blank);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = parse_line(line).map_err(|reason| KeyError::Line {
                path: String::new(),
                line: index + 1,
                reason,
            })?;
            keys.push(key);
        }
        Self::new(keys)
    }

    /// The current key: receipts are signed with it.
    pub fn current(&self) -> &SigningKey {
        // `new` guarantees at least one key.
        &self.keys[0]
    }

    /// Every key, current first.
    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// The ids of the keys, current first: what may be logged of a ring.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|key| key.id.as_str()).collect()
    }

    /// The key with this id, if the ring holds it.
    pub fn get(&self, id: &KeyId) -> Option<&SigningKey> {
        self.keys.iter().find(|k| &k.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_ids_secrets_comments_and_default() {
        let ring = KeyRing::parse(
            "\u{feff}# test keys\n2026 new-secret\n\n  # indented comment\n\
             old \"s3cr3t with spaces\"\r\nBARE\n",
        )
        .unwrap();
        let ids: Vec<_> = ring.keys().iter().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, ["2026", "old", "default"]);
        assert_eq!(ring.current().secret.expose(), b"new-secret");
        assert_eq!(ring.keys()[1].secret.expose(), b"s3cr3t with spaces");
        assert_eq!(ring.keys()[2].secret.expose(), b"BARE");
    }

    #[test]
    fn secrets_the_control_panel_produces_can_be_written() {
        let ring = KeyRing::parse(concat!(
            "hash \"#starts-with-hash\"\n",
            "inner a#b\"c\\d\n",
            "quoted \"  pad \\\"q\\\" back\\\\slash # tab\tend  \"\n",
            "\t lone-id\t\"x\"  \n",
            "\"only quoted\"\n",
        ))
        .unwrap();
        let secrets: Vec<&[u8]> = ring.keys().iter().map(|k| k.secret.expose()).collect();
        assert_eq!(
            secrets,
            [
                b"#starts-with-hash".as_slice(),
                b"a#b\"c\\d",
                b"  pad \"q\" back\\slash # tab\tend  ",
                b"x",
                b"only quoted",
            ]
        );
        assert_eq!(ring.keys()[4].id.as_str(), KeyId::DEFAULT);
    }

    #[test]
    fn the_documented_example_reads_as_documented() {
        let page = include_str!("../../../docs/configuration.md");
        let after = &page[page.find("\n## Key file\n").unwrap()..];
        let start = after.find("```text\n").unwrap() + "```text\n".len();
        let block = &after[start..start + after[start..].find("```").unwrap()];
        let ring = KeyRing::parse(block).unwrap();
        assert_eq!(ring.ids(), ["live-2026", "old-2025"]);
        assert_eq!(ring.keys()[0].secret.expose(), br#"Zq3v9p#Lr2"Xw7\"#);
        assert_eq!(
            ring.keys()[1].secret.expose(),
            br#"s3cret with #, spaces, "quotes" and a \"#
        );
    }

    #[test]
    fn lines_that_can_be_read_two_ways_are_refused_with_their_number() {
        for (text, line, reason) in [
            ("ok k\na b c d\n", 2, reason::TOO_MANY_TOKENS),
            ("id secret # comment\n", 1, reason::TOO_MANY_TOKENS),
            ("id \"open secret\n", 1, reason::UNTERMINATED),
            ("id \"bad \\n escape\"\n", 1, reason::BAD_ESCAPE),
            ("id \"a\"b\n", 1, reason::TEXT_AFTER_QUOTE),
            ("\"quoted id\" secret\n", 1, reason::BAD_ID),
            ("a/b secret\n", 1, reason::BAD_ID),
            ("\n\nid \"\"\n", 3, reason::EMPTY_SECRET),
        ] {
            match KeyRing::parse(text) {
                Err(KeyError::Line {
                    line: got,
                    reason: why,
                    ..
                }) => {
                    assert_eq!((got, why), (line, reason), "{text:?}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        let err = KeyRing::parse("a b c d\n").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        assert!(err.contains("double quotes"), "{err}");
    }

    #[test]
    fn refuses_empty_rings_bad_ids_and_duplicates() {
        assert!(matches!(
            KeyRing::parse("# nothing\n"),
            Err(KeyError::Empty)
        ));
        assert!(matches!(
            KeyRing::parse("a/b secret\n"),
            Err(KeyError::Line { line: 1, .. })
        ));
        assert!(matches!(
            KeyRing::parse("k one\nk two\n"),
            Err(KeyError::DuplicateId(id)) if id == "k"
        ));
    }

    #[test]
    fn errors_and_debug_never_show_secrets() {
        let ring = KeyRing::parse("live TOPSECRETVALUE\n").unwrap();
        assert!(!format!("{ring:?}").contains("TOPSECRET"));
        for text in [
            "bad/id TOPSECRETVALUE\n",
            "id TOPSECRET VALUE\n",
            "id \"TOPSECRET\\VALUE\"\n",
            "id \"TOPSECRETVALUE\n",
        ] {
            let err = KeyRing::parse(text).unwrap_err();
            assert!(!format!("{err} {err:?}").contains("TOPSECRET"), "{text:?}");
        }
    }

    #[test]
    fn secrets_that_cannot_be_a_line_are_not_written() {
        let id = KeyId::parse("k").unwrap();
        for secret in [&b"a\nb"[..], b"a\rb", b"\xff"] {
            let key = SigningKey::new(id.clone(), SecretKey::new(secret));
            assert!(matches!(key.key_file_line(), Err(KeyError::NotWritable)));
        }
        let key = SigningKey::new(id, SecretKey::new("plain"));
        assert_eq!(key.key_file_line().unwrap().as_str(), "k plain");
    }

    fn key_id() -> impl Strategy<Value = KeyId> {
        "[A-Za-z0-9._-]{1,64}".prop_map(|id| KeyId::parse(&id).unwrap())
    }

    /// Any text the control panel could show: printable characters of any
    /// script, with the ones the format treats specially made frequent.
    fn secret_text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                3 => prop::sample::select(vec![' ', '\t', '#', '"', '\\', '\'', '=']),
                4 => prop::char::range('!', '~'),
                1 => any::<char>().prop_filter("printable", |c| !c.is_control()),
            ],
            1..40,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        #[test]
        fn any_secret_reads_back_as_written(
            keys in prop::collection::vec((key_id(), secret_text()), 1..5),
            comment in "[ -~]{0,20}",
        ) {
            let mut seen = std::collections::HashSet::new();
            let keys: Vec<SigningKey> = keys
                .into_iter()
                .filter(|(id, _)| seen.insert(id.clone()))
                .map(|(id, secret)| SigningKey::new(id, SecretKey::new(secret)))
                .collect();
            let mut file = format!("# {comment}\n\n");
            for key in &keys {
                file.push_str(&key.key_file_line().unwrap());
                file.push('\n');
            }
            let ring = KeyRing::parse(&file).unwrap();
            prop_assert_eq!(ring.keys(), &keys[..]);
        }

        #[test]
        fn parsing_never_panics_and_never_echoes_a_line(text in "\\PC{0,80}(\n\\PC{0,80}){0,3}") {
            if let Err(err) = KeyRing::parse(&text) {
                let shown = err.to_string();
                for line in text.lines().filter(|l| l.trim().len() > 3) {
                    prop_assert!(!shown.contains(line.trim()), "{}", shown);
                }
            }
        }
    }
}
