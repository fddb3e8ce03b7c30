//! The decoder: NetFlow v5, v9 (RFC 3954) and IPFIX (RFC 7011) messages into
//! flow-schema builders, with template state, data held until its template
//! arrives, sampling state and sequence accounting.
//!
//! Every read is bounds-checked by hand (big-endian, no allocation); a message
//! that breaks the rules is reported as a [`DecodeError`] and whatever it
//! held that was valid up to that point stays decoded.

use std::collections::{HashMap, VecDeque};

use spillway_core::schema::{SamplingSource, v4_mapped};

use crate::row::{ExtraValues, FlowBuilders, Header, Row};
use crate::sequence::SequenceTracker;
use crate::template::{FieldSpec, StoreLimits, Target, Template, TemplateStore, VARLEN};

/// Why a message (or the rest of it) could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {len} bytes is too short for a NetFlow header")]
    TooShort { len: usize },
    #[error("unknown NetFlow version {version}")]
    UnknownVersion { version: u16 },
    #[error("v5 header announces {count} records but the message holds {len} bytes")]
    V5Length { count: u16, len: usize },
    #[error("IPFIX header length {header} differs from the message length {len}")]
    IpfixLength { header: u16, len: usize },
    #[error("set at offset {offset} has length {length}, beyond the {remaining} bytes left")]
    SetLength { offset: usize, length: u16, remaining: usize },
    #[error("template {template} is malformed: {why}")]
    BadTemplate { template: u16, why: &'static str },
    #[error("data record of template {template} runs past the end of its set")]
    RecordOverrun { template: u16 },
}

impl DecodeError {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "too_short",
            Self::UnknownVersion { .. } => "unknown_version",
            Self::V5Length { .. } => "v5_length",
            Self::IpfixLength { .. } => "ipfix_length",
            Self::SetLength { .. } => "set_length",
            Self::BadTemplate { .. } => "bad_template",
            Self::RecordOverrun { .. } => "record_overrun",
        }
    }
}

/// Per-exporter sampling settings from the pipeline config.
#[derive(Debug, Clone, Default)]
pub struct SamplingConfig {
    /// Rate used when an exporter sends none, by exporter prefix.
    pub defaults: Vec<(ipnet::IpNet, u32)>,
    /// Rate used whatever the exporter says, by exporter prefix.
    pub overrides: Vec<(ipnet::IpNet, u32)>,
}

impl SamplingConfig {
    fn lookup(list: &[(ipnet::IpNet, u32)], exporter: [u8; 16]) -> Option<u32> {
        let ip = spillway_core::schema::addr_from_bytes(exporter);
        list.iter().filter(|(n, _)| n.contains(&ip)).max_by_key(|(n, _)| n.prefix_len()).map(|(_, r)| *r)
    }
}

/// Decoder settings.
#[derive(Debug, Clone)]
pub struct DecoderConfig {
    /// Bounds of the template store.
    pub limits: StoreLimits,
    /// How long a data set waits for its template, in ns.
    pub template_timeout_ns: i64,
    /// Most bytes of data sets held waiting for templates.
    pub max_pending_bytes: usize,
    /// Sampling defaults and overrides.
    pub sampling: SamplingConfig,
    /// IANA elements decoded into extra columns, in column order.
    pub extra_ids: Vec<u16>,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            limits: StoreLimits { max_exporters: 100_000, max_templates_per_exporter: 1024 },
            template_timeout_ns: 600 * 1_000_000_000,
            max_pending_bytes: 64 << 20,
            sampling: SamplingConfig::default(),
            extra_ids: Vec::new(),
        }
    }
}

/// Counters kept by the decoder (records are counted by the caller).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DecodeStats {
    pub templates: u64,
    pub options_templates: u64,
    pub options_records: u64,
    pub withdrawals: u64,
    /// Data sets parked waiting for their template.
    pub pending_sets: u64,
    /// Parked sets decoded once the template came.
    pub pending_decoded: u64,
    /// Parked sets whose template never came (or that did not fit).
    pub pending_expired: u64,
    /// Records decoded from parked sets.
    pub pending_records: u64,
    /// Sets with a reserved id (skipped).
    pub unknown_sets: u64,
    /// Biflow records split into two directional records.
    pub biflows: u64,
}

/// A gap in an exporter's sequence numbers, found by one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loss {
    pub exporter: [u8; 16],
    pub domain: u32,
    pub version: u16,
    /// When the message before the gap arrived (ns).
    pub window_start: i64,
    /// When the message after the gap arrived (ns).
    pub window_end: i64,
    pub expected: u32,
    pub received: u32,
    /// Records (packets for v9) that never arrived.
    pub missing: u64,
}

/// What decoding one message produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// A sequence gap this message revealed.
    pub loss: Option<Loss>,
    /// Flow records appended to the builders (including parked sets that
    /// this message's templates released).
    pub records: u64,
    /// Why the message (or its rest) was rejected.
    pub error: Option<DecodeError>,
}

struct Pending {
    key: ([u8; 16], u32, u16),
    header: Header,
    export_ms: i64,
    uptime_ms: u32,
    body: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy)]
struct ExporterSampling {
    /// Exporter-wide rate from options data.
    rate: Option<u32>,
    /// Boot time (ms since the epoch) from systemInitTimeMilliseconds.
    system_init_ms: Option<i64>,
}

/// Stateful decoder for any number of exporters.
pub struct Decoder {
    cfg: DecoderConfig,
    templates: TemplateStore,
    pending: VecDeque<Pending>,
    pending_bytes: usize,
    exporters: HashMap<([u8; 16], u32), ExporterSampling>,
    samplers: HashMap<([u8; 16], u32, u64), u32>,
    /// Reused buffer for the fields of templates being read.
    fields: Vec<FieldSpec>,
    /// Sequence accounting.
    pub sequences: SequenceTracker,
    /// Decoder counters.
    pub stats: DecodeStats,
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
#[inline]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
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
    secs * 1_000_000_000 + frac as i64
}

/// Per-set lookups shared by its records.
struct SetContext {
    exporter: [u8; 16],
    domain: u32,
    system_init_ms: Option<i64>,
    base_rate: (u32, SamplingSource),
}

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
    station: Option<[u8; 16]>,
    reverse_bytes: Option<u64>,
    reverse_packets: Option<u64>,
    /// Where each extra column's value is in the record: (offset, length).
    extra: [(u32, u16); crate::iana::MAX_EXTRA],
    extra_mask: u16,
    interval: Option<u64>,
    packet_interval: Option<u64>,
    packet_space: Option<u64>,
    system_init_ms: Option<i64>,
}

impl Decoder {
    /// A decoder with the given settings.
    pub fn new(cfg: DecoderConfig) -> Self {
        let max = cfg.limits.max_exporters;
        Self {
            templates: TemplateStore::new(cfg.limits),
            cfg,
            pending: VecDeque::new(),
            pending_bytes: 0,
            exporters: HashMap::new(),
            samplers: HashMap::new(),
            fields: Vec::with_capacity(64),
            sequences: SequenceTracker::new(max),
            stats: DecodeStats::default(),
        }
    }

    /// Templates evicted to respect the store's bounds.
    pub fn templates_evicted(&self) -> u64 {
        self.templates.evicted
    }

    /// Data sets currently waiting for their template, and their bytes.
    pub fn pending(&self) -> (usize, usize) {
        (self.pending.len(), self.pending_bytes)
    }

    /// Decodes one message from `exporter` received at `time_received` (ns).
    pub fn decode(
        &mut self,
        msg: &[u8],
        exporter: [u8; 16],
        time_received: i64,
        out: &mut FlowBuilders,
    ) -> Outcome {
        let mut o = Outcome::default();
        if msg.len() < 4 {
            o.error = Some(DecodeError::TooShort { len: msg.len() });
            return o;
        }
        match be16(msg, 0) {
            5 => self.v5(msg, exporter, time_received, out, &mut o),
            9 => self.v9_ipfix(msg, exporter, time_received, out, &mut o, false),
            10 => self.v9_ipfix(msg, exporter, time_received, out, &mut o, true),
            version => o.error = Some(DecodeError::UnknownVersion { version }),
        }
        o
    }

    /// Drops parked data sets older than the template timeout; returns how
    /// many expired.
    pub fn expire(&mut self, now: i64) -> u64 {
        let mut n = 0;
        while let Some(p) = self.pending.front() {
            if now.saturating_sub(p.header.time_received) < self.cfg.template_timeout_ns {
                break;
            }
            let p = self.pending.pop_front().expect("front exists");
            self.pending_bytes -= p.body.len();
            n += 1;
        }
        self.stats.pending_expired += n;
        n
    }

    fn v5(&mut self, msg: &[u8], exporter: [u8; 16], now: i64, out: &mut FlowBuilders, o: &mut Outcome) {
        if msg.len() < 24 {
            o.error = Some(DecodeError::TooShort { len: msg.len() });
            return;
        }
        let count = be16(msg, 2);
        if msg.len() < 24 + count as usize * 48 {
            o.error = Some(DecodeError::V5Length { count, len: msg.len() });
            return;
        }
        let uptime = be32(msg, 4);
        let export_ns = be32(msg, 8) as i64 * 1_000_000_000 + be32(msg, 12) as i64;
        let sequence = be32(msg, 16);
        let domain = ((msg[20] as u32) << 8) | msg[21] as u32;
        let header_rate = (be16(msg, 22) & 0x3fff) as u32;
        let h = Header { time_received: now, exporter, domain, sequence, version: 5 };
        let (rate, source) = self.rate(exporter, domain, None, (header_rate > 0).then_some(header_rate));
        for i in 0..count as usize {
            let r = &msg[24 + i * 48..24 + (i + 1) * 48];
            let first = be32(r, 24);
            let last = be32(r, 28);
            let row = Row {
                src_addr: Some(v4_mapped(be32(r, 0))),
                dst_addr: Some(v4_mapped(be32(r, 4))),
                next_hop: Some(v4_mapped(be32(r, 8))),
                in_if: Some(be16(r, 12) as u32),
                out_if: Some(be16(r, 14) as u32),
                packets: Some(be32(r, 16) as u64),
                bytes: Some(be32(r, 20) as u64),
                flow_start: Some(export_ns - uptime.wrapping_sub(first) as i64 * 1_000_000),
                flow_end: Some(export_ns - uptime.wrapping_sub(last) as i64 * 1_000_000),
                src_port: Some(be16(r, 32)),
                dst_port: Some(be16(r, 34)),
                tcp_flags: Some(r[37] as u16),
                protocol: Some(r[38]),
                tos: Some(r[39]),
                src_as: Some(be16(r, 40) as u32),
                dst_as: Some(be16(r, 42) as u32),
                src_mask: Some(r[44]),
                dst_mask: Some(r[45]),
                vlan: None,
                direction: None,
                sampling_rate: rate,
                sampling_source: Some(source),
            };
            out.push(&h, &row, &ExtraValues::NONE);
        }
        o.records += count as u64;
        let ev = self.sequences.observe(exporter, domain, 5, sequence, Some(count as u32), now);
        o.loss = loss(ev, exporter, domain, 5, sequence, now);
    }

    fn v9_ipfix(
        &mut self,
        msg: &[u8],
        exporter: [u8; 16],
        now: i64,
        out: &mut FlowBuilders,
        o: &mut Outcome,
        ipfix: bool,
    ) {
        let header_len = if ipfix { 16 } else { 20 };
        if msg.len() < header_len {
            o.error = Some(DecodeError::TooShort { len: msg.len() });
            return;
        }
        let (export_ms, uptime_ms, sequence, domain, end) = if ipfix {
            let length = be16(msg, 2);
            if (length as usize) > msg.len() || (length as usize) < header_len {
                o.error = Some(DecodeError::IpfixLength { header: length, len: msg.len() });
                return;
            }
            (be32(msg, 4) as i64 * 1000, 0u32, be32(msg, 8), be32(msg, 12), length as usize)
        } else {
            (be32(msg, 8) as i64 * 1000, be32(msg, 4), be32(msg, 12), be32(msg, 16), msg.len())
        };
        let version = if ipfix { 10 } else { 9 };
        let h = Header { time_received: now, exporter, domain, sequence, version };
        let mut at = header_len;
        let mut data_records: u32 = 0;
        let mut uncountable = false;
        while at + 4 <= end {
            let set_id = be16(msg, at);
            let length = be16(msg, at + 2);
            if length < 4 || at + length as usize > end {
                o.error = Some(DecodeError::SetLength { offset: at, length, remaining: end - at });
                break;
            }
            let body = &msg[at + 4..at + length as usize];
            at += length as usize;
            let result = match (set_id, ipfix) {
                (0, false) | (2, true) => self.templates(body, exporter, domain, ipfix, false, out, o),
                (1, false) | (3, true) => self.templates(body, exporter, domain, ipfix, true, out, o),
                (id, _) if id >= 256 => {
                    let key = (exporter, domain, id);
                    if self.templates.contains(key) {
                        match self.data_set(body, key, &h, export_ms, uptime_ms, out) {
                            Ok(n) => {
                                o.records += n;
                                data_records += n as u32;
                                Ok(())
                            }
                            Err(e) => Err(e),
                        }
                    } else {
                        uncountable = true;
                        self.park(key, h, export_ms, uptime_ms, body);
                        Ok(())
                    }
                }
                _ => {
                    self.stats.unknown_sets += 1;
                    Ok(())
                }
            };
            if let Err(e) = result {
                o.error = Some(e);
                break;
            }
        }
        // v9's sequence counts packets; IPFIX's counts data records.
        let units = if ipfix { (!uncountable && o.error.is_none()).then_some(data_records) } else { Some(1) };
        let ev = self.sequences.observe(exporter, domain, version, sequence, units, now);
        o.loss = loss(ev, exporter, domain, version, sequence, now);
    }

    #[allow(clippy::too_many_arguments)]
    fn templates(
        &mut self,
        b: &[u8],
        exporter: [u8; 16],
        domain: u32,
        ipfix: bool,
        options: bool,
        out: &mut FlowBuilders,
        o: &mut Outcome,
    ) -> Result<(), DecodeError> {
        let mut fields = std::mem::take(&mut self.fields);
        let result = self.templates_into(b, exporter, domain, ipfix, options, out, o, &mut fields);
        self.fields = fields;
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn templates_into(
        &mut self,
        mut b: &[u8],
        exporter: [u8; 16],
        domain: u32,
        ipfix: bool,
        options: bool,
        out: &mut FlowBuilders,
        o: &mut Outcome,
        fields: &mut Vec<FieldSpec>,
    ) -> Result<(), DecodeError> {
        // Fewer than 4 bytes left is padding.
        while b.len() >= 4 {
            let id = be16(b, 0);
            fields.clear();
            let scope_fields: u16;
            if !options || (ipfix && be16(b, 2) == 0) {
                let count = be16(b, 2);
                b = &b[4..];
                if count == 0 {
                    if !ipfix {
                        return Err(DecodeError::BadTemplate { template: id, why: "no fields" });
                    }
                    // IPFIX withdrawal: of one template, or of all of a kind.
                    self.stats.withdrawals += 1;
                    if id == 2 || id == 3 {
                        self.templates.remove_all(exporter, domain, id == 3);
                    } else {
                        self.templates.remove((exporter, domain, id));
                    }
                    continue;
                }
                b = read_fields(b, count, ipfix, id, fields)?;
                scope_fields = 0;
            } else if ipfix {
                if b.len() < 6 {
                    return Err(DecodeError::BadTemplate { template: id, why: "truncated options header" });
                }
                let count = be16(b, 2);
                let scope = be16(b, 4);
                if scope == 0 || scope > count {
                    return Err(DecodeError::BadTemplate { template: id, why: "bad scope field count" });
                }
                b = read_fields(&b[6..], count, true, id, fields)?;
                scope_fields = scope;
            } else {
                if b.len() < 6 {
                    return Err(DecodeError::BadTemplate { template: id, why: "truncated options header" });
                }
                let scope_len = be16(b, 2);
                let opt_len = be16(b, 4);
                if !scope_len.is_multiple_of(4) || !opt_len.is_multiple_of(4) {
                    return Err(DecodeError::BadTemplate {
                        template: id,
                        why: "options lengths not multiples of 4",
                    });
                }
                let count = ((scope_len as u32 + opt_len as u32) / 4) as u16;
                b = read_fields(&b[6..], count, false, id, fields)?;
                scope_fields = scope_len / 4;
                // v9 scope types are not IPFIX elements: keep them out of the plan.
                for f in fields.iter_mut().take(scope_fields as usize) {
                    f.enterprise = u32::MAX;
                }
                // Options templates are padded to 4 bytes at the set's end.
            }
            if id < 256 {
                return Err(DecodeError::BadTemplate { template: id, why: "template id below 256" });
            }
            if options {
                self.stats.options_templates += 1;
            } else {
                self.stats.templates += 1;
            }
            // Exporters resend templates all the time; an unchanged one is
            // only marked fresh.
            if !self.templates.refresh((exporter, domain, id), fields, scope_fields) {
                let Some(t) = Template::new(fields.clone(), scope_fields, &self.cfg.extra_ids) else {
                    return Err(DecodeError::BadTemplate { template: id, why: "fields describe no data" });
                };
                self.templates.insert((exporter, domain, id), t);
            }
            o.records += self.release((exporter, domain, id), out);
        }
        Ok(())
    }

    fn park(
        &mut self,
        key: ([u8; 16], u32, u16),
        header: Header,
        export_ms: i64,
        uptime_ms: u32,
        body: &[u8],
    ) {
        self.stats.pending_sets += 1;
        while self.pending_bytes + body.len() > self.cfg.max_pending_bytes {
            let Some(old) = self.pending.pop_front() else { break };
            self.pending_bytes -= old.body.len();
            self.stats.pending_expired += 1;
        }
        if body.len() > self.cfg.max_pending_bytes {
            self.stats.pending_expired += 1;
            return;
        }
        self.pending_bytes += body.len();
        self.pending.push_back(Pending { key, header, export_ms, uptime_ms, body: body.to_vec() });
    }

    /// Decodes parked sets that were waiting for `key`.
    fn release(&mut self, key: ([u8; 16], u32, u16), out: &mut FlowBuilders) -> u64 {
        if self.pending.is_empty() || !self.pending.iter().any(|p| p.key == key) {
            return 0;
        }
        let mut records = 0;
        let mut keep = VecDeque::with_capacity(self.pending.len());
        let parked = std::mem::take(&mut self.pending);
        for p in parked {
            if p.key != key {
                keep.push_back(p);
                continue;
            }
            self.pending_bytes -= p.body.len();
            self.stats.pending_decoded += 1;
            // A parked set that turns out malformed is counted like any other.
            if let Ok(n) = self.data_set(&p.body, key, &p.header, p.export_ms, p.uptime_ms, out) {
                records += n;
            }
        }
        self.pending = keep;
        self.stats.pending_records += records;
        records
    }

    fn data_set(
        &mut self,
        mut b: &[u8],
        key: ([u8; 16], u32, u16),
        h: &Header,
        export_ms: i64,
        uptime_ms: u32,
        out: &mut FlowBuilders,
    ) -> Result<u64, DecodeError> {
        let Some(t) = self.templates.get(key) else { return Ok(0) };
        let mut cx = self.set_context(key.0, key.1);
        let mut n = 0u64;
        while b.len() >= t.min_len {
            let mut row = Row::default();
            let mut s = Scratch::default();
            let mut at = 0usize;
            for (f, target) in t.fields.iter().zip(t.plan.iter()) {
                let len = if f.len == VARLEN {
                    let Some(&first) = b.get(at) else {
                        return Err(DecodeError::RecordOverrun { template: key.2 });
                    };
                    at += 1;
                    if first < 255 {
                        first as usize
                    } else {
                        if at + 2 > b.len() {
                            return Err(DecodeError::RecordOverrun { template: key.2 });
                        }
                        let l = be16(b, at) as usize;
                        at += 2;
                        l
                    }
                } else {
                    f.len as usize
                };
                if at + len > b.len() {
                    return Err(DecodeError::RecordOverrun { template: key.2 });
                }
                let v = &b[at..at + len];
                match *target {
                    Target::Skip => {}
                    Target::Extra(i) => {
                        s.extra[i as usize] = (at as u32, len as u16);
                        s.extra_mask |= 1 << i;
                    }
                    t => apply(t, v, &mut row, &mut s),
                }
                at += len;
            }
            let (rec, rest) = b.split_at(at);
            b = rest;
            let extras = ExtraValues { spans: &s.extra, mask: s.extra_mask, record: rec };
            if t.is_options() {
                self.stats.options_records += 1;
                self.learn_sampling(key.0, key.1, &s);
                cx = self.set_context(key.0, key.1);
                continue;
            }
            self.finish_row(&mut row, &s, &cx, export_ms, uptime_ms);
            out.push(h, &row, &extras);
            n += 1;
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
                n += 1;
                self.stats.biflows += 1;
            }
        }
        Ok(n)
    }

    fn learn_sampling(&mut self, exporter: [u8; 16], domain: u32, s: &Scratch) {
        let rate = match (s.packet_interval, s.packet_space, s.interval) {
            (Some(i), Some(sp), _) if i > 0 => Some((i.saturating_add(sp) / i).min(u32::MAX as u64) as u32),
            (Some(i), None, _) if i > 0 => Some(i.min(u32::MAX as u64) as u32),
            (_, _, Some(i)) if i > 0 => Some(i.min(u32::MAX as u64) as u32),
            _ => None,
        };
        let e = self.exporters.entry((exporter, domain)).or_default();
        if let Some(init) = s.system_init_ms {
            e.system_init_ms = Some(init);
        }
        let Some(rate) = rate else { return };
        match s.sampler_id {
            Some(id) => {
                self.samplers.insert((exporter, domain, id), rate);
            }
            None => e.rate = Some(rate),
        }
    }

    fn rate(
        &self,
        exporter: [u8; 16],
        domain: u32,
        sampler: Option<u64>,
        header: Option<u32>,
    ) -> (u32, SamplingSource) {
        if let Some(r) = SamplingConfig::lookup(&self.cfg.sampling.overrides, exporter) {
            return (r, SamplingSource::Override);
        }
        if let Some(r) = header {
            return (r, SamplingSource::Header);
        }
        if let Some(id) = sampler
            && let Some(r) = self.samplers.get(&(exporter, domain, id))
        {
            return (*r, SamplingSource::Options);
        }
        if let Some(r) = self.exporters.get(&(exporter, domain)).and_then(|e| e.rate) {
            return (r, SamplingSource::Options);
        }
        (SamplingConfig::lookup(&self.cfg.sampling.defaults, exporter).unwrap_or(1), SamplingSource::Default)
    }

    /// What every record of one data set shares, looked up once per set.
    fn set_context(&self, exporter: [u8; 16], domain: u32) -> SetContext {
        SetContext {
            exporter,
            domain,
            system_init_ms: self.exporters.get(&(exporter, domain)).and_then(|e| e.system_init_ms),
            base_rate: self.rate(exporter, domain, None, None),
        }
    }

    fn finish_row(&self, row: &mut Row, s: &Scratch, cx: &SetContext, export_ms: i64, uptime_ms: u32) {
        if row.bytes.is_none() {
            row.bytes = s.bytes_total;
        }
        if row.packets.is_none() {
            row.packets = s.packets_total;
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
        let export_ns = export_ms.saturating_mul(1_000_000);
        // Uptime-relative times need the boot time: from the record, from
        // options data, or (v9) from the header's uptime.
        let boot_ms = s.system_init_ms.or(cx.system_init_ms);
        let from_uptime = |up: u32| -> Option<i64> {
            if uptime_ms > 0 {
                // Wrapping difference handles the 49.7-day uptime rollover.
                Some(export_ns - uptime_ms.wrapping_sub(up) as i64 * 1_000_000)
            } else {
                boot_ms.map(|b| b.saturating_add(up as i64).saturating_mul(1_000_000))
            }
        };
        row.flow_start = s
            .start_ns
            .or(s.start_delta_us.map(|d| export_ns.saturating_sub(ns(d, 1000))))
            .or_else(|| s.start_uptime.and_then(from_uptime));
        row.flow_end = s
            .end_ns
            .or(s.end_delta_us.map(|d| export_ns.saturating_sub(ns(d, 1000))))
            .or_else(|| s.end_uptime.and_then(from_uptime));
        let (rate, source) = match s.sampler_id {
            Some(id) if cx.base_rate.1 != SamplingSource::Override => self
                .samplers
                .get(&(cx.exporter, cx.domain, id))
                .map_or(cx.base_rate, |r| (*r, SamplingSource::Options)),
            _ => cx.base_rate,
        };
        row.sampling_rate = rate;
        row.sampling_source = Some(source);
    }
}

fn loss(
    ev: crate::sequence::SeqEvent,
    exporter: [u8; 16],
    domain: u32,
    version: u16,
    seq: u32,
    now: i64,
) -> Option<Loss> {
    (ev.missing > 0).then_some(Loss {
        exporter,
        domain,
        version,
        window_start: ev.previous_ns,
        window_end: now,
        expected: ev.expected,
        received: seq,
        missing: ev.missing,
    })
}

fn read_fields<'a>(
    mut b: &'a [u8],
    count: u16,
    ipfix: bool,
    template: u16,
    fields: &mut Vec<FieldSpec>,
) -> Result<&'a [u8], DecodeError> {
    if count as usize * 4 > b.len() {
        return Err(DecodeError::BadTemplate { template, why: "more fields than the set holds" });
    }
    for _ in 0..count {
        if b.len() < 4 {
            return Err(DecodeError::BadTemplate { template, why: "truncated field specifier" });
        }
        let raw = be16(b, 0);
        let len = be16(b, 2);
        b = &b[4..];
        let mut f = FieldSpec { id: raw, len, enterprise: 0 };
        if ipfix && raw & 0x8000 != 0 {
            if b.len() < 4 {
                return Err(DecodeError::BadTemplate { template, why: "truncated enterprise number" });
            }
            f.id = raw & 0x7fff;
            f.enterprise = be32(b, 0);
            b = &b[4..];
        }
        // RFC 3954 has no variable-length fields, but H3C's v9 exporters use
        // IPFIX's encoding for them; we accept it in both versions.
        fields.push(f);
    }
    Ok(b)
}

#[inline]
fn addr(v: &[u8]) -> Option<[u8; 16]> {
    match v.len() {
        4 => Some(v4_mapped(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(v);
            Some(a)
        }
        _ => None,
    }
}

#[inline]
fn pick(new: Option<[u8; 16]>, old: Option<[u8; 16]>) -> Option<[u8; 16]> {
    const V4_ZERO: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0];
    match (new, old) {
        (Some(n), Some(o)) if n == [0; 16] || n == V4_ZERO => Some(o),
        (Some(n), _) => Some(n),
        (None, o) => o,
    }
}

#[inline]
fn apply(target: Target, v: &[u8], row: &mut Row, s: &mut Scratch) {
    use Target::*;
    let u = || uint(v);
    match target {
        Skip | Extra(_) => {}
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
        SamplingInterval => s.interval = Some(u()),
        PacketInterval => s.packet_interval = Some(u()),
        PacketSpace => s.packet_space = Some(u()),
    }
}
