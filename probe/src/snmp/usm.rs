//! SNMPv3 User-based Security Model crypto: key localization (RFC 3414
//! A.2), HMAC authentication (RFC 3414 MD5/SHA-1, RFC 7860 SHA-2) and
//! AES-128-CFB privacy (RFC 3826), on RustCrypto primitives.
//!
//! Never logs or returns key material in errors; `Debug` of [`UsmUser`]
//! shows only the user name and protocols.

use std::fmt;
use std::sync::{Arc, OnceLock};

use aes::cipher::KeyIvInit;
use hmac::{KeyInit, Mac};
use sha2::Digest;

use crate::config::Secret;

/// USM authentication protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthProto {
    Md5,
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

macro_rules! hash_parts {
    ($d:ty, $parts:expr) => {{
        let mut h = <$d>::new();
        for p in $parts {
            h.update(p);
        }
        h.finalize().to_vec()
    }};
}

macro_rules! hmac_of {
    ($d:ty, $key:expr, $msg:expr) => {{
        match <hmac::Hmac<$d> as KeyInit>::new_from_slice($key) {
            Ok(mut m) => {
                m.update($msg);
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    }};
}

macro_rules! password_key {
    ($d:ty, $pw:expr) => {{
        // RFC 3414 A.2.1: hash 1 MiB of the password repeated.
        let pw: &[u8] = $pw;
        let mut h = <$d>::new();
        let mut block = [0u8; 64];
        let mut idx = 0usize;
        for _ in 0..(1_048_576 / 64) {
            for b in block.iter_mut() {
                *b = pw[idx % pw.len()];
                idx += 1;
            }
            h.update(block);
        }
        h.finalize().to_vec()
    }};
}

/// An `auth_proto` or `priv_proto` this agent does not speak.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolNameError {
    #[error(
        "\"{0}\" is not an auth protocol; use sha256 (recommended), sha224, sha384, sha512, sha or md5"
    )]
    Auth(String),
    #[error(
        "\"{0}\" is not supported (DES is broken); configure the device for AES and use \"aes\""
    )]
    Des(String),
    #[error("\"{0}\" is not a privacy protocol; use \"aes\" (AES-128-CFB, RFC 3826)")]
    Privacy(String),
}

impl AuthProto {
    pub fn parse(s: &str) -> Result<AuthProto, ProtocolNameError> {
        let n: String = s
            .to_ascii_lowercase()
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect();
        Ok(match n.as_str() {
            "md5" => AuthProto::Md5,
            "sha" | "sha1" => AuthProto::Sha1,
            "sha224" => AuthProto::Sha224,
            "sha256" => AuthProto::Sha256,
            "sha384" => AuthProto::Sha384,
            "sha512" => AuthProto::Sha512,
            _ => {
                return Err(ProtocolNameError::Auth(s.to_string()));
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            AuthProto::Md5 => "MD5",
            AuthProto::Sha1 => "SHA",
            AuthProto::Sha224 => "SHA-224",
            AuthProto::Sha256 => "SHA-256",
            AuthProto::Sha384 => "SHA-384",
            AuthProto::Sha512 => "SHA-512",
        }
    }

    /// Length of msgAuthenticationParameters (truncated HMAC).
    pub fn mac_len(self) -> usize {
        match self {
            AuthProto::Md5 | AuthProto::Sha1 => 12,
            AuthProto::Sha224 => 16,
            AuthProto::Sha256 => 24,
            AuthProto::Sha384 => 32,
            AuthProto::Sha512 => 48,
        }
    }

    fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        match self {
            AuthProto::Md5 => hash_parts!(md5::Md5, parts),
            AuthProto::Sha1 => hash_parts!(sha1::Sha1, parts),
            AuthProto::Sha224 => hash_parts!(sha2::Sha224, parts),
            AuthProto::Sha256 => hash_parts!(sha2::Sha256, parts),
            AuthProto::Sha384 => hash_parts!(sha2::Sha384, parts),
            AuthProto::Sha512 => hash_parts!(sha2::Sha512, parts),
        }
    }

    /// Ku: the non-localized key from a passphrase (RFC 3414 A.2.1).
    pub fn password_to_key(self, password: &[u8]) -> Vec<u8> {
        if password.is_empty() {
            return Vec::new();
        }
        match self {
            AuthProto::Md5 => password_key!(md5::Md5, password),
            AuthProto::Sha1 => password_key!(sha1::Sha1, password),
            AuthProto::Sha224 => password_key!(sha2::Sha224, password),
            AuthProto::Sha256 => password_key!(sha2::Sha256, password),
            AuthProto::Sha384 => password_key!(sha2::Sha384, password),
            AuthProto::Sha512 => password_key!(sha2::Sha512, password),
        }
    }

    /// Kul = H(Ku || engineID || Ku) (RFC 3414 A.2.2).
    pub fn localize(self, ku: &[u8], engine_id: &[u8]) -> Vec<u8> {
        self.digest(&[ku, engine_id, ku])
    }

    /// The full HMAC of `msg` under `key` (caller truncates to `mac_len`).
    pub fn hmac(self, key: &[u8], msg: &[u8]) -> Vec<u8> {
        let mut out = match self {
            AuthProto::Md5 => hmac_of!(md5::Md5, key, msg),
            AuthProto::Sha1 => hmac_of!(sha1::Sha1, key, msg),
            AuthProto::Sha224 => hmac_of!(sha2::Sha224, key, msg),
            AuthProto::Sha256 => hmac_of!(sha2::Sha256, key, msg),
            AuthProto::Sha384 => hmac_of!(sha2::Sha384, key, msg),
            AuthProto::Sha512 => hmac_of!(sha2::Sha512, key, msg),
        };
        out.truncate(self.mac_len());
        out
    }
}

/// USM privacy protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivProto {
    /// AES-128 in CFB128 mode (RFC 3826).
    Aes128,
}

impl PrivProto {
    pub fn parse(s: &str) -> Result<PrivProto, ProtocolNameError> {
        let n: String = s
            .to_ascii_lowercase()
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect();
        match n.as_str() {
            "aes" | "aes128" => Ok(PrivProto::Aes128),
            "des" | "3des" => Err(ProtocolNameError::Des(s.to_string())),
            _ => Err(ProtocolNameError::Privacy(s.to_string())),
        }
    }

    pub fn name(self) -> &'static str {
        "AES"
    }
}

/// RFC 3826 IV: engineBoots || engineTime || salt.
fn aes_iv(boots: u32, time: u32, salt: &[u8; 8]) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..4].copy_from_slice(&boots.to_be_bytes());
    iv[4..8].copy_from_slice(&time.to_be_bytes());
    iv[8..].copy_from_slice(salt);
    iv
}

/// Encrypts in place with AES-128-CFB; `key` is the localized privacy key.
pub fn aes_encrypt(key: &[u8], boots: u32, time: u32, salt: &[u8; 8], data: &mut [u8]) -> bool {
    let Some(k) = key.get(..16) else { return false };
    match cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(k, &aes_iv(boots, time, salt)) {
        Ok(c) => {
            c.encrypt(data);
            true
        }
        Err(_) => false,
    }
}

/// Decrypts in place; `priv_params` is the 8-byte salt from the message.
pub fn aes_decrypt(key: &[u8], boots: u32, time: u32, priv_params: &[u8], data: &mut [u8]) -> bool {
    let Some(k) = key.get(..16) else { return false };
    let Ok(salt) = <[u8; 8]>::try_from(priv_params) else {
        return false;
    };
    match cfb_mode::Decryptor::<aes::Aes128>::new_from_slices(k, &aes_iv(boots, time, &salt)) {
        Ok(c) => {
            c.decrypt(data);
            true
        }
        Err(_) => false,
    }
}

/// Non-localized keys, derived once per user (the 1 MiB hash is the slow part).
struct MasterKeys {
    auth: Vec<u8>,
    privacy: Option<Vec<u8>>,
}

/// An SNMPv3 user with its protocols and passphrases.
#[derive(Clone)]
pub struct UsmUser {
    pub user: String,
    pub auth: AuthProto,
    auth_key: Secret,
    pub privacy: Option<(PrivProto, Secret)>,
    master: Arc<OnceLock<MasterKeys>>,
}

impl fmt::Debug for UsmUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsmUser")
            .field("user", &self.user)
            .field("auth", &self.auth)
            .field("privacy", &self.privacy.as_ref().map(|p| p.0))
            .finish_non_exhaustive()
    }
}

/// Keys localized to one engine.
pub struct LocalKeys {
    pub auth: Vec<u8>,
    pub privacy: Option<Vec<u8>>,
}

impl UsmUser {
    pub fn new(
        user: String,
        auth: AuthProto,
        auth_key: Secret,
        privacy: Option<(PrivProto, Secret)>,
    ) -> Self {
        UsmUser {
            user,
            auth,
            auth_key,
            privacy,
            master: Arc::new(OnceLock::new()),
        }
    }

    /// Keys localized to `engine_id`.
    pub fn localize(&self, engine_id: &[u8]) -> LocalKeys {
        let m = self.master.get_or_init(|| MasterKeys {
            auth: self.auth.password_to_key(self.auth_key.expose().as_bytes()),
            privacy: self
                .privacy
                .as_ref()
                .map(|(_, k)| self.auth.password_to_key(k.expose().as_bytes())),
        });
        LocalKeys {
            auth: self.auth.localize(&m.auth, engine_id),
            privacy: m.privacy.as_ref().map(|k| self.auth.localize(k, engine_id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn rfc3414_a3_vectors() {
        // RFC 3414 A.3.1 / A.3.2: password "maplesyrup", engineID 000000000000000000000002.
        let engine = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let ku = AuthProto::Md5.password_to_key(b"maplesyrup");
        assert_eq!(hex(&ku), "9faf3283884e92834ebc9847d8edd963");
        assert_eq!(
            hex(&AuthProto::Md5.localize(&ku, &engine)),
            "526f5eed9fcce26f8964c2930787d82b"
        );
        let ku = AuthProto::Sha1.password_to_key(b"maplesyrup");
        assert_eq!(hex(&ku), "9fb5cc0381497b3793528939ff788d5d79145211");
        assert_eq!(
            hex(&AuthProto::Sha1.localize(&ku, &engine)),
            "6695febc9288e36282235fc7151f128497b38f3f"
        );
    }

    #[test]
    fn aes_roundtrip() {
        let key = [7u8; 16];
        let salt = [1u8; 8];
        let mut data = b"scoped pdu bytes, any length".to_vec();
        let orig = data.clone();
        assert!(aes_encrypt(&key, 3, 99, &salt, &mut data));
        assert_ne!(data, orig);
        assert!(aes_decrypt(&key, 3, 99, &salt, &mut data));
        assert_eq!(data, orig);
    }

    #[test]
    fn debug_has_no_secrets() {
        let u = UsmUser::new(
            "u".into(),
            AuthProto::Sha256,
            Secret::new("topsecretauth"),
            Some((PrivProto::Aes128, Secret::new("topsecretpriv"))),
        );
        let _ = u.localize(b"engine");
        let d = format!("{u:?}");
        assert!(!d.contains("topsecret"));
    }
}
