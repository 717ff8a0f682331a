//! Target syntax: bare hosts, `host:port`, `[v6]:port`, absolute http(s)
//! URLs, and C-style escapes in CLI text. Errors are messages for the user.

use http::Uri;

use super::HostPort;

/// Why a check's target is not a host, `host:port` or URL of the form its
/// check type takes; each message quotes what was written and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(
        "\"{0}\" is a URL; this check type wants a host name or IP address (e.g. \"192.0.2.1\")"
    )]
    UrlForHost(String),
    #[error("\"{0}\" has a port; this check type wants only a host name or IP address")]
    PortForHost(String),
    #[error("\"{0}\" is not a valid host name or IP address")]
    Host(String),
    #[error("\"{0}\" is a URL; this check type wants host:port (e.g. \"192.0.2.1:443\")")]
    UrlForHostPort(String),
    #[error("\"{port}\" in \"{target}\" is not a port number (1-65535)")]
    Port { port: String, target: String },
    #[error("\"{0}\": missing ']' after the IPv6 address")]
    NoClosingBracket(String),
    #[error("\"{host}\" in \"{target}\" is not an IPv6 address")]
    Ipv6 { host: String, target: String },
    #[error("\"{target}\" has no port; write it as \"[{host}]:PORT\"")]
    NoPortBracketed { target: String, host: String },
    #[error("\"{0}\": expected ':PORT' after ']'")]
    AfterBracket(String),
    #[error("\"{0}\" has no port; write IPv6 addresses as \"[{0}]:PORT\"")]
    NoPortIpv6(String),
    #[error("\"{0}\" has no port; write it as \"{0}:PORT\" (e.g. \"{0}:22\")")]
    NoPort(String),
    #[error("\"{host}\" in \"{target}\" is not a valid host name or IP address")]
    HostIn { host: String, target: String },
    #[error("\"{0}\" has no scheme; write it as \"http://{0}\" (or \"https://{0}\")")]
    NoScheme(String),
    #[error("\"{url}\" is not a valid URL: {source}")]
    Url {
        url: String,
        source: http::uri::InvalidUri,
    },
    #[error("URL scheme \"{0}\" is not supported; use http:// or https://")]
    Scheme(String),
    #[error("\"{0}\" is not an absolute URL; write it as \"http://{0}\" or \"https://{0}\"")]
    NotAbsolute(String),
    #[error("\"{0}\" has no host")]
    NoUrlHost(String),
    #[error(
        "\"{0}\": user:password in URLs is not supported (it would leak into events); use `headers` with Authorization"
    )]
    Credentials(String),
    #[error("\"{host}\" in \"{url}\" is not a valid host name")]
    UrlHost { host: String, url: String },
}

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
pub(crate) fn parse_host(s: &str) -> Result<String, TargetError> {
    let s = s.trim();
    let inner = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    if inner.parse::<std::net::IpAddr>().is_ok() {
        return Ok(inner.to_string());
    }
    if s.contains("://") {
        return Err(TargetError::UrlForHost(s.to_string()));
    }
    if s.contains(':') {
        return Err(TargetError::PortForHost(s.to_string()));
    }
    if valid_hostname(inner) {
        Ok(inner.to_string())
    } else {
        Err(TargetError::Host(s.to_string()))
    }
}

/// Parses `host:port`, `[v6]:port`; with `default_port`, a bare host too.
pub(crate) fn parse_host_port(s: &str, default_port: Option<u16>) -> Result<HostPort, TargetError> {
    let s = s.trim();
    if s.contains("://") {
        return Err(TargetError::UrlForHostPort(s.to_string()));
    }
    let port_err = |p: &str| TargetError::Port {
        port: p.to_string(),
        target: s.to_string(),
    };
    let parse_port = |p: &str| -> Result<u16, TargetError> {
        match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(port_err(p)),
            Ok(n) => Ok(n),
        }
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| TargetError::NoClosingBracket(s.to_string()))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(TargetError::Ipv6 {
                host: host.to_string(),
                target: s.to_string(),
            });
        }
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p)?,
            None if after.is_empty() => {
                default_port.ok_or_else(|| TargetError::NoPortBracketed {
                    target: s.to_string(),
                    host: host.to_string(),
                })?
            }
            None => return Err(TargetError::AfterBracket(s.to_string())),
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
            None => Err(TargetError::NoPortIpv6(s.to_string())),
        };
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, parse_port(p)?),
        None => match default_port {
            Some(p) => (s, p),
            None => return Err(TargetError::NoPort(s.to_string())),
        },
    };
    if host.parse::<std::net::Ipv4Addr>().is_err() && !valid_hostname(host) {
        return Err(TargetError::HostIn {
            host: host.to_string(),
            target: s.to_string(),
        });
    }
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

/// Parses an absolute http(s) URL; returns it with host and port.
pub(crate) fn parse_url(s: &str) -> Result<(Uri, HostPort, bool), TargetError> {
    let t = s.trim();
    if !t.contains("://") {
        // "example.com/health" or "10.0.0.1:8080" would otherwise read as a
        // path or an authority, or fail with a parser message.
        return Err(TargetError::NoScheme(t.to_string()));
    }
    let uri: Uri = t.parse().map_err(|source| TargetError::Url {
        url: s.to_string(),
        source,
    })?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        Some(other) => {
            return Err(TargetError::Scheme(other.to_string()));
        }
        None => {
            return Err(TargetError::NotAbsolute(s.to_string()));
        }
    };
    let auth = uri
        .authority()
        .ok_or_else(|| TargetError::NoUrlHost(s.to_string()))?;
    if auth.as_str().contains('@') {
        return Err(TargetError::Credentials(s.to_string()));
    }
    let host = auth.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.parse::<std::net::IpAddr>().is_err() && !valid_hostname(host) {
        return Err(TargetError::UrlHost {
            host: host.to_string(),
            url: s.to_string(),
        });
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
    fn url_without_scheme_suggests_http() {
        for s in [
            "example.com",
            "example.com/health",
            "10.0.0.1:8080/x",
            "[::1]:80",
        ] {
            let e = parse_url(s).unwrap_err().to_string();
            assert!(e.contains(&format!("\"http://{s}\"")), "{s}: {e}");
        }
        assert!(parse_url("http://example.com/health").is_ok());
        let e = parse_url("ftp://example.com/").unwrap_err().to_string();
        assert!(e.contains("http:// or https://"), "{e}");
    }

    #[test]
    fn unescape_works() {
        assert_eq!(unescape("QUIT\\r\\n"), b"QUIT\r\n");
        assert_eq!(unescape("\\x41\\\\"), b"A\\");
    }
}
