//! One decoded flow record on the stack, and the column buffers of the flow
//! schema it is appended to.
//!
//! The columns are plain `Vec`s (values, plus one `bool` per row for
//! nullable columns) rather than Arrow's builders: appending is a `Vec::push`
//! with no bit twiddling, and `finish` hands the vectors to Arrow without a
//! copy. Capacity is reserved for a whole batch, so nothing allocates per
//! record.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeBinaryArray, PrimitiveArray, RecordBatch, StringArray, TimestampNanosecondArray,
};
use arrow::buffer::{Buffer, NullBuffer, ScalarBuffer};
use arrow::datatypes::{ArrowPrimitiveType, UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use spillway_core::schema::{SamplingSource, flow_schema};

/// The fields of one flow record, as decoded. `None` is "not exported".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Row {
    pub flow_start: Option<i64>,
    pub flow_end: Option<i64>,
    pub src_addr: Option<[u8; 16]>,
    pub dst_addr: Option<[u8; 16]>,
    pub next_hop: Option<[u8; 16]>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub protocol: Option<u8>,
    pub tcp_flags: Option<u16>,
    pub tos: Option<u8>,
    pub in_if: Option<u32>,
    pub out_if: Option<u32>,
    pub bytes: Option<u64>,
    pub packets: Option<u64>,
    pub src_as: Option<u32>,
    pub dst_as: Option<u32>,
    pub src_mask: Option<u8>,
    pub dst_mask: Option<u8>,
    pub vlan: Option<u16>,
    pub direction: Option<u8>,
    pub sampling_rate: u32,
    pub sampling_source: Option<SamplingSource>,
}

/// Per-message context shared by its records.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub time_received: i64,
    pub exporter: [u8; 16],
    pub domain: u32,
    pub sequence: u32,
    pub version: u16,
}

/// A nullable column being filled.
struct Col<T> {
    values: Vec<T>,
    valid: Vec<bool>,
    nulls: usize,
}

impl<T: Copy + Default> Col<T> {
    fn new(n: usize) -> Self {
        Self { values: Vec::with_capacity(n), valid: Vec::with_capacity(n), nulls: 0 }
    }

    #[inline]
    fn push(&mut self, v: Option<T>) {
        self.values.push(v.unwrap_or_default());
        self.valid.push(v.is_some());
        self.nulls += v.is_none() as usize;
    }

    /// The values and null buffer, leaving the column empty with capacity `n`.
    fn take(&mut self, n: usize) -> (Vec<T>, Option<NullBuffer>) {
        let values = std::mem::replace(&mut self.values, Vec::with_capacity(n));
        let valid = std::mem::replace(&mut self.valid, Vec::with_capacity(n));
        let nulls = if self.nulls > 0 { Some(NullBuffer::from(valid)) } else { None };
        self.nulls = 0;
        (values, nulls)
    }
}

fn primitive<T: ArrowPrimitiveType>(c: &mut Col<T::Native>, n: usize) -> ArrayRef
where
    T::Native: Default,
{
    let (values, nulls) = c.take(n);
    Arc::new(PrimitiveArray::<T>::new(ScalarBuffer::from(values), nulls))
}

fn required<T: ArrowPrimitiveType>(v: &mut Vec<T::Native>, n: usize) -> ArrayRef {
    let values = std::mem::replace(v, Vec::with_capacity(n));
    Arc::new(PrimitiveArray::<T>::new(ScalarBuffer::from(values), None))
}

fn timestamps(c: &mut Col<i64>, n: usize) -> ArrayRef {
    let (values, nulls) = c.take(n);
    Arc::new(TimestampNanosecondArray::new(ScalarBuffer::from(values), nulls).with_timezone("UTC"))
}

/// An address column: 16 bytes a row.
struct AddrCol {
    bytes: Vec<u8>,
    valid: Vec<bool>,
    nulls: usize,
}

impl AddrCol {
    fn new(n: usize) -> Self {
        Self { bytes: Vec::with_capacity(n * 16), valid: Vec::with_capacity(n), nulls: 0 }
    }

    #[inline]
    fn push(&mut self, v: Option<[u8; 16]>) {
        self.bytes.extend_from_slice(&v.unwrap_or([0; 16]));
        self.valid.push(v.is_some());
        self.nulls += v.is_none() as usize;
    }

    fn finish(&mut self, n: usize) -> ArrayRef {
        let bytes = std::mem::replace(&mut self.bytes, Vec::with_capacity(n * 16));
        let valid = std::mem::replace(&mut self.valid, Vec::with_capacity(n));
        let nulls = if self.nulls > 0 { Some(NullBuffer::from(valid)) } else { None };
        self.nulls = 0;
        Arc::new(FixedSizeBinaryArray::new(16, Buffer::from_vec(bytes), nulls))
    }
}

/// Column buffers for the flow schema.
pub struct FlowBuilders {
    time_received: Vec<i64>,
    flow_start: Col<i64>,
    flow_end: Col<i64>,
    exporter: AddrCol,
    domain: Vec<u32>,
    sequence: Col<u32>,
    version: Vec<u16>,
    src_addr: AddrCol,
    dst_addr: AddrCol,
    next_hop: AddrCol,
    src_port: Col<u16>,
    dst_port: Col<u16>,
    protocol: Col<u8>,
    tcp_flags: Col<u16>,
    tos: Col<u8>,
    in_if: Col<u32>,
    out_if: Col<u32>,
    bytes: Vec<u64>,
    packets: Vec<u64>,
    src_as: Col<u32>,
    dst_as: Col<u32>,
    src_mask: Col<u8>,
    dst_mask: Col<u8>,
    vlan: Col<u16>,
    direction: Col<u8>,
    sampling_rate: Vec<u32>,
    sampling_source: Vec<u8>,
    rows: usize,
    capacity: usize,
    received_min: i64,
    received_max: i64,
}

const SOURCES: [SamplingSource; 4] =
    [SamplingSource::Header, SamplingSource::Options, SamplingSource::Default, SamplingSource::Override];

impl FlowBuilders {
    /// Buffers with room for `capacity` rows.
    pub fn new(capacity: usize) -> Self {
        let n = capacity;
        Self {
            time_received: Vec::with_capacity(n),
            flow_start: Col::new(n),
            flow_end: Col::new(n),
            exporter: AddrCol::new(n),
            domain: Vec::with_capacity(n),
            sequence: Col::new(n),
            version: Vec::with_capacity(n),
            src_addr: AddrCol::new(n),
            dst_addr: AddrCol::new(n),
            next_hop: AddrCol::new(n),
            src_port: Col::new(n),
            dst_port: Col::new(n),
            protocol: Col::new(n),
            tcp_flags: Col::new(n),
            tos: Col::new(n),
            in_if: Col::new(n),
            out_if: Col::new(n),
            bytes: Vec::with_capacity(n),
            packets: Vec::with_capacity(n),
            src_as: Col::new(n),
            dst_as: Col::new(n),
            src_mask: Col::new(n),
            dst_mask: Col::new(n),
            vlan: Col::new(n),
            direction: Col::new(n),
            sampling_rate: Vec::with_capacity(n),
            sampling_source: Vec::with_capacity(n),
            rows: 0,
            capacity,
            received_min: i64::MAX,
            received_max: i64::MIN,
        }
    }

    /// Rows appended since the last [`FlowBuilders::finish`].
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when no row is buffered.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// True when the buffered rows reached the capacity given at creation.
    pub fn is_full(&self) -> bool {
        self.rows >= self.capacity
    }

    /// Receive-time range of the buffered rows.
    pub fn received_range(&self) -> (i64, i64) {
        if self.rows == 0 { (0, 0) } else { (self.received_min, self.received_max) }
    }

    /// Appends one record.
    #[inline]
    pub fn push(&mut self, h: &Header, r: &Row) {
        self.time_received.push(h.time_received);
        self.received_min = self.received_min.min(h.time_received);
        self.received_max = self.received_max.max(h.time_received);
        self.flow_start.push(r.flow_start);
        self.flow_end.push(r.flow_end);
        self.exporter.push(Some(h.exporter));
        self.domain.push(h.domain);
        // v5 and v9 number packets, IPFIX messages: always present.
        self.sequence.push(Some(h.sequence));
        self.version.push(h.version);
        self.src_addr.push(r.src_addr);
        self.dst_addr.push(r.dst_addr);
        self.next_hop.push(r.next_hop);
        self.src_port.push(r.src_port);
        self.dst_port.push(r.dst_port);
        self.protocol.push(r.protocol);
        self.tcp_flags.push(r.tcp_flags);
        self.tos.push(r.tos);
        self.in_if.push(r.in_if);
        self.out_if.push(r.out_if);
        self.bytes.push(r.bytes.unwrap_or(0));
        self.packets.push(r.packets.unwrap_or(0));
        self.src_as.push(r.src_as);
        self.dst_as.push(r.dst_as);
        self.src_mask.push(r.src_mask);
        self.dst_mask.push(r.dst_mask);
        self.vlan.push(r.vlan);
        self.direction.push(r.direction);
        self.sampling_rate.push(r.sampling_rate.max(1));
        let source = r.sampling_source.unwrap_or(SamplingSource::Default);
        self.sampling_source.push(SOURCES.iter().position(|s| *s == source).unwrap_or(2) as u8);
        self.rows += 1;
    }

    /// The buffered rows as a batch; the buffers are empty afterwards with
    /// room for another batch.
    pub fn finish(&mut self) -> RecordBatch {
        let n = self.capacity;
        let exporter = self.exporter.finish(n);
        let sources = std::mem::replace(&mut self.sampling_source, Vec::with_capacity(n));
        let sampling_source: ArrayRef =
            Arc::new(StringArray::from_iter_values(sources.iter().map(|c| SOURCES[*c as usize].as_str())));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(
                TimestampNanosecondArray::new(
                    ScalarBuffer::from(std::mem::replace(&mut self.time_received, Vec::with_capacity(n))),
                    None,
                )
                .with_timezone("UTC"),
            ),
            timestamps(&mut self.flow_start, n),
            timestamps(&mut self.flow_end, n),
            exporter,
            required::<UInt32Type>(&mut self.domain, n),
            primitive::<UInt32Type>(&mut self.sequence, n),
            required::<UInt16Type>(&mut self.version, n),
            self.src_addr.finish(n),
            self.dst_addr.finish(n),
            self.next_hop.finish(n),
            primitive::<UInt16Type>(&mut self.src_port, n),
            primitive::<UInt16Type>(&mut self.dst_port, n),
            primitive::<UInt8Type>(&mut self.protocol, n),
            primitive::<UInt16Type>(&mut self.tcp_flags, n),
            primitive::<UInt8Type>(&mut self.tos, n),
            primitive::<UInt32Type>(&mut self.in_if, n),
            primitive::<UInt32Type>(&mut self.out_if, n),
            required::<UInt64Type>(&mut self.bytes, n),
            required::<UInt64Type>(&mut self.packets, n),
            primitive::<UInt32Type>(&mut self.src_as, n),
            primitive::<UInt32Type>(&mut self.dst_as, n),
            primitive::<UInt8Type>(&mut self.src_mask, n),
            primitive::<UInt8Type>(&mut self.dst_mask, n),
            primitive::<UInt16Type>(&mut self.vlan, n),
            primitive::<UInt8Type>(&mut self.direction, n),
            required::<UInt32Type>(&mut self.sampling_rate, n),
            sampling_source,
        ];
        self.rows = 0;
        self.received_min = i64::MAX;
        self.received_max = i64::MIN;
        RecordBatch::try_new(flow_schema(), columns).expect("columns match the flow schema")
    }
}
