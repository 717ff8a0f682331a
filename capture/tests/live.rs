//! Live capture on a veth pair between two network namespaces the tests
//! create, and on a tun device in one (nothing is added to the root
//! namespace). Needs root, iproute2, tcpdump, setpriv (util-linux),
//! iputils-ping, python3 and the tun module (/dev/net/tun).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sched::{CloneFlags, setns};
use owlet_capture::engine::{Config, EndReason, FlowRecord, Output};
use owlet_capture::live::{Capture, CaptureError, LinkState, LiveConfig, StatsHandle};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Two namespaces joined by a veth pair: `a` (10.77.N.1, capture side) and `b` (10.77.N.2).
struct Pair {
    a: String,
    b: String,
    ifa: String,
    ifb: String,
    n: usize,
}

fn ip(args: &[&str]) {
    let o = Command::new("ip")
        .args(args)
        .output()
        .expect("ip runs (iproute2)");
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

impl Pair {
    fn new() -> Pair {
        let pair = Pair::namespaces();
        pair.link();
        pair
    }

    /// The two namespaces, without the veth pair yet.
    fn namespaces() -> Pair {
        let n = NEXT.fetch_add(1, Ordering::Relaxed) + (std::process::id() as usize % 50) * 4;
        let tag = format!("owl{}x{n}", std::process::id());
        let (a, b) = (format!("{tag}a"), format!("{tag}b"));
        let (ifa, ifb) = (format!("ol{n}a"), format!("ol{n}b"));
        let _ = Command::new("ip").args(["netns", "del", &a]).output();
        let _ = Command::new("ip").args(["netns", "del", &b]).output();
        ip(&["netns", "add", &a]);
        ip(&["netns", "add", &b]);
        for ns in [&a, &b] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        Pair {
            a,
            b,
            ifa,
            ifb,
            n: n % 250,
        }
    }

    /// Make the veth pair (again), address it and bring it up.
    fn link(&self) {
        let (a, b, ifa, ifb, net) = (&self.a, &self.b, &self.ifa, &self.ifb, self.n);
        ip(&[
            "link", "add", ifa, "netns", a, "type", "veth", "peer", "name", ifb, "netns", b,
        ]);
        ip(&[
            "-n",
            a,
            "addr",
            "add",
            &format!("10.77.{net}.1/24"),
            "dev",
            ifa,
        ]);
        ip(&[
            "-n",
            b,
            "addr",
            "add",
            &format!("10.77.{net}.2/24"),
            "dev",
            ifb,
        ]);
        for (ns, i) in [(a, ifa), (b, ifb)] {
            ip(&["-n", ns, "link", "set", i, "up"]);
        }
    }

    fn addr_a(&self) -> String {
        format!("10.77.{}.1", self.n)
    }
    /// Run `f` on a thread inside namespace `ns`.
    fn within<T: Send + 'static>(
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            let fd = File::open(&path).expect("namespace file");
            setns(&fd, CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.a]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.b]).output();
    }
}

type Sink = Arc<Mutex<Vec<Output>>>;

/// A small-ring config for `pair`'s capture side.
fn small(pair: &Pair, filter: &str, workers: usize) -> LiveConfig {
    LiveConfig {
        interfaces: vec![pair.ifa.clone()],
        workers,
        filter: filter.into(),
        block_size: 1 << 16,
        block_count: 8,
        block_timeout: Duration::from_millis(10),
        ..LiveConfig::default()
    }
}

fn start(pair: &Pair, filter: &str, workers: usize) -> (Capture, Sink) {
    start_with(pair, small(pair, filter, workers))
}

/// Start a capture inside namespace a, collecting every output.
fn start_with(pair: &Pair, cfg: LiveConfig) -> (Capture, Sink) {
    let got: Sink = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let cap = Pair::within(&pair.a, move || {
        Capture::start(cfg, move |o| g.lock().unwrap().push(o))
    })
    .join()
    .unwrap()
    .unwrap_or_else(|e| panic!("{e}"));
    (cap, got)
}

/// Run a child test (in `cmd`) and return the line it printed.
fn child_result(mut cmd: Command) -> String {
    let o = cmd.output().expect("setpriv runs (util-linux)");
    let out = String::from_utf8_lossy(&o.stdout);
    out.lines()
        .find(|l| l.starts_with("CHILD-RESULT"))
        .unwrap_or_else(|| panic!("child printed no result: {out}"))
        .to_string()
}

fn flows(got: &Sink) -> Vec<FlowRecord> {
    got.lock()
        .unwrap()
        .iter()
        .filter_map(|o| match o {
            Output::Flow(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

/// A UDP sender in namespace b: datagram i from source port 20000 + i
/// (one flow per datagram) to port 9999, and one to 9998 after each, until
/// `n` sent. Records the first index sent after `started` was set.
fn sender(pair: &Pair, n: u16, started: Arc<AtomicBool>) -> std::thread::JoinHandle<u16> {
    let dst = pair.addr_a();
    Pair::within(&pair.b, move || {
        let other = UdpSocket::bind("0.0.0.0:0").unwrap();
        let mut first_after = None;
        for i in 0..n {
            if first_after.is_none() && started.load(Ordering::SeqCst) {
                first_after = Some(i);
            }
            let s = UdpSocket::bind(("0.0.0.0", 20000 + i)).unwrap();
            s.send_to(&i.to_be_bytes(), (dst.as_str(), 9999)).unwrap();
            other.send_to(b"not me", (dst.as_str(), 9998)).unwrap();
            std::thread::sleep(Duration::from_micros(1500));
        }
        first_after.unwrap_or(n)
    })
}

/// Sending starts before the capture; every datagram sent after
/// `Capture::start` returned is seen exactly once (none lost while the
/// capture starts, none lost at low rate); and the filter runs in the
/// kernel: the 9998 datagrams never appear in the kernel's count.
#[test]
fn capture_start_loses_nothing_and_the_filter_runs_in_the_kernel() {
    let pair = Pair::new();
    // Resolve ARP first so the first datagrams are not held back.
    let a = pair.addr_a();
    let o = Command::new("ip")
        .args(["netns", "exec", &pair.b, "ping", "-c1", "-W2", &a])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let started = Arc::new(AtomicBool::new(false));
    let n = 400u16;
    let tx = sender(&pair, n, started.clone());
    std::thread::sleep(Duration::from_millis(60)); // the sender is running
    let (cap, got) = start(&pair, "udp dst port 9999", 2);
    started.store(true, Ordering::SeqCst);
    let first = tx.join().unwrap();
    assert!(
        first > 0 && first < n,
        "sending overlapped the start ({first})"
    );
    let stats = cap.stop();
    let fl = flows(&got);
    let mut by_port: BTreeMap<u16, u64> = BTreeMap::new();
    for f in &fl {
        assert_eq!(f.dst_port, 9999, "only the filter's packets: {f:?}");
        *by_port.entry(f.src_port).or_default() += f.packets_out + f.packets_in;
    }
    let missing: Vec<u16> = (first..n)
        .filter(|i| !by_port.contains_key(&(20000 + i)))
        .collect();
    assert!(
        missing.is_empty(),
        "datagrams sent after start, not seen: {missing:?}"
    );
    // Once each from the start on. Before it returned, the second worker
    // may get a datagram between its bind and its fanout join as well (the
    // module's documented window: twice, never lost).
    let wrong: Vec<(u16, u64)> = by_port
        .iter()
        .map(|(&port, &count)| (port - 20000, count))
        .filter(|&(i, count)| count != 1 && (i >= first || count > 2))
        .collect();
    assert!(
        wrong.is_empty(),
        "(datagram, times seen) once each after the start, at most twice before it: {wrong:?}"
    );
    let s = &stats[0];
    let seen: u64 = by_port.values().sum();
    assert_eq!(s.packets, seen);
    assert_eq!(s.kernel_drops, 0);
    // The kernel counted only what passed the filter (the 9998 datagrams
    // and the ping never reached the socket).
    assert_eq!(s.kernel_packets, seen, "{s:?}");
    assert_eq!(s.workers, 2);
    assert_eq!(s.workers_alive, 0);
}

/// tcpdump recording `iface` in `ns`, and its stderr (for its drop count).
///
/// Buffering matters on a loaded machine: with `--immediate-mode` and the
/// default 2 MiB buffer, libpcap's ring holds 8 frames of the default
/// snaplen, and a burst arriving while tcpdump is not scheduled is dropped
/// (the test was flaky for that); a smaller snaplen (`-s 2048`) made
/// libpcap stop handing over frames at the first one larger than it (a
/// veth GSO segment). So: default snaplen, a 64 MiB buffer, and blocks
/// retired by libpcap's 1 s timeout, which `stop_both` waits out.
fn tcpdump_in(
    ns: &str,
    iface: &str,
    out: &std::path::Path,
    filter: &str,
) -> (Child, BufReader<std::process::ChildStderr>) {
    let mut c = Command::new("ip")
        .args([
            "netns", "exec", ns, "tcpdump", "-i", iface, "-U", "-B", "65536", "-Z", "root", "-n",
            "-w",
        ])
        .arg(out)
        .arg(filter)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("tcpdump runs (apt-get install tcpdump)");
    let mut err = BufReader::new(c.stderr.take().unwrap());
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        if line.contains("listening on") {
            break;
        }
        line.clear();
    }
    assert!(
        line.contains("listening on"),
        "tcpdump did not start: {line}"
    );
    (c, err)
}

/// Stop the capture and then tcpdump (after the last block was handed
/// over); tcpdump must have dropped nothing, or the comparison is moot.
fn stop_both(
    cap: Capture,
    (mut td, mut err): (Child, BufReader<std::process::ChildStderr>),
    pcap: &std::path::Path,
) -> Vec<owlet_capture::live::InterfaceStats> {
    std::thread::sleep(Duration::from_millis(100));
    let stats = cap.stop();
    // tcpdump may lag behind on a loaded machine, and a SIGINT makes it
    // exit without reading what is still in its ring (uncounted): wait
    // until its file holds as many frames as the live capture saw.
    let seen: u64 = stats.iter().map(|s| s.packets).sum();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while frames_in(pcap) < seen && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(td.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .ok();
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    td.wait().unwrap();
    assert!(
        rest.lines()
            .any(|l| l.trim() == "0 packets dropped by kernel"),
        "tcpdump lost packets, so its recording cannot be compared: {rest}"
    );
    stats
}

/// Frames in a pcap file being written (a torn last record is not counted).
fn frames_in(pcap: &std::path::Path) -> u64 {
    let Ok(file) = std::fs::File::open(pcap) else {
        return 0;
    };
    let Ok(mut r) = pcap_file::pcap::PcapReader::new(file) else {
        return 0;
    };
    let mut n = 0;
    while let Some(Ok(_)) = r.next_packet() {
        n += 1;
    }
    n
}

/// The flows of a pcap file replayed offline.
fn replay_flows(pcap: &std::path::Path) -> Vec<FlowRecord> {
    let mut offline = Vec::new();
    owlet_capture::pcap::replay(pcap, Config::default(), |o| {
        if let Output::Flow(f) = o {
            offline.push(f)
        }
    })
    .unwrap();
    offline
}

type Conv = (u8, String, String, u16, u16, u64, u64, u64, u64);

fn convs(fl: &[FlowRecord]) -> Vec<Conv> {
    let mut v: Vec<Conv> = fl
        .iter()
        .map(|f| {
            (
                f.protocol,
                f.src.to_string(),
                f.dst.to_string(),
                f.src_port,
                f.dst_port,
                f.packets_out,
                f.bytes_out,
                f.packets_in,
                f.bytes_in,
            )
        })
        .collect();
    v.sort();
    v
}

/// The same traffic captured live (two workers) and recorded by tcpdump
/// then read offline gives the same flows, packets and bytes per direction.
#[test]
fn live_flows_equal_the_offline_replay_of_tcpdumps_recording() {
    let pair = Pair::new();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("live.pcap");
    let a = pair.addr_a();
    let td = tcpdump_in(&pair.a, &pair.ifa, &pcap, "ip");
    let (cap, got) = start(&pair, "ip", 2);
    // TCP: a listener in a, three connections from b with some bytes.
    let listener = Pair::within(&pair.a, || TcpListener::bind("0.0.0.0:8080").unwrap())
        .join()
        .unwrap();
    let srv = std::thread::spawn(move || {
        for _ in 0..3 {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            s.write_all(&vec![b'x'; n * 3]).unwrap();
        }
    });
    let a2 = a.clone();
    Pair::within(&pair.b, move || {
        for i in 0..3 {
            let mut s = TcpStream::connect((a2.as_str(), 8080)).unwrap();
            s.write_all(&vec![b'q'; 100 + i * 500]).unwrap();
            let mut back = Vec::new();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            s.read_to_end(&mut back).unwrap();
        }
        let u = UdpSocket::bind("0.0.0.0:0").unwrap();
        for p in 0..20u16 {
            u.send_to(&[1; 64], (a2.as_str(), 5000 + p % 5)).unwrap();
        }
    })
    .join()
    .unwrap();
    srv.join().unwrap();
    let o = Command::new("ip")
        .args(["netns", "exec", &pair.b, "ping", "-c3", "-i0.2", &a])
        .output()
        .unwrap();
    assert!(o.status.success());
    let stats = stop_both(cap, td, &pcap);
    let live = convs(&flows(&got));
    let offline = replay_flows(&pcap);
    let offline = convs(&offline);
    assert!(live.len() >= 9, "3 TCP, 5 UDP, ICMP: {live:?}");
    assert_eq!(live, offline);
    assert_eq!(stats[0].kernel_drops, 0);
    // One merged summary per interval (60 s, aligned: the test may straddle
    // two), together counting every packet once.
    let per_interval = summary_packets(&got);
    assert!(
        per_interval.len() <= 2 && per_interval.values().all(|v| v.len() == 1),
        "{per_interval:?}"
    );
    let total: u64 = per_interval.values().flatten().map(|(_, p)| p).sum();
    assert_eq!(total, stats[0].packets);
}

/// Summaries by interval start: (interface, packets) each.
fn summary_packets(got: &Sink) -> BTreeMap<u64, Vec<(String, u64)>> {
    let mut m: BTreeMap<u64, Vec<(String, u64)>> = BTreeMap::new();
    for o in got.lock().unwrap().iter() {
        if let Output::Summary(s) = o {
            m.entry(s.start_ns)
                .or_default()
                .push((s.interface.clone(), s.packets));
        }
    }
    m
}

#[test]
fn a_missing_interface_is_named_with_the_ones_there_are() {
    let cfg = LiveConfig {
        interfaces: vec!["eth9nope".into()],
        ..LiveConfig::default()
    };
    let e = Capture::start(cfg, |_| {}).err().expect("fails");
    assert!(matches!(e, CaptureError::NoInterface { .. }));
    let m = e.to_string();
    assert!(
        m.starts_with("interface eth9nope does not exist (interfaces here: "),
        "{m}"
    );
    assert!(m.contains("lo"), "{m}");
}

#[test]
fn a_bad_filter_is_reported_before_any_socket() {
    let cfg = LiveConfig {
        interfaces: vec!["lo".into()],
        filter: "port http".into(),
        ..LiveConfig::default()
    };
    let e = Capture::start(cfg, |_| {}).err().expect("fails");
    assert!(e.to_string().contains("at `http`"), "{e}");
}

/// Child of the test below: runs without CAP_NET_RAW.
#[test]
#[ignore = "run by a_missing_capability_is_named_with_the_fix under setpriv"]
fn child_start_without_net_raw() {
    let cfg = LiveConfig {
        interfaces: vec!["lo".into()],
        ..LiveConfig::default()
    };
    match Capture::start(cfg, |_| {}) {
        Ok(c) => {
            c.stop();
            println!("CHILD-RESULT started");
        }
        Err(e) => println!("CHILD-RESULT {e}"),
    }
}

#[test]
fn a_missing_capability_is_named_with_the_fix() {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--inh-caps=-all", "--bounding-set=-net_raw"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_start_without_net_raw",
            "--nocapture",
        ]);
    let line = child_result(cmd);
    assert!(
        line.contains("opening a packet socket on lo needs CAP_NET_RAW: run as root or grant it (AmbientCapabilities=CAP_NET_RAW"),
        "{line}"
    );
}

/// A worker whose sink panics is reported by `failure()`.
#[test]
fn a_dead_worker_is_reported() {
    let pair = Pair::new();
    let cfg = LiveConfig {
        interfaces: vec![pair.ifa.clone()],
        workers: 1,
        block_size: 1 << 16,
        block_count: 4,
        block_timeout: Duration::from_millis(10),
        engine: Config {
            idle_timeout: Duration::from_millis(1),
            close_grace: Duration::from_millis(1),
            ..Config::default()
        },
        ..LiveConfig::default()
    };
    let cap = Pair::within(&pair.a, move || {
        Capture::start(cfg, |o| {
            if matches!(o, Output::Flow(_)) {
                panic!("sink broke");
            }
        })
    })
    .join()
    .unwrap()
    .unwrap();
    assert!(cap.failure().is_none());
    let a = pair.addr_a();
    // Pings one second apart: the second one's sweep ends the first flows.
    let o = Command::new("ip")
        .args(["netns", "exec", &pair.b, "ping", "-c3", "-i1", &a])
        .output()
        .unwrap();
    assert!(o.status.success());
    let mut f = None;
    for _ in 0..100 {
        f = cap.failure();
        if f.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let f = f.expect("the worker's death is reported");
    assert!(f.reason.contains("panicked: sink broke"), "{f}");
    assert_eq!(cap.stats()[0].workers_alive, 0);
    cap.stop();
}

/// A capture dropped without `stop` ends its workers (sockets released).
#[test]
fn dropping_a_capture_ends_its_workers() {
    let pair = Pair::new();
    let (cap, _) = start(&pair, "", 2);
    let h = cap.stats_handle();
    assert_eq!(h.snapshot()[0].workers_alive, 2);
    drop(cap);
    let mut alive = 2;
    for _ in 0..100 {
        alive = h.snapshot()[0].workers_alive;
        if alive == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(alive, 0);
    assert!(h.failure().is_none(), "asked to end: not a failure");
}

/// The kernel takes the 802.1Q tag off received frames; the capture puts it
/// back: the `vlan 100` filter runs on the tag in the kernel, flows carry
/// VLAN 100 and count the tag's bytes, exactly as tcpdump's recording of
/// the same traffic replayed offline.
#[test]
fn vlan_tags_are_filtered_in_the_kernel_and_put_back_in_the_frame() {
    let pair = Pair::new();
    let ifb = pair.ifb.clone();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("vlan.pcap");
    let td = tcpdump_in(&pair.a, &pair.ifa, &pcap, "vlan 100 and udp");
    let (cap, got) = start(&pair, "vlan 100 and udp", 2);
    // No 8021q module here: python3 sends the frames raw from namespace b,
    // 10 tagged (VLAN 100) and 10 untagged, UDP with 100 payload bytes.
    let script = r#"
import socket, struct, sys
def csum(b):
    s = sum(struct.unpack("!10H", b))
    s = (s & 0xffff) + (s >> 16)
    return (~((s & 0xffff) + (s >> 16))) & 0xffff
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for i in range(20):
    udp = struct.pack("!HHHH", 40000, 6000, 108, 0) + bytes(100)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 128, i, 0, 64, 17, 0, bytes([10, 78, 0, 2]), bytes([10, 78, 0, 1]))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    tag = struct.pack("!HH", 0x8100, 100) if i % 2 == 0 else b""
    s.send(b"\xff" * 6 + bytes([2, 0, 0, 0, 0, 2]) + tag + b"\x08\x00" + ip + udp)
"#;
    let o = Command::new("ip")
        .args(["netns", "exec", &pair.b, "python3", "-c", script, &ifb])
        .output()
        .expect("python3 runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stats = stop_both(cap, td, &pcap);
    let fl = flows(&got);
    assert_eq!(fl.len(), 1, "one flow: {fl:?}");
    assert_eq!(fl[0].vlan, 100);
    assert_eq!(fl[0].packets_out, 10);
    // 14 + 4 (tag) + 20 + 8 + 100 bytes per frame.
    assert_eq!(fl[0].bytes_out, 10 * 146);
    let offline = replay_flows(&pcap);
    assert_eq!(convs(&fl), convs(&offline));
    assert_eq!(offline[0].vlan, 100);
    // The untagged frames never reached the socket.
    assert_eq!(stats[0].kernel_packets, 10, "{:?}", stats[0]);
}

/// Two interfaces in one capture: each has its own counters and summary;
/// promiscuous mode is on while the capture runs and off after it.
#[test]
fn two_interfaces_and_promiscuous_mode() {
    let pair = Pair::new();
    let cfg = LiveConfig {
        interfaces: vec![pair.ifa.clone(), "lo".into()],
        promiscuous: true,
        ..small(&pair, "icmp", 1)
    };
    let (cap, got) = start_with(&pair, cfg);
    let link = |ns: &str, dev: &str| {
        let o = Command::new("ip")
            .args(["-n", ns, "-d", "link", "show", dev])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let promisc = link(&pair.a, &pair.ifa);
    assert!(promisc.contains("promiscuity 1"), "{promisc}");
    assert!(link(&pair.a, "lo").contains("promiscuity 1"));
    let a = pair.addr_a();
    for (ns, to) in [(&pair.b, a.as_str()), (&pair.a, "127.0.0.1")] {
        let o = Command::new("ip")
            .args(["netns", "exec", ns, "ping", "-c2", "-i0.2", to])
            .output()
            .unwrap();
        assert!(o.status.success());
    }
    std::thread::sleep(Duration::from_millis(50));
    let stats = cap.stop();
    assert!(link(&pair.a, &pair.ifa).contains("promiscuity 0"));
    assert_eq!(stats.len(), 2);
    assert_eq!(
        (stats[0].interface.as_str(), stats[0].packets),
        (pair.ifa.as_str(), 4)
    );
    // On lo each ping is seen going out and coming in.
    assert_eq!((stats[1].interface.as_str(), stats[1].packets), ("lo", 8));
    // Each interface's summaries count its own packets.
    let mut per_iface: BTreeMap<String, u64> = BTreeMap::new();
    for (name, p) in summary_packets(&got).into_values().flatten() {
        *per_iface.entry(name).or_default() += p;
    }
    assert_eq!(
        per_iface,
        BTreeMap::from([(pair.ifa.clone(), 4), ("lo".to_string(), 8)])
    );
}

/// Child of the test below: promiscuous mode without CAP_NET_ADMIN, on the
/// interface named by OWLET_TEST_IFACE (in the namespace it runs in).
#[test]
#[ignore = "run by promiscuous_mode_needs_only_net_raw under setpriv"]
fn child_promiscuous_without_net_admin() {
    let iface = std::env::var("OWLET_TEST_IFACE").unwrap_or_else(|_| "lo".into());
    let cfg = LiveConfig {
        interfaces: vec![iface.clone()],
        promiscuous: true,
        ..LiveConfig::default()
    };
    match Capture::start(cfg, |_| {}) {
        Ok(c) => {
            let o = Command::new("ip")
                .args(["-d", "link", "show", &iface])
                .output()
                .unwrap();
            let on = String::from_utf8_lossy(&o.stdout).contains("promiscuity 1");
            c.stop();
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let eff = status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
                .unwrap();
            let admin = eff & (1 << 12) != 0; // CAP_NET_ADMIN
            println!("CHILD-RESULT started promiscuous={on} net_admin={admin}");
        }
        Err(e) => println!("CHILD-RESULT {e}"),
    }
}

/// The kernel grants promiscuous mode through a packet socket membership
/// (PACKET_MR_PROMISC, as libpcap does) to a socket opened with
/// CAP_NET_RAW: CAP_NET_ADMIN is not needed for it.
#[test]
fn promiscuous_mode_needs_only_net_raw() {
    let pair = Pair::new();
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        &pair.a,
        "setpriv",
        "--inh-caps=-all",
        "--bounding-set=-net_admin",
    ])
    .arg(std::env::current_exe().unwrap())
    .args([
        "--ignored",
        "--exact",
        "child_promiscuous_without_net_admin",
        "--nocapture",
    ])
    .env("OWLET_TEST_IFACE", &pair.ifa);
    let line = child_result(cmd);
    assert_eq!(
        line,
        "CHILD-RESULT started promiscuous=true net_admin=false"
    );
}

/// On a quiet link flows still end (idle timeout) and intervals close:
/// the workers move capture time on from the clock.
#[test]
fn a_quiet_link_still_ends_flows_and_closes_intervals() {
    let pair = Pair::new();
    let cfg = LiveConfig {
        engine: Config {
            idle_timeout: Duration::from_secs(1),
            summary_interval: Duration::from_secs(1),
            ..Config::default()
        },
        ..small(&pair, "udp", 2)
    };
    let (cap, got) = start_with(&pair, cfg);
    let a = pair.addr_a();
    Pair::within(&pair.b, move || {
        let u = UdpSocket::bind("0.0.0.0:0").unwrap();
        u.send_to(b"once", (a.as_str(), 7000)).unwrap();
    })
    .join()
    .unwrap();
    let mut seen = (false, false);
    for _ in 0..200 {
        let v = got.lock().unwrap();
        seen = (
            v.iter().any(|o| matches!(o, Output::Flow(f) if f.dst_port == 7000 && f.end_reason == EndReason::IdleTimeout)),
            v.iter().any(|o| matches!(o, Output::Summary(s) if s.packets == 1)),
        );
        drop(v);
        if seen == (true, true) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cap.stop();
    assert_eq!(
        seen,
        (true, true),
        "(flow ended idle, interval summary) before stop"
    );
    // Both workers reported every interval: no summary waited for a
    // worker that never saw a packet (each interval has one summary).
    let per_interval = summary_packets(&got);
    assert!(
        per_interval.values().all(|v| v.len() == 1),
        "{per_interval:?}"
    );
}

/// Wait (at most 20 s) until `f` holds.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Link alerts raised for `iface`, in order.
fn link_alerts(got: &Sink, iface: &str) -> Vec<&'static str> {
    got.lock()
        .unwrap()
        .iter()
        .filter_map(|o| match o {
            Output::Alert(a) if a.subject == iface && a.name.starts_with("capture_link") => {
                Some(a.name)
            }
            _ => None,
        })
        .collect()
}

/// A UDP sender in namespace b: a datagram every 2 ms to `port` (read
/// before each) on a, until `stop`.
fn stream(pair: &Pair, port: Arc<AtomicU16>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let dst = pair.addr_a();
    Pair::within(&pair.b, move || {
        let u = UdpSocket::bind("0.0.0.0:0").unwrap();
        while !stop.load(Ordering::SeqCst) {
            // Sending may fail while the link is down: keep going.
            let _ = u.send_to(b"stream", (dst.as_str(), port.load(Ordering::SeqCst)));
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

/// Send UDP datagrams from b to a:`port` until the capture counted more
/// than `after` packets on its first interface.
fn send_until_counted(pair: &Pair, port: u16, cap: &StatsHandle, after: u64) {
    let dst = pair.addr_a();
    let u = Pair::within(&pair.b, || UdpSocket::bind("0.0.0.0:0").unwrap())
        .join()
        .unwrap();
    wait_for(&format!("packets to port {port} counted"), || {
        let _ = u.send_to(b"hello", (dst.as_str(), port));
        cap.snapshot()[0].packets > after
    });
}

/// `ip link set IF down; sleep 2; ip link set IF up` under a running
/// capture with traffic flowing: while the link is down the workers sleep
/// in poll (before, every poll returned POLLERR at once and each worker
/// spun at ~84,000 polls a second), the stats say `down` and count the
/// loss, alerts go out both ways, and once the link is up the same
/// sockets capture again.
#[test]
fn a_link_that_goes_down_and_up_costs_no_busy_loop_and_capture_resumes() {
    let pair = Pair::new();
    let (cap, got) = start(&pair, "udp", 2);
    let h = cap.stats_handle();
    let port = Arc::new(AtomicU16::new(7100));
    let stop = Arc::new(AtomicBool::new(false));
    let tx = stream(&pair, port.clone(), stop.clone());
    wait_for("packets before the link goes down", || {
        h.snapshot()[0].packets > 20
    });
    // The link state is read once a second: a veth just made may still
    // read as without carrier at the first look.
    wait_for("the stats to say up before the link goes down", || {
        h.snapshot()[0].link == LinkState::Up
    });
    ip(&["-n", &pair.a, "link", "set", &pair.ifa, "down"]);
    wait_for("the stats to say down", || {
        h.snapshot()[0].link == LinkState::Down
    });
    let before = h.snapshot()[0].wakeups;
    std::thread::sleep(Duration::from_secs(2));
    let during = h.snapshot()[0].wakeups - before;
    // Two workers polling with a 100 ms timeout: about 40 in 2 s.
    assert!(
        during < 200,
        "{during} wakeups in 2 s while the link was down"
    );
    let s = h.snapshot()[0].clone();
    assert_eq!(s.link_losses, 1, "{s:?}");
    assert!(
        s.last_error.as_deref().is_some_and(|e| e.contains("down")),
        "{s:?}"
    );
    assert_eq!(s.workers_alive, 2);
    port.store(7102, Ordering::SeqCst);
    ip(&["-n", &pair.a, "link", "set", &pair.ifa, "up"]);
    wait_for("the stats to say up", || {
        h.snapshot()[0].link == LinkState::Up
    });
    let resumed = h.snapshot()[0].packets;
    wait_for("packets after the link came back", || {
        h.snapshot()[0].packets > resumed + 20
    });
    stop.store(true, Ordering::SeqCst);
    tx.join().unwrap();
    assert!(cap.failure().is_none(), "{:?}", cap.failure());
    let stats = cap.stop();
    assert_eq!(stats[0].reopens, 0, "the same sockets capture again");
    assert_eq!(stats[0].link_losses, 1);
    let fl = flows(&got);
    assert!(
        fl.iter().any(|f| f.dst_port == 7102 && f.packets_out > 0),
        "no flow after the link came back: {fl:?}"
    );
    assert_eq!(
        link_alerts(&got, &pair.ifa),
        vec!["capture_link_down", "capture_link_up"]
    );
}

/// With `wait_for_interfaces`, a name that does not exist yet fails alone:
/// the other interface captures, the missing one is `missing` (and
/// alerted), it is captured once it appears, and after it is deleted and
/// made again (a new interface index: the old sockets are unbound for
/// good) the workers open new sockets and capture on.
#[test]
fn a_missing_interface_is_captured_once_it_appears_and_again_once_made_anew() {
    let pair = Pair::namespaces();
    let cfg = LiveConfig {
        interfaces: vec![pair.ifa.clone(), "lo".into()],
        wait_for_interfaces: true,
        ..small(&pair, "udp or icmp", 2)
    };
    let (cap, got) = start_with(&pair, cfg);
    let h = cap.stats_handle();
    let s = h.snapshot();
    assert_eq!((s[0].link, s[1].link), (LinkState::Missing, LinkState::Up));
    assert_eq!(link_alerts(&got, &pair.ifa), vec!["capture_link_down"]);
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &pair.a,
            "ping",
            "-c2",
            "-i0.2",
            "127.0.0.1",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    wait_for("lo to capture meanwhile", || h.snapshot()[1].packets >= 4);

    pair.link();
    wait_for("the interface to be found and up", || {
        h.snapshot()[0].link == LinkState::Up
    });
    send_until_counted(&pair, 7200, &h, 0);
    assert_eq!(h.snapshot()[0].reopens, 0, "a first open is no reopen");

    ip(&["-n", &pair.a, "link", "del", &pair.ifa]);
    wait_for("the stats to say missing", || {
        h.snapshot()[0].link == LinkState::Missing
    });
    assert_eq!(h.snapshot()[0].link_losses, 1);
    pair.link();
    wait_for("the new interface to be found and up", || {
        h.snapshot()[0].link == LinkState::Up
    });
    let before = h.snapshot()[0].packets;
    send_until_counted(&pair, 7201, &h, before);
    // Worker 0 publishes the link state; the other worker finds the new
    // interface on its own next look (it may be in its back-off), so the
    // test waits for both reopens rather than stopping on the first.
    wait_for("both workers to open anew", || h.snapshot()[0].reopens == 2);
    assert!(cap.failure().is_none(), "{:?}", cap.failure());
    let stats = cap.stop();
    assert_eq!(stats[0].reopens, 2, "both workers opened anew: {stats:?}");
    let ports: Vec<u16> = flows(&got).iter().map(|f| f.dst_port).collect();
    assert!(ports.contains(&7200) && ports.contains(&7201), "{ports:?}");
    assert_eq!(
        link_alerts(&got, &pair.ifa),
        vec![
            "capture_link_down",
            "capture_link_up",
            "capture_link_down",
            "capture_link_up"
        ]
    );
    assert!(link_alerts(&got, "lo").is_empty());
}

/// 200 datagrams from b to a:9999, each from its own source port (so a
/// flow-hash fanout spreads them over a group's sockets).
fn two_hundred_flows(pair: &Pair) {
    let a = pair.addr_a();
    let o = Command::new("ip")
        .args(["netns", "exec", &pair.b, "ping", "-c1", "-W2", &a])
        .output()
        .unwrap();
    assert!(o.status.success(), "ping");
    Pair::within(&pair.b, move || {
        for i in 0..200u16 {
            let s = UdpSocket::bind(("0.0.0.0", 30000 + i)).unwrap();
            s.send_to(b"x", (a.as_str(), 9999)).unwrap();
            std::thread::sleep(Duration::from_micros(500));
        }
    })
    .join()
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
}

fn packets_to_9999(got: &Sink) -> u64 {
    flows(got)
        .iter()
        .filter(|f| f.dst_port == 9999)
        .map(|f| f.packets_out + f.packets_in)
        .sum()
}

/// Two captures on one interface each make a fanout group of their own:
/// both start and both see every datagram.
#[test]
fn two_captures_on_one_interface_both_see_everything() {
    let pair = Pair::new();
    let (one, got_one) = start(&pair, "udp dst port 9999", 2);
    let (two, got_two) = start(&pair, "udp dst port 9999", 2);
    two_hundred_flows(&pair);
    one.stop();
    two.stop();
    assert_eq!(packets_to_9999(&got_one), 200);
    assert_eq!(packets_to_9999(&got_two), 200);
}

/// Child of the test below: captures on OWLET_TEST_IFACE from the moment
/// it reads `go` on stdin until it reads `stop`, then prints its count.
#[test]
#[ignore = "run by another_programs_fanout_group_is_never_joined"]
fn child_capture_while_told() {
    let iface = std::env::var("OWLET_TEST_IFACE").expect("OWLET_TEST_IFACE");
    let mut stdin = BufReader::new(std::io::stdin());
    let mut line = String::new();
    stdin.read_line(&mut line).unwrap();
    let got: Sink = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let cfg = LiveConfig {
        interfaces: vec![iface],
        workers: 2,
        filter: "udp dst port 9999".into(),
        block_size: 1 << 16,
        block_count: 8,
        block_timeout: Duration::from_millis(10),
        ..LiveConfig::default()
    };
    let cap = Capture::start(cfg, move |o| g.lock().unwrap().push(o)).unwrap();
    println!("CHILD-STARTED");
    std::io::stdout().flush().unwrap();
    stdin.read_line(&mut line).unwrap();
    cap.stop();
    println!("CHILD-RESULT {}", packets_to_9999(&got));
}

/// Fanout group ids are shared by every program of a namespace, and a
/// socket naming another program's id (same mode, same interface) joins
/// its group silently. Another program (a python raw socket) holds the
/// group whose id owlet used to derive from its process id and the
/// interface index; owlet asks the kernel for an unused id instead, so
/// both see every datagram (before, they split them between them).
#[test]
fn another_programs_fanout_group_is_never_joined() {
    let pair = Pair::new();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &pair.a])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_capture_while_told",
            "--nocapture",
        ])
        .env("OWLET_TEST_IFACE", &pair.ifa)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let o = Command::new("ip")
        .args(["-n", &pair.a, "-o", "link", "show", &pair.ifa])
        .output()
        .unwrap();
    let ifindex: u16 = String::from_utf8_lossy(&o.stdout)
        .split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .expect("interface index");
    let id = (child.id() as u16) ^ ifindex.rotate_left(8);
    let script = r#"
import select, socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
# SOL_PACKET, PACKET_FANOUT: flow hash, defragment (owlet's mode).
s.setsockopt(263, 18, struct.pack("I", int(sys.argv[2]) | (0x8000 << 16)))
print("ready", flush=True)
n = 0
def count(f):
    return len(f) >= 38 and f[12:14] == b"\x08\x00" and f[23] == 17 and f[36:38] == b"\x27\x0f"
while True:
    r, _, _ = select.select([s, sys.stdin], [], [])
    if s in r and count(s.recv(65535)):
        n += 1
    if sys.stdin in r and s not in r:
        break
print("OTHER-RESULT", n, flush=True)
"#;
    let mut other = Command::new("ip")
        .args(["netns", "exec", &pair.a, "python3", "-c", script])
        .arg(&pair.ifa)
        .arg(id.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut other_out = BufReader::new(other.stdout.take().unwrap());
    let mut line = String::new();
    other_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let mut child_in = child.stdin.take().unwrap();
    let mut child_out = BufReader::new(child.stdout.take().unwrap());
    writeln!(child_in, "go").unwrap();
    line.clear();
    while !line.starts_with("CHILD-STARTED") {
        line.clear();
        assert!(child_out.read_line(&mut line).unwrap() > 0, "child ended");
    }
    two_hundred_flows(&pair);
    writeln!(child_in, "stop").unwrap();
    while !line.starts_with("CHILD-RESULT") {
        line.clear();
        assert!(child_out.read_line(&mut line).unwrap() > 0, "child ended");
    }
    let owlet_saw = line.trim().to_string();
    child.wait().unwrap();
    drop(other.stdin.take());
    line.clear();
    other_out.read_line(&mut line).unwrap();
    other.wait().unwrap();
    assert_eq!(owlet_saw, "CHILD-RESULT 200");
    assert_eq!(line.trim(), "OTHER-RESULT 200");
}

/// Attach to (and create) tun device `name` in this thread's namespace:
/// the file descriptor reads what the kernel sends through it and writes
/// what it receives, without a packet-information header.
fn tun_open(name: &str) -> File {
    use std::os::fd::{FromRawFd, IntoRawFd};
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const IFF_TUN: libc::c_short = 0x0001;
    const IFF_NO_PI: libc::c_short = 0x1000;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .expect("/dev/net/tun (the tun module)");
    // struct ifreq: the name, then the flags (a short) in the union.
    let mut ifr = [0u8; 40];
    ifr[..name.len()].copy_from_slice(name.as_bytes());
    ifr[16..18].copy_from_slice(&(IFF_TUN | IFF_NO_PI).to_ne_bytes());
    let fd = f.into_raw_fd();
    // SAFETY: `fd` is open; `ifr` is a 40-byte ifreq the kernel reads and writes.
    let rc = unsafe { libc::ioctl(fd, TUNSETIFF as _, ifr.as_mut_ptr()) };
    assert_eq!(rc, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` came from into_raw_fd and is owned by nobody else.
    unsafe { File::from_raw_fd(fd) }
}

/// An IPv4 UDP packet (header checksum set, UDP checksum 0).
fn ipv4_udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let total = (28 + payload.len()) as u16;
    let mut p = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let sum: u32 = p
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
        .sum();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = !((sum & 0xffff) + (sum >> 16)) as u16;
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// An IPv6 UDP packet.
fn ipv6_udp(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[17, 64]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// A tun device (ARPHRD_NONE: raw IP, no Ethernet header) in a namespace,
/// with the agent's default filter (the SOC's connection left out): the
/// filter is compiled for raw IP (before, any filter was refused there),
/// packets sent through the device and packets arriving on it (written to
/// its file descriptor) become flows, IPv4 and IPv6, and nothing to or
/// from the SOC's address and port is captured.
#[test]
fn a_tun_interface_is_captured_as_raw_ip_with_the_soc_left_out() {
    let pair = Pair::namespaces();
    let name = format!("owt{}", pair.n);
    let n = pair.n as u8;
    let tun = {
        let name = name.clone();
        Pair::within(&pair.a, move || tun_open(&name))
            .join()
            .unwrap()
    };
    ip(&[
        "-n",
        &pair.a,
        "addr",
        "add",
        &format!("10.79.{n}.1/24"),
        "dev",
        &name,
    ]);
    ip(&["-n", &pair.a, "link", "set", &name, "up"]);
    let soc: std::net::SocketAddr = format!("10.79.{n}.2:4443").parse().unwrap();
    let cfg = LiveConfig {
        interfaces: vec![name.clone()],
        workers: 1,
        filter: owlet_capture::filter::with_exclusions("", &[soc]),
        block_size: 1 << 16,
        block_count: 8,
        block_timeout: Duration::from_millis(10),
        ..LiveConfig::default()
    };
    let (cap, got) = start_with(&pair, cfg);
    assert_eq!(cap.stats()[0].link_type, "raw_ip");
    // Out through the tun: a datagram to a server, three to the SOC.
    let peer = format!("10.79.{n}.2");
    Pair::within(&pair.a, move || {
        let u = UdpSocket::bind("0.0.0.0:0").unwrap();
        u.send_to(b"hello", (peer.as_str(), 9000)).unwrap();
        for _ in 0..3 {
            u.send_to(b"to the soc", soc).unwrap();
        }
    })
    .join()
    .unwrap();
    // In from the tun: the SOC's answer (left out), a DNS answer, IPv6.
    let mut v6a = [0u8; 16];
    v6a[0] = 0xfd;
    v6a[15] = 1;
    let mut v6b = v6a;
    v6b[15] = 3;
    for p in [
        ipv4_udp([10, 79, n, 2], [10, 79, n, 1], 4443, 40000, b"from the soc"),
        ipv4_udp([10, 79, n, 3], [10, 79, n, 1], 53, 5353, b"answer"),
        ipv6_udp(v6b, v6a, 5000, 6000, b"six"),
    ] {
        // One write, one packet.
        assert_eq!((&tun).write(&p).unwrap(), p.len());
    }
    std::thread::sleep(Duration::from_millis(200));
    let stats = cap.stop();
    let fl = flows(&got);
    let find = |port: u16| fl.iter().find(|f| f.dst_port == port || f.src_port == port);
    let out = find(9000).expect("the datagram sent through the tun");
    assert_eq!(out.src.to_string(), format!("10.79.{n}.1"));
    assert_eq!((out.protocol, out.packets_out, out.bytes_out), (17, 1, 33));
    let dns = find(53).expect("the datagram received on the tun");
    assert_eq!(dns.src.to_string(), format!("10.79.{n}.3"));
    assert!(find(6000).is_some_and(|f| f.src.to_string() == "fd00::3"));
    assert!(
        find(4443).is_none(),
        "the SOC's connection was captured: {fl:?}"
    );
    assert_eq!(stats[0].decode_errors.values().sum::<u64>(), 0, "{stats:?}");
    drop(tun);
}
