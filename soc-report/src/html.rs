//! A report as an HTML page for people, in English or Japanese: the page
//! the portal shows, the body of the report mail, and the source of the
//! PDF ([`crate::pdf`] prints this very page with Chromium).
//!
//! Guarantees:
//! * **Escaped.** The page is an askama template compiled into the crate,
//!   HTML autoescaping on; every value that came from a sensor or the
//!   store (paths, DNS and SNI names, subjects, agent names) is escaped.
//!   Nothing from data is ever marked safe: the one `|safe` is the
//!   stylesheet compiled into the binary (`assets/report.css`), which the
//!   inline mode embeds in a `<style>` element.
//! * **No script, no inline style attribute.** Bar charts are inline SVG
//!   drawn on the server (`<rect width=…>` attributes, not CSS), so the
//!   linked mode passes a CSP of `default-src 'self'` (no `unsafe-inline`)
//!   and the page needs no JavaScript.
//! * **Every section is present**, and an empty one says "nothing found";
//!   the summary says so plainly when the period had no alerts, no
//!   incidents and no down time.
//! * **Times carry their offset** (`2026-11-01 00:00:00 +09:00`) in the
//!   report's zone, named in the header.
//! * The figures are the [`Report`]'s, formatted only: the tests compare
//!   them with SQL over the raw events.

use askama::Template;

use crate::i18n::Lang;
use crate::text::{bytes, clean, count, when};
use crate::{Report, Stat, TopList};

/// The stylesheet of the report (both modes).
pub const REPORT_CSS: &str = include_str!("../assets/report.css");

/// How the page gets its stylesheet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Style {
    /// `<link rel="stylesheet" href=…>`: for the portal, whose CSP allows
    /// only its own files (serve [`REPORT_CSS`] at that URL).
    Linked { href: String },
    /// The stylesheet inside the page (`<style>`): a self-contained file
    /// for mail, download and PDF.
    Inline,
}

/// One cell of a table.
struct Cell {
    text: String,
    num: bool,
    /// A bar of this width (0–100, formatted) drawn after the text.
    bar: Option<String>,
}

fn cell(text: impl Into<String>) -> Cell {
    Cell {
        text: text.into(),
        num: false,
        bar: None,
    }
}

fn num(text: impl Into<String>) -> Cell {
    Cell {
        text: text.into(),
        num: true,
        bar: None,
    }
}

fn bar(text: impl Into<String>, percent: f64) -> Cell {
    Cell {
        text: text.into(),
        num: true,
        bar: Some(format!("{:.1}", percent.clamp(0.0, 100.0))),
    }
}

struct Table {
    caption: Option<String>,
    headers: Vec<Cell>,
    rows: Vec<Vec<Cell>>,
}

struct Section {
    id: &'static str,
    title: String,
    /// Shown instead of the tables when they are all empty.
    nothing: String,
    tables: Vec<Table>,
    after: Vec<String>,
}

impl Section {
    fn empty(&self) -> bool {
        self.tables.iter().all(|t| t.rows.is_empty())
    }
}

struct Figure {
    label: String,
    value: String,
    /// Draws attention (a non-zero count of something bad).
    alert: bool,
}

#[derive(Template)]
#[template(path = "report.html")]
struct Page<'a> {
    lang: Lang,
    style: &'a Style,
    css: &'static str,
    tenant: String,
    period: String,
    from_to: String,
    time_zone: String,
    generated: String,
    quiet: bool,
    headline: String,
    coverage: String,
    figures: Vec<Figure>,
    sections: Vec<Section>,
    notes: Vec<String>,
}

impl Page<'_> {
    fn t(&self, key: &str) -> &'static str {
        self.lang.text(key)
    }

    fn linked_href(&self) -> Option<&str> {
        match self.style {
            Style::Linked { href } => Some(href),
            Style::Inline => None,
        }
    }
}

/// Renders `report` as a complete HTML page in `lang`.
pub fn render(report: &Report, lang: Lang, style: &Style) -> Result<String, askama::Error> {
    page(report, lang, style).render()
}

/// `3725` → `1h 02m` / `1時間 02分`.
fn duration(lang: Lang, seconds: i64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
        seconds % 60,
    );
    let [du, hu, mu, su] =
        ["day_unit", "hour_unit", "minute_unit", "second_unit"].map(|k| lang.text(k));
    match (d, h, m) {
        (0, 0, 0) => format!("{s}{su}"),
        (0, 0, _) => format!("{m}{mu} {s:02}{su}"),
        (0, _, _) => format!("{h}{hu} {m:02}{mu}"),
        _ => format!("{d}{du} {h:02}{hu} {m:02}{mu}"),
    }
}

fn percent(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3} %"))
}

fn ms(s: Option<f64>) -> String {
    s.map_or("-".into(), |v| format!("{v:.1} ms"))
}

fn pct_stat(s: &Option<Stat>) -> String {
    s.map_or("-".into(), |s| {
        format!("{:.1} / {:.1} / {:.1}", s.p50, s.p95, s.max)
    })
}

fn headers(lang: Lang, keys: &[&str], numeric_from: usize) -> Vec<Cell> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| Cell {
            text: lang.text(k).to_string(),
            num: i >= numeric_from,
            bar: None,
        })
        .collect()
}

fn table(headers: Vec<Cell>, rows: Vec<Vec<Cell>>) -> Table {
    Table {
        caption: None,
        headers,
        rows,
    }
}

fn section(
    lang: Lang,
    id: &'static str,
    title: &str,
    nothing: &str,
    tables: Vec<Table>,
) -> Section {
    Section {
        id,
        title: lang.text(title).to_string(),
        nothing: lang.text(nothing).to_string(),
        tables,
        after: Vec::new(),
    }
}

fn top(lang: Lang, id: &'static str, title: &str, what: &str, list: &TopList) -> Section {
    let rows = list
        .top
        .iter()
        .map(|e| {
            let share = if list.total_bytes > 0 {
                100.0 * e.bytes as f64 / list.total_bytes as f64
            } else {
                0.0
            };
            vec![
                cell(clean(&e.key)),
                num(bytes(e.bytes)),
                num(count(e.packets)),
                num(count(e.flows)),
                bar(format!("{share:.1} %"), share),
            ]
        })
        .collect();
    let mut s = section(
        lang,
        id,
        title,
        "no_flows",
        vec![table(
            headers(lang, &[what, "bytes", "packets", "flows", "share"], 1),
            rows,
        )],
    );
    if !s.empty() {
        s.after.push(lang.fill(
            "traffic_total",
            &[
                &bytes(list.total_bytes),
                &count(list.total_flows),
                &bytes(list.other_bytes),
            ],
        ));
    }
    s
}

fn page<'a>(r: &Report, lang: Lang, style: &'a Style) -> Page<'a> {
    let alerts: i64 = r.alerts.iter().map(|a| a.alerts).sum();
    let open = r.incidents.iter().filter(|i| i.open).count();
    let down_checks = r.checks.iter().filter(|c| c.down > 0).count();
    let quiet = alerts == 0 && r.incidents.is_empty() && down_checks == 0;
    let c = &r.coverage;
    let coverage = if c.events == 0 {
        lang.fill("no_events", &[&c.hours_in_period.to_string()])
    } else {
        lang.fill(
            "events_received",
            &[
                &count(c.events),
                &c.hours_with_events.to_string(),
                &c.hours_in_period.to_string(),
            ],
        )
    };
    let figure = |key: &str, value: i64, bad: bool| Figure {
        label: lang.text(key).to_string(),
        value: count(value),
        alert: bad && value > 0,
    };
    let figures = vec![
        figure("summary_monitored", r.checks.len() as i64, false),
        figure("summary_alerts", alerts, true),
        figure("summary_incidents", r.incidents.len() as i64, true),
        figure("summary_open", open as i64, true),
        figure("summary_down_checks", down_checks as i64, true),
        figure("summary_changes", r.config_changes.total, true),
    ];

    let checks = r
        .checks
        .iter()
        .map(|k| {
            let latency = k.latency_ms;
            vec![
                cell(clean(&k.agent)),
                cell(clean(&k.check_id)),
                match k.availability_percent {
                    Some(a) => bar(percent(Some(a)), a),
                    None => num("-"),
                },
                num(count(k.results)),
                num(count(k.up)),
                num(count(k.degraded)),
                num(count(k.down)),
                num(ms(latency.map(|l| l.p50))),
                num(ms(latency.map(|l| l.p95))),
            ]
        })
        .collect();
    let mut sections = vec![section(
        lang,
        "availability",
        "availability",
        "no_checks",
        vec![table(
            headers(
                lang,
                &[
                    "agent",
                    "check",
                    "availability_col",
                    "results",
                    "up",
                    "degraded",
                    "down",
                    "latency_p50",
                    "latency_p95",
                ],
                2,
            ),
            checks,
        )],
    )];

    let alert_rows = r
        .alerts
        .iter()
        .map(|a| {
            vec![
                cell(clean(&a.agent)),
                cell(clean(&a.name)),
                cell(clean(&a.severity)),
                num(count(a.alerts)),
                num(count(a.raised)),
                num(count(a.cleared)),
            ]
        })
        .collect();
    sections.push(section(
        lang,
        "alerts",
        "alerts",
        "no_alerts",
        vec![table(
            headers(
                lang,
                &["agent", "alert", "severity", "count", "raised", "cleared"],
                3,
            ),
            alert_rows,
        )],
    ));

    let incident_rows = r
        .incidents
        .iter()
        .map(|i| {
            vec![
                cell(clean(&i.agent)),
                cell(clean(&i.name)),
                cell(clean(&i.subject)),
                cell(clean(&i.severity)),
                cell(
                    i.raised_at
                        .as_deref()
                        .map_or(lang.text("before_log").to_string(), when),
                ),
                cell(if i.open {
                    lang.text("still_open").to_string()
                } else {
                    i.cleared_at.as_deref().map_or("-".into(), when)
                }),
                num(i.duration_seconds.map_or("-".into(), |d| duration(lang, d))),
                cell(
                    i.notified_at
                        .as_deref()
                        .map_or(lang.text("not_notified").to_string(), when),
                ),
                num(i
                    .time_to_notification_seconds
                    .map_or("-".into(), |d| duration(lang, d))),
            ]
        })
        .collect();
    sections.push(section(
        lang,
        "incidents",
        "incidents",
        "no_incidents",
        vec![table(
            headers(
                lang,
                &[
                    "agent",
                    "alert",
                    "subject",
                    "severity",
                    "raised",
                    "cleared",
                    "duration",
                    "notified",
                    "time_to_notify",
                ],
                6,
            ),
            incident_rows,
        )],
    ));

    let ch = &r.config_changes;
    let by_agent = ch
        .by_agent
        .iter()
        .map(|c| {
            vec![
                cell(clean(&c.agent)),
                cell(clean(&c.action)),
                num(count(c.changes)),
            ]
        })
        .collect();
    let latest = ch
        .latest
        .iter()
        .map(|c| {
            vec![
                cell(when(&c.time)),
                cell(clean(&c.agent)),
                cell(clean(&c.action)),
                cell(clean(&c.path)),
                cell(c.changed_by.as_deref().map_or("-".into(), clean)),
            ]
        })
        .collect();
    let mut changes = section(
        lang,
        "changes",
        "changes",
        "no_changes",
        vec![
            table(
                headers(lang, &["agent", "action", "changes_col"], 2),
                by_agent,
            ),
            Table {
                caption: Some(lang.text("latest_changes").to_string()),
                headers: headers(lang, &["time", "agent", "action", "path", "changed_by"], 9),
                rows: latest,
            },
        ],
    );
    if ch.not_listed > 0 && !ch.latest.is_empty() {
        changes
            .after
            .push(lang.fill("changes_not_listed", &[&count(ch.not_listed)]));
    }
    sections.push(changes);

    sections.push(top(
        lang,
        "sources",
        "top_sources",
        "source",
        &r.traffic.sources,
    ));
    sections.push(top(
        lang,
        "destinations",
        "top_destinations",
        "destination",
        &r.traffic.destinations,
    ));
    sections.push(top(lang, "ports", "top_ports", "port", &r.traffic.ports));

    for (id, list, nothing) in [
        ("dns", &r.names.dns, "no_dns"),
        ("sni", &r.names.sni, "no_sni"),
        ("http", &r.names.http, "no_http"),
    ] {
        let max = list.iter().map(|n| n.flows).max().unwrap_or(0).max(1) as f64;
        let rows = list
            .iter()
            .map(|n| {
                vec![
                    cell(clean(&n.name)),
                    bar(count(n.flows), 100.0 * n.flows as f64 / max),
                    num(bytes(n.bytes)),
                ]
            })
            .collect();
        sections.push(section(
            lang,
            id,
            id,
            nothing,
            vec![table(headers(lang, &["name", "flows", "bytes"], 1), rows)],
        ));
    }

    let host_rows = r
        .host_health
        .iter()
        .map(|h| {
            vec![
                cell(clean(&h.agent)),
                num(count(h.samples)),
                num(pct_stat(&h.cpu_percent)),
                num(pct_stat(&h.memory_percent)),
                num(pct_stat(&h.disk_percent)),
            ]
        })
        .collect();
    sections.push(section(
        lang,
        "host",
        "host_health",
        "no_host",
        vec![table(
            headers(lang, &["agent", "samples", "cpu", "memory", "disk"], 1),
            host_rows,
        )],
    ));

    let sensor_rows = r
        .sensor_health
        .iter()
        .map(|s| {
            vec![
                cell(clean(&s.agent)),
                num(count(s.heartbeats)),
                cell(s.last_heartbeat.as_deref().map_or("-".into(), when)),
                num(s
                    .longest_gap_seconds
                    .map_or("-".into(), |g| duration(lang, g))),
                num(count(s.stops)),
                num(count(s.events_lost as i64)),
            ]
        })
        .collect();
    sections.push(section(
        lang,
        "sensors",
        "sensor_health",
        "no_sensors",
        vec![table(
            headers(
                lang,
                &[
                    "agent",
                    "heartbeats",
                    "last_heartbeat",
                    "longest_gap",
                    "stops",
                    "events_lost",
                ],
                1,
            ),
            sensor_rows,
        )],
    ));

    // The notes in the reader's language, from the report's own figures
    // (the JSON's `notes` say the same in English).
    let mut notes = vec![
        lang.text("note_rollups").to_string(),
        lang.text("note_top").to_string(),
        lang.text("note_notify").to_string(),
    ];
    if chrono::DateTime::parse_from_rfc3339(&r.from)
        .is_ok_and(|t| t.offset().local_minus_utc() % 3600 != 0)
    {
        notes.push(lang.fill("note_offset", &[&r.time_zone]));
    }
    if c.raw_events_stored < c.events {
        notes.push(lang.fill("note_retention", &[&count(c.events - c.raw_events_stored)]));
    }

    Page {
        lang,
        style,
        css: REPORT_CSS,
        tenant: clean(&r.tenant),
        period: r.period.clone(),
        from_to: lang.fill("from_to", &[&when(&r.from), &when(&r.to)]),
        time_zone: r.time_zone.clone(),
        generated: when(&r.generated_at),
        quiet,
        headline: if quiet {
            lang.text("nothing_found").to_string()
        } else {
            String::new()
        },
        coverage,
        figures,
        sections,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_both_languages() {
        assert_eq!(duration(Lang::En, 59), "59s");
        assert_eq!(duration(Lang::En, 3_725), "1h 02m");
        assert_eq!(duration(Lang::Ja, 90_061), "1日 01時間 01分");
    }

    #[test]
    fn the_stylesheet_cannot_end_its_style_element() {
        // The inline mode embeds it unescaped (it is ours, not data).
        assert!(!REPORT_CSS.to_ascii_lowercase().contains("</style"));
        assert!(!REPORT_CSS.contains('<'));
    }
}
