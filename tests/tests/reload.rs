//! `owlet reload` tells the whole truth, with the real agent and SOC:
//! a `[[fim.watch]]` added at reload starts file watching; a collector that
//! cannot start with the reloaded values is a collector failure (exit 1
//! naming it, `collector_failed` at the SOC, health CRITICAL, retried until
//! it starts, then `collector_recovered`); settings only a start applies are
//! named as needing a restart (exit 1, health WARNING), never "applied".

use std::fs;
use std::path::Path;

use owlet_proto::v1::event::Kind;
use owlet_tests::*;

/// `owlet reload --json`: (exit code, answer, stderr).
fn reload(agent: &Agent) -> (Option<i32>, serde_json::Value, String) {
    let out = agent.reload();
    let answer = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (
        out.status.code(),
        answer,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn watch_rule(tree: &Path) -> toml::Value {
    let mut rule = toml::Table::new();
    rule.insert("path".into(), tree.display().to_string().into());
    toml::Value::Array(vec![toml::Value::Table(rule)])
}

fn agent_alerts(db: &Db, name: &str) -> usize {
    db.events()
        .iter()
        .filter(|e| matches!(&e.event.kind, Some(Kind::Alert(a)) if a.name == name && a.subject == "collector:fim"))
        .count()
}

fn health(agent: &Agent) -> serde_json::Value {
    agent.health().expect("the agent answers health")
}

#[test]
fn reload_starts_what_it_adds_reports_what_fails_and_names_what_needs_a_restart() {
    let mut soc = Soc::init();
    soc.start();
    let db = soc.db();
    let mut agent = soc.issue("acme", "reload");
    let tree = agent.dir.join("etc");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("a.conf"), "a = 1\n").unwrap();
    agent.start();
    wait_until("the agent connected", DEADLINE, || {
        agent
            .health()
            .is_some_and(|h| h["metrics"]["connection"] == "connected")
    });

    // 1. A [[fim.watch]] added at reload starts file watching, now.
    agent.set("fim", "watch", watch_rule(&tree));
    agent.write_config();
    let (code, answer, stderr) = reload(&agent);
    assert_eq!(code, Some(0), "{answer} {stderr}");
    assert_eq!(answer["reload"], "applied", "{answer}");
    assert!(
        answer["added"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "fim"),
        "{answer}"
    );
    wait_until("file watching ready", DEADLINE, || {
        health(&agent)["collectors"]["fim"]["state"] == "running"
    });
    fs::write(tree.join("a.conf"), "a = 2\n").unwrap();
    wait_until("the change at the SOC", DEADLINE, || {
        db.file_changes().iter().any(|c| c.path.ends_with("a.conf"))
    });

    // 2. A changed [fim] that cannot start (its state directory is a file
    // now): a collector failure, named by the reload and by health.
    let fim_state = agent.state_dir.join("fim");
    let kept = agent.dir.join("fim-state-kept");
    fs::rename(&fim_state, &kept).unwrap();
    fs::write(&fim_state, "not a directory").unwrap();
    agent.set("fim", "coalesce", "80ms");
    agent.write_config();
    let (code, answer, _) = reload(&agent);
    assert_eq!(code, Some(1), "{answer}");
    assert_eq!(answer["reload"], "partial", "{answer}");
    let failed = answer["failed"].as_array().cloned().unwrap_or_default();
    assert!(
        failed
            .iter()
            .any(|f| f.as_str().is_some_and(|f| f.starts_with("fim: "))),
        "{answer}"
    );
    let h = health(&agent);
    assert_eq!(h["verdict"], "CRITICAL", "{h}");
    assert_eq!(h["collectors"]["fim"]["state"], "restarting", "{h}");
    wait_until("collector_failed at the SOC", DEADLINE, || {
        agent_alerts(&db, "collector_failed") >= 1
    });
    // Fixed on disk: the retry starts it, and says so.
    fs::remove_file(&fim_state).unwrap();
    fs::rename(&kept, &fim_state).unwrap();
    wait_until("collector_recovered at the SOC", DEADLINE, || {
        agent_alerts(&db, "collector_recovered") >= 1
    });
    assert_eq!(health(&agent)["collectors"]["fim"]["state"], "running");

    // 3. A changed [soc] and [spool] apply only at the next start.
    agent.set("soc", "backoff_max", "2s");
    agent.set("spool", "max_age", "2d");
    agent.write_config();
    let (code, answer, _) = reload(&agent);
    assert_eq!(code, Some(1), "{answer}");
    assert_eq!(answer["reload"], "partial", "{answer}");
    assert_eq!(
        answer["needs_restart"],
        serde_json::json!(["[soc]", "[spool]"]),
        "{answer}"
    );
    let text = output(owlet().args(["reload", "--socket"]).arg(&agent.socket));
    let stderr = String::from_utf8_lossy(&text.stderr);
    assert!(
        stderr.contains("needs a restart: [soc], [spool]"),
        "{stderr}"
    );
    assert!(!stderr.contains("reload applied:"), "{stderr}");
    let h = health(&agent);
    assert_eq!(h["verdict"], "WARNING", "{h}");
    assert!(
        h["reasons"]
            .to_string()
            .contains("wait for a restart of owlet: [soc], [spool]"),
        "{h}"
    );
    // After the restart nothing is pending.
    agent.stop();
    agent.start();
    wait_until("the restarted agent connected", DEADLINE, || {
        agent
            .health()
            .is_some_and(|h| h["metrics"]["connection"] == "connected")
    });
    assert!(health(&agent).get("pending_restart").is_none());
    agent.stop();
}
