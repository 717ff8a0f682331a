//! Publishing an agent's events to its tenant's JetStream stream, exactly
//! once (see the crate doc for the layout and the guarantees).
//!
//! An [`AgentLog`] is one receiver's view of one agent's subject: the
//! agent's high-water mark (the highest sequence number on the subject)
//! and the stream sequence of the subject's last message. Both are read
//! from the stream when the agent connects ([`Bus::agent`]) and after any
//! refused publish; they are never trusted across a refusal. It must never
//! move the mark before JetStream acknowledged the message.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use bytes::Bytes;
use tokio::sync::Mutex;

use crate::{BusError, SEQ_HEADER, stream_name, subject, token};

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
}

impl BusConfig {
    pub fn new(servers: Vec<String>) -> Self {
        Self {
            servers,
            credentials: None,
            replicas: 3,
            duplicate_window: Duration::from_secs(120),
            publish_deadline: Duration::from_secs(30),
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
    /// Tenant streams this process has created or updated.
    streams: Mutex<HashMap<String, stream::Stream<()>>>,
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
        Ok(Self {
            client,
            js,
            config: config.clone(),
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
            max_age: retention.max_age.unwrap_or_default(),
            max_bytes: retention
                .max_bytes
                .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
            num_replicas: self.config.replicas,
            duplicate_window: self.config.duplicate_window,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        };
        self.js
            .create_or_update_stream(config)
            .await
            .map_err(|e| stream_error(e.to_string()))?;
        let handle = self
            .js
            .get_stream_no_info(&name)
            .await
            .map_err(|e| stream_error(e.to_string()))?;
        streams.insert(tenant.to_string(), handle.clone());
        Ok(handle)
    }

    /// The log of one agent, its high-water mark read from the stream.
    pub async fn agent(
        &self,
        tenant: &str,
        agent: &str,
        retention: Retention,
    ) -> Result<AgentLog, BusError> {
        let stream = self.ensure_stream(tenant, retention).await?;
        let mut log = AgentLog {
            js: self.js.clone(),
            stream,
            subject: subject(tenant, agent),
            id_prefix: format!("{tenant}/{agent}/"),
            last_subject_seq: 0,
            mark: 0,
            deadline: self.config.publish_deadline,
            expect_last: true,
        };
        log.recover().await?;
        Ok(log)
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

/// One receiver's writer of one agent's subject.
pub struct AgentLog {
    js: jetstream::Context,
    stream: stream::Stream<()>,
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
                Err(e @ BusError::BadLastMessage { .. }) => return Err(e),
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
        for (seq, body) in events {
            if *seq <= self.mark {
                done.skipped += 1;
                continue;
            }
            if self.publish_one(*seq, body, &mut done).await? {
                done.published += 1;
            } else {
                done.skipped += 1;
            }
        }
        done.acked_seq = self.mark;
        Ok(done)
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
            let mut headers = HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("{}{seq}", self.id_prefix).as_str(),
            );
            if self.expect_last {
                headers.insert(
                    async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                    self.last_subject_seq.to_string().as_str(),
                );
            }
            headers.insert(SEQ_HEADER, seq.to_string().as_str());
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
