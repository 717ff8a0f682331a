//! The persistent baseline: what every watched file looked like when last
//! seen, in `<state_dir>/fim/baseline`.
//!
//! On-disk layout: one JSON header line
//! `{"magic":"owlet-fim-baseline","version":1,"rules":[...],"entries":N,"sha256":HEX}`
//! followed by N JSON lines `[path, entry]`; `sha256` covers every byte
//! after the header line.
//!
//! Guarantees:
//! * crash-safe: written to a temporary file, fsynced, renamed over the old
//!   one, and the directory fsynced — a crash leaves the old or the new
//!   baseline, never a mix;
//! * a torn or corrupt file (bad header, checksum, count, or JSON) is
//!   detected and reported as [`LoadError::Corrupt`]; loading never panics;
//! * `rules` remembers which watch rules the baseline covered, so files of a
//!   rule added later are learned, not reported as created.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::{Entry, hex};

const MAGIC: &str = "owlet-fim-baseline";
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    magic: String,
    version: u32,
    rules: Vec<String>,
    entries: u64,
    sha256: String,
}

/// The baseline in memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Baseline {
    pub entries: BTreeMap<PathBuf, Entry>,
    /// Watch rules (configured path texts) the entries cover.
    pub rules: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no baseline yet")]
    Missing,
    #[error("baseline {path} is damaged ({reason}); it is rebuilt")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot read baseline {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Creates the directory (mode 0700: the baseline and stored contents are
/// copies of configuration files, secrets included).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

impl Baseline {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("baseline")
    }

    /// Loads `<dir>/baseline`.
    pub fn load(dir: &Path) -> Result<Baseline, LoadError> {
        let path = Self::path(dir);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(LoadError::Missing),
            Err(source) => return Err(LoadError::Io { path, source }),
        };
        let corrupt = |reason: String| LoadError::Corrupt {
            path: path.clone(),
            reason,
        };
        let mut reader = BufReader::new(file);
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(|e| corrupt(format!("unreadable header: {e}")))?;
        let header: Header =
            serde_json::from_str(&line).map_err(|e| corrupt(format!("bad header: {e}")))?;
        if header.magic != MAGIC || header.version != VERSION {
            return Err(corrupt(format!(
                "not a version {VERSION} baseline ({} v{})",
                header.magic, header.version
            )));
        }
        let mut hasher = Sha256::new();
        let mut entries = BTreeMap::new();
        let mut count = 0u64;
        loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| corrupt(format!("unreadable entry: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(line.as_bytes());
            let (p, e): (PathBuf, Entry) = serde_json::from_str(&line)
                .map_err(|e| corrupt(format!("entry {}: {e}", count + 1)))?;
            entries.insert(p, e);
            count += 1;
        }
        if count != header.entries {
            return Err(corrupt(format!(
                "{count} entries, the header says {}",
                header.entries
            )));
        }
        if hex(&hasher.finalize()) != header.sha256 {
            return Err(corrupt("checksum mismatch".into()));
        }
        Ok(Baseline {
            entries,
            rules: header.rules,
        })
    }

    /// Writes `<dir>/baseline` crash-safe (see the module doc).
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        create_private_dir(dir)?;
        let mut body = Vec::with_capacity(self.entries.len() * 256);
        for (p, e) in &self.entries {
            serde_json::to_writer(&mut body, &(p, e)).map_err(io::Error::other)?;
            body.push(b'\n');
        }
        let header = Header {
            magic: MAGIC.into(),
            version: VERSION,
            rules: self.rules.clone(),
            entries: self.entries.len() as u64,
            sha256: hex(&Sha256::digest(&body)),
        };
        let mut head = serde_json::to_vec(&header).map_err(io::Error::other)?;
        head.push(b'\n');
        write_private(&Self::path(dir), &[&head, &body], true)
    }
}

/// Writes `parts` to `path` through `path.tmp` (mode 0600) and a rename, so
/// readers see the old or the new file, never a part. With `durable`, the
/// file is fsynced before the rename and the directory after it. The
/// temporary file is removed on failure.
pub(crate) fn write_private(path: &Path, parts: &[&[u8]], durable: bool) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        for part in parts {
            f.write_all(part)?;
        }
        if durable {
            f.sync_all()?;
        }
        drop(f);
        fs::rename(&tmp, path)?;
        match (durable, path.parent()) {
            (true, Some(dir)) => File::open(dir)?.sync_all(),
            _ => Ok(()),
        }
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::FileType;

    fn sample() -> Baseline {
        let mut b = Baseline {
            rules: vec!["/etc".into()],
            ..Baseline::default()
        };
        for i in 0..3 {
            b.entries.insert(
                PathBuf::from(format!("/etc/f{i}")),
                Entry {
                    file_type: FileType::File,
                    size: i,
                    mode: 0o100644,
                    uid: 0,
                    gid: 0,
                    dev: 1,
                    inode: 10 + i,
                    mtime: 1,
                    mtime_nsec: 2,
                    ctime: 3,
                    ctime_nsec: 4,
                    sha256: "ab".repeat(32),
                    hash_skipped: String::new(),
                    symlink_target: String::new(),
                },
            );
        }
        b
    }

    #[test]
    fn round_trips() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(Baseline::load(d.path()), Err(LoadError::Missing)));
        sample().save(d.path()).unwrap();
        assert_eq!(Baseline::load(d.path()).unwrap(), sample());
    }

    #[test]
    fn torn_flipped_and_garbage_files_are_corrupt_not_panics() {
        let d = tempfile::tempdir().unwrap();
        sample().save(d.path()).unwrap();
        let path = Baseline::path(d.path());
        let good = fs::read(&path).unwrap();
        let mut cases: Vec<Vec<u8>> = Vec::new();
        // Torn at every length (a crash mid-write without the rename).
        for cut in (0..good.len()).step_by(7) {
            cases.push(good[..cut].to_vec());
        }
        // One flipped byte in the body (bit rot).
        let mut flipped = good.clone();
        let at = good.len() - 20;
        flipped[at] ^= 0x01;
        cases.push(flipped);
        cases.push(b"\xff\xfe garbage".to_vec());
        for (i, bytes) in cases.iter().enumerate() {
            fs::write(&path, bytes).unwrap();
            match Baseline::load(d.path()) {
                Err(LoadError::Corrupt { .. }) => {}
                other => panic!("case {i} ({} bytes): {other:?}", bytes.len()),
            }
        }
    }
}
