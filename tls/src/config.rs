//! rustls configurations for both ends of the agent ↔ SOC connection.
//!
//! Both ends:
//! - use the ring crypto provider, named explicitly (no process-wide default);
//! - speak TLS 1.3 only;
//! - advertise ALPN `h2` (gRPC);
//! - trust only the CA certificate(s) from the configured file — no system or
//!   bundled roots, so a certificate from any other CA, however public, is
//!   refused (pinning to the owlet CA).
//!
//! Agent side ([`client_config`]): presents the agent certificate and key;
//! verifies the SOC with rustls' standard WebPKI verifier against the pinned
//! CA. **The server name is checked by rustls against the `ServerName` the
//! caller passes at connect time** (tonic: the domain of the endpoint URI or
//! `ClientTlsConfig::domain_name`; raw rustls: `ClientConnection::new`). Pass
//! the name that is in the SOC certificate's SANs, never a name derived from
//! data the peer sent.
//!
//! SOC side ([`server_config`]): client certificates are REQUIRED and verified
//! with rustls' `WebPkiClientVerifier` against the client CA (chain, validity
//! period, clientAuth EKU) and, with [`server_config_with_crls`], against
//! the CRLs: a revoked certificate is refused at the handshake with the TLS
//! alert `certificate_revoked`; a certificate whose revocation status the
//! CRLs cannot tell is refused too (fail closed; [`crate::load_crls`]
//! checks at load time that every client CA has its CRL). The verifier does not look at the identity: after
//! the handshake the caller must read it with
//! [`identity_from_peer_certs`](crate::identity_from_peer_certs) and drop the
//! connection if that fails.
//!
//! No custom verifier code lives here on purpose: everything security-relevant
//! is rustls/webpki's audited code, configured narrowly.
//! Not implemented: OCSP; revocation is by CRL only.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateRevocationListDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::{Result, TlsError};
use crate::files::{load_certs, load_private_key};

/// The only protocol version either end accepts.
pub static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// ALPN protocol both ends advertise (HTTP/2, for gRPC).
pub const ALPN_H2: &[u8] = b"h2";

/// The crypto provider both ends use: ring, with its default suites and groups.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Agent-side configuration: trust only the CA(s) in `ca`, authenticate with
/// the chain in `cert` and the key in `key`.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> Result<ClientConfig> {
    let roots = root_store(ca)?;
    let (chain, private_key) = (load_certs(cert)?, load_private_key(key)?);
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(TlsError::Config)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, private_key)
        .map_err(cert_key_error(cert, key))?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// SOC-side configuration: serve the chain in `cert` with the key in `key`,
/// and require every client to present a certificate issued by a CA in
/// `client_ca`.
pub fn server_config(cert: &Path, key: &Path, client_ca: &Path) -> Result<ServerConfig> {
    server_config_with_crls(cert, key, client_ca, Vec::new())
}

/// [`server_config`] that also refuses client certificates revoked by
/// `crls` (from [`crate::load_crls`]; empty: no revocation check).
pub fn server_config_with_crls(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<ServerConfig> {
    let roots = root_store(client_ca)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .with_crls(crls)
        .build()
        .map_err(|e| TlsError::BadCaCert {
            path: client_ca.to_owned(),
            detail: e.to_string(),
        })?;
    let (chain, private_key) = (load_certs(cert)?, load_private_key(key)?);
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, private_key)
        .map_err(cert_key_error(cert, key))?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// rustls refused the certificate chain / private key pair (e.g. they do
/// not match).
fn cert_key_error<'a>(
    cert: &'a Path,
    key: &'a Path,
) -> impl FnOnce(rustls::Error) -> TlsError + 'a {
    move |source| TlsError::CertKey {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    }
}

/// A root store holding exactly the certificates in `path` — nothing else.
fn root_store(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::BadCaCert {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    }
    Ok(roots)
}
