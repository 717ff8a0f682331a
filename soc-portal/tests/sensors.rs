//! Sensors' certificates through the admin pages: issue (a bundle that
//! downloads once, with the files `owlet-soc ca issue` writes), renew with
//! and without revoking the old one, revoke (register and CRL), the list
//! with serial and expiry, every action audited; a CA key the portal
//! cannot use is said on the page with its fix.

mod common;

use std::collections::BTreeMap;
use std::io::Read;

use common::*;
use owlet_ca::register::{self, REGISTER_FILE};

fn ca_dir(fx: &Fixture) -> std::path::PathBuf {
    fx.dir.path().join("ca")
}

fn certs_of(fx: &Fixture, agent: &str) -> Vec<owlet_ca::Issued> {
    register::read(&ca_dir(fx).join(REGISTER_FILE))
        .unwrap()
        .certificates
        .into_iter()
        .filter(|c| c.agent == agent)
        .collect()
}

fn token_of(body: &str) -> String {
    regex::Regex::new(r#"name="token" value="([0-9a-f]{64})""#)
        .unwrap()
        .captures(body)
        .unwrap_or_else(|| panic!("no bundle on the page\n{body}"))[1]
        .to_string()
}

/// Downloads the bundle of `token`: (status, files by name).
async fn download(
    fx: &Fixture,
    cookie: &str,
    csrf: &str,
    token: &str,
) -> (u16, BTreeMap<String, (u32, Vec<u8>)>) {
    let (s, response) = fx
        .send(
            axum::http::Request::post("/admin/sensors/bundle")
                .header(
                    axum::http::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .header(axum::http::header::COOKIE, cookie)
                .body(axum::body::Body::from(format!("csrf={csrf}&token={token}")))
                .unwrap(),
        )
        .await;
    let mut files = BTreeMap::new();
    if s == 200 {
        assert_eq!(response.headers()["content-type"], "application/x-tar");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let mut archive = tar::Archive::new(bytes.as_ref());
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mode = e.header().mode().unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            files.insert(name, (mode, data));
        }
    }
    (s, files)
}

/// Issues a certificate for acme/fw-9 with the defaults: (status, page).
async fn issue_fw9(fx: &Fixture, cookie: &str, csrf: &str) -> (u16, String) {
    let (s, body, _) = fx
        .post(
            "/admin/sensors/issue",
            Some(cookie),
            &format!("csrf={csrf}&tenant=acme&agent=fw-9"),
        )
        .await;
    (s, body)
}

fn audit_actions(fx: &Fixture, tenant: &str) -> Vec<String> {
    owlet_soc_portal::audit::list(&fx.state.0.db.lock(), Some(tenant), 100)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_download_once_renew_and_revoke() {
    let fx = Fixture::new();
    let (cookie, csrf) = fx.login("mssp-admin");
    let (s, body, _) = fx.get("/admin/sensors", Some(&cookie)).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("action=\"/admin/sensors/issue\""), "{body}");

    // Issue.
    let (s, body, _) = fx
        .post(
            "/admin/sensors/issue",
            Some(&cookie),
            &format!("csrf={csrf}&tenant=acme&agent=fw-9&days=30"),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let first = certs_of(&fx, "fw-9");
    assert_eq!(first.len(), 1);
    assert!(body.contains(&first[0].serial), "the list shows the serial");
    let expiry = first[0].not_after - time::OffsetDateTime::now_utc();
    assert!(
        expiry.whole_days() >= 29 && expiry.whole_days() <= 30,
        "{expiry}"
    );
    let token = token_of(&body);
    let (s, files) = download(&fx, &cookie, &csrf, &token).await;
    assert_eq!(s, 200);
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "acme-fw-9/agent.key",
            "acme-fw-9/agent.pem",
            "acme-fw-9/ca.pem",
            "acme-fw-9/owlet.toml",
            "acme-fw-9/soc.pem"
        ]
    );
    // owlet.toml names the bundle's own files, the sensor and the SOC.
    let config: toml::Table =
        toml::from_str(std::str::from_utf8(&files["acme-fw-9/owlet.toml"].1).unwrap()).unwrap();
    assert_eq!(files["acme-fw-9/owlet.toml"].0, 0o644);
    let soc = config["soc"].as_table().unwrap();
    for (key, file) in [
        ("cert", "agent.pem"),
        ("key", "agent.key"),
        ("ca", "ca.pem"),
    ] {
        assert_eq!(soc[key].as_str(), Some(file), "soc.{key}");
        assert!(files.contains_key(&format!("acme-fw-9/{file}")), "{file}");
    }
    // The fixture's soc_address, and the only name of the SOC's certificate
    // (soc.example) as it does not carry 127.0.0.1.
    assert_eq!(soc["address"].as_str(), Some("127.0.0.1:4443"));
    assert_eq!(soc["server_name"].as_str(), Some("soc.example"));
    assert_eq!(config["agent"]["tenant"].as_str(), Some("acme"));
    assert_eq!(config["agent"]["id"].as_str(), Some("fw-9"));
    assert_eq!(files["acme-fw-9/agent.key"].0, 0o600);
    assert!(String::from_utf8_lossy(&files["acme-fw-9/agent.key"].1).contains("PRIVATE KEY"));
    assert_eq!(
        files["acme-fw-9/ca.pem"].1,
        std::fs::read(ca_dir(&fx).join("ca.pem")).unwrap()
    );
    let pem = fx.dir.path().join("got-agent.pem");
    std::fs::write(&pem, &files["acme-fw-9/agent.pem"].1).unwrap();
    let der = owlet_tls::load_certs(&pem).unwrap().remove(0);
    let who = owlet_tls::identity_from_cert(&der).unwrap();
    assert_eq!(who.to_string(), "acme/fw-9");
    assert_eq!(owlet_tls::cert_info(&der).unwrap().serial, first[0].serial);
    // Once only.
    let (s, _) = download(&fx, &cookie, &csrf, &token).await;
    assert_eq!(s, 400, "a second download");
    // The agent's key rests in no file of the portal's.
    let key = &files["acme-fw-9/agent.key"].1;
    for f in files_under(fx.dir.path()) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(key.len()).any(|w| w == key.as_slice()),
            "the agent's key in {}",
            f.display()
        );
    }

    // Renew, keeping the old one valid.
    let (s, body, _) = fx
        .post(
            "/admin/sensors/renew",
            Some(&cookie),
            &format!("csrf={csrf}&tenant=acme&agent=fw-9"),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let certs = certs_of(&fx, "fw-9");
    assert_eq!(certs.len(), 2);
    assert!(certs.iter().all(|c| c.revoked_at.is_none()));
    let (s, files) = download(&fx, &cookie, &csrf, &token_of(&body)).await;
    assert_eq!(s, 200);
    assert_eq!(files.len(), 5);
    // Renew revoking the earlier ones.
    let (s, body, _) = fx
        .post(
            "/admin/sensors/renew",
            Some(&cookie),
            &format!("csrf={csrf}&tenant=acme&agent=fw-9&revoke_old=1"),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let certs = certs_of(&fx, "fw-9");
    assert_eq!(certs.len(), 3);
    assert_eq!(certs.iter().filter(|c| c.revoked_at.is_none()).count(), 1);
    let live = certs.iter().find(|c| c.revoked_at.is_none()).unwrap();

    // Revoke the live one: register and CRL.
    let crl_before = std::fs::read(ca_dir(&fx).join(owlet_ca::CRL_FILE)).unwrap();
    let (s, body, _) = fx
        .post(
            "/admin/sensors/revoke",
            Some(&cookie),
            &format!(
                "csrf={csrf}&tenant=acme&agent=fw-9&serial={}&reason=key-compromise",
                live.serial
            ),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("the CRL lists 3"), "{body}");
    let certs = certs_of(&fx, "fw-9");
    assert!(certs.iter().all(|c| c.revoked_at.is_some()));
    assert_eq!(
        certs
            .iter()
            .find(|c| c.serial == live.serial)
            .unwrap()
            .reason,
        Some(owlet_ca::Reason::KeyCompromise)
    );
    assert_ne!(
        std::fs::read(ca_dir(&fx).join(owlet_ca::CRL_FILE)).unwrap(),
        crl_before
    );
    // Revoking it again says why not.
    let (s, _, _) = fx
        .post(
            "/admin/sensors/revoke",
            Some(&cookie),
            &format!("csrf={csrf}&tenant=acme&agent=fw-9&serial={}", live.serial),
        )
        .await;
    assert_eq!(s, 400);

    let actions = audit_actions(&fx, "acme");
    for a in [
        "admin.cert.issue",
        "admin.cert.download",
        "admin.cert.renew",
        "admin.cert.revoke",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a}: {actions:?}");
    }
    // A bad identity or validity is a 400 with a message, nothing issued.
    for form in ["tenant=../x&agent=a", "tenant=acme&agent=a&days=9999"] {
        let (s, _, _) = fx
            .post(
                "/admin/sensors/issue",
                Some(&cookie),
                &format!("csrf={csrf}&{form}"),
            )
            .await;
        assert_eq!(s, 400, "{form}");
    }
    assert!(certs_of(&fx, "a").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_key_the_portal_cannot_use_is_said_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new();
    let key = ca_dir(&fx).join(owlet_ca::CA_KEY_FILE);
    // Mode 0640: refused like the CA tools refuse it. (Tests may run as
    // root, whom a missing read permission would not stop.)
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (cookie, csrf) = fx.login("mssp-admin");
    let (s, body, _) = fx.get("/admin/sensors", Some(&cookie)).await;
    assert_eq!(s, 200);
    assert!(body.contains("cannot use the CA key"), "{body}");
    assert!(body.contains("0600") && body.contains("ca.key"), "{body}");
    assert!(!body.contains("action=\"/admin/sensors/issue\""));
    let (s, body) = issue_fw9(&fx, &cookie, &csrf).await;
    assert_eq!(s, 400);
    assert!(body.contains("cannot use the CA key"), "{body}");
    assert!(certs_of(&fx, "fw-9").is_empty());
    std::fs::remove_file(&key).unwrap();
    let (_, body, _) = fx.get("/admin/sensors", Some(&cookie)).await;
    assert!(body.contains("cannot use the CA key"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soc_address_sensors_cannot_reach_issues_nothing_and_says_the_fix() {
    let fx = Fixture::with_settings(|s| s.soc_address = "0.0.0.0:4443".to_string());
    let (cookie, csrf) = fx.login("mssp-admin");
    let (s, body) = issue_fw9(&fx, &cookie, &csrf).await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("[portal] soc_address"), "{body}");
    assert!(certs_of(&fx, "fw-9").is_empty());
}
