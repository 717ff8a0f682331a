//! Revocation: marking issued certificates revoked in the register and
//! publishing the CA's certificate revocation list (`ca.crl`, PEM).
//!
//! Guarantees:
//! - the CRL lists every certificate the register marks revoked, signed by
//!   the CA key, with a CRL number higher than any before;
//! - the register is saved before the CRL is written: if writing the CRL
//!   fails, the next `revoke` (or [`publish_crl`]) publishes it;
//! - `ca.crl` is replaced atomically, so a SOC polling it never reads half
//!   a file.
//!
//! Must never: revoke a certificate of another identity than the one named
//! (a `--serial` or `--cert` of another agent is refused).

use std::path::{Path, PathBuf};

use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use owlet_tls::files::write_public_file;
use owlet_tls::{Identity, Result, TlsError};

use crate::register::{Issued, Locked};
use crate::{CA_CERT_FILE, LoadedCa};

/// CRL file name in the CA directory.
pub const CRL_FILE: &str = "ca.crl";

/// Why a certificate is revoked (the CRL reason codes an MSSP uses). With
/// the `clap` feature it is also the `--reason` argument of `owlet-soc ca
/// revoke` (same kebab-case names as in `issued.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// No reason given.
    Unspecified,
    /// The agent's private key may be known to someone else.
    KeyCompromise,
    /// The sensor moved to another customer or site.
    AffiliationChanged,
    /// Replaced by a newer certificate.
    Superseded,
    /// The sensor was decommissioned.
    CessationOfOperation,
    /// The customer's service ended.
    PrivilegeWithdrawn,
}

impl Reason {
    fn code(self) -> RevocationReason {
        match self {
            Reason::Unspecified => RevocationReason::Unspecified,
            Reason::KeyCompromise => RevocationReason::KeyCompromise,
            Reason::AffiliationChanged => RevocationReason::AffiliationChanged,
            Reason::Superseded => RevocationReason::Superseded,
            Reason::CessationOfOperation => RevocationReason::CessationOfOperation,
            Reason::PrivilegeWithdrawn => RevocationReason::PrivilegeWithdrawn,
        }
    }
}

/// Which certificates of an identity to revoke.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Every one not yet revoked or expired.
    All,
    /// The one with this serial (hex, as `owlet-soc agents` shows it).
    Serial(String),
    /// The one in this PEM file, also when the register does not list it
    /// (issued before the CA kept a register).
    CertFile(PathBuf),
    /// Every one not yet revoked or expired except this serial (renewal).
    AllBut(String),
}

/// What [`revoke`] did.
#[derive(Debug, Clone)]
pub struct Revoked {
    /// The certificates revoked now.
    pub revoked: Vec<Issued>,
    /// The CRL written.
    pub crl: PathBuf,
    /// Revoked certificates the CRL lists in all.
    pub listed: usize,
}

/// Revokes `selection` of `identity`'s certificates and publishes the CRL.
/// Revoking nothing is an error that says why (nothing issued, all expired,
/// already revoked).
pub fn revoke(
    ca_dir: &Path,
    identity: &Identity,
    selection: &Selection,
    reason: Reason,
) -> Result<Revoked> {
    identity.validate()?;
    let ca = LoadedCa::load(ca_dir)?;
    let mut locked = Locked::open(ca_dir)?;
    let now = OffsetDateTime::now_utc();
    let target = match selection {
        Selection::Serial(serial) => Some(normalise(serial)),
        Selection::CertFile(path) => Some(adopt_cert_file(&ca, &mut locked, identity, path)?),
        Selection::All | Selection::AllBut(_) => None,
    };
    let mut revoked = Vec::new();
    for cert in locked
        .register
        .certificates
        .iter_mut()
        .filter(|c| c.is_for(identity) && c.revoked_at.is_none())
    {
        let chosen = match (&target, selection) {
            (Some(serial), _) => cert.serial == *serial,
            (None, Selection::AllBut(keep)) => cert.is_live(now) && cert.serial != *keep,
            (None, _) => cert.is_live(now),
        };
        if chosen {
            cert.revoked_at = Some(now);
            cert.reason = Some(reason);
            revoked.push(cert.clone());
        }
    }
    if revoked.is_empty() && !matches!(selection, Selection::AllBut(_)) {
        return Err(TlsError::InvalidArgument(nothing_to_revoke(
            ca_dir,
            &locked,
            identity,
            target.as_deref(),
        )));
    }
    locked.save()?;
    let (crl, listed) = publish_locked(&ca, &mut locked, ca_dir)?;
    Ok(Revoked {
        revoked,
        crl,
        listed,
    })
}

/// Writes the CA's CRL from the register (also when nothing changed: a
/// fresh `ca.crl` for a CA directory that has none).
pub fn publish_crl(ca_dir: &Path) -> Result<PathBuf> {
    let ca = LoadedCa::load(ca_dir)?;
    let mut locked = Locked::open(ca_dir)?;
    Ok(publish_locked(&ca, &mut locked, ca_dir)?.0)
}

/// Signs and writes the CRL; returns its path and how many it lists.
pub(crate) fn publish_locked(
    ca: &LoadedCa,
    locked: &mut Locked,
    ca_dir: &Path,
) -> Result<(PathBuf, usize)> {
    let now = OffsetDateTime::now_utc();
    let revoked_certs = locked
        .register
        .certificates
        .iter()
        .filter_map(|c| {
            let at = c.revoked_at?;
            let serial = hex_bytes(&c.serial)?;
            Some(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: at,
                reason_code: c.reason.map(Reason::code),
                invalidity_date: None,
            })
        })
        .collect::<Vec<_>>();
    let listed = revoked_certs.len();
    locked.register.crl_number += 1;
    // owlet-soc does not enforce nextUpdate (the CRL is republished on each
    // change and read from a local file); other tools may: promise the CA's
    // own lifetime.
    let next_update = ca.not_after.max(now + Duration::days(1));
    let crl = CertificateRevocationListParams {
        this_update: now - crate::BACKDATE,
        next_update,
        crl_number: SerialNumber::from(locked.register.crl_number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca.issuer)
    .map_err(|source| TlsError::Generate {
        what: "certificate revocation list",
        source: source.into(),
    })?;
    let pem = crl.pem().map_err(|source| TlsError::Generate {
        what: "certificate revocation list PEM",
        source: source.into(),
    })?;
    locked.save()?;
    let path = ca_dir.join(CRL_FILE);
    write_public_file(&path, pem.as_bytes())?;
    Ok((path, listed))
}

/// Adds the certificate in `path` to the register if it is not there,
/// after checking it is `identity`'s and from this CA; returns its serial.
fn adopt_cert_file(
    ca: &LoadedCa,
    locked: &mut Locked,
    identity: &Identity,
    path: &Path,
) -> Result<String> {
    let Some(der) = owlet_tls::load_certs(path)?.into_iter().next() else {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    };
    let cert_err = |detail: String| TlsError::CertParse {
        path: Some(path.to_owned()),
        detail,
    };
    let (_, x509) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| cert_err(e.to_string()))?;
    if x509.issuer().as_raw() != ca.subject.as_slice() {
        return Err(TlsError::InvalidArgument(format!(
            "{} was not issued by the CA in {} (its issuer is \"{}\"); revoke it with its own CA",
            path.display(),
            CA_CERT_FILE,
            x509.issuer()
        )));
    }
    let owner = owlet_tls::identity_from_cert(&der)?;
    if owner != *identity {
        return Err(TlsError::InvalidArgument(format!(
            "{} is the certificate of {owner}, not of {identity}",
            path.display()
        )));
    }
    let info = owlet_tls::cert_info(&der)?;
    if locked
        .register
        .certificates
        .iter()
        .any(|c| c.serial == info.serial)
    {
        return Ok(info.serial);
    }
    let time = |t: std::time::SystemTime| OffsetDateTime::from(t);
    locked.register.certificates.push(Issued {
        serial: info.serial.clone(),
        tenant: identity.tenant.clone(),
        agent: identity.agent_id.clone(),
        issued_at: time(info.not_before),
        not_before: time(info.not_before),
        not_after: time(info.not_after),
        revoked_at: None,
        reason: None,
    });
    Ok(info.serial)
}

/// Why nothing was revoked, in the operator's terms.
fn nothing_to_revoke(
    ca_dir: &Path,
    locked: &Locked,
    identity: &Identity,
    serial: Option<&str>,
) -> String {
    let theirs: Vec<&Issued> = locked
        .register
        .certificates
        .iter()
        .filter(|c| c.is_for(identity))
        .collect();
    let register = ca_dir.join(crate::register::REGISTER_FILE);
    if let Some(serial) = serial {
        let listed: Vec<&str> = theirs.iter().map(|c| c.serial.as_str()).collect();
        return if theirs.iter().any(|c| c.serial == serial) {
            format!("certificate {serial} of {identity} is already revoked")
        } else {
            format!(
                "{identity} has no certificate with serial {serial} in {} (its serials: {}); \
                 `owlet-soc agents` shows the serial an agent connects with",
                register.display(),
                if listed.is_empty() {
                    "none".to_string()
                } else {
                    listed.join(", ")
                }
            )
        };
    }
    if theirs.is_empty() {
        format!(
            "{} lists no certificate of {identity}: check --tenant / --agent; a certificate issued \
             before owlet-soc kept this register is revoked by its file: --cert PATH/agent.pem",
            register.display()
        )
    } else {
        format!(
            "every certificate of {identity} in {} is already revoked or expired",
            register.display()
        )
    }
}

/// A serial as the operator typed it (upper case, colons, leading zeros)
/// in the one spelling.
fn normalise(serial: &str) -> String {
    let digits: String = serial
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    match hex_bytes(&digits) {
        Some(bytes) => owlet_tls::serial_hex(&bytes),
        None => digits,
    }
}

fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    let padded = if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex.to_string()
    };
    (0..padded.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(padded.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_typed_any_way_are_one() {
        assert_eq!(normalise("0A:FF:01"), "0aff01");
        assert_eq!(normalise("00ab"), "ab");
        assert_eq!(hex_bytes("abc"), Some(vec![0x0a, 0xbc]));
        assert_eq!(hex_bytes("zz"), None);
    }
}
