//! The normalized flow schema shared by every NetFlow/IPFIX source, and the
//! address representation used inside the engine.
//!
//! Addresses are 16-byte `FixedSizeBinary` values; IPv4 addresses are stored
//! v4-mapped (`::ffff:a.b.c.d`) so a single column holds both families and a
//! comparison is a 16-byte `memcmp`. Sinks render them in human form.

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

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
}

/// The normalized flow schema (DESIGN.md, "The flow schema").
///
/// Columns that a protocol version cannot fill are null, never zero, so that
/// "not exported" and "exported as 0" stay distinguishable: that includes
/// `bytes` and `packets` (a NAT event carries no counters) and
/// `sampling_rate` (null when `sampling_source` is `unknown`).
pub fn flow_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            use DataType::*;
            let f = |name: &str, dt: DataType, nullable: bool| Field::new(name, dt, nullable);
            Arc::new(Schema::new(vec![
                f("time_received", timestamp_type(), false),
                f("flow_start", timestamp_type(), true),
                f("flow_end", timestamp_type(), true),
                f("exporter", address_type(), false),
                f("observation_domain", UInt32, false),
                f("sequence", UInt32, true),
                f("flow_version", UInt16, false),
                f("src_addr", address_type(), true),
                f("dst_addr", address_type(), true),
                f("next_hop", address_type(), true),
                f("src_port", UInt16, true),
                f("dst_port", UInt16, true),
                f("protocol", UInt8, true),
                f("tcp_flags", UInt16, true),
                f("tos", UInt8, true),
                f("in_if", UInt32, true),
                f("out_if", UInt32, true),
                f("bytes", UInt64, true),
                f("packets", UInt64, true),
                f("src_as", UInt32, true),
                f("dst_as", UInt32, true),
                f("src_mask", UInt8, true),
                f("dst_mask", UInt8, true),
                f("vlan", UInt16, true),
                f("direction", UInt8, true),
                f("sampling_rate", UInt32, true),
                f("sampling_source", Utf8, false),
            ]))
        })
        .clone()
}

pub use crate::addr::Addr;
