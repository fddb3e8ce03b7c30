//! The `snmp` source against net-snmp's `snmpd`, started by each test with
//! its own config on loopback: v2c and v3 walks compared with
//! `snmpbulkwalk`, failures that are counted while other targets keep being
//! polled, 100 agents in one interval, a reloaded targets file, and flows
//! enriched with the interface names of the exporter they came from.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn have_snmpd() -> bool {
    let ok = Command::new("snmpd").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
        && Command::new("snmpbulkwalk")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
    require("net-snmp (snmpd, snmpbulkwalk)", ok)
}

const AUTH: &str = "test-auth-pass";
const PRIV: &str = "test-priv-pass";

/// A running `snmpd`, killed when dropped.
struct Snmpd {
    child: std::process::Child,
    dir: tempfile::TempDir,
    probe: String,
}

impl Snmpd {
    /// Listens on every `addresses` at `port`; v2c community `public`,
    /// v3 users with SHA/AES, SHA-256/AES, and SHA authNoPriv.
    fn start(addresses: &[&str], port: u16, sys_name: &str) -> Snmpd {
        let dir = tempfile::tempdir().unwrap();
        let listen: Vec<String> = addresses.iter().map(|a| format!("udp:{a}:{port}")).collect();
        let conf = format!(
            "agentAddress {}\n\
             rocommunity public 127.0.0.0/8\n\
             createUser shauser SHA \"{AUTH}\" AES \"{PRIV}\"\n\
             createUser sha256user SHA-256 \"{AUTH}\" AES \"{PRIV}\"\n\
             createUser authonly SHA \"{AUTH}\"\n\
             rouser shauser priv\n\
             rouser sha256user priv\n\
             rouser authonly auth\n\
             sysName {sys_name}\n",
            listen.join(",")
        );
        std::fs::write(dir.path().join("snmpd.conf"), conf).unwrap();
        std::fs::create_dir(dir.path().join("persist")).unwrap();
        let child = Self::spawn(dir.path());
        let s = Snmpd { child, dir, probe: format!("{}:{port}", addresses[0]) };
        assert!(wait_udp_listening(port, Duration::from_secs(10)), "snmpd did not bind port {port}");
        s.wait_answering();
        s
    }

    fn spawn(dir: &Path) -> std::process::Child {
        Command::new("snmpd")
            .args(["-f", "-C", "-c"])
            .arg(dir.join("snmpd.conf"))
            .arg("-Lf")
            .arg(dir.join("snmpd.log"))
            .env("SNMP_PERSISTENT_DIR", dir.join("persist"))
            .env("MIBS", "")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("snmpd starts")
    }

    /// Bound is not yet answering: waits for a first answer.
    fn wait_answering(&self) {
        for _ in 0..200 {
            if !walk(&self.probe, &["-v2c", "-c", "public"], "1.3.6.1.2.1.1.5").is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("snmpd at {} does not answer", self.probe);
    }

    /// Stops the agent and starts it again on the same config and
    /// persistent state (its engine boots count goes up, its uptime
    /// starts from zero): a device reboot.
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(self.dir.path());
        self.wait_answering();
    }
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `snmpbulkwalk` of one column: index → value (strings unquoted).
fn walk(agent: &str, auth: &[&str], oid: &str) -> BTreeMap<u32, String> {
    let out = Command::new("snmpbulkwalk")
        .args(auth)
        .args(["-On", "-Oq", "-Oe", "-t", "2", "-r", "1"])
        .arg(agent)
        .arg(oid)
        .env("MIBS", "")
        .output()
        .expect("snmpbulkwalk runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!(".{oid}.");
    text.lines()
        .filter_map(|l| {
            let (o, v) = l.split_once(' ')?;
            let idx = o.strip_prefix(&prefix)?.parse().ok()?;
            Some((idx, v.trim().trim_matches('"').to_string()))
        })
        .collect()
}

fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn v3(user: &str, proto: &str, level_priv: bool) -> String {
    if level_priv {
        format!(
            "{{ user: {user}, auth_protocol: {proto}, auth_password: {AUTH}, priv_protocol: aes, priv_password: {PRIV} }}"
        )
    } else {
        format!("{{ user: {user}, auth_protocol: {proto}, auth_password: {AUTH} }}")
    }
}

#[test]
fn v2c_and_v3_walks_equal_snmpbulkwalk_and_failures_are_counted_while_others_are_polled() {
    if !have_snmpd() {
        return;
    }
    let port = free_udp_port();
    let closed = free_udp_port();
    let _agent = Snmpd::start(&["127.0.0.1"], port, "walk-agent");
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
sources:
  ifaces:
    type: snmp
    interval: 2s
    jitter: 0
    timeout: 300ms
    retries: 1
    backoff: 50ms
    rounds: 2
    port: {port}
    targets:
      - {{ address: 127.0.0.1, name: v2c }}
      - {{ address: 127.0.0.1, name: v3-sha, v3: {sha} }}
      - {{ address: 127.0.0.1, name: v3-sha256, v3: {sha256} }}
      - {{ address: 127.0.0.1, name: v3-auth-only, v3: {authonly} }}
      - {{ address: 127.0.0.1, name: wrong-password, v3: {{ user: shauser, auth_password: not-the-password, priv_password: {PRIV} }} }}
      - {{ address: 127.0.0.1, name: wrong-community, community: nope }}
      - {{ address: 127.0.0.1, port: {closed}, name: closed-port }}
sinks:
  out: {{ type: file, inputs: [ifaces], path: ifaces.jsonl }}
  health: {{ type: file, inputs: [ifaces.health], path: health.jsonl }}
"#,
        sha = v3("shauser", "sha", true),
        sha256 = v3("sha256user", "sha256", true),
        authonly = v3("authonly", "sha", false),
    );
    let p = write_pipeline(dir.path(), &yaml);
    let (out, ledger) = run_pipeline(dir.path(), &p);
    assert!(out.status.success(), "{}", text(&out));
    assert_balanced(&ledger);
    let log = text(&out);

    // What the agent has, by an independent client.
    let agent = format!("127.0.0.1:{port}");
    let v2c = ["-v2c", "-c", "public"];
    let names = walk(&agent, &v2c, "1.3.6.1.2.1.31.1.1.1.1");
    let descrs = walk(&agent, &v2c, "1.3.6.1.2.1.2.2.1.2");
    let types = walk(&agent, &v2c, "1.3.6.1.2.1.2.2.1.3");
    let admin = walk(&agent, &v2c, "1.3.6.1.2.1.2.2.1.7");
    let sha256_names = walk(
        &agent,
        &["-v3", "-l", "authPriv", "-u", "sha256user", "-a", "SHA-256", "-A", AUTH, "-x", "AES", "-X", PRIV],
        "1.3.6.1.2.1.31.1.1.1.1",
    );
    assert!(!names.is_empty(), "snmpbulkwalk found no interfaces");
    assert_eq!(sha256_names, names, "the agent answers v3 SHA-256 the same");

    let rows = json_lines(&dir.path().join("ifaces.jsonl"));
    let health = json_lines(&dir.path().join("health.jsonl"));
    for target in ["v2c", "v3-sha", "v3-sha256", "v3-auth-only"] {
        let mine: Vec<&serde_json::Value> = rows.iter().filter(|r| r["target"] == target).collect();
        // Two polls, each with every interface.
        assert_eq!(mine.len(), 2 * names.len(), "{target}: {} rows", mine.len());
        let mut by_poll: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        for r in &mine {
            let i = r["if_index"].as_u64().unwrap() as u32;
            by_poll.entry(r["time"].as_str().unwrap().to_string()).or_default().insert(i);
            assert_eq!(r["if_name"].as_str(), Some(names[&i].as_str()), "{target} ifName of {i}");
            assert_eq!(r["if_descr"].as_str(), Some(descrs[&i].as_str()), "{target} ifDescr of {i}");
            assert_eq!(r["if_type"].as_u64().unwrap().to_string(), types[&i], "{target} ifType of {i}");
            assert_eq!(
                r["if_admin_status"].as_u64().unwrap().to_string(),
                admin[&i],
                "{target} ifAdminStatus"
            );
            assert_eq!(r["sys_name"], "walk-agent");
            assert_eq!(r["exporter"], "127.0.0.1");
            assert!(r["in_octets"].is_u64(), "{target}: counters are read: {r}");
        }
        assert_eq!(by_poll.len(), 2, "{target}: two polls");
        for idx in by_poll.values() {
            assert_eq!(idx, &names.keys().copied().collect::<BTreeSet<u32>>());
        }
        // The second poll has deltas over the interval between them.
        let second = by_poll.keys().next_back().unwrap();
        for r in mine.iter().filter(|r| r["time"] == second.as_str()) {
            assert!(r["interval_s"].as_f64().is_some_and(|s| s > 0.5), "{target}: {r}");
            assert!(r["in_octets_delta"].is_u64() && r["in_bps"].is_number(), "{target}: {r}");
            assert_eq!(r["discontinuity"], false);
        }
        let h: Vec<_> = health.iter().filter(|h| h["target"] == target).collect();
        assert_eq!(h.len(), 2);
        assert!(h.iter().all(|h| h["ok"] == true && h["consecutive_failures"] == 0), "{h:?}");
    }
    for (target, kind, needle) in [
        ("wrong-password", "auth", "authentication"),
        ("wrong-community", "timeout", "wrong community"),
        ("closed-port", "unreachable", "nothing listens"),
    ] {
        assert!(rows.iter().all(|r| r["target"] != target), "{target} produced interface rows");
        let h: Vec<_> = health.iter().filter(|h| h["target"] == target).collect();
        assert_eq!(h.len(), 2, "{target}: {h:?}");
        for (n, r) in h.iter().enumerate() {
            assert_eq!(r["ok"], false);
            assert_eq!(r["error_kind"], kind, "{r}");
            assert!(r["error"].as_str().unwrap().contains(needle), "{r}");
            assert_eq!(r["consecutive_failures"], n as u64 + 1);
        }
        assert!(log.contains(&format!("target={target}")) && log.contains("SNMP poll failed"), "{log}");
    }
    // No password in the log.
    assert!(!log.contains(AUTH) && !log.contains(PRIV), "a secret was logged");
}

#[test]
fn a_hundred_agents_are_polled_within_one_interval() {
    if !have_snmpd() {
        return;
    }
    let port = free_udp_port();
    // Four snmpd processes, each answering as 25 devices on their own
    // loopback addresses.
    let mut agents = Vec::new();
    let mut addrs = Vec::new();
    for k in 0..4 {
        let mine: Vec<String> = (1..=25).map(|i| format!("127.3.{k}.{i}")).collect();
        let refs: Vec<&str> = mine.iter().map(String::as_str).collect();
        agents.push(Snmpd::start(&refs, port, &format!("sim-{k}")));
        addrs.extend(mine);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("address,name,version,user,auth_protocol,auth_password,priv_password\n");
    for (i, a) in addrs.iter().enumerate() {
        // Half v2c, half v3 authPriv.
        if i % 2 == 0 {
            csv.push_str(&format!("{a},dev{i},v2c,,,,\n"));
        } else {
            csv.push_str(&format!("{a},dev{i},v3,sha256user,sha256,{AUTH},{PRIV}\n"));
        }
    }
    std::fs::write(dir.path().join("devices.csv"), csv).unwrap();
    let yaml = format!(
        r#"
sources:
  ifaces:
    type: snmp
    interval: 20s
    jitter: 0.2
    timeout: 2s
    concurrency: 64
    rounds: 1
    port: {port}
    targets_file: devices.csv
sinks:
  out: {{ type: blackhole, inputs: [ifaces] }}
  health: {{ type: file, inputs: [ifaces.health], path: health.jsonl }}
"#
    );
    let p = write_pipeline(dir.path(), &yaml);
    let (out, ledger) = run_pipeline(dir.path(), &p);
    assert!(out.status.success(), "{}", text(&out));
    assert_balanced(&ledger);
    let health = json_lines(&dir.path().join("health.jsonl"));
    assert_eq!(health.len(), 100, "one poll per device");
    assert!(health.iter().all(|h| h["ok"] == true), "{:?}", health.iter().find(|h| h["ok"] != true));
    let targets: BTreeSet<&str> = health.iter().map(|h| h["target"].as_str().unwrap()).collect();
    assert_eq!(targets.len(), 100);
    // Every device's poll started and ended within one interval.
    let t = |h: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(h["time"].as_str().unwrap()).unwrap().timestamp_millis() as f64
    };
    let first = health.iter().map(t).fold(f64::MAX, f64::min);
    let last_end = health.iter().map(|h| t(h) + h["duration_ms"].as_f64().unwrap()).fold(0.0, f64::max);
    assert!(last_end - first < 20_000.0, "polls spread over {} ms", last_end - first);
    let rows = entry(&ledger, "ifaces")["received"].as_u64().unwrap();
    let per_device = health[0]["interfaces"].as_u64().unwrap();
    assert_eq!(rows, 100 * per_device, "every interface of every device");
    drop(agents);
}

#[test]
fn a_changed_targets_file_is_reloaded_and_a_broken_one_keeps_the_last_good_targets() {
    if !have_snmpd() {
        return;
    }
    let port = free_udp_port();
    let _agent = Snmpd::start(&["127.4.0.1", "127.4.0.2"], port, "reload-agent");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("targets.yaml");
    std::fs::write(&file, "- { address: 127.4.0.1, name: first }\n").unwrap();
    let yaml = format!(
        r#"
sources:
  ifaces:
    type: snmp
    interval: 1s
    jitter: 0
    port: {port}
    targets_file: targets.yaml
sinks:
  out: {{ type: blackhole, inputs: [ifaces] }}
  health: {{ type: file, inputs: [ifaces.health], path: health.jsonl }}
"#
    );
    let p = write_pipeline(dir.path(), &yaml);
    let g = Guard::run(dir.path(), &p, &[]);
    let health = dir.path().join("health.jsonl");
    let polled =
        |name: &str| json_lines(&health).iter().filter(|h| h["target"] == name && h["ok"] == true).count();
    let secs = Duration::from_secs(30);
    wait_until("a poll of `first`", secs, || polled("first") >= 1);
    // Make sure the new file gets a new mtime even on coarse clocks.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&file, "- { address: 127.4.0.1, name: first }\n- { address: 127.4.0.2, name: second }\n")
        .unwrap();
    wait_until("a poll of `second`", secs, || polled("second") >= 1);
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&file, "- { address: not-an-address, name: broken }\n").unwrap();
    assert!(g.wait_for("targets file not reloaded", Duration::from_secs(10)));
    let before = polled("second");
    wait_until("two more polls of `second`", secs, || polled("second") >= before + 2);
    signal(g.id(), "TERM");
    let out = g.wait();
    assert!(out.status.success(), "{}", text(&out));
    let log = text(&out);
    assert!(log.contains("targets file reloaded"), "{log}");
    assert!(log.contains("targets.yaml: [0].address"), "the error names the file and field: {log}");
}

fn parquet_rows(dir: &Path) -> Vec<serde_json::Value> {
    let script = r#"
import sys, json, pyarrow.parquet as pq, pyarrow as pa
cols = ["flow_version", "in_if", "in_if_name", "in_if_speed"]
t = pa.concat_tables([pq.read_table(f, columns=cols) for f in sys.argv[1:]])
for r in t.to_pylist():
    print(json.dumps(r))
"#;
    let files: Vec<PathBuf> = parquet_files(dir);
    assert!(!files.is_empty(), "no parquet files under {}", dir.display());
    let args: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
    run_python(script, &args).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn flows_are_enriched_with_the_interface_names_of_the_exporter_they_came_from() {
    if !have_snmpd() || !python_readers() {
        return;
    }
    // The generator's first exporter sends from 127.1.0.1; the agent of that
    // "router" answers on the same address. The snmp source discovers it
    // from the flows.
    let snmp_port = free_udp_port();
    let _agent = Snmpd::start(&["127.1.0.1"], snmp_port, "router-1");
    let flow_port = free_udp_port();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
sources:
  flows:
    type: netflow
    listen: "127.0.0.1:{flow_port}"
  ifaces:
    type: snmp
    interval: 1s
    jitter: 0
    discover: {{ from: flows, port: {snmp_port} }}
transforms:
  named:
    type: enrich
    inputs: [flows]
    table: if_table
    on: {{ exporter: exporter, in_if: if_index }}
    fields: [if_name, if_alias, if_speed]
    prefix: in_
sinks:
  if_table: {{ type: table, inputs: [ifaces], key: [exporter, if_index] }}
  health: {{ type: file, inputs: [ifaces.health], path: health.jsonl }}
  out: {{ type: parquet, inputs: [named], path: out }}
"#
    );
    let p = write_pipeline(dir.path(), &yaml);
    let g = Guard::run(dir.path(), &p, &[]);
    assert!(wait_udp_listening(flow_port, Duration::from_secs(20)));
    let dest = format!("127.0.0.1:{flow_port}");
    // A first few flows make the exporter known …
    generate(&["--target", &dest, "--count", "100", "--version", "5", "--exporters", "1"]);
    let health = dir.path().join("health.jsonl");
    wait_until("a poll of the exporter's agent", Duration::from_secs(30), || {
        json_lines(&health).iter().any(|h| h["ok"] == true && h["exporter"] == "127.1.0.1")
    });
    std::thread::sleep(Duration::from_millis(500)); // the table sink has the rows
    // … then the flows under test, as IPFIX so they are told apart.
    let sent = generate(&["--target", &dest, "--count", "20000", "--version", "10", "--exporters", "1"]);
    std::thread::sleep(Duration::from_millis(1500));
    signal(g.id(), "TERM");
    let out = g.wait();
    assert!(out.status.success(), "{}", text(&out));

    let names = walk(&format!("127.1.0.1:{snmp_port}"), &["-v2c", "-c", "public"], "1.3.6.1.2.1.31.1.1.1.1");
    assert!(!names.is_empty());
    let rows = parquet_rows(&dir.path().join("out"));
    let ipfix: Vec<_> = rows.iter().filter(|r| r["flow_version"] == 10).collect();
    assert_eq!(ipfix.len() as u64, sent["records"].as_u64().unwrap(), "every flow arrived");
    let (mut known, mut unknown) = (0, 0);
    for r in &ipfix {
        let i = r["in_if"].as_u64().unwrap() as u32;
        match names.get(&i) {
            Some(n) => {
                known += 1;
                assert_eq!(r["in_if_name"].as_str(), Some(n.as_str()), "{r}");
            }
            None => {
                unknown += 1;
                assert!(r["in_if_name"].is_null(), "{r}");
            }
        }
    }
    assert!(known > 0 && unknown > 0, "known {known}, unknown {unknown}: both cases are exercised");
}

#[test]
fn an_agent_restart_is_a_discontinuity_and_v3_polling_resumes() {
    if !have_snmpd() {
        return;
    }
    let port = free_udp_port();
    let mut agent = Snmpd::start(&["127.6.0.1"], port, "rebooting");
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
sources:
  ifaces:
    type: snmp
    interval: 1s
    jitter: 0
    timeout: 300ms
    retries: 1
    backoff: 50ms
    port: {port}
    targets:
      - {{ address: 127.6.0.1, name: v3, v3: {sha256} }}
      - {{ address: 127.6.0.1, name: v2c }}
sinks:
  out: {{ type: file, inputs: [ifaces], path: ifaces.jsonl }}
  health: {{ type: file, inputs: [ifaces.health], path: health.jsonl }}
"#,
        sha256 = v3("sha256user", "sha256", true),
    );
    let p = write_pipeline(dir.path(), &yaml);
    let g = Guard::run(dir.path(), &p, &[]);
    let health = dir.path().join("health.jsonl");
    let ok =
        |name: &str| json_lines(&health).iter().filter(|h| h["target"] == name && h["ok"] == true).count();
    let secs = Duration::from_secs(40);
    wait_until("three good polls of each target", secs, || ok("v3") >= 3 && ok("v2c") >= 3);
    std::thread::sleep(Duration::from_secs(2));
    agent.restart();
    let (v3_before, v2c_before) = (ok("v3"), ok("v2c"));
    wait_until("two good polls of each target after the restart", secs, || {
        ok("v3") >= v3_before + 2 && ok("v2c") >= v2c_before + 2
    });
    signal(g.id(), "TERM");
    let out = g.wait();
    assert!(out.status.success(), "{}", text(&out));
    let rows = json_lines(&dir.path().join("ifaces.jsonl"));
    for target in ["v3", "v2c"] {
        let mine: Vec<_> = rows.iter().filter(|r| r["target"] == target).collect();
        // The first poll after the reboot has no deltas and says why; the
        // polls before and after it have deltas.
        let broken: Vec<_> = mine.iter().filter(|r| r["discontinuity"] == true).collect();
        assert!(!broken.is_empty(), "{target}: no discontinuity after the reboot");
        assert!(
            broken.iter().all(|r| r["in_octets_delta"].is_null() && r["interval_s"].is_null()),
            "{broken:?}"
        );
        let times: BTreeSet<&str> = broken.iter().map(|r| r["time"].as_str().unwrap()).collect();
        assert_eq!(times.len(), 1, "{target}: one poll is the reboot: {times:?}");
        let last = mine.last().unwrap();
        assert!(last["in_octets_delta"].is_u64() && last["discontinuity"] == false, "{target}: {last}");
    }
}

#[test]
fn an_agent_that_never_ends_its_walk_is_a_counted_limit_failure() {
    if !common::python_readers() {
        return;
    }
    let mut agent = std::process::Command::new(common::python())
        .arg(common::root().join("tests/peers/endless_snmp_agent.py"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let port: u16 = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(agent.stdout.take().unwrap()).read_line(&mut line).unwrap();
        line.trim().parse().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"sources:
  ifaces:
    type: snmp
    community: public
    interval: 5s
    timeout: 2s
    rounds: 1
    port: {port}
    targets: [{{ address: 127.0.0.1, name: endless }}]
sinks:
  out: {{ type: file, inputs: [ifaces], path: ifaces.jsonl }}
  health: {{ type: file, inputs: [ifaces.health], path: health.jsonl }}
"#
    );
    let p = write_pipeline(dir.path(), &yaml);
    let t = std::time::Instant::now();
    let (out, ledger) = run_pipeline(dir.path(), &p);
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(out.status.success(), "{}", text(&out));
    assert_balanced(&ledger);
    assert!(t.elapsed() < std::time::Duration::from_secs(60), "took {:?}", t.elapsed());
    let health = json_lines(&dir.path().join("health.jsonl"));
    assert_eq!(health.len(), 1, "{health:?}");
    assert_eq!(health[0]["ok"], false);
    assert_eq!(health[0]["error_kind"], "limit", "{:?}", health[0]);
    assert!(health[0]["error"].as_str().unwrap().contains("max_interfaces"), "{:?}", health[0]);
    assert_eq!(json_lines(&dir.path().join("ifaces.jsonl")).len(), 0, "a failed poll makes no rows");
}
