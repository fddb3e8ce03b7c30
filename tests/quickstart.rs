//! The README's main command: `spillway quickstart` runs the embedded NetFlow
//! pipeline fed by the generator and leaves Parquet that pyarrow reads.

mod common;

#[test]
fn quickstart_writes_every_generated_record_to_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_udp_port();
    let mut cmd = common::spillway();
    cmd.current_dir(dir.path()).args([
        "quickstart",
        "--records",
        "40000",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--out",
        "./data/flows",
    ]);
    // Minutes in a debug build on a loaded machine; a stop that never
    // completes (a deadlock) fails here instead of hanging the run.
    let out = common::output_within(&mut cmd, std::time::Duration::from_secs(600));
    assert!(out.status.success(), "{}", common::text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("the generator sent 40000 records"), "{stdout}");
    assert!(stdout.contains("40000 are in Parquet"), "{stdout}");
    if common::python_readers() {
        let rows = common::run_python(
            "import sys, pyarrow.dataset as ds, pyarrow.compute as pc\nt = ds.dataset(sys.argv[1], format='parquet', partitioning='hive').to_table()\nprint(t.num_rows, sorted(pc.unique(t['flow_version']).to_pylist()))",
            &[dir.path().join("data/flows").to_str().unwrap()],
        );
        assert_eq!(rows.trim(), "40000 [5, 9, 10]");
    }
}

/// The README's code block: its first command and the sample output shown
/// beneath it.
fn readme() -> (Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let command = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("cargo run --release -- "))
        .expect("the README's first command is `cargo run --release -- …`");
    let args = command.split_whitespace().map(str::to_string).collect();
    let sample =
        text.split("```text\n").nth(1).and_then(|s| s.split("```").next()).expect("a ```text sample");
    (args, sample.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect())
}

#[test]
fn the_readme_first_command_runs_as_written_ends_by_itself_and_prints_what_the_readme_shows() {
    let (args, sample) = readme();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = common::spillway();
    cmd.current_dir(dir.path()).args(&args);
    let out = common::output_within(&mut cmd, std::time::Duration::from_secs(900));
    assert!(out.status.success(), "`spillway {}`: {}", args.join(" "), common::text(&out));
    // Every sample line is printed as shown (stdout: where the records are;
    // stderr: the ledger, among the log lines).
    let printed =
        format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let printed: Vec<&str> = printed.lines().map(str::trim_end).collect();
    for line in &sample {
        assert!(
            printed.contains(&line.trim_end()),
            "the README shows `{line}`, the binary printed:\n{}",
            printed.join("\n")
        );
    }
    if common::python_readers() {
        let got = common::run_python(
            "import sys, duckdb\nprint(duckdb.sql(f\"select count(*), sum(bytes) from read_parquet('{sys.argv[1]}/**/*.parquet', hive_partitioning=true)\").fetchall()[0])",
            &[dir.path().join("data/flows").to_str().unwrap()],
        );
        let first = &sample[0];
        let records: &str = first.split("sent ").nth(1).and_then(|s| s.split(' ').next()).unwrap();
        let bytes: &str = first.split("sum of bytes ").nth(1).and_then(|s| s.split(')').next()).unwrap();
        assert_eq!(got.trim(), format!("({records}, {bytes})"), "DuckDB reads what the README says");
    }
}
