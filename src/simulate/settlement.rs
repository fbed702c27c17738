//! The processor's settlement of a simulation: `settlement.csv` (one line
//! per sale, refund and chargeback of the simulated payments, with fees,
//! in batches per settlement day and currency, and a monthly fee line per
//! currency) and `payouts.csv` (one transfer per batch), with a few planted
//! differences, each expected to become review items:
//!
//! | planted | expected |
//! |---|---|
//! | one sale line for a REFNO and order the shop never had | `settlement_unknown` |
//! | one sale line one unit above its payment | `settlement_amount_differs` (only: the sweep does not call that payment unsettled too) |
//! | the refund lines of one refunded payment left out | `refund_not_debited` (sweep) |
//! | one batch's payout one unit short | `payout_total_differs` |
//! | about 3 % of the payments (at least 2) not settled at all | `unsettled_payment` (sweep) |
//!
//! Only payments the ledger counts are settled: known orders' captured
//! payments (not test orders, not a payment for the wrong amount, not an
//! unknown order's). Lines are settled two days after the notification
//! (the simulated clock); the sweep raises its items once `settlement-days`
//! have passed since the ledger recorded the payment or refund.
//!
//! Pure, like the rest of the simulator: the same simulation gives the
//! same files.

use std::collections::BTreeMap;
use std::io::Write;

use chrono::{NaiveDateTime, TimeDelta};

use super::Simulation;
use super::rng::Rng;
use super::story::{Outline, Payment, Story};
use super::write::WriteError;
use crate::domain::{Currency, Money, ReviewKind};

/// The random stream of settlement choices (see `STREAM_*` in the parent).
const STREAM_SETTLEMENT: u64 = 6;

/// A payment as the ledger must end with it, and when things happened (the
/// simulated clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedPayment {
    pub order_ref: String,
    pub processor_ref: String,
    pub currency: Currency,
    /// Captured, minor units.
    pub paid: i64,
    pub paid_at: NaiveDateTime,
    /// Refunds: amount (minor units, positive) and when.
    pub refunds: Vec<(i64, NaiveDateTime)>,
    /// When it was charged back, if it was.
    pub charged_back: Option<NaiveDateTime>,
}

/// The captured payments of one known order's story.
pub(super) fn payments_of(
    order_ref: &str,
    story: Story,
    outline: &Outline,
    currency: Currency,
    refnos: [u64; 2],
) -> Vec<SimulatedPayment> {
    if matches!(story, Story::TestOrder | Story::AmountMismatch) {
        return Vec::new();
    }
    let mut payments: Vec<(Payment, SimulatedPayment)> = Vec::new();
    for step in &outline.steps {
        let refno = match step.payment {
            Payment::Order => refnos[0],
            Payment::Second | Payment::Foreign => refnos[1],
        };
        let existing = payments.iter_mut().find(|(p, _)| *p == step.payment);
        match step.status {
            "COMPLETE" | "PAYMENT_RECEIVED" | "AUTHRECEIVED" if existing.is_none() => {
                payments.push((
                    step.payment,
                    SimulatedPayment {
                        order_ref: order_ref.to_owned(),
                        processor_ref: refno.to_string(),
                        currency,
                        paid: step.amount,
                        paid_at: step.at,
                        refunds: Vec::new(),
                        charged_back: None,
                    },
                ));
            }
            "REFUND" => {
                if let Some((_, payment)) = existing {
                    payment.refunds.push((step.amount.abs(), step.at));
                }
            }
            "REVERSED" => {
                if let Some((_, payment)) = existing {
                    payment.charged_back = Some(step.at);
                }
            }
            _ => {}
        }
    }
    payments.into_iter().map(|(_, p)| p).collect()
}

/// One line of `settlement.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedLine {
    pub batch_id: String,
    pub processor_ref: String,
    pub order_ref: String,
    /// `sale`, `refund`, `chargeback`, `fee`.
    pub kind: &'static str,
    pub gross: Money,
    pub fee: Money,
    pub settled_at: NaiveDateTime,
}

impl SimulatedLine {
    pub fn net(&self) -> Money {
        Money::from_minor(
            self.gross.minor_units() - self.fee.minor_units(),
            self.gross.currency(),
        )
    }
}

/// One line of `payouts.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedPayout {
    pub batch_id: String,
    pub paid_on: chrono::NaiveDate,
    pub amount: Money,
}

/// The settlement files and the review items they must lead to: `(kind,
/// order_ref)`, a multiset sorted by kind then order (`None` for a payout,
/// which concerns a batch).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SimulatedSettlement {
    pub lines: Vec<SimulatedLine>,
    pub payouts: Vec<SimulatedPayout>,
    pub expected: Vec<(ReviewKind, Option<String>)>,
}

fn unit(currency: Currency) -> i64 {
    10i64.pow(currency.exponent())
}

/// The processor's fee on a sale: 2.9 % plus 0.30 (in units of the
/// currency, rounded down to its minor units).
pub(crate) fn sale_fee(gross: i64, currency: Currency) -> i64 {
    gross * 29 / 1000 + unit(currency) * 3 / 10
}

/// The settlement of `simulation` (see the module docs).
pub fn settlement(simulation: &Simulation) -> SimulatedSettlement {
    settle(simulation, true)
}

/// The settlement of `simulation` as the processor would send it if
/// nothing went wrong: every counted payment settled for what the ledger
/// has, every refund and chargeback debited, every batch paid out for the
/// sum of its lines, nothing planted (`expected` is empty). The month
/// after which the clearing account closes at zero.
pub fn settlement_as_paid(simulation: &Simulation) -> SimulatedSettlement {
    settle(simulation, false)
}

fn settle(simulation: &Simulation, plant: bool) -> SimulatedSettlement {
    let mut rng = Rng::derive(simulation.config.seed, STREAM_SETTLEMENT, 0);
    let mut payments: Vec<&SimulatedPayment> = simulation.payments.iter().collect();
    payments
        .sort_by(|a, b| (&a.order_ref, &a.processor_ref).cmp(&(&b.order_ref, &b.processor_ref)));
    // Plain payments (no refund, no chargeback, alone on their order) may
    // be planted with a wrong amount or left unsettled; refunded ones may
    // lose their refund lines.
    let alone = |p: &SimulatedPayment| {
        payments
            .iter()
            .filter(|q| q.order_ref == p.order_ref)
            .count()
            == 1
    };
    let mut plain: Vec<usize> = (0..payments.len())
        .filter(|&i| {
            let p = payments[i];
            p.refunds.is_empty() && p.charged_back.is_none() && alone(p)
        })
        .collect();
    let refunded: Vec<usize> = (0..payments.len())
        .filter(|&i| !payments[i].refunds.is_empty() && payments[i].charged_back.is_none())
        .collect();
    rng.shuffle(&mut plain);
    let differs = plain.pop().filter(|_| plant);
    let unsettled_count = (payments.len() * 3 / 100).max(2).min(plain.len());
    let unsettled: Vec<usize> = plain.drain(..unsettled_count).filter(|_| plant).collect();
    let undebited = rng.pick(&refunded).copied().filter(|_| plant);

    let mut out = SimulatedSettlement::default();
    let batch = |currency: Currency, at: NaiveDateTime| {
        format!("SIM-{}-{}", at.format("%Y%m%d"), currency.as_str())
    };
    let settle = |at: NaiveDateTime| at + TimeDelta::days(2);
    for (i, p) in payments.iter().enumerate() {
        if unsettled.contains(&i) {
            out.expected
                .push((ReviewKind::UnsettledPayment, Some(p.order_ref.clone())));
            continue;
        }
        let money = |minor: i64| Money::from_minor(minor, p.currency);
        let mut gross = p.paid;
        if differs == Some(i) {
            gross += unit(p.currency);
            out.expected.push((
                ReviewKind::SettlementAmountDiffers,
                Some(p.order_ref.clone()),
            ));
        }
        let at = settle(p.paid_at);
        out.lines.push(SimulatedLine {
            batch_id: batch(p.currency, at),
            processor_ref: p.processor_ref.clone(),
            order_ref: p.order_ref.clone(),
            kind: "sale",
            gross: money(gross),
            fee: money(sale_fee(gross, p.currency)),
            settled_at: at,
        });
        if undebited == Some(i) {
            out.expected
                .push((ReviewKind::RefundNotDebited, Some(p.order_ref.clone())));
        } else {
            for (amount, when) in &p.refunds {
                let at = settle(*when);
                out.lines.push(SimulatedLine {
                    batch_id: batch(p.currency, at),
                    processor_ref: p.processor_ref.clone(),
                    order_ref: p.order_ref.clone(),
                    kind: "refund",
                    gross: money(-amount),
                    fee: money(0),
                    settled_at: at,
                });
            }
        }
        if let Some(when) = p.charged_back {
            let at = settle(when);
            // The network takes back what the refunds left of the payment.
            let refunded: i64 = p
                .refunds
                .iter()
                .filter(|(_, at)| *at <= when)
                .map(|(amount, _)| *amount)
                .sum();
            out.lines.push(SimulatedLine {
                batch_id: batch(p.currency, at),
                processor_ref: p.processor_ref.clone(),
                order_ref: p.order_ref.clone(),
                kind: "chargeback",
                gross: money(-(p.paid - refunded).max(0)),
                fee: money(15 * unit(p.currency)),
                settled_at: at,
            });
        }
    }
    // A sale for an order the shop never had, in the first payment's
    // currency and batch.
    if let Some(first) = out.lines.first().cloned().filter(|_| plant) {
        let tag = simulation
            .payments
            .first()
            .and_then(|p| p.order_ref.get(5..9))
            .unwrap_or("0000")
            .to_owned();
        let order_ref = format!("SHOP-{tag}-UNKNOWN");
        let gross = Money::from_minor(12 * unit(first.gross.currency()), first.gross.currency());
        out.lines.push(SimulatedLine {
            batch_id: first.batch_id.clone(),
            processor_ref: format!("99{:07}", simulation.config.seed % 10_000_000),
            order_ref: order_ref.clone(),
            kind: "sale",
            gross,
            fee: Money::from_minor(
                sale_fee(gross.minor_units(), gross.currency()),
                gross.currency(),
            ),
            settled_at: first.settled_at,
        });
        out.expected
            .push((ReviewKind::SettlementUnknown, Some(order_ref)));
    }
    // The monthly fee, per currency, on its last day's batch.
    let mut last: BTreeMap<Currency, (String, NaiveDateTime)> = BTreeMap::new();
    for line in &out.lines {
        let entry = last
            .entry(line.gross.currency())
            .or_insert_with(|| (line.batch_id.clone(), line.settled_at));
        if line.settled_at > entry.1 {
            *entry = (line.batch_id.clone(), line.settled_at);
        }
    }
    for (currency, (batch_id, at)) in &last {
        out.lines.push(SimulatedLine {
            batch_id: batch_id.clone(),
            processor_ref: String::new(),
            order_ref: String::new(),
            kind: "fee",
            gross: Money::zero(*currency),
            fee: Money::from_minor(10 * unit(*currency), *currency),
            settled_at: *at,
        });
    }
    out.lines
        .sort_by(|a, b| (&a.batch_id, a.settled_at).cmp(&(&b.batch_id, b.settled_at)));
    // One transfer per batch, the day after; the first batch's one unit
    // short.
    let mut nets: BTreeMap<String, (Money, NaiveDateTime)> = BTreeMap::new();
    for line in &out.lines {
        let entry = nets
            .entry(line.batch_id.clone())
            .or_insert((Money::zero(line.gross.currency()), line.settled_at));
        entry.0 = Money::from_minor(
            entry.0.minor_units() + line.net().minor_units(),
            entry.0.currency(),
        );
        entry.1 = entry.1.max(line.settled_at);
    }
    for (i, (batch_id, (net, at))) in nets.into_iter().enumerate() {
        let short = if i == 0 && plant {
            out.expected.push((ReviewKind::PayoutTotalDiffers, None));
            unit(net.currency())
        } else {
            0
        };
        out.payouts.push(SimulatedPayout {
            batch_id,
            paid_on: (at + TimeDelta::days(1)).date(),
            amount: Money::from_minor(net.minor_units() - short, net.currency()),
        });
    }
    out.expected
        .sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
    out
}

/// Writes `settlement.csv` in the default columns.
pub fn write_settlement_csv(
    settlement: &SimulatedSettlement,
    out: impl Write,
) -> Result<(), WriteError> {
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(crate::domain::settlement::DEFAULT_COLUMNS)?;
    for line in &settlement.lines {
        csv.write_record([
            line.batch_id.as_str(),
            &line.processor_ref,
            &line.order_ref,
            line.kind,
            &line.gross.format_amount(),
            &line.fee.format_amount(),
            &line.net().format_amount(),
            line.gross.currency().as_str(),
            &line.settled_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        ])?;
    }
    csv.flush().map_err(csv::Error::from)?;
    Ok(())
}

/// Writes `payouts.csv` (`batch_id,paid_on,amount,currency`).
pub fn write_payouts_csv(
    settlement: &SimulatedSettlement,
    out: impl Write,
) -> Result<(), WriteError> {
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(crate::domain::settlement::PAYOUT_COLUMNS)?;
    for payout in &settlement.payouts {
        csv.write_record([
            payout.batch_id.as_str(),
            &payout.paid_on.to_string(),
            &payout.amount.format_amount(),
            payout.amount.currency().as_str(),
        ])?;
    }
    csv.flush().map_err(csv::Error::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Currencies;
    use crate::domain::settlement::{Mapping, parse_payouts, parse_settlement};
    use crate::ipn::SecretKey;
    use crate::simulate::{SimulationConfig, simulate};

    fn run(seed: u64, orders: usize) -> Simulation {
        simulate(
            &SimulationConfig::new(seed, orders),
            &SecretKey::new("settlement-test"),
        )
        .expect("simulates")
    }

    #[test]
    fn the_files_parse_and_plant_each_difference_once() {
        let simulation = run(7, 120);
        let settled = settlement(&simulation);
        assert_eq!(settled, settlement(&simulation), "deterministic");
        let mut text = Vec::new();
        write_settlement_csv(&settled, &mut text).expect("csv");
        let lines = parse_settlement(text.as_slice(), &Mapping::default(), &Currencies::iso())
            .expect("parses");
        assert_eq!(lines.len(), settled.lines.len());
        let mut payouts = Vec::new();
        write_payouts_csv(&settled, &mut payouts).expect("csv");
        let payouts = parse_payouts(payouts.as_slice(), &Currencies::iso()).expect("parses");
        let count = |kind: ReviewKind| settled.expected.iter().filter(|e| e.0 == kind).count();
        assert_eq!(count(ReviewKind::SettlementUnknown), 1);
        assert_eq!(count(ReviewKind::SettlementAmountDiffers), 1);
        assert_eq!(count(ReviewKind::RefundNotDebited), 1);
        assert_eq!(count(ReviewKind::PayoutTotalDiffers), 1);
        assert!(
            count(ReviewKind::UnsettledPayment) >= 2,
            "{:?}",
            settled.expected
        );
        // Every payout but one is its batch's net.
        let mut nets: BTreeMap<&str, i64> = BTreeMap::new();
        for line in &lines {
            *nets.entry(line.batch_id.as_str()).or_default() += line.net.minor_units();
        }
        let differing = payouts
            .iter()
            .filter(|p| nets[p.batch_id.as_str()] != p.amount.minor_units())
            .count();
        assert_eq!(differing, 1);
        // Fees are positive on every sale.
        assert!(
            lines
                .iter()
                .filter(|l| l.kind.as_str() == "sale")
                .all(|l| l.fee.is_positive())
        );
    }
}
