//! The `Spool` itself: append, read, ack, bounds, sync. See the crate doc for
//! the design; this module keeps the index, the files and the ack state in
//! step, and is the only code that writes or deletes spool files after open.
//!
//! Invariant kept by every method, including on error returns: the index
//! describes exactly the records on disk that the spool considers stored, and
//! the segment holding the highest assigned sequence number is never deleted
//! unless the ack file durably records that number.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use owlet_proto::v1::{Batch, DataLoss, DataLossReason, Event};
use prost::Message;

use crate::error::SpoolError;
use crate::fs::{Filesystem, OpenMode, RealFs, SpoolFile};
use crate::index::{LossBuilder, RecordMeta, SegmentMeta};
use crate::recovery::{self, LOCK_NAME};
use crate::segment::{self, MAX_PAYLOAD, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::state::{self, State};
use crate::{Appended, Durability, SpoolConfig, SpoolStats};

/// The durable spool. Blocking, not internally locked: wrap it in a `Mutex`
/// (and read statistics through [`Spool::stats_handle`], which needs no lock).
#[derive(Debug)]
pub struct Spool {
    config: SpoolConfig,
    fs: Arc<dyn Filesystem>,
    /// Holds the exclusive directory lock for the spool's lifetime.
    _lock: File,
    segments: VecDeque<SegmentMeta>,
    /// Open handle on `segments.back()` while it accepts appends.
    active: Option<Box<dyn SpoolFile>>,
    /// Durability of the active segment, shared with its [`SyncHandle`]s.
    active_sync: Arc<SyncState>,
    acked_seq: u64,
    dropped_seq: u64,
    last_seq: u64,
    /// What the ack file on disk says (after the last successful write).
    persisted: State,
    /// Losses found by a call that could not return them (failed append,
    /// read, failed fdatasync); handed out by the next `append` or `expire`.
    pending_losses: Vec<DataLoss>,
    last_sync: Instant,
    /// A failed append could not truncate its partial write: do it first.
    needs_truncate: bool,
    /// Sliding-window minimum of the live records' oldest event times:
    /// `(last_seq, oldest_us)`, increasing in both, front = the minimum.
    oldest: VecDeque<(u64, i64)>,
    /// The published statistics (see [`StatsHandle`]).
    stats: StatsHandle,
}

/// How far the active segment is known durable. Shared between the spool
/// and the [`SyncHandle`]s of that segment; a new segment gets a new one.
#[derive(Debug, Default)]
struct SyncState {
    /// File length covered by the last successful fdatasync.
    synced: AtomicU64,
    /// An fdatasync of this segment failed. The kernel may have dropped the
    /// dirty pages and cleared the error, so a later successful fdatasync
    /// proves nothing: nothing past `synced` is trusted, and the segment
    /// takes no more appends.
    poisoned: AtomicBool,
    /// End of the data covered by a [`SyncHandle`] whose sync failed: its
    /// caller was told those appends are not accepted and reports them, so
    /// the spool drops them without a report of its own.
    refused: AtomicU64,
}

/// A snapshot of [`SpoolStats`], republished after every change to the
/// spool. Reading it takes a small lock held only for a copy, never the
/// lock around the [`Spool`], so it does not wait for an fsync or a rename.
#[derive(Debug, Clone)]
pub struct StatsHandle(Arc<Mutex<SpoolStats>>);

impl StatsHandle {
    /// The statistics as of the end of the last spool call that changed them.
    pub fn get(&self) -> SpoolStats {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, s: SpoolStats) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = s;
    }
}

fn micros_since_epoch(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

fn open_lock(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join(LOCK_NAME);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| SpoolError::io("open of lock file", &path, e))?;
    // flock belongs to the open file description, and a process spawned by
    // this one holds a copy of every descriptor until its exec closes it. So
    // a spool dropped and reopened in the same process can see the lock held
    // for a moment: retry briefly before blaming another agent.
    let mut attempts = 0;
    loop {
        match f.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if attempts < 20 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(SpoolError::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(SpoolError::io("locking of", &path, e));
            }
        }
    }
    // The pid is for the operator reading the directory; the lock is the flock.
    let _ = f
        .set_len(0)
        .and_then(|()| f.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(f, "{}", std::process::id()));
    Ok(f)
}

impl Spool {
    /// Opens (or creates) the spool in `config.dir`, takes the directory lock,
    /// recovers the index, and returns the losses recovery found (`CORRUPT`).
    pub fn open(config: SpoolConfig) -> Result<(Spool, Vec<DataLoss>), SpoolError> {
        Self::open_with(config, Arc::new(RealFs))
    }

    /// [`Spool::open`] doing every file operation through `fs` (tests use a
    /// filesystem that fails on command).
    pub fn open_with(
        config: SpoolConfig,
        fs: Arc<dyn Filesystem>,
    ) -> Result<(Spool, Vec<DataLoss>), SpoolError> {
        Self::open_at(config, fs, SystemTime::now())
    }

    /// [`Spool::open_with`] with the wall clock read as `now`. The clock
    /// only decides where numbering starts when recovery cannot trust the
    /// numbers on disk (a new spool, a damaged state, a torn tail); tests
    /// pass their own so a run is the same on every machine and day.
    pub fn open_at(
        config: SpoolConfig,
        fs: Arc<dyn Filesystem>,
        now: SystemTime,
    ) -> Result<(Spool, Vec<DataLoss>), SpoolError> {
        config.validate()?;
        let dir = config.dir.clone();
        fs.create_dir_all(&dir)
            .map_err(|e| SpoolError::io("creation of directory", &dir, e))?;
        let lock = open_lock(&dir)?;
        let now_us = u64::try_from(micros_since_epoch(now)).unwrap_or(0);
        let rec = recovery::recover(fs.as_ref(), &dir, now_us)?;
        let active_sync = Arc::new(SyncState::default());
        let active = match rec.segments.last() {
            Some(seg) => {
                let f = fs
                    .open(&seg.path, OpenMode::ReadWrite)
                    .map_err(|e| SpoolError::io("open of segment", &seg.path, e))?;
                // What recovery found may sit in the page cache only (a
                // process killed before its sync): make it durable before
                // it counts as such.
                f.sync_data()
                    .map_err(|e| SpoolError::io("fdatasync of segment", &seg.path, e))?;
                active_sync.synced.store(seg.size, Ordering::Release);
                Some(f)
            }
            None => None,
        };
        let mut spool = Spool {
            config,
            fs,
            _lock: lock,
            segments: rec.segments.into(),
            active,
            active_sync,
            acked_seq: rec.state.acked_seq,
            dropped_seq: rec.state.dropped_seq,
            last_seq: rec.state.last_seq,
            persisted: State::default(),
            pending_losses: Vec::new(),
            last_sync: Instant::now(),
            needs_truncate: false,
            oldest: VecDeque::new(),
            stats: StatsHandle(Arc::new(Mutex::new(SpoolStats::default()))),
        };
        if rec.state_dirty {
            spool.persist_state()?;
        } else {
            spool.persisted = rec.state;
        }
        spool.rebuild_oldest();
        spool.publish();
        Ok((spool, rec.losses))
    }

    /// A handle on the spool's statistics, readable from any thread without
    /// the caller's lock around the spool (see [`StatsHandle`]).
    pub fn stats_handle(&self) -> StatsHandle {
        self.stats.clone()
    }

    fn floor(&self) -> u64 {
        self.acked_seq.max(self.dropped_seq)
    }

    /// Index entries held (one per stored batch, acknowledged or not, until
    /// its segment goes).
    fn batch_count(&self) -> u64 {
        self.segments.iter().map(|s| s.records.len() as u64).sum()
    }

    fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    fn persist_state(&mut self) -> Result<(), SpoolError> {
        let s = State {
            acked_seq: self.acked_seq,
            dropped_seq: self.dropped_seq,
            last_seq: self.last_seq,
        };
        state::store(self.fs.as_ref(), &self.config.dir, &s)?;
        self.persisted = s;
        Ok(())
    }

    /// Appends one batch. Assigns `seq` to every event (overwriting what the
    /// caller set), and returns the range. When it returns `Ok` with
    /// [`Durability::EveryBatch`], the batch is on stable storage.
    ///
    /// `losses` carries any `DataLoss` the spool had to cause (oldest data
    /// dropped to stay within `max_bytes`, data lost to a failed fdatasync)
    /// or found since the last call; the caller must turn each into an event
    /// and append it.
    ///
    /// On error the batch is not stored and the spool is consistent; the
    /// call can be retried. No sequence number is consumed, except when the
    /// record reached the segment file and its fdatasync failed: then its
    /// numbers are never reused (the bytes may still surface after a
    /// restart, and must not collide with other events).
    pub fn append(&mut self, events: Vec<Event>) -> Result<Appended, SpoolError> {
        let result = self.append_inner(events);
        self.publish();
        result
    }

    fn append_inner(&mut self, mut events: Vec<Event>) -> Result<Appended, SpoolError> {
        if events.is_empty() {
            return Err(SpoolError::InvalidBatch(
                "a batch needs at least one event".into(),
            ));
        }
        if events.len() > owlet_proto::MAX_BATCH_EVENTS {
            return Err(SpoolError::InvalidBatch(format!(
                "{} events in one batch, at most {} allowed; split it",
                events.len(),
                owlet_proto::MAX_BATCH_EVENTS
            )));
        }
        self.check_poison();
        self.repair_active()?;
        let exhausted = SpoolError::SeqExhausted {
            last_seq: self.last_seq,
        };
        let n = events.len() as u64;
        let Some(first_seq) = self.last_seq.checked_add(1) else {
            return Err(exhausted);
        };
        let Some(last_seq) = first_seq.checked_add(n - 1) else {
            return Err(exhausted);
        };
        for (seq, e) in (first_seq..).zip(events.iter_mut()) {
            e.seq = seq;
        }
        let batch = Batch {
            first_seq,
            last_seq,
            events,
        };
        let payload = batch.encode_to_vec();
        if payload.len() > MAX_PAYLOAD as usize {
            return Err(SpoolError::BatchTooLarge {
                bytes: payload.len() as u64,
                limit: u64::from(MAX_PAYLOAD),
            });
        }
        let record = segment::encode_record(&payload);
        let rec_len = record.len() as u64;
        if rec_len + SEGMENT_HEADER_LEN > self.config.max_bytes {
            return Err(SpoolError::BatchTooLarge {
                bytes: rec_len + SEGMENT_HEADER_LEN,
                limit: self.config.max_bytes,
            });
        }

        let roll = match (&self.active, self.segments.back()) {
            (Some(_), Some(seg)) => {
                seg.size > SEGMENT_HEADER_LEN && seg.size + rec_len > self.config.segment_bytes
            }
            _ => true,
        };
        if roll {
            self.seal_active();
        }
        let mut loss = LossBuilder::new(DataLossReason::SpoolFull);
        let made_room = self.make_room(rec_len, &mut loss);
        if !loss.is_empty() {
            self.pending_losses.push(loss.finish());
        }
        made_room?;
        if self.active.is_none() {
            self.create_segment(first_seq)?;
            // The sealed segment may be fully acked already.
            self.gc();
        }
        self.write_record(&record, last_seq)?;

        let meta = RecordMeta::from_batch(0, 0, &batch);
        let Some(seg) = self.segments.back_mut() else {
            unreachable!("write_record succeeded, so there is an active segment")
        };
        let offset = seg.size;
        if let Some(o) = meta.oldest_us {
            while self.oldest.back().is_some_and(|(_, b)| *b >= o) {
                self.oldest.pop_back();
            }
            self.oldest.push_back((last_seq, o));
        }
        seg.push(RecordMeta {
            offset,
            payload_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
            ..meta
        });
        seg.size += rec_len;
        self.last_seq = last_seq;
        Ok(Appended {
            first_seq,
            last_seq,
            losses: std::mem::take(&mut self.pending_losses),
        })
    }

    /// Drops whole oldest segments until a record of `rec_len` bytes (plus a
    /// segment header if a new segment is needed) fits in `max_bytes`.
    fn make_room(&mut self, rec_len: u64, loss: &mut LossBuilder) -> Result<(), SpoolError> {
        let need = |s: &Self| {
            rec_len
                + if s.active.is_none() {
                    SEGMENT_HEADER_LEN
                } else {
                    0
                }
        };
        let mut removed = false;
        while !self.segments.is_empty()
            && (self.total_bytes() + need(self) > self.config.max_bytes
                || self.batch_count() >= self.config.max_batches)
        {
            if self.segments.len() == 1 && self.active.is_some() {
                // The active segment alone is too big to take the batch: it is
                // the oldest data too, so it goes like any other segment.
                self.seal_active();
                continue;
            }
            let seg = self.remove_front_segment()?;
            removed = true;
            let floor = self.floor();
            for r in seg.records.iter().filter(|r| r.last_seq > floor) {
                loss.add_record(r);
                self.dropped_seq = self.dropped_seq.max(r.last_seq);
            }
        }
        if removed && let Err(e) = state::sync_dir(self.fs.as_ref(), &self.config.dir) {
            tracing::warn!(error = %e, "dropped spool segments may reappear after a power loss");
        }
        Ok(())
    }

    /// Removes the oldest segment file. If it holds the highest sequence
    /// number, the ack file must record that number first.
    fn remove_front_segment(&mut self) -> Result<SegmentMeta, SpoolError> {
        if self.segments.len() == 1 {
            if self.persisted.last_seq < self.last_seq {
                self.persist_state()?;
            }
            self.active = None;
            self.needs_truncate = false;
        }
        let Some(front) = self.segments.front() else {
            unreachable!("callers check that a segment exists")
        };
        match self.fs.remove_file(&front.path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(SpoolError::io("removal of segment", &front.path, e)),
        }
        let Some(seg) = self.segments.pop_front() else {
            unreachable!("front() was Some")
        };
        Ok(seg)
    }

    /// Deletes leading segments that hold nothing above the floor, never the
    /// last one. Failures are logged: the files are retried next time.
    fn gc(&mut self) {
        let floor = self.floor();
        while self.segments.len() > 1 && self.segments[0].is_dead(floor) {
            if let Err(e) = self.remove_front_segment() {
                tracing::warn!(error = %e, "could not delete an acknowledged spool segment");
                return;
            }
        }
    }

    /// Makes the active segment durable and stops appending to it. If the
    /// fdatasync fails, the segment is abandoned instead (see
    /// [`Spool::abandon_active`]): what it could not make durable is
    /// reported lost, and appends go on in a new segment.
    fn seal_active(&mut self) {
        if let Err(e) = self.sync_inner() {
            tracing::warn!(error = %e, "could not seal a spool segment; it was abandoned");
        }
        self.active = None;
    }

    fn create_segment(&mut self, first_seq: u64) -> Result<(), SpoolError> {
        let path = self.config.dir.join(segment::file_name(first_seq));
        let result = self
            .fs
            .open(&path, OpenMode::Create)
            .map_err(|e| SpoolError::io("creation of segment", &path, e))
            .and_then(|f| {
                f.write_all_at(&segment::header(), 0)
                    .map_err(|e| SpoolError::io("write of segment header", &path, e))?;
                f.sync_data()
                    .map_err(|e| SpoolError::io("fdatasync of segment", &path, e))?;
                state::sync_dir(self.fs.as_ref(), &self.config.dir)?;
                Ok(f)
            });
        match result {
            Ok(f) => {
                self.segments.push_back(SegmentMeta {
                    path,
                    size: SEGMENT_HEADER_LEN,
                    records: Vec::new(),
                });
                self.active = Some(f);
                self.active_sync = Arc::new(SyncState::default());
                self.active_sync
                    .synced
                    .store(SEGMENT_HEADER_LEN, Ordering::Release);
                self.last_sync = Instant::now();
                Ok(())
            }
            Err(e) => {
                let _ = self.fs.remove_file(&path);
                Err(e)
            }
        }
    }

    /// Writes a framed record holding seqs up to `last_seq` at the end of the
    /// active segment and applies the durability policy. On a failed write
    /// the partial write is cut off again. On a failed fdatasync the segment
    /// is abandoned (the record is not accepted, its numbers are consumed).
    fn write_record(&mut self, record: &[u8], last_seq: u64) -> Result<(), SpoolError> {
        let (Some(file), Some(seg)) = (&self.active, self.segments.back()) else {
            unreachable!("append creates a segment before writing")
        };
        let offset = seg.size;
        let sync_now = match self.config.durability {
            Durability::EveryBatch => true,
            Durability::Interval(d) => self.last_sync.elapsed() >= d,
            Durability::Deferred => false,
        };
        if let Err(e) = file.write_all_at(record, offset) {
            if let Err(te) = file.set_len(offset) {
                tracing::warn!(error = %te, path = %seg.path.display(),
                    "could not cut off a failed spool append; retrying before the next one");
                self.needs_truncate = true;
            }
            return Err(SpoolError::io("write to segment", &seg.path, e));
        }
        if !sync_now {
            return Ok(());
        }
        let end = offset + record.len() as u64;
        self.sync_active(end, Some(last_seq))
    }

    /// fdatasyncs the active segment, whose first `end` bytes are then
    /// durable. On failure the segment is poisoned and abandoned; `consumed`
    /// is the last seq of a record that is thereby not accepted (its numbers
    /// are used up).
    fn sync_active(&mut self, end: u64, consumed: Option<u64>) -> Result<(), SpoolError> {
        let (Some(file), Some(seg)) = (&self.active, self.segments.back()) else {
            return Ok(());
        };
        match file.sync_data() {
            Ok(()) => {
                self.active_sync.synced.fetch_max(end, Ordering::AcqRel);
                self.last_sync = Instant::now();
                Ok(())
            }
            Err(e) => {
                let err = SpoolError::io("fdatasync of segment", &seg.path, e);
                if let Some(seq) = consumed {
                    self.last_seq = seq;
                }
                self.active_sync.poisoned.store(true, Ordering::Release);
                self.abandon_active();
                Err(err)
            }
        }
    }

    fn repair_active(&mut self) -> Result<(), SpoolError> {
        if !self.needs_truncate {
            return Ok(());
        }
        if let (Some(file), Some(seg)) = (&self.active, self.segments.back()) {
            file.set_len(seg.size)
                .map_err(|e| SpoolError::io("truncation of segment", &seg.path, e))?;
        }
        self.needs_truncate = false;
        Ok(())
    }

    /// Abandons the active segment if a [`SyncHandle`] of it failed.
    fn check_poison(&mut self) {
        if self.active.is_some() && self.active_sync.poisoned.load(Ordering::Acquire) {
            self.abandon_active();
        }
    }

    /// The active segment saw a failed fdatasync, so whatever was written to
    /// it since its last successful one may be gone from the disk even if it
    /// still reads back. Those records leave the index: the ones whose
    /// callers were told they are not accepted silently, the others (with
    /// `Interval` durability: accepted, not yet synced) as one
    /// `WRITE_FAILED` loss. The file is cut back to its synced length and
    /// takes no more appends; the next append starts a new segment, so no
    /// later fdatasync can vouch for bytes written before the failure.
    fn abandon_active(&mut self) {
        let synced = self.active_sync.synced.load(Ordering::Acquire);
        let refused = self.active_sync.refused.load(Ordering::Acquire);
        self.active = None;
        self.needs_truncate = false;
        let floor = self.floor();
        let Some(seg) = self.segments.back_mut() else {
            return;
        };
        let keep = seg.records.partition_point(|r| r.offset < synced);
        let mut loss = LossBuilder::new(DataLossReason::WriteFailed);
        for r in seg.records[keep..]
            .iter()
            .filter(|r| r.last_seq > floor && r.offset >= refused)
        {
            loss.add_record(r);
        }
        let cut = seg.records.get(keep).map_or(seg.size, |r| r.offset);
        seg.records.truncate(keep);
        seg.size = cut;
        tracing::error!(path = %seg.path.display(), events_lost = loss.events(),
            "an fdatasync of a spool segment failed: what it held since its last good \
             sync is not trusted; continuing in a new segment");
        if let Err(e) = cut_back(self.fs.as_ref(), &seg.path, cut) {
            tracing::warn!(path = %seg.path.display(), error = %e,
                "could not cut back an abandoned spool segment; a restart may find (and \
                 deliver) events already reported lost");
        }
        if !loss.is_empty() {
            self.pending_losses.push(loss.finish());
        }
        if self.persisted.last_seq < self.last_seq
            && let Err(e) = self.persist_state()
        {
            tracing::warn!(error = %e, "could not record the highest spool seq");
        }
        self.rebuild_oldest();
    }

    /// Flushes appended data to stable storage now (fdatasync). With
    /// [`Durability::Interval`] call it on a timer and at shutdown.
    ///
    /// If the fdatasync fails (now, or earlier through a [`SyncHandle`]),
    /// the data it should have covered is not trusted: it leaves the spool
    /// and is reported as a `WRITE_FAILED` loss by the next `append` or
    /// `expire`, and appends continue in a new segment.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        self.check_poison();
        let result = self.sync_inner();
        self.publish();
        result
    }

    fn sync_inner(&mut self) -> Result<(), SpoolError> {
        let (Some(_), Some(seg)) = (&self.active, self.segments.back()) else {
            return Ok(());
        };
        let size = seg.size;
        if self.active_sync.synced.load(Ordering::Acquire) >= size {
            return Ok(());
        }
        self.sync_active(size, None)
    }

    /// The durability policy this spool was opened with.
    pub fn durability(&self) -> Durability {
        self.config.durability
    }

    /// A handle that makes everything appended so far to the active segment
    /// durable, usable after the caller released the spool (see
    /// [`Durability::Deferred`]). `None` when nothing was written yet.
    ///
    /// If its sync fails, the appends it covered are not accepted: the
    /// caller reports them (`WRITE_FAILED`) and should call [`Spool::sync`]
    /// soon, which drops them from the spool without a second report.
    pub fn sync_handle(&self) -> Result<Option<SyncHandle>, SpoolError> {
        match (&self.active, self.segments.back()) {
            (Some(file), Some(seg)) => Ok(Some(SyncHandle {
                file: file
                    .try_clone()
                    .map_err(|e| SpoolError::io("duplicate handle of segment", &seg.path, e))?,
                path: seg.path.clone(),
                state: Arc::clone(&self.active_sync),
                upto: seg.size,
            })),
            _ => Ok(None),
        }
    }

    /// Returns, in order, the stored batches whose `last_seq > after_seq`,
    /// stopping before the batch that would take the total encoded size over
    /// `max_bytes` (at least one batch is returned if any is stored).
    ///
    /// Reads only the records the index points at. A record that no longer
    /// reads back intact (disk error, tampering) is never returned: it and the
    /// rest of its segment are dropped and reported as a `CORRUPT` loss by the
    /// next `append` or `expire`.
    pub fn read_after(
        &mut self,
        after_seq: u64,
        max_bytes: usize,
    ) -> Result<Vec<Batch>, SpoolError> {
        self.read_with(after_seq, max_bytes, decode_indexed)
    }

    /// Like [`Spool::read_after`], but returns each batch as the encoded
    /// `owlet.v1.Batch` bytes that were stored (checksum verified, not
    /// decoded): what the uplink puts on the wire as it is.
    pub fn read_encoded_after(
        &mut self,
        after_seq: u64,
        max_bytes: usize,
    ) -> Result<Vec<EncodedBatch>, SpoolError> {
        self.read_with(after_seq, max_bytes, payload_indexed)
    }

    fn read_with<T>(
        &mut self,
        after_seq: u64,
        max_bytes: usize,
        take: fn(Vec<u8>, &RecordMeta) -> Result<T, String>,
    ) -> Result<Vec<T>, SpoolError> {
        self.check_poison();
        let result = loop {
            match self.try_read_after(after_seq, max_bytes, take) {
                Ok((batches, None)) => break Ok(batches),
                // Each retry drops at least one record, so this terminates.
                Ok((_, Some((si, ri, why)))) => self.drop_unreadable(si, ri, &why),
                Err(e) => break Err(e),
            }
        };
        self.publish();
        result
    }

    #[allow(clippy::type_complexity)]
    fn try_read_after<T>(
        &self,
        after_seq: u64,
        max_bytes: usize,
        take: fn(Vec<u8>, &RecordMeta) -> Result<T, String>,
    ) -> Result<(Vec<T>, Option<(usize, usize, String)>), SpoolError> {
        let from = after_seq.max(self.floor());
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for (si, seg) in self.segments.iter().enumerate() {
            if seg.is_dead(from) {
                continue;
            }
            let file = match self.fs.open(&seg.path, OpenMode::Read) {
                Ok(file) => file,
                // Deleted under us: its data is gone, and retrying would
                // stall the reader forever. Report it like damage.
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Ok((out, Some((si, 0, "segment file is missing".into()))));
                }
                Err(e) => return Err(SpoolError::io("open for reading of segment", &seg.path, e)),
            };
            for (ri, r) in seg.records.iter().enumerate() {
                if r.last_seq <= from {
                    continue;
                }
                let len = r.payload_len as usize;
                if !out.is_empty() && bytes + len > max_bytes {
                    return Ok((out, None));
                }
                let mut buf = vec![0u8; len + RECORD_HEADER_LEN as usize];
                file.read_exact_at(&mut buf, r.offset)
                    .or_else(|e| match e.kind() {
                        // The file got shorter than the index says: damage.
                        ErrorKind::UnexpectedEof => {
                            buf.clear();
                            Ok(())
                        }
                        _ => Err(e),
                    })
                    .map_err(|e| SpoolError::io("read of segment", &seg.path, e))?;
                match take(buf, r) {
                    Ok(batch) => {
                        bytes += len;
                        out.push(batch);
                    }
                    Err(why) => return Ok((out, Some((si, ri, why)))),
                }
            }
        }
        Ok((out, None))
    }

    /// Drops record `ri` of segment `si` and everything after it in that
    /// segment (the same rule recovery applies), truncating the file so the
    /// loss is reported once.
    fn drop_unreadable(&mut self, si: usize, ri: usize, why: &str) {
        let floor = self.floor();
        let is_last = si + 1 == self.segments.len();
        let seg = &mut self.segments[si];
        tracing::warn!(path = %seg.path.display(), offset = seg.records[ri].offset, reason = why,
            "spool record no longer reads back intact; reporting it as CORRUPT");
        let mut loss = LossBuilder::new(DataLossReason::Corrupt);
        for r in seg.records[ri..].iter().filter(|r| r.last_seq > floor) {
            loss.add_record(r);
        }
        let cut = seg.records[ri].offset;
        seg.records.truncate(ri);
        seg.size = cut;
        if let Err(e) = cut_back(self.fs.as_ref(), &seg.path, cut) {
            tracing::warn!(path = %seg.path.display(), error = %e,
                "could not truncate a damaged spool segment; recovery will report it again");
        }
        if is_last {
            // Do not append after a region we could not truncate; and keep the
            // highest seq on record now that the segment no longer holds it.
            self.active = None;
            if self.persisted.last_seq < self.last_seq
                && let Err(e) = self.persist_state()
            {
                tracing::warn!(error = %e, "could not record the highest spool seq");
            }
        }
        if !loss.is_empty() {
            self.pending_losses.push(loss.finish());
        }
        self.rebuild_oldest();
    }

    /// Records the SOC's cumulative ack and deletes segments it fully covers
    /// (except the last segment, which is reused until it rolls).
    ///
    /// Lower-than-current acks are ignored. An ack above the last assigned
    /// seq means the SOC holds numbers this spool no longer remembers (power
    /// loss under `Interval` durability, a restored backup): it is logged and
    /// numbering continues after it, so no number the SOC holds is reused.
    ///
    /// If the ack file cannot be written the error is returned, but the ack
    /// still takes effect in memory and covered segments are still deleted
    /// (freeing space on a full disk); it is retried with the next ack.
    pub fn ack(&mut self, seq: u64) -> Result<(), SpoolError> {
        let result = self.ack_inner(seq);
        self.publish();
        result
    }

    fn ack_inner(&mut self, seq: u64) -> Result<(), SpoolError> {
        if seq <= self.acked_seq {
            return Ok(());
        }
        if seq > self.last_seq {
            // The SOC holds other events under numbers this spool assigned
            // (or is about to): what is stored past the old ack cannot be
            // sent under its numbers any more. Report it instead of letting
            // the ack delete it silently.
            let mut loss = LossBuilder::new(DataLossReason::SeqConflict);
            for r in self.segments.iter().flat_map(|s| &s.records) {
                if r.last_seq > self.floor() {
                    loss.add_record(r);
                }
            }
            tracing::warn!(
                acked = seq,
                last_seq = self.last_seq,
                unsent_dropped = loss.events(),
                "the SOC acknowledged seqs this spool never assigned (data lost before a \
                 restart, a reset spool, or a cloned sensor?); numbering continues after the ack"
            );
            if !loss.is_empty() {
                self.pending_losses.push(loss.finish());
            }
            self.last_seq = seq;
        }
        self.acked_seq = seq;
        let persisted = self.persist_state();
        self.gc();
        persisted
    }

    /// Drops, oldest first, the batches whose newest event is older than
    /// `now - max_age` and returns the `SPOOL_AGE` loss (plus any loss pending
    /// from earlier calls). Stops at the first batch that is not expired.
    pub fn expire(&mut self, now: SystemTime) -> Result<Vec<DataLoss>, SpoolError> {
        self.check_poison();
        let result = self.expire_inner(now);
        self.publish();
        result
    }

    fn expire_inner(&mut self, now: SystemTime) -> Result<Vec<DataLoss>, SpoolError> {
        let max_age_us = i64::try_from(self.config.max_age.as_micros()).unwrap_or(i64::MAX);
        let cutoff = micros_since_epoch(now).saturating_sub(max_age_us);
        let floor = self.floor();
        let mut loss = LossBuilder::new(DataLossReason::SpoolAge);
        let mut new_dropped = self.dropped_seq;
        'scan: for seg in &self.segments {
            for r in seg.records.iter().filter(|r| r.last_seq > floor) {
                if r.newest_us.is_some_and(|t| t < cutoff) {
                    loss.add_record(r);
                    new_dropped = r.last_seq;
                } else {
                    break 'scan;
                }
            }
        }
        let mut out = std::mem::take(&mut self.pending_losses);
        if loss.is_empty() {
            // Segments left dead at the front (an append that dropped
            // segments for room, then failed to create its own) go here,
            // at the latest: expire runs on a timer.
            self.gc();
            return Ok(out);
        }
        self.dropped_seq = new_dropped;
        if let Err(e) = self.persist_state() {
            // The loss is reported now regardless; if the spool restarts
            // before the next successful write, some of it may be resent.
            tracing::warn!(error = %e, "could not record expired spool data");
        }
        self.gc();
        out.push(loss.finish());
        Ok(out)
    }

    /// Counters from the index; no I/O. The same values the
    /// [`StatsHandle`] holds.
    pub fn stats(&self) -> SpoolStats {
        self.stats.get()
    }

    /// Recomputes the published statistics: O(segments), from the per-segment
    /// event counts and the sliding minimum of event times.
    fn publish(&mut self) {
        let floor = self.floor();
        while self.oldest.front().is_some_and(|(seq, _)| *seq <= floor) {
            self.oldest.pop_front();
        }
        let (mut events, mut batches) = (0, 0);
        for seg in self.segments.iter().filter(|s| !s.is_dead(floor)) {
            let (e, b) = seg.live_counts(floor);
            events += e;
            batches += b;
        }
        self.stats.set(SpoolStats {
            events,
            bytes: self.total_bytes(),
            batches,
            oldest: self.oldest.front().map(|(_, us)| {
                let d = std::time::Duration::from_micros(us.unsigned_abs());
                if *us >= 0 {
                    UNIX_EPOCH + d
                } else {
                    UNIX_EPOCH - d
                }
            }),
            acked_seq: self.acked_seq,
            last_seq: self.last_seq,
        });
    }

    /// Rebuilds the sliding minimum of event times after records left the
    /// index other than from the front (damage, a failed fdatasync).
    fn rebuild_oldest(&mut self) {
        let floor = self.floor();
        self.oldest.clear();
        for r in self.segments.iter().flat_map(|s| &s.records) {
            if r.last_seq <= floor {
                continue;
            }
            if let Some(o) = r.oldest_us {
                while self.oldest.back().is_some_and(|(_, b)| *b >= o) {
                    self.oldest.pop_back();
                }
                self.oldest.push_back((r.last_seq, o));
            }
        }
    }

    /// Highest sequence number assigned (or reserved) so far.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Highest sequence number the SOC acknowledged.
    pub fn acked_seq(&self) -> u64 {
        self.acked_seq
    }

    /// The directory this spool lives in.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }
}

/// A stored batch as the encoded `owlet.v1.Batch` bytes (see
/// [`Spool::read_encoded_after`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    pub first_seq: u64,
    pub last_seq: u64,
    /// Prost encoding of the `Batch`, checksum verified.
    pub bytes: Vec<u8>,
}

/// Checks a record's header (read back through the index) against the index;
/// returns the stored checksum of its payload.
fn indexed_header(buf: &[u8], r: &RecordMeta) -> Result<u32, String> {
    if buf.len() < RECORD_HEADER_LEN as usize {
        return Err("segment is shorter than the index says".into());
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len != r.payload_len {
        return Err("record length changed on disk".into());
    }
    Ok(crc)
}

/// A record read back through the index, checksum verified, payload kept
/// encoded.
fn payload_indexed(mut bytes: Vec<u8>, r: &RecordMeta) -> Result<EncodedBatch, String> {
    let crc = indexed_header(&bytes, r)?;
    bytes.drain(..RECORD_HEADER_LEN as usize);
    if crc32fast::hash(&bytes) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(EncodedBatch {
        first_seq: r.first_seq,
        last_seq: r.last_seq,
        bytes,
    })
}

/// A record read back through the index, checksum verified and decoded.
fn decode_indexed(buf: Vec<u8>, r: &RecordMeta) -> Result<Batch, String> {
    let crc = indexed_header(&buf, r)?;
    let batch = segment::decode_payload(&buf[RECORD_HEADER_LEN as usize..], crc)?;
    if batch.first_seq != r.first_seq
        || batch.last_seq != r.last_seq
        || batch.events.len() != r.events as usize
    {
        return Err("record no longer matches the index".into());
    }
    Ok(batch)
}

impl Drop for Spool {
    /// Syncs the active segment. A failure here cannot be reported as a
    /// loss, so the data is left as it is for recovery to judge.
    fn drop(&mut self) {
        if self.active_sync.poisoned.load(Ordering::Acquire) {
            return;
        }
        if let (Some(file), Some(seg)) = (&self.active, self.segments.back())
            && self.active_sync.synced.load(Ordering::Acquire) < seg.size
            && let Err(e) = file.sync_data()
        {
            tracing::warn!(error = %e, path = %seg.path.display(), "spool sync at close failed");
        }
    }
}

/// Flushes one segment to stable storage without the [`Spool`] (see
/// [`Spool::sync_handle`]).
#[derive(Debug)]
pub struct SyncHandle {
    file: Box<dyn SpoolFile>,
    path: PathBuf,
    state: Arc<SyncState>,
    /// Segment length when the handle was made: what it vouches for.
    upto: u64,
}

impl SyncHandle {
    /// `fdatasync` of the segment. `Err` means the appends this handle
    /// covers are not durable and never will be: once an fdatasync of a
    /// segment failed, no later one is trusted for it.
    pub fn sync(self) -> Result<(), SpoolError> {
        let refuse = |e: std::io::Error| {
            self.state.poisoned.store(true, Ordering::Release);
            self.state.refused.fetch_max(self.upto, Ordering::AcqRel);
            Err(SpoolError::io("fdatasync of segment", &self.path, e))
        };
        if self.state.synced.load(Ordering::Acquire) >= self.upto {
            return Ok(());
        }
        if self.state.poisoned.load(Ordering::Acquire) {
            return refuse(std::io::Error::other(
                "an earlier fdatasync of this segment failed",
            ));
        }
        match self.file.sync_data() {
            // Another handle failed meanwhile: this success may not cover
            // the pages that failure dropped.
            Ok(()) if self.state.poisoned.load(Ordering::Acquire) => refuse(std::io::Error::other(
                "a concurrent fdatasync of this segment failed",
            )),
            Ok(()) => {
                self.state.synced.fetch_max(self.upto, Ordering::AcqRel);
                Ok(())
            }
            Err(e) => refuse(e),
        }
    }
}

/// Cuts the segment file at `path` back to `len` bytes, durably.
fn cut_back(fs: &dyn Filesystem, path: &std::path::Path, len: u64) -> std::io::Result<()> {
    let file = fs.open(path, OpenMode::ReadWrite)?;
    file.set_len(len)?;
    file.sync_data()
}
