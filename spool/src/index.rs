//! The in-memory index: where every stored batch lives and what it holds, so
//! reads, stats and loss reports never rescan files.
//!
//! Built by recovery at open and kept up to date by every append and drop.
//! It holds metadata only (a few dozen bytes per batch plus a kind histogram),
//! never event payloads.

use std::collections::BTreeMap;
use std::path::PathBuf;

use owlet_proto::v1::{Batch, DataLoss, DataLossReason};

/// Where one record (one batch) lives and a summary of its events.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordMeta {
    /// Offset of the record header in its segment file.
    pub offset: u64,
    /// Payload bytes (the record occupies `RECORD_HEADER_LEN + payload_len`).
    pub payload_len: u32,
    pub first_seq: u64,
    pub last_seq: u64,
    pub events: u32,
    /// Event time range, UTC microseconds; `None` when no event had a time.
    pub oldest_us: Option<i64>,
    pub newest_us: Option<i64>,
    /// Events by kind name, for loss reports.
    pub kinds: Vec<(&'static str, u32)>,
    /// What the batch's own `DataLoss` events reported (rare, hence boxed):
    /// if this batch is lost in turn, those counts are carried into the new
    /// report, so a lost loss report never makes loss silent.
    pub nested_loss: Option<Box<NestedLoss>>,
    /// Events in the records before this one in its segment (set by
    /// [`SegmentMeta::push`]), so live counts need no scan.
    pub events_before: u64,
}

/// The sum of the `DataLoss` reports inside one batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NestedLoss {
    pub events: u64,
    pub batches: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub kinds: BTreeMap<String, u64>,
}

impl RecordMeta {
    pub fn from_batch(offset: u64, payload_len: u32, batch: &Batch) -> Self {
        let mut kinds: Vec<(&'static str, u32)> = Vec::new();
        let mut oldest_us: Option<i64> = None;
        let mut newest_us: Option<i64> = None;
        let mut nested_loss: Option<Box<NestedLoss>> = None;
        for e in &batch.events {
            if let Some(owlet_proto::v1::event::Kind::DataLoss(d)) = &e.kind {
                let nested = nested_loss.get_or_insert_with(Box::default);
                nested.events += d.events_lost;
                nested.batches += d.batches_lost;
                if d.first_seq != 0 && (nested.first_seq == 0 || d.first_seq < nested.first_seq) {
                    nested.first_seq = d.first_seq;
                }
                nested.last_seq = nested.last_seq.max(d.last_seq);
                for (k, n) in &d.lost_by_kind {
                    *nested.kinds.entry(k.clone()).or_default() += n;
                }
            }
            let name = e.kind_name();
            match kinds.iter_mut().find(|(k, _)| *k == name) {
                Some((_, n)) => *n += 1,
                None => kinds.push((name, 1)),
            }
            if let Some(t) = &e.time {
                let us = owlet_proto::timestamp_micros(t);
                oldest_us = Some(oldest_us.map_or(us, |o| o.min(us)));
                newest_us = Some(newest_us.map_or(us, |n| n.max(us)));
            }
        }
        RecordMeta {
            offset,
            payload_len,
            first_seq: batch.first_seq,
            last_seq: batch.last_seq,
            events: u32::try_from(batch.events.len()).unwrap_or(u32::MAX),
            oldest_us,
            newest_us,
            kinds,
            nested_loss,
            events_before: 0,
        }
    }
}

/// One segment file and the records it holds, in order.
#[derive(Debug)]
pub struct SegmentMeta {
    pub path: PathBuf,
    /// File size in bytes, header included.
    pub size: u64,
    pub records: Vec<RecordMeta>,
}

impl SegmentMeta {
    /// Appends a record's metadata, keeping `events_before` right.
    pub fn push(&mut self, mut r: RecordMeta) {
        r.events_before = self
            .records
            .last()
            .map_or(0, |p| p.events_before + u64::from(p.events));
        self.records.push(r);
    }

    /// Events and batches in records above `floor`: O(log n), the records
    /// being sorted by seq.
    pub fn live_counts(&self, floor: u64) -> (u64, u64) {
        let Some(last) = self.records.last() else {
            return (0, 0);
        };
        let i = self.records.partition_point(|r| r.last_seq <= floor);
        let total = last.events_before + u64::from(last.events);
        let before = self.records.get(i).map_or(total, |r| r.events_before);
        (total - before, (self.records.len() - i) as u64)
    }

    /// Highest seq stored in the segment, if it holds any record.
    pub fn last_seq(&self) -> Option<u64> {
        self.records.last().map(|r| r.last_seq)
    }

    /// True when no record is above `floor` (everything acked or dropped).
    pub fn is_dead(&self, floor: u64) -> bool {
        self.last_seq().is_none_or(|s| s <= floor)
    }
}

/// Accumulates dropped records into one `DataLoss` report.
#[derive(Debug)]
pub struct LossBuilder {
    reason: DataLossReason,
    events: u64,
    batches: u64,
    first_seq: u64,
    last_seq: u64,
    kinds: BTreeMap<String, u64>,
    oldest_us: Option<i64>,
    newest_us: Option<i64>,
}

impl LossBuilder {
    pub fn new(reason: DataLossReason) -> Self {
        LossBuilder {
            reason,
            events: 0,
            batches: 0,
            first_seq: 0,
            last_seq: 0,
            kinds: BTreeMap::new(),
            oldest_us: None,
            newest_us: None,
        }
    }

    fn widen_seq(&mut self, first: u64, last: u64) {
        if self.first_seq == 0 || first < self.first_seq {
            self.first_seq = first;
        }
        self.last_seq = self.last_seq.max(last);
    }

    /// Events counted so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Counts one fully known record as lost.
    pub fn add_record(&mut self, r: &RecordMeta) {
        self.events += u64::from(r.events);
        self.batches += 1;
        self.widen_seq(r.first_seq, r.last_seq);
        for (k, n) in &r.kinds {
            *self.kinds.entry((*k).to_string()).or_default() += u64::from(*n);
        }
        if let Some(nested) = &r.nested_loss {
            self.events += nested.events;
            self.batches += nested.batches;
            if nested.first_seq != 0 {
                self.widen_seq(nested.first_seq, nested.last_seq);
            }
            for (k, n) in &nested.kinds {
                *self.kinds.entry(k.clone()).or_default() += n;
            }
        }
        if let Some(o) = r.oldest_us {
            self.oldest_us = Some(self.oldest_us.map_or(o, |x| x.min(o)));
        }
        if let Some(n) = r.newest_us {
            self.newest_us = Some(self.newest_us.map_or(n, |x| x.max(n)));
        }
    }

    /// Counts an unreadable seq range. `last` is `None` when the upper bound
    /// is unknown: then neither the range end nor an event count can be given.
    /// With a known bound the event count is the range size, an upper bound
    /// (the spool numbers events contiguously, so it is usually exact).
    pub fn add_unreadable(&mut self, first: u64, last: Option<u64>) {
        match last {
            Some(last) if last >= first => {
                let n = last - first + 1;
                self.events += n;
                self.widen_seq(first, last);
                *self.kinds.entry("unknown".to_string()).or_default() += n;
            }
            Some(_) => {}
            None => {
                if self.first_seq == 0 || first < self.first_seq {
                    self.first_seq = first;
                }
                self.kinds.entry("unknown".to_string()).or_default();
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.batches == 0 && self.events == 0 && self.kinds.is_empty()
    }

    pub fn finish(self) -> DataLoss {
        DataLoss {
            reason: self.reason as i32,
            events_lost: self.events,
            batches_lost: self.batches,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            lost_by_kind: self.kinds.into_iter().collect(),
            oldest: self.oldest_us.map(micros_to_timestamp),
            newest: self.newest_us.map(micros_to_timestamp),
        }
    }
}

/// UTC microseconds since the epoch to a protobuf timestamp.
pub fn micros_to_timestamp(us: i64) -> owlet_proto::Timestamp {
    owlet_proto::Timestamp {
        seconds: us.div_euclid(1_000_000),
        // rem_euclid is in 0..1_000_000, so this fits in i32.
        nanos: i32::try_from(us.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
    }
}
