//! `ipn-reconciler simulate` from the outside: what it writes, that the
//! same seed writes the same bytes, and how it refuses bad input.

use std::collections::BTreeMap;
use std::path::Path;

use crate::helpers::repo_path;
use assert_cmd::Command;
use ipn_reconciler::domain::Currencies;
use ipn_reconciler::ipn::{FormLimits, SignaturePolicy, parse_and_verify};
use ipn_reconciler::store::orders::parse_orders_csv;
use predicates::prelude::*;

fn simulate(out: &Path, seed: &str) -> Command {
    let mut cmd = Command::cargo_bin("ipn-reconciler").expect("binary");
    cmd.env_remove("IPN_KEYS_FILE")
        .args(["simulate", "--seed", seed, "--orders", "40"])
        .arg("--key-file")
        .arg(repo_path("fixtures/keys/test.keys"))
        .arg("--out")
        .arg(out);
    cmd
}

/// Every file under `dir`, relative name -> bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for sub in ["", "bodies"] {
        for entry in std::fs::read_dir(dir.join(sub)).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_file() {
                let name = path
                    .strip_prefix(dir)
                    .expect("inside")
                    .display()
                    .to_string();
                files.insert(name, std::fs::read(&path).expect("read"));
            }
        }
    }
    files
}

#[test]
fn writes_a_reproducible_run() {
    let first = tempfile::tempdir().expect("tempdir");
    let second = tempfile::tempdir().expect("tempdir");
    simulate(first.path(), "77")
        .assert()
        .success()
        .stdout(predicate::str::contains("simulated 40 order(s)"))
        .stdout(predicate::str::contains("expected outcomes: applied="));
    simulate(second.path(), "77").assert().success();
    let a = snapshot(first.path());
    assert_eq!(a, snapshot(second.path()), "same seed, same bytes");
    assert!(a.contains_key("orders.csv"));
    assert!(a.contains_key("expected.json"));
    assert!(a.contains_key("manifest.json"));

    let orders = parse_orders_csv(a["orders.csv"].as_slice(), &Currencies::iso())
        .expect("orders.csv parses");
    assert_eq!(orders.len(), 40);
    let expected: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&a["expected.json"]).expect("expected.json");
    assert_eq!(expected.len(), 40);

    // Bodies are signed with the key file's current key; forged and
    // unsigned ones fail.
    let ring =
        ipn_reconciler::keys::read_key_ring(&repo_path("fixtures/keys/test.keys")).expect("keys");
    let bodies: Vec<_> = a
        .iter()
        .filter(|(name, _)| name.starts_with("bodies"))
        .collect();
    assert!(!bodies.is_empty());
    for (name, body) in bodies {
        let verified = parse_and_verify(
            body,
            &FormLimits::default(),
            &ring,
            &SignaturePolicy::default(),
        );
        if name.ends_with("-tampered.txt") || name.ends_with("-unsigned.txt") {
            assert!(verified.is_err(), "{name}");
        } else {
            assert_eq!(verified.expect(name).1.key_id.as_str(), "test-2026");
        }
    }

    let other = tempfile::tempdir().expect("tempdir");
    simulate(other.path(), "78").assert().success();
    assert_ne!(a, snapshot(other.path()), "another seed, another run");

    // A second run into the same directory is refused unless --force.
    simulate(first.path(), "77")
        .assert()
        .failure()
        .stderr(predicate::str::contains("--force"));
    simulate(first.path(), "77")
        .arg("--force")
        .assert()
        .success();
}

#[test]
fn refuses_bad_rates_and_unavailable_targets() {
    let dir = tempfile::tempdir().expect("tempdir");
    simulate(dir.path(), "1")
        .args(["--duplicates", "1.5"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("probability"));
    simulate(dir.path(), "1")
        .args(["--target", "http"])
        .assert()
        .code(2);
    simulate(dir.path(), "1")
        .args(["--currencies", "EUR=0"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("weight"));
    Command::cargo_bin("ipn-reconciler")
        .expect("binary")
        .args(["simulate", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--pan-in-free-text"))
        .stdout(predicate::str::contains("--processor-retries"))
        .stdout(predicate::str::contains("--with-expected-fields"))
        .stdout(predicate::str::contains("queue"));
    simulate(dir.path(), "1")
        .args(["--manual-resends", "1.5"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("probability"));
}

/// The manifest counts every delivery kind and the outcomes they must
/// end with; renamed copies (expected `malformed`) are made only when the
/// reconciler checks expected fields.
#[test]
fn the_manifest_counts_the_processors_habits_and_the_attackers_tricks() {
    let manifest = |extra: &[&str]| {
        let dir = tempfile::tempdir().expect("tempdir");
        simulate(dir.path(), "5")
            .args(["--test-orders", "0.5", "--renamed-expected-fields", "1"])
            .args(["--processor-retries", "0.5", "--stripped-signatures", "0.5"])
            .args(extra)
            .assert()
            .success()
            .stdout(predicate::str::contains(" retry, "))
            .stdout(predicate::str::contains(" malformed="));
        let files = snapshot(dir.path());
        let json: serde_json::Value =
            serde_json::from_slice(&files["manifest.json"]).expect("manifest.json");
        let renamed = files
            .keys()
            .filter(|name| name.ends_with("-renamed.txt"))
            .count();
        (json, renamed)
    };
    let (without, renamed) = manifest(&[]);
    assert_eq!(renamed, 0);
    assert_eq!(without["expected_fields"], false);
    // Only the copies with two names swapped are malformed then.
    assert_eq!(
        without["expected_outcomes"]["malformed"],
        without["deliveries"]["swapped"].as_u64().unwrap_or(0)
    );
    assert!(without["deliveries"]["retry"].as_u64().unwrap_or(0) > 0);
    let (with, renamed) = manifest(&["--with-expected-fields"]);
    assert!(renamed > 0);
    assert_eq!(with["expected_fields"], true);
    assert_eq!(with["deliveries"]["renamed"], renamed);
    // The renamed copies, and the copies with two names swapped (refused:
    // the processor never lays out a body so).
    let swapped = with["deliveries"]["swapped"].as_u64().unwrap_or(0);
    assert_eq!(
        with["expected_outcomes"]["malformed"],
        renamed as u64 + swapped
    );
    let delivered: u64 = with["deliveries"]
        .as_object()
        .expect("deliveries")
        .values()
        .filter_map(serde_json::Value::as_u64)
        .sum();
    let expected: u64 = with["expected_outcomes"]
        .as_object()
        .expect("outcomes")
        .values()
        .filter_map(serde_json::Value::as_u64)
        .sum();
    assert_eq!(
        delivered, expected,
        "every delivery has one expected outcome"
    );
}

/// The software vendor's run writes its settlement and payouts in the
/// payout currency: one USD sale line per payment the expectation counts,
/// payouts that add up to Σ `PAYABLE_AMOUNT`, the same bytes for the same
/// seed.
#[test]
fn the_software_vendor_writes_its_settlement_in_the_payout_currency() {
    use ipn_reconciler::domain::settlement::{Mapping, parse_payouts, parse_settlement};
    let run = |out: &Path| {
        let mut cmd = simulate(out, "5");
        cmd.args(["--profile", "software-vendor"])
            .assert()
            .success();
        snapshot(out)
    };
    let first = tempfile::tempdir().expect("tempdir");
    let second = tempfile::tempdir().expect("tempdir");
    let files = run(first.path());
    assert_eq!(files, run(second.path()), "same seed, same bytes");
    let currencies = Currencies::iso();
    let lines = parse_settlement(
        files["settlement.csv"].as_slice(),
        &Mapping::default(),
        &currencies,
    )
    .expect("settlement.csv parses");
    let payouts =
        parse_payouts(files["payouts.csv"].as_slice(), &currencies).expect("payouts.csv parses");
    let vendor: serde_json::Value =
        serde_json::from_slice(&files["vendor.json"]).expect("vendor.json");
    let orders = vendor["orders"].as_object().expect("orders");
    // Every vendor order is paid by exactly one payment here.
    assert_eq!(lines.len(), orders.len());
    assert!(lines.iter().all(|l| l.kind.as_str() == "sale"));
    assert!(lines.iter().all(|l| l.currency().as_str() == "USD"));
    let refnos: std::collections::BTreeSet<&str> = lines
        .iter()
        .map(|l| l.processor_ref.as_deref().expect("REFNO"))
        .collect();
    for order in orders.values() {
        assert!(refnos.contains(order["processor_ref"].as_str().expect("REFNO")));
    }
    let net: i64 = lines.iter().map(|l| l.net.minor_units()).sum();
    let paid_out: i64 = payouts.iter().map(|p| p.amount.minor_units()).sum();
    assert_eq!(net, paid_out);
    let payable = ipn_reconciler::domain::Money::iso(
        vendor["payouts"]["USD"].as_str().expect("USD payout"),
        "USD",
    )
    .expect("amount");
    assert_eq!(paid_out, payable.minor_units());
}
