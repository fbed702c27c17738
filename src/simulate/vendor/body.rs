//! The software vendor's notices as the processor lays them out: payment
//! notifications with the field list and order of its 2023 SDK fixture
//! (processor-traffic §6.2: licence fields, money fields, the payout side,
//! unknown product-option fields) and licence change notifications in the
//! order of its LCN parameter list (§4.2). Both are held to
//! `domain::layout` by the daemon; [`super::tests`] checks every body
//! against it.

use chrono::NaiveDateTime;

use crate::domain::{Currency, Money};
use crate::ipn::Field;

use super::super::people::Customer;
use super::LIFETIME_EXPIRY;
use super::money::{format_e4, vat_rate_text};

const DATE: &str = "%Y-%m-%d %H:%M:%S";
const IPN_DATE: &str = "%Y%m%d%H%M%S";

fn date(at: Option<NaiveDateTime>) -> String {
    at.map(|at| at.format(DATE).to_string()).unwrap_or_default()
}

/// A product of the vendor's catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VendorProduct {
    pub id: &'static str,
    pub name: &'static str,
    pub code: &'static str,
    /// Net price in euro cents (converted with `people::price_in`).
    pub eur_cents: u64,
}

/// One line item of an order.
#[derive(Debug, Clone)]
pub struct ItemLine {
    pub product: VendorProduct,
    pub quantity: u64,
    /// Net unit price, minor units.
    pub unit_price: i64,
    /// VAT of the line, minor units.
    pub vat: i64,
    /// VAT rate in hundredths of a percent (`2100` is 21 %).
    pub vat_rate_bp: i64,
    /// The licence the line names: `None` for a one-off product.
    pub licence: Option<LicenceTerm>,
}

impl ItemLine {
    pub fn net(&self) -> i64 {
        self.unit_price * i64::try_from(self.quantity).unwrap_or(1)
    }
}

/// The licence fields of a line.
#[derive(Debug, Clone)]
pub struct LicenceTerm {
    pub licence_ref: String,
    /// `REGULAR`, `RENEWAL`, `TRIAL`.
    pub licence_type: &'static str,
    pub starts_at: NaiveDateTime,
    /// `None`: lifetime.
    pub expires_at: Option<NaiveDateTime>,
    /// The first order's merchant reference, on a renewal of an order that
    /// had one.
    pub original_order_ref: Option<String>,
}

/// What every notification of one order shares.
#[derive(Debug, Clone)]
pub struct VendorOrder {
    pub refno: u64,
    /// `REFNOEXT`: empty for a hosted-cart order and every renewal.
    pub merchant_ref: String,
    pub currency: Currency,
    pub lines: Vec<ItemLine>,
    pub sale: NaiveDateTime,
    pub customer: Customer,
    pub customer_reference: u64,
    pub card_last_digits: String,
    pub card_type: &'static str,
    /// `Web` (hosted cart) or `API`.
    pub origin: &'static str,
    /// Gross (`IPN_TOTALGENERAL`), minor units.
    pub gross: i64,
    /// Σ VAT, minor units.
    pub vat: i64,
    /// `IPN_COMMISSION` in 10⁻⁴ of the currency's major unit.
    pub commission_e4: i64,
    /// `FX_RATE` as sent.
    pub fx_rate: &'static str,
    pub fx_markup: &'static str,
    /// `PAYABLE_AMOUNT` in minor units of `payout`.
    pub payable: i64,
    /// `PAYOUT_CURRENCY`.
    pub payout: Currency,
}

/// One payment notification of an order.
#[derive(Debug, Clone, Copy)]
pub struct IpnStep {
    pub status: &'static str,
    pub at: NaiveDateTime,
    pub message_id: u64,
    /// When the payment was authorized and completed (dates the body
    /// carries).
    pub payment_date: Option<NaiveDateTime>,
    pub complete_date: Option<NaiveDateTime>,
}

fn money(minor: i64, currency: Currency) -> String {
    Money::from_minor(minor, currency).format_amount()
}

/// The fields of a payment notification, in the processor's order,
/// without signatures.
pub fn ipn_fields(order: &VendorOrder, step: &IpnStep) -> Vec<Field> {
    let c = &order.customer;
    let cur = order.currency;
    let mut f: Vec<(String, String)> = Vec::with_capacity(140);
    let mut push = |name: &str, value: String| f.push((name.to_owned(), value));
    // The licence reference is set once the payment is authorized; a
    // pending order names none yet.
    let licensed = step.status != "PENDING";
    let each =
        |push: &mut dyn FnMut(&str, String), name: &str, value: &dyn Fn(&ItemLine) -> String| {
            for line in &order.lines {
                push(name, value(line));
            }
        };
    push("GIFT_ORDER", "0".into());
    push("SALEDATE", date(Some(order.sale)));
    push("PAYMENTDATE", date(step.payment_date));
    push("REFNO", order.refno.to_string());
    push("REFNOEXT", order.merchant_ref.clone());
    each(&mut push, "ORIGINAL_REFNOEXT[]", &|l| {
        l.licence
            .as_ref()
            .and_then(|t| t.original_order_ref.clone())
            .unwrap_or_default()
    });
    push("SHOPPER_REFERENCE_NUMBER", String::new());
    let order_no = if step.status == "COMPLETE" {
        (order.refno % 100_000).to_string()
    } else {
        "0".to_owned()
    };
    push("ORDERNO", order_no);
    push("ORDERSTATUS", step.status.into());
    push("PAYMETHOD", "Visa/MasterCard".into());
    push("PAYMETHOD_CODE", "CCVISAMC".into());
    push("FIRSTNAME", c.first_name.clone());
    push("LASTNAME", c.last_name.clone());
    push("COMPANY", c.company.clone());
    push("REGISTRATIONNUMBER", String::new());
    push("FISCALCODE", String::new());
    push("TAX_OFFICE", String::new());
    push("CBANKNAME", String::new());
    push("CBANKACCOUNT", String::new());
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
    push("COMPANY_D", c.company.clone());
    push("ADDRESS1_D", c.address.clone());
    push("ADDRESS2_D", String::new());
    push("CITY_D", c.city.clone());
    push("STATE_D", c.state.clone());
    push("ZIPCODE_D", c.zip.clone());
    push("COUNTRY_D", c.country.clone());
    push("COUNTRY_D_CODE", c.country_code.clone());
    push("PHONE_D", c.phone.clone());
    push("EMAIL_D", c.email.clone());
    push("IPADDRESS", c.ip_address.clone());
    push("IPCOUNTRY", c.country.clone());
    push("COMPLETE_DATE", date(step.complete_date));
    push("TIMEZONE_OFFSET", "GMT+00:00".into());
    push("CURRENCY", cur.as_str().into());
    push("LANGUAGE", "en".into());
    push("ORDERFLOW", "REGULAR".into());
    each(&mut push, "IPN_PID[]", &|l| l.product.id.to_owned());
    each(&mut push, "IPN_PNAME[]", &|l| l.product.name.to_owned());
    each(&mut push, "IPN_PCODE[]", &|l| l.product.code.to_owned());
    each(&mut push, "IPN_EXTERNAL_REFERENCE[]", &|_| String::new());
    each(&mut push, "IPN_INFO[]", &|_| String::new());
    each(&mut push, "IPN_QTY[]", &|l| l.quantity.to_string());
    each(&mut push, "IPN_PRICE[]", &|l| money(l.unit_price, cur));
    each(&mut push, "IPN_VAT[]", &|l| money(l.vat, cur));
    each(&mut push, "IPN_VAT_RATE[]", &|l| {
        vat_rate_text(l.vat_rate_bp)
    });
    each(&mut push, "IPN_VER[]", &|_| "1".to_owned());
    each(&mut push, "IPN_DISCOUNT[]", &|_| money(0, cur));
    each(&mut push, "IPN_PROMOTION_CATEGORY[]", &|_| String::new());
    each(&mut push, "IPN_PROMONAME[]", &|_| String::new());
    each(&mut push, "IPN_PROMOCODE[]", &|_| String::new());
    each(&mut push, "IPN_ORDER_COSTS[]", &|_| "0".to_owned());
    each(&mut push, "IPN_SKU[]", &|_| String::new());
    push("IPN_PARTNER_CODE", String::new());
    each(&mut push, "IPN_PGROUP[]", &|_| "0".to_owned());
    each(&mut push, "IPN_PGROUP_NAME[]", &|_| String::new());
    push("MESSAGE_ID", step.message_id.to_string());
    push("MESSAGE_TYPE", step.status.into());
    fn term(l: &ItemLine, licensed: bool) -> Option<&LicenceTerm> {
        l.licence.as_ref().filter(|_| licensed)
    }
    each(&mut push, "IPN_LICENSE_PROD[]", &|l| {
        if l.licence.is_some() {
            l.product.id.to_owned()
        } else {
            String::new()
        }
    });
    each(&mut push, "IPN_LICENSE_TYPE[]", &|l| {
        l.licence
            .as_ref()
            .map(|t| t.licence_type.to_owned())
            .unwrap_or_default()
    });
    each(&mut push, "IPN_LICENSE_REF[]", &|l| {
        term(l, licensed)
            .map(|t| t.licence_ref.clone())
            .unwrap_or_default()
    });
    each(&mut push, "IPN_LICENSE_EXP[]", &|l| {
        term(l, licensed)
            .map(|t| match t.expires_at {
                Some(at) => date(Some(at)),
                None => LIFETIME_EXPIRY.to_owned(),
            })
            .unwrap_or_default()
    });
    each(&mut push, "IPN_LICENSE_START[]", &|l| {
        term(l, licensed)
            .map(|t| date(Some(t.starts_at)))
            .unwrap_or_default()
    });
    each(&mut push, "IPN_LICENSE_LIFETIME[]", &|l| match &l.licence {
        Some(t) if t.expires_at.is_none() => "YES".to_owned(),
        Some(_) => "NO".to_owned(),
        None => String::new(),
    });
    each(&mut push, "IPN_LICENSE_ADDITIONAL_INFO[]", &|_| {
        String::new()
    });
    each(&mut push, "IPN_DELIVEREDCODES[]", &|_| String::new());
    push("IPN_DOWNLOAD_LINK", String::new());
    each(&mut push, "IPN_TOTAL[]", &|l| money(l.net() + l.vat, cur));
    push("IPN_TOTALGENERAL", money(order.gross, cur));
    push("IPN_SHIPPING", money(0, cur));
    push("IPN_SHIPPING_TAX", money(0, cur));
    push(
        "AVANGATE_CUSTOMER_REFERENCE",
        order.customer_reference.to_string(),
    );
    push("EXTERNAL_CUSTOMER_REFERENCE", String::new());
    push("IPN_PARTNER_MARGIN_PERCENT", "0.00".into());
    push("IPN_PARTNER_MARGIN", "0.00".into());
    push("IPN_EXTRA_MARGIN", "0.00".into());
    push("IPN_EXTRA_DISCOUNT", "0.00".into());
    push("IPN_COUPON_DISCOUNT", "0.00".into());
    push("IPN_LINK_SOURCE", String::new());
    push("IPN_COMMISSION", format_e4(order.commission_e4, cur));
    push("REFUND_TYPE", String::new());
    // Product options: a field per option, named after the product id,
    // where the processor's 2022 fixture has them (processor-traffic
    // §6.3). Not in the layout: the daemon must hash and skip them.
    for line in order.lines.iter().filter(|l| l.licence.is_some()) {
        push(
            &format!("IPN_PRODUCT_OPTIONS_{}_SEATS[]", line.product.id),
            line.quantity.to_string(),
        );
    }
    push("CHARGEBACK_RESOLUTION", "NONE".into());
    push("CHARGEBACK_REASON_CODE", String::new());
    push("TEST_ORDER", "0".into());
    push("IPN_ORDER_ORIGIN", order.origin.into());
    push("FRAUD_STATUS", "APPROVED".into());
    push("CARD_TYPE", order.card_type.into());
    push("CARD_LAST_DIGITS", order.card_last_digits.clone());
    push("CARD_EXPIRATION_DATE", "08/29".into());
    push("GATEWAY_RESPONSE", "Approved".into());
    push("IPN_DATE", step.at.format(IPN_DATE).to_string());
    push("FX_RATE", order.fx_rate.into());
    push("FX_MARKUP", order.fx_markup.into());
    push("PAYABLE_AMOUNT", money(order.payable, order.payout));
    push("PAYOUT_CURRENCY", order.payout.as_str().into());
    push("VENDOR_CODE", "250111206876".into());
    push("PROPOSAL_ID", String::new());
    f.into_iter()
        .map(|(name, value)| Field { name, value })
        .collect()
}

/// What a licence change notification says.
#[derive(Debug, Clone)]
pub struct LcnStep {
    pub licence_ref: String,
    /// `ACTIVE`, `PASTDUE`, `EXPIRED`, `CANCELED`, ...
    pub status: &'static str,
    pub dispatch_reason: &'static str,
    pub changed_by: &'static str,
    /// `DATE_UPDATED`.
    pub updated_at: NaiveDateTime,
    /// `None`: lifetime.
    pub expires_at: Option<NaiveDateTime>,
    pub starts_at: NaiveDateTime,
    pub purchased_at: NaiveDateTime,
    pub trial: bool,
    pub recurring: bool,
    pub product: VendorProduct,
    /// The next renewal's date and price (minor units of `currency`).
    pub next_renewal: Option<(NaiveDateTime, i64)>,
    pub currency: Currency,
    pub original_refno: u64,
    pub last_refno: u64,
    pub renewals: usize,
    pub customer_reference: u64,
}

/// The fields of a licence change notification, in the processor's
/// order, without signatures.
pub fn lcn_fields(lcn: &LcnStep, customer: &Customer, card_last_digits: &str) -> Vec<Field> {
    let mut f: Vec<(&str, String)> = Vec::with_capacity(64);
    let mut push = |name: &'static str, value: String| f.push((name, value));
    let expiry = match lcn.expires_at {
        Some(at) => date(Some(at)),
        None => LIFETIME_EXPIRY.to_owned(),
    };
    let stopped = matches!(lcn.status, "EXPIRED" | "CANCELED" | "DISABLED");
    push("FIRST_NAME", customer.first_name.clone());
    push("LAST_NAME", customer.last_name.clone());
    push("COMPANY", customer.company.clone());
    push("EMAIL", customer.email.clone());
    push("PHONE", customer.phone.clone());
    push("FAX", String::new());
    push("COUNTRY", customer.country.clone());
    push("STATE", customer.state.clone());
    push("CITY", customer.city.clone());
    push("ZIP", customer.zip.clone());
    push("ADDRESS", customer.address.clone());
    push("LICENSE_CODE", lcn.licence_ref.clone());
    push("EXPIRATION_DATE", expiry);
    push("DATE_UPDATED", date(Some(lcn.updated_at)));
    push(
        "AVANGATE_CUSTOMER_REFERENCE",
        lcn.customer_reference.to_string(),
    );
    push("EXTERNAL_CUSTOMER_REFERENCE", String::new());
    push("TEST", "0".into());
    push("CHANGED_BY", lcn.changed_by.into());
    push(
        "LICENSE_TYPE",
        if lcn.trial { "TRIAL" } else { "REGULAR" }.into(),
    );
    push("DISABLED", if stopped { "1" } else { "0" }.into());
    push("RECURRING", if lcn.recurring { "1" } else { "0" }.into());
    push("LICENSE_PRODUCT", lcn.product.id.into());
    push("START_DATE", date(Some(lcn.starts_at)));
    push("PURCHASE_DATE", date(Some(lcn.purchased_at)));
    push(
        "LICENSE_LIFETIME",
        if lcn.expires_at.is_none() { "1" } else { "0" }.into(),
    );
    match lcn.next_renewal {
        Some((at, price)) => {
            push("NEXT_RENEWAL_DATE", at.format("%Y-%m-%d").to_string());
            push("NEXT_RENEWAL_PRICE", money(price, lcn.currency));
            push("NEXT_RENEWAL_CURRENCY", lcn.currency.as_str().into());
            push("NEXT_RENEWAL_PAYMETHOD", "Visa/MasterCard".into());
            push("NEXT_RENEWAL_PAYMETHOD_CODE", "CCVISAMC".into());
            push("NEXT_RENEWAL_CARD_LAST_DIGITS", card_last_digits.into());
            push("NEXT_RENEWAL_CARD_TYPE", "visa".into());
            push("NEXT_RENEWAL_CARD_EXPIRATION_DATE", "08/29".into());
        }
        None => {
            for name in [
                "NEXT_RENEWAL_DATE",
                "NEXT_RENEWAL_PRICE",
                "NEXT_RENEWAL_CURRENCY",
                "NEXT_RENEWAL_PAYMETHOD",
                "NEXT_RENEWAL_PAYMETHOD_CODE",
                "NEXT_RENEWAL_CARD_LAST_DIGITS",
                "NEXT_RENEWAL_CARD_TYPE",
                "NEXT_RENEWAL_CARD_EXPIRATION_DATE",
            ] {
                push(name, String::new());
            }
        }
    }
    push("PARTNER_CODE", String::new());
    push("AFFILIATE_ID", String::new());
    push("PSKU", String::new());
    push("ACTIVATION_CODE", String::new());
    push("STATUS", lcn.status.into());
    push(
        "EXPIRED",
        if lcn.status == "EXPIRED" { "1" } else { "0" }.into(),
    );
    push("TIMEZONE_OFFSET", "GMT+00:00".into());
    push("LICENSE_GRACE_PERIOD", "3".into());
    push("COUNTRY_CODE", customer.country_code.clone());
    push("END_USER_LANGUAGE", "en".into());
    push("DISPATCH_REASON", lcn.dispatch_reason.into());
    push("LAST_ORDER_REFERENCE", lcn.last_refno.to_string());
    push("ORIGINAL_ORDER_REFERENCE", lcn.original_refno.to_string());
    push("LICENSE_PRODUCT_CODE", lcn.product.code.into());
    // A field the processor added after the lists the daemon knows:
    // unknown to the layout, hashed like any other.
    push(
        "LICENSE_RENEWAL_DISCOUNT_PERCENT",
        if lcn.recurring { "0" } else { "" }.into(),
    );
    push("RENEWALS_NUMBER", lcn.renewals.to_string());
    push("UPGRADES_NUMBER", "0".into());
    push("IS_TRIAL", if lcn.trial { "1" } else { "0" }.into());
    f.into_iter()
        .map(|(name, value)| Field {
            name: name.to_owned(),
            value,
        })
        .collect()
}
