//! The crate's errors. Each names what was wrong and how to fix it; none
//! carries a secret.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notify config: {0}")]
    Config(String),
    #[error("cannot read {what} {path}: {source} (check the path and that owlet-soc may read it)")]
    SecretFile {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path} is empty; put the secret on its first line")]
    EmptySecret { what: &'static str, path: PathBuf },
    #[error("notification record {path}: {source}")]
    Record {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("event store: {0}")]
    Store(#[from] owlet_soc_store::StoreError),
    #[error("channel \"{channel}\": {message}")]
    Channel { channel: String, message: String },
    #[error("background task failed: {0}")]
    Join(String),
}

pub type Result<T> = std::result::Result<T, NotifyError>;

/// Reads a secret from a file: its first line, without the line end. Secrets
/// are never inline in a config (configs get copied, pasted and committed).
pub fn read_secret(what: &'static str, path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|source| NotifyError::SecretFile {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(NotifyError::EmptySecret {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(line.to_string())
}
