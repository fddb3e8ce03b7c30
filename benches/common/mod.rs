//! What the benches share: a tansu broker of their own, messages encoded
//! as the `kafka` sink encodes them and a bare producer loop to send them,
//! the process's CPU time. Each bench uses part of it.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

/// A tansu broker on a free loopback port, stopped on drop.
pub struct Tansu {
    child: Child,
    url: String,
    addr: String,
    topics: u32,
    _dir: tempfile::TempDir,
}

impl Tansu {
    /// Starts one on `storage` (`memory://tansu/`, `sqlite://tansu.db` in
    /// a directory of its own); `None` (with a line on stderr) when tansu
    /// is not installed or does not start within 20 s.
    pub fn start(storage: &str) -> Option<Self> {
        if Command::new("tansu").arg("--version").stdout(Stdio::null()).status().is_err() {
            eprintln!("tansu is not installed: run scripts/test.sh first");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new("tansu")
            .current_dir(dir.path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                storage,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = format!("127.0.0.1:{port}");
        let broker = Self { child, url, addr, topics: 0, _dir: dir };
        let t = Instant::now();
        while std::net::TcpStream::connect(&broker.addr).is_err() {
            if t.elapsed() > Duration::from_secs(20) {
                eprintln!("tansu did not start within 20 s");
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(broker)
    }

    /// `host:port` for clients.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// A topic named `name` of `partitions` partitions.
    pub fn create(&self, name: &str, partitions: u32) -> bool {
        Command::new("tansu")
            .args(["topic", "create", "--broker", &self.url, "--partitions", &partitions.to_string(), name])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A new topic of `partitions` partitions, named `{prefix}{n}`.
    pub fn topic(&mut self, prefix: &str, partitions: u32) -> String {
        self.topics += 1;
        let t = format!("{prefix}{}", self.topics);
        assert!(self.create(&t, partitions), "tansu topic create {t}");
        t
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Seconds a bare rdkafka producer loop takes to send `payloads` (with
/// `keys`) to `topic` and have every one acknowledged, with the `kafka`
/// sink's settings (idempotent, acks=all, lz4, 5 ms linger).
pub fn bare_producer(broker: &str, topic: &str, payloads: &[Vec<u8>], keys: &[Vec<u8>]) -> f64 {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "262144")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let t = Instant::now();
    for (v, k) in payloads.iter().zip(keys) {
        let mut r = BaseRecord::to(topic).payload(v).key(k);
        loop {
            match p.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    while p.in_flight_count() > 0 {
        let _ = p.flush(Duration::from_millis(100));
    }
    t.elapsed().as_secs_f64()
}

/// CPU seconds this process has used (user + system).
pub fn cpu_seconds() -> f64 {
    cpu_seconds_of("self")
}

/// CPU seconds process `pid` (a number, or `self`) has used (user + system).
pub fn cpu_seconds_of(pid: impl std::fmt::Display) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state first,
    // utime the 12th, stime the 13th, in clock ticks (100 per second on
    // Linux). Not every field is unsigned (tpgid is -1 without a terminal).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / 100.0
}

/// Appends `batch`'s rows encoded as the `kafka` sink encodes them (one
/// message each) to `payloads`, with their keys (the `exporter` column, the
/// sink's default key) to `keys`; returns the payload bytes added.
pub fn messages(
    batch: &arrow::array::RecordBatch,
    encoding: spillway_kafka::Encoding,
    payloads: &mut Vec<Vec<u8>>,
    keys: &mut Vec<Vec<u8>>,
) -> usize {
    let mut e = spillway_kafka::Encoder::new(encoding, &batch.schema());
    let (mut buf, mut ends) = (Vec::new(), Vec::new());
    e.encode(batch, &mut buf, &mut ends);
    let ex = batch.column_by_name("exporter").expect("an exporter column");
    let mut start = 0;
    for (row, end) in ends.into_iter().enumerate() {
        payloads.push(buf[start..end].to_vec());
        start = end;
        let mut k = Vec::new();
        spillway_kafka::write_key(ex.as_ref(), row, &mut k);
        keys.push(k);
    }
    buf.len()
}
