//! owlet-redact: secret-looking values replaced by `[redacted]` in text that
//! leaves the host — lines of watched configuration files (diffs sent by
//! owlet-fim) and process command lines (host health evidence).
//!
//! A changed password must still show as a changed line, but never with its
//! value: `password = hunter2` becomes `password = [redacted]`. What is kept
//! is what tells the analyst *what* changed: the key, the user name, the
//! other fields (`root:[redacted]:19000:0:99999:7:::`).
//!
//! # Rules ([`Redactor::redact_line`])
//! - keywords (case-insensitive): a word containing `password`, `passwd`,
//!   `passphrase`, `secret`, `token`, `api_key` / `apikey`, `private_key`,
//!   `psk`, `pre-shared`, `community`, `credential`, `bearer`, `createUser`,
//!   `requirepass`, `masterauth`, `bindpw`, `rootpw`, `authtok`, a word
//!   ending in `_pass` / `-pass` / `_pwd`, `pass =`, a word ending
//!   in `key` (or `key0`…) with `=` or `:`, `Authorization`, Docker's
//!   `"auth":`, strongSwan's `: EAP` / `: XAUTH` / key-file passphrases —
//!   followed by `=`, `:`, `=>`, `>` or blanks: everything from the value
//!   to the end of the line goes (`enable secret 5 $1$x` → `enable secret
//!   [redacted]`, `"password": "x",` → `"password": [redacted]`). A value
//!   that is only a switch (`yes`, `no`, `true`, `false`, `on`, `off`,
//!   `enabled`, `disabled`) stays: `PasswordAuthentication no` must show;
//!   so do a section header (`secrets {`) and nginx's upstream directives
//!   (`proxy_pass`, `fastcgi_pass`, …);
//! - values known by their shape, replaced in place wherever they stand:
//!   crypt hashes (`$1$`, `$2a$`/`$2b$`/`$2y$`, `$5$`, `$6$`, `$7$`, `$y$`,
//!   `$gy$`, `$argon2id$`, `$sha1$`, `$apr1$`, Cisco `$8$` / `$9$`, …) and
//!   `{SSHA}`-style hashes; the password of a URL (`http://bob:[redacted]@…`);
//!   signed-URL query parameters (`sig=`, `X-Amz-Signature=`, …); the word
//!   after `bind_pw` / `_pw` (Postfix LDAP tables); Redis ACL `>password`;
//!   Cisco / FRR `key 7 …`, `key-string`, `authentication-key`,
//!   `message-digest-key … md5`, RADIUS / TACACS+ / ISAKMP keys; SNMP
//!   `com2sec`, trap sinks, `snmp-server host … COMMUNITY`, v3 `auth sha` /
//!   `priv aes` keys; SQL `IDENTIFIED BY`;
//!   AWS (`AKIA…`, `ASIA…`), GitHub, GitLab, Slack, Stripe, Google, npm,
//!   PyPI, SendGrid, OpenAI / Anthropic, Vault, DigitalOcean and Telegram
//!   tokens; JSON Web Tokens; a private key written on one line;
//! - bare random-looking tokens: hex runs of 32 or more, base64 / base64url
//!   runs of 24 or more that pass an entropy floor and do not read as words
//!   (thresholds, measurements and gaps in [`token`]); a 40-hex git commit
//!   id or a sha256 in a configuration file is redacted too (over-redaction,
//!   accepted); an SSH public key after its algorithm name is not;
//! - positional secrets of files whose layout is known by name ([`FileKind`]:
//!   shadow, `.pgpass`, PPP secrets, Postfix `sasl_passwd`, htpasswd), when
//!   the caller says which file the line comes from
//!   ([`Redactor::redact_line_in`]);
//! - every line strictly inside a PEM private-key block (`-----BEGIN …
//!   PRIVATE KEY-----` … `-----END … PRIVATE KEY-----`); the caller tells
//!   which lines those are ([`pem_private_key_lines`]) because a diff hunk
//!   may show only the middle of a block;
//! - extra patterns from the configuration, as regexes: when a pattern has a
//!   capture group named `value`, that group is replaced; otherwise the whole
//!   match is.
//!
//! Process command lines ([`redact_args`], [`redact_command_line`]) get the
//! line rules per argument plus password flags (`--password x`, `mysql -pX`,
//! `curl -u user:pass`, …): see [`cmdline`].
//!
//! # Guarantees
//! - All rules look at the original line and report byte ranges; the union
//!   of the ranges is replaced, one `[redacted]` per merged range. A line
//!   that matches a rule never keeps the matched value, whatever else
//!   matched.
//! - Over-redaction rather than under-redaction: a comment saying "set the
//!   password here" loses its tail, a sha256 pin is hidden, a path after
//!   `ssl_password_file` is hidden.
//! - `Cow::Borrowed` when nothing matched; the built-in regexes are compiled
//!   once per process (2 to 3 µs a line in a release build; `line.rs`
//!   says why there is no `RegexSet` in front of them).
//! - Never panics on any input (ranges come from the regex engine, on char
//!   boundaries).
//!
//! # Not covered
//! - A secret on a line of its own with no key and no recognisable shape (a
//!   YAML block scalar, a value continued on the next line, line 2 of an
//!   OpenVPN `auth-user-pass` file), outside PEM blocks and [`FileKind`]s.
//! - Short secrets with no key before them (`snmpd.conf`'s community is
//!   covered by its keyword, a bare word is not), secrets made of words,
//!   lower-case-only random strings with separators or few digits (see
//!   [`token`]).
//! - A positional field of a file whose name does not tell its layout.
#![forbid(unsafe_code)]

pub mod cmdline;
pub mod file;
mod line;
mod rules;
pub mod token;

pub use cmdline::{redact_args, redact_command_line};
pub use file::FileKind;
pub use line::{REDACTED, RedactError, Redactor, pem_private_key_lines};
