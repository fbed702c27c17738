//! Issue 12, item 6: the finance metrics of a running `serve`, read from
//! `/metrics` and checked against the database: open exceptions by kind
//! and the oldest's age, money at risk per currency in minor units, and
//! the time from an order's creation to its reconciliation.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;

use crate::finance_report::{SHOPPER, notification, query};
use crate::helpers::TestDb;
use crate::helpers::amqp::{TestQueue, import_orders_csv, wait_until};
use crate::helpers::daemon::Daemon;

/// The value of the series whose name and labels start with `prefix`.
fn series(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// `(le, count)` of every bucket of a histogram.
fn buckets(metrics: &str, name: &str) -> Vec<(f64, i64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn finance_gauges_and_the_reconciliation_histogram_agree_with_the_database() {
    let db = TestDb::new();
    let store = db.store().await;
    let now = Utc::now();
    let ago = |days: i64, hours: i64| {
        (now - chrono::Duration::days(days) - chrono::Duration::hours(hours))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let csv = format!(
        "order_ref,amount,currency,created_at\n\
         M-1,100.00,EUR,{}\nM-2,40.00,USD,{}\nM-3,25.00,EUR,{}\nM-4,30.00,EUR,{}\n\
         M-5,5000,JPY,{}\nM-6,10.00,USD,{}\nM-7,60.00,GBP,{}\n",
        ago(3, 0),
        ago(20, 0),
        ago(3, 5),
        ago(0, 1),
        ago(3, 0),
        ago(4, 0),
        ago(1, 0)
    );
    import_orders_csv(&store, &csv).await;
    let sends: Vec<(&str, u64, &str, &str, &str)> = vec![
        ("M-1", 2001, "COMPLETE", "100.00", "EUR"),
        ("M-2", 2002, "PAYMENT_AUTHORIZED", "40.00", "USD"),
        ("M-2", 2002, "COMPLETE", "40.00", "USD"),
        ("M-3", 2003, "CANCELED", "25.00", "EUR"),
        ("M-4", 2004, "COMPLETE", "35.00", "EUR"),
        ("M-5", 2005, "PENDING", "5000", "JPY"),
        ("M-6", 2006, "COMPLETE", "10.00", "USD"),
        ("M-6", 2006, "REFUND", "-10.00", "USD"),
        ("M-7", 2007, "SUSPECT", "60.00", "GBP"),
        ("NOPE-1", 2010, "COMPLETE", "12.00", "EUR"),
        ("NOPE-1", 2010, "COMPLETE", "12.00", "EUR"),
        ("NOPE-2", 2011, "PAYMENT_RECEIVED", "7.50", "USD"),
        ("NOPE-3", 2012, "REFUND", "-3.00", "USD"),
    ];
    let bodies: Vec<Vec<u8>> = sends
        .iter()
        .enumerate()
        .map(|(i, (order, refno, status, amount, currency))| {
            notification(
                order,
                *refno,
                status,
                amount,
                currency,
                SHOPPER,
                9000 + i as u64,
                "20261130120000",
            )
        })
        .collect();

    let queue = TestQueue::new("200ms");
    let daemon = Daemon::start(
        &db,
        &queue,
        &[
            ("IPN_GAUGE_REFRESH_INTERVAL", "300ms"),
            ("IPN_ORPHAN_WINDOW", "0s"),
        ],
    );
    let ready = wait_until(Duration::from_secs(20), || async {
        matches!(daemon.get("/readyz").await, Some((200, _)))
    })
    .await;
    assert!(ready, "ready; logs:\n{}", daemon.logs());
    queue.publish(&bodies).await;

    // Every delivery recorded, and the three orphans' items open.
    let settled = wait_until(Duration::from_secs(40), || async {
        let rows = query(
            &db,
            "SELECT (SELECT count(*) FROM notifications WHERE processed_at IS NOT NULL)::int8, \
                    (SELECT count(*) FROM review_items \
                     WHERE kind = 'orphan_payment' AND status = 'open')::int8",
            &[],
        )
        .await;
        (rows[0].get::<_, i64>(0), rows[0].get::<_, i64>(1)) == (bodies.len() as i64, 3)
    })
    .await;
    assert!(settled, "logs:\n{}", daemon.logs());

    // What the database says now.
    let open: BTreeMap<String, i64> = query(
        &db,
        "SELECT kind, count(*)::int8 FROM review_items WHERE status = 'open' GROUP BY kind",
        &[],
    )
    .await
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert!(open.len() >= 3, "{open:?}");
    // Orphaned: the payments reported for unknown orders, once per order
    // and REFNO (a refund is not a payment); mismatched: the orders in
    // state mismatch, at their amount.
    let mut orphaned: BTreeMap<String, i64> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for r in query(
        &db,
        "SELECT order_ref, processor_ref, currency, amount_minor, order_status \
         FROM notifications WHERE outcome = 'order_not_found' ORDER BY id",
        &[],
    )
    .await
    {
        let (order, refno, currency, minor, status): (String, String, String, i64, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        if ["COMPLETE", "PAYMENT_RECEIVED", "AUTHRECEIVED"].contains(&status.as_str())
            && seen.insert((order, refno))
        {
            *orphaned.entry(currency).or_default() += minor.abs();
        }
    }
    assert_eq!(
        orphaned,
        BTreeMap::from([("EUR".to_owned(), 1200), ("USD".to_owned(), 750)])
    );
    let mismatched: BTreeMap<String, i64> = query(
        &db,
        "SELECT currency, sum(expected_minor)::int8 FROM orders WHERE status = 'mismatch' \
         GROUP BY currency",
        &[],
    )
    .await
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_eq!(mismatched, BTreeMap::from([("EUR".to_owned(), 3000)]));
    // Reconciled: the ledger rows that took an order from a waiting state
    // into an explained end, and how long after the order's creation.
    let reconciled: Vec<f64> = query(
        &db,
        "SELECT extract(epoch FROM e.created_at - o.created_at)::float8 \
         FROM order_events e JOIN orders o ON o.id = e.order_id \
         WHERE e.old_status IN ('pending', 'authorized', 'suspect', 'mismatch') \
           AND e.new_status IN ('paid', 'partially_refunded', 'refunded', 'canceled', 'reversed')",
        &[],
    )
    .await
    .into_iter()
    .map(|r| r.get(0))
    .collect();
    assert_eq!(reconciled.len(), 4, "M-1, M-2, M-3 and M-6: {reconciled:?}");

    // The gauges catch up within a refresh or two.
    let expected_series: Vec<String> = orphaned
        .iter()
        .map(|(currency, minor)| {
            format!(
                "ipn_money_at_risk_minor_units{{kind=\"orphaned\",currency=\"{currency}\",exponent=\"2\"}} {minor}"
            )
        })
        .chain(mismatched.iter().map(|(currency, minor)| {
            format!(
                "ipn_money_at_risk_minor_units{{kind=\"mismatched\",currency=\"{currency}\",exponent=\"2\"}} {minor}"
            )
        }))
        .chain(
            open.iter()
                .map(|(kind, n)| format!("ipn_review_items_open{{kind=\"{kind}\"}} {n}")),
        )
        .collect();
    let caught_up = wait_until(Duration::from_secs(20), || async {
        daemon
            .get("/metrics")
            .await
            .is_some_and(|(_, m)| expected_series.iter().all(|s| m.contains(s.as_str())))
    })
    .await;
    let metrics = daemon
        .get("/metrics")
        .await
        .map(|r| r.1)
        .unwrap_or_default();
    assert!(caught_up, "{expected_series:#?} in\n{metrics}");
    // Nothing else is at risk (no JPY, no GBP; nothing settled yet).
    let at_risk = metrics
        .lines()
        .filter(|l| l.starts_with("ipn_money_at_risk_minor_units{"))
        .count();
    assert_eq!(at_risk, expected_series.len() - open.len(), "{metrics}");

    // The oldest item of each kind: as old as the database says now, less
    // at most the time since the last refresh.
    let ages: BTreeMap<String, i64> = query(
        &db,
        "SELECT kind, floor(extract(epoch FROM clock_timestamp() - min(created_at)))::int8 \
         FROM review_items WHERE status = 'open' GROUP BY kind",
        &[],
    )
    .await
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_eq!(
        ages.keys().collect::<Vec<_>>(),
        open.keys().collect::<Vec<_>>()
    );
    for (kind, age) in &ages {
        let shown = series(
            &metrics,
            &format!("ipn_review_oldest_open_age_by_kind_seconds{{kind=\"{kind}\"}}"),
        )
        .unwrap_or_else(|| panic!("{kind} age in\n{metrics}"));
        assert!(
            shown <= *age as f64 + 1.0 && shown >= *age as f64 - 3.0,
            "{kind}: {shown} vs {age}"
        );
    }

    // One observation per reconciled order, each in the bucket the ledger
    // puts it in (the orders are hours or days old, far from the edges).
    let name = "ipn_order_to_reconciled_seconds";
    assert_eq!(
        series(&metrics, &format!("{name}_count")),
        Some(reconciled.len() as f64),
        "{metrics}"
    );
    let histogram = buckets(&metrics, name);
    assert!(histogram.len() >= 12, "{metrics}");
    for (le, count) in histogram {
        let within = reconciled.iter().filter(|s| **s <= le).count() as i64;
        assert_eq!(count, within, "bucket le={le}");
    }
    let sum = series(&metrics, &format!("{name}_sum")).expect("sum");
    let expected_sum: f64 = reconciled.iter().sum();
    assert!((sum - expected_sum).abs() < 60.0, "{sum} vs {expected_sum}");

    // The batched path recorded the money movements too.
    let rows = query(
        &db,
        "SELECT (SELECT coalesce(sum(amount_minor), 0) FROM money_movements \
                 WHERE kind = 'payment')::int8, \
                (SELECT coalesce(sum(paid_minor), 0) FROM payments)::int8",
        &[],
    )
    .await;
    assert_eq!(rows[0].get::<_, i64>(0), rows[0].get::<_, i64>(1));
    assert_eq!(rows[0].get::<_, i64>(0), 10_000 + 4_000 + 1_000);
}
