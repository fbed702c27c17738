//! Values that may carry a password: the URLs of PostgreSQL and RabbitMQ.
//!
//! A [`SecretUrl`] keeps its text in a [`secrecy::SecretString`], so a
//! derived `Debug` anywhere up the tree prints `[REDACTED]` instead of the
//! password; code that needs the real URL (to connect) asks for it with
//! [`SecretUrl::expose`], and code that wants to *show* it (logs, errors,
//! `check`) uses [`SecretUrl::redacted`], which keeps the host and database
//! visible and replaces only the password.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A `scheme://user:password@host/path` URL whose password must never be
/// logged.
#[derive(Clone, Debug)]
pub struct SecretUrl(SecretString);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(SecretString::from(url.into()))
    }

    /// The URL as typed, password included: only for connecting.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL with its password replaced by `***`, for logs and errors.
    pub fn redacted(&self) -> String {
        redact_url(self.expose())
    }
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> Self {
        Self::new(url)
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        Self::new(url)
    }
}

/// Serialized redacted: settings are serialized only to be shown
/// (`check`, help texts), never to be read back.
impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// Replaces the password of a `scheme://user:password@host/...` URL.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_redacted_forms_hide_the_password() {
        let url = SecretUrl::new("postgres://app:S3CRET-PW@db.internal:5432/books");
        assert!(!format!("{url:?}").contains("S3CRET-PW"));
        assert_eq!(url.redacted(), "postgres://app:***@db.internal:5432/books");
        assert_eq!(
            url.expose(),
            "postgres://app:S3CRET-PW@db.internal:5432/books"
        );
    }

    #[test]
    fn urls_without_a_password_are_shown_as_they_are() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/ipn",
            "amqp://127.0.0.1:5672/%2f",
            "not a url",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }
}
