//! `demo` source: synthetic flow records, deterministic for a seed.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, FixedSizeBinaryBuilder, RecordBatch, StringBuilder, TimestampNanosecondBuilder, UInt8Builder,
    UInt16Builder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use serde::Deserialize;
use spillway_core::ack::{AckStatus, AckTracker, Acks};
use spillway_core::component::{ComponentError, Source, SourceContext};
use spillway_core::config::HumanDuration;
use spillway_core::registry::{BuildContext, BuildError, FieldIssue, SourceConfig};
use spillway_core::schema::{Addr, flow_schema};
use spillway_core::{Batch, BatchMeta};

/// Config of the `demo` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    /// Records to generate before the source ends; endless when absent.
    #[serde(default)]
    pub count: Option<u64>,
    /// Records per second; as fast as downstream allows when absent.
    #[serde(default)]
    pub rate: Option<u64>,
    /// Records per batch (at most; paced sources send smaller batches).
    #[serde(default = "default_batch_size")]
    pub batch_size: spillway_core::config::BatchSize,
    /// Seed of the generator: the same seed gives the same records.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Number of distinct exporters (10.0.0.1, 10.0.0.2, …).
    #[serde(default = "default_exporters")]
    pub exporters: u32,
    /// Event time of the first record (RFC 3339); the wall clock at start
    /// when absent.
    #[serde(default)]
    pub start_time: Option<String>,
    /// Event time between consecutive records.
    #[serde(default = "default_time_step")]
    pub time_step: HumanDuration,
    /// Columns of the flow schema to emit; all of them when absent.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Wait this long before the first record (to order sources in a trial).
    #[serde(default)]
    pub start_delay: Option<HumanDuration>,
}

fn default_batch_size() -> spillway_core::config::BatchSize {
    spillway_core::config::BatchSize::new(4096)
}
fn default_seed() -> u64 {
    1
}
fn default_exporters() -> u32 {
    10
}
fn default_time_step() -> HumanDuration {
    HumanDuration(Duration::from_millis(1))
}

impl DemoConfig {
    fn projection(&self) -> Result<Option<Vec<usize>>, String> {
        let Some(cols) = &self.columns else { return Ok(None) };
        let schema = flow_schema();
        cols.iter()
            .map(|c| {
                schema.index_of(c).map_err(|_| {
                    let names = schema.fields().iter().map(|f| f.name().as_str());
                    format!(
                        "`{c}` is not a column of the flow schema{}",
                        spillway_core::config::did_you_mean(c, names)
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    fn start_ns(&self) -> Result<Option<i64>, String> {
        self.start_time
            .as_deref()
            .map(|s| {
                chrono::DateTime::parse_from_rfc3339(s)
                    .map_err(|e| format!("`{s}` is not an RFC 3339 time: {e}"))
                    .and_then(|t| t.timestamp_nanos_opt().ok_or_else(|| format!("`{s}` is out of range")))
            })
            .transpose()
    }
}

impl SourceConfig for DemoConfig {
    fn validate(&self) -> Vec<FieldIssue> {
        let mut issues = Vec::new();
        if self.rate == Some(0) {
            issues
                .push(FieldIssue::new("rate", "must be at least 1 record per second (omit it for no limit)"));
        }
        if self.exporters == 0 || self.exporters > 1 << 24 {
            issues.push(FieldIssue::new("exporters", "must be between 1 and 16777216"));
        }
        match self.projection() {
            Err(e) => issues.push(FieldIssue::new("columns", e)),
            Ok(Some(p)) if p.is_empty() => {
                issues.push(FieldIssue::new("columns", "must name at least one column"))
            }
            Ok(_) => {}
        }
        if let Err(e) = self.start_ns() {
            issues.push(FieldIssue::new("start_time", e));
        }
        issues
    }

    fn output_schema(&self) -> SchemaRef {
        match self.projection() {
            Ok(Some(p)) => Arc::new(flow_schema().project(&p).expect("validated projection")),
            _ => flow_schema(),
        }
    }

    fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Source>, BuildError> {
        let projection = self.projection().map_err(BuildError)?;
        let start_ns = self.start_ns().map_err(BuildError)?;
        Ok(Box::new(Demo { cfg: self.clone(), projection, start_ns }))
    }
}

spillway_core::register_source! {
    config: DemoConfig,
    name: "demo",
    description: "Synthetic flow records at a configured rate or count, deterministic for a seed.",
    example: "type: demo\ncount: 100000\nrate: 50000\nseed: 7\nexporters: 20\n",
}

struct Demo {
    cfg: DemoConfig,
    projection: Option<Vec<usize>>,
    start_ns: Option<i64>,
}

#[async_trait]
impl Source for Demo {
    async fn run(self: Box<Self>, cx: SourceContext) -> Result<(), ComponentError> {
        let SourceContext { name, mut out, shutdown, .. } = cx;
        let start_ns = self.start_ns.unwrap_or_else(|| chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0));
        let mut generator =
            FlowGenerator::new(self.cfg.seed, self.cfg.exporters, start_ns, self.cfg.time_step.0);
        let (mut tracker, mut settled) = AckTracker::new();
        // A paced source sends at least ten batches a second so that pacing
        // is smooth; an unpaced one sends full batches.
        let batch_size = match self.cfg.rate {
            Some(r) => self.cfg.batch_size.get().min((r / 10).max(1) as usize),
            None => self.cfg.batch_size.get(),
        };
        if let Some(d) = self.cfg.start_delay {
            tokio::select! {
                _ = tokio::time::sleep(d.get()) => {}
                _ = shutdown.cancelled() => {}
            }
        }
        let started = tokio::time::Instant::now();
        let mut produced: u64 = 0;
        loop {
            let remaining = self.cfg.count.map_or(u64::MAX, |c| c - produced);
            if remaining == 0 || shutdown.is_cancelled() {
                break;
            }
            if let Some(rate) = self.cfg.rate {
                let due = started + Duration::from_secs_f64(produced as f64 / rate as f64);
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
            let n = (batch_size as u64).min(remaining) as usize;
            let data = generator.batch(n);
            let data = match &self.projection {
                Some(p) => data.project(p).map_err(|e| ComponentError::new(e.to_string()))?,
                None => data,
            };
            let (lo, hi) = generator.last_batch_range();
            produced += n as u64;
            let (_, ack) = tracker.ack();
            let batch = Batch::new(data, BatchMeta::new(name.clone(), lo, hi), Acks::one(ack));
            if out.send(batch).await.is_err() {
                return Err(ComponentError::new("every downstream component has failed"));
            }
        }
        // Let downstream drain, then learn the fate of every batch.
        drop(out);
        drop(tracker);
        let (mut delivered, mut dropped, mut rejected) = (0u64, 0u64, 0u64);
        while let Some(s) = settled.recv().await {
            match s.status {
                AckStatus::Delivered => delivered += 1,
                AckStatus::Dropped => dropped += 1,
                AckStatus::Rejected => rejected += 1,
            }
        }
        tracing::info!(
            component = %name,
            records = produced,
            batches_delivered = delivered,
            batches_dropped = dropped,
            batches_rejected = rejected,
            "demo source finished and every batch it sent has settled"
        );
        Ok(())
    }
}

/// Deterministic flow records written straight into Arrow builders.
pub struct FlowGenerator {
    rng: spillway_core::rand::SplitMix64,
    exporters: u32,
    next_ns: i64,
    step_ns: i64,
    sequences: Vec<u32>,
    range: (i64, i64),
}

const DST_PORTS: [u16; 8] = [443, 80, 53, 22, 123, 8080, 3478, 993];

impl FlowGenerator {
    /// A generator for `exporters` exporters whose first record is received
    /// at `start_ns`, the next `step` later, and so on.
    pub fn new(seed: u64, exporters: u32, start_ns: i64, step: Duration) -> Self {
        Self {
            rng: spillway_core::rand::SplitMix64::new(seed ^ 0x9e37_79b9_7f4a_7c15),
            exporters: exporters.max(1),
            next_ns: start_ns,
            step_ns: step.as_nanos().min(i64::MAX as u128) as i64,
            sequences: vec![0; exporters.max(1) as usize],
            range: (0, 0),
        }
    }

    #[inline]
    fn next(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Receive-time range of the last batch.
    pub fn last_batch_range(&self) -> (i64, i64) {
        self.range
    }

    /// The next `n` records, in the full flow schema.
    pub fn batch(&mut self, n: usize) -> RecordBatch {
        let mut time_received = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut flow_start = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut flow_end = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut exporter = FixedSizeBinaryBuilder::with_capacity(n, 16);
        let mut domain = UInt32Builder::with_capacity(n);
        let mut sequence = UInt32Builder::with_capacity(n);
        let mut version = UInt16Builder::with_capacity(n);
        let mut src_addr = FixedSizeBinaryBuilder::with_capacity(n, 16);
        let mut dst_addr = FixedSizeBinaryBuilder::with_capacity(n, 16);
        let mut next_hop = FixedSizeBinaryBuilder::with_capacity(n, 16);
        let mut src_port = UInt16Builder::with_capacity(n);
        let mut dst_port = UInt16Builder::with_capacity(n);
        let mut protocol = UInt8Builder::with_capacity(n);
        let mut tcp_flags = UInt16Builder::with_capacity(n);
        let mut tos = UInt8Builder::with_capacity(n);
        let mut in_if = UInt32Builder::with_capacity(n);
        let mut out_if = UInt32Builder::with_capacity(n);
        let mut bytes = UInt64Builder::with_capacity(n);
        let mut packets = UInt64Builder::with_capacity(n);
        let mut src_as = UInt32Builder::with_capacity(n);
        let mut dst_as = UInt32Builder::with_capacity(n);
        let mut src_mask = UInt8Builder::with_capacity(n);
        let mut dst_mask = UInt8Builder::with_capacity(n);
        let mut vlan = UInt16Builder::with_capacity(n);
        let mut direction = UInt8Builder::with_capacity(n);
        let mut sampling_rate = UInt32Builder::with_capacity(n);
        let mut sampling_source = StringBuilder::with_capacity(n, n * 7);
        let first = self.next_ns;
        for _ in 0..n {
            let r = self.next();
            let r2 = self.next();
            let now = self.next_ns;
            self.next_ns = self.next_ns.saturating_add(self.step_ns);
            let e = (r % self.exporters as u64) as u32;
            let seq = self.sequences[e as usize];
            self.sequences[e as usize] = seq.wrapping_add(1);
            time_received.append_value(now);
            let duration_ns = ((r2 >> 40) % 60_000) as i64 * 1_000_000;
            flow_end.append_value(now - 1_000_000_000);
            flow_start.append_value(now - 1_000_000_000 - duration_ns);
            exporter.append_value(Addr::v4(0x0a00_0001 + e)).expect("16 bytes");
            domain.append_value(0);
            sequence.append_value(seq);
            version.append_value(10);
            if r.is_multiple_of(10) {
                let mut a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                a[12..].copy_from_slice(&((r >> 8) as u32).to_be_bytes());
                src_addr.append_value(a).expect("16 bytes");
                a[15] ^= 0x55;
                dst_addr.append_value(a).expect("16 bytes");
                next_hop.append_null();
            } else {
                src_addr.append_value(Addr::v4(0xc000_0200 | ((r >> 8) & 0xff) as u32)).expect("16 bytes");
                dst_addr.append_value(Addr::v4(0xcb00_7100 | ((r >> 16) & 0xff) as u32)).expect("16 bytes");
                next_hop.append_value(Addr::v4(0x0a00_ff01)).expect("16 bytes");
            }
            src_port.append_value(1024 + ((r >> 24) % 64_000) as u16);
            dst_port.append_value(DST_PORTS[((r >> 32) % DST_PORTS.len() as u64) as usize]);
            let proto = match (r >> 36) % 20 {
                0 => 1,
                1..=5 => 17,
                _ => 6,
            };
            protocol.append_value(proto);
            if proto == 6 {
                tcp_flags.append_value(((r2 >> 8) & 0x3f) as u16 | 0x10);
            } else {
                tcp_flags.append_value(0);
            }
            tos.append_value(0);
            in_if.append_value(1 + ((r2 >> 16) % 10) as u32);
            out_if.append_value(1 + ((r2 >> 20) % 10) as u32);
            let pk = 1 + (r2 >> 24) % 1000;
            packets.append_value(pk);
            bytes.append_value(pk * (40 + (r2 >> 34) % 1460));
            src_as.append_value(64_512 + ((r2 >> 44) % 100) as u32);
            dst_as.append_value(64_512 + ((r2 >> 50) % 100) as u32);
            src_mask.append_value(24);
            dst_mask.append_value(24);
            vlan.append_null();
            direction.append_value((r2 & 1) as u8);
            sampling_rate.append_value(1);
            sampling_source.append_value("default");
        }
        self.range = (first, self.next_ns - self.step_ns);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(time_received.finish()),
            Arc::new(flow_start.finish()),
            Arc::new(flow_end.finish()),
            Arc::new(exporter.finish()),
            Arc::new(domain.finish()),
            Arc::new(sequence.finish()),
            Arc::new(version.finish()),
            Arc::new(src_addr.finish()),
            Arc::new(dst_addr.finish()),
            Arc::new(next_hop.finish()),
            Arc::new(src_port.finish()),
            Arc::new(dst_port.finish()),
            Arc::new(protocol.finish()),
            Arc::new(tcp_flags.finish()),
            Arc::new(tos.finish()),
            Arc::new(in_if.finish()),
            Arc::new(out_if.finish()),
            Arc::new(bytes.finish()),
            Arc::new(packets.finish()),
            Arc::new(src_as.finish()),
            Arc::new(dst_as.finish()),
            Arc::new(src_mask.finish()),
            Arc::new(dst_mask.finish()),
            Arc::new(vlan.finish()),
            Arc::new(direction.finish()),
            Arc::new(sampling_rate.finish()),
            Arc::new(sampling_source.finish()),
        ];
        RecordBatch::try_new(flow_schema(), columns).expect("columns match the flow schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_records_whatever_the_batch_size() {
        let mut a = FlowGenerator::new(7, 5, 0, Duration::from_millis(1));
        let mut b = FlowGenerator::new(7, 5, 0, Duration::from_millis(1));
        let whole = a.batch(100);
        let parts = [b.batch(30), b.batch(70)];
        let joined = arrow::compute::concat_batches(&flow_schema(), &parts).unwrap();
        assert_eq!(whole, joined);
        let mut c = FlowGenerator::new(8, 5, 0, Duration::from_millis(1));
        assert_ne!(whole, c.batch(100));
    }
}
