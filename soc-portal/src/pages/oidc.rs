//! Login through the OIDC provider ([`crate::oidc`]): the start (the login
//! page's button) and the IdP's redirect back.
//!
//! Guarantees: both answer 404 when OIDC is not configured; a login
//! finishes only with the `state` this browser started (once); the ID
//! token's claim must name an existing, enabled portal user, which is not
//! locked out; a successful login ends the session the browser came with
//! and issues a new id (fixation), full only when the user needs no TOTP or
//! the IdP's second factor is trusted (`trust_idp_mfa` and `amr`), else the
//! half-way session of the TOTP step. Every outcome is audited, with the
//! path taken; a refusal shows its reason on the login page.
//!
//! The session cookie is `SameSite=Strict`, and a browser does not send it
//! on the navigation that started at the IdP (the callback, and the
//! redirects that follow it). So the callback does not redirect: it sets
//! the new cookie on a small page of the portal's own, which moves on by
//! `<meta http-equiv="refresh">`, a same-site navigation that carries it.

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{AppendHeaders, IntoResponse, Response};
use serde::Deserialize;

use super::login;
use crate::lockout;
use crate::oidc::{Oidc, id_token, pending};
use crate::session::{self, Stage};
use crate::users;
use crate::web::{AppState, Ctx, Frame, PageError, render};

fn oidc(state: &AppState) -> Result<&Oidc, PageError> {
    state.0.oidc.as_ref().ok_or(PageError::NotFound)
}

/// `POST /login/oidc`: a new login, bound to this browser, off to the IdP.
pub async fn start(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, PageError> {
    let oidc = oidc(&state)?;
    let started = match oidc.pending.start() {
        Ok(started) => started,
        Err(e) => return refuse(&state, ctx, "-", e.to_string()).await,
    };
    match oidc.provider.authorize_url(&started).await {
        Ok(url) => Ok((
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, url),
                (header::SET_COOKIE, pending::cookie(&started.browser)),
            ],
        )
            .into_response()),
        Err(e) => refuse(&state, ctx, "-", e.to_string()).await,
    }
}

/// What the IdP's redirect back carries (RFC 6749 4.1.2).
#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /login/oidc/callback`.
pub async fn callback(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    headers: HeaderMap,
    Query(back): Query<Callback>,
) -> Result<Response, PageError> {
    let oidc = oidc(&state)?;
    if let Some(error) = &back.error {
        let why = format!(
            "the identity provider refused the sign-in: {error} {}",
            back.error_description.as_deref().unwrap_or("")
        );
        return refuse(&state, ctx, "-", why.trim_end().to_string()).await;
    }
    let (Some(code), Some(login_state)) = (&back.code, &back.state) else {
        return refuse(
            &state,
            ctx,
            "-",
            "the answer from the identity provider has no code or state; start again".into(),
        )
        .await;
    };
    let cookies = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let browser = session::cookie_value(cookies, pending::COOKIE);
    let finishing = match oidc.pending.finish(login_state, browser) {
        Ok(f) => f,
        Err(e) => return refuse(&state, ctx, "-", e.to_string()).await,
    };
    let claims = match oidc.provider.claims(code, &finishing).await {
        Ok(claims) => claims,
        Err(e) => return refuse(&state, ctx, "-", e.to_string()).await,
    };
    let section = oidc.provider.section();
    let name = match id_token::user_name(&claims, &section.claim) {
        Ok(name) => name.to_string(),
        Err(e) => return refuse(&state, ctx, "-", e.to_string()).await,
    };
    let idp_mfa = id_token::idp_mfa(&claims);
    let trust_mfa = section.trust_idp_mfa && idp_mfa;
    let issuer = section.issuer.clone();
    let (remote, old) = (
        ctx.remote.clone(),
        ctx.session.as_ref().map(|s| s.id_hash.clone()),
    );
    let who = name.clone();
    let outcome = state
        .blocking(move |s| {
            let db = s.db.lock();
            if lockout::locked(&db, &name, &remote, login::limits(s))?.is_some() {
                return Ok(Err("this user is locked after failed logins; try again later"));
            }
            let user = users::find(&db, &name)?;
            let Some(user) = user.filter(|u| !u.disabled) else {
                lockout::attempt(&db, &name, &remote, false)?;
                return Ok(Err(
                    "no enabled portal user has this name; an administrator creates users in the portal",
                ));
            };
            if let Some(old) = &old {
                session::delete(&db, old)?;
            }
            let (stage, path) = if !user.totp_required {
                (Stage::Full, format!("OIDC ({issuer})"))
            } else if trust_mfa {
                (
                    Stage::Full,
                    format!("OIDC ({issuer}) with the IdP's second factor (amr), portal TOTP skipped"),
                )
            } else {
                (
                    Stage::Totp,
                    format!("OIDC ({issuer}), portal TOTP next (IdP MFA in amr: {idp_mfa}, trusted: no)"),
                )
            };
            if stage == Stage::Full {
                lockout::attempt(&db, &name, &remote, true)?;
            }
            let id = session::create(&db, user.id, stage)?;
            drop(db);
            let action = if stage == Stage::Full { "login" } else { "login.oidc" };
            s.audit_as(&name, None, action, &path, &remote);
            Ok(Ok((id, stage)))
        })
        .await?;
    match outcome {
        Ok((id, stage)) => {
            let to = if stage == Stage::Full {
                "/"
            } else {
                "/login/totp"
            };
            let page = render(&Continue {
                f: Frame::new(&ctx, "login.title"),
                to,
            })?;
            Ok((
                AppendHeaders([
                    (header::SET_COOKIE, session::cookie(&id)),
                    (header::SET_COOKIE, pending::clear_cookie()),
                ]),
                page,
            )
                .into_response())
        }
        Err(why) => refuse(&state, ctx, &who, format!("{who}: {why}")).await,
    }
}

#[derive(Template)]
#[template(path = "oidc_continue.html")]
struct Continue {
    f: Frame,
    to: &'static str,
}

/// The login page with `why`, audited as a failed OIDC login of `who`.
async fn refuse(state: &AppState, ctx: Ctx, who: &str, why: String) -> Result<Response, PageError> {
    let (who, detail, remote) = (who.to_string(), format!("OIDC: {why}"), ctx.remote.clone());
    state
        .blocking(move |s| {
            s.audit_as(&who, None, "login.failed", &detail, &remote);
            Ok(())
        })
        .await?;
    let error = format!("{} {why}", ctx.tr().get("oidc.failed"));
    let mut page = login::page(&state.0, ctx, StatusCode::UNAUTHORIZED, error)?;
    page.headers_mut().append(
        header::SET_COOKIE,
        pending::clear_cookie()
            .parse()
            .map_err(|_| PageError::Internal("cookie".into()))?,
    );
    Ok(page)
}
