//! The finance console under test: bound on port 0 against a fresh
//! database (optionally filled with the fixtures through the pipeline),
//! with a clock the test moves, and a small HTTP client that keeps cookies
//! and reads the forms' CSRF tokens.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ipn_reconciler::console::auth::{AttemptKey, SessionPolicy, hash_password};
use ipn_reconciler::console::throttle::LoginPolicy;
use ipn_reconciler::console::{Clock, Console, ConsoleSettings, ManualClock};
use ipn_reconciler::domain::PseudonymKey;
use ipn_reconciler::domain::four_eyes::FourEyesAmount;
use ipn_reconciler::intake::SourcePolicy;
use ipn_reconciler::pipeline::Pipeline;
use ipn_reconciler::store::console::ConsoleRole;
use tokio_util::sync::CancellationToken;

use super::amqp::{TestQueue, import_fixture_orders, pipeline_config};
use super::{TestDb, fixture_files, repo_path};

/// A resolver's and a viewer's credentials, in every console test.
pub const RESOLVER: (&str, &str) = ("alice", "alice-password-123");
pub const VIEWER: (&str, &str) = ("victor", "victor-password-456");

pub struct TestConsole {
    pub db: TestDb,
    pub addr: SocketAddr,
    pub clock: ManualClock,
    /// The broker names of the parking page, when asked for.
    pub queue: Option<TestQueue>,
    stop: CancellationToken,
}

impl TestConsole {
    /// A console with the fixtures' books, a resolver and a viewer.
    pub async fn start(session: SessionPolicy, with_broker: bool) -> Self {
        Self::start_with(session, with_broker, false).await
    }

    /// Like [`TestConsole::start`]; `insecure_cookies` as
    /// `--console-insecure-cookies` (a browser on plain HTTP).
    pub async fn start_with(
        session: SessionPolicy,
        with_broker: bool,
        insecure_cookies: bool,
    ) -> Self {
        Self::start_full(
            session,
            with_broker,
            insecure_cookies,
            SourcePolicy::default(),
            FourEyesAmount::off(),
        )
        .await
    }

    /// Like [`TestConsole::start_with`], finding the caller's address as
    /// `source` says (`console-trusted-proxies`,
    /// `console-trusted-forwarded-header`).
    pub async fn start_behind(
        session: SessionPolicy,
        with_broker: bool,
        insecure_cookies: bool,
        source: SourcePolicy,
    ) -> Self {
        Self::start_full(
            session,
            with_broker,
            insecure_cookies,
            source,
            FourEyesAmount::off(),
        )
        .await
    }

    /// Like [`TestConsole::start`], with `four-eyes-amount` set.
    pub async fn start_four_eyes(four_eyes: FourEyesAmount) -> Self {
        Self::start_full(
            long_sessions(),
            false,
            false,
            SourcePolicy::default(),
            four_eyes,
        )
        .await
    }

    async fn start_full(
        session: SessionPolicy,
        with_broker: bool,
        insecure_cookies: bool,
        source: SourcePolicy,
        four_eyes: FourEyesAmount,
    ) -> Self {
        let db = TestDb::new();
        let store = db.store().await;
        import_fixture_orders(&store).await;
        let pipeline = Pipeline::new(pipeline_config(), store.clone());
        for file in fixture_files() {
            let body = std::fs::read(&file).expect("fixture");
            pipeline
                .handle(body.trim_ascii_end(), Utc::now())
                .await
                .expect("fixture processed");
        }
        for ((name, password), role) in [
            (RESOLVER, ConsoleRole::Resolver),
            (VIEWER, ConsoleRole::Viewer),
        ] {
            let hash = hash_password(password).expect("hash");
            assert!(
                store
                    .add_console_user(name, role, &hash, Utc::now())
                    .await
                    .expect("add user")
            );
        }
        let queue = with_broker.then(|| TestQueue::new("5s"));
        let amqp = queue.as_ref().map(|q| q.settings.clone());
        let key = std::fs::read(repo_path("fixtures/keys/pseudonym.key")).expect("pseudonym key");
        let (clock, hand) = Clock::manual(Utc::now());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let console = Console {
            store: store.clone(),
            settings: ConsoleSettings {
                addr,
                insecure_cookies,
                session,
                report_timezone: chrono_tz::Tz::UTC,
                source,
                attempt_key: attempt_key(),
                login: LoginPolicy::default(),
                four_eyes,
            },
            clock,
            sealer: amqp.as_ref().map(|_| super::amqp::seal_keys()),
            amqp,
            pseudonym_key: Some(Arc::new(PseudonymKey::new(key.trim_ascii()))),
        };
        let stop = CancellationToken::new();
        tokio::spawn(ipn_reconciler::console::serve(
            listener,
            console,
            stop.clone().cancelled_owned(),
        ));
        Self {
            db,
            addr,
            clock: hand,
            queue,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for TestConsole {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The key of the test consoles' attempt digests.
pub fn attempt_key() -> AttemptKey {
    AttemptKey::new(b"the console tests' attempt key")
}

/// Sessions long enough never to end within a test.
pub fn long_sessions() -> SessionPolicy {
    SessionPolicy {
        idle: Duration::from_secs(3600),
        absolute: Duration::from_secs(8 * 3600),
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The `value` of the first hidden `csrf` field of the page.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("a form with a csrf field") + marker.len();
        let end = self.body[start..].find('"').expect("closing quote") + start;
        self.body[start..end].to_owned()
    }
}

/// A browser without a browser: keeps the console's cookies, follows no
/// redirect (the tests look at them).
pub struct Browser {
    client: reqwest::Client,
    base: String,
    pub cookies: BTreeMap<String, String>,
    /// Sent as `X-Forwarded-For` with every request, as a proxy would.
    pub forwarded_for: Option<String>,
}

impl Browser {
    pub fn new(console: &TestConsole) -> Self {
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: console.url(""),
            cookies: BTreeMap::new(),
            forwarded_for: None,
        }
    }

    fn forwarded(&self) -> reqwest::header::HeaderMap {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(value) = self.forwarded_for.as_deref() {
            headers.insert("x-forwarded-for", value.parse().expect("header value"));
        }
        headers
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn read(&mut self, response: reqwest::Response) -> Answer {
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().expect("cookie text");
            let pair = text.split(';').next().expect("pair");
            let (name, value) = pair.split_once('=').expect("name=value");
            if value.is_empty() || text.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await.expect("body"),
        }
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .headers(self.forwarded())
            .send()
            .await
            .expect("GET");
        self.read(response).await
    }

    /// POSTs a form (`name=value` pairs, encoded here).
    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .headers(self.forwarded())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("POST");
        self.read(response).await
    }

    /// Opens the login page and submits it; the answer to the POST.
    pub async fn login(&mut self, user: &str, password: &str) -> Answer {
        let form = self.get("/login").await;
        assert_eq!(form.status, 200);
        let csrf = form.csrf();
        self.post(
            "/login",
            &[("username", user), ("password", password), ("csrf", &csrf)],
        )
        .await
    }
}

/// Form encoding of one value.
pub fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
