//! The operator's views of a running pipeline: the JSON APIs (equal to the
//! ledger), the status page rendered by headless Chromium, and `spillway
//! top` in a real terminal under tmux; a lossy exporter shows as lossy in
//! both views, and the SNMP status of the exporters' routers (a real snmpd
//! answering for one, nothing for another) beside them.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Guard;

fn http(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut b = String::new();
    s.read_to_string(&mut b).unwrap();
    b.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

/// A pipeline with an admin endpoint, fed by the generator (3 exporters,
/// paced, for `secs`) and by one exporter that loses packets.
struct Running {
    guard: Guard,
    admin: u16,
    generator: Child,
    dir: tempfile::TempDir,
    snmpd: Option<Child>,
}

/// net-snmp's agent on `port`, answering v2c `public` with sysName
/// `edge-test` (its state in `dir`).
fn snmpd(dir: &std::path::Path, port: u16) -> Option<Child> {
    let have = Command::new("snmpd").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !common::require("net-snmp's snmpd", have) {
        return None;
    }
    let conf = dir.join("snmpd.conf");
    std::fs::write(
        &conf,
        format!("agentAddress udp:127.0.0.1:{port}\nrocommunity public 127.0.0.0/8\nsysName edge-test\n"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("persist")).unwrap();
    let child = Command::new("snmpd")
        .args(["-f", "-C", "-c"])
        .arg(&conf)
        .arg("-Lf")
        .arg(dir.join("snmpd.log"))
        .env("SNMP_PERSISTENT_DIR", dir.join("persist"))
        .env("MIBS", "")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(common::wait_udp_listening(port, Duration::from_secs(10)), "snmpd did not bind");
    Some(child)
}

fn start(secs: u32) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_udp_port();
    let admin = common::free_tcp_port();
    let agent = common::free_udp_port();
    let dead = common::free_udp_port();
    let snmpd = snmpd(dir.path(), agent);
    // The lossy exporter's router answers SNMP; 127.1.0.1's does not.
    let p = common::write_pipeline(
        dir.path(),
        &format!(
            "sources:\n  flows: {{ type: netflow, listen: \"127.0.0.1:{port}\", workers: 2, flush_interval: 50ms }}\n\
             \x20 routers: {{ type: snmp, interval: 1s, timeout: 200ms, retries: 0, community: public, targets: [\
             {{ address: 127.0.0.1, port: {agent}, name: edge1, exporter: 127.0.0.1 }}, \
             {{ address: 127.0.0.1, port: {dead}, name: dead1, exporter: 127.1.0.1 }}] }}\n\
             transforms:\n  web: {{ type: filter, inputs: [flows], condition: \"protocol == 6\" }}\n\
             sinks:\n  out: {{ type: blackhole, inputs: [web] }}\n  ifaces: {{ type: blackhole, inputs: [routers] }}\n\
             admin: {{ listen: \"127.0.0.1:{admin}\" }}\n"
        ),
    );
    let guard =
        Guard::run(dir.path(), &p, &["--ledger-json", dir.path().join("ledger.json").to_str().unwrap()]);
    assert!(guard.wait_for("admin endpoint is serving", Duration::from_secs(30)), "no admin endpoint");
    assert!(guard.wait_for("listening for NetFlow/IPFIX", Duration::from_secs(30)));
    let generator = common::spillway()
        .args(["generate", "netflow", "--target", &format!("127.0.0.1:{port}"), "--exporters", "3"])
        .args(["--rate", "20000", "--duration", &format!("{secs}s")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // 127.0.0.1 loses 7 records of every 8.
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..20 {
        s.send_to(&common::v5_packet(i * 8), ("127.0.0.1", port)).unwrap();
    }
    Running { guard, admin, generator, dir, snmpd }
}

impl Running {
    fn stop(mut self) -> serde_json::Value {
        let _ = self.generator.kill();
        let _ = self.generator.wait();
        common::signal(self.guard.id(), "TERM");
        let out = self.guard.wait();
        if let Some(mut s) = self.snmpd.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        assert!(out.status.success(), "{}", common::text(&out));
        serde_json::from_slice(&std::fs::read(self.dir.path().join("ledger.json")).unwrap()).unwrap()
    }
}

/// Waits until the table lists the four exporters, with both routers'
/// SNMP status.
fn wait_exporters(admin: u16) {
    common::wait_until("the exporter table fills", Duration::from_secs(20), || {
        let v: serde_json::Value = serde_json::from_str(&http(admin, "/api/exporters")).unwrap_or_default();
        let rows = v["sources"][0]["exporters"].as_array().cloned().unwrap_or_default();
        let snmp = |e: &str| rows.iter().any(|x| x["exporter"] == e && !x["snmp"].is_null());
        // The workers add their counts about once a second.
        let counted = |e: &str, k: &str| rows.iter().any(|x| x["exporter"] == e && x[k].as_u64() > Some(0));
        rows.len() >= 4
            && snmp("127.0.0.1")
            && snmp("127.1.0.1")
            && counted("127.0.0.1", "sequence_missing")
            && ["127.1.0.1", "127.1.0.2", "127.1.0.3"].iter().all(|e| counted(e, "records"))
    });
}

#[test]
fn the_json_apis_equal_the_ledger_and_show_each_exporter() {
    let r = start(2);
    wait_exporters(r.admin);
    let topo: serde_json::Value = serde_json::from_str(&http(r.admin, "/api/topology")).unwrap();
    let names: Vec<&str> =
        topo["components"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert!(["flows", "web", "out"].iter().all(|n| names.contains(n)), "{topo}");
    assert!(
        topo["edges"].as_array().unwrap().iter().any(|e| e["from"] == "flows" && e["to"] == "web"),
        "{topo}"
    );
    // Once the generator is done and everything drained, the API says what
    // the final ledger says.
    let mut r = r;
    r.generator.wait().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let api: serde_json::Value = serde_json::from_str(&http(r.admin, "/api/ledger")).unwrap();
    let exporters: serde_json::Value = serde_json::from_str(&http(r.admin, "/api/exporters")).unwrap();
    let ledger = r.stop();
    // The flow path only: the `snmp` source keeps polling.
    for c in api["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["component"] != "routers" && c["component"] != "ifaces")
    {
        let name = c["component"].as_str().unwrap();
        let fin = common::entry(&ledger, name);
        for k in ["received", "emitted", "delivered", "dropped_total"] {
            assert_eq!(c[k], fin[k], "{name}.{k}: API {api} vs final {ledger}");
        }
    }
    let rows = exporters["sources"][0]["exporters"].as_array().unwrap();
    let records: u64 = rows.iter().map(|x| x["records"].as_u64().unwrap()).sum();
    assert_eq!(records, common::entry(&ledger, "flows")["emitted"].as_u64().unwrap(), "{exporters}");
    let lossy = rows.iter().find(|x| x["exporter"] == "127.0.0.1").expect("the lossy exporter");
    assert_eq!(
        (lossy["records"].as_u64(), lossy["sequence_missing"].as_u64()),
        (Some(20), Some(19 * 7)),
        "{lossy}"
    );
    assert!(lossy["sampling_source"].is_string(), "{lossy}");
    // v9 exporters' templates are held; v5 has none.
    let v9 = rows.iter().find(|x| x["exporter"] == "127.1.0.2").unwrap();
    assert!(v9["templates_known"].as_u64().unwrap() >= 1, "{v9}");
    assert_eq!(lossy["templates_known"], 0, "{lossy}");
    let st = &lossy["snmp"]["status"];
    assert_eq!(
        (st["ok"].as_bool(), st["sys_name"].as_str(), st["target"].as_str()),
        (Some(true), Some("edge-test"), Some("edge1")),
        "{lossy}"
    );
    let dead = rows.iter().find(|x| x["exporter"] == "127.1.0.1").unwrap();
    assert_eq!(dead["snmp"]["status"]["ok"], false, "{dead}");
    // Nothing listens on its port: loopback answers port unreachable.
    assert_eq!(dead["snmp"]["status"]["error_kind"], "unreachable", "{dead}");
    assert_eq!(dead["snmp"]["source"], "routers", "{dead}");
}

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
}

fn dump_dom(browser: &str, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = common::output_within(
        Command::new(browser)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
            .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--virtual-time-budget=3000", "--dump-dom", url]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "chromium: {}", common::text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Cell `i` (0: the name) of `component`'s row in the page's ledger table,
/// as a number.
fn cell(dom: &str, component: &str, i: usize) -> u64 {
    let row = dom.split(&format!("<tr data-component=\"{component}\">")).nth(1).expect("the component's row");
    let cells: Vec<&str> = row.split("<td").skip(1).take(i + 1).collect();
    let cell = cells[i].split('>').nth(1).unwrap().split('<').next().unwrap();
    cell.replace(',', "").parse().unwrap_or_else(|_| panic!("cell {i} {cell:?}"))
}

#[test]
fn the_status_page_in_headless_chromium_shows_components_exporters_and_loss() {
    let Some(browser) = chromium() else {
        common::require("chromium (Debian package)", false);
        return;
    };
    let r = start(20);
    wait_exporters(r.admin);
    let url = format!("http://127.0.0.1:{}/", r.admin);
    let first = dump_dom(browser, &url);
    std::thread::sleep(Duration::from_millis(1500));
    let second = dump_dom(browser, &url);
    r.stop();
    for name in ["flows", "web", "out"] {
        assert!(first.contains(&format!("<tr data-component=\"{name}\">")), "no {name} row:\n{first}");
    }
    assert!(first.contains("<svg") && first.contains("flows (source)"), "no graph:\n{first}");
    for e in ["127.1.0.1", "127.1.0.2", "127.1.0.3"] {
        assert!(
            first.contains(&format!("class=\"exporter\" data-exporter=\"{e}\"")),
            "{e} missing or lossy:\n{first}"
        );
    }
    assert!(
        first.contains("class=\"exporter lossy\" data-exporter=\"127.0.0.1\""),
        "127.0.0.1 not lossy:\n{first}"
    );
    assert!(first.contains("the ledger balances"), "{first}");
    assert!(first.contains("edge-test ok"), "the answering router's SNMP status:\n{first}");
    assert!(first.contains("dead1 failing: unreachable"), "the silent router's SNMP status:\n{first}");
    // Column 2 is records/s, 3 received.
    let (a, b) = (cell(&first, "flows", 3), cell(&second, "flows", 3));
    assert!(b > a, "the page did not move between two loads: {a} then {b}");
    let (ra, rb) = (cell(&first, "flows", 2), cell(&second, "flows", 2));
    assert!(ra > 0 && rb > 0, "rates of a source receiving 20k records/s: {ra}, {rb}");
}

#[test]
fn spillway_top_shows_components_and_exporters_and_quits_on_q() {
    let ok = Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success());
    if !common::require("tmux (Debian package)", ok) {
        return;
    }
    let r = start(20);
    wait_exporters(r.admin);
    let session = format!("spillway-top-{}", std::process::id());
    let cmd = format!(
        "{} top --admin 127.0.0.1:{}; echo TOP-EXITED $?; sleep 30",
        env!("CARGO_BIN_EXE_spillway"),
        r.admin
    );
    assert!(
        Command::new("tmux")
            .args(["new-session", "-d", "-s", &session, "-x", "150", "-y", "30", &cmd])
            .status()
            .unwrap()
            .success()
    );
    let pane = || {
        let o = Command::new("tmux").args(["capture-pane", "-p", "-t", &session]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let t = Instant::now();
    let mut screen = String::new();
    while t.elapsed() < Duration::from_secs(20) {
        screen = pane();
        if screen.contains("127.1.0.3") && screen.contains("LOSSY") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let shown = [
        "flows",
        "web",
        "out",
        "routers",
        "127.1.0.1",
        "127.0.0.1",
        "LOSSY",
        "ready",
        "edge-test ok",
        "dead1 FAILING",
    ]
    .iter()
    .all(|s| screen.contains(s));
    Command::new("tmux").args(["send-keys", "-t", &session, "q"]).status().unwrap();
    let t = Instant::now();
    let mut after = String::new();
    while t.elapsed() < Duration::from_secs(10) && !after.contains("TOP-EXITED") {
        after = pane();
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("tmux").args(["kill-session", "-t", &session]).status();
    r.stop();
    assert!(shown, "spillway top showed:\n{screen}");
    assert!(after.contains("TOP-EXITED 0"), "q did not quit:\n{after}");
}
