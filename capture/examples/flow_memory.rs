//! Bench-only: resident memory of the engine with N active flows.
//!
//! `flow_memory [N]` (default 1,000,000) creates N TCP flows through
//! `Engine::process` and prints the RSS growth per flow.

use owlet_capture::decode::LinkType;
use owlet_capture::engine::{Config, Engine};

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("N is a number"))
        .unwrap_or(1_000_000);
    let before = rss_kib();
    let mut e = Engine::new(
        LinkType::Ethernet,
        Config {
            max_flows: n as usize,
            ..Config::default()
        },
    );
    let mut f = vec![0u8; 60];
    f[12] = 0x08;
    f[14..34].copy_from_slice(&[
        0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 0, 172, 16, 0, 1,
    ]);
    f[46] = 0x50;
    f[47] = 0x02; // SYN
    let t0 = 1_700_000_000_000_000_000u64;
    for i in 0..n {
        f[27..30].copy_from_slice(&i.to_be_bytes()[1..]);
        f[34..36].copy_from_slice(&(1024 + (i >> 24) as u16).to_be_bytes());
        f[36..38].copy_from_slice(&445u16.to_be_bytes());
        e.process(&f, 60, t0 + u64::from(i) * 1000);
        e.drain().for_each(drop);
    }
    let after = rss_kib();
    println!(
        "flows={} rss_before_kib={before} rss_after_kib={after} bytes_per_flow={:.0} evicted={}",
        e.active_flows(),
        (after - before) as f64 * 1024.0 / e.active_flows() as f64,
        e.stats().flows_evicted
    );
}
