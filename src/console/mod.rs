//! The finance console: an authenticated web page over the books.
//!
//! Finance staff look instead of typing commands: the report of a period
//! with a chart, orders and their history, the review queue (resolved from
//! the page by a `resolver`), the notification log, the parking queue
//! (requeued after confirming) and settlement. Pages are rendered on the
//! server with maud; there is no script at all, so the content security
//! policy forbids every inline one (see [`headers`]).
//!
//! - [`auth`]: passwords (argon2id), session tokens, expiry, the keyed
//!   digests login attempts are counted under;
//! - [`throttle`]: when a login's password may be checked (progressive
//!   delays per name, caps on checks at once);
//! - [`csrf`]: the token every state-changing form carries;
//! - [`headers`]: the security headers of every response;
//! - [`login`]: `/login`, `/logout`, and the [`login::Session`] every page
//!   extracts;
//! - [`pages`]: one module per page, each table downloadable as CSV;
//! - [`chart`]: the overview's SVG chart, drawn on the server.
//!
//! It is a shell over [`Store`] (and the parking queue through
//! [`crate::queue::parked`]); it holds no state of its own beyond the
//! database, so several consoles can serve the same books.

pub mod auth;
pub mod chart;
pub mod csrf;
pub mod headers;
pub mod login;
pub mod pages;
pub mod throttle;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};

use crate::domain::PseudonymKey;
use crate::domain::four_eyes::FourEyesAmount;
use crate::queue::AmqpSettings;
use crate::store::Store;

/// How the console listens and how long its sessions live (from the
/// settings `console-addr`, `console-insecure-cookies`,
/// `console-idle-timeout`, `console-absolute-timeout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSettings {
    pub addr: SocketAddr,
    /// Cookies without `Secure` (plain HTTP on a developer's machine).
    /// Otherwise the cookies are `Secure` and `__Host-` prefixed, and the
    /// console must be reached over HTTPS (a proxy in front of it).
    pub insecure_cookies: bool,
    pub session: auth::SessionPolicy,
    /// `report-timezone`: where the days and months of the pages' period
    /// filters begin and end.
    pub report_timezone: chrono_tz::Tz,
    /// Who is calling: the TCP peer, or the address a proxy of
    /// `console-trusted-proxies` put in `console-trusted-forwarded-header`
    /// (`allow` is not used: the console has its passwords).
    pub source: crate::intake::SourcePolicy,
    /// The key of the login attempts' digests (`console-key-file`).
    pub attempt_key: auth::AttemptKey,
    /// The limits of logins.
    pub login: throttle::LoginPolicy,
    /// `four-eyes-amount`: a `link_order` above it waits for a second
    /// resolver's confirmation.
    pub four_eyes: FourEyesAmount,
}

/// The time as the console sees it: the system's, or one a test sets.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The system's clock.
    pub fn system() -> Self {
        Self(Arc::new(Utc::now))
    }

    /// A clock that stands at `start` until [`ManualClock::advance`]d.
    pub fn manual(start: DateTime<Utc>) -> (Self, ManualClock) {
        let now = Arc::new(Mutex::new(start));
        let read = now.clone();
        let clock = Self(Arc::new(move || {
            *read
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }));
        (clock, ManualClock(now))
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// The hand of a [`Clock::manual`].
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        let mut now = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *now += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
    }
}

/// What every handler reads.
#[derive(Debug, Clone)]
pub struct Console {
    pub store: Store,
    pub settings: ConsoleSettings,
    pub clock: Clock,
    /// The broker, for the parking queue; `None`: the page says it is not
    /// configured.
    pub amqp: Option<AmqpSettings>,
    /// The seal keys, so that a requeue resets the counters a seal binds
    /// ([`crate::queue::parked`]); `None`: messages sealed under the
    /// current scheme go back with their counters as they are.
    pub sealer: Option<crate::queue::Sealer>,
    /// The key of the customers' e-mail pseudonyms, for the search by
    /// e-mail; `None`: the form says how to set it.
    pub pseudonym_key: Option<Arc<PseudonymKey>>,
}

/// A console as its router serves it: with the caps on password checks
/// running at once, which live in this process.
#[derive(Debug)]
pub struct Served {
    pub console: Console,
    pub checks: throttle::CheckGate,
}

impl std::ops::Deref for Served {
    type Target = Console;

    fn deref(&self) -> &Console {
        &self.console
    }
}

/// The shared state of the router.
pub type Ctx = Arc<Served>;

/// Every route of the console.
pub fn router(console: Console) -> Router {
    Router::new()
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/static/console.css", get(pages::stylesheet))
        .route("/", get(pages::overview::page))
        .route("/orders", get(pages::orders::list))
        .route("/orders/by-email", post(pages::orders::by_email))
        .route("/orders/{order_ref}", get(pages::orders::show))
        .route("/review", get(pages::review::page))
        .route("/review/{id}", get(pages::review::show))
        .route("/review/{id}/resolve", post(pages::review::resolve))
        .route("/review/{id}/confirm", post(pages::review::confirm))
        .route("/notifications", get(pages::notifications::page))
        .route("/parked", get(pages::parked::page))
        .route("/parked/requeue", post(pages::parked::requeue))
        .route("/settlement", get(pages::settlement::page))
        .route("/activity", get(pages::activity::page))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn(headers::security_headers))
        .with_state(Arc::new(Served {
            checks: throttle::CheckGate::new(
                console.settings.login.checks_per_user,
                throttle::CheckGate::default_total(),
            ),
            console,
        }))
}

/// Serves the console on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    console: Console,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "console listening");
    }
    axum::serve(
        listener,
        router(console).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Parses `console-addr`: `HOST:PORT`, or a port alone (`8090`, `:8090`),
/// which binds 127.0.0.1: the console is for people on this machine or
/// behind a proxy unless an address says otherwise.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let port = text.strip_prefix(':').unwrap_or(text);
    if let Ok(port) = port.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse::<SocketAddr>()
        .map_err(|_| format!("`{text}` is not HOST:PORT or a port (a port alone binds 127.0.0.1)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_without_a_host_binds_loopback() {
        assert_eq!(
            parse_addr("8090"),
            Ok("127.0.0.1:8090".parse().expect("addr"))
        );
        assert_eq!(parse_addr(":0"), Ok("127.0.0.1:0".parse().expect("addr")));
        assert_eq!(
            parse_addr("0.0.0.0:8443"),
            Ok("0.0.0.0:8443".parse().expect("addr"))
        );
        assert_eq!(
            parse_addr("[::1]:80"),
            Ok("[::1]:80".parse().expect("addr"))
        );
        assert!(parse_addr("localhost").is_err());
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = Utc::now();
        let (clock, hand) = Clock::manual(start);
        assert_eq!(clock.now(), start);
        hand.advance(Duration::from_secs(90));
        assert_eq!((clock.now() - start).num_seconds(), 90);
    }
}
