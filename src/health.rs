//! What the daemon knows about its dependencies, for `/readyz`, the
//! metrics and the logs.
//!
//! Each dependency (the broker, the database) is up or down, with a reason
//! in words when down ("connection refused", "authentication failed for
//! user ..."). Whoever learns something reports it here. The log follows
//! the outages, not the attempts: one line when a dependency is lost (with
//! the cause), one when it is back (with how long it was away); while it
//! stays away, a reminder at most once a minute with the latest cause. An
//! outage of an hour is about sixty lines, not one per attempt, and the
//! cause of the moment is always on `/readyz`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::Store;

/// How often an outage that goes on is logged again.
const REMINDER: Duration = Duration::from_secs(60);

/// The daemon's view of its dependencies. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    broker: Dependency,
    database: Dependency,
    stopping: AtomicBool,
}

/// One dependency's state.
#[derive(Debug)]
pub struct Dependency {
    name: &'static str,
    up: AtomicBool,
    state: Mutex<State>,
    gauge: Gauge,
    /// Wakes the dependency's watcher for a check now ([`Dependency::suspect`]).
    recheck: tokio::sync::Notify,
}

/// What the log lines are decided from.
#[derive(Debug)]
struct State {
    /// Why it is down (or `connected`), as last reported.
    detail: String,
    /// Whether it was ever up: the first failure at start is "unavailable",
    /// a later one "lost".
    ever_up: bool,
    /// When the current outage began.
    down_since: Option<Instant>,
    /// When the current outage was last logged.
    logged_at: Option<Instant>,
}

/// A dependency's state at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyStatus {
    pub up: bool,
    pub detail: String,
}

/// What a report changed, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transition {
    /// Nothing worth a line.
    Quiet,
    /// Up for the first time.
    Connected,
    /// Up again after an outage that lasted this long.
    Back(Duration),
    /// Down after having been up.
    Lost,
    /// Down at start, first reported.
    Unavailable,
    /// Still down, a minute after the last line.
    StillDown(Duration),
}

impl Health {
    /// Both dependencies down ("not connected yet"), reflected in the
    /// `ipn_broker_connected` and `ipn_database_up` gauges of `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                broker: Dependency::new("broker", metrics.broker_connected.clone()),
                database: Dependency::new("database", metrics.database_up.clone()),
                stopping: AtomicBool::new(false),
            }),
        }
    }

    pub fn broker(&self) -> &Dependency {
        &self.inner.broker
    }

    pub fn database(&self) -> &Dependency {
        &self.inner.database
    }

    /// Shutdown has begun: not ready for new work any more.
    pub fn set_stopping(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
    }

    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::Relaxed)
    }
}

impl Dependency {
    fn new(name: &'static str, gauge: Gauge) -> Self {
        gauge.set(0);
        Self {
            name,
            up: AtomicBool::new(false),
            state: Mutex::new(State {
                detail: "not connected yet".to_owned(),
                ever_up: false,
                down_since: None,
                logged_at: None,
            }),
            gauge,
            recheck: tokio::sync::Notify::new(),
        }
    }

    /// Something that used the dependency failed in a way that may mean it
    /// is gone: its watcher checks now instead of at its next round. The
    /// watcher alone decides up and down, so one failed statement among
    /// successful ones (a connection broken before the outage, a batch
    /// that ends after it) never turns into a "lost"/"back" pair of lines.
    pub fn suspect(&self) {
        self.recheck.notify_one();
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> DependencyStatus {
        DependencyStatus {
            up: self.is_up(),
            detail: self.lock().detail.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Reports the dependency usable.
    pub fn set_up(&self) {
        match self.update(true, "connected", Instant::now()) {
            Transition::Connected => {
                tracing::info!(dependency = self.name, "{} connected", self.name);
            }
            Transition::Back(away) => tracing::info!(
                dependency = self.name,
                down_seconds = away.as_secs(),
                "{} connection back",
                self.name
            ),
            _ => {}
        }
    }

    /// Reports the dependency unusable, and why.
    pub fn set_down(&self, reason: &str) {
        match self.update(false, reason, Instant::now()) {
            Transition::Lost => tracing::warn!(
                dependency = self.name,
                reason,
                "{} connection lost",
                self.name
            ),
            Transition::Unavailable => {
                tracing::warn!(dependency = self.name, reason, "{} unavailable", self.name);
            }
            Transition::StillDown(away) => tracing::warn!(
                dependency = self.name,
                reason,
                down_seconds = away.as_secs(),
                "{} still unavailable",
                self.name
            ),
            _ => {}
        }
    }

    /// Says why the dependency is not used yet, without calling it an
    /// outage (no log line): the worker waits for the database before it
    /// consumes, and `/readyz` should name the database, not the broker.
    pub fn set_waiting(&self, detail: &str) {
        if !self.is_up() {
            detail.clone_into(&mut self.lock().detail);
        }
    }

    /// Down because the daemon stops: no outage, no line.
    pub fn set_stopped(&self) {
        let mut state = self.lock();
        self.up.store(false, Ordering::Relaxed);
        self.gauge.set(0);
        "stopped".clone_into(&mut state.detail);
    }

    /// Stores the state and tells what changed.
    fn update(&self, up: bool, detail: &str, now: Instant) -> Transition {
        let mut state = self.lock();
        let was_up = self.up.swap(up, Ordering::Relaxed);
        self.gauge.set(i64::from(up));
        if state.detail != detail {
            detail.clone_into(&mut state.detail);
        }
        match (was_up, up) {
            (true, true) => Transition::Quiet,
            (false, true) => {
                let away = state.down_since.map(|since| now.duration_since(since));
                let ever_up = std::mem::replace(&mut state.ever_up, true);
                state.down_since = None;
                state.logged_at = None;
                match away {
                    Some(away) if ever_up => Transition::Back(away),
                    _ => Transition::Connected,
                }
            }
            (true, false) => {
                state.down_since = Some(now);
                state.logged_at = Some(now);
                Transition::Lost
            }
            (false, false) => {
                let since = *state.down_since.get_or_insert(now);
                match state.logged_at {
                    None => {
                        state.logged_at = Some(now);
                        if state.ever_up {
                            Transition::Lost
                        } else {
                            Transition::Unavailable
                        }
                    }
                    Some(at) if now.duration_since(at) >= REMINDER => {
                        state.logged_at = Some(now);
                        Transition::StillDown(now.duration_since(since))
                    }
                    Some(_) => Transition::Quiet,
                }
            }
        }
    }
}

/// Pings the database every `interval`, or at once when a worker
/// [suspects](Dependency::suspect) it, until `token` is cancelled: the one
/// source of the database's state, current even when no notification
/// arrives.
pub async fn watch_database(
    store: Store,
    health: Health,
    interval: Duration,
    timeout: Duration,
    token: CancellationToken,
) {
    loop {
        let ping = tokio::select! {
            () = token.cancelled() => return,
            ping = tokio::time::timeout(timeout, store.ping()) => ping,
        };
        match ping {
            Ok(Ok(())) => health.database().set_up(),
            Ok(Err(err)) => health.database().set_down(&err.to_string()),
            Err(_) => health.database().set_down("no answer in time"),
        }
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
            () = health.database().recheck.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_metrics() -> Metrics {
        Metrics::new(crate::metrics::Role::Serve {
            retry_delays: crate::queue::RetryDelays::new(Vec::new()),
        })
    }

    #[test]
    fn an_outage_is_one_line_lost_and_one_back_whatever_the_attempts_say() {
        let metrics = serve_metrics();
        let health = Health::new(&metrics);
        let db = health.database();
        let t0 = Instant::now();
        assert!(!db.is_up());
        // At start: one line for the first failure, none for the attempts
        // after it, even when their causes differ.
        assert_eq!(
            db.update(false, "connection refused", t0),
            Transition::Unavailable
        );
        assert_eq!(
            db.update(false, "timed out", t0 + Duration::from_secs(2)),
            Transition::Quiet
        );
        assert_eq!(
            db.status().detail,
            "timed out",
            "/readyz has the latest cause"
        );
        assert_eq!(
            db.update(true, "connected", t0 + Duration::from_secs(3)),
            Transition::Connected
        );
        assert_eq!(metrics.database_up.get(), 1);
        assert_eq!(metrics.broker_connected.get(), 0);
        assert_eq!(
            db.update(true, "connected", t0 + Duration::from_secs(4)),
            Transition::Quiet
        );
        // Lost, attempts quiet, a reminder a minute on, back with its length.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(db.update(false, "reset", t1), Transition::Lost);
        assert_eq!(metrics.database_up.get(), 0);
        for second in 1..60 {
            assert_eq!(
                db.update(false, "refused", t1 + Duration::from_secs(second)),
                Transition::Quiet
            );
        }
        assert_eq!(
            db.update(false, "refused", t1 + Duration::from_secs(61)),
            Transition::StillDown(Duration::from_secs(61))
        );
        assert_eq!(
            db.update(true, "connected", t1 + Duration::from_secs(70)),
            Transition::Back(Duration::from_secs(70))
        );
        assert_eq!(
            db.status(),
            DependencyStatus {
                up: true,
                detail: "connected".into()
            }
        );
    }

    #[test]
    fn waiting_and_stopping_name_the_state_without_an_outage() {
        let metrics = serve_metrics();
        let health = Health::new(&metrics);
        let broker = health.broker();
        broker.set_waiting("not consuming yet: waiting for the database");
        assert_eq!(
            broker.status().detail,
            "not consuming yet: waiting for the database"
        );
        broker.set_up();
        broker.set_waiting("ignored while up");
        assert_eq!(broker.status().detail, "connected");
        broker.set_stopped();
        assert!(!broker.is_up());
        assert_eq!(broker.status().detail, "stopped");
        assert_eq!(metrics.broker_connected.get(), 0);
        // Stopping logs nothing; a failure after it is an outage again.
        assert_eq!(
            broker.update(false, "refused", Instant::now()),
            Transition::Lost
        );
    }
}
