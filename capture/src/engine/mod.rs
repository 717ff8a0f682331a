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
pub use crate::flow::AppMeta;
use crate::flow::{Flow, FlowTable, Key, Slot, state};

mod application;
mod fragments;
use crate::pools::DnsPools;
use crate::summary::{
    CaptureAlert, IntervalAgg, MiningMatch, MiningVia, Summary, SummaryConfig, addr_ip,
};
use fragments::FragEntry;

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
mod tests;
