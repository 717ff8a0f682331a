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
use tokio::net::{TcpListener, TcpStream};

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
    assert_result(&r, State::Down, FailureClass::Tls);
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
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
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
            });
        }
    });
    port
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
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let _ = s.read(&mut [0u8; 1024]).await;
            let _ = s
                .write_all(b"\x00\x01garbage that is not HTTP\r\n\r\n")
                .await;
        }
    });
    let r = run_check(&spec(&url_check(&format!("http://127.0.0.1:{port}/")))).await;
    assert_result(&r, State::Down, FailureClass::Protocol);
}

/// A minimal HTTP proxy: CONNECT tunnels and absolute-form forwarding.
async fn proxy(count: Arc<AtomicUsize>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let count = count.clone();
            tokio::spawn(async move {
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
            });
        }
    });
    port
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
