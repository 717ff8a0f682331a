//! `owlet selftest` against a real `owlet-soc`: everything passes on a good
//! setup (and the SOC shows the self-test record, while a running agent's
//! sequence is untouched), and each broken setup fails at the right step with
//! a fix: wrong CA, expired certificate, SOC down, unreadable watched path,
//! missing capability, full disk. Run as root, capture and watched paths
//! are checked as the unit's `User=` with its `AmbientCapabilities=` (a test
//! user and unit made here). Needs root (setpriv, useradd, a tmpfs mount).

use owlet_proto::v1::event::Kind;
use owlet_tests::*;
use serde_json::Value;

fn selftest_with(agent: &Agent, wrapper: &[&str]) -> (i32, Value) {
    agent.selftest(wrapper, &[])
}

fn selftest(agent: &Agent) -> (i32, Value) {
    agent.selftest(&[], &[])
}

/// The report failed (exit 2) at `name`, whose detail says `words`, with a
/// fix that says `fix_words`.
fn assert_failed_at(status: i32, report: &Value, name: &str, words: &str, fix_words: &str) {
    assert_eq!(status, 2, "selftest should fail: {report:#}");
    assert_eq!(report["result"], "fail", "{report:#}");
    let s = selftest_step(report, name);
    assert_eq!(s["status"], "fail", "step {name} should fail: {report:#}");
    let detail = s["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(words),
        "step {name}: {detail:?} lacks {words:?}"
    );
    let fix = s["fix"].as_str().unwrap_or_default();
    assert!(
        fix.contains(fix_words),
        "step {name}: fix {fix:?} lacks {fix_words:?}"
    );
}

/// The capture step on `lo` failed for want of CAP_NET_RAW, with the fix.
fn assert_capture_needs_net_raw(status: i32, report: &Value) {
    assert_failed_at(
        status,
        report,
        "capture",
        "lo: opening a packet socket on lo needs CAP_NET_RAW",
        "AmbientCapabilities=CAP_NET_RAW",
    );
}

/// An agent with a capture interface and a watched file.
fn full_agent(soc: &Soc) -> Agent {
    let mut agent = soc.issue("acme", "a");
    let watched = agent.dir.join("watched.conf");
    std::fs::write(&watched, "setting = 1\n").unwrap();
    agent.set("capture", "interfaces", vec!["lo"]);
    let mut watch = toml::Table::new();
    watch.insert("path".into(), watched.display().to_string().into());
    agent.set("fim", "watch", vec![toml::Value::from(watch)]);
    std::fs::create_dir_all(&agent.state_dir).unwrap();
    agent
}

fn self_test_records(soc: &Soc) -> Vec<Stored> {
    soc.db()
        .events_of("acme", "a")
        .into_iter()
        .filter(|e| matches!(&e.event.kind, Some(Kind::Alert(a)) if a.source == "selftest"))
        .collect()
}

#[test]
fn a_good_setup_passes_every_step_and_the_soc_records_it_beside_the_running_agent() {
    let mut soc = Soc::init();
    soc.start();
    let mut agent = full_agent(&soc);
    agent.start();
    let db = soc.db();
    wait_until(
        "the running agent's first acknowledgement",
        DEADLINE,
        || db.agent("acme", "a").is_some_and(|a| a.acked_seq > 0),
    );

    let (status, report) = selftest(&agent);
    assert_eq!(status, 0, "{report:#}");
    for name in [
        "config",
        "certificate",
        "key",
        "chain",
        "expiry",
        "capture",
        "watched_paths",
        "spool",
        "soc",
        "clock",
        "test_event",
        "failure_test",
    ] {
        assert_eq!(
            selftest_step(&report, name)["status"],
            "pass",
            "{name}: {report:#}"
        );
    }
    for name in ["soc", "test_event", "failure_test"] {
        assert!(
            selftest_step(&report, name)["round_trip_ms"].is_number(),
            "{name} shows no round trip: {report:#}"
        );
    }

    // The SOC holds both test events as self-test records, outside the
    // agent's sequence.
    let records = self_test_records(&soc);
    let names: Vec<&str> = records.iter().filter_map(|r| r.alert_name()).collect();
    assert_eq!(
        names,
        ["selftest_operation", "selftest_failure"],
        "{records:?}"
    );
    assert!(records.iter().all(|r| r.seq.is_none()), "{records:?}");
    let failure = records[1].alert().unwrap();
    assert_eq!(
        failure.last_result.as_ref().map(|r| r.result()),
        Some(owlet_proto::v1::State::Down)
    );
    let row = soc
        .agents_json()
        .into_iter()
        .find(|a| a["agent_id"] == "a")
        .unwrap();
    assert!(row["last_selftest"].is_string(), "{row}");
    let mut tail = owlet_soc();
    tail.args(["tail", "--from-start", "--config"])
        .arg(&soc.config);
    let tail = Proc::spawn("owlet-soc-tail", tail, soc.tmp.path());
    wait_until("`owlet-soc tail` to show the self-test", DEADLINE, || {
        tail.stdout()
            .contains("acme/a selftest alert: [Warning] selftest_failure")
    });

    // The running agent's sequence was not disturbed: later events are
    // stored, none dropped as duplicates, none missing.
    let acked = db.agent("acme", "a").unwrap().acked_seq;
    wait_until("the running agent's next acknowledgement", DEADLINE, || {
        db.agent("acme", "a").unwrap().acked_seq > acked + 2
    });
    agent.stop();
    assert_eq!(soc.duplicates_dropped("acme", "a"), 0);
    // Only the self-test's own connection is judged: the running agent,
    // stopped above, may end its stream without a TLS close_notify.
    let log = soc.log();
    let selftest_addr = log
        .lines()
        .filter(|l| l.contains("self-test event stored"))
        .find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            Some(v["fields"]["addr"].as_str()?.to_string())
        })
        .expect("the SOC logged the self-test's connection");
    assert!(
        !log.lines()
            .any(|l| l.contains("agent stream ended with an error")
                && l.contains(&format!("\"addr\":\"{selftest_addr}\""))),
        "the self-test's stream did not end cleanly:\n{}",
        log
    );
    let seqs: Vec<u64> = db
        .events_of("acme", "a")
        .iter()
        .filter_map(|e| e.seq)
        .collect();
    let first = seqs.first().copied().unwrap_or(1);
    let expected: Vec<u64> = (first..first + seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "the agent's stored sequence has gaps");
}

#[test]
fn a_wrong_ca_fails_the_chain_and_the_soc_step() {
    let mut soc = Soc::init();
    soc.start();
    let mut agent = soc.issue("acme", "a");
    let foreign = soc.tmp.path().join("foreign-ca");
    // Its soc.pem (beside the ca.pem pinned below) names 127.0.0.1 too, so
    // the configuration loads and the chain is what fails.
    owlet_ca::init(
        &foreign,
        &["localhost".to_string(), "127.0.0.1".to_string()],
        30,
    )
    .unwrap();
    agent.set("soc", "ca", foreign.join("ca.pem").display().to_string());
    let (status, report) = selftest(&agent);
    assert_failed_at(
        status,
        &report,
        "chain",
        "does not chain to the CA in soc.ca",
        "soc.ca",
    );
    assert_failed_at(
        status,
        &report,
        "soc",
        "[tls_unknown_issuer]",
        "soc.ca must be the CA",
    );
    // The fixes name the CA file `owlet-soc ca init` really writes.
    for name in ["chain", "soc"] {
        let fix = selftest_step(&report, name)["fix"]
            .as_str()
            .unwrap_or_default();
        assert!(
            fix.contains("ca.pem") && !fix.contains("ca.crt"),
            "{name}: {fix}"
        );
    }
    assert_eq!(selftest_step(&report, "test_event")["status"], "skip");
}

#[test]
fn an_expired_certificate_fails_the_expiry_and_the_soc_step() {
    let mut soc = Soc::init();
    soc.start();
    let now = time::OffsetDateTime::now_utc();
    let paths = owlet_ca::issue_with_validity(
        &soc.ca_dir,
        &owlet_tls::Identity::new("acme", "a").unwrap(),
        &soc.tmp.path().join("expired"),
        now - time::Duration::days(10),
        now - time::Duration::days(1),
    )
    .unwrap();
    let mut agent = soc.issue("acme", "a");
    agent.replace_credentials(&paths.cert, &paths.key);
    let (status, report) = selftest(&agent);
    assert_failed_at(
        status,
        &report,
        "expiry",
        "expired on",
        "owlet-soc ca issue",
    );
    // The chain itself is fine: only the date is wrong.
    assert_eq!(
        selftest_step(&report, "chain")["status"],
        "pass",
        "{report:#}"
    );
    assert_failed_at(
        status,
        &report,
        "soc",
        "[tls_agent_cert_expired]",
        "owlet-soc ca issue",
    );
}

#[test]
fn a_soc_that_is_down_fails_the_soc_step_and_skips_what_needs_it() {
    let soc = Soc::init(); // never started: nothing listens on its port
    let agent = soc.issue("acme", "a");
    let (status, report) = selftest(&agent);
    assert_failed_at(
        status,
        &report,
        "soc",
        "[refused]",
        "check that owlet-soc runs there",
    );
    for name in ["clock", "test_event", "failure_test"] {
        assert_eq!(selftest_step(&report, name)["status"], "skip", "{report:#}");
    }
    // The local steps still ran.
    assert_eq!(
        selftest_step(&report, "spool")["status"],
        "pass",
        "{report:#}"
    );
}

#[test]
fn an_unreadable_watched_path_fails_the_watched_paths_step() {
    let mut soc = Soc::init();
    soc.start();
    let mut agent = full_agent(&soc);
    agent.set("capture", "interfaces", Vec::<String>::new());
    let watched = agent.dir.join("watched.conf");
    std::fs::set_permissions(
        &watched,
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    // Root reads anything: drop the capabilities that let it.
    let (status, report) = selftest_with(
        &agent,
        &[
            "setpriv",
            "--inh-caps=-all",
            "--bounding-set=-dac_override,-dac_read_search",
        ],
    );
    assert_failed_at(
        status,
        &report,
        "watched_paths",
        "watched.conf: Permission denied",
        "setfacl",
    );
    assert_eq!(
        selftest_step(&report, "soc")["status"],
        "pass",
        "{report:#}"
    );
}

#[test]
fn a_missing_capability_fails_the_capture_step() {
    let mut soc = Soc::init();
    soc.start();
    let agent = full_agent(&soc);
    let (status, report) = selftest_with(
        &agent,
        &["setpriv", "--inh-caps=-all", "--bounding-set=-net_raw"],
    );
    assert_capture_needs_net_raw(status, &report);
    assert_eq!(
        selftest_step(&report, "soc")["status"],
        "pass",
        "{report:#}"
    );
}

#[test]
fn a_full_disk_fails_the_spool_step() {
    let mut soc = Soc::init();
    soc.start();
    let agent = soc.issue("acme", "a");
    let _tmpfs = Tmpfs::mount(&agent.state_dir, "256k");
    // Fill it: the write fails once the tmpfs is full.
    let fill = vec![0u8; 4096];
    let mut file = std::fs::File::create(agent.state_dir.join("fill")).unwrap();
    while std::io::Write::write_all(&mut file, &fill).is_ok() {}
    drop(file);
    let (status, report) = selftest(&agent);
    assert_failed_at(
        status,
        &report,
        "spool",
        "No space left on device",
        "free space on the file system",
    );
}

#[test]
fn a_broken_config_fails_the_config_step_naming_file_line_and_key() {
    let soc = Soc::init();
    let mut agent = soc.issue("acme", "a");
    agent.set("soc", "adress", "typo");
    let (status, report) = selftest(&agent);
    let file = agent.config_path.display().to_string();
    assert_failed_at(status, &report, "config", &file, "owlet check-config");
    let detail = selftest_step(&report, "config")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains("soc.adress: unknown key `adress`; did you mean `address`?"),
        "{detail}"
    );
    assert_eq!(report["steps"].as_array().unwrap().len(), 2, "{report:#}");
}

#[test]
fn a_key_owned_by_another_user_fails_the_key_step() {
    let soc = Soc::init();
    let agent = soc.issue("acme", "a");
    let key = agent.dir.join("agent.key");
    assert!(key.is_file(), "ca issue wrote no {}", key.display());
    // nobody: neither root nor the service user.
    std::os::unix::fs::chown(&key, Some(65534), Some(65534)).unwrap();
    let (status, report) = selftest(&agent);
    assert_failed_at(
        status,
        &report,
        "key",
        "owned by neither root nor the service user",
        "chown owlet",
    );
}

/// Run as root, the self-test checks capture and the watched paths as the
/// service would: as the unit's `User=` (a test user) holding only the
/// unit's `AmbientCapabilities=`, naming each path that user cannot read.
#[test]
fn as_root_capture_and_watched_paths_are_checked_as_the_service_user() {
    require_root("it checks what `owlet selftest` does as root");
    let user = TestUser::create("owlet-sttest");
    let (uid, _) = user.ids();
    let mut soc = Soc::init();
    soc.start();
    let mut agent = full_agent(&soc);
    // Root reads watched.conf (in the 0700 test directory); the service
    // user does not. open.conf is readable by anyone.
    let public = tempfile::Builder::new()
        .prefix("owlet-public")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        public.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let open = public.path().join("open.conf");
    std::fs::write(&open, "x = 1\n").unwrap();
    let closed = agent.dir.join("watched.conf");
    let watches: Vec<toml::Value> = [&closed, &open]
        .iter()
        .map(|p| {
            let mut w = toml::Table::new();
            w.insert("path".into(), p.display().to_string().into());
            toml::Value::from(w)
        })
        .collect();
    agent.set("fim", "watch", watches);
    let unit = agent.dir.join("owlet.service");
    let write_unit = |caps: &str| {
        std::fs::write(
            &unit,
            format!(
                "[Service]\nUser={0}\nGroup={0}\nAmbientCapabilities={caps}\nCapabilityBoundingSet={caps}\n",
                user.name
            ),
        )
        .unwrap();
    };
    let unit_arg = unit.display().to_string();

    write_unit("CAP_NET_RAW");
    let (status, report) = agent.selftest(&[], &["--service-unit", &unit_arg]);
    let as_whom = selftest_step(&report, "service_user");
    assert_eq!(as_whom["status"], "pass", "{report:#}");
    let detail = as_whom["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("checked as {} (uid {uid}", user.name))
            && detail.contains("with CAP_NET_RAW"),
        "{detail}"
    );
    assert_eq!(
        selftest_step(&report, "capture")["status"],
        "pass",
        "{report:#}"
    );
    assert_failed_at(
        status,
        &report,
        "watched_paths",
        &format!(
            "1 of 2 cannot be read: {}: Permission denied",
            closed.display()
        ),
        &format!("setfacl -m u:{}:r", user.name),
    );
    let detail = selftest_step(&report, "watched_paths")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!detail.contains("open.conf"), "{detail}");
    // The rest still runs as root, as before.
    assert_eq!(
        selftest_step(&report, "soc")["status"],
        "pass",
        "{report:#}"
    );

    // Without the capability in the unit, capture fails as it would for
    // the service, although the self-test itself runs as root.
    write_unit("");
    let (status, report) = agent.selftest(&[], &["--service-unit", &unit_arg]);
    assert_capture_needs_net_raw(status, &report);
    assert!(
        selftest_step(&report, "service_user")["detail"]
            .as_str()
            .unwrap()
            .contains("with no capabilities"),
        "{report:#}"
    );
}

/// A unit whose user does not exist cannot start: the self-test says so
/// instead of checking as root silently.
#[test]
fn a_unit_whose_user_does_not_exist_fails_the_service_user_step() {
    require_root("it checks what `owlet selftest` does as root");
    let soc = Soc::init();
    let agent = soc.issue("acme", "a");
    let unit = agent.dir.join("owlet.service");
    std::fs::write(&unit, "[Service]\nUser=owlet-no-such-user\n").unwrap();
    let (status, report) = agent.selftest(&[], &["--service-unit", &unit.display().to_string()]);
    assert_failed_at(
        status,
        &report,
        "service_user",
        "User=owlet-no-such-user",
        "useradd --system",
    );
}
