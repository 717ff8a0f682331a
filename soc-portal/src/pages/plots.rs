//! Plots of one tenant: the page (a range picker, the tenant's zone with
//! its offset, one panel per series, top lists and the latest alerts as
//! server-rendered tables) and the series as JSON for soc-report's
//! `plots.js`, which draws each `<div data-series="URL">` with uPlot.
//!
//! Guarantees:
//! * the range is `[from, to)` in UTC; `from`/`to` are RFC 3339, a local
//!   time (`2026-12-07T10:15`) or a date in the tenant's zone; a bad one,
//!   `from ≥ to` or a range over [`MAX_RANGE_DAYS`] is a 400 with a
//!   readable message, never a panic;
//! * the series are soc-report's ([`owlet_soc_report::series`]), read
//!   through the request's tenant's read-only source ([`crate::backend`]) with the range bound
//!   as SQL parameters; the tenant is the guard's, never the request's;
//! * sensor data (labels, names, subjects) reaches the page only through
//!   askama's escaping or as JSON that `plots.js` sets as text.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use owlet_soc_export::Zone;
use owlet_soc_report::series::{self, Metric, Request};
use owlet_soc_report::{NameCount, TopList};
use serde::{Deserialize, Serialize};

use super::given;
use crate::db::now_us;
use crate::web::{AppState, Ctx, Frame, Inner, PageError, render};

const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;
/// The longest range a plot or series covers.
pub const MAX_RANGE_DAYS: i64 = 400;
/// Entries of each top list, alerts listed under the timeline.
const TOP: usize = 10;
const ALERTS_LISTED: usize = 50;

/// The drawn series: `(name in the URL, message key of its title)`. The
/// endpoint also answers `tops` (the top lists as JSON).
pub const PLOTS: &[(&str, &str)] = &[
    ("availability", "plots.availability"),
    ("latency", "plots.latency"),
    ("cpu", "plots.cpu"),
    ("memory", "plots.memory"),
    ("disk", "plots.disk"),
    ("capture", "plots.capture"),
    ("alerts", "plots.alerts"),
];

/// The presets of the range picker: `(value of range=, length)`.
const PRESETS: &[(&str, i64)] = &[("24h", DAY_US), ("7d", 7 * DAY_US), ("30d", 30 * DAY_US)];

/// The range fields, as the picker sends them.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RangeQuery {
    pub range: String,
    pub from: String,
    pub to: String,
}

/// A checked range, UTC µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from_us: i64,
    pub to_us: i64,
}

/// `text` as UTC µs: RFC 3339, else a local time or date in `tz`.
fn parse_time(field: &str, text: &str, tz: Tz) -> Result<i64, PageError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_micros());
    }
    crate::timefmt::parse_local(text, tz).map_err(|_| {
        PageError::BadRequest(format!(
            "{field} \"{text}\" is not a time: use RFC 3339 (2026-12-07T10:15:00+09:00), a local time (2026-12-07T10:15) or a date (2026-12-07)"
        ))
    })
}

impl RangeQuery {
    /// The range asked for at `now_us`: `from`/`to` if given (a missing
    /// `to` is now, a missing `from` is a day before `to`), else the
    /// preset (`24h` by default).
    pub fn range(&self, tz: Tz, now_us: i64) -> Result<Range, PageError> {
        let (from, to) = (given(&self.from), given(&self.to));
        let (from_us, to_us) = if from.is_none() && to.is_none() {
            let preset = given(&self.range).unwrap_or_else(|| "24h".into());
            let len = PRESETS
                .iter()
                .find(|(name, _)| *name == preset)
                .map(|(_, len)| *len)
                .ok_or_else(|| {
                    PageError::BadRequest(format!("range \"{preset}\": choose 24h, 7d or 30d"))
                })?;
            (now_us - len, now_us)
        } else {
            let to_us = match &to {
                Some(t) => parse_time("to", t, tz)?,
                None => now_us,
            };
            let from_us = match &from {
                Some(f) => parse_time("from", f, tz)?,
                None => to_us - DAY_US,
            };
            (from_us, to_us)
        };
        if from_us >= to_us {
            return Err(PageError::BadRequest("from must be before to".to_string()));
        }
        if to_us - from_us > MAX_RANGE_DAYS * DAY_US {
            return Err(PageError::BadRequest(format!(
                "the range is longer than {MAX_RANGE_DAYS} days: choose a shorter one"
            )));
        }
        Ok(Range { from_us, to_us })
    }
}

/// `Asia/Tokyo (UTC+09:00)`; both offsets when the range crosses a
/// daylight-saving change.
pub fn zone_label(tz: Tz, from_us: i64, to_us: i64) -> String {
    let offset = |us: i64| {
        DateTime::<Utc>::from_timestamp_micros(us)
            .unwrap_or_default()
            .with_timezone(&tz)
            .format("UTC%:z")
            .to_string()
    };
    let (a, b) = (offset(from_us), offset(to_us));
    if a == b {
        format!("{} ({a})", tz.name())
    } else {
        format!("{} ({a} → {b})", tz.name())
    }
}

/// `2026-12-07T10:15` in `tz`, for a `datetime-local` input.
fn local_input(us: i64, tz: Tz) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .unwrap_or_default()
        .with_timezone(&tz)
        .format("%Y-%m-%dT%H:%M")
        .to_string()
}

fn zone_of(tz: Tz) -> Zone {
    Zone::parse(tz.name()).unwrap_or(Zone::Utc)
}

struct Panel {
    title: String,
    url: String,
}

/// One top list as rows of (key, bytes, flows).
struct TopTable {
    title: String,
    rows: Vec<(String, i64, i64)>,
}

fn top_rows(list: &TopList) -> Vec<(String, i64, i64)> {
    list.top
        .iter()
        .map(|e| (e.key.clone(), e.bytes, e.flows))
        .collect()
}

fn name_rows(list: &[NameCount]) -> Vec<(String, i64, i64)> {
    list.iter()
        .map(|e| (e.name.clone(), e.bytes, e.flows))
        .collect()
}

#[derive(Template)]
#[template(path = "plots.html")]
struct PlotsPage {
    f: Frame,
    zone: String,
    shown: String,
    from: String,
    to: String,
    presets: Vec<&'static str>,
    panels: Vec<Panel>,
    tops: Vec<TopTable>,
    alerts: Vec<series::AlertMark>,
    not_listed: i64,
}

pub async fn page(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<RangeQuery>,
) -> Result<Response, PageError> {
    state
        .blocking(move |s| {
            let tenant = ctx.tenant()?;
            let tz = s.tenant_zone(tenant);
            let r = q.range(tz, now_us())?;
            let zone = zone_of(tz);
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("from", &zone.rfc3339(r.from_us))
                .append_pair("to", &zone.rfc3339(r.to_us))
                .finish();
            let t = ctx.tr();
            let panels = PLOTS
                .iter()
                .map(|(name, key)| Panel {
                    title: t.get(key).to_string(),
                    url: format!("/t/{tenant}/series/{name}?{query}"),
                })
                .collect();
            let (mut tops, mut alerts, mut not_listed) = (Vec::new(), Vec::new(), 0);
            let data = s.data(tenant)?;
            if let Some(source) = data.source() {
                let req = Request {
                    source,
                    zone: &zone,
                    from_us: r.from_us,
                    to_us: r.to_us,
                };
                let top = series::tops(&req, TOP)?;
                for (key, rows) in [
                    ("plots.sources", top_rows(&top.sources)),
                    ("plots.destinations", top_rows(&top.destinations)),
                    ("plots.ports", top_rows(&top.ports)),
                    ("plots.dns", name_rows(&top.dns)),
                    ("plots.sni", name_rows(&top.sni)),
                ] {
                    tops.push(TopTable {
                        title: t.get(key).to_string(),
                        rows,
                    });
                }
                let timeline = series::alerts(&req, ALERTS_LISTED)?;
                alerts = timeline.alerts;
                not_listed = timeline.not_listed;
            }
            s.audit(&ctx, "view.plots", "");
            render(&PlotsPage {
                f: Frame::new(&ctx, "nav.plots"),
                zone: zone_label(tz, r.from_us, r.to_us),
                shown: format!(
                    "{} – {}",
                    crate::timefmt::show(r.from_us, tz),
                    crate::timefmt::show(r.to_us, tz)
                ),
                from: local_input(r.from_us, tz),
                to: local_input(r.to_us, tz),
                presets: PRESETS.iter().map(|(p, _)| *p).collect(),
                panels,
                tops,
                alerts,
                not_listed,
            })
        })
        .await
}

/// The alert timeline as a series `plots.js` draws (counts per step and
/// severity), with the single alerts beside it.
#[derive(Serialize)]
struct AlertSeries {
    #[serde(flatten)]
    counts: series::Series,
    alerts: Vec<series::AlertMark>,
    not_listed: i64,
}

/// The JSON of series `name` over the request's range.
fn series_json(
    s: &Inner,
    tenant: &str,
    name: &str,
    r: Range,
) -> Result<serde_json::Value, PageError> {
    if name != "tops" && !PLOTS.iter().any(|(n, _)| *n == name) {
        return Err(PageError::NotFound);
    }
    let zone = zone_of(s.tenant_zone(tenant));
    let data = s.data(tenant)?;
    let Some(source) = data.source() else {
        // Nothing stored yet: an empty plot.
        return Ok(serde_json::json!({
            "title": name, "time_zone": zone.name(),
            "from": zone.rfc3339(r.from_us), "to": zone.rfc3339(r.to_us),
            "t": [], "lines": [],
        }));
    };
    let req = Request {
        source,
        zone: &zone,
        from_us: r.from_us,
        to_us: r.to_us,
    };
    let value = match name {
        "availability" => serde_json::to_value(series::check_availability(&req)?),
        "latency" => serde_json::to_value(series::check_latency(&req)?),
        "cpu" => serde_json::to_value(series::host(&req, Metric::Cpu)?),
        "memory" => serde_json::to_value(series::host(&req, Metric::Memory)?),
        "disk" => serde_json::to_value(series::host(&req, Metric::Disk)?),
        "capture" => serde_json::to_value(series::capture(&req)?),
        "alerts" => {
            let timeline = series::alerts(&req, ALERTS_LISTED)?;
            serde_json::to_value(AlertSeries {
                counts: timeline.counts,
                alerts: timeline.alerts,
                not_listed: timeline.not_listed,
            })
        }
        _ => serde_json::to_value(series::tops(&req, TOP)?),
    };
    value.map_err(|e| PageError::Internal(format!("series json: {e}")))
}

/// `GET /t/{tenant}/series/{name}?from=&to=`.
pub async fn json(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((_, name)): Path<(String, String)>,
    Query(q): Query<RangeQuery>,
) -> Result<Response, PageError> {
    state
        .blocking(move |s| {
            let tenant = ctx.tenant()?;
            let r = q.range(s.tenant_zone(tenant), now_us())?;
            Ok(Json(series_json(s, tenant, &name, r)?).into_response())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(range: &str, from: &str, to: &str) -> RangeQuery {
        RangeQuery {
            range: range.into(),
            from: from.into(),
            to: to.into(),
        }
    }

    fn bad(r: Result<Range, PageError>) -> String {
        match r {
            Err(PageError::BadRequest(m)) => m,
            other => panic!("not a 400: {other:?}"),
        }
    }

    #[test]
    fn ranges_are_read_and_refused_readably() {
        let tokyo = crate::timefmt::zone("Asia/Tokyo");
        let now = 1_796_606_102_000_000; // 2026-12-07T01:15:02Z
        assert_eq!(
            q("", "", "").range(tokyo, now).unwrap(),
            Range {
                from_us: now - DAY_US,
                to_us: now
            }
        );
        assert_eq!(
            q("7d", "", "").range(tokyo, now).unwrap().from_us,
            now - 7 * DAY_US
        );
        let r = q("", "2026-12-01", "2026-12-07T10:15:02+09:00")
            .range(tokyo, now)
            .unwrap();
        assert_eq!(r.to_us, now);
        assert_eq!(r.from_us, 1_796_050_800_000_000); // 2026-12-01 00:00 +09:00
        assert!(bad(q("1y", "", "").range(tokyo, now)).contains("24h"));
        assert!(bad(q("", "yesterday", "").range(tokyo, now)).contains("RFC 3339"));
        assert!(bad(q("", "'; DROP TABLE events; --", "").range(tokyo, now)).contains("from"));
        assert!(bad(q("", "2026-12-07", "2026-12-01").range(tokyo, now)).contains("before"));
        assert!(bad(q("", "2024-01-01", "2026-01-01").range(tokyo, now)).contains("400 days"));
        assert!(q("", "9999-12-31T23:59:59Z", "").range(tokyo, now).is_err());
    }

    #[test]
    fn the_zone_is_shown_with_its_offset() {
        let now = 1_796_606_102_000_000;
        assert_eq!(
            zone_label(crate::timefmt::zone("Asia/Tokyo"), now - DAY_US, now),
            "Asia/Tokyo (UTC+09:00)"
        );
        // 2026-03-29: Berlin goes from +01:00 to +02:00.
        let berlin = crate::timefmt::zone("Europe/Berlin");
        let march = 1_774_742_400_000_000; // 2026-03-29T00:00:00Z
        assert_eq!(
            zone_label(berlin, march - DAY_US, march + DAY_US),
            "Europe/Berlin (UTC+01:00 → UTC+02:00)"
        );
    }
}
