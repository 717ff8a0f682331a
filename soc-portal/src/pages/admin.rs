//! Administration (mssp-admin only, by the route table): tenants with
//! their sensors, users (add, disable / enable, reset password, tenants).
//! Every change is audited; a new or reset password is shown once.

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::tenant::SensorRow;
use crate::data;
use crate::i18n::Lang;
use crate::roles::Role;
use crate::users::{self, Credentials, NewUser};
use crate::web::{AppState, Ctx, Frame, PageError, render};

pub struct TenantRow {
    pub name: String,
    pub zone: String,
    pub sensors: Vec<SensorRow>,
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    f: Frame,
    tenants: Vec<TenantRow>,
}

pub async fn overview(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, PageError> {
    state
        .blocking(move |s| {
            let now = crate::db::now_us();
            let mut tenants = Vec::new();
            for name in s.all_tenants() {
                let sensors = data::sensors(
                    &s.settings.control_db,
                    &name,
                    None,
                    s.settings.silent_after,
                    now,
                )?
                .into_iter()
                .map(|x| SensorRow {
                    state: x.state.to_string(),
                    last_seen: ctx.show(x.last_seen_us),
                    cert_expires: x.cert_expires_us.map_or_else(String::new, |t| ctx.show(t)),
                    spool: String::new(),
                    agent: x.agent,
                    hostname: x.hostname,
                    version: x.version,
                    hw_profile: x.hw_profile,
                })
                .collect();
                tenants.push(TenantRow {
                    zone: s
                        .settings
                        .tenant_zones
                        .get(&name)
                        .cloned()
                        .unwrap_or_else(|| "UTC".into()),
                    name,
                    sensors,
                });
            }
            render(&AdminPage {
                f: Frame::new(&ctx, "admin.title"),
                tenants,
            })
        })
        .await
}

pub struct UserRow {
    pub name: String,
    pub role: String,
    pub tenants: String,
    pub disabled: bool,
    pub totp: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    f: Frame,
    users: Vec<UserRow>,
    roles: Vec<&'static str>,
    issued: Option<Credentials>,
}

fn users_page(
    s: &crate::web::Inner,
    ctx: &Ctx,
    issued: Option<Credentials>,
) -> Result<Response, PageError> {
    let users = users::list(&s.db.lock())?
        .into_iter()
        .map(|u| UserRow {
            name: u.name,
            role: u.role.name().into(),
            tenants: u.tenants.join(", "),
            disabled: u.disabled,
            totp: u.totp_required,
        })
        .collect();
    render(&UsersPage {
        f: Frame::new(ctx, "users.title"),
        users,
        roles: Role::ALL.iter().map(|r| r.name()).collect(),
        issued,
    })
}

pub async fn users(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, PageError> {
    state.blocking(move |s| users_page(s, &ctx, None)).await
}

#[derive(Deserialize)]
pub struct AddForm {
    name: String,
    role: String,
    #[serde(default)]
    tenants: String,
    #[serde(default)]
    lang: String,
    #[serde(default)]
    time_zone: String,
    #[serde(default)]
    totp: Option<String>,
}

/// "a, b c" → ["a", "b", "c"].
fn tenant_list(text: &str) -> Vec<String> {
    text.split([',', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

pub async fn add_user(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<AddForm>,
) -> Result<Response, PageError> {
    let role = Role::parse(form.role.trim()).map_err(PageError::BadRequest)?;
    let new = NewUser {
        name: form.name.trim().to_string(),
        role,
        tenants: tenant_list(&form.tenants),
        lang: Lang::parse(&form.lang),
        time_zone: if form.time_zone.trim().is_empty() {
            "UTC".into()
        } else {
            form.time_zone.trim().to_string()
        },
        totp: form.totp.is_some(),
    };
    state
        .blocking(move |s| {
            let issued = users::add(&s.db.lock(), &new)?;
            s.audit(
                &ctx,
                "admin.user.add",
                &format!("{} as {} for [{}]", new.name, role, new.tenants.join(", ")),
            );
            users_page(s, &ctx, Some(issued))
        })
        .await
}

async fn change(
    state: AppState,
    ctx: Ctx,
    name: String,
    action: &'static str,
    f: impl FnOnce(&crate::db::Conn, &str) -> Result<Option<Credentials>, users::UserError>
    + Send
    + 'static,
) -> Result<Response, PageError> {
    state
        .blocking(move |s| {
            let issued = f(&s.db.lock(), &name)?;
            s.audit(&ctx, action, &name);
            match issued {
                Some(c) => users_page(s, &ctx, Some(c)),
                None => Ok(Redirect::to("/admin/users").into_response()),
            }
        })
        .await
}

pub async fn disable(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    if ctx.who()?.name == name {
        return Err(PageError::BadRequest("you cannot disable yourself".into()));
    }
    change(state, ctx, name, "admin.user.disable", |db, n| {
        users::set_disabled(db, n, true).map(|_| None)
    })
    .await
}

pub async fn enable(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    change(state, ctx, name, "admin.user.enable", |db, n| {
        users::set_disabled(db, n, false).map(|_| None)
    })
    .await
}

pub async fn reset(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    change(state, ctx, name, "admin.user.reset", |db, n| {
        users::reset_password(db, n).map(Some)
    })
    .await
}

#[derive(Deserialize)]
pub struct TenantsForm {
    #[serde(default)]
    tenants: String,
}

pub async fn tenants(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    Form(form): Form<TenantsForm>,
) -> Result<Response, PageError> {
    let list = tenant_list(&form.tenants);
    change(state, ctx, name, "admin.user.tenants", move |db, n| {
        users::set_tenants(db, n, &list).map(|_| None)
    })
    .await
}
