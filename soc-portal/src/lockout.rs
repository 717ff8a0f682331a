//! Login rate limiting and lockout.
//!
//! A name is locked after `lockout_after` failures (password or TOTP)
//! within `lockout_for` since its last successful login; an address after
//! four times as many failures over all names (guessing many names from
//! one place). While locked nothing is verified, so a locked account
//! cannot be probed. Every attempt is kept in `login_attempts`.

use std::time::Duration;

use rusqlite::{Connection, params};

use crate::db::now_us;

/// The limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub after: u32,
    pub window: Duration,
}

/// `Some(µs until it ends)` when `name` or `remote` is locked now.
pub fn locked(
    db: &Connection,
    name: &str,
    remote: &str,
    limits: Limits,
) -> rusqlite::Result<Option<i64>> {
    let now = now_us();
    let since = now - limits.window.as_micros() as i64;
    let (by_name, oldest_name): (i64, Option<i64>) = db.query_row(
        "SELECT COUNT(*), MIN(at_us) FROM login_attempts
         WHERE name = ?1 AND ok = 0 AND at_us >= ?2
           AND at_us > COALESCE((SELECT MAX(at_us) FROM login_attempts WHERE name = ?1 AND ok = 1), 0)",
        params![name, since],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (by_remote, oldest_remote): (i64, Option<i64>) = db.query_row(
        "SELECT COUNT(*), MIN(at_us) FROM login_attempts WHERE remote = ?1 AND remote != '' AND ok = 0 AND at_us >= ?2",
        params![remote, since],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let window = limits.window.as_micros() as i64;
    let until = |oldest: Option<i64>| oldest.map_or(window, |t| t + window - now).max(1);
    Ok(if by_name >= limits.after as i64 {
        Some(until(oldest_name))
    } else if by_remote >= 4 * limits.after as i64 {
        Some(until(oldest_remote))
    } else {
        None
    })
}

/// Records one attempt.
pub fn attempt(db: &Connection, name: &str, remote: &str, ok: bool) -> rusqlite::Result<()> {
    db.execute(
        "INSERT INTO login_attempts (name, remote, at_us, ok) VALUES (?1, ?2, ?3, ?4)",
        params![name, remote, now_us(), ok],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_and_a_success_resets() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("p.db")).unwrap();
        let c = db.lock();
        let limits = Limits {
            after: 5,
            window: Duration::from_secs(900),
        };
        for _ in 0..4 {
            attempt(&c, "ann", "10.0.0.1", false).unwrap();
        }
        assert_eq!(locked(&c, "ann", "10.0.0.1", limits).unwrap(), None);
        attempt(&c, "ann", "10.0.0.1", false).unwrap();
        assert!(locked(&c, "ann", "10.0.0.2", limits).unwrap().is_some());
        assert_eq!(locked(&c, "bob", "10.0.0.2", limits).unwrap(), None);
    }
}
