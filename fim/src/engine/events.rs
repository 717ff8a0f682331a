//! Notifications in: notify's events become pending paths.
//!
//! Guarantees:
//! * a notification only marks paths pending (nothing is hashed here; a
//!   background hash is applied as it arrives); reads are ignored;
//! * a directory that appears is watched, then walked, and its files are
//!   marked pending; one that disappears has its watches dropped and its
//!   baseline entries marked pending;
//! * a rename records its source, so the target's settle moves the entry;
//! * the kernel's overflow (`need_rescan`) raises the overflow flag.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use notify::event::{EventKind, ModifyKind, RenameMode};

use super::apply::Settle;
use super::{Engine, Msg, is_read};

impl Engine {
    pub(super) fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Hashed(path, observed) => {
                let ctx = Settle {
                    while_stopped: false,
                    report: true,
                    coalesced: 1,
                    renamed_from: None,
                };
                self.apply(&path, observed, ctx);
            }
            Msg::Fs(Err(e)) => {
                let dir = e.paths.first().cloned().unwrap_or_default();
                self.watch_failed(&dir, e);
            }
            Msg::Fs(Ok(ev)) => self.on_event(ev),
        }
    }

    pub(super) fn on_event(&mut self, ev: notify::Event) {
        if ev.need_rescan() {
            self.overflow.store(true, Ordering::Relaxed);
        }
        let now = Instant::now();
        match ev.kind {
            kind if is_read(&kind) => return,
            EventKind::Other | EventKind::Any => return,
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                if let [from, to] = ev.paths.as_slice() {
                    let to = to.clone();
                    self.touch(to.clone(), now);
                    if let Some(p) = self.pending.get_mut(&to) {
                        p.renamed_from = Some(from.clone());
                    }
                }
                return;
            }
            _ => {}
        }
        for path in ev.paths {
            self.on_path(path, now);
        }
    }

    /// A notification about `path`: the file itself, or a directory that
    /// appeared or disappeared.
    fn on_path(&mut self, path: PathBuf, now: Instant) {
        if self.rules.wants_dir(&path) {
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {
                    use std::os::unix::fs::MetadataExt;
                    let now_there = (m.dev(), m.ino());
                    let known = self.watched.get(&path) == Some(&now_there)
                        || self.unwatched.contains(&path);
                    if !known {
                        // Another directory under a watched name (a tree
                        // replaced whole): its old watches go first.
                        if self.watched.contains_key(&path) {
                            self.forget_dir(&path);
                        }
                        self.add_tree(&path);
                    }
                }
                // Only a directory we watched has watches to drop (this
                // runs for every file notification: keep it O(1)).
                _ if self.watched.contains_key(&path) || self.unwatched.contains(&path) => {
                    self.forget_dir(&path);
                }
                _ => {}
            }
        }
        // Baseline entries under a directory that was deleted or moved.
        let under = self.baseline.entries.paths_under(&path);
        for p in under {
            self.touch(p, now);
        }
        if self.rules.rule_for(&path).is_some() || self.baseline.entries.contains_key(&path) {
            self.touch(path, now);
        }
    }
}
