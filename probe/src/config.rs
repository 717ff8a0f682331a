//! The `[probe]` table of the agent's TOML and its validation.
//!
//! The agent deserializes `[probe]` into [`ProbeConfig`] (unknown keys are
//! errors everywhere) and calls [`ProbeConfig::validate`], which reports every
//! problem at once with a path relative to `[probe]` (`check[2].target`).
//! Validation and the runtime share one function, [`crate::CheckSpec::from_config`],
//! so anything that validates also runs, and the operator tool (`owlet probe`)
//! goes through the same code.
//!
//! Invariant: secrets (SNMP community, USM keys) live in [`Secret`], whose
//! `Debug` never prints the value; HTTP header values and bodies are
//! redacted in `Debug` too; no message built here contains one.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use owlet_tomlconf::ConfigIssue;

/// A secret string (SNMP community, USM auth/priv key). `Debug` redacts it.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself; use only to put it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `[probe]`: uptime checks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Global limit on TCP, HTTP and SNMP checks running at once (ICMP
    /// echoes share one socket and take no slot; checks whose last run
    /// timed out may hold at most half the slots).
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// `[[probe.check]]` entries.
    #[serde(default, rename = "check", deserialize_with = "exact_vec")]
    pub checks: Vec<CheckConfig>,
}

/// Deserializes the check list without spare capacity. The agent keeps its
/// parsed config, and a list grown by doubling holds up to twice the ~700
/// bytes a `CheckConfig` takes (4.5 MB unused with 10,000 checks).
fn exact_vec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<CheckConfig>, D::Error> {
    let mut v = Vec::<CheckConfig>::deserialize(d)?;
    v.shrink_to_fit();
    Ok(v)
}

/// Upper bound of `max_concurrency` (also applied by the scheduler, so an
/// unvalidated config cannot make it panic).
pub const MAX_CONCURRENCY: usize = 65_536;

/// Upper bound of `interval`, `timeout` and `echo_interval`.
pub const MAX_DURATION: Duration = Duration::from_secs(86_400);

fn default_max_concurrency() -> usize {
    256
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            max_concurrency: default_max_concurrency(),
            checks: Vec::new(),
        }
    }
}

/// Check type as spelled in the config (`type = "icmp"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckTypeName {
    Icmp,
    Tcp,
    Http,
    Snmp,
}

impl CheckTypeName {
    /// Lower-case name, as in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckTypeName::Icmp => "icmp",
            CheckTypeName::Tcp => "tcp",
            CheckTypeName::Http => "http",
            CheckTypeName::Snmp => "snmp",
        }
    }
}

/// Which ICMP socket to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IcmpSocketMode {
    /// Raw socket (CAP_NET_RAW); datagram socket when that is not permitted.
    #[default]
    Auto,
    /// Raw socket only.
    Raw,
    /// Unprivileged datagram ICMP socket only (net.ipv4.ping_group_range).
    Dgram,
}

/// One `[[probe.check]]`. Type-specific keys are optional; a key that does not
/// belong to the check's type is a validation error.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    pub id: String,
    #[serde(rename = "type")]
    pub check_type: CheckTypeName,
    pub target: String,
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_down_after")]
    pub down_after: u32,
    #[serde(default = "default_up_after")]
    pub up_after: u32,

    // ---- icmp
    /// Echo requests per run (default 3).
    #[serde(default)]
    pub count: Option<u32>,
    /// Spacing between echo requests of one run (default 100ms).
    #[serde(default, with = "humantime_serde")]
    pub echo_interval: Option<Duration>,
    /// Loss at or above this is DEGRADED (default 20); 100% loss is DOWN.
    #[serde(default)]
    pub loss_degraded_percent: Option<f64>,
    /// `auto` (default), `raw` or `dgram`.
    #[serde(default)]
    pub socket: Option<IcmpSocketMode>,

    // ---- tcp
    #[serde(default)]
    pub tls: Option<bool>,
    #[serde(default)]
    pub send: Option<String>,
    #[serde(default)]
    pub expect: Option<String>,

    // ---- tcp (tls) and http
    /// TLS server name when it differs from the target host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// PEM file with the CA certificate(s) to trust instead of the system roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Switch certificate validation off (loudly reported in every result).
    #[serde(default)]
    pub insecure_skip_verify: Option<bool>,
    /// Certificate expiring within this many days is DEGRADED (default 14).
    #[serde(default)]
    pub cert_expiry_warn_days: Option<u32>,

    // ---- http
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub expect_status: Option<Vec<u16>>,
    #[serde(default)]
    pub contains: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    #[serde(default)]
    pub follow_redirects: Option<bool>,
    #[serde(default)]
    pub max_redirects: Option<u32>,
    #[serde(default)]
    pub proxy: Option<String>,
    /// `"1.1"` or `"2"`; default: HTTP/2 when the server offers it over TLS.
    #[serde(default)]
    pub http_version: Option<String>,

    // ---- snmp
    /// `"2c"` (default) or `"3"`.
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub community: Option<Secret>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub auth_proto: Option<String>,
    #[serde(default)]
    pub auth_key: Option<Secret>,
    #[serde(default)]
    pub priv_proto: Option<String>,
    #[serde(default)]
    pub priv_key: Option<Secret>,
    #[serde(default)]
    pub oids: Option<Vec<String>>,
    #[serde(default)]
    pub walk: Option<String>,
    #[serde(default)]
    pub preset: Option<String>,
    /// Retransmissions after the first request (default 1).
    #[serde(default)]
    pub retries: Option<u32>,
}

// Header values and the request body may hold credentials: `Debug` shows
// header names and lengths only. (Secrets are [`Secret`] already.)
crate::redact::redacted_debug!(CheckConfig {
    id, check_type, target, interval, timeout, down_after, up_after,
    count, echo_interval, loss_degraded_percent, socket,
    tls, send, expect, server_name, ca, insecure_skip_verify, cert_expiry_warn_days,
    method, expect_status, contains, regex, max_body_bytes, follow_redirects,
    max_redirects, proxy, http_version,
    version, community, user, auth_proto, auth_key, priv_proto, priv_key,
    oids, walk, preset, retries,
} redact { headers, body });

fn default_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_down_after() -> u32 {
    3
}
fn default_up_after() -> u32 {
    2
}

impl CheckConfig {
    /// A check with defaults for everything but id, type and target.
    pub fn new(
        id: impl Into<String>,
        check_type: CheckTypeName,
        target: impl Into<String>,
    ) -> Self {
        CheckConfig {
            id: id.into(),
            check_type,
            target: target.into(),
            interval: default_interval(),
            timeout: default_timeout(),
            down_after: default_down_after(),
            up_after: default_up_after(),
            count: None,
            echo_interval: None,
            loss_degraded_percent: None,
            socket: None,
            tls: None,
            send: None,
            expect: None,
            server_name: None,
            ca: None,
            insecure_skip_verify: None,
            cert_expiry_warn_days: None,
            method: None,
            headers: None,
            body: None,
            expect_status: None,
            contains: None,
            regex: None,
            max_body_bytes: None,
            follow_redirects: None,
            max_redirects: None,
            proxy: None,
            http_version: None,
            version: None,
            community: None,
            user: None,
            auth_proto: None,
            auth_key: None,
            priv_proto: None,
            priv_key: None,
            oids: None,
            walk: None,
            preset: None,
            retries: None,
        }
    }

    /// Keys that are set but do not belong to this check's type.
    pub(crate) fn foreign_keys(&self) -> Vec<&'static str> {
        use CheckTypeName::*;
        let t = self.check_type;
        let mut out = Vec::new();
        let mut check = |set: bool, key: &'static str, allowed: &[CheckTypeName]| {
            if set && !allowed.contains(&t) {
                out.push(key);
            }
        };
        check(self.count.is_some(), "count", &[Icmp]);
        check(self.echo_interval.is_some(), "echo_interval", &[Icmp]);
        check(
            self.loss_degraded_percent.is_some(),
            "loss_degraded_percent",
            &[Icmp],
        );
        check(self.socket.is_some(), "socket", &[Icmp]);
        check(self.tls.is_some(), "tls", &[Tcp]);
        check(self.send.is_some(), "send", &[Tcp]);
        check(self.expect.is_some(), "expect", &[Tcp]);
        check(self.server_name.is_some(), "server_name", &[Tcp, Http]);
        check(self.ca.is_some(), "ca", &[Tcp, Http]);
        check(
            self.insecure_skip_verify.is_some(),
            "insecure_skip_verify",
            &[Tcp, Http],
        );
        check(
            self.cert_expiry_warn_days.is_some(),
            "cert_expiry_warn_days",
            &[Tcp, Http],
        );
        check(self.method.is_some(), "method", &[Http]);
        check(self.headers.is_some(), "headers", &[Http]);
        check(self.body.is_some(), "body", &[Http]);
        check(self.expect_status.is_some(), "expect_status", &[Http]);
        check(self.contains.is_some(), "contains", &[Http]);
        check(self.regex.is_some(), "regex", &[Http]);
        check(self.max_body_bytes.is_some(), "max_body_bytes", &[Http]);
        check(self.follow_redirects.is_some(), "follow_redirects", &[Http]);
        check(self.max_redirects.is_some(), "max_redirects", &[Http]);
        check(self.proxy.is_some(), "proxy", &[Http]);
        check(self.http_version.is_some(), "http_version", &[Http]);
        check(self.version.is_some(), "version", &[Snmp]);
        check(self.community.is_some(), "community", &[Snmp]);
        check(self.user.is_some(), "user", &[Snmp]);
        check(self.auth_proto.is_some(), "auth_proto", &[Snmp]);
        check(self.auth_key.is_some(), "auth_key", &[Snmp]);
        check(self.priv_proto.is_some(), "priv_proto", &[Snmp]);
        check(self.priv_key.is_some(), "priv_key", &[Snmp]);
        check(self.oids.is_some(), "oids", &[Snmp]);
        check(self.walk.is_some(), "walk", &[Snmp]);
        check(self.preset.is_some(), "preset", &[Snmp]);
        check(self.retries.is_some(), "retries", &[Snmp]);
        out
    }
}

/// A problem with one key of one check (before the `check[i].` prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldIssue {
    pub field: &'static str,
    pub message: String,
}

impl FieldIssue {
    pub(crate) fn new(field: &'static str, message: impl Into<String>) -> Self {
        FieldIssue {
            field,
            message: message.into(),
        }
    }
}

impl ProbeConfig {
    /// Every problem in the table, in order. Empty means the config will run.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.max_concurrency == 0 {
            issues.push(ConfigIssue {
                path: "max_concurrency".into(),
                message: "must be at least 1 (it limits how many checks run at once; 256 is a good start)".into(),
            });
        } else if self.max_concurrency > MAX_CONCURRENCY {
            issues.push(ConfigIssue {
                path: "max_concurrency".into(),
                message: format!(
                    "{} is too large; use at most {MAX_CONCURRENCY} (256 is a good start)",
                    self.max_concurrency
                ),
            });
        }
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, check) in self.checks.iter().enumerate() {
            if let Some(first) = seen.insert(check.id.as_str(), i)
                && !check.id.is_empty()
            {
                issues.push(ConfigIssue {
                    path: format!("check[{i}].id"),
                    message: format!(
                        "duplicate check id \"{}\" (also used by check[{first}]); give every check a unique id",
                        check.id
                    ),
                });
            }
            if let Err(errs) = crate::CheckSpec::from_config(check) {
                for e in errs {
                    issues.push(ConfigIssue {
                        path: format!("check[{i}].{}", e.field),
                        message: e.message,
                    });
                }
            }
        }
        issues
    }
}

#[cfg(test)]
mod tests {

    /// A deserializer without a length hint (serde_json here, the agent's
    /// error-tracking TOML wrappers in production) grows the list by
    /// doubling; the kept list must not carry the spare half.
    #[test]
    fn check_list_has_no_spare_capacity() {
        let one = r#"{"id": "c", "type": "icmp", "target": "127.0.0.1"}"#;
        let json = format!("{{\"check\": [{}]}}", [one; 5].join(","));
        let cfg: ProbeConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(cfg.checks.len(), 5);
        assert_eq!(cfg.checks.capacity(), 5);
    }

    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        let mut c = CheckConfig::new("x", CheckTypeName::Snmp, "127.0.0.1");
        c.community = Some(Secret::new("public-secret"));
        c.auth_key = Some(Secret::new("authsecret"));
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("public-secret") && !dbg.contains("authsecret"));
        let mut c = CheckConfig::new("x", CheckTypeName::Http, "http://h/");
        c.headers = Some(BTreeMap::from([(
            "Authorization".to_string(),
            "Bearer tok-secret".to_string(),
        )]));
        c.body = Some("password=body-secret".into());
        let dbg = format!("{c:?}");
        assert!(
            dbg.contains("Authorization") && dbg.contains("http://h/"),
            "{dbg}"
        );
        assert!(
            !dbg.contains("tok-secret") && !dbg.contains("body-secret"),
            "{dbg}"
        );
    }
}
