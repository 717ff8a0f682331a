//! Recovery: turns whatever is in the spool directory into a consistent index
//! at open, repairing crash artifacts and reporting real damage.
//!
//! Rules (the crate doc explains why):
//! - A bad record anywhere, including a torn record at the tail of the last
//!   segment: the rest of that segment is unreadable. It is reported as one
//!   `CORRUPT` `DataLoss` and the file is truncated at the bad record, so the
//!   loss is reported once. A torn tail is what an append interrupted by a
//!   power loss leaves, but also what a lost write-back of accepted data
//!   leaves, and recovery cannot tell them apart: so it reports it, with the
//!   seq range open-ended (`last_seq` 0), and numbering jumps by the clock
//!   rule, because the torn batch may have reached the SOC under its numbers
//!   (the uplink can read a batch before its fdatasync finishes).
//! - A last segment with no complete header (or only zeros) is removed
//!   silently: a segment's header is synced before any record is written to
//!   it, so nothing was ever accepted into it.
//! - A segment written by a newer format version is an error, never repaired:
//!   a newer owlet's data is not ours to destroy.
//! - Segments holding nothing above the ack/drop floor are deleted, except the
//!   last one (it carries the highest sequence number).
//!
//! Recovery never panics on file contents and never deletes a file it does
//! not recognise (unknown files are logged and left alone).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use owlet_proto::v1::{DataLoss, DataLossReason};

use crate::error::SpoolError;
use crate::fs::{Filesystem, OpenMode};
use crate::index::{LossBuilder, RecordMeta, SegmentMeta};
use crate::segment::{self, HeaderCheck};
use crate::state::{self, Loaded, State};

/// The index and state recovered from a spool directory.
pub struct Recovered {
    pub segments: Vec<SegmentMeta>,
    pub state: State,
    /// `state` differs from the ack file on disk and should be written.
    pub state_dirty: bool,
    pub losses: Vec<DataLoss>,
}

pub const LOCK_NAME: &str = "lock";

fn remove(fs: &dyn Filesystem, path: &Path) -> Result<(), SpoolError> {
    match fs.remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SpoolError::io("removal of", path, e)),
    }
}

fn truncate(fs: &dyn Filesystem, path: &Path, len: u64) -> Result<(), SpoolError> {
    let f = fs
        .open(path, OpenMode::ReadWrite)
        .map_err(|e| SpoolError::io("open for repair of", path, e))?;
    f.set_len(len)
        .map_err(|e| SpoolError::io("truncation of", path, e))?;
    f.sync_data()
        .map_err(|e| SpoolError::io("fsync of", path, e))
}

/// Lists segment files, sorted by the number in their name.
fn list_segments(fs: &dyn Filesystem, dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut segs = Vec::new();
    let entries = fs
        .read_dir(dir)
        .map_err(|e| SpoolError::io("listing of", dir, e))?;
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(seq) = segment::parse_file_name(&name) {
            segs.push((seq, path));
        } else if name != state::FILE_NAME && name != state::TMP_NAME && name != LOCK_NAME {
            tracing::warn!(path = %path.display(), "unknown file in the spool directory; left alone");
        }
    }
    segs.sort_by_key(|(seq, _)| *seq);
    Ok(segs)
}

pub fn recover(fs: &dyn Filesystem, dir: &Path, now_us: u64) -> Result<Recovered, SpoolError> {
    remove(fs, &dir.join(state::TMP_NAME))?;
    let (mut st, state_missing, state_bad) = match state::load(fs, dir)? {
        Loaded::Missing => (State::default(), true, false),
        Loaded::Valid(s) => (s, false, false),
        Loaded::Unreadable(why) => {
            tracing::warn!(
                path = %dir.join(state::FILE_NAME).display(),
                reason = %why,
                "spool ack file is unreadable; unacknowledged data will be resent \
                 (the SOC drops duplicates) and numbering restarts from the clock"
            );
            (State::default(), false, true)
        }
    };
    let floor = st.acked_seq.max(st.dropped_seq);

    let files = list_segments(fs, dir)?;
    let mut segments: Vec<SegmentMeta> = Vec::new();
    let mut losses = Vec::new();
    // Set when a damaged region's highest seq cannot be bounded: numbering
    // must then jump past anything that region could have held.
    let mut unknown_upper_bound = false;
    let mut hwm = 0u64;

    for (i, (name_seq, path)) in files.iter().enumerate() {
        let is_last = i + 1 == files.len();
        let next_name = files.get(i + 1).map(|(s, _)| *s);
        let min_first = (*name_seq).max(hwm.saturating_add(1));
        let data = fs
            .read(path)
            .map_err(|e| SpoolError::io("read of segment", path, e))?;

        let mut corrupt_at: Option<(u64, String)> = None;
        let mut records = Vec::new();
        let mut size = data.len() as u64;
        match segment::check_header(&data) {
            HeaderCheck::Version(found) => {
                return Err(SpoolError::UnsupportedVersion {
                    path: path.clone(),
                    found,
                    supported: segment::FORMAT_VERSION,
                });
            }
            HeaderCheck::Short | HeaderCheck::BadMagic
                if is_last && (data.len() < 16 || data.iter().all(|b| *b == 0)) =>
            {
                // The segment's creation was interrupted: nothing was accepted into it.
                tracing::info!(path = %path.display(), "removing incomplete last spool segment");
                remove(fs, path)?;
                continue;
            }
            HeaderCheck::Short | HeaderCheck::BadMagic => {
                corrupt_at = Some((0, "bad segment header".into()));
                size = 0;
            }
            HeaderCheck::Valid => {
                let (good, stop) = segment::scan(&data, min_first);
                records = good
                    .iter()
                    .map(|s| RecordMeta::from_batch(s.offset, s.payload_len, &s.batch))
                    .collect::<Vec<_>>();
                if let Some((offset, bad)) = stop {
                    corrupt_at = Some((offset, bad.describe()));
                    size = offset;
                }
            }
        }

        if let Some((offset, why)) = corrupt_at {
            let first = records
                .last()
                .map_or(min_first, |r: &RecordMeta| r.last_seq.saturating_add(1));
            let last = next_name.map(|n| n.saturating_sub(1));
            tracing::warn!(
                path = %path.display(), offset, reason = %why,
                "spool segment is damaged; the rest of it is lost and reported as CORRUPT"
            );
            let mut loss = LossBuilder::new(DataLossReason::Corrupt);
            loss.add_unreadable(first, last);
            if !loss.is_empty() {
                losses.push(loss.finish());
            }
            if last.is_none() {
                unknown_upper_bound = true;
            }
            if offset < segment::SEGMENT_HEADER_LEN {
                remove(fs, path)?;
                continue;
            }
            truncate(fs, path, offset)?;
        }

        if let Some(r) = records.last() {
            hwm = hwm.max(r.last_seq);
        }
        let mut seg = SegmentMeta {
            path: path.clone(),
            size,
            records: Vec::with_capacity(records.len()),
        };
        records.into_iter().for_each(|r| seg.push(r));
        segments.push(seg);
    }

    // Delete segments that hold nothing above the floor; keep the last.
    while segments.len() > 1 && segments[0].is_dead(floor) {
        let seg = segments.remove(0);
        remove(fs, &seg.path)?;
    }

    // A segment is named by the first seq it holds (or was created for), so
    // numbering continues at or after the last name even when that segment
    // holds no record yet: the scanner would refuse a lower seq in it.
    let last_name = segments.last().and_then(|s| {
        s.path
            .file_name()
            .and_then(|n| segment::parse_file_name(&n.to_string_lossy()))
    });
    let mut last_seq = hwm
        .max(st.last_seq)
        .max(st.acked_seq)
        .max(st.dropped_seq)
        .max(last_name.map_or(0, |n| n.saturating_sub(1)));
    let fresh = state_missing && segments.is_empty();
    let distrust = state_bad || unknown_upper_bound;
    if fresh || distrust {
        // Numbers at or below the current UTC time in microseconds were
        // handed out before (at most one per microsecond), so starting here
        // never reuses a number the SOC may hold.
        last_seq = last_seq.max(now_us.saturating_sub(1));
    }
    // A new spool records its clock-based start at once, so reopening it
    // before the first append does not move the base.
    let state_dirty = distrust || fresh;
    st.last_seq = last_seq;
    state::sync_dir(fs, dir)?;
    Ok(Recovered {
        segments,
        state: st,
        state_dirty,
        losses,
    })
}
