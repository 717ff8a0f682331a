//! Nothing secret rests on disk in clear: TOTP secrets (and one-time
//! passwords, session ids, CSRF tokens) are planted
//! (users added through the admin page and the library, one reset, one
//! TOTP login), then every byte of every file under the store root
//! (portal.db, its -wal and -shm, the key file, the tenants' logs) is
//! searched for each secret, as base32 (either case) and as raw bytes.
//! Also: a schema-1 database with a clear secret is sealed at open and the
//! clear copy is gone from every file; the key file's checks.

mod common;

use std::path::Path;

use common::*;
use owlet_soc_portal::i18n::Lang;
use owlet_soc_portal::users::{self, NewUser};
use owlet_soc_portal::{Db, Role, auth, session};

fn raw(secret_b32: &str) -> Vec<u8> {
    totp_rs::Secret::try_from_base32(secret_b32)
        .unwrap()
        .as_ref()
        .to_vec()
}

/// Panics naming the file if any TOTP secret (`secrets`) or other secret
/// (`plain`: passwords, session ids, CSRF tokens) is in any file under `dir`.
fn assert_no_secret_under(dir: &Path, secrets: &[String], plain: &[String]) {
    let files = files_under(dir);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n == "portal.db"), "{names:?}");
    assert!(names.iter().any(|n| n == "portal-totp.key"), "{names:?}");
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for s in secrets {
            let needles = [
                s.as_bytes().to_vec(),
                s.to_lowercase().into_bytes(),
                // The first 16 characters: a prefix is a leak too.
                s.as_bytes()[..16].to_vec(),
                raw(s),
            ];
            for n in &needles {
                assert!(
                    !bytes.windows(n.len()).any(|w| w == n.as_slice()),
                    "a TOTP secret in clear in {}",
                    f.display()
                );
            }
        }
        for p in plain {
            assert!(
                !bytes.windows(p.len()).any(|w| w == p.as_bytes()),
                "a password, session id or CSRF token in clear in {}",
                f.display()
            );
        }
    }
}

fn secret_of_uri(uri: &str) -> String {
    let q = uri.split('?').nth(1).unwrap();
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "secret")
        .unwrap()
        .1
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_totp_secret_rests_in_clear_in_any_file() {
    let fx = Fixture::new();
    let mut secrets = Vec::new();
    let mut plain = Vec::new();
    // Through the admin page: the one-time page shows the URI.
    let (admin, csrf) = fx.login("mssp-admin");
    plain.push(admin.split('=').nth(1).unwrap().to_string());
    plain.push(csrf.clone());
    let shown = regex::Regex::new(r#"(otpauth://totp/[^<"]+)"#).unwrap();
    let password = regex::Regex::new(r#"class="secret">([A-Za-z0-9]{20})<"#).unwrap();
    for (name, role, tenants) in [
        ("web-ana", "mssp-analyst", "acme"),
        ("web-cust", "customer-admin", "acme"),
    ] {
        let (s, body, _) = fx
            .post(
                "/admin/users",
                Some(&admin),
                &format!(
                    "csrf={csrf}&name={name}&role={role}&tenants={tenants}&lang=en&time_zone=UTC&totp=1"
                ),
            )
            .await;
        assert_eq!(s, 200, "{body}");
        plain.push(password.captures(&body).unwrap()[1].to_string());
        let uri = shown.captures(&body).unwrap()[1].replace("&amp;", "&");
        secrets.push(secret_of_uri(&uri));
    }
    // Through the library (as `owlet-soc user add` does), a reset too.
    for role in Role::ALL {
        secrets.push(fx.user(&format!("lib-{role}"), role, "en"));
    }
    let reset = users::reset_password(&fx.state.0.db.lock(), "lib-mssp-analyst").unwrap();
    plain.push(reset.password.clone());
    assert_eq!(secret_of_uri(&reset.otpauth_uri), secrets[3]);
    // And every user of the fixture.
    {
        let c = fx.state.0.db.lock();
        for u in users::list(&c).unwrap() {
            let s = users::secrets(&c, u.id).unwrap().1;
            if !secrets.contains(&s) {
                secrets.push(s);
            }
        }
    }
    assert!(secrets.len() >= 10);
    // A TOTP login still works (the secret is opened to check the code).
    let secret = fx.user("totp-user", Role::MsspAnalyst, "en");
    secrets.push(secret.clone());
    let (c, id) = {
        let c = fx.state.0.db.lock();
        let id = users::find(&c, "totp-user").unwrap().unwrap().id;
        (session::create(&c, id, session::Stage::Totp).unwrap(), id)
    };
    let cookie = format!("{}={c}", session::COOKIE);
    plain.push(c.clone());
    let csrf = {
        let db = fx.state.0.db.lock();
        session::lookup(&db, &c, std::time::Duration::from_secs(60))
            .unwrap()
            .unwrap()
            .csrf
    };
    let now = (owlet_soc_portal::db::now_us() / 1_000_000) as u64;
    let code = auth::current_code(&secret, now).unwrap();
    let (s, _, r) = fx
        .post(
            "/login/totp",
            Some(&cookie),
            &format!("csrf={csrf}&code={code}"),
        )
        .await;
    assert_eq!(s, 303, "TOTP login of user {id}");
    plain.push(csrf.clone());
    // The full session the TOTP step gave, and its CSRF token.
    let full = set_session(&r).unwrap();
    let (s, body, _) = fx
        .get("/account", Some(&format!("{}={full}", session::COOKIE)))
        .await;
    assert_eq!(s, 200);
    let token = csrf_in(&body);
    plain.extend([full, token]);

    // While the portal runs (WAL not checkpointed) …
    assert_no_secret_under(fx.dir.path(), &secrets, &plain);
    // … and after it closed.
    let root = fx.dir.path().to_path_buf();
    let Fixture {
        dir, state, router, ..
    } = fx;
    drop(router);
    drop(state);
    assert_no_secret_under(&root, &secrets, &plain);
    drop(dir);
}

fn add_admin(c: &owlet_soc_portal::db::Conn, name: &str) {
    let new = NewUser {
        name: name.into(),
        role: Role::MsspAdmin,
        tenants: vec![],
        lang: Lang::En,
        time_zone: "UTC".into(),
        totp: true,
    };
    users::add(c, &new).unwrap();
}

const OLD_CSRF: &str = "5eb5c0ffee5eb5c0ffee5eb5c0ffee5eb5c0ffee5eb5c0ffee5eb5c0ffee5eb5";

#[test]
fn clear_secrets_of_schema_1_are_sealed_at_open_and_leave_no_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portal.db");
    let clear = auth::new_totp_secret();
    {
        let db = Db::open(&path).unwrap();
        let c = db.lock();
        add_admin(&c, "old");
        // What schema 1 stored: the base32 secret itself, and CSRF tokens.
        c.execute("UPDATE users SET totp_secret = ?1", [&clear])
            .unwrap();
        c.execute(
            "INSERT INTO sessions (id_hash, user_id, stage, csrf, created_us, last_seen_us)
             SELECT 'h', id, 'full', ?1, 0, 0 FROM users",
            [OLD_CSRF],
        )
        .unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes.windows(clear.len()).any(|w| w == clear.as_bytes()),
        "the planted clear secret is on disk before the migration"
    );
    let db = Db::open(&path).unwrap();
    let c = db.lock();
    let id = users::find(&c, "old").unwrap().unwrap().id;
    assert_eq!(users::secrets(&c, id).unwrap().1, clear);
    let stored: String = c
        .query_row("SELECT totp_secret FROM users WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(
        stored.starts_with(owlet_soc_portal::seal::PREFIX),
        "{stored}"
    );
    drop(c);
    let csrf = [OLD_CSRF.to_string()];
    assert_no_secret_under(dir.path(), std::slice::from_ref(&clear), &csrf);
    drop(db);
    assert_no_secret_under(dir.path(), &[clear], &csrf);
}

#[test]
fn the_key_file_is_checked_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portal.db");
    let key = dir.path().join("portal-totp.key");
    {
        let db = Db::open(&path).unwrap();
        assert_eq!(db.key_path(), key);
        add_admin(&db.lock(), "a");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(std::fs::metadata(&key).unwrap().len(), 32);
    let saved = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    let e = Db::open(&path).err().unwrap().to_string();
    assert!(
        e.contains("portal-totp.key") && e.contains("restore"),
        "{e}"
    );
    assert!(!key.exists(), "no new key over sealed secrets");
    std::fs::write(&key, &saved).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let e = Db::open(&path).err().unwrap().to_string();
    assert!(e.contains("chmod 600"), "{e}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let db = Db::open(&path).unwrap();
    let c = db.lock();
    let id = users::find(&c, "a").unwrap().unwrap().id;
    assert!(users::secrets(&c, id).is_ok());
}
