//! `pcap` source: replays a capture through the NetFlow and sFlow decoders
//! (each datagram is told apart by its first bytes).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use serde::Deserialize;
use spillway_core::ack::Acks;
use spillway_core::component::{ComponentError, Output, Source, SourceContext};
use spillway_core::config::HumanDuration;
use spillway_core::ledger::DropReason;
use spillway_core::registry::{BuildContext, BuildError, FieldIssue, SourceConfig};
use spillway_core::schema::Addr;
use spillway_core::{Batch, BatchMeta};

use crate::collector::{self, Collector, SamplingSettings, SourceMetrics, TemplateSettings};

/// How fast to replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Timing {
    /// As fast as the pipeline takes it.
    #[default]
    Fast,
    /// At the capture's own pace (scaled by `speed`).
    Recorded,
}

/// Config of the `pcap` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcapConfig {
    /// A pcap or pcapng capture of NetFlow/IPFIX or sFlow export traffic.
    pub path: PathBuf,
    /// `fast` (default) or `recorded`.
    #[serde(default)]
    pub timing: Timing,
    /// Speed-up of `recorded` timing (2.0 replays twice as fast).
    #[serde(default = "one")]
    pub speed: f64,
    /// Only datagrams sent to these UDP ports; every UDP datagram when empty.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Only datagrams from exporters in these prefixes; all when empty.
    #[serde(default)]
    pub allow: Vec<collector::Prefix>,
    /// Rows per batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: spillway_core::config::BatchSize,
    /// Template state bounds and timeout.
    #[serde(default)]
    pub templates: TemplateSettings,
    /// Sampling rates from the config.
    #[serde(default)]
    pub sampling: SamplingSettings,
    /// More IPFIX Information Elements as columns, by IANA name
    /// (`flowEndReason`, `postNATSourceIPv4Address`, …), named in snake case.
    #[serde(default)]
    pub extra_fields: Vec<String>,
    /// Interval of the `completeness` output's rows (by capture time).
    #[serde(default = "crate::collector::default_completeness_interval")]
    pub completeness_interval: HumanDuration,
}

fn one() -> f64 {
    1.0
}
fn default_batch_size() -> spillway_core::config::BatchSize {
    spillway_core::config::BatchSize::new(8192)
}

impl SourceConfig for PcapConfig {
    fn validate(&self) -> Vec<FieldIssue> {
        let mut v = collector::validate(&self.templates, &self.extra_fields);
        if !(self.speed > 0.0 && self.speed.is_finite()) {
            v.push(FieldIssue::new("speed", "must be a positive number"));
        }
        v.extend(spillway_core::config::paths::input_file("path", &self.path));
        v
    }

    fn output_schema(&self) -> SchemaRef {
        collector::output_schema(&self.extra_fields)
    }

    fn named_outputs(&self) -> Vec<(&'static str, SchemaRef)> {
        collector::sflow_named_outputs()
    }

    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, BuildError> {
        let allow = collector::allowlist(&self.allow);
        // The admin endpoint's exporter table reads what the replay saw.
        let seen = Arc::new(spillway_core::exporters::SeenExporters::default());
        cx.publish(seen.clone());
        Ok(Box::new(Pcap { cfg: self.clone(), path: cx.resolve(&self.path), allow, seen }))
    }
}

spillway_core::register_source! {
    config: PcapConfig,
    name: "pcap",
    description: "Replays NetFlow/IPFIX and sFlow export traffic from a pcap or pcapng capture; ends with the file.",
    example: "type: pcap\npath: ./export.pcap\ntiming: fast\n",
}

struct Pcap {
    cfg: PcapConfig,
    path: PathBuf,
    allow: Vec<ipnet::IpNet>,
    seen: Arc<spillway_core::exporters::SeenExporters>,
}

#[async_trait]
impl Source for Pcap {
    async fn run(self: Box<Self>, cx: SourceContext) -> Result<(), ComponentError> {
        let SourceContext { name, mut out, mut named, shutdown, events, metrics, .. } = cx;
        let mut loss_out = named.take("loss");
        let mut counters_out = named.take("counters");
        let path = self.path.clone();
        let (datagrams, skipped) = tokio::task::spawn_blocking(move || crate::capture::read_file(&path))
            .await
            .map_err(|e| ComponentError::new(e.to_string()))?
            .map_err(ComponentError::new)?;
        tracing::info!(
            component = %name,
            file = %self.path.display(),
            datagrams = datagrams.len(),
            not_udp = skipped.not_udp,
            "replaying capture"
        );
        let first_ts = datagrams.first().map_or(0, |d| d.time_ns);
        if skipped.lost() > 0 {
            // Each damaged record may have held a datagram of unknown size:
            // one record each, like any undecodable message.
            events.dropped(
                DropReason::Malformed,
                skipped.lost(),
                &format_args!(
                    "parts of the capture {} could not be read ({} fragments, {} truncated, {} damaged); the rest is \
                     replayed",
                    self.path.display(),
                    skipped.fragments,
                    skipped.truncated,
                    skipped.damaged
                ),
            );
        }
        let extras = crate::iana::resolve_all(&self.cfg.extra_fields).map_err(ComponentError::new)?;
        let cfg = collector::decoder_config(&self.cfg.templates, &self.cfg.sampling, &extras, 1);
        let cfg_sampling = cfg.sampling.clone();
        let mut c = Collector::new(
            cfg,
            self.cfg.batch_size.get(),
            &extras,
            events,
            SourceMetrics::new(&metrics).with_sflow(&metrics),
            name.clone(),
        );
        if loss_out.is_some() {
            c.enable_loss();
        }
        if counters_out.is_some() {
            c.enable_counters();
        }
        let mut completeness_out = named.take("completeness");
        if completeness_out.is_some() {
            c.enable_completeness(self.cfg.completeness_interval.get());
            // The capture's unreadable parts belong to no exporter.
            c.unattributed(DropReason::Malformed, skipped.lost(), first_ts);
        }
        let sflow = crate::sflow::DecoderSettings { sampling: cfg_sampling, ..Default::default() };
        c.set_protocol(collector::Protocol::Auto, sflow);
        let mut last_house = first_ts;
        let mut latest = first_ts;
        let started = tokio::time::Instant::now();
        // Progress on a terminal only (`spillway run` in a shell); nothing
        // when stderr is piped or redirected.
        let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            let b = indicatif::ProgressBar::new(datagrams.len() as u64);
            let style = "{spinner} replaying {msg} [{bar:40}] {human_pos}/{human_len} datagrams ({per_sec}, {eta} left)";
            if let Ok(s) = indicatif::ProgressStyle::with_template(style) {
                b.set_style(s.progress_chars("=> "));
            }
            b.set_message(
                self.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
            );
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        for (i, d) in datagrams.iter().enumerate() {
            if i % 256 == 0 {
                bar.set_position(i as u64);
            }
            if shutdown.is_cancelled() {
                break;
            }
            if !self.cfg.ports.is_empty() && !self.cfg.ports.contains(&d.dst_port) {
                continue;
            }
            if self.cfg.timing == Timing::Recorded {
                let offset = (d.time_ns - first_ts).max(0) as f64 / self.cfg.speed;
                let due = started + Duration::from_nanos(offset as u64);
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
            if !self.allow.is_empty() && !self.allow.iter().any(|n| n.contains(&d.src)) {
                c.reject_at(Addr::from(d.src), Some(d.time_ns));
                continue;
            }
            // The capture's timestamp is the receive time: replays are
            // deterministic and keep the original timeline, and parked data
            // expires on it.
            latest = latest.max(d.time_ns);
            if latest >= last_house.saturating_add(1_000_000_000) {
                c.housekeeping(latest);
                self.seen.update(c.take_live());
                let (templates, parked) = c.held_by_exporter();
                self.seen.set_held(0, &templates, &parked);
                last_house = latest;
            }
            c.ingest(&d.payload, Addr::from(d.src), d.time_ns);
            if c.is_full() {
                send(&mut c, &mut out, &mut loss_out, &mut counters_out, &mut completeness_out, &name)
                    .await?;
            }
        }
        // Nothing will ever release data still waiting for a template: it
        // is counted (`template_missing`), never silently forgotten.
        c.housekeeping(latest);
        bar.finish_and_clear();
        c.abandon_parked(latest);
        self.seen.update(c.take_live());
        c.close_completeness();
        send(&mut c, &mut out, &mut loss_out, &mut counters_out, &mut completeness_out, &name).await?;
        let s = c.decoder().stats;
        tracing::info!(component = %name, templates = s.templates, options_templates = s.options_templates, parked_then_decoded = s.pending_decoded, expired_sets = s.pending_expired, evicted_sets = s.pending_evicted, "capture replayed");
        Ok(())
    }
}

async fn send(
    c: &mut Collector,
    out: &mut Output,
    loss_out: &mut Option<Output>,
    counters_out: &mut Option<Output>,
    completeness_out: &mut Option<Output>,
    name: &Arc<str>,
) -> Result<(), ComponentError> {
    let failed = |_| ComponentError::new("every downstream component has failed");
    if let Some((data, lo, hi)) = c.take() {
        out.send(Batch::new(data, BatchMeta::new(name.clone(), lo, hi), Acks::none()))
            .await
            .map_err(failed)?;
    }
    if let (Some(o), Some(data)) = (completeness_out.as_mut(), c.take_completeness()) {
        o.send(Batch::new(data, BatchMeta::new(name.clone(), 0, 0), Acks::none())).await.map_err(failed)?;
    }
    if let (Some(o), Some(data)) = (counters_out.as_mut(), c.take_counters()) {
        o.send(Batch::new(data, BatchMeta::new(name.clone(), 0, 0), Acks::none())).await.map_err(failed)?;
    }
    if let (Some(o), Some(data)) = (loss_out.as_mut(), c.take_loss()) {
        o.send(Batch::new(data, BatchMeta::new(name.clone(), 0, 0), Acks::none())).await.map_err(failed)?;
    }
    Ok(())
}
