//! The `[fim]` table of the agent's TOML and its validation.
//!
//! Off without any `[[fim.watch]]`. Every key has a default; validation
//! names the key (relative to `[fim]`) and the fix, and reports every
//! problem at once. A configuration that validates always builds its
//! [`crate::rules::Rules`] (the same checks run there).

use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use owlet_tomlconf::ConfigIssue;
use serde::Deserialize;

/// `[fim]`: watched files and directories; off without any `[[fim.watch]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FimConfig {
    /// What to watch.
    pub watch: Vec<WatchConfig>,
    /// Text files larger than this get no diff (hashes only).
    pub max_diff_file_bytes: ByteSize,
    /// Files larger than this are handled as `large_files` says.
    pub max_hash_bytes: ByteSize,
    /// Files above `max_hash_bytes`: metadata only, or hashed in the
    /// background at `baseline_io_budget`.
    pub large_files: LargeFiles,
    /// Notifications about one path are folded into one event once the path
    /// has been quiet this long (an event waits at most twice this long).
    #[serde(with = "humantime_serde")]
    pub coalesce: Duration,
    /// Events per path and minute; more changes are folded into the next
    /// event allowed (its `coalesced` count says how many).
    pub rate_limit_per_minute: u32,
    /// Bytes per second read for hashing during baseline builds and scans.
    pub baseline_io_budget: ByteSize,
    /// How often directories that inotify cannot watch (watch limit) are
    /// scanned instead.
    #[serde(with = "humantime_serde")]
    pub scan_interval: Duration,
    /// Extra regular expressions of secret-looking diff lines to redact.
    pub redact: Vec<String>,
    /// Disk kept for previous contents of text files (for diffs across
    /// restarts); beyond it, new contents are not kept (no diff next time).
    pub content_store_max: ByteSize,
    /// Ask the kernel who wrote a file (fanotify; best effort).
    pub attribution: bool,
}

impl Default for FimConfig {
    fn default() -> Self {
        Self {
            watch: Vec::new(),
            max_diff_file_bytes: ByteSize::mib(1),
            max_hash_bytes: ByteSize::mib(256),
            large_files: LargeFiles::Metadata,
            coalesce: Duration::from_millis(40),
            rate_limit_per_minute: 60,
            baseline_io_budget: ByteSize::mib(64),
            scan_interval: Duration::from_secs(60),
            redact: Vec::new(),
            content_store_max: ByteSize::mib(64),
            attribution: true,
        }
    }
}

/// What to do with files above `max_hash_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LargeFiles {
    /// Compare size, times, owner, mode and inode only (`hash_skipped = "too_large"`).
    #[default]
    Metadata,
    /// Hash on a background thread at the I/O budget; the change is
    /// reported when the hash is ready.
    Background,
}

/// Severity of a watch rule's changes ("info", "warning", "critical").
pub use owlet_proto::ConfigSeverity as Severity;

/// One `[[fim.watch]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    /// Absolute path of a file, a directory or a glob (`/etc/nginx/*.conf`,
    /// `/etc/**/*.rules`).
    pub path: String,
    /// For directories: watch subdirectories too (default true).
    #[serde(default)]
    pub recursive: Option<bool>,
    /// Globs of paths to leave out (matched against the full path).
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub severity: Severity,
    /// Free label sent with every change, e.g. "firewall-rules".
    #[serde(default)]
    pub tag: String,
    /// Send unified diffs of text files.
    #[serde(default = "yes")]
    pub diff: bool,
    /// Diff (and keep redacted copies of) files that exist to hold secrets
    /// too: shadow, private keys, PSK files ([`crate::secret_file`]). Off:
    /// they are compared by hash only (`diff_skipped = "secret_file"`).
    #[serde(default)]
    pub diff_secret_files: bool,
}

fn yes() -> bool {
    true
}

/// Whether a path text contains glob syntax.
pub fn has_glob_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

impl FimConfig {
    /// Whether anything is to be watched.
    pub fn enabled(&self) -> bool {
        !self.watch.is_empty()
    }

    /// Every problem at once, paths relative to `[fim]`.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let mut seen: Vec<(&str, usize)> = Vec::new();
        for (i, w) in self.watch.iter().enumerate() {
            let at = |key: &str| format!("watch[{i}].{key}");
            if !w.path.starts_with('/') {
                issues.push(ConfigIssue::new(
                    at("path"),
                    format!(
                        "{:?} is not absolute; write the full path (e.g. \"/{}\")",
                        w.path,
                        w.path.trim_start_matches("./")
                    ),
                ));
            } else if has_glob_meta(&w.path)
                && let Err(e) = globset::Glob::new(&w.path)
            {
                issues.push(ConfigIssue::new(
                    at("path"),
                    format!("{:?} is not a valid glob: {e}", w.path),
                ));
            }
            let trimmed = w.path.trim_end_matches('/');
            if let Some((_, first)) = seen.iter().find(|(p, _)| *p == trimmed) {
                issues.push(ConfigIssue::new(
                    at("path"),
                    format!(
                        "{:?} overlaps watch[{first}] (same path); merge the two entries",
                        w.path
                    ),
                ));
            } else {
                seen.push((trimmed, i));
            }
            for (j, ex) in w.exclude.iter().enumerate() {
                if let Err(e) = globset::Glob::new(ex) {
                    issues.push(ConfigIssue::new(
                        format!("watch[{i}].exclude[{j}]"),
                        format!("{ex:?} is not a valid glob: {e}"),
                    ));
                }
            }
        }
        if self.coalesce > Duration::from_secs(10) {
            issues.push(ConfigIssue::new(
                "coalesce",
                "must be at most 10s (changes wait this long before they are sent; 40ms is a good start)",
            ));
        }
        if self.rate_limit_per_minute == 0 {
            issues.push(ConfigIssue::new(
                "rate_limit_per_minute",
                "must be at least 1 (60 is a good start)",
            ));
        }
        if self.baseline_io_budget.as_u64() < 1024 * 1024 {
            issues.push(ConfigIssue::new(
                "baseline_io_budget",
                "must be at least 1 MiB (per second; \"64 MiB\" is a good start)",
            ));
        }
        if self.scan_interval < Duration::from_secs(1) {
            issues.push(ConfigIssue::new(
                "scan_interval",
                "must be at least 1s (\"60s\" is a good start)",
            ));
        }
        for (j, pattern) in self.redact.iter().enumerate() {
            if let Err(e) = regex::Regex::new(pattern) {
                issues.push(ConfigIssue::new(
                    format!("redact[{j}]"),
                    format!("{pattern:?} is not a valid regular expression: {e}"),
                ));
            }
        }
        issues
    }

    /// Where the baseline and content store live under the agent's state
    /// directory.
    pub fn state_dir(agent_state_dir: &std::path::Path) -> PathBuf {
        agent_state_dir.join("fim")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> FimConfig {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn defaults_and_a_watch_entry() {
        let c = parse("[[watch]]\npath = \"/etc\"\n");
        assert!(c.validate().is_empty());
        assert_eq!(c.watch[0].severity, Severity::Warning);
        assert!(c.watch[0].diff);
        assert_eq!(c.max_diff_file_bytes, ByteSize::mib(1));
        assert!(c.coalesce <= Duration::from_millis(50));
    }

    #[test]
    fn validation_names_key_and_fix() {
        let c = parse(
            "redact = [\"(\"]\n[[watch]]\npath = \"etc\"\n[[watch]]\npath = \"/etc/[a\"\n[[watch]]\npath = \"/x\"\nexclude = [\"a[\"]\n[[watch]]\npath = \"/x/\"\n",
        );
        let issues: Vec<String> = c.validate().iter().map(|i| i.to_string()).collect();
        let all = issues.join("\n");
        assert!(
            all.contains("watch[0].path: \"etc\" is not absolute"),
            "{all}"
        );
        assert!(all.contains("watch[1].path"), "{all}");
        assert!(all.contains("watch[2].exclude[0]"), "{all}");
        assert!(
            all.contains("watch[3].path: \"/x/\" overlaps watch[2]"),
            "{all}"
        );
        assert!(all.contains("redact[0]"), "{all}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(
            toml::from_str::<FimConfig>("[[watch]]\npath = \"/etc\"\nrecursve = true\n").is_err()
        );
    }
}
