//! [`CheckSpec`]: a validated, ready-to-run check built from a [`CheckConfig`].
//!
//! This is the single place where config values are interpreted: validation,
//! the scheduler and `owlet probe` all build a `CheckSpec` through
//! [`CheckSpec::from_config`]. Every error names the key and says how to fix it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Uri};
use regex::Regex;

use crate::config::{CheckConfig, CheckTypeName, FieldIssue, IcmpSocketMode, MAX_DURATION, Secret};
use crate::snmp::{AuthProto, Oid, Preset, PrivProto, UsmUser};

/// A validated check, ready to run.
#[derive(Debug, Clone)]
pub struct CheckSpec {
    pub id: String,
    pub check_type: CheckTypeName,
    /// The target as configured (host, host:port, URL).
    pub target: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub down_after: u32,
    pub up_after: u32,
    pub kind: CheckKind,
}

/// Type-specific part of a [`CheckSpec`].
#[derive(Debug, Clone)]
pub enum CheckKind {
    Icmp(IcmpSpec),
    Tcp(TcpSpec),
    Http(Box<HttpSpec>),
    Snmp(Box<SnmpSpec>),
}

/// Host (name or address, no brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone)]
pub struct IcmpSpec {
    pub host: String,
    pub count: u32,
    pub echo_interval: Duration,
    pub loss_degraded_percent: f64,
    pub socket: IcmpSocketMode,
}

/// TLS settings shared by TCP+TLS and HTTPS.
#[derive(Debug, Clone)]
pub struct TlsSpec {
    /// Built when the check is built for TLS targets. `None` for an http://
    /// URL that names no `ca` and no `insecure_skip_verify`: plain HTTP then
    /// needs no system CA roots, and the config is built (and cached) only
    /// if a redirect leads to https.
    pub(crate) config: Option<Arc<rustls::ClientConfig>>,
    pub(crate) ca: Option<PathBuf>,
    pub(crate) alpn: &'static [&'static [u8]],
    pub server_name: Option<String>,
    pub insecure: bool,
    pub warn_days: u32,
}

impl TlsSpec {
    /// The client config, building it now if the check was built without one.
    pub(crate) fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        match &self.config {
            Some(c) => Ok(c.clone()),
            None => crate::tls::client_config(self.ca.as_deref(), self.insecure, self.alpn),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TcpSpec {
    pub addr: HostPort,
    pub tls: Option<TlsSpec>,
    pub send: Option<Vec<u8>>,
    pub expect: Option<Vec<u8>>,
}

/// Which HTTP version to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersionPref {
    /// HTTP/2 when ALPN offers it (HTTPS), else HTTP/1.1.
    Auto,
    Http1,
    /// HTTP/2 only (prior knowledge on cleartext).
    Http2,
}

#[derive(Clone)]
pub struct HttpSpec {
    pub url: Uri,
    pub method: Method,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<Bytes>,
    /// `None`: any 2xx/3xx is fine.
    pub expect_status: Option<Vec<u16>>,
    pub contains: Option<String>,
    pub regex: Option<Regex>,
    pub max_body_bytes: u64,
    pub follow_redirects: bool,
    pub max_redirects: u32,
    pub proxy: Option<HostPort>,
    pub version: HttpVersionPref,
    /// TLS for https URLs (also used after a redirect to https).
    pub tls: TlsSpec,
}

/// Header values (marked sensitive, so `HeaderValue`'s `Debug` hides them)
/// and the body may hold credentials: `Debug` shows neither.
impl std::fmt::Debug for HttpSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&HeaderName, crate::config::Redacted)> = self
            .headers
            .iter()
            .map(|(k, v)| (k, crate::config::Redacted(v.len())))
            .collect();
        f.debug_struct("HttpSpec")
            .field("url", &self.url)
            .field("method", &self.method)
            .field("headers", &headers)
            .field(
                "body",
                &self.body.as_ref().map(|b| crate::config::Redacted(b.len())),
            )
            .field("expect_status", &self.expect_status)
            .field("contains", &self.contains)
            .field("regex", &self.regex)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("follow_redirects", &self.follow_redirects)
            .field("max_redirects", &self.max_redirects)
            .field("proxy", &self.proxy)
            .field("version", &self.version)
            .field("tls", &self.tls)
            .finish()
    }
}

/// SNMP version and credentials.
#[derive(Debug, Clone)]
pub enum SnmpVersion {
    V2c { community: Secret },
    V3(UsmUser),
}

/// What an SNMP check asks for.
#[derive(Debug, Clone)]
pub enum SnmpQuery {
    Get(Vec<Oid>),
    Walk(Oid),
    Preset(Preset),
}

#[derive(Debug, Clone)]
pub struct SnmpSpec {
    pub addr: HostPort,
    pub version: SnmpVersion,
    pub query: SnmpQuery,
    pub retries: u32,
}

pub(crate) const DEFAULT_MAX_BODY: u64 = 1024 * 1024;

fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Parses a bare host: IPv4, IPv6 (optionally in brackets) or a DNS name.
pub(crate) fn parse_host(s: &str) -> Result<String, String> {
    let s = s.trim();
    let inner = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    if inner.parse::<std::net::IpAddr>().is_ok() {
        return Ok(inner.to_string());
    }
    if s.contains("://") {
        return Err(format!(
            "\"{s}\" is a URL; this check type wants a host name or IP address (e.g. \"192.0.2.1\")"
        ));
    }
    if s.contains(':') {
        return Err(format!(
            "\"{s}\" has a port; this check type wants only a host name or IP address"
        ));
    }
    if valid_hostname(inner) {
        Ok(inner.to_string())
    } else {
        Err(format!("\"{s}\" is not a valid host name or IP address"))
    }
}

/// Parses `host:port`, `[v6]:port`; with `default_port`, a bare host too.
pub(crate) fn parse_host_port(s: &str, default_port: Option<u16>) -> Result<HostPort, String> {
    let s = s.trim();
    if s.contains("://") {
        return Err(format!(
            "\"{s}\" is a URL; this check type wants host:port (e.g. \"192.0.2.1:443\")"
        ));
    }
    let port_err = |p: &str| format!("\"{p}\" in \"{s}\" is not a port number (1-65535)");
    let parse_port = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(port_err(p)),
            Ok(n) => Ok(n),
        }
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("\"{s}\": missing ']' after the IPv6 address"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("\"{host}\" in \"{s}\" is not an IPv6 address"));
        }
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p)?,
            None if after.is_empty() => default_port
                .ok_or_else(|| format!("\"{s}\" has no port; write it as \"[{host}]:PORT\""))?,
            None => return Err(format!("\"{s}\": expected ':PORT' after ']'")),
        };
        return Ok(HostPort {
            host: host.to_string(),
            port,
        });
    }
    if s.parse::<std::net::Ipv6Addr>().is_ok() {
        return match default_port {
            Some(port) => Ok(HostPort {
                host: s.to_string(),
                port,
            }),
            None => Err(format!(
                "\"{s}\" has no port; write IPv6 addresses as \"[{s}]:PORT\""
            )),
        };
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, parse_port(p)?),
        None => match default_port {
            Some(p) => (s, p),
            None => {
                return Err(format!(
                    "\"{s}\" has no port; write it as \"{s}:PORT\" (e.g. \"{s}:22\")"
                ));
            }
        },
    };
    if host.parse::<std::net::Ipv4Addr>().is_err() && !valid_hostname(host) {
        return Err(format!(
            "\"{host}\" in \"{s}\" is not a valid host name or IP address"
        ));
    }
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

/// Parses an absolute http(s) URL; returns it with host and port.
pub(crate) fn parse_url(s: &str) -> Result<(Uri, HostPort, bool), String> {
    let uri: Uri = s
        .trim()
        .parse()
        .map_err(|e| format!("\"{s}\" is not a valid URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        Some(other) => {
            return Err(format!(
                "URL scheme \"{other}\" is not supported; use http:// or https://"
            ));
        }
        None => {
            return Err(format!(
                "\"{s}\" is not an absolute URL; write it as \"http://{s}\" or \"https://{s}\""
            ));
        }
    };
    let auth = uri
        .authority()
        .ok_or_else(|| format!("\"{s}\" has no host"))?;
    if auth.as_str().contains('@') {
        return Err(format!(
            "\"{s}\": user:password in URLs is not supported (it would leak into events); use `headers` with Authorization"
        ));
    }
    let host = auth.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.parse::<std::net::IpAddr>().is_err() && !valid_hostname(host) {
        return Err(format!("\"{host}\" in \"{s}\" is not a valid host name"));
    }
    let port = auth.port_u16().unwrap_or(if https { 443 } else { 80 });
    Ok((
        uri.clone(),
        HostPort {
            host: host.to_string(),
            port,
        },
        https,
    ))
}

/// Interprets C-style escapes (`\r`, `\n`, `\t`, `\\`, `\xNN`) in CLI text.
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let c = b[i + 1];
            i += 2;
            match c {
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'0' => out.push(0),
                b'\\' => out.push(b'\\'),
                b'x' if i + 2 <= b.len() => {
                    match std::str::from_utf8(&b[i..i + 2])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        Some(v) => {
                            out.push(v);
                            i += 2;
                        }
                        None => out.extend_from_slice(b"\\x"),
                    }
                }
                other => {
                    out.push(b'\\');
                    out.push(other);
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// TLS settings; with `eager`, the client config is built now (so a bad CA
/// file or missing system roots is a config error), else on first use.
fn build_tls(
    c: &CheckConfig,
    alpn: &'static [&'static [u8]],
    eager: bool,
    errs: &mut Vec<FieldIssue>,
) -> Option<TlsSpec> {
    let insecure = c.insecure_skip_verify.unwrap_or(false);
    if insecure && c.ca.is_some() {
        errs.push(FieldIssue::new(
            "insecure_skip_verify",
            "set either `ca` or `insecure_skip_verify`, not both",
        ));
    }
    if let Some(sn) = &c.server_name
        && crate::tls::server_name(sn).is_err()
    {
        errs.push(FieldIssue::new(
            "server_name",
            format!("\"{sn}\" is not a valid TLS server name"),
        ));
    }
    let config = if eager {
        match crate::tls::client_config(c.ca.as_deref(), insecure, alpn) {
            Ok(config) => Some(config),
            Err(e) => {
                errs.push(FieldIssue::new("ca", e));
                return None;
            }
        }
    } else {
        None
    };
    if insecure {
        tracing::warn!(check = %c.id, "TLS certificate verification is DISABLED for this check (insecure_skip_verify = true)");
    }
    Some(TlsSpec {
        config,
        ca: c.ca.clone(),
        alpn,
        server_name: c.server_name.clone(),
        insecure,
        warn_days: c.cert_expiry_warn_days.unwrap_or(14),
    })
}

impl CheckSpec {
    /// Validates one check and builds its runtime form. All problems are
    /// returned at once, each naming its key (without the `check[i].` prefix).
    pub fn from_config(c: &CheckConfig) -> Result<CheckSpec, Vec<FieldIssue>> {
        let mut errs = Vec::new();
        if c.id.trim().is_empty() {
            errs.push(FieldIssue::new(
                "id",
                "must not be empty; give the check a short unique name such as \"fw-ping\"",
            ));
        } else if c.id.len() > 128 || c.id.chars().any(|ch| ch.is_control()) {
            errs.push(FieldIssue::new(
                "id",
                "must be at most 128 printable characters",
            ));
        }
        let too_long = |d: Duration| d > MAX_DURATION;
        if c.interval.is_zero() {
            errs.push(FieldIssue::new(
                "interval",
                "must be greater than zero (e.g. \"30s\")",
            ));
        } else if too_long(c.interval) {
            errs.push(FieldIssue::new(
                "interval",
                format!(
                    "{} is too long; use at most {}",
                    humantime::format_duration(c.interval),
                    humantime::format_duration(MAX_DURATION)
                ),
            ));
        }
        if too_long(c.timeout) {
            errs.push(FieldIssue::new(
                "timeout",
                format!(
                    "{} is too long; use at most {}",
                    humantime::format_duration(c.timeout),
                    humantime::format_duration(MAX_DURATION)
                ),
            ));
        } else if c.timeout.is_zero() {
            errs.push(FieldIssue::new(
                "timeout",
                "must be greater than zero (e.g. \"5s\")",
            ));
        } else if !c.interval.is_zero() && c.timeout > c.interval {
            errs.push(FieldIssue::new(
                "timeout",
                format!(
                    "{} is longer than the interval {}; make timeout at most the interval",
                    humantime::format_duration(c.timeout),
                    humantime::format_duration(c.interval)
                ),
            ));
        }
        if c.down_after == 0 {
            errs.push(FieldIssue::new(
                "down_after",
                "must be at least 1 (consecutive failures before DOWN)",
            ));
        }
        if c.up_after == 0 {
            errs.push(FieldIssue::new(
                "up_after",
                "must be at least 1 (consecutive successes before UP)",
            ));
        }
        for key in c.foreign_keys() {
            errs.push(FieldIssue::new(
                key,
                format!(
                    "`{key}` does not apply to type = \"{}\"; remove it or change the type",
                    c.check_type.as_str()
                ),
            ));
        }
        let kind = match c.check_type {
            CheckTypeName::Icmp => build_icmp(c, &mut errs).map(CheckKind::Icmp),
            CheckTypeName::Tcp => build_tcp(c, &mut errs).map(CheckKind::Tcp),
            CheckTypeName::Http => build_http(c, &mut errs).map(|h| CheckKind::Http(Box::new(h))),
            CheckTypeName::Snmp => build_snmp(c, &mut errs).map(|s| CheckKind::Snmp(Box::new(s))),
        };
        match kind {
            Some(kind) if errs.is_empty() => Ok(CheckSpec {
                id: c.id.clone(),
                check_type: c.check_type,
                target: c.target.clone(),
                interval: c.interval,
                timeout: c.timeout,
                down_after: c.down_after,
                up_after: c.up_after,
                kind,
            }),
            _ => Err(errs),
        }
    }
}

fn build_icmp(c: &CheckConfig, errs: &mut Vec<FieldIssue>) -> Option<IcmpSpec> {
    let host = parse_host(&c.target)
        .map_err(|e| errs.push(FieldIssue::new("target", e)))
        .ok();
    let count = c.count.unwrap_or(3);
    if count == 0 || count > 1000 {
        errs.push(FieldIssue::new(
            "count",
            "must be between 1 and 1000 echo requests per run",
        ));
    }
    let echo_interval = c.echo_interval.unwrap_or(Duration::from_millis(100));
    let spread = echo_interval.checked_mul(count.saturating_sub(1));
    if echo_interval > MAX_DURATION {
        errs.push(FieldIssue::new(
            "echo_interval",
            format!(
                "{} is too long; it must fit (count - 1) times in `timeout`",
                humantime::format_duration(echo_interval)
            ),
        ));
    } else if count > 1 && spread.is_none_or(|s| s >= c.timeout) {
        errs.push(FieldIssue::new(
            "count",
            format!(
                "{count} echoes {} apart do not fit in timeout {}; lower `count` or `echo_interval`, or raise `timeout`",
                humantime::format_duration(echo_interval),
                humantime::format_duration(c.timeout)
            ),
        ));
    }
    let loss = c.loss_degraded_percent.unwrap_or(20.0);
    if !(0.0..=100.0).contains(&loss) {
        errs.push(FieldIssue::new(
            "loss_degraded_percent",
            "must be between 0 and 100",
        ));
    }
    Some(IcmpSpec {
        host: host?,
        count,
        echo_interval,
        loss_degraded_percent: loss,
        socket: c.socket.unwrap_or_default(),
    })
}

fn build_tcp(c: &CheckConfig, errs: &mut Vec<FieldIssue>) -> Option<TcpSpec> {
    let addr = parse_host_port(&c.target, None)
        .map_err(|e| errs.push(FieldIssue::new("target", e)))
        .ok();
    let tls = if c.tls.unwrap_or(false) {
        Some(build_tls(c, &[], true, errs)?)
    } else {
        for (set, key) in [
            (c.ca.is_some(), "ca"),
            (c.insecure_skip_verify.is_some(), "insecure_skip_verify"),
            (c.server_name.is_some(), "server_name"),
            (c.cert_expiry_warn_days.is_some(), "cert_expiry_warn_days"),
        ] {
            if set {
                errs.push(FieldIssue::new(key, format!("`{key}` needs `tls = true`")));
            }
        }
        None
    };
    if matches!(&c.expect, Some(e) if e.is_empty()) {
        errs.push(FieldIssue::new(
            "expect",
            "must not be empty (remove it to only test the connection)",
        ));
    }
    Some(TcpSpec {
        addr: addr?,
        tls,
        send: c.send.as_ref().map(|s| s.as_bytes().to_vec()),
        expect: c.expect.as_ref().map(|s| s.as_bytes().to_vec()),
    })
}

fn build_http(c: &CheckConfig, errs: &mut Vec<FieldIssue>) -> Option<HttpSpec> {
    let url = parse_url(&c.target)
        .map_err(|e| errs.push(FieldIssue::new("target", e)))
        .ok();
    let method = match &c.method {
        None => Method::GET,
        Some(m) => match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Ok(m) => m,
            Err(_) => {
                errs.push(FieldIssue::new(
                    "method",
                    format!("\"{m}\" is not an HTTP method (GET, HEAD, POST...)"),
                ));
                Method::GET
            }
        },
    };
    let mut headers = Vec::new();
    for (k, v) in c.headers.iter().flatten() {
        match (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            (Ok(n), Ok(mut v)) => {
                v.set_sensitive(true);
                headers.push((n, v));
            }
            _ => errs.push(FieldIssue::new(
                "headers",
                format!("header \"{k}\" is not a valid HTTP header name/value"),
            )),
        }
    }
    if let Some(st) = &c.expect_status {
        if st.is_empty() {
            errs.push(FieldIssue::new(
                "expect_status",
                "must list at least one status (e.g. [200])",
            ));
        }
        for s in st {
            if !(100..=599).contains(s) {
                errs.push(FieldIssue::new(
                    "expect_status",
                    format!("{s} is not an HTTP status (100-599)"),
                ));
            }
        }
    }
    let regex = match &c.regex {
        None => None,
        Some(r) => match Regex::new(r) {
            Ok(r) => Some(r),
            Err(e) => {
                errs.push(FieldIssue::new(
                    "regex",
                    format!("invalid regular expression: {e}"),
                ));
                None
            }
        },
    };
    let max_body_bytes = c.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
    if max_body_bytes > 64 * 1024 * 1024 {
        errs.push(FieldIssue::new(
            "max_body_bytes",
            "must be at most 64 MiB (with `contains` or `regex` the body is kept in memory)",
        ));
    }
    let proxy = match &c.proxy {
        None => None,
        Some(p) => match parse_url(p) {
            Ok((_, hp, false)) => Some(hp),
            Ok((_, _, true)) => {
                errs.push(FieldIssue::new("proxy", "https:// proxies are not supported; use the proxy's http:// address (HTTPS targets are tunnelled with CONNECT)"));
                None
            }
            Err(e) => {
                errs.push(FieldIssue::new(
                    "proxy",
                    format!("{e} (expected e.g. \"http://proxy.example:3128\")"),
                ));
                None
            }
        },
    };
    let version = match c.http_version.as_deref() {
        None | Some("auto") => HttpVersionPref::Auto,
        Some("1.1") | Some("1") => HttpVersionPref::Http1,
        Some("2") => HttpVersionPref::Http2,
        Some(other) => {
            errs.push(FieldIssue::new(
                "http_version",
                format!("\"{other}\" is not one of \"auto\", \"1.1\", \"2\""),
            ));
            HttpVersionPref::Auto
        }
    };
    let alpn: &'static [&'static [u8]] = match version {
        HttpVersionPref::Auto => &[b"h2", b"http/1.1"],
        HttpVersionPref::Http1 => &[b"http/1.1"],
        HttpVersionPref::Http2 => &[b"h2"],
    };
    // Plain http:// needs no CA roots unless TLS settings were given.
    let eager =
        !matches!(&url, Some((_, _, false))) || c.ca.is_some() || c.insecure_skip_verify.is_some();
    let tls = build_tls(c, alpn, eager, errs)?;
    Some(HttpSpec {
        url: url?.0,
        method,
        headers,
        body: c.body.as_ref().map(|b| Bytes::from(b.clone())),
        expect_status: c.expect_status.clone(),
        contains: c.contains.clone(),
        regex,
        max_body_bytes,
        follow_redirects: c.follow_redirects.unwrap_or(true),
        max_redirects: c.max_redirects.unwrap_or(5),
        proxy,
        version,
        tls,
    })
}

fn build_snmp(c: &CheckConfig, errs: &mut Vec<FieldIssue>) -> Option<SnmpSpec> {
    let addr = parse_host_port(&c.target, Some(161))
        .map_err(|e| errs.push(FieldIssue::new("target", e)))
        .ok();
    let version = match c.version.as_deref().unwrap_or("2c") {
        "2c" | "v2c" | "2" => {
            for (set, key) in [
                (c.user.is_some(), "user"),
                (c.auth_proto.is_some(), "auth_proto"),
                (c.auth_key.is_some(), "auth_key"),
                (c.priv_proto.is_some(), "priv_proto"),
                (c.priv_key.is_some(), "priv_key"),
            ] {
                if set {
                    errs.push(FieldIssue::new(
                        key,
                        format!("`{key}` is for SNMPv3; set version = \"3\" or remove it"),
                    ));
                }
            }
            match &c.community {
                Some(cm) if !cm.expose().is_empty() => Some(SnmpVersion::V2c {
                    community: cm.clone(),
                }),
                _ => {
                    errs.push(FieldIssue::new(
                        "community",
                        "SNMP v2c needs `community` (the device's read community)",
                    ));
                    None
                }
            }
        }
        "3" | "v3" => {
            if c.community.is_some() {
                errs.push(FieldIssue::new(
                    "community",
                    "`community` is for v2c; SNMPv3 uses `user` and keys",
                ));
            }
            let user = match &c.user {
                Some(u) if !u.is_empty() && u.len() <= 32 => Some(u.clone()),
                _ => {
                    errs.push(FieldIssue::new(
                        "user",
                        "SNMPv3 needs `user` (1-32 characters, the USM user name)",
                    ));
                    None
                }
            };
            let auth = match c.auth_proto.as_deref() {
                None => {
                    errs.push(FieldIssue::new("auth_proto", "SNMPv3 needs `auth_proto` (\"sha256\" recommended; also sha, sha224, sha384, sha512, md5); noAuthNoPriv is not supported"));
                    None
                }
                Some(p) => match AuthProto::parse(p) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        errs.push(FieldIssue::new("auth_proto", e));
                        None
                    }
                },
            };
            let auth_key = match &c.auth_key {
                Some(k) if k.expose().len() >= 8 => Some(k.clone()),
                Some(_) => {
                    errs.push(FieldIssue::new(
                        "auth_key",
                        "must be at least 8 characters (RFC 3414)",
                    ));
                    None
                }
                None => {
                    errs.push(FieldIssue::new(
                        "auth_key",
                        "SNMPv3 needs `auth_key` (the user's authentication passphrase)",
                    ));
                    None
                }
            };
            let privacy = match (&c.priv_proto, &c.priv_key) {
                (None, None) => None,
                (Some(p), Some(k)) => {
                    if k.expose().len() < 8 {
                        errs.push(FieldIssue::new(
                            "priv_key",
                            "must be at least 8 characters (RFC 3414)",
                        ));
                    }
                    match PrivProto::parse(p) {
                        Ok(pp) => Some((pp, k.clone())),
                        Err(e) => {
                            errs.push(FieldIssue::new("priv_proto", e));
                            None
                        }
                    }
                }
                (Some(_), None) => {
                    errs.push(FieldIssue::new(
                        "priv_key",
                        "`priv_proto` is set but `priv_key` is missing",
                    ));
                    None
                }
                (None, Some(_)) => {
                    errs.push(FieldIssue::new(
                        "priv_proto",
                        "`priv_key` is set but `priv_proto` is missing (use \"aes\")",
                    ));
                    None
                }
            };
            match (user, auth, auth_key) {
                (Some(u), Some(a), Some(k)) => {
                    Some(SnmpVersion::V3(UsmUser::new(u, a, k, privacy)))
                }
                _ => None,
            }
        }
        other => {
            errs.push(FieldIssue::new(
                "version",
                format!("\"{other}\" is not a supported SNMP version; use \"2c\" or \"3\""),
            ));
            None
        }
    };
    let set = [c.oids.is_some(), c.walk.is_some(), c.preset.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if set != 1 {
        errs.push(FieldIssue::new(
            "oids",
            "set exactly one of `oids` (GET), `walk` (subtree) or `preset` (uptime, interfaces, cpu, memory)",
        ));
    }
    let query = if let Some(oids) = &c.oids {
        if oids.is_empty() || oids.len() > 64 {
            errs.push(FieldIssue::new("oids", "list 1 to 64 OIDs"));
        }
        let mut parsed = Vec::new();
        for o in oids {
            match Oid::parse(o) {
                Ok(oid) => parsed.push(oid),
                Err(e) => errs.push(FieldIssue::new("oids", e)),
            }
        }
        Some(SnmpQuery::Get(parsed))
    } else if let Some(w) = &c.walk {
        match Oid::parse(w) {
            Ok(oid) => Some(SnmpQuery::Walk(oid)),
            Err(e) => {
                errs.push(FieldIssue::new("walk", e));
                None
            }
        }
    } else if let Some(p) = &c.preset {
        match Preset::parse(p) {
            Ok(p) => Some(SnmpQuery::Preset(p)),
            Err(e) => {
                errs.push(FieldIssue::new("preset", e));
                None
            }
        }
    } else {
        None
    };
    let retries = c.retries.unwrap_or(1);
    if retries > 5 {
        errs.push(FieldIssue::new("retries", "must be at most 5"));
    }
    Some(SnmpSpec {
        addr: addr?,
        version: version?,
        query: query?,
        retries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(parse_host_port("a.b:22", None).unwrap().port, 22);
        assert_eq!(parse_host_port("[::1]:22", None).unwrap().host, "::1");
        assert_eq!(parse_host_port("::1", Some(161)).unwrap().port, 161);
        assert!(parse_host_port("a.b", None).is_err());
        assert!(parse_host_port("a.b:0", None).is_err());
        assert!(parse_host_port("http://x", None).is_err());
        assert!(parse_host("1.2.3.4:5").is_err());
        assert!(parse_host("bad host").is_err());
        assert_eq!(parse_host("[::1]").unwrap(), "::1");
    }

    #[test]
    fn plain_http_does_not_build_tls() {
        let c = CheckConfig::new("h", CheckTypeName::Http, "http://127.0.0.1:1/");
        let CheckKind::Http(h) = CheckSpec::from_config(&c).unwrap().kind else {
            panic!()
        };
        assert!(h.tls.config.is_none());
        let mut c = CheckConfig::new("h", CheckTypeName::Http, "https://127.0.0.1:1/");
        c.insecure_skip_verify = Some(true);
        let CheckKind::Http(h) = CheckSpec::from_config(&c).unwrap().kind else {
            panic!()
        };
        assert!(h.tls.config.is_some());
        // A CA file given for an http:// URL is still checked at load.
        let mut c = CheckConfig::new("h", CheckTypeName::Http, "http://127.0.0.1:1/");
        c.ca = Some("/nonexistent/ca.pem".into());
        let errs = CheckSpec::from_config(&c).unwrap_err();
        assert!(errs.iter().any(|e| e.field == "ca"), "{errs:?}");
    }

    #[test]
    fn http_spec_debug_hides_header_values_and_body() {
        let mut c = CheckConfig::new("h", CheckTypeName::Http, "http://127.0.0.1:1/");
        c.headers = Some(
            [("Authorization".to_string(), "Bearer tok-secret".to_string())]
                .into_iter()
                .collect(),
        );
        c.body = Some("pw=body-secret".into());
        let spec = CheckSpec::from_config(&c).unwrap();
        let dbg = format!("{spec:?}");
        assert!(dbg.contains("authorization"), "{dbg}");
        assert!(
            !dbg.contains("tok-secret") && !dbg.contains("body-secret"),
            "{dbg}"
        );
    }

    #[test]
    fn unescape_works() {
        assert_eq!(unescape("QUIT\\r\\n"), b"QUIT\r\n");
        assert_eq!(unescape("\\x41\\\\"), b"A\\");
    }
}
