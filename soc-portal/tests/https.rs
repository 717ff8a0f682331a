//! The real listener: HTTPS with the configured certificate, the same
//! router behind it, nothing served in plain HTTP.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use owlet_soc_portal::Settings;
use owlet_soc_portal::server::Portal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_only_with_the_headers() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("portal.pem"), dir.path().join("portal.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    owlet_tls::files::write_secret_file(&key_path, cert.signing_key.serialize_pem().as_bytes())
        .unwrap();
    let settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert: cert_path,
        key: key_path,
        session_idle: Duration::from_secs(1800),
        lockout_after: 5,
        lockout_for: Duration::from_secs(900),
        root: dir.path().to_path_buf(),
        contacts_root: dir.path().to_path_buf(),
        data: owlet_soc_portal::DataSettings::Embedded {
            control_db: dir.path().join("soc.db"),
        },
        tenant_zones: BTreeMap::new(),
        silent_after: Duration::from_secs(90),
        notify: None,
        ca_dir: None,
        soc_address: "127.0.0.1:4443".to_string(),
        oidc: None,
    };
    let portal = Portal::bind(settings).await.unwrap();
    let addr = portal.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(portal.run(async {
        let _ = stop_rx.await;
    }));

    // HTTPS, trusting exactly this certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"GET /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.ok();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("content-security-policy: default-src 'self'"));
    assert!(response.contains("__Host-owlet_login="));
    assert!(response.contains("<form method=\"post\" action=\"/login\""));

    // Plain HTTP gets no page.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /login HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut plain = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut plain)).await;
    assert!(
        !String::from_utf8_lossy(&plain).contains("<form"),
        "served over plain HTTP"
    );

    stop_tx.send(()).unwrap();
    server.await.unwrap();
}
