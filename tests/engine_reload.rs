//! SIGHUP reloads the pipeline file in place, under live NetFlow traffic:
//! an invalid file is refused with its errors and changes nothing; a valid
//! one replaces what changed — here the `netflow` source (its sockets and
//! its decoder's templates are handed to its successor: the exporter sent
//! its template once, before the reload) and a Parquet sink — while an
//! unchanged sink keeps running. Nothing is lost and the ledger carries on.

mod common;

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::Guard;

/// A NetFlow v9 message: the template (256: src, dst, octets, packets)
/// when `template`, and `records` data records.
fn v9(seq: u32, template: bool, records: u32) -> Vec<u8> {
    let mut m = vec![0, 9, 0, 0];
    m.extend_from_slice(&3_600_000u32.to_be_bytes());
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as u32;
    m.extend_from_slice(&secs.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&7u32.to_be_bytes());
    if template {
        m.extend_from_slice(&[0, 0, 0, 24, 1, 0, 0, 4, 0, 8, 0, 4, 0, 12, 0, 4, 0, 1, 0, 4, 0, 2, 0, 4]);
    }
    let len = 4 + 16 * records as u16;
    m.extend_from_slice(&[1, 0]);
    m.extend_from_slice(&len.to_be_bytes());
    for r in 0..records {
        m.extend_from_slice(&[10, 0, 0, 1, 10, 0, 1, r as u8]);
        m.extend_from_slice(&100u32.to_be_bytes());
        m.extend_from_slice(&1u32.to_be_bytes());
    }
    let count = records as u16 + template as u16;
    m[2..4].copy_from_slice(&count.to_be_bytes());
    m
}

fn pipeline(port: u16, archive: &str, sampling: &str) -> String {
    format!(
        "sources:\n  flows: {{ type: netflow, listen: \"127.0.0.1:{port}\", workers: 2{sampling} }}\n\
         sinks:\n  archive: {{ type: parquet, inputs: [flows], path: {archive}, rotate: {{ max_age: 60s }} }}\n  \
         count: {{ type: blackhole, inputs: [flows] }}\n"
    )
}

#[test]
fn sighup_refuses_an_invalid_file_and_applies_a_changed_one_without_losing_a_record() {
    if !common::python_readers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_udp_port();
    let file = common::write_pipeline(dir.path(), &pipeline(port, "./a", ""));
    let ledger_path = dir.path().join("ledger.json");
    let g = Guard::run(dir.path(), &file, &["--ledger-json", ledger_path.to_str().unwrap()]);
    assert!(g.wait_for("listening for NetFlow/IPFIX", Duration::from_secs(30)));

    // One exporter: its template once, then data only, ~20k records/s.
    let go = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (go, sent) = (go.clone(), sent.clone());
        std::thread::spawn(move || {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut seq = 0;
            while go.load(Ordering::Relaxed) {
                s.send_to(&v9(seq, seq == 0, 10), ("127.0.0.1", port)).unwrap();
                sent.fetch_add(10, Ordering::Relaxed);
                seq += 1;
                std::thread::sleep(Duration::from_micros(500));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));

    // An invalid file: refused with its error, the pipeline goes on.
    std::fs::write(&file, pipeline(port, "./a", ", workers: 0")).unwrap();
    common::signal(g.id(), "HUP");
    assert!(g.wait_for("reload refused", Duration::from_secs(20)), "the invalid file must be refused");
    assert!(g.wait_for("duplicate key `workers`", Duration::from_secs(5)), "with every error");
    std::thread::sleep(Duration::from_millis(500));

    // A valid, changed file: the source gets a sampling override (so it is
    // replaced), the archive a new path (so it is replaced); `count` stays.
    std::fs::write(&file, pipeline(port, "./b", ", sampling: { overrides: { \"127.0.0.1\": 64 } }")).unwrap();
    common::signal(g.id(), "HUP");
    assert!(g.wait_for("pipeline reloaded", Duration::from_secs(20)), "the changed file must be applied");
    assert!(g.wait_for("taking over the sockets", Duration::from_secs(5)), "the same address is handed over");
    std::thread::sleep(Duration::from_millis(1500));
    go.store(false, Ordering::Relaxed);
    sender.join().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    common::signal(g.id(), "TERM");
    let out = g.wait();
    let text = common::text(&out);
    assert!(out.status.success(), "{text}");
    let ledger: serde_json::Value = serde_json::from_slice(&std::fs::read(&ledger_path).unwrap()).unwrap();
    common::assert_balanced(&ledger);
    let sent = sent.load(Ordering::Relaxed);
    let flows = common::entry(&ledger, "flows");
    assert_eq!(flows["dropped_total"], 0, "nothing dropped across the reload: {ledger}");
    assert_eq!(flows["received"], sent, "every record sent was received: {ledger}");
    assert_eq!(common::entry(&ledger, "count")["delivered"], sent, "the unchanged sink saw everything");
    assert_eq!(common::entry(&ledger, "archive")["delivered"], sent, "{ledger}");
    // Both archives hold everything, and the records after the reload carry
    // the new source's override: the template came before the reload, so
    // the successor decoded them with the state it was handed.
    let counts = common::run_python(
        "import sys, pyarrow.dataset as ds, pyarrow.compute as pc\n\
         a = ds.dataset(sys.argv[1], format='parquet').to_table()\n\
         b = ds.dataset(sys.argv[2], format='parquet').to_table()\n\
         print(a.num_rows, b.num_rows, pc.sum(pc.equal(b['sampling_source'], 'override')).as_py())",
        &[dir.path().join("a").to_str().unwrap(), dir.path().join("b").to_str().unwrap()],
    );
    let v: Vec<u64> = counts.split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert_eq!(v[0] + v[1], sent, "a: {}, b: {}", v[0], v[1]);
    assert!(v[1] > 0 && v[2] == v[1], "after the reload: {} rows, {} with the override", v[1], v[2]);
}
