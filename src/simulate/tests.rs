//! Unit and property tests of the simulator. The replay against the real
//! database is `tests/simulate_replay.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;

use super::*;
use crate::domain::{
    EventIdentity, OrderFacts, PROCESSOR_RETRY_HORIZON_HOURS, PaymentEvent, ReconcilePolicy,
    StatusCategory, contains_pan, decide, find_pan_fields, tokenize,
};
use crate::ipn::{FormBody, FormLimits, KeyRing, SignaturePolicy, VerifyError, parse_and_verify};
use crate::store::orders::parse_orders_csv;

/// The fields the reconciler expects when `expected_fields` is on, as the
/// demo configures it.
const EXPECTED_FIELDS: [&str; 2] = ["TEST_ORDER", "FRAUD_STATUS"];

const KEY: &[u8] = b"simulator-unit-test-key";

fn key() -> SecretKey {
    SecretKey::new(KEY)
}

fn ring() -> KeyRing {
    KeyRing::single(KEY)
}

fn run(config: &SimulationConfig) -> Simulation {
    simulate(config, &key()).expect("simulation")
}

/// A config with expected fields checked, as the demo runs (the tests that
/// need them off say so).
fn config(seed: u64, orders: usize, rates: AnomalyRates) -> SimulationConfig {
    SimulationConfig {
        rates,
        expected_fields: true,
        ..SimulationConfig::new(seed, orders)
    }
}

/// Whether a double charge is in the story: paid twice.
fn double_charge(story: Story) -> bool {
    matches!(story, Story::DoubleChargeRefunded | Story::DoubleChargeOpen)
}

fn parse(delivery: &Delivery) -> FormBody {
    FormBody::parse(&delivery.body, &FormLimits::default()).expect("well-formed body")
}

/// Every check that must hold for any simulation.
fn check_simulation(sim: &Simulation) -> Result<(), TestCaseError> {
    let ring = ring();
    let policy = SignaturePolicy::default();
    let limits = FormLimits::default();
    let known: HashSet<&str> = sim.orders.iter().map(|o| o.order_ref.as_str()).collect();
    let amounts: HashMap<&str, Money> = sim
        .orders
        .iter()
        .map(|o| (o.order_ref.as_str(), o.amount))
        .collect();
    prop_assert_eq!(known.len(), sim.orders.len(), "order refs are unique");
    prop_assert_eq!(
        sim.expected
            .keys()
            .map(String::as_str)
            .collect::<HashSet<_>>(),
        known.clone()
    );
    for orphan in sim.expected_orphans.keys() {
        prop_assert!(!known.contains(orphan.as_str()), "{orphan} is in the CSV");
    }

    let mut genuine_digests = HashSet::new();
    // REFNO -> the order it belongs to: an order may have several (a
    // double charge, a foreign reversal), a REFNO belongs to one order.
    let mut refno_owner: HashMap<String, String> = HashMap::new();
    // (order, notification) -> identity, and back: every copy has its
    // genuine delivery's identity, and notifications have distinct ones.
    let mut identities: HashMap<(String, usize), EventIdentity> = HashMap::new();
    let mut kinds = BTreeMap::new();
    for (i, delivery) in sim.deliveries.iter().enumerate() {
        prop_assert_eq!(delivery.sequence, i + 1);
        *kinds.entry(delivery.kind).or_insert(0usize) += 1;
        prop_assert_eq!(
            delivery.known_order,
            known.contains(delivery.order_ref.as_str())
        );
        if !delivery.known_order {
            prop_assert!(
                matches!(
                    delivery.kind,
                    DeliveryKind::Genuine | DeliveryKind::Duplicate | DeliveryKind::Tampered
                ),
                "unknown orders get no other copies: {:?}",
                delivery
            );
        }
        let form = parse(delivery);
        let identity = EventIdentity::of(&form).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let key = (delivery.order_ref.clone(), delivery.notification);
        if delivery.kind != DeliveryKind::Tampered {
            let known_identity = identities.entry(key).or_insert_with(|| identity.clone());
            prop_assert_eq!(
                &*known_identity,
                &identity,
                "a copy has its notification's identity: {:?}",
                delivery
            );
        }
        let verified = parse_and_verify(&delivery.body, &limits, &ring, &policy);
        match delivery.kind {
            DeliveryKind::Tampered => {
                prop_assert!(
                    matches!(verified, Err(VerifyError::Mismatch(_))),
                    "tampered body verified: {:?}",
                    delivery
                );
                continue;
            }
            DeliveryKind::Unsigned => {
                prop_assert!(
                    matches!(verified, Err(VerifyError::Unsigned)),
                    "unsigned body: {:?}",
                    delivery
                );
                prop_assert!(!delivery.has_pan && find_pan_fields(&form).is_empty());
                continue;
            }
            _ => {}
        }
        let (form, verified) = verified.map_err(|err| TestCaseError::fail(err.to_string()))?;
        // The strongest signature present decides (docs/protocol.md §10).
        let algorithm = verified.algorithm;
        match delivery.kind {
            DeliveryKind::Stripped => prop_assert_eq!(algorithm, crate::ipn::Algorithm::Sha256),
            DeliveryKind::SecondUrl => {}
            _ => prop_assert_eq!(algorithm, crate::ipn::Algorithm::Sha3_256),
        }
        let digest = crate::domain::BodyDigest::of(&delivery.body).to_string();
        match delivery.kind {
            DeliveryKind::Genuine => {
                prop_assert!(
                    genuine_digests.insert(digest),
                    "two genuine bodies are equal"
                )
            }
            DeliveryKind::Duplicate => prop_assert!(
                genuine_digests.contains(&digest),
                "a duplicate must repeat an earlier genuine body"
            ),
            _ => {}
        }
        // Expected fields under their own names, but in the renamed copy.
        let missing = EXPECTED_FIELDS
            .iter()
            .filter(|name| form.get(name).is_none())
            .count();
        prop_assert_eq!(
            missing,
            usize::from(delivery.kind == DeliveryKind::Renamed),
            "{:?}",
            delivery
        );
        if delivery.kind == DeliveryKind::Renamed {
            prop_assert!(sim.config.expected_fields);
        }
        // Card numbers only where the simulator hid them.
        let pan_fields = find_pan_fields(&form);
        if delivery.has_pan {
            prop_assert_eq!(pan_fields.len(), 1, "{:?}", pan_fields);
            prop_assert!(
                ["IPN_INFO[]", "SHOPPER_REFERENCE_NUMBER"].contains(&pan_fields[0].as_str())
            );
        } else {
            prop_assert!(
                pan_fields.is_empty(),
                "unexpected card number in {:?}",
                pan_fields
            );
        }
        // The allow-listed fields parse (docs/protocol.md §10 conventions),
        // in the processor's layout but in the swapped copy.
        let tokenized = tokenize(&delivery.body, &form, &verified, &Currencies::iso(), None);
        if delivery.kind == DeliveryKind::Swapped {
            prop_assert!(
                matches!(
                    tokenized,
                    Err(crate::domain::TokenizeError::Layout(
                        crate::domain::LayoutError::OutOfOrder { .. }
                    ))
                ),
                "{:?}",
                tokenized
            );
            continue;
        }
        let event = tokenized.map_err(|err| TestCaseError::fail(err.to_string()))?;
        prop_assert_eq!(&event.identity, &identity);
        prop_assert_eq!(event.merchant_ref.as_ref(), Some(&delivery.order_ref));
        prop_assert_eq!(event.status.as_str(), delivery.order_status);
        prop_assert_eq!(event.test_order, delivery.test_order);
        prop_assert!(event.ipn_date.is_some());
        let owner = refno_owner
            .entry(event.processor_ref.clone())
            .or_insert_with(|| delivery.order_ref.clone());
        prop_assert_eq!(&*owner, &delivery.order_ref, "a REFNO of two orders");
        // Refunds and reversals are negative, everything else positive.
        let negative = matches!(delivery.order_status, "REFUND" | "REVERSED");
        prop_assert_eq!(
            event.amount.is_negative(),
            negative,
            "{}",
            delivery.order_status
        );
        prop_assert_eq!(
            event.amount.minor_units() == 0,
            delivery.kind == DeliveryKind::Swapped,
            "{:?}",
            delivery
        );
        if let Some(order) = amounts.get(delivery.order_ref.as_str()) {
            prop_assert_eq!(event.amount.currency(), order.currency());
        }
    }
    let distinct_identities: HashSet<&EventIdentity> = identities.values().collect();
    prop_assert_eq!(
        distinct_identities.len(),
        identities.len(),
        "two notifications share an identity"
    );
    for (order_ref, expected) in &sim.expected {
        if let Some(refno) = &expected.processor_ref {
            prop_assert_eq!(refno_owner.get(refno), Some(order_ref));
        }
    }

    // IPN_DATE increases along each story: strictly in delivery order for
    // orders delivered in order, and distinct for the others.
    let mut dates: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for delivery in sim
        .deliveries
        .iter()
        .filter(|d| d.kind == DeliveryKind::Genuine)
    {
        let form = parse(delivery);
        dates
            .entry(delivery.order_ref.as_str())
            .or_default()
            .push(form.get("IPN_DATE").unwrap_or_default().to_owned());
    }
    for (order_ref, list) in &dates {
        let shuffled = sim
            .expected
            .get(*order_ref)
            .map(|e| e.anomalies.contains(&Anomaly::OutOfOrder))
            .or_else(|| {
                sim.expected_orphans
                    .get(*order_ref)
                    .map(|e| e.anomalies.contains(&Anomaly::OutOfOrder))
            })
            .unwrap_or(false);
        let mut sorted = list.clone();
        sorted.sort();
        sorted.dedup();
        prop_assert_eq!(sorted.len(), list.len(), "{} IPN_DATEs repeat", order_ref);
        if !shuffled {
            prop_assert_eq!(&sorted, list, "{} delivered out of order", order_ref);
        }
    }

    // Expectations agree with their stories and with each other.
    for (order_ref, expected) in &sim.expected {
        let amount = amounts[order_ref.as_str()];
        let parse_money = |text: &str| Money::parse_amount(text, amount.currency());
        let paid = parse_money(&expected.paid).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let refunded =
            parse_money(&expected.refunded).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let charges = if double_charge(expected.story) { 2 } else { 1 };
        let charged = Money::from_minor(amount.minor_units() * charges, amount.currency());
        prop_assert!(paid.minor_units() == 0 || paid == charged, "{order_ref}");
        let has = |kind| expected.review_kinds.contains(&kind);
        match expected.status {
            OrderState::Paid if expected.story == Story::DoubleChargeRefunded => {
                prop_assert!(paid == charged && refunded == amount)
            }
            OrderState::Paid => prop_assert!(paid == charged && refunded.minor_units() == 0),
            OrderState::PartiallyRefunded => prop_assert!(
                paid == amount
                    && refunded.is_positive()
                    && refunded.minor_units() < paid.minor_units()
            ),
            OrderState::Refunded => prop_assert!(paid == amount && refunded == paid),
            OrderState::Reversed => {
                // A chargeback keeps the payment and asks a human to look.
                prop_assert_eq!(paid.is_positive(), has(ReviewKind::ReversedAfterPayment));
                prop_assert_eq!(refunded.minor_units(), 0);
            }
            OrderState::Mismatch => {
                prop_assert!(paid.minor_units() == 0 && has(ReviewKind::AmountMismatch))
            }
            OrderState::Suspect => {
                prop_assert!(paid.minor_units() == 0 && has(ReviewKind::Suspect))
            }
            OrderState::Canceled | OrderState::Pending | OrderState::Authorized => {
                prop_assert!(paid.minor_units() == 0 && refunded.minor_units() == 0)
            }
        }
        prop_assert_eq!(
            expected.review_kinds.contains(&ReviewKind::PanDetected),
            expected.anomalies.contains(&Anomaly::PanInFreeText)
        );
        // The simulator's notices carry MESSAGE_ID: a repeat is never a
        // possible second event.
        prop_assert!(!has(ReviewKind::PossibleSecondEvent));
        prop_assert!(!has(ReviewKind::LateRepeat));
        prop_assert_eq!(
            has(ReviewKind::DuplicatePayment),
            expected.story == Story::DoubleChargeOpen
        );
        prop_assert_eq!(
            has(ReviewKind::UnmatchedReversal),
            expected.story == Story::ForeignReversal
        );
        // A swapped copy is refused: no copy is counted with another
        // meaning.
        prop_assert!(!has(ReviewKind::ConflictingCopy));
        prop_assert_eq!(
            expected.processor_ref.is_none(),
            expected.story == Story::TestOrder
        );
        let mut sorted = expected.review_kinds.clone();
        sort_kinds(&mut sorted);
        prop_assert_eq!(&sorted, &expected.review_kinds);
    }

    // Every delivery is counted once in the expected outcomes, and per
    // notification of a known order exactly one accepted delivery counts.
    let outcomes = &sim.expected_outcomes;
    let count = |kind| kinds.get(&kind).copied().unwrap_or(0);
    prop_assert_eq!(outcomes.total(), sim.deliveries.len());
    prop_assert_eq!(
        outcomes.invalid_signature,
        count(DeliveryKind::Tampered) + count(DeliveryKind::Unsigned)
    );
    prop_assert_eq!(
        outcomes.malformed,
        count(DeliveryKind::Renamed) + count(DeliveryKind::Swapped)
    );
    let orphan_not_tampered = sim
        .deliveries
        .iter()
        .filter(|d| !d.known_order && d.kind != DeliveryKind::Tampered)
        .count();
    prop_assert_eq!(outcomes.order_not_found, orphan_not_tampered);
    let accepted: Vec<&Delivery> = sim
        .deliveries
        .iter()
        .filter(|d| d.known_order && d.kind.carries_its_notification())
        .collect();
    let notifications: HashSet<(&str, usize)> = accepted
        .iter()
        .map(|d| (d.order_ref.as_str(), d.notification))
        .collect();
    prop_assert_eq!(
        outcomes.applied + outcomes.ignored + outcomes.mismatch,
        notifications.len()
    );
    prop_assert_eq!(outcomes.duplicate, accepted.len() - notifications.len());
    Ok(())
}

#[test]
fn same_seed_same_bytes_and_different_seeds_differ() {
    let config = config(7, 40, AnomalyRates::all(0.3));
    let a = run(&config);
    let b = run(&config);
    assert_eq!(a.deliveries, b.deliveries);
    assert_eq!(a.orders, b.orders);
    assert_eq!(a.expected, b.expected);
    assert_eq!(a.expected_orphans, b.expected_orphans);
    assert_eq!(a.expected_outcomes, b.expected_outcomes);

    let c = run(&SimulationConfig { seed: 8, ..config });
    assert_ne!(a.deliveries, c.deliveries);
    let refs_a: Vec<_> = a.orders.iter().map(|o| &o.order_ref).collect();
    let refs_c: Vec<_> = c.orders.iter().map(|o| &o.order_ref).collect();
    assert_ne!(refs_a, refs_c, "the seed tag keeps runs' references apart");
}

fn stream_digest(sim: &Simulation) -> String {
    let mut all = Vec::new();
    for delivery in &sim.deliveries {
        all.extend_from_slice(&delivery.body);
        all.push(b'\n');
    }
    crate::domain::BodyDigest::of(&all).to_string()
}

/// The anomalies the simulator had before the processor's habits and the
/// payment stories, at `rate`; the newer ones off.
fn first_anomalies(rate: f64) -> AnomalyRates {
    AnomalyRates {
        duplicates: rate,
        out_of_order: rate,
        tampered: rate,
        amount_mismatch: rate,
        unknown_orders: rate,
        pan_in_free_text: rate,
        ..AnomalyRates::NONE
    }
}

/// Pinned output: if a digest changes, `--seed 1` means something else
/// than before, and every recorded run or bug report with a seed is lost.
/// Change it only on purpose (and say so in the changelog).
///
/// The first digest predates the processor's habits and the payment
/// stories: with them off, seed 1 gives the very bytes it gave before they
/// existed (they draw from streams of their own).
#[test]
fn output_of_a_seed_is_pinned() {
    let before = run(&SimulationConfig {
        expected_fields: false,
        ..config(1, 5, first_anomalies(0.5))
    });
    assert_eq!(
        stream_digest(&before),
        PINNED_DIGEST,
        "the output of seed 1 changed"
    );
    let all = run(&config(1, 5, AnomalyRates::all(0.5)));
    assert_eq!(
        stream_digest(&all),
        PINNED_DIGEST_ALL,
        "the output of seed 1 with every anomaly changed"
    );
}

// Changed on purpose with issue 21 (names are bound): the bodies now lay
// out their fields exactly as the processor does (COMPLETE_DATE after
// IPCOUNTRY, the line totals after MESSAGE_TYPE, IPN_TOTALGENERAL before
// IPN_SHIPPING and IPN_COMMISSION, the refund and chargeback fields always
// there and before TEST_ORDER, IPN_ORDER_ORIGIN after it), which the
// reconciler now holds every body to; and again when the commission
// became the settlement's fee with a fourth decimal (money in the notice).
// The draws are unchanged.
const PINNED_DIGEST: &str = "a9928db072c4d00998da5a9915ee6cff324868432ca88622fa12fdd977286c1f";
const PINNED_DIGEST_ALL: &str = "ddc319278fdea6b402db4216bef6e0ffaac88839fd7def506cc8d5f46a427ab0";

#[test]
fn the_first_orders_do_not_depend_on_how_many_follow() {
    let rates = AnomalyRates::NONE;
    let small = run(&config(3, 10, rates));
    let large = run(&config(3, 30, rates));
    assert_eq!(small.orders[..], large.orders[..10]);
    for (order_ref, expected) in &small.expected {
        assert_eq!(Some(expected), large.expected.get(order_ref));
    }
}

#[test]
fn a_full_simulation_with_every_anomaly_is_consistent() {
    let sim = run(&config(11, 150, AnomalyRates::default()));
    check_simulation(&sim).unwrap();
    let all = run(&config(12, 60, AnomalyRates::all(1.0)));
    check_simulation(&all).unwrap();
}

#[test]
fn every_anomaly_and_story_appears_at_high_rates() {
    let sim = run(&SimulationConfig {
        test_orders: 0.1,
        ..config(5, 300, AnomalyRates::all(0.2))
    });
    let stories: HashSet<Story> = sim.expected.values().map(|e| e.story).collect();
    for story in Story::ALL {
        assert!(stories.contains(&story), "no {story} order");
    }
    let anomalies: HashSet<Anomaly> = sim
        .expected
        .values()
        .flat_map(|e| e.anomalies.iter().copied())
        .collect();
    assert_eq!(anomalies.len(), Anomaly::ALL.len(), "{anomalies:?}");
    assert!(!sim.expected_orphans.is_empty());
    for kind in DeliveryKind::ALL {
        assert!(sim.count(kind) > 0, "no {kind} delivery");
    }
    let kinds: HashSet<ReviewKind> = sim
        .expected
        .values()
        .flat_map(|e| e.review_kinds.iter().copied())
        .collect();
    for kind in [ReviewKind::DuplicatePayment, ReviewKind::UnmatchedReversal] {
        assert!(kinds.contains(&kind), "no {kind} expected");
    }
    let currencies: HashSet<String> = sim
        .orders
        .iter()
        .map(|o| o.amount.currency().as_str().to_owned())
        .collect();
    for code in ["EUR", "USD", "JPY", "BHD"] {
        assert!(currencies.contains(code), "no {code} order");
    }
    // UTF-8 personal data, as the byte-length pitfall of docs/protocol.md §3 needs.
    assert!(sim.personal_data.iter().any(|v| !v.is_ascii()));
}

#[test]
fn no_anomaly_means_a_clean_stream() {
    let sim = run(&SimulationConfig {
        test_orders: 0.0,
        ..config(9, 80, AnomalyRates::NONE)
    });
    assert_eq!(sim.count(DeliveryKind::Genuine), sim.deliveries.len());
    assert!(sim.expected_orphans.is_empty());
    assert!(sim.deliveries.iter().all(|d| !d.has_pan && !d.test_order));
    assert!(
        sim.expected.values().all(|e| e.anomalies.is_empty()
            && Story::ORDINARY.iter().any(|(story, _)| *story == e.story))
    );
    check_simulation(&sim).unwrap();
}

#[test]
fn rates_must_be_probabilities() {
    for bad in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
        let mut rates = AnomalyRates::NONE;
        rates.tampered = bad;
        let err = simulate(&config(1, 1, rates), &key()).unwrap_err();
        assert!(
            matches!(
                err,
                SimulationError::InvalidRate {
                    name: "tampered",
                    ..
                }
            ),
            "{err}"
        );
        let err = simulate(
            &SimulationConfig {
                test_orders: bad,
                ..config(1, 1, AnomalyRates::NONE)
            },
            &key(),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            SimulationError::InvalidRate {
                name: "test-orders",
                ..
            }
        ));
    }
    let too_many = config(1, SimulationConfig::MAX_ORDERS + 1, AnomalyRates::NONE);
    assert!(matches!(
        simulate(&too_many, &key()),
        Err(SimulationError::TooManyOrders { .. })
    ));
    assert!(CurrencyWeight::parse_mix("EUR=0", &Currencies::iso()).is_err());
    assert!(CurrencyWeight::parse_mix("EURO=1", &Currencies::iso()).is_err());
    assert!(CurrencyWeight::parse_mix("EUR=1,EUR=2", &Currencies::iso()).is_err());
    let mix = CurrencyWeight::parse_mix("jpy=2, BHD", &Currencies::iso()).unwrap();
    assert_eq!(mix[0].currency.as_str(), "JPY");
    assert_eq!(mix[1].weight, 1);
}

#[test]
fn orders_csv_round_trips_through_the_importer() {
    let sim = run(&config(21, 120, AnomalyRates::default()));
    let mut csv = Vec::new();
    write_orders_csv(&sim.orders, &mut csv).unwrap();
    let text = String::from_utf8(csv.clone()).unwrap();
    assert!(text.starts_with("order_ref,amount,currency,created_at\n"));
    let parsed = parse_orders_csv(csv.as_slice(), &Currencies::iso()).unwrap();
    assert_eq!(parsed, sim.orders);
    // Exponents survive: JPY without decimals, BHD with three.
    for order in &parsed {
        let amount = order.amount.format_amount();
        match order.amount.currency().as_str() {
            "JPY" => assert!(!amount.contains('.'), "{amount}"),
            "BHD" => assert_eq!(amount.split('.').nth(1).map(str::len), Some(3)),
            _ => assert_eq!(amount.split('.').nth(1).map(str::len), Some(2)),
        }
    }
}

#[test]
fn an_allowed_currency_is_simulated_with_the_exponent_of_the_table() {
    let code = crate::domain::CurrencyCode::parse("ZZB").unwrap();
    let table = Currencies::new(&[(code, 3)]).unwrap();
    let sim = run(&SimulationConfig {
        currencies: CurrencyWeight::parse_mix("ZZB", &table).unwrap(),
        ..config(8, 20, AnomalyRates::NONE)
    });
    let mut csv = Vec::new();
    write_orders_csv(&sim.orders, &mut csv).unwrap();
    let parsed = parse_orders_csv(csv.as_slice(), &table).unwrap();
    assert_eq!(parsed, sim.orders);
    for order in &parsed {
        assert_eq!(order.amount.currency().exponent(), 3);
        let amount = order.amount.format_amount();
        assert_eq!(amount.split('.').nth(1).map(str::len), Some(3), "{amount}");
    }
    // The notifications read back with the table: payments of exactly
    // their order's amount among them.
    let amounts: HashMap<&str, Money> = sim
        .orders
        .iter()
        .map(|o| (o.order_ref.as_str(), o.amount))
        .collect();
    let mut exact = 0;
    for delivery in &sim.deliveries {
        let form = parse(delivery);
        let Ok(verified) = crate::ipn::verify(&form, &ring(), &SignaturePolicy::default()) else {
            continue;
        };
        let event = tokenize(&delivery.body, &form, &verified, &table, None).unwrap();
        assert_eq!(event.amount.currency(), table.currency("ZZB").unwrap());
        if amounts.get(event.merchant_ref.as_deref().unwrap_or_default()) == Some(&event.amount) {
            exact += 1;
        }
    }
    assert!(exact > 0, "no notification of an order's exact amount");
}

#[test]
fn expected_json_has_decimal_strings_and_kinds() {
    let sim = run(&config(4, 30, AnomalyRates::all(0.5)));
    let mut out = Vec::new();
    write_expected_json(&sim.expected, &mut out).unwrap();
    let json: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&out).unwrap();
    assert_eq!(json.len(), sim.expected.len());
    for (order_ref, expected) in &sim.expected {
        let entry = &json[order_ref];
        assert_eq!(entry["status"], expected.status.as_str());
        assert_eq!(entry["paid"], expected.paid.as_str());
        assert_eq!(entry["refunded"], expected.refunded.as_str());
        let kinds: Vec<&str> = expected.review_kinds.iter().map(|k| k.as_str()).collect();
        assert_eq!(entry["review_kinds"], serde_json::json!(kinds));
    }
}

#[test]
fn write_all_lays_out_the_directory_and_refuses_to_mix_runs() {
    let sim = run(&config(6, 25, AnomalyRates::all(0.4)));
    let dir = tempfile::tempdir().unwrap();
    let mut written = 0;
    let paths = write_all(&sim, dir.path(), false, |_| written += 1).unwrap();
    assert_eq!(written, sim.deliveries.len());
    let mut names: Vec<String> = std::fs::read_dir(&paths.bodies_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let expected: Vec<String> = sim.deliveries.iter().map(Delivery::file_name).collect();
    assert_eq!(names, expected, "sorted names are the delivery order");
    for delivery in &sim.deliveries {
        let body = std::fs::read(paths.bodies_dir.join(delivery.file_name())).unwrap();
        assert_eq!(body, delivery.body);
    }
    assert!(names[0].starts_with("00001-SHOP-"));
    let csv = std::fs::read(&paths.orders_csv).unwrap();
    assert_eq!(
        parse_orders_csv(csv.as_slice(), &Currencies::iso()).unwrap(),
        sim.orders
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&paths.manifest_json).unwrap()).unwrap();
    assert_eq!(manifest["seed"], 6);
    assert_eq!(
        manifest["expected_outcomes"]["invalid_signature"],
        sim.expected_outcomes.invalid_signature
    );

    let again = write_all(&sim, dir.path(), false, |_| {});
    assert!(matches!(again, Err(WriteError::NotEmpty(_))));
    write_all(&sim, dir.path(), true, |_| {}).unwrap();
}

#[test]
fn file_names_cannot_leave_their_directory() {
    let name = body_file_name(7, "../etc/passwd", DeliveryKind::Tampered);
    assert_eq!(name, "00007-___etc_passwd-tampered.txt");
}

#[test]
fn pan_texts_are_luhn_valid_and_other_values_are_not() {
    let mut rng = super::Rng::new(99);
    for _ in 0..200 {
        assert!(contains_pan(&pan_text(&mut rng)));
    }
    for pan in TEST_PANS {
        assert!(contains_pan(pan), "{pan}");
    }
    for _ in 0..200 {
        let customer = Customer::random(&mut rng, 123_456);
        for value in customer.personal_values() {
            assert!(!contains_pan(value), "{value}");
        }
    }
}

/// What a notification says, as the store compares a repeat with the
/// first delivery of its identity (`store::apply`, `Meaning`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Meaning {
    processor_ref: String,
    order_ref: String,
    status: String,
    amount: Money,
    test_order: bool,
    fraud_denied: bool,
}

impl Meaning {
    fn of(event: &PaymentEvent) -> Self {
        Self {
            processor_ref: event.processor_ref.clone(),
            order_ref: event.merchant_ref.clone().unwrap_or_default(),
            status: event.status.as_str().to_owned(),
            amount: event.amount,
            test_order: event.test_order,
            fraud_denied: event.fraud_denied,
        }
    }
}

/// The first delivery of an identity, as the store remembers it.
struct First {
    meaning: Meaning,
    /// The `IPN_DATE` of every delivery of the identity so far.
    dates: Vec<Option<chrono::NaiveDateTime>>,
}

/// The simulator's expectation against the pure reconciler, without a
/// database: parse, verify, check the expected fields, tokenize and
/// `decide` every delivery of `deliveries` in that order, counting each
/// notification once per identity as the store does (`store::apply`,
/// docs/protocol.md §11): an exact byte copy is skipped, a later delivery
/// of the same identity is a repeat that changes nothing but may open
/// `conflicting_copy` (another meaning) or `possible_second_event` (a
/// money-moving notice without `MESSAGE_ID` dated unlike every earlier
/// delivery). Open items are what was
/// raised minus what `Decision::resolutions` closed.
///
/// A disagreement here is a bug in one of the two; `tests/simulate_replay.rs`
/// does the same through the real pipeline and PostgreSQL. The order
/// processor reference is compared only when `deliveries` is the
/// simulation's own order: for a double charge it is the REFNO of whichever
/// payment comes first (see `Outline::payments`).
fn replay_in_memory_as(
    sim: &Simulation,
    deliveries: &[&Delivery],
    own_order: bool,
) -> Result<(), TestCaseError> {
    let ring = ring();
    let mut facts: BTreeMap<String, OrderFacts> = sim
        .orders
        .iter()
        .map(|o| (o.order_ref.clone(), OrderFacts::new(o.amount)))
        .collect();
    let mut reviews: BTreeMap<String, Vec<(ReviewKind, Option<String>)>> = BTreeMap::new();
    let mut seen_bodies = HashSet::new();
    let mut firsts: HashMap<EventIdentity, First> = HashMap::new();
    let mut outcomes: HashMap<Outcome, usize> = HashMap::new();
    for delivery in deliveries {
        let Ok((form, verified)) = parse_and_verify(
            &delivery.body,
            &FormLimits::default(),
            &ring,
            &SignaturePolicy::default(),
        ) else {
            prop_assert!(delivery.kind.is_forged(), "{:?}", delivery);
            *outcomes.entry(Outcome::InvalidSignature).or_default() += 1;
            continue;
        };
        if sim.config.expected_fields && EXPECTED_FIELDS.iter().any(|f| form.get(f).is_none()) {
            prop_assert_eq!(delivery.kind, DeliveryKind::Renamed);
            *outcomes.entry(Outcome::Malformed).or_default() += 1;
            continue;
        }
        let event: PaymentEvent =
            match tokenize(&delivery.body, &form, &verified, &Currencies::iso(), None) {
                Ok(event) => event,
                // Two names swapped: not the processor's layout.
                Err(crate::domain::TokenizeError::Layout(_)) => {
                    prop_assert_eq!(delivery.kind, DeliveryKind::Swapped);
                    *outcomes.entry(Outcome::Malformed).or_default() += 1;
                    continue;
                }
                Err(err) => return Err(TestCaseError::fail(err.to_string())),
            };
        let order_ref = ReconcilePolicy::default()
            .order_source
            .key(&event)
            .order_ref;
        let Some(order) = facts.get_mut(&order_ref) else {
            prop_assert!(sim.expected_orphans.contains_key(&order_ref));
            *outcomes.entry(Outcome::OrderNotFound).or_default() += 1;
            continue;
        };
        let open = reviews.entry(order_ref.clone()).or_default();
        if !seen_bodies.insert(event.digest.clone()) {
            // The same bytes again: the genuine body and its exact copy,
            // in either order.
            prop_assert!(
                matches!(
                    delivery.kind,
                    DeliveryKind::Genuine | DeliveryKind::Duplicate
                ),
                "{:?}",
                delivery
            );
            *outcomes.entry(Outcome::Duplicate).or_default() += 1;
            continue;
        }
        if let Some(first) = firsts.get(&event.identity) {
            // A repeat: recorded, changes nothing.
            prop_assert!(delivery.kind.carries_its_notification());
            *outcomes.entry(Outcome::Duplicate).or_default() += 1;
            let refno = Some(event.processor_ref.clone());
            if first.meaning != Meaning::of(&event) {
                open.push((ReviewKind::ConflictingCopy, refno.clone()));
            }
            // A money-moving notice without MESSAGE_ID, dated unlike every
            // earlier delivery: maybe a second event of the same values.
            let moves_money = event.status.known().is_some_and(|status| {
                matches!(
                    status.category(),
                    StatusCategory::Payment | StatusCategory::Refund | StatusCategory::Reversal
                )
            });
            let new_date = event.ipn_date.is_some() && !first.dates.contains(&event.ipn_date);
            if moves_money && !event.carries_message_id && new_date {
                open.push((ReviewKind::PossibleSecondEvent, refno));
            }
            if let Some(first) = firsts.get_mut(&event.identity) {
                first.dates.push(event.ipn_date);
            }
            continue;
        }
        prop_assert!(delivery.kind.carries_its_notification());
        firsts.insert(
            event.identity.clone(),
            First {
                meaning: Meaning::of(&event),
                dates: vec![event.ipn_date],
            },
        );
        let decision = decide(order, &event, &ReconcilePolicy::default());
        *outcomes.entry(decision.outcome).or_default() += 1;
        // What stays open: raised, minus what the system closed.
        open.extend(
            decision
                .review_items
                .iter()
                .map(|item| (item.kind, item.processor_ref.clone())),
        );
        for resolution in &decision.resolutions {
            for _ in 0..resolution.count {
                let closes = |(kind, refno): &(ReviewKind, Option<String>)| {
                    *kind == resolution.kind
                        && (resolution.processor_ref.is_none()
                            || *refno == resolution.processor_ref)
                };
                if let Some(at) = open.iter().position(closes) {
                    open.remove(at);
                }
            }
        }
        *order = decision.facts;
    }
    for outcome in Outcome::ALL {
        prop_assert_eq!(
            outcomes.get(&outcome).copied().unwrap_or(0),
            sim.expected_outcomes.count(outcome),
            "number of `{}` deliveries",
            outcome
        );
    }
    for (order_ref, expected) in &sim.expected {
        let got = &facts[order_ref];
        let context = format!("{order_ref} ({}, {:?})", expected.story, expected.anomalies);
        prop_assert_eq!(got.state(), expected.status, "{}", context);
        prop_assert_eq!(
            &got.paid_money().format_amount(),
            &expected.paid,
            "{}",
            context
        );
        prop_assert_eq!(
            &got.refunded_money().format_amount(),
            &expected.refunded,
            "{}",
            context
        );
        if own_order || !double_charge(expected.story) {
            prop_assert_eq!(&got.processor_ref, &expected.processor_ref, "{}", context);
        }
        let mut kinds: Vec<ReviewKind> = reviews
            .remove(order_ref)
            .unwrap_or_default()
            .into_iter()
            .map(|(kind, _)| kind)
            .collect();
        sort_kinds(&mut kinds);
        prop_assert_eq!(&kinds, &expected.review_kinds, "{}", context);
    }
    Ok(())
}

/// [`replay_in_memory_as`] in the simulation's delivery order.
fn replay_in_memory(sim: &Simulation) -> Result<(), TestCaseError> {
    let deliveries: Vec<&Delivery> = sim.deliveries.iter().collect();
    replay_in_memory_as(sim, &deliveries, true)
}

/// [`replay_in_memory_as`] in a seeded random order of the whole stream:
/// the expectation must not depend on the arrival order (the reconciler
/// guarantees that for states, sums and open items), whichever copy of a
/// notification comes first.
fn replay_in_memory_shuffled(sim: &Simulation, seed: u64) -> Result<(), TestCaseError> {
    let mut deliveries: Vec<&Delivery> = sim.deliveries.iter().collect();
    super::Rng::new(seed).shuffle(&mut deliveries);
    replay_in_memory_as(sim, &deliveries, false)
}

#[test]
fn the_reconciler_reaches_the_expected_states_in_memory() {
    replay_in_memory(&run(&config(31, 200, AnomalyRates::default()))).unwrap();
    replay_in_memory(&run(&config(32, 80, AnomalyRates::all(1.0)))).unwrap();
    replay_in_memory(&run(&SimulationConfig {
        expected_fields: false,
        ..config(33, 80, AnomalyRates::all(0.5))
    }))
    .unwrap();
}

#[test]
fn the_expectation_holds_in_any_arrival_order() {
    let sim = run(&config(34, 150, AnomalyRates::all(0.3)));
    for seed in 0..8 {
        replay_in_memory_shuffled(&sim, seed).unwrap();
    }
}

#[test]
fn each_copy_is_what_its_kind_says() {
    let sim = run(&config(35, 120, AnomalyRates::all(0.6)));
    check_simulation(&sim).unwrap();
    let genuine: HashMap<(&str, usize), &Delivery> = sim
        .deliveries
        .iter()
        .filter(|d| d.kind == DeliveryKind::Genuine)
        .map(|d| ((d.order_ref.as_str(), d.notification), d))
        .collect();
    let ipn_date = |d: &Delivery| {
        let form = parse(d);
        chrono::NaiveDateTime::parse_from_str(form.get("IPN_DATE").unwrap(), "%Y%m%d%H%M%S")
            .unwrap()
    };
    for copy in sim.deliveries.iter().filter(|d| d.known_order) {
        let original = genuine[&(copy.order_ref.as_str(), copy.notification)];
        let after = ipn_date(copy) - ipn_date(original);
        let text = String::from_utf8_lossy(&copy.body);
        let signatures = ["SIGNATURE_SHA2_256=", "SIGNATURE_SHA3_256="].map(|f| text.contains(f));
        match copy.kind {
            DeliveryKind::Retry => {
                assert!(after > chrono::Duration::zero());
                assert!(after < chrono::Duration::hours(PROCESSOR_RETRY_HORIZON_HOURS));
            }
            DeliveryKind::SecondUrl => {
                assert!(after > chrono::Duration::zero() && after < chrono::Duration::minutes(1));
                assert_eq!(
                    signatures.iter().filter(|s| **s).count(),
                    1,
                    "one algorithm"
                );
            }
            DeliveryKind::Resend => {
                assert!(after >= chrono::Duration::days(3) && after <= chrono::Duration::days(10));
            }
            DeliveryKind::Stripped => assert_eq!(signatures, [true, false]),
            DeliveryKind::Unsigned => assert_eq!(signatures, [false, false]),
            DeliveryKind::Reencoded => {
                assert_eq!(after, chrono::Duration::zero());
                assert_ne!(copy.body, original.body);
                let refno = text
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("REFNO="))
                    .unwrap_or_default();
                assert!(
                    refno.contains("%3")
                        || text.ends_with('&')
                        || UNREAD_RENAMES
                            .iter()
                            .any(|(_, to)| text.contains(&format!("&{to}="))),
                    "{copy:?}"
                );
            }
            DeliveryKind::Renamed => {
                assert!(text.contains("&TESTORDER=1") || text.contains("&FRAUDSTATUS=DENIED"));
            }
            DeliveryKind::Swapped => assert_eq!(copy.order_status, "PENDING"),
            DeliveryKind::Genuine | DeliveryKind::Duplicate | DeliveryKind::Tampered => {
                assert_eq!(after, chrono::Duration::zero())
            }
        }
    }
}

#[test]
fn renamed_copies_only_when_expected_fields_are_checked() {
    let rates = AnomalyRates {
        renamed_expected_fields: 1.0,
        ..AnomalyRates::NONE
    };
    let with = run(&SimulationConfig {
        test_orders: 0.5,
        ..config(36, 60, rates)
    });
    assert!(with.count(DeliveryKind::Renamed) > 0);
    assert_eq!(
        with.expected_outcomes.malformed,
        with.count(DeliveryKind::Renamed)
    );
    let without = run(&SimulationConfig {
        expected_fields: false,
        test_orders: 0.5,
        ..config(36, 60, rates)
    });
    assert_eq!(without.count(DeliveryKind::Renamed), 0);
    assert_eq!(without.expected_outcomes.malformed, 0);
    // Nothing else differs: the draws happened all the same.
    let others = |sim: &Simulation| -> Vec<Vec<u8>> {
        sim.deliveries
            .iter()
            .filter(|d| d.kind != DeliveryKind::Renamed)
            .map(|d| d.body.clone())
            .collect()
    };
    assert_eq!(others(&with).len(), others(&without).len());
    replay_in_memory(&with).unwrap();
    replay_in_memory(&without).unwrap();
}

#[test]
fn a_double_charges_second_payment_never_arrives_before_the_first() {
    let rates = AnomalyRates {
        double_charges: 1.0,
        out_of_order: 1.0,
        stripped_signatures: 1.0,
        reencoded_copies: 1.0,
        ..AnomalyRates::NONE
    };
    let sim = run(&config(37, 80, rates));
    let mut seen = 0;
    for (order_ref, expected) in &sim.expected {
        if !double_charge(expected.story) {
            continue;
        }
        seen += 1;
        let refno_of = |d: &Delivery| parse(d).get("REFNO").map(str::to_owned);
        let first_payment = sim
            .deliveries
            .iter()
            .filter(|d| &d.order_ref == order_ref && d.kind.carries_its_notification())
            .find(|d| d.order_status == "COMPLETE")
            .and_then(refno_of);
        assert_eq!(first_payment, expected.processor_ref, "{order_ref}");
    }
    assert!(seen > 10);
    replay_in_memory(&sim).unwrap();
}

fn any_rates() -> impl Strategy<Value = AnomalyRates> {
    let rate = prop::sample::select(vec![0.0, 0.1, 0.5, 1.0]);
    prop::collection::vec(rate, 15).prop_map(|r| AnomalyRates {
        duplicates: r[0],
        out_of_order: r[1],
        tampered: r[2],
        amount_mismatch: r[3],
        unknown_orders: r[4],
        pan_in_free_text: r[5],
        processor_retries: r[6],
        second_url_copies: r[7],
        manual_resends: r[8],
        reencoded_copies: r[9],
        stripped_signatures: r[10],
        renamed_expected_fields: r[11],
        double_charges: r[12],
        foreign_reversals: r[13],
        conflicting_copies: r[14],
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn any_seed_and_rates_give_a_consistent_simulation(
        seed in any::<u64>(),
        orders in 0usize..25,
        rates in any_rates(),
        test_orders in prop::sample::select(vec![0.0, 0.3, 1.0]),
        expected_fields in any::<bool>(),
        arrival in any::<u64>(),
    ) {
        let config = SimulationConfig {
            test_orders,
            expected_fields,
            ..config(seed, orders, rates)
        };
        let sim = run(&config);
        check_simulation(&sim)?;
        replay_in_memory(&sim)?;
        replay_in_memory_shuffled(&sim, arrival)?;
        // Reproducible.
        let again = run(&config);
        prop_assert!(again.deliveries == sim.deliveries);
    }
}

#[test]
fn debug_output_never_shows_the_fake_personal_data() {
    let sim = run(&config(41, 20, AnomalyRates::all(0.5)));
    assert!(!sim.personal_data.is_empty());
    let shown = format!("{sim:?} {:?}", sim.deliveries);
    for value in &sim.personal_data {
        assert!(!shown.contains(value.as_str()), "{value} in Debug output");
    }
}
