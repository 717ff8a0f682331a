//! The observed state of one path: `lstat` plus a streaming SHA-256 of the
//! content (of the target text, for a symlink).
//!
//! Guarantees: blocking (call it from a blocking thread, never an async
//! worker); never follows symlinks; never opens special files (a fifo
//! would block, a device could be huge or have side effects); reads at most
//! `max_hash_bytes` per file, paced by an [`IoBudget`]; a file that cannot
//! be read is still reported with its metadata and `hash_skipped` saying why.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What kind of thing a baseline entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileType {
    File,
    Symlink,
}

impl FileType {
    pub fn name(self) -> &'static str {
        match self {
            FileType::File => "file",
            FileType::Symlink => "symlink",
        }
    }
}

/// One file as last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub file_type: FileType,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub dev: u64,
    pub inode: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub ctime: i64,
    pub ctime_nsec: i64,
    /// Lower-case hex; "" when not hashed (see `hash_skipped`).
    pub sha256: String,
    /// "" or "too_large", "permission_denied", "vanished".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash_skipped: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub symlink_target: String,
}

impl Entry {
    /// Whether the metadata says the content cannot have changed (same
    /// inode, size and change time: any write moves ctime).
    pub fn same_metadata(&self, other: &Entry) -> bool {
        self.file_type == other.file_type
            && self.dev == other.dev
            && self.inode == other.inode
            && self.size == other.size
            && self.mtime == other.mtime
            && self.mtime_nsec == other.mtime_nsec
            && self.ctime == other.ctime
            && self.ctime_nsec == other.ctime_nsec
    }

    pub fn same_attributes(&self, other: &Entry) -> bool {
        self.mode == other.mode && self.uid == other.uid && self.gid == other.gid
    }
}

/// What is at a path now.
#[derive(Debug)]
pub enum Observed {
    /// A file or symlink; `content` holds the bytes when they were asked
    /// for and fit `max_content`.
    Entry {
        entry: Entry,
        content: Option<Vec<u8>>,
    },
    /// Nothing (deleted, or never there).
    Gone,
    /// A directory (walked, not reported).
    Dir,
    /// A fifo, socket or device: skipped, with its kind.
    Special(&'static str),
    /// `lstat` itself failed (e.g. permission denied on the directory).
    Error(io::Error),
}

/// Limits of one observation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Files above this are not hashed (`hash_skipped = "too_large"`).
    pub max_hash_bytes: u64,
    /// Content up to this size is returned for diffs (0: never).
    pub max_content: u64,
}

/// The smallest debt [`IoBudget::take`] sleeps off.
const MIN_SLEEP: Duration = Duration::from_millis(10);

/// Paces reads to a byte rate (token bucket with one second of burst).
#[derive(Debug)]
pub struct IoBudget {
    per_sec: u64,
    tokens: f64,
    last: Instant,
}

impl IoBudget {
    /// `per_sec == 0` means unlimited.
    pub fn new(per_sec: u64) -> Self {
        Self {
            per_sec,
            tokens: per_sec as f64,
            last: Instant::now(),
        }
    }

    pub fn unlimited() -> Self {
        Self::new(0)
    }

    /// Takes `bytes`, sleeping when the budget is spent.
    pub fn take(&mut self, bytes: u64) {
        if self.per_sec == 0 {
            return;
        }
        let now = Instant::now();
        let rate = self.per_sec as f64;
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * rate).min(rate);
        self.last = now;
        self.tokens -= bytes as f64;
        // Sleep a debt off only once it is worth a sleep: each sleep
        // overshoots, and thousands of tiny ones (one per 4 KiB read) held
        // the rate at half the budget. The time really slept is credited at
        // the next call, so the overshoot is not lost either.
        if self.tokens < -rate * MIN_SLEEP.as_secs_f64() {
            std::thread::sleep(Duration::from_secs_f64(-self.tokens / rate));
        }
    }
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// SHA-256 of a byte string, hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Observes `path` now. `previous` with identical metadata lets a scan skip
/// hashing (`trust_metadata`); event handling always hashes, because two
/// writes within one clock tick leave the times unchanged.
pub fn observe(
    path: &Path,
    previous: Option<&Entry>,
    trust_metadata: bool,
    limits: Limits,
    budget: &mut IoBudget,
) -> Observed {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Observed::Gone,
        // A path component became a file (e.g. a watched dir replaced).
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Observed::Gone,
        Err(e) => return Observed::Error(e),
    };
    let ft = meta.file_type();
    if ft.is_dir() {
        return Observed::Dir;
    }
    if ft.is_fifo() {
        return Observed::Special("fifo");
    }
    if ft.is_socket() {
        return Observed::Special("socket");
    }
    if ft.is_block_device() || ft.is_char_device() {
        return Observed::Special("device");
    }
    let mut entry = Entry {
        file_type: if ft.is_symlink() {
            FileType::Symlink
        } else {
            FileType::File
        },
        size: meta.size(),
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        dev: meta.dev(),
        inode: meta.ino(),
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec(),
        ctime: meta.ctime(),
        ctime_nsec: meta.ctime_nsec(),
        sha256: String::new(),
        hash_skipped: String::new(),
        symlink_target: String::new(),
    };
    if ft.is_symlink() {
        match fs::read_link(path) {
            Ok(target) => {
                let text = target.as_os_str().as_encoded_bytes();
                entry.sha256 = sha256(text);
                entry.symlink_target = target.to_string_lossy().into_owned();
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Observed::Gone,
            Err(_) => entry.hash_skipped = "permission_denied".into(),
        }
        return Observed::Entry {
            entry,
            content: None,
        };
    }
    if trust_metadata
        && let Some(prev) = previous
        && prev.same_metadata(&entry)
        && prev.hash_skipped.is_empty()
    {
        entry.sha256 = prev.sha256.clone();
        return Observed::Entry {
            entry,
            content: None,
        };
    }
    if entry.size > limits.max_hash_bytes {
        entry.hash_skipped = "too_large".into();
        return Observed::Entry {
            entry,
            content: None,
        };
    }
    match hash_file(path, limits, budget) {
        Ok((digest, content)) => {
            entry.sha256 = digest;
            Observed::Entry { entry, content }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Observed::Gone,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            entry.hash_skipped = "permission_denied".into();
            Observed::Entry {
                entry,
                content: None,
            }
        }
        Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
            entry.hash_skipped = "too_large".into();
            Observed::Entry {
                entry,
                content: None,
            }
        }
        Err(_) => {
            entry.hash_skipped = "vanished".into();
            Observed::Entry {
                entry,
                content: None,
            }
        }
    }
}

/// Streams the file through SHA-256; keeps the bytes when they fit
/// `max_content`. A file that grows past `max_hash_bytes` while being read
/// is `FileTooLarge`.
fn hash_file(
    path: &Path,
    limits: Limits,
    budget: &mut IoBudget,
) -> io::Result<(String, Option<Vec<u8>>)> {
    // O_NONBLOCK: a path swapped for a fifo between lstat and open must not
    // hang the thread.
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(path)?
    };
    hash_reader(file, limits, budget)
}

fn hash_reader(
    mut file: File,
    limits: Limits,
    budget: &mut IoBudget,
) -> io::Result<(String, Option<Vec<u8>>)> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no longer a regular file",
        ));
    }
    let mut hasher = Sha256::new();
    let mut content = Some(Vec::new());
    // Most configuration files are small: no 64 KiB buffer to zero for each.
    let size = usize::try_from(meta.len()).unwrap_or(usize::MAX);
    let mut buf = vec![0u8; size.saturating_add(1).clamp(512, 64 * 1024)];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        if total > limits.max_hash_bytes {
            return Err(io::Error::from(io::ErrorKind::FileTooLarge));
        }
        budget.take(n as u64);
        hasher.update(&buf[..n]);
        if let Some(c) = content.as_mut() {
            if total <= limits.max_content {
                c.extend_from_slice(&buf[..n]);
            } else {
                content = None;
            }
        }
    }
    Ok((hex(&hasher.finalize()), content))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_hash_bytes: 1 << 20,
        max_content: 1 << 10,
    };

    fn entry(p: &Path) -> (Entry, Option<Vec<u8>>) {
        match observe(p, None, false, LIMITS, &mut IoBudget::unlimited()) {
            Observed::Entry { entry, content } => (entry, content),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hashes_files_and_symlink_targets_without_following() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::write(&f, b"abc").unwrap();
        let (e, content) = entry(&f);
        assert_eq!(
            e.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(content.as_deref(), Some(&b"abc"[..]));
        let l = d.path().join("l");
        std::os::unix::fs::symlink("f", &l).unwrap();
        let (e, _) = entry(&l);
        assert_eq!(e.file_type, FileType::Symlink);
        assert_eq!(e.symlink_target, "f");
        assert_eq!(e.sha256, sha256(b"f"));
    }

    #[test]
    fn special_and_large_files_are_not_read() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        assert!(matches!(
            observe(&fifo, None, false, LIMITS, &mut IoBudget::unlimited()),
            Observed::Special("fifo")
        ));
        let big = d.path().join("big");
        fs::write(&big, vec![b'x'; (LIMITS.max_hash_bytes + 1) as usize]).unwrap();
        let (e, content) = entry(&big);
        assert_eq!(e.hash_skipped, "too_large");
        assert!(e.sha256.is_empty() && content.is_none());
        let mid = d.path().join("mid");
        fs::write(&mid, vec![b'x'; 4096]).unwrap();
        let (e, content) = entry(&mid);
        assert!(
            !e.sha256.is_empty() && content.is_none(),
            "no content above max_content"
        );
    }
}
