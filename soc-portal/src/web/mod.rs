//! The web application: state, the per-request context the guard builds,
//! page rendering and errors. The route table is in [`routes`], the one
//! access check in [`guard`], the response headers in [`headers`].
//!
//! Guarantees: a handler gets a [`Ctx`] only from the guard, so it cannot
//! run without the checks its route declares; pages are askama templates
//! (HTML escaping on, never `|safe` on data); errors show a short text
//! and never a stack, a path or another tenant's name.

pub mod assets;
pub mod guard;
pub mod headers;
pub mod routes;

use std::sync::Arc;

use crate::backend::{Backend, TenantData};
use crate::config::{DataSettings, Settings};
use crate::db::Db;
use crate::i18n::{Lang, Tr};
use crate::roles::{Perm, Role};
use crate::session::Session;
use crate::users::User;
use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono_tz::Tz;

/// Shared by every request.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

pub struct Inner {
    pub settings: Settings,
    pub db: Db,
    /// Where the tenants' data is read.
    pub backend: Backend,
    /// Sensors' certificate bundles waiting for their one download.
    pub bundles: crate::pages::sensors::Bundles,
    /// The OIDC provider, when `[portal.oidc]` is set.
    pub oidc: Option<crate::oidc::Oidc>,
    /// The tenants' live-stream pollers, one per watched tenant.
    pub live: crate::pages::live::Hub,
}

impl AppState {
    pub fn new(settings: Settings, db: Db) -> Self {
        let backend = match &settings.data {
            DataSettings::Embedded { control_db } => Backend::Embedded(
                crate::backend::embedded::Embedded::new(&settings.root, control_db.clone()),
            ),
            DataSettings::Postgres {
                conninfo,
                max_connections,
            } => Backend::Postgres(crate::backend::postgres::Postgres::new(
                conninfo,
                *max_connections,
            )),
        };
        let oidc = settings.oidc.clone().map(crate::oidc::Oidc::new);
        AppState(Arc::new(Inner {
            oidc,
            settings,
            db,
            backend,
            bundles: Default::default(),
            live: Default::default(),
        }))
    }

    /// Runs blocking work (SQLite, PostgreSQL through the runtime) off the
    /// async workers.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, PageError> + Send + 'static,
    ) -> Result<T, PageError> {
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| PageError::Internal(format!("worker: {e}")))?
    }
}

impl Inner {
    /// Whether `tenant` exists (stored events or configured).
    pub fn tenant_known(&self, tenant: &str) -> bool {
        self.settings.tenant_zones.contains_key(tenant) || self.backend.stores(tenant)
    }

    /// The tenant's zone (`[tenants.NAME] time_zone`), UTC when unset:
    /// plots and reports are in the tenant's days, as the scheduled
    /// reports are.
    pub fn tenant_zone(&self, tenant: &str) -> Tz {
        self.settings
            .tenant_zones
            .get(tenant)
            .map_or(Tz::UTC, |z| crate::timefmt::zone(z))
    }

    /// Every tenant the SOC has, sorted.
    pub fn all_tenants(&self) -> Vec<String> {
        let mut all = self.backend.tenants();
        all.extend(self.settings.tenant_zones.keys().cloned());
        all.sort();
        all.dedup();
        all
    }

    /// The tenant's data (the guard's tenant: every page reads through it).
    pub fn data(&self, tenant: &str) -> Result<Box<dyn TenantData>, PageError> {
        self.backend.tenant(tenant)
    }

    /// Appends to the audit log (failures are logged, never shown).
    pub fn audit(&self, ctx: &Ctx, action: &str, detail: &str) {
        let who = ctx.user.as_ref().map_or("-", |u| u.name.as_str());
        self.audit_as(who, ctx.tenant.as_deref(), action, detail, &ctx.remote);
    }

    pub fn audit_as(
        &self,
        who: &str,
        tenant: Option<&str>,
        action: &str,
        detail: &str,
        remote: &str,
    ) {
        if let Err(e) = crate::audit::record(&self.db.lock(), who, tenant, action, detail, remote) {
            tracing::error!("audit log: {e}");
        }
    }
}

/// What the guard established about a request.
#[derive(Clone)]
pub struct Ctx {
    /// The logged-in user (fully: password and, where required, TOTP).
    pub user: Option<Arc<User>>,
    /// The session of the cookie, of any stage.
    pub session: Option<Session>,
    /// The tenant of a tenant route, checked against the user's scope.
    pub tenant: Option<String>,
    pub lang: Lang,
    pub tz: Tz,
    pub remote: String,
    /// The pre-login CSRF cookie's value, if the browser sent one.
    pub login_token: Option<String>,
    pub perm: Perm,
}

impl Ctx {
    pub fn who(&self) -> Result<&User, PageError> {
        self.user.as_deref().ok_or(PageError::Forbidden)
    }

    pub fn tenant(&self) -> Result<&str, PageError> {
        self.tenant.as_deref().ok_or(PageError::NotFound)
    }

    pub fn tr(&self) -> Tr {
        Tr(self.lang)
    }

    pub fn show(&self, us: i64) -> String {
        crate::timefmt::show(us, self.tz)
    }
}

/// Frame of every page: language, who, where, the CSRF token for forms.
pub struct Frame {
    pub t: Tr,
    pub title: String,
    pub user: String,
    pub role: String,
    pub tenant: String,
    pub tenants: usize,
    pub csrf: String,
    pub zone: String,
    pub is_admin: bool,
    pub can_audit: bool,
    pub can_triage: bool,
    pub can_manage_users: bool,
    pub can_manage_contacts: bool,
}

impl Frame {
    pub fn new(ctx: &Ctx, title_key: &str) -> Frame {
        let role = ctx.user.as_ref().map(|u| u.role);
        Frame {
            t: ctx.tr(),
            title: ctx.tr().get(title_key).to_string(),
            user: ctx
                .user
                .as_ref()
                .map(|u| u.name.clone())
                .unwrap_or_default(),
            role: role.map(Role::name).unwrap_or_default().to_string(),
            tenant: ctx.tenant.clone().unwrap_or_default(),
            tenants: ctx.user.as_ref().map_or(0, |u| u.tenants.len()),
            csrf: ctx
                .session
                .as_ref()
                .map(|s| s.csrf.clone())
                .or_else(|| ctx.login_token.clone())
                .unwrap_or_default(),
            zone: ctx.tz.name().to_string(),
            is_admin: role.is_some_and(|r| r.may(Perm::Admin)),
            can_audit: role.is_some_and(|r| r.may(Perm::TenantAudit)),
            can_triage: role.is_some_and(|r| r.may(Perm::Triage)),
            can_manage_users: role.is_some_and(|r| r.may(Perm::TenantUsers)),
            can_manage_contacts: role.is_some_and(|r| r.may(Perm::TenantContacts)),
        }
    }

    /// The message `key` in the reader's language.
    pub fn tr<'a>(&self, key: &'a str) -> &'a str {
        self.t.get(key)
    }
}

/// Renders a template as a page.
pub fn render(t: &impl Template) -> Result<Response, PageError> {
    t.render()
        .map(|html| Html(html).into_response())
        .map_err(|e| PageError::Internal(format!("template: {e}")))
}

/// Why a page is not shown.
#[derive(Debug)]
pub enum PageError {
    NotFound,
    Forbidden,
    BadRequest(String),
    Internal(String),
    /// The server is busy (the log says why, the page asks to retry).
    Unavailable(String),
}

impl From<rusqlite::Error> for PageError {
    fn from(e: rusqlite::Error) -> Self {
        PageError::Internal(e.to_string())
    }
}

impl From<owlet_soc_store::StoreError> for PageError {
    fn from(e: owlet_soc_store::StoreError) -> Self {
        PageError::Internal(e.to_string())
    }
}

impl From<owlet_soc_report::ReportError> for PageError {
    fn from(e: owlet_soc_report::ReportError) -> Self {
        match e {
            owlet_soc_report::ReportError::Period(e) => PageError::BadRequest(e.to_string()),
            other => PageError::Internal(other.to_string()),
        }
    }
}

impl From<crate::backend::pool::PoolError> for PageError {
    fn from(e: crate::backend::pool::PoolError) -> Self {
        match e {
            crate::backend::pool::PoolError::Exhausted { .. } => {
                PageError::Unavailable(e.to_string())
            }
            crate::backend::pool::PoolError::Connect(e) => PageError::Internal(e.to_string()),
        }
    }
}

impl From<crate::users::UserError> for PageError {
    fn from(e: crate::users::UserError) -> Self {
        match e {
            crate::users::UserError::Db(e) => PageError::Internal(e.to_string()),
            crate::users::UserError::Seal(e) => PageError::Internal(e.to_string()),
            other => PageError::BadRequest(other.to_string()),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    message: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            PageError::NotFound => (StatusCode::NOT_FOUND, "Not found / 見つかりません"),
            PageError::Forbidden => (
                StatusCode::FORBIDDEN,
                "Not allowed for your role / この操作は許可されていません",
            ),
            PageError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.as_str()),
            PageError::Internal(m) => {
                tracing::error!("portal: {m}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong on the server; the SOC's log says what.",
                )
            }
            PageError::Unavailable(m) => {
                tracing::error!("portal: {m}");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The SOC is busy; try again in a moment. / 混み合っています。しばらくしてから再度お試しください。",
                )
            }
        };
        let body = ErrorPage {
            status: status.as_u16(),
            message,
        }
        .render()
        .unwrap_or_else(|_| status.to_string());
        (status, Html(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::pool::PoolError;

    /// All connections in use: the page is a 503 asking to retry, and
    /// the reason (logged) names the cap and the key to raise.
    #[test]
    fn a_full_pool_is_a_503_whose_reason_names_the_key() {
        let e = PageError::from(PoolError::Exhausted {
            max: 16,
            waited: std::time::Duration::from_secs(5),
        });
        let PageError::Unavailable(reason) = &e else {
            panic!("{e:?}")
        };
        assert!(reason.contains("all 16") && reason.contains("[postgres] max_connections"));
        assert_eq!(e.into_response().status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
