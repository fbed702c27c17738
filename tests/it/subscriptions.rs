//! Issue 21: subscriptions. A hosted-cart sale names its licence
//! (`IPN_LICENSE_REF[]`); the processor renews it by itself with a new
//! order (new `REFNO`, empty `REFNOEXT`, `IPN_LICENSE_TYPE[]=RENEWAL`,
//! `ORIGINAL_REFNOEXT[]` echoing the first order's merchant reference).
//! `subscriptions list` and `show` follow the licence across its orders,
//! whatever order the notices arrive in.

use ipn_reconciler::ipn::Algorithm;

use crate::cli_reconcile::cli;
use crate::helpers::licence::{lcn_fields, signed};
use crate::processor_orders::{Notice, books, json, notice, process};

const LICENCE: &str = "TOF6T8VPY3";

fn sale(
    refno: &'static str,
    kind: &'static str,
    start: &'static str,
    end: &'static str,
) -> Notice<'static> {
    Notice {
        licence: [LICENCE, kind, start, end],
        original_refnoext: if kind == "RENEWAL" { "SHOP-9" } else { "" },
        refnoext: if kind == "RENEWAL" { "" } else { "SHOP-9" },
        ..Notice::hosted(refno, "COMPLETE", "100.00")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn renewals_follow_the_licence_in_any_arrival_order() {
    let first = sale(
        "300000001",
        "REGULAR",
        "2026-01-05 10:00:00",
        "2026-02-05 10:00:00",
    );
    let renewal = sale(
        "300000002",
        "RENEWAL",
        "2026-02-05 10:00:00",
        "2026-03-05 10:00:00",
    );
    let second = sale(
        "300000003",
        "RENEWAL",
        "2026-03-05 10:00:00",
        "2026-04-05 10:00:00",
    );
    let pending_next = Notice {
        status: "PENDING",
        ..sale(
            "300000004",
            "RENEWAL",
            "2026-04-05 10:00:00",
            "2026-05-05 10:00:00",
        )
    };
    let bodies = [first, renewal, second, pending_next].map(|n| notice(&n));
    let mut shown = Vec::new();
    for reversed in [false, true] {
        let db = books();
        let dir = tempfile::tempdir().expect("temp dir");
        let csv = dir.path().join("orders.csv");
        std::fs::write(&csv, "order_ref,amount,currency\nSHOP-9,100.00,EUR\n").expect("csv");
        cli(&db)
            .args(["orders", "import"])
            .arg(&csv)
            .assert()
            .success();
        let mut sequence = bodies.to_vec();
        if reversed {
            sequence.reverse();
        }
        process(&db, None, &sequence);
        let sub = json(cli(&db).args(["subscriptions", "show", LICENCE, "--format", "json"]));
        assert_eq!(sub["licence_ref"], LICENCE);
        assert_eq!(sub["status"], "active");
        assert_eq!(sub["first_order"], "300000001");
        assert_eq!(
            sub["latest_order"], "300000003",
            "the unpaid renewal extends nothing"
        );
        assert_eq!(sub["expires_at"], "2026-04-05T10:00:00");
        assert_eq!(sub["renewals"], 2);
        assert_eq!(sub["original_order_ref"], "SHOP-9");
        assert_eq!(sub["product_code"], "EDITOR-PRO");
        let orders = sub["orders"].as_array().expect("orders");
        assert_eq!(orders.len(), 4);
        // The first order is the merchant's, renewals are the processor's.
        assert_eq!(orders[0]["order_ref"], "SHOP-9");
        assert_eq!(orders[1]["order_ref"], "300000002");
        assert_eq!(orders[1]["order_state"], "paid");
        assert_eq!(orders[3]["paid"], false);
        shown.push(
            sub.to_string().replace(
                &orders
                    .iter()
                    .map(|o| o["first_seen_at"].to_string())
                    .collect::<String>(),
                "",
            ),
        );
        let mut sub = sub;
        if let Some(orders) = sub["orders"].as_array_mut() {
            for order in orders {
                order["first_seen_at"] = serde_json::Value::Null;
            }
        }
        shown.push(sub.to_string());
    }
    assert_eq!(shown[1], shown[3], "the same subscription in either order");

    // The renewal made a processor order of its own, linked to the licence.
    let db = books();
    process(&db, None, &bodies[..2]);
    let listed = json(cli(&db).args(["subscriptions", "list", "--format", "json"]));
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["renewals"], 1);
    let csv = cli(&db)
        .args(["subscriptions", "list", "--format", "csv"])
        .output()
        .expect("runs");
    let csv = String::from_utf8_lossy(&csv.stdout);
    assert!(
        csv.starts_with("licence_ref,status,product_code,licence_type,first_order"),
        "{csv}"
    );
    let expiring = json(cli(&db).args([
        "subscriptions",
        "list",
        "--expiring-before",
        "2026-03-01",
        "--format",
        "json",
    ]));
    assert_eq!(
        expiring.as_array().map(Vec::len),
        Some(0),
        "paid until 2026-03-05"
    );
    let expiring = json(cli(&db).args([
        "subscriptions",
        "list",
        "--expiring-before",
        "2026-03-06",
        "--format",
        "json",
    ]));
    assert_eq!(expiring.as_array().map(Vec::len), Some(1));
    cli(&db)
        .args(["subscriptions", "show", "NOSUCHLIC1"])
        .assert()
        .code(1);
    cli(&db)
        .args(["subscriptions", "list", "--status", "nonsense"])
        .assert()
        .code(2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_test_order_never_changes_a_subscription() {
    let db = books();
    let test = Notice {
        test_order: true,
        ..sale(
            "300000011",
            "REGULAR",
            "2026-01-05 10:00:00",
            "2026-02-05 10:00:00",
        )
    };
    process(&db, None, &[notice(&test)]);
    let listed = json(cli(&db).args(["subscriptions", "list", "--format", "json"]));
    assert_eq!(listed, serde_json::json!([]));
}

/// A signed LCN about `LICENCE` saying `status`, logged by the processor
/// at `updated`.
fn lcn(status: &str, updated: &str, test: bool) -> Vec<u8> {
    let fields: Vec<(&'static str, String)> = lcn_fields(LICENCE, status, test)
        .into_iter()
        .map(|(name, value)| match name {
            "DATE_UPDATED" => (name, updated.to_owned()),
            _ => (name, value),
        })
        .collect();
    signed(&fields, &[Algorithm::Sha3_256])
}

#[tokio::test(flavor = "multi_thread")]
async fn licence_notices_move_the_status_in_any_arrival_order() {
    let first = notice(&sale(
        "300000021",
        "REGULAR",
        "2026-01-05 10:00:00",
        "2026-02-05 10:00:00",
    ));
    let past_due = lcn("PASTDUE", "2026-02-05 10:00:00", false);
    let expired = lcn("EXPIRED", "2026-02-20 10:00:00", false);
    // A sandbox notice, logged last, must not change the real one.
    let sandbox = lcn("ACTIVE", "2026-03-01 10:00:00", true);
    let all = [first, past_due, expired, sandbox];
    for order in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]] {
        let db = books();
        let sequence: Vec<Vec<u8>> = order.iter().map(|&i| all[i].clone()).collect();
        process(&db, None, &sequence);
        let sub = json(cli(&db).args(["subscriptions", "show", LICENCE, "--format", "json"]));
        assert_eq!(sub["status"], "expired", "{order:?}: {sub}");
        let notices = sub["notices"].as_array().expect("notices");
        assert_eq!(notices.len(), 2, "the test LCN is not kept: {sub}");
        assert_eq!(notices[0]["status"], "PAST_DUE");
        let listed = json(cli(&db).args([
            "subscriptions",
            "list",
            "--status",
            "expired",
            "--format",
            "json",
        ]));
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    }
    // Before any LCN, a paid subscription is active.
    let db = books();
    process(&db, None, &all[..1]);
    let sub = json(cli(&db).args(["subscriptions", "show", LICENCE, "--format", "json"]));
    assert_eq!(sub["status"], "active");
}
