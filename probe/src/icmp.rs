//! ICMP echo checks over one shared socket per address family.
//!
//! Design: thousands of ICMP checks share one raw socket per family
//! (CAP_NET_RAW), falling back to the unprivileged datagram ICMP socket
//! (`net.ipv4.ping_group_range`). A dedicated receiver thread per socket
//! reads every ICMP message, timestamps it on arrival (so RTTs do not include
//! async scheduling delay) and hands it to the waiting check through a
//! one-shot channel keyed by (identifier, sequence); the payload carries a
//! random 64-bit token that must match too, so foreign pings on the host can
//! never be mistaken for ours. Raw sockets also deliver ICMP errors
//! (destination unreachable, time exceeded) quoting our header, which are
//! matched the same way and classified as UNREACHABLE.
//!
//! The engines live for the process (one thread each, outside any tokio
//! runtime, so they survive runtime restarts). Pending entries are removed
//! when a run ends or is cancelled (drop guard): the map is bounded by the
//! echoes in flight. The parser takes untrusted bytes and never panics.
//!
//! Sends never block a tokio worker: they use `MSG_DONTWAIT` (the receiver
//! thread keeps its blocking reads on the same socket). A full send buffer
//! (`EWOULDBLOCK`) or `ENOBUFS` is a LOCAL error for that echo: the echo is
//! not counted as sent (so it is not target loss), and a run that could send
//! none is UNKNOWN.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use owlet_proto::v1::{CheckResult, FailureClass, IcmpDetail, check_result::Detail};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::oneshot;

use crate::config::IcmpSocketMode;
use crate::spec::{CheckSpec, IcmpSpec};
use crate::{Outcome, micros, resolve};

/// ICMP wire format: building echo requests, parsing replies and errors.
pub mod packet {
    pub const V4_ECHO_REPLY: u8 = 0;
    pub const V4_DEST_UNREACH: u8 = 3;
    pub const V4_ECHO_REQUEST: u8 = 8;
    pub const V4_TIME_EXCEEDED: u8 = 11;
    pub const V6_DEST_UNREACH: u8 = 1;
    pub const V6_TIME_EXCEEDED: u8 = 3;
    pub const V6_ECHO_REQUEST: u8 = 128;
    pub const V6_ECHO_REPLY: u8 = 129;
    /// Echo payload: 8-byte token + 8 bytes padding.
    pub const PAYLOAD: usize = 16;

    /// A parsed ICMP message relevant to us.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Parsed {
        Reply {
            ident: u16,
            seq: u16,
            token: u64,
        },
        /// An error quoting one of our echo requests.
        Error {
            ident: u16,
            seq: u16,
            unreachable: bool,
            code: u8,
        },
    }

    fn checksum(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for chunk in data.chunks(2) {
            let word = if chunk.len() == 2 {
                u16::from_be_bytes([chunk[0], chunk[1]])
            } else {
                u16::from_be_bytes([chunk[0], 0])
            };
            sum = sum.wrapping_add(u32::from(word));
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// An echo request (the kernel fills the ICMPv6 checksum).
    pub fn echo_request(v6: bool, ident: u16, seq: u16, token: u64) -> Vec<u8> {
        let mut p = vec![0u8; 8 + PAYLOAD];
        p[0] = if v6 { V6_ECHO_REQUEST } else { V4_ECHO_REQUEST };
        p[4..6].copy_from_slice(&ident.to_be_bytes());
        p[6..8].copy_from_slice(&seq.to_be_bytes());
        p[8..16].copy_from_slice(&token.to_be_bytes());
        p[16..24].copy_from_slice(b"owlet-pb");
        if !v6 {
            let c = checksum(&p);
            p[2..4].copy_from_slice(&c.to_be_bytes());
        }
        p
    }

    fn u16_at(b: &[u8], i: usize) -> Option<u16> {
        Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
    }

    /// Skips an IPv4 header; returns the payload if it is ICMP.
    fn strip_ipv4(b: &[u8]) -> Option<&[u8]> {
        let first = *b.first()?;
        if first >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(first & 0x0f) * 4;
        if ihl < 20 || *b.get(9)? != 1 {
            return None;
        }
        b.get(ihl..)
    }

    /// Parses one received datagram. `ip_header`: raw IPv4 sockets include
    /// the IP header, IPv6 and datagram sockets do not.
    pub fn parse(buf: &[u8], v6: bool, ip_header: bool) -> Option<Parsed> {
        let icmp = if ip_header && !v6 {
            strip_ipv4(buf)?
        } else {
            buf
        };
        let ty = *icmp.first()?;
        let code = *icmp.get(1)?;
        let (reply, unreach, exceeded, request) = if v6 {
            (
                V6_ECHO_REPLY,
                V6_DEST_UNREACH,
                V6_TIME_EXCEEDED,
                V6_ECHO_REQUEST,
            )
        } else {
            (
                V4_ECHO_REPLY,
                V4_DEST_UNREACH,
                V4_TIME_EXCEEDED,
                V4_ECHO_REQUEST,
            )
        };
        if ty == reply {
            let ident = u16_at(icmp, 4)?;
            let seq = u16_at(icmp, 6)?;
            let t = icmp.get(8..16)?;
            let token = u64::from_be_bytes(t.try_into().ok()?);
            return Some(Parsed::Reply { ident, seq, token });
        }
        if ty == unreach || ty == exceeded {
            // Quoted original datagram: IP header + first 8 bytes of our ICMP.
            let quoted = icmp.get(8..)?;
            let inner = if v6 {
                if *quoted.get(6)? != 58 {
                    return None;
                }
                quoted.get(40..)?
            } else {
                strip_ipv4(quoted)?
            };
            if *inner.first()? != request {
                return None;
            }
            return Some(Parsed::Error {
                ident: u16_at(inner, 4)?,
                seq: u16_at(inner, 6)?,
                unreachable: ty == unreach,
                code,
            });
        }
        None
    }
}

#[derive(Debug)]
enum Reply {
    Echo(Duration),
    Error {
        from: IpAddr,
        unreachable: bool,
        code: u8,
    },
}

struct Pending {
    token: u64,
    sent: Instant,
    tx: oneshot::Sender<Reply>,
}

struct Engine {
    sock: std::net::UdpSocket,
    v6: bool,
    dgram: bool,
    /// Datagram sockets: the kernel rewrites the identifier to this.
    dgram_ident: u16,
    pending: Mutex<HashMap<(u16, u16), Pending>>,
    next_ident: AtomicU16,
    next_seq: AtomicU16,
}

fn lock(
    m: &Mutex<HashMap<(u16, u16), Pending>>,
) -> std::sync::MutexGuard<'_, HashMap<(u16, u16), Pending>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    fn open(v6: bool, dgram: bool) -> std::io::Result<Arc<Engine>> {
        let (domain, proto) = if v6 {
            (Domain::IPV6, Protocol::ICMPV6)
        } else {
            (Domain::IPV4, Protocol::ICMPV4)
        };
        let ty = if dgram { Type::DGRAM } else { Type::RAW };
        let s = Socket::new(domain, ty, Some(proto))?;
        let _ = s.set_recv_buffer_size(4 << 20);
        let _ = s.set_send_buffer_size(1 << 20);
        let mut dgram_ident = 0;
        if dgram {
            let any: SocketAddr = if v6 {
                ([0u16; 8], 0).into()
            } else {
                ([0u8; 4], 0).into()
            };
            s.bind(&any.into())?;
            dgram_ident = s.local_addr()?.as_socket().map(|a| a.port()).unwrap_or(0);
        }
        let engine = Arc::new(Engine {
            sock: s.into(),
            v6,
            dgram,
            dgram_ident,
            pending: Mutex::new(HashMap::new()),
            next_ident: AtomicU16::new(rand::random()),
            next_seq: AtomicU16::new(rand::random()),
        });
        let rx = engine.clone();
        std::thread::Builder::new()
            .name(format!("owlet-icmp-{}", if v6 { "v6" } else { "v4" }))
            .spawn(move || rx.receive_loop())?;
        Ok(engine)
    }

    fn receive_loop(&self) {
        let mut buf = vec![0u8; 2048];
        loop {
            let (n, from) = match self.sock.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "ICMP receive error");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let now = Instant::now();
            let Some(p) = packet::parse(&buf[..n], self.v6, !self.dgram) else {
                continue;
            };
            let mut map = lock(&self.pending);
            match p {
                packet::Parsed::Reply { ident, seq, token } => {
                    let ident = if self.dgram { self.dgram_ident } else { ident };
                    if map.get(&(ident, seq)).is_some_and(|e| e.token == token)
                        && let Some(e) = map.remove(&(ident, seq))
                    {
                        let _ =
                            e.tx.send(Reply::Echo(now.saturating_duration_since(e.sent)));
                    }
                }
                packet::Parsed::Error {
                    ident,
                    seq,
                    unreachable,
                    code,
                } => {
                    if let Some(e) = map.remove(&(ident, seq)) {
                        let _ = e.tx.send(Reply::Error {
                            from: from.ip(),
                            unreachable,
                            code,
                        });
                    }
                }
            }
        }
    }

    fn alloc_ident(&self) -> u16 {
        if self.dgram {
            self.dgram_ident
        } else {
            self.next_ident.fetch_add(1, Ordering::Relaxed)
        }
    }

    /// Registers an echo; returns its key and receiver.
    fn register(&self, ident: u16, token: u64) -> Option<((u16, u16), oneshot::Receiver<Reply>)> {
        let mut map = lock(&self.pending);
        for _ in 0..64 {
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            let key = (ident, seq);
            if let std::collections::hash_map::Entry::Vacant(v) = map.entry(key) {
                let (tx, rx) = oneshot::channel();
                v.insert(Pending {
                    token,
                    sent: Instant::now(),
                    tx,
                });
                return Some((key, rx));
            }
        }
        None
    }

    fn mark_sent(&self, key: (u16, u16)) {
        if let Some(p) = lock(&self.pending).get_mut(&key) {
            p.sent = Instant::now();
        }
    }
}

/// `MSG_DONTWAIT`: this send alone is non-blocking.
#[cfg(any(target_os = "linux", target_os = "android"))]
const MSG_DONTWAIT: i32 = 0x40;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const MSG_DONTWAIT: i32 = 0x80;

/// Sends one datagram without blocking (a full send buffer is
/// `WouldBlock`, never a stalled tokio worker). The socket itself stays
/// blocking for the receiver thread.
pub(crate) fn send_nonblocking<S: std::os::fd::AsFd>(
    sock: &S,
    pkt: &[u8],
    dest: &socket2::SockAddr,
) -> std::io::Result<usize> {
    socket2::SockRef::from(sock).send_to_with_flags(pkt, dest, MSG_DONTWAIT)
}

/// Removes this run's pending entries however the run ends.
struct PendingGuard<'a> {
    engine: &'a Engine,
    keys: Vec<(u16, u16)>,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        let mut map = lock(&self.engine.pending);
        for k in &self.keys {
            map.remove(k);
        }
    }
}

type EngineMap = Mutex<HashMap<(bool, bool), Arc<Engine>>>;

fn engines() -> &'static EngineMap {
    static E: OnceLock<EngineMap> = OnceLock::new();
    E.get_or_init(|| Mutex::new(HashMap::new()))
}

fn get_engine(v6: bool, mode: IcmpSocketMode) -> Result<Arc<Engine>, Outcome> {
    let mut map = engines().lock().unwrap_or_else(|p| p.into_inner());
    let order: &[bool] = match mode {
        IcmpSocketMode::Auto => &[false, true],
        IcmpSocketMode::Raw => &[false],
        IcmpSocketMode::Dgram => &[true],
    };
    let mut errors = Vec::new();
    for &dgram in order {
        if let Some(e) = map.get(&(v6, dgram)) {
            return Ok(e.clone());
        }
        match Engine::open(v6, dgram) {
            Ok(e) => {
                map.insert((v6, dgram), e.clone());
                return Ok(e);
            }
            Err(err) => errors.push(format!(
                "{} socket: {err}",
                if dgram { "datagram" } else { "raw" }
            )),
        }
    }
    Err(Outcome::unknown(format!(
        "cannot open an ICMP socket ({}); run the agent with CAP_NET_RAW, or allow unprivileged ping via sysctl net.ipv4.ping_group_range",
        errors.join("; ")
    )))
}

pub(crate) async fn run(spec: &CheckSpec, s: &IcmpSpec, r: &mut CheckResult) -> Outcome {
    let deadline = Instant::now() + spec.timeout;
    let mut d = IcmpDetail::default();
    let o = inner(s, deadline, r, &mut d).await;
    r.detail = Some(Detail::Icmp(d));
    o
}

async fn inner(
    s: &IcmpSpec,
    deadline: Instant,
    r: &mut CheckResult,
    d: &mut IcmpDetail,
) -> Outcome {
    let addr = match resolve(&s.host, 0, deadline).await {
        Ok(a) => a,
        Err(o) => return o,
    };
    let ip = addr.ip();
    r.resolved_address = ip.to_string();
    let engine = match get_engine(ip.is_ipv6(), s.socket) {
        Ok(e) => e,
        Err(o) => return o,
    };
    let ident = engine.alloc_ident();
    let mut guard = PendingGuard {
        engine: &engine,
        keys: Vec::with_capacity(s.count as usize),
    };
    let mut waits = Vec::with_capacity(s.count as usize);
    let mut send_error: Option<std::io::Error> = None;
    let dest_addr = socket2::SockAddr::from(SocketAddr::new(ip, 0));
    for i in 0..s.count {
        if i > 0 {
            tokio::time::sleep(s.echo_interval).await;
        }
        let token = rand::random::<u64>();
        let Some((key, rx)) = engine.register(ident, token) else {
            continue;
        };
        guard.keys.push(key);
        let pkt = packet::echo_request(ip.is_ipv6(), key.0, key.1, token);
        engine.mark_sent(key);
        match send_nonblocking(&engine.sock, &pkt, &dest_addr) {
            Ok(_) => waits.push(rx),
            Err(e) => {
                lock(&engine.pending).remove(&key);
                send_error = Some(e);
            }
        }
    }
    d.sent = s.count;
    let sent_ok = waits.len() as u32;
    let mut rtts = Vec::with_capacity(waits.len());
    let mut error: Option<(IpAddr, bool, u8)> = None;
    for rx in waits {
        if let Ok(Ok(reply)) = tokio::time::timeout_at(deadline.into(), rx).await {
            match reply {
                Reply::Echo(rtt) => rtts.push(rtt),
                Reply::Error {
                    from,
                    unreachable,
                    code,
                } => error = Some((from, unreachable, code)),
            }
        }
    }
    drop(guard);
    let received = rtts.len() as u32;
    d.received = received;
    // Loss over the echoes that went out: one the agent could not send
    // (LOCAL) says nothing about the target.
    d.loss_percent = if sent_ok == 0 {
        if s.count == 0 { 0.0 } else { 100.0 }
    } else {
        f64::from(sent_ok.saturating_sub(received)) * 100.0 / f64::from(sent_ok)
    };
    if !rtts.is_empty() {
        let us: Vec<u64> = rtts.iter().map(|r| micros(*r)).collect();
        d.rtt_min_us = us.iter().copied().min().unwrap_or(0);
        d.rtt_max_us = us.iter().copied().max().unwrap_or(0);
        d.rtt_avg_us = us.iter().sum::<u64>() / us.len() as u64;
        if us.len() > 1 {
            let diffs: u64 = us.windows(2).map(|w| w[0].abs_diff(w[1])).sum();
            d.jitter_us = diffs / (us.len() as u64 - 1);
        }
    }
    let mut summary = format!(
        "{received}/{sent_ok} replies, {:.0}% loss, rtt min/avg/max {:.2}/{:.2}/{:.2} ms",
        d.loss_percent,
        d.rtt_min_us as f64 / 1000.0,
        d.rtt_avg_us as f64 / 1000.0,
        d.rtt_max_us as f64 / 1000.0
    );
    if sent_ok < s.count
        && let Some(e) = &send_error
    {
        summary.push_str(&format!(
            "; {} echo request(s) not sent: {e}",
            s.count - sent_ok
        ));
    }
    if received == 0 {
        if let Some((from, unreachable, code)) = error {
            let what = if unreachable {
                format!("destination unreachable (code {code})")
            } else {
                "time exceeded (routing loop or TTL too small)".into()
            };
            return Outcome::down(
                FailureClass::Unreachable,
                format!("{what} reported by {from}"),
            );
        }
        if let Some(e) = send_error
            && sent_ok == 0
        {
            let class = crate::classify_io(&e);
            return Outcome::failed(class, format!("cannot send echo request to {ip}: {e}"));
        }
        return Outcome::down(
            FailureClass::Timeout,
            format!("no echo reply from {ip} (100% loss)"),
        );
    }
    if d.loss_percent >= s.loss_degraded_percent && d.loss_percent > 0.0 {
        return Outcome::degraded(FailureClass::PacketLoss, summary);
    }
    Outcome::up(summary)
}

#[cfg(test)]
mod tests {
    use super::packet::*;
    use proptest::prelude::*;

    #[test]
    fn full_send_buffer_is_a_local_error_not_a_blocked_thread() {
        // A datagram peer that never reads: once its queue is full a
        // blocking send would hang; the non-blocking send must fail fast
        // with WouldBlock, which is a LOCAL failure.
        use socket2::{Domain, SockAddr, Socket, Type};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peer.sock");
        let peer = Socket::new(Domain::UNIX, Type::DGRAM, None).unwrap();
        peer.bind(&SockAddr::unix(&path).unwrap()).unwrap();
        let tx = Socket::new(Domain::UNIX, Type::DGRAM, None).unwrap();
        let dest = SockAddr::unix(&path).unwrap();
        let pkt = vec![0u8; 1024];
        let start = std::time::Instant::now();
        let err = (0..1_000_000)
            .find_map(|_| super::send_nonblocking(&tx, &pkt, &dest).err())
            .expect("the peer's queue never filled");
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock, "{err:?}");
        assert_eq!(
            crate::classify_io(&err),
            owlet_proto::v1::FailureClass::Local
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        drop(peer);
    }

    #[test]
    fn reply_roundtrip_v4_with_header() {
        let mut req = echo_request(false, 0x1234, 7, 0xdead_beef_0011_2233);
        req[0] = V4_ECHO_REPLY;
        let mut pkt = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        pkt.extend_from_slice(&req);
        assert_eq!(
            parse(&pkt, false, true),
            Some(Parsed::Reply {
                ident: 0x1234,
                seq: 7,
                token: 0xdead_beef_0011_2233
            })
        );
        // Our own request looped back is not a reply.
        let req = echo_request(false, 1, 2, 3);
        assert_eq!(parse(&req, false, false), None);
    }

    #[test]
    fn unreachable_quotes_request() {
        let req = echo_request(false, 99, 5, 1);
        let inner_ip = [
            0x45u8, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 9,
        ];
        let mut icmp = vec![V4_DEST_UNREACH, 1, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&inner_ip);
        icmp.extend_from_slice(&req[..8]);
        assert_eq!(
            parse(&icmp, false, false),
            Some(Parsed::Error {
                ident: 99,
                seq: 5,
                unreachable: true,
                code: 1
            })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), v6: bool, hdr: bool) {
            let _ = parse(&bytes, v6, hdr);
        }
    }
}
