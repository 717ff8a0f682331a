//! Every route of the route table × every role × own / foreign / unknown
//! tenant: what a role may not do is 403, a tenant outside its scope is
//! 404 (the same as one that does not exist), and no refusal carries the
//! other tenant's data. Generated from `ROUTES`, so a new route is covered
//! by being added.

mod common;

use common::{ACME_VICTIM, BETA_MARK, Fixture, KEPT_FILE};
use owlet_soc_portal::Role;
use owlet_soc_portal::roles::Perm;
use owlet_soc_portal::web::routes::{Method, ROUTES, Route};

/// The path of `route` for `tenant`, with ids of that tenant's events.
fn path(fx: &Fixture, route: &Route, tenant: &str) -> String {
    let id = if route.path.contains("/changes/") {
        if tenant == "beta" {
            fx.beta_change
        } else {
            fx.acme_change
        }
    } else if tenant == "beta" {
        fx.beta_alert
    } else {
        fx.acme_alert
    };
    route
        .path
        .replace("{tenant}", tenant)
        .replace("{id}", &id.to_string())
        .replace("{file}", KEPT_FILE)
        // A contact of the path's tenant, made anew for each call (delete
        // removes it); beta's is made the same way, so a refusal is the
        // guard's and not a missing id.
        .replace(
            "{contact}",
            &if route.path.contains("{contact}") && ["acme", "beta"].contains(&tenant) {
                fx.contact(tenant, "c", "c@x.example").to_string()
            } else {
                "1".to_string()
            },
        )
        .replace("{action}", "issue")
        .replace(
            "{name}",
            if route.path.starts_with("/assets") {
                "live.js"
            } else if route.path.contains("/series/") {
                "availability"
            } else if route.tenant {
                // A tenant's own user (beta's "victim" is not acme's to manage).
                ACME_VICTIM
            } else {
                "victim"
            },
        )
}

/// Who may do what, written here again on purpose (not `Role::may`), so a
/// wrong entry in the permission table fails the matrix; no wildcard, so a
/// new permission must be decided here.
fn allowed(perm: Perm, role: Role) -> bool {
    use Role::*;
    match perm {
        Perm::Public | Perm::Session | Perm::View => true,
        Perm::Triage => matches!(role, MsspAdmin | MsspAnalyst),
        Perm::TenantAudit | Perm::TenantUsers | Perm::TenantContacts => {
            matches!(role, MsspAdmin | CustomerAdmin)
        }
        Perm::Admin => role == MsspAdmin,
    }
}

async fn call(fx: &Fixture, route: &Route, path: &str, role: Option<Role>) -> (u16, String) {
    let (cookie, csrf) = match role {
        Some(r) => {
            let (c, t) = fx.login(r.name());
            (Some(c), t)
        }
        None => (None, String::new()),
    };
    let (status, body, _) = match route.method {
        // The live stream never ends: its status and headers are the answer.
        Method::Get if path.ends_with("/live") => {
            let mut b = axum::http::Request::get(path);
            if let Some(c) = &cookie {
                b = b.header(axum::http::header::COOKIE, c);
            }
            let (status, _) = fx.send(b.body(axum::body::Body::empty()).unwrap()).await;
            return (status, String::new());
        }
        Method::Get => fx.get(path, cookie.as_deref()).await,
        Method::Post => {
            let form = format!(
                "csrf={csrf}&state=acknowledged&text=hello&comment=&tenants=beta&name=newbie&role=customer-viewer&lang=en&time_zone=UTC&current=x&new=y&repeat=y&code=000000&password=x&email=newbie@acme.example&min_severity="
            );
            fx.post(path, cookie.as_deref(), &form).await
        }
    };
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_every_role_every_tenant() {
    let fx = Fixture::new();
    let mut checked = 0;
    let mut paths = Vec::new();
    for route in ROUTES {
        paths.push(route.path);
        for role in Role::ALL {
            let tenants: &[&str] = if !route.tenant {
                &["-"]
            } else if role == Role::MsspAdmin {
                &["acme", "nosuch"]
            } else {
                &["acme", "beta", "nosuch"]
            };
            for tenant in tenants {
                let p = path(&fx, route, tenant);
                let (status, body) = call(&fx, route, &p, Some(role)).await;
                let what = format!("{} {p} as {role}: {status}", route.method.name());
                assert_eq!(role.may(route.perm), allowed(route.perm, role), "{what}");
                assert!(status < 500, "{what}\n{body}");
                let own = !route.tenant || *tenant == "acme";
                if !own {
                    assert_eq!(status, 404, "{what}");
                } else if route.perm == Perm::Public {
                    // Login answers on its own terms (e.g. 401 for a wrong password).
                } else if !allowed(route.perm, role) {
                    assert_eq!(status, 403, "{what}");
                } else {
                    assert!(![401, 403, 404].contains(&status), "{what}\n{body}");
                }
                if [403, 404].contains(&status) {
                    assert!(!body.contains(BETA_MARK), "{what} leaks beta's data");
                }
                if route.tenant && *tenant == "acme" && role != Role::MsspAdmin {
                    assert!(!body.contains(BETA_MARK), "{what} shows beta's data");
                }
                checked += 1;
            }
        }
        // Without a session: nothing but the public routes.
        let p = path(&fx, route, "acme");
        let (status, body) = call(&fx, route, &p, None).await;
        if route.perm != Perm::Public {
            let expected = if route.method == Method::Get {
                303
            } else {
                403
            };
            assert_eq!(status, expected, "{p} without a session");
            assert!(!body.contains("fw-1") && !body.contains(BETA_MARK), "{p}");
        }
    }
    assert!(checked > 100, "only {checked} combinations");
    for p in [
        "/t/{tenant}/plots",
        "/t/{tenant}/series/{name}",
        "/t/{tenant}/reports",
        "/t/{tenant}/reports/now",
        "/t/{tenant}/reports/files/{file}",
        "/t/{tenant}/users",
        "/t/{tenant}/users/{name}/disable",
        "/t/{tenant}/users/{name}/enable",
        "/t/{tenant}/users/{name}/reset",
        "/t/{tenant}/contacts",
        "/t/{tenant}/contacts/{contact}",
        "/t/{tenant}/contacts/{contact}/enable",
        "/t/{tenant}/contacts/{contact}/disable",
        "/t/{tenant}/contacts/{contact}/delete",
    ] {
        assert!(paths.contains(&p), "{p} is not in the matrix");
    }
}

/// An id that exists only in beta's log, asked for under acme: the path's
/// tenant decides which log is read, so it is simply not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_id_under_the_own_tenant_is_not_found() {
    let fx = Fixture::new();
    let (cookie, _) = fx.login("customer-viewer");
    for kind in ["alerts", "changes"] {
        let (status, body, _) = fx
            .get(
                &format!("/t/acme/{kind}/{}", fx.beta_only_id),
                Some(&cookie),
            )
            .await;
        assert_eq!(status, 404, "{kind}");
        assert!(!body.contains(BETA_MARK));
    }
}
