//! Each mistake a field engineer can make in owlet.toml gives a message with
//! file, line and key.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;

/// A directory with a CA-issued agent certificate, key and CA copy.
fn enrolled() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    owlet_ca::init(&ca, &["localhost".to_string()], 30).unwrap();
    let agent = dir.path().join("agent");
    let id = owlet_tls::Identity::new("acme", "s1").unwrap();
    owlet_ca::issue(&ca, &id, &agent, 30).unwrap();
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
    owlet_ca::issue(
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
    owlet_ca::issue_with_validity(
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
    // It leaves every key a profile sets to its profile (the unit's
    // MemoryMax= is the small profile's).
    assert_eq!(config.agent.hw_profile, "small");
    for (key, origin) in &config.profile.origins {
        assert_eq!(*origin, profile::Origin::Profile, "{key}");
    }
    assert_eq!(config.spool.max_batches, 100_000);
    assert_eq!(config.probe.max_concurrency, 32);
}

/// The one error of `text` at `key`, as (line, message).
fn error_at(dir: &Path, text: &str, key: &str) -> (usize, String) {
    let errs = errors(dir, text);
    let found: Vec<_> = errs.iter().filter(|e| e.key == key).collect();
    assert_eq!(found.len(), 1, "one error at {key} expected in {errs:?}");
    (found[0].line, found[0].message.clone())
}

#[test]
fn a_typo_in_any_section_suggests_the_key_meant() {
    let (_tmp, dir) = enrolled();
    for (text, key, meant) in [
        (
            "[status]\ninterva = \"30s\"\n",
            "status.interva",
            "interval",
        ),
        (
            "[spool]\nmax_byte = \"1GiB\"\n",
            "spool.max_byte",
            "max_bytes",
        ),
        ("[batch]\nlingre = \"1s\"\n", "batch.lingre", "linger"),
        ("[control]\nsoket = \"s\"\n", "control.soket", "socket"),
        ("[log]\nlevle = \"info\"\n", "log.levle", "level"),
        ("[spol]\n", "spol", "spool"),
    ] {
        let (line, message) = error_at(&dir, &format!("{VALID}\n{text}"), key);
        assert!(line >= 10, "{key} not located: line {line}");
        let name = key.rsplit('.').next().unwrap();
        assert_eq!(
            message,
            format!("unknown key `{name}`; did you mean `{meant}`?")
        );
    }
    let text = VALID.replace("state_dir", "hw-profile = \"small\"\nstate_dir");
    let (line, message) = error_at(&dir, &text, "agent.hw-profile");
    assert_eq!(line, 2);
    assert!(message.ends_with("did you mean `hw_profile`?"), "{message}");
}

#[test]
fn a_typo_in_a_check_entry_suggests_the_key_meant() {
    let (_tmp, dir) = enrolled();
    let text = format!(
        "{VALID}\n[[probe.check]]\nid = \"web\"\ntype = \"tcp\"\ntarget = \"localhost:80\"\nintervl = \"10s\"\n"
    );
    let errs = errors(&dir, &text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, 14, "{errs:?}");
    assert_eq!(
        errs[0].message,
        "unknown key `intervl`; did you mean `interval`?"
    );
}

#[test]
fn a_duration_of_the_wrong_form_shows_an_example() {
    let (_tmp, dir) = enrolled();
    for value in ["30", "\"30 seconds please\""] {
        let text = format!("{VALID}\n[status]\ninterval = {value}\n");
        let (line, message) = error_at(&dir, &text, "status.interval");
        assert_eq!(line, 11);
        assert!(
            message.ends_with("expected a duration such as \"30s\" or \"5m\""),
            "{message}"
        );
    }
}

#[test]
fn a_byte_size_of_the_wrong_form_shows_an_example() {
    let (_tmp, dir) = enrolled();
    for value in ["true", "\"lots\"", "-1"] {
        let text = format!("{VALID}\n[spool]\nmax_bytes = {value}\n");
        let (line, message) = error_at(&dir, &text, "spool.max_bytes");
        assert_eq!(line, 11);
        assert!(
            message.ends_with("expected a byte size such as \"64MiB\" or \"512KiB\""),
            "{message}"
        );
    }
    // Both written forms still load.
    let text = format!("{VALID}\n[batch]\nmax_bytes = 65536\n\n[spool]\nmax_bytes = \"2 GiB\"\n");
    let config = load(&write(&dir, &text)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.batch.max_bytes.as_u64(), 65536);
    assert_eq!(config.spool.max_bytes, bytesize::ByteSize::gib(2));
}

#[test]
fn tenant_and_id_claims_must_match_the_certificate() {
    let (_tmp, dir) = enrolled();
    // The certificate is for acme/s1: matching claims load.
    let text = VALID.replace("state_dir", "tenant = \"acme\"\nid = \"s1\"\nstate_dir");
    load(&write(&dir, &text)).unwrap_or_else(|e| panic!("{e}"));

    let text = VALID.replace("state_dir", "tenant = \"acme2\"\nid = \"s7\"\nstate_dir");
    let (line, message) = error_at(&dir, &text, "agent.tenant");
    assert_eq!(line, 2);
    for needle in [
        "`acme2`",
        "tenant `acme`",
        "owlet://acme/s1",
        "agent.pem",
        "remove tenant/id or correct them",
    ] {
        assert!(message.contains(needle), "{needle} missing: {message}");
    }
    let (line, message) = error_at(&dir, &text, "agent.id");
    assert_eq!(line, 3);
    assert!(
        message.contains("`s7`") && message.contains("agent id `s1`"),
        "{message}"
    );
}

#[test]
fn an_unknown_hardware_profile_is_an_error_listing_the_known_ones() {
    let (_tmp, dir) = enrolled();
    let text = VALID.replace("state_dir", "hw_profile = \"meduim\"\nstate_dir");
    let (line, message) = error_at(&dir, &text, "agent.hw_profile");
    assert_eq!(line, 2);
    assert!(message.contains("did you mean `medium`?"), "{message}");
    assert!(message.contains("small, medium, large"), "{message}");
    for name in HW_PROFILES.iter().chain(&[""]) {
        let text = VALID.replace("state_dir", &format!("hw_profile = \"{name}\"\nstate_dir"));
        load(&write(&dir, &text)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn every_hardware_profile_passes_validation_with_capture_on() {
    let (_tmp, dir) = enrolled();
    for name in HW_PROFILES {
        let text = VALID.replace("state_dir", &format!("hw_profile = \"{name}\"\nstate_dir"))
            + "\n[capture]\ninterfaces = [\"lo\"]\n";
        let config = load(&write(&dir, &text)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(config.profile.name, Some(*name));
    }
}

#[test]
fn a_profile_value_the_file_contradicts_is_an_error_that_says_where_it_came_from() {
    let (_tmp, dir) = enrolled();
    // small's 256 MiB spool cannot hold 4 segments of 128 MiB.
    let text = VALID.replace("state_dir", "hw_profile = \"small\"\nstate_dir")
        + "\n[spool]\nsegment_bytes = \"128MiB\"\n";
    let errs = errors(&dir, &text);
    let e = errs.iter().find(|e| e.key == "spool.max_bytes").unwrap();
    assert!(
        e.message
            .contains("comes from hardware profile `small`: set spool.max_bytes in this file"),
        "{e}"
    );
    // Written in the file, the same mistake is the file's own.
    let own = text.replace("[spool]\n", "[spool]\nmax_bytes = \"256MiB\"\n");
    let errs = errors(&dir, &own);
    let e = errs.iter().find(|e| e.key == "spool.max_bytes").unwrap();
    assert!(!e.message.contains("hardware profile"), "{e}");
}

#[test]
fn a_capture_ring_that_is_not_whole_mib_is_refused() {
    let (_tmp, dir) = enrolled();
    for ring in ["\"1500KiB\"", "\"0MiB\"", "\"2GiB\""] {
        let text = format!("{VALID}\n[capture]\ninterfaces = [\"lo\"]\nring_bytes = {ring}\n");
        let (line, message) = error_at(&dir, &text, "capture.ring_bytes");
        assert_eq!(line, 12, "{ring}");
        assert!(message.contains("whole number of MiB"), "{message}");
    }
}

#[test]
fn the_compiled_hardware_profiles_are_the_files_of_hw_profiles() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hw-profiles");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut compiled: Vec<&str> = HW_PROFILES.to_vec();
    compiled.sort();
    assert_eq!(
        compiled,
        on_disk,
        "HW_PROFILES must list exactly the files of {}",
        dir.display()
    );
}

#[test]
fn a_bad_log_level_is_located() {
    let (_dir, agent) = enrolled();
    let found = errors(&agent, &format!("{VALID}\n[log]\nlevel = \"owlet=loud\"\n"));
    let text: Vec<String> = found.iter().map(|e| e.to_string()).collect();
    assert!(
        text.iter()
            .any(|e| e.contains("log.level: not a log filter")),
        "{text:?}"
    );
}

#[test]
fn a_capture_filter_that_does_not_compile_is_located() {
    let (_dir, agent) = enrolled();
    let found = errors(
        &agent,
        &format!(
            "{VALID}\n[capture]\ninterfaces = [\"eth1\"]\nfilter = \"port banana\"\nworkers = 0\n"
        ),
    );
    let text: Vec<String> = found.iter().map(|e| e.to_string()).collect();
    assert!(
        text.iter().any(|e| e.contains("capture.filter")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|e| e.contains("capture.workers")),
        "{text:?}"
    );
}
