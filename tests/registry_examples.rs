//! Every registered component's example config is valid and builds, and the
//! component reference in docs/ matches the registry.

mod common;

use std::path::Path;

use spillway_core::config;
use spillway_core::ledger::ComponentKind;
use spillway_core::registry;
use spillway_core::topology::{RunOptions, Topology};

// Link the plugin crates so their registrations are present.
use spillway_debug as _;
use spillway_kafka as _;
use spillway_netflow as _;
use spillway_parquet as _;
use spillway_snmp as _;
use spillway_transforms as _;
use spillway_wasm as _;

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

#[test]
fn every_registered_example_builds() {
    let all = registry::all();
    let names: Vec<&str> = all.iter().map(|r| r.name).collect();
    for expected in [
        "demo",
        "netflow",
        "pcap",
        "parquet",
        "file",
        "stdout",
        "blackhole",
        "sample",
        "filter",
        "aggregate",
        "select",
        "enrich_cidr",
        "enrich",
        "table",
        "snmp",
        "kafka",
        "wasm",
        "netflow_decode",
        "sflow",
        "geoip",
    ] {
        assert!(names.contains(&expected), "`{expected}` is not registered: {names:?}");
    }
    for r in all {
        let mut example = r.example.to_string();
        // The pcap example names a capture a user would have: give it one
        // (an empty capture, a header and no records).
        let capture = tempfile::tempdir().unwrap();
        let pcap = capture.path().join("export.pcap");
        let mut header = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        header.extend_from_slice(&[0; 8]);
        header.extend_from_slice(&65535u32.to_le_bytes());
        header.extend_from_slice(&1u32.to_le_bytes());
        std::fs::write(&pcap, header).unwrap();
        example = example.replace("./export.pcap", pcap.to_str().unwrap());
        if r.name == "wasm" {
            // The example names a plugin path a user would have; run it
            // with the SDK example of that name, built from source.
            if !common::have_wasm_toolchain() {
                continue;
            }
            let built = common::guests().join("customer_tag.wasm");
            example = example.replace("plugins/customer_tag.wasm", built.to_str().unwrap());
        }
        let yaml = match r.kind {
            // A decoder of relayed datagrams reads a relaying source.
            ComponentKind::Transform if r.name == "netflow_decode" => format!(
                "sources:\n  raw: {{ type: netflow, listen: \"127.0.0.1:0\", relay: true }}\ntransforms:\n  it:\n{}sinks:\n  out: {{ type: blackhole, inputs: [it] }}\n",
                indent(&example)
            ),
            ComponentKind::Source => format!(
                "sources:\n  it:\n{}sinks:\n  out: {{ type: blackhole, inputs: [it] }}\n",
                indent(&example)
            ),
            ComponentKind::Transform => format!(
                // `if_table` is there for examples that read a table.
                "sources:\n  flows: {{ type: demo, count: 1 }}\ntransforms:\n  it:\n{}sinks:\n  out: {{ type: blackhole, inputs: [it] }}\n  if_table: {{ type: table, inputs: [flows], key: [exporter, in_if] }}\n",
                indent(&example)
            ),
            ComponentKind::Sink => {
                format!("sources:\n  flows: {{ type: demo, count: 1 }}\nsinks:\n  it:\n{}", indent(&example))
            }
        };
        let pipeline = config::load_str(&yaml, &|_| None, Path::new(""))
            .unwrap_or_else(|e| panic!("example of `{}` is invalid: {e:?}\n{yaml}", r.name));
        if let Err(e) = Topology::build(pipeline, RunOptions::default()) {
            panic!("example of `{}` does not build: {e}", r.name);
        }
    }
}

#[test]
fn the_component_reference_matches_the_registry() {
    let out = common::spillway().args(["plugins", "--markdown"]).output().unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let path = common::root().join("docs/components.md");
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/components.md is out of date: run `cargo run -- plugins --markdown > docs/components.md`"
    );
}

#[test]
fn plugins_json_lists_every_component_with_its_example() {
    let out = common::spillway().args(["plugins", "--json"]).output().unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), registry::all().len());
    assert!(list.iter().all(|c| !c["description"].as_str().unwrap().is_empty()
        && c["example"].as_str().unwrap().contains("type:")));
}
