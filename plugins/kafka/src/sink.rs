//! The `kafka` sink.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use serde::Deserialize;
use spillway_core::ack::{AckStatus, Acks};
use spillway_core::component::{ComponentError, Sink, SinkContext, SinkInput};
use spillway_core::events::Events;
use spillway_core::ledger::DropReason;
use spillway_core::metrics::{Counter, Gauge};
use spillway_core::registry::{BuildContext, BuildError, FieldIssue, SinkConfig};

use crate::codec::{Encoder, protobuf_compatible, write_key};
use crate::{EncodingName, Options, default_true};

/// Config of the `kafka` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// The topic (the fallback when `topic_field` is null).
    pub topic: String,
    /// A string column naming each record's topic.
    #[serde(default)]
    pub topic_field: Option<String>,
    /// The column whose value is the message key, so that one exporter's
    /// records keep their order in one partition; `none` for no key.
    #[serde(default = "default_key")]
    pub key_field: String,
    /// `json` (the file sink's human form), `protobuf` (docs/flow.proto), or
    /// `datagram` (relayed datagrams of a `netflow` source with `relay: true`).
    #[serde(default)]
    pub encoding: EncodingName,
    /// protobuf only: prefix each message with its varint length, as
    /// goflow2 v2 does.
    #[serde(default = "default_true")]
    pub length_delimited: bool,
    /// `lz4`, `zstd`, `snappy`, `gzip` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Most memory the producer may hold for unacknowledged messages; past
    /// it the sink waits (backpressure).
    #[serde(default = "default_buffer")]
    pub buffer: spillway_core::config::units::ByteSize,
    /// Further librdkafka properties (`security.protocol`, `sasl.*`,
    /// `ssl.*`, `message.timeout.ms`, …). Values are never logged.
    #[serde(default)]
    pub options: Options,
}

fn default_key() -> String {
    "exporter".into()
}
/// Producer compression (`compression.type`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Lz4,
    Zstd,
    Snappy,
    Gzip,
    None,
}

impl Compression {
    fn as_str(self) -> &'static str {
        match self {
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
            Self::Snappy => "snappy",
            Self::Gzip => "gzip",
            Self::None => "none",
        }
    }
}
fn default_buffer() -> spillway_core::config::units::ByteSize {
    spillway_core::config::units::ByteSize(256 << 20)
}

/// Properties the sink sets itself from its own fields.
const OWN: [&str; 4] =
    ["bootstrap.servers", "compression.type", "queue.buffering.max.kbytes", "metadata.broker.list"];

impl SinkConfig for KafkaSinkConfig {
    fn validate(&self) -> Vec<FieldIssue> {
        let mut v = crate::check_client(&self.brokers, &self.options, &OWN, "sink");
        if self.topic.is_empty() {
            v.push(FieldIssue::new("topic", "must not be empty"));
        }
        if self.buffer.get() < 1 << 20 {
            v.push(FieldIssue::new("buffer", "must be at least 1MiB"));
        }
        v
    }

    fn check_input(&self, input: &SchemaRef) -> Vec<FieldIssue> {
        let mut v = Vec::new();
        if self.key_field != "none" && input.field_with_name(&self.key_field).is_err() {
            v.push(FieldIssue::new("key_field", format!("the input has no column `{}`", self.key_field)));
        }
        if let Some(t) = &self.topic_field {
            match input.field_with_name(t) {
                Ok(f) if f.data_type() == &DataType::Utf8 => {}
                Ok(f) => v.push(FieldIssue::new(
                    "topic_field",
                    format!("`{t}` is {}, not a string", f.data_type()),
                )),
                Err(_) => v.push(FieldIssue::new("topic_field", format!("the input has no column `{t}`"))),
            }
        }
        if self.encoding == EncodingName::Protobuf
            && let Err(e) = protobuf_compatible(input)
        {
            v.push(FieldIssue::new("encoding", e));
        }
        let datagrams = spillway_schema::datagram::is_datagram_schema(input);
        if self.encoding == EncodingName::Datagram && !datagrams {
            v.push(FieldIssue::new(
                "encoding",
                "`datagram` writes relayed datagrams: the input must be a `netflow` source with `relay: true`",
            ));
        } else if self.encoding != EncodingName::Datagram && datagrams {
            v.push(FieldIssue::new("encoding", "the input is relayed datagrams: use `encoding: datagram`"));
        }
        v
    }

    fn build(&self, _cx: &BuildContext, _input: &SchemaRef) -> Result<Box<dyn Sink>, BuildError> {
        Ok(Box::new(KafkaSink { cfg: self.clone() }))
    }
}

spillway_core::register_sink! {
    config: KafkaSinkConfig,
    name: "kafka",
    description: "Produces records to Kafka (JSON or goflow2-compatible protobuf); acknowledged when the broker has them.",
    example: "type: kafka\ninputs: [flows]\nbrokers: \"127.0.0.1:9092\"\ntopic: flows\nencoding: protobuf\ncompression: zstd\noptions: { \"message.timeout.ms\": \"600000\" }\n",
}

impl KafkaSinkConfig {
    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", self.compression.as_str())
            .set("linger.ms", "5")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.kbytes", (self.buffer.get() / 1024).max(1).to_string())
            .set("queue.buffering.max.messages", "1000000")
            // Ask the broker for topic metadata often while a topic is
            // missing, and fail records for a topic that does not exist
            // after this long rather than holding them to the timeout.
            .set("topic.metadata.propagation.max.ms", "10000");
        for (k, v) in &self.options {
            c.set(k, v);
        }
        c
    }
}

/// One batch's delivery state, shared by its messages' delivery reports.
struct Pending {
    remaining: AtomicUsize,
    failed: AtomicU64,
    acks: Mutex<Option<Acks>>,
}

/// A record whose delivery failed with a transient error: sent again by
/// the sink (its batch stays unsettled until it is delivered).
struct Retry {
    topic: String,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    pending: Arc<Pending>,
}

/// Producer callbacks: delivery reports settle batches, or queue records
/// that failed for a transient reason to be sent again; errors are logged.
struct Delivery {
    events: Option<Events>,
    name: Arc<str>,
    down: AtomicBool,
    /// Records to send again.
    retries: Mutex<Vec<Retry>>,
    /// Sending records again since the last delivery (for the log).
    retrying: AtomicBool,
    retried: Counter,
    /// Topics known to exist (found at start, or delivered to): an
    /// unknown-topic failure for one of them is a broker coming back.
    topics: RwLock<HashSet<String>>,
}

impl ClientContext for Delivery {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        crate::log_librdkafka(&self.name, level, fac, msg);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // "all brokers down" and transport errors come here; librdkafka
        // keeps retrying, and the records stay queued.
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            if !self.down.swap(true, Ordering::Relaxed) {
                tracing::warn!(component = %self.name, "all Kafka brokers are unreachable; records are held and retried (backpressure once the buffer is full)");
            }
        } else {
            tracing::warn!(component = %self.name, error = %error, reason, "Kafka client error");
        }
    }
}

impl ProducerContext for Delivery {
    type DeliveryOpaque = Arc<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Arc<Pending>) {
        let events = self.events.as_ref().expect("a sink's producer");
        match result {
            Ok(msg) => {
                use rdkafka::message::Message;
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!(component = %self.name, "Kafka brokers reachable again; delivering");
                }
                if self.retrying.swap(false, Ordering::Relaxed) {
                    tracing::info!(component = %self.name, "records sent again are being delivered");
                }
                if !self.topics.read().is_ok_and(|t| t.contains(msg.topic()))
                    && let Ok(mut t) = self.topics.write()
                {
                    t.insert(msg.topic().to_string());
                }
                events.delivered(1);
            }
            Err((e, msg)) if self.transient(e, msg) => {
                use rdkafka::message::Message;
                if !self.retrying.swap(true, Ordering::Relaxed) {
                    tracing::warn!(component = %self.name, topic = msg.topic(), error = %e, "Kafka did not take records (a transient failure): they are sent again, and their batches wait");
                }
                self.retried.add(1);
                let retry = Retry {
                    topic: msg.topic().to_string(),
                    key: msg.key().map(<[u8]>::to_vec),
                    payload: msg.payload().unwrap_or_default().to_vec(),
                    pending,
                };
                self.retries.lock().unwrap_or_else(|e| e.into_inner()).push(retry);
                return;
            }
            Err((e, msg)) => {
                use rdkafka::message::Message;
                events.dropped(
                    DropReason::SinkError,
                    1,
                    &format_args!("Kafka refused a record for good (topic {}): {e}", msg.topic()),
                );
                pending.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if pending.remaining.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(acks) = pending.acks.lock().ok().and_then(|mut a| a.take())
        {
            let status = if pending.failed.load(Ordering::Relaxed) == 0 {
                AckStatus::Delivered
            } else {
                AckStatus::Rejected
            };
            acks.settle(status);
        }
    }
}

struct KafkaSink {
    cfg: KafkaSinkConfig,
}

#[async_trait]
impl Sink for KafkaSink {
    async fn run(self: Box<Self>, mut input: SinkInput, cx: SinkContext) -> Result<(), ComponentError> {
        let name = cx.name.clone();
        let context = Delivery {
            events: Some(cx.events.clone()),
            name: name.clone(),
            down: AtomicBool::new(false),
            retries: Mutex::new(Vec::new()),
            retrying: AtomicBool::new(false),
            retried: cx.metrics.counter(
                "spillway_kafka_retried_records_total",
                "Records whose delivery failed for a transient reason, sent again.",
            ),
            topics: RwLock::new(HashSet::new()),
        };
        let producer: ThreadedProducer<Delivery> = self
            .cfg
            .client_config()
            .create_with_context(context)
            .map_err(|e| ComponentError::new(format!("cannot create the Kafka producer: {e}")))?;
        let producer = Arc::new(producer);
        let queued: Gauge = cx
            .metrics
            .gauge("spillway_kafka_queued_records", "Records handed to the producer, not yet acknowledged.");
        let options = crate::printable(&self.cfg.options);
        tracing::info!(component = %name, brokers = %self.cfg.brokers, topic = %self.cfg.topic, encoding = ?self.cfg.encoding, options = ?options, "Kafka sink starting");
        check_topic(&producer, &self.cfg.topic, &name).await;

        let mut encoder: Option<(SchemaRef, Encoder)> = None;
        let (mut buf, mut ends, mut keys, mut key_ends) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut backpressure_since: Option<Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Records that failed for a transient reason go first (their
            // batches wait for them).
            while !producer.context().resend(&producer) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let mut batch = tokio::select! {
                b = input.recv() => match b {
                    Some(b) => b,
                    None => break,
                },
                _ = tick.tick() => continue,
            };
            let schema = batch.data.schema();
            if encoder.as_ref().is_none_or(|(s, _)| s != &schema) {
                encoder = Some((
                    schema.clone(),
                    Encoder::new(crate::encoding(self.cfg.encoding, self.cfg.length_delimited), &schema),
                ));
            }
            let (_, enc) = encoder.as_mut().expect("set above");
            buf.clear();
            ends.clear();
            enc.encode(&batch.data, &mut buf, &mut ends);
            keys.clear();
            key_ends.clear();
            let key_col = (self.cfg.key_field != "none")
                .then(|| batch.data.column_by_name(&self.cfg.key_field).cloned())
                .flatten();
            if let Some(k) = &key_col {
                for row in 0..batch.rows() {
                    write_key(k.as_ref(), row, &mut keys);
                    key_ends.push(keys.len());
                }
            }
            let topics = self
                .cfg
                .topic_field
                .as_ref()
                .and_then(|t| batch.data.column_by_name(t))
                .map(|c| arrow::array::AsArray::as_string::<i32>(c).clone());
            let n = batch.rows();
            if n == 0 {
                batch.acks.settle(AckStatus::Delivered);
                continue;
            }
            let pending = Arc::new(Pending {
                remaining: AtomicUsize::new(n),
                failed: AtomicU64::new(0),
                acks: Mutex::new(Some(std::mem::take(&mut batch.acks))),
            });
            drop(batch);
            let mut start = 0;
            let mut kstart = 0;
            for row in 0..n {
                let payload = &buf[start..ends[row]];
                start = ends[row];
                let topic = topics
                    .as_ref()
                    .filter(|t| arrow::array::Array::is_valid(*t, row))
                    .map(|t| t.value(row))
                    .unwrap_or(&self.cfg.topic);
                let mut record = BaseRecord::with_opaque_to(topic, pending.clone()).payload(payload);
                if key_col.is_some() {
                    record = record.key(&keys[kstart..key_ends[row]]);
                    kstart = key_ends[row];
                }
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                            // The producer holds `buffer` bytes already:
                            // wait for deliveries instead of growing.
                            record = r;
                            if backpressure_since.is_none() {
                                backpressure_since = Some(Instant::now());
                                tracing::warn!(component = %name, queued = producer.in_flight_count(), "Kafka producer buffer full: backpressure until the broker catches up");
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err((e, r)) => {
                            // Refused before it was queued (too large,
                            // invalid topic name): a counted drop.
                            tracing::error!(component = %name, topic = r.topic, error = %e, "record refused by the producer; dropped and counted (sink_error)");
                            let ctx = producer.context();
                            ctx.delivery_failed_early(&r.delivery_opaque);
                            break;
                        }
                    }
                }
            }
            if let Some(t) = backpressure_since.take() {
                tracing::info!(component = %name, waited = ?t.elapsed(), "Kafka producer accepting records again");
            }
            queued.set(producer.in_flight_count().max(0) as u64);
        }
        // Input ended: deliver everything queued before returning.
        let p = producer.clone();
        let name2 = name.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let mut last_log = Instant::now();
            while p.in_flight_count() > 0 || p.context().retries_waiting() {
                let _ = p.flush(Duration::from_millis(500));
                p.context().resend(&p);
                if last_log.elapsed() >= Duration::from_secs(5) {
                    last_log = Instant::now();
                    tracing::warn!(component = %name2, queued = p.in_flight_count(), waited = ?started.elapsed(), "still delivering queued records to Kafka before stopping");
                }
            }
        })
        .await
        .map_err(|e| ComponentError::new(format!("flush task failed: {e}")))?;
        queued.set(0);
        tracing::info!(component = %name, "Kafka sink finished; every record was acknowledged or counted");
        Ok(())
    }
}

impl Delivery {
    /// Whether a delivery failure may pass: anything but a record the
    /// broker can never take (too large, invalid, not authorized), a topic
    /// that was never seen to exist, or a producer that failed for good.
    fn transient(&self, e: &KafkaError, msg: &rdkafka::message::BorrowedMessage<'_>) -> bool {
        use RDKafkaErrorCode as C;
        use rdkafka::message::Message;
        match e.rdkafka_error_code() {
            Some(
                C::MessageSizeTooLarge
                | C::InvalidMessage
                | C::InvalidMessageSize
                | C::InvalidRecord
                | C::MessageBatchTooLarge
                | C::InvalidTopic
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::BadMessage
                | C::InvalidArgument
                | C::Fatal,
            ) => false,
            Some(C::UnknownTopic | C::UnknownTopicOrPartition | C::UnknownPartition) => {
                self.topics.read().is_ok_and(|t| t.contains(msg.topic()))
            }
            _ => true,
        }
    }

    /// Sends the records that failed for a transient reason again; false
    /// when the producer's buffer is full (the rest wait for the next call).
    fn resend(&self, producer: &ThreadedProducer<Delivery>) -> bool {
        let retries = std::mem::take(&mut *self.retries.lock().unwrap_or_else(|e| e.into_inner()));
        let mut left = retries.into_iter();
        while let Some(r) = left.next() {
            let mut record = BaseRecord::with_opaque_to(&r.topic, r.pending.clone()).payload(&r.payload[..]);
            if let Some(k) = &r.key {
                record = record.key(&k[..]);
            }
            match producer.send(record) {
                Ok(()) => {}
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    let mut rest: Vec<Retry> = std::iter::once(r).chain(left).collect();
                    let mut q = self.retries.lock().unwrap_or_else(|e| e.into_inner());
                    rest.append(&mut q);
                    *q = rest;
                    return false;
                }
                Err((e, rec)) => {
                    tracing::error!(component = %self.name, topic = rec.topic, error = %e, "record refused by the producer; dropped and counted (sink_error)");
                    self.delivery_failed_early(&rec.delivery_opaque);
                }
            }
        }
        true
    }

    /// Records waiting to be sent again.
    fn retries_waiting(&self) -> bool {
        !self.retries.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// Accounts a record the producer refused before queueing it.
    fn delivery_failed_early(&self, pending: &Arc<Pending>) {
        if let Some(ev) = &self.events {
            ev.dropped(DropReason::SinkError, 1, &"the producer refused the record before queueing it");
        }
        pending.failed.fetch_add(1, Ordering::Relaxed);
        if pending.remaining.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(acks) = pending.acks.lock().ok().and_then(|mut a| a.take())
        {
            acks.settle(AckStatus::Rejected);
        }
    }
}

/// Logs clearly whether the topic exists (a missing topic is the most
/// common permanent failure: brokers often do not create topics).
async fn check_topic(producer: &Arc<ThreadedProducer<Delivery>>, topic: &str, name: &str) {
    let p = producer.clone();
    let t = topic.to_string();
    let md = tokio::task::spawn_blocking(move || {
        p.client()
            .fetch_metadata(Some(&t), Duration::from_secs(5))
            .map(|m| m.topics().first().map(|t| (t.error(), t.partitions().len())))
    })
    .await;
    match md {
        Ok(Ok(Some((None, parts)))) if parts > 0 => {
            if let Ok(mut t) = producer.context().topics.write() {
                t.insert(topic.to_string());
            }
            tracing::info!(component = name, topic, partitions = parts, "Kafka topic found")
        }
        Ok(Ok(_)) => tracing::error!(
            component = name,
            topic,
            "Kafka topic does not exist (and the broker does not create it): records for it will be dropped and counted. Create it first"
        ),
        Ok(Err(e)) => {
            tracing::warn!(component = name, topic, error = %e, "cannot reach the Kafka brokers yet; records are held and retried")
        }
        Err(_) => {}
    }
}
