//! The route table: every page and action of the portal, with the
//! permission it needs and whether it is about one tenant. The router is
//! built from this table alone ([`router`]), each route behind the guard
//! with its own row, so a route cannot exist without its check, and the
//! access tests iterate this same table (a new route is tested by being
//! added).
//!
//! Invariants (tested): a tenant route's path starts with `/t/{tenant}`,
//! no other path names a tenant; every non-public route is behind a
//! session; state-changing routes are POST (and so CSRF-checked).

use axum::Router;
use axum::routing::{MethodFilter, MethodRouter, on};

use super::{AppState, guard, headers};
use crate::pages::{
    account, admin, alerts, audit, changes, contacts, download, live, login, oidc, plots, reports,
    sensors, tenant,
};
use crate::roles::Perm;

/// HTTP methods the portal uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn filter(self) -> MethodFilter {
        match self {
            Method::Get => MethodFilter::GET,
            Method::Post => MethodFilter::POST,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// One row of the table.
pub struct Route {
    pub method: Method,
    /// axum path syntax (`/t/{tenant}/alerts/{id}`).
    pub path: &'static str,
    pub perm: Perm,
    /// The path's first segments are `/t/{tenant}`: checked against the
    /// user's scope (a foreign or unknown tenant is 404).
    pub tenant: bool,
    /// Builds the endpoint for the method filter.
    pub handler: fn(MethodFilter) -> MethodRouter<AppState>,
}

const fn route(
    method: Method,
    path: &'static str,
    perm: Perm,
    handler: fn(MethodFilter) -> MethodRouter<AppState>,
) -> Route {
    let bytes = path.as_bytes();
    // "/t/{tenant}" prefix.
    let tenant = bytes.len() >= 11
        && bytes[0] == b'/'
        && bytes[1] == b't'
        && bytes[2] == b'/'
        && bytes[3] == b'{'
        && bytes[4] == b't';
    Route {
        method,
        path,
        perm,
        tenant,
        handler,
    }
}

use Method::{Get, Post};
use Perm::{Admin, Public, Session, TenantAudit, TenantContacts, TenantUsers, Triage, View};

/// Every route of the portal.
pub static ROUTES: &[Route] = &[
    route(Get, "/assets/{name}", Public, |m| {
        on(m, super::assets::serve)
    }),
    route(Get, "/login", Public, |m| on(m, login::form)),
    route(Post, "/login", Public, |m| on(m, login::submit)),
    route(Get, "/login/totp", Public, |m| on(m, login::totp_form)),
    route(Post, "/login/totp", Public, |m| on(m, login::totp_submit)),
    route(Post, "/login/oidc", Public, |m| on(m, oidc::start)),
    route(Get, "/login/oidc/callback", Public, |m| {
        on(m, oidc::callback)
    }),
    route(Post, "/logout", Session, |m| on(m, login::logout)),
    route(Get, "/", Session, |m| on(m, account::home)),
    route(Get, "/account", Session, |m| on(m, account::form)),
    route(Post, "/account/preferences", Session, |m| {
        on(m, account::preferences)
    }),
    route(Post, "/account/password", Session, |m| {
        on(m, account::password)
    }),
    route(Get, "/t/{tenant}", View, |m| on(m, tenant::overview)),
    route(Get, "/t/{tenant}/board", View, |m| on(m, tenant::board)),
    route(Get, "/t/{tenant}/attention", View, |m| {
        on(m, tenant::attention)
    }),
    route(Get, "/t/{tenant}/live", View, |m| on(m, live::live)),
    route(Get, "/t/{tenant}/plots", View, |m| on(m, plots::page)),
    route(Get, "/t/{tenant}/series/{name}", View, |m| {
        on(m, plots::json)
    }),
    route(Get, "/t/{tenant}/reports", View, |m| on(m, reports::list)),
    route(Get, "/t/{tenant}/reports/now", View, |m| {
        on(m, reports::now)
    }),
    route(Get, "/t/{tenant}/reports/files/{file}", View, |m| {
        on(m, reports::file)
    }),
    route(Get, "/t/{tenant}/changes", View, |m| on(m, changes::list)),
    route(Get, "/t/{tenant}/changes/{id}", View, |m| {
        on(m, changes::detail)
    }),
    route(Get, "/t/{tenant}/alerts", View, |m| on(m, alerts::list)),
    route(Get, "/t/{tenant}/alerts/{id}", View, |m| {
        on(m, alerts::detail)
    }),
    route(Post, "/t/{tenant}/alerts/{id}/state", Triage, |m| {
        on(m, alerts::set_state)
    }),
    route(Post, "/t/{tenant}/alerts/{id}/comment", Triage, |m| {
        on(m, alerts::comment)
    }),
    route(Get, "/t/{tenant}/download", View, |m| on(m, download::form)),
    route(Get, "/t/{tenant}/export", View, |m| on(m, download::export)),
    route(Get, "/t/{tenant}/audit", TenantAudit, |m| {
        on(m, audit::tenant)
    }),
    route(Get, "/admin", Admin, |m| on(m, admin::overview)),
    // The user pages twice: every user (admin), and a tenant's own customer
    // users (`admin::Managed` scopes the same handlers to the path's tenant).
    route(Get, "/admin/users", Admin, |m| on(m, admin::users)),
    route(Get, "/t/{tenant}/users", TenantUsers, |m| {
        on(m, admin::users)
    }),
    route(Post, "/admin/users", Admin, |m| on(m, admin::add_user)),
    route(Post, "/t/{tenant}/users", TenantUsers, |m| {
        on(m, admin::add_user)
    }),
    route(Post, "/admin/users/{name}/disable", Admin, |m| {
        on(m, admin::disable)
    }),
    route(Post, "/t/{tenant}/users/{name}/disable", TenantUsers, |m| {
        on(m, admin::disable)
    }),
    route(Post, "/admin/users/{name}/enable", Admin, |m| {
        on(m, admin::enable)
    }),
    route(Post, "/t/{tenant}/users/{name}/enable", TenantUsers, |m| {
        on(m, admin::enable)
    }),
    route(Post, "/admin/users/{name}/reset", Admin, |m| {
        on(m, admin::reset)
    }),
    route(Post, "/t/{tenant}/users/{name}/reset", TenantUsers, |m| {
        on(m, admin::reset)
    }),
    route(Get, "/t/{tenant}/contacts", TenantContacts, |m| {
        on(m, contacts::list)
    }),
    route(Post, "/t/{tenant}/contacts", TenantContacts, |m| {
        on(m, contacts::add)
    }),
    route(
        Post,
        "/t/{tenant}/contacts/{contact}",
        TenantContacts,
        |m| on(m, contacts::edit),
    ),
    route(
        Post,
        "/t/{tenant}/contacts/{contact}/enable",
        TenantContacts,
        |m| on(m, contacts::enable),
    ),
    route(
        Post,
        "/t/{tenant}/contacts/{contact}/disable",
        TenantContacts,
        |m| on(m, contacts::disable),
    ),
    route(
        Post,
        "/t/{tenant}/contacts/{contact}/delete",
        TenantContacts,
        |m| on(m, contacts::delete),
    ),
    route(Post, "/admin/users/{name}/tenants", Admin, |m| {
        on(m, admin::tenants)
    }),
    route(Get, "/admin/sensors", Admin, |m| on(m, sensors::list)),
    // issue, renew, revoke, bundle (one handler: `sensors::act`)
    route(Post, "/admin/sensors/{action}", Admin, |m| {
        on(m, sensors::act)
    }),
    route(Get, "/admin/audit", Admin, |m| on(m, audit::all)),
];

/// The portal's router: each route of [`ROUTES`] behind the guard with
/// its row, security headers on every response (404s too).
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for r in ROUTES {
        let endpoint = (r.handler)(r.method.filter()).route_layer(
            axum::middleware::from_fn_with_state((state.clone(), r), guard::check),
        );
        router = router.route(r.path, endpoint);
    }
    router
        .fallback(|| async { super::PageError::NotFound })
        .layer(axum::middleware::from_fn(headers::secure))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_routes_are_exactly_the_t_paths() {
        for r in ROUTES {
            assert_eq!(
                r.tenant,
                r.path == "/t/{tenant}" || r.path.starts_with("/t/{tenant}/"),
                "{}",
                r.path
            );
            assert_eq!(r.tenant, r.path.contains("{tenant}"), "{}", r.path);
            if r.tenant {
                assert!(
                    matches!(
                        r.perm,
                        View | Triage | TenantAudit | TenantUsers | TenantContacts
                    ),
                    "{}",
                    r.path
                );
            }
        }
    }

    #[test]
    fn only_login_and_assets_are_public() {
        for r in ROUTES.iter().filter(|r| r.perm == Public) {
            assert!(
                r.path.starts_with("/login") || r.path.starts_with("/assets/"),
                "{} is public",
                r.path
            );
        }
    }
}
