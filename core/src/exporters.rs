//! The exporters a flow source has heard from, shared with components that
//! act on them (the `snmp` source polls every router that sends flows) and
//! with the admin endpoint (`/api/exporters`, the status page, `spillway
//! top`), with live counts per exporter.
//!
//! A flow source publishes one [`SeenExporters`] under its name at build
//! time; each receive thread keeps a [`SeenCache`] so that the shared set is
//! locked only when an address is new to that thread, and adds its counts
//! about once a second ([`SeenExporters::update`]).

use crate::addr::Addr;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::SystemTime;

/// Live counts of one exporter, since the source started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ExporterStats {
    pub datagrams: u64,
    /// Records decoded.
    pub records: u64,
    /// Records dropped (each undecodable part, parked set dropped or
    /// rejected datagram counts one, as in the ledger).
    pub dropped: u64,
    /// What the sequence numbers say never arrived.
    pub sequence_missing: u64,
    /// Data sets that waited for a template.
    pub parked_sets: u64,
    /// Templates (and options templates) received.
    pub templates: u64,
    /// Rows whose sampling rate is unknown.
    pub sampling_unknown: u64,
    /// When the last datagram arrived (ms since the epoch).
    pub last_seen_ms: i64,
    /// The sampling rate of the latest record, and where it came from.
    pub sampling_rate: Option<u32>,
    pub sampling_source: Option<&'static str>,
    /// Templates held now (over the receive workers).
    pub templates_known: u32,
    /// Data sets waiting for their template now.
    pub parked_now: u32,
}

impl ExporterStats {
    /// Adds what `d` counted since the last update.
    pub fn add(&mut self, d: &ExporterStats) {
        self.datagrams += d.datagrams;
        self.records += d.records;
        self.dropped += d.dropped;
        self.sequence_missing += d.sequence_missing;
        self.parked_sets += d.parked_sets;
        self.templates += d.templates;
        self.sampling_unknown += d.sampling_unknown;
        self.last_seen_ms = self.last_seen_ms.max(d.last_seen_ms);
        if d.sampling_source.is_some() {
            (self.sampling_rate, self.sampling_source) = (d.sampling_rate, d.sampling_source);
        }
    }
}

/// One exporter of the table.
#[derive(Debug, Clone, Serialize)]
pub struct ExporterRow {
    pub exporter: IpAddr,
    pub first_seen_ms: i64,
    #[serde(flatten)]
    pub stats: ExporterStats,
}

#[derive(Debug, Clone)]
struct Entry {
    first_seen: SystemTime,
    stats: ExporterStats,
    /// (worker, templates held, sets parked) as each worker last said.
    held: Vec<(u16, u32, u32)>,
}

impl Entry {
    fn new() -> Self {
        Self { first_seen: SystemTime::now(), stats: ExporterStats::default(), held: Vec::new() }
    }
}

/// Most exporters a table holds: beyond it (spoofed sources) new ones are
/// counted in [`SeenExporters::overflow`] and not listed.
const MAX_EXPORTERS: usize = 1 << 18;

/// Exporter address → when it was first seen, and its live counts.
#[derive(Debug, Default)]
pub struct SeenExporters {
    inner: Mutex<HashMap<IpAddr, Entry>>,
    overflow: std::sync::atomic::AtomicU64,
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl SeenExporters {
    /// Records `addr` (v4-mapped addresses are stored as IPv4).
    pub fn note(&self, addr: IpAddr) {
        let addr = addr.to_canonical();
        if let Ok(mut m) = self.inner.lock() {
            if m.len() >= MAX_EXPORTERS && !m.contains_key(&addr) {
                self.overflow.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            m.entry(addr).or_insert_with(Entry::new);
        }
    }

    /// What worker `worker` holds now for each exporter (templates, parked
    /// sets); what it no longer holds anything for counts zero.
    pub fn set_held(&self, worker: u16, templates: &HashMap<Addr, u32>, parked: &HashMap<Addr, u32>) {
        let Ok(mut m) = self.inner.lock() else { return };
        for e in m.values_mut() {
            e.held.retain(|(w, ..)| *w != worker);
        }
        let keys: HashSet<Addr> = templates.keys().chain(parked.keys()).copied().collect();
        for a in keys {
            if let Some(e) = m.get_mut(&IpAddr::from(a).to_canonical()) {
                let (t, p) = (templates.get(&a).copied().unwrap_or(0), parked.get(&a).copied().unwrap_or(0));
                e.held.push((worker, t, p));
            }
        }
    }

    /// Adds a worker's counts since its last update, and empties them.
    pub fn update(&self, counts: &mut HashMap<Addr, ExporterStats>) {
        if counts.is_empty() {
            return;
        }
        if let Ok(mut m) = self.inner.lock() {
            for (a, d) in counts.drain() {
                let addr = IpAddr::from(a).to_canonical();
                if m.len() >= MAX_EXPORTERS && !m.contains_key(&addr) {
                    continue;
                }
                m.entry(addr).or_insert_with(Entry::new).stats.add(&d);
            }
        }
    }

    /// Every exporter with its counts, in address order.
    pub fn table(&self) -> Vec<ExporterRow> {
        let mut v: Vec<ExporterRow> = self
            .inner
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(a, e)| {
                        let mut stats = e.stats;
                        stats.templates_known = e.held.iter().map(|h| h.1).sum();
                        stats.parked_now = e.held.iter().map(|h| h.2).sum();
                        ExporterRow { exporter: *a, first_seen_ms: ms(e.first_seen), stats }
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by_key(|r| r.exporter);
        v
    }

    /// New exporters not listed because the table was full.
    pub fn overflow(&self) -> u64 {
        self.overflow.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every exporter seen so far, in address order.
    pub fn snapshot(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self.inner.lock().map(|m| m.keys().copied().collect()).unwrap_or_default();
        v.sort();
        v
    }

    /// How many exporters have been seen.
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |m| m.len())
    }

    /// Whether none has been seen.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How an `snmp` source's poll of one exporter's router last went: what the
/// admin endpoint joins into its exporter table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PollStatus {
    /// The target's name in the config.
    pub target: String,
    /// sysName, from the last good poll.
    pub sys_name: Option<String>,
    pub ok: bool,
    /// Why the last poll failed (`timeout`, `auth`, …).
    pub error_kind: Option<&'static str>,
    pub consecutive_failures: u32,
    pub last_poll_ms: i64,
    pub last_success_ms: Option<i64>,
}

/// An `snmp` source's targets by exporter address, published under its name.
#[derive(Debug, Default)]
pub struct PolledTargets {
    inner: Mutex<HashMap<IpAddr, PollStatus>>,
}

impl PolledTargets {
    /// Records the outcome of a poll of the router exporting as `exporter`.
    pub fn set(&self, exporter: IpAddr, status: PollStatus) {
        let Ok(mut m) = self.inner.lock() else { return };
        let mut status = status;
        if let Some(old) = m.remove(&exporter.to_canonical()) {
            // A failed poll learns no name: keep the last one known.
            status.sys_name = status.sys_name.or(old.sys_name);
        }
        m.insert(exporter.to_canonical(), status);
    }

    /// Every target's status by exporter.
    pub fn snapshot(&self) -> HashMap<IpAddr, PollStatus> {
        self.inner.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// A thread's memory of what it already reported, bounded so that a flood
/// of spoofed sources cannot grow it without limit (beyond the bound every
/// message takes the shared lock, which is still correct).
#[derive(Debug)]
pub struct SeenCache {
    shared: std::sync::Arc<SeenExporters>,
    local: HashSet<Addr>,
}

const LOCAL_BOUND: usize = 1 << 16;

impl SeenCache {
    /// A cache in front of `shared`.
    pub fn new(shared: std::sync::Arc<SeenExporters>) -> Self {
        Self { shared, local: HashSet::new() }
    }

    /// The shared table.
    pub fn shared(&self) -> &SeenExporters {
        &self.shared
    }

    /// Notes an exporter given as a 16-byte (v4-mapped for IPv4) address.
    #[inline]
    pub fn note(&mut self, addr: Addr) {
        if self.local.contains(&addr) {
            return;
        }
        self.shared.note(std::net::IpAddr::from(addr));
        if self.local.len() < LOCAL_BOUND {
            self.local.insert(addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_and_plain_ipv4_are_one_exporter() {
        let s = std::sync::Arc::new(SeenExporters::default());
        let mut c = SeenCache::new(s.clone());
        c.note(crate::schema::Addr::v4(0x7f00_0001));
        c.note(crate::schema::Addr::v4(0x7f00_0001));
        s.note("::ffff:127.0.0.1".parse().unwrap());
        s.note("127.0.0.2".parse().unwrap());
        assert_eq!(s.snapshot(), vec!["127.0.0.1".parse::<IpAddr>().unwrap(), "127.0.0.2".parse().unwrap()]);
    }
}
