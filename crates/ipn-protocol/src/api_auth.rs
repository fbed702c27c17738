//! The processor's REST API authentication header, `X-Avangate-Authentication`
//! (processor-traffic.md §5, from the processor's "API authentication" page
//! and its own plugins): pure, so the client and the simulated API compute
//! it the same way and a test can pin it to the documented example.
//!
//! `code="VENDOR" date="YYYY-MM-DD HH:MM:SS" hash="HEX" algo="sha3-256"`,
//! where `HEX` is the HMAC, under the account's secret key, of
//! `LEN(VENDOR) + VENDOR + LEN(DATE) + DATE` (byte lengths, in decimal), and
//! `DATE` is the request's UTC time. SHA3-256 is what the processor's current
//! plugins send; SHA-256 is accepted since API 6.0; legacy MD5 is sent
//! without an `algo` attribute (the older plugins), only when asked for.

use chrono::NaiveDateTime;

use crate::keys::SecretKey;
use crate::signature::Algorithm;

/// The header's name.
pub const API_AUTH_HEADER: &str = "X-Avangate-Authentication";

/// The date format of the header (UTC).
pub const API_DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// The string the header's HMAC covers: each value prefixed with its
/// UTF-8 byte length (the documented example: `11YOURCODE123192020-06-18
/// 08:05:46`).
pub fn api_auth_source(vendor_code: &str, date: &str) -> String {
    format!("{}{vendor_code}{}{date}", vendor_code.len(), date.len())
}

/// The `algo` attribute for `algorithm`; none for legacy MD5 (the plugins
/// that use MD5 send no `algo`, and the processor takes MD5 then).
pub fn api_algo_name(algorithm: Algorithm) -> Option<&'static str> {
    match algorithm {
        Algorithm::Md5 => None,
        Algorithm::Sha256 => Some("sha256"),
        Algorithm::Sha3_256 => Some("sha3-256"),
    }
}

/// The full header value for `vendor_code` at `date` (UTC).
pub fn api_auth_header(
    vendor_code: &str,
    secret: &SecretKey,
    date: NaiveDateTime,
    algorithm: Algorithm,
) -> String {
    let date = date.format(API_DATE_FORMAT).to_string();
    let hash = algorithm.mac_hex(secret, api_auth_source(vendor_code, &date).as_bytes());
    match api_algo_name(algorithm) {
        Some(algo) => format!(r#"code="{vendor_code}" date="{date}" hash="{hash}" algo="{algo}""#),
        None => format!(r#"code="{vendor_code}" date="{date}" hash="{hash}""#),
    }
}

/// A header taken apart (the simulated API, which checks it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiAuth {
    pub code: String,
    pub date: NaiveDateTime,
    pub hash: String,
    pub algorithm: Algorithm,
}

/// Why a header cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiAuthError {
    #[error("the authentication header lacks `{0}`")]
    Missing(&'static str),
    #[error("the authentication header's date is not `YYYY-MM-DD HH:MM:SS`")]
    Date,
    #[error("the authentication header names an unknown algorithm")]
    Algorithm,
    #[error("the authentication header is not `name=\"value\"` pairs")]
    Syntax,
}

impl ApiAuth {
    /// Reads `code="…" date="…" hash="…" [algo="…"]`.
    pub fn parse(header: &str) -> Result<Self, ApiAuthError> {
        let mut code = None;
        let mut date = None;
        let mut hash = None;
        let mut algo = None;
        let mut rest = header.trim();
        while !rest.is_empty() {
            let (name, after) = rest.split_once("=\"").ok_or(ApiAuthError::Syntax)?;
            let (value, after) = after.split_once('"').ok_or(ApiAuthError::Syntax)?;
            match name.trim() {
                "code" => code = Some(value),
                "date" => date = Some(value),
                "hash" => hash = Some(value),
                "algo" => algo = Some(value),
                _ => {}
            }
            rest = after.trim_start();
        }
        let algorithm = match algo {
            None => Algorithm::Md5,
            Some(name) => Algorithm::parse(name).ok_or(ApiAuthError::Algorithm)?,
        };
        let date = date.ok_or(ApiAuthError::Missing("date"))?;
        Ok(Self {
            code: code.ok_or(ApiAuthError::Missing("code"))?.to_owned(),
            date: NaiveDateTime::parse_from_str(date, API_DATE_FORMAT)
                .map_err(|_| ApiAuthError::Date)?,
            hash: hash.ok_or(ApiAuthError::Missing("hash"))?.to_owned(),
            algorithm,
        })
    }

    /// Whether the hash is the HMAC under `secret` (constant time).
    pub fn verifies(&self, secret: &SecretKey) -> bool {
        let date = self.date.format(API_DATE_FORMAT).to_string();
        let expected = self
            .algorithm
            .mac_hex(secret, api_auth_source(&self.code, &date).as_bytes());
        let given = self.hash.to_ascii_lowercase();
        expected.len() == given.len()
            && expected
                .bytes()
                .zip(given.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

#[cfg(test)]
mod tests {
    use hmac::{KeyInit, Mac, SimpleHmac};

    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, API_DATE_FORMAT).expect("date")
    }

    /// The processor's documented example source string (KC-API-auth:
    /// vendor code `YOURCODE123`, date `2020-06-18 08:05:46`).
    #[test]
    fn the_source_string_is_the_documented_example() {
        assert_eq!(
            api_auth_source("YOURCODE123", "2020-06-18 08:05:46"),
            "11YOURCODE123192020-06-18 08:05:46"
        );
    }

    /// The documentation gives the example's source string but no secret
    /// and no digest, so the expected hash is computed here independently,
    /// with the hmac and sha3 crates directly over the documented string.
    #[test]
    fn the_header_equals_the_documented_example_computation() {
        let secret = b"SECRET_KEY";
        let mut mac = <SimpleHmac<sha3::Sha3_256> as KeyInit>::new_from_slice(secret)
            .expect("any key length");
        mac.update(b"11YOURCODE123192020-06-18 08:05:46");
        let expected = hex::encode(mac.finalize().into_bytes());
        let header = api_auth_header(
            "YOURCODE123",
            &SecretKey::new(secret.to_vec()),
            at("2020-06-18 08:05:46"),
            Algorithm::Sha3_256,
        );
        assert_eq!(
            header,
            format!(
                r#"code="YOURCODE123" date="2020-06-18 08:05:46" hash="{expected}" algo="sha3-256""#
            )
        );

        let mut mac =
            <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret).expect("any key length");
        mac.update(b"11YOURCODE123192020-06-18 08:05:46");
        let expected = hex::encode(mac.finalize().into_bytes());
        let header = api_auth_header(
            "YOURCODE123",
            &SecretKey::new(secret.to_vec()),
            at("2020-06-18 08:05:46"),
            Algorithm::Sha256,
        );
        assert!(
            header.ends_with(&format!(r#"hash="{expected}" algo="sha256""#)),
            "{header}"
        );

        // Legacy MD5: no algo attribute, as the older plugins send it.
        let header = api_auth_header(
            "YOURCODE123",
            &SecretKey::new(secret.to_vec()),
            at("2020-06-18 08:05:46"),
            Algorithm::Md5,
        );
        assert!(!header.contains("algo="), "{header}");
    }

    #[test]
    fn a_header_reads_back_and_verifies_only_under_its_secret() {
        let secret = SecretKey::new(b"s3cret".to_vec());
        for algorithm in Algorithm::STRONGEST_FIRST {
            let header = api_auth_header("VENDOR", &secret, at("2026-12-09 10:00:00"), algorithm);
            let auth = ApiAuth::parse(&header).expect("parses");
            assert_eq!(auth.code, "VENDOR");
            assert_eq!(auth.algorithm, algorithm);
            assert_eq!(auth.date, at("2026-12-09 10:00:00"));
            assert!(auth.verifies(&secret));
            assert!(!auth.verifies(&SecretKey::new(b"other".to_vec())));
        }
        assert_eq!(
            ApiAuth::parse("code=\"X\" hash=\"00\""),
            Err(ApiAuthError::Missing("date"))
        );
        assert_eq!(ApiAuth::parse("garbage"), Err(ApiAuthError::Syntax));
    }
}
