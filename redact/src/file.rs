//! Files whose secrets have no key and no recognisable shape: the password
//! field of `/etc/shadow` is known by its position, not by a word before it.
//! The file's name tells the layout ([`FileKind::from_path`]); then the
//! secret field is replaced in place, the other fields kept:
//!
//! | kind | files | secret |
//! | --- | --- | --- |
//! | [`FileKind::Shadow`] | `shadow`, `gshadow` (and `-` backups) | field 2 (`:`), after `!` lock marks; `*`, `!`, `x`, empty kept |
//! | [`FileKind::Pgpass`] | `.pgpass`, `pgpass.conf` | field 5 (`:`, `\:` escapes) to the end |
//! | [`FileKind::PppSecrets`] | `chap-secrets`, `pap-secrets`, `*-secrets` | field 3 (blanks, `"…"` quoting) |
//! | [`FileKind::SaslPasswd`] | Postfix `sasl_passwd*` | field 2 after its first `:` (all of it without one) |
//! | [`FileKind::Htpasswd`] | `.htpasswd`, `htpasswd`, `*.htpasswd`, `.htdigest` | everything after the first `:` |
//!
//! Comment lines (`#` first) and blank lines are left to the general rules.

use std::ops::Range;

/// A file layout with positional secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Shadow,
    Pgpass,
    PppSecrets,
    SaslPasswd,
    Htpasswd,
}

impl FileKind {
    /// The layout of the file at `path`, by its file name; None for files
    /// with no positional secrets.
    pub fn from_path(path: &str) -> Option<FileKind> {
        let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
        if name.starts_with("shadow") || name.starts_with("gshadow") {
            Some(FileKind::Shadow)
        } else if name == ".pgpass" || name == "pgpass.conf" || name.ends_with(".pgpass") {
            Some(FileKind::Pgpass)
        } else if name.ends_with("-secrets") {
            Some(FileKind::PppSecrets)
        } else if name.starts_with("sasl_passwd") {
            Some(FileKind::SaslPasswd)
        } else if name.contains("htpasswd") || name.contains("htdigest") {
            Some(FileKind::Htpasswd)
        } else {
            None
        }
    }

    /// The byte range of the secret in `line`, if it has one.
    pub(crate) fn secret(self, line: &str) -> Option<Range<usize>> {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            return None;
        }
        let range = match self {
            FileKind::Shadow => shadow(line),
            FileKind::Pgpass => pgpass(line),
            FileKind::PppSecrets => ppp(line),
            FileKind::SaslPasswd => sasl(line),
            FileKind::Htpasswd => line.find(':').map(|c| c + 1..line.len()),
        }?;
        (!range.is_empty()).then_some(range)
    }
}

/// `name:password:…`: the password field, after any `!` lock marks.
fn shadow(line: &str) -> Option<Range<usize>> {
    let start = line.find(':')? + 1;
    let end = line[start..].find(':').map_or(line.len(), |e| start + e);
    let field = &line[start..end];
    let locks = field.len() - field.trim_start_matches('!').len();
    if matches!(field.trim_start_matches('!'), "" | "*" | "x") {
        return None;
    }
    Some(start + locks..end)
}

/// `host:port:database:user:password`, `\:` and `\\` escaped.
fn pgpass(line: &str) -> Option<Range<usize>> {
    let mut colons = 0;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ':' => {
                colons += 1;
                if colons == 4 {
                    return Some(i + 1..line.len());
                }
            }
            _ => {}
        }
    }
    None
}

/// `client server secret [addresses]`, fields may be `"quoted"`.
fn ppp(line: &str) -> Option<Range<usize>> {
    fields(line).nth(2).filter(|f| &line[f.clone()] != "\"\"")
}

/// `[relay]:port user:password`.
fn sasl(line: &str) -> Option<Range<usize>> {
    let f = fields(line).nth(1)?;
    match line[f.clone()].find(':') {
        Some(c) => Some(f.start + c + 1..f.end),
        None => Some(f),
    }
}

/// Byte ranges of blank-separated fields; a field starting with `"` runs to
/// the next `"` (or the end of the line).
fn fields(line: &str) -> impl Iterator<Item = Range<usize>> + '_ {
    let b = line.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            return None;
        }
        let start = i;
        if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += 1;
            }
            i = (i + 1).min(b.len());
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
        }
        Some(start..i)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(kind: FileKind, line: &str) -> Option<&str> {
        kind.secret(line).map(|r| &line[r])
    }

    #[test]
    fn kinds_by_file_name() {
        for (path, kind) in [
            ("/etc/shadow", Some(FileKind::Shadow)),
            ("/etc/gshadow-", Some(FileKind::Shadow)),
            ("/root/.pgpass", Some(FileKind::Pgpass)),
            ("/etc/ppp/chap-secrets", Some(FileKind::PppSecrets)),
            ("/etc/ppp/pap-secrets", Some(FileKind::PppSecrets)),
            ("/etc/postfix/sasl_passwd", Some(FileKind::SaslPasswd)),
            ("/etc/nginx/.htpasswd", Some(FileKind::Htpasswd)),
            ("/etc/apache2/site.htpasswd", Some(FileKind::Htpasswd)),
            ("/etc/passwd", None),
            ("/etc/ipsec.secrets", None),
            ("shadow", Some(FileKind::Shadow)),
        ] {
            assert_eq!(FileKind::from_path(path), kind, "{path}");
        }
    }

    #[test]
    fn positional_secrets() {
        use FileKind::*;
        assert_eq!(
            cut(Shadow, "root:$6$s$h:19000:0:99999:7:::"),
            Some("$6$s$h")
        );
        assert_eq!(cut(Shadow, "bob:!plain:19000::::::"), Some("plain"));
        assert_eq!(cut(Shadow, "daemon:*:19000:0:99999:7:::"), None);
        assert_eq!(cut(Shadow, "nobody:!:19000::::::"), None);
        assert_eq!(cut(Shadow, "sudo:x::alice"), None);
        assert_eq!(cut(Shadow, "# comment: x"), None);
        assert_eq!(
            cut(Pgpass, r"db\:1:5432:*:app:pa:ss"),
            Some("pa:ss"),
            "escaped colon in the host"
        );
        assert_eq!(cut(Pgpass, "h:5432:db:u:"), None);
        assert_eq!(
            cut(PppSecrets, "\"alice\" * \"s3 cret\" *"),
            Some("\"s3 cret\"")
        );
        assert_eq!(cut(PppSecrets, "bob pptpd hunter2"), Some("hunter2"));
        assert_eq!(cut(PppSecrets, "bob pptpd"), None);
        assert_eq!(
            cut(SaslPasswd, "[smtp.example.com]:587 user@example.com:pw"),
            Some("pw")
        );
        assert_eq!(cut(SaslPasswd, "relay token-only"), Some("token-only"));
        assert_eq!(cut(Htpasswd, "alice:$apr1$x$y"), Some("$apr1$x$y"));
    }
}
