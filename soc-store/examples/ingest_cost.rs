//! Ingest cost of `TenantLog::append`: CPU and wall time per stored event,
//! for a check-only load (what the pipeline benchmark's loadgen sends) or
//! a flow-heavy mix (80 % flows over ~1,000 sources, ~2,000 destinations
//! and 300 SNI names, uniformly random: the worst case for the rollups).
//!
//! ```text
//! cargo run --release -p owlet-soc-store --example ingest_cost -- MIX EVENTS DIR [BATCH]
//! ```
//! MIX is `checks` or `mixed`; DIR holds the temporary store. To compare
//! with an earlier store, build this file against it (see the commit that
//! added the rollups for the figures).
use std::time::{Duration, Instant, UNIX_EPOCH};

use owlet_proto::v1::{CheckResult, Event, FlowRecord, HostMetrics, State, event::Kind};
use owlet_soc_store::{Batch, Store};

fn cpu_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: ingest_cost checks|mixed EVENTS DIR [BATCH]");
        std::process::exit(2);
    }
    let mix = args[1].as_str();
    let n: u64 = args[2].parse().unwrap();
    let dir = tempfile::tempdir_in(&args[3]).unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut log = store.writer("acme").unwrap();
    let t0 = UNIX_EPOCH + Duration::from_secs(1_795_132_800);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let batch: u64 = args.get(4).map_or(500, |b| b.parse().unwrap());
    let mut seq = 0;
    let (mut cpu, mut wall) = (0u64, Duration::ZERO);
    while seq < n {
        let events: Vec<Event> = (0..batch)
            .map(|i| {
                let s = seq + i + 1;
                // 1,000 events per second of event time.
                let t = t0 + Duration::from_millis(s);
                let kind = if mix == "checks" {
                    Kind::CheckResult(CheckResult {
                        check_id: "synthetic".into(),
                        target: "127.0.0.1:9".into(),
                        result: State::Up as i32,
                        state: State::Up as i32,
                        message: s.to_string(),
                        duration_us: 1234,
                        ..Default::default()
                    })
                } else {
                    match rnd() % 10 {
                        0 => Kind::CheckResult(CheckResult {
                            check_id: format!("c{}", rnd() % 20),
                            result: State::Up as i32,
                            duration_us: rnd() % 100_000,
                            ..Default::default()
                        }),
                        1 => Kind::HostMetrics(HostMetrics {
                            cpu_percent: (rnd() % 100) as f64,
                            memory_total_bytes: 100,
                            memory_used_bytes: rnd() % 100,
                            ..Default::default()
                        }),
                        _ => Kind::FlowRecord(FlowRecord {
                            src_addr: format!("10.0.{}.{}", rnd() % 4, rnd() % 250),
                            dst_addr: format!("198.51.{}.{}", rnd() % 8, rnd() % 250),
                            src_port: 40000,
                            dst_port: [443, 80, 53, 22][(rnd() % 4) as usize]
                                + (rnd() % 2) as u32 * 1000,
                            protocol: 6,
                            bytes_out: rnd() % 100_000,
                            packets_out: 3,
                            tls_sni: format!("site{}.example", rnd() % 300),
                            ..Default::default()
                        }),
                    }
                };
                Event {
                    seq: s,
                    time: Some(owlet_proto::timestamp(t)),
                    kind: Some(kind),
                }
            })
            .collect();
        let received = t0 + Duration::from_millis(seq + batch) + Duration::from_secs(1);
        let (c0, w0) = (cpu_ticks(), Instant::now());
        log.append(
            &[Batch {
                agent: "s1",
                zone: "UTC",
                events: &events,
                sequenced: true,
            }],
            received,
        )
        .unwrap();
        wall += w0.elapsed();
        cpu += cpu_ticks() - c0;
        seq += batch;
    }
    println!(
        "{mix} {n} events: cpu {:.2} us/event, wall {:.2} us/event",
        cpu as f64 * 10_000.0 / n as f64,
        wall.as_micros() as f64 / n as f64
    );
}
