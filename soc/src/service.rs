//! The `owlet.v1.Telemetry` service: one bidirectional stream per agent
//! connection.
//!
//! Per stream: the first message must be a `Hello` (within a deadline); any
//! identity it claims must equal the certificate's, otherwise the stream is
//! refused with PERMISSION_DENIED and logged. Then every batch is validated
//! (sequence range consistent, strictly increasing, size-limited), stored
//! through the sink, and acknowledged with the sink's high-water mark — only
//! after the sink said it is durable. A malformed message ends that one stream
//! with INVALID_ARGUMENT; it never affects other agents.
//!
//! A stream whose certificate gets revoked (see [`crate::live`]) ends with
//! PERMISSION_DENIED "certificate revoked: ...", which the agent shows as
//! the reason it is disconnected; batches not yet durable are not
//! acknowledged.
//!
//! A `SelfTest` (from `owlet selftest`) may come instead of a batch: its event
//! is stored as a self-test record outside the agent's sequence and answered
//! with a `SelfTestAck` once durable; it never moves the agent's high-water
//! mark, so it cannot collide with the running agent's events.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use owlet_proto::v1::{
    Ack, AgentMessage, Batch, Hello, SelfTest, SelfTestAck, SocMessage, Welcome, agent_message,
    soc_message, telemetry_server::Telemetry,
};
use owlet_tls::Identity;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

use crate::accept::Peer;
use crate::sink::{SinkError, SinkHandle, Stored};

/// Time an agent has to say hello after connecting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

pub struct TelemetryService {
    sink: SinkHandle,
}

impl TelemetryService {
    pub fn new(sink: SinkHandle) -> Self {
        Self { sink }
    }
}

type SocStream = Pin<Box<dyn Stream<Item = Result<SocMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Telemetry for TelemetryService {
    type StreamStream = SocStream;

    async fn stream(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<SocStream>, Status> {
        let peer = request
            .extensions()
            .get::<Peer>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("no client certificate identity"))?;
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Err(_) => return Err(Status::deadline_exceeded("no hello")),
            Ok(msg) => match msg?.and_then(|m| m.body) {
                Some(agent_message::Body::Hello(hello)) => hello,
                _ => {
                    return Err(Status::invalid_argument(
                        "the first message must be a hello",
                    ));
                }
            },
        };
        if hello.protocol_version != owlet_proto::PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "this SOC speaks owlet wire protocol {}, the agent {}: upgrade the older side",
                owlet_proto::PROTOCOL_VERSION,
                hello.protocol_version
            )));
        }
        check_claims(&peer, &hello)?;

        let received = owlet_proto::now();
        let clock_offset_ms = hello.agent_time.as_ref().map_or(0, |t| {
            owlet_proto::timestamp_micros(t)
                .saturating_sub(owlet_proto::timestamp_micros(&received))
                / 1000
        });
        let acked_seq = self
            .sink
            .agent_connected(
                peer.identity.clone(),
                hello.clone(),
                clock_offset_ms,
                peer.addr.to_string(),
                peer.cert.clone(),
            )
            .await
            .map_err(|e| Status::unavailable(format!("storage: {e}")))?;
        info!(agent = %peer.identity, addr = %peer.addr, version = %hello.agent_version, acked_seq, clock_offset_ms,
              cert_serial = %peer.cert.serial, cert_expires = %humantime::format_rfc3339_seconds(peer.cert.not_after),
              "agent connected");

        let (tx, rx) = mpsc::channel(16);
        let welcome = Welcome {
            tenant: peer.identity.tenant.clone(),
            agent_id: peer.identity.agent_id.clone(),
            acked_seq,
            soc_time: Some(received),
            soc_version: env!("CARGO_PKG_VERSION").to_string(),
            max_message_bytes: owlet_proto::MAX_MESSAGE_BYTES as u32,
        };
        let _ = tx
            .send(Ok(SocMessage {
                body: Some(soc_message::Body::Welcome(welcome)),
            }))
            .await;
        tokio::spawn(receive_batches(self.sink.clone(), peer, inbound, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Refuses a hello that claims an identity other than the certificate's.
fn check_claims(peer: &Peer, hello: &Hello) -> Result<(), Status> {
    let Identity { tenant, agent_id } = &peer.identity;
    let tenant_ok = hello.claimed_tenant.is_empty() || &hello.claimed_tenant == tenant;
    let agent_ok = hello.claimed_agent_id.is_empty() || &hello.claimed_agent_id == agent_id;
    if tenant_ok && agent_ok {
        return Ok(());
    }
    warn!(certificate = %peer.identity, claimed_tenant = %hello.claimed_tenant, claimed_agent = %hello.claimed_agent_id,
          addr = %peer.addr, "identity spoof refused: the hello claims another identity than the certificate");
    Err(Status::permission_denied(format!(
        "this certificate is for {}; the agent's configuration claims {}/{} (fix agent.tenant / agent.id or the certificate)",
        peer.identity, hello.claimed_tenant, hello.claimed_agent_id
    )))
}

/// Batches of one stream queued in the sink and not yet durable. Reading the
/// next batch while earlier ones commit lets the sink commit several at once.
const STREAM_PIPELINE: usize = 8;

/// Stores batches in order, acknowledging each once durable.
async fn receive_batches(
    sink: SinkHandle,
    peer: Peer,
    mut inbound: Streaming<AgentMessage>,
    tx: mpsc::Sender<Result<SocMessage, Status>>,
) {
    let result: Result<(), Status> = async {
        let mut pending: VecDeque<Receipt> = VecDeque::with_capacity(STREAM_PIPELINE);
        let mut open = true;
        while open || !pending.is_empty() {
            tokio::select! {
                () = peer.revoked.cancelled() => return Err(revoked_status(&peer)),
                // Acks go out strictly in order: the oldest pending batch first.
                stored = oldest(&mut pending), if !pending.is_empty() => {
                    pending.pop_front();
                    let stored = stored
                        .map_err(|_| Status::unavailable("storage went away"))?
                        .map_err(|e| Status::unavailable(format!("storage: {e}")))?;
                    let ack = SocMessage { body: Some(soc_message::Body::Ack(Ack { acked_seq: stored.acked_seq })) };
                    if tx.send(Ok(ack)).await.is_err() {
                        return Ok(());
                    }
                }
                msg = inbound.message(), if open && pending.len() < STREAM_PIPELINE => {
                    let Some(msg) = msg? else {
                        open = false;
                        continue;
                    };
                    let batch = match msg.body {
                        Some(agent_message::Body::Batch(batch)) => batch,
                        Some(agent_message::Body::SelfTest(test)) => {
                            let ack = self_test(&sink, &peer, test).await?;
                            if tx.send(Ok(ack)).await.is_err() {
                                return Ok(());
                            }
                            continue;
                        }
                        _ => return Err(Status::invalid_argument("expected a batch")),
                    };
                    validate(&batch)?;
                    let receipt = sink
                        .submit_batch(peer.identity.clone(), batch)
                        .await
                        .map_err(|e| Status::unavailable(format!("storage: {e}")))?;
                    pending.push_back(receipt);
                }
            }
        }
        Ok(())
    }
    .await;
    if let Err(status) = result {
        warn!(agent = %peer.identity, addr = %peer.addr, %status, "agent stream ended with an error");
        let _ = tx.send(Err(status)).await;
    }
    sink.agent_disconnected(peer.identity.clone()).await;
    info!(agent = %peer.identity, addr = %peer.addr, "agent disconnected");
}

/// The answer to a stream whose certificate was revoked. Its message
/// starts with "certificate revoked": the agent classifies it by that.
pub fn revoked_status(peer: &Peer) -> Status {
    Status::permission_denied(format!(
        "certificate revoked: the certificate {} of {} was revoked by the SOC's CA",
        peer.cert.serial, peer.identity
    ))
}

/// Stores one self-test event and makes its answer. Waits for the store
/// (the stream reads nothing else meanwhile): self-tests are rare and small.
async fn self_test(sink: &SinkHandle, peer: &Peer, test: SelfTest) -> Result<SocMessage, Status> {
    let event = test
        .event
        .filter(|e| e.kind.is_some())
        .ok_or_else(|| Status::invalid_argument("malformed self-test: no event"))?;
    sink.store_self_test(peer.identity.clone(), event)
        .await
        .map_err(|e| Status::unavailable(format!("storage: {e}")))?;
    info!(agent = %peer.identity, addr = %peer.addr, id = test.id, "self-test event stored");
    Ok(SocMessage {
        body: Some(soc_message::Body::SelfTestAck(SelfTestAck {
            id: test.id,
            soc_time: Some(owlet_proto::now()),
        })),
    })
}

type Receipt = oneshot::Receiver<Result<Stored, SinkError>>;

/// Waits for the oldest pending batch to be durable.
async fn oldest(
    pending: &mut VecDeque<Receipt>,
) -> Result<Result<Stored, SinkError>, oneshot::error::RecvError> {
    match pending.front_mut() {
        Some(receipt) => receipt.await,
        None => std::future::pending().await,
    }
}

/// Checks a batch's shape before anything is stored.
pub fn validate(batch: &Batch) -> Result<(), Status> {
    let bad = |why: &str| Err(Status::invalid_argument(format!("malformed batch: {why}")));
    if batch.events.is_empty() {
        return bad("no events");
    }
    if batch.events.len() > owlet_proto::MAX_BATCH_EVENTS {
        return bad("too many events");
    }
    if batch.first_seq == 0 || batch.first_seq > batch.last_seq || batch.last_seq > i64::MAX as u64
    {
        return bad("sequence range out of bounds");
    }
    let mut previous = 0;
    for event in &batch.events {
        if event.seq <= previous || event.seq < batch.first_seq || event.seq > batch.last_seq {
            return bad(
                "event sequence numbers must increase strictly within [first_seq, last_seq]",
            );
        }
        previous = event.seq;
    }
    Ok(())
}
