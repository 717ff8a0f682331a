//! Secrets of a login: argon2id password hashes, RFC 6238 TOTP (SHA-1,
//! 30 s, 6 digits, ±1 step), random one-time passwords and ids.
//!
//! Guarantees: passwords are only ever stored as argon2id PHC strings with
//! a random salt; a TOTP code is accepted at most once (the caller stores
//! the step [`check_totp`] returns and passes it back as `last_step`);
//! randomness comes from the OS-seeded CSPRNG. Nothing here logs a secret.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::Rng;
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, Builder, Secret, Totp};

/// The issuer shown in authenticator apps.
pub const ISSUER: &str = "owlet SOC";

/// An argon2id PHC string of `password`.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt_bytes: [u8; 16] = rand::rng().random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` matches the stored PHC string (false for a damaged one).
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash to verify against when the user does not exist, so a login of an
/// unknown name takes as long as one with a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("owlet-no-such-user").unwrap_or_default())
}

/// A new one-time password: 20 characters without look-alikes.
pub fn one_time_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A random 256-bit token, hex.
pub fn token() -> String {
    hex(&rand::rng().random::<[u8; 32]>())
}

/// SHA-256 of `text`, hex (session ids are stored only this way).
pub fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new TOTP secret (160 bits), base32.
pub fn new_totp_secret() -> String {
    Secret::from(rand::rng().random::<[u8; 20]>()).to_base32()
}

fn totp(secret_b32: &str, account: &str) -> Result<Totp, String> {
    let secret = Secret::try_from_base32(secret_b32).map_err(|e| format!("TOTP secret: {e:?}"))?;
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .with_issuer(Some(ISSUER))
        .with_account_name(account.replace(':', "_"))
        .build()
        .map_err(|e| format!("TOTP: {e:?}"))
}

/// The `otpauth://` URI an authenticator app imports.
pub fn otpauth_uri(secret_b32: &str, account: &str) -> Result<String, String> {
    totp(secret_b32, account)?
        .to_url()
        .map_err(|e| format!("TOTP URI: {e:?}"))
}

/// The step `code` is valid for at `unix_secs`, if it is valid and newer
/// than `last_step` (a code is used once).
pub fn check_totp(secret_b32: &str, code: &str, unix_secs: u64, last_step: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret_b32, "x").ok()?;
    let step = t.check(code, unix_secs)?;
    (step > last_step).then_some(step)
}

/// The current code (tests and the demo's printed logins).
pub fn current_code(secret_b32: &str, unix_secs: u64) -> Option<String> {
    Some(totp(secret_b32, "x").ok()?.generate(unix_secs).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_argon2id_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn a_totp_code_is_accepted_once() {
        let secret = new_totp_secret();
        let now = 1_800_000_000;
        let code = current_code(&secret, now).unwrap();
        let step = check_totp(&secret, &code, now, 0).unwrap();
        assert_eq!(check_totp(&secret, &code, now, step), None);
        assert_eq!(check_totp(&secret, "12345", now, 0), None);
        let uri = otpauth_uri(&secret, "alice").unwrap();
        assert!(uri.starts_with("otpauth://totp/"), "{uri}");
        assert!(
            uri.contains("period=30") || !uri.contains("period="),
            "{uri}"
        );
    }

    #[test]
    fn rfc6238_test_vector() {
        // RFC 6238 appendix B, SHA-1, T = 59: 94287082 (8 digits) → last 6.
        let secret = Secret::from(b"12345678901234567890".to_vec()).to_base32();
        assert_eq!(current_code(&secret, 59).unwrap(), "287082");
    }
}
