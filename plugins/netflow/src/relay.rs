//! The relay tier's edge: datagrams as records (the datagram schema of
//! `spillway_schema::datagram`), not decoded. An edge keeps no template
//! state, so any edge can take any exporter, and what it forwards (to the
//! `kafka` sink, `encoding: datagram`) is decoded later by the
//! `netflow_decode` transform exactly as the `netflow` source would have.

use std::sync::{Arc, OnceLock};

use arrow::array::{
    ArrayRef, BinaryBuilder, FixedSizeBinaryBuilder, RecordBatch, TimestampNanosecondBuilder, UInt16Builder,
};
use arrow::datatypes::SchemaRef;
use spillway_core::addr::Addr;

/// The datagram schema, built once.
pub fn datagram_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| Arc::new(spillway_schema::datagram::schema())).clone()
}

/// Datagrams being gathered into a batch.
pub struct Relay {
    collector: Addr,
    collector_port: u16,
    time: TimestampNanosecondBuilder,
    exporter: FixedSizeBinaryBuilder,
    exporter_port: UInt16Builder,
    to: FixedSizeBinaryBuilder,
    to_port: UInt16Builder,
    payload: BinaryBuilder,
    rows: usize,
    lo: i64,
    hi: i64,
}

impl Relay {
    /// For datagrams received on `collector:collector_port`.
    pub fn new(collector: Addr, collector_port: u16) -> Self {
        Self {
            collector,
            collector_port,
            time: TimestampNanosecondBuilder::new(),
            exporter: FixedSizeBinaryBuilder::new(16),
            exporter_port: UInt16Builder::new(),
            to: FixedSizeBinaryBuilder::new(16),
            to_port: UInt16Builder::new(),
            payload: BinaryBuilder::new(),
            rows: 0,
            lo: i64::MAX,
            hi: i64::MIN,
        }
    }

    /// Adds one datagram.
    pub fn push(&mut self, time_received: i64, exporter: Addr, port: u16, payload: &[u8]) {
        self.time.append_value(time_received);
        self.exporter.append_value(exporter).expect("16 bytes");
        self.exporter_port.append_value(port);
        self.to.append_value(self.collector).expect("16 bytes");
        self.to_port.append_value(self.collector_port);
        self.payload.append_value(payload);
        self.rows += 1;
        self.lo = self.lo.min(time_received);
        self.hi = self.hi.max(time_received);
    }

    /// Datagrams gathered.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when none are.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The gathered datagrams as a batch, with their receive-time range.
    pub fn take(&mut self) -> Option<(RecordBatch, i64, i64)> {
        if self.rows == 0 {
            return None;
        }
        let tz = spillway_schema::timestamp_type();
        let time = self.time.finish();
        let time: ArrayRef = match tz {
            arrow::datatypes::DataType::Timestamp(_, tz) => Arc::new(time.with_timezone_opt(tz)),
            _ => Arc::new(time),
        };
        let cols: Vec<ArrayRef> = vec![
            time,
            Arc::new(self.exporter.finish()),
            Arc::new(self.exporter_port.finish()),
            Arc::new(self.to.finish()),
            Arc::new(self.to_port.finish()),
            Arc::new(self.payload.finish()),
        ];
        let b = RecordBatch::try_new(datagram_schema(), cols).expect("the datagram schema");
        let r = (b, self.lo, self.hi);
        self.rows = 0;
        self.lo = i64::MAX;
        self.hi = i64::MIN;
        Some(r)
    }
}
