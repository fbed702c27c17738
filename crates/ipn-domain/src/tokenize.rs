//! Tokenization: from a verified notification to the few facts we keep.
//!
//! A notification carries names, addresses, phone numbers, e-mail addresses
//! and sometimes (by accident) card numbers. The design allows storing only
//! an allow-list: references, status, amount, payment method code, dates,
//! the body's digest, which key and algorithm verified it, and keyed
//! pseudonyms. [`tokenize`] builds a [`PaymentEvent`] of exactly those, and
//! everything else in the body is dropped here, before any I/O layer sees
//! an event.
//!
//! Allow-listed fields are *parsed*, not copied: a value that does not have
//! the documented shape is a [`TokenizeError`] that names the field and the
//! reason, never the value, because a malformed field is precisely where a
//! stray card number or e-mail address would be.

use std::fmt;

use chrono::NaiveDateTime;
use hmac::Mac;
use sha2::{Digest, Sha256};

use crate::ipn::{Algorithm, FormBody, KeyId, Verified};

use super::chargeback::ChargebackNotice;
use super::hmac_key::HmacKey;
use super::layout::{Layout, LayoutError};
use super::money::{Currencies, Currency, Money};
use super::notice_money::{Commission, NoticeMoney, Rate};
use super::pan::find_pan_fields;
use super::status::{OrderStatus, UNKNOWN_VALUE_MAX_CHARS, clip_for_display};

/// Field names of the processor's protocol that tokenization reads.
pub mod fields {
    pub const REFNO: &str = "REFNO";
    pub const REFNOEXT: &str = "REFNOEXT";
    pub const ORDERSTATUS: &str = "ORDERSTATUS";
    pub const FRAUD_STATUS: &str = "FRAUD_STATUS";
    pub const TEST_ORDER: &str = "TEST_ORDER";
    pub const IPN_TOTALGENERAL: &str = "IPN_TOTALGENERAL";
    pub const CURRENCY: &str = "CURRENCY";
    pub const PAYMETHOD_CODE: &str = "PAYMETHOD_CODE";
    pub const SALEDATE: &str = "SALEDATE";
    pub const PAYMENTDATE: &str = "PAYMENTDATE";
    pub const COMPLETE_DATE: &str = "COMPLETE_DATE";
    pub const IPN_DATE: &str = "IPN_DATE";
    pub const MESSAGE_ID: &str = "MESSAGE_ID";
    pub const CUSTOMEREMAIL: &str = "CUSTOMEREMAIL";
    pub const CHARGEBACK_RESOLUTION: &str = "CHARGEBACK_RESOLUTION";
    pub const CHARGEBACK_REASON_CODE: &str = "CHARGEBACK_REASON_CODE";
}

/// The fields whose values (or a value derived from them) we store as they
/// are. A card number in one of them fails tokenization: we cannot drop the
/// value and still have the event. Fields reduced to a boolean
/// (`FRAUD_STATUS`, `TEST_ORDER`) or hashed (`CUSTOMEREMAIL`) are not listed:
/// nothing of their text is kept.
pub const STORED_FIELDS: [&str; 12] = [
    fields::REFNO,
    fields::REFNOEXT,
    fields::ORDERSTATUS,
    fields::IPN_TOTALGENERAL,
    fields::CURRENCY,
    fields::PAYMETHOD_CODE,
    fields::SALEDATE,
    fields::PAYMENTDATE,
    fields::COMPLETE_DATE,
    fields::IPN_DATE,
    fields::CHARGEBACK_RESOLUTION,
    fields::CHARGEBACK_REASON_CODE,
];

/// Longest accepted `REFNO`: the processor documents up to 9 digits; we
/// leave room for growth but keep the column bounded.
pub const MAX_PROCESSOR_REF_CHARS: usize = 20;
/// Longest accepted `REFNOEXT` (docs/protocol.md §1.1).
pub const MAX_ORDER_REF_CHARS: usize = 100;
/// Longest accepted `PAYMETHOD_CODE`.
pub const MAX_PAYMENT_METHOD_CHARS: usize = 32;

/// The format of `SALEDATE`, `PAYMENTDATE` and `COMPLETE_DATE` (docs/protocol.md §1.1).
pub const DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";
/// The format of `IPN_DATE` (docs/protocol.md §1.1).
pub const IPN_DATE_FORMAT: &str = "%Y%m%d%H%M%S";
/// PHP's "no date" value, which the platform's PHP heritage makes likely for
/// a date that has not happened yet (a PAYMENTDATE of a pending order).
const ZERO_DATE: &str = "0000-00-00 00:00:00";

/// Fields whose value changes from one delivery of a notification to the
/// next: the processor stamps each attempt (its retries run for two days)
/// and each manual resend with a new `IPN_DATE`. They are signed, but they
/// are not part of what a notification *says*, so [`EventIdentity`] leaves
/// them out (docs/protocol.md §11).
pub const PER_DELIVERY_FIELDS: [&str; 1] = [fields::IPN_DATE];

/// How long the processor keeps retrying a notification whose receipt it
/// did not get (docs/protocol.md §5): a repeat later than this after the
/// first delivery is not one of its retries.
pub const PROCESSOR_RETRY_HORIZON_HOURS: i64 = 48;

/// The identity of a notification: the SHA-256 of its signed values in
/// wire order (what the HMAC covers, docs/protocol.md §3) without the
/// signature fields and without the [`PER_DELIVERY_FIELDS`].
///
/// The signature covers values, not names or encodings, so the same
/// notice arrives as many different bodies: a processor retry (new
/// `IPN_DATE`), the copy for a second notification URL signed with another
/// algorithm, a copy re-encoded by a proxy (`%31` for `1`, a trailing `&`),
/// a copy with an unsigned field name changed. All of them have this one
/// identity, and the store counts a notice once per identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventIdentity(String);

impl EventIdentity {
    /// The identity of a parsed form.
    pub fn of(form: &FormBody) -> Result<Self, crate::ipn::FormError> {
        let source = crate::ipn::source_string_excluding(form, &PER_DELIVERY_FIELDS)?;
        Ok(Self(hex::encode(Sha256::digest(&source))))
    }

    /// Reads back a stored identity.
    pub fn parse(hex: &str) -> Result<Self, NotSha256Hex> {
        if is_sha256_hex(hex) {
            Ok(Self(hex.to_owned()))
        } else {
            Err(NotSha256Hex)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SHA-256 of a raw notification body, lower-case hex: the identity of
/// one *delivery* (message ids, parked messages, an exact redelivery by the
/// broker). The identity of the notification it carries is
/// [`EventIdentity`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BodyDigest(String);

/// A stored digest or pseudonym that is not 64 lower-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a SHA-256 value: expected 64 lower-case hex digits")]
pub struct NotSha256Hex;

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl BodyDigest {
    /// The digest of `raw_body`.
    pub fn of(raw_body: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(raw_body)))
    }

    /// Reads back a stored digest.
    pub fn parse(hex: &str) -> Result<Self, NotSha256Hex> {
        if is_sha256_hex(hex) {
            Ok(Self(hex.to_owned()))
        } else {
            Err(NotSha256Hex)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BodyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key of the customer pseudonyms (HMAC-SHA256).
///
/// A *keyed* hash, not a plain one: e-mail addresses are guessable, and a
/// plain SHA-256 of one can be reversed by hashing candidate addresses.
/// Without the key nobody can; with it, finance can still find "all payments
/// of this customer" by pseudonymizing the address they were given
/// ([`PseudonymKey::pseudonymize_email`]). `Debug` is redacted and there is
/// no `Display`.
#[derive(Clone)]
pub struct PseudonymKey {
    key: HmacKey,
}

impl PseudonymKey {
    /// A key from its bytes; any length is accepted, as by HMAC.
    pub fn new(bytes: impl AsRef<[u8]>) -> Self {
        Self {
            key: HmacKey::new(bytes),
        }
    }

    /// The pseudonym of an e-mail address: HMAC-SHA256 of the trimmed,
    /// lower-cased address, or `None` when nothing is left after trimming.
    ///
    /// Normalizing first makes `Jane@Example.com ` and `jane@example.com`
    /// the same customer, which is what finance means by "customer".
    pub fn pseudonymize_email(&self, email: &str) -> Option<Pseudonym> {
        let normalized = email.trim().to_lowercase();
        if normalized.is_empty() {
            return None;
        }
        let mut mac = self.key.mac();
        mac.update(normalized.as_bytes());
        Some(Pseudonym(hex::encode(mac.finalize().into_bytes())))
    }
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey(<redacted>)")
    }
}

/// A keyed pseudonym (HMAC-SHA256, lower-case hex) of a customer attribute.
///
/// Pseudonymous data is still personal data (it links payments to one
/// person), so `Debug` is redacted and there is no `Display`; the store
/// reads it with [`Pseudonym::as_str`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pseudonym(String);

impl Pseudonym {
    /// Reads back a stored pseudonym.
    pub fn parse(hex: &str) -> Result<Self, NotSha256Hex> {
        if is_sha256_hex(hex) {
            Ok(Self(hex.to_owned()))
        } else {
            Err(NotSha256Hex)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pseudonym(<redacted>)")
    }
}

/// The notification's `ORDERSTATUS`, known or not.
///
/// An unknown status is not a tokenization error: docs/protocol.md §10 wants it
/// recorded and turned into a review item, and the processor adding a
/// status must not stop every notification carrying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusField {
    Known(OrderStatus),
    /// The value as received, clipped to 40 characters with control
    /// characters replaced (a status is not personal data).
    Unknown(String),
}

impl StatusField {
    /// Parses a wire value; never fails.
    pub fn parse(value: &str) -> Self {
        match OrderStatus::parse(value) {
            Ok(status) => StatusField::Known(status),
            Err(_) => StatusField::Unknown(clip_for_display(value, UNKNOWN_VALUE_MAX_CHARS)),
        }
    }

    /// The text to store: the wire value of a known status, or the clipped
    /// unknown value.
    pub fn as_str(&self) -> &str {
        match self {
            StatusField::Known(status) => status.as_str(),
            StatusField::Unknown(value) => value,
        }
    }

    pub fn known(&self) -> Option<OrderStatus> {
        match self {
            StatusField::Known(status) => Some(*status),
            StatusField::Unknown(_) => None,
        }
    }
}

/// Everything we keep of one verified notification.
///
/// Fields are public so that the simulator and tests can build events
/// directly; [`tokenize`] is the only way the worker makes them.
#[derive(Clone, PartialEq, Eq)]
pub struct PaymentEvent {
    /// SHA-256 of the raw body: this delivery.
    pub digest: BodyDigest,
    /// The notification's identity: the deduplication key.
    pub identity: EventIdentity,
    /// `REFNO`: the processor's order reference, digits only.
    pub processor_ref: String,
    /// `REFNOEXT`: the merchant's order reference, when the checkout set
    /// one (the hosted cart and the processor's renewals leave it empty).
    /// Which order the event is about is [`crate::OrderSource::key`]'s
    /// decision.
    pub merchant_ref: Option<String>,
    pub status: StatusField,
    /// `FRAUD_STATUS` was `DENIED`.
    pub fraud_denied: bool,
    /// `TEST_ORDER` was `1`.
    pub test_order: bool,
    /// `IPN_TOTALGENERAL` in `CURRENCY`; negative for refunds.
    pub amount: Money,
    /// `PAYMETHOD_CODE`, e.g. `CCVISAMC`.
    pub payment_method: Option<String>,
    pub sale_date: Option<NaiveDateTime>,
    pub payment_date: Option<NaiveDateTime>,
    pub complete_date: Option<NaiveDateTime>,
    /// `IPN_DATE`: when the processor issued the notification.
    pub ipn_date: Option<NaiveDateTime>,
    /// The notice carries a non-empty `MESSAGE_ID` (the processor's id of
    /// the message, among the signed values): a repeat of its identity is
    /// then the same message, never a second event (crate::repeats).
    pub carries_message_id: bool,
    /// Which key of the ring verified the body.
    pub key_id: KeyId,
    /// Which algorithm verified the body.
    pub algorithm: Algorithm,
    /// Keyed pseudonym of `CUSTOMEREMAIL`.
    pub customer_pseudonym: Option<Pseudonym>,
    /// Names of the fields where the PAN guard found a card number; their
    /// values were dropped.
    pub pan_fields: Vec<String>,
    /// The line items that name a subscription (`IPN_LICENSE_REF[i]`).
    pub licences: Vec<crate::subscription::LicenceLine>,
    /// VAT, commission and the payout side ([`tokenize_money`]).
    pub money: NoticeMoney,
    /// The dispute the notice is about (`CHARGEBACK_RESOLUTION` other
    /// than empty or `NONE`), with its reason code.
    pub chargeback: Option<ChargebackNotice>,
}

impl fmt::Debug for PaymentEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PaymentEvent")
            .field("digest", &self.digest)
            .field("identity", &self.identity)
            .field("processor_ref", &self.processor_ref)
            .field("merchant_ref", &self.merchant_ref)
            .field("status", &self.status)
            .field("fraud_denied", &self.fraud_denied)
            .field("test_order", &self.test_order)
            .field("amount", &self.amount)
            .field("payment_method", &self.payment_method)
            .field("sale_date", &self.sale_date)
            .field("payment_date", &self.payment_date)
            .field("complete_date", &self.complete_date)
            .field("ipn_date", &self.ipn_date)
            .field("key_id", &self.key_id)
            .field("algorithm", &self.algorithm)
            .field(
                "customer_pseudonym",
                &self.customer_pseudonym.as_ref().map(|_| "<redacted>"),
            )
            .field("pan_fields", &self.pan_fields)
            .field("licences", &self.licences)
            .field("money", &self.money)
            .field("chargeback", &self.chargeback)
            .finish()
    }
}

/// Why a verified notification could not be tokenized.
///
/// Variants name the field and a fixed reason, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenizeError {
    #[error("required field `{0}` is missing or empty")]
    MissingField(&'static str),
    #[error("field `{field}` is invalid: {reason}")]
    InvalidField {
        field: &'static str,
        reason: &'static str,
    },
    #[error("field `{field}` holds a card number and would be stored; the notification is refused")]
    PanInAllowListedField { field: &'static str },
    /// The body is not laid out as the processor lays out its notices: a
    /// field under another form of its name, twice, or out of the
    /// processor's order ([`crate::layout`]). Names are not signed, so such
    /// a body may be a signed one with its names moved.
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

impl TokenizeError {
    /// A short, stable label for metrics and the database.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenizeError::MissingField(_) => "missing_field",
            TokenizeError::InvalidField { .. } => "invalid_field",
            TokenizeError::PanInAllowListedField { .. } => "pan_in_stored_field",
            TokenizeError::Layout(err) => err.reason(),
        }
    }

    /// The field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            TokenizeError::MissingField(field)
            | TokenizeError::InvalidField { field, .. }
            | TokenizeError::PanInAllowListedField { field } => field,
            TokenizeError::Layout(err) => err.field(),
        }
    }
}

/// Builds the [`PaymentEvent`] of a verified notification.
///
/// `raw_body` must be the exact bytes `form` was parsed from (the digest is
/// the deduplication key); `verified` is the result of
/// [`crate::ipn::verify`] on `form`. The amount is read with `currencies`,
/// the settings' currency table, so that a currency the operator allowed
/// keeps its exponent (any other code gets the table's default, see
/// [`Currencies::of`]: a notification is never refused for its currency).
/// With no `pseudonym_key`, no customer pseudonym is made.
pub fn tokenize(
    raw_body: &[u8],
    form: &FormBody,
    verified: &Verified,
    currencies: &Currencies,
    pseudonym_key: Option<&PseudonymKey>,
) -> Result<PaymentEvent, TokenizeError> {
    // The guard runs first: if a stored field holds a card number, no other
    // check may quote or keep any part of it.
    let pan_fields = find_pan_fields(form);
    if let Some(field) = STORED_FIELDS
        .into_iter()
        .find(|stored| pan_fields.iter().any(|found| found == stored))
    {
        return Err(TokenizeError::PanInAllowListedField { field });
    }
    // Then the layout: every field below is read only from a scalar under
    // its exact name, and only from a body laid out as the processor lays
    // out its notices, so that no renamed, repeated or moved name changes
    // what the notification says (issue 21, Deliver 5).
    Layout::ipn().check(form)?;

    let processor_ref = parse_processor_ref(required(form, fields::REFNO)?)?;
    // Required under its own name: it is the one field the identity leaves
    // out, so a copy that renamed it would otherwise count twice.
    required(form, fields::IPN_DATE)?;
    // Optional: empty for hosted-cart orders and renewals, absent when the
    // merchant's IPN settings leave it out (docs/protocol.md §1.1).
    let merchant_ref = optional(form, fields::REFNOEXT)
        .map(parse_order_ref)
        .transpose()?;
    let status = StatusField::parse(required(form, fields::ORDERSTATUS)?);
    let amount = parse_amount(form, currencies)?;
    let payment_method = optional(form, fields::PAYMETHOD_CODE)
        .map(parse_payment_method)
        .transpose()?;

    let money = tokenize_money(form, amount.currency(), currencies, &pan_fields)?;

    let identity = EventIdentity::of(form).map_err(|_| TokenizeError::InvalidField {
        field: fields::IPN_DATE,
        reason: "the form cannot be grouped",
    })?;
    Ok(PaymentEvent {
        digest: BodyDigest::of(raw_body),
        identity,
        processor_ref,
        merchant_ref,
        status,
        fraud_denied: form.get(fields::FRAUD_STATUS) == Some("DENIED"),
        test_order: form.get(fields::TEST_ORDER) == Some("1"),
        amount,
        payment_method,
        sale_date: parse_date(form, fields::SALEDATE, DATE_FORMAT)?,
        payment_date: parse_date(form, fields::PAYMENTDATE, DATE_FORMAT)?,
        complete_date: parse_date(form, fields::COMPLETE_DATE, DATE_FORMAT)?,
        ipn_date: parse_date(form, fields::IPN_DATE, IPN_DATE_FORMAT)?,
        carries_message_id: optional(form, fields::MESSAGE_ID).is_some(),
        key_id: verified.key_id.clone(),
        algorithm: verified.algorithm,
        customer_pseudonym: pseudonym_key.and_then(|key| {
            form.get(fields::CUSTOMEREMAIL)
                .and_then(|email| key.pseudonymize_email(email))
        }),
        pan_fields,
        licences: crate::subscription::licence_lines(form)?,
        money,
        chargeback: ChargebackNotice::read(
            form.get(fields::CHARGEBACK_RESOLUTION),
            form.get(fields::CHARGEBACK_REASON_CODE),
        ),
    })
}

/// The value of a field that must be present and non-empty. An empty value
/// is treated as missing: the processor sends unticked or unknown values as
/// empty strings (docs/protocol.md §6, V5 has `REFNOEXT=`).
fn required<'a>(form: &'a FormBody, field: &'static str) -> Result<&'a str, TokenizeError> {
    optional(form, field).ok_or(TokenizeError::MissingField(field))
}

/// The value of an optional field; absent and empty are the same.
fn optional<'a>(form: &'a FormBody, field: &str) -> Option<&'a str> {
    form.get(field).filter(|value| !value.is_empty())
}

fn parse_processor_ref(value: &str) -> Result<String, TokenizeError> {
    if value.len() <= MAX_PROCESSOR_REF_CHARS && value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(value.to_owned())
    } else {
        Err(TokenizeError::InvalidField {
            field: fields::REFNO,
            reason: "not 1-20 digits",
        })
    }
}

fn parse_order_ref(value: &str) -> Result<String, TokenizeError> {
    let invalid = |reason| TokenizeError::InvalidField {
        field: fields::REFNOEXT,
        reason,
    };
    if value.chars().count() > MAX_ORDER_REF_CHARS {
        return Err(invalid("longer than 100 characters"));
    }
    // Control characters would let a reference forge log lines or CSV rows.
    if value.chars().any(char::is_control) {
        return Err(invalid("contains control characters"));
    }
    Ok(value.to_owned())
}

fn parse_amount(form: &FormBody, currencies: &Currencies) -> Result<Money, TokenizeError> {
    let amount = required(form, fields::IPN_TOTALGENERAL)?;
    let currency = currencies
        .currency(required(form, fields::CURRENCY)?)
        .map_err(|err| TokenizeError::InvalidField {
            field: fields::CURRENCY,
            reason: err.reason(),
        })?;
    Money::parse_amount(amount, currency).map_err(|err| TokenizeError::InvalidField {
        field: fields::IPN_TOTALGENERAL,
        reason: err.reason(),
    })
}

fn parse_payment_method(value: &str) -> Result<String, TokenizeError> {
    let valid = value.len() <= MAX_PAYMENT_METHOD_CHARS
        && value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(value.to_owned())
    } else {
        Err(TokenizeError::InvalidField {
            field: fields::PAYMETHOD_CODE,
            reason: "not 1-32 characters of A-Z, 0-9 and _",
        })
    }
}

fn parse_date(
    form: &FormBody,
    field: &'static str,
    format: &str,
) -> Result<Option<NaiveDateTime>, TokenizeError> {
    match optional(form, field) {
        None => Ok(None),
        Some(ZERO_DATE) if format == DATE_FORMAT => Ok(None),
        Some(value) => NaiveDateTime::parse_from_str(value, format)
            .map(Some)
            .map_err(|_| TokenizeError::InvalidField {
                field,
                reason: if format == IPN_DATE_FORMAT {
                    "not a YYYYMMDDHHMMSS timestamp"
                } else {
                    "not a YYYY-MM-DD HH:MM:SS date"
                },
            }),
    }
}

/// Field names of the money a notice carries beside its gross
/// (docs/protocol.md, "The money fields"; [`tokenize_money`]).
pub mod money_fields {
    /// VAT per line item, order currency.
    pub const IPN_VAT: &str = "IPN_VAT[]";
    /// VAT on shipping, order currency.
    pub const IPN_SHIPPING_TAX: &str = "IPN_SHIPPING_TAX";
    /// The processor's commission, order currency, possibly more decimals.
    pub const IPN_COMMISSION: &str = "IPN_COMMISSION";
    /// What the notice adds to the payout, in `PAYOUT_CURRENCY`.
    pub const PAYABLE_AMOUNT: &str = "PAYABLE_AMOUNT";
    pub const PAYOUT_CURRENCY: &str = "PAYOUT_CURRENCY";
    pub const FX_RATE: &str = "FX_RATE";
    pub const FX_MARKUP: &str = "FX_MARKUP";

    /// Every money field: their values are stored, so a card number in
    /// one refuses the notification like one in [`super::STORED_FIELDS`].
    pub const ALL: [&str; 7] = [
        IPN_VAT,
        IPN_SHIPPING_TAX,
        IPN_COMMISSION,
        PAYABLE_AMOUNT,
        PAYOUT_CURRENCY,
        FX_RATE,
        FX_MARKUP,
    ];
}

/// The money a notice carries beside its gross, read exactly
/// ([`crate::notice_money`]): VAT (`Σ IPN_VAT[]` + `IPN_SHIPPING_TAX`) and
/// the commission (`IPN_COMMISSION`) in `order_currency`, the payable
/// amount (`PAYABLE_AMOUNT`) in `PAYOUT_CURRENCY` read with `currencies`,
/// and the rates (`FX_RATE`, `FX_MARKUP`) as exact text.
///
/// Absent or empty fields are allowed and give `None`. A malformed value
/// is [`TokenizeError::InvalidField`] naming the field, never the value;
/// a card number in any of them (`pan_fields`, from the PAN guard) refuses
/// the notification.
pub fn tokenize_money(
    form: &FormBody,
    order_currency: Currency,
    currencies: &Currencies,
    pan_fields: &[String],
) -> Result<NoticeMoney, TokenizeError> {
    use money_fields as f;
    if let Some(field) = f::ALL
        .into_iter()
        .find(|name| pan_fields.iter().any(|found| found == name))
    {
        return Err(TokenizeError::PanInAllowListedField { field });
    }
    let amount = |field: &'static str, value: &str, currency: Currency| {
        Money::parse_amount(value, currency).map_err(|err| TokenizeError::InvalidField {
            field,
            reason: err.reason(),
        })
    };
    let sum = |field: &'static str, a: Money, b: Money| {
        a.checked_add(&b).ok_or(TokenizeError::InvalidField {
            field,
            reason: "amount is out of range",
        })
    };

    let mut vat: Option<Money> = None;
    let vat_parts = form
        .values(f::IPN_VAT)
        .map(|v| (f::IPN_VAT, v))
        .chain(optional(form, f::IPN_SHIPPING_TAX).map(|v| (f::IPN_SHIPPING_TAX, v)));
    for (field, value) in vat_parts.filter(|(_, v)| !v.is_empty()) {
        let part = amount(field, value, order_currency)?;
        vat = Some(match vat {
            Some(total) => sum(field, total, part)?,
            None => part,
        });
    }

    let commission = optional(form, f::IPN_COMMISSION)
        .map(|value| {
            Commission::parse(value, order_currency).map_err(|err| TokenizeError::InvalidField {
                field: f::IPN_COMMISSION,
                reason: err.reason(),
            })
        })
        .transpose()?;

    let payable = match optional(form, f::PAYABLE_AMOUNT) {
        None => None,
        Some(value) => {
            let code = optional(form, f::PAYOUT_CURRENCY).ok_or(TokenizeError::InvalidField {
                field: f::PAYOUT_CURRENCY,
                reason: "missing while PAYABLE_AMOUNT is sent",
            })?;
            let currency =
                currencies
                    .currency(code)
                    .map_err(|err| TokenizeError::InvalidField {
                        field: f::PAYOUT_CURRENCY,
                        reason: err.reason(),
                    })?;
            Some(amount(f::PAYABLE_AMOUNT, value, currency)?)
        }
    };
    let rate = |field: &'static str| {
        optional(form, field)
            .map(|value| {
                Rate::parse(value).map_err(|err| TokenizeError::InvalidField {
                    field,
                    reason: err.reason(),
                })
            })
            .transpose()
    };
    Ok(NoticeMoney {
        vat,
        commission,
        payable,
        fx_rate: rate(f::FX_RATE)?,
        fx_markup: rate(f::FX_MARKUP)?,
    })
}

/// Events for the unit tests of other modules.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// An event of order `processor_ref` (merchant reference `merchant`)
    /// with `status` and `amount` in `currency`; its digest and identity
    /// derive from all of them.
    pub(crate) fn event(
        processor_ref: &str,
        merchant: Option<&str>,
        status: &str,
        amount: &str,
        currency: &str,
    ) -> PaymentEvent {
        let tag = format!("{processor_ref} {merchant:?} {status} {amount} {currency}");
        let digest = BodyDigest::of(tag.as_bytes());
        PaymentEvent {
            carries_message_id: false,
            identity: EventIdentity(digest.as_str().to_owned()),
            digest,
            processor_ref: processor_ref.to_owned(),
            merchant_ref: merchant.map(str::to_owned),
            status: StatusField::parse(status),
            fraud_denied: false,
            test_order: false,
            amount: Money::iso(amount, currency).expect("a test amount"),
            payment_method: None,
            sale_date: None,
            payment_date: None,
            complete_date: None,
            ipn_date: None,
            key_id: KeyId::parse("default").expect("a key id"),
            algorithm: Algorithm::Sha256,
            customer_pseudonym: None,
            pan_fields: Vec::new(),
            licences: Vec::new(),
            chargeback: None,
            money: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipn::{FormLimits, KeyRing, SecretKey, SignaturePolicy, sign, verify};
    use chrono::NaiveDate;

    const KEY: &[u8] = b"AABBCCDDEEFF";

    fn verified() -> Verified {
        Verified {
            key_id: KeyId::parse("default").unwrap(),
            algorithm: Algorithm::Sha256,
        }
    }

    /// Fields of a real notification, in the processor's order.
    const BASE: &[(&str, &str)] = &[
        ("SALEDATE", "2016-06-01 12:22:09"),
        ("PAYMENTDATE", "2016-06-01 12:25:00"),
        ("REFNO", "1000037"),
        ("REFNOEXT", "ORD-2016-0001"),
        ("ORDERSTATUS", "COMPLETE"),
        ("PAYMETHOD_CODE", "CCVISAMC"),
        ("FIRSTNAME", "John"),
        ("PHONE", "951-121-2121"),
        ("CUSTOMEREMAIL", " John.Smith@Email.com "),
        ("COMPLETE_DATE", ""),
        ("CURRENCY", "usd"),
        ("IPN_TOTALGENERAL", "534.00"),
        ("TEST_ORDER", "0"),
        ("FRAUD_STATUS", "APPROVED"),
        ("IPN_DATE", "20160601122509"),
    ];

    /// A body made of BASE with `changes` applied: `(name, Some(value))`
    /// sets or adds (where the processor sends the field), `(name, None)`
    /// removes.
    fn body(changes: &[(&str, Option<&str>)]) -> String {
        let mut form = FormBody::from_fields(Vec::new());
        for (name, value) in BASE {
            match changes.iter().find(|(n, _)| n == name) {
                Some((_, Some(v))) => form.push(*name, *v),
                Some((_, None)) => {}
                None => form.push(*name, *value),
            }
        }
        for (name, value) in changes {
            if let (false, Some(v)) = (BASE.iter().any(|(n, _)| n == name), value) {
                form = Layout::ipn().with_field(&form, name, v);
            }
        }
        form.encode()
    }

    fn run(raw: &str, key: Option<&PseudonymKey>) -> Result<PaymentEvent, TokenizeError> {
        let form = FormBody::parse(raw.as_bytes(), &FormLimits::default()).unwrap();
        tokenize(raw.as_bytes(), &form, &verified(), &Currencies::iso(), key)
    }

    fn ok(changes: &[(&str, Option<&str>)]) -> PaymentEvent {
        run(&body(changes), None).unwrap()
    }

    fn err(changes: &[(&str, Option<&str>)]) -> TokenizeError {
        run(&body(changes), None).unwrap_err()
    }

    #[test]
    fn keeps_only_the_allow_listed_fields() {
        let raw = body(&[]);
        let key = PseudonymKey::new(b"pseudonym-key");
        let event = run(&raw, Some(&key)).unwrap();
        assert_eq!(event.digest, BodyDigest::of(raw.as_bytes()));
        assert_eq!(event.processor_ref, "1000037");
        assert_eq!(event.merchant_ref.as_deref(), Some("ORD-2016-0001"));
        assert_eq!(event.status, StatusField::Known(OrderStatus::Complete));
        assert!(!event.fraud_denied);
        assert!(!event.test_order);
        assert_eq!(event.amount, Money::iso("534.00", "USD").unwrap());
        assert_eq!(event.payment_method.as_deref(), Some("CCVISAMC"));
        let day = NaiveDate::from_ymd_opt(2016, 6, 1).unwrap();
        assert_eq!(event.sale_date, day.and_hms_opt(12, 22, 9));
        assert_eq!(event.payment_date, day.and_hms_opt(12, 25, 0));
        assert_eq!(event.complete_date, None);
        assert_eq!(event.ipn_date, day.and_hms_opt(12, 25, 9));
        assert_eq!(event.key_id.as_str(), "default");
        assert_eq!(event.algorithm, Algorithm::Sha256);
        assert_eq!(
            event.customer_pseudonym,
            key.pseudonymize_email("john.smith@email.com")
        );
        assert!(event.pan_fields.is_empty());

        // Nothing personal survives, not even in Debug.
        let shown = format!("{event:?}");
        for personal in ["John", "john", "Smith", "951-121", "Email.com"] {
            assert!(!shown.contains(personal), "{personal} in {shown}");
        }
        assert!(shown.contains("customer_pseudonym: Some(\"<redacted>\")"));
        let pseudonym = event.customer_pseudonym.as_ref().unwrap().as_str();
        assert!(!shown.contains(pseudonym));
    }

    #[test]
    fn works_on_a_signed_and_verified_body() {
        let form = FormBody::parse(body(&[]).as_bytes(), &FormLimits::default()).unwrap();
        let signed = sign(&form, &SecretKey::new(KEY), &[Algorithm::Sha3_256]).unwrap();
        let raw = signed.encode();
        let verified = verify(&signed, &KeyRing::single(KEY), &SignaturePolicy::default()).unwrap();
        let event = tokenize(raw.as_bytes(), &signed, &verified, &Currencies::iso(), None).unwrap();
        assert_eq!(event.algorithm, Algorithm::Sha3_256);
        assert!(event.pan_fields.is_empty(), "signature fields are skipped");
        assert_eq!(event.customer_pseudonym, None);
    }

    #[test]
    fn flags_and_unknown_status() {
        let event = ok(&[
            ("FRAUD_STATUS", Some("DENIED")),
            ("TEST_ORDER", Some("1")),
            ("ORDERSTATUS", Some("NEW_THING\r\nforged")),
        ]);
        assert!(event.fraud_denied);
        assert!(event.test_order);
        assert_eq!(
            event.status,
            StatusField::Unknown("NEW_THING??forged".into())
        );
        let long = "Z".repeat(100);
        let event = ok(&[("ORDERSTATUS", Some(&long))]);
        assert_eq!(event.status.as_str().len(), 40);
        assert!(!ok(&[("FRAUD_STATUS", Some("UNDER REVIEW"))]).fraud_denied);
        assert!(!ok(&[("TEST_ORDER", None)]).test_order);
    }

    #[test]
    fn required_fields() {
        for field in ["REFNO", "ORDERSTATUS", "IPN_TOTALGENERAL", "CURRENCY"] {
            assert_eq!(err(&[(field, None)]), TokenizeError::MissingField(field));
            assert_eq!(
                err(&[(field, Some(""))]),
                TokenizeError::MissingField(field)
            );
        }
        assert_eq!(
            TokenizeError::MissingField("REFNO").to_string(),
            "required field `REFNO` is missing or empty"
        );
    }

    #[test]
    fn a_hosted_cart_order_names_no_merchant_reference() {
        // Empty (the cart set none: hosted cart, renewals) and absent (the
        // merchant's IPN settings leave the field out) are the same.
        for refnoext in [Some(""), None] {
            let event = ok(&[("REFNOEXT", refnoext)]);
            assert_eq!(event.merchant_ref, None, "{refnoext:?}");
            assert_eq!(event.processor_ref, "1000037");
        }
    }

    #[test]
    fn the_amount_is_read_with_the_exponent_of_the_settings_table() {
        let raw = body(&[
            ("CURRENCY", Some("zzb")),
            ("IPN_TOTALGENERAL", Some("12.345")),
        ]);
        let form = FormBody::parse(raw.as_bytes(), &FormLimits::default()).unwrap();
        let zzb = crate::money::CurrencyCode::parse("ZZB").unwrap();
        let allowed = Currencies::new(&[(zzb, 3)]).unwrap();
        let event = tokenize(raw.as_bytes(), &form, &verified(), &allowed, None).unwrap();
        assert_eq!(event.amount, allowed.money("12.345", "ZZB").unwrap());
        assert_eq!(event.amount.minor_units(), 12345);
        assert_eq!(event.amount.to_string(), "12.345 ZZB");
        // Without the table, ZZB has the default two decimals.
        assert_eq!(
            run(&raw, None).unwrap_err().field(),
            "IPN_TOTALGENERAL",
            "12.345 is too precise for two decimals"
        );
    }

    #[test]
    fn invalid_fields_are_named_without_their_value() {
        let cases: &[(&str, &str)] = &[
            ("REFNO", "12a"),
            ("REFNO", "-1"),
            ("REFNOEXT", "line\nbreak"),
            ("IPN_TOTALGENERAL", "1e3"),
            ("IPN_TOTALGENERAL", "10.005"),
            ("CURRENCY", "EURO"),
            ("CURRENCY", "E1R"),
            ("PAYMETHOD_CODE", "ccvisamc"),
            ("PAYMETHOD_CODE", "VISA MC"),
            ("SALEDATE", "2016-06-01"),
            ("PAYMENTDATE", "01/06/2016 12:00:00"),
            ("COMPLETE_DATE", "2016-13-01 00:00:00"),
            ("IPN_DATE", "2016-06-01 12:25:09"),
        ];
        for (field, value) in cases {
            let error = err(&[(field, Some(value))]);
            assert_eq!(error.field(), *field, "{field}={value:?}");
            assert_eq!(error.reason(), "invalid_field");
            let shown = format!("{error} {error:?}");
            assert!(!shown.contains(value), "{shown}");
        }
        // 21 digits: too long for REFNO. Pick one the PAN guard does not
        // trip on (most 21-digit strings have a Luhn-valid window).
        let long_ref = (0u64..)
            .map(|n| format!("{:021}", n * 7919))
            .find(|r| !crate::pan::contains_pan(r))
            .unwrap();
        assert_eq!(
            err(&[("REFNO", Some(&long_ref))]),
            TokenizeError::InvalidField {
                field: "REFNO",
                reason: "not 1-20 digits"
            }
        );
        let long = "x".repeat(101);
        assert_eq!(err(&[("REFNOEXT", Some(&long))]).field(), "REFNOEXT");
        let long = "A".repeat(33);
        assert_eq!(
            err(&[("PAYMETHOD_CODE", Some(&long))]).field(),
            "PAYMETHOD_CODE"
        );
        assert_eq!(
            ok(&[("REFNOEXT", Some(&"é".repeat(100)))])
                .merchant_ref
                .unwrap_or_default()
                .chars()
                .count(),
            100
        );
    }

    #[test]
    fn optional_fields_may_be_absent_empty_or_zero_dates() {
        let event = ok(&[
            ("PAYMETHOD_CODE", Some("")),
            ("SALEDATE", None),
            ("PAYMENTDATE", Some("0000-00-00 00:00:00")),
        ]);
        assert_eq!(event.payment_method, None);
        assert_eq!(event.sale_date, None);
        assert_eq!(event.payment_date, None);
    }

    /// IPN_DATE is the one signed field the identity leaves out, so it must
    /// be there under its own name: a copy that renamed it would otherwise
    /// have another identity and count twice.
    #[test]
    fn ipn_date_is_required() {
        for missing in [None, Some("")] {
            assert_eq!(
                err(&[("IPN_DATE", missing)]),
                TokenizeError::MissingField("IPN_DATE")
            );
        }
    }

    #[test]
    fn the_identity_leaves_out_the_delivery_date_and_the_signatures_only() {
        let base = ok(&[]);
        let retried = ok(&[("IPN_DATE", Some("20991231235959"))]);
        assert_eq!(
            base.identity, retried.identity,
            "a retry is the same notice"
        );
        assert_ne!(base.digest, retried.digest);
        let other = ok(&[("IPN_TOTALGENERAL", Some("1.00"))]);
        assert_ne!(
            base.identity, other.identity,
            "another value, another notice"
        );
    }

    #[test]
    fn the_money_fields_are_read_exactly() {
        let event = ok(&[
            ("CURRENCY", Some("RON")),
            ("IPN_TOTALGENERAL", Some("119.00")),
            ("IPN_VAT[]", Some("15.96")),
            ("IPN_VAT[]", Some("3.04")),
            ("IPN_SHIPPING_TAX", Some("0.50")),
            ("IPN_COMMISSION", Some("2.7678")),
            ("FX_RATE", Some("0.20810660205937")),
            ("FX_MARKUP", Some("4")),
            ("PAYABLE_AMOUNT", Some("-0.57")),
            ("PAYOUT_CURRENCY", Some("USD")),
        ]);
        let money = &event.money;
        assert_eq!(money.vat, Some(Money::iso("19.50", "RON").unwrap()));
        let commission = money.commission.unwrap();
        assert_eq!(commission.e8(), 276_780_000, "exact, four decimals");
        assert_eq!(commission.rounded(), Money::iso("2.77", "RON").unwrap());
        assert_eq!(money.payable, Some(Money::iso("-0.57", "USD").unwrap()));
        assert_eq!(
            money.fx_rate.as_ref().map(|r| r.as_str()),
            Some("0.20810660205937")
        );
        assert_eq!(money.fx_markup.as_ref().map(|r| r.as_str()), Some("4"));
    }

    #[test]
    fn missing_money_fields_book_nothing() {
        assert!(ok(&[]).money.is_empty());
        let event = ok(&[
            ("IPN_VAT[]", Some("")),
            ("IPN_SHIPPING_TAX", Some("")),
            ("IPN_COMMISSION", Some("")),
        ]);
        assert!(event.money.is_empty());
    }

    #[test]
    fn malformed_money_fields_are_named_without_their_value() {
        /// The fields sent, the field the error names, the value it must not quote.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (&[("IPN_VAT[]", "1.005")], "IPN_VAT[]", "1.005"),
            (&[("IPN_VAT[]", "12,50")], "IPN_VAT[]", "12,50"),
            (&[("IPN_SHIPPING_TAX", "x1")], "IPN_SHIPPING_TAX", "x1"),
            (
                &[("IPN_COMMISSION", "2.7678e1")],
                "IPN_COMMISSION",
                "2.7678e1",
            ),
            (
                &[("IPN_COMMISSION", "1.123456789")],
                "IPN_COMMISSION",
                "1.123456789",
            ),
            (
                &[("PAYABLE_AMOUNT", "1.234"), ("PAYOUT_CURRENCY", "USD")],
                "PAYABLE_AMOUNT",
                "1.234",
            ),
            (&[("PAYABLE_AMOUNT", "1.23")], "PAYOUT_CURRENCY", "1.23"),
            (
                &[("PAYABLE_AMOUNT", "1.23"), ("PAYOUT_CURRENCY", "US$")],
                "PAYOUT_CURRENCY",
                "US$",
            ),
            (&[("FX_RATE", "-0.2")], "FX_RATE", "-0.2"),
            (&[("FX_MARKUP", "4%")], "FX_MARKUP", "4%"),
        ];
        for (changes, field, value) in cases {
            let changes: Vec<_> = changes.iter().map(|(n, v)| (*n, Some(*v))).collect();
            let error = err(&changes);
            assert_eq!(error.field(), *field, "{changes:?}");
            assert_eq!(error.reason(), "invalid_field");
            assert!(!format!("{error} {error:?}").contains(value), "{error}");
        }
        let error = err(&[("PAYABLE_AMOUNT", Some("4111111111111111"))]);
        assert_eq!(
            error,
            TokenizeError::PanInAllowListedField {
                field: "PAYABLE_AMOUNT"
            }
        );
    }

    #[test]
    fn negative_refund_totals_are_kept_signed() {
        let event = ok(&[
            ("ORDERSTATUS", Some("REFUND")),
            ("IPN_TOTALGENERAL", Some("-20.00")),
        ]);
        assert_eq!(event.amount.minor_units(), -2000);
        assert_eq!(event.status, StatusField::Known(OrderStatus::Refund));
    }

    #[test]
    fn a_card_number_elsewhere_is_dropped_and_reported_by_name() {
        let raw = body(&[
            ("COMMENTS", Some("card 4111 1111 1111 1111 exp 12/29")),
            ("ADDRESS1", Some("4111-1111-1111-1111")),
        ]);
        let event = run(&raw, None).unwrap();
        assert_eq!(event.pan_fields, ["ADDRESS1", "COMMENTS"]);
        assert!(!format!("{event:?}").contains("4111"));
    }

    #[test]
    fn a_card_number_in_a_stored_field_refuses_the_notification() {
        for field in [
            "REFNO",
            "REFNOEXT",
            "ORDERSTATUS",
            "PAYMETHOD_CODE",
            "SALEDATE",
        ] {
            let error = err(&[(field, Some("4111111111111111"))]);
            assert_eq!(error, TokenizeError::PanInAllowListedField { field });
            assert_eq!(error.reason(), "pan_in_stored_field");
            assert!(!error.to_string().contains("4111"));
        }
        // The guard runs before any parsing: the PAN error wins over the
        // invalid-amount error the same value would otherwise cause.
        let error = err(&[("IPN_TOTALGENERAL", Some("4111111111111111.00"))]);
        assert_eq!(
            error,
            TokenizeError::PanInAllowListedField {
                field: "IPN_TOTALGENERAL"
            }
        );
        // Hashed and boolean fields are not stored as text.
        let event = ok(&[("CUSTOMEREMAIL", Some("4111111111111111@example.com"))]);
        assert_eq!(event.pan_fields, ["CUSTOMEREMAIL"]);
    }

    /// A body signed with the test key and verified, as the worker sees it.
    fn signed(changes: &[(&str, Option<&str>)]) -> FormBody {
        let form = FormBody::parse(body(changes).as_bytes(), &FormLimits::default()).unwrap();
        sign(&form, &SecretKey::new(KEY), &[Algorithm::Sha3_256]).unwrap()
    }

    /// `form` with the names of `renames` changed at once (`(from, to)`),
    /// values and signatures untouched: what whoever holds one signed body
    /// can do, since the signature covers values, not names.
    fn renamed(form: &FormBody, renames: &[(&str, &str)]) -> FormBody {
        let mut out = FormBody::default();
        for (name, value) in form.pairs() {
            let name = renames
                .iter()
                .find(|(from, _)| *from == name)
                .map_or(name, |(_, to)| *to);
            out.push(name, value);
        }
        out
    }

    /// Verifies `form` (it must: only names were changed) and tokenizes it.
    fn verified_and_tokenized(form: &FormBody) -> Result<PaymentEvent, TokenizeError> {
        let verified = verify(form, &KeyRing::single(KEY), &SignaturePolicy::default())
            .expect("names are not signed: the copy verifies");
        let raw = form.encode();
        tokenize(raw.as_bytes(), form, &verified, &Currencies::iso(), None)
    }

    /// Issue 21, Deliver 5: a signed test order whose `TEST_ORDER` is
    /// renamed `TEST_ORDER[]`, or swapped with `GIFT_ORDER` (the first
    /// field of a real body; `TEST_ORDER` comes after
    /// `CHARGEBACK_REASON_CODE`), still verifies, and is refused as
    /// malformed; the same tricks on `FRAUD_STATUS=DENIED`; a repeated
    /// `ORDERSTATUS` too.
    #[test]
    fn renamed_swapped_or_repeated_flags_are_refused() {
        let test_order = signed(&[("GIFT_ORDER", Some("0")), ("TEST_ORDER", Some("1"))]);
        let event = verified_and_tokenized(&test_order).unwrap();
        assert!(event.test_order);

        let refused =
            verified_and_tokenized(&renamed(&test_order, &[("TEST_ORDER", "TEST_ORDER[]")]));
        assert_eq!(
            refused,
            Err(TokenizeError::Layout(LayoutError::OtherForm {
                field: "TEST_ORDER"
            }))
        );
        let refused = refused.unwrap_err();
        assert_eq!(
            (refused.reason(), refused.field()),
            ("renamed_field", "TEST_ORDER")
        );

        let swapped = renamed(
            &test_order,
            &[("GIFT_ORDER", "TEST_ORDER"), ("TEST_ORDER", "GIFT_ORDER")],
        );
        assert_eq!(
            swapped.get("TEST_ORDER"),
            Some("0"),
            "the swap says: not a test"
        );
        let refused = verified_and_tokenized(&swapped).unwrap_err();
        assert_eq!(
            refused,
            TokenizeError::Layout(LayoutError::OutOfOrder {
                field: "TEST_ORDER",
                other: "SALEDATE"
            })
        );
        assert_eq!(
            (refused.reason(), refused.field()),
            ("misplaced_field", "TEST_ORDER")
        );

        let denied = signed(&[("GIFT_ORDER", Some("0")), ("FRAUD_STATUS", Some("DENIED"))]);
        assert!(verified_and_tokenized(&denied).unwrap().fraud_denied);
        for tricked in [
            renamed(&denied, &[("FRAUD_STATUS", "FRAUD_STATUS[]")]),
            renamed(&denied, &[("FRAUD_STATUS", "fraud_status")]),
            renamed(
                &denied,
                &[
                    ("GIFT_ORDER", "FRAUD_STATUS"),
                    ("FRAUD_STATUS", "GIFT_ORDER"),
                ],
            ),
        ] {
            let refused = verified_and_tokenized(&tricked).unwrap_err();
            assert_eq!(refused.field(), "FRAUD_STATUS", "{refused}");
        }
        // The other flags that change a notification's meaning are bound
        // too, read or not.
        for flag in ["ORDERSTATUS", "REFUND_TYPE", "CHARGEBACK_RESOLUTION"] {
            let body = signed(&[
                ("REFUND_TYPE", Some("")),
                ("CHARGEBACK_RESOLUTION", Some("NONE")),
            ]);
            let other = format!("{flag}[]");
            let refused = verified_and_tokenized(&renamed(&body, &[(flag, other.as_str())]));
            assert_eq!(
                refused,
                Err(TokenizeError::Layout(LayoutError::OtherForm {
                    field: flag
                }))
            );
        }

        // A second ORDERSTATUS: the signature check refuses it as PHP would
        // read it (the last copy wins), and so does the tokenizer.
        let mut twice = FormBody::default();
        for (name, value) in FormBody::parse(body(&[]).as_bytes(), &FormLimits::default())
            .unwrap()
            .pairs()
        {
            twice.push(name, value);
            if name == "ORDERSTATUS" {
                twice.push("ORDERSTATUS", "REFUND");
            }
        }
        let raw = twice.encode();
        assert_eq!(
            tokenize(
                raw.as_bytes(),
                &twice,
                &verified(),
                &Currencies::iso(),
                None
            ),
            Err(TokenizeError::Layout(LayoutError::Repeated {
                field: "ORDERSTATUS"
            }))
        );
        let signed_twice = sign(&twice, &SecretKey::new(KEY), &[Algorithm::Sha3_256]);
        assert!(
            signed_twice.is_err(),
            "a repeated scalar cannot even be signed"
        );
    }

    /// Every pair of field names of a signed body swapped: the copy still
    /// verifies, and is refused.
    #[test]
    fn any_two_names_of_a_signed_body_swapped_are_refused() {
        let genuine = signed(&[("GIFT_ORDER", Some("0"))]);
        let names: Vec<String> = genuine
            .pairs()
            .map(|(name, _)| name.to_owned())
            .filter(|name| !Algorithm::is_signature_field(name))
            .collect();
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                let swapped = renamed(&genuine, &[(a, b), (b, a)]);
                let refused = verified_and_tokenized(&swapped);
                assert!(
                    matches!(
                        refused,
                        Err(TokenizeError::Layout(LayoutError::OutOfOrder { .. }))
                    ),
                    "{a} <-> {b}: {refused:?}"
                );
            }
        }
    }

    #[test]
    fn pseudonyms_are_keyed_normalized_and_hmac_sha256() {
        let key = PseudonymKey::new(b"k1");
        let a = key.pseudonymize_email("Jane@Example.com ").unwrap();
        let b = key.pseudonymize_email("jane@example.com").unwrap();
        assert_eq!(a, b);
        assert_ne!(
            PseudonymKey::new(b"k2").pseudonymize_email("jane@example.com"),
            Some(b.clone())
        );
        assert_eq!(key.pseudonymize_email("   "), None);
        assert_eq!(Pseudonym::parse(a.as_str()), Ok(a.clone()));
        assert_eq!(format!("{a:?}"), "Pseudonym(<redacted>)");
        assert_eq!(format!("{key:?}"), "PseudonymKey(<redacted>)");

        // Same as HMAC keyed the usual way, for short and long keys.
        for raw_key in [&b"k1"[..], &[7u8; 64][..], &[9u8; 200][..]] {
            let mut reference =
                <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(raw_key).unwrap();
            reference.update(b"jane@example.com");
            let expected = hex::encode(reference.finalize().into_bytes());
            let got = PseudonymKey::new(raw_key)
                .pseudonymize_email("jane@example.com")
                .unwrap();
            assert_eq!(got.as_str(), expected);
        }
        // RFC 4231 test case 2 (the message is already trimmed lower case).
        let rfc = PseudonymKey::new(b"Jefe")
            .pseudonymize_email("what do ya want for nothing?")
            .unwrap();
        assert_eq!(
            rfc.as_str(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn an_empty_email_gives_no_pseudonym() {
        let key = PseudonymKey::new(b"k");
        let event = run(&body(&[("CUSTOMEREMAIL", Some(""))]), Some(&key)).unwrap();
        assert_eq!(event.customer_pseudonym, None);
        let event = run(&body(&[("CUSTOMEREMAIL", None)]), Some(&key)).unwrap();
        assert_eq!(event.customer_pseudonym, None);
    }

    #[test]
    fn digests_parse_and_display() {
        let digest = BodyDigest::of(b"abc");
        assert_eq!(
            digest.as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(BodyDigest::parse(digest.as_str()), Ok(digest.clone()));
        assert_eq!(BodyDigest::parse("ABC"), Err(NotSha256Hex));
        assert_eq!(
            BodyDigest::parse(&digest.as_str().to_uppercase()),
            Err(NotSha256Hex)
        );
    }
}
