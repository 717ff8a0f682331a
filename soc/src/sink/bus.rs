//! The stateless receiver's sink (`[sink] type = "nats"`): each agent's
//! batches go to its subject on its tenant's JetStream stream through
//! [`owlet_soc_bus::AgentLog`]. Nothing is stored on the receiver.
//!
//! Contract (the [`Sink`] contract, across any number of receivers):
//! * a batch's high-water mark is returned only after JetStream acked every
//!   event of it (a quorum of the stream's replicas holds it);
//! * an (agent, seq) is published at most once: the mark is read from the
//!   agent's subject at every connect, and publishes carry the subject's
//!   expected last sequence, so another receiver writing the same agent
//!   is detected and its events are not repeated;
//! * identity comes from the certificate: the subject is built from it.
//!
//! Not here, by design: liveness (the writer holding the tenant judges
//! its agents from the heartbeats on their subjects, whichever receiver
//! published them: owlet_soc_bus::liveness) and retention (JetStream
//! enforces the tenant's `max_age` / `max_bytes` on the stream, the writer
//! on its PostgreSQL partitions).
//!
//! Records the receiver makes about an agent go to the agent's records
//! subject ([`owlet_soc_bus::record_subject`]); the writer stores them
//! outside the agent's sequence, as the embedded store does:
//! * self-test records, acknowledged to the agent once JetStream holds
//!   them;
//! * a `certificate_revoked` alert when the CRL newly revokes the
//!   certificate an agent connected to this receiver with (the receiver
//!   ending its stream knows it; `Nats-Msg-Id` `…/certificate_revoked/
//!   <serial>`, so receivers that both saw the agent store it once). An
//!   agent connected to no receiver when its certificate is revoked gets
//!   no alert here: receivers keep no inventory of every agent (its
//!   connections are refused all the same, and logged).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use owlet_proto::v1::{Event, Hello};
use owlet_soc_bus::{AgentLog, Bus, Retention};
use owlet_tls::{CertInfo, Identity, RevokedCert};

use super::{LivenessChange, Prepared, Sink, SinkError, Stored};

/// The retention of a tenant (from `[retention]` / `[tenants.NAME]`).
pub type RetentionOf = Box<dyn Fn(&str) -> Retention + Send>;

pub struct BusSink {
    bus: Arc<Bus>,
    runtime: tokio::runtime::Handle,
    retention_of: RetentionOf,
    agents: HashMap<Identity, AgentLog>,
    /// The certificate serial each agent last connected here with (kept
    /// after it disconnects: the CRL may end its stream before it is
    /// read; one short entry per agent this receiver has seen).
    serials: HashMap<Identity, String>,
    /// Serials whose revocation this receiver has recorded.
    recorded: HashSet<String>,
}

impl BusSink {
    /// `runtime` runs the publishes; the sink's own thread waits for them.
    pub fn new(bus: Arc<Bus>, runtime: tokio::runtime::Handle, retention_of: RetentionOf) -> Self {
        Self {
            bus,
            runtime,
            retention_of,
            agents: HashMap::new(),
            serials: HashMap::new(),
            recorded: HashSet::new(),
        }
    }

    async fn open(bus: &Bus, who: &Identity, retention: Retention) -> Result<AgentLog, SinkError> {
        bus.agent(&who.tenant, &who.agent_id, retention)
            .await
            .map_err(|e| SinkError::Failed(e.to_string()))
    }
}

impl Sink for BusSink {
    fn agent_connected(
        &mut self,
        who: &Identity,
        _hello: &Hello,
        _clock_offset_ms: i64,
        _peer: &str,
        cert: &CertInfo,
    ) -> Result<u64, SinkError> {
        self.serials.insert(who.clone(), cert.serial.clone());
        // Always re-read: another receiver may have written this agent.
        let retention = (self.retention_of)(&who.tenant);
        let log = self
            .runtime
            .block_on(Self::open(&self.bus, who, retention))?;
        let mark = log.mark();
        self.agents.insert(who.clone(), log);
        Ok(mark)
    }

    fn set_revoked(&mut self, revoked: &[RevokedCert]) -> Result<Vec<Identity>, SinkError> {
        let mut newly = Vec::new();
        let mut failed = Vec::new();
        for (who, serial) in &self.serials {
            let Some(cert) = revoked.iter().find(|c| &c.serial == serial) else {
                continue;
            };
            if self.recorded.contains(serial) {
                continue;
            }
            let body = Bytes::from(prost::Message::encode_to_vec(&super::revoked_alert(
                who, cert,
            )));
            let published = self.runtime.block_on(self.bus.publish_record(
                &who.tenant,
                &who.agent_id,
                (self.retention_of)(&who.tenant),
                &format!("certificate_revoked/{serial}"),
                body,
            ));
            match published {
                Ok(()) => {
                    self.recorded.insert(serial.clone());
                    newly.push(who.clone());
                }
                Err(e) => failed.push(format!("{who}: {e}")),
            }
        }
        if failed.is_empty() {
            Ok(newly)
        } else {
            // Tried again at the next reading of the CRL (its change, SIGHUP).
            Err(SinkError::Failed(format!(
                "certificate_revoked alerts not published ({}); recorded so far: {}",
                failed.join("; "),
                newly.len()
            )))
        }
    }

    fn store_batches(
        &mut self,
        batches: &[(Identity, Prepared)],
    ) -> Vec<Result<Stored, SinkError>> {
        // Agents publish concurrently; one agent's batches in order.
        let mut by_agent: HashMap<&Identity, Vec<usize>> = HashMap::new();
        for (i, (who, _)) in batches.iter().enumerate() {
            by_agent.entry(who).or_default().push(i);
        }
        let work: Vec<_> = by_agent
            .into_iter()
            .map(|(who, indices)| {
                let log = self.agents.remove(who);
                let retention = (self.retention_of)(&who.tenant);
                (who.clone(), indices, log, retention)
            })
            .collect();
        let bus = Arc::clone(&self.bus);
        let done =
            self.runtime
                .block_on(futures::future::join_all(work.into_iter().map(
                    |(who, indices, log, retention)| {
                        let bus = Arc::clone(&bus);
                        async move {
                            let mut results = Vec::new();
                            let mut log =
                                match log {
                                    Some(log) => Some(log),
                                    None => match Self::open(&bus, &who, retention).await {
                                        Ok(log) => Some(log),
                                        Err(e) => {
                                            results.extend(indices.iter().map(|&i| {
                                                (i, Err(SinkError::Failed(e.to_string())))
                                            }));
                                            None
                                        }
                                    },
                                };
                            if let Some(agent_log) = log.as_mut() {
                                for &i in &indices {
                                    let events: Vec<(u64, Bytes)> = batches[i]
                                        .1
                                        .rows
                                        .iter()
                                        .map(|r| (r.seq(), Bytes::copy_from_slice(r.body())))
                                        .collect();
                                    let result = agent_log
                                        .append(&events)
                                        .await
                                        .map(|a| Stored {
                                            acked_seq: a.acked_seq,
                                            change: None,
                                        })
                                        .map_err(|e| SinkError::Failed(e.to_string()));
                                    results.push((i, result));
                                }
                            }
                            (who, log, results)
                        }
                    },
                )));
        let mut out: Vec<Option<Result<Stored, SinkError>>> =
            batches.iter().map(|_| None).collect();
        for (who, log, results) in done {
            if let Some(log) = log {
                self.agents.insert(who, log);
            }
            for (i, r) in results {
                out[i] = Some(r);
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(SinkError::Failed("batch not handled".into()))))
            .collect()
    }

    fn store_self_test(&mut self, who: &Identity, event: &Event) -> Result<(), SinkError> {
        // seq 0: the record is outside the agent's sequence, as in the
        // embedded store. Its id is its bytes' digest: a retry of the same
        // self-test (to this receiver or another) is stored once.
        let event = Event {
            seq: 0,
            ..event.clone()
        };
        let retention = (self.retention_of)(&who.tenant);
        let body = Bytes::from(prost::Message::encode_to_vec(&event));
        let id = format!("selftest/{}", crate::analyst::sha256_hex(&body));
        self.runtime
            .block_on(
                self.bus
                    .publish_record(&who.tenant, &who.agent_id, retention, &id, body),
            )
            .map_err(|e| SinkError::Failed(e.to_string()))
    }

    fn enforce_retention(
        &mut self,
        _policy_of: &(dyn Fn(&str) -> owlet_soc_store::Policy + Send),
        _now: SystemTime,
    ) -> Result<Vec<(String, owlet_soc_store::Deletion)>, SinkError> {
        // JetStream applies max_age / max_bytes to each tenant stream.
        Ok(Vec::new())
    }

    fn agent_disconnected(&mut self, who: &Identity) -> Result<(), SinkError> {
        // Forget the mark: the next connect reads it from the stream again.
        self.agents.remove(who);
        Ok(())
    }

    fn check_liveness(
        &mut self,
        _now: SystemTime,
        _silent_after: Duration,
    ) -> Result<Vec<LivenessChange>, SinkError> {
        // The writer judges liveness (see the module doc).
        Ok(Vec::new())
    }
}
