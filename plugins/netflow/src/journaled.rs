//! The `journal` option of the UDP sources: what a worker appends, what it
//! decodes from the journal, and which journal records may be deleted.
//!
//! A worker appends every accepted datagram to its journal (one per
//! worker: `DIR/w0`, `DIR/w1`, …) and decodes from it as fast as
//! downstream takes batches; it never blocks on downstream while datagrams
//! wait in the socket. Each batch carries an acknowledgement with a
//! [`Mark`]: the journal records every row of which the batch holds. A
//! record is *settled* when the batches holding its rows are acknowledged
//! (delivered, or dropped by a filter: no sink needed it) and no part of it
//! waits parked for a template. Segments below the first unsettled record
//! are deleted.
//!
//! After a crash the journal is read again from its oldest segment. Records
//! known settled (the worker's `settled` file, written every second and at
//! a stop) are decoded for their templates and sequence positions only; the
//! rest is decoded and sent again. A sink that records what it committed
//! (the Parquet sink's file metadata, through
//! [`spillway_core::journal::committed`]) skips a replayed batch it holds,
//! while the other sinks receive it: a record committed to Parquet may not
//! have reached Kafka. Replayed batches are cut where the set of sinks
//! holding a record changes, so a sink holds each of them entirely or not
//! at all.
//!
//! A record split by parking (some sets decoded, some waiting for their
//! template) is not named in any mark: after a crash it is replayed whole,
//! and the part delivered before is delivered again (at least once, counted
//! in `spillway_journal_replayed_unproven_total`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use spillway_core::ack::{AckReceiver, AckStatus, AckTracker, Acks};
use spillway_core::config::{ByteSize, HumanDuration};
use spillway_core::journal::{Fsync, FsyncPolicy, Mark, RangeSet};
use spillway_core::metrics::{Counter, Gauge, Metrics};
use spillway_core::registry::FieldIssue;

/// The `journal` option.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// Directory of the journal (one subdirectory per worker). Local disk:
    /// a network filesystem's locks and renames are not to be trusted.
    pub dir: PathBuf,
    /// Most disk the journal takes; beyond it, `when_full` applies.
    #[serde(default = "spillway_core::journal::default_max_size")]
    pub max_size: ByteSize,
    /// What happens when the journal is full.
    #[serde(default)]
    pub when_full: WhenFull,
    /// When appended records are flushed to the device: `batch` (after each
    /// `recvmmsg` batch) or a duration (at most that long after an append).
    /// A process crash loses nothing either way (the page cache survives
    /// it); this bounds what a host crash or power loss can lose.
    #[serde(default = "spillway_core::journal::default_fsync")]
    pub fsync: FsyncPolicy,
    /// Size at which a segment is closed and the next one started; segments
    /// are the unit of deletion.
    #[serde(default = "default_segment_size")]
    pub segment_size: ByteSize,
    /// At a stop, how long to wait for the sinks to acknowledge what was
    /// sent before the settled position is written for the last time (what
    /// is not acknowledged by then is replayed at the next start).
    #[serde(default = "default_settle_timeout")]
    pub settle_timeout: HumanDuration,
}

/// What a full journal does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Stop reading the socket until there is room: the kernel buffer
    /// fills and drops (counted as `buffer_full`), as without a journal.
    #[default]
    Block,
    /// Keep reading the socket and drop what arrives (counted, `buffer_full`).
    DropNewest,
    /// Delete the oldest segment, decoded or not (what it held unread is
    /// counted, `buffer_full`).
    DropOldest,
}

fn default_segment_size() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_settle_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

impl JournalConfig {
    /// Problems with the settings.
    pub fn issues(&self) -> Vec<FieldIssue> {
        let mut v = Vec::new();
        if self.segment_size.get() < 64 << 10 {
            v.push(FieldIssue::new("journal.segment_size", "must be at least 64KiB"));
        }
        if self.max_size.get() < 2 * self.segment_size.get() {
            v.push(FieldIssue::new("journal.max_size", "must hold at least two segments (2 × segment_size)"));
        }
        if let Fsync::Every(d) = self.fsync.0
            && (d.is_zero() || d > Duration::from_secs(60))
        {
            v.push(FieldIssue::new("journal.fsync", "an interval must be between 1ms and 1m (or `batch`)"));
        }
        v
    }

    /// The directory of worker `i`.
    pub fn worker_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("w{i}"))
    }
}

/// The journal metrics of a source (shared by its workers).
#[derive(Clone)]
pub struct JournalMetrics {
    pub bytes: Gauge,
    pub appended: Counter,
    pub replayed: Counter,
    pub skipped: Counter,
    pub unproven: Counter,
    pub full_waits: Counter,
    pub full_drops: Counter,
    pub corrupt: Counter,
    pub rejected: Counter,
}

impl JournalMetrics {
    pub fn new(m: &Metrics) -> Self {
        Self {
            bytes: m.gauge("spillway_journal_bytes", "Bytes the journal holds on disk."),
            appended: m.counter("spillway_journal_appended_total", "Datagrams appended to the journal."),
            replayed: m.counter(
                "spillway_journal_replayed_total",
                "Journal records read again after a restart (from before it).",
            ),
            skipped: m.counter(
                "spillway_journal_skipped_total",
                "Replayed journal records settled before the restart: decoded for their state only.",
            ),
            unproven: m.counter(
                "spillway_journal_replayed_unproven_total",
                "Replayed journal records sent again: a sink that keeps no marks may have them already (at least \
                 once; a Parquet sink skips what its files hold).",
            ),
            full_waits: m.counter(
                "spillway_journal_full_waits_total",
                "Times the worker stopped reading its socket because the journal was full (`when_full: block`).",
            ),
            full_drops: m.counter(
                "spillway_journal_full_dropped_total",
                "Datagrams dropped because the journal was full (`drop_newest`, `drop_oldest`).",
            ),
            corrupt: m.counter(
                "spillway_journal_corrupt_total",
                "Torn or corrupt journal tails found at start (their bytes are dropped).",
            ),
            rejected: m.counter(
                "spillway_journal_rejected_batches_total",
                "Batches a sink failed to make durable: their records stay in the journal until a restart replays \
                 them.",
            ),
        }
    }
}

/// A record that holds parts waiting for their template.
#[derive(Debug, Clone, Copy)]
struct Hold {
    /// Parked sets not yet delivered (parked, or released into a batch not
    /// yet acknowledged).
    parts: u32,
    /// Whether all its rows will be in one batch (it had no rows of its own
    /// and one set parked): that batch's mark may name it.
    whole: bool,
}

/// What a batch in flight covers.
#[derive(Debug)]
struct InFlight {
    range: (u64, u64),
    released: Vec<u64>,
}

/// Which journal records are settled, and what the batch being built holds.
pub struct Tracker {
    component: Arc<str>,
    journal: Arc<str>,
    tracker: AckTracker,
    acks: AckReceiver,
    settled: RangeSet,
    /// From before the start: what was settled.
    known: RangeSet,
    /// Which sinks hold the replayed records of the batch being built, and
    /// of the record about to be decoded ([`Self::cuts`]).
    holders: (u64, u64),
    /// The batch being built has rows of records it does not name.
    partial: bool,
    holds: BTreeMap<u64, Hold>,
    /// Records decoded into the batch being built.
    open: Option<(u64, u64)>,
    /// Records in `open` not whole in this batch.
    holes: Vec<u64>,
    /// Parked records released into the batch being built.
    released: Vec<u64>,
    in_flight: HashMap<u64, InFlight>,
    /// One past the last record read before the start (replays end there).
    replay_end: u64,
    settled_path: PathBuf,
    metrics: JournalMetrics,
}

/// The `settled` file: what a restart may skip.
#[derive(Debug, serde::Serialize, Deserialize)]
struct SettledFile {
    journal: String,
    ranges: Vec<(u64, u64)>,
    /// Records with parts not delivered (their parked sets): never skipped.
    held: Vec<u64>,
}

impl Tracker {
    /// The tracker of journal `journal` (id and worker), whose records
    /// below `replay_end` come from before this start.
    pub fn new(
        component: Arc<str>,
        journal: Arc<str>,
        dir: &std::path::Path,
        replay_end: u64,
        metrics: JournalMetrics,
    ) -> Self {
        let (tracker, acks) = AckTracker::new();
        let settled_path = dir.join("settled");
        let mut known = RangeSet::new();
        if let Some(f) =
            std::fs::read(&settled_path).ok().and_then(|b| serde_json::from_slice::<SettledFile>(&b).ok())
            && *f.journal == *journal
        {
            let mut s = RangeSet::new();
            for (lo, hi) in f.ranges {
                s.insert(lo, hi);
            }
            // Remove the held records: split them out of the ranges.
            let mut cut = RangeSet::new();
            let mut held = f.held;
            held.sort_unstable();
            for &(lo, hi) in s.ranges() {
                let mut at = lo;
                for &h in held.iter().filter(|&&h| h >= lo && h <= hi) {
                    if h > at {
                        cut.insert(at, h - 1);
                    }
                    at = h + 1;
                }
                if at <= hi {
                    cut.insert(at, hi);
                }
            }
            known.extend(&cut);
        }
        Self {
            component,
            journal,
            tracker,
            acks,
            settled: RangeSet::new(),
            known,
            holders: (0, 0),
            partial: false,
            holds: BTreeMap::new(),
            open: None,
            holes: Vec::new(),
            released: Vec::new(),
            in_flight: HashMap::new(),
            replay_end,
            settled_path,
            metrics,
        }
    }

    /// Whether record `seq` must start a new batch: a replay held by other
    /// sinks than those holding the batch being built.
    pub fn cuts(&mut self, seq: u64) -> bool {
        let holders = if seq < self.replay_end {
            spillway_core::journal::committed().holders(&self.journal, seq)
        } else {
            0
        };
        self.holders.1 = holders;
        self.open.is_some() && holders != self.holders.0
    }

    /// Whether record `seq` is a replay settled before the start (decode it
    /// for its state only). Counts replays.
    pub fn is_committed(&mut self, seq: u64) -> bool {
        if seq >= self.replay_end {
            return false;
        }
        self.metrics.replayed.add(1);
        if self.known.contains(seq) {
            self.metrics.skipped.add(1);
            true
        } else {
            self.metrics.unproven.add(1);
            false
        }
    }

    /// Notes what decoding record `seq` did: sets it parked, whether it
    /// added rows of its own, parked sets of earlier records it released,
    /// and parked sets that were dropped (expired, evicted).
    pub fn decoded(&mut self, seq: u64, parked: u64, own_rows: bool, released: impl Iterator<Item = u64>) {
        self.open = Some(match self.open {
            Some((lo, _)) => (lo, seq),
            None => {
                self.holders.0 = self.holders.1;
                (seq, seq)
            }
        });
        self.partial |= parked > 0 && own_rows;
        if parked > 0 {
            self.holes.push(seq);
            self.holds.insert(seq, Hold { parts: parked as u32, whole: !own_rows && parked == 1 });
        }
        self.released.extend(released);
    }

    /// Parked sets dropped for good (their drops are counted elsewhere).
    pub fn gone(&mut self, tags: &[u64]) {
        for &t in tags {
            self.release_part(t);
        }
    }

    fn release_part(&mut self, seq: u64) {
        if let Some(h) = self.holds.get_mut(&seq) {
            h.parts = h.parts.saturating_sub(1);
            if h.parts == 0 {
                self.holds.remove(&seq);
            }
        }
    }

    /// The acknowledgement for the batch being sent, naming what it holds;
    /// `None` when it is empty.
    pub fn seal(&mut self, has_rows: bool) -> Acks {
        let Some(range) = self.open.take() else {
            // Only released sets (rows of earlier records).
            if self.released.is_empty() {
                return Acks::none();
            }
            return self.sealed((u64::MAX, 0), has_rows);
        };
        self.sealed(range, has_rows)
    }

    fn sealed(&mut self, range: (u64, u64), has_rows: bool) -> Acks {
        let released = std::mem::take(&mut self.released);
        let mut holes = std::mem::take(&mut self.holes);
        let mut whole = !std::mem::take(&mut self.partial);
        if !has_rows {
            // Nothing to acknowledge: settled now.
            self.settle_flight(InFlight { range, released });
            return Acks::none();
        }
        let mut ranges = Vec::new();
        if range.0 <= range.1 {
            holes.sort_unstable();
            let mut at = range.0;
            for h in holes {
                if h > at {
                    ranges.push((at, h - 1));
                }
                at = h + 1;
            }
            if at <= range.1 {
                ranges.push((at, range.1));
            }
        }
        for &r in &released {
            if self.holds.get(&r).is_some_and(|h| h.whole) {
                ranges.push((r, r));
            } else {
                whole = false;
            }
        }
        let (id, ack) = self.tracker.ack_marked(Mark { journal: self.journal.clone(), ranges, whole });
        self.in_flight.insert(id, InFlight { range, released });
        Acks::one(ack)
    }

    fn settle_flight(&mut self, f: InFlight) {
        if f.range.0 <= f.range.1 {
            self.settled.insert(f.range.0, f.range.1);
        }
        for r in f.released {
            self.release_part(r);
        }
    }

    /// Takes in the acknowledgements that arrived.
    pub fn poll(&mut self) {
        while let Ok(s) = self.acks.try_recv() {
            self.settle(s);
        }
    }

    fn settle(&mut self, s: spillway_core::ack::Settled) {
        let Some(f) = self.in_flight.remove(&s.id) else { return };
        if s.status == AckStatus::Rejected {
            // Not durable: it stays in the journal (and holds it) until a
            // restart replays it.
            self.metrics.rejected.add(1);
            tracing::error!(
                component = %self.component,
                records = ?f.range,
                "a sink failed to make a batch durable: its records stay in the journal and are replayed at the next start"
            );
            return;
        }
        self.settle_flight(f);
    }

    /// Batches sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Waits up to `timeout` for the batches in flight (the sender side is
    /// gone, so the sinks are finishing).
    pub fn wait(&mut self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while !self.in_flight.is_empty() && std::time::Instant::now() < deadline {
            match self.acks.try_recv() {
                Ok(s) => self.settle(s),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => break,
            }
        }
        if !self.in_flight.is_empty() {
            tracing::warn!(
                component = %self.component,
                batches = self.in_flight.len(),
                "batches still unacknowledged at the stop: they stay in the journal and are replayed (at least once) at \
                 the next start"
            );
        }
    }

    /// The first record not settled, from `start` (the oldest on disk).
    /// Records not yet read may be settled already (known from before the
    /// start); the caller bounds it by the reader's position.
    pub fn watermark(&self, start: u64) -> u64 {
        let mut w = self.settled.first_gap(start);
        // What is known from before the start counts as settled too.
        while self.known.contains(w) || self.settled.contains(w) {
            w = self.known.first_gap(w).max(self.settled.first_gap(w));
        }
        if let Some((&h, _)) = self.holds.first_key_value() {
            w = w.min(h);
        }
        if let Some((lo, _)) = self.open {
            w = w.min(lo);
        }
        for f in self.in_flight.values() {
            if f.range.0 <= f.range.1 {
                w = w.min(f.range.0);
            }
        }
        w
    }

    /// Deletes settled segments the reader is past (a segment deleted ahead
    /// of it would read as lost) and writes the `settled` file.
    pub fn checkpoint(&mut self, shared: &spillway_core::journal::Shared, read_to: u64) {
        let w = self.watermark(shared.start()).min(read_to);
        shared.release_below(w);
        // What is still on disk is replayed after a crash: its settled part
        // must stay known until its segment is deleted.
        let kept = shared.start();
        self.settled.prune_below(kept);
        self.known.prune_below(kept);
        spillway_core::journal::committed().prune_below(&self.journal, kept);
        self.metrics.bytes.set(shared.bytes());
        let mut ranges = self.settled.clone();
        ranges.extend(&self.known);
        let f = SettledFile {
            journal: self.journal.to_string(),
            ranges: ranges.ranges().to_vec(),
            held: self.holds.keys().copied().collect(),
        };
        if let Ok(b) = serde_json::to_vec(&f)
            && let Err(e) = spillway_core::journal::store(&self.settled_path, &b)
        {
            tracing::warn!(file = %self.settled_path.display(), error = %e, "cannot write the journal's settled position");
        }
    }

    /// Records with parts parked now.
    pub fn held(&self) -> usize {
        self.holds.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(dir: &std::path::Path) -> Tracker {
        Tracker::new(
            Arc::from("t"),
            Arc::from("j/w0"),
            dir,
            0,
            JournalMetrics::new(&Metrics::standalone("t")),
        )
    }

    #[test]
    fn a_record_is_settled_when_its_batches_are_acknowledged_and_nothing_of_it_is_parked() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = tracker(dir.path());
        // 0, 1 decoded; 2 parked whole; 3 decoded.
        t.decoded(0, 0, true, std::iter::empty());
        t.decoded(1, 0, true, std::iter::empty());
        t.decoded(2, 1, false, std::iter::empty());
        t.decoded(3, 0, true, std::iter::empty());
        let a = t.seal(true);
        let marks: Vec<_> = a.marks().cloned().collect();
        assert_eq!(marks[0].ranges, vec![(0, 1), (3, 3)], "the parked record is not in the batch");
        assert_eq!(t.watermark(0), 0);
        a.settle(AckStatus::Delivered);
        drop(a);
        t.poll();
        assert_eq!(t.watermark(0), 2, "record 2 waits for its template");
        // Its template arrives with record 4: released into the next batch.
        t.decoded(4, 0, false, [2].into_iter());
        let b = t.seal(true);
        let marks: Vec<_> = b.marks().cloned().collect();
        assert_eq!(marks[0].ranges, vec![(4, 4), (2, 2)], "record 2's rows are all in this batch");
        assert_eq!(t.watermark(0), 2);
        b.settle(AckStatus::Delivered);
        drop(b);
        t.poll();
        assert_eq!(t.watermark(0), 5);
    }

    #[test]
    fn a_rejected_batch_holds_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = tracker(dir.path());
        t.decoded(0, 0, true, std::iter::empty());
        let a = t.seal(true);
        t.decoded(1, 0, true, std::iter::empty());
        let b = t.seal(true);
        a.settle(AckStatus::Rejected);
        b.settle(AckStatus::Delivered);
        drop((a, b));
        t.poll();
        assert_eq!(t.watermark(0), 0);
    }

    #[test]
    fn a_split_record_is_never_named_and_held_records_are_not_skipped_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = tracker(dir.path());
        t.decoded(0, 0, true, std::iter::empty());
        t.decoded(1, 1, true, std::iter::empty()); // split
        t.decoded(2, 0, true, std::iter::empty());
        let a = t.seal(true);
        assert_eq!(a.marks().next().unwrap().ranges, vec![(0, 0), (2, 2)]);
        assert!(!a.marks().next().unwrap().whole, "the batch holds rows of record 1, which it does not name");
        a.settle(AckStatus::Delivered);
        drop(a);
        t.poll();
        let shared_dir = tempfile::tempdir().unwrap();
        let o = spillway_core::journal::open(shared_dir.path(), 1 << 20, Fsync::Batch).unwrap();
        t.checkpoint(o.reader.shared(), 3);
        // A restart: 0 and 2 are skipped, 1 is replayed.
        let mut r = Tracker::new(
            Arc::from("t"),
            Arc::from("j/w0"),
            dir.path(),
            3,
            JournalMetrics::new(&Metrics::standalone("t")),
        );
        assert!(r.is_committed(0));
        assert!(!r.is_committed(1));
        assert!(r.is_committed(2));
        assert!(!r.is_committed(3), "not a replay");
    }

    #[test]
    fn replayed_batches_are_cut_where_the_sinks_holding_their_records_change() {
        let dir = tempfile::tempdir().unwrap();
        // Records 0..=4 are in a committed Parquet file of sink `archive`.
        spillway_core::journal::committed().add("cut/w0", "archive", &[(0, 4)]);
        let mut t = Tracker::new(
            Arc::from("t"),
            Arc::from("cut/w0"),
            dir.path(),
            8,
            JournalMetrics::new(&Metrics::standalone("t")),
        );
        let mut cuts = Vec::new();
        for seq in 0..10 {
            if t.cuts(seq) {
                cuts.push(seq);
                t.seal(true);
            }
            assert!(!t.is_committed(seq), "a record a sink holds is replayed, for the sinks that do not");
            t.decoded(seq, 0, true, std::iter::empty());
        }
        assert_eq!(cuts, vec![5], "0..=4 in one batch, the rest in another");
        let m = t.seal(true);
        assert!(m.marks().next().unwrap().whole);
        assert!(!spillway_core::journal::committed().holds("archive", m.marks().next().unwrap()));
    }
}
