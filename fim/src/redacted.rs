//! Text after redaction: the only form in which the monitor keeps or
//! compares a file's contents.
//!
//! [`TextRedactor::redact`] passes every line through the [`Redactor`] and
//! replaces every line inside a PEM private-key block whole. The content
//! store ([`crate::store::ContentStore`]) takes and returns nothing else,
//! and diffs ([`crate::diff::unified`]) are computed between two of them,
//! so a secret the redactor recognises never rests in the state directory
//! and never leaves the sensor in a diff.
//!
//! A changed secret must still show as a changed line. So each redacted
//! line carries a tag, `[redacted:1f2e3d4c]`: the first 32 bits of
//! HMAC-SHA256 of the original line under a key of this sensor's own
//! (`<state_dir>/fim/redact.key`, 32 random bytes, mode 0600, never sent).
//! Equal lines get equal tags, a changed value a different tag; without
//! the key, which never leaves the sensor, a tag tells nothing about the
//! value (no dictionary can be tried against it). Who can read the key can
//! read the watched files themselves.
//!
//! Guarantee: the text keeps the input's lines and line terminators (only
//! line contents change), so a diff of two redacted texts has the same
//! shape as the diff of the originals.

use std::io::{self, Read};
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::redact::{FileKind, REDACTED, Redactor, pem_private_key_lines};

/// Bytes looked at for a NUL (git's rule of thumb for "binary").
pub const TEXT_SAMPLE: usize = 8000;

/// Text = valid UTF-8 as a whole and no NUL byte in the first
/// [`TEXT_SAMPLE`] bytes. (Latin-1 files count as binary: no diff for them.)
pub fn is_text(bytes: &[u8]) -> bool {
    !bytes[..bytes.len().min(TEXT_SAMPLE)].contains(&0) && std::str::from_utf8(bytes).is_ok()
}

/// Whether `line` holds a redacted value: the redact crate's [`REDACTED`],
/// or the tagged form this module makes of it (`[redacted:tag]`).
pub fn has_redaction(line: &str) -> bool {
    line.contains(redacted_open())
}

/// [`REDACTED`] without its closing bracket: what both forms start with.
fn redacted_open() -> &'static str {
    REDACTED.strip_suffix(']').unwrap_or(REDACTED)
}

/// A file's text with its secrets replaced by `[redacted:tag]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactedText(String);

impl RedactedText {
    /// Text that was redacted when it was stored: only the content store
    /// reads it back (it takes nothing but [`RedactedText`]).
    pub(crate) fn from_store(text: String) -> RedactedText {
        RedactedText(text)
    }

    /// No text (the side of a created or deleted file).
    pub fn empty() -> RedactedText {
        RedactedText(String::new())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The line redactor plus this sensor's tag key.
#[derive(Debug, Clone)]
pub struct TextRedactor {
    lines: Redactor,
    key: [u8; 32],
}

/// File name of the tag key in the monitor's state directory.
const KEY_FILE: &str = "redact.key";

impl TextRedactor {
    pub fn new(lines: Redactor, key: [u8; 32]) -> TextRedactor {
        TextRedactor { lines, key }
    }

    /// The tag key kept in `dir` (created with fresh random bytes, mode
    /// 0600, when missing or damaged). `owlet fim scan` uses the same key
    /// as the agent, or its diffs would show every redacted line changed.
    pub fn load_key(dir: &Path) -> io::Result<[u8; 32]> {
        let path = dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(b) if b.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&b);
                return Ok(key);
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut key = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
        crate::baseline::write_private(&path, &[&key], true)?;
        Ok(key)
    }

    /// The redacted form of `bytes`, the contents of the file at `path`
    /// (whose name may say where its secrets stand: shadow, `.pgpass` ...,
    /// see [`FileKind`]); `None` when they are not text ([`is_text`]).
    pub fn redact(&self, path: &Path, bytes: &[u8]) -> Option<RedactedText> {
        if !is_text(bytes) {
            return None;
        }
        let text = std::str::from_utf8(bytes).ok()?;
        let kinds: Vec<FileKind> = FileKind::from_path(&path.to_string_lossy())
            .into_iter()
            .collect();
        let ending = |l: &str| l.len() - l.trim_end_matches(['\n', '\r']).len();
        let in_pem = pem_private_key_lines(
            text.split_inclusive('\n')
                .map(|l| &l[..l.len() - ending(l)]),
        );
        let mut out = String::with_capacity(text.len());
        for (line, secret) in text.split_inclusive('\n').zip(in_pem) {
            let (content, end) = line.split_at(line.len() - ending(line));
            let shown = if secret {
                std::borrow::Cow::Borrowed(REDACTED)
            } else {
                self.lines.redact_line_in(content, &kinds)
            };
            if shown == content {
                out.push_str(content);
            } else {
                let tagged = format!("{}:{}]", redacted_open(), self.tag(content));
                out.push_str(&shown.replace(REDACTED, &tagged));
            }
            out.push_str(end);
        }
        Some(RedactedText(out))
    }

    /// 32 bits of HMAC-SHA256(key, line), in hex.
    fn tag(&self, line: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            unreachable!("HMAC takes keys of any length")
        };
        mac.update(line.as_bytes());
        let out = mac.finalize().into_bytes();
        out[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr() -> TextRedactor {
        TextRedactor::new(Redactor::new(&[]).unwrap(), [7u8; 32])
    }

    fn red(text: &str) -> String {
        tr().redact(Path::new("/etc/app.conf"), text.as_bytes())
            .unwrap()
            .0
    }

    /// The text with every tag taken out.
    fn untagged(s: &str) -> String {
        regex::Regex::new(r"\[redacted:[0-9a-f]{8}\]")
            .unwrap()
            .replace_all(s, REDACTED)
            .into_owned()
    }

    #[test]
    fn lines_and_terminators_kept_secrets_gone() {
        let got = red("user = bob\r\npassword = S3cret!\nlast");
        assert_eq!(untagged(&got), "user = bob\r\npassword = [redacted]\nlast");
        assert!(!got.contains("S3cret"));
        let key = "a\n-----BEGIN PRIVATE KEY-----\nMIIBVQIB\nAAAA\n-----END PRIVATE KEY-----\n";
        let got = red(key);
        assert_eq!(
            untagged(&got),
            "a\n-----BEGIN PRIVATE KEY-----\n[redacted]\n[redacted]\n-----END PRIVATE KEY-----\n"
        );
        assert_eq!(red(""), "");
        assert!(tr().redact(Path::new("/etc/bin"), b"\0bin").is_none());
    }

    #[test]
    fn tags_tell_changed_values_apart_and_depend_on_the_key() {
        let a = red("password = one\n");
        let b = red("password = two\n");
        assert_ne!(a, b, "a changed secret is a changed line");
        assert_eq!(a, red("password = one\n"), "stable");
        let other = TextRedactor::new(Redactor::new(&[]).unwrap(), [8u8; 32]);
        let c = other
            .redact(Path::new("/etc/app.conf"), b"password = one\n")
            .unwrap();
        assert_ne!(a, c.0, "another sensor's key, another tag");
    }

    #[test]
    fn positional_secrets_by_the_files_name() {
        let tr = tr();
        let line = b"db.example:5432:app:app:Pl4nted-pw\n";
        let got = tr.redact(Path::new("/root/.pgpass"), line).unwrap();
        assert!(!got.as_str().contains("Pl4nted-pw"), "{got:?}");
        assert!(
            got.as_str()
                .starts_with("db.example:5432:app:app:[redacted:"),
            "{got:?}"
        );
    }

    #[test]
    fn key_is_created_private_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let k = TextRedactor::load_key(d.path()).unwrap();
        assert_eq!(TextRedactor::load_key(d.path()).unwrap(), k);
        std::fs::write(d.path().join(KEY_FILE), b"short").unwrap();
        assert_ne!(
            TextRedactor::load_key(d.path()).unwrap(),
            k,
            "a damaged key is replaced"
        );
        let mode = std::fs::metadata(d.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
