//! Secret keys and the key ring used to verify and sign notifications.
//!
//! Keys are rotated on the processor's side without warning the listener, so
//! the listener keeps a *ring*: the current key first, then older keys still
//! accepted. Each key has an id that is safe to log and store; the secret
//! itself never leaves this module's types in a printable form.

use std::fmt;
use std::path::Path;

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

    /// Reads a key file: one key per line, `KEY_ID SECRET` or just `SECRET`
    /// (id `default`); the first key is the current one. Blank lines and
    /// lines starting with `#` are ignored.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|err| match err {
            KeyError::Line { line, reason, .. } => KeyError::Line {
                path: shown,
                line,
                reason,
            },
            other => other,
        })
    }

    /// Parses the key file format (see [`KeyRing::from_file`]).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line_error = |reason| KeyError::Line {
                path: String::new(),
                line: index + 1,
                reason,
            };
            let (id, secret) = match line.split_once(char::is_whitespace) {
                Some((id, secret)) => (id, secret.trim()),
                None => (KeyId::DEFAULT, line),
            };
            let id = KeyId::parse(id).map_err(|_| {
                line_error("the key id is not 1-64 letters, digits, '.', '_' or '-'")
            })?;
            if secret.is_empty() {
                return Err(line_error("the secret is empty"));
            }
            keys.push(SigningKey::new(id, SecretKey::new(secret.as_bytes())));
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

    #[test]
    fn parses_ids_secrets_comments_and_default() {
        let ring = KeyRing::parse("# test keys\n2026 new-secret\n\nold s3cr3t with spaces\nBARE\n")
            .unwrap();
        let ids: Vec<_> = ring.keys().iter().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, ["2026", "old", "default"]);
        assert_eq!(ring.current().secret.expose(), b"new-secret");
        assert_eq!(ring.keys()[1].secret.expose(), b"s3cr3t with spaces");
        assert_eq!(ring.keys()[2].secret.expose(), b"BARE");
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
        let err = KeyRing::parse("bad/id TOPSECRETVALUE\n").unwrap_err();
        assert!(!err.to_string().contains("TOPSECRET"));
    }
}
