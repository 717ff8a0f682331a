//! What the fuzz targets in `spool/fuzz` check, run on random input in every
//! `cargo test`: the segment scanner, the ack file decoder and recovery of a
//! whole directory never panic on arbitrary bytes and keep their invariants
//! (the property code is shared with the fuzz targets: `owlet_spool::fuzzing`).
mod common;

use owlet_spool::fuzzing::{check_decode_invariants, check_scan_invariants, open_arbitrary};
use owlet_spool::segment;
use owlet_spool::{Batch, Event};
use proptest::prelude::*;
use prost::Message;

/// A valid segment of `n` batches, then damaged: `cut` bytes off the end and
/// byte `flip_at` (modulo the length) xored with `flip`.
fn damaged_segment(n: u64, cut: usize, flip_at: usize, flip: u8) -> Vec<u8> {
    let mut data = segment::header().to_vec();
    let mut seq = 1000;
    for i in 0..n {
        let events: Vec<Event> = (0..=i % 3)
            .map(|j| {
                let mut e = common::event((i + j) as u8, (i * 7 % 40) as usize, 1);
                e.seq = seq + j;
                e
            })
            .collect();
        let b = Batch {
            first_seq: seq,
            last_seq: seq + events.len() as u64 - 1,
            events,
        };
        seq = b.last_seq + 1;
        data.extend(segment::encode_record(&b.encode_to_vec()));
    }
    let keep = data.len().saturating_sub(cut);
    data.truncate(keep);
    if !data.is_empty() {
        let at = flip_at % data.len();
        data[at] ^= flip;
    }
    data
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_scanner_never_panics_on_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..400)) {
        check_scan_invariants(&data);
    }

    #[test]
    fn the_scanner_keeps_its_invariants_on_damaged_segments(
        n in 0u64..8, cut in 0usize..300, flip_at in any::<usize>(), flip in any::<u8>()
    ) {
        check_scan_invariants(&damaged_segment(n, cut, flip_at, flip));
    }

    #[test]
    fn the_ack_decoder_never_panics_and_round_trips(
        data in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            prop::collection::vec(any::<u8>(), 36..=36),
        ]
    ) {
        check_decode_invariants(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn recovery_never_panics_and_reports_damage_once(
        mode in any::<u8>(),
        raw in prop::collection::vec(any::<u8>(), 0..200),
        n in 0u64..6, cut in 0usize..200, flip_at in any::<usize>(), flip in any::<u8>(),
        structured in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut data = vec![mode];
        if structured {
            // Already has a header: clear the flag that adds one.
            data[0] &= !2;
            data.extend(damaged_segment(n, cut, flip_at, flip));
        } else {
            data.extend(raw);
        }
        open_arbitrary(dir.path(), &data);
    }
}

#[test]
fn a_valid_ack_file_round_trips() {
    use owlet_spool::state::{State, encode};
    let s = State {
        acked_seq: 1,
        dropped_seq: 2,
        last_seq: 3,
    };
    check_decode_invariants(&encode(&s));
}
