//! ICMP echo against loopback (v4 and v6) and against hosts in a network
//! namespace over a veth pair: reachable, unreachable, and behind netem
//! loss/delay. Needs root (raw sockets, namespaces) and iproute2.
mod common;

use std::time::Duration;

use common::*;
use owlet_probe::{CheckTypeName, IcmpSocketMode, run_check};
use owlet_proto::v1::{CheckResult, FailureClass, IcmpDetail, State, check_result::Detail};

fn icmp(r: &CheckResult) -> &IcmpDetail {
    match &r.detail {
        Some(Detail::Icmp(d)) => d,
        other => panic!("no icmp detail: {other:?}"),
    }
}

#[tokio::test]
async fn loopback_v4_and_v6() {
    require_root();
    for host in ["127.0.0.1", "::1", "localhost"] {
        let mut c = check(CheckTypeName::Icmp, host);
        c.count = Some(5);
        c.echo_interval = Some(Duration::from_millis(20));
        let r = run_check(&spec(&c)).await;
        assert_result(&r, State::Up, FailureClass::Unspecified);
        let d = icmp(&r);
        assert_eq!((d.sent, d.received), (5, 5), "{host}");
        assert_eq!(d.loss_percent, 0.0);
        assert!(d.rtt_min_us <= d.rtt_avg_us && d.rtt_avg_us <= d.rtt_max_us);
        assert!(d.rtt_max_us < 1_000_000);
    }
}

#[tokio::test]
async fn many_concurrent_checks_share_the_socket() {
    require_root();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let host = if i % 2 == 0 { "127.0.0.1" } else { "::1" };
        let mut c = check(CheckTypeName::Icmp, host);
        c.id = format!("p{i}");
        c.count = Some(3);
        c.echo_interval = Some(Duration::from_millis(10));
        let s = spec(&c);
        tasks.push(tokio::spawn(async move { run_check(&s).await }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_result(&r, State::Up, FailureClass::Unspecified);
        assert_eq!(
            icmp(&r).received,
            3,
            "replies were matched to the right check"
        );
    }
}

fn icmp_check(target: &str, count: u32, timeout: &str) -> String {
    format!(
        "id = \"t\"\ntype = \"icmp\"\ntarget = \"{target}\"\ncount = {count}\ntimeout = \"{timeout}\""
    )
}

#[test]
fn namespace_host_reachable_then_unreachable() {
    let ns = Netns::new();
    let r = ns.run_check(&icmp_check(&ns.peer(), 3, "3s"));
    assert_result(&r, State::Up, FailureClass::Unspecified);

    // A /26 routed (in the client namespace) via the peer namespace, which
    // declares it unreachable: the peer answers with ICMP host unreachable,
    // which the shared raw socket matches to our echo.
    let unreach = "198.19.7.0/26";
    ns.exec("sysctl -qw net.ipv4.ip_forward=1");
    ns.exec(&format!("ip route add unreachable {unreach}"));
    ns.exec_client(&format!("ip route add {unreach} via {}", ns.peer()));
    let r = ns.run_check(&icmp_check("198.19.7.9", 2, "2s"));
    assert_result(&r, State::Down, FailureClass::Unreachable);
    assert!(
        r.message.contains(&ns.peer()),
        "names who reported it: {}",
        r.message
    );

    // A silent address on the veth subnet: no reply at all.
    ns.exec(&format!("ip link set {} down", ns.ns_if));
    let r = ns.run_check(&icmp_check(&ns.peer(), 2, "600ms"));
    assert_eq!(state(&r), State::Down);
    assert_eq!(icmp(&r).loss_percent, 100.0);
}

/// Not a test: runs one check inside a test namespace for [`Netns::run_check`].
#[test]
#[ignore]
fn check_in_namespace() {
    check_in_namespace_helper();
}

#[test]
fn netem_loss_and_delay_are_measured() {
    let ns = Netns::new();
    require_bin("tc", "iproute2");
    // Replies leave the namespace through its veth end: delay + loss there.
    let netem = std::process::Command::new("ip")
        .args([
            "netns", "exec", &ns.name, "tc", "qdisc", "add", "dev", &ns.ns_if, "root", "netem",
            "loss", "30%", "delay", "20ms",
        ])
        .output()
        .unwrap();
    let _responder = if netem.status.success() {
        None
    } else {
        // This kernel has no sch_netem (e.g. a minimal VM kernel). Emulate the
        // same impairment in user space inside the namespace: the kernel's
        // echo replies are switched off and a responder drops 30% of the
        // requests and answers the rest after 20ms.
        eprintln!(
            "netem unavailable ({}); using the user-space loss/delay responder",
            String::from_utf8_lossy(&netem.stderr).trim()
        );
        ns.exec("sysctl -qw net.ipv4.icmp_echo_ignore_all=1");
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "icmp_responder_helper",
                "--nocapture",
            ])
            .env("OWLET_TEST_RESPONDER", "30,20")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        Some(ChildGuard(child))
    };
    let r = ns.run_check(&format!(
        "{}\necho_interval = \"5ms\"\ninterval = \"10s\"",
        icmp_check(&ns.peer(), 200, "5s")
    ));
    let d = icmp(&r);
    assert!(
        (12.0..=50.0).contains(&d.loss_percent),
        "loss {}% not near 30%",
        d.loss_percent
    );
    assert!(
        d.rtt_min_us >= 19_000,
        "delay 20ms, min rtt {}us",
        d.rtt_min_us
    );
    assert!(d.rtt_avg_us < 500_000, "avg rtt {}us", d.rtt_avg_us);
    assert_result(&r, State::Degraded, FailureClass::PacketLoss);
}

/// Not a test: the user-space loss/delay ICMP responder run inside a
/// namespace by `netem_loss_and_delay_are_measured` when netem is missing.
#[test]
#[ignore]
fn icmp_responder_helper() {
    let Ok(cfg) = std::env::var("OWLET_TEST_RESPONDER") else {
        return;
    };
    let (loss, delay) = cfg.split_once(',').unwrap();
    let loss: f64 = loss.parse::<f64>().unwrap() / 100.0;
    let delay = Duration::from_millis(delay.parse().unwrap());
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::ICMPV4),
    )
    .unwrap();
    let sock = std::sync::Arc::new(std::net::UdpSocket::from(s));
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = sock.recv_from(&mut buf).unwrap();
        let ihl = usize::from(buf[0] & 0x0f) * 4;
        if n < ihl + 8 || buf[ihl] != 8 {
            continue;
        }
        if rand::random::<f64>() < loss {
            continue;
        }
        let mut reply = buf[ihl..n].to_vec();
        reply[0] = 0;
        reply[2] = 0;
        reply[3] = 0;
        let mut sum: u32 = 0;
        for ch in reply.chunks(2) {
            sum += u32::from(u16::from_be_bytes([ch[0], *ch.get(1).unwrap_or(&0)]));
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        reply[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        let sock = sock.clone();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            let _ = sock.send_to(&reply, from);
        });
    }
}

#[tokio::test]
async fn datagram_socket_mode_reports_local_error_or_works() {
    // The unprivileged ICMP socket depends on net.ipv4.ping_group_range;
    // either it works, or the check says clearly what to change.
    let mut c = check(CheckTypeName::Icmp, "127.0.0.1");
    c.socket = Some(IcmpSocketMode::Dgram);
    let r = run_check(&spec(&c)).await;
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap();
    let allowed = {
        let v: Vec<u32> = range
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        v[0] <= v[1]
    };
    if allowed {
        assert_result(&r, State::Up, FailureClass::Unspecified);
    } else {
        // Agent-side: UNKNOWN (exit 3 for `owlet probe`), never DOWN.
        assert_result(&r, State::Unknown, FailureClass::Local);
        assert_eq!(owlet_probe::exit_code(State::Unknown), 3);
        assert!(r.message.contains("ping_group_range"), "{}", r.message);
    }
}
