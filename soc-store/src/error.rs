//! What can go wrong in the store, classified for the receiver's reply and
//! the operator's log.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The filesystem holding the store is full: nothing was stored, and
    /// nothing stored before is damaged (the transaction rolled back).
    #[error(
        "the SOC's disk is full ({path}): nothing of this batch was stored; free space or lower the retention limits, storage resumes by itself"
    )]
    DiskFull { path: PathBuf },
    #[error("no tenant {name:?}; tenants: {known}")]
    UnknownTenant { name: String, known: String },
    #[error("invalid tenant name {name:?}: {reason}")]
    InvalidTenant { name: String, reason: String },
    #[error(
        "{path} has schema version {found}, newer than this owlet-soc knows ({known}); run the newer owlet-soc"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// Wraps a SQLite error of the database at `path`, telling a full disk
    /// apart from other failures.
    pub fn sqlite(path: &std::path::Path, source: rusqlite::Error) -> Self {
        let full = matches!(
            &source,
            rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::DiskFull
        );
        if full {
            StoreError::DiskFull {
                path: path.to_path_buf(),
            }
        } else {
            StoreError::Sqlite {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::DiskFull { .. })
    }
}

/// `Result` of the store.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Attaches the database path to SQLite errors.
pub(crate) trait AtPath<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> AtPath<T> for rusqlite::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| StoreError::sqlite(path, e))
    }
}
