//! The guard: the one place a request is admitted. Every route runs it
//! with its own row of the route table.
//!
//! In order:
//! 1. the session of the cookie is looked up (idle ones are gone);
//! 2. a non-public route needs a full login (else: GET → the login page,
//!    anything else → 403), and a one-time password must be changed first;
//! 3. a tenant route's tenant must be in the user's scope *and* exist,
//!    else 404, the same answer for both so existence is not revealed;
//! 4. the role must have the route's permission, else 403;
//! 5. every non-GET request must carry the CSRF token (form field `csrf`
//!    or header `X-CSRF-Token`): the session's, or before login the login
//!    cookie's (double submit); else 403.
//!
//! Only then does the handler run, with the [`Ctx`] built here.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::routes::Route;
use super::{AppState, Ctx, PageError};
use crate::i18n::Lang;
use crate::roles::Perm;
use crate::session::{self, Stage};
use crate::users;

/// Largest form body read (forms here are small; exports are GETs).
const MAX_FORM: usize = 64 * 1024;

pub async fn check(
    State((state, route)): State<(AppState, &'static Route)>,
    request: Request,
    next: Next,
) -> Response {
    match admit(&state, route, request).await {
        Ok(request) => next.run(request).await,
        Err(refusal) => refusal,
    }
}

async fn admit(
    state: &AppState,
    route: &'static Route,
    request: Request,
) -> Result<Request, Response> {
    let headers = request.headers().clone();
    let cookies = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let session_id = session::cookie_value(&cookies, session::COOKIE).map(str::to_string);
    let login_token = session::cookie_value(&cookies, session::LOGIN_COOKIE)
        .filter(|t| t.len() == 64)
        .map(str::to_string);
    let remote = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let idle = state.0.settings.session_idle;
    let (session, user) = state
        .blocking(move |s| {
            let db = s.db.lock();
            let Some(id) = session_id else {
                return Ok((None, None));
            };
            let Some(session) = session::lookup(&db, &id, idle)? else {
                return Ok((None, None));
            };
            let user = if session.stage == Stage::Full {
                users::get(&db, session.user_id)?.filter(|u| !u.disabled)
            } else {
                None
            };
            Ok((Some(session), user))
        })
        .await
        .map_err(IntoResponse::into_response)?;

    let lang = user
        .as_ref()
        .map(|u| u.lang)
        .unwrap_or_else(|| Lang::from_accept_language(&headers));
    let tz = user
        .as_ref()
        .map_or(chrono_tz::Tz::UTC, |u| crate::timefmt::zone(&u.time_zone));
    let is_get = matches!(*request.method(), Method::GET | Method::HEAD);

    if route.perm != Perm::Public {
        let Some(user) = &user else {
            return Err(if is_get {
                Redirect::to("/login").into_response()
            } else {
                PageError::Forbidden.into_response()
            });
        };
        let password_change = matches!(route.path, "/account" | "/account/password" | "/logout");
        if user.must_change && !password_change {
            return Err(if is_get {
                Redirect::to("/account").into_response()
            } else {
                PageError::Forbidden.into_response()
            });
        }
    }

    let tenant = if route.tenant {
        let tenant = tenant_of(request.uri().path()).ok_or(PageError::NotFound.into_response())?;
        let in_scope = user.as_ref().is_some_and(|u| u.scope().contains(&tenant));
        let known = {
            let (state, tenant) = (state.clone(), tenant.clone());
            state
                .blocking(move |s| Ok(s.tenant_known(&tenant)))
                .await
                .unwrap_or(false)
        };
        if !in_scope || !known {
            return Err(PageError::NotFound.into_response());
        }
        Some(tenant)
    } else {
        None
    };

    if let Some(user) = &user
        && !user.role.may(route.perm)
    {
        return Err(PageError::Forbidden.into_response());
    }

    let (parts, body) = request.into_parts();
    let mut request = if is_get {
        Request::from_parts(parts, body)
    } else {
        let bytes = to_bytes(body, MAX_FORM)
            .await
            .map_err(|_| PageError::BadRequest("the form is too large".into()).into_response())?;
        let sent = csrf_sent(&parts.headers, &bytes);
        let expected = session
            .as_ref()
            .map(|s| s.csrf.clone())
            .or(login_token.clone());
        let ok = match (&sent, &expected) {
            (Some(sent), Some(expected)) => session::same_token(sent, expected),
            _ => false,
        };
        if !ok {
            return Err(PageError::Forbidden.into_response());
        }
        Request::from_parts(parts, Body::from(bytes))
    };
    request.extensions_mut().insert(Ctx {
        user: user.map(Arc::new),
        session,
        tenant,
        lang,
        tz,
        remote,
        login_token,
        perm: route.perm,
    });
    Ok(request)
}

/// `TENANT` of a `/t/TENANT/...` path (percent-decoding refused: tenant
/// names are plain).
pub fn tenant_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/t/")?;
    let name = rest.split('/').next()?;
    owlet_tls::Identity::new(name, "x").ok()?;
    Some(name.to_string())
}

/// The CSRF token of a request: header, else the form's `csrf` field.
fn csrf_sent(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    if let Some(v) = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()) {
        return Some(v.to_string());
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return None;
    }
    url_form_field(body, "csrf")
}

fn url_form_field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_of_takes_only_plain_names() {
        assert_eq!(tenant_of("/t/acme/alerts"), Some("acme".into()));
        assert_eq!(tenant_of("/t/acme"), Some("acme".into()));
        assert_eq!(tenant_of("/t/../x"), None);
        assert_eq!(tenant_of("/t/%2e%2e/x"), None);
        assert_eq!(tenant_of("/admin"), None);
    }

    #[test]
    fn csrf_comes_from_header_or_form() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        assert_eq!(csrf_sent(&h, b"a=1&csrf=abc"), Some("abc".into()));
        h.insert("x-csrf-token", "def".parse().unwrap());
        assert_eq!(csrf_sent(&h, b"csrf=abc"), Some("def".into()));
    }
}
