//! Publishing an agent's events to its tenant's JetStream stream, exactly
//! once (see the crate doc for the layout and the guarantees).
//!
//! An [`AgentLog`] is one receiver's view of one agent's subject: the
//! agent's high-water mark (the highest sequence number on the subject)
//! and the stream sequence of the subject's last message. Both are read
//! from the stream when the agent connects ([`Bus::agent`]) and after any
//! refused publish; they are never trusted across a refusal. It must never
//! move the mark before JetStream acknowledged the message.
//!
//! How a batch goes out. The next message's expected last subject sequence
//! is the previous message's stream sequence, known only from its ack, so
//! publishes of one agent cannot simply be pipelined without giving up the
//! per-message check (and with it the order: a message lost in a leader
//! election would let the next one through, out of order). On nats-server
//! 2.12+ a batch therefore goes out as a JetStream *atomic batch* (ADR-50:
//! `Nats-Batch-Id`, `Nats-Batch-Sequence`, `Nats-Batch-Commit`; the stream
//! has `allow_atomic`): the messages of a chunk of up to [`ATOMIC_MAX`] are
//! sent back to back, the first carrying the expected last subject
//! sequence, and JetStream stores the whole chunk or none of it with one
//! ack for the commit. The check on the first message covers the chunk:
//! nothing can come between messages of one atomic batch. On older servers,
//! or when a server refuses atomic batches for the stream, each event is
//! published and acknowledged in turn as before.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use bytes::Bytes;
use tokio::sync::Mutex;

use crate::{BusError, SEQ_HEADER, stream_name, subject, token};

/// Most events in one JetStream atomic batch (nats-server's default limit).
pub const ATOMIC_MAX: usize = 1000;

/// JetStream's refusal of an atomic batch holding a `Nats-Msg-Id` it
/// stored within the duplicate window ("atomic publish batch contains
/// duplicate message id"; async-nats has no name for it).
const DUPLICATE_IN_BATCH: async_nats::jetstream::ErrorCode =
    async_nats::jetstream::ErrorCode(10201);

/// The first nats-server with atomic batch publishing (and `Nats-Msg-Id`
/// in batches from 2.12.1).
const ATOMIC_SINCE: (u32, u32, u32) = (2, 12, 1);

/// How to reach the bus and how tenant streams are made.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// `nats://host:port` of the cluster's servers (any subset reaches all).
    pub servers: Vec<String>,
    /// A NATS `.creds` file (JWT + NKey seed), when the cluster requires one.
    pub credentials: Option<PathBuf>,
    /// Replicas of each tenant stream (3 in a 3-node cluster).
    pub replicas: usize,
    /// JetStream's `Nats-Msg-Id` duplicate window of each tenant stream.
    pub duplicate_window: Duration,
    /// How long one event may wait for JetStream (leader elections included)
    /// before the batch fails and the agent resends it.
    pub publish_deadline: Duration,
    /// How long a tenant stream keeps events at most (the tenant's own
    /// `max_age` when shorter): JetStream is the buffer in front of
    /// PostgreSQL, which keeps them for the tenant's retention. Longer
    /// than the writer may ever be down. `None`: the tenant's retention.
    pub buffer_max_age: Option<Duration>,
}

impl BusConfig {
    pub fn new(servers: Vec<String>) -> Self {
        Self {
            servers,
            credentials: None,
            replicas: 3,
            duplicate_window: Duration::from_secs(120),
            publish_deadline: Duration::from_secs(30),
            buffer_max_age: Some(DEFAULT_BUFFER_MAX_AGE),
        }
    }
}

/// 7 days: a week-long writer or PostgreSQL outage loses nothing.
pub const DEFAULT_BUFFER_MAX_AGE: Duration = Duration::from_secs(7 * 86_400);

/// Stream metadata keys with the tenant's retention (seconds; bytes),
/// absent when unlimited. The writer applies them to PostgreSQL; the
/// stream's own limits are the buffer's.
const META_RETENTION: &str = "owlet.retention";
const META_MAX_AGE: &str = "owlet.retention.max_age_s";
const META_MAX_BYTES: &str = "owlet.retention.max_bytes";

impl Retention {
    /// The stream metadata that carries this retention.
    fn metadata(self) -> HashMap<String, String> {
        let mut meta = HashMap::from([(META_RETENTION.to_string(), "1".to_string())]);
        if let Some(age) = self.max_age {
            meta.insert(META_MAX_AGE.into(), age.as_secs().to_string());
        }
        if let Some(bytes) = self.max_bytes {
            meta.insert(META_MAX_BYTES.into(), bytes.to_string());
        }
        meta
    }

    /// The tenant's retention as a receiver wrote it on its stream; for a
    /// stream without it (made by an older receiver), the stream's limits.
    pub fn of_stream(config: &stream::Config) -> Self {
        if config.metadata.contains_key(META_RETENTION) {
            let number = |key| {
                config
                    .metadata
                    .get(key)
                    .and_then(|v: &String| v.parse::<u64>().ok())
            };
            return Self {
                max_age: number(META_MAX_AGE).map(Duration::from_secs),
                max_bytes: number(META_MAX_BYTES),
            };
        }
        Self {
            max_age: Some(config.max_age).filter(|age| !age.is_zero()),
            max_bytes: u64::try_from(config.max_bytes).ok(),
        }
    }
}

/// A tenant's retention limits (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Option<Duration>,
    pub max_bytes: Option<u64>,
}

/// A connection to the JetStream cluster.
pub struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
    config: BusConfig,
    /// Whether the server takes atomic batches ([`ATOMIC_SINCE`]).
    atomic: bool,
    /// Tenant streams this process has created or updated, and whether
    /// each allows atomic batches.
    streams: Mutex<HashMap<String, (stream::Stream<()>, bool)>>,
}

/// Whether a nats-server version ("2.15.1", "2.12.0-RC.1") takes atomic
/// batches with `Nats-Msg-Id`.
fn takes_atomic_batches(version: &str) -> bool {
    let mut parts = version
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    found >= ATOMIC_SINCE
}

impl Bus {
    /// Connects to the cluster; fails (naming the servers and what to check)
    /// when none of them answers.
    pub async fn connect(config: &BusConfig) -> Result<Self, BusError> {
        let servers = config.servers.join(", ");
        let connect_error = |reason: String| BusError::Connect {
            servers: servers.clone(),
            reason,
        };
        let addrs = config
            .servers
            .iter()
            .map(|s| s.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| connect_error(format!("not a server address ({e})")))?;
        let mut options = async_nats::ConnectOptions::new()
            .name("owlet-soc")
            .connection_timeout(Duration::from_secs(5));
        if let Some(path) = &config.credentials {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| BusError::Credentials {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
        }
        let client = options
            .connect(addrs)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let js = jetstream::new(client.clone());
        js.query_account()
            .await
            .map_err(|e| connect_error(format!("JetStream does not answer: {e}")))?;
        let atomic = takes_atomic_batches(&client.server_info().version);
        Ok(Self {
            client,
            js,
            config: config.clone(),
            atomic,
            streams: Mutex::default(),
        })
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Creates `tenant`'s stream, or updates its limits to `retention`.
    pub async fn ensure_stream(
        &self,
        tenant: &str,
        retention: Retention,
    ) -> Result<stream::Stream<()>, BusError> {
        Ok(self.ensure_stream_atomic(tenant, retention).await?.0)
    }

    /// [`Bus::ensure_stream`], and whether the stream takes atomic batches.
    async fn ensure_stream_atomic(
        &self,
        tenant: &str,
        retention: Retention,
    ) -> Result<(stream::Stream<()>, bool), BusError> {
        let mut streams = self.streams.lock().await;
        if let Some(s) = streams.get(tenant) {
            return Ok(s.clone());
        }
        let name = stream_name(tenant);
        let stream_error = |reason: String| BusError::Stream {
            stream: name.clone(),
            reason,
        };
        let config = stream::Config {
            name: name.clone(),
            description: Some(format!("owlet events of tenant {tenant}")),
            subjects: vec![format!("owlet.{}.>", token(tenant))],
            max_age: [retention.max_age, self.config.buffer_max_age]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_default(),
            metadata: retention.metadata(),
            max_bytes: retention
                .max_bytes
                .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
            num_replicas: self.config.replicas,
            duplicate_window: self.config.duplicate_window,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            allow_atomic_publish: self.atomic,
            ..Default::default()
        };
        let mut atomic = self.atomic;
        if let Err(e) = self.js.create_or_update_stream(config.clone()).await {
            // Only a refusal (an API error) is about the flag; a timeout
            // says nothing about it and fails as it always did.
            let refused = matches!(
                e.kind(),
                async_nats::jetstream::context::CreateStreamErrorKind::JetStream(_)
            );
            if !atomic || !refused {
                return Err(stream_error(e.to_string()));
            }
            // A cluster with an older node, or a stream that cannot take
            // the flag: publish event by event.
            tracing::warn!(stream = %name, error = %e, "atomic batches refused; publishing event by event");
            atomic = false;
            self.js
                .create_or_update_stream(stream::Config {
                    allow_atomic_publish: false,
                    ..config
                })
                .await
                .map_err(|e| stream_error(e.to_string()))?;
        }
        let handle = self
            .js
            .get_stream_no_info(&name)
            .await
            .map_err(|e| stream_error(e.to_string()))?;
        streams.insert(tenant.to_string(), (handle.clone(), atomic));
        Ok((handle, atomic))
    }

    /// The log of one agent, its high-water mark read from the stream.
    pub async fn agent(
        &self,
        tenant: &str,
        agent: &str,
        retention: Retention,
    ) -> Result<AgentLog, BusError> {
        // A tenant the writer cannot store is refused before its first
        // event is acknowledged.
        crate::writer::check_tenant(tenant)?;
        let (stream, atomic) = self.ensure_stream_atomic(tenant, retention).await?;
        let mut log = AgentLog {
            client: self.client.clone(),
            js: self.js.clone(),
            stream,
            atomic,
            batches: 0,
            subject: subject(tenant, agent),
            id_prefix: format!("{tenant}/{agent}/"),
            last_subject_seq: 0,
            mark: 0,
            deadline: self.config.publish_deadline,
            expect_last: true,
        };
        match log.recover().await {
            Err(BusError::StreamGone { subject }) => {
                // Deleted since this receiver created it (by hand, or a
                // cluster rebuilt): create it again, once.
                tracing::warn!(%tenant, %subject, "the tenant's stream is gone; creating it again");
                self.streams.lock().await.remove(tenant);
                let (stream, atomic) = self.ensure_stream_atomic(tenant, retention).await?;
                log.stream = stream;
                log.atomic = atomic;
                log.recover().await?;
            }
            other => other?,
        }
        Ok(log)
    }

    /// Publishes a record the SOC made about `agent` of `tenant` (`body`:
    /// an `owlet.v1.Event` protobuf outside the agent's sequence) on the
    /// agent's records subject ([`crate::record_subject`]), with
    /// `Nats-Msg-Id` `<tenant>/<agent>/soc/<id>`: the same `id` published
    /// again within the duplicate window (a retry, another receiver) is
    /// stored once. Returns when JetStream acknowledged it; retries
    /// through leader elections up to the publish deadline.
    pub async fn publish_record(
        &self,
        tenant: &str,
        agent: &str,
        retention: Retention,
        id: &str,
        body: Bytes,
    ) -> Result<(), BusError> {
        crate::writer::check_tenant(tenant)?;
        self.ensure_stream_atomic(tenant, retention).await?;
        let subject = crate::record_subject(tenant, agent);
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            let mut headers = HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("{tenant}/{agent}/soc/{id}").as_str(),
            );
            let acked = match self
                .js
                .publish_with_headers(subject.clone(), headers, body.clone())
                .await
            {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            let reason = match acked {
                Ok(_) => return Ok(()),
                Err(e) => e.to_string(),
            };
            if started.elapsed() >= self.config.publish_deadline {
                return Err(BusError::Publish {
                    subject,
                    waited: self.config.publish_deadline,
                    reason,
                });
            }
            tracing::debug!(%subject, %reason, "record publish retried");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}

/// What [`AgentLog::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Appended {
    /// The agent's high-water mark afterwards: safe to acknowledge.
    pub acked_seq: u64,
    pub published: u64,
    /// Events at or below the mark (already on the subject).
    pub skipped: u64,
    /// Times another writer of the subject was detected and the mark re-read.
    pub conflicts: u64,
}

/// What became of one atomic batch.
enum Batch {
    /// Stored whole; the mark is its last event.
    Stored,
    /// Refused because the subject moved; the mark was re-read.
    Refused,
    /// The server does not take atomic batches for this stream.
    NotTaken,
}

/// One receiver's writer of one agent's subject.
pub struct AgentLog {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream<()>,
    /// Batches go out as JetStream atomic batches (else event by event).
    atomic: bool,
    /// Atomic batches sent so far (part of each batch id).
    batches: u64,
    subject: String,
    id_prefix: String,
    /// Stream sequence of the subject's last message (0: none).
    last_subject_seq: u64,
    /// The agent's high-water mark: the highest seq on the subject.
    mark: u64,
    deadline: Duration,
    /// Only a test switches this off, to show what the header prevents.
    expect_last: bool,
}

impl AgentLog {
    /// The agent's high-water mark.
    pub fn mark(&self) -> u64 {
        self.mark
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Testing only: publish without `Nats-Expected-Last-Subject-Sequence`
    /// (what the exactly-once tests must catch).
    #[doc(hidden)]
    pub fn without_expected_sequence(mut self) -> Self {
        self.expect_last = false;
        self
    }

    /// Re-reads the mark and the subject's last stream sequence from the
    /// stream leader, retrying through leader elections up to the deadline.
    pub async fn recover(&mut self) -> Result<(), BusError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            match self.read_last().await {
                Ok(()) => return Ok(()),
                Err(e @ (BusError::BadLastMessage { .. } | BusError::StreamGone { .. })) => {
                    return Err(e);
                }
                Err(e) if started.elapsed() >= self.deadline => return Err(e),
                Err(e) => {
                    tracing::debug!(subject = %self.subject, error = %e, "re-reading the agent's last message");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    async fn read_last(&mut self) -> Result<(), BusError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        match self
            .stream
            .get_last_raw_message_by_subject(&self.subject)
            .await
        {
            Ok(message) => {
                let seq = message
                    .headers
                    .get(SEQ_HEADER)
                    .and_then(|v| v.as_str().parse::<u64>().ok())
                    .or_else(|| {
                        <owlet_proto::v1::Event as prost::Message>::decode(message.payload)
                            .ok()
                            .map(|e| e.seq)
                    })
                    .filter(|&seq| seq > 0)
                    .ok_or_else(|| BusError::BadLastMessage {
                        subject: self.subject.clone(),
                    })?;
                self.mark = seq;
                self.last_subject_seq = message.sequence;
                Ok(())
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                self.mark = 0;
                self.last_subject_seq = 0;
                Ok(())
            }
            Err(e)
                if matches!(e.kind(), LastRawMessageErrorKind::JetStream(j)
                if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                Err(BusError::StreamGone {
                    subject: self.subject.clone(),
                })
            }
            Err(e) => Err(BusError::Publish {
                subject: self.subject.clone(),
                waited: self.deadline,
                reason: format!("reading the subject's last message: {e}"),
            }),
        }
    }

    /// Publishes `events` (sequence number, `owlet.v1.Event` protobuf), in
    /// increasing order, each once: those at or below the mark are skipped.
    /// Returns when every published event is acknowledged by JetStream.
    pub async fn append(&mut self, events: &[(u64, Bytes)]) -> Result<Appended, BusError> {
        let mut done = Appended::default();
        let mut next = 0;
        while next < events.len() {
            let (seq, body) = &events[next];
            if *seq <= self.mark {
                done.skipped += 1;
                next += 1;
                continue;
            }
            if self.atomic {
                let end = (next + ATOMIC_MAX).min(events.len());
                match self.publish_atomic(&events[next..end], &mut done).await? {
                    Batch::Stored => {
                        done.published += (end - next) as u64;
                        next = end;
                    }
                    // The mark was re-read: what is at or below it is
                    // skipped on the next round.
                    Batch::Refused => {}
                    Batch::NotTaken => self.atomic = false,
                }
                continue;
            }
            if self.publish_one(*seq, body, &mut done).await? {
                done.published += 1;
            } else {
                done.skipped += 1;
            }
            next += 1;
        }
        done.acked_seq = self.mark;
        Ok(done)
    }

    /// The headers every event carries; the expected last subject sequence
    /// only when asked for (the first message of an atomic batch, every
    /// message published alone).
    fn headers(&self, seq: u64, expect: bool) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("{}{seq}", self.id_prefix).as_str(),
        );
        if expect && self.expect_last {
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                self.last_subject_seq.to_string().as_str(),
            );
        }
        headers.insert(SEQ_HEADER, seq.to_string().as_str());
        headers
    }

    /// A batch id unique among the stream's open batches (at most 64
    /// characters): the subject's hash, this log's batch count, the time.
    fn batch_id(&mut self) -> String {
        use std::hash::{BuildHasher, Hash, Hasher};
        self.batches += 1;
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        self.subject.hash(&mut h);
        std::process::id().hash(&mut h);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{:016x}-{:x}-{nanos:x}", h.finish(), self.batches)
    }

    /// Publishes `chunk` (above the mark, at most [`ATOMIC_MAX`]) as one
    /// atomic batch, retrying through leader elections up to the deadline.
    async fn publish_atomic(
        &mut self,
        chunk: &[(u64, Bytes)],
        done: &mut Appended,
    ) -> Result<Batch, BusError> {
        use async_nats::jetstream::ErrorCode;
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            let id = self.batch_id();
            let mut commit = None;
            let mut failed = None;
            for (k, (seq, body)) in chunk.iter().enumerate() {
                let mut headers = self.headers(*seq, k == 0);
                headers.insert("Nats-Batch-Id", id.as_str());
                headers.insert("Nats-Batch-Sequence", (k + 1).to_string().as_str());
                if k + 1 == chunk.len() {
                    headers.insert("Nats-Batch-Commit", "1");
                    match self
                        .js
                        .publish_with_headers(self.subject.clone(), headers, body.clone())
                        .await
                    {
                        Ok(ack) => commit = Some(ack),
                        Err(e) => failed = Some(e.to_string()),
                    }
                } else if let Err(e) = self
                    .client
                    .publish_with_headers(self.subject.clone(), headers, body.clone())
                    .await
                {
                    failed = Some(e.to_string());
                    break;
                }
            }
            let reason = match (commit, failed) {
                (Some(ack), None) => match ack.await {
                    Ok(ack) if ack.duplicate => {
                        // The commit's id is stored already: learn where
                        // the subject is, and let the event-by-event path
                        // sort out what this means for each event.
                        done.conflicts += 1;
                        self.recover().await?;
                        return Ok(Batch::NotTaken);
                    }
                    Ok(ack) => {
                        self.last_subject_seq = ack.sequence;
                        self.mark = chunk[chunk.len() - 1].0;
                        return Ok(Batch::Stored);
                    }
                    Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                        // Another receiver wrote this agent, or our last
                        // batch was stored although its ack was lost.
                        done.conflicts += 1;
                        self.recover().await?;
                        return Ok(Batch::Refused);
                    }
                    Err(e) => {
                        let code = std::error::Error::source(&e)
                            .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
                            .map(|s| s.error_code());
                        if code == Some(DUPLICATE_IN_BATCH) {
                            // An earlier attempt of this batch was stored
                            // and its ack lost (a leader election): the
                            // subject says how far. Should the mark not
                            // cover the chunk's start, the event-by-event
                            // path sorts out each event.
                            done.conflicts += 1;
                            self.recover().await?;
                            return Ok(if self.mark >= chunk[0].0 {
                                Batch::Refused
                            } else {
                                Batch::NotTaken
                            });
                        }
                        if matches!(
                            code,
                            Some(
                                ErrorCode::ATOMIC_PUBLISH_DISABLED
                                    | ErrorCode::ATOMIC_PUBLISH_UNSUPPORTED_HEADER
                                    | ErrorCode::ATOMIC_PUBLISH_INVALID_BATCH_ID
                                    | ErrorCode::ATOMIC_PUBLISH_TOO_LARGE_BATCH
                                    | ErrorCode::ATOMIC_PUBLISH_INVALID_BATCH_COMMIT
                            )
                        ) {
                            // Nothing of the batch was stored (all or
                            // nothing): publish event by event from here.
                            tracing::warn!(subject = %self.subject, error = %e, "atomic batch refused; publishing event by event");
                            return Ok(Batch::NotTaken);
                        }
                        e.to_string()
                    }
                },
                (_, Some(reason)) => reason,
                (None, None) => "batch not sent".into(),
            };
            if started.elapsed() >= self.deadline {
                return Err(BusError::Publish {
                    subject: self.subject.clone(),
                    waited: self.deadline,
                    reason,
                });
            }
            // Timeouts, an incomplete batch (a message lost in a reconnect)
            // or a leader election: the batch is stored whole or not at
            // all; the retry's expected sequence tells which.
            tracing::debug!(subject = %self.subject, first = chunk[0].0, %reason, "atomic batch retried");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Publishes one event; `false` when it turned out to be on the subject
    /// already (another receiver wrote it).
    async fn publish_one(
        &mut self,
        seq: u64,
        body: &Bytes,
        done: &mut Appended,
    ) -> Result<bool, BusError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            let headers = self.headers(seq, true);
            let sent = self
                .js
                .publish_with_headers(self.subject.clone(), headers, body.clone())
                .await;
            let acked = match sent {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            let reason = match acked {
                Ok(ack) if ack.duplicate => {
                    // Within the duplicate window someone stored this seq:
                    // learn where the subject is now.
                    done.conflicts += 1;
                    self.recover().await?;
                    return Ok(false);
                }
                Ok(ack) => {
                    self.last_subject_seq = ack.sequence;
                    self.mark = seq;
                    return Ok(true);
                }
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    // Another receiver wrote this agent (or our last publish
                    // was stored although its ack was lost).
                    done.conflicts += 1;
                    self.recover().await?;
                    if seq <= self.mark {
                        return Ok(false);
                    }
                    continue;
                }
                Err(e) => e.to_string(),
            };
            if started.elapsed() >= self.deadline {
                return Err(BusError::Publish {
                    subject: self.subject.clone(),
                    waited: self.deadline,
                    reason,
                });
            }
            // Timeouts and missing responders during a leader election: the
            // message may or may not be stored; the retry's expected
            // sequence tells which.
            tracing::debug!(subject = %self.subject, seq, %reason, "publish retried");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_batches_from_2_12_1() {
        assert!(takes_atomic_batches("2.15.1"));
        assert!(takes_atomic_batches("2.12.1"));
        assert!(takes_atomic_batches("3.0.0"));
        assert!(!takes_atomic_batches("2.12.0"));
        assert!(!takes_atomic_batches("2.12.0-RC.1"));
        assert!(!takes_atomic_batches("2.10.22"));
        assert!(!takes_atomic_batches(""));
    }
}
