//! Content-addressed store of previous text contents, so that a change can
//! be diffed against what the file held before — across agent restarts.
//!
//! Layout: `<state_dir>/fim/content/<sha256>` (mode 0600 in a 0700
//! directory: these are copies of configuration files, secrets included).
//!
//! Guarantees: bounded by `max_bytes` (a content that does not fit is not
//! kept; its file then gets no diff on its next change); a content is only
//! returned when its bytes still hash to its name (a damaged copy means no
//! diff, never a wrong one); [`ContentStore::gc`] removes every content the
//! baseline no longer refers to.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::baseline::{create_private_dir, write_private};
use crate::state::sha256;

#[derive(Debug)]
pub struct ContentStore {
    dir: PathBuf,
    max_bytes: u64,
    used: u64,
}

impl ContentStore {
    /// Opens (creating) the store and measures what it holds.
    pub fn open(dir: PathBuf, max_bytes: u64) -> io::Result<ContentStore> {
        create_private_dir(&dir)?;
        let mut used = 0;
        for e in fs::read_dir(&dir)? {
            let e = e?;
            used += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
        Ok(ContentStore {
            dir,
            max_bytes,
            used,
        })
    }

    fn path_of(&self, digest: &str) -> Option<PathBuf> {
        // Names come from our own hashing, but the baseline is outside data.
        (digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| self.dir.join(digest))
    }

    /// The bytes stored under `digest`, if present and intact.
    pub fn get(&self, digest: &str) -> Option<Vec<u8>> {
        let bytes = fs::read(self.path_of(digest)?).ok()?;
        (sha256(&bytes) == digest).then_some(bytes)
    }

    /// Keeps `bytes` (whose hash is `digest`) unless the store is full.
    /// Returns whether it is stored.
    pub fn put(&mut self, digest: &str, bytes: &[u8]) -> bool {
        let Some(path) = self.path_of(digest) else {
            return false;
        };
        if path.exists() {
            return true;
        }
        if self.used + bytes.len() as u64 > self.max_bytes {
            return false;
        }
        // Not fsynced: a content lost in a crash only costs one diff, and
        // `get` never returns a damaged one.
        if write_private(&path, &[bytes], false).is_err() {
            return false;
        }
        self.used += bytes.len() as u64;
        true
    }

    /// Removes every content not in `keep` (and leftovers of interrupted
    /// writes). Returns how many files were removed.
    pub fn gc(&mut self, keep: &HashSet<&str>) -> usize {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for e in dir.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if !keep.contains(name.as_ref()) {
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                if fs::remove_file(e.path()).is_ok() {
                    self.used = self.used.saturating_sub(len);
                    removed += 1;
                }
            }
        }
        removed
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_verified_and_collected() {
        let d = tempfile::tempdir().unwrap();
        let mut s = ContentStore::open(d.path().join("content"), 10).unwrap();
        let a = sha256(b"hello");
        assert!(s.put(&a, b"hello"));
        assert_eq!(s.get(&a).as_deref(), Some(&b"hello"[..]));
        let b = sha256(b"too long!");
        assert!(!s.put(&b, b"too long!"), "over the bound");
        // A damaged copy is never returned.
        fs::write(s.dir().join(&a), b"hellO").unwrap();
        assert_eq!(s.get(&a), None);
        assert_eq!(s.get("../../etc/passwd"), None);
        assert_eq!(s.gc(&HashSet::new()), 1);
        assert!(s.put(&b, b"too long!"), "room again after gc");
    }
}
