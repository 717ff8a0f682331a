//! Model-based test: random operations against the spool and against a
//! simple in-memory model (a queue of live batches, the ack, counted losses).
//!
//! After every operation: every appended event is exactly one of readable,
//! acked, or counted in one returned `DataLoss`; `read_after` returns exactly
//! the model's batches; seqs strictly increase across reopens; stats match.
mod common;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, UNIX_EPOCH};

use common::{config, event};
use owlet_spool::{Batch, DataLoss, DataLossReason, Durability, Spool, SpoolConfig};
use proptest::prelude::*;
use prost::Message;

const SEGMENT_BYTES: u64 = 1500;
const MAX_BYTES: u64 = 6000;
const MAX_AGE_S: u64 = 100;

#[derive(Debug, Clone)]
enum Op {
    /// Events as (kind, payload size, age in seconds at append time).
    Append(Vec<(u8, usize, u64)>),
    /// Ack `k` seqs past the current ack (may go beyond the last seq).
    Ack(u64),
    /// Read after the seq `k` past the ack, with a byte budget.
    Read(u64, usize),
    Reopen,
    /// Let `s` seconds pass, then expire.
    Expire(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((0u8..9, 0usize..300, 0u64..150), 1..6).prop_map(Op::Append),
        2 => (0u64..12).prop_map(Op::Ack),
        2 => (0u64..12, 1usize..3000).prop_map(|(k, b)| Op::Read(k, b)),
        1 => Just(Op::Reopen),
        1 => (0u64..80).prop_map(Op::Expire),
    ]
}

#[derive(Default)]
struct Model {
    live: VecDeque<Batch>,
    acked: u64,
    last: u64,
    appended_events: u64,
    lost_events: u64,
    /// Events that left the model by ack (whole batches at or below the ack).
    acked_events: u64,
    now_s: u64,
}

impl Model {
    fn apply_ack(&mut self) {
        while self.live.front().is_some_and(|b| b.last_seq <= self.acked) {
            let b = self.live.pop_front().unwrap();
            self.acked_events += b.events.len() as u64;
        }
    }

    /// Takes a reported loss off the front of the model, checking its counts.
    fn take_loss(&mut self, l: &DataLoss, reason: DataLossReason) {
        assert_eq!(l.reason, reason as i32, "{l:?}");
        let mut events = 0u64;
        let mut batches = 0u64;
        let mut kinds: HashMap<String, u64> = HashMap::new();
        let mut times = Vec::new();
        assert_eq!(
            self.live.front().map(|b| b.first_seq),
            Some(l.first_seq),
            "loss must start at the oldest live batch"
        );
        while self.live.front().is_some_and(|b| b.last_seq <= l.last_seq) {
            let b = self.live.pop_front().unwrap();
            batches += 1;
            for e in &b.events {
                events += 1;
                *kinds.entry(e.kind_name().to_string()).or_default() += 1;
                times.push(e.time.unwrap());
            }
        }
        assert_eq!((l.events_lost, l.batches_lost), (events, batches), "{l:?}");
        assert_eq!(l.lost_by_kind, kinds);
        let by_us = |t: &owlet_proto::Timestamp| owlet_proto::timestamp_micros(t);
        assert_eq!(l.oldest.map(|t| by_us(&t)), times.iter().map(by_us).min());
        assert_eq!(l.newest.map(|t| by_us(&t)), times.iter().map(by_us).max());
        self.lost_events += events;
    }

    fn check(&self, spool: &mut Spool) {
        let got = spool.read_after(0, usize::MAX).unwrap();
        assert_eq!(
            got,
            Vec::from(self.live.clone()),
            "stored batches differ from the model"
        );
        let st = spool.stats();
        let live_events: u64 = self.live.iter().map(|b| b.events.len() as u64).sum();
        assert_eq!(st.events, live_events);
        assert_eq!(st.batches, self.live.len() as u64);
        assert_eq!(st.acked_seq, self.acked);
        assert_eq!(st.last_seq, self.last);
        assert!(st.bytes <= MAX_BYTES, "{} bytes on disk", st.bytes);
        let oldest = self
            .live
            .iter()
            .flat_map(|b| &b.events)
            .map(|e| owlet_proto::timestamp_micros(e.time.as_ref().unwrap()))
            .min();
        assert_eq!(
            st.oldest,
            oldest.map(|us| UNIX_EPOCH + Duration::from_micros(us as u64))
        );
        // Conservation: nothing vanished, nothing counted twice.
        assert_eq!(
            self.appended_events,
            live_events + self.acked_events + self.lost_events
        );
    }
}

fn cfg(dir: &std::path::Path, every_batch: bool) -> SpoolConfig {
    let mut c = config(dir, SEGMENT_BYTES, MAX_BYTES);
    c.max_age = Duration::from_secs(MAX_AGE_S);
    if every_batch {
        c.durability = Durability::EveryBatch;
    }
    c
}

fn run(ops: Vec<Op>, every_batch: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, losses) = Spool::open(cfg(dir.path(), every_batch)).unwrap();
    assert!(losses.is_empty());
    let mut m = Model {
        last: spool.last_seq(),
        now_s: 1_000_000,
        ..Default::default()
    };
    for op in ops {
        match op {
            Op::Append(spec) => {
                let events: Vec<_> = spec
                    .iter()
                    .map(|&(k, size, age)| event(k, size, ((m.now_s - age) * 1_000_000) as i64))
                    .collect();
                let mut expect = Batch {
                    first_seq: m.last + 1,
                    last_seq: m.last + events.len() as u64,
                    events: events.clone(),
                };
                for (i, e) in expect.events.iter_mut().enumerate() {
                    e.seq = m.last + 1 + i as u64;
                }
                let rec_len = expect.encoded_len() as u64 + 8;
                let bytes_before = spool.stats().bytes;
                let a = spool.append(events).unwrap();
                assert_eq!(
                    (a.first_seq, a.last_seq),
                    (expect.first_seq, expect.last_seq)
                );
                if !a.losses.is_empty() {
                    assert!(
                        bytes_before + rec_len + 16 > MAX_BYTES,
                        "dropped data without need"
                    );
                }
                for l in &a.losses {
                    m.take_loss(l, DataLossReason::SpoolFull);
                }
                m.appended_events += expect.events.len() as u64;
                m.last = expect.last_seq;
                m.live.push_back(expect);
            }
            Op::Ack(k) => {
                let seq = m
                    .acked
                    .max(m.live.front().map_or(m.last, |b| b.first_seq - 1))
                    + k;
                spool.ack(seq).unwrap();
                if seq > m.last && !m.live.is_empty() {
                    // The SOC acked numbers never assigned: what is live was
                    // never sent under those numbers and is reported (the
                    // report is pending; expire at the same time hands it out).
                    let losses = spool
                        .expire(UNIX_EPOCH + Duration::from_secs(m.now_s))
                        .unwrap();
                    assert_eq!(losses.len(), 1, "{losses:?}");
                    m.take_loss(&losses[0], DataLossReason::SeqConflict);
                }
                if seq > m.acked {
                    m.acked = seq;
                    m.last = m.last.max(seq);
                }
                m.apply_ack();
            }
            Op::Read(k, budget) => {
                let after = m.acked + k;
                let got = spool.read_after(after, budget).unwrap();
                let want: Vec<&Batch> = m.live.iter().filter(|b| b.last_seq > after).collect();
                assert_eq!(
                    got.len().min(1),
                    want.len().min(1),
                    "at least one batch when any"
                );
                let mut used = 0usize;
                for (i, b) in got.iter().enumerate() {
                    assert_eq!(b, want[i]);
                    used += b.encoded_len();
                }
                assert!(got.len() <= 1 || used <= budget, "over budget");
                if let Some(next) = want.get(got.len()) {
                    assert!(used + next.encoded_len() > budget, "stopped early");
                }
            }
            Op::Reopen => {
                let before = spool.stats();
                drop(spool);
                let (s, losses) = Spool::open(cfg(dir.path(), every_batch)).unwrap();
                assert!(losses.is_empty(), "{losses:?}");
                spool = s;
                assert_eq!(spool.stats(), before);
            }
            Op::Expire(s) => {
                m.now_s += s;
                let cutoff = ((m.now_s - MAX_AGE_S) * 1_000_000) as i64;
                let expired = m
                    .live
                    .iter()
                    .take_while(|b| {
                        b.events
                            .iter()
                            .map(|e| owlet_proto::timestamp_micros(e.time.as_ref().unwrap()))
                            .max()
                            .unwrap()
                            < cutoff
                    })
                    .count();
                let losses = spool
                    .expire(UNIX_EPOCH + Duration::from_secs(m.now_s))
                    .unwrap();
                if expired == 0 {
                    assert!(losses.is_empty(), "{losses:?}");
                } else {
                    assert_eq!(losses.len(), 1, "{losses:?}");
                    assert_eq!(losses[0].last_seq, m.live[expired - 1].last_seq);
                    m.take_loss(&losses[0], DataLossReason::SpoolAge);
                }
            }
        }
        m.check(&mut spool);
    }
    if std::env::var_os("OWLET_SPOOL_MODEL_STATS").is_some() {
        eprintln!(
            "appended {} acked {} lost {} live {} segments {}",
            m.appended_events,
            m.acked_events,
            m.lost_events,
            m.live.len(),
            common::segment_files(dir.path()).len()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn spool_matches_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops, false);
    }

    #[test]
    fn spool_matches_model_with_every_batch_fsync(ops in prop::collection::vec(op(), 1..30)) {
        run(ops, true);
    }
}
