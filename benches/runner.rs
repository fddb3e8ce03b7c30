//! Runner overhead: demo → blackhole through the topology, beside a bare loop
//! that builds the same batches with the same generator.

use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spillway_core::config;
use spillway_core::topology::{RunOptions, Topology};
use spillway_debug::demo::FlowGenerator;

use spillway_debug as _;

const RECORDS: u64 = 1_000_000;
const BATCH: usize = 4096;

fn bare_loop() -> u64 {
    let mut g = FlowGenerator::new(1, 10, 0, Duration::from_millis(1));
    let mut rows = 0u64;
    while rows < RECORDS {
        let n = BATCH.min((RECORDS - rows) as usize);
        rows += std::hint::black_box(g.batch(n)).num_rows() as u64;
    }
    rows
}

fn through_runner(rt: &tokio::runtime::Runtime, fan_out: usize) -> u64 {
    let mut yaml = format!(
        "sources:\n  flows: {{ type: demo, count: {RECORDS}, batch_size: {BATCH}, start_time: \"2026-01-01T00:00:00Z\" }}\nsinks:\n"
    );
    for i in 0..fan_out {
        yaml.push_str(&format!("  out{i}: {{ type: blackhole, inputs: [flows] }}\n"));
    }
    let pipeline = config::load_str(&yaml, &|_| None, Path::new("")).expect("valid");
    let topology = Topology::build(pipeline, RunOptions::default()).expect("builds");
    let report = rt.block_on(topology.run(spillway_core::component::Shutdown::new())).expect("runs");
    report.ledger.iter().filter(|e| e.component.starts_with("out")).map(|e| e.delivered).sum()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut g = c.benchmark_group("demo_to_blackhole");
    g.sample_size(10).throughput(Throughput::Elements(RECORDS));
    g.bench_function("baseline_bare_loop", |b| b.iter(bare_loop));
    g.bench_function("runner_one_sink", |b| b.iter(|| through_runner(&rt, 1)));
    g.bench_function("runner_fan_out_3", |b| b.iter(|| through_runner(&rt, 3)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
