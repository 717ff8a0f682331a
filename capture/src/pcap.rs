//! Offline source: pcap and pcapng files through the `pcap-file` crate
//! (pure Rust, no libpcap), fed into exactly the [`Engine`] a live capture
//! uses.
//!
//! The format is told by the file's magic number; link types: see
//! [`link_type`]. pcapng timestamps are
//! converted with each interface's `if_tsresol` (pcap-file 2 hands the raw
//! units over as nanoseconds; we scale them). A file that ends inside a
//! packet (a capture killed mid-write) is read up to that packet and the
//! cut is reported, not treated as a failure.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use pcap_file::DataLink;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{
    Block, PcapNgReader, blocks::interface_description::InterfaceDescriptionOption,
};

use crate::decode::LinkType;
use crate::engine::{Config, Engine, Output, Stats};

/// Why a capture file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PcapFileError {
    /// The file could not be opened.
    #[error("cannot open capture file {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not a pcap / pcapng file, or its header is broken.
    #[error(
        "{path} is not a pcap or pcapng file ({reason}); write captures with `tcpdump -w FILE` or `tshark -w FILE`"
    )]
    Format {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        reason: String,
    },
    /// A link type the decoder does not handle.
    #[error(
        "{path}: link type {link} is not supported (Ethernet, Linux SLL / SLL2, raw IP, BSD loopback NULL / LOOP, PPP and Cisco HDLC are); capture on an Ethernet interface or with `-i any`"
    )]
    LinkType {
        /// The file.
        path: PathBuf,
        /// The link type as pcap-file names it.
        link: String,
    },
}

/// What a replay did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ReplayReport {
    /// Packets read from the file.
    pub packets: u64,
    /// The file ended inside a packet or block (read up to there).
    pub truncated_file: bool,
    /// pcapng packets on interfaces whose link type is not supported.
    pub skipped_packets: u64,
    /// The engine's counters at the end.
    pub stats: Stats,
}

/// Map a pcap link type to the decoder's.
pub fn link_type(l: DataLink) -> Option<LinkType> {
    match l {
        DataLink::ETHERNET => Some(LinkType::Ethernet),
        DataLink::LINUX_SLL => Some(LinkType::LinuxSll),
        DataLink::LINUX_SLL2 => Some(LinkType::LinuxSll2),
        // 12 and 14 are DLT_RAW on some BSDs (OpenBSD writes 14), seen in
        // files written with the DLT rather than the LINKTYPE number.
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 | DataLink::Unknown(12 | 14) => {
            Some(LinkType::RawIp)
        }
        DataLink::NULL => Some(LinkType::Null),
        DataLink::LOOP => Some(LinkType::Loop),
        DataLink::PPP | DataLink::PPP_HDLC => Some(LinkType::Ppp),
        DataLink::C_HDLC => Some(LinkType::CHdlc),
        _ => None,
    }
}

fn ts_scale(raw: u64, tsresol: u8) -> u64 {
    if tsresol & 0x80 == 0 {
        let exp = (tsresol & 0x7F) as u32;
        if exp <= 9 {
            raw.saturating_mul(10u64.pow(9 - exp))
        } else {
            raw / 10u64.saturating_pow(exp - 9)
        }
    } else {
        let exp = (tsresol & 0x7F) as u32;
        ((raw as u128 * 1_000_000_000u128) >> exp.min(127)) as u64
    }
}

/// Read a capture file through a new [`Engine`], handing every output to
/// `sink` as it appears, then flush the flows and the last summary.
pub fn replay(
    path: &Path,
    cfg: Config,
    mut sink: impl FnMut(Output),
) -> Result<ReplayReport, PcapFileError> {
    let file = File::open(path).map_err(|source| PcapFileError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)
        .map_err(|e| PcapFileError::Format {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let chained = std::io::Cursor::new(magic).chain(r);
    let fmt = |e: pcap_file::PcapError| PcapFileError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut report = ReplayReport::default();
    let engine = if magic == [0x0A, 0x0D, 0x0D, 0x0A] {
        let mut rd = PcapNgReader::new(chained).map_err(fmt)?;
        let mut ifaces: Vec<(Option<LinkType>, u8)> = Vec::new();
        let mut engine: Option<Engine> = None;
        let mut last_ts = 0u64;
        while let Some(b) = rd.next_block() {
            let b = match b {
                Ok(b) => b,
                Err(_) => {
                    report.truncated_file = true;
                    break;
                }
            };
            let (iface, raw_ts, orig, data) = match &b {
                Block::SectionHeader(_) => {
                    ifaces.clear();
                    continue;
                }
                Block::InterfaceDescription(idb) => {
                    let resol = idb
                        .options
                        .iter()
                        .find_map(|o| match o {
                            InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                            _ => None,
                        })
                        .unwrap_or(6);
                    ifaces.push((link_type(idb.linktype), resol));
                    continue;
                }
                Block::EnhancedPacket(p) => (
                    p.interface_id as usize,
                    Some(p.timestamp.as_nanos() as u64),
                    p.original_len,
                    &p.data,
                ),
                Block::SimplePacket(p) => (0, None, p.original_len, &p.data),
                _ => continue,
            };
            let Some(&(Some(link), resol)) = ifaces.get(iface) else {
                report.skipped_packets += 1;
                continue;
            };
            if let Some(raw) = raw_ts {
                last_ts = ts_scale(raw, resol);
            }
            let e = engine.get_or_insert_with(|| Engine::new(link, cfg.clone()));
            e.process_as(link, data, orig, last_ts);
            report.packets += 1;
            for o in e.drain() {
                sink(o);
            }
        }
        if engine.is_none() && report.skipped_packets > 0 {
            return Err(PcapFileError::LinkType {
                path: path.to_path_buf(),
                link: "(every interface)".into(),
            });
        }
        engine
    } else {
        let mut rd = PcapReader::new(chained).map_err(fmt)?;
        let dl = rd.header().datalink;
        let link = link_type(dl).ok_or_else(|| PcapFileError::LinkType {
            path: path.to_path_buf(),
            link: format!("{dl:?}"),
        })?;
        let mut e = Engine::new(link, cfg);
        while let Some(p) = rd.next_packet() {
            let p = match p {
                Ok(p) => p,
                Err(_) => {
                    report.truncated_file = true;
                    break;
                }
            };
            let ts = p.timestamp.as_nanos().min(u64::MAX as u128) as u64;
            e.process(&p.data, p.orig_len, ts);
            report.packets += 1;
            for o in e.drain() {
                sink(o);
            }
        }
        Some(e)
    };
    if let Some(mut e) = engine {
        e.finish();
        for o in e.drain() {
            sink(o);
        }
        report.stats = e.stats().clone();
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

    use crate::decode::tcp_flags::{ACK, FIN, SYN};
    use crate::decode::tests::{eth_ipv4, tcp, udp};
    use crate::engine::{EndReason, FlowRecord};

    /// IP packets: a TCP connection opened and closed with FINs, a UDP
    /// datagram to 10.0.0.9:53, and an IPv6 UDP datagram to port 547.
    fn ip_packets() -> Vec<(bool, Vec<u8>)> {
        let (c, s) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let v4 = |src, dst, proto, l4: Vec<u8>| {
            (false, eth_ipv4(src, dst, proto, &l4, &[])[14..].to_vec())
        };
        let mut v6 = vec![0x60, 0, 0, 0, 0, 9, 17, 64];
        v6.extend_from_slice(&[0xfe, 0x80]);
        v6.extend_from_slice(&[0; 13]);
        v6.push(1);
        v6.extend_from_slice(&[0xff, 0x02]);
        v6.extend_from_slice(&[0; 13]);
        v6.push(2);
        v6.extend_from_slice(&udp(546, 547, b"x"));
        vec![
            v4(c, s, 6, tcp(40000, 80, 1, SYN, b"")),
            v4(s, c, 6, tcp(80, 40000, 9, SYN | ACK, b"")),
            v4(c, s, 6, tcp(40000, 80, 2, ACK, b"")),
            v4(c, s, 6, tcp(40000, 80, 2, FIN | ACK, b"")),
            v4(s, c, 6, tcp(80, 40000, 10, FIN | ACK, b"")),
            v4(c, s, 6, tcp(40000, 80, 3, ACK, b"")),
            v4(c, [10, 0, 0, 9], 17, udp(5353, 53, b"q")),
            (true, v6),
        ]
    }

    /// Replay [`ip_packets`] behind `v4` / `v6` link headers in a pcap
    /// file of link type `dl`; the flows.
    fn replay_as(dl: DataLink, v4: &[u8], v6: &[u8]) -> (Vec<FlowRecord>, ReplayReport) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pcap");
        let header = PcapHeader {
            datalink: dl,
            ..PcapHeader::default()
        };
        let mut w = PcapWriter::with_header(File::create(&path).unwrap(), header).unwrap();
        for (i, (is_v6, p)) in ip_packets().into_iter().enumerate() {
            let f = [if is_v6 { v6 } else { v4 }, &p].concat();
            let ts = Duration::from_secs(1_700_000_000) + Duration::from_millis(i as u64);
            w.write_packet(&PcapPacket::new(ts, f.len() as u32, &f))
                .unwrap();
        }
        drop(w);
        let mut flows = Vec::new();
        let report = replay(&path, Config::default(), |o| {
            if let Output::Flow(f) = o {
                flows.push(f);
            }
        })
        .unwrap_or_else(|e| panic!("{dl:?}: {e}"));
        flows.sort_by_key(|f| f.dst_port);
        (flows, report)
    }

    /// Every link type `owlet capture --pcap` reads: the same three flows,
    /// no decode error. The TCP connection closed with FINs ends as a FIN
    /// close at the end of the file (before, every flow said Shutdown);
    /// the others were still open.
    #[test]
    fn every_supported_link_type_gives_the_same_flows() {
        let sll = |et: [u8; 2]| [&[0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0][..], &et].concat();
        let sll2 = |et: [u8; 2]| {
            [
                &et[..],
                &[0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0],
            ]
            .concat()
        };
        let cases: Vec<(DataLink, Vec<u8>, Vec<u8>)> = vec![
            (
                DataLink::ETHERNET,
                [&[2u8; 12][..], &[8, 0]].concat(),
                [&[2u8; 12][..], &[0x86, 0xdd]].concat(),
            ),
            (DataLink::NULL, vec![2, 0, 0, 0], vec![30, 0, 0, 0]),
            (DataLink::NULL, vec![0, 0, 0, 2], vec![0, 0, 0, 24]),
            (DataLink::LOOP, vec![0, 0, 0, 2], vec![0, 0, 0, 28]),
            (
                DataLink::PPP,
                vec![0xff, 0x03, 0, 0x21],
                vec![0xff, 0x03, 0, 0x57],
            ),
            (
                DataLink::PPP_HDLC,
                vec![0xff, 0x03, 0, 0x21],
                vec![0xff, 0x03, 0, 0x57],
            ),
            (
                DataLink::C_HDLC,
                vec![0x0f, 0, 8, 0],
                vec![0x0f, 0, 0x86, 0xdd],
            ),
            (DataLink::RAW, vec![], vec![]),
            (DataLink::Unknown(12), vec![], vec![]),
            (DataLink::Unknown(14), vec![], vec![]),
            (DataLink::LINUX_SLL, sll([8, 0]), sll([0x86, 0xdd])),
            (DataLink::LINUX_SLL2, sll2([8, 0]), sll2([0x86, 0xdd])),
        ];
        for (dl, v4, v6) in cases {
            let (flows, report) = replay_as(dl, &v4, &v6);
            assert_eq!(report.packets, 8, "{dl:?}");
            assert_eq!(report.stats.decode_errors, [0; 4], "{dl:?}");
            let got: Vec<(u16, u64, u64, EndReason)> = flows
                .iter()
                .map(|f| (f.dst_port, f.packets_out, f.packets_in, f.end_reason))
                .collect();
            assert_eq!(
                got,
                vec![
                    (53, 1, 0, EndReason::Shutdown),
                    (80, 4, 2, EndReason::TcpFin),
                    (547, 1, 0, EndReason::Shutdown),
                ],
                "{dl:?}"
            );
            assert_eq!(flows[2].src.to_string(), "fe80::1", "{dl:?}");
        }
    }

    #[test]
    fn an_unsupported_link_type_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pcap");
        let header = PcapHeader {
            datalink: DataLink::IEEE802_11,
            ..PcapHeader::default()
        };
        drop(PcapWriter::with_header(File::create(&path).unwrap(), header).unwrap());
        let e = replay(&path, Config::default(), |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("link type IEEE802_11 is not supported"), "{e}");
        assert!(
            e.contains("BSD loopback NULL / LOOP, PPP and Cisco HDLC"),
            "{e}"
        );
    }

    #[test]
    fn tsresol_scaling() {
        assert_eq!(ts_scale(1_500_000, 6), 1_500_000_000);
        assert_eq!(ts_scale(7, 9), 7);
        assert_eq!(ts_scale(1 << 20, 0x80 | 20), 1_000_000_000);
    }
}
