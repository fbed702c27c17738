//! Key files read from disk into the protocol's key rings.
//!
//! The protocol crate parses key files from text and does no I/O; reading
//! the file (and naming it in errors) is done here, at the daemon's edge.

use std::path::Path;

use crate::ipn::{KeyError, KeyRing};

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
