//! The spool writer: drains the bus into the spool, batch by batch, and turns
//! every loss the spool reports into a `data_loss` event.
//!
//! Guarantees: an event is *accepted* when the spool append that holds it
//! returned `Ok`; every accepted event later lost is counted in a `DataLoss`
//! event (spool full, spool age, corruption). Events that could not be written
//! at all (disk full, I/O error) are counted as `WRITE_FAILED` loss. Loss
//! reports themselves are retried until they are written.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use owlet_proto::v1::{DataLoss, DataLossReason, Event, event::Kind};
use tracing::{error, warn};

use super::bus::Batcher;
use super::metrics::Metrics;
use super::store::Store;

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
        if !events.is_empty() {
            write(&store, &metrics, events, &mut pending).await;
        }
        if !pending.is_empty() {
            let reports: Vec<Event> = pending.iter().map(loss_event).collect();
            let count = reports.len();
            match store.append(reports).await {
                Ok(appended) => {
                    metrics.accepted(count as u64);
                    pending.clear();
                    record_losses(&metrics, &appended.losses);
                    pending.extend(appended.losses);
                }
                // Keep them; they are retried after the next batch.
                Err(e) => warn!(error = %e, "could not write the data-loss report yet"),
            }
        }
    }
    if let Err(e) = store.sync().await {
        warn!(error = %e, "final spool sync failed");
    }
}

async fn write(store: &Store, metrics: &Metrics, events: Vec<Event>, pending: &mut Vec<DataLoss>) {
    let count = events.len() as u64;
    let failed = write_failed_report(&events);
    match store.append(events).await {
        Ok(appended) => {
            metrics.accepted(count);
            record_losses(metrics, &appended.losses);
            pending.extend(appended.losses);
        }
        Err(e) => {
            metrics.error("spool_write");
            metrics.dropped(count);
            error!(error = %e, events = count, "could not write events to the spool; they are lost and reported");
            pending.push(failed);
        }
    }
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

/// The report for a batch the spool refused: counts by kind and time range.
fn write_failed_report(events: &[Event]) -> DataLoss {
    let mut lost_by_kind = BTreeMap::<String, u64>::new();
    for event in events {
        *lost_by_kind
            .entry(event.kind_name().to_string())
            .or_default() += 1;
    }
    let times = events.iter().filter_map(|e| e.time);
    DataLoss {
        reason: DataLossReason::WriteFailed as i32,
        events_lost: events.len() as u64,
        batches_lost: 1,
        first_seq: 0,
        last_seq: 0,
        lost_by_kind: lost_by_kind.into_iter().collect(),
        oldest: times.clone().min_by_key(owlet_proto::timestamp_micros),
        newest: times.max_by_key(owlet_proto::timestamp_micros),
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
