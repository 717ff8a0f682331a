//! End to end with real checks: an agent runs TCP, HTTP and ICMP checks
//! against real servers on loopback (a TCP listener, `python3 -m
//! http.server`, the kernel's echo reply) and streams their results to a
//! real SOC. A TCP port that closes mid-test raises a `check_down` alert;
//! `owlet reload` with an added check exits 0 and brings that check's
//! results; a reload with a broken config exits non-zero, keeps the running
//! checks, and `owlet health` shows the rejected reload until a good one.

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use owlet_proto::v1::{FailureClass, State};
use owlet_tests::*;

const PAGE: &str = "owlet end-to-end page";

/// `python3 -m http.server` on a free loopback port, serving `dir` with an
/// index page that contains [`PAGE`].
fn http_server(dir: &Path) -> (Proc, u16) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("index.html"), format!("<p>{PAGE}</p>\n")).unwrap();
    let port = free_port();
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
        .arg(dir)
        .arg(port.to_string());
    let mut proc = Proc::spawn("http-server", cmd, dir);
    wait_until("the HTTP server to listen", DEADLINE, || {
        if let Some(status) = proc.try_wait() {
            panic!(
                "python3 -m http.server exited with {status}: {}",
                proc.log()
            );
        }
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (proc, port)
}

/// One `[[probe.check]]` that runs every second.
fn check(id: &str, check_type: &str, target: &str) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("id".into(), id.into());
    t.insert("type".into(), check_type.into());
    t.insert("target".into(), target.into());
    t.insert("interval".into(), "1s".into());
    t.insert("timeout".into(), "1s".into());
    t
}

fn set_checks(agent: &mut Agent, checks: &[toml::Table]) {
    let checks: Vec<toml::Value> = checks.iter().cloned().map(toml::Value::Table).collect();
    agent.set("probe", "check", checks);
}

/// Results of check `id` stored at the SOC, in arrival order.
fn results(db: &Db, id: &str) -> Vec<owlet_proto::v1::CheckResult> {
    db.events_of("acme", "a")
        .iter()
        .filter_map(|e| e.check_result().filter(|c| c.check_id == id).cloned())
        .collect()
}

fn wait_up(agent: &mut Agent, db: &Db, id: &str) {
    wait_until(
        &format!("an UP result of check {id} at the SOC"),
        DEADLINE,
        || {
            agent.assert_running();
            results(db, id).iter().any(|c| c.result == State::Up as i32)
        },
    );
}

/// `owlet reload --json`: exit code, the outcome it printed, and all its
/// output for messages.
fn reload(agent: &Agent) -> (Option<i32>, serde_json::Value, String) {
    let out = agent.reload();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let text = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let outcome = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("owlet reload --json printed no JSON ({e}): {text}"));
    (out.status.code(), outcome, text)
}

/// The check ids the outcome lists as `what` (added / changed / removed).
fn listed(outcome: &serde_json::Value, what: &str) -> Vec<String> {
    outcome[what]
        .as_array()
        .unwrap_or_else(|| panic!("the reload outcome has no {what:?} list: {outcome}"))
        .iter()
        .map(|id| id.as_str().unwrap_or_default().to_string())
        .collect()
}

/// What `owlet health --json` says about a rejected reload: its
/// `reload_rejected` errors and the reasons that mention a reload.
fn rejected_reload(agent: &Agent) -> (Option<String>, Vec<String>) {
    let health = agent.health().expect("agent health");
    let reasons = health["reasons"]
        .as_array()
        .unwrap_or_else(|| panic!("health without reasons: {health}"))
        .iter()
        .filter_map(|r| r.as_str())
        .filter(|r| r.to_lowercase().contains("reload"))
        .map(str::to_string)
        .collect();
    (
        health["reload_rejected"].as_str().map(str::to_string),
        reasons,
    )
}

/// The config's current `[[probe.check]]` tables.
fn configured_checks(agent: &Agent) -> Vec<toml::Table> {
    agent.config["probe"]["check"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_table().unwrap().clone())
        .collect()
}

#[test]
fn real_checks_stream_results_and_a_down_alert_and_reload_adds_a_check() {
    let mut soc = Soc::init();
    soc.start();
    let db = soc.db();
    let mut agent = soc.issue("acme", "a");
    let (_http, http_port) = http_server(&soc.tmp.path().join("www"));
    let mut port = Port::open();
    let mut web = check("web", "http", &format!("http://127.0.0.1:{http_port}/"));
    web.insert("contains".into(), PAGE.into());
    let mut db_port = check("db-port", "tcp", &port.target());
    db_port.insert("down_after".into(), 2.into());
    set_checks(
        &mut agent,
        &[web, db_port, check("loopback", "icmp", "127.0.0.1")],
    );
    agent.start();

    for id in ["web", "db-port", "loopback"] {
        wait_up(&mut agent, &db, id);
    }
    let web = results(&db, "web");
    assert!(
        web.iter().all(|c| c.result == State::Up as i32),
        "an HTTP result was not UP against a live server: {web:?}"
    );
    let down_alerts = |db: &Db| -> Vec<Stored> {
        db.events_of("acme", "a")
            .into_iter()
            .filter(|e| {
                e.alert()
                    .is_some_and(|a| a.name == "check_down" && a.subject == "db-port")
            })
            .collect()
    };
    assert!(
        down_alerts(&db).is_empty(),
        "check_down while the port is open"
    );

    port.close();
    wait_until(
        "a check_down alert for db-port at the SOC",
        DEADLINE,
        || !down_alerts(&db).is_empty(),
    );
    let alert = down_alerts(&db)[0].alert().unwrap().clone();
    assert_eq!(alert.new_state, State::Down as i32, "{alert:?}");
    assert_eq!(alert.failure, FailureClass::Refused as i32, "{alert:?}");
    assert!(
        results(&db, "db-port")
            .iter()
            .any(|c| c.result == State::Down as i32 && c.failure == FailureClass::Refused as i32),
        "no DOWN (refused) result for the closed port"
    );

    // Reload with one more check: it runs and its results arrive.
    let added = Port::open();
    let mut checks = configured_checks(&agent);
    checks.push(check("added", "tcp", &added.target()));
    set_checks(&mut agent, &checks);
    agent.write_config();
    let (code, outcome, text) = reload(&agent);
    assert_eq!(code, Some(0), "owlet reload of a good config: {text}");
    assert_eq!(outcome["reload"], "applied", "{text}");
    assert_eq!(listed(&outcome, "added"), ["added"], "{text}");
    wait_up(&mut agent, &db, "added");
    assert!(agent.stop().success());
}

#[test]
fn reload_reports_its_outcome_and_a_rejected_reload_shows_in_health_until_a_good_one() {
    let mut soc = Soc::init();
    soc.start();
    let db = soc.db();
    let mut agent = soc.issue("acme", "a");
    let first = Port::open();
    let second = Port::open();
    set_checks(&mut agent, &[check("first", "tcp", &first.target())]);
    agent.start();
    wait_up(&mut agent, &db, "first");

    // Added, then changed and removed: the outcome names each.
    set_checks(
        &mut agent,
        &[
            check("first", "tcp", &first.target()),
            check("second", "tcp", &second.target()),
        ],
    );
    agent.write_config();
    let (code, outcome, text) = reload(&agent);
    assert_eq!(code, Some(0), "owlet reload adding a check: {text}");
    assert_eq!(outcome["reload"], "applied", "{text}");
    assert_eq!(listed(&outcome, "added"), ["second"], "{text}");
    assert!(listed(&outcome, "changed").is_empty(), "{text}");
    assert!(listed(&outcome, "removed").is_empty(), "{text}");
    wait_up(&mut agent, &db, "second");

    let mut slower = check("second", "tcp", &second.target());
    slower.insert("interval".into(), "2s".into());
    set_checks(&mut agent, std::slice::from_ref(&slower));
    agent.write_config();
    let (code, outcome, text) = reload(&agent);
    assert_eq!(code, Some(0), "owlet reload changing a check: {text}");
    assert_eq!(listed(&outcome, "changed"), ["second"], "{text}");
    assert_eq!(listed(&outcome, "removed"), ["first"], "{text}");
    assert!(listed(&outcome, "added").is_empty(), "{text}");
    assert_eq!(
        rejected_reload(&agent),
        (None, vec![]),
        "health mentions a rejected reload after good ones"
    );

    // A broken config: rejected with the error, the running checks stay.
    let mut broken = slower.clone();
    broken.insert("intervall".into(), "1s".into());
    set_checks(&mut agent, &[broken]);
    agent.write_config();
    let (code, outcome, text) = reload(&agent);
    assert_eq!(code, Some(2), "owlet reload of a broken config: {text}");
    assert_eq!(outcome["reload"], "rejected", "{text}");
    assert!(
        outcome["errors"].to_string().contains("intervall"),
        "the rejection does not name the bad key: {text}"
    );
    let (errors, reasons) = rejected_reload(&agent);
    assert!(
        errors.is_some_and(|e| e.contains("intervall")) && !reasons.is_empty(),
        "owlet health does not show the rejected reload: {:?}",
        agent.health()
    );
    let before = results(&db, "second").len();
    wait_until(
        "check second to keep running after the rejected reload",
        DEADLINE,
        || results(&db, "second").len() > before + 1,
    );
    assert!(
        rejected_reload(&agent).0.is_some(),
        "the rejected reload left health before a good reload"
    );

    // A good reload clears it.
    set_checks(&mut agent, &[slower]);
    agent.write_config();
    let (code, outcome, text) = reload(&agent);
    assert_eq!(code, Some(0), "owlet reload of the fixed config: {text}");
    assert_eq!(outcome["reload"], "applied", "{text}");
    assert_eq!(
        rejected_reload(&agent),
        (None, vec![]),
        "health still shows a rejected reload after a good one"
    );
    assert!(agent.stop().success());
}
