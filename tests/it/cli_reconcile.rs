//! The operator's path of issue 3: `orders import`, `process` and `orders
//! show` on the fixtures, against a fresh database; then a scan of every
//! stored text for card numbers and personal data.

use crate::helpers::{
    TestDb, dump_all_text, expected_states, fixture_files, personal_data, repo_path,
};
use assert_cmd::Command;
use ipn_reconciler::domain::contains_pan;
use ipn_reconciler::domain::review::ReviewAction;
use ipn_reconciler::services::review::{ResolveRequest, resolve};
use predicates::prelude::*;

pub(crate) fn cli(db: &TestDb) -> Command {
    let mut cmd = Command::cargo_bin("ipn-reconciler").expect("binary");
    cmd.env("DATABASE_URL", &db.url)
        .env("IPN_KEYS_FILE", repo_path("fixtures/keys/test.keys"))
        .env(
            "PSEUDONYM_KEY_FILE",
            repo_path("fixtures/keys/pseudonym.key"),
        )
        .env_remove("IPN_ALLOW_MD5")
        .env_remove("IPN_APPLY_TEST_ORDERS");
    cmd
}

/// A new database with the schema, as an operator makes one.
pub(crate) fn create_books(db: &TestDb) {
    cli(db)
        .args(["migrate", "--create-db"])
        .assert()
        .success()
        .stdout(predicate::str::contains("applied migration"));
}

/// The fixtures' orders imported and every fixture notification processed.
pub(crate) fn import_and_process_fixtures(db: &TestDb) {
    cli(db)
        .args(["orders", "import"])
        .arg(repo_path("fixtures/orders.csv"))
        .assert()
        .success();
    cli(db)
        .arg("process")
        .args(fixture_files())
        .assert()
        .success();
}

/// Values that are hex digests (body SHA-256, pseudonyms) are not card
/// numbers even when a run of their digits happens to pass the Luhn check.
fn is_hex_digest(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test(flavor = "multi_thread")]
async fn fixtures_reconcile_to_the_states_the_spec_implies_and_leak_nothing() {
    let db = TestDb::new();
    create_books(&db);
    cli(&db)
        .args(["orders", "import"])
        .arg(repo_path("fixtures/orders.csv"))
        .assert()
        .success()
        .stdout(predicate::str::contains("imported 12 new order(s)"));

    let files = fixture_files();
    let processed = cli(&db).arg("process").args(&files).assert().success();
    let output = processed.get_output();
    let stdout = String::from_utf8(output.stdout.clone()).expect("utf-8");
    let stderr = String::from_utf8(output.stderr.clone()).expect("utf-8");
    assert_eq!(
        stdout.lines().count(),
        files.len() + 1,
        "one line per file, then the totals:\n{stdout}"
    );
    assert_eq!(
        stdout.lines().last(),
        Some(
            "total: applied=16 duplicate=0 ignored=5 mismatch=1 order_not_found=0 \
             invalid_signature=0 malformed=0"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("13-shop-1007-complete-wrong-amount.txt mismatch"),
        "{stdout}"
    );
    assert!(
        stdout.contains("14-shop-1008-test-order.txt ignored"),
        "{stdout}"
    );

    // Replaying every file is harmless.
    let replay = cli(&db).arg("process").args(&files).assert().success();
    let replay_out = String::from_utf8(replay.get_output().stdout.clone()).expect("utf-8");
    assert_eq!(
        replay_out
            .lines()
            .filter(|l| l.contains(" duplicate order="))
            .count(),
        files.len(),
        "{replay_out}"
    );
    assert!(
        replay_out.contains(&format!(
            "total: applied=0 duplicate={} ignored=0",
            files.len()
        )),
        "{replay_out}"
    );

    for (order_ref, expected) in expected_states() {
        let shown = cli(&db)
            .args(["orders", "show", &order_ref, "--format", "json"])
            .assert()
            .success();
        let order: serde_json::Value =
            serde_json::from_slice(&shown.get_output().stdout).expect("json");
        for field in ["status", "paid", "refunded", "processor_ref"] {
            assert_eq!(order[field], expected[field], "{order_ref} {field}");
        }
        assert!(order["events"].is_array(), "{order_ref} has a ledger");
        assert!(order["amount"].is_string() && order["currency"].is_string());
    }

    // Nothing stored or printed holds a card number or personal data.
    let stored = dump_all_text(&db.url).await;
    assert!(stored.len() > 200, "the dump covers the tables");
    let personal = personal_data();
    let printed = format!("{stdout}\n{stderr}\n{replay_out}");
    for (table, column, value) in &stored {
        assert!(
            is_hex_digest(value) || !contains_pan(value),
            "card number in {table}.{column}"
        );
        for item in &personal {
            assert!(
                !value.contains(item.as_str()),
                "personal data in {table}.{column}"
            );
        }
    }
    for item in &personal {
        assert!(
            !printed.contains(item.as_str()),
            "personal data in the output"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_csv_imports_nothing_and_names_the_lines() {
    let db = TestDb::new();
    create_books(&db);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("orders.csv");
    std::fs::write(
        &file,
        "order_ref,amount,currency\nGOOD-1,1.00,EUR\nBAD-1,1.001,EUR\n",
    )
    .expect("write csv");
    cli(&db)
        .args(["orders", "import"])
        .arg(&file)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("line 3"))
        .stderr(predicate::str::contains("nothing imported"));
    cli(&db)
        .args(["orders", "list", "--format", "csv"])
        .assert()
        .success()
        .stdout(predicate::str::contains("GOOD-1").not());
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_list_filters_by_status_in_every_format() {
    let db = TestDb::new();
    create_books(&db);
    import_and_process_fixtures(&db);
    let json = cli(&db)
        .args(["orders", "list", "--status", "paid", "--format", "json"])
        .assert()
        .success();
    let listed: Vec<serde_json::Value> =
        serde_json::from_slice(&json.get_output().stdout).expect("json");
    let refs: Vec<&str> = listed
        .iter()
        .filter_map(|o| o["order_ref"].as_str())
        .collect();
    assert_eq!(refs.len(), 4, "{refs:?}");
    assert!(listed.iter().all(|o| o["status"] == "paid"));
    cli(&db)
        .args(["orders", "list", "--status", "paid", "--format", "csv"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with(
            "order_ref,status,amount,currency",
        ));
    cli(&db)
        .args(["orders", "list", "--status", "nonsense"])
        .assert()
        .code(2);
    cli(&db)
        .args(["orders", "show", "NO-SUCH-ORDER"])
        .assert()
        .code(1);
}

#[tokio::test(flavor = "multi_thread")]
async fn finance_sees_the_books_and_resolves_exceptions() {
    let db = TestDb::new();
    create_books(&db);
    import_and_process_fixtures(&db);

    let report = cli(&db)
        .args(["report", "--format", "json"])
        .assert()
        .success();
    let summary: serde_json::Value =
        serde_json::from_slice(&report.get_output().stdout).expect("json");
    let by_state: std::collections::BTreeMap<String, i64> = summary["orders_by_state"]
        .as_array()
        .expect("array")
        .iter()
        .map(|count| {
            (
                count["state"].as_str().unwrap_or("").to_owned(),
                count["orders"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let mut expected_by_state = std::collections::BTreeMap::new();
    for (_, order) in expected_states() {
        *expected_by_state
            .entry(order["status"].as_str().unwrap_or("").to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(by_state, expected_by_state);
    let usd = summary["totals"]
        .as_array()
        .expect("totals")
        .iter()
        .find(|t| t["currency"] == "USD")
        .expect("USD totals");
    // SHOP-1002 49.99 + SHOP-1009 89.00 + SHOP-1010 200.00 paid; 49.99
    // refunded; SHOP-1009's 89.00 charged back, which is not revenue.
    assert_eq!(usd["paid"], "338.99");
    assert_eq!(usd["refunded"], "49.99");
    assert_eq!(usd["charged_back"], "89.00");
    // Revenue excluding VAT (none in these notices); the net is after the
    // commission their notices carried: SHOP-1002 2.49 (its two refunds
    // gave back 1.00 and 1.50), SHOP-1009 4.45 (its chargeback notice
    // gives the 4.45 back, as a full refund would), SHOP-1010 10.00: 9.99.
    assert_eq!(usd["net_revenue"], "200.00");
    assert_eq!(usd["vat"], "0.00");
    assert_eq!(usd["commission"], "9.99");
    assert_eq!(usd["net"], "190.01");

    let listed = cli(&db)
        .args([
            "review",
            "list",
            "--kind",
            "amount_mismatch",
            "--format",
            "json",
        ])
        .assert()
        .success();
    let items: Vec<serde_json::Value> =
        serde_json::from_slice(&listed.get_output().stdout).expect("json");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["order_ref"], "SHOP-1007");
    let id = items[0]["id"].as_i64().expect("id").to_string();
    // A card number typed by a person is refused, whatever its grouping,
    // and nothing is stored.
    for (by, note, refused) in [
        ("finance-42", "card 4111111111111111 refunded", "--note"),
        ("finance-42", "card 4111.1111.1111.1111 refunded", "--note"),
        (
            "finance-42",
            "card \u{FF14}\u{FF11}\u{FF11}\u{FF11} 1111 1111 1111",
            "--note",
        ),
        ("4111-1111-1111-1111", "refunded", "--by"),
    ] {
        cli(&db)
            .args(["review", "resolve", &id, "--by", by, "--note", note])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!(
                "{refused} contains what looks like a card number"
            )))
            .stderr(predicate::str::contains("4111").not())
            .stderr(predicate::str::contains("\u{FF14}").not());
    }
    let still_open = cli(&db)
        .args(["review", "list", "--kind", "amount_mismatch"])
        .assert()
        .success();
    let still_open = String::from_utf8_lossy(&still_open.get_output().stdout).into_owned();
    assert!(still_open.contains("1 item(s)"), "{still_open}");
    assert!(
        dump_all_text(&db.url)
            .await
            .iter()
            .all(|(_, _, value)| !contains_pan(value) || is_hex_digest(value)),
        "a refused note reached the database"
    );
    // Through the library too: the service refuses, naming what.
    let store = db.store().await;
    let err = resolve(
        &store,
        &ResolveRequest::new(
            id.parse().expect("id"),
            ReviewAction::Dismiss,
            "finance-42",
            "card 4111 1111 1111 1111",
        ),
    )
    .await
    .expect_err("refused");
    assert!(err.to_string().contains("resolution note"), "{err}");
    assert!(!err.to_string().contains("4111"), "{err}");
    cli(&db)
        .args([
            "review",
            "resolve",
            &id,
            "--by",
            "finance-42",
            "--note",
            "customer paid the difference by wire, card ending 1111",
        ])
        .assert()
        .success();
    cli(&db)
        .args([
            "review",
            "resolve",
            &id,
            "--by",
            "finance-42",
            "--note",
            "again",
        ])
        .assert()
        .code(1);
    cli(&db)
        .args(["review", "list", "--kind", "amount_mismatch"])
        .assert()
        .success()
        .stdout(predicate::str::contains("0 item(s)"));
}

/// A mistyped database name must not create empty books: every command but
/// `migrate --create-db` (and `serve --create-db`) refuses it, with the fix
/// in the message; an existing database without the schema likewise, also
/// with AUTO_MIGRATE=false.
#[tokio::test(flavor = "multi_thread")]
async fn a_mistyped_database_is_refused_not_created() {
    let db = TestDb::new();
    for args in [
        vec!["report"],
        vec!["review", "list"],
        vec!["orders", "list"],
        vec!["notifications", "list"],
        vec!["migrate"],
    ] {
        cli(&db)
            .args(&args)
            .assert()
            .code(3)
            .stderr(predicate::str::contains("does not exist"))
            .stderr(predicate::str::contains("migrate --create-db"));
    }
    // Nothing was created by those commands.
    let server = crate::helpers::server_url();
    let (client, connection) =
        tokio_postgres::connect(&format!("{server}/postgres"), tokio_postgres::NoTls)
            .await
            .expect("connect");
    tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db.name])
        .await
        .expect("query")
        .is_some();
    assert!(!exists, "no database was created");

    // An empty database (no schema) is refused too, auto-migrate or not.
    client
        .batch_execute(&format!("CREATE DATABASE \"{}\"", db.name))
        .await
        .expect("create empty");
    for auto_migrate in ["true", "false"] {
        cli(&db)
            .env("AUTO_MIGRATE", auto_migrate)
            .arg("report")
            .assert()
            .code(3)
            .stderr(predicate::str::contains("has no ipn-reconciler schema"));
    }
    create_books(&db);
    cli(&db).arg("report").assert().success();
}

/// `process` treats an unknown order as the daemon does, at once: an
/// `orphan_payment` item saying what was paid, under which REFNO (never
/// personal data), opened once however often the file is replayed, and
/// closed when the order is imported and the file processed again.
#[tokio::test(flavor = "multi_thread")]
async fn process_opens_an_orphan_item_for_an_unknown_order_and_prints_totals() {
    let db = TestDb::new();
    create_books(&db);
    let dir = tempfile::tempdir().expect("tempdir");
    let all = std::fs::read_to_string(repo_path("fixtures/orders.csv")).expect("orders.csv");
    let without: String = all
        .lines()
        .filter(|line| !line.starts_with("SHOP-1009,"))
        .map(|line| format!("{line}\n"))
        .collect();
    let csv = dir.path().join("orders.csv");
    std::fs::write(&csv, without).expect("write");
    cli(&db)
        .args(["orders", "import"])
        .arg(&csv)
        .assert()
        .success();

    let files = fixture_files();
    let run = cli(&db).arg("process").args(&files).assert().success();
    let stdout = String::from_utf8(run.get_output().stdout.clone()).expect("utf-8");
    let orphans: Vec<&str> = stdout.lines().filter(|l| l.contains("shop-1009")).collect();
    assert_eq!(orphans.len(), 2, "{stdout}");
    for line in &orphans {
        assert!(
            line.contains(" order_not_found order=SHOP-1009")
                && line.ends_with("review=orphan_payment"),
            "{line}"
        );
    }
    assert_eq!(
        stdout.lines().last(),
        Some(
            "total: applied=14 duplicate=0 ignored=5 mismatch=1 order_not_found=2 \
             invalid_signature=0 malformed=0"
        ),
        "{stdout}"
    );

    let listed = |db: &TestDb| -> Vec<serde_json::Value> {
        let out = cli(db)
            .args([
                "review",
                "list",
                "--kind",
                "orphan_payment",
                "--format",
                "json",
            ])
            .assert()
            .success();
        serde_json::from_slice(&out.get_output().stdout).expect("json")
    };
    let items = listed(&db);
    // One open item per unknown order, however many of its notifications.
    assert_eq!(items.len(), 1, "{items:?}");
    let details: Vec<&str> = items.iter().filter_map(|i| i["details"].as_str()).collect();
    assert!(items.iter().all(|i| i["order_ref"] == "SHOP-1009"));
    assert!(
        details.iter().all(|d| d.contains("71000109")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|d| d.contains("COMPLETE of 89.00 USD")),
        "{details:?}"
    );
    for item in personal_data() {
        assert!(
            details.iter().all(|d| !d.contains(item.as_str())),
            "personal data"
        );
    }

    // Replaying opens nothing new.
    cli(&db).arg("process").args(&files).assert().success();
    assert_eq!(listed(&db).len(), 1);

    // The order arrives; processing its files again closes the items.
    cli(&db)
        .args(["orders", "import"])
        .arg(repo_path("fixtures/orders.csv"))
        .assert()
        .success()
        .stdout(predicate::str::contains("imported 1 new order(s)"));
    let again: Vec<_> = files
        .iter()
        .filter(|f| f.to_string_lossy().contains("shop-1009"))
        .collect();
    cli(&db)
        .arg("process")
        .args(&again)
        .assert()
        .success()
        .stdout(predicate::str::contains("total: applied=2 "));
    assert!(listed(&db).is_empty(), "orphan items closed");
}

/// `process` recognises a licence change notification (LICENSE_CODE):
/// verified and read, printed as its own line (references and statuses
/// only), counted apart in the totals; a malformed one is refused as any
/// malformed notification. Nothing personal is printed or stored.
#[tokio::test(flavor = "multi_thread")]
async fn process_prints_licence_change_notifications_apart() {
    use crate::helpers::licence::{lcn_fields, signed, signed_lcn};
    use ipn_reconciler::ipn::Algorithm;

    let db = TestDb::new();
    create_books(&db);
    let dir = tempfile::tempdir().expect("tempdir");
    let lcn = dir.path().join("lcn.txt");
    std::fs::write(&lcn, signed_lcn("TOF6T8VPY3", "PAST DUE", true)).expect("write");
    let broken = dir.path().join("broken-lcn.txt");
    let fields: Vec<_> = lcn_fields("XRILXB9ZI3", "ACTIVE", false)
        .into_iter()
        .filter(|(name, _)| *name != "DATE_UPDATED")
        .collect();
    std::fs::write(&broken, signed(&fields, &[Algorithm::Sha3_256])).expect("write");
    let processed = cli(&db)
        .arg("process")
        .arg(&lcn)
        .arg(&broken)
        .arg(&fixture_files()[0])
        .assert()
        .success();
    let stdout = String::from_utf8(processed.get_output().stdout.clone()).expect("utf-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "{} licence licence=TOF6T8VPY3 status=PAST_DUE reason=LICENCE_PASTDUE test",
            lcn.display()
        )
    );
    assert_eq!(
        lines[1],
        format!(
            "{} malformed reason=missing_field:DATE_UPDATED",
            broken.display()
        )
    );
    assert!(
        lines[2].contains(" order_not_found order=SHOP-1001"),
        "{stdout}"
    );
    assert_eq!(
        lines[3],
        "total: applied=0 duplicate=0 ignored=0 mismatch=0 order_not_found=1 \
         invalid_signature=0 malformed=1 licence=1"
    );
    for (table, column, value) in dump_all_text(&db.url).await {
        for item in personal_data() {
            assert!(!value.contains(&item), "{table}.{column} holds {item}");
        }
    }
    for item in personal_data() {
        assert!(!stdout.contains(&item), "{item} printed: {stdout}");
    }
}
