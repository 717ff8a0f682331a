//! The configuration changes `owlet demo` makes to the file its agent
//! watches, so a newcomer sees file integrity monitoring at work: a
//! firewall rule added with an editor-style save (write a temporary file,
//! rename it over the original), then a secret appended (the SOC receives
//! the diff with the value redacted).
//!
//! Guarantees: it only ever writes inside the demo's own directory, and each
//! edit happens once, at its time after the agent started.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

/// The watched file, under the demo directory.
pub const WATCHED_FILE: &str = "watched/firewall.rules";

const FIRST_RULES: &str =
    "# demo firewall rules\nallow tcp 22 from 10.0.0.0/8\nallow tcp 443 from any\ndeny all\n";

/// When each edit happens, counted from the agent's start (after its
/// baseline of the one small file is long done).
const EDITS: [Duration; 2] = [Duration::from_secs(6), Duration::from_secs(12)];

/// The demo's pending edits of [`WATCHED_FILE`].
pub struct Edits {
    path: PathBuf,
    start: Instant,
    done: usize,
}

impl Edits {
    /// Writes the file's first version (before the agent starts, so it is
    /// part of the baseline) and returns the edits to come.
    pub fn prepare(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(WATCHED_FILE);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, FIRST_RULES)?;
        Ok(Self {
            path,
            start: Instant::now(),
            done: 0,
        })
    }

    /// The directory the agent watches.
    pub fn watched_dir(&self) -> &Path {
        self.path.parent().unwrap_or(&self.path)
    }

    /// Counts the edit times from now (the agent just started).
    pub fn agent_started(&mut self) {
        self.start = Instant::now();
    }

    /// Makes the next edit once its time has come; returns what it did.
    pub fn tick(&mut self) -> Option<String> {
        let due = EDITS.get(self.done)?;
        if self.start.elapsed() < *due {
            return None;
        }
        self.done += 1;
        let outcome = match self.done {
            1 => self.editor_save().map(|()| {
                "demo: added a firewall rule with an editor-style save (temporary file renamed over firewall.rules)"
            }),
            _ => self.append_secret().map(|()| {
                "demo: appended an admin password to firewall.rules (the SOC gets the diff with the value redacted)"
            }),
        };
        Some(match outcome {
            Ok(note) => note.to_string(),
            Err(e) => format!("demo: cannot edit {}: {e}", self.path.display()),
        })
    }

    fn editor_save(&self) -> std::io::Result<()> {
        let rules = FIRST_RULES.replace("deny all\n", "allow tcp 4444 from any\ndeny all\n");
        let temp = self.path.with_extension("rules.tmp");
        std::fs::write(&temp, rules)?;
        std::fs::rename(&temp, &self.path)
    }

    fn append_secret(&self) -> std::io::Result<()> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().append(true).open(&self.path)?;
        file.write_all(b"admin_password = hunter2\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn edits_happen_once_each_at_their_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut edits = Edits::prepare(dir.path()).unwrap();
        edits.agent_started();
        assert_eq!(edits.tick(), None);
        tokio::time::advance(EDITS[0]).await;
        assert!(edits.tick().unwrap().contains("editor-style save"));
        assert_eq!(edits.tick(), None);
        let text = std::fs::read_to_string(dir.path().join(WATCHED_FILE)).unwrap();
        assert!(text.contains("allow tcp 4444"));
        tokio::time::advance(EDITS[1]).await;
        assert!(edits.tick().unwrap().contains("redacted"));
        assert_eq!(edits.tick(), None);
        let text = std::fs::read_to_string(dir.path().join(WATCHED_FILE)).unwrap();
        assert!(text.ends_with("admin_password = hunter2\n"));
        assert!(!dir.path().join("watched/firewall.rules.tmp").exists());
    }
}
