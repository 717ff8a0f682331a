//! Consumers' durable cursors: each consumer (a SIEM output, the notifier,
//! the rollups) keeps its own position in each tenant's log, with its
//! delivery figures for `owlet-soc status`.
//!
//! Guarantees: a position only moves forward, and moves after the consumer
//! says the events are delivered, so after a crash a consumer resumes at or
//! before where it stopped (at-least-once); consumers dedupe on
//! [`crate::StoredEvent::event_id`].

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::error::{AtPath, Result};
use crate::time::micros;

/// One consumer's position in one tenant's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Position {
    pub consumer: String,
    pub tenant: String,
    pub last_id: i64,
    pub delivered: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    pub updated_us: i64,
}

pub struct Cursors {
    db: Connection,
    path: PathBuf,
}

impl Cursors {
    /// Opens (creating) the cursor file `ROOT/cursors.db`.
    pub fn open(root: &Path) -> Result<Self> {
        let path = root.join("cursors.db");
        let db = Connection::open(&path).at(&path)?;
        db.pragma_update(None, "journal_mode", "WAL").at(&path)?;
        db.pragma_update(None, "synchronous", "FULL").at(&path)?;
        db.busy_timeout(Duration::from_secs(5)).at(&path)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS cursors (
                consumer   TEXT NOT NULL,
                tenant     TEXT NOT NULL,
                last_id    INTEGER NOT NULL DEFAULT 0,
                delivered  INTEGER NOT NULL DEFAULT 0,
                errors     INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                updated_us INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (consumer, tenant)
            )",
        )
        .at(&path)?;
        Ok(Self { db, path })
    }

    /// The cursor file for reading, if a consumer ever wrote it; creates
    /// nothing (the read-side commands run as any user).
    pub fn existing(root: &Path) -> Result<Option<Self>> {
        let path = root.join("cursors.db");
        if !path.exists() {
            return Ok(None);
        }
        let db = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .at(&path)?;
        db.busy_timeout(Duration::from_secs(5)).at(&path)?;
        Ok(Some(Self { db, path }))
    }

    /// The consumer's position in the tenant's log (0: from the start).
    pub fn get(&self, consumer: &str, tenant: &str) -> Result<i64> {
        Ok(self
            .db
            .query_row(
                "SELECT last_id FROM cursors WHERE consumer = ?1 AND tenant = ?2",
                params![consumer, tenant],
                |r| r.get(0),
            )
            .optional()
            .at(&self.path)?
            .unwrap_or(0))
    }

    /// Records that the consumer delivered `delivered` events up to id
    /// `last_id` (durable on return). Never moves a position back.
    pub fn advance(
        &self,
        consumer: &str,
        tenant: &str,
        last_id: i64,
        delivered: u64,
    ) -> Result<()> {
        self.db
            .execute(
                "INSERT INTO cursors (consumer, tenant, last_id, delivered, updated_us)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (consumer, tenant) DO UPDATE SET
                    last_id = MAX(last_id, ?3), delivered = delivered + ?4,
                    last_error = NULL, updated_us = ?5",
                params![
                    consumer,
                    tenant,
                    last_id,
                    delivered as i64,
                    micros(SystemTime::now())
                ],
            )
            .at(&self.path)?;
        Ok(())
    }

    /// Records a failed delivery attempt (the position stays).
    pub fn failed(&self, consumer: &str, tenant: &str, error: &str) -> Result<()> {
        self.db
            .execute(
                "INSERT INTO cursors (consumer, tenant, errors, last_error, updated_us)
                 VALUES (?1, ?2, 1, ?3, ?4)
                 ON CONFLICT (consumer, tenant) DO UPDATE SET
                    errors = errors + 1, last_error = ?3, updated_us = ?4",
                params![consumer, tenant, error, micros(SystemTime::now())],
            )
            .at(&self.path)?;
        Ok(())
    }

    /// Every position, by consumer then tenant.
    pub fn all(&self) -> Result<Vec<Position>> {
        self.db
            .prepare(
                "SELECT consumer, tenant, last_id, delivered, errors, last_error, updated_us
                 FROM cursors ORDER BY consumer, tenant",
            )
            .at(&self.path)?
            .query_map([], |r| {
                Ok(Position {
                    consumer: r.get(0)?,
                    tenant: r.get(1)?,
                    last_id: r.get(2)?,
                    delivered: r.get::<_, i64>(3)? as u64,
                    errors: r.get::<_, i64>(4)? as u64,
                    last_error: r.get(5)?,
                    updated_us: r.get(6)?,
                })
            })
            .at(&self.path)?
            .collect::<rusqlite::Result<_>>()
            .at(&self.path)
    }

    /// Forgets every position in `tenant` (its contract ended).
    pub fn forget_tenant(&self, tenant: &str) -> Result<()> {
        self.db
            .execute("DELETE FROM cursors WHERE tenant = ?1", params![tenant])
            .at(&self.path)?;
        Ok(())
    }
}
