//! The serving receiver's figures, for `owlet-soc status` (a separate
//! process): written every few seconds to `ROOT/receiver.json`, atomically
//! (a temporary file renamed over it), so a reader never sees half a file.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// How often the file is rewritten; a file older than three periods means
/// the receiver is not running.
pub const EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiverStatus {
    pub pid: u32,
    pub version: String,
    pub started: String,
    pub updated: String,
    pub agents_connected: u64,
    pub events_stored_since_start: u64,
    /// Refused connections since start, by class.
    pub connections_refused: std::collections::BTreeMap<String, u64>,
}

pub fn path(root: &Path) -> PathBuf {
    root.join("receiver.json")
}

pub fn write(root: &Path, status: &ReceiverStatus) -> std::io::Result<()> {
    let final_path = path(root);
    let tmp = root.join(".receiver.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(status)?)?;
    std::fs::rename(tmp, final_path)
}

/// The last status written, and whether it is fresh (the receiver runs).
pub fn read(root: &Path) -> Option<(ReceiverStatus, bool)> {
    let file = path(root);
    let status: ReceiverStatus = serde_json::from_slice(&std::fs::read(&file).ok()?).ok()?;
    let fresh = std::fs::metadata(&file)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < EVERY * 3);
    Some((status, fresh))
}
