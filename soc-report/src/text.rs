//! The text form of a report: aligned tables, one section per topic, and a
//! "nothing found" line for every empty section.
//!
//! Values that came from sensors (paths, names, subjects) are printed with
//! control characters escaped, so a hostile file name cannot move the
//! cursor or forge lines of the report.

use std::fmt::Write;

use crate::{Report, Stat, TopList};

/// `2026-11-01T00:00:00.000+09:00` → `2026-11-01 00:00:00 +09:00`.
pub(crate) fn when(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S %:z").to_string())
        .unwrap_or_else(|_| rfc3339.to_string())
}

pub(crate) fn clean(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// `1234567` → `1,234,567`.
pub(crate) fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

pub(crate) fn bytes(n: i64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn duration(seconds: i64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s:02}s"),
        (0, _, _) => format!("{h}h {m:02}m"),
        _ => format!("{d}d {h:02}h {m:02}m"),
    }
}

fn stat(s: &Option<Stat>, unit: &str) -> [String; 4] {
    match s {
        Some(s) => [s.avg, s.p50, s.p95, s.max].map(|v| format!("{v:.1}{unit}")),
        None => ["-", "-", "-", "-"].map(String::from),
    }
}

fn section(out: &mut String, title: &str) {
    let _ = write!(out, "\n== {title} ==\n");
}

fn table(out: &mut String, headers: &[&str], rows: &[Vec<String>], nothing: &str) {
    if rows.is_empty() {
        let _ = writeln!(out, "Nothing found: {nothing}.");
        return;
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(headers.to_vec()));
    for row in rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
}

fn top(out: &mut String, title: &str, list: &TopList, what: &str) {
    section(out, title);
    let rows: Vec<Vec<String>> = list
        .top
        .iter()
        .map(|e| {
            vec![
                clean(&e.key),
                bytes(e.bytes),
                count(e.packets),
                count(e.flows),
            ]
        })
        .collect();
    table(
        out,
        &[what, "BYTES", "PACKETS", "FLOWS"],
        &rows,
        "no flow records in this period",
    );
    if !rows.is_empty() {
        let _ = writeln!(
            out,
            "Total {} in {} flows; others {}.",
            bytes(list.total_bytes),
            count(list.total_flows),
            bytes(list.other_bytes)
        );
    }
}

pub(crate) fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "owlet SOC report: tenant {}, period {}",
        clean(&r.tenant),
        r.period
    );
    let _ = writeln!(
        out,
        "From {} to {} (all times in {}, offset shown)",
        when(&r.from),
        when(&r.to),
        r.time_zone
    );
    let _ = writeln!(out, "Generated {}", when(&r.generated_at));
    let c = &r.coverage;
    if c.events == 0 {
        let _ = writeln!(
            out,
            "Nothing found: no events were received for this period ({} hours).",
            c.hours_in_period
        );
    } else {
        let _ = writeln!(
            out,
            "Events: {} in {} of {} hours ({} still stored).",
            count(c.events),
            c.hours_with_events,
            c.hours_in_period,
            count(c.raw_events_stored)
        );
    }

    section(&mut out, "Availability per check (SLA)");
    let rows: Vec<Vec<String>> = r
        .checks
        .iter()
        .map(|k| {
            let [avg, p50, p95, max] = stat(&k.latency_ms, " ms");
            vec![
                clean(&k.agent),
                clean(&k.check_id),
                k.availability_percent
                    .map_or("-".into(), |a| format!("{a:.3} %")),
                count(k.results),
                count(k.up),
                count(k.degraded),
                count(k.down),
                avg,
                p50,
                p95,
                max,
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "AGENT",
            "CHECK",
            "AVAILABILITY",
            "RESULTS",
            "UP",
            "DEGRADED",
            "DOWN",
            "AVG",
            "P50",
            "P95",
            "MAX",
        ],
        &rows,
        "no check results in this period",
    );

    section(&mut out, "Alerts");
    let rows: Vec<Vec<String>> = r
        .alerts
        .iter()
        .map(|a| {
            vec![
                clean(&a.agent),
                clean(&a.name),
                a.severity.clone(),
                count(a.alerts),
                count(a.raised),
                count(a.cleared),
            ]
        })
        .collect();
    table(
        &mut out,
        &["AGENT", "ALERT", "SEVERITY", "ALERTS", "RAISED", "CLEARED"],
        &rows,
        "no alerts in this period",
    );

    section(&mut out, "Incidents (raised -> cleared)");
    let rows: Vec<Vec<String>> = r
        .incidents
        .iter()
        .map(|i| {
            vec![
                clean(&i.agent),
                clean(&i.name),
                clean(&i.subject),
                i.severity.clone(),
                i.raised_at
                    .as_deref()
                    .map_or("(before the stored log)".into(), when),
                if i.open {
                    "still open".into()
                } else {
                    i.cleared_at.as_deref().map_or("-".into(), when)
                },
                i.duration_seconds.map_or("-".into(), duration),
                i.time_to_notification_seconds.map_or("-".into(), duration),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "AGENT",
            "ALERT",
            "SUBJECT",
            "SEVERITY",
            "RAISED",
            "CLEARED",
            "DURATION",
            "NOTIFIED AFTER",
        ],
        &rows,
        "no incident was open in this period",
    );

    section(&mut out, "Configuration changes");
    let ch = &r.config_changes;
    let rows: Vec<Vec<String>> = ch
        .by_agent
        .iter()
        .map(|c| vec![clean(&c.agent), c.action.clone(), count(c.changes)])
        .collect();
    table(
        &mut out,
        &["AGENT", "ACTION", "CHANGES"],
        &rows,
        "no configuration changes in this period",
    );
    if !ch.latest.is_empty() {
        let _ = writeln!(out, "\nLatest changes (newest first):");
        let rows: Vec<Vec<String>> = ch
            .latest
            .iter()
            .map(|c| {
                vec![
                    when(&c.time),
                    clean(&c.agent),
                    c.action.clone(),
                    clean(&c.path),
                    c.changed_by.as_deref().map_or("-".into(), clean),
                ]
            })
            .collect();
        table(
            &mut out,
            &["TIME", "AGENT", "ACTION", "PATH", "CHANGED BY"],
            &rows,
            "",
        );
        if ch.not_listed > 0 {
            let _ = writeln!(
                out,
                "... and {} earlier changes (see --json or export).",
                count(ch.not_listed)
            );
        }
    }

    top(
        &mut out,
        "Top sources by bytes",
        &r.traffic.sources,
        "SOURCE",
    );
    top(
        &mut out,
        "Top destinations by bytes",
        &r.traffic.destinations,
        "DESTINATION",
    );
    top(
        &mut out,
        "Top destination ports by bytes",
        &r.traffic.ports,
        "PORT",
    );

    for (title, list, what) in [
        ("DNS names", &r.names.dns, "DNS queries"),
        ("TLS server names (SNI)", &r.names.sni, "TLS server names"),
        ("HTTP hosts", &r.names.http, "HTTP hosts"),
    ] {
        section(&mut out, title);
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|n| vec![clean(&n.name), count(n.flows), bytes(n.bytes)])
            .collect();
        table(
            &mut out,
            &["NAME", "FLOWS", "BYTES"],
            &rows,
            &format!("no {what} in this period"),
        );
    }

    section(&mut out, "Host health (percent: avg / p50 / p95 / max)");
    let rows: Vec<Vec<String>> = r
        .host_health
        .iter()
        .map(|h| {
            let fmt = |s: &Option<Stat>| stat(s, "").join(" / ");
            vec![
                clean(&h.agent),
                count(h.samples),
                fmt(&h.cpu_percent),
                fmt(&h.memory_percent),
                fmt(&h.disk_percent),
            ]
        })
        .collect();
    table(
        &mut out,
        &["AGENT", "SAMPLES", "CPU", "MEMORY", "DISK"],
        &rows,
        "no host metrics in this period",
    );

    section(&mut out, "Sensor health");
    let rows: Vec<Vec<String>> = r
        .sensor_health
        .iter()
        .map(|s| {
            vec![
                clean(&s.agent),
                count(s.heartbeats),
                s.last_heartbeat.as_deref().map_or("-".into(), when),
                s.longest_gap_seconds.map_or("-".into(), duration),
                count(s.stops),
                count(s.data_loss_reports),
                count(s.events_lost as i64),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "AGENT",
            "HEARTBEATS",
            "LAST HEARTBEAT",
            "LONGEST GAP",
            "STOPS",
            "DATA LOSS",
            "EVENTS LOST",
        ],
        &rows,
        "no sensor reported its status in this period",
    );

    section(&mut out, "Notes");
    for n in &r.notes {
        let _ = writeln!(out, "- {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_durations_and_hostile_text_render_plainly() {
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_500_000), "1.5 MB");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(3_725), "1h 02m");
        assert_eq!(duration(90_061), "1d 01h 01m");
        assert_eq!(clean("/etc/x\n\u{1b}[2J"), "/etc/x\\n\\u{1b}[2J");
        assert_eq!(
            when("2026-11-01T00:00:00.000+09:00"),
            "2026-11-01 00:00:00 +09:00"
        );
    }
}
