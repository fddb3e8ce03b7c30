//! Paths in a pipeline file, checked when it is validated rather than when
//! a component first touches them: `spillway validate` should catch a path
//! with a NUL byte, an input that is not there, or an output directory on a
//! read-only filesystem.

use std::path::Path;

use crate::registry::FieldIssue;

fn nul(field: &str, p: &Path) -> Option<FieldIssue> {
    p.as_os_str()
        .as_encoded_bytes()
        .contains(&0)
        .then(|| FieldIssue::new(field, "the path contains a NUL byte"))
}

/// An input file: it must exist, be a file, and be readable.
pub fn input_file(field: &str, p: &Path) -> Option<FieldIssue> {
    if let Some(i) = nul(field, p) {
        return Some(i);
    }
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => {
            Some(FieldIssue::new(field, format!("{} is a directory, not a file", p.display())))
        }
        Ok(_) => std::fs::File::open(p)
            .err()
            .map(|e| FieldIssue::new(field, format!("cannot read {}: {e}", p.display()))),
        Err(e) => Some(FieldIssue::new(field, format!("cannot read {}: {e}", p.display()))),
    }
}

/// A directory the component writes into (created if missing): the
/// directory, or its nearest existing ancestor, must take new files. Checked
/// by creating (and at once removing) a temporary file there, which is the
/// only test a read-only mount or a full quota cannot fool.
pub fn output_dir(field: &str, p: &Path) -> Option<FieldIssue> {
    if let Some(i) = nul(field, p) {
        return Some(i);
    }
    writable(field, p, p)
}

/// Whether `p`, or its nearest existing ancestor, takes new files (for the
/// output `what`).
fn writable(field: &str, p: &Path, what: &Path) -> Option<FieldIssue> {
    let mut dir = if p.as_os_str().is_empty() { Path::new(".") } else { p };
    loop {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Some(FieldIssue::new(
                    field,
                    format!("{} exists and is not a directory", dir.display()),
                ));
            }
            Err(_) => match dir.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => dir = parent,
                _ => {
                    dir = Path::new(".");
                    break;
                }
            },
        }
    }
    match tempfile::tempfile_in(dir) {
        Ok(_) => None,
        Err(e) => Some(FieldIssue::new(
            field,
            format!("cannot write under {} (needed for {}): {e}", dir.display(), what.display()),
        )),
    }
}

/// A file the component writes: its directory must take new files.
pub fn output_file(field: &str, p: &Path) -> Option<FieldIssue> {
    if let Some(i) = nul(field, p) {
        return Some(i);
    }
    writable(field, p.parent().unwrap_or(Path::new(".")), p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_bytes_missing_inputs_and_unwritable_outputs_are_caught() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            output_dir("path", &dir.path().join("a/b/c")).is_none(),
            "created later, under a writable dir"
        );
        assert!(output_dir("path", Path::new("bad\0path")).unwrap().message.contains("NUL"));
        let missing = input_file("path", &dir.path().join("nope.csv")).unwrap();
        assert!(missing.message.contains("cannot read"), "{}", missing.message);
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(input_file("path", &file).is_none());
        assert!(output_dir("path", &file.join("sub")).unwrap().message.contains("not a directory"));
        // /proc takes no new files, whoever we are.
        assert!(output_dir("path", Path::new("/proc/spillway-test")).is_some());
    }
}
