//! NetFlow collection end to end: the built-in generator, softflowd and the
//! corpus captures through the `netflow` (UDP) and `pcap` sources, reconciled
//! to the record against what was sent and what reference decoders saw.

mod common;

use std::time::Duration;

use common::Guard;

fn udp_pipeline(port: u16, sink: &str, extra: &str) -> String {
    format!(
        "sources:\n  flows: {{ type: netflow, listen: \"127.0.0.1:{port}\", workers: 2, flush_interval: 50ms{extra} }}\nsinks:\n  out: {sink}\n"
    )
}

fn start(dir: &std::path::Path, yaml: &str) -> Guard {
    let p = common::write_pipeline(dir, yaml);
    let g = Guard::run(dir, &p, &["--ledger-json", dir.join("ledger.json").to_str().unwrap()]);
    assert!(g.wait_for("listening for NetFlow/IPFIX", Duration::from_secs(30)), "the source never listened");
    g
}

#[test]
fn generated_v5_v9_and_ipfix_arrive_to_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_udp_port();
    let g = start(dir.path(), &udp_pipeline(port, "{ type: blackhole, inputs: [flows] }", ""));
    let target = format!("127.0.0.1:{port}");
    let mut sent = 0;
    for (version, count) in [("5", "30000"), ("9", "150000"), ("10", "150000")] {
        let t = common::generate(&[
            "--target",
            &target,
            "--version",
            version,
            "--exporters",
            "40",
            "--count",
            count,
            "--rate",
            "150000",
        ]);
        sent += t["records"].as_u64().unwrap();
    }
    let ledger = common::stop_collector(g, dir.path());
    let flows = common::entry(&ledger, "flows");
    assert_eq!(flows["received"].as_u64().unwrap(), sent, "{ledger}");
    assert_eq!(flows["dropped_total"], 0, "{ledger}");
    assert_eq!(common::entry(&ledger, "out")["delivered"].as_u64().unwrap(), sent);
}

#[test]
fn udp_to_parquet_keeps_every_byte_and_packet_count() {
    if !common::python_readers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_udp_port();
    let g = start(
        dir.path(),
        &udp_pipeline(
            port,
            "{ type: parquet, inputs: [flows], path: ./data, partition: \"dt=%Y-%m-%d\" }",
            "",
        ),
    );
    let t = common::generate(&[
        "--target",
        &format!("127.0.0.1:{port}"),
        "--version",
        "10",
        "--exporters",
        "25",
        "--count",
        "60000",
        "--rate",
        "100000",
    ]);
    let ledger = common::stop_collector(g, dir.path());
    assert_eq!(common::entry(&ledger, "out")["delivered"], t["records"]);
    let got = common::run_python(
        r#"
import sys, json, pyarrow.dataset as ds, pyarrow.compute as pc
t = ds.dataset(sys.argv[1], format='parquet', partitioning='hive').to_table()
print(json.dumps({'records': t.num_rows, 'sum_bytes': pc.sum(t['bytes']).as_py(),
  'sum_packets': pc.sum(t['packets']).as_py(), 'exporters': len(pc.unique(t['exporter'])),
  'versions': pc.unique(t['flow_version']).to_pylist(), 'sources': pc.unique(t['sampling_source']).to_pylist()}))
"#,
        &[dir.path().join("data").to_str().unwrap()],
    );
    let got: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert_eq!(got["records"], t["records"]);
    assert_eq!(got["sum_bytes"], t["sum_bytes"]);
    assert_eq!(got["sum_packets"], t["sum_packets"]);
    assert_eq!(got["exporters"], 25);
    assert_eq!(got["versions"], serde_json::json!([10]));
    assert_eq!(got["sources"], serde_json::json!(["default"]));
}

#[test]
fn exporters_outside_the_allowlist_are_counted_not_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_udp_port();
    // Exporters 0..249 send from 127.1.0.x, 250..299 from 127.1.1.x.
    let g = start(
        dir.path(),
        &udp_pipeline(port, "{ type: blackhole, inputs: [flows] }", ", allow: [\"127.1.0.0/24\"]"),
    );
    let t = common::generate(&[
        "--target",
        &format!("127.0.0.1:{port}"),
        "--version",
        "9",
        "--exporters",
        "300",
        "--count",
        "90000",
        "--records-per-packet",
        "30",
        "--rate",
        "150000",
    ]);
    let ledger = common::stop_collector(g, dir.path());
    let flows = common::entry(&ledger, "flows");
    // 90,000 records in 3,000 packets round-robin over 300 exporters: each
    // exporter sends 10 packets; the 50 outside the allowlist send 500.
    assert_eq!(t["packets"], 3000);
    assert_eq!(flows["dropped"]["not_allowed"], 500, "{ledger}");
    assert_eq!(common::entry(&ledger, "out")["delivered"], 250 * 10 * 30);
}

struct Expected {
    dir: &'static str,
    file: &'static str,
    records: u64,
    packets: u64,
    bytes: u64,
}

const SOFTFLOWD: [Expected; 4] = [
    Expected { dir: "v5", file: "export_v5.pcap", records: 2979, packets: 20_492, bytes: 7_044_879 },
    Expected { dir: "v9", file: "export_v9.pcap", records: 4047, packets: 27_879, bytes: 9_701_825 },
    Expected { dir: "v10", file: "export_v10.pcap", records: 4047, packets: 27_879, bytes: 9_701_825 },
    Expected { dir: "v10_milli", file: "export_v10.pcap", records: 4047, packets: 27_879, bytes: 9_701_825 },
];

fn parquet_totals(root: &std::path::Path) -> (u64, u64, u64) {
    let out = common::run_python(
        "import sys, pyarrow.dataset as ds, pyarrow.compute as pc\nt = ds.dataset(sys.argv[1], format='parquet').to_table()\nprint(t.num_rows, pc.sum(t['packets']).as_py(), pc.sum(t['bytes']).as_py())",
        &[root.to_str().unwrap()],
    );
    let v: Vec<u64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
    (v[0], v[1], v[2])
}

#[test]
fn pcap_source_replays_the_softflowd_corpus_into_parquet() {
    let Some(corpus) = common::corpus() else { return };
    if !common::python_readers() {
        return;
    }
    for e in SOFTFLOWD {
        let dir = tempfile::tempdir().unwrap();
        let capture = corpus.join("softflowd").join(e.dir).join(e.file);
        let p = common::write_pipeline(
            dir.path(),
            &format!(
                "sources:\n  replay: {{ type: pcap, path: \"{}\" }}\nsinks:\n  archive: {{ type: parquet, inputs: [replay], path: ./data }}\n",
                capture.display()
            ),
        );
        let (out, ledger) = common::run_pipeline(dir.path(), &p);
        assert!(out.status.success(), "{}: {}", e.dir, common::text(&out));
        common::assert_balanced(&ledger);
        assert_eq!(common::entry(&ledger, "replay")["dropped_total"], 0, "{}: {ledger}", e.dir);
        assert_eq!(parquet_totals(&dir.path().join("data")), (e.records, e.packets, e.bytes), "{}", e.dir);
    }
}

#[test]
fn softflowd_exporting_live_into_the_udp_source_matches_the_reference_totals() {
    let Some(corpus) = common::corpus() else { return };
    let have = std::process::Command::new("softflowd").arg("-h").output().is_ok();
    if !common::require("softflowd (Debian package)", have) {
        return;
    }
    if !common::python_readers() {
        return;
    }
    let traffic = corpus.join("traffic/traffic_mixed.pcap");
    for (version, e) in [("5", &SOFTFLOWD[0]), ("9", &SOFTFLOWD[1]), ("10", &SOFTFLOWD[2])] {
        let dir = tempfile::tempdir().unwrap();
        let port = common::free_udp_port();
        let g =
            start(dir.path(), &udp_pipeline(port, "{ type: parquet, inputs: [flows], path: ./data }", ""));
        let mut args = vec!["-r".to_string(), traffic.display().to_string()];
        args.extend(["-n".into(), format!("127.0.0.1:{port}"), "-v".into(), version.into(), "-a".into()]);
        if version != "5" {
            args.push("-6".into());
        }
        let out = std::process::Command::new("softflowd").args(&args).output().unwrap();
        assert!(out.status.success(), "softflowd: {}", common::text(&out));
        let ledger = common::stop_collector(g, dir.path());
        let flows = common::entry(&ledger, "flows");
        assert_eq!(flows["received"].as_u64().unwrap(), e.records, "v{version}: {ledger}");
        assert_eq!(flows["dropped_total"], 0, "v{version}: {ledger}");
        assert_eq!(parquet_totals(&dir.path().join("data")), (e.records, e.packets, e.bytes), "v{version}");
    }
}

#[test]
fn sequence_gaps_become_records_on_the_loss_output() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_udp_port();
    let yaml = format!(
        "sources:\n  flows: {{ type: netflow, listen: \"127.0.0.1:{port}\", workers: 1, flush_interval: 20ms }}\n\
         sinks:\n  out: {{ type: blackhole, inputs: [flows] }}\n  gaps: {{ type: file, inputs: [flows.loss], path: ./loss.jsonl }}\n"
    );
    let g = start(dir.path(), &yaml);
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // v5 counts flows: after 0, 1, 2 the next should be 3; 10 means 7 lost.
    for seq in [0, 1, 2, 10, 11] {
        s.send_to(&common::v5_packet(seq), ("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let ledger = common::stop_collector(g, dir.path());
    assert_eq!(common::entry(&ledger, "out")["delivered"], 5);
    assert_eq!(common::entry(&ledger, "flows.loss")["received"], 1, "{ledger}");
    assert_eq!(common::entry(&ledger, "gaps")["delivered"], 1);
    let text = std::fs::read_to_string(dir.path().join("loss.jsonl")).unwrap();
    let loss: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(loss["exporter"], "127.0.0.1");
    assert_eq!(loss["expected_sequence"], 3);
    assert_eq!(loss["received_sequence"], 10);
    assert_eq!(loss["missing"], 7);
    assert_eq!(loss["flow_version"], 5);
    assert!(loss["window_start"].as_str().unwrap() <= loss["window_end"].as_str().unwrap());
}

#[test]
fn extra_fields_by_iana_name_reach_parquet_as_typed_columns() {
    let Some(corpus) = common::corpus() else { return };
    if !common::python_readers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let capture = corpus.join("beats/pcap_from_dat/Netflow-9-Cisco-ASA-2.pcap");
    let p = common::write_pipeline(
        dir.path(),
        &format!(
            "sources:\n  replay: {{ type: pcap, path: \"{}\", extra_fields: [flowId, postNATSourceIPv4Address] }}\n\
             sinks:\n  archive: {{ type: parquet, inputs: [replay], path: ./data }}\n",
            capture.display()
        ),
    );
    let (out, ledger) = common::run_pipeline(dir.path(), &p);
    assert!(out.status.success(), "{}", common::text(&out));
    common::assert_balanced(&ledger);
    let got = common::run_python(
        "import sys, pyarrow.dataset as ds\nt = ds.dataset(sys.argv[1], format='parquet').to_table()\n\
         print(t.schema.field('flow_id').type, t.schema.field('post_nat_source_ipv4_address').type, \
         sorted(set(t['post_nat_source_ipv4_address'].to_pylist())))",
        &[dir.path().join("data").to_str().unwrap()],
    );
    assert_eq!(got.trim(), "uint64 string ['192.168.0.1', '192.168.0.2']");
}

/// Offsets of the blocks of a little-endian pcapng image.
fn pcapng_blocks(b: &[u8]) -> Vec<(u32, usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 12 <= b.len() {
        let ty = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let len = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap()) as usize;
        out.push((ty, at, len));
        at += len;
    }
    out
}

#[test]
fn a_damaged_capture_replays_everything_else_and_counts_what_it_lost() {
    let Some(corpus) = common::corpus() else { return };
    let mut bytes = std::fs::read(corpus.join("softflowd/v9/export_v9.pcap")).unwrap();
    let packets: Vec<(usize, usize)> =
        pcapng_blocks(&bytes).into_iter().filter(|(ty, ..)| *ty == 6).map(|(_, at, len)| (at, len)).collect();
    // The v9 header's record count of the datagram in packet block `i`
    // (Ethernet, IPv4, UDP, then the export header; data-only datagrams).
    let records = |b: &[u8], i: usize| {
        let v9 = packets[i].0 + 28 + 14 + 20 + 8;
        u16::from_be_bytes([b[v9 + 2], b[v9 + 3]]) as u64
    };
    let lost = records(&bytes, 40) + records(&bytes, packets.len() - 1);
    // Packet 40's trailing length is broken; the last block is cut short.
    let (at, len) = packets[40];
    bytes[at + len - 4] ^= 0x20;
    let (last, _) = packets[packets.len() - 1];
    bytes.truncate(last + 30);
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("damaged.pcapng");
    std::fs::write(&capture, &bytes).unwrap();
    let p = common::write_pipeline(
        dir.path(),
        &format!(
            "sources:\n  replay: {{ type: pcap, path: \"{}\" }}\nsinks:\n  out: {{ type: blackhole, inputs: [replay] }}\n",
            capture.display()
        ),
    );
    let (out, ledger) = common::run_pipeline(dir.path(), &p);
    assert!(out.status.success(), "{}", common::text(&out));
    common::assert_balanced(&ledger);
    let replay = common::entry(&ledger, "replay");
    assert_eq!(replay["dropped"]["malformed"], 2, "one damaged block, one cut record: {ledger}");
    assert_eq!(common::entry(&ledger, "out")["delivered"], 4047 - lost, "{ledger}");
    let text = common::text(&out);
    assert!(text.contains("could not be read"), "{text}");
    assert!(text.contains("records were lost") && text.contains("2 malformed"), "{text}");
    // A backfill run with --strict fails on the loss.
    let strict =
        common::spillway().current_dir(dir.path()).args(["run", "--strict"]).arg(&p).output().unwrap();
    assert_eq!(strict.status.code(), Some(3), "{}", common::text(&strict));
}

#[test]
fn two_collectors_started_together_never_both_take_the_port() {
    let dir = tempfile::tempdir().unwrap();
    let locks = tempfile::tempdir().unwrap();
    for round in 0..40 {
        let port = common::free_udp_port();
        let p = common::write_pipeline(
            dir.path(),
            &udp_pipeline(port, "{ type: blackhole, inputs: [flows] }", ""),
        );
        let start = || {
            common::spillway()
                .current_dir(dir.path())
                .env("SPILLWAY_LOCK_DIR", locks.path())
                .arg("run")
                .arg(&p)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let mut pair = Pair([start(), start()]);
        // One of them fails at once; the other keeps listening.
        let t = std::time::Instant::now();
        let failed = loop {
            if let Some(i) = pair.0.iter_mut().position(|c| c.try_wait().unwrap().is_some()) {
                break i;
            }
            assert!(t.elapsed() < std::time::Duration::from_secs(20), "round {round}: both kept running");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let running = 1 - failed;
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            pair.0[running].try_wait().unwrap().is_none(),
            "round {round}: the other one must keep running"
        );
        let mut err = String::new();
        use std::io::Read;
        pair.0[failed].stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(
            err.contains("already claims UDP port") || err.contains("already bound"),
            "round {round}: {err}"
        );
        assert!(common::wait_udp_listening(port, std::time::Duration::from_secs(10)));
        common::signal(pair.0[running].id(), "TERM");
        assert!(pair.0[running].wait().unwrap().success());
    }
}

/// Two collectors, killed if a round fails.
struct Pair([std::process::Child; 2]);

impl Drop for Pair {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn sigterm_under_a_sender_that_never_stops_exits_within_the_drain_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_udp_port();
    let yaml = format!(
        "sources:\n  flows: {{ type: netflow, listen: \"127.0.0.1:{port}\", workers: 2, drain_timeout: 2s }}\n\
         sinks:\n  archive: {{ type: parquet, inputs: [flows], path: ./data, rotate: {{ max_age: 60s }} }}\n"
    );
    let g = start(dir.path(), &yaml);
    let sending = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sender = {
        let sending = sending.clone();
        std::thread::spawn(move || {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut seq = 0u32;
            while sending.load(std::sync::atomic::Ordering::Relaxed) {
                // After the collector is gone the kernel answers with ICMP
                // errors; the sender does not care, like a router.
                let _ = s.send_to(&common::v5_packet(seq), ("127.0.0.1", port));
                seq = seq.wrapping_add(1);
                if seq.is_multiple_of(20) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            seq
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let t = std::time::Instant::now();
    common::signal(g.id(), "TERM");
    let out = g.wait();
    let took = t.elapsed();
    sending.store(false, std::sync::atomic::Ordering::Relaxed);
    let sent = sender.join().unwrap();
    assert!(out.status.success(), "{}", common::text(&out));
    assert!(took < Duration::from_secs(15), "the stop took {took:?} under live traffic");
    let ledger: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("ledger.json")).unwrap()).unwrap();
    common::assert_balanced(&ledger);
    let delivered = common::entry(&ledger, "archive")["delivered"].as_u64().unwrap();
    assert!(delivered > 1000, "{ledger}");
    let received = common::entry(&ledger, "flows")["received"].as_u64().unwrap();
    assert!(received <= sent as u64, "{received} of {sent}");
    if common::python_readers() {
        let (rows, _, _) = parquet_totals(&dir.path().join("data"));
        assert_eq!(rows, delivered, "every delivered record is in a closed Parquet file");
    }
    eprintln!("sent {sent}, received {received}, delivered {delivered}, stop took {took:?}: {ledger}");
}
