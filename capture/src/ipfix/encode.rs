//! Pure IPFIX (RFC 7011) encoding of flow records: no I/O, no clock (the
//! caller passes the export time), so tests can check every byte.
//!
//! Guarantees:
//! - every message is at most [`Encoder::new`]'s `max_message` bytes and
//!   its header length field equals its size; every set length equals the
//!   set's size and is a multiple of 4 (data sets are zero-padded, the
//!   padding shorter than one record, RFC 7011 §3.3.1);
//! - the header's sequence number counts the data records sent before this
//!   message in this observation domain, modulo 2^32 (RFC 7011 §3.1);
//! - the two templates ([`TEMPLATE_V4`], [`TEMPLATE_V6`], ids ≥ 256) lead a
//!   message whenever they are due: the first message, after
//!   `refresh_interval` of export time, after `refresh_messages` messages
//!   without them, and after [`Encoder::resend_templates`] (a send error:
//!   the collector may have restarted) (RFC 7011 §8.4 for UDP).
//!
//! A biflow ([`FlowRecord`]) is exported as up to two *uniflow* records,
//! one per direction that carried packets, each with its own counters and
//! TCP flags and `biflowDirection` (239) telling initiator (1) from
//! responder (2). Not RFC 5103 reverse elements: nfdump (the reference
//! collector) maps only reverse octet / packet counters and drops the
//! reverse TCP flags, so a biflow record would lose the responder's flags.
//! Both uniflows carry the biflow's first / last packet times (owlet does
//! not keep them per direction). The ICMP type / code (`icmpTypeCodeIPv4`
//! 32 / `icmpTypeCodeIPv6` 139) is the initiator's first; the responder's
//! record carries 0.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::engine::{EndReason, FlowRecord};

/// Template id of IPv4 data records.
pub const TEMPLATE_V4: u16 = 256;
/// Template id of IPv6 data records.
pub const TEMPLATE_V6: u16 = 257;
/// IPFIX version number in the message header.
pub const VERSION: u16 = 10;
/// Message header size.
pub const HEADER_LEN: usize = 16;
/// Set id of template sets.
pub const TEMPLATE_SET_ID: u16 = 2;

/// (information element id, length) of the fields after the addresses,
/// the same in both templates except the ICMP element.
const COMMON: [(u16, u16); 12] = [
    (7, 2),   // sourceTransportPort
    (11, 2),  // destinationTransportPort
    (4, 1),   // protocolIdentifier
    (6, 2),   // tcpControlBits (RFC 7125: unsigned16)
    (58, 2),  // vlanId
    (136, 1), // flowEndReason
    (1, 8),   // octetDeltaCount (IP bytes, as NetFlow counts)
    (2, 8),   // packetDeltaCount
    (352, 8), // layer2OctetDeltaCount (frame bytes, as tshark counts)
    (152, 8), // flowStartMilliseconds
    (153, 8), // flowEndMilliseconds
    (239, 1), // biflowDirection
];

/// Fields of a template: addresses, the common fields, the ICMP type / code.
fn fields(v6: bool) -> impl Iterator<Item = (u16, u16)> {
    let (src, dst, icmp, alen) = if v6 {
        (27, 28, 139, 16)
    } else {
        (8, 12, 32, 4)
    };
    [(src, alen), (dst, alen)]
        .into_iter()
        .chain(COMMON)
        .chain([(icmp, 2)])
}

/// Size of one data record of a template.
pub fn record_len(v6: bool) -> usize {
    fields(v6).map(|(_, l)| l as usize).sum()
}

/// Size of the template set holding both templates.
pub fn template_set_len() -> usize {
    4 + [false, true]
        .iter()
        .map(|&v6| 4 + 4 * fields(v6).count())
        .sum::<usize>()
}

/// The smallest `max_message` that fits the templates and one IPv6 record.
pub fn min_message_len() -> usize {
    HEADER_LEN + template_set_len() + pad4(4 + record_len(true))
}

fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// `flowEndReason` (RFC 7270 / IANA): 1 idle, 2 active, 3 end of flow
/// detected, 4 forced end, 5 lack of resources.
pub fn end_reason_code(r: EndReason) -> u8 {
    match r {
        EndReason::IdleTimeout => 1,
        EndReason::ActiveTimeout => 2,
        EndReason::TcpFin | EndReason::TcpRst => 3,
        EndReason::Shutdown => 4,
        EndReason::Evicted => 5,
    }
}

/// One direction of a flow, as exported (no names, no payload: what the
/// exporter's queue holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uniflow {
    /// Sender of these packets.
    pub src: IpAddr,
    /// Receiver.
    pub dst: IpAddr,
    /// Sender port.
    pub src_port: u16,
    /// Receiver port.
    pub dst_port: u16,
    /// IP protocol.
    pub protocol: u8,
    /// TCP flags union.
    pub tcp_flags: u8,
    /// VLAN id (0: none).
    pub vlan: u16,
    /// `flowEndReason` code.
    pub end_reason: u8,
    /// IP bytes.
    pub octets: u64,
    /// Packets.
    pub packets: u64,
    /// Frame bytes.
    pub l2_octets: u64,
    /// First packet, ms since the epoch.
    pub start_ms: u64,
    /// Last packet, ms since the epoch.
    pub end_ms: u64,
    /// `biflowDirection`: 1 initiator, 2 responder.
    pub direction: u8,
    /// ICMP type << 8 | code (0 for other protocols).
    pub icmp_type_code: u16,
}

impl Uniflow {
    /// The uniflows of a flow record: the initiator's, then the
    /// responder's if it sent anything. Mixed address families (never
    /// produced by the engine) yield nothing.
    pub fn from_record(r: &FlowRecord) -> impl Iterator<Item = Uniflow> {
        let same_family = r.src.is_ipv4() == r.dst.is_ipv4();
        let base = Uniflow {
            src: r.src,
            dst: r.dst,
            src_port: r.src_port,
            dst_port: r.dst_port,
            protocol: r.protocol,
            tcp_flags: r.tcp_flags_out,
            vlan: r.vlan,
            end_reason: end_reason_code(r.end_reason),
            octets: r.ip_bytes_out,
            packets: r.packets_out,
            l2_octets: r.bytes_out,
            start_ms: r.first_ns / 1_000_000,
            end_ms: r.last_ns / 1_000_000,
            direction: 1,
            icmp_type_code: r.icmp.map_or(0, |(t, c)| u16::from(t) << 8 | u16::from(c)),
        };
        let rev = Uniflow {
            src: r.dst,
            dst: r.src,
            src_port: r.dst_port,
            dst_port: r.src_port,
            tcp_flags: r.tcp_flags_in,
            octets: r.ip_bytes_in,
            packets: r.packets_in,
            l2_octets: r.bytes_in,
            direction: 2,
            icmp_type_code: 0,
            ..base
        };
        [
            (same_family && r.packets_out > 0).then_some(base),
            (same_family && r.packets_in > 0).then_some(rev),
        ]
        .into_iter()
        .flatten()
    }

    fn is_v6(&self) -> bool {
        self.src.is_ipv6()
    }

    fn write(&self, out: &mut Vec<u8>) {
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                out.extend_from_slice(&s.octets());
                out.extend_from_slice(&d.octets());
            }
            (s, d) => {
                out.extend_from_slice(&v6(s));
                out.extend_from_slice(&v6(d));
            }
        }
        out.extend_from_slice(&self.src_port.to_be_bytes());
        out.extend_from_slice(&self.dst_port.to_be_bytes());
        out.push(self.protocol);
        out.extend_from_slice(&u16::from(self.tcp_flags).to_be_bytes());
        out.extend_from_slice(&self.vlan.to_be_bytes());
        out.push(self.end_reason);
        out.extend_from_slice(&self.octets.to_be_bytes());
        out.extend_from_slice(&self.packets.to_be_bytes());
        out.extend_from_slice(&self.l2_octets.to_be_bytes());
        out.extend_from_slice(&self.start_ms.to_be_bytes());
        out.extend_from_slice(&self.end_ms.to_be_bytes());
        out.push(self.direction);
        out.extend_from_slice(&self.icmp_type_code.to_be_bytes());
    }
}

fn v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

/// Encoder state of one observation domain: sequence number and template
/// refresh bookkeeping.
#[derive(Debug)]
pub struct Encoder {
    domain: u32,
    max_message: usize,
    refresh_interval: Duration,
    refresh_messages: u32,
    seq: u32,
    last_templates: Option<SystemTime>,
    since_templates: u32,
}

impl Encoder {
    /// `max_message` is clamped to [`min_message_len`] ..= 65535.
    /// `refresh_messages` 0 disables the per-message refresh.
    pub fn new(
        domain: u32,
        max_message: usize,
        refresh_interval: Duration,
        refresh_messages: u32,
    ) -> Self {
        Encoder {
            domain,
            max_message: max_message.clamp(min_message_len(), 65535),
            refresh_interval,
            refresh_messages,
            seq: 0,
            last_templates: None,
            since_templates: 0,
        }
    }

    /// Data records sent so far (the next message's sequence number).
    pub fn sequence(&self) -> u32 {
        self.seq
    }

    /// Send the templates with the next message (after a send error).
    pub fn resend_templates(&mut self) {
        self.last_templates = None;
    }

    fn templates_due(&self, now: SystemTime) -> bool {
        match self.last_templates {
            None => true,
            Some(t) => {
                now.duration_since(t).unwrap_or_default() >= self.refresh_interval
                    || (self.refresh_messages > 0 && self.since_templates >= self.refresh_messages)
            }
        }
    }

    /// A message with the templates only (no data records; the sequence
    /// number does not move): sent before a retry after a send error.
    pub fn templates_message(&mut self, now: SystemTime) -> Vec<u8> {
        let mut m = self.header(now);
        write_templates(&mut m);
        self.last_templates = Some(now);
        self.since_templates = 0;
        finish(&mut m);
        m
    }

    fn header(&self, now: SystemTime) -> Vec<u8> {
        let export_secs = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let mut m = Vec::with_capacity(self.max_message);
        m.extend_from_slice(&VERSION.to_be_bytes());
        m.extend_from_slice(&[0, 0]); // length, set by finish()
        m.extend_from_slice(&export_secs.to_be_bytes());
        m.extend_from_slice(&self.seq.to_be_bytes());
        m.extend_from_slice(&self.domain.to_be_bytes());
        m
    }

    /// Encode `flows` into as many messages as they need (none for no
    /// flows), in order, with export time `now`.
    pub fn encode(&mut self, flows: &[Uniflow], now: SystemTime) -> Vec<Vec<u8>> {
        let mut msgs = Vec::new();
        let mut rest = flows;
        while !rest.is_empty() {
            let mut m = self.header(now);
            if self.templates_due(now) {
                write_templates(&mut m);
                self.last_templates = Some(now);
                self.since_templates = 0;
            } else {
                self.since_templates = self.since_templates.saturating_add(1);
            }
            let mut n = 0usize;
            // One data set per run of same-family records.
            while let Some(first) = rest.first() {
                let v6 = first.is_v6();
                let rlen = record_len(v6);
                let room = self.max_message.saturating_sub(m.len() + 4);
                let fit = room / rlen;
                // Padding must not push the set past the limit.
                let run = rest.iter().take_while(|f| f.is_v6() == v6).count();
                let mut k = run.min(fit);
                while k > 0 && m.len() + pad4(4 + k * rlen) > self.max_message {
                    k -= 1;
                }
                if k == 0 {
                    break;
                }
                let set_start = m.len();
                let set_len = pad4(4 + k * rlen);
                m.extend_from_slice(&(if v6 { TEMPLATE_V6 } else { TEMPLATE_V4 }).to_be_bytes());
                m.extend_from_slice(&(set_len as u16).to_be_bytes());
                for f in &rest[..k] {
                    f.write(&mut m);
                }
                m.resize(set_start + set_len, 0);
                rest = &rest[k..];
                n += k;
            }
            finish(&mut m);
            self.seq = self.seq.wrapping_add(n as u32);
            msgs.push(m);
            if n == 0 {
                // Cannot happen (max_message fits templates + one record);
                // never loop forever on it.
                break;
            }
        }
        msgs
    }
}

fn finish(m: &mut [u8]) {
    let len = m.len() as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
}

fn write_templates(m: &mut Vec<u8>) {
    m.extend_from_slice(&TEMPLATE_SET_ID.to_be_bytes());
    m.extend_from_slice(&(template_set_len() as u16).to_be_bytes());
    for (id, v6) in [(TEMPLATE_V4, false), (TEMPLATE_V6, true)] {
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&(fields(v6).count() as u16).to_be_bytes());
        for (ie, len) in fields(v6) {
            m.extend_from_slice(&ie.to_be_bytes());
            m.extend_from_slice(&len.to_be_bytes());
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn be16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }
    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    /// (set id, set bytes including its header) of a message, checking the
    /// header and that the sets tile the message exactly.
    pub(crate) fn sets(m: &[u8]) -> Vec<(u16, Vec<u8>)> {
        assert_eq!(be16(m, 0), 10, "version");
        assert_eq!(usize::from(be16(m, 2)), m.len(), "message length field");
        let mut off = HEADER_LEN;
        let mut out = Vec::new();
        while off < m.len() {
            let (id, len) = (be16(m, off), usize::from(be16(m, off + 2)));
            assert!(
                len >= 4 && off + len <= m.len(),
                "set length {len} at {off}"
            );
            assert_eq!(len % 4, 0, "set length padded to 4");
            out.push((id, m[off..off + len].to_vec()));
            off += len;
        }
        assert_eq!(off, m.len());
        out
    }

    pub(crate) fn flow(i: u32, v6: bool) -> Uniflow {
        let (src, dst) = if v6 {
            (
                IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16]),
                IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 1, 2]),
            )
        } else {
            (IpAddr::from(i.to_be_bytes()), IpAddr::from([10, 0, 0, 2]))
        };
        Uniflow {
            src,
            dst,
            src_port: 1000 + i as u16,
            dst_port: 443,
            protocol: 6,
            tcp_flags: 0x1b,
            vlan: 42,
            end_reason: 3,
            octets: 5_000_000_000 + u64::from(i),
            packets: 7,
            l2_octets: 9,
            start_ms: 1_764_150_000_123,
            end_ms: 1_764_150_005_987,
            direction: 1,
            icmp_type_code: 0,
        }
    }

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_764_150_100)
    }

    #[test]
    fn message_header_template_and_data_set_bytes() {
        let mut e = Encoder::new(77, 1400, Duration::from_secs(600), 0);
        let msgs = e.encode(&[flow(1, false), flow(2, true)], t0());
        assert_eq!(msgs.len(), 1);
        let m = &msgs[0];
        assert_eq!(be32(m, 4), 1_764_150_100, "export time");
        assert_eq!(be32(m, 8), 0, "sequence of the first message");
        assert_eq!(be32(m, 12), 77, "observation domain");
        let s = sets(m);
        assert_eq!(
            s.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            [TEMPLATE_SET_ID, TEMPLATE_V4, TEMPLATE_V6]
        );
        // Template set: two templates, ids >= 256, field lists as documented.
        let t = &s[0].1;
        assert_eq!(be16(t, 4), 256);
        assert_eq!(usize::from(be16(t, 6)), 15);
        let ies: Vec<(u16, u16)> = (0..15)
            .map(|i| (be16(t, 8 + 4 * i), be16(t, 10 + 4 * i)))
            .collect();
        assert_eq!(ies[0], (8, 4));
        assert_eq!(ies[1], (12, 4));
        assert!(ies.contains(&(152, 8)) && ies.contains(&(153, 8)) && ies.contains(&(58, 2)));
        assert!(ies.contains(&(32, 2)), "icmpTypeCodeIPv4");
        let t6 = 8 + 4 * 15;
        assert_eq!(be16(t, t6), 257);
        assert_eq!((be16(t, t6 + 4), be16(t, t6 + 6)), (27, 16));
        assert_eq!((be16(t, t6 + 8), be16(t, t6 + 10)), (28, 16));
        assert_eq!(t.len(), template_set_len());
        // Data sets: one record each, zero padding shorter than a record.
        for (set, v6) in [(&s[1].1, false), (&s[2].1, true)] {
            let rl = record_len(v6);
            assert_eq!(set.len(), pad4(4 + rl));
            assert!(set[4 + rl..].iter().all(|&b| b == 0));
            assert!(set.len() - 4 - rl < 4);
        }
        assert_eq!((record_len(false), record_len(true)), (61, 85));
        let d4 = &s[1].1[4..];
        assert_eq!(&d4[0..8], &[0, 0, 0, 1, 10, 0, 0, 2]);
        assert_eq!(be16(d4, 8), 1001);
        assert_eq!(be16(d4, 10), 443);
        assert_eq!(d4[12], 6);
        assert_eq!(be16(d4, 13), 0x1b);
        assert_eq!(be16(d4, 15), 42);
        assert_eq!(d4[17], 3);
        assert_eq!(
            u64::from_be_bytes(d4[18..26].try_into().unwrap()),
            5_000_000_001
        );
        assert_eq!(
            u64::from_be_bytes(d4[42..50].try_into().unwrap()),
            1_764_150_000_123
        );
        assert_eq!(d4[58], 1, "biflowDirection");
        assert_eq!(data_records_of(m), 2);
        assert_eq!(e.sequence(), 2);
    }

    fn data_records_of(m: &[u8]) -> usize {
        sets(m)
            .iter()
            .filter(|(id, _)| *id >= 256)
            .map(|(id, b)| (b.len() - 4) / record_len(*id == TEMPLATE_V6))
            .sum()
    }

    #[test]
    fn messages_stay_under_the_limit_and_sequence_counts_records() {
        // Limits that are and are not multiples of 4 (padding must fit too).
        for limit in (min_message_len()..700).chain([1398, 1399, 1400]) {
            under_the_limit(limit);
        }
    }

    fn under_the_limit(limit: usize) {
        let mut e = Encoder::new(1, limit, Duration::from_secs(600), 0);
        let flows: Vec<Uniflow> = (0..200).map(|i| flow(i, i % 7 < 3)).collect();
        let msgs = e.encode(&flows, t0());
        assert!(msgs.len() > 10);
        let mut seq = 0u32;
        let mut seen = Vec::new();
        for m in &msgs {
            assert!(m.len() <= limit, "{} > {limit}", m.len());
            assert_eq!(be32(m, 8), seq, "sequence = records before this message");
            for (id, b) in sets(m).iter().filter(|(id, _)| *id >= 256) {
                let rl = record_len(*id == TEMPLATE_V6);
                assert!(b.len() - 4 - (b.len() - 4) / rl * rl < 4, "padding < 4");
                for r in b[4..].chunks_exact(rl) {
                    seen.push(be16(r, if *id == TEMPLATE_V6 { 32 } else { 8 }));
                }
            }
            seq += data_records_of(m) as u32;
        }
        assert_eq!(seen, (0..200).map(|i| 1000 + i as u16).collect::<Vec<_>>());
        assert_eq!(e.sequence(), 200);
        // The sequence wraps modulo 2^32.
        e.seq = u32::MAX;
        e.encode(&[flow(1, false), flow(2, false)], t0());
        assert_eq!(e.sequence(), 1);
    }

    fn with_templates(e: &mut Encoder, now: SystemTime) -> bool {
        let m = e.encode(&[flow(1, false)], now);
        sets(&m[0])[0].0 == TEMPLATE_SET_ID
    }

    #[test]
    fn templates_refresh_by_time_by_messages_and_after_an_error() {
        let mut e = Encoder::new(1, 1400, Duration::from_secs(600), 3);
        let t = t0();
        assert!(with_templates(&mut e, t), "first message");
        assert!(!with_templates(&mut e, t));
        assert!(!with_templates(&mut e, t));
        assert!(!with_templates(&mut e, t));
        assert!(with_templates(&mut e, t), "after 3 messages without");
        assert!(!with_templates(&mut e, t + Duration::from_secs(599)));
        assert!(
            with_templates(&mut e, t + Duration::from_secs(600)),
            "after 10 min"
        );
        assert!(!with_templates(&mut e, t + Duration::from_secs(601)));
        e.resend_templates();
        assert!(
            with_templates(&mut e, t + Duration::from_secs(602)),
            "after an error"
        );
        // Templates-only message: no data, the sequence does not move.
        let seq = e.sequence();
        let m = e.templates_message(t);
        assert_eq!(sets(&m).len(), 1);
        assert_eq!(be32(&m, 8), seq);
        assert_eq!(e.sequence(), seq);
        // 0 turns the per-message refresh off.
        let mut e = Encoder::new(1, 1400, Duration::from_secs(600), 0);
        assert!(with_templates(&mut e, t));
        assert!((0..500).all(|_| !with_templates(&mut e, t)));
    }

    #[test]
    fn a_flow_record_is_one_or_two_uniflows() {
        use crate::engine::FlowRecord;
        let r = FlowRecord {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            src_port: 0,
            dst_port: 0,
            protocol: 1,
            vlan: 5,
            packets_out: 3,
            bytes_out: 300,
            ip_bytes_out: 252,
            packets_in: 2,
            bytes_in: 200,
            ip_bytes_in: 168,
            tcp_flags_out: 0,
            tcp_flags_in: 0,
            icmp: Some((8, 1)),
            initiator_by_syn: false,
            first_ns: 1_500_999_999,
            last_ns: 2_000_000_000,
            end_reason: EndReason::Evicted,
            app: None,
        };
        let u: Vec<_> = Uniflow::from_record(&r).collect();
        assert_eq!(u.len(), 2);
        assert_eq!((u[0].packets, u[0].octets, u[0].l2_octets), (3, 252, 300));
        assert_eq!((u[0].start_ms, u[0].end_ms), (1500, 2000));
        assert_eq!(
            (u[0].icmp_type_code, u[0].direction, u[0].end_reason),
            (0x0801, 1, 5)
        );
        assert_eq!((u[1].src, u[1].dst), (r.dst, r.src));
        assert_eq!((u[1].packets, u[1].octets, u[1].direction), (2, 168, 2));
        let one_way = FlowRecord {
            packets_in: 0,
            bytes_in: 0,
            ip_bytes_in: 0,
            ..r
        };
        assert_eq!(Uniflow::from_record(&one_way).count(), 1);
    }
}
