//! The spool writer: drains the bus into the spool, batch by batch, and turns
//! every loss the spool reports into a `data_loss` event.
//!
//! Guarantees: an event is *accepted* when the spool append that holds it
//! returned `Ok`; every accepted event later lost is counted in a `DataLoss`
//! event (spool full, spool age, corruption). Events that could not be written
//! at all (disk full, I/O error, a failed fdatasync) are counted as
//! `WRITE_FAILED` loss, events
//! too large to ever send as `TOO_LARGE`. Loss reports themselves are retried
//! until they are written, merged by reason when many wait.

use std::sync::Arc;
use std::time::Duration;

use owlet_proto::v1::{DataLoss, DataLossReason, Event};
use tracing::{error, warn};

use super::bus::Batcher;
use super::loss::{self, LossTally, loss_event};
use super::metrics::Metrics;
use super::store::{Store, Written};

/// How often the age bound is enforced.
const EXPIRE_EVERY: Duration = Duration::from_secs(30);

/// Runs until every bus sender is gone and the bus is drained. With
/// interval durability, `sync_every` makes sure the tail of the spool reaches
/// the disk even when appends stop.
pub async fn run(
    mut batcher: Batcher,
    store: Store,
    metrics: Arc<Metrics>,
    mut pending: Vec<DataLoss>,
    sync_every: Option<Duration>,
) {
    let mut expire = tokio::time::interval(EXPIRE_EVERY);
    let mut sync = tokio::time::interval(sync_every.unwrap_or(EXPIRE_EVERY));
    loop {
        batcher.set_outage(!metrics.connected());
        let events = tokio::select! {
            batch = batcher.next_batch() => match batch {
                Some(events) => events,
                None => break,
            },
            _ = expire.tick() => {
                match store.expire().await {
                    Ok(losses) => pending.extend(losses),
                    Err(e) => {
                        metrics.error("spool_io");
                        warn!(error = %e, "spool age check failed");
                    }
                }
                Vec::new()
            }
            _ = sync.tick(), if sync_every.is_some() => {
                if let Err(e) = store.sync().await {
                    metrics.error("spool_io");
                    warn!(error = %e, "spool sync failed");
                }
                Vec::new()
            }
        };
        take_oversized(&mut batcher, &metrics, &mut pending);
        if !events.is_empty() {
            write(&store, &metrics, events, &mut pending).await;
        }
        write_reports(&store, &metrics, &mut pending).await;
    }
    take_oversized(&mut batcher, &metrics, &mut pending);
    write_reports(&store, &metrics, &mut pending).await;
    if !pending.is_empty() {
        let events: u64 = pending.iter().map(|l| l.events_lost).sum();
        error!(
            events,
            "stopping with data-loss reports that could not be written"
        );
    }
    if let Err(e) = store.sync().await {
        warn!(error = %e, "final spool sync failed");
    }
}

/// Counts the events the batcher refused for size.
fn take_oversized(batcher: &mut Batcher, metrics: &Metrics, pending: &mut Vec<DataLoss>) {
    if let Some(loss) = batcher.take_oversized() {
        metrics.dropped(loss.events_lost);
        error!(events = loss.events_lost, kinds = ?loss.lost_by_kind,
               "events larger than batch.max_bytes can never be sent; they are dropped and reported");
        pending.push(loss);
    }
}

/// Writes the pending loss reports (merged when too many wait); what cannot
/// be written yet stays pending and is retried after the next batch.
async fn write_reports(store: &Store, metrics: &Metrics, pending: &mut Vec<DataLoss>) {
    if pending.is_empty() {
        return;
    }
    loss::bound_pending(pending);
    let reports: Vec<Event> = pending.iter().map(loss_event).collect();
    let count = reports.len();
    match store.append(reports).await {
        Ok(written) => {
            let mut losses = Vec::new();
            match note_written(metrics, written, &mut losses) {
                None => {
                    metrics.accepted(count as u64);
                    pending.clear();
                }
                Some(e) => {
                    metrics.error("spool_sync");
                    warn!(error = %e, "could not flush the data-loss report yet");
                }
            }
            pending.extend(losses);
        }
        Err(e) => warn!(error = %e, "could not write the data-loss report yet"),
    }
}

async fn write(store: &Store, metrics: &Metrics, events: Vec<Event>, pending: &mut Vec<DataLoss>) {
    let count = events.len() as u64;
    let mut failed = LossTally::default();
    events.iter().for_each(|e| failed.add(e));
    let e = match store.append(events).await {
        Ok(written) => match note_written(metrics, written, pending) {
            None => {
                metrics.accepted(count);
                return;
            }
            Some(e) => {
                metrics.error("spool_sync");
                e
            }
        },
        Err(e) => {
            metrics.error("spool_write");
            e
        }
    };
    metrics.dropped(count);
    error!(error = %e, events = count, "could not write events to the spool; they are lost and reported");
    pending.extend(failed.take(DataLossReason::WriteFailed, 1));
}

/// Takes in the losses the spool reported with an append; returns the failed
/// flush, if any: then the events are not accepted (after a failed fdatasync
/// a later one proves nothing), and the spool already dropped them again.
fn note_written(
    metrics: &Metrics,
    written: Written,
    pending: &mut Vec<DataLoss>,
) -> Option<owlet_spool::SpoolError> {
    record_losses(metrics, &written.appended.losses);
    pending.extend(written.appended.losses);
    written.sync_error
}

fn record_losses(metrics: &Metrics, losses: &[DataLoss]) {
    for loss in losses {
        metrics.dropped(loss.events_lost);
        warn!(
            reason = ?DataLossReason::try_from(loss.reason).unwrap_or_default(),
            events = loss.events_lost,
            first_seq = loss.first_seq,
            last_seq = loss.last_seq,
            "spool dropped events"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use owlet_spool::fs::{Fault, FaultOp, FaultyFs};
    use owlet_spool::{Durability, Spool, SpoolConfig};

    fn event() -> Event {
        Event {
            seq: 0,
            time: Some(owlet_proto::now()),
            kind: Some(owlet_proto::v1::event::Kind::CheckResult(Default::default())),
        }
    }

    /// The agent's `every_batch` durability (deferred flush): events whose
    /// flush failed are counted dropped and reported as `WRITE_FAILED`, never
    /// counted accepted, and the failed report is retried.
    #[tokio::test]
    async fn events_whose_flush_failed_are_reported_not_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        let mut cfg = SpoolConfig::new(dir.path());
        cfg.durability = Durability::Deferred;
        let (spool, _) = Spool::open_with(cfg, Arc::new(fs.clone())).unwrap();
        let store = Store::new(spool);
        let metrics = Metrics::default();
        let mut pending = Vec::new();
        write(&store, &metrics, vec![event()], &mut pending).await;
        assert_eq!(metrics.snapshot().events_accepted, 1);

        fs.fail(FaultOp::Sync, Fault::Io, 1);
        write(&store, &metrics, vec![event(), event()], &mut pending).await;
        let snap = metrics.snapshot();
        assert_eq!(
            snap.events_accepted, 1,
            "a batch whose flush failed was counted accepted"
        );
        assert_eq!(snap.events_dropped, 2);
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert_eq!(pending[0].reason, DataLossReason::WriteFailed as i32);
        assert_eq!(pending[0].events_lost, 2);

        // The report itself hits a failed flush: it stays pending.
        fs.fail(FaultOp::Sync, Fault::Io, 1);
        write_reports(&store, &metrics, &mut pending).await;
        assert_eq!(pending.len(), 1);
        write_reports(&store, &metrics, &mut pending).await;
        assert!(pending.is_empty());
        assert_eq!(store.stats().events, 2, "the first event and one report");
    }
}
