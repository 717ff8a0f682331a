//! Why the agent cannot reach the SOC reaches the operator: each way of
//! failing has its own class, one log line with the fix, and the same reason
//! in `owlet health` (issue 7: "transport error" is not a reason).

use std::path::Path;

use owlet_tests::*;

/// Starts `agent`, waits for the diagnosis `class`, and checks that the
/// reason (containing `words`) is in health's reasons and in one log line
/// with its fix.
fn assert_diagnosed(mut agent: Agent, class: &str, words: &str) {
    agent.start();
    let health = agent.health_with_problem(class);
    let reason = health["metrics"]["uplink_problem"]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains(words), "reason {reason:?} lacks {words:?}");
    assert!(reason.contains("(fix: "), "reason {reason:?} has no fix");
    assert_ne!(health["verdict"], "OK", "{health}");
    let reasons = &health["reasons"];
    assert!(
        reasons
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains(words)),
        "health reasons {reasons} do not say why"
    );
    let log = agent.log();
    let line = log
        .lines()
        .find(|l| l.contains("cannot reach the SOC") && l.contains(class))
        .unwrap_or_else(|| panic!("no log line for {class}:\n{log}"));
    let message: serde_json::Value = serde_json::from_str(line).unwrap();
    let message = message["fields"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(words), "log line {line} lacks {words:?}");
    assert!(
        !line.contains("transport error") || line.contains("(fix: "),
        "log line {line}"
    );
    assert!(agent.stop().success());
}

fn foreign_ca(dir: &Path) -> std::path::PathBuf {
    let ca = dir.join("foreign-ca");
    // Its soc.pem, beside the ca.pem a test pins, names the address the
    // agent uses, so the configuration loads and the connection is tested.
    owlet_ca::init(&ca, &["localhost".to_string(), "127.0.0.1".to_string()], 30).unwrap();
    ca
}

#[test]
fn nothing_listening_is_a_refusal() {
    let soc = Soc::init(); // never started: its port is free
    let agent = soc.issue("acme", "a");
    assert_diagnosed(agent, "refused", "refused the connection");
}

#[test]
fn a_soc_certificate_from_another_ca_is_an_unknown_issuer() {
    let mut soc = Soc::init();
    soc.start();
    let mut agent = soc.issue("acme", "a");
    let ca = foreign_ca(soc.tmp.path());
    agent.set("soc", "ca", ca.join("ca.pem").display().to_string());
    assert_diagnosed(
        agent,
        "tls_unknown_issuer",
        "not signed by the CA in soc.ca",
    );
}

#[test]
fn a_wrong_server_name_is_a_name_mismatch() {
    let mut soc = Soc::init();
    soc.start();
    let mut agent = soc.issue("acme", "a");
    agent.set("soc", "server_name", "soc.wrong.example");
    // With the SOC's certificate beside ca.pem the configuration is refused
    // before any connection (tests/tests/enroll.rs); without it, only the
    // connection can tell.
    std::fs::remove_file(agent.dir.join("soc.pem")).unwrap();
    assert_diagnosed(
        agent,
        "tls_name_mismatch",
        "does not name \"soc.wrong.example\"",
    );
}

#[test]
fn an_agent_certificate_the_soc_does_not_trust_is_refused_by_the_soc() {
    let mut soc = Soc::init();
    soc.start();
    let tmp = soc.tmp.path().to_path_buf();
    let ca = foreign_ca(&tmp);
    let paths = owlet_ca::issue(
        &ca,
        &owlet_tls::Identity::new("acme", "a").unwrap(),
        &tmp.join("foreign-agent"),
        30,
    )
    .unwrap();
    let mut agent = soc.issue("acme", "a");
    agent.replace_credentials(&paths.cert, &paths.key);
    assert_diagnosed(
        agent,
        "tls_refused_by_soc",
        "refused this agent's certificate",
    );
}

#[test]
fn an_expired_agent_certificate_is_named_as_expired() {
    let mut soc = Soc::init();
    soc.start();
    let tmp = soc.tmp.path().join("expired");
    let now = time::OffsetDateTime::now_utc();
    let paths = owlet_ca::issue_with_validity(
        &soc.ca_dir,
        &owlet_tls::Identity::new("acme", "a").unwrap(),
        &tmp,
        now - time::Duration::days(10),
        now - time::Duration::days(1),
    )
    .unwrap();
    let mut agent = soc.issue("acme", "a");
    agent.replace_credentials(&paths.cert, &paths.key);
    assert_diagnosed(agent, "tls_agent_cert_expired", "as expired");
}
