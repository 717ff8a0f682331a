//! Sessions: a random 256-bit id in a cookie, stored only as its SHA-256.
//!
//! Guarantees:
//! * a login always creates a new id (a cookie the browser brought is
//!   never promoted: session fixation), and the TOTP step replaces the
//!   half-way session with another new id;
//! * a session unused for the idle time is gone at its next use;
//! * each session has its own CSRF token, compared in constant time and
//!   derived from the session's id (SHA-256 of a CSRF label and the id),
//!   so it is never stored: the database holds neither (only the id's
//!   own SHA-256, from which the token cannot be computed);
//! * the cookie is `__Host-` prefixed, `Secure; HttpOnly; SameSite=Strict; Path=/`.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::auth;
use crate::db::now_us;

/// The session cookie (`__Host-`: Secure, Path=/, no Domain, by rule of the browser).
pub const COOKIE: &str = "__Host-owlet_session";
/// The pre-login CSRF cookie (double submit on the login form).
pub const LOGIN_COOKIE: &str = "__Host-owlet_login";

/// How far a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Password accepted, TOTP code pending.
    Totp,
    /// Logged in.
    Full,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Totp => "totp",
            Stage::Full => "full",
        }
    }
}

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    pub id_hash: String,
    pub user_id: i64,
    pub stage: Stage,
    pub csrf: String,
}

/// Creates a session for `user_id`; returns the cookie's id.
pub fn create(db: &Connection, user_id: i64, stage: Stage) -> rusqlite::Result<String> {
    let id = auth::token();
    let now = now_us();
    db.execute(
        "INSERT INTO sessions (id_hash, user_id, stage, csrf, created_us, last_seen_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![auth::sha256_hex(&id), user_id, stage.name(), "", now],
    )?;
    Ok(id)
}

/// The session of cookie value `id`, touched; `None` if unknown, expired
/// (and then deleted) or its user is disabled.
pub fn lookup(db: &Connection, id: &str, idle: Duration) -> rusqlite::Result<Option<Session>> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let hash = auth::sha256_hex(id);
    let now = now_us();
    let row = db
        .query_row(
            "SELECT s.user_id, s.stage, s.last_seen_us, u.disabled
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?1",
            [&hash],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, bool>(3)?,
                ))
            },
        )
        .optional()?;
    let Some((user_id, stage, last_seen, disabled)) = row else {
        return Ok(None);
    };
    // A half-way (password only) session lasts five minutes at most.
    let idle = if stage == "full" {
        idle
    } else {
        idle.min(Duration::from_secs(300))
    };
    if disabled || now - last_seen > idle.as_micros() as i64 {
        db.execute("DELETE FROM sessions WHERE id_hash = ?1", [&hash])?;
        return Ok(None);
    }
    db.execute(
        "UPDATE sessions SET last_seen_us = ?2 WHERE id_hash = ?1",
        params![hash, now],
    )?;
    Ok(Some(Session {
        id_hash: hash,
        user_id,
        stage: if stage == "full" {
            Stage::Full
        } else {
            Stage::Totp
        },
        csrf: csrf_of(id),
    }))
}

/// The CSRF token of the session whose cookie holds `id`.
fn csrf_of(id: &str) -> String {
    auth::sha256_hex(&format!("owlet-portal csrf {id}"))
}

/// Whether the session with hash `id_hash` is still live, without
/// touching it (a live page's stream must not keep a session alive).
pub fn alive(db: &Connection, id_hash: &str, idle: Duration) -> rusqlite::Result<bool> {
    db.prepare(
        "SELECT 1 FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.id_hash = ?1 AND s.last_seen_us >= ?2 AND u.disabled = 0",
    )?
    .exists(params![id_hash, now_us() - idle.as_micros() as i64])
}

/// Ends the session with hash `id_hash`.
pub fn delete(db: &Connection, id_hash: &str) -> rusqlite::Result<()> {
    db.execute("DELETE FROM sessions WHERE id_hash = ?1", [id_hash])?;
    Ok(())
}

/// Deletes sessions idle longer than `idle` (housekeeping).
pub fn sweep(db: &Connection, idle: Duration) -> rusqlite::Result<usize> {
    db.execute(
        "DELETE FROM sessions WHERE last_seen_us < ?1",
        [now_us() - idle.as_micros() as i64],
    )
}

/// The `Set-Cookie` value for session id `id`.
pub fn cookie(id: &str) -> String {
    format!("{COOKIE}={id}; Secure; HttpOnly; SameSite=Strict; Path=/")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Constant-time equality of two tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && !a.is_empty()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
