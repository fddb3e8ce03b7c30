//! Writes sFlow v5 datagrams: for tests, benches and the load generator.
//! Every structure the decoder reads can be written, in the layout of the
//! sFlow v5 specification (big-endian, 4-byte aligned opaque data).

use spillway_core::addr::Addr;

use super::counters::{Ethernet, Generic};

/// `count` datagrams from `agents` agents (round robin), each with
/// `samples` flow samples of a 128-byte Ethernet/IPv4/TCP header, as a
/// switch exports them: for benches and load.
pub fn flow_datagrams(agents: u32, count: usize, samples: usize) -> Vec<(Addr, Vec<u8>)> {
    let mut header = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    header.extend_from_slice(&[0x45, 0, 0x05, 0xdc, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    header.extend_from_slice(&[
        0x04, 0xd2, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    header.resize(128, 0);
    (0..count)
        .map(|i| {
            let a = i as u32 % agents;
            let agent = Addr::v4(0x0a00_0000 | a);
            let seq = (i as u32 / agents) + 1;
            let samples = (0..samples as u32)
                .map(|s| {
                    let mut h = header.clone();
                    // Vary the 5-tuple per sample.
                    h[29] = s as u8;
                    h[34] = (i >> 8) as u8;
                    h[35] = i as u8;
                    Sample::Flow(FlowSample {
                        sequence: seq * samples as u32 + s,
                        source_id: 3,
                        rate: 1024,
                        pool: seq * 1024,
                        input: 3,
                        output: 7,
                        records: vec![
                            FlowRecord::Header { protocol: 1, frame_length: 1518, stripped: 4, bytes: h },
                            FlowRecord::Switch { src_vlan: 10, dst_vlan: 10 },
                        ],
                        ..FlowSample::default()
                    })
                })
                .collect();
            (agent, Datagram { agent, sub_agent: 0, sequence: seq, uptime_ms: seq * 10, samples }.encode())
        })
        .collect()
}

/// One sFlow v5 datagram.
#[derive(Debug, Clone)]
pub struct Datagram {
    pub agent: Addr,
    pub sub_agent: u32,
    pub sequence: u32,
    pub uptime_ms: u32,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone)]
pub enum Sample {
    Flow(FlowSample),
    Counters(CounterSample),
}

/// A flow sample; `expanded` writes format 3 (separate source type and
/// index, interface format words) instead of 1.
#[derive(Debug, Clone, Default)]
pub struct FlowSample {
    pub expanded: bool,
    pub sequence: u32,
    /// type << 24 | index.
    pub source_id: u32,
    pub rate: u32,
    pub pool: u32,
    pub drops: u32,
    /// Compact form: two format bits and 30 bits of value.
    pub input: u32,
    pub output: u32,
    pub records: Vec<FlowRecord>,
}

#[derive(Debug, Clone)]
pub enum FlowRecord {
    /// Raw packet header (format 1): protocol 1 Ethernet, 11 IPv4, 12 IPv6.
    Header {
        protocol: u32,
        frame_length: u32,
        stripped: u32,
        bytes: Vec<u8>,
    },
    /// Sampled IPv4 (format 3) or IPv6 (format 4), by the addresses' family.
    Ip {
        length: u32,
        protocol: u32,
        src: std::net::IpAddr,
        dst: std::net::IpAddr,
        src_port: u32,
        dst_port: u32,
        tcp_flags: u32,
        tos: u32,
    },
    Switch {
        src_vlan: u32,
        dst_vlan: u32,
    },
    Router {
        next_hop: std::net::IpAddr,
        src_mask: u32,
        dst_mask: u32,
    },
    Gateway {
        next_hop: std::net::IpAddr,
        own_as: u32,
        src_as: u32,
        src_peer_as: u32,
        path: Vec<Vec<u32>>,
    },
    /// A record of another enterprise or format, skipped by its length.
    Other {
        format: u32,
        bytes: Vec<u8>,
    },
}

#[derive(Debug, Clone, Default)]
pub struct CounterSample {
    pub expanded: bool,
    pub sequence: u32,
    pub source_id: u32,
    /// With its ifIndex.
    pub generic: Option<(u32, Generic)>,
    pub ethernet: Option<Ethernet>,
}

fn put(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn address(out: &mut Vec<u8>, a: std::net::IpAddr) {
    match a {
        std::net::IpAddr::V4(v) => {
            put(out, 1);
            out.extend_from_slice(&v.octets());
        }
        std::net::IpAddr::V6(v) => {
            put(out, 2);
            out.extend_from_slice(&v.octets());
        }
    }
}

/// A sample's data source: one word compact, type and index expanded.
fn source_id(out: &mut Vec<u8>, expanded: bool, id: u32) {
    if expanded {
        put(out, id >> 24);
        put(out, id & 0x00ff_ffff);
    } else {
        put(out, id);
    }
}

/// Writes `format`, a length word, and what `body` writes.
fn framed(out: &mut Vec<u8>, format: u32, body: impl FnOnce(&mut Vec<u8>)) {
    put(out, format);
    let at = out.len();
    put(out, 0);
    body(out);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

impl Datagram {
    /// The datagram's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1400);
        put(&mut out, 5);
        address(&mut out, self.agent.ip());
        put(&mut out, self.sub_agent);
        put(&mut out, self.sequence);
        put(&mut out, self.uptime_ms);
        put(&mut out, self.samples.len() as u32);
        for s in &self.samples {
            match s {
                Sample::Flow(f) => framed(&mut out, if f.expanded { 3 } else { 1 }, |o| f.write(o)),
                Sample::Counters(c) => framed(&mut out, if c.expanded { 4 } else { 2 }, |o| c.write(o)),
            }
        }
        out
    }
}

impl FlowSample {
    fn write(&self, o: &mut Vec<u8>) {
        put(o, self.sequence);
        source_id(o, self.expanded, self.source_id);
        put(o, self.rate);
        put(o, self.pool);
        put(o, self.drops);
        if self.expanded {
            for v in [self.input, self.output] {
                put(o, v >> 30);
                put(o, v & 0x3fff_ffff);
            }
        } else {
            put(o, self.input);
            put(o, self.output);
        }
        put(o, self.records.len() as u32);
        for r in &self.records {
            r.write(o);
        }
    }
}

impl FlowRecord {
    fn write(&self, o: &mut Vec<u8>) {
        match self {
            Self::Header { protocol, frame_length, stripped, bytes } => framed(o, 1, |o| {
                put(o, *protocol);
                put(o, *frame_length);
                put(o, *stripped);
                put(o, bytes.len() as u32);
                o.extend_from_slice(bytes);
                o.resize(o.len().next_multiple_of(4), 0);
            }),
            Self::Ip { length, protocol, src, dst, src_port, dst_port, tcp_flags, tos } => {
                framed(o, if src.is_ipv4() { 3 } else { 4 }, |o| {
                    put(o, *length);
                    put(o, *protocol);
                    for a in [src, dst] {
                        match a {
                            std::net::IpAddr::V4(v) => o.extend_from_slice(&v.octets()),
                            std::net::IpAddr::V6(v) => o.extend_from_slice(&v.octets()),
                        }
                    }
                    for v in [*src_port, *dst_port, *tcp_flags, *tos] {
                        put(o, v);
                    }
                })
            }
            Self::Switch { src_vlan, dst_vlan } => framed(o, 1001, |o| {
                for v in [*src_vlan, 0, *dst_vlan, 0] {
                    put(o, v);
                }
            }),
            Self::Router { next_hop, src_mask, dst_mask } => framed(o, 1002, |o| {
                address(o, *next_hop);
                put(o, *src_mask);
                put(o, *dst_mask);
            }),
            Self::Gateway { next_hop, own_as, src_as, src_peer_as, path } => framed(o, 1003, |o| {
                address(o, *next_hop);
                put(o, *own_as);
                put(o, *src_as);
                put(o, *src_peer_as);
                put(o, path.len() as u32);
                for seg in path {
                    put(o, 2); // AS_SEQUENCE
                    put(o, seg.len() as u32);
                    for a in seg {
                        put(o, *a);
                    }
                }
                put(o, 0); // communities
                put(o, 100); // local preference
            }),
            Self::Other { format, bytes } => framed(o, *format, |o| o.extend_from_slice(bytes)),
        }
    }
}

impl CounterSample {
    fn write(&self, o: &mut Vec<u8>) {
        put(o, self.sequence);
        source_id(o, self.expanded, self.source_id);
        put(o, self.generic.is_some() as u32 + self.ethernet.is_some() as u32);
        if let Some((if_index, g)) = &self.generic {
            framed(o, 1, |o| {
                put(o, *if_index);
                put(o, g.if_type);
                put64(o, g.if_speed);
                put(o, g.direction);
                put(o, g.status);
                put64(o, g.in_octets);
                for v in [
                    g.in_ucast,
                    g.in_multicast,
                    g.in_broadcast,
                    g.in_discards,
                    g.in_errors,
                    g.in_unknown_protos,
                ] {
                    put(o, v);
                }
                put64(o, g.out_octets);
                for v in [
                    g.out_ucast,
                    g.out_multicast,
                    g.out_broadcast,
                    g.out_discards,
                    g.out_errors,
                    g.promiscuous,
                ] {
                    put(o, v);
                }
            });
        }
        if let Some(e) = &self.ethernet {
            framed(o, 2, |o| {
                for v in [
                    e.alignment_errors,
                    e.fcs_errors,
                    e.single_collision_frames,
                    e.multiple_collision_frames,
                    e.sqe_test_errors,
                    e.deferred_transmissions,
                    e.late_collisions,
                    e.excessive_collisions,
                    e.internal_mac_transmit_errors,
                    e.carrier_sense_errors,
                    e.frame_too_longs,
                    e.internal_mac_receive_errors,
                    e.symbol_errors,
                ] {
                    put(o, v);
                }
            });
        }
    }
}
