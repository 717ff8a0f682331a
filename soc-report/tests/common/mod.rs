//! Shared by the report tests: a tenant log filled with known events.
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use owlet_proto::v1::{
    AgentStatus, Alert, CheckResult, DataLoss, Event, FileChange, FlowRecord, HostMetrics,
    Severity, State, event::Kind,
};
use owlet_soc_store::{Batch, Store};

/// 2026-11-01T00:00:00+09:00 (2026-10-31T15:00:00Z).
pub const NOV_TOKYO: u64 = 1_793_458_800;

pub fn t(seconds_after_nov_tokyo: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs((NOV_TOKYO as i64 + seconds_after_nov_tokyo) as u64)
}

pub fn ev(at: i64, kind: Kind) -> Event {
    Event {
        seq: 0,
        time: Some(owlet_proto::timestamp(t(at))),
        kind: Some(kind),
    }
}

pub fn check(at: i64, id: &str, result: State, latency_us: u64) -> Event {
    ev(
        at,
        Kind::CheckResult(CheckResult {
            check_id: id.into(),
            result: result as i32,
            state: result as i32,
            duration_us: latency_us,
            ..Default::default()
        }),
    )
}

pub fn alert(at: i64, subject: &str, state: State, severity: Severity) -> Event {
    ev(
        at,
        Kind::Alert(Alert {
            name: "check_down".into(),
            source: "check".into(),
            subject: subject.into(),
            severity: severity as i32,
            new_state: state as i32,
            ..Default::default()
        }),
    )
}

pub fn flow(at: i64, src: &str, dst: &str, port: u32, bytes: u64, sni: &str) -> Event {
    ev(
        at,
        Kind::FlowRecord(FlowRecord {
            src_addr: src.into(),
            dst_addr: dst.into(),
            dst_port: port,
            protocol: 6,
            bytes_out: bytes,
            packets_out: 1,
            tls_sni: sni.into(),
            ..Default::default()
        }),
    )
}

pub const DAY: i64 = 86_400;

/// A new store holding [`fill`]'s tenant (the directory goes with it).
pub fn filled() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store);
    (dir, store)
}

/// A month of one sensor `s1` in tenant acme, with known figures.
pub fn fill(store: &Store) {
    append(store, "acme", "s1", known_events());
}

/// Stores `events` of `agent` (numbered from 1) in `tenant`'s log.
pub fn append(store: &Store, tenant: &str, agent: &str, mut events: Vec<Event>) {
    for (i, e) in events.iter_mut().enumerate() {
        e.seq = i as u64 + 1;
    }
    store
        .writer(tenant)
        .unwrap()
        .append(
            &[Batch {
                agent,
                zone: "Asia/Tokyo",
                events: &events,
                sequenced: true,
            }],
            t(25 * DAY),
        )
        .unwrap();
}

/// The events of [`fill`].
pub fn known_events() -> Vec<Event> {
    let mut events = vec![
        // Before the month: not counted.
        check(-1800, "web", State::Down, 1000),
        // 00:30 on Nov 1 in Tokyo, still October in UTC.
        check(1800, "vpn", State::Up, 1000),
        // A raise in October, cleared in November.
        alert(-2 * DAY, "db", State::Down, Severity::Critical),
        alert(DAY + 600, "db", State::Up, Severity::Info),
    ];
    // 10 web checks on Nov 2: 9 up at 10..90 ms, one down.
    for i in 0..10 {
        let result = if i == 4 { State::Down } else { State::Up };
        events.push(check(DAY + i * 60, "web", result, 10_000 * (i as u64 + 1)));
    }
    // An incident of 5 minutes, and one still open at the end of the month.
    events.push(alert(DAY + 240, "web", State::Down, Severity::Critical));
    events.push(alert(DAY + 540, "web", State::Up, Severity::Info));
    events.push(alert(20 * DAY, "dns", State::Down, Severity::Warning));
    // Flows: 10.0.0.1 sends most.
    events.push(flow(
        DAY,
        "10.0.0.1",
        "192.0.2.1",
        443,
        9_000,
        "example.org",
    ));
    events.push(flow(
        DAY + 1,
        "10.0.0.1",
        "192.0.2.2",
        443,
        1_000,
        "example.org",
    ));
    events.push(flow(DAY + 2, "10.0.0.2", "192.0.2.1", 22, 500, ""));
    // Host metrics: CPU 10, 20, …, 100.
    for i in 0..10 {
        events.push(ev(
            DAY + i * 300,
            Kind::HostMetrics(HostMetrics {
                cpu_percent: 10.0 * (i + 1) as f64,
                ..Default::default()
            }),
        ));
    }
    events.push(ev(
        3 * DAY,
        Kind::FileChange(FileChange {
            path: "/etc/ssh/sshd_config".into(),
            change: 2,
            changed_by: "root (sshd)".into(),
            severity: Severity::Warning as i32,
            ..Default::default()
        }),
    ));
    // Heartbeats every 5 min for an hour, then one 2 h later; one stop.
    for i in 0..12 {
        events.push(ev(DAY + i * 300, Kind::AgentStatus(AgentStatus::default())));
    }
    events.push(ev(
        DAY + 11 * 300 + 7200,
        Kind::AgentStatus(AgentStatus {
            stopping: true,
            ..Default::default()
        }),
    ));
    events.push(ev(
        DAY + 5,
        Kind::DataLoss(DataLoss {
            events_lost: 42,
            ..Default::default()
        }),
    ));
    events
}
