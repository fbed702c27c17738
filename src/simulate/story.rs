//! The life of one simulated order: which notifications the processor sends,
//! in which order and at what times, and what the order must look like
//! afterwards.
//!
//! The expectation is written down *with the story*, from its intent and
//! the project's conventions (docs/protocol.md §10, design "Order states"), never by
//! asking [`crate::domain::reconcile::decide`]: the simulator is meant to be
//! an independent oracle for the reconciler, so that a bug in `decide`
//! shows up as a disagreement instead of being copied into the expectation.

use chrono::{NaiveDateTime, TimeDelta};

use crate::domain::{OrderState, ReviewKind};

use super::rng::Rng;

/// The scenario chosen for one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Story {
    /// Authorized (or wire payment received) and completed: `paid`.
    Paid,
    /// Paid, then part of it refunded: `partially_refunded`.
    PartiallyRefunded,
    /// Paid, then refunded in full (one refund, or a partial and the rest):
    /// `refunded`, paid = refunded = the total.
    Refunded,
    /// Authorized, then the authorization released before capture:
    /// `reversed`, nothing paid.
    Reversed,
    /// Paid, then a chargeback (ORDERSTATUS=REVERSED after payment):
    /// `reversed`, paid stays, review item `reversed_after_payment`.
    Chargeback,
    /// Placed (maybe authorized), then canceled: `canceled`.
    Canceled,
    /// Flagged by the processor (SUSPECT, INVALID or FRAUD_STATUS=DENIED):
    /// `suspect` and a review item.
    Suspect,
    /// Only pending notifications (PENDING, PURCHASE_PENDING, ...): `pending`.
    Pending,
    /// A paid story sent with TEST_ORDER=1: ignored by default, so the
    /// order stays `pending` with no processor reference.
    TestOrder,
    /// Authorized for the right amount, then COMPLETE for another amount:
    /// `mismatch`, never paid, review item `amount_mismatch`.
    AmountMismatch,
    /// Paid, then charged a second time under another REFNO (the shopper's
    /// second checkout went through), and that second charge refunded in
    /// full under its own REFNO: `paid`, paid = twice the total, refunded =
    /// the total, nothing left open (docs/protocol.md §11 (d)).
    DoubleChargeRefunded,
    /// Paid, then charged a second time under another REFNO, not (yet)
    /// refunded: `paid`, paid = twice the total, review item
    /// `duplicate_payment`.
    DoubleChargeOpen,
    /// Paid, then a REVERSED under a REFNO that never authorized nor paid
    /// this order (the processor mixed up orders, or someone replays
    /// another order's chargeback): it undoes nothing, so the order stays
    /// `paid`, with review item `unmatched_reversal`.
    ForeignReversal,
    /// Paid, plus a copy of its PENDING with the field names of
    /// IPN_TOTALGENERAL and IPN_SHIPPING swapped: the signed values are the
    /// same (a valid signature, the same notification), the meaning is not
    /// (another amount), and neither is the layout: the processor sends
    /// IPN_TOTALGENERAL first. Refused as malformed and parked, whichever
    /// arrives first; the order ends `paid` with no review item (issue 21,
    /// Deliver 5: names are bound).
    ConflictingCopy,
}

impl Story {
    pub const ALL: [Story; 14] = [
        Story::Paid,
        Story::PartiallyRefunded,
        Story::Refunded,
        Story::Reversed,
        Story::Chargeback,
        Story::Canceled,
        Story::Suspect,
        Story::Pending,
        Story::TestOrder,
        Story::AmountMismatch,
        Story::DoubleChargeRefunded,
        Story::DoubleChargeOpen,
        Story::ForeignReversal,
        Story::ConflictingCopy,
    ];

    /// The stories chosen for an ordinary order, and their weights (per
    /// cent): most orders simply get paid.
    pub(crate) const ORDINARY: [(Story, u32); 8] = [
        (Story::Paid, 38),
        (Story::PartiallyRefunded, 9),
        (Story::Refunded, 10),
        (Story::Reversed, 7),
        (Story::Chargeback, 6),
        (Story::Canceled, 10),
        (Story::Suspect, 8),
        (Story::Pending, 12),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Story::Paid => "paid",
            Story::PartiallyRefunded => "partially_refunded",
            Story::Refunded => "refunded",
            Story::Reversed => "reversed",
            Story::Chargeback => "chargeback",
            Story::Canceled => "canceled",
            Story::Suspect => "suspect",
            Story::Pending => "pending",
            Story::TestOrder => "test_order",
            Story::AmountMismatch => "amount_mismatch",
            Story::DoubleChargeRefunded => "double_charge_refunded",
            Story::DoubleChargeOpen => "double_charge_open",
            Story::ForeignReversal => "foreign_reversal",
            Story::ConflictingCopy => "conflicting_copy",
        }
    }
}

impl std::fmt::Display for Story {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one notification is expected to do to a *known* order, by spec
/// §10: pending statuses and test orders are recorded without effect; a
/// status that repeats an effect already had (a second payment
/// notification: "COMPLETE twice = paid once") changes nothing; a payment
/// for another amount is a mismatch; everything else adds a fact.
///
/// Per story, not per arrival order: when a re-sent COMPLETE overtakes the
/// first one, the roles swap but the counts stay.
///
/// Not the domain's [`crate::domain::Effect`], which is what `decide`
/// concluded (and has no mismatch): this is the simulator's own prediction,
/// written before anything is decided, and it maps onto an
/// [`crate::domain::Outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedEffect {
    Applied,
    Ignored,
    Mismatch,
}

/// Which processor reference (REFNO) a notification carries. An order may
/// see several payments, each under its own REFNO, and a refund or reversal
/// applies to the payment with the same REFNO (docs/protocol.md §11 (d)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payment {
    /// The order's own payment: every ordinary story has only this one.
    Order,
    /// A second charge of the same order (a double charge).
    Second,
    /// A REFNO that never authorized nor paid this order.
    Foreign,
}

impl Payment {
    fn slot(self) -> usize {
        match self {
            Payment::Order => 0,
            Payment::Second => 1,
            Payment::Foreign => 2,
        }
    }
}

/// One notification of a story, before it is dressed as a body (the
/// scripted step of a [`Story`], not a step of the reconciler).
#[derive(Debug, Clone)]
pub struct StoryStep {
    /// ORDERSTATUS.
    pub status: &'static str,
    /// REFNO.
    pub payment: Payment,
    /// IPN_TOTALGENERAL in minor units, signed as on the wire (refunds and
    /// reversals negative, docs/protocol.md §2.4).
    pub amount: i64,
    /// FRAUD_STATUS.
    pub fraud: &'static str,
    /// IPN_DATE.
    pub at: NaiveDateTime,
    /// Whether PAYMENTDATE is filled in (the payment was authorized).
    pub payment_date: Option<NaiveDateTime>,
    /// Whether COMPLETE_DATE is filled in (the order was completed).
    pub complete_date: Option<NaiveDateTime>,
    /// Fields added before IPN_DATE (refund or chargeback details).
    pub extra: Vec<(&'static str, String)>,
    pub effect: ExpectedEffect,
}

/// A story's notifications and the order's final state it implies.
#[derive(Debug, Clone)]
pub struct Outline {
    pub steps: Vec<StoryStep>,
    pub state: OrderState,
    /// Minor units.
    pub paid: i64,
    /// Minor units.
    pub refunded: i64,
    /// Review items the story itself raises (card numbers come on top).
    pub review_kinds: Vec<ReviewKind>,
    /// Whether the processor reference ends up on the order: every story
    /// with a live (non-test) notification records it (docs/protocol.md §10: test
    /// notifications change no live order).
    pub records_processor_ref: bool,
    /// The payment method: `true` for wire transfer (no card fields).
    pub wire: bool,
    /// The step of which a copy with two field names swapped is delivered
    /// too ([`Story::ConflictingCopy`]).
    pub swapped_copy_of: Option<usize>,
    /// `(first, second)`: the steps of a double charge's two payments.
    /// The order's processor reference is the REFNO of the payment the
    /// reconciler records first (bookkeeping, not a fact: see
    /// `OrderFacts::processor_ref`), so the simulator never delivers the
    /// second charge's payment before the first one's and expects the
    /// first REFNO; everything else of the story may arrive in any order.
    pub payments: Option<(usize, usize)>,
}

/// How a story's times are laid out.
pub struct Clock<'a> {
    rng: &'a mut Rng,
    now: NaiveDateTime,
}

impl<'a> Clock<'a> {
    pub fn new(rng: &'a mut Rng, start: NaiveDateTime) -> Self {
        Self { rng, now: start }
    }

    /// Moves on by a random number of seconds in `low..=high` (at least 1,
    /// so IPN_DATE strictly increases along the story).
    pub fn advance(&mut self, low: u64, high: u64) -> NaiveDateTime {
        let seconds = self.rng.range(low.max(1), high.max(1));
        // Bounded by the callers (at most weeks), far inside TimeDelta's range.
        self.now += TimeDelta::seconds(i64::try_from(seconds).unwrap_or(1));
        self.now
    }
}

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// PAYMENTDATE and COMPLETE_DATE of one payment, once they happened.
#[derive(Debug, Clone, Copy, Default)]
struct Dates {
    payment: Option<NaiveDateTime>,
    complete: Option<NaiveDateTime>,
}

struct Builder {
    steps: Vec<StoryStep>,
    total: i64,
    /// Per [`Payment`]: each payment is its own order at the processor,
    /// with its own dates.
    dates: [Dates; 3],
    /// The REFNO of the steps pushed next.
    payment: Payment,
}

impl Builder {
    fn push(
        &mut self,
        status: &'static str,
        amount: i64,
        at: NaiveDateTime,
        effect: ExpectedEffect,
    ) {
        self.push_with(status, amount, "APPROVED", at, effect, Vec::new());
    }

    fn push_with(
        &mut self,
        status: &'static str,
        amount: i64,
        fraud: &'static str,
        at: NaiveDateTime,
        effect: ExpectedEffect,
        extra: Vec<(&'static str, String)>,
    ) {
        let payment = self.payment;
        let dates = &mut self.dates[payment.slot()];
        match status {
            "PAYMENT_AUTHORIZED" | "PAYMENT_RECEIVED" | "AUTHRECEIVED" => {
                dates.payment.get_or_insert(at);
            }
            "COMPLETE" => {
                dates.payment.get_or_insert(at);
                dates.complete.get_or_insert(at);
            }
            _ => {}
        }
        let dates = *dates;
        self.steps.push(StoryStep {
            status,
            payment,
            amount,
            fraud,
            at,
            payment_date: dates.payment,
            complete_date: dates.complete,
            extra,
            effect,
        });
    }

    /// The index of the last step pushed.
    fn last(&self) -> usize {
        self.steps.len().saturating_sub(1)
    }

    /// PENDING (sometimes) -> PAYMENT_AUTHORIZED -> COMPLETE, by card.
    fn card_payment(&mut self, clock: &mut Clock<'_>, with_pending: bool) {
        if with_pending {
            let at = clock.advance(1, 20);
            self.push("PENDING", self.total, at, ExpectedEffect::Ignored);
        }
        let at = clock.advance(20, 5 * MINUTE);
        self.push(
            "PAYMENT_AUTHORIZED",
            self.total,
            at,
            ExpectedEffect::Applied,
        );
        let at = clock.advance(MINUTE, 2 * HOUR);
        self.push("COMPLETE", self.total, at, ExpectedEffect::Applied);
    }
}

/// Builds the notifications of `story` for an order of `total` minor units
/// placed at `sale`.
pub fn outline(story: Story, total: i64, sale: NaiveDateTime, rng: &mut Rng) -> Outline {
    let mut b = Builder {
        steps: Vec::new(),
        total,
        dates: [Dates::default(); 3],
        payment: Payment::Order,
    };
    let variant = rng.below(3);
    let mut wire = false;
    let mut review_kinds = Vec::new();
    let mut swapped_copy_of = None;
    let mut payments = None;
    let mut clock_rng = Rng::new(rng.next_u64());
    let mut clock = Clock::new(&mut clock_rng, sale);
    let (state, paid, refunded) = match story {
        Story::Paid => {
            match variant {
                0 => {
                    b.card_payment(&mut clock, rng.chance(0.5));
                    // The processor re-sends COMPLETE when the invoice is
                    // generated (docs/protocol.md §2.1): a new body, no new effect.
                    let at = clock.advance(HOUR, 2 * DAY);
                    b.push("COMPLETE", total, at, ExpectedEffect::Ignored);
                }
                1 => {
                    // Wire transfer: purchase order, money received, then
                    // completed; the second payment status changes nothing.
                    wire = true;
                    let at = clock.advance(1, 20);
                    b.push("PURCHASE_PENDING", total, at, ExpectedEffect::Ignored);
                    let at = clock.advance(DAY, 5 * DAY);
                    b.push("PAYMENT_RECEIVED", total, at, ExpectedEffect::Applied);
                    let at = clock.advance(MINUTE, HOUR);
                    b.push("COMPLETE", total, at, ExpectedEffect::Ignored);
                }
                _ => {
                    // Delivery confirmation flow, ended by AUTHRECEIVED
                    // (handled like COMPLETE, docs/protocol.md §2.1).
                    let at = clock.advance(1, 20);
                    b.push("PENDING_ORDER_APPROVAL", total, at, ExpectedEffect::Ignored);
                    let at = clock.advance(MINUTE, 3 * HOUR);
                    b.push("AUTHRECEIVED", total, at, ExpectedEffect::Applied);
                }
            }
            (OrderState::Paid, total, 0)
        }
        Story::PartiallyRefunded => {
            b.card_payment(&mut clock, rng.chance(0.3));
            let part = partial(total, rng);
            let at = clock.advance(DAY, 10 * DAY);
            b.push_with(
                "REFUND",
                -part,
                "APPROVED",
                at,
                ExpectedEffect::Applied,
                refund_fields("PARTIAL", rng),
            );
            (OrderState::PartiallyRefunded, total, part)
        }
        Story::Refunded => {
            b.card_payment(&mut clock, rng.chance(0.3));
            if variant == 0 {
                let at = clock.advance(DAY, 10 * DAY);
                b.push_with(
                    "REFUND",
                    -total,
                    "APPROVED",
                    at,
                    ExpectedEffect::Applied,
                    refund_fields("FULL", rng),
                );
            } else {
                let part = partial(total, rng);
                let at = clock.advance(DAY, 10 * DAY);
                b.push_with(
                    "REFUND",
                    -part,
                    "APPROVED",
                    at,
                    ExpectedEffect::Applied,
                    refund_fields("PARTIAL", rng),
                );
                let at = clock.advance(DAY, 5 * DAY);
                b.push_with(
                    "REFUND",
                    -(total - part),
                    "APPROVED",
                    at,
                    ExpectedEffect::Applied,
                    refund_fields("FULL", rng),
                );
            }
            (OrderState::Refunded, total, total)
        }
        Story::Reversed => {
            let at = clock.advance(20, 5 * MINUTE);
            b.push("PAYMENT_AUTHORIZED", total, at, ExpectedEffect::Applied);
            let at = clock.advance(HOUR, 3 * DAY);
            b.push("REVERSED", -total, at, ExpectedEffect::Applied);
            (OrderState::Reversed, 0, 0)
        }
        Story::Chargeback => {
            b.card_payment(&mut clock, false);
            let at = clock.advance(10 * DAY, 40 * DAY);
            let code = *rng
                .pick(&["4837", "4853", "10.4", "13.1"])
                .unwrap_or(&"4837");
            b.push_with(
                "REVERSED",
                -total,
                "APPROVED",
                at,
                ExpectedEffect::Applied,
                vec![
                    ("CHARGEBACK_RESOLUTION", "OPEN".to_owned()),
                    ("CHARGEBACK_REASON_CODE", code.to_owned()),
                ],
            );
            review_kinds.push(ReviewKind::ReversedAfterPayment);
            (OrderState::Reversed, total, 0)
        }
        Story::Canceled => {
            let at = clock.advance(1, 20);
            b.push("PENDING", total, at, ExpectedEffect::Ignored);
            if variant == 0 {
                // Authorized, then voided by the shop.
                let at = clock.advance(20, 5 * MINUTE);
                b.push("PAYMENT_AUTHORIZED", total, at, ExpectedEffect::Applied);
            }
            let at = clock.advance(HOUR, 2 * DAY);
            b.push("CANCELED", total, at, ExpectedEffect::Applied);
            (OrderState::Canceled, 0, 0)
        }
        Story::Suspect => {
            match variant {
                0 => {
                    let at = clock.advance(1, 20);
                    b.push_with(
                        "PENDING",
                        total,
                        "UNDER REVIEW",
                        at,
                        ExpectedEffect::Ignored,
                        vec![],
                    );
                    let at = clock.advance(MINUTE, HOUR);
                    b.push_with(
                        "SUSPECT",
                        total,
                        "UNDER REVIEW",
                        at,
                        ExpectedEffect::Applied,
                        vec![],
                    );
                }
                1 => {
                    let at = clock.advance(1, 20);
                    b.push("PENDING_APPROVAL", total, at, ExpectedEffect::Ignored);
                    let at = clock.advance(MINUTE, HOUR);
                    b.push_with(
                        "INVALID",
                        total,
                        "DENIED",
                        at,
                        ExpectedEffect::Applied,
                        vec![],
                    );
                }
                _ => {
                    // The bank authorized, the processor's fraud check
                    // denied: the status is not acted upon (docs/protocol.md §2.3).
                    let at = clock.advance(1, 20);
                    b.push_with(
                        "PENDING",
                        total,
                        "PENDING",
                        at,
                        ExpectedEffect::Ignored,
                        vec![],
                    );
                    let at = clock.advance(20, 5 * MINUTE);
                    b.push_with(
                        "PAYMENT_AUTHORIZED",
                        total,
                        "DENIED",
                        at,
                        ExpectedEffect::Applied,
                        vec![],
                    );
                }
            }
            review_kinds.push(ReviewKind::Suspect);
            (OrderState::Suspect, 0, 0)
        }
        Story::Pending => {
            match variant {
                0 => {
                    let at = clock.advance(1, 20);
                    b.push("PENDING", total, at, ExpectedEffect::Ignored);
                }
                1 => {
                    wire = true;
                    let at = clock.advance(1, 20);
                    b.push("PURCHASE_PENDING", total, at, ExpectedEffect::Ignored);
                }
                _ => {
                    let at = clock.advance(1, 20);
                    b.push("PENDING", total, at, ExpectedEffect::Ignored);
                    let at = clock.advance(MINUTE, HOUR);
                    b.push("PENDING_APPROVAL", total, at, ExpectedEffect::Ignored);
                }
            }
            (OrderState::Pending, 0, 0)
        }
        Story::TestOrder => {
            b.card_payment(&mut clock, rng.chance(0.5));
            for step in &mut b.steps {
                step.effect = ExpectedEffect::Ignored;
            }
            (OrderState::Pending, 0, 0)
        }
        Story::AmountMismatch => {
            b.card_payment(&mut clock, rng.chance(0.3));
            let wrong = wrong_amount(total, rng);
            if let Some(complete) = b.steps.iter_mut().find(|s| s.status == "COMPLETE") {
                complete.amount = wrong;
                complete.effect = ExpectedEffect::Mismatch;
            }
            review_kinds.push(ReviewKind::AmountMismatch);
            (OrderState::Mismatch, 0, 0)
        }
        Story::DoubleChargeRefunded | Story::DoubleChargeOpen => {
            b.card_payment(&mut clock, rng.chance(0.3));
            let first = b.last();
            // The second checkout, minutes to hours later, under its own
            // REFNO: authorized and completed like the first. Both add a
            // fact (a new payment), so both apply.
            b.payment = Payment::Second;
            let at = clock.advance(10 * MINUTE, 6 * HOUR);
            b.push("PAYMENT_AUTHORIZED", total, at, ExpectedEffect::Applied);
            let at = clock.advance(MINUTE, 2 * HOUR);
            b.push("COMPLETE", total, at, ExpectedEffect::Applied);
            payments = Some((first, b.last()));
            if story == Story::DoubleChargeRefunded {
                // The merchant refunds the extra charge under its REFNO:
                // the duplicate_payment item is closed by the system.
                let at = clock.advance(HOUR, 3 * DAY);
                b.push_with(
                    "REFUND",
                    -total,
                    "APPROVED",
                    at,
                    ExpectedEffect::Applied,
                    vec![
                        ("REFUND_TYPE", "FULL".to_owned()),
                        ("REFUND_REASON", "Duplicate purchase".to_owned()),
                    ],
                );
                (OrderState::Paid, 2 * total, total)
            } else {
                review_kinds.push(ReviewKind::DuplicatePayment);
                (OrderState::Paid, 2 * total, 0)
            }
        }
        Story::ForeignReversal => {
            b.card_payment(&mut clock, rng.chance(0.3));
            // A reversal under a REFNO that has nothing to reverse here: a
            // new fact of that REFNO (so it applies), no money moves.
            b.payment = Payment::Foreign;
            let at = clock.advance(DAY, 20 * DAY);
            b.push_with(
                "REVERSED",
                -total,
                "APPROVED",
                at,
                ExpectedEffect::Applied,
                vec![
                    ("CHARGEBACK_RESOLUTION", "OPEN".to_owned()),
                    ("CHARGEBACK_REASON_CODE", "4837".to_owned()),
                ],
            );
            review_kinds.push(ReviewKind::UnmatchedReversal);
            (OrderState::Paid, total, 0)
        }
        Story::ConflictingCopy => {
            // The copy is of the PENDING, and refused: the order ends the
            // same in every arrival order, with nothing to review (the
            // parked copy is counted as malformed).
            b.card_payment(&mut clock, true);
            swapped_copy_of = b.steps.iter().position(|s| s.status == "PENDING");
            (OrderState::Paid, total, 0)
        }
    };
    Outline {
        steps: b.steps,
        state,
        paid,
        refunded,
        review_kinds,
        records_processor_ref: story != Story::TestOrder,
        wire,
        swapped_copy_of,
        payments,
    }
}

/// A partial refund: 10-60 % of the total, at least one minor unit and
/// always less than the total.
fn partial(total: i64, rng: &mut Rng) -> i64 {
    let percent = i64::try_from(rng.range(10, 60)).unwrap_or(30);
    (total * percent / 100).clamp(1, (total - 1).max(1))
}

/// Another amount than `total`: under- or overpaid by up to half, never
/// equal, never below one minor unit.
pub fn wrong_amount(total: i64, rng: &mut Rng) -> i64 {
    let half = u64::try_from(total / 2).unwrap_or(0).max(1);
    let delta = i64::try_from(rng.range(1, half)).unwrap_or(1);
    if rng.chance(0.5) && total - delta >= 1 {
        total - delta
    } else {
        total + delta
    }
}

fn refund_fields(kind: &'static str, rng: &mut Rng) -> Vec<(&'static str, String)> {
    let reasons = [
        "Customer goodwill",
        "Not as described",
        "Duplicate purchase",
        "Rückerstattung auf Wunsch",
    ];
    let reason = *rng.pick(&reasons).unwrap_or(&"Customer goodwill");
    vec![
        ("REFUND_TYPE", kind.to_owned()),
        ("REFUND_REASON", reason.to_owned()),
    ]
}
