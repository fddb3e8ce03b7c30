//! The admin HTTP endpoint: `/metrics` (Prometheus text) and `/health`.
//!
//! It serves HTTP/1.1 with limits, so a slow or hostile client cannot tie it
//! up: a request's headers must arrive within [`HEADER_TIMEOUT`] (an idle
//! keep-alive connection is closed then too), a connection lives at most
//! [`MAX_CONNECTION_AGE`], and at most [`MAX_CONNECTIONS`] are served at
//! once (more are closed at once, counted).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::task::JoinHandle;

use crate::health::{ComponentState, Health, Phase, Readiness};
use crate::ledger::Ledger;

/// What the endpoint serves.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub ledger: Ledger,
    pub health: Health,
    pub metrics: crate::metrics::Registry,
    pub readiness: Arc<Readiness>,
}

/// How long a client may take to send a request's headers, and how long an
/// idle keep-alive connection stays open.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection is served.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;

/// Binds `addr` and serves the endpoint until the returned task is aborted.
pub(crate) async fn serve(addr: SocketAddr, state: AdminState) -> std::io::Result<JoinHandle<()>> {
    let metrics = state.metrics.clone();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(listen = %listener.local_addr()?, "admin endpoint is serving /metrics, /health, /health/live and /health/ready");
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/health", get(health_handler))
        .route("/ready", get(ready_handler))
        .route("/health/ready", get(ready_handler))
        .route("/health/live", get(live_handler))
        .with_state(state);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let refused = metrics.counter(
        "spillway_admin_connections_refused_total",
        "Admin connections closed at once because MAX_CONNECTIONS were being served.",
        &[],
    );
    Ok(tokio::spawn(async move {
        let mut logs = crate::metrics::LogLimit::default();
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    if let Some(suppressed) = logs.allow() {
                        tracing::warn!(error = %e, suppressed, "admin endpoint cannot accept a connection");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                refused.add(1);
                drop(stream);
                continue;
            };
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                match tokio::time::timeout(MAX_CONNECTION_AGE, conn).await {
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "admin connection ended with an error"),
                    Err(_) => tracing::debug!(%peer, "admin connection closed: it reached its maximum age"),
                    Ok(Ok(())) => {}
                }
                drop(slot);
            });
        }
    }))
}

async fn metrics_handler(State(s): State<AdminState>) -> impl IntoResponse {
    let mut body = String::new();
    s.ledger.prometheus(&mut body);
    s.metrics.render(&mut body);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// Readiness, what a load balancer's health check should probe: 200
/// `ready` once every source takes traffic (sockets bound) and no component
/// has failed; 503 with `warming`, `draining` (stopping: during the drain
/// grace the sources still receive) or `failed: <component>`.
async fn ready_handler(State(s): State<AdminState>) -> impl IntoResponse {
    let failed =
        s.health.lock().ok().and_then(|h| {
            h.iter().find(|(_, st)| *st == ComponentState::Failed).map(|(name, _)| name.clone())
        });
    match (failed, s.readiness.phase()) {
        (_, Phase::Draining) => (StatusCode::SERVICE_UNAVAILABLE, "draining\n".to_string()),
        (Some(name), _) => (StatusCode::SERVICE_UNAVAILABLE, format!("failed: {name}\n")),
        (None, Phase::Ready) => (StatusCode::OK, "ready\n".to_string()),
        (None, Phase::Warming) => (StatusCode::SERVICE_UNAVAILABLE, "warming\n".to_string()),
    }
}

/// Liveness: 200 while the process serves. A stuck or failed pipeline shows
/// in readiness and `/health`; restarting the process is the operator's
/// call, not the probe's.
async fn live_handler() -> impl IntoResponse {
    (StatusCode::OK, "live\n")
}

async fn health_handler(State(s): State<AdminState>) -> impl IntoResponse {
    let states = s.health.lock().map(|h| h.clone()).unwrap_or_default();
    let failed = states.iter().any(|(_, st)| *st == ComponentState::Failed);
    let body = serde_json::json!({
        "status": if failed { "failed" } else { "ok" },
        "components": states
            .iter()
            .map(|(n, st)| (n.clone(), serde_json::to_value(st).unwrap_or_default()))
            .collect::<serde_json::Map<_, _>>(),
    });
    let code = if failed { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string())
}
