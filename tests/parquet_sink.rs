//! The Parquet sink, checked with independent readers (pyarrow, DuckDB,
//! Spark).

mod common;

use std::time::Duration;

use spillway_debug::demo::FlowGenerator;

#[test]
fn records_read_back_exactly_with_types_partitions_and_row_groups() {
    if !common::python_readers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // 3 hours of records at 1 ms steps would be too many; 50 ms steps over
    // 250,000 records span ~3.5 hours, so four hour partitions.
    let p = common::write_pipeline(
        dir.path(),
        r#"
sources:
  flows: { type: demo, count: 250000, seed: 9, start_time: "2026-01-01T00:00:00Z", time_step: 50ms, batch_size: 7000 }
sinks:
  archive:
    type: parquet
    inputs: [flows]
    path: ./out
    partition: "dt=%Y-%m-%d/hour=%H"
    row_group_rows: 20000
    rotate: { max_rows: 60000 }
  lines: { type: file, inputs: [flows], path: ./out.jsonl }
"#,
    );
    let (out, ledger) = common::run_pipeline(dir.path(), &p);
    assert!(out.status.success(), "{}", common::text(&out));
    common::assert_balanced(&ledger);
    assert_eq!(common::entry(&ledger, "archive")["delivered"], 250_000);

    let mut g = FlowGenerator::new(9, 10, 1_767_225_600_000_000_000, Duration::from_millis(50));
    let b = g.batch(250_000);
    let col = |n: &str| -> u64 {
        arrow::compute::sum(
            b.column_by_name(n).unwrap().as_any().downcast_ref::<arrow::array::UInt64Array>().unwrap(),
        )
        .unwrap()
    };
    let script = r#"
import sys, json, pyarrow.parquet as pq, pyarrow.dataset as ds, pyarrow.compute as pc, glob
root = sys.argv[1]
files = sorted(glob.glob(root + '/**/*.parquet', recursive=True))
t = ds.dataset(root, format='parquet', partitioning='hive').to_table()
md = [pq.ParquetFile(f).metadata for f in files]
schema = pq.read_schema(files[0])
first = t.sort_by('time_received').slice(0, 1).to_pylist()[0]
print(json.dumps({
  'rows': t.num_rows,
  'bytes': pc.sum(t['bytes']).as_py(),
  'packets': pc.sum(t['packets']).as_py(),
  'files': len(files),
  'max_rows_per_file': max(m.num_rows for m in md),
  'max_row_group_rows': max(m.row_group(i).num_rows for m in md for i in range(m.num_row_groups)),
  'codecs': sorted({m.row_group(g).column(i).compression for m in md for g in range(m.num_row_groups) for i in range(m.num_columns)}),
  'src_addr_type': str(schema.field('src_addr').type),
  'time_type': str(schema.field('time_received').type),
  'hours': sorted(set(pc.unique(t['hour']).to_pylist())),
  'first_time': first['time_received'].isoformat(),
  'first_src': first['src_addr'],
  'v6_rows': pc.sum(pc.cast(pc.match_substring(t['src_addr'], ':'), 'int64')).as_py(),
  'stats': {c.path_in_schema: c.is_stats_set for c in (md[0].row_group(0).column(i) for i in range(md[0].num_columns))},
  'encodings': {c.path_in_schema: sorted(c.encodings) for c in (md[0].row_group(0).column(i) for i in range(md[0].num_columns))},
}))
"#;
    let got: serde_json::Value =
        serde_json::from_str(&common::run_python(script, &[dir.path().join("out").to_str().unwrap()]))
            .unwrap();
    assert_eq!(got["rows"], 250_000);
    assert_eq!(got["bytes"], col("bytes"));
    assert_eq!(got["packets"], col("packets"));
    assert!(got["max_rows_per_file"].as_u64().unwrap() <= 60_000, "{got}");
    assert!(got["files"].as_u64().unwrap() >= 5, "rotation by rows: {got}");
    assert_eq!(got["max_row_group_rows"], 20_000);
    // zstd, but not on chunks it does not shrink.
    assert_eq!(got["codecs"], serde_json::json!(["UNCOMPRESSED", "ZSTD"]), "{got}");
    assert_eq!(got["src_addr_type"], "string");
    assert_eq!(got["time_type"], "timestamp[ns, tz=UTC]");
    assert_eq!(got["hours"], serde_json::json!([0, 1, 2, 3]));
    assert_eq!(got["first_time"], "2026-01-01T00:00:00+00:00");
    // Min/max for numbers and times; none for addresses as text, whose
    // text order is not address order.
    for (column, stats) in
        [("time_received", true), ("bytes", true), ("src_addr", false), ("exporter", false)]
    {
        assert_eq!(got["stats"][column], stats, "{column}: {got}");
    }
    // Every column may have a dictionary and keeps it where it pays: the
    // exporter (10 of them), five destination ports and the sources (mostly
    // 256 IPv4 addresses) do; times, counters and source ports (distinct
    // nearly every row) leave it after one page for delta integers.
    for (column, encoding) in [
        ("time_received", "DELTA_BINARY_PACKED"),
        ("bytes", "DELTA_BINARY_PACKED"),
        ("src_port", "DELTA_BINARY_PACKED"),
        ("exporter", "RLE_DICTIONARY"),
        ("dst_port", "RLE_DICTIONARY"),
        ("src_addr", "RLE_DICTIONARY"),
    ] {
        let encodings = got["encodings"][column].as_array().unwrap();
        assert!(encodings.iter().any(|e| e == encoding), "{column} {encoding}: {got}");
        let other = if encoding == "RLE_DICTIONARY" { "DELTA_BINARY_PACKED" } else { "RLE_DICTIONARY" };
        assert!(!encodings.iter().any(|e| e == other), "{column} not {other}: {got}");
    }
    let v6 = b
        .column_by_name("src_addr")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::FixedSizeBinaryArray>()
        .unwrap()
        .iter()
        .filter(|a| a.is_some_and(|a| a[..12] != [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]))
        .count();
    assert_eq!(got["v6_rows"], v6 as u64);

    // The JSON-lines sink saw the same records, in human form.
    let lines = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 250_000);
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(first["time_received"], "2026-01-01T00:00:00Z");
    assert_eq!(first["src_addr"], got["first_src"]);
}

#[test]
fn duckdb_reads_hive_partitions_and_binary_addresses() {
    if !common::python_readers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = common::write_pipeline(
        dir.path(),
        r#"
sources:
  flows: { type: demo, count: 30000, seed: 4, start_time: "2026-03-01T23:30:00Z", time_step: 100ms }
sinks:
  archive:
    type: parquet
    inputs: [flows]
    path: ./out
    partition: "dt=%Y-%m-%d"
    addresses: binary
"#,
    );
    let (out, ledger) = common::run_pipeline(dir.path(), &p);
    assert!(out.status.success(), "{}", common::text(&out));
    common::assert_balanced(&ledger);
    let script = r#"
import sys, duckdb
q = "select dt::varchar, count(*), typeof(any_value(src_addr)) from read_parquet(?, hive_partitioning=true) group by dt order by dt"
print(duckdb.execute(q, [sys.argv[1] + '/**/*.parquet']).fetchall())
s = "select bool_and(stats_min_value is not null and stats_max_value is not null) from parquet_metadata(?) where path_in_schema = 'src_addr'"
print(duckdb.execute(s, [sys.argv[1] + '/**/*.parquet']).fetchall())
"#;
    let got = common::run_python(script, &[dir.path().join("out").to_str().unwrap()]);
    let mut lines = got.lines();
    // 30,000 records 100 ms apart from 23:30 span 50 minutes: 18,000 on the
    // 1st (until midnight) and 12,000 on the 2nd.
    assert_eq!(
        lines.next().unwrap_or_default(),
        "[('2026-03-01', 18000, 'BLOB'), ('2026-03-02', 12000, 'BLOB')]"
    );
    // Binary addresses keep min/max: byte order is address order.
    assert_eq!(lines.next().unwrap_or_default(), "[(True,)]", "{got}");
}

/// Every codec is written as configured and read back by pyarrow and
/// DuckDB with the same rows; with several writers each writes files of
/// its own (the batches go to them in turn) and together they hold every
/// record once. Integers are delta-encoded unless `integers: plain`.
#[test]
fn codecs_and_parallel_writers_read_back_exactly() {
    if !common::python_readers() {
        return;
    }
    let mut bytes = None;
    for (codec, writers, want, integers) in [
        ("zstd", 1, "ZSTD", "delta"),
        ("lz4", 2, "LZ4_RAW", "plain"),
        ("snappy", 3, "SNAPPY", "delta"),
        ("none", 2, "UNCOMPRESSED", "plain"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let p = common::write_pipeline(
            dir.path(),
            &format!(
                r#"
sources:
  flows: {{ type: demo, count: 60000, seed: 9, batch_size: 1000, start_time: "2026-03-01T10:00:00Z" }}
sinks:
  archive: {{ type: parquet, inputs: [flows], path: ./out, compression: {codec}, writers: {writers}, integers: {integers} }}
"#
            ),
        );
        let (out, ledger) = common::run_pipeline(dir.path(), &p);
        assert!(out.status.success(), "{}", common::text(&out));
        common::assert_balanced(&ledger);
        assert_eq!(common::entry(&ledger, "archive")["delivered"], 60000, "{ledger}");
        let script = r#"
import sys, glob, json, duckdb, pyarrow.parquet as pq
files = sorted(glob.glob(sys.argv[1] + '/*.parquet'))
codecs = sorted({r[0] for r in duckdb.execute("select distinct compression from parquet_metadata(?)", [files]).fetchall()})
assert all(pq.ParquetFile(f).metadata.num_rows > 0 for f in files)
rows, seqs, total = duckdb.execute("select count(*), count(distinct (exporter, sequence)), sum(bytes) from read_parquet(?)", [files]).fetchone()
encodings = sorted({r[0] for r in duckdb.execute("select distinct encodings from parquet_metadata(?) where path_in_schema = 'bytes'", [files]).fetchall()})
print(json.dumps({"files": len(files), "codecs": codecs, "rows": rows, "distinct": seqs, "bytes": int(total), "encodings": encodings}))
"#;
        let got: serde_json::Value =
            serde_json::from_str(&common::run_python(script, &[dir.path().join("out").to_str().unwrap()]))
                .unwrap();
        // The codec, and none on chunks it does not shrink.
        let mut codecs = vec![want, "UNCOMPRESSED"];
        codecs.sort();
        codecs.dedup();
        assert_eq!(got["codecs"], serde_json::json!(codecs), "{codec}: {got}");
        assert_eq!(got["rows"], 60000, "{codec}: {got}");
        assert_eq!(got["distinct"], 60000, "every record once: {got}");
        assert_eq!(got["files"], writers, "one file per writer: {got}");
        // DuckDB lists a chunk's encodings as one string ("RLE, PLAIN").
        let encodings = got["encodings"].to_string();
        let delta = encodings.contains("DELTA_BINARY_PACKED");
        assert_eq!(delta, integers == "delta", "{codec} {integers}: {got}");
        assert_eq!(encodings.contains("PLAIN"), integers == "plain", "{codec} {integers}: {got}");
        // The same records under every codec.
        assert_eq!(*bytes.get_or_insert(got["bytes"].clone()), got["bytes"], "{codec}: {got}");
    }
}

/// Spark (parquet-mr, not arrow-rs or DuckDB's reader) reads what the sink
/// writes by default and with lz4 and PLAIN integers: dictionaries weighed per
/// chunk, delta pages, chunks stored uncompressed beside compressed ones,
/// truncated string statistics. Its answers equal DuckDB's on the same files.
/// Spark has no type for nanosecond timestamps: it reads them as nanoseconds
/// since the epoch with `spark.sql.legacy.parquet.nanosAsLong`, and with
/// `time_unit: microseconds` as its own timestamps, without that setting.
#[test]
fn spark_reads_what_the_sink_writes_and_agrees_with_duckdb() {
    if !common::spark_reader() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = common::write_pipeline(
        dir.path(),
        r#"
sources:
  flows: { type: demo, count: 60000, seed: 5, batch_size: 1000, start_time: "2026-03-01T10:00:00Z" }
sinks:
  defaults: { type: parquet, inputs: [flows], path: ./zstd }
  lz4: { type: parquet, inputs: [flows], path: ./lz4, compression: lz4, integers: plain }
  micros: { type: parquet, inputs: [flows], path: ./micros, time_unit: microseconds }
"#,
    );
    let (out, ledger) = common::run_pipeline(dir.path(), &p);
    assert!(out.status.success(), "{}", common::text(&out));
    common::assert_balanced(&ledger);
    let script = r#"
import sys, glob, json, duckdb
from pyspark.sql import SparkSession
spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
spark.sparkContext.setLogLevel("ERROR")
out = {}
for d in sys.argv[1:]:
    files = sorted(glob.glob(d + '/*.parquet'))
    micros = d.endswith('/micros')
    # Nanoseconds only as longs; microseconds as Spark's own timestamps.
    spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "false" if micros else "true")
    (sp, dk) = ("unix_micros", "epoch_us") if micros else ("", "epoch_ns")
    df = spark.read.parquet(*files)
    s = df.selectExpr(
        "count(*)", "sum(bytes)", "count(distinct src_addr)", "count(distinct dst_addr)", "sum(dst_port)",
        f"{sp}(min(time_received))", f"{sp}(max(flow_end))", "count(distinct sampling_source)", "max(exporter)").collect()[0]
    k = duckdb.execute(
        "select count(*), sum(bytes), count(distinct src_addr), count(distinct dst_addr), sum(dst_port), "
        f"{dk}(min(time_received)), {dk}(max(flow_end)), count(distinct sampling_source), max(exporter) "
        "from read_parquet(?)", [files]).fetchone()
    codecs = sorted({r[0] for r in duckdb.execute("select distinct compression from parquet_metadata(?)", [files]).fetchall()})
    out[d.rsplit('/', 1)[1]] = {"spark": [str(v) for v in s], "duckdb": [str(v) for v in k], "codecs": codecs,
                                "time_type": dict(df.dtypes)["time_received"]}
spark.stop()
print(json.dumps(out))
"#;
    let dirs = ["zstd", "lz4", "micros"].map(|d| dir.path().join(d).to_str().unwrap().to_string());
    let got = common::run_python(script, &dirs.each_ref().map(String::as_str));
    let got: serde_json::Value = serde_json::from_str(got.lines().last().unwrap_or_default()).unwrap();
    for (name, codec) in [("zstd", "ZSTD"), ("lz4", "LZ4_RAW"), ("micros", "ZSTD")] {
        let g = &got[name];
        assert_eq!(g["spark"], g["duckdb"], "{name}: {got}");
        assert_eq!(g["spark"][0], "60000", "{name}: {got}");
        let mut codecs = [codec, "UNCOMPRESSED"];
        codecs.sort();
        assert_eq!(g["codecs"], serde_json::json!(codecs), "{name}: both kinds of chunk: {got}");
    }
    assert_eq!(got["zstd"]["spark"], got["lz4"]["spark"], "the same records: {got}");
    assert_eq!(got["zstd"]["time_type"], "bigint", "nanoseconds as longs: {got}");
    assert_eq!(got["micros"]["time_type"], "timestamp", "microseconds as Spark's timestamps: {got}");
    // The same records, the times a thousandth of the nanoseconds.
    let (ns, us) = (&got["zstd"]["spark"], &got["micros"]["spark"]);
    for i in 0..9 {
        let want = match i {
            5 | 6 => (ns[i].as_str().unwrap().parse::<i64>().unwrap() / 1000).to_string(),
            _ => ns[i].as_str().unwrap().to_string(),
        };
        assert_eq!(us[i], want.as_str(), "column {i}: {got}");
    }
}

#[test]
fn files_become_visible_by_age_while_the_pipeline_runs() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::write_pipeline(
        dir.path(),
        r#"
sources:
  flows: { type: demo, rate: 5000 }
sinks:
  archive: { type: parquet, inputs: [flows], path: ./out, rotate: { max_age: 300ms } }
"#,
    );
    let child = common::Guard::run(dir.path(), &p, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = 0;
    while std::time::Instant::now() < deadline {
        seen = common::parquet_files(&dir.path().join("out")).len();
        if seen >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    common::signal(child.id(), "TERM");
    let out = child.wait();
    assert!(seen >= 2, "no file was closed by age while running");
    assert!(out.status.success(), "{}", common::text(&out));
}
