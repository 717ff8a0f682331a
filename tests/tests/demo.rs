//! `owlet demo` works by itself, also for an unprivileged user.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use owlet_tests::*;

fn assert_demo_ok(out: std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "owlet demo failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    // A heartbeat line: "11:41:32  status   agent up 0s, ...".
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("status") && l.contains("agent up")),
        "no heartbeat (status) line in the demo output:\n{stdout}\nstderr:\n{stderr}"
    );
}

#[test]
fn demo_runs_and_shows_heartbeats() {
    assert_demo_ok(output(owlet().args(["demo", "--duration", "8s"])));
}

#[test]
fn demo_runs_as_nobody() {
    let home = tempfile::tempdir().unwrap();
    // A directory we just created is owned by our effective uid.
    if std::fs::metadata(home.path()).unwrap().uid() != 0 {
        eprintln!("skipped: needs root to switch to user nobody");
        return;
    }
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let bin = bin("owlet");
    let out = output(
        Command::new("setpriv")
            .args([
                "--reuid",
                "nobody",
                "--regid",
                "nogroup",
                "--clear-groups",
                "--",
            ])
            .arg(&bin)
            .args(["demo", "--duration", "8s"])
            .env("HOME", home.path())
            .env("TMPDIR", home.path())
            .current_dir(home.path()),
    );
    assert_demo_ok(out);
}
