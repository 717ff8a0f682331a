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

/// A capture interface that does not exist here is a warning naming it,
/// not an error: a sensor's config may be written before its NIC is in.
#[test]
fn a_missing_capture_interface_is_a_warning() {
    let (_soc, dir) = credentials();
    let file = dir.join("capture.toml");
    let text = valid("localhost:4443", "agent.pem", "agent.key")
        + "\n[capture]\ninterfaces = [\"lo\", \"owlet-none9\"]\n";
    fs::write(&file, text).unwrap();
    let out = output(owlet().arg("check-config").arg(&file));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: warning: capture.interfaces: owlet-none9 does not exist on this host (interfaces here: ",
            file.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("lo does not exist"), "{stderr}");
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
fn bad_soc_alternative() {
    let (_soc, dir) = credentials();
    // Line 7: the second alternative.
    let text = valid("localhost:4443", "agent.pem", "agent.key").replace(
        "ca = \"ca.pem\"",
        "alternatives = [\"soc-2.example.net:4443\",\n  \"soc-3.example.net\"]\nca = \"ca.pem\"",
    );
    let stderr = assert_error(
        &dir,
        "alternatives.toml",
        &text,
        8,
        "soc.alternatives[1]",
        "HOST:PORT",
    );
    assert_all_located(&dir.join("alternatives.toml"), &stderr);
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

#[test]
fn valid_file_names_the_identity_of_its_certificate() {
    let (_soc, dir) = credentials();
    let file = dir.join("ok.toml");
    fs::write(&file, valid("localhost:4443", "agent.pem", "agent.key")).unwrap();
    let out = output(owlet().arg("check-config").arg(&file));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("agent acme/a"), "{stdout}");
}

#[test]
fn a_typo_suggests_the_key_meant() {
    let (_soc, dir) = credentials();
    let text = valid("localhost:4443", "agent.pem", "agent.key")
        .replace("interval = \"30s\"", "interva = \"30s\"")
        + "\n[[probe.check]]\nid = \"web\"\ntype = \"tcp\"\ntarget = \"localhost:80\"\ntimout = \"2s\"\n";
    let stderr = assert_error(
        &dir,
        "typo.toml",
        &text,
        12,
        "status.interva",
        "unknown key `interva`; did you mean `interval`?",
    );
    assert_all_located(&dir.join("typo.toml"), &stderr);
    // A check entry: reported on the same run (all errors at once).
    assert_error(
        &dir,
        "typo.toml",
        &text,
        18,
        "probe.check[0].timout",
        "unknown key `timout`; did you mean `timeout`?",
    );
}

#[test]
fn a_duration_and_a_byte_size_of_the_wrong_form_show_an_example() {
    let (_soc, dir) = credentials();
    let text = valid("localhost:4443", "agent.pem", "agent.key")
        .replace("interval = \"30s\"", "interval = 30");
    assert_error(
        &dir,
        "duration.toml",
        &text,
        12,
        "status.interval",
        "expected a duration such as \"30s\" or \"5m\"",
    );
    let text =
        valid("localhost:4443", "agent.pem", "agent.key") + "\n[spool]\nmax_bytes = \"a lot\"\n";
    assert_error(
        &dir,
        "bytes.toml",
        &text,
        15,
        "spool.max_bytes",
        "expected a byte size such as \"64MiB\"",
    );
}

#[test]
fn tenant_or_id_that_contradicts_the_certificate() {
    let (_soc, dir) = credentials();
    // The certificate is for acme/a.
    let text = valid("localhost:4443", "agent.pem", "agent.key")
        .replace("state_dir", "tenant = \"acme\"\nid = \"b\"\nstate_dir");
    let stderr = assert_error(
        &dir,
        "identity.toml",
        &text,
        4,
        "agent.id",
        "says `b` but the certificate",
    );
    for needle in [
        "agent id `a`",
        "owlet://acme/a",
        "remove tenant/id or correct them",
    ] {
        assert!(stderr.contains(needle), "{needle} missing:\n{stderr}");
    }
    assert!(
        stderr.contains("1 error(s)"),
        "the matching tenant is no error:\n{stderr}"
    );
}

#[test]
fn unknown_hardware_profile() {
    let (_soc, dir) = credentials();
    let text = valid("localhost:4443", "agent.pem", "agent.key")
        .replace("state_dir", "hw_profile = \"huge\"\nstate_dir");
    assert_error(
        &dir,
        "profile.toml",
        &text,
        3,
        "agent.hw_profile",
        "known profiles: small, medium, large",
    );
}
