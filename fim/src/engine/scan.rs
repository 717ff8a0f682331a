//! Scans: the full scan (at start, after a queue overflow) and the fallback
//! scan of the directories inotify could not watch.
//!
//! Guarantees:
//! * every file in scope is settled with the metadata quick check, and
//!   baseline entries not found are settled as gone;
//! * at start, differences from the saved baseline are reported with
//!   `while_agent_stopped`; files of rules the saved baseline did not have
//!   are learned without reports;
//! * scans hash within the configured I/O budget, and a stop request ends a
//!   full scan early (what was not reached is compared next time);
//! * after an overflow, a `fim_queue_overflow` alert says so and the trees
//!   are rescanned;
//! * the fallback scan retries each watch first, in case the limit was
//!   raised.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::change::{FimAlert, Output};
use crate::config::Severity;
use crate::state::{IoBudget, Observed, observe};

use super::Engine;
use super::apply::Settle;

/// Options of a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanKind {
    /// At start: differences from the saved baseline happened while the
    /// agent was stopped.
    Start,
    /// After an overflow or for the fallback: ordinary changes.
    Rescan,
}

impl Engine {
    /// Walks every tree, watches its directories, and settles every file
    /// with the metadata quick check; baseline entries not found are gone.
    pub(crate) fn full_scan(
        &mut self,
        kind: ScanKind,
        first_baseline: bool,
    ) -> (u64, u64, Duration) {
        let started = Instant::now();
        let mut budget = IoBudget::new(self.cfg.baseline_io_budget.as_u64());
        // Paths found are marked in the baseline (no set of 100,000 paths).
        self.baseline.entries.clear_marks();
        let (mut files, mut bytes) = (0u64, 0u64);
        let mut last_progress = Instant::now();
        for root in self.rules.walk_roots() {
            // The root's parent too: a watched tree deleted (or moved away)
            // and created again is seen, not left without watches.
            if let Some(parent) = root.parent() {
                self.watch_dir(parent);
            }
            let found = self.walk_and_watch(&root);
            for path in found.iter() {
                if self.stop.load(Ordering::Relaxed) {
                    // Stopping: what was not reached is compared next time.
                    self.baseline.entries.clear_marks();
                    return (files, bytes, started.elapsed());
                }
                bytes += self.settle_scanned(path, kind, &mut budget);
                files += 1;
                self.baseline.entries.mark(path);
                if self.progress && last_progress.elapsed() > Duration::from_millis(200) {
                    last_progress = Instant::now();
                    progress_line(files, bytes, started.elapsed(), first_baseline);
                }
                if files % 1024 == 0 {
                    self.sync_stats();
                }
            }
        }
        if self.progress {
            progress_line(files, bytes, started.elapsed(), first_baseline);
            eprintln!();
        }
        let gone = self.baseline.entries.unmarked();
        self.baseline.entries.clear_marks();
        for path in gone {
            self.settle_scanned(&path, kind, &mut budget);
        }
        self.sync_stats();
        (files, bytes, started.elapsed())
    }

    /// Settles one path found (or missed) by a scan. Returns bytes hashed.
    fn settle_scanned(&mut self, path: &Path, kind: ScanKind, budget: &mut IoBudget) -> u64 {
        let Some(rule) = self.rules.rule_for(path) else {
            // No rule covers it any more: forget it quietly.
            if self.baseline.entries.remove(path).is_some() {
                self.baseline_dirty = true;
            }
            return 0;
        };
        let diff = rule.diff;
        let known = self.known_rules.contains(&rule.spec);
        let prev = self.baseline.entries.get(path);
        let observed = observe(path, prev.as_ref(), true, self.limits(diff), budget);
        let hashed = match &observed {
            Observed::Entry { entry, .. }
                if prev.as_ref().is_none_or(|p| p.sha256 != entry.sha256) =>
            {
                entry.size
            }
            _ => 0,
        };
        let report = match kind {
            ScanKind::Start => known,
            ScanKind::Rescan => true,
        };
        let ctx = Settle {
            while_stopped: kind == ScanKind::Start,
            report,
            coalesced: 0,
            renamed_from: None,
        };
        self.apply(path, observed, ctx);
        hashed
    }

    /// Scans the directories inotify could not watch, retrying their watches.
    pub(super) fn fallback_scan(&mut self) {
        let dirs: Vec<PathBuf> = std::mem::take(&mut self.unwatched).into_iter().collect();
        let mut budget = IoBudget::new(self.cfg.baseline_io_budget.as_u64());
        for dir in dirs {
            // Retry the watch first (the limit may have been raised).
            self.watch_dir(&dir);
            let entries = match std::fs::read_dir(&dir) {
                Ok(it) => it,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    self.dir_error(&dir, &e);
                    continue;
                }
            };
            let mut present = HashSet::new();
            for entry in entries.flatten() {
                let path = entry.path();
                let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
                if is_dir {
                    if self.rules.wants_dir(&path)
                        && !self.watched.contains_key(&path)
                        && !self.unwatched.contains(&path)
                    {
                        self.add_tree(&path);
                    }
                } else if self.rules.rule_for(&path).is_some() {
                    self.settle_scanned(&path, ScanKind::Rescan, &mut budget);
                    present.insert(path);
                }
            }
            let gone: Vec<PathBuf> = self
                .baseline
                .entries
                .paths_under(&dir)
                .into_iter()
                .filter(|p| p.parent() == Some(dir.as_path()) && !present.contains(p))
                .collect();
            for p in gone {
                self.settle_scanned(&p, ScanKind::Rescan, &mut budget);
            }
        }
        if let Ok(mut s) = self.stats.lock() {
            s.fallback_scans += 1;
        }
        if self.unwatched.is_empty() {
            // Everything is watched again (the limit was raised).
            self.limit_alerted = false;
        }
    }

    /// A directory appeared inside a watched tree: watch it (and its
    /// subdirectories), then mark every file in it pending — files written
    /// before the watch landed are not missed.
    pub(super) fn add_tree(&mut self, dir: &Path) {
        let files = self.walk_and_watch(dir);
        let now = Instant::now();
        for f in files.iter() {
            self.touch(f.to_path_buf(), now);
        }
    }

    /// Notifications were lost: say so and rescan everything.
    pub(super) fn after_overflow(&mut self, overflows: u64) {
        if let Ok(mut s) = self.stats.lock() {
            s.overflows = overflows;
        }
        let alert = FimAlert::new(
            "fim_queue_overflow",
            self.dir.to_string_lossy(),
            Severity::Warning,
            "too many file notifications at once (the event queue overflowed): rescanning the watched trees so no change is missed".to_string(),
        )
        .label("overflows", overflows);
        self.emit(Output::Alert(alert));
        // Everything pending is re-read by the rescan anyway.
        self.flush(Instant::now(), true);
        self.full_scan(ScanKind::Rescan, false);
    }
}

fn progress_line(files: u64, bytes: u64, took: Duration, first: bool) {
    let secs = took.as_secs_f64().max(1e-3);
    eprint!(
        "\r{} {files} files, {:.1} MB ({:.0} files/s, {:.1} MB/s)   ",
        if first {
            "building baseline:"
        } else {
            "checking baseline:"
        },
        bytes as f64 / 1e6,
        files as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
}
