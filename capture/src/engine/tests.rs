//! The engine on crafted packets: flows, timeouts, fragments, names, summaries, mining evidence.

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
