//! Building `data_loss` reports inside the agent (the spool builds its own
//! for what it drops).
//!
//! Guarantees: a [`LossTally`] counts every event added to it exactly once,
//! by kind, with the time range; [`bound_pending`] keeps the number of
//! reports waiting to be written bounded without dropping any count.

use owlet_proto::Timestamp;
use owlet_proto::timestamp_micros;
use owlet_proto::v1::{DataLoss, DataLossReason, Event, event::Kind};

/// Events counted as lost, not yet reported.
///
/// The spool writer tallies every batch before it is written (the events
/// are gone once the write fails), so `add` runs once per event on the
/// agent's hot path: kinds are counted by their static name in a short list
/// (there are a handful), with no allocation or hashing per event.
#[derive(Debug, Default)]
pub struct LossTally {
    events: u64,
    kinds: Vec<(&'static str, u64)>,
    oldest: Option<Timestamp>,
    newest: Option<Timestamp>,
}

impl LossTally {
    pub fn add(&mut self, event: &Event) {
        self.events += 1;
        let kind = event.kind_name();
        match self.kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => self.kinds.push((kind, 1)),
        }
        if let Some(t) = event.time {
            widen_times(&mut self.oldest, &mut self.newest, t, t);
        }
    }

    /// The report for everything added since the last call (`None` if
    /// nothing was). The events had no sequence numbers: the range is 0..0.
    pub fn take(&mut self, reason: DataLossReason, batches: u64) -> Option<DataLoss> {
        if self.events == 0 {
            return None;
        }
        let tally = std::mem::take(self);
        Some(DataLoss {
            reason: reason as i32,
            events_lost: tally.events,
            batches_lost: batches,
            first_seq: 0,
            last_seq: 0,
            lost_by_kind: tally
                .kinds
                .into_iter()
                .map(|(kind, n)| (kind.to_string(), n))
                .collect(),
            oldest: tally.oldest,
            newest: tally.newest,
        })
    }
}

fn widen_times(
    oldest: &mut Option<Timestamp>,
    newest: &mut Option<Timestamp>,
    from: Timestamp,
    to: Timestamp,
) {
    if oldest.is_none_or(|o| timestamp_micros(&from) < timestamp_micros(&o)) {
        *oldest = Some(from);
    }
    if newest.is_none_or(|n| timestamp_micros(&to) > timestamp_micros(&n)) {
        *newest = Some(to);
    }
}

/// Most reports waiting to be written before they are merged by reason.
pub const MAX_PENDING_REPORTS: usize = 64;

/// Merges the reports of one reason into one when more than
/// [`MAX_PENDING_REPORTS`] wait (e.g. a long disk-full stretch fails a batch
/// every linger): counts add up, seq and time ranges widen to span them all.
/// Below the bound reports stay as they are, with their exact ranges.
pub fn bound_pending(pending: &mut Vec<DataLoss>) {
    if pending.len() <= MAX_PENDING_REPORTS {
        return;
    }
    let mut merged: Vec<DataLoss> = Vec::new();
    for loss in pending.drain(..) {
        match merged.iter_mut().find(|m| m.reason == loss.reason) {
            Some(m) => absorb(m, loss),
            None => merged.push(loss),
        }
    }
    *pending = merged;
}

fn absorb(into: &mut DataLoss, loss: DataLoss) {
    into.events_lost += loss.events_lost;
    into.batches_lost += loss.batches_lost;
    if loss.first_seq != 0 {
        into.first_seq = if into.first_seq == 0 {
            loss.first_seq
        } else {
            into.first_seq.min(loss.first_seq)
        };
        into.last_seq = into.last_seq.max(loss.last_seq);
    }
    for (kind, n) in loss.lost_by_kind {
        *into.lost_by_kind.entry(kind).or_default() += n;
    }
    if let (Some(from), Some(to)) = (loss.oldest, loss.newest) {
        widen_times(&mut into.oldest, &mut into.newest, from, to);
    }
}

/// Wraps a loss report as an event.
pub fn loss_event(loss: &DataLoss) -> Event {
    Event {
        seq: 0,
        time: Some(owlet_proto::now()),
        kind: Some(Kind::DataLoss(loss.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_failed(events: u64, kind: &str) -> DataLoss {
        DataLoss {
            reason: DataLossReason::WriteFailed as i32,
            events_lost: events,
            batches_lost: 1,
            lost_by_kind: [(kind.to_string(), events)].into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_tally_counts_every_event_once_by_kind() {
        let event = |kind| Event {
            seq: 0,
            time: Some(owlet_proto::now()),
            kind,
        };
        let mut tally = LossTally::default();
        for _ in 0..3 {
            tally.add(&event(Some(Kind::CheckResult(Default::default()))));
        }
        tally.add(&event(Some(Kind::Alert(Default::default()))));
        tally.add(&event(None));
        let loss = tally.take(DataLossReason::WriteFailed, 1).unwrap();
        assert_eq!(loss.events_lost, 5);
        let expected: std::collections::HashMap<String, u64> = [
            ("check_result".to_string(), 3),
            ("alert".to_string(), 1),
            ("unknown".to_string(), 1),
        ]
        .into();
        assert_eq!(loss.lost_by_kind, expected);
        assert!(tally.take(DataLossReason::WriteFailed, 1).is_none());
    }

    #[test]
    fn many_pending_reports_merge_by_reason_without_losing_a_count() {
        let mut pending: Vec<DataLoss> = (0..1000)
            .map(|i| write_failed(i % 7 + 1, "alert"))
            .collect();
        pending.push(DataLoss {
            reason: DataLossReason::SpoolFull as i32,
            events_lost: 5,
            batches_lost: 2,
            first_seq: 10,
            last_seq: 14,
            lost_by_kind: [("check_result".to_string(), 5)].into(),
            ..Default::default()
        });
        let total: u64 = pending.iter().map(|l| l.events_lost).sum();
        bound_pending(&mut pending);
        assert_eq!(pending.len(), 2);
        assert_eq!(pending.iter().map(|l| l.events_lost).sum::<u64>(), total);
        assert_eq!(pending[0].batches_lost, 1000);
        assert_eq!(pending[0].lost_by_kind["alert"], pending[0].events_lost);
        assert_eq!((pending[1].first_seq, pending[1].last_seq), (10, 14));
    }

    #[test]
    fn few_pending_reports_keep_their_exact_ranges() {
        let mut pending = vec![write_failed(1, "alert"), write_failed(2, "alert")];
        bound_pending(&mut pending);
        assert_eq!(pending.len(), 2);
    }
}
