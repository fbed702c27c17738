//! The API credentials and the authentication header.
//!
//! The secret comes from a file (`api-key-file`): a command-line value is
//! visible to every user of the machine in `ps`, and environments end up in
//! crash reports. It is held as a [`SecretKey`] (zeroed on drop), and this
//! module's `Debug` shows the vendor code but never the secret.

use std::fmt;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::ipn::{Algorithm, SecretKey, api_auth_header};

/// Who the client authenticates as.
#[derive(Clone)]
pub struct ApiCredentials {
    vendor_code: String,
    secret: std::sync::Arc<SecretKey>,
    algorithm: Algorithm,
}

impl fmt::Debug for ApiCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiCredentials")
            .field("vendor_code", &self.vendor_code)
            .field("secret", &"<redacted>")
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

/// Why `api-key-file` cannot be used; names the key, never a secret.
#[derive(Debug, thiserror::Error)]
#[error("cannot use `api-key-file` {path}: {reason}")]
pub struct KeyFileError {
    pub path: String,
    pub reason: String,
}

impl ApiCredentials {
    /// SHA3-256, as the processor's current plugins sign.
    pub fn new(vendor_code: impl Into<String>, secret: SecretKey) -> Self {
        Self {
            vendor_code: vendor_code.into(),
            secret: std::sync::Arc::new(secret),
            algorithm: Algorithm::Sha3_256,
        }
    }

    /// Another algorithm: SHA-256, or legacy MD5 for an account that
    /// still needs it (only when asked for).
    pub fn with_algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// Reads the secret from `path` (see [`read_api_secret`]).
    pub fn from_key_file(vendor_code: &str, path: &Path) -> Result<Self, KeyFileError> {
        Ok(Self::new(vendor_code, read_api_secret(path)?))
    }

    pub fn vendor_code(&self) -> &str {
        &self.vendor_code
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The `X-Avangate-Authentication` value for a request sent at `now`.
    pub fn header(&self, now: DateTime<Utc>) -> String {
        api_auth_header(
            &self.vendor_code,
            &self.secret,
            now.naive_utc(),
            self.algorithm,
        )
    }
}

/// The API secret in `path`: its first line, surrounding whitespace
/// trimmed; an empty file is refused.
pub fn read_api_secret(path: &Path) -> Result<SecretKey, KeyFileError> {
    let error = |reason: String| KeyFileError {
        path: path.display().to_string(),
        reason,
    };
    let text = zeroize::Zeroizing::new(
        std::fs::read(path).map_err(|err| error(format!("cannot read it: {err}")))?,
    );
    let secret = text
        .split(|b| *b == b'\n')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if secret.is_empty() {
        return Err(error("it is empty".to_owned()));
    }
    Ok(SecretKey::new(secret.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_never_shows_in_debug_and_comes_from_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("api.key");
        std::fs::write(&path, "  very-secret-value \n").expect("write");
        let credentials = ApiCredentials::from_key_file("VENDOR", &path).expect("reads");
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("very-secret-value"), "{shown}");
        assert!(
            shown.contains("VENDOR") && shown.contains("redacted"),
            "{shown}"
        );
        let header = credentials.header(DateTime::from_timestamp(0, 0).expect("epoch"));
        assert!(header.starts_with(r#"code="VENDOR" date="1970-01-01 00:00:00" hash=""#));
        assert!(header.ends_with(r#"algo="sha3-256""#), "{header}");

        std::fs::write(&path, "\n").expect("write");
        let err = ApiCredentials::from_key_file("VENDOR", &path)
            .expect_err("empty")
            .to_string();
        assert!(
            err.contains("`api-key-file`") && err.contains("empty"),
            "{err}"
        );
    }
}
