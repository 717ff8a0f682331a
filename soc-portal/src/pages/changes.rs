//! Configuration changes: a filtered list, and one change in full: who,
//! when, hashes, sizes, modes, "while the agent was stopped", and the
//! diff (already redacted by the agent) line by line, escaped.

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use owlet_proto::v1::event::Kind;

use super::FilterQuery;
use super::tenant::{ChangeItem, change_items};
use crate::data::{self, DiffLine};
use crate::web::{AppState, Ctx, Frame, PageError, render};

#[derive(Template)]
#[template(path = "changes.html")]
struct ChangesPage {
    f: Frame,
    q: FilterQuery,
    rows: Vec<ChangeItem>,
}

pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<FilterQuery>,
) -> Result<Response, PageError> {
    let filter = q.filter(&ctx, 200)?;
    state
        .blocking(move |s| {
            let rows = change_items(&ctx, s.data(ctx.tenant()?)?.changes(&filter)?);
            s.audit(&ctx, "view.changes", &format!("{q:?}"));
            render(&ChangesPage {
                f: Frame::new(&ctx, "changes.title"),
                q,
                rows,
            })
        })
        .await
}

#[derive(Template)]
#[template(path = "change.html")]
struct ChangePage {
    f: Frame,
    agent: String,
    time: String,
    received: String,
    path: String,
    old_path: String,
    action: String,
    severity: String,
    changed_by: String,
    old_sha256: String,
    new_sha256: String,
    sizes: String,
    modes: String,
    owner: String,
    tag: String,
    while_stopped: bool,
    diff: Vec<DiffLine>,
    diff_note: String,
    redacted_lines: u32,
}

pub async fn detail(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((_, id)): Path<(String, i64)>,
) -> Result<Response, PageError> {
    state
        .blocking(move |s| {
            let e = s
                .data(ctx.tenant()?)?
                .event(id)?
                .ok_or(PageError::NotFound)?;
            let Some(Kind::FileChange(fc)) = e.event.as_ref().and_then(|ev| ev.kind.clone()) else {
                return Err(PageError::NotFound);
            };
            s.audit(
                &ctx,
                "view.change",
                &format!("{} {}", e.event_id(), fc.path),
            );
            let t = ctx.tr();
            let diff_note = if fc.diff_truncated {
                t.get("change.truncated").to_string()
            } else if fc.diff.is_empty() && !fc.diff_skipped.is_empty() {
                format!("{}: {}", t.get("change.no_diff"), fc.diff_skipped)
            } else {
                String::new()
            };
            render(&ChangePage {
                f: Frame::new(&ctx, "change.title"),
                time: ctx.show(e.time_us),
                received: ctx.show(e.received_us),
                action: owlet_soc_notify::rules::file_change_name(fc.change).to_string(),
                severity: e
                    .event
                    .as_ref()
                    .and_then(|ev| owlet_soc_store::Columns::of(ev).severity)
                    .unwrap_or("")
                    .to_string(),
                agent: e.agent,
                path: fc.path,
                old_path: fc.old_path,
                changed_by: fc.changed_by,
                old_sha256: fc.old_sha256,
                new_sha256: fc.new_sha256,
                sizes: format!("{} → {}", fc.old_size, fc.new_size),
                modes: format!("{:o} → {:o}", fc.old_mode, fc.new_mode),
                owner: format!("{} ({}:{})", fc.owner, fc.uid, fc.gid),
                tag: fc.tag,
                while_stopped: fc.while_agent_stopped,
                diff: data::diff_lines(&fc.diff),
                diff_note,
                redacted_lines: fc.redacted_lines,
            })
        })
        .await
}
