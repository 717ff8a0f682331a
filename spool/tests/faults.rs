//! Disk failures injected through the filesystem seam (`FaultyFs`): a failed
//! fdatasync never leaves a batch counted as accepted, a later successful
//! fdatasync never vouches for bytes written before a failed one, failed
//! writes and renames leave the spool consistent, and statistics stay
//! readable while a blocking thread holds the spool across an fsync.
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use common::{config, event, segment_files};
use owlet_spool::fs::{Fault, FaultOp, FaultyFs};
use owlet_spool::{Batch, DataLossReason, Durability, Spool, SpoolConfig, SpoolError};

fn open(cfg: SpoolConfig, fs: &FaultyFs) -> Spool {
    let (spool, losses) = Spool::open_with(cfg, Arc::new(fs.clone())).unwrap();
    assert!(losses.is_empty(), "{losses:?}");
    spool
}

fn cfg(dir: &std::path::Path, durability: Durability) -> SpoolConfig {
    let mut c = config(dir, 4096, 1 << 20);
    c.durability = durability;
    c
}

fn all(spool: &mut Spool) -> Vec<Batch> {
    spool.read_after(0, usize::MAX).unwrap()
}

fn last_seqs(batches: &[Batch]) -> Vec<u64> {
    batches.iter().map(|b| b.last_seq).collect()
}

/// `EveryBatch`: the fdatasync of the append fails. The append is refused,
/// the batch is not readable (the retried sync that would now succeed does
/// not bring it back), its numbers are not reused, and appends go on in a
/// new segment. Reopening finds the synced batches and nothing else.
#[test]
fn every_batch_a_failed_fdatasync_refuses_the_append() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let mut spool = open(cfg(dir.path(), Durability::EveryBatch), &fs);
    let a = spool.append(vec![event(0, 20, 1)]).unwrap();
    let segs_before = segment_files(dir.path());
    fs.fail(FaultOp::Sync, Fault::Io, 1);
    let err = spool.append(vec![event(1, 20, 2)]).unwrap_err();
    assert!(matches!(err, SpoolError::Io { action, .. } if action.contains("fdatasync")));
    // The disk works again: a sync now succeeds, and must not accept it.
    spool.sync().unwrap();
    assert_eq!(last_seqs(&all(&mut spool)), vec![a.last_seq]);
    let c = spool.append(vec![event(2, 20, 3)]).unwrap();
    assert!(
        c.first_seq > a.last_seq + 1,
        "the refused batch's seq was reused"
    );
    assert!(
        c.losses.is_empty(),
        "the caller reports a refused batch: {c:?}"
    );
    assert_eq!(
        segment_files(dir.path()).len(),
        segs_before.len() + 1,
        "appends must continue in a fresh segment"
    );
    assert_eq!(last_seqs(&all(&mut spool)), vec![a.last_seq, c.last_seq]);
    drop(spool);
    let mut spool = open(cfg(dir.path(), Durability::EveryBatch), &fs);
    assert_eq!(last_seqs(&all(&mut spool)), vec![a.last_seq, c.last_seq]);
}

/// `Interval`: batches accepted since the last sync are in the page cache
/// only. When the sync fails they are dropped and reported as one
/// `WRITE_FAILED` loss; batches synced before stay.
#[test]
fn interval_a_failed_sync_reports_the_unsynced_batches_lost() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let mut spool = open(
        cfg(dir.path(), Durability::Interval(Duration::from_secs(3600))),
        &fs,
    );
    let a = spool.append(vec![event(0, 20, 1)]).unwrap();
    spool.sync().unwrap();
    let b = spool
        .append(vec![event(1, 20, 2), event(3, 20, 2)])
        .unwrap();
    let c = spool.append(vec![event(2, 20, 3)]).unwrap();
    fs.fail(FaultOp::Sync, Fault::Io, 1);
    assert!(spool.sync().is_err());
    assert_eq!(last_seqs(&all(&mut spool)), vec![a.last_seq]);
    assert_eq!(spool.stats().events, 1);
    let d = spool.append(vec![event(4, 20, 4)]).unwrap();
    assert_eq!(d.losses.len(), 1, "{:?}", d.losses);
    let l = &d.losses[0];
    assert_eq!(l.reason, DataLossReason::WriteFailed as i32);
    assert_eq!((l.first_seq, l.last_seq), (b.first_seq, c.last_seq));
    assert_eq!((l.events_lost, l.batches_lost), (3, 2));
    spool.sync().unwrap();
    drop(spool);
    let mut spool = open(
        cfg(dir.path(), Durability::Interval(Duration::from_secs(3600))),
        &fs,
    );
    assert_eq!(last_seqs(&all(&mut spool)), vec![a.last_seq, d.last_seq]);
}

/// `Deferred` (what the agent's `every_batch` uses): the handle's sync
/// fails. A second handle on the same segment must fail too even though the
/// disk answers again, and the spool drops the batch without reporting it
/// itself (its caller reports it).
#[test]
fn deferred_a_failed_handle_sync_poisons_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let mut spool = open(cfg(dir.path(), Durability::Deferred), &fs);
    let a = spool.append(vec![event(0, 20, 1)]).unwrap();
    spool.sync_handle().unwrap().unwrap().sync().unwrap();
    let b = spool.append(vec![event(1, 20, 2)]).unwrap();
    let h1 = spool.sync_handle().unwrap().unwrap();
    let h2 = spool.sync_handle().unwrap().unwrap();
    fs.fail(FaultOp::Sync, Fault::Io, 1);
    assert!(h1.sync().is_err());
    let syncs = fs.count(FaultOp::Sync);
    assert!(
        h2.sync().is_err(),
        "a sync after a failed one must not accept the segment"
    );
    assert_eq!(fs.count(FaultOp::Sync), syncs, "it must not even try");
    spool.sync().unwrap();
    assert_eq!(last_seqs(&all(&mut spool)), vec![a.last_seq]);
    let c = spool.append(vec![event(2, 20, 3)]).unwrap();
    assert!(c.losses.is_empty(), "reported twice: {:?}", c.losses);
    assert!(c.first_seq > b.last_seq);
    spool.sync_handle().unwrap().unwrap().sync().unwrap();
    drop(spool);
    let mut spool = open(cfg(dir.path(), Durability::Deferred), &fs);
    assert_eq!(last_seqs(&all(&mut spool)), vec![a.last_seq, c.last_seq]);
}

/// A failed handle sync noticed by the next append: the batch appended
/// after it (not covered by the failed handle) is reported by the spool.
#[test]
fn deferred_appends_after_a_failed_sync_go_to_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let mut spool = open(cfg(dir.path(), Durability::Deferred), &fs);
    let a = spool.append(vec![event(0, 20, 1)]).unwrap();
    let h = spool.sync_handle().unwrap().unwrap();
    let b = spool.append(vec![event(1, 20, 2)]).unwrap(); // not covered by h
    fs.fail(FaultOp::Sync, Fault::Io, 1);
    assert!(h.sync().is_err());
    let c = spool.append(vec![event(2, 20, 3)]).unwrap();
    assert_eq!(c.losses.len(), 1, "{:?}", c.losses);
    assert_eq!(c.losses[0].reason, DataLossReason::WriteFailed as i32);
    assert_eq!(
        (c.losses[0].first_seq, c.losses[0].last_seq),
        (b.first_seq, b.last_seq)
    );
    assert!(a.last_seq < b.first_seq);
    assert_eq!(last_seqs(&all(&mut spool)), vec![c.last_seq]);
}

/// The fdatasync that seals a full segment fails: its unsynced batches are
/// reported, and the append that rolled goes on in a new segment.
#[test]
fn a_failed_seal_abandons_the_segment_and_the_append_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let mut spool = open(
        cfg(dir.path(), Durability::Interval(Duration::from_secs(3600))),
        &fs,
    );
    let mut appended = Vec::new();
    while segment_files(dir.path()).len() < 2 || appended.len() < 3 {
        appended.push(spool.append(vec![event(0, 900, 1)]).unwrap().last_seq);
        if segment_files(dir.path()).len() == 2 {
            break;
        }
    }
    // The next append that rolls must seal the second segment.
    spool.sync().unwrap();
    let synced = all(&mut spool).len();
    let mut unsynced = Vec::new();
    loop {
        let segs = segment_files(dir.path()).len();
        fs.fail(FaultOp::Sync, Fault::Io, 1);
        let a = spool.append(vec![event(1, 900, 2)]).unwrap();
        if segment_files(dir.path()).len() > segs {
            assert_eq!(a.losses.len(), 1, "{:?}", a.losses);
            let l = &a.losses[0];
            assert_eq!(l.reason, DataLossReason::WriteFailed as i32);
            assert_eq!(l.batches_lost, unsynced.len() as u64);
            let got = all(&mut spool);
            assert_eq!(got.len(), synced + 1);
            assert_eq!(got.last().unwrap().last_seq, a.last_seq);
            break;
        }
        fs.heal();
        unsynced.push(a.last_seq);
    }
}

/// A write that fails half way (disk full) is cut off again; the retry
/// gets the same numbers and the spool reopens clean.
#[test]
fn a_short_write_on_a_full_disk_is_cut_off_and_can_be_retried() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let mut spool = open(cfg(dir.path(), Durability::EveryBatch), &fs);
    let a = spool.append(vec![event(0, 20, 1)]).unwrap();
    fs.fail(FaultOp::Write, Fault::NoSpace, 1);
    let err = spool.append(vec![event(1, 200, 2)]).unwrap_err();
    assert!(err.to_string().contains("No space"), "{err}");
    let b = spool.append(vec![event(1, 200, 2)]).unwrap();
    assert_eq!(b.first_seq, a.last_seq + 1);
    drop(spool);
    let mut spool = open(cfg(dir.path(), Durability::EveryBatch), &fs);
    assert_eq!(last_seqs(&all(&mut spool)), vec![a.last_seq, b.last_seq]);
}

/// A failed rename of the ack file: the ack is returned as an error, still
/// takes effect in memory, and the next ack persists it.
#[test]
fn a_failed_ack_rename_is_retried_by_the_next_ack() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let mut spool = open(cfg(dir.path(), Durability::EveryBatch), &fs);
    let a = spool.append(vec![event(0, 20, 1)]).unwrap();
    let b = spool.append(vec![event(0, 20, 1)]).unwrap();
    fs.fail(FaultOp::Rename, Fault::Io, 1);
    assert!(spool.ack(a.last_seq).is_err());
    assert_eq!(spool.acked_seq(), a.last_seq);
    assert_eq!(last_seqs(&all(&mut spool)), vec![b.last_seq]);
    drop(spool);
    // The ack never reached the disk: a reopen resends (the SOC drops dups).
    let mut spool = open(cfg(dir.path(), Durability::EveryBatch), &fs);
    assert_eq!(spool.acked_seq(), 0);
    assert_eq!(all(&mut spool).len(), 2);
    spool.ack(a.last_seq).unwrap();
    drop(spool);
    let spool = open(cfg(dir.path(), Durability::EveryBatch), &fs);
    assert_eq!(spool.acked_seq(), a.last_seq);
}

/// Statistics are readable while another thread holds the spool (in a
/// `Mutex`, as the agent does) inside an fdatasync that does not return.
#[test]
fn stats_are_readable_while_a_sync_holds_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let mut spool = open(cfg(dir.path(), Durability::EveryBatch), &fs);
    let a = spool.append(vec![event(0, 20, 1)]).unwrap();
    let stats = spool.stats_handle();
    let spool = Arc::new(Mutex::new(spool));
    let gate = fs.block_next_sync();
    let writer = {
        let spool = Arc::clone(&spool);
        std::thread::spawn(move || {
            spool
                .lock()
                .unwrap()
                .append(vec![event(1, 20, 2), event(2, 20, 2)])
                .unwrap()
        })
    };
    gate.wait_entered();
    assert!(spool.try_lock().is_err(), "the writer holds the spool");
    let during = stats.get();
    assert_eq!((during.events, during.last_seq), (1, a.last_seq));
    gate.release();
    let b = writer.join().unwrap();
    let after = stats.get();
    assert_eq!((after.events, after.last_seq), (3, b.last_seq));
    assert_eq!(after, spool.lock().unwrap().stats());
}

/// After a power loss everything an `EveryBatch` append accepted is there.
#[test]
fn power_loss_keeps_every_accepted_batch() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let mut spool = open(cfg(dir.path(), Durability::EveryBatch), &fs);
    let mut accepted = Vec::new();
    for i in 0..20u8 {
        accepted.push(
            spool
                .append(vec![event(i, 300, i64::from(i))])
                .unwrap()
                .last_seq,
        );
    }
    fs.freeze();
    drop(spool);
    fs.power_cut();
    let mut spool = open(cfg(dir.path(), Durability::EveryBatch), &fs);
    assert_eq!(last_seqs(&all(&mut spool)), accepted);
    let _ = spool.expire(UNIX_EPOCH).unwrap();
}
