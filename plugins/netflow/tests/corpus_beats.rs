//! Filebeat's NetFlow test sessions (real vendor payloads) decode to the
//! number of flow and options events in Filebeat's golden files, with the
//! same addresses, ports, protocol, bytes and packets.

mod common;

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{UInt8Type, UInt16Type, UInt64Type};
use spillway_core::config::yaml;
use spillway_core::schema::Addr;

type Flow = (Option<String>, Option<String>, Option<u64>, Option<u64>, Option<u64>, Option<u64>, Option<u64>);

fn golden_flows(events: &[serde_json::Value]) -> (Vec<Flow>, usize) {
    let mut flows = Vec::new();
    let mut options = 0;
    for e in events {
        let f = &e["Fields"];
        if f["event"]["action"] == "netflow_options" {
            options += 1;
            continue;
        }
        let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
        flows.push((
            s(&f["source"]["ip"]),
            s(&f["destination"]["ip"]),
            f["source"]["port"].as_u64(),
            f["destination"]["port"].as_u64(),
            f["network"]["iana_number"].as_u64(),
            f["network"]["bytes"].as_u64(),
            f["network"]["packets"].as_u64(),
        ));
    }
    (flows, options)
}

fn our_flows(b: &RecordBatch) -> Vec<Flow> {
    let addr = |name: &str, i: usize| {
        let c = b.column_by_name(name).unwrap().as_fixed_size_binary();
        (!c.is_null(i)).then(|| Addr::from_slice(c.value(i)).unwrap().ip().to_string())
    };
    let u16c = |name: &str, i: usize| {
        let c = b.column_by_name(name).unwrap().as_primitive::<UInt16Type>();
        (!c.is_null(i)).then(|| c.value(i) as u64)
    };
    let proto = b.column_by_name("protocol").unwrap().as_primitive::<UInt8Type>();
    let bytes = b.column_by_name("bytes").unwrap().as_primitive::<UInt64Type>();
    let packets = b.column_by_name("packets").unwrap().as_primitive::<UInt64Type>();
    (0..b.num_rows())
        .map(|i| {
            (
                addr("src_addr", i),
                addr("dst_addr", i),
                u16c("src_port", i),
                u16c("dst_port", i),
                (!proto.is_null(i)).then(|| proto.value(i) as u64),
                Some(bytes.value(i)),
                Some(packets.value(i)),
            )
        })
        .collect()
}

/// Known, explained differences between Filebeat's events and ours.
fn explained(ours: &Flow, theirs: &Flow) -> bool {
    // Filebeat leaves network.bytes/packets out when the record has no
    // counter at all; we write 0 (the columns are not nullable).
    let counters = |a: &Option<u64>, b: &Option<u64>| a == b || (b.is_none() && *a == Some(0));
    // Filebeat reports ICMP type/code only in its own fields; we carry them in
    // the destination port as NetFlow v5 does.
    let icmp = matches!(ours.4, Some(1) | Some(58));
    let port = |a: &Option<u64>, b: &Option<u64>| a == b || (b.is_none() && *a == Some(0)) || icmp;
    // Procera exports a zero IPv4 and a real IPv6 address; Filebeat shows the
    // zero one, we keep the real one.
    let addr = |a: &Option<String>, b: &Option<String>| {
        a == b || (b.as_deref() == Some("0.0.0.0") && a.as_deref().is_some_and(|a| a.contains(':')))
    };
    addr(&ours.0, &theirs.0)
        && addr(&ours.1, &theirs.1)
        && port(&ours.2, &theirs.2)
        && port(&ours.3, &theirs.3)
        && (ours.4 == theirs.4 || theirs.4.is_none())
        && counters(&ours.5, &theirs.5)
        && counters(&ours.6, &theirs.6)
}

/// Sessions whose golden file does not describe the payload, checked by hand:
/// (test, our flow records, our options records, why).
const KNOWN_DIFFERENCES: [(&str, usize, usize, &str); 2] = [
    (
        "IPFIX",
        6,
        1,
        "the golden file holds 12 flow events but the payload holds 6 flow records and 1 options record \
         (tshark counts the same 7 data records); our 6 are among the golden 12",
    ),
    (
        "Netflow 9 invalid 01",
        2,
        1,
        "Filebeat rejects the packet because its header's record count (2) disagrees with its 5 records; \
         exporters miscount often, so we decode the 2 well-formed flows and 1 options record",
    ),
];

#[test]
fn every_beats_session_decodes_to_the_golden_events() {
    let Some(corpus) = common::corpus() else { return };
    let beats = corpus.join("beats");
    let doc =
        yaml::parse(&std::fs::read_to_string(beats.join("dat_tests.yaml")).unwrap(), &|_| None).unwrap();
    let tests = doc.get("tests").and_then(|t| t.as_map()).expect("tests").to_vec();
    let mut report = BTreeMap::new();
    let mut checked_events = 0;
    for (name, _) in &tests {
        let name = name.as_str().unwrap();
        let file = name.replace('-', "--").replace(',', "").replace([' ', '/'], "-");
        let golden: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(beats.join(format!("golden/{file}.golden.json"))).unwrap(),
        )
        .unwrap();
        let events = golden["events"].as_array().cloned().unwrap_or_default();
        let (mut want, want_options) = golden_flows(&events);
        let d = common::decode_capture(&beats.join(format!("pcap_from_dat/{file}.pcap")));
        let mut got = our_flows(&d.batch);
        checked_events += events.len();
        let mut problems = Vec::new();
        let biflows = d.decoder.stats.biflows as usize;
        if got.len() != want.len() + biflows {
            problems.push(format!(
                "{} flow records ({biflows} biflows split), golden has {}",
                got.len(),
                want.len()
            ));
        }
        if d.decoder.stats.options_records as usize != want_options {
            problems.push(format!(
                "{} options records, golden has {want_options}",
                d.decoder.stats.options_records
            ));
        }
        // Match each golden flow to one of ours, or to a pair of ours: a
        // biflow (RFC 5103 reverse counters, NSEL initiator/responder) is one
        // Filebeat event with both directions' counters summed and two
        // directional records here, whose counters add up to the event's.
        for w in &want {
            if let Some(i) = got.iter().position(|g| explained(g, w)) {
                got.swap_remove(i);
                continue;
            }
            let pair = got.iter().enumerate().find_map(|(i, f)| {
                let j = got
                    .iter()
                    .position(|r| r.0 == f.1 && r.1 == f.0 && r.2 == f.3 && r.3 == f.2 && r.4 == f.4)?;
                let sum = |a: Option<u64>, b: Option<u64>| Some(a.unwrap_or(0) + b.unwrap_or(0));
                let merged =
                    (f.0.clone(), f.1.clone(), f.2, f.3, f.4, sum(f.5, got[j].5), sum(f.6, got[j].6));
                (i != j && explained(&merged, w)).then_some((i, j))
            });
            match pair {
                Some((i, j)) => {
                    let (a, b) = (i.max(j), i.min(j));
                    got.swap_remove(a);
                    got.swap_remove(b);
                }
                None => problems.push(format!("golden flow {w:?} not decoded")),
            }
        }
        if let Some((_, flows, options, _)) = KNOWN_DIFFERENCES.iter().find(|(t, ..)| *t == name) {
            // Explained below: our own counts are pinned instead, and for the
            // first case everything we decode must be among the golden events.
            problems.clear();
            let total = d.batch.num_rows();
            if total != *flows || d.decoder.stats.options_records as usize != *options {
                problems.push(format!(
                    "expected {flows} flows and {options} options records, got {total} and {}",
                    d.decoder.stats.options_records
                ));
            }
            if name == "IPFIX" && !got.is_empty() {
                problems.push(format!("decoded flows not in the golden file: {got:?}"));
            }
        }
        want.clear();
        if !problems.is_empty() {
            for g in got.iter().take(3) {
                problems.push(format!("unmatched decoded flow {g:?}"));
            }
            problems.truncate(8);
            report.insert(name.to_string(), (problems, d.errors.clone()));
        }
    }
    assert!(checked_events >= 400, "the golden files hold 510 events; checked {checked_events}");
    let text: Vec<String> = report.iter().map(|(k, v)| format!("{k}: {v:?}")).collect();
    assert!(report.is_empty(), "{} of {} sessions differ:\n{}", report.len(), tests.len(), text.join("\n"));
}
