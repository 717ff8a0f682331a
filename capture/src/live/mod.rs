//! Live capture on AF_PACKET through TPACKET_V3 memory-mapped rings.
//!
//! # API (for the agent's collector)
//! ```no_run
//! use owlet_capture::live::{Capture, LiveConfig};
//! let cfg = LiveConfig { interfaces: vec!["eth0".into()], ..LiveConfig::default() };
//! let cap = Capture::start(cfg, |out| { /* Output::Flow / Summary / Alert */ let _ = out; })?;
//! let health = cap.stats();          // per interface, any time (atomics)
//! if let Some(f) = cap.failure() {   // a worker thread panicked or ended
//!     eprintln!("{f}");
//! }
//! let last = cap.stop();             // flushes every flow and the last summary
//! # Ok::<(), owlet_capture::live::CaptureError>(())
//! ```
//! - [`Capture::start`] does every step that can fail (filter compile,
//!   interface lookup, sockets, rings, promiscuous mode, fanout) on the
//!   calling thread and returns a [`CaptureError`] naming what is missing
//!   and the fix; only then are the worker threads started. Two
//!   exceptions, both reported in the stats and by an alert, never by a
//!   failed start: an interface that is administratively down is opened
//!   once it is up (a packet socket cannot join a fanout group on a down
//!   interface), and with [`LiveConfig::wait_for_interfaces`] an interface
//!   that does not exist yet is waited for.
//! - The sink receives [`Output::Flow`] and [`Output::Alert`] from the
//!   workers' threads as they appear, and one [`Output::Summary`] per
//!   interface and interval (the workers' partial aggregates merged). It
//!   must be cheap or hand off to a bounded queue. Link alerts
//!   (`capture_link_down`, `capture_link_up`) come from worker 0 of the
//!   interface, and from [`Capture::start`] itself for an interface that is
//!   missing, down or without carrier when the capture starts.
//! - [`Capture::stats`] / [`StatsHandle::snapshot`] read counters the
//!   workers publish after every ring block and (kernel counters, link
//!   state) every `stats_every` and at once after a socket error.
//! - [`Capture::failure`] reports the first worker that ended without
//!   being asked to (panic, or a socket error other than losing the
//!   link), with its reason; `workers_alive` in the stats counts the
//!   running ones.
//! - The sink is `Fn(Output) + Send + Sync + Clone + 'static` (each worker
//!   holds a clone). Dropping a [`Capture`] without `stop` tells the
//!   workers to end without waiting for them.
//! - Memory: `block_size` × `block_count` of ring per worker (default
//!   32 MiB), plus each engine's flow table, plus one table of
//!   crypto-mining pool bindings shared by all workers
//!   ([`crate::pools`], bounded by `pool_bindings_max`).
//!
//! # How
//! Per interface, `workers` sockets join one PACKET_FANOUT group in hash
//! mode with PACKET_FANOUT_FLAG_DEFRAG, so both directions of a flow (and
//! all its fragments) reach the same worker; each worker owns an
//! [`Engine`] fed with the packet's kernel timestamp, exactly as the pcap
//! reader feeds it. Each socket is created with protocol 0 (it receives
//! nothing), gets TPACKET_V3, its filter and its ring, and only then is
//! bound with ETH_P_ALL: no packet reaches it before the filter and the ring
//! are in place. Worker 0 is bound and joins the group before the others
//! are bound. A later worker receives everything between its bind and its
//! fanout join (one system call later): during that window a packet may
//! be seen twice, never lost.
//!
//! Fanout group ids are shared by every program of a network namespace,
//! and a socket that names the id of another program's group (same mode,
//! same interface) joins it silently and gets only part of the traffic.
//! So the first socket of an interface asks the kernel for an unused id
//! (PACKET_FANOUT_FLAG_UNIQUEID, Linux 4.12+) and reads it back; the
//! others join that id. Kernels without the flag get an id derived from
//! the process id, as before (best effort: not collision-free).
//!
//! Capture time is the packets' kernel timestamps; when a worker's ring is
//! quiet it moves its engine's time on from the clock (one second plus two
//! block timeouts behind it, so packets still waiting in a block arrive in
//! order), so flows end and summaries come on a quiet link too.
//!
//! The kernel takes the outermost VLAN tag off; the workers put it back in
//! front of the frame (and count its 4 bytes, as libpcap does) so the
//! decoder sees the frame as it was on the wire.
//!
//! # Link loss
//! When an interface goes down the kernel sets ENETDOWN on its packet
//! sockets; until that error is read every poll returns POLLERR at once
//! (a worker that ignored it spun at 100 % CPU). A worker reads and clears
//! the error (SO_ERROR), looks at the link, and goes back to polling with
//! its usual timeout: nothing arrives while the link is down, so it wakes
//! ten times a second (counted in `wakeups`). When the link comes back up
//! the kernel hooks the same sockets (and their fanout group) in again and
//! capture resumes on them. If the interface went away, or was deleted
//! and made again (a new index; the old sockets are unbound for good), the
//! workers close their sockets and open new ones once it is back, looking
//! for it with backoff (every 250 ms, doubling to 4 s) — the same path an
//! interface missing at start takes. Worker 0 of each interface keeps the
//! link state (`up`, `no_carrier`, `down`, `missing`), counts link losses,
//! and raises the link alerts. Raw-IP interfaces (tun, WireGuard, PPP:
//! no Ethernet header) get the filter compiled for their framing
//! ([`filter::compile_for`]) and are decoded as raw IP.
//!
//! Capabilities: CAP_NET_RAW only. Promiscuous mode goes through a packet
//! socket membership (PACKET_MR_PROMISC), which the kernel grants to the
//! CAP_NET_RAW socket; CAP_NET_ADMIN is not needed (tested), though an
//! EPERM there is still reported as a missing CAP_NET_ADMIN.
//!
//! All `unsafe` (socket options, ioctls, mmap, ring walking) is in the
//! `ring` module, with the invariants it relies on and a test for each.

mod link;
pub(crate) mod ring;

use std::collections::BTreeMap;
use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

pub use link::{LinkState, interface_names, link_state};

use crate::decode::{ErrorClass, LinkType};
use crate::engine::{Config, Engine, Output};
use crate::filter::{self, FilterError};
use crate::summary::{IntervalAgg, SummaryConfig};
use ring::{Control, Nic, Ring, Socket, walk_block};

/// Fanout ids for kernels without PACKET_FANOUT_FLAG_UNIQUEID.
static NEXT_GROUP: AtomicU16 = AtomicU16::new(0);

/// How long a worker waits for a block before it looks at the clock.
const POLL_MS: i32 = 100;
/// First and longest wait between two looks for a missing (or down)
/// interface's return.
const WAIT_MIN: Duration = Duration::from_millis(250);
const WAIT_MAX: Duration = Duration::from_secs(4);

/// Live capture settings.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// Interfaces to capture on (names).
    pub interfaces: Vec<String>,
    /// Worker threads per interface (each with its own engine).
    pub workers: usize,
    /// Put the interfaces in promiscuous mode while the capture runs (a
    /// packet socket membership, as libpcap does: the kernel grants it with
    /// CAP_NET_RAW alone and undoes it when the sockets close).
    pub promiscuous: bool,
    /// tcpdump-style filter ("" keeps everything); see [`crate::filter`].
    pub filter: String,
    /// Engine settings (the summary's interface name is set per interface).
    pub engine: Config,
    /// Ring block size in bytes (a multiple of the page size).
    pub block_size: u32,
    /// Ring blocks per worker.
    pub block_count: u32,
    /// A block is handed over at the latest this long after its first packet.
    pub block_timeout: Duration,
    /// How often workers read the kernel's counters and look at the link.
    pub stats_every: Duration,
    /// An interface that does not exist is waited for (state `missing`,
    /// a `capture_link_down` alert, looked for again with backoff) instead
    /// of failing the start with [`CaptureError::NoInterface`]: a sensor's
    /// configuration may name a NIC before it is there, and one wrong name
    /// must not stop capture on the others.
    pub wait_for_interfaces: bool,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            interfaces: Vec::new(),
            workers: 2,
            promiscuous: false,
            filter: String::new(),
            engine: Config::default(),
            block_size: 1 << 20,
            block_count: 32,
            block_timeout: Duration::from_millis(50),
            stats_every: Duration::from_secs(1),
            wait_for_interfaces: false,
        }
    }
}

/// Why a capture could not start.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// No interface of that name.
    #[error("interface {name} does not exist (interfaces here: {}); fix the capture interface list", available.join(", "))]
    NoInterface {
        /// The name asked for.
        name: String,
        /// The interfaces there are.
        available: Vec<String>,
    },
    /// A capability is missing.
    #[error(
        "{what} on {interface} needs {cap}: run as root or grant it (AmbientCapabilities={cap} in the systemd unit, or `setcap {setcap}+ep` on the binary)"
    )]
    Permission {
        /// What was attempted.
        what: &'static str,
        /// The interface.
        interface: String,
        /// The capability.
        cap: &'static str,
        /// Its setcap spelling.
        setcap: &'static str,
    },
    /// The filter does not compile.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// The interface's link type is not one owlet decodes.
    #[error("cannot capture on {interface}: {reason}")]
    LinkType {
        /// The interface.
        interface: String,
        /// Its hardware type and what owlet takes.
        reason: String,
    },
    /// The settings are unusable.
    #[error("capture settings: {0}")]
    Config(String),
    /// Another system error.
    #[error("{what} on {interface}: {source}")]
    Os {
        /// What was attempted.
        what: &'static str,
        /// The interface.
        interface: String,
        /// The error.
        source: io::Error,
    },
}

/// A worker that ended without being asked to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("capture worker {worker} on {interface} ended: {reason}")]
pub struct WorkerFailure {
    /// Its interface.
    pub interface: String,
    /// Its index on that interface.
    pub worker: usize,
    /// Panic message or error.
    pub reason: String,
}

/// Capture health of one interface (sums over its workers).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InterfaceStats {
    /// The interface.
    pub interface: String,
    /// Its link, as last looked at (at most `stats_every` ago).
    pub link: LinkState,
    /// How its frames are framed: "ethernet", "raw_ip" ("" until opened).
    pub link_type: &'static str,
    /// Times the link was lost (up, then down, without carrier or gone).
    pub link_losses: u64,
    /// Sockets opened again after the interface came back as a new one.
    pub reopens: u64,
    /// The last socket or open error (kept after recovery, for the record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Workers started.
    pub workers: usize,
    /// Workers still running.
    pub workers_alive: usize,
    /// Times the workers woke up to look for packets (a poll returned, or
    /// a wait for a missing link ended): about ten a second per worker on
    /// a quiet or dead link, never a busy loop.
    pub wakeups: u64,
    /// Packets the workers processed.
    pub packets: u64,
    /// Their wire bytes.
    pub bytes: u64,
    /// Packets the kernel passed through the filter (delivered + dropped).
    pub kernel_packets: u64,
    /// Packets the kernel dropped (ring full).
    pub kernel_drops: u64,
    /// Times a ring froze (all blocks in user space).
    pub ring_freezes: u64,
    /// Decode errors by class ([`ErrorClass::name`]).
    pub decode_errors: BTreeMap<&'static str, u64>,
    /// Live flows in the workers' tables.
    pub flows_active: u64,
    /// Flows created.
    pub flows_created: u64,
    /// Flows evicted because a table was full.
    pub flows_evicted: u64,
    /// Crypto-mining pool bindings (client, address from a DNS answer for
    /// a pool name) evicted because the capture's table was full.
    pub pool_bindings_evicted: u64,
    /// Ring blocks whose headers did not check out (walk stopped).
    pub bad_blocks: u64,
}

#[derive(Default)]
struct Counters {
    packets: AtomicU64,
    bytes: AtomicU64,
    kernel_packets: AtomicU64,
    kernel_drops: AtomicU64,
    freezes: AtomicU64,
    decode_errors: [AtomicU64; 4],
    flows_active: AtomicU64,
    flows_created: AtomicU64,
    flows_evicted: AtomicU64,
    pool_bindings_evicted: AtomicU64,
    bad_blocks: AtomicU64,
    wakeups: AtomicU64,
    alive: AtomicBool,
}

struct Iface {
    name: String,
    workers: Vec<Counters>,
    merger: Mutex<Merger>,
    /// [`LinkState`] as last looked at (written by worker 0 and at start).
    link: AtomicU8,
    /// 0 unknown, 1 Ethernet, 2 raw IP.
    link_type: AtomicU8,
    link_losses: AtomicU64,
    reopens: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// The fanout group of the workers' sockets: (interface index, id).
    group: Mutex<Option<(u32, u16)>>,
}

impl Iface {
    fn note_error(&self, e: impl std::fmt::Display) {
        if let Ok(mut l) = self.last_error.lock() {
            *l = Some(e.to_string());
        }
    }

    fn set_link_type(&self, link: LinkType) {
        let v = match link {
            LinkType::Ethernet => 1,
            _ => 2,
        };
        self.link_type.store(v, Ordering::Relaxed);
    }

    fn link_type(&self) -> Option<LinkType> {
        match self.link_type.load(Ordering::Relaxed) {
            1 => Some(LinkType::Ethernet),
            2 => Some(LinkType::RawIp),
            _ => None,
        }
    }

    /// Record the link as `now` (worker 0, or the start); a change that
    /// matters raises its alert through `sink`.
    fn observe<S: Fn(Output)>(&self, now: LinkState, sink: &S) {
        let prev = LinkState::from_u8(self.link.swap(now.as_u8(), Ordering::Relaxed));
        if prev == LinkState::Up && now != LinkState::Up {
            self.link_losses.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(a) = link::alert(&self.name, prev, now) {
            sink(Output::Alert(a));
        }
    }
}

/// How every socket of the capture is set up.
struct Plan {
    filter: String,
    block_size: u32,
    block_count: u32,
    retire_ms: u32,
    promiscuous: bool,
}

struct Shared {
    stop: AtomicBool,
    ifaces: Vec<Iface>,
    failure: Mutex<Option<WorkerFailure>>,
    /// Interface lookups in the capture's network namespace.
    ctl: Control,
    plan: Plan,
}

/// A cloneable reader of a capture's counters (for health tasks).
#[derive(Clone)]
pub struct StatsHandle(Arc<Shared>);

impl StatsHandle {
    /// Counters per interface, now.
    pub fn snapshot(&self) -> Vec<InterfaceStats> {
        self.0.ifaces.iter().map(iface_stats).collect()
    }

    /// The first worker that ended unexpectedly.
    pub fn failure(&self) -> Option<WorkerFailure> {
        self.0.failure.lock().map(|f| f.clone()).unwrap_or(None)
    }
}

fn iface_stats(i: &Iface) -> InterfaceStats {
    let mut s = InterfaceStats {
        interface: i.name.clone(),
        link: LinkState::from_u8(i.link.load(Ordering::Relaxed)),
        link_type: link::link_type_name(i.link_type()),
        link_losses: i.link_losses.load(Ordering::Relaxed),
        reopens: i.reopens.load(Ordering::Relaxed),
        last_error: i.last_error.lock().map(|e| e.clone()).unwrap_or(None),
        workers: i.workers.len(),
        ..InterfaceStats::default()
    };
    let mut errs = [0u64; 4];
    for c in &i.workers {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        s.workers_alive += c.alive.load(Ordering::Relaxed) as usize;
        s.wakeups += l(&c.wakeups);
        s.packets += l(&c.packets);
        s.bytes += l(&c.bytes);
        s.kernel_packets += l(&c.kernel_packets);
        s.kernel_drops += l(&c.kernel_drops);
        s.ring_freezes += l(&c.freezes);
        s.flows_active += l(&c.flows_active);
        s.flows_created += l(&c.flows_created);
        s.flows_evicted += l(&c.flows_evicted);
        s.pool_bindings_evicted += l(&c.pool_bindings_evicted);
        s.bad_blocks += l(&c.bad_blocks);
        for (e, a) in errs.iter_mut().zip(&c.decode_errors) {
            *e += l(a);
        }
    }
    s.decode_errors = ErrorClass::ALL
        .iter()
        .map(|c| (c.name(), errs[c.index()]))
        .collect();
    s
}

/// Merges the workers' interval aggregates into one summary per interval.
struct Merger {
    workers: usize,
    interval_ns: u64,
    cfg: SummaryConfig,
    pending: BTreeMap<u64, (IntervalAgg, usize, u64)>,
    flushed_until: u64,
}

impl Merger {
    /// Add one worker's aggregate; returns the summaries (and alerts) now complete.
    fn add(&mut self, agg: IntervalAgg, active: u64) -> Vec<Output> {
        let start = agg.start_ns;
        let mut out = Vec::new();
        if start < self.flushed_until {
            // Late (its worker was idle past a newer interval): on its own.
            self.emit(agg, active, &mut out);
            return out;
        }
        let e = self.pending.entry(start).or_insert_with(|| {
            (
                IntervalAgg {
                    start_ns: start,
                    ..IntervalAgg::default()
                },
                0,
                0,
            )
        });
        e.0.merge(agg);
        e.1 += 1;
        e.2 += active;
        // Complete when every worker reported, or older than a newer interval.
        let ready: Vec<u64> = self
            .pending
            .iter()
            .filter(|(s, (_, n, _))| {
                *n >= self.workers || s.saturating_add(self.interval_ns) < start
            })
            .map(|(s, _)| *s)
            .collect();
        for s in ready {
            if let Some((a, _, act)) = self.pending.remove(&s) {
                self.flushed_until = self.flushed_until.max(s + 1);
                self.emit(a, act, &mut out);
            }
        }
        out
    }

    fn emit(&self, agg: IntervalAgg, active: u64, out: &mut Vec<Output>) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let end = agg
            .start_ns
            .saturating_add(self.interval_ns)
            .min(now.max(agg.start_ns));
        let (s, alerts) = agg.finish(end, &self.cfg, active);
        out.push(Output::Summary(Box::new(s)));
        out.extend(alerts.into_iter().map(Output::Alert));
    }

    fn flush(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        for (_, (a, _, act)) in std::mem::take(&mut self.pending) {
            self.emit(a, act, &mut out);
        }
        out
    }
}

/// A running capture.
pub struct Capture {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    flush: Box<dyn Fn(Output) + Send + Sync>,
}

/// A worker's socket and ring, bound to one incarnation of its interface.
struct Open {
    sock: Socket,
    ring: Ring,
    link: LinkType,
    /// The interface index it is bound to.
    ifindex: u32,
}

struct Worker {
    iface: usize,
    index: usize,
    /// `None` while the interface is missing or down (or could not be opened).
    open: Option<Open>,
    /// A socket was opened before: the next one is a reopen.
    opened_before: bool,
    engine: Engine,
    /// The ring's block timeout (ms): how long a partly filled block can wait.
    tov_ms: i32,
}

fn os<'a>(what: &'static str, interface: &'a str) -> impl FnOnce(io::Error) -> CaptureError + 'a {
    move |source| CaptureError::Os {
        what,
        interface: interface.to_string(),
        source,
    }
}

/// EPERM / EACCES as the missing capability `cap` (`setcap` spelling),
/// anything else as an OS error.
fn perm_or_os<'a>(
    what: &'static str,
    interface: &'a str,
    (cap, setcap): (&'static str, &'static str),
) -> impl FnOnce(io::Error) -> CaptureError + 'a {
    move |e| match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => CaptureError::Permission {
            what,
            interface: interface.to_string(),
            cap,
            setcap,
        },
        _ => os(what, interface)(e),
    }
}

fn open_packet_socket(name: &str) -> Result<Socket, CaptureError> {
    Socket::open().map_err(perm_or_os(
        "opening a packet socket",
        name,
        ("CAP_NET_RAW", "cap_net_raw"),
    ))
}

/// Join the interface's fanout group, or make it: the first socket on an
/// interface (or on a new incarnation of it) asks the kernel for an
/// unused id, the others join that id.
fn join_group(sock: &Socket, ifindex: u32, group: &Mutex<Option<(u32, u16)>>) -> io::Result<()> {
    let mut g = group.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((index, id)) = *g
        && index == ifindex
    {
        return sock.join_fanout(id);
    }
    let id = match sock.create_fanout() {
        Ok(id) => id,
        // Before Linux 4.12: no PACKET_FANOUT_FLAG_UNIQUEID. An id of our
        // own making, unique in this process (not across programs).
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let seq = NEXT_GROUP.fetch_add(1, Ordering::Relaxed);
            let id =
                ((std::process::id() as u16) ^ (ifindex as u16).rotate_left(8)).wrapping_add(seq);
            sock.join_fanout(id)?;
            id
        }
        Err(e) => return Err(e),
    };
    *g = Some((ifindex, id));
    Ok(())
}

/// Open worker `index`'s socket and ring on interface `nic` (up).
fn open_worker(plan: &Plan, iface: &Iface, nic: &Nic, index: usize) -> Result<Open, CaptureError> {
    let name = iface.name.as_str();
    let link = link::link_of(nic.hw_type).map_err(|reason| CaptureError::LinkType {
        interface: name.to_string(),
        reason,
    })?;
    let prog = filter::compile_for(&plan.filter, link)?;
    let sock = open_packet_socket(name)?;
    sock.set_v3().map_err(os("selecting TPACKET_V3", name))?;
    sock.attach_filter(&prog.insns)
        .map_err(os("attaching the capture filter", name))?;
    let ring = sock
        .rx_ring(plan.block_size, plan.block_count, plan.retire_ms)
        .map_err(os("setting up the receive ring", name))?;
    if index == 0 && plan.promiscuous {
        sock.set_promiscuous(nic.index).map_err(perm_or_os(
            "promiscuous mode",
            name,
            ("CAP_NET_ADMIN", "cap_net_raw,cap_net_admin"),
        ))?;
    }
    sock.bind(nic.index)
        .map_err(os("binding the packet socket", name))?;
    join_group(&sock, nic.index, &iface.group).map_err(os("joining the fanout group", name))?;
    iface.set_link_type(link);
    Ok(Open {
        sock,
        ring,
        link,
        ifindex: nic.index,
    })
}

impl Capture {
    /// Open every socket and ring, then start the workers.
    pub fn start<S>(cfg: LiveConfig, sink: S) -> Result<Capture, CaptureError>
    where
        S: Fn(Output) + Send + Sync + Clone + 'static,
    {
        if cfg.interfaces.is_empty() {
            return Err(CaptureError::Config(
                "no interface to capture on: name at least one".into(),
            ));
        }
        if cfg.workers == 0 || cfg.workers > 64 {
            return Err(CaptureError::Config(format!(
                "{} workers per interface: use 1 to 64",
                cfg.workers
            )));
        }
        let page = 4096u32;
        if cfg.block_size < page || !cfg.block_size.is_multiple_of(page) || cfg.block_count == 0 {
            return Err(CaptureError::Config(format!(
                "ring blocks of {} bytes x {}: use a multiple of {page} bytes and at least one block",
                cfg.block_size, cfg.block_count
            )));
        }
        // Syntax errors now, whatever the interfaces' link types.
        filter::compile(&cfg.filter)?;
        let ctl = Control::open().map_err(os("opening a socket for interface lookups", ""))?;
        let plan = Plan {
            filter: cfg.filter.clone(),
            block_size: cfg.block_size,
            block_count: cfg.block_count,
            retire_ms: cfg.block_timeout.as_millis().clamp(1, u32::MAX as u128) as u32,
            promiscuous: cfg.promiscuous,
        };
        let iv = cfg
            .engine
            .summary_interval
            .as_nanos()
            .clamp(1, u64::MAX as u128) as u64;
        let mut workers = Vec::new();
        let mut ifaces = Vec::new();
        let mut initial = Vec::new();
        // One table of pool bindings for every worker of every interface:
        // a client's DNS answer and its pool flow hash to different workers
        // (and may cross different ports).
        let pools = Engine::pool_table(&cfg.engine);
        for (ii, name) in cfg.interfaces.iter().enumerate() {
            let nic = ctl
                .lookup(name)
                .map_err(os("looking up the interface", name))?;
            if nic.is_none() && !cfg.wait_for_interfaces {
                return Err(CaptureError::NoInterface {
                    name: name.clone(),
                    available: interface_names(),
                });
            }
            let mut engine_cfg = cfg.engine.clone();
            engine_cfg.emit_partials = true;
            engine_cfg.summary.interface = name.clone();
            let iface = Iface {
                name: name.clone(),
                workers: (0..cfg.workers).map(|_| Counters::default()).collect(),
                merger: Mutex::new(Merger {
                    workers: cfg.workers,
                    interval_ns: iv,
                    cfg: engine_cfg.summary.clone(),
                    pending: BTreeMap::new(),
                    flushed_until: 0,
                }),
                link: AtomicU8::new(LinkState::Unknown.as_u8()),
                link_type: AtomicU8::new(0),
                link_losses: AtomicU64::new(0),
                reopens: AtomicU64::new(0),
                last_error: Mutex::new(None),
                group: Mutex::new(None),
            };
            initial.push(link::state_of(nic.as_ref()));
            if let Some(n) = &nic {
                // A link type we cannot decode is a start error even
                // while the interface is down.
                let link = link::link_of(n.hw_type).map_err(|reason| CaptureError::LinkType {
                    interface: name.clone(),
                    reason,
                })?;
                filter::compile_for(&cfg.filter, link)?;
            }
            // Missing, or down (a socket cannot join a fanout group on a
            // down interface): opened later by the workers (see `look`).
            // Fail now if the capability to open it is missing.
            let up = nic.filter(|n| n.up);
            if up.is_none() {
                drop(open_packet_socket(name)?);
            }
            for w in 0..cfg.workers {
                let open = match &up {
                    Some(n) => Some(open_worker(&plan, &iface, n, w)?),
                    None => None,
                };
                workers.push(Worker {
                    iface: ii,
                    index: w,
                    opened_before: open.is_some(),
                    open,
                    engine: Engine::with_pools(
                        LinkType::Ethernet,
                        engine_cfg.clone(),
                        pools.clone(),
                    ),
                    tov_ms: cfg.block_timeout.as_millis().clamp(1, 10_000) as i32,
                });
            }
            ifaces.push(iface);
        }
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            ifaces,
            failure: Mutex::new(None),
            ctl,
            plan,
        });
        for (iface, state) in shared.ifaces.iter().zip(initial) {
            iface.observe(state, &sink);
        }
        let mut threads = Vec::new();
        for w in workers {
            shared.ifaces[w.iface].workers[w.index]
                .alive
                .store(true, Ordering::Relaxed);
            let sh = shared.clone();
            let sink = sink.clone();
            let every = cfg.stats_every;
            let tname = format!("cap-{}-{}", shared.ifaces[w.iface].name, w.index);
            let spawned = std::thread::Builder::new()
                .name(tname)
                .spawn(move || worker_main(w, sh, sink, every));
            match spawned {
                Ok(h) => threads.push(h),
                Err(e) => {
                    shared.stop.store(true, Ordering::Relaxed);
                    for h in threads {
                        let _ = h.join();
                    }
                    return Err(CaptureError::Os {
                        what: "starting a capture thread",
                        interface: String::new(),
                        source: e,
                    });
                }
            }
        }
        Ok(Capture {
            shared,
            threads,
            flush: Box::new(sink),
        })
    }

    /// Counters per interface, now.
    pub fn stats(&self) -> Vec<InterfaceStats> {
        self.stats_handle().snapshot()
    }

    /// A handle other tasks can keep to read the counters.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(self.shared.clone())
    }

    /// The first worker that ended without being asked to, if any.
    pub fn failure(&self) -> Option<WorkerFailure> {
        self.stats_handle().failure()
    }

    /// Stop the workers, report every flow (reason shutdown) and the last
    /// summaries; returns the final counters.
    pub fn stop(mut self) -> Vec<InterfaceStats> {
        self.shared.stop.store(true, Ordering::Relaxed);
        for h in std::mem::take(&mut self.threads) {
            let _ = h.join();
        }
        for i in &self.shared.ifaces {
            let outs = match i.merger.lock() {
                Ok(mut m) => m.flush(),
                Err(_) => Vec::new(),
            };
            for o in outs {
                (self.flush)(o);
            }
        }
        self.shared.ifaces.iter().map(iface_stats).collect()
    }
}

/// Dropping a capture without [`Capture::stop`] tells its workers to end
/// (they flush to the sink and close their sockets) without waiting.
impl Drop for Capture {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

fn worker_main<S: Fn(Output)>(mut w: Worker, sh: Arc<Shared>, sink: S, every: Duration) {
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| run(&mut w, &sh, &sink, every)));
    let c = &sh.ifaces[w.iface].workers[w.index];
    c.alive.store(false, Ordering::Relaxed);
    let reason = match r {
        Ok(Ok(())) if sh.stop.load(Ordering::Relaxed) => return,
        Ok(Ok(())) => "ended".to_string(),
        Ok(Err(e)) => format!("socket error: {e}"),
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            format!("panicked: {msg}")
        }
    };
    if let Ok(mut f) = sh.failure.lock()
        && f.is_none()
    {
        *f = Some(WorkerFailure {
            interface: sh.ifaces[w.iface].name.clone(),
            worker: w.index,
            reason,
        });
    }
}

fn deliver<S: Fn(Output)>(w: &mut Worker, iface: &Iface, sink: &S) {
    for o in w.engine.drain() {
        match o {
            Output::Partial(agg, active) => {
                let outs = match iface.merger.lock() {
                    Ok(mut m) => m.add(*agg, active),
                    Err(_) => Vec::new(),
                };
                for o in outs {
                    sink(o);
                }
            }
            o => sink(o),
        }
    }
}

fn publish(w: &Worker, c: &Counters) {
    let s = w.engine.stats();
    c.packets.store(s.frames, Ordering::Relaxed);
    c.bytes.store(s.bytes, Ordering::Relaxed);
    for (a, v) in c.decode_errors.iter().zip(s.decode_errors) {
        a.store(v, Ordering::Relaxed);
    }
    c.flows_active
        .store(w.engine.active_flows() as u64, Ordering::Relaxed);
    c.flows_created.store(s.flows_created, Ordering::Relaxed);
    c.flows_evicted.store(s.flows_evicted, Ordering::Relaxed);
    c.pool_bindings_evicted
        .store(s.pool_bindings_evicted, Ordering::Relaxed);
}

fn kernel_stats(sock: &Socket, c: &Counters) -> io::Result<()> {
    let k = sock.statistics()?;
    c.kernel_packets
        .fetch_add(k.packets as u64, Ordering::Relaxed);
    c.kernel_drops.fetch_add(k.drops as u64, Ordering::Relaxed);
    c.freezes.fetch_add(k.freezes as u64, Ordering::Relaxed);
    Ok(())
}

/// Hand every block the kernel has finished to the engine; true if there
/// was one.
fn drain<S: Fn(Output)>(w: &mut Worker, iface: &Iface, sink: &S, scratch: &mut Vec<u8>) -> bool {
    let c = &iface.workers[w.index];
    let mut got = false;
    loop {
        let Some(o) = w.open.as_mut() else {
            return got;
        };
        let (engine, link) = (&mut w.engine, o.link);
        let ethernet = link == LinkType::Ethernet;
        let Some((_, bad)) = o.ring.with_next_block(|b| {
            walk_block(b, |p| match p.vlan {
                Some((tci, tpid)) if ethernet && p.data.len() >= 12 => {
                    scratch.clear();
                    scratch.extend_from_slice(&p.data[..12]);
                    scratch.extend_from_slice(&tpid.to_be_bytes());
                    scratch.extend_from_slice(&tci.to_be_bytes());
                    scratch.extend_from_slice(&p.data[12..]);
                    engine.process_as(link, scratch, p.wire_len.saturating_add(4), p.ts_ns);
                }
                _ => engine.process_as(link, p.data, p.wire_len, p.ts_ns),
            })
        }) else {
            return got;
        };
        got = true;
        if bad {
            c.bad_blocks.fetch_add(1, Ordering::Relaxed);
        }
        publish(w, c);
        deliver(w, iface, sink);
    }
}

/// Look at the interface: publish its link state (worker 0), close a
/// socket whose interface went away or was made again, and open one when
/// the interface is there and up.
fn look<S: Fn(Output)>(w: &mut Worker, sh: &Shared, sink: &S, scratch: &mut Vec<u8>) {
    let iface = &sh.ifaces[w.iface];
    let nic = match sh.ctl.lookup(&iface.name) {
        Ok(n) => n,
        Err(e) => {
            iface.note_error(format!("looking up the interface: {e}"));
            return;
        }
    };
    if w.index == 0 {
        iface.observe(link::state_of(nic.as_ref()), sink);
    }
    if let Some(o) = &w.open {
        // Deleting an interface unbinds its sockets for good (their bound
        // index reads -1), even if one of the same name and index comes back.
        let bound = o.sock.bound_index().ok();
        let same = nic
            .as_ref()
            .is_some_and(|n| n.index == o.ifindex && bound == Some(n.index as i32));
        if !same {
            drain(w, iface, sink, scratch);
            if let Some(o) = w.open.take() {
                let _ = kernel_stats(&o.sock, &iface.workers[w.index]);
            }
        }
    }
    if w.open.is_none()
        && let Some(n) = nic.filter(|n| n.up)
    {
        match open_worker(&sh.plan, iface, &n, w.index) {
            Ok(o) => {
                if w.opened_before {
                    iface.reopens.fetch_add(1, Ordering::Relaxed);
                }
                w.opened_before = true;
                w.open = Some(o);
            }
            Err(e) => iface.note_error(e),
        }
    }
}

fn run<S: Fn(Output)>(w: &mut Worker, sh: &Shared, sink: &S, every: Duration) -> io::Result<()> {
    let iface = &sh.ifaces[w.iface];
    let c = &iface.workers[w.index];
    let mut scratch: Vec<u8> = Vec::new();
    let mut last_stats = Instant::now();
    // When to look at the link next, and the wait while there is no socket.
    let mut next_look = Instant::now() + every;
    let mut wait = WAIT_MIN;
    if w.open.is_none() {
        next_look = Instant::now();
    }
    let mut last_round = false;
    loop {
        let stopping = sh.stop.load(Ordering::Relaxed);
        let got = drain(w, iface, sink, &mut scratch);
        if last_stats.elapsed() >= every || stopping {
            last_stats = Instant::now();
            if let Some(o) = &w.open {
                kernel_stats(&o.sock, c)?;
            }
        }
        if !stopping && Instant::now() >= next_look {
            look(w, sh, sink, &mut scratch);
            if w.open.is_some() {
                wait = WAIT_MIN;
                next_look = Instant::now() + every;
            } else {
                next_look = Instant::now() + wait;
                wait = (wait * 2).min(WAIT_MAX);
            }
        }
        if last_round {
            break;
        }
        if stopping {
            // The block being filled is handed over at most one block
            // timeout after its first packet: wait for it, drain once more.
            last_round = true;
            if let Some(o) = &w.open {
                o.sock.poll(w.tov_ms.saturating_mul(2))?;
            }
            continue;
        }
        if !got {
            c.wakeups.fetch_add(1, Ordering::Relaxed);
            match &w.open {
                Some(o) => {
                    let ready = o.sock.poll(POLL_MS)?;
                    if ready.error {
                        // Read (and so clear) the error, or every poll
                        // returns at once; then look at the link now.
                        match o.sock.take_error()? {
                            Some(e) => {
                                let down = e.raw_os_error() == Some(libc::ENETDOWN);
                                iface.note_error(format!("socket error: {e}"));
                                if down && w.index == 0 {
                                    // Counted even if it is back already.
                                    iface.observe(LinkState::Down, sink);
                                }
                            }
                            // POLLERR without an error to read: never spin.
                            None => std::thread::sleep(Duration::from_millis(POLL_MS as u64)),
                        }
                        next_look = Instant::now();
                    }
                }
                None => {
                    let left = next_look.saturating_duration_since(Instant::now());
                    std::thread::sleep(left.clamp(Duration::from_millis(1), WAIT_MIN));
                }
            }
            // A quiet link: move capture time on so idle flows end and
            // intervals close, behind the wall clock by more than a block
            // can wait in the ring (packets still there stay in order).
            let lag = Duration::from_millis(1000 + 2 * w.tov_ms as u64);
            if let Some(now) = SystemTime::now()
                .checked_sub(lag)
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            {
                w.engine.tick(now.as_nanos() as u64);
                publish(w, c);
                deliver(w, iface, sink);
            }
        }
    }
    w.engine.finish();
    publish(w, c);
    deliver(w, iface, sink);
    Ok(())
}

#[cfg(test)]
mod tests;
