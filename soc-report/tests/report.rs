//! Reports built from a real tenant database: known figures come out, the
//! period follows the tenant's zone, and every empty section says so.

mod common;

use common::*;
use owlet_soc_export::Zone;
use owlet_soc_report::{Options, Period, build};
use owlet_soc_store::Store;

#[test]
fn a_month_in_the_tenants_zone_has_its_figures() {
    let (_dir, store) = filled();
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
    let (_dir, store) = filled();
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
