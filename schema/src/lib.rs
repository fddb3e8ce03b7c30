//! The normalized flow schema (DESIGN.md, "The flow schema"), defined once.
//!
//! The engine's sources build batches of it, the Kafka codec encodes it, the
//! Parquet sink writes it and the plugin SDK reads it: all of them take the
//! column names, types and nullability from [`COLUMNS`] instead of repeating
//! them. This crate depends on `arrow-schema` alone so the SDK can compile it
//! to WebAssembly.
//!
//! Addresses are 16-byte `FixedSizeBinary` values; IPv4 addresses are stored
//! v4-mapped (`::ffff:a.b.c.d`) so one column holds both families and a
//! comparison is a 16-byte `memcmp`. Columns that a protocol version cannot
//! fill are null, never zero, so that "not exported" and "exported as 0"
//! stay distinguishable: that includes `bytes` and `packets` (a NAT event
//! carries no counters) and `sampling_rate` (null when `sampling_source` is
//! `unknown`).

pub mod datagram;

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, TimeUnit};

/// Width of an address column.
pub const ADDR_LEN: i32 = 16;

/// The Arrow type of every timestamp column: nanoseconds since the epoch, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// The Arrow type of an address column.
pub fn address_type() -> DataType {
    DataType::FixedSizeBinary(ADDR_LEN)
}

/// The type of a flow column, as a constant (an Arrow `DataType` with a
/// time zone cannot be one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// [`timestamp_type`].
    Timestamp,
    /// [`address_type`].
    Address,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    Utf8,
}

impl ColumnType {
    /// The Arrow type.
    pub fn data_type(self) -> DataType {
        match self {
            Self::Timestamp => timestamp_type(),
            Self::Address => address_type(),
            Self::UInt8 => DataType::UInt8,
            Self::UInt16 => DataType::UInt16,
            Self::UInt32 => DataType::UInt32,
            Self::UInt64 => DataType::UInt64,
            Self::Utf8 => DataType::Utf8,
        }
    }
}

/// One column of the flow schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
    pub nullable: bool,
}

impl Column {
    /// The Arrow field.
    pub fn field(&self) -> Field {
        Field::new(self.name, self.ty.data_type(), self.nullable)
    }
}

/// Column names, for code that reads or writes one column by name.
pub mod names {
    pub const TIME_RECEIVED: &str = "time_received";
    pub const FLOW_START: &str = "flow_start";
    pub const FLOW_END: &str = "flow_end";
    pub const EXPORTER: &str = "exporter";
    pub const OBSERVATION_DOMAIN: &str = "observation_domain";
    pub const SEQUENCE: &str = "sequence";
    pub const FLOW_VERSION: &str = "flow_version";
    pub const SRC_ADDR: &str = "src_addr";
    pub const DST_ADDR: &str = "dst_addr";
    pub const NEXT_HOP: &str = "next_hop";
    pub const SRC_PORT: &str = "src_port";
    pub const DST_PORT: &str = "dst_port";
    pub const PROTOCOL: &str = "protocol";
    pub const TCP_FLAGS: &str = "tcp_flags";
    pub const TOS: &str = "tos";
    pub const IN_IF: &str = "in_if";
    pub const OUT_IF: &str = "out_if";
    pub const BYTES: &str = "bytes";
    pub const PACKETS: &str = "packets";
    pub const SRC_AS: &str = "src_as";
    pub const DST_AS: &str = "dst_as";
    pub const SRC_MASK: &str = "src_mask";
    pub const DST_MASK: &str = "dst_mask";
    pub const VLAN: &str = "vlan";
    pub const DIRECTION: &str = "direction";
    pub const SAMPLING_RATE: &str = "sampling_rate";
    pub const SAMPLING_SOURCE: &str = "sampling_source";
}

const fn col(name: &'static str, ty: ColumnType, nullable: bool) -> Column {
    Column { name, ty, nullable }
}

/// The flow schema's columns, in order.
pub const COLUMNS: [Column; 27] = {
    use ColumnType::*;
    use names::*;
    [
        col(TIME_RECEIVED, Timestamp, false),
        col(FLOW_START, Timestamp, true),
        col(FLOW_END, Timestamp, true),
        col(EXPORTER, Address, false),
        col(OBSERVATION_DOMAIN, UInt32, false),
        col(SEQUENCE, UInt32, true),
        col(FLOW_VERSION, UInt16, false),
        col(SRC_ADDR, Address, true),
        col(DST_ADDR, Address, true),
        col(NEXT_HOP, Address, true),
        col(SRC_PORT, UInt16, true),
        col(DST_PORT, UInt16, true),
        col(PROTOCOL, UInt8, true),
        col(TCP_FLAGS, UInt16, true),
        col(TOS, UInt8, true),
        col(IN_IF, UInt32, true),
        col(OUT_IF, UInt32, true),
        col(BYTES, UInt64, true),
        col(PACKETS, UInt64, true),
        col(SRC_AS, UInt32, true),
        col(DST_AS, UInt32, true),
        col(SRC_MASK, UInt8, true),
        col(DST_MASK, UInt8, true),
        col(VLAN, UInt16, true),
        col(DIRECTION, UInt8, true),
        col(SAMPLING_RATE, UInt32, true),
        col(SAMPLING_SOURCE, Utf8, false),
    ]
};

/// The column called `name`, if the flow schema has one.
pub fn column(name: &str) -> Option<&'static Column> {
    COLUMNS.iter().find(|c| c.name == name)
}

/// The flow schema as an Arrow schema (a new one per call; the engine
/// caches its own).
pub fn flow_schema() -> Schema {
    Schema::new(COLUMNS.iter().map(|c| Arc::new(c.field())).collect::<Vec<_>>())
}

/// Where a record's sampling rate came from (`sampling_source` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SamplingSource {
    /// The NetFlow v5 header's sampling field.
    Header,
    /// v9/IPFIX options data (sampling interval, sampler tables).
    Options,
    /// The per-exporter default in the pipeline config, or 1 when nothing
    /// was announced and nothing is configured.
    #[default]
    Default,
    /// A per-exporter override in the pipeline config.
    Override,
    /// The data record itself carries its rate (e.g. `samplingInterval` in
    /// every flow record, as Huawei exports it).
    Record,
    /// The record names a sampler that has not been described (yet): the
    /// rate is not known and `sampling_rate` is null.
    Unknown,
}

impl SamplingSource {
    /// Every source, in the order of their codes.
    pub const ALL: [SamplingSource; 6] =
        [Self::Header, Self::Options, Self::Default, Self::Override, Self::Record, Self::Unknown];

    /// The value stored in the `sampling_source` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Header => "header",
            Self::Options => "options",
            Self::Default => "default",
            Self::Override => "override",
            Self::Record => "record",
            Self::Unknown => "unknown",
        }
    }

    /// The source a `sampling_source` value names.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for (i, c) in COLUMNS.iter().enumerate() {
            assert!(COLUMNS[..i].iter().all(|o| o.name != c.name), "{} twice", c.name);
            assert_eq!(column(c.name), Some(c));
        }
        assert_eq!(flow_schema().fields().len(), COLUMNS.len());
        assert!(column("no_such_column").is_none());
    }

    #[test]
    fn sampling_sources_round_trip() {
        for s in SamplingSource::ALL {
            assert_eq!(SamplingSource::parse(s.as_str()), Some(s));
        }
        assert_eq!(SamplingSource::parse("none"), None);
    }
}
