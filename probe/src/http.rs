//! URL checks on hyper's connection-level API, so each phase is timed by us
//! (DNS, connect, TLS, first byte, total) and the body read is bounded.
//!
//! HTTP/1.1 and HTTP/2 (ALPN on HTTPS, prior knowledge with
//! `http_version = "2"` on cleartext), redirects followed by hand (each hop
//! re-validates TLS; configured Authorization, Cookie and
//! Proxy-Authorization headers are sent only while the hop has the
//! configured scheme, host and port, and `server_name` is used only while the
//! hop has the configured host), HTTP proxies (absolute-form for http://, CONNECT
//! tunnel for https://). The connection task is driven inside the check's own
//! future, never spawned, so dropping the check (timeout) closes everything:
//! a slowloris server cannot keep anything alive past the deadline.
//!
//! The body is read up to `max_body_bytes`; it is kept in memory only when
//! `contains` or `regex` needs it, otherwise it is counted and discarded.

use std::time::Instant;

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use owlet_proto::v1::{CheckResult, FailureClass, HttpDetail, check_result::Detail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::spec::{CheckSpec, HostPort, HttpSpec, HttpVersionPref, parse_url};
use crate::{Io, Outcome, micros, ms, resolve};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Dns,
    Connect,
    Proxy,
    Tls,
    FirstByte,
    Body,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Dns => "DNS lookup",
            Phase::Connect => "TCP connect",
            Phase::Proxy => "proxy CONNECT",
            Phase::Tls => "TLS handshake",
            Phase::FirstByte => "waiting for the response headers",
            Phase::Body => "reading the body",
        }
    }
}

struct Response {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Vec<u8>,
    truncated: bool,
}

pub(crate) async fn run(spec: &CheckSpec, h: &HttpSpec, r: &mut CheckResult) -> Outcome {
    let start = Instant::now();
    let deadline = start + spec.timeout;
    let mut d = HttpDetail::default();
    let mut phase = Phase::Dns;
    let res =
        tokio::time::timeout_at(deadline.into(), inner(h, r, &mut d, &mut phase, deadline)).await;
    let mut o = match res {
        Ok(o) => o,
        Err(_) => {
            let class = if phase == Phase::Dns {
                FailureClass::Dns
            } else {
                FailureClass::Timeout
            };
            let extra = if phase == Phase::Body {
                format!(" ({} body bytes read)", d.body_bytes)
            } else {
                String::new()
            };
            Outcome::down(
                class,
                format!(
                    "timed out after {} while {}{extra}",
                    humantime::format_duration(spec.timeout),
                    phase.name()
                ),
            )
        }
    };
    d.total_us = micros(start.elapsed());
    if d.tls_verify_skipped {
        o.message
            .push_str(" [TLS certificate verification DISABLED]");
    }
    r.detail = Some(Detail::Http(d));
    o
}

/// Headers dropped when a redirect leaves the configured origin.
fn is_credential_header(name: &http::HeaderName) -> bool {
    name == header::AUTHORIZATION || name == header::COOKIE || name == header::PROXY_AUTHORIZATION
}

fn is_redirect(s: StatusCode) -> bool {
    matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// Resolves a Location header against the URL that returned it.
fn resolve_location(base: &Uri, loc: &str) -> Option<Uri> {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        return loc.parse().ok();
    }
    let scheme = base.scheme_str()?;
    let auth = base.authority()?.as_str();
    if let Some(rest) = loc.strip_prefix("//") {
        return format!("{scheme}://{rest}").parse().ok();
    }
    if loc.starts_with('/') {
        return format!("{scheme}://{auth}{loc}").parse().ok();
    }
    let path = base.path();
    let dir = &path[..path.rfind('/').map(|i| i + 1).unwrap_or(0)];
    format!("{scheme}://{auth}{dir}{loc}").parse().ok()
}

async fn inner(
    h: &HttpSpec,
    r: &mut CheckResult,
    d: &mut HttpDetail,
    phase: &mut Phase,
    deadline: Instant,
) -> Outcome {
    let mut url = h.url.clone();
    let mut method = h.method.clone();
    let mut body = h.body.clone();
    let mut hops = 0u32;
    let resp = loop {
        let resp = match one_request(h, &url, &method, body.clone(), r, d, phase, deadline).await {
            Ok(resp) => resp,
            Err(o) => return o,
        };
        if h.follow_redirects && is_redirect(resp.status) {
            if hops >= h.max_redirects {
                return Outcome::down(
                    FailureClass::HttpStatus,
                    format!(
                        "more than {} redirects (last: HTTP {} from {url})",
                        h.max_redirects,
                        resp.status.as_u16()
                    ),
                );
            }
            let Some(next) = resp
                .headers
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| resolve_location(&url, l))
            else {
                return Outcome::down(
                    FailureClass::Protocol,
                    format!(
                        "HTTP {} redirect without a usable Location header",
                        resp.status.as_u16()
                    ),
                );
            };
            if resp.status == StatusCode::SEE_OTHER
                || (matches!(resp.status.as_u16(), 301 | 302) && method == http::Method::POST)
            {
                method = http::Method::GET;
                body = None;
            }
            hops += 1;
            d.redirects = hops;
            url = next;
            continue;
        }
        break resp;
    };
    evaluate(h, d, resp)
}

fn evaluate(h: &HttpSpec, d: &HttpDetail, resp: Response) -> Outcome {
    let code = resp.status.as_u16();
    let status_ok = match &h.expect_status {
        Some(set) => set.contains(&code),
        None => (200..400).contains(&code),
    };
    let timing = format!(
        "HTTP {code} in {}",
        ms(std::time::Duration::from_micros(d.first_byte_us))
    );
    if !status_ok {
        let want = match &h.expect_status {
            Some(set) => set
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(","),
            None => "2xx/3xx".into(),
        };
        return Outcome::down(
            FailureClass::HttpStatus,
            format!("HTTP {code} (expected {want})"),
        );
    }
    let trunc = if resp.truncated {
        format!(" (only the first {} bytes were read)", d.body_bytes)
    } else {
        String::new()
    };
    if h.contains.is_some() || h.regex.is_some() {
        let text = String::from_utf8_lossy(&resp.body);
        if let Some(c) = &h.contains
            && !text.contains(c.as_str())
        {
            return Outcome::down(
                FailureClass::ContentMismatch,
                format!("{timing} but the body does not contain {c:?}{trunc}"),
            );
        }
        if let Some(re) = &h.regex
            && !re.is_match(&text)
        {
            return Outcome::down(
                FailureClass::ContentMismatch,
                format!(
                    "{timing} but the body does not match /{}/{trunc}",
                    re.as_str()
                ),
            );
        }
    }
    if let Some(days) = d.cert_days_left {
        if days < 0 {
            return Outcome::down(
                FailureClass::CertExpiry,
                format!("{timing} but the certificate expired {} day(s) ago", -days),
            );
        }
        if days < i64::from(h.tls.warn_days) {
            return Outcome::degraded(
                FailureClass::CertExpiry,
                format!("{timing}; certificate expires in {days} day(s)"),
            );
        }
    }
    Outcome::up(format!(
        "{timing}{}",
        if resp.truncated {
            ", body truncated"
        } else {
            ""
        }
    ))
}

/// Opens a CONNECT tunnel through an HTTP proxy.
async fn connect_tunnel(tcp: &mut TcpStream, target: &HostPort) -> Result<(), Outcome> {
    let req =
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: owlet-probe\r\n\r\n");
    tcp.write_all(req.as_bytes())
        .await
        .map_err(|e| Outcome::failed(crate::classify_io(&e), format!("proxy: {e}")))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 16 * 1024 {
            return Err(Outcome::down(
                FailureClass::Protocol,
                "proxy sent an oversized CONNECT response",
            ));
        }
        let n = tcp
            .read(&mut chunk)
            .await
            .map_err(|e| Outcome::failed(crate::classify_io(&e), format!("proxy: {e}")))?;
        if n == 0 {
            return Err(Outcome::down(
                FailureClass::Protocol,
                "proxy closed the connection during CONNECT",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().next().unwrap_or("");
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(200..=299) => Ok(()),
        Some(c) => Err(Outcome::down(
            FailureClass::HttpStatus,
            format!("proxy refused CONNECT to {target}: HTTP {c}"),
        )),
        None => Err(Outcome::down(
            FailureClass::Protocol,
            format!("proxy sent a malformed CONNECT response: {line:?}"),
        )),
    }
}

fn hyper_err(e: hyper::Error, phase: Phase) -> Outcome {
    let class = if e.is_timeout() {
        FailureClass::Timeout
    } else {
        FailureClass::Protocol
    };
    Outcome::down(class, format!("HTTP error while {}: {e}", phase.name()))
}

/// Drives a hyper connection and the request future together, in this task.
async fn drive<C, W, T>(conn: C, work: W) -> Result<T, Outcome>
where
    C: Future<Output = Result<(), hyper::Error>>,
    W: Future<Output = Result<T, Outcome>>,
{
    tokio::pin!(conn);
    tokio::pin!(work);
    let mut conn_done = false;
    loop {
        tokio::select! {
            r = &mut work => return r,
            c = &mut conn, if !conn_done => {
                conn_done = true;
                if let Err(e) = c {
                    return Err(hyper_err(e, Phase::FirstByte));
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn one_request(
    h: &HttpSpec,
    url: &Uri,
    method: &http::Method,
    body: Option<Bytes>,
    r: &mut CheckResult,
    d: &mut HttpDetail,
    phase: &mut Phase,
    deadline: Instant,
) -> Result<Response, Outcome> {
    let (_, target, https) = parse_url(&url.to_string())
        .map_err(|e| Outcome::down(FailureClass::Protocol, e.to_string()))?;
    let (_, origin, origin_https) = parse_url(&h.url.to_string())
        .map_err(|e| Outcome::down(FailureClass::Protocol, e.to_string()))?;
    let same_host = target.host.eq_ignore_ascii_case(&origin.host);
    let same_origin = same_host && target.port == origin.port && https == origin_https;
    d.final_url = url.to_string();
    *d = HttpDetail {
        redirects: d.redirects,
        final_url: d.final_url.clone(),
        tls_verify_skipped: d.tls_verify_skipped,
        ..Default::default()
    };
    let hop_start = Instant::now();
    *phase = Phase::Dns;
    let dial = h.proxy.as_ref().unwrap_or(&target);
    let addr = resolve(&dial.host, dial.port, deadline).await?;
    d.dns_us = micros(hop_start.elapsed());
    r.resolved_address = addr.to_string();
    *phase = Phase::Connect;
    let t = Instant::now();
    let mut tcp = crate::tcp::connect(
        addr,
        deadline,
        deadline.saturating_duration_since(hop_start),
    )
    .await?;
    d.connect_us = micros(t.elapsed());
    let absolute_form = h.proxy.is_some() && !https;
    if h.proxy.is_some() && https {
        *phase = Phase::Proxy;
        connect_tunnel(&mut tcp, &target).await?;
    }
    let mut h2 = false;
    let io: Box<dyn Io> = if https {
        *phase = Phase::Tls;
        let t = Instant::now();
        // The configured server name belongs to the configured host; a
        // redirect to another host is verified against that host's name.
        let name = match &h.tls.server_name {
            Some(n) if same_host => n.as_str(),
            _ => &target.host,
        };
        let server_name =
            crate::tls::server_name(name).map_err(|e| Outcome::unknown(e.to_string()))?;
        let config = h
            .tls
            .client_config()
            .map_err(|e| Outcome::unknown(format!("cannot set up TLS: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(server_name, tcp)
            .await
            .map_err(|e| crate::tls::tls_failure(&e))?;
        d.tls_us = micros(t.elapsed());
        let conn = tls.get_ref().1;
        h2 = conn.alpn_protocol() == Some(b"h2");
        d.cert_days_left = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| crate::tls::cert_days_left(c));
        d.tls_verify_skipped = h.tls.insecure;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let use_h2 = match h.version {
        HttpVersionPref::Http2 => true,
        HttpVersionPref::Http1 => false,
        HttpVersionPref::Auto => h2,
    };
    let req_uri: Uri = if use_h2 || absolute_form {
        url.clone()
    } else {
        url.path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .parse()
            .map_err(|_| Outcome::down(FailureClass::Protocol, "bad request path"))?
    };
    let mut builder = Request::builder()
        .method(method.clone())
        .uri(req_uri)
        .header(
            header::USER_AGENT,
            concat!("owlet-probe/", env!("CARGO_PKG_VERSION")),
        );
    if !use_h2 {
        let host = url.authority().map(|a| a.as_str()).unwrap_or(&target.host);
        builder = builder.header(header::HOST, host);
    }
    let mut req = builder
        .body(Full::new(body.unwrap_or_default()))
        .map_err(|e| Outcome::unknown(format!("cannot build the request: {e}")))?;
    for (k, v) in &h.headers {
        // Credentials are for the configured origin only: never sent to
        // another scheme, host or port a redirect points at.
        if !same_origin && is_credential_header(k) {
            continue;
        }
        req.headers_mut().insert(k.clone(), v.clone());
    }
    *phase = Phase::FirstByte;
    let sent = Instant::now();
    let max = usize::try_from(h.max_body_bytes).unwrap_or(usize::MAX);
    let keep_body = h.contains.is_some() || h.regex.is_some();
    let io = TokioIo::new(io);
    // One path for both versions: only the handshake differs.
    let (mut sender, conn, version) = if use_h2 {
        let (s, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| hyper_err(e, Phase::FirstByte))?;
        (Sender::H2(s), Box::pin(c) as Conn, "HTTP/2")
    } else {
        let (s, c) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| hyper_err(e, Phase::FirstByte))?;
        (Sender::H1(s), Box::pin(c) as Conn, "HTTP/1.1")
    };
    d.http_version = version.into();
    drive(conn, async {
        let resp = sender
            .send(req)
            .await
            .map_err(|e| hyper_err(e, Phase::FirstByte))?;
        read_response(resp, d, phase, sent, keep_body, max).await
    })
    .await
}

/// A hyper connection task of either version (driven by [`drive`]).
type Conn = std::pin::Pin<Box<dyn Future<Output = Result<(), hyper::Error>> + Send>>;

/// The request half of a hyper connection of either version.
enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error> {
        match self {
            Sender::H1(s) => s.send_request(req).await,
            Sender::H2(s) => s.send_request(req).await,
        }
    }
}

/// Reads the body up to `max` bytes. With `keep`, the bytes are buffered
/// for `contains` / `regex`; without, they are only counted and dropped.
async fn read_response(
    resp: hyper::Response<hyper::body::Incoming>,
    d: &mut HttpDetail,
    phase: &mut Phase,
    sent: Instant,
    keep: bool,
    max: usize,
) -> Result<Response, Outcome> {
    d.first_byte_us = micros(sent.elapsed());
    *phase = Phase::Body;
    let (parts, mut body) = resp.into_parts();
    d.status_code = u32::from(parts.status.as_u16());
    if parts.version == http::Version::HTTP_10 {
        d.http_version = "HTTP/1.0".into();
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut read = 0usize;
    let mut truncated = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| hyper_err(e, Phase::Body))?;
        if let Ok(data) = frame.into_data() {
            let room = max.saturating_sub(read);
            let take = data.len().min(room);
            if keep {
                buf.extend_from_slice(&data[..take]);
            }
            read += take;
            d.body_bytes = read as u64;
            if data.len() > room {
                truncated = true;
                break;
            }
        }
    }
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        body: buf,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let base: Uri = "http://a.example:8080/x/y?q=1".parse().unwrap();
        assert_eq!(
            resolve_location(&base, "/z").unwrap().to_string(),
            "http://a.example:8080/z"
        );
        assert_eq!(
            resolve_location(&base, "z").unwrap().to_string(),
            "http://a.example:8080/x/z"
        );
        assert_eq!(
            resolve_location(&base, "https://b/").unwrap().to_string(),
            "https://b/"
        );
        assert_eq!(
            resolve_location(&base, "//c/d").unwrap().to_string(),
            "http://c/d"
        );
    }
}
