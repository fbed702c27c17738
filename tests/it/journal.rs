//! Issue 12, item 5: `export journal` on books filled by real
//! notifications: one line per money movement, booked by the posting rules
//! to configurable accounts; per currency the lines balance, the clearing
//! account holds the net, and the sums by movement equal `report --by
//! event` for the same period. The movements behind it are append-only,
//! and books kept before them are carried over by the migration.

use std::collections::BTreeMap;

use diesel_async::AsyncMigrationHarness;
use diesel_migrations::MigrationHarness;
use ipn_reconciler::domain::Money;
use ipn_reconciler::store::MIGRATIONS;
use predicates::prelude::*;

use crate::cli_reconcile::cli;
use crate::finance_report::{notice_money_totals, query, report_json, scenario, totals};
use crate::helpers::TestDb;

/// `export journal` of everything (its CSV unless told otherwise).
fn export_all(db: &TestDb) -> assert_cmd::Command {
    let mut cmd = cli(db);
    cmd.args([
        "export",
        "journal",
        "--from",
        "2000-01-01",
        "--to",
        "2100-12-31",
    ]);
    cmd
}

/// `export journal --format json` for `[from, to)`, with extra arguments.
fn journal(db: &TestDb, from: &str, to: &str, extra: &[&str]) -> Vec<serde_json::Value> {
    let output = cli(db)
        .args([
            "export", "journal", "--from", from, "--to", to, "--format", "json",
        ])
        .args(extra)
        .output()
        .expect("run export");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&output.stdout)
        .expect("json")
        .as_array()
        .expect("a list of lines")
        .clone()
}

fn minor(line: &serde_json::Value) -> i64 {
    Money::iso(
        line["amount"].as_str().expect("amount"),
        line["currency"].as_str().expect("currency"),
    )
    .expect("exact")
    .minor_units()
}

/// The default posting: movement -> (debit, credit).
fn default_posting(movement: &str) -> (&'static str, &'static str) {
    match movement {
        "payment" => ("Processor clearing", "Sales revenue"),
        "refund" => ("Refunds", "Processor clearing"),
        "reversal" => ("Reversals", "Processor clearing"),
        "chargeback" => ("Chargebacks", "Processor clearing"),
        "chargeback_reversal" => ("Processor clearing", "Chargebacks"),
        "fee" => ("Payment processing fees", "Processor clearing"),
        "vat" => ("VAT collected by the processor", "Processor clearing"),
        "vat_refund" => ("Processor clearing", "VAT collected by the processor"),
        "commission" => ("Processor commission (provisional)", "Processor clearing"),
        "commission_refund" | "commission_settled" => {
            ("Processor clearing", "Processor commission (provisional)")
        }
        other => panic!("unknown movement {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_journal_balances_and_its_sums_equal_the_report_of_the_same_period() {
    let (books, cuts, _) = scenario().await;
    let db = &books.db;
    let mut periods: Vec<(String, String)> = vec![("2000-01-01".into(), "2100-12-31".into())];
    for i in 0..cuts.len() {
        for j in i + 1..cuts.len() {
            periods.push((cuts[i].clone(), cuts[j].clone()));
        }
    }
    let mut lines_seen = 0;
    for (from, to) in &periods {
        let lines = journal(db, from, to, &[]);
        lines_seen += lines.len();
        // Sums by currency and movement, and the trial balance.
        let mut sums: BTreeMap<(String, String), i64> = BTreeMap::new();
        let mut balance: BTreeMap<(String, String), i64> = BTreeMap::new();
        for line in &lines {
            let currency = line["currency"].as_str().expect("currency").to_owned();
            let movement = line["movement"].as_str().expect("movement");
            let amount = minor(line);
            assert!(amount > 0, "{line}");
            let (debit, credit) = default_posting(movement);
            assert_eq!(line["debit_account"], debit, "{line}");
            assert_eq!(line["credit_account"], credit, "{line}");
            let at = line["at"].as_str().expect("at");
            assert_eq!(&at[..10], line["date"].as_str().expect("date"));
            *sums
                .entry((currency.clone(), movement.to_owned()))
                .or_default() += amount;
            *balance
                .entry((currency.clone(), debit.to_owned()))
                .or_default() += amount;
            *balance.entry((currency, credit.to_owned())).or_default() -= amount;
        }
        let report_value = report_json(db, &["--by", "event", "--from", from, "--to", to]);
        let report = totals(&report_value);
        let notice_money = notice_money_totals(&report_value);
        let sum = |currency: &str, movement: &str| {
            sums.get(&(currency.to_owned(), movement.to_owned()))
                .copied()
                .unwrap_or(0)
        };
        let journal_currencies: std::collections::BTreeSet<&String> =
            sums.keys().map(|(c, _)| c).collect();
        assert_eq!(
            journal_currencies,
            report.keys().collect(),
            "{from}..{to}: the same currencies"
        );
        for (currency, t) in &report {
            // [orders, expected, paid, refunded, reversed, charged back, fees, net]
            assert_eq!(
                [
                    sum(currency, "payment"),
                    sum(currency, "refund"),
                    sum(currency, "reversal"),
                    sum(currency, "chargeback"),
                    sum(currency, "fee"),
                ],
                [t[2], t[3], t[4], t[5], t[6]],
                "{currency} {from}..{to}"
            );
            // Every line debits and credits the same amount: per currency
            // the balances sum to zero, and the clearing account holds the
            // report's net.
            let total: i64 = balance
                .iter()
                .filter(|((c, _), _)| c == currency)
                .map(|(_, b)| b)
                .sum();
            assert_eq!(total, 0, "{currency} balances");
            let clearing = balance
                .get(&(currency.clone(), "Processor clearing".to_owned()))
                .copied()
                .unwrap_or(0);
            // [vat, commission, net revenue, net]
            let n = notice_money[currency];
            assert_eq!(clearing, n[3], "{currency} clearing is the net");
            assert_eq!(
                [
                    sum(currency, "vat") - sum(currency, "vat_refund"),
                    sum(currency, "commission")
                        - sum(currency, "commission_refund")
                        - sum(currency, "commission_settled"),
                    sum(currency, "payment")
                        - sum(currency, "refund")
                        - sum(currency, "reversal")
                        - sum(currency, "chargeback")
                        - (sum(currency, "vat") - sum(currency, "vat_refund")),
                ],
                [n[0], n[1], n[2]],
                "{currency} {from}..{to}: VAT, commission and net revenue"
            );
            assert_eq!(
                n[3],
                n[2] - n[1] - t[6],
                "{currency}: net = net revenue - commission - fees"
            );
        }
    }
    assert!(lines_seen > 20, "the journals held lines");

    // Over all time, the payments and refunds equal the payments table.
    let lines = journal(db, "2000-01-01", "2100-12-31", &[]);
    let rows = query(
        db,
        "SELECT o.currency, sum(p.paid_minor)::int8, \
                coalesce(sum(p.refunded_minor) FILTER (WHERE p.paid_minor > 0), 0)::int8 \
         FROM payments p JOIN orders o ON o.id = p.order_id GROUP BY o.currency \
         HAVING sum(p.paid_minor) > 0",
        &[],
    )
    .await;
    for row in rows {
        let currency: String = row.get(0);
        let of = |movement: &str| -> i64 {
            lines
                .iter()
                .filter(|l| l["currency"] == currency.as_str() && l["movement"] == movement)
                .map(minor)
                .sum()
        };
        assert_eq!(
            (of("payment"), of("refund")),
            (row.get::<_, i64>(1), row.get::<_, i64>(2)),
            "{currency}"
        );
    }
    // One line per movement: the double charge is two payment lines of
    // its order, the held refund one line with its payment's REFNO.
    let of_order = |order: &str| -> Vec<(String, String)> {
        lines
            .iter()
            .filter(|l| l["order_ref"] == order)
            .map(|l| {
                (
                    l["movement"].as_str().expect("movement").to_owned(),
                    l["processor_ref"].as_str().expect("refno").to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        of_order("FR-USD-5"),
        [
            ("payment".to_owned(), "1005".to_owned()),
            ("commission".to_owned(), "1005".to_owned()),
            ("payment".to_owned(), "1055".to_owned()),
            ("commission".to_owned(), "1055".to_owned()),
            ("refund".to_owned(), "1055".to_owned()),
            ("commission_refund".to_owned(), "1055".to_owned())
        ]
    );
    assert_eq!(
        of_order("FR-GBP-6"),
        [
            // The payment and its commission are dated by the payment's
            // date (midnight), the held refund and the commission it gives
            // back by the notice that let them count (12:00).
            ("payment".to_owned(), "1006".to_owned()),
            ("commission".to_owned(), "1006".to_owned()),
            ("refund".to_owned(), "1006".to_owned()),
            ("commission_refund".to_owned(), "1006".to_owned())
        ]
    );
    assert!(
        of_order("FR-EUR-7").is_empty(),
        "a released authorization moves nothing"
    );
    assert!(of_order("FR-EUR-9").is_empty(), "a mismatch moves nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_journal_exports_csv_with_the_accounts_named_by_the_merchant() {
    let (books, _, _) = scenario().await;
    let db = &books.db;
    let output = export_all(db)
        .args(["--journal-accounts", "clearing=1150 Processor clearing"])
        .env(
            "IPN_JOURNAL_ACCOUNTS",
            "revenue=4000 Sales,fees=6150 Card fees",
        )
        .output()
        .expect("csv");
    assert!(output.status.success());
    let mut reader = csv::Reader::from_reader(output.stdout.as_slice());
    assert_eq!(
        reader.headers().expect("header"),
        vec![
            "date",
            "at",
            "order_ref",
            "processor_ref",
            "movement",
            "currency",
            "debit_account",
            "credit_account",
            "amount",
            "moved_at",
            "batch_id"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    // A flag replaces the variable's whole list, as with every list
    // setting: revenue keeps its default name.
    let payment = rows.iter().find(|r| &r[4] == "payment").expect("a payment");
    assert_eq!(&payment[6], "1150 Processor clearing");
    assert_eq!(&payment[7], "Sales revenue");
    let refund = rows.iter().find(|r| &r[4] == "refund").expect("a refund");
    assert_eq!(
        (&refund[6], &refund[7]),
        ("Refunds", "1150 Processor clearing")
    );
    let chargeback = rows
        .iter()
        .find(|r| &r[4] == "chargeback")
        .expect("a chargeback");
    assert_eq!(&chargeback[6], "Chargebacks");
    assert!(rows.iter().all(|r| r[1].ends_with('Z') && r[1].len() == 20));

    // From the file or the variable alone.
    let output = export_all(db)
        .env(
            "IPN_JOURNAL_ACCOUNTS",
            "revenue=4000 Sales,fees=6150 Card fees",
        )
        .output()
        .expect("csv");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    assert!(text.contains(",Processor clearing,4000 Sales,"), "{text}");

    // The table for people ends with the balances.
    let output = export_all(db)
        .args(["--format", "table"])
        .output()
        .expect("table");
    let table = String::from_utf8(output.stdout).expect("utf-8");
    assert!(table.contains("balance Processor clearing"), "{table}");

    for (args, says) in [
        (
            &["--journal-accounts", "till=1000"][..],
            "clearing, revenue",
        ),
        (&["--journal-accounts", "fees"], "ACCOUNT=NAME"),
    ] {
        cli(db)
            .args([
                "export",
                "journal",
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-30",
            ])
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(says));
    }
    cli(db)
        .args(["export", "journal", "--from", "2026-11-01"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--to"));
    cli(db)
        .args([
            "export",
            "journal",
            "--from",
            "2026-11-02",
            "--to",
            "2026-11-01",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not before"));
}

#[tokio::test(flavor = "multi_thread")]
async fn movements_are_append_only_and_books_kept_before_them_are_carried_over() {
    let (books, _, _) = scenario().await;
    let db = &books.db;
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    for statement in [
        "UPDATE money_movements SET amount_minor = 1",
        "DELETE FROM money_movements",
        "TRUNCATE money_movements",
    ] {
        let err = client.batch_execute(statement).await.expect_err(statement);
        assert!(
            format!("{err:?}").contains("money_movements is append-only"),
            "{statement}: {err:?}"
        );
    }

    // Per payment and kind, the movements recorded as they happened.
    // The kinds the version before kept (VAT and commission came later,
    // from notice fields that version did not store).
    let per_payment = "SELECT m.order_id, m.processor_ref, m.kind, sum(m.amount_minor)::int8 \
                       FROM money_movements m \
                       WHERE m.kind IN ('payment', 'refund', 'reversal', 'chargeback') \
                       GROUP BY 1, 2, 3 ORDER BY 1, 2, 3";
    let live: Vec<(i64, String, String, i64)> = client
        .query(per_payment, &[])
        .await
        .expect("movements")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert!(live.len() >= 12, "{live:?}");

    // As if the books had been kept by the version before: drop the
    // movements, then migrate again, which carries the payments over.
    let store = books.store.clone();
    let connection =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&db.url)
            .await
            .expect("connect for migrations");
    tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(connection);
        // By name, not "the last one": later migrations may follow it.
        let migrations =
            diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
                .expect("embedded migrations");
        let movements = migrations
            .iter()
            .find(|m| m.name().to_string().contains("money_movements"))
            .expect("the money_movements migration");
        harness
            .revert_migration(movements.as_ref())
            .expect("revert money_movements");
    })
    .await
    .expect("harness");
    store.migrate().await.expect("migrate again");
    let carried: Vec<(i64, String, String, i64)> = client
        .query(per_payment, &[])
        .await
        .expect("movements")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    // The version before booked a chargeback as the whole payment, even
    // after a refund (issue 22): what it carries over is that. (Migration
    // 2026-12-08-000100 then reinstates what the refunds had returned.)
    let paid: BTreeMap<(i64, String), i64> = live
        .iter()
        .filter(|(_, _, kind, _)| kind == "payment")
        .map(|(order, refno, _, amount)| ((*order, refno.clone()), *amount))
        .collect();
    let as_kept_before: Vec<(i64, String, String, i64)> = live
        .iter()
        .map(|(order, refno, kind, amount)| {
            let amount = if kind == "chargeback" {
                paid[&(*order, refno.clone())]
            } else {
                *amount
            };
            (*order, refno.clone(), kind.clone(), amount)
        })
        .collect();
    assert_eq!(
        carried, as_kept_before,
        "the same money per payment and kind"
    );
    // Each carried movement hangs on a ledger row of its own payment.
    let foreign = client
        .query_one(
            "SELECT count(*)::int8 FROM money_movements m \
             JOIN notifications n ON n.id = m.notification_id \
             WHERE n.processor_ref <> m.processor_ref",
            &[],
        )
        .await
        .expect("count");
    assert_eq!(foreign.get::<_, i64>(0), 0);
}

/// Issue 22, item 6: a shopper can choose `REFNOEXT` through a buy-link
/// parameter, so an order reference can read as a spreadsheet formula.
/// `orders import` refuses one; an order kept from before that rule still
/// reaches the journal, whose CSV writes it as text. Every cell of the
/// export is checked: text cells never start with a formula character,
/// amounts stay numbers.
#[tokio::test(flavor = "multi_thread")]
async fn no_journal_cell_is_a_formula_and_imports_refuse_formula_references() {
    use crate::processor_orders::{Notice, books, notice, process};
    let db = books();
    let hostile = "=HYPERLINK(\"http://x.example\",\"10\")";
    let refused = cli(&db)
        .args(["orders", "import", "-"])
        .write_stdin(format!(
            "order_ref,amount,currency\n\"{}\",100.00,EUR\n",
            hostile.replace('"', "\"\"")
        ))
        .output()
        .expect("runs");
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("must not start with"),
        "{refused:?}"
    );

    // As if imported by an earlier version.
    query(
        &db,
        "INSERT INTO orders (order_ref, expected_minor, currency) VALUES ($1, 10000, 'EUR')",
        &[hostile],
    )
    .await;
    let out = process(
        &db,
        None,
        &[notice(&Notice {
            refnoext: hostile,
            ..Notice::hosted("211153389", "COMPLETE", "100.00")
        })],
    );
    assert!(out.contains(" applied "), "{out}");

    let output = export_all(&db).output().expect("runs");
    assert!(output.status.success());
    let mut reader = csv::Reader::from_reader(output.stdout.as_slice());
    let header = reader.headers().expect("header").clone();
    let amount = header.iter().position(|c| c == "amount").expect("amount");
    let mut seen_hostile = false;
    let mut rows = 0;
    for record in reader.records() {
        let record = record.expect("row");
        rows += 1;
        for (index, cell) in record.iter().enumerate() {
            if index == amount {
                let digits = cell.strip_prefix('-').unwrap_or(cell);
                assert!(
                    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == '.'),
                    "amount {cell:?} is a number"
                );
            } else {
                assert!(
                    !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "cell {index} {cell:?}"
                );
            }
            seen_hostile |= cell == format!("'{hostile}");
        }
    }
    assert!(rows > 0, "the payment is booked");
    assert!(seen_hostile, "the reference is kept, as text");
}
