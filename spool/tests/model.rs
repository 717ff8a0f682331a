//! Model-based test: random operations against the spool and against an
//! independent model of the design in the crate doc.
//!
//! The model keeps its own segments (which record lives where, at which
//! offset, how big each file is) and decides by itself, from the rules in the
//! crate doc, what every bound must drop: the byte bound and the batch-count
//! bound drop whole oldest segments (`SPOOL_FULL`), the age bound a prefix of
//! batches (`SPOOL_AGE`). It also decides what a failed write, fdatasync or
//! rename (injected through `FaultyFs`) must do, what a crash (drop without a
//! clean close), a power loss and a torn tail (the last segment cut inside a
//! record) leave behind, and what recovery must report.
//!
//! After every operation: the spool returns exactly the model's live batches;
//! every loss it reported matches the model's prediction exactly (reason,
//! range, counts, kinds, times); the segment files on disk have exactly the
//! sizes the model predicts (measured on the filesystem, not taken from the
//! spool) and stay within `max_bytes`; the published statistics match; and
//! every batch the spool accepted is live, acknowledged, or in exactly one
//! loss — never silently gone.
mod common;

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use common::{config, event};
use owlet_spool::fs::{Fault, FaultOp, FaultyFs};
use owlet_spool::{Batch, DataLoss, DataLossReason, Durability, Spool, SpoolConfig};
use proptest::prelude::*;
use prost::Message;

const MAX_AGE_S: u64 = 100;
const HEADER: u64 = 16;
const MAX_BATCHES: u64 = 1000;
/// Microseconds of wall clock per operation: more than the numbers one
/// operation can use (`AppendMany` takes at most 500).
const CLOCK_PER_OP_US: u64 = 1000;

/// Which bound a run stresses: bytes (small files) or the batch count
/// (tiny batches, bigger files).
#[derive(Debug, Clone, Copy)]
struct Bounds {
    segment_bytes: u64,
    max_bytes: u64,
}
const BYTES: Bounds = Bounds {
    segment_bytes: 1500,
    max_bytes: 6000,
};
const COUNT: Bounds = Bounds {
    segment_bytes: 16 << 10,
    max_bytes: 64 << 10,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    EveryBatch,
    /// Interval durability with an interval that never elapses in the test:
    /// only seals, `sync()` and a clean close sync.
    Interval,
    /// Deferred durability, synced through a `SyncHandle` after every append
    /// as the agent does.
    Deferred,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inject {
    None,
    /// The next fdatasync fails (`EIO`, unsynced data dropped).
    Sync,
    /// The next write stores half its bytes and fails (`ENOSPC`).
    Write,
}

#[derive(Debug, Clone)]
enum Op {
    /// Events as (kind, payload size, age in seconds at append time).
    Append(Vec<(u8, usize, u64)>, Inject),
    /// `n` one-event batches of `size` bytes (to reach the count bound).
    AppendMany(usize, usize),
    /// Ack `k` seqs past the current ack (may go beyond the last seq); the
    /// flag makes the ack file's rename fail.
    Ack(u64, bool),
    /// Read after the seq `k` past the ack, with a byte budget.
    Read(u64, usize),
    Sync(Inject),
    Reopen,
    /// Drop without a clean close (every file operation fails), reopen.
    Crash,
    /// Crash, and the disk keeps only what was synced.
    PowerLoss,
    /// Cut the last segment inside one of its records (picked by the
    /// number), reopen.
    Tear(u64),
    /// Let `s` seconds pass, then expire.
    Expire(u64),
}

fn inject() -> impl Strategy<Value = Inject> {
    prop_oneof![6 => Just(Inject::None), 1 => Just(Inject::Sync), 1 => Just(Inject::Write)]
}

fn op(bounds: Bounds) -> impl Strategy<Value = Op> {
    // The count runs append many tiny batches and ack rarely, so the count
    // bound is reached; the byte runs append big batches.
    let count = bounds.segment_bytes == COUNT.segment_bytes;
    let (many, ack) = if count { (6, 1) } else { (0, 2) };
    prop_oneof![
        10 => (prop::collection::vec((0u8..9, 0usize..300, 0u64..150), 1..6), inject())
            .prop_map(|(e, i)| Op::Append(e, i)),
        many => (200usize..500, 0usize..8).prop_map(|(n, s)| Op::AppendMany(n, s)),
        ack => (0u64..6, prop::bool::weighted(0.2)).prop_map(|(k, f)| Op::Ack(k, f)),
        2 => (0u64..12, 1usize..3000).prop_map(|(k, b)| Op::Read(k, b)),
        1 => inject().prop_map(Op::Sync),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        1 => Just(Op::PowerLoss),
        1 => any::<u64>().prop_map(Op::Tear),
        1 => (0u64..80).prop_map(Op::Expire),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Live,
    Acked,
    /// Dropped by the spool; its report is pending in the spool.
    Pending,
    Lost,
    /// Its report was pending when the spool closed, and went with it: the
    /// documented exception (crate doc, "Bounds"). The evidence stays: its
    /// numbers are never handed out again, so the SOC sees the gap.
    Gap,
}

#[derive(Debug)]
struct MBatch {
    batch: Batch,
    status: Status,
}

#[derive(Debug, Clone)]
struct MRec {
    /// Index into `Model::batches`.
    b: usize,
    offset: u64,
    len: u64,
    last_seq: u64,
}

#[derive(Debug)]
struct MSeg {
    name: u64,
    size: u64,
    recs: Vec<MRec>,
}

/// A loss the model expects the spool to report: its reason and batches.
#[derive(Debug)]
struct Expect {
    reason: DataLossReason,
    batches: Vec<usize>,
}

struct Model {
    mode: Mode,
    bounds: Bounds,
    batches: Vec<MBatch>,
    segs: VecDeque<MSeg>,
    active: bool,
    /// Length of the active segment covered by a successful fdatasync.
    synced: u64,
    acked: u64,
    dropped: u64,
    last: u64,
    /// Losses the spool holds until the next append or expire.
    pending: Vec<Expect>,
    now_s: u64,
    /// The wall clock the spool reads when it opens, in microseconds. It
    /// moves [`CLOCK_PER_OP_US`] per operation (and with `Expire`), never
    /// slower than numbers are handed out: the spool's documented
    /// assumption (at most one number per microsecond on average).
    clock_us: u64,
    /// What the run exercised, by name (printed with OWLET_SPOOL_MODEL_STATS).
    seen: BTreeMap<String, u64>,
}

/// What happened to one armed fault during an operation.
struct Armed(Inject);

impl Armed {
    /// Consumes the fault if it targets `op`.
    fn hits(&mut self, op: Inject) -> bool {
        if self.0 == op && op != Inject::None {
            self.0 = Inject::None;
            true
        } else {
            false
        }
    }
}

fn read_ack_file(dir: &Path) -> (u64, u64, u64) {
    match std::fs::read(dir.join("ack")) {
        Ok(b) if b.len() == 36 => {
            let at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
            (at(8), at(16), at(24))
        }
        _ => (0, 0, 0),
    }
}

impl Model {
    fn floor(&self) -> u64 {
        self.acked.max(self.dropped)
    }

    fn total_bytes(&self) -> u64 {
        self.segs.iter().map(|s| s.size).sum()
    }

    fn batch_count(&self) -> u64 {
        self.segs.iter().map(|s| s.recs.len() as u64).sum()
    }

    fn is_dead(&self, s: &MSeg) -> bool {
        s.recs.last().is_none_or(|r| r.last_seq <= self.floor())
    }

    fn live(&self) -> Vec<&Batch> {
        self.batches
            .iter()
            .filter(|b| b.status == Status::Live)
            .map(|b| &b.batch)
            .collect()
    }

    /// Live batches among the records, as a loss of `reason`.
    fn expect_loss(&mut self, reason: DataLossReason, recs: &[MRec]) {
        let batches: Vec<usize> = recs
            .iter()
            .filter(|r| r.last_seq > self.floor())
            .map(|r| r.b)
            .collect();
        for &b in &batches {
            assert_eq!(self.batches[b].status, Status::Live);
            self.batches[b].status = Status::Pending;
        }
        if !batches.is_empty() {
            self.pending.push(Expect { reason, batches });
        }
    }

    fn gc(&mut self) {
        while self.segs.len() > 1 && self.is_dead(&self.segs[0]) {
            self.segs.pop_front();
        }
    }

    /// The active segment saw a failed fdatasync: records past the synced
    /// length go, reported unless `refused_upto` covers them.
    fn abandon(&mut self, refused_upto: u64) {
        self.active = false;
        let synced = self.synced;
        let Some(seg) = self.segs.back_mut() else {
            return;
        };
        let keep = seg.recs.iter().take_while(|r| r.offset < synced).count();
        let gone = seg.recs.split_off(keep);
        seg.size = gone.first().map_or(seg.size, |r| r.offset);
        let reported: Vec<MRec> = gone
            .iter()
            .filter(|r| r.offset >= refused_upto)
            .cloned()
            .collect();
        for r in &gone {
            if r.offset < refused_upto {
                assert_eq!(self.batches[r.b].status, Status::Live);
                self.batches[r.b].status = Status::Lost; // its caller reports it
            }
        }
        self.expect_loss(DataLossReason::WriteFailed, &reported);
    }

    /// Seals the active segment (fdatasync first, if anything is unsynced).
    fn seal(&mut self, fault: &mut Armed) {
        if let Some(seg) = self.segs.back()
            && self.active
            && self.synced < seg.size
        {
            if fault.hits(Inject::Sync) {
                self.abandon(0);
            } else {
                self.synced = seg.size;
            }
        }
        self.active = false;
    }
}

/// Checks a reported loss against the model's expectation and marks the
/// batches lost.
fn take_loss(m: &mut Model, l: &DataLoss, e: &Expect) {
    assert_eq!(l.reason, e.reason as i32, "{l:?} vs {e:?}");
    *m.seen.entry(format!("{:?}", e.reason)).or_default() += 1;
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut times = Vec::new();
    let mut events = 0;
    for &i in &e.batches {
        let b = &mut m.batches[i];
        assert_eq!(b.status, Status::Pending, "a batch counted twice: {l:?}");
        b.status = Status::Lost;
        for ev in &b.batch.events {
            events += 1;
            *kinds.entry(ev.kind_name().to_string()).or_default() += 1;
            times.push(owlet_proto::timestamp_micros(ev.time.as_ref().unwrap()));
        }
    }
    let first = m.batches[e.batches[0]].batch.first_seq;
    let last = m.batches[*e.batches.last().unwrap()].batch.last_seq;
    assert_eq!((l.first_seq, l.last_seq), (first, last), "{l:?}");
    assert_eq!(
        (l.events_lost, l.batches_lost),
        (events, e.batches.len() as u64),
        "{l:?}"
    );
    assert_eq!(
        l.lost_by_kind
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect::<BTreeMap<_, _>>(),
        kinds
    );
    let us = |t: &owlet_proto::Timestamp| owlet_proto::timestamp_micros(t);
    assert_eq!(l.oldest.map(|t| us(&t)), times.iter().copied().min());
    assert_eq!(l.newest.map(|t| us(&t)), times.iter().copied().max());
}

/// Checks the losses the spool handed out against the model's pending ones.
fn take_pending(m: &mut Model, got: &[DataLoss]) {
    let want = std::mem::take(&mut m.pending);
    assert_eq!(got.len(), want.len(), "losses {got:?}, expected {want:?}");
    for (l, e) in got.iter().zip(&want) {
        take_loss(m, l, e);
    }
}

fn segment_sizes_on_disk(dir: &Path) -> Vec<(u64, u64)> {
    common::segment_files(dir)
        .iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            (name, std::fs::metadata(p).unwrap().len())
        })
        .collect()
}

fn check(m: &Model, spool: &mut Spool, dir: &Path) {
    let got = spool.read_after(0, usize::MAX).unwrap();
    let live = m.live();
    assert_eq!(
        got.len(),
        live.len(),
        "stored batches differ from the model"
    );
    for (g, w) in got.iter().zip(&live) {
        assert_eq!(&g, w, "stored batch differs from the model");
    }
    // The files, measured on the filesystem.
    let on_disk = segment_sizes_on_disk(dir);
    let want: Vec<(u64, u64)> = m.segs.iter().map(|s| (s.name, s.size)).collect();
    assert_eq!(
        on_disk, want,
        "segment files (name, size) differ from the model"
    );
    let bytes: u64 = on_disk.iter().map(|(_, s)| s).sum();
    assert!(bytes <= m.bounds.max_bytes, "{bytes} bytes on disk");
    assert!(m.batch_count() <= MAX_BATCHES);
    // The published statistics.
    let st = spool.stats_handle().get();
    let live_events: u64 = live.iter().map(|b| b.events.len() as u64).sum();
    assert_eq!(st.events, live_events);
    assert_eq!(st.batches, live.len() as u64);
    assert_eq!(st.bytes, bytes);
    assert_eq!(st.acked_seq, m.acked);
    assert_eq!(st.last_seq, m.last);
    let oldest = live
        .iter()
        .flat_map(|b| &b.events)
        .map(|e| owlet_proto::timestamp_micros(e.time.as_ref().unwrap()))
        .min();
    assert_eq!(
        st.oldest,
        oldest.map(|us| UNIX_EPOCH + Duration::from_micros(us as u64))
    );
}

fn cfg(dir: &Path, mode: Mode, bounds: Bounds) -> SpoolConfig {
    let mut c = config(dir, bounds.segment_bytes, bounds.max_bytes);
    c.max_age = Duration::from_secs(MAX_AGE_S);
    c.max_batches = MAX_BATCHES;
    c.durability = match mode {
        Mode::EveryBatch => Durability::EveryBatch,
        Mode::Interval => Durability::Interval(Duration::from_secs(3600)),
        Mode::Deferred => Durability::Deferred,
    };
    c
}

/// Opens the spool with the model's clock, never the machine's: where
/// numbering starts after a fresh or distrusted recovery follows from the
/// run alone, so a failing run fails the same way on every machine and day.
fn open(dir: &Path, m: &Model, fs: &FaultyFs) -> (Spool, Vec<DataLoss>) {
    let now = UNIX_EPOCH + Duration::from_micros(m.clock_us);
    Spool::open_at(cfg(dir, m.mode, m.bounds), Arc::new(fs.clone()), now).unwrap()
}

/// One append, applied to the model first, then to the spool.
fn append(m: &mut Model, spool: &mut Spool, fs: &FaultyFs, spec: &[(u8, usize, u64)], inj: Inject) {
    let events: Vec<_> = spec
        .iter()
        .map(|&(k, size, age)| event(k, size, ((m.now_s - age) * 1_000_000) as i64))
        .collect();
    let first_seq = m.last + 1;
    let mut batch = Batch {
        first_seq,
        last_seq: m.last + events.len() as u64,
        events: events.clone(),
    };
    for (i, e) in batch.events.iter_mut().enumerate() {
        e.seq = first_seq + i as u64;
    }
    let rec_len = batch.encoded_len() as u64 + 8;

    // The model's prediction, step by step as the crate doc describes.
    let mut fault = Armed(inj);
    let roll = match m.segs.back() {
        Some(seg) if m.active => seg.size > HEADER && seg.size + rec_len > m.bounds.segment_bytes,
        _ => true,
    };
    if roll {
        m.seal(&mut fault);
    }
    let mut full: Vec<MRec> = Vec::new();
    let mut refused = false;
    loop {
        let need = rec_len + if m.active { 0 } else { HEADER };
        if m.segs.is_empty()
            || (m.total_bytes() + need <= m.bounds.max_bytes && m.batch_count() < MAX_BATCHES)
        {
            break;
        }
        if m.segs.len() == 1 && m.active {
            m.seal(&mut fault);
            continue;
        }
        if m.segs.len() == 1 && fault.0 != Inject::None {
            // Dropping the segment holding the highest seq first records it
            // in the ack file: the armed fault hits that write.
            let (_, _, persisted_last) = read_ack_file(spool.dir());
            if persisted_last < m.last {
                refused = true;
                break;
            }
        }
        let seg = m.segs.pop_front().unwrap();
        let floor = m.floor();
        for r in seg.recs.iter().filter(|r| r.last_seq > floor) {
            full.push(r.clone());
            m.dropped = m.dropped.max(r.last_seq);
        }
    }
    // The SPOOL_FULL report precedes nothing else this call adds.
    if !full.is_empty() {
        let batches: Vec<usize> = full.iter().map(|r| r.b).collect();
        for &b in &batches {
            m.batches[b].status = Status::Pending;
        }
        m.pending.push(Expect {
            reason: DataLossReason::SpoolFull,
            batches,
        });
    }
    if !refused && !m.active {
        // Creating a segment writes and syncs its header.
        if fault.hits(Inject::Write) || fault.hits(Inject::Sync) {
            refused = true;
        } else {
            m.segs.push_back(MSeg {
                name: first_seq,
                size: HEADER,
                recs: Vec::new(),
            });
            m.active = true;
            m.synced = HEADER;
            m.gc();
        }
    }
    let mut consumed = false;
    if !refused && fault.hits(Inject::Write) {
        refused = true;
    }
    if !refused && m.mode == Mode::EveryBatch && fault.hits(Inject::Sync) {
        m.abandon(0);
        refused = true;
        consumed = true;
    }

    if inj != Inject::None {
        match inj {
            Inject::Sync => fs.fail(FaultOp::Sync, Fault::Io, 1),
            Inject::Write => fs.fail(FaultOp::Write, Fault::NoSpace, 1),
            Inject::None => {}
        }
    }
    let result = spool.append(events);
    if m.batch_count() >= MAX_BATCHES - 1 {
        *m.seen.entry("near the count bound".into()).or_default() += 1;
    }
    if refused {
        *m.seen.entry("refused append".into()).or_default() += 1;
        fs.heal();
        assert!(
            result.is_err(),
            "the model expected a refused append: {result:?}"
        );
        if consumed {
            m.last = batch.last_seq;
        }
        assert_eq!(
            spool.last_seq(),
            m.last,
            "seqs consumed by a refused append"
        );
        return;
    }
    let a = result.unwrap_or_else(|e| panic!("append failed: {e}"));
    assert_eq!((a.first_seq, a.last_seq), (batch.first_seq, batch.last_seq));
    m.last = batch.last_seq;
    let b = m.batches.len();
    m.batches.push(MBatch {
        batch,
        status: Status::Live,
    });
    let seg = m.segs.back_mut().unwrap();
    seg.recs.push(MRec {
        b,
        offset: seg.size,
        len: rec_len,
        last_seq: a.last_seq,
    });
    seg.size += rec_len;
    if m.mode == Mode::EveryBatch {
        m.synced = seg.size;
    }
    take_pending(m, &a.losses);
    if m.mode == Mode::Deferred {
        // As the agent does: flush through the handle, and on failure tell
        // the spool (the caller reports the batch, so the spool does not).
        let handle = spool.sync_handle().unwrap().expect("an active segment");
        let end = m.segs.back().unwrap().size;
        if fault.hits(Inject::Sync) {
            assert!(handle.sync().is_err());
            m.abandon(end);
            spool.sync().unwrap();
        } else {
            handle.sync().unwrap();
            m.synced = end;
        }
    }
    fs.heal();
}

/// After a reopen: what recovery keeps, given the ack file on disk.
fn reopened(m: &mut Model, spool: &Spool) {
    for e in std::mem::take(&mut m.pending) {
        for b in e.batches {
            m.batches[b].status = Status::Gap;
        }
    }
    let (acked, dropped, _) = read_ack_file(spool.dir());
    m.acked = acked;
    m.dropped = dropped;
    for seg in &m.segs {
        for r in &seg.recs {
            let b = &mut m.batches[r.b];
            if r.last_seq > m.acked.max(m.dropped) && b.status == Status::Acked {
                // The ack never reached the disk: it is sent again.
                b.status = Status::Live;
            }
        }
    }
    m.gc();
    m.active = !m.segs.is_empty();
    m.synced = m.segs.back().map_or(0, |s| s.size);
    assert!(spool.last_seq() >= m.last, "numbering went backwards");
    m.last = spool.last_seq();
}

fn run(ops: Vec<Op>, mode: Mode, bounds: Bounds) {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let mut m = Model {
        mode,
        bounds,
        batches: Vec::new(),
        segs: VecDeque::new(),
        active: false,
        synced: 0,
        acked: 0,
        dropped: 0,
        last: 0,
        pending: Vec::new(),
        now_s: 1_000_000,
        clock_us: 1_800_000_000_000_000,
        seen: BTreeMap::new(),
    };
    let (mut spool, losses) = open(dir.path(), &m, &fs);
    assert!(losses.is_empty());
    m.last = spool.last_seq();
    for op in ops {
        m.clock_us += CLOCK_PER_OP_US;
        match op {
            Op::Append(spec, inj) => append(&mut m, &mut spool, &fs, &spec, inj),
            Op::AppendMany(n, size) => {
                for i in 0..n {
                    append(&mut m, &mut spool, &fs, &[(i as u8, size, 0)], Inject::None);
                }
            }
            Op::Ack(k, fail_rename) => {
                let front = m.live().first().map_or(m.last, |b| b.first_seq - 1);
                let seq = m.acked.max(front) + k;
                let conflict = seq > m.last;
                if conflict {
                    // The SOC acked numbers never assigned: what is live was
                    // never sent under those numbers and is reported.
                    let recs: Vec<MRec> = m.segs.iter().flat_map(|s| s.recs.clone()).collect();
                    m.expect_loss(DataLossReason::SeqConflict, &recs);
                }
                if fail_rename && !conflict {
                    fs.fail(FaultOp::Rename, Fault::Io, 1);
                    assert!(spool.ack(seq).is_err() || seq <= m.acked);
                    fs.heal();
                } else {
                    spool.ack(seq).unwrap();
                }
                if conflict {
                    // The report waits in the spool; expire hands it out.
                    let losses = spool
                        .expire(UNIX_EPOCH + Duration::from_secs(m.now_s))
                        .unwrap();
                    take_pending(&mut m, &losses);
                }
                if seq > m.acked {
                    m.acked = seq;
                    m.last = m.last.max(seq);
                }
                for b in &mut m.batches {
                    if b.status == Status::Live && b.batch.last_seq <= m.acked {
                        b.status = Status::Acked;
                    }
                }
                m.gc();
            }
            Op::Read(k, budget) => {
                let after = m.acked + k;
                let got = spool.read_after(after, budget).unwrap();
                let live = m.live();
                let want: Vec<&&Batch> = live.iter().filter(|b| b.last_seq > after).collect();
                assert_eq!(
                    got.len().min(1),
                    want.len().min(1),
                    "at least one batch when any"
                );
                let mut used = 0usize;
                for (i, b) in got.iter().enumerate() {
                    assert_eq!(&b, want[i]);
                    used += b.encoded_len();
                }
                assert!(got.len() <= 1 || used <= budget, "over budget");
                if let Some(next) = want.get(got.len()) {
                    assert!(used + next.encoded_len() > budget, "stopped early");
                }
            }
            Op::Sync(inj) => {
                let mut fault = Armed(inj);
                let unsynced = m.active && m.segs.back().is_some_and(|s| m.synced < s.size);
                let fails = unsynced && fault.hits(Inject::Sync);
                if inj == Inject::Sync {
                    fs.fail(FaultOp::Sync, Fault::Io, 1);
                }
                let result = spool.sync();
                fs.heal();
                if fails {
                    assert!(result.is_err());
                    m.abandon(0);
                } else {
                    result.unwrap();
                    if unsynced {
                        m.synced = m.segs.back().unwrap().size;
                    }
                }
            }
            Op::Reopen | Op::Crash | Op::PowerLoss => {
                let power = op_is_power_loss(&op) && m.mode != Mode::Interval;
                if !matches!(op, Op::Reopen) {
                    fs.freeze();
                }
                drop(spool);
                if power {
                    // Everything accepted was synced (EveryBatch, or the
                    // handle after each append): nothing may go.
                    fs.power_cut();
                }
                fs.heal();
                let (s, losses) = open(dir.path(), &m, &fs);
                assert!(losses.is_empty(), "{losses:?}");
                spool = s;
                reopened(&mut m, &spool);
            }
            Op::Tear(pick) => {
                let Some(seg) = m.segs.back() else { continue };
                let Some(seg_recs) = (!seg.recs.is_empty()).then_some(seg.recs.clone()) else {
                    continue;
                };
                let idx = (pick % seg_recs.len() as u64) as usize;
                let r = &seg_recs[idx];
                let cut = r.offset + 1 + (pick >> 32) % (r.len - 1);
                let path = dir.path().join(format!("{:020}.seg", seg.name));
                drop(spool);
                std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_len(cut)
                    .unwrap();
                // Recovery must report the torn tail, open-ended, from the
                // first seq the cut record could hold.
                let prev_hwm = m
                    .segs
                    .iter()
                    .rev()
                    .skip(1)
                    .flat_map(|s| s.recs.last())
                    .map(|r| r.last_seq)
                    .next();
                let from = if idx > 0 {
                    seg_recs[idx - 1].last_seq + 1
                } else {
                    seg.name.max(prev_hwm.map_or(0, |h| h + 1))
                };
                let (s, losses) = open(dir.path(), &m, &fs);
                spool = s;
                assert_eq!(losses.len(), 1, "a torn tail must be reported: {losses:?}");
                *m.seen.entry("torn tail".into()).or_default() += 1;
                let l = &losses[0];
                assert_eq!(l.reason, DataLossReason::Corrupt as i32, "{l:?}");
                assert_eq!((l.first_seq, l.last_seq), (from, 0), "{l:?}");
                for r in &seg_recs[idx..] {
                    if m.batches[r.b].status == Status::Live {
                        m.batches[r.b].status = Status::Lost;
                    }
                }
                let seg = m.segs.back_mut().unwrap();
                seg.recs.truncate(idx);
                seg.size = r.offset;
                reopened(&mut m, &spool);
            }
            Op::Expire(s) => {
                m.now_s += s;
                m.clock_us += s * 1_000_000;
                let cutoff = ((m.now_s - MAX_AGE_S) * 1_000_000) as i64;
                let expired: Vec<MRec> = m
                    .segs
                    .iter()
                    .flat_map(|s| s.recs.clone())
                    .filter(|r| r.last_seq > m.floor())
                    .take_while(|r| {
                        m.batches[r.b]
                            .batch
                            .events
                            .iter()
                            .map(|e| owlet_proto::timestamp_micros(e.time.as_ref().unwrap()))
                            .max()
                            .unwrap()
                            < cutoff
                    })
                    .collect();
                m.expect_loss(DataLossReason::SpoolAge, &expired);
                if let Some(r) = expired.last() {
                    m.dropped = r.last_seq;
                }
                let losses = spool
                    .expire(UNIX_EPOCH + Duration::from_secs(m.now_s))
                    .unwrap();
                take_pending(&mut m, &losses);
                m.gc();
            }
        }
        check(&m, &mut spool, dir.path());
    }
    // Conservation: every accepted batch is live, acknowledged, or lost in
    // exactly one report (take_loss refuses a second one).
    let count = |s| m.batches.iter().filter(|b| b.status == s).count();
    if std::env::var_os("OWLET_SPOOL_MODEL_STATS").is_some() {
        eprintln!(
            "{mode:?}: live {} acked {} lost {} gap {} segments {} seen {:?}",
            count(Status::Live),
            count(Status::Acked),
            count(Status::Lost),
            count(Status::Gap),
            m.segs.len(),
            m.seen
        );
    }
}

fn op_is_power_loss(op: &Op) -> bool {
    matches!(op, Op::PowerLoss)
}

fn ops(bounds: Bounds, max: usize) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(bounds), 1..max)
}

/// The seed every run uses unless `PROPTEST_RNG_SEED` names another: CI
/// runs the same cases on every machine, and a failure reproduces with the
/// seed alone. Explore with other seeds (`PROPTEST_RNG_SEED=$RANDOM`), and
/// check the regression files proptest writes in.
const SEED: u64 = 0x0000_e1e7_5001;

fn proptest_config(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig {
        cases,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = proptest::test_runner::RngSeed::Fixed(SEED);
    }
    c
}

proptest! {
    #![proptest_config(proptest_config(96))]

    #[test]
    fn interval_durability_matches_the_model(ops in ops(BYTES, 80)) {
        run(ops, Mode::Interval, BYTES);
    }

    #[test]
    fn every_batch_durability_matches_the_model(ops in ops(BYTES, 40)) {
        run(ops, Mode::EveryBatch, BYTES);
    }

    #[test]
    fn deferred_durability_matches_the_model(ops in ops(BYTES, 40)) {
        run(ops, Mode::Deferred, BYTES);
    }
}

proptest! {
    #![proptest_config(proptest_config(24))]

    #[test]
    fn the_batch_count_bound_matches_the_model(ops in ops(COUNT, 20)) {
        run(ops, Mode::Interval, COUNT);
    }
}
