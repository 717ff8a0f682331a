//! Optional IPFIX export (RFC 7011) of flow records over UDP to a
//! collector (nfdump's `nfcapd`, or any IPFIX collector), besides the gRPC
//! stream. Encoding is pure and lives in [`encode`]; this module does the
//! I/O.
//!
//! Guarantees:
//! - [`IpfixExporter::export`] never blocks: it puts the record's exported
//!   fields (no names, no payload) in a bounded queue and returns; a full
//!   queue drops the record and counts it ([`IpfixStats::flows_dropped`]),
//!   never silently;
//! - one sender thread (`owlet-ipfix`) drains the queue, encodes messages
//!   of at most `max_message` bytes and sends them on a connected UDP
//!   socket. A send error (the collector is down: ECONNREFUSED) is counted
//!   and the message retried up to [`SEND_ATTEMPTS`] times with a short
//!   backoff; a message still not sent is counted as lost (its records
//!   stay counted in the sequence number, so the collector sees the gap).
//!   After any send error the templates go out with the next message, so a
//!   restarted collector decodes at once. Nothing is fatal and nothing
//!   grows: memory is the queue plus one batch;
//! - templates are also re-sent every `template_refresh` of wall-clock
//!   time and every `template_refresh_messages` messages (RFC 7011 §8.4).

pub mod encode;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::engine::FlowRecord;
pub use encode::{Encoder, TEMPLATE_V4, TEMPLATE_V6, Uniflow};

/// Attempts per message before it is counted as lost.
pub const SEND_ATTEMPTS: u32 = 3;
/// Flow records the sender takes off the queue per batch, at most: with
/// the queue, the bound on flow records held ([`IpfixExporter::pending`]).
pub const BATCH: usize = 512;

/// Exporter settings. [`IpfixConfig::new`] gives the documented defaults.
#[derive(Clone, Debug)]
pub struct IpfixConfig {
    /// The collector (UDP).
    pub collector: SocketAddr,
    /// Observation domain id in every message header (default 0).
    pub observation_domain: u32,
    /// Templates are re-sent after this long (default 10 min).
    pub template_refresh: Duration,
    /// ... and after this many messages without them (default 100; 0: off).
    pub template_refresh_messages: u32,
    /// Largest IPFIX message, bytes: keep it under the path MTU minus the
    /// IP and UDP headers (default 1400).
    pub max_message: usize,
    /// Flow records waiting to be sent, at most (default 10,000).
    pub queue: usize,
}

impl IpfixConfig {
    /// Defaults for `collector`.
    pub fn new(collector: SocketAddr) -> Self {
        IpfixConfig {
            collector,
            observation_domain: 0,
            template_refresh: Duration::from_secs(600),
            template_refresh_messages: 100,
            max_message: 1400,
            queue: 10_000,
        }
    }
}

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum IpfixError {
    /// The settings cannot work.
    #[error("ipfix: {0}")]
    Config(String),
    /// The UDP socket could not be set up.
    #[error(
        "ipfix: cannot open a UDP socket to the collector {collector}: {source}; check the collector address (host:port) and the route to it"
    )]
    Socket {
        /// The collector.
        collector: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Exporter counters since start (for `owlet health`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IpfixStats {
    /// Flow records handed to [`IpfixExporter::export`] and queued.
    pub flows_queued: u64,
    /// Flow records dropped because the queue was full.
    pub flows_dropped: u64,
    /// Queued flow records the sender has encoded (sent or lost).
    pub flows_done: u64,
    /// IPFIX data records (uniflows) in messages sent.
    pub records_sent: u64,
    /// Messages sent.
    pub messages_sent: u64,
    /// Messages that carried the templates.
    pub template_messages: u64,
    /// Failed send attempts (each retried).
    pub send_errors: u64,
    /// Messages given up after [`SEND_ATTEMPTS`] failed attempts.
    pub messages_lost: u64,
    /// Data records in those messages.
    pub records_lost: u64,
    /// The last send error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Counters {
    flows_queued: AtomicU64,
    flows_dropped: AtomicU64,
    flows_done: AtomicU64,
    records_sent: AtomicU64,
    messages_sent: AtomicU64,
    template_messages: AtomicU64,
    send_errors: AtomicU64,
    messages_lost: AtomicU64,
    records_lost: AtomicU64,
    last_error: Mutex<Option<String>>,
    stopping: AtomicBool,
}

impl Counters {
    fn snapshot(&self) -> IpfixStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        IpfixStats {
            flows_queued: g(&self.flows_queued),
            flows_dropped: g(&self.flows_dropped),
            flows_done: g(&self.flows_done),
            records_sent: g(&self.records_sent),
            messages_sent: g(&self.messages_sent),
            template_messages: g(&self.template_messages),
            send_errors: g(&self.send_errors),
            messages_lost: g(&self.messages_lost),
            records_lost: g(&self.records_lost),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// A running exporter: [`export`](Self::export) flow records; stop it with
/// [`shutdown`](Self::shutdown) (or drop it) to send what is queued.
pub struct IpfixExporter {
    tx: Option<SyncSender<FlowRecordLite>>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

/// What the queue holds: the flow record without its names.
#[derive(Clone, Copy, Debug)]
struct FlowRecordLite([Option<Uniflow>; 2]);

impl FlowRecordLite {
    fn new(r: &FlowRecord) -> Self {
        let mut it = Uniflow::from_record(r);
        FlowRecordLite([it.next(), it.next()])
    }
}

impl IpfixExporter {
    /// Open the socket and start the sender thread.
    pub fn start(cfg: IpfixConfig) -> Result<Self, IpfixError> {
        let (mut exporter, rx, sock, enc) = Self::prepare(&cfg)?;
        let counters = exporter.counters.clone();
        let thread = std::thread::Builder::new()
            .name("owlet-ipfix".into())
            .spawn(move || sender(rx, sock, enc, &counters))
            .map_err(|e| IpfixError::Config(format!("cannot start the sender thread: {e}")))?;
        exporter.thread = Some(thread);
        Ok(exporter)
    }

    fn prepare(
        cfg: &IpfixConfig,
    ) -> Result<(Self, Receiver<FlowRecordLite>, UdpSocket, Encoder), IpfixError> {
        if cfg.queue == 0 {
            return Err(IpfixError::Config(
                "the export queue must hold at least one flow record (queue > 0)".into(),
            ));
        }
        let min = encode::min_message_len();
        if !(min..=65_507).contains(&cfg.max_message) {
            return Err(IpfixError::Config(format!(
                "max_message {} is out of range: it must fit the templates and one IPv6 record ({min}) and one UDP datagram (65507)",
                cfg.max_message
            )));
        }
        let local: SocketAddr = if cfg.collector.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(local)
            .and_then(|s| s.connect(cfg.collector).map(|()| s))
            .map_err(|source| IpfixError::Socket {
                collector: cfg.collector,
                source,
            })?;
        let enc = Encoder::new(
            cfg.observation_domain,
            cfg.max_message,
            cfg.template_refresh,
            cfg.template_refresh_messages,
        );
        let (tx, rx) = sync_channel(cfg.queue);
        let exporter = IpfixExporter {
            tx: Some(tx),
            counters: Arc::default(),
            thread: None,
        };
        Ok((exporter, rx, sock, enc))
    }

    /// Queue a flow record for export. Never blocks; `false`: the queue was
    /// full (or the exporter stopped) and the record was dropped (counted).
    pub fn export(&self, rec: &FlowRecord) -> bool {
        let c = &self.counters;
        let queued = match &self.tx {
            Some(tx) => match tx.try_send(FlowRecordLite::new(rec)) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        let counter = if queued {
            &c.flows_queued
        } else {
            &c.flows_dropped
        };
        counter.fetch_add(1, Ordering::Relaxed);
        queued
    }

    /// Counters so far.
    pub fn stats(&self) -> IpfixStats {
        self.counters.snapshot()
    }

    /// Queued flow records not yet encoded: at most `queue` + [`BATCH`].
    pub fn pending(&self) -> u64 {
        let s = &self.counters;
        s.flows_queued
            .load(Ordering::Relaxed)
            .saturating_sub(s.flows_done.load(Ordering::Relaxed))
    }

    /// Send what is queued (one attempt per message, no backoff), stop the
    /// sender and return the final counters.
    pub fn shutdown(mut self) -> IpfixStats {
        self.stop();
        self.counters.snapshot()
    }

    fn stop(&mut self) {
        self.counters.stopping.store(true, Ordering::Relaxed);
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for IpfixExporter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sender(rx: Receiver<FlowRecordLite>, sock: UdpSocket, mut enc: Encoder, c: &Counters) {
    let mut batch: Vec<Uniflow> = Vec::with_capacity(2 * BATCH);
    while let Ok(first) = rx.recv() {
        let mut flows = 1u64;
        batch.extend(first.0.into_iter().flatten());
        while flows < BATCH as u64 {
            match rx.try_recv() {
                Ok(f) => {
                    batch.extend(f.0.into_iter().flatten());
                    flows += 1;
                }
                Err(_) => break,
            }
        }
        for msg in enc.encode(&batch, SystemTime::now()) {
            send_message(&sock, &msg, &mut enc, c);
        }
        batch.clear();
        c.flows_done.fetch_add(flows, Ordering::Relaxed);
    }
}

/// Data records in an encoded message (sum over its data sets).
pub fn data_records(msg: &[u8]) -> u64 {
    let mut n = 0;
    let mut off = encode::HEADER_LEN;
    while off + 4 <= msg.len() {
        let id = u16::from_be_bytes([msg[off], msg[off + 1]]);
        let len = usize::from(u16::from_be_bytes([msg[off + 2], msg[off + 3]]));
        if len < 4 {
            break;
        }
        if id >= 256 {
            let rlen = encode::record_len(id == TEMPLATE_V6);
            n += ((len - 4) / rlen) as u64;
        }
        off += len;
    }
    n
}

fn has_templates(msg: &[u8]) -> bool {
    msg.get(16..18) == Some(&encode::TEMPLATE_SET_ID.to_be_bytes()[..])
}

/// One attempt; counts the outcome.
fn send_once(sock: &UdpSocket, msg: &[u8], c: &Counters) -> bool {
    match sock.send(msg) {
        Ok(_) => {
            c.messages_sent.fetch_add(1, Ordering::Relaxed);
            c.records_sent
                .fetch_add(data_records(msg), Ordering::Relaxed);
            if has_templates(msg) {
                c.template_messages.fetch_add(1, Ordering::Relaxed);
            }
            true
        }
        Err(e) => {
            c.send_errors.fetch_add(1, Ordering::Relaxed);
            *c.last_error.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(format!("sending to the IPFIX collector: {e}"));
            false
        }
    }
}

fn send_message(sock: &UdpSocket, msg: &[u8], enc: &mut Encoder, c: &Counters) {
    if send_once(sock, msg, c) {
        return;
    }
    for attempt in 1..SEND_ATTEMPTS {
        if c.stopping.load(Ordering::Relaxed) {
            break;
        }
        // ECONNREFUSED reports an earlier datagram's ICMP error, so the
        // first retry goes at once; later ones back off a little.
        if attempt > 1 {
            std::thread::sleep(Duration::from_millis(10 << attempt));
        }
        // The collector may have restarted and lost the templates: they
        // go first (the message may not have room for them).
        if !has_templates(msg) && !send_once(sock, &enc.templates_message(SystemTime::now()), c) {
            continue;
        }
        if send_once(sock, msg, c) {
            return;
        }
    }
    // Lost: the next message carries the templates again.
    enc.resend_templates();
    c.messages_lost.fetch_add(1, Ordering::Relaxed);
    c.records_lost
        .fetch_add(data_records(msg), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u8) -> FlowRecord {
        FlowRecord::sample([10, 0, 0, i].into(), [10, 0, 0, 200].into(), 17, (1, 2))
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let mut cfg = IpfixConfig::new("127.0.0.1:9".parse().unwrap());
        cfg.queue = 2;
        // No sender thread: nothing drains the queue.
        let (exp, _rx, _sock, _enc) = IpfixExporter::prepare(&cfg).unwrap();
        let queued: Vec<bool> = (0..5).map(|i| exp.export(&record(i))).collect();
        assert_eq!(queued, [true, true, false, false, false]);
        let s = exp.stats();
        assert_eq!((s.flows_queued, s.flows_dropped), (2, 3));
        assert_eq!(exp.pending(), 2);
    }

    #[test]
    fn settings_that_cannot_work_are_named() {
        let mut cfg = IpfixConfig::new("127.0.0.1:9".parse().unwrap());
        cfg.max_message = 100;
        let e = IpfixExporter::start(cfg.clone()).err().unwrap().to_string();
        assert!(e.contains("max_message 100"), "{e}");
        cfg.max_message = 1400;
        cfg.queue = 0;
        let e = IpfixExporter::start(cfg).err().unwrap().to_string();
        assert!(e.contains("queue > 0"), "{e}");
    }
}
