//! TCP checks against real listeners, a closed port, a blackholed and an
//! unreachable address in a network namespace, banner servers and TLS.
mod common;

use std::time::Duration;

use common::*;
use owlet_probe::{CheckTypeName, run_check};
use owlet_proto::v1::{FailureClass, State, check_result::Detail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn tcp_detail(r: &owlet_proto::v1::CheckResult) -> &owlet_proto::v1::TcpDetail {
    match &r.detail {
        Some(Detail::Tcp(d)) => d,
        other => panic!("no tcp detail: {other:?}"),
    }
}

#[tokio::test]
async fn open_port_is_up_and_closed_port_is_refused() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let _ = l.accept().await;
        }
    });
    let r = run_check(&spec(&check(
        CheckTypeName::Tcp,
        &format!("127.0.0.1:{port}"),
    )))
    .await;
    assert_result(&r, State::Up, FailureClass::Unspecified);
    assert_eq!(r.resolved_address, format!("127.0.0.1:{port}"));

    let closed = free_tcp_port();
    let r = run_check(&spec(&check(
        CheckTypeName::Tcp,
        &format!("127.0.0.1:{closed}"),
    )))
    .await;
    assert_result(&r, State::Down, FailureClass::Refused);
    assert!(r.message.contains("refused"), "{}", r.message);

    // IPv6 loopback with bracket syntax.
    let l6 = TcpListener::bind("[::1]:0").await.unwrap();
    let p6 = l6.local_addr().unwrap().port();
    let r = run_check(&spec(&check(CheckTypeName::Tcp, &format!("[::1]:{p6}")))).await;
    assert_result(&r, State::Up, FailureClass::Unspecified);
}

#[tokio::test]
async fn unresolvable_name_is_dns() {
    let r = run_check(&spec(&check(CheckTypeName::Tcp, "no-such-host.invalid:80"))).await;
    assert_result(&r, State::Down, FailureClass::Dns);
    assert_eq!(r.resolved_address, "");
}

#[test]
fn blackholed_address_times_out_and_unreachable_is_unreachable() {
    let ns = Netns::new();
    // Two /26s routed (in the client namespace) through the peer namespace:
    // one blackholed there (silent drop: timeout), one "unreachable" (ICMP
    // host unreachable back). Both namespaces are the test's own.
    let dark = "198.18.7.0/26";
    let unreach = "198.18.7.64/26";
    ns.exec("sysctl -qw net.ipv4.ip_forward=1");
    ns.exec(&format!("ip route add blackhole {dark}"));
    ns.exec(&format!("ip route add unreachable {unreach}"));
    ns.exec_client(&format!("ip route add {dark} via {}", ns.peer()));
    ns.exec_client(&format!("ip route add {unreach} via {}", ns.peer()));

    let r =
        ns.run_check("id = \"t\"\ntype = \"tcp\"\ntarget = \"198.18.7.5:80\"\ntimeout = \"800ms\"");
    assert_result(&r, State::Down, FailureClass::Timeout);

    let r =
        ns.run_check("id = \"t\"\ntype = \"tcp\"\ntarget = \"198.18.7.70:80\"\ntimeout = \"3s\"");
    assert_result(&r, State::Down, FailureClass::Unreachable);
}

/// Not a test: runs one check inside a test namespace for [`Netns::run_check`].
#[test]
#[ignore]
fn check_in_namespace() {
    check_in_namespace_helper();
}

async fn banner_server(banner: &'static [u8], echo: bool) -> u16 {
    serve(move |mut s| async move {
        let _ = s.write_all(banner).await;
        if echo {
            let mut buf = [0u8; 64];
            if let Ok(n) = s.read(&mut buf).await {
                let _ = s.write_all(b"ECHO ").await;
                let _ = s.write_all(&buf[..n]).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await
}

#[tokio::test]
async fn banner_expect_and_send() {
    let port = banner_server(b"SSH-2.0-OpenSSH_9.2 test\r\n", false).await;
    let mut c = check(CheckTypeName::Tcp, &format!("127.0.0.1:{port}"));
    c.expect = Some("SSH-2.0".into());
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Up, FailureClass::Unspecified);
    assert!(tcp_detail(&r).banner.starts_with("SSH-2.0-OpenSSH"));

    c.expect = Some("220 ".into());
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Down, FailureClass::ContentMismatch);
    assert!(
        r.message.contains("SSH-2.0"),
        "mismatch message shows what came: {}",
        r.message
    );

    let port = banner_server(b"220 mail ESMTP\r\n", true).await;
    let mut c = check(CheckTypeName::Tcp, &format!("127.0.0.1:{port}"));
    c.send = Some("PING-42\r\n".into());
    c.expect = Some("ECHO PING-42".into());
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Up, FailureClass::Unspecified);
}

#[tokio::test]
async fn silent_server_with_expect_times_out_within_timeout() {
    let (port, _server) = silent_server().await;
    let mut c = check(CheckTypeName::Tcp, &format!("127.0.0.1:{port}"));
    c.expect = Some("hello".into());
    c.timeout = Duration::from_millis(500);
    let t = std::time::Instant::now();
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Down, FailureClass::Timeout);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "check must stop at its timeout"
    );
}

#[tokio::test]
async fn tls_handshake_cert_days_and_validation() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_file = write(dir.path(), "ca.pem", ca.pem.as_bytes());
    let (cert, key) = ca.issue_valid(&["localhost"], 5);
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert.as_bytes())
        .map(|c| c.unwrap())
        .collect();
    let key = rustls_pemfile::private_key(&mut key.as_bytes())
        .unwrap()
        .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let port = serve(move |s| {
        let a = acceptor.clone();
        async move {
            if let Ok(mut t) = a.accept(s).await {
                let _ = t.write_all(b"+OK tls banner\r\n").await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    })
    .await;
    // Trusted CA, name matches, 5 days left < 14 day threshold: DEGRADED.
    let mut c = check(CheckTypeName::Tcp, &format!("localhost:{port}"));
    c.tls = Some(true);
    c.ca = Some(ca_file.clone());
    c.expect = Some("+OK".into());
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Degraded, FailureClass::CertExpiry);
    let d = tcp_detail(&r);
    assert!(d.tls_handshake_us > 0);
    assert!(
        matches!(d.cert_days_left, Some(4..=5)),
        "{:?}",
        d.cert_days_left
    );

    c.cert_expiry_warn_days = Some(2);
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Up, FailureClass::Unspecified);

    // System roots do not know the test CA.
    let mut c2 = check(CheckTypeName::Tcp, &format!("localhost:{port}"));
    c2.tls = Some(true);
    let r = run_check(&spec(&c2)).await;
    assert_result(&r, State::Down, FailureClass::Tls);
}
