//! What we know about an order: facts that only grow, per payment, and the
//! state derived from them.
//!
//! An order can be paid more than once (the shopper is charged twice, under
//! two processor references), and a refund, reversal or chargeback undoes
//! the payment with *its* reference (docs/protocol.md §11). So the money
//! facts live on [`PaymentFacts`], one per REFNO; the order keeps only what
//! concerns the order as a whole (canceled, suspect, a disagreement). The
//! state and the totals are functions of the facts, so every arrival order
//! of the same notifications ends in the same state and sums.

use std::collections::BTreeMap;

use crate::money::Money;
use crate::notice_money::{Rate, round_e8_to_minor};
use crate::status::OrderState;

/// What we know about one payment of an order: the notifications under one
/// processor reference (REFNO). Every field only grows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentFacts {
    /// A PAYMENT_AUTHORIZED with the right amount was received.
    pub authorized: bool,
    /// Minor units paid: 0, or the order's total once a matching payment
    /// (COMPLETE, PAYMENT_RECEIVED, AUTHRECEIVED) arrived. Set, not added:
    /// COMPLETE is re-sent on invoice generation.
    pub paid: i64,
    /// Minor units refunded under this reference: the sum of the absolute
    /// amounts of its refunds, also those received before the payment
    /// (held until it arrives). Saturates instead of overflowing.
    pub refunded: i64,
    /// A REVERSED was received under this reference: before capture it
    /// releases the authorization, after capture it is a chargeback.
    pub reversed: bool,
    /// The money of the notice that captured the payment (set with `paid`,
    /// once): its VAT in minor units of the order's currency (absolute).
    pub vat: i64,
    /// Its commission, exact, in 10⁻⁸ of the order currency's major unit
    /// (absolute; see [`crate::notice_money::Commission`]).
    pub commission_e8: i64,
    /// Its `PAYABLE_AMOUNT` in `PAYOUT_CURRENCY`, signed as sent.
    pub payable: Option<Money>,
    /// Its `FX_RATE` and `FX_MARKUP`, exact text.
    pub fx_rate: Option<Rate>,
    pub fx_markup: Option<Rate>,
    /// The VAT the refunds under this reference gave back: the sum of
    /// their absolute VAT, held like `refunded` until the payment arrives.
    pub refunded_vat: i64,
    /// The commission the refunds gave back, exact (10⁻⁸), absolute sum.
    pub refunded_commission_e8: i64,
    /// The refunds' `PAYABLE_AMOUNT` summed, signed as sent, in the
    /// capture's payout currency (or the first refund's, before it).
    pub refunded_payable: Option<Money>,
    /// The VAT the chargeback notice (the REVERSED that took the payment
    /// back) gave back, absolute, minor units of the order's currency: set
    /// once, with `reversed`, and counted like a full refund's once the
    /// payment is charged back ([`PaymentFacts::counted_charged_back_vat`]).
    pub charged_back_vat: i64,
    /// The commission the chargeback notice gave back, exact (10⁻⁸),
    /// absolute.
    pub charged_back_commission_e8: i64,
    /// The chargeback notice's `PAYABLE_AMOUNT`, signed as sent, in its
    /// payout currency.
    pub charged_back_payable: Option<Money>,
    /// A dispute notice (`CHARGEBACK_RESOLUTION=OPEN`) was received: the
    /// card network took the money back.
    pub dispute_opened: bool,
    /// A dispute notice said `WON`: the money came back (reinstated).
    pub dispute_won: bool,
    /// A dispute notice said `LOST` or `ACCEPTED`: final, the money stays
    /// taken (taken by this notice if no earlier one took it).
    pub dispute_lost: bool,
    /// What the chargeback took, in minor units: fixed once, when it first
    /// counts (the payment is paid and a notice took the money back), at
    /// what remained of the payment after the refunds counted then. The
    /// card network cannot take back what was already refunded, so paid
    /// 100.00, refunded 20.00, then charged back takes 80.00. `None` until
    /// the chargeback counts. A refund that arrives after it reduces it by
    /// growing [`PaymentFacts::reinstated`] instead, so every figure only
    /// grows.
    pub chargeback: Option<i64>,
}

/// How one payment stands, derived from its facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PaymentState {
    /// Nothing but refunds or reversals without an authorization or a
    /// payment: they are held, and count once the payment arrives.
    Unmatched,
    Authorized,
    /// Reversed before capture: the authorization was released.
    Released,
    /// Paid, then taken back by a chargeback that was not won (and took
    /// something: a payment refunded in full has nothing left to take).
    ChargedBack,
    Refunded,
    PartiallyRefunded,
    Paid,
}

impl PaymentFacts {
    pub fn state(&self) -> PaymentState {
        if self.paid > 0 {
            if self.net_charged_back() > 0 {
                PaymentState::ChargedBack
            } else if self.refunded >= self.paid {
                PaymentState::Refunded
            } else if self.refunded > 0 {
                PaymentState::PartiallyRefunded
            } else {
                PaymentState::Paid
            }
        } else if self.authorized && self.reversed {
            PaymentState::Released
        } else if self.authorized {
            PaymentState::Authorized
        } else {
            PaymentState::Unmatched
        }
    }

    /// Paid and not (entirely) undone: money the merchant keeps. A payment
    /// once charged back does not stand again when the dispute is won: a
    /// double charge it was is closed for good (the duplicate items only
    /// grow, see `closed_duplicates`).
    pub fn stands(&self) -> bool {
        self.chargeback.is_none()
            && matches!(
                self.state(),
                PaymentState::Paid | PaymentState::PartiallyRefunded
            )
    }

    /// A notice took the money back: a REVERSED (after capture a
    /// chargeback), or a dispute notice of any known resolution (`WON`
    /// too: the money was taken before it came back).
    pub fn chargeback_notice(&self) -> bool {
        self.reversed || self.dispute_opened || self.dispute_won || self.dispute_lost
    }

    /// Fixes what the chargeback takes the first time it counts (see
    /// [`PaymentFacts::chargeback`]); to be called after every change of
    /// the payment's facts. Nothing once fixed, or while the payment is
    /// not paid or no notice took it back.
    pub fn fix_chargeback(&mut self) {
        if self.chargeback.is_none() && self.paid > 0 && self.chargeback_notice() {
            self.chargeback = Some(self.paid.saturating_sub(self.refunded).max(0));
        }
    }

    /// Whether the chargeback counts (fixed), whatever it took.
    pub fn charged_back_counts(&self) -> bool {
        self.chargeback.is_some()
    }

    /// Refunds that count: those of a payment that was paid.
    pub fn counted_refunds(&self) -> i64 {
        if self.paid > 0 { self.refunded } else { 0 }
    }

    /// What the chargeback took (never more than what remained after the
    /// refunds counted when it was recorded).
    pub fn charged_back(&self) -> i64 {
        self.chargeback.unwrap_or(0)
    }

    /// What came back of the chargeback: all of it once the dispute is
    /// won; before that, what refunds counted after the chargeback took
    /// beyond what remained (the network cannot take refunded money, so
    /// the chargeback gives it back). Only grows.
    pub fn reinstated(&self) -> i64 {
        let Some(taken) = self.chargeback else {
            return 0;
        };
        if self.dispute_won {
            taken
        } else {
            let beyond = taken
                .saturating_add(self.refunded)
                .saturating_sub(self.paid)
                .max(0);
            beyond.min(taken)
        }
    }

    /// Charged back and not reinstated: what the network holds now.
    /// Equal to `max(0, paid - refunded)` while the dispute stands (not
    /// won), 0 once won: the same in every arrival order.
    pub fn net_charged_back(&self) -> i64 {
        self.charged_back().saturating_sub(self.reinstated())
    }

    /// The chargeback was won and its VAT and commission are charged
    /// again.
    fn reinstates_money(&self) -> bool {
        self.dispute_won && self.chargeback.is_some()
    }

    /// VAT that counts: the capture's once paid, and the VAT a won
    /// chargeback had given back, charged again.
    pub fn counted_vat(&self) -> i64 {
        if self.paid == 0 {
            0
        } else if self.reinstates_money() {
            self.vat.saturating_add(self.charged_back_vat)
        } else {
            self.vat
        }
    }

    /// VAT given back by refunds that count.
    pub fn counted_refunded_vat(&self) -> i64 {
        if self.paid > 0 { self.refunded_vat } else { 0 }
    }

    /// The capture's commission rounded to minor units of `exponent`
    /// decimals (half away from zero), once paid; with the commission a
    /// won chargeback had given back (rounded on its own), charged again.
    pub fn counted_commission(&self, exponent: u32) -> i64 {
        if self.paid == 0 {
            0
        } else if self.reinstates_money() {
            round_e8_to_minor(self.commission_e8, exponent)
                .saturating_add(round_e8_to_minor(self.charged_back_commission_e8, exponent))
        } else {
            round_e8_to_minor(self.commission_e8, exponent)
        }
    }

    /// The commission refunds gave back, their running total rounded,
    /// once paid.
    pub fn counted_refunded_commission(&self, exponent: u32) -> i64 {
        if self.paid > 0 {
            round_e8_to_minor(self.refunded_commission_e8, exponent)
        } else {
            0
        }
    }

    /// The VAT the chargeback gave back, once the chargeback counts (paid,
    /// then taken back); 0 for a reversal that released an authorization
    /// (no money moved).
    pub fn counted_charged_back_vat(&self) -> i64 {
        if self.charged_back_counts() {
            self.charged_back_vat
        } else {
            0
        }
    }

    /// The commission the chargeback gave back, rounded on its own to
    /// minor units of `exponent` decimals (half away from zero), once the
    /// payment is charged back.
    pub fn counted_charged_back_commission(&self, exponent: u32) -> i64 {
        if self.charged_back_counts() {
            round_e8_to_minor(self.charged_back_commission_e8, exponent)
        } else {
            0
        }
    }

    /// VAT given back, by the refunds and the chargeback together: what
    /// the `vat_refund` movements sum to.
    pub fn counted_given_back_vat(&self) -> i64 {
        self.counted_refunded_vat()
            .saturating_add(self.counted_charged_back_vat())
    }

    /// Commission given back, by the refunds (their running total rounded)
    /// and the chargeback (rounded on its own): what the
    /// `commission_refund` movements sum to.
    pub fn counted_given_back_commission(&self, exponent: u32) -> i64 {
        self.counted_refunded_commission(exponent)
            .saturating_add(self.counted_charged_back_commission(exponent))
    }

    /// Refunds held because their payment has not arrived.
    pub fn has_unmatched_refund(&self) -> bool {
        self.paid == 0 && self.refunded > 0
    }

    /// A reversal or dispute notice without an authorization or payment
    /// to take back.
    pub fn has_unmatched_reversal(&self) -> bool {
        self.chargeback_notice() && self.paid == 0 && !self.authorized
    }

    pub fn over_refunded(&self) -> bool {
        self.paid > 0 && self.refunded > self.paid
    }

    fn check_grows_from(&self, earlier: &PaymentFacts) -> Result<(), String> {
        if earlier.authorized && !self.authorized {
            return Err("authorized went from true to false".to_owned());
        }
        let flags = [
            ("reversed", earlier.reversed, self.reversed),
            (
                "dispute_opened",
                earlier.dispute_opened,
                self.dispute_opened,
            ),
            ("dispute_won", earlier.dispute_won, self.dispute_won),
            ("dispute_lost", earlier.dispute_lost, self.dispute_lost),
        ];
        for (name, before, after) in flags {
            if before && !after {
                return Err(format!("{name} went from true to false"));
            }
        }
        if earlier.chargeback.is_some() && self.chargeback != earlier.chargeback {
            return Err(format!(
                "the chargeback changed from {:?} to {:?}",
                earlier.chargeback, self.chargeback
            ));
        }
        if self.reinstated() < earlier.reinstated() {
            return Err("the reinstated amount shrank".to_owned());
        }
        if earlier.paid != 0 && self.paid != earlier.paid {
            return Err(format!(
                "paid changed from {} to {}",
                earlier.paid, self.paid
            ));
        }
        if self.paid < earlier.paid || self.refunded < earlier.refunded {
            return Err("a total shrank".to_owned());
        }
        Ok(())
    }
}

/// What we know about one merchant order, accumulated from every
/// notification applied to it. Every field only grows (see
/// [`OrderFacts::check_grows_from`]); the state is derived by
/// [`OrderFacts::state`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFacts {
    /// The order's total as the shop recorded it: what a payment must match.
    pub expected: Money,
    /// A CANCELED notification was received.
    pub canceled: bool,
    /// The processor flagged the order (SUSPECT, INVALID, FRAUD_STATUS=DENIED).
    pub suspect: bool,
    /// A payment, authorization or refund disagreed with the order's amount
    /// or currency.
    pub mismatch: bool,
    /// The payments, by processor reference (REFNO).
    pub payments: BTreeMap<String, PaymentFacts>,
    /// The order's reference at the processor, as shown and as settlement
    /// files carry it: the one of the first notification applied, replaced
    /// by the paying notification's at the first payment. Bookkeeping, not
    /// a fact the state derives from.
    pub processor_ref: Option<String>,
}

impl OrderFacts {
    /// A new order: nothing known yet but what it should cost.
    pub fn new(expected: Money) -> Self {
        Self {
            expected,
            canceled: false,
            suspect: false,
            mismatch: false,
            payments: BTreeMap::new(),
            processor_ref: None,
        }
    }

    /// The order's state, derived from the facts.
    ///
    /// What needs a human comes first (a disagreement, then the processor's
    /// own alarm). Then money: the best-standing payment decides, so a
    /// double charge refunded under its own reference leaves the order
    /// `paid` (its other payment stands). Without a payment, the intentions:
    /// canceled, a released authorization, an authorization.
    pub fn state(&self) -> OrderState {
        if self.mismatch {
            return OrderState::Mismatch;
        }
        if self.suspect {
            return OrderState::Suspect;
        }
        let best = self.payments.values().map(PaymentFacts::state).max();
        match best {
            Some(PaymentState::Paid) => OrderState::Paid,
            Some(PaymentState::PartiallyRefunded) => OrderState::PartiallyRefunded,
            Some(PaymentState::Refunded) => OrderState::Refunded,
            Some(PaymentState::ChargedBack) => OrderState::Reversed,
            _ if self.canceled => OrderState::Canceled,
            Some(PaymentState::Released) => OrderState::Reversed,
            Some(PaymentState::Authorized) => OrderState::Authorized,
            Some(PaymentState::Unmatched) | None => OrderState::Pending,
        }
    }

    /// Minor units paid, over every payment (gross).
    pub fn paid(&self) -> i64 {
        self.payments
            .values()
            .fold(0i64, |sum, p| sum.saturating_add(p.paid))
    }

    /// Minor units refunded on paid payments.
    pub fn refunded(&self) -> i64 {
        self.payments
            .values()
            .fold(0i64, |sum, p| sum.saturating_add(p.counted_refunds()))
    }

    /// Minor units charged back (paid, then taken back by a chargeback).
    pub fn charged_back(&self) -> i64 {
        self.payments
            .values()
            .fold(0i64, |sum, p| sum.saturating_add(p.charged_back()))
    }

    /// Minor units of chargebacks reinstated (won, or given back by a
    /// refund that came after the chargeback).
    pub fn reinstated(&self) -> i64 {
        self.payments
            .values()
            .fold(0i64, |sum, p| sum.saturating_add(p.reinstated()))
    }

    /// Charged back less reinstated: the same in every arrival order.
    pub fn net_charged_back(&self) -> i64 {
        self.payments
            .values()
            .fold(0i64, |sum, p| sum.saturating_add(p.net_charged_back()))
    }

    pub fn paid_money(&self) -> Money {
        Money::from_minor(self.paid(), self.expected.currency())
    }

    pub fn refunded_money(&self) -> Money {
        Money::from_minor(self.refunded(), self.expected.currency())
    }

    pub fn charged_back_money(&self) -> Money {
        Money::from_minor(self.charged_back(), self.expected.currency())
    }

    /// Any payment authorized (the order row's summary column).
    pub fn authorized(&self) -> bool {
        self.payments.values().any(|p| p.authorized)
    }

    /// Any payment reversed (the order row's summary column).
    pub fn reversed(&self) -> bool {
        self.payments.values().any(|p| p.reversed)
    }

    /// Payments that were paid.
    pub fn paid_count(&self) -> usize {
        self.payments.values().filter(|p| p.paid > 0).count()
    }

    /// Payments that were paid and stand.
    pub fn standing_count(&self) -> usize {
        self.payments.values().filter(|p| p.stands()).count()
    }

    /// Double charges not yet undone: what open `duplicate_payment` items
    /// should number.
    pub fn open_duplicates(&self) -> usize {
        self.standing_count().saturating_sub(1)
    }

    pub fn canceled_and_paid(&self) -> bool {
        self.canceled && self.paid() > 0
    }

    /// Whether two fact sets agree on everything the state derives from
    /// (all but the processor reference).
    pub fn same_facts(&self, other: &OrderFacts) -> bool {
        self.expected == other.expected
            && self.canceled == other.canceled
            && self.suspect == other.suspect
            && self.mismatch == other.mismatch
            && self.payments == other.payments
    }

    /// Checks what must hold for any facts `decide` produces.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (refno, payment) in &self.payments {
            if payment.paid < 0 || payment.refunded < 0 {
                return Err(format!("payment {refno} has a negative total"));
            }
            let remains = payment.paid.saturating_sub(payment.refunded).max(0);
            if payment.net_charged_back() > remains {
                return Err(format!(
                    "payment {refno} has {} charged back net, more than the {remains} left after refunds",
                    payment.net_charged_back()
                ));
            }
            if payment.chargeback.is_some() != (payment.paid > 0 && payment.chargeback_notice()) {
                return Err(format!(
                    "payment {refno}: the chargeback is fixed exactly when it counts"
                ));
            }
            if payment.paid != 0 && payment.paid != self.expected.minor_units() {
                return Err(format!(
                    "payment {refno} paid {} minor units, neither 0 nor the expected total ({})",
                    payment.paid, self.expected
                ));
            }
        }
        if self.paid() > 0 && self.processor_ref.is_none() {
            return Err("paid without a processor reference".to_owned());
        }
        Ok(())
    }

    /// Checks that `self` only added to `earlier`: no flag went back to
    /// false, no payment disappeared or shrank, the expected total did not
    /// change, and the processor reference, once known, changed only at the
    /// first payment.
    pub fn check_grows_from(&self, earlier: &OrderFacts) -> Result<(), String> {
        let flags = [
            ("canceled", earlier.canceled, self.canceled),
            ("suspect", earlier.suspect, self.suspect),
            ("mismatch", earlier.mismatch, self.mismatch),
        ];
        for (name, before, after) in flags {
            if before && !after {
                return Err(format!("{name} went from true to false"));
            }
        }
        if self.expected != earlier.expected {
            return Err("the expected total changed".to_owned());
        }
        for (refno, before) in &earlier.payments {
            let Some(after) = self.payments.get(refno) else {
                return Err(format!("payment {refno} disappeared"));
            };
            after
                .check_grows_from(before)
                .map_err(|err| format!("payment {refno}: {err}"))?;
        }
        let first_payment = earlier.paid() == 0 && self.paid() > 0;
        if earlier.processor_ref.is_some()
            && self.processor_ref != earlier.processor_ref
            && !(first_payment && self.processor_ref.is_some())
        {
            return Err("the processor reference changed outside the first payment".to_owned());
        }
        Ok(())
    }
}
