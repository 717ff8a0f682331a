//! Secrets sealed at rest: the users' TOTP secrets are stored in
//! `portal.db` only as XChaCha20-Poly1305 ciphertexts under a key that
//! lives outside the database, in `portal-totp.key` beside it.
//!
//! Invariants: the key file holds exactly 32 random bytes, is created once
//! with `O_EXCL` and mode 0600 and is refused when another user or group
//! may read it; every sealed value has its own random 192-bit nonce and is
//! bound to the user's id (associated data), so a sealed secret copied to
//! another user's row does not open. A sealed value reads
//! `xc20p1:` + base64(nonce ‖ ciphertext ‖ tag).
//!
//! Must never: write a secret or the key into the database, log either, or
//! create a new key while sealed values exist (they would be lost for
//! good: the error says to restore the key file instead).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::Rng;

/// The key file's name, beside `portal.db`.
pub const KEY_FILE: &str = "portal-totp.key";

/// What every sealed value starts with.
pub const PREFIX: &str = "xc20p1:";

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "{path} is missing, but portal.db holds sealed TOTP secrets that only it opens: restore the key file from your backup (32 bytes, mode 0600, owned by the portal's user); without it, reset every user's TOTP by adding them again"
    )]
    KeyMissing { path: PathBuf },
    #[error(
        "{path} may be read by other users (mode {mode:o}): it holds the key of the portal's TOTP secrets; fix: chmod 600 {path}"
    )]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error(
        "{path} holds {len} bytes, a key is exactly 32: restore the right file from your backup (a new key cannot open the stored secrets)"
    )]
    KeySize { path: PathBuf, len: usize },
    #[error(
        "{path} cannot be read by this user: run owlet-soc (portal and user commands alike) as the user that owns it, or chown it to that user (keep mode 0600)"
    )]
    KeyUnreadable { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "a sealed TOTP secret of user id {user_id} does not open with {path}: the key file is not the one it was sealed with, or the row was altered"
    )]
    Open { user_id: i64, path: PathBuf },
}

/// The key of the sealed secrets.
pub struct SealKey {
    cipher: XChaCha20Poly1305,
    path: PathBuf,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealKey({})", self.path.display())
    }
}

/// `DIR/portal-totp.key` for the database at `DIR/…`.
pub fn key_path(db_path: &Path) -> PathBuf {
    db_path.with_file_name(KEY_FILE)
}

/// Whether `value` is a sealed value (else: a clear secret of an older
/// version, to be sealed by the migration).
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

impl SealKey {
    /// Loads the key at `path`, creating it when it does not exist and no
    /// sealed value does (`sealed_exist`).
    pub fn load_or_create(path: &Path, sealed_exist: bool) -> Result<SealKey, SealError> {
        let io = |source| SealError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bytes = match std::fs::File::open(path) {
            Ok(mut f) => {
                let mode = f.metadata().map_err(io)?.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(SealError::KeyPermissions {
                        path: path.to_path_buf(),
                        mode,
                    });
                }
                let mut bytes = Vec::new();
                Read::by_ref(&mut f)
                    .take(KEY_LEN as u64 + 1)
                    .read_to_end(&mut bytes)
                    .map_err(io)?;
                if bytes.len() != KEY_LEN {
                    return Err(SealError::KeySize {
                        path: path.to_path_buf(),
                        len: bytes.len(),
                    });
                }
                bytes
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if sealed_exist {
                    return Err(SealError::KeyMissing {
                        path: path.to_path_buf(),
                    });
                }
                let bytes: [u8; KEY_LEN] = rand::rng().random();
                // O_EXCL: two processes opening at once never both write a key.
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                f.write_all(&bytes).map_err(io)?;
                f.sync_all().map_err(io)?;
                bytes.to_vec()
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(SealError::KeyUnreadable {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => return Err(io(e)),
        };
        Ok(SealKey {
            cipher: XChaCha20Poly1305::new(Key::from_slice(&bytes)),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Seals `secret` of user `user_id`.
    pub fn seal(&self, user_id: i64, secret: &str) -> String {
        let nonce: [u8; NONCE_LEN] = rand::rng().random();
        let aad = aad(user_id);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: &aad,
                },
            )
            // Encryption fails only for messages over 256 GiB.
            .unwrap_or_default();
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{PREFIX}{}", B64.encode(bytes))
    }

    /// Opens a value [`seal`](Self::seal) made for `user_id`.
    pub fn open(&self, user_id: i64, sealed: &str) -> Result<String, SealError> {
        let fail = || SealError::Open {
            user_id,
            path: self.path.clone(),
        };
        let text = sealed.strip_prefix(PREFIX).ok_or_else(fail)?;
        let bytes = B64.decode(text).map_err(|_| fail())?;
        if bytes.len() < NONCE_LEN + 16 {
            return Err(fail());
        }
        let (nonce, ct) = bytes.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: &aad(user_id),
                },
            )
            .map_err(|_| fail())?;
        String::from_utf8(plain).map_err(|_| fail())
    }
}

fn aad(user_id: i64) -> Vec<u8> {
    let mut aad = b"owlet-portal totp v1 user ".to_vec();
    aad.extend_from_slice(&user_id.to_be_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_open_only_for_their_user_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let key = SealKey::load_or_create(&path, false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let a = key.seal(7, "JBSWY3DPEHPK3PXP");
        let b = key.seal(7, "JBSWY3DPEHPK3PXP");
        assert_ne!(a, b, "a nonce per value");
        assert!(is_sealed(&a) && !a.contains("JBSWY3DP"));
        assert_eq!(key.open(7, &a).unwrap(), "JBSWY3DPEHPK3PXP");
        assert!(key.open(8, &a).is_err(), "bound to the user id");
        let again = SealKey::load_or_create(&path, true).unwrap();
        assert_eq!(again.open(7, &b).unwrap(), "JBSWY3DPEHPK3PXP");
        let other = SealKey::load_or_create(&dir.path().join("other.key"), false).unwrap();
        assert!(other.open(7, &a).is_err());
    }

    #[test]
    fn a_bad_or_missing_key_file_is_refused_with_its_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let e = SealKey::load_or_create(&path, true).unwrap_err();
        assert!(matches!(e, SealError::KeyMissing { .. }), "{e}");
        assert!(e.to_string().contains("portal-totp.key"), "{e}");
        assert!(!path.exists(), "no new key while sealed values exist");
        SealKey::load_or_create(&path, false).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = SealKey::load_or_create(&path, true).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, [1u8; 16]).unwrap();
        let e = SealKey::load_or_create(&path, true).unwrap_err();
        assert!(matches!(e, SealError::KeySize { len: 16, .. }), "{e}");
    }
}
