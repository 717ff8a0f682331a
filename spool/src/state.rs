//! The `ack` file: the spool's small piece of state that is not in segments.
//!
//! ```text
//! b"OWLA" | version u32 | acked_seq u64 | dropped_seq u64 | last_seq u64 | crc32 u32 of the 32 bytes before
//! ```
//! (little-endian, 36 bytes). `acked_seq` is the SOC's cumulative ack,
//! `dropped_seq` the end of the last prefix the spool dropped itself (age,
//! full, corruption), `last_seq` the highest sequence number ever handed out
//! (or reserved) when the file was written.
//!
//! Written atomically: `ack.tmp` is written and fsynced, renamed over `ack`,
//! and the directory is fsynced. A reader therefore sees the old or the new
//! file, never a mix; a file that still fails its checksum is reported as
//! unreadable and recovery falls back to safe defaults (see the crate doc).

use std::io::ErrorKind;
use std::path::Path;

use crate::error::SpoolError;
use crate::fs::{Filesystem, OpenMode};
use crate::segment::FORMAT_VERSION;

pub const FILE_NAME: &str = "ack";
pub const TMP_NAME: &str = "ack.tmp";
const MAGIC: [u8; 4] = *b"OWLA";
const LEN: usize = 36;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State {
    pub acked_seq: u64,
    pub dropped_seq: u64,
    pub last_seq: u64,
}

#[derive(Debug)]
pub enum Loaded {
    Missing,
    Valid(State),
    /// Present but not a valid ack file (the reason says why).
    Unreadable(String),
}

pub fn encode(s: &State) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[0..4].copy_from_slice(&MAGIC);
    b[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    b[8..16].copy_from_slice(&s.acked_seq.to_le_bytes());
    b[16..24].copy_from_slice(&s.dropped_seq.to_le_bytes());
    b[24..32].copy_from_slice(&s.last_seq.to_le_bytes());
    let crc = crc32fast::hash(&b[..32]);
    b[32..36].copy_from_slice(&crc.to_le_bytes());
    b
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

pub fn decode(b: &[u8], path: &Path) -> Result<Loaded, SpoolError> {
    if b.len() != LEN {
        return Ok(Loaded::Unreadable(format!(
            "{} bytes, expected {LEN}",
            b.len()
        )));
    }
    if b[0..4] != MAGIC {
        return Ok(Loaded::Unreadable("bad magic".into()));
    }
    let crc = u32::from_le_bytes([b[32], b[33], b[34], b[35]]);
    if crc32fast::hash(&b[..32]) != crc {
        return Ok(Loaded::Unreadable("checksum mismatch".into()));
    }
    let version = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    if version != FORMAT_VERSION {
        return Err(SpoolError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(Loaded::Valid(State {
        acked_seq: u64_at(b, 8),
        dropped_seq: u64_at(b, 16),
        last_seq: u64_at(b, 24),
    }))
}

pub fn load(fs: &dyn Filesystem, dir: &Path) -> Result<Loaded, SpoolError> {
    let path = dir.join(FILE_NAME);
    match fs.read(&path) {
        Ok(b) => decode(&b, &path),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Loaded::Missing),
        Err(e) => Err(SpoolError::io("read of ack file", path, e)),
    }
}

/// Atomically replaces the ack file (write temp, fsync, rename, fsync dir).
pub fn store(fs: &dyn Filesystem, dir: &Path, s: &State) -> Result<(), SpoolError> {
    let tmp = dir.join(TMP_NAME);
    let path = dir.join(FILE_NAME);
    let f = fs
        .open(&tmp, OpenMode::Create)
        .map_err(|e| SpoolError::io("create of", &tmp, e))?;
    f.write_all_at(&encode(s), 0)
        .map_err(|e| SpoolError::io("write of", &tmp, e))?;
    f.sync_data()
        .map_err(|e| SpoolError::io("fsync of", &tmp, e))?;
    drop(f);
    fs.rename(&tmp, &path)
        .map_err(|e| SpoolError::io("rename onto", &path, e))?;
    sync_dir(fs, dir)
}

/// Makes directory entry changes (create, rename, unlink) durable.
pub fn sync_dir(fs: &dyn Filesystem, dir: &Path) -> Result<(), SpoolError> {
    fs.sync_dir(dir)
        .map_err(|e| SpoolError::io("fsync of directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fs::RealFs;
    use std::fs;

    #[test]
    fn round_trips_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load(&RealFs, dir.path()).unwrap(),
            Loaded::Missing
        ));
        let s = State {
            acked_seq: 5,
            dropped_seq: 7,
            last_seq: 9,
        };
        store(&RealFs, dir.path(), &s).unwrap();
        assert!(matches!(load(&RealFs, dir.path()).unwrap(), Loaded::Valid(x) if x == s));
        let p = dir.path().join(FILE_NAME);
        let mut b = fs::read(&p).unwrap();
        b[10] ^= 1;
        fs::write(&p, &b).unwrap();
        assert!(matches!(
            load(&RealFs, dir.path()).unwrap(),
            Loaded::Unreadable(_)
        ));
        fs::write(&p, b"x").unwrap();
        assert!(matches!(
            load(&RealFs, dir.path()).unwrap(),
            Loaded::Unreadable(_)
        ));
    }
}
