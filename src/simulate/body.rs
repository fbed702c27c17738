//! Dressing a story step as a notification body: the processor's fields in
//! its order (docs/protocol.md §1.1, as `fixtures/generate.py` lays them
//! out, and as the reconciler holds bodies to: `domain::layout`), the fake
//! customer's personal data, several product lines, then the signatures.

use chrono::NaiveDateTime;

use crate::domain::{Currency, Money};
use crate::ipn::{Algorithm, Field, FormBody, SecretKey, sign};

use super::SimulationError;
use super::people::{Customer, Product};
use super::story::{Payment, StoryStep};

/// The signatures the simulated processor sends, in its order: SHA-256
/// first, then SHA3-256, as in the vendor fixtures (no MD5: retired in 2024,
/// docs/protocol.md §3).
pub const ALGORITHMS: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha3_256];

/// Date formats of docs/protocol.md §1.1.
const DATE: &str = "%Y-%m-%d %H:%M:%S";
const IPN_DATE: &str = "%Y%m%d%H%M%S";

/// One product line of an order.
#[derive(Debug, Clone)]
pub struct Line {
    pub product: Product,
    pub quantity: u64,
    /// Unit price in minor units.
    pub unit_price: i64,
}

/// What every notification of one order shares.
#[derive(Debug, Clone)]
pub struct OrderContext {
    pub order_ref: String,
    pub refno: u64,
    /// The REFNO of a second payment or of a foreign reversal (only the
    /// stories with one use it).
    pub other_refno: u64,
    pub currency: Currency,
    pub lines: Vec<Line>,
    pub sale: NaiveDateTime,
    pub customer: Customer,
    pub wire: bool,
    pub card_last_digits: String,
    pub card_type: &'static str,
    pub test_order: bool,
    pub customer_reference: u64,
}

/// Where a card number is hidden in a free-text field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanSpot {
    /// The first `IPN_INFO[]` element (product line information).
    ProductInfo,
    /// `SHOPPER_REFERENCE_NUMBER` (the shopper's own PO text).
    ShopperReference,
}

impl PanSpot {
    /// The field name, as the PAN guard reports it.
    pub fn field_name(self) -> &'static str {
        match self {
            PanSpot::ProductInfo => "IPN_INFO[]",
            PanSpot::ShopperReference => "SHOPPER_REFERENCE_NUMBER",
        }
    }
}

fn money(minor: i64, currency: Currency) -> String {
    Money::from_minor(minor, currency).format_amount()
}

fn date(at: Option<NaiveDateTime>) -> String {
    at.map(|at| at.format(DATE).to_string()).unwrap_or_default()
}

/// The fields of one notification, in wire order, without signatures.
pub fn fields(
    order: &OrderContext,
    step: &StoryStep,
    message_id: u64,
    pan: Option<(PanSpot, &str)>,
) -> Vec<Field> {
    let c = &order.customer;
    let cur = order.currency;
    let mut f: Vec<(&str, String)> = Vec::with_capacity(96);
    let mut push = |name: &'static str, value: String| f.push((name, value));
    let shopper_reference = match pan {
        Some((PanSpot::ShopperReference, text)) => text.to_owned(),
        _ => String::new(),
    };
    let refno = match step.payment {
        Payment::Order => order.refno,
        Payment::Second | Payment::Foreign => order.other_refno,
    };
    let (paymethod, paymethod_code) = if order.wire {
        ("Wire transfer", "WIRE")
    } else {
        ("Visa/MasterCard", "CCVISAMC")
    };
    push("GIFT_ORDER", "0".into());
    push("SALEDATE", date(Some(order.sale)));
    push("PAYMENTDATE", date(step.payment_date));
    push("REFNO", refno.to_string());
    push("REFNOEXT", order.order_ref.clone());
    push("SHOPPER_REFERENCE_NUMBER", shopper_reference);
    push("ORDERNO", (refno % 100_000).to_string());
    push("ORDERSTATUS", step.status.into());
    push("PAYMETHOD", paymethod.into());
    push("PAYMETHOD_CODE", paymethod_code.into());
    push("FIRSTNAME", c.first_name.clone());
    push("LASTNAME", c.last_name.clone());
    push("COMPANY", c.company.clone());
    push("REGISTRATIONNUMBER", String::new());
    push("FISCALCODE", String::new());
    push("ADDRESS1", c.address.clone());
    push("ADDRESS2", String::new());
    push("CITY", c.city.clone());
    push("STATE", c.state.clone());
    push("ZIPCODE", c.zip.clone());
    push("COUNTRY", c.country.clone());
    push("COUNTRY_CODE", c.country_code.clone());
    push("PHONE", c.phone.clone());
    push("FAX", String::new());
    push("CUSTOMEREMAIL", c.email.clone());
    push("FIRSTNAME_D", c.first_name.clone());
    push("LASTNAME_D", c.last_name.clone());
    push("ADDRESS1_D", c.address.clone());
    push("CITY_D", c.city.clone());
    push("ZIPCODE_D", c.zip.clone());
    push("COUNTRY_D", c.country.clone());
    push("PHONE_D", c.phone.clone());
    push("EMAIL_D", c.email.clone());
    push("IPADDRESS", c.ip_address.clone());
    push("IPCOUNTRY", c.country.clone());
    push("COMPLETE_DATE", date(step.complete_date));
    push("TIMEZONE_OFFSET", "GMT+00:00".into());
    push("CURRENCY", cur.as_str().into());
    push("LANGUAGE", "en".into());
    push("ORDERFLOW", "REGULAR".into());

    // The product lines' arrays; the line totals come later, after the
    // message's id and type.
    let arrays: [&'static str; 11] = [
        "IPN_PID[]",
        "IPN_PNAME[]",
        "IPN_PCODE[]",
        "IPN_INFO[]",
        "IPN_QTY[]",
        "IPN_PRICE[]",
        "IPN_VAT[]",
        "IPN_VAT_RATE[]",
        "IPN_VER[]",
        "IPN_DISCOUNT[]",
        "IPN_TOTAL[]",
    ];
    let message_type = match step.status {
        "COMPLETE" => "COMPLETE",
        "PAYMENT_RECEIVED" => "APPROVED",
        _ => "AUTH",
    };
    for name in arrays {
        if name == "IPN_TOTAL[]" {
            // A scalar between array fields, as in the vendor fixtures.
            push("IPN_PARTNER_CODE", String::new());
            push("MESSAGE_ID", message_id.to_string());
            push("MESSAGE_TYPE", message_type.into());
        }
        for (i, line) in order.lines.iter().enumerate() {
            let quantity = i64::try_from(line.quantity).unwrap_or(1);
            let value = match name {
                "IPN_PID[]" => line.product.id.to_owned(),
                "IPN_PNAME[]" => line.product.name.to_owned(),
                "IPN_PCODE[]" => line.product.code.to_owned(),
                "IPN_INFO[]" => match pan {
                    Some((PanSpot::ProductInfo, text)) if i == 0 => text.to_owned(),
                    _ => String::new(),
                },
                "IPN_QTY[]" => line.quantity.to_string(),
                "IPN_PRICE[]" => money(line.unit_price, cur),
                "IPN_VAT[]" | "IPN_DISCOUNT[]" => money(0, cur),
                "IPN_VAT_RATE[]" => "0.00".to_owned(),
                "IPN_VER[]" => "1".to_owned(),
                _ => money(line.unit_price.saturating_mul(quantity), cur),
            };
            push(name, value);
        }
    }
    // The processor's commission, as its notices carry it: on a payment,
    // the fee the settlement will charge with a fourth decimal the
    // currency does not have (rounded half away from zero it is the fee:
    // no `fee_differs`); a refund gives back the percentage part.
    let commission = if step.amount > 0 {
        let fee = money(super::settlement::sale_fee(step.amount, cur), cur);
        if cur.exponent() == 0 {
            format!("{fee}.4")
        } else {
            format!("{fee}4")
        }
    } else {
        money(step.amount * 29 / 1000, cur)
    };
    push("IPN_TOTALGENERAL", money(step.amount, cur));
    push("IPN_SHIPPING", money(0, cur));
    push(
        "AVANGATE_CUSTOMER_REFERENCE",
        order.customer_reference.to_string(),
    );
    push("EXTERNAL_CUSTOMER_REFERENCE", String::new());
    push("IPN_COMMISSION", commission);
    // The refund and chargeback fields are always there, empty (or NONE)
    // unless the step is about one; the step's other extra fields (a
    // refund's reason, which the reconciler does not know) right after
    // REFUND_TYPE.
    let extra = |name: &str| {
        step.extra
            .iter()
            .find(|(field, _)| *field == name)
            .map(|(_, value)| value.clone())
    };
    push("REFUND_TYPE", extra("REFUND_TYPE").unwrap_or_default());
    for (name, value) in &step.extra {
        if !PLACED_EXTRAS.contains(name) {
            push(name, value.clone());
        }
    }
    push(
        "CHARGEBACK_RESOLUTION",
        extra("CHARGEBACK_RESOLUTION").unwrap_or_else(|| "NONE".to_owned()),
    );
    push(
        "CHARGEBACK_REASON_CODE",
        extra("CHARGEBACK_REASON_CODE").unwrap_or_default(),
    );
    push(
        "TEST_ORDER",
        if order.test_order { "1" } else { "0" }.into(),
    );
    push("IPN_ORDER_ORIGIN", "API".into());
    push("FRAUD_STATUS", step.fraud.into());
    if order.wire {
        push("CARD_TYPE", String::new());
        push("CARD_LAST_DIGITS", String::new());
        push("CARD_EXPIRATION_DATE", String::new());
        push("GATEWAY_RESPONSE", String::new());
    } else {
        push("CARD_TYPE", order.card_type.into());
        push("CARD_LAST_DIGITS", order.card_last_digits.clone());
        push("CARD_EXPIRATION_DATE", "12/29".into());
        push("GATEWAY_RESPONSE", "Approved".into());
    }
    push("IPN_DATE", ipn_date(step.at));
    f.into_iter()
        .map(|(name, value)| Field {
            name: name.to_owned(),
            value,
        })
        .collect()
}

/// The extra fields of a step that have a place of their own in the
/// body; any other goes right after `REFUND_TYPE`.
const PLACED_EXTRAS: [&str; 3] = [
    "REFUND_TYPE",
    "CHARGEBACK_RESOLUTION",
    "CHARGEBACK_REASON_CODE",
];

fn ipn_date(at: NaiveDateTime) -> String {
    at.format(IPN_DATE).to_string()
}

/// Signs `fields` with `key`: the same fields followed by the signature
/// fields of [`ALGORITHMS`].
pub fn sign_fields(fields: Vec<Field>, key: &SecretKey) -> Result<Vec<Field>, SimulationError> {
    sign_fields_with(fields, key, &ALGORITHMS)
}

/// Signs `fields` (any signature fields they hold are replaced) with
/// `algorithms`, in that order.
pub fn sign_fields_with(
    fields: Vec<Field>,
    key: &SecretKey,
    algorithms: &[Algorithm],
) -> Result<Vec<Field>, SimulationError> {
    let form = FormBody::from_fields(fields);
    let signed = sign(&form, key, algorithms).map_err(SimulationError::Sign)?;
    Ok(signed.fields().to_vec())
}

/// The same notification stamped for another delivery: `IPN_DATE` set to
/// `at` and signed again with `algorithms`, as the processor does for each
/// retry, each notification URL and each manual resend (docs/protocol.md
/// §5, §11 (a)).
pub fn restamped(
    signed_fields: &[Field],
    at: NaiveDateTime,
    key: &SecretKey,
    algorithms: &[Algorithm],
) -> Result<Vec<u8>, SimulationError> {
    let mut found = false;
    let fields: Vec<Field> = signed_fields
        .iter()
        .map(|field| {
            if field.name == "IPN_DATE" {
                found = true;
                Field {
                    name: field.name.clone(),
                    value: ipn_date(at),
                }
            } else {
                field.clone()
            }
        })
        .collect();
    if !found {
        return Err(SimulationError::Internal("no IPN_DATE to stamp"));
    }
    Ok(encode(sign_fields_with(fields, key, algorithms)?))
}

/// The signed fields with the name of each field in `names` replaced by
/// its pair's (`(from, to)`), values and signatures untouched: what an
/// attacker or a careless proxy can do without breaking the signature,
/// which covers values only (docs/protocol.md §3, §11 (c)).
pub fn renamed(
    signed_fields: &[Field],
    names: &[(&str, &str)],
) -> Result<Vec<u8>, SimulationError> {
    let mut renamed = 0;
    let fields: Vec<Field> = signed_fields
        .iter()
        .map(
            |field| match names.iter().find(|(from, _)| *from == field.name) {
                Some((_, to)) => {
                    renamed += 1;
                    Field {
                        name: (*to).to_owned(),
                        value: field.value.clone(),
                    }
                }
                None => field.clone(),
            },
        )
        .collect();
    if renamed != names.len() {
        return Err(SimulationError::Internal("a field to rename is missing"));
    }
    Ok(encode(fields))
}

/// The signed fields without the signature fields of `algorithms`.
pub fn stripped(signed_fields: &[Field], algorithms: &[Algorithm]) -> Vec<u8> {
    let fields: Vec<Field> = signed_fields
        .iter()
        .filter(|field| !algorithms.iter().any(|a| a.field_name() == field.name))
        .cloned()
        .collect();
    encode(fields)
}

/// `body` with the `nth` (modulo their number) digit of the value of
/// `field` written as a percent-escape (`%31` for `1`): the same decoded
/// values, other bytes, as a proxy that re-encodes forms may send them.
pub fn percent_encode_digit(
    body: &[u8],
    field: &str,
    nth: usize,
) -> Result<Vec<u8>, SimulationError> {
    let pattern = format!("&{field}=");
    let start = body
        .windows(pattern.len())
        .position(|window| window == pattern.as_bytes())
        .map(|at| at + pattern.len())
        .ok_or(SimulationError::Internal("no field to re-encode"))?;
    let value = body.get(start..).unwrap_or_default();
    let value = value.split(|&b| b == b'&').next().unwrap_or_default();
    let digits: Vec<usize> = value
        .iter()
        .enumerate()
        .filter(|(_, b)| b.is_ascii_digit())
        .map(|(i, _)| start + i)
        .collect();
    if digits.is_empty() {
        return Err(SimulationError::Internal("no digit to percent-encode"));
    }
    let at = digits[nth % digits.len()];
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(format!("%{:02X}", body[at]).as_bytes());
    out.extend_from_slice(&body[at + 1..]);
    Ok(out)
}

/// Encodes fields as the processor POSTs them
/// (`application/x-www-form-urlencoded`, wire order kept).
pub fn encode(fields: Vec<Field>) -> Vec<u8> {
    FormBody::from_fields(fields).encode().into_bytes()
}

/// A forged copy of a signed body: IPN_TOTALGENERAL replaced by
/// `forged_amount`, the genuine signatures kept. What an attacker who
/// captured a notification would try; it must fail verification.
pub fn tampered_body(
    signed_fields: &[Field],
    forged_amount: &str,
) -> Result<Vec<u8>, SimulationError> {
    let mut found = false;
    let fields: Vec<Field> = signed_fields
        .iter()
        .map(|field| {
            if field.name == "IPN_TOTALGENERAL" {
                found = true;
                Field {
                    name: field.name.clone(),
                    value: forged_amount.to_owned(),
                }
            } else {
                field.clone()
            }
        })
        .collect();
    if !found {
        return Err(SimulationError::Internal(
            "no IPN_TOTALGENERAL to tamper with",
        ));
    }
    Ok(encode(fields))
}
