//! owlet-soc-report: one tenant's periodic report (a month or an ISO week),
//! the numbers the MSS guideline expects a customer to receive: what was
//! monitored, what was found, and a clear "nothing found" when nothing was.
//!
//! Sources:
//! * the hourly rollups (`owlet_soc_store::rollup`) for check availability
//!   and latency, alert counts, configuration changes per agent, top
//!   talkers and names, and host percentiles: they outlive the raw events
//!   retention deletes;
//! * the raw events for what needs single events: incidents (raised →
//!   cleared pairs), the latest configuration changes by path, and sensor
//!   health (heartbeats, stops, data loss).
//!
//! Guarantees:
//! * reads exactly one tenant's data, through a [`Source`]: the embedded
//!   SOC's read-only `TenantReader` (its SQLite file) or the scaled-out
//!   SOC's PostgreSQL schema ([`source::postgres`]); sections, figures and
//!   rendering are the same code for both, only the queries' runner
//!   differs;
//! * the period is midnight to midnight in the tenant's zone, and every
//!   time shown carries its offset;
//! * every section is present in the text and in the JSON: an empty one
//!   says "nothing found" in the text and is an empty list in the JSON, so
//!   an empty month reads as monitored-and-quiet, never as missing;
//! * the JSON carries raw numbers (bytes, counts, µs-derived milliseconds),
//!   so a customer can rebuild the graphs.
//!
//! Limits (stated in the report's `notes`):
//! * rollup figures cover the whole UTC hours that start within the
//!   period: for a zone whose offset is not a whole number of hours the
//!   rollup sections are shifted by that fraction of an hour;
//! * top lists are sums of hourly top lists (100 keys per hour), so a key
//!   just below every hour's cut can be missing from them; the totals and
//!   the "other" figure are exact;
//! * percentiles come from histograms: latency within 9 %, percent within
//!   half a point.
#![forbid(unsafe_code)]

pub mod assets;
pub mod html;
pub mod i18n;
mod notified;
pub mod pdf;
pub mod period;
pub mod schedule;
pub mod series;
pub mod shelf;
pub mod source;
mod text;

use std::collections::BTreeMap;
use std::time::SystemTime;

use owlet_proto::v1::Event;
use owlet_proto::v1::event::Kind;
use owlet_soc_export::Zone;
use owlet_soc_store::rollup::{HOUR_US, Hist, OTHER, Scale};
use prost::Message as _;
use serde::Serialize;

pub use html::Style;
pub use i18n::Lang;
pub use period::{Period, PeriodError};
pub use source::Source;
use source::{Param, Row};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Period(#[from] PeriodError),
    #[error(transparent)]
    Store(#[from] owlet_soc_store::StoreError),
    #[error(
        "the tenant's database has schema version {found}, before the hourly rollups reports read (version {needed}): start `owlet-soc serve` once, it upgrades tenant files in place, then run the report again"
    )]
    NotUpgraded { found: i64, needed: i64 },
    #[error("reading the tenant's database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("reading the tenant's PostgreSQL schema: {0}")]
    Postgres(String),
    #[error("reading the tenant's notification record {path}: {source}")]
    Notifications {
        path: std::path::PathBuf,
        source: rusqlite::Error,
    },
}

/// How much of each list a report shows.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Entries in each top list (sources, destinations, ports, names).
    pub top: usize,
    /// Latest configuration changes listed one by one.
    pub changes_listed: usize,
    /// How far before the period an incident's raise is looked for.
    pub incident_lookback_days: i64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            top: 10,
            changes_listed: 50,
            incident_lookback_days: 31,
        }
    }
}

/// A tenant's report of one period. Serialized as the `--json` output.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tenant: String,
    pub period: String,
    /// The zone of every time in the report.
    pub time_zone: String,
    /// Start and end of the period (RFC 3339 with offset).
    pub from: String,
    pub to: String,
    pub generated_at: String,
    pub coverage: Coverage,
    pub checks: Vec<CheckFigures>,
    pub alerts: Vec<AlertCount>,
    pub incidents: Vec<Incident>,
    pub config_changes: Changes,
    pub traffic: Traffic,
    pub names: Names,
    pub host_health: Vec<HostHealth>,
    pub sensor_health: Vec<SensorHealth>,
    /// What the reader should know about how the figures were made.
    pub notes: Vec<String>,
}

/// What data the period holds.
#[derive(Debug, Clone, Serialize)]
pub struct Coverage {
    /// Events whose own time falls in the period (from the rollups).
    pub events: i64,
    /// Hours of the period with at least one event.
    pub hours_with_events: i64,
    pub hours_in_period: i64,
    /// Raw events of the period still stored (retention may have deleted
    /// some; the rollup figures remain).
    pub raw_events_stored: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckFigures {
    pub agent: String,
    pub check_id: String,
    pub results: i64,
    pub up: i64,
    pub degraded: i64,
    pub down: i64,
    /// `up / results` in percent (the SLA figure).
    pub availability_percent: Option<f64>,
    /// Latency of answered probes (up or degraded).
    pub latency_ms: Option<Stat>,
}

/// Summary of a distribution.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Stat {
    pub samples: i64,
    pub avg: f64,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertCount {
    pub agent: String,
    pub name: String,
    pub severity: String,
    pub alerts: i64,
    pub raised: i64,
    pub cleared: i64,
}

/// A condition raised and (perhaps) cleared: one alert source and subject
/// of one agent.
#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub agent: String,
    pub name: String,
    pub source: String,
    pub subject: String,
    /// The highest severity raised.
    pub severity: String,
    /// `None` when the raise is not in the stored log (before the lookback
    /// or deleted by retention).
    pub raised_at: Option<String>,
    pub cleared_at: Option<String>,
    /// Raised to cleared; to the end of the period (or now) when still open.
    pub duration_seconds: Option<i64>,
    pub open: bool,
    /// The raise's position in the tenant's log (`events.id`).
    pub raised_log_id: Option<i64>,
    /// When the first notification carrying the raise was delivered (or
    /// sent, for channels without acknowledgement), from the tenant's
    /// notification record; `None` when it was not notified.
    pub notified_at: Option<String>,
    /// The raise's own time to that delivery.
    pub time_to_notification_seconds: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Changes {
    pub total: i64,
    pub by_agent: Vec<ChangeCount>,
    /// The latest changes, newest first (from the raw events).
    pub latest: Vec<Change>,
    /// Changes of the period not listed in `latest`.
    pub not_listed: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChangeCount {
    pub agent: String,
    pub action: String,
    pub changes: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub time: String,
    pub agent: String,
    pub path: String,
    pub action: String,
    pub changed_by: Option<String>,
    pub severity: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Traffic {
    pub sources: TopList,
    pub destinations: TopList,
    pub ports: TopList,
}

/// A top list with the exact totals it is part of.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TopList {
    pub top: Vec<TopEntry>,
    pub total_bytes: i64,
    pub total_packets: i64,
    pub total_flows: i64,
    /// Bytes not in `top`.
    pub other_bytes: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TopEntry {
    pub key: String,
    pub bytes: i64,
    pub packets: i64,
    pub flows: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Names {
    pub dns: Vec<NameCount>,
    pub sni: Vec<NameCount>,
    pub http: Vec<NameCount>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NameCount {
    pub name: String,
    pub flows: i64,
    pub bytes: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostHealth {
    pub agent: String,
    pub samples: i64,
    pub cpu_percent: Option<Stat>,
    pub memory_percent: Option<Stat>,
    pub disk_percent: Option<Stat>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SensorHealth {
    pub agent: String,
    pub heartbeats: i64,
    pub first_heartbeat: Option<String>,
    pub last_heartbeat: Option<String>,
    /// The longest time between two heartbeats in the period.
    pub longest_gap_seconds: Option<i64>,
    /// Heartbeats that said the agent was stopping (planned stops).
    pub stops: i64,
    pub data_loss_reports: i64,
    pub events_lost: u64,
}

/// Builds the report of `period` for the tenant `source` reads (its
/// SQLite file or its PostgreSQL schema: [`source`]), with times in
/// `zone`. `now` bounds open incidents and stamps the report.
pub fn build(
    source: &(impl Source + ?Sized),
    period: &Period,
    zone: &Zone,
    now: SystemTime,
    options: &Options,
) -> Result<Report, ReportError> {
    let (start, end) = period.bounds(zone);
    let now_us = chrono::DateTime::<chrono::Utc>::from(now).timestamp_micros();
    let db = source;
    db.ready()?;
    // A tenant that never stored an event has no `events` table yet.
    let raw = db.has_events()?;
    // Rollup rows are selected by the start of their UTC hour.
    let (h0, h1) = (
        start.div_euclid(HOUR_US) * HOUR_US,
        end.div_euclid(HOUR_US) * HOUR_US,
    );
    let mut notes = vec![
        "Check, alert, change-count, traffic, name and host figures come from hourly rollups \
         of the whole UTC hours starting in the period; incidents, the latest changes and sensor \
         health come from the stored events."
            .to_string(),
        "Top lists add up hourly top lists of 100 keys each: totals and 'other' are exact, a \
         key just below every hour's cut can be missing. Percentiles are read from histograms \
         (latency within 9 %, percentages within 0.5 points)."
            .to_string(),
    ];
    if start % HOUR_US != 0 {
        notes.push(format!(
            "{} is not a whole number of hours from UTC: rollup figures are shifted by up to an hour against the period.",
            zone.name()
        ));
    }

    let hours = db.row(
        "SELECT CAST(COALESCE(SUM(events), 0) AS BIGINT), COUNT(*) FROM rollup_hours WHERE hour_us >= ?1 AND hour_us < ?2",
        &[Param::Int(h0), Param::Int(h1)],
    )?;
    let (events, hours_with_events) = (hours.int(0), hours.int(1));
    let raw_events_stored: i64 = if raw {
        db.row(
            "SELECT COUNT(*) FROM events WHERE time_us >= ?1 AND time_us < ?2",
            &[Param::Int(start), Param::Int(end)],
        )?
        .int(0)
    } else {
        0
    };
    if raw_events_stored < events {
        notes.push(format!(
            "{} events of the period are no longer stored (retention); their rollup figures remain, the lists from single events miss them.",
            events - raw_events_stored
        ));
    }
    let coverage = Coverage {
        events,
        hours_with_events,
        hours_in_period: (end - start) / HOUR_US,
        raw_events_stored,
    };

    Ok(Report {
        tenant: db.tenant().to_string(),
        period: period.label.clone(),
        time_zone: zone.name().to_string(),
        from: zone.rfc3339(start),
        to: zone.rfc3339(end),
        generated_at: zone.rfc3339(now_us),
        coverage,
        checks: checks(db, h0, h1)?,
        alerts: alerts(db, h0, h1)?,
        incidents: if raw {
            let mut list = incidents(db, zone, start, end.min(now_us), options)?;
            db.fill_notified(zone, &mut list)?;
            list
        } else {
            Vec::new()
        },
        config_changes: changes(db, raw, zone, (h0, h1), (start, end), options)?,
        traffic: Traffic {
            sources: top_list(db, "src", h0, h1, options.top)?,
            destinations: top_list(db, "dst", h0, h1, options.top)?,
            ports: top_list(db, "dst_port", h0, h1, options.top)?,
        },
        names: Names {
            dns: names(db, "dns", h0, h1, options.top)?,
            sni: names(db, "sni", h0, h1, options.top)?,
            http: names(db, "http", h0, h1, options.top)?,
        },
        host_health: host(db, h0, h1)?,
        sensor_health: if raw {
            sensors(db, zone, start, end)?
        } else {
            Vec::new()
        },
        notes,
    })
}

pub(crate) fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

/// A histogram being merged over hours, with its exact companions.
#[derive(Default)]
struct Dist {
    n: i64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
    hist: Hist,
}

impl Dist {
    fn add(&mut self, n: i64, sum: f64, min: Option<f64>, max: Option<f64>, hist: &str) {
        self.n += n;
        self.sum += sum;
        self.min = min.map_or(self.min, |m| Some(self.min.map_or(m, |s| s.min(m))));
        self.max = max.map_or(self.max, |m| Some(self.max.map_or(m, |s| s.max(m))));
        self.hist.merge(&Hist::parse(hist));
    }

    /// The summary, values multiplied by `scale_by` (µs → ms).
    fn stat(&self, scale: Scale, scale_by: f64) -> Option<Stat> {
        let max = self.max?;
        if self.n == 0 {
            return None;
        }
        let min = self.min.unwrap_or(0.0);
        let p = |q| self.hist.percentile(scale, q, min, max).unwrap_or(max) * scale_by;
        Some(Stat {
            samples: self.n,
            avg: round(self.sum / self.n as f64 * scale_by, 3),
            p50: round(p(50.0), 3),
            p95: round(p(95.0), 3),
            max: round(max * scale_by, 3),
        })
    }
}

fn checks(db: &(impl Source + ?Sized), h0: i64, h1: i64) -> Result<Vec<CheckFigures>, ReportError> {
    let mut by: BTreeMap<(String, String), ([i64; 4], Dist)> = BTreeMap::new();
    db.each_row(
        "SELECT agent, check_id, results, up, degraded, down, latency_n, latency_sum,
                latency_min, latency_max, latency_hist
         FROM rollup_checks WHERE hour_us >= ?1 AND hour_us < ?2",
        &[Param::Int(h0), Param::Int(h1)],
        &mut |r| {
            let (counts, dist) = by.entry((r.text(0), r.text(1))).or_default();
            for (i, c) in counts.iter_mut().enumerate() {
                *c += r.int(2 + i);
            }
            dist.add(
                r.int(6),
                r.int(7) as f64,
                r.opt_real(8),
                r.opt_real(9),
                &r.text(10),
            );
            Ok(())
        },
    )?;
    Ok(by
        .into_iter()
        .map(
            |((agent, check_id), ([results, up, degraded, down], dist))| CheckFigures {
                agent,
                check_id,
                results,
                up,
                degraded,
                down,
                availability_percent: (results > 0)
                    .then(|| round(up as f64 * 100.0 / results as f64, 3)),
                latency_ms: dist.stat(Scale::Log, 0.001),
            },
        )
        .collect())
}

fn alerts(db: &(impl Source + ?Sized), h0: i64, h1: i64) -> Result<Vec<AlertCount>, ReportError> {
    Ok(db
        .rows(
            "SELECT agent, alert_name, severity, CAST(SUM(alerts) AS BIGINT),
                    CAST(SUM(raised) AS BIGINT), CAST(SUM(cleared) AS BIGINT)
             FROM rollup_alerts WHERE hour_us >= ?1 AND hour_us < ?2
             GROUP BY 1, 2, 3 ORDER BY SUM(alerts) DESC, 1, 2, 3",
            &[Param::Int(h0), Param::Int(h1)],
        )?
        .iter()
        .map(|r| AlertCount {
            agent: r.text(0),
            name: r.text(1),
            severity: r.text(2),
            alerts: r.int(3),
            raised: r.int(4),
            cleared: r.int(5),
        })
        .collect())
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 3,
        "warning" => 2,
        "info" => 1,
        _ => 0,
    }
}

/// Raised → cleared pairs per (agent, source, subject) that overlap
/// `[start, end)`, from the raw alerts (and those of the lookback before).
fn incidents(
    db: &(impl Source + ?Sized),
    zone: &Zone,
    start: i64,
    end: i64,
    options: &Options,
) -> Result<Vec<Incident>, ReportError> {
    let lookback = start - options.incident_lookback_days * 86_400_000_000;
    let sql = "SELECT time_us, agent, COALESCE(alert_source, ''), COALESCE(alert_subject, ''),
                COALESCE(alert_name, ''), COALESCE(severity, ''), COALESCE(state, ''), id
         FROM events WHERE kind = 'alert' AND time_us >= ?1 AND time_us < ?2
         ORDER BY time_us, id";
    // Open conditions: (agent, source, subject) → (raised at, name,
    // severity, log id).
    type Key = (String, String, String);
    let mut open: BTreeMap<Key, (i64, String, String, i64)> = BTreeMap::new();
    let mut out: Vec<(Option<i64>, i64, Incident)> = Vec::new();
    db.each_row(sql, &[Param::Int(lookback), Param::Int(end)], &mut |r| {
        let t = r.int(0);
        let key = (r.text(1), r.text(2), r.text(3));
        let (name, severity, state) = (r.text(4), r.text(5), r.text(6));
        let id = r.int(7);
        if state != "up" && !matches!(state.as_str(), "down" | "degraded" | "unknown") {
            // An alert without a state (a one-off notice) is counted in
            // `alerts`, but opens no incident.
            return Ok(());
        }
        if state != "up" {
            let entry = open.entry(key).or_insert((t, name, severity.clone(), id));
            if severity_rank(&severity) > severity_rank(&entry.2) {
                entry.2 = severity;
            }
            return Ok(());
        }
        if t < start {
            open.remove(&key);
            return Ok(());
        }
        let (agent, source, subject) = key.clone();
        let (raised, name, severity, raised_log_id) = match open.remove(&key) {
            Some((raised, n, s, id)) => (Some(raised), n, s, Some(id)),
            None => (None, name, severity, None),
        };
        out.push((
            raised,
            t,
            Incident {
                agent,
                name,
                source,
                subject,
                severity,
                raised_at: raised.map(|r| zone.rfc3339(r)),
                cleared_at: Some(zone.rfc3339(t)),
                duration_seconds: raised.map(|r| (t - r) / 1_000_000),
                open: false,
                raised_log_id,
                notified_at: None,
                time_to_notification_seconds: None,
            },
        ));
        Ok(())
    })?;
    for ((agent, source, subject), (raised, name, severity, id)) in open {
        out.push((
            Some(raised),
            end,
            Incident {
                agent,
                name,
                source,
                subject,
                severity,
                raised_at: Some(zone.rfc3339(raised)),
                cleared_at: None,
                duration_seconds: Some((end - raised).max(0) / 1_000_000),
                open: true,
                raised_log_id: Some(id),
                notified_at: None,
                time_to_notification_seconds: None,
            },
        ));
    }
    out.sort_by_key(|(raised, until, _)| (raised.unwrap_or(*until), *until));
    Ok(out.into_iter().map(|(_, _, i)| i).collect())
}

fn changes(
    db: &(impl Source + ?Sized),
    raw: bool,
    zone: &Zone,
    (h0, h1): (i64, i64),
    (start, end): (i64, i64),
    options: &Options,
) -> Result<Changes, ReportError> {
    let by_agent: Vec<ChangeCount> = db
        .rows(
            "SELECT agent, action, CAST(SUM(changes) AS BIGINT) FROM rollup_changes
             WHERE hour_us >= ?1 AND hour_us < ?2 GROUP BY 1, 2 ORDER BY 1, 2",
            &[Param::Int(h0), Param::Int(h1)],
        )?
        .iter()
        .map(|r| ChangeCount {
            agent: r.text(0),
            action: r.text(1),
            changes: r.int(2),
        })
        .collect();
    let total = by_agent.iter().map(|c| c.changes).sum();
    if !raw {
        return Ok(Changes {
            total,
            not_listed: total,
            by_agent,
            latest: Vec::new(),
        });
    }
    let stored = db
        .row(
            "SELECT COUNT(*) FROM events WHERE kind = 'file_change' AND time_us >= ?1 AND time_us < ?2",
            &[Param::Int(start), Param::Int(end)],
        )?
        .int(0);
    let latest = db
        .newest(
            "time_us, agent, COALESCE(file_path, ''), COALESCE(file_action, ''),
             changed_by, severity",
            "kind = 'file_change'",
            (start, end),
            options.changes_listed,
        )?
        .iter()
        .map(|r| Change {
            time: zone.rfc3339(r.int(0)),
            agent: r.text(1),
            path: r.text(2),
            action: r.text(3),
            changed_by: r.opt_text(4),
            severity: r.opt_text(5),
        })
        .collect::<Vec<_>>();
    Ok(Changes {
        total,
        not_listed: stored.max(total) - latest.len() as i64,
        by_agent,
        latest,
    })
}

pub(crate) fn top_list(
    db: &(impl Source + ?Sized),
    dimension: &str,
    h0: i64,
    h1: i64,
    top: usize,
) -> Result<TopList, ReportError> {
    let mut list = TopList::default();
    let sums = sums_by_key::<3>(
        db,
        "SELECT key, bytes, packets, flows FROM rollup_talkers
         WHERE dimension = ?1 AND hour_us >= ?2 AND hour_us < ?3",
        &[Param::Text(dimension), Param::Int(h0), Param::Int(h1)],
    )?;
    for (key, [bytes, packets, flows]) in sums {
        list.total_bytes += bytes;
        list.total_packets += packets;
        list.total_flows += flows;
        if key != OTHER && list.top.len() < top {
            list.top.push(TopEntry {
                key,
                bytes,
                packets,
                flows,
            });
        } else {
            list.other_bytes += bytes;
        }
    }
    Ok(list)
}

pub(crate) fn names(
    db: &(impl Source + ?Sized),
    kind: &str,
    h0: i64,
    h1: i64,
    top: usize,
) -> Result<Vec<NameCount>, ReportError> {
    let sums = sums_by_key::<2>(
        db,
        "SELECT name, flows, bytes FROM rollup_names
         WHERE kind = ?1 AND hour_us >= ?2 AND hour_us < ?3 AND name <> ''",
        &[Param::Text(kind), Param::Int(h0), Param::Int(h1)],
    )?;
    Ok(sums
        .into_iter()
        .take(top)
        .map(|(name, [flows, bytes])| NameCount { name, flows, bytes })
        .collect())
}

/// The rows of `sql` (a key, then `N` integers) summed per key, largest
/// first value first, ties by key. Summed here rather than by SQL's
/// `GROUP BY`, which sorts every row of the range (a month of hourly rows:
/// 72,000 for one dimension) to group ~100 keys.
fn sums_by_key<const N: usize>(
    db: &(impl Source + ?Sized),
    sql: &str,
    params: &[Param<'_>],
) -> Result<Vec<(String, [i64; N])>, ReportError> {
    let mut by: std::collections::HashMap<String, [i64; N]> = std::collections::HashMap::new();
    db.each_row(sql, params, &mut |r: &Row| {
        let key = r.text(0);
        let sum = by.entry(key).or_insert([0; N]);
        for (i, v) in sum.iter_mut().enumerate() {
            *v += r.int(i + 1);
        }
        Ok(())
    })?;
    let mut out: Vec<(String, [i64; N])> = by.into_iter().collect();
    out.sort_by(|a, b| b.1[0].cmp(&a.1[0]).then_with(|| a.0.cmp(&b.0)));
    Ok(out)
}

fn host(db: &(impl Source + ?Sized), h0: i64, h1: i64) -> Result<Vec<HostHealth>, ReportError> {
    let mut by: BTreeMap<String, (i64, [Dist; 3])> = BTreeMap::new();
    db.each_row(
        "SELECT agent, samples,
                cpu_n, cpu_sum, cpu_max, cpu_hist,
                memory_n, memory_sum, memory_max, memory_hist,
                disk_n, disk_sum, disk_max, disk_hist
         FROM rollup_host WHERE hour_us >= ?1 AND hour_us < ?2",
        &[Param::Int(h0), Param::Int(h1)],
        &mut |r| {
            let (samples, dists) = by.entry(r.text(0)).or_default();
            *samples += r.int(1);
            for (i, d) in dists.iter_mut().enumerate() {
                let c = 2 + 4 * i;
                d.add(
                    r.int(c),
                    r.real(c + 1),
                    None,
                    r.opt_real(c + 2),
                    &r.text(c + 3),
                );
            }
            Ok(())
        },
    )?;
    Ok(by
        .into_iter()
        .map(|(agent, (samples, [cpu, memory, disk]))| HostHealth {
            agent,
            samples,
            cpu_percent: cpu.stat(Scale::Percent, 1.0),
            memory_percent: memory.stat(Scale::Percent, 1.0),
            disk_percent: disk.stat(Scale::Percent, 1.0),
        })
        .collect())
}

fn sensors(
    db: &(impl Source + ?Sized),
    zone: &Zone,
    start: i64,
    end: i64,
) -> Result<Vec<SensorHealth>, ReportError> {
    let mut by: BTreeMap<String, SensorHealth> = BTreeMap::new();
    let blank = |agent: &str| SensorHealth {
        agent: agent.to_string(),
        heartbeats: 0,
        first_heartbeat: None,
        last_heartbeat: None,
        longest_gap_seconds: None,
        stops: 0,
        data_loss_reports: 0,
        events_lost: 0,
    };
    let range = [Param::Int(start), Param::Int(end)];
    db.each_row(
        "SELECT agent, COUNT(*), MIN(time_us), MAX(time_us),
                CAST(SUM(CASE WHEN state = 'stopping' THEN 1 ELSE 0 END) AS BIGINT), MAX(gap)
         FROM (SELECT agent, time_us, state,
                      time_us - LAG(time_us) OVER (PARTITION BY agent ORDER BY time_us) AS gap
               FROM events WHERE kind = 'agent_status' AND time_us >= ?1 AND time_us < ?2) h
         GROUP BY agent",
        &range,
        &mut |r| {
            let agent = r.text(0);
            let s = by.entry(agent.clone()).or_insert_with(|| blank(&agent));
            s.heartbeats = r.int(1);
            s.first_heartbeat = Some(zone.rfc3339(r.int(2)));
            s.last_heartbeat = Some(zone.rfc3339(r.int(3)));
            s.stops = r.int(4);
            s.longest_gap_seconds = r.opt_int(5).map(|g| g / 1_000_000);
            Ok(())
        },
    )?;
    db.each_row(
        "SELECT agent, body FROM events WHERE kind = 'data_loss' AND time_us >= ?1 AND time_us < ?2",
        &range,
        &mut |r| {
            let agent = r.text(0);
            let s = by.entry(agent.clone()).or_insert_with(|| blank(&agent));
            s.data_loss_reports += 1;
            // A body that does not decode was never stored so; it counts as
            // a report without a figure.
            if let Ok(Event { kind: Some(Kind::DataLoss(d)), .. }) = Event::decode(r.bytes(1)) {
                s.events_lost += d.events_lost;
            }
            Ok(())
        },
    )?;
    Ok(by.into_values().collect())
}

impl Report {
    /// The report as text for people: one section per topic, each with a
    /// "nothing found" line when empty.
    pub fn to_text(&self) -> String {
        text::render(self)
    }
}
