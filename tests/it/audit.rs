//! Issue 23, item 7: tamper evidence. After a real run (notices through the
//! pipeline, a person's resolutions, a close of the books) `audit verify`
//! passes; an UPDATE of one ledger amount or a DELETE of one resolution,
//! made as the database owner with the append-only triggers lifted, makes
//! it fail naming the row; the daemon's role is refused those statements.

use ipn_reconciler::domain::ReviewKind;
use ipn_reconciler::domain::audit::{ChainRow, chain_digest, first_break};
use ipn_reconciler::domain::review::ReviewAction;
use ipn_reconciler::services::review::{ResolveRequest, resolve};
use ipn_reconciler::store::audit::CHAINED;

use crate::cli_reconcile::cli;
use crate::finance_report::{Books, SHOPPER, query};
use crate::helpers::TestDb;

const ORDERS_CSV: &str = "order_ref,amount,currency,created_at
AU-1,100.00,EUR,2026-11-02T08:00:00Z
AU-2,60.00,EUR,2026-11-10T08:00:00Z
AU-3,25.00,EUR,2026-11-12T08:00:00Z
";

/// Statements run as the owner, in one session.
async fn as_owner(db: &TestDb, sql: &str) {
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client.batch_execute(sql).await.expect(sql);
}

/// `audit verify`: its exit code and standard output.
fn audit_verify(db: &TestDb) -> (i32, String) {
    let output = cli(db).args(["audit", "verify"]).output().expect("audit");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("audit: recomputing the chains of order_events"),
        "progress on stderr: {stderr}"
    );
    (output.status.code().expect("exit code"), stdout)
}

/// Books after a small run: payments, a refund, a wrong amount a person
/// books with `collect_difference`, another dismissed, a close.
async fn books_after_a_run() -> Books {
    let books = Books::new(ORDERS_CSV).await;
    books
        .notify("AU-1", 2001, "COMPLETE", "100.00", "EUR", SHOPPER)
        .await;
    books
        .notify("AU-1", 2001, "REFUND", "-30.00", "EUR", SHOPPER)
        .await;
    books
        .notify("AU-2", 2002, "COMPLETE", "50.00", "EUR", SHOPPER)
        .await;
    books
        .notify("AU-3", 2003, "COMPLETE", "20.00", "EUR", SHOPPER)
        .await;
    let items = query(
        &books.db,
        "SELECT id, order_ref FROM review_items WHERE kind = $1 AND status = 'open' \
         ORDER BY order_ref",
        &[ReviewKind::AmountMismatch.as_str()],
    )
    .await;
    assert_eq!(items.len(), 2, "two wrong amounts");
    for (row, action) in items
        .iter()
        .zip([ReviewAction::CollectDifference, ReviewAction::Dismiss])
    {
        resolve(
            &books.store,
            &ResolveRequest::new(row.get(0), action, "finance-anna", "checked the order"),
        )
        .await
        .expect("resolved");
    }
    let closed = cli(&books.db)
        .args([
            "books",
            "close",
            "--through",
            "2026-11-30",
            "--by",
            "finance-anna",
        ])
        .output()
        .expect("books close");
    assert!(
        closed.status.success(),
        "{}",
        String::from_utf8_lossy(&closed.stderr)
    );
    books
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_verify_passes_after_a_run_and_names_a_changed_amount_and_a_deleted_resolution() {
    let books = books_after_a_run().await;
    let db = &books.db;

    let (code, stdout) = audit_verify(db);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.starts_with("audit verify: ok: "), "{stdout}");
    let orders_line = "3 orders add up";
    assert!(stdout.contains(orders_line), "{stdout}");

    // One ledger amount changed by the owner, the trigger lifted for it.
    let ledger = query(
        db,
        "SELECT e.id, e.amount_minor FROM order_events AS e \
         JOIN orders AS o ON o.id = e.order_id \
         WHERE o.order_ref = 'AU-1' AND e.order_status = 'REFUND'",
        &[],
    )
    .await;
    let (ledger_id, amount): (i64, i64) = (ledger[0].get(0), ledger[0].get(1));
    as_owner(
        db,
        &format!(
            "ALTER TABLE order_events DISABLE TRIGGER USER; \
             UPDATE order_events SET amount_minor = {amount} + 1 WHERE id = {ledger_id}; \
             ALTER TABLE order_events ENABLE TRIGGER USER;"
        ),
    )
    .await;
    let (code, stdout) = audit_verify(db);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.starts_with("audit verify: FAILED"), "{stdout}");
    assert!(
        stdout.contains(&format!("order_events row id={ledger_id} (chain order_id=")),
        "names the row: {stdout}"
    );
    assert!(stdout.contains("changed after it was written"), "{stdout}");

    // Put back as it was: the chain verifies again.
    as_owner(
        db,
        &format!(
            "ALTER TABLE order_events DISABLE TRIGGER USER; \
             UPDATE order_events SET amount_minor = {amount} WHERE id = {ledger_id}; \
             ALTER TABLE order_events ENABLE TRIGGER USER;"
        ),
    )
    .await;
    let (code, stdout) = audit_verify(db);
    assert_eq!(code, 0, "{stdout}");

    // One resolution deleted by the owner.
    let rows = query(
        db,
        "SELECT r.id, r.review_item_id FROM review_resolutions AS r \
         WHERE r.order_ref = 'AU-3' AND r.action = 'dismiss'",
        &[],
    )
    .await;
    let (resolution, item): (i64, i64) = (rows[0].get(0), rows[0].get(1));
    as_owner(
        db,
        &format!(
            "SET session_replication_role = replica; \
             DELETE FROM review_resolutions WHERE id = {resolution};"
        ),
    )
    .await;
    let (code, stdout) = audit_verify(db);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("review_resolutions chain order_ref=AU-3"),
        "names the chain: {stdout}"
    );
    assert!(
        stdout.contains(&format!("review_items row id={item} is resolved")),
        "names the item: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_total_changed_with_its_ledger_untouched_is_named() {
    let books = books_after_a_run().await;
    as_owner(
        &books.db,
        "UPDATE orders SET paid_minor = paid_minor + 100 WHERE order_ref = 'AU-1'",
    )
    .await;
    let (code, stdout) = audit_verify(&books.db);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(
            "orders row AU-1: paid_minor is 10100 but its money movements add up to 10000"
        ),
        "{stdout}"
    );
}

/// The digests the database wrote are the ones `domain::audit` computes
/// from the rows' canonical content: the chains can be checked outside
/// the database, and the SQL check agrees with the rule.
#[tokio::test(flavor = "multi_thread")]
async fn the_stored_chains_follow_the_documented_rule() {
    let books = books_after_a_run().await;
    let store_chains = books.store.chained_tables().await.expect("audit_chains");
    let mut expected: Vec<(String, Option<String>)> = CHAINED
        .iter()
        .map(|c| (c.table.to_owned(), c.key.map(str::to_owned)))
        .collect();
    expected.sort();
    assert_eq!(store_chains, expected);

    let (client, connection) = tokio_postgres::connect(&books.db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute("SET timezone = 'UTC'")
        .await
        .expect("utc");
    let mut sealed = 0;
    for chained in CHAINED {
        let key = chained.key.map_or_else(
            || "''".to_owned(),
            |k| format!("coalesce(to_jsonb(t) ->> '{k}', '')"),
        );
        let rows = client
            .query(
                &format!(
                    "SELECT {key} AS chain, t.chain_seq, t.chain_digest, \
                     jsonb_strip_nulls(to_jsonb(t) - 'chain_seq' - 'chain_digest')::text \
                     FROM {} AS t ORDER BY 1, t.chain_seq",
                    chained.table
                ),
                &[],
            )
            .await
            .expect("rows");
        let mut chains: std::collections::BTreeMap<String, Vec<ChainRow>> = Default::default();
        for row in &rows {
            chains.entry(row.get(0)).or_default().push(ChainRow {
                seq: row.get(1),
                digest: row.get(2),
                content: row.get(3),
            });
        }
        for (chain, rows) in &chains {
            assert_eq!(first_break(rows), None, "{} {chain}", chained.table);
            sealed += rows.len();
        }
    }
    assert!(sealed >= 10, "{sealed} sealed rows");
    // The first row of a chain: SHA-256 of its content alone.
    let first = client
        .query_one(
            "SELECT chain_digest, jsonb_strip_nulls(to_jsonb(b) - 'chain_seq' - 'chain_digest')::text \
             FROM books_closes AS b WHERE chain_seq = 1",
            &[],
        )
        .await
        .expect("first close");
    assert_eq!(
        first.get::<_, String>(0),
        chain_digest(None, &first.get::<_, String>(1))
    );
}

/// The daemon's role reads and adds, and is refused UPDATE, DELETE and
/// TRUNCATE of the chained tables (permission denied, before any trigger).
#[tokio::test(flavor = "multi_thread")]
async fn the_daemons_role_is_refused_update_delete_and_truncate() {
    let books = books_after_a_run().await;
    let (client, connection) = tokio_postgres::connect(&books.db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute("SET ROLE ipn_daemon")
        .await
        .expect("set role");
    for statement in [
        "UPDATE order_events SET amount_minor = 1",
        "DELETE FROM review_resolutions",
        "UPDATE money_movements SET amount_minor = 1",
        "DELETE FROM console_actions",
        "UPDATE settlement_lines SET gross_minor = 1",
        "DELETE FROM books_closes",
        "TRUNCATE order_events",
        "TRUNCATE review_resolutions",
        "UPDATE audit_chain_heads SET seq = 1",
        "DELETE FROM audit_chain_heads",
    ] {
        let err = client.batch_execute(statement).await.expect_err(statement);
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{statement}: {err}"
        );
    }
    // What the daemon does, it may: read, add (sealed by the database),
    // update the working tables, take the books' close locks.
    let count: i64 = client
        .query_one("SELECT count(*) FROM order_events", &[])
        .await
        .expect("select")
        .get(0);
    assert!(count > 0);
    client
        .batch_execute(
            "BEGIN; SELECT books_lock_for_close(); \
             INSERT INTO books_closes (action, time_zone, done_by, note) \
                 VALUES ('reopen', 'UTC', 'daemon-test', 'as the daemon'); \
             UPDATE orders SET updated_at = updated_at WHERE order_ref = 'AU-1'; \
             COMMIT;",
        )
        .await
        .expect("the daemon's own writes");
    client.batch_execute("RESET ROLE").await.expect("reset");
    let (code, stdout) = audit_verify(&books.db);
    assert_eq!(code, 0, "{stdout}");
}

/// `serve` audits once at start (then every `audit-interval`) and says
/// when the books last verified.
#[tokio::test(flavor = "multi_thread")]
async fn serve_audits_at_start_and_exports_the_time_it_passed() {
    use crate::helpers::amqp::{TestQueue, wait_until};
    use crate::helpers::daemon::Daemon;
    use std::time::Duration;

    let books = books_after_a_run().await;
    let queue = TestQueue::new("200ms");
    let daemon = Daemon::start(&books.db, &queue, &[("IPN_AUDIT_INTERVAL", "2h")]);
    let value = |metrics: &str, series: &str| -> Option<i64> {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    };
    let before = chrono::Utc::now().timestamp() - 5;
    let passed = wait_until(Duration::from_secs(30), || async {
        let Some((200, metrics)) = daemon.get("/metrics").await else {
            return false;
        };
        value(&metrics, "ipn_audit_last_ok_timestamp_seconds").is_some_and(|at| at >= before)
            && value(&metrics, "ipn_audit_interval_seconds") == Some(7200)
            && value(&metrics, "ipn_audit_failures_total") == Some(0)
    })
    .await;
    assert!(passed, "audited; logs:\n{}", daemon.logs());
}
