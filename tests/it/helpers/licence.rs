//! Licence change notifications (LCN) as the processor sends them: the
//! documented fields in its order, the end user's personal data and the
//! card of the next renewal, signed with the test key.

use ipn_reconciler::ipn::{Algorithm, FormBody, FormLimits, sign};

use super::amqp::test_key;

/// The last digits and expiry of the renewal card the bodies carry: card
/// data that must never be stored, logged or queued in clear (the names,
/// e-mail, phone and address are those of `fixtures/personal-data.json`).
pub const CARD_DATA: [&str; 2] = ["7531", "11/31"];

/// The fields of an LCN about subscription `code`, in the processor's
/// order.
pub fn lcn_fields(code: &str, status: &str, test: bool) -> Vec<(&'static str, String)> {
    let [last_digits, expiry] = CARD_DATA;
    vec![
        ("FIRST_NAME", "John".into()),
        ("LAST_NAME", "Smith".into()),
        ("COMPANY", "BV-6677".into()),
        ("EMAIL", "johnsmith@email.com".into()),
        ("PHONE", "951-121-2121".into()),
        ("FAX", String::new()),
        ("COUNTRY", "United States of America".into()),
        ("STATE", "New York".into()),
        ("CITY", "New York".into()),
        ("ZIP", "10001".into()),
        ("ADDRESS", "101 Main Street".into()),
        ("LICENSE_CODE", code.into()),
        ("EXPIRATION_DATE", "2026-12-02 09:20:44".into()),
        ("DATE_UPDATED", "2026-11-30 08:00:00".into()),
        ("AVANGATE_CUSTOMER_REFERENCE", "900101".into()),
        ("EXTERNAL_CUSTOMER_REFERENCE", String::new()),
        ("TEST", if test { "1" } else { "0" }.into()),
        ("CHANGED_BY", "SYSTEM".into()),
        ("LICENSE_TYPE", "REGULAR".into()),
        ("DISABLED", "0".into()),
        ("RECURRING", "1".into()),
        ("LICENSE_PRODUCT", "4711".into()),
        ("START_DATE", "2026-11-02 09:20:44".into()),
        ("PURCHASE_DATE", "2026-11-02 09:15:31".into()),
        ("NEXT_RENEWAL_DATE", "2026-12-02".into()),
        ("NEXT_RENEWAL_PRICE", "89.00".into()),
        ("NEXT_RENEWAL_CURRENCY", "EUR".into()),
        ("NEXT_RENEWAL_PAYMETHOD", "Visa/MasterCard".into()),
        ("NEXT_RENEWAL_PAYMETHOD_CODE", "CCVISAMC".into()),
        ("NEXT_RENEWAL_CARD_LAST_DIGITS", last_digits.into()),
        ("NEXT_RENEWAL_CARD_TYPE", "mastercard".into()),
        ("NEXT_RENEWAL_CARD_EXPIRATION_DATE", expiry.into()),
        ("STATUS", status.into()),
        ("DISPATCH_REASON", "LICENCE_PASTDUE".into()),
        ("LAST_ORDER_REFERENCE", "71000101".into()),
        ("ORIGINAL_ORDER_REFERENCE", "71000101".into()),
        ("LICENSE_PRODUCT_CODE", "BSP-1".into()),
        ("RENEWALS_NUMBER", "0".into()),
    ]
}

/// `fields` as a form, signed with the test key and `algorithms` (the
/// signature fields at the end, in that order).
pub fn signed(fields: &[(&str, String)], algorithms: &[Algorithm]) -> Vec<u8> {
    let mut form = FormBody::default();
    for (name, value) in fields {
        form.push(*name, value.as_str());
    }
    sign(&form, &test_key(), algorithms)
        .expect("sign")
        .encode()
        .into_bytes()
}

/// A signed LCN (SHA3-256 and SHA-256) about subscription `code`.
pub fn signed_lcn(code: &str, status: &str, test: bool) -> Vec<u8> {
    signed(
        &lcn_fields(code, status, test),
        &[Algorithm::Sha3_256, Algorithm::Sha256],
    )
}

/// A parsed body.
pub fn form(body: &[u8]) -> FormBody {
    FormBody::parse(body, &FormLimits::default()).expect("parses")
}

/// Whether `text` holds the renewal card's data, in clear or
/// form-encoded, ignoring log timestamps and runs of 12 or more hex
/// digits (digests, whose digits may spell anything).
pub fn holds_card_data(text: &str) -> bool {
    let untimed: String = text
        .lines()
        .map(
            |line| match serde_json::from_str::<serde_json::Value>(line) {
                Ok(serde_json::Value::Object(mut entry)) => {
                    entry.remove("timestamp");
                    serde_json::Value::Object(entry).to_string()
                }
                _ => line.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("\n");
    let mut scrubbed = String::with_capacity(untimed.len());
    let mut run = String::new();
    for c in untimed.chars() {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        if run.len() < 12 {
            scrubbed.push_str(&run);
        }
        run.clear();
        scrubbed.push(c);
    }
    if run.len() < 12 {
        scrubbed.push_str(&run);
    }
    CARD_DATA
        .iter()
        .any(|data| scrubbed.contains(data) || scrubbed.contains(&data.replace('/', "%2F")))
}
