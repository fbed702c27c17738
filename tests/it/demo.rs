//! The README's run command, `ipn-reconciler demo`, on a smaller scale: the
//! whole system (intake over HTTP, RabbitMQ, worker, PostgreSQL) against the
//! simulator's expectation with every anomaly turned on, for both profiles
//! (the shop that imports its orders, then the software vendor on the
//! hosted cart).

use std::process::Command;

use crate::helpers::TestDb;
use crate::helpers::amqp::{TestQueue, amqp_url};

#[test]
fn the_demo_runs_to_a_green_end() {
    let db = TestDb::with_prefix("ipn_test_demo");
    // The demo's retry schedule, so that dropping the guard deletes every
    // queue the demo declared.
    let queue = TestQueue::new("500ms,1s,2s");
    let output = Command::new(env!("CARGO_BIN_EXE_ipn-reconciler"))
        .args([
            "demo",
            "--orders",
            "80",
            "--seed",
            "7",
            "--queue",
            &queue.base,
            "--profile",
            "default",
        ])
        .env("DEMO_DATABASE_URL", &db.url)
        .env("AMQP_URL", amqp_url())
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("OK: all 80 orders"), "{stdout}");
    audit_verifies(&db);
    assert!(!stdout.contains("software-vendor"), "{stdout}");
    for section in [
        "Orders by state",
        "Totals per currency",
        "Open exceptions by kind",
    ] {
        assert!(stdout.contains(section), "{section} in\n{stdout}");
    }
    assert!(stdout.contains("forged copies refused"), "{stdout}");
    assert!(stdout.contains("settlement: "), "{stdout}");
    assert!(stdout.contains("(matched lines)"), "{stdout}");

    // The planted differences became the review items they stand for: the
    // demo compared them order by order; here, by kind, from the database.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let open: std::collections::BTreeMap<String, i64> = runtime.block_on(async {
        crate::finance_report::query(
            &db,
            "SELECT kind, count(*)::int8 FROM review_items WHERE status = 'open' GROUP BY kind",
            &[],
        )
        .await
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    });
    for (kind, n) in [
        ("settlement_unknown", 1),
        ("settlement_amount_differs", 1),
        ("refund_not_debited", 1),
        ("payout_total_differs", 1),
    ] {
        assert_eq!(open.get(kind).copied(), Some(n), "{kind}: {open:?}");
    }
    // Some payments never settled (not the one whose amount differs: that
    // is its settlement_amount_differs item only).
    assert!(
        open.get("unsettled_payment").copied().unwrap_or(0) >= 2,
        "{open:?}"
    );
    assert!(
        open.get("stale_order").copied().unwrap_or(0) >= 1,
        "{open:?}"
    );
    let lines: i64 = runtime.block_on(async {
        crate::finance_report::query(
            &db,
            "SELECT count(*)::int8 FROM settlement_lines WHERE status = 'matched'",
            &[],
        )
        .await[0]
            .get(0)
    });
    assert!(lines > 20, "{lines} matched lines");
}

/// `demo` without `--profile`, as the README runs it: the shop that
/// imports its orders, then the software vendor on the emptied database,
/// each compared order by order (and subscription by subscription, figure
/// by figure) with its expectation.
#[test]
fn the_demo_runs_both_profiles_to_a_green_end() {
    let db = TestDb::with_prefix("ipn_test_demo");
    let queue = TestQueue::new("500ms,1s,2s");
    let output = Command::new(env!("CARGO_BIN_EXE_ipn-reconciler"))
        .args([
            "demo",
            "--orders",
            "30",
            "--customers",
            "60",
            "--seed",
            "11",
            "--queue",
            &queue.base,
        ])
        .env("DEMO_DATABASE_URL", &db.url)
        .env("AMQP_URL", amqp_url())
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let default_at = stdout.find("== profile default ==").expect("default ran");
    let vendor_at = stdout
        .find("== profile software-vendor ==")
        .expect("the vendor ran");
    assert!(default_at < vendor_at, "default first\n{stdout}");
    assert!(stdout.contains("OK: all 30 orders"), "{stdout}");
    audit_verifies(&db);
    assert!(
        stdout.contains("subscriptions and the figures of"),
        "{stdout}"
    );
    assert!(stdout.contains("default: 30 orders"), "{stdout}");
    assert!(!stdout.contains("MISMATCH"), "{stdout}");

    // What the vendor's run left: processor orders, subscriptions with
    // their licence notices, VAT and commission, the USD payout.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let count = |sql: &'static str| -> i64 {
        runtime.block_on(async { crate::finance_report::query(&db, sql, &[]).await[0].get(0) })
    };
    assert!(count("SELECT count(*)::int8 FROM orders WHERE origin = 'processor'") > 20);
    assert!(count("SELECT count(DISTINCT licence_ref)::int8 FROM subscription_orders") > 20);
    assert!(count("SELECT count(*)::int8 FROM licence_notices") > 10);
    assert!(count("SELECT count(*)::int8 FROM payments WHERE payable_minor < 0") > 0);

    // Its settlement in the payout currency: one USD sale line per
    // payment, each matched to it through its payout amount, the payouts
    // adding up to Σ PAYABLE_AMOUNT, and nothing left to review.
    assert!(
        stdout.contains("settlement in the payout currency: "),
        "{stdout}"
    );
    let payments = count("SELECT count(*)::int8 FROM payments");
    assert!(payments > 50, "{payments} payments");
    assert_eq!(
        count(
            "SELECT count(DISTINCT payment_id)::int8 FROM settlement_lines \
             WHERE status = 'matched' AND kind = 'sale' AND currency = 'USD'"
        ),
        payments
    );
    assert_eq!(
        count("SELECT count(*)::int8 FROM settlement_lines WHERE status <> 'matched'"),
        0
    );
    assert_eq!(
        count("SELECT COALESCE(sum(amount_minor), 0)::int8 FROM settlement_payouts"),
        count("SELECT COALESCE(sum(payable_minor), 0)::int8 FROM payments")
    );
    assert_eq!(
        count(
            "SELECT count(*)::int8 FROM settlement_payouts WHERE amount_minor <> lines_net_minor"
        ),
        0
    );
    assert_eq!(
        count("SELECT count(*)::int8 FROM review_items WHERE status = 'open'"),
        0,
        "no unsettled payment, no fee_differs, no settlement item"
    );
}

#[test]
fn the_demo_refuses_a_database_it_must_not_empty() {
    let output = Command::new(env!("CARGO_BIN_EXE_ipn-reconciler"))
        .args(["demo", "--orders", "5"])
        .env(
            "DEMO_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/ipn_reconciler",
        )
        .output()
        .expect("run the demo");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("must contain `demo`"));
}

/// `audit verify` on the books the demo left (issue 23, item 7): every
/// hash chain holds and the orders re-derive from the sealed facts.
fn audit_verifies(db: &TestDb) {
    let output = crate::cli_reconcile::cli(db)
        .args(["audit", "verify"])
        .output()
        .expect("audit verify");
    assert!(
        output.status.success(),
        "audit verify after the demo: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
