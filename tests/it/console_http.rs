//! Issue 13 over HTTP: the finance console on port 0 against a fresh
//! database with the fixtures' books. Logins and their cookie, the
//! security headers of every page, session expiry (the console's clock is
//! moved, nothing sleeps), login rate limits, CSRF refusals, a viewer's 403,
//! the ledger of actions, the search by e-mail that never shows the
//! address, and the CSV downloads against independent SQL.

use std::time::Duration;

use ipn_reconciler::console::auth::SessionPolicy;
use ipn_reconciler::console::throttle::LoginPolicy;
use ipn_reconciler::intake::{SourcePolicy, parse_allow_list};

use ipn_reconciler::domain::{Currency, Money};
use ipn_reconciler::ipn::SecretKey;

use crate::helpers::amqp::{RunningWorker, TestQueue, count, resigned, run_cli, wait_until};
use crate::helpers::console::{Browser, RESOLVER, TestConsole, VIEWER, attempt_key, long_sessions};
use crate::helpers::daemon::Daemon;
use crate::helpers::{TestDb, personal_data, repo_path};

/// Every page a viewer can open.
const PAGES: [&str; 9] = [
    "/",
    "/?from=2026-11-01&to=2026-12-31&by=event",
    "/orders",
    "/orders?status=paid&currency=EUR",
    "/orders/SHOP-1002",
    "/review?status=all",
    "/notifications?outcome=applied",
    "/settlement",
    "/activity",
];

async fn open_items(console: &TestConsole) -> Vec<(i64, String)> {
    let (client, connection) = tokio_postgres::connect(&console.db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .query(
            "SELECT id, kind FROM review_items WHERE status = 'open' ORDER BY id",
            &[],
        )
        .await
        .expect("items")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn console_login_sets_a_strict_cookie_and_every_page_carries_the_security_headers() {
    let console = TestConsole::start(long_sessions(), false).await;
    let mut browser = Browser::new(&console);

    // Not logged in: every page sends to /login.
    let answer = browser.get("/orders").await;
    assert_eq!(answer.status, 303);
    assert_eq!(answer.header("location"), "/login");

    let answer = browser.login(RESOLVER.0, RESOLVER.1).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.header("location"), "/");
    let cookie = answer
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("text").to_owned())
        .find(|c| c.starts_with("__Host-ipn_console="))
        .expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    // The database keeps only the token's digest.
    let token = browser.cookies["__Host-ipn_console"].clone();
    assert_eq!(
        count(
            &console.db.url,
            &format!("SELECT count(*) FROM console_sessions WHERE token_sha256 = encode(sha256('{token}'::bytea), 'hex')")
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &console.db.url,
            &format!("SELECT count(*) FROM console_sessions WHERE token_sha256 = '{token}'")
        )
        .await,
        0
    );

    let personal = personal_data();
    for path in PAGES.iter().chain(["/login", "/no-such-page"].iter()) {
        let answer = browser.get(path).await;
        let expected = if *path == "/no-such-page" { 404 } else { 200 };
        assert_eq!(answer.status, expected, "{path}: {}", answer.body);
        let csp = answer.header("content-security-policy");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(answer.header("x-frame-options"), "DENY", "{path}");
        assert_eq!(answer.header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(answer.header("referrer-policy"), "no-referrer", "{path}");
        assert!(!answer.body.contains("<script"), "{path} has a script");
        assert!(
            !answer.body.contains("style=\""),
            "{path} has an inline style"
        );
        for value in &personal {
            assert!(
                !answer.body.to_lowercase().contains(&value.to_lowercase()),
                "{path} shows personal data"
            );
        }
        // Every input has a label (hidden ones aside).
        let inputs = answer.body.matches("<input").count()
            + answer.body.matches("<select").count()
            + answer.body.matches("<textarea").count();
        let hidden = answer.body.matches("type=\"hidden\"").count();
        let labels = answer.body.matches("<label for=").count();
        assert!(
            labels >= inputs - hidden,
            "{path}: {labels} labels for {inputs} inputs"
        );
    }
    // The overview shows the report's figures and draws the chart.
    let overview = browser.get("/").await;
    assert!(overview.body.contains("<svg"), "no chart");
    assert!(overview.body.contains("338.99"), "USD paid missing");

    // The login lands in the ledger under the user's name.
    assert_eq!(
        count(
            &console.db.url,
            "SELECT count(*) FROM console_actions WHERE user_name = 'alice' AND action = 'login'"
        )
        .await,
        1
    );

    // Logout needs the token; then the session is gone.
    let page = browser.get("/").await;
    let refused = browser.post("/logout", &[]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(browser.get("/").await.status, 200, "still logged in");
    let out = browser.post("/logout", &[("csrf", &page.csrf())]).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.header("location"), "/login?ended=out");
    assert!(!browser.cookies.contains_key("__Host-ipn_console"));
    // The old token no longer opens anything, even when sent again.
    browser.cookies.insert("__Host-ipn_console".into(), token);
    let answer = browser.get("/").await;
    assert_eq!(answer.status, 303);
    assert_eq!(answer.header("location"), "/login?ended=ended");
}

#[tokio::test(flavor = "multi_thread")]
async fn console_sessions_end_when_idle_and_at_their_absolute_bound() {
    let minute = Duration::from_secs(60);
    let console = TestConsole::start(
        SessionPolicy {
            idle: 10 * minute,
            absolute: 60 * minute,
        },
        false,
    )
    .await;
    let mut browser = Browser::new(&console);
    assert_eq!(browser.login(RESOLVER.0, RESOLVER.1).await.status, 303);
    // Used every 9 minutes, it lives; each use starts the idle time again.
    for _ in 0..2 {
        console.clock.advance(9 * minute);
        assert_eq!(browser.get("/orders").await.status, 200);
    }
    console.clock.advance(10 * minute);
    let answer = browser.get("/orders").await;
    assert_eq!(answer.status, 303);
    assert_eq!(answer.header("location"), "/login?ended=idle");
    assert!(
        browser
            .get("/login?ended=idle")
            .await
            .body
            .contains("after a time without use")
    );

    // However busy, it ends an hour after its login.
    assert_eq!(browser.login(RESOLVER.0, RESOLVER.1).await.status, 303);
    for _ in 0..6 {
        console.clock.advance(9 * minute);
        assert_eq!(browser.get("/").await.status, 200);
    }
    console.clock.advance(9 * minute);
    let answer = browser.get("/").await;
    assert_eq!(answer.status, 303);
    assert_eq!(answer.header("location"), "/login?ended=expired");
    assert_eq!(
        count(
            &console.db.url,
            "SELECT count(*) FROM console_sessions WHERE ended_at IS NULL"
        )
        .await,
        0,
        "expired sessions are ended"
    );
}

/// Issue 23, item 2: a name that keeps failing waits longer and longer
/// (429 with `Retry-After`), another name at the same address logs in at
/// once, an address that failed many times takes the free attempts from
/// the names that failed only, and attempts go once their window passed.
#[tokio::test(flavor = "multi_thread")]
async fn console_failed_logins_wait_longer_per_name_and_lock_out_no_one_else() {
    let console = TestConsole::start(long_sessions(), false).await;
    let policy = LoginPolicy::default();
    let mut browser = Browser::new(&console);
    for _ in 0..policy.free_failures {
        let answer = browser.login(RESOLVER.0, "wrong-password-000").await;
        assert_eq!(answer.status, 401);
        assert!(answer.body.contains("Wrong user name or password"));
    }
    // The right password must wait a second for this name...
    let answer = browser.login(RESOLVER.0, RESOLVER.1).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.header("retry-after"), "1");
    assert!(
        answer.body.contains("Try again in 1 second(s)"),
        "{}",
        answer.body
    );
    assert!(!browser.cookies.contains_key("__Host-ipn_console"));
    // ... while another name from the same address logs in at once.
    assert_eq!(browser.login(VIEWER.0, VIEWER.1).await.status, 303);
    // A second later, one more failure; then two seconds to wait.
    console.clock.advance(Duration::from_secs(1));
    assert_eq!(
        browser.login(RESOLVER.0, "wrong-password-000").await.status,
        401
    );
    let answer = browser.login(RESOLVER.0, RESOLVER.1).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.header("retry-after"), "2");
    console.clock.advance(Duration::from_secs(2));
    assert_eq!(browser.login(RESOLVER.0, RESOLVER.1).await.status, 303);

    // Many names from one address: the names that never failed still log
    // in; a name that failed gets no free attempt from it any more.
    let mut sprayer = Browser::new(&console);
    for n in 0..policy.address_failures {
        let answer = sprayer
            .login(&format!("nobody-{n}"), "wrong-password-000")
            .await;
        assert_eq!(answer.status, 401, "attempt {n}");
    }
    let answer = sprayer.login("nobody-0", "wrong-password-000").await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.header("retry-after"), "2");
    let mut other = Browser::new(&console);
    assert_eq!(other.login(VIEWER.0, VIEWER.1).await.status, 303);

    // Attempts are kept as keyed digests: no name typed, no plain
    // SHA-256 of the address.
    let key = attempt_key();
    let loopback: std::net::IpAddr = "127.0.0.1".parse().expect("ip");
    assert_eq!(
        count(
            &console.db.url,
            &format!(
                "SELECT count(*) FROM console_login_attempts WHERE address_sha256 = '{}'",
                key.address_digest(loopback)
            )
        )
        .await,
        count(
            &console.db.url,
            "SELECT count(*) FROM console_login_attempts"
        )
        .await
    );
    assert_eq!(
        count(
            &console.db.url,
            "SELECT count(*) FROM console_login_attempts WHERE username_sha256 LIKE '%nobody%' \
             OR address_sha256 = encode(sha256('127.0.0.1'::bytea), 'hex')"
        )
        .await,
        0
    );

    // After the window, the attempts go at the next login.
    let before = count(
        &console.db.url,
        "SELECT count(*) FROM console_login_attempts",
    )
    .await;
    assert!(before > i64::from(policy.address_failures), "{before}");
    console
        .clock
        .advance(policy.window + Duration::from_secs(1));
    assert_eq!(other.login(RESOLVER.0, RESOLVER.1).await.status, 303);
    assert_eq!(
        count(
            &console.db.url,
            "SELECT count(*) FROM console_login_attempts"
        )
        .await,
        1,
        "only the new attempt is left"
    );

    // A login form posted without the login cookie's token is refused.
    let mut stranger = Browser::new(&console);
    let answer = stranger
        .post(
            "/login",
            &[
                ("username", VIEWER.0),
                ("password", VIEWER.1),
                ("csrf", "0"),
            ],
        )
        .await;
    assert_eq!(answer.status, 403);
}

/// Issue 23, item 2: a burst of parallel wrong passwords for one name
/// gets at most the free attempts checked (one check of a name at a time;
/// each attempt counted before its password is, under a lock on the
/// name); the rest are answered 429 at once with `Retry-After`, and
/// another user at the same address logs in at once.
#[tokio::test(flavor = "multi_thread")]
async fn console_a_burst_of_wrong_passwords_checks_at_most_the_limit() {
    let console = TestConsole::start(long_sessions(), false).await;
    let limit = usize::try_from(LoginPolicy::default().free_failures).expect("limit");
    let mut browsers: Vec<Browser> = (0..30).map(|_| Browser::new(&console)).collect();
    let answers = futures::future::join_all(
        browsers
            .iter_mut()
            .map(|b| b.login(RESOLVER.0, "wrong-password-000")),
    )
    .await;
    let checked = answers.iter().filter(|a| a.status == 401).count();
    let refused: Vec<_> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(checked + refused.len(), 30, "every attempt was answered");
    assert!((1..=limit).contains(&checked), "{checked} checked");
    assert!(
        refused
            .iter()
            .all(|a| a.header("retry-after").parse::<u64>().is_ok_and(|s| s >= 1)),
        "each refusal says when to retry"
    );
    // PostgreSQL's own count: only the checked attempts were recorded.
    assert_eq!(
        count(
            &console.db.url,
            "SELECT count(*) FROM console_login_attempts"
        )
        .await,
        i64::try_from(checked).expect("count")
    );
    let mut other = Browser::new(&console);
    assert_eq!(other.login(VIEWER.0, VIEWER.1).await.status, 303);
}

/// Issue 23, item 2: the caller's address is the forwarded one only when
/// the peer is one of `console-trusted-proxies`; otherwise the peer.
#[tokio::test(flavor = "multi_thread")]
async fn console_believes_a_forwarded_address_only_from_its_trusted_proxies() {
    let key = attempt_key();
    let claimed: std::net::IpAddr = "198.51.100.7".parse().expect("ip");
    let loopback: std::net::IpAddr = "127.0.0.1".parse().expect("ip");
    for (proxies, recorded) in [("127.0.0.1", claimed), ("10.0.0.0/8", loopback)] {
        let source = SourcePolicy {
            forwarded_header: Some("x-forwarded-for".into()),
            trusted_proxies: parse_allow_list(proxies).expect("networks"),
            allow: Vec::new(),
        };
        let console = TestConsole::start_behind(long_sessions(), false, false, source).await;
        let mut browser = Browser::new(&console);
        browser.forwarded_for = Some(format!("203.0.113.1, {claimed}"));
        assert_eq!(
            browser.login(VIEWER.0, "wrong-password-000").await.status,
            401
        );
        assert_eq!(
            count(
                &console.db.url,
                &format!(
                    "SELECT count(*) FROM console_login_attempts WHERE address_sha256 = '{}'",
                    key.address_digest(recorded)
                )
            )
            .await,
            1,
            "trusting {proxies}, the attempt is {recorded}'s"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn console_resolving_needs_the_csrf_token_and_the_resolver_role() {
    let console = TestConsole::start(long_sessions(), false).await;
    let before = open_items(&console).await;
    let (id, _) = before.first().cloned().expect("the fixtures open items");
    let path = format!("/review/{id}/resolve");

    let mut viewer = Browser::new(&console);
    assert_eq!(viewer.login(VIEWER.0, VIEWER.1).await.status, 303);
    let page = viewer.get(&format!("/review/{id}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        !page.body.contains(&format!("action=\"{path}\"")),
        "a viewer gets no resolve form"
    );
    let answer = viewer
        .post(&path, &[("csrf", &page.csrf()), ("note", "looks fine")])
        .await;
    assert_eq!(answer.status, 403);
    assert!(answer.body.contains("viewer"), "{}", answer.body);

    let mut resolver = Browser::new(&console);
    assert_eq!(resolver.login(RESOLVER.0, RESOLVER.1).await.status, 303);
    let page = resolver.get(&format!("/review/{id}")).await;
    assert!(page.body.contains(&format!("action=\"{path}\"")));
    // A forged POST: no token, or another session's.
    let answer = resolver.post(&path, &[("note", "forged")]).await;
    assert_eq!(answer.status, 403);
    let other = viewer.get("/review").await.csrf();
    let answer = resolver
        .post(&path, &[("csrf", &other), ("note", "forged")])
        .await;
    assert_eq!(answer.status, 403);
    assert_eq!(open_items(&console).await, before, "nothing was resolved");

    // A note is required; a card number in it is refused.
    let csrf = page.csrf();
    let answer = resolver
        .post(&path, &[("csrf", &csrf), ("note", " ")])
        .await;
    assert_eq!(answer.status, 400);
    let answer = resolver
        .post(
            &path,
            &[("csrf", &csrf), ("note", "card 4111 1111 1111 1111")],
        )
        .await;
    assert_eq!(answer.status, 400);
    assert!(
        !answer.body.contains("4111"),
        "the refusal quotes no card number"
    );

    let answer = resolver
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("action", "accept_as_is"),
                ("note", "refunded by wire"),
            ],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.header("location"), format!("/review?done={id}"));
    assert_eq!(open_items(&console).await, before[1..].to_vec());
    assert_eq!(
        count(
            &console.db.url,
            &format!(
                "SELECT count(*) FROM review_items WHERE id = {id} AND resolved_by = 'alice' \
                 AND resolution_note = 'refunded by wire' AND EXISTS ( \
                     SELECT 1 FROM review_resolutions AS r WHERE r.review_item_id = {id} \
                     AND r.action = 'accept_as_is' AND r.resolved_by = 'alice')"
            )
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &console.db.url,
            &format!(
                "SELECT count(*) FROM console_actions WHERE user_name = 'alice' \
                 AND action = 'resolve_review' AND subject = '#{id}'"
            )
        )
        .await,
        1
    );
    // A resolution is final.
    let answer = resolver
        .post(
            &path,
            &[("csrf", &csrf), ("action", "dismiss"), ("note", "again")],
        )
        .await;
    assert_eq!(answer.status, 409, "{}", answer.body);
    // An action the item's kind does not allow is refused, naming those it does.
    let (next, _) = before[1].clone();
    let answer = resolver
        .post(
            &format!("/review/{next}/resolve"),
            &[("csrf", &csrf), ("action", "link_order"), ("note", "wrong")],
        )
        .await;
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("allowed"), "{}", answer.body);
    // The activity page shows the ledger.
    let activity = resolver.get("/activity").await;
    assert!(activity.body.contains("resolve_review"));
}

#[tokio::test(flavor = "multi_thread")]
async fn console_tables_download_as_csv_and_the_email_search_never_shows_the_address() {
    let console = TestConsole::start(long_sessions(), false).await;
    let mut browser = Browser::new(&console);
    assert_eq!(browser.login(VIEWER.0, VIEWER.1).await.status, 303);

    let answer = browser.get("/orders?status=paid&csv=orders").await;
    assert_eq!(answer.status, 200);
    assert!(answer.header("content-type").starts_with("text/csv"));
    assert!(
        answer
            .header("content-disposition")
            .contains("filename=\"orders.csv\"")
    );
    let mut lines = answer.body.lines();
    assert_eq!(
        lines.next(),
        Some(
            "order_ref,status,amount,currency,paid,refunded,charged_back,processor_ref,created_at,updated_at,origin"
        )
    );
    let refs: Vec<String> = lines
        .map(|l| l.split(',').next().expect("ref").to_owned())
        .collect();
    let (client, connection) = tokio_postgres::connect(&console.db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let expected: Vec<String> = client
        .query(
            "SELECT order_ref FROM orders WHERE status = 'paid' ORDER BY created_at, id",
            &[],
        )
        .await
        .expect("paid")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(refs, expected);
    assert!(!expected.is_empty());

    // The overview's totals: one row per currency, paid as the payments sum.
    let answer = browser.get("/?csv=totals").await;
    let rows: Vec<Vec<String>> = answer
        .body
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    let paid: Vec<(String, String)> = client
        .query(
            "SELECT o.currency, coalesce(sum(p.paid_minor), 0)::int8 \
             FROM orders o LEFT JOIN payments p ON p.order_id = o.id \
             GROUP BY o.currency ORDER BY o.currency",
            &[],
        )
        .await
        .expect("sums")
        .iter()
        .map(|r| {
            let currency: String = r.get(0);
            let minor: i64 = r.get(1);
            let code = Currency::iso(&currency).expect("currency");
            (currency, Money::from_minor(minor, code).format_amount())
        })
        .collect();
    assert_eq!(rows.len(), paid.len());
    for (row, (currency, sum)) in rows.iter().zip(&paid) {
        assert_eq!(&row[0], currency);
        assert_eq!(&row[3], sum, "{currency}: paid");
    }

    // The review queue and the notification log.
    let answer = browser.get("/review?csv=review_items").await;
    // One listing: the console's CSV has the columns of `review list
    // --format csv`.
    assert_eq!(
        answer.body.lines().next().expect("header"),
        ipn_reconciler::view::review::COLUMNS.join(",")
    );
    // One row per group, as `review list` groups them: open items of one
    // kind for one order, an item about no order alone.
    assert_eq!(
        i64::try_from(answer.body.lines().count() - 1).expect("count"),
        count(
            &console.db.url,
            "SELECT count(DISTINCT (kind, coalesce(order_ref, '#' || id))) FROM review_items \
             WHERE status = 'open'"
        )
        .await
    );
    let answer = browser.get("/notifications?csv=notifications").await;
    assert_eq!(
        i64::try_from(answer.body.lines().count() - 1).expect("count"),
        count(&console.db.url, "SELECT count(*) FROM notifications").await
    );
    assert!(
        answer
            .body
            .lines()
            .next()
            .expect("header")
            .contains("key_id,algorithm,body_sha256")
    );
    let answer = browser.get("/orders/SHOP-1002?csv=ledger").await;
    assert_eq!(answer.body.lines().count() - 1, 4, "{}", answer.body);
    assert_eq!(browser.get("/orders?csv=nothing").await.status, 404);

    // One customer's orders by e-mail: a POST with the token; the address
    // is neither shown back nor stored.
    let page = browser.get("/orders").await;
    let refused = browser
        .post("/orders/by-email", &[("email", "JohnSmith@email.com")])
        .await;
    assert_eq!(refused.status, 403);
    let found = browser
        .post(
            "/orders/by-email",
            &[("csrf", &page.csrf()), ("email", " JohnSmith@email.com")],
        )
        .await;
    assert_eq!(found.status, 200);
    for order in ["SHOP-1002", "SHOP-1008", "SHOP-1009"] {
        assert!(found.body.contains(order), "{order} not found");
    }
    assert!(!found.body.contains("SHOP-1001"));
    assert!(!found.body.to_lowercase().contains("johnsmith"));
    let csv = browser
        .post(
            "/orders/by-email",
            &[
                ("csrf", &page.csrf()),
                ("email", "johnsmith@email.com"),
                ("csv", "orders"),
            ],
        )
        .await;
    assert_eq!(csv.body.lines().count(), 4, "{}", csv.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_requeues_the_parked_messages_of_one_reason_after_confirming() {
    let console = TestConsole::start(long_sessions(), true).await;
    let queue = console.queue.as_ref().expect("a broker");
    queue.declare().await;
    // Two bodies signed with a key the worker does not have, one malformed:
    // the worker parks all three.
    let unknown_key = SecretKey::new(b"ipn-reconciler-TEST-ONLY-2027-key".to_vec());
    let forged = [
        resigned(
            "03-shop-1001-complete.txt",
            "SHOP-1001",
            71000101,
            &unknown_key,
        ),
        resigned(
            "05-shop-1002-complete.txt",
            "SHOP-1002",
            71000102,
            &unknown_key,
        ),
    ];
    let worker = RunningWorker::spawn(console.db.store().await, queue, |_| {});
    queue
        .publish(&[
            forged[0].clone(),
            forged[1].clone(),
            b"REFNO=%FF&REFNOEXT=SHOP-1001".to_vec(),
        ])
        .await;
    let parking = queue.topology().parking_queue();
    assert!(
        wait_until(Duration::from_secs(20), || async {
            queue.ready(&parking).await == 3
        })
        .await,
        "three parked"
    );
    worker.stop().await;

    let mut resolver = Browser::new(&console);
    assert_eq!(resolver.login(RESOLVER.0, RESOLVER.1).await.status, 303);
    let page = resolver.get("/parked").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("3 parked message(s)"), "{}", page.body);
    assert_eq!(
        queue.ready(&parking).await,
        3,
        "browsing leaves them parked"
    );
    // The reason the two forged bodies were parked for, from the CSV.
    let csv = resolver.get("/parked?csv=parked").await;
    let reasons: Vec<String> = csv
        .body
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).expect("reason").to_owned())
        .collect();
    let reason = reasons
        .iter()
        .find(|r| reasons.iter().filter(|o| o == r).count() == 2)
        .expect("one reason twice")
        .clone();
    let csrf = page.csrf();
    let form = |confirm: &'static str| {
        vec![
            ("what", "reason".to_owned()),
            ("reason", reason.clone()),
            ("since", "2020-01-01".to_owned()),
            ("confirm", confirm.to_owned()),
        ]
    };
    let post = async |browser: &mut Browser, csrf: Option<&str>, fields: Vec<(&str, String)>| {
        let mut all: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Some(csrf) = csrf {
            all.push(("csrf", csrf));
        }
        browser.post("/parked/requeue", &all).await
    };

    // Without the token, or as a viewer, nothing moves.
    assert_eq!(post(&mut resolver, None, form("yes")).await.status, 403);
    let mut viewer = Browser::new(&console);
    assert_eq!(viewer.login(VIEWER.0, VIEWER.1).await.status, 303);
    let viewer_csrf = viewer.get("/parked").await.csrf();
    assert_eq!(
        post(&mut viewer, Some(&viewer_csrf), form("yes"))
            .await
            .status,
        403
    );
    assert_eq!(queue.ready(&parking).await, 3);

    // First the page that lists what would move; nothing moves yet.
    let confirm = post(&mut resolver, Some(&csrf), form("")).await;
    assert_eq!(confirm.status, 200);
    assert!(
        confirm.body.contains("2 message(s) would be requeued"),
        "{}",
        confirm.body
    );
    assert_eq!(queue.ready(&parking).await, 3);
    // Since a time after they were parked: none of them.
    let later = vec![
        ("what", "reason".to_owned()),
        ("reason", reason.clone()),
        ("since", "2999-01-01".to_owned()),
    ];
    let none = post(&mut resolver, Some(&csrf), later).await;
    assert!(none.body.contains("0 message(s) would be requeued"));

    // Confirmed: the two go back to the work queue, the malformed one stays.
    let done = post(&mut resolver, Some(&csrf), form("yes")).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.header("location"), "/parked?requeued=2");
    assert_eq!(queue.ready(&parking).await, 1);
    assert_eq!(queue.ready(queue.topology().work_queue()).await, 2);
    // One row per message moved, committed before it moved.
    assert_eq!(
        count(
            &console.db.url,
            &format!(
                "SELECT count(*) FROM console_actions WHERE user_name = 'alice' \
                 AND action = 'requeue_parked' AND source = 'console' \
                 AND details LIKE '%selected by reason={reason} since=%'"
            )
        )
        .await,
        2
    );

    // The command line selects the same way: the malformed one, by its
    // reason (with the database, for the action log).
    let mut env = queue.env();
    env.push(("DATABASE_URL", console.db.url.clone()));
    let other = reasons
        .iter()
        .find(|r| **r != reason)
        .expect("the malformed one's reason")
        .clone();
    let later = run_cli(
        [
            "parked",
            "requeue",
            "--reason",
            &other,
            "--since",
            "2999-01-01",
        ]
        .map(str::to_owned)
        .to_vec(),
        env.clone(),
    )
    .await;
    assert!(later.0, "{}", later.2);
    assert!(later.1.contains("0 requeued"), "{}", later.1);
    let moved = run_cli(
        [
            "parked",
            "requeue",
            "--reason",
            &other,
            "--since",
            "2020-01-01",
        ]
        .map(str::to_owned)
        .to_vec(),
        env,
    )
    .await;
    assert!(moved.0, "{}", moved.2);
    assert!(moved.1.contains("1 requeued"), "{}", moved.1);
    assert_eq!(queue.ready(&parking).await, 0);
    assert_eq!(
        count(
            &console.db.url,
            "SELECT count(*) FROM console_actions WHERE action = 'requeue_parked' \
             AND source = 'cli' AND os_user IS NOT NULL"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn console_users_are_added_from_standard_input_and_serve_runs_the_console() {
    let db = TestDb::new();
    drop(db.store().await);
    let cli = || {
        let mut command = assert_cmd::Command::cargo_bin("ipn-reconciler").expect("binary");
        command.env("DATABASE_URL", &db.url);
        command
    };
    cli()
        .args(["console", "user", "add", "alice", "--role", "resolver"])
        .write_stdin("a long password for alice\n")
        .assert()
        .success()
        .stdout("console user alice added (resolver)\n");
    cli()
        .args(["console", "user", "add", "alice", "--role", "viewer"])
        .write_stdin("a long password for alice\n")
        .assert()
        .code(1);
    cli()
        .args(["console", "user", "add", "bob", "--role", "viewer"])
        .write_stdin("short\n")
        .assert()
        .code(2);
    cli()
        .args(["console", "user", "add", "no spaces", "--role", "viewer"])
        .write_stdin("a long password for nobody\n")
        .assert()
        .code(2);
    // One action-log row: the user added, by the operating-system
    // account (no --by), with its host; the refusals wrote none.
    assert_eq!(
        count(
            &db.url,
            "SELECT count(*) FROM console_actions WHERE action = 'user_add' \
             AND subject = 'alice' AND source = 'cli' AND host IS NOT NULL"
        )
        .await,
        1
    );
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM console_actions").await,
        1
    );
    assert_eq!(
        count(
            &db.url,
            "SELECT count(*) FROM console_users WHERE name = 'alice' AND role = 'resolver' \
             AND password_hash LIKE '$argon2id$v=19$%'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &db.url,
            "SELECT count(*) FROM console_users WHERE password_hash LIKE '%long password%'"
        )
        .await,
        0
    );
    cli().args(["console"]).assert().code(2);

    // serve --console-addr: the console next to the intake and the worker.
    let queue = TestQueue::new("5s");
    let mut daemon = Daemon::start(
        &db,
        &queue,
        &[
            ("IPN_CONSOLE_ADDR", "127.0.0.1:0"),
            ("IPN_CONSOLE_INSECURE_COOKIES", "true"),
        ],
    );
    let addr = daemon.listening("console listening").await;
    let client = reqwest::Client::new();
    let login = client
        .get(format!("http://{addr}/login"))
        .send()
        .await
        .expect("login page");
    assert_eq!(login.status().as_u16(), 200);
    assert!(
        login
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("ipn_console_login=") && !c.contains("Secure"))
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(30)).await, Some(0));

    cli()
        .args(["console", "user", "disable", "alice"])
        .assert()
        .success();
    cli()
        .args(["console", "user", "disable", "nobody"])
        .assert()
        .code(1);
    assert_eq!(
        count(
            &db.url,
            "SELECT count(*) FROM console_users WHERE disabled_at IS NOT NULL"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn console_settlement_shows_each_batch_and_the_unmatched_lines() {
    let console = TestConsole::start(long_sessions(), false).await;
    let mut browser = Browser::new(&console);
    assert_eq!(browser.login(VIEWER.0, VIEWER.1).await.status, 303);
    let empty = browser.get("/settlement").await;
    assert!(
        empty.body.contains("No settlement imported"),
        "{}",
        empty.body
    );

    let fixture = |name: &str| {
        repo_path(&format!("fixtures/settlement/{name}"))
            .display()
            .to_string()
    };
    assert_cmd::Command::cargo_bin("ipn-reconciler")
        .expect("binary")
        .env("DATABASE_URL", &console.db.url)
        .args(["settlement", "import", &fixture("settlement.csv")])
        .args(["--payouts", &fixture("payouts.csv")])
        .assert()
        .code(1);

    let page = browser.get("/settlement").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("No settlement imported"));
    let batches = browser.get("/settlement?csv=settlement_batches").await;
    // One listing: the columns of `settlement report --format csv`.
    assert_eq!(
        batches.body.lines().next().expect("header"),
        ipn_reconciler::view::settlement::BATCH_COLUMNS.join(",")
    );
    let rows: Vec<Vec<String>> = batches
        .body
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    let (client, connection) = tokio_postgres::connect(&console.db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let expected: Vec<(String, String, i64, i64)> = client
        .query(
            "SELECT batch_id, currency, count(*)::int8, \
                    (count(*) FILTER (WHERE status IN ('differs', 'unknown')))::int8 \
             FROM settlement_lines GROUP BY batch_id, currency ORDER BY batch_id, currency",
            &[],
        )
        .await
        .expect("batches")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert!(!expected.is_empty());
    let mut shown: Vec<(String, String, i64, i64)> = rows
        .iter()
        .filter(|r| r[4] != "0")
        .map(|r| {
            (
                r[0].clone(),
                r[1].clone(),
                r[4].parse().expect("lines"),
                r[7].parse().expect("unmatched"),
            )
        })
        .collect();
    shown.sort();
    assert_eq!(shown, expected);
    // The summary: by the day they settled, then batch id; sales, refunds,
    // chargebacks, reinstatements, adjustments and fees that add up to the
    // net, each equal to the lines' sums by SQL.
    let answer = browser.get("/settlement?csv=settlement_summary").await;
    assert_eq!(answer.status, 200);
    let mut reader = csv::Reader::from_reader(answer.body.as_bytes());
    let header = reader.headers().expect("header").clone();
    let at = |name: &str| header.iter().position(|h| h == name).expect(name);
    let summary: Vec<csv::StringRecord> = reader
        .records()
        .map(|r| r.expect("row"))
        .filter(|r| &r[at("lines")] != "0")
        .collect();
    let sums = client
        .query(
            "SELECT batch_id, currency, \
                    coalesce(sum(gross_minor) FILTER (WHERE kind = 'sale'), 0)::int8, \
                    coalesce(-sum(gross_minor) FILTER (WHERE kind = 'refund'), 0)::int8, \
                    coalesce(-sum(gross_minor) FILTER (WHERE kind IN ('chargeback', 'reversal') \
                        AND gross_minor < 0), 0)::int8, \
                    sum(fee_minor)::int8, sum(net_minor)::int8 \
             FROM settlement_lines GROUP BY batch_id, currency \
             ORDER BY (min(settled_at) AT TIME ZONE 'UTC')::date, batch_id COLLATE \"C\", currency",
            &[],
        )
        .await
        .expect("sums");
    assert_eq!(summary.len(), sums.len());
    for (row, sum) in summary.iter().zip(&sums) {
        let v = |name: &str| -> i64 { row[at(name)].replace('.', "").parse().expect(name) };
        let batch: String = sum.get(0);
        let currency: String = sum.get(1);
        assert_eq!((&row[0], &row[1]), (batch.as_str(), currency.as_str()));
        let expected: [i64; 5] = [sum.get(2), sum.get(3), sum.get(4), sum.get(5), sum.get(6)];
        assert_eq!(
            [
                v("sales"),
                v("refunds"),
                v("chargebacks"),
                v("fees"),
                v("net")
            ],
            expected,
            "{batch} {currency}"
        );
        assert_eq!(
            v("sales") - v("refunds") - v("chargebacks") + v("reinstatements") + v("adjustments")
                - v("fees"),
            v("net"),
            "{batch} {currency} adds up"
        );
    }
    // The fixtures' USD batch: 49.99 + 199.00 + 89.00 sold, 49.99 refunded,
    // 89.00 charged back, 1.75 + 6.07 + 2.88 + 15.00 in fees.
    let usd = summary
        .iter()
        .find(|r| &r[0] == "B-1130-USD")
        .expect("the USD batch");
    assert_eq!(
        [
            &usd[at("sales")],
            &usd[at("refunds")],
            &usd[at("chargebacks")],
            &usd[at("fees")]
        ],
        ["337.99", "49.99", "89.00", "25.70"]
    );
    assert_eq!(&usd[at("net")], "173.30");
    // References wrap in their column and keep the whole value in a title.
    assert!(
        page.body
            .contains("<td class=\"ref\" title=\"B-1130-USD\">"),
        "{}",
        page.body
    );
    let unmatched = browser.get("/settlement?csv=unmatched_lines").await;
    let unmatched_count = count(
        &console.db.url,
        "SELECT count(*) FROM settlement_lines WHERE status IN ('differs', 'unknown')",
    )
    .await;
    assert_eq!(
        i64::try_from(unmatched.body.lines().count() - 1).expect("count"),
        unmatched_count
    );

    // Paged (issue 23, item 2): one batch a page, its second batch on page
    // 2; the lines page on their own; the downloads stay whole.
    let whole = browser.get("/settlement?csv=settlement_summary").await;
    let ids = summary_ids(&whole);
    assert!(ids.len() >= 2 && unmatched_count >= 2, "{ids:?}");
    let page = browser.get("/settlement?per=1&page=2&lines_page=2").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(&format!("title=\"{}\"", ids[1])),
        "{}",
        page.body
    );
    assert!(page.body.contains("rows 2 to 2"), "{}", page.body);
    assert!(
        page.body
            .contains("href=\"/settlement?per=1&amp;lines_page=2&amp;page=3\""),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("href=\"/settlement?per=1&amp;page=2&amp;lines_page=1\""),
        "{}",
        page.body
    );
    let all = browser
        .get("/settlement?per=1&page=2&csv=unmatched_lines")
        .await;
    assert_eq!(all.body, unmatched.body, "the download is not paged");
}

/// The batch ids of a settlement summary download, in order.
fn summary_ids(answer: &crate::helpers::console::Answer) -> Vec<&str> {
    answer
        .body
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .collect()
}

/// Issue 23, item 2: every listing pages (`page=`, `per=`, Previous and
/// Next links), the row after a full page opens the next one, and the CSV
/// downloads stay complete whatever page they are asked from.
#[tokio::test(flavor = "multi_thread")]
async fn console_listings_page_and_their_downloads_stay_complete() {
    let console = TestConsole::start(long_sessions(), false).await;
    let mut browser = Browser::new(&console);
    // Three logins a minute apart: rows of the activity told apart by time.
    for _ in 0..3 {
        console.clock.advance(Duration::from_secs(60));
        assert_eq!(browser.login(VIEWER.0, VIEWER.1).await.status, 303);
    }
    let client = sql(&console).await;
    // Rows of the one table of a page, and rows of a download.
    let rows = |body: &str| body.matches("<tr>").count() - 1;
    let csv_rows = |body: &str| csv::Reader::from_reader(body.as_bytes()).records().count();
    for (path, table, newest_last_sql) in [
        (
            "/orders",
            "orders",
            "SELECT order_ref FROM orders ORDER BY created_at, id",
        ),
        (
            "/notifications",
            "notifications",
            "SELECT body_sha256 FROM notifications ORDER BY id DESC",
        ),
        (
            "/activity",
            "activity",
            "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
             FROM console_actions ORDER BY id DESC",
        ),
    ] {
        let all: Vec<String> = client
            .query(newest_last_sql, &[])
            .await
            .expect("rows")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let n = all.len();
        assert!(n >= 3, "{path}: {n} rows");
        let per = n - 1;
        let first = browser.get(&format!("{path}?per={per}")).await;
        assert_eq!(first.status, 200, "{path}");
        assert_eq!(rows(&first.body), per, "{path}: a full first page");
        assert!(
            first
                .body
                .contains(&format!("href=\"{path}?per={per}&amp;page=2\"")),
            "{path}: a Next link\n{}",
            first.body
        );
        assert!(!first.body.contains("rel=\"prev\""), "{path}");
        let second = browser.get(&format!("{path}?per={per}&page=2")).await;
        assert_eq!(rows(&second.body), 1, "{path}: the last row on page 2");
        assert!(
            second.body.contains(&all[n - 1]),
            "{path}: page 2 shows {}",
            all[n - 1]
        );
        assert!(
            !first.body.contains(&format!("{}<", all[n - 1])),
            "{path}: not on page 1"
        );
        assert!(second.body.contains("rel=\"prev\""), "{path}");
        assert!(!second.body.contains("rel=\"next\""), "{path}");
        // `per_page` is `per` too; past the end, an empty page.
        let alias = browser.get(&format!("{path}?per_page={per}&page=2")).await;
        assert_eq!(rows(&alias.body), 1, "{path}: per_page");
        let past = browser.get(&format!("{path}?per={per}&page=9")).await;
        assert_eq!(past.status, 200);
        assert!(past.body.contains("no rows"), "{path}");
        assert_eq!(browser.get(&format!("{path}?per=0")).await.status, 400);
        // The download holds every row, asked from any page.
        let download = browser
            .get(&format!("{path}?per={per}&page=2&csv={table}"))
            .await;
        assert_eq!(download.status, 200, "{path}");
        assert_eq!(csv_rows(&download.body), n, "{path}: the whole download");
    }
}

/// A client of the test's database.
async fn sql(console: &TestConsole) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&console.db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

/// The review items a queue page links to, in the order shown.
fn queue_ids(body: &str) -> Vec<i64> {
    let marker = "<a href=\"/review/";
    body.match_indices(marker)
        .filter_map(|(at, _)| {
            let rest = &body[at + marker.len()..];
            rest[..rest.find('"')?].parse().ok()
        })
        .collect()
}

/// The open queue's rows as `review list` groups them (open items of one
/// kind for one order; an item about no order alone), each as its newest
/// item's id, in `order` (SQL over the groups' oldest opening and newest
/// id, `kind` compared byte by byte).
async fn queue_by_sql(client: &tokio_postgres::Client, order: &str) -> Vec<i64> {
    client
        .query(
            &format!(
                "SELECT max(id) AS id, min(created_at) AS opened, kind COLLATE \"C\" AS kind \
                 FROM review_items WHERE status = 'open' \
                 GROUP BY kind, coalesce(order_ref, '#' || id) ORDER BY {order}"
            ),
            &[],
        )
        .await
        .expect("groups")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn console_review_queue_is_a_table_sorted_and_paged_on_the_server() {
    let console = TestConsole::start(long_sessions(), false).await;
    let client = sql(&console).await;
    let mut browser = Browser::new(&console);
    assert_eq!(browser.login(VIEWER.0, VIEWER.1).await.status, 303);

    // Oldest first by default; every row links to its item's page, and no
    // form is on the list.
    let oldest_first = queue_by_sql(&client, "opened, id").await;
    assert!(oldest_first.len() >= 3, "the fixtures open several groups");
    let page = browser.get("/review").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(queue_ids(&page.body), oldest_first);
    assert!(!page.body.contains("<textarea"), "no form on the list");
    for column in [
        "kind", "order", "REFNO", "amount", "currency", "age", "opened",
    ] {
        assert!(page.body.contains(&format!(">{column}<")), "{column}");
    }
    let newest_first = queue_by_sql(&client, "opened DESC, id").await;
    let page = browser.get("/review?sort=age&dir=asc").await;
    assert_eq!(queue_ids(&page.body), newest_first);
    let by_kind = queue_by_sql(&client, "kind, opened, id").await;
    let page = browser.get("/review?sort=kind").await;
    assert_eq!(queue_ids(&page.body), by_kind);

    // Pages of two: each holds the next two rows, with links both ways.
    let first = browser.get("/review?per=2").await;
    assert_eq!(queue_ids(&first.body), oldest_first[..2].to_vec());
    assert!(first.body.contains("rel=\"next\""));
    assert!(!first.body.contains("rel=\"prev\""));
    let second = browser.get("/review?per=2&page=2").await;
    let end = oldest_first.len().min(4);
    assert_eq!(queue_ids(&second.body), oldest_first[2..end].to_vec());
    assert!(second.body.contains("rel=\"prev\""));
    let pages = oldest_first.len().div_ceil(2);
    let last = browser.get(&format!("/review?per=2&page={pages}")).await;
    assert!(!last.body.contains("rel=\"next\""));
    for bad in [
        "/review?sort=price",
        "/review?dir=up",
        "/review?per=0",
        "/review?page=x",
    ] {
        assert_eq!(browser.get(bad).await.status, 400, "{bad}");
    }

    // By amount: currencies in order, the largest first within one, rows
    // without an amount last. The download holds every row in the page's
    // order; the amounts that notifications carried are theirs.
    let answer = browser.get("/review?sort=amount&csv=review_items").await;
    assert_eq!(answer.status, 200);
    let mut reader = csv::Reader::from_reader(answer.body.as_bytes());
    let rows: Vec<(i64, String, String)> = reader
        .records()
        .map(|r| {
            let r = r.expect("row");
            (r[0].parse().expect("id"), r[5].to_owned(), r[6].to_owned())
        })
        .collect();
    let mut ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    ids.sort_unstable();
    let mut expected = oldest_first.clone();
    expected.sort_unstable();
    assert_eq!(ids, expected);
    let minor = |amount: &str| -> i64 { amount.replace('.', "").parse().expect("amount") };
    let priced: Vec<&(i64, String, String)> = rows.iter().take_while(|r| !r.1.is_empty()).collect();
    assert!(rows[priced.len()..].iter().all(|r| r.1.is_empty()));
    assert!(priced.len() >= 2, "the fixtures' items carry amounts");
    for pair in priced.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(
            a.2 < b.2 || (a.2 == b.2 && minor(&a.1) >= minor(&b.1)),
            "{a:?} before {b:?}"
        );
    }
    let carried = client
        .query(
            "SELECT i.id, n.amount_minor, n.currency FROM review_items AS i \
             JOIN notifications AS n ON n.id = i.notification_id \
             WHERE i.status = 'open' AND n.amount_minor IS NOT NULL",
            &[],
        )
        .await
        .expect("amounts");
    let mut checked = 0;
    for row in &carried {
        let id: i64 = row.get(0);
        if let Some(shown) = rows.iter().find(|r| r.0 == id) {
            let amount: i64 = row.get(1);
            let currency: String = row.get(2);
            assert_eq!((minor(&shown.1), &shown.2), (amount, &currency), "#{id}");
            checked += 1;
        }
    }
    assert!(checked > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn console_review_item_page_resolves_its_group_for_a_resolver_only() {
    let console = TestConsole::start(long_sessions(), false).await;
    let client = sql(&console).await;
    // A second sighting of an open item makes a group of two.
    let row = client
        .query_one(
            "SELECT id, kind, order_ref FROM review_items \
             WHERE status = 'open' AND order_ref IS NOT NULL ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .expect("an open item of an order");
    let (id, kind, order_ref): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
    let copy: i64 = client
        .query_one(
            "INSERT INTO review_items (kind, order_ref, processor_ref, details, status, created_at) \
             SELECT kind, order_ref, processor_ref, 'seen again', 'open', created_at \
             FROM review_items WHERE id = $1 RETURNING id",
            &[&id],
        )
        .await
        .expect("copy")
        .get(0);

    let mut viewer = Browser::new(&console);
    assert_eq!(viewer.login(VIEWER.0, VIEWER.1).await.status, 303);
    let page = viewer.get(&format!("/review/{id}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(&format!("Review item #{id}")));
    assert!(page.body.contains(&kind) && page.body.contains(&order_ref));
    assert!(
        page.body.contains(&format!("href=\"/review/{copy}\"")),
        "the group"
    );
    assert!(
        !page.body.contains("form class=\"resolve\""),
        "a viewer gets no form"
    );
    assert!(
        page.body.contains("dismiss"),
        "the allowed actions are listed"
    );
    let path = format!("/review/{id}/resolve");
    let refused = viewer
        .post(
            &path,
            &[
                ("csrf", &page.csrf()),
                ("action", "dismiss"),
                ("group", "yes"),
                ("note", "not mine"),
            ],
        )
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        count(
            &console.db.url,
            &format!(
                "SELECT count(*) FROM review_items WHERE id IN ({id}, {copy}) AND status = 'open'"
            )
        )
        .await,
        2
    );
    assert_eq!(viewer.get("/review/999999").await.status, 404);

    let mut resolver = Browser::new(&console);
    assert_eq!(resolver.login(RESOLVER.0, RESOLVER.1).await.status, 303);
    let page = resolver.get(&format!("/review/{id}")).await;
    assert!(page.body.contains(&format!("action=\"{path}\"")));
    assert!(
        page.body.contains(&format!("id=\"group-{id}\"")),
        "the group action"
    );
    let answer = resolver
        .post(
            &path,
            &[
                ("csrf", &page.csrf()),
                ("action", "dismiss"),
                ("group", "yes"),
                ("note", "one exception, seen twice"),
            ],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.header("location"), format!("/review?done={id}"));
    assert_eq!(
        count(
            &console.db.url,
            &format!(
                "SELECT count(*) FROM review_items AS i JOIN review_resolutions AS r \
                 ON r.review_item_id = i.id WHERE i.id IN ({id}, {copy}) \
                 AND i.status = 'resolved' AND r.action = 'dismiss' AND r.resolved_by = 'alice'"
            )
        )
        .await,
        2
    );
    // Resolved, the page shows the resolution and no form.
    let page = resolver.get(&format!("/review/{copy}")).await;
    assert!(page.body.contains("one exception, seen twice"));
    assert!(!page.body.contains("form class=\"resolve\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn console_overview_names_one_net_as_the_report_does() {
    let console = TestConsole::start(long_sessions(), false).await;
    let mut browser = Browser::new(&console);
    assert_eq!(browser.login(VIEWER.0, VIEWER.1).await.status, 303);
    let page = browser.get("/").await;
    assert_eq!(page.status, 200);
    // One column named net, one net revenue; the day's figure is a balance.
    assert_eq!(page.body.matches(">net<").count(), 1, "{}", page.body);
    assert_eq!(page.body.matches(">net revenue<").count(), 1);
    assert!(!page.body.contains(">Net<"), "the chart draws no other net");
    assert!(page.body.contains(">balance<"));
    // The heading is the report's, word for word.
    let output = assert_cmd::Command::cargo_bin("ipn-reconciler")
        .expect("binary")
        .env("DATABASE_URL", &console.db.url)
        .arg("report")
        .output()
        .expect("report");
    let report = String::from_utf8(output.stdout).expect("utf-8");
    let heading = report
        .lines()
        .find(|l| l.starts_with("Totals per currency"))
        .expect("the report's totals");
    assert!(page.body.contains(heading), "{heading}");
    // And its figures add up as it says, by hand.
    let answer = browser.get("/?csv=totals").await;
    let mut reader = csv::Reader::from_reader(answer.body.as_bytes());
    let header = reader.headers().expect("header").clone();
    let at = |name: &str| header.iter().position(|h| h == name).expect(name);
    let mut rows = 0;
    for row in reader.records() {
        let row = row.expect("row");
        let v = |name: &str| -> i64 { row[at(name)].replace('.', "").parse().expect(name) };
        assert_eq!(
            v("net_revenue"),
            v("paid") - v("refunded") - v("reversed") - v("charged_back") + v("reinstated")
                - v("vat"),
            "{row:?}"
        );
        assert_eq!(
            v("net"),
            v("net_revenue") - v("commission") - v("fees"),
            "{row:?}"
        );
        rows += 1;
    }
    assert!(rows > 0);
}

/// The activity page shows where an action came from: a command-line row
/// names its source and the account and machine it ran under, in the page
/// and in its download.
#[tokio::test(flavor = "multi_thread")]
async fn console_activity_names_the_command_lines_account_and_host() {
    let console = TestConsole::start(long_sessions(), false).await;
    let mut browser = Browser::new(&console);
    assert_eq!(browser.login(VIEWER.0, VIEWER.1).await.status, 303);
    let client = sql(&console).await;
    client
        .execute(
            "INSERT INTO console_actions (user_name, action, subject, at, source, os_user, host) \
             VALUES ('finance-anna', 'books_close', 'through 2026-11-30', now(), 'cli', \
                     'anna', 'ledger-1')",
            &[],
        )
        .await
        .expect("a command-line row");
    let page = browser.get("/activity").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("anna@ledger-1"), "{}", page.body);
    let csv = browser.get("/activity?csv=activity").await;
    let mut reader = csv::Reader::from_reader(csv.body.as_bytes());
    let headers = reader.headers().expect("headers").clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("{name} in {headers:?}"))
    };
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    let close = rows
        .iter()
        .find(|r| &r[column("action")] == "books_close")
        .expect("the close is listed");
    assert_eq!(&close[column("source")], "cli");
    assert_eq!(&close[column("run as")], "anna@ledger-1");
    let login = rows
        .iter()
        .find(|r| &r[column("action")] == "login")
        .expect("the login is listed");
    assert_eq!(&login[column("source")], "console");
    assert_eq!(&login[column("run as")], "");
}
