//! The CA's register of every certificate it issued (`issued.json` in the CA
//! directory): serial, identity, validity and, once revoked, when and why.
//!
//! Guarantees:
//! - every agent certificate this crate issues is in the register *before*
//!   its files are written: a certificate that exists can be found by
//!   identity and revoked;
//! - changes are made under an exclusive lock (`flock` on `ca.lock`), so two
//!   `owlet-soc ca` commands at once never lose each other's entries, and
//!   the file is replaced atomically (readers see the old or the new one);
//! - the CRL number only grows.
//!
//! Must never: drop an entry (a revoked certificate that falls out of the
//! register would fall out of the next CRL).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use owlet_tls::files::write_public_file;
use owlet_tls::{Identity, Result, TlsError};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::Reason;

/// Register file name in the CA directory.
pub const REGISTER_FILE: &str = "issued.json";
/// Lock file taken while the register changes.
const LOCK_FILE: &str = "ca.lock";

/// One issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    /// `owlet_tls::serial_hex` spelling.
    pub serial: String,
    pub tenant: String,
    pub agent: String,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub reason: Option<Reason>,
}

impl Issued {
    pub fn is_for(&self, identity: &Identity) -> bool {
        self.tenant == identity.tenant && self.agent == identity.agent_id
    }

    /// Not revoked and not expired at `now`: worth revoking.
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && self.not_after > now
    }
}

/// The register's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Register {
    /// Number of the last CRL published (0: none yet).
    #[serde(default)]
    pub crl_number: u64,
    #[serde(default)]
    pub certificates: Vec<Issued>,
}

/// The register of the CA in `dir`, locked for change until dropped.
pub struct Locked {
    path: PathBuf,
    pub register: Register,
    _lock: Flock<File>,
}

impl Locked {
    /// Takes the lock (waiting for another command to finish) and reads the
    /// register; a missing register is empty (a CA from before it existed).
    pub fn open(dir: &Path) -> Result<Self> {
        let lock_path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| TlsError::Write {
                path: lock_path.clone(),
                source,
            })?;
        let lock =
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| TlsError::Write {
                path: lock_path,
                source: errno.into(),
            })?;
        let path = dir.join(REGISTER_FILE);
        let register = read(&path)?;
        Ok(Self {
            path,
            register,
            _lock: lock,
        })
    }

    /// Writes the register back (atomically).
    pub fn save(&self) -> Result<()> {
        let text =
            serde_json::to_string_pretty(&self.register).map_err(|e| TlsError::Register {
                path: self.path.clone(),
                detail: e.to_string(),
            })?;
        write_public_file(&self.path, format!("{text}\n").as_bytes())
    }
}

/// Reads the register without locking (a consistent snapshot: the file is
/// only ever replaced whole).
pub fn read(path: &Path) -> Result<Register> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| TlsError::Register {
            path: path.to_owned(),
            detail: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Register::default()),
        Err(source) => Err(TlsError::Read {
            what: "CA register",
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_a_round_trip_and_a_broken_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let entry = Issued {
            serial: "0a".into(),
            tenant: "acme".into(),
            agent: "s1".into(),
            issued_at: now,
            not_before: now,
            not_after: now + time::Duration::days(1),
            revoked_at: Some(now),
            reason: Some(Reason::KeyCompromise),
        };
        {
            let mut locked = Locked::open(dir.path()).unwrap();
            assert!(locked.register.certificates.is_empty());
            locked.register.certificates.push(entry.clone());
            locked.register.crl_number = 4;
            locked.save().unwrap();
        }
        let register = read(&dir.path().join(REGISTER_FILE)).unwrap();
        assert_eq!(register.certificates, vec![entry]);
        assert_eq!(register.crl_number, 4);

        std::fs::write(dir.path().join(REGISTER_FILE), "{ not json").unwrap();
        let err = Locked::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("issued.json"), "{err}");
    }
}
