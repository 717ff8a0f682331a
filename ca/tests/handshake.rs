//! Real TLS 1.3 handshakes over loopback TCP between `client_config` and
//! `server_config`, with certificates made by `ca::init` / `ca::issue`.
//!
//! Each case asserts *why* a handshake failed (the rustls error on the side
//! that refused), so a refusal for the wrong reason fails the test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use owlet_ca::{self as ca, AgentCertPaths, CaPaths};
use owlet_tls::rustls::{
    self, CertificateError, ClientConfig, ClientConnection, RootCertStore, ServerConfig,
    ServerConnection, StreamOwned, pki_types::ServerName,
};
use owlet_tls::{Identity, client_config, identity_from_peer_certs, load_certs, server_config};
use tempfile::TempDir;
use time::OffsetDateTime;

/// Backstop against a hung peer; not an assertion.
const IO_TIMEOUT: Duration = Duration::from_secs(20);
const SOC_NAME: &str = "soc.test";

struct Pki {
    dir: TempDir,
    ca: CaPaths,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca::init(
            &dir.path().join("ca"),
            &[SOC_NAME.to_string(), "127.0.0.1".to_string()],
            30,
        )
        .unwrap();
        Self { dir, ca }
    }

    fn ca_dir(&self) -> &Path {
        self.ca.ca_key.parent().unwrap()
    }

    fn issue(&self, tenant: &str, agent: &str) -> AgentCertPaths {
        let id = Identity::new(tenant, agent).unwrap();
        let out = self.dir.path().join(format!("{tenant}-{agent}"));
        ca::issue(self.ca_dir(), &id, &out, 7).unwrap()
    }

    fn server(&self) -> ServerConfig {
        server_config(&self.ca.soc_cert, &self.ca.soc_key, &self.ca.ca_cert).unwrap()
    }
}

fn client(agent: &AgentCertPaths) -> ClientConfig {
    client_config(&agent.ca_cert, &agent.cert, &agent.key).unwrap()
}

/// What the server saw on a completed handshake.
#[derive(Debug)]
struct Accepted {
    identity: Identity,
    version: Option<rustls::ProtocolVersion>,
    alpn: Option<Vec<u8>>,
}

/// Runs one connection: the server in a thread, the client here. The server
/// sends "ok" after a completed handshake; the client returns what it read.
fn connect(
    server: ServerConfig,
    client: ClientConfig,
    server_name: &str,
) -> (
    Result<Accepted, rustls::Error>,
    Result<Vec<u8>, std::io::Error>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server_thread = thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        sock.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let conn = ServerConnection::new(Arc::new(server)).unwrap();
        let mut tls = StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                return Err(rustls_error(e));
            }
        }
        let certs = tls.conn.peer_certificates().unwrap_or_default();
        let identity = identity_from_peer_certs(certs).unwrap();
        let accepted = Accepted {
            identity,
            version: tls.conn.protocol_version(),
            alpn: tls.conn.alpn_protocol().map(<[u8]>::to_vec),
        };
        tls.write_all(b"ok").unwrap();
        tls.conn.send_close_notify();
        tls.flush().unwrap();
        Ok(accepted)
    });

    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    sock.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    let conn = ClientConnection::new(Arc::new(client), name).unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    let mut got = vec![0u8; 2];
    let client_result = tls.read_exact(&mut got).map(|()| got);
    drop(tls);

    (server_thread.join().unwrap(), client_result)
}

/// The rustls error inside an io::Error from `complete_io`.
fn rustls_error(e: std::io::Error) -> rustls::Error {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(err) => err.clone(),
        None => rustls::Error::General(format!("io: {e}")),
    }
}

fn client_rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

#[test]
fn issued_agent_connects_and_server_sees_its_identity() {
    let pki = Pki::new();
    let agent = pki.issue("acme", "sensor-1");
    let (server, client_read) = connect(pki.server(), client(&agent), SOC_NAME);
    let accepted = server.unwrap();
    assert_eq!(
        accepted.identity,
        Identity::new("acme", "sensor-1").unwrap()
    );
    assert_eq!(accepted.version, Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(accepted.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(client_read.unwrap(), b"ok");
}

#[test]
fn server_ip_san_is_accepted() {
    let pki = Pki::new();
    let agent = pki.issue("acme", "sensor-2");
    let (server, client_read) = connect(pki.server(), client(&agent), "127.0.0.1");
    assert_eq!(server.unwrap().identity.to_string(), "acme/sensor-2");
    assert_eq!(client_read.unwrap(), b"ok");
}

#[test]
fn client_cert_from_another_ca_is_refused() {
    let pki = Pki::new();
    let other = Pki::new();
    let foreign = other.issue("acme", "sensor-1");
    // The client trusts the right CA (so it accepts the server), but presents
    // a certificate for the same identity signed by another CA.
    let config = client_config(&pki.ca.ca_cert, &foreign.cert, &foreign.key).unwrap();
    let (server, client_read) = connect(pki.server(), config, SOC_NAME);
    let err = server.unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        "{err}"
    );
    assert!(client_read.is_err());
}

#[test]
fn client_without_certificate_is_refused() {
    let pki = Pki::new();
    let mut roots = RootCertStore::empty();
    for cert in load_certs(&pki.ca.ca_cert).unwrap() {
        roots.add(cert).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(owlet_tls::config::provider())
        .with_protocol_versions(owlet_tls::config::PROTOCOL_VERSIONS)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let (server, client_read) = connect(pki.server(), config, SOC_NAME);
    let err = server.unwrap_err();
    assert_eq!(err, rustls::Error::NoCertificatesPresented, "{err}");
    assert!(client_read.is_err());
}

#[test]
fn expired_client_cert_is_refused() {
    let pki = Pki::new();
    let now = OffsetDateTime::now_utc();
    let out = pki.dir.path().join("expired");
    let agent = ca::issue_with_validity(
        pki.ca_dir(),
        &Identity::new("acme", "old").unwrap(),
        &out,
        now - time::Duration::days(10),
        now - time::Duration::days(1),
    )
    .unwrap();
    let (server, client_read) = connect(pki.server(), client(&agent), SOC_NAME);
    let err = server.unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            )
        ),
        "{err}"
    );
    assert!(client_read.is_err());
}

/// The server built with the CA's CRL.
fn server_with_crl(pki: &Pki) -> ServerConfig {
    let crls = owlet_tls::load_crls(&pki.ca_dir().join(ca::CRL_FILE), &pki.ca.ca_cert).unwrap();
    owlet_tls::server_config_with_crls(
        &pki.ca.soc_cert,
        &pki.ca.soc_key,
        &pki.ca.ca_cert,
        crls.ders,
    )
    .unwrap()
}

#[test]
fn revoked_client_cert_is_refused_with_the_revoked_alert() {
    let pki = Pki::new();
    let revoked = pki.issue("acme", "gone");
    let kept = pki.issue("acme", "kept");
    // Before the revocation, with the (empty) CRL, both connect.
    assert!(
        connect(server_with_crl(&pki), client(&revoked), SOC_NAME)
            .0
            .is_ok()
    );
    let id = Identity::new("acme", "gone").unwrap();
    ca::revoke(
        pki.ca_dir(),
        &id,
        &ca::Selection::All,
        ca::Reason::KeyCompromise,
    )
    .unwrap();

    let (server, client_read) = connect(server_with_crl(&pki), client(&revoked), SOC_NAME);
    let err = server.unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::Revoked)
        ),
        "{err}"
    );
    let client_err = client_read.unwrap_err();
    assert!(
        matches!(
            client_rustls_error(&client_err),
            Some(rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateRevoked
            ))
        ),
        "the agent must see why: {client_err}"
    );
    // Another agent of the same CA is not affected; without the CRL the
    // revoked one would still pass (what the CRL check adds).
    assert!(
        connect(server_with_crl(&pki), client(&kept), SOC_NAME)
            .0
            .is_ok()
    );
    assert!(connect(pki.server(), client(&revoked), SOC_NAME).0.is_ok());
}

#[test]
fn client_refuses_server_with_wrong_name() {
    let pki = Pki::new();
    let agent = pki.issue("acme", "sensor-1");
    let (server, client_read) = connect(pki.server(), client(&agent), "other.test");
    let err = client_read.unwrap_err();
    assert!(
        matches!(
            client_rustls_error(&err),
            Some(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "{err}"
    );
    assert!(server.is_err());
}

#[test]
fn client_refuses_server_from_another_ca() {
    // Pinning: a server certificate from a different owlet CA is not trusted,
    // even for the right name.
    let pki = Pki::new();
    let other = Pki::new();
    let agent = pki.issue("acme", "sensor-1");
    let (server, client_read) = connect(other.server(), client(&agent), SOC_NAME);
    let err = client_read.unwrap_err();
    assert_eq!(
        client_rustls_error(&err),
        Some(&rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer
        )),
        "{err}"
    );
    assert!(server.is_err());
}

#[test]
fn tls12_client_is_refused() {
    let pki = Pki::new();
    let agent = pki.issue("acme", "sensor-1");
    let mut roots = RootCertStore::empty();
    for cert in load_certs(&agent.ca_cert).unwrap() {
        roots.add(cert).unwrap();
    }
    let config = ClientConfig::builder_with_provider(owlet_tls::config::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            load_certs(&agent.cert).unwrap(),
            owlet_tls::load_private_key(&agent.key).unwrap(),
        )
        .unwrap();
    let (server, client_read) = connect(pki.server(), config, SOC_NAME);
    assert!(
        matches!(server, Err(rustls::Error::PeerIncompatible(_))),
        "{server:?}"
    );
    assert!(client_read.is_err());
}

#[test]
fn mismatched_cert_and_key_is_a_config_error_naming_both_files() {
    let pki = Pki::new();
    let a = pki.issue("acme", "one");
    let b = pki.issue("acme", "two");
    let err = client_config(&a.ca_cert, &a.cert, &b.key)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&a.cert.display().to_string()), "{err}");
    assert!(err.contains(&b.key.display().to_string()), "{err}");
}
