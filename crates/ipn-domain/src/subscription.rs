//! Subscriptions: the licences a notice's line items name.
//!
//! A software vendor's sale is often a subscription. Each line item of a
//! paid order carries the subscription's reference (`IPN_LICENSE_REF[i]`,
//! the processor's `SubscriptionReference`, the LCN's `LICENSE_CODE`), its
//! product, the licence type (`REGULAR`, `RENEWAL`, `TRIAL`, `UPGRADE`,
//! or whatever the processor sends, kept as sent), the term it pays for
//! (`IPN_LICENSE_START[i]` to `IPN_LICENSE_EXP[i]`, or lifetime) and, on a
//! renewal, the first order's merchant reference (`ORIGINAL_REFNOEXT[i]`)
//! when it had one (docs/protocol.md §15).
//!
//! An automatic renewal is a new order (new `REFNO`) on the same licence,
//! so a subscription is the set of orders that name its reference;
//! [`Subscription::of`] folds them, in any order, into what finance asks
//! about: first and latest order, start, expiry, renewals.

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::ipn::FormBody;
use crate::status::{UNKNOWN_VALUE_MAX_CHARS, clip_for_display};
use crate::tokenize::{DATE_FORMAT, TokenizeError};

/// Field names of the line items' licence fields.
pub mod fields {
    pub const IPN_LICENSE_REF: &str = "IPN_LICENSE_REF[]";
    pub const IPN_PCODE: &str = "IPN_PCODE[]";
    pub const IPN_LICENSE_TYPE: &str = "IPN_LICENSE_TYPE[]";
    pub const IPN_LICENSE_START: &str = "IPN_LICENSE_START[]";
    pub const IPN_LICENSE_EXP: &str = "IPN_LICENSE_EXP[]";
    pub const IPN_LICENSE_LIFETIME: &str = "IPN_LICENSE_LIFETIME[]";
    pub const ORIGINAL_REFNOEXT: &str = "ORIGINAL_REFNOEXT[]";
}

/// Longest accepted licence reference (the processor's are 10 characters).
pub const MAX_LICENCE_REF_CHARS: usize = 32;
/// Longest accepted product code or licence type.
pub const MAX_CODE_CHARS: usize = 64;
/// The expiry the processor writes for a lifetime licence.
const LIFETIME_EXPIRY: &str = "9999-12-31 23:59:59";

/// The licence fields of one line item that names a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LicenceLine {
    /// `IPN_LICENSE_REF[i]`: the subscription's reference.
    pub licence_ref: String,
    /// `IPN_PCODE[i]`: the merchant's product code.
    pub product_code: Option<String>,
    /// `IPN_LICENSE_TYPE[i]`, as sent (`REGULAR`, `RENEWAL`, `TRIAL`, ...).
    pub licence_type: Option<String>,
    /// `IPN_LICENSE_START[i]`.
    pub starts_at: Option<NaiveDateTime>,
    /// `IPN_LICENSE_EXP[i]`; `None` for a lifetime licence.
    pub expires_at: Option<NaiveDateTime>,
    /// `IPN_LICENSE_LIFETIME[i]=YES` (or the lifetime expiry date).
    pub lifetime: bool,
    /// `ORIGINAL_REFNOEXT[i]`: the first order's merchant reference, on a
    /// renewal of an order that had one.
    pub original_order_ref: Option<String>,
}

impl LicenceLine {
    /// Whether the line renews a subscription (`IPN_LICENSE_TYPE=RENEWAL`).
    pub fn is_renewal(&self) -> bool {
        self.licence_type.as_deref() == Some("RENEWAL")
    }
}

/// The line items of `form` that name a subscription, in wire order.
///
/// Line `i` is the `i`-th element of each `IPN_*[]` array; an element
/// the merchant's IPN settings leave out is `None`. A line without a
/// licence reference (a pending order, a product that is not a
/// subscription) names none and is skipped.
pub fn licence_lines(form: &FormBody) -> Result<Vec<LicenceLine>, TokenizeError> {
    let column = |name: &'static str| -> Vec<&str> { form.values(name).collect() };
    let refs = column(fields::IPN_LICENSE_REF);
    let codes = column(fields::IPN_PCODE);
    let types = column(fields::IPN_LICENSE_TYPE);
    let starts = column(fields::IPN_LICENSE_START);
    let expiries = column(fields::IPN_LICENSE_EXP);
    let lifetimes = column(fields::IPN_LICENSE_LIFETIME);
    let originals = column(fields::ORIGINAL_REFNOEXT);
    let mut lines = Vec::new();
    for (i, licence_ref) in refs.iter().enumerate() {
        if licence_ref.is_empty() {
            continue;
        }
        let expiry = nth(&expiries, i);
        let lifetime = nth(&lifetimes, i) == Some("YES") || expiry == Some(LIFETIME_EXPIRY);
        lines.push(LicenceLine {
            licence_ref: parse_licence_ref(licence_ref)?,
            product_code: nth(&codes, i)
                .map(|code| parse_code(code, fields::IPN_PCODE))
                .transpose()?,
            licence_type: nth(&types, i)
                .map(|kind| parse_code(kind, fields::IPN_LICENSE_TYPE))
                .transpose()?,
            starts_at: nth(&starts, i)
                .map(|date| parse_date(date, fields::IPN_LICENSE_START))
                .transpose()?,
            expires_at: if lifetime {
                None
            } else {
                expiry
                    .map(|date| parse_date(date, fields::IPN_LICENSE_EXP))
                    .transpose()?
            },
            lifetime,
            original_order_ref: nth(&originals, i)
                .map(|reference| parse_code(reference, fields::ORIGINAL_REFNOEXT))
                .transpose()?,
        });
    }
    Ok(lines)
}

/// Element `i` of an array field, `None` when missing or empty.
fn nth<'a>(values: &[&'a str], i: usize) -> Option<&'a str> {
    values.get(i).copied().filter(|value| !value.is_empty())
}

fn parse_licence_ref(value: &str) -> Result<String, TokenizeError> {
    if value.len() <= MAX_LICENCE_REF_CHARS && value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(value.to_owned())
    } else {
        Err(TokenizeError::InvalidField {
            field: fields::IPN_LICENSE_REF,
            reason: "not 1-32 letters and digits",
        })
    }
}

/// A product code, licence type or merchant reference: kept as sent,
/// but bounded and without control characters (they would forge log
/// lines and CSV rows).
fn parse_code(value: &str, field: &'static str) -> Result<String, TokenizeError> {
    let limit = if field == fields::ORIGINAL_REFNOEXT {
        crate::tokenize::MAX_ORDER_REF_CHARS
    } else {
        MAX_CODE_CHARS
    };
    if value.chars().count() > limit {
        return Err(TokenizeError::InvalidField {
            field,
            reason: "too long",
        });
    }
    if value.chars().any(char::is_control) {
        return Err(TokenizeError::InvalidField {
            field,
            reason: "contains control characters",
        });
    }
    Ok(value.to_owned())
}

fn parse_date(value: &str, field: &'static str) -> Result<NaiveDateTime, TokenizeError> {
    NaiveDateTime::parse_from_str(value, DATE_FORMAT).map_err(|_| TokenizeError::InvalidField {
        field,
        reason: "not a YYYY-MM-DD HH:MM:SS date",
    })
}

/// What the processor last said of a subscription (an LCN's `STATUS`),
/// or, before any LCN, what its orders say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum SubscriptionStatus {
    Active,
    PastDue,
    Expired,
    Disabled,
    PendingActivation,
    CancellationScheduled,
    Canceled,
    /// A status this version does not know, clipped, as sent.
    Other(String),
}

impl SubscriptionStatus {
    /// Every known status, as `subscriptions list --status` takes them.
    pub const KNOWN: [SubscriptionStatus; 7] = [
        SubscriptionStatus::Active,
        SubscriptionStatus::PastDue,
        SubscriptionStatus::Expired,
        SubscriptionStatus::Disabled,
        SubscriptionStatus::PendingActivation,
        SubscriptionStatus::CancellationScheduled,
        SubscriptionStatus::Canceled,
    ];

    /// The stored and shown name (`past_due`, ...).
    pub fn as_str(&self) -> &str {
        match self {
            SubscriptionStatus::Other(value) => value,
            known => known.known_name().unwrap_or_default(),
        }
    }

    /// The name of a known status; `None` for [`SubscriptionStatus::Other`].
    pub fn known_name(&self) -> Option<&'static str> {
        Some(match self {
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::PastDue => "past_due",
            SubscriptionStatus::Expired => "expired",
            SubscriptionStatus::Disabled => "disabled",
            SubscriptionStatus::PendingActivation => "pending_activation",
            SubscriptionStatus::CancellationScheduled => "cancellation_scheduled",
            SubscriptionStatus::Canceled => "canceled",
            SubscriptionStatus::Other(_) => return None,
        })
    }

    /// Reads a stored name back; never fails.
    pub fn parse(value: &str) -> Self {
        Self::KNOWN
            .into_iter()
            .find(|known| known.as_str() == value)
            .unwrap_or_else(|| {
                SubscriptionStatus::Other(clip_for_display(value, UNKNOWN_VALUE_MAX_CHARS))
            })
    }

    /// The processor's LCN `STATUS` (`ACTIVE`, `PASTDUE`, `EXPIRED`,
    /// `DISABLED`, `PENDING_ACTIVATION`, `CANCELED`, ...).
    pub fn from_lcn(value: &str) -> Self {
        match value {
            "ACTIVE" => SubscriptionStatus::Active,
            "PASTDUE" | "PAST_DUE" => SubscriptionStatus::PastDue,
            "EXPIRED" => SubscriptionStatus::Expired,
            "DISABLED" => SubscriptionStatus::Disabled,
            "PENDING_ACTIVATION" | "PENDING" => SubscriptionStatus::PendingActivation,
            "CANCELLATION_SCHEDULED" => SubscriptionStatus::CancellationScheduled,
            "CANCELED" | "CANCELLED" => SubscriptionStatus::Canceled,
            other => SubscriptionStatus::Other(clip_for_display(other, UNKNOWN_VALUE_MAX_CHARS)),
        }
    }

    /// Whether the processor stopped the subscription: a renewal paid
    /// after this is `renewal_after_cancel`.
    pub fn is_stopped(&self) -> bool {
        matches!(
            self,
            SubscriptionStatus::Disabled | SubscriptionStatus::Canceled
        )
    }
}

impl From<SubscriptionStatus> for String {
    fn from(status: SubscriptionStatus) -> Self {
        status.as_str().to_owned()
    }
}

/// One order of a subscription, as its notices said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionOrder {
    /// `REFNO` of the order.
    pub processor_ref: String,
    pub line: LicenceLine,
    /// Whether a payment notice of the order was applied (not a test).
    pub paid: bool,
}

/// A subscription as its orders describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subscription {
    pub licence_ref: String,
    pub product_code: Option<String>,
    /// The licence type of the latest order.
    pub licence_type: Option<String>,
    /// `REFNO` of the first order (the earliest start; on a tie the
    /// smallest reference).
    pub first_order: String,
    /// `REFNO` of the order that paid the latest expiry.
    pub latest_order: String,
    /// The first order's merchant reference, when a renewal echoed it.
    pub original_order_ref: Option<String>,
    pub starts_at: Option<NaiveDateTime>,
    /// The latest expiry paid; `None` for a lifetime licence.
    pub expires_at: Option<NaiveDateTime>,
    pub lifetime: bool,
    /// Paid orders of type `RENEWAL`.
    pub renewals: usize,
}

impl Subscription {
    /// Folds the orders of one subscription, in any order: the result
    /// depends on the set only (the property test checks it).
    pub fn of(licence_ref: &str, orders: &[SubscriptionOrder]) -> Option<Subscription> {
        let first = orders
            .iter()
            .min_by(|a, b| start_key(a).cmp(&start_key(b)))?;
        let latest = orders.iter().max_by(|a, b| {
            (a.paid, a.line.lifetime, a.line.expires_at, &a.processor_ref).cmp(&(
                b.paid,
                b.line.lifetime,
                b.line.expires_at,
                &b.processor_ref,
            ))
        })?;
        let lifetime = orders.iter().any(|o| o.paid && o.line.lifetime);
        Some(Subscription {
            licence_ref: licence_ref.to_owned(),
            product_code: latest
                .line
                .product_code
                .clone()
                .or_else(|| first.line.product_code.clone()),
            licence_type: latest.line.licence_type.clone(),
            first_order: first.processor_ref.clone(),
            latest_order: latest.processor_ref.clone(),
            original_order_ref: orders
                .iter()
                .filter_map(|o| o.line.original_order_ref.clone())
                .min(),
            starts_at: orders.iter().filter_map(|o| o.line.starts_at).min(),
            expires_at: if lifetime {
                None
            } else {
                orders
                    .iter()
                    .filter(|o| o.paid)
                    .filter_map(|o| o.line.expires_at)
                    .max()
            },
            lifetime,
            renewals: orders
                .iter()
                .filter(|o| o.paid && o.line.is_renewal())
                .count(),
        })
    }
}

/// Orders sort by start (an order without one last), then reference.
fn start_key(order: &SubscriptionOrder) -> (bool, Option<NaiveDateTime>, &str) {
    (
        order.line.starts_at.is_none(),
        order.line.starts_at,
        &order.processor_ref,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipn::FormLimits;
    use chrono::{Datelike, NaiveDate};
    use proptest::prelude::*;

    fn form(pairs: &[(&str, &str)]) -> FormBody {
        let mut form = FormBody::default();
        for (name, value) in pairs {
            form.push(*name, *value);
        }
        FormBody::parse(form.encode().as_bytes(), &FormLimits::default()).unwrap()
    }

    fn at(day: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 1, day)
            .unwrap()
            .and_hms_opt(10, 0, 0)
            .unwrap()
    }

    #[test]
    fn each_line_item_with_a_licence_is_a_subscription_line() {
        let lines = licence_lines(&form(&[
            ("IPN_PCODE[]", "EDITOR"),
            ("IPN_PCODE[]", "FONTS"),
            ("IPN_PCODE[]", "MUG"),
            ("ORIGINAL_REFNOEXT[]", "SHOP-1"),
            ("ORIGINAL_REFNOEXT[]", ""),
            ("ORIGINAL_REFNOEXT[]", ""),
            ("IPN_LICENSE_TYPE[]", "RENEWAL"),
            ("IPN_LICENSE_TYPE[]", "REGULAR"),
            ("IPN_LICENSE_TYPE[]", ""),
            ("IPN_LICENSE_REF[]", "XRILXB9ZI3"),
            ("IPN_LICENSE_REF[]", "TOF6T8VPY3"),
            ("IPN_LICENSE_REF[]", ""),
            ("IPN_LICENSE_EXP[]", "2027-01-05 10:00:00"),
            ("IPN_LICENSE_EXP[]", "9999-12-31 23:59:59"),
            ("IPN_LICENSE_EXP[]", ""),
            ("IPN_LICENSE_START[]", "2026-01-05 10:00:00"),
            ("IPN_LICENSE_START[]", "2026-01-05 10:00:00"),
            ("IPN_LICENSE_START[]", ""),
            ("IPN_LICENSE_LIFETIME[]", "NO"),
            ("IPN_LICENSE_LIFETIME[]", "YES"),
            ("IPN_LICENSE_LIFETIME[]", ""),
        ]))
        .unwrap();
        assert_eq!(lines.len(), 2, "the mug names no licence");
        assert_eq!(lines[0].licence_ref, "XRILXB9ZI3");
        assert!(lines[0].is_renewal());
        assert_eq!(lines[0].original_order_ref.as_deref(), Some("SHOP-1"));
        assert_eq!(lines[0].expires_at, Some(at(5).with_year(2027).unwrap()));
        assert!(!lines[0].lifetime);
        assert_eq!(lines[1].product_code.as_deref(), Some("FONTS"));
        assert!(lines[1].lifetime);
        assert_eq!(lines[1].expires_at, None);
        assert_eq!(lines[1].original_order_ref, None);
    }

    #[test]
    fn a_pending_order_names_no_licence_yet() {
        let lines = licence_lines(&form(&[("IPN_LICENSE_REF[]", ""), ("IPN_PCODE[]", "X")]));
        assert_eq!(lines.unwrap(), []);
        let none = licence_lines(&form(&[("REFNO", "1")])).unwrap();
        assert_eq!(none, []);
    }

    #[test]
    fn malformed_licence_fields_are_named_not_quoted() {
        for (field, value) in [
            ("IPN_LICENSE_REF[]", "AB CD"),
            ("IPN_LICENSE_EXP[]", "tomorrow"),
            ("IPN_LICENSE_TYPE[]", "RENEW\nAL"),
        ] {
            let mut pairs = vec![("IPN_LICENSE_REF[]", "XRILXB9ZI3")];
            if field == "IPN_LICENSE_REF[]" {
                pairs.clear();
            }
            pairs.push((field, value));
            let err = licence_lines(&form(&pairs)).unwrap_err();
            assert_eq!(err.field(), field);
            assert!(!err.to_string().contains(value), "{err}");
        }
    }

    #[test]
    fn lcn_statuses_map_and_unknown_ones_are_kept() {
        assert_eq!(
            SubscriptionStatus::from_lcn("PASTDUE"),
            SubscriptionStatus::PastDue
        );
        assert!(SubscriptionStatus::from_lcn("DISABLED").is_stopped());
        let odd = SubscriptionStatus::from_lcn("NEW\nTHING");
        assert_eq!(odd.as_str(), "NEW?THING");
        for known in SubscriptionStatus::KNOWN {
            assert_eq!(SubscriptionStatus::parse(known.as_str()), known);
        }
    }

    fn order(refno: &str, kind: &str, start: u32, expiry: u32, paid: bool) -> SubscriptionOrder {
        SubscriptionOrder {
            processor_ref: refno.to_owned(),
            paid,
            line: LicenceLine {
                licence_ref: "XRILXB9ZI3".to_owned(),
                product_code: Some("EDITOR".to_owned()),
                licence_type: Some(kind.to_owned()),
                starts_at: Some(at(start)),
                expires_at: Some(at(expiry)),
                lifetime: false,
                original_order_ref: (kind == "RENEWAL").then(|| "SHOP-1".to_owned()),
            },
        }
    }

    #[test]
    fn renewals_extend_the_subscription() {
        let orders = [
            order("100", "REGULAR", 1, 10, true),
            order("200", "RENEWAL", 10, 20, true),
            order("300", "RENEWAL", 20, 30, false),
        ];
        let sub = Subscription::of("XRILXB9ZI3", &orders).unwrap();
        assert_eq!(sub.first_order, "100");
        assert_eq!(sub.latest_order, "200", "an unpaid renewal extends nothing");
        assert_eq!(sub.expires_at, Some(at(20)));
        assert_eq!(sub.starts_at, Some(at(1)));
        assert_eq!(sub.renewals, 1);
        assert_eq!(sub.original_order_ref.as_deref(), Some("SHOP-1"));
        assert_eq!(Subscription::of("X", &[]), None);
    }

    proptest! {
        #[test]
        fn the_fold_does_not_depend_on_the_arrival_order(
            mut orders in prop::collection::vec(
                (0u32..4, 1u32..10, 10u32..28, any::<bool>()),
                1..6,
            ),
            seed in any::<u64>(),
        ) {
            let orders: Vec<SubscriptionOrder> = orders
                .drain(..)
                .enumerate()
                .map(|(i, (kind, start, expiry, paid))| {
                    let kind = ["REGULAR", "RENEWAL", "TRIAL", "UPGRADE"][kind as usize];
                    order(&format!("{}", 100 + i), kind, start, expiry, paid)
                })
                .collect();
            let mut shuffled = orders.clone();
            let n = shuffled.len();
            for i in 0..n {
                let j = (seed.wrapping_mul(i as u64 + 7) % n as u64) as usize;
                shuffled.swap(i, j);
            }
            prop_assert_eq!(
                Subscription::of("XRILXB9ZI3", &orders),
                Subscription::of("XRILXB9ZI3", &shuffled)
            );
        }
    }
}
