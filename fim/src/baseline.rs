//! The persistent baseline: what every watched file looked like when last
//! seen, in `<state_dir>/fim/baseline`.
//!
//! On-disk layout (version 2, little-endian), about 80 bytes a file:
//! * a 64-byte header: magic `OWLETFIM`, version `u32`, 4 reserved bytes,
//!   the entry count `u64`, the body's length `u64`, and the SHA-256 of the
//!   body (32 bytes);
//! * the body: the rules (a varint count, then each as varint length +
//!   UTF-8), then the entries in path order, each: the path front-coded
//!   against the previous one (varint bytes shared, varint length of the
//!   rest, the rest), a flags byte, the SHA-256 (32 bytes, only when
//!   hashed), size, mode, uid, gid, dev, inode, mtime, mtime_nsec, ctime,
//!   ctime_nsec (varints, zigzag for the signed times, `u32` for mode and
//!   the nanoseconds), and the symlink target (varint length + UTF-8, only
//!   when the flags say so).
//!
//! Version 1 was JSON lines (29 MB for 100,000 files); it is still read, and
//! the engine rewrites it in version 2 at its next save.
//!
//! Guarantees:
//! * crash-safe: written to a temporary file, fsynced, renamed over the old
//!   one, and the directory fsynced — a crash leaves the old or the new
//!   baseline, never a mix;
//! * a torn or corrupt file (bad header, length, checksum, count, order,
//!   or field) is detected and reported as [`LoadError::Corrupt`]; loading
//!   never panics and never allocates more than the file's size suggests;
//! * `rules` remembers which watch rules the baseline covered, so files of a
//!   rule added later are learned, not reported as created.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::entries::{Entries, HASHED, Meta, PackError, STORED_FLAGS};
use crate::state::{Entry, hex};

const MAGIC: &[u8; 8] = b"OWLETFIM";
const VERSION: u32 = 2;
const HEADER: usize = 64;
/// Flags byte on disk: [`STORED_FLAGS`] plus this when a target follows.
const HAS_TARGET: u8 = 0x10;
/// The fewest bytes one entry takes in the body (for capacity bounds).
const MIN_ENTRY: usize = 2 + 1 + 14;

const JSON_MAGIC: &str = "owlet-fim-baseline";
const JSON_VERSION: u32 = 1;

#[derive(Debug, Deserialize)]
struct JsonHeader {
    magic: String,
    version: u32,
    rules: Vec<String>,
    entries: u64,
    sha256: String,
}

/// The baseline in memory.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    pub entries: Entries,
    /// Watch rules (configured path texts) the entries cover.
    pub rules: Vec<String>,
    /// Read from a version 1 (JSON) file: to be rewritten.
    pub legacy: bool,
}

impl PartialEq for Baseline {
    /// Same entries and rules (where it was read from aside).
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries && self.rules == other.rules
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no baseline yet")]
    Missing,
    #[error("baseline {path} is damaged ({reason}); it is rebuilt")]
    Corrupt { path: PathBuf, reason: Damage },
    #[error("cannot read baseline {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// What is wrong with a damaged baseline file.
#[derive(Debug, thiserror::Error)]
pub enum Damage {
    #[error("not an owlet baseline (no OWLETFIM header)")]
    NoHeader,
    #[error("version {0}, this agent reads {VERSION} (and 1)")]
    Version(u32),
    #[error("{body} body bytes, the header says {header}")]
    BodyLength { body: usize, header: u64 },
    #[error("checksum mismatch")]
    Checksum,
    #[error("truncated at byte {0}")]
    Truncated(usize),
    #[error("overlong number at byte {0}")]
    OverlongNumber(usize),
    #[error("number too large at byte {0}")]
    NumberTooLarge(usize),
    #[error("length too large")]
    LengthTooLarge,
    #[error("text not UTF-8 before byte {0}")]
    NotUtf8(usize),
    #[error("entry count too large")]
    CountTooLarge,
    #[error("{count} entries cannot fit {body} bytes")]
    CountPastBody { count: usize, body: usize },
    #[error("entry {entry}: {problem}")]
    Entry { entry: usize, problem: EntryDamage },
    #[error("{0} bytes after the last entry")]
    Trailing(usize),
    /// Version 1 (JSON lines): the header line cannot be read.
    #[error("unreadable header: {0}")]
    JsonHeaderUnreadable(io::Error),
    #[error("bad header: {0}")]
    JsonHeader(serde_json::Error),
    #[error("not a version {JSON_VERSION} baseline ({magic} v{version})")]
    JsonVersion { magic: String, version: u32 },
    #[error("unreadable entry: {0}")]
    JsonEntryUnreadable(io::Error),
    #[error("entry {entry}: {source}")]
    JsonEntry {
        entry: usize,
        source: serde_json::Error,
    },
    #[error("entry {entry}: {source}")]
    JsonMeta { entry: usize, source: PackError },
    #[error("{found} entries, the header says {header}")]
    EntryCount { found: usize, header: u64 },
}

/// What is wrong with one entry of a damaged baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EntryDamage {
    #[error("shares more than the previous path")]
    SharesTooMuch,
    #[error("empty path")]
    EmptyPath,
    #[error("out of order")]
    OutOfOrder,
    #[error("unknown flags")]
    UnknownFlags,
    #[error("nanoseconds out of range")]
    Nanoseconds,
    #[error("paths past 4 GiB")]
    PathsPast4GiB,
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

    /// Loads `<dir>/baseline` (version 2, or version 1 JSON).
    pub fn load(dir: &Path) -> Result<Baseline, LoadError> {
        let path = Self::path(dir);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(LoadError::Missing),
            Err(source) => return Err(LoadError::Io { path, source }),
        };
        let mut first = [0u8; 1];
        let n = file.read(&mut first).map_err(|source| LoadError::Io {
            path: path.clone(),
            source,
        })?;
        let corrupt = |reason: Damage| LoadError::Corrupt {
            path: path.clone(),
            reason,
        };
        if n == 1 && first[0] == b'{' {
            let file = File::open(&path).map_err(|source| LoadError::Io {
                path: path.clone(),
                source,
            })?;
            return load_json(file).map_err(corrupt);
        }
        let bytes = fs::read(&path).map_err(|source| LoadError::Io {
            path: path.clone(),
            source,
        })?;
        decode(&bytes).map_err(corrupt)
    }

    /// Writes `<dir>/baseline` crash-safe (see the module doc), streaming:
    /// no copy of the whole body in memory.
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        create_private_dir(dir)?;
        write_private_with(&Self::path(dir), true, |file| {
            file.write_all(&[0u8; HEADER])?;
            let mut body = Body {
                out: BufWriter::with_capacity(64 * 1024, &mut *file),
                hasher: Sha256::new(),
                len: 0,
            };
            encode(self, &mut body)?;
            let Body {
                out, hasher, len, ..
            } = body;
            let file = out.into_inner().map_err(|e| e.into_error())?;
            let mut head = [0u8; HEADER];
            head[..8].copy_from_slice(MAGIC);
            head[8..12].copy_from_slice(&VERSION.to_le_bytes());
            head[16..24].copy_from_slice(&(self.entries.len() as u64).to_le_bytes());
            head[24..32].copy_from_slice(&len.to_le_bytes());
            head[32..].copy_from_slice(&hasher.finalize());
            file.write_all_at(&head, 0)
        })
    }
}

/// The body's writer: counts and hashes what it writes.
struct Body<W: Write> {
    out: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Body<W> {
    fn bytes(&mut self, b: &[u8]) -> io::Result<()> {
        self.hasher.update(b);
        self.len += b.len() as u64;
        self.out.write_all(b)
    }

    fn varint(&mut self, mut v: u64) -> io::Result<()> {
        let mut buf = [0u8; 10];
        let mut n = 0;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                buf[n] = byte;
                n += 1;
                break;
            }
            buf[n] = byte | 0x80;
            n += 1;
        }
        self.bytes(&buf[..n])
    }

    fn signed(&mut self, v: i64) -> io::Result<()> {
        self.varint(((v << 1) ^ (v >> 63)) as u64)
    }

    fn text(&mut self, b: &[u8]) -> io::Result<()> {
        self.varint(b.len() as u64)?;
        self.bytes(b)
    }
}

fn encode<W: Write>(b: &Baseline, out: &mut Body<W>) -> io::Result<()> {
    out.varint(b.rules.len() as u64)?;
    for r in &b.rules {
        out.text(r.as_bytes())?;
    }
    let mut prev: &[u8] = &[];
    for (path, m, target) in b.entries.iter_meta() {
        let p = path.as_os_str().as_bytes();
        let shared = prev.iter().zip(p).take_while(|(a, b)| a == b).count();
        out.varint(shared as u64)?;
        out.text(&p[shared..])?;
        prev = p;
        let mut flags = m.flags & STORED_FLAGS;
        if !target.is_empty() {
            flags |= HAS_TARGET;
        }
        out.bytes(&[flags])?;
        if let Some(h) = m.hash() {
            out.bytes(h)?;
        }
        out.varint(m.size)?;
        out.bytes(&m.mode.to_le_bytes())?;
        out.varint(u64::from(m.uid))?;
        out.varint(u64::from(m.gid))?;
        out.varint(m.dev)?;
        out.varint(m.inode)?;
        out.signed(m.mtime)?;
        out.bytes(&m.mtime_nsec.to_le_bytes())?;
        out.signed(m.ctime)?;
        out.bytes(&m.ctime_nsec.to_le_bytes())?;
        if !target.is_empty() {
            out.text(target.as_bytes())?;
        }
    }
    Ok(())
}

/// Reads the body, every read bounds-checked.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Damage> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(Damage::Truncated(self.at))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Damage> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn varint(&mut self) -> Result<u64, Damage> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let [byte] = self.array::<1>()?;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Damage::OverlongNumber(self.at))
    }

    fn signed(&mut self) -> Result<i64, Damage> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn u32(&mut self) -> Result<u32, Damage> {
        self.array::<4>().map(u32::from_le_bytes)
    }

    fn small(&mut self) -> Result<u32, Damage> {
        u32::try_from(self.varint()?).map_err(|_| Damage::NumberTooLarge(self.at))
    }

    fn len(&mut self) -> Result<usize, Damage> {
        usize::try_from(self.varint()?).map_err(|_| Damage::LengthTooLarge)
    }

    fn text(&mut self) -> Result<&'a str, Damage> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| Damage::NotUtf8(self.at))
    }
}

fn decode(bytes: &[u8]) -> Result<Baseline, Damage> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(Damage::NoHeader);
    }
    let word = |at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(a)
    };
    let mut v = [0u8; 4];
    v.copy_from_slice(&bytes[8..12]);
    let version = u32::from_le_bytes(v);
    if version != VERSION {
        return Err(Damage::Version(version));
    }
    let count = word(16);
    let body = &bytes[HEADER..];
    if word(24) != body.len() as u64 {
        return Err(Damage::BodyLength {
            body: body.len(),
            header: word(24),
        });
    }
    if Sha256::digest(body).as_slice() != &bytes[32..HEADER] {
        return Err(Damage::Checksum);
    }
    let mut c = Cursor { b: body, at: 0 };
    let rules_n = c.len()?;
    let mut rules = Vec::with_capacity(rules_n.min(body.len()));
    for _ in 0..rules_n {
        rules.push(c.text()?.to_string());
    }
    let count = usize::try_from(count).map_err(|_| Damage::CountTooLarge)?;
    if count > body.len() / MIN_ENTRY {
        return Err(Damage::CountPastBody {
            count,
            body: body.len(),
        });
    }
    let mut entries = Entries::from_sorted(count, 0, std::iter::empty());
    let (mut prev, mut path): (Vec<u8>, Vec<u8>) = (Vec::new(), Vec::new());
    for i in 0..count {
        let bad = |problem: EntryDamage| Damage::Entry {
            entry: i + 1,
            problem,
        };
        let shared = c.len()?;
        if shared > prev.len() {
            return Err(bad(EntryDamage::SharesTooMuch));
        }
        let rest_n = c.len()?;
        let rest = c.take(rest_n)?;
        path.clear();
        path.extend_from_slice(&prev[..shared]);
        path.extend_from_slice(rest);
        if path.is_empty() {
            return Err(bad(EntryDamage::EmptyPath));
        }
        if i > 0 && as_path(&prev) >= as_path(&path) {
            return Err(bad(EntryDamage::OutOfOrder));
        }
        let [flags] = c.array::<1>()?;
        if flags & !(STORED_FLAGS | HAS_TARGET) != 0 {
            return Err(bad(EntryDamage::UnknownFlags));
        }
        let sha256 = if flags & HASHED != 0 {
            c.array::<32>()?
        } else {
            [0u8; 32]
        };
        let nanos = |n: u32| {
            (n < 1_000_000_000)
                .then_some(n)
                .ok_or_else(|| bad(EntryDamage::Nanoseconds))
        };
        let size = c.varint()?;
        let mode = c.u32()?;
        let uid = c.small()?;
        let gid = c.small()?;
        let dev = c.varint()?;
        let inode = c.varint()?;
        let mtime = c.signed()?;
        let mtime_nsec = nanos(c.u32()?)?;
        let ctime = c.signed()?;
        let ctime_nsec = nanos(c.u32()?)?;
        let target = if flags & HAS_TARGET != 0 {
            c.text()?
        } else {
            ""
        };
        let meta = Meta {
            sha256,
            size,
            dev,
            inode,
            mtime,
            ctime,
            mtime_nsec,
            ctime_nsec,
            mode,
            uid,
            gid,
            flags: flags & STORED_FLAGS,
        };
        if !entries.push_sorted(as_path(&path), meta, target) {
            return Err(bad(EntryDamage::PathsPast4GiB));
        }
        std::mem::swap(&mut prev, &mut path);
    }
    if c.at != body.len() {
        return Err(Damage::Trailing(body.len() - c.at));
    }
    entries.shrink_to_fit();
    Ok(Baseline {
        entries,
        rules,
        legacy: false,
    })
}

fn as_path(b: &[u8]) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(b))
}

/// Reads a version 1 (JSON lines) baseline.
fn load_json(file: File) -> Result<Baseline, Damage> {
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(Damage::JsonHeaderUnreadable)?;
    let header: JsonHeader = serde_json::from_str(&line).map_err(Damage::JsonHeader)?;
    if header.magic != JSON_MAGIC || header.version != JSON_VERSION {
        return Err(Damage::JsonVersion {
            magic: header.magic,
            version: header.version,
        });
    }
    let mut hasher = Sha256::new();
    let mut all: Vec<(PathBuf, Meta, String)> = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(Damage::JsonEntryUnreadable)?;
        if n == 0 {
            break;
        }
        hasher.update(line.as_bytes());
        let k = all.len() + 1;
        let (p, e): (PathBuf, Entry) =
            serde_json::from_str(&line).map_err(|source| Damage::JsonEntry { entry: k, source })?;
        let meta = Meta::pack(&e).map_err(|source| Damage::JsonMeta { entry: k, source })?;
        all.push((p, meta, e.symlink_target));
    }
    if all.len() as u64 != header.entries {
        return Err(Damage::EntryCount {
            found: all.len(),
            header: header.entries,
        });
    }
    if hex(&hasher.finalize()) != header.sha256 {
        return Err(Damage::Checksum);
    }
    // As the map it was written from: path order, the last of equals wins.
    all.reverse();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all.dedup_by(|a, b| a.0 == b.0);
    let bytes = all.iter().map(|(p, _, _)| p.as_os_str().len()).sum();
    let entries = Entries::from_sorted(
        all.len(),
        bytes,
        all.iter().map(|(p, m, t)| (p.as_path(), *m, t.as_str())),
    );
    Ok(Baseline {
        entries,
        rules: header.rules,
        legacy: true,
    })
}

/// Writes `parts` to `path` through `path.tmp` (mode 0600) and a rename, so
/// readers see the old or the new file, never a part. With `durable`, the
/// file is fsynced before the rename and the directory after it. The
/// temporary file is removed on failure.
pub(crate) fn write_private(path: &Path, parts: &[&[u8]], durable: bool) -> io::Result<()> {
    write_private_with(path, durable, |f| {
        for part in parts {
            f.write_all(part)?;
        }
        Ok(())
    })
}

/// [`write_private`] with the content written by `fill`.
pub(crate) fn write_private_with(
    path: &Path,
    durable: bool,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
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
        fill(&mut f)?;
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
            rules: vec!["/etc".into(), "/srv/a b".into()],
            ..Baseline::default()
        };
        for i in 0..300u64 {
            let link = i % 7 == 3;
            let e = Entry {
                file_type: if link {
                    FileType::Symlink
                } else {
                    FileType::File
                },
                size: i * 1000,
                mode: 0o100644,
                uid: (i % 3) as u32,
                gid: u32::MAX,
                dev: 1 << 40,
                inode: 10 + i,
                mtime: 1_700_000_000 - i as i64 * 1_000_000_000,
                mtime_nsec: 999_999_999,
                ctime: -3,
                ctime_nsec: 4,
                sha256: if i % 5 == 4 {
                    String::new()
                } else {
                    crate::state::sha256(&i.to_le_bytes())
                },
                hash_skipped: if i % 5 == 4 {
                    "too_large".into()
                } else {
                    String::new()
                },
                symlink_target: if link {
                    format!("../t{i}")
                } else {
                    String::new()
                },
            };
            let dir = ["/etc", "/etc/a", "/etc/a b", "/etc/a.b"][(i % 4) as usize];
            b.entries
                .insert(&PathBuf::from(format!("{dir}/f{i}")), &e)
                .unwrap();
        }
        b
    }

    /// A version 1 file as the previous version wrote it.
    fn write_v1(b: &Baseline, dir: &Path) {
        let mut body = Vec::new();
        for (p, e) in b.entries.iter() {
            serde_json::to_writer(&mut body, &(p, e)).unwrap();
            body.push(b'\n');
        }
        let head = serde_json::json!({
            "magic": JSON_MAGIC, "version": 1, "rules": b.rules,
            "entries": b.entries.len(), "sha256": hex(&Sha256::digest(&body)),
        });
        let mut bytes = serde_json::to_vec(&head).unwrap();
        bytes.push(b'\n');
        bytes.extend_from_slice(&body);
        fs::write(Baseline::path(dir), bytes).unwrap();
    }

    #[test]
    fn a_version_1_baseline_is_read_then_written_as_version_2() {
        let d = tempfile::tempdir().unwrap();
        write_v1(&sample(), d.path());
        let v1_size = fs::metadata(Baseline::path(d.path())).unwrap().len();
        let b = Baseline::load(d.path()).unwrap();
        assert!(b.legacy);
        assert_eq!(b, sample());
        b.save(d.path()).unwrap();
        let bytes = fs::read(Baseline::path(d.path())).unwrap();
        assert_eq!(&bytes[..8], MAGIC);
        assert!(
            (bytes.len() as u64) < v1_size / 2,
            "{} vs {v1_size}",
            bytes.len()
        );
        let again = Baseline::load(d.path()).unwrap();
        assert!(!again.legacy);
        assert_eq!(again, sample());
    }

    proptest::proptest! {
        /// A body damaged in any way, behind a header whose length and
        /// checksum match it (so the checksum does not hide the decoder),
        /// is an error or a baseline, never a panic or a huge allocation.
        #[test]
        fn damaged_bodies_with_a_matching_checksum_never_panic(
            edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..8),
            cut in proptest::prelude::any::<usize>(),
            count in proptest::prelude::any::<u64>(),
        ) {
            let d = tempfile::tempdir().unwrap();
            sample().save(d.path()).unwrap();
            let mut bytes = fs::read(Baseline::path(d.path())).unwrap();
            for (at, v) in edits {
                let i = HEADER + at % (bytes.len() - HEADER);
                bytes[i] = v;
            }
            let keep = HEADER + cut % (bytes.len() - HEADER + 1);
            bytes.truncate(keep);
            if count.is_multiple_of(3) {
                bytes[16..24].copy_from_slice(&count.to_le_bytes());
            }
            let body_len = (bytes.len() - HEADER) as u64;
            bytes[24..32].copy_from_slice(&body_len.to_le_bytes());
            let sum = Sha256::digest(&bytes[HEADER..]);
            bytes[32..HEADER].copy_from_slice(&sum);
            let _ = decode(&bytes);
        }
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
