//! The portal in the scaled-out SOC with real processes: a 3-node
//! JetStream cluster, PostgreSQL, a receiver with a NATS sink, `owlet-soc
//! writer`, a real agent whose TCP check goes down, and `owlet-soc portal
//! --config portal.toml` (`[postgres]`: the scaled-out portal). A customer
//! of the agent's tenant, added with `owlet-soc user add --config
//! portal.toml`, logs in over HTTPS (password changed at the first login)
//! and sees the agent's `check_down` alert, its detail, the sensor and
//! its export; another tenant's pages (its alert stored by the same
//! writer) are 404 and carry nothing of it.
//!
//! Also: `owlet-soc portal --config soc.toml` with a NATS sink names
//! portal.toml instead of starting, and a portal.toml whose PostgreSQL
//! cannot be reached stops at start naming it.
//!
//! Seen failing (each break made by hand, then undone): the guard's scope
//! check weakened to `!known && !in_scope` ("/t/globex" answered 200);
//! the portal's PostgreSQL connection with `tenant_globex` first on its
//! `search_path` (acme's alerts page had no `db-port`: it showed globex's).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;

use owlet_tests::*;

/// One HTTPS request to the portal (trusting the SOC's CA): status and
/// the whole response (headers and body).
fn https(ca: &Path, port: u16, request: &str) -> (u16, String) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in owlet_tls::load_certs(ca).unwrap() {
        roots.add(cert).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

struct Browser<'a> {
    ca: &'a Path,
    port: u16,
    cookies: Vec<String>,
}

impl Browser<'_> {
    fn keep_cookies(&mut self, response: &str) {
        for line in response.lines().take_while(|l| !l.is_empty()) {
            if let Some(v) = line
                .strip_prefix("set-cookie: ")
                .or_else(|| line.strip_prefix("Set-Cookie: "))
            {
                let pair = v.split(';').next().unwrap_or("").to_string();
                let name = pair.split('=').next().unwrap_or("").to_string();
                self.cookies.retain(|c| !c.starts_with(&format!("{name}=")));
                if !pair.ends_with('=') {
                    self.cookies.push(pair);
                }
            }
        }
    }

    fn get(&mut self, path: &str) -> (u16, String) {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nCookie: {}\r\nConnection: close\r\n\r\n",
            self.cookies.join("; ")
        );
        let (status, response) = https(self.ca, self.port, &request);
        self.keep_cookies(&response);
        (status, response)
    }

    fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let body: String = form_urlencoded(form);
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nCookie: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.cookies.join("; "),
            body.len()
        );
        let (status, response) = https(self.ca, self.port, &request);
        self.keep_cookies(&response);
        (status, response)
    }
}

fn form_urlencoded(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(k, v)| {
            let enc: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={enc}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn csrf_in(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF token in\n{page}"));
    page[at + 19..at + 19 + 64].to_string()
}

#[test]
fn an_agents_alert_reaches_the_scaled_out_portal_and_stays_in_its_tenant() {
    let scale = Scale::start(&[]);
    let mut receiver = serve(&scale.soc.config, "receiver", &scale.dir);
    let _writer = scale.writer("writer", &[]);

    // The portal with soc.toml (a NATS sink) names portal.toml.
    let out = output(
        owlet_soc()
            .args(["portal", "--config"])
            .arg(&scale.soc.config),
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        said.contains("portal.toml") && said.contains("[postgres]"),
        "{said}"
    );

    // An agent with a TCP check on a port that then closes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let db_port = listener.local_addr().unwrap().port();
    let mut agent = scale.agent("acme", "fw1", &scale.soc.address());
    let mut check = toml::Table::new();
    check.insert("id".into(), "db-port".into());
    check.insert("type".into(), "tcp".into());
    check.insert("target".into(), format!("127.0.0.1:{db_port}").into());
    check.insert("interval".into(), "1s".into());
    check.insert("timeout".into(), "1s".into());
    agent.set("probe", "check", vec![toml::Value::Table(check)]);
    agent.start();
    let up_results = || {
        scale.query_strings(
            "SELECT COALESCE(state, '') FROM tenant_acme.events WHERE kind = 'check_result'",
        )
    };
    wait_until("the check's results in PostgreSQL", DEADLINE, || {
        agent.assert_running();
        up_results().iter().any(|s| s == "up")
    });
    drop(listener);
    wait_until("the check_down alert in PostgreSQL", DEADLINE, || {
        !scale
            .query_strings(
                "SELECT alert_name FROM tenant_acme.events WHERE kind = 'alert' AND alert_name = 'check_down'",
            )
            .is_empty()
    });

    // Another tenant's alert, published as a receiver publishes it.
    let globex_alert = owlet_proto::v1::Event {
        seq: 1,
        time: Some(owlet_proto::timestamp(std::time::SystemTime::now())),
        kind: Some(owlet_proto::v1::event::Kind::Alert(
            owlet_proto::v1::Alert {
                source: "check".into(),
                subject: "GLOBEX-SECRET-port".into(),
                name: "check_down".into(),
                severity: 3,
                new_state: 3,
                message: "GLOBEX-SECRET down".into(),
                ..Default::default()
            },
        )),
    };
    scale.rt.block_on(async {
        let bus = owlet_soc_bus::Bus::connect(&owlet_soc_bus::BusConfig::new(scale.cluster.urls()))
            .await
            .unwrap();
        let mut log = bus
            .agent("globex", "g1", owlet_soc_bus::Retention::default())
            .await
            .unwrap();
        log.append(&[(1, prost::Message::encode_to_vec(&globex_alert).into())])
            .await
            .unwrap();
    });
    wait_until("globex's alert in PostgreSQL", DEADLINE, || {
        scale.stored("globex", "g1") == [1]
    });

    // portal.toml and its first user.
    let port = free_port();
    let config = scale.dir.join("portal.toml");
    std::fs::write(
        &config,
        format!(
            "[postgres]\nconnect = \"{}\"\n\n[portal]\nlisten = \"127.0.0.1:{port}\"\n\
             cert = \"{}\"\nkey = \"{}\"\n\n[paths]\nstate_dir = \"portal-state\"\n\n\
             [tenants.acme]\ntime_zone = \"Asia/Tokyo\"\n\n[tenants.globex]\ntime_zone = \"UTC\"\n",
            scale.pg.conninfo("owlet"),
            scale.soc.ca_dir.join(owlet_ca::SOC_CERT_FILE).display(),
            scale.soc.ca_dir.join(owlet_ca::SOC_KEY_FILE).display(),
        ),
    )
    .unwrap();
    // A PostgreSQL it cannot reach: it does not start, and says which.
    let unreachable = scale.dir.join("portal-unreachable.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let closed = free_port();
    std::fs::write(
        &unreachable,
        text.replace(
            &scale.pg.conninfo("owlet"),
            &format!("host=127.0.0.1 port={closed} user=owlet dbname=postgres"),
        ),
    )
    .unwrap();
    let out = output(owlet_soc().args(["portal", "--config"]).arg(&unreachable));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("cannot connect to PostgreSQL") && said.contains(&format!("port={closed}")),
        "{said}"
    );

    let added = run_ok(
        owlet_soc()
            .args(["user", "add", "--config"])
            .arg(&config)
            .args(["--name", "acme-viewer", "--role", "customer-viewer"])
            .args(["--tenant", "acme"]),
    );
    let password = added
        .lines()
        .find_map(|l| l.strip_prefix("One-time password:"))
        .unwrap()
        .trim()
        .to_string();
    assert!(scale.dir.join("portal-state/portal.db").is_file());
    let mut cmd = owlet_soc();
    cmd.args(["portal", "--config"]).arg(&config);
    let mut portal = Proc::spawn("portal", cmd, &scale.dir);
    wait_until("the portal to listen", DEADLINE, || {
        if let Some(status) = portal.try_wait() {
            panic!("owlet-soc portal exited with {status}:\n{}", portal.log());
        }
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });

    // Log in over HTTPS, change the one-time password.
    let ca = scale.soc.ca_dir.join(owlet_ca::CA_CERT_FILE);
    let mut b = Browser {
        ca: &ca,
        port,
        cookies: Vec::new(),
    };
    let (status, page) = b.get("/login");
    assert_eq!(status, 200, "{page}");
    let csrf = csrf_in(&page);
    let (status, page) = b.post(
        "/login",
        &[
            ("csrf", &csrf),
            ("name", "acme-viewer"),
            ("password", &password),
        ],
    );
    assert_eq!(status, 303, "{page}");
    let (_, page) = b.get("/account");
    let csrf = csrf_in(&page);
    let new = "a new long enough password";
    let (status, page) = b.post(
        "/account/password",
        &[
            ("csrf", &csrf),
            ("current", &password),
            ("new", new),
            ("repeat", new),
        ],
    );
    assert!(status == 303 || status == 200, "{status}\n{page}");

    // The agent's alert, its detail, the sensor.
    let (status, page) = b.get("/t/acme/alerts");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("check_down") && page.contains("db-port"),
        "{page}"
    );
    let id = scale.query_strings(
        "SELECT id::text FROM tenant_acme.events WHERE kind = 'alert' AND alert_name = 'check_down' ORDER BY id LIMIT 1",
    )[0]
    .clone();
    let (status, page) = b.get(&format!("/t/acme/alerts/{id}"));
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("db-port"), "{page}");
    let (status, page) = b.get("/t/acme");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("fw1"), "{page}");

    // Another tenant, stored and configured: not this user's.
    let globex_id = scale
        .query_strings("SELECT id::text FROM tenant_globex.events WHERE kind = 'alert' LIMIT 1")[0]
        .clone();
    for path in [
        "/t/globex".to_string(),
        "/t/globex/alerts".into(),
        format!("/t/globex/alerts/{globex_id}"),
        "/t/globex/export".into(),
        "/t/globex/series/availability".into(),
    ] {
        let (status, page) = b.get(&path);
        assert_eq!(status, 404, "{path}\n{page}");
        assert!(!page.contains("GLOBEX-SECRET"), "{path}\n{page}");
    }
    let (_, export) = b.get("/t/acme/export");
    assert!(
        export.contains("check_down") && !export.contains("GLOBEX-SECRET"),
        "{export}"
    );

    let status = portal.terminate(DEADLINE);
    assert!(status.success(), "SIGTERM: {status}\n{}", portal.log());
    agent.stop();
    receiver.terminate(DEADLINE);
}
