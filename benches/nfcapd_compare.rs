//! Spillway beside nfcapd on the same load, in one run: the built-in
//! generator (NetFlow v9, 1,000 exporters, 30 records per packet, templates
//! every 20 packets) sends at rising rates to each receiver in turn —
//! nfcapd storing its files, a bare counting receive loop (the source's
//! socket and `recvmmsg` buffers, nothing else: the floor of our receive
//! path), Spillway into a blackhole, into Parquet and (when `tansu` is
//! installed) into Kafka — and the table gives each one's highest rate with
//! at most 0.1 % loss and nothing left queued in its sockets 100 ms after
//! the sender stopped (a receiver behind its load would otherwise pass a
//! short run on its receive buffer alone), its CPU there, and the ratios
//! to nfcapd's rate and to the bare loop's.
//!
//! Receivers run as their own processes (CPU is read from /proc for theirs
//! alone); the generator runs here and shares the cores, as a real
//! exporter fleet would not. Needs the release binary and nfdump:
//!
//! ```sh
//! cargo build --release && cargo bench --bench nfcapd_compare
//! ```
//!
//! `SPILLWAY_COMPARE_SECS` (default 5) sets the seconds per rate;
//! `SPILLWAY_COMPARE_ROWS=parquet,blackhole` runs only the rows whose names
//! hold one of the words (beside nfcapd and the bare loop, always; `none`
//! runs no row, for the measurements below alone).
//! `SPILLWAY_COMPARE_BASELINE=/path/to/an/older/spillway` runs every
//! Spillway row a second time with that binary, right after the row, so a
//! change is measured against the build before it in the same run.
//! `SPILLWAY_COMPARE_RSS_SECS=600` then runs Spillway → Parquet for that
//! long at its highest lossless rate (or `SPILLWAY_COMPARE_RSS_RATE`) and
//! prints its resident memory every 10 s; `SPILLWAY_COMPARE_EXPORTERS=100000`
//! measures the state one exporter costs (resident memory after that many
//! exporters' templates and first data, against a tenth as many).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spillway_netflow as _;

mod common;

/// Rates tried, records per second (finer around nfcapd's storing rate).
const RATES: [u64; 15] = [
    250_000, 500_000, 750_000, 1_000_000, 1_500_000, 2_000_000, 2_500_000, 3_000_000, 3_500_000, 4_000_000,
    5_000_000, 6_000_000, 8_000_000, 10_000_000, 14_000_000,
];

/// What one receiver did at one rate.
struct Outcome {
    sent: u64,
    stored: u64,
    cpu: f64,
    /// Bytes still queued in the receiver's sockets 100 ms after the
    /// sender stopped: a receiver that keeps up has none.
    backlog: u64,
}

/// Bytes queued to be read in the IPv4 UDP sockets bound to `port`
/// (`rx_queue` of `/proc/net/udp`, summed over `SO_REUSEPORT` sockets).
fn queued(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            let rx = u64::from_str_radix(f.get(4)?.split(':').nth(1)?, 16).ok()?;
            (local_port == port).then_some(rx)
        })
        .sum()
}

fn spillway_bin() -> PathBuf {
    // benches run from target/release/deps; the binary is one level up.
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).map(|d| d.join("spillway")).expect("target dir")
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Resident memory of process `pid`, bytes.
fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// The load (1,000 exporters) to `port` at `rate` records/s for `secs`.
fn send(port: u16, rate: u64, secs: u64) -> spillway_netflow::generate::Totals {
    let opts = spillway_netflow::generate::Options {
        rate: Some(rate),
        count: Some(rate * secs),
        duration: Some(Duration::from_secs(secs + 2)),
        ..spillway_netflow::generate::Options::v9_load(format!("127.0.0.1:{port}").parse().unwrap())
    };
    spillway_netflow::generate::run(&opts).expect("generator runs")
}

fn wait_listening(port: u16) {
    let listen = format!("127.0.0.1:{port}").parse().unwrap();
    let t = Instant::now();
    while !spillway_netflow::udp::is_listening(listen) {
        assert!(t.elapsed() < Duration::from_secs(30), "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends the load to the receiver `child` listening on `port`, then stops
/// it: what was sent and the CPU seconds the receiver used meanwhile.
fn measure(
    mut child: Child,
    port: u16,
    rate: u64,
    secs: u64,
) -> (spillway_netflow::generate::Totals, f64, u64) {
    wait_listening(port);
    let cpu0 = common::cpu_seconds_of(child.id());
    let sent = send(port, rate, secs);
    std::thread::sleep(Duration::from_millis(100));
    let backlog = queued(port);
    std::thread::sleep(Duration::from_millis(900));
    let cpu = common::cpu_seconds_of(child.id()) - cpu0;
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let _ = child.wait();
    (sent, cpu, backlog)
}

/// The bare loop, in a process of its own (this executable again, with
/// `--bare-loop PORT FILE`): it writes its datagram count to FILE every
/// 100 ms.
fn bare(rate: u64, secs: u64, dir: &Path) -> Outcome {
    let port = free_port();
    let file = dir.join("count");
    let child = Command::new(std::env::current_exe().expect("current exe"))
        .arg("--bare-loop")
        .arg(port.to_string())
        .arg(&file)
        .spawn()
        .expect("the bench runs itself");
    let (sent, cpu, backlog) = measure(child, port, rate, secs);
    let datagrams: u64 = std::fs::read_to_string(&file).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    // Every datagram of this load carries the same number of records.
    let stored = datagrams * sent.records / sent.packets.max(1);
    Outcome { sent: sent.records, stored, cpu, backlog }
}

fn bare_loop_main(port: &str, file: &Path) {
    let listen = format!("127.0.0.1:{port}").parse().unwrap();
    let tmp = file.with_extension("tmp");
    spillway_netflow::udp::bare_receive_loop(listen, 2, 64 << 20, Duration::from_millis(100), |n| {
        std::fs::write(&tmp, n.to_string()).is_ok() && std::fs::rename(&tmp, file).is_ok()
    })
    .expect("the bare loop receives");
}

fn nfcapd(rate: u64, secs: u64, dir: &Path) -> Outcome {
    let port = free_port();
    let child = Command::new("nfcapd")
        .args(["-b", "127.0.0.1", "-p", &port.to_string(), "-t", "3600", "-B", "67108864", "-w"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nfcapd runs (Debian's nfdump package)");
    let (sent, cpu, backlog) = measure(child, port, rate, secs);
    let sent = sent.records;
    let out = Command::new("nfdump").arg("-R").arg(dir).arg("-I").output().expect("nfdump runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let stored = text
        .lines()
        .find_map(|l| l.strip_prefix("Flows:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    Outcome { sent, stored, cpu, backlog }
}

/// Starts `spillway run` in `dir` with a `netflow` source of two workers
/// feeding sink `sink`; returns it and the source's port.
fn start_spillway(dir: &Path, sink: &str) -> (Child, u16) {
    start_spillway_bin(&spillway_bin(), dir, sink)
}

/// [`start_spillway`] with the binary `bin`.
fn start_spillway_bin(bin: &Path, dir: &Path, sink: &str) -> (Child, u16) {
    let port = free_port();
    let yaml = format!(
        "sources:\n  flows: {{ type: netflow, listen: \"127.0.0.1:{port}\", workers: 2, batch_size: 16384 }}\nsinks:\n  out: {sink}\n"
    );
    std::fs::write(dir.join("p.yaml"), yaml).unwrap();
    let child = Command::new(bin)
        .current_dir(dir)
        .args(["run", "p.yaml", "--ledger-json", "ledger.json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the release binary exists: cargo build --release");
    (child, port)
}

fn spillway(bin: &Path, rate: u64, secs: u64, dir: &Path, sink: &str) -> Outcome {
    let (child, port) = start_spillway_bin(bin, dir, sink);
    let (sent, cpu, backlog) = measure(child, port, rate, secs);
    let sent = sent.records;
    let ledger: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("ledger.json")).unwrap_or_default())
            .unwrap_or_default();
    let stored = ledger["components"]
        .as_array()
        .and_then(|c| c.iter().find(|e| e["component"] == "out"))
        .and_then(|e| e["delivered"].as_u64())
        .unwrap_or(0);
    Outcome { sent, stored, cpu, backlog }
}

/// Spillway → Parquet at `rate` for `secs`: resident memory every 10 s
/// (committed files are deleted as they appear, to spare the disk).
fn rss_curve(rate: u64, secs: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port) = start_spillway(
        dir.path(),
        "{ type: parquet, inputs: [flows], path: ./data, rotate: { max_age: 10s }, addresses: binary }",
    );
    wait_listening(port);
    let pid = child.id();
    let data = dir.path().join("data");
    let sampler = std::thread::spawn(move || {
        let t = Instant::now();
        let mut curve = Vec::new();
        while t.elapsed() < Duration::from_secs(secs) {
            std::thread::sleep(Duration::from_secs(10));
            curve.push((t.elapsed().as_secs(), rss_of(pid)));
            remove_parquet(&data);
        }
        curve
    });
    let sent = send(port, rate, secs);
    let curve = sampler.join().unwrap();
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    let _ = child.wait();
    println!();
    println!("resident memory, Spillway → Parquet at {rate} records/s ({} sent):", sent.records);
    println!("{:>8} {:>10}", "second", "RSS MiB");
    for (s, rss) in &curve {
        println!("{s:>8} {:>10.1}", *rss as f64 / (1 << 20) as f64);
    }
    if let (Some(first), Some(last)) = (curve.get(1), curve.last()) {
        println!(
            "from second {} to {}: {:+.1} MiB",
            first.0,
            last.0,
            (last.1 as f64 - first.1 as f64) / (1 << 20) as f64
        );
    }
}

fn remove_parquet(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            remove_parquet(&p);
        } else if p.extension().is_some_and(|x| x == "parquet") {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Resident memory of Spillway → blackhole after `n` exporters each sent
/// their template with one data packet (paced: nothing is dropped). Each
/// exporter's socket is opened, used once and closed, so the open-file
/// limit does not bound `n`.
fn rss_after_exporters(n: u32) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port) = start_spillway(dir.path(), "{ type: blackhole, inputs: [flows] }");
    wait_listening(port);
    std::thread::sleep(Duration::from_secs(1));
    let to: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t = Instant::now();
    let mut sent = 0u64;
    for (i, m) in spillway_netflow::generate::messages(9, n, n as usize, 30, 1) {
        let from = std::net::SocketAddr::new(spillway_netflow::generate::exporter_addr(i).into(), 0);
        let s = std::net::UdpSocket::bind(from).expect("a loopback source address");
        s.send_to(&m, to).expect("sent");
        sent += 1;
        // 10,000 datagrams/s: well inside what the collector takes.
        let due = Duration::from_micros(sent * 100);
        if let Some(wait) = due.checked_sub(t.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    let rss = rss_of(child.id());
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let _ = child.wait();
    (rss, sent)
}

fn state_per_exporter(n: u32) {
    let small = (n / 10).max(1);
    let (a, pa) = rss_after_exporters(small);
    let (b, pb) = rss_after_exporters(n);
    println!();
    println!("state per exporter (Spillway → blackhole, templates and first data of each exporter):");
    println!("{small:>8} exporters: {:>8.1} MiB resident ({pa} datagrams)", a as f64 / (1 << 20) as f64);
    println!("{n:>8} exporters: {:>8.1} MiB resident ({pb} datagrams)", b as f64 / (1 << 20) as f64);
    println!("per exporter: {:.0} bytes", (b as f64 - a as f64) / f64::from(n - small));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if let [_, flag, port, file] = &args[..]
        && flag == "--bare-loop"
    {
        bare_loop_main(port, Path::new(file));
        return;
    }
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let secs = std::env::var("SPILLWAY_COMPARE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    // A broker for the Kafka row, when tansu is installed.
    let broker = common::Tansu::start("sqlite://tansu.db").filter(|b| b.create("compare", 3));
    let mut receivers: Vec<(String, String)> = vec![
        ("nfcapd (storing)", ""),
        ("bare receive loop", "bare"),
        ("spillway → blackhole", "{ type: blackhole, inputs: [flows] }"),
        ("spillway → parquet", "{ type: parquet, inputs: [flows], path: ./data }"),
        ("parquet, zstd 3", "{ type: parquet, inputs: [flows], path: ./data, zstd_level: 3 }"),
        ("parquet, 1 writer", "{ type: parquet, inputs: [flows], path: ./data, writers: 1 }"),
        ("parquet, lz4", "{ type: parquet, inputs: [flows], path: ./data, compression: lz4 }"),
        ("parquet, plain integers", "{ type: parquet, inputs: [flows], path: ./data, integers: plain }"),
        ("parquet, binary addresses", "{ type: parquet, inputs: [flows], path: ./data, addresses: binary }"),
        // The dictionary columns before each chunk weighed its dictionary.
        (
            "parquet, low-card dictionaries",
            "{ type: parquet, inputs: [flows], path: ./data, dictionary: [exporter, next_hop, tcp_flags, \
             observation_domain, flow_version, protocol, tos, in_if, out_if, src_as, dst_as, src_mask, \
             dst_mask, vlan, direction, sampling_rate, sampling_source] }",
        ),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s.to_string()))
    .collect();
    if let Some(b) = &broker {
        let addr = b.addr();
        receivers.push((
            "spillway → kafka".into(),
            format!(
                "{{ type: kafka, inputs: [flows], brokers: \"{addr}\", topic: compare, encoding: protobuf }}"
            ),
        ));
    }
    // SPILLWAY_COMPARE_ROWS=parquet,lz4 keeps the rows whose names contain
    // one of the words, and always nfcapd's and the bare loop's (the ratios
    // are to them); `none` runs no row (only the optional measurements).
    if let Ok(keep) = std::env::var("SPILLWAY_COMPARE_ROWS") {
        let words: Vec<&str> = keep.split(',').map(str::trim).collect();
        receivers.retain(|(name, sink)| {
            (keep != "none" && (sink.is_empty() || sink == "bare")) || words.iter().any(|w| name.contains(w))
        });
    }
    // Each Spillway row again with an older build, right after it.
    let baseline = std::env::var_os("SPILLWAY_COMPARE_BASELINE").map(PathBuf::from);
    let mut runs: Vec<(String, String, PathBuf)> = Vec::new();
    for (name, sink) in receivers {
        let ours = !sink.is_empty() && sink != "bare";
        runs.push((name.clone(), sink.clone(), spillway_bin()));
        if let Some(b) = baseline.as_ref().filter(|_| ours) {
            runs.push((format!("{name} (baseline)"), sink, b.clone()));
        }
    }
    println!(
        "{:<22} {:>12} {:>12} {:>12} {:>12} {:>9} {:>8} {:>10}",
        "receiver", "target r/s", "sent r/s", "sent", "stored", "loss %", "CPU %", "queued B"
    );
    let mut best: Vec<(String, u64, f64)> = Vec::new();
    for (name, sink, bin) in &runs {
        let mut top = (0u64, 0.0f64);
        for rate in RATES {
            let dir = tempfile::tempdir().unwrap();
            let o = match sink.as_str() {
                "" => nfcapd(rate, secs, dir.path()),
                "bare" => bare(rate, secs, dir.path()),
                _ => spillway(bin, rate, secs, dir.path(), sink),
            };
            let loss = 100.0 * (o.sent.saturating_sub(o.stored)) as f64 / o.sent.max(1) as f64;
            let cpu = 100.0 * o.cpu / (secs + 1) as f64;
            // The generator tops out below the highest targets: what counts
            // is the rate it reached.
            let reached = o.sent / secs;
            println!(
                "{name:<22} {rate:>12} {reached:>12} {:>12} {:>12} {loss:>9.3} {cpu:>8.0} {:>10}",
                o.sent, o.stored, o.backlog
            );
            // Lossless: at most 0.1 % lost, and nothing left to read 100 ms
            // after the sender stopped (a large receive buffer would
            // otherwise hide a receiver that falls behind in a short run).
            if loss > 0.1 || o.backlog > 0 {
                break;
            }
            if reached > top.0 {
                top = (reached, cpu);
            }
            if reached < rate * 9 / 10 {
                // The sender's limit, not the receiver's.
                break;
            }
        }
        best.push((name.to_string(), top.0, top.1));
    }
    println!();
    println!(
        "{:<22} {:>22} {:>8} {:>12} {:>12}",
        "receiver", "highest lossless r/s", "CPU %", "× nfcapd", "× bare loop"
    );
    let base = best.first().map_or(1, |b| b.1.max(1)) as f64;
    let floor = best.get(1).map_or(1, |b| b.1.max(1)) as f64;
    for (name, rate, cpu) in &best {
        println!(
            "{name:<22} {rate:>22} {cpu:>8.0} {:>12.2} {:>12.2}",
            *rate as f64 / base,
            *rate as f64 / floor
        );
    }
    drop(broker);
    let env = |k: &str| std::env::var(k).ok().and_then(|s| s.parse::<u64>().ok());
    if let Some(rss_secs) = env("SPILLWAY_COMPARE_RSS_SECS") {
        let parquet = best.iter().find(|b| b.0.contains("parquet")).map_or(1_000_000, |b| b.1.max(250_000));
        rss_curve(env("SPILLWAY_COMPARE_RSS_RATE").unwrap_or(parquet), rss_secs);
    }
    if let Some(n) = env("SPILLWAY_COMPARE_EXPORTERS") {
        state_per_exporter(n as u32);
    }
}
