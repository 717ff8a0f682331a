//! Retention by period and by capacity, whichever limit is hit first.
//!
//! Guarantees:
//! * only whole partitions (days of arrival) are deleted, oldest first;
//! * the partition receiving today's events is never deleted, so a limit
//!   too small for one day's data deletes everything older and stops;
//! * every deletion is recorded in `deletions` (partition, day, id range,
//!   events, bytes before and after, reason) in the transaction that
//!   deletes, so a report can say what was removed and why;
//! * a check's latest state goes with its latest result, in the same
//!   transaction (a check that stopped reporting leaves the check board
//!   when its last result expires); rollups stay (`SCHEMA.md` says why);
//! * freed pages are returned to the filesystem (`incremental_vacuum`).

use std::time::{Duration, SystemTime};

use std::path::Path;

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use crate::error::{AtPath, Result};
use crate::tenant::{TenantLog, partitions, usage};
use crate::time::{micros, utc_day};
use crate::{latest, schema};

/// A tenant's retention limits; `None` is no limit of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Policy {
    /// Keep partitions whose day ended less than this long ago.
    pub max_age: Option<Duration>,
    /// Keep at most this many bytes in use.
    pub max_bytes: Option<u64>,
}

/// One partition retention deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deletion {
    pub partition: String,
    pub day: String,
    pub first_id: i64,
    pub last_id: i64,
    pub events: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// `max_age` or `max_bytes`.
    pub reason: &'static str,
}

impl TenantLog {
    /// Deletes the oldest partitions beyond `policy` at `now`.
    pub fn enforce(&mut self, policy: &Policy, now: SystemTime) -> Result<Vec<Deletion>> {
        let path = self.path.clone();
        let today = utc_day(now);
        let mut done = Vec::new();
        loop {
            let all = partitions(&self.db).at(&path)?;
            let Some((name, day)) = all.first().cloned() else {
                break;
            };
            if day >= today {
                break;
            }
            let expired = policy.max_age.is_some_and(|age| {
                // The day ended at the start of the next day.
                let end = day_end(&day);
                end.is_some_and(|end| now.duration_since(end).unwrap_or_default() > age)
            });
            self.checkpoint()?;
            let before = usage(&self.db, &path)?.used_bytes;
            let over = policy.max_bytes.is_some_and(|max| before > max);
            let reason = match (expired, over) {
                (true, _) => "max_age",
                (false, true) => "max_bytes",
                (false, false) => break,
            };
            let tx = self.db.transaction().at(&path)?;
            let (first_id, last_id, events): (i64, i64, i64) = tx
                .query_row(
                    "SELECT first_id, last_id, events FROM partitions WHERE name = ?1",
                    params![name],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .at(&path)?;
            tx.execute_batch(&format!("DROP TABLE {name}")).at(&path)?;
            tx.execute("DELETE FROM partitions WHERE name = ?1", params![name])
                .at(&path)?;
            let rest = partitions(&tx).at(&path)?;
            schema::rebuild_view(&tx, &rest).at(&path)?;
            latest::forget(&tx, first_id, last_id).at(&path)?;
            let deletion = Deletion {
                partition: name.clone(),
                day: day.clone(),
                first_id,
                last_id,
                events: events as u64,
                bytes_before: before,
                bytes_after: 0,
                reason,
            };
            tx.execute(
                "INSERT INTO deletions (at_us, partition, day, first_id, last_id, events, bytes_before, bytes_after, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8)",
                params![micros(now), name, day, first_id, last_id, events, before as i64, reason],
            )
            .at(&path)?;
            tx.commit().at(&path)?;
            self.db
                .execute_batch("PRAGMA incremental_vacuum")
                .at(&path)?;
            self.checkpoint()?;
            let after = usage(&self.db, &path)?.used_bytes;
            self.db
                .execute(
                    "UPDATE deletions SET bytes_after = ?1 WHERE id = last_insert_rowid()",
                    params![after as i64],
                )
                .at(&path)?;
            tracing::info!(
                partition = %name, %day, events, bytes_before = before, bytes_after = after, reason,
                "retention deleted a partition"
            );
            done.push(Deletion {
                bytes_after: after,
                ..deletion
            });
        }
        Ok(done)
    }

    /// Every deletion ever recorded, oldest first.
    pub fn deletions(&self) -> Result<Vec<Deletion>> {
        let mut all = deletions(&self.db, &self.path, i64::MAX)?;
        all.reverse();
        Ok(all)
    }
}

/// The latest `limit` deletions recorded in the tenant database `db`,
/// newest first.
pub(crate) fn deletions(db: &Connection, path: &Path, limit: i64) -> Result<Vec<Deletion>> {
    db.prepare(
        "SELECT partition, day, first_id, last_id, events, bytes_before, bytes_after, reason
         FROM deletions ORDER BY id DESC LIMIT ?1",
    )
    .at(path)?
    .query_map(params![limit], |r| {
        let reason: String = r.get(7)?;
        Ok(Deletion {
            partition: r.get(0)?,
            day: r.get(1)?,
            first_id: r.get(2)?,
            last_id: r.get(3)?,
            events: r.get::<_, i64>(4)? as u64,
            bytes_before: r.get::<_, i64>(5)? as u64,
            bytes_after: r.get::<_, i64>(6)? as u64,
            reason: if reason == "max_age" {
                "max_age"
            } else {
                "max_bytes"
            },
        })
    })
    .at(path)?
    .collect::<rusqlite::Result<_>>()
    .at(path)
}

/// When the UTC day `YYYY-MM-DD` ends.
fn day_end(day: &str) -> Option<SystemTime> {
    let date = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    let next = date.succ_opt()?.and_hms_opt(0, 0, 0)?.and_utc();
    Some(SystemTime::from(next))
}
