//! Helpers shared by the spool's integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use owlet_proto::v1::{self, event::Kind};
use owlet_spool::{Durability, Event, SpoolConfig};

/// Number of distinct kinds `event` produces (8 real ones + "unknown").
pub const KINDS: u8 = 9;

/// A deterministic event of kind `kind % KINDS` with about `size` payload bytes.
pub fn event(kind: u8, size: usize, time_us: i64) -> Event {
    let s = "x".repeat(size);
    let kind = match kind % KINDS {
        0 => Some(Kind::CheckResult(v1::CheckResult {
            message: s,
            ..Default::default()
        })),
        1 => Some(Kind::Alert(v1::Alert {
            message: s,
            ..Default::default()
        })),
        2 => Some(Kind::HostMetrics(v1::HostMetrics {
            cpu_core_percent: vec![1.0; size / 8],
            ..Default::default()
        })),
        3 => Some(Kind::FlowRecord(v1::FlowRecord {
            interface: s,
            ..Default::default()
        })),
        4 => Some(Kind::FileChange(v1::FileChange {
            path: s,
            ..Default::default()
        })),
        5 => Some(Kind::AgentStatus(v1::AgentStatus {
            agent_version: s,
            ..Default::default()
        })),
        // An empty report: a report's own counts are carried into the report
        // of its loss (tested on its own), which would blur the exact counts
        // the other tests check.
        6 => Some(Kind::DataLoss(v1::DataLoss::default())),
        7 => Some(Kind::CaptureStats(v1::CaptureStats {
            interface: s,
            ..Default::default()
        })),
        _ => None,
    };
    Event {
        seq: 0,
        time: Some(owlet_proto::Timestamp {
            seconds: time_us.div_euclid(1_000_000),
            nanos: (time_us.rem_euclid(1_000_000) * 1000) as i32,
        }),
        kind,
    }
}

pub fn config(dir: &Path, segment_bytes: u64, max_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes,
        max_age: Duration::from_secs(3600),
        segment_bytes,
        max_batches: 1_000_000,
        durability: Durability::Interval(Duration::from_secs(3600)),
    }
}

pub fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}
