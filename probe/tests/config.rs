//! The `[probe]` table: TOML parsing (unknown keys rejected), validation
//! paths and messages, secret redaction, and the `owlet probe` surface.
mod common;

use common::args;
use owlet_probe::{ProbeConfig, cli};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentToml {
    probe: ProbeConfig,
}

fn parse(s: &str) -> Result<ProbeConfig, String> {
    toml::from_str::<AgentToml>(s)
        .map(|a| a.probe)
        .map_err(|e| e.to_string())
}

fn issues(s: &str) -> Vec<(String, String)> {
    parse(s)
        .unwrap()
        .validate()
        .into_iter()
        .map(|i| (i.path, i.message))
        .collect()
}

#[test]
fn full_example_parses_and_validates() {
    let cfg = parse(
        r#"
[probe]
max_concurrency = 64
[[probe.check]]
id = "fw-ping"
type = "icmp"
target = "192.0.2.1"
interval = "30s"
timeout = "5s"
down_after = 3
up_after = 2
count = 5
[[probe.check]]
id = "ssh"
type = "tcp"
target = "192.0.2.1:22"
expect = "SSH-2.0"
[[probe.check]]
id = "portal"
type = "http"
target = "https://portal.example.com/login"
method = "GET"
headers = { "X-Probe" = "owlet" }
expect_status = [200, 301]
contains = "Sign in"
regex = "v\\d+"
max_body_bytes = 65536
follow_redirects = true
proxy = "http://proxy.example.com:3128"
cert_expiry_warn_days = 21
[[probe.check]]
id = "core-sw"
type = "snmp"
target = "192.0.2.2"
version = "3"
user = "monitor"
auth_proto = "sha256"
auth_key = "auth-secret-1"
priv_proto = "aes"
priv_key = "priv-secret-1"
preset = "interfaces"
[[probe.check]]
id = "ups"
type = "snmp"
target = "[2001:db8::5]:1161"
community = "public-secret"
oids = ["1.3.6.1.2.1.1.3.0", ".1.3.6.1.2.1.33.1.2.4.0"]
"#,
    )
    .unwrap();
    assert_eq!(cfg.validate(), vec![]);
    assert_eq!(cfg.checks.len(), 5);
    let dbg = format!("{cfg:?}");
    for secret in ["auth-secret-1", "priv-secret-1", "public-secret"] {
        assert!(!dbg.contains(secret), "{secret} leaked into Debug");
    }
    assert_eq!(ProbeConfig::default().max_concurrency, 256);
    assert!(parse("[probe]\n").unwrap().checks.is_empty());
}

#[test]
fn unknown_keys_are_errors() {
    let e = parse("[probe]\nmax_concurency = 3\n").unwrap_err();
    assert!(e.contains("max_concurency"), "{e}");
    let e = parse("[probe]\n[[probe.check]]\nid='a'\ntype='tcp'\ntarget='h:1'\ntimeuot='1s'\n")
        .unwrap_err();
    assert!(e.contains("timeuot"), "{e}");
    let e = parse("[probe]\n[[probe.check]]\nid='a'\ntype='ftp'\ntarget='h:1'\n").unwrap_err();
    assert!(e.contains("ftp"), "{e}");
}

#[test]
fn validation_names_the_key_and_the_fix() {
    let got = issues(
        r#"
[probe]
max_concurrency = 0
[[probe.check]]
id = "a"
type = "tcp"
target = "10.0.0.1"
[[probe.check]]
id = "a"
type = "icmp"
target = "http://x"
[[probe.check]]
id = "c"
type = "http"
target = "portal.example.com"
interval = "10s"
timeout = "20s"
[[probe.check]]
id = "d"
type = "snmp"
target = "10.0.0.2"
version = "3"
user = "u"
auth_proto = "sha256"
oids = ["1.3.6.x"]
[[probe.check]]
id = "e"
type = "tcp"
target = "h:22"
community = "x"
interval = "0s"
[[probe.check]]
id = "f"
type = "http"
target = "http://h/"
regex = "("
ca = "/nonexistent/ca.pem"
[[probe.check]]
id = "g"
type = "snmp"
target = "h:99999"
"#,
    );
    let has = |path: &str, needle: &str| {
        assert!(
            got.iter().any(|(p, m)| p == path && m.contains(needle)),
            "no issue at {path} containing {needle:?}; got {got:#?}"
        )
    };
    has("max_concurrency", "at least 1");
    has("check[0].target", "has no port");
    has("check[1].id", "duplicate check id");
    has("check[1].target", "is a URL");
    has("check[2].target", "http://portal.example.com");
    has("check[2].timeout", "longer than the interval");
    has("check[3].auth_key", "needs `auth_key`");
    has("check[3].oids", "numeric dotted form");
    has("check[4].community", "does not apply");
    has("check[4].interval", "greater than zero");
    has("check[5].regex", "invalid regular expression");
    has("check[5].ca", "cannot read CA file");
    has("check[6].target", "not a port number");
    has("check[6].community", "needs `community`");
    has("check[6].oids", "exactly one of");
}

#[test]
fn cli_surface_parses() {
    let dir = tempfile::tempdir().unwrap();
    let ca = common::write(dir.path(), "ca.pem", common::TestCa::new().pem.as_bytes());
    let http_line = format!(
        "http https://example.com/ --expect-status 200,301 --contains ok --proxy http://p:3128 --ca {}",
        ca.display()
    );
    for line in [
        http_line.as_str(),
        "icmp 192.0.2.1 --count 5",
        "tcp 192.0.2.1:22 --tls --send QUIT\\r\\n --expect SSH-2.0",
        "snmp 192.0.2.1:161 --community c --oid 1.3.6.1.2.1.1.3.0 --oid 1.3.6.1.2.1.1.5.0",
        "snmp 192.0.2.1 --user u --auth-proto sha256 --auth-key authkey123 --priv-proto aes --priv-key privkey123 --oid 1.3.6.1.2.1.1.3.0",
        "snmp 192.0.2.1 --community c --walk 1.3.6.1.2.1.2.2",
        "snmp 192.0.2.1 --community c --preset uptime --timeout 2s --json",
    ] {
        let a = args(line);
        let (cfg, _) = cli::to_config(&a);
        let spec = owlet_probe::CheckSpec::from_config(&cfg);
        assert!(spec.is_ok(), "{line}: {:?}", spec.err());
    }
    let a = args("http https://example.com/ --expect-status 200,301");
    assert_eq!(cli::to_config(&a).0.expect_status, Some(vec![200, 301]));
    let a = args("tcp h:1 --send QUIT\\r\\n");
    assert_eq!(cli::to_config(&a).0.send.as_deref(), Some("QUIT\r\n"));
}

#[tokio::test]
async fn cli_exit_codes() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    assert_eq!(
        cli::run(args(&format!("tcp 127.0.0.1:{port} --timeout 2s"))).await,
        0
    );
    drop(l);
    assert_eq!(
        cli::run(args(&format!("tcp 127.0.0.1:{port} --json"))).await,
        2
    );
    assert_eq!(cli::run(args("tcp not-a-target")).await, 3);
    assert_eq!(
        cli::run(args("snmp 127.0.0.1 --oid 1.3.6.1.2.1.1.3.0")).await,
        3,
        "no credentials"
    );
}

#[test]
fn out_of_range_values_are_errors_not_panics() {
    let got = issues(
        r#"
[probe]
max_concurrency = 18446744073709551615
[[probe.check]]
id = "a"
type = "icmp"
target = "10.0.0.1"
interval = "500000000years"
timeout = "400000000years"
[[probe.check]]
id = "b"
type = "icmp"
target = "10.0.0.1"
count = 1000
echo_interval = "500000000years"
[[probe.check]]
id = "c"
type = "icmp"
target = "10.0.0.1"
count = 1000
echo_interval = "20h"
interval = "1d"
timeout = "1d"
"#,
    );
    let has = |path: &str, needle: &str| {
        assert!(
            got.iter().any(|(p, m)| p == path && m.contains(needle)),
            "no issue at {path} containing {needle:?}; got {got:#?}"
        )
    };
    has("max_concurrency", "at most 65536");
    has("check[0].interval", "too long");
    has("check[0].timeout", "too long");
    has("check[1].echo_interval", "too long");
    // 999 * 20h overflows nothing but does not fit in the timeout.
    has("check[2].count", "do not fit in timeout");
}

#[tokio::test]
async fn cli_rejects_huge_timeout_without_panicking() {
    assert_eq!(
        cli::run(args("tcp 127.0.0.1:1 --timeout 500000000years")).await,
        3
    );
    assert_eq!(
        cli::run(args(
            "icmp 127.0.0.1 --count 1000 --echo-interval 100000000years --timeout 1s"
        ))
        .await,
        3
    );
}

#[test]
fn cli_debug_does_not_leak_secrets() {
    let a = args(
        "snmp 10.0.0.1 --community comm-secret --user u --auth-proto sha256 --auth-key auth-secret --priv-proto aes --priv-key priv-secret --oid 1.3.6.1.2.1.1.3.0",
    );
    let dbg = format!("{a:?}");
    assert!(dbg.contains("10.0.0.1"), "{dbg}");
    for s in ["comm-secret", "auth-secret", "priv-secret"] {
        assert!(!dbg.contains(s), "{s} leaked: {dbg}");
    }
    let a = args("http http://h/ --header Authorization:Bearer-tok-secret");
    let dbg = format!("{a:?}");
    assert!(
        dbg.contains("Authorization") && !dbg.contains("tok-secret"),
        "{dbg}"
    );
    let dbg = format!("{:?}", cli::to_config(&a).0);
    assert!(
        dbg.contains("Authorization") && !dbg.contains("tok-secret"),
        "{dbg}"
    );
}
