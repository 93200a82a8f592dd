//! The HTTP server: `/metrics` (Prometheus), `/healthz` (the process is up), `/readyz`
//! (the store is open and the consumer has its assignment; not while shutting down) and the
//! admin API under `/api/v1` ([`crate::admin::api`], bearer token).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

use crate::admin::api::{self as admin_api, Admin};
use crate::source::SourceStatus;

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// Renders the metrics.
    pub metrics: PrometheusHandle,
    /// The source's state, for readiness.
    pub source: Arc<SourceStatus>,
    /// The admin API's state.
    pub admin: Option<Arc<Admin>>,
}

/// Binds `addr` (fails fast, with the address in the error, if it is taken).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} (http.listen): {e}"),
        )
    })
}

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let admin = state.admin.clone();
    let mut app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(state);
    if let Some(admin) = admin {
        app = app.merge(admin_api::router(admin));
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

async fn metrics(State(state): State<HttpState>) -> String {
    state.metrics.render()
}

async fn ready(State(state): State<HttpState>) -> (StatusCode, String) {
    if state.source.stopping.load(Ordering::Relaxed) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down\n".into(),
        )
    } else if state.source.joined.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the consumer has no partition assignment from its group yet\n".into(),
        )
    }
}
