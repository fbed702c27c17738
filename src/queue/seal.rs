//! Sealing notification bodies for the broker.
//!
//! A notification body carries names, e-mail addresses, phone numbers and
//! postal addresses. RabbitMQ keeps messages on disk, in the management UI
//! and in every retry and parking copy, so the intake and `publish` seal
//! each body before it is queued and the worker opens it just before it
//! judges it. Nothing that reads the broker (an operator, a backup, a
//! misrouted consumer) sees a body in clear.
//!
//! # The construction
//!
//! - AEAD: XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`), with a
//!   random 24-byte nonce per message. 192-bit nonces make random
//!   collisions negligible however many messages one key seals, so no
//!   counter has to be kept across processes and restarts.
//! - Sealed message body: `nonce || ciphertext` (the ciphertext ends with
//!   the 16-byte tag). Content type [`SEALED_CONTENT_TYPE`]; the header
//!   [`headers::SEALED_BY`](super::headers::SEALED_BY) names the key.
//! - Associated data: `b"ipn-reconciler v1\0"` followed by the key id, so a
//!   body cannot be passed off as sealed by another key of the ring.
//! - Keys: derived from the processor's key ring with HKDF-SHA256, one per
//!   ring key: `HKDF(salt = "ipn-reconciler broker seal v1", ikm = secret,
//!   info = key id)`. The default setup needs no key of its own, and a
//!   rotation of the processor's key rotates the sealing key with it:
//!   bodies are sealed with the ring's *current* key and opened with the
//!   key they name. A retired IPN key must therefore stay in the key file
//!   as long as messages sealed with it may still be queued (at most the
//!   parking TTL); a message whose key is gone cannot be opened and is
//!   parked as `malformed:unknown_seal_key`.
//!
//! Plain bodies are still accepted (content type
//! `application/x-www-form-urlencoded`, or none at all): other programs
//! publish to the work exchange, and messages queued before sealing existed
//! must still be processed. The worker verifies the processor's HMAC over
//! the opened body either way; the seal protects confidentiality in the
//! broker, the HMAC still decides authenticity.

use std::fmt;

use chacha20poly1305::aead::{Aead, Generate, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::CONTENT_TYPE;
use crate::ipn::{KeyId, KeyRing};

/// Content type of a sealed notification message.
pub const SEALED_CONTENT_TYPE: &str = "application/x-ipn-sealed";

/// HKDF salt of the sealing keys. Changing it changes every sealing key:
/// queued messages could no longer be opened.
const HKDF_SALT: &[u8] = b"ipn-reconciler broker seal v1";

/// Prefix of the associated data; the key id follows it.
const AAD_PREFIX: &[u8] = b"ipn-reconciler v1\0";

/// Bytes of an XChaCha20-Poly1305 nonce.
pub const NONCE_LEN: usize = 24;

/// Bytes of the Poly1305 tag at the end of the ciphertext.
pub const TAG_LEN: usize = 16;

/// Bytes of a derived key.
const KEY_LEN: usize = 32;
// HKDF-SHA256 expands at most 255 * 32 bytes: `derive` relies on it.
const _: () = assert!(KEY_LEN <= 255 * 32);

/// How a message's body travels, read from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyForm {
    /// The processor's form body in clear: `application/x-www-form-urlencoded`
    /// or no content type at all (other publishers, older messages).
    Plain,
    /// Sealed by [`Sealer::seal`].
    Sealed,
}

impl BodyForm {
    /// The form a content type announces; `None` for a content type this
    /// daemon does not know (such a message is refused, never guessed at).
    /// Parameters (`; charset=...`) and case are ignored.
    pub fn of_content_type(content_type: Option<&str>) -> Option<Self> {
        let Some(content_type) = content_type else {
            return Some(Self::Plain);
        };
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case(CONTENT_TYPE) {
            Some(Self::Plain)
        } else if essence.eq_ignore_ascii_case(SEALED_CONTENT_TYPE) {
            Some(Self::Sealed)
        } else {
            None
        }
    }
}

/// A sealed body and the key that sealed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// `nonce || ciphertext`: what goes on the broker.
    pub body: Vec<u8>,
    /// The ring key whose derived key sealed it (the `x-sealed-by` header).
    pub key_id: KeyId,
}

/// Why a body could not be sealed or opened. Never quotes a body or a key.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("unknown content type `{0}`: expected {CONTENT_TYPE} or {SEALED_CONTENT_TYPE}")]
    UnknownContentType(String),
    #[error("a sealed message without an x-sealed-by header")]
    MissingKeyId,
    #[error(
        "sealed with key `{0}`, which the key ring does not hold (a retired key removed from the key file too early?)"
    )]
    UnknownKey(String),
    #[error("the sealed body is {0} bytes, shorter than a nonce and a tag")]
    Truncated(usize),
    #[error("the seal does not open: the message was altered or sealed with another secret")]
    Broken,
    #[error("no randomness for a nonce: {0}")]
    Random(String),
    #[error("the body could not be sealed")]
    Seal,
}

impl SealError {
    /// A short machine reason from a closed set (a parked message's reason
    /// and the rejected notification's record).
    pub fn reason(&self) -> &'static str {
        match self {
            SealError::UnknownContentType(_) => "unknown_content_type",
            SealError::MissingKeyId | SealError::UnknownKey(_) => "unknown_seal_key",
            SealError::Truncated(_) | SealError::Broken => "broken_seal",
            SealError::Random(_) | SealError::Seal => "seal_failed",
        }
    }
}

/// One derived key. The secret is a `SecretSlice`: redacted in `Debug`,
/// zeroed when dropped.
#[derive(Debug, Clone)]
struct SealKey {
    id: KeyId,
    key: SecretSlice<u8>,
}

impl SealKey {
    fn cipher(&self) -> Result<XChaCha20Poly1305, SealError> {
        XChaCha20Poly1305::new_from_slice(self.key.expose_secret()).map_err(|_| SealError::Seal)
    }
}

/// Seals and opens notification bodies with keys derived from a key ring
/// (see the module docs).
#[derive(Debug, Clone)]
pub struct Sealer {
    /// Current key first, as in the ring.
    keys: Vec<SealKey>,
}

impl Sealer {
    /// Derives one sealing key per key of `ring`.
    pub fn new(ring: &KeyRing) -> Self {
        let keys = ring
            .keys()
            .iter()
            .map(|key| SealKey {
                id: key.id.clone(),
                key: derive(key.secret.expose(), &key.id),
            })
            .collect();
        Self { keys }
    }

    /// The key that seals: the ring's current one.
    pub fn current_key_id(&self) -> &KeyId {
        // `KeyRing` guarantees at least one key, and so `new` derives one.
        &self.keys[0].id
    }

    /// Seals `plain` with the current key and a fresh random nonce.
    pub fn seal(&self, plain: &[u8]) -> Result<Sealed, SealError> {
        let key = &self.keys[0];
        let nonce = XNonce::try_generate().map_err(|err| SealError::Random(err.to_string()))?;
        let aad = aad(&key.id);
        let ciphertext = key
            .cipher()?
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Seal)?;
        let mut body = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&ciphertext);
        Ok(Sealed {
            body,
            key_id: key.id.clone(),
        })
    }

    /// The plain body of a message: `body` itself when the content type
    /// says plain, the opened seal when it says sealed (with the key named
    /// by `sealed_by`). The plain bytes are zeroed when dropped.
    pub fn open(
        &self,
        content_type: Option<&str>,
        sealed_by: Option<&str>,
        body: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        match BodyForm::of_content_type(content_type) {
            Some(BodyForm::Plain) => Ok(Zeroizing::new(body.to_vec())),
            Some(BodyForm::Sealed) => self.open_sealed(sealed_by, body),
            None => Err(SealError::UnknownContentType(
                crate::ipn::form::printable_name(content_type.unwrap_or_default()),
            )),
        }
    }

    fn open_sealed(
        &self,
        sealed_by: Option<&str>,
        body: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let id = sealed_by.ok_or(SealError::MissingKeyId)?;
        let key = self
            .keys
            .iter()
            .find(|key| key.id.as_str() == id)
            .ok_or_else(|| SealError::UnknownKey(crate::ipn::form::printable_name(id)))?;
        if body.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Truncated(body.len()));
        }
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| SealError::Truncated(body.len()))?;
        let aad = aad(&key.id);
        key.cipher()?
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Broken)
    }
}

/// `HKDF-SHA256(salt, ikm = secret, info = key id)`, 32 bytes.
fn derive(secret: &[u8], id: &KeyId) -> SecretSlice<u8> {
    let mut okm = vec![0u8; KEY_LEN];
    // `expand` fails only when asked for more than 255 * 32 bytes, and
    // KEY_LEN is a constant 32: a failure here is a broken build, never
    // input. It must not be ignored either way: the same derivation seals,
    // and an ignored failure would seal with an all-zero key.
    Hkdf::<Sha256>::new(Some(HKDF_SALT), secret)
        .expand(id.as_str().as_bytes(), &mut okm)
        .expect("HKDF-SHA256 expands 32 bytes (at most 255 * 32 are refused)");
    SecretSlice::from(okm)
}

fn aad(id: &KeyId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_PREFIX.len() + id.as_str().len());
    aad.extend_from_slice(AAD_PREFIX);
    aad.extend_from_slice(id.as_str().as_bytes());
    aad
}

impl fmt::Display for BodyForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BodyForm::Plain => CONTENT_TYPE,
            BodyForm::Sealed => SEALED_CONTENT_TYPE,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipn::{SecretKey, SigningKey};

    const BODY: &[u8] = b"REFNO=1&FIRSTNAME=Ada&EMAIL=ada%40example.com&IPN_DATE=20261102092044";

    fn ring(keys: &[(&str, &str)]) -> KeyRing {
        KeyRing::new(
            keys.iter()
                .map(|(id, secret)| {
                    SigningKey::new(
                        KeyId::parse(id).expect("id"),
                        SecretKey::new(secret.as_bytes()),
                    )
                })
                .collect(),
        )
        .expect("ring")
    }

    fn open_sealed(sealer: &Sealer, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, SealError> {
        sealer.open(
            Some(SEALED_CONTENT_TYPE),
            Some(sealed.key_id.as_str()),
            &sealed.body,
        )
    }

    #[test]
    fn a_sealed_body_opens_to_the_same_bytes_and_shows_none_of_them() {
        let sealer = Sealer::new(&ring(&[("k2026", "secret-a")]));
        let sealed = sealer.seal(BODY).expect("seal");
        assert_eq!(sealed.key_id.as_str(), "k2026");
        assert_eq!(sealed.body.len(), NONCE_LEN + BODY.len() + TAG_LEN);
        for word in [&b"Ada"[..], b"example.com", b"REFNO", b"20261102"] {
            assert!(
                !sealed.body.windows(word.len()).any(|w| w == word),
                "{}",
                String::from_utf8_lossy(word)
            );
        }
        assert_eq!(
            open_sealed(&sealer, &sealed).expect("opens").as_slice(),
            BODY
        );
    }

    #[test]
    fn two_seals_of_one_body_differ() {
        let sealer = Sealer::new(&ring(&[("k", "secret")]));
        let first = sealer.seal(BODY).expect("seal");
        let second = sealer.seal(BODY).expect("seal");
        assert_ne!(first.body, second.body, "a fresh nonce per message");
        assert_ne!(first.body[..NONCE_LEN], second.body[..NONCE_LEN]);
    }

    #[test]
    fn any_altered_byte_breaks_the_seal() {
        let sealer = Sealer::new(&ring(&[("k", "secret")]));
        let sealed = sealer.seal(BODY).expect("seal");
        for index in [0, NONCE_LEN - 1, NONCE_LEN, sealed.body.len() - 1] {
            let mut tampered = sealed.clone();
            tampered.body[index] ^= 0x01;
            assert!(
                matches!(open_sealed(&sealer, &tampered), Err(SealError::Broken)),
                "byte {index}"
            );
        }
        let mut short = sealed.clone();
        short.body.truncate(NONCE_LEN + TAG_LEN - 1);
        let err = open_sealed(&sealer, &short).expect_err("truncated");
        assert!(matches!(err, SealError::Truncated(_)), "{err}");
        assert_eq!(err.reason(), "broken_seal");
    }

    #[test]
    fn the_key_id_is_bound_to_the_seal() {
        // Two keys with the same secret derive different keys (info = id),
        // and the id is in the associated data: relabelling fails.
        let sealer = Sealer::new(&ring(&[("new", "same"), ("old", "same")]));
        let sealed = sealer.seal(BODY).expect("seal");
        let relabelled = sealer.open(Some(SEALED_CONTENT_TYPE), Some("old"), &sealed.body);
        assert!(matches!(relabelled, Err(SealError::Broken)));
    }

    #[test]
    fn an_older_key_of_the_ring_still_opens_what_it_sealed() {
        let before = Sealer::new(&ring(&[("old", "secret-old")]));
        let sealed = before.seal(BODY).expect("seal");
        let rotated = Sealer::new(&ring(&[("new", "secret-new"), ("old", "secret-old")]));
        assert_eq!(rotated.current_key_id().as_str(), "new");
        assert_eq!(
            open_sealed(&rotated, &sealed).expect("opens").as_slice(),
            BODY
        );
        assert_eq!(rotated.seal(BODY).expect("seal").key_id.as_str(), "new");
    }

    #[test]
    fn a_key_no_longer_in_the_ring_or_a_missing_header_is_refused() {
        let before = Sealer::new(&ring(&[("old", "secret-old")]));
        let sealed = before.seal(BODY).expect("seal");
        let after = Sealer::new(&ring(&[("new", "secret-new")]));
        let err = open_sealed(&after, &sealed).expect_err("unknown key");
        assert!(
            matches!(err, SealError::UnknownKey(ref id) if id == "old"),
            "{err}"
        );
        assert_eq!(err.reason(), "unknown_seal_key");
        let err = after
            .open(Some(SEALED_CONTENT_TYPE), None, &sealed.body)
            .expect_err("no header");
        assert!(matches!(err, SealError::MissingKeyId));
        // Same id, another secret: the derived key differs.
        let replaced = Sealer::new(&ring(&[("old", "another-secret")]));
        assert!(matches!(
            open_sealed(&replaced, &sealed),
            Err(SealError::Broken)
        ));
    }

    #[test]
    fn plain_bodies_pass_through_and_unknown_content_types_are_refused() {
        let sealer = Sealer::new(&ring(&[("k", "secret")]));
        for content_type in [
            None,
            Some(CONTENT_TYPE),
            Some("Application/X-WWW-Form-Urlencoded; charset=utf-8"),
        ] {
            let opened = sealer.open(content_type, None, BODY).expect("plain");
            assert_eq!(opened.as_slice(), BODY, "{content_type:?}");
        }
        let err = sealer
            .open(Some("application/json"), None, BODY)
            .expect_err("unknown");
        // Shown as a printable name: it comes from whoever published.
        assert!(matches!(err, SealError::UnknownContentType(ref t) if t == "application?json"));
        assert_eq!(err.reason(), "unknown_content_type");
        assert_eq!(
            BodyForm::of_content_type(Some(SEALED_CONTENT_TYPE)),
            Some(BodyForm::Sealed)
        );
    }

    #[test]
    fn debug_output_shows_key_ids_never_key_material() {
        let secret = "TOPSECRETVALUE";
        let sealer = Sealer::new(&ring(&[("live", secret)]));
        let shown = format!("{sealer:?}");
        assert!(shown.contains("live"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
        assert!(!shown.contains(secret), "{shown}");
        // Nor the derived key's bytes, in any common rendering.
        let derived = derive(secret.as_bytes(), &KeyId::parse("live").expect("id"));
        let bytes = derived.expose_secret();
        assert!(!shown.contains(&hex::encode(bytes)), "{shown}");
        assert!(!shown.contains(&format!("{bytes:?}")), "{shown}");
    }

    #[test]
    fn derivation_is_hkdf_sha256_with_the_documented_inputs() {
        // Recomputed with the hmac crate by hand (RFC 5869: PRK = HMAC(salt,
        // IKM); OKM = HMAC(PRK, info || 0x01) for one block), so that a
        // change of salt, info or hash cannot slip in unnoticed.
        use hmac::{KeyInit as _, Mac};
        let mut extract = hmac::Hmac::<Sha256>::new_from_slice(HKDF_SALT).expect("hmac");
        extract.update(b"secret");
        let prk = extract.finalize().into_bytes();
        let mut expand = hmac::Hmac::<Sha256>::new_from_slice(&prk).expect("hmac");
        expand.update(b"k2026");
        expand.update(&[1]);
        let expected = expand.finalize().into_bytes();
        let derived = derive(b"secret", &KeyId::parse("k2026").expect("id"));
        assert_eq!(derived.expose_secret(), expected.as_slice());
    }
}
