//! The saved baseline: loaded at start, saved crash-safe on a schedule.
//!
//! Guarantees:
//! * a damaged baseline is reported (`fim_baseline_corrupt`) and rebuilt;
//! * the baseline is saved at most every few seconds while it changes (a
//!   large one less often) and at stop; a failed save is alerted once and
//!   retried on the schedule;
//! * after a save, the content store keeps only what the baseline refers to.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::baseline::{Baseline, LoadError};
use crate::config::Severity;

use super::Engine;

/// The baseline could not be written to its directory.
#[derive(Debug, thiserror::Error)]
#[error("cannot save the baseline in {}", dir.display())]
pub struct SaveError {
    dir: PathBuf,
}

impl Engine {
    /// Loads the saved baseline; a damaged one is reported and rebuilt.
    pub(crate) fn load_baseline(&mut self) -> bool {
        match Baseline::load(&self.dir) {
            Ok(b) => {
                self.known_rules = b.rules.iter().cloned().collect();
                // A version 1 (JSON) baseline is rewritten at the next save.
                self.baseline_dirty |= b.legacy;
                self.baseline = b;
                true
            }
            Err(LoadError::Missing) => false,
            Err(e) => {
                let dir = self.dir.clone();
                self.alert_once(
                    "fim_baseline_corrupt",
                    &dir,
                    Severity::Warning,
                    format!(
                        "{e}; changes made while the agent was stopped cannot be reported this time"
                    ),
                );
                false
            }
        }
    }

    pub(crate) fn baseline_dir(&self) -> &Path {
        &self.dir
    }

    /// Saves now (the CLI); the error is ready to print (why it failed is
    /// in the `fim_error` alert).
    pub(crate) fn save_baseline_now(&mut self) -> Result<(), SaveError> {
        self.save_baseline();
        if self.baseline_dirty {
            Err(SaveError {
                dir: self.dir.clone(),
            })
        } else {
            Ok(())
        }
    }

    pub(super) fn save_baseline(&mut self) {
        self.save_baseline_with(self.rules.specs());
    }

    pub(super) fn save_baseline_with(&mut self, rules: Vec<String>) {
        self.baseline.rules = rules;
        match self.baseline.save(&self.dir) {
            Ok(()) => {
                self.baseline_dirty = false;
                self.baseline.legacy = false;
                self.known_rules = self.baseline.rules.iter().cloned().collect();
                if let Some(store) = self.store.as_mut() {
                    let keep: HashSet<[u8; 32]> = self.baseline.entries.hashes().copied().collect();
                    store.gc(&|d| keep.contains(d));
                }
            }
            Err(e) => {
                let dir = self.dir.clone();
                self.alert_once(
                    "fim_error",
                    &dir,
                    Severity::Warning,
                    format!(
                        "cannot save the baseline in {}: {e} (check disk space and permissions)",
                        dir.display()
                    ),
                );
            }
        }
        self.last_save = Instant::now();
    }

    /// Whether the baseline should be written now: every few seconds while
    /// it changes (a large baseline less often).
    pub(super) fn save_due(&self) -> bool {
        let every =
            Duration::from_secs(2) + Duration::from_millis(self.baseline.entries.len() as u64 / 20);
        self.baseline_dirty && self.last_save.elapsed() >= every
    }
}
