//! The `kafka` source: a consumer group member that decodes messages into
//! flow batches and commits offsets only behind settled acknowledgements.
//!
//! Offsets: every batch remembers, per partition, the offset after its last
//! message. When batches settle (in any order), a partition's commit point
//! advances over the settled prefix of its batches only, so a record is
//! never committed before every record before it in that partition has
//! been delivered or accounted for. Commits go out every
//! `commit_interval` and at shutdown. In a rebalance, the settled prefix
//! of each revoked partition is committed synchronously and the partition
//! is forgotten: records from it still in flight settle without a commit
//! (they may be read again by the new owner — at-least-once).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Deserialize;
use spillway_core::ack::{AckStatus, AckTracker, Acks};
use spillway_core::component::{ComponentError, Source, SourceContext};
use spillway_core::config::HumanDuration;
use spillway_core::ledger::DropReason;
use spillway_core::metrics::{Counter, Gauge};
use spillway_core::registry::{BuildContext, BuildError, FieldIssue, SourceConfig};
use spillway_core::schema::flow_schema;
use spillway_core::{Batch, BatchMeta};

use crate::codec::Decoder;
use crate::{EncodingName, Options, default_true, encoding};

/// Config of the `kafka` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    pub brokers: String,
    pub topics: Vec<String>,
    /// Consumer group.
    pub group: String,
    #[serde(default)]
    pub encoding: EncodingName,
    #[serde(default = "default_true")]
    pub length_delimited: bool,
    /// Where a group with no committed offset starts: `earliest` or `latest`.
    #[serde(default)]
    pub start: Start,
    /// Records per batch at most.
    #[serde(default = "default_batch_size")]
    pub batch_size: spillway_core::config::BatchSize,
    /// A partial batch is sent after this long.
    #[serde(default = "default_flush")]
    pub flush_interval: HumanDuration,
    /// How often settled offsets are committed.
    #[serde(default = "default_commit")]
    pub commit_interval: HumanDuration,
    #[serde(default)]
    pub options: Options,
}

/// Where a group with no committed offset starts (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    #[default]
    Earliest,
    Latest,
}
fn default_batch_size() -> spillway_core::config::BatchSize {
    spillway_core::config::BatchSize::new(4096)
}
fn default_flush() -> HumanDuration {
    HumanDuration(Duration::from_millis(200))
}
fn default_commit() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

const OWN: [&str; 5] =
    ["bootstrap.servers", "group.id", "enable.auto.commit", "enable.auto.offset.store", "auto.offset.reset"];

impl SourceConfig for KafkaSourceConfig {
    fn validate(&self) -> Vec<FieldIssue> {
        let mut v = crate::check_client(&self.brokers, &self.options, &OWN, "source");
        if self.topics.is_empty() {
            v.push(FieldIssue::new("topics", "name at least one topic"));
        }
        if self.group.is_empty() {
            v.push(FieldIssue::new("group", "must not be empty"));
        }
        v
    }

    fn output_schema(&self) -> SchemaRef {
        match self.encoding {
            EncodingName::Datagram => std::sync::Arc::new(spillway_schema::datagram::schema()),
            _ => flow_schema(),
        }
    }

    fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Source>, BuildError> {
        Ok(Box::new(KafkaSource { cfg: self.clone() }))
    }
}

spillway_core::register_source! {
    config: KafkaSourceConfig,
    name: "kafka",
    description: "Consumes flow records (JSON or protobuf) in a consumer group; commits offsets only after downstream acknowledgements.",
    example: "type: kafka\nbrokers: \"127.0.0.1:9092\"\ntopics: [flows]\ngroup: spillway-archive\nencoding: protobuf\n",
}

/// A topic and partition.
type Tp = (String, i32);

/// Where a batch is on its way downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    InFlight,
    Settled,
    /// A sink failed to make it durable: the commit point must never pass
    /// it, so that a restart reads it again.
    Rejected,
}

/// Per-partition queues of (batch id, next offset, fate).
#[derive(Default)]
struct Offsets {
    parts: HashMap<Tp, VecDeque<(u64, i64, Fate)>>,
    /// Batch id → its partitions.
    batches: HashMap<u64, Vec<(String, i32)>>,
    /// Records emitted whose offsets are not committed yet.
    uncommitted: HashMap<u64, u64>,
}

impl Offsets {
    fn add(&mut self, id: u64, ends: Vec<(Tp, i64)>, rows: u64) {
        let mut tps = Vec::with_capacity(ends.len());
        for (tp, next) in ends {
            self.parts.entry(tp.clone()).or_default().push_back((id, next, Fate::InFlight));
            tps.push(tp);
        }
        self.batches.insert(id, tps);
        self.uncommitted.insert(id, rows);
    }

    /// Records a batch's fate; the partitions a rejection now holds back.
    fn settle(&mut self, id: u64, status: AckStatus) -> Vec<Tp> {
        let fate = if status == AckStatus::Rejected { Fate::Rejected } else { Fate::Settled };
        let mut held = Vec::new();
        for tp in self.batches.remove(&id).unwrap_or_default() {
            if let Some(q) = self.parts.get_mut(&tp)
                && let Some(e) = q.iter_mut().find(|e| e.0 == id)
            {
                e.2 = fate;
                if fate == Fate::Rejected {
                    held.push(tp);
                }
            }
        }
        held
    }

    /// Advances over settled prefixes; the offsets to commit.
    fn ready(&mut self, only: Option<&[(String, i32)]>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (tp, q) in self.parts.iter_mut() {
            if only.is_some_and(|o| !o.contains(tp)) {
                continue;
            }
            let mut commit = None;
            while q.front().is_some_and(|e| e.2 == Fate::Settled) {
                let (id, next, _) = q.pop_front().expect("checked");
                commit = Some(next);
                self.uncommitted.remove(&id);
            }
            if let Some(next) = commit {
                let _ = tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(next));
            }
        }
        tpl
    }

    fn forget(&mut self, tps: &[(String, i32)]) {
        for tp in tps {
            if let Some(q) = self.parts.remove(tp) {
                for (id, _, _) in q {
                    self.uncommitted.remove(&id);
                }
            }
        }
    }

    fn uncommitted(&self) -> u64 {
        self.uncommitted.values().sum()
    }
}

struct GroupContext {
    name: Arc<str>,
    offsets: Arc<Mutex<Offsets>>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        crate::log_librdkafka(&self.name, level, fac, msg);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(component = %self.name, error = %error, reason, "Kafka client error (the consumer keeps retrying)");
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let lost: Vec<(String, i32)> =
                tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
            let Ok(mut o) = self.offsets.lock() else { return };
            let ready = o.ready(Some(&lost));
            if ready.count() > 0
                && let Err(e) = consumer.commit(&ready, CommitMode::Sync)
            {
                tracing::warn!(component = %self.name, error = %e, "commit before giving up partitions failed; their settled records may be read again");
            }
            o.forget(&lost);
            tracing::info!(component = %self.name, partitions = lost.len(), "partitions revoked; settled offsets committed, in-flight records will not be committed");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(component = %self.name, partitions = tpl.count(), "partitions assigned");
        }
    }
}

struct KafkaSource {
    cfg: KafkaSourceConfig,
}

#[async_trait]
impl Source for KafkaSource {
    async fn run(self: Box<Self>, cx: SourceContext) -> Result<(), ComponentError> {
        let SourceContext { name, mut out, shutdown, events, metrics, .. } = cx;
        let offsets = Arc::new(Mutex::new(Offsets::default()));
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &self.cfg.brokers)
            .set("group.id", &self.cfg.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", if self.cfg.start == Start::Latest { "latest" } else { "earliest" });
        for (k, v) in &self.cfg.options {
            cc.set(k, v);
        }
        let consumer: StreamConsumer<GroupContext> = cc
            .create_with_context(GroupContext { name: name.clone(), offsets: offsets.clone() })
            .map_err(|e| ComponentError::new(format!("cannot create the Kafka consumer: {e}")))?;
        let topics: Vec<&str> = self.cfg.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| ComponentError::new(format!("cannot subscribe to {topics:?}: {e}")))?;
        let options = crate::printable(&self.cfg.options);
        tracing::info!(component = %name, brokers = %self.cfg.brokers, topics = ?self.cfg.topics, group = %self.cfg.group, options = ?options, "Kafka source consuming");
        let uncommitted: Gauge = metrics.gauge(
            "spillway_kafka_uncommitted_records",
            "Records emitted whose offsets are not committed yet: what a crash now would read again.",
        );
        let rejected = metrics.counter(
            "spillway_kafka_rejected_batches_total",
            "Batches a sink failed to make durable; their partitions are not committed past them.",
        );

        let mut pending = Pending {
            decoder: Decoder::new(encoding(self.cfg.encoding, self.cfg.length_delimited)),
            ends: Vec::new(),
            positions: Vec::new(),
            first_ns: None,
            events,
        };
        let (mut tracker, mut settled) = AckTracker::new();
        let mut flush = tokio::time::interval(self.cfg.flush_interval.get());
        let mut commit = tokio::time::interval(self.cfg.commit_interval.get());
        loop {
            tokio::select! {
                m = consumer.recv() => {
                    let m = match m {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!(component = %name, error = %e, "Kafka consume error");
                            continue;
                        }
                    };
                    pending.push(m.topic(), m.partition(), m.offset(), m.payload().unwrap_or_default());
                    if pending.decoder.len() >= self.cfg.batch_size.get()
                        && !pending.emit(&name, &mut tracker, &offsets, &mut out).await?
                    {
                        break;
                    }
                }
                _ = flush.tick() => {
                    if !pending.ends.is_empty() && !pending.emit(&name, &mut tracker, &offsets, &mut out).await? {
                        break;
                    }
                }
                Some(s) = settled.recv() => settle(&offsets, s, &name, &rejected),
                _ = commit.tick() => {
                    commit_ready(&consumer, &offsets, CommitMode::Async, &name);
                    uncommitted.set(offsets.lock().map_or(0, |o| o.uncommitted()));
                }
                _ = shutdown.cancelled() => break,
            }
        }
        // Send what was read, wait for every batch to settle, commit.
        if !pending.ends.is_empty() {
            pending.emit(&name, &mut tracker, &offsets, &mut out).await?;
        }
        drop(out);
        drop(tracker);
        while let Some(s) = settled.recv().await {
            settle(&offsets, s, &name, &rejected);
        }
        commit_ready(&consumer, &offsets, CommitMode::Sync, &name);
        let left = offsets.lock().map_or(0, |o| o.uncommitted());
        uncommitted.set(left);
        tracing::info!(component = %name, uncommitted = left, "Kafka source stopped; settled offsets committed");
        Ok(())
    }
}

/// Records a settlement; a rejected batch holds its partitions' commit
/// points where they are (logged, counted): after a restart they are read
/// again, at least once.
fn settle(offsets: &Mutex<Offsets>, s: spillway_core::ack::Settled, name: &str, rejected: &Counter) {
    let held = match offsets.lock() {
        Ok(mut o) => o.settle(s.id, s.status),
        Err(_) => return,
    };
    if !held.is_empty() {
        rejected.add(1);
        let parts: Vec<String> = held.iter().map(|(t, p)| format!("{t}/{p}")).collect();
        tracing::error!(
            component = %name,
            partitions = %parts.join(", "),
            "a batch was rejected downstream: these partitions' offsets will not be committed past it, so a restart \
             reads it again"
        );
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

fn commit_ready(
    consumer: &StreamConsumer<GroupContext>,
    offsets: &Mutex<Offsets>,
    mode: CommitMode,
    name: &str,
) {
    let ready = match offsets.lock() {
        Ok(mut o) => o.ready(None),
        Err(_) => return,
    };
    if ready.count() == 0 {
        return;
    }
    // Only partitions we still own: a commit for a lost one would move the
    // new owner's position.
    let owned = consumer.assignment().ok();
    let mut tpl = TopicPartitionList::new();
    for e in ready.elements() {
        let ours = owned.as_ref().is_some_and(|a| a.find_partition(e.topic(), e.partition()).is_some());
        if ours {
            let _ = tpl.add_partition_offset(e.topic(), e.partition(), e.offset());
        }
    }
    drop(owned); // must not outlive the consumer (TOOLCHAIN.md)
    if tpl.count() > 0
        && let Err(e) = consumer.commit(&tpl, mode)
    {
        tracing::warn!(component = name, error = %e, "offset commit failed; it is retried with the next one");
    }
}

/// The batch being read: decoded records and where they came from.
struct Pending {
    decoder: Decoder,
    /// Per topic/partition in this batch: the offset after its last message.
    /// A batch touches few partitions: a list beats a map, and a message
    /// from a partition already listed allocates nothing.
    ends: Vec<(Tp, i64)>,
    /// Per message accepted by the decoder: its partition (index in `ends`)
    /// and offset, to name a message found malformed when the batch decodes.
    positions: Vec<(usize, i64)>,
    first_ns: Option<i64>,
    events: spillway_core::events::Events,
}

impl Pending {
    fn push(&mut self, topic: &str, partition: i32, offset: i64, payload: &[u8]) {
        let i = match self.ends.iter().position(|((t, p), _)| *p == partition && t == topic) {
            Some(i) => i,
            None => {
                self.ends.push(((topic.to_string(), partition), 0));
                self.ends.len() - 1
            }
        };
        self.ends[i].1 = offset + 1;
        self.first_ns.get_or_insert_with(now_ns);
        match self.decoder.push(payload) {
            Ok(()) => self.positions.push((i, offset)),
            Err(e) => self.malformed(topic, partition, offset, &e),
        }
    }

    fn malformed(&mut self, topic: &str, partition: i32, offset: i64, e: &str) {
        self.events.dropped(
            DropReason::Malformed,
            1,
            &format_args!("undecodable message at {topic}/{partition} offset {offset}: {e}"),
        );
    }

    /// Sends the batch; its offsets are committed once it settles. False
    /// when every downstream has failed.
    async fn emit(
        &mut self,
        name: &Arc<str>,
        tracker: &mut AckTracker,
        offsets: &Arc<Mutex<Offsets>>,
        out: &mut spillway_core::component::Output,
    ) -> Result<bool, ComponentError> {
        let decoded = self
            .decoder
            .take()
            .map_err(|e| ComponentError::new(format!("decoded records do not form a batch: {e}")))?;
        let positions = std::mem::take(&mut self.positions);
        for (i, e) in &decoded.malformed {
            let (p, offset) = positions[*i];
            let ((topic, partition), _) = self.ends[p].clone();
            self.malformed(&topic, partition, offset, e);
        }
        let data = decoded.batch;
        let parts = std::mem::take(&mut self.ends);
        let (id, ack) = tracker.ack();
        let rows = data.num_rows() as u64;
        if let Ok(mut o) = offsets.lock() {
            o.add(id, parts, rows);
        }
        let lo = self.first_ns.take().unwrap_or_else(now_ns);
        if rows == 0 {
            // Only malformed messages: nothing to send, their offsets can go.
            drop(ack);
            return Ok(true);
        }
        let batch = Batch::new(data, BatchMeta::new(name.clone(), lo, now_ns()), Acks::one(ack));
        Ok(out.send(batch).await.is_ok())
    }
}
