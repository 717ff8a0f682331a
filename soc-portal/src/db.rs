//! The portal's own database, `ROOT/portal.db`: users and their tenants,
//! sessions (hashed ids only), the audit log, the alert workflow and login
//! attempts.
//!
//! Guarantees: the schema is created or brought up to date at open
//! (`PRAGMA user_version`); every statement elsewhere binds its values
//! (never formats them into SQL); one connection behind a mutex, used from
//! blocking threads only. It never touches a tenant's event log or `soc.db`.
//!
//! Secrets at rest: TOTP secrets are sealed ([`crate::seal`]) under the key
//! in `portal-totp.key` beside this file; schema 2 seals the clear secrets an
//! older version stored. `secure_delete` is on, and the migration
//! checkpoints and truncates the WAL, so an overwritten clear secret leaves
//! no copy in free space, free pages or the WAL.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;

use crate::seal::SealKey;

/// File name inside the store root.
pub const FILE: &str = "portal.db";

/// The schema version this build writes.
pub const VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    role           TEXT NOT NULL,
    password       TEXT NOT NULL,          -- argon2id PHC string
    totp_secret    TEXT NOT NULL,          -- sealed (seal.rs): xc20p1:base64
    totp_required  INTEGER NOT NULL,
    totp_last_step INTEGER NOT NULL DEFAULT 0, -- a code is accepted once
    lang           TEXT NOT NULL DEFAULT 'en',
    time_zone      TEXT NOT NULL DEFAULT 'UTC',
    disabled       INTEGER NOT NULL DEFAULT 0,
    must_change    INTEGER NOT NULL DEFAULT 1, -- the one-time password is still set
    created_us     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS user_tenants (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    tenant  TEXT NOT NULL,
    PRIMARY KEY (user_id, tenant)
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash      TEXT PRIMARY KEY,          -- SHA-256 of the cookie's id
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    stage        TEXT NOT NULL,             -- 'totp' (password ok) or 'full'
    csrf         TEXT NOT NULL,             -- '' since schema 2 (derived from the id, session.rs)
    created_us   INTEGER NOT NULL,
    last_seen_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id      INTEGER PRIMARY KEY,
    at_us   INTEGER NOT NULL,
    user    TEXT NOT NULL,
    tenant  TEXT,
    action  TEXT NOT NULL,
    detail  TEXT NOT NULL,
    remote  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_by_tenant ON audit (tenant, id);
CREATE TABLE IF NOT EXISTS alert_state (
    tenant   TEXT NOT NULL,
    event_id INTEGER NOT NULL,             -- the alert's id in the tenant's log
    state    TEXT NOT NULL,
    by_user  TEXT NOT NULL,
    at_us    INTEGER NOT NULL,
    PRIMARY KEY (tenant, event_id)
);
CREATE TABLE IF NOT EXISTS alert_comments (
    id       INTEGER PRIMARY KEY,
    tenant   TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    user     TEXT NOT NULL,
    at_us    INTEGER NOT NULL,
    text     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS comments_by_alert ON alert_comments (tenant, event_id);
CREATE TABLE IF NOT EXISTS login_attempts (
    id     INTEGER PRIMARY KEY,
    name   TEXT NOT NULL,
    remote TEXT NOT NULL,
    at_us  INTEGER NOT NULL,
    ok     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_by_name ON login_attempts (name, at_us);
CREATE INDEX IF NOT EXISTS attempts_by_remote ON login_attempts (remote, at_us);
";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "{path} was written by a newer owlet-soc (schema {found}, this one knows {known}); upgrade owlet-soc"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(transparent)]
    Key(#[from] crate::seal::SealError),
}

/// The open portal database.
pub struct Db {
    conn: Mutex<Connection>,
    path: PathBuf,
    key: SealKey,
}

/// The locked connection with the key of the sealed secrets (a
/// [`Connection`] by `Deref`).
pub struct Conn<'a> {
    conn: MutexGuard<'a, Connection>,
    key: &'a SealKey,
}

impl Conn<'_> {
    /// The key TOTP secrets are sealed with.
    pub fn key(&self) -> &SealKey {
        self.key
    }
}

impl std::ops::Deref for Conn<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl Db {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let at = |source| DbError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(at)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(at)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(at)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(at)?;
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(at)?;
        if found > VERSION {
            return Err(DbError::TooNew {
                path: path.to_path_buf(),
                found,
                known: VERSION,
            });
        }
        // Deleted or overwritten content is zeroed, not left in free space.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(at)?;
        conn.execute_batch(SCHEMA).map_err(at)?;
        let sealed_exist: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM users WHERE substr(totp_secret, 1, 7) = ?1)",
                [crate::seal::PREFIX],
                |r| r.get(0),
            )
            .map_err(at)?;
        let key = SealKey::load_or_create(&crate::seal::key_path(path), sealed_exist)?;
        seal_clear_secrets(&conn, &key).map_err(at)?;
        conn.pragma_update(None, "user_version", VERSION)
            .map_err(at)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            key,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection (blocking threads only).
    pub fn lock(&self) -> Conn<'_> {
        // A panic while holding it leaves a consistent SQLite connection
        // (statements are transactional), so a poisoned lock is usable.
        Conn {
            conn: self.conn.lock().unwrap_or_else(|e| e.into_inner()),
            key: &self.key,
        }
    }

    /// The key file of the sealed secrets.
    pub fn key_path(&self) -> &Path {
        self.key.path()
    }

    /// Wraps a rusqlite error with this file's path.
    pub fn err(&self, source: rusqlite::Error) -> DbError {
        DbError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

/// Schema 2: seals every clear TOTP secret (of schema 1) and forgets the
/// stored CSRF tokens (now derived), then moves the result into the main
/// file and empties the WAL, so no clear copy stays.
fn seal_clear_secrets(conn: &Connection, key: &SealKey) -> rusqlite::Result<()> {
    let clear: Vec<(i64, String)> = conn
        .prepare("SELECT id, totp_secret FROM users WHERE substr(totp_secret, 1, 7) != ?1")?
        .query_map([crate::seal::PREFIX], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let stored_csrf: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sessions WHERE csrf != '')",
        [],
        |r| r.get(0),
    )?;
    if clear.is_empty() && !stored_csrf {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    tx.execute("UPDATE sessions SET csrf = '' WHERE csrf != ''", [])?;
    for (id, secret) in &clear {
        tx.execute(
            "UPDATE users SET totp_secret = ?2 WHERE id = ?1",
            rusqlite::params![id, key.seal(*id, secret)],
        )?;
    }
    tx.commit()?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    conn.execute_batch("VACUUM")?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// Now, UTC µs.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
