//! Test helpers: a store filled directly, real peers (aiosmtpd, snmptrapd)
//! started on loopback, and waits with generous bounds. A missing peer is a
//! failure with the install command, never a skip.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use owlet_proto::v1::{Alert, Event, FileChange, Severity, State, event::Kind};
use owlet_soc_notify::{HistoryQuery, HistoryRow, NotifyConfig};
use owlet_soc_store::{Batch, Store};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

pub const PYTHON: &str = "/usr/bin/python3";

/// Fails with how to install `package` when `path` is missing.
pub fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: this test needs a real peer. Install it with \
         `apt-get install -y {package}` (dev/packages.txt lists it)"
    );
}

pub fn require_aiosmtpd() {
    require(PYTHON, "python3");
    let ok = std::process::Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python3-aiosmtpd is missing: this test needs a real SMTP server. \
         Install it with `apt-get install -y python3-aiosmtpd` (dev/packages.txt lists it)"
    );
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn alert(seq: u64, name: &str, severity: Severity, subject: &str) -> Event {
    let mut a = Alert {
        source: "check".into(),
        subject: subject.into(),
        name: name.into(),
        severity: severity as i32,
        old_state: State::Up as i32,
        new_state: State::Down as i32,
        message: format!("{subject}: connection refused"),
        ..Default::default()
    };
    a.labels
        .insert("target".into(), format!("https://{subject}.example/"));
    Event {
        seq,
        time: Some(owlet_proto::timestamp(SystemTime::now())),
        kind: Some(Kind::Alert(a)),
    }
}

pub fn file_change(seq: u64, path: &str, severity: Severity) -> Event {
    Event {
        seq,
        time: Some(owlet_proto::timestamp(SystemTime::now())),
        kind: Some(Kind::FileChange(FileChange {
            path: path.into(),
            change: owlet_proto::v1::FileChangeKind::Modified as i32,
            old_sha256: "a".repeat(64),
            new_sha256: "b".repeat(64),
            changed_by: "uid=0(root) pid=4242 comm=vim".into(),
            severity: severity as i32,
            ..Default::default()
        })),
    }
}

/// Appends `events` as `agent` of `tenant` (as the receiver would).
pub fn store_events(root: &Path, tenant: &str, agent: &str, events: &[Event]) {
    let store = Store::open(root).unwrap();
    let mut log = store.writer(tenant).unwrap();
    log.append(
        &[Batch {
            agent,
            zone: "Asia/Tokyo",
            events,
            sequenced: true,
        }],
        SystemTime::now(),
    )
    .unwrap();
}

/// Polls `f` every 50 ms until it gives a value; panics after `limit`.
pub async fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn history(root: &Path, tenant: &str) -> Vec<HistoryRow> {
    owlet_soc_notify::history(root, tenant, &HistoryQuery::default()).unwrap()
}

/// A running notifier.
pub struct Notifier {
    pub token: CancellationToken,
    pub task: tokio::task::JoinHandle<owlet_soc_notify::Result<()>>,
}

impl Notifier {
    pub fn start(root: &Path, toml: &str) -> Self {
        let config = NotifyConfig::from_toml(toml).unwrap();
        let token = CancellationToken::new();
        let task = tokio::spawn(owlet_soc_notify::run(
            root.to_path_buf(),
            config,
            token.clone(),
        ));
        Notifier { token, task }
    }

    pub async fn stop(self) {
        self.token.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// A self-signed certificate for `localhost` / 127.0.0.1: (cert, key) paths.
pub fn cert(dir: &Path) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// A secret file, mode 0600 (the notifier refuses one others may read).
pub fn secret(dir: &Path, name: &str, value: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// aiosmtpd with STARTTLS required and AUTH (user `owlet`, password in
/// `password_file`), writing each mail to `out` as JSON.
pub struct SmtpServer {
    pub port: u16,
    pub out: PathBuf,
    pub cert: PathBuf,
    pub password_file: PathBuf,
    child: Child,
}

pub const SMTP_USER: &str = "owlet";
pub const SMTP_PASSWORD: &str = "s3cret-mail-pw";

impl SmtpServer {
    pub async fn start(dir: &Path, port: u16) -> Self {
        require_aiosmtpd();
        let out = dir.join("mail");
        std::fs::create_dir_all(&out).unwrap();
        let (cert, key) = if dir.join("cert.pem").exists() {
            (dir.join("cert.pem"), dir.join("key.pem"))
        } else {
            cert(dir)
        };
        let password_file = secret(dir, "smtp-password", SMTP_PASSWORD);
        // Through the workspace root: tests/ includes this module too.
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../soc-notify/tests/smtp_server.py");
        let mut child = Command::new(PYTHON)
            .args(["-W", "ignore"])
            .arg(&script)
            .arg(port.to_string())
            .arg(&cert)
            .arg(&key)
            .arg(&out)
            .arg(SMTP_USER)
            .arg(SMTP_PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("aiosmtpd did not start within 30 s")
            .unwrap();
        assert_eq!(ready.as_deref(), Some("ready"), "aiosmtpd failed to start");
        SmtpServer {
            port,
            out,
            cert,
            password_file,
            child,
        }
    }

    /// The mails received so far, oldest first.
    pub fn mails(&self) -> Vec<serde_json::Value> {
        mails(&self.out)
    }

    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let _ = self.child.kill().await;
    }

    /// A `[[notify.channel]]` for this server.
    pub fn channel(&self, name: &str, tenant: &str, to: &str) -> String {
        smtp_channel(name, tenant, to, self.port, &self.cert, &self.password_file)
    }
}

pub fn mails(out: &Path) -> Vec<serde_json::Value> {
    let mut names: Vec<_> = std::fs::read_dir(out)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                // `.NAME.json` is a mail the server is still writing
                // (smtp_server.py renames it into place when complete).
                .filter(|p| {
                    !p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .map(|p| {
            let mut v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            // Unfold folded header lines (RFC 5322 2.2.3) so tests can match
            // whole headers.
            let data = v["data"]
                .as_str()
                .unwrap()
                .replace("\r\n", "\n")
                .replace("\n ", " ")
                .replace("\n\t", " ");
            v["data"] = serde_json::Value::String(data);
            v
        })
        .collect()
}

pub fn smtp_channel(
    name: &str,
    tenant: &str,
    to: &str,
    port: u16,
    cert: &Path,
    password_file: &Path,
) -> String {
    format!(
        r#"
[[notify.channel]]
name = "{name}"
tenants = ["{tenant}"]
type = "smtp"
server = "localhost"
port = {port}
user = "{SMTP_USER}"
password_file = "{}"
from = "owlet SOC <soc@owlet.test>"
to = ["{to}"]
ca_file = "{}"
timeout = "5s"
"#,
        password_file.display(),
        cert.display()
    )
}

/// A `[[notify.rule]]` of `tenant` through `channel`: warning and up,
/// grouped for 1 s.
pub fn rule(name: &str, tenant: &str, channel: &str, extra: &str) -> String {
    format!(
        r#"
[[notify.rule]]
name = "{name}"
tenant = "{tenant}"
min_severity = "warning"
group_window = "1s"
channels = ["{channel}"]
{extra}
"#
    )
}

/// `[notify]` polling every `poll`, quick retries, acme in Asia/Tokyo.
pub fn head(poll: &str) -> String {
    format!(
        r#"
[notify]
poll_interval = "{poll}"
[notify.retry]
initial = "200ms"
max = "1s"
give_up_after = "5m"
[[notify.tenant]]
name = "acme"
zone = "Asia/Tokyo"
"#
    )
}
