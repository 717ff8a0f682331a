//! What the monitor reports: file changes (before / after states, diff,
//! who) and operational alerts, and their wire form (`FileChange`, `Alert`
//! with source "fim").
//!
//! Guarantee: [`classify`] reports a change only when content, type,
//! symlink target, mode or owner differ; a file replaced by identical
//! content with identical attributes (an editor's no-op save) is no change.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use owlet_proto::v1 as pb;
use serde::Serialize;

use crate::config::Severity;
use crate::state::Entry;

/// What happened to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Created,
    Modified,
    Deleted,
    Renamed,
    Attributes,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Modified => "modified",
            Action::Deleted => "deleted",
            Action::Renamed => "renamed",
            Action::Attributes => "attributes",
        }
    }
}

/// One reported change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub path: PathBuf,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_path: Option<PathBuf>,
    pub old: Option<Entry>,
    pub new: Option<Entry>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub diff: String,
    pub diff_truncated: bool,
    pub redacted_lines: u32,
    /// Why a changed file has no diff ("" when it has one, or none is due):
    /// see the wire field `FileChange.diff_skipped`.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub diff_skipped: &'static str,
    pub changed_by: String,
    pub tag: String,
    pub severity: Severity,
    pub while_agent_stopped: bool,
    /// Notifications folded into this change (1 for a single change).
    pub coalesced: u32,
}

/// How `old` became `new`, or `None` when nothing worth reporting changed.
pub fn classify(old: Option<&Entry>, new: Option<&Entry>) -> Option<Action> {
    match (old, new) {
        (None, None) => None,
        (None, Some(_)) => Some(Action::Created),
        (Some(_), None) => Some(Action::Deleted),
        (Some(o), Some(n)) => {
            let content = o.file_type != n.file_type
                || o.symlink_target != n.symlink_target
                || if o.sha256.is_empty() || n.sha256.is_empty() {
                    // Not hashed (too large / unreadable): metadata decides.
                    !o.same_metadata(n)
                } else {
                    o.sha256 != n.sha256
                };
            if content {
                Some(Action::Modified)
            } else if !o.same_attributes(n) {
                Some(Action::Attributes)
            } else {
                None
            }
        }
    }
}

impl Change {
    /// The `FileChange` event payload.
    pub fn to_proto(&self) -> pb::FileChange {
        let kind = match self.action {
            Action::Created => pb::FileChangeKind::Created,
            Action::Modified => pb::FileChangeKind::Modified,
            Action::Deleted => pb::FileChangeKind::Deleted,
            Action::Renamed => pb::FileChangeKind::Renamed,
            Action::Attributes => pb::FileChangeKind::Attributes,
        };
        let old = self.old.as_ref();
        let new = self.new.as_ref();
        // Facts "after the change", or before it for a deletion.
        let now = new.or(old);
        let hash_skipped = new
            .map(|e| e.hash_skipped.clone())
            .filter(|s| !s.is_empty())
            .or_else(|| old.map(|e| e.hash_skipped.clone()))
            .unwrap_or_default();
        pb::FileChange {
            path: self.path.to_string_lossy().into_owned(),
            change: kind.into(),
            old_path: self
                .old_path
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            old_sha256: old.map(|e| e.sha256.clone()).unwrap_or_default(),
            new_sha256: new.map(|e| e.sha256.clone()).unwrap_or_default(),
            old_size: old.map_or(0, |e| e.size),
            new_size: new.map_or(0, |e| e.size),
            old_mode: old.map_or(0, |e| e.mode),
            new_mode: new.map_or(0, |e| e.mode),
            uid: now.map_or(0, |e| e.uid),
            gid: now.map_or(0, |e| e.gid),
            old_uid: old.map_or(0, |e| e.uid),
            old_gid: old.map_or(0, |e| e.gid),
            owner: String::new(),
            mtime: now.map(|e| {
                owlet_proto::timestamp(
                    UNIX_EPOCH
                        + Duration::new(
                            u64::try_from(e.mtime).unwrap_or(0),
                            u32::try_from(e.mtime_nsec).unwrap_or(0),
                        ),
                )
            }),
            diff: self.diff.clone(),
            diff_truncated: self.diff_truncated,
            changed_by: self.changed_by.clone(),
            tag: self.tag.clone(),
            severity: pb::Severity::from(self.severity).into(),
            inode: now.map_or(0, |e| e.inode),
            while_agent_stopped: self.while_agent_stopped,
            coalesced: self.coalesced,
            redacted_lines: self.redacted_lines,
            diff_skipped: self.diff_skipped.to_string(),
            hash_skipped,
            file_type: now
                .map(|e| e.file_type.name().to_string())
                .unwrap_or_default(),
            symlink_target: new.map(|e| e.symlink_target.clone()).unwrap_or_default(),
            old_symlink_target: old.map(|e| e.symlink_target.clone()).unwrap_or_default(),
        }
    }
}

/// An operational problem or milestone of the monitor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FimAlert {
    /// "fim_watch_limit", "fim_queue_overflow", "fim_permission_denied",
    /// "fim_special_file", "fim_baseline_corrupt", "fim_baseline_ready",
    /// "fim_attribution_unavailable", "fim_content_store_unavailable",
    /// "fim_content_store_wiped", "fim_error".
    pub name: &'static str,
    pub subject: String,
    pub severity: Severity,
    pub message: String,
    pub labels: Vec<(String, String)>,
    #[serde(skip)]
    pub time: Option<SystemTime>,
}

impl FimAlert {
    pub fn new(
        name: &'static str,
        subject: impl Into<String>,
        severity: Severity,
        message: String,
    ) -> Self {
        Self {
            name,
            subject: subject.into(),
            severity,
            message,
            labels: Vec::new(),
            time: None,
        }
    }

    pub fn label(mut self, key: &str, value: impl ToString) -> Self {
        self.labels.push((key.to_string(), value.to_string()));
        self
    }

    /// The `Alert` event payload (source "fim").
    pub fn to_proto(&self) -> pb::Alert {
        pb::Alert {
            source: "fim".into(),
            subject: self.subject.clone(),
            name: self.name.into(),
            severity: pb::Severity::from(self.severity).into(),
            message: self.message.clone(),
            labels: self.labels.iter().cloned().collect(),
            ..pb::Alert::default()
        }
    }
}

/// Everything the monitor emits.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    Change(Box<Change>),
    Alert(FimAlert),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::FileType;

    fn e(hash: &str, mode: u32, inode: u64) -> Entry {
        Entry {
            file_type: FileType::File,
            size: 1,
            mode,
            uid: 0,
            gid: 0,
            dev: 1,
            inode,
            mtime: 1,
            mtime_nsec: 0,
            ctime: 1,
            ctime_nsec: 0,
            sha256: hash.into(),
            hash_skipped: String::new(),
            symlink_target: String::new(),
        }
    }

    #[test]
    fn classification() {
        let a = e("aa", 0o644, 1);
        assert_eq!(classify(None, Some(&a)), Some(Action::Created));
        assert_eq!(classify(Some(&a), None), Some(Action::Deleted));
        assert_eq!(
            classify(Some(&a), Some(&e("bb", 0o644, 1))),
            Some(Action::Modified)
        );
        assert_eq!(
            classify(Some(&a), Some(&e("aa", 0o600, 1))),
            Some(Action::Attributes)
        );
        assert_eq!(
            classify(Some(&a), Some(&e("aa", 0o644, 2))),
            None,
            "no-op save"
        );
        let mut big = e("", 0o644, 1);
        big.hash_skipped = "too_large".into();
        let mut grown = big.clone();
        grown.size = 2;
        assert_eq!(classify(Some(&big), Some(&grown)), Some(Action::Modified));
    }

    #[test]
    fn proto_carries_before_and_after() {
        let c = Change {
            path: "/etc/x".into(),
            action: Action::Modified,
            old_path: None,
            old: Some(e("aa", 0o644, 1)),
            new: Some(e("bb", 0o600, 2)),
            diff: "-a\n+b\n".into(),
            diff_truncated: false,
            redacted_lines: 0,
            diff_skipped: "",
            changed_by: "unknown".into(),
            tag: "t".into(),
            severity: Severity::Critical,
            while_agent_stopped: true,
            coalesced: 3,
        };
        let p = c.to_proto();
        assert_eq!((p.old_sha256.as_str(), p.new_sha256.as_str()), ("aa", "bb"));
        assert_eq!((p.old_mode, p.new_mode, p.inode), (0o644, 0o600, 2));
        assert_eq!(p.change(), pb::FileChangeKind::Modified);
        assert_eq!(p.severity(), pb::Severity::Critical);
        assert!(p.while_agent_stopped && p.coalesced == 3 && p.file_type == "file");
    }
}
