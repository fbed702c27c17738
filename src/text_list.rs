//! Lists written as text in settings: one comma-separated string (an
//! environment variable, a flag) or a TOML list, read the same way by the
//! settings and by the broker topology, neither of which may depend on the
//! other.

use serde::Deserialize;

/// Reads a list given as one comma-separated string or as a list of
/// strings, as one comma-separated string.
pub(crate) fn comma_list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(text) => text,
        OneOrMany::Many(items) => items.join(","),
    })
}
