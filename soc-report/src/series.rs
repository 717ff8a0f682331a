//! Time series for the portal's plots, as JSON a browser hands to uPlot
//! (`assets/plots.js`): one tenant, a range `[from, to)`, a step chosen
//! from the range.
//!
//! # Where the numbers come from
//! * **Ranges longer than 2 days read the hourly rollups only**
//!   (`rollup_*`): a 30-day plot reads ≤ 720 rows per key, whatever the
//!   number of raw events (the goal: ≤ 300 ms over a tenant with
//!   10 M events and 50 sensors; `cargo run --release -p owlet-soc-report
//!   --example series_bench` fills 30 days × 50 sensors of rollups and
//!   prints the times). Steps are 1 hour up to 60 days, 1 day beyond.
//! * **Ranges of 2 days or less read the raw events** (check results,
//!   host metrics, flows: the `time_us` index bounds the scan), with
//!   1-minute steps up to 12 hours and 5-minute steps up to 2 days, and
//!   exact percentiles.
//! * Top lists and the alert timeline read the same sources as the report
//!   ([`crate::top_list`] over rollups, alerts from the raw `alert` events
//!   through their partial index).
//!
//! # The learned normal range (host CPU / memory / disk)
//! Per sensor, the 5th to 95th percentile of the metric over the **7 days
//! before `from`**, per UTC hour of the day when that hour has samples on at
//! least 3 of those days, else over all hours of the 7 days; none when the 7
//! days hold fewer than 24 samples. It is learned once per request (not
//! rolling along the range), from the rollups' histograms (within half a
//! point), so a 30-day plot reads 7 × 24 extra rows per sensor.
//!
//! Guarantees: reads one tenant's data through its read-only [`Source`]
//! (`crate::source`: the embedded SOC's tenant file or the scaled-out
//! SOC's tenant schema, the same portable SQL); every series has one value per step (`null` where
//! there was no data, never a made-up zero); times are Unix seconds (UTC)
//! for the x axis, with the tenant's zone named for the axis labels.

use std::collections::BTreeMap;

use owlet_soc_export::Zone;
use owlet_soc_store::rollup::{HOUR_US, Hist, Scale};
use serde::Serialize;

use crate::source::{Param, Row, Source as TenantSource};
use crate::{NameCount, ReportError, TopList, round};

const MINUTE_US: i64 = 60_000_000;
const DAY_US: i64 = 24 * HOUR_US;
/// Ranges up to this long are read from the raw events.
pub const RAW_UP_TO_US: i64 = 2 * DAY_US;

/// Where a series was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Rollups,
    Events,
}

/// The time axis of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Axis {
    pub from_us: i64,
    pub to_us: i64,
    pub step_us: i64,
    pub source: Source,
}

impl Axis {
    /// The step and source for `[from_us, to_us)` (see the module doc). The
    /// first step starts at `from_us` rounded down to the step (to the hour
    /// for rollups).
    pub fn for_range(from_us: i64, to_us: i64) -> Axis {
        let len = (to_us - from_us).max(1);
        let (step_us, source) = if len <= 12 * HOUR_US {
            (MINUTE_US, Source::Events)
        } else if len <= RAW_UP_TO_US {
            (5 * MINUTE_US, Source::Events)
        } else if len <= 60 * DAY_US {
            (HOUR_US, Source::Rollups)
        } else {
            (DAY_US, Source::Rollups)
        };
        let align = if source == Source::Rollups {
            HOUR_US
        } else {
            step_us
        };
        Axis {
            from_us: from_us.div_euclid(align) * align,
            to_us,
            step_us,
            source,
        }
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        ((self.to_us - self.from_us + self.step_us - 1) / self.step_us).max(0) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The step holding time `t_us`, if inside the range.
    fn index(&self, t_us: i64) -> Option<usize> {
        (t_us >= self.from_us && t_us < self.to_us)
            .then(|| ((t_us - self.from_us) / self.step_us) as usize)
    }

    /// Start of each step, Unix seconds.
    fn times(&self) -> Vec<i64> {
        (0..self.len())
            .map(|i| (self.from_us + i as i64 * self.step_us) / 1_000_000)
            .collect()
    }
}

/// One plot's data: an x axis and lines over it.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub title: String,
    /// The zone the axis labels are shown in (IANA name).
    pub time_zone: String,
    pub from: String,
    pub to: String,
    pub step_seconds: i64,
    pub source: Source,
    /// Start of each step, Unix seconds (UTC).
    pub t: Vec<i64>,
    pub lines: Vec<Line>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub label: String,
    /// `%`, `ms`, `B/s`, `packets/s`, `alerts`.
    pub unit: &'static str,
    pub values: Vec<Option<f64>>,
    /// The learned normal range (host metrics only), one bound per step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normal: Option<Normal>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Normal {
    pub low: Vec<Option<f64>>,
    pub high: Vec<Option<f64>>,
    /// How it was learned, for the legend.
    pub learned_from: String,
}

/// A host metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Cpu,
    Memory,
    Disk,
}

impl Metric {
    fn column(self) -> &'static str {
        match self {
            Metric::Cpu => "cpu",
            Metric::Memory => "memory",
            Metric::Disk => "disk",
        }
    }
}

/// The request: a tenant (its source), a range and the zone of the labels.
pub struct Request<'a> {
    pub source: &'a dyn TenantSource,
    pub zone: &'a Zone,
    pub from_us: i64,
    pub to_us: i64,
}

impl Request<'_> {
    fn series(&self, title: &str, axis: &Axis, lines: Vec<Line>) -> Series {
        Series {
            title: title.to_string(),
            time_zone: self.zone.name().to_string(),
            from: self.zone.rfc3339(self.from_us),
            to: self.zone.rfc3339(self.to_us),
            step_seconds: axis.step_us / 1_000_000,
            source: axis.source,
            t: axis.times(),
            lines,
        }
    }

    fn axis(&self) -> Axis {
        Axis::for_range(self.from_us, self.to_us)
    }
}

fn nearest_rank(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Runs `sql` (its first column a time in µs, bound `?1` = from, `?2` =
/// to of `axis`) and calls `each` with the step of every row in the range.
fn each_step(
    db: &dyn TenantSource,
    sql: &str,
    axis: &Axis,
    mut each: impl FnMut(usize, &Row),
) -> Result<(), ReportError> {
    // A tenant that never stored an event has rollup tables but no
    // `events` yet: nothing to read.
    if sql.contains("FROM events") && !db.has_events()? {
        return Ok(());
    }
    db.each_row(
        sql,
        &[Param::Int(axis.from_us), Param::Int(axis.to_us)],
        &mut |r| {
            if let Some(i) = axis.index(r.int(0)) {
                each(i, r);
            }
            Ok(())
        },
    )
}

/// Per key, per step: an accumulator.
type Grid<A> = BTreeMap<String, Vec<A>>;

fn slot<A: Default + Clone>(grid: &mut Grid<A>, key: String, n: usize) -> &mut Vec<A> {
    grid.entry(key).or_insert_with(|| vec![A::default(); n])
}

#[derive(Default, Clone)]
struct CheckAcc {
    results: i64,
    up: i64,
    hist: Hist,
    raw: Vec<f64>,
    min: Option<f64>,
    max: Option<f64>,
    /// p50 and p95 read straight from the one stored row of the cell
    /// (hourly steps), without building a [`Hist`].
    read: Option<[Option<f64>; 2]>,
}

/// p50 and p95 of a stored latency histogram (`{"bucket":count,…}` in
/// bucket order, as `Hist::to_json` writes it), clamped to `[min, max]`:
/// the same values as `Hist::parse(text).percentile(..)`, with one small
/// allocation instead of a map (a 30-day plot reads ~150,000 of them).
fn stored_percentiles(text: &str, min: f64, max: f64) -> [Option<f64>; 2] {
    let mut buckets: Vec<(u16, u64)> = Vec::with_capacity(32);
    let inner = text.trim().trim_start_matches('{').trim_end_matches('}');
    for pair in inner.split(',').filter(|p| !p.trim().is_empty()) {
        let parsed = pair.split_once(':').and_then(|(b, n)| {
            Some((
                b.trim().trim_matches('"').parse().ok()?,
                n.trim().parse().ok()?,
            ))
        });
        match parsed {
            Some(bucket) => buckets.push(bucket),
            None => return [None, None],
        }
    }
    if buckets.windows(2).any(|w| w[0].0 >= w[1].0) {
        // Not in bucket order (never written so): the general path.
        let h = Hist::parse(text);
        return [50.0, 95.0].map(|p| h.percentile(Scale::Log, p, min, max));
    }
    let total: u64 = buckets.iter().map(|b| b.1).sum();
    [50.0, 95.0].map(|p| {
        if total == 0 {
            return None;
        }
        let rank = ((p / 100.0 * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        buckets.iter().find_map(|(b, c)| {
            seen += c;
            (seen >= rank).then(|| Scale::Log.middle(*b).clamp(min.min(max), max))
        })
    })
}

impl CheckAcc {
    fn latency(&mut self, p: f64) -> Option<f64> {
        if let Some([p50, p95]) = self.read {
            return if p <= 50.0 { p50 } else { p95 };
        }
        if !self.raw.is_empty() {
            self.raw.sort_by(f64::total_cmp);
            return nearest_rank(&self.raw, p);
        }
        let (min, max) = (self.min?, self.max?);
        self.hist.percentile(Scale::Log, p, min, max)
    }
}

/// Counts per check and step, and the latency distribution when `latency`
/// (reading and merging histograms is most of the cost of a long range).
fn check_grid(req: &Request, axis: &Axis, latency: bool) -> Result<Grid<CheckAcc>, ReportError> {
    let db = req.source;
    let n = axis.len();
    let mut grid: Grid<CheckAcc> = BTreeMap::new();
    // Hourly steps over rollups: each cell is exactly one row.
    let one_row = axis.step_us == HOUR_US;
    match axis.source {
        Source::Rollups => {
            let sql = if latency {
                "SELECT hour_us, agent || '/' || check_id, results, up,
                        latency_min, latency_max, latency_hist
                 FROM rollup_checks WHERE hour_us >= ?1 AND hour_us < ?2"
            } else {
                "SELECT hour_us, agent || '/' || check_id, results, up, NULL, NULL, NULL
                 FROM rollup_checks WHERE hour_us >= ?1 AND hour_us < ?2"
            };
            each_step(db, sql, axis, |i, r| {
                let a = &mut slot(&mut grid, r.text(1), n)[i];
                a.results += r.int(2);
                a.up += r.int(3);
                if let (Some(lo), Some(hi)) = (r.opt_real(4), r.opt_real(5)) {
                    a.min = Some(a.min.map_or(lo, |m| m.min(lo)));
                    a.max = Some(a.max.map_or(hi, |m| m.max(hi)));
                    let text = r.opt_text(6).unwrap_or_else(|| "{}".into());
                    if one_row {
                        a.read = Some(stored_percentiles(&text, lo, hi));
                    } else {
                        a.hist.merge(&Hist::parse(&text));
                    }
                }
            })?;
        }
        Source::Events => {
            each_step(
                db,
                "SELECT time_us, agent || '/' || COALESCE(check_id, ''), result, latency_us
                 FROM events WHERE time_us >= ?1 AND time_us < ?2 AND kind = 'check_result'",
                axis,
                |i, r| {
                    let a = &mut slot(&mut grid, r.text(1), n)[i];
                    let result = r.opt_text(2);
                    a.results += 1;
                    a.up += i64::from(result.as_deref() == Some("up"));
                    if matches!(result.as_deref(), Some("up" | "degraded"))
                        && let Some(l) = r.opt_int(3)
                    {
                        a.raw.push(l as f64);
                    }
                },
            )?;
        }
    }
    Ok(grid)
}

/// Availability per check (percent of results `up`, per step).
pub fn check_availability(req: &Request) -> Result<Series, ReportError> {
    let axis = req.axis();
    let grid = check_grid(req, &axis, false)?;
    let lines = grid
        .into_iter()
        .map(|(key, accs)| Line {
            label: key,
            unit: "%",
            values: accs
                .iter()
                .map(|a| (a.results > 0).then(|| round(100.0 * a.up as f64 / a.results as f64, 3)))
                .collect(),
            normal: None,
        })
        .collect();
    Ok(req.series("Check availability", &axis, lines))
}

/// Latency per check: p50 and p95 of answered probes, milliseconds.
pub fn check_latency(req: &Request) -> Result<Series, ReportError> {
    let axis = req.axis();
    let grid = check_grid(req, &axis, true)?;
    let mut lines = Vec::new();
    for (key, mut accs) in grid {
        for p in [50.0, 95.0] {
            lines.push(Line {
                label: format!("{key} p{p}"),
                unit: "ms",
                values: accs
                    .iter_mut()
                    .map(|a| a.latency(p).map(|us| round(us / 1000.0, 3)))
                    .collect(),
                normal: None,
            });
        }
    }
    Ok(req.series("Check latency", &axis, lines))
}

#[derive(Default, Clone)]
struct Mean {
    n: i64,
    sum: f64,
}

/// A host metric per sensor (the step's average) with its learned normal
/// range (see the module doc).
pub fn host(req: &Request, metric: Metric) -> Result<Series, ReportError> {
    let axis = req.axis();
    let db = req.source;
    let n = axis.len();
    let c = metric.column();
    let mut grid: Grid<Mean> = BTreeMap::new();
    match axis.source {
        Source::Rollups => {
            each_step(
                db,
                &format!(
                    "SELECT hour_us, agent, {c}_n, {c}_sum FROM rollup_host
                 WHERE hour_us >= ?1 AND hour_us < ?2 AND {c}_n > 0"
                ),
                &axis,
                |i, r| {
                    let m = &mut slot(&mut grid, r.text(1), n)[i];
                    m.n += r.int(2);
                    m.sum += r.real(3);
                },
            )?;
        }
        Source::Events => {
            each_step(db, &format!(
                "SELECT time_us, agent, {c}_percent FROM events
                 WHERE time_us >= ?1 AND time_us < ?2 AND kind = 'host_metrics' AND {c}_percent IS NOT NULL"
            ), &axis, |i, r| {
                let m = &mut slot(&mut grid, r.text(1), n)[i];
                m.n += 1;
                m.sum += r.real(2);
            })?;
        }
    }
    let normals = learned_normal(db, c, axis.from_us)?;
    let lines = grid
        .into_iter()
        .map(|(agent, means)| {
            let normal = normals.get(&agent).map(|bands| {
                let at = |i: usize| {
                    let t = axis.from_us + i as i64 * axis.step_us;
                    let hour = if axis.step_us <= HOUR_US {
                        t.rem_euclid(DAY_US) / HOUR_US
                    } else {
                        24
                    } as usize;
                    bands[hour].or(bands[24])
                };
                Normal {
                    low: (0..n).map(|i| at(i).map(|b| b.0)).collect(),
                    high: (0..n).map(|i| at(i).map(|b| b.1)).collect(),
                    learned_from: "p5-p95 of the 7 days before the range, per UTC hour of day"
                        .into(),
                }
            });
            Line {
                label: agent,
                unit: "%",
                values: means
                    .iter()
                    .map(|m| (m.n > 0).then(|| round(m.sum / m.n as f64, 2)))
                    .collect(),
                normal,
            }
        })
        .collect();
    Ok(req.series(
        match metric {
            Metric::Cpu => "CPU",
            Metric::Memory => "Memory",
            Metric::Disk => "Disk",
        },
        &axis,
        lines,
    ))
}

/// Per sensor: `[p5, p95]` per UTC hour of day (0–23) and over all hours (24).
type Bands = [Option<(f64, f64)>; 25];

fn learned_normal(
    db: &dyn TenantSource,
    c: &str,
    from_us: i64,
) -> Result<BTreeMap<String, Bands>, ReportError> {
    let start = from_us.div_euclid(HOUR_US) * HOUR_US - 7 * DAY_US;
    // Per agent, per hour of day and all (24): histogram, max, days seen.
    let mut acc: BTreeMap<String, Vec<(Hist, f64, i64, i64)>> = BTreeMap::new();
    db.each_row(
        &format!(
            "SELECT hour_us, agent, {c}_n, {c}_max, {c}_hist FROM rollup_host
             WHERE hour_us >= ?1 AND hour_us < ?2 AND {c}_n > 0"
        ),
        &[Param::Int(start), Param::Int(start + 7 * DAY_US)],
        &mut |r| {
            let hour = r.int(0);
            let hist = Hist::parse(&r.text(4));
            let max = r.opt_real(3).unwrap_or(100.0);
            let n = r.int(2);
            let slots = acc
                .entry(r.text(1))
                .or_insert_with(|| vec![(Hist::default(), 0.0, 0, 0); 25]);
            for h in [(hour.rem_euclid(DAY_US) / HOUR_US) as usize, 24] {
                let s = &mut slots[h];
                s.0.merge(&hist);
                s.1 = f64::max(s.1, max);
                s.2 += 1;
                s.3 += n;
            }
            Ok(())
        },
    )?;
    Ok(acc
        .into_iter()
        .map(|(agent, slots)| {
            let mut bands: Bands = [None; 25];
            for (h, (hist, max, days, samples)) in slots.into_iter().enumerate() {
                let enough = if h == 24 { samples >= 24 } else { days >= 3 };
                if enough {
                    let p = |q| hist.percentile(Scale::Percent, q, 0.0, max);
                    bands[h] = p(5.0).zip(p(95.0));
                }
            }
            (agent, bands)
        })
        .collect())
}

/// Capture throughput: flow bytes and packets per second (flows' own times).
pub fn capture(req: &Request) -> Result<Series, ReportError> {
    let axis = req.axis();
    let db = req.source;
    let n = axis.len();
    let mut bytes = vec![None::<f64>; n];
    let mut packets = vec![None::<f64>; n];
    let sql = match axis.source {
        // Every flow is in the `src` dimension once (the OTHER row included).
        Source::Rollups => {
            "SELECT hour_us, bytes, packets FROM rollup_talkers
             WHERE dimension = 'src' AND hour_us >= ?1 AND hour_us < ?2"
        }
        Source::Events => {
            "SELECT time_us, COALESCE(bytes, 0), COALESCE(packets, 0) FROM events
             WHERE time_us >= ?1 AND time_us < ?2 AND kind = 'flow_record'"
        }
    };
    each_step(db, sql, &axis, |i, r| {
        *bytes[i].get_or_insert(0.0) += r.real(1);
        *packets[i].get_or_insert(0.0) += r.real(2);
    })?;
    let secs = axis.step_us as f64 / 1e6;
    let per_second = |v: Vec<Option<f64>>| {
        v.into_iter()
            .map(|x| x.map(|x| round(x / secs, 3)))
            .collect()
    };
    let lines = vec![
        Line {
            label: "bytes/s".into(),
            unit: "B/s",
            values: per_second(bytes),
            normal: None,
        },
        Line {
            label: "packets/s".into(),
            unit: "packets/s",
            values: per_second(packets),
            normal: None,
        },
    ];
    Ok(req.series("Capture throughput", &axis, lines))
}

/// Top lists of a range (hourly rollups of the hours the range touches).
#[derive(Debug, Clone, Serialize)]
pub struct Tops {
    pub from: String,
    pub to: String,
    pub sources: TopList,
    pub destinations: TopList,
    pub ports: TopList,
    pub dns: Vec<NameCount>,
    pub sni: Vec<NameCount>,
}

pub fn tops(req: &Request, top: usize) -> Result<Tops, ReportError> {
    let h0 = req.from_us.div_euclid(HOUR_US) * HOUR_US;
    let h1 = req.to_us;
    Ok(Tops {
        from: req.zone.rfc3339(h0),
        to: req.zone.rfc3339(req.to_us),
        sources: crate::top_list(req.source, "src", h0, h1, top)?,
        destinations: crate::top_list(req.source, "dst", h0, h1, top)?,
        ports: crate::top_list(req.source, "dst_port", h0, h1, top)?,
        dns: crate::names(req.source, "dns", h0, h1, top)?,
        sni: crate::names(req.source, "sni", h0, h1, top)?,
    })
}

/// Alerts on a timeline: counts per step and severity, and the single
/// alerts (newest `limit`).
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub counts: Series,
    pub alerts: Vec<AlertMark>,
    /// Alerts in the range beyond `limit` (not listed).
    pub not_listed: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertMark {
    /// Unix seconds.
    pub t: i64,
    /// The same time in the tenant's zone, with its offset.
    pub time: String,
    pub agent: String,
    pub name: String,
    pub severity: String,
    pub state: String,
    pub subject: String,
}

pub fn alerts(req: &Request, limit: usize) -> Result<Timeline, ReportError> {
    let axis = req.axis();
    let db = req.source;
    let n = axis.len();
    let mut by: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    let raw = db.has_events()?;
    let sql = match axis.source {
        Source::Rollups => {
            "SELECT hour_us, severity, alerts FROM rollup_alerts WHERE hour_us >= ?1 AND hour_us < ?2"
        }
        Source::Events => {
            "SELECT time_us, COALESCE(severity, ''), 1 FROM events
             WHERE kind = 'alert' AND time_us >= ?1 AND time_us < ?2"
        }
    };
    each_step(db, sql, &axis, |i, r| {
        let v = by.entry(r.text(1)).or_insert_with(|| vec![None; n]);
        *v[i].get_or_insert(0.0) += r.real(2);
    })?;
    // How many alerts the range holds: the hourly counts already read when
    // the axis is the rollups' (a count over a month of raw alerts took a
    // second for 100,000 alerts), else the raw events'.
    let counted: f64 = by.values().flatten().flatten().sum();
    let lines = by
        .into_iter()
        .map(|(severity, values)| Line {
            label: if severity.is_empty() {
                "(none)".into()
            } else {
                severity
            },
            unit: "alerts",
            values,
            normal: None,
        })
        .collect();
    let (mut marks, mut total) = (Vec::new(), 0);
    if raw {
        total = counted as i64;
        marks = db
            .newest(
                "time_us, agent, COALESCE(alert_name, ''), COALESCE(severity, ''),
                 COALESCE(state, ''), COALESCE(alert_subject, '')",
                "kind = 'alert'",
                (req.from_us, req.to_us),
                limit,
            )?
            .iter()
            .map(|r| {
                let t = r.int(0);
                AlertMark {
                    t: t.div_euclid(1_000_000),
                    time: req.zone.rfc3339(t),
                    agent: r.text(1),
                    name: r.text(2),
                    severity: r.text(3),
                    state: r.text(4),
                    subject: r.text(5),
                }
            })
            .collect();
    }
    Ok(Timeline {
        counts: req.series("Alerts", &axis, lines),
        not_listed: total - marks.len() as i64,
        alerts: marks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_follows_the_range() {
        let h = HOUR_US;
        let a = Axis::for_range(0, 6 * h);
        assert_eq!(
            (a.step_us, a.source, a.len()),
            (MINUTE_US, Source::Events, 360)
        );
        let a = Axis::for_range(0, 2 * DAY_US);
        assert_eq!(
            (a.step_us, a.source, a.len()),
            (5 * MINUTE_US, Source::Events, 576)
        );
        let a = Axis::for_range(30 * MINUTE_US, 30 * DAY_US);
        assert_eq!(
            (a.step_us, a.source, a.from_us, a.len()),
            (h, Source::Rollups, 0, 720)
        );
        let a = Axis::for_range(0, 365 * DAY_US);
        assert_eq!((a.step_us, a.len()), (DAY_US, 365));
        assert_eq!(a.index(DAY_US + 1), Some(1));
        assert_eq!(a.index(-1), None);
    }

    #[test]
    fn stored_percentiles_equal_the_histograms() {
        let mut h = Hist::default();
        for v in [700.0, 900.0, 1500.0, 1500.0, 2600.0, 9000.0, 40_000.0] {
            h.add(Scale::Log.bucket(v));
        }
        let text = h.to_json();
        let expected = [50.0, 95.0].map(|p| h.percentile(Scale::Log, p, 700.0, 40_000.0));
        assert_eq!(stored_percentiles(&text, 700.0, 40_000.0), expected);
        assert_eq!(stored_percentiles("{}", 0.0, 0.0), [None, None]);
        assert_eq!(stored_percentiles("garbage", 0.0, 1.0), [None, None]);
        // Out of order (never written so) still gives the same answer.
        let swapped = format!(
            "{{{}}}",
            text[1..text.len() - 1]
                .rsplit(',')
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(stored_percentiles(&swapped, 700.0, 40_000.0), expected);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 50.0), Some(50.0));
        assert_eq!(nearest_rank(&v, 95.0), Some(95.0));
        assert_eq!(nearest_rank(&[], 50.0), None);
    }
}
