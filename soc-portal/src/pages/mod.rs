//! The handlers, one module per page family. Each gets its [`Ctx`]
//! (crate::web::Ctx) from the guard and renders an askama template.

pub mod account;
pub mod admin;
pub mod alerts;
pub mod audit;
pub mod changes;
pub mod contacts;
pub mod download;
pub mod live;
pub mod login;
pub mod oidc;
pub mod plots;
pub mod reports;
pub mod sensors;
pub mod tenant;

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};

/// A 303 to `to` that also sets `cookie`.
pub fn redirect_with_cookie(to: &str, cookie: &str) -> Response {
    ([(header::SET_COOKIE, cookie.to_string())], Redirect::to(to)).into_response()
}

/// An empty form field is no value.
pub fn given(v: &str) -> Option<String> {
    Some(v.trim().to_string()).filter(|s| !s.is_empty())
}

/// The filter fields of the alert and change lists, as their forms send
/// them (and as the forms show them again). `text` is a substring of the
/// path (changes) or of the subject, name and message (alerts); `state`
/// the workflow state (alerts).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct FilterQuery {
    pub agent: String,
    pub severity: String,
    pub text: String,
    pub state: String,
    pub from: String,
    pub to: String,
}

impl FilterQuery {
    /// The store filter: values bound as they are, times read in the
    /// user's zone.
    pub fn filter(
        &self,
        ctx: &crate::web::Ctx,
        limit: i64,
    ) -> Result<crate::data::ListFilter, crate::web::PageError> {
        Ok(crate::data::ListFilter {
            agent: given(&self.agent),
            severity: given(&self.severity),
            text: given(&self.text),
            from_us: time_filter(ctx, &self.from)?,
            to_us: time_filter(ctx, &self.to)?,
            limit,
        })
    }
}

/// A form's local time in the user's zone (UTC µs); empty is none.
pub fn time_filter(ctx: &crate::web::Ctx, v: &str) -> Result<Option<i64>, crate::web::PageError> {
    given(v)
        .map(|t| crate::timefmt::parse_local(&t, ctx.tz).map_err(crate::web::PageError::BadRequest))
        .transpose()
}
