//! `netflow_decode` transform: the relay tier's decoder. Its input is the
//! datagram schema (what a `netflow` source with `relay: true` emits, sent
//! through Kafka with `encoding: datagram`); it decodes every datagram with
//! exactly the decoder, template bounds, sampling rules, sequence
//! accounting and shared state of the `netflow` source, so the rest of the
//! pipeline cannot tell the difference.
//!
//! Accounting: each datagram is `merged` into what it decodes to, which is
//! `created`: its flow records, plus one unit per part that could not be
//! decoded (dropped, with its reason) and per data set parked for its
//! template (in flight until its template comes, when it is merged into its
//! records, or until it times out or is evicted, dropped). So the ledger
//! balances record for record, parked data included.
//!
//! Decoded records carry the acknowledgement of the batch they came from:
//! behind the `kafka` source an offset is committed only once the records
//! decoded from it are delivered, so a decoder killed with -9 loses nothing
//! (records decoded but not yet delivered are decoded again: at least once).
//! Data parked for a template is held in memory and is the exception.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{SchemaRef, TimestampNanosecondType};
use serde::Deserialize;
use spillway_core::addr::Addr;
use spillway_core::component::{Emitter, Transform, TransformError};
use spillway_core::ledger::DropReason;
use spillway_core::metrics::Metrics;
use spillway_core::registry::{BuildContext, BuildError, FieldIssue, TransformConfig};
use spillway_core::{Batch, BatchMeta};

use crate::collector::{self, Collector, SamplingSettings, SourceMetrics, TemplateSettings};
use crate::decode::DecodeStats;

/// `netflow_decode` transform config: the decoding settings of the
/// `netflow` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetflowDecodeConfig {
    /// Template state bounds and timeout.
    #[serde(default)]
    pub templates: TemplateSettings,
    /// Sampling rates from the config.
    #[serde(default)]
    pub sampling: SamplingSettings,
    /// More IPFIX Information Elements as columns, by IANA name.
    #[serde(default)]
    pub extra_fields: Vec<String>,
    /// Template and sampling state shared with other decoders and
    /// collectors (docs/deploy.md).
    #[serde(default)]
    pub shared_state: Option<crate::shared_state::SharedStateConfig>,
}

impl TransformConfig for NetflowDecodeConfig {
    fn validate(&self) -> Vec<FieldIssue> {
        let mut v = collector::validate(&self.templates, &self.extra_fields);
        if let Some(s) = &self.shared_state {
            v.extend(s.issues());
        }
        v
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<FieldIssue>> {
        if !spillway_schema::datagram::is_datagram_schema(input) {
            return Err(vec![FieldIssue::new(
                "inputs",
                "netflow_decode reads datagrams: a `netflow` source with `relay: true`, or a `kafka` source with \
                 `encoding: datagram`",
            )]);
        }
        Ok(collector::output_schema(&self.extra_fields))
    }

    fn output_names(&self) -> Vec<&'static str> {
        vec!["loss"]
    }

    fn named_output_schema(&self, _name: &str, _input: &SchemaRef) -> SchemaRef {
        collector::loss_schema()
    }

    fn build(&self, cx: &BuildContext, _input: &SchemaRef) -> Result<Box<dyn Transform>, BuildError> {
        crate::iana::resolve_all(&self.extra_fields).map_err(BuildError)?;
        Ok(Box::new(NetflowDecode {
            cfg: self.clone(),
            name: cx.name.as_str().into(),
            metrics: cx.metrics.clone(),
            running: None,
        }))
    }
}

spillway_core::register_transform! {
    config: NetflowDecodeConfig,
    name: "netflow_decode",
    description: "Decodes relayed NetFlow/IPFIX datagrams (the relay tier) exactly as the netflow source would.",
    example: "type: netflow_decode\ninputs: [raw]\nshared_state: { type: file, path: ./netflow-state }\n",
}

struct NetflowDecode {
    cfg: NetflowDecodeConfig,
    name: Arc<str>,
    metrics: Metrics,
    /// Made at the first batch (it needs the emitter's events; the shared
    /// state is read then, not at build).
    running: Option<Running>,
}

struct Running {
    collector: Collector,
    /// The worker's end first: it is dropped before the store, whose drop
    /// waits for every worker's end to be gone.
    share: Option<(crate::shared_state::WorkerShare, crate::shared_state::SharedState)>,
    /// The decoder's counters at the last accounting.
    stats: DecodeStats,
}

impl NetflowDecode {
    fn running(&mut self, out: &Emitter) -> Result<&mut Running, TransformError> {
        if self.running.is_none() {
            let fail = |m: String| TransformError { reason: DropReason::ComponentFailed, message: m };
            let extras = crate::iana::resolve_all(&self.cfg.extra_fields).map_err(fail)?;
            let cfg = collector::decoder_config(&self.cfg.templates, &self.cfg.sampling, &extras, 1);
            // Relayed sFlow decodes here too (told apart by its first bytes).
            let sflow =
                crate::sflow::DecoderSettings { sampling: cfg.sampling.clone(), ..Default::default() };
            let mut collector = Collector::new(
                cfg,
                // Room preallocated per output batch (it grows past this when
                // an input batch decodes to more).
                8192,
                &extras,
                out.events().clone(),
                SourceMetrics::new(&self.metrics).with_sflow(&self.metrics),
                self.name.clone(),
            );
            collector.enable_loss();
            collector.set_protocol(collector::Protocol::Auto, sflow);
            let share = match &self.cfg.shared_state {
                Some(s) => {
                    let (store, mut shares, _) = crate::shared_state::start(s, &self.name, &self.metrics, 1)
                        .map_err(|e| fail(format!("shared state: {e}")))?;
                    collector.share();
                    // Its input waits in Kafka meanwhile: nothing to receive.
                    let share = shares.remove(0);
                    for l in share.until_warm() {
                        collector.apply(&l, true);
                    }
                    Some((share, store))
                }
                None => None,
            };
            let stats = collector.decoder().stats;
            self.running = Some(Running { collector, share, stats });
        }
        Ok(self.running.as_mut().expect("made above"))
    }
}

impl Running {
    /// Counts what the decoder did since the last call (see the module
    /// docs): `datagrams` merged, and the records, failed parts and parked
    /// sets they became created.
    fn account(&mut self, datagrams: u64, records: u64, out: &Emitter) {
        let s = self.collector.decoder().stats;
        let parked = s.pending_sets - self.stats.pending_sets;
        let released = s.pending_decoded - self.stats.pending_decoded;
        let failed = self.collector.take_failed();
        self.stats = s;
        out.merged(datagrams + released);
        out.created(records + failed + parked);
    }

    /// Pushes what was decoded, with the acknowledgement of `like`.
    fn emit(&mut self, like: &Batch, out: &mut Emitter) {
        if let Some((b, _, _)) = self.collector.take() {
            out.push(like.with_data(b));
        }
        if let Some(l) = self.collector.take_loss() {
            out.push_to(
                "loss",
                Batch::new(l, BatchMeta::new(like.meta.stream.clone(), 0, 0), like.acks.clone()),
            );
        }
    }

    /// Pushes what was decoded outside any input batch (data released by a
    /// template from the shared state), with no acknowledgement to carry.
    fn emit_unacked(&mut self, name: &Arc<str>, out: &mut Emitter) {
        if self.collector.buffered() > 0 || self.collector.has_loss() {
            let like = Batch::new(
                RecordBatch::new_empty(collector::output_schema(&[])),
                BatchMeta::new(name.clone(), 0, 0),
                spillway_core::ack::Acks::none(),
            );
            self.emit(&like, out);
        }
    }

    fn exchange(&mut self, out: &Emitter) {
        let Some((s, _)) = &self.share else { return };
        s.publish(self.collector.take_learned());
        let before = self.collector.buffered() as u64;
        for (l, from_start) in s.received() {
            self.collector.apply(&l, from_start);
        }
        let records = self.collector.buffered() as u64 - before;
        self.account(0, records, out);
    }
}

impl Transform for NetflowDecode {
    fn process(&mut self, batch: Batch, out: &mut Emitter) -> Result<(), TransformError> {
        let r = self.running(out)?;
        r.exchange(out);
        let d = &batch.data;
        let bad = |what: &str| TransformError {
            reason: DropReason::Malformed,
            message: format!("netflow_decode: the input's `{what}` column is not the datagram schema's"),
        };
        use spillway_schema::datagram::{EXPORTER, PAYLOAD, TIME_RECEIVED};
        let time = d.column_by_name(TIME_RECEIVED).ok_or_else(|| bad(TIME_RECEIVED))?;
        let time = time.as_primitive_opt::<TimestampNanosecondType>().ok_or_else(|| bad(TIME_RECEIVED))?;
        let exporter = d.column_by_name(EXPORTER).ok_or_else(|| bad(EXPORTER))?;
        let exporter = exporter.as_fixed_size_binary_opt().ok_or_else(|| bad(EXPORTER))?;
        let payload = d.column_by_name(PAYLOAD).ok_or_else(|| bad(PAYLOAD))?;
        let payload = payload.as_binary_opt::<i32>().ok_or_else(|| bad(PAYLOAD))?;
        let before = r.collector.buffered() as u64;
        let mut n = 0u64;
        for row in 0..d.num_rows() {
            if payload.is_null(row) || exporter.is_null(row) {
                out.dropped(DropReason::Malformed, 1, &"a datagram record without payload or exporter");
                continue;
            }
            let Some(addr) = Addr::from_slice(exporter.value(row)) else {
                out.dropped(DropReason::Malformed, 1, &"a datagram record whose exporter is not 16 bytes");
                continue;
            };
            r.collector.ingest(payload.value(row), addr, time.value(row));
            n += 1;
        }
        let records = r.collector.buffered() as u64 - before;
        r.account(n, records, out);
        r.exchange(out);
        r.emit(&batch, out);
        Ok(())
    }

    fn tick(&mut self, out: &mut Emitter) {
        let Some(r) = self.running.as_mut() else { return };
        r.exchange(out);
        r.collector.housekeeping(now_ns());
        r.account(0, 0, out);
        r.emit_unacked(&self.name, out);
    }

    fn tick_interval(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(1))
    }

    fn finish(&mut self, out: &mut Emitter) {
        let Some(r) = self.running.as_mut() else { return };
        r.exchange(out);
        r.collector.abandon_parked(crate::collector::wall_ns());
        r.account(0, 0, out);
        r.emit_unacked(&self.name, out);
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}
