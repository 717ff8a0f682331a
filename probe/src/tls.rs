//! TLS client configuration for TCP+TLS and HTTPS checks, and certificate
//! expiry.
//!
//! Trust comes from the system roots (loaded once per process, on first use
//! by a TLS check; a failed load is retried, never cached) or from a
//! configured CA file. Skipping verification is possible but never silent:
//! the check result says so (`tls_verify_skipped`, message suffix) and a
//! warning is logged when the check is built. Handshake signatures are still
//! verified when the chain is not.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Why a TLS client configuration cannot be built: the trust it was told
/// to use is not there or not usable.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("no system CA certificates found (install ca-certificates, or set `ca` to a PEM file)")]
    NoSystemRoots,
    #[error("cannot read CA file {}: {source}", path.display())]
    ReadCa { path: PathBuf, source: io::Error },
    #[error("CA file {} is not valid PEM: {source}", path.display())]
    CaPem { path: PathBuf, source: io::Error },
    #[error("CA file {}: unusable certificate: {source}", path.display())]
    CaCertificate {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error(
        "CA file {} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
        path.display()
    )]
    CaEmpty { path: PathBuf },
    #[error("TLS setup failed: {0}")]
    Setup(rustls::Error),
}

/// A name that is neither a DNS name nor an IP address.
#[derive(Debug, thiserror::Error)]
#[error("\"{0}\" is not a valid TLS server name")]
pub struct InvalidServerName(String);

fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// `cell`'s value, or `init`'s if that succeeds (then stored). Errors are
/// not cached: installing CA certificates later fixes the next attempt.
fn cached_ok<T: Clone, E>(cell: &OnceLock<T>, init: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    if let Some(v) = cell.get() {
        return Ok(v.clone());
    }
    let v = init()?;
    Ok(cell.get_or_init(|| v).clone())
}

fn native_roots() -> Result<Arc<RootCertStore>, TlsSetupError> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    cached_ok(&ROOTS, || {
        let loaded = rustls_native_certs::load_native_certs();
        let mut store = RootCertStore::empty();
        let (added, _ignored) = store.add_parsable_certificates(loaded.certs);
        if added == 0 {
            return Err(TlsSetupError::NoSystemRoots);
        }
        Ok(Arc::new(store))
    })
}

fn ca_file_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsSetupError> {
    let data = read_ca(path)?;
    let mut store = RootCertStore::empty();
    let mut n = 0;
    for cert in rustls_pemfile::certs(&mut io::Cursor::new(&data)) {
        let cert = cert.map_err(|source| TlsSetupError::CaPem {
            path: path.to_path_buf(),
            source,
        })?;
        store
            .add(cert)
            .map_err(|source| TlsSetupError::CaCertificate {
                path: path.to_path_buf(),
                source,
            })?;
        n += 1;
    }
    if n == 0 {
        return Err(TlsSetupError::CaEmpty {
            path: path.to_path_buf(),
        });
    }
    Ok(Arc::new(store))
}

fn read_ca(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|source| TlsSetupError::ReadCa {
        path: path.to_path_buf(),
        source,
    })
}

type ConfigKey = (Option<Vec<u8>>, bool, Vec<Vec<u8>>);

/// Client configs are shared between checks with the same trust settings
/// (keyed by the CA file's content, so an edited CA file takes effect on
/// reload): thousands of HTTPS checks then cost one config, not thousands.
fn config_cache()
-> &'static std::sync::Mutex<std::collections::HashMap<ConfigKey, Arc<ClientConfig>>> {
    static C: OnceLock<std::sync::Mutex<std::collections::HashMap<ConfigKey, Arc<ClientConfig>>>> =
        OnceLock::new();
    C.get_or_init(Default::default)
}

/// A client config. `alpn` lists protocols to offer (empty: none).
pub(crate) fn client_config(
    ca: Option<&Path>,
    insecure: bool,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let ca_bytes = ca.map(read_ca).transpose()?;
    let key: ConfigKey = (
        ca_bytes,
        insecure,
        alpn.iter().map(|a| a.to_vec()).collect(),
    );
    let mut cache = config_cache().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = cache.get(&key) {
        return Ok(c.clone());
    }
    if cache.len() > 1024 {
        cache.clear();
    }
    let config = build_config(ca, insecure, alpn)?;
    cache.insert(key, config.clone());
    Ok(config)
}

fn build_config(
    ca: Option<&Path>,
    insecure: bool,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Setup)?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoChainVerification(provider())))
            .with_no_client_auth()
    } else {
        let roots = match ca {
            Some(p) => ca_file_roots(p)?,
            None => native_roots()?,
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Every run makes a full handshake: it is what is being measured, the
    // certificate is re-validated each time, and no session cache is held.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// Parses a TLS server name (DNS name or IP address).
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, InvalidServerName> {
    ServerName::try_from(host.to_string()).map_err(|_| InvalidServerName(host.to_string()))
}

/// Whole days until the certificate's notAfter (negative once expired).
pub(crate) fn cert_days_left(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let not_after = cert.validity().not_after.timestamp();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    Some((not_after - now).div_euclid(86_400))
}

/// A readable reason for a failed handshake.
pub(crate) fn describe_tls_error(e: &io::Error) -> String {
    if let Some(inner) = e.get_ref()
        && let Some(tls) = inner.downcast_ref::<rustls::Error>()
    {
        return match tls {
            rustls::Error::InvalidCertificate(c) => format!("TLS certificate rejected: {c:?}"),
            other => format!("TLS handshake failed: {other}"),
        };
    }
    format!("TLS handshake failed: {e}")
}

/// Class of a failed handshake: CERT_EXPIRY when the certificate was
/// rejected because it has expired, else TLS.
pub(crate) fn tls_failure_class(e: &io::Error) -> owlet_proto::v1::FailureClass {
    use owlet_proto::v1::FailureClass;
    use rustls::CertificateError as C;
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. })) => {
            FailureClass::CertExpiry
        }
        _ => FailureClass::Tls,
    }
}

/// A failed handshake as an outcome (class and readable reason).
pub(crate) fn tls_failure(e: &io::Error) -> crate::Outcome {
    crate::Outcome::down(tls_failure_class(e), describe_tls_error(e))
}

/// Accepts any chain but still checks handshake signatures. Used only with
/// `insecure_skip_verify = true`.
#[derive(Debug)]
struct NoChainVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoChainVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use owlet_proto::v1::FailureClass;

    #[test]
    fn errors_are_not_cached() {
        let cell: OnceLock<u32> = OnceLock::new();
        assert!(cached_ok(&cell, || Err::<u32, _>("no roots")).is_err());
        assert_eq!(cached_ok(&cell, || Ok::<_, &str>(7)), Ok(7));
        assert_eq!(cached_ok(&cell, || Err("not called")), Ok(7));
    }

    #[test]
    fn expired_certificate_is_cert_expiry() {
        let wrap = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        let expired = wrap(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Expired,
        ));
        assert_eq!(tls_failure_class(&expired), FailureClass::CertExpiry);
        let other = wrap(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert_eq!(tls_failure_class(&other), FailureClass::Tls);
        assert_eq!(
            tls_failure_class(&io::Error::other("reset")),
            FailureClass::Tls
        );
    }
}
