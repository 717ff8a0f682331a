//! Live capture in the real agent: flow records and capture summaries from
//! loopback traffic reach the SOC, the agent's own SOC connection is left
//! out, and a missing interface fails the capture collector alone.

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

#[test]
fn a_missing_interface_fails_the_capture_alone() {
    let mut soc = Soc::init();
    soc.start();
    let db = soc.db();
    let mut agent = soc.issue("acme", "a");
    capture_on(&mut agent, "owlet-none0");
    agent.start();
    wait_until("health to show capture failing", DEADLINE, || {
        agent.health().is_some_and(|h| {
            h["collectors"]["capture"]["state"] == "restarting"
                && h["verdict"] == "CRITICAL"
                && h["reasons"].to_string().contains("owlet-none0")
        })
    });
    // The rest of the agent runs on: heartbeats and the failure alert arrive.
    wait_until(
        "heartbeats and a collector_failed alert at the SOC",
        DEADLINE,
        || {
            let events = db.events();
            events
            .iter()
            .any(|e| matches!(&e.event.kind, Some(Kind::AgentStatus(_))))
            && events.iter().any(|e| {
                matches!(&e.event.kind, Some(Kind::Alert(a)) if a.name == "collector_failed" && a.message.contains("owlet-none0"))
            })
        },
    );
    agent.drain_and_stop(DEADLINE);
}
