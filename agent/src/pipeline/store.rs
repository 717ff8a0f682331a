//! An async handle on the on-disk spool (`owlet-spool`), shared by the spool
//! writer and the uplink.
//!
//! Every spool call is blocking file I/O (and may fsync), so it runs on
//! tokio's blocking pool, never on an async worker. The writer wakes the
//! uplink through [`Store::appended`] after each append. Statistics are read
//! from the spool's published snapshot, never through the lock a blocking
//! thread may hold across an fsync or a rename.

use std::sync::{Arc, Mutex, MutexGuard};

use owlet_proto::v1::Event;
use owlet_spool::{Appended, Durability, EncodedBatch, Spool, SpoolError, SpoolStats, StatsHandle};
use tokio::sync::Notify;

/// What an append did.
pub struct Written {
    /// Numbering, and the losses the spool reports with this append.
    pub appended: Appended,
    /// The deferred flush after the append failed: the events are NOT
    /// accepted (the spool dropped them again); the caller reports them as
    /// `WRITE_FAILED`. `appended.losses` must still be reported.
    pub sync_error: Option<SpoolError>,
}

#[derive(Clone)]
pub struct Store {
    spool: Arc<Mutex<Spool>>,
    stats: StatsHandle,
    appended: Arc<Notify>,
}

impl Store {
    pub fn new(spool: Spool) -> Self {
        Self {
            stats: spool.stats_handle(),
            spool: Arc::new(Mutex::new(spool)),
            appended: Arc::new(Notify::new()),
        }
    }

    /// Appends events (the spool numbers them). Once this returns `Ok` the
    /// events are *accepted*: they reach the SOC or are counted as lost.
    ///
    /// With deferred durability the flush to disk happens after the spool
    /// lock is released, so the uplink can read and send while the disk
    /// works. A failed flush means the events are not accepted: it is
    /// returned in [`Written::sync_error`], and the spool drops them (a
    /// later successful flush of that segment would prove nothing).
    pub async fn append(&self, events: Vec<Event>) -> Result<Written, SpoolError> {
        let _busy = crate::tasks::busy();
        let (appended, flush) = self
            .blocking(move |spool| {
                let appended = spool.append(events)?;
                let flush = if spool.durability() == Durability::Deferred {
                    // Without a handle (no descriptor left to duplicate),
                    // flush under the lock instead. If that fails the spool
                    // reports the events lost itself (WRITE_FAILED).
                    spool.sync_handle().or_else(|e| {
                        tracing::warn!(error = %e, "flushing the spool under its lock");
                        if let Err(e) = spool.sync() {
                            tracing::error!(error = %e, "spool flush failed; the spool reports the loss");
                        }
                        Ok::<_, SpoolError>(None)
                    })?
                } else {
                    None
                };
                Ok((appended, flush))
            })
            .await?;
        self.appended.notify_one();
        let sync_error = match flush {
            None => None,
            Some(flush) => match tokio::task::spawn_blocking(move || flush.sync()).await {
                Ok(result) => result.err(),
                Err(join) => std::panic::resume_unwind(join.into_panic()),
            },
        };
        if sync_error.is_some() {
            // Take the unflushed events out of the spool now, before the
            // uplink reads them again; the spool abandons the segment.
            if let Err(e) = self.sync().await {
                tracing::warn!(error = %e, "spool sync after a failed flush failed too");
            }
        }
        Ok(Written {
            appended,
            sync_error,
        })
    }

    /// Stored batches after `after_seq`, about `max_bytes` worth, as the
    /// encoded bytes the spool holds (what goes on the wire).
    pub async fn read_encoded_after(
        &self,
        after_seq: u64,
        max_bytes: usize,
    ) -> Result<Vec<EncodedBatch>, SpoolError> {
        let _busy = crate::tasks::busy();
        self.blocking(move |spool| spool.read_encoded_after(after_seq, max_bytes))
            .await
    }

    /// Records the SOC's cumulative acknowledgement.
    pub async fn ack(&self, seq: u64) -> Result<(), SpoolError> {
        let _busy = crate::tasks::busy();
        self.blocking(move |spool| spool.ack(seq)).await
    }

    /// Drops data older than the spool's age bound; returns what was lost.
    pub async fn expire(&self) -> Result<Vec<owlet_proto::v1::DataLoss>, SpoolError> {
        let _busy = crate::tasks::busy();
        self.blocking(|spool| spool.expire(std::time::SystemTime::now()))
            .await
    }

    /// Forces appended data to stable storage now.
    pub async fn sync(&self) -> Result<(), SpoolError> {
        let _busy = crate::tasks::busy();
        self.blocking(|spool| spool.sync()).await
    }

    /// Counters from the spool's in-memory index (cheap; does not wait for
    /// the spool's lock).
    pub fn stats(&self) -> SpoolStats {
        self.stats.get()
    }

    /// Resolves after the next append (or at once if one happened since the
    /// last call).
    pub async fn appended(&self) {
        self.appended.notified().await;
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
    ) -> Result<T, SpoolError> {
        let spool = Arc::clone(&self.spool);
        match tokio::task::spawn_blocking(move || f(&mut lock(&spool))).await {
            Ok(result) => result,
            // The closure panicked: a bug, not an input problem. Surface it.
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }
}

/// A panic while holding the lock cannot leave the spool half-written in a
/// way the next call could observe (each spool method restores its own
/// invariants before returning an error), so a poisoned lock is still usable.
fn lock(spool: &Mutex<Spool>) -> MutexGuard<'_, Spool> {
    spool
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use owlet_proto::v1::{CheckResult, event::Kind};
    use owlet_spool::SpoolConfig;
    use owlet_spool::fs::{Fault, FaultOp, FaultyFs};

    pub(crate) fn event() -> Event {
        Event {
            seq: 0,
            time: Some(owlet_proto::now()),
            kind: Some(Kind::CheckResult(CheckResult::default())),
        }
    }

    pub(crate) fn store(dir: &std::path::Path, durability: Durability, fs: &FaultyFs) -> Store {
        let mut cfg = SpoolConfig::new(dir);
        cfg.durability = durability;
        let (spool, _) = Spool::open_with(cfg, Arc::new(fs.clone())).unwrap();
        Store::new(spool)
    }

    /// A blocking thread holds the spool inside an fdatasync that does not
    /// return; the statistics the heartbeat and `owlet health` read must
    /// not wait for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stats_do_not_wait_for_a_sync_holding_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        let store = store(dir.path(), Durability::EveryBatch, &fs);
        store.append(vec![event()]).await.unwrap();
        let gate = fs.block_next_sync();
        let appending = {
            let store = store.clone();
            tokio::spawn(async move { store.append(vec![event(), event()]).await })
        };
        let waiter = gate.clone();
        tokio::task::spawn_blocking(move || waiter.wait_entered())
            .await
            .unwrap();
        // Read from a plain thread so a stats() that waits for the lock
        // shows up as a failure, not a hung test.
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = store.clone();
        std::thread::spawn(move || tx.send(reader.stats()));
        let during = rx.recv_timeout(std::time::Duration::from_secs(30));
        gate.release();
        let during = during.expect("stats() waited for the spool lock held across an fsync");
        assert_eq!(during.events, 1);
        appending.await.unwrap().unwrap();
        assert_eq!(store.stats().events, 3);
    }

    /// With deferred durability (`every_batch`), a failed flush means the
    /// events are not accepted: the caller is told, the spool no longer
    /// holds them, and it does not report them a second time.
    #[tokio::test]
    async fn a_failed_deferred_flush_is_not_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        let store = store(dir.path(), Durability::Deferred, &fs);
        let first = store.append(vec![event()]).await.unwrap();
        assert!(first.sync_error.is_none());
        fs.fail(FaultOp::Sync, Fault::Io, 1);
        let failed = store.append(vec![event(), event()]).await.unwrap();
        assert!(
            failed.sync_error.is_some(),
            "a failed flush must be reported"
        );
        let stored = store.read_encoded_after(0, usize::MAX).await.unwrap();
        assert_eq!(
            stored.iter().map(|b| b.last_seq).collect::<Vec<_>>(),
            vec![first.appended.last_seq],
            "the unflushed batch must leave the spool"
        );
        assert_eq!(store.stats().events, 1);
        let next = store.append(vec![event()]).await.unwrap();
        assert!(next.sync_error.is_none());
        assert!(
            next.appended.losses.is_empty(),
            "{:?}",
            next.appended.losses
        );
        assert!(next.appended.first_seq > failed.appended.last_seq);
    }
}
