//! Watching: one non-recursive inotify watch per directory.
//!
//! Guarantees:
//! * a directory is watched *before* its entries are read (walk-and-watch),
//!   so a file created meanwhile is either listed or notified;
//! * a watch belongs to a directory, not to its name: a path whose directory
//!   was replaced (a tree moved away and made anew under the same name) is
//!   watched again, whatever order the notifications were handled in;
//! * when the inotify watch limit is reached, the directories left unwatched
//!   go to `unwatched` for the fallback scan, with one `fim_watch_limit`
//!   alert per episode; other watch and directory errors are alerted once
//!   per path, a directory gone meanwhile quietly;
//! * a watched directory that is gone (deleted, moved away) has its watches
//!   dropped, so a moved directory does not report under its old name.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use notify::{INotifyWatcher, RecursiveMode, Watcher};

use crate::change::{FimAlert, Output};
use crate::config::Severity;
use crate::walk::{PathList, walk};

use super::Engine;

impl Engine {
    /// Watches one directory; on the watch limit, marks it for scanning.
    pub(super) fn watch_dir(&mut self, dir: &Path) {
        if let Err(e) = try_watch(
            self.watcher.as_mut(),
            &mut self.watched,
            &mut self.unwatched,
            dir,
        ) {
            self.watch_failed(dir, e);
        }
    }

    /// Walks `root`: each directory is watched *before* its entries are
    /// read, so a file created meanwhile is either listed or notified.
    /// Returns the files in scope.
    pub(super) fn walk_and_watch(&mut self, root: &Path) -> PathList {
        let mut files = PathList::default();
        let mut failed = Vec::new();
        let mut errors = Vec::new();
        let (watcher, watched, unwatched) =
            (&mut self.watcher, &mut self.watched, &mut self.unwatched);
        walk(
            &self.rules,
            root,
            &mut |d| {
                if let Err(e) = try_watch(watcher.as_mut(), watched, unwatched, d) {
                    failed.push((d.to_path_buf(), e));
                }
            },
            &mut |f| files.push(&f),
            &mut |p, e| errors.push((p.to_path_buf(), e)),
        );
        for (d, e) in failed {
            self.watch_failed(&d, e);
        }
        for (p, e) in errors {
            self.dir_error(&p, &e);
        }
        files
    }

    pub(super) fn watch_failed(&mut self, dir: &Path, e: notify::Error) {
        match e.kind {
            notify::ErrorKind::MaxFilesWatch => {
                self.unwatched.insert(dir.to_path_buf());
                // Once per episode (fallback scans retry and fail again).
                if !std::mem::replace(&mut self.limit_alerted, true) {
                    let limit = watch_limit();
                    let alert = FimAlert::new(
                        "fim_watch_limit",
                        dir.to_string_lossy(),
                        Severity::Warning,
                        format!(
                            "inotify watch limit reached at {} ({} directories watched, fs.inotify.max_user_watches = {limit}): the remaining directories are scanned every {} instead (raise the sysctl to watch them all)",
                            dir.display(),
                            self.watched.len(),
                            humantime::format_duration(self.cfg.scan_interval)
                        ),
                    )
                    .label("max_user_watches", limit)
                    .label("watched", self.watched.len());
                    self.emit(Output::Alert(alert));
                }
            }
            notify::ErrorKind::PathNotFound => {}
            notify::ErrorKind::Io(ref io) if io.kind() == io::ErrorKind::NotFound => {}
            notify::ErrorKind::Io(ref io) if io.kind() == io::ErrorKind::PermissionDenied => {
                self.alert_once(
                    "fim_permission_denied",
                    dir,
                    Severity::Warning,
                    format!("cannot watch {}: permission denied (run the agent as root or grant it read access)", dir.display()),
                );
            }
            _ => self.alert_once(
                "fim_error",
                dir,
                Severity::Warning,
                format!("cannot watch {}: {e}", dir.display()),
            ),
        }
    }

    /// Publishes the counts `owlet health` shows. Called between whole
    /// steps (the end of a scan, each turn of the event loop), never in the
    /// middle of one: a fallback scan rebuilds `unwatched`, and a count
    /// taken halfway would tell the operator that nearly every directory is
    /// watched again.
    pub(super) fn sync_stats(&self) {
        if let Ok(mut s) = self.stats.lock() {
            s.watched_dirs = self.watched.len();
            s.unwatched_dirs = self.unwatched.len();
            s.fallback_scanning = !self.unwatched.is_empty();
            s.files = self.baseline.entries.len();
        }
    }

    pub(super) fn dir_error(&mut self, dir: &Path, e: &io::Error) {
        if e.kind() == io::ErrorKind::PermissionDenied {
            self.alert_once(
                "fim_permission_denied",
                dir,
                Severity::Warning,
                format!("cannot read directory {}: permission denied; its files are not watched (run the agent as root or grant it read access)", dir.display()),
            );
        } else {
            self.alert_once(
                "fim_error",
                dir,
                Severity::Warning,
                format!("cannot read directory {}: {e}", dir.display()),
            );
        }
    }

    /// A watched directory is gone (deleted, or moved away): drop its
    /// watches (the kernel dropped them for a deletion; a moved directory's
    /// watch would report under its old name).
    pub(super) fn forget_dir(&mut self, dir: &Path) {
        let gone: Vec<PathBuf> = self
            .watched
            .keys()
            .filter(|d| d.starts_with(dir))
            .cloned()
            .collect();
        for d in gone {
            if let Some(w) = self.watcher.as_mut() {
                let _ = w.unwatch(&d);
            }
            self.watched.remove(&d);
        }
        self.unwatched.retain(|d| !d.starts_with(dir));
    }
}

/// Watches one directory (non-recursive). Once the watch limit was hit,
/// further directories go straight to `unwatched` until the next fallback
/// scan retries them. The error is for reporting (the limit's error has
/// already put `dir` into `unwatched`).
fn try_watch(
    watcher: Option<&mut INotifyWatcher>,
    watched: &mut HashMap<PathBuf, DirId>,
    unwatched: &mut BTreeSet<PathBuf>,
    dir: &Path,
) -> Result<(), notify::Error> {
    let Some(watcher) = watcher else {
        return Ok(());
    };
    // The directory there now; a name whose directory changed is watched
    // anew (its old watch follows the old directory).
    let id = std::fs::symlink_metadata(dir)
        .ok()
        .map(|m| (m.dev(), m.ino()));
    if id.is_some() && watched.get(dir) == id.as_ref() {
        return Ok(());
    }
    if !unwatched.is_empty() {
        unwatched.insert(dir.to_path_buf());
        return Ok(());
    }
    match watcher.watch(dir, RecursiveMode::NonRecursive) {
        Ok(()) => {
            watched.insert(dir.to_path_buf(), id.unwrap_or_default());
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// A directory's identity: (device, inode).
pub(super) type DirId = (u64, u64);

/// The inotify watch limit in force: the smaller of the host's sysctl and
/// this user namespace's own (`/proc/sys/user/max_inotify_watches`).
fn watch_limit() -> String {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    match (
        read("/proc/sys/fs/inotify/max_user_watches"),
        read("/proc/sys/user/max_inotify_watches"),
    ) {
        (Some(a), Some(b)) => a.min(b).to_string(),
        (Some(a), None) | (None, Some(a)) => a.to_string(),
        (None, None) => "?".into(),
    }
}
