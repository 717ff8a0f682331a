//! A tenant's overview: sensors, the check board, open alerts, recent
//! configuration changes and, when nothing is wrong, a plain "nothing
//! needs your attention"; its two live parts (`board`, `attention`) as
//! fragments, and the live stream (`live`, server-sent events) that tells
//! the page when to fetch them again.
//!
//! The stream only says *that* the log grew and which kinds arrived
//! (`{"last_id": N, "kinds": [...]}`); the page then fetches the
//! server-rendered, escaped fragments. No sensor data travels through
//! JavaScript, so none can become markup there.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;

use crate::backend::TenantData;
use crate::data::{self, ListFilter};
use crate::db::now_us;
use crate::web::{AppState, Ctx, Frame, Inner, PageError, render};
use crate::workflow;

/// How far back the check board and open alerts look.
const WINDOW_US: i64 = 7 * 86_400 * 1_000_000;
/// How often the live stream looks at the log.
const POLL: Duration = Duration::from_millis(250);

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

/// State of one live stream between polls.
struct Live {
    state: AppState,
    tenant: String,
    session: String,
    last_id: i64,
    /// The tenant's data, kept between polls (one connection per stream).
    data: Box<dyn TenantData>,
    polls: u64,
}

/// One look at the log: the new last id and the kinds that arrived.
fn poll(s: &Inner, live: &mut Live) -> Result<Option<(i64, Vec<String>)>, PageError> {
    if !live.data.has_events()? {
        // Opened before the tenant's first event: open it again.
        live.data = s.data(&live.tenant)?;
        if !live.data.has_events()? {
            return Ok(None);
        }
    }
    let data = &live.data;
    if data.last_id()? <= live.last_id {
        return Ok(None);
    }
    let events = data.read_after(live.last_id, 1000)?;
    let Some(last) = events.last().map(|e| e.id) else {
        return Ok(None);
    };
    let mut kinds: Vec<String> = events.into_iter().map(|e| e.kind).collect();
    kinds.sort();
    kinds.dedup();
    Ok(Some((last, kinds)))
}

pub async fn live(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, PageError> {
    let tenant = ctx.tenant()?.to_string();
    let session = ctx
        .session
        .as_ref()
        .map(|s| s.id_hash.clone())
        .ok_or(PageError::Forbidden)?;
    let t = tenant.clone();
    let (data, last_id) = state
        .blocking(move |s| {
            let data = s.data(&t)?;
            let last = data.last_id()?;
            Ok((data, last))
        })
        .await?;
    let live = Live {
        state,
        tenant,
        session,
        last_id,
        data,
        polls: 0,
    };
    let stream = futures::stream::unfold(live, |mut live| async move {
        loop {
            tokio::time::sleep(POLL).await;
            live.polls += 1;
            let state = live.state.clone();
            let idle = state.0.settings.session_idle;
            // Every ~10 s: the stream ends with the session (logout, idle,
            // disabled), without keeping it alive itself.
            let check_session = live.polls % 40 == 0;
            let result = state
                .blocking(move |s| {
                    if check_session && !crate::session::alive(&s.db.lock(), &live.session, idle)? {
                        return Ok((live, None, false));
                    }
                    let found = poll(s, &mut live)?;
                    Ok((live, found, true))
                })
                .await;
            let (back, found, alive) = match result {
                Ok(r) => r,
                Err(_) => return None,
            };
            live = back;
            if !alive {
                return None;
            }
            if let Some((last, kinds)) = found {
                live.last_id = last;
                let data = serde_json::json!({ "last_id": last, "kinds": kinds }).to_string();
                let event = Event::default().event("stored").data(data);
                return Some((Ok(event), live));
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
