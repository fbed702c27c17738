//! What a notice says about a dispute: `CHARGEBACK_RESOLUTION` and
//! `CHARGEBACK_REASON_CODE` (docs/protocol.md §2.4).
//!
//! The processor's plugins treat a notice on the original `REFNO` whose
//! resolution is neither empty nor `NONE` as a chargeback notice, whatever
//! its `ORDERSTATUS` (often `COMPLETE`). The values beyond `NONE` are not
//! documented anywhere we could read: `OPEN`, `WON`, `LOST` and `ACCEPTED`
//! are what the plugins and the simulator use, and are *unverified*. Any
//! other value is kept as it came (clipped) and sent to review, never
//! guessed at.

use strum::{EnumCount, EnumString, IntoStaticStr, VariantArray};

use crate::status::{UNKNOWN_VALUE_MAX_CHARS, clip_for_display};

/// The resolutions the reconciler acts on.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    IntoStaticStr,
    EnumString,
    strum::Display,
    VariantArray,
    EnumCount,
)]
#[strum(
    serialize_all = "SCREAMING_SNAKE_CASE",
    parse_err_ty = UnknownChargebackResolution,
    parse_err_fn = UnknownChargebackResolution::new
)]
pub enum ChargebackResolution {
    /// A dispute was opened: the card network took the money back.
    Open,
    /// The merchant won the dispute: the money is reinstated.
    Won,
    /// The merchant lost: final. The money stays taken (taken now if no
    /// earlier notice took it).
    Lost,
    /// The merchant accepted the chargeback: final, as lost.
    Accepted,
}

/// A resolution value this version does not act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown chargeback resolution `{0}`")]
pub struct UnknownChargebackResolution(String);

impl UnknownChargebackResolution {
    fn new(value: &str) -> Self {
        Self(clip_for_display(value, UNKNOWN_VALUE_MAX_CHARS))
    }
}

string_forms!(
    ChargebackResolution,
    UnknownChargebackResolution,
    "chargeback resolution"
);

impl ChargebackResolution {
    /// Whether the resolution means the money was (or stays) taken back.
    pub fn takes(self) -> bool {
        !matches!(self, ChargebackResolution::Won)
    }
}

/// A notice's `CHARGEBACK_RESOLUTION`, known or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolutionField {
    Known(ChargebackResolution),
    /// The value as received, clipped to [`UNKNOWN_VALUE_MAX_CHARS`]
    /// characters with control characters replaced.
    Unknown(String),
}

impl ResolutionField {
    /// The text to store and show.
    pub fn as_str(&self) -> &str {
        match self {
            ResolutionField::Known(resolution) => resolution.as_str(),
            ResolutionField::Unknown(value) => value,
        }
    }

    pub fn known(&self) -> Option<ChargebackResolution> {
        match self {
            ResolutionField::Known(resolution) => Some(*resolution),
            ResolutionField::Unknown(_) => None,
        }
    }
}

/// Longest reason code kept (the plugins' codes are short words; card
/// schemes use `4837`, `10.4`).
pub const MAX_REASON_CODE_CHARS: usize = 40;

/// The dispute a notice is about: its resolution and reason code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargebackNotice {
    pub resolution: ResolutionField,
    /// `CHARGEBACK_REASON_CODE`, clipped; `None` when empty.
    pub reason_code: Option<String>,
}

impl ChargebackNotice {
    /// Reads the two fields: `None` when the notice is not about a dispute
    /// (resolution absent, empty or `NONE`, in any case and with spaces
    /// around). Never fails: an unknown resolution is kept as it came.
    pub fn read(resolution: Option<&str>, reason_code: Option<&str>) -> Option<Self> {
        let value = resolution.map(str::trim).filter(|v| !v.is_empty())?;
        if value.eq_ignore_ascii_case("NONE") {
            return None;
        }
        let resolution = match ChargebackResolution::parse(&value.to_ascii_uppercase()) {
            Ok(known) => ResolutionField::Known(known),
            Err(_) => ResolutionField::Unknown(clip_for_display(value, UNKNOWN_VALUE_MAX_CHARS)),
        };
        let reason_code = reason_code
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| clip_for_display(v, MAX_REASON_CODE_CHARS));
        Some(Self {
            resolution,
            reason_code,
        })
    }

    /// How the ledger and review items name it: `OPEN (FRAUD)`.
    pub fn describe(&self) -> String {
        match &self.reason_code {
            Some(code) => format!("{} ({code})", self.resolution.as_str()),
            None => self.resolution.as_str().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolutions_have_fixed_string_forms() {
        assert_string_forms!(ChargebackResolution, ["OPEN", "WON", "LOST", "ACCEPTED"]);
        assert!(ChargebackResolution::Open.takes());
        assert!(ChargebackResolution::Lost.takes());
        assert!(ChargebackResolution::Accepted.takes());
        assert!(!ChargebackResolution::Won.takes());
    }

    #[test]
    fn none_and_empty_are_no_dispute() {
        for none in [None, Some(""), Some("NONE"), Some(" none "), Some("  ")] {
            assert_eq!(
                ChargebackNotice::read(none, Some("FRAUD")),
                None,
                "{none:?}"
            );
        }
    }

    #[test]
    fn known_resolutions_are_read_and_others_kept_clipped() {
        let open = ChargebackNotice::read(Some("OPEN"), Some("FRAUD")).expect("dispute");
        assert_eq!(
            open.resolution,
            ResolutionField::Known(ChargebackResolution::Open)
        );
        assert_eq!(open.reason_code.as_deref(), Some("FRAUD"));
        assert_eq!(open.describe(), "OPEN (FRAUD)");
        let won = ChargebackNotice::read(Some("won"), None).expect("dispute");
        assert_eq!(won.resolution.known(), Some(ChargebackResolution::Won));
        assert_eq!(won.describe(), "WON");

        let odd = ChargebackNotice::read(Some("PRE_ARBITRATION"), Some("")).expect("dispute");
        assert_eq!(
            odd.resolution,
            ResolutionField::Unknown("PRE_ARBITRATION".to_owned())
        );
        assert_eq!(odd.resolution.known(), None);
        assert_eq!(odd.reason_code, None);
        let long = "X".repeat(500);
        let clipped = ChargebackNotice::read(Some(&long), Some(&long)).expect("dispute");
        assert_eq!(
            clipped.resolution.as_str().matches('X').count(),
            UNKNOWN_VALUE_MAX_CHARS
        );
        assert!(
            clipped
                .reason_code
                .is_some_and(|c| c.matches('X').count() == MAX_REASON_CODE_CHARS)
        );
        let forged = ChargebackNotice::read(Some("A\nlevel=error"), None).expect("dispute");
        assert!(!forged.resolution.as_str().contains('\n'));
    }
}
