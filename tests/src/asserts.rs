//! Delivery assertions over stored events: order, no duplicates, no gaps, counters, data loss.

use std::collections::BTreeMap;

use owlet_proto::v1::event::Kind;

use crate::*;

/// Asserts the exactly-once, in-order properties of one agent's stored
/// events: seqs strictly increasing in arrival order (so no duplicates) and
/// every seq-bearing event has a seq. Returns the seqs.
pub fn assert_in_order_no_duplicates(events: &[Stored]) -> Vec<u64> {
    let seqs: Vec<u64> = events
        .iter()
        .filter(|e| e.kind != "alert" || e.seq.is_some())
        .map(|e| {
            e.seq
                .unwrap_or_else(|| panic!("agent event without seq: {e:?}"))
        })
        .collect();
    for w in seqs.windows(2) {
        assert!(
            w[0] < w[1],
            "seqs not strictly increasing in arrival order: {} then {}",
            w[0],
            w[1]
        );
    }
    seqs
}

/// Asserts the seqs, taken as a set, have no gap from the first to the last.
/// (Duplicates are allowed here: a loss report that carries an earlier, lost
/// report's range may overlap the range of another report.)
pub fn assert_contiguous(seqs: &[u64]) {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    for w in sorted.windows(2) {
        assert!(
            w[1] == w[0] + 1,
            "gap in stored seqs: {} is followed by {} ({} missing)",
            w[0],
            w[1],
            w[1] - w[0] - 1
        );
    }
}

/// Counters of stored synthetic events, in arrival order.
pub fn synthetic_counters(events: &[Stored]) -> Vec<u64> {
    events
        .iter()
        .filter_map(Stored::synthetic_counter)
        .collect()
}

/// Sum of `DataLoss` events: (events_lost, lost_by_kind).
pub fn data_loss_totals(events: &[Stored]) -> (u64, BTreeMap<String, u64>) {
    let mut lost = 0;
    let mut by_kind = BTreeMap::new();
    for e in events {
        if let Some(Kind::DataLoss(d)) = &e.event.kind {
            lost += d.events_lost;
            for (k, v) in &d.lost_by_kind {
                *by_kind.entry(k.clone()).or_insert(0) += v;
            }
        }
    }
    (lost, by_kind)
}

/// Asserts that `events` hold every synthetic counter in `expected` exactly
/// once, in order, under contiguous, strictly increasing seqs; returns the
/// seqs. (Exactly-once delivery, as every durability test states it.)
pub fn assert_delivered_exactly_once(
    events: &[Stored],
    expected: std::ops::Range<u64>,
) -> Vec<u64> {
    let seqs = assert_in_order_no_duplicates(events);
    assert_contiguous(&seqs);
    assert_counters(&synthetic_counters(events), expected);
    seqs
}

/// Asserts the stored synthetic counters are exactly `expected`, in arrival
/// order; on failure names the missing and duplicated counters.
pub fn assert_counters(counters: &[u64], expected: std::ops::Range<u64>) {
    if counters.iter().copied().eq(expected.clone()) {
        return;
    }
    let mut seen = BTreeMap::<u64, u32>::new();
    for c in counters {
        *seen.entry(*c).or_default() += 1;
    }
    let missing: Vec<u64> = expected.clone().filter(|c| !seen.contains_key(c)).collect();
    let duplicated: Vec<u64> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(c, _)| *c)
        .collect();
    let unexpected: Vec<u64> = seen
        .keys()
        .copied()
        .filter(|c| !expected.contains(c))
        .collect();
    panic!(
        "stored synthetic counters are not {expected:?} in order: {} stored, {} missing {:?}, duplicated {:?}, unexpected {:?}",
        counters.len(),
        missing.len(),
        &missing[..missing.len().min(40)],
        &duplicated[..duplicated.len().min(40)],
        &unexpected[..unexpected.len().min(40)],
    );
}

// --------------------------------------------------------------------- disks
