//! The HTTP builder: URL, method, headers, body, expectations, redirects,
//! proxy, version, TLS.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Uri};
use regex::Regex;

use super::{HostPort, TlsSpec, parse_url, tls::build_tls};
use crate::config::{CheckConfig, FieldIssue};

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

// Header values (also marked sensitive, so `HeaderValue`'s `Debug` hides
// them) and the body may hold credentials: `Debug` shows neither.
crate::redact::redacted_debug!(HttpSpec {
    url, method, expect_status, contains, regex, max_body_bytes,
    follow_redirects, max_redirects, proxy, version, tls,
} redact { headers, body });

const DEFAULT_MAX_BODY: u64 = 1024 * 1024;

pub(super) fn build_http(c: &CheckConfig, errs: &mut Vec<FieldIssue>) -> Option<HttpSpec> {
    let url = parse_url(&c.target)
        .map_err(|e| errs.push(FieldIssue::new("target", e.to_string())))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CheckTypeName;
    use crate::spec::{CheckKind, CheckSpec};

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
}
