//! Bare random-looking tokens: long hex and base64 / base64url runs with no
//! key before them (a PEM body line, a WireGuard key pasted alone, an API key
//! in a URL path).
//!
//! An absolute path under a standard root (`/tmp/…`, `/usr/…`, see
//! `PATH_ROOTS`) is judged segment by segment: a process's executable in a
//! randomly named directory is evidence an analyst needs, not a secret; a
//! segment that is itself a random token of 24 characters or more still is.
//!
//! Thresholds, and why (measured with seeded random tokens against 78,000
//! path and identifier tokens of a Debian system and this workspace):
//! * hex: a run of at least [`MIN_HEX_LEN`] (32) hex digits whose Shannon
//!   entropy is at least [`MIN_HEX_ENTROPY`] (2.5 bits per character; the
//!   lowest of a million random 32-digit runs measured 2.68, `000…0`
//!   measures 0). A git
//!   commit id, a sha256 or an MD5 sum in a configuration file is redacted
//!   too: over-redaction, accepted.
//! * base64 / base64url: a run of at least [`MIN_TOKEN_LEN`] (24) characters
//!   of `A–Z a–z 0–9 + / _ -` (then up to two `=`) whose Shannon entropy is
//!   at least [`MIN_TOKEN_ENTROPY`] (3.3 bits per character) and that does
//!   not read as words (below). Entropy alone cannot tell a 24-character
//!   secret from a path: random base64 of 24 characters measures 3.45 to
//!   4.58 bits (1 in 1,000 below 3.74), paths of 24 to 28 characters 3.0 to
//!   4.5 (1 in 100 above 4.16). So the entropy floor only drops repetitive
//!   runs, and the shape decides:
//!   - no upper-case letter at all (paths, `snake_case`, `kebab-case`,
//!     lower-case words, IKE proposals `aes256-sha2_256-modp2048`):
//!     ordinary unless it has no `_`, `-` or `/` separator and more than 3
//!     runs of digits (random lower-case-and-digit strings);
//!   - no lower-case letter: ordinary when it has a `_`, `-` or `/`
//!     separator (`SCREAMING_SNAKE` names); a base32 secret has none;
//!   - a UUID (`8-4-4-4-12` hex) is ordinary;
//!   - mixed case: ordinary only when it parses as `camelCase` /
//!     `PascalCase` words ([`reads_as_words`]), as `sshd_config` keywords do
//!     (`ChallengeResponseAuthentication`).
//!
//!   A model of these rules run on 4,000,000 uniformly random tokens of 24
//!   characters missed 2 in a million of base64 and 4 in a million of
//!   base64url (they read as words); of 28 characters, about 1 in a
//!   million; of 32 and more, none. The seeded test in this module checks
//!   20,000 tokens per length and alphabet.
//!
//! Not covered: lower-case-only random strings that have a `_`, `-` or `/`
//! or at most 3 runs of digits, tokens shorter than 24 characters, and
//! secrets made of words (`correct-horse-battery-staple`): those need a key
//! before them or a shape rule.
//! A public SSH key after its algorithm name (`ssh-ed25519 AAAA…`) is not a
//! secret and is left alone; certificate bodies are redacted (over-redaction).

/// Shortest base64 / base64url run that can be a secret token.
pub const MIN_TOKEN_LEN: usize = 24;
/// Entropy floor for base64 tokens, in bits per character.
pub const MIN_TOKEN_ENTROPY: f64 = 3.3;
/// Shortest hex run that is a secret.
pub const MIN_HEX_LEN: usize = 32;
/// Entropy floor for hex runs, in bits per character.
pub const MIN_HEX_ENTROPY: f64 = 2.5;

/// Shannon entropy of the bytes of `s`, in bits per byte; 0 for "".
pub fn shannon_entropy(s: &str) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[usize::from(b)] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Whether a hex run is a secret: long enough and not repetitive.
pub fn hex_is_secret(run: &str) -> bool {
    run.len() >= MIN_HEX_LEN && shannon_entropy(run) >= MIN_HEX_ENTROPY
}

/// First components of absolute paths (random base64 begins so once in
/// billions).
const PATH_ROOTS: &[&str] = &[
    "bin", "boot", "dev", "etc", "home", "lib", "lib64", "media", "mnt", "opt", "proc", "root",
    "run", "sbin", "snap", "srv", "sys", "tmp", "usr", "var", "work",
];

/// Whether a base64 / base64url run (as matched: `[A-Za-z0-9+/_-]+={0,2}`)
/// looks random by the rules in the module doc.
pub fn looks_random(token: &str) -> bool {
    let core = token.trim_end_matches('=');
    // An absolute path under a standard root (`/tmp/…`, `/usr/…`): its
    // segments are judged one by one, so a process's executable stays
    // readable evidence unless a segment itself looks random.
    if let Some(rest) = core.strip_prefix('/')
        && rest
            .split('/')
            .next()
            .is_some_and(|first| PATH_ROOTS.contains(&first))
    {
        return rest.split('/').any(looks_random);
    }
    if core.len() < MIN_TOKEN_LEN || shannon_entropy(core) < MIN_TOKEN_ENTROPY {
        return false;
    }
    if is_uuid(core) {
        return false;
    }
    let upper = core.bytes().any(|b| b.is_ascii_uppercase());
    let lower = core.bytes().any(|b| b.is_ascii_lowercase());
    // Names and paths are cut into words by these; random base64 (of
    // one case only, which is rare already) seldom is.
    let separated = core.contains(['_', '-', '/']);
    if !upper {
        return !separated && digit_runs(core) > 3;
    }
    if !lower {
        return !separated;
    }
    !reads_as_words(core)
}

fn digit_runs(s: &str) -> usize {
    let b = s.as_bytes();
    (0..b.len())
        .filter(|&i| b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_digit()))
        .count()
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether a mixed-case token parses as words: pieces between `/`, `_` and
/// `-`, each a run of `Capitalized` words (at least 3 letters), optionally
/// led by one lower-case word (`camelCase`), with at most one acronym of 2
/// to 6 capitals in the whole token, at most one word without a vowel
/// (`Kbd`), no word with 5 consonants in a row, and at most one digit, at
/// the end of a piece (`Tls1`). Random base64 almost never parses so;
/// `GSSAPICleanupCredentials` and `org_freedesktop_NetworkManager` do.
pub fn reads_as_words(token: &str) -> bool {
    let mut acronyms = 0;
    let mut vowelless = 0;
    let mut word = |w: &[u8]| -> bool {
        if !w.iter().any(|c| b"aeiouyAEIOUY".contains(c)) {
            vowelless += 1;
        }
        let mut consonants = 0;
        for c in w {
            if b"aeiouyAEIOUY".contains(c) {
                consonants = 0;
            } else {
                consonants += 1;
                if consonants >= 5 {
                    return false;
                }
            }
        }
        true
    };
    for piece in token.split(['/', '_', '-']) {
        let bytes = piece.as_bytes();
        let body = match bytes.split_last() {
            Some((last, rest)) if last.is_ascii_digit() => rest,
            _ => bytes,
        };
        let run = |from: usize, f: fn(&u8) -> bool| {
            from + body[from..].iter().take_while(|c| f(c)).count()
        };
        let mut i = 0;
        while i < body.len() {
            if body[i].is_ascii_lowercase() {
                let end = run(i, u8::is_ascii_lowercase);
                // Lower case leads a piece only; elsewhere it follows a capital.
                if i != 0 || end - i < 3 || !word(&body[i..end]) {
                    return false;
                }
                i = end;
            } else if body[i].is_ascii_uppercase() {
                let caps_end = run(i, u8::is_ascii_uppercase);
                let end = run(caps_end, u8::is_ascii_lowercase);
                let (caps, lows) = (caps_end - i, end - caps_end);
                // Capitals not starting a Capitalized word form an acronym.
                let acronym = if lows == 0 { caps } else { caps - 1 };
                if acronym == 1 || acronym > 6 {
                    return false;
                }
                if acronym >= 2 {
                    acronyms += 1;
                }
                if lows > 0 && (lows < 2 || !word(&body[caps_end - 1..end])) {
                    return false;
                }
                i = end;
            } else {
                return false;
            }
        }
    }
    acronyms <= 1 && vowelless <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_judged_by_their_segments() {
        assert!(!looks_random(
            "/tmp/owlet-e2eFu6a80/agent-acme-host/owlminer"
        ));
        assert!(!looks_random("/usr/lib/x86_64-linux-gnu/libcrypto.so.3"));
        assert!(looks_random("/tmp/aZ3kQ9xP2mL7vB8nR4tY6wE1uI5oS0dF/run"));
    }

    /// xorshift64*: a seeded generator, so these measurements never flake.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn token(&mut self, alphabet: &[u8], len: usize) -> String {
            (0..len)
                .map(|_| char::from(alphabet[(self.next() % alphabet.len() as u64) as usize]))
                .collect()
        }
    }
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    #[test]
    fn entropy_of_known_strings() {
        assert_eq!(shannon_entropy(""), 0.0);
        assert_eq!(shannon_entropy("aaaa"), 0.0);
        assert!((shannon_entropy("abcd") - 2.0).abs() < 1e-9);
        assert!((shannon_entropy("0123456789abcdef") - 4.0).abs() < 1e-9);
    }

    #[test]
    fn random_base64_is_caught_at_the_documented_rate() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        for alphabet in [B64, B64URL] {
            for len in [24, 25, 28, 32, 44, 64] {
                let missed: Vec<String> = (0..20_000)
                    .map(|_| rng.token(alphabet, len))
                    .filter(|t| !looks_random(t))
                    .collect();
                // Documented: about 2 in a million at 24 characters.
                assert!(missed.len() <= 1, "{len}: {missed:?}");
            }
        }
    }

    #[test]
    fn random_hex_is_caught() {
        let mut rng = Rng(42);
        for len in [32, 40, 64] {
            for _ in 0..20_000 {
                let t = rng.token(b"0123456789abcdef", len);
                assert!(hex_is_secret(&t), "{t}");
            }
        }
        assert!(!hex_is_secret(&"0".repeat(40)));
        assert!(!hex_is_secret(&"ab".repeat(20)));
        assert!(!hex_is_secret("0123456789abcdef0123456789abcde"));
    }

    #[test]
    fn ordinary_tokens_are_left_alone() {
        for t in [
            "ChallengeResponseAuthentication",
            "KbdInteractiveAuthentication",
            "AuthorizedKeysCommandUser",
            "GSSAPICleanupCredentials",
            "GSSAPIStrictAcceptorCheck",
            "HostbasedAcceptedAlgorithms",
            "PubkeyAcceptedAlgorithms",
            "AuthorizedPrincipalsCommandUser",
            "org_freedesktop_NetworkManager",
            "DisableForwarding_ExposeAuthInfo",
            "/etc/ssh/ssh_host_ed25519_key",
            "/usr/lib/x86_64-linux-gnu/libssl",
            "/etc/letsencrypt/live/example",
            "/var/spool/postfix/private/auth",
            "smtpd_sasl_security_options",
            "smtp_tls_CAfile",
            "550e8400-e29b-41d4-a716-446655440000",
            "550E8400-E29B-41D4-A716-446655440000",
            "OID_PKCS12_PBE_SHA1_128RC2_CBC",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "aBaBaBaBaBaBaBaBaBaBaBaBaBaBaBaB",
            "supercalifragilisticexpialidocious",
            "aes256-sha2_256-modp2048",
            "aes256gcm16-prfsha384-ecp384",
            "AES256-SHA256-MODP2048-ECP384",
        ] {
            assert!(!looks_random(t), "{t}");
        }
    }

    #[test]
    fn secret_shapes_are_caught() {
        for t in [
            "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=",
            "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
            "k3j9x2m4p8q1w7e5r6t0y2z4",
            "dGhpcyBpcyBub3QgYSByZWFsIHNlY3JldA==",
        ] {
            assert!(looks_random(t), "{t}");
        }
    }
}
