//! The owlet identity scheme: who a peer is, read from its certificate.
//!
//! An agent certificate carries exactly one URI subject alternative name of the
//! form `owlet://TENANT/AGENT`. That SAN — and nothing else (not the CN, not
//! the payload, not the peer address) — says who the peer is.
//!
//! Rules, enforced on construction and on parse:
//! - TENANT and AGENT are each 1..=64 characters of `[A-Za-z0-9._-]`, not
//!   starting with `.` or `-` (so they are safe as path segments, metric
//!   labels and log fields, and `.`/`..` are impossible);
//! - a certificate with zero or several `owlet:` URI SANs has no identity
//!   (several would make "who is this" ambiguous); URI SANs with other
//!   schemes are ignored;
//! - the scheme must be written exactly `owlet://` (lower case) and the path
//!   must be exactly two segments.
//!
//! This module must never be used on a certificate that rustls has not
//! already verified against the pinned CA: parsing does not check signatures.

use std::fmt;

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use crate::error::{Result, TlsError};

/// URI scheme prefix of an owlet identity SAN.
pub const URI_PREFIX: &str = "owlet://";

/// Longest allowed tenant or agent id, in characters.
pub const MAX_PART_LEN: usize = 64;

/// Who a peer is: a tenant and an agent inside it.
///
/// Build with [`Identity::new`] (validates); the fields are public for
/// reading. Functions of this crate that consume an `Identity` re-validate it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub tenant: String,
    pub agent_id: String,
}

impl Identity {
    /// Validates both parts and builds the identity.
    pub fn new(tenant: impl Into<String>, agent_id: impl Into<String>) -> Result<Self> {
        let tenant = tenant.into();
        let agent_id = agent_id.into();
        validate_part("tenant", &tenant)?;
        validate_part("agent id", &agent_id)?;
        Ok(Self { tenant, agent_id })
    }

    /// Parses `owlet://TENANT/AGENT`.
    pub fn from_uri(uri: &str) -> Result<Self> {
        let rest = uri.strip_prefix(URI_PREFIX).ok_or_else(|| {
            TlsError::CertIdentity(format!("URI {uri:?} does not start with {URI_PREFIX:?}"))
        })?;
        let (tenant, agent) = rest.split_once('/').ok_or_else(|| {
            TlsError::CertIdentity(format!(
                "URI {uri:?} is not of the form owlet://TENANT/AGENT"
            ))
        })?;
        // Any further '/' lands in `agent` and is refused by validation.
        Self::new(tenant, agent)
    }

    /// The SAN URI that carries this identity: `owlet://TENANT/AGENT`.
    pub fn to_uri(&self) -> String {
        format!("{URI_PREFIX}{}/{}", self.tenant, self.agent_id)
    }

    /// Re-checks the rules (the fields are public, so a value may have been
    /// built without [`Identity::new`]).
    pub fn validate(&self) -> Result<()> {
        validate_part("tenant", &self.tenant)?;
        validate_part("agent id", &self.agent_id)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.agent_id)
    }
}

fn validate_part(part: &'static str, value: &str) -> Result<()> {
    let err = |reason: String| TlsError::InvalidIdentity {
        part,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(err("must not be empty".into()));
    }
    let len = value.chars().count();
    if len > MAX_PART_LEN {
        return Err(err(format!(
            "is {len} characters long; at most {MAX_PART_LEN} are allowed"
        )));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(err(format!(
            "contains {c:?}; only letters A-Z a-z, digits 0-9 and . _ - are allowed"
        )));
    }
    if value.starts_with(['.', '-']) {
        return Err(err("must not start with '.' or '-'".into()));
    }
    Ok(())
}

/// Checks that `now` lies in the certificate's validity period, with a
/// message that says which side it fell off and when.
pub fn check_validity(cert: &CertificateDer<'_>, now: std::time::SystemTime) -> Result<()> {
    let x509 = crate::cert::parse(cert)?;
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let validity = x509.validity();
    if now < validity.not_before.timestamp() {
        return Err(TlsError::CertValidity(format!(
            "not valid before {} (is this host's clock right?)",
            validity.not_before
        )));
    }
    if now > validity.not_after.timestamp() {
        return Err(TlsError::CertValidity(format!(
            "expired on {}: issue a new one (e.g. owlet-soc ca issue)",
            validity.not_after
        )));
    }
    Ok(())
}

/// Reads the owlet identity from a (verified) certificate.
///
/// Exactly one URI SAN with scheme `owlet` is required; it must be a valid
/// `owlet://TENANT/AGENT`.
pub fn identity_from_cert(cert: &CertificateDer<'_>) -> Result<Identity> {
    let x509 = crate::cert::parse(cert)?;
    let san = x509
        .subject_alternative_name()
        .map_err(|e| TlsError::CertParse {
            path: None,
            detail: format!("subject alternative name extension: {e}"),
        })?
        .ok_or_else(|| {
            TlsError::CertIdentity("certificate has no subject alternative names".into())
        })?;

    let owlet_uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        // Scheme comparison is case-insensitive here so that `OWLET://...`
        // counts (and is then refused by `from_uri`) instead of being ignored.
        .filter(|uri| {
            uri.split_once(':')
                .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("owlet"))
        })
        .collect();

    match owlet_uris.as_slice() {
        [] => Err(TlsError::CertIdentity(format!(
            "no {URI_PREFIX}TENANT/AGENT URI subject alternative name"
        ))),
        [uri] => Identity::from_uri(uri),
        several => Err(TlsError::CertIdentity(format!(
            "{} owlet URI subject alternative names ({}); exactly one is allowed",
            several.len(),
            several.join(", ")
        ))),
    }
}

/// Identity of a TLS peer from the certificate chain rustls verified
/// (`ServerConnection::peer_certificates()`, tonic's `Request::peer_certs()`).
/// The leaf (first) certificate is the one that names the peer.
pub fn identity_from_peer_certs(certs: &[CertificateDer<'_>]) -> Result<Identity> {
    let leaf = certs
        .first()
        .ok_or_else(|| TlsError::CertIdentity("peer presented no certificate".into()))?;
    identity_from_cert(leaf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SanType};

    fn cert_with_sans(sans: Vec<SanType>) -> CertificateDer<'static> {
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(s.try_into().unwrap())
    }

    #[test]
    fn new_accepts_good_parts_and_displays() {
        let id = Identity::new("acme-corp", "sensor_01.dc1").unwrap();
        assert_eq!(id.to_string(), "acme-corp/sensor_01.dc1");
        assert_eq!(id.to_uri(), "owlet://acme-corp/sensor_01.dc1");
        assert!(Identity::new("a".repeat(64), "0").is_ok());
    }

    #[test]
    fn new_rejects_bad_parts_with_reason() {
        for (tenant, agent, needle) in [
            ("", "a", "empty"),
            ("a", "", "empty"),
            (&"a".repeat(65) as &str, "a", "at most 64"),
            ("ten ant", "a", "' '"),
            ("a", "x/y", "'/'"),
            ("a", "é", "'é'"),
            (".hidden", "a", "start with"),
            ("a", "-rf", "start with"),
            ("a", "..", "start with"),
        ] {
            let err = Identity::new(tenant, agent).unwrap_err().to_string();
            assert!(err.contains(needle), "{tenant:?}/{agent:?}: {err}");
        }
        let err = Identity::new("a", "b c").unwrap_err().to_string();
        assert!(err.contains("agent id"), "{err}");
    }

    #[test]
    fn cert_with_one_uri_gives_identity() {
        let cert = cert_with_sans(vec![
            SanType::DnsName("host.example".try_into().unwrap()),
            uri("https://example.com/other"),
            uri("owlet://acme/sensor-1"),
        ]);
        let id = identity_from_cert(&cert).unwrap();
        assert_eq!(id, Identity::new("acme", "sensor-1").unwrap());
        assert_eq!(identity_from_peer_certs(&[cert]).unwrap(), id);
    }

    #[test]
    fn cert_without_owlet_uri_is_refused() {
        let none = cert_with_sans(vec![SanType::DnsName("a.example".try_into().unwrap())]);
        let err = identity_from_cert(&none).unwrap_err().to_string();
        assert!(err.contains("no owlet://"), "{err}");

        let no_san = cert_with_sans(vec![]);
        assert!(identity_from_cert(&no_san).is_err());

        let wrong_scheme = cert_with_sans(vec![uri("spiffe://acme/sensor-1")]);
        let err = identity_from_cert(&wrong_scheme).unwrap_err().to_string();
        assert!(err.contains("no owlet://"), "{err}");

        assert!(identity_from_peer_certs(&[]).is_err());
    }

    #[test]
    fn cert_with_two_owlet_uris_is_refused() {
        let cert = cert_with_sans(vec![uri("owlet://acme/a"), uri("owlet://evil/b")]);
        let err = identity_from_cert(&cert).unwrap_err().to_string();
        assert!(err.contains("exactly one"), "{err}");
        // Same identity twice is still ambiguous in form: refuse.
        let cert = cert_with_sans(vec![uri("owlet://acme/a"), uri("owlet://acme/a")]);
        assert!(identity_from_cert(&cert).is_err());
    }

    #[test]
    fn malformed_owlet_uris_are_refused() {
        for bad in [
            "owlet://acme",
            "owlet://acme/a/b",
            "owlet://acme/a b",
            "owlet:///a",
            "owlet://acme/",
            "owlet:acme/a",
            "OWLET://acme/a",
            "owlet://../a",
            "owlet://acme/a?x=1",
        ] {
            let cert = cert_with_sans(vec![uri(bad)]);
            assert!(identity_from_cert(&cert).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn garbage_is_a_parse_error_not_a_panic() {
        let err = identity_from_cert(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])).unwrap_err();
        assert!(matches!(err, TlsError::CertParse { .. }), "{err}");
    }
}
