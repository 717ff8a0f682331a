//! Test users, root checks and small helpers for the operator-facing tests
//! (service user, `hw-profile show`).

use std::path::Path;
use std::process::{Command, Output};

use crate::*;

/// A system user (and its group of the same name) created for one test
/// with `useradd` (needs root), removed on drop.
pub struct TestUser {
    pub name: String,
}

impl TestUser {
    pub fn create(name: &str) -> TestUser {
        let _ = output(Command::new("userdel").arg(name));
        let _ = output(Command::new("groupdel").arg(name));
        run_ok(Command::new("useradd").args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ]));
        TestUser {
            name: name.to_string(),
        }
    }

    /// (uid, gid) of the user.
    pub fn ids(&self) -> (u32, u32) {
        let id = |flag: &str| -> u32 {
            let out = run_ok(Command::new("id").arg(flag).arg(&self.name));
            out.trim()
                .parse()
                .unwrap_or_else(|e| panic!("id {flag} {}: {out:?}: {e}", self.name))
        };
        (id("-u"), id("-g"))
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = output(Command::new("userdel").arg(&self.name));
        let _ = output(Command::new("groupdel").arg(&self.name));
    }
}

/// Fails the test unless it runs as root, saying what needs it (a test
/// that cannot run fails, it never skips).
pub fn require_root(what: &str) {
    assert!(
        run_ok(Command::new("id").arg("-u")).trim() == "0",
        "this test needs root: {what}"
    );
}

/// A command's stdout then stderr, for assertions and failure messages.
pub fn combined(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `owlet hw-profile show NAME --config FILE --json`: the setting `key`.
pub fn profile_setting<'a>(shown: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    shown["settings"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["key"] == key))
        .unwrap_or_else(|| panic!("no setting {key} in {shown}"))
}

/// `owlet hw-profile show NAME --json --config FILE`, parsed.
pub fn profile_shown(name: &str, config: &Path) -> serde_json::Value {
    let out = run_ok(
        owlet()
            .args(["hw-profile", "show", name, "--json", "--config"])
            .arg(config),
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}
