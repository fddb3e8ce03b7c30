//! Data records of a data set into rows: one walk over the template's plan
//! per record, then the rules that need the whole record (counters, times,
//! sampling, ICMP, station addresses, biflows, PSAMP packet sections).

use std::sync::Arc;

use spillway_core::schema::Addr;

use super::message::MessageTimes;
use super::sampling::{Announced, SetSampling};
use super::{DecodeError, Decoder, NoticeKind, be16};
use crate::packet::{self, Headers};
use crate::row::{ExtraValues, FlowBuilders, Header, Row};
use crate::state::{DomainKey, TemplateKey};
use crate::template::{Target, Template, VARLEN};

/// What decoding one data set produced.
pub(super) struct SetResult {
    /// Rows appended (a biflow record makes two).
    pub rows: u64,
    /// Data records read, options records included (what RFC 7011
    /// sequence numbers count).
    pub records: u32,
    /// Flow (not options) records read; a biflow is one.
    pub flows: u32,
    /// Why the rest of the set could not be read.
    pub error: Option<DecodeError>,
}

/// Where a field's bytes are in its record: (offset, length).
type Span = (u32, u16);

/// Values of one record that are not flow columns themselves.
#[derive(Default, Clone, Copy)]
struct Scratch {
    start_uptime: Option<u32>,
    end_uptime: Option<u32>,
    start_ns: Option<i64>,
    end_ns: Option<i64>,
    start_delta_us: Option<u64>,
    end_delta_us: Option<u64>,
    bytes_total: Option<u64>,
    packets_total: Option<u64>,
    sampler_id: Option<u64>,
    icmp: Option<u16>,
    station: Option<Addr>,
    reverse_bytes: Option<u64>,
    reverse_packets: Option<u64>,
    /// Where each extra column's value is in the record.
    extra: [Span; crate::iana::MAX_EXTRA],
    extra_mask: u16,
    sampling: Announced,
    system_init_ms: Option<i64>,
    frame_size: Option<u64>,
    ip_total_length: Option<u64>,
    frame_type: Option<u64>,
    sections: Sections,
}

/// PSAMP packet sections of a record.
#[derive(Default, Clone, Copy)]
struct Sections {
    frame: Option<Span>,
    ip_header: Option<Span>,
    ip_payload: Option<Span>,
    mpls_stack: Option<Span>,
    mpls_payload: Option<Span>,
}

impl Sections {
    fn any(&self) -> bool {
        self.frame.is_some()
            || self.ip_header.is_some()
            || self.ip_payload.is_some()
            || self.mpls_stack.is_some()
            || self.mpls_payload.is_some()
    }
}

#[inline]
fn span(rec: &[u8], s: Span) -> &[u8] {
    rec.get(s.0 as usize..s.0 as usize + s.1 as usize).unwrap_or_default()
}

/// Unsigned big-endian integer of 1 to 8 bytes (reduced-size encoding).
#[inline]
fn uint(b: &[u8]) -> u64 {
    let mut v = 0u64;
    for &x in b.iter().take(8) {
        v = (v << 8) | x as u64;
    }
    v
}

/// A float64 (or float32) element.
#[inline]
fn float(b: &[u8]) -> Option<f64> {
    match b.len() {
        8 => Some(f64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])),
        4 => Some(f32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f64),
        _ => None,
    }
}

/// `v` units of `unit` ns, saturating instead of overflowing on garbage.
#[inline]
fn ns(v: u64, unit: i64) -> i64 {
    (v.min(i64::MAX as u64) as i64).saturating_mul(unit)
}

/// NTP timestamp (seconds since 1900, 32-bit fraction) to ns since 1970.
#[inline]
fn ntp_to_ns(v: u64) -> i64 {
    const NTP_UNIX_OFFSET: i64 = 2_208_988_800;
    let secs = (v >> 32) as i64 - NTP_UNIX_OFFSET;
    let frac = ((v & 0xffff_ffff) * 1_000_000_000) >> 32;
    secs.saturating_mul(1_000_000_000).saturating_add(frac as i64)
}

impl Decoder {
    pub(super) fn data_set(
        &mut self,
        mut b: &[u8],
        t: &Arc<Template>,
        key: TemplateKey,
        h: &Header,
        times: MessageTimes,
        out: &mut FlowBuilders,
    ) -> SetResult {
        let dkey = key.domain;
        let mut result = SetResult { rows: 0, records: 0, flows: 0, error: None };
        let mut sampling = self.set_sampling(&dkey);
        let mut boot_ms = self.state.peek(&dkey).and_then(|d| d.boot_ms);
        while b.len() >= t.min_len {
            let mut row = Row::default();
            let mut s = Scratch::default();
            let mut at = 0usize;
            for (f, target) in t.fields.iter().zip(t.plan.iter()) {
                let len = if f.len == VARLEN {
                    let Some(&first) = b.get(at) else {
                        result.error = Some(DecodeError::RecordOverrun { template: key.id });
                        return result;
                    };
                    at += 1;
                    if first < 255 {
                        first as usize
                    } else {
                        if at + 2 > b.len() {
                            result.error = Some(DecodeError::RecordOverrun { template: key.id });
                            return result;
                        }
                        let l = be16(b, at) as usize;
                        at += 2;
                        l
                    }
                } else {
                    f.len as usize
                };
                if at + len > b.len() {
                    result.error = Some(DecodeError::RecordOverrun { template: key.id });
                    return result;
                }
                let v = &b[at..at + len];
                let here = (at as u32, len as u16);
                match *target {
                    Target::Skip => {}
                    Target::Extra(i) => {
                        s.extra[i as usize] = here;
                        s.extra_mask |= 1 << i;
                    }
                    Target::FrameSection => s.sections.frame = Some(here),
                    Target::IpHeaderSection => s.sections.ip_header = Some(here),
                    Target::IpPayloadSection => s.sections.ip_payload = Some(here),
                    Target::MplsStackSection => s.sections.mpls_stack = Some(here),
                    Target::MplsPayloadSection => s.sections.mpls_payload = Some(here),
                    t => apply(t, v, &mut row, &mut s),
                }
                at += len;
            }
            let (rec, rest) = b.split_at(at);
            b = rest;
            result.records = result.records.saturating_add(1);
            if t.is_options() {
                self.stats.options_records += 1;
                self.learn_options(dkey, &s.sampling, s.sampler_id, s.system_init_ms);
                sampling = self.set_sampling(&dkey);
                boot_ms = self.state.peek(&dkey).and_then(|d| d.boot_ms);
                continue;
            }
            result.flows = result.flows.saturating_add(1);
            self.finish_row(&mut row, &s, rec, &sampling, dkey, boot_ms, times);
            let extras = ExtraValues { spans: &s.extra, mask: s.extra_mask, record: rec };
            out.push(h, &row, &extras);
            result.rows += 1;
            // An RFC 5103 biflow carries the reverse direction's counters in
            // the same record: it becomes a second, mirrored record.
            let (rb, rp) = (s.reverse_bytes.unwrap_or(0), s.reverse_packets.unwrap_or(0));
            if rb > 0 || rp > 0 {
                let rev = Row {
                    src_addr: row.dst_addr,
                    dst_addr: row.src_addr,
                    src_port: row.dst_port,
                    dst_port: row.src_port,
                    in_if: row.out_if,
                    out_if: row.in_if,
                    src_as: row.dst_as,
                    dst_as: row.src_as,
                    src_mask: row.dst_mask,
                    dst_mask: row.src_mask,
                    bytes: Some(rb),
                    packets: Some(rp),
                    ..row
                };
                out.push(h, &rev, &extras);
                result.rows += 1;
                self.stats.biflows += 1;
            }
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn finish_row(
        &mut self,
        row: &mut Row,
        s: &Scratch,
        rec: &[u8],
        sampling: &SetSampling,
        key: DomainKey,
        boot_ms: Option<i64>,
        times: MessageTimes,
    ) {
        if row.bytes.is_none() {
            row.bytes = s.bytes_total;
        }
        if row.packets.is_none() {
            row.packets = s.packets_total;
        }
        if s.sections.any() {
            packet_sections(row, s, rec);
        }
        if let Some(station) = s.station
            && row.src_addr.is_none()
            && row.dst_addr.is_none()
        {
            if row.direction == Some(1) {
                row.dst_addr = Some(station);
            } else {
                row.src_addr = Some(station);
            }
        }
        // ICMP type and code go in the destination port, as NetFlow v5 (and
        // nfdump) carry them, so every version reads the same.
        if let Some(icmp) = s.icmp
            && row.dst_port.unwrap_or(0) == 0
        {
            row.dst_port = Some(icmp);
        }
        let export_ns = times.export_ms.saturating_mul(1_000_000);
        // Uptime-relative times need the boot time: from the record, from
        // options data, or (v9) from the header's uptime.
        let boot_ms = s.system_init_ms.or(boot_ms);
        let mut unknown_time = false;
        let mut from_uptime = |up: u32| -> Option<i64> {
            if times.uptime_ms > 0 {
                // Wrapping difference handles the 49.7-day uptime rollover.
                Some(export_ns - times.uptime_ms.wrapping_sub(up) as i64 * 1_000_000)
            } else {
                let t = boot_ms.map(|b| b.saturating_add(up as i64).saturating_mul(1_000_000));
                unknown_time |= t.is_none();
                t
            }
        };
        row.flow_start = s
            .start_ns
            .or(s.start_delta_us.map(|d| export_ns.saturating_sub(ns(d, 1000))))
            .or_else(|| s.start_uptime.and_then(&mut from_uptime));
        row.flow_end = s
            .end_ns
            .or(s.end_delta_us.map(|d| export_ns.saturating_sub(ns(d, 1000))))
            .or_else(|| s.end_uptime.and_then(&mut from_uptime));
        if unknown_time {
            self.stats.time_unknown += 1;
            self.note(key, NoticeKind::TimeUnknown);
        }
        let state = if s.sampler_id.is_some() { self.state.peek(&key) } else { None };
        let (rate, source) = sampling.resolve(s.sampling.rate(), s.sampler_id, state);
        row.sampling_rate = rate;
        row.sampling_source = source;
        if rate.is_none() {
            self.stats.sampling_unknown += 1;
            if let Some(sampler) = s.sampler_id {
                self.note(key, NoticeKind::SamplerUnknown { sampler });
            }
        }
    }
}

/// Fills what a PSAMP record's packet sections say and its own fields do
/// not: addresses, ports, protocol, flags, tos, VLAN; one packet, its bytes
/// from the IP length (the octets `octetDeltaCount` counts) or else the
/// frame's.
fn packet_sections(row: &mut Row, s: &Scratch, rec: &[u8]) {
    let mut hd = Headers::default();
    let sec = &s.sections;
    if let Some(f) = sec.frame {
        // dataLinkFrameType: 1 (or absent) is Ethernet; 802.11 is not parsed.
        if s.frame_type.is_none_or(|t| t == 1) {
            packet::ethernet(span(rec, f), &mut hd);
        }
    } else if let Some(m) = sec.mpls_stack {
        packet::mpls(span(rec, m), &mut hd);
    } else if let Some(m) = sec.mpls_payload {
        packet::mpls_payload(span(rec, m), &mut hd);
    } else if let Some(i) = sec.ip_header {
        packet::ip(span(rec, i), &mut hd);
    } else if let (Some(p), Some(proto)) = (sec.ip_payload, row.protocol) {
        packet::transport(proto, span(rec, p), &mut hd);
    }
    row.src_addr = row.src_addr.or(hd.src_addr);
    row.dst_addr = row.dst_addr.or(hd.dst_addr);
    row.protocol = row.protocol.or(hd.protocol);
    row.tos = row.tos.or(hd.tos);
    row.src_port = row.src_port.or(hd.src_port);
    row.dst_port = row.dst_port.or(hd.dst_port).or(hd.icmp);
    row.tcp_flags = row.tcp_flags.or(hd.tcp_flags);
    row.vlan = row.vlan.or(hd.vlan);
    if row.bytes.is_none() && row.packets.is_none() {
        row.packets = Some(1);
        row.bytes = s.ip_total_length.or(hd.ip_length.map(u64::from)).or(s.frame_size);
    }
}

#[inline]
fn addr(v: &[u8]) -> Option<Addr> {
    Addr::from_slice(v)
}

#[inline]
fn pick(new: Option<Addr>, old: Option<Addr>) -> Option<Addr> {
    const V4_ZERO: Addr = Addr::V4_UNSPECIFIED;
    match (new, old) {
        (Some(n), Some(o)) if n == Addr::UNSPECIFIED || n == V4_ZERO => Some(o),
        (Some(n), _) => Some(n),
        (None, o) => o,
    }
}

#[inline]
fn apply(target: Target, v: &[u8], row: &mut Row, s: &mut Scratch) {
    use Target::*;
    let u = || uint(v);
    match target {
        Skip | Extra(_) | FrameSection | IpHeaderSection | IpPayloadSection | MplsStackSection
        | MplsPayloadSection => {}
        Bytes => row.bytes = Some(u()),
        Packets => row.packets = Some(u()),
        BytesTotal => s.bytes_total = Some(u()),
        PacketsTotal => s.packets_total = Some(u()),
        Protocol => row.protocol = Some(u() as u8),
        Tos => row.tos = Some(u() as u8),
        TcpFlags => row.tcp_flags = Some(u() as u16),
        SrcPort => row.src_port = Some(u() as u16),
        DstPort => row.dst_port = Some(u() as u16),
        // Templates often carry both an IPv4 and an IPv6 field of which one
        // is zero: an unspecified address never replaces a set one.
        SrcAddr => row.src_addr = pick(addr(v), row.src_addr),
        DstAddr => row.dst_addr = pick(addr(v), row.dst_addr),
        NextHop => row.next_hop = pick(addr(v), row.next_hop),
        SrcMask => row.src_mask = Some(u() as u8),
        DstMask => row.dst_mask = Some(u() as u8),
        InIf => row.in_if = Some(u() as u32),
        OutIf => row.out_if = Some(u() as u32),
        SrcAs => row.src_as = Some(u() as u32),
        DstAs => row.dst_as = Some(u() as u32),
        Vlan => row.vlan = Some(u() as u16),
        Direction => row.direction = Some(u() as u8),
        IcmpTypeCode => s.icmp = Some(u() as u16),
        StationAddr => s.station = addr(v),
        ReverseBytes => s.reverse_bytes = Some(u()),
        ReversePackets => s.reverse_packets = Some(u()),
        StartUptime => s.start_uptime = Some(u() as u32),
        EndUptime => s.end_uptime = Some(u() as u32),
        StartSeconds => s.start_ns = Some(ns(u(), 1_000_000_000)),
        EndSeconds => s.end_ns = Some(ns(u(), 1_000_000_000)),
        StartMillis => s.start_ns = Some(ns(u(), 1_000_000)),
        EndMillis => s.end_ns = Some(ns(u(), 1_000_000)),
        StartMicros | StartNanos => s.start_ns = Some(ntp_to_ns(u())),
        EndMicros | EndNanos => s.end_ns = Some(ntp_to_ns(u())),
        StartDeltaMicros => s.start_delta_us = Some(u()),
        EndDeltaMicros => s.end_delta_us = Some(u()),
        SystemInit => s.system_init_ms = Some(u().min(i64::MAX as u64 / 2_000_000) as i64),
        SamplerId => s.sampler_id = Some(u()),
        SamplingInterval => s.sampling.interval = Some(u()),
        PacketInterval => s.sampling.packet_interval = Some(u()),
        PacketSpace => s.sampling.packet_space = Some(u()),
        SamplingSize => s.sampling.size = Some(u()),
        SamplingPopulation => s.sampling.population = Some(u()),
        SamplingProbability => s.sampling.probability = float(v),
        SelectorAlgorithm => s.sampling.algorithm = Some(u()),
        FrameSize => s.frame_size = Some(u()),
        IpTotalLength => s.ip_total_length = Some(u()),
        FrameType => s.frame_type = Some(u()),
    }
}
