//! The running `snmp` source: targets on a due-time heap
//! ([`crate::schedule`]), polls on tokio tasks (at most `concurrency`),
//! deltas per interface, batches to the outputs. `Poller` holds the run
//! loop's state.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow::array::{
    ArrayRef, BooleanArray, FixedSizeBinaryArray, Float64Array, Int64Array, RecordBatch, StringArray,
    StringBuilder, TimestampNanosecondArray, UInt8Array, UInt32Array, UInt64Array,
};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use snmp2::Oid;
use spillway_core::component::{ComponentError, Output, Source, SourceContext};
use spillway_core::exporters::SeenExporters;
use spillway_core::metrics::{Counter, Gauge};
use spillway_core::registry::{BuildContext, BuildError, SourceConfig};
use spillway_core::schema::Addr;
use spillway_core::{Batch, BatchMeta, ack::Acks};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::counters::{Elapsed, delta, elapsed};
use crate::schedule::Schedule;
use crate::targets::{CredentialConfig, Target, read_file};
use crate::walk::{self, PollError, PollResult, Read, RequestOptions};
use crate::{SnmpConfig, health_schema, parse_oid};

/// Standard columns walked on every target, in this order.
const IF_DESCR: usize = 0;
const IF_TYPE: usize = 1;
const IF_SPEED: usize = 2;
const IF_ADMIN: usize = 3;
const IF_OPER: usize = 4;
const IF_IN_OCTETS: usize = 5;
const IF_IN_DISCARDS: usize = 6;
const IF_IN_ERRORS: usize = 7;
const IF_OUT_OCTETS: usize = 8;
const IF_OUT_DISCARDS: usize = 9;
const IF_OUT_ERRORS: usize = 10;
const IF_NAME: usize = 11;
const IF_HC_IN: usize = 12;
const IF_HC_OUT: usize = 13;
const IF_HIGH_SPEED: usize = 14;
const IF_ALIAS: usize = 15;
const STANDARD: [&[u64]; 16] = [
    &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2],
    &[1, 3, 6, 1, 2, 1, 2, 2, 1, 3],
    &[1, 3, 6, 1, 2, 1, 2, 2, 1, 5],
    &[1, 3, 6, 1, 2, 1, 2, 2, 1, 7],
    &[1, 3, 6, 1, 2, 1, 2, 2, 1, 8],
    &[1, 3, 6, 1, 2, 1, 2, 2, 1, 10],
    &[1, 3, 6, 1, 2, 1, 2, 2, 1, 13],
    &[1, 3, 6, 1, 2, 1, 2, 2, 1, 14],
    &[1, 3, 6, 1, 2, 1, 2, 2, 1, 16],
    &[1, 3, 6, 1, 2, 1, 2, 2, 1, 19],
    &[1, 3, 6, 1, 2, 1, 2, 2, 1, 20],
    &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1],
    &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6],
    &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 10],
    &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 15],
    &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 18],
];

/// The six counters kept for deltas: in/out octets, errors, discards.
const COUNTERS: usize = 6;

#[derive(Clone, Copy)]
enum ExtraKind {
    U64,
    I64,
    Text,
}

struct Discovery {
    seen: Arc<SeenExporters>,
    port: u16,
    rules: Vec<(ipnet::IpNet, crate::DiscoverRule)>,
}

pub(crate) fn build(cfg: &SnmpConfig, cx: &BuildContext) -> Result<Box<dyn Source>, BuildError> {
    let base = cfg.base_credentials();
    let inline = cfg
        .targets
        .iter()
        .map(|t| t.resolve(cfg.port, &base))
        .collect::<Result<Vec<_>, _>>()
        .map_err(BuildError)?;
    let file = cfg.targets_file.as_ref().map(|p| cx.resolve(p));
    if let Some(f) = &file {
        // A file that is missing or wrong at start is a config error; later
        // the last good version stays in use.
        let t = read_file(f).map_err(BuildError)?;
        for t in &t {
            t.resolve(cfg.port, &base).map_err(|e| BuildError(format!("{}: {e}", f.display())))?;
        }
    }
    let discovery = match &cfg.discover {
        None => None,
        Some(d) => {
            let seen = cx.lookup::<SeenExporters>(&d.from).ok_or_else(|| {
                BuildError(format!(
                    "`{}` does not publish the exporters it sees: discovery works from a `netflow` source",
                    d.from
                ))
            })?;
            let rules = d
                .rules
                .iter()
                .map(|r| {
                    r.prefix
                        .parse::<ipnet::IpNet>()
                        .map(|p| (p, r.clone()))
                        .map_err(|e| BuildError(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Some(Discovery { seen, port: d.port.unwrap_or(cfg.port), rules })
        }
    };
    let mut columns: Vec<Oid<'static>> = STANDARD.iter().map(|o| Oid::from(o).expect("valid OID")).collect();
    let mut extras = Vec::new();
    for c in &cfg.columns {
        let oid = parse_oid(&c.oid).map_err(BuildError)?;
        columns.push(Oid::from(&oid).map_err(|_| BuildError(format!("`{}` is not a valid OID", c.oid)))?);
        extras.push(match c.kind.as_str() {
            "i64" => ExtraKind::I64,
            "string" => ExtraKind::Text,
            _ => ExtraKind::U64,
        });
    }
    // The admin endpoint's exporter table shows each router's poll status.
    let polled = Arc::new(spillway_core::exporters::PolledTargets::default());
    cx.publish(polled.clone());
    Ok(Box::new(Snmp {
        polled,
        cfg: cfg.clone(),
        base,
        inline,
        file,
        discovery,
        columns: Arc::new(columns),
        extras,
        schema: cfg.output_schema(),
        metrics: cx.metrics.clone(),
    }))
}

struct Snmp {
    polled: Arc<spillway_core::exporters::PolledTargets>,
    cfg: SnmpConfig,
    base: CredentialConfig,
    inline: Vec<Target>,
    file: Option<PathBuf>,
    discovery: Option<Discovery>,
    columns: Arc<Vec<Oid<'static>>>,
    extras: Vec<ExtraKind>,
    schema: SchemaRef,
    metrics: spillway_core::metrics::Metrics,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Inline,
    File,
    Discovered,
}

/// Counters of one interface at the previous poll: value and width.
type Prev = [Option<(u64, u32)>; COUNTERS];

struct TargetState {
    target: Target,
    origin: Origin,
    next_due: Instant,
    /// The schedule entry that is this target's, while it waits for its
    /// next poll (`None` while polling, or once its rounds are done).
    slot: Option<u64>,
    polls: u32,
    failures: u32,
    last_error: Option<&'static str>,
    last_success_ns: Option<i64>,
    prev_start: Option<Instant>,
    prev_uptime: Option<u32>,
    prev: HashMap<u32, Prev>,
    m_failures: Gauge,
    m_last_success: Gauge,
    /// The SNMPv3 session of the last good poll (see `walk::poll`).
    session: Option<walk::AsyncSession>,
}

struct PollMetrics {
    ok: Counter,
    timeout: Counter,
    auth: Counter,
    unreachable: Counter,
    protocol: Counter,
    limit: Counter,
    requests: Counter,
    targets: Gauge,
    reload_errors: Counter,
}

impl PollMetrics {
    fn new(m: &spillway_core::metrics::Metrics) -> Self {
        let c = |result: &str| {
            m.counter_with(
                "spillway_snmp_polls_total",
                "Polls by result (ok, timeout, auth, unreachable, protocol, limit).",
                &[("result", result)],
            )
        };
        Self {
            ok: c("ok"),
            timeout: c("timeout"),
            auth: c("auth"),
            unreachable: c("unreachable"),
            protocol: c("protocol"),
            limit: c("limit"),
            requests: m.counter("spillway_snmp_requests_total", "SNMP requests sent, retries included."),
            targets: m.gauge("spillway_snmp_targets", "Targets being polled."),
            reload_errors: m.counter(
                "spillway_snmp_targets_file_errors_total",
                "Reloads of the targets file that failed (the previous targets stay).",
            ),
        }
    }

    fn failed(&self, e: &PollError) -> &Counter {
        match e {
            PollError::Timeout(_) => &self.timeout,
            PollError::Auth(_) => &self.auth,
            PollError::Unreachable(_) => &self.unreachable,
            PollError::Protocol(_) => &self.protocol,
            PollError::Limit(_) => &self.limit,
        }
    }
}

struct Done {
    name: String,
    started: Instant,
    started_ns: i64,
    requests: u32,
    session: Option<walk::AsyncSession>,
    result: Result<PollResult, PollError>,
}

/// SNMPv3 sessions kept between polls, and how many may be.
struct Sessions {
    held: usize,
    budget: usize,
}

/// How many SNMPv3 sessions to keep at most (each holds a socket): half
/// the open-files limit (the binary raises it to the hard limit at start),
/// leaving the rest to everything else.
fn session_budget() -> usize {
    match rlimit::Resource::NOFILE.get() {
        Ok((soft, _)) => (soft / 2).min(1 << 20) as usize,
        Err(_) => 256,
    }
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

impl Snmp {
    fn new_state(
        &self,
        target: Target,
        origin: Origin,
        rng: &mut spillway_core::rand::SplitMix64,
    ) -> TargetState {
        let spread = self.cfg.interval.get().mul_f64(self.cfg.jitter);
        let offset = if spread.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(rng.next_u64() % spread.as_nanos().max(1) as u64)
        };
        // Per-target series go with the target: dropping its state (a
        // target removed from the file) removes them from /metrics.
        let labels = [("target", target.name.as_str())];
        TargetState {
            m_failures: self.metrics.gauge_with(
                "spillway_snmp_target_consecutive_failures",
                "Polls of the target that failed in a row.",
                &labels,
            ),
            m_last_success: self.metrics.gauge_with(
                "spillway_snmp_target_last_success_seconds",
                "Unix time of the target's last successful poll.",
                &labels,
            ),
            target,
            origin,
            next_due: Instant::now() + offset,
            slot: None,
            polls: 0,
            failures: 0,
            last_error: None,
            last_success_ns: None,
            prev_start: None,
            prev_uptime: None,
            prev: HashMap::new(),
            session: None,
        }
    }

    fn load_file(&self, path: &std::path::Path) -> Result<Vec<Target>, String> {
        read_file(path)?.iter().map(|t| t.resolve(self.cfg.port, &self.base)).collect()
    }

    fn discovered(&self, d: &Discovery) -> Vec<Target> {
        let mut out = Vec::new();
        for exporter in d.seen.snapshot() {
            let rule = d.rules.iter().find(|(p, _)| p.contains(&exporter)).map(|(_, r)| r);
            if rule.is_some_and(|r| r.skip) {
                continue;
            }
            let own = rule.map(crate::DiscoverRule::credentials).unwrap_or_default();
            let Ok(credentials) = own.resolve(&self.base) else { continue }; // validated
            let agent_ip = rule.and_then(|r| r.agent).unwrap_or(exporter);
            let port = rule.and_then(|r| r.port).unwrap_or(d.port);
            out.push(Target {
                name: exporter.to_string(),
                agent: std::net::SocketAddr::new(agent_ip, port),
                exporter,
                credentials,
            });
        }
        out
    }
}

/// The run loop's state: the targets, their schedule, the polls in flight
/// and the rows not yet sent.
struct Poller<'a> {
    snmp: &'a Snmp,
    component: Arc<str>,
    states: HashMap<String, TargetState>,
    schedule: Schedule,
    tasks: JoinSet<Done>,
    opts: RequestOptions,
    m: PollMetrics,
    rows: Rows,
    health: HealthRows,
    /// SNMPv3 sessions kept between polls, at most `session_budget`.
    sessions: Sessions,
    rng: spillway_core::rand::SplitMix64,
    req_id: i32,
}

impl<'a> Poller<'a> {
    fn new(snmp: &'a Snmp, component: Arc<str>) -> Self {
        let cfg = &snmp.cfg;
        let mut rng = spillway_core::rand::SplitMix64::new(now_ns() as u64);
        let req_id = (rng.next_u64() & 0x3fff_ffff) as i32;
        Self {
            snmp,
            component,
            states: HashMap::new(),
            schedule: Schedule::default(),
            tasks: JoinSet::new(),
            opts: RequestOptions {
                timeout: cfg.timeout.get(),
                retries: cfg.retries,
                backoff: cfg.backoff.get(),
                max_repetitions: cfg.max_repetitions,
                max_interfaces: cfg.max_interfaces,
                max_bytes: cfg.max_poll_bytes.get().min(usize::MAX as u64) as usize,
                poll_timeout: cfg.poll_timeout.get(),
            },
            m: PollMetrics::new(&snmp.metrics),
            rows: Rows::new(snmp.extras.clone()),
            health: HealthRows::default(),
            sessions: Sessions { held: 0, budget: session_budget() },
            rng,
            req_id,
        }
    }

    /// Puts `name` in the schedule at its `next_due`, unless it has done
    /// its rounds.
    fn enqueue(&mut self, name: &str) {
        let rounds = self.snmp.cfg.rounds;
        let Some(s) = self.states.get_mut(name) else { return };
        s.slot = rounds.is_none_or(|r| s.polls < r).then(|| self.schedule.add(name, s.next_due));
    }

    fn valid(states: &HashMap<String, TargetState>) -> impl Fn(&str, u64) -> bool + '_ {
        |name, slot| states.get(name).is_some_and(|s| s.slot == Some(slot))
    }

    /// Replaces the targets of one origin, keeping the state (counters,
    /// schedule) of those that did not change.
    fn replace(&mut self, origin: Origin, wanted: Vec<Target>) {
        let names: BTreeSet<String> = wanted.iter().map(|t| t.name.clone()).collect();
        self.states.retain(|n, s| s.origin != origin || names.contains(n));
        for t in wanted {
            match self.states.get(&t.name) {
                Some(s) if s.origin == origin && s.target == t => {}
                Some(s) if s.origin != origin => {
                    tracing::warn!(component = %self.component, target = %t.name, "a target of this name is already defined elsewhere; keeping the first");
                }
                _ => {
                    let s = self.snmp.new_state(t.clone(), origin, &mut self.rng);
                    self.states.insert(t.name.clone(), s);
                    self.enqueue(&t.name);
                }
            }
        }
        // Removed targets took their sessions with them.
        self.sessions.held = self.states.values().filter(|s| s.session.is_some()).count();
        let live = self.states.values().filter(|s| s.slot.is_some()).count();
        self.schedule.compact(live, Self::valid(&self.states));
        self.m.targets.set(self.states.len() as u64);
    }

    /// Starts what is due, earliest first, up to the concurrency.
    fn start_due(&mut self) {
        let now = Instant::now();
        while self.tasks.len() < self.snmp.cfg.concurrency {
            let Some(name) = self.schedule.pop_due(now, Self::valid(&self.states)) else { break };
            let s = self.states.get_mut(&name).expect("valid entries name a target");
            s.slot = None;
            let target = s.target.clone();
            let session = s.session.take();
            self.sessions.held -= session.is_some() as usize;
            let columns = self.snmp.columns.clone();
            self.req_id = self.req_id.wrapping_add(1000) & 0x3fff_ffff;
            let (id, opts) = (self.req_id, self.opts);
            self.tasks.spawn(async move {
                let started = Instant::now();
                let started_ns = now_ns();
                // Boxed: the session's buffers make a large future.
                let (requests, session, result) =
                    Box::pin(walk::poll(target.agent, &target.credentials, opts, &columns, id, session))
                        .await;
                Done { name: target.name, started, started_ns, requests, session, result }
            });
        }
    }

    /// When the next poll is due.
    fn next_due(&mut self) -> Option<Instant> {
        self.schedule.next(Self::valid(&self.states))
    }

    /// Every target has done its `rounds`.
    fn finished(&self) -> bool {
        self.snmp.cfg.rounds.is_some_and(|r| self.states.values().all(|s| s.polls >= r))
    }

    /// Settles one poll: schedule, health, metrics, rows. Returns the rows
    /// added.
    fn finish(&mut self, done: Done) -> usize {
        let Some(s) = self.states.get_mut(&done.name) else { return 0 }; // removed meanwhile
        let (component, m, cfg) = (&*self.component, &self.m, &self.snmp.cfg);
        s.polls += 1;
        s.session = done.session.filter(|_| self.sessions.held < self.sessions.budget);
        self.sessions.held += s.session.is_some() as usize;
        let interval = cfg.interval.get();
        let duration = done.started.elapsed();
        m.requests.add(done.requests as u64);
        let requests = done.requests;
        let (ok, interfaces, error) = match &done.result {
            Ok(p) => {
                m.ok.add(1);
                if s.failures > 0 {
                    tracing::info!(component, target = %s.target.name, after_failures = s.failures, "target answers again");
                }
                s.failures = 0;
                s.last_error = None;
                s.last_success_ns = Some(done.started_ns);
                s.m_last_success.set((done.started_ns / 1_000_000_000).max(0) as u64);
                // Fixed-rate schedule: the next slot after now.
                let mut next = s.next_due + interval;
                while next <= Instant::now() {
                    next += interval;
                }
                s.next_due = next;
                (true, interface_count(p), None)
            }
            Err(e) => {
                m.failed(e).add(1);
                s.failures += 1;
                if s.failures == 1 || s.last_error != Some(e.kind()) {
                    tracing::warn!(component, target = %s.target.name, agent = %s.target.agent, kind = e.kind(), error = %e, "SNMP poll failed");
                }
                s.last_error = Some(e.kind());
                // 1, 2, 4 … intervals apart, capped.
                let factor = 1u32 << (s.failures - 1).min(16);
                let wait = interval.saturating_mul(factor).min(cfg.max_backoff.get().max(interval));
                s.next_due = Instant::now() + wait;
                (false, 0, Some(e))
            }
        };
        s.m_failures.set(s.failures as u64);
        self.snmp.polled.set(
            s.target.exporter,
            spillway_core::exporters::PollStatus {
                target: s.target.name.clone(),
                sys_name: done.result.as_ref().ok().and_then(|p| p.sys_name.clone()),
                ok,
                error_kind: error.map(|e| e.kind()),
                consecutive_failures: s.failures,
                last_poll_ms: done.started_ns / 1_000_000,
                last_success_ms: s.last_success_ns.map(|n| n / 1_000_000),
            },
        );
        let exporter = Addr::from(s.target.exporter);
        self.health.push(HealthRow {
            time: done.started_ns,
            exporter,
            target: s.target.name.clone(),
            agent: s.target.agent.to_string(),
            ok,
            error_kind: error.map(|e| e.kind()),
            error: error.map(|e| e.to_string()),
            duration_ms: duration.as_secs_f64() * 1000.0,
            requests,
            interfaces: interfaces as u32,
            consecutive_failures: s.failures,
            last_success: s.last_success_ns,
        });
        let added = match &done.result {
            Ok(p) => append(s, p, done.started, done.started_ns, exporter, &mut self.rows),
            Err(_) => 0,
        };
        self.enqueue(&done.name);
        added
    }

    /// Sends the rows and health rows gathered so far.
    async fn flush(
        &mut self,
        out: &mut Output,
        health_out: Option<&mut Output>,
    ) -> Result<(), ComponentError> {
        let name = &self.component;
        if self.rows.len() > 0 {
            let time = &self.rows.time;
            let (lo, hi) = (time.iter().copied().min().unwrap_or(0), time.iter().copied().max().unwrap_or(0));
            let data = self.rows.take(&self.snmp.schema).map_err(|e| ComponentError::new(e.to_string()))?;
            out.send(Batch::new(data, BatchMeta::new(name.clone(), lo, hi), Acks::none()))
                .await
                .map_err(|_| ComponentError::new("every downstream component has failed"))?;
        }
        if self.health.len() > 0 {
            let data = self.health.take().map_err(|e| ComponentError::new(e.to_string()))?;
            if let Some(o) = health_out {
                o.send(Batch::new(data, BatchMeta::new(name.clone(), 0, 0), Acks::none()))
                    .await
                    .map_err(|_| ComponentError::new("every reader of the health output has failed"))?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Source for Snmp {
    async fn run(self: Box<Self>, cx: SourceContext) -> Result<(), ComponentError> {
        let SourceContext { name, mut out, mut named, shutdown, .. } = cx;
        let mut health_out = named.take("health");
        let mut p = Poller::new(&self, name.clone());
        p.replace(Origin::Inline, self.inline.clone());
        let mut file_mtime = None;
        if let Some(f) = &self.file {
            file_mtime = std::fs::metadata(f).and_then(|m| m.modified()).ok();
            let t = self.load_file(f).map_err(ComponentError::new)?;
            p.replace(Origin::File, t);
        }
        let mut seen_count = 0;
        if let Some(d) = &self.discovery {
            seen_count = d.seen.len();
            p.replace(Origin::Discovered, self.discovered(d));
        }
        tracing::info!(component = %name, targets = p.states.len(), interval = ?self.cfg.interval.get(), "SNMP polling starts");

        let mut first_unsent: Option<Instant> = None;
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopping = false;
        loop {
            if !stopping {
                p.start_due();
            }
            let finished = p.finished();
            if (stopping || finished) && p.tasks.is_empty() {
                break;
            }
            let wake = match (p.next_due(), first_unsent) {
                (Some(a), Some(b)) => a.min(b + Duration::from_secs(1)),
                (Some(a), None) => a,
                (None, Some(b)) => b + Duration::from_secs(1),
                (None, None) => Instant::now() + Duration::from_secs(3600),
            };
            tokio::select! {
                Some(done) = p.tasks.join_next(), if !p.tasks.is_empty() => {
                    let Ok(done) = done else { continue }; // aborted at shutdown
                    let n = p.finish(done);
                    if first_unsent.is_none() && (n > 0 || p.health.len() > 0) {
                        first_unsent = Some(Instant::now());
                    }
                }
                _ = tokio::time::sleep_until(wake), if !stopping => {}
                _ = housekeeping.tick(), if !stopping => {
                    if let Some(f) = &self.file {
                        let mtime = std::fs::metadata(f).and_then(|m| m.modified()).ok();
                        if mtime != file_mtime {
                            file_mtime = mtime;
                            match self.load_file(f) {
                                Ok(t) => {
                                    tracing::info!(component = %name, file = %f.display(), targets = t.len(), "targets file reloaded");
                                    p.replace(Origin::File, t);
                                }
                                Err(e) => {
                                    p.m.reload_errors.add(1);
                                    tracing::error!(component = %name, error = %e, "targets file not reloaded; the previous targets stay");
                                }
                            }
                        }
                    }
                    if let Some(d) = &self.discovery {
                        let n = d.seen.len();
                        if n != seen_count {
                            seen_count = n;
                            let t = self.discovered(d);
                            tracing::info!(component = %name, exporters = t.len(), "new flow exporters discovered");
                            p.replace(Origin::Discovered, t);
                        }
                    }
                }
                _ = shutdown.cancelled(), if !stopping => {
                    // Polls in flight have produced nothing yet: abandon them.
                    stopping = true;
                    p.tasks.abort_all();
                }
            }
            let due_flush = first_unsent.is_some_and(|t| t.elapsed() >= Duration::from_secs(1));
            let done = (stopping || finished) && p.tasks.is_empty();
            let batch = self.cfg.batch_size.get();
            if p.rows.len() >= batch || p.health.len() >= batch || due_flush || done {
                p.flush(&mut out, health_out.as_mut()).await?;
                first_unsent = None;
            }
        }
        p.flush(&mut out, health_out.as_mut()).await?;
        tracing::info!(component = %name, polls_ok = p.m.ok.get(), "SNMP polling stopped");
        Ok(())
    }
}

/// Appends one successful poll's interfaces to `rows`, with the deltas
/// since the target's previous poll. Returns the rows added.
fn append(
    s: &mut TargetState,
    p: &PollResult,
    started: Instant,
    started_ns: i64,
    exporter: Addr,
    rows: &mut Rows,
) -> usize {
    let el = match s.prev_start {
        None => None,
        Some(prev) => {
            let wall = started.duration_since(prev).as_secs_f64();
            Some(match (s.prev_uptime, p.sys_uptime) {
                (Some(a), Some(b)) => elapsed(a, b, wall),
                _ => Elapsed::Seconds(wall),
            })
        }
    };
    let indexes: BTreeSet<u32> = p.columns.iter().flat_map(|c| c.keys().copied()).collect();
    let num = |col: usize, i: u32| p.columns[col].get(&i).and_then(Read::unsigned);
    let txt = |col: usize, i: u32| p.columns[col].get(&i);
    let mut next_prev = HashMap::with_capacity(indexes.len());
    let agent = s.target.agent.to_string();
    let sys_name = p.sys_name.as_deref();
    for &i in &indexes {
        let speed = match (num(IF_HIGH_SPEED, i), num(IF_SPEED, i)) {
            // ifSpeed saturates at 2^32-1 for fast links: ifHighSpeed
            // (Mb/s) is right there; below it ifSpeed is more precise.
            (Some(h), Some(sp)) if sp >= u32::MAX as u64 => Some(h * 1_000_000),
            (_, Some(sp)) => Some(sp),
            (Some(h), None) => Some(h * 1_000_000),
            (None, None) => None,
        };
        let now: Prev = [
            num(IF_HC_IN, i).map(|v| (v, 64)).or(num(IF_IN_OCTETS, i).map(|v| (v, 32))),
            num(IF_HC_OUT, i).map(|v| (v, 64)).or(num(IF_OUT_OCTETS, i).map(|v| (v, 32))),
            num(IF_IN_ERRORS, i).map(|v| (v, 32)),
            num(IF_OUT_ERRORS, i).map(|v| (v, 32)),
            num(IF_IN_DISCARDS, i).map(|v| (v, 32)),
            num(IF_OUT_DISCARDS, i).map(|v| (v, 32)),
        ];
        let mut deltas = [None; COUNTERS];
        let mut discontinuity = false;
        let mut interval_s = None;
        match (el, s.prev.get(&i)) {
            (Some(Elapsed::Restarted), _) => discontinuity = true,
            (Some(Elapsed::Seconds(secs)), Some(before)) if secs > 0.0 => {
                interval_s = Some(secs);
                for k in 0..COUNTERS {
                    let (Some((a, wa)), Some((b, wb))) = (before[k], now[k]) else { continue };
                    if wa != wb {
                        continue; // the agent switched between 32- and 64-bit counters
                    }
                    if b < a {
                        // Lower without a restart: a wrap of a 32-bit
                        // counter if the rate it implies is possible; a
                        // 64-bit counter does not wrap in practice, so
                        // it was reset (interface re-created, cleared).
                        let d = delta(a, b, wb);
                        let plausible = wb == 32
                            && speed.is_none_or(|sp| sp == 0 || (d as f64 * 8.0 / secs) <= sp as f64 * 1.5);
                        if !plausible {
                            discontinuity = true;
                            continue;
                        }
                        deltas[k] = Some(d);
                    } else {
                        deltas[k] = Some(b - a);
                    }
                }
            }
            _ => {}
        }
        let bps = |d: Option<u64>| match (d, interval_s) {
            (Some(d), Some(secs)) => Some(d as f64 * 8.0 / secs),
            _ => None,
        };
        rows.time.push(started_ns);
        rows.exporter.push(exporter);
        rows.target.append_value(&s.target.name);
        rows.agent.append_value(&agent);
        rows.sys_name.append_option(sys_name);
        rows.sys_uptime_ms.push(p.sys_uptime.map(|t| t as u64 * 10));
        rows.if_index.push(i);
        append_text(&mut rows.if_name, txt(IF_NAME, i));
        append_text(&mut rows.if_descr, txt(IF_DESCR, i));
        append_text(&mut rows.if_alias, txt(IF_ALIAS, i));
        rows.if_type.push(num(IF_TYPE, i).map(|v| v as u32));
        rows.if_speed.push(speed);
        rows.if_admin.push(num(IF_ADMIN, i).map(|v| v.min(255) as u8));
        rows.if_oper.push(num(IF_OPER, i).map(|v| v.min(255) as u8));
        for k in 0..COUNTERS {
            rows.counters[k].push(now[k].map(|(v, _)| v));
            rows.deltas[k].push(deltas[k]);
        }
        rows.interval_s.push(interval_s);
        rows.in_bps.push(bps(deltas[0]));
        rows.out_bps.push(bps(deltas[1]));
        rows.discontinuity.push(discontinuity);
        for (x, col) in rows.extra.iter_mut().enumerate() {
            let v = p.columns[STANDARD.len() + x].get(&i);
            match col {
                Extra::U64(c) => c.push(v.and_then(Read::unsigned)),
                Extra::I64(c) => c.push(v.and_then(Read::signed)),
                Extra::Text(c) => append_text(c, v),
            }
        }
        next_prev.insert(i, now);
    }
    s.prev = next_prev;
    s.prev_start = Some(started);
    s.prev_uptime = p.sys_uptime;
    indexes.len()
}

fn interface_count(p: &PollResult) -> usize {
    p.columns.iter().flat_map(|c| c.keys()).collect::<BTreeSet<_>>().len()
}

/// Appends a value read from the agent as text (numbers in decimal).
fn append_text(b: &mut StringBuilder, v: Option<&Read>) {
    match v {
        Some(Read::Text(t)) => b.append_value(t),
        Some(Read::Int(n)) => b.append_value(n.to_string()),
        Some(Read::Unsigned(n)) => b.append_value(n.to_string()),
        None => b.append_null(),
    }
}

/// A user column's values, of its declared type.
enum Extra {
    U64(Vec<Option<u64>>),
    I64(Vec<Option<i64>>),
    Text(StringBuilder),
}

/// Interface records not yet sent, column by column.
struct Rows {
    time: Vec<i64>,
    exporter: Vec<Addr>,
    target: StringBuilder,
    agent: StringBuilder,
    sys_name: StringBuilder,
    sys_uptime_ms: Vec<Option<u64>>,
    if_index: Vec<u32>,
    if_name: StringBuilder,
    if_descr: StringBuilder,
    if_alias: StringBuilder,
    if_type: Vec<Option<u32>>,
    if_speed: Vec<Option<u64>>,
    if_admin: Vec<Option<u8>>,
    if_oper: Vec<Option<u8>>,
    counters: [Vec<Option<u64>>; COUNTERS],
    interval_s: Vec<Option<f64>>,
    deltas: [Vec<Option<u64>>; COUNTERS],
    in_bps: Vec<Option<f64>>,
    out_bps: Vec<Option<f64>>,
    discontinuity: Vec<bool>,
    extras: Vec<ExtraKind>,
    extra: Vec<Extra>,
}

impl Rows {
    fn new(extras: Vec<ExtraKind>) -> Self {
        let extra = extras
            .iter()
            .map(|k| match k {
                ExtraKind::U64 => Extra::U64(Vec::new()),
                ExtraKind::I64 => Extra::I64(Vec::new()),
                ExtraKind::Text => Extra::Text(StringBuilder::new()),
            })
            .collect();
        Self {
            time: Vec::new(),
            exporter: Vec::new(),
            target: StringBuilder::new(),
            agent: StringBuilder::new(),
            sys_name: StringBuilder::new(),
            sys_uptime_ms: Vec::new(),
            if_index: Vec::new(),
            if_name: StringBuilder::new(),
            if_descr: StringBuilder::new(),
            if_alias: StringBuilder::new(),
            if_type: Vec::new(),
            if_speed: Vec::new(),
            if_admin: Vec::new(),
            if_oper: Vec::new(),
            counters: Default::default(),
            interval_s: Vec::new(),
            deltas: Default::default(),
            in_bps: Vec::new(),
            out_bps: Vec::new(),
            discontinuity: Vec::new(),
            extras,
            extra,
        }
    }

    fn len(&self) -> usize {
        self.time.len()
    }

    fn take(&mut self, schema: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
        let fresh = Rows::new(self.extras.clone());
        let mut r = std::mem::replace(self, fresh);
        let u64s = |v: Vec<Option<u64>>| Arc::new(UInt64Array::from(v)) as ArrayRef;
        let f64s = |v: Vec<Option<f64>>| Arc::new(Float64Array::from(v)) as ArrayRef;
        let strs = |b: &mut StringBuilder| Arc::new(b.finish()) as ArrayRef;
        let [c0, c1, c2, c3, c4, c5] = r.counters;
        let [d0, d1, d2, d3, d4, d5] = r.deltas;
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(TimestampNanosecondArray::from(r.time).with_timezone("UTC")),
            Arc::new(FixedSizeBinaryArray::try_from_iter(r.exporter.into_iter())?),
            strs(&mut r.target),
            strs(&mut r.agent),
            strs(&mut r.sys_name),
            u64s(r.sys_uptime_ms),
            Arc::new(UInt32Array::from(r.if_index)),
            strs(&mut r.if_name),
            strs(&mut r.if_descr),
            strs(&mut r.if_alias),
            Arc::new(UInt32Array::from(r.if_type)),
            u64s(r.if_speed),
            Arc::new(UInt8Array::from(r.if_admin)),
            Arc::new(UInt8Array::from(r.if_oper)),
            u64s(c0),
            u64s(c1),
            u64s(c2),
            u64s(c3),
            u64s(c4),
            u64s(c5),
            f64s(r.interval_s),
            u64s(d0),
            u64s(d1),
            u64s(d2),
            u64s(d3),
            u64s(d4),
            u64s(d5),
            f64s(r.in_bps),
            f64s(r.out_bps),
            Arc::new(BooleanArray::from(r.discontinuity)),
        ];
        for e in r.extra {
            cols.push(match e {
                Extra::U64(v) => u64s(v),
                Extra::I64(v) => Arc::new(Int64Array::from(v)),
                Extra::Text(mut b) => strs(&mut b),
            });
        }
        RecordBatch::try_new(schema.clone(), cols)
    }
}

struct HealthRow {
    time: i64,
    exporter: Addr,
    target: String,
    agent: String,
    ok: bool,
    error_kind: Option<&'static str>,
    error: Option<String>,
    duration_ms: f64,
    requests: u32,
    interfaces: u32,
    consecutive_failures: u32,
    last_success: Option<i64>,
}

#[derive(Default)]
struct HealthRows(Vec<HealthRow>);

impl HealthRows {
    fn push(&mut self, r: HealthRow) {
        self.0.push(r);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn take(&mut self) -> Result<RecordBatch, arrow::error::ArrowError> {
        let r = std::mem::take(&mut self.0);
        let cols: Vec<ArrayRef> = vec![
            Arc::new(
                TimestampNanosecondArray::from_iter_values(r.iter().map(|h| h.time)).with_timezone("UTC"),
            ),
            Arc::new(FixedSizeBinaryArray::try_from_iter(r.iter().map(|h| h.exporter))?),
            Arc::new(StringArray::from_iter_values(r.iter().map(|h| h.target.as_str()))),
            Arc::new(StringArray::from_iter_values(r.iter().map(|h| h.agent.as_str()))),
            Arc::new(BooleanArray::from_iter(r.iter().map(|h| Some(h.ok)))),
            Arc::new(StringArray::from_iter(r.iter().map(|h| h.error_kind))),
            Arc::new(StringArray::from_iter(r.iter().map(|h| h.error.as_deref()))),
            Arc::new(Float64Array::from_iter_values(r.iter().map(|h| h.duration_ms))),
            Arc::new(UInt32Array::from_iter_values(r.iter().map(|h| h.requests))),
            Arc::new(UInt32Array::from_iter_values(r.iter().map(|h| h.interfaces))),
            Arc::new(UInt32Array::from_iter_values(r.iter().map(|h| h.consecutive_failures))),
            Arc::new(
                TimestampNanosecondArray::from_iter(r.iter().map(|h| h.last_success)).with_timezone("UTC"),
            ),
        ];
        RecordBatch::try_new(health_schema(), cols)
    }
}
