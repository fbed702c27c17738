//! The processor's HMAC signatures (docs/protocol.md §3): the source string, the three
//! algorithms, and verification against a key ring.
//!
//! The source string is every received value except the signature fields, in
//! wire order (arrays grouped at their first occurrence, as PHP's `$_POST`
//! holds them), each prefixed with its UTF-8 byte length; an empty value is
//! just `0`.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac, SimpleHmac};

use super::form::{FormBody, FormError};
use super::keys::{KeyId, KeyRing, SecretKey};

/// A signature algorithm the processor uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// HMAC-MD5 in the `HASH` field; legacy, off unless enabled.
    Md5,
    /// HMAC-SHA256 in `SIGNATURE_SHA2_256`.
    Sha256,
    /// HMAC-SHA3-256 in `SIGNATURE_SHA3_256`.
    Sha3_256,
}

impl Algorithm {
    /// Strongest first: the order in which a notification's signatures are
    /// considered (docs/protocol.md §10: the strongest present decides).
    pub const STRONGEST_FIRST: [Algorithm; 3] =
        [Algorithm::Sha3_256, Algorithm::Sha256, Algorithm::Md5];

    /// The body field that carries this algorithm's signature.
    pub fn field_name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "HASH",
            Algorithm::Sha256 => "SIGNATURE_SHA2_256",
            Algorithm::Sha3_256 => "SIGNATURE_SHA3_256",
        }
    }

    /// The name used in read receipts, logs, metrics and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "md5",
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha3_256 => "sha3-256",
        }
    }

    /// Parses `md5`, `sha256` (or `sha2-256`), `sha3-256` (or `sha3`).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "md5" => Some(Algorithm::Md5),
            "sha256" | "sha2-256" | "sha2" => Some(Algorithm::Sha256),
            "sha3-256" | "sha3" | "sha3_256" => Some(Algorithm::Sha3_256),
            _ => None,
        }
    }

    /// Whether `name` is one of the three signature fields, which the source
    /// string leaves out.
    pub fn is_signature_field(name: &str) -> bool {
        Self::STRONGEST_FIRST
            .iter()
            .any(|algorithm| algorithm.field_name() == name)
    }

    /// HMAC of `data` under `key` with this algorithm.
    pub fn mac(self, key: &SecretKey, data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            // HMAC accepts keys of any length, so this cannot fail.
            let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Algorithm::Md5 => run::<Hmac<md5::Md5>>(key.expose(), data),
            Algorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key.expose(), data),
            Algorithm::Sha3_256 => run::<SimpleHmac<sha3::Sha3_256>>(key.expose(), data),
        }
    }

    /// Lower-case hex HMAC, as the processor writes it.
    pub fn mac_hex(self, key: &SecretKey, data: &[u8]) -> String {
        hex::encode(self.mac(key, data))
    }

    /// Constant-time check of a hex signature (either case).
    fn matches(self, key: &SecretKey, data: &[u8], expected: &[u8]) -> bool {
        fn run<M: Mac + KeyInit>(key: &[u8], data: &[u8], expected: &[u8]) -> bool {
            let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(data);
            mac.verify_slice(expected).is_ok()
        }
        match self {
            Algorithm::Md5 => run::<Hmac<md5::Md5>>(key.expose(), data, expected),
            Algorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key.expose(), data, expected),
            Algorithm::Sha3_256 => run::<SimpleHmac<sha3::Sha3_256>>(key.expose(), data, expected),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which algorithms this listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SignaturePolicy {
    /// Accept legacy HMAC-MD5 `HASH` signatures (off by default; the
    /// processor retired MD5 for webhooks in 2024).
    pub allow_md5: bool,
    /// A signature every notification must carry (SHA3-256 or SHA-256).
    ///
    /// The strongest signature present decides, so stripping a stronger
    /// field makes a weaker one decide: once the processor signs with
    /// SHA3-256, an attacker who can forge only SHA-256 (or, with
    /// `allow_md5`, MD5) would delete `SIGNATURE_SHA3_256` and send the
    /// rest. Requiring the algorithm the account is configured for closes
    /// that door: a body without its field is refused before any other
    /// signature is looked at. MD5 is never a valid requirement.
    pub require: Option<Algorithm>,
}

impl SignaturePolicy {
    /// Whether a signature of `algorithm` may decide.
    pub fn accepts(&self, algorithm: Algorithm) -> bool {
        algorithm != Algorithm::Md5 || self.allow_md5
    }
}

/// Which key and algorithm proved a notification authentic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub key_id: KeyId,
    pub algorithm: Algorithm,
}

/// Why a notification's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed body: {0}")]
    Malformed(#[from] FormError),
    #[error("no signature field (SIGNATURE_SHA3_256, SIGNATURE_SHA2_256 or HASH) is present")]
    Unsigned,
    #[error("the required {} signature (field `{}`) is missing", .0, .0.field_name())]
    RequiredAlgorithmMissing(Algorithm),
    #[error("only an MD5 HASH signature is present, and MD5 is not enabled")]
    Md5NotAllowed,
    #[error("{} signature field `{}` is not {} hex digits", .0, .0.field_name(), hex_len(*.0))]
    BadSignatureFormat(Algorithm),
    #[error("{0} signature does not match any key of the key ring")]
    Mismatch(Algorithm),
}

impl VerifyError {
    /// A short, stable label for metrics and the database.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::Malformed(_) => "malformed",
            VerifyError::Unsigned => "unsigned",
            VerifyError::RequiredAlgorithmMissing(_) => "required_algorithm_missing",
            VerifyError::Md5NotAllowed => "md5_not_allowed",
            VerifyError::BadSignatureFormat(_) => "bad_signature_format",
            VerifyError::Mismatch(_) => "mismatch",
        }
    }

    /// The algorithm whose signature was refused, when one was tried.
    pub fn algorithm(&self) -> Option<Algorithm> {
        match self {
            VerifyError::BadSignatureFormat(algorithm)
            | VerifyError::Mismatch(algorithm)
            | VerifyError::RequiredAlgorithmMissing(algorithm) => Some(*algorithm),
            VerifyError::Md5NotAllowed => Some(Algorithm::Md5),
            VerifyError::Malformed(_) | VerifyError::Unsigned => None,
        }
    }

    /// One error of every kind with every algorithm it can name: the
    /// closed set of `(algorithm, reason)` a refusal is counted under
    /// (`ipn_signatures_total`, exported at zero from the start). A
    /// required algorithm is never MD5 (the settings refuse it).
    pub fn every_kind() -> Vec<VerifyError> {
        let mut all = vec![
            VerifyError::Malformed(FormError::Empty),
            VerifyError::Unsigned,
            VerifyError::Md5NotAllowed,
        ];
        for algorithm in Algorithm::STRONGEST_FIRST {
            if algorithm != Algorithm::Md5 {
                all.push(VerifyError::RequiredAlgorithmMissing(algorithm));
            }
            all.push(VerifyError::BadSignatureFormat(algorithm));
            all.push(VerifyError::Mismatch(algorithm));
        }
        // No wildcard: a new variant stops the build here until it is
        // listed above.
        for err in &all {
            match err {
                VerifyError::Malformed(_)
                | VerifyError::Unsigned
                | VerifyError::RequiredAlgorithmMissing(_)
                | VerifyError::Md5NotAllowed
                | VerifyError::BadSignatureFormat(_)
                | VerifyError::Mismatch(_) => {}
            }
        }
        all
    }
}

fn hex_len(algorithm: Algorithm) -> usize {
    match algorithm {
        Algorithm::Md5 => 32,
        Algorithm::Sha256 | Algorithm::Sha3_256 => 64,
    }
}

/// Appends one length-prefixed value to a source string: the value's UTF-8
/// byte length in decimal, then the value; an empty value becomes `0`.
pub fn push_length_prefixed(source: &mut Vec<u8>, value: &str) {
    push_length_prefixed_bytes(source, value.as_bytes());
}

/// [`push_length_prefixed`] for bytes; short lengths (nearly every value)
/// take no loop.
fn push_length_prefixed_bytes(source: &mut Vec<u8>, value: &[u8]) {
    let len = value.len();
    if len < 10 {
        // `len` is a single digit.
        source.push(b'0' + len as u8);
    } else if len < 100 {
        // Two digits.
        source.extend_from_slice(&[b'0' + (len / 10) as u8, b'0' + (len % 10) as u8]);
    } else {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = len;
        while rest > 0 {
            at -= 1;
            // `rest % 10` is a single digit.
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        source.extend_from_slice(&digits[at..]);
    }
    source.extend_from_slice(value);
}

/// The HMAC source string of a notification (docs/protocol.md §3, steps 1-4).
pub fn source_string(form: &FormBody) -> Result<Vec<u8>, FormError> {
    let mut source = Vec::with_capacity(source_capacity(form));
    form.write_grouped(&mut source, |source, name, value| {
        if signature_slot(name).is_none() {
            push_length_prefixed_bytes(source, value);
        }
    })?;
    Ok(source)
}

/// The source string without the fields named in `excluded` either: the
/// basis of a notification's identity, which leaves out the fields that
/// change from one delivery to the next.
pub fn source_string_excluding(form: &FormBody, excluded: &[&str]) -> Result<Vec<u8>, FormError> {
    let mut source = Vec::with_capacity(source_capacity(form));
    form.write_grouped(&mut source, |source, name, value| {
        let skipped = excluded.iter().any(|field| field.as_bytes() == name);
        if signature_slot(name).is_none() && !skipped {
            push_length_prefixed_bytes(source, value);
        }
    })?;
    Ok(source)
}

/// Room for the source string of `form`: each value plus its length prefix
/// (at most 20 digits, usually 1-2).
fn source_capacity(form: &FormBody) -> usize {
    form.values_len() + 3 * form.pairs().len()
}

/// Where the signature field `name` sits in [`Algorithm::STRONGEST_FIRST`];
/// `None` for any other field.
fn signature_slot(name: &[u8]) -> Option<usize> {
    Algorithm::STRONGEST_FIRST
        .iter()
        .position(|algorithm| algorithm.field_name().as_bytes() == name)
}

/// The first value of each signature field, strongest algorithm first, in a
/// single pass over the body.
fn signature_fields(form: &FormBody) -> [Option<&[u8]>; 3] {
    let mut found = [None; 3];
    for (name, value) in form.pairs() {
        if let Some(slot) = signature_slot(name.as_bytes()) {
            found[slot].get_or_insert(value.as_bytes());
        }
    }
    found
}

/// Verifies a notification's signature against the key ring.
///
/// When `policy` requires an algorithm, a body without that signature field
/// is refused first, whatever else it carries. Then the strongest signature
/// present (and accepted by `policy`) decides; a weaker one is never tried
/// after a stronger one failed, so an attacker cannot downgrade to MD5 by
/// spoiling the SHA fields. Every key of the ring is tried (rotation), each
/// comparison in constant time.
///
/// One pass over the body both builds the source string and finds the
/// signature fields; errors are still reported in the order of the checks
/// (the required signature, signature presence, policy and format first,
/// then a malformed body).
pub fn verify(
    form: &FormBody,
    ring: &KeyRing,
    policy: &SignaturePolicy,
) -> Result<Verified, VerifyError> {
    let mut signatures = [None; 3];
    let mut source = Vec::with_capacity(source_capacity(form));
    let grouped = form.write_grouped(&mut source, |source, name, value| {
        match signature_slot(name) {
            // The first value sent under the name, as in `signature_fields`
            // (a field seen again after a rollback was seen first before it).
            Some(slot) => {
                signatures[slot].get_or_insert(value);
            }
            None => push_length_prefixed_bytes(source, value),
        }
    });
    if grouped.is_err() {
        // The pass stopped early: it may have missed a signature field.
        signatures = signature_fields(form);
    }
    if let Some(required) = policy.require {
        let present = signature_slot(required.field_name().as_bytes())
            .is_some_and(|slot| signatures[slot].is_some());
        if !present {
            return Err(VerifyError::RequiredAlgorithmMissing(required));
        }
    }
    let strongest = Algorithm::STRONGEST_FIRST
        .into_iter()
        .zip(signatures)
        .find_map(|(algorithm, signature)| signature.map(|sig| (algorithm, sig)));
    let (algorithm, signature) = match strongest {
        None => return Err(VerifyError::Unsigned),
        Some((algorithm, _)) if !policy.accepts(algorithm) => {
            return Err(VerifyError::Md5NotAllowed);
        }
        Some(found) => found,
    };
    if signature.len() != hex_len(algorithm) {
        return Err(VerifyError::BadSignatureFormat(algorithm));
    }
    let mut expected = [0; 32];
    let expected = &mut expected[..signature.len() / 2];
    hex::decode_to_slice(signature, expected)
        .map_err(|_| VerifyError::BadSignatureFormat(algorithm))?;
    grouped?;
    // Try every key without stopping at the first match, so the time taken
    // does not tell which key of the ring matched.
    let mut verified = None;
    for key in ring.keys() {
        if algorithm.matches(&key.secret, &source, expected) && verified.is_none() {
            verified = Some(key.id.clone());
        }
    }
    verified
        .map(|key_id| Verified { key_id, algorithm })
        .ok_or(VerifyError::Mismatch(algorithm))
}

/// Replaces the signature fields of `form` with fresh ones made with `key`
/// for each of `algorithms`, appended at the end in the given order.
pub fn sign(
    form: &FormBody,
    key: &SecretKey,
    algorithms: &[Algorithm],
) -> Result<FormBody, FormError> {
    let mut signed = form.clone();
    for algorithm in Algorithm::STRONGEST_FIRST {
        signed.remove(algorithm.field_name());
    }
    let source = source_string(&signed)?;
    for &algorithm in algorithms {
        signed.push(algorithm.field_name(), algorithm.mac_hex(key, &source));
    }
    Ok(signed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FormLimits;

    const KEY: &[u8] = b"AABBCCDDEEFF";

    fn form(body: &str) -> FormBody {
        FormBody::parse(body.as_bytes(), &FormLimits::default()).unwrap()
    }

    #[test]
    fn empty_value_is_zero_and_zero_is_one_zero() {
        let source = source_string(&form("A=&B=0&C=ab")).unwrap();
        assert_eq!(source, b"0102ab");
    }

    #[test]
    fn lengths_count_utf8_bytes() {
        // "R. Álvaro" is 9 chars and 10 bytes (docs/protocol.md §3, the Node SDK bug).
        let source = source_string(&form("N=R.+%C3%81lvaro")).unwrap();
        assert_eq!(source, "10R. Álvaro".as_bytes());
    }

    #[test]
    fn split_arrays_are_grouped_at_their_first_occurrence() {
        // PHP's `$_POST` order: A[] = [1, 3] first, then B.
        let source = source_string(&form("A[]=1&B=22&A[]=3")).unwrap();
        assert_eq!(source, b"1113222");
        // Contiguous arrays keep wire order.
        let source = source_string(&form("A[]=1&A[]=3&B=22")).unwrap();
        assert_eq!(source, b"1113222");
    }

    #[test]
    fn repeated_scalars_are_malformed_whether_adjacent_or_not() {
        for body in ["B=1&B=2", "B=1&A=0&B=2", "A[]=1&B=1&A[]=2&B=2"] {
            assert_eq!(
                source_string(&form(body)),
                Err(FormError::RepeatedScalar { name: "B".into() }),
                "{body}"
            );
        }
    }

    #[test]
    fn length_prefixes_of_every_width() {
        for len in [0, 1, 9, 10, 99, 100, 12_345] {
            let value = "x".repeat(len);
            let mut source = Vec::new();
            push_length_prefixed(&mut source, &value);
            assert_eq!(source, format!("{len}{value}").into_bytes());
        }
    }

    #[test]
    fn signature_fields_are_excluded_wherever_they_are() {
        let source = source_string(&form(
            "HASH=x&A=1&SIGNATURE_SHA2_256=y&SIGNATURE_SHA3_256=z",
        ))
        .unwrap();
        assert_eq!(source, b"11");
    }

    #[test]
    fn downgrade_is_refused() {
        let ring = KeyRing::single(KEY);
        let good = sign(&form("A=1"), &SecretKey::new(KEY), &[Algorithm::Md5]).unwrap();
        let mut tampered = good.clone();
        tampered.push("SIGNATURE_SHA2_256", "0".repeat(64));
        let policy = SignaturePolicy {
            allow_md5: true,
            require: None,
        };
        assert!(verify(&good, &ring, &policy).is_ok());
        assert_eq!(
            verify(&tampered, &ring, &policy),
            Err(VerifyError::Mismatch(Algorithm::Sha256))
        );
    }

    #[test]
    fn md5_only_when_allowed() {
        let ring = KeyRing::single(KEY);
        let signed = sign(&form("A=1"), &SecretKey::new(KEY), &[Algorithm::Md5]).unwrap();
        assert_eq!(
            verify(&signed, &ring, &SignaturePolicy::default()),
            Err(VerifyError::Md5NotAllowed)
        );
    }

    #[test]
    fn upper_case_hex_is_accepted() {
        let ring = KeyRing::single(KEY);
        let signed = sign(&form("A=1"), &SecretKey::new(KEY), &[Algorithm::Sha256]).unwrap();
        let upper = signed
            .get("SIGNATURE_SHA2_256")
            .unwrap()
            .to_ascii_uppercase();
        let mut shouted = form("A=1");
        shouted.push("SIGNATURE_SHA2_256", upper);
        assert!(verify(&shouted, &ring, &SignaturePolicy::default()).is_ok());
    }

    #[test]
    fn unsigned_and_bad_format() {
        let ring = KeyRing::single(KEY);
        let policy = SignaturePolicy::default();
        assert_eq!(
            verify(&form("A=1"), &ring, &policy),
            Err(VerifyError::Unsigned)
        );
        assert_eq!(
            verify(&form("A=1&SIGNATURE_SHA3_256=zz"), &ring, &policy),
            Err(VerifyError::BadSignatureFormat(Algorithm::Sha3_256))
        );
    }

    #[test]
    fn a_required_signature_cannot_be_stripped() {
        let ring = KeyRing::single(KEY);
        let all = [Algorithm::Sha3_256, Algorithm::Sha256, Algorithm::Md5];
        let signed = sign(&form("A=1&B=2"), &SecretKey::new(KEY), &all).unwrap();
        let require = |required| SignaturePolicy {
            allow_md5: true,
            require: Some(required),
        };
        assert!(verify(&signed, &ring, &require(Algorithm::Sha3_256)).is_ok());
        let mut stripped = signed.clone();
        stripped.remove("SIGNATURE_SHA3_256");
        // Without the requirement the weaker signatures decide...
        let lax = SignaturePolicy {
            allow_md5: true,
            require: None,
        };
        assert_eq!(
            verify(&stripped, &ring, &lax).unwrap().algorithm,
            Algorithm::Sha256
        );
        // ...with it, the body is refused before they are looked at.
        let refused = verify(&stripped, &ring, &require(Algorithm::Sha3_256));
        assert_eq!(
            refused,
            Err(VerifyError::RequiredAlgorithmMissing(Algorithm::Sha3_256))
        );
        let err = refused.unwrap_err();
        assert_eq!(err.reason(), "required_algorithm_missing");
        assert_eq!(err.algorithm(), Some(Algorithm::Sha3_256));
        assert!(err.to_string().contains("SIGNATURE_SHA3_256"), "{err}");
        stripped.remove("SIGNATURE_SHA2_256");
        assert_eq!(
            verify(&stripped, &ring, &require(Algorithm::Sha256)),
            Err(VerifyError::RequiredAlgorithmMissing(Algorithm::Sha256))
        );
        // Also before "unsigned" and "malformed".
        assert_eq!(
            verify(&form("A=1&A=2"), &ring, &require(Algorithm::Sha256)),
            Err(VerifyError::RequiredAlgorithmMissing(Algorithm::Sha256))
        );
        // Requiring SHA-256 still lets a stronger SHA3 signature decide.
        let mut sha3_spoiled = signed.clone();
        sha3_spoiled.remove("SIGNATURE_SHA3_256");
        sha3_spoiled.push("SIGNATURE_SHA3_256", "0".repeat(64));
        assert_eq!(
            verify(&sha3_spoiled, &ring, &require(Algorithm::Sha256)),
            Err(VerifyError::Mismatch(Algorithm::Sha3_256))
        );
    }

    #[test]
    fn any_key_of_the_ring_verifies_and_is_reported() {
        let ring = KeyRing::parse("new NEWKEY\nold AABBCCDDEEFF\n").unwrap();
        let signed = sign(&form("A=1"), &SecretKey::new(KEY), &[Algorithm::Sha3_256]).unwrap();
        let verified = verify(&signed, &ring, &SignaturePolicy::default()).unwrap();
        assert_eq!(verified.key_id.as_str(), "old");
        assert_eq!(verified.algorithm, Algorithm::Sha3_256);
    }
}
