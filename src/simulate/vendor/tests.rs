//! The software vendor profile: determinism, a pinned digest, every body
//! within the daemon's layout and signature rules, expectations that add
//! up.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::domain::layout::Layout;
use crate::ipn::{FormBody, FormLimits, KeyRing, SignaturePolicy, verify};
use crate::simulate::{Profile, simulate};

const KEY: &str = "vendor-profile-test-key";

fn config(seed: u64, customers: usize) -> SimulationConfig {
    SimulationConfig {
        profile: Profile::SoftwareVendor,
        expected_fields: true,
        ..SimulationConfig::new(seed, customers)
    }
}

fn run(config: &SimulationConfig) -> Simulation {
    simulate(config, &SecretKey::new(KEY)).expect("simulation")
}

fn stream_digest(sim: &Simulation) -> String {
    let mut all = Vec::new();
    for delivery in &sim.deliveries {
        all.extend_from_slice(&delivery.body);
        all.push(b'\n');
    }
    crate::domain::BodyDigest::of(&all).to_string()
}

fn form(delivery: &Delivery) -> FormBody {
    FormBody::parse(&delivery.body, &FormLimits::default()).expect("well-formed body")
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let a = run(&config(7, 40));
    let b = run(&config(7, 40));
    assert_eq!(a.deliveries, b.deliveries);
    assert_eq!(a.vendor, b.vendor);
    let c = run(&config(8, 40));
    assert_ne!(a.deliveries, c.deliveries);
}

/// Pinned output of the vendor profile: change only on purpose.
#[test]
fn output_of_a_seed_is_pinned() {
    let sim = run(&config(1, 12));
    assert_eq!(stream_digest(&sim), PINNED_VENDOR_DIGEST);
}

const PINNED_VENDOR_DIGEST: &str =
    "5f008c17603cdf865462ddb4eea413de88f1d81deb5a5092c7ca9691cbcc33a0";

#[test]
fn every_body_verifies_and_is_laid_out_as_the_processor_lays_it_out() {
    let sim = run(&SimulationConfig {
        rates: crate::simulate::AnomalyRates::all(0.5),
        ..config(3, 80)
    });
    let ring = KeyRing::single(KEY);
    let policy = SignaturePolicy::default();
    assert!(sim.deliveries.iter().any(|d| d.notice == NoticeKind::Lcn));
    for delivery in &sim.deliveries {
        let form = form(delivery);
        assert_eq!(NoticeKind::of(&form), delivery.notice, "{delivery:?}");
        verify(&form, &ring, &policy).expect("verifies");
        let layout = match delivery.notice {
            NoticeKind::Ipn => Layout::ipn(),
            NoticeKind::Lcn => Layout::lcn(),
        };
        layout.check(&form).expect("within the layout");
        if delivery.notice == NoticeKind::Ipn {
            let refnoext = form.get("REFNOEXT").expect("REFNOEXT present");
            let refno = form.get("REFNO").expect("REFNO");
            let key = if refnoext.is_empty() { refno } else { refnoext };
            assert_eq!(key, delivery.order_ref);
        }
    }
}

#[test]
fn the_world_has_every_kind_of_notice_the_brief_asks_for() {
    let sim = run(&config(5, 200));
    let vendor = sim.vendor.as_ref().expect("vendor expectation");
    for (plan, _) in Plan::WEIGHTED {
        assert!(
            vendor.plans.get(plan.as_str()).copied().unwrap_or(0) > 0,
            "{plan:?}"
        );
    }
    let forms: Vec<FormBody> = sim.deliveries.iter().map(form).collect();
    let has = |name: &str, value: &str| forms.iter().any(|f| f.values(name).any(|v| v == value));
    assert!(has("REFNOEXT", ""), "hosted-cart orders");
    assert!(!sim.orders.is_empty(), "orders with a merchant reference");
    assert!(has("IPN_LICENSE_TYPE[]", "RENEWAL"));
    assert!(has("IPN_LICENSE_TYPE[]", "TRIAL"));
    assert!(has("IPN_LICENSE_LIFETIME[]", "YES"));
    assert!(has("STATUS", "PASTDUE"));
    assert!(has("STATUS", "EXPIRED"));
    assert!(has("STATUS", "CANCELED"));
    assert!(has("PAYOUT_CURRENCY", "USD"));
    assert!(
        forms
            .iter()
            .any(|f| f.get("PAYABLE_AMOUNT").is_some_and(|v| v.starts_with('-'))),
        "tiny orders pay out negative amounts"
    );
    assert!(
        forms.iter().any(|f| f
            .values("ORIGINAL_REFNOEXT[]")
            .any(|v| v.starts_with("WEB-"))),
        "renewals echo the first order's merchant reference"
    );
    assert!(sim.count(DeliveryKind::Retry) > 0 || sim.count(DeliveryKind::Duplicate) > 0);
}

#[test]
fn figures_add_up_and_subscriptions_follow_their_plans() {
    let sim = run(&config(11, 150));
    let vendor = sim.vendor.as_ref().expect("vendor expectation");
    // Σ of the orders' paid amounts per currency is the figure.
    let mut paid: BTreeMap<String, i64> = BTreeMap::new();
    for order in vendor.orders.values() {
        let minor = Money::parse_amount(&order.paid, order.currency)
            .expect("amount")
            .minor_units();
        *paid.entry(order.currency.as_str().to_owned()).or_default() += minor;
    }
    for (code, figures) in &vendor.figures {
        assert_eq!(paid.get(code), Some(&figures.paid), "{code}");
        assert!(figures.vat <= figures.paid);
        assert_eq!(figures.net_revenue(), figures.paid - figures.vat);
    }
    // Σ PAYABLE_AMOUNT of the COMPLETE notices is the payout figure.
    let mut payable = 0i64;
    let usd = Currency::iso("USD").unwrap();
    for d in sim
        .deliveries
        .iter()
        .filter(|d| d.kind == DeliveryKind::Genuine && d.order_status == "COMPLETE")
    {
        let form = form(d);
        payable += Money::parse_amount(form.get("PAYABLE_AMOUNT").unwrap(), usd)
            .unwrap()
            .minor_units();
    }
    assert_eq!(vendor.payouts.get("USD"), Some(&payable));
    assert_eq!(vendor.payments.len(), vendor.orders.len());
    // Every order of the CSV is an expected merchant order.
    for row in &sim.orders {
        assert_eq!(vendor.orders[&row.order_ref].origin, "merchant");
    }
    // Statuses: recurring subscriptions that stay active expire after the
    // base date; the others end with what their last LCN said.
    let base = sim.config.base_date;
    for (licence, sub) in &vendor.subscriptions {
        match sub.plan {
            Plan::Monthly | Plan::TrialConverted => {
                assert_eq!(sub.status, SubscriptionStatus::Active);
                assert!(
                    sub.expires_at.unwrap() > base + TimeDelta::days(19),
                    "{licence}"
                );
            }
            Plan::Annual => assert!(sub.expires_at.unwrap() > base),
            Plan::FailedRenewal | Plan::TrialLapsed => {
                assert_eq!(sub.status, SubscriptionStatus::Expired)
            }
            Plan::Canceled => assert_eq!(sub.status, SubscriptionStatus::Canceled),
            Plan::Lifetime => assert!(sub.lifetime && sub.expires_at.is_none()),
            Plan::OneOff => panic!("a one-off purchase is no subscription"),
        }
    }
    let due = vendor.renewals_due_from.expect("active subscriptions");
    assert!(due > base + TimeDelta::days(19));
    // LCNs counted once each.
    let genuine_lcns = sim
        .deliveries
        .iter()
        .filter(|d| d.notice == NoticeKind::Lcn && d.kind == DeliveryKind::Genuine)
        .count();
    assert_eq!(vendor.licence_notices, genuine_lcns);
    // IPN outcome counts: one applied per genuine, a duplicate per copy.
    let ipns = sim
        .deliveries
        .iter()
        .filter(|d| d.notice == NoticeKind::Ipn)
        .count();
    assert_eq!(sim.expected_outcomes.total(), ipns);
    let genuine_ipns = sim
        .deliveries
        .iter()
        .filter(|d| d.notice == NoticeKind::Ipn && d.kind == DeliveryKind::Genuine)
        .count();
    assert_eq!(sim.expected_outcomes.applied, genuine_ipns);
}

#[test]
fn no_copy_of_a_payment_notice_follows_a_cancellation() {
    let sim = run(&SimulationConfig {
        rates: crate::simulate::AnomalyRates::all(0.6),
        ..config(9, 150)
    });
    let mut canceled: BTreeSet<String> = BTreeSet::new();
    let mut licence_of_order: BTreeMap<String, String> = BTreeMap::new();
    for d in &sim.deliveries {
        let form = form(d);
        match d.notice {
            NoticeKind::Lcn => {
                if d.order_status == "CANCELED" {
                    canceled.insert(form.get("LICENSE_CODE").unwrap().to_owned());
                }
            }
            NoticeKind::Ipn => {
                let licence = form
                    .values("IPN_LICENSE_REF[]")
                    .find(|v| !v.is_empty())
                    .map(str::to_owned);
                if let Some(licence) = licence {
                    licence_of_order.insert(d.order_ref.clone(), licence.clone());
                    assert!(!canceled.contains(&licence), "{d:?} after its cancellation");
                }
            }
        }
    }
}
