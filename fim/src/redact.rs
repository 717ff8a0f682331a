//! Redaction of secret-looking values in diff lines.
//!
//! A changed password must still show as a changed line, but never with its
//! value: `password = hunter2` becomes `password = [redacted]`. The key name
//! stays so the analyst sees *what* changed.
//!
//! Default rules (case-insensitive):
//! - a word containing `password`, `passwd`, `passphrase`, `secret`, `token`,
//!   `api_key` / `api-key` / `apikey`, `private_key`, `psk`, `pre-shared` /
//!   `preshared`, `community` (SNMP v1/v2c), `createUser` (SNMPv3 users with
//!   their pass phrases), `credential` or `bearer`, followed by `=`, `:`,
//!   `=>`, `>` or blanks:
//!   everything after the separator up to the end of the line is replaced
//!   (`enable secret 5 $1$x` → `enable secret [redacted]`,
//!   `rocommunity public` → `rocommunity [redacted]`, `: PSK "x"` →
//!   `: PSK [redacted]`, `"password": "x",` → `"password": [redacted]`);
//! - a word ending in `key` followed by `=` or `:` (`key = x`, `ssh_key: x`);
//! - the password in a URL: `http://bob:[redacted]@proxy:3128/` (in place);
//! - every line strictly inside a PEM private-key block (`-----BEGIN … PRIVATE
//!   KEY-----` … `-----END … PRIVATE KEY-----`); the caller tells which lines
//!   those are ([`pem_private_key_lines`]) because a diff hunk may show only
//!   the middle of a block.
//!
//! Extra patterns come from the configuration as regexes: when a pattern has
//! a capture group named `value`, that group is replaced; otherwise the whole
//! match is.
//!
//! Guarantees: a line that matches a rule never keeps the text after the
//! rule's separator (the value) in the output; rules over-redact rather than
//! under-redact (a comment saying "set the password here" loses its tail).
//! Not covered: a secret on a line of its own with no key before it (YAML
//! block scalars, a value continued on the next line), outside PEM blocks.

use std::borrow::Cow;

use regex::Regex;

/// What replaces a secret value.
pub const REDACTED: &str = "[redacted]";

/// Secret keyword inside a word, then a separator, then a value.
const KEYWORD_RULE: &str = r#"(?i)(?P<key>[A-Za-z0-9_.\-]*(?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|private[_-]?key|psk|pre-?shared|community|credential|bearer|createuser)[A-Za-z0-9_.\-]*["']?(?:\s*(?:=>|[=:>])\s*|\s+))(?P<value>\S.*)$"#;
/// A word ending in `key`, then an assignment, then a value.
const KEY_ASSIGN_RULE: &str = r#"(?i)(?P<key>[A-Za-z0-9_.\-]*key["']?\s*[=:]\s*)(?P<value>\S.*)$"#;

/// The password of credentials in a URL (`scheme://user:password@host`):
/// replaced in place, the rest of the line kept.
const URL_PASSWORD_RULE: &str = r"(?i)[a-z][a-z0-9+.\-]*://[^\s/:@]*:(?P<value>[^\s/@]+)@";

/// Replaces secret values in lines. Cheap to share (`&Redactor`) between
/// threads; compiled once.
#[derive(Debug, Clone)]
pub struct Redactor {
    /// Default rules: the `value` group is replaced, the `key` group kept.
    defaults: Vec<Regex>,
    /// In-place rules: [`URL_PASSWORD_RULE`], then the extra rules from the
    /// configuration.
    extra: Vec<Regex>,
}

impl Redactor {
    /// The default rules plus `extra_patterns` (regexes, from the
    /// configuration). Err names the pattern that does not compile.
    pub fn new(extra_patterns: &[String]) -> Result<Redactor, String> {
        let defaults = [KEYWORD_RULE, KEY_ASSIGN_RULE]
            .iter()
            .map(|p| Regex::new(p).map_err(|e| format!("built-in redaction rule {p:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let url = Regex::new(URL_PASSWORD_RULE)
            .map_err(|e| format!("built-in redaction rule {URL_PASSWORD_RULE:?}: {e}"))?;
        let extra = std::iter::once(Ok(url))
            .chain(extra_patterns.iter().map(|p| {
                Regex::new(p).map_err(|e| {
                    format!(
                        "redaction pattern {p:?} is not a valid regex: {e} \
                         (fix or remove it in the [fim] configuration)"
                    )
                })
            }))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Redactor { defaults, extra })
    }

    /// `line` with secret values replaced by `[redacted]`; Cow::Borrowed
    /// when nothing matched. `line` holds no line terminator.
    pub fn redact_line<'a>(&self, line: &'a str) -> Cow<'a, str> {
        if is_pem_marker(line) {
            return Cow::Borrowed(line);
        }
        let mut out = Cow::Borrowed(line);
        for rule in &self.defaults {
            if let Some(c) = rule.captures(&out)
                && let (Some(key), Some(value)) = (c.name("key"), c.name("value"))
                // `password =` with no value: nothing to hide.
                && !value.as_str().trim().chars().all(|ch| "=:>".contains(ch))
            {
                let kept = out[..key.end()].to_string();
                out = Cow::Owned(kept + REDACTED);
            }
        }
        for rule in &self.extra {
            if !rule.is_match(&out) {
                continue;
            }
            let replaced = rule
                .replace_all(&out, |c: &regex::Captures<'_>| {
                    match (c.get(0), c.name("value")) {
                        (Some(all), Some(v)) => {
                            let s = all.as_str();
                            let (vs, ve) = (v.start() - all.start(), v.end() - all.start());
                            format!("{}{REDACTED}{}", &s[..vs], &s[ve..])
                        }
                        _ => REDACTED.to_string(),
                    }
                })
                .into_owned();
            out = Cow::Owned(replaced);
        }
        out
    }
}

/// A `-----BEGIN/END … PRIVATE KEY-----` marker line (kept visible).
fn is_pem_marker(line: &str) -> bool {
    let t = line.trim();
    (t.starts_with("-----BEGIN ") || t.starts_with("-----END ")) && t.ends_with("PRIVATE KEY-----")
}

/// For each line of `lines`, whether it lies strictly inside a PEM private-key
/// block. A block with no END runs to the end of the text (a truncated key is
/// still a key).
pub fn pem_private_key_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<bool> {
    let mut inside = false;
    lines
        .into_iter()
        .map(|l| {
            let t = l.trim();
            if is_pem_marker(l) {
                inside = t.starts_with("-----BEGIN ");
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
        let e = Redactor::new(&["ok".into(), "(unclosed".into()]).unwrap_err();
        assert!(e.contains("(unclosed"), "{e}");
    }

    #[test]
    fn pem_lines_inside_blocks_only() {
        let text = "a\n-----BEGIN PRIVATE KEY-----\nMIIB\nAAAA\n-----END PRIVATE KEY-----\nb\n-----BEGIN EC PRIVATE KEY-----\nCCCC";
        let v = pem_private_key_lines(text.lines());
        assert_eq!(v, [false, false, true, true, false, false, false, true]);
    }
}
