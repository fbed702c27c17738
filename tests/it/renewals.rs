//! Issue 21, Deliver 2: the sweep's renewal review kinds, through real
//! notices. Signed payment notifications and licence notices (LCN) go
//! through `process` as the processor sends them; the sweep then runs with
//! an injected `now` (no waiting, no wall clock in what is decided).
//!
//! - `renewal_missing`: a recurring subscription whose paid term ended
//!   more than `renewal-grace` (3 days) ago, with no paid renewal and no
//!   LCN saying it expired, went past due or was canceled.
//! - `renewal_after_cancel`: a renewal paid after an LCN said the
//!   subscription was disabled or canceled, whatever the arrival order.

use chrono::{DateTime, Utc};
use ipn_reconciler::domain::sweep::SweepPolicy;
use ipn_reconciler::ipn::{Algorithm, FormBody, sign};
use ipn_reconciler::services::sweep::sweep;
use predicates::prelude::*;
use serde_json::Value;

use crate::cli_reconcile::cli;
use crate::finance_report::query;
use crate::helpers::TestDb;
use crate::helpers::amqp::test_key;
use crate::helpers::licence::{lcn_fields, signed};
use crate::processor_orders::{json, process};

const LICENCE: &str = "RNW0000001";

/// What one payment notification of a subscription's order says.
#[derive(Clone, Copy)]
struct Sale<'a> {
    refno: &'a str,
    /// `REFNOEXT` (the first order's, from the merchant's cart).
    refnoext: &'a str,
    /// `IPN_LICENSE_TYPE[]`.
    kind: &'a str,
    start: &'a str,
    expiry: &'a str,
    lifetime: bool,
    /// `PAYMENTDATE` (and the `IPN_DATE` it was sent at).
    paid: &'a str,
    test: bool,
}

fn first_order() -> Sale<'static> {
    Sale {
        refno: "400000001",
        refnoext: "SHOP-R1",
        kind: "REGULAR",
        start: "2026-01-05 10:00:00",
        expiry: "2026-02-05 10:00:00",
        lifetime: false,
        paid: "2026-01-05 10:00:00",
        test: false,
    }
}

fn renewal() -> Sale<'static> {
    Sale {
        refno: "400000002",
        refnoext: "",
        kind: "RENEWAL",
        start: "2026-02-05 10:00:00",
        expiry: "2026-03-05 10:00:00",
        paid: "2026-02-05 10:05:00",
        ..first_order()
    }
}

/// A signed `COMPLETE` for `sale`, in the processor's field order (a
/// subset of its 2023 fixture, personal fields included).
fn ipn(sale: &Sale<'_>) -> Vec<u8> {
    let ipn_date: String = sale.paid.chars().filter(char::is_ascii_digit).collect();
    let original = if sale.kind == "RENEWAL" {
        "SHOP-R1"
    } else {
        ""
    };
    let fields: Vec<(&str, &str)> = vec![
        ("GIFT_ORDER", "0"),
        ("SALEDATE", sale.paid),
        ("PAYMENTDATE", sale.paid),
        ("REFNO", sale.refno),
        ("REFNOEXT", sale.refnoext),
        ("ORIGINAL_REFNOEXT[]", original),
        ("ORDERNO", "25431"),
        ("ORDERSTATUS", "COMPLETE"),
        ("PAYMETHOD_CODE", "CCVISAMC"),
        ("FIRSTNAME", "Jane"),
        ("LASTNAME", "Doe"),
        ("CUSTOMEREMAIL", "jane.doe@example.com"),
        ("CURRENCY", "EUR"),
        ("IPN_PID[]", "35144095"),
        ("IPN_PNAME[]", "Editor Pro"),
        ("IPN_PCODE[]", "EDITOR-PRO"),
        ("IPN_QTY[]", "1"),
        ("IPN_PRICE[]", "82.64"),
        ("IPN_VAT[]", "17.36"),
        ("MESSAGE_TYPE", "COMPLETE"),
        ("IPN_LICENSE_TYPE[]", sale.kind),
        ("IPN_LICENSE_REF[]", LICENCE),
        ("IPN_LICENSE_EXP[]", sale.expiry),
        ("IPN_LICENSE_START[]", sale.start),
        (
            "IPN_LICENSE_LIFETIME[]",
            if sale.lifetime { "YES" } else { "NO" },
        ),
        ("IPN_TOTAL[]", "100.00"),
        ("IPN_TOTALGENERAL", "100.00"),
        ("IPN_SHIPPING", "0"),
        ("IPN_SHIPPING_TAX", "0"),
        ("IPN_COMMISSION", "5.4950"),
        ("REFUND_TYPE", ""),
        ("CHARGEBACK_RESOLUTION", "NONE"),
        ("TEST_ORDER", if sale.test { "1" } else { "0" }),
        ("FRAUD_STATUS", "APPROVED"),
        ("IPN_DATE", &ipn_date),
    ];
    let mut form = FormBody::default();
    for (name, value) in fields {
        form.push(name, value);
    }
    sign(&form, &test_key(), &[Algorithm::Sha256])
        .expect("signed")
        .encode()
        .into_bytes()
}

/// A signed LCN about `LICENCE`: `status`, sent for `reason`, logged by
/// the processor at `updated`.
fn lcn(status: &str, reason: &str, updated: &str) -> Vec<u8> {
    let fields: Vec<(&'static str, String)> = lcn_fields(LICENCE, status, false)
        .into_iter()
        .map(|(name, value)| match name {
            "DATE_UPDATED" => (name, updated.to_owned()),
            "DISPATCH_REASON" => (name, reason.to_owned()),
            "EXPIRATION_DATE" => (name, "2026-02-05 10:00:00".to_owned()),
            "LAST_ORDER_REFERENCE" | "ORIGINAL_ORDER_REFERENCE" => (name, "400000001".to_owned()),
            _ => (name, value),
        })
        .collect();
    signed(&fields, &[Algorithm::Sha3_256])
}

fn at(time: &str) -> DateTime<Utc> {
    time.parse().expect("time")
}

/// Sweeps as of `now` with the default policy (`renewal-grace` 3 days);
/// returns the renewal kinds opened (a sweep years later finds the
/// payments unsettled too: not this test's business).
async fn sweep_at(db: &TestDb, now: &str) -> Vec<String> {
    let store = db.store().await;
    let outcome = sweep(&store, at(now), &SweepPolicy::default())
        .await
        .expect("sweep");
    assert!(outcome.ran);
    outcome
        .opened
        .iter()
        .map(|f| f.kind.as_str().to_owned())
        .filter(|kind| kind.starts_with("renewal_"))
        .collect()
}

/// Every renewal item: (kind, order_ref, processor_ref, status,
/// resolved_by).
async fn renewal_items(db: &TestDb) -> Vec<(String, String, String, String, Option<String>)> {
    query(
        db,
        "SELECT kind, order_ref, processor_ref, status, resolved_by FROM review_items \
         WHERE kind IN ('renewal_missing', 'renewal_after_cancel') ORDER BY id",
        &[],
    )
    .await
    .into_iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

fn item(kind: &str, order: &str, refno: &str, status: &str) -> (String, String, String, String) {
    (kind.into(), order.into(), refno.into(), status.into())
}

fn without_resolver(
    items: Vec<(String, String, String, String, Option<String>)>,
) -> Vec<(String, String, String, String)> {
    items
        .into_iter()
        .map(|(k, o, r, s, _)| (k, o, r, s))
        .collect()
}

/// Books where the merchant's cart imported the first order, `SHOP-R1`
/// (its renewals are the processor's orders, keyed by `REFNO`).
fn books() -> TestDb {
    let db = crate::processor_orders::books();
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("orders.csv");
    std::fs::write(&csv, "order_ref,amount,currency\nSHOP-R1,100.00,EUR\n").expect("csv");
    cli(&db)
        .args(["orders", "import"])
        .arg(&csv)
        .assert()
        .success();
    db
}

fn listed(db: &TestDb, kind: &str) -> Value {
    json(cli(db).args(["review", "list", "--kind", kind, "--format", "json"]))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missed_renewal_opens_renewal_missing_once_and_a_paid_renewal_closes_it() {
    let db = books();
    process(&db, None, &[ipn(&first_order())]);
    // Paid until 2026-02-05 10:00: within the grace, nothing.
    assert_eq!(sweep_at(&db, "2026-02-08T09:00:00Z").await, [] as [&str; 0]);
    // More than three days later: the renewal is missing.
    assert_eq!(
        sweep_at(&db, "2026-02-08T11:00:00Z").await,
        ["renewal_missing"]
    );
    assert_eq!(
        without_resolver(renewal_items(&db).await),
        [item("renewal_missing", "SHOP-R1", "400000001", "open")]
    );
    // Listed by `review list`, naming the subscription and its order.
    let items = listed(&db, "renewal_missing");
    let items = items.as_array().expect("list");
    assert_eq!(items.len(), 1, "{items:?}");
    let details = items[0]["details"].as_str().expect("details");
    assert!(
        details.contains(LICENCE) && details.contains("by order 400000001"),
        "{details}"
    );
    // Swept again, and later: raised once.
    assert_eq!(sweep_at(&db, "2026-02-08T11:00:00Z").await, [] as [&str; 0]);
    assert_eq!(sweep_at(&db, "2026-02-20T00:00:00Z").await, [] as [&str; 0]);
    assert_eq!(renewal_items(&db).await.len(), 1);

    // The renewal's notice arrives: the sweep closes the item.
    process(&db, None, &[ipn(&renewal())]);
    assert_eq!(sweep_at(&db, "2026-02-20T00:00:00Z").await, [] as [&str; 0]);
    let items = renewal_items(&db).await;
    assert_eq!(
        without_resolver(items.clone()),
        [item("renewal_missing", "SHOP-R1", "400000001", "resolved")]
    );
    assert_eq!(items[0].4.as_deref(), Some("system"));
    // The renewal's own term lapses in turn: a new cause, its own item,
    // under the renewal (a processor order keyed by its REFNO).
    assert_eq!(
        sweep_at(&db, "2026-03-09T00:00:00Z").await,
        ["renewal_missing"]
    );
    assert_eq!(
        without_resolver(renewal_items(&db).await)[1],
        item("renewal_missing", "400000002", "400000002", "open")
    );
    // Through the review state machine: accepted as is, and not raised
    // again.
    let id = listed(&db, "renewal_missing")[0]["id"].to_string();
    cli(&db)
        .args(["review", "resolve", &id, "--action", "write_off"])
        .args(["--by", "finance-42", "--note", "x"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("allowed: accept_as_is, dismiss"));
    cli(&db)
        .args(["review", "resolve", &id, "--action", "accept_as_is"])
        .args(["--by", "finance-42", "--note", "the customer stopped"])
        .assert()
        .success();
    assert_eq!(sweep_at(&db, "2026-03-20T00:00:00Z").await, [] as [&str; 0]);
    assert_eq!(renewal_items(&db).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notice_that_it_went_past_due_expired_or_is_canceling_means_none_is_missing() {
    let notices = [
        lcn("PASTDUE", "LICENCE_PASTDUE", "2026-02-05 10:00:00"),
        lcn("EXPIRED", "LICENCE_EXPIRATION", "2026-02-08 10:00:00"),
        lcn(
            "ACTIVE",
            "SCHEDULED_FOR_CANCELATION_ON_DEMAND",
            "2026-01-20 10:00:00",
        ),
    ];
    for notice in notices {
        // The LCN before and after the payment notification.
        for lcn_first in [true, false] {
            let db = books();
            let mut bodies = vec![ipn(&first_order()), notice.clone()];
            if lcn_first {
                bodies.reverse();
            }
            process(&db, None, &bodies);
            assert_eq!(sweep_at(&db, "2026-02-20T00:00:00Z").await, [] as [&str; 0]);
            assert_eq!(renewal_items(&db).await, []);
        }
    }
    // An item already open closes when the past-due notice arrives late.
    let db = books();
    process(&db, None, &[ipn(&first_order())]);
    assert_eq!(
        sweep_at(&db, "2026-02-20T00:00:00Z").await,
        ["renewal_missing"]
    );
    process(
        &db,
        None,
        &[lcn("PASTDUE", "LICENCE_PASTDUE", "2026-02-06 10:00:00")],
    );
    assert_eq!(sweep_at(&db, "2026-02-21T00:00:00Z").await, [] as [&str; 0]);
    assert_eq!(
        without_resolver(renewal_items(&db).await),
        [item("renewal_missing", "SHOP-R1", "400000001", "resolved")]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lifetime_licence_or_a_test_order_never_misses_a_renewal() {
    let db = books();
    let lifetime = Sale {
        expiry: "9999-12-31 23:59:59",
        lifetime: true,
        ..first_order()
    };
    let test = Sale {
        refno: "400000009",
        refnoext: "SHOP-T1",
        test: true,
        ..first_order()
    };
    process(&db, None, &[ipn(&lifetime), ipn(&test)]);
    // The lifetime licence is a subscription; the test order made none.
    let subs = json(cli(&db).args(["subscriptions", "list", "--format", "json"]));
    assert_eq!(subs.as_array().map(Vec::len), Some(1), "{subs}");
    assert_eq!(subs[0]["lifetime"], true, "{subs}");
    assert_eq!(sweep_at(&db, "2030-01-01T00:00:00Z").await, [] as [&str; 0]);
    assert_eq!(renewal_items(&db).await, []);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewal_paid_after_a_cancellation_opens_renewal_after_cancel_in_either_arrival_order() {
    let canceled = lcn("CANCELED", "LICENCE_CHANGE", "2026-01-20 10:00:00");
    for lcn_first in [true, false] {
        let db = books();
        process(&db, None, &[ipn(&first_order())]);
        let (early, late) = if lcn_first {
            (canceled.clone(), ipn(&renewal()))
        } else {
            (ipn(&renewal()), canceled.clone())
        };
        process(&db, None, &[early]);
        assert_eq!(sweep_at(&db, "2026-02-06T00:00:00Z").await, [] as [&str; 0]);
        process(&db, None, &[late]);
        assert_eq!(
            sweep_at(&db, "2026-02-06T00:00:00Z").await,
            ["renewal_after_cancel"],
            "LCN first: {lcn_first}"
        );
        assert_eq!(
            without_resolver(renewal_items(&db).await),
            [item(
                "renewal_after_cancel",
                "400000002",
                "400000002",
                "open"
            )]
        );
        let items = listed(&db, "renewal_after_cancel");
        let details = items[0]["details"].as_str().expect("details");
        assert!(
            details.contains("renewal 400000002")
                && details.contains(LICENCE)
                && details.contains("said it was canceled"),
            "{details}"
        );
        // Raised once per renewal order.
        assert_eq!(sweep_at(&db, "2026-02-06T00:00:00Z").await, [] as [&str; 0]);
        assert_eq!(sweep_at(&db, "2026-02-07T00:00:00Z").await, [] as [&str; 0]);
        assert_eq!(renewal_items(&db).await.len(), 1);
    }
    // Active again before the renewal was paid: nothing, and an item
    // opened before that notice arrived closes.
    let db = books();
    process(
        &db,
        None,
        &[ipn(&first_order()), canceled.clone(), ipn(&renewal())],
    );
    assert_eq!(
        sweep_at(&db, "2026-02-06T00:00:00Z").await,
        ["renewal_after_cancel"]
    );
    process(
        &db,
        None,
        &[lcn("ACTIVE", "LICENCE_CHANGE", "2026-01-25 10:00:00")],
    );
    assert_eq!(sweep_at(&db, "2026-02-06T00:00:00Z").await, [] as [&str; 0]);
    assert_eq!(
        without_resolver(renewal_items(&db).await),
        [item(
            "renewal_after_cancel",
            "400000002",
            "400000002",
            "resolved"
        )]
    );
    let db = books();
    process(
        &db,
        None,
        &[
            lcn("ACTIVE", "LICENCE_CHANGE", "2026-01-25 10:00:00"),
            ipn(&renewal()),
            canceled,
            ipn(&first_order()),
        ],
    );
    assert_eq!(sweep_at(&db, "2026-02-06T00:00:00Z").await, [] as [&str; 0]);
    assert_eq!(renewal_items(&db).await, []);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_command_takes_the_renewal_grace_from_its_flag_and_environment() {
    let db = books();
    process(&db, None, &[ipn(&first_order())]);
    // Five days after the term ended: within a week's grace.
    cli(&db)
        .args(["sweep", "--as-of", "2026-02-10", "--renewal-grace", "7days"])
        .assert()
        .success()
        .stdout(predicate::str::contains("renewal_missing").not());
    cli(&db)
        .env("IPN_RENEWAL_GRACE", "7days")
        .args(["sweep", "--as-of", "2026-02-10"])
        .assert()
        .success()
        .stdout(predicate::str::contains("renewal_missing").not());
    assert_eq!(renewal_items(&db).await, []);
    // The default grace (3 days) is past.
    cli(&db)
        .env_remove("IPN_RENEWAL_GRACE")
        .args(["sweep", "--as-of", "2026-02-10"])
        .assert()
        .success()
        .stdout(predicate::str::contains("renewal_missing").and(predicate::str::contains(LICENCE)));
    assert_eq!(renewal_items(&db).await.len(), 1);
}
