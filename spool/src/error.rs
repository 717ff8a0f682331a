//! The one error type of the spool. Every variant that involves a file names
//! it, and the messages say what the operator can do about it.

use std::io;
use std::path::PathBuf;

/// Errors returned by [`crate::Spool`]. None of them is a panic waiting to
/// happen: bad file contents become [`crate::DataLoss`] reports or one of these.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The configuration cannot work.
    #[error("invalid spool configuration: {0}")]
    Config(String),

    /// Another process holds the directory lock.
    #[error(
        "spool directory {} is locked by another process: another owlet agent may be \
         running with the same spool directory; stop it, or give this agent its own \
         spool directory",
        dir.display()
    )]
    Locked { dir: PathBuf },

    /// A filesystem operation failed (permissions, disk full, I/O error).
    #[error(
        "spool {action} {} failed: {source}; check free space, permissions and the \
         disk's health (the spool stays consistent and the call can be retried)",
        path.display()
    )]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A file was written by a newer owlet with a format this build cannot read.
    #[error(
        "spool file {} uses format version {found}, this owlet reads only version \
         {supported}; it was written by a newer owlet: upgrade owlet, or move the spool \
         directory away to start a new spool",
        path.display()
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    /// The batch alone is larger than the spool may ever hold.
    #[error(
        "a batch of {bytes} encoded bytes cannot be spooled: the limit is {limit} bytes \
         (spool max_bytes, or the record format's cap); send smaller batches or raise \
         the spool's max_bytes"
    )]
    BatchTooLarge { bytes: u64, limit: u64 },

    /// The caller passed an empty or oversized batch.
    #[error("invalid batch: {0}")]
    InvalidBatch(String),

    /// u64 sequence numbers ran out (only reachable with a bogus ack).
    #[error(
        "spool sequence numbers are exhausted (last assigned {last_seq}); move the spool \
         directory away to start a new spool"
    )]
    SeqExhausted { last_seq: u64 },
}

impl SpoolError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SpoolError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
