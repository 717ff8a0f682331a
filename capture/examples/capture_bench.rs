//! Bench-only: packets per second through owlet's decode + flow update on
//! one core, from a pcap file held in memory; also the decoder alone next
//! to `pnet_packet`'s views on the same frames, and the whole replay
//! (file reading included, as `softflowd -r` and `tshark -r` do).
//!
//! `capture_bench FILE.pcap` prints one line of `key=value`.

use std::hint::black_box;
use std::time::Instant;

use owlet_capture::decode::{LinkType, decode};
use owlet_capture::engine::{Config, Engine};
use pcap_file::pcap::PcapReader;
use pnet_packet::Packet as _;
use pnet_packet::ethernet::{EtherTypes, EthernetPacket};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::Ipv4Packet;
use pnet_packet::tcp::TcpPacket;
use pnet_packet::udp::UdpPacket;

fn pnet_decode(f: &[u8]) -> u64 {
    let Some(eth) = EthernetPacket::new(f) else {
        return 0;
    };
    if eth.get_ethertype() != EtherTypes::Ipv4 {
        return 0;
    }
    let Some(ip) = Ipv4Packet::new(eth.payload()) else {
        return 0;
    };
    let mut acc = u64::from(ip.get_total_length())
        ^ u64::from(u32::from(ip.get_source()))
        ^ u64::from(u32::from(ip.get_destination()));
    match ip.get_next_level_protocol() {
        IpNextHeaderProtocols::Tcp => {
            if let Some(t) = TcpPacket::new(ip.payload()) {
                acc ^= u64::from(t.get_source()) << 16
                    | u64::from(t.get_destination())
                    | u64::from(t.get_flags()) << 32;
            }
        }
        IpNextHeaderProtocols::Udp => {
            if let Some(u) = UdpPacket::new(ip.payload()) {
                acc ^= u64::from(u.get_source()) << 16 | u64::from(u.get_destination());
            }
        }
        _ => {}
    }
    acc
}

fn best<F: FnMut() -> u64>(runs: usize, mut f: F) -> (f64, u64) {
    let mut best = f64::MAX;
    let mut out = 0;
    for _ in 0..runs {
        let t = Instant::now();
        out = f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    (best, out)
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: capture_bench FILE.pcap");
    let mut rd =
        PcapReader::new(std::fs::File::open(&path).expect("open pcap")).expect("pcap header");
    let mut frames: Vec<(u64, u32, Vec<u8>)> = Vec::new();
    while let Some(p) = rd.next_packet() {
        let p = p.expect("packet");
        frames.push((
            p.timestamp.as_nanos() as u64,
            p.orig_len,
            p.data.into_owned(),
        ));
    }
    let n = frames.len() as f64;
    let cfg = Config::default();

    let (t_ours, _) = best(3, || {
        let mut acc = 0u64;
        for (_, len, d) in &frames {
            if let Ok(p) = decode(LinkType::Ethernet, d, *len) {
                acc ^= u64::from(p.ip_len)
                    ^ u64::from(p.src_port) << 16
                    ^ u64::from(p.tcp_flags) << 32;
            }
        }
        black_box(acc)
    });
    let (t_pnet, _) = best(3, || {
        let mut acc = 0u64;
        for (_, _, d) in &frames {
            acc ^= pnet_decode(d);
        }
        black_box(acc)
    });
    let (t_engine, flows) = best(3, || {
        let mut e = Engine::new(LinkType::Ethernet, cfg.clone());
        let mut records = 0u64;
        for (ts, len, d) in &frames {
            e.process(d, *len, *ts);
            records += e.drain().count() as u64;
        }
        records + e.active_flows() as u64
    });
    let (t_replay, _) = best(1, || {
        let r = owlet_capture::pcap::replay(std::path::Path::new(&path), cfg.clone(), |o| {
            black_box(o);
        })
        .expect("replay");
        r.packets
    });
    println!(
        "file={path} packets={} decode_mpps={:.2} pnet_decode_mpps={:.2} engine_mpps={:.2} replay_mpps={:.2} replay_seconds={:.3} flow_records_and_active={flows}",
        frames.len(),
        n / t_ours / 1e6,
        n / t_pnet / 1e6,
        n / t_engine / 1e6,
        n / t_replay / 1e6,
        t_replay,
    );
}
