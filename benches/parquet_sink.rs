//! Parquet sink throughput through the runner, beside a bare `ArrowWriter`
//! loop writing the same generated records with the same settings.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, AsArray, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use spillway_core::config;
use spillway_core::schema::{Addr, address_type, flow_schema};
use spillway_core::topology::{RunOptions, Topology};
use spillway_debug::demo::FlowGenerator;

use spillway_debug as _;
use spillway_parquet as _;

const RECORDS: u64 = 1_000_000;
const BATCH: usize = 4096;

fn dir_size(p: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(p).unwrap().flatten() {
        let m = e.metadata().unwrap();
        n += if m.is_dir() { dir_size(&e.path()) } else { m.len() };
    }
    n
}

/// The same work by hand: generate, render addresses, write with zstd.
fn baseline(dir: &Path) -> u64 {
    let schema = flow_schema();
    let out_schema = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                if f.data_type() == &address_type() {
                    Arc::new(Field::new(f.name(), DataType::Utf8, f.is_nullable()))
                } else {
                    f.clone()
                }
            })
            .collect::<Vec<_>>(),
    ));
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
        .build();
    let file = std::fs::File::create(dir.join("baseline.parquet")).unwrap();
    let mut w = ArrowWriter::try_new(file, out_schema.clone(), Some(props)).unwrap();
    let mut g = FlowGenerator::new(1, 10, 0, Duration::from_millis(1));
    let mut rows = 0u64;
    while rows < RECORDS {
        let n = BATCH.min((RECORDS - rows) as usize);
        let b = g.batch(n);
        let cols: Vec<ArrayRef> = b
            .columns()
            .iter()
            .map(|c| {
                if c.data_type() == &address_type() {
                    let bin = c.as_fixed_size_binary();
                    let mut s = StringBuilder::new();
                    for v in bin.iter() {
                        match v {
                            Some(v) => {
                                s.append_value(Addr::from_slice(v).unwrap().to_string());
                            }
                            None => s.append_null(),
                        }
                    }
                    Arc::new(s.finish()) as ArrayRef
                } else {
                    c.clone()
                }
            })
            .collect();
        w.write(&RecordBatch::try_new(out_schema.clone(), cols).unwrap()).unwrap();
        rows += n as u64;
    }
    w.close().unwrap();
    rows
}

fn through_sink(rt: &tokio::runtime::Runtime, dir: &Path) -> u64 {
    let yaml = format!(
        "sources:\n  flows: {{ type: demo, count: {RECORDS}, batch_size: {BATCH}, start_time: \"2026-01-01T00:00:00Z\" }}\n\
         sinks:\n  archive: {{ type: parquet, inputs: [flows], path: \"{}\", partition: \"dt=%Y-%m-%d/hour=%H\" }}\n",
        dir.join("sink").display()
    );
    let pipeline = config::load_str(&yaml, &|_| None, Path::new("")).expect("valid");
    let topology = Topology::build(pipeline, RunOptions::default()).expect("builds");
    let report = rt.block_on(topology.run(spillway_core::component::Shutdown::new())).expect("runs");
    report.ledger.iter().map(|e| e.delivered).sum()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // Size the byte throughput by what the sink really writes.
    through_sink(&rt, tmp.path());
    let bytes = dir_size(&tmp.path().join("sink"));
    eprintln!(
        "parquet output for {RECORDS} records: {bytes} bytes ({:.1} B/record)",
        bytes as f64 / RECORDS as f64
    );
    let mut g = c.benchmark_group("parquet");
    g.sample_size(10);
    g.throughput(Throughput::Elements(RECORDS));
    g.bench_function("baseline_arrow_writer", |b| b.iter(|| baseline(tmp.path())));
    g.bench_function("sink_rows", |b| b.iter(|| through_sink(&rt, tmp.path())));
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("sink_bytes", |b| b.iter(|| through_sink(&rt, tmp.path())));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
