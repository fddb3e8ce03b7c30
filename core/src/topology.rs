//! Builds a validated [`Pipeline`] into tasks and runs it to the end.
//!
//! One tokio task per component. Each transform and sink has one input
//! channel, bounded in rows; fan-in is several upstreams holding senders to
//! it, fan-out is an upstream holding senders to several. A component that
//! fails is reported by name and the whole pipeline then stops gracefully, so
//! the other branches still drain and the ledger still balances.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::task::JoinSet;
use tracing::{error, info};

use crate::admin;
use crate::channel::{self, RowReceiver, RowSender};
use crate::component::{Emitter, NamedOutputs, Output, Shutdown, SinkContext, SinkInput, SourceContext};
use crate::config::Pipeline;
use crate::ledger::{ComponentKind, ComponentLedger, Ledger, LedgerEntry};
use crate::registry::{AnyConfig, BuildContext};

/// Default capacity of each component's input channel, in rows.
pub const DEFAULT_CHANNEL_ROWS: u32 = 131_072;

/// How the runner is set up.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Capacity of each input channel, in rows.
    pub channel_rows: u32,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { channel_rows: DEFAULT_CHANNEL_ROWS }
    }
}

/// The lifecycle state of one component, as `/health` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentState {
    /// Running.
    Running,
    /// Returned normally.
    Finished,
    /// Returned an error or panicked.
    Failed,
}

/// Component states shared with the admin endpoint.
pub type Health = Arc<Mutex<Vec<(String, ComponentState)>>>;

/// How a run ended.
#[derive(Debug)]
pub struct RunReport {
    /// The final ledger.
    pub ledger: Vec<LedgerEntry>,
    /// Components that failed, with their error.
    pub failures: Vec<(String, String)>,
    /// Every way the final ledger does not balance (empty on a clean run).
    pub imbalances: Vec<String>,
}

/// Components could not be built, or the admin endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct StartError(pub Vec<String>);

enum Built {
    Source(Box<dyn crate::component::Source>),
    Transform(Box<dyn crate::component::Transform>),
    Sink(Box<dyn crate::component::Sink>),
}

/// A pipeline whose components are built and whose ledger exists, ready to
/// [`Topology::run`].
pub struct Topology {
    built: Vec<(String, Built, Arc<ComponentLedger>, Vec<String>)>,
    ledger: Ledger,
    admin: Option<crate::config::AdminConfig>,
    options: RunOptions,
}

impl Topology {
    /// Builds every component. All build errors are collected.
    pub fn build(pipeline: Pipeline, options: RunOptions) -> Result<Self, StartError> {
        let mut ledger = Ledger::new();
        let mut built = Vec::new();
        let mut errors = Vec::new();
        let shared = crate::registry::Shared::default();
        for c in pipeline.components {
            let cx = BuildContext {
                name: c.name.clone(),
                base_dir: pipeline.base_dir.clone(),
                shared: shared.clone(),
            };
            let entry = ledger.register(&c.name, c.kind);
            let result = match (&c.config, &c.input_schema) {
                (AnyConfig::Source(s), _) => s.build(&cx).map(Built::Source),
                (AnyConfig::Transform(t), Some(i)) => t.build(&cx, i).map(Built::Transform),
                (AnyConfig::Sink(s), Some(i)) => s.build(&cx, i).map(Built::Sink),
                _ => continue,
            };
            match result {
                Ok(b) => built.push((c.name, b, entry, c.inputs)),
                Err(e) => errors.push(format!("{} `{}`: {}", c.kind.as_str(), c.name, e)),
            }
        }
        if !errors.is_empty() {
            return Err(StartError(errors));
        }
        Ok(Self { built, ledger, admin: pipeline.admin, options })
    }

    /// The pipeline's ledger (live: counters update as the pipeline runs).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Runs until every component has finished. `shutdown` starts a graceful
    /// stop; the run still returns only once everything in flight drained.
    pub async fn run(self, shutdown: Shutdown) -> Result<RunReport, StartError> {
        let Topology { built, ledger, admin, options } = self;
        let edges: Vec<(String, Vec<String>)> =
            built.iter().map(|(n, _, _, i)| (n.clone(), i.clone())).collect();
        let mut inputs: HashMap<String, (RowSender, Option<RowReceiver>, Arc<ComponentLedger>)> =
            HashMap::new();
        for (name, b, entry, _) in &built {
            if !matches!(b, Built::Source(_)) {
                let (tx, mut rx) = channel::channel(options.channel_rows);
                rx.set_owner(entry.clone());
                inputs.insert(name.clone(), (tx, Some(rx), entry.clone()));
            }
        }
        let mut targets: HashMap<String, Vec<(RowSender, Arc<ComponentLedger>)>> = HashMap::new();
        for (name, _, _, ins) in &built {
            for input in ins {
                let (tx, _, entry) = &inputs[name];
                targets.entry(input.clone()).or_default().push((tx.clone(), entry.clone()));
            }
        }
        // Named outputs with readers get their own ledger entry, registered
        // before the admin endpoint starts serving the ledger.
        let mut ledger = ledger;
        let mut named: HashMap<String, Vec<(String, Output)>> = HashMap::new();
        let keys: Vec<String> = targets.keys().filter(|k| k.contains('.')).cloned().collect();
        for key in keys {
            let (source, output) = crate::config::split_input(&key);
            let entry = ledger.register(&key, ComponentKind::Source);
            let out = Output::new(targets.remove(&key).unwrap_or_default(), entry);
            named.entry(source.to_string()).or_default().push((output.unwrap_or_default().to_string(), out));
        }
        let health: Health =
            Arc::new(Mutex::new(built.iter().map(|(n, ..)| (n.clone(), ComponentState::Running)).collect()));
        let admin_task = match admin {
            Some(a) => Some(admin::serve(a.listen, ledger.clone(), health.clone()).await.map_err(|e| {
                StartError(vec![format!("admin endpoint cannot listen on {}: {e}", a.listen)])
            })?),
            None => None,
        };

        let sources_stop = Shutdown::new();
        let mut tasks: JoinSet<(String, ComponentKind, Result<(), String>)> = JoinSet::new();
        let mut task_names = HashMap::new();
        for (name, b, entry, _) in built {
            let out = Output::new(targets.remove(&name).unwrap_or_default(), entry.clone());
            let n: Arc<str> = name.as_str().into();
            let id = match b {
                Built::Source(src) => {
                    let named = NamedOutputs::new(named.remove(&name).unwrap_or_default());
                    let shutdown = sources_stop.child_token();
                    let cx = SourceContext { name: n, out, named, shutdown, ledger: entry };
                    tasks.spawn(async move {
                        let r = src.run(cx).await.map_err(|e| e.message);
                        (name, ComponentKind::Source, r)
                    })
                }
                Built::Transform(t) => {
                    let (_, rx, _) = inputs.remove(&name).expect("every transform has an input channel");
                    let rx = rx.expect("input receiver taken once");
                    let named = named.remove(&name).unwrap_or_default();
                    tasks.spawn(async move {
                        let r = run_transform(t, rx, out, named, entry).await;
                        (name, ComponentKind::Transform, r)
                    })
                }
                Built::Sink(s) => {
                    let (_, rx, _) = inputs.remove(&name).expect("every sink has an input channel");
                    let input = SinkInput::new(rx.expect("input receiver taken once"), entry.clone());
                    let cx = SinkContext { name: n, ledger: entry };
                    tasks.spawn(async move {
                        let r = s.run(input, cx).await.map_err(|e| e.message);
                        (name, ComponentKind::Sink, r)
                    })
                }
            };
            task_names.insert(id.id(), task_names.len());
        }
        // Drop our copies of the senders so that channels close when their
        // upstreams finish.
        drop(inputs);
        drop(targets);

        let forward = {
            let stop = sources_stop.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                info!("stopping sources; draining in-flight records to the sinks");
                stop.cancel();
            })
        };

        let mut failures = Vec::new();
        while let Some(joined) = tasks.join_next_with_id().await {
            let (name, result) = match joined {
                Ok((_, (name, kind, r))) => {
                    if let Err(e) = &r {
                        error!(component = %name, kind = kind.as_str(), error = %e, "component failed; stopping the pipeline");
                    }
                    (name, r)
                }
                Err(e) => {
                    let idx = task_names.get(&e.id()).copied().unwrap_or(0);
                    let name = health.lock().map(|h| h[idx].0.clone()).unwrap_or_default();
                    let msg = if e.is_panic() { "panicked".to_string() } else { e.to_string() };
                    error!(component = %name, error = %msg, "component failed; stopping the pipeline");
                    (name, Err(msg))
                }
            };
            if let Ok(mut h) = health.lock()
                && let Some(slot) = h.iter_mut().find(|(n, _)| *n == name)
            {
                slot.1 = if result.is_ok() { ComponentState::Finished } else { ComponentState::Failed };
            }
            if let Err(e) = result {
                failures.push((name, e));
                sources_stop.cancel();
            }
        }
        forward.abort();
        if let Some(a) = admin_task {
            a.abort();
        }
        let snapshot = ledger.snapshot();
        let imbalances = imbalances(&snapshot, &edges);
        Ok(RunReport { ledger: snapshot, failures, imbalances })
    }
}

/// Checks a final ledger: nothing may remain in flight in a component, and
/// every component must have received exactly what its inputs emitted.
pub fn imbalances(entries: &[LedgerEntry], edges: &[(String, Vec<String>)]) -> Vec<String> {
    let by_name: HashMap<&str, &LedgerEntry> = entries.iter().map(|e| (e.component.as_str(), e)).collect();
    let mut out = Vec::new();
    for e in entries {
        let accounted = e.emitted + e.delivered + e.dropped_total + e.merged;
        if e.received + e.created != accounted {
            out.push(format!(
                "{} `{}` received {} records but accounted for {} (emitted {}, delivered {}, dropped {})",
                e.kind.as_str(),
                e.component,
                e.received,
                accounted,
                e.emitted,
                e.delivered,
                e.dropped_total
            ));
        }
    }
    for (name, inputs) in edges {
        if inputs.is_empty() {
            continue;
        }
        let Some(e) = by_name.get(name.as_str()) else { continue };
        let sent: u64 = inputs.iter().filter_map(|i| by_name.get(i.as_str())).map(|u| u.emitted).sum();
        if sent != e.received {
            out.push(format!("`{name}` received {} records but its inputs emitted {sent}", e.received));
        }
    }
    out
}

async fn run_transform(
    mut t: Box<dyn crate::component::Transform>,
    mut rx: RowReceiver,
    mut out: Output,
    mut named: Vec<(String, Output)>,
    ledger: Arc<ComponentLedger>,
) -> Result<(), String> {
    let mut emitter = Emitter::with_outputs(ledger.clone(), named.iter().map(|(n, _)| n.clone()).collect());
    let mut tick = t.tick_interval().map(|d| {
        // A zero period would make tokio panic; a millisecond is plenty.
        let mut i = tokio::time::interval(d.max(std::time::Duration::from_millis(1)));
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    loop {
        let next = match &mut tick {
            Some(i) => tokio::select! {
                b = rx.recv() => Some(b),
                _ = i.tick() => None,
            },
            None => Some(rx.recv().await),
        };
        match next {
            Some(Some(batch)) => {
                let rows = batch.rows() as u64;
                ledger.received(rows);
                if let Err(e) = t.process(batch, &mut emitter) {
                    tracing::warn!(component = %ledger.name(), reason = e.reason.as_str(), error = %e.message, rows, "transform failed on a batch; its records are dropped");
                    ledger.dropped(e.reason, rows);
                }
            }
            Some(None) => {
                t.finish(&mut emitter);
                send_named(&mut emitter, &mut named).await;
                for b in emitter.drain() {
                    let _ = out.send(b).await;
                }
                return Ok(());
            }
            None => t.tick(&mut emitter),
        }
        send_named(&mut emitter, &mut named).await;
        for b in emitter.drain() {
            if out.send(b).await.is_err() {
                return Err("every downstream component has failed".into());
            }
        }
    }
}

/// Sends what a transform pushed to its named outputs; each output's ledger
/// entry counts the records as received (the transform counted them out).
async fn send_named(emitter: &mut Emitter, named: &mut [(String, Output)]) {
    let batches: Vec<(&'static str, crate::Batch)> = emitter.drain_named().collect();
    for (name, b) in batches {
        if let Some((_, o)) = named.iter_mut().find(|(n, _)| n == name) {
            o.ledger().received(b.rows() as u64);
            let _ = o.send(b).await;
        }
    }
}
