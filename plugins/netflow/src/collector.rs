//! What both NetFlow sources share: decoder settings, and a collector that
//! feeds messages to the decoder and keeps the ledger and metrics honest.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use serde::Deserialize;
use spillway_core::config::{ByteSize, HumanDuration};
use spillway_core::ledger::{ComponentLedger, DropReason};
use spillway_core::metrics::{self, Counter, Gauge};
use spillway_core::registry::FieldIssue;

use crate::decode::{Decoder, DecoderConfig, SamplingConfig};
use crate::iana::ExtraField;
use crate::row::FlowBuilders;
use crate::template::StoreLimits;

/// Template state settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSettings {
    /// How long data waits for its template before it is dropped (counted
    /// as `template_timeout`).
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Most bytes of data held waiting for templates.
    #[serde(default = "default_max_pending")]
    pub max_pending: ByteSize,
    /// Most (exporter, observation domain) pairs with templates; the least
    /// recently used is evicted beyond this (source addresses can be spoofed).
    #[serde(default = "default_max_exporters")]
    pub max_exporters: usize,
    /// Most templates per (exporter, observation domain).
    #[serde(default = "default_max_per_exporter")]
    pub max_per_exporter: usize,
}

impl Default for TemplateSettings {
    fn default() -> Self {
        Self {
            timeout: default_timeout(),
            max_pending: default_max_pending(),
            max_exporters: default_max_exporters(),
            max_per_exporter: default_max_per_exporter(),
        }
    }
}

fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(600)
}
fn default_max_pending() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_max_exporters() -> usize {
    100_000
}
fn default_max_per_exporter() -> usize {
    1024
}

/// Sampling rates from the config, by exporter prefix.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingSettings {
    /// Rate for exporters that export none (`sampling_source: default`).
    #[serde(default)]
    pub defaults: BTreeMap<String, u32>,
    /// Rate that wins over whatever the exporter says (`override`).
    #[serde(default)]
    pub overrides: BTreeMap<String, u32>,
}

/// Parses a prefix (`10.0.0.0/8`) or a single address (`192.0.2.1`).
pub fn parse_prefix(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{s}` is not an address or prefix such as `10.0.0.0/8`"))
}

impl SamplingSettings {
    fn issues(&self) -> Vec<FieldIssue> {
        let mut v = Vec::new();
        for (field, map) in [("sampling.defaults", &self.defaults), ("sampling.overrides", &self.overrides)] {
            for (k, rate) in map {
                if let Err(e) = parse_prefix(k) {
                    v.push(FieldIssue::new(field, e));
                }
                if *rate == 0 {
                    v.push(FieldIssue::new(field, format!("rate for `{k}` must be at least 1")));
                }
            }
        }
        v
    }

    fn to_config(&self) -> SamplingConfig {
        let conv = |m: &BTreeMap<String, u32>| {
            m.iter().filter_map(|(k, r)| Some((parse_prefix(k).ok()?, *r))).collect()
        };
        SamplingConfig { defaults: conv(&self.defaults), overrides: conv(&self.overrides) }
    }
}

/// Checks what both NetFlow sources share: template and sampling settings,
/// extra fields, batch size and the allowlist.
pub fn validate(
    t: &TemplateSettings,
    s: &SamplingSettings,
    extra_fields: &[String],
    batch_size: usize,
    allow: &[String],
) -> Vec<FieldIssue> {
    let mut v = s.issues();
    if let Err(e) = crate::iana::resolve_all(extra_fields) {
        v.push(FieldIssue::new("extra_fields", e));
    }
    if batch_size == 0 || batch_size > 1 << 20 {
        v.push(FieldIssue::new("batch_size", "must be between 1 and 1048576"));
    }
    for a in allow {
        if let Err(e) = parse_prefix(a) {
            v.push(FieldIssue::new("allow", e));
        }
    }
    if t.max_exporters == 0 {
        v.push(FieldIssue::new("templates.max_exporters", "must be at least 1"));
    }
    if t.max_per_exporter == 0 {
        v.push(FieldIssue::new("templates.max_per_exporter", "must be at least 1"));
    }
    v
}

/// The allowlist as prefixes (validated before, so errors are build errors).
pub fn parse_allow(allow: &[String]) -> Result<Vec<ipnet::IpNet>, spillway_core::registry::BuildError> {
    allow
        .iter()
        .map(|a| parse_prefix(a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(spillway_core::registry::BuildError)
}

/// The flow schema plus the configured extra columns.
pub fn output_schema(extra_fields: &[String]) -> arrow::datatypes::SchemaRef {
    crate::row::schema_with(&crate::iana::resolve_all(extra_fields).unwrap_or_default())
}

/// The named outputs of both NetFlow sources.
pub fn named_outputs() -> Vec<(&'static str, arrow::datatypes::SchemaRef)> {
    vec![("loss", loss_schema())]
}

/// The decoder config for these settings.
pub fn decoder_config(t: &TemplateSettings, s: &SamplingSettings, extras: &[ExtraField]) -> DecoderConfig {
    DecoderConfig {
        extra_ids: extras.iter().map(|e| e.id).collect(),
        limits: StoreLimits {
            max_exporters: t.max_exporters,
            max_templates_per_exporter: t.max_per_exporter,
        },
        template_timeout_ns: t.timeout.get().as_nanos().min(i64::MAX as u128) as i64,
        max_pending_bytes: t.max_pending.get() as usize,
        sampling: s.to_config(),
    }
}

/// Metric handles of one source (shared by its workers).
#[derive(Clone)]
pub struct SourceMetrics {
    pub packets: Counter,
    pub malformed: Counter,
    pub not_allowed: Counter,
    pub templates_evicted: Counter,
    pub missing: Counter,
    pub reordered: Counter,
    pub resets: Counter,
    pub pending_sets: Gauge,
    pub pending_bytes: Gauge,
    pub expired_sets: Counter,
}

impl SourceMetrics {
    /// Registers the handles for component `name`.
    pub fn new(name: &str) -> Self {
        let l = [("component", name)];
        Self {
            packets: metrics::counter(
                "spillway_netflow_packets_total",
                "NetFlow/IPFIX messages received.",
                &l,
            ),
            malformed: metrics::counter(
                "spillway_netflow_malformed_packets_total",
                "Messages (or their rest) that could not be decoded.",
                &l,
            ),
            not_allowed: metrics::counter(
                "spillway_netflow_not_allowed_packets_total",
                "Messages from exporters outside the allowlist.",
                &l,
            ),
            templates_evicted: metrics::counter(
                "spillway_netflow_templates_evicted_total",
                "Templates evicted to respect the template store's bounds.",
                &l,
            ),
            missing: metrics::counter(
                "spillway_netflow_sequence_missing_total",
                "Records (packets for v9) missing according to sequence numbers.",
                &l,
            ),
            reordered: metrics::counter(
                "spillway_netflow_sequence_reordered_total",
                "Messages that arrived late or twice.",
                &l,
            ),
            resets: metrics::counter(
                "spillway_netflow_sequence_resets_total",
                "Sequence restarts (exporter reboots).",
                &l,
            ),
            pending_sets: metrics::gauge(
                "spillway_netflow_pending_sets",
                "Data sets waiting for their template.",
                &l,
            ),
            pending_bytes: metrics::gauge(
                "spillway_netflow_pending_bytes",
                "Bytes of data sets waiting for their template.",
                &l,
            ),
            expired_sets: metrics::counter(
                "spillway_netflow_template_timeout_sets_total",
                "Data sets dropped because their template never came.",
                &l,
            ),
        }
    }
}

/// Decoder, builders, and the accounting around them. One per worker.
pub struct Collector {
    decoder: Decoder,
    builders: FlowBuilders,
    /// Sequence gaps for the `loss` output, with that output's ledger entry;
    /// `None` when nobody reads it.
    loss: Option<(LossRecords, Arc<ComponentLedger>)>,
    ledger: Arc<ComponentLedger>,
    metrics: SourceMetrics,
    seen: Seen,
    warned: u32,
    name: Arc<str>,
}

#[derive(Default)]
struct Seen {
    expired: u64,
    evicted: u64,
    missing: u64,
    reordered: u64,
    resets: u64,
}

impl Collector {
    /// A collector emitting batches of `batch_size` rows, with `extras`
    /// columns after the flow schema's.
    pub fn new(
        cfg: DecoderConfig,
        batch_size: usize,
        extras: &[ExtraField],
        ledger: Arc<ComponentLedger>,
        metrics: SourceMetrics,
        name: Arc<str>,
    ) -> Self {
        Self {
            decoder: Decoder::new(cfg),
            builders: FlowBuilders::with_extras(batch_size, extras),
            loss: None,
            ledger,
            metrics,
            seen: Seen::default(),
            warned: 0,
            name,
        }
    }

    /// Decodes one message. Records count as received; a message that
    /// cannot be decoded (or its undecodable rest) counts as one record
    /// received and dropped as `malformed`, since its record count is unknown.
    #[inline]
    pub fn ingest(&mut self, msg: &[u8], exporter: [u8; 16], now_ns: i64) {
        self.metrics.packets.add(1);
        let o = self.decoder.decode(msg, exporter, now_ns, &mut self.builders);
        self.ledger.received(o.records);
        if let (Some(l), Some((records, ledger))) = (o.loss, &mut self.loss) {
            records.push(l);
            ledger.received(1);
        }
        if let Some(e) = o.error {
            self.ledger.received(1);
            self.ledger.dropped(DropReason::Malformed, 1);
            self.metrics.malformed.add(1);
            if self.warned < 10 {
                self.warned += 1;
                tracing::warn!(
                    component = %self.name,
                    exporter = %spillway_core::schema::addr_from_bytes(exporter),
                    error = %e,
                    "malformed NetFlow message dropped (further ones are only counted)"
                );
            }
        }
    }

    /// Produces sequence gaps for the `loss` output, counted in its ledger
    /// entry.
    pub fn enable_loss(&mut self, ledger: Arc<ComponentLedger>) {
        self.loss = Some((LossRecords::default(), ledger));
    }

    /// Sequence gaps found since the last call, as a batch.
    pub fn take_loss(&mut self) -> Option<RecordBatch> {
        self.loss.as_mut().and_then(|(l, _)| l.take())
    }

    /// Counts a message rejected by the allowlist.
    pub fn reject(&mut self) {
        self.metrics.packets.add(1);
        self.metrics.not_allowed.add(1);
        self.ledger.received(1);
        self.ledger.dropped(DropReason::NotAllowed, 1);
    }

    /// Expires parked data and mirrors the decoder's counters into the
    /// ledger and metrics. Call about once a second.
    pub fn housekeeping(&mut self, now_ns: i64) {
        self.decoder.expire(now_ns);
        let s = self.decoder.stats;
        let expired = s.pending_expired - self.seen.expired;
        if expired > 0 {
            // A parked set's record count is unknown: each counts as one.
            self.ledger.received(expired);
            self.ledger.dropped(DropReason::TemplateTimeout, expired);
            self.metrics.expired_sets.add(expired);
            tracing::warn!(component = %self.name, sets = expired, "data sets dropped: their template never arrived");
        }
        self.seen.expired = s.pending_expired;
        let ev = self.decoder.templates_evicted();
        self.metrics.templates_evicted.add(ev - self.seen.evicted);
        self.seen.evicted = ev;
        let q = self.decoder.sequences.stats;
        self.metrics.missing.add(q.missing - self.seen.missing);
        self.metrics.reordered.add(q.reordered - self.seen.reordered);
        self.metrics.resets.add(q.resets - self.seen.resets);
        (self.seen.missing, self.seen.reordered, self.seen.resets) = (q.missing, q.reordered, q.resets);
        let (sets, bytes) = self.decoder.pending();
        self.metrics.pending_sets.set(sets as u64);
        self.metrics.pending_bytes.set(bytes as u64);
    }

    /// Rows waiting in the builders.
    pub fn buffered(&self) -> usize {
        self.builders.len()
    }

    /// Whether a full batch is ready.
    pub fn is_full(&self) -> bool {
        self.builders.is_full()
    }

    /// The buffered rows as a batch with their receive-time range.
    pub fn take(&mut self) -> Option<(RecordBatch, i64, i64)> {
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
            ]))
        })
        .clone()
}

/// Sequence gaps waiting to be emitted on the `loss` output.
#[derive(Default)]
pub struct LossRecords {
    rows: Vec<crate::decode::Loss>,
}

impl LossRecords {
    /// Adds a gap.
    pub fn push(&mut self, l: crate::decode::Loss) {
        self.rows.push(l);
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
            ArrayRef, FixedSizeBinaryArray, TimestampNanosecondArray, UInt16Array, UInt32Array, UInt64Array,
        };
        if self.rows.is_empty() {
            return None;
        }
        let rows = std::mem::take(&mut self.rows);
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
        ];
        Some(RecordBatch::try_new(loss_schema(), columns).expect("columns match the loss schema"))
    }
}
