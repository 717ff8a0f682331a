//! The built-in rules, as data: each a regex and how much of its match is
//! the secret. Compiled once per process (see [`crate::Redactor`]).
//!
//! Two kinds:
//! * [`Extent::ToEnd`] — a keyword then a separator: the secret is
//!   everything from the `value` group to the end of the line (a value may
//!   hold blanks, and a keyword line is cheap to lose). Only the first match
//!   of the line counts (the rest of the line goes anyway).
//! * [`Extent::InPlace`] — a value-shaped secret (a crypt hash, a cloud key,
//!   a Cisco type 7 string): only the `value` group (or the whole match when
//!   there is none) is replaced, at every match, and the rest of the line is
//!   kept (`root:[redacted]:19000:0:99999:7:::`).
//!
//! Every rule must compile (a test checks) and must not need look-around
//! (the `regex` crate has none, which is what keeps matching linear).

/// How much of a match is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extent {
    /// From the `value` group to the end of the line.
    ToEnd,
    /// The `value` group, or the whole match.
    InPlace,
}

/// A word that names a secret, then a separator (`=`, `:`, `=>`, `>` or
/// blanks), then the value.
const KEYWORD: &str = r#"(?i)(?P<key>[A-Za-z0-9_.\-]*(?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|private[_-]?key|psk|pre-?shared|community|credential|bearer|createuser|requirepass|masterauth|bindpw|rootpw|authtok)[A-Za-z0-9_.\-]*["']?(?:\s*(?:=>|[=:>])\s*|\s+))(?P<value>\S.*)$"#;

/// Built-in rules, in no particular order (all matches are merged).
pub(crate) const RULES: &[(&str, Extent)] = &[
    (KEYWORD, Extent::ToEnd),
    // A word ending in `key` (or `key0`..`key3`, WEP), then an assignment.
    (
        r#"(?i)(?P<key>[A-Za-z0-9_.\-]*key[0-9]*["']?\s*[=:]\s*)(?P<value>\S.*)$"#,
        Extent::ToEnd,
    ),
    // `auth_pass 1234` (keepalived), `smtp_pass`, `db_pwd`: a word ending
    // in `_pass` / `-pass` / `_pwd`; `pass = x`. Never `pass in on em0`.
    (
        r#"(?i)(?P<key>\b[A-Za-z0-9.]*[_\-](?:pass|pwd)["']?(?:\s*(?:=>|[=:>])\s*|\s+))(?P<value>\S.*)$"#,
        Extent::ToEnd,
    ),
    // Postfix LDAP tables' `bind_pw`: the next word or quoted string only
    // (`_pw` is short enough to stand in other words' places).
    (
        r#"(?i)\b[A-Za-z0-9.]*[_\-]pw["']?(?:\s*[=:]\s*|\s+)(?P<value>"[^"]*"|'[^']*'|\S+)"#,
        Extent::InPlace,
    ),
    (
        r#"(?i)(?P<key>\bpass["']?\s*(?:=>|[=:])\s*)(?P<value>\S.*)$"#,
        Extent::ToEnd,
    ),
    // HTTP credentials, whatever the scheme; the scheme word is kept.
    (
        r#"(?i)(?P<key>\b(?:proxy-)?authorization["']?(?:\s*[:=]\s*|\s+)["']?(?:(?:bearer|basic|digest|token|negotiate|ntlm|aws4-hmac-sha256|sso-key|apikey)\s+)?)(?P<value>\S.*)$"#,
        Extent::ToEnd,
    ),
    // Docker's config.json `"auth": "base64(user:password)"`.
    (
        r#"(?i)(?P<key>"auth"\s*:\s*)(?P<value>\S.*)$"#,
        Extent::ToEnd,
    ),
    // strongSwan ipsec.secrets: `user : EAP "x"`, `: XAUTH x`, and the
    // passphrase after a private key file (`: RSA key.pem "x"`).
    (
        r#"(?i)(?P<key>:\s*(?:EAP|XAUTH|NTLM|PIN)\s+)(?P<value>\S.*)$"#,
        Extent::ToEnd,
    ),
    (
        r#"(?i)(?P<key>:\s*(?:RSA|ECDSA|BLISS|P12|PKCS12|PKCS8|PPK)\s+(?:"[^"]*"|\S+)\s+)(?P<value>\S.*)$"#,
        Extent::ToEnd,
    ),
    // The password in a URL: `scheme://user:password@host`.
    (
        r"(?i)[a-z][a-z0-9+.\-]*://[^\s/:@]*:(?P<value>[^\s/@]+)@",
        Extent::InPlace,
    ),
    // Signed-URL and token query parameters.
    (
        r#"(?i)[?&;](?:sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential|access_token|id_token|refresh_token|auth|code|key)=(?P<value>[^&\s"'#]+)"#,
        Extent::InPlace,
    ),
    // crypt(3) and friends: MD5, bcrypt, SHA-256/512, yescrypt, gost-yescrypt,
    // scrypt, argon2, NT hash, Cisco type 8 / 9, Solaris, PBKDF2.
    (
        r"(?P<value>\$(?:1|2|2a|2b|2x|2y|3|5|6|7|8|9|y|gy|sha1|md5|apr1|sm3|argon2i|argon2d|argon2id|pbkdf2|pbkdf2-sha1|pbkdf2-sha256|pbkdf2-sha512|scrypt|bcrypt|bcrypt-sha256)\$[./A-Za-z0-9+=,$\-]{8,})",
        Extent::InPlace,
    ),
    // LDAP / Dovecot / htpasswd `{SCHEME}value`.
    (
        r#"(?i)\{(?:S?SHA(?:1|224|256|384|512)?|S?MD5|CRYPT|PBKDF2(?:-SHA[0-9]+)?|ARGON2I?D?|BLF-CRYPT|SHA[0-9]+-CRYPT|MD5-CRYPT|PLAIN(?:-MD5)?|CLEAR(?:TEXT)?|CRAM-MD5|DIGEST-MD5|NTLM|LANMAN|SCRAM-SHA-[0-9]+|X-PBKDF2)\}(?P<value>[^\s:"',;]+)"#,
        Extent::InPlace,
    ),
    // Redis ACL: `user bob on >password ~keys:* +@read`.
    (r"(?i)^\s*user\s+\S+\s.*?\s>(?P<value>\S+)", Extent::InPlace),
    // SQL: `IDENTIFIED BY 'x'`.
    (
        r#"(?i)\bidentified\s+(?:with\s+\S+\s+)?by\s+(?:password\s+)?(?P<value>'[^']*'|"[^"]*"|\S+)"#,
        Extent::InPlace,
    ),
    // Cisco IOS / NX-OS / FRR keys: `key 7 0822455D0A16`, `key-string 7 x`,
    // `ip ospf authentication-key 7 x`, `ntp authentication-key 1 md5 x 7`,
    // `ip ospf message-digest-key 1 md5 x`, `radius-server host h key x`,
    // a lone `key x` line (not `key 1` of a key chain).
    (r"(?i)(?:^|\s)key\s+[0-9]\s+(?P<value>\S+)", Extent::InPlace),
    (
        r"(?i)\bkey-string\s+(?:[0-9]\s+)?(?P<value>\S+)",
        Extent::InPlace,
    ),
    (
        r"(?i)\bauthentication-key\s+(?:[0-9]+\s+)?(?:(?:md5|sha[0-9\-]*|hmac-sha-[0-9]+)\s+)?(?:[0-9]\s+)?(?P<value>\S+)",
        Extent::InPlace,
    ),
    (
        r"(?i)\bmessage-digest-key\s+[0-9]+\s+md5\s+(?:[0-9]\s+)?(?P<value>\S+)",
        Extent::InPlace,
    ),
    (
        r"(?i)\b(?:radius-server|tacacs-server|server-private|radius|tacacs|isakmp)\b.*?\skey\s+(?:[0-9]\s+)?(?P<value>\S+)",
        Extent::InPlace,
    ),
    (
        r"(?i)^\s*key\s+(?P<value>\S*[^\s0-9]\S*)\s*$",
        Extent::InPlace,
    ),
    (
        r"(?i)\bauthentication\s+text\s+(?P<value>\S+)",
        Extent::InPlace,
    ),
    // SNMP: net-snmp `com2sec name source COMMUNITY`, trap sinks, Cisco
    // `snmp-server host h [version 2c] COMMUNITY`, v3 auth / priv keys.
    (
        r"(?i)\bcom2sec6?\s+(?:-cn\s+\S+\s+)?\S+\s+\S+\s+(?P<value>\S+)",
        Extent::InPlace,
    ),
    (
        r"(?i)\b(?:trap2?sink|informsink)\s+\S+\s+(?P<value>\S+)",
        Extent::InPlace,
    ),
    (
        r"(?i)\bsnmp-server\s+host\s+\S+(?:\s+(?:informs|traps))?(?:\s+version\s+(?:1|2c|3\s+\S+))?\s+(?P<value>\S+)",
        Extent::InPlace,
    ),
    (
        r"(?i)\bauth\s+(?:md5|sha[0-9\-]*)\s+(?P<value>\S+)",
        Extent::InPlace,
    ),
    (
        r"(?i)\bpriv\s+(?:des56|3des|des|aes)(?:\s+(?:128|192|256))?\s+(?P<value>\S+)",
        Extent::InPlace,
    ),
    // Cloud and SaaS keys, anywhere in a line: AWS key ids, GitHub, GitLab,
    // Slack, Stripe, Google, npm, PyPI, SendGrid, OpenAI / Anthropic, Vault,
    // DigitalOcean, Telegram bots.
    (
        concat!(
            r"\b(?:(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[0-9A-Z]{16}\b",
            r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_\-]{20,}",
            r"|xox[abposre]-[A-Za-z0-9\-]{10,}|xapp-[0-9]-[A-Za-z0-9\-]{10,}",
            r"|[rsp]k_(?:live|test)_[A-Za-z0-9]{10,}|whsec_[A-Za-z0-9]{20,}",
            r"|AIza[0-9A-Za-z_\-]{35}|npm_[A-Za-z0-9]{36}|pypi-[A-Za-z0-9_\-]{50,}",
            r"|SG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}|sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}",
            r"|hv[sb]\.[A-Za-z0-9_\-]{20,}|dop_v1_[a-f0-9]{64}|[0-9]{8,10}:AA[A-Za-z0-9_\-]{33})",
        ),
        Extent::InPlace,
    ),
    (
        r"(?i)hooks\.slack\.com/services/(?P<value>[A-Za-z0-9/]+)",
        Extent::InPlace,
    ),
    // JSON Web Tokens: header, payload and signature.
    (
        r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*",
        Extent::InPlace,
    ),
    // A whole private key on one line (an environment variable with `\n`).
    (
        r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----(?P<value>.+?)(?:-----END[A-Z0-9 ]*PRIVATE KEY-----|$)",
        Extent::InPlace,
    ),
];

/// Keys a keyword rule matches that name no secret: nginx's upstream
/// directives (`proxy_pass http://backend;`).
pub(crate) const NOT_SECRET_KEYS: &str =
    r"(?i)^(?:proxy|fastcgi|uwsgi|scgi|grpc|memcached)_pass\s*$";

/// Candidate runs for the bare-token rules ([`crate::token`]).
pub(crate) const HEX_RUN: &str = r"[0-9A-Fa-f]{32,}";
pub(crate) const TOKEN_RUN: &str = r"[A-Za-z0-9+/_\-]{24,}={0,2}";
