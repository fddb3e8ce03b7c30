//! `buffer: { type: disk, … }` on a sink: a buffer on local disk in front
//! of it, with Vector's semantics.
//!
//! Every batch that reaches the sink is written to the buffer (the
//! journal's segment files, one record per batch in Arrow IPC) and
//! acknowledged upstream as delivered once written: a Kafka source commits
//! its offsets then, and a sink outage costs the upstream nothing while the
//! buffer has room. The sink reads its batches from the buffer, at its own
//! pace; a segment is deleted once the sink has acknowledged every batch in
//! it. After a crash or a stop, what the sink had not acknowledged is read
//! again at the next start (at least once).
//!
//! The ledger sees one component: records are `received` when they enter
//! the buffer, `delivered` when the sink makes them durable. At a stop,
//! records still in the buffer are durable there and are counted
//! `delivered` (logged); at the next start they are `created` again from
//! the buffer. Full: `block` stops taking batches (backpressure upstream);
//! `drop_newest` drops what arrives, counted `buffer_full`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::ack::{AckStatus, AckTracker, Acks};
use crate::config::{ByteSize, HumanDuration};
use crate::journal::{FsyncPolicy, RangeSet};
use crate::ledger::{ComponentLedger, DropReason};
use crate::{Batch, BatchMeta};

/// The `buffer` of a sink, when it is `type: disk`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DiskBufferConfig {
    #[serde(rename = "type")]
    pub kind: BufferType,
    /// Directory of the buffer (local disk), relative to the working
    /// directory.
    pub dir: PathBuf,
    /// Most disk the buffer takes.
    #[serde(default = "crate::journal::default_max_size")]
    pub max_size: ByteSize,
    /// What happens when it is full.
    #[serde(default)]
    pub when_full: WhenFull,
    /// When written batches are flushed to the device (`batch`, or an
    /// interval). A process crash loses nothing either way.
    #[serde(default = "crate::journal::default_fsync")]
    pub fsync: FsyncPolicy,
    /// At a stop, how long the sink may take to read what the buffer holds
    /// before it is left there for the next start.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: HumanDuration,
}

/// The one buffer type with settings (memory buffering is the channels').
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BufferType {
    Disk,
}

/// What a full buffer does.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Take no more batches until there is room: backpressure upstream.
    #[default]
    Block,
    /// Take them and drop them, counted (`buffer_full`).
    DropNewest,
}

fn default_drain_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

/// Largest batch a buffer record holds.
const MAX_BATCH_BYTES: usize = 1 << 30;
const SEGMENT_SIZE: u64 = 64 << 20;

impl DiskBufferConfig {
    /// Problems with the settings.
    pub fn issues(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.max_size.get() < 2 * SEGMENT_SIZE {
            v.push(format!(
                "buffer.max_size must be at least {}MiB (two segments)",
                (2 * SEGMENT_SIZE) >> 20
            ));
        }
        v
    }
}

/// A batch read back from the buffer, for the sink.
pub(crate) struct Buffered {
    pub batch: Batch,
}

/// The buffer's task: takes batches from the sink's input channel, writes
/// them, feeds the sink. Returns when the input has ended and the sink has
/// read everything (or the drain deadline passed).
pub(crate) async fn run(
    cfg: DiskBufferConfig,
    dir: PathBuf,
    name: Arc<str>,
    mut input: crate::channel::RowReceiver,
    to_sink: mpsc::Sender<Buffered>,
    ledger: Arc<ComponentLedger>,
    metrics: crate::metrics::Metrics,
) -> Result<(), String> {
    let events = crate::events::Events::new(ledger.clone());
    let opened = crate::journal::open_with(&dir, SEGMENT_SIZE, cfg.fsync.0, MAX_BATCH_BYTES)
        .map_err(|e| format!("disk buffer {}: {e}", dir.display()))?;
    for d in &opened.damage {
        tracing::error!(component = %name, file = %d.path.display(), dropped_bytes = d.bad_bytes, why = d.why, "disk buffer segment torn or corrupt: its good batches are read, the rest is lost");
    }
    if opened.recovered > 0 {
        tracing::info!(component = %name, batches = opened.recovered, "disk buffer: the sink reads what it had not acknowledged before the last stop");
    }
    let bytes = metrics.gauge("spillway_buffer_bytes", "Bytes the sink's disk buffer holds.");
    let full_waits = metrics.counter(
        "spillway_buffer_full_waits_total",
        "Times the disk buffer was full and took no batch (`when_full: block`).",
    );
    let mut writer = opened.writer;
    let mut reader = opened.reader;
    let shared = reader.shared().clone();
    let settled_path = dir.join("settled");
    let mut settled = read_settled(&settled_path, opened.id);
    let replay_end = shared.end();
    let (mut tracker, mut acks) = AckTracker::new();
    // Journal record → rows, for batches counted in this run and not yet
    // settled by the sink.
    let mut counted: BTreeMap<u64, u64> = BTreeMap::new();
    let mut in_flight: HashMap<u64, u64> = HashMap::new();
    let mut pending: Option<Buffered> = None;
    let mut input_done = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    loop {
        // The next batch for the sink.
        while pending.is_none() {
            let Some(e) = reader.next_record() else { break };
            let seq = e.seq;
            if settled.contains(seq) {
                continue;
            }
            match decode(e.payload) {
                Ok((meta, data)) => {
                    let rows = data.num_rows() as u64;
                    if seq < replay_end {
                        ledger.created(rows);
                    }
                    counted.insert(seq, rows);
                    let (id, ack) = tracker.ack();
                    in_flight.insert(id, seq);
                    pending = Some(Buffered { batch: Batch::new(data, meta, Acks::one(ack)) });
                }
                Err(why) => {
                    tracing::error!(component = %name, record = seq, why, "a disk buffer record cannot be read back; it is skipped");
                    settled.insert(seq, seq);
                }
            }
        }
        let full = shared.bytes() >= cfg.max_size.get();
        let blocked = full && cfg.when_full == WhenFull::Block;
        let take = !(input_done || blocked);
        if input_done && pending.is_none() && reader.caught_up() {
            break;
        }
        if let Some(d) = drain_deadline
            && tokio::time::Instant::now() >= d
        {
            tracing::warn!(component = %name, "the sink did not read the disk buffer by the drain deadline: the rest stays there for the next start");
            break;
        }
        tokio::select! {
            b = input.recv(), if take => match b {
                Some(b) => {
                    let rows = b.rows() as u64;
                    ledger.received(rows);
                    if full {
                        events.dropped(DropReason::BufferFull, rows, &"the disk buffer is full (`when_full: drop_newest`)");
                        b.acks.settle(AckStatus::Rejected);
                        continue;
                    }
                    let seq = shared.end();
                    let payload = match encode(&b) {
                        Ok(p) => p,
                        Err(e) => {
                            events.dropped(DropReason::SinkError, rows, &format_args!("cannot encode a batch for the disk buffer: {e}"));
                            b.acks.settle(AckStatus::Rejected);
                            continue;
                        }
                    };
                    writer.append(b.meta.received_min_ns, [0; 16], 0, &payload);
                    match writer.commit() {
                        Ok(()) => {
                            counted.insert(seq, rows);
                            // Durable in the buffer: upstream may let go.
                            b.acks.settle(AckStatus::Delivered);
                        }
                        Err((_, e)) => {
                            events.dropped(DropReason::SinkError, rows, &format_args!("cannot write to the disk buffer: {e}"));
                            b.acks.settle(AckStatus::Rejected);
                        }
                    }
                }
                None => {
                    input_done = true;
                    drain_deadline = Some(tokio::time::Instant::now() + cfg.drain_timeout.get());
                }
            },
            permit = to_sink.reserve(), if pending.is_some() => match permit {
                Ok(p) => p.send(pending.take().expect("checked")),
                Err(_) => break,
            },
            Some(s) = acks.recv() => settle(s, &mut in_flight, &mut settled, &mut counted),
            _ = tick.tick() => {
                if full && cfg.when_full == WhenFull::Block {
                    full_waits.add(1);
                }
                checkpoint(&shared, &mut settled, &settled_path, opened.id);
                bytes.set(shared.bytes());
            }
            // Readable records appear without a wake-up: look again soon.
            _ = tokio::time::sleep(Duration::from_millis(20)), if pending.is_none() && !reader.caught_up() => {}
        }
    }
    // The sink's input ends; it settles what it holds as it finishes.
    drop(pending);
    drop(to_sink);
    drop(tracker);
    writer.finish();
    while let Some(s) = acks.recv().await {
        settle(s, &mut in_flight, &mut settled, &mut counted);
    }
    checkpoint(&shared, &mut settled, &settled_path, opened.id);
    bytes.set(shared.bytes());
    let left: u64 = counted.values().sum();
    if left > 0 {
        tracing::info!(component = %name, records = left, "records stay in the disk buffer (durable) for the next start");
        events.delivered(left);
    }
    Ok(())
}

fn settle(
    s: crate::ack::Settled,
    in_flight: &mut HashMap<u64, u64>,
    settled: &mut RangeSet,
    counted: &mut BTreeMap<u64, u64>,
) {
    let Some(seq) = in_flight.remove(&s.id) else { return };
    // Rejected: the sink counted the loss (`sink_error`); retrying a
    // permanent failure forever would stop the buffer.
    settled.insert(seq, seq);
    counted.remove(&seq);
}

#[derive(serde::Serialize, Deserialize)]
struct SettledFile {
    id: u64,
    ranges: Vec<(u64, u64)>,
}

fn read_settled(path: &std::path::Path, id: u64) -> RangeSet {
    let mut s = RangeSet::new();
    if let Some(f) = std::fs::read(path).ok().and_then(|b| serde_json::from_slice::<SettledFile>(&b).ok())
        && f.id == id
    {
        for (lo, hi) in f.ranges {
            s.insert(lo, hi);
        }
    }
    s
}

fn checkpoint(shared: &crate::journal::Shared, settled: &mut RangeSet, path: &std::path::Path, id: u64) {
    let start = shared.start();
    shared.release_below(settled.first_gap(start));
    settled.prune_below(shared.start());
    let f = SettledFile { id, ranges: settled.ranges().to_vec() };
    if let Ok(b) = serde_json::to_vec(&f)
        && let Err(e) = crate::journal::store(path, &b)
    {
        tracing::warn!(file = %path.display(), error = %e, "cannot write the disk buffer's settled position");
    }
}

/// A batch as a buffer record: its stream name and receive-time range,
/// then the rows in Arrow IPC.
fn encode(b: &Batch) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut out = Vec::with_capacity(b.data.get_array_memory_size() / 2 + 256);
    let name = b.meta.stream.as_bytes();
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&b.meta.received_min_ns.to_le_bytes());
    out.extend_from_slice(&b.meta.received_max_ns.to_le_bytes());
    let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut out, &b.data.schema())?;
    w.write(&b.data)?;
    w.finish()?;
    drop(w);
    Ok(out)
}

fn decode(p: &[u8]) -> Result<(BatchMeta, RecordBatch), &'static str> {
    let n = u16::from_le_bytes(p.get(..2).ok_or("short")?.try_into().map_err(|_| "short")?) as usize;
    let name = std::str::from_utf8(p.get(2..2 + n).ok_or("short")?).map_err(|_| "bad stream name")?;
    let at = 2 + n;
    let lo = i64::from_le_bytes(p.get(at..at + 8).ok_or("short")?.try_into().map_err(|_| "short")?);
    let hi = i64::from_le_bytes(p.get(at + 8..at + 16).ok_or("short")?.try_into().map_err(|_| "short")?);
    let mut r = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(&p[at + 16..]), None)
        .map_err(|_| "not Arrow IPC")?;
    let data = r.next().ok_or("no batch")?.map_err(|_| "unreadable batch")?;
    Ok((BatchMeta::new(Arc::from(name), lo, hi), data))
}
