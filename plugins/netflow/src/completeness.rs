//! Completeness records: per exporter and interval, what a flow source
//! received and what became of it, so a billing job can flag or correct an
//! incomplete customer hour.
//!
//! Every count the source's ledger line has is here, split by exporter:
//! `records` (decoded, emitted downstream) and each drop reason. Drops that
//! belong to no exporter (the kernel's full receive buffer, datagrams
//! refused at a stop, unreadable parts of a capture) are on rows whose
//! `exporter` is null. Summed over a run, `records` equals the ledger's
//! `emitted` and each `dropped_*` its drop count; `received` is their sum,
//! the ledger's `received`. Besides the ledger: `datagrams`, `parked_sets`
//! (data that waited for its template), `sequence_missing` (records, or
//! packets for v9 and datagrams/samples for sFlow, that never arrived) and
//! `sampling_unknown` (rows whose rate is not known).
//!
//! Windows are aligned to the interval (by receive time: the wall clock, or
//! a capture's timestamps) and a row is emitted once its window has passed
//! (or at the stop). Several receive workers may each emit a row for one
//! exporter and window (an exporter sending from several ports): sum by
//! (`exporter`, `window_start`).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, FixedSizeBinaryArray, RecordBatch, TimestampNanosecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use spillway_core::addr::Addr;
use spillway_core::ledger::DropReason;
use spillway_core::schema::{address_type, timestamp_type};

/// The drop reasons a flow source has, in column order.
const REASONS: [DropReason; 7] = [
    DropReason::Malformed,
    DropReason::NotAllowed,
    DropReason::TemplateTimeout,
    DropReason::TemplateMissing,
    DropReason::Evicted,
    DropReason::BufferFull,
    DropReason::Stopping,
];

/// Exporters with a row in one window of one worker; beyond it (a flood of
/// spoofed sources) counts go to the null-exporter row.
const MAX_EXPORTERS: usize = 1 << 16;

/// What one exporter did in one window.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub datagrams: u64,
    pub records: u64,
    pub parked_sets: u64,
    pub sequence_missing: u64,
    pub sampling_unknown: u64,
    /// By [`REASONS`].
    pub dropped: [u64; REASONS.len()],
}

impl Counts {
    /// Adds `n` records dropped for `reason`.
    pub fn drop(&mut self, reason: DropReason, n: u64) {
        if let Some(i) = REASONS.iter().position(|r| *r == reason) {
            self.dropped[i] += n;
        }
    }
}

/// Schema of the `completeness` output.
pub fn schema() -> SchemaRef {
    static SCHEMA: std::sync::OnceLock<SchemaRef> = std::sync::OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let mut f = vec![
                Field::new("window_start", timestamp_type(), false),
                Field::new("window_end", timestamp_type(), false),
                Field::new("exporter", address_type(), true),
                Field::new("received", DataType::UInt64, false),
                Field::new("records", DataType::UInt64, false),
                Field::new("datagrams", DataType::UInt64, false),
                Field::new("parked_sets", DataType::UInt64, false),
                Field::new("sequence_missing", DataType::UInt64, false),
                Field::new("sampling_unknown", DataType::UInt64, false),
            ];
            f.extend(
                REASONS
                    .iter()
                    .map(|r| Field::new(format!("dropped_{}", r.as_str()), DataType::UInt64, false)),
            );
            Arc::new(Schema::new(f))
        })
        .clone()
}

/// The rows of one worker.
pub struct Completeness {
    interval_ns: i64,
    /// Start of the open window; `None` before the first count.
    window: Option<i64>,
    open: HashMap<Option<Addr>, Counts>,
    closed: Vec<(i64, Option<Addr>, Counts)>,
}

impl Completeness {
    /// Rows per `interval`.
    pub fn new(interval: std::time::Duration) -> Self {
        let interval_ns = (interval.as_nanos().min(i64::MAX as u128) as i64).max(1);
        Self { interval_ns, window: None, open: HashMap::new(), closed: Vec::new() }
    }

    /// The counts of `exporter` (`None`: unattributable) at `now` (ns).
    pub fn at(&mut self, now: i64, exporter: Option<Addr>) -> &mut Counts {
        self.roll(now);
        if self.window.is_none() {
            self.window = Some(now - now.rem_euclid(self.interval_ns));
        }
        let key =
            if exporter.is_some() && self.open.len() >= MAX_EXPORTERS && !self.open.contains_key(&exporter) {
                None
            } else {
                exporter
            };
        self.open.entry(key).or_default()
    }

    /// Closes the open window if `now` is past it.
    pub fn roll(&mut self, now: i64) {
        if let Some(w) = self.window
            && now >= w.saturating_add(self.interval_ns)
        {
            self.close();
        }
    }

    /// Closes the open window (at a stop).
    pub fn close(&mut self) {
        if let Some(w) = self.window.take() {
            self.closed.extend(self.open.drain().map(|(e, c)| (w, e, c)));
        }
    }

    /// Closed rows waiting.
    pub fn len(&self) -> usize {
        self.closed.len()
    }

    /// Whether no closed row waits.
    pub fn is_empty(&self) -> bool {
        self.closed.is_empty()
    }

    /// The closed rows as a batch.
    pub fn take(&mut self) -> Option<RecordBatch> {
        if self.closed.is_empty() {
            return None;
        }
        let mut rows = std::mem::take(&mut self.closed);
        rows.sort_by_key(|(w, e, _)| (*w, *e));
        let ts = |f: &dyn Fn(i64) -> i64| -> ArrayRef {
            Arc::new(
                TimestampNanosecondArray::from_iter_values(rows.iter().map(|r| f(r.0))).with_timezone("UTC"),
            )
        };
        let n = |f: &dyn Fn(&Counts) -> u64| -> ArrayRef {
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| f(&r.2))))
        };
        let mut columns = vec![
            ts(&|w| w),
            ts(&|w| w.saturating_add(self.interval_ns)),
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(rows.iter().map(|r| r.1), 16)
                    .expect("16-byte addresses"),
            ) as ArrayRef,
            n(&|c| c.records + c.dropped.iter().sum::<u64>()),
            n(&|c| c.records),
            n(&|c| c.datagrams),
            n(&|c| c.parked_sets),
            n(&|c| c.sequence_missing),
            n(&|c| c.sampling_unknown),
        ];
        for i in 0..REASONS.len() {
            columns.push(n(&|c| c.dropped[i]));
        }
        Some(RecordBatch::try_new(schema(), columns).expect("columns match the completeness schema"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_roll_and_every_count_lands_in_one_row() {
        let mut c = Completeness::new(std::time::Duration::from_secs(60));
        let s = 1_000_000_000i64;
        let a = Some(Addr::v4(1));
        c.at(61 * s, a).records += 3;
        c.at(62 * s, None).drop(DropReason::BufferFull, 2);
        c.at(119 * s, a).drop(DropReason::Malformed, 1);
        assert!(c.is_empty(), "the window 60..120 is still open");
        c.at(120 * s, a).records += 5;
        assert_eq!(c.len(), 2);
        c.close();
        let b = c.take().unwrap();
        assert_eq!(b.num_rows(), 3);
        let col =
            |n: &str| b.column_by_name(n).unwrap().as_any().downcast_ref::<UInt64Array>().unwrap().clone();
        assert_eq!(col("records").values().to_vec(), vec![0, 3, 5], "null exporter sorts first");
        assert_eq!(col("received").values().to_vec(), vec![2, 4, 5]);
        assert_eq!(col("dropped_buffer_full").values().to_vec(), vec![2, 0, 0]);
    }
}
