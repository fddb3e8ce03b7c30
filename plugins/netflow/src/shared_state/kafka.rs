//! The Kafka store: one compacted topic shared by a fleet. Written with an
//! idempotent producer keyed by the entry's key (compaction keeps the
//! newest value of each key); read by a consumer outside any group that is
//! assigned every partition from the beginning, at start until the end of
//! each partition (or the warm-up deadline), then followed.
//!
//! Everything that can go wrong with the broker (unreachable at start or
//! later, the topic missing, a delivery failing) is reported as an error
//! the store counts and logs; collection goes on with local state, and the
//! consumer catches up when the broker is back (librdkafka reconnects).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{Backend, Read};
use crate::shared_state::codec;

/// Counts failed deliveries (the producer reports them from `poll`).
struct Deliveries {
    failed: Arc<AtomicU64>,
    last_error: Arc<std::sync::Mutex<Option<String>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = r {
            self.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut l) = self.last_error.lock() {
                *l = Some(e.to_string());
            }
        }
    }
}

/// The state reader's client context: reaching the end of a partition is
/// how a warm-up knows it has read everything, not an error (librdkafka
/// reports it as a global error, which the default context logs at ERROR).
struct StateReader;

impl ClientContext for StateReader {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_)) {
            tracing::warn!(%error, reason, "shared state: Kafka client error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for StateReader {}

pub struct KafkaStore {
    topic: String,
    producer: BaseProducer<Deliveries>,
    consumer: BaseConsumer<StateReader>,
    failed: Arc<AtomicU64>,
    failed_seen: u64,
    last_error: Arc<std::sync::Mutex<Option<String>>>,
    /// Whether the consumer has the topic's partitions.
    assigned: bool,
    last_assign: Option<Instant>,
}

impl KafkaStore {
    pub fn open(brokers: &str, topic: &str, options: &[(String, String)]) -> Result<Self, String> {
        let mut pc = ClientConfig::new();
        pc.set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "300000");
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", brokers)
            // Never joins: partitions are assigned by hand, nothing is committed.
            .set("group.id", "spillway-netflow-state-reader")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        for (k, v) in options {
            pc.set(k, v);
            cc.set(k, v);
        }
        let failed = Arc::new(AtomicU64::new(0));
        let last_error = Arc::new(std::sync::Mutex::new(None));
        let producer = pc
            .create_with_context(Deliveries { failed: failed.clone(), last_error: last_error.clone() })
            .map_err(|e| format!("cannot create the state producer: {e}"))?;
        let consumer: BaseConsumer<StateReader> = cc
            .create_with_context(StateReader)
            .map_err(|e| format!("cannot create the state consumer: {e}"))?;
        Ok(Self {
            topic: topic.to_string(),
            producer,
            consumer,
            failed,
            failed_seen: 0,
            last_error,
            assigned: false,
            last_assign: None,
        })
    }

    /// Assigns every partition of the topic from the beginning; an error
    /// while the broker or the topic is missing (retried every 5 s).
    fn assign(&mut self) -> Result<(), String> {
        if self.assigned || self.last_assign.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
            return Ok(());
        }
        self.last_assign = Some(Instant::now());
        let md = self
            .consumer
            .fetch_metadata(Some(&self.topic), Duration::from_secs(3))
            .map_err(|e| format!("cannot read the metadata of the state topic `{}`: {e}", self.topic))?;
        let t = md.topics().first().ok_or_else(|| format!("the state topic `{}` is missing", self.topic))?;
        if t.error().is_some() || t.partitions().is_empty() {
            return Err(format!(
                "the state topic `{}` is missing; create it with cleanup.policy=compact (docs/deploy.md)",
                self.topic
            ));
        }
        let mut tpl = TopicPartitionList::new();
        for p in t.partitions() {
            tpl.add_partition_offset(&self.topic, p.id(), Offset::Beginning)
                .map_err(|e| format!("cannot assign the state topic: {e}"))?;
        }
        self.consumer.assign(&tpl).map_err(|e| format!("cannot assign the state topic: {e}"))?;
        self.assigned = true;
        Ok(())
    }

    /// Reads what has arrived; the partitions that reported their end are
    /// added to `eofs`.
    fn read(&mut self, wait: Duration, out: &mut Vec<Read>, eofs: &mut std::collections::HashSet<i32>) {
        let mut wait = wait;
        while let Some(m) = self.consumer.poll(wait) {
            wait = Duration::ZERO;
            match m {
                // A message without a payload is a tombstone: nothing to learn.
                Ok(m) => {
                    if let Some(v) = m.payload() {
                        out.push(
                            codec::decode(v).map_err(|e| format!("state topic offset {}: {e}", m.offset())),
                        );
                    }
                }
                Err(KafkaError::PartitionEOF(p)) => {
                    eofs.insert(p);
                }
                Err(e) => out.push(Err(format!("reading the state topic: {e}"))),
            }
            if out.len() >= 10_000 {
                break;
            }
        }
    }

    fn partitions(&self) -> usize {
        self.consumer.assignment().map(|a| a.count()).unwrap_or(0)
    }

    fn delivery_errors(&mut self, out: &mut Vec<Read>) {
        self.producer.poll(Duration::ZERO);
        let failed = self.failed.load(Ordering::Relaxed);
        if failed > self.failed_seen {
            let why = self.last_error.lock().ok().and_then(|l| l.clone()).unwrap_or_default();
            out.push(Err(format!(
                "{} state entries were not delivered to Kafka: {why}",
                failed - self.failed_seen
            )));
            self.failed_seen = failed;
        }
    }
}

impl Backend for KafkaStore {
    fn load(&mut self, deadline: Instant) -> Vec<Read> {
        let mut out = Vec::new();
        loop {
            match self.assign() {
                Ok(()) if self.assigned => break,
                Ok(()) => {}
                Err(e) => {
                    out.push(Err(e));
                }
            }
            if Instant::now() >= deadline {
                return out;
            }
            std::thread::sleep(
                Duration::from_millis(200).min(deadline.saturating_duration_since(Instant::now())),
            );
            self.last_assign = None;
        }
        let mut eofs = std::collections::HashSet::new();
        while Instant::now() < deadline {
            self.read(Duration::from_millis(100), &mut out, &mut eofs);
            if eofs.len() >= self.partitions() {
                return out;
            }
        }
        out.push(Err(format!(
            "warm-up: the state topic `{}` was not read to its end before the deadline; going on with what was read",
            self.topic
        )));
        out
    }

    fn write(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        let r = BaseRecord::to(&self.topic).key(key).payload(value);
        self.producer.send(r).map_err(|(e, _)| format!("cannot queue a state entry for Kafka: {e}"))
    }

    fn poll(&mut self) -> Vec<Read> {
        let mut out = Vec::new();
        self.delivery_errors(&mut out);
        if let Err(e) = self.assign() {
            out.push(Err(e));
        }
        if self.assigned {
            let mut eofs = std::collections::HashSet::new();
            self.read(Duration::ZERO, &mut out, &mut eofs);
        }
        out
    }

    fn flush(&mut self) {
        let _ = self.producer.flush(Duration::from_secs(5));
    }
}
