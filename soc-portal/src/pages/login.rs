//! Login (name and password, then TOTP where required), logout.
//!
//! Guarantees: a successful login always issues a new session id and ends
//! the session the browser came with (fixation); an unknown name, a wrong
//! password and a disabled user get the same answer after the same work
//! (an argon2 verification); a locked name is refused without checking
//! anything; every outcome is in the audit log.

use askama::Template;
use axum::Extension;
use axum::extract::{Form, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::redirect_with_cookie;
use crate::auth;
use crate::lockout::{self, Limits};
use crate::session::{self, Stage};
use crate::users;
use crate::web::{AppState, Ctx, Frame, PageError, render};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    f: Frame,
    error: String,
    /// The OIDC button's IdP name; empty: no OIDC login.
    oidc: String,
}

#[derive(Template)]
#[template(path = "totp.html")]
struct TotpPage {
    f: Frame,
    error: String,
}

pub async fn form(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, PageError> {
    if ctx.user.is_some() {
        return Ok(Redirect::to("/").into_response());
    }
    page(&state.0, ctx, StatusCode::OK, String::new())
}

/// The login page with `error` (empty: none). Its form's CSRF token lives
/// in the page and in the login cookie, set here when the browser did not
/// send one (a first visit, or a cross-site arrival such as the IdP's
/// redirect back, on which the `SameSite=Strict` cookie is not sent).
pub(crate) fn page(
    state: &crate::web::Inner,
    mut ctx: Ctx,
    status: StatusCode,
    error: String,
) -> Result<Response, PageError> {
    let fresh = ctx.login_token.is_none();
    let token = ctx.login_token.clone().unwrap_or_else(auth::token);
    ctx.login_token = Some(token.clone());
    ctx.session = None;
    ctx.user = None;
    let mut page = render(&LoginPage {
        f: Frame::new(&ctx, "login.title"),
        error,
        oidc: state
            .oidc
            .as_ref()
            .map(|o| o.provider.section().display_name())
            .unwrap_or_default(),
    })?;
    if fresh {
        page.headers_mut().insert(
            header::SET_COOKIE,
            format!(
                "{}={token}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=3600",
                session::LOGIN_COOKIE
            )
            .parse()
            .map_err(|_| PageError::Internal("cookie".into()))?,
        );
    }
    Ok((status, page).into_response())
}

#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
}

enum Outcome {
    Locked(i64),
    Failed,
    Totp(String),
    Full(String),
}

pub(crate) fn limits(state: &crate::web::Inner) -> Limits {
    Limits {
        after: state.settings.lockout_after,
        window: state.settings.lockout_for,
    }
}

pub async fn submit(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    let remote = ctx.remote.clone();
    let old = ctx.session.as_ref().map(|s| s.id_hash.clone());
    let outcome = state
        .blocking(move |s| {
            let name = form.name.trim().to_string();
            let db = s.db.lock();
            if let Some(left) = lockout::locked(&db, &name, &remote, limits(s))? {
                drop(db);
                s.audit_as(&name, None, "login.locked", "refused: locked", &remote);
                return Ok(Outcome::Locked(left));
            }
            let user = users::find(&db, &name)?;
            let secrets = match &user {
                Some(u) => Some(users::secrets(&db, u.id)?),
                None => None,
            };
            let hash = secrets
                .as_ref()
                .map_or(auth::dummy_hash(), |s| s.0.as_str());
            let password_ok = auth::verify_password(&form.password, hash);
            if let Some(old) = &old {
                session::delete(&db, old)?;
            }
            match user {
                Some(u) if password_ok && !u.disabled => {
                    if u.totp_required {
                        let id = session::create(&db, u.id, Stage::Totp)?;
                        Ok(Outcome::Totp(id))
                    } else {
                        lockout::attempt(&db, &name, &remote, true)?;
                        let id = session::create(&db, u.id, Stage::Full)?;
                        drop(db);
                        s.audit_as(&name, None, "login", "password", &remote);
                        Ok(Outcome::Full(id))
                    }
                }
                _ => {
                    lockout::attempt(&db, &name, &remote, false)?;
                    drop(db);
                    s.audit_as(
                        &name,
                        None,
                        "login.failed",
                        "wrong name or password",
                        &remote,
                    );
                    Ok(Outcome::Failed)
                }
            }
        })
        .await?;
    let t = ctx.tr();
    let fail = |status: StatusCode, error: String| page(&state.0, ctx.clone(), status, error);
    match outcome {
        Outcome::Locked(left) => fail(
            StatusCode::TOO_MANY_REQUESTS,
            t.get("login.locked")
                .replace("{minutes}", &(left / 60_000_000 + 1).to_string()),
        ),
        Outcome::Failed => fail(StatusCode::UNAUTHORIZED, t.get("login.failed").into()),
        Outcome::Totp(id) => Ok(redirect_with_cookie("/login/totp", &session::cookie(&id))),
        Outcome::Full(id) => Ok(redirect_with_cookie("/", &session::cookie(&id))),
    }
}

pub async fn totp_form(Extension(ctx): Extension<Ctx>) -> Result<Response, PageError> {
    match &ctx.session {
        Some(s) if s.stage == Stage::Totp => render(&TotpPage {
            f: Frame::new(&ctx, "totp.title"),
            error: String::new(),
        }),
        _ => Ok(Redirect::to("/login").into_response()),
    }
}

#[derive(Deserialize)]
pub struct TotpForm {
    code: String,
}

pub async fn totp_submit(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<TotpForm>,
) -> Result<Response, PageError> {
    let Some(pending) = ctx.session.clone().filter(|s| s.stage == Stage::Totp) else {
        return Ok(Redirect::to("/login").into_response());
    };
    let remote = ctx.remote.clone();
    let outcome = state
        .blocking(move |s| {
            let db = s.db.lock();
            let user = users::get(&db, pending.user_id)?.ok_or(PageError::Forbidden)?;
            if let Some(left) = lockout::locked(&db, &user.name, &remote, limits(s))? {
                session::delete(&db, &pending.id_hash)?;
                drop(db);
                s.audit_as(
                    &user.name,
                    None,
                    "login.locked",
                    "refused at TOTP: locked",
                    &remote,
                );
                return Ok(Outcome::Locked(left));
            }
            let (_, secret, last) = users::secrets(&db, user.id)?;
            let now = (crate::db::now_us() / 1_000_000) as u64;
            match auth::check_totp(&secret, &form.code, now, last) {
                Some(step) => {
                    users::used_totp_step(&db, user.id, step)?;
                    lockout::attempt(&db, &user.name, &remote, true)?;
                    session::delete(&db, &pending.id_hash)?;
                    let id = session::create(&db, user.id, Stage::Full)?;
                    drop(db);
                    s.audit_as(&user.name, None, "login", "password and TOTP", &remote);
                    Ok(Outcome::Full(id))
                }
                None => {
                    lockout::attempt(&db, &user.name, &remote, false)?;
                    drop(db);
                    s.audit_as(&user.name, None, "login.failed", "wrong TOTP code", &remote);
                    Ok(Outcome::Failed)
                }
            }
        })
        .await?;
    match outcome {
        Outcome::Full(id) => Ok(redirect_with_cookie("/", &session::cookie(&id))),
        Outcome::Locked(_) => Ok(redirect_with_cookie("/login", &session::clear_cookie())),
        _ => {
            let page = render(&TotpPage {
                f: Frame::new(&ctx, "totp.title"),
                error: ctx.tr().get("totp.failed").into(),
            })?;
            Ok((StatusCode::UNAUTHORIZED, page).into_response())
        }
    }
}

pub async fn logout(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, PageError> {
    if let Some(s) = ctx.session.clone() {
        let ctx2 = ctx.clone();
        state
            .blocking(move |inner| {
                session::delete(&inner.db.lock(), &s.id_hash)?;
                inner.audit(&ctx2, "logout", "");
                Ok(())
            })
            .await?;
    }
    Ok(redirect_with_cookie("/login", &session::clear_cookie()))
}
