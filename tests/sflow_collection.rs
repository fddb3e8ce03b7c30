//! sFlow end to end: pmacctd's sfprobe exporting a real capture live into
//! the `sflow` source, reconciled sample by sample with sfcapd and nfdump;
//! the same export captured and replayed through the `pcap` source; the
//! real datagrams cut at every byte; counter samples and losses on their
//! named outputs; NetFlow sent to an sFlow source refused with a reason.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Guard;

fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// A peer process we started, stopped (by its PID) when dropped.
struct Peer(Child);

impl Peer {
    fn start(cmd: &mut Command) -> Peer {
        Peer(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("the peer starts"))
    }

    /// SIGTERM, then wait for the exit.
    fn stop(mut self) {
        common::signal(self.0.id(), "TERM");
        let _ = self.0.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs pmacctd's sfprobe over the corpus traffic capture, exporting to
/// `port`, until it has read the file and had time to send the last
/// samples (pmacctd keeps running after the end of a savefile).
fn sfprobe(dir: &Path, traffic: &Path, port: u16) {
    let conf = dir.join(format!("sfprobe-{port}.conf"));
    let log = dir.join(format!("sfprobe-{port}.log"));
    std::fs::write(
        &conf,
        format!(
            "daemonize: false\npcap_savefile: {}\npcap_savefile_wait: true\nplugins: sfprobe\n\
             sfprobe_receiver: 127.0.0.1:{port}\nsfprobe_agentip: 127.0.0.1\nlogfile: {}\n",
            traffic.display(),
            log.display()
        ),
    )
    .unwrap();
    let p = Peer::start(Command::new("pmacctd").arg("-f").arg(&conf));
    let t = Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("finished reading PCAP capture file") {
        assert!(t.elapsed() < Duration::from_secs(120), "pmacctd never finished the capture");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The probe sends what it still holds within a second or two.
    std::thread::sleep(Duration::from_secs(3));
    p.stop();
}

/// (protocol, source, destination, source port, destination port, bytes):
/// TCP and UDP samples only (ICMP type/code are printed differently).
type Tuple = (u8, String, String, u16, u16, u64);

fn count(v: Vec<Tuple>) -> BTreeMap<Tuple, u32> {
    let mut m = BTreeMap::new();
    for t in v {
        *m.entry(t).or_insert(0) += 1;
    }
    m
}

/// What sfcapd stored of the export, read back by nfdump: (flows, packets,
/// bytes) and the TCP/UDP samples.
fn reference(dir: &Path, traffic: &Path) -> ((u64, u64, u64), Vec<Tuple>) {
    let port = common::free_udp_port();
    let store = dir.join("sfcapd");
    std::fs::create_dir_all(&store).unwrap();
    let sfcapd = Peer::start(
        Command::new("sfcapd")
            .args(["-b", "127.0.0.1", "-p", &port.to_string(), "-w"])
            .arg(&store)
            .args(["-t", "3600"]),
    );
    assert!(common::wait_udp_listening(port, Duration::from_secs(10)), "sfcapd never listened");
    sfprobe(dir, traffic, port);
    sfcapd.stop();
    let file = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("nfcapd.2"))
        .expect("sfcapd wrote a file");
    let info = Command::new("nfdump").arg("-r").arg(&file).arg("-I").output().unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    let field = |name: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in nfdump -I: {info}"))
            .trim()
            .parse()
            .unwrap()
    };
    let totals = (field("Flows"), field("Packets"), field("Bytes"));
    let csv = Command::new("nfdump")
        .arg("-r")
        .arg(&file)
        // -N: plain numbers (protocol too); -6: IPv6 addresses in full.
        .args(["-q", "-N", "-6", "-o", "fmt:%pr|%sa|%da|%sp|%dp|%byt"])
        .output()
        .unwrap();
    let tuples = String::from_utf8_lossy(&csv.stdout)
        .lines()
        .filter_map(|l| {
            let c: Vec<&str> = l.split('|').map(str::trim).collect();
            let proto: u8 = c[0].parse().ok()?;
            if proto != 6 && proto != 17 {
                return None;
            }
            Some((
                proto,
                c[1].to_string(),
                c[2].to_string(),
                c[3].parse().ok()?,
                c[4].parse().ok()?,
                c[5].parse().ok()?,
            ))
        })
        .collect();
    (totals, tuples)
}

/// Rows, packets and bytes in the Parquet under `root`, and its TCP/UDP
/// samples, read by pyarrow.
fn parquet(root: &Path) -> ((u64, u64, u64), Vec<Tuple>) {
    let out = common::run_python(
        r#"
import sys, pyarrow.dataset as ds, pyarrow.compute as pc
t = ds.dataset(sys.argv[1], format='parquet').to_table()
print(t.num_rows, pc.sum(t['packets']).as_py(), pc.sum(t['bytes']).as_py())
# Addresses are stored as text.
for r in t.select(['protocol', 'src_addr', 'dst_addr', 'src_port', 'dst_port', 'bytes']).to_pylist():
    if r['protocol'] in (6, 17):
        print(r['protocol'], r['src_addr'], r['dst_addr'], r['src_port'], r['dst_port'], r['bytes'])
"#,
        &[root.to_str().unwrap()],
    );
    let mut lines = out.lines();
    let v: Vec<u64> = lines.next().unwrap().split_whitespace().map(|x| x.parse().unwrap()).collect();
    let tuples = lines
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            (
                c[0].parse().unwrap(),
                c[1].into(),
                c[2].into(),
                c[3].parse().unwrap(),
                c[4].parse().unwrap(),
                c[5].parse().unwrap(),
            )
        })
        .collect();
    ((v[0], v[1], v[2]), tuples)
}

fn start(dir: &Path, yaml: &str) -> Guard {
    let p = common::write_pipeline(dir, yaml);
    let g = Guard::run(dir, &p, &["--ledger-json", dir.join("ledger.json").to_str().unwrap()]);
    assert!(g.wait_for("listening for sFlow", Duration::from_secs(30)), "the source never listened");
    g
}

#[test]
fn pmacctd_sfprobe_live_into_the_sflow_source_matches_sfcapd_and_nfdump() {
    let Some(corpus) = common::corpus() else { return };
    if !common::require("pmacctd (Debian pmacct)", have("pmacctd", "-V"))
        || !common::require("sfcapd (Debian nfdump-sflow)", have("sfcapd", "-V"))
        || !common::require("nfdump", have("nfdump", "-V"))
        || !common::require("dumpcap (Debian tshark)", have("dumpcap", "-v"))
        || !common::python_readers()
    {
        return;
    }
    let traffic = corpus.join("traffic/traffic_mixed.pcap");
    let dir = tempfile::tempdir().unwrap();
    let (want, want_tuples) = reference(dir.path(), &traffic);
    assert!(want.0 > 20_000, "sfcapd stored too little to compare: {want:?}");

    // The same export, live into the `sflow` source, captured meanwhile.
    let port = common::free_udp_port();
    let capture = dir.path().join("export.pcapng");
    let dumpcap = Peer::start(
        Command::new("dumpcap")
            .args(["-q", "-i", "lo", "-f", &format!("udp dst port {port}"), "-w"])
            .arg(&capture),
    );
    let g = start(
        dir.path(),
        &format!(
            "sources:\n  flows: {{ type: sflow, listen: \"127.0.0.1:{port}\", workers: 2, flush_interval: 50ms }}\n\
             sinks:\n  out: {{ type: parquet, inputs: [flows], path: ./live }}\n"
        ),
    );
    // dumpcap says nothing when it is ready: give it a moment.
    std::thread::sleep(Duration::from_secs(2));
    sfprobe(dir.path(), &traffic, port);
    let ledger = common::stop_collector(g, dir.path());
    std::thread::sleep(Duration::from_millis(500));
    dumpcap.stop();
    let flows = common::entry(&ledger, "flows");
    assert_eq!(flows["received"].as_u64().unwrap(), want.0, "{ledger}");
    assert_eq!(flows["dropped_total"], 0, "{ledger}");
    let (got, got_tuples) = parquet(&dir.path().join("live"));
    assert_eq!(got, want, "rows, packets and bytes against sfcapd/nfdump");
    assert!(want_tuples.len() > 20_000, "{} TCP/UDP samples read from nfdump", want_tuples.len());
    let (ours, theirs) = (count(got_tuples), count(want_tuples));
    let differ: Vec<_> = ours.iter().filter(|(k, n)| theirs.get(*k) != Some(*n)).take(5).collect();
    let missing: Vec<_> = theirs.iter().filter(|(k, _)| !ours.contains_key(*k)).take(5).collect();
    assert!(
        differ.is_empty() && missing.is_empty(),
        "against nfdump: ours {differ:?}; only nfdump's {missing:?}"
    );

    // The captured export through the `pcap` source: the same totals.
    let replay = dir.path().join("replay");
    std::fs::create_dir_all(&replay).unwrap();
    let p = common::write_pipeline(
        &replay,
        &format!(
            "sources:\n  replay: {{ type: pcap, path: \"{}\" }}\nsinks:\n  out: {{ type: parquet, inputs: [replay], path: ./data }}\n",
            capture.display()
        ),
    );
    let (out, ledger) = common::run_pipeline(&replay, &p);
    assert!(out.status.success(), "{}", common::text(&out));
    common::assert_balanced(&ledger);
    assert_eq!(common::entry(&ledger, "replay")["dropped_total"], 0, "{ledger}");
    assert_eq!(parquet(&replay.join("data")).0, want, "the capture through the pcap source");

    // The real datagrams cut at every byte and with every byte flipped:
    // counted, never a panic.
    let (datagrams, _) = spillway_netflow::capture::read_file(&capture).unwrap();
    assert!(datagrams.len() > 1000, "{} datagrams captured", datagrams.len());
    for d in datagrams.iter().step_by(datagrams.len() / 25) {
        for cut in 0..d.payload.len() {
            let mut dec = spillway_netflow::sflow::SflowDecoder::new(Default::default());
            let mut b = spillway_netflow::row::FlowBuilders::new(16);
            let o = dec.decode(&d.payload[..cut], 0, &mut b);
            assert!(
                o.dropped >= 1 && o.error.is_some(),
                "a cut at {cut} of {} went uncounted",
                d.payload.len()
            );
            assert_eq!(o.records, b.len() as u64);
        }
        for at in 0..d.payload.len() {
            let mut m = d.payload.clone();
            m[at] ^= 0xff;
            let mut dec = spillway_netflow::sflow::SflowDecoder::new(Default::default());
            let mut b = spillway_netflow::row::FlowBuilders::new(16);
            let o = dec.decode(&m, 0, &mut b);
            assert_eq!(o.records, b.len() as u64, "byte {at} flipped");
            assert_eq!(o.error.is_some(), o.dropped > 0, "byte {at} flipped: {o:?}");
        }
    }
}

#[test]
fn counter_samples_and_losses_reach_their_named_outputs_and_netflow_is_refused() {
    use spillway_netflow::sflow::counters::Generic;
    use spillway_netflow::sflow::encode::{CounterSample, Datagram, FlowRecord, FlowSample, Sample};
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_udp_port();
    let g = start(
        dir.path(),
        &format!(
            "sources:\n  sf: {{ type: sflow, listen: \"127.0.0.1:{port}\", workers: 1, flush_interval: 20ms }}\n\
             sinks:\n  flows: {{ type: file, inputs: [sf], path: ./flows.jsonl }}\n\
             \x20 ifaces: {{ type: file, inputs: [sf.counters], path: ./counters.jsonl }}\n\
             \x20 gaps: {{ type: file, inputs: [sf.loss], path: ./loss.jsonl }}\n"
        ),
    );
    let agent: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let frame = {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[
            0x08, 0x00, 0x45, 0, 0, 100, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        f.extend_from_slice(&[0, 53, 0, 53, 0, 80, 0, 0]);
        f
    };
    let flow = |seq: u32| {
        Sample::Flow(FlowSample {
            sequence: seq,
            source_id: 4,
            rate: 100,
            records: vec![FlowRecord::Header {
                protocol: 1,
                frame_length: 114,
                stripped: 4,
                bytes: frame.clone(),
            }],
            ..FlowSample::default()
        })
    };
    let counters = Sample::Counters(CounterSample {
        sequence: 1,
        source_id: 4,
        generic: Some((
            4,
            Generic {
                if_type: 6,
                if_speed: 1_000_000_000,
                status: 3,
                in_octets: 123_456_789_012,
                out_octets: 42,
                ..Generic::default()
            },
        )),
        ..CounterSample::default()
    });
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dg = |seq: u32, samples: Vec<Sample>| {
        Datagram { agent: agent.into(), sub_agent: 0, sequence: seq, uptime_ms: 5_000, samples }.encode()
    };
    // Datagram 3 never arrives: one datagram and its sample are missing.
    for m in [dg(1, vec![flow(1), counters]), dg(2, vec![flow(2)]), dg(4, vec![flow(4)])] {
        s.send_to(&m, ("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    // A NetFlow v5 header: refused with a reason, counted.
    let mut v5 = vec![0u8; 24];
    v5[1] = 5;
    s.send_to(&v5, ("127.0.0.1", port)).unwrap();
    assert!(
        g.wait_for("receive NetFlow with a `netflow` source", Duration::from_secs(10)),
        "no reason logged"
    );
    let ledger = common::stop_collector(g, dir.path());
    let sf = common::entry(&ledger, "sf");
    assert_eq!(sf["emitted"], 3, "{ledger}");
    assert_eq!(sf["dropped"]["malformed"], 1, "{ledger}");
    assert_eq!(common::entry(&ledger, "ifaces")["delivered"], 1, "{ledger}");
    let rows = |f: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.path().join(f))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let c = &rows("counters.jsonl")[0];
    assert_eq!(
        (c["if_index"].as_u64(), c["in_octets"].as_u64(), c["if_oper_status"].as_u64()),
        (Some(4), Some(123_456_789_012), Some(1))
    );
    assert_eq!(c["exporter"], "127.0.0.1");
    let f = &rows("flows.jsonl")[0];
    assert_eq!(
        (f["bytes"].as_u64(), f["sampling_rate"].as_u64(), f["flow_version"].as_u64()),
        (Some(114), Some(100), Some(0x85))
    );
    let mut loss: Vec<(String, u64)> = rows("loss.jsonl")
        .iter()
        .map(|l| (l["unit"].as_str().unwrap().to_string(), l["missing"].as_u64().unwrap()))
        .collect();
    loss.sort();
    assert_eq!(loss, vec![("datagrams".to_string(), 1), ("flow_samples".to_string(), 1)]);
}
