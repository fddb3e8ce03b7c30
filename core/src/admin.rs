//! The admin HTTP endpoint: `/metrics` (Prometheus text), `/health`, the
//! JSON behind the status page (`/api/topology`, `/api/ledger`,
//! `/api/exporters`) and the page itself at `/` (embedded, no CDN).
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
    /// What components published (the flow sources' exporter tables).
    pub shared: crate::registry::Shared,
    /// Records per second over the last second, sampled by the endpoint.
    pub rates: Arc<std::sync::Mutex<Rates>>,
}

/// Counters as last sampled, and the rates between the last two samples:
/// components' `received`, edges' records, exporters' records.
#[derive(Debug, Default)]
pub(crate) struct Rates {
    at: Option<std::time::Instant>,
    counts: std::collections::HashMap<String, u64>,
    rates: std::collections::HashMap<String, f64>,
}

impl Rates {
    fn get(&self, key: &str) -> f64 {
        self.rates.get(key).copied().unwrap_or(0.0)
    }
}

/// What components published of type `T`, by component name.
fn published<T: std::any::Any + Send + Sync>(s: &AdminState) -> Vec<(String, Arc<T>)> {
    let Ok(m) = s.shared.lock() else { return Vec::new() };
    m.iter().filter_map(|(n, v)| v.clone().downcast::<T>().ok().map(|t| (n.clone(), t))).collect()
}

fn exporter_tables(s: &AdminState) -> Vec<(String, Arc<crate::exporters::SeenExporters>)> {
    published(s)
}

/// Samples the counters once a second and keeps the rates between the last
/// two samples, so every client (the page, `spillway top`) sees the same.
fn sample(s: &AdminState) {
    let mut counts = std::collections::HashMap::new();
    for e in s.ledger.snapshot() {
        counts.insert(format!("c|{}", e.component), e.received);
    }
    for (from, to, n) in s.ledger.edges() {
        counts.insert(format!("e|{from}|{to}"), n);
    }
    for (name, t) in exporter_tables(s) {
        for r in t.table() {
            counts.insert(format!("x|{name}|{}", r.exporter), r.stats.records);
        }
    }
    let now = std::time::Instant::now();
    let Ok(mut r) = s.rates.lock() else { return };
    if let Some(at) = r.at {
        let dt = (now - at).as_secs_f64();
        if dt > 0.0 {
            let rates = counts
                .iter()
                .map(|(k, n)| {
                    (k.clone(), n.saturating_sub(r.counts.get(k).copied().unwrap_or(*n)) as f64 / dt)
                })
                .collect();
            r.rates = rates;
        }
    }
    r.at = Some(now);
    r.counts = counts;
}

/// Aborts the sampler when the endpoint's task ends (or is aborted).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
        .route("/", get(page_handler))
        .route("/api/topology", get(topology_handler))
        .route("/api/ledger", get(ledger_handler))
        .route("/api/exporters", get(exporters_handler))
        .with_state(state.clone());
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let refused = metrics.counter(
        "spillway_admin_connections_refused_total",
        "Admin connections closed at once because MAX_CONNECTIONS were being served.",
        &[],
    );
    let sampled = state.clone();
    let sampler = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            sample(&sampled);
        }
    });
    Ok(tokio::spawn(async move {
        let _sampler = AbortOnDrop(sampler);
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

/// The status page: one HTML file with its script and style inline.
const PAGE: &str = include_str!("status.html");

async fn page_handler() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE)
}

fn json(v: serde_json::Value) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], v.to_string())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn edges(s: &AdminState) -> Vec<serde_json::Value> {
    let rates = s.rates.lock();
    s.ledger
        .edges()
        .into_iter()
        .map(|(from, to, records)| {
            let r = rates.as_ref().map_or(0.0, |r| r.get(&format!("e|{from}|{to}")));
            serde_json::json!({ "from": from, "to": to, "records": records, "records_per_s": r })
        })
        .collect()
}

/// The pipeline's components (name, kind, state) and edges, with what each
/// edge carried so far.
async fn topology_handler(State(s): State<AdminState>) -> impl IntoResponse {
    let states = s.health.lock().map(|h| h.clone()).unwrap_or_default();
    let components: Vec<serde_json::Value> = s
        .ledger
        .snapshot()
        .into_iter()
        .map(|e| {
            let state = states.iter().find(|(n, _)| *n == e.component).map(|(_, st)| *st);
            serde_json::json!({ "name": e.component, "kind": e.kind, "state": state })
        })
        .collect();
    json(serde_json::json!({ "time_ms": now_ms(), "components": components, "edges": edges(&s) }))
}

/// Every component's ledger counters (as `--ledger-json` writes them at the
/// end), and the edges.
async fn ledger_handler(State(s): State<AdminState>) -> impl IntoResponse {
    let imbalances: Vec<String> =
        s.ledger.imbalances(false).iter().map(|i| format!("{}: {}", i.component, i.message)).collect();
    let components: Vec<serde_json::Value> = {
        let rates = s.rates.lock();
        s.ledger
            .snapshot()
            .into_iter()
            .map(|e| {
                let r = rates.as_ref().map_or(0.0, |r| r.get(&format!("c|{}", e.component)));
                let mut v = serde_json::to_value(e).unwrap_or_default();
                v["records_per_s"] = serde_json::json!(r);
                v
            })
            .collect()
    };
    json(serde_json::json!({
        "time_ms": now_ms(),
        "components": components,
        "edges": edges(&s),
        "imbalances": imbalances,
    }))
}

/// Every flow source's exporters with their live counts.
async fn exporters_handler(State(s): State<AdminState>) -> impl IntoResponse {
    // What `snmp` sources say of the same routers, joined by exporter.
    let mut polled = std::collections::HashMap::new();
    for (name, t) in published::<crate::exporters::PolledTargets>(&s) {
        for (ip, st) in t.snapshot() {
            polled.insert(ip, serde_json::json!({ "source": name, "status": st }));
        }
    }
    let tables = exporter_tables(&s);
    let rates = s.rates.lock();
    let mut sources: Vec<serde_json::Value> = tables
        .into_iter()
        .map(|(name, t)| {
            let rows: Vec<serde_json::Value> = t
                .table()
                .into_iter()
                .map(|r| {
                    let snmp = polled.get(&r.exporter).cloned().unwrap_or(serde_json::Value::Null);
                    let rate = rates.as_ref().map_or(0.0, |x| x.get(&format!("x|{name}|{}", r.exporter)));
                    let mut v = serde_json::to_value(r).unwrap_or_default();
                    v["snmp"] = snmp;
                    v["records_per_s"] = serde_json::json!(rate);
                    v
                })
                .collect();
            serde_json::json!({ "source": name, "overflow": t.overflow(), "exporters": rows })
        })
        .collect();
    sources.sort_by(|a, b| a["source"].as_str().cmp(&b["source"].as_str()));
    json(serde_json::json!({ "time_ms": now_ms(), "sources": sources }))
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
