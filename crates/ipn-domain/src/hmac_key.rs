//! A secret key for HMAC-SHA256, kept ready to use and never shown.
//!
//! The daemon keys several digests (customer pseudonyms, the console's
//! login-attempt digests); each wraps this one type, so how a key is held
//! (brought to the block size once, redacted in `Debug`, wiped on drop) is
//! written once.

use std::fmt;

use hmac::{Hmac, KeyInit};
use sha2::{Digest, Sha256};

/// An HMAC-SHA256 key. `Debug` is redacted and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct HmacKey {
    /// The key already brought to HMAC-SHA256's block size as RFC 2104
    /// prescribes (hashed if longer than a block, zero-padded), so that the
    /// HMAC can be keyed without a fallible call on every use.
    block: [u8; 64],
}

impl HmacKey {
    /// A key from its bytes; any length is accepted, as by HMAC.
    pub fn new(bytes: impl AsRef<[u8]>) -> Self {
        let bytes = bytes.as_ref();
        let mut block = [0u8; 64];
        if bytes.len() > block.len() {
            block[..32].copy_from_slice(&Sha256::digest(bytes));
        } else {
            block[..bytes.len()].copy_from_slice(bytes);
        }
        Self { block }
    }

    /// A fresh HMAC keyed with this key.
    pub fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new(&self.block.into())
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKey(<redacted>)")
    }
}

impl Drop for HmacKey {
    fn drop(&mut self) {
        // Best effort: do not leave the key in freed memory.
        zeroize::Zeroize::zeroize(&mut self.block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::Mac;

    fn tag(key: &HmacKey) -> Vec<u8> {
        let mut mac = key.mac();
        mac.update(b"message");
        mac.finalize().into_bytes().to_vec()
    }

    #[test]
    fn a_key_longer_than_a_block_is_keyed_as_hmac_does() {
        for len in [0usize, 16, 64, 65, 200] {
            let bytes = vec![7u8; len];
            let mut direct = <Hmac<Sha256> as KeyInit>::new_from_slice(&bytes).expect("any length");
            direct.update(b"message");
            assert_eq!(
                tag(&HmacKey::new(&bytes)),
                direct.finalize().into_bytes().to_vec(),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn the_key_is_never_shown() {
        let shown = format!("{:?}", HmacKey::new("a secret key"));
        assert!(!shown.contains("secret"), "{shown}");
    }
}
