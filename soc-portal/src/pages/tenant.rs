//! A tenant's overview: sensors, the check board, open alerts, recent
//! configuration changes and, when nothing is wrong, a plain "nothing
//! needs your attention"; its two live parts (`board`, `attention`) as
//! fragments, which the live stream ([`super::live`]) tells the page to
//! fetch again.

use std::collections::HashMap;

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::response::Response;

use crate::backend::TenantData;
use crate::data::{self, ListFilter};
use crate::db::now_us;
use crate::web::{AppState, Ctx, Frame, Inner, PageError, render};
use crate::workflow;

/// How far back the check board and open alerts look.
const WINDOW_US: i64 = 7 * 86_400 * 1_000_000;

pub struct SensorRow {
    pub agent: String,
    pub hostname: String,
    pub version: String,
    pub hw_profile: String,
    pub state: String,
    pub last_seen: String,
    pub cert_expires: String,
    pub spool: String,
}

pub struct BoardRow {
    pub agent: String,
    pub check_id: String,
    pub check_type: String,
    pub target: String,
    pub state: String,
    pub since: String,
    pub last: String,
    pub message: String,
}

pub struct AlertItem {
    pub id: i64,
    pub time: String,
    pub agent: String,
    pub severity: String,
    pub name: String,
    pub subject: String,
    pub message: String,
    pub workflow: String,
    pub cleared: bool,
}

pub struct ChangeItem {
    pub id: i64,
    pub time: String,
    pub agent: String,
    pub path: String,
    pub action: String,
    pub severity: String,
    pub changed_by: String,
    pub while_stopped: bool,
}

/// Alerts as list items, with their workflow state.
pub fn alert_items(
    ctx: &Ctx,
    rows: Vec<data::AlertRow>,
    states: &HashMap<i64, String>,
) -> Vec<AlertItem> {
    rows.into_iter()
        .map(|a| AlertItem {
            id: a.id,
            time: ctx.show(a.time_us),
            workflow: states.get(&a.id).cloned().unwrap_or_else(|| "new".into()),
            agent: a.agent,
            severity: a.severity,
            name: a.name,
            subject: a.subject,
            message: a.message,
            cleared: a.cleared,
        })
        .collect()
}

pub fn change_items(ctx: &Ctx, rows: Vec<data::ChangeRow>) -> Vec<ChangeItem> {
    rows.into_iter()
        .map(|c| ChangeItem {
            id: c.id,
            time: ctx.show(c.time_us),
            agent: c.agent,
            path: c.path,
            action: c.action,
            severity: c.severity,
            changed_by: c.changed_by,
            while_stopped: c.while_stopped,
        })
        .collect()
}

fn board_rows(ctx: &Ctx, data: &dyn TenantData) -> Result<Vec<BoardRow>, PageError> {
    let now = now_us();
    Ok(data
        .check_board(now, WINDOW_US)?
        .into_iter()
        .map(|c| BoardRow {
            since: c.since_us.map_or_else(String::new, |t| {
                format!("{} ({})", ctx.show(t), crate::timefmt::span(now - t))
            }),
            last: ctx.show(c.last_us),
            agent: c.agent,
            check_id: c.check_id,
            check_type: c.check_type,
            target: c.target,
            state: c.state,
            message: c.message,
        })
        .collect())
}

/// Sensors, open alerts and whether anything needs attention.
struct Attention {
    sensors: Vec<SensorRow>,
    alerts: Vec<AlertItem>,
    nothing: bool,
}

fn attention_of(
    s: &Inner,
    ctx: &Ctx,
    tenant: &str,
    data: &dyn TenantData,
    board: &[BoardRow],
) -> Result<Attention, PageError> {
    let now = now_us();
    let t = ctx.tr();
    let sensors = data.sensors(s.settings.silent_after, now)?;
    let silent = sensors.iter().any(data::Sensor::needs_attention);
    let sensors = sensors
        .into_iter()
        .map(|x| SensorRow {
            state: x.state.to_string(),
            last_seen: ctx.show(x.last_seen_us),
            cert_expires: x.cert_expires_us.map_or_else(String::new, |t| ctx.show(t)),
            spool: match (x.spool_events, x.spool_oldest_s) {
                (Some(n), Some(age)) if n > 0 => {
                    format!("{n} ({})", crate::timefmt::span(age as i64 * 1_000_000))
                }
                (Some(n), _) => n.to_string(),
                _ => t.get("none").to_string(),
            },
            agent: x.agent,
            hostname: x.hostname,
            version: x.version,
            hw_profile: x.hw_profile,
        })
        .collect();
    let rows = data.alerts(&ListFilter {
        from_us: Some(now - WINDOW_US),
        limit: 500,
        ..Default::default()
    })?;
    let states = workflow::states(&s.db.lock(), tenant)?;
    let alerts: Vec<AlertItem> = alert_items(ctx, rows, &states)
        .into_iter()
        .filter(|a| !a.cleared && a.workflow != "resolved")
        .collect();
    let down = board.iter().any(|b| b.state == "down");
    Ok(Attention {
        nothing: !down && !silent && alerts.is_empty(),
        sensors,
        alerts,
    })
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    f: Frame,
    sensors: Vec<SensorRow>,
    board: Vec<BoardRow>,
    alerts: Vec<AlertItem>,
    nothing: bool,
    changes: Vec<ChangeItem>,
}

pub async fn overview(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, PageError> {
    let c = ctx.clone();
    state
        .blocking(move |s| {
            let tenant = c.tenant()?;
            let data = s.data(tenant)?;
            let board = board_rows(&c, data.as_ref())?;
            let a = attention_of(s, &c, tenant, data.as_ref(), &board)?;
            let changes = change_items(
                &c,
                data.changes(&ListFilter {
                    from_us: Some(now_us() - WINDOW_US),
                    limit: 10,
                    ..Default::default()
                })?,
            );
            s.audit(&c, "view.overview", "");
            render(&OverviewPage {
                f: Frame::new(&c, "overview.title"),
                sensors: a.sensors,
                board,
                alerts: a.alerts,
                nothing: a.nothing,
                changes,
            })
        })
        .await
}

#[derive(Template)]
#[template(path = "board_part.html")]
struct BoardPart {
    f: Frame,
    board: Vec<BoardRow>,
}

pub async fn board(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, PageError> {
    state
        .blocking(move |s| {
            let data = s.data(ctx.tenant()?)?;
            render(&BoardPart {
                board: board_rows(&ctx, data.as_ref())?,
                f: Frame::new(&ctx, "overview.title"),
            })
        })
        .await
}

#[derive(Template)]
#[template(path = "attention_part.html")]
struct AttentionPart {
    f: Frame,
    sensors: Vec<SensorRow>,
    alerts: Vec<AlertItem>,
    nothing: bool,
}

pub async fn attention(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, PageError> {
    state
        .blocking(move |s| {
            let tenant = ctx.tenant()?;
            let data = s.data(tenant)?;
            let board = board_rows(&ctx, data.as_ref())?;
            let a = attention_of(s, &ctx, tenant, data.as_ref(), &board)?;
            render(&AttentionPart {
                f: Frame::new(&ctx, "overview.title"),
                sensors: a.sensors,
                alerts: a.alerts,
                nothing: a.nothing,
            })
        })
        .await
}
