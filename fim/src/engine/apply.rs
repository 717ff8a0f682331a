//! Settling one path: what is on disk now, compared with its baseline entry.
//!
//! Guarantees:
//! * the state reported is the state on disk, not a guess from event
//!   names; the baseline (and, unless read-only, the content store) follow
//!   it whether or not the change is reported;
//! * a rename inside the tree moves the source's entry (a `renamed` change);
//! * diffs are bounded ([`MAX_DIFF_TEXT`]) and computed between redacted
//!   texts; only redacted text goes to the content store; secret files
//!   ([`secret_file`]) get neither (unless the rule says
//!   `diff_secret_files`), and every changed file without a diff says why
//!   (`diff_skipped`);
//! * `changed_by` is asked of fanotify only for content changes and saves
//!   by rename;
//! * permission problems and special files are alerted once per path.

use std::io;
use std::path::{Path, PathBuf};

use crate::change::{Action, Change, Output, classify};
use crate::config::Severity;
use crate::redacted::RedactedText;
use crate::secret_file::{self, SecretFile};
use crate::state::{FileType, Observed};
use crate::who::UNKNOWN;

use super::Engine;

/// Bound of one diff's text.
const MAX_DIFF_TEXT: usize = 64 * 1024;

/// How to report one settled path.
pub(super) struct Settle {
    pub(super) while_stopped: bool,
    /// False while learning files of a rule the saved baseline did not have.
    pub(super) report: bool,
    pub(super) coalesced: u32,
    pub(super) renamed_from: Option<PathBuf>,
}

impl Engine {
    /// Compares what is at `path` now with the baseline, reports the
    /// difference, and updates the baseline and content store.
    pub(super) fn apply(&mut self, path: &Path, observed: Observed, ctx: Settle) {
        let (new, content) = match observed {
            Observed::Entry { entry, content } => (Some(entry), content),
            Observed::Gone | Observed::Dir => (None, None),
            Observed::Special(kind) => {
                self.alert_once(
                    "fim_special_file",
                    path,
                    Severity::Info,
                    format!(
                        "{} is a {kind}: skipped (only files and symlinks are watched)",
                        path.display()
                    ),
                );
                (None, None)
            }
            Observed::Error(e) => {
                if e.kind() == io::ErrorKind::PermissionDenied {
                    self.alert_once(
                        "fim_permission_denied",
                        path,
                        Severity::Warning,
                        format!("cannot stat {}: permission denied", path.display()),
                    );
                }
                return;
            }
        };
        if let Some(e) = &new
            && e.hash_skipped == "permission_denied"
        {
            self.alert_once(
                "fim_permission_denied",
                path,
                Severity::Warning,
                format!("cannot read {}: permission denied; only its metadata is compared (run the agent as root or grant it read access)", path.display()),
            );
        }
        let Some(rule) = self.rules.rule_for(path) else {
            return;
        };
        let (tag, severity, diff_on) = (rule.tag.clone(), rule.severity, rule.diff);
        // Secret files are compared by hash only unless the rule says
        // otherwise; binary files always are.
        let hidden = match secret_file::classify(path, content.as_deref()) {
            Some(SecretFile::Binary) => Some(SecretFile::Binary),
            Some(s) if !rule.diff_secret_files => Some(s),
            _ => None,
        };
        // A rename inside the tree: the source's entry moves here.
        let mut old_path = None;
        let mut old = self.baseline.entries.get(path);
        if let Some(from) = ctx.renamed_from
            && from != path
            && new.is_some()
            && self.baseline.entries.contains_key(&from)
            && std::fs::symlink_metadata(&from).is_err()
        {
            old = self.baseline.entries.remove(&from);
            self.pending.remove(&from);
            self.baseline_dirty = true;
            old_path = Some(from);
        }
        let action = if old_path.is_some() {
            Some(Action::Renamed)
        } else {
            classify(old.as_ref(), new.as_ref())
        };
        // Keep the new content, redacted, for the next diff.
        let new_text = content
            .filter(|_| diff_on && hidden.is_none())
            .and_then(|c| self.redactor.redact(path, &c));
        if let (Some(e), Some(t), Some(store), false) =
            (&new, &new_text, self.store.as_mut(), self.read_only)
        {
            store.put(&e.sha256, t);
        }
        match &new {
            Some(e) => {
                if !self.baseline.entries.holds(path, e) {
                    // observe() makes only entries that can be stored.
                    if self.baseline.entries.insert(path, e).is_err() {
                        self.baseline.entries.remove(path);
                    }
                    self.baseline_dirty = true;
                }
            }
            None => {
                if self.baseline.entries.remove(path).is_some() {
                    self.baseline_dirty = true;
                }
            }
        }
        let Some(action) = action else {
            return;
        };
        if !ctx.report {
            return;
        }
        let mut change = Change {
            path: path.to_path_buf(),
            action,
            old_path,
            old,
            new,
            diff: String::new(),
            diff_truncated: false,
            redacted_lines: 0,
            diff_skipped: "",
            changed_by: UNKNOWN.to_string(),
            tag,
            severity,
            while_agent_stopped: ctx.while_stopped,
            coalesced: ctx.coalesced,
        };
        change.diff_skipped = match (diff_on, hidden) {
            _ if change.action == Action::Attributes => "",
            (false, _) => "diff_off",
            (true, Some(h)) => h.diff_skipped(),
            (true, None) => self.add_diff(&mut change, new_text.as_ref()),
        };
        // fanotify sees writes only: ask for content changes (the last
        // writer of a deleted, moved or chmod-ed file did not make that
        // change) and for saves by rename (content written seconds ago, then
        // renamed into place: vim, sed -i), for the content as it is now.
        let written_lately = |e: &crate::state::Entry| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .is_ok_and(|now| i64::try_from(now.as_secs()).unwrap_or(i64::MAX) - e.mtime < 10)
        };
        if let Some(who) = &self.who
            && let Some(e) = change.new.as_ref()
            && match change.action {
                Action::Modified | Action::Created => true,
                Action::Renamed => written_lately(e),
                Action::Deleted | Action::Attributes => false,
            }
            && let Some(by) = who.who_at(e.dev, e.inode, e.mtime, e.mtime_nsec)
        {
            change.changed_by = by;
        }
        self.emit(Output::Change(Box::new(change)));
    }

    /// Adds the diff of the change's redacted texts; returns why there is
    /// none when a side is missing ("" otherwise).
    fn add_diff(&self, change: &mut Change, new_text: Option<&RedactedText>) -> &'static str {
        let empty = RedactedText::empty();
        let old_text = match change.old.as_ref() {
            None => Ok(empty.clone()),
            Some(o) if o.file_type == FileType::File => self
                .store
                .as_ref()
                .and_then(|s| s.get(&o.sha256))
                .ok_or("no_previous_content"),
            Some(_) => Err(""),
        };
        let new_text = match change.new.as_ref() {
            None => Ok(&empty),
            Some(n) if n.file_type == FileType::File => {
                new_text.ok_or(if n.size > self.cfg.max_diff_file_bytes.as_u64() {
                    "too_large"
                } else {
                    "unreadable"
                })
            }
            Some(_) => Err(""),
        };
        let (old_text, new_text) = match (old_text, new_text) {
            (Ok(o), Ok(n)) => (o, n),
            (Err(why), _) | (_, Err(why)) => return why,
        };
        let old_label = change
            .old_path
            .as_deref()
            .unwrap_or(&change.path)
            .display()
            .to_string();
        let new_label = change.path.display().to_string();
        let d = crate::diff::unified(&old_text, new_text, &old_label, &new_label, MAX_DIFF_TEXT);
        change.diff = d.text;
        change.diff_truncated = d.truncated;
        change.redacted_lines = d.redacted_lines;
        ""
    }
}
