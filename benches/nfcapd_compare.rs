//! Spillway beside nfcapd on the same load, in one run: the built-in
//! generator (NetFlow v9, 1,000 exporters, 30 records per packet, templates
//! every 20 packets) sends at rising rates to each receiver in turn —
//! nfcapd storing its files, Spillway into a blackhole, into Parquet and
//! (when `tansu` is installed) into Kafka — and the table gives each one's
//! highest rate with at most 0.1 % loss, its CPU there, and the ratio to
//! nfcapd's rate.
//!
//! Receivers run as their own processes (CPU is read from /proc for theirs
//! alone); the generator runs here and shares the cores, as a real
//! exporter fleet would not. Needs the release binary and nfdump:
//!
//! ```sh
//! cargo build --release && cargo bench --bench nfcapd_compare
//! ```
//!
//! `SPILLWAY_COMPARE_SECS` (default 5) sets the seconds per rate.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spillway_netflow as _;

/// Rates tried, records per second.
const RATES: [u64; 9] =
    [250_000, 500_000, 750_000, 1_000_000, 1_500_000, 2_000_000, 3_000_000, 4_000_000, 6_000_000];

/// What one receiver did at one rate.
struct Outcome {
    sent: u64,
    stored: u64,
    cpu: f64,
}

fn spillway_bin() -> PathBuf {
    // benches run from target/release/deps; the binary is one level up.
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).map(|d| d.join("spillway")).expect("target dir")
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// CPU seconds used by process `pid` so far.
fn cpu_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    // After the command: state is the first field, utime the 12th, stime
    // the 13th (clock ticks, 100 per second).
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / 100.0
}

fn send(port: u16, rate: u64, secs: u64) -> u64 {
    let opts = spillway_netflow::generate::Options {
        rate: Some(rate),
        count: Some(rate * secs),
        duration: Some(Duration::from_secs(secs + 2)),
        ..spillway_netflow::generate::Options::v9_load(format!("127.0.0.1:{port}").parse().unwrap())
    };
    spillway_netflow::generate::run(&opts).expect("generator runs").records
}

/// Sends the load to the receiver `child` listening on `port`, then stops
/// it: what was sent and the CPU seconds the receiver used meanwhile.
fn measure(mut child: Child, port: u16, rate: u64, secs: u64) -> (u64, f64) {
    let listen = format!("127.0.0.1:{port}").parse().unwrap();
    let t = Instant::now();
    while !spillway_netflow::udp::is_listening(listen) {
        assert!(t.elapsed() < Duration::from_secs(30), "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu0 = cpu_of(child.id());
    let sent = send(port, rate, secs);
    std::thread::sleep(Duration::from_secs(1));
    let cpu = cpu_of(child.id()) - cpu0;
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let _ = child.wait();
    (sent, cpu)
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
    let (sent, cpu) = measure(child, port, rate, secs);
    let out = Command::new("nfdump").arg("-R").arg(dir).arg("-I").output().expect("nfdump runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let stored = text
        .lines()
        .find_map(|l| l.strip_prefix("Flows:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    Outcome { sent, stored, cpu }
}

fn spillway(rate: u64, secs: u64, dir: &Path, sink: &str) -> Outcome {
    let port = free_port();
    let yaml = format!(
        "sources:\n  flows: {{ type: netflow, listen: \"127.0.0.1:{port}\", workers: 2, batch_size: 16384 }}\nsinks:\n  out: {sink}\n"
    );
    std::fs::write(dir.join("p.yaml"), yaml).unwrap();
    let child = Command::new(spillway_bin())
        .current_dir(dir)
        .args(["run", "p.yaml", "--ledger-json", "ledger.json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the release binary exists: cargo build --release");
    let (sent, cpu) = measure(child, port, rate, secs);
    let ledger: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("ledger.json")).unwrap_or_default())
            .unwrap_or_default();
    let stored = ledger["components"]
        .as_array()
        .and_then(|c| c.iter().find(|e| e["component"] == "out"))
        .and_then(|e| e["delivered"].as_u64())
        .unwrap_or(0);
    Outcome { sent, stored, cpu }
}

/// A tansu broker for the Kafka row, when installed.
fn tansu() -> Option<(Child, String, tempfile::TempDir)> {
    let dir = tempfile::tempdir().ok()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new("tansu")
        .current_dir(dir.path())
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t.elapsed() > Duration::from_secs(20) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ok = Command::new("tansu")
        .args(["topic", "create", "--broker", &url, "--partitions", "3", "compare"])
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| (child, format!("127.0.0.1:{port}"), dir))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let secs = std::env::var("SPILLWAY_COMPARE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let broker = tansu();
    let mut receivers: Vec<(&str, String)> = vec![
        ("nfcapd (storing)", String::new()),
        ("spillway → blackhole", "{ type: blackhole, inputs: [flows] }".into()),
        ("spillway → parquet", "{ type: parquet, inputs: [flows], path: ./data }".into()),
    ];
    if let Some((_, addr, _)) = &broker {
        receivers.push((
            "spillway → kafka",
            format!(
                "{{ type: kafka, inputs: [flows], brokers: \"{addr}\", topic: compare, encoding: protobuf }}"
            ),
        ));
    }
    println!(
        "{:<22} {:>12} {:>12} {:>12} {:>9} {:>8}",
        "receiver", "rate r/s", "sent", "stored", "loss %", "CPU %"
    );
    let mut best: Vec<(String, u64, f64)> = Vec::new();
    for (name, sink) in &receivers {
        let mut top = (0u64, 0.0f64);
        for rate in RATES {
            let dir = tempfile::tempdir().unwrap();
            let o = if sink.is_empty() {
                nfcapd(rate, secs, dir.path())
            } else {
                spillway(rate, secs, dir.path(), sink)
            };
            let loss = 100.0 * (o.sent.saturating_sub(o.stored)) as f64 / o.sent.max(1) as f64;
            let cpu = 100.0 * o.cpu / (secs + 1) as f64;
            println!("{name:<22} {rate:>12} {:>12} {:>12} {loss:>9.3} {cpu:>8.0}", o.sent, o.stored);
            if loss <= 0.1 {
                top = (rate, cpu);
            } else {
                break;
            }
        }
        best.push((name.to_string(), top.0, top.1));
    }
    println!();
    println!("{:<22} {:>22} {:>8} {:>12}", "receiver", "highest lossless r/s", "CPU %", "× nfcapd");
    let base = best.first().map_or(1, |b| b.1.max(1)) as f64;
    for (name, rate, cpu) in &best {
        println!("{name:<22} {rate:>22} {cpu:>8.0} {:>12.2}", *rate as f64 / base);
    }
    if let Some((mut child, _, _)) = broker {
        let _ = child.kill();
        let _ = child.wait();
    }
}
