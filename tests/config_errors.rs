//! Broken pipeline files, each with the messages it must produce.
//!
//! Every `tests/config_errors/*.yaml` starts with `# expect:` lines. `spillway
//! validate` must exit with status 2 and print, for each expectation, a line
//! `FILE:LINE:COL: COMPONENT.FIELD: MESSAGE` that contains it. Add a file here
//! for every validation rule.

mod common;

use std::path::PathBuf;

fn cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(common::root().join("tests/config_errors"))
        .expect("tests/config_errors exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_broken_file_reports_each_expected_error_with_its_position() {
    let cases = cases();
    assert!(cases.len() >= 15, "expected at least 15 broken pipelines, found {}", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let text = std::fs::read_to_string(case).unwrap();
        let expects: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# expect: ")).collect();
        assert!(!expects.is_empty(), "{} has no `# expect:` line", case.display());
        let out = common::spillway()
            .arg("validate")
            .arg(case)
            .env_remove("SPILLWAY_TEST_SURELY_UNSET")
            .output()
            .expect("spillway runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(2) {
            failures.push(format!(
                "{}: exit status {:?}, want 2\n{stderr}",
                case.display(),
                out.status.code()
            ));
            continue;
        }
        let prefix = format!("{}:", case.display());
        for expect in expects {
            let found = stderr.lines().any(|l| l.starts_with(&prefix) && l[prefix.len()..].contains(expect));
            if !found {
                failures.push(format!("{}: no line containing `{expect}` in\n{stderr}", case.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_file_that_is_not_utf8_is_refused_at_its_byte_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.yaml");
    std::fs::write(&path, b"sources:\n  flows: { type: demo }\n# caf\xe9\nsinks:\n").unwrap();
    let out = common::spillway().arg("validate").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":3:6: file: the file is not UTF-8: invalid byte 0xe9 at byte offset 38"),
        "{stderr}"
    );
}

#[test]
fn a_valid_file_passes_and_a_missing_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let ok = common::write_pipeline(
        dir.path(),
        "sources:\n  flows: { type: demo, count: 10 }\nsinks:\n  out: { type: blackhole, inputs: [flows] }\n",
    );
    let out = common::spillway().arg("validate").arg(&ok).output().unwrap();
    assert!(out.status.success(), "{}", common::text(&out));
    let out = common::spillway().arg("validate").arg(dir.path().join("nope.yaml")).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn a_config_error_starts_nothing() {
    // The sink would create this directory if anything started.
    let dir = tempfile::tempdir().unwrap();
    let p = common::write_pipeline(
        dir.path(),
        "sources:\n  flows: { type: demo, count: 10, rate: 0 }\nsinks:\n  archive: { type: parquet, inputs: [flows], path: ./made }\n",
    );
    let (out, _) = common::run_pipeline(dir.path(), &p);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    assert!(!dir.path().join("made").exists());
}
