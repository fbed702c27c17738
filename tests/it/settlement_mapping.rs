//! Issue 22 item 5: a real export ingested through `settlement import
//! --mapping`: the European example (two title lines, `;`, decimal commas
//! with `.` thousands, refunds and a chargeback written positive with
//! `amount_sign = "by_type"`, the fee spread over VAT, commission,
//! affiliate and FX columns). Every figure below is the fixture's, summed
//! by hand; the stored fee parts are checked with SQL over their JSON.
#![allow(clippy::inconsistent_digit_grouping)]

use predicates::prelude::*;

use crate::cli_reconcile::{cli, create_books, import_and_process_fixtures};
use crate::finance_report::query;
use crate::helpers::{TestDb, repo_path};

fn fixture(name: &str) -> String {
    repo_path(&format!("fixtures/settlement/{name}"))
        .display()
        .to_string()
}

fn import(db: &TestDb, file: &str, mapping: &str) -> assert_cmd::assert::Assert {
    cli(db)
        .args(["settlement", "import", file, "--mapping", mapping])
        .assert()
}

async fn line_count(db: &TestDb) -> i64 {
    query(db, "SELECT count(*) FROM settlement_lines", &[]).await[0].get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_european_export_is_ingested_through_its_mapping() {
    let db = TestDb::new();
    create_books(&db);
    import_and_process_fixtures(&db);
    let export = fixture("european-export.csv");
    let mapping = fixture("european-mapping.toml");

    // Six sales (one matched by order reference: the JPY line has no
    // REFNO), two refunds and a chargeback settle payments; the reserve
    // settles none. Exit 1: the sales' fees differ from the notices'
    // commissions, as in the default export with the same fees.
    import(&db, &export, &mapping)
        .code(1)
        .stdout(predicate::str::contains(
            "10 line(s), 0 imported before (skipped), 10 new",
        ))
        .stdout(predicate::str::contains(
            "matched 9 (by order reference 1), differs 0, unknown 0, other (fees, adjustments) 1",
        ));

    // Per currency, by hand from the file:
    // EUR gross 107.00 + 89.00 − 1,234.56 = −1,038.56; fee 3.35 + 2.83;
    //     net 103.65 + 86.17 − 1,234.56 = −1,044.74.
    // USD gross 49.99 − 20.00 − 29.99 + 200.00 + 89.00 − 89.00 = 200.00;
    //     fee 1.75 + 6.07 + 2.88 + 15.00 = 25.70;
    //     net 48.24 − 20.00 − 29.99 + 193.93 + 86.12 − 104.00 = 174.30.
    // JPY 2,500 (not 2.5: `.` groups thousands), fee 90, net 2,410.
    let totals: Vec<(String, i64, i64, i64)> = query(
        &db,
        "SELECT currency, sum(gross_minor)::int8, sum(fee_minor)::int8, sum(net_minor)::int8 \
         FROM settlement_lines GROUP BY currency ORDER BY currency",
        &[],
    )
    .await
    .into_iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect();
    assert_eq!(
        totals,
        [
            ("EUR".to_owned(), -1_038_56, 6_18, -1_044_74),
            ("JPY".to_owned(), 2_500, 90, 2_410),
            ("USD".to_owned(), 200_00, 25_70, 174_30),
        ]
    );
    // Written positive, stored as money taken back.
    let taken_back: Vec<(String, i64, i64, i64, String)> = query(
        &db,
        "SELECT kind, gross_minor, fee_minor, net_minor, status FROM settlement_lines \
         WHERE kind IN ('refund', 'chargeback') ORDER BY kind, gross_minor",
        &[],
    )
    .await
    .into_iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect();
    assert_eq!(
        taken_back,
        [
            (
                "chargeback".to_owned(),
                -89_00,
                15_00,
                -104_00,
                "matched".to_owned()
            ),
            ("refund".to_owned(), -29_99, 0, -29_99, "matched".to_owned()),
            ("refund".to_owned(), -20_00, 0, -20_00, "matched".to_owned()),
        ]
    );
    let open_settlement_items: i64 = query(
        &db,
        "SELECT count(*) FROM review_items WHERE status = 'open' AND kind IN \
         ('settlement_unknown', 'settlement_amount_differs', 'payout_total_differs')",
        &[],
    )
    .await[0]
        .get(0);
    assert_eq!(open_settlement_items, 0);

    // Each deduction kept: on every line the parts sum to the fee.
    let off: i64 = query(
        &db,
        "SELECT count(*) FROM settlement_lines AS l WHERE l.fee_parts IS NULL \
            OR l.fee_minor <> (SELECT sum((p ->> 'minor')::int8) \
                               FROM jsonb_array_elements(l.fee_parts::jsonb) AS p)",
        &[],
    )
    .await[0]
        .get(0);
    assert_eq!(off, 0, "every line's fee parts sum to its fee");
    let parts = |order: &'static str| {
        let db = &db;
        async move {
            query(
                db,
                "SELECT p ->> 'column', (p ->> 'minor')::int8 FROM settlement_lines AS l, \
                    jsonb_array_elements(l.fee_parts::jsonb) WITH ORDINALITY AS e(p, n) \
                 WHERE l.order_ref = $1 AND l.kind = 'sale' ORDER BY e.n",
                &[order],
            )
            .await
            .into_iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
            .collect::<Vec<_>>()
        }
    };
    let named = |v: [(&str, i64); 4]| -> Vec<(String, i64)> {
        v.iter().map(|(c, m)| ((*c).to_owned(), *m)).collect()
    };
    assert_eq!(
        parts("SHOP-1003").await,
        named([
            ("MwSt", 15),
            ("Provision", 60),
            ("Affiliate", 10),
            ("FX", 5)
        ])
    );
    assert_eq!(
        parts("SHOP-1010").await,
        named([
            ("MwSt", 1_15),
            ("Provision", 4_42),
            ("Affiliate", 50),
            ("FX", 0)
        ])
    );
    // Empty cells are zero parts.
    assert_eq!(
        parts("SHOP-1012").await,
        named([
            ("MwSt", 54),
            ("Provision", 2_29),
            ("Affiliate", 0),
            ("FX", 0)
        ])
    );

    // Importing it again changes nothing.
    import(&db, &export, &mapping).stdout(predicate::str::contains(
        "10 line(s), 10 imported before (skipped), 0 new",
    ));
    assert_eq!(line_count(&db).await, 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mapping_without_the_sign_rule_or_with_a_malformed_number_imports_nothing() {
    let db = TestDb::new();
    create_books(&db);
    import_and_process_fixtures(&db);
    let export = fixture("european-export.csv");
    let text = std::fs::read_to_string(fixture("european-mapping.toml")).expect("mapping");

    // Without amount_sign = "by_type" the refunds written positive are
    // refused, each named by its line in the file (title lines counted:
    // the refunds are lines 8 and 9), and the chargeback written as
    // magnitudes (89.00, fee 15.00, net 104.00) no longer adds up.
    let as_written = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(
        as_written.path(),
        text.replace("amount_sign = \"by_type\"", "amount_sign = \"as_written\""),
    )
    .expect("write");
    import(&db, &export, &as_written.path().display().to_string())
        .code(2)
        .stderr(predicate::str::contains("3 bad line(s)"))
        .stderr(predicate::str::contains(
            "line 8: a refund takes money back",
        ))
        .stderr(predicate::str::contains(
            "line 9: a refund takes money back",
        ))
        .stderr(predicate::str::contains(
            "line 12: net 104.00 is not gross 89.00 − fee 15.00",
        ));
    assert_eq!(line_count(&db).await, 0);

    // An amount written with English separators under the European
    // mapping is an error on its line, never 1.23456 or 123,456.
    let original = std::fs::read_to_string(&export).expect("export");
    let english = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(
        english.path(),
        original.replace("200,00;1,15", "1,200.00;1,15"),
    )
    .expect("write");
    import(
        &db,
        &english.path().display().to_string(),
        &fixture("european-mapping.toml"),
    )
    .code(2)
    .stderr(predicate::str::contains(
        "line 10: gross: `1,200.00` is not an amount written like 1.234,56",
    ));
    assert_eq!(line_count(&db).await, 0);
}
