//! Cross-site request forgery: every form that changes something carries a
//! token a forged page cannot know.
//!
//! The token is derived from the secret the form's cookie holds (the
//! session token, or before login the login form's own token): a page on
//! another site can make the browser send the cookie, but cannot read it,
//! so it cannot compute the field. Nothing extra is stored, and the
//! database's digest of the session token does not give the token either.
//! The session cookie is also `SameSite=Strict`; the token is what still
//! holds where a browser ignores that.

use sha2::{Digest, Sha256};

use super::auth::same_secret;

/// The form field that carries the token.
pub const FIELD: &str = "csrf";

/// The token of the forms of the holder of `secret` (a session token, or
/// the login form's cookie).
pub fn token(secret: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"ipn-reconciler console csrf v1\0");
    hash.update(secret.as_bytes());
    hex::encode(hash.finalize())
}

/// Whether `submitted` is the token of `secret`.
pub fn verify(secret: &str, submitted: Option<&str>) -> bool {
    submitted.is_some_and(|submitted| same_secret(&token(secret), submitted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_holders_token_passes() {
        let mine = token("secret-a");
        assert!(verify("secret-a", Some(&mine)));
        assert!(!verify("secret-b", Some(&mine)));
        assert!(!verify("secret-a", None));
        assert!(!verify("secret-a", Some("")));
        assert_ne!(mine, super::super::auth::token_digest("secret-a"));
    }
}
