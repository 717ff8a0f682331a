//! `owlet fim baseline | scan --config FILE` load owlet.toml with the
//! agent's own loader: a relative `state_dir` is the config file's (not the
//! working directory's), `agent.hw_profile` fills in
//! `fim.baseline_io_budget`, and the running agent (`owlet run`, same file)
//! finds the baseline the command wrote — it reports a change made in
//! between as made while it was stopped. A bad key gives the same
//! `FILE:LINE:COL` error as `owlet check-config`. Run as root, the baseline
//! is handed to the service user (`User=` of the unit named with
//! `--service-unit`: a test user made here). Needs root (useradd, chown).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use owlet_proto::v1::event::Kind;
use owlet_tests::*;

/// An issued agent with a relative `state_dir`, `hw_profile = "small"` and a
/// watched tree holding `a.conf`.
fn agent_with_watch(soc: &Soc, id: &str) -> (Agent, PathBuf) {
    let mut agent = soc.issue("acme", id);
    let tree = agent.dir.join("watched");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("a.conf"), "setting = 1\n").unwrap();
    let mut rule = toml::Table::new();
    rule.insert("path".into(), tree.display().to_string().into());
    agent
        .set("agent", "state_dir", "state")
        .set("agent", "hw_profile", "small")
        .set("fim", "watch", vec![toml::Value::Table(rule)]);
    agent.write_config();
    (agent, tree)
}

/// `owlet fim ARGS --config FILE` from `/`, so nothing relative resolves
/// against the test's working directory by accident.
fn fim(args: &[&str], config: &Path) -> std::process::Output {
    output(
        owlet()
            .current_dir("/")
            .arg("fim")
            .args(args)
            .arg("--config")
            .arg(config),
    )
}

#[test]
fn baseline_and_scan_load_the_config_as_run_does() {
    let mut soc = Soc::init();
    soc.start();
    let (mut agent, tree) = agent_with_watch(&soc, "fimcli");
    // The state directory the agent uses: relative to the config file.
    let fim_dir = agent.dir.join("state").join("fim");

    let out = fim(&["baseline"], &agent.config_path);
    assert_eq!(out.status.code(), Some(0), "{}", combined(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains(&format!("-> {}", fim_dir.display())),
        "the baseline went elsewhere:\n{stdout}"
    );
    // The profile's budget, as `hw-profile show --config` says is in effect.
    let shown = profile_shown("small", &agent.config_path);
    let budget = profile_setting(&shown, "fim.baseline_io_budget");
    assert_eq!(budget["from"], "profile", "{shown}");
    assert_eq!(budget["value"], 8 << 20, "{shown}");
    assert!(
        stdout.contains("I/O budget 8.0 MiB/s"),
        "the baseline did not read at small's budget:\n{stdout}"
    );

    let out = fim(&["scan"], &agent.config_path);
    assert_eq!(out.status.code(), Some(0), "{}", combined(&out));
    assert!(combined(&out).contains("0 change(s)"), "{}", combined(&out));

    // Changed while no agent runs: `owlet run` with the same file compares
    // with the baseline `fim baseline` wrote and reports it as such.
    fs::write(tree.join("a.conf"), "setting = 2\n").unwrap();
    agent.start();
    let db = soc.db();
    wait_until(
        "the change made before the start at the SOC",
        DEADLINE,
        || {
            db.events_of("acme", "fimcli").iter().any(|e| {
                matches!(&e.event.kind, Some(Kind::FileChange(c))
                    if c.path.ends_with("a.conf") && c.while_agent_stopped)
            })
        },
    );
    let reported = soc
        .agents_json()
        .into_iter()
        .find(|a| a["agent_id"] == "fimcli")
        .and_then(|a| a["hw_profile"].as_str().map(str::to_string));
    assert_eq!(reported.as_deref(), Some("small"));
}

#[test]
fn a_bad_key_is_the_same_error_as_check_config() {
    let soc = Soc::init();
    let (agent, _tree) = agent_with_watch(&soc, "badkey");
    let broken = fs::read_to_string(&agent.config_path)
        .unwrap()
        .replace("hw_profile = ", "hw_profil = ");
    fs::write(&agent.config_path, broken).unwrap();
    let check = output(owlet().arg("check-config").arg(&agent.config_path));
    assert_eq!(check.status.code(), Some(2));
    let expected = String::from_utf8_lossy(&check.stderr).into_owned();
    assert!(
        expected.contains(&format!("{}:", agent.config_path.display()))
            && expected
                .contains("agent.hw_profil: unknown key `hw_profil`; did you mean `hw_profile`?"),
        "{expected}"
    );
    for command in ["baseline", "scan"] {
        let out = fim(&[command], &agent.config_path);
        assert_eq!(out.status.code(), Some(2), "{command}: {}", combined(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            expected,
            "owlet fim {command} and owlet check-config disagree"
        );
    }
}

/// Every path under `dir` (itself included) with its owner.
fn owners(dir: &Path) -> Vec<(PathBuf, u32, u32)> {
    let meta = fs::symlink_metadata(dir).unwrap();
    let mut all = vec![(dir.to_path_buf(), meta.uid(), meta.gid())];
    if meta.is_dir() {
        for entry in fs::read_dir(dir).unwrap() {
            all.extend(owners(&entry.unwrap().path()));
        }
    }
    all
}

#[test]
fn a_root_baseline_is_handed_to_the_service_user() {
    require_root("it checks what `owlet fim baseline` does as root");
    let user = TestUser::create("owlet-fimtest");
    let (uid, gid) = user.ids();
    let soc = Soc::init();
    let (agent, _tree) = agent_with_watch(&soc, "owner");
    let unit = agent.dir.join("owlet.service");
    fs::write(
        &unit,
        format!(
            "[Service]\nUser={}\nGroup={}\nAmbientCapabilities=CAP_NET_RAW\n",
            user.name, user.name
        ),
    )
    .unwrap();
    let state = agent.dir.join("state");
    assert!(!state.exists());
    let out = output(
        owlet()
            .args(["fim", "baseline", "--config"])
            .arg(&agent.config_path)
            .arg("--service-unit")
            .arg(&unit),
    );
    assert_eq!(out.status.code(), Some(0), "{}", combined(&out));
    let fim_dir = state.join("fim");
    let found = owners(&fim_dir);
    assert!(
        found.len() > 1,
        "nothing written in {}: {found:?}",
        fim_dir.display()
    );
    let wrong: Vec<_> = found
        .iter()
        .filter(|(_, u, g)| (*u, *g) != (uid, gid))
        .collect();
    assert!(
        wrong.is_empty(),
        "not owned by {} ({uid}:{gid}): {wrong:?}",
        user.name
    );
    // The state directory this command created is the service's too.
    let meta = fs::metadata(&state).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    assert!(
        combined(&out).contains(&format!("handed to {}", user.name)),
        "{}",
        combined(&out)
    );
    // The service user can use it: as that user, scan finds the baseline.
    // (The config and certificates are root's 0600 files in a 0700 temp
    // directory here; opening them up is what a package does with 0640
    // root:owlet.)
    for p in [soc.tmp.path(), agent.dir.as_path()] {
        fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    std::os::unix::fs::chown(agent.dir.join("agent.key"), Some(uid), Some(gid)).unwrap();
    let scan = output(
        Command::new("setpriv")
            .args([
                "--reuid",
                &uid.to_string(),
                "--regid",
                &gid.to_string(),
                "--clear-groups",
            ])
            .arg(bin("owlet"))
            .args(["fim", "scan", "--config"])
            .arg(&agent.config_path),
    );
    assert_eq!(
        scan.status.code(),
        Some(0),
        "as {}: {}",
        user.name,
        combined(&scan)
    );
}
