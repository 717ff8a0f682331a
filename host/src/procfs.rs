//! What sysinfo does not give in the shape owlet needs, read from `/proc`
//! and `/sys` directly: block-device I/O counters (`/proc/diskstats`),
//! interface counters with drops (`/proc/net/dev`), operational state and
//! interface index (`/sys/class/net/*/operstate`, `ifindex`).
//!
//! Guarantees: the parsers are pure functions over text and never panic on
//! odd input (a malformed line is skipped); [`rate`] never returns a
//! negative, infinite or NaN value: a counter that went backwards (it
//! wrapped, or the device was re-created) gives 0 for that interval and the
//! new value becomes the base for the next one.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

/// Per-second rate of a counter between two readings `seconds` apart.
pub fn rate(previous: u64, current: u64, seconds: f64) -> f64 {
    if current < previous || !(seconds.is_finite() && seconds > 0.0) {
        return 0.0;
    }
    (current - previous) as f64 / seconds
}

/// Counters of one block device (`/proc/diskstats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskCounters {
    pub reads: u64,
    pub read_sectors: u64,
    pub writes: u64,
    pub write_sectors: u64,
    /// Milliseconds spent doing I/O.
    pub busy_ms: u64,
}

/// `/proc/diskstats` lines of the devices in `whole` (whole disks, not
/// partitions: their I/O is already in the disk's).
pub fn parse_diskstats(text: &str, whole: &dyn Fn(&str) -> bool) -> Vec<(String, DiskCounters)> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let name = *f.get(2)?;
            if !whole(name) {
                return None;
            }
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            Some((
                name.to_string(),
                DiskCounters {
                    reads: n(3)?,
                    read_sectors: n(5)?,
                    writes: n(7)?,
                    write_sectors: n(9)?,
                    busy_ms: n(12)?,
                },
            ))
        })
        .collect()
}

/// Whether a block device is a whole disk worth reporting: listed in
/// `/sys/block` and not a loop or RAM device.
pub fn is_whole_disk(name: &str) -> bool {
    !name.starts_with("loop")
        && !name.starts_with("ram")
        && !name.starts_with("zram")
        && Path::new("/sys/block").join(name).exists()
}

/// Counters of one network interface (`/proc/net/dev`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// `/proc/net/dev` as (interface, counters), in file order.
pub fn parse_net_dev(text: &str) -> Vec<(String, NetCounters)> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().ok())
                .collect::<Option<_>>()?;
            if f.len() < 16 {
                return None;
            }
            Some((
                name.trim().to_string(),
                NetCounters {
                    rx_bytes: f[0],
                    rx_packets: f[1],
                    rx_errors: f[2],
                    rx_dropped: f[3],
                    tx_bytes: f[8],
                    tx_packets: f[9],
                    tx_errors: f[10],
                    tx_dropped: f[11],
                },
            ))
        })
        .collect()
}

/// `operstate` and `ifindex` of an interface from `/sys/class/net`
/// ("unknown" and 0 when unreadable).
pub fn interface_state(name: &str) -> (String, u64) {
    let dir = Path::new("/sys/class/net").join(name);
    let state = fs::read_to_string(dir.join("operstate"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    let index = fs::read_to_string(dir.join("ifindex"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    (state, index)
}

/// Reads a whole `/proc` file; empty on error (the caller reports nothing
/// for that part rather than failing the whole sample).
pub fn read(path: &str) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// Readings of the previous sample, keyed by name plus an identity that
/// changes when the thing is re-created (ifindex for interfaces).
#[derive(Debug, Default)]
pub struct Previous<T> {
    by_name: HashMap<String, (u64, T)>,
}

impl<T: Copy> Previous<T> {
    /// Stores `current` and returns the previous reading of the same thing,
    /// or `None` when it is new or was re-created.
    pub fn swap(&mut self, name: &str, identity: u64, current: T) -> Option<T> {
        match self.by_name.insert(name.to_string(), (identity, current)) {
            Some((id, previous)) if id == identity => Some(previous),
            _ => None,
        }
    }

    /// Forgets things not seen in the last sample.
    pub fn retain(&mut self, seen: &dyn Fn(&str) -> bool) {
        self.by_name.retain(|name, _| seen(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_never_go_negative_or_huge_on_wrap_or_reset() {
        assert_eq!(rate(100, 300, 2.0), 100.0);
        // A 32-bit counter wrapped, or the interface was re-created.
        assert_eq!(rate(u32::MAX as u64 - 5, 10, 30.0), 0.0);
        assert_eq!(rate(u64::MAX, 0, 30.0), 0.0);
        assert_eq!(rate(5, 10, 0.0), 0.0);
        assert_eq!(rate(5, 10, f64::NAN), 0.0);
    }

    #[test]
    fn a_recreated_interface_starts_a_new_base() {
        let mut prev = Previous::default();
        assert_eq!(prev.swap("eth0", 2, 10u64), None);
        assert_eq!(prev.swap("eth0", 2, 20u64), Some(10));
        // Same name, new ifindex: the old counters say nothing about it.
        assert_eq!(prev.swap("eth0", 7, 5u64), None);
        assert_eq!(prev.swap("eth0", 7, 9u64), Some(5));
        prev.retain(&|n| n != "eth0");
        assert_eq!(prev.swap("eth0", 7, 9u64), None);
    }

    #[test]
    fn net_dev_parses_and_skips_garbage() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
 lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0\n  \
 eth0: 5 6 7 8 0 0 0 0 9 10 11 12 0 0 0 0\n\
 bad: 1 2 x\n";
        let parsed = parse_net_dev(text);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].0, "eth0");
        assert_eq!(
            parsed[1].1,
            NetCounters {
                rx_bytes: 5,
                rx_packets: 6,
                rx_errors: 7,
                rx_dropped: 8,
                tx_bytes: 9,
                tx_packets: 10,
                tx_errors: 11,
                tx_dropped: 12
            }
        );
    }

    #[test]
    fn diskstats_keeps_whole_disks() {
        let text = "   8       0 sda 100 0 2000 0 50 0 4000 0 0 700 0\n   8       1 sda1 1 0 2 0 3 0 4 0 0 5 0\n bogus\n";
        let parsed = parse_diskstats(text, &|n| n == "sda");
        assert_eq!(
            parsed,
            vec![(
                "sda".to_string(),
                DiskCounters {
                    reads: 100,
                    read_sectors: 2000,
                    writes: 50,
                    write_sectors: 4000,
                    busy_ms: 700
                }
            )]
        );
    }
}
