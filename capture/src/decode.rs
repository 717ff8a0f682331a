//! Zero-copy packet decoder: link, network and transport headers into a
//! small [`Packet`] of metadata.
//!
//! Guarantees:
//! - never panics and never allocates: every read goes through bounds-checked
//!   helpers over the borrowed frame; any malformed input becomes a
//!   [`DecodeError`] whose [`ErrorClass`] the caller counts;
//! - no payload byte leaves this module except through [`Packet::payload`],
//!   which is `pub(crate)`: only the light application parsers in
//!   [`crate::app`] read it, and they keep names, never content.
//!
//! Supported: Ethernet II (802.3 / LLC frames are counted as non-IP),
//! 802.1Q / 802.1ad (QinQ, up to [`MAX_VLAN_TAGS`] tags; the outermost id is
//! the flow's VLAN), Linux "cooked" SLL / SLL2, raw IP, BSD loopback (NULL,
//! LOOP), PPP and Cisco HDLC link types (see [`LinkType`]), ARP, IPv4 with
//! options and fragments, IPv6 with extension headers (hop-by-hop, routing,
//! fragment, destination options, AH, mobility), TCP, UDP, ICMP, ICMPv6.
//! GRE (IP protocol 47) and VXLAN (UDP 4789) are recognised and counted as
//! tunnels; their outer header is the flow, the inner packet is not decoded.
//!
//! Why hand-written views instead of `pnet_packet`: pnet's views are also
//! zero-copy, but they do not model "captured shorter than the wire"
//! (snaplen), stacked VLAN tags, IPv6 extension-header chains or fragment
//! attribution, and they give no error classes. Measured side by side
//! (`bench/capture`, see bench/RESULTS.md) pnet's lazy views decode faster
//! in isolation (they read less); decoding is a small share of a packet's
//! cost next to the flow update, so this decoder is kept for what it checks.

/// How many stacked VLAN tags are followed before the frame is rejected.
pub const MAX_VLAN_TAGS: usize = 4;
/// How many IPv6 extension headers are followed before giving up.
pub const MAX_IPV6_EXT: usize = 8;

/// UDP port VXLAN uses (RFC 7348).
pub const VXLAN_PORT: u16 = 4789;

/// Why a frame could not be decoded. Counted by class, never fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The captured bytes end inside a header we need.
    Truncated,
    /// A length field disagrees with the frame (IPv4 total length beyond the
    /// wire length, header length shorter than the minimum...).
    BadLength,
    /// A header field has an impossible value (IP version, TCP data offset).
    BadHeader,
    /// A link type or protocol this decoder does not handle at all.
    Unsupported,
}

impl ErrorClass {
    /// Every class, in the order [`ErrorClass::index`] numbers them.
    pub const ALL: [ErrorClass; 4] = [
        ErrorClass::Truncated,
        ErrorClass::BadLength,
        ErrorClass::BadHeader,
        ErrorClass::Unsupported,
    ];

    /// Stable name used in stats and JSON (`decode_errors` keys).
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Truncated => "truncated",
            ErrorClass::BadLength => "bad_length",
            ErrorClass::BadHeader => "bad_header",
            ErrorClass::Unsupported => "unsupported",
        }
    }

    /// Dense index for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A decode failure: its class and the layer it happened in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// What went wrong.
    pub class: ErrorClass,
    /// Where: "ethernet", "vlan", "ipv4", "ipv6", "tcp", "udp", "icmp", "arp"...
    pub layer: &'static str,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} in {} header", self.class.name(), self.layer)
    }
}

impl std::error::Error for DecodeError {}

fn err(class: ErrorClass, layer: &'static str) -> DecodeError {
    DecodeError { class, layer }
}

/// Link-layer framing of the captured bytes (pcap link types we accept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// DLT_EN10MB (1).
    Ethernet,
    /// DLT_LINUX_SLL (113): Linux "cooked" capture, 16-byte header.
    LinuxSll,
    /// DLT_LINUX_SLL2 (276): 20-byte header.
    LinuxSll2,
    /// DLT_RAW (101; 12 and 14 on some BSDs) / LINKTYPE_IPV4 / LINKTYPE_IPV6,
    /// and live raw-IP interfaces (tun, WireGuard, PPP): the frame is an IP packet.
    RawIp,
    /// DLT_NULL (0): BSD / macOS loopback, a 4-byte address family in the
    /// byte order of the host that wrote it.
    Null,
    /// DLT_LOOP (108): OpenBSD loopback, the 4-byte address family in
    /// network byte order.
    Loop,
    /// DLT_PPP (9) / DLT_PPP_SERIAL (50): a 2-byte PPP protocol (1 byte when
    /// compressed), after the 0xff 0x03 address / control bytes if present.
    Ppp,
    /// DLT_C_HDLC (104): Cisco HDLC, address, control, then an EtherType.
    CHdlc,
}

impl LinkType {
    /// Every link type, for tests and fuzzing.
    pub const ALL: [LinkType; 8] = [
        LinkType::Ethernet,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::RawIp,
        LinkType::Null,
        LinkType::Loop,
        LinkType::Ppp,
        LinkType::CHdlc,
    ];
}

/// Network layer of a decoded packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Network {
    /// Not IP and not ARP (LLDP, STP, 802.3 LLC...): counted, no flow.
    #[default]
    Other,
    /// ARP: counted in the protocol mix, no flow.
    Arp,
    /// IPv4: addresses are stored IPv4-mapped in [`Packet::src`] / `dst`.
    Ipv4,
    /// IPv6.
    Ipv6,
}

/// A tunnel recognised in the outer packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Tunnel {
    /// No tunnel.
    #[default]
    None,
    /// GRE (IP protocol 47).
    Gre,
    /// VXLAN (UDP destination port 4789 with a valid VXLAN header).
    Vxlan,
}

/// IP fragment information.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Fragment {
    /// IPv4 identification (16 bits) or IPv6 fragment identification.
    pub id: u32,
    /// Fragment offset in 8-byte units.
    pub offset: u16,
    /// More fragments follow.
    pub more: bool,
}

/// TCP flag bits as they appear in the header's flags byte.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
}

/// Metadata of one frame. `Copy`, no heap; borrows the frame only for the
/// crate-private transport payload.
#[derive(Clone, Copy, Debug, Default)]
pub struct Packet<'a> {
    /// Length of the frame on the wire (pcap `orig_len`), what tshark counts.
    pub frame_len: u32,
    /// Outermost VLAN id, 0 when untagged.
    pub vlan: u16,
    /// Number of VLAN tags (2 for QinQ).
    pub vlan_tags: u8,
    /// Network layer.
    pub network: Network,
    /// Source address; IPv4 as IPv4-mapped IPv6 (`::ffff:a.b.c.d`).
    pub src: [u8; 16],
    /// Destination address, same encoding as `src`.
    pub dst: [u8; 16],
    /// IP protocol number of the transport (after IPv6 extension headers).
    pub proto: u8,
    /// IP bytes as NetFlow counts them: IPv4 total length, IPv6 40 + payload length.
    pub ip_len: u32,
    /// Source port (TCP / UDP), 0 otherwise or in a non-first fragment.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// TCP flags byte (0 for other protocols).
    pub tcp_flags: u8,
    /// TCP sequence number (used to order the first bytes of a stream).
    pub tcp_seq: u32,
    /// ICMP / ICMPv6 type.
    pub icmp_type: u8,
    /// ICMP / ICMPv6 code.
    pub icmp_code: u8,
    /// Set when the packet is an IP fragment.
    pub fragment: Option<Fragment>,
    /// Tunnel recognised in this (outer) packet.
    pub tunnel: Tunnel,
    /// Transport payload as captured (may be shorter than on the wire).
    pub(crate) payload: &'a [u8],
}

impl Packet<'_> {
    /// True when this packet carries the transport header (not a later fragment).
    pub fn has_transport_header(&self) -> bool {
        self.fragment.is_none_or(|f| f.offset == 0)
    }

    /// Length of the captured transport payload (the bytes are crate-private).
    pub fn payload_len(&self) -> usize {
        self.payload.len()
    }
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]))
}

#[inline(always)]
fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86DD;
const ETH_ARP: u16 = 0x0806;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88A8;
const ETH_QINQ_OLD: u16 = 0x9100;

/// Decode one captured frame.
///
/// `data` is what was captured, `frame_len` the length on the wire (equal to
/// `data.len()` unless the capture was cut by a snap length).
pub fn decode(link: LinkType, data: &[u8], frame_len: u32) -> Result<Packet<'_>, DecodeError> {
    let mut p = Packet {
        frame_len,
        ..Packet::default()
    };
    let (ethertype, off) = match link {
        LinkType::Ethernet => ethernet(data, &mut p)?,
        LinkType::LinuxSll => {
            let et = be16(data, 14).ok_or(err(ErrorClass::Truncated, "sll"))?;
            vlan_chain(data, et, 16, &mut p)?
        }
        LinkType::LinuxSll2 => {
            let et = be16(data, 0).ok_or(err(ErrorClass::Truncated, "sll2"))?;
            if data.len() < 20 {
                return Err(err(ErrorClass::Truncated, "sll2"));
            }
            vlan_chain(data, et, 20, &mut p)?
        }
        LinkType::RawIp => match data.first().map(|b| b >> 4) {
            Some(4) => (ETH_IPV4, 0),
            Some(6) => (ETH_IPV6, 0),
            Some(_) => return Err(err(ErrorClass::BadHeader, "ip")),
            None => return Err(err(ErrorClass::Truncated, "ip")),
        },
        LinkType::Null | LinkType::Loop => {
            let h = data
                .get(..4)
                .ok_or(err(ErrorClass::Truncated, "loopback"))?;
            let be = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
            let af = match link {
                LinkType::Loop => be,
                // The writer's byte order: a family fits in the low 16 bits.
                _ if be > 0xffff => be.swap_bytes(),
                _ => be,
            };
            (family_ethertype(af), 4)
        }
        LinkType::Ppp => {
            let off = if data.starts_with(&[0xff, 0x03]) {
                2
            } else {
                0
            };
            let first = *data.get(off).ok_or(err(ErrorClass::Truncated, "ppp"))?;
            // Protocol-field compression: an odd first byte is the whole protocol.
            let (proto, len) = if first & 1 == 1 {
                (first as u16, 1)
            } else {
                (be16(data, off).ok_or(err(ErrorClass::Truncated, "ppp"))?, 2)
            };
            let et = match proto {
                0x0021 => ETH_IPV4,
                0x0057 => ETH_IPV6,
                _ => 0,
            };
            (et, off + len)
        }
        LinkType::CHdlc => (be16(data, 2).ok_or(err(ErrorClass::Truncated, "chdlc"))?, 4),
    };
    // Bytes of the L3 packet on the wire (the capture may hold fewer).
    let wire_l3 = (frame_len as usize).saturating_sub(off);
    let l3 = data.get(off..).unwrap_or(&[]);
    match ethertype {
        ETH_IPV4 => ipv4(l3, wire_l3, &mut p)?,
        ETH_IPV6 => ipv6(l3, wire_l3, &mut p)?,
        ETH_ARP => {
            if l3.len() < 8 {
                return Err(err(ErrorClass::Truncated, "arp"));
            }
            p.network = Network::Arp;
        }
        _ => p.network = Network::Other,
    }
    Ok(p)
}

/// The EtherType for a loopback header's address family: AF_INET is 2
/// everywhere; AF_INET6 is 24 (NetBSD, OpenBSD), 28 (FreeBSD) or 30
/// (macOS). Others are not IP (0).
fn family_ethertype(af: u32) -> u16 {
    match af {
        2 => ETH_IPV4,
        24 | 28 | 30 => ETH_IPV6,
        _ => 0,
    }
}

#[inline(always)]
fn ethernet<'a>(data: &'a [u8], p: &mut Packet<'a>) -> Result<(u16, usize), DecodeError> {
    let et = be16(data, 12).ok_or(err(ErrorClass::Truncated, "ethernet"))?;
    if et < 0x0600 {
        // 802.3 length field: LLC / SNAP frames (STP, CDP...). Not IP.
        return Ok((0, 14));
    }
    vlan_chain(data, et, 14, p)
}

#[inline(always)]
fn vlan_chain(
    data: &[u8],
    mut et: u16,
    mut off: usize,
    p: &mut Packet<'_>,
) -> Result<(u16, usize), DecodeError> {
    let mut tags = 0usize;
    while et == ETH_VLAN || et == ETH_QINQ || et == ETH_QINQ_OLD {
        if tags == MAX_VLAN_TAGS {
            return Err(err(ErrorClass::Unsupported, "vlan"));
        }
        let tci = be16(data, off).ok_or(err(ErrorClass::Truncated, "vlan"))?;
        et = be16(data, off + 2).ok_or(err(ErrorClass::Truncated, "vlan"))?;
        if tags == 0 {
            p.vlan = tci & 0x0FFF;
        }
        tags += 1;
        off += 4;
    }
    p.vlan_tags = tags as u8;
    Ok((et, off))
}

#[inline(always)]
fn ipv4<'a>(b: &'a [u8], wire: usize, p: &mut Packet<'a>) -> Result<(), DecodeError> {
    const L: &str = "ipv4";
    if b.len() < 20 {
        return Err(err(ErrorClass::Truncated, L));
    }
    if b[0] >> 4 != 4 {
        return Err(err(ErrorClass::BadHeader, L));
    }
    let ihl = ((b[0] & 0x0F) as usize) * 4;
    if ihl < 20 {
        return Err(err(ErrorClass::BadLength, L));
    }
    let total = u16::from_be_bytes([b[2], b[3]]) as usize;
    if total < ihl || total > wire {
        return Err(err(ErrorClass::BadLength, L));
    }
    if b.len() < ihl {
        return Err(err(ErrorClass::Truncated, L));
    }
    p.network = Network::Ipv4;
    p.ip_len = total as u32;
    p.proto = b[9];
    p.src[10] = 0xFF;
    p.src[11] = 0xFF;
    p.src[12..16].copy_from_slice(&b[12..16]);
    p.dst[10] = 0xFF;
    p.dst[11] = 0xFF;
    p.dst[12..16].copy_from_slice(&b[16..20]);
    let frag = u16::from_be_bytes([b[6], b[7]]);
    let offset = frag & 0x1FFF;
    let more = frag & 0x2000 != 0;
    if offset != 0 || more {
        p.fragment = Some(Fragment {
            id: u16::from_be_bytes([b[4], b[5]]) as u32,
            offset,
            more,
        });
    }
    // Ethernet padding beyond total length is not IP payload.
    let end = total.min(b.len());
    let l4 = &b[ihl..end];
    let l4_wire = total - ihl;
    if offset != 0 {
        return Ok(());
    }
    transport(l4, l4_wire, false, p)
}

#[inline(always)]
fn ipv6<'a>(b: &'a [u8], wire: usize, p: &mut Packet<'a>) -> Result<(), DecodeError> {
    const L: &str = "ipv6";
    if b.len() < 40 {
        return Err(err(ErrorClass::Truncated, L));
    }
    if b[0] >> 4 != 6 {
        return Err(err(ErrorClass::BadHeader, L));
    }
    let plen = u16::from_be_bytes([b[4], b[5]]) as usize;
    if plen == 0 {
        // Jumbogram (hop-by-hop jumbo option): not on the networks we watch.
        return Err(err(ErrorClass::Unsupported, L));
    }
    if 40 + plen > wire {
        return Err(err(ErrorClass::BadLength, L));
    }
    p.network = Network::Ipv6;
    p.ip_len = (40 + plen) as u32;
    p.src.copy_from_slice(&b[8..24]);
    p.dst.copy_from_slice(&b[24..40]);
    let end = (40 + plen).min(b.len());
    let mut next = b[6];
    let mut off = 40usize;
    for _ in 0..MAX_IPV6_EXT {
        match next {
            // hop-by-hop, routing, destination options, mobility, HIP, shim6
            0 | 43 | 60 | 135 | 139 | 140 => {
                let h = b.get(off..off + 2).ok_or(err(ErrorClass::Truncated, L))?;
                next = h[0];
                off += (h[1] as usize + 1) * 8;
            }
            // authentication header: length in 4-byte units minus 2
            51 => {
                let h = b.get(off..off + 2).ok_or(err(ErrorClass::Truncated, L))?;
                next = h[0];
                off += (h[1] as usize + 2) * 4;
            }
            44 => {
                let h = b.get(off..off + 8).ok_or(err(ErrorClass::Truncated, L))?;
                next = h[0];
                let fo = u16::from_be_bytes([h[2], h[3]]);
                let offset = fo >> 3;
                let more = fo & 1 != 0;
                p.fragment = Some(Fragment {
                    id: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                    offset,
                    more,
                });
                off += 8;
            }
            _ => break,
        }
        if off > 40 + plen {
            return Err(err(ErrorClass::BadLength, L));
        }
    }
    if matches!(next, 0 | 43 | 60 | 135 | 139 | 140 | 51 | 44) {
        return Err(err(ErrorClass::Unsupported, L));
    }
    p.proto = next;
    if p.fragment.is_some_and(|f| f.offset != 0) {
        return Ok(());
    }
    let l4 = b.get(off..end).unwrap_or(&[]);
    let l4_wire = 40 + plen - off;
    transport(l4, l4_wire, true, p)
}

#[inline(always)]
fn transport<'a>(
    b: &'a [u8],
    wire: usize,
    v6: bool,
    p: &mut Packet<'a>,
) -> Result<(), DecodeError> {
    match p.proto {
        6 => {
            const L: &str = "tcp";
            if b.len() < 20 {
                return Err(err(
                    if wire < 20 {
                        ErrorClass::BadLength
                    } else {
                        ErrorClass::Truncated
                    },
                    L,
                ));
            }
            let doff = ((b[12] >> 4) as usize) * 4;
            if doff < 20 {
                return Err(err(ErrorClass::BadHeader, L));
            }
            if doff > wire {
                return Err(err(ErrorClass::BadLength, L));
            }
            p.src_port = u16::from_be_bytes([b[0], b[1]]);
            p.dst_port = u16::from_be_bytes([b[2], b[3]]);
            p.tcp_seq = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            p.tcp_flags = b[13];
            p.payload = b.get(doff..).unwrap_or(&[]);
        }
        17 => {
            const L: &str = "udp";
            if b.len() < 8 {
                return Err(err(
                    if wire < 8 {
                        ErrorClass::BadLength
                    } else {
                        ErrorClass::Truncated
                    },
                    L,
                ));
            }
            let ulen = u16::from_be_bytes([b[4], b[5]]) as usize;
            // In a first fragment the UDP length covers the whole datagram.
            if ulen < 8 || (p.fragment.is_none() && ulen > wire) {
                return Err(err(ErrorClass::BadLength, L));
            }
            p.src_port = u16::from_be_bytes([b[0], b[1]]);
            p.dst_port = u16::from_be_bytes([b[2], b[3]]);
            let end = ulen.min(b.len());
            p.payload = &b[8..end];
            if p.dst_port == VXLAN_PORT && p.payload.len() >= 8 && p.payload[0] & 0x08 != 0 {
                p.tunnel = Tunnel::Vxlan;
            }
        }
        1 if !v6 => icmp(b, p, "icmp")?,
        58 if v6 => icmp(b, p, "icmpv6")?,
        47 => {
            if be32(b, 0).is_none() {
                return Err(err(ErrorClass::Truncated, "gre"));
            }
            p.tunnel = Tunnel::Gre;
        }
        _ => {}
    }
    Ok(())
}

#[inline(always)]
fn icmp(b: &[u8], p: &mut Packet<'_>, layer: &'static str) -> Result<(), DecodeError> {
    if b.len() < 4 {
        return Err(err(ErrorClass::Truncated, layer));
    }
    p.icmp_type = b[0];
    p.icmp_code = b[1];
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Build an Ethernet + IPv4 + TCP/UDP frame for tests (checksums zero).
    pub(crate) fn eth_ipv4(
        src: [u8; 4],
        dst: [u8; 4],
        proto: u8,
        l4: &[u8],
        vlans: &[u16],
    ) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        for (i, v) in vlans.iter().enumerate() {
            let tpid: u16 = if i == 0 && vlans.len() > 1 {
                ETH_QINQ
            } else {
                ETH_VLAN
            };
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&v.to_be_bytes());
        }
        f.extend_from_slice(&ETH_IPV4.to_be_bytes());
        let total = (20 + l4.len()) as u16;
        f.extend_from_slice(&[0x45, 0, 0, 0, 0, 1, 0, 0, 64, proto, 0, 0]);
        let at = f.len() - 10;
        f[at..at + 2].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(l4);
        f
    }

    pub(crate) fn tcp(sport: u16, dport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&sport.to_be_bytes());
        t.extend_from_slice(&dport.to_be_bytes());
        t.extend_from_slice(&seq.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xFF, 0xFF, 0, 0, 0, 0]);
        t.extend_from_slice(payload);
        t
    }

    pub(crate) fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&sport.to_be_bytes());
        t.extend_from_slice(&dport.to_be_bytes());
        t.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        t.extend_from_slice(&[0, 0]);
        t.extend_from_slice(payload);
        t
    }

    fn d(f: &[u8]) -> Result<Packet<'_>, DecodeError> {
        decode(LinkType::Ethernet, f, f.len() as u32)
    }

    #[test]
    fn tcp_over_qinq() {
        let f = eth_ipv4(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            6,
            &tcp(1234, 80, 7, tcp_flags::SYN, b""),
            &[100, 200],
        );
        let p = d(&f).unwrap();
        assert_eq!(p.vlan, 100);
        assert_eq!(p.vlan_tags, 2);
        assert_eq!(p.network, Network::Ipv4);
        assert_eq!(&p.src[12..], &[10, 0, 0, 1]);
        assert_eq!(
            (p.src_port, p.dst_port, p.tcp_flags),
            (1234, 80, tcp_flags::SYN)
        );
        assert_eq!(p.ip_len, 40);
    }

    #[test]
    fn ipv4_options_and_padding() {
        let mut f = eth_ipv4([1, 1, 1, 1], [2, 2, 2, 2], 17, &udp(53, 5353, b"ab"), &[]);
        // Insert 4 bytes of options (NOP x4): ihl 6.
        f[14] = 0x46;
        let total = u16::from_be_bytes([f[16], f[17]]) + 4;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f.splice(34..34, [1u8, 1, 1, 1]);
        f.extend_from_slice(&[0; 10]); // Ethernet padding
        let p = d(&f).unwrap();
        assert_eq!((p.src_port, p.dst_port), (53, 5353));
        assert_eq!(p.payload, b"ab");
        assert_eq!(p.ip_len, 34);
    }

    #[test]
    fn lying_lengths_are_classified() {
        let mut f = eth_ipv4([1, 1, 1, 1], [2, 2, 2, 2], 17, &udp(1, 2, b"x"), &[]);
        f[16..18].copy_from_slice(&500u16.to_be_bytes());
        assert_eq!(d(&f).unwrap_err().class, ErrorClass::BadLength);
        let mut f = eth_ipv4([1, 1, 1, 1], [2, 2, 2, 2], 17, &udp(1, 2, b"x"), &[]);
        f[14] = 0x44; // ihl 16 bytes
        assert_eq!(d(&f).unwrap_err().class, ErrorClass::BadLength);
        let mut f = eth_ipv4([1, 1, 1, 1], [2, 2, 2, 2], 17, &udp(1, 2, b"x"), &[]);
        f[38..40].copy_from_slice(&400u16.to_be_bytes()); // UDP length lies
        assert_eq!(d(&f).unwrap_err().class, ErrorClass::BadLength);
        let f = eth_ipv4([1, 1, 1, 1], [2, 2, 2, 2], 6, &tcp(1, 2, 0, 2, b""), &[]);
        for cut in 0..f.len() {
            // Every prefix is an error, never a panic (the full frame decodes).
            assert!(d(&f[..cut]).is_err(), "prefix {cut} decoded");
        }
    }

    #[test]
    fn snapped_frame_keeps_header_metadata() {
        let f = eth_ipv4(
            [1, 1, 1, 1],
            [2, 2, 2, 2],
            6,
            &tcp(1, 2, 0, 0x18, &[7; 400]),
            &[],
        );
        let p = decode(LinkType::Ethernet, &f[..96], f.len() as u32).unwrap();
        assert_eq!(p.ip_len, 440);
        assert_eq!(p.frame_len as usize, f.len());
        assert_eq!(p.payload.len(), 96 - 54);
    }

    #[test]
    fn ipv6_extension_headers_and_fragment() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ETH_IPV6.to_be_bytes());
        let l4 = udp(5000, 53, b"q");
        // hop-by-hop (8 bytes) -> fragment (8 bytes) -> UDP
        let plen = 8 + 8 + l4.len();
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(plen as u16).to_be_bytes());
        f.extend_from_slice(&[0, 64]); // next = hop-by-hop
        f.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        f.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]);
        f.extend_from_slice(&[17, 0, 0, 1, 0, 0, 0, 9]); // offset 0, more
        f.extend_from_slice(&l4);
        let p = d(&f).unwrap();
        assert_eq!(p.network, Network::Ipv6);
        assert_eq!(p.proto, 17);
        assert_eq!(p.dst_port, 53);
        assert_eq!(
            p.fragment,
            Some(Fragment {
                id: 9,
                offset: 0,
                more: true
            })
        );
        assert_eq!(p.ip_len as usize, 40 + plen);
    }

    #[test]
    fn arp_icmp_gre_vxlan() {
        let mut arp = vec![0u8; 12];
        arp.extend_from_slice(&ETH_ARP.to_be_bytes());
        arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        arp.extend_from_slice(&[0; 20]);
        assert_eq!(d(&arp).unwrap().network, Network::Arp);
        let f = eth_ipv4(
            [1, 1, 1, 1],
            [2, 2, 2, 2],
            1,
            &[8, 0, 0, 0, 0, 1, 0, 1],
            &[],
        );
        let p = d(&f).unwrap();
        assert_eq!((p.icmp_type, p.icmp_code), (8, 0));
        let f = eth_ipv4([1, 1, 1, 1], [2, 2, 2, 2], 47, &[0, 0, 0x65, 0x58], &[]);
        assert_eq!(d(&f).unwrap().tunnel, Tunnel::Gre);
        let f = eth_ipv4(
            [1, 1, 1, 1],
            [2, 2, 2, 2],
            17,
            &udp(999, 4789, &[8, 0, 0, 0, 0, 0, 1, 0]),
            &[],
        );
        assert_eq!(d(&f).unwrap().tunnel, Tunnel::Vxlan);
    }

    /// The IPv4 / TCP packet of `eth_ipv4` behind another link header.
    fn behind(header: &[u8]) -> Vec<u8> {
        let f = eth_ipv4([10, 0, 0, 1], [10, 0, 0, 2], 6, &tcp(1, 80, 0, 2, b""), &[]);
        [header, &f[14..]].concat()
    }

    #[test]
    fn bsd_loopback_ppp_and_cisco_hdlc_headers() {
        let cases: [(LinkType, &[u8]); 9] = [
            (LinkType::Null, &[2, 0, 0, 0]), // written little-endian
            (LinkType::Null, &[0, 0, 0, 2]), // written big-endian
            (LinkType::Loop, &[0, 0, 0, 2]), // always network order
            (LinkType::Ppp, &[0xff, 0x03, 0, 0x21]),
            (LinkType::Ppp, &[0, 0x21]), // no address / control
            (LinkType::Ppp, &[0x21]),    // protocol compressed
            (LinkType::CHdlc, &[0x0f, 0, 0x08, 0x00]),
            (LinkType::CHdlc, &[0x8f, 0, 0x08, 0x00]),
            (LinkType::RawIp, &[]),
        ];
        for (link, h) in cases {
            let f = behind(h);
            let p =
                decode(link, &f, f.len() as u32).unwrap_or_else(|e| panic!("{link:?} {h:?}: {e}"));
            assert_eq!(p.network, Network::Ipv4, "{link:?} {h:?}");
            assert_eq!((p.dst_port, p.ip_len), (80, 40), "{link:?} {h:?}");
        }
        // IPv6 families: 24 (NetBSD, OpenBSD), 28 (FreeBSD), 30 (macOS).
        let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        v6.extend_from_slice(&[0; 32]);
        v6.extend_from_slice(&udp(5, 6, b"")[..8]);
        for af in [24u32, 28, 30] {
            let f = [&af.to_le_bytes()[..], &v6].concat();
            assert_eq!(
                decode(LinkType::Null, &f, f.len() as u32).unwrap().network,
                Network::Ipv6
            );
            let f = [&af.to_be_bytes()[..], &v6].concat();
            assert_eq!(
                decode(LinkType::Loop, &f, f.len() as u32).unwrap().network,
                Network::Ipv6
            );
        }
        let f = [&[0xff, 0x03, 0, 0x57][..], &v6].concat();
        assert_eq!(
            decode(LinkType::Ppp, &f, f.len() as u32).unwrap().dst_port,
            6
        );
        // Not IP: PPP LCP, Cisco SLARP, an unknown family. Counted, no flow.
        for (link, h) in [
            (LinkType::Ppp, &[0xff, 0x03, 0xc0, 0x21][..]),
            (LinkType::CHdlc, &[0x8f, 0, 0x80, 0x35][..]),
            (LinkType::Null, &[7, 0, 0, 0][..]),
        ] {
            let f = behind(h);
            assert_eq!(
                decode(link, &f, f.len() as u32).unwrap().network,
                Network::Other
            );
        }
        // Every header cut short is an error, never a panic.
        for link in LinkType::ALL {
            for cut in 0..4 {
                let f = behind(&[0xff, 0x03, 0, 0x21]);
                let _ = decode(link, &f[..cut], cut as u32);
            }
        }
        assert_eq!(
            decode(LinkType::Null, &[2, 0], 2).unwrap_err().class,
            ErrorClass::Truncated
        );
    }

    #[test]
    fn same_fields_as_pnet() {
        use pnet_packet::Packet as _;
        use pnet_packet::ethernet::EthernetPacket;
        use pnet_packet::ipv4::Ipv4Packet;
        use pnet_packet::tcp::TcpPacket;
        let f = eth_ipv4(
            [10, 1, 2, 3],
            [10, 4, 5, 6],
            6,
            &tcp(40000, 443, 99, 0x12, b"hi"),
            &[],
        );
        let ours = d(&f).unwrap();
        let eth = EthernetPacket::new(&f).unwrap();
        let ip = Ipv4Packet::new(eth.payload()).unwrap();
        let t = TcpPacket::new(ip.payload()).unwrap();
        assert_eq!(&ours.src[12..], &ip.get_source().octets());
        assert_eq!(ours.ip_len, ip.get_total_length() as u32);
        assert_eq!(ours.src_port, t.get_source());
        assert_eq!(ours.tcp_flags, t.get_flags());
        assert_eq!(ours.payload, t.payload());
    }
}
