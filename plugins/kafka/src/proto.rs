//! The protobuf encoding: goflow2's `FlowMessage` (docs/flow.proto), so
//! goflow2 consumers read our messages, plus Spillway's own fields under
//! tags goflow2 does not use.
//!
//! Written with prost's derive macros rather than generated from the
//! `.proto` at build time: that would need `protoc` on every build machine,
//! and the message is small and stable. A test checks that the tags match
//! docs/flow.proto.

/// goflow2 `FlowMessage.FlowType`.
pub const FLOW_UNKNOWN: i32 = 0;
pub const NETFLOW_V5: i32 = 2;
pub const NETFLOW_V9: i32 = 3;
pub const IPFIX: i32 = 4;

/// One flow record.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FlowMessage {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(uint64, tag = "110")]
    pub time_received_ns: u64,
    #[prost(uint32, tag = "4")]
    pub sequence_num: u32,
    #[prost(uint64, tag = "3")]
    pub sampling_rate: u64,
    /// The exporter.
    #[prost(bytes = "vec", tag = "11")]
    pub sampler_address: Vec<u8>,
    #[prost(uint64, tag = "111")]
    pub time_flow_start_ns: u64,
    #[prost(uint64, tag = "112")]
    pub time_flow_end_ns: u64,
    #[prost(uint64, tag = "9")]
    pub bytes: u64,
    #[prost(uint64, tag = "10")]
    pub packets: u64,
    #[prost(bytes = "vec", tag = "6")]
    pub src_addr: Vec<u8>,
    #[prost(bytes = "vec", tag = "7")]
    pub dst_addr: Vec<u8>,
    /// 0x0800 IPv4, 0x86dd IPv6.
    #[prost(uint32, tag = "30")]
    pub etype: u32,
    #[prost(uint32, tag = "20")]
    pub proto: u32,
    #[prost(uint32, tag = "21")]
    pub src_port: u32,
    #[prost(uint32, tag = "22")]
    pub dst_port: u32,
    #[prost(uint32, tag = "18")]
    pub in_if: u32,
    #[prost(uint32, tag = "19")]
    pub out_if: u32,
    #[prost(uint32, tag = "29")]
    pub vlan_id: u32,
    #[prost(uint32, tag = "23")]
    pub ip_tos: u32,
    #[prost(uint32, tag = "26")]
    pub tcp_flags: u32,
    #[prost(uint32, tag = "31")]
    pub icmp_type: u32,
    #[prost(uint32, tag = "32")]
    pub icmp_code: u32,
    #[prost(uint32, tag = "14")]
    pub src_as: u32,
    #[prost(uint32, tag = "15")]
    pub dst_as: u32,
    #[prost(bytes = "vec", tag = "12")]
    pub next_hop: Vec<u8>,
    #[prost(uint32, tag = "16")]
    pub src_net: u32,
    #[prost(uint32, tag = "17")]
    pub dst_net: u32,
    #[prost(uint32, tag = "70")]
    pub observation_domain_id: u32,
    // Spillway's fields (goflow2 consumers skip unknown tags).
    /// NetFlow/IPFIX version as received (5, 9, 10).
    #[prost(uint32, tag = "1001")]
    pub flow_version: u32,
    /// Where `sampling_rate` came from.
    #[prost(string, tag = "1002")]
    pub sampling_source: String,
    /// 0 ingress, 1 egress (IPFIX flowDirection); absent when unknown.
    #[prost(uint32, optional, tag = "1003")]
    pub direction: Option<u32>,
    /// Presence bits for fields whose zero is a real value: see `HAS_*`.
    #[prost(uint32, tag = "1004")]
    pub present: u32,
}

/// `present` bits: the field was known (a zero in it is a real zero).
pub const HAS_START: u32 = 1 << 0;
pub const HAS_END: u32 = 1 << 1;
pub const HAS_SEQUENCE: u32 = 1 << 2;
pub const HAS_PORTS: u32 = 1 << 3;
pub const HAS_PROTO: u32 = 1 << 4;
pub const HAS_TCP_FLAGS: u32 = 1 << 5;
pub const HAS_TOS: u32 = 1 << 6;
pub const HAS_IN_IF: u32 = 1 << 7;
pub const HAS_OUT_IF: u32 = 1 << 8;
pub const HAS_AS: u32 = 1 << 9;
pub const HAS_MASKS: u32 = 1 << 10;
pub const HAS_VLAN: u32 = 1 << 11;
pub const HAS_BYTES: u32 = 1 << 12;
pub const HAS_PACKETS: u32 = 1 << 13;
pub const HAS_SAMPLING_RATE: u32 = 1 << 14;

#[cfg(test)]
mod tests {
    /// Every tag we write is the one docs/flow.proto gives the field.
    #[test]
    fn tags_match_the_published_proto() {
        let proto =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/flow.proto")).unwrap();
        let src = include_str!("proto.rs");
        let mut checked = 0;
        let lines: Vec<&str> = src.lines().collect();
        for w in lines.windows(2) {
            let Some(tag) = w[0].trim().strip_prefix("#[prost(").and_then(|a| a.split("tag = \"").nth(1))
            else {
                continue;
            };
            let tag = tag.split('"').next().unwrap();
            let name =
                w[1].trim().trim_start_matches("pub ").split(':').next().unwrap().trim_start_matches("r#");
            let want = format!(" {name} = {tag};");
            assert!(proto.contains(&want), "docs/flow.proto lacks `{}`", want.trim());
            checked += 1;
        }
        assert!(checked >= 30, "{checked}");
    }
}
