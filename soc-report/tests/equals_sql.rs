//! The report's numbers equal SQL over the raw events (the test):
//! a tenant log filled with generated events of three sensors, a report of
//! the month, and for each figure a direct query over the `events` view.
//! The HTML shows the same figures.
//!
//! Generated data stays below 100 sources, destinations and names per hour,
//! so the hourly top lists are exact (SCHEMA.md: bounded talkers) and every
//! figure must match to the unit.

mod common;

use std::collections::BTreeMap;

use common::*;
use owlet_proto::v1::{
    CheckResult, Event, FileChange, FlowRecord, HostMetrics, Severity, State, event::Kind,
};
use owlet_soc_export::Zone;
use owlet_soc_report::{Lang, Options, Period, Style, build, html};
use owlet_soc_store::Store;

/// A small deterministic generator (no test may depend on luck).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn generated(agent_no: u64) -> Vec<Event> {
    let mut g = Lcg(agent_no * 7919 + 1);
    let mut events = Vec::new();
    for i in 0..600 {
        // Spread over the month and a day either side of it.
        let at = g.next(32 * DAY as u64) as i64 - DAY;
        let kind = match g.next(6) {
            0 | 1 => {
                let result = [
                    State::Up,
                    State::Up,
                    State::Up,
                    State::Down,
                    State::Degraded,
                ][g.next(5) as usize];
                Kind::CheckResult(CheckResult {
                    check_id: format!("check-{}", g.next(4)),
                    result: result as i32,
                    state: result as i32,
                    duration_us: 1000 + g.next(100_000),
                    ..Default::default()
                })
            }
            2 => Kind::FlowRecord(FlowRecord {
                src_addr: format!("10.0.{}.{}", agent_no, g.next(40)),
                dst_addr: format!("192.0.2.{}", g.next(30)),
                dst_port: [443, 53, 22, 80][g.next(4) as usize],
                protocol: 6,
                bytes_out: 100 + g.next(1_000_000),
                packets_out: 1 + g.next(500),
                dns_query: if g.next(2) == 0 {
                    format!("host{}.example", g.next(20))
                } else {
                    String::new()
                },
                tls_sni: if g.next(3) == 0 {
                    format!("sni{}.example", g.next(10))
                } else {
                    String::new()
                },
                ..Default::default()
            }),
            3 => Kind::HostMetrics(HostMetrics {
                cpu_percent: g.next(1000) as f64 / 10.0,
                ..Default::default()
            }),
            4 => Kind::FileChange(FileChange {
                path: format!("/etc/conf-{i}"),
                change: 1 + g.next(3) as i32,
                severity: Severity::Warning as i32,
                ..Default::default()
            }),
            _ => {
                let state = [State::Down, State::Up][g.next(2) as usize];
                let severity = [Severity::Critical, Severity::Warning][g.next(2) as usize];
                events.push(alert(at, &format!("check-{}", g.next(4)), state, severity));
                continue;
            }
        };
        events.push(ev(at, kind));
    }
    events.sort_by_key(|e| e.time.as_ref().map(|t| (t.seconds, t.nanos)));
    events
}

fn sql_rows(
    db: &rusqlite::Connection,
    sql: &str,
    start: i64,
    end: i64,
) -> Vec<Vec<rusqlite::types::Value>> {
    let mut stmt = db.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([start, end], |r| (0..n).map(|i| r.get(i)).collect())
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn int(v: &rusqlite::types::Value) -> i64 {
    match v {
        rusqlite::types::Value::Integer(i) => *i,
        other => panic!("{other:?}"),
    }
}

fn real(v: &rusqlite::types::Value) -> f64 {
    match v {
        rusqlite::types::Value::Integer(i) => *i as f64,
        rusqlite::types::Value::Real(r) => *r,
        other => panic!("{other:?}"),
    }
}

fn text(v: &rusqlite::types::Value) -> String {
    match v {
        rusqlite::types::Value::Text(t) => t.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_figure_equals_sql_over_the_raw_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for agent in 1..=3 {
        append(&store, "acme", &format!("sensor-{agent}"), generated(agent));
    }
    let reader = store.reader("acme").unwrap();
    let zone = Zone::parse("Asia/Tokyo").unwrap();
    let period = Period::parse("2026-11").unwrap();
    let options = Options {
        top: 1000,
        ..Options::default()
    };
    let r = build(&reader, &period, &zone, t(40 * DAY), &options).unwrap();
    let (start, end) = period.bounds(&zone);
    let db = reader.connection();
    let page = html::render(&r, Lang::En, &Style::Inline).unwrap();

    // Events of the period.
    let events = sql_rows(
        db,
        "SELECT COUNT(*) FROM events WHERE time_us >= ?1 AND time_us < ?2",
        start,
        end,
    );
    assert_eq!(r.coverage.events, int(&events[0][0]));
    assert!(
        r.coverage.events > 1000,
        "the data set is too small to mean much"
    );

    // Availability per check.
    let rows = sql_rows(
        db,
        "SELECT agent, check_id, COUNT(*), SUM(result = 'up'), SUM(result = 'down'),
                ROUND(100.0 * SUM(result = 'up') / COUNT(*), 3)
         FROM events WHERE kind = 'check_result' AND time_us >= ?1 AND time_us < ?2
         GROUP BY 1, 2 ORDER BY 1, 2",
        start,
        end,
    );
    assert_eq!(r.checks.len(), rows.len());
    assert!(rows.len() >= 10);
    for (c, row) in r.checks.iter().zip(&rows) {
        assert_eq!(
            (c.agent.clone(), c.check_id.clone()),
            (text(&row[0]), text(&row[1]))
        );
        assert_eq!(
            (c.results, c.up, c.down),
            (int(&row[2]), int(&row[3]), int(&row[4]))
        );
        let sql = real(&row[5]);
        assert!(
            (c.availability_percent.unwrap() - sql).abs() < 1e-9,
            "{c:?} vs {sql}"
        );
        assert!(
            page.contains(&format!("{sql:.3} %")),
            "{sql:.3} % not in the HTML"
        );
    }

    // Alert counts per agent, name and severity.
    let rows = sql_rows(
        db,
        "SELECT agent, alert_name, severity, COUNT(*), SUM(state != 'up'), SUM(state = 'up')
         FROM events WHERE kind = 'alert' AND time_us >= ?1 AND time_us < ?2 GROUP BY 1, 2, 3",
        start,
        end,
    );
    let sql: BTreeMap<_, _> = rows
        .iter()
        .map(|r| {
            (
                (text(&r[0]), text(&r[2])),
                (int(&r[3]), int(&r[4]), int(&r[5])),
            )
        })
        .collect();
    let report: BTreeMap<_, _> = r
        .alerts
        .iter()
        .map(|a| {
            (
                (a.agent.clone(), a.severity.clone()),
                (a.alerts, a.raised, a.cleared),
            )
        })
        .collect();
    assert_eq!(report, sql);
    let total: i64 = sql.values().map(|v| v.0).sum();
    assert!(page.contains(&format!(
        "<span class=\"label\">Alerts</span> <span class=\"value\">{total}</span>"
    )));

    // Configuration changes.
    let changes = sql_rows(
        db,
        "SELECT COUNT(*) FROM events WHERE kind = 'file_change' AND time_us >= ?1 AND time_us < ?2",
        start,
        end,
    );
    assert_eq!(r.config_changes.total, int(&changes[0][0]));
    assert!(page.contains(&format!(
        "<span class=\"label\">Configuration changes</span> <span class=\"value\">{}</span>",
        r.config_changes.total
    )));

    // Top talkers: bytes per source, destination and port, and the totals.
    for (list, column) in [
        (&r.traffic.sources, "src_addr"),
        (&r.traffic.destinations, "dst_addr"),
        (&r.traffic.ports, "dst_port || '/tcp'"),
    ] {
        let rows = sql_rows(
            db,
            &format!(
                "SELECT {column}, SUM(bytes), SUM(packets), COUNT(*) FROM events
                 WHERE kind = 'flow_record' AND time_us >= ?1 AND time_us < ?2
                 GROUP BY 1 ORDER BY 2 DESC, 1"
            ),
            start,
            end,
        );
        let sql: Vec<(String, i64, i64, i64)> = rows
            .iter()
            .map(|r| (text(&r[0]), int(&r[1]), int(&r[2]), int(&r[3])))
            .collect();
        let report: Vec<(String, i64, i64, i64)> = list
            .top
            .iter()
            .map(|e| (e.key.clone(), e.bytes, e.packets, e.flows))
            .collect();
        assert_eq!(report, sql, "{column}");
        assert_eq!(list.total_bytes, sql.iter().map(|s| s.1).sum::<i64>());
        assert_eq!(list.other_bytes, 0);
    }
    let top = &r.traffic.sources.top[0];
    assert!(page.contains(&format!("<td>{}</td>", top.key)));

    // DNS and SNI names by flows.
    for (list, column) in [(&r.names.dns, "dns_name"), (&r.names.sni, "tls_sni")] {
        let rows = sql_rows(
            db,
            &format!(
                "SELECT {column}, COUNT(*), SUM(bytes) FROM events
                 WHERE kind = 'flow_record' AND {column} IS NOT NULL AND time_us >= ?1 AND time_us < ?2
                 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1000"
            ),
            start,
            end,
        );
        let sql: Vec<(String, i64, i64)> = rows
            .iter()
            .map(|r| (text(&r[0]), int(&r[1]), int(&r[2])))
            .collect();
        let report: Vec<(String, i64, i64)> = list
            .iter()
            .map(|n| (n.name.clone(), n.flows, n.bytes))
            .collect();
        assert_eq!(report, sql, "{column}");
        assert!(!sql.is_empty());
    }

    // Host health: samples, average and maximum CPU per sensor.
    let rows = sql_rows(
        db,
        "SELECT agent, COUNT(*), AVG(cpu_percent), MAX(cpu_percent) FROM events
         WHERE kind = 'host_metrics' AND time_us >= ?1 AND time_us < ?2 GROUP BY 1 ORDER BY 1",
        start,
        end,
    );
    assert_eq!(r.host_health.len(), rows.len());
    for (h, row) in r.host_health.iter().zip(&rows) {
        assert_eq!((h.agent.clone(), h.samples), (text(&row[0]), int(&row[1])));
        let cpu = h.cpu_percent.unwrap();
        assert!((cpu.avg - real(&row[2])).abs() < 0.001, "{cpu:?}");
        assert_eq!(cpu.max, real(&row[3]));
    }
}
