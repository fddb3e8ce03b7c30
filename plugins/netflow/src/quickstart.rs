//! The quickstart's orchestration: run the embedded pipeline, wait until its
//! collector is ready (over the topology's readiness channel), send it
//! generated NetFlow v5, v9 and IPFIX, then stop it the way SIGTERM does and
//! hand back what was sent beside the run's report. The binary only prints.

use std::net::SocketAddr;
use std::time::Duration;

use spillway_core::component::Shutdown;
use spillway_core::topology::{RunReport, StartError, Topology};

use crate::generate::{self, Totals};

/// The quickstart pipeline, embedded so that it runs from any directory. It
/// reads `QUICKSTART_LISTEN` and `QUICKSTART_OUT`.
pub const PIPELINE: &str = include_str!("../../../pipelines/quickstart.yaml");

/// How long the collector may take to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How the run went.
pub struct Outcome {
    /// What the generator sent, or why it could not.
    pub sent: Result<Totals, String>,
    /// The pipeline's report, or why it did not run.
    pub report: Result<RunReport, String>,
}

/// Runs `topology` (the quickstart pipeline listening on `listen`) and
/// sends it `records` records at `rate` records per second.
pub async fn run(
    topology: Topology,
    listen: SocketAddr,
    records: u64,
    rate: u64,
    shutdown: Shutdown,
) -> Outcome {
    let mut ready = topology.readiness();
    let ledger = topology.ledger().clone();
    let running = tokio::spawn(topology.run(shutdown.clone()));
    // The guard `wait_for` returns holds the channel's read lock: drop it
    // at once (the topology writes the channel when it stops).
    let became_ready = matches!(tokio::time::timeout(READY_TIMEOUT, ready.wait_for(|r| *r)).await, Ok(Ok(_)));
    if !became_ready {
        shutdown.cancel();
        return Outcome {
            sent: Err(format!("the collector did not become ready to receive on {listen}")),
            report: joined(running.await),
        };
    }
    tracing::info!(records, rate, "sending generated NetFlow v5, v9 and IPFIX to the collector");
    let flows = ledger.get("flows");
    let sent = tokio::task::spawn_blocking(move || send(listen, records, rate, flows))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    // Let the last datagrams arrive, then stop the way SIGTERM does.
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    Outcome { sent, report: joined(running.await) }
}

fn joined(r: Result<Result<RunReport, StartError>, tokio::task::JoinError>) -> Result<RunReport, String> {
    match r {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(e)) => Err(format!("the pipeline could not start: {e}")),
        Err(e) => Err(format!("the pipeline panicked: {e}")),
    }
}

/// Records the generator may be ahead of what the collector has decoded:
/// less than the kernel buffers hold, more than the workers batch.
const WINDOW: u64 = 40_000;

/// A tenth of the records as v5, six tenths as v9, three as IPFIX, from 20
/// exporters each; never more than [`WINDOW`] ahead of what the `flows`
/// source has received, so a slow machine (a debug build, a busy core)
/// slows the demo down instead of losing datagrams in the kernel.
fn send(
    target: SocketAddr,
    records: u64,
    rate: u64,
    flows: Option<std::sync::Arc<spillway_core::ledger::ComponentLedger>>,
) -> Result<Totals, String> {
    let mut totals = Totals::default();
    for (version, share) in [(5u16, 1u64), (9, 6), (10, 3)] {
        let opts = generate::Options {
            target,
            version,
            exporters: 20,
            rate: Some(rate),
            count: Some(records * share / 10),
            duration: None,
            records_per_packet: if version == 5 { 30 } else { 24 },
            template_refresh: 20,
            templates: generate::Templates::Refreshed,
            sampling_rate: None,
            options_from_second_port: false,
            seed: version as u64,
        };
        let base = totals.records;
        let mut pace = |sent: u64| {
            let Some(f) = &flows else { return };
            let waited = std::time::Instant::now();
            // A collector that makes no progress for 10 s is not waited for:
            // what the kernel drops then is counted in the ledger.
            while base + sent > f.received_count() + WINDOW && waited.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        let t = generate::run_paced(&opts, &mut pace).map_err(|e| e.to_string())?;
        totals.packets += t.packets;
        totals.records += t.records;
        totals.sum_bytes += t.sum_bytes;
        totals.sum_packets += t.sum_packets;
    }
    Ok(totals)
}
