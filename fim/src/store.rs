//! Content-addressed store of previous text contents, so that a change can
//! be diffed against what the file held before — across agent restarts.
//!
//! Layout: one append-only pack, `<state_dir>/fim/content/pack` (mode 0600
//! in a 0700 directory: these are copies of configuration files, secrets
//! included), of records `"OWLC" | len: u32 LE | sha256: 32 bytes | bytes`.
//! One file instead of one per content: a first baseline of 100,000 files
//! would otherwise create 100,000 more.
//!
//! Guarantees: bounded by `max_bytes` (a content that does not fit is not
//! kept; its file then gets no diff on its next change); a content is only
//! returned when its bytes still hash to its name (a damaged copy means no
//! diff, never a wrong one); a torn last record (crash) is cut off when the
//! pack is opened; [`ContentStore::gc`] compacts the pack (write new,
//! rename) once contents the baseline no longer refers to take as much room
//! as the live ones.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;

use crate::baseline::{create_private_dir, write_private};
use crate::state::{hex, sha256};

const MAGIC: &[u8; 4] = b"OWLC";
const HEADER: u64 = 4 + 4 + 32;

#[derive(Debug)]
pub struct ContentStore {
    dir: PathBuf,
    pack: File,
    /// hex digest -> (offset of the bytes, length)
    index: HashMap<String, (u64, u32)>,
    len: u64,
    max_bytes: u64,
}

impl ContentStore {
    fn pack_path(dir: &std::path::Path) -> PathBuf {
        dir.join("pack")
    }

    /// Opens (creating) the store and indexes the pack.
    pub fn open(dir: PathBuf, max_bytes: u64) -> io::Result<ContentStore> {
        create_private_dir(&dir)?;
        let path = Self::pack_path(&dir);
        let pack = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)?;
        let mut index = HashMap::new();
        let mut reader = BufReader::new(&pack);
        let mut at = 0u64;
        loop {
            let mut head = [0u8; HEADER as usize];
            if reader.read_exact(&mut head).is_err() || &head[..4] != MAGIC {
                break;
            }
            let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
            let skipped = reader.seek_relative(i64::from(len));
            if skipped.is_err() || at + HEADER + u64::from(len) > pack.metadata()?.len() {
                break;
            }
            index.insert(hex(&head[8..]), (at + HEADER, len));
            at += HEADER + u64::from(len);
        }
        drop(reader);
        // Cut a torn tail so appends start on a record boundary.
        pack.set_len(at)?;
        Ok(ContentStore {
            dir,
            pack,
            index,
            len: at,
            max_bytes,
        })
    }

    /// The bytes stored under `digest`, if present and intact.
    pub fn get(&self, digest: &str) -> Option<Vec<u8>> {
        let &(offset, len) = self.index.get(digest)?;
        let mut bytes = vec![0u8; len as usize];
        self.pack.read_exact_at(&mut bytes, offset).ok()?;
        (sha256(&bytes) == digest).then_some(bytes)
    }

    /// Keeps `bytes` (whose hash is `digest`) unless the store is full.
    /// Returns whether it is stored.
    pub fn put(&mut self, digest: &str, bytes: &[u8]) -> bool {
        if self.index.contains_key(digest) {
            return true;
        }
        let (Ok(len), Some(raw)) = (u32::try_from(bytes.len()), unhex(digest)) else {
            return false;
        };
        if self.len + HEADER + u64::from(len) > self.max_bytes {
            return false;
        }
        let mut record = Vec::with_capacity(HEADER as usize + bytes.len());
        record.extend_from_slice(MAGIC);
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&raw);
        record.extend_from_slice(bytes);
        // Not fsynced: a content lost in a crash only costs one diff.
        let written = self
            .pack
            .seek(SeekFrom::Start(self.len))
            .and_then(|_| self.pack.write_all(&record));
        if written.is_err() {
            let _ = self.pack.set_len(self.len);
            return false;
        }
        self.index
            .insert(digest.to_string(), (self.len + HEADER, len));
        self.len += record.len() as u64;
        true
    }

    /// Forgets every content not in `keep`; compacts the pack once the
    /// dead records take as much room as the live ones. Returns how many
    /// contents were forgotten.
    pub fn gc(&mut self, keep: &HashSet<&str>) -> usize {
        let before = self.index.len();
        self.index.retain(|d, _| keep.contains(d.as_str()));
        let live: u64 = self
            .index
            .values()
            .map(|&(_, l)| HEADER + u64::from(l))
            .sum();
        if self.len - live > live.max(64 * 1024) || (live == 0 && self.len > 0) {
            let _ = self.compact();
        }
        before - self.index.len()
    }

    fn compact(&mut self) -> io::Result<()> {
        let mut pack = Vec::new();
        let mut index = HashMap::new();
        let mut live: Vec<(String, (u64, u32))> =
            self.index.iter().map(|(d, &v)| (d.clone(), v)).collect();
        live.sort_by_key(|(_, (offset, _))| *offset);
        for (digest, _) in live {
            let (Some(bytes), Some(raw)) = (self.get(&digest), unhex(&digest)) else {
                continue;
            };
            let len = bytes.len() as u32;
            pack.extend_from_slice(MAGIC);
            pack.extend_from_slice(&len.to_le_bytes());
            pack.extend_from_slice(&raw);
            index.insert(digest, (pack.len() as u64, len));
            pack.extend_from_slice(&bytes);
        }
        let path = Self::pack_path(&self.dir);
        write_private(&path, &[&pack], false)?;
        self.pack = OpenOptions::new().read(true).write(true).open(&path)?;
        self.len = pack.len() as u64;
        self.index = index;
        Ok(())
    }

    pub fn len_bytes(&self) -> u64 {
        self.len
    }
}

fn unhex(digest: &str) -> Option<[u8; 32]> {
    if digest.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(digest.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn bounded_verified_collected_and_reopened() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("content");
        let mut s = ContentStore::open(dir.clone(), 2 * HEADER + 10).unwrap();
        let a = sha256(b"hello");
        assert!(s.put(&a, b"hello"));
        assert_eq!(s.get(&a).as_deref(), Some(&b"hello"[..]));
        let b = sha256(b"too long!");
        assert!(!s.put(&b, b"too long!"), "over the bound");
        assert_eq!(s.get("../../etc/passwd"), None);
        assert!(!s.put("zz", b"x"), "not a digest");
        // Reopened (a restart): still there.
        drop(s);
        let mut s = ContentStore::open(dir.clone(), 2 * HEADER + 10).unwrap();
        assert_eq!(s.get(&a).as_deref(), Some(&b"hello"[..]));
        // Collected and compacted: room again.
        assert_eq!(s.gc(&HashSet::new()), 1);
        assert_eq!(s.len_bytes(), 0);
        assert!(s.put(&b, b"too long!"));
        // A damaged copy is never returned.
        let pack = dir.join("pack");
        let mut bytes = fs::read(&pack).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        fs::write(&pack, &bytes).unwrap();
        let s = ContentStore::open(dir.clone(), 1 << 20).unwrap();
        assert_eq!(s.get(&b), None);
        // A torn tail is cut off; earlier records survive.
        drop(s);
        let mut s = ContentStore::open(dir.clone(), 1 << 20).unwrap();
        let c = sha256(b"third");
        assert!(s.put(&c, b"third"));
        drop(s);
        let full = fs::read(&pack).unwrap();
        fs::write(&pack, &full[..full.len() - 2]).unwrap();
        let s = ContentStore::open(dir, 1 << 20).unwrap();
        assert_eq!(s.get(&c), None);
        assert_eq!(s.len_bytes(), full.len() as u64 - HEADER - 5);
    }
}
