//! `owlet health` / `owlet reload` when the control socket cannot be used:
//! run by a real unprivileged user (`setpriv` to nobody) against a real
//! socket, the client names the group that owns the socket and the fix —
//! or, for a directory no group may enter (0700, as `owlet-soc ca issue
//! --layout user` makes), its owner and a fix that is not joining a group;
//! with no socket it says the agent is not running. Both exit 3 (UNKNOWN).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use owlet_tests::*;

/// The gid of `name` in /etc/group.
fn gid(name: &str) -> u32 {
    fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == name).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no group {name} in /etc/group"))
}

/// A socket at `DIR/owlet.sock`, root:daemon mode 0660 like the agent's, in
/// a directory with `dir_mode` (root:daemon).
fn socket(dir_mode: u32) -> (tempfile::TempDir, PathBuf, UnixListener) {
    let tmp = tempfile::Builder::new()
        .prefix("owlet-access")
        .tempdir()
        .unwrap();
    let dir = tmp.path().join("run");
    fs::create_dir(&dir).unwrap();
    let path = dir.join("owlet.sock");
    let listener = UnixListener::bind(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o660)).unwrap();
    std::os::unix::fs::chown(&path, Some(0), Some(gid("daemon"))).unwrap();
    std::os::unix::fs::chown(&dir, Some(0), Some(gid("daemon"))).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(dir_mode)).unwrap();
    // The temporary directory itself must be enterable by nobody.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    (tmp, path, listener)
}

/// `owlet ARGS --socket SOCKET` as nobody:nogroup with `groups` as its only
/// supplementary groups.
fn as_nobody(groups: &[&str], args: &[&str], socket: &Path) -> Output {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", "nobody", "--regid", "nogroup"]);
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        cmd.args(["--groups", &groups.join(",")]);
    }
    cmd.arg(bin("owlet")).args(args).arg("--socket").arg(socket);
    output(&mut cmd)
}

fn assert_names_group_and_fix(out: &Output, what: &str) {
    let all = combined(out);
    assert_eq!(out.status.code(), Some(3), "{what}: {all}");
    for needle in [
        "permission denied",
        "group `daemon`",
        "sudo usermod -aG daemon $USER",
        "run this command with sudo",
    ] {
        assert!(
            all.contains(needle),
            "{what}: `{needle}` missing from:\n{all}"
        );
    }
}

#[test]
fn a_user_outside_the_group_is_told_which_group_to_join() {
    let (_tmp, path, _listener) = socket(0o755);
    let out = as_nobody(&[], &["health"], &path);
    assert_names_group_and_fix(&out, "health");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("OWLET UNKNOWN - "),
        "{}",
        combined(&out)
    );
    assert!(combined(&out).contains("mode 0660"), "{}", combined(&out));
    let out = as_nobody(&[], &["reload"], &path);
    assert_names_group_and_fix(&out, "reload");
}

#[test]
fn a_directory_the_user_cannot_enter_is_named() {
    let (_tmp, path, _listener) = socket(0o750);
    let out = as_nobody(&[], &["health"], &path);
    assert_names_group_and_fix(&out, "health");
    let dir = path.parent().unwrap().display().to_string();
    assert!(
        combined(&out).contains(&format!("the directory {dir} above it")),
        "{}",
        combined(&out)
    );
}

/// A 0700 directory (the `--layout user` agent directory of the user who
/// issued it, here root): no group can help, so the hint must not send the
/// user to join one.
#[test]
fn a_private_directory_is_not_fixed_by_joining_its_group() {
    let (_tmp, path, _listener) = socket(0o700);
    let out = as_nobody(&[], &["health"], &path);
    let all = combined(&out);
    assert_eq!(out.status.code(), Some(3), "{all}");
    let dir = path.parent().unwrap().display().to_string();
    for needle in [
        "permission denied".to_string(),
        format!("the directory {dir} above it belongs to user `root`, mode 0700"),
        "joining a group does not help".to_string(),
        "Run this command with sudo".to_string(),
        format!("sudo chmod g+x {dir}"),
    ] {
        assert!(all.contains(&needle), "`{needle}` missing from:\n{all}");
    }
    for wrong in ["usermod", "Join that group"] {
        assert!(!all.contains(wrong), "`{wrong}` in:\n{all}");
    }
}

#[test]
fn a_member_of_the_group_gets_through() {
    // The same socket answers a member of its group: the refusal above is
    // the group's doing, not the test's setup.
    let (_tmp, path, listener) = socket(0o750);
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "health");
        (&stream)
            .write_all(br#"{"verdict":"OK","reasons":[],"metrics":{"connection":"connected"}}"#)
            .unwrap();
    });
    let out = as_nobody(&["daemon"], &["health"], &path);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", combined(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("OWLET OK"),
        "{}",
        combined(&out)
    );
}

#[test]
fn no_socket_means_the_agent_is_not_running() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("owlet.sock");
    for command in ["health", "reload"] {
        let out = output(owlet().arg(command).arg("--socket").arg(&path));
        let all = combined(&out);
        assert_eq!(out.status.code(), Some(3), "{command}: {all}");
        assert!(all.contains("the agent is not running"), "{command}: {all}");
        assert!(all.contains("--socket"), "{command}: {all}");
    }
}
