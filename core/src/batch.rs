//! The unit that flows between components.

use std::sync::Arc;

use arrow::array::RecordBatch;

use crate::ack::Acks;

/// Where a batch came from and when its records were received.
#[derive(Clone, Debug)]
pub struct BatchMeta {
    /// The name of the source that produced the records.
    pub stream: Arc<str>,
    /// Earliest receive time in the batch, ns since the epoch (0 if unknown).
    pub received_min_ns: i64,
    /// Latest receive time in the batch, ns since the epoch (0 if unknown).
    pub received_max_ns: i64,
}

impl BatchMeta {
    /// Metadata for a batch from `stream` received within `[min, max]` ns.
    pub fn new(stream: Arc<str>, received_min_ns: i64, received_max_ns: i64) -> Self {
        Self { stream, received_min_ns, received_max_ns }
    }
}

/// An Arrow record batch plus its metadata and acknowledgement handles.
///
/// Cloning is cheap: Arrow buffers are reference counted and the
/// acknowledgement handles are shared, so a fan-out clone settles the same
/// acknowledgement as the original.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The records.
    pub data: RecordBatch,
    /// Provenance.
    pub meta: BatchMeta,
    /// Acknowledgement handles shared by every clone of this batch.
    pub acks: Acks,
}

impl Batch {
    /// A batch with the given parts.
    pub fn new(data: RecordBatch, meta: BatchMeta, acks: Acks) -> Self {
        Self { data, meta, acks }
    }

    /// Number of records.
    pub fn rows(&self) -> usize {
        self.data.num_rows()
    }

    /// A batch with new records that keeps this batch's metadata and
    /// acknowledgement handles (what a transform emits).
    pub fn with_data(&self, data: RecordBatch) -> Self {
        Self { data, meta: self.meta.clone(), acks: self.acks.clone() }
    }
}
