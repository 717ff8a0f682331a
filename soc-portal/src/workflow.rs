//! The analysts' workflow on alerts: a state per alert (by its id in the
//! tenant's log) and comments.
//!
//! States: `new` (no row) → `acknowledged` → `escalated` / `resolved`;
//! `escalated` → `resolved`. Guarantees: [`transition`] refuses any other
//! move with a message naming the allowed ones; every row carries its
//! tenant, and reads take the tenant, so one tenant's workflow never shows
//! in another's pages.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use crate::db::now_us;

pub const STATES: [&str; 4] = ["new", "acknowledged", "escalated", "resolved"];

/// Moves allowed from each state.
pub fn next_states(state: &str) -> &'static [&'static str] {
    match state {
        "new" => &["acknowledged", "escalated", "resolved"],
        "acknowledged" => &["escalated", "resolved"],
        "escalated" => &["resolved"],
        _ => &[],
    }
}

/// The state of alert `id` of `tenant` (`new` when never touched).
pub fn state(db: &Connection, tenant: &str, id: i64) -> rusqlite::Result<String> {
    Ok(db
        .query_row(
            "SELECT state FROM alert_state WHERE tenant = ?1 AND event_id = ?2",
            params![tenant, id],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or_else(|| "new".to_string()))
}

/// The states of `tenant`'s touched alerts.
pub fn states(db: &Connection, tenant: &str) -> rusqlite::Result<HashMap<i64, String>> {
    db.prepare("SELECT event_id, state FROM alert_state WHERE tenant = ?1")?
        .query_map([tenant], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// Moves alert `id` to `to`; `Err` says which moves are allowed.
pub fn transition(
    db: &Connection,
    tenant: &str,
    id: i64,
    to: &str,
    user: &str,
) -> Result<String, String> {
    let from = state(db, tenant, id).map_err(|e| e.to_string())?;
    if !next_states(&from).contains(&to) {
        let allowed = next_states(&from);
        return Err(format!(
            "an alert in state {from} can move to {}",
            if allowed.is_empty() {
                "no other state".to_string()
            } else {
                allowed.join(" or ")
            }
        ));
    }
    db.execute(
        "INSERT INTO alert_state (tenant, event_id, state, by_user, at_us) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (tenant, event_id) DO UPDATE SET state = ?3, by_user = ?4, at_us = ?5",
        params![tenant, id, to, user, now_us()],
    )
    .map_err(|e| e.to_string())?;
    Ok(from)
}

/// One comment.
#[derive(Debug, Clone)]
pub struct Comment {
    pub user: String,
    pub at_us: i64,
    pub text: String,
}

pub fn comment(
    db: &Connection,
    tenant: &str,
    id: i64,
    user: &str,
    text: &str,
) -> rusqlite::Result<()> {
    db.execute(
        "INSERT INTO alert_comments (tenant, event_id, user, at_us, text) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![tenant, id, user, now_us(), text],
    )?;
    Ok(())
}

pub fn comments(db: &Connection, tenant: &str, id: i64) -> rusqlite::Result<Vec<Comment>> {
    db.prepare(
        "SELECT user, at_us, text FROM alert_comments WHERE tenant = ?1 AND event_id = ?2 ORDER BY id",
    )?
    .query_map(params![tenant, id], |r| {
        Ok(Comment {
            user: r.get(0)?,
            at_us: r.get(1)?,
            text: r.get(2)?,
        })
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_forward_moves() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("p.db")).unwrap();
        let c = db.lock();
        assert_eq!(state(&c, "acme", 7).unwrap(), "new");
        transition(&c, "acme", 7, "acknowledged", "ann").unwrap();
        let e = transition(&c, "acme", 7, "new", "ann").unwrap_err();
        assert!(e.contains("escalated or resolved"), "{e}");
        transition(&c, "acme", 7, "resolved", "ann").unwrap();
        assert!(transition(&c, "acme", 7, "escalated", "ann").is_err());
        assert_eq!(state(&c, "beta", 7).unwrap(), "new");
    }
}
