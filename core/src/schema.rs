//! The normalized flow schema shared by every NetFlow/IPFIX source, and the
//! address representation used inside the engine.
//!
//! Addresses are 16-byte `FixedSizeBinary` values; IPv4 addresses are stored
//! v4-mapped (`::ffff:a.b.c.d`) so a single column holds both families and a
//! comparison is a 16-byte `memcmp`. Sinks render them in human form.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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

/// Encodes an address as the engine's 16-byte form (IPv4 is v4-mapped).
pub fn addr_to_bytes(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Decodes the engine's 16-byte form; v4-mapped addresses come back as IPv4.
pub fn addr_from_bytes(bytes: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// The v4-mapped form of an IPv4 address given as a big-endian `u32`.
#[inline]
pub fn v4_mapped(addr: u32) -> [u8; 16] {
    let o = Ipv4Addr::from(addr).octets();
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, o[0], o[1], o[2], o[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_in_both_families() {
        for s in ["10.1.2.3", "0.0.0.0", "2001:db8::1", "::1", "::"] {
            let a: IpAddr = s.parse().unwrap();
            assert_eq!(addr_from_bytes(addr_to_bytes(a)), a, "{s}");
        }
        assert_eq!(v4_mapped(0x0a01_0203), addr_to_bytes("10.1.2.3".parse().unwrap()));
    }
}
