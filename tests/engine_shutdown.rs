//! Stopping a pipeline: signals drain everything, `kill -9` never leaves a
//! corrupt file, a failing component is named and the rest drains.

mod common;

use std::io::{Read, Write};

use std::time::{Duration, Instant};

const ENDLESS_TO_PARQUET: &str = r#"
sources:
  flows: { type: demo, rate: 40000 }
sinks:
  archive: { type: parquet, inputs: [flows], path: ./out, partition: "dt=%Y-%m-%d/hour=%H", rotate: { max_age: 1h } }
"#;

fn count_rows(root: &std::path::Path) -> u64 {
    let out = common::run_python(
        "import sys, pyarrow.dataset as ds; print(ds.dataset(sys.argv[1], format='parquet', partitioning='hive').count_rows())",
        &[root.to_str().unwrap()],
    );
    out.trim().parse().unwrap()
}

fn stop_mid_stream(sig: &str) {
    if !common::python_readers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = common::write_pipeline(dir.path(), ENDLESS_TO_PARQUET);
    let ledger_path = dir.path().join("ledger.json");
    let child = common::Guard::run(dir.path(), &p, &["--ledger-json", ledger_path.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(1500));
    // With a one-hour max_age nothing is durable yet: everything in flight
    // must be flushed by the graceful stop.
    assert!(common::parquet_files(&dir.path().join("out")).is_empty());
    common::signal(child.id(), sig);
    let out = child.wait();
    assert!(out.status.success(), "{}", common::text(&out));
    let ledger: serde_json::Value = serde_json::from_slice(&std::fs::read(&ledger_path).unwrap()).unwrap();
    common::assert_balanced(&ledger);
    let received = common::entry(&ledger, "flows")["received"].as_u64().unwrap();
    assert!(received > 10_000, "the source ran: {ledger}");
    assert_eq!(common::entry(&ledger, "archive")["delivered"].as_u64().unwrap(), received);
    assert_eq!(count_rows(&dir.path().join("out")), received, "every generated record is in the files");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ledger") && stderr.contains("in_flight"),
        "the ledger table is printed: {stderr}"
    );
}

#[test]
fn sigterm_in_mid_stream_loses_nothing() {
    stop_mid_stream("TERM");
}

#[test]
fn sigint_in_mid_stream_loses_nothing() {
    stop_mid_stream("INT");
}

#[test]
fn kill_9_never_leaves_a_partial_file_under_a_final_name() {
    if !common::python_readers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Small files so that renames happen all the time while we kill.
    let p = common::write_pipeline(
        dir.path(),
        r#"
sources:
  flows: { type: demo, batch_size: 500 }
sinks:
  archive: { type: parquet, inputs: [flows], path: ./out, rotate: { max_rows: 3000 }, row_group_rows: 1000 }
"#,
    );
    for round in 0..3 {
        let child = common::Guard::run(dir.path(), &p, &[]);
        std::thread::sleep(Duration::from_millis(1200 + 300 * round));
        common::signal(child.id(), "KILL");
        let _ = child.wait();
    }
    let root = dir.path().join("out");
    let files = common::parquet_files(&root);
    assert!(files.len() > 3, "files were written before the kills");
    // Every file under a final name is complete: pyarrow reads each fully and
    // its row count matches its footer.
    let script = r#"
import sys, pyarrow.parquet as pq
bad = []
for f in sys.argv[1:]:
    try:
        t = pq.read_table(f)
        if t.num_rows != pq.ParquetFile(f).metadata.num_rows or t.num_rows == 0:
            bad.append(f)
    except Exception as e:
        bad.append(f + ': ' + str(e))
print(len(bad))
for b in bad: print(b)
"#;
    let args: Vec<&str> = files.iter().map(|f| f.to_str().unwrap()).collect();
    let out = common::run_python(script, &args);
    assert_eq!(out.lines().next(), Some("0"), "unreadable files:\n{out}");
    // A run after the crashes moves leftovers aside and carries on. (Each
    // restart between the kills already moved the previous round's.)
    let leftovers = temporaries(&root);
    let ok = common::write_pipeline(
        dir.path(),
        "sources:\n  flows: { type: demo, count: 1000 }\nsinks:\n  archive: { type: parquet, inputs: [flows], path: ./out }\n",
    );
    let (out, ledger) = common::run_pipeline(dir.path(), &ok);
    assert!(out.status.success(), "{}", common::text(&out));
    common::assert_balanced(&ledger);
    let moved = std::fs::read_dir(root.join(spillway_parquet::INCOMPLETE_DIR)).map_or(0, |d| d.count());
    assert!(moved >= leftovers, "every leftover temporary file was moved aside ({moved} < {leftovers})");
    if leftovers > 0 {
        assert!(String::from_utf8_lossy(&out.stderr).contains("left by an earlier crash"));
    }
    assert_eq!(temporaries(&root), 0);
}

/// Temporary files in the dataset (not counting the `_incomplete` folder).
fn temporaries(root: &std::path::Path) -> usize {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                if !p.ends_with(spillway_parquet::INCOMPLETE_DIR) {
                    stack.push(p);
                }
            } else if p.to_string_lossy().ends_with(spillway_parquet::TMP_SUFFIX) {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn a_failing_sink_is_named_and_the_other_branch_still_drains() {
    let dir = tempfile::tempdir().unwrap();
    // A file name longer than the filesystem allows: the directory takes new
    // files (validation passes), but this one cannot be created.
    let long = "x".repeat(300);
    let p = common::write_pipeline(
        dir.path(),
        &format!(
            r#"
sources:
  flows: {{ type: demo, count: 50000, batch_size: 1000 }}
sinks:
  broken: {{ type: file, inputs: [flows], path: ./{long}.jsonl }}
  fine: {{ type: blackhole, inputs: [flows] }}
"#
        ),
    );
    let (out, ledger) = common::run_pipeline(dir.path(), &p);
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("component failed") && stderr.contains("broken"), "{stderr}");
    common::assert_balanced(&ledger);
    let emitted = common::entry(&ledger, "flows")["emitted"].as_u64().unwrap();
    assert_eq!(common::entry(&ledger, "fine")["delivered"].as_u64().unwrap(), emitted);
    let broken = common::entry(&ledger, "broken");
    assert_eq!(broken["received"].as_u64().unwrap(), emitted);
    assert_eq!(broken["dropped"]["component_failed"].as_u64().unwrap(), emitted);
    assert_eq!(ledger["failures"][0]["component"], "broken");
}

#[test]
fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // Nobody reads the FIFO, so the file sink can never drain.
    let p = common::write_pipeline(
        dir.path(),
        "sources:\n  flows: { type: demo, rate: 1000 }\nsinks:\n  stuck: { type: file, inputs: [flows], path: ./fifo, sync: false }\n",
    );
    let mut child = common::Guard::run(dir.path(), &p, &[]);
    std::thread::sleep(Duration::from_millis(800));
    common::signal(child.id(), "TERM");
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().is_none(), "the graceful stop waits for the stuck sink");
    common::signal(child.id(), "TERM");
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "a second signal must exit at once");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let code = body.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, body)
}

#[test]
fn the_admin_endpoint_serves_the_live_ledger_and_health() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let p = common::write_pipeline(
        dir.path(),
        &format!(
            "sources:\n  flows: {{ type: demo, rate: 2000 }}\nsinks:\n  out: {{ type: blackhole, inputs: [flows] }}\nadmin:\n  listen: \"{addr}\"\n"
        ),
    );
    let child = common::Guard::run(dir.path(), &p, &[]);
    let t = Instant::now();
    let delivered = |body: &str| -> u64 {
        body.lines()
            .find_map(|l| {
                l.strip_prefix("spillway_records_delivered_total{component=\"out\",kind=\"sink\"} ")
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let metrics = loop {
        if std::net::TcpStream::connect(&addr).is_ok() {
            let (code, body) = http_get(&addr, "/metrics");
            if code == 200 && delivered(&body) > 0 {
                break body;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(20), "admin endpoint never came up");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        metrics.contains("spillway_records_received_total{component=\"flows\",kind=\"source\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE spillway_records_dropped_total counter"));
    let (code, health) = http_get(&addr, "/health");
    assert_eq!(code, 200, "{health}");
    assert!(health.contains("\"status\":\"ok\"") && health.contains("\"out\":\"running\""), "{health}");
    common::signal(child.id(), "TERM");
    let out = child.wait();
    assert!(out.status.success(), "{}", common::text(&out));
}

/// `/ready` answers 200 only once the collector's socket is bound: a load
/// balancer's health check sends no traffic to a collector before then.
#[test]
fn ready_means_the_collector_socket_is_bound() {
    let dir = tempfile::tempdir().unwrap();
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (admin, udp) = (format!("127.0.0.1:{}", free()), format!("127.0.0.1:{}", free()));
    let p = common::write_pipeline(
        dir.path(),
        &format!(
            "sources:\n  flows: {{ type: netflow, listen: \"{udp}\" }}\nsinks:\n  out: {{ type: blackhole, inputs: [flows] }}\nadmin:\n  listen: \"{admin}\"\n"
        ),
    );
    let child = common::Guard::run(dir.path(), &p, &[]);
    let t = Instant::now();
    loop {
        if std::net::TcpStream::connect(&admin).is_ok() {
            let (code, body) = http_get(&admin, "/ready");
            if code == 200 {
                assert!(body.ends_with("\r\n\r\nready\n"), "{body}");
                break;
            }
            assert_eq!(code, 503, "{body}");
        }
        assert!(t.elapsed() < Duration::from_secs(20), "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let taken = std::net::UdpSocket::bind(&udp).expect_err("ready, so the collector holds the port");
    assert_eq!(taken.kind(), std::io::ErrorKind::AddrInUse);
    common::signal(child.id(), "TERM");
    let out = child.wait();
    assert!(out.status.success(), "{}", common::text(&out));
}

#[test]
fn strict_runs_fail_only_on_loss_not_on_filtering() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::write_pipeline(
        dir.path(),
        "sources:\n  flows: { type: demo, count: 5000 }\ntransforms:\n  tcp: { type: filter, inputs: [flows], condition: \"protocol == 6\" }\nsinks:\n  out: { type: blackhole, inputs: [tcp] }\n",
    );
    let out = common::spillway().current_dir(dir.path()).args(["run", "--strict"]).arg(&p).output().unwrap();
    assert!(out.status.success(), "filtering is not loss: {}", common::text(&out));
    assert!(!common::text(&out).contains("records were lost"), "{}", common::text(&out));
}

#[test]
fn the_admin_endpoint_closes_slow_idle_and_excess_connections() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let p = common::write_pipeline(
        dir.path(),
        &format!(
            "sources:\n  flows: {{ type: demo, rate: 100 }}\nsinks:\n  out: {{ type: blackhole, inputs: [flows] }}\nadmin:\n  listen: \"{addr}\"\n"
        ),
    );
    let child = common::Guard::run(dir.path(), &p, &[]);
    common::wait_until("the admin endpoint", Duration::from_secs(20), || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    // The probes above have let go of their slots.
    std::thread::sleep(Duration::from_secs(1));
    // Every slot taken by a client that never sends a request.
    let hogs: Vec<std::net::TcpStream> =
        (0..64).map(|_| std::net::TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_secs(1));
    // One more is closed at once: a read sees the end, not a timeout.
    let mut extra = std::net::TcpStream::connect(&addr).unwrap();
    extra.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(extra.read(&mut buf).unwrap(), 0, "the 65th connection is closed");
    // The silent ones are closed within the header timeout (5 s).
    let t = Instant::now();
    for mut h in hogs {
        h.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let n = h.read(&mut buf).unwrap_or(0);
        assert!(n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"), "{n}");
    }
    assert!(t.elapsed() < Duration::from_secs(8), "closed after {:?}", t.elapsed());
    // An idle keep-alive connection is closed too, after a request.
    let mut ka = std::net::TcpStream::connect(&addr).unwrap();
    ka.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(ka, "GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut first = [0u8; 4096];
    assert!(ka.read(&mut first).unwrap() > 0);
    let mut rest = Vec::new();
    let t = Instant::now();
    let _ = ka.read_to_end(&mut rest);
    assert!(t.elapsed() < Duration::from_secs(8), "idle keep-alive kept for {:?}", t.elapsed());
    // And the endpoint still serves.
    let (code, _) = http_get(&addr, "/health");
    assert_eq!(code, 200);
    let (_, metrics) = http_get(&addr, "/metrics");
    assert!(metrics.contains("\nspillway_admin_connections_refused_total 1\n"), "{metrics}");
    common::signal(child.id(), "TERM");
    assert!(child.wait().status.success());
}

/// A NetFlow v5 datagram of `records` records (sequence `seq`).
fn v5(seq: u32, records: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(24 + 48 * records as usize);
    m.extend_from_slice(&5u16.to_be_bytes());
    m.extend_from_slice(&records.to_be_bytes());
    m.extend_from_slice(&1000u32.to_be_bytes()); // uptime
    m.extend_from_slice(&1_790_000_000u32.to_be_bytes()); // export seconds
    m.extend_from_slice(&0u32.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]); // engine, sampling
    for i in 0..records {
        let mut r = [0u8; 48];
        r[0..4].copy_from_slice(&[10, 0, 0, 1]);
        r[4..8].copy_from_slice(&[10, 0, 1, i as u8]);
        r[16..20].copy_from_slice(&1u32.to_be_bytes()); // packets
        r[20..24].copy_from_slice(&100u32.to_be_bytes()); // bytes
        r[38] = 17;
        m.extend_from_slice(&r);
    }
    m
}

#[test]
fn sigterm_turns_not_ready_and_keeps_receiving_through_the_drain_grace() {
    let dir = tempfile::tempdir().unwrap();
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (admin, udp) = (format!("127.0.0.1:{}", free()), format!("127.0.0.1:{}", free()));
    let p = common::write_pipeline(
        dir.path(),
        &format!(
            "sources:\n  flows: {{ type: netflow, listen: \"{udp}\" }}\nsinks:\n  out: {{ type: blackhole, inputs: [flows] }}\nadmin:\n  listen: \"{admin}\"\n  drain_grace: 4s\n"
        ),
    );
    let ledger = dir.path().join("ledger.json");
    let child = common::Guard::run(dir.path(), &p, &["--ledger-json", ledger.to_str().unwrap()]);
    let mut phases = Vec::new();
    let mut note = |body: &str| {
        let word = body.rsplit("\r\n\r\n").next().unwrap_or("").trim().to_string();
        if phases.last() != Some(&word) {
            phases.push(word);
        }
    };
    common::wait_until("ready", Duration::from_secs(20), || {
        std::net::TcpStream::connect(&admin).is_ok() && http_get(&admin, "/health/ready").0 == 200
    });
    note(&http_get(&admin, "/health/ready").1);
    assert_eq!(http_get(&admin, "/health/live").0, 200);
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..10 {
        s.send_to(&v5(i * 10, 10), &udp).unwrap();
    }
    common::signal(child.id(), "TERM");
    let t = Instant::now();
    loop {
        let (code, body) = http_get(&admin, "/health/ready");
        if code == 503 {
            note(&body);
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "still ready after SIGTERM: {body}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (live, _) = http_get(&admin, "/health/live");
    assert_eq!(live, 200, "alive while draining");
    // Not ready, yet still receiving: what a balancer still sends during its
    // deregistration delay is collected.
    for i in 10..20 {
        s.send_to(&v5(i * 10, 10), &udp).unwrap();
    }
    let out = child.wait();
    assert!(out.status.success(), "{}", common::text(&out));
    assert_eq!(phases, ["ready", "draining"], "readiness transitions seen over HTTP");
    let ledger: serde_json::Value = serde_json::from_slice(&std::fs::read(&ledger).unwrap()).unwrap();
    common::assert_balanced(&ledger);
    assert_eq!(common::entry(&ledger, "flows")["received"], 200, "{ledger}");
    assert_eq!(common::entry(&ledger, "out")["delivered"], 200, "{ledger}");
    assert!(common::text(&out).contains("drain grace over"), "{}", common::text(&out));
}
