//! Portal users: add, list, reset a password, disable, assign tenants,
//! preferences. Used by `owlet-soc user ...` and the admin pages alike.
//!
//! Guarantees: a customer role holds exactly one tenant and an analyst at
//! least one (an admin none: it reaches all); every name, tenant, language
//! and zone is checked before it is stored; a new or reset password is
//! random, shown once and must be changed at the next login; every user
//! has a TOTP secret, required for MSSP roles, stored only sealed
//! ([`crate::seal`], bound to the user's id): the functions that touch it
//! take the [`Conn`] that carries the key.

use rusqlite::{Connection, OptionalExtension, params};

use crate::auth;
use crate::db::{Conn, now_us};
use crate::i18n::Lang;
use crate::roles::{Role, Scope};

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0}")]
    Invalid(String),
    #[error("no user named \"{0}\" (owlet-soc user list shows them)")]
    Unknown(String),
    #[error("a user named \"{0}\" exists already")]
    Exists(String),
    #[error("portal database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error(transparent)]
    Seal(#[from] crate::seal::SealError),
}

/// What to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub role: Role,
    pub tenants: Vec<String>,
    pub lang: Lang,
    pub time_zone: String,
    /// Require TOTP of a customer role too (always on for MSSP roles).
    pub totp: bool,
}

/// What a new user (or a reset) is handed once.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub name: String,
    pub password: String,
    pub otpauth_uri: String,
    pub totp_required: bool,
}

/// A stored user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub tenants: Vec<String>,
    pub lang: Lang,
    pub time_zone: String,
    pub disabled: bool,
    pub must_change: bool,
    pub totp_required: bool,
}

impl User {
    pub fn scope(&self) -> Scope {
        Scope::of(self.role, self.tenants.clone())
    }
}

/// Checks a user name: 1–64 of letters, digits, `. _ - @`.
pub fn check_name(name: &str) -> Result<(), UserError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(UserError::Invalid(format!(
            "user name \"{name}\": use 1 to 64 letters, digits, '.', '_', '-' or '@'"
        )))
    }
}

/// Checks an IANA zone name.
pub fn check_zone(zone: &str) -> Result<(), UserError> {
    zone.parse::<chrono_tz::Tz>().map(|_| ()).map_err(|_| {
        UserError::Invalid(format!(
            "time zone \"{zone}\": not an IANA zone name (e.g. Asia/Tokyo, Europe/Berlin, UTC)"
        ))
    })
}

fn check_tenants(role: Role, tenants: &[String]) -> Result<(), UserError> {
    for t in tenants {
        owlet_tls::Identity::new(t.as_str(), "x")
            .map_err(|e| UserError::Invalid(format!("tenant \"{t}\": {e}")))?;
    }
    let n = tenants.len();
    match role {
        Role::MsspAdmin if n > 0 => Err(UserError::Invalid(
            "mssp-admin reaches every tenant: give no --tenant".into(),
        )),
        Role::MsspAnalyst if n == 0 => Err(UserError::Invalid(
            "mssp-analyst needs its tenants: --tenant T (repeatable)".into(),
        )),
        Role::CustomerAdmin | Role::CustomerViewer if n != 1 => Err(UserError::Invalid(format!(
            "{role} belongs to exactly one tenant: give one --tenant"
        ))),
        _ => Ok(()),
    }
}

/// Creates a user with a one-time password.
pub fn add(db: &Conn, new: &NewUser) -> Result<Credentials, UserError> {
    check_name(&new.name)?;
    check_zone(&new.time_zone)?;
    let mut tenants = new.tenants.clone();
    tenants.sort();
    tenants.dedup();
    check_tenants(new.role, &tenants)?;
    if find(db, &new.name)?.is_some() {
        return Err(UserError::Exists(new.name.clone()));
    }
    let password = auth::one_time_password();
    let hash = auth::hash_password(&password).map_err(UserError::Invalid)?;
    let secret = auth::new_totp_secret();
    let totp_required = new.role.is_mssp() || new.totp;
    // The sealed secret is bound to the id, known after the insert: the
    // row is written with an empty secret and sealed in the same
    // transaction (the clear secret never reaches the file).
    let tx = db.unchecked_transaction()?;
    tx.execute(
        "INSERT INTO users (name, role, password, totp_secret, totp_required, lang, time_zone, created_us)
         VALUES (?1, ?2, ?3, '', ?4, ?5, ?6, ?7)",
        params![
            new.name,
            new.role.name(),
            hash,
            totp_required,
            new.lang.code(),
            new.time_zone,
            now_us()
        ],
    )?;
    let id = tx.last_insert_rowid();
    tx.execute(
        "UPDATE users SET totp_secret = ?2 WHERE id = ?1",
        params![id, db.key().seal(id, &secret)],
    )?;
    for t in &tenants {
        tx.execute(
            "INSERT INTO user_tenants (user_id, tenant) VALUES (?1, ?2)",
            params![id, t],
        )?;
    }
    tx.commit()?;
    Ok(Credentials {
        name: new.name.clone(),
        password,
        otpauth_uri: auth::otpauth_uri(&secret, &new.name).map_err(UserError::Invalid)?,
        totp_required,
    })
}

const COLUMNS: &str =
    "id, name, role, lang, time_zone, disabled, must_change, totp_required FROM users";

fn user_row(db: &Connection, r: &rusqlite::Row) -> rusqlite::Result<User> {
    let id: i64 = r.get(0)?;
    let role: String = r.get(2)?;
    let lang: String = r.get(3)?;
    Ok(User {
        id,
        name: r.get(1)?,
        // A role this build does not know reads as the least one.
        role: Role::parse(&role).unwrap_or(Role::CustomerViewer),
        tenants: tenants_of(db, id)?,
        lang: Lang::parse(&lang),
        time_zone: r.get(4)?,
        disabled: r.get(5)?,
        must_change: r.get(6)?,
        totp_required: r.get(7)?,
    })
}

fn tenants_of(db: &Connection, id: i64) -> rusqlite::Result<Vec<String>> {
    db.prepare_cached("SELECT tenant FROM user_tenants WHERE user_id = ?1 ORDER BY tenant")?
        .query_map([id], |r| r.get(0))?
        .collect()
}

/// The user called `name`.
pub fn find(db: &Connection, name: &str) -> Result<Option<User>, UserError> {
    Ok(db
        .query_row(&format!("SELECT {COLUMNS} WHERE name = ?1"), [name], |r| {
            user_row(db, r)
        })
        .optional()?)
}

/// The user with `id`.
pub fn get(db: &Connection, id: i64) -> Result<Option<User>, UserError> {
    Ok(db
        .query_row(&format!("SELECT {COLUMNS} WHERE id = ?1"), [id], |r| {
            user_row(db, r)
        })
        .optional()?)
}

/// Every user, by name.
pub fn list(db: &Connection) -> Result<Vec<User>, UserError> {
    let mut stmt = db.prepare(&format!("SELECT {COLUMNS} ORDER BY name"))?;
    let rows = stmt.query_map([], |r| user_row(db, r))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A new one-time password for `name` (ends its sessions; unlocks nothing
/// else: a disabled user stays disabled).
pub fn reset_password(db: &Conn, name: &str) -> Result<Credentials, UserError> {
    let user = find(db, name)?.ok_or_else(|| UserError::Unknown(name.to_string()))?;
    let password = auth::one_time_password();
    let hash = auth::hash_password(&password).map_err(UserError::Invalid)?;
    db.execute(
        "UPDATE users SET password = ?2, must_change = 1 WHERE id = ?1",
        params![user.id, hash],
    )?;
    db.execute("DELETE FROM sessions WHERE user_id = ?1", [user.id])?;
    let (_, secret, _) = secrets(db, user.id)?;
    Ok(Credentials {
        name: user.name.clone(),
        password,
        otpauth_uri: auth::otpauth_uri(&secret, &user.name).map_err(UserError::Invalid)?,
        totp_required: user.totp_required,
    })
}

/// Sets a password the user chose (at least 12 characters).
pub fn set_password(db: &Connection, id: i64, password: &str) -> Result<(), UserError> {
    if password.chars().count() < 12 {
        return Err(UserError::Invalid(
            "the new password must have at least 12 characters".into(),
        ));
    }
    let hash = auth::hash_password(password).map_err(UserError::Invalid)?;
    db.execute(
        "UPDATE users SET password = ?2, must_change = 0 WHERE id = ?1",
        params![id, hash],
    )?;
    Ok(())
}

/// Disables `name` (or enables it again) and ends its sessions.
pub fn set_disabled(db: &Connection, name: &str, disabled: bool) -> Result<(), UserError> {
    let user = find(db, name)?.ok_or_else(|| UserError::Unknown(name.to_string()))?;
    db.execute(
        "UPDATE users SET disabled = ?2 WHERE id = ?1",
        params![user.id, disabled],
    )?;
    db.execute("DELETE FROM sessions WHERE user_id = ?1", [user.id])?;
    Ok(())
}

/// Replaces the tenants of `name` (checked against its role).
pub fn set_tenants(db: &Connection, name: &str, tenants: &[String]) -> Result<(), UserError> {
    let user = find(db, name)?.ok_or_else(|| UserError::Unknown(name.to_string()))?;
    let mut tenants = tenants.to_vec();
    tenants.sort();
    tenants.dedup();
    check_tenants(user.role, &tenants)?;
    db.execute("DELETE FROM user_tenants WHERE user_id = ?1", [user.id])?;
    for t in &tenants {
        db.execute(
            "INSERT INTO user_tenants (user_id, tenant) VALUES (?1, ?2)",
            params![user.id, t],
        )?;
    }
    Ok(())
}

/// Language and zone of user `id`.
pub fn set_preferences(db: &Connection, id: i64, lang: Lang, zone: &str) -> Result<(), UserError> {
    check_zone(zone)?;
    db.execute(
        "UPDATE users SET lang = ?2, time_zone = ?3 WHERE id = ?1",
        params![id, lang.code(), zone],
    )?;
    Ok(())
}

/// `(password hash, totp secret opened, last totp step)` of `id`, for login.
pub fn secrets(db: &Conn, id: i64) -> Result<(String, String, u64), UserError> {
    let (hash, sealed, last): (String, String, i64) = db.query_row(
        "SELECT password, totp_secret, totp_last_step FROM users WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let secret = db.key().open(id, &sealed)?;
    Ok((hash, secret, last as u64))
}

/// Records the TOTP step just used, so its code is not accepted again.
pub fn used_totp_step(db: &Connection, id: i64, step: u64) -> rusqlite::Result<()> {
    db.execute(
        "UPDATE users SET totp_last_step = ?2 WHERE id = ?1",
        params![id, step as i64],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, crate::db::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("portal.db")).unwrap();
        (dir, db)
    }

    fn new(name: &str, role: Role, tenants: &[&str]) -> NewUser {
        NewUser {
            name: name.into(),
            role,
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            lang: Lang::En,
            time_zone: "Asia/Tokyo".into(),
            totp: false,
        }
    }

    #[test]
    fn roles_hold_the_tenants_they_should() {
        let (_d, db) = db();
        let c = db.lock();
        assert!(add(&c, &new("a", Role::MsspAdmin, &["acme"])).is_err());
        assert!(add(&c, &new("b", Role::MsspAnalyst, &[])).is_err());
        assert!(add(&c, &new("c", Role::CustomerViewer, &["acme", "beta"])).is_err());
        assert!(add(&c, &new("d", Role::CustomerViewer, &["../x"])).is_err());
        let cred = add(&c, &new("e", Role::MsspAnalyst, &["acme", "beta"])).unwrap();
        assert!(cred.totp_required);
        assert!(cred.otpauth_uri.starts_with("otpauth://totp/"));
        let v = add(&c, &new("v", Role::CustomerViewer, &["acme"])).unwrap();
        assert!(!v.totp_required);
        assert!(matches!(
            add(&c, &new("v", Role::CustomerViewer, &["acme"])),
            Err(UserError::Exists(_))
        ));
        let e = find(&c, "e").unwrap().unwrap();
        assert_eq!(e.tenants, ["acme", "beta"]);
        assert!(e.must_change);
        let hash: String = c
            .query_row("SELECT password FROM users WHERE name = 'e'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(auth::verify_password(&cred.password, &hash));
        assert!(!hash.contains(&cred.password));
    }
}
