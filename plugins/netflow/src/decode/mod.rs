//! The decoder: NetFlow v5, v9 (RFC 3954) and IPFIX (RFC 7011) messages into
//! flow-schema column buffers, with bounded per-exporter state (templates,
//! sampling, sequence positions), data held until its template arrives, and
//! sequence accounting.
//!
//! Every read is bounds-checked by hand (big-endian, no allocation). A
//! message that breaks the rules is reported as a [`DecodeError`]; whatever
//! it held that was valid stays decoded, and what could not be decoded is
//! counted in [`Outcome::dropped`], so a caller's books balance on any input.
//!
//! - `v5`: NetFlow v5 messages.
//! - `message`: v9/IPFIX message framing and template sets.
//! - `records`: data records into rows.
//! - `sampling`: what sampling rate a record carries, and where it came from.
//! - `parking`: data sets waiting for their template.
//! - `shared`: what the decoder learned, as facts other decoders can apply.

mod message;
mod parking;
mod records;
mod sampling;
mod shared;
mod v5;

pub use shared::{Fact, Learned};

use spillway_core::addr::Addr;
use spillway_core::schema::SamplingSource;

use parking::Parked;
pub use parking::{Gone, ParkedSet, SET_OVERHEAD};

use crate::row::FlowBuilders;
use crate::sequence::{SeqEvent, SeqStats, Stream, Units};
use crate::state::{DomainKey, StateStore, StoreLimits, Version};
use crate::template::FieldSpec;

/// Why a message (or part of it) could not be decoded.
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
    #[error("sFlow: {0}")]
    Sflow(crate::sflow::SflowError),
    #[error("an sFlow datagram reached a NetFlow source: receive sFlow with an `sflow` source")]
    SflowOnNetflow,
    #[error(
        "not an sFlow datagram (it starts like NetFlow version {version}): receive NetFlow with a `netflow` source"
    )]
    NetflowOnSflow { version: u16 },
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
            Self::Sflow(_) => "sflow",
            Self::SflowOnNetflow => "sflow_on_netflow",
            Self::NetflowOnSflow { .. } => "netflow_on_sflow",
        }
    }
}

/// Per-exporter sampling settings from the pipeline config.
#[derive(Debug, Clone, Default)]
pub struct SamplingConfig {
    /// Rate used when an exporter announces none, by exporter prefix.
    pub defaults: Vec<(ipnet::IpNet, u32)>,
    /// Rate used whatever the exporter says, by exporter prefix.
    pub overrides: Vec<(ipnet::IpNet, u32)>,
}

impl SamplingConfig {
    pub(crate) fn lookup(list: &[(ipnet::IpNet, u32)], exporter: Addr) -> Option<u32> {
        if list.is_empty() {
            return None;
        }
        let ip = std::net::IpAddr::from(exporter);
        list.iter().filter(|(n, _)| n.contains(&ip)).max_by_key(|(n, _)| n.prefix_len()).map(|(_, r)| *r)
    }
}

/// Decoder settings.
#[derive(Debug, Clone)]
pub struct DecoderConfig {
    /// Bounds of the per-exporter state.
    pub limits: StoreLimits,
    /// How long a data set waits for its template, in ns.
    pub template_timeout_ns: i64,
    /// Most bytes (with per-set overhead) of data sets held waiting for
    /// templates.
    pub max_pending_bytes: usize,
    /// Sampling defaults and overrides.
    pub sampling: SamplingConfig,
    /// IANA elements decoded into extra columns, in column order.
    pub extra_ids: Vec<u16>,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            limits: StoreLimits::default(),
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
    /// Facts not recorded for sharing because too many were waiting.
    pub share_overflow: u64,
    pub templates: u64,
    pub options_templates: u64,
    pub options_records: u64,
    pub withdrawals: u64,
    /// Data sets parked waiting for their template.
    pub pending_sets: u64,
    /// Parked sets decoded once the template came.
    pub pending_decoded: u64,
    /// Parked sets whose template never came in time.
    pub pending_expired: u64,
    /// Parked sets pushed out by the byte budget.
    pub pending_evicted: u64,
    /// Records decoded from parked sets.
    pub pending_records: u64,
    /// Sets with a reserved id (skipped).
    pub unknown_sets: u64,
    /// Biflow records split into two directional records.
    pub biflows: u64,
    /// Rows whose sampling rate is unknown (`sampling_source: unknown`).
    pub sampling_unknown: u64,
    /// Rows whose times are relative to a boot time never announced.
    pub time_unknown: u64,
    /// Options data that could not be kept (a full sampler table, or a
    /// refused domain).
    pub options_refused: u64,
}

/// A gap in an exporter's sequence numbers, found by one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loss {
    pub exporter: Addr,
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
    /// Rows appended to the builders (including parked sets that this
    /// message's templates released).
    pub records: u64,
    /// Parts that could not be decoded (the message, a set, a parked set
    /// that failed on release), each counting as one record: their record
    /// count is unknown.
    pub dropped: u64,
    /// Parked sets pushed out by the parking budget because of this
    /// message, each counting as one record.
    pub evicted: u64,
    /// Why (the first part that) could not be decoded.
    pub error: Option<DecodeError>,
}

impl Outcome {
    pub(crate) fn fail(&mut self, e: DecodeError) {
        self.dropped += 1;
        if self.error.is_none() {
            self.error = Some(e);
        }
    }
}

/// Something worth one log line per exporter (the decoder does not log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// Records use uptime-relative times and no boot time is known.
    TimeUnknown,
    /// A record names a sampler that has not been described.
    SamplerUnknown { sampler: u64 },
}

impl NoticeKind {
    fn bit(self) -> u8 {
        match self {
            Self::TimeUnknown => 1,
            Self::SamplerUnknown { .. } => 2,
        }
    }
}

/// A first occurrence of a [`NoticeKind`] for one exporter and domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notice {
    pub exporter: Addr,
    pub domain: u32,
    pub kind: NoticeKind,
}

/// Most notices held between two [`Decoder::take_notices`].
const MAX_NOTICES: usize = 64;

/// Stateful decoder for any number of exporters.
pub struct Decoder {
    cfg: DecoderConfig,
    state: StateStore,
    parked: Parked,
    /// Reused buffer for the fields of templates being read.
    fields: Vec<FieldSpec>,
    /// Reused buffer for parked sets being released.
    released: Vec<ParkedSet>,
    notices: Vec<Notice>,
    seq: SeqStats,
    /// Whether changes are recorded as facts to share.
    sharing: bool,
    learned: Vec<Learned>,
    /// The journal record of the message being decoded (given to the sets
    /// it parks), when a journal feeds this decoder.
    tag: u64,
    /// Whether the tags of released sets are kept for
    /// [`Decoder::take_released_tags`].
    tagging: bool,
    released_tags: Vec<u64>,
    /// Whether data sets of columnar templates are filled column by column
    /// (always, but for the tests and benches that compare both ways).
    columnar: bool,
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

impl Decoder {
    /// A decoder with the given settings.
    pub fn new(cfg: DecoderConfig) -> Self {
        Self {
            state: StateStore::new(cfg.limits),
            parked: Parked::new(cfg.max_pending_bytes),
            cfg,
            fields: Vec::with_capacity(64),
            released: Vec::new(),
            notices: Vec::new(),
            seq: SeqStats::default(),
            sharing: false,
            learned: Vec::new(),
            tag: 0,
            tagging: false,
            released_tags: Vec::new(),
            columnar: true,
            stats: DecodeStats::default(),
        }
    }

    /// Decodes every data set record by record (`false`), as templates the
    /// columnar path does not take are: for the tests and benches that
    /// compare the two ways. On by default.
    #[doc(hidden)]
    pub fn set_columnar(&mut self, on: bool) {
        self.columnar = on;
    }

    /// Keeps the journal tags of released sets from now on.
    pub fn track_tags(&mut self) {
        self.tagging = true;
    }

    /// The journal record the next message comes from.
    #[inline]
    pub fn set_tag(&mut self, tag: u64) {
        self.tag = tag;
    }

    /// The tags of parked sets released (decoded) since the last call.
    pub fn take_released_tags(&mut self) -> std::vec::Drain<'_, u64> {
        self.released_tags.drain(..)
    }

    /// Takes new settings, keeping everything learned and parked (a reload).
    /// Smaller bounds take effect as state is added.
    pub fn reconfigure(&mut self, cfg: DecoderConfig) {
        self.state.set_limits(cfg.limits);
        self.parked.set_max_bytes(cfg.max_pending_bytes);
        self.cfg = cfg;
    }

    /// The per-exporter state (templates, sampling, sequence positions).
    pub fn state(&self) -> &StateStore {
        &self.state
    }

    /// Templates evicted to respect the state's bounds.
    pub fn templates_evicted(&self) -> u64 {
        self.state.evicted.templates
    }

    /// Sequence counters.
    pub fn sequence_stats(&self) -> SeqStats {
        self.seq
    }

    /// Data sets currently waiting for their template, and the bytes they
    /// are charged (their memory, overhead included).
    pub fn pending(&self) -> (usize, usize) {
        self.parked.usage()
    }

    /// First occurrences worth a log line since the last call.
    pub fn take_notices(&mut self) -> std::vec::Drain<'_, Notice> {
        self.notices.drain(..)
    }

    /// Whether notices are waiting.
    pub fn has_notices(&self) -> bool {
        !self.notices.is_empty()
    }

    /// Decodes one message from `exporter` received at `time_received` (ns).
    #[inline]
    pub fn decode(
        &mut self,
        msg: &[u8],
        exporter: Addr,
        time_received: i64,
        out: &mut FlowBuilders,
    ) -> Outcome {
        self.decode_with(msg, (exporter, time_received), out, None)
    }

    /// Decodes a message whose records a sink already committed (a journal
    /// replay): templates, options and sequence positions are learned as
    /// usual, its own records go to `discard` and are not counted, nothing
    /// of it is parked. Parked sets of earlier messages that it releases
    /// still go to `out`.
    pub fn decode_committed(
        &mut self,
        msg: &[u8],
        exporter: Addr,
        time_received: i64,
        out: &mut FlowBuilders,
        discard: &mut FlowBuilders,
    ) -> Outcome {
        self.decode_with(msg, (exporter, time_received), out, Some(discard))
    }

    fn decode_with(
        &mut self,
        msg: &[u8],
        from: (Addr, i64),
        out: &mut FlowBuilders,
        discard: Option<&mut FlowBuilders>,
    ) -> Outcome {
        let mut o = Outcome::default();
        if msg.len() < 4 {
            o.fail(DecodeError::TooShort { len: msg.len() });
            return o;
        }
        match be16(msg, 0) {
            5 => match discard {
                Some(d) => {
                    self.v5(msg, from.0, from.1, d, &mut o);
                    o.records = 0;
                }
                None => self.v5(msg, from.0, from.1, out, &mut o),
            },
            9 => self.v9_ipfix(msg, from, out, discard, &mut o, Version::V9),
            10 => self.v9_ipfix(msg, from, out, discard, &mut o, Version::Ipfix),
            version => o.fail(DecodeError::UnknownVersion { version }),
        }
        o
    }

    /// Per exporter: templates held and data sets waiting for one (the
    /// exporter table's gauges).
    pub fn held_by_exporter(
        &self,
    ) -> (std::collections::HashMap<Addr, u32>, std::collections::HashMap<Addr, u32>) {
        (self.state.templates_by_exporter(), self.parked.by_exporter())
    }

    /// Records the exporter of every parked set dropped (evicted or
    /// expired) from now on, for [`Decoder::take_gone_owners`].
    pub fn track_owners(&mut self) {
        self.parked.track_owners();
    }

    /// The exporters of the parked sets dropped since the last call (one
    /// entry per set).
    pub fn take_gone_owners(&mut self) -> Vec<(Addr, u64)> {
        if self.parked.has_gone_owners() { self.parked.take_gone_owners() } else { Vec::new() }
    }

    /// Drops parked data sets older than the template timeout.
    pub fn expire(&mut self, now: i64) -> Gone {
        let gone = self.parked.expire(now.saturating_sub(self.cfg.template_timeout_ns));
        self.stats.pending_expired += gone.expired;
        gone
    }

    /// Takes every parked set (at a stop): they are the caller's to persist
    /// or to count.
    pub fn drain_parked(&mut self) -> Vec<ParkedSet> {
        let mut v = Vec::new();
        self.parked.drain(&mut v);
        v
    }

    fn note(&mut self, key: DomainKey, kind: NoticeKind) {
        let Some(d) = self.state.get(&key) else { return };
        if d.noted & kind.bit() != 0 {
            return;
        }
        d.noted |= kind.bit();
        if self.notices.len() < MAX_NOTICES {
            self.notices.push(Notice { exporter: key.exporter, domain: key.domain, kind });
        }
    }

    /// Observes a message's sequence number; `units` is what it adds to the
    /// counter per its version's RFC, `None` when that cannot be known.
    fn observe(
        &mut self,
        key: DomainKey,
        version: Version,
        seq: u32,
        units: Option<Units>,
        now: i64,
    ) -> Option<Loss> {
        let d = self.state.entry(key)?;
        let ev = match d.stream(version) {
            Some(s) => s.observe(seq, units, now, &mut self.seq),
            slot @ None => {
                *slot = Some(Stream::new(version, seq, units, now));
                SeqEvent::default()
            }
        };
        (ev.missing > 0).then_some(Loss {
            exporter: key.exporter,
            domain: key.domain,
            version: version.number(),
            window_start: ev.previous_ns,
            window_end: now,
            expected: ev.expected,
            received: seq,
            missing: ev.missing,
        })
    }

    /// The rate an override in the config forces, if any.
    fn override_rate(&self, exporter: Addr) -> Option<u32> {
        SamplingConfig::lookup(&self.cfg.sampling.overrides, exporter)
    }

    /// The rate the config gives an exporter that announces none.
    fn default_rate(&self, exporter: Addr) -> (Option<u32>, SamplingSource) {
        (
            Some(SamplingConfig::lookup(&self.cfg.sampling.defaults, exporter).unwrap_or(1)),
            SamplingSource::Default,
        )
    }
}
