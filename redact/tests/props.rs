//! Property tests: generated secrets — crypt hashes, hex of 32 and more,
//! base64 / base64url of 24 and more, PSKs, passwords, cloud tokens —
//! planted into line templates of the kinds the corpus holds, and into
//! command lines. Whatever the secret and wherever it stands, no piece of
//! it (8 characters, or all of a shorter one) survives.

mod common;

use common::leaked;
use owlet_redact::{FileKind, Redactor, redact_args, redact_command_line, token};
use proptest::prelude::*;
use proptest::sample::select;

/// A crypt(3)-style hash of one of the schemes the redactor knows.
fn crypt_hash() -> impl Strategy<Value = String> {
    let salt = "[./A-Za-z0-9]{8,16}";
    prop_oneof![
        (
            select(vec!["1", "5", "6", "sha1", "apr1", "md5", "8", "9"]),
            salt,
            "[./A-Za-z0-9]{22,86}"
        )
            .prop_map(|(id, s, h)| format!("${id}${s}${h}")),
        (select(vec!["2a", "2b", "2y"]), 4u8..16, "[./A-Za-z0-9]{53}")
            .prop_map(|(id, cost, h)| format!("${id}${cost:02}${h}")),
        (
            select(vec!["y", "gy", "7"]),
            "[./A-Za-z0-9]{4,12}",
            salt,
            "[./A-Za-z0-9]{43}"
        )
            .prop_map(|(id, params, s, h)| format!("${id}${params}${s}${h}")),
        ("[A-Za-z0-9+/]{22}", "[A-Za-z0-9+/]{43}")
            .prop_map(|(s, h)| format!("$argon2id$v=19$m=65536,t=2,p=1${s}${h}")),
        ("rounds=[0-9]{4,6}", salt, "[./A-Za-z0-9]{43}")
            .prop_map(|(r, s, h)| format!("$5${r}${s}${h}")),
    ]
}

fn hex() -> impl Strategy<Value = String> {
    prop_oneof!["[0-9a-f]{32,96}", "[0-9A-F]{32,64}"]
}

/// Random bytes (18 to 65 of them) in base64 or base64url, padded or not:
/// 24 characters and more. Uniform over the alphabet, as a key is; the
/// filter only drops what the documented entropy floor says is no secret
/// (practically never, for random bytes).
fn base64_token() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(any::<u8>(), 18..66),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(bytes, url, pad)| base64(&bytes, url, pad))
        .prop_filter("high entropy", |t| {
            token::shannon_entropy(t.trim_end_matches('=')) >= token::MIN_TOKEN_ENTROPY
        })
}

fn base64(bytes: &[u8], url: bool, pad: bool) -> String {
    let alphabet: &[u8; 64] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(alphabet[(n >> (18 - 6 * i) & 63) as usize]));
        }
        if pad {
            out.push_str(&"=="[..3 - chunk.len()]);
        }
    }
    out
}

/// A password without blanks or quotes.
fn password() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&*+,.:;<=>?@^_~-]{8,32}"
}

/// A password that fits in a URL's user info.
fn url_password() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!$&*+,.;=_~-]{8,32}"
}

/// A PSK that goes between double quotes (blanks allowed).
fn quoted_psk() -> impl Strategy<Value = String> {
    "[ !#-~]{8,63}"
}

/// A user name.
const USER: &str = "[a-z][a-z0-9_-]{0,12}";

fn cloud_token() -> impl Strategy<Value = String> {
    prop_oneof![
        "(AKIA|ASIA)[0-9A-Z]{16}",
        "gh[pousr]_[A-Za-z0-9]{36}",
        "github_pat_[A-Za-z0-9_]{40,82}",
        "xox[abpr]-[0-9]{10,12}-[0-9]{10,12}-[A-Za-z0-9]{24}",
        "sk_live_[A-Za-z0-9]{24,99}",
        "AIza[0-9A-Za-z_-]{35}",
        "glpat-[A-Za-z0-9_-]{20}",
        "eyJ[A-Za-z0-9_-]{10,40}\\.eyJ[A-Za-z0-9_-]{10,80}\\.[A-Za-z0-9_-]{20,60}",
    ]
}

/// Where a line goes around its template.
fn surroundings() -> impl Strategy<Value = (&'static str, &'static str)> {
    (
        select(vec!["", " ", "  ", "\t", "    "]),
        select(vec!["", " # managed by ansible", ";"]),
    )
}

// Line templates: `{s}` is where the secret goes, `{u}` a user name.

const CRYPT_LINES: &[&str] = &[
    "{u}:{s}:19000:0:99999:7:::",
    "{u}:!{s}:19000::::::",
    "{u}:{s}",
    "enable secret 5 {s}",
    "username {u} privilege 15 secret 9 {s}",
    "passwd: \"{s}\"",
    "{u}:{SHA512-CRYPT}{s}:5000:5000::/var/mail/{u}::",
    "{u} {s} trailing words",
];
const HEX_LINES: &[&str] = &[
    "r0kh=02:00:00:00:03:00 ap1.example.org {s}",
    "{s}",
    "user default on #{s} ~* &* +@all",
    "SENTRY_DSN=https://{s}@o1.ingest.sentry.io/42",
    "ntp trusted blob {s} end",
    "\"{s}\",",
    "secret = 0x{s}",
    "pin={s}",
];
const BASE64_LINES: &[&str] = &[
    "PrivateKey = {s}",
    "{s}",
    "%any : PSK 0s{s}",
    "tls.key: {s}",
    "proxy_set_header X-Upstream {s};",
    "url https://example.org/api/{s}/items",
    "\"{s}\",",
    "peer {s} allowed-ips 10.0.0.2/32",
];
/// PSKs between quotes (blanks allowed).
const QUOTED_PSK_LINES: &[&str] = &[
    ": PSK \"{s}\"",
    "moon.example.org sun.example.org : PSK \"{s}\"",
    "psk=\"{s}\"",
    "wpa_passphrase={s}",
    "secret = \"{s}\"",
    "pre-shared-key \"{s}\"",
];
/// Passwords and PSKs without blanks.
const PASSWORD_LINES: &[&str] = &[
    "%any : PSK {s}",
    "psk={s}",
    "auth_pass {s}",
    "password = {s}",
    "neighbor 192.0.2.2 password {s}",
    "username {u} password 7 {s}",
    "snmp-server community {s} RO",
    "rocommunity {s} default -V systemonly",
    "com2sec readonly default {s}",
    "createUser {u} SHA \"{s}\" AES \"{s}\"",
    "requirepass {s}",
    "Authorization: Bearer {s}",
    "ip ospf message-digest-key 1 md5 {s}",
    "key-string 7 {s}",
    "radius-server host 192.0.2.6 key {s}",
    "crypto isakmp key {s} address 198.51.100.9",
    "user {u} on >{s} ~cache:* +@read",
    "{u} : XAUTH {s}",
    "snmp-server user {u} G v3 auth sha {s} priv aes 128 {s}",
];
/// Passwords in a URL's user info or a quoted SQL string.
const URL_PASSWORD_LINES: &[&str] = &[
    "DATABASE_URL=postgres://{u}:{s}@db:5432/app",
    "GRANT ALL ON db.* TO '{u}'@'%' IDENTIFIED BY '{s}';",
];
const TOKEN_LINES: &[&str] = &[
    "{s}",
    "# rotated {s} on tuesday",
    "value: {s}",
    "url = https://h.example/x?u={s}&v=1",
    "Cookie: session={s}; Path=/",
];
/// Positional secrets: plain words that only their place in a file of a
/// known layout gives away.
const POSITIONAL_LINES: &[(&str, FileKind)] = &[
    ("{u}:{s}:19000:0:99999:7:::", FileKind::Shadow),
    ("{u}:!{s}::{u}", FileKind::Shadow),
    ("db.example.org:5432:app:{u}:{s}", FileKind::Pgpass),
    ("{u}\tpptpd\t{s}\t*", FileKind::PppSecrets),
    (
        "[smtp.example.net]:587 {u}@example.org:{s}",
        FileKind::SaslPasswd,
    ),
];

/// Plants `secret` in `template` (indented, with a suffix) and checks that
/// no piece of it survives redaction.
fn check_planted(
    template: &str,
    secret: &str,
    user: &str,
    (indent, suffix): (&str, &str),
    kinds: &[FileKind],
) -> Result<(), TestCaseError> {
    // The secret goes in last: it may hold `{u}` itself.
    let line = format!(
        "{indent}{}{suffix}",
        template.replace("{u}", user).replace("{s}", secret)
    );
    let out = Redactor::builtin().redact_line_in(&line, kinds);
    prop_assert!(
        leaked(&out, secret).is_none(),
        "{:?} of {secret:?} survives: {line:?} -> {out:?}",
        leaked(&out, secret)
    );
    Ok(())
}

#[test]
fn base64_matches_known_vectors() {
    assert_eq!(base64(b"foobar", false, true), "Zm9vYmFy");
    assert_eq!(base64(b"fo", false, true), "Zm8=");
    assert_eq!(base64(b"f", false, false), "Zg");
    assert_eq!(base64(&[0xfb, 0xff], true, false), "-_8");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_base64_generator_encodes(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
        let t = base64(&bytes, false, true);
        prop_assert_eq!(t.len(), bytes.len().div_ceil(3) * 4);
        prop_assert!(t.trim_end_matches('=').bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'));
    }

    /// Crypt hashes need no keyword and no file layout.
    #[test]
    fn crypt_hashes_never_survive(
        hash in crypt_hash(),
        template in select(CRYPT_LINES),
        user in USER,
        around in surroundings(),
    ) {
        check_planted(template, &hash, &user, around, &[])?;
    }

    #[test]
    fn long_hex_never_survives(
        hex in hex(),
        template in select(HEX_LINES),
        around in surroundings(),
    ) {
        check_planted(template, &hex, "", around, &[])?;
    }

    #[test]
    fn random_base64_never_survives(
        token in base64_token(),
        template in select(BASE64_LINES),
        around in surroundings(),
    ) {
        check_planted(template, &token, "", around, &[])?;
    }

    #[test]
    fn quoted_psks_never_survive(
        psk in quoted_psk(),
        template in select(QUOTED_PSK_LINES),
        around in surroundings(),
    ) {
        check_planted(template, &psk, "", around, &[])?;
    }

    #[test]
    fn passwords_never_survive(
        pw in password(),
        template in select(PASSWORD_LINES),
        user in USER,
        around in surroundings(),
    ) {
        check_planted(template, &pw, &user, around, &[])?;
    }

    #[test]
    fn url_passwords_never_survive(
        pw in url_password(),
        template in select(URL_PASSWORD_LINES),
        user in USER,
        around in surroundings(),
    ) {
        check_planted(template, &pw, &user, around, &[])?;
    }

    #[test]
    fn cloud_tokens_never_survive(
        token in cloud_token(),
        template in select(TOKEN_LINES),
        around in surroundings(),
    ) {
        check_planted(template, &token, "", around, &[])?;
    }

    #[test]
    fn positional_secrets_never_survive(
        pw in "[A-Za-z0-9!#$%&*+,.;<=>?@^_~-]{8,32}",
        quoted in quoted_psk(),
        (template, kind) in select(POSITIONAL_LINES),
        user in USER,
    ) {
        check_planted(template, &pw, &user, ("", ""), &[kind])?;
        // A quoted PPP secret may hold blanks.
        check_planted("\"{u}\" * \"{s}\" 10.0.0.2", &quoted, &user, ("", ""), &[FileKind::PppSecrets])?;
    }

    /// Whatever the text, redaction returns (no panic on unbalanced quotes
    /// or multi-byte characters next to separators), and `redact_args`
    /// keeps one entry per argument.
    #[test]
    fn any_text_is_handled(
        line in prop_oneof![any::<String>(), "[ -~äé⟦\t\"'=:$@/]{0,80}"],
        kind in select(vec![FileKind::Shadow, FileKind::Pgpass, FileKind::PppSecrets, FileKind::SaslPasswd, FileKind::Htpasswd]),
    ) {
        let _ = Redactor::builtin().redact_line_in(&line, &[kind]);
        let _ = redact_command_line(&line);
        let args: Vec<&str> = line.split(['\'', ' ']).collect();
        prop_assert_eq!(redact_args(&args).len(), args.len());
    }

    /// Command lines: password flags of known programs, generic secret
    /// flags, key=value arguments; with other arguments around them, as an
    /// argument vector, as one joined string, and cut at any length after
    /// redaction (what host health does).
    #[test]
    fn command_line_secrets_never_survive(
        pw in "[A-Za-z0-9!#$%&*+,.:;<=>?@^_~]{8,32}",
        form in 0usize..16,
        before in proptest::collection::vec("[a-z0-9][a-z0-9/.]{0,11}", 0..3),
        after in proptest::collection::vec("[a-z0-9][a-z0-9/.]{0,11}", 0..3),
        cut in 0usize..200,
    ) {
        let secret_args: Vec<String> = match form {
            0 => vec!["mysql".into(), format!("-p{pw}")],
            1 => vec!["mysqldump".into(), "-p".into(), pw.clone()],
            2 => vec!["sshpass".into(), format!("-p{pw}"), "ssh".into()],
            3 => vec!["redis-cli".into(), "-a".into(), pw.clone()],
            4 => vec!["smbclient".into(), "-U".into(), format!("bob%{pw}")],
            5 => vec!["curl".into(), "-u".into(), format!("bob:{pw}")],
            6 => vec!["app".into(), format!("--password={pw}")],
            7 => vec!["app".into(), "--password".into(), pw.clone()],
            8 => vec!["app".into(), format!("--token={pw}")],
            9 => vec!["app".into(), "--api-key".into(), pw.clone()],
            10 => vec!["app".into(), "--secret".into(), pw.clone()],
            11 => vec!["app".into(), format!("password={pw}")],
            12 => vec!["app".into(), format!("token={pw}")],
            13 => vec!["ldapsearch".into(), "-w".into(), pw.clone()],
            14 => vec!["keytool".into(), "-storepass".into(), pw.clone()],
            _ => vec!["sh".into(), "-c".into(), format!("mysql -p{pw} db")],
        };
        let mut args: Vec<String> = secret_args[..1].to_vec();
        args.extend(before);
        args.extend(secret_args[1..].iter().cloned());
        args.extend(after);

        let joined = redact_args(&args).join(" ");
        prop_assert!(leaked(&joined, &pw).is_none(), "{args:?} -> {joined:?}");
        let line = args.join(" ");
        let as_string = redact_command_line(&line);
        prop_assert!(leaked(&as_string, &pw).is_none(), "{args:?} -> {as_string:?}");
        let truncated: String = joined.chars().take(cut).collect();
        prop_assert!(leaked(&truncated, &pw).is_none(), "{truncated:?}");
    }
}
