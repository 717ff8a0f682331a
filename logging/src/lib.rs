//! Log output of both binaries (the `[log]` section of owlet.toml and
//! soc.toml): human-readable on a terminal, the journal under systemd, JSON
//! lines otherwise (for log shippers).
//!
//! `journald` speaks the journal's native protocol (`tracing-journald`), so
//! every field of an event is a journal field of its own, prefixed `OWLET_`
//! (`OWLET_CHECK`, `OWLET_TENANT`, `OWLET_AGENT`, `OWLET_TASK`, ...:
//! `journalctl -u owlet OWLET_CHECK=fw-ping`), beside `MESSAGE`,
//! `PRIORITY` (error 3 … trace 7), `TARGET` and `SYSLOG_IDENTIFIER`. When
//! the journal's socket cannot be reached it falls back to text on stderr
//! without timestamps (the journal's stdout capture adds its own).
//!
//! Guarantee: no ANSI colour codes unless stderr is a terminal and the
//! process does not run under journald (`JOURNAL_STREAM` unset), whatever
//! format is configured: escape codes in a log file or the journal are noise.

#![forbid(unsafe_code)]

use std::io::IsTerminal;

use serde::Deserialize;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Prefix of the journal fields carrying an event's own fields.
pub const JOURNAL_FIELD_PREFIX: &str = "OWLET";

/// Log output format (`[log] format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human on a terminal, the journal under systemd (`JOURNAL_STREAM`
    /// set), JSON otherwise.
    #[default]
    Auto,
    Human,
    Json,
    Journald,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LogSection {
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter, e.g. "info" or "owlet_soc=debug,info". `RUST_LOG`
    /// overrides it when set.
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: default_level(),
        }
    }
}

fn default_level() -> String {
    "info".to_string()
}

/// Where the log goes, as far as the format choice is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// stderr is a terminal.
    pub terminal: bool,
    /// `JOURNAL_STREAM` is set: systemd connected stderr to the journal.
    pub journald: bool,
}

impl Output {
    pub fn detect() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            journald: std::env::var_os("JOURNAL_STREAM").is_some(),
        }
    }

    /// The format `configured` means here (`Auto` resolved).
    pub fn format(self, configured: LogFormat) -> LogFormat {
        match configured {
            LogFormat::Auto if self.journald => LogFormat::Journald,
            LogFormat::Auto if self.terminal => LogFormat::Human,
            LogFormat::Auto => LogFormat::Json,
            other => other,
        }
    }

    /// Whether ANSI colour codes may be written.
    pub fn ansi(self) -> bool {
        self.terminal && !self.journald
    }
}

/// Checks `[log] level` the way [`init`] will read it; the error says why.
pub fn check_level(level: &str) -> Result<(), String> {
    EnvFilter::try_new(level)
        .map(drop)
        .map_err(|e| format!("{e} (examples: \"info\", \"debug\", \"owlet_agent=debug,info\")"))
}

/// Installs the global subscriber: the journal for `journald` (stderr if
/// the journal cannot be reached), stderr otherwise.
pub fn init(section: &LogSection) {
    let filter = || {
        EnvFilter::try_from_default_env()
            .or_else(|_| EnvFilter::try_new(&section.level))
            .unwrap_or_else(|_| EnvFilter::new("info"))
    };
    let output = Output::detect();
    let mut journal_error = None;
    if output.format(section.format) == LogFormat::Journald {
        match tracing_journald::layer() {
            Ok(journal) => {
                let journal = journal.with_field_prefix(Some(JOURNAL_FIELD_PREFIX.to_string()));
                let _ = tracing_subscriber::registry()
                    .with(filter())
                    .with(journal)
                    .try_init();
                return;
            }
            Err(e) => journal_error = Some(e),
        }
    }
    let filter = filter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(output.ansi());
    let _ = match output.format(section.format) {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        LogFormat::Journald => builder
            .without_time()
            .with_ansi(false)
            .with_target(false)
            .try_init(),
        LogFormat::Human | LogFormat::Auto => builder.try_init(),
    };
    if let Some(e) = journal_error {
        tracing::warn!(
            "log.format = \"journald\" but the journal's socket cannot be reached ({e}); logging to stderr"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_outside_journald() {
        let at = |terminal, journald| Output { terminal, journald };
        assert!(at(true, false).ansi());
        assert!(!at(false, false).ansi());
        assert!(!at(true, true).ansi());
        assert_eq!(at(true, true).format(LogFormat::Auto), LogFormat::Journald);
        assert_eq!(at(true, false).format(LogFormat::Auto), LogFormat::Human);
        assert_eq!(at(false, false).format(LogFormat::Auto), LogFormat::Json);
        assert_eq!(at(false, true).format(LogFormat::Human), LogFormat::Human);
    }
}
