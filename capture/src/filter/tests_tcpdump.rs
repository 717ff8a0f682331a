//! tcpdump as the reference for filter verdicts: `tcpdump -r IN -w OUT EXPR`
//! keeps the packets libpcap's compiler accepts; we compare them (timestamp
//! and bytes) with the packets our program accepts.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};

use super::bpf::kernel_view;
use super::compile;

pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    write_pcap_as(path, frames, pcap_file::DataLink::ETHERNET);
}

/// [`write_pcap`] with another link type in the file header.
pub fn write_pcap_as(path: &Path, frames: &[Vec<u8>], datalink: pcap_file::DataLink) {
    let header = pcap_file::pcap::PcapHeader {
        datalink,
        ..Default::default()
    };
    let mut w = PcapWriter::with_header(File::create(path).unwrap(), header).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write_packet(&PcapPacket::new(
            Duration::from_secs(i as u64 + 1),
            f.len() as u32,
            f,
        ))
        .unwrap();
    }
}

pub fn read_pcap(path: &Path) -> Vec<(Duration, Vec<u8>)> {
    let mut r = PcapReader::new(File::open(path).unwrap()).unwrap();
    let mut v = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        v.push((p.timestamp, p.data.to_vec()));
    }
    v
}

/// Packets of `path` that tcpdump keeps for `expr`.
pub fn tcpdump_kept(path: &Path, expr: &str) -> Vec<(Duration, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kept.pcap");
    let o = Command::new("tcpdump")
        .arg("-r")
        .arg(path)
        .arg("-w")
        .arg(&out)
        .arg(expr)
        .output()
        .expect("tcpdump runs (apt-get install tcpdump)");
    assert!(
        o.status.success(),
        "tcpdump `{expr}`: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    read_pcap(&out)
}

/// Packets of `path` that our compiled program keeps for `expr`.
pub fn ours_kept(path: &Path, expr: &str) -> Vec<(Duration, Vec<u8>)> {
    let p = compile(expr).unwrap_or_else(|e| panic!("{e}"));
    read_pcap(path)
        .into_iter()
        .filter(|(_, d)| {
            let mut s = Vec::new();
            p.matches(&kernel_view(d, &mut s))
        })
        .collect()
}

/// Indices (0-based) of the corpus written by [`write_pcap`] that tcpdump keeps.
pub fn tcpdump_indices(path: &Path, expr: &str) -> Vec<usize> {
    tcpdump_kept(path, expr)
        .iter()
        .map(|(t, _)| t.as_secs() as usize - 1)
        .collect()
}

/// Real traffic recorded by the crate's netns_traffic.sh (HTTP, DNS, pings,
/// fragments, TLS, a SYN scan): our verdicts equal tcpdump's on every
/// packet, for every expression.
#[test]
fn verdicts_equal_tcpdump_on_real_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("real.pcap");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/netns_traffic.sh");
    let o = Command::new("bash")
        .arg(&script)
        .arg(&pcap)
        .arg(dir.path())
        .output()
        .expect("bash runs");
    assert!(
        o.status.success(),
        "netns_traffic.sh: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let total = read_pcap(&pcap).len();
    assert!(total > 100, "{total} packets recorded");
    let mut nonempty = 0;
    for expr in [
        "tcp",
        "udp",
        "icmp",
        "arp",
        "ip6",
        "port 53",
        "tcp port 80",
        "udp and not port 53",
        "tcp and (port 443 or port 8443)",
        "src port 53 or dst port 80",
        "not tcp and not udp",
    ] {
        let ours = ours_kept(&pcap, expr);
        let theirs = tcpdump_kept(&pcap, expr);
        assert_eq!(
            ours.len(),
            theirs.len(),
            "filter `{expr}` on {total} packets"
        );
        assert!(
            ours == theirs,
            "filter `{expr}`: same count, different packets"
        );
        nonempty += !ours.is_empty() as usize;
    }
    // Host and net filters with the addresses the script used.
    let first_ip = read_pcap(&pcap)
        .iter()
        .find_map(|(_, d)| {
            (d.len() > 34 && d[12..14] == [8, 0]).then(|| [d[26], d[27], d[28], d[29]])
        })
        .unwrap();
    let a = format!(
        "{}.{}.{}.{}",
        first_ip[0], first_ip[1], first_ip[2], first_ip[3]
    );
    let net = format!("{}.{}.0.0/16", first_ip[0], first_ip[1]);
    for expr in [
        format!("host {a}"),
        format!("src host {a}"),
        format!("dst net {net} and tcp"),
        format!("not (host {a} and port 80)"),
    ] {
        let ours = ours_kept(&pcap, &expr);
        let theirs = tcpdump_kept(&pcap, &expr);
        assert!(
            ours == theirs,
            "filter `{expr}`: ours {} tcpdump {}",
            ours.len(),
            theirs.len()
        );
        nonempty += !ours.is_empty() as usize;
    }
    assert!(nonempty >= 10, "most filters keep something ({nonempty})");
}
