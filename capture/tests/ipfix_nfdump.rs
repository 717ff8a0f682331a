//! owlet's IPFIX export against a real collector: Debian's nfdump
//! (`nfcapd` receives on loopback, `nfdump -o raw` decodes). Every decoded
//! record must equal owlet's own flow record, direction by direction;
//! nfcapd must count no sequence failures. Needs nfdump (dev/packages.txt);
//! the pcap run also needs what `real_traffic.rs` needs.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use owlet_capture::engine::{Config, EndReason, FlowRecord, Output};
use owlet_capture::ipfix::{BATCH, IpfixConfig, IpfixExporter, IpfixStats};

/// A decoded uniflow, or owlet's expectation of one.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Uni {
    src: String,
    dst: String,
    src_port: u16,
    dst_port: u16,
    proto: u8,
    icmp: Option<(u8, u8)>,
    packets: u64,
    bytes: u64,
    first_ms: u64,
    last_ms: u64,
    tcp_flags: u8,
    vlan: u16,
    biflow_dir: u8,
    end_reason: u8,
}

/// owlet's record as the two uniflows a collector should decode, written
/// out here independently of the encoder.
fn expected(r: &FlowRecord) -> Vec<Uni> {
    let icmp = matches!(r.protocol, 1 | 58);
    let reason = match r.end_reason {
        EndReason::IdleTimeout => 1,
        EndReason::ActiveTimeout => 2,
        EndReason::TcpFin | EndReason::TcpRst => 3,
        EndReason::Shutdown => 4,
        EndReason::Evicted => 5,
    };
    let fwd = Uni {
        src: r.src.to_string(),
        dst: r.dst.to_string(),
        src_port: if icmp { 0 } else { r.src_port },
        dst_port: if icmp { 0 } else { r.dst_port },
        proto: r.protocol,
        icmp: if icmp { r.icmp } else { None },
        packets: r.packets_out,
        bytes: r.ip_bytes_out,
        first_ms: r.first_ns / 1_000_000,
        last_ms: r.last_ns / 1_000_000,
        tcp_flags: r.tcp_flags_out,
        vlan: r.vlan,
        biflow_dir: 1,
        end_reason: reason,
    };
    let rev = Uni {
        src: fwd.dst.clone(),
        dst: fwd.src.clone(),
        src_port: fwd.dst_port,
        dst_port: fwd.src_port,
        icmp: icmp.then_some((0, 0)),
        packets: r.packets_in,
        bytes: r.ip_bytes_in,
        tcp_flags: r.tcp_flags_in,
        biflow_dir: 2,
        ..fwd.clone()
    };
    [fwd, rev].into_iter().filter(|u| u.packets > 0).collect()
}

fn nfdump(args: &[&str]) -> String {
    let out = Command::new("nfdump")
        .env("TZ", "UTC")
        .args(args)
        .output()
        .expect("nfdump runs (apt-get install nfdump; see dev/packages.txt)");
    assert!(
        out.status.success(),
        "nfdump {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `nfdump -o raw` of every file in `dir`.
fn decode(dir: &Path) -> Vec<Uni> {
    let text = nfdump(&["-R", dir.to_str().unwrap(), "-o", "raw"]);
    let mut out = Vec::new();
    for block in text.split("Flow Record:").skip(1) {
        let mut kv = BTreeMap::new();
        for line in block.lines() {
            if let Some((k, v)) = line.split_once(" = ") {
                kv.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        let first_word = |k: &str| -> String {
            kv.get(k)
                .unwrap_or_else(|| panic!("nfdump printed no {k:?}: {block}"))
                .split_whitespace()
                .next()
                .unwrap()
                .to_string()
        };
        let num = |k: &str| -> u64 {
            let w = first_word(k);
            match w.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).unwrap(),
                None => w.parse().unwrap(),
            }
        };
        let icmp = kv.get("ICMP").map(|v| {
            let tc = v.split_whitespace().next().unwrap();
            let (t, c) = tc.split_once('.').unwrap();
            (t.parse().unwrap(), c.parse().unwrap())
        });
        let port = |k: &str| if kv.contains_key(k) { num(k) as u16 } else { 0 };
        out.push(Uni {
            src: first_word("src addr"),
            dst: first_word("dst addr"),
            src_port: port("src port"),
            dst_port: port("dst port"),
            proto: num("proto") as u8,
            icmp,
            packets: num("in packets"),
            bytes: num("in bytes"),
            first_ms: num("first"),
            last_ms: num("last"),
            tcp_flags: num("tcp flags") as u8,
            vlan: num("src vlan") as u16,
            biflow_dir: num("biFlow Dir") as u8,
            end_reason: num("end reason") as u8,
        });
    }
    out
}

fn sequence_failures(dir: &Path) -> u64 {
    let info = nfdump(&["-R", dir.to_str().unwrap(), "-I"]);
    info.lines()
        .find_map(|l| l.strip_prefix("Sequence failures:"))
        .expect("nfdump -I prints the sequence failures")
        .trim()
        .parse()
        .unwrap()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Bytes waiting in the receive queue of the UDP socket on `port`, or None
/// when nothing listens there.
fn recv_queue(port: u16) -> Option<u64> {
    let out = Command::new("ss")
        .args(["-Huln", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// nfcapd on 127.0.0.1:`port`, writing into `dir`; killed on drop.
struct Nfcapd {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Nfcapd {
    fn start(port: u16, dir: &Path) -> Nfcapd {
        std::fs::create_dir_all(dir).unwrap();
        let child = Command::new("nfcapd")
            .args(["-b", "127.0.0.1", "-p", &port.to_string(), "-B", "8388608"])
            .arg("-w")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nfcapd runs (apt-get install nfdump; see dev/packages.txt)");
        let n = Nfcapd {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        wait_for("nfcapd to listen", || recv_queue(port).is_some());
        n
    }

    /// Wait until nfcapd has read every datagram, stop it (SIGTERM makes it
    /// write its file) and decode what it received.
    fn finish(mut self) -> (Vec<Uni>, u64) {
        wait_for("nfcapd to read its socket", || {
            recv_queue(self.port) == Some(0)
        });
        let pid = self.child.id().to_string();
        let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(st.success());
        let st = self.child.wait().unwrap();
        assert!(st.success() || st.code().is_none(), "nfcapd: {st}");
        (decode(&self.dir), sequence_failures(&self.dir))
    }
}

impl Drop for Nfcapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn exporter(port: u16, max_message: usize) -> IpfixExporter {
    let mut cfg = IpfixConfig::new(format!("127.0.0.1:{port}").parse().unwrap());
    cfg.max_message = max_message;
    cfg.observation_domain = 7;
    IpfixExporter::start(cfg).unwrap()
}

fn export_all(exp: &IpfixExporter, flows: &[FlowRecord]) {
    for f in flows {
        assert!(exp.export(f), "queue full: raise IpfixConfig::queue");
    }
    wait_for("the sender to drain its queue", || exp.pending() == 0);
}

fn sorted(mut v: Vec<Uni>) -> Vec<Uni> {
    v.sort();
    v
}

fn assert_same(decoded: Vec<Uni>, flows: &[FlowRecord]) {
    let want = sorted(flows.iter().flat_map(expected).collect());
    let got = sorted(decoded);
    assert_eq!(got.len(), want.len(), "records decoded by nfdump");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
}

fn rec(src: &str, dst: &str, proto: u8, ports: (u16, u16), vlan: u16, i: u64) -> FlowRecord {
    let t = 1_764_150_000_123_456_789 + i * 1_000_003_001;
    FlowRecord {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        src_port: ports.0,
        dst_port: ports.1,
        protocol: proto,
        vlan,
        packets_out: 10 + i,
        bytes_out: 1_000 + i,
        ip_bytes_out: 860 + i,
        packets_in: 8 + i,
        bytes_in: 5_000 + i,
        ip_bytes_in: 4_888 + i,
        tcp_flags_out: if proto == 6 { 0x1b } else { 0 },
        tcp_flags_in: if proto == 6 { 0x12 | 0x10 | 0x04 } else { 0 },
        icmp: matches!(proto, 1 | 58).then_some((if proto == 1 { 8 } else { 128 }, 0)),
        initiator_by_syn: proto == 6,
        first_ns: t,
        last_ns: t + 5_863_543_211 + i,
        end_reason: [
            EndReason::TcpFin,
            EndReason::IdleTimeout,
            EndReason::ActiveTimeout,
            EndReason::Evicted,
            EndReason::Shutdown,
            EndReason::TcpRst,
        ][i as usize % 6],
        app: None,
    }
}

/// IPv4 and IPv6; TCP, UDP, ICMP, ICMPv6; VLANs; a one-way flow; 64-bit
/// counters; enough flows for many messages.
fn synthetic() -> Vec<FlowRecord> {
    let mut v = vec![
        rec("10.0.0.1", "10.0.0.2", 6, (40000, 443), 42, 0),
        rec("10.0.0.1", "192.0.2.53", 17, (53000, 53), 0, 1),
        rec("10.0.0.1", "10.0.0.9", 1, (0, 0), 4094, 2),
        rec("2001:db8::1", "2001:db8::2", 6, (40001, 22), 0, 3),
        rec("2001:db8::1", "2001:db8:1::53", 17, (53001, 53), 7, 4),
        rec("fe80::1", "ff02::1", 58, (0, 0), 0, 5),
    ];
    let mut big = rec("10.1.0.1", "10.1.0.2", 17, (1, 2), 0, 6);
    big.ip_bytes_out = 6_000_000_000;
    big.packets_out = 5_000_000;
    v.push(big);
    let mut one_way = rec("10.2.0.1", "10.2.0.2", 6, (40002, 445), 0, 7);
    (one_way.packets_in, one_way.bytes_in, one_way.ip_bytes_in) = (0, 0, 0);
    v.push(one_way);
    for i in 0..300u64 {
        let v6 = i % 3 == 0;
        let (s, d) = if v6 {
            (format!("2001:db8:2::{i:x}"), "2001:db8:3::1".to_string())
        } else {
            (
                format!("10.3.{}.{}", i / 200, i % 200 + 1),
                "10.4.0.1".to_string(),
            )
        };
        v.push(rec(
            &s,
            &d,
            [6, 17][i as usize % 2],
            (2000 + i as u16, 80),
            0,
            8 + i,
        ));
    }
    v
}

#[test]
fn ipfix_nfdump_decodes_what_owlet_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let cap = Nfcapd::start(port, &tmp.path().join("flows"));
    let exp = exporter(port, 1400);
    let flows = synthetic();
    export_all(&exp, &flows);
    let stats = exp.shutdown();
    let (decoded, seq_failures) = cap.finish();
    assert_eq!(stats.send_errors, 0, "{stats:?}");
    assert!(stats.messages_sent > 20, "{stats:?}");
    assert_eq!(seq_failures, 0, "nfcapd saw sequence number gaps");
    assert_same(decoded, &flows);
}

#[test]
fn ipfix_collector_that_was_down_decodes_once_it_is_back() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let mut cfg = IpfixConfig::new(format!("127.0.0.1:{port}").parse().unwrap());
    cfg.max_message = 512;
    // Only the after-an-error rule may bring the templates back.
    cfg.template_refresh_messages = 0;
    cfg.queue = 64;
    let exp = IpfixExporter::start(cfg).unwrap();
    // Down: every export returns at once; errors are counted, not fatal.
    let flows = synthetic();
    let mut offered = 0u64;
    for _ in 0..50 {
        for f in &flows {
            exp.export(f);
            offered += 1;
        }
        // Memory does not grow while the collector is away.
        assert!(exp.pending() <= 64 + BATCH as u64, "{}", exp.pending());
    }
    wait_for("the sender to drain its queue", || exp.pending() == 0);
    let down: IpfixStats = exp.stats();
    assert_eq!(down.flows_queued + down.flows_dropped, offered);
    assert!(down.send_errors > 0, "{down:?}");
    assert!(down.messages_lost > 0, "{down:?}");
    assert_eq!(down.flows_done, down.flows_queued, "nothing kept back");
    assert!(
        down.last_error
            .as_deref()
            .is_some_and(|e| e.contains("refused")),
        "{down:?}"
    );
    // Back up.
    let cap = Nfcapd::start(port, &tmp.path().join("flows"));
    let later = &flows[..40];
    export_all(&exp, later);
    let stats = exp.shutdown();
    let (decoded, _) = cap.finish();
    assert_eq!(stats.flows_dropped, down.flows_dropped, "{stats:?}");
    assert_same(decoded, later);
}

#[test]
fn ipfix_real_capture_flows_survive_the_trip_through_nfdump() {
    for t in [
        "ip", "tcpdump", "nmap", "curl", "python3", "dnsmasq", "openssl",
    ] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {t}"))
            .status()
            .is_ok_and(|s| s.success());
        assert!(found, "{t} is needed: apt-get install dev/packages.txt");
    }
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("traffic.pcap");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/netns_traffic.sh");
    let st = Command::new("bash")
        .arg(&script)
        .arg(&pcap)
        .arg(tmp.path())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "{} failed", script.display());
    let mut flows = Vec::new();
    owlet_capture::pcap::replay(&pcap, Config::default(), |o| {
        if let Output::Flow(f) = o {
            flows.push(f)
        }
    })
    .unwrap();
    assert!(flows.len() > 200, "the scan alone: {}", flows.len());
    assert!(flows.iter().any(|f| f.protocol == 1));
    assert!(flows.iter().any(|f| f.protocol == 17));

    let port = free_udp_port();
    let cap = Nfcapd::start(port, &tmp.path().join("flows"));
    let exp = exporter(port, 1400);
    export_all(&exp, &flows);
    let stats = exp.shutdown();
    let (decoded, seq_failures) = cap.finish();
    assert_eq!(
        (stats.send_errors, stats.flows_dropped),
        (0, 0),
        "{stats:?}"
    );
    assert_eq!(seq_failures, 0);
    assert_same(decoded, &flows);
}
