//! The same logic as a native transform and as a WebAssembly plugin, on
//! the same batches, in one run: an application name from ports (the SDK's
//! `app_name` example) and, to isolate the plugin boundary, an identity
//! plugin. Reports rows/s, the overhead per record, and where the
//! boundary's time goes (Arrow IPC encode, the call with copies and the
//! guest's decode/encode, IPC decode).
//!
//! Run with `cargo bench --bench wasm_plugin`; it builds the guests with
//! Debian's rustc-web (TOOLCHAIN.md), as the tests do, if they are not built yet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, UInt16Type};
use spillway_debug::demo::FlowGenerator;

#[path = "../tests/common/mod.rs"]
mod common;

fn well_known(port: u16) -> Option<&'static str> {
    Some(match port {
        22 => "ssh",
        53 => "dns",
        80 => "http",
        123 => "ntp",
        443 => "https",
        993 => "imaps",
        3478 => "stun",
        8080 => "http-alt",
        _ => return None,
    })
}

/// The `app_name` example's logic, natively over Arrow columns.
fn native(batch: &RecordBatch) -> RecordBatch {
    let s = batch.column_by_name("src_port").unwrap().as_primitive::<UInt16Type>();
    let d = batch.column_by_name("dst_port").unwrap().as_primitive::<UInt16Type>();
    let names: StringArray = (0..batch.num_rows())
        .map(|i| {
            let sp = s.is_valid(i).then(|| s.value(i));
            let dp = d.is_valid(i).then(|| d.value(i));
            let (lo, hi) = if sp.unwrap_or(u16::MAX) <= dp.unwrap_or(u16::MAX) { (sp, dp) } else { (dp, sp) };
            lo.and_then(well_known).or_else(|| hi.and_then(well_known))
        })
        .collect();
    let mut fields: Vec<Arc<Field>> = batch.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new("app", DataType::Utf8, true)));
    let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
    cols.push(Arc::new(names));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
}

fn time(rounds: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm
    let t = Instant::now();
    for _ in 0..rounds {
        f();
    }
    t.elapsed() / rounds as u32
}

/// Rows/s of a demo → blackhole branch, alone or beside a branch whose
/// plugin loops until its deadline on every batch.
fn healthy_branch(dir: &std::path::Path, with_hostile: bool) -> f64 {
    use spillway_core::topology::{RunOptions, Topology};
    let n = 3_000_000u64;
    let mut yaml = format!("sources:\n  healthy: {{ type: demo, count: {n}, seed: 1 }}\n");
    if with_hostile {
        yaml.push_str("  bad_in: { type: demo, count: 40000, batch_size: 500, seed: 2 }\n");
        yaml.push_str(&format!(
            "transforms:\n  bad: {{ type: wasm, inputs: [bad_in], module: {}/hostile.wasm, config: {{ mode: loop }}, timeout: 50ms, max_failures: 1000 }}\n",
            dir.display()
        ));
    }
    yaml.push_str("sinks:\n  ok: { type: blackhole, inputs: [healthy] }\n");
    if with_hostile {
        yaml.push_str("  bad_out: { type: blackhole, inputs: [bad] }\n");
    }
    let pipeline =
        spillway_core::config::load_str(&yaml, &|_| None, std::path::Path::new("")).expect("valid");
    let topology = Topology::build(pipeline, RunOptions::default()).expect("builds");
    let ledger = topology.ledger().clone();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let run = tokio::spawn(topology.run(spillway_core::component::Shutdown::new()));
        let t = Instant::now();
        loop {
            let done = ledger.snapshot().iter().any(|e| e.component == "ok" && e.delivered == n);
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let rate = n as f64 / t.elapsed().as_secs_f64();
        run.await.unwrap().unwrap();
        rate
    })
}

fn main() {
    let dir = common::guests();
    let rows = 8192;
    let mut g = FlowGenerator::new(1, 10, 1_700_000_000_000_000_000, Duration::from_millis(1));
    let batches: Vec<RecordBatch> = (0..16).map(|_| g.batch(rows)).collect();
    let n = (batches.len() * rows) as f64;
    let limits = spillway_wasm::Limits { timeout: Duration::from_secs(5), memory: 512 << 20 };
    let schema = batches[0].schema();

    let app = spillway_wasm::load(&dir.join("app_name.wasm"), limits).unwrap();
    let (mut app_i, _) = app.instantiate(b"{}", &schema).unwrap();
    let app_map = spillway_wasm::load(&dir.join("app_map.wasm"), limits).unwrap();
    let (mut map_i, _) = app_map.instantiate(b"{}", &schema).unwrap();
    let ident = spillway_wasm::load(&dir.join("hostile.wasm"), limits).unwrap();
    let (mut id_i, _) = ident.instantiate(br#"{"mode":"identity"}"#, &schema).unwrap();
    // The outputs agree.
    for b in &batches {
        assert_eq!(app_i.process(b).unwrap(), native(b));
        assert_eq!(map_i.process(b).unwrap(), native(b));
    }

    let rounds = 20;
    let t_native = time(rounds, || {
        for b in &batches {
            std::hint::black_box(native(b));
        }
    });
    let t_wasm = time(rounds, || {
        for b in &batches {
            std::hint::black_box(app_i.process(b).unwrap());
        }
    });
    let t_map = time(rounds, || {
        for b in &batches {
            std::hint::black_box(map_i.process(b).unwrap());
        }
    });
    let t_ident = time(rounds, || {
        for b in &batches {
            std::hint::black_box(id_i.process(b).unwrap());
        }
    });
    // The host's share of the boundary: IPC encode and decode of the batch.
    let mut encoded = Vec::new();
    let t_encode = time(rounds, || {
        for b in &batches {
            encoded.clear();
            let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut encoded, &schema).unwrap();
            w.write(b).unwrap();
            w.finish().unwrap();
        }
    });
    let t_decode = time(rounds, || {
        for _ in &batches {
            let mut r =
                arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(&encoded), None).unwrap();
            std::hint::black_box(r.next().unwrap().unwrap());
        }
    });
    let ns = |d: Duration| d.as_nanos() as f64 / n;
    println!("{} batches of {rows} rows, {} columns", batches.len(), schema.fields().len());
    println!(
        "native app_name: {:.2} M rows/s ({:.1} ns/record)",
        n / t_native.as_secs_f64() / 1e6,
        ns(t_native)
    );
    println!(
        "wasm app_name:   {:.2} M rows/s ({:.1} ns/record) → plugin overhead {:.1} ns/record, {:.2}x native time",
        n / t_wasm.as_secs_f64() / 1e6,
        ns(t_wasm),
        ns(t_wasm) - ns(t_native),
        t_wasm.as_secs_f64() / t_native.as_secs_f64()
    );
    println!(
        "wasm app (#[map], reads 2 columns, answers 1): {:.2} M rows/s ({:.1} ns/record) → plugin overhead {:.1} ns/record, {:.2}x native time",
        n / t_map.as_secs_f64() / 1e6,
        ns(t_map),
        ns(t_map) - ns(t_native),
        t_map.as_secs_f64() / t_native.as_secs_f64()
    );
    let alone = healthy_branch(dir, false);
    let beside = healthy_branch(dir, true);
    println!(
        "a plugin-free branch: {:.2} M rows/s alone, {:.2} M rows/s beside a branch whose plugin loops to its 50ms deadline on every batch ({:.2}x)",
        alone / 1e6,
        beside / 1e6,
        beside / alone
    );
    println!(
        "wasm identity:   {:.2} M rows/s → boundary cost {:.1} ns/record, of which host IPC encode {:.1}, host IPC decode {:.1}, call + copies + guest decode/encode {:.1}",
        n / t_ident.as_secs_f64() / 1e6,
        ns(t_ident),
        ns(t_encode),
        ns(t_decode),
        ns(t_ident) - ns(t_encode) - ns(t_decode)
    );
}
