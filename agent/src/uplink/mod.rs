//! The uplink: one long-lived gRPC stream to the SOC that carries spooled
//! batches out and acknowledgements back.
//!
//! Guarantees:
//! * only the spool feeds the wire, so a slow or absent SOC never blocks a
//!   producer: data waits on disk, bounded by the spool's limits;
//! * at most `soc.max_inflight_bytes` are sent and not yet acknowledged;
//! * after any failure it reconnects with exponential backoff and full jitter
//!   and resends everything above the last acknowledgement (the SOC drops what
//!   it already stored);
//! * it never deletes data itself: the spool does, on a cumulative ack;
//! * a certificate taken by `owlet reload` ([`credentials`]) is used from
//!   the next connection, which starts at once (the stream in progress
//!   ends; what it had not got acknowledged is sent again).

mod backoff;
mod connect;
pub mod credentials;
pub mod diagnosis;
mod error;
mod replay;
mod wire;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use owlet_proto::v1::{ConnectionState, Hello, SocMessage, Welcome, soc_message};
use owlet_spool::EncodedBatch;
use tokio::sync::{mpsc, watch};
use tonic::codec::CompressionEncoding;
use tracing::{debug, info, warn};

use crate::config::{Compression, Config};
use crate::facts::HostFacts;
use crate::pipeline::{metrics::Metrics, store::Store};
pub use backoff::Backoff;
pub use connect::Connector;
pub use credentials::{Credentials, InUse};
pub use diagnosis::{Diagnosis, Setting, diagnose};
pub use error::UplinkError;
pub use wire::Outbound;

/// The wire encoding for `soc.compression`.
pub fn encoding(compression: Compression) -> Option<CompressionEncoding> {
    match compression {
        Compression::None => None,
        Compression::Gzip => Some(CompressionEncoding::Gzip),
        Compression::Zstd => Some(CompressionEncoding::Zstd),
    }
}

/// What the agent says about itself when it connects (`last_seq`: the
/// highest sequence number assigned so far).
pub fn hello(
    facts: &HostFacts,
    tenant: &str,
    agent_id: &str,
    hw_profile: &str,
    last_seq: u64,
) -> Hello {
    Hello {
        protocol_version: owlet_proto::PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        hw_profile: hw_profile.to_string(),
        hostname: facts.hostname.clone(),
        time_zone: facts.time_zone.clone(),
        utc_offset_seconds: crate::facts::utc_offset_seconds(),
        agent_time: Some(owlet_proto::now()),
        claimed_tenant: tenant.to_string(),
        claimed_agent_id: agent_id.to_string(),
        last_seq,
        os: facts.os.clone(),
    }
}

/// A stream to the SOC after hello and welcome.
pub struct Session {
    /// Feeds the stream (small: the caller's own window is the real bound).
    pub outbound: mpsc::Sender<Outbound>,
    /// The SOC's messages after the welcome.
    pub inbound: tonic::Streaming<SocMessage>,
    pub welcome: Welcome,
}

/// Connects (one fresh TLS connection), opens the stream, sends `hello` and
/// waits for the welcome; each step bounded by the connect timeout.
pub async fn open_session(
    connector: &Connector,
    hello: Hello,
    compression: Option<CompressionEncoding>,
) -> Result<Session, UplinkError> {
    let channel = connector.channel().await?;
    let (outbound, rx) = mpsc::channel::<Outbound>(2);
    outbound
        .send(Outbound::Hello(hello))
        .await
        .map_err(|_| UplinkError::Closed)?;
    let mut inbound =
        match tokio::time::timeout(connector.timeout(), wire::open(channel, compression, rx)).await
        {
            Err(_) => {
                return Err(UplinkError::Protocol(
                    "the SOC did not open the stream".into(),
                ));
            }
            Ok(opened) => opened.map_err(UplinkError::Refused)?,
        };
    let welcome = match tokio::time::timeout(connector.timeout(), inbound.message()).await {
        Err(_) => return Err(UplinkError::Protocol("no welcome after hello".into())),
        Ok(Err(status)) => return Err(UplinkError::Refused(status)),
        Ok(Ok(None)) => return Err(UplinkError::Closed),
        Ok(Ok(Some(msg))) => match msg.body {
            Some(soc_message::Body::Welcome(w)) => w,
            _ => {
                return Err(UplinkError::Protocol(
                    "first message was not a welcome".into(),
                ));
            }
        },
    };
    Ok(Session {
        outbound,
        inbound,
        welcome,
    })
}

/// Spool bytes read at a time: bounds the uplink's memory.
const READ_CHUNK: usize = 256 * 1024;

pub struct Uplink {
    /// The connector of the certificate in use; replaced on reload.
    connector: watch::Receiver<Connector>,
    store: Store,
    metrics: Arc<Metrics>,
    facts: HostFacts,
    tenant: String,
    agent_id: String,
    hw_profile: String,
    compression: Option<CompressionEncoding>,
    max_inflight: usize,
    backoff: Backoff,
    setting: Setting,
}

impl Uplink {
    pub fn new(
        config: &Config,
        connector: watch::Receiver<Connector>,
        store: Store,
        metrics: Arc<Metrics>,
        facts: HostFacts,
    ) -> Self {
        Self {
            connector,
            store,
            metrics,
            facts,
            tenant: config.agent.tenant.clone().unwrap_or_default(),
            agent_id: config.agent.id.clone().unwrap_or_default(),
            hw_profile: config.agent.hw_profile.clone(),
            compression: encoding(config.soc.compression),
            max_inflight: usize::try_from(config.soc.max_inflight_bytes.as_u64())
                .unwrap_or(usize::MAX)
                .max(1),
            backoff: Backoff::new(config.soc.backoff_min, config.soc.backoff_max),
            setting: Setting::of(config),
        }
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut credentials = self.connector.clone();
        while !*shutdown.borrow() {
            let connector = credentials.borrow_and_update().clone();
            self.metrics.set_connection(ConnectionState::Connecting);
            let result = tokio::select! {
                r = self.session(&connector) => Some(r),
                _ = shutdown.changed() => break,
                Ok(()) = credentials.changed() => None,
            };
            self.metrics.set_connection(ConnectionState::Disconnected);
            let Some(result) = result else {
                info!("reconnecting to the SOC with the reloaded certificate");
                self.backoff.reset();
                continue;
            };
            let delay = self.backoff.next_delay();
            if let Err(e) = result {
                let diagnosis = diagnose(&e, &self.setting);
                self.metrics.uplink_failed(&diagnosis);
                warn!(
                    class = diagnosis.class,
                    retry_in_seconds = delay.as_secs(),
                    "cannot reach the SOC: {diagnosis}"
                );
                debug!(error = ?e, "uplink error in full");
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => break,
                // A new certificate is worth trying at once.
                Ok(()) = credentials.changed() => self.backoff.reset(),
            }
        }
    }

    /// One connection: hello/welcome, then stream batches and take acks
    /// until something fails.
    async fn session(&mut self, connector: &Connector) -> Result<(), UplinkError> {
        let hello = hello(
            &self.facts,
            &self.tenant,
            &self.agent_id,
            &self.hw_profile,
            self.store.stats().last_seq,
        );
        let Session {
            outbound,
            mut inbound,
            welcome,
        } = open_session(connector, hello, self.compression).await?;
        self.metrics.set_connection(ConnectionState::Connected);
        info!(tenant = %welcome.tenant, agent = %welcome.agent_id, acked_seq = welcome.acked_seq,
              soc_version = %welcome.soc_version, soc = %connector.address(), "connected to the SOC");
        if welcome.acked_seq > 0 {
            self.store.ack(welcome.acked_seq).await?;
        }

        let mut cursor = self.store.stats().acked_seq.max(welcome.acked_seq);
        let mut window = Window::starting_at(cursor);
        loop {
            // The backoff resets only once the SOC stores something: a SOC
            // that welcomes and then fails must not be hammered.
            if std::mem::take(&mut window.progressed) {
                self.backoff.reset();
            }
            if window.bytes < self.max_inflight {
                let budget = (self.max_inflight - window.bytes).min(READ_CHUNK);
                let batches = self.store.read_encoded_after(cursor, budget).await?;
                if !batches.is_empty() {
                    for batch in batches {
                        cursor = batch.last_seq;
                        window.push(&batch);
                        // Reserve first: a batch must never be dropped half-sent
                        // (the SOC would store its successors and ack past it).
                        let permit = loop {
                            tokio::select! {
                                permit = outbound.reserve() => break permit.map_err(|_| UplinkError::Closed)?,
                                msg = inbound.message() => self.on_soc_message(msg, &mut window).await?,
                                () = window.stalled() => return Err(window.stall_error()),
                            }
                        };
                        permit.send(Outbound::Batch(batch));
                    }
                    continue;
                }
            }
            tokio::select! {
                msg = inbound.message() => self.on_soc_message(msg, &mut window).await?,
                () = self.store.appended(), if window.bytes < self.max_inflight => {}
                () = window.stalled() => return Err(window.stall_error()),
            }
        }
    }

    async fn on_soc_message(
        &self,
        msg: Result<Option<owlet_proto::v1::SocMessage>, tonic::Status>,
        window: &mut Window,
    ) -> Result<(), UplinkError> {
        match msg.map_err(UplinkError::Refused)? {
            None => Err(UplinkError::Closed),
            Some(msg) => match msg.body {
                Some(soc_message::Body::Ack(ack)) => {
                    if ack.acked_seq > window.highest_sent {
                        // Acking what was never sent would delete unsent events.
                        return Err(UplinkError::Protocol(format!(
                            "the SOC acknowledged seq {} but this stream sent only up to {}",
                            ack.acked_seq, window.highest_sent
                        )));
                    }
                    self.store.ack(ack.acked_seq).await?;
                    window.ack(ack.acked_seq);
                    self.metrics.acked();
                    Ok(())
                }
                _ => Err(UplinkError::Protocol(
                    "unexpected message after welcome".into(),
                )),
            },
        }
    }
}

/// How long sent batches may wait for an acknowledgement before the stream
/// is given up (a wedged SOC, or one behind a load balancer that lost it);
/// the reconnect may reach another collector.
const ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// Batches sent and not yet acknowledged: (last_seq, encoded bytes).
struct Window {
    sent: VecDeque<(u64, usize)>,
    bytes: usize,
    /// Highest seq sent on this stream (or acknowledged before it opened).
    highest_sent: u64,
    /// When the SOC last acknowledged something, or the window last went
    /// from empty to non-empty.
    last_progress: tokio::time::Instant,
    /// An ack advanced since the flag was last taken.
    progressed: bool,
}

impl Window {
    fn starting_at(acked_seq: u64) -> Self {
        Self {
            sent: VecDeque::new(),
            bytes: 0,
            highest_sent: acked_seq,
            last_progress: tokio::time::Instant::now(),
            progressed: false,
        }
    }

    fn push(&mut self, batch: &EncodedBatch) {
        if self.sent.is_empty() {
            self.last_progress = tokio::time::Instant::now();
        }
        let len = batch.bytes.len();
        self.sent.push_back((batch.last_seq, len));
        self.bytes += len;
        self.highest_sent = batch.last_seq;
    }

    fn ack(&mut self, acked_seq: u64) {
        while let Some(&(last, len)) = self.sent.front() {
            if last > acked_seq {
                break;
            }
            self.sent.pop_front();
            self.bytes -= len;
            self.last_progress = tokio::time::Instant::now();
            self.progressed = true;
        }
    }

    /// Resolves when batches have waited [`ACK_TIMEOUT`] without any ack;
    /// never while nothing is in flight.
    async fn stalled(&self) {
        if self.sent.is_empty() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep_until(self.last_progress + ACK_TIMEOUT).await;
    }

    fn stall_error(&self) -> UplinkError {
        UplinkError::Protocol(format!(
            "no acknowledgement for {}s with {} batches in flight",
            ACK_TIMEOUT.as_secs(),
            self.sent.len()
        ))
    }
}
