//! Builds a validated [`Pipeline`] into tasks, runs it to the end, and
//! reloads it in place.
//!
//! One tokio task per component. Each transform and sink has one input
//! channel, bounded in rows; fan-in is several upstreams holding senders to
//! it, fan-out is an output holding senders to several. Every edge (an
//! output to a component) has a counter in the [`Ledger`], so the books
//! balance however the pipeline was rewired. A component that fails is
//! reported by name and the whole pipeline then stops gracefully, so the
//! other branches still drain and the ledger still balances.
//!
//! **Reload** ([`Topology::run_with_reloads`]): a new validated pipeline
//! replaces the running one without a stop. Components whose definition is
//! unchanged (type, fields, inputs, input schema, the named outputs read
//! from them, and every component they reference) keep running untouched.
//! Changed and removed components are retired: a source is stopped (told it
//! is being replaced, so it can hand its resources to its successor), a
//! transform or sink finishes when its upstreams stop sending to it — it
//! drains everything it was sent. New and changed components start at once
//! and unchanged producers are rewired to them. A replaced component counts
//! on in the same ledger entry. A reload whose components cannot be built
//! changes nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::admin;
use crate::channel::{self, RowReceiver, WeakRowSender};
use crate::component::{
    Emitter, Events, Handover, NamedOutputs, Output, Role, Shutdown, SinkContext, SinkInput, SourceContext,
    Target, Targets,
};
use crate::config::{AdminConfig, Component, OutputId, Pipeline};
use crate::health::{Readiness, Ready};
use crate::ledger::{ComponentKind, ComponentLedger, Ledger, LedgerEntry};
use crate::metrics::Registry;
use crate::registry::{AnyConfig, BuildContext, Shared};

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

pub use crate::health::{ComponentState, Health};

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

/// A component of the pipeline to run: its definition and, when it is to
/// be started, its built instance (`None`: a reload leaves it running).
struct Planned {
    spec: Component,
    built: Option<Built>,
}

/// Builds `specs` (in dependency order); every error is collected.
fn build_all(
    specs: Vec<Component>,
    shared: &Shared,
    base_dir: &std::path::Path,
    metrics: &Registry,
) -> Result<Vec<Planned>, StartError> {
    let mut planned = Vec::new();
    let mut errors = Vec::new();
    for spec in specs {
        let cx = BuildContext {
            name: spec.name.clone(),
            base_dir: base_dir.to_path_buf(),
            shared: shared.clone(),
            metrics: metrics.component(&spec.name),
        };
        let result = match (&spec.config, &spec.input_schema) {
            (AnyConfig::Source(s), _) => s.build(&cx).map(Built::Source),
            (AnyConfig::Transform(t), Some(i)) => t.build(&cx, i).map(Built::Transform),
            (AnyConfig::Sink(s), Some(i)) => s.build(&cx, i).map(Built::Sink),
            _ => continue,
        };
        match result {
            Ok(built) => planned.push(Planned { spec, built: Some(built) }),
            Err(e) => errors.push(format!("{} `{}`: {}", spec.kind.as_str(), spec.name, e)),
        }
    }
    if errors.is_empty() { Ok(planned) } else { Err(StartError(errors)) }
}

/// A pipeline whose components are built and whose ledger exists, ready to
/// [`Topology::run`].
pub struct Topology {
    planned: Vec<Planned>,
    readiness: Arc<Readiness>,
    ledger: Ledger,
    metrics: Registry,
    shared: Shared,
    admin: Option<AdminConfig>,
    base_dir: std::path::PathBuf,
    options: RunOptions,
}

impl Topology {
    /// Builds every component. All build errors are collected.
    pub fn build(pipeline: Pipeline, options: RunOptions) -> Result<Self, StartError> {
        let shared = Shared::default();
        let ledger = Ledger::new();
        for c in &pipeline.components {
            ledger.register(&c.name, c.kind);
        }
        let metrics = Registry::new();
        let planned = build_all(pipeline.components, &shared, &pipeline.base_dir, &metrics)?;
        Ok(Self {
            planned,
            readiness: Readiness::new(),
            ledger,
            metrics,
            shared,
            admin: pipeline.admin,
            base_dir: pipeline.base_dir,
            options,
        })
    }

    /// The pipeline's ledger (live: counters update as the pipeline runs).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Follows whether the pipeline takes traffic: `true` once it has
    /// started and every source that reports readiness is ready (a `netflow`
    /// source once its sockets are bound).
    pub fn readiness(&self) -> tokio::sync::watch::Receiver<bool> {
        self.readiness.subscribe()
    }

    /// Runs until every component has finished. `shutdown` starts a graceful
    /// stop; the run still returns only once everything in flight drained.
    pub async fn run(self, shutdown: Shutdown) -> Result<RunReport, StartError> {
        self.run_with_reloads(shutdown, None).await
    }

    /// Like [`Topology::run`], and each pipeline received on `reloads`
    /// replaces the running one in place (see the module docs). Reloads
    /// received once the pipeline is stopping are refused (logged).
    pub async fn run_with_reloads(
        self,
        shutdown: Shutdown,
        mut reloads: Option<mpsc::UnboundedReceiver<Pipeline>>,
    ) -> Result<RunReport, StartError> {
        let Topology { planned, readiness, ledger, metrics, shared, admin, base_dir, options } = self;
        let health: Health = Arc::new(Mutex::new(Vec::new()));
        let mut runner = Runner {
            readiness: readiness.clone(),
            ledger: ledger.clone(),
            metrics: metrics.clone(),
            shared,
            base_dir,
            options,
            live: HashMap::new(),
            order: Vec::new(),
            tasks: JoinSet::new(),
            instances: HashMap::new(),
            by_task: HashMap::new(),
            current: HashMap::new(),
            next_instance: 0,
            sources_stop: Shutdown::new(),
            health: health.clone(),
            failures: Vec::new(),
            ending: false,
            admin: None,
        };
        // Named outputs with readers get their own ledger entry before the
        // admin endpoint starts serving the ledger.
        runner.register_named(&planned);
        let drain_grace = admin.as_ref().map(|a| a.drain_grace.get()).unwrap_or_default();
        runner.admin = match admin {
            Some(a) => Some((
                a.listen,
                admin::serve(a.listen, runner.admin_state()).await.map_err(|e| {
                    StartError(vec![format!("admin endpoint cannot listen on {}: {e}", a.listen)])
                })?,
            )),
            None => None,
        };
        let all: HashSet<String> = planned.iter().map(|p| p.spec.name.clone()).collect();
        runner.start(planned, &all, &HashMap::new());
        readiness.started();

        let mut check = tokio::time::interval(std::time::Duration::from_secs(1));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut imbalance_logs = crate::metrics::LogLimit::default();
        let mut shutting_down = false;
        // The end of the drain grace, while it runs.
        let mut grace: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            tokio::select! {
                joined = runner.tasks.join_next_with_id(), if !runner.tasks.is_empty() => {
                    let Some(joined) = joined else { continue };
                    runner.finished(joined);
                }
                _ = shutdown.cancelled(), if !shutting_down => {
                    shutting_down = true;
                    runner.readiness.stopping();
                    if drain_grace.is_zero() {
                        info!("stopping sources; draining in-flight records to the sinks");
                        runner.sources_stop.cancel();
                    } else {
                        info!(
                            grace = %humantime::format_duration(drain_grace),
                            "not ready (draining): still receiving for admin.drain_grace, then stopping sources"
                        );
                        grace = Some(Box::pin(tokio::time::sleep(drain_grace)));
                    }
                }
                _ = async { grace.as_mut().expect("guarded").await }, if grace.is_some() => {
                    grace = None;
                    info!("drain grace over: stopping sources; draining in-flight records to the sinks");
                    runner.sources_stop.cancel();
                }
                p = async { reloads.as_mut().expect("guarded").recv().await }, if reloads.is_some() => {
                    match p {
                        Some(p) if !shutting_down && !runner.ending => runner.reload(p).await,
                        Some(_) => warn!("a reload arrived while the pipeline is stopping; it is not applied"),
                        None => reloads = None,
                    }
                }
                _ = check.tick() => {
                    // The books are checked continuously, not only at the end.
                    let off = runner.ledger.imbalances(false);
                    if !off.is_empty() && let Some(suppressed) = imbalance_logs.allow() {
                        for i in &off {
                            error!(component = %i.component, records = i.records, suppressed, "ledger imbalance while running: {}", i.message);
                        }
                    }
                }
            }
            if runner.tasks.is_empty() {
                break;
            }
        }
        if let Some((_, a)) = runner.admin.take() {
            a.abort();
        }
        let snapshot = ledger.snapshot();
        let imbalances = ledger.imbalances(true).into_iter().map(|i| i.message).collect();
        Ok(RunReport { ledger: snapshot, failures: runner.failures, imbalances })
    }
}

/// What the runner knows of a running component.
struct Live {
    kind: ComponentKind,
    /// Definition plus the named outputs read from it.
    identity: String,
    ledger: Arc<ComponentLedger>,
    /// Makes senders to the component's input (transforms and sinks) for
    /// producers a reload starts, without keeping the input open itself:
    /// the input ends when its producers are done.
    input: Option<WeakRowSender>,
    /// Output → its downstreams.
    ports: HashMap<OutputId, Arc<Targets>>,
    /// Stops a source.
    stop: Option<Shutdown>,
    handover: Option<Arc<Handover>>,
}

/// One spawned instance of a component.
struct Instance {
    name: String,
    kind: ComponentKind,
    handover: Option<Arc<Handover>>,
}

type Joined = (u64, Result<(), String>);

struct Runner {
    readiness: Arc<Readiness>,
    ledger: Ledger,
    metrics: Registry,
    shared: Shared,
    base_dir: std::path::PathBuf,
    options: RunOptions,
    live: HashMap<String, Live>,
    /// Current component names, in dependency order.
    order: Vec<String>,
    tasks: JoinSet<Joined>,
    instances: HashMap<u64, Instance>,
    by_task: HashMap<tokio::task::Id, u64>,
    /// Name → its current instance.
    current: HashMap<String, u64>,
    next_instance: u64,
    sources_stop: Shutdown,
    health: Health,
    failures: Vec<(String, String)>,
    /// Every current source has returned: the pipeline is draining to its
    /// end and takes no reload.
    ending: bool,
    admin: Option<(std::net::SocketAddr, tokio::task::JoinHandle<()>)>,
}

/// The named outputs some component reads, by producer: `a` → [`a.loss`].
fn read_ports(specs: &[&Component]) -> HashMap<String, Vec<OutputId>> {
    let mut out: HashMap<String, Vec<OutputId>> = HashMap::new();
    for s in specs {
        for i in &s.inputs {
            if i.port.is_some() {
                let v = out.entry(i.component.clone()).or_default();
                if !v.contains(i) {
                    v.push(i.clone());
                }
            }
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

fn references_of(spec: &Component) -> Vec<String> {
    match &spec.config {
        AnyConfig::Source(c) => c.references().into_iter().map(|r| r.target).collect(),
        AnyConfig::Transform(c) => c.references().into_iter().map(|r| r.target).collect(),
        AnyConfig::Sink(_) => Vec::new(),
    }
}

impl Runner {
    fn register_named(&self, planned: &[Planned]) {
        let specs: Vec<&Component> = planned.iter().map(|p| &p.spec).collect();
        for ports in read_ports(&specs).values() {
            for p in ports {
                self.ledger.register(&p.to_string(), ComponentKind::Source);
            }
        }
    }

    /// Starts the `fresh` components of `planned` (the whole new
    /// pipeline's definitions, in dependency order) and rewires every
    /// producer that stays to the pipeline `planned` describes.
    /// `predecessors` are the handovers of sources being replaced.
    fn start(
        &mut self,
        planned: Vec<Planned>,
        fresh: &HashSet<String>,
        predecessors: &HashMap<String, Arc<Handover>>,
    ) {
        let specs: Vec<&Component> = planned.iter().map(|p| &p.spec).collect();
        let reads = read_ports(&specs);
        let identity = |s: &Component| format!("{} reads={:?}", s.fingerprint, reads.get(&s.name));
        // Consumers of each output, in the new pipeline.
        let mut consumers: HashMap<OutputId, Vec<String>> = HashMap::new();
        for s in &specs {
            for i in &s.inputs {
                consumers.entry(i.clone()).or_default().push(s.name.clone());
            }
        }
        // Input channels of the fresh transforms and sinks; the strong
        // senders live only until the producers' lists hold theirs.
        let mut receivers: HashMap<String, RowReceiver> = HashMap::new();
        let mut strong = Vec::new();
        for p in &planned {
            let s = &p.spec;
            if !fresh.contains(&s.name) {
                continue;
            }
            let ledger = self.ledger.register(&s.name, s.kind);
            let input = if s.kind == ComponentKind::Source {
                None
            } else {
                let (tx, mut rx) = channel::channel(self.options.channel_rows);
                rx.set_owner(ledger.clone());
                receivers.insert(s.name.clone(), rx);
                let weak = tx.downgrade();
                strong.push(tx);
                Some(weak)
            };
            self.live.insert(
                s.name.clone(),
                Live {
                    kind: s.kind,
                    identity: identity(s),
                    ledger,
                    input,
                    ports: HashMap::new(),
                    stop: None,
                    handover: None,
                },
            );
        }
        // Every output of the new pipeline gets its downstreams: a fresh
        // producer a new list, a producer that stays its list replaced.
        for s in &specs {
            let mut ports = vec![OutputId::main(&s.name)];
            ports.extend(reads.get(&s.name).cloned().unwrap_or_default());
            for port in ports {
                let targets: Vec<Target> = consumers
                    .get(&port)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| {
                        let l = self.live.get(c)?;
                        Some(Target {
                            tx: l.input.as_ref()?.upgrade()?,
                            downstream: l.ledger.clone(),
                            edge: self.ledger.edge(&port.to_string(), c),
                        })
                    })
                    .collect();
                let Some(producer) = self.live.get_mut(&s.name) else { continue };
                match producer.ports.get(&port) {
                    Some(t) if !fresh.contains(&s.name) => t.replace(targets),
                    _ => {
                        producer.ports.insert(port, Targets::new(targets));
                    }
                }
            }
        }
        drop(strong);
        self.order = specs.iter().map(|s| s.name.clone()).collect();
        // Spawn the fresh ones.
        for p in planned {
            let Planned { spec, built } = p;
            let Some(built) = built.filter(|_| fresh.contains(&spec.name)) else { continue };
            let name = spec.name.clone();
            let iid = self.next_instance;
            self.next_instance += 1;
            let live = self.live.get_mut(&name).expect("registered above");
            let entry = live.ledger.clone();
            let role = if spec.kind == ComponentKind::Source { Role::Source } else { Role::Transform };
            let main = Output::new(live.ports[&OutputId::main(&name)].clone(), entry.clone(), role);
            let named: Vec<(String, Output)> = live
                .ports
                .iter()
                .filter_map(|(port, t)| {
                    let short = port.port.clone()?;
                    let l = self.ledger.register(&port.to_string(), ComponentKind::Source);
                    Some((short, Output::new(t.clone(), l, Role::Named)))
                })
                .collect();
            let n: Arc<str> = name.as_str().into();
            let mut handover = None;
            let task = match built {
                Built::Source(src) => {
                    if matches!(&spec.config, AnyConfig::Source(c) if c.reports_ready()) {
                        self.readiness.expect(&name);
                    }
                    let stop = self.sources_stop.child_token();
                    let h = Arc::new(Handover::default());
                    live.stop = Some(stop.clone());
                    live.handover = Some(h.clone());
                    handover = Some(h.clone());
                    let cx = SourceContext {
                        name: n,
                        out: main,
                        named: NamedOutputs::new(named),
                        shutdown: stop,
                        events: Events::new(entry),
                        metrics: self.metrics.component(&name),
                        ready: Ready::new(&name, self.readiness.clone()),
                        handover: h,
                        predecessor: predecessors.get(&name).cloned(),
                    };
                    self.tasks.spawn(async move { (iid, src.run(cx).await.map_err(|e| e.message)) })
                }
                Built::Transform(t) => {
                    let rx = receivers.remove(&name).expect("every transform has an input channel");
                    self.tasks.spawn(async move { (iid, run_transform(t, rx, main, named, entry).await) })
                }
                Built::Sink(s) => {
                    let rx = receivers.remove(&name).expect("every sink has an input channel");
                    let metrics = self.metrics.component(&name);
                    let (input, buffer) = match &spec.disk_buffer {
                        None => (SinkInput::new(rx, entry.clone()), None),
                        Some(cfg) => {
                            let (tx, brx) = tokio::sync::mpsc::channel(2);
                            let dir = self.base_dir.join(&cfg.dir);
                            let task = crate::disk_buffer::run(
                                cfg.clone(),
                                dir,
                                n.clone(),
                                rx,
                                tx,
                                entry.clone(),
                                metrics.clone(),
                            );
                            (SinkInput::buffered(brx, entry.clone()), Some(tokio::spawn(task)))
                        }
                    };
                    let cx = SinkContext { name: n, events: Events::new(entry), metrics };
                    self.tasks.spawn(async move {
                        let r = s.run(input, cx).await.map_err(|e| e.message);
                        // The buffer ends once the sink has settled what it read.
                        let b = match buffer {
                            Some(t) => t.await.map_err(|e| e.to_string()).and_then(|r| r),
                            None => Ok(()),
                        };
                        (iid, r.and(b))
                    })
                }
            };
            self.by_task.insert(task.id(), iid);
            self.instances.insert(iid, Instance { name: name.clone(), kind: spec.kind, handover });
            self.current.insert(name, iid);
        }
        let states: Vec<(String, ComponentState)> =
            self.order.iter().map(|n| (n.clone(), ComponentState::Running)).collect();
        if let Ok(mut h) = self.health.lock() {
            let old = std::mem::replace(&mut *h, states);
            // Components that stay keep their state.
            for (n, st) in old {
                if !fresh.contains(&n)
                    && let Some(slot) = h.iter_mut().find(|(m, _)| *m == n)
                {
                    slot.1 = st;
                }
            }
        }
    }

    /// An instance returned.
    fn finished(&mut self, joined: Result<(tokio::task::Id, Joined), tokio::task::JoinError>) {
        let (iid, result) = match joined {
            Ok((tid, (iid, r))) => {
                self.by_task.remove(&tid);
                (iid, r)
            }
            Err(e) => {
                let iid = self.by_task.remove(&e.id()).unwrap_or(u64::MAX);
                (iid, Err(if e.is_panic() { "panicked".to_string() } else { e.to_string() }))
            }
        };
        let Some(inst) = self.instances.remove(&iid) else { return };
        if let Some(h) = &inst.handover {
            h.finish();
        }
        let is_current = self.current.get(&inst.name) == Some(&iid);
        if is_current && inst.kind == ComponentKind::Source {
            self.readiness.forget(&inst.name);
        }
        if let Err(e) = &result {
            error!(component = %inst.name, kind = inst.kind.as_str(), error = %e, "component failed; stopping the pipeline");
            self.failures.push((inst.name.clone(), e.clone()));
            self.sources_stop.cancel();
        }
        if is_current {
            self.current.remove(&inst.name);
            // Its downstream lists hold senders: a finished producer must
            // let go of them, or its consumers' inputs would never end.
            if let Some(l) = self.live.get(&inst.name) {
                for t in l.ports.values() {
                    t.replace(Vec::new());
                }
            }
            if let Ok(mut h) = self.health.lock()
                && let Some(slot) = h.iter_mut().find(|(n, _)| *n == inst.name)
            {
                slot.1 = if result.is_ok() { ComponentState::Finished } else { ComponentState::Failed };
            }
        }
        // Once every source has returned the pipeline drains to its end.
        if !self.current.keys().any(|n| self.live.get(n).is_some_and(|l| l.kind == ComponentKind::Source)) {
            self.ending = true;
        }
    }

    /// Applies a new pipeline (see the module docs).
    async fn reload(&mut self, pipeline: Pipeline) {
        let new_specs = &pipeline.components;
        let specs: Vec<&Component> = new_specs.iter().collect();
        let reads = read_ports(&specs);
        let identity = |s: &Component| format!("{} reads={:?}", s.fingerprint, reads.get(&s.name));
        // A name may not change kind: its ledger entry would change meaning.
        let kind_changes: Vec<String> = new_specs
            .iter()
            .filter(|s| self.live.get(&s.name).is_some_and(|l| l.kind != s.kind))
            .map(|s| format!("`{}` would become a {}", s.name, s.kind.as_str()))
            .collect();
        if !kind_changes.is_empty() {
            error!(
                changes = %kind_changes.join(", "),
                "reload refused: a component cannot change kind under the same name (rename it); the running pipeline continues"
            );
            return;
        }
        // Changed: new, or defined differently, or referencing something
        // that changes or goes (it read that component's state).
        let new_names: HashSet<&str> = new_specs.iter().map(|s| s.name.as_str()).collect();
        let mut changed: HashSet<String> = new_specs
            .iter()
            .filter(|s| self.live.get(&s.name).is_none_or(|l| l.identity != identity(s)))
            .map(|s| s.name.clone())
            .collect();
        let removed: Vec<String> =
            self.live.keys().filter(|n| !new_names.contains(n.as_str())).cloned().collect();
        loop {
            let more: Vec<String> = new_specs
                .iter()
                .filter(|s| !changed.contains(&s.name))
                .filter(|s| references_of(s).iter().any(|r| changed.contains(r) || removed.contains(r)))
                .map(|s| s.name.clone())
                .collect();
            if more.is_empty() {
                break;
            }
            changed.extend(more);
        }
        if changed.is_empty() && removed.is_empty() && self.admin_unchanged(&pipeline) {
            info!("reload: the pipeline is unchanged");
            return;
        }
        // Build what is new into a copy of the shared state, so that a
        // failed reload leaves the running pipeline's state as it was.
        let shared: Shared = Arc::new(Mutex::new(self.shared.lock().map(|m| m.clone()).unwrap_or_default()));
        let mut keep_specs: Vec<Component> = Vec::new();
        let Pipeline { components, admin, base_dir } = pipeline;
        let mut build = Vec::new();
        let mut order = Vec::new();
        for c in components {
            order.push((c.name.clone(), changed.contains(&c.name)));
            if changed.contains(&c.name) { build.push(c) } else { keep_specs.push(c) }
        }
        let built = match build_all(build, &shared, &base_dir, &self.metrics) {
            Ok(b) => b,
            Err(e) => {
                for m in &e.0 {
                    error!(error = %m, "reload refused: a component cannot be built; the running pipeline continues");
                }
                return;
            }
        };
        // Into the same map, which the admin endpoint reads.
        let fresh = shared.lock().map(|m| m.clone()).unwrap_or_default();
        if let Ok(mut m) = self.shared.lock() {
            *m = fresh;
        }
        self.base_dir = base_dir;
        let replaced = changed.iter().filter(|n| self.live.contains_key(*n)).count();
        // Retire the changed and removed instances.
        let mut predecessors = HashMap::new();
        for name in changed.iter().chain(&removed) {
            let Some(old) = self.live.remove(name) else { continue };
            if let Some(h) = &old.handover
                && changed.contains(name)
            {
                h.mark_replacing();
                predecessors.insert(name.clone(), h.clone());
            }
            if let Some(stop) = &old.stop {
                stop.cancel();
            }
            self.readiness.forget(name);
            // Dropping `old` drops our sender to its input and its ports'
            // handles: once its upstreams are rewired below (or stop), its
            // input ends and it drains.
            self.current.remove(name);
        }
        // The new pipeline, in dependency order, with the fresh instances.
        let mut fresh_by_name: HashMap<String, Planned> =
            built.into_iter().map(|p| (p.spec.name.clone(), p)).collect();
        let mut kept_by_name: HashMap<String, Component> =
            keep_specs.into_iter().map(|c| (c.name.clone(), c)).collect();
        let mut planned = Vec::new();
        for (name, is_changed) in &order {
            if *is_changed {
                if let Some(p) = fresh_by_name.remove(name) {
                    planned.push(p);
                }
            } else if let Some(spec) = kept_by_name.remove(name) {
                planned.push(Planned { spec, built: None });
            }
        }
        let fresh: HashSet<String> = changed.clone();
        // Named outputs newly read get their ledger entries.
        self.register_named(&planned);
        self.start(planned, &fresh, &predecessors);
        info!(
            unchanged = self.live.len() - fresh.len(),
            replaced,
            added = fresh.len() - replaced,
            removed = removed.len(),
            "pipeline reloaded: replaced and removed components drain, their successors run, the others never stopped"
        );
        if !self.admin_unchanged_addr(admin.as_ref()) {
            self.restart_admin(admin).await;
        }
    }

    fn admin_unchanged(&self, p: &Pipeline) -> bool {
        self.admin_unchanged_addr(p.admin.as_ref())
    }

    fn admin_state(&self) -> admin::AdminState {
        admin::AdminState {
            ledger: self.ledger.clone(),
            health: self.health.clone(),
            metrics: self.metrics.clone(),
            readiness: self.readiness.clone(),
            shared: self.shared.clone(),
            rates: Default::default(),
        }
    }

    fn admin_unchanged_addr(&self, a: Option<&AdminConfig>) -> bool {
        self.admin.as_ref().map(|(addr, _)| *addr) == a.map(|a| a.listen)
    }

    async fn restart_admin(&mut self, admin: Option<AdminConfig>) {
        if let Some((_, task)) = self.admin.take() {
            task.abort();
        }
        if let Some(a) = admin {
            match admin::serve(a.listen, self.admin_state()).await {
                Ok(task) => self.admin = Some((a.listen, task)),
                Err(e) => {
                    error!(listen = %a.listen, error = %e, "reload: the admin endpoint cannot listen there")
                }
            }
        }
    }
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
                    emitter.dropped(
                        e.reason,
                        rows,
                        &format_args!("the transform failed on a batch: {}", e.message),
                    );
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

/// Sends what a transform pushed to its named outputs (each counts the
/// records it takes in; the transform counted them out).
async fn send_named(emitter: &mut Emitter, named: &mut [(String, Output)]) {
    let batches: Vec<(&'static str, crate::Batch)> = emitter.drain_named().collect();
    for (name, b) in batches {
        if let Some((_, o)) = named.iter_mut().find(|(n, _)| n == name) {
            let _ = o.send(b).await;
        }
    }
}

#[cfg(test)]
mod tests {
    //! Test components, registered only in this crate's tests: a source of
    //! one batch, and a sink that reports more than it received.

    use std::io::{Read, Write};

    use arrow::array::UInt32Array;
    use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use serde::Deserialize;

    use super::*;
    use crate::component::{ComponentError, Sink, Source};
    use crate::registry::{BuildError, SinkConfig, SourceConfig};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("x", DataType::UInt32, false)]))
    }

    #[derive(Debug, Deserialize)]
    struct OneBatch {}

    impl SourceConfig for OneBatch {
        fn output_schema(&self) -> SchemaRef {
            schema()
        }
        fn build(&self, _: &BuildContext) -> Result<Box<dyn Source>, BuildError> {
            Ok(Box::new(OneBatchSource))
        }
    }

    struct OneBatchSource;

    #[async_trait::async_trait]
    impl Source for OneBatchSource {
        async fn run(self: Box<Self>, mut cx: SourceContext) -> Result<(), ComponentError> {
            let data = arrow::array::RecordBatch::try_new(
                schema(),
                vec![Arc::new(UInt32Array::from(vec![1, 2, 3]))],
            )
            .expect("valid");
            let b = crate::Batch::new(
                data,
                crate::BatchMeta::new(cx.name.clone(), 0, 0),
                crate::ack::Acks::none(),
            );
            let _ = cx.out.send(b).await;
            cx.shutdown.cancelled().await;
            Ok(())
        }
    }

    #[derive(Debug, Deserialize)]
    struct Leaky {}

    impl SinkConfig for Leaky {
        fn build(&self, _: &BuildContext, _: &SchemaRef) -> Result<Box<dyn Sink>, BuildError> {
            Ok(Box::new(LeakySink))
        }
    }

    struct LeakySink;

    #[async_trait::async_trait]
    impl Sink for LeakySink {
        async fn run(self: Box<Self>, mut input: SinkInput, cx: SinkContext) -> Result<(), ComponentError> {
            while let Some(b) = input.recv().await {
                // A bug: twice what came in is reported durable.
                cx.events.delivered(2 * b.rows() as u64);
                b.acks.settle(crate::ack::AckStatus::Delivered);
            }
            Ok(())
        }
    }

    crate::register_source! { config: OneBatch, name: "test_one_batch", description: "test", example: "type: test_one_batch\n" }
    crate::register_sink! { config: Leaky, name: "test_leaky", description: "test", example: "type: test_leaky\n" }

    fn metrics(addr: std::net::SocketAddr) -> String {
        let Ok(mut s) = std::net::TcpStream::connect(addr) else { return String::new() };
        let _ = write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_imbalance_shows_on_metrics_while_running_and_in_the_report() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let yaml = format!(
            "sources:\n  one: {{ type: test_one_batch }}\nsinks:\n  leaky: {{ type: test_leaky, inputs: [one] }}\nadmin: {{ listen: \"{addr}\" }}\n"
        );
        let p = crate::config::load_str(&yaml, &|_| None, std::path::Path::new("")).expect("valid");
        let t = Topology::build(p, RunOptions::default()).expect("builds");
        let shutdown = Shutdown::new();
        let run = tokio::spawn(t.run(shutdown.clone()));
        let series = "spillway_ledger_imbalance_records{component=\"leaky\",kind=\"sink\"} 3";
        let mut seen = String::new();
        for _ in 0..100 {
            seen = tokio::task::spawn_blocking(move || metrics(addr)).await.unwrap();
            if seen.contains(series) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(seen.contains(series), "while running:\n{seen}");
        shutdown.cancel();
        let report = run.await.unwrap().unwrap();
        assert!(report.imbalances.iter().any(|i| i.contains("`leaky`")), "{:?}", report.imbalances);
    }
}
