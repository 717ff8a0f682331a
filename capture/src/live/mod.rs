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
//!   and the fix; only then are the worker threads started.
//! - The sink receives [`Output::Flow`] and [`Output::Alert`] from the
//!   workers' threads as they appear, and one [`Output::Summary`] per
//!   interface and interval (the workers' partial aggregates merged). It
//!   must be cheap or hand off to a bounded queue.
//! - [`Capture::stats`] / [`StatsHandle::snapshot`] read counters the
//!   workers publish after every ring block and (kernel counters) every
//!   `stats_every`.
//! - [`Capture::failure`] reports the first worker that ended without
//!   being asked to (panic, or a socket error), with its reason;
//!   `workers_alive` in the stats counts the running ones.
//! - The sink is `Fn(Output) + Send + Sync + Clone + 'static` (each worker
//!   holds a clone). Dropping a [`Capture`] without `stop` tells the
//!   workers to end without waiting for them.
//! - Memory: `block_size` × `block_count` of ring per worker (default
//!   32 MiB), plus each engine's flow table.
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
//! Capture time is the packets' kernel timestamps; when a worker's ring is
//! quiet it moves its engine's time on from the clock (one second plus two
//! block timeouts behind it, so packets still waiting in a block arrive in
//! order), so flows end and summaries come on a quiet link too.
//!
//! The kernel takes the outermost VLAN tag off; the workers put it back in
//! front of the frame (and count its 4 bytes, as libpcap does) so the
//! decoder sees the frame as it was on the wire.
//!
//! Capabilities: CAP_NET_RAW only. Promiscuous mode goes through a packet
//! socket membership (PACKET_MR_PROMISC), which the kernel grants to the
//! CAP_NET_RAW socket; CAP_NET_ADMIN is not needed (tested), though an
//! EPERM there is still reported as a missing CAP_NET_ADMIN.
//!
//! All `unsafe` (socket options, mmap, ring walking) is in the `ring`
//! module, with the invariants it relies on and a test for each.

pub(crate) mod ring;

use std::collections::BTreeMap;
use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::decode::{ErrorClass, LinkType};
use crate::engine::{Config, Engine, Output};
use crate::filter::{self, FilterError};
use crate::summary::{IntervalAgg, SummaryConfig};
use ring::{Ring, Socket, walk_block};

static NEXT_GROUP: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

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
    /// How often workers read the kernel's counters.
    pub stats_every: Duration,
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
    /// Workers started.
    pub workers: usize,
    /// Workers still running.
    pub workers_alive: usize,
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
    bad_blocks: AtomicU64,
    alive: AtomicBool,
}

struct Iface {
    name: String,
    workers: Vec<Counters>,
    merger: Mutex<Merger>,
}

struct Shared {
    stop: AtomicBool,
    ifaces: Vec<Iface>,
    failure: Mutex<Option<WorkerFailure>>,
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
        workers: i.workers.len(),
        ..InterfaceStats::default()
    };
    let mut errs = [0u64; 4];
    for c in &i.workers {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        s.workers_alive += c.alive.load(Ordering::Relaxed) as usize;
        s.packets += l(&c.packets);
        s.bytes += l(&c.bytes);
        s.kernel_packets += l(&c.kernel_packets);
        s.kernel_drops += l(&c.kernel_drops);
        s.ring_freezes += l(&c.freezes);
        s.flows_active += l(&c.flows_active);
        s.flows_created += l(&c.flows_created);
        s.flows_evicted += l(&c.flows_evicted);
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

struct Worker {
    iface: usize,
    index: usize,
    sock: Socket,
    ring: Ring,
    link: LinkType,
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

fn is_perm(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
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
        let prog = filter::compile(&cfg.filter)?;
        let all = pnet_datalink::interfaces();
        let iv = cfg
            .engine
            .summary_interval
            .as_nanos()
            .clamp(1, u64::MAX as u128) as u64;
        let mut workers = Vec::new();
        let mut ifaces = Vec::new();
        for (ii, name) in cfg.interfaces.iter().enumerate() {
            let Some(nic) = all.iter().find(|n| &n.name == name) else {
                return Err(CaptureError::NoInterface {
                    name: name.clone(),
                    available: all.iter().map(|n| n.name.clone()).collect(),
                });
            };
            let link = if nic.mac.is_some() || nic.is_loopback() {
                LinkType::Ethernet
            } else {
                LinkType::RawIp
            };
            if link != LinkType::Ethernet && !cfg.filter.trim().is_empty() {
                return Err(CaptureError::Config(format!(
                    "{name} carries raw IP packets; capture filters are written for Ethernet interfaces: remove the filter for it"
                )));
            }
            // Unique per capture and interface in this process (groups are
            // per network namespace; two captures must not share one).
            let seq = NEXT_GROUP.fetch_add(1, Ordering::Relaxed);
            let group = ((std::process::id() as u16) ^ (nic.index as u16).rotate_left(8))
                .wrapping_add(seq)
                .wrapping_add(ii as u16);
            let mut engine_cfg = cfg.engine.clone();
            engine_cfg.emit_partials = true;
            engine_cfg.summary.interface = name.clone();
            for w in 0..cfg.workers {
                let sock = Socket::open().map_err(|e| {
                    if is_perm(&e) {
                        CaptureError::Permission {
                            what: "opening a packet socket",
                            interface: name.clone(),
                            cap: "CAP_NET_RAW",
                            setcap: "cap_net_raw",
                        }
                    } else {
                        os("opening a packet socket", name)(e)
                    }
                })?;
                sock.set_v3().map_err(os("selecting TPACKET_V3", name))?;
                sock.attach_filter(&prog.insns)
                    .map_err(os("attaching the capture filter", name))?;
                let ring = sock
                    .rx_ring(
                        cfg.block_size,
                        cfg.block_count,
                        cfg.block_timeout.as_millis().clamp(1, u32::MAX as u128) as u32,
                    )
                    .map_err(os("setting up the receive ring", name))?;
                if w == 0 && cfg.promiscuous {
                    sock.set_promiscuous(nic.index).map_err(|e| {
                        if is_perm(&e) {
                            CaptureError::Permission {
                                what: "promiscuous mode",
                                interface: name.clone(),
                                cap: "CAP_NET_ADMIN",
                                setcap: "cap_net_raw,cap_net_admin",
                            }
                        } else {
                            os("promiscuous mode", name)(e)
                        }
                    })?;
                }
                sock.bind(nic.index)
                    .map_err(os("binding the packet socket", name))?;
                sock.join_fanout(group)
                    .map_err(os("joining the fanout group", name))?;
                workers.push(Worker {
                    iface: ii,
                    index: w,
                    sock,
                    ring,
                    link,
                    engine: Engine::new(link, engine_cfg.clone()),
                    tov_ms: cfg.block_timeout.as_millis().clamp(1, 10_000) as i32,
                });
            }
            ifaces.push(Iface {
                name: name.clone(),
                workers: (0..cfg.workers).map(|_| Counters::default()).collect(),
                merger: Mutex::new(Merger {
                    workers: cfg.workers,
                    interval_ns: iv,
                    cfg: engine_cfg.summary.clone(),
                    pending: BTreeMap::new(),
                    flushed_until: 0,
                }),
            });
        }
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            ifaces,
            failure: Mutex::new(None),
        });
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
}

fn kernel_stats(w: &Worker, c: &Counters) -> io::Result<()> {
    let k = w.sock.statistics()?;
    c.kernel_packets
        .fetch_add(k.packets as u64, Ordering::Relaxed);
    c.kernel_drops.fetch_add(k.drops as u64, Ordering::Relaxed);
    c.freezes.fetch_add(k.freezes as u64, Ordering::Relaxed);
    Ok(())
}

fn run<S: Fn(Output)>(w: &mut Worker, sh: &Shared, sink: &S, every: Duration) -> io::Result<()> {
    let iface = &sh.ifaces[w.iface];
    let c = &iface.workers[w.index];
    let mut scratch: Vec<u8> = Vec::new();
    let mut last_stats = Instant::now();
    let poll_ms = 100;
    let ethernet = w.link == LinkType::Ethernet;
    let mut last_round = false;
    loop {
        let stopping = sh.stop.load(Ordering::Relaxed);
        let mut got = false;
        loop {
            let engine = &mut w.engine;
            let Some((_, bad)) = w.ring.with_next_block(|b| {
                walk_block(b, |p| match p.vlan {
                    Some((tci, tpid)) if ethernet && p.data.len() >= 12 => {
                        scratch.clear();
                        scratch.extend_from_slice(&p.data[..12]);
                        scratch.extend_from_slice(&tpid.to_be_bytes());
                        scratch.extend_from_slice(&tci.to_be_bytes());
                        scratch.extend_from_slice(&p.data[12..]);
                        engine.process(&scratch, p.wire_len.saturating_add(4), p.ts_ns);
                    }
                    _ => engine.process(p.data, p.wire_len, p.ts_ns),
                })
            }) else {
                break;
            };
            got = true;
            if bad {
                c.bad_blocks.fetch_add(1, Ordering::Relaxed);
            }
            publish(w, c);
            deliver(w, iface, sink);
        }
        if last_stats.elapsed() >= every || stopping {
            last_stats = Instant::now();
            kernel_stats(w, c)?;
        }
        if last_round {
            break;
        }
        if stopping {
            // The block being filled is handed over at most one block
            // timeout after its first packet: wait for it, drain once more.
            last_round = true;
            w.sock.poll(w.tov_ms.saturating_mul(2))?;
            continue;
        }
        if !got {
            w.sock.poll(poll_ms)?;
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
