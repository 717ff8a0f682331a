//! Session fixation, CSRF, stored XSS through hostile sensor data,
//! injection through every filter field, response headers, lockout, the
//! TOTP login, idle timeout.

mod common;

use common::*;
use owlet_soc_portal::auth;
use owlet_soc_portal::session;
use owlet_soc_portal::web::headers::CSP;

fn now_s() -> u64 {
    (owlet_soc_portal::db::now_us() / 1_000_000) as u64
}

/// GET /login: the login cookie and its token.
async fn login_token(fx: &Fixture) -> (String, String) {
    let (status, body, response) = fx.get("/login", None).await;
    assert_eq!(status, 200);
    let set = response
        .headers()
        .get(axum::http::header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let token = set
        .strip_prefix(&format!("{}=", session::LOGIN_COOKIE))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(body.contains(&token), "the form carries the token");
    (format!("{}={token}", session::LOGIN_COOKIE), token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_issues_a_new_session_id_and_ends_the_old_one() {
    let fx = Fixture::new();
    let (login_cookie, token) = login_token(&fx).await;
    // A session the browser already holds (or one an attacker planted).
    let (old, _) = fx.login("customer-viewer");
    let planted = format!("{}={}", session::COOKIE, "ab".repeat(32));
    for before in [old.clone(), planted] {
        let cookie = format!("{login_cookie}; {before}");
        let csrf = if before == old {
            let c = fx.state.0.db.lock();
            let id = before.split('=').nth(1).unwrap();
            session::lookup(&c, id, std::time::Duration::from_secs(60))
                .unwrap()
                .unwrap()
                .csrf
        } else {
            token.clone()
        };
        let (status, _, response) = fx
            .post(
                "/login",
                Some(&cookie),
                &format!("csrf={csrf}&name=customer-viewer&password=a+long+enough+password"),
            )
            .await;
        assert_eq!(status, 303);
        let new = set_session(&response).expect("a new session cookie");
        assert_ne!(format!("{}={new}", session::COOKIE), before);
        // The new id works, the one the browser came with does not.
        let (s, _, _) = fx
            .get("/t/acme", Some(&format!("{}={new}", session::COOKIE)))
            .await;
        assert_eq!(s, 200);
        let (s, _, _) = fx.get("/t/acme", Some(&before)).await;
        assert_eq!(s, 303, "the old id must not be logged in");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_login_rotates_again_and_a_code_works_once() {
    let fx = Fixture::new();
    let secret = fx.user("ann", owlet_soc_portal::Role::MsspAnalyst, "ja");
    let (login_cookie, token) = login_token(&fx).await;
    let (status, _, response) = fx
        .post(
            "/login",
            Some(&login_cookie),
            &format!("csrf={token}&name=ann&password=a+long+enough+password"),
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(response.headers()["location"], "/login/totp");
    let half = format!("{}={}", session::COOKIE, set_session(&response).unwrap());
    // Password alone is not a login.
    let (s, _, _) = fx.get("/t/acme", Some(&half)).await;
    assert_eq!(s, 303);
    let (s, body, _) = fx.get("/login/totp", Some(&half)).await;
    assert_eq!(s, 200);
    let csrf = csrf_in(&body);
    let (s, _, _) = fx
        .post(
            "/login/totp",
            Some(&half),
            &format!("csrf={csrf}&code=000000"),
        )
        .await;
    assert_eq!(s, 401);
    let code = auth::current_code(&secret, now_s()).unwrap();
    let (s, _, response) = fx
        .post(
            "/login/totp",
            Some(&half),
            &format!("csrf={csrf}&code={code}"),
        )
        .await;
    assert_eq!(s, 303);
    let full = format!("{}={}", session::COOKIE, set_session(&response).unwrap());
    assert_ne!(full, half);
    let (s, body, _) = fx.get("/t/acme", Some(&full)).await;
    assert_eq!(s, 200);
    assert!(body.contains("概要"), "Japanese for a Japanese user");
    let (s, _, _) = fx.get("/t/acme", Some(&half)).await;
    assert_eq!(s, 303, "the half-way id is gone");
    // The same code cannot log in again.
    let (s, _, response) = fx
        .post(
            "/login",
            Some(&login_cookie),
            &format!("csrf={token}&name=ann&password=a+long+enough+password"),
        )
        .await;
    assert_eq!(s, 303);
    let half = format!("{}={}", session::COOKIE, set_session(&response).unwrap());
    let csrf = {
        let c = fx.state.0.db.lock();
        session::lookup(
            &c,
            half.split('=').nth(1).unwrap(),
            std::time::Duration::from_secs(60),
        )
        .unwrap()
        .unwrap()
        .csrf
    };
    let (s, _, _) = fx
        .post(
            "/login/totp",
            Some(&half),
            &format!("csrf={csrf}&code={code}"),
        )
        .await;
    assert_eq!(s, 401, "a TOTP code is used once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_after_five_failures_even_with_the_right_password() {
    let fx = Fixture::new();
    let (login_cookie, token) = login_token(&fx).await;
    for _ in 0..5 {
        let (s, body, _) = fx
            .post(
                "/login",
                Some(&login_cookie),
                &format!("csrf={token}&name=customer-viewer&password=wrong"),
            )
            .await;
        assert_eq!(s, 401);
        assert!(body.contains("Wrong user name or password"));
    }
    let (s, body, _) = fx
        .post(
            "/login",
            Some(&login_cookie),
            &format!("csrf={token}&name=customer-viewer&password=a+long+enough+password"),
        )
        .await;
    assert_eq!(s, 429);
    assert!(body.contains("Too many failed logins"), "{body}");
    let audit = owlet_soc_portal::audit::list(&fx.state.0.db.lock(), None, 50).unwrap();
    assert!(audit.iter().any(|e| e.action == "login.locked"));
    assert_eq!(
        audit.iter().filter(|e| e.action == "login.failed").count(),
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_post_needs_the_sessions_csrf_token() {
    let fx = Fixture::new();
    let (cookie, csrf) = fx.login("mssp-analyst");
    let (_, other_csrf) = fx.login("mssp-admin");
    let path = format!("/t/acme/alerts/{}/comment", fx.acme_alert);
    for form in [
        "text=no+token".to_string(),
        "text=wrong&csrf=abc".to_string(),
        format!("text=another+sessions&csrf={other_csrf}"),
    ] {
        let (s, _, _) = fx.post(&path, Some(&cookie), &form).await;
        assert_eq!(s, 403, "{form}");
    }
    let comments =
        owlet_soc_portal::workflow::comments(&fx.state.0.db.lock(), "acme", fx.acme_alert).unwrap();
    assert!(comments.is_empty(), "nothing stored without the token");
    // In the form, and in the header.
    let (s, _, _) = fx
        .post(&path, Some(&cookie), &format!("text=ok&csrf={csrf}"))
        .await;
    assert_eq!(s, 303);
    let request = axum::http::Request::post(&path)
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from("text=by+header"))
        .unwrap();
    let (s, _) = fx.send(request).await;
    assert_eq!(s, 303);
    // Login too: the form's token must match the login cookie.
    let (login_cookie, _) = login_token(&fx).await;
    let (s, _, _) = fx
        .post(
            "/login",
            Some(&login_cookie),
            "csrf=0000000000000000000000000000000000000000000000000000000000000000&name=customer-viewer&password=a+long+enough+password",
        )
        .await;
    assert_eq!(s, 403);
    let (s, _, _) = fx
        .post(
            "/login",
            None,
            "name=customer-viewer&password=a+long+enough+password",
        )
        .await;
    assert_eq!(s, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sensor_data_is_shown_as_text() {
    let fx = Fixture::new();
    let (cookie, _) = fx.login("mssp-analyst");
    let pages = [
        "/t/acme".to_string(),
        "/t/acme/board".to_string(),
        "/t/acme/attention".to_string(),
        "/t/acme/changes".to_string(),
        format!("/t/acme/changes/{}", fx.acme_change),
        "/t/acme/alerts".to_string(),
        format!("/t/acme/alerts/{}", fx.acme_alert),
        format!(
            "/t/acme/alerts?text={}",
            urlencode("<script>alert(5)</script>")
        ),
        format!(
            "/t/acme/changes?text={}",
            urlencode("\"><script>alert(6)</script>")
        ),
    ];
    for page in &pages {
        let (s, body, _) = fx.get(page, Some(&cookie)).await;
        assert_eq!(s, 200, "{page}");
        assert_inert(page, &body);
    }
    // The hostile values are there, as text.
    let (_, change, _) = fx.get(&pages[4], Some(&cookie)).await;
    assert!(
        change.contains("/etc/&#60;script&#62;alert(1)&#60;/script&#62;")
            || change.contains("/etc/&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{change}"
    );
    assert!(change.contains("class=\"add\""), "diff lines are classed");
    assert!(change.contains("alert(2)"), "the diff line is shown");
    assert!(change.contains("while the agent was stopped"));
    let (_, alert, _) = fx.get(&pages[6], Some(&cookie)).await;
    assert!(
        alert.contains("alert(3)") && alert.contains("alert(4)"),
        "SNI and DNS shown"
    );
    // A customer admin reads the audit log, which holds the hostile filter.
    let (cookie, _) = fx.login("customer-admin");
    let (s, audit, _) = fx.get("/t/acme/audit", Some(&cookie)).await;
    assert_eq!(s, 200);
    assert!(audit.contains("alert(5)"), "the filter was audited");
    assert_inert("audit", &audit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_fields_are_values_never_sql() {
    let fx = Fixture::new();
    let (cookie, _) = fx.login("mssp-analyst");
    let hostile = [
        "' OR '1'='1",
        "x' OR 1=1 --",
        "%",
        // Unescaped, `_` would match "web".
        "w_b",
        "\\",
        "\"; DROP TABLE events; --",
        "fw-1' UNION SELECT body FROM events --",
    ];
    let fields: &[(&str, &[&str])] = &[
        (
            "/t/acme/alerts",
            &["agent", "severity", "text", "state", "from", "to"],
        ),
        ("/t/acme/changes", &["agent", "text", "from", "to"]),
        ("/t/acme/export", &["format", "kind", "from", "to"]),
    ];
    for (page, names) in fields {
        for name in *names {
            for value in hostile {
                let url = format!("{page}?{name}={}", urlencode(value));
                let (s, body, _) = fx.get(&url, Some(&cookie)).await;
                assert!(s == 200 || s == 400, "{url}: {s}\n{body}");
                if s == 200 && *page != "/t/acme/export" {
                    // Nothing of acme's matches these literally.
                    assert!(!body.contains("check_down"), "{url} selected alerts");
                    assert!(!body.contains("/changes/"), "{url} selected changes");
                }
            }
        }
    }
    // The log is intact and still answers.
    let (_, body, _) = fx.get("/t/acme/alerts?agent=fw-1", Some(&cookie)).await;
    assert!(body.contains("check_down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let fx = Fixture::new();
    let (cookie, _) = fx.login("customer-viewer");
    for (path, c) in [
        ("/login", None),
        ("/nowhere", None),
        ("/t/acme", Some(cookie.as_str())),
        ("/t/beta", Some(cookie.as_str())),
        ("/admin", Some(cookie.as_str())),
        ("/assets/live.js", None),
    ] {
        let (_, _, r) = fx.get(path, c).await;
        let h = r.headers();
        assert_eq!(h["content-security-policy"], CSP, "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert!(h.contains_key("strict-transport-security"), "{path}");
    }
    let (_, _, r) = fx.get("/login", None).await;
    let set = r.headers()["set-cookie"].to_str().unwrap();
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    assert_eq!(
        session::cookie("x"),
        format!(
            "{}=x; Secure; HttpOnly; SameSite=Strict; Path=/",
            session::COOKIE
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_ends() {
    let fx = Fixture::new();
    let (cookie, _) = fx.login("customer-viewer");
    let (s, _, _) = fx.get("/t/acme", Some(&cookie)).await;
    assert_eq!(s, 200);
    fx.state
        .0
        .db
        .lock()
        .execute(
            "UPDATE sessions SET last_seen_us = last_seen_us - 1900000000",
            [],
        )
        .unwrap();
    let (s, _, r) = fx.get("/t/acme", Some(&cookie)).await;
    assert_eq!(s, 303);
    assert_eq!(r.headers()["location"], "/login");
}
