//! Sinks: where the SOC stores what agents send.
//!
//! A [`Sink`] is a blocking, single-owner store. [`SinkHandle`] runs one on a
//! dedicated thread (SQLite and fsync never touch the async workers) and gives
//! the gRPC service an async, cloneable front with a bounded request queue.
//!
//! Contract every sink keeps (the SOC's invariants rest on it):
//! * `store_batch` returns only after the batch is durable; the returned
//!   high-water mark is then safe to acknowledge (invariant 1);
//! * an (agent, seq) pair is stored at most once, across restarts
//!   (invariant 3): events at or below the agent's high-water mark are
//!   dropped;
//! * the identity passed in comes from the client certificate; sinks never
//!   read identity from payloads (invariant 4).

mod bus;
mod legacy;
mod sqlite;

pub use bus::BusSink;
pub use sqlite::{SqliteSink, store_root};

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use owlet_proto::v1::{Batch, Event, Hello, Severity, State};
use owlet_soc_store::liveness::soc_alert;
use owlet_tls::{CertInfo, Identity, RevokedCert};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Store(#[from] owlet_soc_store::StoreError),
    #[error("the sink thread is gone")]
    Gone,
    #[error("{0}")]
    Failed(String),
}

/// An agent's liveness changed (raised by [`Sink::check_liveness`] or by a
/// heartbeat arriving from a silent agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivenessChange {
    pub agent: Identity,
    pub silent: bool,
    /// Silent after saying goodbye: a planned stop (`agent_stopped`).
    pub planned: bool,
}

/// A blocking store of agents and events.
pub trait Sink: Send + 'static {
    /// Records a (re)connecting agent and the certificate it connected
    /// with; returns its high-water mark: the highest sequence number
    /// durably stored for it (0 if none).
    fn agent_connected(
        &mut self,
        who: &Identity,
        hello: &Hello,
        clock_offset_ms: i64,
        peer: &str,
        cert: &CertInfo,
    ) -> Result<u64, SinkError>;

    /// Replaces the set of revoked certificates (from the CRL the receiver
    /// enforces) and records a `certificate_revoked` alert for each agent
    /// whose last certificate is newly in it; returns those agents.
    fn set_revoked(&mut self, revoked: &[RevokedCert]) -> Result<Vec<Identity>, SinkError>;

    /// Stores, durably and all-or-nothing per batch, the events of each batch
    /// above its agent's high-water mark, in order; returns each batch's new
    /// high-water mark or why it was not stored. Also notes heartbeats, and
    /// reports an agent recovered if it was silent. Several batches in one
    /// call let a sink commit them together (group commit: one fsync for
    /// all of a tenant's).
    fn store_batches(&mut self, batches: &[(Identity, Prepared)])
    -> Vec<Result<Stored, SinkError>>;

    /// Stores, durably, one self-test event of a connected agent as a
    /// self-test record: outside its sequence (seq NULL), never touching its
    /// high-water mark; notes when the agent last ran a self-test.
    fn store_self_test(&mut self, who: &Identity, event: &Event) -> Result<(), SinkError>;

    /// Applies each tenant's retention policy (`policy_of(tenant)`) at
    /// `now`; returns what was deleted, per tenant.
    fn enforce_retention(
        &mut self,
        policy_of: &(dyn Fn(&str) -> owlet_soc_store::Policy + Send),
        now: SystemTime,
    ) -> Result<Vec<(String, owlet_soc_store::Deletion)>, SinkError>;

    /// Marks the agent disconnected (its last stream ended).
    fn agent_disconnected(&mut self, who: &Identity) -> Result<(), SinkError>;

    /// Marks agents without a heartbeat for `silent_after` as silent and
    /// records an `agent_silent` alert for each newly silent one.
    fn check_liveness(
        &mut self,
        now: SystemTime,
        silent_after: Duration,
    ) -> Result<Vec<LivenessChange>, SinkError>;
}

/// An agent's batch made ready for storage on the connection that received
/// it: its events decoded into rows there, so the one sink thread spends
/// its time writing (see [`owlet_soc_store::Row`]).
#[derive(Debug, Clone)]
pub struct Prepared {
    pub last_seq: u64,
    pub rows: Vec<owlet_soc_store::Row>,
}

impl Prepared {
    pub fn of(batch: &Batch) -> Self {
        Self {
            last_seq: batch.last_seq,
            rows: batch.events.iter().map(owlet_soc_store::Row::of).collect(),
        }
    }
}

/// What storing one batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The agent's high-water mark after the batch: safe to acknowledge.
    pub acked_seq: u64,
    pub change: Option<LivenessChange>,
}

type Reply<T> = oneshot::Sender<Result<T, SinkError>>;

enum Request {
    Connected {
        who: Identity,
        hello: Box<Hello>,
        clock_offset_ms: i64,
        peer: String,
        cert: CertInfo,
        reply: Reply<u64>,
    },
    Revoked {
        revoked: Vec<RevokedCert>,
        reply: Reply<Vec<Identity>>,
    },
    Store {
        who: Identity,
        batch: Prepared,
        reply: Reply<Stored>,
    },
    SelfTest {
        who: Identity,
        event: Box<Event>,
        reply: Reply<()>,
    },
    Disconnected {
        who: Identity,
    },
    Retention {
        policy_of: Box<dyn Fn(&str) -> owlet_soc_store::Policy + Send>,
        now: SystemTime,
        reply: Reply<Vec<(String, owlet_soc_store::Deletion)>>,
    },
    Liveness {
        now: SystemTime,
        silent_after: Duration,
        reply: Reply<Vec<LivenessChange>>,
    },
}

/// Async front of a sink running on its own thread.
#[derive(Clone)]
pub struct SinkHandle {
    tx: mpsc::Sender<Request>,
    counters: Arc<Counters>,
}

/// What the sink thread did since start (for the service's status line).
#[derive(Debug, Default)]
struct Counters {
    agents_connected: AtomicU64,
    events_stored: AtomicU64,
}

/// Requests waiting for the sink thread; senders wait when it is full.
const QUEUE: usize = 256;
/// Most batches committed in one transaction.
const GROUP_COMMIT_BATCHES: usize = 64;

/// Stores one group commit and answers each batch.
///
/// When the commit fails, every agent in the group is marked broken: its
/// batches still queued behind the failed one are refused, not stored, until
/// the agent reconnects. Storing them would move its high-water mark past the
/// batch that failed, the next welcome would acknowledge that batch, and the
/// agent would delete events the SOC never stored.
fn store_group(
    sink: &mut impl Sink,
    broken: &mut HashSet<Identity>,
    group: Vec<(Identity, Prepared)>,
    replies: Vec<Reply<Stored>>,
) -> u64 {
    let (group, refused): (Vec<_>, Vec<_>) = group
        .into_iter()
        .zip(replies)
        .partition(|((who, _), _)| !broken.contains(who));
    for ((who, _), reply) in refused {
        let _ = reply.send(Err(SinkError::Failed(format!(
            "an earlier batch of {who} was not stored; it must reconnect and resend"
        ))));
    }
    if group.is_empty() {
        return 0;
    }
    let (batches, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
    let mut stored = 0;
    for ((reply, result), (who, batch)) in replies
        .into_iter()
        .zip(sink.store_batches(&batches))
        .zip(batches)
    {
        match result {
            Ok(done) => {
                stored += batch.rows.len() as u64;
                let _ = reply.send(Ok(done));
            }
            Err(e) => {
                broken.insert(who);
                let _ = reply.send(Err(SinkError::Failed(e.to_string())));
            }
        }
    }
    stored
}

impl SinkHandle {
    /// Moves `sink` to a dedicated thread. The thread ends when every handle
    /// is dropped.
    pub fn spawn(sink: impl Sink) -> std::io::Result<Self> {
        Self::spawn_watched(sink, None)
    }

    /// [`SinkHandle::spawn`], the thread marking `beat` busy while it works
    /// on a request (so a commit that never returns stops the systemd
    /// watchdog; waiting for requests is idle).
    pub fn spawn_watched(
        mut sink: impl Sink,
        beat: Option<Arc<owlet_sdnotify::Beat>>,
    ) -> std::io::Result<Self> {
        let (tx, mut rx) = mpsc::channel::<Request>(QUEUE);
        let counters = Arc::new(Counters::default());
        let count = Arc::clone(&counters);
        std::thread::Builder::new().name("owlet-soc-sink".into()).spawn(move || {
            let mut next = None;
            let mut broken = HashSet::new();
            while let Some(request) = next.take().or_else(|| rx.blocking_recv()) {
                let _busy = beat.as_ref().map(|beat| beat.busy());
                match request {
                    Request::Store { who, batch, reply } => {
                        // Group commit: take every store request already queued.
                        let mut group = vec![(who, batch)];
                        let mut replies = vec![reply];
                        while group.len() < GROUP_COMMIT_BATCHES {
                            match rx.try_recv() {
                                Ok(Request::Store { who, batch, reply }) => {
                                    group.push((who, batch));
                                    replies.push(reply);
                                }
                                Ok(other) => {
                                    next = Some(other);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        let events = store_group(&mut sink, &mut broken, group, replies);
                        count.events_stored.fetch_add(events, Ordering::Relaxed);
                    }
                    Request::Connected { who, hello, clock_offset_ms, peer, cert, reply } => {
                        // A new stream starts again from the high-water mark.
                        broken.remove(&who);
                        let connected = sink.agent_connected(&who, &hello, clock_offset_ms, &peer, &cert);
                        if connected.is_ok() {
                            count.agents_connected.fetch_add(1, Ordering::Relaxed);
                        }
                        let _ = reply.send(connected);
                    }
                    Request::Revoked { revoked, reply } => {
                        let _ = reply.send(sink.set_revoked(&revoked));
                    }
                    Request::SelfTest { who, event, reply } => {
                        let _ = reply.send(sink.store_self_test(&who, &event));
                    }
                    Request::Disconnected { who } => {
                        let _ = count.agents_connected.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
                        if let Err(e) = sink.agent_disconnected(&who) {
                            tracing::warn!(agent = %who, error = %e, "could not record disconnect");
                        }
                    }
                    Request::Retention { policy_of, now, reply } => {
                        let _ = reply.send(sink.enforce_retention(&*policy_of, now));
                    }
                    Request::Liveness { now, silent_after, reply } => {
                        let _ = reply.send(sink.check_liveness(now, silent_after));
                    }
                }
            }
        })?;
        Ok(Self { tx, counters })
    }

    /// Agent streams open now (welcomed, not yet ended).
    pub fn agents_connected(&self) -> u64 {
        self.counters.agents_connected.load(Ordering::Relaxed)
    }

    /// Events in batches committed since start (resent duplicates included).
    pub fn events_stored(&self) -> u64 {
        self.counters.events_stored.load(Ordering::Relaxed)
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, SinkError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| SinkError::Gone)?;
        rx.await.map_err(|_| SinkError::Gone)?
    }

    pub async fn agent_connected(
        &self,
        who: Identity,
        hello: Hello,
        clock_offset_ms: i64,
        peer: String,
        cert: CertInfo,
    ) -> Result<u64, SinkError> {
        self.call(|reply| Request::Connected {
            who,
            hello: Box::new(hello),
            clock_offset_ms,
            peer,
            cert,
            reply,
        })
        .await
    }

    /// See [`Sink::set_revoked`].
    pub async fn set_revoked(&self, revoked: Vec<RevokedCert>) -> Result<Vec<Identity>, SinkError> {
        self.call(|reply| Request::Revoked { revoked, reply }).await
    }

    /// Queues a batch for storage and returns once it is queued (in call
    /// order); the receiver resolves when the batch is durable. Queuing in
    /// order matters: a batch must never be stored after its successor.
    pub async fn submit_batch(
        &self,
        who: Identity,
        batch: Batch,
    ) -> Result<oneshot::Receiver<Result<Stored, SinkError>>, SinkError> {
        let (reply, rx) = oneshot::channel();
        let batch = Prepared::of(&batch);
        self.tx
            .send(Request::Store { who, batch, reply })
            .await
            .map_err(|_| SinkError::Gone)?;
        Ok(rx)
    }

    /// Stores a self-test event; returns once it is durable.
    pub async fn store_self_test(&self, who: Identity, event: Event) -> Result<(), SinkError> {
        self.call(|reply| Request::SelfTest {
            who,
            event: Box::new(event),
            reply,
        })
        .await
    }

    pub async fn agent_disconnected(&self, who: Identity) {
        let _ = self.tx.send(Request::Disconnected { who }).await;
    }

    /// See [`Sink::enforce_retention`].
    pub async fn enforce_retention(
        &self,
        policy_of: Box<dyn Fn(&str) -> owlet_soc_store::Policy + Send>,
        now: SystemTime,
    ) -> Result<Vec<(String, owlet_soc_store::Deletion)>, SinkError> {
        self.call(|reply| Request::Retention {
            policy_of,
            now,
            reply,
        })
        .await
    }

    pub async fn check_liveness(
        &self,
        now: SystemTime,
        silent_after: Duration,
    ) -> Result<Vec<LivenessChange>, SinkError> {
        self.call(|reply| Request::Liveness {
            now,
            silent_after,
            reply,
        })
        .await
    }
}

/// The alert the SOC records when the CRL it enforces revokes an agent's
/// certificate.
pub(crate) fn revoked_alert(who: &Identity, cert: &RevokedCert) -> Event {
    let message = format!(
        "the certificate {} of {who} is revoked ({}): its streams are ended and its connections refused",
        cert.serial,
        cert.reason.as_deref().unwrap_or("no reason given")
    );
    soc_alert(
        &who.to_string(),
        "certificate_revoked",
        Severity::Warning,
        State::Down,
        message,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails the first `fail` commits, then stores everything.
    struct FlakySink {
        fail: usize,
        committed: Vec<u64>,
    }

    impl Sink for FlakySink {
        fn agent_connected(
            &mut self,
            _: &Identity,
            _: &Hello,
            _: i64,
            _: &str,
            _: &CertInfo,
        ) -> Result<u64, SinkError> {
            Ok(self.committed.last().copied().unwrap_or(0))
        }
        fn set_revoked(&mut self, _: &[RevokedCert]) -> Result<Vec<Identity>, SinkError> {
            Ok(vec![])
        }
        fn store_batches(
            &mut self,
            batches: &[(Identity, Prepared)],
        ) -> Vec<Result<Stored, SinkError>> {
            if self.fail > 0 {
                self.fail -= 1;
                return batches
                    .iter()
                    .map(|_| Err(SinkError::Failed("disk I/O error".into())))
                    .collect();
            }
            self.committed
                .extend(batches.iter().map(|(_, b)| b.last_seq));
            batches
                .iter()
                .map(|(_, b)| {
                    Ok(Stored {
                        acked_seq: b.last_seq,
                        change: None,
                    })
                })
                .collect()
        }
        fn store_self_test(&mut self, _: &Identity, _: &Event) -> Result<(), SinkError> {
            Ok(())
        }
        fn agent_disconnected(&mut self, _: &Identity) -> Result<(), SinkError> {
            Ok(())
        }
        fn enforce_retention(
            &mut self,
            _: &(dyn Fn(&str) -> owlet_soc_store::Policy + Send),
            _: SystemTime,
        ) -> Result<Vec<(String, owlet_soc_store::Deletion)>, SinkError> {
            Ok(vec![])
        }
        fn check_liveness(
            &mut self,
            _: SystemTime,
            _: Duration,
        ) -> Result<Vec<LivenessChange>, SinkError> {
            Ok(vec![])
        }
    }

    fn batch(seq: u64) -> Batch {
        Batch {
            first_seq: seq,
            last_seq: seq,
            events: vec![],
        }
    }

    #[tokio::test]
    async fn batches_queued_behind_a_failed_commit_are_refused_until_reconnect() {
        let who = Identity::new("acme", "s1").unwrap();
        let sink = SinkHandle::spawn(FlakySink {
            fail: 1,
            committed: vec![],
        })
        .unwrap();
        // The first commit fails; batches of the same stream that come after
        // it (in the SOC they were already queued) must not be stored, or
        // the high-water mark would pass the failed batch.
        let first = sink.submit_batch(who.clone(), batch(1)).await.unwrap();
        assert!(
            first.await.unwrap().is_err(),
            "the first commit was meant to fail"
        );
        for seq in 2..=3 {
            let r = sink.submit_batch(who.clone(), batch(seq)).await.unwrap();
            let result = r.await.unwrap();
            assert!(
                result.is_err(),
                "batch {seq} behind the failed one was stored: {result:?}"
            );
        }
        // Another agent is not affected.
        let other = Identity::new("acme", "s2").unwrap();
        let r = sink.submit_batch(other, batch(7)).await.unwrap();
        assert_eq!(r.await.unwrap().unwrap().acked_seq, 7);
        // Reconnecting clears the mark: the resend is stored.
        sink.agent_connected(
            who.clone(),
            Hello::default(),
            0,
            "p".into(),
            sqlite::test_cert(),
        )
        .await
        .unwrap();
        let r = sink.submit_batch(who.clone(), batch(1)).await.unwrap();
        assert_eq!(r.await.unwrap().unwrap().acked_seq, 1);
    }
}
