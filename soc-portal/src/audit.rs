//! The audit log: who logged in (or failed to), viewed, downloaded or
//! changed what, when and from where.
//!
//! Guarantees: entries are only appended (no update or delete exists in
//! this crate); an entry about a tenant carries that tenant, so a
//! customer-admin's view ([`list`] with `Some(tenant)`) holds only its own.

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::db::now_us;

/// One audit entry.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub id: i64,
    pub at_us: i64,
    pub user: String,
    pub tenant: Option<String>,
    pub action: String,
    pub detail: String,
    pub remote: String,
}

/// Appends an entry.
pub fn record(
    db: &Connection,
    user: &str,
    tenant: Option<&str>,
    action: &str,
    detail: &str,
    remote: &str,
) -> rusqlite::Result<()> {
    db.execute(
        "INSERT INTO audit (at_us, user, tenant, action, detail, remote) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![now_us(), user, tenant, action, detail, remote],
    )?;
    Ok(())
}

/// The newest `limit` entries, of one tenant or (`None`) of all.
pub fn list(db: &Connection, tenant: Option<&str>, limit: i64) -> rusqlite::Result<Vec<Entry>> {
    let mut stmt = db.prepare(
        "SELECT id, at_us, user, tenant, action, detail, remote FROM audit
         WHERE ?1 IS NULL OR tenant = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    stmt.query_map(params![tenant, limit], |r| {
        Ok(Entry {
            id: r.get(0)?,
            at_us: r.get(1)?,
            user: r.get(2)?,
            tenant: r.get(3)?,
            action: r.get(4)?,
            detail: r.get(5)?,
            remote: r.get(6)?,
        })
    })?
    .collect()
}
