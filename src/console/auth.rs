//! Who may use the console: passwords (argon2id), session tokens, when a
//! session expires, and when failed logins stop being answered.
//!
//! The decisions are pure functions of their inputs and a time
//! ([`session_state`], [`login_allowed`]), so tests decide expiry and rate
//! limits by setting the console's clock, not by waiting.

use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// The fewest characters a console password may have.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The most: argon2 takes anything, but a pasted file is a mistake.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// Failed logins for one name within [`RATE_WINDOW`] after which that name
/// is refused without its password being checked.
pub const MAX_FAILURES_PER_USER: i64 = 5;
/// Failed logins from one address within [`RATE_WINDOW`] after which that
/// address is refused (several names tried from one place).
pub const MAX_FAILURES_PER_ADDRESS: i64 = 20;
/// The window the failures are counted in.
pub const RATE_WINDOW: Duration = Duration::from_secs(15 * 60);

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

/// The digest a login attempt is counted under: of the name as typed,
/// trimmed and lower-cased (so `Alice` and `alice` share a limit), or of
/// the address. Kept instead of the text: a name typed may be anything,
/// a password pasted in the wrong field included.
pub fn attempt_digest(kind: &str, value: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"ipn-reconciler console attempt\0");
    hash.update(kind.as_bytes());
    hash.update(b"\0");
    hash.update(value.trim().to_lowercase().as_bytes());
    hex::encode(hash.finalize())
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

/// Whether a login may be tried, given the failures within [`RATE_WINDOW`]
/// for the name and from the address.
pub fn login_allowed(failures_for_user: i64, failures_from_address: i64) -> bool {
    failures_for_user < MAX_FAILURES_PER_USER && failures_from_address < MAX_FAILURES_PER_ADDRESS
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
    fn logins_stop_at_the_limits() {
        assert!(login_allowed(0, 0));
        assert!(login_allowed(MAX_FAILURES_PER_USER - 1, 0));
        assert!(!login_allowed(MAX_FAILURES_PER_USER, 0));
        assert!(!login_allowed(0, MAX_FAILURES_PER_ADDRESS));
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
        assert_eq!(
            attempt_digest("user", " Alice"),
            attempt_digest("user", "alice")
        );
        assert_ne!(
            attempt_digest("user", "alice"),
            attempt_digest("address", "alice")
        );
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
