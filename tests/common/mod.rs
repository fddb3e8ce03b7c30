//! Helpers shared by the integration tests: the binary, peers, temp dirs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `spillway` binary under test.
pub fn spillway() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spillway"));
    c.env("RUST_LOG", "info").stdin(Stdio::null());
    c
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// True under CI, where a missing peer is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether a peer is available. Under `CI=true` a missing peer panics (a
/// skip would hide a missing install step); locally the test is skipped
/// with a message.
pub fn require(peer: &str, available: bool) -> bool {
    if available {
        return true;
    }
    if in_ci() {
        panic!("{peer} is required under CI=true but is not installed; run scripts/test.sh");
    }
    eprintln!("skipping: {peer} is not installed (scripts/test.sh installs it)");
    false
}

/// Whether the setup script's Python imports `modules`.
fn python_has(modules: &str) -> bool {
    Command::new(python())
        .args(["-c", &format!("import {modules}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Python 3 with pyarrow and duckdb, the independent Parquet readers.
pub fn python_readers() -> bool {
    require("python3 with pyarrow and duckdb", python_has("pyarrow, duckdb"))
}

/// PySpark (with a Java runtime) beside DuckDB: Spark reads Parquet with
/// parquet-mr, the third independent reader.
pub fn spark_reader() -> bool {
    let java = Command::new("java").arg("-version").output().is_ok_and(|o| o.status.success());
    require("pyspark with a Java runtime", python_has("pyspark, duckdb") && java)
}

/// The Python interpreter the setup script prepared.
pub fn python() -> String {
    std::env::var("SPILLWAY_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs a Python script with arguments and returns its stdout, panicking
/// with its stderr if it fails.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let out = Command::new(python()).arg("-c").arg(script).args(args).output().expect("python3 runs");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Runs `cmd` to completion like `Command::output`, but kills it and fails
/// the test, with what it printed, when it is still running after
/// `deadline`: a hang is a failure with a reason, not a stuck CI run.
pub fn output_within(cmd: &mut Command, deadline: std::time::Duration) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the command starts");
    let (mut so, mut se) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut so, &mut b).ok();
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut se, &mut b).ok();
        b
    });
    let t = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if t.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let (stdout, stderr) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    match status {
        Some(status) => Output { status, stdout, stderr },
        None => panic!(
            "still running after {deadline:?}, killed:\n{}\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// Writes `yaml` to `dir/pipeline.yaml` and returns its path.
pub fn write_pipeline(dir: &Path, yaml: &str) -> PathBuf {
    let p = dir.join("pipeline.yaml");
    std::fs::write(&p, yaml).expect("write pipeline");
    p
}

/// Runs a pipeline to completion in `dir`, returning the process output and
/// the final ledger.
pub fn run_pipeline(dir: &Path, pipeline: &Path) -> (Output, serde_json::Value) {
    let ledger = dir.join("ledger.json");
    let out = spillway()
        .current_dir(dir)
        .arg("run")
        .arg(pipeline)
        .arg("--ledger-json")
        .arg(&ledger)
        .output()
        .expect("spillway runs");
    let doc = std::fs::read(&ledger)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    (out, doc)
}

/// One component's final counters from a ledger document.
pub fn entry<'a>(ledger: &'a serde_json::Value, component: &str) -> &'a serde_json::Value {
    ledger["components"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["component"] == component))
        .unwrap_or_else(|| panic!("no ledger entry for {component}: {ledger}"))
}

/// Asserts that the ledger balances: no imbalance reported, nothing in flight.
pub fn assert_balanced(ledger: &serde_json::Value) {
    assert_eq!(ledger["imbalances"], serde_json::json!([]), "ledger: {ledger}");
    for e in ledger["components"].as_array().expect("components") {
        assert_eq!(e["in_flight"], 0, "in flight at exit: {e}");
        let accounted = e["emitted"].as_u64().unwrap()
            + e["delivered"].as_u64().unwrap()
            + e["dropped_total"].as_u64().unwrap()
            + e["merged"].as_u64().unwrap();
        let came = e["received"].as_u64().unwrap() + e["created"].as_u64().unwrap();
        assert_eq!(came, accounted, "unbalanced: {e}");
    }
}

/// Stdout and stderr of a finished process, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every `*.parquet` file under `root` (not temporary files).
pub fn parquet_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Sends a signal (`TERM`, `INT`, `KILL`) to a process we started.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().expect("kill runs");
    assert!(ok.success(), "kill -{sig} {pid} failed");
}

/// A child process that is killed when the guard drops, so a failing test
/// never leaves a pipeline running. Its stderr is collected as it comes.
pub struct Guard {
    child: Option<std::process::Child>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Guard {
    /// Starts `spillway run PIPELINE` in `dir`; stdout is discarded and
    /// stderr collected.
    pub fn run(dir: &Path, pipeline: &Path, extra: &[&str]) -> Guard {
        let mut child = spillway()
            .current_dir(dir)
            .arg("run")
            .arg(pipeline)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spillway starts");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("piped");
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Guard { child: Some(child), stderr, reader: Some(reader) }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Waits until stderr contains `needle`; false after `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: std::time::Duration) -> bool {
        let t = std::time::Instant::now();
        while t.elapsed() < timeout {
            if self.stderr.lock().unwrap().contains(needle) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    }

    /// The first `max` lines of stderr so far that contain `needle`.
    pub fn lines_with(&self, needle: &str, max: usize) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap()
            .lines()
            .filter(|l| l.contains(needle))
            .take(max)
            .map(String::from)
            .collect()
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().expect("running").try_wait().expect("try_wait")
    }

    /// Waits for the exit and returns the status and everything on stderr.
    pub fn wait(mut self) -> Output {
        let status = self.child.take().expect("running").wait().expect("wait for spillway");
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let stderr = self.stderr.lock().unwrap().clone().into_bytes();
        Output { status, stdout: Vec::new(), stderr }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A free UDP port on loopback (bound and released; good enough for tests).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `../shared/corpus` or `$SPILLWAY_CORPUS`; `None` (skip) when missing,
/// except under CI=true where a missing corpus fails.
pub fn corpus() -> Option<PathBuf> {
    let p = std::env::var_os("SPILLWAY_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/corpus"));
    require("the NetFlow corpus (../shared/corpus)", p.join("README.md").exists()).then_some(p)
}

/// Runs `spillway generate netflow ARGS --json` and returns its totals.
pub fn generate(args: &[&str]) -> serde_json::Value {
    let out = spillway().args(["generate", "netflow", "--json"]).args(args).output().expect("generator runs");
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).expect("totals as JSON")
}

/// Waits until some socket is bound to UDP `port` (read from
/// /proc/net/udp{,6}, so the check itself binds nothing); false on timeout.
pub fn wait_udp_listening(port: u16, timeout: std::time::Duration) -> bool {
    let hex = format!(":{port:04X} ");
    let t = std::time::Instant::now();
    while t.elapsed() < timeout {
        for f in ["/proc/net/udp", "/proc/net/udp6"] {
            if std::fs::read_to_string(f).is_ok_and(|s| s.lines().any(|l| l.contains(&hex))) {
                return true;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

// --- WebAssembly guests (built offline with Debian's rustc-web) ---------

pub fn have_wasm_toolchain() -> bool {
    let ok = Path::new("/usr/bin/rustc").exists()
        && Path::new("/usr/bin/cargo").exists()
        && Path::new("/usr/lib/rustlib/src").exists()
        && Path::new("/usr/bin/lld-22").exists();
    require("Debian's rustc-web, cargo-web, rust-web-src and lld-22 (wasm guests)", ok)
}

pub fn guest_target() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wasm-guests")
}

/// Builds guests offline with Debian's rustc-web (TOOLCHAIN.md): the
/// workspace at `dir`, or only `package`, for `target`
/// (`wasm32-unknown-unknown` or `wasm32-wasip1`). Returns the directory
/// that holds the `.wasm` files.
pub fn build_guests(dir: &Path, target: &str, package: Option<&str>) -> PathBuf {
    let mut rustflags = String::from("-C target-feature=+simd128");
    if target == "wasm32-wasip1" {
        rustflags.push_str(" -L native=/usr/lib/wasm32-wasi");
    }
    let out = Command::new("/usr/bin/cargo")
        .current_dir(dir)
        .args(["build", "--release", "-Zbuild-std=std,panic_abort", "--target", target])
        .args(match package {
            Some(p) => vec!["-p", p],
            None => vec!["--workspace"],
        })
        .env("RUSTC_BOOTSTRAP", "1")
        .env("RUSTC", "/usr/bin/rustc")
        .env("RUSTFLAGS", rustflags)
        .env("CARGO_TARGET_DIR", guest_target())
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .output()
        .expect("Debian's cargo runs");
    assert!(out.status.success(), "guest build failed:\n{}", String::from_utf8_lossy(&out.stderr));
    guest_target().join(target).join("release")
}

/// The SDK's examples and test plugins, built once per test run.
pub fn guests() -> &'static Path {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| build_guests(&root().join("sdk"), "wasm32-unknown-unknown", None))
}

/// Waits until `cond` holds, checking every 100 ms; panics naming `what`
/// after `timeout`.
pub fn wait_until(what: &str, timeout: std::time::Duration, cond: impl Fn() -> bool) {
    let t = std::time::Instant::now();
    while !cond() {
        assert!(t.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

// --- Kafka: a tansu broker ---------------------------------------------

/// Whether tansu is installed (required under CI=true).
pub fn have_tansu() -> bool {
    let ok =
        Command::new("tansu").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    require("tansu (the Kafka-protocol broker)", ok)
}

pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A tansu broker with sqlite storage in its own directory.
pub struct Broker {
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
    port: u16,
}

impl Broker {
    pub fn start() -> Broker {
        let mut b = Broker { child: None, dir: tempfile::tempdir().unwrap(), port: free_tcp_port() };
        b.resume();
        b
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and storage.
    pub fn resume(&mut self) {
        let url = format!("tcp://{}", self.addr());
        let child = std::process::Command::new("tansu")
            .current_dir(self.dir.path())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .stdout(std::fs::File::create(self.dir.path().join("broker.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        self.child = Some(child);
        let t = std::time::Instant::now();
        while std::net::TcpStream::connect(self.addr()).is_err() {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(20),
                "tansu did not listen on {}",
                self.addr()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let ok = std::process::Command::new("tansu")
            .args(["topic", "create", "--broker", &format!("tcp://{}", self.addr()), "--partitions"])
            .arg(partitions.to_string())
            .arg(name)
            .status()
            .expect("tansu topic create runs");
        assert!(ok.success(), "cannot create topic {name}");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A NetFlow v5 packet with one record (10.0.0.1, 1 packet, 100 bytes) and
/// the given flow sequence number.
pub fn v5_packet(sequence: u32) -> Vec<u8> {
    let mut p = vec![0u8; 24 + 48];
    p[1] = 5;
    p[3] = 1;
    p[16..20].copy_from_slice(&sequence.to_be_bytes());
    p[24..28].copy_from_slice(&[10, 0, 0, 1]);
    p[24 + 16..24 + 20].copy_from_slice(&1u32.to_be_bytes());
    p[24 + 20..24 + 24].copy_from_slice(&100u32.to_be_bytes());
    p
}

/// Stops a collector started with `--ledger-json DIR/ledger.json`
/// gracefully (after letting the last datagrams reach its socket) and
/// returns its final ledger, checked to balance.
pub fn stop_collector(g: Guard, dir: &Path) -> serde_json::Value {
    std::thread::sleep(std::time::Duration::from_millis(300));
    signal(g.id(), "TERM");
    let out = g.wait();
    assert!(out.status.success(), "{}", text(&out));
    let ledger: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("ledger.json")).unwrap()).unwrap();
    assert_balanced(&ledger);
    ledger
}

/// `GET path` from an HTTP endpoint: status and body ((0, "") when it does not answer).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return (0, String::new()) };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    let code = body.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let text = body.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, text)
}

/// The sum of every series of metric `name` on the admin endpoint at `admin`.
pub fn metric(admin: &str, name: &str) -> u64 {
    http_get(admin, "/metrics")
        .1
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Starts `spillway generate netflow --target 127.0.0.1:PORT --json ARGS` in the background.
pub fn generator(vip: u16, args: &[&str]) -> std::process::Child {
    spillway()
        .args(["generate", "netflow", "--target", &format!("127.0.0.1:{vip}"), "--json"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a generator started with [`generator`] and returns its totals.
pub fn totals(child: std::process::Child) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "generator: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
