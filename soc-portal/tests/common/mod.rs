//! A portal over a real store: two tenants' logs (acme, beta) with
//! planted events, hostile ones among them, a `soc.db` with their sensors,
//! and a user of every role. Requests go through the real router (guard,
//! headers, handlers) in process.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, header};
use http_body_util::BodyExt;
use owlet_proto::v1::event::Kind;
use owlet_proto::v1::{Alert, CheckResult, Event, FileChange, FlowRecord};
use owlet_soc_portal::i18n::Lang;
use owlet_soc_portal::session::{self, Stage};
use owlet_soc_portal::users::{self, NewUser};
use owlet_soc_portal::web::AppState;
use owlet_soc_portal::{Db, Role, Settings};
use owlet_soc_store::{Batch, Store};
use tower::ServiceExt;

pub const XSS_PATH: &str = "/etc/<script>alert(1)</script>";
pub const XSS_DIFF: &str = "<img src=x onerror=alert(2)>";
pub const XSS_SNI: &str = "<svg onload=alert(3)>.example";
pub const XSS_DNS: &str = "\"><script>alert(4)</script>.evil";
/// Text only beta's events carry: must never appear in a refusal or in
/// acme's pages.
pub const BETA_MARK: &str = "BETA-SECRET";
/// A customer-viewer of acme that tenant routes act on (`{name}`).
pub const ACME_VICTIM: &str = "acme-victim";
/// A kept report's JSON both tenants have (the access test's `{file}`).
pub const KEPT_FILE: &str = "2026-11.json";

/// Writes `files` (name, bytes) into `tenant`'s kept reports.
pub fn keep_reports(store: &Store, tenant: &str, files: &[(&str, &[u8])]) {
    let dir = owlet_soc_report::schedule::reports_dir(store, tenant).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// The settings of a test portal in `root` reading `data` (no HTTPS:
/// requests go through the router in process).
pub fn settings(root: &Path, data: owlet_soc_portal::DataSettings) -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert: root.join("none.pem"),
        key: root.join("none.key"),
        session_idle: Duration::from_secs(1800),
        lockout_after: 5,
        lockout_for: Duration::from_secs(900),
        root: root.to_path_buf(),
        contacts_root: root.to_path_buf(),
        data,
        tenant_zones: BTreeMap::new(),
        silent_after: Duration::from_secs(90),
        notify: None,
        ca_dir: None,
        soc_address: String::new(),
        oidc: None,
    }
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub state: AppState,
    pub router: Router,
    pub store: Store,
    pub acme_alert: i64,
    pub acme_change: i64,
    pub beta_alert: i64,
    pub beta_change: i64,
    /// Ids only beta has (beta's log is longer).
    pub beta_only_id: i64,
}

pub fn event(seq: u64, kind: Kind) -> Event {
    Event {
        seq,
        time: Some(owlet_proto::timestamp(SystemTime::now())),
        kind: Some(kind),
    }
}

pub fn check(id: &str, target: &str, state: i32) -> Kind {
    Kind::CheckResult(CheckResult {
        check_id: id.into(),
        check_type: 2,
        target: target.into(),
        result: state,
        state,
        message: format!("{id} is {state}"),
        ..Default::default()
    })
}

pub fn alert(subject: &str, message: &str, new_state: i32) -> Kind {
    Kind::Alert(Alert {
        source: "check".into(),
        subject: subject.into(),
        name: if new_state == 1 {
            "check_up"
        } else {
            "check_down"
        }
        .into(),
        severity: if new_state == 1 { 1 } else { 3 },
        old_state: if new_state == 1 { 3 } else { 1 },
        new_state,
        message: message.into(),
        ..Default::default()
    })
}

pub fn file_change(path: &str, diff: &str, while_stopped: bool) -> Kind {
    Kind::FileChange(FileChange {
        path: path.into(),
        change: 2,
        old_sha256: "aa".repeat(32),
        new_sha256: "bb".repeat(32),
        diff: diff.into(),
        changed_by: "uid=0(root) comm=<b>vim</b>".into(),
        severity: 3,
        while_agent_stopped: while_stopped,
        ..Default::default()
    })
}

/// Appends `kinds` as agent `agent`'s next events; returns their ids.
pub fn append(store: &Store, tenant: &str, agent: &str, kinds: Vec<Kind>) -> Vec<i64> {
    let mut log = store.writer(tenant).unwrap();
    let first = log.acked_seq(agent) + 1;
    let events: Vec<Event> = kinds
        .into_iter()
        .enumerate()
        .map(|(i, k)| event(first + i as u64, k))
        .collect();
    let before = log.last_id();
    log.append(
        &[Batch {
            agent,
            zone: "Asia/Tokyo",
            events: &events,
            sequenced: true,
        }],
        SystemTime::now(),
    )
    .unwrap();
    (before + 1..=log.last_id()).collect()
}

fn control_db(path: &Path) {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(
        "CREATE TABLE agents (
            id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, agent_id TEXT NOT NULL,
            version TEXT NOT NULL DEFAULT '', hw_profile TEXT NOT NULL DEFAULT '',
            hostname TEXT NOT NULL DEFAULT '', time_zone TEXT NOT NULL DEFAULT '',
            os TEXT NOT NULL DEFAULT '', peer TEXT NOT NULL DEFAULT '',
            first_seen_us INTEGER NOT NULL, last_seen_us INTEGER NOT NULL,
            last_heartbeat_us INTEGER, clock_offset_ms INTEGER NOT NULL DEFAULT 0,
            connected INTEGER NOT NULL DEFAULT 0, silent INTEGER NOT NULL DEFAULT 0,
            acked_seq INTEGER NOT NULL DEFAULT 0, stopping INTEGER NOT NULL DEFAULT 0,
            cert_not_after_us INTEGER, UNIQUE (tenant, agent_id));",
    )
    .unwrap();
    let now = owlet_soc_portal::db::now_us();
    db.execute(
        "INSERT INTO agents (tenant, agent_id, version, hw_profile, hostname, first_seen_us, last_seen_us, connected, cert_not_after_us)
         VALUES ('acme', 'fw-1', '0.1.0', 'small', '<i>fw-host</i>', ?1, ?1, 1, ?2),
                ('beta', 'BETA-SECRET-sensor', '0.1.0', 'small', 'BETA-SECRET-host', ?1, ?1, 1, NULL)",
        [now, now + 300 * 86_400_000_000],
    )
    .unwrap();
}

impl Fixture {
    pub fn new() -> Fixture {
        Self::with_settings(|_| {})
    }

    /// [`Fixture::new`] with its settings changed by `change` first.
    pub fn with_settings(change: impl FnOnce(&mut Settings)) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let store = Store::open(&root).unwrap();
        // acme: a check down with its alert, hostile data.
        append(
            &store,
            "acme",
            "fw-1",
            vec![
                check("web", "https://shop.example/<b>x</b>", 3),
                check("dns", XSS_SNI, 1),
            ],
        );
        let a = append(
            &store,
            "acme",
            "fw-1",
            vec![
                alert(
                    "web",
                    &format!("web down; saw SNI {XSS_SNI} and DNS {XSS_DNS}"),
                    3,
                ),
                file_change(
                    XSS_PATH,
                    &format!("--- a\n+++ b\n@@ -1 +1 @@\n-old\n+{XSS_DIFF}"),
                    true,
                ),
            ],
        );
        append(
            &store,
            "acme",
            "fw-1",
            vec![Kind::FlowRecord(FlowRecord {
                src_addr: "10.0.0.5".into(),
                dst_addr: "203.0.113.9".into(),
                dns_query: XSS_DNS.into(),
                tls_sni: XSS_SNI.into(),
                ..Default::default()
            })],
        );
        // beta: longer, with markers.
        let mut beta_kinds = vec![check("BETA-SECRET-check", "beta.example", 3)];
        beta_kinds.extend((0..20).map(|i| check(&format!("pad{i}"), "beta.example", 1)));
        beta_kinds.push(alert("BETA-SECRET-check", "BETA-SECRET alert", 3));
        beta_kinds.push(file_change(
            "/etc/BETA-SECRET.conf",
            "+BETA-SECRET line",
            false,
        ));
        let b = append(&store, "beta", "BETA-SECRET-sensor", beta_kinds);
        keep_reports(&store, "acme", &[(KEPT_FILE, b"{\"tenant\":\"acme\"}")]);
        keep_reports(
            &store,
            "beta",
            &[
                (KEPT_FILE, b"{\"tenant\":\"BETA-SECRET\"}"),
                ("2026-11.en.html", b"<html><body>BETA-SECRET</body></html>"),
            ],
        );
        control_db(&root.join("soc.db"));
        owlet_ca::init(&root.join("ca"), &["soc.example".to_string()], 3650).unwrap();
        let mut settings = settings(
            &root,
            owlet_soc_portal::DataSettings::Embedded {
                control_db: root.join("soc.db"),
            },
        );
        settings.tenant_zones = BTreeMap::from([("acme".to_string(), "Asia/Tokyo".to_string())]);
        settings.ca_dir = Some(root.join("ca"));
        settings.soc_address = "127.0.0.1:4443".to_string();
        change(&mut settings);
        let db = Db::open(&settings.portal_db()).unwrap();
        let state = AppState::new(settings, db);
        let router = owlet_soc_portal::web::routes::router(state.clone());
        let fx = Fixture {
            dir,
            state,
            router,
            store,
            acme_alert: a[0],
            acme_change: a[1],
            beta_alert: b[b.len() - 2],
            beta_change: b[b.len() - 1],
            beta_only_id: b[b.len() - 1],
        };
        for role in Role::ALL {
            fx.user(role.name(), role, "en");
        }
        fx.user("victim", Role::CustomerViewer, "en");
        fx.user(ACME_VICTIM, Role::CustomerViewer, "en");
        fx.contact("beta", "BETA-SECRET contact", "beta-secret@beta.example");
        fx
    }

    /// A notification contact of `tenant` (enabled, any severity); its id.
    pub fn contact(&self, tenant: &str, name: &str, email: &str) -> u64 {
        use owlet_soc_notify::contacts::{self, Contact, ContactsError};
        contacts::update(&self.state.0.settings.root, tenant, |list| {
            let id = contacts::next_id(list);
            list.push(Contact {
                id,
                name: name.into(),
                email: email.into(),
                min_severity: None,
                enabled: true,
            });
            Ok::<_, ContactsError>(id)
        })
        .unwrap()
    }

    /// Adds a user of `role` (acme's, for scoped roles) with a chosen password.
    pub fn user(&self, name: &str, role: Role, lang: &str) -> String {
        let c = self.state.0.db.lock();
        let tenants = match role {
            Role::MsspAdmin => vec![],
            _ if name == "victim" => vec!["beta".to_string()],
            _ => vec!["acme".to_string()],
        };
        users::add(
            &c,
            &NewUser {
                name: name.into(),
                role,
                tenants,
                lang: Lang::parse(lang),
                time_zone: "Asia/Tokyo".into(),
                totp: false,
            },
        )
        .unwrap();
        let id = users::find(&c, name).unwrap().unwrap().id;
        users::set_password(&c, id, "a long enough password").unwrap();
        users::secrets(&c, id).unwrap().1
    }

    /// A fresh full session of `name`: (cookie header value, CSRF token).
    pub fn login(&self, name: &str) -> (String, String) {
        let c = self.state.0.db.lock();
        let id = users::find(&c, name).unwrap().unwrap().id;
        let sid = session::create(&c, id, Stage::Full).unwrap();
        let csrf = session::lookup(&c, &sid, Duration::from_secs(60))
            .unwrap()
            .unwrap()
            .csrf;
        (format!("{}={sid}", session::COOKIE), csrf)
    }

    pub async fn send(&self, request: Request<Body>) -> (u16, Response<Body>) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        (response.status().as_u16(), response)
    }

    pub async fn get(&self, path: &str, cookie: Option<&str>) -> (u16, String, Response<()>) {
        let mut b = Request::get(path);
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        let (status, response) = self.send(b.body(Body::empty()).unwrap()).await;
        let (parts, body) = response.into_parts();
        let text = body_text(body).await;
        (status, text, Response::from_parts(parts, ()))
    }

    pub async fn post(
        &self,
        path: &str,
        cookie: Option<&str>,
        form: &str,
    ) -> (u16, String, Response<()>) {
        let mut b =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        let (status, response) = self
            .send(b.body(Body::from(form.to_string())).unwrap())
            .await;
        let (parts, body) = response.into_parts();
        let text = body_text(body).await;
        (status, text, Response::from_parts(parts, ()))
    }
}

/// The CSRF token a page's forms carry.
pub fn csrf_in(body: &str) -> String {
    regex::Regex::new(r#"name="csrf" value="([0-9a-f]{64})""#)
        .unwrap()
        .captures(body)
        .unwrap_or_else(|| panic!("no CSRF token in the page\n{body}"))[1]
        .to_string()
}

/// Every file below `dir` (recursively).
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

pub async fn body_text(body: Body) -> String {
    String::from_utf8_lossy(&body.collect().await.unwrap().to_bytes()).into_owned()
}

/// The `__Host-owlet_session` value a response sets, if any.
pub fn set_session(response: &Response<()>) -> Option<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{}=", session::COOKIE)))
        .map(|v| v.split(';').next().unwrap_or("").to_string())
        .filter(|v| !v.is_empty())
}

pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// No markup from sensor data: every page that shows it has only the
/// portal's own script tags, no event-handler attributes, no inline style.
pub fn assert_inert(page: &str, body: &str) {
    let scripts = body.matches("<script").count();
    let own = body.matches("<script src=\"/assets/").count();
    assert_eq!(
        scripts, own,
        "{page}: a script tag that is not ours\n{body}"
    );
    let handler = regex::Regex::new(r#"<[^>]*\son[a-z]+\s*="#).unwrap();
    assert!(
        !handler.is_match(body),
        "{page}: an event handler attribute"
    );
    assert!(!body.contains("style="), "{page}: inline style");
    assert!(!body.contains("<img"), "{page}: an image from data");
    assert!(!body.contains("<svg"), "{page}: svg from data");
    assert!(!body.contains("<b>"), "{page}: markup from data");
}

/// `(action, detail)` of the audit entries of `tenant` (at most 100).
pub fn audit_of(fx: &Fixture, tenant: &str) -> Vec<(String, String)> {
    owlet_soc_portal::audit::list(&fx.state.0.db.lock(), Some(tenant), 100)
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.detail))
        .collect()
}
