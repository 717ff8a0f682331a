//! A small certificate authority for owlet deployments (`owlet-soc ca`).
//!
//! Its own crate so that the sensor binary, which never issues
//! certificates, links no certificate generator.
//!
//! One CA (ECDSA P-256, CN "owlet agent CA" plus an OU naming this CA's key
//! id, path length 0: it signs leaves only) signs both the agent client certificates and the SOC server
//! certificate. Agents pin `ca.pem` to verify the SOC; the SOC uses `ca.pem`
//! as its client CA.
//!
//! Files, in the CA directory ([`init`]):
//!
//! | file      | what                                              | mode |
//! |-----------|---------------------------------------------------|------|
//! | `ca.pem`  | CA certificate (self-signed)                      | 0644 |
//! | `ca.key`  | CA private key (PKCS#8 PEM)                       | 0600 |
//! | `soc.pem` | SOC server certificate, SANs = SOC names, serverAuth | 0644 |
//! | `soc.key` | SOC server private key                            | 0600 |
//! | `issued.json` | register of every agent certificate issued ([`register`]) | 0644 |
//! | `ca.crl`  | certificate revocation list, PEM ([`revoke`])      | 0644 |
//! | `ca.lock` | taken while the register changes                  | 0644 |
//!
//! In an agent's output directory ([`issue`]):
//!
//! | file        | what                                                  | mode |
//! |-------------|-------------------------------------------------------|------|
//! | `agent.pem` | agent certificate (leaf only: the SOC already holds the CA) | 0644 |
//! | `agent.key` | agent private key                                     | 0600 |
//! | `ca.pem`    | copy of the CA certificate, pinned by the agent       | 0644 |
//!
//! Beside them, the callers write `soc.pem` and the agent's `owlet.toml`
//! ([`agent_config`]).
//!
//! Agent certificates: CN = `TENANT/AGENT` (for humans only), exactly one URI
//! SAN `owlet://TENANT/AGENT` (the identity), EKU clientAuth, a random
//! 126-bit serial number recorded in the register before the files are
//! written ([`issue`], [`renew`]).
//!
//! Must never: overwrite an existing `ca.key` (it would orphan every issued
//! certificate); write a key file that is readable by others at any moment;
//! issue a certificate for an identity that does not validate; issue a
//! certificate the register does not list.

pub mod agent_config;
pub mod register;
pub mod revoke;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use owlet_tls::files::{
    create_private_dir, create_secret_file_new, read_private_key_pem, write_public_file,
    write_secret_file,
};
use owlet_tls::{Identity, Result, TlsError};

pub use register::Issued;
pub use revoke::{CRL_FILE, Reason, Revoked, Selection, publish_crl, revoke};

/// CA certificate file name (in the CA directory and in agent bundles).
pub const CA_CERT_FILE: &str = "ca.pem";
/// CA private key file name.
pub const CA_KEY_FILE: &str = "ca.key";
/// SOC server certificate file name.
pub const SOC_CERT_FILE: &str = "soc.pem";
/// SOC server key file name.
pub const SOC_KEY_FILE: &str = "soc.key";
/// Agent certificate file name.
pub const AGENT_CERT_FILE: &str = "agent.pem";
/// Agent key file name.
pub const AGENT_KEY_FILE: &str = "agent.key";

/// Common name of the CA certificate.
pub const CA_COMMON_NAME: &str = "owlet agent CA";

/// Certificates start this long before "now", to tolerate clock skew
/// between the CA host and the peers.
pub(crate) const BACKDATE: Duration = Duration::hours(1);

/// Paths written by [`init`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaPaths {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub soc_cert: PathBuf,
    pub soc_key: PathBuf,
}

/// Paths written by [`issue`] / [`issue_with_validity`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Copy of the CA certificate, for the agent to pin.
    pub ca_cert: PathBuf,
    /// The new certificate's serial (`owlet_tls::serial_hex` spelling).
    pub serial: String,
    pub not_after: OffsetDateTime,
}

/// Creates a new CA in `dir` (created with mode 0700 if missing) and a SOC
/// server certificate for `soc_names` (DNS names or IP addresses), both valid
/// for `validity_days` from now. Refuses if `dir/ca.key` exists.
pub fn init(dir: &Path, soc_names: &[String], validity_days: u32) -> Result<CaPaths> {
    let soc_sans = soc_names
        .iter()
        .map(|name| parse_soc_name(name))
        .collect::<Result<Vec<_>>>()?;
    if soc_sans.is_empty() {
        return Err(TlsError::InvalidArgument(
            "at least one SOC name (DNS name or IP address the agents connect to) is required"
                .into(),
        ));
    }
    let (not_before, not_after) = validity_from_now(validity_days)?;

    let paths = CaPaths {
        ca_cert: dir.join(CA_CERT_FILE),
        ca_key: dir.join(CA_KEY_FILE),
        soc_cert: dir.join(SOC_CERT_FILE),
        soc_key: dir.join(SOC_KEY_FILE),
    };
    // Early, friendly refusal; `create_secret_file_new` below closes the race.
    if paths.ca_key.exists() {
        return Err(TlsError::CaExists {
            path: paths.ca_key.clone(),
        });
    }

    let ca_key = new_key("CA key")?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name(CA_COMMON_NAME);
    // Every CA has the same CN; a per-CA OU (from its key id) keeps two CAs'
    // subjects distinct, so a certificate from another owlet CA is reported
    // as "unknown issuer" rather than as a bad signature under a same-named CA.
    let ca_id: String = ca_params
        .key_identifier(&ca_key)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    ca_params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, format!("owlet CA {ca_id}"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca =
        CertifiedIssuer::self_signed(ca_params, ca_key).map_err(|source| TlsError::Generate {
            what: "CA certificate",
            source: source.into(),
        })?;

    let mut soc_params = CertificateParams::default();
    soc_params.distinguished_name = name(&soc_names[0]);
    soc_params.subject_alt_names = soc_sans;
    soc_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    soc_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    soc_params.use_authority_key_identifier_extension = true;
    soc_params.not_before = not_before;
    soc_params.not_after = not_after;
    let soc_key = new_key("SOC key")?;
    let soc_cert = soc_params
        .signed_by(&soc_key, &ca)
        .map_err(|source| TlsError::Generate {
            what: "SOC server certificate",
            source: source.into(),
        })?;

    create_private_dir(dir)?;
    // ca.key first and exclusively: it is the "this directory is taken" marker.
    create_secret_file_new(&paths.ca_key, ca.key().serialize_pem().as_bytes())?;
    write_public_file(&paths.ca_cert, ca.pem().as_bytes())?;
    write_secret_file(&paths.soc_key, soc_key.serialize_pem().as_bytes())?;
    write_public_file(&paths.soc_cert, soc_cert.pem().as_bytes())?;
    // An empty register and CRL: the SOC's config names ca.crl from the start.
    revoke::publish_crl(dir)?;
    Ok(paths)
}

/// Issues an agent certificate for `identity`, valid from one hour ago for
/// `validity_days` (cut short to the CA's own expiry), into `out_dir`.
pub fn issue(
    ca_dir: &Path,
    identity: &Identity,
    out_dir: &Path,
    validity_days: u32,
) -> Result<AgentCertPaths> {
    let ca = LoadedCa::load(ca_dir)?;
    let (not_before, not_after) = validity_from_now(validity_days)?;
    if ca.not_after <= OffsetDateTime::now_utc() {
        return Err(TlsError::InvalidArgument(format!(
            "the CA in {} expired at {}; create a new CA with `ca init` in another directory",
            ca_dir.display(),
            ca.not_after
        )));
    }
    issue_from(
        &ca,
        ca_dir,
        identity,
        out_dir,
        not_before,
        not_after.min(ca.not_after),
    )
}

/// What [`renew`] did.
#[derive(Debug, Clone)]
pub struct Renewed {
    pub paths: AgentCertPaths,
    /// Serial of the certificate the output directory held before, if any.
    pub replaced: Option<String>,
    /// Earlier certificates revoked (with `revoke_old`).
    pub revoked: Vec<Issued>,
}

/// Issues a fresh key and certificate for `identity` into `out_dir` like
/// [`issue`], replacing the `agent.pem` / `agent.key` an enrolled agent has
/// there (each file atomically; the agent reads them on `owlet reload`).
/// A certificate already in `out_dir` must be `identity`'s. Earlier
/// certificates stay valid until they expire, unless `revoke_old`: then
/// every other live certificate of `identity` is revoked (reason
/// superseded) and the CRL republished.
pub fn renew(
    ca_dir: &Path,
    identity: &Identity,
    out_dir: &Path,
    validity_days: u32,
    revoke_old: bool,
) -> Result<Renewed> {
    let current = out_dir.join(AGENT_CERT_FILE);
    let replaced = if current.exists() {
        let Some(der) = owlet_tls::load_certs(&current)?.into_iter().next() else {
            return Err(TlsError::NoCertificate { path: current });
        };
        let owner = owlet_tls::identity_from_cert(&der)?;
        if owner != *identity {
            return Err(TlsError::InvalidArgument(format!(
                "{} is the certificate of {owner}, not of {identity}: renew into that agent's own directory",
                current.display()
            )));
        }
        Some(owlet_tls::cert_info(&der)?.serial)
    } else {
        None
    };
    let paths = issue(ca_dir, identity, out_dir, validity_days)?;
    let revoked = if revoke_old {
        revoke(
            ca_dir,
            identity,
            &Selection::AllBut(paths.serial.clone()),
            Reason::Superseded,
        )?
        .revoked
    } else {
        Vec::new()
    };
    Ok(Renewed {
        paths,
        replaced,
        revoked,
    })
}

/// Issues an agent certificate with an explicit validity period — for tests
/// that need expired or not-yet-valid certificates. Not clamped to the CA.
pub fn issue_with_validity(
    ca_dir: &Path,
    identity: &Identity,
    out_dir: &Path,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<AgentCertPaths> {
    let ca = LoadedCa::load(ca_dir)?;
    issue_from(&ca, ca_dir, identity, out_dir, not_before, not_after)
}

fn issue_from(
    ca: &LoadedCa,
    ca_dir: &Path,
    identity: &Identity,
    out_dir: &Path,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<AgentCertPaths> {
    identity.validate()?;
    if not_before >= not_after {
        return Err(TlsError::InvalidArgument(format!(
            "certificate validity is empty: not_before {not_before} is not before not_after {not_after}"
        )));
    }
    let uri = identity
        .to_uri()
        .try_into()
        .map_err(|source: rcgen::Error| TlsError::Generate {
            what: "agent identity URI",
            source: source.into(),
        })?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(&identity.to_string());
    params.subject_alt_names = vec![SanType::URI(uri)];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial());
    let key = new_key("agent key")?;
    let cert = params
        .signed_by(&key, &ca.issuer)
        .map_err(|source| TlsError::Generate {
            what: "agent certificate",
            source: source.into(),
        })?;
    let serial = owlet_tls::cert_info(cert.der())?.serial;

    // Recorded before any file exists: a certificate that exists can be revoked.
    let mut locked = register::Locked::open(ca_dir)?;
    locked.register.certificates.push(Issued {
        serial: serial.clone(),
        tenant: identity.tenant.clone(),
        agent: identity.agent_id.clone(),
        issued_at: OffsetDateTime::now_utc(),
        not_before,
        not_after,
        revoked_at: None,
        reason: None,
    });
    locked.save()?;
    drop(locked);

    let paths = AgentCertPaths {
        cert: out_dir.join(AGENT_CERT_FILE),
        key: out_dir.join(AGENT_KEY_FILE),
        ca_cert: out_dir.join(CA_CERT_FILE),
        serial,
        not_after,
    };
    create_private_dir(out_dir)?;
    write_secret_file(&paths.key, key.serialize_pem().as_bytes())?;
    write_public_file(&paths.cert, cert.pem().as_bytes())?;
    write_public_file(&paths.ca_cert, ca.pem.as_bytes())?;
    Ok(paths)
}

/// A random positive serial of 16 bytes (126 random bits: the top bit is
/// clear so DER needs no sign byte, the lowest bit of the first byte set so
/// the length is fixed).
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

/// The CA as loaded from disk: its certificate PEM (to hand to agents), a
/// signer, its subject (DER, to recognise what it issued) and its expiry.
pub(crate) struct LoadedCa {
    pem: String,
    pub(crate) issuer: Issuer<'static, KeyPair>,
    pub(crate) subject: Vec<u8>,
    pub(crate) not_after: OffsetDateTime,
}

impl LoadedCa {
    pub(crate) fn load(dir: &Path) -> Result<Self> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let pem = std::fs::read_to_string(&cert_path).map_err(|source| TlsError::Read {
            what: "CA certificate",
            path: cert_path.clone(),
            source,
        })?;
        let key =
            KeyPair::from_pem(&read_private_key_pem(&key_path)?).map_err(|e| TlsError::BadPem {
                path: key_path.clone(),
                detail: format!("not a usable private key: {e}"),
            })?;
        let cert_err = |detail: String| TlsError::CertParse {
            path: Some(cert_path.clone()),
            detail,
        };
        let der = rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .ok_or_else(|| TlsError::NoCertificate {
                path: cert_path.clone(),
            })?
            .map_err(|e| cert_err(e.to_string()))?;
        let (_, x509) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| cert_err(e.to_string()))?;
        // A swapped key would sign certificates nobody can verify; say so now.
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(TlsError::InvalidArgument(format!(
                "CA key {} does not belong to CA certificate {}; restore the matching pair",
                key_path.display(),
                cert_path.display()
            )));
        }
        let not_after = OffsetDateTime::from_unix_timestamp(x509.validity().not_after.timestamp())
            .map_err(|e| cert_err(format!("expiry date out of range: {e}")))?;
        let subject = x509.subject().as_raw().to_vec();
        let issuer = Issuer::from_ca_cert_der(&der, key).map_err(|e| cert_err(e.to_string()))?;
        Ok(Self {
            pem,
            issuer,
            subject,
            not_after,
        })
    }
}

fn new_key(what: &'static str) -> Result<KeyPair> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| TlsError::Generate {
        what,
        source: source.into(),
    })
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn validity_from_now(days: u32) -> Result<(OffsetDateTime, OffsetDateTime)> {
    if days == 0 {
        return Err(TlsError::InvalidArgument(
            "validity must be at least 1 day".into(),
        ));
    }
    let now = OffsetDateTime::now_utc();
    let not_after = now
        .checked_add(Duration::days(i64::from(days)))
        .filter(|t| t.year() <= 9999)
        .ok_or_else(|| {
            TlsError::InvalidArgument(format!(
                "validity of {days} days ends after the year 9999; choose a shorter validity"
            ))
        })?;
    Ok((now - BACKDATE, not_after))
}

fn parse_soc_name(name: &str) -> Result<SanType> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let bad = || {
        TlsError::InvalidArgument(format!(
            "SOC name {name:?} is neither an IP address nor a valid DNS name; \
             give names like soc.example.net or 192.0.2.10 (no scheme, no port)"
        ))
    };
    rustls::pki_types::DnsName::try_from(name).map_err(|_| bad())?;
    Ok(SanType::DnsName(name.try_into().map_err(|_| bad())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use owlet_tls::{identity_from_cert, load_certs};

    #[test]
    fn init_then_issue_writes_files_with_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let ca_dir = tmp.path().join("ca");
        let paths = init(&ca_dir, &["soc.test".into(), "127.0.0.1".into()], 30).unwrap();
        for p in [
            &paths.ca_cert,
            &paths.ca_key,
            &paths.soc_cert,
            &paths.soc_key,
        ] {
            assert!(p.is_file(), "{}", p.display());
        }
        let id = Identity::new("acme", "sensor-1").unwrap();
        let out = tmp.path().join("out");
        let agent = issue(&ca_dir, &id, &out, 7).unwrap();
        assert_eq!(agent.cert, out.join("agent.pem"));
        assert_eq!(
            std::fs::read(&agent.ca_cert).unwrap(),
            std::fs::read(&paths.ca_cert).unwrap()
        );
        let certs = load_certs(&agent.cert).unwrap();
        assert_eq!(certs.len(), 1);
        assert_eq!(identity_from_cert(&certs[0]).unwrap(), id);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&paths.ca_key), 0o600);
            assert_eq!(mode(&paths.soc_key), 0o600);
            assert_eq!(mode(&agent.key), 0o600);
            assert_eq!(mode(&ca_dir), 0o700);
        }
    }

    #[test]
    fn init_refuses_existing_ca_key() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = init(tmp.path(), &["soc.test".into()], 30).unwrap();
        let before = std::fs::read(&paths.ca_key).unwrap();
        let err = init(tmp.path(), &["soc.test".into()], 30).unwrap_err();
        assert!(matches!(err, TlsError::CaExists { .. }), "{err}");
        assert!(err.to_string().contains("ca.key"), "{err}");
        assert_eq!(std::fs::read(&paths.ca_key).unwrap(), before);
    }

    #[test]
    fn init_rejects_bad_arguments() {
        let tmp = tempfile::tempdir().unwrap();
        let soc = ["soc.test".to_string()];
        assert!(init(tmp.path(), &[], 30).is_err());
        assert!(init(tmp.path(), &soc, 0).is_err());
        assert!(init(tmp.path(), &soc, u32::MAX).is_err());
        for bad in ["https://soc.test", "soc.test:443", "soc test", ""] {
            let err = init(tmp.path(), &[bad.to_string()], 30).unwrap_err();
            assert!(err.to_string().contains("SOC name"), "{bad}: {err}");
        }
        // Nothing was written by the failed attempts.
        assert!(!tmp.path().join(CA_KEY_FILE).exists());
    }

    #[test]
    fn issue_refuses_invalid_identity_and_empty_validity() {
        let tmp = tempfile::tempdir().unwrap();
        init(tmp.path(), &["soc.test".into()], 30).unwrap();
        let bad = Identity {
            tenant: "../etc".into(),
            agent_id: "x".into(),
        };
        let out = tmp.path().join("out");
        assert!(issue(tmp.path(), &bad, &out, 1).is_err());
        let id = Identity::new("a", "b").unwrap();
        let now = OffsetDateTime::now_utc();
        assert!(issue_with_validity(tmp.path(), &id, &out, now, now).is_err());
        assert!(!out.join(AGENT_KEY_FILE).exists());
    }

    #[test]
    fn issue_is_clamped_to_ca_expiry() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = init(tmp.path(), &["soc.test".into()], 10).unwrap();
        let out = tmp.path().join("out");
        let agent = issue(tmp.path(), &Identity::new("a", "b").unwrap(), &out, 365).unwrap();
        let expiry = |p: &Path| {
            let der = load_certs(p).unwrap().remove(0);
            let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
            c.validity().not_after.timestamp()
        };
        assert!(expiry(&agent.cert) <= expiry(&paths.ca_cert));
    }

    #[test]
    fn issue_errors_name_missing_ca_files() {
        let tmp = tempfile::tempdir().unwrap();
        let id = Identity::new("a", "b").unwrap();
        let err = issue(tmp.path(), &id, &tmp.path().join("out"), 1).unwrap_err();
        assert!(err.to_string().contains("ca.pem"), "{err}");
    }

    fn serial_of(path: &Path) -> String {
        owlet_tls::cert_info(&load_certs(path).unwrap()[0])
            .unwrap()
            .serial
    }

    fn crl_serials(ca_dir: &Path) -> Vec<String> {
        let crls =
            owlet_tls::load_crls(&ca_dir.join(CRL_FILE), &ca_dir.join(CA_CERT_FILE)).unwrap();
        crls.revoked.into_keys().collect()
    }

    #[test]
    fn init_publishes_an_empty_crl_and_issue_records_each_serial() {
        let tmp = tempfile::tempdir().unwrap();
        let ca_dir = tmp.path().join("ca");
        init(&ca_dir, &["soc.test".into()], 30).unwrap();
        assert!(crl_serials(&ca_dir).is_empty());
        let id = Identity::new("acme", "s1").unwrap();
        let one = issue(&ca_dir, &id, &tmp.path().join("one"), 7).unwrap();
        let two = issue(&ca_dir, &id, &tmp.path().join("two"), 7).unwrap();
        assert_ne!(one.serial, two.serial);
        assert_eq!(one.serial, serial_of(&one.cert));
        assert_eq!(one.serial.len(), 32, "16 bytes, no leading zero");
        let register = register::read(&ca_dir.join(register::REGISTER_FILE)).unwrap();
        let listed: Vec<&str> = register
            .certificates
            .iter()
            .map(|c| c.serial.as_str())
            .collect();
        assert_eq!(listed, vec![one.serial.as_str(), two.serial.as_str()]);
        assert!(register.certificates.iter().all(|c| c.is_for(&id)));
    }

    #[test]
    fn revoke_lists_exactly_the_chosen_serials_in_a_newer_crl() {
        let tmp = tempfile::tempdir().unwrap();
        let ca_dir = tmp.path().join("ca");
        init(&ca_dir, &["soc.test".into()], 30).unwrap();
        let (a, b) = (
            Identity::new("acme", "a").unwrap(),
            Identity::new("acme", "b").unwrap(),
        );
        let a1 = issue(&ca_dir, &a, &tmp.path().join("a1"), 7).unwrap();
        let a2 = issue(&ca_dir, &a, &tmp.path().join("a2"), 7).unwrap();
        let b1 = issue(&ca_dir, &b, &tmp.path().join("b1"), 7).unwrap();
        let number = |dir: &Path| {
            register::read(&dir.join(register::REGISTER_FILE))
                .unwrap()
                .crl_number
        };
        let before = number(&ca_dir);

        let done = revoke(&ca_dir, &a, &Selection::All, Reason::KeyCompromise).unwrap();
        assert_eq!(done.revoked.len(), 2);
        assert_eq!(done.listed, 2);
        let mut expected = vec![a1.serial.clone(), a2.serial.clone()];
        expected.sort();
        assert_eq!(crl_serials(&ca_dir), expected);
        assert!(number(&ca_dir) > before);

        let again = revoke(&ca_dir, &a, &Selection::All, Reason::KeyCompromise).unwrap_err();
        assert!(again.to_string().contains("already revoked"), "{again}");
        // Another agent's serial is not this agent's to revoke.
        let wrong = revoke(
            &ca_dir,
            &a,
            &Selection::Serial(b1.serial.clone()),
            Reason::Unspecified,
        )
        .unwrap_err();
        assert!(
            wrong.to_string().contains("no certificate with serial"),
            "{wrong}"
        );
        // Typed upper case with colons, it is still the one serial.
        let typed: String = b1
            .serial
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        revoke(&ca_dir, &b, &Selection::Serial(typed), Reason::Superseded).unwrap();
        assert_eq!(crl_serials(&ca_dir).len(), 3);
    }

    #[test]
    fn renew_replaces_the_pair_for_the_same_identity_and_can_revoke_the_old() {
        let tmp = tempfile::tempdir().unwrap();
        let ca_dir = tmp.path().join("ca");
        init(&ca_dir, &["soc.test".into()], 30).unwrap();
        let id = Identity::new("acme", "s1").unwrap();
        let out = tmp.path().join("agent");
        let first = issue(&ca_dir, &id, &out, 7).unwrap();
        let old_key = std::fs::read(&first.key).unwrap();

        let renewed = renew(&ca_dir, &id, &out, 7, false).unwrap();
        assert_eq!(renewed.replaced.as_deref(), Some(first.serial.as_str()));
        assert_ne!(renewed.paths.serial, first.serial);
        assert_eq!(serial_of(&out.join(AGENT_CERT_FILE)), renewed.paths.serial);
        assert_ne!(std::fs::read(&renewed.paths.key).unwrap(), old_key);
        assert!(crl_serials(&ca_dir).is_empty(), "the old one stays valid");
        assert_eq!(
            identity_from_cert(&load_certs(&renewed.paths.cert).unwrap()[0]).unwrap(),
            id
        );

        let third = renew(&ca_dir, &id, &out, 7, true).unwrap();
        let mut gone: Vec<String> = third.revoked.iter().map(|c| c.serial.clone()).collect();
        gone.sort();
        let mut expected = vec![first.serial, renewed.paths.serial];
        expected.sort();
        assert_eq!(gone, expected);
        assert_eq!(crl_serials(&ca_dir), expected);

        let other = Identity::new("acme", "s2").unwrap();
        let err = renew(&ca_dir, &other, &out, 7, false).unwrap_err();
        assert!(err.to_string().contains("acme/s1"), "{err}");
        assert_eq!(serial_of(&out.join(AGENT_CERT_FILE)), third.paths.serial);
    }

    #[test]
    fn a_certificate_missing_from_the_register_is_revoked_by_its_file() {
        let tmp = tempfile::tempdir().unwrap();
        let ca_dir = tmp.path().join("ca");
        init(&ca_dir, &["soc.test".into()], 30).unwrap();
        let id = Identity::new("acme", "old").unwrap();
        let old = issue(&ca_dir, &id, &tmp.path().join("old"), 7).unwrap();
        // A CA from before the register.
        std::fs::remove_file(ca_dir.join(register::REGISTER_FILE)).unwrap();
        let err = revoke(&ca_dir, &id, &Selection::All, Reason::Unspecified).unwrap_err();
        assert!(err.to_string().contains("--cert"), "{err}");
        let done = revoke(
            &ca_dir,
            &id,
            &Selection::CertFile(old.cert.clone()),
            Reason::Unspecified,
        )
        .unwrap();
        assert_eq!(done.revoked.len(), 1);
        assert_eq!(crl_serials(&ca_dir), vec![old.serial.clone()]);
        // Someone else's file, or another CA's certificate: refused.
        let other = Identity::new("acme", "other").unwrap();
        assert!(
            revoke(
                &ca_dir,
                &other,
                &Selection::CertFile(old.cert),
                Reason::Unspecified
            )
            .is_err()
        );
        let foreign_ca = tmp.path().join("foreign");
        init(&foreign_ca, &["soc.test".into()], 30).unwrap();
        let foreign = issue(&foreign_ca, &id, &tmp.path().join("foreign-agent"), 7).unwrap();
        let err = revoke(
            &ca_dir,
            &id,
            &Selection::CertFile(foreign.cert),
            Reason::Unspecified,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not issued by"), "{err}");
    }
}
