//! Transform throughput through the runner (demo → transform → blackhole),
//! beside a pass-through transform (`select` keeping every column) in the
//! same run. Every pipeline also feeds a `table` sink (for `enrich`), so the
//! baseline carries the same load.

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spillway_core::config;
use spillway_core::topology::{RunOptions, Topology};

use spillway_debug as _;
use spillway_transforms as _;

const RECORDS: u64 = 1_000_000;

fn run(rt: &tokio::runtime::Runtime, transform: &str) -> u64 {
    let yaml = format!(
        "sources:\n  flows: {{ type: demo, count: {RECORDS}, batch_size: 8192, start_time: \"2026-01-01T00:00:00Z\" }}\n\
         transforms:\n  t: {{ inputs: [flows], {transform} }}\nsinks:\n  out: {{ type: blackhole, inputs: [t] }}\n\
         \x20 if_table: {{ type: table, inputs: [flows], key: [exporter, in_if] }}\n"
    );
    let pipeline = config::load_str(&yaml, &|_| None, Path::new("")).expect("valid");
    let topology = Topology::build(pipeline, RunOptions::default()).expect("builds");
    let report = rt.block_on(topology.run(spillway_core::component::Shutdown::new())).expect("runs");
    report.ledger.iter().find(|e| e.component == "t").map_or(0, |e| e.received)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut g = c.benchmark_group("transforms");
    g.sample_size(10).throughput(Throughput::Elements(RECORDS));
    for (name, t) in [
        ("passthrough_select", "type: select, drop: []"),
        ("sample_hash_5tuple", "type: sample, mode: hash, rate: 10"),
        ("sample_random", "type: sample, mode: random, rate: 10"),
        ("sample_upscale", "type: sample, mode: upscale"),
        (
            "filter_proto_ports_prefix",
            "type: filter, condition: \"protocol == 6 and dst_port in [80, 443] and src_addr in 192.0.2.0/24\"",
        ),
        (
            "enrich_table_exporter_if",
            "type: enrich, table: if_table, on: { exporter: exporter, in_if: in_if }, fields: [packets], prefix: last_",
        ),
        ("enrich_cidr_3_prefixes", "type: enrich_cidr, file: ./pipelines/customers.csv, field: src_addr"),
        (
            "geoip_city_asn_2_fields",
            "type: geoip, fields: [src_addr, dst_addr], geo: ./pipelines/geoip/example-city.mmdb, asn: ./pipelines/geoip/example-asn.mmdb",
        ),
        (
            "aggregate_1m_by_exporter_if",
            "type: aggregate, window: 1m, group_by: [exporter, in_if], aggregates: { bytes: sum(bytes), flows: count() }",
        ),
        (
            "select_keep_rename_add",
            "type: select, keep: [exporter, in_if, bytes], rename: { in_if: i }, add: { site: x }",
        ),
    ] {
        g.bench_function(name, |b| b.iter(|| run(&rt, t)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
