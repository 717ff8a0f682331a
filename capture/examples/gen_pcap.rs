//! Bench-only generator of synthetic pcap files (not part of the agent).
//!
//! `gen_pcap small|imix PACKETS FLOWS OUT.pcap`
//! - small: 60-byte captured frames (64 bytes on the wire with the FCS),
//!   Ethernet / IPv4 / TCP, flows picked at random among FLOWS;
//! - imix: 7:4:1 frames of 60, 590 and 1514 bytes (the simple IMIX),
//!   TCP and UDP mixed.
//!
//! Packets are 1 µs apart in capture time (about 1 GbE line rate for small
//! frames), so flow timeouts and summaries run as they would live.

use std::fs::File;
use std::io::BufWriter;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 5 {
        eprintln!("usage: gen_pcap small|imix PACKETS FLOWS OUT.pcap");
        std::process::exit(2);
    }
    let imix = match a[1].as_str() {
        "small" => false,
        "imix" => true,
        k => {
            eprintln!("unknown kind {k}: use small or imix");
            std::process::exit(2);
        }
    };
    let packets: u64 = a[2].parse().expect("PACKETS is a number");
    let flows: u32 = a[3].parse().expect("FLOWS is a number");
    let out = BufWriter::with_capacity(1 << 20, File::create(&a[4]).expect("OUT is writable"));
    let mut w = PcapWriter::with_header(
        out,
        PcapHeader {
            snaplen: 65535,
            ..PcapHeader::default()
        },
    )
    .expect("pcap header");
    let mut rng: u64 = 0x1234_5678_9abc_def1;
    let mut frame = vec![0u8; 1514];
    let t0 = Duration::from_secs(1_700_000_000);
    for n in 0..packets {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let flow = (rng % flows as u64) as u32;
        let reply = rng & (1 << 40) != 0;
        let len = if imix {
            match n % 12 {
                0..=6 => 60,
                7..=10 => 590,
                _ => 1514,
            }
        } else {
            60
        };
        let udp = imix && flow.is_multiple_of(4);
        build(&mut frame[..len], flow, reply, udp, len);
        let p = PcapPacket::new(t0 + Duration::from_micros(n), len as u32, &frame[..len]);
        w.write_packet(&p).expect("write packet");
    }
}

fn build(f: &mut [u8], flow: u32, reply: bool, udp: bool, len: usize) {
    f.fill(0);
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_total = if len == 60 { 40 } else { len - 14 };
    let client = [10, (flow >> 16) as u8, (flow >> 8) as u8, flow as u8];
    let server = [172, 16, (flow % 251) as u8, 1 + (flow % 7) as u8];
    let (src, dst) = if reply {
        (server, client)
    } else {
        (client, server)
    };
    let proto = if udp { 17 } else { 6 };
    f[14..34].copy_from_slice(&[
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    f[16..18].copy_from_slice(&(ip_total as u16).to_be_bytes());
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    let cport = 1024 + (flow % 60000) as u16;
    let sport = [443u16, 80, 53, 22, 445][(flow % 5) as usize];
    let (sp, dp) = if reply {
        (sport, cport)
    } else {
        (cport, sport)
    };
    f[34..36].copy_from_slice(&sp.to_be_bytes());
    f[36..38].copy_from_slice(&dp.to_be_bytes());
    if udp {
        f[38..40].copy_from_slice(&((ip_total - 20) as u16).to_be_bytes());
    } else {
        f[38..42].copy_from_slice(&flow.to_be_bytes());
        f[46] = 0x50;
        f[47] = 0x10; // ACK
        f[48] = 0xff;
    }
}
