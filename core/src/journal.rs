//! A write-ahead journal of datagrams on local disk.
//!
//! A UDP source appends every datagram it accepts (with its receive time and
//! sender) to the journal as it arrives, and decodes from the journal at the
//! pace downstream allows. What the journal holds survives `kill -9`: a
//! restart replays what no sink acknowledged.
//!
//! On disk a journal is a directory of segment files named after the
//! sequence number of their first record (`00000000000000000042.seg`). A
//! segment starts with a header (magic, the journal's id, the first
//! sequence number) followed by records:
//!
//! ```text
//! u32 payload length | u32 CRC-32 of the rest | i64 receive time (ns)
//! | 16-byte sender address | u16 sender port | payload
//! ```
//!
//! all little-endian. A record's sequence number is its segment's first
//! plus its index. Reading stops at the first record whose length runs past
//! the file or whose checksum does not match (a torn write at power loss):
//! the good prefix is replayed and the rest is counted, never a panic.
//!
//! Segments are deleted from the front once every record in them is
//! settled (see [`RangeSet`]); the one being written is never deleted.
//!
//! [`Mark`]s name the records a batch holds; sinks that can store them with
//! their output (the Parquet sink's file metadata) report what they
//! committed to [`committed`], each under its own name, so that after a
//! crash such a sink skips a replayed batch it holds already while the
//! other sinks (which may not have it) receive it again.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Magic at the start of every segment: name and format version.
const MAGIC: &[u8; 8] = b"SPWJNL01";
/// Segment header: magic, journal id, first sequence number.
pub const HEADER_LEN: usize = 24;
/// Record header: length, checksum, receive time, address, port.
pub const RECORD_OVERHEAD: usize = 8 + 8 + 16 + 2;
/// Longest payload a record holds by default (a UDP datagram's limit).
pub const MAX_PAYLOAD: usize = 65_535;

/// Sets of `u64`s kept as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<(u64, u64)>,
}

impl RangeSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `lo..=hi`, merging with what it touches.
    pub fn insert(&mut self, lo: u64, hi: u64) {
        if lo > hi {
            return;
        }
        // First range that could touch [lo, hi]: ends at or after lo - 1.
        let start = self.ranges.partition_point(|&(_, e)| e.saturating_add(1) < lo);
        let mut end = start;
        let (mut nlo, mut nhi) = (lo, hi);
        while end < self.ranges.len() && self.ranges[end].0 <= hi.saturating_add(1) {
            nlo = nlo.min(self.ranges[end].0);
            nhi = nhi.max(self.ranges[end].1);
            end += 1;
        }
        self.ranges.splice(start..end, [(nlo, nhi)]);
    }

    /// Adds every range of `other`.
    pub fn extend(&mut self, other: &RangeSet) {
        for &(lo, hi) in &other.ranges {
            self.insert(lo, hi);
        }
    }

    /// Whether every value of `lo..=hi` is in the set.
    pub fn contains_range(&self, lo: u64, hi: u64) -> bool {
        lo > hi || (self.contains(lo) && self.first_gap(lo) > hi)
    }

    /// Whether `x` is in the set.
    pub fn contains(&self, x: u64) -> bool {
        let i = self.ranges.partition_point(|&(_, e)| e < x);
        self.ranges.get(i).is_some_and(|&(s, _)| s <= x)
    }

    /// The smallest value at or after `from` that is not in the set.
    pub fn first_gap(&self, from: u64) -> u64 {
        let i = self.ranges.partition_point(|&(_, e)| e < from);
        match self.ranges.get(i) {
            Some(&(s, e)) if s <= from => e.saturating_add(1),
            _ => from,
        }
    }

    /// Forgets everything below `x`.
    pub fn prune_below(&mut self, x: u64) {
        let i = self.ranges.partition_point(|&(_, e)| e < x);
        self.ranges.drain(..i);
        if let Some(first) = self.ranges.first_mut()
            && first.0 < x
        {
            first.0 = x;
        }
    }

    /// The ranges, in order.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// The journal records whose data a batch holds: the ranges of one
/// journal's sequence numbers every row of which is in the batch. Carried
/// with the batch's acknowledgement to the sinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// The journal (its id and the worker's part).
    pub journal: Arc<str>,
    /// Inclusive ranges of sequence numbers.
    pub ranges: Vec<(u64, u64)>,
    /// Whether every row of the batch belongs to a record in `ranges` (no
    /// part of a record split by parking): only then may a sink that holds
    /// the ranges skip the batch as a replay.
    pub whole: bool,
}

/// What each sink has committed, per journal: filled by sinks (at start
/// from what their outputs record, then as they commit). A sink skips a
/// replayed batch it holds whole; a journaled source cuts its replayed
/// batches where the set of sinks holding a record changes, so that each
/// batch is held by a sink entirely or not at all. One per process.
#[derive(Debug, Default)]
pub struct Committed {
    journals: Mutex<HashMap<Arc<str>, SinkSets>>,
}

/// Each sink's committed records of one journal, in the order sinks first
/// reported it.
type SinkSets = Vec<(Arc<str>, RangeSet)>;

/// The process's [`Committed`].
pub fn committed() -> &'static Committed {
    static C: OnceLock<Committed> = OnceLock::new();
    C.get_or_init(Committed::default)
}

impl Committed {
    /// Notes that `ranges` of `journal` are durable in sink `sink`'s output.
    pub fn add(&self, journal: &str, sink: &str, ranges: &[(u64, u64)]) {
        let mut j = self.journals.lock().unwrap_or_else(|e| e.into_inner());
        let sinks = match j.get_mut(journal) {
            Some(s) => s,
            None => j.entry(Arc::from(journal)).or_default(),
        };
        let i = match sinks.iter().position(|(s, _)| **s == *sink) {
            Some(i) => i,
            None => {
                sinks.push((Arc::from(sink), RangeSet::new()));
                sinks.len() - 1
            }
        };
        for &(lo, hi) in ranges {
            sinks[i].1.insert(lo, hi);
        }
    }

    /// Whether sink `sink` holds every record of `mark` (and the batch
    /// has no rows outside them): a replay it may skip.
    pub fn holds(&self, sink: &str, mark: &Mark) -> bool {
        if !mark.whole || mark.ranges.is_empty() {
            return false;
        }
        let j = self.journals.lock().unwrap_or_else(|e| e.into_inner());
        j.get(&*mark.journal)
            .and_then(|sinks| sinks.iter().find(|(s, _)| **s == *sink))
            .is_some_and(|(_, set)| mark.ranges.iter().all(|&(lo, hi)| set.contains_range(lo, hi)))
    }

    /// Which sinks hold record `seq` of `journal`: bit `i` for the `i`-th
    /// sink that reported this journal (the first 64).
    pub fn holders(&self, journal: &str, seq: u64) -> u64 {
        let j = self.journals.lock().unwrap_or_else(|e| e.into_inner());
        j.get(journal).map_or(0, |sinks| {
            sinks
                .iter()
                .take(64)
                .enumerate()
                .filter(|(_, (_, set))| set.contains(seq))
                .fold(0, |bits, (i, _)| bits | 1 << i)
        })
    }

    /// Forgets `journal`'s records below `x` (deleted from the journal).
    pub fn prune_below(&self, journal: &str, x: u64) {
        let mut j = self.journals.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sinks) = j.get_mut(journal) {
            for (_, s) in sinks {
                s.prune_below(x);
            }
        }
    }
}

/// How often the journal is flushed to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every batch of datagrams appended (each `recvmmsg` call).
    Batch,
    /// At most this long after an append.
    Every(Duration),
}

/// The `fsync` setting of a journal or a disk buffer: `batch` or a
/// duration such as `100ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsyncPolicy(pub Fsync);

impl<'de> serde::Deserialize<'de> for FsyncPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "batch" {
            return Ok(Self(Fsync::Batch));
        }
        humantime::parse_duration(&s)
            .map(|t| Self(Fsync::Every(t)))
            .map_err(|e| serde::de::Error::custom(format!("`batch` or a duration such as `100ms`: {e}")))
    }
}

/// The default `max_size` of a journal or a disk buffer.
pub fn default_max_size() -> crate::config::ByteSize {
    crate::config::ByteSize(1 << 30)
}

/// The default `fsync` of a journal or a disk buffer: every second, in the
/// background.
pub fn default_fsync() -> FsyncPolicy {
    FsyncPolicy(Fsync::Every(Duration::from_secs(1)))
}

/// A record read back.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub seq: u64,
    pub received_ns: i64,
    pub addr: [u8; 16],
    pub port: u16,
    pub payload: &'a [u8],
}

#[derive(Debug, Clone)]
struct Segment {
    first: u64,
    /// One past the last record; `None` while it is being written.
    end: Option<u64>,
    path: PathBuf,
    bytes: u64,
}

/// A torn or corrupt tail found when a journal was opened.
#[derive(Debug, Clone)]
pub struct Damage {
    pub path: PathBuf,
    /// Records read before the damage.
    pub good: u64,
    /// Bytes after the last good record, dropped.
    pub bad_bytes: u64,
    pub why: &'static str,
}

/// What the writer and the reader share.
#[derive(Debug)]
pub struct Shared {
    /// One past the last record appended and written (readable).
    end: AtomicU64,
    /// Bytes of all segments on disk.
    bytes: AtomicU64,
    segments: Mutex<VecDeque<Segment>>,
    /// The writer has finished (the source stopped receiving).
    done: AtomicBool,
    /// Records deleted unread by `drop_oldest`.
    dropped: AtomicU64,
}

impl Shared {
    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    /// One past the last readable record.
    pub fn end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    /// Whether the writer has finished.
    pub fn writer_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// The first record still on disk.
    pub fn start(&self) -> u64 {
        let s = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        s.front().map_or(self.end(), |s| s.first)
    }

    /// Deletes the closed segments whose every record is below `below`;
    /// returns how many.
    pub fn release_below(&self, below: u64) -> usize {
        let mut gone = Vec::new();
        {
            let mut s = self.segments.lock().unwrap_or_else(|e| e.into_inner());
            while s.len() > 1 && s.front().is_some_and(|f| f.end.is_some_and(|e| e <= below)) {
                gone.extend(s.pop_front());
            }
        }
        self.unlink(&gone);
        gone.len()
    }

    /// Deletes the oldest closed segment whatever it holds (`drop_oldest`);
    /// its sequence range.
    pub fn drop_oldest(&self) -> Option<(u64, u64)> {
        let seg = {
            let mut s = self.segments.lock().unwrap_or_else(|e| e.into_inner());
            if s.len() > 1 && s.front().is_some_and(|f| f.end.is_some()) { s.pop_front() } else { None }
        }?;
        let range = (seg.first, seg.end.unwrap_or(seg.first));
        self.unlink(std::slice::from_ref(&seg));
        Some(range)
    }

    /// Records deleted unread by `drop_oldest` since the last call.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::AcqRel)
    }

    fn unlink(&self, gone: &[Segment]) {
        for g in gone {
            if let Err(e) = std::fs::remove_file(&g.path) {
                tracing::warn!(file = %g.path.display(), error = %e, "cannot delete a settled journal segment");
            }
            self.bytes.fetch_sub(g.bytes, Ordering::AcqRel);
        }
    }

    /// The segment holding `seq`, or the next one after it.
    fn segment_for(&self, seq: u64) -> Option<Segment> {
        let s = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        s.iter().find(|g| g.end.is_none_or(|e| seq < e)).cloned()
    }
}

/// Appends records; one per journal, on the receiving thread.
pub struct Writer {
    id: u64,
    dir: PathBuf,
    file: File,
    path: PathBuf,
    first: u64,
    next: u64,
    seg_bytes: u64,
    segment_size: u64,
    buf: Vec<u8>,
    pending: u64,
    fsync: Fsync,
    dirty_since: Option<Instant>,
    /// With an interval policy, the thread that flushes to the device.
    syncer: Option<Syncer>,
    shared: Arc<Shared>,
    /// Appends refused because a write failed (disk full…), not yet taken.
    failed: u64,
    max_payload: usize,
}

/// Reads records in order; one per journal, on the decoding thread.
pub struct Reader {
    shared: Arc<Shared>,
    max_payload: usize,
    next: u64,
    /// Buffered: one `read` per 256 KiB, not two per record.
    file: Option<(std::io::BufReader<File>, Segment)>,
    head: [u8; RECORD_OVERHEAD],
    buf: Vec<u8>,
}

/// A journal directory opened: what was on disk is checked, a new segment
/// is started for what arrives now.
pub struct Opened {
    pub writer: Writer,
    pub reader: Reader,
    /// The journal's id (in every segment header and [`Mark`]).
    pub id: u64,
    /// Records on disk from before (to replay).
    pub recovered: u64,
    pub damage: Vec<Damage>,
}

fn seg_name(first: u64) -> String {
    format!("{first:020}.seg")
}

/// Opens (or creates) the journal in `dir`, for datagrams.
pub fn open(dir: &Path, segment_size: u64, fsync: Fsync) -> std::io::Result<Opened> {
    open_with(dir, segment_size, fsync, MAX_PAYLOAD)
}

/// Opens (or creates) the journal in `dir`, for records of at most
/// `max_payload` bytes.
pub fn open_with(dir: &Path, segment_size: u64, fsync: Fsync, max_payload: usize) -> std::io::Result<Opened> {
    std::fs::create_dir_all(dir)?;
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            let n = p.file_name()?.to_str()?.strip_suffix(".seg")?.parse().ok()?;
            Some((n, p))
        })
        .collect();
    found.sort();
    let id_path = dir.join("id");
    // A journal with no segment starts afresh under a new id, so marks of
    // an older one can never match its sequence numbers.
    let id = match std::fs::read_to_string(&id_path).ok().and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
    {
        Some(id) if !found.is_empty() => id,
        _ => {
            let id = crate::rand::SplitMix64::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
                    ^ u64::from(std::process::id()) << 32,
            )
            .next_u64();
            write_atomic(&id_path, format!("{id:016x}\n").as_bytes())?;
            id
        }
    };
    let mut segments = VecDeque::new();
    let mut damage = Vec::new();
    let mut total = 0u64;
    let mut recovered = 0u64;
    let mut next = 0u64;
    for (first, path) in found {
        let (good, good_bytes, len, why) = scan(&path, id, first, max_payload)?;
        if let Some(why) = why {
            damage.push(Damage { path: path.clone(), good, bad_bytes: len - good_bytes, why });
        }
        if good == 0 {
            // Nothing to replay in it (empty, or a bad header): gone.
            let _ = std::fs::remove_file(&path);
            next = next.max(first);
            continue;
        }
        total += len;
        recovered += good;
        next = next.max(first + good);
        segments.push_back(Segment { first, end: Some(first + good), path, bytes: len });
    }
    let start = segments.front().map_or(next, |s| s.first);
    let shared = Arc::new(Shared {
        end: AtomicU64::new(next),
        bytes: AtomicU64::new(total),
        segments: Mutex::new(segments),
        done: AtomicBool::new(false),
        dropped: AtomicU64::new(0),
    });
    let (file, path) = new_segment(dir, id, next)?;
    {
        let mut s = shared.segments.lock().unwrap_or_else(|e| e.into_inner());
        s.push_back(Segment { first: next, end: None, path: path.clone(), bytes: HEADER_LEN as u64 });
    }
    shared.bytes.fetch_add(HEADER_LEN as u64, Ordering::AcqRel);
    sync_dir(dir);
    let writer = Writer {
        id,
        dir: dir.to_path_buf(),
        file,
        path,
        first: next,
        next,
        seg_bytes: HEADER_LEN as u64,
        segment_size: segment_size.max(4096),
        buf: Vec::with_capacity(1 << 16),
        pending: 0,
        fsync,
        dirty_since: None,
        syncer: None,
        shared: shared.clone(),
        failed: 0,
        max_payload,
    };
    let mut writer = writer;
    if let Fsync::Every(d) = fsync {
        writer.syncer = Some(Syncer::start(&writer.file, dir, d)?);
    }
    let reader =
        Reader { shared, max_payload, next: start, file: None, head: [0; RECORD_OVERHEAD], buf: Vec::new() };
    Ok(Opened { writer, reader, id, recovered, damage })
}

fn new_segment(dir: &Path, id: u64, first: u64) -> std::io::Result<(File, PathBuf)> {
    let path = dir.join(seg_name(first));
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).open(&path)?;
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&id.to_le_bytes());
    h[16..24].copy_from_slice(&first.to_le_bytes());
    f.write_all(&h)?;
    Ok((f, path))
}

/// Counts a segment's good records: (records, bytes they end at, file
/// length, why reading stopped early).
fn scan(
    path: &Path,
    id: u64,
    first: u64,
    max_payload: usize,
) -> std::io::Result<(u64, u64, u64, Option<&'static str>)> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let len = data.len() as u64;
    if data.len() < HEADER_LEN || &data[..8] != MAGIC {
        return Ok((0, 0, len, Some("the segment header is missing or not a journal's")));
    }
    if u64::from_le_bytes(data[8..16].try_into().unwrap_or_default()) != id
        || u64::from_le_bytes(data[16..24].try_into().unwrap_or_default()) != first
    {
        return Ok((0, 0, len, Some("the segment header names another journal or position")));
    }
    let mut at = HEADER_LEN;
    let mut good = 0u64;
    while at < data.len() {
        match check(&data[at..], max_payload) {
            Ok(n) => {
                at += n;
                good += 1;
            }
            Err(why) => return Ok((good, at as u64, len, Some(why))),
        }
    }
    Ok((good, at as u64, len, None))
}

/// The length of the valid record at the start of `b`.
fn check(b: &[u8], max_payload: usize) -> Result<usize, &'static str> {
    if b.len() < RECORD_OVERHEAD {
        return Err("a record header is cut short");
    }
    let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    if len > max_payload {
        return Err("a record's length is impossible");
    }
    let total = RECORD_OVERHEAD + len;
    if b.len() < total {
        return Err("a record is cut short");
    }
    let crc = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    if crc32fast::hash(&b[8..total]) != crc {
        return Err("a record's checksum does not match");
    }
    Ok(total)
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)?;
    if let Some(d) = path.parent() {
        sync_dir(d);
    }
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `data` to `path` atomically (a temporary file renamed over it),
/// without waiting for the device: for positions whose loss at a power cut
/// only means more to replay (an fsync here would stall the journal's
/// writes behind the filesystem's journal commit).
pub fn store(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

/// Flushes a journal to the device in the background (`fsync: INTERVAL`),
/// so the receiving thread never waits for the disk.
struct Syncer {
    shared: Arc<SyncShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct SyncShared {
    /// The segment being written, and closed ones not yet flushed.
    files: Mutex<(Option<File>, Vec<File>)>,
    dirty: AtomicBool,
    stop: AtomicBool,
    dir: PathBuf,
}

impl Syncer {
    fn start(current: &File, dir: &Path, every: Duration) -> std::io::Result<Self> {
        let shared = Arc::new(SyncShared {
            files: Mutex::new((Some(current.try_clone()?), Vec::new())),
            dirty: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            dir: dir.to_path_buf(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new().name("journal-sync".into()).spawn(move || {
            loop {
                std::thread::park_timeout(every);
                let stop = s.stop.load(Ordering::Acquire);
                let (current, closed) = {
                    let mut f = s.files.lock().unwrap_or_else(|e| e.into_inner());
                    let current = f.0.as_ref().and_then(|c| c.try_clone().ok());
                    (current, std::mem::take(&mut f.1))
                };
                let rolled = !closed.is_empty();
                for f in closed {
                    if let Err(e) = f.sync_data() {
                        tracing::warn!(error = %e, "cannot flush a closed journal segment to disk");
                    }
                }
                // A new segment's name is durable once its directory is.
                if rolled {
                    sync_dir(&s.dir);
                }
                if s.dirty.swap(false, Ordering::AcqRel)
                    && let Some(c) = current
                    && let Err(e) = c.sync_data()
                {
                    tracing::warn!(error = %e, "cannot flush the journal to disk");
                }
                if stop {
                    return;
                }
            }
        })?;
        Ok(Self { shared, thread: Some(thread) })
    }

    /// Flushes what is left and ends the thread.
    fn stop(mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.dirty.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Writer {
    /// What the reader of this journal shares with it.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Adds one record to the pending batch ([`Writer::commit`] writes it).
    pub fn append(&mut self, received_ns: i64, addr: [u8; 16], port: u16, payload: &[u8]) {
        let payload = &payload[..payload.len().min(self.max_payload)];
        let at = self.buf.len();
        self.buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&[0; 4]);
        self.buf.extend_from_slice(&received_ns.to_le_bytes());
        self.buf.extend_from_slice(&addr);
        self.buf.extend_from_slice(&port.to_le_bytes());
        self.buf.extend_from_slice(payload);
        let crc = crc32fast::hash(&self.buf[at + 8..]);
        self.buf[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        self.pending += 1;
    }

    /// Writes the pending records (one `write`), makes them readable, and
    /// flushes to the device as the policy says. A failed write (disk full)
    /// loses the pending records: their number is returned as an error.
    pub fn commit(&mut self) -> Result<(), (u64, std::io::Error)> {
        if self.pending > 0 {
            if let Err(e) = self.file.write_all(&self.buf) {
                let lost = self.pending;
                self.failed += lost;
                self.buf.clear();
                self.pending = 0;
                // What part of the write landed is a torn tail: start a new
                // segment so the next records are readable.
                let _ = self.roll();
                return Err((lost, e));
            }
            let n = self.buf.len() as u64;
            self.seg_bytes += n;
            self.shared.bytes.fetch_add(n, Ordering::AcqRel);
            self.next += self.pending;
            self.shared.end.store(self.next, Ordering::Release);
            self.buf.clear();
            self.pending = 0;
            self.dirty_since.get_or_insert_with(Instant::now);
        }
        self.maybe_sync(false);
        if self.seg_bytes >= self.segment_size
            && let Err(e) = self.roll()
        {
            return Err((0, e));
        }
        Ok(())
    }

    fn maybe_sync(&mut self, force: bool) {
        let Some(since) = self.dirty_since else { return };
        if let Some(s) = &self.syncer {
            // The syncer flushes in the background; a roll hands it the
            // closed segment instead of waiting for the disk here.
            s.shared.dirty.store(true, Ordering::Release);
            if !force {
                return;
            }
        }
        let due = match self.fsync {
            Fsync::Batch => true,
            Fsync::Every(d) => since.elapsed() >= d,
        };
        if (due || force)
            && let Err(e) = self.file.sync_data()
        {
            tracing::warn!(file = %self.path.display(), error = %e, "cannot flush the journal to disk");
        }
        if due || force {
            self.dirty_since = None;
        }
    }

    /// Closes the current segment and starts the next.
    fn roll(&mut self) -> std::io::Result<()> {
        if self.syncer.is_none() {
            self.maybe_sync(true);
        }
        let (file, path) = new_segment(&self.dir, self.id, self.next)?;
        if let Some(s) = &self.syncer {
            let mut f = s.shared.files.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(old) = f.0.replace(file.try_clone()?) {
                f.1.push(old);
            }
            s.shared.dirty.store(true, Ordering::Release);
        } else {
            sync_dir(&self.dir);
        }
        {
            let mut s = self.shared.segments.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(cur) = s.back_mut() {
                cur.end = Some(self.next);
                cur.bytes = self.seg_bytes;
            }
            s.push_back(Segment {
                first: self.next,
                end: None,
                path: path.clone(),
                bytes: HEADER_LEN as u64,
            });
        }
        self.shared.bytes.fetch_add(HEADER_LEN as u64, Ordering::AcqRel);
        self.file = file;
        self.path = path;
        self.first = self.next;
        self.seg_bytes = HEADER_LEN as u64;
        Ok(())
    }

    /// Records lost to failed writes since the last call.
    pub fn take_failed(&mut self) -> u64 {
        std::mem::take(&mut self.failed)
    }

    /// Flushes everything to disk and tells the reader nothing more comes.
    pub fn finish(mut self) {
        let _ = self.commit();
        if let Some(s) = self.syncer.take() {
            s.stop();
        }
        self.maybe_sync(true);
        {
            let mut s = self.shared.segments.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(cur) = s.back_mut() {
                cur.bytes = self.seg_bytes;
            }
        }
        self.shared.done.store(true, Ordering::Release);
    }

    /// The first sequence number of the segment being written.
    pub fn segment_first(&self) -> u64 {
        self.first
    }
}

impl Reader {
    /// What the writer of this journal shares with it.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The sequence number the next read returns.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Whether everything written has been read.
    pub fn caught_up(&self) -> bool {
        self.next >= self.shared.end()
    }

    /// The next record, or `None` when everything written has been read.
    /// A record that cannot be read back (deleted by `drop_oldest`, a
    /// disk error) is skipped and counted in [`Shared::take_dropped`].
    pub fn next_record(&mut self) -> Option<Entry<'_>> {
        loop {
            if self.next >= self.shared.end() {
                return None;
            }
            let stale = match &self.file {
                Some((_, seg)) => seg.end.is_some_and(|e| self.next >= e) || self.next < seg.first,
                None => true,
            };
            if stale {
                self.open_segment()?;
                continue;
            }
            let (f, _) = self.file.as_mut()?;
            if f.read_exact(&mut self.head).is_err() {
                // The segment ended before the writer's position: it was
                // closed (rolled), or it is being deleted under us.
                self.file = None;
                self.open_segment()?;
                continue;
            }
            let len = u32::from_le_bytes(self.head[..4].try_into().unwrap_or_default()) as usize;
            let crc = u32::from_le_bytes(self.head[4..8].try_into().unwrap_or_default());
            if len > self.max_payload {
                if self.skip_segment("a record's length is impossible") {
                    return None;
                }
                continue;
            }
            self.buf.resize(len, 0);
            if f.read_exact(&mut self.buf).is_err() {
                if self.skip_segment("a record is cut short") {
                    return None;
                }
                continue;
            }
            let mut h = crc32fast::Hasher::new();
            h.update(&self.head[8..]);
            h.update(&self.buf);
            if h.finalize() != crc {
                if self.skip_segment("a record's checksum does not match") {
                    return None;
                }
                continue;
            }
            let seq = self.next;
            self.next += 1;
            let received_ns = i64::from_le_bytes(self.head[8..16].try_into().unwrap_or_default());
            let addr: [u8; 16] = self.head[16..32].try_into().unwrap_or_default();
            let port = u16::from_le_bytes([self.head[32], self.head[33]]);
            return Some(Entry { seq, received_ns, addr, port, payload: &self.buf });
        }
    }

    /// Opens the segment holding `self.next` (or the next one, counting
    /// what was skipped).
    fn open_segment(&mut self) -> Option<()> {
        let seg = self.shared.segment_for(self.next)?;
        if seg.first > self.next {
            self.shared.dropped.fetch_add(seg.first - self.next, Ordering::AcqRel);
            self.next = seg.first;
        }
        let mut f = match File::open(&seg.path) {
            Ok(f) => f,
            Err(_) => {
                // Deleted under us (drop_oldest): what it held is counted.
                let end = seg.end?;
                self.shared.dropped.fetch_add(end - self.next, Ordering::AcqRel);
                self.next = end;
                self.file = None;
                return Some(());
            }
        };
        // Skip to `self.next` within the segment.
        let mut at = HEADER_LEN as u64;
        let mut seq = seg.first;
        while seq < self.next {
            if f.seek(SeekFrom::Start(at)).is_err() || f.read_exact(&mut self.head[..4]).is_err() {
                return None;
            }
            at += (RECORD_OVERHEAD
                + u32::from_le_bytes(self.head[..4].try_into().unwrap_or_default()) as usize)
                as u64;
            seq += 1;
        }
        f.seek(SeekFrom::Start(at)).ok()?;
        self.file = Some((std::io::BufReader::with_capacity(256 << 10, f), seg));
        Some(())
    }

    /// The rest of the current segment cannot be read: counted, skipped.
    /// Whether reading should pause (the segment being written read short:
    /// try again later).
    fn skip_segment(&mut self, why: &'static str) -> bool {
        let Some((_, seg)) = self.file.take() else { return false };
        // What we hold may predate a roll: ask where the segment ends now.
        let Some(now) = self.shared.segment_for(self.next) else { return true };
        if now.first != seg.first {
            // The records are in a later segment: nothing is lost.
            return false;
        }
        let Some(end) = now.end else {
            // The segment being written reads short only while a write is
            // under way: read it again later.
            return true;
        };
        tracing::error!(file = %seg.path.display(), why, "journal segment unreadable from here; its remaining records are dropped");
        self.shared.dropped.fetch_add(end.saturating_sub(self.next), Ordering::AcqRel);
        self.next = end;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_sets_merge_and_answer() {
        let mut s = RangeSet::new();
        s.insert(5, 9);
        s.insert(0, 2);
        s.insert(3, 4);
        assert_eq!(s.ranges(), &[(0, 9)]);
        s.insert(20, 30);
        s.insert(11, 12);
        assert_eq!(s.ranges(), &[(0, 9), (11, 12), (20, 30)]);
        assert!(s.contains(11) && !s.contains(10) && !s.contains(31));
        assert_eq!(s.first_gap(0), 10);
        assert_eq!(s.first_gap(10), 10);
        assert_eq!(s.first_gap(12), 13);
        s.insert(8, 25);
        assert_eq!(s.ranges(), &[(0, 30)]);
        s.prune_below(7);
        assert_eq!(s.ranges(), &[(7, 30)]);
        assert!(s.contains_range(7, 30) && s.contains_range(9, 9) && !s.contains_range(6, 8));
        assert!(!s.contains_range(30, 31));
    }

    #[test]
    fn committed_records_are_per_sink() {
        let c = Committed::default();
        c.add("j", "archive", &[(0, 9)]);
        c.add("j", "other", &[(5, 20)]);
        let mark = |lo, hi, whole| Mark { journal: Arc::from("j"), ranges: vec![(lo, hi)], whole };
        assert!(c.holds("archive", &mark(2, 9, true)));
        assert!(!c.holds("archive", &mark(2, 10, true)), "record 10 is not in archive");
        assert!(!c.holds("archive", &mark(2, 9, false)), "the batch has rows of unnamed records");
        assert!(!c.holds("kafka", &mark(2, 9, true)), "a sink that recorded nothing holds nothing");
        assert_eq!(
            (c.holders("j", 3), c.holders("j", 7), c.holders("j", 15), c.holders("j", 30)),
            (1, 3, 2, 0)
        );
        assert_eq!(c.holders("other journal", 3), 0);
        c.prune_below("j", 8);
        assert!(!c.holds("archive", &mark(7, 9, true)));
        assert!(c.holds("archive", &mark(8, 9, true)));
    }

    fn write(dir: &Path, n: u64, segment: u64) -> u64 {
        let mut o = open(dir, segment, Fsync::Every(Duration::from_secs(1))).unwrap();
        for i in 0..n {
            o.writer.append(i as i64, [i as u8; 16], 2055, &vec![i as u8; 10 + i as usize % 50]);
            o.writer.commit().unwrap();
        }
        o.writer.finish();
        o.id
    }

    #[test]
    fn what_is_written_reads_back_across_segments_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let id = write(dir.path(), 300, 4096);
        let mut o = open(dir.path(), 4096, Fsync::Batch).unwrap();
        assert_eq!(o.id, id);
        assert_eq!(o.recovered, 300);
        assert!(o.damage.is_empty());
        let mut n = 0;
        while let Some(e) = o.reader.next_record() {
            assert_eq!(e.seq, n);
            assert_eq!(e.payload.len(), 10 + n as usize % 50);
            assert_eq!(e.received_ns, n as i64);
            n += 1;
        }
        assert_eq!(n, 300);
        // New records continue the numbering.
        o.writer.append(1, [0; 16], 1, b"next");
        o.writer.commit().unwrap();
        assert_eq!(o.reader.next_record().map(|e| e.seq), Some(300));
        // Settled segments go; the one being written stays.
        let segs = o.reader.shared().segments.lock().unwrap().len();
        assert!(segs > 2);
        assert!(o.reader.shared().release_below(301) >= segs - 1);
        assert_eq!(o.reader.shared().segments.lock().unwrap().len(), 1);
    }

    #[test]
    fn drop_oldest_deletes_unread_records_and_the_reader_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = open(dir.path(), 4096, Fsync::Batch).unwrap();
        for i in 0..200u64 {
            o.writer.append(i as i64, [0; 16], 1, &[7u8; 100]);
            o.writer.commit().unwrap();
        }
        // The oldest segment goes before the reader reached it
        // (`when_full: drop_oldest`): its records are counted, the rest is
        // read in order.
        let before = o.reader.shared().bytes();
        let (first, end) = o.reader.shared().drop_oldest().unwrap();
        assert_eq!(first, 0);
        assert!(end > 0 && o.reader.shared().bytes() < before);
        let mut seqs = Vec::new();
        while let Some(e) = o.reader.next_record() {
            seqs.push(e.seq);
        }
        assert_eq!(seqs.first(), Some(&end));
        assert_eq!(o.reader.shared().take_dropped(), end);
        assert_eq!(end + seqs.len() as u64, 200);
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    }

    #[test]
    fn a_torn_tail_replays_its_good_prefix_at_every_cut() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 20, 1 << 20);
        let seg = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "seg"))
            .unwrap();
        let full = std::fs::read(&seg).unwrap();
        let last_len = RECORD_OVERHEAD + 10 + 19;
        let last_start = full.len() - last_len;
        let id = std::fs::read_to_string(dir.path().join("id")).unwrap();
        for cut in last_start..full.len() {
            let d = tempfile::tempdir().unwrap();
            std::fs::write(d.path().join("id"), &id).unwrap();
            std::fs::write(d.path().join(seg.file_name().unwrap()), &full[..cut]).unwrap();
            let mut o = open(d.path(), 1 << 20, Fsync::Batch).unwrap();
            assert_eq!(o.recovered, 19, "cut at {cut}");
            let torn = cut > last_start;
            assert_eq!(o.damage.len(), usize::from(torn), "cut at {cut}");
            let mut n = 0;
            while o.reader.next_record().is_some() {
                n += 1;
            }
            assert_eq!(n, 19);
        }
        // Every byte of the last record flipped.
        for at in last_start..full.len() {
            let d = tempfile::tempdir().unwrap();
            std::fs::write(d.path().join("id"), &id).unwrap();
            let mut bad = full.clone();
            bad[at] ^= 0x5a;
            std::fs::write(d.path().join(seg.file_name().unwrap()), &bad).unwrap();
            let o = open(d.path(), 1 << 20, Fsync::Batch).unwrap();
            assert_eq!(o.recovered, 19, "flip at {at}");
            assert_eq!(o.damage.len(), 1, "flip at {at}");
        }
    }
}
