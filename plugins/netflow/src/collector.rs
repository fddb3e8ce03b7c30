//! What both NetFlow sources share: decoder settings, and a collector that
//! feeds messages to the decoder and keeps the ledger and metrics honest.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use arrow::array::RecordBatch;
use serde::Deserialize;
use spillway_core::addr::Addr;
use spillway_core::config::{ByteSize, HumanDuration};
use spillway_core::events::Events;
use spillway_core::ledger::DropReason;
use spillway_core::metrics::{Counter, Gauge, Metrics};
use spillway_core::registry::FieldIssue;

use crate::decode::{Decoder, DecoderConfig, SamplingConfig};
use crate::iana::ExtraField;
use crate::row::FlowBuilders;
use crate::state::StoreLimits;

/// Template state settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSettings {
    /// How long data waits for its template before it is dropped (counted
    /// as `template_timeout`).
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Most memory held by data waiting for templates (bytes plus a fixed
    /// overhead per set); the oldest is dropped beyond it (counted as
    /// `evicted`).
    #[serde(default = "default_max_pending")]
    pub max_pending: ByteSize,
    /// Most memory of per-exporter state: templates, sampler tables,
    /// sequence positions. The least recently used (exporter, observation
    /// domain) is evicted beyond it (counted); source addresses can be
    /// spoofed, so this is what bounds a flood.
    #[serde(default = "default_max_state")]
    pub max_state: ByteSize,
    /// Most templates per (exporter, observation domain); the least
    /// recently used is evicted beyond it.
    #[serde(default = "default_max_per_exporter")]
    pub max_per_exporter: usize,
    /// Most observation domains per exporter address; data from more is
    /// refused (counted) rather than evicting other exporters' state.
    #[serde(default = "default_max_domains")]
    pub max_domains_per_exporter: usize,
}

impl Default for TemplateSettings {
    fn default() -> Self {
        Self {
            timeout: default_timeout(),
            max_pending: default_max_pending(),
            max_state: default_max_state(),
            max_per_exporter: default_max_per_exporter(),
            max_domains_per_exporter: default_max_domains(),
        }
    }
}

fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(600)
}
fn default_max_pending() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_max_state() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_max_per_exporter() -> usize {
    1024
}
fn default_max_domains() -> usize {
    256
}

/// Sampling rates from the config, by exporter prefix.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingSettings {
    /// Rate for exporters that export none (`sampling_source: default`).
    #[serde(default)]
    pub defaults: BTreeMap<Prefix, NonZeroU32>,
    /// Rate that wins over whatever the exporter says (`override`).
    #[serde(default)]
    pub overrides: BTreeMap<Prefix, NonZeroU32>,
}

/// An exporter prefix in the config: `10.0.0.0/8`, or one address
/// (`192.0.2.1`, a /32 or /128). Parsed once, when the file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix(pub ipnet::IpNet);

impl std::str::FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse::<ipnet::IpNet>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map(Prefix)
            .map_err(|_| format!("`{s}` is not an address or prefix such as `10.0.0.0/8`"))
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl SamplingSettings {
    fn to_config(&self) -> SamplingConfig {
        let conv = |m: &BTreeMap<Prefix, NonZeroU32>| m.iter().map(|(k, r)| (k.0, r.get())).collect();
        SamplingConfig { defaults: conv(&self.defaults), overrides: conv(&self.overrides) }
    }
}

/// Checks what both NetFlow sources share: template settings and extra
/// fields (prefixes and rates are typed, checked when the file is read).
pub fn validate(t: &TemplateSettings, extra_fields: &[String]) -> Vec<FieldIssue> {
    let mut v = Vec::new();
    if let Err(e) = crate::iana::resolve_all(extra_fields) {
        v.push(FieldIssue::new("extra_fields", e));
    }
    if t.max_state.get() < 1 << 20 {
        v.push(FieldIssue::new("templates.max_state", "must be at least 1MiB"));
    }
    if t.max_pending.get() < 1 << 20 {
        v.push(FieldIssue::new("templates.max_pending", "must be at least 1MiB"));
    }
    if t.max_per_exporter == 0 || t.max_per_exporter > 65_536 {
        v.push(FieldIssue::new("templates.max_per_exporter", "must be between 1 and 65536"));
    }
    if t.max_domains_per_exporter == 0 {
        v.push(FieldIssue::new("templates.max_domains_per_exporter", "must be at least 1"));
    }
    v
}

/// The allowlist as the prefixes the receive path matches.
pub fn allowlist(allow: &[Prefix]) -> Vec<ipnet::IpNet> {
    allow.iter().map(|p| p.0).collect()
}

/// The flow schema plus the configured extra columns.
pub fn output_schema(extra_fields: &[String]) -> arrow::datatypes::SchemaRef {
    crate::row::schema_with(&crate::iana::resolve_all(extra_fields).unwrap_or_default())
}

/// The named outputs of both NetFlow sources.
pub fn named_outputs() -> Vec<(&'static str, arrow::datatypes::SchemaRef)> {
    vec![("loss", loss_schema()), ("completeness", crate::completeness::schema())]
}

/// The named outputs of sources that take sFlow: also its counter samples.
pub fn sflow_named_outputs() -> Vec<(&'static str, arrow::datatypes::SchemaRef)> {
    let mut v = named_outputs();
    v.push(("counters", crate::sflow::counters::schema()));
    v
}

/// How often a source emits completeness rows unless told otherwise.
pub fn default_completeness_interval() -> HumanDuration {
    HumanDuration::from_secs(60)
}

/// The config of each of `decoders` decoders sharing these settings: the
/// byte budgets are the source's, split between them.
pub fn decoder_config(
    t: &TemplateSettings,
    s: &SamplingSettings,
    extras: &[ExtraField],
    decoders: usize,
) -> DecoderConfig {
    let share = |b: &ByteSize| (b.get() / decoders.max(1) as u64).min(usize::MAX as u64) as usize;
    DecoderConfig {
        extra_ids: extras.iter().map(|e| e.id).collect(),
        limits: StoreLimits {
            max_bytes: share(&t.max_state),
            max_templates_per_domain: t.max_per_exporter,
            max_domains_per_exporter: t.max_domains_per_exporter,
        },
        template_timeout_ns: t.timeout.get().as_nanos().min(i64::MAX as u128) as i64,
        max_pending_bytes: share(&t.max_pending),
        sampling: s.to_config(),
    }
}

/// Metric handles of one source (shared by its workers). What the ledger
/// already says (records dropped by reason) is not repeated here.
#[derive(Clone)]
pub struct SourceMetrics {
    pub packets: Counter,
    pub templates_evicted: Counter,
    pub domains_evicted: Counter,
    pub domains_refused: Counter,
    pub options_refused: Counter,
    pub missing: Counter,
    pub reordered: Counter,
    pub resets: Counter,
    pub pending_sets: Gauge,
    pub pending_bytes: Gauge,
    pub state_bytes: Gauge,
    pub state_domains: Gauge,
    pub sampling_unknown: Counter,
    pub time_unknown: Counter,
    /// Registered by sources that take sFlow.
    pub sflow: Option<SflowMetrics>,
}

/// Metric handles of sFlow decoding.
#[derive(Clone)]
pub struct SflowMetrics {
    pub flow_samples: Counter,
    pub counter_samples: Counter,
    pub skipped: Counter,
    pub datagrams_missing: Counter,
    pub samples_missing: Counter,
    pub reordered: Counter,
    pub resets: Counter,
    pub agent_drops: Counter,
    pub streams_evicted: Counter,
    pub streams: Gauge,
}

impl SflowMetrics {
    /// Registers the handles.
    pub fn new(m: &Metrics) -> Self {
        Self {
            flow_samples: m.counter("spillway_sflow_flow_samples_total", "sFlow flow samples decoded (one row each)."),
            counter_samples: m.counter("spillway_sflow_counter_samples_total", "sFlow counter samples decoded."),
            skipped: m.counter(
                "spillway_sflow_skipped_total",
                "sFlow samples and records of formats not decoded (other enterprises), skipped by their length.",
            ),
            datagrams_missing: m.counter(
                "spillway_sflow_datagrams_missing_total",
                "sFlow datagrams missing by the (agent, sub-agent) sequence numbers.",
            ),
            samples_missing: m.counter(
                "spillway_sflow_samples_missing_total",
                "sFlow samples missing by the (agent, source id) sequence numbers.",
            ),
            reordered: m.counter("spillway_sflow_samples_reordered_total", "sFlow samples that arrived late or twice."),
            resets: m.counter("spillway_sflow_sequence_resets_total", "sFlow sample sequence restarts (agent restarts)."),
            agent_drops: m.counter(
                "spillway_sflow_agent_drops_total",
                "Packets the agents report they could not sample (the flow samples' drops counter).",
            ),
            streams_evicted: m.counter(
                "spillway_sflow_streams_evicted_total",
                "sFlow sequence positions evicted to respect the bound.",
            ),
            streams: m.gauge("spillway_sflow_streams", "sFlow sequence positions held (datagram and sample streams)."),
        }
    }
}

impl SourceMetrics {
    /// Registers the handles of a source.
    pub fn new(m: &Metrics) -> Self {
        Self {
            packets: m.counter("spillway_netflow_packets_total", "NetFlow/IPFIX messages received."),
            templates_evicted: m.counter(
                "spillway_netflow_templates_evicted_total",
                "Templates evicted to respect the state's bounds (templates.max_state, max_per_exporter).",
            ),
            domains_evicted: m.counter(
                "spillway_netflow_exporters_evicted_total",
                "(exporter, observation domain) states evicted to respect templates.max_state.",
            ),
            domains_refused: m.counter(
                "spillway_netflow_domains_refused_total",
                "Messages of a new observation domain refused: the exporter holds templates.max_domains_per_exporter.",
            ),
            options_refused: m.counter(
                "spillway_netflow_options_refused_total",
                "Options records (sampler rates, boot times) not kept: a full sampler table or a refused domain.",
            ),
            missing: m.counter(
                "spillway_netflow_sequence_missing_total",
                "Records (packets for v9) missing according to sequence numbers.",
            ),
            reordered: m.counter("spillway_netflow_sequence_reordered_total", "Messages that arrived late or twice."),
            resets: m.counter("spillway_netflow_sequence_resets_total", "Sequence restarts (exporter reboots)."),
            pending_sets: m.gauge("spillway_netflow_pending_sets", "Data sets waiting for their template."),
            pending_bytes: m.gauge(
                "spillway_netflow_pending_bytes",
                "Memory of data sets waiting for their template (bytes plus a fixed overhead per set).",
            ),
            state_bytes: m.gauge(
                "spillway_netflow_state_bytes",
                "Memory charged to per-exporter state (templates, samplers, sequence positions).",
            ),
            state_domains: m.gauge("spillway_netflow_exporters", "(exporter, observation domain) pairs with state."),
            sampling_unknown: m.counter(
                "spillway_netflow_sampling_unknown_records_total",
                "Records naming a sampler that was never described (sampling_source unknown, rate null).",
            ),
            time_unknown: m.counter(
                "spillway_netflow_time_unknown_records_total",
                "Records with uptime-relative times from an exporter that never announced its boot time.",
            ),
            sflow: None,
        }
    }

    /// With the sFlow handles too.
    pub fn with_sflow(mut self, m: &Metrics) -> Self {
        self.sflow = Some(SflowMetrics::new(m));
        self
    }
}

/// Which protocols a collector decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// NetFlow v5/v9 and IPFIX (the `netflow` source); sFlow is refused
    /// with a precise error.
    #[default]
    Netflow,
    /// sFlow v5 (the `sflow` source); NetFlow is refused likewise.
    Sflow,
    /// Either, told apart by the first bytes (captures).
    Auto,
}

impl Protocol {
    /// How logs name what the source receives.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Netflow => "NetFlow/IPFIX",
            Self::Sflow => "sFlow",
            Self::Auto => "NetFlow/IPFIX and sFlow",
        }
    }
}

/// Decoder, builders, and the accounting around them. One per worker.
pub struct Collector {
    decoder: Decoder,
    protocol: Protocol,
    /// The sFlow decoder, once the protocol allows sFlow.
    sflow: Option<Box<crate::sflow::SflowDecoder>>,
    /// Whether counter samples are kept (the `counters` output is read).
    counters: bool,
    /// Per-exporter completeness rows, when the output is read.
    completeness: Option<crate::completeness::Completeness>,
    /// Per-exporter live counts since the last [`Collector::take_live`]
    /// (the admin endpoint's exporter table).
    live: std::collections::HashMap<Addr, spillway_core::exporters::ExporterStats>,
    builders: FlowBuilders,
    /// Sequence gaps for the `loss` output (which counts them as it takes
    /// them in); `None` when nobody reads it.
    loss: Option<LossRecords>,
    events: Events,
    metrics: SourceMetrics,
    seen: Seen,
    name: Arc<str>,
    /// Relay mode: datagrams gathered as records (and batches of how many),
    /// not decoded.
    relay: Option<(crate::relay::Relay, usize)>,
    /// Parts that could not be decoded, since the last
    /// [`Collector::take_failed`].
    failed: u64,
    /// Fed from a journal: what it needs to know of each record.
    journal: Option<Box<JournalSide>>,
}

/// A journaled collector's bookkeeping.
struct JournalSide {
    /// Where the rows of records a sink already committed go (and are
    /// thrown away).
    discard: FlowBuilders,
    /// Journal tags of parked sets dropped since the last take.
    gone: Vec<u64>,
}

/// The decoder's counters as last mirrored into metrics and gauges.
#[derive(Default)]
struct Seen {
    stats: crate::decode::DecodeStats,
    seq: crate::sequence::SeqStats,
    templates_evicted: u64,
    domains_evicted: u64,
    refused: u64,
    pending: (usize, usize),
    state: (usize, usize),
    sflow: crate::sflow::SflowStats,
    sflow_seq: crate::sequence::SeqStats,
    sflow_streams: usize,
}

impl Collector {
    /// A collector emitting batches of `batch_size` rows, with `extras`
    /// columns after the flow schema's.
    pub fn new(
        cfg: DecoderConfig,
        batch_size: usize,
        extras: &[ExtraField],
        events: Events,
        metrics: SourceMetrics,
        name: Arc<str>,
    ) -> Self {
        Self {
            decoder: {
                // Dropped parked sets are attributed to their exporters.
                let mut d = Decoder::new(cfg);
                d.track_owners();
                d
            },
            protocol: Protocol::Netflow,
            sflow: None,
            counters: false,
            completeness: None,
            live: std::collections::HashMap::new(),
            builders: FlowBuilders::with_extras(batch_size, extras),
            loss: None,
            events,
            metrics,
            seen: Seen::default(),
            name,
            relay: None,
            failed: 0,
            journal: None,
        }
    }

    /// Feeds this collector from a journal: parked sets remember the record
    /// they came from, and records a sink already committed can be decoded
    /// for their state alone ([`Collector::ingest_journaled`]).
    pub fn enable_journal(&mut self, extras: &[ExtraField]) {
        self.decoder.track_tags();
        self.journal =
            Some(Box::new(JournalSide { discard: FlowBuilders::with_extras(256, extras), gone: Vec::new() }));
    }

    /// Decodes journal record `seq`; when `committed` (a sink holds its
    /// records already) only its templates, options and sequence positions
    /// count.
    pub fn ingest_journaled(&mut self, msg: &[u8], exporter: Addr, now_ns: i64, seq: u64, committed: bool) {
        self.decoder.set_tag(seq);
        self.ingest_as(msg, exporter, now_ns, committed);
        if let Some(j) = &mut self.journal
            && !j.discard.is_empty()
        {
            drop(j.discard.finish());
        }
    }

    /// Journal tags of parked sets released since the last call.
    pub fn take_released_tags(&mut self) -> std::vec::Drain<'_, u64> {
        self.decoder.take_released_tags()
    }

    /// Journal tags of parked sets dropped (expired, evicted) since the last
    /// call.
    pub fn take_gone_tags(&mut self) -> Vec<u64> {
        self.journal.as_mut().map(|j| std::mem::take(&mut j.gone)).unwrap_or_default()
    }

    /// Data sets parked since the start (a count that only grows).
    pub fn parks_total(&self) -> u64 {
        self.decoder.stats.pending_sets
    }

    /// Flow rows (or relayed datagrams) buffered.
    pub fn flow_rows(&self) -> usize {
        self.builders.len() + self.relay.as_ref().map_or(0, |(r, _)| r.len())
    }

    /// A collector continuing with `decoder` (handed over by the source a
    /// reload replaced).
    pub fn with_decoder(
        decoder: Decoder,
        batch_size: usize,
        extras: &[ExtraField],
        events: Events,
        metrics: SourceMetrics,
        name: Arc<str>,
    ) -> Self {
        let mut c = Self::new(DecoderConfig::default(), batch_size, extras, events, metrics, name);
        c.decoder = decoder;
        c.decoder.track_owners();
        c.seen.stats = c.decoder.stats;
        c.seen.seq = c.decoder.sequence_stats();
        let st = c.decoder.state();
        (c.seen.templates_evicted, c.seen.domains_evicted, c.seen.refused) =
            (st.evicted.templates, st.evicted.domains, st.refused_domains);
        c
    }

    /// The decoder, for the source that replaces this one. The gauges this
    /// collector added to are taken back (its successor adds them again).
    pub fn into_decoder(mut self) -> Decoder {
        let m = &self.metrics;
        m.pending_sets.adjust(self.seen.pending.0 as u64, 0);
        m.pending_bytes.adjust(self.seen.pending.1 as u64, 0);
        m.state_bytes.adjust(self.seen.state.0 as u64, 0);
        m.state_domains.adjust(self.seen.state.1 as u64, 0);
        if let Some(sm) = &m.sflow {
            sm.streams.adjust(self.seen.sflow_streams as u64, 0);
        }
        self.seen.pending = (0, 0);
        self.seen.state = (0, 0);
        self.decoder
    }

    /// Decodes one message. Each part that cannot be decoded (the message,
    /// a set, a parked set that fails on release) counts as one record
    /// dropped as `malformed`, and each parked set pushed out by the parking
    /// budget as one record dropped as `evicted`: their record counts are
    /// unknown. Decoded records count when they are emitted.
    #[inline]
    pub fn ingest(&mut self, msg: &[u8], exporter: Addr, now_ns: i64) {
        self.ingest_as(msg, exporter, now_ns, false);
    }

    /// [`Collector::ingest`]; with `committed` (and a journal), the
    /// message's own records go to the journal side's discard builders.
    #[inline]
    fn ingest_as(&mut self, msg: &[u8], exporter: Addr, now_ns: i64, committed: bool) {
        self.metrics.packets.add(1);
        let before = self.decoder.stats;
        let sflow = crate::sflow::is_sflow(msg);
        let o = match (self.protocol, sflow) {
            (Protocol::Netflow | Protocol::Auto, false) => match &mut self.journal {
                Some(j) if committed => {
                    self.decoder.decode_committed(msg, exporter, now_ns, &mut self.builders, &mut j.discard)
                }
                _ => self.decoder.decode(msg, exporter, now_ns, &mut self.builders),
            },
            (Protocol::Sflow | Protocol::Auto, true) => {
                let (loss, counters) = (self.loss.is_some(), self.counters);
                let d = self.sflow.get_or_insert_with(|| {
                    new_sflow(crate::sflow::DecoderSettings::default(), loss, counters)
                });
                let o = match &mut self.journal {
                    Some(j) if committed => {
                        let mut o = d.decode(msg, now_ns, &mut j.discard);
                        o.records = 0;
                        o
                    }
                    _ => d.decode(msg, now_ns, &mut self.builders),
                };
                if let Some(records) = &mut self.loss {
                    for l in d.take_losses() {
                        records.push_sflow(l);
                    }
                }
                o
            }
            (Protocol::Netflow, true) => {
                let mut o = crate::decode::Outcome::default();
                o.fail(crate::decode::DecodeError::SflowOnNetflow);
                o
            }
            (Protocol::Sflow, false) => {
                let mut o = crate::decode::Outcome::default();
                let version = msg.get(..2).map_or(0, |v| u16::from_be_bytes([v[0], v[1]]));
                o.fail(crate::decode::DecodeError::NetflowOnSflow { version });
                o
            }
        };
        // sFlow rows name the agent in the datagram, and so do its counts.
        let who =
            if sflow { self.sflow.as_ref().and_then(|d| d.last_agent).unwrap_or(exporter) } else { exporter };
        let s = self.decoder.stats;
        let d = Delta {
            datagrams: 1,
            unknown: s.sampling_unknown - before.sampling_unknown,
            parked: s.pending_sets - before.pending_sets,
            templates: (s.templates + s.options_templates) - (before.templates + before.options_templates),
        };
        self.complete(now_ns, who, &o, d);
        self.account(o, exporter);
    }

    /// Per exporter: templates held and sets parked now.
    pub fn held_by_exporter(
        &self,
    ) -> (std::collections::HashMap<Addr, u32>, std::collections::HashMap<Addr, u32>) {
        self.decoder.held_by_exporter()
    }

    /// Per-exporter counts since the last call, for the shared exporter
    /// table (about once a second).
    pub fn take_live(
        &mut self,
    ) -> &mut std::collections::HashMap<Addr, spillway_core::exporters::ExporterStats> {
        &mut self.live
    }

    /// Produces completeness rows per `interval`.
    pub fn enable_completeness(&mut self, interval: std::time::Duration) {
        self.completeness = Some(crate::completeness::Completeness::new(interval));
    }

    /// Whether completeness rows are kept.
    pub fn has_completeness(&self) -> bool {
        self.completeness.is_some()
    }

    /// Completeness rows of the windows that have passed, as a batch.
    pub fn take_completeness(&mut self) -> Option<RecordBatch> {
        self.completeness.as_mut().and_then(|c| c.take())
    }

    /// Counts `n` records dropped for `reason` that belong to no exporter
    /// (kernel drops, datagrams refused at a stop, a capture's unreadable
    /// parts) in the completeness rows; the caller counts them in the ledger.
    pub fn unattributed(&mut self, reason: DropReason, n: u64, now_ns: i64) {
        if let (Some(c), true) = (&mut self.completeness, n > 0) {
            c.at(now_ns, None).drop(reason, n);
        }
    }

    /// Attributes one message's outcome to `who`: its live counts and, when
    /// read, its completeness row.
    fn complete(&mut self, now: i64, who: Addr, o: &crate::decode::Outcome, d: Delta) {
        let owners = self.decoder.take_gone_owners();
        let missing = o.loss.map_or(0, |l| l.missing);
        let sampling = if o.records > 0 { self.builders.last_sampling() } else { None };
        if let Some(l) = self.live_entry(who) {
            l.datagrams += d.datagrams;
            l.records += o.records;
            l.dropped += o.dropped;
            l.sequence_missing += missing;
            l.parked_sets += d.parked;
            l.templates += d.templates;
            l.sampling_unknown += d.unknown;
            l.last_seen_ms = now / 1_000_000;
            if let Some((rate, source)) = sampling {
                (l.sampling_rate, l.sampling_source) = (rate, Some(source.as_str()));
            }
        }
        for (e, tag) in &owners {
            if let Some(l) = self.live_entry(*e) {
                l.dropped += 1;
            }
            if let Some(j) = &mut self.journal {
                j.gone.push(*tag);
            }
        }
        let Some(c) = &mut self.completeness else { return };
        let row = c.at(now, Some(who));
        row.datagrams += d.datagrams;
        row.records += o.records;
        row.sampling_unknown += d.unknown;
        row.parked_sets += d.parked;
        row.sequence_missing += missing;
        row.drop(DropReason::Malformed, o.dropped);
        // Sets this message pushed out of the parking budget are their own
        // exporters' loss.
        for (e, _) in owners {
            c.at(now, Some(e)).drop(DropReason::Evicted, 1);
        }
    }

    /// The live counts of `who`; `None` when a flood filled the map since
    /// the last flush (the ledger and completeness rows still count it).
    fn live_entry(&mut self, who: Addr) -> Option<&mut spillway_core::exporters::ExporterStats> {
        if self.live.len() >= MAX_LIVE && !self.live.contains_key(&who) {
            return None;
        }
        Some(self.live.entry(who).or_default())
    }

    /// Decodes `protocol` from now on, sFlow with `cfg`.
    pub fn set_protocol(&mut self, protocol: Protocol, cfg: crate::sflow::DecoderSettings) {
        self.protocol = protocol;
        if protocol != Protocol::Netflow {
            self.sflow = Some(new_sflow(cfg, self.loss.is_some(), self.counters));
        }
    }

    /// Keeps sFlow counter samples for [`Collector::take_counters`].
    pub fn enable_counters(&mut self) {
        self.counters = true;
        if let Some(d) = &mut self.sflow {
            d.enable_counters();
        }
    }

    /// sFlow counter samples decoded since the last call, as a batch.
    pub fn take_counters(&mut self) -> Option<RecordBatch> {
        self.sflow.as_mut().and_then(|d| d.take_counters())
    }

    /// The sFlow decoder, when this collector has decoded sFlow.
    pub fn sflow(&self) -> Option<&crate::sflow::SflowDecoder> {
        self.sflow.as_deref()
    }

    /// Applies a fact another decoder learned (shared state): a template
    /// decodes what was parked for it into the batch being built. A fact of
    /// the warm set (`from_start`: what the store held when this source
    /// started) only fills in what the decoder does not hold: what it
    /// learned from the exporter since it started is at least as fresh.
    pub fn apply(&mut self, l: &crate::decode::Learned, from_start: bool) {
        if from_start && self.decoder.holds(l) {
            return;
        }
        let before = self.decoder.stats.sampling_unknown;
        let (kept, o) = self.decoder.apply(l, &mut self.builders);
        if !kept {
            self.decoder.stats.options_refused += 1;
        }
        let unknown = self.decoder.stats.sampling_unknown - before;
        self.complete(wall_ns(), l.key.exporter, &o, Delta { unknown, ..Delta::default() });
        self.account(o, l.key.exporter);
    }

    /// Records what the decoder learns, to share it.
    pub fn share(&mut self) {
        self.decoder.share();
    }

    /// What the decoder learned since the last call (shared state).
    pub fn take_learned(&mut self) -> std::vec::Drain<'_, crate::decode::Learned> {
        self.decoder.take_learned()
    }

    /// Parts of messages that could not be decoded since the last call
    /// (each counted as one dropped record).
    pub fn take_failed(&mut self) -> u64 {
        std::mem::take(&mut self.failed)
    }

    fn account(&mut self, o: crate::decode::Outcome, exporter: Addr) {
        self.failed += o.dropped;
        if let (Some(l), Some(records)) = (o.loss, &mut self.loss) {
            records.push(l);
        }
        if o.evicted > 0 {
            self.events.dropped(
                DropReason::Evicted,
                o.evicted,
                &"data sets waiting for their template were pushed out by templates.max_pending",
            );
        }
        if o.dropped > 0 {
            let exporter = std::net::IpAddr::from(exporter);
            match &o.error {
                Some(e) => self.events.dropped(
                    DropReason::Malformed,
                    o.dropped,
                    &format_args!("malformed {} data from {exporter}: {e}", self.protocol.describe()),
                ),
                None => self.events.dropped(
                    DropReason::Malformed,
                    o.dropped,
                    &format_args!("malformed {} data", self.protocol.describe()),
                ),
            }
        }
        if self.decoder.has_notices() {
            self.log_notices();
        }
    }

    fn log_notices(&mut self) {
        use crate::decode::NoticeKind;
        for n in self.decoder.take_notices() {
            let exporter = std::net::IpAddr::from(n.exporter);
            match n.kind {
                NoticeKind::TimeUnknown => tracing::warn!(
                    component = %self.name,
                    %exporter,
                    domain = n.domain,
                    "records use uptime-relative times but the exporter never sent systemInitTimeMilliseconds: \
                     flow_start and flow_end are null (time_received is set); further records are only counted"
                ),
                NoticeKind::SamplerUnknown { sampler } => tracing::warn!(
                    component = %self.name,
                    %exporter,
                    domain = n.domain,
                    sampler,
                    "records name a sampler the exporter has not described: sampling_source is unknown and \
                     sampling_rate null until its options arrive; further records are only counted"
                ),
            }
        }
    }

    /// Produces sequence gaps for the `loss` output.
    pub fn enable_loss(&mut self) {
        self.loss = Some(LossRecords::default());
        if let Some(d) = &mut self.sflow {
            d.enable_losses();
        }
    }

    /// Whether sequence gaps wait to be taken.
    pub fn has_loss(&self) -> bool {
        self.loss.as_ref().is_some_and(|l| !l.is_empty())
    }

    /// Sequence gaps found since the last call, as a batch.
    pub fn take_loss(&mut self) -> Option<RecordBatch> {
        self.loss.as_mut().and_then(|l| l.take())
    }

    /// Counts a message rejected by the allowlist.
    pub fn reject(&mut self, exporter: Addr) {
        self.reject_at(exporter, None);
    }

    /// Counts a message rejected by the allowlist, received at `now_ns`
    /// (for its completeness row; the wall clock when `None`).
    pub fn reject_at(&mut self, exporter: Addr, now_ns: Option<i64>) {
        let now = now_ns.unwrap_or_else(wall_ns);
        if let Some(l) = self.live_entry(exporter) {
            l.datagrams += 1;
            l.dropped += 1;
            l.last_seen_ms = now / 1_000_000;
        }
        if let Some(c) = &mut self.completeness {
            let row = c.at(now, Some(exporter));
            row.datagrams += 1;
            row.drop(DropReason::NotAllowed, 1);
        }
        self.metrics.packets.add(1);
        let ip = std::net::IpAddr::from(exporter);
        self.events.dropped(DropReason::NotAllowed, 1, &format_args!("exporter {ip} is not in `allow`"));
    }

    /// Expires parked data and mirrors the decoder's counters into the
    /// ledger and metrics. Call about once a second.
    pub fn housekeeping(&mut self, now_ns: i64) {
        let gone = self.decoder.expire(now_ns);
        let owners = self.decoder.take_gone_owners();
        for (e, tag) in &owners {
            if let Some(l) = self.live_entry(*e) {
                l.dropped += 1;
            }
            if let Some(j) = &mut self.journal {
                j.gone.push(*tag);
            }
        }
        if let Some(c) = &mut self.completeness {
            for (e, _) in owners {
                c.at(now_ns, Some(e)).drop(DropReason::TemplateTimeout, 1);
            }
            c.roll(now_ns);
        }
        // A parked set's record count is unknown: each counts as one.
        self.events.dropped(
            DropReason::TemplateTimeout,
            gone.expired,
            &"data sets dropped: their template never arrived within templates.timeout",
        );
        self.mirror();
    }

    /// Counts every set still waiting for a template as dropped
    /// (`template_missing`): at a stop, nothing will release them.
    pub fn abandon_parked(&mut self, now_ns: i64) {
        let parked = self.decoder.drain_parked();
        let sets = parked.len() as u64;
        for s in &parked {
            if let Some(l) = self.live_entry(s.header.exporter) {
                l.dropped += 1;
            }
        }
        if let Some(c) = &mut self.completeness {
            for s in &parked {
                c.at(now_ns, Some(s.header.exporter)).drop(DropReason::TemplateMissing, 1);
            }
        }
        self.events.dropped(
            DropReason::TemplateMissing,
            sets,
            &"data sets still waiting for their template when the source stopped",
        );
        self.mirror();
    }

    /// Mirrors the decoder's counters and sizes into metrics.
    fn mirror(&mut self) {
        let m = &self.metrics;
        let s = self.decoder.stats;
        let was = &self.seen.stats;
        m.sampling_unknown.add(s.sampling_unknown - was.sampling_unknown);
        m.time_unknown.add(s.time_unknown - was.time_unknown);
        m.options_refused.add(s.options_refused - was.options_refused);
        self.seen.stats = s;
        let st = self.decoder.state();
        m.templates_evicted.add(st.evicted.templates - self.seen.templates_evicted);
        m.domains_evicted.add(st.evicted.domains - self.seen.domains_evicted);
        m.domains_refused.add(st.refused_domains - self.seen.refused);
        (self.seen.templates_evicted, self.seen.domains_evicted, self.seen.refused) =
            (st.evicted.templates, st.evicted.domains, st.refused_domains);
        let q = self.decoder.sequence_stats();
        m.missing.add(q.missing - self.seen.seq.missing);
        m.reordered.add(q.reordered - self.seen.seq.reordered);
        m.resets.add(q.resets - self.seen.seq.resets);
        self.seen.seq = q;
        // Gauges are shared by the source's workers: each adds its change.
        let (sets, bytes) = self.decoder.pending();
        m.pending_sets.adjust(self.seen.pending.0 as u64, sets as u64);
        m.pending_bytes.adjust(self.seen.pending.1 as u64, bytes as u64);
        self.seen.pending = (sets, bytes);
        let state = (st.bytes(), st.len());
        m.state_bytes.adjust(self.seen.state.0 as u64, state.0 as u64);
        m.state_domains.adjust(self.seen.state.1 as u64, state.1 as u64);
        self.seen.state = state;
        if let (Some(d), Some(sm)) = (&self.sflow, &m.sflow) {
            let (s, was) = (d.stats, &self.seen.sflow);
            sm.flow_samples.add(s.flow_samples - was.flow_samples);
            sm.counter_samples.add(s.counter_samples - was.counter_samples);
            sm.skipped.add(s.samples_skipped + s.records_skipped - was.samples_skipped - was.records_skipped);
            sm.datagrams_missing.add(s.datagrams_missing - was.datagrams_missing);
            sm.agent_drops.add(s.agent_drops - was.agent_drops);
            sm.streams_evicted.add(s.streams_evicted - was.streams_evicted);
            self.seen.sflow = s;
            let (q, was) = (d.sequence_stats(), &self.seen.sflow_seq);
            sm.samples_missing.add(q.missing - was.missing);
            sm.reordered.add(q.reordered - was.reordered);
            sm.resets.add(q.resets - was.resets);
            self.seen.sflow_seq = q;
            sm.streams.adjust(self.seen.sflow_streams as u64, d.streams() as u64);
            self.seen.sflow_streams = d.streams();
        }
    }

    /// Closes the completeness window (at a stop: what it counted is
    /// emitted with the last batch).
    pub fn close_completeness(&mut self) {
        if let Some(c) = &mut self.completeness {
            c.close();
        }
    }

    /// Rows waiting in the builders.
    pub fn buffered(&self) -> usize {
        self.completeness.as_ref().map_or(0, |c| c.len())
            + self.builders.len()
            + self.relay.as_ref().map_or(0, |(r, _)| r.len())
            + self.sflow.as_ref().map_or(0, |d| d.counters_buffered())
            + self.loss.as_ref().map_or(0, |l| l.len())
    }

    /// Whether a full batch is ready (flows, or counter rows).
    pub fn is_full(&self) -> bool {
        self.builders.is_full()
            || self.sflow.as_ref().is_some_and(|d| d.counters_buffered() >= self.builders.capacity())
            || self.relay.as_ref().is_some_and(|(r, max)| r.len() >= *max)
    }

    /// Relays datagrams received on `collector:port` as records of the
    /// datagram schema from now on, in batches of `batch_size`, instead of
    /// decoding them.
    pub fn relay_to(&mut self, collector: Addr, port: u16, batch_size: usize) {
        self.relay = Some((crate::relay::Relay::new(collector, port), batch_size));
    }

    /// Whether this collector relays rather than decodes.
    pub fn relays(&self) -> bool {
        self.relay.is_some()
    }

    /// Takes one datagram from `exporter:port` in relay mode (else decodes it).
    pub fn relay(&mut self, msg: &[u8], exporter: Addr, port: u16, now_ns: i64) {
        match &mut self.relay {
            Some((r, _)) => {
                self.metrics.packets.add(1);
                r.push(now_ns, exporter, port, msg);
            }
            None => self.ingest(msg, exporter, now_ns),
        }
    }

    /// The buffered rows as a batch with their receive-time range.
    pub fn take(&mut self) -> Option<(RecordBatch, i64, i64)> {
        if let Some((r, _)) = &mut self.relay {
            return r.take();
        }
        if self.builders.is_empty() {
            return None;
        }
        let (lo, hi) = self.builders.received_range();
        Some((self.builders.finish(), lo, hi))
    }

    /// The decoder (for tests and final statistics).
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }
}

/// Exporters with live counts between two flushes of one collector.
const MAX_LIVE: usize = 1 << 16;

/// What one message changed besides its outcome.
#[derive(Debug, Default, Clone, Copy)]
struct Delta {
    datagrams: u64,
    unknown: u64,
    parked: u64,
    templates: u64,
}

/// Now, in ns since the epoch.
pub fn wall_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// An sFlow decoder keeping losses and counter rows when they are read.
fn new_sflow(
    cfg: crate::sflow::DecoderSettings,
    loss: bool,
    counters: bool,
) -> Box<crate::sflow::SflowDecoder> {
    let mut d = crate::sflow::SflowDecoder::new(cfg);
    if loss {
        d.enable_losses();
    }
    if counters {
        d.enable_counters();
    }
    Box::new(d)
}

/// Schema of the `loss` output: one record per sequence gap.
pub fn loss_schema() -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema};
    use spillway_core::schema::{address_type, timestamp_type};
    static SCHEMA: std::sync::OnceLock<arrow::datatypes::SchemaRef> = std::sync::OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("window_start", timestamp_type(), false),
                Field::new("window_end", timestamp_type(), false),
                Field::new("exporter", address_type(), false),
                Field::new("observation_domain", DataType::UInt32, false),
                Field::new("flow_version", DataType::UInt16, false),
                Field::new("expected_sequence", DataType::UInt32, false),
                Field::new("received_sequence", DataType::UInt32, false),
                Field::new("missing", DataType::UInt64, false),
                // What `missing` counts: records (v5, IPFIX), packets (v9);
                // for sFlow datagrams, flow_samples, counter_samples or
                // agent_drops (packets the agent could not sample).
                Field::new("unit", DataType::Utf8, false),
                // sFlow's data source (type << 24 | index) of a sample
                // stream; null otherwise.
                Field::new("source_id", DataType::UInt32, true),
            ]))
        })
        .clone()
}

/// One row of the `loss` output.
#[derive(Debug, Clone, Copy)]
struct LossRow {
    gap: crate::decode::Loss,
    unit: &'static str,
    source_id: Option<u32>,
}

/// Sequence gaps waiting to be emitted on the `loss` output.
#[derive(Default)]
pub struct LossRecords {
    rows: Vec<LossRow>,
}

impl LossRecords {
    /// Adds a NetFlow/IPFIX gap.
    pub fn push(&mut self, l: crate::decode::Loss) {
        let unit = if l.version == 9 { "packets" } else { "records" };
        self.rows.push(LossRow { gap: l, unit, source_id: None });
    }

    /// Adds what an sFlow datagram showed lost.
    pub fn push_sflow(&mut self, l: crate::sflow::SflowLoss) {
        let gap = crate::decode::Loss {
            exporter: l.agent,
            domain: l.sub_agent,
            version: crate::sflow::FLOW_VERSION,
            window_start: l.window_start,
            window_end: l.window_end,
            expected: l.expected,
            received: l.received,
            missing: l.missing,
        };
        self.rows.push(LossRow { gap, unit: l.kind.as_str(), source_id: l.source_id });
    }

    /// Number of gaps held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when no gap is held.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The gaps as a batch of the loss schema.
    pub fn take(&mut self) -> Option<RecordBatch> {
        use arrow::array::{
            ArrayRef, FixedSizeBinaryArray, StringArray, TimestampNanosecondArray, UInt16Array, UInt32Array,
            UInt64Array,
        };
        if self.rows.is_empty() {
            return None;
        }
        let all = std::mem::take(&mut self.rows);
        let rows: Vec<crate::decode::Loss> = all.iter().map(|r| r.gap).collect();
        let ts = |f: fn(&crate::decode::Loss) -> i64| -> ArrayRef {
            Arc::new(TimestampNanosecondArray::from_iter_values(rows.iter().map(f)).with_timezone("UTC"))
        };
        let columns: Vec<ArrayRef> = vec![
            ts(|l| l.window_start),
            ts(|l| l.window_end),
            Arc::new(
                FixedSizeBinaryArray::try_from_iter(rows.iter().map(|l| l.exporter))
                    .expect("16-byte addresses"),
            ),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|l| l.domain))),
            Arc::new(UInt16Array::from_iter_values(rows.iter().map(|l| l.version))),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|l| l.expected))),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|l| l.received))),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|l| l.missing))),
            Arc::new(StringArray::from_iter_values(all.iter().map(|r| r.unit))),
            Arc::new(UInt32Array::from_iter(all.iter().map(|r| r.source_id))),
        ];
        Some(RecordBatch::try_new(loss_schema(), columns).expect("columns match the loss schema"))
    }
}
