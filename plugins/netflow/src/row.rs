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
use spillway_core::addr::Addr;
use spillway_core::schema::{SamplingSource, flow_schema};

use crate::iana::{ExtraField, ExtraKind};

/// The fields of one flow record, as decoded. `None` is "not exported".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Row {
    pub flow_start: Option<i64>,
    pub flow_end: Option<i64>,
    pub src_addr: Option<Addr>,
    pub dst_addr: Option<Addr>,
    pub next_hop: Option<Addr>,
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
    /// `None` when the rate is unknown (`SamplingSource::Unknown`).
    pub sampling_rate: Option<u32>,
    pub sampling_source: SamplingSource,
}

/// Per-message context shared by its records.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub time_received: i64,
    pub exporter: Addr,
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
    fn push(&mut self, v: Option<Addr>) {
        self.bytes.extend_from_slice(v.unwrap_or_default().octets());
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

/// Where a record's extra-column values are: spans into the record's bytes.
pub struct ExtraValues<'a> {
    /// (offset, length) per extra column.
    pub spans: &'a [(u32, u16)],
    /// Bit `i` set when column `i` has a value in this record.
    pub mask: u16,
    /// The record's bytes.
    pub record: &'a [u8],
}

impl ExtraValues<'static> {
    /// No extra values (v5, or no extra columns configured).
    pub const NONE: ExtraValues<'static> = ExtraValues { spans: &[], mask: 0, record: &[] };
}

/// One extra column being filled.
enum ExtraCol {
    Unsigned(Col<u64>),
    Signed(Col<i64>),
    Float(Col<f64>),
    Address(AddrCol),
    Text(arrow::array::StringBuilder),
    Mac(arrow::array::StringBuilder),
    Bytes(arrow::array::BinaryBuilder),
}

impl ExtraCol {
    fn new(kind: ExtraKind, n: usize) -> Self {
        match kind {
            ExtraKind::Unsigned => Self::Unsigned(Col::new(n)),
            ExtraKind::Signed => Self::Signed(Col::new(n)),
            ExtraKind::Float => Self::Float(Col::new(n)),
            ExtraKind::Address => Self::Address(AddrCol::new(n)),
            ExtraKind::Text => Self::Text(arrow::array::StringBuilder::with_capacity(n, n * 8)),
            ExtraKind::Mac => Self::Mac(arrow::array::StringBuilder::with_capacity(n, n * 17)),
            ExtraKind::Bytes => Self::Bytes(arrow::array::BinaryBuilder::with_capacity(n, n * 8)),
        }
    }

    #[inline]
    fn push(&mut self, v: Option<&[u8]>) {
        use std::fmt::Write as _;
        match self {
            Self::Unsigned(c) => c.push(v.map(|b| b.iter().take(8).fold(0u64, |a, x| (a << 8) | *x as u64))),
            Self::Signed(c) => c.push(v.filter(|b| !b.is_empty()).map(|b| {
                let b = &b[..b.len().min(8)];
                let raw = b.iter().fold(0u64, |a, x| (a << 8) | *x as u64);
                let shift = 64 - 8 * b.len() as u32;
                ((raw << shift) as i64) >> shift
            })),
            Self::Float(c) => c.push(v.and_then(|b| match b.len() {
                4 => Some(f32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f64),
                8 => Some(f64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])),
                _ => None,
            })),
            Self::Address(c) => c.push(v.and_then(Addr::from_slice)),
            Self::Text(c) => match v {
                Some(b) => match std::str::from_utf8(b) {
                    // Exporters pad fixed-length strings with NULs.
                    Ok(t) => c.append_value(t.trim_end_matches('\0')),
                    Err(_) => c.append_value(String::from_utf8_lossy(b)),
                },
                None => c.append_null(),
            },
            Self::Mac(c) => match v {
                Some(b) => {
                    for (i, x) in b.iter().enumerate() {
                        let _ = write!(c, "{}{x:02x}", if i > 0 { ":" } else { "" });
                    }
                    c.append_value("");
                }
                None => c.append_null(),
            },
            Self::Bytes(c) => match v {
                Some(b) => c.append_value(b),
                None => c.append_null(),
            },
        }
    }

    fn finish(&mut self, n: usize) -> ArrayRef {
        match self {
            Self::Unsigned(c) => primitive::<UInt64Type>(c, n),
            Self::Signed(c) => primitive::<arrow::datatypes::Int64Type>(c, n),
            Self::Float(c) => primitive::<arrow::datatypes::Float64Type>(c, n),
            Self::Address(c) => c.finish(n),
            Self::Text(c) | Self::Mac(c) => Arc::new(c.finish()),
            Self::Bytes(c) => Arc::new(c.finish()),
        }
    }
}

/// The flow schema plus extra columns.
pub fn schema_with(extras: &[ExtraField]) -> arrow::datatypes::SchemaRef {
    if extras.is_empty() {
        return flow_schema();
    }
    let mut fields: Vec<arrow::datatypes::FieldRef> = flow_schema().fields().iter().cloned().collect();
    for e in extras {
        fields.push(Arc::new(arrow::datatypes::Field::new(&e.column, e.kind.data_type(), true)));
    }
    Arc::new(arrow::datatypes::Schema::new(fields))
}

/// Column buffers for the flow schema.
pub struct FlowBuilders {
    extras: Vec<ExtraCol>,
    schema: arrow::datatypes::SchemaRef,
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
    bytes: Col<u64>,
    packets: Col<u64>,
    src_as: Col<u32>,
    dst_as: Col<u32>,
    src_mask: Col<u8>,
    dst_mask: Col<u8>,
    vlan: Col<u16>,
    direction: Col<u8>,
    sampling_rate: Col<u32>,
    sampling_source: Vec<u8>,
    rows: usize,
    capacity: usize,
    received_min: i64,
    received_max: i64,
}

impl FlowBuilders {
    /// Buffers with room for `capacity` rows.
    pub fn new(capacity: usize) -> Self {
        Self::with_extras(capacity, &[])
    }

    /// Buffers for the flow schema plus `extras` columns.
    pub fn with_extras(capacity: usize, extras: &[ExtraField]) -> Self {
        let n = capacity;
        Self {
            extras: extras.iter().map(|e| ExtraCol::new(e.kind, n)).collect(),
            schema: schema_with(extras),
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
            bytes: Col::new(n),
            packets: Col::new(n),
            src_as: Col::new(n),
            dst_as: Col::new(n),
            src_mask: Col::new(n),
            dst_mask: Col::new(n),
            vlan: Col::new(n),
            direction: Col::new(n),
            sampling_rate: Col::new(n),
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

    /// The sampling rate and its source of the last row appended.
    pub fn last_sampling(&self) -> Option<(Option<u32>, SamplingSource)> {
        let source = *self.sampling_source.last()?;
        let rate = self
            .sampling_rate
            .valid
            .last()
            .copied()
            .unwrap_or(false)
            .then(|| self.sampling_rate.values.last().copied())
            .flatten();
        Some((rate, SamplingSource::ALL.get(source as usize).copied().unwrap_or_default()))
    }

    /// Rows per batch.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Receive-time range of the buffered rows.
    pub fn received_range(&self) -> (i64, i64) {
        if self.rows == 0 { (0, 0) } else { (self.received_min, self.received_max) }
    }

    /// Appends one record and its extra-column values.
    #[inline]
    pub fn push(&mut self, h: &Header, r: &Row, extra: &ExtraValues) {
        for (i, col) in self.extras.iter_mut().enumerate() {
            let v = (extra.mask & (1 << i) != 0)
                .then(|| extra.spans.get(i))
                .flatten()
                .and_then(|&(at, len)| extra.record.get(at as usize..at as usize + len as usize));
            col.push(v);
        }
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
        self.bytes.push(r.bytes);
        self.packets.push(r.packets);
        self.src_as.push(r.src_as);
        self.dst_as.push(r.dst_as);
        self.src_mask.push(r.src_mask);
        self.dst_mask.push(r.dst_mask);
        self.vlan.push(r.vlan);
        self.direction.push(r.direction);
        self.sampling_rate.push(r.sampling_rate);
        self.sampling_source.push(r.sampling_source as u8);
        self.rows += 1;
    }

    /// The buffered rows as a batch; the buffers are empty afterwards with
    /// room for another batch.
    pub fn finish(&mut self) -> RecordBatch {
        let n = self.capacity;
        let exporter = self.exporter.finish(n);
        let sources = std::mem::replace(&mut self.sampling_source, Vec::with_capacity(n));
        let sampling_source: ArrayRef = Arc::new(StringArray::from_iter_values(
            sources.iter().map(|c| SamplingSource::ALL[*c as usize].as_str()),
        ));
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
            primitive::<UInt64Type>(&mut self.bytes, n),
            primitive::<UInt64Type>(&mut self.packets, n),
            primitive::<UInt32Type>(&mut self.src_as, n),
            primitive::<UInt32Type>(&mut self.dst_as, n),
            primitive::<UInt8Type>(&mut self.src_mask, n),
            primitive::<UInt8Type>(&mut self.dst_mask, n),
            primitive::<UInt16Type>(&mut self.vlan, n),
            primitive::<UInt8Type>(&mut self.direction, n),
            primitive::<UInt32Type>(&mut self.sampling_rate, n),
            sampling_source,
        ];
        let mut columns = columns;
        for c in &mut self.extras {
            columns.push(c.finish(n));
        }
        self.rows = 0;
        self.received_min = i64::MAX;
        self.received_max = i64::MIN;
        RecordBatch::try_new(self.schema.clone(), columns).expect("columns match the schema")
    }
}
