//! A tenant's own users (`/t/T/users`): a customer-admin adds, disables,
//! enables and resets the customer users of its tenant, and nothing else,
//! even with a crafted POST: no MSSP role, no other tenant, no user of
//! another tenant or of the MSSP. Every change is audited under the
//! tenant; every POST needs the CSRF token.

mod common;

use common::*;
use owlet_soc_portal::users;

/// The status of a POST of `form` to `path`.
async fn status(fx: &Fixture, cookie: Option<&str>, path: &str, form: &str) -> u16 {
    fx.post(path, cookie, form).await.0
}

fn user(fx: &Fixture, name: &str) -> Option<users::User> {
    users::find(&fx.state.0.db.lock(), name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_admin_manages_its_own_tenants_customer_users() {
    let fx = Fixture::new();
    let (cookie, csrf) = fx.login("customer-admin");
    let (s, body, _) = fx.get("/t/acme/users", Some(&cookie)).await;
    assert_eq!(s, 200);
    assert!(body.contains(ACME_VICTIM) && body.contains("customer-viewer"));
    // Not beta's user, not the MSSP's (the analyst assigned to acme either).
    assert!(!body.contains(">victim<"), "{body}");
    assert!(!body.contains("mssp-analyst<") && !body.contains(">mssp-admin<"));
    assert!(
        !body.contains("<option value=\"mssp-"),
        "MSSP roles offered"
    );
    assert!(body.contains("action=\"/t/acme/users/acme-victim/disable\""));

    let (s, body, _) = fx
        .post(
            "/t/acme/users",
            Some(&cookie),
            &format!("csrf={csrf}&name=ken&role=customer-viewer&lang=ja&time_zone=Asia/Tokyo"),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("otpauth://totp/"), "the one-time page");
    let ken = user(&fx, "ken").unwrap();
    assert_eq!(ken.tenants, ["acme"]);
    assert!(ken.must_change);

    let (s, _, r) = fx
        .post(
            "/t/acme/users/ken/disable",
            Some(&cookie),
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(s, 303);
    assert_eq!(r.headers()["location"], "/t/acme/users");
    assert!(user(&fx, "ken").unwrap().disabled);
    let s = status(
        &fx,
        Some(&cookie),
        "/t/acme/users/ken/enable",
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(s, 303);
    assert!(!user(&fx, "ken").unwrap().disabled);
    let (s, body, _) = fx
        .post(
            "/t/acme/users/ken/reset",
            Some(&cookie),
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(s, 200);
    let password = regex::Regex::new(r#"class="secret">([A-Za-z0-9]{20})<"#)
        .unwrap()
        .captures(&body)
        .unwrap()[1]
        .to_string();
    let (hash, _, _) = users::secrets(&fx.state.0.db.lock(), ken.id).unwrap();
    assert!(owlet_soc_portal::auth::verify_password(&password, &hash));
    // Shown once: the list page does not show it again.
    let (_, body, _) = fx.get("/t/acme/users", Some(&cookie)).await;
    assert!(!body.contains(&password));

    let actions: Vec<String> = audit_of(&fx, "acme")
        .into_iter()
        .filter(|(_, d)| d.starts_with("ken"))
        .map(|(a, _)| a)
        .collect();
    for a in [
        "admin.user.add",
        "admin.user.disable",
        "admin.user.enable",
        "admin.user.reset",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} not audited: {actions:?}"
        );
    }
    assert!(
        audit_of(&fx, "beta")
            .iter()
            .all(|(_, d)| !d.contains("ken"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_posts_cannot_reach_mssp_roles_or_another_tenant() {
    let fx = Fixture::new();
    let (cookie, csrf) = fx.login("customer-admin");
    // An MSSP role, or another tenant, in the add form.
    for (name, form) in [
        ("evil1", "role=mssp-admin"),
        ("evil2", "role=mssp-analyst&tenants=acme"),
        ("evil3", "role=customer-admin&tenants=beta"),
        ("evil4", "role=customer-viewer&tenants=acme,beta"),
    ] {
        let s = status(
            &fx,
            Some(&cookie),
            "/t/acme/users",
            &format!("csrf={csrf}&name={name}&{form}"),
        )
        .await;
        assert_eq!(s, 400, "{form}");
        assert!(user(&fx, name).is_none(), "{form} created a user");
    }
    // The other tenant's page, and the admin page.
    let s = status(
        &fx,
        Some(&cookie),
        "/t/beta/users",
        &format!("csrf={csrf}&name=evil5&role=customer-admin"),
    )
    .await;
    assert_eq!(s, 404);
    let s = status(
        &fx,
        Some(&cookie),
        "/admin/users",
        &format!("csrf={csrf}&name=evil6&role=mssp-admin"),
    )
    .await;
    assert_eq!(s, 403);
    assert!(user(&fx, "evil5").is_none() && user(&fx, "evil6").is_none());
    // Users outside the tenant's customers, through the own tenant's page:
    // beta's viewer, the analyst assigned to acme, the MSSP admin.
    for target in ["victim", "mssp-analyst", "mssp-admin"] {
        for action in ["disable", "reset", "enable"] {
            let (s, body, _) = fx
                .post(
                    &format!("/t/acme/users/{target}/{action}"),
                    Some(&cookie),
                    &format!("csrf={csrf}"),
                )
                .await;
            assert_eq!(s, 404, "{action} {target}");
            assert!(!body.contains("otpauth"), "{action} {target}");
        }
        let u = user(&fx, target).unwrap();
        assert!(!u.disabled && !u.must_change, "{target} was changed");
        let s = status(
            &fx,
            Some(&cookie),
            &format!("/t/beta/users/{target}/disable"),
            &format!("csrf={csrf}"),
        )
        .await;
        assert_eq!(s, 404);
    }
    // Without the CSRF token: refused, nothing changed.
    let s = status(
        &fx,
        Some(&cookie),
        &format!("/t/acme/users/{ACME_VICTIM}/disable"),
        "csrf=0000",
    )
    .await;
    assert_eq!(s, 403);
    assert!(!user(&fx, ACME_VICTIM).unwrap().disabled);
    // A viewer of the tenant may not manage it.
    let (viewer, vcsrf) = fx.login("customer-viewer");
    let (s, _, _) = fx.get("/t/acme/users", Some(&viewer)).await;
    assert_eq!(s, 403);
    let s = status(
        &fx,
        Some(&viewer),
        &format!("/t/acme/users/{ACME_VICTIM}/disable"),
        &format!("csrf={vcsrf}"),
    )
    .await;
    assert_eq!(s, 403);
    assert!(!user(&fx, ACME_VICTIM).unwrap().disabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mssp_admin_manages_any_tenants_customers_there() {
    let fx = Fixture::new();
    let (cookie, csrf) = fx.login("mssp-admin");
    let (s, body, _) = fx
        .post(
            "/t/beta/users",
            Some(&cookie),
            &format!("csrf={csrf}&name=bea&role=customer-admin"),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(user(&fx, "bea").unwrap().tenants, ["beta"]);
    let s = status(
        &fx,
        Some(&cookie),
        "/t/beta/users/victim/disable",
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(s, 303);
    assert!(user(&fx, "victim").unwrap().disabled);
    // Still no MSSP role from a tenant's page.
    let s = status(
        &fx,
        Some(&cookie),
        "/t/beta/users",
        &format!("csrf={csrf}&name=ana2&role=mssp-analyst&tenants=beta"),
    )
    .await;
    assert_eq!(s, 400);
}
