//! Certificate revocation lists (CRLs) for the SOC's client-certificate
//! check.
//!
//! Guarantees of [`load_crls`]:
//! - the file holds at least one PEM `X509 CRL` block, and every one parses;
//! - every CA in the client CA file has a CRL in it, issued under that CA's
//!   name. rustls' verifier refuses a certificate whose revocation status it
//!   cannot tell, so a CA without a CRL would lock out all of its agents at
//!   the next handshake; that is refused here, at load, naming the CA;
//! - revoked serials are spelled as [`crate::serial_hex`].
//!
//! The CRLs' signatures are checked by rustls/webpki at each handshake (a
//! CRL the CA did not sign makes every certificate of that CA refused: it
//! fails closed). The revoked set returned here is read without a signature
//! check; use it only to act on connections (end streams of certificates
//! the verifier now refuses), never to let one in.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::CertificateRevocationListDer;

use crate::cert::serial_hex;
use crate::error::{Result, TlsError};
use crate::files::load_certs;

/// One revoked certificate, as a CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedCert {
    /// [`serial_hex`] of the serial number.
    pub serial: String,
    pub revoked_at: SystemTime,
    /// The CRL reason code's name (e.g. "KeyCompromise"), if given.
    pub reason: Option<String>,
}

/// The CRLs of a file, ready for rustls, and what they revoke.
#[derive(Debug, Clone)]
pub struct Crls {
    pub ders: Vec<CertificateRevocationListDer<'static>>,
    /// Revoked certificates by serial.
    pub revoked: BTreeMap<String, RevokedCert>,
}

/// Loads the CRLs in `path` and checks them against the CAs in `client_ca`
/// (see the module doc).
pub fn load_crls(path: &Path, client_ca: &Path) -> Result<Crls> {
    let bad = |detail: String| TlsError::BadCrl {
        path: path.to_owned(),
        detail,
    };
    let file = File::open(path).map_err(|source| TlsError::Read {
        what: "certificate revocation list",
        path: path.to_owned(),
        source,
    })?;
    let ders = rustls_pemfile::crls(&mut BufReader::new(file))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not valid PEM: {e}")))?;
    if ders.is_empty() {
        return Err(bad(
            "holds no \"-----BEGIN X509 CRL-----\" block; `owlet-soc ca init` and `ca revoke` write it"
                .into(),
        ));
    }
    let mut issuers = Vec::new();
    let mut revoked = BTreeMap::new();
    for der in &ders {
        let (_, crl) = x509_parser::parse_x509_crl(der.as_ref())
            .map_err(|e| bad(format!("not an X.509 CRL: {e}")))?;
        issuers.push(crl.issuer().as_raw().to_vec());
        for entry in crl.iter_revoked_certificates() {
            let serial = serial_hex(entry.raw_serial());
            let at = u64::try_from(entry.revocation_date.timestamp()).unwrap_or(0);
            revoked.insert(
                serial.clone(),
                RevokedCert {
                    serial,
                    revoked_at: UNIX_EPOCH + Duration::from_secs(at),
                    reason: entry.reason_code().map(|(_, code)| format!("{code}")),
                },
            );
        }
    }
    for ca in load_certs(client_ca)? {
        let (_, x509) =
            x509_parser::parse_x509_certificate(ca.as_ref()).map_err(|e| TlsError::CertParse {
                path: Some(client_ca.to_owned()),
                detail: e.to_string(),
            })?;
        if !issuers.iter().any(|i| i == x509.subject().as_raw()) {
            return Err(bad(format!(
                "has no CRL of the agent CA \"{}\" in {}: every certificate of that CA would be refused; \
                 write this CA's CRL (`owlet-soc ca revoke` in its CA directory writes ca.crl) and \
                 put all CAs' CRLs into one file",
                x509.subject(),
                client_ca.display()
            )));
        }
    }
    Ok(Crls { ders, revoked })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, IsCa, Issuer,
        KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber,
    };
    use std::path::PathBuf;

    struct Ca {
        pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn crl_pem(ca: &Ca, serials: &[&[u8]]) -> String {
        let now = time::OffsetDateTime::now_utc();
        CertificateRevocationListParams {
            this_update: now,
            next_update: now + time::Duration::days(1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: now,
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&ca.issuer)
        .unwrap()
        .pem()
        .unwrap()
    }

    /// (CA file, CRL file) in `dir`, the CA file holding `cas`.
    fn files(dir: &tempfile::TempDir, cas: &[&Ca]) -> (PathBuf, PathBuf) {
        let (ca_file, crl_file) = (dir.path().join("ca.pem"), dir.path().join("ca.crl"));
        let pems: String = cas.iter().map(|c| c.pem.as_str()).collect();
        std::fs::write(&ca_file, pems).unwrap();
        (ca_file, crl_file)
    }

    #[test]
    fn revoked_serials_are_read_in_their_one_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let a = ca("A");
        let (ca_file, crl_file) = files(&dir, &[&a]);
        std::fs::write(&crl_file, crl_pem(&a, &[&[0x80, 0x01], &[0x01]])).unwrap();
        let crls = load_crls(&crl_file, &ca_file).unwrap();
        assert_eq!(crls.ders.len(), 1);
        assert_eq!(crls.revoked.keys().collect::<Vec<_>>(), vec!["01", "8001"]);
        assert_eq!(crls.revoked["01"].reason.as_deref(), Some("KeyCompromise"));
    }

    #[test]
    fn a_ca_without_its_crl_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (ca("A"), ca("B other"));
        let (ca_file, crl_file) = files(&dir, &[&a, &b]);
        std::fs::write(&crl_file, crl_pem(&a, &[])).unwrap();
        let err = load_crls(&crl_file, &ca_file).unwrap_err().to_string();
        assert!(err.contains("B other"), "{err}");
        // Both CRLs in one file: accepted.
        std::fs::write(
            &crl_file,
            format!("{}{}", crl_pem(&a, &[]), crl_pem(&b, &[&[7]])),
        )
        .unwrap();
        let crls = load_crls(&crl_file, &ca_file).unwrap();
        assert_eq!(crls.ders.len(), 2);
        assert!(crls.revoked.contains_key("07"));
    }

    #[test]
    fn empty_and_missing_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = ca("A");
        let (ca_file, crl_file) = files(&dir, &[&a]);
        let err = load_crls(&crl_file, &ca_file).unwrap_err().to_string();
        assert!(err.contains("ca.crl"), "{err}");
        std::fs::write(&crl_file, &a.pem).unwrap();
        let err = load_crls(&crl_file, &ca_file).unwrap_err().to_string();
        assert!(err.contains("X509 CRL"), "{err}");
    }
}
