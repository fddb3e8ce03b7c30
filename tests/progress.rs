//! Progress on long work: `generate` and `pcap` replays draw a progress bar
//! on a terminal (checked in a real pseudo-terminal, under tmux) and print
//! nothing of it when stderr is not one.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

fn have_tmux() -> bool {
    let ok = Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success());
    common::require("tmux (Debian package)", ok)
}

/// Runs `command` in a detached tmux session of its own and returns the
/// first screen that contains `needle` (None after `timeout`).
fn screen_with(command: &str, needle: &str, timeout: Duration) -> Option<String> {
    let session = format!("spillway-progress-{}", std::process::id());
    let ok = Command::new("tmux")
        .args(["new-session", "-d", "-s", &session, "-x", "160", "-y", "20", command])
        .status()
        .unwrap();
    assert!(ok.success(), "tmux did not start");
    let t = Instant::now();
    let mut found = None;
    while t.elapsed() < timeout {
        let out = Command::new("tmux").args(["capture-pane", "-p", "-t", &session]).output().unwrap();
        let screen = String::from_utf8_lossy(&out.stdout).into_owned();
        if screen.contains(needle) {
            found = Some(screen);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("tmux").args(["kill-session", "-t", &session]).status();
    found
}

#[test]
fn generate_draws_progress_on_a_terminal_and_nothing_when_piped() {
    let bin = env!("CARGO_BIN_EXE_spillway");
    // A socket that takes the datagrams (and never reads them).
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = sink.local_addr().unwrap().to_string();
    // Piped: the totals on stdout, and no bar on stderr.
    let out = common::spillway()
        .args(["generate", "netflow", "--target", &target, "--count", "30000", "--rate", "60000", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("sending") && !err.contains('\r') && !err.contains('\u{1b}'),
        "a bar on a pipe: {err:?}"
    );
    if !have_tmux() {
        return;
    }
    let cmd = format!("{bin} generate netflow --target {target} --count 200000 --rate 50000; sleep 10");
    let screen =
        screen_with(&cmd, "records (", Duration::from_secs(20)).expect("no progress bar on the terminal");
    assert!(screen.contains("sending [") && screen.contains("/200,000 records"), "{screen}");
}

#[test]
fn a_pcap_replay_draws_progress_on_a_terminal() {
    let Some(corpus) = common::corpus() else { return };
    if !have_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The capture lasts 0.8 ms; replayed 2000 times slower it takes 1.7 s.
    let p = common::write_pipeline(
        dir.path(),
        &format!(
            "sources:\n  replay: {{ type: pcap, path: \"{}\", timing: recorded, speed: 0.0005 }}\n\
             sinks:\n  out: {{ type: blackhole, inputs: [replay] }}\n",
            corpus.join("softflowd/v9/export_v9.pcap").display()
        ),
    );
    let cmd = format!(
        "cd {} && {} run {} --log-level warn; sleep 10",
        dir.path().display(),
        env!("CARGO_BIN_EXE_spillway"),
        p.display()
    );
    let screen =
        screen_with(&cmd, "datagrams (", Duration::from_secs(30)).expect("no progress bar on the terminal");
    assert!(screen.contains("replaying export_v9.pcap ["), "{screen}");
}
