//! Issue 20, one view of each listing: `notifications list` (the console's
//! notification log on the command line: filters, limit, table, CSV and
//! JSON), and the human tables of the listings, which show what came from
//! outside without letting it drive the operator's terminal.

use std::collections::{BTreeMap, BTreeSet};

use assert_cmd::Command;

use crate::cli_reconcile::{cli, create_books, import_and_process_fixtures};
use crate::helpers::{TestDb, personal_data};

/// A fresh database with the fixtures' orders imported and their 22
/// notifications processed (16 applied, 5 ignored, 1 mismatch).
fn books() -> TestDb {
    let db = TestDb::new();
    create_books(&db);
    import_and_process_fixtures(&db);
    db
}

/// Standard output and standard error of a command that succeeds.
fn run(cmd: &mut Command) -> (String, String) {
    let output = cmd.assert().success().get_output().clone();
    (
        String::from_utf8(output.stdout).expect("utf-8"),
        String::from_utf8(output.stderr).expect("utf-8"),
    )
}

fn list(db: &TestDb, args: &[&str]) -> (String, String) {
    run(cli(db).args(["notifications", "list"]).args(args))
}

fn json(db: &TestDb, args: &[&str]) -> Vec<serde_json::Value> {
    let (out, _) = list(db, &[args, &["--format", "json"]].concat());
    match serde_json::from_str(&out).expect("json") {
        serde_json::Value::Array(items) => items,
        other => panic!("not a list: {other}"),
    }
}

/// The table's rows: the lines whose first column is a notification id.
fn rows(table: &str) -> Vec<&str> {
    table
        .lines()
        .filter(|line| {
            // Its first column an id, and a time in it (not the count
            // line, `4 item(s)`).
            line.split_whitespace()
                .next()
                .is_some_and(|id| id.parse::<i64>().is_ok())
                && line.split_whitespace().any(|word| {
                    word.len() == 20 && word.as_bytes()[10] == b'T' && word.ends_with('Z')
                })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn notifications_list_shows_the_log_newest_first_in_every_format() {
    let db = books();

    // JSON: every notification, newest first, the documented names.
    let all = json(&db, &["--limit", "100"]);
    assert_eq!(all.len(), 22);
    let ids: Vec<i64> = all.iter().map(|n| n["id"].as_i64().expect("id")).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for n in &all {
        *outcomes
            .entry(n["outcome"].as_str().expect("outcome").to_owned())
            .or_default() += 1;
        let object = n.as_object().expect("object");
        let keys: BTreeSet<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "id",
                "received_at",
                "order_ref",
                "processor_ref",
                "order_status",
                "amount",
                "key_id",
                "algorithm",
                "body_sha256",
                "identity",
                "repeat_of",
                "outcome",
                "reason",
                "ledger"
            ]),
            "{n}"
        );
        let digest = n["body_sha256"].as_str().expect("digest");
        assert!(
            digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
            "{n}"
        );
        // The key that verified it: the fixtures are signed with two.
        assert!(
            ["test-2025", "test-2026"].contains(&n["key_id"].as_str().expect("key id")),
            "{n}"
        );
    }
    assert_eq!(
        outcomes,
        BTreeMap::from([
            ("applied".to_owned(), 16),
            ("ignored".to_owned(), 5),
            ("mismatch".to_owned(), 1)
        ])
    );
    // The last refund of SHOP-1002 and the ledger row it made.
    let refund = all
        .iter()
        .find(|n| n["order_ref"] == "SHOP-1002" && n["amount"] == "-29.99 USD")
        .expect("the second refund");
    assert_eq!(refund["order_status"], "REFUND");
    assert_eq!(refund["processor_ref"], "71000102");
    assert_eq!(refund["repeat_of"], serde_json::Value::Null);
    assert_eq!(
        refund["ledger"],
        serde_json::json!([{
            "order_ref": "SHOP-1002",
            "effect": "applied",
            "old_status": "partially_refunded",
            "new_status": "refunded",
            "reason": "refund of 29.99 USD recorded"
        }])
    );

    // The table: the listing's columns, one row each, the count line.
    let (table, _) = list(&db, &["--limit", "100"]);
    let header = table.lines().next().expect("header");
    for column in [
        "ID",
        "RECEIVED AT",
        "ORDER REF",
        "PROCESSOR REF",
        "ORDER STATUS",
        "AMOUNT",
        "KEY ID",
        "ALGORITHM",
        "BODY SHA256",
        "IDENTITY",
        "REPEAT OF",
        "OUTCOME",
        "REASON",
        "LEDGER",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let table_rows = rows(&table);
    assert_eq!(table_rows.len(), 22, "{table}");
    assert_eq!(
        table_rows[0].split_whitespace().next(),
        Some(ids[0].to_string().as_str())
    );
    assert!(
        table.ends_with("\n22 notification(s), newest first\n"),
        "{table}"
    );
    assert!(!table.contains("more match"), "{table}");

    // CSV: the same rows under the listing's column names.
    let (csv_text, _) = list(&db, &["--limit", "100", "--format", "csv"]);
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(
        reader.headers().expect("header").iter().collect::<Vec<_>>(),
        [
            "id",
            "received_at",
            "order_ref",
            "processor_ref",
            "order_status",
            "amount",
            "key_id",
            "algorithm",
            "body_sha256",
            "identity",
            "repeat_of",
            "outcome",
            "reason",
            "ledger"
        ]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(records.len(), 22);
    let csv_ids: Vec<i64> = records.iter().map(|r| r[0].parse().expect("id")).collect();
    assert_eq!(csv_ids, ids);

    // Nothing personal from the fixtures' bodies, in any format.
    for text in [
        &table,
        &csv_text,
        &serde_json::to_string(&all).expect("json"),
    ] {
        for item in personal_data() {
            assert!(!text.contains(&item), "{item} listed");
        }
        assert!(!text.contains("REFNO="), "no body listed");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn notifications_list_filters_as_the_console_does_and_says_when_more_match() {
    let db = books();

    let mismatch = json(&db, &["--outcome", "mismatch"]);
    assert_eq!(mismatch.len(), 1, "{mismatch:?}");
    assert_eq!(mismatch[0]["order_ref"], "SHOP-1007");
    assert_eq!(mismatch[0]["amount"], "25.00 EUR");

    let (csv_text, _) = list(&db, &["--outcome", "mismatch", "--format", "csv"]);
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(records.len(), 1);
    assert_eq!(
        (&records[0][2], &records[0][4], &records[0][11]),
        ("SHOP-1007", "COMPLETE", "mismatch")
    );

    // By order reference, by REFNO: the four of SHOP-1002.
    let (table, _) = list(&db, &["--order", "SHOP-1002"]);
    let by_order = rows(&table);
    assert_eq!(by_order.len(), 4, "{table}");
    assert!(
        by_order.iter().all(|row| row.contains("SHOP-1002")),
        "{table}"
    );
    assert!(
        table.ends_with("\n4 notification(s), newest first\n"),
        "{table}"
    );
    let by_refno = json(&db, &["--refno", "71000102"]);
    assert_eq!(by_refno.len(), 4);
    assert!(by_refno.iter().all(|n| n["order_ref"] == "SHOP-1002"));

    // By ORDERSTATUS as received, in any case; filters combine.
    let complete = json(&db, &["--status", "complete"]);
    assert_eq!(complete.len(), 6, "{complete:?}");
    assert!(complete.iter().all(|n| n["order_status"] == "COMPLETE"));
    let applied_complete = json(&db, &["--status", "COMPLETE", "--outcome", "applied"]);
    assert_eq!(applied_complete.len(), 4, "{applied_complete:?}");

    // By time: everything was received just now.
    assert_eq!(json(&db, &["--since", "2000-01-01"]).len(), 22);
    assert_eq!(json(&db, &["--until", "2000-01-01"]).len(), 0);
    let (empty, _) = list(&db, &["--since", "2999-01-01"]);
    assert_eq!(rows(&empty).len(), 0, "{empty}");
    assert!(
        empty.ends_with("\n0 notification(s), newest first\n"),
        "{empty}"
    );

    // The limit: the newest N, and a word that more match (in the
    // table's count line; on standard error for csv and json, whose
    // standard output scripts parse).
    let newest = json(&db, &["--limit", "100"])[0]["id"].clone();
    let (table, _) = list(&db, &["--limit", "3"]);
    assert_eq!(rows(&table).len(), 3, "{table}");
    assert!(
        table.contains("3 notification(s), newest first; more match: raise --limit (now 3)"),
        "{table}"
    );
    let (out, err) = list(&db, &["--limit", "3", "--format", "json"]);
    let limited: Vec<serde_json::Value> = serde_json::from_str(&out).expect("json");
    assert_eq!(limited.len(), 3);
    assert_eq!(limited[0]["id"], newest);
    assert!(err.contains("more match"), "{err}");
    let (_, err) = list(&db, &["--limit", "22", "--format", "csv"]);
    assert!(!err.contains("more match"), "{err}");
    // The default is 50: all 22, nothing more.
    let (table, _) = list(&db, &[]);
    assert_eq!(rows(&table).len(), 22, "{table}");
    assert!(!table.contains("more match"), "{table}");
}

#[tokio::test(flavor = "multi_thread")]
async fn notifications_list_refuses_what_can_match_nothing() {
    let db = books();
    for args in [
        &["--outcome", "paid"][..],
        &["--limit", "0"],
        &["--limit", "100001"],
        &["--since", "yesterday"],
        &["--since", "2026-12-01", "--until", "2026-11-30"],
    ] {
        let output = cli(&db)
            .args(["notifications", "list"])
            .args(args)
            .output()
            .expect("runs");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    let help = run(cli(&db).args(["notifications", "list", "--help"])).0;
    assert!(help.contains("Exit codes: 0 listed"), "{help}");
    assert!(help.contains("order_not_found"), "{help}");
}

/// A resolution note and a name typed by a person, with terminal escapes
/// and a line break in them: the table shows them as U+FFFD, one line per
/// item; the CSV keeps the text as stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_listing_table_neutralises_escapes_from_what_was_typed() {
    let db = books();
    let items: serde_json::Value =
        serde_json::from_str(&run(cli(&db).args(["review", "list", "--format", "json"])).0)
            .expect("json");
    let id = items[0]["id"].as_i64().expect("id").to_string();
    cli(&db)
        .args(["review", "resolve", &id])
        .args([
            "--by",
            "ops\u{1b}[31m",
            "--note",
            "checked\u{1b}[2J\rfake\nrow",
        ])
        .assert()
        .success();
    let (table, _) = run(cli(&db).args(["review", "list", "--status", "resolved"]));
    assert!(
        !table.chars().any(|c| c.is_control() && c != '\n'),
        "{table:?}"
    );
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(
        table.contains("ops\u{FFFD}[31m")
            && table.contains("checked\u{FFFD}[2J\u{FFFD}fake\u{FFFD}row"),
        "{table}"
    );
    let (csv_text, _) =
        run(cli(&db).args(["review", "list", "--status", "resolved", "--format", "csv"]));
    assert!(csv_text.contains("checked\u{1b}[2J"), "{csv_text:?}");
}
