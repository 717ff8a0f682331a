//! Shared helpers for the real-peer tests: root / binary requirements, network
//! namespaces with veth pairs, nginx, snmpd, a test CA. Every peer is owned by
//! a guard that cleans up on drop.
#![allow(dead_code)]

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use owlet_probe::{CheckConfig, CheckSpec, CheckTypeName};
use owlet_proto::v1::{CheckResult, FailureClass, State};

/// Fails (not skips) when not root: CI runs as root.
pub fn require_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        .unwrap();
    assert_eq!(
        uid, "0",
        "this test needs root (raw sockets, network namespaces); run the suite as root as CI does"
    );
}

/// Fails with an install hint when a binary is missing.
pub fn require_bin(bin: &str, package: &str) -> PathBuf {
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/lib/nagios/plugins",
    ] {
        let p = Path::new(dir).join(bin);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "`{bin}` not found: install it with `apt-get install -y {package}` (CI does this via dev/packages.txt)"
    );
}

pub fn sh(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn sh_quiet(cmd: &str) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Two network namespaces the test creates, joined by a veth pair: the
/// client namespace (`client`, address `base.1/24` on `client_if`), where
/// checks run via [`Netns::run_check`], and the peer namespace (`name`,
/// address `base.2/24` on `ns_if`), which plays the target and the routers.
/// Nothing is added to the root namespace: its addresses and routes stay
/// untouched, whatever ranges the machine's own uplink uses.
pub struct Netns {
    /// The peer namespace.
    pub name: String,
    /// The client namespace, where checks run.
    pub client: String,
    pub client_if: String,
    pub ns_if: String,
    /// e.g. "100.71.23"
    pub base: String,
}

impl Netns {
    pub fn new() -> Netns {
        require_root();
        require_bin("ip", "iproute2");
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let name = format!("owlet-probe-{pid}-{n}");
        let client = format!("owlet-probec-{pid}-{n}");
        let client_if = format!("owc{}x{n}", pid % 100_000);
        let ns_if = format!("own{}x{n}", pid % 100_000);
        let base = format!("100.{}.{}", 64 + (n % 60), pid % 250);
        let root_before = root_namespace_config();
        for ns in [&name, &client] {
            sh_quiet(&format!("ip netns del {ns}"));
            sh(&format!("ip netns add {ns}"));
        }
        let ns = Netns {
            name: name.clone(),
            client: client.clone(),
            client_if: client_if.clone(),
            ns_if: ns_if.clone(),
            base: base.clone(),
        };
        sh(&format!(
            "ip -n {client} link add {client_if} type veth peer name {ns_if} netns {name}"
        ));
        sh(&format!(
            "ip -n {client} addr add {base}.1/24 dev {client_if} && ip -n {client} link set {client_if} up && ip -n {client} link set lo up"
        ));
        sh(&format!(
            "ip -n {name} addr add {base}.2/24 dev {ns_if} && ip -n {name} link set {ns_if} up && ip -n {name} link set lo up"
        ));
        assert_eq!(
            root_before,
            root_namespace_config(),
            "setting up the test namespaces changed the root namespace's addresses or routes"
        );
        // Let the veth pair come up (carrier) before tests send packets.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let out = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &client,
                    "ping",
                    "-c1",
                    "-W1",
                    &format!("{base}.2"),
                ])
                .output();
            if matches!(out, Ok(o) if o.status.success()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        ns
    }

    pub fn peer(&self) -> String {
        format!("{}.2", self.base)
    }

    /// Runs `cmd` in the peer namespace.
    pub fn exec(&self, cmd: &str) {
        sh(&format!("ip netns exec {} sh -c '{}'", self.name, cmd));
    }

    /// Runs `cmd` in the client namespace.
    pub fn exec_client(&self, cmd: &str) {
        sh(&format!("ip netns exec {} sh -c '{}'", self.client, cmd));
    }

    /// Runs one check (a `[[probe.check]]` table in TOML) from inside the
    /// client namespace and returns its result. The check runs in a fresh
    /// process of this test binary (its `check_in_namespace` helper test,
    /// see [`check_in_namespace_helper`]), started with `ip netns exec`, so
    /// every socket it opens, the shared ICMP socket included, lives there.
    pub fn run_check(&self, check_toml: &str) -> CheckResult {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.client])
            .arg(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "check_in_namespace", "--nocapture"])
            .env(CHECK_ENV, check_toml)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "check in namespace {} failed: {stdout}\n{}",
            self.client,
            String::from_utf8_lossy(&out.stderr)
        );
        let json = stdout
            .lines()
            .find_map(|l| l.strip_prefix(RESULT_PREFIX))
            .unwrap_or_else(|| panic!("no result line in: {stdout}"));
        serde_json::from_str(json).unwrap()
    }
}

/// The root namespace's IPv4 addresses and routes (all tables), which test
/// namespaces must never change.
fn root_namespace_config() -> String {
    let out = Command::new("sh")
        .args(["-c", "ip -4 -o addr show; ip -4 route show table all"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const CHECK_ENV: &str = "OWLET_TEST_CHECK_TOML";
const RESULT_PREFIX: &str = "OWLET-TEST-RESULT ";

/// The body of each test binary's `check_in_namespace` helper (an ignored
/// test): runs the check in `OWLET_TEST_CHECK_TOML` and prints its result as
/// one JSON line. Does nothing when the variable is unset (a plain
/// `--include-ignored` run).
pub fn check_in_namespace_helper() {
    let Ok(toml_text) = std::env::var(CHECK_ENV) else {
        return;
    };
    let c: CheckConfig = toml::from_str(&toml_text).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(owlet_probe::run_check(&spec(&c)));
    println!("{RESULT_PREFIX}{}", serde_json::to_string(&r).unwrap());
}

impl Drop for Netns {
    fn drop(&mut self) {
        sh_quiet(&format!("ip netns del {}", self.name));
        sh_quiet(&format!("ip netns del {}", self.client));
    }
}

/// A child process killed on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_tcp(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listening on 127.0.0.1:{port} after 10s");
}

/// A test CA with helpers to issue server certificates.
pub struct TestCa {
    pub issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "owlet probe test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// (cert PEM, key PEM) for `names`, valid in the given window.
    pub fn issue(
        &self,
        names: &[&str],
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.not_before = not_before;
        params.not_after = not_after;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn issue_valid(&self, names: &[&str], days: i64) -> (String, String) {
        let now = time::OffsetDateTime::now_utc();
        self.issue(
            names,
            now - time::Duration::days(1),
            now + time::Duration::days(days),
        )
    }
}

pub fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// Builds a spec from a config, panicking with the validation errors.
pub fn spec(c: &CheckConfig) -> CheckSpec {
    match CheckSpec::from_config(c) {
        Ok(s) => s,
        Err(e) => panic!("invalid test check: {e:?}"),
    }
}

pub fn check(t: CheckTypeName, target: &str) -> CheckConfig {
    let mut c = CheckConfig::new("t", t, target);
    c.timeout = Duration::from_secs(3);
    c.interval = Duration::from_secs(10);
    c
}

pub fn state(r: &CheckResult) -> State {
    State::try_from(r.result).unwrap()
}

pub fn failure(r: &CheckResult) -> FailureClass {
    FailureClass::try_from(r.failure).unwrap()
}

pub fn assert_result(r: &CheckResult, st: State, f: FailureClass) {
    assert_eq!((state(r), failure(r)), (st, f), "unexpected result: {r:#?}");
}

/// nginx on loopback with its own config in a temp dir: plain HTTP on
/// `http`, HTTPS + HTTP/2 with a test-CA certificate for localhost on
/// `https`, HTTPS with an expired certificate on `expired`.
pub struct Nginx {
    pub dir: tempfile::TempDir,
    pub http: u16,
    pub https: u16,
    pub expired: u16,
    pub ca_file: PathBuf,
    _child: ChildGuard,
}

impl Nginx {
    pub fn start() -> Nginx {
        let nginx = require_bin("nginx", "nginx-light");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("www")).unwrap();
        std::fs::create_dir_all(d.join("tmp")).unwrap();
        write(
            &d.join("www"),
            "index.html",
            b"<html><body>owlet says hello, build 4711</body></html>\n",
        );
        write(&d.join("www"), "big.bin", &vec![b'x'; 5 * 1024 * 1024]);
        let ca = TestCa::new();
        let ca_file = write(d, "ca.pem", ca.pem.as_bytes());
        let (cert, key) = ca.issue_valid(&["localhost"], 90);
        write(d, "good.crt", cert.as_bytes());
        write(d, "good.key", key.as_bytes());
        let (cert, key) = ca.issue(
            &["localhost"],
            rcgen::date_time_ymd(2020, 1, 1),
            rcgen::date_time_ymd(2021, 1, 1),
        );
        write(d, "old.crt", cert.as_bytes());
        write(d, "old.key", key.as_bytes());
        let (http, https, expired) = (free_tcp_port(), free_tcp_port(), free_tcp_port());
        let p = d.display();
        let conf = format!(
            r#"
daemon off;
master_process off;
worker_processes 1;
error_log {p}/error.log;
pid {p}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {p}/tmp/body;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
    default_type text/html;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{http};
        root {p}/www;
        location = /redirect {{ return 302 /index.html; }}
        location = /loop {{ return 302 /loop; }}
        location = /to-https {{ return 301 https://localhost:{https}/index.html; }}
        location = /down {{ return 503 "down for maintenance"; }}
    }}
    server {{
        listen 127.0.0.1:{https} ssl http2;
        ssl_certificate {p}/good.crt;
        ssl_certificate_key {p}/good.key;
        root {p}/www;
    }}
    server {{
        listen 127.0.0.1:{expired} ssl;
        ssl_certificate {p}/old.crt;
        ssl_certificate_key {p}/old.key;
        root {p}/www;
    }}
}}
"#
        );
        let conf_path = write(d, "nginx.conf", conf.as_bytes());
        let child = Command::new(nginx)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(d)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let guard = ChildGuard(child);
        for port in [http, https, expired] {
            wait_tcp(port);
        }
        Nginx {
            dir,
            http,
            https,
            expired,
            ca_file,
            _child: guard,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https)
    }
}

pub const COMMUNITY: &str = "owlet-test-ro";
pub const V3_USER: &str = "owletv3";
pub const V3_AUTH_ONLY_USER: &str = "owletauth";
pub const V3_AUTH: &str = "authpass123";
pub const V3_PRIV: &str = "privpass123";

/// net-snmp's snmpd on a loopback port with a v2c community and two v3
/// users (SHA-256/AES authPriv, SHA-256 authNoPriv). Persistent state lives
/// in the temp dir, so restarts behave like a device reboot.
pub struct Snmpd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<ChildGuard>,
}

impl Snmpd {
    pub fn start() -> Snmpd {
        Snmpd::start_hiding(None)
    }

    /// Like [`Snmpd::start`], but the v2c community cannot see `subtree`
    /// (e.g. a device without UCD-SNMP-MIB).
    pub fn start_hiding(subtree: Option<&str>) -> Snmpd {
        require_bin("snmpd", "snmpd");
        let dir = tempfile::tempdir().unwrap();
        let community = match subtree {
            None => format!("rocommunity {COMMUNITY} 127.0.0.1\n"),
            Some(t) => format!(
                "view owletview included .1\n\
                 view owletview excluded {t}\n\
                 rocommunity {COMMUNITY} 127.0.0.1 -V owletview\n"
            ),
        };
        let conf = format!(
            "{community}\
             createUser {V3_USER} SHA-256 \"{V3_AUTH}\" AES \"{V3_PRIV}\"\n\
             createUser {V3_AUTH_ONLY_USER} SHA-256 \"{V3_AUTH}\"\n\
             rouser {V3_USER} priv\n\
             rouser {V3_AUTH_ONLY_USER} auth\n\
             sysLocation owlet-test-lab\n\
             sysContact soc@example.test\n\
             sysName owlet-snmp-test\n"
        );
        write(dir.path(), "snmpd.conf", conf.as_bytes());
        let mut s = Snmpd {
            dir,
            port: free_udp_port(),
            child: None,
        };
        s.launch();
        s
    }

    fn launch(&mut self) {
        let d = self.dir.path();
        let child = Command::new(require_bin("snmpd", "snmpd"))
            .args(["-f", "-Lo", "-C", "-c"])
            .arg(d.join("snmpd.conf"))
            .arg("-p")
            .arg(d.join("snmpd.pid"))
            .arg(format!("udp:127.0.0.1:{}", self.port))
            .env("SNMP_PERSISTENT_DIR", d.join("persist"))
            .env("MIBS", "")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(ChildGuard(child));
        // Ready when it answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.snmpget(&["1.3.6.1.2.1.1.5.0"]).is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("snmpd did not answer on 127.0.0.1:{} within 10s", self.port);
    }

    pub fn restart(&mut self) {
        self.child = None;
        std::thread::sleep(Duration::from_millis(200));
        self.launch();
    }

    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn tool(&self, tool: &str, oids: &[&str]) -> Option<Vec<(String, String)>> {
        let bin = require_bin(tool, "snmp");
        let out = Command::new(bin)
            .args([
                "-v2c", "-c", COMMUNITY, "-On", "-Oe", "-Ot", "-Oq", "-t", "1", "-r", "0",
            ])
            .env("MIBS", "")
            .arg(self.target())
            .args(oids)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        Some(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| {
                    let (o, v) = l.split_once(' ').unwrap_or((l, ""));
                    let v = v.trim();
                    let v = v
                        .strip_prefix('"')
                        .and_then(|x| x.strip_suffix('"'))
                        .unwrap_or(v);
                    // Hex strings print as "2A B4 ... " (trailing space).
                    (
                        o.trim_start_matches('.').to_string(),
                        v.trim_end().trim_start_matches('.').to_string(),
                    )
                })
                .collect(),
        )
    }

    /// (oid, value) pairs as net-snmp's snmpget prints them.
    pub fn snmpget(&self, oids: &[&str]) -> Option<Vec<(String, String)>> {
        self.tool("snmpget", oids)
    }

    pub fn snmpwalk(&self, oid: &str) -> Option<Vec<(String, String)>> {
        self.tool("snmpwalk", &[oid])
    }
}

/// A loopback TCP server that hands each accepted connection to `handle` on
/// its own task; returns the port.
pub async fn serve<F, Fut>(handle: F) -> u16
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(handle(s));
        }
    });
    port
}

/// A TCP server that accepts and never answers (every HTTP run against it
/// hangs until its timeout); its port and task.
pub async fn silent_server() -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut keep = Vec::new();
        loop {
            if let Ok((s, _)) = l.accept().await {
                keep.push(s);
            }
        }
    });
    (port, task)
}

/// `owlet probe` arguments parsed from one command line (without "probe").
#[allow(dead_code)] // not every test binary parses command lines
pub fn try_args(line: &str) -> Result<owlet_probe::cli::ProbeArgs, clap::Error> {
    #[derive(clap::Parser)]
    struct Owlet {
        #[command(flatten)]
        probe: owlet_probe::cli::ProbeArgs,
    }
    <Owlet as clap::Parser>::try_parse_from(std::iter::once("probe").chain(line.split_whitespace()))
        .map(|o| o.probe)
}

/// [`try_args`] that must succeed.
#[allow(dead_code)]
pub fn args(line: &str) -> owlet_probe::cli::ProbeArgs {
    try_args(line).unwrap_or_else(|e| panic!("{line}: {e}"))
}
