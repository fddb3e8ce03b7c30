//! What each Parquet sink setting costs and saves, in one run: the same
//! 2,000,000 demo flow records through the `parquet` sink with each
//! compression codec, address form and dictionary choice, beside the same
//! records into a blackhole. Prints the process's CPU microseconds per
//! record above the blackhole row (what storing costs), the ratio to the
//! default settings, and bytes per record on disk.
//!
//! Not a criterion bench (one pass per row, CPU time, not wall time); run
//! with `cargo bench --bench parquet_settings`.

use std::path::Path;

use spillway_core::config;
use spillway_core::topology::{RunOptions, Topology};

use spillway_debug as _;
use spillway_parquet as _;

mod common;

const RECORDS: u64 = 2_000_000;

fn dir_size(p: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(p) else { return 0 };
    entries
        .flatten()
        .map(|e| {
            let m = e.metadata().unwrap();
            if m.is_dir() { dir_size(&e.path()) } else { m.len() }
        })
        .sum()
}

/// CPU seconds for the demo records into `sink`.
fn run(rt: &tokio::runtime::Runtime, sink: &str) -> f64 {
    let yaml = format!(
        "sources:\n  flows: {{ type: demo, count: {RECORDS}, batch_size: 16384, seed: 7, start_time: \"2026-01-01T00:00:00Z\" }}\n\
         sinks:\n  out: {sink}\n"
    );
    let pipeline = config::load_str(&yaml, &|_| None, Path::new("")).expect("valid");
    let topology = Topology::build(pipeline, RunOptions::default()).expect("builds");
    let cpu = common::cpu_seconds();
    let report = rt.block_on(topology.run(spillway_core::component::Shutdown::new())).expect("runs");
    let cpu = common::cpu_seconds() - cpu;
    let out = report.ledger.iter().find(|e| e.component == "out").unwrap();
    assert_eq!(out.delivered, RECORDS, "{:?}", report.ledger);
    cpu
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out");
    let rows: [(&str, &str); 12] = [
        ("zstd 1, string addresses (default)", ""),
        ("zstd 3", ", zstd_level: 3"),
        ("zstd -1", ", zstd_level: -1"),
        ("zstd -3", ", zstd_level: -3"),
        ("zstd -5", ", zstd_level: -5"),
        ("lz4", ", compression: lz4"),
        ("snappy", ", compression: snappy"),
        ("none", ", compression: none"),
        ("zstd 1, binary addresses", ", addresses: binary"),
        ("lz4, binary addresses", ", compression: lz4, addresses: binary"),
        ("zstd 1, no dictionary", ", dictionary: []"),
        ("lz4, binary, no dictionary", ", compression: lz4, addresses: binary, dictionary: []"),
    ];
    // Twice over, alternating, so drift on a shared machine shows.
    for round in 1..=2 {
        let base = run(&rt, "{ type: blackhole, inputs: [flows] }");
        println!(
            "round {round}: demo → blackhole {:.3} µs/record (subtracted below)",
            base * 1e6 / RECORDS as f64
        );
        println!("{:<36} {:>14} {:>12} {:>12}", "parquet settings", "µs/record", "× default", "B/record");
        let mut default = None;
        for (name, extra) in rows {
            let _ = std::fs::remove_dir_all(&path);
            let cpu = run(
                &rt,
                &format!("{{ type: parquet, inputs: [flows], path: \"{}\"{extra} }}", path.display()),
            );
            let us = (cpu - base).max(0.0) * 1e6 / RECORDS as f64;
            let d = *default.get_or_insert(us);
            println!(
                "{name:<36} {us:>14.3} {:>12.2} {:>12.1}",
                us / d.max(1e-9),
                dir_size(&path) as f64 / RECORDS as f64
            );
        }
    }
}
