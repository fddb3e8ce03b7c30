//! Data records of a data set into rows: one walk over the template's plan
//! per record, then the rules that need the whole record (counters, times,
//! sampling, ICMP, station addresses, biflows, PSAMP packet sections).

use std::sync::Arc;

use spillway_core::schema::Addr;

use super::message::MessageTimes;
use super::sampling::{Announced, SetSampling};
use super::{DecodeError, Decoder, NoticeKind, be16};
use crate::packet::{self, Headers};
use crate::row::{ExtraValues, FlowBuilders, Header, Row, Tail, addr_word, present};
use crate::state::{DomainKey, TemplateKey};
use crate::template::{Clock, Column, Op, Target, Template, VARLEN};

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

/// Values of one record that are not flow columns themselves, and that
/// most flow templates carry: reset for every record.
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
    /// Bit `i` set when extra column `i` has a value in this record (its
    /// span is then in the set's span array, which is never reset).
    extra_mask: u16,
}

/// Values of one record that only some templates carry (options data,
/// PSAMP sections, biflows, wireless stations). Reset for every record
/// only when the template has such a field ([`Template::rare`]); the others
/// never write it, so it stays at its default without being reset.
#[derive(Default, Clone, Copy)]
struct Rare {
    station: Option<Addr>,
    reverse_bytes: Option<u64>,
    reverse_packets: Option<u64>,
    sampling: Announced,
    system_init_ms: Option<i64>,
    frame_size: Option<u64>,
    ip_total_length: Option<u64>,
    frame_type: Option<u64>,
    sections: Sections,
}

/// Where one record's fields go, filled field by field.
struct Fill<'a> {
    row: &'a mut Row,
    s: &'a mut Scratch,
    rare: &'a mut Rare,
    extra: &'a mut [Span; crate::iana::MAX_EXTRA],
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

/// Unsigned big-endian integer of 1 to 8 bytes (reduced-size encoding);
/// the usual widths are one load each.
#[inline]
fn uint(b: &[u8]) -> u64 {
    match *b {
        [a] => a as u64,
        [a, b] => u16::from_be_bytes([a, b]) as u64,
        [a, b, c, d] => u32::from_be_bytes([a, b, c, d]) as u64,
        [a, b, c, d, e, f, g, h] => u64::from_be_bytes([a, b, c, d, e, f, g, h]),
        _ => {
            let mut v = 0u64;
            for &x in b.iter().take(8) {
                v = (v << 8) | x as u64;
            }
            v
        }
    }
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
        if let Some(ops) = t.columnar.as_deref()
            && self.columnar
            && !out.has_extras()
        {
            return self.data_set_columnar(b, t.min_len, ops, key.domain, h, times, out);
        }
        let dkey = key.domain;
        let mut result = SetResult { rows: 0, records: 0, flows: 0, error: None };
        let mut sampling = self.set_sampling(&dkey);
        let mut boot_ms = self.state.peek(&dkey).and_then(|d| d.boot_ms);
        let mut rare = Rare::default();
        let mut extra = [(0, 0); crate::iana::MAX_EXTRA];
        while b.len() >= t.min_len {
            let mut row = Row::default();
            let mut s = Scratch::default();
            if t.rare {
                rare = Rare::default();
            }
            let mut fill = Fill { row: &mut row, s: &mut s, rare: &mut rare, extra: &mut extra };
            let at = if t.varlen {
                match walk_varlen(b, t, &mut fill) {
                    Some(at) => at,
                    None => {
                        result.error = Some(DecodeError::RecordOverrun { template: key.id });
                        return result;
                    }
                }
            } else {
                // Every field at a fixed place: `b` holds at least `min_len`
                // bytes, so no field reaches past it.
                for (&(at, len), &target) in t.spans.iter().zip(t.plan.iter()) {
                    let at = at as usize;
                    fill.put(target, &b[at..at + len as usize], (at as u32, len));
                }
                t.min_len
            };
            let (rec, rest) = b.split_at(at);
            b = rest;
            result.records = result.records.saturating_add(1);
            if t.is_options() {
                self.stats.options_records += 1;
                self.learn_options(dkey, &rare.sampling, s.sampler_id, rare.system_init_ms);
                sampling = self.set_sampling(&dkey);
                boot_ms = self.state.peek(&dkey).and_then(|d| d.boot_ms);
                continue;
            }
            result.flows = result.flows.saturating_add(1);
            self.finish_row(&mut row, &s, &rare, rec, &sampling, dkey, boot_ms, times);
            let extras = ExtraValues { spans: &extra, mask: s.extra_mask, record: rec };
            out.push(h, &row, &extras);
            result.rows += 1;
            // An RFC 5103 biflow carries the reverse direction's counters in
            // the same record: it becomes a second, mirrored record.
            let (rb, rp) = (rare.reverse_bytes.unwrap_or(0), rare.reverse_packets.unwrap_or(0));
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

    /// A data set of a columnar template ([`Template::columnar`]), filled
    /// column by column: every record of the set is the same length, has
    /// the same fields and shares the set's sampling, so a field is one
    /// loop over the records. What it appends is what the record-at-a-time
    /// walk appends (the `columnar_and_walk_agree` tests).
    #[allow(clippy::too_many_arguments)]
    fn data_set_columnar(
        &mut self,
        b: &[u8],
        stride: usize,
        ops: &[Op],
        key: DomainKey,
        h: &Header,
        times: MessageTimes,
        out: &mut FlowBuilders,
    ) -> SetResult {
        let n = b.len() / stride;
        let recs = &b[..n * stride];
        let result = SetResult { rows: n as u64, records: n as u32, flows: n as u32, error: None };
        if n == 0 {
            return result;
        }
        let (rate, source) = self.set_sampling(&key).resolve(None, None, None);
        if rate.is_none() {
            self.stats.sampling_unknown += n as u64;
        }
        let boot_ms = self.state.peek(&key).and_then(|d| d.boot_ms);
        let export_ns = times.export_ms.saturating_mul(1_000_000);
        let uptime_known = times.uptime_ns(0, boot_ms).is_some();
        let time = move |clock: Clock, v: u64| -> i64 {
            match clock {
                Clock::Seconds => ns(v, 1_000_000_000),
                Clock::Millis => ns(v, 1_000_000),
                Clock::Ntp => ntp_to_ns(v),
                Clock::DeltaMicros => export_ns.saturating_sub(ns(v, 1000)),
                Clock::Uptime => times.uptime_ns(v as u32, boot_ms).unwrap_or(0),
            }
        };
        let mut unknown_time = false;
        let mut filled = 0u32;
        let t: Tail = out.grow(h, n, (rate, source));
        let from = t.at;
        for o in ops {
            let f = Field { recs, stride, at: o.at as usize, len: o.len as usize };
            let m = &mut filled;
            use present::*;
            match o.column {
                Column::Bytes => f.fill(t.bytes, from, m, BYTES, |v| v),
                Column::Packets => f.fill(t.packets, from, m, PACKETS, |v| v),
                Column::Protocol => f.fill(t.protocol, from, m, PROTOCOL, |v| v as u8),
                Column::Tos => f.fill(t.tos, from, m, TOS, |v| v as u8),
                Column::TcpFlags => f.fill(t.tcp_flags, from, m, TCP_FLAGS, |v| v as u16),
                Column::SrcPort => f.fill(t.src_port, from, m, SRC_PORT, |v| v as u16),
                Column::DstPort => f.fill(t.dst_port, from, m, DST_PORT, |v| v as u16),
                Column::SrcMask => f.fill(t.src_mask, from, m, SRC_MASK, |v| v as u8),
                Column::DstMask => f.fill(t.dst_mask, from, m, DST_MASK, |v| v as u8),
                Column::InIf => f.fill(t.in_if, from, m, IN_IF, |v| v as u32),
                Column::OutIf => f.fill(t.out_if, from, m, OUT_IF, |v| v as u32),
                Column::SrcAs => f.fill(t.src_as, from, m, SRC_AS, |v| v as u32),
                Column::DstAs => f.fill(t.dst_as, from, m, DST_AS, |v| v as u32),
                Column::Vlan => f.fill(t.vlan, from, m, VLAN, |v| v as u16),
                Column::Direction => f.fill(t.direction, from, m, DIRECTION, |v| v as u8),
                Column::SrcAddr => f.addresses(t.src_addr, from, m, SRC_ADDR),
                Column::DstAddr => f.addresses(t.dst_addr, from, m, DST_ADDR),
                Column::NextHop => f.addresses(t.next_hop, from, m, NEXT_HOP),
                Column::Start(Clock::Uptime) | Column::End(Clock::Uptime) if !uptime_known => {
                    unknown_time = true
                }
                Column::Start(c) => f.fill(t.flow_start, from, m, FLOW_START, |v| time(c, v)),
                Column::End(c) => f.fill(t.flow_end, from, m, FLOW_END, |v| time(c, v)),
                // After every other field (the plan puts it last): the type
                // and code go where the record has no destination port.
                Column::Icmp => {
                    let icmp = recs.chunks_exact(stride).map(|r| uint(&r[f.at..f.at + f.len]) as u16);
                    if *m & DST_PORT != 0 {
                        for (port, v) in t.dst_port[from..].iter_mut().zip(icmp) {
                            if *port == 0 {
                                *port = v;
                            }
                        }
                    } else {
                        t.dst_port.extend(icmp);
                    }
                    *m |= DST_PORT;
                }
            }
        }
        t.close(filled);
        if unknown_time {
            self.stats.time_unknown += n as u64;
            self.note(key, NoticeKind::TimeUnknown);
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn finish_row(
        &mut self,
        row: &mut Row,
        s: &Scratch,
        rare: &Rare,
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
        if rare.sections.any() {
            packet_sections(row, rare, rec);
        }
        if let Some(station) = rare.station
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
        let boot_ms = rare.system_init_ms.or(boot_ms);
        let mut unknown_time = false;
        let mut from_uptime = |up: u32| -> Option<i64> {
            let t = times.uptime_ns(up, boot_ms);
            unknown_time |= t.is_none();
            t
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
        let (rate, source) = sampling.resolve(rare.sampling.rate(), s.sampler_id, state);
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
fn packet_sections(row: &mut Row, s: &Rare, rec: &[u8]) {
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

/// One field of every record of a set: at `at`, `len` bytes, in records of
/// `stride` bytes.
pub(super) struct Field<'a> {
    pub recs: &'a [u8],
    pub stride: usize,
    pub at: usize,
    pub len: usize,
}

impl Field<'_> {
    /// Fills the column `out` (presence bit `bit`) with the field of each
    /// record, as an unsigned integer through `f`: extends it by the set's
    /// rows (from row `from` on), or overwrites them when an earlier field
    /// filled it (`filled` has `bit`; it has it afterwards). The usual
    /// widths are one load each.
    #[inline(always)]
    pub fn fill<T>(&self, out: &mut Vec<T>, from: usize, filled: &mut u32, bit: u32, f: impl Fn(u64) -> T) {
        let (at, recs) = (self.at, self.recs.chunks_exact(self.stride));
        let again = *filled & bit != 0;
        *filled |= bit;
        match self.len {
            1 => put(out, from, again, recs.map(|r| f(r[at] as u64))),
            2 => put(
                out,
                from,
                again,
                recs.map(|r| f(u16::from_be_bytes(r[at..at + 2].try_into().unwrap()) as u64)),
            ),
            4 => put(
                out,
                from,
                again,
                recs.map(|r| f(u32::from_be_bytes(r[at..at + 4].try_into().unwrap()) as u64)),
            ),
            8 => {
                put(out, from, again, recs.map(|r| f(u64::from_be_bytes(r[at..at + 8].try_into().unwrap()))))
            }
            len => put(out, from, again, recs.map(|r| f(uint(&r[at..at + len])))),
        }
    }

    /// Fills the address column `out` with the field of each record (4 or
    /// 16 bytes), as [`Field::fill`] does, except that over an earlier
    /// field's addresses an unspecified one leaves what is there.
    #[inline(always)]
    pub fn addresses(&self, out: &mut Vec<i128>, from: usize, filled: &mut u32, bit: u32) {
        let (at, recs) = (self.at, self.recs.chunks_exact(self.stride));
        let again = *filled & bit != 0;
        *filled |= bit;
        let (v4_zero, zero) = (addr_word(Some(Addr::V4_UNSPECIFIED)), addr_word(Some(Addr::UNSPECIFIED)));
        let keep = move |w: &i128| !again || (*w != v4_zero && *w != zero);
        match self.len {
            4 => put_where(
                out,
                from,
                again,
                recs.map(|r| addr_word(Some(Addr::from_v4_octets(r[at..at + 4].try_into().unwrap())))),
                keep,
            ),
            len => {
                put_where(out, from, again, recs.map(|r| addr_word(Addr::from_slice(&r[at..at + len]))), keep)
            }
        }
    }
}

/// Appends `values` to `out`, or with `again` writes them over its rows
/// from `from` on.
#[inline(always)]
fn put<T>(out: &mut Vec<T>, from: usize, again: bool, values: impl Iterator<Item = T>) {
    if again {
        out[from..].iter_mut().zip(values).for_each(|(o, v)| *o = v);
    } else {
        out.extend(values);
    }
}

/// [`put`], writing over a row only the values `keep` accepts.
#[inline(always)]
fn put_where<T>(
    out: &mut Vec<T>,
    from: usize,
    again: bool,
    values: impl Iterator<Item = T>,
    keep: impl Fn(&T) -> bool,
) {
    if again {
        out[from..].iter_mut().zip(values).for_each(|(o, v)| {
            if keep(&v) {
                *o = v;
            }
        });
    } else {
        out.extend(values);
    }
}

/// Walks a record of a template with variable-length fields: its length,
/// or `None` when a field runs past the set.
fn walk_varlen(b: &[u8], t: &Template, fill: &mut Fill) -> Option<usize> {
    let mut at = 0usize;
    for (f, &target) in t.fields.iter().zip(t.plan.iter()) {
        let len = if f.len == VARLEN {
            let first = *b.get(at)?;
            at += 1;
            if first < 255 {
                first as usize
            } else {
                if at + 2 > b.len() {
                    return None;
                }
                let l = be16(b, at) as usize;
                at += 2;
                l
            }
        } else {
            f.len as usize
        };
        let v = b.get(at..at + len)?;
        fill.put(target, v, (at as u32, len as u16));
        at += len;
    }
    Some(at)
}

impl Fill<'_> {
    /// Puts one field's value `v`, found at `here` in its record.
    #[inline]
    fn put(&mut self, target: Target, v: &[u8], here: Span) {
        use Target::*;
        let (row, s, rare) = (&mut *self.row, &mut *self.s, &mut *self.rare);
        let u = || uint(v);
        match target {
            Skip => {}
            Extra(i) => {
                self.extra[i as usize] = here;
                s.extra_mask |= 1 << i;
            }
            FrameSection => rare.sections.frame = Some(here),
            IpHeaderSection => rare.sections.ip_header = Some(here),
            IpPayloadSection => rare.sections.ip_payload = Some(here),
            MplsStackSection => rare.sections.mpls_stack = Some(here),
            MplsPayloadSection => rare.sections.mpls_payload = Some(here),
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
            StationAddr => rare.station = addr(v),
            ReverseBytes => rare.reverse_bytes = Some(u()),
            ReversePackets => rare.reverse_packets = Some(u()),
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
            SystemInit => rare.system_init_ms = Some(u().min(i64::MAX as u64 / 2_000_000) as i64),
            SamplerId => s.sampler_id = Some(u()),
            SamplingInterval => rare.sampling.interval = Some(u()),
            PacketInterval => rare.sampling.packet_interval = Some(u()),
            PacketSpace => rare.sampling.packet_space = Some(u()),
            SamplingSize => rare.sampling.size = Some(u()),
            SamplingPopulation => rare.sampling.population = Some(u()),
            SamplingProbability => rare.sampling.probability = float(v),
            SelectorAlgorithm => rare.sampling.algorithm = Some(u()),
            FrameSize => rare.frame_size = Some(u()),
            IpTotalLength => rare.ip_total_length = Some(u()),
            FrameType => rare.frame_type = Some(u()),
        }
    }
}
