//! [`Redactor`]: the line rules put together. Every rule reports byte
//! ranges of the *original* line; the ranges are merged and each merged
//! range becomes one `[redacted]`, so rules never see each other's output
//! and the order of rules does not matter.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

use crate::file::FileKind;
use crate::rules::{Extent, HEX_RUN, NOT_SECRET_KEYS, RULES, TOKEN_RUN};
use crate::token;

/// What replaces a secret value.
pub const REDACTED: &str = "[redacted]";

/// A pattern the caller passed that does not compile.
#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    #[error(
        "redaction pattern {pattern:?} is not a valid regex: {source} \
         (fix or remove it in the configuration's redact list)"
    )]
    Pattern {
        pattern: String,
        source: regex::Error,
    },
}

/// The built-in rules, compiled once per process.
///
/// No `RegexSet` in front of them: measured on the corpus (release build),
/// a set of all rules spends 36 µs a line with the default lazy-DFA cache
/// (its states do not fit and it falls back to the PikeVM) and 1.5 µs with
/// an 8 MiB cache per thread, while running each rule's own regex (each with
/// its literal prefilter, and `is_match` before `captures`) spends 2 to 3 µs
/// a line with no extra memory (the keyword-only redactor this replaced:
/// 0.3 µs).
struct Builtin {
    rules: Vec<(Regex, Extent)>,
    hex: Regex,
    token: Regex,
    not_secret_keys: Regex,
}

impl Builtin {
    fn compile() -> Result<Builtin, regex::Error> {
        Ok(Builtin {
            rules: RULES
                .iter()
                .map(|(p, extent)| Ok((Regex::new(p)?, *extent)))
                .collect::<Result<_, regex::Error>>()?,
            hex: Regex::new(HEX_RUN)?,
            token: Regex::new(TOKEN_RUN)?,
            not_secret_keys: Regex::new(NOT_SECRET_KEYS)?,
        })
    }
}

static BUILTIN: LazyLock<Builtin> = LazyLock::new(|| {
    // Constant patterns, not outside data; `builtin_rules_compile` proves it.
    Builtin::compile().expect("built-in redaction rules compile")
});

/// Values that name a setting's state, never a secret worth hiding:
/// `PasswordAuthentication no` stays readable.
const PLAIN_SWITCHES: &[&str] = &[
    "yes", "no", "true", "false", "on", "off", "enabled", "disabled",
];

/// Replaces secret values in lines. Cheap to share (`&Redactor`) between
/// threads: the built-in rules are compiled once per process, the extra
/// patterns once per `Redactor`.
#[derive(Debug, Clone)]
pub struct Redactor {
    /// Extra patterns from the configuration: the `value` group, or the
    /// whole match, is replaced in place.
    extra: Vec<Regex>,
}

impl Redactor {
    /// The built-in rules plus `extra_patterns` (regexes, from the
    /// configuration). Err names the pattern that does not compile.
    pub fn new(extra_patterns: &[String]) -> Result<Redactor, RedactError> {
        let extra = extra_patterns
            .iter()
            .map(|p| {
                Regex::new(p).map_err(|source| RedactError::Pattern {
                    pattern: p.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Redactor { extra })
    }

    /// The built-in rules alone.
    pub fn builtin() -> &'static Redactor {
        static PLAIN: Redactor = Redactor { extra: Vec::new() };
        &PLAIN
    }

    /// `line` with secret values replaced by `[redacted]`; Cow::Borrowed
    /// when nothing matched. `line` holds no line terminator.
    pub fn redact_line<'a>(&self, line: &'a str) -> Cow<'a, str> {
        self.redact_line_in(line, &[])
    }

    /// [`Redactor::redact_line`], plus the positional secrets of the given
    /// file layouts (the line comes from such a file; see [`FileKind`]).
    pub fn redact_line_in<'a>(&self, line: &'a str, kinds: &[FileKind]) -> Cow<'a, str> {
        self.redact(line, kinds, Reach::Line)
    }

    /// Like [`Redactor::redact_line`], but a keyword's value ends at the
    /// next blank (or its closing quote) instead of the end of the line: for
    /// a command line joined from arguments, where the words after a value
    /// are other arguments.
    pub(crate) fn redact_words<'a>(&self, line: &'a str) -> Cow<'a, str> {
        self.redact(line, &[], Reach::Word)
    }

    fn redact<'a>(&self, line: &'a str, kinds: &[FileKind], reach: Reach) -> Cow<'a, str> {
        if is_pem_marker(line) {
            return Cow::Borrowed(line);
        }
        let mut spans = Vec::new();
        kinds
            .iter()
            .filter_map(|k| k.secret(line))
            .for_each(|r| spans.push(r));
        builtin_spans(line, reach, &mut spans);
        for rule in &self.extra {
            for c in rule.captures_iter(line) {
                if let Some(m) = c.name("value").or_else(|| c.get(0)) {
                    spans.push(m.range());
                }
            }
        }
        replace(line, spans)
    }
}

/// Where the value of a [`Extent::ToEnd`] rule ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// At the end of the line.
    Line,
    /// At the next blank, or at the closing quote of a quoted value.
    Word,
}

impl Reach {
    fn end(self, line: &str, start: usize) -> usize {
        let rest = &line[start..];
        let len = match (self, rest.chars().next()) {
            (Reach::Line, _) => rest.len(),
            (Reach::Word, Some(q @ ('"' | '\''))) => {
                rest[1..].find(q).map_or(rest.len(), |e| e + 2)
            }
            (Reach::Word, _) => {
                let word = &rest[..rest.find(char::is_whitespace).unwrap_or(rest.len())];
                // A quote closing a group the value started outside of
                // (`'Authorization: Bearer x'`) stays, to keep the grouping.
                match word.chars().last() {
                    Some(q @ ('"' | '\'')) if word.matches(q).count() == 1 => word.len() - 1,
                    _ => word.len(),
                }
            }
        };
        start + len
    }
}

/// Pushes the ranges the built-in rules find in `line`.
fn builtin_spans(line: &str, reach: Reach, spans: &mut Vec<Range<usize>>) {
    let b = &*BUILTIN;
    for (rule, extent) in &b.rules {
        // `captures` allocates its slots up front; most lines match nothing.
        if !rule.is_match(line) {
            continue;
        }
        match extent {
            Extent::ToEnd => {
                if let Some(c) = rule.captures(line)
                    && let Some(v) = c.name("value")
                    && !is_empty_or_switch(v.as_str())
                    && !c
                        .name("key")
                        .is_some_and(|k| b.not_secret_keys.is_match(k.as_str()))
                {
                    spans.push(v.start()..reach.end(line, v.start()));
                }
            }
            Extent::InPlace => {
                for c in rule.captures_iter(line) {
                    if let Some(m) = c.name("value").or_else(|| c.get(0)) {
                        spans.push(m.range());
                    }
                }
            }
        }
    }
    spans.extend(
        b.hex
            .find_iter(line)
            .filter(|m| token::hex_is_secret(m.as_str()))
            .map(|m| m.range()),
    );
    spans.extend(
        b.token
            .find_iter(line)
            .filter(|m| token::looks_random(m.as_str()) && !is_public_key(line, m.start()))
            .map(|m| m.range()),
    );
}

/// `password =` (nothing after the separator), `secrets {` (a section) or
/// `PasswordAuthentication no`.
fn is_empty_or_switch(value: &str) -> bool {
    let v = value.trim().trim_end_matches([';', ',']);
    let v = v.trim_matches(['"', '\'']);
    v.chars().all(|c| "=:>{[(".contains(c))
        || PLAIN_SWITCHES.iter().any(|s| v.eq_ignore_ascii_case(s))
}

/// The base64 blob of an SSH public key (`ssh-ed25519 AAAA… comment`): a
/// public key is no secret, and the analyst wants to see which one changed.
fn is_public_key(line: &str, start: usize) -> bool {
    let algorithm = line[..start]
        .trim_end()
        .rsplit(char::is_whitespace)
        .next()
        .unwrap_or("");
    line[start..].starts_with("AAAA")
        && start > 0
        && line[..start].ends_with(char::is_whitespace)
        && (algorithm.starts_with("ssh-")
            || algorithm.starts_with("ecdsa-sha2-")
            || algorithm.starts_with("sk-ssh-")
            || algorithm.starts_with("sk-ecdsa-"))
}

/// `line` with the union of `spans` replaced, one [`REDACTED`] per merged
/// range (overlapping or touching ranges merge).
fn replace(line: &str, mut spans: Vec<Range<usize>>) -> Cow<'_, str> {
    spans.retain(|r| !r.is_empty());
    if spans.is_empty() {
        return Cow::Borrowed(line);
    }
    spans.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(line.len());
    let mut at = 0;
    let mut current: Option<Range<usize>> = None;
    for r in spans {
        match &mut current {
            Some(c) if r.start <= c.end => c.end = c.end.max(r.end),
            _ => {
                if let Some(c) = current.take() {
                    out.push_str(&line[at..c.start]);
                    out.push_str(REDACTED);
                    at = c.end;
                }
                current = Some(r);
            }
        }
    }
    if let Some(c) = current {
        out.push_str(&line[at..c.start]);
        out.push_str(REDACTED);
        at = c.end;
    }
    out.push_str(&line[at..]);
    Cow::Owned(out)
}

/// A line that is exactly one `-----BEGIN/END … PRIVATE KEY-----` marker
/// (kept visible). A marker with a key after it on the same line is not.
fn is_pem_marker(line: &str) -> bool {
    let t = line.trim();
    (t.starts_with("-----BEGIN ") || t.starts_with("-----END "))
        && t.ends_with("PRIVATE KEY-----")
        && t.matches("-----").count() == 2
}

/// For each line of `lines`, whether it lies strictly inside a PEM private-key
/// block. A block with no END runs to the end of the text (a truncated key is
/// still a key).
pub fn pem_private_key_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<bool> {
    let mut inside = false;
    lines
        .into_iter()
        .map(|l| {
            if is_pem_marker(l) {
                inside = l.trim().starts_with("-----BEGIN ");
                false
            } else {
                inside
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(line: &str) -> String {
        Redactor::new(&[]).unwrap().redact_line(line).into_owned()
    }

    #[test]
    fn builtin_rules_compile() {
        assert!(Builtin::compile().is_ok());
        assert_eq!(BUILTIN.rules.len(), RULES.len());
    }

    #[test]
    fn keeps_key_replaces_value() {
        assert_eq!(
            r("upstream http://bob:pa55@proxy:3128/ and redis://:s3cr3t@db/0"),
            "upstream http://bob:[redacted]@proxy:3128/ and redis://:[redacted]@db/0"
        );
        assert_eq!(r("password = hunter2"), "password = [redacted]");
        assert_eq!(r("  db_password: 'x y'"), "  db_password: [redacted]");
        assert_eq!(r("passwd=abc"), "passwd=[redacted]");
        assert_eq!(r("client_secret => abc"), "client_secret => [redacted]");
        assert_eq!(r("export API_TOKEN=abc"), "export API_TOKEN=[redacted]");
        assert_eq!(r("api_key: k"), "api_key: [redacted]");
        assert_eq!(r("apikey k"), "apikey [redacted]");
        assert_eq!(r("key = 0123"), "key = [redacted]");
        assert_eq!(r("ssh_key: AAAA"), "ssh_key: [redacted]");
        assert_eq!(r("\"password\": \"x\","), "\"password\": [redacted]");
        assert_eq!(r("<password>x</password>"), "<password>[redacted]");
        assert_eq!(r("enable secret 5 $1$abc"), "enable secret [redacted]");
        assert_eq!(r("wpa_psk=abcd"), "wpa_psk=[redacted]");
        assert_eq!(r(": PSK \"v3ry\""), ": PSK [redacted]");
        assert_eq!(r("pre-shared-key \"v\""), "pre-shared-key [redacted]");
        assert_eq!(
            r("snmp-server community public RO"),
            "snmp-server community [redacted]"
        );
        assert_eq!(r("rocommunity public default"), "rocommunity [redacted]");
        assert_eq!(
            r("createUser bob SHA \"authpass\" AES \"privpass\""),
            "createUser [redacted]"
        );
        assert_eq!(
            r("Authorization: Bearer abc.def"),
            "Authorization: Bearer [redacted]"
        );
    }

    #[test]
    fn leaves_ordinary_lines_alone() {
        for l in [
            "listen 443 ssl;",
            "upstream http://proxy:3128/path",
            // pf / nftables rules are what is watched most: "pass" is no secret.
            "pass in on em0 proto tcp to port 22",
            "keyboard = us",
            "password =",
            "-----BEGIN RSA PRIVATE KEY-----",
            "-----END PRIVATE KEY-----",
            "",
        ] {
            assert_eq!(r(l), l);
        }
    }

    #[test]
    fn extra_patterns_value_group_or_whole_match() {
        let red = Redactor::new(&[
            r"bind_pw\s+(?P<value>\S+)".to_string(),
            r"AKIA[0-9A-Z]{16}".to_string(),
        ])
        .unwrap();
        assert_eq!(
            red.redact_line("bind_pw s3cr3t # x"),
            "bind_pw [redacted] # x"
        );
        assert_eq!(
            red.redact_line("id AKIAABCDEFGHIJKLMNOP end"),
            "id [redacted] end"
        );
    }

    #[test]
    fn bad_extra_pattern_is_named() {
        let e = Redactor::new(&["ok".into(), "(unclosed".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("(unclosed"), "{e}");
    }

    #[test]
    fn pem_lines_inside_blocks_only() {
        let text = "a\n-----BEGIN PRIVATE KEY-----\nMIIB\nAAAA\n-----END PRIVATE KEY-----\nb\n-----BEGIN EC PRIVATE KEY-----\nCCCC";
        let v = pem_private_key_lines(text.lines());
        assert_eq!(v, [false, false, true, true, false, false, false, true]);
    }

    #[test]
    fn values_replaced_in_place() {
        for (line, want) in [
            (
                "root:$6$rounds=5000$saltsalt$0123456789abcdefABCDEF./:19000:0:99999:7:::",
                "root:[redacted]:19000:0:99999:7:::",
            ),
            (
                "alice:$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.tEKFQHRXDRL4:19500:0:99999:7:::",
                "alice:[redacted]:19500:0:99999:7:::",
            ),
            (
                "admin:$2y$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
                "admin:[redacted]",
            ),
            ("key 7 0822455D0A16", "key 7 [redacted]"),
            (
                " ip ospf message-digest-key 1 md5 0 OspfK3y",
                " ip ospf message-digest-key 1 md5 0 [redacted]",
            ),
            (
                "com2sec readonly default s3cr3tc0mm",
                "com2sec readonly default [redacted]",
            ),
            (
                "snmp-server host 192.0.2.5 version 2c TrapComm1",
                "snmp-server host 192.0.2.5 version 2c [redacted]",
            ),
            (
                "aws_access_key_id AKIAIOSFODNN7EXAMPLE # prod",
                "aws_access_key_id [redacted] # prod",
            ),
            (
                "curl https://h/x?sig=abc%2Fdef&se=2030 -o out",
                "curl https://h/x?sig=[redacted]&se=2030 -o out",
            ),
            (
                "GRANT ALL ON *.* TO 'u'@'%' IDENTIFIED BY 'S3cret!';",
                "GRANT ALL ON *.* TO 'u'@'%' IDENTIFIED BY [redacted];",
            ),
            (
                "wg0 peer yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk= allowed",
                "wg0 peer [redacted] allowed",
            ),
            (
                "commit 3f786850e387550fdab836ed7e6dc881de23001b pinned",
                "commit [redacted] pinned",
            ),
        ] {
            assert_eq!(r(line), want, "{line}");
        }
    }

    #[test]
    fn switches_and_public_keys_stay_readable() {
        for l in [
            "PasswordAuthentication no",
            "PermitEmptyPasswords no",
            "ssl_prefer_server_ciphers on;",
            "ChallengeResponseAuthentication no",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@host",
            "HostKey /etc/ssh/ssh_host_ed25519_key",
            "request-id 550e8400-e29b-41d4-a716-446655440000",
        ] {
            assert_eq!(r(l), l);
        }
    }

    #[test]
    fn inline_private_key_is_not_a_marker() {
        let l = "-----BEGIN PRIVATE KEY----- MIIEvQIBADANBg -----END PRIVATE KEY-----";
        assert!(!r(l).contains("MIIEvQ"), "{}", r(l));
        assert_eq!(pem_private_key_lines([l]), [false]);
    }

    #[test]
    fn file_kinds_add_positional_secrets() {
        let red = Redactor::builtin();
        let line = "bob pptpd hunter2 *";
        assert_eq!(red.redact_line(line), line);
        assert_eq!(
            red.redact_line_in(line, &[FileKind::PppSecrets]),
            "bob pptpd [redacted] *"
        );
    }

    #[test]
    fn nothing_matched_borrows() {
        assert!(matches!(
            Redactor::builtin().redact_line("listen 80;"),
            Cow::Borrowed(_)
        ));
    }
}
