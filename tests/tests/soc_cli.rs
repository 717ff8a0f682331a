//! The analyst's command line against a real receiver and agent: names are
//! checked (an unknown tenant or agent is an error listing what exists),
//! filters filter, SQL stays inside one tenant, exports carry explicit
//! offsets, and a contract's end exports then deletes a tenant.

use std::process::Command;

use owlet_tests::*;

fn soc_cmd(soc: &Soc, args: &[&str]) -> Command {
    let mut cmd = owlet_soc();
    cmd.args(args).arg("--config").arg(&soc.config);
    cmd
}

/// Runs a command that must fail; returns its stderr.
fn fails(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        !out.status.success(),
        "{cmd:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_analysts_commands_check_names_filter_and_stay_in_one_tenant() {
    let mut soc = Soc::init();
    // Read-side commands create nothing (run as root before the receiver's
    // first start, they would leave files its user cannot write).
    let out = run_ok(&mut soc_cmd(&soc, &["status"]));
    assert!(out.contains("has not run"), "{out}");
    let root = soc.db.parent().unwrap().to_path_buf();
    assert!(!root.join("tenants").exists() && !root.join("cursors.db").exists());
    soc.start();
    let mut acme = soc.issue("acme", "fw1");
    acme.start();
    let mut globex = soc.issue("globex", "g1");
    globex.start();
    wait_until("both tenants' heartbeats stored", DEADLINE, || {
        let db = soc.db();
        !db.events_of("acme", "fw1").is_empty() && !db.events_of("globex", "g1").is_empty()
    });

    // Names: a tenant given as an agent, an unknown tenant, an unknown agent.
    let err = fails(&mut soc_cmd(
        &soc,
        &["tail", "--agent", "acme", "--no-follow"],
    ));
    assert!(err.contains("use --tenant acme"), "{err}");
    let err = fails(&mut soc_cmd(
        &soc,
        &["tail", "--agent", "nosuch/agent", "--no-follow"],
    ));
    assert!(
        err.contains("no tenant \"nosuch\"") && err.contains("acme, globex"),
        "{err}"
    );
    let err = fails(&mut soc_cmd(
        &soc,
        &["tail", "--agent", "acme/nosuch", "--no-follow"],
    ));
    assert!(err.contains("acme/fw1"), "{err}");
    let err = fails(&mut soc_cmd(
        &soc,
        &["tail", "--kind", "flows", "--no-follow"],
    ));
    assert!(err.contains("flow_record"), "{err}");

    // Filters: one tenant, one kind, since an age, history only.
    let out = run_ok(&mut soc_cmd(
        &soc,
        &[
            "tail",
            "--tenant",
            "acme",
            "--kind",
            "agent_status",
            "--since",
            "1h",
            "--no-follow",
        ],
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert!(!lines.is_empty(), "no history printed");
    for line in &lines {
        assert!(
            line.contains("acme/fw1") && line.contains("agent_status"),
            "{line}"
        );
    }

    // agents: events stored per agent.
    let agents = soc.agents_json();
    let fw1 = agents.iter().find(|a| a["agent_id"] == "fw1").unwrap();
    assert!(fw1["events_stored"].as_u64().unwrap() > 0, "{fw1}");

    // SQL stays in one tenant.
    let out = run_ok(&mut soc_cmd(
        &soc,
        &[
            "query",
            "--tenant",
            "acme",
            "--tsv",
            "SELECT DISTINCT agent FROM events",
        ],
    ));
    assert_eq!(out.trim(), "agent\nfw1");
    let other = soc.db().tenant_file("globex");
    let attach = format!("ATTACH DATABASE '{}' AS g", other.display());
    let err = fails(&mut soc_cmd(&soc, &["query", "--tenant", "acme", &attach]));
    assert!(err.contains("too many attached databases"), "{err}");

    // Export: CSV with the zone's offset on every time.
    let out = run_ok(&mut soc_cmd(
        &soc,
        &[
            "export",
            "--tenant",
            "acme",
            "--format",
            "csv",
            "--tz",
            "Asia/Tokyo",
        ],
    ));
    let mut rows = out.lines();
    assert!(
        rows.next()
            .unwrap()
            .starts_with("id,tenant,agent,seq,time,received")
    );
    let first = rows.next().expect("no exported row");
    assert!(
        first.starts_with("acme/fw1/") && first.contains("+09:00"),
        "{first}"
    );
    let err = fails(&mut soc_cmd(
        &soc,
        &["export", "--tenant", "acme", "--tz", "Mars/Olympus"],
    ));
    assert!(err.contains("Mars/Olympus"), "{err}");

    // This month's report: text says what was found or "Nothing found";
    // JSON carries the numbers.
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let text = run_ok(&mut soc_cmd(
        &soc,
        &["report", "--tenant", "acme", "--period", &month],
    ));
    assert!(text.contains("Nothing found"), "{text}");
    let json = run_ok(&mut soc_cmd(
        &soc,
        &["report", "--tenant", "acme", "--period", &month, "--json"],
    ));
    serde_json::from_str::<serde_json::Value>(&json).expect("report --json is JSON");
    // The HTML page in Japanese, written to a file; PDF needs a file.
    let page = soc.tmp.path().join("acme.ja.html");
    run_ok(&mut soc_cmd(
        &soc,
        &[
            "report",
            "--tenant",
            "acme",
            "--period",
            &month,
            "--format",
            "html",
            "--lang",
            "ja",
            "--out",
            page.to_str().unwrap(),
        ],
    ));
    let page = std::fs::read_to_string(&page).unwrap();
    assert!(page.contains("<html lang=\"ja\">") && page.contains("監視レポート"));
    let err = fails(&mut soc_cmd(
        &soc,
        &[
            "report", "--tenant", "acme", "--period", &month, "--format", "pdf",
        ],
    ));
    assert!(err.contains("--out"), "{err}");
    let err = fails(&mut soc_cmd(
        &soc,
        &["report", "--tenant", "acme", "--period", "November"],
    ));
    assert!(err.contains("2026-11") || err.contains("YYYY-MM"), "{err}");

    // The end of a contract: export, then delete.
    acme.stop();
    globex.stop();
    soc.stop();
    let out_dir = soc.tmp.path().join("acme-handover");
    run_ok(&mut soc_cmd(
        &soc,
        &[
            "tenant",
            "export",
            "--tenant",
            "acme",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    ));
    let sums = std::fs::read_to_string(out_dir.join("SHA256SUMS")).unwrap();
    assert!(
        sums.contains("acme.db") && sums.contains("acme.ndjson"),
        "{sums}"
    );
    let ndjson = std::fs::read_to_string(out_dir.join("acme.ndjson")).unwrap();
    assert!(ndjson.lines().count() > 0);
    for line in ndjson.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["tenant"], "acme", "{line}");
    }
    let err = fails(&mut soc_cmd(
        &soc,
        &["tenant", "delete", "--tenant", "acme"],
    ));
    assert!(err.contains("--yes"), "{err}");
    run_ok(&mut soc_cmd(
        &soc,
        &["tenant", "delete", "--tenant", "acme", "--yes"],
    ));
    assert!(!soc.db().tenant_file("acme").exists());
    assert!(soc.db().tenant_file("globex").exists());
    let err = fails(&mut soc_cmd(
        &soc,
        &["query", "--tenant", "acme", "SELECT 1"],
    ));
    assert!(err.contains("no tenant \"acme\""), "{err}");
}
