//! Hostile NetFlow input against a running collector: floods that used to
//! grow memory without bound (distinct templates and observation domains
//! from spoofed and real addresses; data sets that park forever, empty ones
//! included), and a crafted record that used to unbalance the ledger. Each
//! flood runs for a bounded time while the collector's RSS is read from
//! /proc; it must stay under the documented bound, every eviction must be
//! counted, and good traffic afterwards must still decode.
//!
//! `SPILLWAY_FLOOD_SECS` lengthens the floods (the CI run uses a few seconds).

mod common;

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Guard;

fn flood_secs() -> u64 {
    std::env::var("SPILLWAY_FLOOD_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(6)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").trim().to_string())
            })
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn metrics(admin: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(admin) else { return String::new() };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn set(id: u16, body: &[u8]) -> Vec<u8> {
    let mut s = id.to_be_bytes().to_vec();
    s.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    s.extend_from_slice(body);
    s
}

fn ipfix(domain: u32, seq: u32, sets: &[u8]) -> Vec<u8> {
    let mut m = vec![0, 10, 0, 0, 0x65, 0x53, 0xf1, 0];
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&domain.to_be_bytes());
    m.extend_from_slice(sets);
    let len = m.len() as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    m
}

/// A collector with bounds small enough to reach in seconds, an admin
/// endpoint, and its ledger written at the end.
fn collector(dir: &std::path::Path, port: u16, admin: &str) -> Guard {
    let yaml = format!(
        "sources:\n  flows:\n    type: netflow\n    listen: \"127.0.0.1:{port}\"\n    workers: 2\n    receive_buffer: 8MiB\n    \
         templates: {{ max_state: 16MiB, max_pending: 16MiB }}\n\
         sinks:\n  out: {{ type: blackhole, inputs: [flows] }}\nadmin: {{ listen: \"{admin}\" }}\n"
    );
    let p = common::write_pipeline(dir, &yaml);
    let g = Guard::run(dir, &p, &["--ledger-json", dir.join("ledger.json").to_str().unwrap()]);
    assert!(g.wait_for("listening for NetFlow/IPFIX", Duration::from_secs(30)));
    g
}

/// Runs `send` on 4 threads for the flood's duration, sampling the
/// collector's RSS; the highest RSS seen, in MiB.
fn flood(pid: u32, send: impl Fn(usize, u64) + Send + Sync + 'static) -> u64 {
    let go = Arc::new(AtomicBool::new(true));
    let send = Arc::new(send);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (go, send) = (go.clone(), send.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while go.load(Ordering::Relaxed) {
                    send(t, i);
                    i += 1;
                }
            })
        })
        .collect();
    let mut max = 0;
    let end = Instant::now() + Duration::from_secs(flood_secs());
    while Instant::now() < end {
        max = max.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    go.store(false, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    max = max.max(rss_kib(pid));
    max / 1024
}

/// Waits until the collector has read what the flood left in its socket
/// buffers (its message count stops moving).
fn wait_quiet(admin: &str) {
    let mut last = u64::MAX;
    let t = Instant::now();
    loop {
        let now = metric(&metrics(admin), "spillway_netflow_packets_total");
        if now == last {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "the collector never caught up");
        last = now;
        std::thread::sleep(Duration::from_millis(700));
    }
}

/// A good exporter's session: a template then data; `records` records.
fn good_traffic(port: u16, records: u32) {
    let s = UdpSocket::bind("127.9.9.9:0").unwrap();
    let tpl = set(2, &[1, 0, 0, 2, 0, 8, 0, 4, 0, 1, 0, 4]);
    let rec = [10, 0, 0, 1, 0, 0, 0, 100];
    let mut seq = 0;
    for i in 0..records / 10 {
        let data = set(256, &rec.repeat(10));
        let sets = if i == 0 { [tpl.clone(), data].concat() } else { data };
        s.send_to(&ipfix(1, seq, &sets), ("127.0.0.1", port)).unwrap();
        seq += 10;
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// RSS the collector may reach under any flood: the state and parking
/// budgets (16 MiB each here), channels and batches, and the debug build's
/// own size. Without the bounds a flood reached gigabytes in seconds.
const MAX_RSS_MIB: u64 = 400;

#[test]
fn a_flood_of_templates_and_domains_stays_within_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_udp_port();
    let admin = format!("127.0.0.1:{}", free_tcp_port());
    let g = collector(dir.path(), port, &admin);
    let base = rss_kib(g.id()) / 1024;
    let max = flood(g.id(), move |t, i| {
        thread_local!(static S: std::cell::OnceCell<UdpSocket> = const { std::cell::OnceCell::new() });
        S.with(|s| {
            // 64 spoofed exporters per thread, each naming new domains.
            let s = s.get_or_init(|| {
                UdpSocket::bind(format!("127.{}.{}.{}:0", 20 + t, (i / 97) % 200 + 1, i % 97 + 1)).unwrap()
            });
            let mut sets = Vec::new();
            for k in 0..40u16 {
                // A template of 30 fields, a different id each time.
                let mut body = vec![0u8; 4 + 30 * 4];
                body[0..2].copy_from_slice(
                    &(256 + (i as u16).wrapping_mul(40).wrapping_add(k) % 60000).to_be_bytes(),
                );
                body[3] = 30;
                for f in 0..30 {
                    body[4 + f * 4 + 1] = (1 + f) as u8;
                    body[4 + f * 4 + 3] = 4;
                }
                sets.extend(set(2, &body));
            }
            let _ = s.send_to(&ipfix(i as u32, 0, &sets), ("127.0.0.1", port));
        });
    });
    let m = metrics(&admin);
    let evicted = metric(&m, "spillway_netflow_templates_evicted_total");
    let refused = metric(&m, "spillway_netflow_domains_refused_total");
    let state = metric(&m, "spillway_netflow_state_bytes");
    eprintln!(
        "templates flood: RSS {base} MiB → max {max} MiB; evicted {evicted}, refused domains {refused}, state {state} bytes"
    );
    assert!(max < MAX_RSS_MIB, "RSS reached {max} MiB");
    assert!(state <= 16 << 20, "the state metric is within its budget: {state}");
    assert!(evicted > 0, "the flood must have hit the byte budget and evictions be counted:\n{m}");
    // Good traffic afterwards decodes.
    wait_quiet(&admin);
    good_traffic(port, 2000);
    std::thread::sleep(Duration::from_millis(500));
    common::signal(g.id(), "TERM");
    let out = g.wait();
    assert!(out.status.success(), "{}", common::text(&out));
    let ledger: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("ledger.json")).unwrap()).unwrap();
    common::assert_balanced(&ledger);
    assert!(common::entry(&ledger, "out")["delivered"].as_u64().unwrap() >= 1990, "{ledger}");
}

#[test]
fn a_flood_of_data_waiting_for_templates_empty_sets_included_stays_within_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_udp_port();
    let admin = format!("127.0.0.1:{}", free_tcp_port());
    let g = collector(dir.path(), port, &admin);
    // 16,000 empty data sets in one datagram; and sets with bodies.
    let empty = ipfix(1, 0, &set(300, &[]).repeat(16_000));
    let full = ipfix(2, 0, &[set(301, &[7u8; 1200]), set(302, &[8u8; 1200])].concat());
    let max = flood(g.id(), move |t, i| {
        thread_local!(static S: std::cell::OnceCell<UdpSocket> = const { std::cell::OnceCell::new() });
        S.with(|s| {
            let s = s.get_or_init(|| UdpSocket::bind(format!("127.30.{t}.1:0")).unwrap());
            let m = if i % 2 == 0 { &empty } else { &full };
            let _ = s.send_to(m, ("127.0.0.1", port));
        });
    });
    // The gauges are mirrored once a second, between receive batches; a
    // debug build under this flood takes seconds per batch, so read them
    // once the collector has caught up.
    wait_quiet(&admin);
    std::thread::sleep(Duration::from_millis(1500));
    let m = metrics(&admin);
    let pending = metric(&m, "spillway_netflow_pending_bytes");
    let evicted =
        metric(&m, "spillway_records_dropped_total{component=\"flows\",kind=\"source\",reason=\"evicted\"}");
    eprintln!("parked flood: max RSS {max} MiB; pending {pending} bytes; evicted {evicted} sets");
    assert!(max < MAX_RSS_MIB, "RSS reached {max} MiB");
    assert!(pending > 0 && pending <= 16 << 20, "pending_bytes is the parked data's real memory: {pending}");
    assert!(evicted > 0, "{m}");
    good_traffic(port, 1000);
    std::thread::sleep(Duration::from_millis(500));
    common::signal(g.id(), "TERM");
    let out = g.wait();
    assert!(out.status.success(), "{}", common::text(&out));
    let ledger: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("ledger.json")).unwrap()).unwrap();
    common::assert_balanced(&ledger);
    let flows = common::entry(&ledger, "flows");
    assert!(flows["dropped"]["evicted"].as_u64().unwrap() > 0, "{ledger}");
    assert!(flows["dropped"]["template_missing"].as_u64().unwrap() > 0, "still parked at the stop: {ledger}");
    assert!(common::entry(&ledger, "out")["delivered"].as_u64().unwrap() >= 990, "{ledger}");
}

#[test]
fn a_variable_length_field_overrunning_its_set_keeps_the_ledger_exact() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_udp_port();
    let admin = format!("127.0.0.1:{}", free_tcp_port());
    let g = collector(dir.path(), port, &admin);
    // Template 256: sourceIPv4Address, interfaceName (82, variable length).
    let tpl = set(2, &[1, 0, 0, 2, 0, 8, 0, 4, 0, 82, 0xff, 0xff]);
    // Two good records, then one whose length says 200 bytes with 3 left.
    let mut data = Vec::new();
    data.extend_from_slice(&[10, 0, 0, 1, 3, b'e', b't', b'h']);
    data.extend_from_slice(&[10, 0, 0, 2, 2, b'g', b'e']);
    data.extend_from_slice(&[10, 0, 0, 3, 200, 1, 2, 3]);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(&ipfix(1, 0, &[tpl, set(256, &data)].concat()), ("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    common::signal(g.id(), "TERM");
    let out = g.wait();
    assert!(out.status.success(), "{}", common::text(&out));
    let ledger: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("ledger.json")).unwrap()).unwrap();
    common::assert_balanced(&ledger);
    let flows = common::entry(&ledger, "flows");
    assert_eq!(flows["received"], 3, "two records and one malformed rest: {ledger}");
    assert_eq!(flows["emitted"], 2);
    assert_eq!(flows["dropped"]["malformed"], 1);
}
