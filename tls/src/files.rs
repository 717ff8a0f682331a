//! Reading and writing certificate and key files.
//!
//! Invariants:
//! - a private key is only read from a file that group and others can neither
//!   read nor write (unix mode `& 0o077 == 0`); otherwise loading fails with
//!   the `chmod` command that fixes it. The mode is checked on the opened file
//!   handle, so the file checked is the file read;
//! - a secret file is created with mode 0600 from its first byte (never written
//!   and then chmod-ed), via a fresh temporary file renamed over the target,
//!   so a reader sees the old file or the complete new one;
//! - every error names the file.
//!
//! This module must never log or put key bytes into an error.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Result, TlsError};

/// Loads every PEM certificate in `path` (at least one is required).
/// Non-certificate PEM blocks in the file are ignored.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let file = File::open(path).map_err(|source| TlsError::Read {
        what: "certificate file",
        path: path.to_owned(),
        source,
    })?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Loads the first PEM private key (PKCS#8, SEC1 or PKCS#1) in `path`.
///
/// On unix, refuses a file that group or others may read or write.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let read_err = |source| TlsError::Read {
        what: "private key",
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    check_mode(path, &meta)?;

    let mut pem = Vec::new();
    file.read_to_end(&mut pem).map_err(read_err)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| TlsError::BadPem {
            path: path.to_owned(),
            detail: e.to_string(),
        })?
        .ok_or_else(|| TlsError::NoPrivateKey {
            path: path.to_owned(),
        })
}

/// Reads a private key file as PEM text, after the same permission check as
/// [`load_private_key`]. Used by the CA to load its signing key.
pub fn read_private_key_pem(path: &Path) -> Result<String> {
    let read_err = |source| TlsError::Read {
        what: "private key",
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    check_mode(path, &file.metadata().map_err(read_err)?)?;
    let mut pem = String::new();
    file.read_to_string(&mut pem).map_err(read_err)?;
    Ok(pem)
}

/// Checks that `path` is not readable or writable by group or others, so
/// config validation can report it before anything starts. On non-unix
/// platforms only checks that the file exists.
pub fn check_key_permissions(path: &Path) -> Result<()> {
    let meta = fs::metadata(path).map_err(|source| TlsError::Read {
        what: "private key",
        path: path.to_owned(),
        source,
    })?;
    check_mode(path, &meta)
}

#[cfg(unix)]
fn check_mode(path: &Path, meta: &fs::Metadata) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    let readable = mode & 0o044 != 0;
    let writable = mode & 0o022 != 0;
    let access = match (readable, writable) {
        (false, false) if mode & 0o011 == 0 => return Ok(()),
        (true, true) => "readable and writable",
        (true, false) => "readable",
        (false, true) => "writable",
        // Only execute bits for group/others: harmless but still not 0600.
        (false, false) => "accessible",
    };
    Err(TlsError::KeyPermissions {
        path: path.to_owned(),
        access,
        mode,
    })
}

#[cfg(not(unix))]
fn check_mode(_path: &Path, _meta: &fs::Metadata) -> Result<()> {
    Ok(())
}

/// Writes secret bytes (a private key) to `path` with mode 0600, replacing
/// any existing file atomically. The data goes into a new temporary file in
/// the same directory that is created with mode 0600, synced, then renamed.
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, bytes, 0o600)
}

/// Writes public bytes (a certificate) to `path` with mode 0644, replacing any
/// existing file atomically.
pub fn write_public_file(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, bytes, 0o644)
}

/// Creates `path` with mode 0600 and writes `bytes`, failing if it already
/// exists (no clobbering, no race: `O_CREAT|O_EXCL`).
pub fn create_secret_file_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = open_new(path, 0o600).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            TlsError::CaExists {
                path: path.to_owned(),
            }
        } else {
            write_err(path, source)
        }
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|source| write_err(path, source))
}

/// Creates `dir` (and parents) if missing; new directories get mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| write_err(dir, source))
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = temp_path(path)?;
    // A stale temporary file from a crashed run: remove it, then create anew
    // with O_EXCL so we never write into a file (or symlink) someone else made.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(write_err(&tmp, source)),
    }
    let result = open_new(&tmp, mode)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(write_err(path, source));
    }
    Ok(())
}

fn open_new(path: &Path, mode: u32) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path)
}

fn temp_path(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        TlsError::InvalidArgument(format!("{} is not a file path", path.display()))
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    Ok(path.with_file_name(tmp_name))
}

fn write_err(path: &Path, source: std::io::Error) -> TlsError {
    TlsError::Write {
        path: path.to_owned(),
        source,
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn key_pem() -> String {
        rcgen::KeyPair::generate().unwrap().serialize_pem()
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn secret_file_is_0600_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.key");
        write_secret_file(&path, key_pem().as_bytes()).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        check_key_permissions(&path).unwrap();
        assert!(matches!(
            load_private_key(&path).unwrap(),
            PrivateKeyDer::Pkcs8(_)
        ));
    }

    #[test]
    fn secret_file_replaces_a_world_readable_file_without_inheriting_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.key");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let pem = key_pem();
        write_secret_file(&path, pem.as_bytes()).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(fs::read_to_string(&path).unwrap(), pem);
    }

    #[test]
    fn key_readable_by_others_is_refused_with_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.key");
        write_secret_file(&path, key_pem().as_bytes()).unwrap();
        for (mode, word) in [
            (0o644, "readable by others (mode 0644)"),
            (0o640, "readable by others (mode 0640)"),
            (0o602, "writable by others (mode 0602)"),
            (0o666, "readable and writable"),
        ] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let msg = load_private_key(&path).unwrap_err().to_string();
            assert!(msg.contains(word), "{msg}");
            assert!(
                msg.contains(&format!("chmod 600 {}", path.display())),
                "{msg}"
            );
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(check_key_permissions(&path).is_err());
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        load_private_key(&path).unwrap();
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let msg = load_certs(&missing).unwrap_err().to_string();
        assert!(msg.contains(&missing.display().to_string()), "{msg}");

        // A key where a certificate is expected, and vice versa.
        let key = dir.path().join("agent.key");
        write_secret_file(&key, key_pem().as_bytes()).unwrap();
        let msg = load_certs(&key).unwrap_err().to_string();
        assert!(msg.contains("no PEM certificate"), "{msg}");
        let empty = dir.path().join("empty.key");
        write_secret_file(&empty, b"").unwrap();
        let msg = load_private_key(&empty).unwrap_err().to_string();
        assert!(msg.contains("no PEM private key"), "{msg}");
    }

    #[test]
    fn create_new_refuses_existing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.key");
        create_secret_file_new(&path, b"one").unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let err = create_secret_file_new(&path, b"two").unwrap_err();
        assert!(matches!(err, TlsError::CaExists { .. }), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"one");
    }
}
