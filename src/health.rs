//! What the daemon knows about its dependencies, for `/readyz`, the
//! metrics and the logs.
//!
//! Each dependency (the broker, the database) is up or down, with a reason
//! in words when down ("connection refused", "authentication failed for
//! user ..."). Whoever learns something reports it here; the state is
//! logged only when it changes, so an outage of an hour is two log lines,
//! not one per attempt.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::Store;

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
    /// Why it is down (or `connected`), as last reported.
    detail: Mutex<String>,
    gauge: Gauge,
}

/// A dependency's state at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyStatus {
    pub up: bool,
    pub detail: String,
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
            detail: Mutex::new("not connected yet".to_owned()),
            gauge,
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> DependencyStatus {
        DependencyStatus {
            up: self.is_up(),
            detail: self.detail_text(),
        }
    }

    fn detail_text(&self) -> String {
        match self.detail.lock() {
            Ok(detail) => detail.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reports the dependency reachable.
    pub fn set_up(&self) {
        if self.update(true, "connected") {
            tracing::info!(dependency = self.name, "{} connected", self.name);
        }
    }

    /// Reports the dependency unreachable, and why.
    pub fn set_down(&self, reason: &str) {
        if self.update(false, reason) {
            tracing::warn!(dependency = self.name, reason, "{} unavailable", self.name);
        }
    }

    /// Stores the state; `true` when it differs from the last one.
    fn update(&self, up: bool, detail: &str) -> bool {
        let mut current = match self.detail.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let was_up = self.up.swap(up, Ordering::Relaxed);
        self.gauge.set(i64::from(up));
        let changed = was_up != up || *current != detail;
        if changed {
            detail.clone_into(&mut current);
        }
        changed
    }
}

/// Pings the database every `interval` until `token` is cancelled, keeping
/// its state current even when no notification arrives.
pub async fn watch_database(
    store: Store,
    health: Health,
    interval: Duration,
    timeout: Duration,
    token: CancellationToken,
) {
    loop {
        match tokio::time::timeout(timeout, store.ping()).await {
            Ok(Ok(())) => health.database().set_up(),
            Ok(Err(err)) => health.database().set_down(&err.to_string()),
            Err(_) => health.database().set_down("no answer in time"),
        }
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_change_once_and_show_in_the_gauges() {
        let metrics = Metrics::new(crate::metrics::Role::Serve {
            retry_delays: crate::queue::RetryDelays::new(Vec::new()),
        });
        let health = Health::new(&metrics);
        assert!(!health.database().is_up());
        assert!(health.database().update(false, "connection refused"));
        assert!(!health.database().update(false, "connection refused"));
        assert!(
            health
                .database()
                .update(false, "password authentication failed")
        );
        assert!(health.database().update(true, "connected"));
        assert_eq!(metrics.database_up.get(), 1);
        assert_eq!(metrics.broker_connected.get(), 0);
        assert_eq!(
            health.database().status(),
            DependencyStatus {
                up: true,
                detail: "connected".into()
            }
        );
    }
}
