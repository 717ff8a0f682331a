//! URL checks against a real nginx (HTTP, HTTPS with a test CA, HTTP/2,
//! an expired certificate, redirects, wrong status, content checks, a huge
//! body), a slowloris server and a CONNECT / absolute-form proxy.
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use owlet_probe::{CheckTypeName, run_check};
use owlet_proto::v1::{CheckResult, FailureClass, HttpDetail, State, check_result::Detail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn http(r: &CheckResult) -> &HttpDetail {
    match &r.detail {
        Some(Detail::Http(d)) => d,
        other => panic!("no http detail: {other:?}"),
    }
}

fn url_check(url: &str) -> owlet_probe::CheckConfig {
    check(CheckTypeName::Http, url)
}

#[tokio::test]
async fn nginx_http_https_redirects_status_content() {
    let n = Nginx::start();

    // Plain HTTP with body checks.
    let mut c = url_check(&n.url("/index.html"));
    c.contains = Some("owlet says hello".into());
    c.regex = Some(r"build \d{4}".into());
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Up, FailureClass::Unspecified);
    let d = http(&r);
    assert_eq!((d.status_code, d.http_version.as_str()), (200, "HTTP/1.1"));
    assert!(d.total_us >= d.first_byte_us && d.body_bytes > 0);

    // Content mismatch.
    c.contains = Some("goodbye".into());
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Down, FailureClass::ContentMismatch);
    c.contains = None;
    c.regex = Some(r"build [a-z]+".into());
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Down, FailureClass::ContentMismatch);

    // Wrong status, and an explicit expected set that includes it.
    let r = run_check(&spec(&url_check(&n.url("/down")))).await;
    assert_result(&r, State::Down, FailureClass::HttpStatus);
    assert_eq!(http(&r).status_code, 503);
    let mut c = url_check(&n.url("/down"));
    c.expect_status = Some(vec![503]);
    assert_result(
        &run_check(&spec(&c)).await,
        State::Up,
        FailureClass::Unspecified,
    );
    let r = run_check(&spec(&url_check(&n.url("/missing")))).await;
    assert_result(&r, State::Down, FailureClass::HttpStatus);

    // Redirects: followed, counted; not followed; loop detected.
    let r = run_check(&spec(&url_check(&n.url("/redirect")))).await;
    assert_result(&r, State::Up, FailureClass::Unspecified);
    assert_eq!(http(&r).redirects, 1);
    assert!(http(&r).final_url.ends_with("/index.html"));
    let mut c = url_check(&n.url("/redirect"));
    c.follow_redirects = Some(false);
    c.expect_status = Some(vec![302]);
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Up, FailureClass::Unspecified);
    assert_eq!(http(&r).redirects, 0);
    let r = run_check(&spec(&url_check(&n.url("/loop")))).await;
    assert_result(&r, State::Down, FailureClass::HttpStatus);
    assert!(r.message.contains("redirects"), "{}", r.message);

    // HTTP -> HTTPS redirect validated against the test CA, over HTTP/2.
    let mut c = url_check(&n.url("/to-https"));
    c.ca = Some(n.ca_file.clone());
    c.contains = Some("hello".into());
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Up, FailureClass::Unspecified);
    let d = http(&r);
    assert_eq!(d.redirects, 1);
    assert_eq!(d.http_version, "HTTP/2");
    assert!(d.tls_us > 0);
    assert!(
        matches!(d.cert_days_left, Some(88..=90)),
        "{:?}",
        d.cert_days_left
    );

    // HTTPS forced to HTTP/1.1.
    let mut c = url_check(&n.https_url("/index.html"));
    c.ca = Some(n.ca_file.clone());
    c.http_version = Some("1.1".into());
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Up, FailureClass::Unspecified);
    assert_eq!(http(&r).http_version, "HTTP/1.1");

    // Certificate within the warning window: degraded.
    let mut c = url_check(&n.https_url("/index.html"));
    c.ca = Some(n.ca_file.clone());
    c.cert_expiry_warn_days = Some(100);
    assert_result(
        &run_check(&spec(&c)).await,
        State::Degraded,
        FailureClass::CertExpiry,
    );

    // Unknown CA (system roots): TLS failure.
    let r = run_check(&spec(&url_check(&n.https_url("/index.html")))).await;
    assert_result(&r, State::Down, FailureClass::Tls);
}

#[tokio::test]
async fn expired_certificate_and_insecure_skip_verify() {
    let n = Nginx::start();
    let url = format!("https://localhost:{}/index.html", n.expired);
    let mut c = url_check(&url);
    c.ca = Some(n.ca_file.clone());
    let r = run_check(&spec(&c)).await;
    // Rejected because it expired: CERT_EXPIRY, not a generic TLS failure.
    assert_result(&r, State::Down, FailureClass::CertExpiry);
    assert!(
        r.message.to_lowercase().contains("expired"),
        "{}",
        r.message
    );

    // Skipping verification still reports the expiry, and says it skipped.
    let mut c = url_check(&url);
    c.insecure_skip_verify = Some(true);
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Down, FailureClass::CertExpiry);
    let d = http(&r);
    assert!(d.tls_verify_skipped);
    assert!(d.cert_days_left.unwrap() < -365);
    assert!(r.message.contains("DISABLED"), "{}", r.message);
}

#[tokio::test]
async fn huge_body_is_read_bounded() {
    let n = Nginx::start();
    let mut c = url_check(&n.url("/big.bin"));
    c.max_body_bytes = Some(64 * 1024);
    c.contains = Some("xxxx".into());
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Up, FailureClass::Unspecified);
    assert_eq!(http(&r).body_bytes, 64 * 1024);
    assert!(r.message.contains("truncated"), "{}", r.message);
    c.contains = Some("not-in-there".into());
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Down, FailureClass::ContentMismatch);
    assert!(r.message.contains("first 65536 bytes"), "{}", r.message);
}

/// A server that answers one byte at a time, forever (slowloris), either
/// in the headers or in the body.
async fn trickle_server(in_body: bool) -> u16 {
    serve(move |mut s| async move {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        if in_body {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
                .await;
        } else {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n").await;
        }
        loop {
            if s.write_all(b"X").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

#[tokio::test]
async fn slowloris_is_a_timeout_and_never_stalls() {
    for in_body in [false, true] {
        let port = trickle_server(in_body).await;
        let mut c = url_check(&format!("http://127.0.0.1:{port}/"));
        c.timeout = Duration::from_millis(800);
        let t = Instant::now();
        let r = run_check(&spec(&c)).await;
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "check outlived its timeout"
        );
        assert_result(&r, State::Down, FailureClass::Timeout);
        let want = if in_body {
            "reading the body"
        } else {
            "response headers"
        };
        assert!(r.message.contains(want), "{}", r.message);
    }
}

#[tokio::test]
async fn garbage_response_is_protocol_error() {
    let port = serve(|mut s| async move {
        let _ = s.read(&mut [0u8; 1024]).await;
        let _ = s
            .write_all(b"\x00\x01garbage that is not HTTP\r\n\r\n")
            .await;
    })
    .await;
    let r = run_check(&spec(&url_check(&format!("http://127.0.0.1:{port}/")))).await;
    assert_result(&r, State::Down, FailureClass::Protocol);
}

/// A minimal HTTP proxy: CONNECT tunnels and absolute-form forwarding.
async fn proxy(count: Arc<AtomicUsize>) -> u16 {
    serve(move |mut s| {
        let count = count.clone();
        async move {
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if s.read(&mut b).await.unwrap_or(0) == 0 {
                    return;
                }
                head.push(b[0]);
            }
            let text = String::from_utf8_lossy(&head).to_string();
            let mut parts = text.split_whitespace();
            let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            count.fetch_add(1, Ordering::SeqCst);
            if method == "CONNECT" {
                let upstream = target.replace("localhost", "127.0.0.1");
                let Ok(mut up) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = s
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
            } else {
                assert!(
                    target.starts_with("http://"),
                    "proxy got origin-form: {text}"
                );
                let hostport = target
                    .trim_start_matches("http://")
                    .split('/')
                    .next()
                    .unwrap()
                    .to_string();
                let Ok(mut up) = TcpStream::connect(hostport).await else {
                    return;
                };
                let _ = up.write_all(&head).await;
                let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
            }
        }
    })
    .await
}

#[tokio::test]
async fn through_a_proxy() {
    let n = Nginx::start();
    let count = Arc::new(AtomicUsize::new(0));
    let p = proxy(count.clone()).await;
    let mut c = url_check(&n.https_url("/index.html"));
    c.ca = Some(n.ca_file.clone());
    c.proxy = Some(format!("http://127.0.0.1:{p}"));
    c.contains = Some("hello".into());
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Up, FailureClass::Unspecified);
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "the CONNECT went through the proxy"
    );
    assert_eq!(r.resolved_address, format!("127.0.0.1:{p}"));

    let mut c = url_check(&n.url("/index.html"));
    c.proxy = Some(format!("http://127.0.0.1:{p}"));
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Up, FailureClass::Unspecified);
    assert_eq!(count.load(Ordering::SeqCst), 2);

    // A proxy that is not there.
    let mut c = url_check(&n.url("/index.html"));
    c.proxy = Some(format!("http://127.0.0.1:{}", free_tcp_port()));
    assert_result(
        &run_check(&spec(&c)).await,
        State::Down,
        FailureClass::Refused,
    );
}

/// Answers `/cross` with a redirect to `other` (another port, so another
/// origin), `/same` with a redirect to `/end` here, `/big` with a large
/// body, anything else with 200; records every request head.
async fn recording_server(seen: Arc<std::sync::Mutex<Vec<String>>>, other: Option<u16>) -> u16 {
    serve(move |mut s| {
            let seen = seen.clone();
        async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_lowercase();
                seen.lock().unwrap().push(head.clone());
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let resp = match (path.as_str(), other) {
                    ("/cross", Some(o)) => format!(
                        "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{o}/end\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    ),
                    ("/same", _) => "HTTP/1.1 302 Found\r\nLocation: /end\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                    ("/big", _) => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8000000\r\nConnection: close\r\n\r\n")
                            .await;
                        let chunk = vec![b'z'; 64 * 1024];
                        for _ in 0..(8_000_000 / chunk.len() + 1) {
                            if s.write_all(&chunk).await.is_err() {
                                return;
                            }
                        }
                        return;
                    }
                    _ => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_string(),
                };
                let _ = s.write_all(resp.as_bytes()).await;
        }
    })
    .await
}

#[tokio::test]
async fn credentials_are_not_sent_to_another_origin_after_a_redirect() {
    let seen_b = Arc::new(std::sync::Mutex::new(Vec::new()));
    let b = recording_server(seen_b.clone(), None).await;
    let seen_a = Arc::new(std::sync::Mutex::new(Vec::new()));
    let a = recording_server(seen_a.clone(), Some(b)).await;
    let headers = [
        ("Authorization", "Bearer s3cr3t-token"),
        ("Cookie", "session=s3cr3t-cookie"),
        ("Proxy-Authorization", "Basic s3cr3t-proxy"),
        ("X-Trace", "keep-me"),
    ];
    let mut c = url_check(&format!("http://127.0.0.1:{a}/cross"));
    c.headers = Some(
        headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Up, FailureClass::Unspecified);
    assert_eq!(http(&r).redirects, 1);
    let a_req = seen_a.lock().unwrap().join("\n");
    assert!(a_req.contains("s3cr3t-token") && a_req.contains("s3cr3t-cookie"));
    let b_req = seen_b.lock().unwrap().join("\n");
    assert!(b_req.contains("x-trace: keep-me"), "{b_req}");
    assert!(!b_req.contains("s3cr3t"), "credentials leaked: {b_req}");

    // Same origin: the credentials follow the redirect.
    seen_a.lock().unwrap().clear();
    c.target = format!("http://127.0.0.1:{a}/same");
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Up, FailureClass::Unspecified);
    let reqs = seen_a.lock().unwrap().clone();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert!(reqs[1].contains("s3cr3t-token"), "{}", reqs[1]);
}

#[tokio::test]
async fn body_without_content_checks_is_counted_not_kept() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let port = recording_server(seen, None).await;
    let mut c = url_check(&format!("http://127.0.0.1:{port}/big"));
    c.max_body_bytes = Some(100_000);
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Up, FailureClass::Unspecified);
    assert_eq!(http(&r).body_bytes, 100_000);
    assert!(r.message.contains("truncated"), "{}", r.message);
    // Default limit (1 MiB) still bounds the read.
    let c = url_check(&format!("http://127.0.0.1:{port}/big"));
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Up, FailureClass::Unspecified);
    assert_eq!(http(&r).body_bytes, 1024 * 1024);
    // Small body: counted exactly.
    let c = url_check(&format!("http://127.0.0.1:{port}/small"));
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Up, FailureClass::Unspecified);
    assert_eq!(http(&r).body_bytes, 2);
}
