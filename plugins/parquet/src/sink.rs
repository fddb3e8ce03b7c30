//! The sink itself: config, open files, rotation and the durable close.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Deserialize;
use spillway_core::ack::{AckStatus, Acks};
use spillway_core::component::{ComponentError, Sink, SinkContext, SinkInput};
use spillway_core::config::{ByteSize, HumanDuration};
use spillway_core::events::Events;
use spillway_core::ledger::DropReason;
use spillway_core::registry::{BuildContext, BuildError, FieldIssue, SinkConfig};
use spillway_core::schema::address_type;

use crate::partition::{Partitioner, check_pattern};
use crate::recover::{TMP_SUFFIX, recover};

/// Config of the `parquet` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetConfig {
    /// Root directory of the dataset; created if missing.
    pub path: PathBuf,
    /// Hive-style partition directories as a strftime pattern over
    /// `time_column`, e.g. `dt=%Y-%m-%d/hour=%H`. No partitions when absent.
    #[serde(default)]
    pub partition: Option<String>,
    /// The timestamp column that chooses the partition.
    #[serde(default = "default_time_column")]
    pub time_column: String,
    /// When to close a file and start the next.
    #[serde(default)]
    pub rotate: Rotate,
    /// Rows per row group. Large groups (the default, 1 Mi rows) make
    /// analytics scans fast; smaller ones lower the writer's memory.
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// Page compression: `zstd` (the default), `lz4` (LZ4_RAW: several
    /// times cheaper to write, larger files), `snappy` or `none`. A column
    /// chunk whose first page the codec does not shrink by a sixteenth is
    /// stored uncompressed (unless its dictionary may still grow).
    #[serde(default)]
    pub compression: Codec,
    /// zstd level, 1 (fast; the default) to 22 (small); only with
    /// `compression: zstd`. Level 1 costs about two thirds of level 3's CPU
    /// for files 3–12 % larger (docs/performance.md).
    #[serde(default)]
    pub zstd_level: Option<i32>,
    /// How address columns are stored: `string` (human form, the default,
    /// what every reader shows as an address) or `binary` (16 bytes,
    /// v4-mapped; smaller and faster to filter by prefix).
    #[serde(default)]
    pub addresses: AddressForm,
    /// How integer and timestamp columns are encoded where they have no
    /// dictionary:
    /// `delta` (DELTA_BINARY_PACKED, the default: neighbouring counters and
    /// times differ by little, so they pack to a few bits each, smaller and
    /// cheaper than zstd over PLAIN) or `plain`. DuckDB, pyarrow and Spark
    /// from 3.0 read both; `plain` is for older readers.
    #[serde(default)]
    pub integers: IntegerEncoding,
    /// The unit timestamps are stored in: `nanoseconds` (the default, as
    /// the records hold them) or `microseconds`, which Spark and BigQuery
    /// read as their own timestamps (Spark has no nanosecond type).
    #[serde(default)]
    pub time_unit: StoredTimeUnit,
    /// Most files one writer has open at once (one per active partition);
    /// its oldest is closed when a new partition needs a file beyond this.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
    /// Columns that may be dictionary-encoded; by default (unset) every
    /// column. A column chunk keeps its dictionary only where its first
    /// page with values is smaller that way than PLAIN or delta-packed
    /// (so random addresses and counters leave it after one page); names
    /// the input lacks are ignored, and `[]` turns dictionaries off.
    #[serde(default)]
    pub dictionary: Option<Vec<String>>,
    /// Files written at once, each by its own thread: batches go to them
    /// in turn (skipping a busy one when another has room), so each
    /// partition has this many files open. Encoding and
    /// compressing one file is a single thread's work; more writers use
    /// more cores (docs/performance.md).
    #[serde(default = "default_writers")]
    pub writers: usize,
}

/// File rotation thresholds; whichever comes first closes the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// Rows per file.
    #[serde(default = "default_max_rows")]
    pub max_rows: u64,
    /// Bytes per file (written plus buffered).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// Age of a file since its first row. This is also the longest a record
    /// waits before it is durable and acknowledged.
    #[serde(default = "default_max_age")]
    pub max_age: HumanDuration,
}

impl Default for Rotate {
    fn default() -> Self {
        Self { max_rows: default_max_rows(), max_bytes: default_max_bytes(), max_age: default_max_age() }
    }
}

/// Page compression codecs (docs/performance.md measures them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Codec {
    /// zstd at `zstd_level`.
    #[default]
    Zstd,
    /// LZ4_RAW (read by DuckDB and pyarrow, and by Spark from 3.5, whose
    /// parquet-mr 1.13 added it; older Spark cannot read these files).
    Lz4,
    /// Snappy.
    Snappy,
    /// Uncompressed.
    None,
}

/// How integer columns are encoded (docs/operations.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntegerEncoding {
    /// DELTA_BINARY_PACKED.
    #[default]
    Delta,
    /// PLAIN.
    Plain,
}

/// The unit timestamps are stored in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoredTimeUnit {
    /// TIMESTAMP(NANOS).
    #[default]
    Nanoseconds,
    /// TIMESTAMP(MICROS): each value divided by 1,000, toward zero.
    Microseconds,
}

/// How addresses are stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressForm {
    /// `"192.0.2.1"`, `"2001:db8::1"`.
    #[default]
    String,
    /// 16 bytes, IPv4 v4-mapped.
    Binary,
}

/// Whether a top-level column of type `dt` is stored as INT32 or INT64,
/// which DELTA_BINARY_PACKED encodes.
fn delta_encodable(dt: &DataType) -> bool {
    dt.is_integer()
        || matches!(
            dt,
            DataType::Timestamp(..)
                | DataType::Date32
                | DataType::Date64
                | DataType::Time32(_)
                | DataType::Time64(_)
                | DataType::Duration(_)
        )
}

fn default_time_column() -> String {
    "time_received".into()
}
fn default_row_group_rows() -> usize {
    1 << 20
}
fn default_writers() -> usize {
    2
}
fn default_max_open_files() -> usize {
    256
}

fn default_max_rows() -> u64 {
    10_000_000
}
fn default_max_bytes() -> ByteSize {
    ByteSize(256 << 20)
}
fn default_max_age() -> HumanDuration {
    HumanDuration::from_secs(300)
}

impl SinkConfig for ParquetConfig {
    fn validate(&self) -> Vec<FieldIssue> {
        let mut issues = Vec::new();
        if self.path.as_os_str().is_empty() {
            issues.push(FieldIssue::new("path", "must not be empty"));
        } else if let Some(i) = spillway_core::config::paths::output_dir("path", &self.path) {
            issues.push(i);
        }
        if let Some(p) = &self.partition
            && let Err(e) = check_pattern(p)
        {
            issues.push(FieldIssue::new("partition", e));
        }
        if self.rotate.max_rows == 0 {
            issues.push(FieldIssue::new("rotate.max_rows", "must be at least 1"));
        }
        if self.rotate.max_bytes.get() < 4096 {
            issues.push(FieldIssue::new("rotate.max_bytes", "must be at least 4KiB"));
        }
        if self.rotate.max_age.get() < Duration::from_millis(100) {
            issues.push(FieldIssue::new("rotate.max_age", "must be at least 100ms"));
        }
        if self.row_group_rows == 0 {
            issues.push(FieldIssue::new("row_group_rows", "must be at least 1"));
        }
        match self.zstd_level {
            Some(l) if l == 0 || ZstdLevel::try_new(l).is_err() => {
                issues.push(FieldIssue::new(
                    "zstd_level",
                    "must be between -131072 and 22 (0 is not a level; below 1 are zstd's fast levels)",
                ));
            }
            Some(_) if self.compression != Codec::Zstd => {
                issues.push(FieldIssue::new("zstd_level", "applies only to `compression: zstd`"));
            }
            _ => {}
        }
        if self.max_open_files == 0 {
            issues.push(FieldIssue::new("max_open_files", "must be at least 1"));
        }
        if !(1..=64).contains(&self.writers) {
            issues.push(FieldIssue::new("writers", "must be between 1 and 64"));
        }
        issues
    }

    fn check_input(&self, input: &SchemaRef) -> Vec<FieldIssue> {
        if self.partition.is_none() {
            return Vec::new();
        }
        match input.field_with_name(&self.time_column) {
            Err(_) => vec![FieldIssue::new(
                "time_column",
                format!("there is no column `{}` to partition by", self.time_column),
            )],
            Ok(f) if f.data_type() != &spillway_core::schema::timestamp_type() => vec![FieldIssue::new(
                "time_column",
                format!("column `{}` is {}, not a nanosecond UTC timestamp", self.time_column, f.data_type()),
            )],
            Ok(_) => Vec::new(),
        }
    }

    fn build(&self, cx: &BuildContext, input: &SchemaRef) -> Result<Box<dyn Sink>, BuildError> {
        let level =
            ZstdLevel::try_new(self.zstd_level.unwrap_or(1)).map_err(|e| BuildError(e.to_string()))?;
        let compression = match self.compression {
            Codec::Zstd => Compression::ZSTD(level),
            Codec::Lz4 => Compression::LZ4_RAW,
            Codec::Snappy => Compression::SNAPPY,
            Codec::None => Compression::UNCOMPRESSED,
        };
        let props = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_created_by(format!("spillway {}", env!("CARGO_PKG_VERSION")))
            // Every column by default: each chunk weighs its dictionary on
            // its first page (encode.rs) and leaves it where it does not pay.
            .set_dictionary_enabled(self.dictionary.is_none())
            .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Chunk);
        let props = self.dictionary.iter().flatten().fold(props, |p, c| {
            p.set_column_dictionary_enabled(parquet::schema::types::ColumnPath::from(c.as_str()), true)
        });
        // Integer columns, where a chunk leaves its dictionary or has none
        // (and after a dictionary outgrows its page).
        let props = match self.integers {
            IntegerEncoding::Plain => props,
            IntegerEncoding::Delta => {
                input.fields().iter().filter(|f| delta_encodable(f.data_type())).fold(props, |p, f| {
                    p.set_column_encoding(
                        parquet::schema::types::ColumnPath::from(f.name().as_str()),
                        parquet::basic::Encoding::DELTA_BINARY_PACKED,
                    )
                })
            }
        };
        let converted: Vec<bool> = input
            .fields()
            .iter()
            .map(|f| self.addresses == AddressForm::String && f.data_type() == &address_type())
            .collect();
        // No min/max for addresses as text: text order is not address
        // order ("10.0.0.10" < "10.0.0.9"), so they would prune only
        // equality filters, which a row group of many exporters' flows
        // rarely lets them, and comparing every value cost ~4 % of the
        // collector's CPU. Binary addresses keep theirs (byte order is
        // address order).
        let props = input
            .fields()
            .iter()
            .zip(&converted)
            .filter(|(_, c)| **c)
            .fold(props, |p, (f, _)| {
                p.set_column_statistics_enabled(
                    parquet::schema::types::ColumnPath::from(f.name().as_str()),
                    parquet::file::properties::EnabledStatistics::None,
                )
            })
            .build();
        let schema = Arc::new(Schema::new_with_metadata(
            input
                .fields()
                .iter()
                .zip(&converted)
                .map(|(f, c)| match f.data_type() {
                    _ if *c => Arc::new(Field::new(f.name(), DataType::Utf8, f.is_nullable())),
                    DataType::Timestamp(TimeUnit::Nanosecond, tz)
                        if self.time_unit == StoredTimeUnit::Microseconds =>
                    {
                        Arc::new(
                            f.as_ref()
                                .clone()
                                .with_data_type(DataType::Timestamp(TimeUnit::Microsecond, tz.clone())),
                        )
                    }
                    _ => f.clone(),
                })
                .collect::<Vec<_>>(),
            input.metadata().clone(),
        ));
        let time_index = input.index_of(&self.time_column).ok();
        let root = cx.resolve(&self.path);
        crate::recover::read_journal_marks(&root, &cx.name);
        let instance = instance_id();
        let mut writers = Vec::with_capacity(self.writers);
        for i in 0..self.writers {
            let partitioner = match &self.partition {
                Some(p) => Some(Partitioner::new(p).map_err(BuildError)?),
                None => None,
            };
            writers.push(Writer {
                root: root.clone(),
                props: props.clone(),
                schema: schema.clone(),
                input: input.clone(),
                partitioner,
                time_index,
                rotate: self.rotate.clone(),
                max_open_files: self.max_open_files,
                open: HashMap::new(),
                // Distinct per writer, so their file names never collide.
                instance: instance.wrapping_add(i as u32),
                seq: 0,
                events: None,
                name: cx.name.clone(),
                replays_skipped: None,
            });
        }
        Ok(Box::new(ParquetSink { writers }))
    }
}

spillway_core::register_sink! {
    config: ParquetConfig,
    name: "parquet",
    description: "Writes zstd Parquet files in Hive-style time partitions; acknowledges after fsync and rename.",
    example: "type: parquet\ninputs: [flows]\npath: ./data/flows\npartition: \"dt=%Y-%m-%d/hour=%H\"\nrotate: { max_age: 5m, max_bytes: 256MiB }\n",
}

fn instance_id() -> u32 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    std::process::id().rotate_left(16) ^ nanos
}

struct ParquetSink {
    writers: Vec<Writer>,
}

/// What the sink's task hands a writer thread.
enum Job {
    Write(spillway_core::Batch),
    /// Close the files older than `rotate.max_age`.
    Age,
}

struct OpenFile {
    writer: crate::file::FileWriter<std::fs::File>,
    handle: std::fs::File,
    tmp: PathBuf,
    dest: PathBuf,
    rows: u64,
    opened: Instant,
    acks: Acks,
    /// The journal records every row of which is in this file (only
    /// batches the file holds whole): written in its metadata, so a replay
    /// after a crash skips them.
    marks: RangeMarks,
}

/// Journal ranges per journal.
type RangeMarks = HashMap<std::sync::Arc<str>, spillway_core::journal::RangeSet>;

/// The key of the file metadata that names the journal records a file
/// holds: a JSON object of journal name → list of inclusive
/// `[first, last]` ranges of sequence numbers.
pub const JOURNAL_KEY: &str = "spillway.journal";

struct Writer {
    root: PathBuf,
    props: WriterProperties,
    /// The file's schema (addresses as text when so configured).
    schema: SchemaRef,
    /// The batches' schema.
    input: SchemaRef,
    partitioner: Option<Partitioner>,
    time_index: Option<usize>,
    rotate: Rotate,
    max_open_files: usize,
    open: HashMap<String, OpenFile>,
    instance: u32,
    seq: u64,
    events: Option<Events>,
    name: String,
    /// Replayed rows skipped: committed in an earlier run.
    replays_skipped: Option<spillway_core::metrics::Counter>,
}

#[async_trait]
impl Sink for ParquetSink {
    async fn run(self: Box<Self>, mut input: SinkInput, cx: SinkContext) -> Result<(), ComponentError> {
        let replays_skipped = cx.metrics.counter(
            "spillway_parquet_replays_skipped_total",
            "Replayed journal rows not written again: a committed file holds them (counted delivered).",
        );
        let root = self.writers[0].root.clone();
        let max_age = self.writers[0].rotate.max_age.get();
        std::fs::create_dir_all(&root)
            .map_err(|e| ComponentError::new(format!("cannot create {}: {e}", root.display())))?;
        match recover(&root) {
            Ok(moved) if !moved.is_empty() => tracing::warn!(
                component = %cx.name,
                files = moved.len(),
                dir = %root.join(crate::INCOMPLETE_DIR).display(),
                "moved temporary files left by an earlier crash out of the dataset; their records were never acknowledged"
            ),
            Ok(_) => {}
            Err(e) => {
                return Err(ComponentError::new(format!(
                    "cannot check {} for leftovers: {e}",
                    root.display()
                )));
            }
        }
        // Encoding, compression and fsync block: each writer is a thread
        // of its own, fed batches in turn; the task only hands them out.
        let mut queues = Vec::new();
        let mut threads = Vec::new();
        for (i, mut w) in self.writers.into_iter().enumerate() {
            w.events = Some(cx.events.clone());
            w.replays_skipped = Some(replays_skipped.clone());
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Job>(1);
            let thread = std::thread::Builder::new()
                .name(format!("parquet-{i}"))
                .spawn(move || {
                    while let Some(job) = rx.blocking_recv() {
                        match job {
                            Job::Write(b) => w.write(b),
                            Job::Age => w.close_aged(),
                        }
                    }
                    w.close_all();
                })
                .map_err(|e| ComponentError::new(format!("cannot start a writer thread: {e}")))?;
            queues.push(tx);
            threads.push(thread);
        }
        let period = (max_age / 4).clamp(Duration::from_millis(25), Duration::from_secs(1));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next = 0;
        let mut failed = false;
        loop {
            tokio::select! {
                b = input.recv() => {
                    let Some(b) = b else { break };
                    // To the next writer with room, in turn (one busy
                    // closing and syncing a file does not hold up the
                    // others); when all are busy, wait for the next one
                    // (backpressure): never dropped.
                    match hand_out(&queues, &mut next, Job::Write(b)).await {
                        Ok(()) => {}
                        Err(job) => {
                            if let Job::Write(b) = job {
                                cx.events.dropped(DropReason::SinkError, b.rows() as u64, &"the Parquet writer thread is gone");
                                b.acks.settle(AckStatus::Rejected);
                            }
                            failed = true;
                            break;
                        }
                    }
                }
                _ = tick.tick() => {
                    for q in &queues {
                        // A busy writer ages its files on the next tick.
                        let _ = q.try_send(Job::Age);
                    }
                }
            }
        }
        drop(queues);
        let joined = tokio::task::spawn_blocking(move || {
            let ok: Vec<bool> = threads.into_iter().map(|t| t.join().is_ok()).collect();
            ok.into_iter().all(|ok| ok)
        })
        .await
        .map_err(|e| ComponentError::new(format!("writer threads failed: {e}")))?;
        if failed || !joined {
            return Err(ComponentError::new("a Parquet writer thread panicked"));
        }
        Ok(())
    }
}

/// Gives `job` to the first writer from `next` on with room, or waits for
/// `next` when none has; `next` moves past the writer that took it. The
/// job back when a writer thread is gone.
async fn hand_out(queues: &[tokio::sync::mpsc::Sender<Job>], next: &mut usize, job: Job) -> Result<(), Job> {
    use tokio::sync::mpsc::error::TrySendError;
    let n = queues.len();
    let mut job = job;
    for k in 0..n {
        let i = (*next + k) % n;
        match queues[i].try_send(job) {
            Ok(()) => {
                *next = (i + 1) % n;
                return Ok(());
            }
            Err(TrySendError::Full(j)) => job = j,
            Err(TrySendError::Closed(j)) => return Err(j),
        }
    }
    let i = *next;
    *next = (i + 1) % n;
    queues[i].send(job).await.map_err(|e| e.0)
}

impl Writer {
    fn events(&self) -> &Events {
        self.events.as_ref().expect("set before the first write")
    }

    fn write(&mut self, batch: spillway_core::Batch) {
        if !batch.acks.is_empty()
            && batch.acks.marks().count() == batch.acks.len()
            && batch.acks.marks().all(|m| spillway_core::journal::committed().holds(&self.name, m))
        {
            // A replay after a crash of records a committed file holds.
            let rows = batch.rows() as u64;
            if let Some(c) = &self.replays_skipped {
                c.add(rows);
            }
            self.events().delivered(rows);
            batch.acks.settle(AckStatus::Delivered);
            return;
        }
        let data = batch.data.clone();
        let times = self.time_index.and_then(|i| data.column(i).as_primitive_opt().cloned());
        match (&mut self.partitioner, times) {
            (Some(p), Some(times)) => {
                let mut parts: Vec<(String, RecordBatch)> = Vec::new();
                let mut error = None;
                p.split(&times, |dir, rows| {
                    if rows.len() == data.num_rows() {
                        parts.push((dir.to_string(), data.clone()));
                        return;
                    }
                    let idx = arrow::array::UInt32Array::from(rows.to_vec());
                    match arrow::compute::take_record_batch(&data, &idx) {
                        Ok(b) => parts.push((dir.to_string(), b)),
                        Err(e) => error = Some(e),
                    }
                });
                if let Some(e) = error {
                    self.fail_batch(&batch, &format!("cannot split the batch into partitions: {e}"));
                    return;
                }
                let whole = parts.len() == 1;
                for (dir, part) in parts {
                    self.append(&dir, part, &batch.acks, whole);
                }
            }
            _ => self.append("", data, &batch.acks, true),
        }
    }

    fn fail_batch(&self, batch: &spillway_core::Batch, why: &str) {
        self.events().dropped(DropReason::SinkError, batch.rows() as u64, &why);
        batch.acks.settle(AckStatus::Rejected);
    }

    /// Appends rows to the partition's open file, splitting them across
    /// files so that no file exceeds `rotate.max_rows`.
    fn append(&mut self, dir: &str, mut data: RecordBatch, acks: &Acks, mut whole: bool) {
        while data.num_rows() > 0 {
            if !self.open.contains_key(dir) {
                if self.open.len() >= self.max_open_files
                    && let Some(oldest) =
                        self.open.iter().min_by_key(|(_, f)| f.opened).map(|(k, _)| k.clone())
                {
                    self.finish(&oldest);
                }
                match self.create(dir) {
                    Ok(f) => {
                        self.open.insert(dir.to_string(), f);
                    }
                    Err(e) => {
                        let rows = data.num_rows() as u64;
                        self.events().dropped(
                            DropReason::SinkError,
                            rows,
                            &format_args!("cannot create a Parquet file in partition `{dir}`: {e}"),
                        );
                        acks.settle(AckStatus::Rejected);
                        return;
                    }
                }
            }
            let max_rows = self.rotate.max_rows;
            let file = self.open.get_mut(dir).expect("just opened");
            let room = max_rows.saturating_sub(file.rows).max(1) as usize;
            // A batch that names journal records goes whole into one file
            // when it can (so the file's marks can name them): it starts
            // the next file rather than being split.
            if whole
                && file.rows > 0
                && data.num_rows() > room
                && data.num_rows() as u64 <= max_rows
                && acks.marks().next().is_some()
            {
                self.finish(dir);
                continue;
            }
            let part = if data.num_rows() <= room {
                std::mem::replace(&mut data, RecordBatch::new_empty(self.input.clone()))
            } else {
                let head = data.slice(0, room);
                data = data.slice(room, data.num_rows() - room);
                whole = false;
                head
            };
            if whole {
                for m in acks.marks() {
                    let set = file.marks.entry(m.journal.clone()).or_default();
                    for &(lo, hi) in &m.ranges {
                        set.insert(lo, hi);
                    }
                }
            }
            file.acks.extend(acks);
            file.rows += part.num_rows() as u64;
            if let Err(e) = file.writer.write(&part) {
                let why = format!("write failed: {e}");
                self.abandon(dir, &why);
                continue;
            }
            let size = file.writer.bytes_written() + file.writer.in_progress_size();
            if file.rows >= max_rows || size as u64 >= self.rotate.max_bytes.get() {
                self.finish(dir);
            }
        }
    }

    fn create(&mut self, dir: &str) -> Result<OpenFile, String> {
        let parent = if dir.is_empty() { self.root.clone() } else { self.root.join(dir) };
        std::fs::create_dir_all(&parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        self.seq += 1;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let base = format!("part-{stamp}-{:08x}-{:06}", self.instance, self.seq);
        let tmp = parent.join(format!(".{base}{TMP_SUFFIX}"));
        let dest = parent.join(format!("{base}.parquet"));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        let handle = file.try_clone().map_err(|e| e.to_string())?;
        let writer =
            crate::file::FileWriter::try_new(file, self.input.clone(), self.schema.clone(), &self.props)
                .map_err(|e| format!("cannot start a Parquet writer: {e}"))?;
        Ok(OpenFile {
            writer,
            handle,
            tmp,
            dest,
            rows: 0,
            opened: Instant::now(),
            acks: Acks::none(),
            marks: HashMap::new(),
        })
    }

    /// Closes, syncs and renames one file, then acknowledges its records.
    fn finish(&mut self, dir: &str) {
        let Some(f) = self.open.remove(dir) else { return };
        let OpenFile { mut writer, handle, tmp, dest, rows, acks, marks, .. } = f;
        if !marks.is_empty() {
            let json: serde_json::Map<String, serde_json::Value> =
                marks.iter().map(|(j, s)| (j.to_string(), serde_json::json!(s.ranges()))).collect();
            writer.append_key_value_metadata(parquet::file::metadata::KeyValue::new(
                JOURNAL_KEY.to_string(),
                serde_json::Value::Object(json).to_string(),
            ));
        }
        let result = writer
            .close()
            .map_err(|e| format!("cannot finish the file: {e}"))
            .and_then(|_| handle.sync_all().map_err(|e| format!("fsync failed: {e}")))
            .and_then(|_| std::fs::rename(&tmp, &dest).map_err(|e| format!("rename failed: {e}")))
            .and_then(|_| sync_dir(dest.parent().unwrap_or(Path::new("."))));
        match result {
            Ok(()) => {
                tracing::debug!(component = %self.name, file = %dest.display(), rows, "Parquet file is durable");
                for (j, s) in &marks {
                    spillway_core::journal::committed().add(j, &self.name, s.ranges());
                }
                self.events().delivered(rows);
                acks.settle(AckStatus::Delivered);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                self.events().dropped(
                    DropReason::SinkError,
                    rows,
                    &format_args!("Parquet file {} lost: {e}", tmp.display()),
                );
                acks.settle(AckStatus::Rejected);
            }
        }
    }

    /// Gives up on an open file after a write error.
    fn abandon(&mut self, dir: &str, why: &str) {
        let Some(f) = self.open.remove(dir) else { return };
        let _ = std::fs::remove_file(&f.tmp);
        self.events().dropped(
            DropReason::SinkError,
            f.rows,
            &format_args!("Parquet file {} abandoned: {why}", f.tmp.display()),
        );
        f.acks.settle(AckStatus::Rejected);
    }

    fn close_aged(&mut self) {
        let max_age = self.rotate.max_age.get();
        let aged: Vec<String> =
            self.open.iter().filter(|(_, f)| f.opened.elapsed() >= max_age).map(|(k, _)| k.clone()).collect();
        for dir in aged {
            self.finish(&dir);
        }
    }

    fn close_all(mut self) {
        let dirs: Vec<String> = self.open.keys().cloned().collect();
        for dir in dirs {
            self.finish(&dir);
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("fsync of directory {} failed: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs of one address reuse the text written before; nulls between
    /// them and changes of address do not confuse that.
    #[test]
    fn address_text_is_each_rows_own() {
        let a = spillway_core::addr::Addr::from(std::net::Ipv4Addr::new(192, 0, 2, 1));
        let b = spillway_core::addr::Addr::from("2001:db8::7".parse::<std::net::IpAddr>().unwrap());
        let rows = [Some(a), Some(a), None, Some(a), Some(b), Some(b), None, None, Some(a), Some(b), Some(a)];
        let col = arrow::array::FixedSizeBinaryArray::try_from_sparse_iter_with_size(
            rows.iter().map(|r| r.map(|x| *x.octets())),
            16,
        )
        .unwrap();
        let text = crate::file::addresses_to_strings(&col);
        let text = text.as_string::<i32>();
        let want: Vec<Option<String>> = rows.iter().map(|r| r.map(|x| x.to_string())).collect();
        let got: Vec<Option<String>> = text.iter().map(|t| t.map(str::to_string)).collect();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn a_busy_writer_does_not_hold_up_the_others() {
        let (txs, mut rxs): (Vec<_>, Vec<_>) = (0..3).map(|_| tokio::sync::mpsc::channel::<Job>(1)).unzip();
        let mut next = 0;
        // In turn while every writer has room.
        for _ in 0..2 {
            assert!(hand_out(&txs, &mut next, Job::Age).await.is_ok());
        }
        assert_eq!(next, 2);
        assert!(rxs[0].try_recv().is_ok() && rxs[1].try_recv().is_ok());
        // Writer 2 busy (its queue full): the job goes to the next with room.
        txs[2].try_send(Job::Age).unwrap();
        assert!(hand_out(&txs, &mut next, Job::Age).await.is_ok());
        assert!(rxs[0].try_recv().is_ok(), "skipped the busy writer");
        assert_eq!(next, 1);
        // A writer whose thread is gone gives the job back.
        drop(rxs.remove(1));
        assert!(hand_out(&txs, &mut next, Job::Age).await.is_err());
    }
}
