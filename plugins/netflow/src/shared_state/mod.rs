//! Shared template and sampling state: what one decoder learns per
//! (exporter, domain) — templates, options templates, sampler tables,
//! exporter rates, boot times — published when it changes and applied by
//! every other decoder: the other workers of this source, other collectors
//! on the host (the file store) or in the fleet (the Kafka store).
//!
//! Behind an L4 balancer every scale event, restart or idle re-hash moves
//! exporters to a collector that never saw their templates; with a store,
//! that collector already knows them (read at start, before it reports
//! ready, and followed while running), so nothing waits for the exporter's
//! next template refresh. Options that arrive at another collector than the
//! data (some devices send them from another source port, and the balancer
//! hashes the port) reach the data's collector the same way.
//!
//! The workers receive from the start: the store thread reads the store
//! (the warm-up) while they do, and hands them what it held before anything
//! else. Data that arrives meanwhile for a template the store holds is parked
//! and decodes the moment the template arrives (a journaled worker journals it
//! and decodes once warm); the source reports ready once every worker has
//! applied the warm set. What the store held at start only fills in what a
//! worker does not already hold: a template the exporter sent during the
//! warm-up is as fresh as the store's.
//!
//! One thread per source runs the store: it writes what the workers learned
//! (skipping what the store already holds, so an identical refresh costs
//! nothing past the decoder's own comparison), reads what others wrote and
//! hands it to the workers, which apply it between receive batches. Two
//! different definitions of one key: the one learned last wins, counted and
//! logged. Store trouble never stops collection: each failure is a log line
//! (rate-limited) and a count, and the decoders go on with what they know.

mod codec;
mod file;
mod kafka;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant};

use serde::Deserialize;
use spillway_core::config::HumanDuration;
use spillway_core::metrics::{Counter, Gauge, LogLimit, Metrics};

use crate::decode::{Fact, Learned};

/// Where the state is shared.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SharedStateConfig {
    /// A directory, for the collectors of one host and restarts.
    File {
        path: PathBuf,
        /// How often the directory is scanned for others' changes.
        #[serde(default = "default_poll")]
        poll_interval: HumanDuration,
    },
    /// A compacted Kafka topic, for a fleet.
    Kafka {
        brokers: String,
        topic: String,
        /// Longest the topic is read at start before the source reports
        /// ready (and collection starts with what was read).
        #[serde(default = "default_warm_up")]
        warm_up: HumanDuration,
        /// How often new entries are read.
        #[serde(default = "default_poll")]
        poll_interval: HumanDuration,
        /// librdkafka settings for the producer and the consumer.
        #[serde(default)]
        options: BTreeMap<String, String>,
    },
}

pub(crate) fn default_poll() -> HumanDuration {
    HumanDuration(Duration::from_millis(200))
}
fn default_warm_up() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

impl SharedStateConfig {
    /// Problems a config check can find.
    pub fn issues(&self) -> Vec<spillway_core::registry::FieldIssue> {
        use spillway_core::registry::FieldIssue;
        let mut v = Vec::new();
        let poll = match self {
            Self::File { path, poll_interval } => {
                if path.as_os_str().is_empty() {
                    v.push(FieldIssue::new("shared_state.path", "must name a directory"));
                }
                poll_interval
            }
            Self::Kafka { brokers, topic, poll_interval, .. } => {
                if brokers.is_empty() {
                    v.push(FieldIssue::new("shared_state.brokers", "must name at least one broker"));
                }
                if topic.is_empty() {
                    v.push(FieldIssue::new("shared_state.topic", "must name a topic"));
                }
                poll_interval
            }
        };
        if poll.get() < Duration::from_millis(10) || poll.get() > Duration::from_secs(60) {
            v.push(FieldIssue::new("shared_state.poll_interval", "must be between 10ms and 60s"));
        }
        v
    }

    fn poll_interval(&self) -> Duration {
        match self {
            Self::File { poll_interval, .. } | Self::Kafka { poll_interval, .. } => poll_interval.get(),
        }
    }
}

/// What a store returns for one entry it read.
pub type Read = Result<codec::Entry, String>;

/// A place facts are kept.
pub trait Backend: Send {
    /// Everything held now (read until `deadline` at most).
    fn load(&mut self, deadline: Instant) -> Vec<Read>;
    /// Stores one entry.
    fn write(&mut self, key: &str, value: &[u8]) -> Result<(), String>;
    /// Entries that arrived since the last call, and trouble.
    fn poll(&mut self) -> Vec<Read>;
    /// Makes what was written durable before a stop.
    fn flush(&mut self) {}
}

/// The store's metrics.
#[derive(Clone)]
struct ShareMetrics {
    published: Counter,
    applied: Counter,
    conflicts: Counter,
    errors: Counter,
    dropped: Counter,
    entries: Gauge,
}

impl ShareMetrics {
    fn new(m: &Metrics) -> Self {
        Self {
            published: m.counter("spillway_netflow_shared_published_total", "State entries this source wrote to its store (changes only)."),
            applied: m.counter("spillway_netflow_shared_applied_total", "State entries from the store handed to this source's decoders."),
            conflicts: m.counter(
                "spillway_netflow_shared_conflicts_total",
                "Keys seen with two different definitions (the one learned last wins).",
            ),
            errors: m.counter("spillway_netflow_shared_errors_total", "Store failures: unreachable, missing, unwritable, corrupt entries."),
            dropped: m.counter(
                "spillway_netflow_shared_dropped_total",
                "Facts not passed on because a queue was full (the exporter's next refresh brings them again).",
            ),
            entries: m.gauge("spillway_netflow_shared_entries", "Keys the store thread knows."),
        }
    }
}

/// What the store thread hands a worker.
enum Inbound {
    Fact(Arc<Learned>),
    /// Everything the store held at start came before this.
    Warmed,
}

/// Workers that have not yet applied what the store held at start.
pub struct Warming {
    left: AtomicUsize,
    done: tokio::sync::Notify,
}

impl Warming {
    fn new(workers: usize) -> Self {
        Self { left: AtomicUsize::new(workers), done: tokio::sync::Notify::new() }
    }

    /// Whether every worker has applied the warm set.
    pub fn is_done(&self) -> bool {
        self.left.load(Ordering::Acquire) == 0
    }

    /// Resolves once every worker has applied the warm set.
    pub async fn wait(&self) {
        loop {
            // Made before the check: `notify_waiters` wakes it from here on.
            let woken = self.done.notified();
            if self.is_done() {
                return;
            }
            woken.await;
        }
    }

    fn one_done(&self) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_waiters();
        }
    }
}

/// A worker's end of the store: where it sends what it learned, and where
/// it receives what the store held at start and what others learned.
pub struct WorkerShare {
    id: usize,
    publish: SyncSender<(usize, Learned)>,
    inbox: Receiver<Inbound>,
    dropped: Counter,
    /// Until the warm set's end is received.
    warming: Cell<bool>,
    warm: Arc<Warming>,
}

impl WorkerShare {
    /// Passes on what the decoder learned.
    pub fn publish(&self, learned: impl Iterator<Item = Learned>) {
        for l in learned {
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                self.publish.try_send((self.id, l))
            {
                self.dropped.add(1);
            }
        }
    }

    /// What arrived since the last call, each with whether it is part of
    /// what the store held at start (the warm set).
    pub fn received(&self) -> impl Iterator<Item = (Arc<Learned>, bool)> + '_ {
        std::iter::from_fn(move || {
            loop {
                match self.inbox.try_recv() {
                    Ok(Inbound::Fact(l)) => return Some((l, self.warming.get())),
                    Ok(Inbound::Warmed) => self.warmed(),
                    Err(TryRecvError::Empty) => return None,
                    Err(TryRecvError::Disconnected) => {
                        // The store thread is gone: nothing more will come.
                        self.warmed();
                        return None;
                    }
                }
            }
        })
    }

    /// Whether the warm set is still arriving.
    pub fn warming(&self) -> bool {
        self.warming.get()
    }

    /// Waits for the whole warm set (for a caller that has nothing to
    /// receive meanwhile) and returns it.
    pub fn until_warm(&self) -> Vec<Arc<Learned>> {
        let mut warm = Vec::new();
        while self.warming.get() {
            match self.inbox.recv() {
                Ok(Inbound::Fact(l)) => warm.push(l),
                Ok(Inbound::Warmed) | Err(_) => self.warmed(),
            }
        }
        warm
    }

    fn warmed(&self) {
        if self.warming.replace(false) {
            self.warm.one_done();
        }
    }
}

/// The running store of one source; stops when dropped, once every
/// [`WorkerShare`] is gone (drop those first: the store thread runs until
/// the last of them).
pub struct SharedState {
    publish: Option<SyncSender<(usize, Learned)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for SharedState {
    fn drop(&mut self) {
        self.publish.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Facts queued per worker, and from the workers to the store.
const QUEUE: usize = 1 << 16;

/// Opens the store and starts its thread, which first reads what the store
/// holds (the warm-up) and hands it to every worker. Returns the running
/// store, one [`WorkerShare`] per worker, and what tells when every worker
/// has applied the warm set.
pub fn start(
    cfg: &SharedStateConfig,
    component: &str,
    metrics: &Metrics,
    workers: usize,
) -> Result<(SharedState, Vec<WorkerShare>, Arc<Warming>), String> {
    let (mut backend, warm_up): (Box<dyn Backend>, Duration) = match cfg {
        SharedStateConfig::File { path, .. } => (Box::new(file::FileStore::open(path)?), Duration::ZERO),
        SharedStateConfig::Kafka { brokers, topic, warm_up, options, .. } => {
            let options: Vec<(String, String)> =
                options.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            (Box::new(kafka::KafkaStore::open(brokers, topic, &options)?), warm_up.get())
        }
    };
    let m = ShareMetrics::new(metrics);
    let mut hub = Hub {
        component: component.to_string(),
        by: format!(
            "{}/{}",
            std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim(),
            std::process::id()
        ),
        known: lru::LruCache::new(std::num::NonZeroUsize::new(MAX_KNOWN).expect("non-zero")),
        outboxes: Vec::new(),
        m: m.clone(),
        logs: LogLimit::default(),
        unwritten: std::collections::HashMap::new(),
    };
    let (publish, from_workers) = std::sync::mpsc::sync_channel(QUEUE);
    let warm = Arc::new(Warming::new(workers));
    let mut shares = Vec::new();
    for id in 0..workers {
        let (tx, inbox) = std::sync::mpsc::sync_channel(QUEUE);
        hub.outboxes.push(tx);
        shares.push(WorkerShare {
            id,
            publish: publish.clone(),
            inbox,
            dropped: m.dropped.clone(),
            warming: Cell::new(true),
            warm: warm.clone(),
        });
    }
    let poll = cfg.poll_interval();
    let thread = std::thread::Builder::new()
        .name("netflow-state".into())
        .spawn(move || {
            hub.warm_up(&mut *backend, warm_up, &from_workers);
            hub.run(backend, from_workers, poll)
        })
        .map_err(|e| format!("cannot start the state thread: {e}"))?;
    Ok((SharedState { publish: Some(publish), thread: Some(thread) }, shares, warm))
}

/// Keys the store thread remembers (the least recently changed are
/// forgotten beyond this; forgetting only costs a redundant write).
const MAX_KNOWN: usize = 1 << 20;

struct Hub {
    component: String,
    by: String,
    /// Key → the definition and when it was learned (ms).
    known: lru::LruCache<String, (Fact, i64)>,
    outboxes: Vec<SyncSender<Inbound>>,
    m: ShareMetrics,
    logs: LogLimit,
    /// Entries the store refused (unreachable, disk full), by key: written
    /// again at every poll until it takes them, so the store catches up.
    unwritten: std::collections::HashMap<String, Vec<u8>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Hub {
    /// Reads the store (at most `warm_up`) and hands every worker what it
    /// holds, then the end of the warm set. Waits for room in the workers'
    /// queues: the warm set can be larger than one, and the workers, which
    /// are receiving meanwhile, apply it between receive batches. What the
    /// workers learn meanwhile is kept aside (their queue to this thread
    /// would fill during a long warm-up, and a dropped fact is not learned
    /// again until it changes) and stored after the warm set: it is newer.
    fn warm_up(
        &mut self,
        backend: &mut dyn Backend,
        warm_up: Duration,
        from_workers: &Receiver<(usize, Learned)>,
    ) {
        let started = Instant::now();
        let mut early = Vec::new();
        let reads = std::thread::scope(|s| {
            let load = s.spawn(|| backend.load(started + warm_up));
            while !load.is_finished() {
                let Ok(l) = from_workers.recv_timeout(Duration::from_millis(10)) else { continue };
                for l in std::iter::once(l).chain(from_workers.try_iter().take(QUEUE)) {
                    // Bounded like what this thread remembers.
                    if early.len() < MAX_KNOWN {
                        early.push(l);
                    } else {
                        self.m.dropped.add(1);
                    }
                }
            }
            load.join().unwrap_or_default()
        });
        for r in reads {
            if let Some(l) = self.remote(r) {
                let l = Arc::new(l);
                for tx in &self.outboxes {
                    if tx.send(Inbound::Fact(l.clone())).is_ok() {
                        self.m.applied.add(1);
                    }
                }
            }
        }
        for tx in &self.outboxes {
            let _ = tx.send(Inbound::Warmed);
        }
        tracing::info!(
            component = %self.component,
            entries = self.known.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "shared template and sampling state read"
        );
        for (origin, l) in early {
            self.local(backend, origin, l);
        }
    }

    fn run(
        mut self,
        mut backend: Box<dyn Backend>,
        from_workers: Receiver<(usize, Learned)>,
        poll: Duration,
    ) {
        let mut last_poll = Instant::now();
        loop {
            match from_workers.recv_timeout(poll) {
                Ok((origin, l)) => {
                    self.local(&mut *backend, origin, l);
                    for (origin, l) in from_workers.try_iter().take(QUEUE) {
                        self.local(&mut *backend, origin, l);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if last_poll.elapsed() >= poll {
                last_poll = Instant::now();
                self.retry(&mut *backend);
                for r in backend.poll() {
                    if let Some(l) = self.remote(r) {
                        self.forward(None, Arc::new(l));
                    }
                }
            }
            self.m.entries.set(self.known.len() as u64);
        }
        backend.flush();
    }

    fn error(&mut self, e: &str) {
        self.m.errors.add(1);
        if let Some(suppressed) = self.logs.allow() {
            tracing::warn!(component = %self.component, suppressed, "shared state: {e}; collection goes on with local state");
        }
    }

    /// Something a worker learned: stored (unless the store has it) and
    /// passed to the other workers.
    fn local(&mut self, backend: &mut dyn Backend, origin: usize, l: Learned) {
        let key = codec::key_of(&l);
        if self.known.get(&key).is_some_and(|(f, _)| *f == l.fact) {
            return;
        }
        let at = now_ms();
        let (_, value) = codec::encode(&l, at, &self.by);
        self.known.put(key.clone(), (l.fact.clone(), at));
        // This source's other workers first: they need no store.
        self.forward(Some(origin), Arc::new(l));
        self.unwritten.remove(&key);
        self.write(backend, key, value);
    }

    fn write(&mut self, backend: &mut dyn Backend, key: String, value: Vec<u8>) {
        match backend.write(&key, &value) {
            Ok(()) => self.m.published.add(1),
            Err(e) => {
                self.error(&e);
                if self.unwritten.len() < MAX_KNOWN {
                    self.unwritten.insert(key, value);
                }
            }
        }
    }

    /// Writes again what the store refused, until it refuses again.
    fn retry(&mut self, backend: &mut dyn Backend) {
        let keys: Vec<String> = self.unwritten.keys().cloned().collect();
        for key in keys {
            let Some(value) = self.unwritten.remove(&key) else { continue };
            if let Err(e) = backend.write(&key, &value) {
                self.unwritten.insert(key, value);
                self.error(&e);
                return;
            }
            self.m.published.add(1);
        }
    }

    /// An entry read from the store: the fact to apply, if it is news.
    fn remote(&mut self, r: Read) -> Option<Learned> {
        let e = match r {
            Ok(e) => e,
            Err(e) => {
                self.error(&e);
                return None;
            }
        };
        if let Some((fact, at)) = self.known.get(&e.key) {
            if *fact == e.learned.fact {
                return None;
            }
            self.m.conflicts.add(1);
            let newer = e.learned_ms >= *at;
            if let Some(suppressed) = self.logs.allow() {
                tracing::warn!(
                    component = %self.component,
                    key = %e.key,
                    suppressed,
                    "shared state: two definitions of one key; the one learned last wins ({})",
                    if newer { "the store's" } else { "ours" }
                );
            }
            if !newer {
                return None;
            }
        }
        self.known.put(e.key, (e.learned.fact.clone(), e.learned_ms));
        Some(e.learned)
    }

    fn forward(&mut self, origin: Option<usize>, l: Arc<Learned>) {
        for (i, tx) in self.outboxes.iter().enumerate() {
            if Some(i) == origin {
                continue;
            }
            match tx.try_send(Inbound::Fact(l.clone())) {
                Ok(()) => {
                    if origin.is_none() {
                        self.m.applied.add(1);
                    }
                }
                Err(_) => self.m.dropped.add(1),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::DomainKey;

    /// A store that refuses writes while `fail` is set.
    struct Flaky {
        fail: bool,
        written: Vec<String>,
    }

    impl Backend for Flaky {
        fn load(&mut self, _: Instant) -> Vec<Read> {
            Vec::new()
        }
        fn write(&mut self, key: &str, _: &[u8]) -> Result<(), String> {
            if self.fail {
                return Err("No space left on device".into());
            }
            self.written.push(key.to_string());
            Ok(())
        }
        fn poll(&mut self) -> Vec<Read> {
            Vec::new()
        }
    }

    fn hub(metrics: &Metrics, outboxes: Vec<SyncSender<Inbound>>) -> Hub {
        Hub {
            component: "flows".into(),
            by: "test".into(),
            known: lru::LruCache::new(std::num::NonZeroUsize::new(16).unwrap()),
            outboxes,
            m: ShareMetrics::new(metrics),
            logs: LogLimit::default(),
            unwritten: std::collections::HashMap::new(),
        }
    }

    /// A store that takes a while to read and holds nothing.
    struct Slow(Duration, Vec<String>);

    impl Backend for Slow {
        fn load(&mut self, _: Instant) -> Vec<Read> {
            std::thread::sleep(self.0);
            Vec::new()
        }
        fn write(&mut self, key: &str, _: &[u8]) -> Result<(), String> {
            self.1.push(key.to_string());
            Ok(())
        }
        fn poll(&mut self) -> Vec<Read> {
            Vec::new()
        }
    }

    #[test]
    fn what_workers_learn_during_a_long_warm_up_is_stored_and_passed_on_after_the_warm_set() {
        let metrics = Metrics::standalone("flows");
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        let mut hub = hub(&metrics, vec![std::sync::mpsc::sync_channel(64).0, tx]);
        // Worker 0's queue to the store thread holds two facts.
        let (publish, from_workers) = std::sync::mpsc::sync_channel(2);
        let share = WorkerShare {
            id: 0,
            publish,
            inbox: std::sync::mpsc::sync_channel(1).1,
            dropped: hub.m.dropped.clone(),
            warming: Cell::new(true),
            warm: Arc::new(Warming::new(1)),
        };
        let exporter = spillway_core::addr::Addr::from_v4_octets([192, 0, 2, 1]);
        let learning = std::thread::spawn(move || {
            for domain in 0..10 {
                share.publish(std::iter::once(Learned {
                    key: DomainKey { exporter, domain },
                    fact: Fact::Boot(1_700_000_000_000),
                }));
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let mut store = Slow(Duration::from_millis(400), Vec::new());
        hub.warm_up(&mut store, Duration::from_secs(1), &from_workers);
        learning.join().unwrap();
        assert_eq!(hub.m.dropped.get(), 0, "nothing learned during the warm-up was dropped");
        assert_eq!(store.1.len(), 10, "all of it stored: {:?}", store.1);
        assert!(matches!(rx.try_recv(), Ok(Inbound::Warmed)), "the warm set's end comes first");
        let passed = rx.try_iter().filter(|m| matches!(m, Inbound::Fact(_))).count();
        assert_eq!(passed, 10, "and then what worker 0 learned, to worker 1");
    }

    #[test]
    fn what_the_store_refused_is_written_once_it_takes_it_and_workers_get_it_at_once() {
        let metrics = Metrics::standalone("flows");
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let mut hub = hub(&metrics, vec![std::sync::mpsc::sync_channel(16).0, tx]);
        let key =
            DomainKey { exporter: spillway_core::addr::Addr::from_v4_octets([192, 0, 2, 1]), domain: 0 };
        let fact = Learned { key, fact: Fact::ExporterRate(Some(512)) };
        let mut store = Flaky { fail: true, written: Vec::new() };
        hub.local(&mut store, 0, fact.clone());
        assert!(store.written.is_empty());
        let Ok(Inbound::Fact(got)) = rx.try_recv() else { panic!("nothing passed on") };
        assert_eq!(*got, fact, "the other worker has it without the store");
        hub.local(&mut store, 0, fact.clone());
        assert!(rx.try_recv().is_err(), "an unchanged fact is not passed on again");
        hub.retry(&mut store);
        assert!(store.written.is_empty(), "still refused");
        store.fail = false;
        hub.retry(&mut store);
        assert_eq!(store.written, ["192.0.2.1/0/rate/0"]);
        assert!(hub.unwritten.is_empty());
        assert_eq!(hub.m.errors.get(), 2);
    }
}
