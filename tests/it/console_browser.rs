//! Issue 13 in a real browser: headless Chromium driven through
//! chromedriver (Debian's `chromium` and `chromium-driver`; `.ci/run`
//! installs them) with fantoccini. A resolver logs in, sees the overview,
//! finds an order by reference and by e-mail, opens it, resolves a review
//! item, has a forged POST without the CSRF token refused, logs out, and
//! the session is gone; a viewer is refused. Every page is saved as a PNG
//! under `target/console-screenshots/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::amqp::count;
use crate::helpers::console::{RESOLVER, TestConsole, VIEWER, long_sessions};
use crate::helpers::repo_path;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// chromedriver on a port of its own, and a headless Chromium session;
/// both end with the test.
struct Driver {
    client: Client,
    _process: tokio::process::Child,
}

impl Driver {
    async fn start() -> Self {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists(),
            "{CHROMEDRIVER} is missing: apt-get install chromium chromium-driver (.ci/run does)"
        );
        // A port the system just handed out and nobody holds.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let process = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok();
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1280,1000",
                    "--force-device-scale-factor=1"
                ]
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
            .expect("a Chromium session");
        Self {
            client,
            _process: process,
        }
    }

    /// Saves the page as `target/console-screenshots/NAME.png`.
    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir: PathBuf = repo_path("target/console-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    async fn h1(&self) -> String {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("main h1"))
            .await
            .expect("a heading")
            .text()
            .await
            .expect("heading text")
    }

    async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("url");
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    async fn body(&self) -> String {
        self.client
            .find(Locator::Css("main"))
            .await
            .expect("main")
            .text()
            .await
            .expect("text")
    }

    /// Types into the input `id` (cleared first).
    async fn type_into(&self, id: &str, text: &str) {
        let input = self.client.find(Locator::Id(id)).await.expect(id);
        input.clear().await.expect("clear");
        input.send_keys(text).await.expect("type");
    }

    /// Clicks what `css` finds: a button that submits a form or a link.
    async fn click(&self, css: &str) {
        let element = self.client.find(Locator::Css(css)).await.expect(css);
        self.click_and_wait(element).await;
    }

    /// Clicks `element`, which leaves the page, and waits until the browser
    /// has left it (the old document's root is stale) and the new page's
    /// `main` is there. WebDriver's click does not always wait for the
    /// navigation it starts, and a page may answer with the same heading
    /// (the review queue after a resolution), so the old page must be gone
    /// before the test reads the new one.
    async fn click_and_wait(&self, element: Element) {
        let old_root = self
            .client
            .find(Locator::Css("html"))
            .await
            .expect("the page");
        element.click().await.expect("click");
        let deadline = Instant::now() + Duration::from_secs(10);
        while old_root.tag_name().await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "the click did not leave the page within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("main"))
            .await
            .expect("the new page");
    }

    async fn login(&self, console: &TestConsole, user: &str, password: &str) {
        self.client
            .goto(&console.url("/login"))
            .await
            .expect("login page");
        assert_eq!(self.h1().await, "Log in");
        self.type_into("username", user).await;
        self.type_into("password", password).await;
        self.click("main form button[type=submit]").await;
        assert_eq!(self.h1().await, "Overview");
    }

    /// Submits a form built by a script, as a page on another site would:
    /// the browser sends the console's cookie, the form carries `fields`.
    /// WebDriver's scripts run outside the page's CSP, as an attacker's
    /// page would be.
    async fn forge_post(&self, action: &str, fields: &[(&str, &str)]) {
        let fields: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        self.client
            .execute(
                "const [action, fields] = arguments; const form = document.createElement('form'); \
                 form.method = 'post'; form.action = action; \
                 for (const [name, value] of Object.entries(fields)) { \
                   const input = document.createElement('input'); input.type = 'hidden'; \
                   input.name = name; input.value = value; form.appendChild(input); } \
                 document.body.appendChild(form); form.submit();",
                vec![json!(action), json!(fields)],
            )
            .await
            .expect("forged form");
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::XPath("//main/h1[text()!='Review queue']"))
            .await
            .expect("the answer to the forged form");
    }
}

async fn open_item_ids(console: &TestConsole) -> Vec<i64> {
    let (client, connection) = tokio_postgres::connect(&console.db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .query(
            "SELECT id FROM review_items WHERE status = 'open' ORDER BY id DESC",
            &[],
        )
        .await
        .expect("items")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn console_browser_a_resolver_finds_resolves_and_logs_out() {
    let console = TestConsole::start_with(long_sessions(), true, true).await;
    let driver = Driver::start().await;
    let browser = &driver.client;

    // Not logged in: the console sends to the login page.
    browser.goto(&console.url("/")).await.expect("open");
    assert_eq!(driver.h1().await, "Log in");
    driver.screenshot("login").await;

    driver.login(&console, RESOLVER.0, RESOLVER.1).await;
    let overview = driver.body().await;
    assert!(overview.contains("Totals per currency"), "{overview}");
    assert!(overview.contains("338.99"), "USD paid");
    browser
        .find(Locator::Css("figure.chart svg"))
        .await
        .expect("the chart is drawn");
    driver.screenshot("overview").await;

    // Find an order by its reference.
    browser.goto(&console.url("/orders")).await.expect("orders");
    driver.type_into("q", "SHOP-1002").await;
    driver.click("form[action='/orders'] button").await;
    assert_eq!(
        driver.path().await,
        "/orders?q=SHOP-1002&status=&currency=&from=&to="
    );
    let found = driver.body().await;
    assert!(found.contains("1 order(s)"), "{found}");
    assert!(found.contains("SHOP-1002") && !found.contains("SHOP-1001"));
    driver.screenshot("orders").await;

    // By REFNO.
    driver.type_into("q", "71000109").await;
    driver.click("form[action='/orders'] button").await;
    assert!(driver.body().await.contains("SHOP-1009"));

    // By the customer's e-mail: found through the pseudonym, never shown.
    driver.type_into("email", "JohnSmith@email.com").await;
    driver.click("form[action='/orders/by-email'] button").await;
    let found = driver.body().await;
    for order in ["SHOP-1002", "SHOP-1008", "SHOP-1009"] {
        assert!(found.contains(order), "{order}: {found}");
    }
    assert!(!found.to_lowercase().contains("johnsmith"));
    assert!(
        !browser
            .current_url()
            .await
            .expect("url")
            .as_str()
            .contains("mail.com")
    );
    driver.screenshot("orders-by-email").await;

    // Open it: payments, the ledger, the authenticity record.
    let link = browser
        .find(Locator::LinkText("SHOP-1002"))
        .await
        .expect("link");
    driver.click_and_wait(link).await;
    assert_eq!(driver.h1().await, "Order SHOP-1002");
    let order = driver.body().await;
    for shown in ["Ledger", "71000102", "test-2026", "sha3-256", "refunded"] {
        assert!(order.contains(shown), "{shown}: {order}");
    }
    driver.screenshot("order").await;

    // Resolve the newest open review item, from its page in the queue.
    let before = open_item_ids(&console).await;
    let id = before[0];
    browser.goto(&console.url("/review")).await.expect("review");
    assert_eq!(driver.h1().await, "Review queue");
    driver.screenshot("review").await;
    let link = browser
        .find(Locator::LinkText(&format!("#{id}")))
        .await
        .expect("the item's row");
    driver.click_and_wait(link).await;
    assert_eq!(driver.h1().await, format!("Review item #{id}"));
    driver.screenshot("review-item").await;
    driver
        .type_into(&format!("note-{id}"), "customer refunded by wire")
        .await;
    driver
        .click(&format!("form[action='/review/{id}/resolve'] button"))
        .await;
    assert_eq!(driver.h1().await, "Review queue");
    assert_eq!(driver.path().await, format!("/review?done={id}"));
    assert!(
        driver
            .body()
            .await
            .contains(&format!("Review item #{id} resolved"))
    );
    assert_eq!(open_item_ids(&console).await, before[1..].to_vec());
    assert_eq!(
        count(
            &console.db.url,
            &format!("SELECT count(*) FROM review_items WHERE id = {id} AND resolved_by = 'alice'")
        )
        .await,
        1
    );
    driver.screenshot("review-resolved").await;

    // A forged POST without the CSRF token changes nothing.
    let next = before[1];
    driver
        .forge_post(
            &format!("/review/{next}/resolve"),
            &[("note", "forged"), ("action", "dismiss")],
        )
        .await;
    assert_eq!(driver.h1().await, "Forbidden");
    assert!(driver.body().await.contains("CSRF"));
    assert_eq!(open_item_ids(&console).await, before[1..].to_vec());
    driver.screenshot("forged-post-refused").await;

    // The other pages.
    for (path, heading, name) in [
        ("/notifications", "Notifications", "notifications"),
        ("/parked", "Parked", "parked"),
        ("/settlement", "Settlement", "settlement"),
        ("/activity", "Activity", "activity"),
    ] {
        browser.goto(&console.url(path)).await.expect(path);
        assert_eq!(driver.h1().await, heading, "{path}");
        driver.screenshot(name).await;
    }
    assert!(driver.body().await.contains("resolve_review"));

    // Log out with the keyboard-reachable button; the session is gone.
    driver.click("form.logout button").await;
    assert_eq!(driver.h1().await, "Log in");
    assert_eq!(driver.path().await, "/login?ended=out");
    browser.goto(&console.url("/orders")).await.expect("orders");
    assert_eq!(driver.h1().await, "Log in");
    assert_eq!(driver.path().await, "/login");
    assert_eq!(
        count(
            &console.db.url,
            "SELECT count(*) FROM console_sessions WHERE ended_at IS NULL"
        )
        .await,
        0
    );
    driver
        .client
        .clone()
        .close()
        .await
        .expect("close the browser");
}

#[tokio::test(flavor = "multi_thread")]
async fn console_browser_a_viewer_reads_but_is_refused_resolving() {
    let console = TestConsole::start_with(long_sessions(), false, true).await;
    let driver = Driver::start().await;
    driver.login(&console, VIEWER.0, VIEWER.1).await;
    let before = open_item_ids(&console).await;
    driver
        .client
        .goto(&console.url(&format!("/review/{}", before[0])))
        .await
        .expect("review");
    assert_eq!(driver.h1().await, format!("Review item #{}", before[0]));
    let forms = driver
        .client
        .find_all(Locator::Css("form.resolve"))
        .await
        .expect("forms");
    assert!(forms.is_empty(), "a viewer sees no resolve form");
    assert!(driver.body().await.contains("Your role is viewer"));
    driver.screenshot("review-as-viewer").await;
    // Even with this session's own CSRF token, a viewer's POST is refused.
    let csrf = driver
        .client
        .find(Locator::Css("form.logout input[name=csrf]"))
        .await
        .expect("token")
        .attr("value")
        .await
        .expect("value")
        .expect("a token");
    driver
        .forge_post(
            &format!("/review/{}/resolve", before[0]),
            &[
                ("csrf", &csrf),
                ("note", "not mine to resolve"),
                ("action", "dismiss"),
            ],
        )
        .await;
    assert_eq!(driver.h1().await, "Forbidden");
    assert!(driver.body().await.contains("viewer"));
    assert_eq!(open_item_ids(&console).await, before);
    driver.screenshot("viewer-refused").await;
    driver
        .client
        .clone()
        .close()
        .await
        .expect("close the browser");
}
