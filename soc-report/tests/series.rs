//! Plot series over a real tenant database: hourly rollups for long
//! ranges, raw events for short ones, and the learned normal range.

mod common;

use common::*;
use owlet_proto::v1::{HostMetrics, event::Kind};
use owlet_soc_export::Zone;
use owlet_soc_report::series::{self, Metric, Request, Source};
use owlet_soc_store::Store;

fn us(seconds_after_nov_tokyo: i64) -> i64 {
    (NOV_TOKYO as i64 + seconds_after_nov_tokyo) * 1_000_000
}

#[test]
fn long_ranges_read_rollups_short_ones_read_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut events = known_events();
    // A week of CPU before November: 40 % to 60 % every hour.
    for h in 0..7 * 24 {
        events.push(ev(
            -7 * DAY + h * 3600,
            Kind::HostMetrics(HostMetrics {
                cpu_percent: 40.0 + (h % 21) as f64,
                ..Default::default()
            }),
        ));
    }
    events.sort_by_key(|e| e.time.as_ref().map(|t| (t.seconds, t.nanos)));
    append(&store, "acme", "s1", events);
    let reader = store.reader("acme").unwrap();
    let zone = Zone::parse("Asia/Tokyo").unwrap();
    let month = Request {
        source: &reader,
        zone: &zone,
        from_us: us(0),
        to_us: us(30 * DAY),
    };
    let a = series::check_availability(&month).unwrap();
    assert_eq!(
        (a.source, a.step_seconds, a.t.len()),
        (Source::Rollups, 3600, 720)
    );
    let web = a.lines.iter().find(|l| l.label == "s1/web").unwrap();
    // The 10 web checks are in hour 24 (Nov 2, 00:00 in Tokyo): 9 of 10 up.
    assert_eq!(web.values[24], Some(90.0));
    assert_eq!(web.values[23], None);
    assert_eq!(a.from, "2026-11-01T00:00:00.000+09:00");

    let c = series::capture(&month).unwrap();
    let bytes_per_second = c.lines[0].values[24].unwrap();
    assert!(
        (bytes_per_second - 10_500.0 / 3600.0).abs() < 0.001,
        "{bytes_per_second}"
    );

    let cpu = series::host(&month, Metric::Cpu).unwrap();
    let s1 = &cpu.lines[0];
    assert_eq!(s1.values[24], Some(55.0));
    let normal = s1
        .normal
        .as_ref()
        .expect("a week of samples teaches a range");
    let (lo, hi) = (normal.low[24].unwrap(), normal.high[24].unwrap());
    assert!(
        (40.0..=42.0).contains(&lo) && (58.0..=60.5).contains(&hi),
        "{lo} {hi}"
    );

    let tops = series::tops(&month, 10).unwrap();
    assert_eq!(tops.sources.top[0].key, "10.0.0.1");
    assert_eq!(tops.sni[0].name, "example.org");

    let timeline = series::alerts(&month, 2).unwrap();
    assert_eq!(timeline.alerts.len(), 2);
    assert_eq!(timeline.not_listed, 2);
    let total: f64 = timeline
        .counts
        .lines
        .iter()
        .flat_map(|l| l.values.iter().flatten())
        .sum();
    assert_eq!(total, 4.0);

    // Two hours around the web checks: 1-minute steps from the events.
    let short = Request {
        source: &reader,
        zone: &zone,
        from_us: us(DAY),
        to_us: us(DAY + 7200),
    };
    let a = series::check_availability(&short).unwrap();
    assert_eq!(
        (a.source, a.step_seconds, a.t.len()),
        (Source::Events, 60, 120)
    );
    let web = a.lines.iter().find(|l| l.label == "s1/web").unwrap();
    assert_eq!(
        &web.values[..6],
        &[
            Some(100.0),
            Some(100.0),
            Some(100.0),
            Some(100.0),
            Some(0.0),
            Some(100.0)
        ]
    );
    let l = series::check_latency(&short).unwrap();
    let p50 = l.lines.iter().find(|l| l.label == "s1/web p50").unwrap();
    // Exact from the events: the first probe took 10 ms.
    assert_eq!(p50.values[0], Some(10.0));
    assert_eq!(p50.values[4], None);
    // JSON for the browser: nulls where no data.
    let json = serde_json::to_value(&a).unwrap();
    assert!(
        json["lines"][0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.is_null())
    );
}

#[test]
fn a_tenant_that_never_stored_an_event_has_empty_series() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    drop(store.writer("acme").unwrap());
    let reader = store.reader("acme").unwrap();
    for (from_us, to_us) in [(us(0), us(3600)), (us(0), us(30 * DAY))] {
        let req = Request {
            source: &reader,
            zone: &Zone::Utc,
            from_us,
            to_us,
        };
        assert!(series::check_availability(&req).unwrap().lines.is_empty());
        assert!(series::host(&req, Metric::Disk).unwrap().lines.is_empty());
        let c = series::capture(&req).unwrap();
        assert!(c.lines[0].values.iter().all(Option::is_none));
        assert!(series::alerts(&req, 10).unwrap().alerts.is_empty());
    }
}
