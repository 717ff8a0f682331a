//! Live capture in the real agent: flow records and capture summaries from
//! loopback traffic reach the SOC, the agent's own SOC connection is left
//! out, and a missing interface fails alone (the others capture on).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use owlet_proto::v1::event::Kind;
use owlet_tests::*;

fn capture_on(agent: &mut Agent, interface: &str) {
    agent
        .set("capture", "interfaces", vec![interface.to_string()])
        .set("capture", "workers", 1)
        .set("capture", "idle_timeout", "1s")
        .set("capture", "summary_interval", "2s");
}

#[test]
fn loopback_flows_and_summaries_reach_the_soc_without_the_soc_connection() {
    let mut soc = Soc::init();
    soc.start();
    let db = soc.db();
    let mut agent = soc.issue("acme", "a");
    capture_on(&mut agent, "lo");
    agent.start();
    wait_until("the agent to connect", DEADLINE, || {
        agent
            .health()
            .is_some_and(|h| h["metrics"]["connection"] == "connected")
    });

    // Traffic on loopback: three request / answer exchanges.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        for _ in 0..3 {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).unwrap();
            s.write_all(&buf[..n]).unwrap();
        }
    });
    for _ in 0..3 {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(b"hello owlet").unwrap();
        let mut back = [0u8; 11];
        c.read_exact(&mut back).unwrap();
    }
    server.join().unwrap();

    let flows_to = |port: u32| {
        db.events()
            .into_iter()
            .filter_map(|e| match e.event.kind {
                Some(Kind::FlowRecord(f)) if f.dst_port == port => Some(f),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    wait_until("three flow records of the test traffic", DEADLINE, || {
        flows_to(u32::from(port)).len() >= 3
    });
    for flow in flows_to(u32::from(port)) {
        assert_eq!(flow.interface, "lo");
        assert_eq!(flow.protocol, 6);
        assert!(flow.packets_out >= 3 && flow.packets_in >= 2, "{flow:?}");
    }
    wait_until("a capture summary", DEADLINE, || {
        db.events()
            .iter()
            .any(|e| matches!(&e.event.kind, Some(Kind::CaptureStats(s)) if s.interface == "lo" && s.packets > 0))
    });
    // The agent's own connection to the SOC (heartbeats every 200 ms) is
    // filtered out in the kernel: no summary ranks the SOC's port, no flow
    // record names it.
    let soc_port = u32::from(soc.port);
    let soc_key = format!("{soc_port}/tcp");
    wait_until("two capture summaries", DEADLINE, || {
        db.events()
            .iter()
            .filter(|e| matches!(&e.event.kind, Some(Kind::CaptureStats(s)) if s.interface == "lo"))
            .count()
            >= 2
    });
    for e in db.events() {
        match &e.event.kind {
            Some(Kind::CaptureStats(s)) => assert!(
                !s.top_ports_by_packets.iter().any(|p| p.key == soc_key),
                "the SOC connection was captured: {s:?}"
            ),
            Some(Kind::FlowRecord(f)) => assert!(
                f.dst_port != soc_port && f.src_port != soc_port,
                "the SOC connection was captured: {f:?}"
            ),
            _ => {}
        }
    }
    let health = agent.health().unwrap();
    assert_eq!(
        health["collectors"]["capture"]["state"], "running",
        "{health}"
    );
    agent.drain_and_stop(DEADLINE);
}

/// `interfaces = ["lo", "owlet-none0"]`: the name that does not exist
/// fails alone. lo captures (its flows reach the SOC), the capture
/// collector keeps running (no `collector_failed`), `owlet health` warns
/// naming the missing one, and a `capture_link_down` alert names it.
#[test]
fn a_missing_interface_fails_alone_and_the_others_capture() {
    let mut soc = Soc::init();
    soc.start();
    let db = soc.db();
    let mut agent = soc.issue("acme", "a");
    capture_on(&mut agent, "lo");
    agent.set(
        "capture",
        "interfaces",
        vec!["lo".to_string(), "owlet-none0".to_string()],
    );
    agent.start();
    wait_until(
        "health to warn about the missing interface",
        DEADLINE,
        || {
            agent.health().is_some_and(|h| {
                let c = &h["collectors"]["capture"];
                c["state"] == "running"
                    && c["verdict"] == "WARNING"
                    && c["reasons"]
                        .to_string()
                        .contains("owlet-none0 does not exist on this host")
                    && c["detail"]["interfaces"][1]["link"] == "missing"
                    && c["detail"]["interfaces"][0]["link"] == "up"
            })
        },
    );
    // lo captures meanwhile.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(TcpStream::connect(("127.0.0.1", port)).unwrap());
    drop(listener.accept().unwrap());
    wait_until(
        "a flow record of lo and the alert naming owlet-none0",
        DEADLINE,
        || {
            let events = db.events();
            events.iter().any(|e| {
            matches!(&e.event.kind, Some(Kind::FlowRecord(f)) if f.interface == "lo" && f.dst_port == u32::from(port))
        }) && events.iter().any(|e| {
            matches!(&e.event.kind, Some(Kind::Alert(a)) if a.name == "capture_link_down" && a.subject == "owlet-none0" && a.message.contains("does not exist"))
        })
        },
    );
    assert!(
        !db.events().iter().any(|e| {
            matches!(&e.event.kind, Some(Kind::Alert(a)) if a.name == "collector_failed")
        }),
        "the capture collector failed"
    );
    agent.drain_and_stop(DEADLINE);
}

#[test]
fn flows_are_also_exported_as_ipfix_when_a_collector_is_set() {
    let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .unwrap();
    let mut soc = Soc::init();
    soc.start();
    let mut agent = soc.issue("acme", "a");
    capture_on(&mut agent, "lo");
    agent.set(
        "capture",
        "ipfix_collector",
        collector.local_addr().unwrap().to_string(),
    );
    agent.start();
    // Loopback traffic until an IPFIX message with a data set arrives.
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = target.local_addr().unwrap().port();
    let mut buf = [0u8; 2048];
    let start = std::time::Instant::now();
    let mut data_sets = 0;
    while data_sets == 0 {
        assert!(start.elapsed() < DEADLINE, "no IPFIX data set arrived");
        drop(TcpStream::connect(("127.0.0.1", port)));
        if let Ok(n) = collector.recv(&mut buf) {
            // RFC 7011: version 10, then the length of the whole message.
            assert!(n >= 16, "short IPFIX message");
            assert_eq!(u16::from_be_bytes([buf[0], buf[1]]), 10);
            assert_eq!(usize::from(u16::from_be_bytes([buf[2], buf[3]])), n);
            // Sets follow the 16-byte header; id >= 256 is a data set.
            let mut off = 16;
            while off + 4 <= n {
                let id = u16::from_be_bytes([buf[off], buf[off + 1]]);
                let len = usize::from(u16::from_be_bytes([buf[off + 2], buf[off + 3]]));
                if id >= 256 {
                    data_sets += 1;
                }
                if len < 4 {
                    break;
                }
                off += len;
            }
        }
    }
    let health = agent.health().unwrap();
    assert!(
        health["collectors"]["capture"]["detail"]["ipfix"]["records_sent"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{health}"
    );
    agent.drain_and_stop(DEADLINE);
}
