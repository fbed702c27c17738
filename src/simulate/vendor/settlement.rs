//! The software vendor's settlement, as the processor writes it for a
//! merchant it pays out in USD (`PAYOUT_CURRENCY`): `settlement.csv` with
//! one `sale` line per captured payment, in USD whatever the order
//! currency, and `payouts.csv` with one transfer per monthly batch.
//!
//! A line's gross is the sale's net of VAT at the market rate, the way
//! the processor's own WHMCS module computes it (`Σ IPN_PRICE[] × FX_RATE
//! × 100 / (100 − FX_MARKUP)`, [`money::gross_in_payout_cents`]), its fee
//! that gross less `PAYABLE_AMOUNT` (the commission and the FX markup),
//! so its net is the notice's `PAYABLE_AMOUNT` exactly: the daemon
//! matches a line in the payout currency through that payout amount
//! (docs/finance.md, "Settlement in the payout currency"). A trial's
//! payable amount is negative, and so is its line's net. The merchant of
//! record keeps the VAT: no line carries it.
//!
//! The vendor's world has no refunds and no chargebacks, so it has no
//! such lines; and no planted difference: the default profile plants
//! them (`simulate::settlement`), here every line must match and every
//! payout add up, so that the settled payout is `Σ PAYABLE_AMOUNT`.
//!
//! Computed from the plans' own figures ([`VendorPayment`]), never from
//! the daemon. Pure: the same expectation gives the same files.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeDelta};

use super::{VendorExpectation, VendorPayment, money};
use crate::domain::{Currency, Money};
use crate::simulate::settlement::{SimulatedLine, SimulatedPayout, SimulatedSettlement};

/// Days between a payment's completion and its settlement line.
const SETTLEMENT_DELAY_DAYS: i64 = 2;

/// The batch a line settled at `at` belongs to: one per calendar month,
/// paid out once.
fn batch_id(at: NaiveDateTime, payout: Currency) -> String {
    format!("SIMV-{}-{}", at.format("%Y%m"), payout.as_str())
}

/// The first day of the month after `at`'s: when a monthly batch is paid
/// (`at`'s own day past the calendar's end, which no simulated date is).
fn next_month(at: NaiveDateTime) -> NaiveDate {
    let (year, month) = if at.month() == 12 {
        (at.year() + 1, 1)
    } else {
        (at.year(), at.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(at.date())
}

/// The sale line of one payment, in its payout currency.
pub fn sale_line(payment: &VendorPayment) -> SimulatedLine {
    let payout = payment.payout;
    let gross = money::gross_in_payout_cents(payment.net, payment.currency);
    let settled_at = payment.completed_at + TimeDelta::days(SETTLEMENT_DELAY_DAYS);
    SimulatedLine {
        batch_id: batch_id(settled_at, payout),
        processor_ref: payment.processor_ref.clone(),
        order_ref: payment.merchant_ref.clone().unwrap_or_default(),
        kind: "sale",
        gross: Money::from_minor(gross, payout),
        fee: Money::from_minor(gross - payment.payable, payout),
        settled_at,
    }
}

/// The vendor's settlement and payouts (see the module docs). `expected`
/// of the result is empty: nothing is planted.
pub fn settlement(expected: &VendorExpectation) -> SimulatedSettlement {
    let mut out = SimulatedSettlement {
        lines: expected.payments.iter().map(sale_line).collect(),
        ..SimulatedSettlement::default()
    };
    out.lines.sort_by(|a, b| {
        (&a.batch_id, a.settled_at, &a.processor_ref).cmp(&(
            &b.batch_id,
            b.settled_at,
            &b.processor_ref,
        ))
    });
    // One transfer per batch: the sum of its nets.
    let mut batches: BTreeMap<&str, (i64, Currency, NaiveDateTime)> = BTreeMap::new();
    for line in &out.lines {
        let entry = batches.entry(line.batch_id.as_str()).or_insert((
            0,
            line.gross.currency(),
            line.settled_at,
        ));
        entry.0 += line.net().minor_units();
    }
    for (batch_id, (net, currency, settled_at)) in batches {
        out.payouts.push(SimulatedPayout {
            batch_id: batch_id.to_owned(),
            paid_on: next_month(settled_at),
            amount: Money::from_minor(net, currency),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::domain::Currencies;
    use crate::domain::settlement::{Mapping, parse_payouts, parse_settlement};
    use crate::ipn::SecretKey;
    use crate::simulate::settlement::{write_payouts_csv, write_settlement_csv};
    use crate::simulate::{Profile, SimulationConfig, simulate};

    fn expectation(seed: u64, customers: usize) -> VendorExpectation {
        let config = SimulationConfig {
            profile: Profile::SoftwareVendor,
            expected_fields: true,
            ..SimulationConfig::new(seed, customers)
        };
        simulate(&config, &SecretKey::new("vendor-settlement-test"))
            .expect("simulates")
            .vendor
            .expect("vendor expectation")
    }

    /// The files as the daemon's parser reads them back.
    fn parsed(
        settled: &SimulatedSettlement,
    ) -> (
        Vec<crate::domain::settlement::SettlementLine>,
        Vec<crate::domain::settlement::Payout>,
    ) {
        let mut text = Vec::new();
        write_settlement_csv(settled, &mut text).expect("csv");
        let lines = parse_settlement(text.as_slice(), &Mapping::default(), &Currencies::iso())
            .expect("the settlement parses");
        let mut text = Vec::new();
        write_payouts_csv(settled, &mut text).expect("csv");
        let payouts = parse_payouts(text.as_slice(), &Currencies::iso()).expect("payouts parse");
        (lines, payouts)
    }

    #[test]
    fn every_payment_has_exactly_one_sale_line_whose_net_is_its_payable_amount() {
        let expected = expectation(11, 150);
        let settled = settlement(&expected);
        assert_eq!(settled, settlement(&expected), "deterministic");
        assert!(settled.expected.is_empty(), "nothing planted");
        let (lines, _) = parsed(&settled);
        assert_eq!(lines.len(), expected.payments.len());
        let mut by_refno: BTreeMap<&str, Vec<&crate::domain::settlement::SettlementLine>> =
            BTreeMap::new();
        for line in &lines {
            assert_eq!(line.kind.as_str(), "sale");
            assert_eq!(line.currency().as_str(), "USD", "{line:?}");
            assert_eq!(
                line.gross.minor_units() - line.fee.minor_units(),
                line.net.minor_units()
            );
            by_refno
                .entry(line.processor_ref.as_deref().expect("REFNO"))
                .or_default()
                .push(line);
        }
        let refnos: BTreeSet<&str> = expected
            .payments
            .iter()
            .map(|p| p.processor_ref.as_str())
            .collect();
        assert_eq!(refnos.len(), expected.payments.len(), "REFNOs are distinct");
        for payment in &expected.payments {
            let found = &by_refno[payment.processor_ref.as_str()];
            assert_eq!(found.len(), 1, "{payment:?}");
            let line = found[0];
            assert_eq!(line.net.minor_units(), payment.payable, "{payment:?}");
            assert_eq!(line.order_ref, payment.merchant_ref, "{payment:?}");
            // A USD order is settled in its own currency: the daemon then
            // compares the gross with the paid amount (no VAT on USD
            // sales here) and the fee with the rounded commission.
            if payment.currency.as_str() == "USD" {
                assert_eq!(line.gross.minor_units(), payment.net, "{payment:?}");
                assert_eq!(line.fee.minor_units(), payment.commission, "{payment:?}");
            } else {
                assert!(line.fee.is_positive(), "{payment:?}");
            }
        }
        assert!(
            lines.iter().any(|l| l.net.minor_units() < 0),
            "a trial's payout is negative"
        );
        assert!(
            expected
                .payments
                .iter()
                .any(|p| p.currency.as_str() != "USD"),
            "orders in other currencies are paid out in USD"
        );
    }

    #[test]
    fn the_lines_sum_to_the_payouts_and_the_payouts_to_the_payable_amounts() {
        for (seed, customers) in [(1, 12), (5, 200), (2026, 150)] {
            let expected = expectation(seed, customers);
            let settled = settlement(&expected);
            let (lines, payouts) = parsed(&settled);
            let mut nets: BTreeMap<&str, i64> = BTreeMap::new();
            for line in &lines {
                *nets.entry(line.batch_id.as_str()).or_default() += line.net.minor_units();
            }
            assert_eq!(payouts.len(), nets.len(), "one payout per batch");
            for payout in &payouts {
                assert_eq!(
                    Some(&payout.amount.minor_units()),
                    nets.get(payout.batch_id.as_str()),
                    "{payout:?}"
                );
                assert_eq!(payout.amount.currency().as_str(), "USD");
                assert!(
                    payout.paid_on.and_hms_opt(0, 0, 0).expect("midnight")
                        > lines
                            .iter()
                            .filter(|l| l.batch_id == payout.batch_id)
                            .map(|l| l.settled_at.naive_utc())
                            .max()
                            .expect("lines")
                );
            }
            let paid_out: i64 = payouts.iter().map(|p| p.amount.minor_units()).sum();
            assert_eq!(Some(&paid_out), expected.payouts.get("USD"), "seed {seed}");
        }
    }

    /// Pinned bytes of the vendor's settlement and payout files (the
    /// vendor profile's stream digest, in `vendor::tests`, covers the
    /// bodies only): change only on purpose.
    #[test]
    fn the_files_of_a_seed_are_pinned() {
        let settled = settlement(&expectation(1, 12));
        let mut bytes = Vec::new();
        write_settlement_csv(&settled, &mut bytes).expect("csv");
        write_payouts_csv(&settled, &mut bytes).expect("csv");
        assert_eq!(
            crate::domain::BodyDigest::of(&bytes).to_string(),
            PINNED_SETTLEMENT_DIGEST,
            "{}",
            String::from_utf8_lossy(&bytes)
        );
    }

    const PINNED_SETTLEMENT_DIGEST: &str =
        "d34a7115253d2108dcb5661cba0c6d908af7be5dbcd4b529e86e51a1e85a7941";
}
