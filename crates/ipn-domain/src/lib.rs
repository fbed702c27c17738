//! The functional core: money, statuses, tokenization and the order state
//! machine. No I/O happens here, and nothing here knows about HTTP,
//! RabbitMQ or PostgreSQL.
//!
//! Keeping the decisions pure is what makes them testable exhaustively:
//! [`reconcile::decide`] is a function `(order facts, event) -> decision`,
//! so property tests can replay any set of notifications in every arrival
//! order and prove they end in the same state, without a database. The
//! shell (`store`, `worker`) loads the facts, calls `decide`, and writes the
//! decision in one transaction.
//!
//! The types *parse* rather than validate: a [`Money`] is always an exact
//! integer amount in a currency that carries its exponent, a
//! [`PaymentEvent`] holds only the allow-listed fields of a notification
//! (design, "Data that may be stored"), already checked. Code that holds one of them need not check
//! again, and code that never sees the raw form cannot leak it.
//!
//! - [`money`]: [`Currency`] and [`Money`] (exact minor units, never floats),
//!   and the currency table [`Currencies`] (ISO 4217 and the operator's
//!   allowed currencies): a value handed in from the settings, since this
//!   crate keeps no globals;
//! - [`status`]: the processor's [`OrderStatus`] and our [`OrderState`];
//! - [`pan`]: the card-number guard;
//! - [`layout`]: the processor's field order, and the check that binds
//!   field names (a renamed, repeated or moved name is refused);
//! - [`tokenize`](mod@tokenize): from a verified form to a [`PaymentEvent`];
//! - [`subscription`]: the licences line items name, and a subscription
//!   folded from its orders;
//! - [`licence`]: from a verified licence change notification to a
//!   [`LicenceNotice`];
//! - [`origin`]: which order a notice is about ([`OrderSource`], [`OrderKey`]);
//! - [`reconcile`]: [`OrderFacts`], [`decide`] and its [`Decision`].
//! - [`event_time`]: when money moved by the processor's dates, and where
//!   the books are closed;
//! - [`journal`]: the money movements a decision made and how they are
//!   booked (figures, posting rules, accounts).
//! - [`review`]: what a person may do about a review item, and what it does.
//! - [`clearing`]: what explains a processor clearing balance that is not
//!   zero (unsettled payments, undebited refunds, open differences).

/// The protocol crate, under the name this crate's modules use.
pub(crate) use ipn_protocol as ipn;

/// The part of a vocabulary that strum does not derive, written once for
/// every enum of the domain whose values have string forms (statuses,
/// states, outcomes, effects, review kinds).
///
/// The enum derives `IntoStaticStr`, `EnumString` (with its typed parse
/// error through `parse_err_ty`/`parse_err_fn`), `strum::Display`,
/// `VariantArray` and `EnumCount`, so that each string is written in one
/// place, the enum. This adds the API the rest of the crate uses:
/// `ALL` (an array, so `for x in T::ALL` yields values), `as_str`,
/// `parse` and `Serialize` as the string form.
macro_rules! string_forms {
    ($ty:ident, $error:ident, $what:literal) => {
        impl $ty {
            #[doc = concat!("Every ", $what, ".")]
            pub const ALL: [$ty; <$ty as ::strum::EnumCount>::COUNT] =
                $crate::variant_array(<$ty as ::strum::VariantArray>::VARIANTS);

            /// The string form, as stored, logged and shown.
            pub fn as_str(self) -> &'static str {
                self.into()
            }

            /// Parses exactly a string written by [`Self::as_str`]
            /// (case-sensitive); anything else is a typed error quoting the
            /// value, clipped to `UNKNOWN_VALUE_MAX_CHARS` characters with
            /// control characters replaced.
            pub fn parse(value: &str) -> Result<Self, $error> {
                value.parse()
            }
        }

        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

/// Checks a vocabulary's string forms against `expected`, the strings in
/// declaration order. Written out in the tests on purpose: the strings are
/// derived from the variant names, so renaming a variant would otherwise
/// silently change what is stored and compared in the database.
#[cfg(test)]
macro_rules! assert_string_forms {
    ($ty:ident, $expected:expr) => {{
        let expected: &[&str] = &$expected;
        let all: Vec<&str> = $ty::ALL.iter().map(|v| v.as_str()).collect();
        assert_eq!(all, expected, "{} strings", stringify!($ty));
        for value in $ty::ALL {
            let text = value.as_str();
            assert_eq!($ty::parse(text), Ok(value), "{text}");
            assert_eq!(text.parse::<$ty>(), Ok(value), "{text}");
            assert_eq!(value.to_string(), text);
            // Display pads like a string, for the CLI's aligned columns.
            assert_eq!(format!("{value:<30}|"), format!("{text:<30}|"));
            assert_eq!(
                serde_json::to_value(value).ok(),
                Some(serde_json::Value::from(text))
            );
            // Exact: no other case is accepted.
            for other in [text.to_ascii_uppercase(), text.to_ascii_lowercase()] {
                if other != text {
                    assert!($ty::parse(&other).is_err(), "{other}");
                }
            }
        }
        assert!($ty::parse("").is_err());
        let long = $ty::parse(&"@".repeat(500)).unwrap_err().to_string();
        assert_eq!(
            long.matches('@').count(),
            $crate::status::UNKNOWN_VALUE_MAX_CHARS
        );
        let forged = $ty::parse("a\nlevel=error").unwrap_err().to_string();
        assert!(!forged.contains('\n'), "{forged}");
    }};
}

/// strum's `VARIANTS` slice as an array of the same length (`EnumCount`),
/// so that the vocabularies' `ALL` keep their array type.
pub(crate) const fn variant_array<T: Copy, const N: usize>(variants: &[T]) -> [T; N] {
    assert!(variants.len() == N, "VARIANTS and COUNT disagree");
    let mut out = [variants[0]; N];
    let mut i = 1;
    while i < N {
        out[i] = variants[i];
        i += 1;
    }
    out
}

pub mod audit;
pub mod chargeback;
pub mod clearing;
pub mod event_time;
pub mod four_eyes;
pub mod hmac_key;
pub mod journal;
pub mod layout;
pub mod licence;
pub mod money;
pub mod notice_money;
pub mod origin;
pub mod pan;
pub mod reconcile;
pub mod repeats;
pub mod review;
pub mod settlement;
pub mod status;
pub mod subscription;
pub mod sweep;
pub mod tokenize;

pub use chargeback::{
    ChargebackNotice, ChargebackResolution, ResolutionField, UnknownChargebackResolution,
};
pub use layout::{Layout, LayoutError};
pub use licence::{
    DispatchReason, Expiration, LicenceNotice, LicenceStatus, LicenceType, tokenize_licence,
};
pub use money::{Currencies, Currency, CurrencyCode, CurrencyError, Money, MoneyError};
pub use origin::{OrderKey, OrderOrigin, OrderSource, UnknownOrderOrigin, processor_expected};
pub use pan::{contains_pan, find_pan_fields};
pub use reconcile::{
    AutoResolution, Decision, Effect, NewReviewItem, OrderFacts, Outcome, PaymentFacts,
    PaymentState, ReconcilePolicy, ReviewKind, UnknownEffect, UnknownOutcome, UnknownReviewKind,
    decide,
};
pub use status::{OrderState, OrderStatus, StatusCategory, UnknownOrderState, UnknownOrderStatus};
pub use tokenize::{
    BodyDigest, EventIdentity, NotSha256Hex, PER_DELIVERY_FIELDS, PROCESSOR_RETRY_HORIZON_HOURS,
    PaymentEvent, Pseudonym, PseudonymKey, StatusField, TokenizeError, tokenize,
};
