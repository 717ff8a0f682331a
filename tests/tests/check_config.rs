//! `owlet check-config`: each mistake gives its `FILE:LINE:COL: KEY: message`
//! line on stderr and exit status 2; a valid file exits 0.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use owlet_tests::*;

/// A directory with a real certificate, key and CA from `ca issue`.
fn credentials() -> (Soc, PathBuf) {
    let soc = Soc::init();
    let agent = soc.issue("acme", "a");
    let dir = agent.dir.clone();
    (soc, dir)
}

/// A valid config whose `[soc]` section starts at line 5 (address on 6, ca on
/// 7, cert on 8, key on 9).
fn valid(address: &str, cert: &str, key: &str) -> String {
    format!(
        "# test config\n[agent]\nstate_dir = \"state\"\n\n[soc]\naddress = \"{address}\"\nca = \"ca.pem\"\ncert = \"{cert}\"\nkey = \"{key}\"\n\n[status]\ninterval = \"30s\"\n"
    )
}

/// Runs check-config on `text`; asserts exit 2 and an error line
/// `FILE:LINE:COL: KEY: ...` containing `needle`. Returns stderr.
fn assert_error(
    dir: &std::path::Path,
    name: &str,
    text: &str,
    line: usize,
    key: &str,
    needle: &str,
) -> String {
    let file = dir.join(name);
    fs::write(&file, text).unwrap();
    let out = output(owlet().arg("check-config").arg(&file));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{name}: exit status; stderr:\n{stderr}"
    );
    let prefix = format!("{}:{line}:", file.display());
    let found = stderr.lines().any(|l| {
        l.starts_with(&prefix)
            && l[prefix.len()..]
                .split_once(": ")
                .is_some_and(|(col, rest)| {
                    col.parse::<usize>().is_ok()
                        && rest.starts_with(&format!("{key}: "))
                        && rest.contains(needle)
                })
    });
    assert!(
        found,
        "{name}: expected a line `{prefix}COL: {key}: ...{needle}...`, got:\n{stderr}"
    );
    stderr
}

/// Every error line names file, line and column.
fn assert_all_located(file: &std::path::Path, stderr: &str) {
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.ends_with("error(s)"))
        .collect();
    assert!(!errors.is_empty());
    for l in errors {
        let rest = l
            .strip_prefix(&format!("{}:", file.display()))
            .unwrap_or("");
        let mut parts = rest.splitn(3, ':');
        let located = parts
            .next()
            .is_some_and(|n| n.parse::<usize>().is_ok_and(|n| n > 0))
            && parts.next().is_some_and(|n| n.parse::<usize>().is_ok());
        assert!(
            located,
            "error without file:line:col: {l:?}\nall errors:\n{stderr}"
        );
    }
}

#[test]
fn valid_file_exits_0() {
    let (_soc, dir) = credentials();
    let file = dir.join("ok.toml");
    fs::write(&file, valid("localhost:4443", "agent.pem", "agent.key")).unwrap();
    let out = output(owlet().arg("check-config").arg(&file));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
    // The file `ca issue` wrote is valid too.
    let out = output(owlet().arg("check-config").arg(dir.join("owlet.toml")));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unknown_key() {
    let (_soc, dir) = credentials();
    let text = valid("localhost:4443", "agent.pem", "agent.key")
        .replace("state_dir", "colour = \"blue\"\nstate_dir");
    assert_error(
        &dir,
        "unknown.toml",
        &text,
        3,
        "agent.colour",
        "unknown key",
    );
}

#[test]
fn wrong_type() {
    let (_soc, dir) = credentials();
    let text = valid("localhost:4443", "agent.pem", "agent.key")
        .replace("interval = \"30s\"", "interval = 5");
    assert_error(
        &dir,
        "type.toml",
        &text,
        12,
        "status.interval",
        "invalid type",
    );
}

#[test]
fn missing_required_key() {
    let (_soc, dir) = credentials();
    let text = valid("localhost:4443", "agent.pem", "agent.key")
        .replace("address = \"localhost:4443\"\n", "");
    // Reported at the [soc] header (line 5), naming the missing field.
    assert_error(&dir, "missing.toml", &text, 5, "soc", "address");
}

#[test]
fn unreadable_cert_file() {
    let (_soc, dir) = credentials();
    let text = valid("localhost:4443", "missing.pem", "agent.key");
    assert_error(&dir, "cert.toml", &text, 8, "soc.cert", "missing.pem");
}

#[test]
fn private_key_readable_by_others() {
    let (_soc, dir) = credentials();
    fs::copy(dir.join("agent.key"), dir.join("open.key")).unwrap();
    fs::set_permissions(dir.join("open.key"), fs::Permissions::from_mode(0o644)).unwrap();
    let text = valid("localhost:4443", "agent.pem", "open.key");
    assert_error(&dir, "key.toml", &text, 9, "soc.key", "chmod 600");
}

#[test]
fn bad_soc_address() {
    let (_soc, dir) = credentials();
    let text = valid("localhost", "agent.pem", "agent.key");
    let stderr = assert_error(&dir, "address.toml", &text, 6, "soc.address", "HOST:PORT");
    // A consequence of the same mistake must not be reported without a location.
    assert_all_located(&dir.join("address.toml"), &stderr);
}

#[test]
fn several_mistakes_are_reported_at_once() {
    let (_soc, dir) = credentials();
    let text = valid("localhost:4443", "missing.pem", "agent.key")
        .replace("state_dir", "colour = \"blue\"\nstate_dir");
    let stderr = assert_error(&dir, "many.toml", &text, 3, "agent.colour", "unknown key");
    // Line numbers shift by one after the inserted line.
    assert_error(&dir, "many.toml", &text, 9, "soc.cert", "missing.pem");
    assert!(stderr.contains("2 error(s)"), "{stderr}");
}
