//! Log output: human-readable on a terminal, journald-friendly under systemd
//! (no timestamps or colours: the journal adds its own), JSON lines otherwise
//! (for log shippers).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` overrides `level` when set.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let format = match format {
        LogFormat::Auto if under_journald => LogFormat::Journald,
        LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Human,
        LogFormat::Auto => LogFormat::Json,
        other => other,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        LogFormat::Journald => builder
            .without_time()
            .with_ansi(false)
            .with_target(false)
            .try_init(),
        // Colour only for a person at a terminal: never into a file, a
        // pipe or the journal.
        LogFormat::Human | LogFormat::Auto => builder
            .with_ansi(std::io::stderr().is_terminal() && !under_journald)
            .try_init(),
    };
}
