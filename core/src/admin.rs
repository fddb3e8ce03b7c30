//! The admin HTTP endpoint: `/metrics` (Prometheus text) and `/health`.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::task::JoinHandle;

use crate::ledger::Ledger;
use crate::topology::{ComponentState, Health};

#[derive(Clone)]
struct AdminState {
    ledger: Ledger,
    health: Health,
}

/// Binds `addr` and serves the endpoint until the returned task is aborted.
pub async fn serve(addr: SocketAddr, ledger: Ledger, health: Health) -> std::io::Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(listen = %listener.local_addr()?, "admin endpoint is serving /metrics and /health");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health_handler))
        .with_state(AdminState { ledger, health });
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin endpoint stopped");
        }
    }))
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    let mut body = String::new();
    s.ledger.prometheus(&mut body);
    crate::metrics::render(&mut body);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
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
