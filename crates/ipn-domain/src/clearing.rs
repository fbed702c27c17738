//! What explains the balance of the processor clearing account.
//!
//! The journal debits clearing with every payment the ledger counts and
//! credits it with what takes money back (refunds, chargebacks, fees, VAT
//! and commission as notices carry them), with the processor's holds and
//! adjustments, and with the payouts that reach the bank
//! ([`crate::journal::posting`]). When every payment was settled by a
//! line that agrees with it, every refund and chargeback was debited, and
//! every batch was paid out as its lines add up, the balance is zero. Each
//! way it can fail to be zero is one [`ClearingItem`] here, with its
//! effect on the balance (signed: positive when clearing holds more than
//! the bank received), so that a report can list them and say how much of
//! the balance they explain.
//!
//! A sale settled by a line in another currency (the payout currency of a
//! processor that converts) is moved between the two clearings by the
//! journal's conversion lines (`conversion_out`, `conversion_in`): it is
//! settled, in both.

use strum::{EnumCount, EnumString, IntoStaticStr, VariantArray};

use crate::journal::MovementKind;
use crate::status::{UNKNOWN_VALUE_MAX_CHARS, clip_for_display};

/// The lines of a clearing statement: `opening + sales + refunds +
/// chargebacks + fees + vat + commission + payouts + adjustments +
/// write-offs + other = closing`, each the signed effect of its movements on clearing
/// (refunds, fees and payouts negative; a VAT refund or a released
/// commission positive).
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
    serialize_all = "snake_case",
    parse_err_ty = UnknownClearingItem,
    parse_err_fn = UnknownClearingItem::new
)]
pub enum ClearingLine {
    /// Payments.
    Sales,
    Refunds,
    /// Chargebacks and reversals, less chargebacks reinstated.
    Chargebacks,
    Fees,
    /// VAT charged, less VAT given back.
    Vat,
    /// Provisional commission, less what refunds gave back and settlement
    /// fees replaced.
    Commission,
    /// Payouts to the bank, less the processor's debits of it.
    Payouts,
    /// Reserves and dispute holds, held and released; the processor's
    /// other debits and credits.
    Adjustments,
    /// Sales the processor converted into its payout currency: out of the
    /// order currency's clearing, into the payout currency's.
    Conversions,
    /// Differences a person wrote off from the review queue: money booked
    /// that the processor will never pay (negative), or paid that nothing
    /// booked (positive).
    WriteOffs,
    /// Anything else that posts to clearing.
    Other,
}

/// Which line of a clearing statement a movement of `kind` adds to.
pub fn clearing_line(kind: MovementKind) -> ClearingLine {
    match kind {
        MovementKind::Payment => ClearingLine::Sales,
        MovementKind::Refund => ClearingLine::Refunds,
        MovementKind::Chargeback | MovementKind::Reversal | MovementKind::ChargebackReversal => {
            ClearingLine::Chargebacks
        }
        MovementKind::Fee => ClearingLine::Fees,
        MovementKind::Vat | MovementKind::VatRefund => ClearingLine::Vat,
        MovementKind::Commission
        | MovementKind::CommissionRefund
        | MovementKind::CommissionSettled => ClearingLine::Commission,
        MovementKind::Payout | MovementKind::BankDebit => ClearingLine::Payouts,
        MovementKind::ReserveHeld
        | MovementKind::ReserveReleased
        | MovementKind::DisputeHeld
        | MovementKind::DisputeReleased
        | MovementKind::ProcessorDebit
        | MovementKind::ProcessorCredit => ClearingLine::Adjustments,
        MovementKind::ConversionOut | MovementKind::ConversionIn => ClearingLine::Conversions,
        MovementKind::WriteOffShortfall
        | MovementKind::WriteOffExcess
        | MovementKind::WriteOffShortPayment
        | MovementKind::WriteOffOverRefund => ClearingLine::WriteOffs,
    }
}

/// Why part of the clearing balance is not zero.
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
    serialize_all = "snake_case",
    parse_err_ty = UnknownClearingItem,
    parse_err_fn = UnknownClearingItem::new
)]
pub enum ClearingItemKind {
    /// A payment the ledger counts that no settlement line in its currency
    /// settled (none came, or the one that came differs): its money is in
    /// clearing and never went out in a payout.
    UnsettledPayment,
    /// Refunds the ledger counts beyond what matched refund lines debited.
    UndebitedRefund,
    /// A chargeback (or reversal) the ledger counts beyond what matched
    /// lines debited.
    UndebitedChargeback,
    /// A settlement line that differs from its payment or that no payment
    /// of the ledger has: its gross went into a payout, the ledger booked
    /// nothing (or something else) for it.
    UnmatchedLine,
    /// A batch whose lines are booked and whose payout has not arrived.
    BatchNotPaidOut,
    /// A payout that is not the sum of its batch's lines.
    PayoutDiffers,
}

/// A stored clearing item kind this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown clearing item `{0}`")]
pub struct UnknownClearingItem(String);

impl UnknownClearingItem {
    fn new(value: &str) -> Self {
        Self(clip_for_display(value, UNKNOWN_VALUE_MAX_CHARS))
    }
}

string_forms!(ClearingItemKind, UnknownClearingItem, "clearing item kind");
string_forms!(ClearingLine, UnknownClearingItem, "clearing statement line");

/// One item that explains part of a clearing balance, in minor units of
/// its currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClearingItem {
    pub kind: ClearingItemKind,
    /// The amount the item is about, positive (the payment's, the refund
    /// not debited, the line's gross as a magnitude, the batch's net, the
    /// payout's difference as a magnitude).
    pub amount: i64,
    /// What it does to the clearing balance: `closing = Σ effects` when
    /// nothing else is open.
    pub effect: i64,
}

/// One payment as of the end of a period: the ledger's movements of it
/// dated before the end, and what settlement lines dated before the end
/// did to it (minor units of the order's currency; magnitudes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PaymentPosition {
    /// `payment` movements.
    pub paid: i64,
    /// `refund` movements.
    pub refunded: i64,
    /// `chargeback` and `reversal` movements.
    pub taken_back: i64,
    /// VAT charged less given back (`vat` − `vat_refund` movements): the
    /// journal takes it out of clearing with the payment.
    pub vat: i64,
    /// Provisional commission less what refunds and chargebacks gave back
    /// (`commission` − `commission_refund` movements): taken out of
    /// clearing with the payment until a settlement fee replaces it.
    pub commission: i64,
    /// Matched sale lines in the order's currency.
    pub sales: i64,
    /// Matched sale lines in another currency.
    pub sales_elsewhere: i64,
    /// Matched refund lines in the order's currency: their gross.
    pub refunds_debited: i64,
    /// Matched chargeback and reversal lines in the order's currency.
    pub taken_back_debited: i64,
}

/// What leaves one payment's money in clearing: nothing for a payment
/// settled, refunded and charged back as the ledger has it. An unsettled
/// payment's effect is what the journal left of it in clearing: paid, less
/// its VAT and its provisional commission (no fee replaced it yet).
pub fn payment_items(p: &PaymentPosition) -> Vec<ClearingItem> {
    let mut items = Vec::new();
    // A sale line in the payout currency settles it too: the conversion
    // lines move it between the clearings.
    if p.paid > 0 && p.sales == 0 && p.sales_elsewhere == 0 {
        items.push(ClearingItem {
            kind: ClearingItemKind::UnsettledPayment,
            amount: p.paid,
            effect: p.paid.saturating_sub(p.vat).saturating_sub(p.commission),
        });
    }
    // Only what settles in the order's currency relieves it.
    let in_order_currency = p.sales > 0 || p.sales_elsewhere == 0;
    let undebited = p.refunded.saturating_sub(p.refunds_debited);
    if undebited > 0 && in_order_currency {
        items.push(ClearingItem {
            kind: ClearingItemKind::UndebitedRefund,
            amount: undebited,
            effect: -undebited,
        });
    }
    let undebited = p.taken_back.saturating_sub(p.taken_back_debited);
    if undebited > 0 && in_order_currency {
        items.push(ClearingItem {
            kind: ClearingItemKind::UndebitedChargeback,
            amount: undebited,
            effect: -undebited,
        });
    }
    items
}

/// A settlement line that differs or that no payment has, of `gross`
/// (signed): the payout carried it, the ledger did not.
pub fn unmatched_line_item(gross: i64) -> Option<ClearingItem> {
    (gross != 0).then(|| ClearingItem {
        kind: ClearingItemKind::UnmatchedLine,
        amount: gross.saturating_abs(),
        effect: -gross,
    })
}

/// One batch in one currency as of the end of a period: the net of its
/// lines dated before the end, and its payout if one was paid before the
/// end.
pub fn batch_item(lines_net: i64, payout: Option<i64>) -> Option<ClearingItem> {
    match payout {
        None if lines_net != 0 => Some(ClearingItem {
            kind: ClearingItemKind::BatchNotPaidOut,
            amount: lines_net.saturating_abs(),
            effect: lines_net,
        }),
        Some(paid) if paid != lines_net => {
            let difference = lines_net.saturating_sub(paid);
            Some(ClearingItem {
                kind: ClearingItemKind::PayoutDiffers,
                amount: difference.saturating_abs(),
                effect: difference,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::inconsistent_digit_grouping)]
    use super::*;

    #[test]
    fn a_payment_settled_refunded_and_charged_back_as_booked_leaves_nothing() {
        let settled = PaymentPosition {
            paid: 100_00,
            refunded: 20_00,
            taken_back: 100_00,
            sales: 1,
            refunds_debited: 20_00,
            taken_back_debited: 100_00,
            ..PaymentPosition::default()
        };
        assert!(payment_items(&settled).is_empty());
    }

    #[test]
    fn each_gap_is_one_item_with_its_effect_on_clearing() {
        let unsettled = PaymentPosition {
            paid: 40_00,
            commission: 2_20,
            ..PaymentPosition::default()
        };
        assert_eq!(
            payment_items(&unsettled),
            [ClearingItem {
                kind: ClearingItemKind::UnsettledPayment,
                amount: 40_00,
                effect: 37_80
            }]
        );
        let undebited = PaymentPosition {
            paid: 40_00,
            refunded: 15_00,
            sales: 1,
            refunds_debited: 5_00,
            ..PaymentPosition::default()
        };
        assert_eq!(
            payment_items(&undebited),
            [ClearingItem {
                kind: ClearingItemKind::UndebitedRefund,
                amount: 10_00,
                effect: -10_00
            }]
        );
        let elsewhere = PaymentPosition {
            paid: 40_00,
            refunded: 15_00,
            sales_elsewhere: 1,
            ..PaymentPosition::default()
        };
        // Settled in the payout currency: the conversion lines move it;
        // its refunds were not debited in the order's currency.
        let kinds: Vec<_> = payment_items(&elsewhere).iter().map(|i| i.kind).collect();
        assert!(
            !kinds.contains(&ClearingItemKind::UnsettledPayment),
            "{kinds:?}"
        );
        assert_eq!(
            unmatched_line_item(12_00).map(|i| i.effect),
            Some(-12_00),
            "a line the ledger lacks was paid out"
        );
        assert_eq!(unmatched_line_item(0), None);
        assert_eq!(batch_item(90_00, None).map(|i| i.effect), Some(90_00));
        assert_eq!(batch_item(90_00, Some(90_00)), None);
        assert_eq!(
            batch_item(90_00, Some(89_99)),
            Some(ClearingItem {
                kind: ClearingItemKind::PayoutDiffers,
                amount: 1,
                effect: 1
            })
        );
        assert_eq!(batch_item(0, None), None);
    }
}
