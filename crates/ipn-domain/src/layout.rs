//! Field names are bound: a body must be laid out as the processor lays
//! out its notices, or nothing in it is read (issue 21, Deliver 5;
//! docs/protocol.md §13).
//!
//! The signature covers the values in wire order, not the names
//! (docs/protocol.md §3). Whoever holds one signed body can rename its
//! fields and keep a valid signature: swap `GIFT_ORDER=0` (the first field
//! of a real body) and `TEST_ORDER=1` (after `CHARGEBACK_REASON_CODE`) and
//! the test order reads as a real one; rename `TEST_ORDER` to
//! `TEST_ORDER[]` and the flag is gone. The tokenizers read every field
//! only from a scalar under its exact name, and [`Layout::check`] refuses,
//! before anything is read, a body in which one of the processor's known
//! fields
//!
//! - appears under another form of its name: `NAME[]` for a scalar, a
//!   scalar for an array, another case, `NAME[0]`, spaces or dots where
//!   PHP would read underscores ([`LayoutError::OtherForm`]);
//! - appears a second time ([`LayoutError::Repeated`]), or, for an array,
//!   in two runs apart ([`LayoutError::SplitArray`]);
//! - comes before a known field that the processor sends before it
//!   ([`LayoutError::OutOfOrder`]): each kind of notice has a documented
//!   relative order of its known fields ([`IPN_LAYOUT`], [`LCN_LAYOUT`]),
//!   and swapping two of them always breaks it;
//! - (in a licence change notification) is a field the payment tokenizer
//!   reads ([`LayoutError::Foreign`]): such a body is a payment
//!   notification renamed into a licence one.
//!
//! Known fields may be absent (a merchant ticks the fields it wants), and
//! fields not in the layout (the processor adds fields over time, product
//! options carry a product id in their name) may appear anywhere. What
//! this cannot see is a known field renamed to an unknown name (then it is
//! absent): `expected-fields` says which fields every notice must carry.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use crate::ipn::FormBody;

/// The fields of a payment notification (IPN) in the order the processor
/// sends them: the union of its real bodies (docs/protocol.md §1.1;
/// processor-traffic §6.1-§6.4: the VirtueMart test notification of 2020,
/// the SDK fixtures of 2022 and 2023), which all agree on it. Arrays are
/// named with their `[]`.
pub const IPN_LAYOUT: &[&str] = &[
    "GIFT_ORDER",
    "SALEDATE",
    "PAYMENTDATE",
    "REFNO",
    "REFNOEXT",
    "ORIGINAL_REFNOEXT[]",
    "SHOPPER_REFERENCE_NUMBER",
    "ORDERNO",
    "ORDERSTATUS",
    "PAYMETHOD",
    "PAYMETHOD_CODE",
    "FIRSTNAME",
    "LASTNAME",
    "COMPANY",
    "REGISTRATIONNUMBER",
    "FISCALCODE",
    "TAX_OFFICE",
    "CBANKNAME",
    "CBANKACCOUNT",
    "ADDRESS1",
    "ADDRESS2",
    "CITY",
    "STATE",
    "ZIPCODE",
    "COUNTRY",
    "COUNTRY_CODE",
    "PHONE",
    "FAX",
    "CUSTOMEREMAIL",
    "FIRSTNAME_D",
    "LASTNAME_D",
    "COMPANY_D",
    "ADDRESS1_D",
    "ADDRESS2_D",
    "CITY_D",
    "STATE_D",
    "ZIPCODE_D",
    "COUNTRY_D",
    "COUNTRY_D_CODE",
    "PHONE_D",
    "EMAIL_D",
    "IPADDRESS",
    "IPCOUNTRY",
    "COMPLETE_DATE",
    "TIMEZONE_OFFSET",
    "CURRENCY",
    "LANGUAGE",
    "ORDERFLOW",
    "IPN_PID[]",
    "IPN_PNAME[]",
    "IPN_PCODE[]",
    "IPN_EXTERNAL_REFERENCE[]",
    "IPN_INFO[]",
    "IPN_QTY[]",
    "IPN_PRICE[]",
    "IPN_VAT[]",
    "IPN_VAT_RATE[]",
    "IPN_VER[]",
    "IPN_DISCOUNT[]",
    "IPN_PROMOTION_CATEGORY[]",
    "IPN_PROMONAME[]",
    "IPN_PROMOCODE[]",
    "IPN_ORDER_COSTS[]",
    "IPN_SKU[]",
    "IPN_PARTNER_CODE",
    "IPN_PGROUP[]",
    "IPN_PGROUP_NAME[]",
    "MESSAGE_ID",
    "MESSAGE_TYPE",
    "IPN_LICENSE_PROD[]",
    "IPN_LICENSE_TYPE[]",
    "IPN_LICENSE_REF[]",
    "IPN_LICENSE_EXP[]",
    "IPN_LICENSE_START[]",
    "IPN_LICENSE_LIFETIME[]",
    "IPN_LICENSE_ADDITIONAL_INFO[]",
    "IPN_DELIVEREDCODES[]",
    "IPN_DOWNLOAD_LINK",
    "IPN_TOTAL[]",
    "IPN_TOTALGENERAL",
    "IPN_SHIPPING",
    "IPN_SHIPPING_TAX",
    "AVANGATE_CUSTOMER_REFERENCE",
    "EXTERNAL_CUSTOMER_REFERENCE",
    "IPN_PARTNER_MARGIN_PERCENT",
    "IPN_PARTNER_MARGIN",
    "IPN_EXTRA_MARGIN",
    "IPN_EXTRA_DISCOUNT",
    "IPN_COUPON_DISCOUNT",
    "IPN_LINK_SOURCE",
    "IPN_ORIGINAL_LINK_SOURCE[]",
    "IPN_COMMISSION",
    "REFUND_TYPE",
    "CHARGEBACK_RESOLUTION",
    "CHARGEBACK_REASON_CODE",
    "TEST_ORDER",
    "IPN_ORDER_ORIGIN",
    "FRAUD_STATUS",
    "CARD_TYPE",
    "CARD_LAST_DIGITS",
    "CARD_EXPIRATION_DATE",
    "GATEWAY_RESPONSE",
    "IPN_DATE",
    "FX_RATE",
    "FX_MARKUP",
    "PAYABLE_AMOUNT",
    "PAYOUT_CURRENCY",
    "VENDOR_CODE",
    "PROPOSAL_ID",
];

/// The fields of a licence change notification (LCN) in the order the
/// processor documents them (processor-traffic §4.2: its LCN parameter
/// list, and the full list an integration models in the same order), with
/// the older contact names of its receipt example (`FIRSTNAME`,
/// `LASTNAME`) first.
pub const LCN_LAYOUT: &[&str] = &[
    "FIRSTNAME",
    "LASTNAME",
    "FIRST_NAME",
    "LAST_NAME",
    "COMPANY",
    "EMAIL",
    "PHONE",
    "FAX",
    "COUNTRY",
    "STATE",
    "CITY",
    "ZIP",
    "ADDRESS",
    "LICENSE_CODE",
    "EXPIRATION_DATE_TIME",
    "EXPIRATION_DATE",
    "DATE_UPDATED",
    "AVANGATE_CUSTOMER_REFERENCE",
    "EXTERNAL_CUSTOMER_REFERENCE",
    "TEST",
    "CHANGED_BY",
    "LICENSE_TYPE",
    "DISABLED",
    "RECURRING",
    "LICENSE_PRODUCT",
    "START_DATE",
    "START_DATE_TIME",
    "PURCHASE_DATE",
    "PURCHASE_DATE_TIME",
    "LICENSE_LIFETIME",
    "BILLING_CYCLES",
    "CONTRACT_CYCLES",
    "BILLING_CYCLES_LEFT",
    "CURRENT_BILLING_CYCLE",
    "NEXT_RENEWAL_DATE",
    "NEXT_RENEWAL_PRICE",
    "NEXT_RENEWAL_CURRENCY",
    "NEXT_RENEWAL_PRICE_TYPE",
    "NEXT_RENEWAL_PAYMETHOD",
    "NEXT_RENEWAL_PAYMETHOD_CODE",
    "NEXT_RENEWAL_CARD_LAST_DIGITS",
    "NEXT_RENEWAL_CARD_TYPE",
    "NEXT_RENEWAL_CARD_EXPIRATION_DATE",
    "PARTNER_CODE",
    "AFFILIATE_ID",
    "PSKU",
    "ACTIVATION_CODE",
    "STATUS",
    "EXPIRED",
    "TIMEZONE_OFFSET",
    "LICENSE_GRACE_PERIOD",
    "LICENSE_BILLING_TYPE",
    "ACTION_AFTER_CYCLES",
    "USAGE_BILLING_DATE",
    "USAGE_STATUS",
    "LATEST_REPORTED_USAGE_DATE",
    "COUNTRY_CODE",
    "END_USER_LANGUAGE",
    "DISPATCH_REASON",
    "LAST_ORDER_REFERENCE",
    "ORIGINAL_ORDER_REFERENCE",
    "LICENSE_PRODUCT_CODE",
    "LCN_LICENSE_ADDITIONAL_INFO_CUSTOM_VALUE",
    "PAUSE_START_DATE",
    "PAUSE_END_DATE",
    "PAUSE_REASON",
    "RENEWALS_NUMBER",
    "UPGRADES_NUMBER",
    "IS_TRIAL",
    "MERCHANT_DEAL_AUTO_RENEWAL",
    "CLIENT_DEAL_AUTO_RENEWAL",
];

/// The payment notification's fields that give it its meaning, which a
/// licence change notification never carries in any form: the fields the
/// payment tokenizer and its receipt read. An LCN with one of them is a
/// payment notification with a field renamed `LICENSE_CODE`.
pub const IPN_ONLY_FIELDS: &[&str] = &[
    "REFNO",
    "REFNOEXT",
    "ORDERSTATUS",
    "FRAUD_STATUS",
    "TEST_ORDER",
    "REFUND_TYPE",
    "CHARGEBACK_RESOLUTION",
    "IPN_TOTALGENERAL",
    "CURRENCY",
    "PAYMETHOD_CODE",
    "SALEDATE",
    "PAYMENTDATE",
    "COMPLETE_DATE",
    "IPN_DATE",
    "CUSTOMEREMAIL",
    "IPN_PID[]",
    "IPN_PNAME[]",
];

/// Why a body is not laid out as the processor lays out its notices.
///
/// Each names a field of the layout (a constant, never a name or value
/// from the body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// A known field under another form of its name.
    #[error(
        "field `{field}` appears under another form of its name (another case, `[]` added or removed, an index): the processor sends it only as `{field}`"
    )]
    OtherForm { field: &'static str },
    /// A known scalar sent twice.
    #[error("field `{field}` appears more than once")]
    Repeated { field: &'static str },
    /// A known array whose elements are not together.
    #[error("the elements of array `{field}` are not sent together")]
    SplitArray { field: &'static str },
    /// `field` is out of the processor's order: it comes before or after
    /// `other`, which the processor sends on its other side.
    #[error("field `{field}` is out of the processor's order (relative to `{other}`)")]
    OutOfOrder {
        field: &'static str,
        other: &'static str,
    },
    /// A payment notification's field in a licence change notification.
    #[error(
        "field `{field}` belongs to payment notifications, not to a licence change notification"
    )]
    Foreign { field: &'static str },
}

impl LayoutError {
    /// A short, stable label for metrics and the database.
    pub fn reason(&self) -> &'static str {
        match self {
            LayoutError::OtherForm { .. } => "renamed_field",
            LayoutError::Repeated { .. } => "repeated_field",
            LayoutError::SplitArray { .. } => "split_array",
            LayoutError::OutOfOrder { .. } => "misplaced_field",
            LayoutError::Foreign { .. } => "foreign_field",
        }
    }

    /// The field of the layout the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            LayoutError::OtherForm { field }
            | LayoutError::Repeated { field }
            | LayoutError::SplitArray { field }
            | LayoutError::OutOfOrder { field, .. }
            | LayoutError::Foreign { field } => field,
        }
    }
}

/// What a name of the layout's tables stands for.
#[derive(Debug, Clone, Copy)]
enum Entry {
    /// The field at this rank of the layout.
    Known(usize),
    /// A field of the other kind of notice, not allowed in any form.
    Foreign(&'static str),
}

/// FNV-1a: the tables are built once from constants and only looked up
/// with the body's names (never filled with them), so a hasher with no
/// seed cannot be flooded, and it costs a fraction of SipHash per name.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &byte in bytes {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

type Table = HashMap<&'static str, Entry, BuildHasherDefault<Fnv>>;
type BaseTable = HashMap<String, Entry, BuildHasherDefault<Fnv>>;

/// A kind of notice's documented field order, with its lookup tables.
pub struct Layout {
    fields: &'static [&'static str],
    /// Exact names.
    exact: Table,
    /// Every name's [`base`] form, to find other forms of it.
    bases: BaseTable,
}

impl std::fmt::Debug for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layout")
            .field("fields", &self.fields.len())
            .finish_non_exhaustive()
    }
}

impl Layout {
    fn new(fields: &'static [&'static str], foreign: &'static [&'static str]) -> Self {
        let mut exact = Table::default();
        let mut bases = BaseTable::default();
        for &name in foreign {
            exact.insert(name, Entry::Foreign(name));
            bases.insert(base(name), Entry::Foreign(name));
        }
        for (rank, &name) in fields.iter().enumerate() {
            exact.insert(name, Entry::Known(rank));
            bases.insert(base(name), Entry::Known(rank));
        }
        Self {
            fields,
            exact,
            bases,
        }
    }

    /// The layout of payment notifications.
    pub fn ipn() -> &'static Layout {
        static IPN: OnceLock<Layout> = OnceLock::new();
        IPN.get_or_init(|| Layout::new(IPN_LAYOUT, &[]))
    }

    /// The layout of licence change notifications.
    pub fn lcn() -> &'static Layout {
        static LCN: OnceLock<Layout> = OnceLock::new();
        LCN.get_or_init(|| Layout::new(LCN_LAYOUT, IPN_ONLY_FIELDS))
    }

    /// The known fields, in the processor's order.
    pub fn fields(&self) -> &'static [&'static str] {
        self.fields
    }

    /// Whether `name` is a known field of this layout, under that form.
    pub fn knows(&self, name: &str) -> bool {
        matches!(self.exact.get(name), Some(Entry::Known(_)))
    }

    /// `form` with the field `name=value` added where the processor sends
    /// it: before the first known field that it sends after `name`, or at
    /// the end when there is none or `name` is not a known field (tests,
    /// tools that edit a body).
    pub fn with_field(&self, form: &FormBody, name: &str, value: &str) -> FormBody {
        let rank = match self.exact.get(name) {
            Some(Entry::Known(rank)) => Some(*rank),
            _ => None,
        };
        let mut out = FormBody::default();
        let mut placed = false;
        for (existing, existing_value) in form.pairs() {
            let later = match (rank, self.exact.get(existing)) {
                (Some(rank), Some(Entry::Known(other))) => *other > rank,
                _ => false,
            };
            if later && !placed {
                out.push(name, value);
                placed = true;
            }
            out.push(existing, existing_value);
        }
        if !placed {
            out.push(name, value);
        }
        out
    }

    /// Checks that `form` is laid out as the processor lays out this kind
    /// of notice (see the module's documentation). One pass over the body;
    /// a name that is not known exactly is brought to its base form (one
    /// buffer, reused) to find the known field it may be another form of.
    pub fn check(&self, form: &FormBody) -> Result<(), LayoutError> {
        let mut seen = vec![false; self.fields.len()];
        // The highest rank seen so far, and the rank of the field just
        // before (None: an unknown field).
        let mut highest: Option<usize> = None;
        let mut previous: Option<usize> = None;
        let mut buffer = String::new();
        for (name, _) in form.pairs() {
            let entry = match self.exact.get(name) {
                Some(entry) => Some(*entry),
                None => {
                    base_into(name, &mut buffer);
                    match self.bases.get(buffer.as_str()) {
                        Some(Entry::Known(rank)) => {
                            return Err(LayoutError::OtherForm {
                                field: self.fields[*rank],
                            });
                        }
                        Some(Entry::Foreign(field)) => {
                            return Err(LayoutError::Foreign { field });
                        }
                        None => None,
                    }
                }
            };
            let rank = match entry {
                None => {
                    previous = None;
                    continue;
                }
                Some(Entry::Foreign(field)) => return Err(LayoutError::Foreign { field }),
                Some(Entry::Known(rank)) => rank,
            };
            let field = self.fields[rank];
            if seen[rank] {
                if !is_array(field) {
                    return Err(LayoutError::Repeated { field });
                }
                if previous != Some(rank) {
                    return Err(LayoutError::SplitArray { field });
                }
                continue;
            }
            seen[rank] = true;
            if highest.is_some_and(|highest| rank < highest) {
                return Err(self.misplaced(form));
            }
            highest = Some(rank);
            previous = Some(rank);
        }
        Ok(())
    }

    /// Which field is out of order in a body found out of order: the first
    /// (in wire order) of the known fields outside a longest run that is in
    /// the processor's order, named with a field it is out of order with.
    /// For two swapped fields that is the one that came too early; for one
    /// moved field, that field.
    fn misplaced(&self, form: &FormBody) -> LayoutError {
        // The ranks of the known fields, first occurrences only, in wire
        // order (the check above ruled out repeats before this is called).
        let mut seen = vec![false; self.fields.len()];
        let ranks: Vec<usize> = form
            .pairs()
            .filter_map(|(name, _)| match self.exact.get(name) {
                Some(Entry::Known(rank)) => Some(*rank),
                _ => None,
            })
            .filter(|&rank| !std::mem::replace(&mut seen[rank], true))
            .collect();
        let in_order = longest_increasing(&ranks);
        let Some(out) = (0..ranks.len()).find(|i| !in_order.contains(i)) else {
            // Cannot happen: the body was found out of order.
            return LayoutError::OutOfOrder {
                field: self.fields[ranks.first().copied().unwrap_or_default()],
                other: self.fields[ranks.last().copied().unwrap_or_default()],
            };
        };
        let rank = ranks[out];
        // A field of the ordered run it is out of order with: the first
        // after it with a lower rank, else the last before it with a higher
        // one.
        let other = ranks[out + 1..]
            .iter()
            .find(|&&r| r < rank)
            .or_else(|| ranks[..out].iter().rev().find(|&&r| r > rank))
            .copied()
            .unwrap_or(rank);
        LayoutError::OutOfOrder {
            field: self.fields[rank],
            other: self.fields[other],
        }
    }
}

/// The positions of one longest strictly increasing subsequence of
/// `ranks` (patience sorting), in increasing order.
fn longest_increasing(ranks: &[usize]) -> Vec<usize> {
    // tails[k]: the position ending the best run of length k + 1 so far.
    let mut tails: Vec<usize> = Vec::new();
    let mut before: Vec<Option<usize>> = vec![None; ranks.len()];
    for (i, &rank) in ranks.iter().enumerate() {
        let k = tails.partition_point(|&t| ranks[t] < rank);
        before[i] = k.checked_sub(1).map(|k| tails[k]);
        if k == tails.len() {
            tails.push(i);
        } else {
            tails[k] = i;
        }
    }
    let mut run = Vec::with_capacity(tails.len());
    let mut at = tails.last().copied();
    while let Some(i) = at {
        run.push(i);
        at = before[i];
    }
    run.reverse();
    run
}

fn is_array(name: &str) -> bool {
    name.ends_with("[]")
}

/// The form of a name that every spelling of one field shares: up to its
/// first `[` (PHP reads `NAME[]`, `NAME[0]` and `NAME[x]` as the array
/// `NAME`), without surrounding spaces, upper case, with spaces and dots
/// as underscores (PHP turns them into `_` in the names of `$_POST`).
fn base(name: &str) -> String {
    let mut out = String::new();
    base_into(name, &mut out);
    out
}

fn base_into(name: &str, out: &mut String) {
    out.clear();
    let stem = name.split('[').next().unwrap_or_default().trim();
    out.extend(stem.chars().map(|c| match c {
        ' ' | '.' => '_',
        c => c.to_ascii_uppercase(),
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipn::FormLimits;
    use proptest::prelude::*;

    fn form(pairs: &[(&str, &str)]) -> FormBody {
        let mut form = FormBody::default();
        for (name, value) in pairs {
            form.push(*name, *value);
        }
        form
    }

    fn ipn(names: &[&str]) -> Result<(), LayoutError> {
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| (*n, "1")).collect();
        Layout::ipn().check(&form(&pairs))
    }

    #[test]
    fn the_layouts_have_each_name_once_and_distinct_base_forms() {
        for layout in [Layout::ipn(), Layout::lcn()] {
            let mut bases: Vec<String> = layout.fields().iter().map(|n| base(n)).collect();
            bases.sort();
            let before = bases.len();
            bases.dedup();
            assert_eq!(bases.len(), before, "two fields of one base form");
        }
        for name in IPN_ONLY_FIELDS {
            assert!(Layout::ipn().knows(name), "{name}");
            assert!(!Layout::lcn().knows(name), "{name}");
        }
    }

    #[test]
    fn the_real_bodies_field_orders_are_accepted() {
        // The field order of each real body of processor-traffic §6, with
        // its arrays of two elements and its unknown fields where they were.
        let python_2022: Vec<&str> = IPN_LAYOUT
            .iter()
            .copied()
            .filter(|n| !matches!(*n, "ORIGINAL_REFNOEXT[]" | "IPN_ORIGINAL_LINK_SOURCE[]"))
            .flat_map(|n| {
                let options: &[&str] = if n == "CHARGEBACK_RESOLUTION" {
                    &[
                        "IPN_PRODUCT_OPTIONS_35144095_TEXT[]",
                        "IPN_PRODUCT_OPTIONS_35144095_VALUE[]",
                    ]
                } else {
                    &[]
                };
                options
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(n, if is_array(n) { 2 } else { 1 }))
            })
            .chain(["HASH", "SIGNATURE_SHA2_256", "SIGNATURE_SHA3_256"])
            .collect();
        assert_eq!(ipn(&python_2022), Ok(()));
        assert_eq!(ipn(IPN_LAYOUT), Ok(()));
        // A merchant's subset (a live merchant's debug page, §6.9).
        assert_eq!(
            ipn(&[
                "REFNO",
                "ORDERNO",
                "ORDERSTATUS",
                "FIRSTNAME",
                "LASTNAME",
                "CUSTOMEREMAIL",
                "IPN_PID[]",
                "IPN_PNAME[]",
                "IPN_EXTERNAL_REFERENCE[]",
                "MESSAGE_TYPE",
                "TEST_ORDER",
                "IPN_DATE",
            ]),
            Ok(())
        );
        // The documented LCN example (its receipt page).
        let lcn = form(&[
            ("FIRSTNAME", "John"),
            ("LASTNAME", "Smith"),
            ("COMPANY", ""),
            ("EMAIL", "johnsmith@email.com"),
            ("PHONE", "951-121-2121"),
            ("FAX", ""),
            ("COUNTRY", "United States of America"),
            ("STATE", "New York"),
            ("CITY", "New York"),
            ("ADDRESS", "101 Main Street"),
            ("LICENSE_CODE", "3C343D0FAF"),
            ("EXPIRATION_DATE", "2005-03-03"),
            ("STATUS", "DISABLED"),
        ]);
        assert_eq!(Layout::lcn().check(&lcn), Ok(()));
    }

    #[test]
    fn a_flag_under_another_form_is_refused() {
        let base = [
            "REFNO",
            "ORDERSTATUS",
            "TEST_ORDER",
            "FRAUD_STATUS",
            "IPN_DATE",
        ];
        assert_eq!(ipn(&base), Ok(()));
        for (from, to) in [
            ("TEST_ORDER", "TEST_ORDER[]"),
            ("TEST_ORDER", "test_order"),
            ("TEST_ORDER", "TEST_ORDER[0]"),
            ("TEST_ORDER", "TEST.ORDER"),
            ("TEST_ORDER", " TEST_ORDER"),
            ("FRAUD_STATUS", "FRAUD_STATUS[]"),
            ("ORDERSTATUS", "OrderStatus"),
            ("REFNO", "REFNO[x]"),
        ] {
            let names: Vec<&str> = base
                .iter()
                .map(|n| if *n == from { to } else { n })
                .collect();
            assert_eq!(
                ipn(&names),
                Err(LayoutError::OtherForm { field: from }),
                "{to}"
            );
        }
        // An array as a scalar is another form too.
        assert_eq!(
            ipn(&["REFNO", "IPN_PID", "IPN_DATE"]),
            Err(LayoutError::OtherForm { field: "IPN_PID[]" })
        );
        // The genuine name with another form beside it.
        assert_eq!(
            ipn(&["REFNO", "TEST_ORDER", "TEST_ORDER[]", "IPN_DATE"]),
            Err(LayoutError::OtherForm {
                field: "TEST_ORDER"
            })
        );
        // Unknown fields may be anything, anywhere.
        assert_eq!(
            ipn(&[
                "NOTE",
                "REFNO",
                "IPN_PRODUCT_OPTIONS_4711_TEXT[]",
                "X",
                "IPN_DATE",
                "Y[]"
            ]),
            Ok(())
        );
    }

    #[test]
    fn a_second_copy_or_a_split_array_is_refused() {
        assert_eq!(
            ipn(&["REFNO", "ORDERSTATUS", "ORDERSTATUS", "IPN_DATE"]),
            Err(LayoutError::Repeated {
                field: "ORDERSTATUS"
            })
        );
        assert_eq!(
            ipn(&["REFNO", "ORDERSTATUS", "NOTE", "ORDERSTATUS"]),
            Err(LayoutError::Repeated {
                field: "ORDERSTATUS"
            })
        );
        assert_eq!(
            ipn(&["IPN_PID[]", "IPN_PID[]", "IPN_PNAME[]", "IPN_PNAME[]"]),
            Ok(())
        );
        assert_eq!(
            ipn(&["IPN_PID[]", "NOTE", "IPN_PID[]"]),
            Err(LayoutError::SplitArray { field: "IPN_PID[]" })
        );
        assert_eq!(
            ipn(&["IPN_PID[]", "IPN_PNAME[]", "IPN_PID[]"]),
            Err(LayoutError::SplitArray { field: "IPN_PID[]" })
        );
    }

    #[test]
    fn swapped_names_are_out_of_order_and_the_early_one_is_named() {
        // GIFT_ORDER is the first field of a real body, TEST_ORDER comes
        // after CHARGEBACK_REASON_CODE: swapped, TEST_ORDER comes first.
        let mut swapped: Vec<&str> = IPN_LAYOUT.to_vec();
        let gift = swapped.iter().position(|n| *n == "GIFT_ORDER").unwrap();
        let test = swapped.iter().position(|n| *n == "TEST_ORDER").unwrap();
        swapped.swap(gift, test);
        assert_eq!(
            ipn(&swapped),
            Err(LayoutError::OutOfOrder {
                field: "TEST_ORDER",
                other: "SALEDATE"
            })
        );
        // FRAUD_STATUS swapped with a neighbour, on either side.
        assert_eq!(
            ipn(&[
                "REFNO",
                "TEST_ORDER",
                "IPN_ORDER_ORIGIN",
                "FRAUD_STATUS",
                "IPN_DATE"
            ]),
            Ok(()),
            "not swapped: the two names in their own order"
        );
        assert_eq!(
            ipn(&[
                "REFNO",
                "TEST_ORDER",
                "FRAUD_STATUS",
                "IPN_ORDER_ORIGIN",
                "IPN_DATE"
            ]),
            Err(LayoutError::OutOfOrder {
                field: "FRAUD_STATUS",
                other: "IPN_ORDER_ORIGIN"
            })
        );
        assert_eq!(
            ipn(&[
                "REFNO",
                "TEST_ORDER",
                "FRAUD_STATUS",
                "CARD_TYPE",
                "IPN_DATE"
            ])
            .and(ipn(&[
                "REFNO",
                "TEST_ORDER",
                "CARD_TYPE",
                "FRAUD_STATUS",
                "IPN_DATE"
            ])),
            Err(LayoutError::OutOfOrder {
                field: "CARD_TYPE",
                other: "FRAUD_STATUS"
            })
        );
        // One field moved to the end: that field is named.
        assert_eq!(
            ipn(&["REFNO", "ORDERSTATUS", "IPN_DATE", "FX_RATE", "TEST_ORDER"]),
            Err(LayoutError::OutOfOrder {
                field: "TEST_ORDER",
                other: "FX_RATE"
            })
        );
        assert_eq!(
            ipn(&["IPN_DATE", "REFNO", "ORDERSTATUS", "CURRENCY"]),
            Err(LayoutError::OutOfOrder {
                field: "IPN_DATE",
                other: "REFNO"
            })
        );
    }

    #[test]
    fn a_payment_field_in_a_licence_notice_is_foreign() {
        let lcn = |pairs: &[(&str, &str)]| Layout::lcn().check(&form(pairs));
        assert_eq!(lcn(&[("LICENSE_CODE", "A"), ("STATUS", "ACTIVE")]), Ok(()));
        for name in [
            "REFNO",
            "IPN_DATE",
            "orderstatus",
            "IPN_PID[]",
            "TEST_ORDER[]",
        ] {
            let refused = lcn(&[("LICENSE_CODE", "A"), (name, "1")]).unwrap_err();
            assert!(
                matches!(refused, LayoutError::Foreign { .. }),
                "{name}: {refused:?}"
            );
            assert_eq!(refused.reason(), "foreign_field");
        }
        assert_eq!(
            lcn(&[
                ("LICENSE_CODE", "A"),
                ("STATUS", "ACTIVE"),
                ("TEST", "1"),
                ("EXPIRED", "0")
            ]),
            Err(LayoutError::OutOfOrder {
                field: "STATUS",
                other: "TEST"
            })
        );
        assert_eq!(
            lcn(&[("LICENSE_CODE", "A"), ("STATUS[]", "ACTIVE")]),
            Err(LayoutError::OtherForm { field: "STATUS" })
        );
    }

    #[test]
    fn a_field_is_added_where_the_processor_sends_it() {
        let body = form(&[("NOTE", "x"), ("REFNO", "1"), ("IPN_DATE", "2")]);
        let names = |form: &FormBody| form.pairs().map(|(n, _)| n.to_owned()).collect::<Vec<_>>();
        let layout = Layout::ipn();
        assert_eq!(
            names(&layout.with_field(&body, "TEST_ORDER", "1")),
            ["NOTE", "REFNO", "TEST_ORDER", "IPN_DATE"]
        );
        assert_eq!(
            names(&layout.with_field(&body, "GIFT_ORDER", "0")),
            ["NOTE", "GIFT_ORDER", "REFNO", "IPN_DATE"]
        );
        assert_eq!(
            names(&layout.with_field(&body, "PROPOSAL_ID", "")),
            ["NOTE", "REFNO", "IPN_DATE", "PROPOSAL_ID"]
        );
        assert_eq!(
            names(&layout.with_field(&body, "COMMENTS", "")),
            ["NOTE", "REFNO", "IPN_DATE", "COMMENTS"]
        );
        assert_eq!(
            layout.check(&layout.with_field(&body, "CURRENCY", "EUR")),
            Ok(())
        );
    }

    #[test]
    fn messages_and_reasons_name_layout_fields_only() {
        let refused = ipn(&["REFNO", "4111111111111111[]", "test_order"]).unwrap_err();
        assert_eq!(
            refused,
            LayoutError::OtherForm {
                field: "TEST_ORDER"
            }
        );
        assert!(!refused.to_string().contains("4111"), "{refused}");
        assert!(!refused.to_string().contains("test_order"), "{refused}");
        assert_eq!(refused.reason(), "renamed_field");
        assert_eq!(refused.field(), "TEST_ORDER");
    }

    /// A random subset of the known fields in the processor's order, with
    /// unknown fields anywhere, is accepted; any two of its known fields
    /// swapped (values stay, names move) is refused.
    fn subset_with_unknowns() -> impl Strategy<Value = Vec<String>> {
        (
            proptest::collection::vec(any::<bool>(), IPN_LAYOUT.len()),
            proptest::collection::vec((0..IPN_LAYOUT.len() + 1, "[A-Z]{2,8}_X"), 0..6),
        )
            .prop_map(|(keep, unknowns)| {
                let mut names: Vec<String> = IPN_LAYOUT
                    .iter()
                    .zip(&keep)
                    .filter(|(_, keep)| **keep)
                    .map(|(name, _)| (*name).to_owned())
                    .collect();
                for (at, name) in unknowns {
                    names.insert(at.min(names.len()), name);
                }
                names
            })
    }

    fn check(names: &[String]) -> Result<(), LayoutError> {
        let encoded: Vec<String> = names.iter().map(|n| format!("{n}=1")).collect();
        let form = FormBody::parse(encoded.join("&").as_bytes(), &FormLimits::default()).unwrap();
        Layout::ipn().check(&form)
    }

    proptest! {
        #[test]
        fn the_order_holds_with_absent_and_unknown_fields(names in subset_with_unknowns()) {
            prop_assert_eq!(check(&names), Ok(()));
        }

        #[test]
        fn any_swap_of_two_known_names_is_refused(
            names in subset_with_unknowns(),
            a in any::<prop::sample::Index>(),
            b in any::<prop::sample::Index>(),
        ) {
            let known: Vec<usize> = (0..names.len())
                .filter(|&i| Layout::ipn().knows(&names[i]))
                .collect();
            prop_assume!(known.len() >= 2);
            let (a, b) = (a.get(&known), b.get(&known));
            prop_assume!(a != b);
            let mut swapped = names.clone();
            swapped.swap(*a, *b);
            let refused = check(&swapped);
            prop_assert!(
                matches!(refused, Err(LayoutError::OutOfOrder { .. })),
                "{:?}", refused
            );
        }

        #[test]
        fn a_known_name_in_another_form_is_refused(
            names in subset_with_unknowns(),
            pick in any::<prop::sample::Index>(),
            form in 0..4usize,
        ) {
            let known: Vec<usize> = (0..names.len())
                .filter(|&i| Layout::ipn().knows(&names[i]))
                .collect();
            prop_assume!(!known.is_empty());
            let at = *pick.get(&known);
            let name = names[at].clone();
            let other = match form {
                0 if is_array(&name) => name.trim_end_matches("[]").to_owned(),
                0 => format!("{name}[]"),
                1 => name.to_ascii_lowercase(),
                2 => format!("{}[7]", name.trim_end_matches("[]")),
                _ => name.replacen('_', ".", 1),
            };
            prop_assume!(other != name);
            let mut renamed = names.clone();
            renamed[at] = other;
            prop_assert!(
                matches!(check(&renamed), Err(LayoutError::OtherForm { .. })),
                "{:?}", check(&renamed)
            );
        }
    }
}
