//! `spillway plugin new` and `spillway plugin test`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where the SDK is: `--sdk`, else this source tree's `sdk/` if it is
/// still there, else the published crate.
fn sdk_dependency(sdk: Option<PathBuf>) -> String {
    let local = sdk.or_else(|| {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sdk");
        p.join("Cargo.toml").exists().then_some(p)
    });
    match local {
        Some(p) => {
            format!("spillway-sdk = {{ path = {:?} }}", p.canonicalize().unwrap_or(p).display().to_string())
        }
        None => "spillway-sdk = \"0.1\"".into(),
    }
}

/// Creates a plugin crate `name` in `dir` (default `./NAME`).
pub fn new(name: &str, dir: Option<PathBuf>, sdk: Option<PathBuf>) -> ExitCode {
    let root = dir.unwrap_or_else(|| PathBuf::from(name));
    if let Err(e) = spillway_wasm::scaffold::create(name, &root, &sdk_dependency(sdk)) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let lib = name.replace('-', "_");
    println!("created plugin `{name}` in {}", root.display());
    println!(
        "next: cd {} && cargo build --release --target wasm32-unknown-unknown   (or ./build-offline.sh)",
        root.display()
    );
    println!(
        "then: spillway plugin test target/wasm32-unknown-unknown/release/{lib}.wasm --input sample.jsonl"
    );
    ExitCode::SUCCESS
}

/// Runs a plugin on records read as JSON lines; prints its output records.
pub fn test(module: &Path, config: Option<String>, input: &Path, limits: spillway_wasm::Limits) -> ExitCode {
    let cfg = match config {
        None => b"{}".to_vec(),
        Some(c) => {
            let text = match c.strip_prefix('@') {
                Some(f) => match std::fs::read_to_string(f) {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("error: cannot read {f}: {e}");
                        return ExitCode::from(2);
                    }
                },
                None => c,
            };
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v) if v.is_object() => serde_json::to_vec(&v).unwrap_or_default(),
                _ => {
                    eprintln!("error: --config must be a JSON object (or @FILE holding one)");
                    return ExitCode::from(2);
                }
            }
        }
    };
    let reader: Box<dyn BufRead> = if input == Path::new("-") {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        match std::fs::File::open(input) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", input.display());
                return ExitCode::from(2);
            }
        }
    };
    let mut decoder = spillway_core::human::JsonDecoder::default();
    let mut line_of = Vec::new(); // line number of each accepted record
    for (i, line) in reader.lines().enumerate() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        if let Err(e) = decoder.push(line.as_bytes()) {
            eprintln!("error: {}:{}: not a flow record: {e}", input.display(), i + 1);
            return ExitCode::from(2);
        }
        line_of.push(i + 1);
    }
    let batch = match decoder.take() {
        Ok((batch, malformed)) => match malformed.first() {
            Some((i, e)) => {
                eprintln!("error: {}:{}: not a flow record: {e}", input.display(), line_of[*i]);
                return ExitCode::from(2);
            }
            None => batch,
        },
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let plugin = match spillway_wasm::load(module, limits) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let schema = batch.schema();
    let (mut inst, out_schema) = match plugin.instantiate(&cfg, &schema) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: init: {e}");
            return ExitCode::from(1);
        }
    };
    let t = std::time::Instant::now();
    let out = match inst.process(&batch) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let took = t.elapsed();
    if out.schema() != out_schema {
        eprintln!("error: the output's schema differs from the one declared at init");
        return ExitCode::from(1);
    }
    let enc = spillway_core::human::JsonLines::new(&out.schema());
    let mut buf = Vec::new();
    enc.write_batch(&out, &mut buf);
    let _ = std::io::stdout().write_all(&buf);
    let added: Vec<String> = out_schema
        .fields()
        .iter()
        .filter(|f| schema.field_with_name(f.name()).is_err())
        .map(|f| format!("{} ({})", f.name(), f.data_type()))
        .collect();
    eprintln!(
        "{} records in, {} out in {took:?}; columns added: {}",
        batch.num_rows(),
        out.num_rows(),
        if added.is_empty() { "none".into() } else { added.join(", ") }
    );
    ExitCode::SUCCESS
}
