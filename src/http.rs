//! The operations endpoint: `/healthz` (the process is alive), `/readyz`
//! (every dependency this process needs is reachable: send work here, and
//! if not, why not) and `/metrics` (Prometheus text).
//!
//! It is bound before anything connects, so an orchestrator can tell a
//! daemon that waits for its database from one that is gone.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::health::Health;
use crate::metrics::Metrics;

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct OpsState {
    pub metrics: Metrics,
    pub health: Health,
    /// Whether readiness depends on the database (the standalone intake
    /// has none).
    pub needs_database: bool,
}

pub fn router(state: OpsState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: OpsState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 when every dependency is up; otherwise 503 with one line per
/// dependency saying what is wrong, in words.
async fn readyz(State(state): State<OpsState>) -> impl IntoResponse {
    let broker = state.health.broker().status();
    let mut ready = broker.up;
    let mut body = format!(
        "broker: {}\n",
        if broker.up {
            "connected".to_owned()
        } else {
            format!("down ({})", broker.detail)
        }
    );
    if state.needs_database {
        let database = state.health.database().status();
        ready &= database.up;
        body.push_str(&format!(
            "database: {}\n",
            if database.up {
                "up".to_owned()
            } else {
                format!("down ({})", database.detail)
            }
        ));
    }
    if state.health.is_stopping() {
        ready = false;
        body.push_str("stopping: shutdown in progress\n");
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

async fn metrics(State(state): State<OpsState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
