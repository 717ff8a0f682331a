//! Alerts: a filtered list, one alert with its workflow state and
//! comments, and the analysts' actions (move the state, comment; escalate
//! also notifies through `[notify]`). Customers see the state and the
//! comments; the route table keeps the actions to MSSP roles.

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use owlet_proto::v1::event::Kind;
use serde::Deserialize;

use super::tenant::{AlertItem, alert_items};
use super::{FilterQuery, given};
use crate::escalate::{self, Escalation};
use crate::web::{AppState, Ctx, Frame, PageError, render};
use crate::workflow;

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    f: Frame,
    q: FilterQuery,
    states: [&'static str; 4],
    rows: Vec<AlertItem>,
}

pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<FilterQuery>,
) -> Result<Response, PageError> {
    let filter = q.filter(&ctx, 500)?;
    let wanted = given(&q.state);
    state
        .blocking(move |s| {
            let tenant = ctx.tenant()?;
            let alerts = s.data(tenant)?.alerts(&filter)?;
            let states = workflow::states(&s.db.lock(), tenant)?;
            let rows = alert_items(&ctx, alerts, &states);
            let rows = rows
                .into_iter()
                .filter(|a| wanted.as_ref().is_none_or(|w| *w == a.workflow))
                .collect();
            s.audit(&ctx, "view.alerts", &format!("{q:?}"));
            render(&AlertsPage {
                f: Frame::new(&ctx, "alerts.title"),
                q,
                states: workflow::STATES,
                rows,
            })
        })
        .await
}

pub struct CommentItem {
    pub user: String,
    pub time: String,
    pub text: String,
}

#[derive(Template)]
#[template(path = "alert.html")]
struct AlertPage {
    f: Frame,
    id: i64,
    stable_id: String,
    agent: String,
    time: String,
    received: String,
    name: String,
    source: String,
    subject: String,
    severity: String,
    change: String,
    message: String,
    labels: Vec<(String, String)>,
    workflow: String,
    next: &'static [&'static str],
    comments: Vec<CommentItem>,
}

/// The alert `id` of the request's tenant, or 404.
fn load_alert(
    s: &crate::web::Inner,
    ctx: &Ctx,
    id: i64,
) -> Result<(owlet_soc_store::StoredEvent, owlet_proto::v1::Alert), PageError> {
    let e = s
        .data(ctx.tenant()?)?
        .event(id)?
        .ok_or(PageError::NotFound)?;
    match e.event.as_ref().and_then(|ev| ev.kind.clone()) {
        Some(Kind::Alert(a)) => Ok((e, a)),
        _ => Err(PageError::NotFound),
    }
}

fn state_name(v: i32) -> &'static str {
    owlet_proto::v1::State::try_from(v)
        .map(|s| match s {
            owlet_proto::v1::State::Up => "up",
            owlet_proto::v1::State::Down => "down",
            owlet_proto::v1::State::Degraded => "degraded",
            _ => "unknown",
        })
        .unwrap_or("unknown")
}

pub async fn detail(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((_, id)): Path<(String, i64)>,
) -> Result<Response, PageError> {
    state
        .blocking(move |s| {
            let (e, a) = load_alert(s, &ctx, id)?;
            let tenant = ctx.tenant()?;
            let (wf, comments) = {
                let db = s.db.lock();
                (
                    workflow::state(&db, tenant, id)?,
                    workflow::comments(&db, tenant, id)?,
                )
            };
            s.audit(&ctx, "view.alert", &e.event_id());
            let mut labels: Vec<(String, String)> = a.labels.clone().into_iter().collect();
            labels.sort();
            render(&AlertPage {
                f: Frame::new(&ctx, "alert.title"),
                id,
                stable_id: e.event_id(),
                time: ctx.show(e.time_us),
                received: ctx.show(e.received_us),
                agent: e.agent,
                severity: e
                    .event
                    .as_ref()
                    .and_then(|ev| owlet_soc_store::Columns::of(ev).severity)
                    .unwrap_or("")
                    .to_string(),
                name: a.name,
                source: a.source,
                subject: a.subject,
                change: format!("{} → {}", state_name(a.old_state), state_name(a.new_state)),
                message: a.message,
                labels,
                next: workflow::next_states(&wf),
                workflow: wf,
                comments: comments
                    .into_iter()
                    .map(|c| CommentItem {
                        time: ctx.show(c.at_us),
                        user: c.user,
                        text: c.text,
                    })
                    .collect(),
            })
        })
        .await
}

#[derive(Deserialize)]
pub struct StateForm {
    state: String,
    #[serde(default)]
    comment: String,
}

/// Longest comment kept.
const MAX_COMMENT: usize = 4000;

pub async fn set_state(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<StateForm>,
) -> Result<Response, PageError> {
    if form.comment.len() > MAX_COMMENT {
        return Err(PageError::BadRequest(format!(
            "a comment holds at most {MAX_COMMENT} bytes"
        )));
    }
    let c = ctx.clone();
    let to = form.state.clone();
    let comment = form.comment.trim().to_string();
    let escalation = state
        .blocking(move |s| {
            let (e, a) = load_alert(s, &c, id)?;
            let tenant = c.tenant()?.to_string();
            let user = c.who()?.name.clone();
            let from = workflow::transition(&s.db.lock(), &tenant, id, &to, &user)
                .map_err(PageError::BadRequest)?;
            if !comment.is_empty() {
                workflow::comment(&s.db.lock(), &tenant, id, &user, &comment)?;
            }
            s.audit(
                &c,
                "alert.state",
                &format!("{} {from} → {to}", e.event_id()),
            );
            Ok((to == "escalated").then(|| Escalation {
                zone: s
                    .settings
                    .tenant_zones
                    .get(&tenant)
                    .cloned()
                    .unwrap_or_else(|| "UTC".into()),
                stable_id: e.event_id(),
                tenant,
                event_id: id,
                agent: e.agent.clone(),
                severity: e
                    .event
                    .as_ref()
                    .and_then(|ev| owlet_soc_store::Columns::of(ev).severity)
                    .unwrap_or("warning")
                    .to_string(),
                name: a.name,
                subject: a.subject,
                message: a.message,
                detected_us: e.time_us,
                analyst: user,
                comment,
            }))
        })
        .await?;
    if let Some(esc) = escalation {
        let inner = state.0.clone();
        let result = escalate::send(
            inner.settings.notify.as_ref(),
            &inner.settings.contacts_root,
            &inner.settings.root,
            &esc,
        )
        .await;
        let detail = match result {
            Some(lines) => lines.join("; "),
            None => "no [notify] channel serves this tenant: recorded only".to_string(),
        };
        let c = ctx.clone();
        state
            .blocking(move |s| {
                s.audit(
                    &c,
                    "alert.escalation",
                    &format!("{}: {detail}", esc.stable_id),
                );
                workflow::comment(
                    &s.db.lock(),
                    &esc.tenant,
                    esc.event_id,
                    "owlet",
                    &format!("escalation notification: {detail}"),
                )?;
                Ok(())
            })
            .await?;
    }
    Ok(Redirect::to(&format!("/t/{}/alerts/{id}", ctx.tenant()?)).into_response())
}

#[derive(Deserialize)]
pub struct CommentForm {
    text: String,
}

pub async fn comment(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<CommentForm>,
) -> Result<Response, PageError> {
    let text = form.text.trim().to_string();
    if text.is_empty() || text.len() > MAX_COMMENT {
        return Err(PageError::BadRequest(format!(
            "a comment holds 1 to {MAX_COMMENT} bytes"
        )));
    }
    let c = ctx.clone();
    state
        .blocking(move |s| {
            let (e, _) = load_alert(s, &c, id)?;
            workflow::comment(&s.db.lock(), c.tenant()?, id, &c.who()?.name, &text)?;
            s.audit(&c, "alert.comment", &e.event_id());
            Ok(())
        })
        .await?;
    Ok(Redirect::to(&format!("/t/{}/alerts/{id}", ctx.tenant()?)).into_response())
}
