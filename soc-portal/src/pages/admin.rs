//! Administration (mssp-admin only, by the route table): tenants with
//! their sensors, users (add, disable / enable, reset password, tenants).
//! Every change is audited; a new or reset password is shown once.
//!
//! The same user handlers serve a tenant's own user page, `/t/T/users`
//! (mssp-admin, or that tenant's customer-admin): there [`Managed`] limits
//! them to customer users of exactly that tenant. A role or a user outside
//! it is refused whatever the form says (a crafted POST included): an
//! MSSP role or another tenant is a 400, a user of another tenant or an
//! MSSP user is not found (404), as if it did not exist.

use askama::Template;
use axum::Extension;
use std::collections::HashMap;

use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::tenant::SensorRow;
use crate::i18n::Lang;
use crate::roles::Role;
use crate::users::{self, Credentials, NewUser, User};
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
                let sensors = s
                    .data(&name)?
                    .sensors(s.settings.silent_after, now)?
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

/// Whose users a request manages: every user (`/admin/users`) or the
/// customer users of one tenant (`/t/T/users`, the tenant the guard
/// checked against the user's scope).
pub enum Managed {
    All,
    Tenant(String),
}

impl Managed {
    pub fn of(ctx: &Ctx) -> Managed {
        ctx.tenant.clone().map_or(Managed::All, Managed::Tenant)
    }

    /// Where the page and its forms are.
    pub fn base(&self) -> String {
        match self {
            Managed::All => "/admin/users".into(),
            Managed::Tenant(t) => format!("/t/{t}/users"),
        }
    }

    /// The roles it may give.
    pub fn roles(&self) -> &'static [Role] {
        match self {
            Managed::All => &Role::ALL,
            Managed::Tenant(_) => &[Role::CustomerViewer, Role::CustomerAdmin],
        }
    }

    /// Whether `user` is one it manages.
    pub fn holds(&self, user: &User) -> bool {
        match self {
            Managed::All => true,
            Managed::Tenant(t) => !user.role.is_mssp() && user.tenants == [t.as_str()],
        }
    }

    /// The tenants of a user it adds: a tenant page's own tenant only.
    fn tenants(&self, given: Vec<String>) -> Result<Vec<String>, PageError> {
        match self {
            Managed::All => Ok(given),
            Managed::Tenant(t) if given.iter().all(|g| g == t) => Ok(vec![t.clone()]),
            Managed::Tenant(t) => Err(PageError::BadRequest(format!(
                "a user added here belongs to {t} alone; another tenant is not yours to give"
            ))),
        }
    }
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
    /// `/admin/users` or `/t/T/users`.
    base: String,
    /// A tenant's page: no tenant fields.
    scoped: bool,
}

fn users_page(
    s: &crate::web::Inner,
    ctx: &Ctx,
    issued: Option<Credentials>,
) -> Result<Response, PageError> {
    let managed = Managed::of(ctx);
    let users = users::list(&s.db.lock())?
        .into_iter()
        .filter(|u| managed.holds(u))
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
        roles: managed.roles().iter().map(|r| r.name()).collect(),
        issued,
        base: managed.base(),
        scoped: matches!(managed, Managed::Tenant(_)),
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
    let managed = Managed::of(&ctx);
    let role = Role::parse(form.role.trim()).map_err(PageError::BadRequest)?;
    if !managed.roles().contains(&role) {
        return Err(PageError::BadRequest(format!(
            "{role} cannot be given here: a tenant's users are customer-viewer or customer-admin"
        )));
    }
    let new = NewUser {
        name: form.name.trim().to_string(),
        role,
        tenants: managed.tenants(tenant_list(&form.tenants))?,
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

/// `{name}` of the path (admin and tenant routes alike).
type PathParams = Path<HashMap<String, String>>;

fn name_of(params: &HashMap<String, String>) -> Result<String, PageError> {
    const NAME: &str = "name";
    params.get(NAME).cloned().ok_or(PageError::NotFound)
}

async fn change(
    state: AppState,
    ctx: Ctx,
    params: HashMap<String, String>,
    action: &'static str,
    f: impl FnOnce(&crate::db::Conn, &str) -> Result<Option<Credentials>, users::UserError>
    + Send
    + 'static,
) -> Result<Response, PageError> {
    let name = name_of(&params)?;
    state
        .blocking(move |s| {
            let managed = Managed::of(&ctx);
            let db = s.db.lock();
            // Outside what this page manages is as good as absent.
            match users::find(&db, &name)? {
                Some(u) if managed.holds(&u) => {}
                _ => return Err(PageError::NotFound),
            }
            let issued = f(&db, &name)?;
            drop(db);
            s.audit(&ctx, action, &name);
            match issued {
                Some(c) => users_page(s, &ctx, Some(c)),
                None => Ok(Redirect::to(&managed.base()).into_response()),
            }
        })
        .await
}

pub async fn disable(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(params): PathParams,
) -> Result<Response, PageError> {
    if ctx.who()?.name == name_of(&params)? {
        return Err(PageError::BadRequest("you cannot disable yourself".into()));
    }
    change(state, ctx, params, "admin.user.disable", |db, n| {
        users::set_disabled(db, n, true).map(|_| None)
    })
    .await
}

pub async fn enable(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(params): PathParams,
) -> Result<Response, PageError> {
    change(state, ctx, params, "admin.user.enable", |db, n| {
        users::set_disabled(db, n, false).map(|_| None)
    })
    .await
}

pub async fn reset(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(params): PathParams,
) -> Result<Response, PageError> {
    change(state, ctx, params, "admin.user.reset", |db, n| {
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
    Path(params): PathParams,
    Form(form): Form<TenantsForm>,
) -> Result<Response, PageError> {
    let list = tenant_list(&form.tenants);
    change(state, ctx, params, "admin.user.tenants", move |db, n| {
        users::set_tenants(db, n, &list).map(|_| None)
    })
    .await
}
