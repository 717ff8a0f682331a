//! File integrity monitoring in the real agent, seen at the real SOC: the
//! scripted scenario (editor save by rename, `sed -i`, `echo >>`, truncate,
//! chmod, chown, mv in and out, rm, `mkdir -p` then a file inside, symlink
//! swap, edits while the agent is stopped) — each change reported exactly
//! once with the right hashes and diffs, secrets redacted — and the inotify
//! watch limit: fallback scanning, reported, still detecting changes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use owlet_proto::v1::{Alert, FileChange, FileChangeKind, event::Kind};
use owlet_tests::*;

/// `[[fim.watch]]` on `tree`, quick settling, fast fallback scans.
fn watch(agent: &mut Agent, tree: &Path) {
    let mut rule = toml::Table::new();
    rule.insert("path".into(), tree.display().to_string().into());
    rule.insert("tag".into(), "test-config".into());
    rule.insert("severity".into(), "critical".into());
    rule.insert("exclude".into(), vec!["**/*.swp".to_string()].into());
    agent
        .set("fim", "watch", vec![toml::Value::Table(rule)])
        .set("fim", "scan_interval", "1s");
}

fn sh(script: &str, dir: &Path) {
    let out = output(Command::new("sh").arg("-c").arg(script).current_dir(dir));
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sha256(path: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(path));
    out.split_whitespace().next().unwrap().to_string()
}

fn fim_alerts(db: &Db, name: &str) -> Vec<Alert> {
    db.events()
        .into_iter()
        .filter_map(|e| match e.event.kind {
            Some(Kind::Alert(a)) if a.source == "fim" && a.name == name => Some(a),
            _ => None,
        })
        .collect()
}

/// The scenario's bookkeeping: every expected change, in order.
struct Script<'a> {
    db: &'a Db,
    tree: PathBuf,
    expected: Vec<(String, FileChangeKind)>,
}

impl Script<'_> {
    fn path(&self, rel: &str) -> String {
        self.tree.join(rel).display().to_string()
    }

    /// Runs `script` in the tree and waits for the change it must cause;
    /// returns that change.
    fn step(&mut self, script: &str, rel: &str, kind: FileChangeKind) -> FileChange {
        sh(script, &self.tree);
        self.wait_for(rel, kind)
    }

    /// Waits for the next `kind` change of `rel` (and expects it).
    fn wait_for(&mut self, rel: &str, kind: FileChangeKind) -> FileChange {
        let path = self.path(rel);
        let before = self
            .expected
            .iter()
            .filter(|(p, k)| *p == path && *k == kind)
            .count();
        self.expected.push((path.clone(), kind));
        let mut found = None;
        wait_until(&format!("{kind:?} of {rel} at the SOC"), DEADLINE, || {
            let matching: Vec<FileChange> = self
                .db
                .file_changes()
                .into_iter()
                .filter(|c| c.path == path && c.change() == kind)
                .collect();
            found = matching.get(before).cloned();
            found.is_some()
        });
        found.unwrap()
    }

    /// After a marker change settles, every change seen is one expected:
    /// nothing twice, nothing extra.
    fn assert_exactly_once(&self) {
        let marker = self.path("marker");
        let markers = || {
            self.db
                .file_changes()
                .iter()
                .filter(|c| c.path == marker)
                .count()
        };
        let before = markers();
        sh(&format!("echo {before} > marker"), &self.tree);
        wait_until("the marker at the SOC", DEADLINE, || markers() > before);
        let seen: Vec<(String, FileChangeKind)> = self
            .db
            .file_changes()
            .into_iter()
            .filter(|c| c.path != marker)
            .map(|c| (c.path.clone(), c.change()))
            .collect();
        assert_eq!(seen, self.expected, "changes at the SOC vs the script");
    }
}

#[test]
fn every_scripted_change_reaches_the_soc_exactly_once_with_hashes_and_diffs() {
    let mut soc = Soc::init();
    soc.start();
    let db = soc.db();
    let mut agent = soc.issue("acme", "fim");
    let tree = agent.dir.join("tree");
    let outside = agent.dir.join("outside");
    fs::create_dir_all(tree.join("sub")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(tree.join("app.conf"), "port = 1\nname = web\n").unwrap();
    fs::write(tree.join("db.conf"), "user = app\n").unwrap();
    fs::write(tree.join("log.conf"), "level = info\n").unwrap();
    fs::write(tree.join("mode.conf"), "m\n").unwrap();
    fs::write(tree.join("owner.conf"), "o\n").unwrap();
    fs::write(tree.join("leaving.conf"), "l\n").unwrap();
    fs::write(tree.join("doomed.conf"), "d\n").unwrap();
    fs::write(tree.join("sub/v1"), "v1\n").unwrap();
    fs::write(tree.join("sub/v2"), "v2\n").unwrap();
    fs::write(outside.join("arriving.conf"), "a\n").unwrap();
    std::os::unix::fs::symlink("sub/v1", tree.join("current")).unwrap();
    watch(&mut agent, &tree);
    agent.start();
    wait_until("fim_baseline_ready at the SOC", DEADLINE, || {
        !fim_alerts(&db, "fim_baseline_ready").is_empty()
    });
    let ready = &fim_alerts(&db, "fim_baseline_ready")[0];
    assert_eq!(ready.labels["files"], "10", "{ready:?}");
    let mut s = Script {
        db: &db,
        tree: tree.clone(),
        expected: Vec::new(),
    };
    let app = tree.join("app.conf");

    // vim-style save: a temp file renamed over the original.
    let old = sha256(&app);
    let c = s.step(
        "printf 'port = 2\\nname = web\\n' > .app.conf.tmp && mv .app.conf.tmp app.conf",
        "app.conf",
        FileChangeKind::Modified,
    );
    assert_eq!(
        (c.old_sha256.as_str(), c.new_sha256.clone()),
        (old.as_str(), sha256(&app))
    );
    assert!(
        c.diff.contains("-port = 1") && c.diff.contains("+port = 2"),
        "{}",
        c.diff
    );
    assert_eq!((c.tag.as_str(), c.coalesced > 0), ("test-config", true));
    assert_eq!(c.file_type, "file");
    assert!(!c.changed_by.is_empty());

    // sed -i that adds a secret: the diff shows the change, not the secret.
    let c = s.step(
        "sed -i 's/user = app/user = app\\npassword = hunter2/' db.conf",
        "db.conf",
        FileChangeKind::Modified,
    );
    assert!(
        !c.diff.contains("hunter2"),
        "secret in the diff: {}",
        c.diff
    );
    assert!(c.redacted_lines >= 1, "{c:?}");
    assert_eq!(c.new_sha256, sha256(&tree.join("db.conf")));

    // echo >> and truncate.
    let c = s.step(
        "echo 'debug = true' >> log.conf",
        "log.conf",
        FileChangeKind::Modified,
    );
    assert!(c.diff.contains("+debug = true"), "{}", c.diff);
    let c = s.step(": > log.conf", "log.conf", FileChangeKind::Modified);
    assert_eq!(
        (c.new_size, c.new_sha256.as_str()),
        (
            0,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        )
    );

    // chmod and chown: attributes only.
    let c = s.step(
        "chmod 600 mode.conf",
        "mode.conf",
        FileChangeKind::Attributes,
    );
    assert_eq!((c.old_mode & 0o777, c.new_mode & 0o777), (0o644, 0o600));
    assert_eq!(c.old_sha256, c.new_sha256);
    let c = s.step(
        "chown 4242:4343 owner.conf",
        "owner.conf",
        FileChangeKind::Attributes,
    );
    assert_eq!((c.old_uid, c.uid, c.old_gid, c.gid), (0, 4242, 0, 4343));

    // mv out of and into the tree; rm.
    s.step(
        "mv leaving.conf ../outside/",
        "leaving.conf",
        FileChangeKind::Deleted,
    );
    let c = s.step(
        "mv ../outside/arriving.conf .",
        "arriving.conf",
        FileChangeKind::Created,
    );
    assert_eq!(c.new_sha256, sha256(&tree.join("arriving.conf")));
    let c = s.step("rm doomed.conf", "doomed.conf", FileChangeKind::Deleted);
    assert!(!c.old_sha256.is_empty() && c.new_sha256.is_empty());

    // A new directory tree and a file in it, at once.
    let c = s.step(
        "mkdir -p a/b && echo 'x = 1' > a/b/new.conf",
        "a/b/new.conf",
        FileChangeKind::Created,
    );
    assert!(c.diff.contains("+x = 1"), "{}", c.diff);
    s.step(
        "echo 'y = 2' >> a/b/new.conf",
        "a/b/new.conf",
        FileChangeKind::Modified,
    );

    // Symlink swap (a new link renamed over the old one).
    let c = s.step(
        "ln -s sub/v2 current.new && mv -T current.new current",
        "current",
        FileChangeKind::Modified,
    );
    assert_eq!(
        (c.old_symlink_target.as_str(), c.symlink_target.as_str()),
        ("sub/v1", "sub/v2")
    );
    assert_eq!(c.file_type, "symlink");

    // The vim save again: the file is still watched after the rename.
    s.step(
        "printf 'port = 3\\nname = web\\n' > .app.conf.tmp && mv .app.conf.tmp app.conf",
        "app.conf",
        FileChangeKind::Modified,
    );
    s.assert_exactly_once();

    // Edits while the agent is stopped are reported at the next start, once,
    // marked, with the diff against the previous content.
    assert!(agent.stop().success());
    sh(
        "printf 'port = 4\\nname = web\\n' > app.conf && rm sub/v1",
        &tree,
    );
    agent.start();
    let c = s.wait_for("app.conf", FileChangeKind::Modified);
    assert!(c.while_agent_stopped, "{c:?}");
    assert!(
        c.diff.contains("-port = 3") && c.diff.contains("+port = 4"),
        "{}",
        c.diff
    );
    let c = s.wait_for("sub/v1", FileChangeKind::Deleted);
    assert!(c.while_agent_stopped, "{c:?}");
    s.assert_exactly_once();
    agent.drain_and_stop(DEADLINE);
}

#[test]
fn past_the_inotify_watch_limit_directories_are_scanned_and_changes_still_found() {
    let mut soc = Soc::init();
    soc.start();
    let db = soc.db();
    let mut agent = soc.issue("acme", "fim-limit");
    let tree = agent.dir.join("tree");
    const DIRS: usize = 20;
    for i in 0..DIRS {
        fs::create_dir_all(tree.join(format!("d{i:02}"))).unwrap();
        fs::write(tree.join(format!("d{i:02}/f.conf")), "v = 1\n").unwrap();
    }
    watch(&mut agent, &tree);
    agent.write_config();
    // The agent runs in a user namespace of its own whose inotify watch
    // limit (/proc/sys/user/max_inotify_watches: the per-namespace view of
    // fs.inotify.max_user_watches) is 5: the tree (21 directories) cannot be
    // watched whole. The host's limit, which every other process of root
    // shares, is left alone.
    let mut cmd = Command::new("unshare");
    cmd.args(["--user", "--map-root-user", "sh", "-c"])
        .arg("echo 5 > /proc/sys/user/max_inotify_watches && exec \"$0\" run --config \"$1\"")
        .arg(bin("owlet"))
        .arg(&agent.config_path);
    let mut proc = Proc::spawn("owlet", cmd, &agent.dir);
    wait_until("fim_watch_limit at the SOC", DEADLINE, || {
        !fim_alerts(&db, "fim_watch_limit").is_empty()
    });
    let alert = &fim_alerts(&db, "fim_watch_limit")[0];
    assert!(alert.message.contains("scanned every 1s"), "{alert:?}");
    assert_eq!(alert.labels["max_user_watches"], "5", "{alert:?}");
    wait_until("fim_baseline_ready at the SOC", DEADLINE, || {
        !fim_alerts(&db, "fim_baseline_ready").is_empty()
    });
    let health = agent.health().unwrap();
    let fim = &health["collectors"]["fim"];
    assert_eq!(fim["detail"]["fallback_scanning"], true, "{health}");
    assert!(
        fim["detail"]["unwatched_dirs"].as_u64().unwrap() >= 15,
        "{health}"
    );
    assert!(
        fim["reasons"].to_string().contains("watch limit"),
        "health says so: {health}"
    );

    // A change in every directory, watched or not, is found — once each.
    for i in 0..DIRS {
        fs::write(tree.join(format!("d{i:02}/f.conf")), "v = 2\n").unwrap();
    }
    fs::write(tree.join("d19/new.conf"), "n\n").unwrap();
    let changes = || {
        let mut seen: Vec<(String, FileChangeKind)> = db
            .file_changes()
            .into_iter()
            .map(|c| (c.path.clone(), c.change()))
            .collect();
        seen.sort();
        seen
    };
    let mut expected: Vec<(String, FileChangeKind)> = (0..DIRS)
        .map(|i| {
            (
                tree.join(format!("d{i:02}/f.conf")).display().to_string(),
                FileChangeKind::Modified,
            )
        })
        .collect();
    expected.push((
        tree.join("d19/new.conf").display().to_string(),
        FileChangeKind::Created,
    ));
    expected.sort();
    wait_until("every change at the SOC", DEADLINE, || {
        changes().len() >= expected.len()
    });
    // Two more fallback scans: nothing is reported twice.
    let scans = || {
        agent
            .health()
            .and_then(|h| h["collectors"]["fim"]["detail"]["fallback_scans"].as_u64())
            .unwrap_or(0)
    };
    let now = scans();
    wait_until("two more fallback scans", DEADLINE, || scans() >= now + 2);
    assert_eq!(changes(), expected);
    assert_eq!(
        fim_alerts(&db, "fim_watch_limit").len(),
        1,
        "said once, not at every scan"
    );
    proc.signal(nix::sys::signal::Signal::SIGTERM);
    let status = proc.terminate(DEADLINE);
    assert!(status.success(), "{}", proc.log());
}
