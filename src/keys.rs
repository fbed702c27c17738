//! Key files read from disk: the processor's key ring and the seal keys.
//!
//! The protocol crate parses key files from text and does no I/O; reading
//! the file (and naming it in errors) is done here, at the daemon's edge.

use std::path::Path;

use crate::ipn::{KeyError, KeyRing};
use crate::queue::{SealKeyError, Sealer};

/// Reads the key file at `path` (format in `ipn::keys`); the first key is
/// the current one.
pub fn read_key_ring(path: &Path) -> Result<KeyRing, KeyError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: shown.clone(),
        source,
    })?;
    KeyRing::parse_file(&shown, &text)
}

/// Reads the seal key file at `path` (format in [`crate::queue::seal`]:
/// `KEY_ID HEX` lines, 64 hexadecimal digits each); the first key seals.
pub fn read_seal_keys(path: &Path) -> Result<Sealer, SealKeyError> {
    let shown = path.display().to_string();
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
        SealKeyError::File(KeyError::Read {
            path: shown.clone(),
            source,
        })
    })?);
    Sealer::parse_file(&shown, &text)
}
