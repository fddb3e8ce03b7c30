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

/// Creates a plugin crate `name` in `dir`.
pub fn new(name: &str, dir: Option<PathBuf>, sdk: Option<PathBuf>) -> ExitCode {
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if !valid {
        eprintln!("error: `{name}` is not a crate name (letters, digits, `_`, `-`; starting with a letter)");
        return ExitCode::from(2);
    }
    let root = dir.unwrap_or_else(|| PathBuf::from(name));
    if root.exists() {
        eprintln!("error: {} already exists", root.display());
        return ExitCode::from(2);
    }
    let lib = name.replace('-', "_");
    let files: Vec<(&str, String)> = vec![
        ("Cargo.toml", format!(
            r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the .wasm plugin; rlib: so `cargo test` can run it natively.
crate-type = ["cdylib", "rlib"]

[dependencies]
{sdk}
serde = {{ version = "1", features = ["derive"] }}

[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"
"#,
            sdk = sdk_dependency(sdk)
        )),
        ("src/lib.rs", r#"//! A Spillway plugin. Build: see README.md.

use std::collections::HashMap;

use spillway_sdk::{Flow, map};

/// The plugin's `config:` from the pipeline file.
#[derive(serde::Deserialize, Default)]
pub struct Config {
    /// Extra names for destination ports, e.g. { "8443": "https-alt" }.
    #[serde(default)]
    pub ports: HashMap<u16, String>,
}

/// Adds a `service` column: a name for the destination port.
#[map(column = "service")]
pub fn service(flow: &Flow, cfg: &Config) -> Option<String> {
    let port = flow.dst_port()?;
    cfg.ports.get(&port).cloned().or_else(|| match port {
        53 => Some("dns".into()),
        80 => Some("http".into()),
        443 => Some("https".into()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_sdk::arrow_array::{RecordBatch, UInt16Array};
    use spillway_sdk::arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;
    
    #[test]
    fn names_ports() {
        let schema = Arc::new(Schema::new(vec![Field::new("dst_port", DataType::UInt16, true)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(UInt16Array::from(vec![Some(443), Some(9), None]))]).unwrap();
        let cfg = Config::default();
        let out = spillway_sdk::testing::run(|b, c: &Config| b.with_column("service", |f| service(f, c)), batch, &cfg).unwrap();
        let names = out.column(1).as_any().downcast_ref::<spillway_sdk::arrow_array::StringArray>().unwrap();
        assert_eq!(names.iter().collect::<Vec<_>>(), [Some("https"), None, None]);
    }
}
"#.to_string()),
        ("build-offline.sh", r#"#!/bin/sh
# Builds the plugin without `rustup target add`, with Debian's rustc-web
# (apt-get install rustc-web cargo-web rust-web-src lld-22 wasi-libc).
set -e
cd "$(dirname "$0")"
RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTFLAGS="-C target-feature=+simd128" \
  /usr/bin/cargo build --release -Zbuild-std=std,panic_abort --target wasm32-unknown-unknown "$@"
"#.to_string()),
        ("sample.jsonl", r#"{"time_received":"2026-11-27T10:00:00Z","exporter":"10.0.0.1","observation_domain":0,"flow_version":10,"src_addr":"192.0.2.1","dst_addr":"198.51.100.2","src_port":51000,"dst_port":443,"protocol":6,"bytes":1500,"packets":3,"sampling_rate":1,"sampling_source":"none"}
{"time_received":"2026-11-27T10:00:01Z","exporter":"10.0.0.1","observation_domain":0,"flow_version":10,"src_addr":"192.0.2.1","dst_addr":"198.51.100.53","src_port":40000,"dst_port":53,"protocol":17,"bytes":80,"packets":1,"sampling_rate":1,"sampling_source":"none"}
{"time_received":"2026-11-27T10:00:02Z","exporter":"10.0.0.2","observation_domain":0,"flow_version":10,"src_addr":"2001:db8::1","dst_addr":"2001:db8::2","src_port":50000,"dst_port":8443,"protocol":6,"bytes":9000,"packets":7,"sampling_rate":1,"sampling_source":"none"}
"#.to_string()),
        (".gitignore", "target/\n".to_string()),
        ("README.md", format!(r#"# {name}

A Spillway plugin. `src/lib.rs` is the whole of it.

Build:

    rustup target add wasm32-unknown-unknown        # once
    cargo build --release --target wasm32-unknown-unknown

or, offline on Debian without rustup targets: `./build-offline.sh`.

Try it on sample records (JSON lines in the form the `file` sink writes):

    spillway plugin test target/wasm32-unknown-unknown/release/{lib}.wasm --input sample.jsonl --config '{{"ports": {{"8443": "https-alt"}}}}'

Unit-test it natively: `cargo test`.

Use it in a pipeline:

```yaml
transforms:
  named:
    type: wasm
    inputs: [flows]
    module: target/wasm32-unknown-unknown/release/{lib}.wasm
    config: {{ ports: {{ "8443": https-alt }} }}
```
"#)),
    ];
    for (rel, text) in files {
        let p = root.join(rel);
        if let Some(d) = p.parent()
            && let Err(e) = std::fs::create_dir_all(d)
        {
            eprintln!("error: cannot create {}: {e}", d.display());
            return ExitCode::from(1);
        }
        if let Err(e) = std::fs::write(&p, text) {
            eprintln!("error: cannot write {}: {e}", p.display());
            return ExitCode::from(1);
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ =
            std::fs::set_permissions(root.join("build-offline.sh"), std::fs::Permissions::from_mode(0o755));
    }
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
