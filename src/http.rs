//! The operations endpoint: `/healthz` (the process is alive), `/readyz`
//! (broker and database connected: send work here) and `/metrics`
//! (Prometheus text).

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;
use crate::store::Store;
use crate::worker::Health;

/// What the handlers read.
#[derive(Clone)]
pub struct OpsState {
    pub metrics: Metrics,
    pub health: Health,
    pub store: Store,
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

/// 200 only when the consumer is connected and the database answers now
/// (a live ping, so a lost database shows at once, not at the next check).
async fn readyz(State(state): State<OpsState>) -> impl IntoResponse {
    let database = matches!(
        tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await,
        Ok(Ok(()))
    );
    state.health.set_database(&state.metrics, database);
    let broker = state.health.broker_connected();
    let body = format!(
        "broker: {}\ndatabase: {}\n",
        if broker { "connected" } else { "disconnected" },
        if database { "up" } else { "down" }
    );
    let status = if broker && database {
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
