//! One decoded flow record on the stack, and the Arrow builders of the flow
//! schema it is appended to. Nothing here allocates per record: builders grow
//! their buffers amortized and are reused batch after batch.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeBinaryBuilder, RecordBatch, StringBuilder, TimestampNanosecondBuilder, UInt8Builder,
    UInt16Builder, UInt32Builder, UInt64Builder,
};
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

/// Arrow builders for the flow schema.
pub struct FlowBuilders {
    time_received: TimestampNanosecondBuilder,
    flow_start: TimestampNanosecondBuilder,
    flow_end: TimestampNanosecondBuilder,
    exporter: FixedSizeBinaryBuilder,
    domain: UInt32Builder,
    sequence: UInt32Builder,
    version: UInt16Builder,
    src_addr: FixedSizeBinaryBuilder,
    dst_addr: FixedSizeBinaryBuilder,
    next_hop: FixedSizeBinaryBuilder,
    src_port: UInt16Builder,
    dst_port: UInt16Builder,
    protocol: UInt8Builder,
    tcp_flags: UInt16Builder,
    tos: UInt8Builder,
    in_if: UInt32Builder,
    out_if: UInt32Builder,
    bytes: UInt64Builder,
    packets: UInt64Builder,
    src_as: UInt32Builder,
    dst_as: UInt32Builder,
    src_mask: UInt8Builder,
    dst_mask: UInt8Builder,
    vlan: UInt16Builder,
    direction: UInt8Builder,
    sampling_rate: UInt32Builder,
    sampling_source: StringBuilder,
    rows: usize,
    capacity: usize,
    received_min: i64,
    received_max: i64,
}

fn addr(b: &mut FixedSizeBinaryBuilder, v: Option<[u8; 16]>) {
    match v {
        // Appending exactly 16 bytes to a 16-byte builder cannot fail.
        Some(a) => {
            let _ = b.append_value(a);
        }
        None => b.append_null(),
    }
}

impl FlowBuilders {
    /// Builders with room for `capacity` rows.
    pub fn new(capacity: usize) -> Self {
        let n = capacity;
        Self {
            time_received: TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC"),
            flow_start: TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC"),
            flow_end: TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC"),
            exporter: FixedSizeBinaryBuilder::with_capacity(n, 16),
            domain: UInt32Builder::with_capacity(n),
            sequence: UInt32Builder::with_capacity(n),
            version: UInt16Builder::with_capacity(n),
            src_addr: FixedSizeBinaryBuilder::with_capacity(n, 16),
            dst_addr: FixedSizeBinaryBuilder::with_capacity(n, 16),
            next_hop: FixedSizeBinaryBuilder::with_capacity(n, 16),
            src_port: UInt16Builder::with_capacity(n),
            dst_port: UInt16Builder::with_capacity(n),
            protocol: UInt8Builder::with_capacity(n),
            tcp_flags: UInt16Builder::with_capacity(n),
            tos: UInt8Builder::with_capacity(n),
            in_if: UInt32Builder::with_capacity(n),
            out_if: UInt32Builder::with_capacity(n),
            bytes: UInt64Builder::with_capacity(n),
            packets: UInt64Builder::with_capacity(n),
            src_as: UInt32Builder::with_capacity(n),
            dst_as: UInt32Builder::with_capacity(n),
            src_mask: UInt8Builder::with_capacity(n),
            dst_mask: UInt8Builder::with_capacity(n),
            vlan: UInt16Builder::with_capacity(n),
            direction: UInt8Builder::with_capacity(n),
            sampling_rate: UInt32Builder::with_capacity(n),
            sampling_source: StringBuilder::with_capacity(n, n * 7),
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
        self.time_received.append_value(h.time_received);
        self.received_min = self.received_min.min(h.time_received);
        self.received_max = self.received_max.max(h.time_received);
        self.flow_start.append_option(r.flow_start);
        self.flow_end.append_option(r.flow_end);
        let _ = self.exporter.append_value(h.exporter);
        self.domain.append_value(h.domain);
        self.sequence.append_value(h.sequence);
        self.version.append_value(h.version);
        addr(&mut self.src_addr, r.src_addr);
        addr(&mut self.dst_addr, r.dst_addr);
        addr(&mut self.next_hop, r.next_hop);
        self.src_port.append_option(r.src_port);
        self.dst_port.append_option(r.dst_port);
        self.protocol.append_option(r.protocol);
        self.tcp_flags.append_option(r.tcp_flags);
        self.tos.append_option(r.tos);
        self.in_if.append_option(r.in_if);
        self.out_if.append_option(r.out_if);
        self.bytes.append_value(r.bytes.unwrap_or(0));
        self.packets.append_value(r.packets.unwrap_or(0));
        self.src_as.append_option(r.src_as);
        self.dst_as.append_option(r.dst_as);
        self.src_mask.append_option(r.src_mask);
        self.dst_mask.append_option(r.dst_mask);
        self.vlan.append_option(r.vlan);
        self.direction.append_option(r.direction);
        self.sampling_rate.append_value(r.sampling_rate.max(1));
        self.sampling_source.append_value(r.sampling_source.unwrap_or(SamplingSource::Default).as_str());
        self.rows += 1;
    }

    /// The buffered rows as a batch; the builders are empty afterwards and
    /// keep their capacity.
    pub fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.time_received.finish()),
            Arc::new(self.flow_start.finish()),
            Arc::new(self.flow_end.finish()),
            Arc::new(self.exporter.finish()),
            Arc::new(self.domain.finish()),
            Arc::new(self.sequence.finish()),
            Arc::new(self.version.finish()),
            Arc::new(self.src_addr.finish()),
            Arc::new(self.dst_addr.finish()),
            Arc::new(self.next_hop.finish()),
            Arc::new(self.src_port.finish()),
            Arc::new(self.dst_port.finish()),
            Arc::new(self.protocol.finish()),
            Arc::new(self.tcp_flags.finish()),
            Arc::new(self.tos.finish()),
            Arc::new(self.in_if.finish()),
            Arc::new(self.out_if.finish()),
            Arc::new(self.bytes.finish()),
            Arc::new(self.packets.finish()),
            Arc::new(self.src_as.finish()),
            Arc::new(self.dst_as.finish()),
            Arc::new(self.src_mask.finish()),
            Arc::new(self.dst_mask.finish()),
            Arc::new(self.vlan.finish()),
            Arc::new(self.direction.finish()),
            Arc::new(self.sampling_rate.finish()),
            Arc::new(self.sampling_source.finish()),
        ];
        self.rows = 0;
        self.received_min = i64::MAX;
        self.received_max = i64::MIN;
        RecordBatch::try_new(flow_schema(), columns).expect("builders match the flow schema")
    }
}
