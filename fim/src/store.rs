//! Content-addressed store of previous text contents, redacted, so that a
//! change can be diffed against what the file held before — across agent
//! restarts.
//!
//! It keeps [`RedactedText`] only: no secret the redactor recognises rests
//! here, and files that exist to hold secrets ([`crate::secret_file`]) are
//! never offered to it.
//!
//! Layout: one append-only pack, `<state_dir>/fim/content/pack` (mode 0600
//! in a 0700 directory), of records
//! `"OWLR" | len: u32 LE | key: 32 bytes | check: 32 bytes | text`, where
//! `key` is the SHA-256 of the file's original content (the baseline's
//! hash) and `check` the SHA-256 of the stored text. One file instead of
//! one per content: a first baseline of 100,000 files would otherwise
//! create 100,000 more.
//!
//! Guarantees: bounded by `max_bytes` (a content that does not fit is not
//! kept; its file then gets no diff on its next change); a text is only
//! returned when it still hashes to its check (a damaged copy means no
//! diff, never a wrong one); a torn last record (crash) is cut off when the
//! pack is opened; [`ContentStore::gc`] compacts the pack (write new,
//! rename) once contents the baseline no longer refers to take as much room
//! as the live ones. A pack written by an earlier version (`"OWLC"`
//! records: unredacted copies) is overwritten with zeros and emptied when
//! opened ([`ContentStore::wiped_legacy_bytes`] says how much).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;

use crate::baseline::{create_private_dir, write_private};
use crate::redacted::RedactedText;
use crate::state::{hex, sha256};

const MAGIC: &[u8; 4] = b"OWLR";
/// Records of the unredacted format this replaces.
const LEGACY_MAGIC: &[u8; 4] = b"OWLC";
const HEADER: u64 = 4 + 4 + 32 + 32;

/// Where a stored text is: (offset of the text, its length, its SHA-256).
type Located = (u64, u32, [u8; 32]);

#[derive(Debug)]
pub struct ContentStore {
    dir: PathBuf,
    pack: File,
    /// the original content's SHA-256 -> where its text is (raw bytes, not
    /// hex: one entry per stored file, so 32 bytes instead of a `String`)
    index: HashMap<[u8; 32], Located>,
    len: u64,
    max_bytes: u64,
    wiped_legacy: u64,
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
        let wiped_legacy = wipe_legacy(&pack)?;
        let mut index = HashMap::new();
        let mut reader = BufReader::new(&pack);
        let mut at = 0u64;
        let size = pack.metadata()?.len();
        loop {
            let mut head = [0u8; HEADER as usize];
            if reader.read_exact(&mut head).is_err() || &head[..4] != MAGIC {
                break;
            }
            let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
            let skipped = reader.seek_relative(i64::from(len));
            if skipped.is_err() || at + HEADER + u64::from(len) > size {
                break;
            }
            let mut check = [0u8; 32];
            check.copy_from_slice(&head[40..72]);
            let mut key = [0u8; 32];
            key.copy_from_slice(&head[8..40]);
            index.insert(key, (at + HEADER, len, check));
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
            wiped_legacy,
        })
    }

    /// Bytes of an earlier version's unredacted pack overwritten and
    /// removed when this store was opened (0 when there was none).
    pub fn wiped_legacy_bytes(&self) -> u64 {
        self.wiped_legacy
    }

    /// The text stored for the content whose hash is `digest`, if present
    /// and intact.
    pub fn get(&self, digest: &str) -> Option<RedactedText> {
        self.get_key(&unhex(digest)?)
    }

    fn get_key(&self, key: &[u8; 32]) -> Option<RedactedText> {
        let &(offset, len, check) = self.index.get(key)?;
        let mut bytes = vec![0u8; len as usize];
        self.pack.read_exact_at(&mut bytes, offset).ok()?;
        if sha256(&bytes) != hex(&check) {
            return None;
        }
        String::from_utf8(bytes).ok().map(RedactedText::from_store)
    }

    /// Keeps `text` for the content whose hash is `digest`, unless the
    /// store is full. Returns whether it is stored.
    pub fn put(&mut self, digest: &str, text: &RedactedText) -> bool {
        let Some(key) = unhex(digest) else {
            return false;
        };
        if self.index.contains_key(&key) {
            return true;
        }
        let bytes = text.as_str().as_bytes();
        let Ok(len) = u32::try_from(bytes.len()) else {
            return false;
        };
        if self.len + HEADER + u64::from(len) > self.max_bytes {
            return false;
        }
        let Some(check) = unhex(&sha256(bytes)) else {
            return false;
        };
        let record = record(&key, &check, bytes);
        // Not fsynced: a content lost in a crash only costs one diff.
        let written = self
            .pack
            .seek(SeekFrom::Start(self.len))
            .and_then(|_| self.pack.write_all(&record));
        if written.is_err() {
            let _ = self.pack.set_len(self.len);
            return false;
        }
        self.index.insert(key, (self.len + HEADER, len, check));
        self.len += record.len() as u64;
        true
    }

    /// Forgets every content not in `keep`; compacts the pack once the
    /// dead records take as much room as the live ones. Returns how many
    /// contents were forgotten.
    pub fn gc(&mut self, keep: &dyn Fn(&[u8; 32]) -> bool) -> usize {
        let before = self.index.len();
        self.index.retain(|d, _| keep(d));
        let live: u64 = self
            .index
            .values()
            .map(|&(_, l, _)| HEADER + u64::from(l))
            .sum();
        if self.len - live > live.max(64 * 1024) || (live == 0 && self.len > 0) {
            let _ = self.compact();
        }
        before - self.index.len()
    }

    fn compact(&mut self) -> io::Result<()> {
        let mut pack = Vec::new();
        let mut index = HashMap::new();
        let mut live: Vec<([u8; 32], Located)> = self.index.iter().map(|(d, &v)| (*d, v)).collect();
        live.sort_by_key(|(_, (offset, _, _))| *offset);
        for (key, (_, _, check)) in live {
            let Some(text) = self.get_key(&key) else {
                continue;
            };
            let bytes = text.as_str().as_bytes();
            let len = bytes.len() as u32;
            index.insert(key, (pack.len() as u64 + HEADER, len, check));
            pack.extend_from_slice(&record(&key, &check, bytes));
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

/// One framed record.
fn record(key: &[u8; 32], check: &[u8; 32], text: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(HEADER as usize + text.len());
    r.extend_from_slice(MAGIC);
    r.extend_from_slice(&(text.len() as u32).to_le_bytes());
    r.extend_from_slice(key);
    r.extend_from_slice(check);
    r.extend_from_slice(text);
    r
}

/// An earlier version kept unredacted copies: overwrite them with zeros,
/// make that durable, then empty the file. Returns the bytes wiped.
fn wipe_legacy(pack: &File) -> io::Result<u64> {
    let mut magic = [0u8; 4];
    if pack.read_exact_at(&mut magic, 0).is_err() || &magic != LEGACY_MAGIC {
        return Ok(0);
    }
    let size = pack.metadata()?.len();
    let zeros = vec![0u8; 64 * 1024];
    let mut at = 0;
    while at < size {
        let n = (size - at).min(zeros.len() as u64) as usize;
        pack.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    pack.sync_data()?;
    pack.set_len(0)?;
    pack.sync_all()?;
    Ok(size)
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
    use crate::redact::Redactor;
    use crate::redacted::TextRedactor;
    use std::fs;

    fn text(s: &str) -> RedactedText {
        TextRedactor::new(Redactor::new(&[]).unwrap(), [1; 32])
            .redact(std::path::Path::new("/etc/app.conf"), s.as_bytes())
            .unwrap()
    }

    #[test]
    fn bounded_verified_collected_and_reopened() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("content");
        let mut s = ContentStore::open(dir.clone(), 2 * HEADER + 10).unwrap();
        let a = sha256(b"hello");
        assert!(s.put(&a, &text("hello")));
        assert_eq!(s.get(&a), Some(text("hello")));
        let b = sha256(b"too long!");
        assert!(!s.put(&b, &text("too long!")), "over the bound");
        assert_eq!(s.get("../../etc/passwd"), None);
        assert!(!s.put("zz", &text("x")), "not a digest");
        // Reopened (a restart): still there.
        drop(s);
        let mut s = ContentStore::open(dir.clone(), 2 * HEADER + 10).unwrap();
        assert_eq!(s.get(&a), Some(text("hello")));
        // Collected and compacted: room again.
        assert_eq!(s.gc(&|_| false), 1);
        assert_eq!(s.len_bytes(), 0);
        assert!(s.put(&b, &text("too long!")));
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
        assert!(s.put(&c, &text("third")));
        drop(s);
        let full = fs::read(&pack).unwrap();
        fs::write(&pack, &full[..full.len() - 2]).unwrap();
        let s = ContentStore::open(dir, 1 << 20).unwrap();
        assert_eq!(s.get(&c), None);
        assert_eq!(s.len_bytes(), full.len() as u64 - HEADER - 5);
    }

    #[test]
    fn compaction_keeps_live_texts() {
        let d = tempfile::tempdir().unwrap();
        let mut s = ContentStore::open(d.path().to_path_buf(), 1 << 20).unwrap();
        let keep = sha256(b"keep");
        assert!(s.put(&keep, &text("keep me\n")));
        for i in 0..40 {
            let body = format!("{i}{}\n", "x".repeat(4000));
            assert!(s.put(&sha256(body.as_bytes()), &text(&body)));
        }
        s.gc(&|d| hex(d) == keep);
        assert_eq!(s.len_bytes(), HEADER + 8, "compacted");
        assert_eq!(s.get(&keep), Some(text("keep me\n")));
        drop(s);
        let s = ContentStore::open(d.path().to_path_buf(), 1 << 20).unwrap();
        assert_eq!(s.get(&keep), Some(text("keep me\n")));
    }

    #[test]
    fn an_earlier_versions_unredacted_pack_is_wiped() {
        let d = tempfile::tempdir().unwrap();
        let pack = d.path().join("pack");
        let secret = b"password = hunter2-planted\n";
        let mut legacy = Vec::new();
        legacy.extend_from_slice(LEGACY_MAGIC);
        legacy.extend_from_slice(&(secret.len() as u32).to_le_bytes());
        legacy.extend_from_slice(&[0u8; 32]);
        legacy.extend_from_slice(secret);
        fs::write(&pack, &legacy).unwrap();
        let s = ContentStore::open(d.path().to_path_buf(), 1 << 20).unwrap();
        assert_eq!(s.wiped_legacy_bytes(), legacy.len() as u64);
        assert_eq!(s.len_bytes(), 0);
        assert_eq!(fs::read(&pack).unwrap(), b"");
    }

    #[test]
    fn stored_text_is_redacted() {
        let d = tempfile::tempdir().unwrap();
        let mut s = ContentStore::open(d.path().to_path_buf(), 1 << 20).unwrap();
        let raw = "user = bob\npassword = Planted-S3cret\n";
        assert!(s.put(&sha256(raw.as_bytes()), &text(raw)));
        drop(s);
        let pack = fs::read(d.path().join("pack")).unwrap();
        let pack = String::from_utf8_lossy(&pack);
        assert!(pack.contains("user = bob"));
        assert!(!pack.contains("Planted-S3cret"), "{pack}");
    }
}
