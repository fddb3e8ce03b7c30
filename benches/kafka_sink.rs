//! Kafka sink throughput against a local tansu broker, JSON and protobuf,
//! beside a bare rdkafka producer loop sending the same bytes with the same
//! settings (idempotent, acks=all, lz4) in the same run. Reports records/s,
//! MB/s of payload, and our throughput as a ratio of the bare loop's.
//!
//! Run with `cargo bench --bench kafka_sink` (needs `tansu`; scripts/test.sh
//! builds it). Broker, producer and pipeline share the machine's cores.

use std::path::Path;
use std::time::{Duration, Instant};

use spillway_core::config;
use spillway_core::topology::{RunOptions, Topology};
use spillway_debug as _;
use spillway_kafka::Encoding;

mod common;

const N: u64 = 300_000;

fn ours(broker: &str, topic: &str, encoding: &str) -> f64 {
    let yaml = format!(
        "sources:\n  d: {{ type: demo, count: {N}, seed: 1, batch_size: 8192 }}\nsinks:\n  k: {{ type: kafka, inputs: [d], brokers: \"{broker}\", topic: {topic}, encoding: {encoding} }}\n"
    );
    let pipeline = config::load_str(&yaml, &|_| None, Path::new("")).expect("valid");
    let topology = Topology::build(pipeline, RunOptions::default()).expect("builds");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let t = Instant::now();
    rt.block_on(async move {
        topology.run(spillway_core::component::Shutdown::new()).await.expect("runs");
    });
    t.elapsed().as_secs_f64()
}

fn main() {
    let Some(mut broker) = common::Tansu::start("memory://tansu/") else { return };
    let addr = broker.addr().to_string();
    // The same records the demo source produces, encoded once for the bare loop.
    let mut g =
        spillway_debug::demo::FlowGenerator::new(1, 10, 1_700_000_000_000_000_000, Duration::from_millis(1));
    let batches: Vec<_> =
        (0..N / 8192 + 1).map(|i| g.batch(8192.min((N - (i * 8192).min(N)) as usize))).collect();
    for (name, enc) in [("json", Encoding::Json), ("protobuf", Encoding::Protobuf { length_delimited: true })]
    {
        let mut payloads = Vec::with_capacity(N as usize);
        let mut keys = Vec::with_capacity(N as usize);
        let mut bytes = 0usize;
        for b in batches.iter().filter(|b| b.num_rows() > 0) {
            bytes += common::messages(b, enc, &mut payloads, &mut keys);
        }
        let t_bare = common::bare_producer(&addr, &broker.topic("bench", 3), &payloads, &keys);
        let t_ours = ours(&addr, &broker.topic("bench", 3), name);
        let mb = bytes as f64 / 1e6;
        println!(
            "{name}: bare rdkafka loop {:.0} rec/s ({:.1} MB/s); spillway sink {:.0} rec/s ({:.1} MB/s); ratio {:.2}x ({} B/record)",
            N as f64 / t_bare,
            mb / t_bare,
            N as f64 / t_ours,
            mb / t_ours,
            t_bare / t_ours,
            bytes / N as usize
        );
    }
}
