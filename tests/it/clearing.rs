//! Issue 22, item 4: a clearing account that reconciles to the bank. A
//! simulated month (default profile) goes through the pipeline into the
//! real PostgreSQL; the simulator's settlement and payout files, as the
//! processor would send them if nothing went wrong, are imported; then
//! `report clearing` closes at zero in every currency, and the journal
//! books the payouts (clearing to bank). Planting one difference (a
//! missing payout, a reserve line, an unsettled payment) makes the
//! closing balance of its currency exactly that difference, computed by
//! hand from the files, with that item listed.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::Utc;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use ipn_reconciler::domain::Money;
use ipn_reconciler::pipeline::{Pipeline, PipelineConfig};
use ipn_reconciler::settings::{NotificationSection, Settings};
use ipn_reconciler::simulate::settlement::{
    SimulatedSettlement, settlement_as_paid, write_payouts_csv, write_settlement_csv,
};
use ipn_reconciler::simulate::{SimulationConfig, simulate, write_orders_csv};
use ipn_reconciler::store::orders::parse_orders_csv;
use serde_json::Value;

use crate::cli_reconcile::cli;
use crate::helpers::{TestDb, repo_path};
use crate::processor_orders::json;

fn pipeline_config() -> PipelineConfig {
    Settings {
        notifications: NotificationSection {
            key_file: Some(repo_path("fixtures/keys/test.keys")),
            pseudonym_key_file: Some(repo_path("fixtures/keys/pseudonym.key")),
            ..Default::default()
        },
        ..Settings::default()
    }
    .loaded()
    .expect("settings")
    .pipeline()
    .expect("pipeline")
}

/// A simulated month of `orders` orders processed into new books, and
/// the processor's settlement of it with nothing planted.
async fn month(seed: u64, orders: usize) -> (TestDb, SimulatedSettlement) {
    let ring = ipn_reconciler::keys::read_key_ring(&repo_path("fixtures/keys/test.keys"))
        .expect("test keys");
    let sim =
        simulate(&SimulationConfig::new(seed, orders), &ring.current().secret).expect("simulation");
    let db = TestDb::new();
    let store = db.store().await;
    let mut csv = Vec::new();
    write_orders_csv(&sim.orders, &mut csv).expect("csv");
    let parsed = parse_orders_csv(csv.as_slice(), store.currencies()).expect("orders");
    store.import_orders(&parsed).await.expect("import");
    let pipeline = Pipeline::new(pipeline_config(), store.clone());
    for delivery in &sim.deliveries {
        pipeline
            .handle(&delivery.body, Utc::now())
            .await
            .expect("the database stays up");
    }
    let settled = settlement_as_paid(&sim);
    assert!(settled.expected.is_empty(), "nothing planted");
    (db, settled)
}

/// Imports the settlement and payout files of `settled` through the CLI.
fn import(db: &TestDb, settled: &SimulatedSettlement, dir: &Path) {
    let lines = dir.join("settlement.csv");
    let payouts = dir.join("payouts.csv");
    write_settlement_csv(settled, std::fs::File::create(&lines).expect("file")).expect("csv");
    write_payouts_csv(settled, std::fs::File::create(&payouts).expect("file")).expect("csv");
    let out = cli(db)
        .args(["settlement", "import"])
        .arg(&lines)
        .arg("--payouts")
        .arg(&payouts)
        .output()
        .expect("import");
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn report(db: &TestDb) -> Value {
    json(cli(db).args(["report", "clearing", "--format", "json"]))
}

fn minor(value: &Value, currency: &str) -> i64 {
    Money::iso(value.as_str().expect("an amount"), currency)
        .expect("exact")
        .minor_units()
}

/// Per currency: the report's figure `field` in minor units.
fn figure(report: &Value, field: &str) -> BTreeMap<String, i64> {
    report["currencies"]
        .as_array()
        .expect("currencies")
        .iter()
        .map(|t| {
            let currency = t["currency"].as_str().expect("currency").to_owned();
            let value = minor(&t[field], &currency);
            (currency, value)
        })
        .collect()
}

#[derive(diesel::QueryableByName)]
struct SumRow {
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    minor: i64,
}

async fn sums(db: &TestDb, sql: &str) -> BTreeMap<String, i64> {
    let store = db.store().await;
    let mut conn = store.conn().await.expect("conn");
    let rows: Vec<SumRow> = diesel::sql_query(sql).load(&mut conn).await.expect("query");
    rows.into_iter().map(|r| (r.currency, r.minor)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn clearing_a_month_settled_and_paid_out_closes_at_zero_in_every_currency() {
    let (db, settled) = month(20_261_208, 120).await;
    let dir = tempfile::tempdir().expect("dir");
    import(&db, &settled, dir.path());
    let report = report(&db);

    // Independent sums: the ledger's payments, the files' fees and payouts.
    let paid = sums(
        &db,
        "SELECT currency, sum(amount_minor)::int8 AS minor FROM money_movements \
         WHERE kind = 'payment' GROUP BY currency",
    )
    .await;
    let mut fees: BTreeMap<String, i64> = BTreeMap::new();
    for line in &settled.lines {
        *fees
            .entry(line.gross.currency().as_str().to_owned())
            .or_default() += line.fee.minor_units();
    }
    let mut payouts: BTreeMap<String, i64> = BTreeMap::new();
    for payout in &settled.payouts {
        *payouts
            .entry(payout.amount.currency().as_str().to_owned())
            .or_default() += payout.amount.minor_units();
    }
    assert!(paid.len() >= 4, "several currencies: {paid:?}");
    assert_eq!(figure(&report, "sales"), paid);
    assert_eq!(
        figure(&report, "fees"),
        fees.iter().map(|(c, f)| (c.clone(), -f)).collect()
    );
    assert_eq!(
        figure(&report, "payouts"),
        payouts.iter().map(|(c, p)| (c.clone(), -p)).collect()
    );
    let zero: BTreeMap<String, i64> = paid.keys().map(|c| (c.clone(), 0)).collect();
    assert_eq!(figure(&report, "opening"), zero);
    assert_eq!(figure(&report, "closing"), zero, "{report:#}");
    assert_eq!(report["items"], serde_json::json!([]), "nothing to explain");

    // The journal books every payout, clearing to bank, named by
    // journal-accounts, on the payout's day.
    let lines = json(cli(&db).args([
        "export",
        "journal",
        "--from",
        "2000-01-01",
        "--to",
        "2100-12-31",
        "--format",
        "json",
        "--journal-accounts",
        "bank=1010 Bank",
    ]));
    let mut booked: BTreeMap<String, i64> = BTreeMap::new();
    let mut clearing: BTreeMap<String, i64> = BTreeMap::new();
    for line in lines.as_array().expect("lines") {
        let currency = line["currency"].as_str().expect("currency").to_owned();
        let amount = minor(&line["amount"], &currency);
        // A batch of refunds only is a negative transfer: the processor
        // debits the bank.
        let sign = match line["movement"].as_str() {
            Some("payout") => 1,
            Some("bank_debit") => -1,
            _ => 0,
        };
        if sign != 0 {
            let (bank, clearing) = ("1010 Bank", "Processor clearing");
            let accounts = if sign > 0 {
                (bank, clearing)
            } else {
                (clearing, bank)
            };
            assert_eq!(line["debit_account"], accounts.0, "{line}");
            assert_eq!(line["credit_account"], accounts.1, "{line}");
            let batch = line["batch_id"].as_str().expect("batch");
            let payout = settled
                .payouts
                .iter()
                .find(|p| p.batch_id == batch)
                .expect("a payout of the file");
            assert_eq!(line["date"], payout.paid_on.to_string());
            *booked.entry(currency.clone()).or_default() += sign * amount;
        }
        if line["debit_account"] == "Processor clearing" {
            *clearing.entry(currency.clone()).or_default() += amount;
        }
        if line["credit_account"] == "Processor clearing" {
            *clearing.entry(currency).or_default() -= amount;
        }
    }
    assert_eq!(booked, payouts);
    assert_eq!(clearing, zero, "the journal's clearing lines balance");

    // A payout has a day, not a time: it is booked at the midnight that
    // begins that day in report-timezone (November in New York: UTC-5).
    let lines = json(cli(&db).args([
        "export",
        "journal",
        "--from",
        "2000-01-01",
        "--to",
        "2100-12-31",
        "--format",
        "json",
        "--report-timezone",
        "America/New_York",
    ]));
    let first = &settled.payouts[0];
    let line = lines
        .as_array()
        .expect("lines")
        .iter()
        .find(|l| l["batch_id"] == first.batch_id.as_str() && l["movement"] == "payout")
        .expect("the first payout");
    assert_eq!(line["date"], first.paid_on.to_string());
    assert_eq!(line["at"], format!("{}T05:00:00Z", first.paid_on), "{line}");

    // The other formats print the same.
    let csv = cli(&db)
        .args(["report", "clearing", "--format", "csv"])
        .output()
        .expect("csv");
    let text = String::from_utf8(csv.stdout).expect("utf-8");
    assert!(
        text.starts_with("section,currency,opening,sales,"),
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("clearing,")).count(),
        paid.len()
    );
    let table = cli(&db)
        .args(["report", "clearing"])
        .output()
        .expect("table");
    let text = String::from_utf8(table.stdout).expect("utf-8");
    assert!(text.contains("= closing balance"), "{text}");
    assert!(text.contains("No open item."), "{text}");
}

/// The closing balances that are not zero, and the items' (kind,
/// currency, effect in minor units, batch).
/// An item as the tests compare it: kind, currency, effect (minor units),
/// batch.
type Item = (String, String, i64, Value);

fn differences(report: &Value) -> (BTreeMap<String, i64>, Vec<Item>) {
    let closing = figure(report, "closing")
        .into_iter()
        .filter(|(_, v)| *v != 0)
        .collect();
    let items = report["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            let currency = i["currency"].as_str().expect("currency").to_owned();
            (
                i["kind"].as_str().expect("kind").to_owned(),
                currency.clone(),
                minor(&i["effect"], &currency),
                i["batch_id"].clone(),
            )
        })
        .collect();
    (closing, items)
}

#[tokio::test(flavor = "multi_thread")]
async fn clearing_a_missing_payout_is_its_batchs_net_and_is_listed() {
    let (db, mut settled) = month(20_261_209, 60).await;
    let missing = settled.payouts.remove(0);
    let dir = tempfile::tempdir().expect("dir");
    import(&db, &settled, dir.path());
    let report = report(&db);
    let (closing, items) = differences(&report);
    let currency = missing.amount.currency().as_str().to_owned();
    // By hand: the batch's lines are booked, its transfer is not.
    assert_eq!(
        closing,
        BTreeMap::from([(currency.clone(), missing.amount.minor_units())])
    );
    assert_eq!(
        items,
        [(
            "batch_not_paid_out".to_owned(),
            currency,
            missing.amount.minor_units(),
            Value::from(missing.batch_id.clone())
        )]
    );
    assert!(
        report["currencies"]
            .as_array()
            .expect("currencies")
            .iter()
            .all(|t| minor(&t["unexplained"], t["currency"].as_str().expect("c")) == 0)
    );
    // The CSV puts the item's cells under their own headers.
    let csv = cli(&db)
        .args(["report", "clearing", "--format", "csv"])
        .output()
        .expect("csv");
    let mut reader = csv::Reader::from_reader(csv.stdout.as_slice());
    let headers = reader.headers().expect("header").clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    let item = rows.iter().find(|r| &r[0] == "item").expect("an item row");
    let cell = |name: &str| {
        let at = headers.iter().position(|h| h == name).expect(name);
        item[at].to_owned()
    };
    assert_eq!(cell("kind"), "batch_not_paid_out");
    assert_eq!(cell("batch_id"), missing.batch_id);
    assert_eq!(cell("amount"), missing.amount.format_amount());
    assert_eq!(cell("closing"), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn clearing_a_reserve_line_is_booked_on_its_account_and_a_payout_without_it_is_listed() {
    let (db, mut settled) = month(20_261_210, 60).await;
    // The processor's file holds 50 units of the first batch back as a
    // reserve; the transfer is the one without it.
    let batch = settled.payouts[0].batch_id.clone();
    let currency = settled.payouts[0].amount.currency();
    let at = settled
        .lines
        .iter()
        .find(|l| l.batch_id == batch)
        .expect("a line of the batch")
        .settled_at;
    let held = 50 * 10i64.pow(currency.exponent());
    settled
        .lines
        .push(ipn_reconciler::simulate::settlement::SimulatedLine {
            batch_id: batch.clone(),
            processor_ref: String::new(),
            order_ref: String::new(),
            kind: "reserve",
            gross: Money::from_minor(-held, currency),
            fee: Money::zero(currency),
            settled_at: at,
        });
    let dir = tempfile::tempdir().expect("dir");
    import(&db, &settled, dir.path());
    let report = report(&db);
    let (closing, items) = differences(&report);
    let code = currency.as_str().to_owned();
    assert_eq!(closing, BTreeMap::from([(code.clone(), -held)]));
    assert_eq!(
        items,
        [(
            "payout_differs".to_owned(),
            code.clone(),
            -held,
            Value::from(batch.clone())
        )]
    );
    let item = &report["items"][0];
    assert!(
        item["review_item_id"].is_i64(),
        "{item}: payout_total_differs"
    );
    let totals = report["currencies"]
        .as_array()
        .expect("currencies")
        .iter()
        .find(|t| t["currency"] == code.as_str())
        .expect("its currency");
    assert_eq!(minor(&totals["adjustments"], &code), -held);

    // The journal books it on the reserve account, never as "other".
    let lines = json(cli(&db).args([
        "export",
        "journal",
        "--from",
        "2000-01-01",
        "--to",
        "2100-12-31",
        "--format",
        "json",
    ]));
    let reserve: Vec<&Value> = lines
        .as_array()
        .expect("lines")
        .iter()
        .filter(|l| l["movement"] == "reserve_held")
        .collect();
    assert_eq!(reserve.len(), 1, "{reserve:?}");
    assert_eq!(reserve[0]["debit_account"], "Processor reserve");
    assert_eq!(reserve[0]["credit_account"], "Processor clearing");
    assert_eq!(minor(&reserve[0]["amount"], &code), held);
    assert_eq!(reserve[0]["batch_id"], batch.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn clearing_an_unsettled_payment_is_its_amount_and_is_listed() {
    let (db, mut settled) = month(20_261_211, 60).await;
    // A sale of a payment with no other line, left out; its batch paid
    // out without it.
    let alone = |i: usize| {
        let line = &settled.lines[i];
        line.kind == "sale"
            && settled
                .lines
                .iter()
                .filter(|l| l.order_ref == line.order_ref)
                .count()
                == 1
    };
    let i = (0..settled.lines.len())
        .find(|i| alone(*i))
        .expect("a plain sale");
    let line = settled.lines.remove(i);
    let payout = settled
        .payouts
        .iter_mut()
        .find(|p| p.batch_id == line.batch_id)
        .expect("its payout");
    payout.amount = payout
        .amount
        .checked_sub(&line.net())
        .expect("same currency");
    let dir = tempfile::tempdir().expect("dir");
    import(&db, &settled, dir.path());
    let report = report(&db);
    let (closing, items) = differences(&report);
    let code = line.gross.currency().as_str().to_owned();
    // By hand: the ledger counts the payment, less the provisional
    // commission its notice carried (no fee replaced it), and no
    // transfer carried it.
    let commission = sums(
        &db,
        &format!(
            "SELECT currency, coalesce(sum(amount_minor), 0)::int8 AS minor FROM money_movements \
             WHERE kind = 'commission' AND processor_ref = '{}' GROUP BY currency",
            line.processor_ref
        ),
    )
    .await
    .get(&code)
    .copied()
    .unwrap_or(0);
    let left = line.gross.minor_units() - commission;
    assert_eq!(closing, BTreeMap::from([(code.clone(), left)]));
    assert_eq!(
        items,
        [(
            "unsettled_payment".to_owned(),
            code.clone(),
            left,
            Value::Null
        )]
    );
    assert_eq!(
        minor(&report["items"][0]["amount"], &code),
        line.gross.minor_units()
    );
    assert_eq!(report["items"][0]["order_ref"], line.order_ref.as_str());
    assert_eq!(
        report["items"][0]["processor_ref"],
        line.processor_ref.as_str()
    );
}

/// A processor that pays out in another currency (the software vendor's
/// profile: orders in EUR, GBP, JPY, ..., `PAYOUT_CURRENCY=USD`, the
/// settlement and payouts in USD): each sale line moves its sale from the
/// order currency's clearing into the USD clearing (`conversion_out`: paid
/// less VAT; `conversion_in`: the line's gross), so with every line settled
/// and every payout arrived the clearing closes at zero in every currency,
/// the payout currency too.
#[tokio::test(flavor = "multi_thread")]
async fn clearing_in_the_payout_currency_closes_at_zero_through_the_conversion() {
    use ipn_reconciler::domain::OrderSource;
    use ipn_reconciler::ipn::NoticeKind;
    use ipn_reconciler::simulate::Profile;

    let ring = ipn_reconciler::keys::read_key_ring(&repo_path("fixtures/keys/test.keys"))
        .expect("test keys");
    let config = SimulationConfig {
        profile: Profile::SoftwareVendor,
        ..SimulationConfig::new(20_261_209, 60)
    };
    let sim = simulate(&config, &ring.current().secret).expect("vendor simulation");
    let expected = sim.vendor.as_ref().expect("the vendor's expectation");
    let db = TestDb::new();
    let store = db.store().await;
    let mut csv = Vec::new();
    write_orders_csv(&sim.orders, &mut csv).expect("csv");
    let parsed = parse_orders_csv(csv.as_slice(), store.currencies()).expect("orders");
    store.import_orders(&parsed).await.expect("import");
    let mut config = pipeline_config();
    config.reconcile.order_source = OrderSource::Both;
    let pipeline = Pipeline::new(config, store.clone());
    // The licence notices move no money: only the payment notices.
    for delivery in sim
        .deliveries
        .iter()
        .filter(|d| d.notice == NoticeKind::Ipn)
    {
        pipeline
            .handle(&delivery.body, Utc::now())
            .await
            .expect("the database stays up");
    }
    let settled = ipn_reconciler::simulate::vendor::settlement::settlement(expected);
    let dir = tempfile::tempdir().expect("dir");
    import(&db, &settled, dir.path());
    let report = report(&db);

    // Independent sums: what the ledger left per payment in its order
    // currency (paid less VAT), and the lines' gross in USD.
    let out = sums(
        &db,
        "SELECT o.currency, sum(p.paid_minor - p.vat_minor)::int8 AS minor \
         FROM payments AS p JOIN orders AS o ON o.id = p.order_id \
         JOIN settlement_lines AS l ON l.payment_id = p.id \
         WHERE l.status = 'matched' AND l.kind = 'sale' AND l.currency <> o.currency \
           AND p.paid_minor > 0 \
         GROUP BY o.currency",
    )
    .await;
    let gross_in = sums(
        &db,
        "SELECT l.currency, sum(l.gross_minor)::int8 AS minor \
         FROM settlement_lines AS l JOIN payments AS p ON p.id = l.payment_id \
         JOIN orders AS o ON o.id = p.order_id \
         WHERE l.status = 'matched' AND l.kind = 'sale' AND l.currency <> o.currency \
           AND p.paid_minor > 0 \
         GROUP BY l.currency",
    )
    .await;
    assert!(out.len() >= 2, "several order currencies: {out:?}");
    assert_eq!(gross_in.keys().collect::<Vec<_>>(), ["USD"], "{gross_in:?}");
    let conversions = figure(&report, "conversions");
    for (currency, minor) in &out {
        assert_eq!(conversions[currency], -minor, "{currency}: {report:#}");
    }
    assert_eq!(conversions["USD"], gross_in["USD"], "{report:#}");
    let zero: BTreeMap<String, i64> = figure(&report, "closing")
        .keys()
        .map(|c| (c.clone(), 0))
        .collect();
    assert!(zero.contains_key("USD"));
    assert_eq!(figure(&report, "closing"), zero, "{report:#}");
    assert_eq!(report["items"], serde_json::json!([]), "nothing to explain");

    // The journal books each conversion against the conversion account.
    let lines = json(cli(&db).args([
        "export", "journal", "--from", "2000-01", "--to", "2100-12", "--format", "json",
    ]));
    let conversion_lines: Vec<&Value> = lines
        .as_array()
        .expect("lines")
        .iter()
        .filter(|l| l["movement"] == "conversion_in" || l["movement"] == "conversion_out")
        .collect();
    assert!(!conversion_lines.is_empty());
    for line in conversion_lines {
        let (debit, credit) = if line["movement"] == "conversion_in" {
            ("Processor clearing", "Currency conversion")
        } else {
            ("Currency conversion", "Processor clearing")
        };
        assert_eq!(
            (&line["debit_account"], &line["credit_account"]),
            (&Value::from(debit), &Value::from(credit))
        );
    }
}
