//! One decoded flow record on the stack, and the column buffers of the flow
//! schema it is appended to.
//!
//! The columns are plain `Vec`s rather than Arrow's builders, plus one
//! presence mask per row for all the nullable columns: appending is a
//! `Vec::push` per column with no bit twiddling, and `finish` hands the
//! vectors to Arrow without a copy (validity bitmaps come from the masks). Capacity is reserved for a whole batch, so nothing allocates per
//! record.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeBinaryArray, PrimitiveArray, RecordBatch, StringArray, TimestampNanosecondArray,
};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, ScalarBuffer};
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

/// Bits of a row's presence mask: one per nullable column of the flow
/// schema.
pub(crate) mod present {
    pub const FLOW_START: u32 = 1 << 0;
    pub const FLOW_END: u32 = 1 << 1;
    pub const SRC_ADDR: u32 = 1 << 2;
    pub const DST_ADDR: u32 = 1 << 3;
    pub const NEXT_HOP: u32 = 1 << 4;
    pub const SRC_PORT: u32 = 1 << 5;
    pub const DST_PORT: u32 = 1 << 6;
    pub const PROTOCOL: u32 = 1 << 7;
    pub const TCP_FLAGS: u32 = 1 << 8;
    pub const TOS: u32 = 1 << 9;
    pub const IN_IF: u32 = 1 << 10;
    pub const OUT_IF: u32 = 1 << 11;
    pub const BYTES: u32 = 1 << 12;
    pub const PACKETS: u32 = 1 << 13;
    pub const SRC_AS: u32 = 1 << 14;
    pub const DST_AS: u32 = 1 << 15;
    pub const SRC_MASK: u32 = 1 << 16;
    pub const DST_MASK: u32 = 1 << 17;
    pub const VLAN: u32 = 1 << 18;
    pub const DIRECTION: u32 = 1 << 19;
    pub const SAMPLING_RATE: u32 = 1 << 20;
}

/// An address as the 16 bytes of one `i128` in memory: one store a row,
/// and the vector becomes a `FixedSizeBinary(16)` buffer without a copy.
#[inline]
pub(crate) fn addr_word(a: Option<Addr>) -> i128 {
    i128::from_ne_bytes(a.unwrap_or_default().0)
}

/// Rows the buffers hold without reallocating: the capacity and room for
/// the message that fills it (a batch is full once it reaches its capacity,
/// after the message that got it there: copying every column to grow it
/// for that message's rows cost a fifth of decoding).
fn reserve(capacity: usize) -> usize {
    capacity + (capacity / 8).max(512)
}

/// The columns a data set's fields fill, for the rows from `at` on that
/// [`FlowBuilders::grow`] appended to the others. A decoder extends each
/// column it fills by those rows (or overwrites them, when a second field
/// fills it), then [`Tail::close`] pads the rest. Addresses are
/// [`addr_word`]s.
pub(crate) struct Tail<'a> {
    /// The first of the set's rows.
    pub at: usize,
    to: usize,
    pub flow_start: &'a mut Vec<i64>,
    pub flow_end: &'a mut Vec<i64>,
    pub src_addr: &'a mut Vec<i128>,
    pub dst_addr: &'a mut Vec<i128>,
    pub next_hop: &'a mut Vec<i128>,
    pub src_port: &'a mut Vec<u16>,
    pub dst_port: &'a mut Vec<u16>,
    pub protocol: &'a mut Vec<u8>,
    pub tcp_flags: &'a mut Vec<u16>,
    pub tos: &'a mut Vec<u8>,
    pub in_if: &'a mut Vec<u32>,
    pub out_if: &'a mut Vec<u32>,
    pub bytes: &'a mut Vec<u64>,
    pub packets: &'a mut Vec<u64>,
    pub src_as: &'a mut Vec<u32>,
    pub dst_as: &'a mut Vec<u32>,
    pub src_mask: &'a mut Vec<u8>,
    pub dst_mask: &'a mut Vec<u8>,
    pub vlan: &'a mut Vec<u16>,
    pub direction: &'a mut Vec<u8>,
    present: &'a mut [u32],
}

impl Tail<'_> {
    /// Pads every column whose presence bit is not in `filled` with
    /// defaults for the set's rows, and adds `filled` to their masks.
    pub fn close(self, filled: u32) {
        use present::*;
        let to = self.to;
        pad_to(self.flow_start, to, filled & FLOW_START != 0);
        pad_to(self.flow_end, to, filled & FLOW_END != 0);
        pad_to(self.src_addr, to, filled & SRC_ADDR != 0);
        pad_to(self.dst_addr, to, filled & DST_ADDR != 0);
        pad_to(self.next_hop, to, filled & NEXT_HOP != 0);
        pad_to(self.src_port, to, filled & SRC_PORT != 0);
        pad_to(self.dst_port, to, filled & DST_PORT != 0);
        pad_to(self.protocol, to, filled & PROTOCOL != 0);
        pad_to(self.tcp_flags, to, filled & TCP_FLAGS != 0);
        pad_to(self.tos, to, filled & TOS != 0);
        pad_to(self.in_if, to, filled & IN_IF != 0);
        pad_to(self.out_if, to, filled & OUT_IF != 0);
        pad_to(self.bytes, to, filled & BYTES != 0);
        pad_to(self.packets, to, filled & PACKETS != 0);
        pad_to(self.src_as, to, filled & SRC_AS != 0);
        pad_to(self.dst_as, to, filled & DST_AS != 0);
        pad_to(self.src_mask, to, filled & SRC_MASK != 0);
        pad_to(self.dst_mask, to, filled & DST_MASK != 0);
        pad_to(self.vlan, to, filled & VLAN != 0);
        pad_to(self.direction, to, filled & DIRECTION != 0);
        for p in self.present.iter_mut() {
            *p |= filled;
        }
    }
}

/// Pads `v` with defaults to `to` rows unless a decoder filled it.
#[inline]
fn pad_to<T: Copy + Default>(v: &mut Vec<T>, to: usize, filled: bool) {
    if !filled {
        v.resize(to, T::default());
    }
    debug_assert_eq!(v.len(), to, "a filled column holds every row");
}

/// Column buffers for the flow schema.
///
/// A row appends one value to each column's vector (the default where the
/// record has none) and one presence mask (bit per nullable column, see
/// [`present`]); `finish` turns the masks into each column's validity
/// bitmap, or none for a column every row had.
pub struct FlowBuilders {
    extras: Vec<ExtraCol>,
    schema: arrow::datatypes::SchemaRef,
    time_received: Vec<i64>,
    flow_start: Vec<i64>,
    flow_end: Vec<i64>,
    exporter: Vec<i128>,
    domain: Vec<u32>,
    sequence: Vec<u32>,
    version: Vec<u16>,
    src_addr: Vec<i128>,
    dst_addr: Vec<i128>,
    next_hop: Vec<i128>,
    src_port: Vec<u16>,
    dst_port: Vec<u16>,
    protocol: Vec<u8>,
    tcp_flags: Vec<u16>,
    tos: Vec<u8>,
    in_if: Vec<u32>,
    out_if: Vec<u32>,
    bytes: Vec<u64>,
    packets: Vec<u64>,
    src_as: Vec<u32>,
    dst_as: Vec<u32>,
    src_mask: Vec<u8>,
    dst_mask: Vec<u8>,
    vlan: Vec<u16>,
    direction: Vec<u8>,
    sampling_rate: Vec<u32>,
    sampling_source: Vec<u8>,
    /// One presence mask per row.
    present: Vec<u32>,
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
        let n = reserve(capacity);
        Self {
            extras: extras.iter().map(|e| ExtraCol::new(e.kind, n)).collect(),
            schema: schema_with(extras),
            time_received: Vec::with_capacity(n),
            flow_start: Vec::with_capacity(n),
            flow_end: Vec::with_capacity(n),
            exporter: Vec::with_capacity(n),
            domain: Vec::with_capacity(n),
            sequence: Vec::with_capacity(n),
            version: Vec::with_capacity(n),
            src_addr: Vec::with_capacity(n),
            dst_addr: Vec::with_capacity(n),
            next_hop: Vec::with_capacity(n),
            src_port: Vec::with_capacity(n),
            dst_port: Vec::with_capacity(n),
            protocol: Vec::with_capacity(n),
            tcp_flags: Vec::with_capacity(n),
            tos: Vec::with_capacity(n),
            in_if: Vec::with_capacity(n),
            out_if: Vec::with_capacity(n),
            bytes: Vec::with_capacity(n),
            packets: Vec::with_capacity(n),
            src_as: Vec::with_capacity(n),
            dst_as: Vec::with_capacity(n),
            src_mask: Vec::with_capacity(n),
            dst_mask: Vec::with_capacity(n),
            vlan: Vec::with_capacity(n),
            direction: Vec::with_capacity(n),
            sampling_rate: Vec::with_capacity(n),
            sampling_source: Vec::with_capacity(n),
            present: Vec::with_capacity(n),
            capacity,
            received_min: i64::MAX,
            received_max: i64::MIN,
        }
    }

    /// Rows appended since the last [`FlowBuilders::finish`].
    pub fn len(&self) -> usize {
        self.present.len()
    }

    /// True when no row is buffered.
    pub fn is_empty(&self) -> bool {
        self.present.is_empty()
    }

    /// True when the buffered rows reached the capacity given at creation.
    pub fn is_full(&self) -> bool {
        self.present.len() >= self.capacity
    }

    /// The sampling rate and its source of the last row appended.
    pub fn last_sampling(&self) -> Option<(Option<u32>, SamplingSource)> {
        let source = *self.sampling_source.last()?;
        let rate = (self.present.last().copied().unwrap_or(0) & present::SAMPLING_RATE != 0)
            .then(|| self.sampling_rate.last().copied())
            .flatten();
        Some((rate, SamplingSource::ALL.get(source as usize).copied().unwrap_or_default()))
    }

    /// Rows per batch.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Receive-time range of the buffered rows.
    pub fn received_range(&self) -> (i64, i64) {
        if self.is_empty() { (0, 0) } else { (self.received_min, self.received_max) }
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
        use present::*;
        let mut mask = 0u32;
        let mut bit = |set: bool, b: u32| mask |= if set { b } else { 0 };
        bit(r.flow_start.is_some(), FLOW_START);
        bit(r.flow_end.is_some(), FLOW_END);
        bit(r.src_addr.is_some(), SRC_ADDR);
        bit(r.dst_addr.is_some(), DST_ADDR);
        bit(r.next_hop.is_some(), NEXT_HOP);
        bit(r.src_port.is_some(), SRC_PORT);
        bit(r.dst_port.is_some(), DST_PORT);
        bit(r.protocol.is_some(), PROTOCOL);
        bit(r.tcp_flags.is_some(), TCP_FLAGS);
        bit(r.tos.is_some(), TOS);
        bit(r.in_if.is_some(), IN_IF);
        bit(r.out_if.is_some(), OUT_IF);
        bit(r.bytes.is_some(), BYTES);
        bit(r.packets.is_some(), PACKETS);
        bit(r.src_as.is_some(), SRC_AS);
        bit(r.dst_as.is_some(), DST_AS);
        bit(r.src_mask.is_some(), SRC_MASK);
        bit(r.dst_mask.is_some(), DST_MASK);
        bit(r.vlan.is_some(), VLAN);
        bit(r.direction.is_some(), DIRECTION);
        bit(r.sampling_rate.is_some(), SAMPLING_RATE);
        self.present.push(mask);
        self.time_received.push(h.time_received);
        self.received_min = self.received_min.min(h.time_received);
        self.received_max = self.received_max.max(h.time_received);
        self.flow_start.push(r.flow_start.unwrap_or_default());
        self.flow_end.push(r.flow_end.unwrap_or_default());
        self.exporter.push(addr_word(Some(h.exporter)));
        self.domain.push(h.domain);
        // v5 and v9 number packets, IPFIX messages: always present.
        self.sequence.push(h.sequence);
        self.version.push(h.version);
        self.src_addr.push(addr_word(r.src_addr));
        self.dst_addr.push(addr_word(r.dst_addr));
        self.next_hop.push(addr_word(r.next_hop));
        self.src_port.push(r.src_port.unwrap_or_default());
        self.dst_port.push(r.dst_port.unwrap_or_default());
        self.protocol.push(r.protocol.unwrap_or_default());
        self.tcp_flags.push(r.tcp_flags.unwrap_or_default());
        self.tos.push(r.tos.unwrap_or_default());
        self.in_if.push(r.in_if.unwrap_or_default());
        self.out_if.push(r.out_if.unwrap_or_default());
        self.bytes.push(r.bytes.unwrap_or_default());
        self.packets.push(r.packets.unwrap_or_default());
        self.src_as.push(r.src_as.unwrap_or_default());
        self.dst_as.push(r.dst_as.unwrap_or_default());
        self.src_mask.push(r.src_mask.unwrap_or_default());
        self.dst_mask.push(r.dst_mask.unwrap_or_default());
        self.vlan.push(r.vlan.unwrap_or_default());
        self.direction.push(r.direction.unwrap_or_default());
        self.sampling_rate.push(r.sampling_rate.unwrap_or_default());
        self.sampling_source.push(r.sampling_source as u8);
    }

    /// Whether extra columns are configured (a decoder filling
    /// [`FlowBuilders::grow`]'s columns cannot fill them).
    pub fn has_extras(&self) -> bool {
        !self.extras.is_empty()
    }

    /// Appends `n` rows of one message to the columns its header and the
    /// sampling a whole data set shares fill; the others, for a decoder to
    /// fill column by column, are in the [`Tail`] (which it closes). The
    /// rows' presence masks say only whether the sampling rate is known
    /// until then.
    pub(crate) fn grow(&mut self, h: &Header, n: usize, sampling: (Option<u32>, SamplingSource)) -> Tail<'_> {
        let at = self.present.len();
        let to = at + n;
        self.time_received.resize(to, h.time_received);
        self.received_min = self.received_min.min(h.time_received);
        self.received_max = self.received_max.max(h.time_received);
        self.exporter.resize(to, addr_word(Some(h.exporter)));
        self.domain.resize(to, h.domain);
        self.sequence.resize(to, h.sequence);
        self.version.resize(to, h.version);
        self.sampling_rate.resize(to, sampling.0.unwrap_or_default());
        self.sampling_source.resize(to, sampling.1 as u8);
        self.present.resize(to, if sampling.0.is_some() { present::SAMPLING_RATE } else { 0 });
        Tail {
            at,
            to,
            flow_start: &mut self.flow_start,
            flow_end: &mut self.flow_end,
            src_addr: &mut self.src_addr,
            dst_addr: &mut self.dst_addr,
            next_hop: &mut self.next_hop,
            src_port: &mut self.src_port,
            dst_port: &mut self.dst_port,
            protocol: &mut self.protocol,
            tcp_flags: &mut self.tcp_flags,
            tos: &mut self.tos,
            in_if: &mut self.in_if,
            out_if: &mut self.out_if,
            bytes: &mut self.bytes,
            packets: &mut self.packets,
            src_as: &mut self.src_as,
            dst_as: &mut self.dst_as,
            src_mask: &mut self.src_mask,
            dst_mask: &mut self.dst_mask,
            vlan: &mut self.vlan,
            direction: &mut self.direction,
            present: &mut self.present[at..],
        }
    }

    /// The validity bitmap of the column with presence bit `bit`: none when
    /// every row had a value (`all`: the rows' masks and-ed).
    fn nulls(&self, all: u32, bit: u32) -> Option<NullBuffer> {
        if all & bit != 0 {
            return None;
        }
        let present = &self.present;
        Some(NullBuffer::new(BooleanBuffer::collect_bool(present.len(), |i| present[i] & bit != 0)))
    }

    /// The buffered rows as a batch; the buffers are empty afterwards with
    /// room for another batch.
    pub fn finish(&mut self) -> RecordBatch {
        use present::*;
        let n = reserve(self.capacity);
        let all = self.present.iter().fold(!0u32, |a, m| a & m);
        fn take<T>(v: &mut Vec<T>, n: usize) -> Vec<T> {
            std::mem::replace(v, Vec::with_capacity(n))
        }
        fn int<T: ArrowPrimitiveType>(v: Vec<T::Native>, nulls: Option<NullBuffer>) -> ArrayRef {
            Arc::new(PrimitiveArray::<T>::new(ScalarBuffer::from(v), nulls))
        }
        fn time(v: Vec<i64>, nulls: Option<NullBuffer>) -> ArrayRef {
            Arc::new(TimestampNanosecondArray::new(ScalarBuffer::from(v), nulls).with_timezone("UTC"))
        }
        fn addrs(v: Vec<i128>, nulls: Option<NullBuffer>) -> ArrayRef {
            Arc::new(FixedSizeBinaryArray::new(16, Buffer::from_vec(v), nulls))
        }
        let sources = take(&mut self.sampling_source, n);
        let sampling_source: ArrayRef = Arc::new(StringArray::from_iter_values(
            sources.iter().map(|c| SamplingSource::ALL[*c as usize].as_str()),
        ));
        let mut columns: Vec<ArrayRef> = vec![
            time(take(&mut self.time_received, n), None),
            time(take(&mut self.flow_start, n), self.nulls(all, FLOW_START)),
            time(take(&mut self.flow_end, n), self.nulls(all, FLOW_END)),
            addrs(take(&mut self.exporter, n), None),
            int::<UInt32Type>(take(&mut self.domain, n), None),
            int::<UInt32Type>(take(&mut self.sequence, n), None),
            int::<UInt16Type>(take(&mut self.version, n), None),
            addrs(take(&mut self.src_addr, n), self.nulls(all, SRC_ADDR)),
            addrs(take(&mut self.dst_addr, n), self.nulls(all, DST_ADDR)),
            addrs(take(&mut self.next_hop, n), self.nulls(all, NEXT_HOP)),
            int::<UInt16Type>(take(&mut self.src_port, n), self.nulls(all, SRC_PORT)),
            int::<UInt16Type>(take(&mut self.dst_port, n), self.nulls(all, DST_PORT)),
            int::<UInt8Type>(take(&mut self.protocol, n), self.nulls(all, PROTOCOL)),
            int::<UInt16Type>(take(&mut self.tcp_flags, n), self.nulls(all, TCP_FLAGS)),
            int::<UInt8Type>(take(&mut self.tos, n), self.nulls(all, TOS)),
            int::<UInt32Type>(take(&mut self.in_if, n), self.nulls(all, IN_IF)),
            int::<UInt32Type>(take(&mut self.out_if, n), self.nulls(all, OUT_IF)),
            int::<UInt64Type>(take(&mut self.bytes, n), self.nulls(all, BYTES)),
            int::<UInt64Type>(take(&mut self.packets, n), self.nulls(all, PACKETS)),
            int::<UInt32Type>(take(&mut self.src_as, n), self.nulls(all, SRC_AS)),
            int::<UInt32Type>(take(&mut self.dst_as, n), self.nulls(all, DST_AS)),
            int::<UInt8Type>(take(&mut self.src_mask, n), self.nulls(all, SRC_MASK)),
            int::<UInt8Type>(take(&mut self.dst_mask, n), self.nulls(all, DST_MASK)),
            int::<UInt16Type>(take(&mut self.vlan, n), self.nulls(all, VLAN)),
            int::<UInt8Type>(take(&mut self.direction, n), self.nulls(all, DIRECTION)),
            int::<UInt32Type>(take(&mut self.sampling_rate, n), self.nulls(all, SAMPLING_RATE)),
            sampling_source,
        ];
        for c in &mut self.extras {
            columns.push(c.finish(n));
        }
        self.present.clear();
        self.received_min = i64::MAX;
        self.received_max = i64::MIN;
        RecordBatch::try_new(self.schema.clone(), columns).expect("columns match the schema")
    }
}
