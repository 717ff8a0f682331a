//! Interval summaries: top talkers, protocol mix, new-flow rate, DNS names
//! most queried, and the scan and crypto-mining signatures.
//!
//! An [`IntervalAgg`] is fed by the engine (flow deltas, new flows, DNS
//! names, mining matches) and turned into a [`Summary`] plus alerts when the
//! interval closes. Aggregates from several workers [`IntervalAgg::merge`]
//! into one before [`IntervalAgg::finish`], so a multi-threaded live capture
//! reports one summary per interface.
//!
//! Bounded: every map stops taking new keys at [`MAX_KEYS`] entries and
//! counts what it could not key (`overflow`), so a flood of spoofed sources
//! costs a fixed amount of memory and is visible in the summary.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use serde::Serialize;

/// Distinct keys kept per map in one interval.
pub const MAX_KEYS: usize = 65_536;
/// Distinct targets remembered per scanning source.
pub const MAX_SCAN_TARGETS: usize = 4_096;
/// Mining matches kept as evidence per interval.
pub const MAX_MINING_EVIDENCE: usize = 256;
/// Mining matches described in an alert's message (all are in its labels).
pub const MINING_IN_MESSAGE: usize = 3;

/// Packets and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    /// Packets.
    pub packets: u64,
    /// Frame bytes.
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, p: u64, b: u64) {
        self.packets += p;
        self.bytes += b;
    }
}

/// A bounded counting map.
#[derive(Debug, Clone)]
pub struct Bounded<K> {
    map: HashMap<K, Count>,
    /// What arrived after the map was full.
    pub overflow: Count,
}

impl<K> Default for Bounded<K> {
    fn default() -> Self {
        Bounded {
            map: HashMap::new(),
            overflow: Count::default(),
        }
    }
}

impl<K: std::hash::Hash + Ord + Clone> Bounded<K> {
    /// Add packets and bytes to `k`.
    pub fn add(&mut self, k: &K, p: u64, b: u64) {
        if let Some(c) = self.map.get_mut(k) {
            c.add(p, b);
        } else if self.map.len() < MAX_KEYS {
            self.map.insert(
                k.clone(),
                Count {
                    packets: p,
                    bytes: b,
                },
            );
        } else {
            self.overflow.add(p, b);
        }
    }

    fn merge(&mut self, o: Bounded<K>) {
        for (k, c) in o.map {
            self.add(&k, c.packets, c.bytes);
        }
        self.overflow.add(o.overflow.packets, o.overflow.bytes);
    }

    fn top(&self, n: usize, by_bytes: bool) -> Vec<(K, Count)> {
        let mut v: Vec<(K, Count)> = self.map.iter().map(|(k, c)| (k.clone(), *c)).collect();
        let key = |c: &Count| {
            if by_bytes {
                (c.bytes, c.packets)
            } else {
                (c.packets, c.bytes)
            }
        };
        // Ties break on the key so the lists do not depend on hash order.
        v.sort_by(|x, y| key(&y.1).cmp(&key(&x.1)).then_with(|| x.0.cmp(&y.0)));
        v.truncate(n);
        v
    }
}

/// Per-source scan accounting.
#[derive(Debug, Default, Clone)]
pub struct ScanAcc {
    dsts: HashSet<[u8; 16]>,
    ports: HashSet<u16>,
    attempts: u64,
    completed: u64,
}

/// How a mining pool was recognised. Every way but `Address` is a name or
/// a protocol seen in the client's own traffic; none comes from resolving
/// a pool name on the sensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MiningVia {
    /// A DNS query for a name on the pool list (server: the resolver).
    Dns,
    /// A TLS ClientHello whose SNI is on the pool list.
    Sni,
    /// A flow to an address on the configured `pool_addrs` list.
    Address,
    /// A Stratum login method in the first bytes of a cleartext TCP flow.
    Stratum,
    /// A cleartext HTTP request whose Host is on the pool list.
    HttpHost,
    /// A flow to an address that a DNS answer for a pool name gave this
    /// same client shortly before (see [`crate::pools`]).
    DnsAnswer,
}

impl MiningVia {
    /// The name used in labels and JSON: `dns`, `sni`, `address`,
    /// `stratum`, `http_host`, `dns_answer`.
    pub fn as_str(self) -> &'static str {
        match self {
            MiningVia::Dns => "dns",
            MiningVia::Sni => "sni",
            MiningVia::Address => "address",
            MiningVia::Stratum => "stratum",
            MiningVia::HttpHost => "http_host",
            MiningVia::DnsAnswer => "dns_answer",
        }
    }

    /// Order in an alert message: what the flow itself said first.
    fn strength(self) -> u8 {
        match self {
            MiningVia::Stratum => 0,
            MiningVia::Sni => 1,
            MiningVia::HttpHost => 2,
            MiningVia::DnsAnswer => 3,
            MiningVia::Address => 4,
            MiningVia::Dns => 5,
        }
    }
}

/// One mining match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MiningMatch {
    /// The local host.
    pub client: IpAddr,
    /// The remote address (the resolver for a DNS match).
    pub server: IpAddr,
    /// Remote port.
    pub port: u16,
    /// How it matched.
    pub via: MiningVia,
    /// The pool name, the address, or the Stratum method name.
    pub what: String,
}

impl MiningMatch {
    /// The evidence in words, for an alert message.
    pub fn describe(&self) -> String {
        let server = owlet_proto::endpoint(&self.server.to_string(), self.port.into(), 6);
        let what = &self.what;
        match self.via {
            MiningVia::Dns => format!("DNS query for {what} to {server}"),
            MiningVia::DnsAnswer => {
                format!("connection to {server}, which a DNS answer for {what} gave it")
            }
            MiningVia::Sni => format!("TLS to {server} with SNI {what}"),
            MiningVia::HttpHost => format!("HTTP to {server} with Host {what}"),
            MiningVia::Stratum => format!("Stratum {what} to {server}"),
            MiningVia::Address => format!("connection to {server}, a configured pool address"),
        }
    }
}

/// Aggregates of one interval.
#[derive(Debug, Default, Clone)]
pub struct IntervalAgg {
    /// Interval start, ns since the epoch.
    pub start_ns: u64,
    /// Frames seen (including those that failed to decode).
    pub frames: Count,
    /// Decode errors by class index.
    pub decode_errors: [u64; 4],
    /// By IP protocol number; 256 = ARP, 257 = other non-IP.
    pub protocols: Bounded<u16>,
    /// Traffic sent by each address.
    pub sources: Bounded<[u8; 16]>,
    /// Traffic received by each address.
    pub destinations: Bounded<[u8; 16]>,
    /// Traffic of flows by (protocol, responder port), both directions.
    pub dst_ports: Bounded<(u8, u16)>,
    /// Traffic by address pair (lower, higher), both directions.
    pub conversations: Bounded<([u8; 16], [u8; 16])>,
    /// Flows that started in the interval.
    pub new_flows: u64,
    /// Flows evicted because the table was full.
    pub evicted: u64,
    /// Flows ended, by reason.
    pub ended: u64,
    /// DNS query names (count in `packets`).
    pub dns_names: Bounded<String>,
    /// Scan accounting per initiating source.
    pub scans: HashMap<[u8; 16], ScanAcc>,
    /// Sources not tracked for scans because the map was full.
    pub scan_overflow: u64,
    /// Mining matches (bounded) and how many there were in all.
    pub mining: Vec<MiningMatch>,
    /// All mining matches, including those beyond the evidence bound.
    pub mining_total: u64,
    /// Fragments seen / attributed / not attributable.
    pub fragments: [u64; 3],
    /// Tunnels seen: GRE, VXLAN packets.
    pub tunnels: [u64; 2],
}

impl IntervalAgg {
    /// Record a new flow attempt for scan accounting.
    pub fn scan_attempt(&mut self, src: [u8; 16], dst: [u8; 16], port: u16, completed: bool) {
        let n = self.scans.len();
        let acc = match self.scans.get_mut(&src) {
            Some(a) => a,
            None if n < MAX_KEYS => self.scans.entry(src).or_default(),
            None => {
                self.scan_overflow += 1;
                return;
            }
        };
        acc.attempts += 1;
        acc.completed += u64::from(completed);
        if acc.dsts.len() < MAX_SCAN_TARGETS {
            acc.dsts.insert(dst);
        }
        if acc.ports.len() < MAX_SCAN_TARGETS {
            acc.ports.insert(port);
        }
    }

    /// Record a mining match.
    pub fn mining_match(&mut self, m: MiningMatch) {
        self.mining_total += 1;
        if self.mining.len() < MAX_MINING_EVIDENCE && !self.mining.contains(&m) {
            self.mining.push(m);
        }
    }

    /// Fold another worker's aggregate of the same interval into this one.
    pub fn merge(&mut self, o: IntervalAgg) {
        self.start_ns = self.start_ns.min(o.start_ns);
        self.frames.add(o.frames.packets, o.frames.bytes);
        for i in 0..4 {
            self.decode_errors[i] += o.decode_errors[i];
        }
        self.protocols.merge(o.protocols);
        self.sources.merge(o.sources);
        self.destinations.merge(o.destinations);
        self.dst_ports.merge(o.dst_ports);
        self.conversations.merge(o.conversations);
        self.new_flows += o.new_flows;
        self.evicted += o.evicted;
        self.ended += o.ended;
        self.dns_names.merge(o.dns_names);
        for (src, acc) in o.scans {
            let e = self.scans.entry(src).or_default();
            e.attempts += acc.attempts;
            e.completed += acc.completed;
            e.dsts.extend(acc.dsts);
            e.ports.extend(acc.ports);
        }
        self.scan_overflow += o.scan_overflow;
        self.mining_total += o.mining_total;
        for m in o.mining {
            if self.mining.len() < MAX_MINING_EVIDENCE && !self.mining.contains(&m) {
                self.mining.push(m);
            }
        }
        for i in 0..3 {
            self.fragments[i] += o.fragments[i];
        }
        for i in 0..2 {
            self.tunnels[i] += o.tunnels[i];
        }
    }

    /// Close the interval: the summary and the alerts of signatures that fired.
    pub fn finish(
        &self,
        end_ns: u64,
        cfg: &SummaryConfig,
        active_flows: u64,
    ) -> (Summary, Vec<CaptureAlert>) {
        let n = cfg.top_n;
        let secs = (end_ns.saturating_sub(self.start_ns)) as f64 / 1e9;
        let talkers = |m: &Bounded<[u8; 16]>, by_bytes| -> Vec<Talker> {
            m.top(n, by_bytes)
                .into_iter()
                .map(|(k, c)| Talker {
                    key: addr_text(&k),
                    packets: c.packets,
                    bytes: c.bytes,
                })
                .collect()
        };
        let ports = |by_bytes| -> Vec<Talker> {
            self.dst_ports
                .top(n, by_bytes)
                .into_iter()
                .map(|((proto, port), c)| Talker {
                    key: format!("{}/{}", port, proto_name(proto)),
                    packets: c.packets,
                    bytes: c.bytes,
                })
                .collect()
        };
        let convs = |by_bytes| -> Vec<Talker> {
            self.conversations
                .top(n, by_bytes)
                .into_iter()
                .map(|((a, b), c)| Talker {
                    key: format!("{} <-> {}", addr_text(&a), addr_text(&b)),
                    packets: c.packets,
                    bytes: c.bytes,
                })
                .collect()
        };
        let mut protocol_mix: Vec<Talker> = self
            .protocols
            .top(usize::MAX, true)
            .into_iter()
            .map(|(p, c)| Talker {
                key: match p {
                    256 => "arp".into(),
                    257 => "non_ip".into(),
                    p => proto_name(p as u8),
                },
                packets: c.packets,
                bytes: c.bytes,
            })
            .collect();
        protocol_mix.truncate(32);
        let dns_top = self
            .dns_names
            .top(n, false)
            .into_iter()
            .map(|(name, c)| NameCount {
                name,
                count: c.packets,
            })
            .collect();
        let mut scanners: Vec<ScanOffender> = self
            .scans
            .iter()
            .filter_map(|(src, a)| {
                let targets = a.dsts.len().max(a.ports.len()) as u64;
                let fired = targets >= cfg.scan_min_targets
                    && (a.completed as f64) <= cfg.scan_max_completed_ratio * a.attempts as f64;
                fired.then(|| ScanOffender {
                    source: addr_ip(src),
                    destinations: a.dsts.len() as u64,
                    ports: a.ports.len() as u64,
                    attempts: a.attempts,
                    completed: a.completed,
                })
            })
            .collect();
        scanners.sort_by(|x, y| y.attempts.cmp(&x.attempts).then(x.source.cmp(&y.source)));
        let scan_sources = scanners.len() as u64;
        scanners.truncate(n);
        let mut decode_errors = Vec::new();
        for c in crate::decode::ErrorClass::ALL {
            let v = self.decode_errors[c.index()];
            if v > 0 {
                decode_errors.push((c.name().to_string(), v));
            }
        }
        let summary = Summary {
            interface: cfg.interface.clone(),
            start_ns: self.start_ns,
            end_ns,
            packets: self.frames.packets,
            bytes: self.frames.bytes,
            decode_errors,
            active_flows,
            new_flows: self.new_flows,
            new_flows_per_second: if secs > 0.0 {
                self.new_flows as f64 / secs
            } else {
                0.0
            },
            flows_evicted: self.evicted,
            fragments: self.fragments[0],
            fragments_unattributed: self.fragments[2],
            gre_packets: self.tunnels[0],
            vxlan_packets: self.tunnels[1],
            top_sources_by_bytes: talkers(&self.sources, true),
            top_sources_by_packets: talkers(&self.sources, false),
            top_destinations_by_bytes: talkers(&self.destinations, true),
            top_destinations_by_packets: talkers(&self.destinations, false),
            top_ports_by_bytes: ports(true),
            top_ports_by_packets: ports(false),
            top_conversations_by_bytes: convs(true),
            top_conversations_by_packets: convs(false),
            protocol_mix,
            top_dns_names: dns_top,
            scan_sources,
            scanners,
            mining_matches: self.mining_total,
            mining: self.mining.clone(),
        };
        let mut alerts = Vec::new();
        for s in &summary.scanners {
            alerts.push(CaptureAlert {
                name: "scan_detected",
                subject: s.source.to_string(),
                message: format!(
                    "{} tried {} connections to {} hosts / {} ports, {} completed",
                    s.source, s.attempts, s.destinations, s.ports, s.completed
                ),
                labels: vec![
                    ("source".into(), s.source.to_string()),
                    ("attempts".into(), s.attempts.to_string()),
                    ("destinations".into(), s.destinations.to_string()),
                    ("ports".into(), s.ports.to_string()),
                    ("completed".into(), s.completed.to_string()),
                    ("interface".into(), cfg.interface.clone()),
                ],
            });
        }
        let mut clients: Vec<IpAddr> = self.mining.iter().map(|m| m.client).collect();
        clients.sort();
        clients.dedup();
        for c in clients {
            let mut ev: Vec<&MiningMatch> = self.mining.iter().filter(|m| m.client == c).collect();
            ev.sort_by_key(|m| m.via.strength());
            let evidence = ev
                .iter()
                .map(|m| {
                    let server = owlet_proto::endpoint(&m.server.to_string(), m.port.into(), 6);
                    format!("{} {} {server}", m.via.as_str(), m.what)
                })
                .collect::<Vec<_>>()
                .join("; ");
            let shown: Vec<String> = ev
                .iter()
                .take(MINING_IN_MESSAGE)
                .map(|m| m.describe())
                .collect();
            let more = match ev.len().saturating_sub(MINING_IN_MESSAGE) {
                0 => String::new(),
                n => format!("; {n} more in the evidence label"),
            };
            alerts.push(CaptureAlert {
                name: "crypto_mining",
                subject: c.to_string(),
                message: format!(
                    "{c} talks to a crypto-mining pool: {}{more}",
                    shown.join("; ")
                ),
                labels: vec![
                    ("client".into(), c.to_string()),
                    ("evidence".into(), evidence),
                    ("interface".into(), cfg.interface.clone()),
                ],
            });
        }
        (summary, alerts)
    }
}

/// Summary and signature settings.
#[derive(Clone, Debug)]
pub struct SummaryConfig {
    /// Interface or file name the summary is about.
    pub interface: String,
    /// Entries per top list.
    pub top_n: usize,
    /// A source is a scanner when it reached at least this many distinct
    /// destinations or ports...
    pub scan_min_targets: u64,
    /// ...and at most this share of its attempts completed a handshake.
    pub scan_max_completed_ratio: f64,
}

impl Default for SummaryConfig {
    fn default() -> Self {
        SummaryConfig {
            interface: String::new(),
            top_n: 10,
            scan_min_targets: 50,
            scan_max_completed_ratio: 0.2,
        }
    }
}

/// One entry of a top list.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Talker {
    /// Address, "port/proto", or "a <-> b".
    pub key: String,
    /// Packets.
    pub packets: u64,
    /// Frame bytes.
    pub bytes: u64,
}

/// A DNS name and how often it was queried.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NameCount {
    /// The name.
    pub name: String,
    /// Queries seen.
    pub count: u64,
}

/// A source the scan signature flagged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScanOffender {
    /// The scanning address.
    pub source: IpAddr,
    /// Distinct destinations it tried.
    pub destinations: u64,
    /// Distinct destination ports it tried.
    pub ports: u64,
    /// TCP connection attempts (flows opened with a SYN).
    pub attempts: u64,
    /// Attempts the other side answered with SYN+ACK.
    pub completed: u64,
}

/// An interval's summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Interface or file.
    pub interface: String,
    /// Interval start, ns since the epoch (capture time).
    pub start_ns: u64,
    /// Interval end, ns.
    pub end_ns: u64,
    /// Frames seen.
    pub packets: u64,
    /// Frame bytes seen.
    pub bytes: u64,
    /// Decode errors by class.
    pub decode_errors: Vec<(String, u64)>,
    /// Flows in the table at the end of the interval.
    pub active_flows: u64,
    /// Flows that started in the interval.
    pub new_flows: u64,
    /// New flows per second of capture time.
    pub new_flows_per_second: f64,
    /// Flows evicted because the table was full.
    pub flows_evicted: u64,
    /// IP fragments seen.
    pub fragments: u64,
    /// Later fragments whose first fragment was not seen (no ports).
    pub fragments_unattributed: u64,
    /// GRE packets.
    pub gre_packets: u64,
    /// VXLAN packets.
    pub vxlan_packets: u64,
    /// Sources by bytes sent.
    pub top_sources_by_bytes: Vec<Talker>,
    /// Sources by packets sent.
    pub top_sources_by_packets: Vec<Talker>,
    /// Destinations by bytes received.
    pub top_destinations_by_bytes: Vec<Talker>,
    /// Destinations by packets received.
    pub top_destinations_by_packets: Vec<Talker>,
    /// Responder ports by bytes (both directions).
    pub top_ports_by_bytes: Vec<Talker>,
    /// Responder ports by packets.
    pub top_ports_by_packets: Vec<Talker>,
    /// Address pairs by bytes.
    pub top_conversations_by_bytes: Vec<Talker>,
    /// Address pairs by packets.
    pub top_conversations_by_packets: Vec<Talker>,
    /// Packets and bytes by protocol.
    pub protocol_mix: Vec<Talker>,
    /// DNS names most queried.
    pub top_dns_names: Vec<NameCount>,
    /// Sources the scan signature flagged (all, not only the listed ones).
    pub scan_sources: u64,
    /// The top scan offenders.
    pub scanners: Vec<ScanOffender>,
    /// Mining matches in the interval.
    pub mining_matches: u64,
    /// Mining evidence (bounded).
    pub mining: Vec<MiningMatch>,
}

/// An alert raised by a signature; the agent turns it into an `Alert` event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CaptureAlert {
    /// "scan_detected" or "crypto_mining".
    pub name: &'static str,
    /// The offending local address.
    pub subject: String,
    /// One line for the analyst.
    pub message: String,
    /// Evidence.
    pub labels: Vec<(String, String)>,
}

/// An address as an `IpAddr` (IPv4-mapped back to IPv4).
pub fn addr_ip(a: &[u8; 16]) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(*a);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// An address as text.
pub fn addr_text(a: &[u8; 16]) -> String {
    addr_ip(a).to_string()
}

/// Short protocol name ("tcp", "udp", "icmp"...) or the number.
pub fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        2 => "igmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        47 => "gre".into(),
        50 => "esp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        p => p.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u8) -> [u8; 16] {
        let mut x = [0u8; 16];
        x[10] = 0xFF;
        x[11] = 0xFF;
        x[12] = 10;
        x[15] = n;
        x
    }

    #[test]
    fn bounded_map_counts_overflow() {
        let mut m: Bounded<u32> = Bounded::default();
        for i in 0..(MAX_KEYS as u32 + 10) {
            m.add(&i, 1, 100);
        }
        assert_eq!(m.map.len(), MAX_KEYS);
        assert_eq!(
            m.overflow,
            Count {
                packets: 10,
                bytes: 1000
            }
        );
    }

    #[test]
    fn scan_fires_only_with_few_handshakes() {
        let cfg = SummaryConfig {
            scan_min_targets: 20,
            ..SummaryConfig::default()
        };
        let mut agg = IntervalAgg::default();
        for port in 1..=100 {
            agg.scan_attempt(a(1), a(2), port, port % 50 == 0);
        }
        // A busy but normal client: many connections, all complete.
        for i in 0..100u16 {
            agg.scan_attempt(a(3), a((i % 200) as u8), 443, true);
        }
        let (s, alerts) = agg.finish(60_000_000_000, &cfg, 0);
        assert_eq!(s.scan_sources, 1);
        assert_eq!(s.scanners[0].source.to_string(), "10.0.0.1");
        assert_eq!(s.scanners[0].ports, 100);
        assert_eq!(s.scanners[0].completed, 2);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].name, "scan_detected");
    }

    #[test]
    fn merge_adds_workers() {
        let mut x = IntervalAgg::default();
        let mut y = IntervalAgg::default();
        x.sources.add(&a(1), 1, 100);
        y.sources.add(&a(1), 2, 50);
        y.sources.add(&a(2), 1, 500);
        for p in 0..30 {
            x.scan_attempt(a(9), a(8), p, false);
            y.scan_attempt(a(9), a(8), 100 + p, false);
        }
        x.merge(y);
        let cfg = SummaryConfig {
            scan_min_targets: 50,
            ..SummaryConfig::default()
        };
        let (s, _) = x.finish(1, &cfg, 0);
        assert_eq!(s.top_sources_by_packets[0].key, "10.0.0.1");
        assert_eq!(s.top_sources_by_packets[0].packets, 3);
        assert_eq!(s.top_sources_by_bytes[0].key, "10.0.0.2");
        // Neither worker alone saw 50 ports; merged, the scan fires.
        assert_eq!(s.scan_sources, 1);
    }
}
