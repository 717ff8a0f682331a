//! Reports built from a real tenant database: known figures come out, the
//! period follows the tenant's zone, and every empty section says so.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use owlet_proto::v1::{
    AgentStatus, Alert, CheckResult, DataLoss, Event, FileChange, FlowRecord, HostMetrics,
    Severity, State, event::Kind,
};
use owlet_soc_export::Zone;
use owlet_soc_report::{Options, Period, build};
use owlet_soc_store::{Batch, Store};

/// 2026-11-01T00:00:00+09:00 (2026-10-31T15:00:00Z).
const NOV_TOKYO: u64 = 1_793_458_800;

fn t(seconds_after_nov_tokyo: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs((NOV_TOKYO as i64 + seconds_after_nov_tokyo) as u64)
}

fn ev(at: i64, kind: Kind) -> Event {
    Event {
        seq: 0,
        time: Some(owlet_proto::timestamp(t(at))),
        kind: Some(kind),
    }
}

fn check(at: i64, id: &str, result: State, latency_us: u64) -> Event {
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

fn alert(at: i64, subject: &str, state: State, severity: Severity) -> Event {
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

fn flow(at: i64, src: &str, dst: &str, port: u32, bytes: u64, sni: &str) -> Event {
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

const DAY: i64 = 86_400;

/// A month of one sensor `s1` in tenant acme, with known figures.
fn fill(store: &Store) {
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
    for (i, e) in events.iter_mut().enumerate() {
        e.seq = i as u64 + 1;
    }
    store
        .writer("acme")
        .unwrap()
        .append(
            &[Batch {
                agent: "s1",
                zone: "Asia/Tokyo",
                events: &events,
                sequenced: true,
            }],
            t(25 * DAY),
        )
        .unwrap();
}

#[test]
fn a_month_in_the_tenants_zone_has_its_figures() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store);
    let reader = store.reader("acme").unwrap();
    let zone = Zone::parse("Asia/Tokyo").unwrap();
    let period = Period::parse("2026-11").unwrap();
    let r = build(&reader, &period, &zone, t(40 * DAY), &Options::default()).unwrap();

    assert_eq!(r.from, "2026-11-01T00:00:00.000+09:00");
    assert_eq!(r.to, "2026-12-01T00:00:00.000+09:00");
    let ids: Vec<_> = r.checks.iter().map(|c| c.check_id.as_str()).collect();
    assert_eq!(ids, ["vpn", "web"]);
    let web = &r.checks[1];
    assert_eq!((web.results, web.up, web.down), (10, 9, 1));
    assert_eq!(web.availability_percent, Some(90.0));
    let latency = web.latency_ms.unwrap();
    assert_eq!(latency.samples, 9);
    assert_eq!(latency.max, 100.0);
    assert!((latency.p50 - 60.0).abs() <= 60.0 * 0.091, "{latency:?}");

    // Incidents: October's raise cleared in November, the 5-minute one,
    // and the one still open at the end of the month.
    let inc: Vec<_> = r
        .incidents
        .iter()
        .map(|i| (i.subject.as_str(), i.duration_seconds, i.open))
        .collect();
    assert_eq!(
        inc,
        [
            ("db", Some(3 * DAY + 600), false),
            ("web", Some(300), false),
            ("dns", Some(10 * DAY), true),
        ]
    );
    assert_eq!(
        r.incidents[0].raised_at.as_deref(),
        Some("2026-10-30T00:00:00.000+09:00")
    );
    // Counted alerts are those of the month: 4 of the 5.
    assert_eq!(r.alerts.iter().map(|a| a.alerts).sum::<i64>(), 4);

    let src = &r.traffic.sources;
    assert_eq!(src.top[0].key, "10.0.0.1");
    assert_eq!(src.top[0].bytes, 10_000);
    assert_eq!(
        (src.total_bytes, src.total_flows, src.other_bytes),
        (10_500, 3, 0)
    );
    assert_eq!(r.traffic.ports.top[0].key, "443/tcp");
    assert_eq!(r.names.sni[0].name, "example.org");
    assert_eq!(r.names.sni[0].flows, 2);
    assert!(r.names.dns.is_empty());

    let cpu = r.host_health[0].cpu_percent.unwrap();
    assert_eq!((cpu.samples, cpu.avg, cpu.max), (10, 55.0, 100.0));
    assert!((cpu.p95 - 100.0).abs() <= 0.5, "{cpu:?}");
    assert!((cpu.p50 - 50.0).abs() <= 0.5, "{cpu:?}");

    assert_eq!(r.config_changes.total, 1);
    assert_eq!(r.config_changes.latest[0].path, "/etc/ssh/sshd_config");
    assert_eq!(r.config_changes.latest[0].action, "modified");

    let s = &r.sensor_health[0];
    assert_eq!((s.heartbeats, s.stops, s.events_lost), (13, 1, 42));
    assert_eq!(s.longest_gap_seconds, Some(7200));

    let text = r.to_text();
    for expected in [
        "period 2026-11",
        "From 2026-11-01 00:00:00 +09:00 to 2026-12-01 00:00:00 +09:00",
        "90.000 %",
        "still open",
        "/etc/ssh/sshd_config",
        "Nothing found: no DNS queries in this period.",
        "Nothing found: no HTTP hosts in this period.",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from\n{text}");
    }
    // The JSON carries the raw numbers.
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["traffic"]["sources"]["total_bytes"], 10_500);
    assert_eq!(json["checks"][1]["availability_percent"], 90.0);

    // In UTC the month starts 9 hours later, after the vpn check.
    let utc = build(
        &reader,
        &period,
        &Zone::Utc,
        t(40 * DAY),
        &Options::default(),
    )
    .unwrap();
    let ids: Vec<_> = utc.checks.iter().map(|c| c.check_id.as_str()).collect();
    assert_eq!(ids, ["web"]);
    assert!(utc.to_text().contains("From 2026-11-01 00:00:00 +00:00"));
}

#[test]
fn an_empty_period_says_nothing_found_in_every_section() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store);
    let reader = store.reader("acme").unwrap();
    let zone = Zone::parse("Asia/Tokyo").unwrap();
    let period = Period::parse("2027-W10").unwrap();
    let r = build(&reader, &period, &zone, t(500 * DAY), &Options::default()).unwrap();
    let text = r.to_text();
    assert!(text.contains("Nothing found: no events were received for this period (168 hours)."));
    let nothing = text.matches("Nothing found:").count();
    // Coverage, checks, alerts, incidents, changes, 3 top lists, 3 name
    // lists, host, sensors.
    assert_eq!(nothing, 13, "{text}");
    let json = serde_json::to_value(&r).unwrap();
    for list in [
        "checks",
        "alerts",
        "incidents",
        "host_health",
        "sensor_health",
    ] {
        assert_eq!(json[list], serde_json::json!([]), "{list}");
    }
    assert_eq!(json["traffic"]["sources"]["top"], serde_json::json!([]));
}

#[test]
fn a_tenant_without_events_reports_nothing_found_and_an_old_file_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let path = store.writer("acme").unwrap().path().to_path_buf();
    let reader = store.reader("acme").unwrap();
    let period = Period::parse("2026-11").unwrap();
    let r = build(&reader, &period, &Zone::Utc, t(0), &Options::default()).unwrap();
    assert_eq!(r.to_text().matches("Nothing found:").count(), 13);
    drop(reader);
    let db = rusqlite::Connection::open(&path).unwrap();
    db.pragma_update(None, "user_version", 1).unwrap();
    drop(db);
    let reader = store.reader("acme").unwrap();
    let e = build(&reader, &period, &Zone::Utc, t(0), &Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("schema version 1") && e.contains("owlet-soc serve"),
        "{e}"
    );
}
