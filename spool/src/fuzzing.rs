//! Property checks shared by the fuzz targets (`spool/fuzz`, run by hand
//! with cargo-fuzz) and the ordinary tests that feed them random bytes in
//! `cargo test`. Each function panics when a property fails; arbitrary input
//! alone must never make it panic.

use std::path::Path;
use std::time::Duration;

use crate::segment::{self, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::state::{self, Loaded};
use crate::{Durability, Event, Spool, SpoolConfig, SpoolError};

/// The segment scanner on arbitrary bytes: no panic; every record it returns
/// lies inside the data, follows the previous one without a gap and has
/// increasing seqs at or above the floor; where it stops is past them.
pub fn check_scan_invariants(data: &[u8]) {
    let _ = segment::check_header(data);
    let min_first = data.get(8..16).map_or(0, |b| {
        u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) >> 40
    });
    for min in [0, min_first] {
        let (recs, stop) = segment::scan(data, min);
        let mut pos = SEGMENT_HEADER_LEN;
        let mut next = min;
        for r in &recs {
            assert_eq!(r.offset, pos, "records must be contiguous");
            pos = r.offset + RECORD_HEADER_LEN + u64::from(r.payload_len);
            assert!(pos <= data.len() as u64, "record beyond the data");
            assert!(r.batch.first_seq >= next, "seqs must increase");
            assert!(r.batch.first_seq <= r.batch.last_seq);
            next = r.batch.last_seq.saturating_add(1);
        }
        match stop {
            Some((offset, bad)) => {
                assert_eq!(offset, pos, "stops right after the last good record");
                assert!(offset < data.len() as u64 || data.len() < SEGMENT_HEADER_LEN as usize);
                let _ = bad.describe();
            }
            None => assert!(pos >= data.len() as u64, "stopped early without a reason"),
        }
    }
}

/// The ack file decoder on arbitrary bytes: no panic; what it accepts
/// encodes back to exactly the same bytes.
pub fn check_decode_invariants(data: &[u8]) {
    match state::decode(data, Path::new("ack")) {
        Ok(Loaded::Valid(s)) => assert_eq!(&state::encode(&s)[..], data),
        Ok(Loaded::Missing) => panic!("decode never says missing"),
        Ok(Loaded::Unreadable(_)) | Err(SpoolError::UnsupportedVersion { .. }) => {}
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// Recovery end to end on arbitrary bytes in `dir` (empty, owned by the
/// caller): the first byte picks a layout, the rest becomes a segment file
/// (and an ack file). Open must not panic; once it succeeds the spool
/// reads, appends and reopens, and the second open reports nothing new.
pub fn open_arbitrary(dir: &Path, data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (ack, seg) = if mode & 1 == 1 && rest.len() >= 36 {
        rest.split_at(36)
    } else {
        (&[][..], rest)
    };
    let mut body = Vec::new();
    if mode & 2 == 2 {
        // Most inputs would fail the header check: give some a valid one.
        body.extend_from_slice(&segment::header());
    }
    body.extend_from_slice(seg);
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes).unwrap_or_else(|e| panic!("test setup: {e}"));
    };
    if mode & 1 == 1 {
        write(state::FILE_NAME, ack);
    }
    write(&segment::file_name(1000), &body);
    if mode & 4 == 4 {
        // A later, empty segment: the damaged one is then not the last.
        write(
            &segment::file_name(u64::from(mode) << 32),
            &segment::header(),
        );
    }
    let config = SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 20,
        max_age: Duration::from_secs(3600),
        segment_bytes: 64 << 10,
        max_batches: 1000,
        durability: Durability::Interval(Duration::from_secs(3600)),
    };
    let (mut spool, _) = match Spool::open(config.clone()) {
        Ok(opened) => opened,
        Err(SpoolError::UnsupportedVersion { .. }) => return,
        Err(e) => panic!("open failed: {e}"),
    };
    let stored = spool
        .read_after(0, usize::MAX)
        .unwrap_or_else(|e| panic!("read failed: {e}"));
    let appended = spool.append(vec![Event::default()]);
    let stats = spool.stats();
    drop(spool);
    let (mut spool, losses) =
        Spool::open(config).unwrap_or_else(|e| panic!("second open failed: {e}"));
    assert!(losses.is_empty(), "loss reported twice: {losses:?}");
    let again = spool
        .read_after(0, usize::MAX)
        .unwrap_or_else(|e| panic!("read failed: {e}"));
    assert_eq!(spool.stats().last_seq, stats.last_seq);
    match appended {
        Ok(a) => {
            assert_eq!(again.len(), stored.len() + 1);
            assert_eq!(again.last().map(|b| b.last_seq), Some(a.last_seq));
        }
        Err(SpoolError::SeqExhausted { .. }) => assert_eq!(again, stored),
        Err(e) => panic!("append failed: {e}"),
    }
}
