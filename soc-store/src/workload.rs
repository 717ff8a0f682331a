//! A deterministic workload of agents' events for tests of the rollups
//! and of what reads them (reports), in either backend: a day of checks,
//! host metrics, heartbeats, file changes, alerts, data losses and flows
//! with enough sources and names to fill the bounded tables, and late
//! flows with keys never seen before. Test builds only (feature
//! `workload`); never a source of stored data.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use owlet_proto::v1::{
    AgentStatus, Alert, CheckResult, DataLoss, DiskUsage, Event, FileChange, FlowRecord,
    HostMetrics, Severity, State, event::Kind,
};

/// 2026-11-20T00:00:00Z.
pub const T0: u64 = 1_795_132_800;
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

pub fn time(hour: u64, second: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + hour * 3600 + second)
}

pub fn event(t: SystemTime, kind: Kind) -> Event {
    Event {
        seq: 0,
        time: Some(owlet_proto::timestamp(t)),
        kind: Some(kind),
    }
}

/// One agent's events of one hour, in time order.
pub fn hour_of_events(rng: &mut Rng, agent: usize, hour: u64, heavy: bool) -> Vec<Event> {
    let mut out = Vec::new();
    for minute in 0..60 {
        let t = time(hour, minute * 60 + rng.below(60));
        for check in ["web", "dns", "db"] {
            let roll = rng.below(100);
            let result = match roll {
                0..90 => State::Up,
                90..94 => State::Degraded,
                94..99 => State::Down,
                _ => State::Unknown,
            };
            // Log-uniform latency, 100 µs .. ~3 s.
            let latency = (100.0 * 2f64.powf(rng.below(15_000) as f64 / 1000.0)) as u64;
            out.push(event(
                t,
                Kind::CheckResult(CheckResult {
                    check_id: check.into(),
                    result: result as i32,
                    state: if roll < 97 { State::Up } else { State::Down } as i32,
                    duration_us: latency,
                    ..Default::default()
                }),
            ));
        }
        if minute % 5 == 0 {
            let memory_total = if rng.below(10) == 0 { 0 } else { 1000 };
            out.push(event(
                t,
                Kind::HostMetrics(HostMetrics {
                    cpu_percent: rng.below(10_000) as f64 / 100.0,
                    memory_total_bytes: memory_total,
                    memory_used_bytes: rng.below(1000),
                    disks: vec![DiskUsage {
                        total_bytes: 1000,
                        available_bytes: rng.below(1000),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            ));
            out.push(event(t, Kind::AgentStatus(AgentStatus::default())));
        }
        if rng.below(20) == 0 {
            out.push(event(
                t,
                Kind::FileChange(FileChange {
                    path: format!("/etc/app/{}.conf", rng.below(5)),
                    change: 1 + rng.below(5) as i32,
                    severity: Severity::Warning as i32,
                    ..Default::default()
                }),
            ));
        }
        if rng.below(15) == 0 {
            out.push(event(
                t,
                Kind::Alert(Alert {
                    name: ["check_down", "cpu_high", "file_changed"][rng.below(3) as usize].into(),
                    subject: "web".into(),
                    severity: 1 + rng.below(3) as i32,
                    new_state: if rng.below(2) == 0 {
                        State::Down
                    } else {
                        State::Up
                    } as i32,
                    ..Default::default()
                }),
            ));
        }
        if rng.below(50) == 0 {
            out.push(event(
                t,
                Kind::DataLoss(DataLoss {
                    events_lost: 7,
                    ..Default::default()
                }),
            ));
        }
        let flows = if heavy { 8 } else { 3 };
        for _ in 0..flows {
            let (port, protocol) = match rng.below(10) {
                0..4 => (443, 6),
                4..6 => (53, 17),
                6 => (80, 6),
                7 => (0, 1),
                _ => (1024 + rng.below(300) as u32, 6),
            };
            // Sizes spread over four orders of magnitude, so ranks are clear.
            let bytes = 40 + rng.below(10_000) * (1 + rng.below(100));
            let dns = rng.below(150);
            out.push(event(
                t,
                Kind::FlowRecord(FlowRecord {
                    src_addr: format!("10.{agent}.0.{}", rng.below(if heavy { 90 } else { 30 })),
                    dst_addr: format!("192.0.2.{}", rng.below(160)),
                    src_port: 40_000,
                    dst_port: port,
                    protocol,
                    bytes_out: bytes / 3,
                    bytes_in: bytes - bytes / 3,
                    packets_out: 1 + bytes / 3000,
                    packets_in: 1 + bytes / 1500,
                    dns_query: if port == 53 {
                        format!("host{dns}.example")
                    } else {
                        String::new()
                    },
                    tls_sni: if port == 443 {
                        format!("site{}.example", rng.below(40))
                    } else {
                        String::new()
                    },
                    http_host: if port == 80 {
                        "intranet.example".into()
                    } else {
                        String::new()
                    },
                    ..Default::default()
                }),
            ));
        }
    }
    out
}

/// A flow that arrives late with keys never seen before and tiny figures,
/// so it lands in the other row of a closed hour that is full.
pub fn late_flow(hour: u64, i: u64) -> Event {
    event(
        time(hour, 1800 + i),
        Kind::FlowRecord(FlowRecord {
            src_addr: format!("203.0.113.{i}"),
            dst_addr: format!("198.51.100.{i}"),
            dst_port: 60_000 + i as u32,
            protocol: 17,
            bytes_out: 1,
            packets_out: 1,
            dns_query: format!("late{i}.example"),
            ..Default::default()
        }),
    )
}
