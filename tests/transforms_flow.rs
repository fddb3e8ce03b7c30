//! The `sample` and `select` transforms through the engine: hash sampling
//! agrees across runs and pipelines, upscaling is exact, random sampling
//! keeps its fraction, and every sampled-out record is in the ledger.

mod common;

fn run(dir: &std::path::Path, yaml: &str) -> serde_json::Value {
    let p = common::write_pipeline(dir, yaml);
    let (out, ledger) = common::run_pipeline(dir, &p);
    assert!(out.status.success(), "{}", common::text(&out));
    common::assert_balanced(&ledger);
    ledger
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn hash_sampling_keeps_the_same_flows_in_every_run_and_pipeline() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let base = "sources:\n  flows: { type: demo, count: 100000, seed: 5, start_time: \"2026-01-01T00:00:00Z\", batch_size: BATCH }\n";
    let one = format!(
        "{}transforms:\n  s: {{ type: sample, inputs: [flows], mode: hash, rate: 10 }}\nsinks:\n  out: {{ type: file, inputs: [s], path: ./kept.jsonl }}\n",
        base.replace("BATCH", "4096")
    );
    // A different pipeline: other batch sizes and a select before sampling.
    let two = format!(
        "{}transforms:\n  slim: {{ type: select, inputs: [flows], drop: [next_hop] }}\n  s: {{ type: sample, inputs: [slim], mode: hash, rate: 10 }}\nsinks:\n  out: {{ type: file, inputs: [s], path: ./kept.jsonl }}\n",
        base.replace("BATCH", "777")
    );
    let la = run(a.path(), &one);
    run(b.path(), &one);
    run(c.path(), &two);
    let (ka, kb, kc) = (
        lines(&a.path().join("kept.jsonl")),
        lines(&b.path().join("kept.jsonl")),
        lines(&c.path().join("kept.jsonl")),
    );
    assert_eq!(ka, kb, "two runs keep the same flows");
    let tuple = |l: &String| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        (v["time_received"].clone(), v["src_addr"].clone(), v["src_port"].clone())
    };
    assert_eq!(ka.iter().map(tuple).collect::<Vec<_>>(), kc.iter().map(tuple).collect::<Vec<_>>());
    let kept = ka.len() as u64;
    assert!((8_000..12_000).contains(&kept), "about 1 in 10: {kept}");
    let s = common::entry(&la, "s");
    assert_eq!(s["dropped"]["sampled_out"].as_u64().unwrap(), 100_000 - kept);
    assert_eq!(s["emitted"].as_u64().unwrap(), kept);
    // Each kept record now stands for 10.
    let first: serde_json::Value = serde_json::from_str(&ka[0]).unwrap();
    assert_eq!(first["sampling_rate"], 10);
}

#[test]
fn random_sampling_keeps_its_fraction() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = run(
        dir.path(),
        "sources:\n  flows: { type: demo, count: 1000000, seed: 9 }\ntransforms:\n  s: { type: sample, inputs: [flows], mode: random, rate: 10, seed: 3 }\nsinks:\n  out: { type: blackhole, inputs: [s] }\n",
    );
    let kept = common::entry(&ledger, "out")["delivered"].as_u64().unwrap();
    // Binomial(1e6, 0.1): mean 100,000, sd 300; allow 6 sd.
    assert!((98_200..101_800).contains(&kept), "kept {kept}");
    assert_eq!(common::entry(&ledger, "s")["dropped"]["sampled_out"].as_u64().unwrap(), 1_000_000 - kept);
}

#[test]
fn upscaling_multiplies_counters_by_the_rate_and_keeps_the_raw_ones() {
    let Some(corpus) = common::corpus() else { return };
    let dir = tempfile::tempdir().unwrap();
    let capture = corpus.join("softflowd/v9/export_v9.pcap");
    run(
        dir.path(),
        &format!(
            "sources:\n  replay: {{ type: pcap, path: \"{}\", sampling: {{ overrides: {{ \"127.0.0.0/8\": 64 }} }} }}\n\
             transforms:\n  up: {{ type: sample, inputs: [replay], mode: upscale }}\n\
             sinks:\n  out: {{ type: file, inputs: [up], path: ./up.jsonl }}\n",
            capture.display()
        ),
    );
    let (mut bytes, mut raw_bytes, mut packets, mut raw_packets) = (0u64, 0u64, 0u64, 0u64);
    for l in lines(&dir.path().join("up.jsonl")) {
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["sampling_rate"], 64);
        // softflowd says 1 in its options data; the override wins.
        assert_eq!(v["sampling_source"], "override");
        assert_eq!(v["bytes"].as_u64().unwrap(), v["bytes_raw"].as_u64().unwrap() * 64);
        bytes += v["bytes"].as_u64().unwrap();
        raw_bytes += v["bytes_raw"].as_u64().unwrap();
        packets += v["packets"].as_u64().unwrap();
        raw_packets += v["packets_raw"].as_u64().unwrap();
    }
    // The corpus totals, exactly, and 64 times them.
    assert_eq!((raw_bytes, raw_packets), (9_701_825, 27_879));
    assert_eq!((bytes, packets), (9_701_825 * 64, 27_879 * 64));
}

#[test]
fn select_keeps_renames_and_adds_columns() {
    let dir = tempfile::tempdir().unwrap();
    run(
        dir.path(),
        "sources:\n  flows: { type: demo, count: 10 }\ntransforms:\n  s: { type: select, inputs: [flows], keep: [exporter, in_if, bytes], rename: { in_if: interface }, add: { site: fra1, weight: 2 } }\nsinks:\n  out: { type: file, inputs: [s], path: ./s.jsonl }\n",
    );
    let l = lines(&dir.path().join("s.jsonl"));
    assert_eq!(l.len(), 10);
    let v: serde_json::Value = serde_json::from_str(&l[0]).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, vec!["bytes", "exporter", "interface", "site", "weight"]);
    assert_eq!(v["site"], "fra1");
    assert_eq!(v["weight"], 2);
}

#[test]
fn filter_keeps_exactly_the_matching_records_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = run(
        dir.path(),
        "sources:\n  flows: { type: demo, count: 50000, seed: 2 }\ntransforms:\n  web: { type: filter, inputs: [flows], condition: \"protocol == 6 and dst_port in [80, 443] and src_addr in 192.0.2.0/24\" }\nsinks:\n  all: { type: file, inputs: [flows], path: ./all.jsonl }\n  kept: { type: file, inputs: [web], path: ./kept.jsonl }\n",
    );
    let all = lines(&dir.path().join("all.jsonl"));
    let kept = lines(&dir.path().join("kept.jsonl"));
    let expected: Vec<&String> = all
        .iter()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["protocol"] == 6
                && (v["dst_port"] == 80 || v["dst_port"] == 443)
                && v["src_addr"].as_str().unwrap().starts_with("192.0.2.")
        })
        .collect();
    assert!(!expected.is_empty() && expected.len() < all.len());
    assert_eq!(kept.iter().collect::<Vec<_>>(), expected);
    let web = common::entry(&ledger, "web");
    assert_eq!(web["dropped"]["filtered"].as_u64().unwrap(), (all.len() - kept.len()) as u64);
}

#[test]
fn aggregate_totals_equal_the_inputs_for_every_window_with_shuffled_input_and_shutdown_mid_window() {
    let dir = tempfile::tempdir().unwrap();
    // Two sources over the same minutes fan in, so records arrive out of
    // order; the last window is cut short when the sources end.
    let ledger = run(
        dir.path(),
        "sources:\n  a: { type: demo, count: 150000, seed: 1, start_time: \"2026-01-01T00:00:00Z\", time_step: 1ms, batch_size: 3000 }\n  b: { type: demo, count: 50000, seed: 2, start_time: \"2026-01-01T00:00:00Z\", time_step: 2500us, batch_size: 500 }\ntransforms:\n  per_minute: { type: aggregate, inputs: [a, b], window: 1m, allowed_lateness: 10m, group_by: [exporter], aggregates: { bytes: sum(bytes), flows: count(), biggest: max(packets) } }\nsinks:\n  all: { type: file, inputs: [a, b], path: ./all.jsonl }\n  totals: { type: file, inputs: [per_minute], path: ./totals.jsonl }\n",
    );
    use std::collections::BTreeMap;
    let mut want: BTreeMap<(String, String), (u64, u64, u64)> = BTreeMap::new();
    for l in lines(&dir.path().join("all.jsonl")) {
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        let t = chrono::DateTime::parse_from_rfc3339(v["time_received"].as_str().unwrap()).unwrap();
        let minute = t.timestamp().div_euclid(60) * 60;
        let w = chrono::DateTime::from_timestamp(minute, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let e = want.entry((w, v["exporter"].as_str().unwrap().to_string())).or_default();
        e.0 += v["bytes"].as_u64().unwrap();
        e.1 += 1;
        e.2 = e.2.max(v["packets"].as_u64().unwrap());
    }
    let mut got: BTreeMap<(String, String), (u64, u64, u64)> = BTreeMap::new();
    for l in lines(&dir.path().join("totals.jsonl")) {
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        let key =
            (v["window_start"].as_str().unwrap().to_string(), v["exporter"].as_str().unwrap().to_string());
        let prev = got.insert(
            key,
            (v["bytes"].as_u64().unwrap(), v["flows"].as_u64().unwrap(), v["biggest"].as_u64().unwrap()),
        );
        assert!(prev.is_none(), "one record per (window, key)");
    }
    // 150 s and 125 s of records from 10 exporters: minutes 0, 1 and (cut
    // short) 2, for each exporter.
    assert_eq!(want.len(), 3 * 10);
    assert_eq!(got, want);
    let agg = common::entry(&ledger, "per_minute");
    assert_eq!(agg["received"], 200_000);
    assert_eq!(agg["merged"], 200_000);
    assert_eq!(agg["created"].as_u64().unwrap(), want.len() as u64);
    assert_eq!(agg["dropped_total"], 0);
}

#[test]
fn select_derives_columns_from_conditions_and_arithmetic() {
    let dir = tempfile::tempdir().unwrap();
    run(
        dir.path(),
        "sources:\n  flows: { type: demo, count: 2000, seed: 4 }\ntransforms:\n  s: { type: select, inputs: [flows], keep: [bytes, packets, dst_port], derive: { kbytes: \"bytes / 1000\", total: \"bytes + packets\", avg: \"bytes / packets\", is_web: \"dst_port in [80, 443]\", minus: \"packets - 1\" } }\nsinks:\n  out: { type: file, inputs: [s], path: ./d.jsonl }\n",
    );
    let rows = lines(&dir.path().join("d.jsonl"));
    assert_eq!(rows.len(), 2000);
    let mut webs = 0;
    for l in rows {
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        let (b, p, port) =
            (v["bytes"].as_u64().unwrap(), v["packets"].as_u64().unwrap(), v["dst_port"].as_u64().unwrap());
        assert_eq!(v["kbytes"].as_f64().unwrap(), b as f64 / 1000.0);
        assert_eq!(v["total"].as_u64().unwrap(), b + p);
        assert_eq!(v["avg"].as_f64().unwrap(), b as f64 / p as f64);
        assert_eq!(v["minus"].as_u64().unwrap(), p - 1);
        assert_eq!(v["is_web"].as_bool().unwrap(), port == 80 || port == 443);
        webs += (port == 80 || port == 443) as usize;
    }
    assert!(webs > 0 && webs < 2000);
}

/// The longest of `nets` containing `addr`, by hand.
fn longest(addr: &str, nets: &[(&str, &str)]) -> Option<String> {
    let ip: std::net::IpAddr = addr.parse().unwrap();
    nets.iter()
        .filter_map(|(n, v)| {
            let (a, len) = n.split_once('/').unwrap();
            let (a, len): (std::net::IpAddr, u32) = (a.parse().unwrap(), len.parse().unwrap());
            let bits = |x: std::net::IpAddr| -> u128 {
                match x {
                    std::net::IpAddr::V4(v) => u32::from(v) as u128,
                    std::net::IpAddr::V6(v) => u128::from(v),
                }
            };
            let width = if a.is_ipv4() { 32 } else { 128 };
            if a.is_ipv4() != ip.is_ipv4() {
                return None;
            }
            let shift = width - len;
            let same = if shift >= 128 { true } else { bits(a) >> shift == bits(ip) >> shift };
            same.then_some((len, v.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, v)| v)
}

#[test]
fn enrich_cidr_tags_by_the_longest_prefix_in_v4_and_v6() {
    let dir = tempfile::tempdir().unwrap();
    let nets = [
        ("192.0.2.0/24", "doc"),
        ("192.0.2.128/25", "upper"),
        ("192.0.2.200/30", "tiny"),
        ("2001:db8::/32", "v6"),
        ("2001:db8::/112", "v6-narrow"),
        ("0.0.0.0/0", "anything-v4"),
    ];
    let mut csv = String::from("prefix,customer\n");
    for (n, v) in nets {
        csv.push_str(&format!("{n},{v}\n"));
    }
    std::fs::write(dir.path().join("c.csv"), csv).unwrap();
    run(
        dir.path(),
        "sources:\n  flows: { type: demo, count: 20000, seed: 8 }\ntransforms:\n  tag: { type: enrich_cidr, inputs: [flows], file: ./c.csv, field: src_addr }\nsinks:\n  out: { type: file, inputs: [tag], path: ./t.jsonl }\n",
    );
    let mut seen = std::collections::BTreeSet::new();
    for l in lines(&dir.path().join("t.jsonl")) {
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        let addr = v["src_addr"].as_str().unwrap();
        let got = v["src_addr_customer"].as_str().map(str::to_string);
        assert_eq!(got, longest(addr, &nets), "{addr}");
        seen.insert(got);
    }
    assert!(seen.len() >= 4, "several prefixes were exercised: {seen:?}");
}

#[test]
fn enrich_cidr_reloads_while_running_without_losing_or_mixing_records() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("c.csv");
    std::fs::write(&csv, "prefix,customer\n0.0.0.0/0,old\n::/0,old\n").unwrap();
    let p = common::write_pipeline(
        dir.path(),
        "sources:\n  flows: { type: demo, rate: 20000, batch_size: 500 }\ntransforms:\n  tag: { type: enrich_cidr, inputs: [flows], file: ./c.csv, field: src_addr, reload_interval: 100ms }\nsinks:\n  out: { type: file, inputs: [tag], path: ./t.jsonl, sync: false }\n",
    );
    let ledger_path = dir.path().join("ledger.json");
    let g = common::Guard::run(dir.path(), &p, &["--ledger-json", ledger_path.to_str().unwrap()]);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    // Replace the file atomically, as an operator's tooling should.
    let tmp = dir.path().join("c.csv.tmp");
    std::fs::write(&tmp, "prefix,customer\n0.0.0.0/0,new\n::/0,new\n").unwrap();
    std::fs::rename(&tmp, &csv).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    common::signal(g.id(), "TERM");
    let out = g.wait();
    assert!(out.status.success(), "{}", common::text(&out));
    let ledger: serde_json::Value = serde_json::from_slice(&std::fs::read(&ledger_path).unwrap()).unwrap();
    common::assert_balanced(&ledger);
    let tags: Vec<String> = lines(&dir.path().join("t.jsonl"))
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["src_addr_customer"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(tags.len() as u64, common::entry(&ledger, "flows")["received"].as_u64().unwrap());
    let switch = tags.iter().position(|t| t == "new").expect("the new file was picked up");
    assert!(switch > 0, "the old file was used first");
    assert!(
        tags[..switch].iter().all(|t| t == "old") && tags[switch..].iter().all(|t| t == "new"),
        "one switch, no mixing"
    );
}

#[test]
fn enrich_joins_flows_with_the_latest_table_row_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = run(
        dir.path(),
        r#"
sources:
  ifaces: { type: demo, count: 300, seed: 11, exporters: 4 }
  flows: { type: demo, count: 4000, seed: 12, exporters: 5, start_delay: 1s }
transforms:
  speeds: { type: select, inputs: [ifaces], keep: [exporter, in_if, packets], rename: { packets: speed } }
  named: { type: enrich, inputs: [flows], table: if_table, on: { exporter: exporter, in_if: in_if }, fields: [speed], prefix: in_if_ }
sinks:
  if_table: { type: table, inputs: [speeds], key: [exporter, in_if] }
  table_rows: { type: file, inputs: [speeds], path: ./table.jsonl }
  out: { type: file, inputs: [named], path: ./flows.jsonl }
"#,
    );
    use std::collections::HashMap;
    let mut latest: HashMap<(String, u64), u64> = HashMap::new();
    for l in lines(&dir.path().join("table.jsonl")) {
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        latest.insert(
            (v["exporter"].as_str().unwrap().into(), v["in_if"].as_u64().unwrap()),
            v["speed"].as_u64().unwrap(),
        );
    }
    let (mut hits, mut misses) = (0, 0);
    for l in lines(&dir.path().join("flows.jsonl")) {
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        let key = (v["exporter"].as_str().unwrap().to_string(), v["in_if"].as_u64().unwrap());
        let got = v["in_if_speed"].as_u64();
        assert_eq!(got, latest.get(&key).copied(), "{key:?}");
        if got.is_some() { hits += 1 } else { misses += 1 }
    }
    // The table knows 4 of the flows' 5 exporters.
    assert!(hits > 2500 && misses > 400, "hits {hits}, misses {misses}");
    assert_eq!(common::entry(&ledger, "if_table")["delivered"], 300);
}
