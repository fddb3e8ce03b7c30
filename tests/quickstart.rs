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
