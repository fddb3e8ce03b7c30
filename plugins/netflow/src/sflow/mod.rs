//! sFlow version 5 (sflow.org, "sFlow Version 5", 2004): datagrams into
//! flow-schema rows and interface-counter rows.
//!
//! sFlow carries no templates: each datagram describes itself, so a
//! collector that never saw an agent decodes its first datagram, and a fleet
//! behind a balancer needs no shared state for it. What is kept per agent is
//! only sequence positions, to count what never arrived.
//!
//! - Flow samples (compact and expanded): one row per sample. The raw packet
//!   header (Ethernet, IPv4, IPv6, MPLS) goes through the parser IPFIX PSAMP
//!   sections use ([`crate::packet`]); sampled IPv4/IPv6 records fill what no
//!   header gave; extended switch, router and gateway data give VLAN, next
//!   hop, masks and AS numbers. `bytes` is the sampled frame's length and
//!   `packets` 1, with the sample's rate in `sampling_rate`
//!   (`sampling_source: record`): the same convention as every other row of
//!   the flow schema (unscaled counts and the rate beside them).
//! - Counter samples (generic interface, Ethernet): one [`counters`] row per
//!   sample, in the `snmp` source's column names where they mean the same.
//! - Sequence numbers per (agent, sub-agent) datagrams and per (agent,
//!   source id) samples, and the agent's own drop counter: [`SflowLoss`]
//!   rows and counters.
//!
//! Every read is bounds-checked; a datagram that breaks the rules keeps what
//! was valid before the break, and the samples it announced but could not
//! be read count as dropped (bounded by what its bytes could hold).

pub mod counters;
pub mod encode;

use spillway_core::addr::Addr;
use spillway_core::schema::SamplingSource;

use crate::decode::{DecodeError, Outcome, SamplingConfig};
use crate::packet::{self, Headers};
use crate::row::{ExtraValues, FlowBuilders, Header, Row};
use crate::sequence::{SeqStats, Stream, Units};
use crate::state::Version;

/// The `flow_version` of sFlow v5 rows: 0x80 | 5, as nfdump stores them, so
/// they never read as NetFlow v5.
pub const FLOW_VERSION: u16 = 0x85;

/// The value of an interface field that means "not known" (30 bits set).
const IF_UNKNOWN: u32 = 0x3fff_ffff;

/// Sample formats (enterprise 0).
const FLOW_SAMPLE: u32 = 1;
const COUNTER_SAMPLE: u32 = 2;
const FLOW_SAMPLE_EXPANDED: u32 = 3;
const COUNTER_SAMPLE_EXPANDED: u32 = 4;

/// Flow record formats (enterprise 0).
const RAW_HEADER: u32 = 1;
const SAMPLED_ETHERNET: u32 = 2;
const SAMPLED_IPV4: u32 = 3;
const SAMPLED_IPV6: u32 = 4;
const EXTENDED_SWITCH: u32 = 1001;
const EXTENDED_ROUTER: u32 = 1002;
const EXTENDED_GATEWAY: u32 = 1003;

/// Counter record formats (enterprise 0).
const GENERIC_INTERFACE: u32 = 1;
const ETHERNET_INTERFACE: u32 = 2;

/// Header protocols of a raw packet header record.
const HEADER_ETHERNET: u32 = 1;
const HEADER_IPV4: u32 = 11;
const HEADER_IPV6: u32 = 12;
const HEADER_MPLS: u32 = 13;

/// Smallest sample on the wire (format and length words): bounds how many
/// samples a datagram's remaining bytes could have held.
const MIN_SAMPLE: usize = 8;

/// Whether `msg` is an sFlow datagram (a 32-bit version word of 2, 4 or 5;
/// NetFlow and IPFIX start with a non-zero 16-bit version).
#[inline]
pub fn is_sflow(msg: &[u8]) -> bool {
    msg.len() >= 4 && msg[0] == 0 && msg[1] == 0 && msg[2] == 0 && matches!(msg[3], 2 | 4 | 5)
}

/// Why an sFlow datagram (or part of it) could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SflowError {
    #[error("sFlow version {version}: only version 5 is decoded")]
    Version { version: u32 },
    #[error("the datagram ends inside {what} at byte {at}")]
    Truncated { what: &'static str, at: usize },
    #[error("agent address type {kind} is neither IPv4 (1) nor IPv6 (2)")]
    AddressType { kind: u32 },
    #[error("{what} of {length} bytes runs past the {remaining} bytes left")]
    Length { what: &'static str, length: u32, remaining: usize },
}

/// Counters kept by the sFlow decoder.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SflowStats {
    pub datagrams: u64,
    pub flow_samples: u64,
    pub counter_samples: u64,
    /// Samples of formats this decoder does not read (other enterprises),
    /// skipped by their length.
    pub samples_skipped: u64,
    /// Flow or counter records of formats not read, skipped by their length.
    pub records_skipped: u64,
    /// Datagrams missing by the (agent, sub-agent) sequence numbers.
    pub datagrams_missing: u64,
    /// Packets the agents say they could not sample (their `drops`).
    pub agent_drops: u64,
    /// Sequence positions evicted to respect the bound.
    pub streams_evicted: u64,
}

/// Which count a [`SflowLoss`] is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossKind {
    /// Datagrams, by the (agent, sub-agent) sequence.
    Datagrams,
    /// Flow samples, by the (agent, source id) sequence.
    FlowSamples,
    /// Counter samples, by the (agent, source id) sequence.
    CounterSamples,
    /// Packets the agent could not sample (its `drops` counter grew).
    AgentDrops,
}

impl LossKind {
    /// The value of the `loss` output's `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Datagrams => "datagrams",
            Self::FlowSamples => "flow_samples",
            Self::CounterSamples => "counter_samples",
            Self::AgentDrops => "agent_drops",
        }
    }
}

/// Something lost on the way, found by one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SflowLoss {
    pub agent: Addr,
    pub sub_agent: u32,
    /// The data source (type << 24 | index); `None` for datagram gaps.
    pub source_id: Option<u32>,
    pub kind: LossKind,
    /// When the datagram before the gap arrived (ns).
    pub window_start: i64,
    /// When this datagram arrived (ns).
    pub window_end: i64,
    pub expected: u32,
    pub received: u32,
    pub missing: u64,
}

/// Settings of an sFlow decoder.
#[derive(Debug, Clone)]
pub struct DecoderSettings {
    /// Rates from the pipeline config (an override wins over the sample's;
    /// a default serves samples announcing rate 0).
    pub sampling: SamplingConfig,
    /// Most sequence positions kept (datagram streams and sample streams);
    /// the least recently used is evicted beyond it.
    pub max_streams: usize,
}

impl Default for DecoderSettings {
    fn default() -> Self {
        Self { sampling: SamplingConfig::default(), max_streams: 1 << 18 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum StreamKey {
    Datagrams { agent: Addr, sub_agent: u32 },
    Samples { agent: Addr, source_id: u32, counters: bool },
}

/// One stream's sequence position, and for flow samples the agent's drop
/// counter as last seen.
struct Position {
    stream: Stream,
    drops: u32,
}

/// Stateful sFlow decoder for any number of agents.
pub struct SflowDecoder {
    cfg: DecoderSettings,
    streams: lru::LruCache<StreamKey, Position>,
    seq: SeqStats,
    /// Counter rows, when someone reads them.
    counters: Option<counters::CounterRows>,
    /// Losses found since the last [`SflowDecoder::take_losses`], when
    /// someone reads them.
    losses: Option<Vec<SflowLoss>>,
    /// The agent of the last datagram whose header could be read.
    pub last_agent: Option<Addr>,
    pub stats: SflowStats,
}

/// Big-endian reader over a datagram that never reads past its end.
#[derive(Clone, Copy)]
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn u32(&mut self, what: &'static str) -> Result<u32, SflowError> {
        let v = self.b.get(self.at..self.at + 4).ok_or(SflowError::Truncated { what, at: self.at })?;
        self.at += 4;
        Ok(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
    }

    #[inline]
    fn u64(&mut self, what: &'static str) -> Result<u64, SflowError> {
        Ok((self.u32(what)? as u64) << 32 | self.u32(what)? as u64)
    }

    #[inline]
    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SflowError> {
        let v = self.b.get(self.at..self.at + n).ok_or(SflowError::Truncated { what, at: self.at })?;
        self.at += n;
        Ok(v)
    }

    /// An sFlow address: a type word, then 4 or 16 bytes.
    fn address(&mut self, what: &'static str) -> Result<Option<Addr>, SflowError> {
        match self.u32(what)? {
            0 => Ok(None),
            1 => Ok(Addr::from_slice(self.bytes(4, what)?)),
            2 => Ok(Addr::from_slice(self.bytes(16, what)?)),
            kind => Err(SflowError::AddressType { kind }),
        }
    }

    /// The next `length` bytes as their own cursor (a sample or a record),
    /// skipping them here.
    fn sub(&mut self, length: u32, what: &'static str) -> Result<Cursor<'a>, SflowError> {
        let remaining = self.b.len() - self.at;
        if length as usize > remaining {
            return Err(SflowError::Length { what, length, remaining });
        }
        let b = &self.b[self.at..self.at + length as usize];
        self.at += length as usize;
        Ok(Cursor { b, at: 0 })
    }

    /// A sample's data source as type << 24 | index: one word in the
    /// compact formats, two in the expanded ones.
    fn source_id(&mut self, expanded: bool) -> Result<u32, SflowError> {
        if !expanded {
            return self.u32("a sample's source id");
        }
        let ty = self.u32("a sample's source type")?;
        let index = self.u32("a sample's source index")?;
        Ok(ty << 24 | (index & 0x00ff_ffff))
    }

    fn remaining(&self) -> usize {
        self.b.len() - self.at
    }
}

/// An interface in the compact form: two format bits, 30 bits of value.
/// Only format 0 names one interface; 1 (the packet was discarded) and 2
/// (several interfaces) do not.
#[inline]
fn compact_interface(v: u32) -> Option<u32> {
    let (format, value) = (v >> 30, v & IF_UNKNOWN);
    (format == 0 && value != IF_UNKNOWN).then_some(value)
}

/// What one flow sample's records said, before it becomes a row.
#[derive(Default)]
struct Sampled {
    headers: Headers,
    frame_length: Option<u32>,
    /// From a sampled IPv4/IPv6 record: (length, src, dst, protocol, ports,
    /// flags, tos).
    ip_length: Option<u32>,
    next_hop: Option<Addr>,
    src_mask: Option<u8>,
    dst_mask: Option<u8>,
    src_as: Option<u32>,
    dst_as: Option<u32>,
    vlan: Option<u16>,
}

impl SflowDecoder {
    /// A decoder with the given settings.
    pub fn new(cfg: DecoderSettings) -> Self {
        let cap = std::num::NonZeroUsize::new(cfg.max_streams.max(1)).expect("at least one");
        Self {
            cfg,
            streams: lru::LruCache::new(cap),
            seq: SeqStats::default(),
            counters: None,
            losses: None,
            last_agent: None,
            stats: SflowStats::default(),
        }
    }

    /// Produces counter rows (the source's `counters` output is read).
    pub fn enable_counters(&mut self) {
        self.counters.get_or_insert_with(counters::CounterRows::default);
    }

    /// Keeps losses for [`SflowDecoder::take_losses`].
    pub fn enable_losses(&mut self) {
        self.losses.get_or_insert_with(Vec::new);
    }

    /// Counter rows gathered since the last call, as a batch.
    pub fn take_counters(&mut self) -> Option<arrow::array::RecordBatch> {
        self.counters.as_mut().and_then(|c| c.take())
    }

    /// Counter rows waiting.
    pub fn counters_buffered(&self) -> usize {
        self.counters.as_ref().map_or(0, |c| c.len())
    }

    /// Losses found since the last call.
    pub fn take_losses(&mut self) -> Vec<SflowLoss> {
        self.losses.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Sample sequence counters (missing counts samples).
    pub fn sequence_stats(&self) -> SeqStats {
        self.seq
    }

    /// Sequence positions held.
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// Decodes one datagram received at `now` (ns). Each flow sample is one
    /// row in `out`; what could not be read counts in [`Outcome::dropped`].
    pub fn decode(&mut self, msg: &[u8], now: i64, out: &mut FlowBuilders) -> Outcome {
        let mut o = Outcome::default();
        let mut c = Cursor { b: msg, at: 0 };
        self.last_agent = None;
        if let Err((e, left)) = self.datagram(&mut c, now, out, &mut o) {
            // The samples announced but not read, bounded by what the
            // remaining bytes could hold; at least the part that failed.
            let could = (c.remaining() / MIN_SAMPLE) as u64 + 1;
            o.dropped += left.clamp(1, could);
            // The datagram's own failure comes first in the log line.
            o.error = Some(DecodeError::Sflow(e));
        }
        o
    }

    /// Reads a datagram; on failure, the error and the samples not read.
    fn datagram(
        &mut self,
        c: &mut Cursor,
        now: i64,
        out: &mut FlowBuilders,
        o: &mut Outcome,
    ) -> Result<(), (SflowError, u64)> {
        let fail = |e| (e, 1);
        let version = c.u32("the version").map_err(fail)?;
        if version != 5 {
            return Err((SflowError::Version { version }, 1));
        }
        let agent = c.address("the agent address").map_err(fail)?.unwrap_or(Addr::UNSPECIFIED);
        let sub_agent = c.u32("the sub-agent id").map_err(fail)?;
        let sequence = c.u32("the sequence number").map_err(fail)?;
        let uptime_ms = c.u32("the uptime").map_err(fail)?;
        let samples = c.u32("the sample count").map_err(fail)?;
        self.last_agent = Some(agent);
        self.stats.datagrams += 1;
        self.observe(StreamKey::Datagrams { agent, sub_agent }, sequence, now, None);
        let h = Header {
            time_received: now,
            exporter: agent,
            domain: sub_agent,
            sequence,
            version: FLOW_VERSION,
        };
        for i in 0..samples {
            let left = (samples - i) as u64;
            let format = c.u32("a sample's format").map_err(|e| (e, left))?;
            let length = c.u32("a sample's length").map_err(|e| (e, left))?;
            let mut s = c.sub(length, "a sample").map_err(|e| (e, left))?;
            let r = match format {
                FLOW_SAMPLE | FLOW_SAMPLE_EXPANDED => {
                    self.flow_sample(&mut s, format == FLOW_SAMPLE_EXPANDED, &h, out, o)
                }
                COUNTER_SAMPLE | COUNTER_SAMPLE_EXPANDED => {
                    self.counter_sample(&mut s, format == COUNTER_SAMPLE_EXPANDED, &h, uptime_ms)
                }
                _ => {
                    self.stats.samples_skipped += 1;
                    Ok(())
                }
            };
            if let Err(e) = r {
                // The sample's own length framed it: the others still read.
                o.dropped += 1;
                if o.error.is_none() {
                    o.error = Some(DecodeError::Sflow(e));
                }
            }
        }
        Ok(())
    }

    /// Observes a stream's sequence number; a gap becomes a loss.
    fn observe(&mut self, key: StreamKey, seq: u32, now: i64, drops: Option<u32>) {
        // sFlow counts one per datagram and one per sample, as v9 counts
        // packets: the v9 convention of the shared accounting.
        let one = Some(Units::same(1));
        let mut stats = SeqStats::default();
        let (event, grown) = match self.streams.get_mut(&key) {
            Some(p) => {
                let ev = p.stream.observe(seq, one, now, &mut stats);
                let grown = drops.map(|d| {
                    // A counter that went back is an agent restart.
                    let g = if ev.reset || d < p.drops { 0 } else { d - p.drops };
                    p.drops = d;
                    g
                });
                (Some(ev), grown.unwrap_or(0))
            }
            None => {
                let p =
                    Position { stream: Stream::new(Version::V9, seq, one, now), drops: drops.unwrap_or(0) };
                if self.streams.push(key, p).is_some_and(|(k, _)| k != key) {
                    self.stats.streams_evicted += 1;
                }
                (None, 0)
            }
        };
        let Some(ev) = event else { return };
        let (agent, sub_agent, source_id, kind) = match key {
            StreamKey::Datagrams { agent, sub_agent } => {
                self.stats.datagrams_missing += ev.missing;
                (agent, sub_agent, None, LossKind::Datagrams)
            }
            StreamKey::Samples { agent, source_id, counters } => {
                self.seq.missing += stats.missing;
                self.seq.reordered += stats.reordered;
                self.seq.resets += stats.resets;
                let kind = if counters { LossKind::CounterSamples } else { LossKind::FlowSamples };
                (agent, 0, Some(source_id), kind)
            }
        };
        self.stats.agent_drops += grown as u64;
        if let Some(l) = &mut self.losses {
            let base = SflowLoss {
                agent,
                sub_agent,
                source_id,
                kind,
                window_start: ev.previous_ns,
                window_end: now,
                expected: ev.expected,
                received: seq,
                missing: ev.missing,
            };
            if ev.missing > 0 {
                l.push(base);
            }
            if grown > 0 {
                l.push(SflowLoss {
                    kind: LossKind::AgentDrops,
                    missing: grown as u64,
                    expected: seq,
                    ..base
                });
            }
        }
    }

    fn flow_sample(
        &mut self,
        s: &mut Cursor,
        expanded: bool,
        h: &Header,
        out: &mut FlowBuilders,
        o: &mut Outcome,
    ) -> Result<(), SflowError> {
        let sequence = s.u32("a flow sample's sequence number")?;
        let source_id = s.source_id(expanded)?;
        let rate = s.u32("a flow sample's sampling rate")?;
        let _pool = s.u32("a flow sample's sample pool")?;
        let drops = s.u32("a flow sample's drops")?;
        let (in_if, out_if) = if expanded {
            let (inf, inv) = (s.u32("the input format")?, s.u32("the input interface")?);
            let (outf, outv) = (s.u32("the output format")?, s.u32("the output interface")?);
            let one = |f: u32, v: u32| (f == 0 && v != IF_UNKNOWN).then_some(v);
            (one(inf, inv), one(outf, outv))
        } else {
            (
                compact_interface(s.u32("the input interface")?),
                compact_interface(s.u32("the output interface")?),
            )
        };
        let records = s.u32("a flow sample's record count")?;
        let mut sampled = Sampled::default();
        for _ in 0..records {
            let format = s.u32("a flow record's format")?;
            let length = s.u32("a flow record's length")?;
            let mut r = s.sub(length, "a flow record")?;
            self.flow_record(format, &mut r, &mut sampled)?;
        }
        self.stats.flow_samples += 1;
        self.observe(
            StreamKey::Samples { agent: h.exporter, source_id, counters: false },
            sequence,
            h.time_received,
            Some(drops),
        );
        let hd = &sampled.headers;
        let (sampling_rate, sampling_source) =
            match SamplingConfig::lookup(&self.cfg.sampling.overrides, h.exporter) {
                Some(r) => (Some(r), SamplingSource::Override),
                None if rate > 0 => (Some(rate), SamplingSource::Record),
                None => (
                    Some(SamplingConfig::lookup(&self.cfg.sampling.defaults, h.exporter).unwrap_or(1)),
                    SamplingSource::Default,
                ),
            };
        let row = Row {
            flow_start: Some(h.time_received),
            flow_end: Some(h.time_received),
            src_addr: hd.src_addr,
            dst_addr: hd.dst_addr,
            next_hop: sampled.next_hop,
            src_port: hd.src_port,
            dst_port: hd.dst_port.or(hd.icmp),
            protocol: hd.protocol,
            tcp_flags: hd.tcp_flags,
            tos: hd.tos,
            in_if,
            out_if,
            bytes: sampled.frame_length.or(sampled.ip_length).map(u64::from),
            packets: Some(1),
            src_as: sampled.src_as,
            dst_as: sampled.dst_as,
            src_mask: sampled.src_mask,
            dst_mask: sampled.dst_mask,
            vlan: sampled.vlan.or(hd.vlan),
            direction: None,
            sampling_rate,
            sampling_source,
        };
        out.push(h, &row, &ExtraValues::NONE);
        o.records += 1;
        Ok(())
    }

    fn flow_record(&mut self, format: u32, r: &mut Cursor, s: &mut Sampled) -> Result<(), SflowError> {
        match format {
            RAW_HEADER => {
                let protocol = r.u32("a header's protocol")?;
                let frame_length = r.u32("a header's frame length")?;
                let _stripped = r.u32("a header's stripped bytes")?;
                let length = r.u32("a header's length")?;
                let bytes = r.sub(length, "a sampled header")?.b;
                s.frame_length = Some(frame_length);
                let h = &mut s.headers;
                match protocol {
                    HEADER_ETHERNET => packet::ethernet(bytes, h),
                    HEADER_IPV4 | HEADER_IPV6 => packet::ip(bytes, h),
                    HEADER_MPLS => packet::mpls(bytes, h),
                    _ => self.stats.records_skipped += 1,
                }
            }
            SAMPLED_IPV4 | SAMPLED_IPV6 => {
                let length = r.u32("a sampled IP record's length")?;
                let protocol = r.u32("a sampled IP record's protocol")?;
                let n = if format == SAMPLED_IPV4 { 4 } else { 16 };
                let src = Addr::from_slice(r.bytes(n, "a sampled IP record's source")?);
                let dst = Addr::from_slice(r.bytes(n, "a sampled IP record's destination")?);
                let src_port = r.u32("a sampled IP record's source port")?;
                let dst_port = r.u32("a sampled IP record's destination port")?;
                let flags = r.u32("a sampled IP record's TCP flags")?;
                let tos = r.u32("a sampled IP record's type of service")?;
                // A raw header, when there is one, says the same and more.
                let h = &mut s.headers;
                h.src_addr = h.src_addr.or(src);
                h.dst_addr = h.dst_addr.or(dst);
                h.protocol = h.protocol.or(Some(protocol as u8));
                h.src_port = h.src_port.or(Some(src_port as u16));
                h.dst_port = h.dst_port.or(Some(dst_port as u16));
                h.tcp_flags = h.tcp_flags.or((protocol == 6).then_some(flags as u16));
                h.tos = h.tos.or(Some(tos as u8));
                s.ip_length = Some(length);
            }
            EXTENDED_SWITCH => {
                let src_vlan = r.u32("the source VLAN")?;
                let _src_priority = r.u32("the source priority")?;
                let dst_vlan = r.u32("the destination VLAN")?;
                let vlan = if src_vlan != 0 { src_vlan } else { dst_vlan };
                s.vlan = (vlan != 0 && vlan < 4096).then_some(vlan as u16);
            }
            EXTENDED_ROUTER => {
                s.next_hop = r.address("the next hop")?;
                s.src_mask = Some(r.u32("the source mask")?.min(128) as u8);
                s.dst_mask = Some(r.u32("the destination mask")?.min(128) as u8);
            }
            EXTENDED_GATEWAY => {
                let next_hop = r.address("the BGP next hop")?;
                let own = r.u32("the router's AS")?;
                s.src_as = Some(r.u32("the source AS")?);
                let _src_peer_as = r.u32("the source peer AS")?;
                let segments = r.u32("the AS path's segment count")?;
                let mut last = None;
                for _ in 0..segments {
                    let _ty = r.u32("an AS path segment's type")?;
                    let n = r.u32("an AS path segment's length")?;
                    if n as usize > r.remaining() / 4 {
                        return Err(SflowError::Length {
                            what: "an AS path segment",
                            length: n.saturating_mul(4),
                            remaining: r.remaining(),
                        });
                    }
                    let path = r.bytes(n as usize * 4, "an AS path segment")?;
                    if n > 0 {
                        let l = &path[path.len() - 4..];
                        last = Some(u32::from_be_bytes([l[0], l[1], l[2], l[3]]));
                    }
                }
                // The destination AS is the path's last; no path means the
                // destination is in the router's own AS.
                s.dst_as = Some(last.unwrap_or(own));
                s.next_hop = s.next_hop.or(next_hop);
            }
            SAMPLED_ETHERNET => {}
            _ => self.stats.records_skipped += 1,
        }
        Ok(())
    }

    fn counter_sample(
        &mut self,
        s: &mut Cursor,
        expanded: bool,
        h: &Header,
        uptime_ms: u32,
    ) -> Result<(), SflowError> {
        let sequence = s.u32("a counter sample's sequence number")?;
        let source_id = s.source_id(expanded)?;
        let records = s.u32("a counter sample's record count")?;
        let mut row = counters::CounterRow {
            time: h.time_received,
            agent: h.exporter,
            sub_agent: h.domain,
            source_id,
            sequence,
            uptime_ms,
            if_index: source_id & 0x00ff_ffff,
            ..Default::default()
        };
        for _ in 0..records {
            let format = s.u32("a counter record's format")?;
            let length = s.u32("a counter record's length")?;
            let mut r = s.sub(length, "a counter record")?;
            match format {
                GENERIC_INTERFACE => row.generic(&mut r)?,
                ETHERNET_INTERFACE => row.ethernet(&mut r)?,
                _ => self.stats.records_skipped += 1,
            }
        }
        self.stats.counter_samples += 1;
        self.observe(
            StreamKey::Samples { agent: h.exporter, source_id, counters: true },
            sequence,
            h.time_received,
            None,
        );
        if let Some(c) = &mut self.counters {
            c.push(row);
        }
        Ok(())
    }
}
