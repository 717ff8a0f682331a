//! The SOC refuses connections without a valid client certificate: none at
//! all, one from another CA, an expired one. Nothing is stored for them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use owlet_tests::*;
use rustls::pki_types::ServerName;

/// Raw TLS client to the SOC: completes the handshake, sends the HTTP/2
/// preface and returns what the server answers before closing (or the error).
fn raw_tls(
    soc: &Soc,
    client_cert: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<usize, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in owlet_tls::load_certs(&soc.ca_dir.join("ca.pem")).unwrap() {
        roots.add(cert).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                owlet_tls::load_certs(cert).unwrap(),
                owlet_tls::load_private_key(key).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(soc.address()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .and_then(|_| tls.flush())
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1024];
    match tls.read(&mut buf) {
        Ok(0) => Err("closed without answering".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn connection_without_client_certificate_is_refused() {
    let mut soc = Soc::init();
    soc.start();
    let good = soc.issue("acme", "good");

    // Control: the same raw client with a valid certificate gets an HTTP/2 answer.
    let answered = raw_tls(
        &soc,
        Some((&good.dir.join("agent.pem"), &good.dir.join("agent.key"))),
    );
    assert!(
        answered.is_ok(),
        "a valid client certificate was not served: {answered:?}"
    );

    let before = soc.refusals();
    let refused = raw_tls(&soc, None);
    assert!(
        refused.is_err(),
        "the SOC answered a client without certificate ({refused:?} bytes)"
    );
    wait_until("the SOC to log the refusal", DEADLINE, || {
        soc.refusals() > before
    });
    assert_eq!(soc.db().count(), 0, "events stored");
}

/// Runs an agent with the given credentials; asserts the SOC refuses it at
/// the TLS level and stores nothing.
fn assert_agent_refused(soc: &Soc, mut agent: Agent, tenant: &str, id: &str) {
    let before = soc.refusals();
    agent.start();
    wait_until(
        "the SOC to refuse the agent at least twice",
        DEADLINE,
        || soc.refusals() >= before + 2,
    );
    sleep(Duration::from_secs(1));
    let health = agent.health().expect("agent health");
    assert_ne!(
        health["metrics"]["connection"], "connected",
        "agent says it is connected: {health}"
    );
    assert!(
        !agent.log().contains("connected to the SOC\""),
        "agent log says it connected"
    );
    assert!(
        soc.db().agent(tenant, id).is_none(),
        "agent row stored for refused {tenant}/{id}"
    );
    assert_eq!(soc.db().count(), 0, "events stored for a refused agent");
    assert!(agent.stop().success());
}

#[test]
fn certificate_from_another_ca_is_refused() {
    let mut soc = Soc::init();
    soc.start();
    let other = tempfile::tempdir().unwrap();
    let other_ca = other.path().join("ca");
    owlet_ca::init(&other_ca, &["localhost".to_string()], 30).unwrap();
    let out = other.path().join("agent");
    let paths = owlet_ca::issue(
        &other_ca,
        &owlet_tls::Identity::new("acme", "foreign").unwrap(),
        &out,
        30,
    )
    .unwrap();

    // A config pinning the real SOC CA but holding the foreign certificate.
    let mut agent = soc.issue("acme", "placeholder");
    agent.replace_credentials(&paths.cert, &paths.key);
    agent.synthetic(100, 100);
    assert_agent_refused(&soc, agent, "acme", "foreign");
    assert!(
        soc.db().agents().is_empty(),
        "agent rows stored: {:?}",
        soc.db().agents()
    );
}

#[test]
fn expired_certificate_is_refused() {
    let mut soc = Soc::init();
    soc.start();
    let tmp = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let paths = owlet_ca::issue_with_validity(
        &soc.ca_dir,
        &owlet_tls::Identity::new("acme", "expired").unwrap(),
        tmp.path(),
        now - time::Duration::days(10),
        now - time::Duration::days(1),
    )
    .unwrap();
    let mut agent = soc.issue("acme", "placeholder");
    agent.replace_credentials(&paths.cert, &paths.key);
    agent.synthetic(100, 100);
    assert_agent_refused(&soc, agent, "acme", "expired");
    assert!(
        soc.db().agents().is_empty(),
        "agent rows stored: {:?}",
        soc.db().agents()
    );
}
