//! The `completeness` output: one row per exporter and interval whose
//! counts add up to the source's ledger line and to what each exporter
//! sent, including sequence loss, data parked for a template that never
//! came, malformed datagrams and allowlist rejects.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Guard;

/// A v9 message holding only a data set of template 300, never defined.
fn v9_data_only(sequence: u32) -> Vec<u8> {
    let mut p = vec![0, 9, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1];
    p.extend_from_slice(&sequence.to_be_bytes());
    p.extend_from_slice(&7u32.to_be_bytes());
    p.extend_from_slice(&[0x01, 0x2c, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8]);
    p
}

fn rows(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn sum(rows: &[serde_json::Value], col: &str) -> u64 {
    rows.iter().map(|r| r[col].as_u64().unwrap_or_else(|| panic!("{col} in {r}"))).sum()
}

#[test]
fn completeness_rows_add_up_to_the_ledger_and_to_each_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_udp_port();
    let yaml = format!(
        "sources:\n  flows: {{ type: netflow, listen: \"127.0.0.1:{port}\", workers: 2, flush_interval: 20ms, \
         allow: [\"127.0.0.0/16\", \"127.1.0.0/16\"], completeness_interval: 1s }}\n\
         sinks:\n  out: {{ type: blackhole, inputs: [flows] }}\n\
         \x20 audit: {{ type: file, inputs: [flows.completeness], path: ./completeness.jsonl }}\n"
    );
    let p = common::write_pipeline(dir.path(), &yaml);
    let g = Guard::run(dir.path(), &p, &["--ledger-json", dir.path().join("ledger.json").to_str().unwrap()]);
    assert!(g.wait_for("listening for NetFlow/IPFIX", Duration::from_secs(30)));
    // Three exporters of the generator (127.1.0.1-3), 300 records each.
    let totals =
        common::generate(&["--target", &format!("127.0.0.1:{port}"), "--exporters", "3", "--count", "900"]);
    assert_eq!(totals["records"], 900);
    // 127.0.0.1: three v5 records with 7 missing between them by sequence,
    // two v9 sets whose template never comes, one datagram of garbage.
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |m: &[u8]| {
        s.send_to(m, ("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    };
    for seq in [0, 1, 9] {
        send(&common::v5_packet(seq));
    }
    send(&v9_data_only(1));
    send(&v9_data_only(2));
    send(b"not a flow");
    // 127.2.0.1 is outside the allowlist: two refused.
    let outsider = std::net::UdpSocket::bind("127.2.0.1:0").unwrap();
    for seq in [0, 1] {
        outsider.send_to(&common::v5_packet(seq), ("127.0.0.1", port)).unwrap();
    }
    // Rows of passed windows are emitted while running, the rest at the stop.
    std::thread::sleep(Duration::from_millis(1500));
    common::signal(g.id(), "TERM");
    let out = g.wait();
    assert!(out.status.success(), "{}", common::text(&out));
    let ledger: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("ledger.json")).unwrap()).unwrap();
    common::assert_balanced(&ledger);
    let flows = common::entry(&ledger, "flows");
    let rows = rows(&dir.path().join("completeness.jsonl"));
    assert_eq!(common::entry(&ledger, "flows.completeness")["received"].as_u64().unwrap(), rows.len() as u64);

    // The totals are the ledger's.
    assert_eq!(sum(&rows, "received"), flows["received"].as_u64().unwrap(), "{ledger}");
    assert_eq!(sum(&rows, "records"), flows["emitted"].as_u64().unwrap(), "{ledger}");
    for reason in [
        "malformed",
        "not_allowed",
        "template_missing",
        "template_timeout",
        "evicted",
        "buffer_full",
        "stopping",
    ] {
        let ours = sum(&rows, &format!("dropped_{reason}"));
        assert_eq!(ours, flows["dropped"][reason].as_u64().unwrap_or(0), "{reason}: {ledger}");
    }

    // And per exporter, what each sent.
    let mut by: BTreeMap<String, BTreeMap<&str, u64>> = BTreeMap::new();
    for r in &rows {
        let e = r["exporter"].as_str().unwrap_or("(none)").to_string();
        let m = by.entry(e).or_default();
        for c in [
            "records",
            "datagrams",
            "sequence_missing",
            "parked_sets",
            "dropped_malformed",
            "dropped_template_missing",
            "dropped_not_allowed",
        ] {
            *m.entry(c).or_default() += r[c].as_u64().unwrap();
        }
    }
    for e in ["127.1.0.1", "127.1.0.2", "127.1.0.3"] {
        assert_eq!(by[e]["records"], 300, "{e}: {by:?}");
        assert_eq!(by[e]["sequence_missing"], 0, "{e}: {by:?}");
    }
    let me = &by["127.0.0.1"];
    assert_eq!(me["records"], 3, "{by:?}");
    assert_eq!(me["datagrams"], 6, "{by:?}");
    assert_eq!(me["sequence_missing"], 7, "{by:?}");
    assert_eq!(me["parked_sets"], 2, "{by:?}");
    assert_eq!(me["dropped_template_missing"], 2, "{by:?}");
    assert_eq!(me["dropped_malformed"], 1, "{by:?}");
    assert_eq!(by["127.2.0.1"]["dropped_not_allowed"], 2, "{by:?}");
    // Windows are whole seconds.
    for r in &rows {
        let (a, b) = (r["window_start"].as_str().unwrap(), r["window_end"].as_str().unwrap());
        assert!(a < b, "{r}");
        assert!(!a.contains('.') || a.contains(".000"), "not aligned: {a}");
    }
}

#[test]
fn a_replayed_capture_has_completeness_rows_by_capture_time() {
    let Some(corpus) = common::corpus() else { return };
    let dir = tempfile::tempdir().unwrap();
    let capture = corpus.join("softflowd/v9/export_v9.pcap");
    let p = common::write_pipeline(
        dir.path(),
        &format!(
            "sources:\n  replay: {{ type: pcap, path: \"{}\", completeness_interval: 1m }}\n\
             sinks:\n  out: {{ type: blackhole, inputs: [replay] }}\n\
             \x20 audit: {{ type: file, inputs: [replay.completeness], path: ./completeness.jsonl }}\n",
            capture.display()
        ),
    );
    let (out, ledger) = common::run_pipeline(dir.path(), &p);
    assert!(out.status.success(), "{}", common::text(&out));
    common::assert_balanced(&ledger);
    let rows = rows(&dir.path().join("completeness.jsonl"));
    assert_eq!(sum(&rows, "records"), 4047);
    assert_eq!(sum(&rows, "received"), common::entry(&ledger, "replay")["received"].as_u64().unwrap());
    // The capture's own clock (it was recorded on 2026-11-27), not today's.
    assert!(
        rows.iter().all(|r| r["window_start"].as_str().unwrap().starts_with("2026-11-27T11:")),
        "{rows:?}"
    );
}
