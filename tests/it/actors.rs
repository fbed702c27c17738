//! Issue 23, item 5: who did what, provably. Every money- or queue-moving
//! action writes exactly one action-log row (`console_actions`) naming its
//! actor (the console user, or `--by` with the OS account and host), in
//! the transaction of its effect, and a refused action writes none;
//! `link_order` checks the currency and the open balance of the order it
//! books on, and above `four-eyes-amount` waits for a second, different
//! resolver who confirms it in the console. Against the real PostgreSQL.

use assert_cmd::Command;
use chrono::{NaiveDate, Utc};
use ipn_reconciler::domain::event_time::CloseError;
use ipn_reconciler::domain::four_eyes::{FourEyesAmount, LinkRefusal};
use ipn_reconciler::domain::review::ReviewAction;
use ipn_reconciler::domain::settlement::{Mapping, parse_payouts, parse_settlement};
use ipn_reconciler::domain::{
    BodyDigest, EventIdentity, Money, OrderState, Outcome, PaymentEvent, ReviewKind, StatusField,
};
use ipn_reconciler::ipn::{Algorithm, KeyId};
use ipn_reconciler::services::review::{
    ConfirmRequest, Origin, ResolveError, ResolveRequest, confirm_link_order, resolve,
};
use ipn_reconciler::services::settlement::{ImportError, ImportOptions, Importer, import};
use ipn_reconciler::store::action_log::Actor;
use ipn_reconciler::store::books::{BooksAction, BooksChange};
use ipn_reconciler::store::console::ConsoleRole;
use ipn_reconciler::store::{NewOrder, ReviewStatus, Store};

use crate::helpers::TestDb;
use crate::helpers::console::{Browser, RESOLVER, TestConsole};

/// A payment notice for `order_ref` under `refno`, in `currency`.
fn payment(order_ref: &str, refno: &str, amount: &str, currency: &str) -> PaymentEvent {
    let tag = format!("{order_ref}|{refno}|{amount}|{currency}");
    PaymentEvent {
        carries_message_id: false,
        digest: BodyDigest::of(format!("body|{tag}").as_bytes()),
        identity: EventIdentity::parse(
            BodyDigest::of(format!("identity|{tag}").as_bytes()).as_str(),
        )
        .expect("identity"),
        processor_ref: refno.to_owned(),
        merchant_ref: Some(order_ref.to_owned()),
        status: StatusField::parse("COMPLETE"),
        fraud_denied: false,
        test_order: false,
        amount: Money::iso(amount, currency).expect("amount"),
        payment_method: Some("CCVISAMC".to_owned()),
        sale_date: None,
        payment_date: None,
        complete_date: None,
        ipn_date: None,
        key_id: KeyId::parse("test-2026").expect("key id"),
        algorithm: Algorithm::Sha3_256,
        customer_pseudonym: None,
        pan_fields: Vec::new(),
        licences: Vec::new(),
        chargeback: None,
        money: Default::default(),
    }
}

async fn import_order(store: &Store, order_ref: &str, amount: &str, currency: &str) {
    store
        .import_orders(&[NewOrder::new(order_ref, Money::iso(amount, currency).unwrap()).unwrap()])
        .await
        .expect("import");
}

/// An orphan payment of `amount` EUR under order reference `ghost`, with
/// its open `orphan_payment` item; returns the item's id.
async fn orphan(store: &Store, ghost: &str, amount: &str) -> i64 {
    let pay = payment(ghost, "900010", amount, "EUR");
    let applied = store
        .apply(&pay, Utc::now(), &Default::default())
        .await
        .expect("apply");
    assert_eq!(applied.outcome, Outcome::OrderNotFound);
    store
        .open_review_item(
            ReviewKind::OrphanPayment,
            Some(ghost),
            Some(pay.digest.as_str()),
            "a payment for an order that never appeared",
        )
        .await
        .expect("orphan item");
    store
        .review_items_by_status(ReviewStatus::Open, Some(ReviewKind::OrphanPayment))
        .await
        .expect("items")
        .into_iter()
        .find(|i| i.order_ref.as_deref() == Some(ghost))
        .expect("the orphan's item")
        .id
}

async fn sql(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

/// The action log's rows, oldest first: (user, action, source, os_user,
/// host, subject, details).
type Row = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

async fn log(url: &str) -> Vec<Row> {
    sql(url)
        .await
        .query(
            "SELECT user_name, action, source, os_user, host, subject, details \
             FROM console_actions ORDER BY id",
            &[],
        )
        .await
        .expect("log")
        .into_iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
            )
        })
        .collect()
}

fn cli_actor(name: &str) -> Actor {
    Actor::cli(name, Some("anna".to_owned()), Some("ops-1".to_owned()))
}

fn cli_origin() -> Origin {
    Origin::cli(Some("anna".to_owned()), Some("ops-1".to_owned()))
}

async fn paid(store: &Store, order_ref: &str) -> String {
    store.order(order_ref).await.unwrap().unwrap().paid
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resolution_writes_one_row_naming_its_machine_and_a_refused_one_none() {
    let db = TestDb::new();
    let store = db.store().await;
    let item = orphan(&store, "GHOST-1", "40.00").await;

    // Refused (a misfit action): nothing resolved, no row.
    let err = resolve(
        &store,
        &ResolveRequest {
            origin: cli_origin(),
            ..ResolveRequest::new(item, ReviewAction::ApplyRepeat, "finance-anna", "x")
        },
    )
    .await
    .expect_err("misfit");
    assert!(matches!(err, ResolveError::Misfit { .. }), "{err:?}");
    assert!(log(&db.url).await.is_empty());

    resolve(
        &store,
        &ResolveRequest {
            origin: cli_origin(),
            ..ResolveRequest::new(item, ReviewAction::Dismiss, " finance-anna ", "not ours")
        },
    )
    .await
    .expect("dismissed");
    let rows = log(&db.url).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (user, action, source, os_user, host, subject, details) = rows[0].clone();
    assert_eq!(
        (user.as_str(), action.as_str(), source.as_str()),
        ("finance-anna", "resolve_review", "cli")
    );
    assert_eq!(
        (os_user.as_deref(), host.as_deref()),
        (Some("anna"), Some("ops-1"))
    );
    assert_eq!(subject.as_deref(), Some(format!("#{item}").as_str()));
    assert_eq!(
        details.as_deref(),
        Some(format!("dismiss: #{item}").as_str())
    );

    // Final: resolving again is refused and writes nothing.
    resolve(
        &store,
        &ResolveRequest::new(item, ReviewAction::Dismiss, "finance-bob", "again"),
    )
    .await
    .expect_err("already resolved");
    assert_eq!(log(&db.url).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_command_line_records_by_with_the_account_and_host_it_ran_under() {
    let db = TestDb::new();
    let store = db.store().await;
    let item = orphan(&store, "GHOST-2", "40.00").await;
    Command::cargo_bin("ipn-reconciler")
        .expect("binary")
        .env("DATABASE_URL", &db.url)
        .args(["review", "resolve", &item.to_string()])
        .args([
            "--action",
            "dismiss",
            "--by",
            "finance-42",
            "--note",
            "test",
        ])
        .assert()
        .success();
    let rows = log(&db.url).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (user, action, source, os_user, host, ..) = rows[0].clone();
    assert_eq!(
        (user.as_str(), action.as_str(), source.as_str()),
        ("finance-42", "resolve_review", "cli")
    );
    assert_eq!(os_user, whoami::username().ok());
    assert_eq!(host, whoami::hostname().ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn link_order_refuses_another_currency_and_more_than_the_order_still_expects() {
    let db = TestDb::new();
    let store = db.store().await;
    let item = orphan(&store, "GHOST-3", "40.00").await;
    import_order(&store, "SHOP-USD", "40.00", "USD").await;
    import_order(&store, "SHOP-SMALL", "30.00", "EUR").await;
    import_order(&store, "SHOP-PAID", "40.00", "EUR").await;
    let paid_already = payment("SHOP-PAID", "900099", "40.00", "EUR");
    store
        .apply(&paid_already, Utc::now(), &Default::default())
        .await
        .expect("paid");
    let link = |order: &str| ResolveRequest {
        order_ref: Some(order.to_owned()),
        ..ResolveRequest::new(item, ReviewAction::LinkOrder, "finance-anna", "linked")
    };

    let err = resolve(&store, &link("SHOP-USD"))
        .await
        .expect_err("currency");
    assert!(
        matches!(
            &err,
            ResolveError::Link {
                source: LinkRefusal::CurrencyDiffers { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("USD"), "{err}");
    for order in ["SHOP-SMALL", "SHOP-PAID"] {
        let err = resolve(&store, &link(order)).await.expect_err("too much");
        assert!(
            matches!(
                &err,
                ResolveError::Link {
                    source: LinkRefusal::AboveOpenBalance { .. },
                    ..
                }
            ),
            "{order}: {err:?}"
        );
    }
    // The command line refuses it as a usage error (exit 2).
    Command::cargo_bin("ipn-reconciler")
        .expect("binary")
        .env("DATABASE_URL", &db.url)
        .args([
            "review",
            "resolve",
            &item.to_string(),
            "--action",
            "link_order",
        ])
        .args(["--order", "SHOP-SMALL", "--by", "finance-42", "--note", "x"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "more than the order still expects",
        ));
    // Nothing moved, nothing resolved, no row.
    assert_eq!(paid(&store, "SHOP-USD").await, "0.00");
    assert_eq!(paid(&store, "SHOP-SMALL").await, "0.00");
    assert!(log(&db.url).await.is_empty());
    import_order(&store, "SHOP-RIGHT", "40.00", "EUR").await;
    let done = resolve(&store, &link("SHOP-RIGHT")).await.expect("linked");
    assert_eq!(done.order_state, Some(OrderState::Paid));
    assert_eq!(done.amount.as_deref(), Some("40.00"));
    let rows = log(&db.url).await;
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0]
            .6
            .as_deref()
            .is_some_and(|d| d.contains("-> SHOP-RIGHT (40.00 EUR)")),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn below_four_eyes_a_link_moves_at_once_above_it_waits_for_another_resolver() {
    let db = TestDb::new();
    let store = db.store().await;
    let limit = FourEyesAmount::parse("40.00 EUR").expect("limit");

    // Exactly the limit: not above it, the money moves at once.
    let small = orphan(&store, "GHOST-4", "40.00").await;
    import_order(&store, "SHOP-4", "40.00", "EUR").await;
    let done = resolve(
        &store,
        &ResolveRequest {
            order_ref: Some("SHOP-4".to_owned()),
            four_eyes: limit.clone(),
            ..ResolveRequest::new(small, ReviewAction::LinkOrder, "alice", "linked")
        },
    )
    .await
    .expect("linked");
    assert_eq!(done.pending_request, None);
    assert_eq!(paid(&store, "SHOP-4").await, "40.00");

    // Above it: a request, no money, the item stays open.
    let big = orphan(&store, "GHOST-5", "40.01").await;
    import_order(&store, "SHOP-5", "40.01", "EUR").await;
    let asked = resolve(
        &store,
        &ResolveRequest {
            order_ref: Some("SHOP-5".to_owned()),
            four_eyes: limit.clone(),
            origin: Origin::Console,
            ..ResolveRequest::new(big, ReviewAction::LinkOrder, "alice", "the shop's order")
        },
    )
    .await
    .expect("asked");
    let request = asked.pending_request.expect("a request");
    assert_eq!(paid(&store, "SHOP-5").await, "0.00");
    assert_eq!(
        store.pending_link_request(big).await.unwrap().unwrap().id,
        request
    );
    // It is not asked for twice.
    let err = resolve(
        &store,
        &ResolveRequest {
            order_ref: Some("SHOP-5".to_owned()),
            four_eyes: limit,
            ..ResolveRequest::new(big, ReviewAction::LinkOrder, "bob", "again")
        },
    )
    .await
    .expect_err("waiting");
    assert!(
        matches!(err, ResolveError::AwaitingConfirmation { .. }),
        "{err:?}"
    );

    // The one who asked cannot confirm it, whatever the case or spaces.
    let confirm = |by: &str| ConfirmRequest {
        item_id: big,
        confirmed_by: by.to_owned(),
        origin: Origin::Console,
        policy: Default::default(),
    };
    let err = confirm_link_order(&store, &confirm(" Alice "))
        .await
        .expect_err("own request");
    assert!(matches!(err, ResolveError::OwnRequest(_)), "{err:?}");
    assert_eq!(paid(&store, "SHOP-5").await, "0.00");

    // Another resolver confirms: the money moves, once.
    let done = confirm_link_order(&store, &confirm("bob"))
        .await
        .expect("confirmed");
    assert_eq!(done.order_state, Some(OrderState::Paid));
    assert_eq!(paid(&store, "SHOP-5").await, "40.01");
    let err = confirm_link_order(&store, &confirm("carol"))
        .await
        .expect_err("resolved already");
    assert!(
        matches!(err, ResolveError::AlreadyResolved { .. }),
        "{err:?}"
    );
    assert_eq!(paid(&store, "SHOP-5").await, "40.01");
    assert_eq!(store.pending_link_request(big).await.unwrap(), None);

    let actions: Vec<(String, String)> =
        log(&db.url).await.into_iter().map(|r| (r.0, r.1)).collect();
    let expect = |u: &str, a: &str| (u.to_owned(), a.to_owned());
    assert_eq!(
        actions,
        [
            expect("alice", "resolve_review"),
            expect("alice", "request_link_order"),
            expect("bob", "confirm_link_order"),
        ]
    );
    let client = sql(&db.url).await;
    let row = client
        .query_one(
            "SELECT resolved_by, note FROM review_resolutions WHERE review_item_id = $1",
            &[&big],
        )
        .await
        .expect("resolution");
    assert_eq!(row.get::<_, String>(0), "alice");
    assert!(
        row.get::<_, String>(1).contains("confirmed by bob"),
        "{}",
        row.get::<_, String>(1)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn in_the_console_the_asker_cannot_confirm_and_a_second_resolver_moves_the_money() {
    let console = TestConsole::start_four_eyes(FourEyesAmount::parse("10").expect("limit")).await;
    let store = console.db.store().await;
    let item = orphan(&store, "GHOST-6", "40.00").await;
    import_order(&store, "SHOP-6", "40.00", "EUR").await;
    let hash = ipn_reconciler::console::auth::hash_password("bob-password-789").expect("hash");
    assert!(
        store
            .add_console_user("bob", ConsoleRole::Resolver, &hash, Utc::now())
            .await
            .expect("bob")
    );
    let before = log(&console.db.url).await.len();

    let mut alice = Browser::new(&console);
    assert_eq!(alice.login(RESOLVER.0, RESOLVER.1).await.status, 303);
    let path = format!("/review/{item}");
    let csrf = alice.get(&path).await.csrf();
    let answer = alice
        .post(
            &format!("{path}/resolve"),
            &[
                ("csrf", &csrf),
                ("action", "link_order"),
                ("order_ref", "SHOP-6"),
                ("note", "the shop's order"),
            ],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(paid(&store, "SHOP-6").await, "0.00");
    let page = alice.get(&path).await;
    assert!(
        page.body.contains("Waiting for a second resolver"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("/confirm"),
        "no confirm button for the asker"
    );
    let answer = alice
        .post(&format!("{path}/confirm"), &[("csrf", &csrf)])
        .await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert_eq!(paid(&store, "SHOP-6").await, "0.00");

    let mut bob = Browser::new(&console);
    assert_eq!(bob.login("bob", "bob-password-789").await.status, 303);
    let page = bob.get(&path).await;
    assert!(
        page.body.contains(&format!("{path}/confirm")),
        "{}",
        page.body
    );
    // The CSRF token is checked.
    let answer = bob
        .post(&format!("{path}/confirm"), &[("csrf", "forged")])
        .await;
    assert_ne!(answer.status, 303);
    assert_eq!(paid(&store, "SHOP-6").await, "0.00");
    let answer = bob
        .post(&format!("{path}/confirm"), &[("csrf", &page.csrf())])
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(paid(&store, "SHOP-6").await, "40.00");

    let rows = log(&console.db.url).await;
    let moved: Vec<(&str, &str, &str)> = rows[before..]
        .iter()
        .filter(|r| r.1 != "login")
        .map(|r| (r.0.as_str(), r.1.as_str(), r.2.as_str()))
        .collect();
    assert_eq!(
        moved,
        [
            ("alice", "request_link_order", "console"),
            ("bob", "confirm_link_order", "console"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn books_settlement_and_user_changes_write_one_row_each_and_refusals_none() {
    let db = TestDb::new();
    let store = db.store().await;
    let anna = cli_actor("finance-anna");

    // Books: a refused close writes nothing; a close and a reopen one each.
    let change = |action, through: Option<NaiveDate>| BooksChange {
        action,
        through,
        open_from: through.map(|d| {
            d.succ_opt()
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
        }),
        time_zone: "UTC".to_owned(),
        actor: anna.clone(),
        note: "month end".to_owned(),
    };
    let day = NaiveDate::from_ymd_opt(2026, 10, 31);
    let refused = store
        .change_books(change(BooksAction::Close, day), |_| {
            Err(CloseError::NothingClosed)
        })
        .await
        .expect("store");
    assert!(refused.is_err());
    assert!(log(&db.url).await.is_empty());
    store
        .change_books(change(BooksAction::Close, day), |_| Ok(()))
        .await
        .expect("store")
        .expect("closed");
    store
        .change_books(change(BooksAction::Reopen, None), |_| Ok(()))
        .await
        .expect("store")
        .expect("reopened");

    // Settlement: a dry run and a refused import write nothing.
    import_order(&store, "SHOP-S", "40.00", "EUR").await;
    store
        .apply(
            &payment("SHOP-S", "900050", "40.00", "EUR"),
            Utc::now(),
            &Default::default(),
        )
        .await
        .expect("paid");
    let lines = parse_settlement(
        "batch_id,processor_ref,order_ref,type,gross,fee,net,currency,settled_at\n\
         B1,900050,SHOP-S,sale,40.00,1.00,39.00,EUR,2026-11-30\n"
            .as_bytes(),
        &Mapping::default(),
        store.currencies(),
    )
    .expect("lines");
    let payouts = |amount: &str| {
        parse_payouts(
            format!("batch_id,paid_on,amount,currency\nB1,2026-12-02,{amount},EUR\n").as_bytes(),
            store.currencies(),
        )
        .expect("payouts")
    };
    let importer = Importer {
        actor: &anna,
        subject: "export.csv",
    };
    let dry = ImportOptions {
        dry_run: true,
        ..ImportOptions::default()
    };
    import(&store, &lines, &payouts("39.00"), dry, importer, &|_| {})
        .await
        .expect("dry run");
    assert_eq!(log(&db.url).await.len(), 2, "a dry run writes no row");
    import(
        &store,
        &lines,
        &payouts("39.00"),
        ImportOptions::default(),
        importer,
        &|_| {},
    )
    .await
    .expect("imported");
    let err = import(
        &store,
        &lines,
        &payouts("38.00"),
        ImportOptions::default(),
        importer,
        &|_| {},
    )
    .await
    .expect_err("payout differs");
    assert!(matches!(err, ImportError::PayoutDiffers { .. }), "{err:?}");

    // Users: a name taken and an unknown user write nothing.
    let hash = ipn_reconciler::console::auth::hash_password("carol-password-1").expect("hash");
    assert!(
        store
            .add_console_user_by(&anna, "carol", ConsoleRole::Viewer, &hash, Utc::now())
            .await
            .expect("added")
    );
    assert!(
        !store
            .add_console_user_by(&anna, "carol", ConsoleRole::Resolver, &hash, Utc::now())
            .await
            .expect("taken")
    );
    assert!(
        !store
            .disable_console_user_by(&anna, "nobody", Utc::now())
            .await
            .expect("no such user")
    );
    assert!(
        store
            .disable_console_user_by(&anna, "carol", Utc::now())
            .await
            .expect("disabled")
    );

    let rows = log(&db.url).await;
    let actions: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        actions,
        [
            "books_close",
            "books_reopen",
            "settlement_import",
            "user_add",
            "user_disable"
        ]
    );
    for row in &rows {
        assert_eq!(
            (
                row.0.as_str(),
                row.2.as_str(),
                row.3.as_deref(),
                row.4.as_deref()
            ),
            ("finance-anna", "cli", Some("anna"), Some("ops-1")),
            "{row:?}"
        );
    }
    assert_eq!(rows[0].5.as_deref(), Some("through 2026-10-31 (UTC)"));
    assert_eq!(rows[2].5.as_deref(), Some("export.csv"));
    assert_eq!(rows[3].5.as_deref(), Some("carol"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_action_log_stays_append_only_and_a_console_row_names_no_machine() {
    let db = TestDb::new();
    let _store = db.store().await;
    let client = sql(&db.url).await;
    client
        .execute(
            "INSERT INTO console_actions (user_name, action, at, source) \
             VALUES ('alice', 'login', now(), 'console')",
            &[],
        )
        .await
        .expect("a console row");
    let err = client
        .execute(
            "INSERT INTO console_actions (user_name, action, at, source, os_user) \
             VALUES ('alice', 'login', now(), 'console', 'root')",
            &[],
        )
        .await
        .expect_err("a console row with a machine");
    assert_eq!(
        err.as_db_error().and_then(|e| e.constraint()),
        Some("console_actions_machine_of_cli"),
        "{err:?}"
    );
    assert!(
        client
            .execute("UPDATE console_actions SET user_name = 'mallory'", &[])
            .await
            .is_err()
    );
}
