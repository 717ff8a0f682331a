//! Hashing for the scheduler: a check's stable phase within its interval
//! and the fingerprint that tells a reload whether a check changed.
//!
//! Both use FNV-1a, which is stable across builds and platforms (the phase
//! must survive agent restarts and upgrades).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::CheckConfig;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Change detection for reload: the config's Debug form (secrets redacted)
/// plus the secrets themselves and the CA file's contents (read now, so an
/// edited CA file is picked up), hashed.
pub(super) fn fingerprint(c: &CheckConfig) -> u64 {
    let mut text = format!("{c:?}");
    for s in [&c.community, &c.auth_key, &c.priv_key]
        .into_iter()
        .flatten()
    {
        text.push('\0');
        text.push_str(s.expose());
    }
    let mut h = fnv1a(text.as_bytes(), FNV_OFFSET);
    text.clear();
    if let Some(ca) = &c.ca {
        h = match std::fs::read(ca) {
            Ok(bytes) => fnv1a(&bytes, h ^ 0x01),
            // Differs from any readable state: the check is rebuilt and its
            // build reports the error.
            Err(e) => fnv1a(
                format!("\0unreadable CA: {:?}", e.kind()).as_bytes(),
                h ^ 0x02,
            ),
        };
    }
    h
}

/// The check's stable phase within its interval (offset from interval
/// boundaries of the Unix clock).
pub fn phase_offset(id: &str, interval: Duration) -> Duration {
    let ms = u64::try_from(interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(fnv1a(id.as_bytes(), FNV_OFFSET) % ms)
}

/// Time from now until the check's next slot.
pub(super) fn delay_to_slot(id: &str, interval: Duration) -> Duration {
    let ms = u64::try_from(interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let offset = fnv1a(id.as_bytes(), FNV_OFFSET) % ms;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(0))
        .unwrap_or(0);
    let pos = now % ms;
    Duration::from_millis((offset + ms - pos) % ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CheckTypeName;

    #[test]
    fn fingerprint_follows_ca_file_contents() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "one").unwrap();
        let mut c = CheckConfig::new("tls", CheckTypeName::Tcp, "127.0.0.1:443");
        c.ca = Some(ca.clone());
        let a = fingerprint(&c);
        assert_eq!(a, fingerprint(&c));
        std::fs::write(&ca, "two").unwrap();
        let b = fingerprint(&c);
        assert_ne!(a, b, "edited CA file must change the fingerprint");
        std::fs::remove_file(&ca).unwrap();
        let gone = fingerprint(&c);
        assert_ne!(gone, a);
        assert_ne!(gone, b);
    }
}
