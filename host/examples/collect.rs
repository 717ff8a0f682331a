//! Bench helper (bench/host/run.sh): runs owlet's host collection N times,
//! INTERVAL_MS apart, with the default configuration (thresholds, learning
//! in a temporary state directory), encodes each HostMetrics as the agent
//! would send it, and prints the CPU seconds (user + system, from
//! /proc/self/stat) the N collections cost, start-up excluded.
//!
//! Usage: collect N INTERVAL_MS

use std::time::Duration;

use owlet_host::{HostConfig, Monitor, Output};
use prost::Message;

fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15, i.e. 12 and 13 after ")".
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (n, interval_ms) = match args[..] {
        [n, ms] => (n, ms),
        _ => {
            eprintln!("usage: collect N INTERVAL_MS");
            std::process::exit(2);
        }
    };
    let state = std::env::temp_dir().join(format!("owlet-host-bench-{}", std::process::id()));
    let mut monitor = match Monitor::new(&HostConfig::default(), &state) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    // The first collection fills the process table: a running agent pays it once.
    monitor.collect();
    std::thread::sleep(Duration::from_millis(interval_ms));
    let mut bytes = 0usize;
    let before = cpu_ticks();
    for _ in 0..n {
        for output in monitor.collect() {
            if let Output::Metrics(m) = output {
                bytes += m.encode_to_vec().len();
            }
        }
        std::thread::sleep(Duration::from_millis(interval_ms));
    }
    let ticks = cpu_ticks() - before;
    let _ = std::fs::remove_dir_all(&state);
    println!("{:.3} {}", ticks as f64 / 100.0, bytes / n.max(1) as usize);
}
