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

mod sqlite;

pub use sqlite::SqliteSink;

use std::time::{Duration, SystemTime};

use owlet_proto::v1::{Batch, Hello};
use owlet_tls::Identity;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
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
}

/// A blocking store of agents and events.
pub trait Sink: Send + 'static {
    /// Records a (re)connecting agent; returns its high-water mark: the
    /// highest sequence number durably stored for it (0 if none).
    fn agent_connected(
        &mut self,
        who: &Identity,
        hello: &Hello,
        clock_offset_ms: i64,
        peer: &str,
    ) -> Result<u64, SinkError>;

    /// Stores, durably and all-or-nothing, the events of each batch above its
    /// agent's high-water mark, in order; returns each batch's new high-water
    /// mark. Also notes heartbeats, and reports an agent recovered if it was
    /// silent. Several batches in one call let a sink commit them together
    /// (group commit: one fsync for all).
    fn store_batches(&mut self, batches: &[(Identity, Batch)]) -> Result<Vec<Stored>, SinkError>;

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
        reply: Reply<u64>,
    },
    Store {
        who: Identity,
        batch: Batch,
        reply: Reply<Stored>,
    },
    Disconnected {
        who: Identity,
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
}

/// Requests waiting for the sink thread; senders wait when it is full.
const QUEUE: usize = 256;
/// Most batches committed in one transaction.
const GROUP_COMMIT_BATCHES: usize = 64;

impl SinkHandle {
    /// Moves `sink` to a dedicated thread. The thread ends when every handle
    /// is dropped.
    pub fn spawn(mut sink: impl Sink) -> std::io::Result<Self> {
        let (tx, mut rx) = mpsc::channel::<Request>(QUEUE);
        std::thread::Builder::new().name("owlet-soc-sink".into()).spawn(move || {
            let mut next = None;
            while let Some(request) = next.take().or_else(|| rx.blocking_recv()) {
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
                        match sink.store_batches(&group) {
                            Ok(results) => {
                                for (reply, stored) in replies.into_iter().zip(results) {
                                    let _ = reply.send(Ok(stored));
                                }
                            }
                            Err(e) => {
                                let message = e.to_string();
                                for reply in replies {
                                    let _ = reply.send(Err(SinkError::Failed(message.clone())));
                                }
                            }
                        }
                    }
                    Request::Connected { who, hello, clock_offset_ms, peer, reply } => {
                        let _ = reply.send(sink.agent_connected(&who, &hello, clock_offset_ms, &peer));
                    }
                    Request::Disconnected { who } => {
                        if let Err(e) = sink.agent_disconnected(&who) {
                            tracing::warn!(agent = %who, error = %e, "could not record disconnect");
                        }
                    }
                    Request::Liveness { now, silent_after, reply } => {
                        let _ = reply.send(sink.check_liveness(now, silent_after));
                    }
                }
            }
        })?;
        Ok(Self { tx })
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
    ) -> Result<u64, SinkError> {
        self.call(|reply| Request::Connected {
            who,
            hello: Box::new(hello),
            clock_offset_ms,
            peer,
            reply,
        })
        .await
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
        self.tx
            .send(Request::Store { who, batch, reply })
            .await
            .map_err(|_| SinkError::Gone)?;
        Ok(rx)
    }

    pub async fn agent_disconnected(&self, who: Identity) {
        let _ = self.tx.send(Request::Disconnected { who }).await;
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
