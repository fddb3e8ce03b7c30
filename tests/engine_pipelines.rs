//! Every pipeline in `pipelines/` validates, runs, balances its ledger, and
//! writes Parquet that pyarrow reads back in full.
//!
//! A pipeline file may carry `# test-env: KEY=VALUE` lines: the test sets them
//! (to keep runs short) and runs the file in a fresh working directory. A
//! pipeline that listens (it never ends by itself) carries a
//! `# test-generate: ARGS` line: the test feeds it with `spillway generate
//! netflow ARGS`, stops it with SIGTERM and expects every generated record.

mod common;

use std::time::Duration;

#[test]
fn every_example_pipeline_runs_and_its_output_reads_back() {
    let mut files: Vec<_> = std::fs::read_dir(common::root().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3);
    let readers = common::python_readers();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ledger_path = dir.path().join("ledger.json");
        let mut cmd = common::spillway();
        for line in text.lines().filter_map(|l| l.strip_prefix("# test-env: ")) {
            let (k, v) = line.split_once('=').expect("KEY=VALUE");
            cmd.env(k, v);
        }
        cmd.current_dir(dir.path()).arg("run").arg(&file).arg("--ledger-json").arg(&ledger_path);
        let generate = text.lines().find_map(|l| l.strip_prefix("# test-generate: "));
        let (out, sent) = match generate {
            None => (cmd.output().unwrap(), None),
            Some(args) => {
                let child = cmd
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                let args: Vec<&str> = args.split_whitespace().collect();
                let port: u16 = args
                    .iter()
                    .skip_while(|a| **a != "--target")
                    .nth(1)
                    .and_then(|t| t.rsplit(':').next())
                    .and_then(|p| p.parse().ok())
                    .expect("test-generate names its --target");
                assert!(
                    common::wait_udp_listening(port, Duration::from_secs(30)),
                    "{}: never listened",
                    file.display()
                );
                let totals = common::generate(&args);
                std::thread::sleep(Duration::from_millis(500));
                common::signal(child.id(), "TERM");
                (child.wait_with_output().unwrap(), totals["records"].as_u64())
            }
        };
        assert!(out.status.success(), "{}: {}", file.display(), common::text(&out));
        let ledger: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&ledger_path).unwrap()).unwrap();
        common::assert_balanced(&ledger);
        let received: u64 = ledger["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "source")
            .map(|e| e["received"].as_u64().unwrap())
            .sum();
        assert!(received > 0, "{}: no records", file.display());
        if let Some(sent) = sent {
            assert_eq!(received, sent, "{}: every generated record arrives", file.display());
        }
        for sink in ledger["components"].as_array().unwrap().iter().filter(|e| e["kind"] == "sink") {
            assert_eq!(sink["delivered"].as_u64().unwrap(), received, "{}: {sink}", file.display());
        }
        if readers && text.contains("type: parquet") {
            let rows = common::run_python(
                "import sys, pyarrow.dataset as ds; print(ds.dataset(sys.argv[1], format='parquet', partitioning='hive').count_rows())",
                &[dir.path().join("data").to_str().unwrap()],
            );
            assert_eq!(rows.trim().parse::<u64>().unwrap(), received, "{}", file.display());
        }
    }
}
