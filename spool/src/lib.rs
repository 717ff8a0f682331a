//! # owlet-spool: the durable spool
//!
//! The spool is the only place events wait between being produced and being
//! acknowledged by the remote SOC. Producers append batches; the uplink reads
//! them back in sequence order and sends them; the SOC's cumulative acks let
//! the spool delete them. This doc is the design; the code follows it.
//!
//! ## Constraints
//!
//! - **Nothing accepted vanishes silently** (architecture invariant 2). An
//!   event is *accepted* when [`Spool::append`] returns `Ok`. From then on it
//!   is readable until acked, or it is counted in exactly one [`DataLoss`]
//!   handed to the caller (who turns it into a `data_loss` event).
//! - **Sequence numbers are never reused** for different events: the SOC
//!   drops `(agent, seq)` duplicates, so reuse would be silent loss.
//! - **Bounded** by bytes on disk (`max_bytes`) and by age (`max_age`).
//!   When a bound is hit the *oldest* data goes, with a `DataLoss`.
//! - **Never panics on file contents**; damage becomes a `CORRUPT` loss or a
//!   [`SpoolError`] naming the file.
//! - Plain blocking struct, no internal locking, no threads: the agent wraps
//!   it in a `Mutex` and calls it from blocking threads. Statistics are
//!   published after every call into a [`StatsHandle`] that async code reads
//!   without that `Mutex` (a blocking thread may hold it across an fsync).
//! - Every file operation after the directory lock goes through the
//!   [`fs::Filesystem`] seam, so tests fail writes, fsyncs and renames on
//!   command (`fs::FaultyFs`, feature `fault-injection`).
//!
//! ## On-disk layout (format version 1)
//!
//! ```text
//! <dir>/lock                         flock()ed by the running agent; holds its pid
//! <dir>/ack                          ack state, replaced atomically (state.rs)
//! <dir>/00000001700000000000123.seg  segments, named by the first seq they hold,
//! <dir>/00000001700000000004711.seg  20 zero-padded digits, so names sort by seq
//! ```
//!
//! A segment is append-only: a 16-byte header (`b"OWLSPOOL"`, version `u32`,
//! reserved `u32`) then records back to back. A record is one batch:
//! `[payload len u32 LE][crc32 of payload u32 LE][payload]`, the payload being
//! the prost encoding of `owlet.v1.Batch` with `first_seq`/`last_seq` and each
//! event's `seq` filled in (details and invariants in [`segment`]). The
//! active (last) segment rolls when the next record would take it past
//! `segment_bytes`; a batch bigger than that gets a segment to itself.
//! The `ack` file is 36 bytes: magic `b"OWLA"`, version, `acked_seq`,
//! `dropped_seq` (end of the last prefix the spool dropped itself),
//! `last_seq` (highest number handed out), CRC32. A file with an unknown
//! version is refused with [`SpoolError::UnsupportedVersion`], never repaired.
//!
//! ## Sequence numbers
//!
//! The spool numbers events at append, consecutively, strictly increasing.
//! A brand-new spool (no segments, no ack file) starts at the current UTC time
//! in microseconds, so a reinstalled agent whose spool was wiped never reuses
//! numbers the SOC already stored (that holds as long as the agent averaged
//! less than one event per microsecond and the clock did not go backwards).
//! Reopening continues after the highest number in the segments or the ack
//! file. Whenever recovery cannot bound what a damaged region held (damage in
//! the last segment that is not a torn append, or an unreadable ack file) it
//! applies the clock rule again: a gap in numbering, never a reuse. An ack
//! above the last assigned seq likewise moves numbering past it.
//!
//! ## fsync policy and its cost
//!
//! [`Durability::EveryBatch`]: after writing a record the segment is
//! `fdatasync`ed before `append` returns, so an accepted batch survives power
//! loss. [`Durability::Interval`]`(d)`: `fdatasync` at most every `d`
//! (checked at append; call [`Spool::sync`] on a timer and at shutdown, and
//! `Drop` syncs too). Data is in the page cache when `append` returns, so it
//! survives `kill -9`, but a power loss may lose up to `d` of accepted
//! batches *without* a `DataLoss` report, and their numbers may be reused
//! after the restart (until the SOC's ack moves numbering past them). New
//! segments, the ack file and directory entries are always fsynced.
//!
//! **A failed `fdatasync` is never followed by trust.** After a failed
//! fdatasync the kernel may have dropped the dirty pages and cleared the
//! error, so a retried one that succeeds proves nothing. The segment that saw
//! the failure takes no more appends (the next one starts a new segment); the
//! records written to it since its last successful sync leave the index and
//! the file is cut back to its synced length. Which records those are, by
//! mode: `EveryBatch`, the batch being appended, whose `append` returns the
//! error (not accepted; its numbers are consumed, never reused);
//! `Interval`, the batches accepted since the last sync, reported as one
//! `WRITE_FAILED` loss; `Deferred`, the batches the failed [`SyncHandle`]
//! covered, which its caller reports (the handle returned the error), plus
//! any appended after it, which the spool reports. A second handle on a
//! segment whose sync failed fails without trying. A failed sync while
//! sealing a full segment abandons it the same way and the append goes on in
//! a new segment. Only `Drop` cannot report, so it leaves the files to
//! recovery.
//!
//! Measured on the development VM (2 vCPU, virtio disk, ext4, shared and
//! noisy; debug build, so encoding is slower than in release), two runs,
//! `cargo test -p owlet-spool --test measure -- --ignored --nocapture`:
//!
//! | policy | 1000-event batches (69 KB) | 1-event batches (109 B) |
//! |---|---|---|
//! | `EveryBatch` | 122–148 batches/s (≈ 120–150 k events/s) | 259–267 batches/s |
//! | `Interval(100 ms)` | 269–377 batches/s | – |
//! | no fsync (`Interval(1 h)`) | 388 batches/s (CPU-bound encoding) | 126–135 k batches/s |
//!
//! One `fdatasync` costs about 3.8 ms here, so `EveryBatch` caps the spool at
//! roughly 260 appends/s whatever their size: batching events (the bus does)
//! is what makes it affordable; with 1000-event batches it costs about 60 %
//! of the no-fsync throughput. An ack costs one 36-byte file write, two
//! fsyncs and a rename (≈ 2 fdatasync times).
//!
//! ## Bounds
//!
//! `max_bytes` bounds the total size of the segment files. When an append
//! would exceed it, whole oldest segments are deleted until the new record
//! fits, and their unacked batches are reported as one `SPOOL_FULL` loss
//! (counts, seq range, kinds and time range come from the index). The
//! segment being written is never deleted while it is being written: an
//! append that needs a new segment seals the active one first (fdatasync),
//! and only then may it be dropped, which happens only when it is the only
//! segment left (e.g. `max_bytes == segment_bytes`). Then it *is* the oldest
//! data, and keeping it would mean refusing new events, which is worse than
//! losing old ones. A batch that was only partly acked counts whole. Space is freed in whole segments, so usage swings
//! between `max_bytes - segment_bytes` and `max_bytes`: keep `segment_bytes`
//! at most an eighth of `max_bytes`. A single batch larger than `max_bytes`
//! is refused ([`SpoolError::BatchTooLarge`]).
//!
//! [`Spool::expire`] drops, oldest first, batches whose newest event is older
//! than `max_age` (`SPOOL_AGE`), stopping at the first younger batch (or a
//! batch without timestamps). These are logical drops: the ack file records
//! the dropped prefix and files go once nothing in them is live.
//!
//! Losses the spool causes or finds are returned by `append` and `expire`
//! (and `open`); a loss found where it cannot be returned (a failed append,
//! a read) is held and returned by the next `append` or `expire`. A crash
//! between a drop and the caller appending its `data_loss` event loses the
//! report, not the evidence: the SOC still sees the gap in sequence numbers.
//!
//! ## Acks
//!
//! [`Spool::ack`] is cumulative: it writes the ack file (temp + fsync +
//! rename + directory fsync) and deletes segments whose batches are all at or
//! below the ack. The last segment is kept (and appended to) even when fully
//! acked, so a fast SOC does not cost a file creation per batch.
//!
//! ## Recovery (at open; `recovery.rs`)
//!
//! - A torn record at the tail of the **last** segment (short header, length
//!   past EOF, bad CRC on a record that ends at EOF, zero-filled tail) is
//!   what a power loss in the middle of an append leaves, but also what lost
//!   write-back of accepted data leaves, and the two look the same. It is
//!   truncated away and reported as a `CORRUPT` loss whose range is open
//!   (`last_seq` 0), and numbering jumps by the clock rule (the uplink may
//!   have sent the torn batch before its fdatasync). A last segment whose
//!   header is incomplete is removed silently: a header is synced before any
//!   record goes in.
//! - Any other bad record (bad CRC with data after it, impossible length, a
//!   payload that is not a valid batch, seqs going backwards), in any segment:
//!   the rest of that segment is lost, reported as one `CORRUPT` loss with
//!   the seq range it could have held (events counted as that range, kinds as
//!   "unknown"; the range end is 0 when it cannot be bounded), and the file is
//!   truncated there so the loss is reported once.
//! - A record that fails to read back later (disk changed under us) is
//!   treated the same way by [`Spool::read_after`], with exact counts.
//! - Exclusive access: `open` takes `flock` on `<dir>/lock`
//!   ([`std::fs::File::try_lock`]); a second agent gets [`SpoolError::Locked`]
//!   (after retrying for about half a second, because a process this one
//!   spawns holds a copy of the lock descriptor until its `exec`).
//!
//! ## What the spool must never do
//!
//! - return `Ok` from `append` before the record is written (and, with
//!   `EveryBatch`, synced); leave a partial record behind a failed append;
//! - count a batch as accepted after the fdatasync meant to cover it failed,
//!   or let a later fdatasync vouch for bytes written before a failed one;
//! - delete the segment holding the highest seq unless the ack file records it;
//! - drop data without returning a `DataLoss`, or count an event in two;
//! - trust a length or offset read from disk beyond the bytes actually there;
//! - delete files it does not recognise in the directory.
#![forbid(unsafe_code)]

mod error;
pub mod fs;
#[doc(hidden)]
pub mod fuzzing;
mod index;
mod recovery;
pub mod segment;
mod spool;
#[doc(hidden)]
pub mod state;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

pub use error::SpoolError;
pub use owlet_proto::v1::{Batch, DataLoss, DataLossReason, Event};
pub use spool::{EncodedBatch, Spool, StatsHandle, SyncHandle};

/// When appended data is forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fdatasync` after every append, before it returns.
    EveryBatch,
    /// `fdatasync` at most once per interval (at append or [`Spool::sync`]).
    Interval(Duration),
    /// `append` never syncs; the caller makes each append durable with the
    /// [`SyncHandle`] from [`Spool::sync_handle`] before it appends again and
    /// before it calls the batch accepted. The point: the handle works without
    /// the caller's lock around the spool, so readers (the uplink) are not held
    /// up by the disk flush. Same guarantee as `EveryBatch` once synced.
    Deferred,
}

/// Where the spool lives and how big it may get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Directory owned by this spool (created if missing).
    pub dir: PathBuf,
    /// Bound on the total size of the segment files, bytes.
    pub max_bytes: u64,
    /// Bound on the age of the oldest unacked event (enforced by `expire`).
    pub max_age: Duration,
    /// Size at which the active segment rolls, bytes.
    pub segment_bytes: u64,
    /// Bound on the number of batches held (acknowledged ones in a live
    /// segment included): each costs an in-memory index entry of about
    /// 150 bytes, so this bounds the spool's memory as `max_bytes` bounds
    /// its disk. Hitting it drops the oldest segment, reported as
    /// `SPOOL_FULL`, like the byte bound.
    pub max_batches: u64,
    pub durability: Durability,
}

impl SpoolConfig {
    /// Defaults: 1 GiB, 7 days, 16 MiB segments, 1,000,000 batches,
    /// `EveryBatch`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SpoolConfig {
            dir: dir.into(),
            max_bytes: 1 << 30,
            max_age: Duration::from_secs(7 * 24 * 3600),
            segment_bytes: 16 << 20,
            max_batches: 1_000_000,
            durability: Durability::EveryBatch,
        }
    }

    fn validate(&self) -> Result<(), SpoolError> {
        if self.segment_bytes <= segment::SEGMENT_HEADER_LEN {
            return Err(SpoolError::Config(format!(
                "segment_bytes = {} is too small; use at least 64 KiB",
                self.segment_bytes
            )));
        }
        if self.max_batches < 1000 {
            return Err(SpoolError::Config(format!(
                "max_batches = {} is too small; use at least 1000",
                self.max_batches
            )));
        }
        if self.max_bytes < self.segment_bytes {
            return Err(SpoolError::Config(format!(
                "max_bytes = {} is smaller than segment_bytes = {}; make max_bytes at least \
                 8 times segment_bytes",
                self.max_bytes, self.segment_bytes
            )));
        }
        Ok(())
    }
}

/// What a successful [`Spool::append`] assigned, and losses to report.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    pub first_seq: u64,
    pub last_seq: u64,
    /// Data the spool dropped or found damaged; append each as an event.
    pub losses: Vec<DataLoss>,
}

/// Cheap counters from the in-memory index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Events in stored, unacknowledged (or partly acknowledged) batches.
    pub events: u64,
    /// Total size of the segment files, bytes (what `max_bytes` bounds).
    pub bytes: u64,
    pub batches: u64,
    /// Time of the oldest stored event.
    pub oldest: Option<SystemTime>,
    pub acked_seq: u64,
    /// Highest sequence number assigned (or reserved).
    pub last_seq: u64,
}
