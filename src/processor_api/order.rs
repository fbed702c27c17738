//! An order as the processor's API reports it, reduced to what
//! reconciliation needs.
//!
//! The processor's order object also carries `BillingDetails`,
//! `DeliveryDetails`, `CustomerDetails` and `PaymentDetails` (names,
//! addresses, e-mails, card digits). None of them has a field here, so serde
//! skips them while parsing: they never exist in a value of this module and
//! cannot reach the database, a log or a metric.
//!
//! Amounts are exact: the body's JSON numbers are turned into strings
//! before serde sees them ([`numbers_as_strings`]), because serde_json would
//! otherwise read `4.1015` through an `f64`.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// An exact decimal as the API wrote it (`107.00`, `-0.57`,
/// `0.20810660205937`): digits, an optional sign and fraction, no exponent.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ApiDecimal(String);

impl ApiDecimal {
    pub fn parse(text: &str) -> Option<Self> {
        let digits = text.strip_prefix('-').unwrap_or(text);
        let (whole, fraction) = match digits.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (digits, None),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        (all_digits(whole) && fraction.is_none_or(all_digits)).then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiDecimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ApiDecimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ApiDecimal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not an exact decimal")))
    }
}

/// What reconciliation needs of an order (processor-traffic.md §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiOrder {
    /// The processor's order reference.
    pub ref_no: String,
    /// The merchant's own reference, when the order carried one.
    pub external_reference: Option<String>,
    /// `PENDING`, `AUTHRECEIVED`, `COMPLETE`, `CANCELED`, `REFUND`, ...
    pub status: String,
    /// `WAITING`, `OK`, `FRAUD`, `INVALIDDATA`, ...
    pub approve_status: Option<String>,
    /// The order (shopper) currency, upper-cased (the API writes `usd`).
    pub currency: Option<String>,
    pub net_price: Option<ApiDecimal>,
    pub gross_price: Option<ApiDecimal>,
    pub vat: Option<ApiDecimal>,
    /// The processor's fee, in the order currency (`AvangateCommission`).
    pub commission: Option<ApiDecimal>,
    /// Order currency to payout currency.
    pub fx_rate: Option<ApiDecimal>,
    pub fx_markup: Option<ApiDecimal>,
    pub payout_currency: Option<String>,
    pub items: Vec<ApiItem>,
}

/// One line of an order: its references, nothing about the product's
/// buyer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiItem {
    pub line_item_reference: Option<String>,
    pub external_reference: Option<String>,
    /// The subscriptions this line created or renewed.
    pub subscription_references: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireOrder {
    ref_no: String,
    external_reference: Option<String>,
    status: String,
    approve_status: Option<String>,
    currency: Option<String>,
    net_price: Option<ApiDecimal>,
    gross_price: Option<ApiDecimal>,
    #[serde(rename = "VAT")]
    vat: Option<ApiDecimal>,
    avangate_commission: Option<ApiDecimal>,
    fx_rate: Option<ApiDecimal>,
    fx_markup: Option<ApiDecimal>,
    payout_currency: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    items: Vec<WireItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireItem {
    line_item_reference: Option<String>,
    external_reference: Option<String>,
    product_details: Option<WireProduct>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireProduct {
    #[serde(default, deserialize_with = "null_as_empty")]
    subscriptions: Vec<WireSubscription>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireSubscription {
    subscription_reference: Option<String>,
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// Why a response body is not an order. Says where, never what the body
/// held (it may hold personal data).
#[derive(Debug, thiserror::Error)]
#[error("not an order object (line {line}, column {column}: {category})")]
pub struct OrderParseError {
    line: usize,
    column: usize,
    category: &'static str,
}

/// Parses an order response body.
pub fn parse_order(body: &[u8]) -> Result<ApiOrder, OrderParseError> {
    let exact = numbers_as_strings(body);
    let wire: WireOrder = serde_json::from_slice(&exact).map_err(|err| OrderParseError {
        line: err.line(),
        column: err.column(),
        category: match err.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "a field is missing or of the wrong kind",
            serde_json::error::Category::Eof => "cut short",
        },
    })?;
    let upper = |code: Option<String>| code.map(|c| c.to_ascii_uppercase());
    Ok(ApiOrder {
        ref_no: wire.ref_no,
        external_reference: wire.external_reference.filter(|r| !r.is_empty()),
        status: wire.status,
        approve_status: wire.approve_status,
        currency: upper(wire.currency),
        net_price: wire.net_price,
        gross_price: wire.gross_price,
        vat: wire.vat,
        commission: wire.avangate_commission,
        fx_rate: wire.fx_rate,
        fx_markup: wire.fx_markup,
        payout_currency: upper(wire.payout_currency),
        items: wire
            .items
            .into_iter()
            .map(|item| ApiItem {
                line_item_reference: item.line_item_reference,
                external_reference: item.external_reference.filter(|r| !r.is_empty()),
                subscription_references: item
                    .product_details
                    .map(|p| p.subscriptions)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|s| s.subscription_reference)
                    .collect(),
            })
            .collect(),
    })
}

/// The JSON text with every number outside a string quoted (`4.1015` ->
/// `"4.1015"`), so it is read as its exact text rather than an `f64`.
pub fn numbers_as_strings(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() + 64);
    let (mut in_string, mut escaped) = (false, false);
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            out.push(b);
            i += 1;
        } else if b == b'"' {
            in_string = true;
            out.push(b);
            i += 1;
        } else if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while i < json.len()
                && matches!(json[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
            {
                i += 1;
            }
            out.push(b'"');
            out.extend_from_slice(&json[start..i]);
            out.push(b'"');
        } else {
            out.push(b);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like the processor's own fixture (`order_get_test` in its
    /// Python SDK), with invented personal details in every place the real
    /// object has them.
    const FULL: &str = r#"{
      "RefNo": "129806839", "OrderNo": 0, "ExternalReference": "shop-4711",
      "ShopperRefNo": null, "Status": "COMPLETE", "ApproveStatus": "OK",
      "VendorApproveStatus": "OK", "OrderDate": "2026-12-01 10:00:00",
      "Currency": "usd", "NetPrice": 107, "GrossPrice": 107.00,
      "NetDiscountedPrice": 107, "Discount": 0, "VAT": 0,
      "AffiliateCommission": 0, "AvangateCommission": 4.1015,
      "FxRate": 0.20810660205937, "FxMarkup": 4, "PayoutCurrency": "usd",
      "TestOrder": false,
      "BillingDetails": {"FirstName": "Ionela", "LastName": "Zamfirescu",
        "Email": "ionela.zamfirescu@example.org", "Address1": "Strada Lalelelor 12",
        "City": "Cluj", "Phone": "+40 721 000 111", "Zip": "400001",
        "CountryCode": "ro", "Company": "Zamfirescu SRL", "FiscalCode": "RO123"},
      "DeliveryDetails": {"FirstName": "Ionela", "Address1": "Strada Lalelelor 12"},
      "CustomerDetails": {"Email": "ionela.zamfirescu@example.org",
        "ExternalCustomerReference": "cust-9f2"},
      "PaymentDetails": {"Type": "CC", "Currency": "usd",
        "PaymentMethod": {"FirstDigits": "411111", "LastDigits": "1111",
          "CardType": "visa", "RecurringEnabled": true}, "CustomerIP": "203.0.113.9"},
      "Items": [
        {"ProductDetails": {"Name": "Pro licence", "RenewalStatus": true,
           "Subscriptions": [{"SubscriptionReference": "XRILXB9ZI3",
             "SubscriptionStartDate": "2026-12-01 10:00:00"}]},
         "Price": {"UnitNetPrice": 107, "GrossPrice": 107},
         "LineItemReference": "b4f0e1c2", "PurchaseType": "PRODUCT",
         "ExternalReference": "", "Quantity": 1},
        {"ProductDetails": {"Name": "Support", "Subscriptions": null},
         "LineItemReference": "c5a1", "Quantity": 1}
      ],
      "Promotions": [], "Errors": null
    }"#;

    #[test]
    fn the_fields_reconciliation_needs_are_read_exactly() {
        let order = parse_order(FULL.as_bytes()).expect("parses");
        assert_eq!(order.ref_no, "129806839");
        assert_eq!(order.external_reference.as_deref(), Some("shop-4711"));
        assert_eq!(order.status, "COMPLETE");
        assert_eq!(order.approve_status.as_deref(), Some("OK"));
        assert_eq!(order.currency.as_deref(), Some("USD"));
        assert_eq!(order.payout_currency.as_deref(), Some("USD"));
        assert_eq!(
            order.gross_price.as_ref().map(ApiDecimal::as_str),
            Some("107.00")
        );
        assert_eq!(
            order.net_price.as_ref().map(ApiDecimal::as_str),
            Some("107")
        );
        // Exactly as written: no f64 on the way.
        assert_eq!(
            order.commission.as_ref().map(ApiDecimal::as_str),
            Some("4.1015")
        );
        assert_eq!(
            order.fx_rate.as_ref().map(ApiDecimal::as_str),
            Some("0.20810660205937")
        );
        assert_eq!(order.items.len(), 2);
        assert_eq!(order.items[0].subscription_references, ["XRILXB9ZI3"]);
        assert_eq!(
            order.items[0].line_item_reference.as_deref(),
            Some("b4f0e1c2")
        );
        assert_eq!(order.items[0].external_reference, None);
        assert!(order.items[1].subscription_references.is_empty());
    }

    #[test]
    fn no_personal_field_survives_parsing() {
        let order = parse_order(FULL.as_bytes()).expect("parses");
        let shown = format!("{order:?}");
        for personal in [
            "Ionela",
            "Zamfirescu",
            "ionela.zamfirescu@example.org",
            "Lalelelor",
            "Cluj",
            "+40 721",
            "400001",
            "RO123",
            "411111",
            "1111\"",
            "visa",
            "203.0.113.9",
            "cust-9f2",
            "Pro licence",
        ] {
            assert!(!shown.contains(personal), "{personal} in {shown}");
        }
    }

    #[test]
    fn a_number_ref_and_strings_with_digits_are_kept_as_text() {
        let order = parse_order(
            br#"{"RefNo": 211153389, "Status": "PENDING", "ExternalReference": "a \"1.5\" b",
                 "GrossPrice": -0.57, "Items": null}"#,
        )
        .expect("parses");
        assert_eq!(order.ref_no, "211153389");
        assert_eq!(order.external_reference.as_deref(), Some("a \"1.5\" b"));
        assert_eq!(order.gross_price.map(|d| d.0), Some("-0.57".to_owned()));
        assert!(order.items.is_empty());
    }

    #[test]
    fn an_unreadable_body_is_refused_without_quoting_it() {
        let err = parse_order(br#"{"Status": "COMPLETE", "Email": "x@example.org"}"#)
            .expect_err("no RefNo")
            .to_string();
        assert!(!err.contains("example.org"), "{err}");
        assert!(parse_order(b"<html>").is_err());
        assert!(parse_order(br#"{"RefNo": "1", "Status": "X", "GrossPrice": 1e3}"#).is_err());
        assert_eq!(ApiDecimal::parse("10.").map(|d| d.0), None);
        assert_eq!(
            ApiDecimal::parse("-0.5").map(|d| d.0),
            Some("-0.5".to_owned())
        );
    }
}
