//! The file store: one directory shared by the collectors of one host (and
//! by a collector and its next start). One file per key, written to a
//! temporary name and renamed, so a reader sees a whole entry or none;
//! followed by scanning the directory for files whose size or
//! modification time changed — only when the directory's own modification
//! time moved (every write renames into it), so a quiet store costs one
//! `stat` per poll.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::{Backend, Read};
use crate::shared_state::codec;

pub struct FileStore {
    dir: PathBuf,
    /// What each file looked like when last read (or written by us).
    seen: HashMap<PathBuf, (u64, SystemTime)>,
    /// The directory's modification time at the last full scan.
    dir_mtime: Option<SystemTime>,
    tmp_seq: u64,
}

impl FileStore {
    /// The store in `dir` (created if need be).
    pub fn open(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Self { dir: dir.to_path_buf(), seen: HashMap::new(), dir_mtime: None, tmp_seq: 0 })
    }

    /// A file name for `key`: its characters outside `[A-Za-z0-9.]` as
    /// `_xx` hex escapes, so every key maps to one distinct, portable name.
    fn file_name(key: &str) -> String {
        let mut s = String::with_capacity(key.len() + 8);
        for b in key.bytes() {
            if b.is_ascii_alphanumeric() || b == b'.' {
                s.push(b as char);
            } else {
                s.push_str(&format!("_{b:02x}"));
            }
        }
        s.push_str(".json");
        s
    }

    fn scan(&mut self) -> Vec<Read> {
        let mtime = match std::fs::metadata(&self.dir).and_then(|m| m.modified()) {
            Ok(t) => t,
            Err(e) => return vec![Err(format!("cannot read {}: {e}", self.dir.display()))],
        };
        // Unchanged since a scan that started after it: nothing new. (A
        // change within the same clock tick as the last scan is caught by
        // scanning again while the time is that recent.)
        if self.dir_mtime == Some(mtime)
            && mtime.elapsed().is_ok_and(|a| a > std::time::Duration::from_secs(1))
        {
            return Vec::new();
        }
        self.dir_mtime = Some(mtime);
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) => return vec![Err(format!("cannot read {}: {e}", self.dir.display()))],
        };
        let mut out = Vec::new();
        for ent in rd.flatten() {
            let path = ent.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let Ok(md) = ent.metadata() else { continue };
            let stamp = (md.len(), md.modified().unwrap_or(SystemTime::UNIX_EPOCH));
            if self.seen.get(&path) == Some(&stamp) {
                continue;
            }
            self.seen.insert(path.clone(), stamp);
            out.push(match std::fs::read(&path) {
                Ok(v) => codec::decode(&v).map_err(|e| format!("{}: {e}", path.display())),
                Err(e) => Err(format!("cannot read {}: {e}", path.display())),
            });
        }
        out
    }
}

impl Backend for FileStore {
    fn load(&mut self, _deadline: Instant) -> Vec<Read> {
        self.scan()
    }

    fn write(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        let path = self.dir.join(Self::file_name(key));
        self.tmp_seq += 1;
        let tmp =
            self.dir.join(format!(".{}.{}.{}.tmp", Self::file_name(key), std::process::id(), self.tmp_seq));
        std::fs::write(&tmp, value).and_then(|_| std::fs::rename(&tmp, &path)).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", path.display())
        })?;
        // Our own write is not news on the next scan.
        if let Ok(md) = std::fs::metadata(&path) {
            self.seen.insert(path, (md.len(), md.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
        }
        Ok(())
    }

    fn poll(&mut self) -> Vec<Read> {
        self.scan()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_portable() {
        let a = FileStore::file_name("2001:db8::1/7/template/256");
        assert_eq!(a, "2001_3adb8_3a_3a1_2f7_2ftemplate_2f256.json");
        assert_ne!(FileStore::file_name("a_b"), FileStore::file_name("a/b"));
    }
}
