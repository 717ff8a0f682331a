//! Where a tenant's scheduled report files are kept: a directory of the
//! embedded SOC (`ROOT/tenants/T/reports/`, [`Dir`]) or the scaled-out
//! SOC's `tenant_<t>.reports` table ([`postgres::Table`]). The schedule
//! ([`crate::schedule`]) decides what is due, builds and renders it the
//! same way for both; a shelf only keeps, finds and deletes files.
//!
//! What every shelf guarantees:
//! * [`Shelf::put`] keeps a file whole or not at all, and never replaces
//!   one that is kept (a report, once made, stays as it was sent);
//! * [`Shelf::delete_expired`] deletes only files whose name starts with a
//!   period label it was asked about, never anything else.

pub mod listing;
pub mod postgres;

use std::path::{Path, PathBuf};

use crate::Period;

/// Where one tenant's report files are kept. Errors are the operator's
/// sentence (what failed, where).
pub trait Shelf {
    /// Whether `name` (`2026-11.json`, `2026-11.ja.pdf`, …) is kept.
    fn has(&self, name: &str) -> Result<bool, String>;
    /// Keeps `bytes` as `name`; returns where, for the log, or `None`
    /// when another process kept that file first.
    fn put(&self, name: &str, bytes: &[u8]) -> Result<Option<PathBuf>, String>;
    /// Deletes the files of every period `expired` says is past keeping;
    /// returns where each was.
    fn delete_expired(&self, expired: &dyn Fn(&Period) -> bool) -> Result<Vec<PathBuf>, String>;
    /// Marks the set of `label` to be mailed; `false` when this shelf
    /// does not mail.
    fn mark_for_mail(&self, label: &str) -> Result<bool, String>;
}

/// The period a report file belongs to: the name up to its first dot.
pub(crate) fn period_of(name: &str) -> Option<Period> {
    if name.starts_with('.') {
        return None;
    }
    Period::parse(name.split('.').next()?).ok()
}

/// The embedded SOC's directory of one tenant's reports.
pub struct Dir(pub PathBuf);

/// Writes `bytes` to `path` whole or not at all.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".report")
        .suffix(".part")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

impl Shelf for Dir {
    fn has(&self, name: &str) -> Result<bool, String> {
        Ok(self.0.join(name).exists())
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<Option<PathBuf>, String> {
        std::fs::create_dir_all(&self.0)
            .map_err(|e| format!("creating {}: {e}", self.0.display()))?;
        let path = self.0.join(name);
        write_atomic(&path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(Some(path))
    }

    fn delete_expired(&self, expired: &dyn Fn(&Period) -> bool) -> Result<Vec<PathBuf>, String> {
        let Ok(entries) = std::fs::read_dir(&self.0) else {
            return Ok(Vec::new());
        };
        let mut deleted = Vec::new();
        for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
            let Some(period) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(period_of)
            else {
                continue;
            };
            if expired(&period) {
                std::fs::remove_file(&path)
                    .map_err(|e| format!("deleting the expired report {}: {e}", path.display()))?;
                deleted.push(path);
            }
        }
        Ok(deleted)
    }

    fn mark_for_mail(&self, label: &str) -> Result<bool, String> {
        self.put(&format!("{label}.mail-pending"), b"")?;
        Ok(true)
    }
}
