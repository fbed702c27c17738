//! The money an order's facts moved, and how each movement is booked.
//!
//! The state machine keeps *facts* per payment (paid, refunds, reversed);
//! finance needs *movements*: a payment captured on a day, a refund on
//! another, a chargeback weeks later. A movement is the change of one
//! payment's counted figures between two snapshots of the facts
//! ([`movements`]), so the movements of an order, summed, are always its
//! figures ([`OrderFacts::paid`], [`OrderFacts::refunded`],
//! [`OrderFacts::charged_back`]) whatever order the notifications arrived
//! in. The store writes them with the ledger row that caused them
//! (`money_movements`), and `report --by event` and `export journal` read
//! them back.
//!
//! The figures, per currency (never summed across currencies):
//!
//! - **paid** (gross): every payment captured (COMPLETE, PAYMENT_RECEIVED,
//!   AUTHRECEIVED matching the order), each REFNO once: a double charge
//!   counts twice, a payment later refunded or charged back still counts.
//! - **refunded**: refunds of paid payments (a refund held until its
//!   payment arrives counts from then on).
//! - **reversed**: captured money returned by a reversal that is not a
//!   chargeback. The processor's notifications do not carry one: a
//!   REVERSED before capture releases an authorization (no money moved), a
//!   REVERSED after capture is a chargeback (docs/protocol.md §2.4, the
//!   `reversed_after_payment` review item). So it is 0 from notifications;
//!   the movement kind and the column exist for accounting systems that
//!   book reversals apart. A settlement line of type `reversal` does not
//!   add to it: it is matched against the payment's chargeback (the
//!   processor's exports word the same debit either way), which the
//!   ledger already counts as charged back.
//! - **charged back**: payments captured and then taken back by a
//!   chargeback (a REVERSED after capture, or a dispute notice opened or
//!   lost): what remained of the payment after the refunds counted then
//!   ([`PaymentFacts::charged_back`]), the money the card network took
//!   back. Paid 100.00, refunded 20.00, charged back: 80.00.
//! - **reinstated**: chargebacks that came back ([`PaymentFacts::reinstated`]):
//!   the dispute was won, or a refund recorded after the chargeback gave
//!   back what the chargeback could not take. A won chargeback also charges
//!   again the VAT and commission its chargeback gave back (as `vat` and
//!   `commission` movements).
//! - **fees**: the processor's fees, from settlement lines.
//! - **VAT**: the VAT the capturing notice of each payment carried
//!   (`Σ IPN_VAT[]` + `IPN_SHIPPING_TAX`), less what refunds and
//!   chargebacks gave back (as their notices carried it).
//! - **commission**: the processor's commission each capturing notice
//!   carried (`IPN_COMMISSION`, rounded half away from zero per payment),
//!   the provisional fee: less what refunds and chargebacks gave back, and
//!   released when a settlement line's fee for the payment is imported
//!   (the fee replaces it, never adds to it).
//! - **net revenue** = paid − refunded − reversed − (charged back −
//!   reinstated) − VAT:
//!   revenue excluding VAT, before fees.
//! - **written off**: what people wrote off from the review queue
//!   (`domain::review::write_off_movement`): a shortfall of the clearing
//!   account (booked money the processor will never pay out) less an
//!   excess (money it paid that nothing booked). A short payment or an
//!   over-refund written off moves between revenue or refunds and the
//!   write-off account, not clearing.
//! - **net** = net revenue − commission − fees − written off: what the
//!   merchant keeps, and the balance of the processor clearing account.

use std::collections::BTreeMap;

use strum::{EnumCount, EnumString, IntoStaticStr, VariantArray};

use crate::money::{Currency, Money};
use crate::reconcile::{OrderFacts, PaymentFacts};
use crate::settlement::LineKind;
use crate::status::{OrderState, UNKNOWN_VALUE_MAX_CHARS, clip_for_display};

/// What kind of money movement a journal line books.
///
/// Stored in `money_movements.kind` (all but `fee`, which comes from
/// settlement lines) and exported as its snake_case name.
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
    parse_err_ty = UnknownMovementKind,
    parse_err_fn = UnknownMovementKind::new
)]
pub enum MovementKind {
    /// A payment captured.
    Payment,
    /// Money refunded to the shopper.
    Refund,
    /// Captured money returned by a reversal that is not a chargeback.
    Reversal,
    /// A payment taken back by the card network.
    Chargeback,
    /// The processor's fee (a settlement line's).
    Fee,
    /// VAT the processor charged on a payment (it remits it: the
    /// merchant's revenue excludes it).
    Vat,
    /// VAT given back by a refund, or by a chargeback whose notice
    /// carried it.
    VatRefund,
    /// The processor's commission on a payment (`IPN_COMMISSION`): the
    /// provisional fee until a settlement line's fee replaces it.
    Commission,
    /// Commission given back by a refund, or by a chargeback whose notice
    /// carried it.
    CommissionRefund,
    /// A chargeback reinstated: the dispute was won and the money came
    /// back (or a refund recorded after the chargeback gave back what the
    /// chargeback could not take). Credits the chargebacks account.
    ChargebackReversal,
    /// A payment's provisional commission released when a settlement
    /// line's fee for the payment is imported (the fee replaces it).
    CommissionSettled,
    /// Written off by a person (`write_off`): money booked in the clearing
    /// account that the processor will never pay out (an unsettled
    /// payment, a settlement line or payout short of the ledger, a debit
    /// nothing booked). Read from the resolution ledger, not stored as a
    /// money movement (a settlement item may concern no order).
    WriteOffShortfall,
    /// Written off by a person: money the processor paid out that nothing
    /// in the books explains (an orphan's payment, an unknown sale line,
    /// a payout above its lines).
    WriteOffExcess,
    /// Written off by a person: the part of an order's price a payment of
    /// the wrong amount did not pay (`amount_mismatch`). The clearing
    /// account holds what was captured; the revenue is the order's price.
    WriteOffShortPayment,
    /// Written off by a person: refunds above a payment (`over_refund`).
    /// They left the clearing account with the refunds; the write-off
    /// moves the excess from refunds to the loss.
    WriteOffOverRefund,
    /// The processor's bank transfer of a batch (a payouts file's line):
    /// the money leaves clearing for the bank.
    Payout,
    /// A negative payout: the processor debited the merchant's bank
    /// account (money back into clearing).
    BankDebit,
    /// A settlement line of type `reserve` that holds money back (negative
    /// gross): the processor keeps it apart from the payout.
    ReserveHeld,
    /// A `reserve` line that releases held money (positive gross).
    ReserveReleased,
    /// A settlement line of type `dispute_hold` that holds money while a
    /// dispute is open (negative gross).
    DisputeHeld,
    /// A `dispute_hold` line that releases it (positive gross).
    DisputeReleased,
    /// Any other debit of the processor's (an `adjustment` line, or the
    /// gross of a `fee` line, with a negative amount).
    ProcessorDebit,
    /// Any other credit of the processor's (an `adjustment` or `fee`
    /// line's positive gross).
    ProcessorCredit,
    /// A sale settled in another currency (the payout currency of a
    /// processor that converts): what the sale left in the order
    /// currency's clearing (paid less VAT) leaves it for the conversion
    /// account.
    ConversionOut,
    /// The same sale's line gross arriving in the payout currency's
    /// clearing from the conversion account: that clearing then holds
    /// what its fees and payouts take out.
    ConversionIn,
}

impl MovementKind {
    /// Whether movements of this kind come from the processor's settlement
    /// and payout files (read from `settlement_lines` and
    /// `settlement_payouts` when a journal is made), never from a ledger
    /// row: they are not stored in `money_movements`.
    pub fn from_settlement(self) -> bool {
        matches!(
            self,
            MovementKind::Fee
                | MovementKind::CommissionSettled
                | MovementKind::Payout
                | MovementKind::BankDebit
                | MovementKind::ReserveHeld
                | MovementKind::ReserveReleased
                | MovementKind::DisputeHeld
                | MovementKind::DisputeReleased
                | MovementKind::ProcessorDebit
                | MovementKind::ProcessorCredit
                | MovementKind::ConversionOut
                | MovementKind::ConversionIn
        )
    }
}

/// The movement that books the gross of a settlement line that settles no
/// payment (`fee`, `adjustment`, `reserve`, `dispute_hold`; signed, money
/// to the merchant positive), each kind on its own account: `None` for a
/// line that settles a payment (the ledger's own movements book those)
/// and for a gross of zero. A line's fee is booked apart, as a `fee`.
pub fn settlement_line_movement(kind: LineKind, gross_minor: i64) -> Option<MovementKind> {
    let credit = gross_minor > 0;
    if gross_minor == 0 {
        return None;
    }
    match kind {
        LineKind::Sale | LineKind::Refund | LineKind::Chargeback | LineKind::Reversal => None,
        LineKind::Reserve if credit => Some(MovementKind::ReserveReleased),
        LineKind::Reserve => Some(MovementKind::ReserveHeld),
        LineKind::DisputeHold if credit => Some(MovementKind::DisputeReleased),
        LineKind::DisputeHold => Some(MovementKind::DisputeHeld),
        LineKind::Fee | LineKind::Adjustment if credit => Some(MovementKind::ProcessorCredit),
        LineKind::Fee | LineKind::Adjustment => Some(MovementKind::ProcessorDebit),
    }
}

/// The movement that books a payout of `amount_minor` (signed as the
/// payouts file gives it): `None` for a payout of zero.
pub fn payout_movement(amount_minor: i64) -> Option<MovementKind> {
    match amount_minor.signum() {
        1 => Some(MovementKind::Payout),
        -1 => Some(MovementKind::BankDebit),
        _ => None,
    }
}

/// A stored movement kind that this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown movement kind `{0}`")]
pub struct UnknownMovementKind(String);

impl UnknownMovementKind {
    fn new(value: &str) -> Self {
        Self(clip_for_display(value, UNKNOWN_VALUE_MAX_CHARS))
    }
}

string_forms!(MovementKind, UnknownMovementKind, "movement kind");

/// Money that moved for one payment of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    /// The payment's processor reference (REFNO).
    pub processor_ref: String,
    pub kind: MovementKind,
    /// Always positive: the kind says which way it went.
    pub amount: Money,
}

/// The money moved between two snapshots of an order's facts (`before` a
/// decision and `after` it): per payment, the growth of its paid amount,
/// of its counted refunds and of its chargeback, and of the VAT and
/// commission its notices carried (the capture's, counted with the
/// payment; the refunds', counted with the refunds). In REFNO order, then
/// payment, refund, chargeback, VAT, VAT refunded, commission, commission
/// refunded. Nothing for a decision that moved no money.
///
/// Facts only grow, so every difference is positive or zero; the sum of an
/// order's movements over its decisions is its final figures.
pub fn movements(before: &OrderFacts, after: &OrderFacts) -> Vec<Movement> {
    let currency = after.expected.currency();
    let empty = PaymentFacts::default();
    let mut moved = Vec::new();
    let exponent = currency.exponent();
    for (processor_ref, now) in &after.payments {
        let was = before.payments.get(processor_ref).unwrap_or(&empty);
        let changes = [
            (MovementKind::Payment, was.paid, now.paid),
            (
                MovementKind::Refund,
                was.counted_refunds(),
                now.counted_refunds(),
            ),
            (
                MovementKind::Chargeback,
                was.charged_back(),
                now.charged_back(),
            ),
            (
                MovementKind::ChargebackReversal,
                was.reinstated(),
                now.reinstated(),
            ),
            (MovementKind::Vat, was.counted_vat(), now.counted_vat()),
            (
                MovementKind::VatRefund,
                was.counted_given_back_vat(),
                now.counted_given_back_vat(),
            ),
            (
                MovementKind::Commission,
                was.counted_commission(exponent),
                now.counted_commission(exponent),
            ),
            (
                MovementKind::CommissionRefund,
                was.counted_given_back_commission(exponent),
                now.counted_given_back_commission(exponent),
            ),
        ];
        for (kind, from, to) in changes {
            let grown = to.saturating_sub(from);
            if grown > 0 {
                moved.push(Movement {
                    processor_ref: processor_ref.clone(),
                    kind,
                    amount: Money::from_minor(grown, currency),
                });
            }
        }
    }
    moved
}

/// The money figures of one currency, in minor units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub paid: i64,
    pub refunded: i64,
    pub reversed: i64,
    pub charged_back: i64,
    /// Chargebacks reinstated (won disputes).
    pub reinstated: i64,
    pub fees: i64,
    /// VAT of payments.
    pub vat: i64,
    /// VAT given back by refunds and chargebacks.
    pub vat_refunded: i64,
    /// Provisional commission of payments.
    pub commission: i64,
    /// Commission given back by refunds and chargebacks.
    pub commission_refunded: i64,
    /// Provisional commission released by a settlement fee.
    pub commission_settled: i64,
    /// Written off as a shortfall of the clearing account.
    pub written_off_shortfall: i64,
    /// Written off as an excess the processor paid.
    pub written_off_excess: i64,
    /// Prices not paid by a short payment, written off.
    pub written_off_short_payments: i64,
    /// Refunds above their payment, written off.
    pub written_off_over_refunds: i64,
    /// Payouts to the bank, and the processor's debits of the bank.
    pub payouts: i64,
    pub bank_debits: i64,
    /// Reserves held and released by settlement lines.
    pub reserve_held: i64,
    pub reserve_released: i64,
    /// Dispute holds and their releases.
    pub dispute_held: i64,
    pub dispute_released: i64,
    /// Other debits and credits of the processor's.
    pub processor_debits: i64,
    pub processor_credits: i64,
    /// Sales converted out of this currency, and into it.
    pub converted_out: i64,
    pub converted_in: i64,
}

impl Figures {
    /// Adds a movement of `kind` (saturating: no real total comes near).
    pub fn add(&mut self, kind: MovementKind, minor: i64) {
        let figure = match kind {
            MovementKind::Payment => &mut self.paid,
            MovementKind::Refund => &mut self.refunded,
            MovementKind::Reversal => &mut self.reversed,
            MovementKind::Chargeback => &mut self.charged_back,
            MovementKind::ChargebackReversal => &mut self.reinstated,
            MovementKind::Fee => &mut self.fees,
            MovementKind::Vat => &mut self.vat,
            MovementKind::VatRefund => &mut self.vat_refunded,
            MovementKind::Commission => &mut self.commission,
            MovementKind::CommissionRefund => &mut self.commission_refunded,
            MovementKind::CommissionSettled => &mut self.commission_settled,
            MovementKind::WriteOffShortfall => &mut self.written_off_shortfall,
            MovementKind::WriteOffExcess => &mut self.written_off_excess,
            MovementKind::WriteOffShortPayment => &mut self.written_off_short_payments,
            MovementKind::WriteOffOverRefund => &mut self.written_off_over_refunds,
            MovementKind::Payout => &mut self.payouts,
            MovementKind::BankDebit => &mut self.bank_debits,
            MovementKind::ReserveHeld => &mut self.reserve_held,
            MovementKind::ReserveReleased => &mut self.reserve_released,
            MovementKind::DisputeHeld => &mut self.dispute_held,
            MovementKind::DisputeReleased => &mut self.dispute_released,
            MovementKind::ProcessorDebit => &mut self.processor_debits,
            MovementKind::ProcessorCredit => &mut self.processor_credits,
            MovementKind::ConversionOut => &mut self.converted_out,
            MovementKind::ConversionIn => &mut self.converted_in,
        };
        *figure = figure.saturating_add(minor);
    }

    /// The figure of one movement kind.
    pub fn of(&self, kind: MovementKind) -> i64 {
        match kind {
            MovementKind::Payment => self.paid,
            MovementKind::Refund => self.refunded,
            MovementKind::Reversal => self.reversed,
            MovementKind::Chargeback => self.charged_back,
            MovementKind::ChargebackReversal => self.reinstated,
            MovementKind::Fee => self.fees,
            MovementKind::Vat => self.vat,
            MovementKind::VatRefund => self.vat_refunded,
            MovementKind::Commission => self.commission,
            MovementKind::CommissionRefund => self.commission_refunded,
            MovementKind::CommissionSettled => self.commission_settled,
            MovementKind::WriteOffShortfall => self.written_off_shortfall,
            MovementKind::WriteOffExcess => self.written_off_excess,
            MovementKind::WriteOffShortPayment => self.written_off_short_payments,
            MovementKind::WriteOffOverRefund => self.written_off_over_refunds,
            MovementKind::Payout => self.payouts,
            MovementKind::BankDebit => self.bank_debits,
            MovementKind::ReserveHeld => self.reserve_held,
            MovementKind::ReserveReleased => self.reserve_released,
            MovementKind::DisputeHeld => self.dispute_held,
            MovementKind::DisputeReleased => self.dispute_released,
            MovementKind::ProcessorDebit => self.processor_debits,
            MovementKind::ProcessorCredit => self.processor_credits,
            MovementKind::ConversionOut => self.converted_out,
            MovementKind::ConversionIn => self.converted_in,
        }
    }

    /// What write-offs did to the clearing account: shortfalls written off
    /// less excesses written off (a short payment or an over-refund
    /// write-off does not touch it). Positive lowers the net.
    pub fn clearing_written_off(&self) -> i64 {
        self.written_off_shortfall
            .saturating_sub(self.written_off_excess)
    }

    /// VAT charged less VAT given back: what the processor owes the tax
    /// authorities for these sales.
    pub fn net_vat(&self) -> i64 {
        self.vat.saturating_sub(self.vat_refunded)
    }

    /// The provisional commission still standing: commission of payments,
    /// less what refunds gave back, less what settlement fees replaced.
    pub fn open_commission(&self) -> i64 {
        self.commission
            .saturating_sub(self.commission_refunded)
            .saturating_sub(self.commission_settled)
    }

    /// Charged back less reinstated: what the card networks hold.
    pub fn net_charged_back(&self) -> i64 {
        self.charged_back.saturating_sub(self.reinstated)
    }

    /// Net revenue excluding VAT: paid − refunded − reversed − (charged
    /// back − reinstated) − (VAT − VAT given back). Before fees and
    /// commission.
    pub fn net_revenue(&self) -> i64 {
        self.paid
            .saturating_sub(self.refunded)
            .saturating_sub(self.reversed)
            .saturating_sub(self.net_charged_back())
            .saturating_sub(self.net_vat())
    }

    /// Net revenue − open commission − fees − what write-offs took from
    /// the clearing account ([`Figures::clearing_written_off`]): what the
    /// merchant keeps, the balance of the processor clearing account.
    /// Negative when more went out than came in.
    pub fn net(&self) -> i64 {
        self.net_revenue()
            .saturating_sub(self.open_commission())
            .saturating_sub(self.fees)
            .saturating_sub(self.clearing_written_off())
    }
}

/// One of the accounts the journal books to (`journal-accounts` names
/// them in the merchant's chart of accounts).
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
    parse_err_ty = UnknownAccount,
    parse_err_fn = UnknownAccount::new
)]
pub enum Account {
    /// What the processor holds for the merchant until it pays out: debited
    /// by payments, credited by everything that takes money back. Its
    /// balance is the net.
    Clearing,
    /// Credited by payments (set it to the receivable account when sales
    /// are booked at invoicing: the payments then settle it).
    Revenue,
    /// Debited by refunds (a contra-revenue account).
    Refunds,
    /// Debited by reversals.
    Reversals,
    /// Debited by chargebacks, credited by chargebacks reinstated.
    Chargebacks,
    /// Debited by the processor's fees.
    Fees,
    /// VAT the processor charged and remits: debited by the VAT of
    /// payments (a contra-revenue account), credited by VAT refunded.
    Vat,
    /// The processor's provisional commission: debited by the commission
    /// of payments, credited by commission refunded and by commission a
    /// settlement fee replaced.
    Commission,
    /// Losses (and gains) a person wrote off from the review queue:
    /// debited by shortfalls, short payments and over-refunds written
    /// off, credited by excesses written off.
    WriteOff,
    /// The merchant's bank account: debited by payouts, credited by the
    /// processor's debits of it.
    Bank,
    /// Money the processor holds back as a reserve: debited when held,
    /// credited when released.
    Reserve,
    /// Money the processor holds while a dispute is open: debited when
    /// held, credited when released.
    DisputeHold,
    /// The processor's other debits (debited) and credits (credited):
    /// `adjustment` lines and the gross of `fee` lines.
    ProcessorAdjustments,
    /// Sales the processor converted into its payout currency: debited in
    /// the order currency, credited in the payout currency (each currency
    /// balances on its own; the account's balances are the conversion's
    /// two sides).
    Conversion,
}

/// An account key that this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown journal account `{0}`")]
pub struct UnknownAccount(String);

impl UnknownAccount {
    fn new(value: &str) -> Self {
        Self(clip_for_display(value, UNKNOWN_VALUE_MAX_CHARS))
    }
}

string_forms!(Account, UnknownAccount, "journal account");

impl Account {
    /// The name the journal uses unless `journal-accounts` says otherwise.
    pub fn default_name(self) -> &'static str {
        match self {
            Account::Clearing => "Processor clearing",
            Account::Revenue => "Sales revenue",
            Account::Refunds => "Refunds",
            Account::Reversals => "Reversals",
            Account::Chargebacks => "Chargebacks",
            Account::Fees => "Payment processing fees",
            Account::Vat => "VAT collected by the processor",
            Account::Commission => "Processor commission (provisional)",
            Account::WriteOff => "Write-offs",
            Account::Bank => "Bank",
            Account::Reserve => "Processor reserve",
            Account::DisputeHold => "Dispute holds",
            Account::ProcessorAdjustments => "Processor adjustments",
            Account::Conversion => "Currency conversion",
        }
    }
}

/// The posting rule: which account a movement debits and which it
/// credits. One line per movement, the same amount on both sides.
pub fn posting(kind: MovementKind) -> (Account, Account) {
    match kind {
        MovementKind::Payment => (Account::Clearing, Account::Revenue),
        MovementKind::Refund => (Account::Refunds, Account::Clearing),
        MovementKind::Reversal => (Account::Reversals, Account::Clearing),
        MovementKind::Chargeback => (Account::Chargebacks, Account::Clearing),
        MovementKind::ChargebackReversal => (Account::Clearing, Account::Chargebacks),
        MovementKind::Fee => (Account::Fees, Account::Clearing),
        MovementKind::Vat => (Account::Vat, Account::Clearing),
        MovementKind::VatRefund => (Account::Clearing, Account::Vat),
        MovementKind::Commission => (Account::Commission, Account::Clearing),
        MovementKind::CommissionRefund | MovementKind::CommissionSettled => {
            (Account::Clearing, Account::Commission)
        }
        // Clearing ends where the bank says: booked money never paid out
        // leaves it, money paid out that nothing booked enters it.
        MovementKind::WriteOffShortfall => (Account::WriteOff, Account::Clearing),
        MovementKind::WriteOffExcess => (Account::Clearing, Account::WriteOff),
        MovementKind::WriteOffShortPayment => (Account::WriteOff, Account::Revenue),
        MovementKind::WriteOffOverRefund => (Account::WriteOff, Account::Refunds),
        MovementKind::Payout => (Account::Bank, Account::Clearing),
        MovementKind::BankDebit => (Account::Clearing, Account::Bank),
        MovementKind::ReserveHeld => (Account::Reserve, Account::Clearing),
        MovementKind::ReserveReleased => (Account::Clearing, Account::Reserve),
        MovementKind::DisputeHeld => (Account::DisputeHold, Account::Clearing),
        MovementKind::DisputeReleased => (Account::Clearing, Account::DisputeHold),
        MovementKind::ProcessorDebit => (Account::ProcessorAdjustments, Account::Clearing),
        MovementKind::ProcessorCredit => (Account::Clearing, Account::ProcessorAdjustments),
        MovementKind::ConversionOut => (Account::Conversion, Account::Clearing),
        MovementKind::ConversionIn => (Account::Clearing, Account::Conversion),
    }
}

/// How a movement of `kind` changes the clearing account: +1 when it
/// debits it, -1 when it credits it, 0 when it does not touch it. Read
/// from [`posting`], so every kind that posts to clearing (whoever adds
/// it) counts in [`clearing_statements`].
pub fn clearing_sign(kind: MovementKind) -> i64 {
    match posting(kind) {
        (Account::Clearing, _) => 1,
        (_, Account::Clearing) => -1,
        _ => 0,
    }
}

/// The clearing account of one currency over a period: its balance
/// before, what each movement kind did to it (signed: debits positive),
/// and its balance after. `closing = opening + Σ by_kind`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClearingStatement {
    pub opening: i64,
    /// Per movement kind that posts to clearing, its net effect on it.
    pub by_kind: BTreeMap<MovementKind, i64>,
    pub closing: i64,
}

/// Per currency, the clearing account's statement: `before` are the
/// movements dated before the period (the opening balance), `during` those
/// in it. Kinds that do not post to clearing are left out; a currency
/// appears when any of its movements posts to clearing.
pub fn clearing_statements(
    before: impl IntoIterator<Item = (MovementKind, Money)>,
    during: impl IntoIterator<Item = (MovementKind, Money)>,
) -> BTreeMap<Currency, ClearingStatement> {
    let mut statements: BTreeMap<Currency, ClearingStatement> = BTreeMap::new();
    for (kind, amount) in before {
        let sign = clearing_sign(kind);
        if sign != 0 {
            let s = statements.entry(amount.currency()).or_default();
            s.opening = s.opening.saturating_add(sign * amount.minor_units());
        }
    }
    for (kind, amount) in during {
        let sign = clearing_sign(kind);
        if sign != 0 {
            let s = statements.entry(amount.currency()).or_default();
            let entry = s.by_kind.entry(kind).or_default();
            *entry = entry.saturating_add(sign * amount.minor_units());
        }
    }
    for s in statements.values_mut() {
        s.closing = s
            .by_kind
            .values()
            .fold(s.opening, |sum, v| sum.saturating_add(*v));
    }
    statements
}

/// The names of the journal's accounts in the merchant's chart of
/// accounts: each [`Account`]'s default name unless given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JournalAccounts {
    names: BTreeMap<Account, String>,
}

/// Why an account name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountNameError {
    #[error("`{0}`: write ACCOUNT=NAME, for example fees=6150 Card fees")]
    Form(String),
    #[error("`{given}`: unknown account; the accounts are {known}")]
    Unknown { given: String, known: String },
    #[error("`{0}`: the name must be 1-100 characters without control characters or commas")]
    Name(String),
    #[error("account `{0}` is named twice")]
    Twice(String),
}

impl JournalAccounts {
    /// Parses `ACCOUNT=NAME,...` (`clearing=1150 Processor clearing`):
    /// accounts not given keep their default names. A name may hold
    /// spaces, not commas (they separate the items).
    pub fn parse(text: &str) -> Result<Self, AccountNameError> {
        let mut names = BTreeMap::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let shown = clip_for_display(item, 60);
            let (key, name) = item
                .split_once('=')
                .ok_or_else(|| AccountNameError::Form(shown.clone()))?;
            let account = Account::parse(key.trim()).map_err(|_| AccountNameError::Unknown {
                given: clip_for_display(key.trim(), 30),
                known: Account::ALL.map(Account::as_str).join(", "),
            })?;
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
                return Err(AccountNameError::Name(shown));
            }
            if names.insert(account, name.to_owned()).is_some() {
                return Err(AccountNameError::Twice(account.as_str().to_owned()));
            }
        }
        Ok(Self { names })
    }

    /// The name of `account` in the journal.
    pub fn name(&self, account: Account) -> &str {
        self.names
            .get(&account)
            .map_or(account.default_name(), String::as_str)
    }

    /// Only the names given (what `journal-accounts` holds).
    pub fn given(&self) -> impl Iterator<Item = (Account, &str)> {
        self.names.iter().map(|(a, n)| (*a, n.as_str()))
    }
}

/// Per currency and account, debits minus credits of `lines` (kind,
/// amount): a trial balance. Every line debits and credits the same
/// amount, so each currency's balances sum to zero; the clearing account's
/// balance is the net of [`Figures`].
pub fn trial_balance(
    lines: impl IntoIterator<Item = (MovementKind, Money)>,
) -> BTreeMap<(Currency, Account), i64> {
    let mut balances: BTreeMap<(Currency, Account), i64> = BTreeMap::new();
    for (kind, amount) in lines {
        let (debit, credit) = posting(kind);
        let currency = amount.currency();
        let minor = amount.minor_units();
        let entry = balances.entry((currency, debit)).or_default();
        *entry = entry.saturating_add(minor);
        let entry = balances.entry((currency, credit)).or_default();
        *entry = entry.saturating_sub(minor);
    }
    balances
}

/// Whether an order in `state` is reconciled: its money reached an
/// explained end (paid, refunded, canceled, charged back) and nothing
/// waits for the processor or for a person's decision about the order as
/// a whole (`pending` and `authorized` wait; `suspect` and `mismatch`
/// need a person).
pub fn is_reconciled(state: OrderState) -> bool {
    matches!(
        state,
        OrderState::Paid
            | OrderState::PartiallyRefunded
            | OrderState::Refunded
            | OrderState::Canceled
            | OrderState::Reversed
    )
}

/// Whether a decision from `old` to `new` is the moment the order became
/// reconciled (what the time-to-reconciled histogram observes, once per
/// order: no state leads back out of the reconciled ones into a waiting
/// one).
pub fn reaches_reconciled(old: OrderState, new: OrderState) -> bool {
    !is_reconciled(old) && is_reconciled(new)
}

#[cfg(test)]
mod tests {
    // Amounts in cents are written `units_cents` (100_00 is 100.00 EUR).
    #![allow(clippy::inconsistent_digit_grouping)]
    use proptest::prelude::*;

    use super::*;

    fn eur(minor: i64) -> Money {
        Money::from_minor(minor, Currency::iso("EUR").expect("EUR"))
    }

    #[test]
    fn kinds_and_accounts_have_fixed_string_forms() {
        assert_string_forms!(
            MovementKind,
            [
                "payment",
                "refund",
                "reversal",
                "chargeback",
                "fee",
                "vat",
                "vat_refund",
                "commission",
                "commission_refund",
                "chargeback_reversal",
                "commission_settled",
                "write_off_shortfall",
                "write_off_excess",
                "write_off_short_payment",
                "write_off_over_refund",
                "payout",
                "bank_debit",
                "reserve_held",
                "reserve_released",
                "dispute_held",
                "dispute_released",
                "processor_debit",
                "processor_credit",
                "conversion_out",
                "conversion_in"
            ]
        );
        assert_string_forms!(
            Account,
            [
                "clearing",
                "revenue",
                "refunds",
                "reversals",
                "chargebacks",
                "fees",
                "vat",
                "commission",
                "write_off",
                "bank",
                "reserve",
                "dispute_hold",
                "processor_adjustments",
                "conversion"
            ]
        );
    }

    #[test]
    fn a_payment_refunded_then_charged_back_moves_three_times() {
        let mut facts = OrderFacts::new(eur(100_00));
        let before = facts.clone();
        facts.payments.insert(
            "A".into(),
            PaymentFacts {
                paid: 100_00,
                ..PaymentFacts::default()
            },
        );
        let paid = facts.clone();
        assert_eq!(
            movements(&before, &paid),
            [Movement {
                processor_ref: "A".into(),
                kind: MovementKind::Payment,
                amount: eur(100_00)
            }]
        );
        facts.payments.get_mut("A").expect("A").refunded = 30_00;
        let refunded = facts.clone();
        assert_eq!(
            movements(&paid, &refunded)
                .iter()
                .map(|m| (m.kind, m.amount.minor_units()))
                .collect::<Vec<_>>(),
            [(MovementKind::Refund, 30_00)]
        );
        let a = facts.payments.get_mut("A").expect("A");
        a.reversed = true;
        a.fix_chargeback();
        // What remained after the refund: 70.00, never the whole payment.
        assert_eq!(
            movements(&refunded, &facts)
                .iter()
                .map(|m| (m.kind, m.amount.minor_units()))
                .collect::<Vec<_>>(),
            [(MovementKind::Chargeback, 70_00)]
        );
        let charged_back = facts.clone();
        facts.payments.get_mut("A").expect("A").dispute_won = true;
        assert_eq!(
            movements(&charged_back, &facts)
                .iter()
                .map(|m| (m.kind, m.amount.minor_units()))
                .collect::<Vec<_>>(),
            [(MovementKind::ChargebackReversal, 70_00)]
        );
        // Nothing moved: no movement.
        assert!(movements(&facts, &facts).is_empty());
    }

    #[test]
    fn a_refund_held_before_its_payment_moves_with_the_payment() {
        let empty = OrderFacts::new(eur(50_00));
        let mut held = empty.clone();
        held.payments.insert(
            "B".into(),
            PaymentFacts {
                refunded: 20_00,
                reversed: true,
                ..PaymentFacts::default()
            },
        );
        assert!(movements(&empty, &held).is_empty(), "nothing counted yet");
        let mut paid = held.clone();
        let b = paid.payments.get_mut("B").expect("B");
        b.paid = 50_00;
        b.fix_chargeback();
        let moved: Vec<_> = movements(&held, &paid)
            .iter()
            .map(|m| (m.kind, m.amount.minor_units()))
            .collect();
        assert_eq!(
            moved,
            [
                (MovementKind::Payment, 50_00),
                (MovementKind::Refund, 20_00),
                (MovementKind::Chargeback, 30_00)
            ]
        );
    }

    #[test]
    fn net_subtracts_everything_that_went_out() {
        let mut figures = Figures::default();
        figures.add(MovementKind::Payment, 1000);
        figures.add(MovementKind::Payment, 500);
        figures.add(MovementKind::Refund, 200);
        figures.add(MovementKind::Chargeback, 500);
        figures.add(MovementKind::Fee, 45);
        assert_eq!(figures.net(), 1000 + 500 - 200 - 500 - 45);
        assert_eq!(figures.of(MovementKind::Payment), 1500);
        figures.add(MovementKind::Reversal, 1000);
        assert_eq!(figures.net(), -245);
    }

    #[test]
    fn account_names_parse_with_defaults_and_refusals_that_say_how() {
        let accounts =
            JournalAccounts::parse("clearing=1150 Processor clearing, fees = 6150 Card fees")
                .expect("parses");
        assert_eq!(accounts.name(Account::Clearing), "1150 Processor clearing");
        assert_eq!(accounts.name(Account::Fees), "6150 Card fees");
        assert_eq!(accounts.name(Account::Revenue), "Sales revenue");
        assert_eq!(accounts.given().count(), 2);
        assert_eq!(
            JournalAccounts::parse("").expect("empty"),
            Default::default()
        );
        for (bad, says) in [
            ("clearing", "ACCOUNT=NAME"),
            ("till=1000", "clearing, revenue"),
            ("fees=", "1-100 characters"),
            ("fees=a\tb", "control"),
            ("fees=x,fees=y", "named twice"),
        ] {
            let err = JournalAccounts::parse(bad).expect_err(bad).to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn settlement_lines_and_payouts_book_each_on_its_own_account() {
        let cases = [
            (LineKind::Reserve, -50_00, Some(MovementKind::ReserveHeld)),
            (
                LineKind::Reserve,
                50_00,
                Some(MovementKind::ReserveReleased),
            ),
            (LineKind::DisputeHold, -1, Some(MovementKind::DisputeHeld)),
            (
                LineKind::DisputeHold,
                1,
                Some(MovementKind::DisputeReleased),
            ),
            (LineKind::Adjustment, -3, Some(MovementKind::ProcessorDebit)),
            (LineKind::Adjustment, 3, Some(MovementKind::ProcessorCredit)),
            (LineKind::Fee, 2, Some(MovementKind::ProcessorCredit)),
            (LineKind::Fee, 0, None),
            (LineKind::Sale, 100, None),
            (LineKind::Chargeback, -100, None),
        ];
        for (kind, gross, expected) in cases {
            assert_eq!(
                settlement_line_movement(kind, gross),
                expected,
                "{kind} {gross}"
            );
        }
        assert_eq!(payout_movement(5), Some(MovementKind::Payout));
        assert_eq!(payout_movement(-5), Some(MovementKind::BankDebit));
        assert_eq!(payout_movement(0), None);
        // Each of them moves clearing against an account of its own.
        let (debit, credit) = posting(MovementKind::ReserveHeld);
        assert_eq!((debit, credit), (Account::Reserve, Account::Clearing));
        assert_eq!(
            posting(MovementKind::Payout),
            (Account::Bank, Account::Clearing)
        );
        for kind in MovementKind::ALL {
            let (debit, credit) = posting(kind);
            assert_ne!(debit, credit, "{kind}");
            if kind.from_settlement() {
                assert_ne!(clearing_sign(kind), 0, "{kind} moves clearing");
            }
        }
    }

    #[test]
    fn a_clearing_statement_adds_up_from_its_opening_to_its_closing() {
        let gbp = |minor| Money::from_minor(minor, Currency::iso("GBP").expect("GBP"));
        let before = [
            (MovementKind::Payment, eur(100_00)),
            (MovementKind::Fee, eur(3_20)),
            (MovementKind::Payout, eur(90_00)),
            // Does not touch clearing.
            (MovementKind::Vat, gbp(0)),
        ];
        let during = [
            (MovementKind::Payment, eur(50_00)),
            (MovementKind::Refund, eur(10_00)),
            (MovementKind::ReserveHeld, eur(5_00)),
            (MovementKind::Payout, eur(6_80)),
            (MovementKind::ReserveReleased, eur(5_00)),
            (MovementKind::Payment, gbp(7_00)),
        ];
        let statements = clearing_statements(before, during);
        let eur_statement = &statements[&Currency::iso("EUR").expect("EUR")];
        assert_eq!(eur_statement.opening, 100_00 - 3_20 - 90_00);
        assert_eq!(eur_statement.by_kind[&MovementKind::Payment], 50_00);
        assert_eq!(eur_statement.by_kind[&MovementKind::Refund], -10_00);
        assert_eq!(eur_statement.by_kind[&MovementKind::ReserveHeld], -5_00);
        assert_eq!(eur_statement.by_kind[&MovementKind::ReserveReleased], 5_00);
        assert_eq!(eur_statement.closing, 6_80 + 50_00 - 10_00 - 6_80);
        let gbp_statement = &statements[&Currency::iso("GBP").expect("GBP")];
        assert_eq!((gbp_statement.opening, gbp_statement.closing), (0, 7_00));
    }

    #[test]
    fn the_reconciled_states_are_the_explained_ends() {
        let reconciled: Vec<&str> = OrderState::ALL
            .into_iter()
            .filter(|s| is_reconciled(*s))
            .map(OrderState::as_str)
            .collect();
        assert_eq!(
            reconciled,
            [
                "paid",
                "partially_refunded",
                "refunded",
                "canceled",
                "reversed"
            ]
        );
        assert!(reaches_reconciled(OrderState::Pending, OrderState::Paid));
        assert!(reaches_reconciled(
            OrderState::Authorized,
            OrderState::Canceled
        ));
        assert!(!reaches_reconciled(OrderState::Paid, OrderState::Refunded));
        assert!(!reaches_reconciled(
            OrderState::Pending,
            OrderState::Suspect
        ));
    }

    #[test]
    fn write_offs_bring_clearing_to_the_net() {
        // Paid 100.00, a 30.00 shortfall written off, a 12.00 excess
        // written off, a 5.00 short payment written off (against revenue).
        let lines = [
            (MovementKind::Payment, eur(100_00)),
            (MovementKind::WriteOffShortfall, eur(30_00)),
            (MovementKind::WriteOffExcess, eur(12_00)),
            (MovementKind::WriteOffShortPayment, eur(5_00)),
            (MovementKind::WriteOffOverRefund, eur(2_00)),
        ];
        let mut figures = Figures::default();
        for (kind, amount) in &lines {
            figures.add(*kind, amount.minor_units());
        }
        assert_eq!(figures.net(), 100_00 - 30_00 + 12_00);
        let balances = trial_balance(lines);
        let currency = Currency::iso("EUR").expect("EUR");
        assert_eq!(balances[&(currency, Account::Clearing)], 82_00);
        assert_eq!(
            balances[&(currency, Account::WriteOff)],
            30_00 - 12_00 + 5_00 + 2_00
        );
        assert_eq!(balances[&(currency, Account::Revenue)], -105_00);
        assert_eq!(balances[&(currency, Account::Refunds)], -2_00);
        assert_eq!(balances.values().sum::<i64>(), 0);
    }

    /// One thing that can happen to a payment: what facts only grow by.
    #[derive(Debug, Clone)]
    enum Step {
        Authorize(usize),
        Pay(usize),
        Refund(usize, i64),
        Reverse(usize),
        Open(usize),
        Won(usize),
        Lost(usize),
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        let step = prop_oneof![
            (0..3usize).prop_map(Step::Authorize),
            (0..3usize).prop_map(Step::Pay),
            (0..3usize, 1..20_000i64).prop_map(|(p, a)| Step::Refund(p, a)),
            (0..3usize).prop_map(Step::Reverse),
            (0..3usize).prop_map(Step::Open),
            (0..3usize).prop_map(Step::Won),
            (0..3usize).prop_map(Step::Lost),
        ];
        proptest::collection::vec(step, 0..24)
    }

    proptest! {
        /// Whatever happens to an order's payments, in whatever order, its
        /// movements are positive and sum to its figures, and their journal
        /// lines balance with the clearing account holding the net.
        #[test]
        fn movements_sum_to_the_figures_and_the_journal_balances(steps in steps()) {
            let expected = eur(10_000);
            let mut facts = OrderFacts::new(expected);
            let mut figures = Figures::default();
            let mut lines = Vec::new();
            for step in steps {
                let before = facts.clone();
                let refno = |p: usize| ["A", "B", "C"][p].to_owned();
                let payment = |facts: &mut OrderFacts, p: usize| {
                    facts.payments.entry(refno(p)).or_default().clone()
                };
                let mut p = match step {
                    Step::Authorize(i)
                    | Step::Pay(i)
                    | Step::Refund(i, _)
                    | Step::Reverse(i)
                    | Step::Open(i)
                    | Step::Won(i)
                    | Step::Lost(i) => (i, payment(&mut facts, i)),
                };
                match step {
                    Step::Authorize(_) => p.1.authorized = true,
                    Step::Pay(_) if p.1.paid == 0 => {
                        p.1.paid = expected.minor_units();
                        p.1.vat = 1_596;
                        p.1.commission_e8 = 276_785_000;
                    }
                    Step::Pay(_) => {}
                    Step::Refund(_, amount) => {
                        p.1.refunded += amount;
                        p.1.refunded_vat += amount / 5;
                        p.1.refunded_commission_e8 += amount * 333_333;
                    }
                    Step::Reverse(_) => p.1.reversed = true,
                    Step::Open(_) => p.1.dispute_opened = true,
                    Step::Won(_) => p.1.dispute_won = true,
                    Step::Lost(_) => p.1.dispute_lost = true,
                }
                if matches!(step, Step::Reverse(_) | Step::Open(_) | Step::Lost(_)) {
                    p.1.charged_back_vat = p.1.charged_back_vat.max(1_330);
                    p.1.charged_back_commission_e8 =
                        p.1.charged_back_commission_e8.max(230_654_000);
                }
                p.1.fix_chargeback();
                // What the network holds never exceeds what the refunds
                // left of the payment.
                let left = (p.1.paid - p.1.refunded).max(0);
                prop_assert!(
                    p.1.charged_back() - p.1.reinstated() <= left,
                    "{} charged back, {} reinstated, {} left", p.1.charged_back(), p.1.reinstated(), left
                );
                facts.payments.insert(refno(p.0), p.1);
                for movement in movements(&before, &facts) {
                    prop_assert!(movement.amount.is_positive());
                    figures.add(movement.kind, movement.amount.minor_units());
                    lines.push((movement.kind, movement.amount));
                }
            }
            prop_assert_eq!(figures.paid, facts.paid());
            prop_assert_eq!(figures.refunded, facts.refunded());
            prop_assert_eq!(figures.charged_back, facts.charged_back());
            prop_assert_eq!(figures.reinstated, facts.reinstated());
            prop_assert_eq!(figures.net_charged_back(), facts.net_charged_back());
            prop_assert_eq!(figures.reversed, 0);
            let sum = |f: &dyn Fn(&PaymentFacts) -> i64| facts.payments.values().map(f).sum::<i64>();
            prop_assert_eq!(figures.vat, sum(&|p| p.counted_vat()));
            prop_assert_eq!(figures.vat_refunded, sum(&|p| p.counted_given_back_vat()));
            prop_assert_eq!(figures.commission, sum(&|p| p.counted_commission(2)));
            prop_assert_eq!(
                figures.commission_refunded,
                sum(&|p| p.counted_given_back_commission(2))
            );
            // Each payment's figures from its facts by hand: paid less
            // refunds, less what the network holds (all that was left
            // while the dispute stands, nothing once won).
            for p in facts.payments.values().filter(|p| p.paid > 0) {
                let left = (p.paid - p.refunded).max(0);
                let held = if p.chargeback_notice() && !p.dispute_won { left } else { 0 };
                prop_assert_eq!(p.net_charged_back(), held);
            }
            let balances = trial_balance(lines);
            prop_assert_eq!(balances.values().sum::<i64>(), 0);
            let clearing = balances
                .get(&(expected.currency(), Account::Clearing))
                .copied()
                .unwrap_or(0);
            prop_assert_eq!(clearing, figures.net());
        }
    }
}
