//! The bus: typed events in, batches out.
//!
//! Producers hold an [`EventSender`] (a bounded channel: when the spool writer
//! falls behind, `send().await` waits — producers that must not wait, such as
//! packet capture, use `try_send` and count what they drop). The [`Batcher`]
//! groups events by count, encoded bytes and a short linger so the disk and the
//! wire see few, well-filled batches.
//!
//! Nothing here knows about disks or gRPC.

use std::collections::VecDeque;
use std::time::Duration;

use owlet_proto::v1::{DataLoss, DataLossReason, Event};
use prost::Message;

use super::loss::LossTally;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Where collectors put events. Cheap to clone.
pub type EventSender = mpsc::Sender<Event>;

/// Limits of one batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_events: usize,
    pub max_bytes: usize,
    pub linger: Duration,
}

/// Creates the bus: a bounded channel of `capacity` events and its batcher.
pub fn channel(capacity: usize, limits: BatchLimits) -> (EventSender, Batcher) {
    let (tx, rx) = mpsc::channel(capacity);
    let batcher = Batcher {
        rx,
        limits,
        pending: VecDeque::new(),
        building: Vec::new(),
        building_bytes: 0,
        deadline: Instant::now(),
        linger: limits.linger,
        oversized: LossTally::default(),
    };
    (tx, batcher)
}

/// Linger while the SOC is unreachable (see [`Batcher::set_outage`]).
pub const OUTAGE_LINGER: Duration = Duration::from_secs(1);

/// Events taken from the channel per receive: bounds `pending`.
const RECEIVE_CHUNK: usize = 256;

/// Turns the event stream into batches.
///
/// [`Batcher::next_batch`] is cancel-safe: every event taken off the channel
/// lives in the batcher itself until a batch is returned, so a caller may
/// race it against timers in `select!` without losing events.
pub struct Batcher {
    rx: mpsc::Receiver<Event>,
    limits: BatchLimits,
    /// Received but not yet batched (at most `RECEIVE_CHUNK`): what did not
    /// fit the previous batch.
    pending: VecDeque<Event>,
    /// The batch being filled, its encoded size and when it must go out.
    building: Vec<Event>,
    building_bytes: usize,
    deadline: Instant,
    /// The linger in force: `limits.linger`, or [`OUTAGE_LINGER`] while the
    /// SOC is unreachable.
    linger: Duration,
    /// Events larger than a whole batch may be: never sendable, so counted
    /// here instead of batched.
    oversized: LossTally,
}

impl Batcher {
    /// The next batch: waits for a first event, then collects more until the
    /// batch is full or `linger` has passed since the first event. Returns
    /// `None` once every sender is gone and nothing is left. An event larger
    /// than `max_bytes` is never batched: it is counted for
    /// [`Batcher::take_oversized`] and an empty batch returned at once, so
    /// the caller reports it promptly.
    pub async fn next_batch(&mut self) -> Option<Vec<Event>> {
        if self.building.is_empty() {
            let first = match self.pending.pop_front() {
                Some(event) => event,
                None => self.rx.recv().await?,
            };
            let len = first.encoded_len();
            if len > self.limits.max_bytes {
                self.oversized.add(&first);
                return Some(Vec::new());
            }
            self.deadline = Instant::now() + self.linger;
            self.building_bytes = len;
            self.building.push(first);
        }
        while self.building.len() < self.limits.max_events
            && self.building_bytes < self.limits.max_bytes
        {
            if self.pending.is_empty() {
                let room = (self.limits.max_events - self.building.len()).min(RECEIVE_CHUNK);
                let start = self.building.len();
                // Straight into the batch: an event is moved once here, not
                // three times through a staging queue (an Event is ~500
                // bytes: the copies were a fifth of the agent's CPU at
                // saturation). Both futures are cancel-safe (`recv_many`
                // adds nothing unless it completes).
                let received = tokio::select! {
                    n = self.rx.recv_many(&mut self.building, room) => n,
                    () = tokio::time::sleep_until(self.deadline) => 0,
                };
                if received == 0 {
                    break; // linger over, or every sender is gone
                }
                self.admit_received(start);
                continue;
            }
            let Some(event) = self.pending.pop_front() else {
                break;
            };
            let len = event.encoded_len();
            if len > self.limits.max_bytes {
                self.oversized.add(&event);
                continue;
            }
            if self.building_bytes + len > self.limits.max_bytes {
                self.pending.push_front(event); // first of the next batch
                break;
            }
            self.building_bytes += len;
            self.building.push(event);
        }
        self.building_bytes = 0;
        Some(std::mem::take(&mut self.building))
    }

    /// Counts the bytes of the events received into `building` from
    /// `start` on; oversized ones are taken out and tallied, and from the
    /// first that does not fit the byte limit on they wait in `pending`
    /// for the next batch, in order.
    fn admit_received(&mut self, start: usize) {
        let mut i = start;
        while i < self.building.len() {
            let len = self.building[i].encoded_len();
            if len > self.limits.max_bytes {
                let event = self.building.remove(i);
                self.oversized.add(&event);
            } else if self.building_bytes + len > self.limits.max_bytes {
                self.pending.extend(self.building.drain(i..));
            } else {
                self.building_bytes += len;
                i += 1;
            }
        }
    }

    /// Switches to the outage linger (or back). While the SOC is unreachable
    /// nothing is sent anyway, and fuller batches keep the spool's in-memory
    /// index small over a long outage (one index entry per batch); the price
    /// is that events wait up to [`OUTAGE_LINGER`] before they are accepted.
    pub fn set_outage(&mut self, outage: bool) {
        self.linger = if outage {
            self.limits.linger.max(OUTAGE_LINGER)
        } else {
            self.limits.linger
        };
    }

    /// The `TOO_LARGE` report for events refused since the last call.
    pub fn take_oversized(&mut self) -> Option<DataLoss> {
        self.oversized.take(DataLossReason::TooLarge, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use owlet_proto::v1::{AgentStatus, event::Kind};

    fn status(version: &str) -> Event {
        Event {
            seq: 0,
            time: Some(owlet_proto::now()),
            kind: Some(Kind::AgentStatus(AgentStatus {
                agent_version: version.into(),
                ..Default::default()
            })),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn batches_by_count_then_linger_and_ends_when_senders_close() {
        let limits = BatchLimits {
            max_events: 3,
            max_bytes: 1 << 20,
            linger: Duration::from_millis(50),
        };
        let (tx, mut batcher) = channel(16, limits);
        for _ in 0..4 {
            tx.send(status("1")).await.unwrap();
        }
        assert_eq!(batcher.next_batch().await.unwrap().len(), 3);
        assert_eq!(
            batcher.next_batch().await.unwrap().len(),
            1,
            "linger releases a partial batch"
        );
        drop(tx);
        assert!(batcher.next_batch().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn batches_by_bytes_without_losing_the_overflowing_event() {
        let big = "x".repeat(600);
        let limits = BatchLimits {
            max_events: 100,
            max_bytes: 1000,
            linger: Duration::from_millis(50),
        };
        let (tx, mut batcher) = channel(16, limits);
        for _ in 0..3 {
            tx.send(status(&big)).await.unwrap();
        }
        drop(tx);
        let mut sizes = Vec::new();
        while let Some(batch) = batcher.next_batch().await {
            sizes.push(batch.len());
        }
        assert_eq!(sizes, vec![1, 1, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn events_larger_than_a_batch_are_counted_not_batched() {
        let limits = BatchLimits {
            max_events: 100,
            max_bytes: 1000,
            linger: Duration::from_millis(50),
        };
        let (tx, mut batcher) = channel(16, limits);
        for version in ["1", &"x".repeat(2000), "2", &"y".repeat(5000)] {
            tx.send(status(version)).await.unwrap();
        }
        drop(tx);
        let mut batched = 0;
        while let Some(batch) = batcher.next_batch().await {
            batched += batch.len();
        }
        assert_eq!(batched, 2);
        let loss = batcher.take_oversized().expect("a TOO_LARGE report");
        assert_eq!(loss.reason, DataLossReason::TooLarge as i32);
        assert_eq!(loss.events_lost, 2);
        assert_eq!(loss.lost_by_kind["agent_status"], 2);
        assert!(batcher.take_oversized().is_none(), "reported twice");
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_stretches_the_linger_and_recovery_restores_it() {
        let limits = BatchLimits {
            max_events: 100,
            max_bytes: 1 << 20,
            linger: Duration::from_millis(50),
        };
        let (tx, mut batcher) = channel(16, limits);
        for (outage, linger) in [(true, OUTAGE_LINGER), (false, limits.linger)] {
            batcher.set_outage(outage);
            tx.send(status("1")).await.unwrap();
            let start = Instant::now();
            assert_eq!(batcher.next_batch().await.unwrap().len(), 1);
            assert_eq!(start.elapsed(), linger, "outage {outage}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_a_batch_in_its_linger_loses_nothing() {
        let limits = BatchLimits {
            max_events: 100,
            max_bytes: 1 << 20,
            linger: Duration::from_millis(50),
        };
        let (tx, mut batcher) = channel(16, limits);
        for _ in 0..3 {
            tx.send(status("1")).await.unwrap();
        }
        // Cancel next_batch while it lingers for more events.
        let cancelled = tokio::time::timeout(Duration::from_millis(10), batcher.next_batch()).await;
        assert!(cancelled.is_err());
        tx.send(status("1")).await.unwrap();
        drop(tx);
        assert_eq!(batcher.next_batch().await.unwrap().len(), 4);
        assert!(batcher.next_batch().await.is_none());
    }
}
