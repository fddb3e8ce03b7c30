//! End to end: the built-in generator → `netflow` UDP source → blackhole (and
//! → Parquet) in one process, at rising rates; reports delivered/sent and the
//! kernel's drops for each, to find the highest rate with zero loss.
//!
//! A second table runs the blackhole case with the source's journal off
//! and on (each fsync policy), side by side in the same run, with the
//! process's CPU time per million records (generator included: the same
//! in every row, so differences are the journal's).
//!
//! Not a criterion bench (the measure is loss at a rate, not time per
//! iteration); run with `cargo bench --bench netflow_e2e`. The generator and
//! the collector share the machine's cores, so figures are conservative.

use std::path::Path;
use std::time::Duration;

use spillway_core::config;
use spillway_core::topology::{RunOptions, Topology};

use spillway_debug as _;
use spillway_netflow as _;
use spillway_parquet as _;

mod common;

fn run(rate: Option<u64>, seconds: u64, sink: &str, port: u16, journal: &str) -> (u64, u64, u64, f64) {
    let yaml = format!(
        "sources:\n  flows: {{ type: netflow, listen: \"127.0.0.1:{port}\", workers: 2, batch_size: 16384{journal} }}\nsinks:\n  out: {sink}\n"
    );
    let pipeline = config::load_str(&yaml, &|_| None, Path::new("")).expect("valid");
    let topology = Topology::build(pipeline, RunOptions::default()).expect("builds");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let shutdown = spillway_core::component::Shutdown::new();
        let running = tokio::spawn(topology.run(shutdown.clone()));
        let listen = format!("127.0.0.1:{port}").parse().unwrap();
        while !spillway_netflow::udp::is_listening(listen) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let opts = spillway_netflow::generate::Options {
            rate,
            count: rate.map(|r| r * seconds),
            duration: Some(Duration::from_secs(seconds)),
            ..spillway_netflow::generate::Options::v9_load(listen)
        };
        let t = std::time::Instant::now();
        let sent = tokio::task::spawn_blocking(move || spillway_netflow::generate::run(&opts))
            .await
            .unwrap()
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_millis(500)).await;
        shutdown.cancel();
        let report = running.await.unwrap().unwrap();
        let flows = report.ledger.iter().find(|e| e.component == "flows").unwrap();
        let delivered = report.ledger.iter().find(|e| e.component == "out").unwrap().delivered;
        let kernel = flows.dropped.get("buffer_full").copied().unwrap_or(0);
        (sent.records, delivered, kernel, secs)
    })
}

fn main() {
    // The generator holds a socket per exporter.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds = 3;
    println!(
        "{:<10} {:>12} {:>12} {:>12} {:>14} {:>10}",
        "sink", "target r/s", "sent", "delivered", "kernel drops", "sent r/s"
    );
    let mut port = 24_000;
    for sink in [
        "{ type: blackhole, inputs: [flows] }",
        "{ type: parquet, inputs: [flows], path: /tmp/spillway-e2e-bench }",
    ] {
        let name = if sink.contains("blackhole") { "blackhole" } else { "parquet" };
        for rate in [Some(500_000), Some(1_000_000), Some(2_000_000), Some(4_000_000), None] {
            port += 1;
            let _ = std::fs::remove_dir_all("/tmp/spillway-e2e-bench");
            let (sent, delivered, kernel, secs) = run(rate, seconds, sink, port, "");
            println!(
                "{name:<10} {:>12} {sent:>12} {delivered:>12} {kernel:>14} {:>10.0}",
                rate.map_or("max".into(), |r| r.to_string()),
                sent as f64 / secs
            );
        }
    }
    let _ = std::fs::remove_dir_all("/tmp/spillway-e2e-bench");
    println!();
    println!(
        "{:<16} {:>12} {:>12} {:>12} {:>14} {:>10} {:>14}",
        "journal", "target r/s", "sent", "delivered", "kernel drops", "sent r/s", "cpu s / M rec"
    );
    let dir = "/tmp/spillway-e2e-journal";
    for rate in [Some(1_000_000), Some(2_000_000), None] {
        for (name, journal) in [
            ("off", String::new()),
            ("fsync 1s", format!(", journal: {{ dir: {dir}, fsync: 1s }}")),
            ("fsync 100ms", format!(", journal: {{ dir: {dir}, fsync: 100ms }}")),
            ("fsync batch", format!(", journal: {{ dir: {dir}, fsync: batch }}")),
        ] {
            port += 1;
            let _ = std::fs::remove_dir_all(dir);
            let cpu = common::cpu_seconds();
            let (sent, delivered, kernel, secs) =
                run(rate, seconds, "{ type: blackhole, inputs: [flows] }", port, &journal);
            let cpu = common::cpu_seconds() - cpu;
            println!(
                "{name:<16} {:>12} {sent:>12} {delivered:>12} {kernel:>14} {:>10.0} {:>14.2}",
                rate.map_or("max".into(), |r| r.to_string()),
                sent as f64 / secs,
                cpu / (delivered.max(1) as f64 / 1e6)
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
