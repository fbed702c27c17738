//! Issue 12, item 3: `settlement import` and `settlement report` on the
//! fixtures' books (orders imported, every fixture notification processed)
//! and the settlement fixtures: each difference kind, re-import changes
//! nothing, a dry run writes nothing, a mapping file, the tolerance's
//! boundary, payouts, the report against independent SQL sums, the
//! unmatched lines; fees reach the report and the journal, which still
//! balances and equals the report.
#![allow(clippy::inconsistent_digit_grouping)]

use std::collections::BTreeMap;

use ipn_reconciler::domain::Money;
use predicates::prelude::*;

use crate::cli_reconcile::{cli, create_books, import_and_process_fixtures};
use crate::finance_report::{notice_money_totals, query, report_json, totals};
use crate::helpers::{TestDb, repo_path};

fn fixture(name: &str) -> String {
    repo_path(&format!("fixtures/settlement/{name}"))
        .display()
        .to_string()
}

/// Books with the fixtures processed.
fn books() -> TestDb {
    let db = TestDb::new();
    create_books(&db);
    import_and_process_fixtures(&db);
    db
}

/// Row counts of what an import writes: lines, payouts, review items.
async fn counts(db: &TestDb) -> [i64; 3] {
    let rows = query(
        db,
        "SELECT (SELECT count(*) FROM settlement_lines), (SELECT count(*) FROM settlement_payouts), \
                (SELECT count(*) FROM review_items)",
        &[],
    )
    .await;
    [rows[0].get(0), rows[0].get(1), rows[0].get(2)]
}

/// Open review items of the settlement kinds: (kind, order_ref).
async fn settlement_items(db: &TestDb) -> Vec<(String, Option<String>)> {
    query(
        db,
        "SELECT kind, order_ref FROM review_items \
         WHERE kind IN ('settlement_unknown', 'settlement_amount_differs', 'payout_total_differs') \
         AND status = 'open' ORDER BY kind, order_ref",
        &[],
    )
    .await
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn import(db: &TestDb, extra: &[&str]) -> assert_cmd::assert::Assert {
    cli(db)
        .args(["settlement", "import", &fixture("settlement.csv")])
        .args(extra)
        .assert()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_matches_the_ledger_opens_each_difference_and_changes_nothing_the_second_time() {
    let db = books();
    let before = counts(&db).await;

    // A dry run decides everything and writes nothing.
    let dry = import(&db, &["--payouts", &fixture("payouts.csv"), "--dry-run"])
        .code(1)
        .get_output()
        .stdout
        .clone();
    let dry = String::from_utf8_lossy(&dry).into_owned();
    assert!(dry.contains("dry run, nothing written"), "{dry}");
    // Three differences of the settlement, and five fees that differ from
    // the commission their payment's notice carried (the fixtures' notices
    // say 5 %, the settlement charges 2.9 % + 0.30).
    assert!(dry.contains("8 review item(s) would open"), "{dry}");
    assert_eq!(counts(&db).await, before, "the dry run wrote nothing");

    let first = import(&db, &["--payouts", &fixture("payouts.csv")])
        .code(1)
        .get_output()
        .stdout
        .clone();
    let first = String::from_utf8_lossy(&first).into_owned();
    assert!(
        first.contains(
            "matched 8 (by order reference 1), differs 1, unknown 1, other (fees, adjustments) 1"
        ),
        "{first}"
    );
    assert!(first.contains("8 review item(s) opened"), "{first}");
    let fee_items: Vec<(String, String)> = query(
        &db,
        "SELECT order_ref, details FROM review_items WHERE kind = 'fee_differs' \
         AND status = 'open' ORDER BY order_ref",
        &[],
    )
    .await
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_eq!(
        fee_items
            .iter()
            .map(|(o, _)| o.as_str())
            .collect::<Vec<_>>(),
        [
            "SHOP-1001",
            "SHOP-1002",
            "SHOP-1003",
            "SHOP-1009",
            "SHOP-1012"
        ]
    );
    assert!(
        fee_items[0].1.contains("settlement fee 3.35 EUR")
            && fee_items[0].1.contains("commission was 5.35 EUR")
            && fee_items[0].1.contains("difference -2.00 EUR"),
        "{fee_items:?}"
    );
    // The dry run said what the import did.
    let tail = |text: &str| text.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(
        tail(&dry).replace("would open", "opened"),
        tail(&first),
        "the dry run foretold the import"
    );
    assert_eq!(
        settlement_items(&db).await,
        [
            ("payout_total_differs".to_owned(), None),
            (
                "settlement_amount_differs".to_owned(),
                Some("SHOP-1010".to_owned())
            ),
            (
                "settlement_unknown".to_owned(),
                Some("SHOP-1099".to_owned())
            ),
        ]
    );
    let details: Vec<String> = query(
        &db,
        "SELECT details FROM review_items WHERE kind LIKE 'settlement_%' OR kind = 'payout_total_differs' \
         ORDER BY id",
        &[],
    )
    .await
    .into_iter()
    .map(|r| r.get(0))
    .collect();
    assert!(
        details[0].contains("71000199") && details[0].contains("no payment in the ledger"),
        "{details:?}"
    );
    assert!(
        details[1].contains("199.00 USD") && details[1].contains("200.00 USD"),
        "{details:?}"
    );
    assert!(
        details[2].contains("B-1130-JPY") && details[2].contains("difference -10"),
        "{details:?}"
    );
    let after = counts(&db).await;
    assert_eq!(after, [before[0] + 11, before[1] + 3, before[2] + 8]);

    // Again: nothing changes, nothing opens, exit 0.
    import(&db, &["--payouts", &fixture("payouts.csv")])
        .success()
        .stdout(
            predicate::str::contains("11 imported before (skipped), 0 new")
                .and(predicate::str::contains("payouts: 3 (3 imported before)"))
                .and(predicate::str::contains("no review item opened")),
        );
    assert_eq!(counts(&db).await, after, "re-import changed nothing");

    // A payout given again with another amount is refused, nothing written.
    let changed = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(
        changed.path(),
        "batch_id,paid_on,amount,currency\nB-1130-JPY,2026-12-01,2410,JPY\n",
    )
    .expect("write");
    import(&db, &["--payouts", &changed.path().display().to_string()])
        .code(2)
        .stderr(predicate::str::contains("imported before as 2400 JPY"));
    assert_eq!(counts(&db).await, after);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_equals_independent_sums_and_lists_the_unmatched_lines() {
    let db = books();
    import(&db, &["--payouts", &fixture("payouts.csv")]).code(1);
    let output = cli(&db)
        .args(["settlement", "report", "--format", "json", "--unmatched"])
        .output()
        .expect("report");
    assert!(output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let minor = |value: &serde_json::Value, currency: &str| {
        Money::iso(value.as_str().expect("amount"), currency)
            .expect("exact")
            .minor_units()
    };
    // Independent sums: per batch and currency, by status.
    let rows = query(
        &db,
        "SELECT batch_id, currency, status, count(*)::int8, sum(gross_minor)::int8, \
                sum(fee_minor)::int8, sum(net_minor)::int8 \
         FROM settlement_lines GROUP BY batch_id, currency, status",
        &[],
    )
    .await;
    let mut expected: BTreeMap<(String, String), [i64; 7]> = BTreeMap::new();
    for r in rows {
        let e = expected.entry((r.get(0), r.get(1))).or_default();
        let status: String = r.get(2);
        let (n, gross, fee, net): (i64, i64, i64, i64) = (r.get(3), r.get(4), r.get(5), r.get(6));
        match status.as_str() {
            "matched" => {
                e[0] += n;
                e[1] += gross;
            }
            "differs" | "unknown" => {
                e[2] += n;
                e[3] += gross;
            }
            _ => {}
        }
        e[4] += fee;
        e[5] += net;
        e[6] += n;
    }
    let batches = report["batches"].as_array().expect("batches");
    assert_eq!(batches.len(), expected.len());
    for b in batches {
        let currency = b["currency"].as_str().expect("currency");
        let key = (
            b["batch_id"].as_str().expect("batch").to_owned(),
            currency.to_owned(),
        );
        let e = expected[&key];
        assert_eq!(
            [
                b["matched_lines"].as_i64().expect("n"),
                minor(&b["matched_gross"], currency),
                b["unmatched_lines"].as_i64().expect("n"),
                minor(&b["unmatched_gross"], currency),
                minor(&b["fees"], currency),
                minor(&b["net"], currency),
                b["lines"].as_i64().expect("n"),
            ],
            e,
            "{key:?}"
        );
        let payout = minor(&b["payout"], currency);
        assert_eq!(minor(&b["payout_difference"], currency), payout - e[5]);
    }
    assert_eq!(
        expected[&("B-1130-EUR".to_owned(), "EUR".to_owned())],
        [2, 196_00, 1, 45_00, 32_79, 208_21, 4]
    );
    let unmatched = report["unmatched_lines"].as_array().expect("lines");
    let refs: Vec<(&str, &str)> = unmatched
        .iter()
        .map(|l| {
            (
                l["status"].as_str().expect("status"),
                l["processor_ref"].as_str().expect("refno"),
            )
        })
        .collect();
    assert_eq!(refs, [("unknown", "71000199"), ("differs", "71000110")]);
    assert_eq!(unmatched[1]["expected"], "200.00");
    assert!(unmatched[0]["review_item_id"].as_i64().is_some());

    // CSV of the lines, and one batch only.
    cli(&db)
        .args(["settlement", "report", "--unmatched", "--format", "csv"])
        .assert()
        .success()
        .stdout(
            predicate::str::starts_with("id,batch_id,status,type,processor_ref,order_ref,currency,gross,fee,net,expected,settled_at,review_item_id\n")
                .and(predicate::str::contains(",B-1130-EUR,unknown,sale,71000199,SHOP-1099,EUR,45.00,1.61,43.39,,2026-11-30T06:00:00Z,"))
                .and(predicate::str::contains(",B-1130-USD,differs,sale,71000110,SHOP-1010,USD,199.00,6.07,192.93,200.00,")),
        );
    cli(&db)
        .args(["settlement", "report", "--batch", "B-1130-JPY"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("B-1130-JPY")
                .and(predicate::str::contains("B-1130-EUR").not())
                .and(predicate::str::contains("2410"))
                .and(predicate::str::contains("-10")),
        );
}

#[tokio::test(flavor = "multi_thread")]
async fn fees_reach_the_report_and_the_journal_which_balances_and_equals_it() {
    let db = books();
    let before = totals(&report_json(&db, &["--by", "event"]));
    import(&db, &[]).code(1);
    let fees: BTreeMap<String, i64> = query(
        &db,
        "SELECT currency, sum(fee_minor)::int8 FROM settlement_lines GROUP BY currency",
        &[],
    )
    .await
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_eq!(
        fees,
        BTreeMap::from([
            ("EUR".to_owned(), 32_79),
            ("JPY".to_owned(), 90),
            ("USD".to_owned(), 25_70)
        ])
    );
    for by in ["event", "created"] {
        let after = totals(&report_json(&db, &["--by", by]));
        for (currency, fee) in &fees {
            let t = after[currency];
            assert_eq!(t[6], *fee, "{by} {currency} fees");
            assert_eq!(
                t[7],
                t[2] - t[3] - t[4] - t[5] - t[6],
                "{by} {currency} net"
            );
            if by == "event" {
                assert_eq!(
                    t[7],
                    before[currency][7] - fee,
                    "{currency} net less the fees"
                );
            }
        }
    }
    // Periods by the settlement date: fees settled 2026-11-30 are in a
    // report --by settled of that day and not of the day before (--by
    // event dates them with their sales).
    let day_report = report_json(
        &db,
        &[
            "--by",
            "settled",
            "--from",
            "2026-11-30",
            "--to",
            "2026-11-30",
        ],
    );
    let day = totals(&day_report);
    let day_net = notice_money_totals(&day_report);
    let eve = totals(&report_json(
        &db,
        &[
            "--by",
            "settled",
            "--from",
            "2026-11-29",
            "--to",
            "2026-11-29",
        ],
    ));
    assert!(eve.values().all(|t| t[6] == 0), "{eve:?}");
    let journal = cli(&db)
        .args([
            "export",
            "journal",
            "--from",
            "2026-11-30",
            "--to",
            "2026-11-30",
            "--by",
            "settled",
            "--format",
            "json",
        ])
        .output()
        .expect("journal");
    assert!(journal.status.success());
    let lines: Vec<serde_json::Value> = serde_json::from_slice(&journal.stdout).expect("json");
    let mut sums: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut clearing: BTreeMap<String, i64> = BTreeMap::new();
    for line in &lines {
        let currency = line["currency"].as_str().expect("currency").to_owned();
        let amount = Money::iso(line["amount"].as_str().expect("amount"), &currency)
            .expect("exact")
            .minor_units();
        let movement = line["movement"].as_str().expect("movement").to_owned();
        if movement == "fee" {
            assert_eq!(line["debit_account"], "Payment processing fees");
            assert_eq!(line["credit_account"], "Processor clearing");
        }
        let sign = if line["debit_account"] == "Processor clearing" {
            1
        } else {
            -1
        };
        *clearing.entry(currency.clone()).or_default() += sign * amount;
        *sums.entry((currency, movement)).or_default() += amount;
    }
    for (currency, t) in &day {
        let sum = |m: &str| {
            sums.get(&(currency.clone(), m.to_owned()))
                .copied()
                .unwrap_or(0)
        };
        assert_eq!(
            [
                sum("payment"),
                sum("refund"),
                sum("reversal"),
                sum("chargeback"),
                sum("fee")
            ],
            [t[2], t[3], t[4], t[5], t[6]],
            "{currency}: the journal's sums are the report's"
        );
        assert_eq!(
            clearing.get(currency).copied().unwrap_or(0),
            day_net[currency][3],
            "{currency} net: the clearing account's balance"
        );
        // [vat, commission, net revenue, net]
        let n = day_net[currency];
        assert_eq!(
            n[1],
            sum("commission") - sum("commission_refund") - sum("commission_settled"),
            "{currency}: the commission still provisional"
        );
        assert_eq!(n[3], n[2] - n[1] - t[6], "{currency}: net");
    }
    assert_eq!(
        lines.iter().filter(|l| l["movement"] == "fee").count(),
        11 - 2,
        "one fee line per settlement line with a fee (the refunds have none)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mapping_file_reads_another_export_and_the_tolerance_is_a_closed_boundary() {
    let db = books();
    cli(&db)
        .args(["settlement", "import", &fixture("other-export.csv")])
        .args(["--mapping", &fixture("mapping.toml")])
        .assert()
        // The two sales' fees differ from their notices' commissions.
        .code(1)
        .stdout(predicate::str::contains(
            "matched 3 (by order reference 0), differs 0, unknown 0",
        ))
        .stdout(predicate::str::contains("fee_differs"));
    let kinds: Vec<(String, String)> = query(
        &db,
        "SELECT batch_id, kind FROM settlement_lines ORDER BY id",
        &[],
    )
    .await
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_eq!(
        kinds,
        [
            ("P-77".to_owned(), "sale".to_owned()),
            ("P-77".to_owned(), "sale".to_owned()),
            ("P-77".to_owned(), "chargeback".to_owned())
        ]
    );
    // A mapping that names an unknown field is refused with exit 2.
    let bad = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(bad.path(), "[columns]\namount = \"Gross\"\n").expect("write");
    cli(&db)
        .args(["settlement", "import", &fixture("other-export.csv")])
        .args(["--mapping", &bad.path().display().to_string()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("`amount` is not a field"));

    // The tolerance: 0.01 lets 199.99 match 200.00; 0.009 is no cent.
    let file = |batch: &str, gross: &str| {
        let f = tempfile::NamedTempFile::new().expect("temp");
        std::fs::write(
            f.path(),
            format!(
                "batch_id,processor_ref,order_ref,type,gross,fee,net,currency,settled_at\n\
                 {batch},71000110,SHOP-1010,sale,{gross},0,{gross},USD,2026-11-30\n"
            ),
        )
        .expect("write");
        f
    };
    let below = file("T-1", "199.99");
    cli(&db)
        .args(["settlement", "import", &below.path().display().to_string()])
        .args(["--tolerance", "0.009", "--dry-run"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("differs 1"));
    cli(&db)
        .args(["settlement", "import", &below.path().display().to_string()])
        .args(["--tolerance", "0.01"])
        .assert()
        .success()
        .stdout(predicate::str::contains("matched 1"));
    // From the configuration too; a bad value is exit 2.
    let jpy = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(
        jpy.path(),
        "batch_id,processor_ref,order_ref,type,gross,fee,net,currency,settled_at\n\
         T-2,71000103,SHOP-1003,sale,2499,0,2499,JPY,2026-11-30\n",
    )
    .expect("write");
    cli(&db)
        .args([
            "settlement",
            "import",
            &jpy.path().display().to_string(),
            "--dry-run",
        ])
        .env("IPN_SETTLEMENT_TOLERANCE", "0.99")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("differs 1"));
    cli(&db)
        .args([
            "settlement",
            "import",
            &jpy.path().display().to_string(),
            "--dry-run",
        ])
        .env("IPN_SETTLEMENT_TOLERANCE", "1")
        .assert()
        .success()
        .stdout(predicate::str::contains("matched 1"));
    cli(&db)
        .args(["settlement", "import", &jpy.path().display().to_string()])
        .env("IPN_SETTLEMENT_TOLERANCE", "-1")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("settlement-tolerance"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_file_names_its_lines_and_imports_nothing() {
    let db = books();
    let before = counts(&db).await;
    let bad = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(
        bad.path(),
        "batch_id,processor_ref,order_ref,type,gross,fee,net,currency,settled_at\n\
         B,71000101,SHOP-1001,sale,107.00,3.35,103.65,EUR,2026-11-30\n\
         B,71000112,SHOP-1012,sale,89.001,0,89.001,EUR,2026-11-30\n\
         B,71000112,SHOP-1012,bonus,1.00,0,1.00,EUR,2026-11-30\n",
    )
    .expect("write");
    cli(&db)
        .args(["settlement", "import", &bad.path().display().to_string()])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("line 3: gross: amount has more decimals")
                .and(predicate::str::contains("line 4: type `bonus`")),
        );
    assert_eq!(counts(&db).await, before);
    cli(&db)
        .args(["settlement", "import", "/nonexistent/settlement.csv"])
        .assert()
        .code(3);
}

/// The SHA-256 of `parts`, each followed by 0x1f: a line key computed here,
/// independently of the code.
fn key_by_hand(parts: &[&str]) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0x1f]);
    }
    hex::encode(hash.finalize())
}

/// Each currency's fee total of the settlement lines, in minor units.
async fn fee_totals(db: &TestDb) -> Vec<(String, i64)> {
    query(
        db,
        "SELECT currency, sum(fee_minor)::BIGINT FROM settlement_lines GROUP BY currency ORDER BY currency",
        &[],
    )
    .await
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Issue 22 item 5: the same export with its dates written date-only, or
/// with another `date_format` through `--mapping`, adds no line and no fee;
/// lines imported under the old identity (which hashed the time) are
/// re-keyed by the migration, so re-importing them adds nothing either.
#[tokio::test(flavor = "multi_thread")]
async fn re_importing_with_another_date_format_adds_no_line_and_no_fee() {
    let db = books();
    import(&db, &["--payouts", &fixture("payouts.csv")]).code(1);
    let after_first = counts(&db).await;
    // The fixture's fees, summed by hand: EUR 3.35 + 2.83 + 1.61 + 25.00,
    // JPY 90, USD 1.75 + 6.07 + 2.88 + 15.00.
    let fees = vec![
        ("EUR".to_owned(), 32_79),
        ("JPY".to_owned(), 90),
        ("USD".to_owned(), 25_70),
    ];
    assert_eq!(fee_totals(&db).await, fees);
    assert_eq!(after_first[0], 11);

    let original = std::fs::read_to_string(fixture("settlement.csv")).expect("fixture");
    let date_only = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(
        date_only.path(),
        original.replace("2026-11-30T06:00:00Z", "2026-11-30"),
    )
    .expect("write");
    let reimport = |path: &std::path::Path, extra: &[&str]| {
        cli(&db)
            .args(["settlement", "import", &path.display().to_string()])
            .args(extra)
            .assert()
            .success()
            .stdout(predicate::str::contains(
                "11 line(s), 11 imported before (skipped), 0 new",
            ))
    };
    reimport(date_only.path(), &[]);
    assert_eq!(counts(&db).await, after_first);
    assert_eq!(fee_totals(&db).await, fees);

    // Another format through a mapping: day first, local minutes.
    let mapped = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(
        mapped.path(),
        original.replace("2026-11-30T06:00:00Z", "30.11.2026 07:15"),
    )
    .expect("write");
    let mapping = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(mapping.path(), "date_format = \"%d.%m.%Y %H:%M\"\n").expect("write");
    reimport(
        mapped.path(),
        &["--mapping", &mapping.path().display().to_string()],
    );
    assert_eq!(counts(&db).await, after_first);
    assert_eq!(fee_totals(&db).await, fees);

    // Lines as the old identity stored them: the migration's down.sql
    // restores the keys that hashed the time (2026-11-30T06:00:00Z is
    // 1796018400 seconds since the epoch).
    let migration = repo_path("migrations/2026-12-07-000070_settlement_line_identity");
    let script = |name: &str| std::fs::read_to_string(migration.join(name)).expect("migration");
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let sale_key = "SELECT line_key, occurrence FROM settlement_lines \
                    WHERE processor_ref = '71000101' AND kind = 'sale'";
    let sale = &[
        "B-1130-EUR",
        "71000101",
        "SHOP-1001",
        "sale",
        "10700",
        "335",
        "10365",
        "EUR",
    ];
    let row = client.query_one(sale_key, &[]).await.expect("sale");
    assert_eq!(row.get::<_, String>(0), key_by_hand(sale));
    client
        .batch_execute(&script("down.sql"))
        .await
        .expect("down");
    let mut old = sale.to_vec();
    old.push("1796018400");
    let row = client.query_one(sale_key, &[]).await.expect("sale");
    assert_eq!(row.get::<_, String>(0), key_by_hand(&old));
    // The append-only trigger is back.
    let update = client
        .execute("UPDATE settlement_lines SET occurrence = 1", &[])
        .await;
    assert!(update.is_err(), "settlement_lines is append-only again");
    client.batch_execute(&script("up.sql")).await.expect("up");
    let row = client.query_one(sale_key, &[]).await.expect("sale");
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i32>(1)),
        (key_by_hand(sale), 1)
    );
    // The two USD refunds of 71000102 are different amounts: one
    // occurrence each.
    let occurrences: Vec<i32> = client
        .query(
            "SELECT occurrence FROM settlement_lines WHERE kind = 'refund' ORDER BY id",
            &[],
        )
        .await
        .expect("refunds")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(occurrences, [1, 1]);
    reimport(date_only.path(), &[]);
    assert_eq!(counts(&db).await, after_first);
    assert_eq!(fee_totals(&db).await, fees);
}

/// Issue 22 item 5: a line added to a batch after its payout was recorded
/// opens `payout_total_differs` (a dry run says so and writes nothing); a
/// line of a batch with no payout yet opens nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_line_added_after_its_batchs_payout_opens_payout_total_differs() {
    let db = books();
    import(&db, &["--payouts", &fixture("payouts.csv")]).code(1);
    let before = counts(&db).await;
    let late = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(
        late.path(),
        "batch_id,processor_ref,order_ref,type,gross,fee,net,currency,settled_at\n\
         B-1130-EUR,,,adjustment,-5.00,0,-5.00,EUR,2026-12-02\n\
         B-1201-EUR,,,adjustment,-1.00,0,-1.00,EUR,2026-12-02\n",
    )
    .expect("write");
    let path = late.path().display().to_string();
    // B-1130-EUR: 103.65 + 86.17 + 43.39 - 25.00 = 208.21 transferred; with
    // the late -5.00, five lines sum to 203.21, 5.00 less than the transfer.
    let details = "batch B-1130-EUR: 1 line(s) in EUR (net -5.00) added after its payout of 208.21 EUR on 2026-12-01 was recorded; the batch's 5 net line(s) now sum to 203.21 (difference 5.00)";
    cli(&db)
        .args(["settlement", "import", &path, "--dry-run"])
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("1 review item(s) would open")
                .and(predicate::str::contains(details)),
        );
    assert_eq!(counts(&db).await, before, "the dry run wrote nothing");
    cli(&db)
        .args(["settlement", "import", &path])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("1 review item(s) opened"));
    let items: Vec<(String, String)> = query(
        &db,
        "SELECT kind, details FROM review_items WHERE details LIKE '%added after its payout%'",
        &[],
    )
    .await
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_eq!(
        items,
        [("payout_total_differs".to_owned(), details.to_owned())]
    );
    assert_eq!(counts(&db).await, [before[0] + 2, before[1], before[2] + 1]);
    // Importing it again adds nothing and opens nothing.
    cli(&db)
        .args(["settlement", "import", &path])
        .assert()
        .success()
        .stdout(predicate::str::contains("no review item opened"));
}

/// Issue 22 item 5: a settlement or payouts file over 64 MiB is refused,
/// naming the file and the limit, with the exit code of a malformed file
/// (2), nothing imported: by its size for a file, while reading for a
/// stream.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_over_the_size_limit_is_refused_naming_it_and_the_limit() {
    let db = books();
    let before = counts(&db).await;
    // 64 MiB + 1 byte, sparse: no disk is used.
    let big = tempfile::NamedTempFile::new().expect("temp");
    big.as_file()
        .set_len(64 * 1024 * 1024 + 1)
        .expect("set_len");
    let big_path = big.path().display().to_string();
    cli(&db)
        .args(["settlement", "import", &big_path])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains(format!(
                "{big_path}: the file is larger than the limit of 64 MiB"
            ))
            .and(predicate::str::contains("67108865 bytes")),
        );
    cli(&db)
        .args(["settlement", "import", &fixture("settlement.csv")])
        .args(["--payouts", &big_path])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "{big_path}: the file is larger than the limit of 64 MiB"
        )));
    // A stream has no size: it is refused once more than 64 MiB is read.
    cli(&db)
        .args(["settlement", "import", "/dev/zero"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "/dev/zero: the file is larger than the limit of 64 MiB",
        ));
    assert_eq!(counts(&db).await, before, "nothing imported");
}
