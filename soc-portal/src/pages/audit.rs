//! The audit log: all of it for `mssp-admin`, one tenant's entries on the
//! tenant's page (mssp-admin, customer-admin).

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::response::Response;

use crate::web::{AppState, Ctx, Frame, PageError, render};

pub struct AuditRow {
    pub time: String,
    pub user: String,
    pub tenant: String,
    pub action: String,
    pub detail: String,
    pub remote: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    f: Frame,
    rows: Vec<AuditRow>,
}

async fn page(state: AppState, ctx: Ctx, tenant: Option<String>) -> Result<Response, PageError> {
    state
        .blocking(move |s| {
            let entries = crate::audit::list(&s.db.lock(), tenant.as_deref(), 500)?;
            render(&AuditPage {
                f: Frame::new(&ctx, "audit.title"),
                rows: entries
                    .into_iter()
                    .map(|e| AuditRow {
                        time: ctx.show(e.at_us),
                        user: e.user,
                        tenant: e.tenant.unwrap_or_default(),
                        action: e.action,
                        detail: e.detail,
                        remote: e.remote,
                    })
                    .collect(),
            })
        })
        .await
}

pub async fn tenant(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, PageError> {
    let tenant = ctx.tenant()?.to_string();
    page(state, ctx, Some(tenant)).await
}

pub async fn all(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, PageError> {
    page(state, ctx, None).await
}
