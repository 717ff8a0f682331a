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
    #[error(
        "{what} {path} is {access} by others (mode {mode:04o}); run `chmod 600 {path}` (and chown it to the owlet-soc user)"
    )]
    SecretPermissions {
        what: &'static str,
        path: PathBuf,
        access: &'static str,
        mode: u32,
    },
    #[error("{what} {path} is empty; put the secret on its first line")]
    EmptySecret { what: &'static str, path: PathBuf },
    #[error("notification record {path}: {source}")]
    Record {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("notification record in PostgreSQL: {0}")]
    Postgres(#[from] owlet_soc_bus::BusError),
    #[error("event store: {0}")]
    Store(#[from] owlet_soc_store::StoreError),
    #[error("channel \"{channel}\": {message}")]
    Channel { channel: String, message: String },
    #[error("background task failed: {0}")]
    Join(String),
}

pub type Result<T> = std::result::Result<T, NotifyError>;

/// Reads a secret from a file: its first line, without the line end. Secrets
/// are never inline in a config (configs get copied, pasted and committed),
/// and, like the SOC's private keys, never read from a file that group or
/// others may read or write (checked on the opened handle, so the file
/// checked is the file read).
pub fn read_secret(what: &'static str, path: &std::path::Path) -> Result<String> {
    use std::io::Read;
    let io = |source| NotifyError::SecretFile {
        what,
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(io)?.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            let access = match (mode & 0o044 != 0, mode & 0o022 != 0) {
                (true, true) => "readable and writable",
                (true, false) => "readable",
                (false, true) => "writable",
                (false, false) => "accessible",
            };
            return Err(NotifyError::SecretPermissions {
                what,
                path: path.to_path_buf(),
                access,
                mode,
            });
        }
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io)?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(NotifyError::EmptySecret {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(line.to_string())
}
