//! The tenant list (home), and the user's own account: language, time
//! zone, password (a one-time password must be replaced first).

use askama::Template;
use axum::Extension;
use axum::extract::{Form, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::auth;
use crate::i18n::Lang;
use crate::roles::Scope;
use crate::users;
use crate::web::{AppState, Ctx, Frame, PageError, render};

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    f: Frame,
    tenants: Vec<String>,
}

pub async fn home(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, PageError> {
    let user = ctx.who()?.clone();
    let tenants = state
        .blocking(move |s| {
            Ok(match user.scope() {
                Scope::All => s.all_tenants(),
                Scope::Only(list) => list.into_iter().filter(|t| s.tenant_known(t)).collect(),
            })
        })
        .await?;
    if tenants.len() == 1 && !ctx.who()?.role.is_mssp() {
        return Ok(Redirect::to(&format!("/t/{}", tenants[0])).into_response());
    }
    render(&HomePage {
        f: Frame::new(&ctx, "home.title"),
        tenants,
    })
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    f: Frame,
    must_change: bool,
    lang: String,
    message: String,
}

fn account_page(ctx: &Ctx, message: String) -> Result<Response, PageError> {
    let user = ctx.who()?;
    render(&AccountPage {
        f: Frame::new(ctx, "account.title"),
        must_change: user.must_change,
        lang: user.lang.code().to_string(),
        message,
    })
}

pub async fn form(Extension(ctx): Extension<Ctx>) -> Result<Response, PageError> {
    account_page(&ctx, String::new())
}

#[derive(Deserialize)]
pub struct Preferences {
    lang: String,
    time_zone: String,
}

pub async fn preferences(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<Preferences>,
) -> Result<Response, PageError> {
    let id = ctx.who()?.id;
    let c = ctx.clone();
    state
        .blocking(move |s| {
            let lang = Lang::parse(&form.lang);
            users::set_preferences(&s.db.lock(), id, lang, form.time_zone.trim())?;
            s.audit(
                &c,
                "account.preferences",
                &format!("language {}, zone {}", lang.code(), form.time_zone.trim()),
            );
            Ok(())
        })
        .await?;
    Ok(Redirect::to("/account").into_response())
}

#[derive(Deserialize)]
pub struct PasswordForm {
    current: String,
    new: String,
    repeat: String,
}

pub async fn password(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<PasswordForm>,
) -> Result<Response, PageError> {
    let id = ctx.who()?.id;
    if form.new != form.repeat {
        return account_page(&ctx, ctx.tr().get("account.mismatch").into());
    }
    let c = ctx.clone();
    let result = state
        .blocking(move |s| {
            let db = s.db.lock();
            let (hash, _, _) = users::secrets(&db, id)?;
            if !auth::verify_password(&form.current, &hash) {
                return Ok(Err(c.tr().get("account.wrong_current").to_string()));
            }
            match users::set_password(&db, id, &form.new) {
                Ok(()) => {
                    drop(db);
                    s.audit(&c, "account.password", "changed");
                    Ok(Ok(()))
                }
                Err(users::UserError::Invalid(_)) => {
                    Ok(Err(c.tr().get("account.too_short").to_string()))
                }
                Err(e) => Err(e.into()),
            }
        })
        .await?;
    match result {
        Ok(()) => Ok(Redirect::to("/").into_response()),
        Err(message) => account_page(&ctx, message),
    }
}
