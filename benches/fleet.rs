//! The fleet's costs (issue 14), each beside a baseline measured in the
//! same run, against a local tansu broker:
//!
//! 1. **Relay into Kafka**: the generator → a `netflow` source with
//!    `relay: true` (journaled, so the socket is always drained) → the
//!    `kafka` sink with `encoding: datagram`, datagrams/s from the first
//!    datagram sent to the last acknowledged; beside a bare rdkafka producer
//!    loop sending the same number of datagram records of the same shape
//!    (built by the same generator code and encoded by the sink's encoder).
//! 2. **Decode tier**: the relayed topic read by a `kafka` source →
//!    `netflow_decode` → blackhole, records/s; beside the same topic read
//!    by a `kafka` source → blackhole (no decoding), in records/s of the
//!    datagrams it carried. Both timed from the first record delivered to
//!    the last (the consumer group's join is not counted).
//! 3. **The shared store on the hot path** when templates do not change
//!    (every exporter refreshes the same templates every 20 packets): a
//!    `netflow` source → blackhole at a fixed rate with no store, a file
//!    store and a Kafka store, alternating, with the process's CPU seconds
//!    per million records (the generator's CPU is in every row alike).
//!
//! Not a criterion bench; run with `cargo bench --bench fleet` (needs
//! `tansu`; scripts/test.sh installs it). Broker, generator and pipeline
//! share the machine's cores.

use std::path::Path;
use std::time::{Duration, Instant};

use spillway_core::config;
use spillway_core::ledger::Ledger;
use spillway_core::topology::{RunOptions, Topology};
use spillway_kafka::Encoding;
use spillway_netflow::generate;

use spillway_debug as _;

mod common;

/// Datagrams relayed in the first table (30 records each).
const DATAGRAMS: u64 = 60_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn delivered(ledger: &Ledger, sink: &str) -> u64 {
    ledger.get(sink).map_or(0, |l| l.snapshot().delivered)
}

/// Runs `yaml`, calls `start` (on a thread of its own) once the pipeline is
/// ready, and stops the pipeline when `sink` has delivered `want` rows or
/// made no progress for 5 s after `start` returned. Returns what was
/// delivered, the instants of the first and of the last delivery, and what
/// `start` returned.
fn run_until<T: Send + 'static>(
    yaml: &str,
    sink: &str,
    want: u64,
    start: impl FnOnce() -> T + Send + 'static,
) -> (u64, Instant, Instant, T) {
    let pipeline = config::load_str(yaml, &|_| None, Path::new("")).expect("valid");
    let topology = Topology::build(pipeline, RunOptions::default()).expect("builds");
    let ledger = topology.ledger().clone();
    let mut readiness = topology.readiness();
    runtime().block_on(async move {
        let shutdown = spillway_core::component::Shutdown::new();
        let running = tokio::spawn(topology.run(shutdown.clone()));
        // Ready: sockets bound and the shared store read (its warm-up).
        let _ = readiness.wait_for(|r| *r).await;
        let ready = tokio::task::spawn_blocking(start);
        let (mut first, mut last, mut seen) = (None, Instant::now(), 0);
        let mut started = false;
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if !started && ready.is_finished() {
                started = true;
                last = Instant::now();
            }
            let n = delivered(&ledger, sink);
            if n > seen {
                seen = n;
                last = Instant::now();
                first.get_or_insert(last);
            }
            if seen >= want || (started && last.elapsed() > Duration::from_secs(5)) {
                break;
            }
        }
        shutdown.cancel();
        let started = ready.await.expect("the start thread");
        let report = running.await.unwrap().unwrap();
        assert!(report.imbalances.is_empty(), "{:?}", report.imbalances);
        if seen < want {
            for e in report.ledger.iter().filter(|e| !e.dropped.is_empty()) {
                println!("    {} dropped {:?}", e.component, e.dropped);
            }
        }
        (seen, first.unwrap_or(last), last, started)
    })
}

/// The benches' v9 load to `listen` at `rate` records/s, `count` records;
/// returns when it was started and what it sent.
fn send(listen: std::net::SocketAddr, rate: u64, count: u64) -> (Instant, generate::Totals) {
    let opts =
        generate::Options { rate: Some(rate), count: Some(count), ..generate::Options::v9_load(listen) };
    (Instant::now(), generate::run(&opts).expect("the generator runs"))
}

/// The relay's datagram records for `datagrams` generated v9 datagrams,
/// encoded as the `kafka` sink encodes them, with their keys.
fn datagram_records(datagrams: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut relay = spillway_netflow::relay::Relay::new(std::net::Ipv4Addr::LOCALHOST.into(), 2055);
    for (i, m) in generate::messages(9, 1000, datagrams, 30, 1) {
        relay.push(1_700_000_000_000_000_000, generate::exporter_addr(i).into(), 40_000, &m);
    }
    let (batch, _, _) = relay.take().expect("datagrams");
    let (mut payloads, mut keys) = (Vec::new(), Vec::new());
    common::messages(&batch, Encoding::Datagram, &mut payloads, &mut keys);
    (payloads, keys)
}

fn main() {
    // The generator holds a socket per exporter.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Some(mut broker) = common::Tansu::start("memory://tansu/") else { return };
    let addr = broker.addr().to_string();
    let dir = tempfile::tempdir().unwrap();

    // 1. Relay into Kafka.
    let (payloads, keys) = datagram_records(DATAGRAMS as usize);
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    let t_bare = common::bare_producer(&addr, &broker.topic("bare", 4), &payloads, &keys);
    let raw = broker.topic("raw", 4);
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let journal = dir.path().join("journal");
    let yaml = format!(
        "sources:\n  udp: {{ type: netflow, listen: \"127.0.0.1:{port}\", relay: true, workers: 2, journal: {{ dir: \"{}\" }} }}\n\
         sinks:\n  k: {{ type: kafka, inputs: [udp], brokers: \"{addr}\", topic: {raw}, encoding: datagram }}\n",
        journal.display()
    );
    let listen: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (relayed, _, last, (t_send, totals)) =
        run_until(&yaml, "k", DATAGRAMS, move || send(listen, 2_000_000, DATAGRAMS * 30));
    let t_ours = last.duration_since(t_send).as_secs_f64();
    println!(
        "relay into Kafka ({DATAGRAMS} datagrams of 30 v9 records, {} B per datagram record on average)",
        bytes / payloads.len()
    );
    println!("  bare rdkafka producer loop   {:>10.0} datagrams/s", DATAGRAMS as f64 / t_bare);
    println!(
        "  netflow relay → kafka sink   {:>10.0} datagrams/s   {:.2}× the bare loop   ({relayed} of {} sent delivered)",
        relayed as f64 / t_ours,
        (relayed as f64 / t_ours) / (DATAGRAMS as f64 / t_bare),
        totals.packets
    );

    // 2. Decode tier, from the relayed topic.
    let read = |decode: bool, group: &str, want: u64| {
        let (input, transforms) = if decode {
            ("flows", "transforms:\n  flows: { type: netflow_decode, inputs: [raw] }\n")
        } else {
            ("raw", "")
        };
        let yaml = format!(
            "sources:\n  raw: {{ type: kafka, brokers: \"{addr}\", topics: [{raw}], group: {group}, encoding: datagram }}\n\
             {transforms}sinks:\n  out: {{ type: blackhole, inputs: [{input}] }}\n"
        );
        let (n, first, last, ()) = run_until(&yaml, "out", want, || {});
        (n, last.duration_since(first).as_secs_f64().max(1e-3))
    };
    let (datagrams, t_read) = read(false, "plain", relayed);
    let (records, t_decode) = read(true, "decoders", relayed * 30);
    let read_rate = datagrams as f64 * 30.0 / t_read;
    let decode_rate = records as f64 / t_decode;
    println!("decode tier, from that topic");
    println!(
        "  kafka source → blackhole                      {read_rate:>10.0} records/s (of the datagrams it read: {datagrams})"
    );
    println!(
        "  kafka source → netflow_decode → blackhole     {decode_rate:>10.0} records/s   {:.2}× reading alone   ({records} records)",
        decode_rate / read_rate
    );

    // 3. The shared store's cost when templates do not change.
    println!("shared template store on the hot path (netflow → blackhole, 1,000,000 records/s for 3 s)");
    let state_topic = broker.topic("state", 1);
    let mut port = port;
    for round in 0..2 {
        for (name, store) in [
            ("no store", String::new()),
            (
                "file store",
                format!(", shared_state: {{ type: file, path: \"{}\" }}", dir.path().join("state").display()),
            ),
            (
                "kafka store",
                format!(", shared_state: {{ type: kafka, brokers: \"{addr}\", topic: {state_topic} }}"),
            ),
        ] {
            port += 1;
            let yaml = format!(
                "sources:\n  flows: {{ type: netflow, listen: \"127.0.0.1:{port}\", workers: 2, batch_size: 16384{store} }}\n\
                 sinks:\n  out: {{ type: blackhole, inputs: [flows] }}\n"
            );
            let listen: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let cpu = common::cpu_seconds();
            let (n, _, _, (_, sent)) =
                run_until(&yaml, "out", 3_000_000, move || send(listen, 1_000_000, 3_000_000));
            let cpu = common::cpu_seconds() - cpu;
            println!(
                "  round {} {name:<12} {n:>9} of {:>9} records delivered   {:.2} CPU s per M records",
                round + 1,
                sent.records,
                cpu / (n.max(1) as f64 / 1e6)
            );
        }
    }
}
