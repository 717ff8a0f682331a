//! Offline source: pcap and pcapng files through the `pcap-file` crate
//! (pure Rust, no libpcap), fed into exactly the [`Engine`] a live capture
//! uses.
//!
//! The format is told by the file's magic number. pcapng timestamps are
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
        "{path}: link type {link} is not supported (Ethernet, Linux SLL / SLL2 and raw IP are); capture on an Ethernet interface or with `-i any`"
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
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Some(LinkType::RawIp),
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

    #[test]
    fn tsresol_scaling() {
        assert_eq!(ts_scale(1_500_000, 6), 1_500_000_000);
        assert_eq!(ts_scale(7, 9), 7);
        assert_eq!(ts_scale(1 << 20, 0x80 | 20), 1_000_000_000);
    }
}
