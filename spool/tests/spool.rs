//! API-level tests: sequence base, lock, acks, bounds (SPOOL_FULL, SPOOL_AGE),
//! argument errors.
mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{config, event, now_us, segment_files};
use owlet_spool::{Batch, DataLossReason, Spool, SpoolError};

fn all(spool: &mut Spool) -> Vec<Batch> {
    spool.read_after(0, usize::MAX).unwrap()
}

#[test]
fn fresh_spool_numbers_from_the_clock_and_reopen_continues() {
    let dir = tempfile::tempdir().unwrap();
    let before = now_us() as u64;
    let (mut spool, losses) = Spool::open(config(dir.path(), 4096, 1 << 20)).unwrap();
    assert!(losses.is_empty());
    let a = spool
        .append(vec![event(0, 10, 1), event(1, 10, 2)])
        .unwrap();
    let after = now_us() as u64;
    assert!(
        a.first_seq >= before && a.first_seq <= after,
        "{a:?} not in [{before}, {after}]"
    );
    assert_eq!(a.last_seq, a.first_seq + 1);
    let b = all(&mut spool);
    assert_eq!(b.len(), 1);
    assert_eq!(
        b[0].events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![a.first_seq, a.last_seq]
    );
    drop(spool);

    let (mut spool, _) = Spool::open(config(dir.path(), 4096, 1 << 20)).unwrap();
    assert_eq!(spool.last_seq(), a.last_seq);
    let c = spool.append(vec![event(2, 10, 3)]).unwrap();
    assert_eq!(c.first_seq, a.last_seq + 1);
    // Everything acked and reopened: numbering still continues, no clock jump.
    spool.ack(c.last_seq).unwrap();
    drop(spool);
    let (mut spool, _) = Spool::open(config(dir.path(), 4096, 1 << 20)).unwrap();
    assert_eq!(
        spool.append(vec![event(2, 10, 3)]).unwrap().first_seq,
        c.last_seq + 1
    );
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(config(dir.path(), 4096, 1 << 20)).unwrap();
    let err = Spool::open(config(dir.path(), 4096, 1 << 20)).unwrap_err();
    assert!(matches!(err, SpoolError::Locked { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(msg.contains("another owlet"), "{msg}");
    drop(spool);
    Spool::open(config(dir.path(), 4096, 1 << 20)).unwrap();
}

#[test]
fn open_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = Spool::open(config(&file, 4096, 1 << 20)).unwrap_err();
    assert!(err.to_string().contains("not-a-dir"), "{err}");
    let err = Spool::open(config(dir.path(), 4096, 100)).unwrap_err();
    assert!(matches!(err, SpoolError::Config(_)), "{err:?}");
}

#[test]
fn ack_deletes_covered_segments_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(config(dir.path(), 600, 1 << 20)).unwrap();
    let mut appended = Vec::new();
    for i in 0..20u8 {
        appended.push(spool.append(vec![event(i, 200, 1)]).unwrap());
    }
    let segs = segment_files(dir.path());
    assert!(segs.len() >= 5, "{segs:?}");

    // Ack in the middle: older segments go, the rest stays readable.
    let mid = appended[10].last_seq;
    spool.ack(mid).unwrap();
    let left = segment_files(dir.path());
    assert!(left.len() < segs.len());
    let batches = all(&mut spool);
    assert_eq!(batches.first().unwrap().first_seq, appended[11].first_seq);
    assert_eq!(batches.len(), 9);
    assert_eq!(spool.stats().batches, 9);
    assert_eq!(spool.stats().acked_seq, mid);
    // Lower acks are ignored.
    spool.ack(mid - 3).unwrap();
    assert_eq!(spool.acked_seq(), mid);

    drop(spool);
    let (mut spool, _) = Spool::open(config(dir.path(), 600, 1 << 20)).unwrap();
    assert_eq!(spool.acked_seq(), mid);
    assert_eq!(all(&mut spool).len(), 9);

    // Ack everything: only the last segment file remains, and it is empty of live data.
    let last = spool.last_seq();
    spool.ack(last).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert!(all(&mut spool).is_empty());
    assert_eq!(spool.stats().events, 0);

    // An ack above anything assigned moves numbering past it.
    spool.ack(last + 100).unwrap();
    assert_eq!(spool.last_seq(), last + 100);
    assert_eq!(
        spool.append(vec![event(0, 1, 1)]).unwrap().first_seq,
        last + 101
    );
    drop(spool);
    let (spool, _) = Spool::open(config(dir.path(), 600, 1 << 20)).unwrap();
    assert_eq!(spool.last_seq(), last + 101);
}

#[test]
fn an_ack_above_every_assigned_seq_reports_the_unsent_events_as_conflicting() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(config(dir.path(), 600, 1 << 20)).unwrap();
    let first = spool.append(vec![event(0, 50, 1)]).unwrap();
    spool.ack(first.last_seq).unwrap();
    // Two batches the SOC has not acknowledged, then the SOC claims more.
    spool
        .append(vec![event(0, 50, 1), event(1, 50, 1)])
        .unwrap();
    let last = spool.append(vec![event(0, 50, 1)]).unwrap().last_seq;
    spool.ack(last + 1000).unwrap();
    assert!(all(&mut spool).is_empty());
    let next = spool.append(vec![event(0, 1, 1)]).unwrap();
    assert_eq!(next.first_seq, last + 1001);
    let conflict: Vec<_> = next
        .losses
        .iter()
        .filter(|l| l.reason == DataLossReason::SeqConflict as i32)
        .collect();
    assert_eq!(conflict.len(), 1, "{:?}", next.losses);
    assert_eq!(conflict[0].events_lost, 3);
    assert_eq!(conflict[0].batches_lost, 2);
    assert_eq!(
        (conflict[0].first_seq, conflict[0].last_seq),
        (first.last_seq + 1, last)
    );
}

#[test]
fn the_batch_bound_caps_index_entries_and_reports_what_it_drops() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 64 << 10, 1 << 30);
    cfg.max_batches = 1000;
    let (mut spool, _) = Spool::open(cfg).unwrap();
    let mut lost = 0;
    for i in 0..3000u32 {
        let appended = spool.append(vec![event((i % 3) as u8, 20, 1)]).unwrap();
        for l in &appended.losses {
            assert_eq!(l.reason, DataLossReason::SpoolFull as i32);
            lost += l.events_lost;
        }
        assert!(spool.stats().batches <= 1000, "{:?}", spool.stats());
    }
    assert!(lost > 0, "the bound was never hit");
    assert_eq!(lost + spool.stats().events, 3000);
}

#[test]
fn a_segment_deleted_under_the_spool_is_reported_not_a_stall() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(config(dir.path(), 600, 1 << 20)).unwrap();
    for i in 0..20u8 {
        spool.append(vec![event(i, 200, 1)]).unwrap();
    }
    let segs = segment_files(dir.path());
    assert!(segs.len() >= 3, "{segs:?}");
    std::fs::remove_file(&segs[0]).unwrap();
    let read = all(&mut spool);
    assert!(
        !read.is_empty() && read.len() < 20,
        "{} batches read",
        read.len()
    );
    let next = spool.append(vec![event(0, 1, 1)]).unwrap();
    let corrupt: u64 = next
        .losses
        .iter()
        .filter(|l| l.reason == DataLossReason::Corrupt as i32)
        .map(|l| l.events_lost)
        .sum();
    assert_eq!(corrupt + read.len() as u64, 20);
}

#[test]
fn spool_full_drops_oldest_segments_with_exact_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(config(dir.path(), 1000, 3000)).unwrap();
    // Batch i holds kinds i%9, (i+1)%9, (i+1)%9 with times 1000+i seconds.
    let mk = |i: u64| {
        let t = (1000 + i as i64) * 1_000_000;
        vec![
            event(i as u8, 60, t),
            event(i as u8 + 1, 60, t + 1),
            event(i as u8 + 1, 60, t + 2),
        ]
    };
    let mut kept: Vec<(u64, Batch)> = Vec::new();
    let mut losses = Vec::new();
    for i in 0..40u64 {
        let a = spool.append(mk(i)).unwrap();
        assert!(spool.stats().bytes <= 3000);
        losses.extend(a.losses);
        kept.push((i, all(&mut spool).pop().unwrap()));
    }
    assert!(!losses.is_empty());
    let stored = all(&mut spool);
    let first_stored = stored[0].first_seq;
    // Every batch is either stored or in exactly one loss.
    let mut lost_batches: Vec<&(u64, Batch)> = kept
        .iter()
        .filter(|(_, b)| b.last_seq < first_stored)
        .collect();
    let total_events: u64 = losses.iter().map(|l| l.events_lost).sum();
    let total_batches: u64 = losses.iter().map(|l| l.batches_lost).sum();
    assert_eq!(total_batches as usize, lost_batches.len());
    assert_eq!(total_events as usize, lost_batches.len() * 3);
    assert_eq!(lost_batches.len() + stored.len(), 40);
    // Ranges are contiguous and ordered; kinds and times are right.
    let mut next = kept[0].1.first_seq;
    for l in &losses {
        assert_eq!(l.reason, DataLossReason::SpoolFull as i32);
        assert_eq!(l.first_seq, next);
        let in_loss: Vec<_> = lost_batches
            .iter()
            .filter(|(_, b)| b.first_seq >= l.first_seq && b.last_seq <= l.last_seq)
            .collect();
        assert_eq!(in_loss.len() as u64, l.batches_lost);
        let mut kinds: HashMap<String, u64> = HashMap::new();
        for (_, b) in &in_loss {
            for e in &b.events {
                *kinds.entry(e.kind_name().to_string()).or_default() += 1;
            }
        }
        assert_eq!(l.lost_by_kind, kinds);
        let (i0, i1) = (in_loss.first().unwrap().0, in_loss.last().unwrap().0);
        assert_eq!(l.oldest.unwrap().seconds, 1000 + i0 as i64);
        assert_eq!(
            l.newest.unwrap(),
            owlet_proto::Timestamp {
                seconds: 1000 + i1 as i64,
                nanos: 2000
            }
        );
        next = l.last_seq + 1;
    }
    assert_eq!(next, first_stored);
    lost_batches.clear();
}

#[test]
fn a_batch_bigger_than_max_bytes_is_refused_and_consumes_no_seq() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(config(dir.path(), 1000, 1000)).unwrap();
    let a = spool.append(vec![event(0, 10, 1)]).unwrap();
    let err = spool.append(vec![event(0, 2000, 1)]).unwrap_err();
    assert!(matches!(err, SpoolError::BatchTooLarge { .. }), "{err:?}");
    assert!(matches!(
        spool.append(vec![]).unwrap_err(),
        SpoolError::InvalidBatch(_)
    ));
    let too_many = vec![event(0, 0, 1); owlet_proto::MAX_BATCH_EVENTS + 1];
    assert!(matches!(
        spool.append(too_many).unwrap_err(),
        SpoolError::InvalidBatch(_)
    ));
    assert_eq!(
        spool.append(vec![event(0, 10, 1)]).unwrap().first_seq,
        a.last_seq + 1
    );
}

#[test]
fn expire_drops_old_prefix_as_spool_age_and_it_stays_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 100_000, 1 << 20);
    cfg.max_age = Duration::from_secs(60);
    let (mut spool, _) = Spool::open(cfg.clone()).unwrap();
    let now = 10_000i64;
    let s = |secs: i64| secs * 1_000_000;
    let a = spool
        .append(vec![event(0, 5, s(now - 500)), event(3, 5, s(now - 400))])
        .unwrap();
    let b = spool.append(vec![event(3, 5, s(now - 300))]).unwrap();
    let c = spool.append(vec![event(1, 5, s(now - 10))]).unwrap(); // young
    let _d = spool.append(vec![event(1, 5, s(now - 900))]).unwrap(); // old, behind a young one
    let now_t = UNIX_EPOCH + Duration::from_secs(now as u64);
    assert_eq!(
        spool.stats().oldest,
        Some(UNIX_EPOCH + Duration::from_secs((now - 900) as u64))
    );

    let losses = spool.expire(now_t).unwrap();
    assert_eq!(losses.len(), 1);
    let l = &losses[0];
    assert_eq!(l.reason, DataLossReason::SpoolAge as i32);
    assert_eq!((l.first_seq, l.last_seq), (a.first_seq, b.last_seq));
    assert_eq!((l.events_lost, l.batches_lost), (3, 2));
    assert_eq!(
        l.lost_by_kind,
        HashMap::from([("check_result".into(), 1), ("flow_record".into(), 2)])
    );
    assert_eq!(l.oldest.unwrap().seconds, now - 500);
    assert_eq!(l.newest.unwrap().seconds, now - 300);
    assert!(spool.expire(now_t).unwrap().is_empty(), "reported once");
    assert_eq!(all(&mut spool)[0].first_seq, c.first_seq);
    assert_eq!(spool.stats().batches, 2);

    drop(spool);
    let (mut spool, losses) = Spool::open(cfg).unwrap();
    assert!(losses.is_empty());
    assert_eq!(all(&mut spool)[0].first_seq, c.first_seq);
    // Much later everything expires, and numbering still continues.
    let later = SystemTime::now() + Duration::from_secs(3600);
    let losses = spool.expire(later).unwrap();
    assert_eq!(losses[0].events_lost, 2);
    assert_eq!(spool.stats().events, 0);
}

#[test]
fn read_after_respects_cursor_and_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(config(dir.path(), 700, 1 << 20)).unwrap();
    let seqs: Vec<_> = (0..10u8)
        .map(|i| spool.append(vec![event(i, 100, 1)]).unwrap())
        .collect();
    let got = spool.read_after(seqs[3].last_seq, usize::MAX).unwrap();
    assert_eq!(got.len(), 6);
    assert_eq!(got[0].first_seq, seqs[4].first_seq);
    // A tiny budget still yields one batch.
    assert_eq!(spool.read_after(0, 1).unwrap().len(), 1);
    let one = prost::Message::encoded_len(&got[0]);
    assert_eq!(
        spool
            .read_after(seqs[3].last_seq, 2 * one + 1)
            .unwrap()
            .len(),
        2
    );
    assert!(
        spool
            .read_after(spool.last_seq(), usize::MAX)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn deferred_durability_syncs_through_the_handle_without_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 4096, 1 << 20);
    cfg.durability = owlet_spool::Durability::Deferred;
    let (mut spool, _) = Spool::open(cfg.clone()).unwrap();
    assert!(
        spool.sync_handle().unwrap().is_none(),
        "nothing written yet"
    );
    let a = spool.append(vec![event(0, 10, 1)]).unwrap();
    let handle = spool.sync_handle().unwrap().expect("a segment is open");
    // The spool stays usable while the handle flushes.
    let read = all(&mut spool);
    handle.sync().unwrap();
    assert_eq!(read[0].last_seq, a.last_seq);
    drop(spool);
    let (mut spool, losses) = Spool::open(cfg).unwrap();
    assert!(losses.is_empty());
    assert_eq!(all(&mut spool)[0].last_seq, a.last_seq);
}

#[test]
fn a_lost_loss_report_is_carried_into_the_next_report() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(config(dir.path(), 1000, 3000)).unwrap();
    let earlier = owlet_spool::DataLoss {
        reason: DataLossReason::SpoolFull as i32,
        events_lost: 500,
        batches_lost: 5,
        first_seq: 7,
        last_seq: 506,
        lost_by_kind: [("check_result".to_string(), 500)].into(),
        ..Default::default()
    };
    let report = owlet_spool::Event {
        seq: 0,
        time: event(0, 0, now_us()).time,
        kind: Some(owlet_proto::v1::event::Kind::DataLoss(earlier)),
    };
    let mut losses = spool.append(vec![report]).unwrap().losses;
    // Fill until the report's batch is dropped.
    for _ in 0..40 {
        losses.extend(spool.append(vec![event(0, 200, now_us())]).unwrap().losses);
    }
    let total: u64 = losses.iter().map(|l| l.events_lost).sum();
    let kinds: u64 = losses
        .iter()
        .map(|l| l.lost_by_kind.get("check_result").copied().unwrap_or(0))
        .sum();
    let first = losses.iter().map(|l| l.first_seq).min().unwrap();
    assert!(
        losses
            .iter()
            .any(|l| l.lost_by_kind.get("data_loss") == Some(&1)),
        "{losses:?}"
    );
    // The dropped report's 500 events are counted again, plus what was dropped directly.
    let direct: u64 = losses
        .iter()
        .map(|l| l.lost_by_kind.values().sum::<u64>())
        .sum::<u64>()
        - 500;
    assert_eq!(total, direct + 500);
    assert!(kinds >= 500);
    assert_eq!(
        first, 7,
        "the range reaches back to what the lost report covered"
    );
}

#[test]
fn encoded_reads_are_the_stored_bytes_of_the_decoded_reads() {
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(config(dir.path(), 4096, 1 << 20)).unwrap();
    for i in 0..5u8 {
        spool
            .append(vec![event(i, 30, now_us()), event(i + 1, 30, now_us())])
            .unwrap();
    }
    let decoded = spool.read_after(0, 300).unwrap();
    let encoded = spool.read_encoded_after(0, 300).unwrap();
    assert_eq!(
        decoded.len(),
        encoded.len(),
        "same byte budget, same batches"
    );
    for (d, e) in decoded.iter().zip(&encoded) {
        assert_eq!((e.first_seq, e.last_seq), (d.first_seq, d.last_seq));
        assert_eq!(&Batch::decode(e.bytes.as_slice()).unwrap(), d);
    }
}
