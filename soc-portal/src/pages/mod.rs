//! The handlers, one module per page family. Each gets its [`Ctx`]
//! (crate::web::Ctx) from the guard and renders an askama template.

pub mod account;
pub mod admin;
pub mod alerts;
pub mod audit;
pub mod changes;
pub mod download;
pub mod login;
pub mod tenant;

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};

/// A 303 to `to` that also sets `cookie`.
pub fn redirect_with_cookie(to: &str, cookie: &str) -> Response {
    ([(header::SET_COOKIE, cookie.to_string())], Redirect::to(to)).into_response()
}

/// An empty form field is no value.
pub fn given(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
