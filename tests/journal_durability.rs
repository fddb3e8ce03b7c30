//! The journal of the UDP sources against real crashes: `kill -9` under
//! load, torn segment tails, a stop with data parked for its template. The
//! Parquet output is read back by pyarrow and compared with the
//! generator's own totals, to the record.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Guard, generator, metric, totals};

fn pipeline(dir: &Path, port: u16, admin: u16, journal: bool, rotate: &str) -> PathBuf {
    let journal =
        if journal { "\n    journal: { dir: ./journal, segment_size: 1MiB, max_size: 512MiB }" } else { "" };
    common::write_pipeline(
        dir,
        &format!(
            "sources:\n  flows:\n    type: netflow\n    listen: \"127.0.0.1:{port}\"\n    workers: 2{journal}\nsinks:\n  \
             out: {{ type: parquet, inputs: [flows], path: ./data, rotate: {rotate} }}\nadmin:\n  listen: \
             \"127.0.0.1:{admin}\"\n"
        ),
    )
}

/// A test's directory, UDP port, admin port and pipeline; `None` (skip)
/// when the Parquet readers are missing outside CI.
fn setup(journal: bool, rotate: &str) -> Option<(tempfile::TempDir, u16, u16, PathBuf)> {
    if journal && !common::python_readers() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (common::free_udp_port(), common::free_tcp_port());
    let p = pipeline(dir.path(), port, admin, journal, rotate);
    Some((dir, port, admin, p))
}

/// Starts the collector and waits until it is ready (journal replayed,
/// sockets bound).
fn start(dir: &Path, p: &Path, admin: u16) -> Guard {
    let g = Guard::run(dir, p, &["--ledger-json", "ledger.json"]);
    let addr = format!("127.0.0.1:{admin}");
    let t = Instant::now();
    while common::http_get(&addr, "/health/ready").0 != 200 {
        assert!(t.elapsed() < Duration::from_secs(30), "the collector never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    g
}

fn kernel_drops(admin: u16) -> u64 {
    metric(
        &format!("127.0.0.1:{admin}"),
        "spillway_records_dropped_total{component=\"flows\",kind=\"source\",reason=\"buffer_full\"}",
    )
}

/// Rows and sums of the Parquet files under `dir/data`.
fn parquet_totals(dir: &Path) -> serde_json::Value {
    let out = common::run_python(
        r#"
import sys, json, pyarrow.dataset as ds, pyarrow.compute as pc
t = ds.dataset(sys.argv[1], format='parquet').to_table()
print(json.dumps({'records': t.num_rows, 'sum_bytes': pc.sum(t['bytes']).as_py() or 0,
  'sum_packets': pc.sum(t['packets']).as_py() or 0}))
"#,
        &[dir.join("data").to_str().unwrap()],
    );
    serde_json::from_str(&out).unwrap()
}

fn pause(pid: u32) {
    common::signal(pid, "STOP");
}
fn resume(pid: u32) {
    common::signal(pid, "CONT");
}

/// Sends load, and three times: pauses the sender, lets the collector take
/// in what was sent (and its kernel-drop poll run), kills it with -9 and
/// starts it again. Returns the sender's totals and how many replayed rows
/// the Parquet sink skipped because a committed file held them already.
fn crash_three_times(
    dir: &Path,
    p: &Path,
    port: u16,
    admin: u16,
    between_kills: impl Fn(),
) -> (serde_json::Value, u64) {
    let skipped = || metric(&format!("127.0.0.1:{admin}"), "spillway_parquet_replays_skipped_total");
    let mut skips = 0;
    let mut g = start(dir, p, admin);
    let sender = generator(port, &["--exporters", "50", "--count", "240000", "--rate", "20000"]);
    for round in 0..3 {
        std::thread::sleep(Duration::from_secs(3));
        pause(sender.id());
        std::thread::sleep(Duration::from_millis(1300));
        assert_eq!(
            kernel_drops(admin),
            0,
            "round {round}: the socket dropped datagrams; choose a lower rate"
        );
        assert!(
            metric(&format!("127.0.0.1:{admin}"), "spillway_journal_appended_total") > 0 || round > 0,
            "the journal took nothing in"
        );
        skips += skipped();
        common::signal(g.id(), "KILL");
        let _ = g.wait();
        between_kills();
        g = start(dir, p, admin);
        resume(sender.id());
    }
    let t = totals(sender);
    std::thread::sleep(Duration::from_millis(500));
    skips += skipped();
    let ledger = common::stop_collector(g, dir);
    assert_eq!(common::entry(&ledger, "flows")["dropped_total"], 0, "{ledger}");
    (t, skips)
}

#[test]
fn kill_9_three_times_under_load_into_parquet_loses_nothing_and_duplicates_nothing() {
    // Rotation at 60 s: nothing is durable in Parquet when each kill comes.
    let Some((dir, port, admin, p)) = setup(true, "{ max_age: 60s }") else { return };
    let (t, _) = crash_three_times(dir.path(), &p, port, admin, || {});
    let got = parquet_totals(dir.path());
    assert_eq!(got["records"], t["records"], "parquet {got} vs sent {t}");
    assert_eq!(got["sum_bytes"], t["sum_bytes"]);
    assert_eq!(got["sum_packets"], t["sum_packets"]);
    // What was acknowledged left the journal.
    let left: u64 = std::fs::read_dir(dir.path().join("journal/w0"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .count() as u64;
    assert_eq!(left, 1, "only the segment being written stays after a graceful stop");
}

#[test]
fn a_replay_skips_what_committed_parquet_files_record_even_without_the_settled_position() {
    // Files commit every 20,000 rows: a kill comes after some are durable.
    let Some((dir, port, admin, p)) = setup(true, "{ max_age: 60s, max_rows: 20000 }") else { return };
    let root = dir.path().to_path_buf();
    // The crash window this covers: a file committed, the settled position
    // not yet written. Removing the position leaves only the files' marks.
    let forget_settled = move || {
        for w in ["w0", "w1"] {
            let _ = std::fs::remove_file(root.join("journal").join(w).join("settled"));
        }
    };
    let (t, skipped) = crash_three_times(dir.path(), &p, port, admin, forget_settled);
    assert!(skipped > 0, "the Parquet sink skipped replayed rows its files held");
    let got = parquet_totals(dir.path());
    assert_eq!(got["records"], t["records"], "parquet {got} vs sent {t}");
    assert_eq!(got["sum_bytes"], t["sum_bytes"]);
    assert_eq!(got["sum_packets"], t["sum_packets"]);
}

#[test]
fn a_torn_segment_tail_replays_the_good_prefix_and_counts_the_rest() {
    let Some((dir, port, admin, p)) = setup(true, "{ max_age: 60s }") else { return };
    let g = start(dir.path(), &p, admin);
    // Templates once at start: every later datagram holds 30 records.
    let t = totals(generator(
        port,
        &["--exporters", "5", "--count", "30000", "--rate", "20000", "--templates-once", "200ms"],
    ));
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(kernel_drops(admin), 0);
    common::signal(g.id(), "KILL");
    let _ = g.wait();
    // Power loss: the last record of a worker's journal is cut short (the
    // kernel spreads 5 exporters over the two sockets by their ports, so
    // one worker may have none: the first that has some).
    let segments = |w: &str| -> Vec<PathBuf> {
        let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.path().join("journal").join(w))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        segs.retain(|p| p.extension().is_some_and(|x| x == "seg") && p.metadata().unwrap().len() > 24);
        segs.sort();
        segs
    };
    let segs = ["w0", "w1"].iter().map(|w| segments(w)).find(|s| !s.is_empty()).unwrap_or_default();
    let last = segs.last().expect("a worker journaled something");
    let len = last.metadata().unwrap().len();
    std::fs::OpenOptions::new().write(true).open(last).unwrap().set_len(len - 7).unwrap();
    let g = start(dir.path(), &p, admin);
    assert!(g.wait_for("torn or corrupt", Duration::from_secs(5)), "the damage is logged");
    let ledger = common::stop_collector(g, dir.path());
    let flows = common::entry(&ledger, "flows");
    assert_eq!(flows["dropped"]["malformed"], 1, "{ledger}");
    let got = parquet_totals(dir.path());
    assert_eq!(got["records"].as_u64().unwrap(), t["records"].as_u64().unwrap() - 30, "one datagram lost");
}

#[test]
fn data_parked_at_a_stop_stays_in_the_journal_and_decodes_once_its_template_arrives() {
    let Some((dir, port, admin, p)) = setup(true, "{ max_age: 60s }") else { return };
    let g = start(dir.path(), &p, admin);
    // Data of 10 exporters whose templates this collector never saw.
    let data_only = totals(generator(
        port,
        &["--exporters", "10", "--count", "60000", "--rate", "30000", "--no-templates"],
    ));
    let ledger = common::stop_collector(g, dir.path());
    let flows = common::entry(&ledger, "flows");
    assert_eq!(flows["received"], 0, "nothing decodable yet: {ledger}");
    assert_eq!(flows["dropped_total"], 0, "nothing is lost either: it waits in the journal: {ledger}");
    // Next start: the same exporters, now with templates.
    let g = start(dir.path(), &p, admin);
    let more = totals(generator(port, &["--exporters", "10", "--count", "3000", "--rate", "30000"]));
    let ledger = common::stop_collector(g, dir.path());
    let total = data_only["records"].as_u64().unwrap() + more["records"].as_u64().unwrap();
    assert_eq!(common::entry(&ledger, "flows")["received"], total, "{ledger}");
    let got = parquet_totals(dir.path());
    assert_eq!(got["records"], total);
    assert_eq!(
        got["sum_bytes"].as_u64().unwrap(),
        data_only["sum_bytes"].as_u64().unwrap() + more["sum_bytes"].as_u64().unwrap()
    );
}

#[test]
fn without_a_journal_data_parked_at_a_stop_is_counted_as_dropped() {
    let Some((dir, port, admin, p)) = setup(false, "{ max_age: 60s }") else { return };
    let g = start(dir.path(), &p, admin);
    let sent = totals(generator(
        port,
        &["--exporters", "10", "--count", "60000", "--rate", "30000", "--no-templates"],
    ));
    let ledger = common::stop_collector(g, dir.path());
    let flows = common::entry(&ledger, "flows");
    // A parked set's record count is unknown without its template: each
    // counts as one, and the ledger says why.
    assert_eq!(flows["dropped"]["template_missing"], sent["packets"], "{ledger}");
    assert_eq!(flows["dropped_total"], sent["packets"], "{ledger}");
}

/// The raw relay tier's edge (`relay: true`) journals the same way: what it
/// took in before `kill -9` is relayed after the restart, each datagram at
/// least once (a file sink keeps no marks) and with its original receive
/// time, so a replayed datagram is the same record.
#[test]
fn a_relay_edge_replays_its_journal_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_udp_port();
    let admin = common::free_tcp_port();
    let p = common::write_pipeline(
        dir.path(),
        &format!(
            "sources:\n  flows:\n    type: netflow\n    listen: \"127.0.0.1:{port}\"\n    relay: true\n    journal: {{ dir: \
             ./journal }}\nsinks:\n  out: {{ type: file, inputs: [flows], path: out.jsonl }}\nadmin:\n  listen: \
             \"127.0.0.1:{admin}\"\n"
        ),
    );
    let g = start(dir.path(), &p, admin);
    let t = totals(generator(port, &["--exporters", "20", "--count", "60000", "--rate", "30000"]));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(kernel_drops(admin), 0);
    common::signal(g.id(), "KILL");
    let _ = g.wait();
    let g = start(dir.path(), &p, admin);
    common::stop_collector(g, dir.path());
    let text = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    // A line the killed run was writing is not a record.
    let lines: Vec<&str> = text.lines().filter(|l| l.ends_with('}')).collect();
    let distinct: std::collections::HashSet<&str> = lines.iter().copied().collect();
    let packets = t["packets"].as_u64().unwrap() as usize;
    assert_eq!(distinct.len(), packets, "every datagram relayed");
    assert!(lines.len() >= packets);
    eprintln!(
        "relayed {} lines for {packets} datagrams ({} replayed twice)",
        lines.len(),
        lines.len() - packets
    );
}
