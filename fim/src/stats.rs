//! What the monitor tells `owlet health`: counts, the fallback state, the
//! most recent changes and problems (both bounded).

use std::collections::VecDeque;

use serde::Serialize;

use crate::change::Output;
use crate::config::Severity;

/// Recent changes and problems kept for health.
const RECENT: usize = 10;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub baseline_ready: bool,
    /// Files (and symlinks) in the baseline.
    pub files: usize,
    pub watched_dirs: usize,
    /// Directories left to periodic scanning (watch limit).
    pub unwatched_dirs: usize,
    pub fallback_scanning: bool,
    /// Fallback scans done since start.
    pub fallback_scans: u64,
    pub changes: u64,
    pub overflows: u64,
    pub permission_denied: u64,
    /// Why attribution (who changed a file) is off, when it is.
    pub attribution: Option<String>,
    /// "modified /etc/x", newest last.
    pub recent_changes: VecDeque<String>,
    /// Warning alerts ("fim_watch_limit: ..."), newest last.
    pub problems: VecDeque<String>,
}

fn push(q: &mut VecDeque<String>, s: String) {
    if q.len() == RECENT {
        q.pop_front();
    }
    q.push_back(s);
}

impl Stats {
    pub fn note(&mut self, output: &Output) {
        match output {
            Output::Change(c) => {
                self.changes += 1;
                let what = c.action.name();
                push(
                    &mut self.recent_changes,
                    format!("{what} {}", c.path.display()),
                );
            }
            Output::Alert(a) => {
                if a.name == "fim_permission_denied" {
                    self.permission_denied += 1;
                }
                if a.severity != Severity::Info {
                    push(&mut self.problems, format!("{}: {}", a.name, a.message));
                }
            }
        }
    }
}
