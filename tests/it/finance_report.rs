//! Issue 12, items 1 and 7, as finance closes a period: `report --from
//! --to --by created|event` on books filled by real notifications through
//! the pipeline (several currencies, refunds, chargebacks, a double charge,
//! a refund held before its payment, a released authorization, a mismatch,
//! an orphan, a processor retry), every figure checked against an
//! independent SQL sum over the payments and the ledger, in periods that
//! cut through the data; and `orders find --email`.
// Amounts in cents are written `units_cents` (160_00 is 160.00 USD).
#![allow(clippy::inconsistent_digit_grouping)]

use std::collections::{BTreeMap, BTreeSet};

use assert_cmd::Command;
use chrono::Utc;
use ipn_reconciler::domain::Money;
use ipn_reconciler::ipn::{Algorithm, FormBody, FormLimits, sign};
use ipn_reconciler::pipeline::{Pipeline, Report};
use ipn_reconciler::store::Store;
use predicates::prelude::*;

use crate::cli_reconcile::cli;
use crate::helpers::amqp::{import_orders_csv, pipeline_config, test_key};
use crate::helpers::{TestDb, repo_path};

/// The orders of the scenario: five currencies, created on days that the
/// `--by created` periods cut between.
pub(crate) const ORDERS_CSV: &str = "order_ref,amount,currency,created_at
FR-EUR-1,100.00,EUR,2026-10-05T10:00:00Z
FR-EUR-2,50.00,EUR,2026-10-20T10:00:00Z
FR-USD-3,30.00,USD,2026-11-02T10:00:00Z
FR-JPY-4,5000,JPY,2026-11-10T10:00:00Z
FR-BHD-8,1.250,BHD,2026-11-05T10:00:00Z
FR-USD-5,80.00,USD,2026-11-15T23:30:00Z
FR-GBP-6,20.00,GBP,2026-11-20T10:00:00Z
FR-EUR-9,40.00,EUR,2026-11-25T10:00:00Z
FR-EUR-7,10.00,EUR,2026-12-01T00:00:00Z
";

/// The address most notifications carry, and the other customer's (typed
/// in another case, with spaces, as people do).
pub(crate) const SHOPPER: &str = "shopper.a@example.test";
pub(crate) const OTHER_SHOPPER: &str = "other.shopper@example.test";

/// One notification as the processor signs it: fixture 05 with its
/// references, status, amount, currency, e-mail, message id and IPN_DATE
/// replaced, signed with SHA3-256 and SHA-256.
#[allow(clippy::too_many_arguments)]
pub(crate) fn notification(
    order_ref: &str,
    refno: u64,
    status: &str,
    amount: &str,
    currency: &str,
    email: &str,
    message_id: u64,
    ipn_date: &str,
) -> Vec<u8> {
    let body =
        std::fs::read(repo_path("fixtures/ipn/05-shop-1002-complete.txt")).expect("fixture 05");
    let form = FormBody::parse(body.trim_ascii_end(), &FormLimits::default()).expect("parses");
    let fields = form
        .fields()
        .iter()
        .filter(|f| !f.name.starts_with("SIGNATURE_") && f.name != "HASH")
        .cloned()
        .map(|mut field| {
            let value = match field.name.as_str() {
                "REFNOEXT" => Some(order_ref.to_owned()),
                "REFNO" => Some(refno.to_string()),
                "ORDERSTATUS" | "MESSAGE_TYPE" => Some(status.to_owned()),
                "IPN_TOTALGENERAL" => Some(amount.to_owned()),
                "CURRENCY" => Some(currency.to_owned()),
                "CUSTOMEREMAIL" | "EMAIL_D" => Some(email.to_owned()),
                "MESSAGE_ID" => Some(message_id.to_string()),
                "IPN_DATE" => Some(ipn_date.to_owned()),
                // The processor's payment dates: the notice's day, so that a
                // test dates its money with one value.
                "PAYMENTDATE" | "COMPLETE_DATE" => Some(processor_date(ipn_date)),
                _ => None,
            };
            if let Some(value) = value {
                field.value = value;
            }
            field
        })
        .collect();
    sign(
        &FormBody::from_fields(fields),
        &test_key(),
        &[Algorithm::Sha3_256, Algorithm::Sha256],
    )
    .expect("sign")
    .encode()
    .into_bytes()
}

/// The processor's payment date of an order notified on `ipn_date`
/// (`YmdHis`): that day's midnight, as `Y-m-d H:i:s`. A day, not the
/// instant: the processor's retry of a notice carries a new `IPN_DATE` and
/// the same payment date.
pub(crate) fn processor_date(ipn_date: &str) -> String {
    let d = ipn_date.as_bytes();
    assert_eq!(d.len(), 14, "IPN_DATE is YmdHis: {ipn_date}");
    let part = |a: usize, b: usize| std::str::from_utf8(&d[a..b]).expect("ascii");
    format!("{}-{}-{} 00:00:00", part(0, 4), part(4, 6), part(6, 8))
}

/// Books filled through the real pipeline (verify, tokenize, apply).
pub(crate) struct Books {
    pub db: TestDb,
    pub store: Store,
    pipeline: Pipeline,
    next_message: std::cell::Cell<u64>,
    /// The `IPN_DATE` (and payment dates) of what [`Books::notify`] sends:
    /// when its money moved.
    pub ipn_date: String,
}

impl Books {
    pub async fn new(orders_csv: &str) -> Self {
        Self::with_config(orders_csv, pipeline_config()).await
    }

    /// Books whose pipeline judges with `config` (another processor time
    /// zone, say).
    pub async fn with_config(
        orders_csv: &str,
        config: ipn_reconciler::pipeline::PipelineConfig,
    ) -> Self {
        let db = TestDb::new();
        let store = db.store().await;
        import_orders_csv(&store, orders_csv).await;
        let pipeline = Pipeline::new(config, store.clone());
        Self {
            db,
            store,
            pipeline,
            next_message: std::cell::Cell::new(1),
            ipn_date: "20261130120000".to_owned(),
        }
    }

    /// Sends one notification through the pipeline.
    pub async fn notify(
        &self,
        order_ref: &str,
        refno: u64,
        status: &str,
        amount: &str,
        currency: &str,
        email: &str,
    ) -> Report {
        self.next_message.set(self.next_message.get() + 1);
        let body = notification(
            order_ref,
            refno,
            status,
            amount,
            currency,
            email,
            self.next_message.get(),
            &self.ipn_date,
        );
        self.handle(&body).await
    }

    pub async fn handle(&self, body: &[u8]) -> Report {
        self.pipeline
            .handle(body, Utc::now())
            .await
            .expect("handled")
    }
}

/// Rows of a query on the test database; `params` are text, cast in SQL.
pub(crate) async fn query(db: &TestDb, sql: &str, params: &[&str]) -> Vec<tokio_postgres::Row> {
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    client.query(sql, &params).await.expect(sql)
}

/// The scenario, in three phases with a cut of the database clock before,
/// between and after them. Returns the books and the cuts, and after each
/// phase a snapshot of every order's figures.
pub(crate) async fn scenario() -> (Books, Vec<String>, Vec<Snapshot>) {
    let mut books = Books::new(ORDERS_CSV).await;
    // Each phase's money moved on its own day (its notices' dates); the
    // cuts fall between the days.
    let days = ["20261105120000", "20261115120000", "20261125120000"];
    let mut cuts = vec!["2026-11-01T00:00:00Z".to_owned()];
    let after = [
        "2026-11-10T00:00:00Z",
        "2026-11-20T00:00:00Z",
        "2026-11-28T00:00:00Z",
    ];
    let mut snapshots = vec![snapshot(&books.db).await];
    // Phase 1: payments, an authorization, a refund before its payment.
    let phase1 = [
        ("FR-EUR-1", 1001, "COMPLETE", "100.00", "EUR", SHOPPER),
        ("FR-EUR-2", 1002, "COMPLETE", "50.00", "EUR", SHOPPER),
        ("FR-USD-3", 1003, "COMPLETE", "30.00", "USD", SHOPPER),
        (
            "FR-JPY-4",
            1004,
            "PAYMENT_AUTHORIZED",
            "5000",
            "JPY",
            SHOPPER,
        ),
        ("FR-BHD-8", 1008, "COMPLETE", "1.250", "BHD", SHOPPER),
        ("FR-GBP-6", 1006, "REFUND", "-5.00", "GBP", SHOPPER),
    ];
    // Phase 2: a refund (sent by hand, the processor retries it later), a
    // chargeback, a capture, a double charge, the held refund's payment, a
    // reversal under a foreign REFNO, a mismatch.
    let refund = |ipn_date| {
        notification(
            "FR-EUR-1", 1001, "REFUND", "-30.00", "EUR", SHOPPER, 777, ipn_date,
        )
    };
    let phase2 = [
        ("FR-EUR-2", 1002, "REVERSED", "-50.00", "EUR", SHOPPER),
        ("FR-JPY-4", 1004, "COMPLETE", "5000", "JPY", SHOPPER),
        ("FR-USD-5", 1005, "COMPLETE", "80.00", "USD", OTHER_SHOPPER),
        ("FR-USD-5", 1055, "COMPLETE", "80.00", "USD", OTHER_SHOPPER),
        ("FR-GBP-6", 1006, "COMPLETE", "20.00", "GBP", SHOPPER),
        ("FR-USD-3", 9999, "REVERSED", "-30.00", "USD", SHOPPER),
        ("FR-EUR-9", 1009, "COMPLETE", "35.00", "EUR", SHOPPER),
    ];
    // Phase 3: the double charge refunded, the rest of a refund, a
    // chargeback after a partial refund, a chargeback in BHD, a released
    // authorization, an orphan; then the processor's retry of the first
    // refund with a new IPN_DATE (counted once).
    let phase3 = [
        ("FR-USD-5", 1055, "REFUND", "-80.00", "USD", OTHER_SHOPPER),
        ("FR-EUR-1", 1001, "REFUND", "-70.00", "EUR", SHOPPER),
        ("FR-USD-3", 1003, "REFUND", "-10.00", "USD", SHOPPER),
        ("FR-USD-3", 1003, "REVERSED", "-30.00", "USD", SHOPPER),
        ("FR-BHD-8", 1008, "REVERSED", "-1.250", "BHD", SHOPPER),
        (
            "FR-EUR-7",
            1007,
            "PAYMENT_AUTHORIZED",
            "10.00",
            "EUR",
            OTHER_SHOPPER,
        ),
        ("FR-EUR-7", 1007, "REVERSED", "-10.00", "EUR", OTHER_SHOPPER),
        ("FR-NOPE-1", 1010, "COMPLETE", "12.00", "EUR", SHOPPER),
    ];
    for (phase, steps) in [&phase1[..], &phase2, &phase3].into_iter().enumerate() {
        books.ipn_date = days[phase].to_owned();
        if phase == 1 {
            books.handle(&refund("20261115090000")).await;
        }
        for (order, refno, status, amount, currency, email) in steps {
            books
                .notify(order, *refno, status, amount, currency, email)
                .await;
        }
        if phase == 2 {
            let repeat = books.handle(&refund("20261115100000")).await;
            assert_eq!(repeat.outcome.as_str(), "duplicate");
        }
        cuts.push(after[phase].to_owned());
        snapshots.push(snapshot(&books.db).await);
    }
    (books, cuts, snapshots)
}

/// One order's figures at a moment, in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct OrderFigures {
    pub expected: i64,
    pub paid: i64,
    pub refunded: i64,
    pub charged_back: i64,
}

/// Every order's currency and figures, summed over its payments by an SQL
/// of its own (not the report's).
pub(crate) type Snapshot = BTreeMap<i64, (String, OrderFigures)>;

pub(crate) async fn snapshot(db: &TestDb) -> Snapshot {
    query(
        db,
        "SELECT o.id, o.currency, o.expected_minor, \
                coalesce(sum(p.paid_minor), 0)::int8, \
                coalesce(sum(p.refunded_minor) FILTER (WHERE p.paid_minor > 0), 0)::int8, \
                coalesce(sum(greatest(p.paid_minor - p.refunded_minor, 0)) \
                         FILTER (WHERE p.reversed AND p.paid_minor > 0), 0)::int8 \
         FROM orders o LEFT JOIN payments p ON p.order_id = o.id GROUP BY o.id",
        &[],
    )
    .await
    .into_iter()
    .map(|r| {
        (
            r.get(0),
            (
                r.get(1),
                OrderFigures {
                    expected: r.get(2),
                    paid: r.get(3),
                    refunded: r.get(4),
                    charged_back: r.get(5),
                },
            ),
        )
    })
    .collect()
}

/// One currency of a report, in minor units: orders, expected, paid,
/// refunded, reversed, charged back, fees, net.
pub(crate) type Totals = BTreeMap<String, [i64; 8]>;

/// The `totals` of `report --format json`, amounts parsed exactly.
pub(crate) fn totals(report: &serde_json::Value) -> Totals {
    report["totals"]
        .as_array()
        .expect("totals")
        .iter()
        .map(|t| {
            let currency = t["currency"].as_str().expect("currency").to_owned();
            let minor = |name: &str| {
                Money::iso(t[name].as_str().expect(name), &currency)
                    .expect("an exact amount")
                    .minor_units()
            };
            let figures = [
                t["orders"].as_i64().expect("orders"),
                minor("expected"),
                minor("paid"),
                minor("refunded"),
                minor("reversed"),
                minor("charged_back"),
                minor("fees"),
                // Net before the processor's commission: these figures
                // are checked against the payments' gross amounts; the
                // notice money (VAT, commission) has checks of its own
                // (`notice_money_totals`).
                minor("net_revenue") - minor("fees"),
            ];
            (currency, figures)
        })
        .collect()
}

/// Per currency, the notice-money figures of a report: `[vat,
/// commission, net_revenue, net]` in minor units.
pub(crate) fn notice_money_totals(report: &serde_json::Value) -> BTreeMap<String, [i64; 4]> {
    report["totals"]
        .as_array()
        .expect("totals")
        .iter()
        .map(|t| {
            let currency = t["currency"].as_str().expect("currency").to_owned();
            let minor = |name: &str| {
                Money::iso(t[name].as_str().expect(name), &currency)
                    .expect("an exact amount")
                    .minor_units()
            };
            let figures = [
                minor("vat"),
                minor("commission"),
                minor("net_revenue"),
                minor("net"),
            ];
            (currency, figures)
        })
        .collect()
}

/// What a report's totals should be, from per-order figures: orders
/// counted, their expected amounts, the money, and net = paid − refunded −
/// reversed (0) − charged back − fees (0).
fn expected_totals(orders: impl IntoIterator<Item = (String, OrderFigures, i64)>) -> Totals {
    let mut totals = Totals::new();
    for (currency, money, expected) in orders {
        let t = totals.entry(currency).or_default();
        t[0] += 1;
        t[1] += expected;
        t[2] += money.paid;
        t[3] += money.refunded;
        t[5] += money.charged_back;
    }
    for t in totals.values_mut() {
        t[7] = t[2] - t[3] - t[4] - t[5] - t[6];
    }
    totals
}

pub(crate) fn report_json(db: &TestDb, args: &[&str]) -> serde_json::Value {
    let output = cli(db)
        .arg("report")
        .args(args)
        .args(["--format", "json"])
        .output()
        .expect("run report");
    assert!(
        output.status.success(),
        "report {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("json")
}

/// `(name, count)` of a report's count list.
fn counts(
    report: &serde_json::Value,
    list: &str,
    name: &str,
    count: &str,
) -> BTreeMap<String, i64> {
    report[list]
        .as_array()
        .expect(list)
        .iter()
        .map(|c| {
            (
                c[name].as_str().expect(name).to_owned(),
                c[count].as_i64().expect(count),
            )
        })
        .collect()
}

/// Rows `(text, count)` of an SQL, as a map.
async fn sql_counts(db: &TestDb, sql: &str, params: &[&str]) -> BTreeMap<String, i64> {
    query(db, sql, params)
        .await
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The instant a `--from` (`end` false) or `--to` (`end` true) means: a
/// date is its day's first instant, and a `--to` date counts whole (the
/// next day's first instant, excluded); a time is itself.
fn instant(text: &str, end: bool) -> String {
    match chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(day) => {
            let day = if end {
                day.succ_opt().expect("a next day")
            } else {
                day
            };
            format!("{day}T00:00:00Z")
        }
        Err(_) => text.to_owned(),
    }
}

/// A bound for SQL: the time, or an infinity.
fn bound(at: Option<&str>, open: &'static str) -> String {
    at.map_or_else(|| open.to_owned(), str::to_owned)
}

/// What both bases share: notifications received in the period, and the
/// items open now that were opened before its end.
async fn check_outcomes_and_exceptions(
    books: &Books,
    report: &serde_json::Value,
    from: Option<&str>,
    to: Option<&str>,
) {
    let (lo, hi) = (bound(from, "-infinity"), bound(to, "infinity"));
    let outcomes = sql_counts(
        &books.db,
        "SELECT outcome, count(*)::int8 FROM notifications \
         WHERE received_at >= $1::text::timestamptz AND received_at < $2::text::timestamptz \
         GROUP BY outcome",
        &[&lo, &hi],
    )
    .await;
    assert_eq!(
        counts(
            report,
            "notifications_by_outcome",
            "outcome",
            "notifications"
        ),
        outcomes,
        "{from:?}..{to:?}"
    );
    let rows = query(
        &books.db,
        "SELECT kind, count(*)::int8, \
                to_char(min(created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
         FROM review_items WHERE status = 'open' AND created_at < $1::text::timestamptz \
         GROUP BY kind ORDER BY kind",
        &[&hi],
    )
    .await;
    let listed = report["open_exceptions"]
        .as_array()
        .expect("open_exceptions");
    assert_eq!(listed.len(), rows.len(), "{listed:?}");
    for (item, row) in listed.iter().zip(rows) {
        assert_eq!(item["kind"], row.get::<_, String>(0));
        assert_eq!(item["open"], row.get::<_, i64>(1));
        // Truncated to the second, as exported.
        assert_eq!(item["oldest_at"], row.get::<_, String>(2));
        assert!(item["oldest_age_seconds"].as_i64().expect("age") >= 0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_figure_of_a_period_by_event_equals_the_payments_that_moved_in_it() {
    let (books, cuts, snapshots) = scenario().await;
    // Periods cutting between the phases, one phase, two, open-ended.
    let mut periods: Vec<(Option<usize>, Option<usize>)> = vec![(None, None)];
    for i in 0..cuts.len() {
        for j in i + 1..cuts.len() {
            periods.push((Some(i), Some(j)));
        }
        periods.push((Some(i), None));
        periods.push((None, Some(i)));
    }
    let mut nonzero = 0;
    for (i, j) in periods {
        let from = i.map(|i| cuts[i].as_str());
        let to = j.map(|j| cuts[j].as_str());
        let mut args = vec!["--by", "event"];
        if let Some(from) = from {
            args.extend(["--from", from]);
        }
        if let Some(to) = to {
            args.extend(["--to", to]);
        }
        let report = report_json(&books.db, &args);
        assert_eq!(report["period"]["by"], "event");

        // The money: what the payments gained between the snapshots.
        let empty = Snapshot::new();
        let start = i.map_or(&empty, |i| &snapshots[i]);
        let end = j.map_or(snapshots.last().expect("snapshots"), |j| &snapshots[j]);
        let moved = end.iter().filter_map(|(id, (currency, now))| {
            let was = start.get(id).map(|(_, f)| *f).unwrap_or_default();
            let delta = OrderFigures {
                expected: now.expected,
                paid: now.paid - was.paid,
                refunded: now.refunded - was.refunded,
                charged_back: now.charged_back - was.charged_back,
            };
            (delta.paid != 0 || delta.refunded != 0 || delta.charged_back != 0)
                .then(|| (currency.clone(), delta, now.expected))
        });
        let expected = expected_totals(moved);
        nonzero += expected.len();
        assert_eq!(totals(&report), expected, "by event {from:?}..{to:?}");

        // The orders: those with money booked in the period, by state.
        let (lo, hi) = (bound(from, "-infinity"), bound(to, "infinity"));
        let states = sql_counts(
            &books.db,
            "SELECT o.status, count(DISTINCT o.id)::int8 FROM money_movements m \
             JOIN orders o ON o.id = m.order_id \
             WHERE m.booked_at >= $1::text::timestamptz AND m.booked_at < $2::text::timestamptz \
             GROUP BY o.status",
            &[&lo, &hi],
        )
        .await;
        assert_eq!(
            counts(&report, "orders_by_state", "state", "orders"),
            states,
            "{from:?}..{to:?}"
        );
        check_outcomes_and_exceptions(&books, &report, from, to).await;
    }
    assert!(nonzero >= 10, "the periods hold money");

    // Phase 2 by hand, so the sums above cannot all be zero by mistake:
    // USD two payments of the double charge; EUR a refund of 30.00 and a
    // chargeback of 50.00 (the mismatch pays nothing); GBP the payment and
    // the refund held before it.
    let phase2 = totals(&report_json(
        &books.db,
        &["--by", "event", "--from", &cuts[1], "--to", &cuts[2]],
    ));
    assert_eq!(phase2["USD"], [1, 80_00, 160_00, 0, 0, 0, 0, 160_00]);
    assert_eq!(phase2["EUR"], [2, 150_00, 0, 30_00, 0, 50_00, 0, -80_00]);
    assert_eq!(phase2["GBP"], [1, 20_00, 20_00, 5_00, 0, 0, 0, 15_00]);
    assert_eq!(phase2["JPY"], [1, 5000, 5000, 0, 0, 0, 0, 5000]);
    assert!(!phase2.contains_key("BHD"), "nothing moved in BHD");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_figure_of_a_period_by_creation_equals_its_orders_payments() {
    let (books, _, _) = scenario().await;
    let days = [
        (None, None),
        (Some("2026-10-01"), Some("2026-10-31")),
        (Some("2026-11-01"), Some("2026-11-15")),
        (Some("2026-11-16"), Some("2026-11-30")),
        (Some("2026-11-15T23:00:00Z"), Some("2026-11-16T00:00:00Z")),
        (Some("2026-11-02"), None),
        (None, Some("2026-11-30")),
        (Some("2027-01-01"), None),
    ];
    let mut counted = BTreeSet::new();
    for (from, to) in days {
        let mut args = vec!["--by", "created"];
        if let Some(from) = from {
            args.extend(["--from", from]);
        }
        if let Some(to) = to {
            args.extend(["--to", to]);
        }
        let report = report_json(&books.db, &args);
        // A date bound is its day's first instant; a --to date is
        // included whole.
        let lo = from.map(|d| instant(d, false));
        let hi = to.map(|d| instant(d, true));
        let (lo_sql, hi_sql) = (
            bound(lo.as_deref(), "-infinity"),
            bound(hi.as_deref(), "infinity"),
        );
        let money = query(
            &books.db,
            "SELECT o.currency, count(DISTINCT o.id)::int8, \
                    (SELECT sum(x.expected_minor) FROM orders x WHERE x.currency = o.currency \
                       AND x.created_at >= $1::text::timestamptz \
                       AND x.created_at < $2::text::timestamptz)::int8, \
                    coalesce(sum(p.paid_minor), 0)::int8, \
                    coalesce(sum(p.refunded_minor) FILTER (WHERE p.paid_minor > 0), 0)::int8, \
                    coalesce(sum(greatest(p.paid_minor - p.refunded_minor, 0)) \
                             FILTER (WHERE p.reversed AND p.paid_minor > 0), 0)::int8 \
             FROM orders o LEFT JOIN payments p ON p.order_id = o.id \
             WHERE o.created_at >= $1::text::timestamptz AND o.created_at < $2::text::timestamptz \
             GROUP BY o.currency",
            &[&lo_sql, &hi_sql],
        )
        .await;
        let expected: Totals = money
            .into_iter()
            .map(|r| {
                let (paid, refunded, charged_back): (i64, i64, i64) =
                    (r.get(3), r.get(4), r.get(5));
                (
                    r.get(0),
                    [
                        r.get(1),
                        r.get(2),
                        paid,
                        refunded,
                        0,
                        charged_back,
                        0,
                        paid - refunded - charged_back,
                    ],
                )
            })
            .collect();
        assert_eq!(totals(&report), expected, "by created {from:?}..{to:?}");
        counted.extend(expected.keys().cloned());
        let states = sql_counts(
            &books.db,
            "SELECT status, count(*)::int8 FROM orders \
             WHERE created_at >= $1::text::timestamptz AND created_at < $2::text::timestamptz \
             GROUP BY status",
            &[&lo_sql, &hi_sql],
        )
        .await;
        assert_eq!(
            counts(&report, "orders_by_state", "state", "orders"),
            states,
            "{from:?}..{to:?}"
        );
        check_outcomes_and_exceptions(&books, &report, lo.as_deref(), hi.as_deref()).await;
    }
    assert_eq!(counted.len(), 5, "every currency was counted: {counted:?}");

    // All time, the two bases count the same money.
    let created = totals(&report_json(&books.db, &["--by", "created"]));
    let event = totals(&report_json(&books.db, &["--by", "event"]));
    let money = |t: &Totals| -> BTreeMap<String, [i64; 6]> {
        t.iter()
            .filter(|(_, f)| f[2..].iter().any(|x| *x != 0))
            .map(|(c, f)| (c.clone(), [f[2], f[3], f[4], f[5], f[6], f[7]]))
            .collect()
    };
    assert_eq!(money(&created), money(&event));
    // The bug of issue 12: a chargeback is not revenue. USD: 30.00 + 80.00
    // + 80.00 paid, 10.00 + 80.00 refunded, and the 30.00 payment refunded
    // 10.00 then charged back: 20.00 charged back (issue 22: never what a
    // refund already returned). Net 190 - 90 - 20 = 80.
    assert_eq!(
        created["USD"],
        [2, 110_00, 190_00, 90_00, 0, 20_00, 0, 80_00]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_speaks_table_csv_and_json_with_stable_names_and_refuses_empty_periods() {
    let (books, _, _) = scenario().await;
    let db = &books.db;
    let report = report_json(db, &["--from", "2026-10-01", "--to", "2026-12-31"]);
    let keys = |value: &serde_json::Value| -> Vec<String> {
        value.as_object().expect("object").keys().cloned().collect()
    };
    assert_eq!(
        keys(&report),
        [
            "books",
            "late_for_closed_period",
            "notifications_by_outcome",
            "open_exceptions",
            "orders_by_state",
            "payouts",
            "period",
            "totals"
        ]
    );
    assert_eq!(
        report["period"],
        serde_json::json!({"from": "2026-10-01T00:00:00Z", "to": "2027-01-01T00:00:00Z", "by": "created"})
    );
    assert_eq!(
        keys(&report["totals"][0]),
        [
            "charged_back",
            "commission",
            "currency",
            "expected",
            "fees",
            "net",
            "net_revenue",
            "orders",
            "paid",
            "refunded",
            "reinstated",
            "reversed",
            "vat",
            "written_off"
        ]
    );
    assert_eq!(
        keys(&report["open_exceptions"][0]),
        ["kind", "oldest_age_seconds", "oldest_at", "open"]
    );

    let csv_out = cli(db)
        .args(["report", "--format", "csv", "--from", "2026-10-01"])
        .output()
        .expect("csv");
    let mut reader = csv::Reader::from_reader(csv_out.stdout.as_slice());
    assert_eq!(
        reader.headers().expect("header"),
        vec![
            "section",
            "name",
            "count",
            "expected",
            "paid",
            "refunded",
            "net",
            "reversed",
            "charged_back",
            "fees",
            "oldest_at",
            "oldest_age_seconds",
            "vat",
            "net_revenue",
            "commission",
            "expected_payout",
            "settled_payout",
            "reinstated"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    let usd = rows
        .iter()
        .find(|r| &r[0] == "totals" && &r[1] == "USD")
        .expect("USD row");
    // Commission 0.00: the notices (fixture 05's fields) carry 2.49 each,
    // and what the refunds and the chargeback carry goes back. The
    // chargeback of the 30.00 payment refunded 10.00 first takes the
    // 20.00 left: net 190.00 - 90.00 - 20.00 = 80.00.
    assert_eq!(
        usd.iter().collect::<Vec<_>>(),
        [
            "totals", "USD", "2", "110.00", "190.00", "90.00", "80.00", "0.00", "20.00", "0.00",
            "", "", "0.00", "80.00", "0.00", "", "", "0.00"
        ]
    );
    let exception = rows
        .iter()
        .find(|r| &r[0] == "open_exceptions")
        .expect("an exception row");
    assert!(exception[10].ends_with('Z') && exception[11].parse::<i64>().is_ok());

    let table = cli(db)
        .args(["report", "--by", "event"])
        .output()
        .expect("table");
    let table = String::from_utf8(table.stdout).expect("utf-8");
    for heading in [
        "money booked in the period, dated when it moved",
        "CHARGED BACK",
        "REVERSED",
        "FEES",
        "NET",
        "OLDEST (UTC)",
        "reversed_after_payment",
    ] {
        assert!(table.contains(heading), "{heading} in\n{table}");
    }

    for (args, says) in [
        (
            &["--from", "2026-11-02", "--to", "2026-11-01"][..],
            "not before",
        ),
        (
            &[
                "--from",
                "2026-11-01T10:00:00Z",
                "--to",
                "2026-11-01T10:00:00Z",
            ],
            "not before",
        ),
        (&["--from", "yesterday"], "RFC 3339"),
        (&["--to", "2026-13-01"], "RFC 3339"),
        (&["--by", "paid"], "created"),
    ] {
        cli(db)
            .arg("report")
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(says));
    }
}

/// Issue 12, item 7: a customer's orders by the pseudonym of their e-mail,
/// the address never shown back.
#[tokio::test(flavor = "multi_thread")]
async fn orders_find_lists_a_customers_orders_by_the_pseudonym_of_their_address() {
    let (books, _, _) = scenario().await;
    let db = &books.db;
    let typed = "  Other.Shopper@EXAMPLE.test ";
    let run = |cmd: &mut Command| {
        let output = cmd.output().expect("run");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        for shown in [
            typed.trim(),
            OTHER_SHOPPER,
            "Other.Shopper",
            "other.shopper",
        ] {
            assert!(!text.contains(shown), "the address in {text}");
        }
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (code, json) = run(cli(db).args(["orders", "find", "--email", typed, "--format", "json"]));
    assert_eq!(code, Some(0));
    let found: serde_json::Value = serde_json::from_str(&json).expect("json");
    let refs: Vec<&str> = found
        .as_array()
        .expect("list")
        .iter()
        .map(|o| o["order_ref"].as_str().expect("ref"))
        .collect();
    assert_eq!(refs, ["FR-USD-5", "FR-EUR-7"]);

    // The same from standard input, as CSV and as a table.
    let (code, csv_text) = run(cli(db)
        .args(["orders", "find", "--email", "-", "--format", "csv"])
        .write_stdin(format!("{typed}\n")));
    assert_eq!(code, Some(0));
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(reader.headers().expect("header").get(0), Some("order_ref"));
    assert_eq!(reader.records().count(), 2);
    let (code, table) = run(cli(db).args(["orders", "find", "--email", SHOPPER]));
    assert_eq!(code, Some(0));
    assert!(
        table.contains("FR-EUR-1") && table.contains("FR-BHD-8"),
        "{table}"
    );
    assert!(!table.contains("FR-USD-5"), "{table}");
    assert!(table.contains("7 order(s)"), "{table}");

    // Nobody: an empty list, exit 0.
    let (code, json) = run(cli(db).args([
        "orders",
        "find",
        "--email",
        "nobody@example.test",
        "--format",
        "json",
    ]));
    assert_eq!((code, json.trim()), (Some(0), "[]"));

    // Without the key it says how to configure one (exit 2).
    let (code, _) = run(cli(db)
        .env_remove("PSEUDONYM_KEY_FILE")
        .args(["orders", "find", "--email", typed]));
    assert_eq!(code, Some(2));
    cli(db)
        .env_remove("PSEUDONYM_KEY_FILE")
        .args(["orders", "find", "--email", typed])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("pseudonym-key-file"))
        .stderr(predicate::str::contains("PSEUDONYM_KEY_FILE"));
    cli(db)
        .args(["orders", "find", "--email", "   "])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("empty"));
}
