//! What happens to temporary files a crash left behind.
//!
//! A file still under its temporary name was never acknowledged: an
//! acknowledging source (Kafka) will deliver its records again, and an
//! unacknowledging one (UDP) lost them in the crash. Either way the file
//! holds no footer and no reader could use it, so it must not stay among
//! the data. Deleting it would destroy evidence, so it is moved to
//! `<path>/_incomplete/` (readers of Hive layouts skip `_`-prefixed
//! directories), logged, and left for the operator.

use std::path::{Path, PathBuf};

/// Suffix of files being written.
pub const TMP_SUFFIX: &str = ".parquet.inprogress";

/// Directory (under the sink's path) that receives leftover temporary files.
pub const INCOMPLETE_DIR: &str = "_incomplete";

/// Moves every leftover temporary file under `root` to `root/_incomplete/`
/// and returns their new paths.
pub fn recover(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    collect(root, root, &mut found)?;
    let mut moved = Vec::new();
    if found.is_empty() {
        return Ok(moved);
    }
    let dest = root.join(INCOMPLETE_DIR);
    std::fs::create_dir_all(&dest)?;
    for path in found {
        let rel = path.strip_prefix(root).unwrap_or(&path);
        // Flatten the partition path into the name so nothing collides.
        let flat = rel.to_string_lossy().replace(['/', '\\'], "__");
        let target = dest.join(flat.trim_start_matches('.'));
        std::fs::rename(&path, &target)?;
        moved.push(target);
    }
    Ok(moved)
}

fn collect(root: &Path, dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let ty = entry.file_type()?;
        if ty.is_dir() {
            if path == root.join(INCOMPLETE_DIR) {
                continue;
            }
            collect(root, &path, found)?;
        } else if ty.is_file() && path.to_string_lossy().ends_with(TMP_SUFFIX) {
            found.push(path);
        }
    }
    Ok(())
}

/// Files older than this are not read for journal marks at start: a journal
/// holds what was not acknowledged, which is minutes to hours old.
const MARKS_LOOKBACK: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Reads the journal marks of the committed files under `root` (written in
/// the last [`MARKS_LOOKBACK`]) into the process's
/// [`spillway_core::journal::committed`] under the sink's name, so that the
/// sink skips replayed batches these files hold. Only footers are read.
pub fn read_journal_marks(root: &Path, component: &str) {
    let mut files = Vec::new();
    collect_parquet(root, &mut files, 0);
    let cutoff = std::time::SystemTime::now() - MARKS_LOOKBACK;
    let mut n = 0usize;
    for path in files {
        if std::fs::metadata(&path).and_then(|m| m.modified()).is_ok_and(|t| t < cutoff) {
            continue;
        }
        let Ok(file) = std::fs::File::open(&path) else { continue };
        let Ok(reader) = parquet::file::reader::SerializedFileReader::new(file) else { continue };
        use parquet::file::reader::FileReader;
        let Some(kv) = reader.metadata().file_metadata().key_value_metadata() else { continue };
        let Some(v) = kv.iter().find(|k| k.key == crate::sink::JOURNAL_KEY).and_then(|k| k.value.as_deref())
        else {
            continue;
        };
        let Ok(marks) = serde_json::from_str::<std::collections::HashMap<String, Vec<(u64, u64)>>>(v) else {
            tracing::warn!(component, file = %path.display(), "unreadable journal marks in a Parquet file's metadata");
            continue;
        };
        for (journal, ranges) in marks {
            spillway_core::journal::committed().add(&journal, component, &ranges);
        }
        n += 1;
    }
    if n > 0 {
        tracing::debug!(component, files = n, "journal marks read from committed Parquet files");
    }
}

fn collect_parquet(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('_') || name.starts_with('.') {
            continue;
        }
        if p.is_dir() && depth < 8 {
            collect_parquet(&p, out, depth + 1);
        } else if name.ends_with(".parquet") {
            out.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_move_aside_and_finished_files_stay() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("dt=2026-01-01");
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(part.join(format!(".part-1{TMP_SUFFIX}")), b"PAR1 partial").unwrap();
        std::fs::write(part.join("part-0.parquet"), b"done").unwrap();
        let moved = recover(dir.path()).unwrap();
        assert_eq!(moved.len(), 1);
        assert!(moved[0].starts_with(dir.path().join(INCOMPLETE_DIR)));
        assert!(part.join("part-0.parquet").exists());
        assert!(recover(dir.path()).unwrap().is_empty(), "a second start finds nothing new");
    }
}
