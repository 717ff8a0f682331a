//! Unified diffs of changed text files, bounded, between redacted texts.
//!
//! Both sides are [`RedactedText`]: the diff never sees a secret the
//! redactor recognises, so it cannot show one (the previous content comes
//! from the content store, which keeps only redacted text). The diff is
//! computed with `similar` (Myers, with a deadline so a pathological pair of
//! files cannot hold a thread for long), in unified format with 3 lines of
//! context.
//!
//! Guarantees: `text` is at most `max_bytes` long and ends at a line
//! boundary (`truncated` says when lines were left out); binary inputs (see
//! [`crate::redacted::is_text`]) never become a [`RedactedText`], so never a
//! diff.

use std::time::Duration;

use similar::TextDiff;

use crate::redacted::{RedactedText, has_redaction};

/// Lines of context around each change.
pub const CONTEXT: usize = 3;
/// Longest time spent finding a minimal diff; past it `similar` falls back
/// to a coarser (still correct) diff.
const DIFF_DEADLINE: Duration = Duration::from_millis(500);

/// A unified diff ready to send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diff {
    /// `--- old_label` / `+++ new_label` headers and the hunks; empty when
    /// the texts are equal.
    pub text: String,
    /// Lines were left out to stay within `max_bytes`.
    pub truncated: bool,
    /// Output lines showing a `[redacted]` value.
    pub redacted_lines: u32,
}

/// The diff from `old` to `new`; identical texts give an empty diff.
pub fn unified(
    old: &RedactedText,
    new: &RedactedText,
    old_label: &str,
    new_label: &str,
    max_bytes: usize,
) -> Diff {
    let diff = TextDiff::configure()
        .timeout(DIFF_DEADLINE)
        .diff_lines(old.as_str(), new.as_str());
    let mut out = Bounded::new(max_bytes);
    let mut redacted_lines = 0u32;
    let mut first = true;
    for hunk in diff.unified_diff().context_radius(CONTEXT).iter_hunks() {
        if first {
            first = false;
            // A path may hold a line break; the header must stay one line.
            let (a, b) = (
                old_label.replace(['\n', '\r'], "?"),
                new_label.replace(['\n', '\r'], "?"),
            );
            if !out.push(&format!("--- {a}\n+++ {b}\n")) {
                break;
            }
        }
        if !out.push(&format!("{}\n", hunk.header())) {
            break;
        }
        for change in hunk.iter_changes() {
            let content = change.value().trim_end_matches(['\n', '\r']);
            let mut line = format!("{}{content}\n", change.tag());
            if change.missing_newline() {
                line.push_str("\\ No newline at end of file\n");
            }
            if !out.push(&line) {
                break;
            }
            if has_redaction(content) {
                redacted_lines = redacted_lines.saturating_add(1);
            }
        }
        if out.truncated {
            break;
        }
    }
    Diff {
        text: out.text,
        truncated: out.truncated,
        redacted_lines,
    }
}

/// Output that takes whole lines while they fit.
struct Bounded {
    text: String,
    max: usize,
    truncated: bool,
}

impl Bounded {
    fn new(max: usize) -> Bounded {
        Bounded {
            text: String::new(),
            max,
            truncated: false,
        }
    }

    /// Appends `s` (whole lines) when it fits; false (and truncated) when not.
    fn push(&mut self, s: &str) -> bool {
        if self.truncated || self.text.len() + s.len() > self.max {
            self.truncated = true;
            return false;
        }
        self.text.push_str(s);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::Redactor;
    use crate::redacted::{TEXT_SAMPLE, TextRedactor, is_text};
    use proptest::prelude::*;

    /// The diff of two raw texts, each redacted first (None: not text).
    fn u(old: &[u8], new: &[u8], a: &str, b: &str, max: usize) -> Option<Diff> {
        let tr = TextRedactor::new(Redactor::new(&[]).unwrap(), [3; 32]);
        let path = std::path::Path::new("/etc/app.conf");
        Some(unified(
            &tr.redact(path, old)?,
            &tr.redact(path, new)?,
            a,
            b,
            max,
        ))
    }

    #[test]
    fn text_detection() {
        assert!(is_text(b"a = 1\n"));
        assert!(is_text("grüße\n".as_bytes()));
        assert!(is_text(b""));
        assert!(!is_text(b"a\0b"));
        assert!(!is_text(b"\xff\xfe"));
        let mut late_nul = vec![b'a'; TEXT_SAMPLE];
        late_nul.push(0);
        assert!(
            is_text(&late_nul),
            "NUL past the sample is text (only the sample is checked)"
        );
    }

    #[test]
    fn binary_side_gives_none() {
        assert!(u(b"a\n", b"\0", "a", "b", 1000).is_none());
        assert!(u(b"\xff", b"a\n", "a", "b", 1000).is_none());
    }

    #[test]
    fn unified_format_with_context_three() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        let new = "1\n2\n3\n4\nFIVE\n6\n7\n8\n9\n";
        let d = u(old.as_bytes(), new.as_bytes(), "a/f", "b/f", 10_000).unwrap();
        assert_eq!(
            d.text,
            "--- a/f\n+++ b/f\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+FIVE\n 6\n 7\n 8\n"
        );
        assert!(!d.truncated);
        assert_eq!(d.redacted_lines, 0);
    }

    #[test]
    fn identical_is_empty() {
        let d = u(b"x\n", b"x\n", "a", "b", 100).unwrap();
        assert_eq!(d, Diff::default());
    }

    #[test]
    fn header_lines_and_missing_newline_marker() {
        // A line break in a path cannot split the --- / +++ header.
        let d = u(b"a\n", b"a\nb", "x\ny", "x\r\ny", 1000).unwrap();
        let want = "--- x?y\n+++ x??y\n@@ -1 +1,2 @@\n a\n+b\n\\ No newline at end of file\n";
        assert_eq!(d.text, want);
    }

    #[test]
    fn changed_password_shows_without_value() {
        let d = u(
            b"user = bob\npassword = old-S3cret\n",
            b"user = bob\npassword = new-S3cret\n",
            "a",
            "b",
            10_000,
        )
        .unwrap();
        assert!(d.text.contains("-password = [redacted:"), "{}", d.text);
        assert!(d.text.contains("+password = [redacted:"), "{}", d.text);
        assert!(!d.text.contains("S3cret"));
        assert_eq!(d.redacted_lines, 2);
    }

    #[test]
    fn truncates_at_line_boundary() {
        let old: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let new: String = (0..100).map(|i| format!("LINE {i}\n")).collect();
        let d = u(old.as_bytes(), new.as_bytes(), "a", "b", 300).unwrap();
        assert!(d.truncated);
        assert!(d.text.len() <= 300);
        assert!(d.text.ends_with('\n'));
        assert!(d.text.starts_with("--- a\n+++ b\n@@"));
        let tiny = u(old.as_bytes(), new.as_bytes(), "a", "b", 3).unwrap();
        assert!(tiny.truncated);
        assert_eq!(tiny.text, "");
    }

    #[test]
    fn pem_middle_of_block_is_redacted() {
        let body = |tag: &str| -> String {
            (0..20)
                .map(|i| format!("{tag}{i:02}{}\n", "Q".repeat(60)))
                .collect()
        };
        let wrap = |b: String| {
            format!(
                "x\n-----BEGIN OPENSSH PRIVATE KEY-----\n{b}-----END OPENSSH PRIVATE KEY-----\ny\n"
            )
        };
        let old = wrap(body("Aa"));
        let mut nb = body("Aa");
        nb = nb.replace("Aa10", "Bb10");
        let new = wrap(nb);
        let d = u(old.as_bytes(), new.as_bytes(), "a", "b", 100_000).unwrap();
        // The hunk shows lines 8..14 of the body only, no BEGIN / END.
        assert!(!d.text.contains("BEGIN"), "{}", d.text);
        assert!(!d.text.contains("QQQQ"), "{}", d.text);
        let changed =
            regex::Regex::new(r"\n-\[redacted:[0-9a-f]{8}\]\n\+\[redacted:[0-9a-f]{8}\]\n")
                .unwrap();
        assert!(changed.is_match(&d.text), "{}", d.text);
        assert_eq!(d.redacted_lines, 8);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Without secrets the output is exactly `similar`'s own unified
        /// diff (context 3, same headers): redaction changes nothing else.
        #[test]
        fn plain_texts_match_similars_unified_output(
            old in proptest::collection::vec("[abc]{0,2}", 0..40),
            new in proptest::collection::vec("[abc]{0,2}", 0..40),
            old_nl in any::<bool>(),
            new_nl in any::<bool>(),
        ) {
            let join = |v: &[String], nl: bool| {
                let mut t = v.join("\n");
                if nl && !v.is_empty() { t.push('\n'); }
                t
            };
            let (old, new) = (join(&old, old_nl), join(&new, new_nl));
            let d = u(old.as_bytes(), new.as_bytes(), "a/x", "b/x", 1 << 20).unwrap();
            let diff = TextDiff::configure().diff_lines(&old, &new);
            let want = diff.unified_diff().context_radius(CONTEXT).header("a/x", "b/x").to_string();
            prop_assert_eq!(d.text, want);
            prop_assert_eq!(d.redacted_lines, 0);
            prop_assert!(!d.truncated);
        }

        /// A secret assigned to a secret-looking key never shows in a diff,
        /// whatever surrounds it and whatever changed.
        #[test]
        fn secret_values_never_leak(
            filler in proptest::collection::vec("[a-z =#:]{0,30}", 0..12),
            key in prop::sample::select(vec![
                "password", "DB_PASSWORD", "passwd", "client_secret", "api_key", "apikey",
                "auth_token", "key", "wpa_psk", "rocommunity", "snmp-server community",
                "pre-shared-key", "\"password\"",
            ]),
            sep in prop::sample::select(vec![" = ", "=", ": ", " ", " => "]),
            old_secret in "[A-Z0-9][A-Z0-9!$%^&*()+/]{7,23}",
            new_secret in "[A-Z0-9][A-Z0-9!$%^&*()+/]{7,23}",
            at in 0usize..12,
            edit_filler in any::<bool>(),
        ) {
            // "key" only counts with an assignment, as documented.
            prop_assume!(key != "key" || sep.contains(['=', ':']));
            let mut old_lines = filler.clone();
            let at = at.min(old_lines.len());
            old_lines.insert(at, format!("{key}{sep}{old_secret}"));
            let mut new_lines = filler;
            if edit_filler && !new_lines.is_empty() {
                new_lines[0].push_str(" changed");
            }
            new_lines.insert(at, format!("{key}{sep}{new_secret}"));
            let old = old_lines.join("\n") + "\n";
            let new = new_lines.join("\n") + "\n";
            let d = u(old.as_bytes(), new.as_bytes(), "a", "b", 1 << 20).unwrap();
            prop_assert!(!d.text.contains(&old_secret), "{}", d.text);
            prop_assert!(!d.text.contains(&new_secret), "{}", d.text);
            if old_secret != new_secret {
                prop_assert!(d.redacted_lines >= 2, "{}", d.text);
            }
        }

        /// No line of a PEM private key body shows in a diff, whichever part
        /// of the key changed and however small the hunk.
        #[test]
        fn pem_body_never_leaks(
            body in proptest::collection::vec("[A-Za-z0-9+/]{64}", 3..40),
            changed in 0usize..40,
            replacement in "[A-Za-z0-9+/]{64}",
            before in "[a-z ]{0,20}",
        ) {
            let changed = changed % body.len();
            let wrap = |b: &[String]| {
                format!("{before}\n-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n", b.join("\n"))
            };
            let mut nb = body.clone();
            nb[changed] = replacement.clone();
            let d = u(wrap(&body).as_bytes(), wrap(&nb).as_bytes(), "a", "b", 1 << 20).unwrap();
            for l in body.iter().chain([&replacement]) {
                prop_assert!(!d.text.contains(l.as_str()), "{}", d.text);
            }
        }
    }
}
