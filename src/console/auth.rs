//! Who may use the console: passwords (argon2id), session tokens, when a
//! session expires, and the keyed digests login attempts are counted
//! under (when they may be checked: [`super::throttle`]).
//!
//! The decisions are pure functions of their inputs and a time
//! ([`session_state`], [`super::throttle::decide`]), so tests decide
//! expiry and rate limits by setting the console's clock, not by waiting.

use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::net::IpAddr;

use crate::domain::hmac_key::HmacKey;
use argon2::{Algorithm, Argon2, Params, Version};
use chrono::{DateTime, Utc};
use hmac::Mac;
use sha2::{Digest, Sha256};

/// The fewest characters a console password may have.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The most: argon2 takes anything, but a pasted file is a mistake.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// Why a password or a user name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("a user name is 1-64 letters, digits, `.`, `_` or `-`")]
    Name,
    #[error("a password has at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("a password has at most {MAX_PASSWORD_CHARS} characters")]
    TooLong,
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error("the system's random number generator failed")]
    Random,
}

/// Checks a user name the way the schema does.
pub fn check_name(name: &str) -> Result<(), CredentialError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CredentialError::Name)
    }
}

/// Argon2id with the parameters OWASP recommends as a minimum (19 MiB, two
/// passes, one lane): what the `argon2` crate defaults to, written out so
/// a change of default does not change the stored hashes silently.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) of a
/// password, with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, CredentialError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(CredentialError::TooShort);
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(CredentialError::TooLong);
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|_| CredentialError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| CredentialError::Hash(e.to_string()))?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| CredentialError::Hash(e.to_string()))
}

/// Whether `password` is the one `phc` was made from. A hash that does
/// not parse verifies nothing.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .is_ok_and(|hash| hasher().verify_password(password.as_bytes(), &hash).is_ok())
}

/// A hash of no one's password, verified when the name typed is unknown,
/// so an unknown name takes as long to refuse as a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("no user has this password").unwrap_or_default())
}

/// A session token: 32 random bytes as hex. Only the browser keeps it; the
/// database keeps [`token_digest`].
pub fn new_token() -> Result<String, CredentialError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| CredentialError::Random)?;
    Ok(hex::encode(bytes))
}

/// The SHA-256 (hex) a token is stored and looked up under.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The key of the digests login attempts are counted under
/// (HMAC-SHA256): from `console-key-file`, or random at each start.
///
/// Keyed, not a plain hash: there are only 2^32 IPv4 addresses, and
/// user names are guessable, so a plain SHA-256 of either is read back by
/// hashing every candidate. `Debug` is redacted and there is no
/// `Display`: the key is never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct AttemptKey {
    key: HmacKey,
}

impl AttemptKey {
    /// A key from its bytes.
    pub fn new(bytes: impl AsRef<[u8]>) -> Self {
        Self {
            key: HmacKey::new(bytes),
        }
    }

    /// 32 random bytes: the limits then hold for this process only (they
    /// start again at a restart and are not shared with other consoles).
    pub fn random() -> Result<Self, CredentialError> {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut()).map_err(|_| CredentialError::Random)?;
        Ok(Self::new(bytes.as_ref()))
    }

    /// The digest (hex) of a name as typed, trimmed and lower-cased (so
    /// `Alice` and `alice` share a limit). Kept instead of the text: a
    /// name typed may be anything, a password pasted in the wrong field
    /// included.
    pub fn user_digest(&self, name: &str) -> String {
        self.digest("user", &name.trim().to_lowercase())
    }

    /// The digest (hex) of a caller's address: of an IPv4 address (an
    /// IPv4-mapped IPv6 one read as IPv4), or of an IPv6 address's /64
    /// network, since one client commonly holds a whole /64.
    pub fn address_digest(&self, addr: IpAddr) -> String {
        let text = match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let net = ipnet::Ipv6Net::new(v6, 64).map(|net| net.trunc());
                    net.map_or_else(|_| v6.to_string(), |net| net.to_string())
                }
            },
            IpAddr::V4(v4) => v4.to_string(),
        };
        self.digest("address", &text)
    }

    fn digest(&self, kind: &str, value: &str) -> String {
        let mut mac = self.key.mac();
        mac.update(b"ipn-reconciler console attempt\0");
        mac.update(kind.as_bytes());
        mac.update(b"\0");
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

impl std::fmt::Debug for AttemptKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AttemptKey(<redacted>)")
    }
}

/// How long a session lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Unused this long, it ends.
    pub idle: Duration,
    /// This long after login, it ends however busy.
    pub absolute: Duration,
}

/// A session's state at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Live,
    /// Logged out, or its user disabled.
    Ended,
    IdleExpired,
    AbsoluteExpired,
}

/// Whether a session created at `created`, last used at `last_seen`, is
/// still live at `now`. A bound reached exactly has expired.
pub fn session_state(
    policy: SessionPolicy,
    created: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    ended: bool,
    now: DateTime<Utc>,
) -> SessionState {
    let elapsed = |since: DateTime<Utc>| (now - since).to_std().unwrap_or(Duration::ZERO);
    if ended {
        SessionState::Ended
    } else if elapsed(created) >= policy.absolute {
        SessionState::AbsoluteExpired
    } else if elapsed(last_seen) >= policy.idle {
        SessionState::IdleExpired
    } else {
        SessionState::Live
    }
}

/// Compares two strings in time that depends only on their lengths.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0)
            .single()
            .expect("time")
    }

    const POLICY: SessionPolicy = SessionPolicy {
        idle: Duration::from_secs(60),
        absolute: Duration::from_secs(600),
    };

    #[test]
    fn a_session_expires_when_idle_and_at_its_absolute_bound() {
        let s = |created, seen, now| session_state(POLICY, at(created), at(seen), false, at(now));
        assert_eq!(s(0, 0, 59), SessionState::Live);
        assert_eq!(s(0, 0, 60), SessionState::IdleExpired);
        assert_eq!(s(0, 550, 599), SessionState::Live);
        assert_eq!(s(0, 599, 600), SessionState::AbsoluteExpired);
        assert_eq!(
            session_state(POLICY, at(0), at(0), true, at(1)),
            SessionState::Ended
        );
        // A clock that went back does not end a session.
        assert_eq!(s(10, 10, 5), SessionState::Live);
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("correct horse battery", "not a hash"));
        assert_ne!(hash, hash_password("correct horse battery").expect("hash"));
        assert_eq!(hash_password("short"), Err(CredentialError::TooShort));
    }

    #[test]
    fn names_tokens_and_digests() {
        assert!(check_name("finance-42").is_ok());
        assert!(check_name("a b").is_err());
        assert!(check_name("").is_err());
        let token = new_token().expect("token");
        assert_eq!(token.len(), 64);
        assert_ne!(token, new_token().expect("token"));
        assert_eq!(token_digest(&token).len(), 64);
        let key = AttemptKey::new(b"a console key of some length");
        assert_eq!(key.user_digest(" Alice"), key.user_digest("alice"));
        assert_eq!(key.user_digest("alice").len(), 64);
        let other = AttemptKey::new(b"another console key");
        assert_ne!(key.user_digest("alice"), other.user_digest("alice"));
        assert_ne!(
            key.address_digest("10.0.0.1".parse().expect("ip")),
            key.address_digest("10.0.0.2".parse().expect("ip"))
        );
        assert_eq!(
            key.address_digest("10.0.0.1".parse().expect("ip")),
            key.address_digest("::ffff:10.0.0.1".parse().expect("ip"))
        );
        // One /64 is one client.
        assert_eq!(
            key.address_digest("2001:db8::1".parse().expect("ip")),
            key.address_digest("2001:db8::ffff:2".parse().expect("ip"))
        );
        assert_ne!(
            key.address_digest("2001:db8::1".parse().expect("ip")),
            key.address_digest("2001:db8:0:1::1".parse().expect("ip"))
        );
        // Not a plain SHA-256 of the address, and the key never shows.
        assert_ne!(
            key.address_digest("10.0.0.1".parse().expect("ip")),
            hex::encode(Sha256::digest(b"10.0.0.1"))
        );
        assert_eq!(format!("{key:?}"), "AttemptKey(<redacted>)");
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
