//! Files that exist to hold secrets: hash-only by default.
//!
//! A diff of `/etc/shadow` or of a TLS private key is a secret however well
//! its lines are redacted, and so is a stored copy of it. For the files
//! [`classify`] names, the monitor keeps no content and sends no diff; the
//! change still shows (hashes, size, mode, owner, who) with
//! `diff_skipped = "secret_file"`. A watch rule may override this with
//! `diff_secret_files = true` (the diff and the stored copy are then still
//! redacted line by line).
//!
//! Recognised by name: shadow and gshadow (and their `-` backups), `*.key`,
//! `ipsec.secrets` (and `*.secrets` under `ipsec.d`), `chap-secrets`,
//! `pap-secrets`, wpa_supplicant and hostapd files (`wpa_supplicant*.conf`,
//! `hostapd*.conf`, `hostapd.wpa_psk`, `*.psk`), `.htpasswd` / `htpasswd`,
//! `.pgpass`, `sasl_passwd`, keytabs (`*.keytab`), OpenSSH private keys
//! (`id_rsa`, `id_ecdsa`, `id_ed25519`, `id_dsa`, `ssh_host_*_key`), PKCS#12
//! and Java key stores (`*.p12`, `*.pfx`, `*.jks`), `.netrc`, `*.kdbx`.
//! Recognised by content (the first [`SNIFF_BYTES`]): a PEM or OpenSSH
//! private-key block anywhere in it (`-----BEGIN … PRIVATE KEY-----`), and
//! binary files (not UTF-8, or a NUL byte), whose diff would say nothing
//! and whose bytes may be anything.
//!
//! Guarantee: the decision depends on the path and the content only, never
//! on the rule's other settings, so a file's treatment is the same in the
//! live monitor, `owlet fim baseline` and `owlet fim scan`.

use std::path::Path;

/// How much of a file's start is searched for a private-key marker.
pub const SNIFF_BYTES: usize = 64 * 1024;

/// Why a file is treated as secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretFile {
    /// Its name says it holds secrets (shadow, a key file, PSKs ...).
    Name,
    /// It holds a PEM or OpenSSH private-key block.
    PrivateKey,
    /// Not text (a keytab, a key store, any binary file).
    Binary,
}

impl SecretFile {
    /// The value of the event's `diff_skipped`.
    pub fn diff_skipped(self) -> &'static str {
        match self {
            SecretFile::Name | SecretFile::PrivateKey => "secret_file",
            SecretFile::Binary => "binary",
        }
    }
}

/// File names (the last path component) that hold secrets.
const NAMES: &[&str] = &[
    "shadow",
    "shadow-",
    "gshadow",
    "gshadow-",
    "ipsec.secrets",
    "chap-secrets",
    "pap-secrets",
    "hostapd.wpa_psk",
    "hostapd.eap_user",
    ".htpasswd",
    "htpasswd",
    ".pgpass",
    "sasl_passwd",
    "id_rsa",
    "id_ecdsa",
    "id_ecdsa_sk",
    "id_ed25519",
    "id_ed25519_sk",
    "id_dsa",
    ".netrc",
    "credentials",
    "secrets.yaml",
    "secrets.yml",
];

/// Suffixes of file names that hold secrets.
const SUFFIXES: &[&str] = &[
    ".key", ".keytab", ".p12", ".pfx", ".jks", ".psk", ".kdbx", ".secrets",
];

/// Prefix + suffix pairs of file names that hold secrets.
const FAMILIES: &[(&str, &str)] = &[
    ("wpa_supplicant", ".conf"),
    ("hostapd", ".conf"),
    ("ssh_host_", "_key"),
];

/// Whether the name alone marks the file as secret.
pub fn secret_by_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let lower = name.to_ascii_lowercase();
    NAMES.contains(&lower.as_str())
        || SUFFIXES.iter().any(|s| lower.ends_with(s))
        || FAMILIES
            .iter()
            .any(|(p, s)| lower.starts_with(p) && lower.ends_with(s))
}

/// Whether the start of `bytes` holds a private-key block.
fn holds_private_key(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(SNIFF_BYTES)];
    let text = String::from_utf8_lossy(head);
    text.lines().any(|l| {
        let t = l.trim();
        t.starts_with("-----BEGIN ") && t.ends_with("PRIVATE KEY-----")
    })
}

/// Why `path` with contents `bytes` is treated as secret, if it is.
/// `bytes` is `None` when the content was not read (too large, unreadable):
/// then only the name decides.
pub fn classify(path: &Path, bytes: Option<&[u8]>) -> Option<SecretFile> {
    if secret_by_name(path) {
        return Some(SecretFile::Name);
    }
    let bytes = bytes?;
    if !crate::redacted::is_text(bytes) {
        Some(SecretFile::Binary)
    } else if holds_private_key(bytes) {
        Some(SecretFile::PrivateKey)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(path: &str, bytes: &[u8]) -> Option<SecretFile> {
        classify(Path::new(path), Some(bytes))
    }

    #[test]
    fn names_that_hold_secrets() {
        for p in [
            "/etc/shadow",
            "/etc/gshadow-",
            "/etc/ssl/private/server.key",
            "/etc/ipsec.secrets",
            "/etc/ipsec.d/site-a.secrets",
            "/etc/ppp/chap-secrets",
            "/etc/ppp/pap-secrets",
            "/etc/wpa_supplicant/wpa_supplicant-wlan0.conf",
            "/etc/hostapd/hostapd.conf",
            "/etc/hostapd.wpa_psk",
            "/var/www/.htpasswd",
            "/root/.pgpass",
            "/etc/postfix/sasl_passwd",
            "/etc/krb5.keytab",
            "/root/.ssh/id_ed25519",
            "/etc/ssh/ssh_host_rsa_key",
            "/etc/pki/store.p12",
            "/root/.netrc",
        ] {
            assert_eq!(c(p, b"x = 1\n"), Some(SecretFile::Name), "{p}");
            assert_eq!(classify(Path::new(p), None), Some(SecretFile::Name), "{p}");
        }
    }

    #[test]
    fn ordinary_files_are_not_secret() {
        for p in [
            "/etc/passwd",
            "/etc/group",
            "/etc/ssh/sshd_config",
            "/etc/ssh/ssh_host_rsa_key.pub",
            "/root/.ssh/id_ed25519.pub",
            "/etc/nftables.conf",
            "/etc/ssl/certs/ca.pem",
            "/etc/keyboard",
            "/etc/default/keyboard",
        ] {
            assert_eq!(c(p, b"a = 1\n"), None, "{p}");
        }
        assert_eq!(classify(Path::new("/etc/passwd"), None), None);
    }

    #[test]
    fn private_keys_and_binaries_by_content() {
        let pem = b"# bundle\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----\n";
        assert_eq!(
            c("/etc/haproxy/site.pem", pem),
            Some(SecretFile::PrivateKey)
        );
        let ossh =
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----\n";
        assert_eq!(c("/srv/deploy", ossh), Some(SecretFile::PrivateKey));
        let cert = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert_eq!(c("/etc/ssl/certs/site.pem", cert), None);
        assert_eq!(c("/etc/blob", b"\x05\x02\0\x01"), Some(SecretFile::Binary));
        assert_eq!(c("/etc/latin1", b"caf\xe9\n"), Some(SecretFile::Binary));
        assert_eq!(SecretFile::Binary.diff_skipped(), "binary");
        assert_eq!(SecretFile::PrivateKey.diff_skipped(), "secret_file");
    }
}
