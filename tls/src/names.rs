//! Which names a SOC server certificate answers to, as the agent's TLS
//! check will see them — so `owlet-soc ca issue` and `owlet check-config`
//! can catch a `soc.address` / `soc.server_name` the certificate does not
//! cover before the agent fails with `tls_name_mismatch`.
//!
//! The name check itself is rustls/webpki's ([`covers`]), the one the agent
//! runs at connect time; [`names`] only lists the DNS and IP subject
//! alternative names for messages. Like [`crate::cert`], nothing here
//! decides trust: [`issued_by`] only says whether the certificate chains to
//! a given CA, ignoring dates, so a copy on the sensor can be matched to the
//! CA the agent pins.

use std::net::IpAddr;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::extensions::GeneralName;

use crate::cert::parse;
use crate::error::{Result, TlsError};

/// The DNS names and IP addresses among the certificate's subject
/// alternative names, in certificate order.
pub fn names(cert: &CertificateDer<'_>) -> Result<Vec<String>> {
    let x509 = parse(cert)?;
    let Ok(Some(san)) = x509.subject_alternative_name() else {
        return Ok(Vec::new());
    };
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_string()),
            GeneralName::IPAddress(bytes) => ip(bytes).map(|ip| ip.to_string()),
            _ => None,
        })
        .collect())
}

/// Splits `host:port` / `[v6]:port` (an agent's `soc.address`, `ca issue
/// --soc`); `None` when malformed.
pub fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port != 0 && !host.contains(char::is_whitespace)).then_some((host, port))
}

fn ip(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Whether the agent's TLS check accepts `cert` for `name` (a DNS name or
/// an IP address, as `soc.server_name` or the host of `soc.address`).
pub fn covers(cert: &CertificateDer<'_>, name: &str) -> Result<bool> {
    let server_name = ServerName::try_from(name).map_err(|_| {
        TlsError::InvalidArgument(format!(
            "{name:?} is neither a DNS name nor an IP address a certificate can be checked against"
        ))
    })?;
    let parsed = rustls::server::ParsedCertificate::try_from(cert).map_err(TlsError::Config)?;
    Ok(rustls::client::verify_server_name(&parsed, &server_name).is_ok())
}

/// Whether `cert` was signed by one of `cas` (dates ignored: checked at a
/// moment inside the certificate's own validity).
pub fn issued_by(cert: &CertificateDer<'_>, cas: &[CertificateDer<'_>]) -> bool {
    let Ok(info) = crate::cert::cert_info(cert) else {
        return false;
    };
    let Ok(parsed) = rustls::server::ParsedCertificate::try_from(cert) else {
        return false;
    };
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        let _ = roots.add(ca.clone().into_owned());
    }
    let from = info
        .not_before
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let at = UnixTime::since_unix_epoch(from + Duration::from_secs(1));
    let algorithms = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    rustls::client::verify_server_cert_signed_by_trust_anchor(&parsed, &roots, &[], at, algorithms)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SanType};

    fn cert(sans: Vec<SanType>) -> CertificateDer<'static> {
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        params
            .self_signed(&KeyPair::generate().unwrap())
            .unwrap()
            .der()
            .clone()
    }

    #[test]
    fn names_and_coverage_are_the_tls_checks() {
        let c = cert(vec![
            SanType::DnsName("soc.test".try_into().unwrap()),
            SanType::DnsName("*.soc.example".try_into().unwrap()),
            SanType::IpAddress("192.0.2.7".parse().unwrap()),
        ]);
        assert_eq!(
            names(&c).unwrap(),
            ["soc.test", "*.soc.example", "192.0.2.7"]
        );
        assert!(covers(&c, "soc.test").unwrap());
        assert!(covers(&c, "SOC.test").unwrap());
        assert!(covers(&c, "a.soc.example").unwrap());
        assert!(covers(&c, "192.0.2.7").unwrap());
        assert!(!covers(&c, "127.0.0.1").unwrap());
        assert!(!covers(&c, "other.test").unwrap());
        assert!(covers(&c, "not a name").is_err());
    }

    #[test]
    fn issued_by_matches_the_signing_ca_only() {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let mut leaf = CertificateParams::default();
        leaf.subject_alt_names = vec![SanType::DnsName("soc.test".try_into().unwrap())];
        let leaf = leaf.signed_by(&KeyPair::generate().unwrap(), &ca).unwrap();
        let other = cert(vec![]);
        assert!(issued_by(leaf.der(), &[ca.der().clone()]));
        assert!(!issued_by(leaf.der(), &[other]));
    }
}
