//! SNMP polling cost: 1,000 targets (100 agent addresses served by four
//! net-snmp `snmpd` processes, ten target names each) polled by the
//! `spillway` binary for three rounds, v2c and then v3 authPriv (SHA-256,
//! AES). Reports polls per second and the CPU time the poller spent per
//! 1,000 polls (from /proc), beside the agents' CPU in the same run.
//!
//! The agents, not the poller, bound the rate here: net-snmp answers a few
//! hundred to a few thousand requests a second per process. Run with
//! `cargo bench --bench snmp_poll` (needs `snmpd`; scripts/test.sh installs it).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn main() {
    if Command::new("snmpd").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        eprintln!("snmpd is not installed: run scripts/test.sh first");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut agents = Vec::new();
    let mut addrs = Vec::new();
    for k in 0..4 {
        let mine: Vec<String> = (1..=25).map(|i| format!("127.5.{k}.{i}")).collect();
        let d = dir.path().join(format!("agent{k}"));
        std::fs::create_dir_all(d.join("persist")).unwrap();
        let listen: Vec<String> = mine.iter().map(|a| format!("udp:{a}:{port}")).collect();
        std::fs::write(
            d.join("snmpd.conf"),
            format!(
                "agentAddress {}\nrocommunity public 127.0.0.0/8\n\
                 createUser benchuser SHA-256 \"bench-auth-pass\" AES \"bench-priv-pass\"\nrouser benchuser priv\n",
                listen.join(",")
            ),
        )
        .unwrap();
        let child = Command::new("snmpd")
            .args(["-f", "-C", "-c"])
            .arg(d.join("snmpd.conf"))
            .arg("-Lf")
            .arg(d.join("log"))
            .env("SNMP_PERSISTENT_DIR", d.join("persist"))
            .env("MIBS", "")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        agents.push(child);
        addrs.extend(mine);
    }
    std::thread::sleep(Duration::from_secs(2));
    let rounds = 3;
    for version in ["v2c", "v3"] {
        let mut csv = String::from("address,name\n");
        for (i, a) in addrs.iter().enumerate() {
            for j in 0..10 {
                csv.push_str(&format!("{a},t{i}-{j}\n"));
            }
        }
        std::fs::write(dir.path().join("targets.csv"), csv).unwrap();
        let creds = if version == "v3" {
            "v3: { user: benchuser, auth_protocol: sha256, auth_password: bench-auth-pass, priv_password: bench-priv-pass }"
        } else {
            "community: public"
        };
        std::fs::write(
            dir.path().join("p.yaml"),
            format!(
                "sources:\n  ifaces:\n    type: snmp\n    interval: 1s\n    jitter: 0\n    concurrency: 256\n    timeout: 5s\n    \
                 rounds: {rounds}\n    port: {port}\n    targets_file: targets.csv\n    {creds}\n\
                 sinks:\n  out: {{ type: blackhole, inputs: [ifaces] }}\n  h: {{ type: file, inputs: [ifaces.health], path: health.jsonl }}\n"
            ),
        )
        .unwrap();
        let _ = std::fs::remove_file(dir.path().join("health.jsonl"));
        let agents_cpu0: f64 = agents.iter().map(|a| cpu_seconds(a.id())).sum();
        let t = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_spillway"))
            .current_dir(dir.path())
            .args(["run", "p.yaml"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut cpu = 0.0;
        loop {
            let c = cpu_seconds(pid);
            if c > 0.0 {
                cpu = c;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let wall = t.elapsed().as_secs_f64();
        let agents_cpu: f64 = agents.iter().map(|a| cpu_seconds(a.id())).sum::<f64>() - agents_cpu0;
        let health = std::fs::read_to_string(dir.path().join("health.jsonl")).unwrap_or_default();
        let ok = health.lines().filter(|l| l.contains("\"ok\":true")).count();
        let polls = health.lines().count();
        println!(
            "{version}: {polls} polls ({ok} ok) of 1000 targets in {wall:.2} s → {:.0} polls/s; poller CPU {cpu:.2} s \
             = {:.2} CPU-s per 1,000 polls; agents' CPU {agents_cpu:.2} s",
            polls as f64 / wall,
            cpu * 1000.0 / polls.max(1) as f64
        );
    }
    for mut a in agents {
        let _ = a.kill();
        let _ = a.wait();
    }
}
