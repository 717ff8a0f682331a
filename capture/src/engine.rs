//! The per-worker pipeline: decode → fragments → flow update → application
//! names → interval summary. One [`Engine`] per capture worker thread; the
//! same code serves offline replays ([`crate::pcap`]) and live sources.
//!
//! Time is the packets' capture timestamps only (never the wall clock), so
//! a replayed file and a live capture of the same traffic give the same
//! flows and summaries. Timestamps that go backwards are treated as "now".
//!
//! Guarantees:
//! - [`Engine::process`] never panics on any input and does not allocate
//!   for a packet unless that packet yields a new application name or
//!   starts a TLS reassembly (bounded by `tls_reassembly_max` per flow);
//! - every frame is either counted into a flow, counted as ARP / non-IP, or
//!   counted as a decode error by class;
//! - every flow that leaves the table yields a record with its reason
//!   (FIN, RST, idle, active timeout slice, eviction, shutdown); evictions
//!   are also counted in [`Stats`] and in the interval summary;
//! - outputs wait in a queue the caller drains with [`Engine::drain`]; it
//!   holds at most the flows ended by one packet's sweep plus one summary;
//! - crypto-mining evidence comes only from the traffic itself and the
//!   configured `pool_addrs`: a DNS query for a pool name, a flow to an
//!   address a DNS answer for a pool name gave that same client within the
//!   answer's window ([`crate::pools`]; judged once per flow, when its
//!   scan accounting is done, so a DNS answer handled by another worker a
//!   moment later still counts), a TLS SNI or HTTP Host that is a pool
//!   name, or a Stratum login in the first client bytes. A pool name is
//!   never resolved by the sensor. A flow that names another server (its
//!   own SNI or Host), that is DNS itself, or that the server never answered
//!   is not evidence through a DNS answer.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::app::{self, AppError, DnsSection};
use crate::decode::{self, ErrorClass, LinkType, Network, Packet, Tunnel, tcp_flags};
use crate::flow::{Flow, FlowTable, Key, Slot, state};
use crate::pools::DnsPools;
use crate::summary::{
    CaptureAlert, IntervalAgg, MiningMatch, MiningVia, Summary, SummaryConfig, addr_ip,
};

/// Engine settings. [`Config::default`] gives the documented defaults.
#[derive(Clone, Debug)]
pub struct Config {
    /// Flows with no packet for this long end (default 15 s).
    pub idle_timeout: Duration,
    /// Flows older than this are reported in slices (default 60 s).
    pub active_timeout: Duration,
    /// After both FINs or a RST, a flow waits this long for stragglers
    /// (the last ACK) before it is reported (default 2 s).
    pub close_grace: Duration,
    /// Maximum live flows (default 1,000,000).
    pub max_flows: usize,
    /// Summary interval of capture time (default 60 s).
    pub summary_interval: Duration,
    /// HTTP paths are cut to this many bytes (default 64).
    pub http_path_max: usize,
    /// Bytes of a client's first TLS record buffered across segments (default 8 KiB).
    pub tls_reassembly_max: usize,
    /// Mining pool names (suffix match: "pool.example" matches
    /// "eu.pool.example"), matched against names in the traffic: DNS
    /// questions and answers, TLS SNI, HTTP Host. Never resolved here.
    pub pool_names: Vec<String>,
    /// Mining pool addresses: every flow to one is evidence.
    pub pool_addrs: Vec<IpAddr>,
    /// Most (client, address) bindings learned from DNS answers for pool
    /// names, shared by the engines of one capture (default 16,384; more
    /// evict the first to expire, counted in [`Stats`]).
    pub pool_bindings_max: usize,
    /// Summary / signature settings (interface name, top N, scan thresholds).
    pub summary: SummaryConfig,
    /// Emit [`Output::Partial`] aggregates instead of finished summaries
    /// (a live capture with several workers merges them).
    pub emit_partials: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            idle_timeout: Duration::from_secs(15),
            active_timeout: Duration::from_secs(60),
            close_grace: Duration::from_secs(2),
            max_flows: 1_000_000,
            summary_interval: Duration::from_secs(60),
            http_path_max: 64,
            tls_reassembly_max: 8 * 1024,
            pool_names: Vec::new(),
            pool_addrs: Vec::new(),
            pool_bindings_max: crate::pools::DEFAULT_MAX,
            summary: SummaryConfig::default(),
            emit_partials: false,
        }
    }
}

/// Why a flow record was reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// No packet for the idle timeout.
    IdleTimeout,
    /// A slice of a flow older than the active timeout (it goes on).
    ActiveTimeout,
    /// TCP FIN.
    TcpFin,
    /// TCP RST.
    TcpRst,
    /// Evicted because the table was full.
    Evicted,
    /// Capture stopped (end of file, shutdown) while the flow was open.
    Shutdown,
}

/// Application names found in a flow. Boxed in the flow only when present.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AppMeta {
    /// First DNS query name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_query: Option<String>,
    /// Its query type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_qtype: Option<u16>,
    /// Response code of the first response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_rcode: Option<u8>,
    /// Answers as "TYPE value" (A / AAAA address, CNAME target) or "TYPE name".
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_answers: Vec<String>,
    /// TLS server name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_sni: Option<String>,
    /// TLS ALPN protocols offered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls_alpn: Vec<String>,
    /// HTTP method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_method: Option<String>,
    /// HTTP Host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_host: Option<String>,
    /// HTTP path (no query string, truncated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_path: Option<String>,
    /// Stratum methods seen.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stratum_methods: Vec<&'static str>,
    #[serde(skip)]
    pub(crate) buf: Vec<u8>,
    #[serde(skip)]
    pub(crate) next_seq: u32,
}

/// DNS answers kept per flow.
pub const MAX_FLOW_ANSWERS: usize = 8;
/// Slots of the fragment table (direct-mapped).
pub const FRAG_SLOTS: usize = 4096;
/// A first fragment is remembered this long for its followers.
pub const FRAG_TTL_NS: u64 = 30_000_000_000;
/// Client payload segments the application parsers look at per flow.
pub const APP_TRIES: u8 = 4;

/// A flow record: one flow, or one slice of a long one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowRecord {
    /// Initiator address.
    pub src: IpAddr,
    /// Responder address.
    pub dst: IpAddr,
    /// Initiator port (0 without ports).
    pub src_port: u16,
    /// Responder port.
    pub dst_port: u16,
    /// IP protocol.
    pub protocol: u8,
    /// Outermost VLAN id.
    pub vlan: u16,
    /// Packets initiator → responder.
    pub packets_out: u64,
    /// Frame bytes initiator → responder (what tshark counts).
    pub bytes_out: u64,
    /// IP bytes initiator → responder (what NetFlow counts).
    pub ip_bytes_out: u64,
    /// Packets responder → initiator.
    pub packets_in: u64,
    /// Frame bytes responder → initiator.
    pub bytes_in: u64,
    /// IP bytes responder → initiator.
    pub ip_bytes_in: u64,
    /// TCP flags sent by the initiator.
    pub tcp_flags_out: u8,
    /// TCP flags sent by the responder.
    pub tcp_flags_in: u8,
    /// First ICMP type / code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp: Option<(u8, u8)>,
    /// The initiator's first packet was a SYN (else: first packet seen).
    pub initiator_by_syn: bool,
    /// First packet, ns since the epoch.
    pub first_ns: u64,
    /// Last packet, ns since the epoch.
    pub last_ns: u64,
    /// Why it was reported.
    pub end_reason: EndReason,
    /// Application names.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub app: Option<Box<AppMeta>>,
}

/// What the engine hands back.
#[derive(Clone, Debug)]
pub enum Output {
    /// A flow ended or was sliced.
    Flow(FlowRecord),
    /// An interval closed.
    Summary(Box<Summary>),
    /// A signature fired.
    Alert(CaptureAlert),
    /// An interval closed (with `emit_partials`): merge across workers,
    /// then call [`IntervalAgg::finish`].
    Partial(Box<IntervalAgg>, u64),
}

/// Cumulative counters since the engine started (capture health).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Frames given to the engine.
    pub frames: u64,
    /// Their wire bytes.
    pub bytes: u64,
    /// Decode errors by class (see [`ErrorClass::ALL`]).
    pub decode_errors: [u64; 4],
    /// ARP frames.
    pub arp: u64,
    /// Non-IP, non-ARP frames.
    pub non_ip: u64,
    /// IP fragments.
    pub fragments: u64,
    /// Later fragments attributed to their first fragment's flow.
    pub fragments_attributed: u64,
    /// Later fragments whose first fragment was unknown (counted in a portless flow).
    pub fragments_unattributed: u64,
    /// First fragments that overwrote another still-live entry (fragment flood).
    pub fragment_table_overwrites: u64,
    /// Flows created.
    pub flows_created: u64,
    /// Flows evicted because the table was full.
    pub flows_evicted: u64,
    /// Flow records emitted (including active-timeout slices).
    pub flow_records: u64,
    /// DNS messages that did not parse.
    pub dns_malformed: u64,
    /// TLS ClientHellos given up on (out of order, too big, malformed).
    pub tls_incomplete: u64,
    /// Frames whose timestamp went backwards.
    pub time_regressions: u64,
    /// (client, address) bindings made or renewed from DNS answers for pool names.
    pub pool_bindings: u64,
    /// Live bindings evicted because the shared table was full.
    pub pool_bindings_evicted: u64,
}

#[derive(Clone, Copy, Default)]
struct FragEntry {
    src: [u8; 16],
    dst: [u8; 16],
    id: u32,
    proto: u8,
    ports: (u16, u16),
    ts: u64,
    live: bool,
}

/// The per-worker pipeline.
pub struct Engine {
    cfg: Config,
    link: LinkType,
    table: FlowTable,
    frags: Box<[FragEntry]>,
    stats: Stats,
    agg: IntervalAgg,
    protocols: Box<[[u64; 2]; 258]>,
    out: Vec<Output>,
    now_ns: u64,
    interval: Option<u64>,
    last_sweep_s: u64,
    /// Capture time of the next second or interval boundary.
    next_check_ns: u64,
    pool_suffixes: Vec<String>,
    /// The configured `pool_addrs` only (nothing is ever learned into it).
    pool_addrs: HashSet<[u8; 16]>,
    pools: Arc<DnsPools>,
    hasher: foldhash::fast::FixedState,
}

fn mapped(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

impl Engine {
    /// A new engine for frames of link type `link`, with its own table of
    /// pool bindings.
    pub fn new(link: LinkType, cfg: Config) -> Engine {
        let pools = Engine::pool_table(&cfg);
        Engine::with_pools(link, cfg, pools)
    }

    /// The table of pool bindings [`Engine::with_pools`] takes: one per
    /// capture, shared by its engines.
    pub fn pool_table(cfg: &Config) -> Arc<DnsPools> {
        // Kept one interval past its window: a flow is judged at the latest
        // when its first interval closes.
        let keep = cfg.summary_interval + Duration::from_secs(1);
        Arc::new(DnsPools::new(cfg.pool_bindings_max, keep))
    }

    /// A new engine sharing `pools` with the other engines of a capture.
    pub fn with_pools(link: LinkType, cfg: Config, pools: Arc<DnsPools>) -> Engine {
        let pool_suffixes = cfg
            .pool_names
            .iter()
            .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
            .filter(|n| !n.is_empty())
            .collect();
        let pool_addrs = cfg.pool_addrs.iter().map(|a| mapped(*a)).collect();
        Engine {
            table: FlowTable::new(cfg.max_flows),
            frags: vec![FragEntry::default(); FRAG_SLOTS].into_boxed_slice(),
            stats: Stats::default(),
            agg: IntervalAgg::default(),
            protocols: Box::new([[0; 2]; 258]),
            out: Vec::new(),
            now_ns: 0,
            interval: None,
            last_sweep_s: 0,
            next_check_ns: 0,
            pool_suffixes,
            pool_addrs,
            pools,
            hasher: foldhash::fast::FixedState::with_seed(0x66726167),
            link,
            cfg,
        }
    }

    /// Cumulative counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Live flows.
    pub fn active_flows(&self) -> usize {
        self.table.len()
    }

    /// Take what the engine produced so far.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Output> {
        self.out.drain(..)
    }

    /// Process one frame captured at `ts_ns` (ns since the epoch);
    /// `frame_len` is its length on the wire.
    pub fn process(&mut self, data: &[u8], frame_len: u32, ts_ns: u64) {
        self.process_as(self.link, data, frame_len, ts_ns);
    }

    /// [`Engine::process`] for a frame of another link type (pcapng files
    /// may mix interfaces).
    pub fn process_as(&mut self, link: LinkType, data: &[u8], frame_len: u32, ts_ns: u64) {
        self.advance(ts_ns);
        let frame_len = frame_len.max(data.len() as u32);
        self.stats.frames += 1;
        self.stats.bytes += frame_len as u64;
        self.agg.frames.packets += 1;
        self.agg.frames.bytes += frame_len as u64;
        let p = match decode::decode(link, data, frame_len) {
            Ok(p) => p,
            Err(e) => {
                self.count_error(e.class);
                return;
            }
        };
        match p.network {
            Network::Arp => {
                self.stats.arp += 1;
                self.proto_count(256, frame_len);
                return;
            }
            Network::Other => {
                self.stats.non_ip += 1;
                self.proto_count(257, frame_len);
                return;
            }
            Network::Ipv4 | Network::Ipv6 => {}
        }
        self.proto_count(p.proto as usize, frame_len);
        match p.tunnel {
            Tunnel::Gre => self.agg.tunnels[0] += 1,
            Tunnel::Vxlan => self.agg.tunnels[1] += 1,
            Tunnel::None => {}
        }
        let (sport, dport) = match p.fragment {
            None => (p.src_port, p.dst_port),
            Some(f) => self.fragment(&p, f),
        };
        self.update_flow(&p, sport, dport);
    }

    #[inline(always)]
    fn proto_count(&mut self, i: usize, len: u32) {
        self.protocols[i][0] += 1;
        self.protocols[i][1] += len as u64;
    }

    fn count_error(&mut self, c: ErrorClass) {
        self.stats.decode_errors[c.index()] += 1;
        self.agg.decode_errors[c.index()] += 1;
    }

    fn frag_slot(&self, p: &Packet<'_>, id: u32) -> usize {
        use std::hash::BuildHasher;
        (self.hasher.hash_one((p.src, p.dst, p.proto, id)) as usize) % FRAG_SLOTS
    }

    fn fragment(&mut self, p: &Packet<'_>, f: decode::Fragment) -> (u16, u16) {
        self.stats.fragments += 1;
        self.agg.fragments[0] += 1;
        let slot = self.frag_slot(p, f.id);
        let e = &mut self.frags[slot];
        let same = e.live && e.src == p.src && e.dst == p.dst && e.proto == p.proto && e.id == f.id;
        if f.offset == 0 {
            if e.live && !same && self.now_ns.saturating_sub(e.ts) < FRAG_TTL_NS {
                self.stats.fragment_table_overwrites += 1;
            }
            *e = FragEntry {
                src: p.src,
                dst: p.dst,
                id: f.id,
                proto: p.proto,
                ports: (p.src_port, p.dst_port),
                ts: self.now_ns,
                live: true,
            };
            return (p.src_port, p.dst_port);
        }
        if same && self.now_ns.saturating_sub(e.ts) < FRAG_TTL_NS {
            let ports = e.ports;
            if !f.more {
                e.live = false;
            }
            self.stats.fragments_attributed += 1;
            self.agg.fragments[1] += 1;
            ports
        } else {
            self.stats.fragments_unattributed += 1;
            self.agg.fragments[2] += 1;
            (0, 0)
        }
    }

    fn update_flow(&mut self, p: &Packet<'_>, sport: u16, dport: u16) {
        let (key, from_a) = Key::new(p.vlan, p.proto, p.src, sport, p.dst, dport);
        let d = usize::from(!from_a);
        let syn_only =
            p.proto == 6 && p.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
        let mut slot = self.table.find(&key);
        if let Some(i) = slot {
            // A new connection on the ports of a closed one: report the old.
            let f = self.table.get(i);
            if syn_only && f.state & (state::RST | state::FIN_A | state::FIN_B) != 0 {
                let r = close_reason(f);
                self.end_flow(i, r);
                slot = None;
            }
        }
        let i = match slot {
            Some(i) => i,
            None => self.new_flow(&key, p, from_a),
        };
        let now = self.now_ns;
        let f = self.table.get_mut(i);
        if f.first_ns == 0 {
            f.first_ns = now;
        }
        f.last_ns = now;
        f.pkts[d] = f.pkts[d].wrapping_add(1);
        f.frame_bytes[d] += p.frame_len as u64;
        f.ip_bytes[d] += p.ip_len as u64;
        f.flags[d] |= p.tcp_flags;
        if p.tcp_flags & tcp_flags::FIN != 0 {
            f.state |= if from_a { state::FIN_A } else { state::FIN_B };
        }
        if p.tcp_flags & tcp_flags::RST != 0 {
            f.state |= state::RST;
        }
        if !p.payload.is_empty() && p.has_transport_header() {
            self.application(i, p, from_a);
        }
    }

    fn new_flow(&mut self, key: &Key, p: &Packet<'_>, from_a: bool) -> u32 {
        if self.table.is_full()
            && let Some(victim) = self.table.eviction_candidate()
        {
            self.stats.flows_evicted += 1;
            self.agg.evicted += 1;
            self.end_flow(victim, EndReason::Evicted);
        }
        let i = match self.table.lookup_or_insert(key) {
            Slot::Created(i) | Slot::Found(i) => i,
        };
        self.stats.flows_created += 1;
        self.agg.new_flows += 1;
        let synack = p.proto == 6
            && p.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == (tcp_flags::SYN | tcp_flags::ACK);
        let syn = p.proto == 6 && p.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
        // The sender of a SYN+ACK is the responder: the initiator is the other side.
        let a_initiates = from_a != synack;
        let f = self.table.get_mut(i);
        f.initiator = u8::from(!a_initiates);
        f.state |= state::NEW;
        if syn {
            f.state |= state::SYN_SEEN;
        }
        if matches!(p.proto, 1 | 58) {
            f.icmp = [p.icmp_type, p.icmp_code];
        }
        if !self.pool_addrs.is_empty() {
            let responder = if a_initiates { key.b } else { key.a };
            if self.pool_addrs.contains(&responder) {
                let (client, port) = if a_initiates {
                    (key.a, key.b_port)
                } else {
                    (key.b, key.a_port)
                };
                self.agg.mining_match(MiningMatch {
                    client: addr_ip(&client),
                    server: addr_ip(&responder),
                    port,
                    via: MiningVia::Address,
                    what: addr_ip(&responder).to_string(),
                });
            }
        }
        i
    }

    fn is_pool_name(&self, name: &str) -> bool {
        is_pool_name(&self.pool_suffixes, name)
    }

    fn application(&mut self, i: u32, p: &Packet<'_>, from_a: bool) {
        let (sport, dport) = (p.src_port, p.dst_port);
        let dns_port = |x: u16| x == 53 || x == 5353;
        if p.proto == 17 && (dns_port(sport) || dns_port(dport)) {
            self.dns(i, p, p.payload);
            return;
        }
        if p.proto != 6 {
            return;
        }
        if dns_port(sport) || dns_port(dport) {
            // DNS over TCP: one message with its 2-byte length, within one segment.
            if p.payload.len() > 2 {
                let len = u16::from_be_bytes([p.payload[0], p.payload[1]]) as usize;
                if let Some(msg) = p.payload.get(2..2 + len) {
                    self.dns(i, p, msg);
                }
            }
            return;
        }
        let f = self.table.get_mut(i);
        let from_initiator = u8::from(!from_a) == f.initiator;
        if !from_initiator || f.state & state::APP_DONE != 0 || f.app_tries >= APP_TRIES {
            return;
        }
        f.app_tries += 1;
        self.client_bytes(i, p);
    }

    fn client_bytes(&mut self, i: u32, p: &Packet<'_>) {
        let max_buf = self.cfg.tls_reassembly_max;
        let max_path = self.cfg.http_path_max;
        let f = self.table.get_mut(i);
        let reassembling = f.app.as_ref().is_some_and(|m| !m.buf.is_empty());
        let mut sni_found: Option<String> = None;
        let mut host_found: Option<String> = None;
        if reassembling {
            let m = f.app.get_or_insert_default();
            if p.tcp_seq != m.next_seq {
                // Out of order or a retransmission: give up rather than guess.
                m.buf = Vec::new();
                f.state |= state::APP_DONE;
                self.stats.tls_incomplete += 1;
                return;
            }
            let room = max_buf.saturating_sub(m.buf.len());
            let take = p.payload.len().min(room);
            m.buf.extend_from_slice(&p.payload[..take]);
            m.next_seq = m.next_seq.wrapping_add(take as u32);
            let buf = std::mem::take(&mut m.buf);
            match app::parse_client_hello(&buf) {
                Ok(ch) => {
                    set_hello(m, &ch);
                    sni_found = m.tls_sni.clone();
                    f.state |= state::APP_DONE;
                }
                Err(AppError::Incomplete) if buf.len() < max_buf && f.app_tries < APP_TRIES => {
                    m.buf = buf;
                }
                Err(_) => {
                    f.state |= state::APP_DONE;
                    self.stats.tls_incomplete += 1;
                }
            }
        } else if app::looks_like_tls(p.payload) {
            match app::parse_client_hello(p.payload) {
                Ok(ch) => {
                    let m = f.app.get_or_insert_default();
                    set_hello(m, &ch);
                    sni_found = m.tls_sni.clone();
                    f.state |= state::APP_DONE;
                }
                Err(AppError::Incomplete) if p.payload.len() < max_buf => {
                    let m = f.app.get_or_insert_default();
                    m.buf = p.payload.to_vec();
                    m.next_seq = p.tcp_seq.wrapping_add(p.payload.len() as u32);
                }
                Err(_) => {
                    f.state |= state::APP_DONE;
                    self.stats.tls_incomplete += 1;
                }
            }
        } else if let Ok(h) = app::parse_http_request(p.payload, max_path) {
            let m = f.app.get_or_insert_default();
            m.http_method = Some(text(h.method));
            m.http_path = Some(text(h.path));
            m.http_host = h.host.map(text);
            f.state |= state::APP_DONE;
            host_found = m.http_host.as_deref().map(host_name);
        } else if let Some(method) = app::parse_stratum(p.payload) {
            let m = f.app.get_or_insert_default();
            if !m.stratum_methods.contains(&method) {
                m.stratum_methods.push(method);
            }
            let (client, server, port) = self.endpoints(i);
            self.agg.mining_match(MiningMatch {
                client,
                server,
                port,
                via: MiningVia::Stratum,
                what: method.to_string(),
            });
        }
        let named = [
            (sni_found.as_deref().map(host_name), MiningVia::Sni),
            (host_found, MiningVia::HttpHost),
        ];
        for (name, via) in named {
            if let Some(name) = name
                && self.is_pool_name(&name)
            {
                let (client, server, port) = self.endpoints(i);
                self.agg.mining_match(MiningMatch {
                    client,
                    server,
                    port,
                    via,
                    what: name,
                });
            }
        }
    }

    fn endpoints(&self, i: u32) -> (IpAddr, IpAddr, u16) {
        let f = self.table.get(i);
        let k = &f.key;
        if f.a_initiated() {
            (addr_ip(&k.a), addr_ip(&k.b), k.b_port)
        } else {
            (addr_ip(&k.b), addr_ip(&k.a), k.a_port)
        }
    }

    fn dns(&mut self, i: u32, p: &Packet<'_>, msg: &[u8]) {
        let Engine {
            table,
            agg,
            pool_suffixes,
            pools,
            stats,
            now_ns,
            ..
        } = self;
        let f = table.get_mut(i);
        let is_pool = |name: &str| is_pool_name(pool_suffixes, name);
        let mut pool_question: Option<String> = None;
        // The pool name of the answer: its question, or a name of its CNAME
        // chain; and every address the answer gave, with its TTL.
        let mut pool_answer: Option<String> = None;
        let mut addrs = [([0u8; 16], 0u32); app::MAX_DNS_ANSWERS];
        let mut n_addrs = 0;
        let watching = !pool_suffixes.is_empty();
        let mut meta = f.app.take().unwrap_or_default();
        let res = app::parse_dns(msg, &mut |r| match r.section {
            DnsSection::Question => {
                let name = r.name.as_str();
                if is_pool(name) && pool_question.is_none() {
                    pool_question = Some(name.to_string());
                }
                if meta.dns_query.is_none() {
                    meta.dns_query = Some(name.to_string());
                    meta.dns_qtype = Some(r.rtype);
                }
            }
            DnsSection::Answer => {
                if meta.dns_answers.len() < MAX_FLOW_ANSWERS {
                    let v = match (r.addr, r.target) {
                        (Some(a), _) => format!("{} {}", rtype_name(r.rtype), addr_ip(&a)),
                        (None, Some(t)) => format!("{} {}", rtype_name(r.rtype), t.as_str()),
                        _ => format!("{} {}", rtype_name(r.rtype), r.name.as_str()),
                    };
                    meta.dns_answers.push(v);
                }
                if !watching {
                    return;
                }
                if pool_answer.is_none() {
                    let owner = r.name.as_str();
                    if is_pool(owner) {
                        pool_answer = Some(owner.to_string());
                    } else if let Some(t) = r.target.filter(|t| is_pool(t.as_str())) {
                        pool_answer = Some(t.as_str().to_string());
                    }
                }
                if let Some(a) = r.addr
                    && let Some(slot) = addrs.get_mut(n_addrs)
                {
                    *slot = (a, r.ttl);
                    n_addrs += 1;
                }
            }
        });
        match res {
            Ok(h) => {
                if h.response {
                    meta.dns_rcode.get_or_insert(h.rcode);
                    if let Some(name) = pool_question.or(pool_answer)
                        && h.rcode == 0
                    {
                        // The client is the one the answer goes to.
                        let learned = pools.learn(p.dst, &addrs[..n_addrs], &name, *now_ns);
                        stats.pool_bindings += learned.bound;
                        stats.pool_bindings_evicted += learned.evicted;
                    }
                } else {
                    // Count every query (not only the flow's first) for the summary.
                    let _ = app::parse_dns(msg, &mut |r| {
                        if r.section == DnsSection::Question {
                            agg.dns_names.add(&r.name.as_str().to_string(), 1, 0);
                        }
                    });
                    if let Some(q) = pool_question {
                        agg.mining_match(MiningMatch {
                            client: addr_ip(&p.src),
                            server: addr_ip(&p.dst),
                            port: p.dst_port,
                            via: MiningVia::Dns,
                            what: q,
                        });
                    }
                }
            }
            Err(_) => stats.dns_malformed += 1,
        }
        if *meta != AppMeta::default() {
            f.app = Some(meta);
        }
    }

    /// Advance capture time: sweep timeouts each second, close intervals.
    fn advance(&mut self, ts_ns: u64) {
        if ts_ns < self.now_ns {
            self.stats.time_regressions += 1;
        } else {
            self.now_ns = ts_ns;
        }
        if self.now_ns < self.next_check_ns {
            return; // the common case: no sweep and no interval boundary due
        }
        let iv = ns(self.cfg.summary_interval).max(1);
        let idx = self.now_ns / iv;
        let sec = self.now_ns / 1_000_000_000;
        self.next_check_ns = ((sec + 1) * 1_000_000_000).min((idx + 1).saturating_mul(iv));
        let second = sec != self.last_sweep_s;
        if second {
            self.last_sweep_s = sec;
            self.sweep(false);
        }
        match self.interval {
            None => {
                self.interval = Some(idx);
                self.agg.start_ns = idx * iv;
            }
            Some(cur) if idx > cur => {
                self.close_interval(idx * iv);
                self.interval = Some(idx);
            }
            Some(_) => {}
        }
        if second {
            // After the flows that ended or closed an interval were judged:
            // across a gap in capture time they still need their bindings.
            self.pools.purge(self.now_ns);
        }
    }

    /// Expire flows (idle, closed, active slices); with `all`, end every flow.
    fn sweep(&mut self, all: bool) {
        let now = self.now_ns;
        let idle = ns(self.cfg.idle_timeout);
        let active = ns(self.cfg.active_timeout);
        let grace = ns(self.cfg.close_grace);
        for i in 0..self.table.slab_len() {
            let f = self.table.get(i);
            if f.state & state::LIVE == 0 {
                continue;
            }
            // A flow that saw a FIN or RST ends for that reason, whether
            // its grace, its idle timeout or the end of input comes first.
            let fin_or_rst = f.state & (state::RST | state::FIN_A | state::FIN_B) != 0;
            if all {
                let r = if fin_or_rst {
                    close_reason(f)
                } else {
                    EndReason::Shutdown
                };
                self.end_flow(i, r);
                continue;
            }
            let quiet = now.saturating_sub(f.last_ns);
            let closed = f.state & state::RST != 0
                || f.state & (state::FIN_A | state::FIN_B) == (state::FIN_A | state::FIN_B);
            if closed && quiet >= grace {
                let r = close_reason(f);
                self.end_flow(i, r);
            } else if quiet >= idle {
                let r = if fin_or_rst {
                    close_reason(f)
                } else {
                    EndReason::IdleTimeout
                };
                self.end_flow(i, r);
            } else if f.first_ns != 0 && now.saturating_sub(f.first_ns) >= active {
                self.slice(i);
            }
        }
    }

    fn close_interval(&mut self, boundary: u64) {
        for i in 0..self.table.slab_len() {
            let f = self.table.get_mut(i);
            if f.state & state::LIVE == 0 {
                continue;
            }
            push_delta(&mut self.agg, f);
            if f.state & state::NEW != 0 {
                f.state &= !state::NEW;
                scan_account(&mut self.agg, f);
                pool_account(&mut self.agg, &self.pools, &self.pool_suffixes, f);
            }
        }
        for (p, c) in self.protocols.iter_mut().enumerate() {
            if c[0] > 0 {
                self.agg.protocols.add(&(p as u16), c[0], c[1]);
                *c = [0, 0];
            }
        }
        let agg = std::mem::replace(
            &mut self.agg,
            IntervalAgg {
                start_ns: boundary,
                ..IntervalAgg::default()
            },
        );
        let active = self.table.len() as u64;
        if self.cfg.emit_partials {
            self.out.push(Output::Partial(Box::new(agg), active));
        } else {
            let (s, alerts) = agg.finish(boundary, &self.cfg.summary, active);
            self.out.push(Output::Summary(Box::new(s)));
            self.out.extend(alerts.into_iter().map(Output::Alert));
        }
    }

    fn slice(&mut self, i: u32) {
        let f = self.table.get_mut(i);
        push_delta(&mut self.agg, f);
        let rec = record(f, EndReason::ActiveTimeout, f.app.clone());
        f.pkts = [0; 2];
        f.frame_bytes = [0; 2];
        f.ip_bytes = [0; 2];
        f.sum_pkts = [0; 2];
        f.sum_bytes = [0; 2];
        f.flags = [0; 2];
        f.first_ns = 0;
        self.stats.flow_records += 1;
        self.out.push(Output::Flow(rec));
    }

    fn end_flow(&mut self, i: u32, reason: EndReason) {
        let mut f = self.table.remove(i);
        push_delta(&mut self.agg, &mut f);
        if f.state & state::NEW != 0 {
            scan_account(&mut self.agg, &f);
            pool_account(&mut self.agg, &self.pools, &self.pool_suffixes, &f);
        }
        self.agg.ended += 1;
        if f.pkts == [0, 0] {
            return; // the empty remainder of a sliced flow
        }
        let app = f.app.take();
        self.stats.flow_records += 1;
        self.out.push(Output::Flow(record(&f, reason, app)));
    }

    /// Advance capture time to `now_ns` without a packet (a live source on
    /// a quiet link), so idle flows end and intervals close (empty ones
    /// too: every worker of a live capture reports every interval). Earlier
    /// times are ignored.
    pub fn tick(&mut self, now_ns: u64) {
        if now_ns > self.now_ns {
            self.advance(now_ns);
        }
    }

    /// End of input: report every flow and the last summary. A flow that
    /// saw a FIN or RST ends with that reason (as it would have a moment
    /// later on a live link); the others end with reason shutdown.
    pub fn finish(&mut self) {
        self.sweep(true);
        let iv = ns(self.cfg.summary_interval).max(1);
        if self.interval.is_some() {
            let end = self
                .now_ns
                .max(self.agg.start_ns)
                .min(self.agg.start_ns.saturating_add(iv));
            self.close_interval(end);
            self.interval = None;
            self.next_check_ns = 0;
        }
    }
}

#[cfg(test)]
impl FlowRecord {
    /// A one-packet flow record (60 frame bytes out) for tests.
    pub(crate) fn sample(src: IpAddr, dst: IpAddr, protocol: u8, ports: (u16, u16)) -> FlowRecord {
        FlowRecord {
            src,
            dst,
            src_port: ports.0,
            dst_port: ports.1,
            protocol,
            vlan: 0,
            packets_out: 1,
            bytes_out: 60,
            ip_bytes_out: 46,
            packets_in: 0,
            bytes_in: 0,
            ip_bytes_in: 0,
            tcp_flags_out: 0,
            tcp_flags_in: 0,
            icmp: None,
            initiator_by_syn: false,
            first_ns: 0,
            last_ns: 0,
            end_reason: EndReason::IdleTimeout,
            app: None,
        }
    }
}

/// `name` equals a pool name or is a subdomain of one.
fn is_pool_name(suffixes: &[String], name: &str) -> bool {
    suffixes.iter().any(|s| {
        name == s
            || (name.len() > s.len()
                && name.ends_with(s.as_str())
                && name.as_bytes()[name.len() - s.len() - 1] == b'.')
    })
}

fn close_reason(f: &Flow) -> EndReason {
    if f.state & state::RST != 0 {
        EndReason::TcpRst
    } else {
        EndReason::TcpFin
    }
}

fn set_hello(m: &mut AppMeta, ch: &app::ClientHello<'_>) {
    m.tls_sni = ch.sni.map(text);
    m.tls_alpn = ch.alpn.iter().flatten().map(|a| text(a)).collect();
}

/// Printable text of a short protocol field: non-printable bytes become `?`.
fn text(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '?'
            }
        })
        .collect()
}

fn rtype_name(t: u16) -> String {
    match t {
        1 => "A".into(),
        2 => "NS".into(),
        5 => "CNAME".into(),
        6 => "SOA".into(),
        12 => "PTR".into(),
        15 => "MX".into(),
        16 => "TXT".into(),
        28 => "AAAA".into(),
        33 => "SRV".into(),
        65 => "HTTPS".into(),
        t => format!("TYPE{t}"),
    }
}

fn push_delta(agg: &mut IntervalAgg, f: &mut Flow) {
    let k = f.key;
    let resp_port = if f.a_initiated() { k.b_port } else { k.a_port };
    for d in 0..2 {
        let p = f.pkts[d].wrapping_sub(f.sum_pkts[d]) as u64;
        let b = f.frame_bytes[d] - f.sum_bytes[d];
        if p == 0 && b == 0 {
            continue;
        }
        let (src, dst) = if d == 0 { (k.a, k.b) } else { (k.b, k.a) };
        agg.sources.add(&src, p, b);
        agg.destinations.add(&dst, p, b);
        agg.dst_ports.add(&(k.proto, resp_port), p, b);
        agg.conversations.add(&(k.a, k.b), p, b);
    }
    f.sum_pkts = f.pkts;
    f.sum_bytes = f.frame_bytes;
}

fn scan_account(agg: &mut IntervalAgg, f: &Flow) {
    if f.key.proto != 6 || f.state & state::SYN_SEEN == 0 {
        return;
    }
    let ini = f.initiator as usize;
    let resp = 1 - ini;
    let completed =
        f.flags[resp] & (tcp_flags::SYN | tcp_flags::ACK) == (tcp_flags::SYN | tcp_flags::ACK);
    let k = &f.key;
    let (src, dst, port) = if ini == 0 {
        (k.a, k.b, k.b_port)
    } else {
        (k.b, k.a, k.a_port)
    };
    agg.scan_attempt(src, dst, port, completed);
}

/// A flow from a client to an address a DNS answer for a pool name gave
/// that client, started inside the answer's window: `dns_answer` evidence.
/// Not when the flow is DNS, names a server of its own that is not a pool
/// (SNI, HTTP Host: the shared address serves someone else), or was never
/// answered (a SYN without SYN+ACK, a datagram without reply).
fn pool_account(agg: &mut IntervalAgg, pools: &DnsPools, suffixes: &[String], f: &Flow) {
    if pools.is_empty() {
        return;
    }
    let ini = f.initiator as usize;
    let resp = 1 - ini;
    let answered = if f.key.proto == 6 {
        let synack = tcp_flags::SYN | tcp_flags::ACK;
        f.flags[resp] & synack == synack
            || (f.state & (state::SYN_SEEN | state::RST) == 0 && f.pkts[resp] > 0)
    } else {
        f.pkts[resp] > 0
    };
    if !answered {
        return;
    }
    if let Some(m) = &f.app {
        let other = |name: &Option<String>| {
            name.as_deref()
                .is_some_and(|n| !is_pool_name(suffixes, &host_name(n)))
        };
        if m.dns_query.is_some() || other(&m.tls_sni) || other(&m.http_host) {
            return;
        }
    }
    let k = &f.key;
    let (client, server, port) = if ini == 0 {
        (k.a, k.b, k.b_port)
    } else {
        (k.b, k.a, k.a_port)
    };
    let start = if f.first_ns != 0 {
        f.first_ns
    } else {
        f.last_ns
    };
    if let Some(name) = pools.lookup(client, server, start) {
        agg.mining_match(MiningMatch {
            client: addr_ip(&client),
            server: addr_ip(&server),
            port,
            via: MiningVia::DnsAnswer,
            what: name,
        });
    }
}

/// A Host header or SNI as a DNS name: lower case, without a port or a
/// trailing dot.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let bare = if host.starts_with('[') {
        host // an IPv6 literal: never a pool name
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(name, _)| name)
    };
    bare.trim_end_matches('.').to_ascii_lowercase()
}

fn record(f: &Flow, reason: EndReason, app: Option<Box<AppMeta>>) -> FlowRecord {
    let k = &f.key;
    let (ini, resp) = (f.initiator as usize, 1 - f.initiator as usize);
    let (src, dst, sp, dp) = if ini == 0 {
        (k.a, k.b, k.a_port, k.b_port)
    } else {
        (k.b, k.a, k.b_port, k.a_port)
    };
    let app = app.map(|mut m| {
        m.buf = Vec::new();
        m
    });
    FlowRecord {
        src: addr_ip(&src),
        dst: addr_ip(&dst),
        src_port: sp,
        dst_port: dp,
        protocol: k.proto,
        vlan: k.vlan,
        packets_out: f.pkts[ini] as u64,
        bytes_out: f.frame_bytes[ini],
        ip_bytes_out: f.ip_bytes[ini],
        packets_in: f.pkts[resp] as u64,
        bytes_in: f.frame_bytes[resp],
        ip_bytes_in: f.ip_bytes[resp],
        tcp_flags_out: f.flags[ini],
        tcp_flags_in: f.flags[resp],
        icmp: matches!(k.proto, 1 | 58).then_some((f.icmp[0], f.icmp[1])),
        initiator_by_syn: f.state & state::SYN_SEEN != 0,
        first_ns: f.first_ns,
        last_ns: f.last_ns,
        end_reason: reason,
        app,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::tests::{client_hello, dns_query};
    use crate::decode::tcp_flags::{ACK, FIN, PSH, RST, SYN};
    use crate::decode::tests::{eth_ipv4, tcp, udp};

    const C: [u8; 4] = [10, 0, 0, 1];
    const S: [u8; 4] = [10, 0, 0, 2];
    const SEC: u64 = 1_000_000_000;
    const T0: u64 = 1_700_000_000 * SEC;

    fn engine(cfg: Config) -> Engine {
        Engine::new(LinkType::Ethernet, cfg)
    }

    fn tcpf(e: &mut Engine, from_client: bool, flags: u8, seq: u32, payload: &[u8], t: u64) {
        let (src, dst, sp, dp) = if from_client {
            (C, S, 40000, 443)
        } else {
            (S, C, 443, 40000)
        };
        let f = eth_ipv4(src, dst, 6, &tcp(sp, dp, seq, flags, payload), &[]);
        e.process(&f, f.len() as u32, t);
    }

    fn flows(e: &mut Engine) -> Vec<FlowRecord> {
        e.drain()
            .filter_map(|o| match o {
                Output::Flow(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    fn outputs(e: &mut Engine) -> (Vec<FlowRecord>, Vec<Summary>, Vec<CaptureAlert>) {
        let (mut f, mut s, mut a) = (vec![], vec![], vec![]);
        for o in e.drain() {
            match o {
                Output::Flow(x) => f.push(x),
                Output::Summary(x) => s.push(*x),
                Output::Alert(x) => a.push(x),
                Output::Partial(..) => {}
            }
        }
        (f, s, a)
    }

    fn handshake_and_close(e: &mut Engine, t: u64) {
        tcpf(e, true, SYN, 1, b"", t);
        tcpf(e, false, SYN | ACK, 9, b"", t + 1);
        tcpf(e, true, ACK, 2, b"", t + 2);
        tcpf(e, true, FIN | ACK, 2, b"", t + 3);
        tcpf(e, false, FIN | ACK, 10, b"", t + 4);
        tcpf(e, true, ACK, 3, b"", t + 5);
    }

    #[test]
    fn fin_close_keeps_the_last_ack_in_the_flow() {
        let mut e = engine(Config::default());
        handshake_and_close(&mut e, T0);
        assert!(flows(&mut e).is_empty(), "reported before the close grace");
        e.finish();
        let f = flows(&mut e);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].packets_out, f[0].packets_in), (4, 2));
        // The end of input comes within the close grace: still a FIN close.
        assert_eq!(f[0].end_reason, EndReason::TcpFin);
        let mut e = engine(Config::default());
        handshake_and_close(&mut e, T0);
        // Time moves on (another host's packet): the closed flow is reported as FIN.
        let other = eth_ipv4([1, 1, 1, 1], [2, 2, 2, 2], 17, &udp(1, 2, b""), &[]);
        e.process(&other, other.len() as u32, T0 + 3 * SEC);
        let f = flows(&mut e);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].end_reason, EndReason::TcpFin);
        assert!(f[0].initiator_by_syn);
        assert_eq!(f[0].tcp_flags_out, SYN | ACK | FIN);
        assert_eq!(f[0].src.to_string(), "10.0.0.1");
        assert_eq!(f[0].dst_port, 443);
    }

    /// At the end of input (a file's end, a capture's stop) a flow that saw
    /// a RST or FIN ends for that reason, as it would have a moment later
    /// on a live link; an open one ends with Shutdown.
    #[test]
    fn end_of_input_keeps_fin_and_rst_reasons() {
        let mut e = engine(Config::default());
        tcpf(&mut e, true, SYN, 1, b"", T0);
        tcpf(&mut e, false, RST | ACK, 0, b"", T0 + 1);
        let other = eth_ipv4(C, S, 6, &tcp(40001, 22, 5, ACK, b""), &[]);
        e.process(&other, other.len() as u32, T0 + 2);
        let half = eth_ipv4(C, S, 6, &tcp(40002, 25, 5, FIN | ACK, b""), &[]);
        e.process(&half, half.len() as u32, T0 + 3);
        e.finish();
        let mut got: Vec<(u16, EndReason)> = flows(&mut e)
            .iter()
            .map(|f| (f.dst_port, f.end_reason))
            .collect();
        got.sort_by_key(|g| g.0);
        assert_eq!(
            got,
            vec![
                (22, EndReason::Shutdown),
                (25, EndReason::TcpFin),
                (443, EndReason::TcpRst)
            ]
        );
    }

    #[test]
    fn syn_after_rst_starts_a_new_flow() {
        let mut e = engine(Config::default());
        tcpf(&mut e, true, SYN, 1, b"", T0);
        tcpf(&mut e, false, RST | ACK, 0, b"", T0 + 1);
        tcpf(&mut e, true, SYN, 100, b"", T0 + 2);
        let f = flows(&mut e);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].end_reason, EndReason::TcpRst);
        assert_eq!((f[0].packets_out, f[0].packets_in), (1, 1));
        assert_eq!(e.active_flows(), 1);
    }

    #[test]
    fn syn_ack_first_makes_the_other_side_initiator() {
        let mut e = engine(Config::default());
        tcpf(&mut e, false, SYN | ACK, 9, b"", T0);
        tcpf(&mut e, true, ACK, 2, b"", T0 + 1);
        e.finish();
        let f = flows(&mut e);
        assert_eq!(f[0].src.to_string(), "10.0.0.1");
        assert_eq!(f[0].dst_port, 443);
        assert!(!f[0].initiator_by_syn);
    }

    #[test]
    fn idle_and_active_timeouts_use_capture_time() {
        let mut e = engine(Config::default());
        tcpf(&mut e, true, ACK, 1, b"", T0);
        tcpf(&mut e, true, ACK, 1, b"", T0 + 14 * SEC);
        assert!(flows(&mut e).is_empty());
        let other = eth_ipv4([1, 1, 1, 1], [2, 2, 2, 2], 17, &udp(1, 2, b""), &[]);
        e.process(&other, other.len() as u32, T0 + 30 * SEC);
        let f = flows(&mut e);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].end_reason, EndReason::IdleTimeout);
        assert_eq!(f[0].packets_out, 2);

        // A long flow: a packet every 5 s for 150 s is reported in slices.
        let mut e = engine(Config::default());
        let mut sent = 0;
        for i in 0..=30 {
            tcpf(&mut e, true, ACK, 1, b"", T0 + i * 5 * SEC);
            sent += 1;
        }
        e.finish();
        let f = flows(&mut e);
        let reasons: Vec<_> = f.iter().map(|r| r.end_reason).collect();
        assert_eq!(
            reasons,
            vec![
                EndReason::ActiveTimeout,
                EndReason::ActiveTimeout,
                EndReason::Shutdown
            ]
        );
        assert_eq!(f.iter().map(|r| r.packets_out).sum::<u64>(), sent);
        assert!(f[0].last_ns - f[0].first_ns < 60 * SEC + 5 * SEC);
    }

    #[test]
    fn a_full_table_evicts_and_counts() {
        let mut e = engine(Config {
            max_flows: 10,
            ..Config::default()
        });
        for i in 0..25u16 {
            let f = eth_ipv4(C, S, 17, &udp(1000 + i, 53, b""), &[]);
            e.process(&f, f.len() as u32, T0 + i as u64);
        }
        assert_eq!(e.active_flows(), 10);
        assert_eq!(e.stats().flows_evicted, 15);
        let f = flows(&mut e);
        assert_eq!(f.len(), 15);
        assert!(f.iter().all(|r| r.end_reason == EndReason::Evicted));
        e.finish();
        let (f, s, _) = outputs(&mut e);
        assert_eq!(f.len(), 10);
        assert_eq!(s[0].flows_evicted, 15);
        assert_eq!(s[0].new_flows, 25);
    }

    fn frag(id: u16, offset: u16, more: bool, l4: &[u8]) -> Vec<u8> {
        let mut f = eth_ipv4(C, S, 17, l4, &[]);
        f[18..20].copy_from_slice(&id.to_be_bytes());
        let v = (offset & 0x1FFF) | if more { 0x2000 } else { 0 };
        f[20..22].copy_from_slice(&v.to_be_bytes());
        f
    }

    #[test]
    fn fragments_join_their_first_fragments_flow() {
        let mut e = engine(Config::default());
        // First fragment: UDP header claims 8 + 32 bytes, 16 are here.
        let mut first = udp(5000, 9999, &[1; 16]);
        first[4..6].copy_from_slice(&40u16.to_be_bytes());
        let a = frag(7, 0, true, &first);
        let b = frag(7, 3, false, &[2; 16]);
        let orphan = frag(8, 3, false, &[2; 16]);
        for (i, f) in [a, b, orphan].iter().enumerate() {
            e.process(f, f.len() as u32, T0 + i as u64);
        }
        e.finish();
        let f = flows(&mut e);
        let udp_flow = f.iter().find(|r| r.dst_port == 9999).unwrap();
        assert_eq!(udp_flow.packets_out, 2);
        let portless = f
            .iter()
            .find(|r| r.protocol == 17 && r.dst_port == 0)
            .unwrap();
        assert_eq!(portless.packets_out, 1);
        assert_eq!(e.stats().fragments, 3);
        assert_eq!(e.stats().fragments_attributed, 1);
        assert_eq!(e.stats().fragments_unattributed, 1);
    }

    #[test]
    fn fragment_flood_is_bounded_and_counted() {
        let mut e = engine(Config::default());
        let l4 = udp(5000, 9999, &[1; 16]);
        for id in 0..20_000u32 {
            let mut f = frag(id as u16, 0, true, &l4);
            f[26..30].copy_from_slice(&id.to_be_bytes()); // many sources
            e.process(&f, f.len() as u32, T0 + id as u64);
        }
        assert!(e.stats().fragment_table_overwrites > 10_000);
        assert_eq!(e.frags.len(), FRAG_SLOTS);
    }

    #[test]
    fn tls_client_hello_across_two_segments() {
        let hello = client_hello("split.example.net", &["h2"], 1500);
        let mut e = engine(Config::default());
        tcpf(&mut e, true, SYN, 0, b"", T0);
        tcpf(&mut e, false, SYN | ACK, 0, b"", T0 + 1);
        tcpf(&mut e, true, ACK | PSH, 1, &hello[..1000], T0 + 2);
        tcpf(&mut e, true, ACK | PSH, 1001, &hello[1000..], T0 + 3);
        e.finish();
        let f = flows(&mut e);
        let app = f[0].app.as_ref().unwrap();
        assert_eq!(app.tls_sni.as_deref(), Some("split.example.net"));
        assert_eq!(app.tls_alpn, vec!["h2"]);
        assert_eq!(e.stats().tls_incomplete, 0);

        // The second part out of order: given up, counted, no guess.
        let mut e = engine(Config::default());
        tcpf(&mut e, true, SYN, 0, b"", T0);
        tcpf(&mut e, true, ACK | PSH, 1, &hello[..1000], T0 + 2);
        tcpf(&mut e, true, ACK | PSH, 1500, &hello[1000..], T0 + 3);
        e.finish();
        let f = flows(&mut e);
        assert!(f[0].app.as_ref().is_none_or(|a| a.tls_sni.is_none()));
        assert_eq!(e.stats().tls_incomplete, 1);
    }

    #[test]
    fn summaries_per_interval_and_decode_errors() {
        let mut e = engine(Config::default());
        let q = eth_ipv4(C, S, 17, &udp(3333, 53, &dns_query(1, "a.example", 1)), &[]);
        for i in 0..3 {
            e.process(&q, q.len() as u32, T0 + i * SEC);
        }
        e.process(&q[..20], 100, T0 + 4 * SEC); // truncated
        // The next minute.
        let next = (T0 / (60 * SEC) + 1) * 60 * SEC;
        e.process(&q, q.len() as u32, next + SEC);
        let (_, s, _) = outputs(&mut e);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].packets, 4);
        assert_eq!(s[0].decode_errors, vec![("truncated".to_string(), 1)]);
        assert_eq!(s[0].top_dns_names[0].name, "a.example");
        assert_eq!(s[0].top_dns_names[0].count, 3);
        assert_eq!(s[0].top_sources_by_packets[0].key, "10.0.0.1");
        assert_eq!(s[0].top_sources_by_packets[0].packets, 3);
        assert_eq!(s[0].top_ports_by_packets[0].key, "53/udp");
        assert_eq!(e.stats().decode_errors[ErrorClass::Truncated.index()], 1);
        e.finish();
        let (_, s, _) = outputs(&mut e);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].packets, 1);
    }

    #[test]
    fn two_workers_merge_to_the_single_engine_summary() {
        let cfg = Config {
            emit_partials: true,
            ..Config::default()
        };
        let mut one = engine(cfg.clone());
        let mut w = [engine(cfg.clone()), engine(cfg.clone())];
        for i in 0..200u16 {
            // A scan: SYNs to 200 ports, spread over two workers by port.
            let f = eth_ipv4(C, S, 6, &tcp(40000, i, 1, SYN, b""), &[]);
            one.process(&f, f.len() as u32, T0 + i as u64);
            w[(i % 2) as usize].process(&f, f.len() as u32, T0 + i as u64);
        }
        let part = |e: &mut Engine| {
            e.finish();
            e.drain()
                .find_map(|o| match o {
                    Output::Partial(a, n) => Some((*a, n)),
                    _ => None,
                })
                .unwrap()
        };
        let (a1, n1) = part(&mut one);
        let (mut m, _) = part(&mut w[0]);
        let (b, _) = part(&mut w[1]);
        m.merge(b);
        let end = T0 + SEC;
        let (s1, al1) = a1.finish(end, &cfg.summary, n1);
        let (s2, al2) = m.finish(end, &cfg.summary, n1);
        assert_eq!(s1, s2);
        assert_eq!(al1, al2);
        assert_eq!(al1.len(), 1, "the scan fires");
    }

    #[test]
    fn mining_by_sni_and_address() {
        let cfg = Config {
            pool_names: vec!["pool.example".into()],
            pool_addrs: vec!["10.0.0.2".parse().unwrap()],
            ..Config::default()
        };
        let mut e = engine(cfg);
        let hello = client_hello("eu.pool.example", &[], 0);
        tcpf(&mut e, true, SYN, 0, b"", T0);
        tcpf(&mut e, true, ACK | PSH, 1, &hello, T0 + 1);
        e.finish();
        let (_, s, a) = outputs(&mut e);
        let vias: Vec<_> = s[0].mining.iter().map(|m| m.via).collect();
        assert_eq!(vias, vec![MiningVia::Address, MiningVia::Sni]);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].name, "crypto_mining");
        assert_eq!(a[0].subject, "10.0.0.1");
    }

    #[test]
    fn vlans_separate_flows_and_ipv4_fragments_keep_their_vlan() {
        let mut e = engine(Config::default());
        for vlan in [10u16, 20] {
            let f = eth_ipv4(C, S, 17, &udp(5000, 53, b""), &[vlan]);
            e.process(&f, f.len() as u32, T0);
        }
        e.finish();
        let mut v: Vec<u16> = flows(&mut e).iter().map(|r| r.vlan).collect();
        v.sort();
        assert_eq!(v, vec![10, 20]);
    }

    const A: [u8; 4] = [10, 0, 0, 1];
    const B: [u8; 4] = [10, 0, 0, 3];
    const RESOLVER: [u8; 4] = [10, 0, 0, 53];
    /// A shared address: the pool's, and a CDN's for everyone else.
    const SHARED: [u8; 4] = [192, 0, 2, 7];

    fn pool_config() -> Config {
        Config {
            pool_names: vec!["pool.example".into()],
            ..Config::default()
        }
    }

    /// A DNS response from the resolver to `client` giving `name` → `addr`
    /// with `ttl` seconds.
    fn answer(e: &mut Engine, client: [u8; 4], name: &str, addr: [u8; 4], ttl: u32, t: u64) {
        let mut m = crate::app::tests::dns_answer_a(9, name, addr);
        let at = m.len() - 4 - 2 - 4;
        m[at..at + 4].copy_from_slice(&ttl.to_be_bytes());
        let f = eth_ipv4(RESOLVER, client, 17, &udp(53, 33333, &m), &[]);
        e.process(&f, f.len() as u32, t);
    }

    /// A TCP connection `client` → `server:port`: handshake (the server
    /// answers when `answered`), then `payload` from the client.
    #[allow(clippy::too_many_arguments)]
    fn connect(
        e: &mut Engine,
        client: [u8; 4],
        sport: u16,
        server: [u8; 4],
        port: u16,
        answered: bool,
        payload: &[u8],
        t: u64,
    ) {
        let mut send = |src, dst, sp, dp, seq, flags, data: &[u8], dt| {
            let f = eth_ipv4(src, dst, 6, &tcp(sp, dp, seq, flags, data), &[]);
            e.process(&f, f.len() as u32, t + dt);
        };
        send(client, server, sport, port, 0, SYN, b"", 0);
        if !answered {
            return;
        }
        send(server, client, port, sport, 0, SYN | ACK, b"", 1);
        send(client, server, sport, port, 1, ACK, b"", 2);
        if !payload.is_empty() {
            send(client, server, sport, port, 1, ACK | PSH, payload, 3);
        }
    }

    fn evidence(s: &[Summary]) -> Vec<(MiningVia, String, String, u16, String)> {
        s.iter()
            .flat_map(|s| s.mining.iter())
            .map(|m| {
                (
                    m.via,
                    m.client.to_string(),
                    m.server.to_string(),
                    m.port,
                    m.what.clone(),
                )
            })
            .collect()
    }

    /// The user's report: what a pool name resolves to *on the sensor* (here
    /// `localhost`, resolved for real) says nothing about the traffic.
    #[test]
    fn an_address_the_pool_name_resolves_to_on_the_sensor_is_not_mining() {
        use std::net::ToSocketAddrs;
        let resolved = ("localhost", 0)
            .to_socket_addrs()
            .expect("localhost resolves on this machine (/etc/hosts)")
            .find_map(|a| match a.ip() {
                IpAddr::V4(v4) => Some(v4.octets()),
                IpAddr::V6(_) => None,
            })
            .expect("localhost has an IPv4 address on this machine (/etc/hosts)");
        let mut e = engine(Config {
            pool_names: vec!["localhost".into()],
            ..Config::default()
        });
        connect(&mut e, A, 40000, resolved, 3333, true, b"hello", T0);
        e.finish();
        let (_, s, a) = outputs(&mut e);
        assert_eq!(evidence(&s), vec![]);
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(e.stats().pool_bindings, 0);
    }

    #[test]
    fn a_dns_answer_binds_the_address_to_that_client_for_its_ttl() {
        let mut e = engine(pool_config());
        answer(&mut e, A, "xmr.pool.example", SHARED, 120, T0);
        assert_eq!(e.stats().pool_bindings, 1);
        // The client that asked, at once: evidence.
        connect(&mut e, A, 40001, SHARED, 14444, true, b"\x01\x02", T0 + SEC);
        // Another client of the same shared address: not.
        connect(
            &mut e,
            B,
            40002,
            SHARED,
            14444,
            true,
            b"\x01\x02",
            T0 + 2 * SEC,
        );
        // The same client to a site of its own on the shared address: not.
        let hello = client_hello("www.other.example", &["h2"], 0);
        connect(&mut e, A, 40003, SHARED, 443, true, &hello, T0 + 3 * SEC);
        // Never answered: not.
        connect(&mut e, A, 40004, SHARED, 22, false, b"", T0 + 4 * SEC);
        // After the TTL: not.
        connect(
            &mut e,
            A,
            40005,
            SHARED,
            14444,
            true,
            b"\x01",
            T0 + 200 * SEC,
        );
        e.finish();
        let (_, s, a) = outputs(&mut e);
        assert_eq!(
            evidence(&s),
            vec![(
                MiningVia::DnsAnswer,
                "10.0.0.1".into(),
                "192.0.2.7".into(),
                14444,
                "xmr.pool.example".into()
            )]
        );
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].name, "crypto_mining");
        assert_eq!(a[0].subject, "10.0.0.1");
        assert_eq!(
            a[0].message,
            "10.0.0.1 talks to a crypto-mining pool: connection to 192.0.2.7:14444, \
             which a DNS answer for xmr.pool.example gave it"
        );
        let evidence_label = a[0].labels.iter().find(|(k, _)| k == "evidence").unwrap();
        assert_eq!(
            evidence_label.1,
            "dns_answer xmr.pool.example 192.0.2.7:14444"
        );
    }

    #[test]
    fn a_cname_through_a_pool_name_binds_and_nxdomain_does_not() {
        let mut e = engine(pool_config());
        // innocent.example CNAME xmr.pool.example, A 192.0.2.7.
        let mut m = dns_query(9, "innocent.example", 1);
        m[2] = 0x81;
        m[3] = 0x80;
        m[7] = 2;
        let target: Vec<u8> = "xmr.pool.example"
            .split('.')
            .flat_map(|l| std::iter::once(l.len() as u8).chain(l.bytes()))
            .chain([0])
            .collect();
        m.extend_from_slice(&[0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 30]);
        m.extend_from_slice(&(target.len() as u16).to_be_bytes());
        let target_at = m.len();
        m.extend_from_slice(&target);
        m.extend_from_slice(&[0xC0, target_at as u8, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
        m.extend_from_slice(&SHARED);
        let f = eth_ipv4(RESOLVER, A, 17, &udp(53, 33333, &m), &[]);
        e.process(&f, f.len() as u32, T0);
        // An NXDOMAIN answer for a pool name binds nothing.
        let mut nx = crate::app::tests::dns_answer_a(10, "eu.pool.example", [192, 0, 2, 8]);
        nx[3] = 0x83;
        let f = eth_ipv4(RESOLVER, B, 17, &udp(53, 33334, &nx), &[]);
        e.process(&f, f.len() as u32, T0);
        connect(&mut e, A, 40001, SHARED, 3333, true, b"x", T0 + SEC);
        connect(&mut e, B, 40002, [192, 0, 2, 8], 3333, true, b"x", T0 + SEC);
        e.finish();
        let (_, s, _) = outputs(&mut e);
        let got: Vec<_> = evidence(&s).into_iter().map(|m| (m.0, m.1, m.4)).collect();
        assert_eq!(
            got,
            vec![(
                MiningVia::DnsAnswer,
                "10.0.0.1".into(),
                "xmr.pool.example".into()
            )]
        );
    }

    /// The kernel spreads a client's DNS flow and its pool flow over
    /// different workers: the binding one learns, the other uses.
    #[test]
    fn workers_of_one_capture_share_the_bindings() {
        let cfg = Config {
            emit_partials: true,
            ..pool_config()
        };
        let pools = Engine::pool_table(&cfg);
        let mut dns_worker = Engine::with_pools(LinkType::Ethernet, cfg.clone(), pools.clone());
        let mut flow_worker = Engine::with_pools(LinkType::Ethernet, cfg.clone(), pools);
        answer(&mut dns_worker, A, "xmr.pool.example", SHARED, 0, T0);
        connect(
            &mut flow_worker,
            A,
            40001,
            SHARED,
            14444,
            true,
            b"x",
            T0 + SEC,
        );
        flow_worker.finish();
        let partial = flow_worker
            .drain()
            .find_map(|o| match o {
                Output::Partial(a, _) => Some(a),
                _ => None,
            })
            .unwrap();
        let vias: Vec<_> = partial.mining.iter().map(|m| m.via).collect();
        assert_eq!(vias, vec![MiningVia::DnsAnswer]);
    }

    #[test]
    fn a_stratum_login_to_an_unknown_address_is_mining() {
        // No pool name or address configured at all.
        let mut e = engine(Config::default());
        let login = br#"{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"48edfHu7V9Z84YzzMa6fUueoELZ9ZRXq9VetWzYGzKt52XU5xvqgzYnDK9URnRoJMk1j8nLwEVsaSWJ4fhdUyZijBGUicoD","pass":"x","agent":"XMRig/6.21.0"}}"#;
        connect(&mut e, B, 40001, [203, 0, 113, 9], 10128, true, login, T0);
        e.finish();
        let (f, s, a) = outputs(&mut e);
        assert_eq!(
            evidence(&s),
            vec![(
                MiningVia::Stratum,
                "10.0.0.3".into(),
                "203.0.113.9".into(),
                10128,
                "login".into()
            )]
        );
        assert_eq!(a.len(), 1);
        assert_eq!(
            a[0].message,
            "10.0.0.3 talks to a crypto-mining pool: Stratum login to 203.0.113.9:10128"
        );
        // Only the method name leaves the decoder: no wallet, no agent.
        let json = serde_json::to_string(&f).unwrap();
        assert!(json.contains("\"stratum_methods\":[\"login\"]"), "{json}");
        assert!(!json.contains("48edf") && !json.contains("XMRig"), "{json}");
    }

    #[test]
    fn an_http_host_on_the_pool_list_is_mining() {
        let mut e = engine(pool_config());
        let get = b"GET /api HTTP/1.1\r\nHost: XMR.Pool.Example:8080\r\n\r\n";
        connect(&mut e, A, 40001, SHARED, 8080, true, get, T0);
        e.finish();
        let (_, s, a) = outputs(&mut e);
        let got: Vec<_> = evidence(&s).into_iter().map(|m| (m.0, m.4)).collect();
        assert_eq!(got, vec![(MiningVia::HttpHost, "xmr.pool.example".into())]);
        assert!(
            a[0].message
                .contains("HTTP to 192.0.2.7:8080 with Host xmr.pool.example")
        );
    }

    #[test]
    fn a_full_binding_table_evicts_and_counts() {
        let mut e = engine(Config {
            pool_bindings_max: 2,
            ..pool_config()
        });
        for i in 0..5u8 {
            answer(&mut e, A, "xmr.pool.example", [192, 0, 2, 10 + i], 300, T0);
        }
        assert_eq!(e.stats().pool_bindings, 5);
        assert_eq!(e.stats().pool_bindings_evicted, 3);
        assert_eq!(e.pools.len(), 2);
        // Bindings expire on the capture clock.
        let later = eth_ipv4(B, RESOLVER, 17, &udp(1, 2, b""), &[]);
        e.process(&later, later.len() as u32, T0 + 400 * SEC);
        assert!(e.pools.is_empty());
    }

    #[test]
    fn flow_stays_small() {
        // The slab entry; the index adds ~5 bytes per bucket.
        assert!(
            std::mem::size_of::<Flow>() <= 144,
            "{}",
            std::mem::size_of::<Flow>()
        );
    }
}
