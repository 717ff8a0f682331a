//! Each mistake a field engineer can make in owlet.toml gives a message with
//! file, line and key.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;

/// A directory with a CA-issued agent certificate, key and CA copy.
fn enrolled() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    owlet_tls::ca::init(&ca, &["localhost".to_string()], 30).unwrap();
    let agent = dir.path().join("agent");
    let id = owlet_tls::Identity::new("acme", "s1").unwrap();
    owlet_tls::ca::issue(&ca, &id, &agent, 30).unwrap();
    (dir, agent)
}

const VALID: &str = "[agent]\nstate_dir = \"state\"\n\n[soc]\naddress = \"localhost:4443\"\nca = \"ca.pem\"\ncert = \"agent.pem\"\nkey = \"agent.key\"\n";

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("owlet.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn errors(dir: &Path, text: &str) -> Vec<owlet_tomlconf::ConfigError> {
    load(&write(dir, text))
        .expect_err("config should be refused")
        .0
}

#[test]
fn a_valid_file_loads_and_resolves_paths_from_its_directory() {
    let (_tmp, dir) = enrolled();
    let config = load(&write(&dir, VALID)).unwrap();
    assert_eq!(config.soc.cert, dir.join("agent.pem"));
    assert_eq!(config.spool_dir(), dir.join("state").join("spool"));
    assert_eq!(config.server_name(), "localhost");
}

#[test]
fn unknown_keys_are_errors_with_line_and_key() {
    let (_tmp, dir) = enrolled();
    let errs = errors(
        &dir,
        &format!("{VALID}kye = \"x\"\n\n[spol]\nmax_bytes = 1\n"),
    );
    let keys: Vec<_> = errs.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(keys, vec![(9, "soc.kye"), (11, "spol")]);
}

#[test]
fn wrong_type_is_located() {
    let (_tmp, dir) = enrolled();
    let errs = errors(&dir, &format!("{VALID}\n[batch]\nmax_events = \"many\"\n"));
    assert_eq!(
        (errs[0].line, errs[0].key.as_str()),
        (11, "batch.max_events")
    );
}

#[test]
fn unreadable_certificate_names_the_key_and_the_file() {
    let (_tmp, dir) = enrolled();
    let errs = errors(&dir, &VALID.replace("agent.pem", "missing.pem"));
    assert_eq!((errs[0].line, errs[0].key.as_str()), (7, "soc.cert"));
    assert!(
        errs[0].message.contains("missing.pem"),
        "{}",
        errs[0].message
    );
}

#[test]
fn private_key_readable_by_others_is_refused_with_the_fix() {
    let (_tmp, dir) = enrolled();
    std::fs::set_permissions(
        dir.join("agent.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let errs = errors(&dir, VALID);
    assert_eq!((errs[0].line, errs[0].key.as_str()), (8, "soc.key"));
    assert!(errs[0].message.contains("chmod 600"), "{}", errs[0].message);
}

#[test]
fn semantic_errors_are_all_reported() {
    let (_tmp, dir) = enrolled();
    let text = VALID.replace("localhost:4443", "localhost")
        + "\n[spool]\nmax_bytes = \"1MiB\"\nsegment_bytes = \"1MiB\"\n\n[status]\ninterval = \"0s\"\n";
    let keys: Vec<_> = errors(&dir, &text).into_iter().map(|e| e.key).collect();
    for key in ["soc.address", "spool.max_bytes", "status.interval"] {
        assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
    }
}

#[test]
fn host_port_forms() {
    assert_eq!(split_host_port("soc:4443"), Some(("soc", 4443)));
    assert_eq!(
        split_host_port("[2001:db8::1]:4443"),
        Some(("2001:db8::1", 4443))
    );
    assert_eq!(split_host_port("soc"), None);
    assert_eq!(split_host_port("soc:0"), None);
    assert_eq!(split_host_port(":4443"), None);
}

#[test]
fn zero_durations_that_would_break_the_agent_are_refused() {
    let (_tmp, dir) = enrolled();
    let text = VALID.replace("[soc]\n", "[soc]\nconnect_timeout = \"0s\"\n")
        + "\n[batch]\nlinger = \"0s\"\n\n[spool]\nmax_age = \"0s\"\nfsync_interval = \"0s\"\n";
    let errs = errors(&dir, &text);
    let keys: Vec<_> = errs.iter().map(|e| (e.key.as_str(), e.line)).collect();
    for key in [
        "soc.connect_timeout",
        "batch.linger",
        "spool.max_age",
        "spool.fsync_interval",
    ] {
        assert!(
            keys.iter().any(|(k, line)| *k == key && *line > 0),
            "{key} missing or unlocated in {keys:?}"
        );
    }
}

#[test]
fn a_relative_probe_ca_is_taken_from_the_config_directory() {
    let (_tmp, dir) = enrolled();
    let text = format!(
        "{VALID}\n[[probe.check]]\nid = \"web\"\ntype = \"http\"\ntarget = \"https://localhost/\"\nca = \"ca.pem\"\n"
    );
    let config = load(&write(&dir, &text)).unwrap();
    assert_eq!(
        config.probe.checks[0].ca.as_deref(),
        Some(dir.join("ca.pem").as_path())
    );
}

#[test]
fn a_key_that_does_not_belong_to_the_certificate_is_refused() {
    let (tmp, dir) = enrolled();
    let other = tmp.path().join("other");
    owlet_tls::ca::issue(
        &tmp.path().join("ca"),
        &owlet_tls::Identity::new("acme", "s2").unwrap(),
        &other,
        30,
    )
    .unwrap();
    std::fs::copy(other.join("agent.key"), dir.join("agent.key")).unwrap();
    let errs = errors(&dir, VALID);
    assert_eq!(
        (errs[0].line, errs[0].key.as_str()),
        (8, "soc.key"),
        "{errs:?}"
    );
}

#[test]
fn an_expired_certificate_is_a_warning_not_an_error() {
    let (tmp, dir) = enrolled();
    let now = time::OffsetDateTime::now_utc();
    owlet_tls::ca::issue_with_validity(
        &tmp.path().join("ca"),
        &owlet_tls::Identity::new("acme", "s1").unwrap(),
        &tmp.path().join("expired"),
        now - time::Duration::days(10),
        now - time::Duration::days(1),
    )
    .unwrap();
    std::fs::copy(tmp.path().join("expired/agent.pem"), dir.join("agent.pem")).unwrap();
    std::fs::copy(tmp.path().join("expired/agent.key"), dir.join("agent.key")).unwrap();
    let config = load(&write(&dir, VALID)).expect("an expired certificate still loads");
    let warning = config.certificate_warning().expect("a warning");
    assert!(warning.contains("expired on"), "{warning}");
}

#[test]
fn the_packaged_reference_config_is_valid() {
    let (_tmp, dir) = enrolled();
    let reference = include_str!("../../../packaging/owlet.toml");
    let config = load(&write(&dir, reference)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.spool.max_batches, 1_000_000);
    assert_eq!(config.probe.max_concurrency, 256);
}
