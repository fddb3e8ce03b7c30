//! WebAssembly plugins: the SDK's examples and a deliberately hostile
//! plugin are built from source for wasm32 with the offline Debian
//! toolchain (TOOLCHAIN.md), then run in pipelines.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;

fn json_lines(path: &Path) -> Vec<serde_json::Map<String, serde_json::Value>> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn well_known(port: u64) -> Option<&'static str> {
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

#[test]
fn the_sdk_examples_produce_exactly_the_expected_records() {
    if !have_wasm_toolchain() {
        return;
    }
    let g = guests();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
sources:
  flows: {{ type: demo, count: 6000, exporters: 3, seed: 4, batch_size: 1000 }}
transforms:
  tagged:
    type: wasm
    inputs: [flows]
    module: {g}/customer_tag.wasm
    config: {{ customers: {{ "10.0.0.1": acme, "10.0.0.2": globex }} }}
  allowed:
    type: wasm
    inputs: [flows]
    module: {g}/port_policy.wasm
    config: {{ blocked_ports: [53, 22], blocked_protocols: [] }}
  named:
    type: wasm
    inputs: [flows]
    module: {g}/app_name.wasm
    config: {{ ports: {{ "3478": webrtc }} }}
sinks:
  raw: {{ type: file, inputs: [flows], path: raw.jsonl }}
  t: {{ type: file, inputs: [tagged], path: tagged.jsonl }}
  a: {{ type: file, inputs: [allowed], path: allowed.jsonl }}
  n: {{ type: file, inputs: [named], path: named.jsonl }}
"#,
        g = g.display()
    );
    let p = write_pipeline(dir.path(), &yaml);
    let (out, ledger) = run_pipeline(dir.path(), &p);
    assert!(out.status.success(), "{}", text(&out));
    assert_balanced(&ledger);
    let raw = json_lines(&dir.path().join("raw.jsonl"));
    assert_eq!(raw.len(), 6000);
    // customer_tag: the exporter's customer, none for 10.0.0.3.
    let want: Vec<_> = raw
        .iter()
        .map(|r| {
            let mut r = r.clone();
            match r["exporter"].as_str().unwrap() {
                "10.0.0.1" => r.insert("customer".into(), "acme".into()),
                "10.0.0.2" => r.insert("customer".into(), "globex".into()),
                _ => None,
            };
            r
        })
        .collect();
    assert_eq!(json_lines(&dir.path().join("tagged.jsonl")), want, "customer_tag");
    // port_policy: without the flows to or from ports 53 and 22.
    let blocked = |r: &serde_json::Map<String, serde_json::Value>| {
        ["src_port", "dst_port"].iter().any(|k| matches!(r.get(*k).and_then(|v| v.as_u64()), Some(53 | 22)))
    };
    let want: Vec<_> = raw.iter().filter(|r| !blocked(r)).cloned().collect();
    assert!(want.len() < raw.len() && !want.is_empty());
    assert_eq!(json_lines(&dir.path().join("allowed.jsonl")), want, "port_policy");
    assert_eq!(entry(&ledger, "allowed")["dropped"]["filtered"], (raw.len() - want.len()) as u64);
    // app_name: the lower known port's name, config overriding.
    let want: Vec<_> = raw
        .iter()
        .map(|r| {
            let mut r = r.clone();
            let port = |k: &str| r.get(k).and_then(|v| v.as_u64());
            let (s, d) = (port("src_port"), port("dst_port"));
            let (lo, hi) = if s.unwrap_or(u64::MAX) <= d.unwrap_or(u64::MAX) { (s, d) } else { (d, s) };
            let name =
                |p: Option<u64>| p.and_then(|p| if p == 3478 { Some("webrtc") } else { well_known(p) });
            if let Some(n) = name(lo).or_else(|| name(hi)) {
                r.insert("app".into(), n.into());
            }
            r
        })
        .collect();
    assert_eq!(json_lines(&dir.path().join("named.jsonl")), want, "app_name");
}

#[test]
fn hostile_plugins_fail_only_their_batches_and_the_engine_keeps_running() {
    if !have_wasm_toolchain() {
        return;
    }
    let g = guests();
    let dir = tempfile::tempdir().unwrap();
    let modes = [
        ("loop", "deadline"),
        ("bomb", "memory cap"),
        (
            "panic",
            "the plugin panicked: the hostile plugin panics on purpose (at testdata/hostile/src/lib.rs:",
        ),
        ("error", "returned an error: the hostile plugin refuses this batch"),
        ("wrong_schema", "not the one it declared"),
    ];
    let mut yaml = String::from("sources:\n  healthy: { type: demo, count: 200000, seed: 1 }\n");
    for (m, _) in modes {
        yaml.push_str(&format!("  in_{m}: {{ type: demo, count: 2000, batch_size: 500, seed: 2 }}\n"));
    }
    yaml.push_str("transforms:\n");
    for (m, _) in modes {
        // The memory bomb must reach its cap, not the deadline: a debug
        // build on a loaded machine can take longer than 50 ms to fill 16 MiB.
        let timeout = if m == "bomb" { "5s" } else { "50ms" };
        yaml.push_str(&format!(
            "  {m}: {{ type: wasm, inputs: [in_{m}], module: {}/hostile.wasm, config: {{ mode: {m} }}, timeout: {timeout}, memory: 16MiB, max_failures: 100 }}\n",
            g.display()
        ));
    }
    yaml.push_str("sinks:\n  ok: { type: blackhole, inputs: [healthy] }\n");
    for (m, _) in modes {
        yaml.push_str(&format!("  out_{m}: {{ type: blackhole, inputs: [{m}] }}\n  err_{m}: {{ type: file, inputs: [{m}.errors], path: {m}.errors.jsonl }}\n"));
    }
    let p = write_pipeline(dir.path(), &yaml);
    let (out, ledger) = run_pipeline(dir.path(), &p);
    assert!(out.status.success(), "{}", text(&out));
    assert_balanced(&ledger);
    assert_eq!(entry(&ledger, "ok")["delivered"], 200000, "the healthy branch delivered everything");
    for (m, needle) in modes {
        let t = entry(&ledger, m);
        assert_eq!(t["dropped"]["plugin_error"], 2000, "{m}: {t}");
        assert_eq!(t["emitted"], 0, "{m}");
        let errs = json_lines(&dir.path().join(format!("{m}.errors.jsonl")));
        assert_eq!(errs.len(), 2000, "{m}: every failed record is on the errors output");
        for e in &errs {
            let msg = e["plugin_error"].as_str().unwrap();
            assert!(msg.contains(needle), "{m}: `{msg}` lacks `{needle}`");
            assert!(
                e.contains_key("bytes") && e.contains_key("exporter"),
                "the record itself is kept: {e:?}"
            );
        }
    }
}

#[test]
fn a_trapped_instance_is_recreated_and_a_failing_plugin_is_paused_with_backoff() {
    if !have_wasm_toolchain() {
        return;
    }
    let g = guests();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
sources:
  flows: {{ type: demo, count: 800, batch_size: 1, seed: 6 }}
  more: {{ type: demo, count: 60, batch_size: 1, rate: 100, seed: 7 }}
transforms:
  picky:
    type: wasm
    inputs: [flows]
    module: {g}/hostile.wasm
    config: {{ mode: panic_on_port, port: 53 }}
    max_failures: 1000
  broken:
    type: wasm
    inputs: [more]
    module: {g}/hostile.wasm
    config: {{ mode: panic }}
    max_failures: 3
    backoff: 200ms
sinks:
  kept: {{ type: file, inputs: [picky], path: kept.jsonl }}
  failed: {{ type: file, inputs: [picky.errors], path: failed.jsonl }}
  b: {{ type: blackhole, inputs: [broken] }}
  b_err: {{ type: file, inputs: [broken.errors], path: broken.jsonl }}
"#,
        g = g.display()
    );
    let p = write_pipeline(dir.path(), &yaml);
    let (out, ledger) = run_pipeline(dir.path(), &p);
    assert!(out.status.success(), "{}", text(&out));
    assert_balanced(&ledger);
    let kept = json_lines(&dir.path().join("kept.jsonl"));
    let failed = json_lines(&dir.path().join("failed.jsonl"));
    assert!(!failed.is_empty() && failed.len() < 400, "{} failed", failed.len());
    assert_eq!(kept.len() + failed.len(), 800);
    // Each failure trapped and the next batch ran on a new instance.
    assert!(failed.iter().all(|f| f["dst_port"] == 53), "only port-53 batches fail");
    assert!(kept.iter().all(|k| k["dst_port"] != 53));
    let log = text(&out);
    assert!(log.contains("plugin paused after failing repeatedly"), "{log}");
    assert!(log.contains("plugin pause over"), "{log}");
    let broken = json_lines(&dir.path().join("broken.jsonl"));
    assert_eq!(broken.len(), 60);
    let paused = broken.iter().filter(|b| b["plugin_error"].as_str().unwrap().contains("paused")).count();
    assert!(paused > 0, "batches during the pause fail fast, saying so");
    let kinds: BTreeMap<bool, usize> = broken.iter().fold(BTreeMap::new(), |mut m, b| {
        *m.entry(b["plugin_error"].as_str().unwrap().contains("panicked")).or_insert(0) += 1;
        m
    });
    assert!(kinds.get(&true).copied().unwrap_or(0) >= 3, "{kinds:?}");
}

#[test]
fn a_wrong_abi_missing_exports_or_not_wasm_is_a_clear_load_error() {
    let dir = tempfile::tempdir().unwrap();
    let full = |version: u32, skip: &str| {
        let mut w = String::from("(module (memory (export \"memory\") 1)\n");
        for (name, sig) in [
            ("abi_version", "(result i32) i32.const VERSION"),
            ("alloc", "(param i32) (result i32) i32.const 0"),
            ("dealloc", "(param i32 i32)"),
            ("init", "(param i32 i32) (result i64) i64.const 0"),
            ("process", "(param i32 i32) (result i64) i64.const 0"),
        ] {
            if name != skip {
                w.push_str(&format!(
                    "  (func (export \"{name}\") {})\n",
                    sig.replace("VERSION", &version.to_string())
                ));
            }
        }
        w.push(')');
        w
    };
    let cases = [
        ("v2.wat", full(2, ""), "speaks plugin ABI version 2, this spillway speaks version 1"),
        ("noprocess.wat", full(1, "process"), "does not export process"),
        ("garbage.wasm", "this is not wasm".to_string(), "is not a valid WebAssembly module"),
        ("badinit.wat", full(1, ""), "malformed"),
    ];
    for (file, body, needle) in cases {
        std::fs::write(dir.path().join(file), body).unwrap();
        let p = write_pipeline(
            dir.path(),
            &format!(
                "sources:\n  f: {{ type: demo, count: 1 }}\ntransforms:\n  plug: {{ type: wasm, inputs: [f], module: {file} }}\nsinks:\n  o: {{ type: blackhole, inputs: [plug] }}\n"
            ),
        );
        let out = spillway().current_dir(dir.path()).arg("validate").arg(&p).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{file}: {}", text(&out));
        let t = text(&out);
        assert!(t.contains("transforms.plug.module") && t.contains(needle), "{file}: {t}");
    }
}

#[test]
fn a_scaffolded_plugin_builds_offline_and_runs_under_plugin_test() {
    if !have_wasm_toolchain() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = spillway().current_dir(dir.path()).args(["plugin", "new", "my-tagger"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let crate_dir = dir.path().join("my-tagger");
    for f in ["Cargo.toml", "src/lib.rs", "README.md", "build-offline.sh", "sample.jsonl"] {
        assert!(crate_dir.join(f).exists(), "{f}");
    }
    // The offline path, exactly as the scaffold's script runs it.
    let built = Command::new(crate_dir.join("build-offline.sh"))
        .env("CARGO_TARGET_DIR", guest_target())
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let wasm = guest_target().join("wasm32-unknown-unknown/release/my_tagger.wasm");
    let out = spillway()
        .current_dir(&crate_dir)
        .args(["plugin", "test"])
        .arg(&wasm)
        .args(["--input", "sample.jsonl", "--config", r#"{"ports": {"8443": "https-alt"}}"#])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let services: Vec<Option<String>> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["service"].as_str().map(String::from))
        .collect();
    assert_eq!(services, [Some("https".into()), Some("dns".into()), Some("https-alt".into())]);
    assert!(text(&out).contains("columns added: service"), "{}", text(&out));
}

#[test]
fn an_sdk_plugin_built_for_wasip1_runs_with_only_clocks_and_random_granted() {
    if !have_wasm_toolchain() {
        return;
    }
    let wasm =
        build_guests(&root().join("sdk"), "wasm32-wasip1", Some("customer_tag")).join("customer_tag.wasm");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"time_received\":\"2026-11-27T10:00:00Z\",\"exporter\":\"10.0.0.1\",\"observation_domain\":0,\"flow_version\":10,\"bytes\":1,\"packets\":1,\"sampling_rate\":1,\"sampling_source\":\"none\"}\n\
         {\"time_received\":\"2026-11-27T10:00:01Z\",\"exporter\":\"10.0.0.9\",\"observation_domain\":0,\"flow_version\":10,\"bytes\":1,\"packets\":1,\"sampling_rate\":1,\"sampling_source\":\"none\"}\n",
    )
    .unwrap();
    let out = spillway()
        .args(["plugin", "test"])
        .arg(&wasm)
        .arg("--input")
        .arg(&input)
        .args(["--config", r#"{"customers": {"10.0.0.1": "acme"}, "default": "other"}"#])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let customers: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["customer"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(customers, ["acme", "other"]);
}
