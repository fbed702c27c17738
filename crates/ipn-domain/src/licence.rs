//! Licence change notifications (LCN) tokenized to an allow-list
//! (docs/protocol.md §12; issue 21, Deliver 3).
//!
//! The processor sends an LCN when a subscription changes: it expired, went
//! past due, was disabled, its cancellation was scheduled, its renewal
//! price changed. Like a payment notification it carries the end user's
//! name, e-mail address, postal address and phone number, and the last
//! digits, type and expiry of the card the next renewal will charge
//! (`NEXT_RENEWAL_CARD_*`). [`tokenize_licence`] keeps only what the
//! subscription needs: its code, status, dates, dispatch reason, type,
//! recurring flag, product code, the processor references of its first
//! and latest orders, the number of renewals, the next renewal's date and
//! price, and the test flag. Nothing else of the body reaches a
//! [`LicenceNotice`], so nothing else can reach its serialization, a log
//! line or the database.
//!
//! As for payment notifications, the body must be laid out as the
//! processor lays out LCNs ([`crate::layout`]), every field is read only
//! from a scalar under its exact name, allow-listed values are parsed, not
//! copied, and a card number in a field that would be kept refuses the
//! notice. Errors are [`TokenizeError`]s naming the field, never a value.

use std::fmt;

use chrono::{NaiveDate, NaiveDateTime};
use serde::{Serialize, Serializer};

use crate::ipn::{Algorithm, FormBody, KeyId, Verified};

use super::layout::Layout;
use super::money::{Currencies, Money};
use super::pan::find_pan_fields;
use super::status::{UNKNOWN_VALUE_MAX_CHARS, clip_for_display};
use super::tokenize::{BodyDigest, EventIdentity, TokenizeError};

/// Field names of the LCN that [`tokenize_licence`] reads.
pub mod fields {
    pub const LICENSE_CODE: &str = "LICENSE_CODE";
    pub const EXPIRATION_DATE: &str = "EXPIRATION_DATE";
    pub const DATE_UPDATED: &str = "DATE_UPDATED";
    pub const TEST: &str = "TEST";
    pub const LICENSE_TYPE: &str = "LICENSE_TYPE";
    pub const RECURRING: &str = "RECURRING";
    pub const START_DATE: &str = "START_DATE";
    pub const PURCHASE_DATE: &str = "PURCHASE_DATE";
    pub const NEXT_RENEWAL_DATE: &str = "NEXT_RENEWAL_DATE";
    pub const NEXT_RENEWAL_PRICE: &str = "NEXT_RENEWAL_PRICE";
    pub const NEXT_RENEWAL_CURRENCY: &str = "NEXT_RENEWAL_CURRENCY";
    pub const STATUS: &str = "STATUS";
    pub const DISPATCH_REASON: &str = "DISPATCH_REASON";
    pub const LAST_ORDER_REFERENCE: &str = "LAST_ORDER_REFERENCE";
    pub const ORIGINAL_ORDER_REFERENCE: &str = "ORIGINAL_ORDER_REFERENCE";
    pub const LICENSE_PRODUCT_CODE: &str = "LICENSE_PRODUCT_CODE";
    pub const RENEWALS_NUMBER: &str = "RENEWALS_NUMBER";
}

/// The fields whose values (or a value derived from them) a
/// [`LicenceNotice`] keeps. A card number in one of them refuses the
/// notice. `TEST` and `RECURRING` are reduced to booleans and not listed.
pub const STORED_FIELDS: [&str; 15] = [
    fields::LICENSE_CODE,
    fields::EXPIRATION_DATE,
    fields::DATE_UPDATED,
    fields::LICENSE_TYPE,
    fields::START_DATE,
    fields::PURCHASE_DATE,
    fields::NEXT_RENEWAL_DATE,
    fields::NEXT_RENEWAL_PRICE,
    fields::NEXT_RENEWAL_CURRENCY,
    fields::STATUS,
    fields::DISPATCH_REASON,
    fields::LAST_ORDER_REFERENCE,
    fields::ORIGINAL_ORDER_REFERENCE,
    fields::LICENSE_PRODUCT_CODE,
    fields::RENEWALS_NUMBER,
];

/// Longest accepted `LICENSE_CODE` ("String/50", KC-LCN-params; the
/// processor's codes are 10 characters).
pub const MAX_LICENCE_CODE_CHARS: usize = 50;
/// Longest accepted `LICENSE_PRODUCT_CODE` (the merchant's product code).
pub const MAX_PRODUCT_CODE_CHARS: usize = 100;
/// Longest accepted order reference (a `REFNO`: up to 9 digits, room left).
pub const MAX_ORDER_REFERENCE_CHARS: usize = 20;

/// The processor's date-and-time format (`2026-11-02 09:20:44`).
const DATE_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";
/// A date alone (`2005-03-03`, as the processor's receipt example writes
/// `EXPIRATION_DATE`).
const DATE_FORMAT: &str = "%Y-%m-%d";
/// The year the processor gives lifetime subscriptions
/// (`9999-12-31 23:59:59`).
const LIFETIME_YEAR: i32 = 9999;

/// A subscription's status as an LCN states it (KC-LCN-triggers: active,
/// past due, expired, disabled, pending activation; the exact wire
/// spellings are not documented, so spaces and hyphens read as `_` and
/// `PASTDUE`, `CANCELLED` are taken too). Anything else is kept as text,
/// clipped: a status the processor adds must not stop every LCN that
/// carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LicenceStatus {
    Active,
    PastDue,
    Expired,
    Disabled,
    PendingActivation,
    Canceled,
    /// The value as received, clipped to 40 characters with control
    /// characters replaced.
    Other(String),
}

impl LicenceStatus {
    pub fn parse(value: &str) -> Self {
        match normalized(value).as_str() {
            "ACTIVE" => Self::Active,
            "PAST_DUE" | "PASTDUE" => Self::PastDue,
            "EXPIRED" => Self::Expired,
            "DISABLED" => Self::Disabled,
            "PENDING_ACTIVATION" | "PENDINGACTIVATION" => Self::PendingActivation,
            "CANCELED" | "CANCELLED" => Self::Canceled,
            _ => Self::Other(clip_for_display(value, UNKNOWN_VALUE_MAX_CHARS)),
        }
    }

    /// `ACTIVE`, `PAST_DUE`, ..., or the unknown value as kept.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Active => "ACTIVE",
            Self::PastDue => "PAST_DUE",
            Self::Expired => "EXPIRED",
            Self::Disabled => "DISABLED",
            Self::PendingActivation => "PENDING_ACTIVATION",
            Self::Canceled => "CANCELED",
            Self::Other(value) => value,
        }
    }
}

/// Why the processor sent the LCN (`DISPATCH_REASON`, KC-LCN-triggers).
/// Unknown codes are kept as text, clipped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DispatchReason {
    /// `LICENCE_CHANGE`: expiry, recurring flag, end user, payment method
    /// changed; cancelled or reactivated.
    Change,
    /// `LICENCE_GP_CHANGE`: the grace period changed.
    GracePeriodChange,
    /// `LICENCE_PENDING_ACTIVATION`.
    PendingActivation,
    /// `LICENCE_EXPIRATION`: the subscription expired.
    Expiration,
    /// `LICENCE_PASTDUE`: a renewal was not paid in time.
    PastDue,
    /// `LICENCE_CPC_ACCEPTED`: a churn prevention campaign was accepted
    /// (the notice carries the new renewal price).
    ChurnPreventionAccepted,
    /// `SCHEDULED_FOR_CANCELATION_ON_DEMAND`: a cancellation is scheduled.
    CancellationScheduled,
    /// `REVERT_CANCELATION_ON_DEMAND`: the scheduled cancellation was
    /// reverted.
    CancellationReverted,
    /// Another code, as received, clipped.
    Other(String),
}

impl DispatchReason {
    pub fn parse(value: &str) -> Self {
        match value {
            "LICENCE_CHANGE" => Self::Change,
            "LICENCE_GP_CHANGE" => Self::GracePeriodChange,
            "LICENCE_PENDING_ACTIVATION" => Self::PendingActivation,
            "LICENCE_EXPIRATION" => Self::Expiration,
            "LICENCE_PASTDUE" => Self::PastDue,
            "LICENCE_CPC_ACCEPTED" => Self::ChurnPreventionAccepted,
            "SCHEDULED_FOR_CANCELATION_ON_DEMAND" => Self::CancellationScheduled,
            "REVERT_CANCELATION_ON_DEMAND" => Self::CancellationReverted,
            other => Self::Other(clip_for_display(other, UNKNOWN_VALUE_MAX_CHARS)),
        }
    }

    /// The processor's code, or the unknown value as kept.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Change => "LICENCE_CHANGE",
            Self::GracePeriodChange => "LICENCE_GP_CHANGE",
            Self::PendingActivation => "LICENCE_PENDING_ACTIVATION",
            Self::Expiration => "LICENCE_EXPIRATION",
            Self::PastDue => "LICENCE_PASTDUE",
            Self::ChurnPreventionAccepted => "LICENCE_CPC_ACCEPTED",
            Self::CancellationScheduled => "SCHEDULED_FOR_CANCELATION_ON_DEMAND",
            Self::CancellationReverted => "REVERT_CANCELATION_ON_DEMAND",
            Self::Other(value) => value,
        }
    }
}

/// The licence type (`LICENSE_TYPE`: `REGULAR` or `TRIAL`, KC-LCN-params);
/// any other value kept as text, clipped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LicenceType {
    Regular,
    Trial,
    Other(String),
}

impl LicenceType {
    pub fn parse(value: &str) -> Self {
        match value {
            "REGULAR" => Self::Regular,
            "TRIAL" => Self::Trial,
            other => Self::Other(clip_for_display(other, UNKNOWN_VALUE_MAX_CHARS)),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Regular => "REGULAR",
            Self::Trial => "TRIAL",
            Self::Other(value) => value,
        }
    }
}

macro_rules! serialize_as_str {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

serialize_as_str!(LicenceStatus, DispatchReason, LicenceType);

/// When a subscription expires: a time, or never (the processor writes
/// `9999-12-31 23:59:59` for lifetime subscriptions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Expiration {
    At(NaiveDateTime),
    Lifetime,
}

impl Serialize for Expiration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Expiration::At(at) => at.serialize(serializer),
            Expiration::Lifetime => serializer.serialize_str("lifetime"),
        }
    }
}

/// Everything kept of one verified licence change notification.
///
/// Only references, statuses, dates, counts and money: no name, e-mail
/// address, postal address, phone number or card data, so `Debug` and the
/// serialization show it whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LicenceNotice {
    /// SHA-256 of the raw body: this delivery.
    #[serde(serialize_with = "display")]
    pub digest: BodyDigest,
    /// The notice's identity (the signed values but the signatures), the
    /// deduplication key, as for payment notifications.
    #[serde(serialize_with = "display")]
    pub identity: EventIdentity,
    /// `LICENSE_CODE`: the subscription's reference (`IPN_LICENSE_REF[]`
    /// of its orders' payment notifications).
    pub licence_code: String,
    /// `STATUS`, when sent.
    pub status: Option<LicenceStatus>,
    /// `EXPIRATION_DATE`: `None` when sent empty (a date alone is read as
    /// its midnight).
    pub expiration: Option<Expiration>,
    /// `DATE_UPDATED`: when the processor logged the change; what orders
    /// the facts of a subscription, whatever the arrival order.
    pub updated_at: NaiveDateTime,
    /// `START_DATE`.
    pub start_date: Option<NaiveDateTime>,
    /// `PURCHASE_DATE`.
    pub purchase_date: Option<NaiveDateTime>,
    /// `DISPATCH_REASON`.
    pub dispatch_reason: Option<DispatchReason>,
    /// `LICENSE_TYPE`.
    pub licence_type: Option<LicenceType>,
    /// `RECURRING`: whether the subscription renews by itself.
    pub recurring: Option<bool>,
    /// `LICENSE_PRODUCT_CODE`: the merchant's product code.
    pub product_code: Option<String>,
    /// `ORIGINAL_ORDER_REFERENCE`: the `REFNO` of the subscription's first
    /// order.
    pub original_processor_ref: Option<String>,
    /// `LAST_ORDER_REFERENCE`: the `REFNO` of its latest order.
    pub last_processor_ref: Option<String>,
    /// `RENEWALS_NUMBER`.
    pub renewals: Option<u32>,
    /// `NEXT_RENEWAL_DATE`.
    pub next_renewal_date: Option<NaiveDateTime>,
    /// `NEXT_RENEWAL_PRICE` in `NEXT_RENEWAL_CURRENCY`, exact.
    pub next_renewal_price: Option<Money>,
    /// `TEST=1`: a test subscription, which must never change a real one.
    pub test: bool,
    /// Which key of the ring verified the body.
    #[serde(serialize_with = "display")]
    pub key_id: KeyId,
    /// Which algorithm verified the body.
    #[serde(serialize_with = "display")]
    pub algorithm: Algorithm,
    /// Names of the fields where the card-number guard found a card
    /// number; their values were dropped.
    pub pan_fields: Vec<String>,
}

fn display<T: fmt::Display, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// Builds the [`LicenceNotice`] of a verified licence change notification.
///
/// `raw_body` must be the exact bytes `form` was parsed from; `verified` is
/// the result of [`crate::ipn::verify`] on `form`; the renewal price is
/// read with `currencies`, the table payment notifications are read with. Required: `LICENSE_CODE`
/// (what the notice is about, and what its receipt echoes),
/// `EXPIRATION_DATE` present, empty or not (the receipt echoes it too), and
/// `DATE_UPDATED` (what orders the facts of a subscription).
pub fn tokenize_licence(
    raw_body: &[u8],
    form: &FormBody,
    verified: &Verified,
    currencies: &Currencies,
) -> Result<LicenceNotice, TokenizeError> {
    // The guard first: no check below may quote or keep a card number.
    let pan_fields = find_pan_fields(form);
    if let Some(field) = STORED_FIELDS
        .into_iter()
        .find(|stored| pan_fields.iter().any(|found| found == stored))
    {
        return Err(TokenizeError::PanInAllowListedField { field });
    }
    // Then the layout: names are not signed (see `crate::layout`).
    Layout::lcn().check(form)?;

    let licence_code = parse_licence_code(required(form, fields::LICENSE_CODE)?)?;
    let expiration = match form.get(fields::EXPIRATION_DATE) {
        None => return Err(TokenizeError::MissingField(fields::EXPIRATION_DATE)),
        Some("") => None,
        Some(value) => Some(parse_expiration(value)?),
    };
    let updated_at = parse_date(fields::DATE_UPDATED, required(form, fields::DATE_UPDATED)?)?;
    let test = match optional(form, fields::TEST) {
        None | Some("0") => false,
        Some("1") => true,
        Some(_) => {
            return Err(TokenizeError::InvalidField {
                field: fields::TEST,
                reason: "not 0 or 1",
            });
        }
    };
    let recurring = optional(form, fields::RECURRING)
        .map(|value| match value.to_ascii_uppercase().as_str() {
            "1" | "YES" | "TRUE" => Ok(true),
            "0" | "NO" | "FALSE" => Ok(false),
            _ => Err(TokenizeError::InvalidField {
                field: fields::RECURRING,
                reason: "not 0, 1, YES or NO",
            }),
        })
        .transpose()?;
    let date = |field| {
        optional(form, field)
            .map(|v| parse_date(field, v))
            .transpose()
    };
    let reference = |field| {
        optional(form, field)
            .map(|v| parse_order_reference(field, v))
            .transpose()
    };
    let renewals = optional(form, fields::RENEWALS_NUMBER)
        .map(|value| {
            value
                .parse::<u32>()
                .ok()
                .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                .ok_or(TokenizeError::InvalidField {
                    field: fields::RENEWALS_NUMBER,
                    reason: "not a count",
                })
        })
        .transpose()?;
    let identity = EventIdentity::of(form).map_err(|_| TokenizeError::InvalidField {
        field: fields::LICENSE_CODE,
        reason: "the form cannot be grouped",
    })?;
    Ok(LicenceNotice {
        digest: BodyDigest::of(raw_body),
        identity,
        licence_code,
        status: optional(form, fields::STATUS).map(LicenceStatus::parse),
        expiration,
        updated_at,
        start_date: date(fields::START_DATE)?,
        purchase_date: date(fields::PURCHASE_DATE)?,
        dispatch_reason: optional(form, fields::DISPATCH_REASON).map(DispatchReason::parse),
        licence_type: optional(form, fields::LICENSE_TYPE).map(LicenceType::parse),
        recurring,
        product_code: optional(form, fields::LICENSE_PRODUCT_CODE)
            .map(parse_product_code)
            .transpose()?,
        original_processor_ref: reference(fields::ORIGINAL_ORDER_REFERENCE)?,
        last_processor_ref: reference(fields::LAST_ORDER_REFERENCE)?,
        renewals,
        next_renewal_date: date(fields::NEXT_RENEWAL_DATE)?,
        next_renewal_price: parse_renewal_price(form, currencies)?,
        test,
        key_id: verified.key_id.clone(),
        algorithm: verified.algorithm,
        pan_fields,
    })
}

/// Upper case, spaces and hyphens as `_`, trimmed.
fn normalized(value: &str) -> String {
    value
        .trim()
        .chars()
        .map(|c| match c {
            ' ' | '-' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

fn required<'a>(form: &'a FormBody, field: &'static str) -> Result<&'a str, TokenizeError> {
    optional(form, field).ok_or(TokenizeError::MissingField(field))
}

/// The value of an optional field; absent and empty are the same.
fn optional<'a>(form: &'a FormBody, field: &str) -> Option<&'a str> {
    form.get(field).filter(|value| !value.is_empty())
}

fn parse_licence_code(value: &str) -> Result<String, TokenizeError> {
    let valid = value.len() <= MAX_LICENCE_CODE_CHARS
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(value.to_owned())
    } else {
        Err(TokenizeError::InvalidField {
            field: fields::LICENSE_CODE,
            reason: "not 1-50 characters of A-Z, a-z, 0-9, - and _",
        })
    }
}

fn parse_date(field: &'static str, value: &str) -> Result<NaiveDateTime, TokenizeError> {
    NaiveDateTime::parse_from_str(value, DATE_TIME_FORMAT)
        .or_else(|_| {
            NaiveDate::parse_from_str(value, DATE_FORMAT)
                .map(|day| day.and_time(Default::default()))
        })
        .map_err(|_| TokenizeError::InvalidField {
            field,
            reason: "not a YYYY-MM-DD or YYYY-MM-DD HH:MM:SS date",
        })
}

fn parse_expiration(value: &str) -> Result<Expiration, TokenizeError> {
    let at = parse_date(fields::EXPIRATION_DATE, value)?;
    Ok(if chrono::Datelike::year(&at) == LIFETIME_YEAR {
        Expiration::Lifetime
    } else {
        Expiration::At(at)
    })
}

fn parse_order_reference(field: &'static str, value: &str) -> Result<String, TokenizeError> {
    if value.len() <= MAX_ORDER_REFERENCE_CHARS && value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(value.to_owned())
    } else {
        Err(TokenizeError::InvalidField {
            field,
            reason: "not 1-20 digits",
        })
    }
}

fn parse_product_code(value: &str) -> Result<String, TokenizeError> {
    let invalid = |reason| TokenizeError::InvalidField {
        field: fields::LICENSE_PRODUCT_CODE,
        reason,
    };
    if value.chars().count() > MAX_PRODUCT_CODE_CHARS {
        return Err(invalid("longer than 100 characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid("contains control characters"));
    }
    Ok(value.to_owned())
}

/// `NEXT_RENEWAL_PRICE` in `NEXT_RENEWAL_CURRENCY`: both or neither.
fn parse_renewal_price(
    form: &FormBody,
    currencies: &Currencies,
) -> Result<Option<Money>, TokenizeError> {
    let Some(amount) = optional(form, fields::NEXT_RENEWAL_PRICE) else {
        return Ok(None);
    };
    let currency = currencies
        .currency(required(form, fields::NEXT_RENEWAL_CURRENCY)?)
        .map_err(|err| TokenizeError::InvalidField {
            field: fields::NEXT_RENEWAL_CURRENCY,
            reason: err.reason(),
        })?;
    Money::parse_amount(amount, currency)
        .map(Some)
        .map_err(|err| TokenizeError::InvalidField {
            field: fields::NEXT_RENEWAL_PRICE,
            reason: err.reason(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipn::{FormLimits, KeyRing, SecretKey, SignaturePolicy, sign, verify};
    use crate::layout::LayoutError;

    const KEY: &str = "AABBCCDDEEFF";

    /// A full LCN, every documented field in the processor's order, the
    /// personal data of the processor's own example, and a card.
    const FULL: &[(&str, &str)] = &[
        ("FIRST_NAME", "John"),
        ("LAST_NAME", "Smith"),
        ("COMPANY", "BV-6677"),
        ("EMAIL", "johnsmith@email.com"),
        ("PHONE", "951-121-2121"),
        ("FAX", "951-121-2122"),
        ("COUNTRY", "United States of America"),
        ("STATE", "New York"),
        ("CITY", "Brooklyn"),
        ("ZIP", "11201"),
        ("ADDRESS", "101 Main Street"),
        ("LICENSE_CODE", "3C343D0FAF"),
        ("EXPIRATION_DATE_TIME", "2026-12-02 09:20:44"),
        ("EXPIRATION_DATE", "2026-12-02 09:20:44"),
        ("DATE_UPDATED", "2026-11-30 08:00:00"),
        ("AVANGATE_CUSTOMER_REFERENCE", "884855078"),
        ("EXTERNAL_CUSTOMER_REFERENCE", "jsmith@example.org"),
        ("TEST", "0"),
        ("CHANGED_BY", "SYSTEM"),
        ("LICENSE_TYPE", "REGULAR"),
        ("DISABLED", "0"),
        ("RECURRING", "1"),
        ("LICENSE_PRODUCT", "31126410"),
        ("START_DATE", "2026-11-02 09:20:44"),
        ("PURCHASE_DATE", "2026-11-02 09:15:31"),
        ("LICENSE_LIFETIME", "NO"),
        ("NEXT_RENEWAL_DATE", "2026-12-02"),
        ("NEXT_RENEWAL_PRICE", "49.90"),
        ("NEXT_RENEWAL_CURRENCY", "eur"),
        ("NEXT_RENEWAL_PAYMETHOD", "Visa/MasterCard"),
        ("NEXT_RENEWAL_PAYMETHOD_CODE", "CCVISAMC"),
        ("NEXT_RENEWAL_CARD_LAST_DIGITS", "4242"),
        ("NEXT_RENEWAL_CARD_TYPE", "visa"),
        ("NEXT_RENEWAL_CARD_EXPIRATION_DATE", "09/31"),
        ("ACTIVATION_CODE", "ABCD-EFGH-IJKL"),
        ("STATUS", "PAST DUE"),
        ("EXPIRED", "0"),
        ("TIMEZONE_OFFSET", "GMT+02:00"),
        ("COUNTRY_CODE", "us"),
        ("END_USER_LANGUAGE", "en"),
        ("DISPATCH_REASON", "LICENCE_PASTDUE"),
        ("LAST_ORDER_REFERENCE", "211153389"),
        ("ORIGINAL_ORDER_REFERENCE", "129611332"),
        ("LICENSE_PRODUCT_CODE", "BSP-1"),
        (
            "LCN_LICENSE_ADDITIONAL_INFO_CUSTOM_VALUE",
            "seat for John Smith",
        ),
        ("RENEWALS_NUMBER", "3"),
        ("UPGRADES_NUMBER", "0"),
        ("IS_TRIAL", "0"),
    ];

    /// The personal and card data of [`FULL`].
    const PERSONAL: &[&str] = &[
        "John",
        "Smith",
        "BV-6677",
        "johnsmith",
        "email.com",
        "951-121",
        "United States",
        "New York",
        "Brooklyn",
        "11201",
        "101 Main",
        "884855078",
        "jsmith",
        "example.org",
        "4242",
        "visa",
        "09/31",
        "Visa/MasterCard",
        "ABCD-EFGH",
        "GMT+02",
    ];

    fn body(changes: &[(&str, Option<&str>)]) -> FormBody {
        let mut form = FormBody::default();
        for (name, value) in FULL {
            match changes.iter().find(|(n, _)| n == name) {
                Some((_, Some(v))) => form.push(*name, *v),
                Some((_, None)) => {}
                None => form.push(*name, *value),
            }
        }
        for (name, value) in changes {
            if let (false, Some(v)) = (FULL.iter().any(|(n, _)| n == name), value) {
                form = Layout::lcn().with_field(&form, name, v);
            }
        }
        form
    }

    fn verified() -> Verified {
        Verified {
            key_id: KeyId::parse("default").unwrap(),
            algorithm: Algorithm::Sha3_256,
        }
    }

    fn run(form: &FormBody) -> Result<LicenceNotice, TokenizeError> {
        let raw = form.encode();
        let parsed = FormBody::parse(raw.as_bytes(), &FormLimits::default()).unwrap();
        tokenize_licence(raw.as_bytes(), &parsed, &verified(), &Currencies::iso())
    }

    fn at(text: &str) -> NaiveDateTime {
        parse_date("T", text).unwrap()
    }

    #[test]
    fn keeps_only_the_allow_list() {
        let notice = run(&body(&[])).unwrap();
        assert_eq!(notice.licence_code, "3C343D0FAF");
        assert_eq!(notice.status, Some(LicenceStatus::PastDue));
        assert_eq!(
            notice.expiration,
            Some(Expiration::At(at("2026-12-02 09:20:44")))
        );
        assert_eq!(notice.updated_at, at("2026-11-30 08:00:00"));
        assert_eq!(notice.start_date, Some(at("2026-11-02 09:20:44")));
        assert_eq!(notice.purchase_date, Some(at("2026-11-02 09:15:31")));
        assert_eq!(notice.dispatch_reason, Some(DispatchReason::PastDue));
        assert_eq!(notice.licence_type, Some(LicenceType::Regular));
        assert_eq!(notice.recurring, Some(true));
        assert_eq!(notice.product_code.as_deref(), Some("BSP-1"));
        assert_eq!(notice.original_processor_ref.as_deref(), Some("129611332"));
        assert_eq!(notice.last_processor_ref.as_deref(), Some("211153389"));
        assert_eq!(notice.renewals, Some(3));
        assert_eq!(notice.next_renewal_date, Some(at("2026-12-02")));
        assert_eq!(
            notice.next_renewal_price,
            Some(Money::iso("49.90", "EUR").unwrap())
        );
        assert!(!notice.test);
        assert_eq!(notice.key_id.as_str(), "default");
        assert_eq!(notice.algorithm, Algorithm::Sha3_256);
        assert!(notice.pan_fields.is_empty());
    }

    /// Issue 21: names, e-mail, address, phone and card data of a full LCN
    /// reach neither the notice nor its serialization (nor `Debug`).
    #[test]
    fn no_personal_or_card_data_reaches_the_notice_or_its_serialization() {
        let notice = run(&body(&[])).unwrap();
        let json = serde_json::to_string(&notice).unwrap();
        let debug = format!("{notice:?}");
        // The two SHA-256 digests are hex: digits that may spell a phone's
        // or a card's by chance, and nothing personal by construction.
        let hashes = [notice.digest.as_str(), notice.identity.as_str()];
        let without_hashes = |text: &str| {
            hashes
                .iter()
                .fold(text.to_owned(), |text, hash| text.replace(hash, "<sha256>"))
        };
        for shown in [&without_hashes(&json), &without_hashes(&debug)] {
            for personal in PERSONAL {
                assert!(!shown.contains(personal), "{personal} in {shown}");
            }
        }
        // What is there, is there.
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["licence_code"], "3C343D0FAF");
        assert_eq!(value["status"], "PAST_DUE");
        assert_eq!(value["expiration"], "2026-12-02T09:20:44");
        assert_eq!(value["next_renewal_price"]["amount"], "49.90");
        assert_eq!(value["next_renewal_price"]["currency"], "EUR");
        assert_eq!(value["test"], false);
        assert_eq!(value["algorithm"], "sha3-256");
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut allowed = [
            "digest",
            "identity",
            "licence_code",
            "status",
            "expiration",
            "updated_at",
            "start_date",
            "purchase_date",
            "dispatch_reason",
            "licence_type",
            "recurring",
            "product_code",
            "original_processor_ref",
            "last_processor_ref",
            "renewals",
            "next_renewal_date",
            "next_renewal_price",
            "test",
            "key_id",
            "algorithm",
            "pan_fields",
        ];
        allowed.sort_unstable();
        assert_eq!(keys, allowed, "the allow-list, and nothing else");
    }

    #[test]
    fn works_on_a_signed_and_verified_body() {
        let form = sign(&body(&[]), &SecretKey::new(KEY), &[Algorithm::Sha256]).unwrap();
        let raw = form.encode();
        let verified = verify(&form, &KeyRing::single(KEY), &SignaturePolicy::default()).unwrap();
        let notice =
            tokenize_licence(raw.as_bytes(), &form, &verified, &Currencies::iso()).unwrap();
        assert_eq!(notice.algorithm, Algorithm::Sha256);
        assert_eq!(notice.digest, BodyDigest::of(raw.as_bytes()));
        assert!(notice.pan_fields.is_empty(), "signature fields are skipped");
        // A retry of the same notice, re-signed with another algorithm,
        // has the same identity.
        let again = sign(&body(&[]), &SecretKey::new(KEY), &[Algorithm::Sha3_256]).unwrap();
        let verified = verify(&again, &KeyRing::single(KEY), &SignaturePolicy::default()).unwrap();
        let repeat = tokenize_licence(
            again.encode().as_bytes(),
            &again,
            &verified,
            &Currencies::iso(),
        )
        .unwrap();
        assert_eq!(repeat.identity, notice.identity);
        assert_ne!(repeat.digest, notice.digest);
    }

    #[test]
    fn statuses_reasons_and_types_known_or_kept_as_text() {
        for (wire, status) in [
            ("ACTIVE", LicenceStatus::Active),
            ("PASTDUE", LicenceStatus::PastDue),
            ("past_due", LicenceStatus::PastDue),
            ("EXPIRED", LicenceStatus::Expired),
            ("DISABLED", LicenceStatus::Disabled),
            ("PENDING ACTIVATION", LicenceStatus::PendingActivation),
            ("PENDING_ACTIVATION", LicenceStatus::PendingActivation),
            ("CANCELED", LicenceStatus::Canceled),
            ("CANCELLED", LicenceStatus::Canceled),
            (
                "PAUSED\r\nforged",
                LicenceStatus::Other("PAUSED??forged".into()),
            ),
        ] {
            let notice = run(&body(&[("STATUS", Some(wire))])).unwrap();
            assert_eq!(notice.status, Some(status), "{wire}");
        }
        assert_eq!(run(&body(&[("STATUS", None)])).unwrap().status, None);
        let long = "Z".repeat(100);
        let notice = run(&body(&[("STATUS", Some(&long))])).unwrap();
        assert_eq!(notice.status.unwrap().as_str().len(), 40);
        for (wire, reason) in [
            ("LICENCE_CHANGE", DispatchReason::Change),
            ("LICENCE_GP_CHANGE", DispatchReason::GracePeriodChange),
            (
                "LICENCE_PENDING_ACTIVATION",
                DispatchReason::PendingActivation,
            ),
            ("LICENCE_EXPIRATION", DispatchReason::Expiration),
            (
                "LICENCE_CPC_ACCEPTED",
                DispatchReason::ChurnPreventionAccepted,
            ),
            (
                "SCHEDULED_FOR_CANCELATION_ON_DEMAND",
                DispatchReason::CancellationScheduled,
            ),
            (
                "REVERT_CANCELATION_ON_DEMAND",
                DispatchReason::CancellationReverted,
            ),
            (
                "LICENCE_PAUSED",
                DispatchReason::Other("LICENCE_PAUSED".into()),
            ),
        ] {
            let notice = run(&body(&[("DISPATCH_REASON", Some(wire))])).unwrap();
            assert_eq!(notice.dispatch_reason.as_ref(), Some(&reason), "{wire}");
            assert_eq!(reason.as_str(), wire);
        }
        let trial = run(&body(&[("LICENSE_TYPE", Some("TRIAL"))])).unwrap();
        assert_eq!(trial.licence_type, Some(LicenceType::Trial));
        let other = run(&body(&[("LICENSE_TYPE", Some("UPGRADE"))])).unwrap();
        assert_eq!(
            other.licence_type,
            Some(LicenceType::Other("UPGRADE".into()))
        );
    }

    #[test]
    fn dates_lifetime_flags_and_counts() {
        let notice = run(&body(&[
            ("EXPIRATION_DATE", Some("9999-12-31 23:59:59")),
            ("RECURRING", Some("0")),
            ("TEST", Some("1")),
            ("RENEWALS_NUMBER", None),
        ]))
        .unwrap();
        assert_eq!(notice.expiration, Some(Expiration::Lifetime));
        assert_eq!(notice.recurring, Some(false));
        assert!(notice.test);
        assert_eq!(notice.renewals, None);
        // The processor's receipt example writes a date alone.
        let notice = run(&body(&[("EXPIRATION_DATE", Some("2005-03-03"))])).unwrap();
        assert_eq!(
            notice.expiration,
            Some(Expiration::At(at("2005-03-03 00:00:00")))
        );
        // Present but empty: no expiration (pending activation).
        let notice = run(&body(&[("EXPIRATION_DATE", Some(""))])).unwrap();
        assert_eq!(notice.expiration, None);
        // Absent and empty optional fields are the same.
        let notice = run(&body(&[
            ("TEST", None),
            ("RECURRING", Some("")),
            ("NEXT_RENEWAL_PRICE", Some("")),
            ("NEXT_RENEWAL_CURRENCY", None),
            ("LICENSE_PRODUCT_CODE", None),
        ]))
        .unwrap();
        assert!(!notice.test);
        assert_eq!(notice.recurring, None);
        assert_eq!(notice.next_renewal_price, None);
        assert_eq!(notice.product_code, None);
        assert_eq!(
            run(&body(&[
                ("NEXT_RENEWAL_PRICE", Some("0.90")),
                ("NEXT_RENEWAL_CURRENCY", Some("JPY"))
            ]))
            .unwrap_err(),
            TokenizeError::InvalidField {
                field: "NEXT_RENEWAL_PRICE",
                reason: Money::iso("0.9", "JPY").unwrap_err().reason()
            }
        );
    }

    #[test]
    fn malformed_lcns_are_clear_typed_errors_without_values() {
        for (changes, expected) in [
            (
                vec![("LICENSE_CODE", None)],
                TokenizeError::MissingField("LICENSE_CODE"),
            ),
            (
                vec![("LICENSE_CODE", Some(""))],
                TokenizeError::MissingField("LICENSE_CODE"),
            ),
            (
                vec![("EXPIRATION_DATE", None), ("EXPIRATION_DATE_TIME", None)],
                TokenizeError::MissingField("EXPIRATION_DATE"),
            ),
            (
                vec![("DATE_UPDATED", None)],
                TokenizeError::MissingField("DATE_UPDATED"),
            ),
            (
                vec![("NEXT_RENEWAL_CURRENCY", None)],
                TokenizeError::MissingField("NEXT_RENEWAL_CURRENCY"),
            ),
        ] {
            assert_eq!(run(&body(&changes)).unwrap_err(), expected, "{changes:?}");
        }
        for (field, value) in [
            ("LICENSE_CODE", "3C34 3D0FAF"),
            ("LICENSE_CODE", &*"A".repeat(51)),
            ("EXPIRATION_DATE", "03/03/2005"),
            ("DATE_UPDATED", "yesterday"),
            ("TEST", "yes"),
            ("RECURRING", "maybe"),
            ("RENEWALS_NUMBER", "-1"),
            ("RENEWALS_NUMBER", "+1"),
            ("ORIGINAL_ORDER_REFERENCE", "REF-1"),
            ("LAST_ORDER_REFERENCE", "12 34"),
            ("NEXT_RENEWAL_DATE", "2026-02-30"),
            ("NEXT_RENEWAL_PRICE", "49,90"),
            ("NEXT_RENEWAL_CURRENCY", "EURO"),
            ("LICENSE_PRODUCT_CODE", "line\nbreak"),
        ] {
            let error = run(&body(&[(field, Some(value))])).unwrap_err();
            assert_eq!(
                (error.field(), error.reason()),
                (field, "invalid_field"),
                "{field}={value:?}"
            );
            let shown = format!("{error} {error:?}");
            assert!(!shown.contains(value), "{shown}");
        }
    }

    #[test]
    fn a_card_number_in_a_kept_field_refuses_the_notice_elsewhere_it_is_dropped() {
        let error = run(&body(&[("LICENSE_PRODUCT_CODE", Some("4111111111111111"))])).unwrap_err();
        assert_eq!(
            error,
            TokenizeError::PanInAllowListedField {
                field: "LICENSE_PRODUCT_CODE"
            }
        );
        assert!(!error.to_string().contains("4111"));
        let notice = run(&body(&[(
            "LCN_LICENSE_ADDITIONAL_INFO_CUSTOM_VALUE",
            Some("card 4111 1111 1111 1111"),
        )]))
        .unwrap();
        assert_eq!(
            notice.pan_fields,
            ["LCN_LICENSE_ADDITIONAL_INFO_CUSTOM_VALUE"]
        );
        assert!(!format!("{notice:?}").contains("4111"));
    }

    /// Names are bound in an LCN too: `TEST` and `STATUS` are read only
    /// from scalars under their exact names, and a body laid out as the
    /// processor never lays one out is refused.
    #[test]
    fn renamed_swapped_or_repeated_flags_are_refused() {
        let test = body(&[("TEST", Some("1")), ("STATUS", Some("ACTIVE"))]);
        assert!(run(&test).unwrap().test);
        let renamed = |form: &FormBody, renames: &[(&str, &str)]| {
            let mut out = FormBody::default();
            for (name, value) in form.pairs() {
                let name = renames
                    .iter()
                    .find(|(from, _)| *from == name)
                    .map_or(name, |(_, to)| *to);
                out.push(name, value);
            }
            out
        };
        assert_eq!(
            run(&renamed(&test, &[("TEST", "TEST[]")])),
            Err(TokenizeError::Layout(LayoutError::OtherForm {
                field: "TEST"
            }))
        );
        // TEST=1 swapped with DISABLED=0: the swap says "not a test".
        let swapped = renamed(&test, &[("TEST", "DISABLED"), ("DISABLED", "TEST")]);
        assert_eq!(swapped.get("TEST"), Some("0"));
        assert_eq!(
            run(&swapped),
            Err(TokenizeError::Layout(LayoutError::OutOfOrder {
                field: "DISABLED",
                other: "CHANGED_BY"
            }))
        );
        assert_eq!(
            run(&renamed(&test, &[("STATUS", "status")])),
            Err(TokenizeError::Layout(LayoutError::OtherForm {
                field: "STATUS"
            }))
        );
        let mut twice = test.clone();
        twice.push("STATUS", "EXPIRED");
        assert_eq!(
            run(&twice),
            Err(TokenizeError::Layout(LayoutError::Repeated {
                field: "STATUS"
            }))
        );
        // A payment notification renamed into a licence one.
        let mut foreign = test.clone();
        foreign.push("REFNO", "71000101");
        assert_eq!(
            run(&foreign),
            Err(TokenizeError::Layout(LayoutError::Foreign {
                field: "REFNO"
            }))
        );
    }
}
