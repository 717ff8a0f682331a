//! `owlet health` judges delivery, not only the connection: a real
//! `owlet-soc` whose storage is held (the test takes SQLite's write lock on
//! the SOC's database, so every batch waits and then fails) keeps taking the
//! agent's connections, yet the agent's health turns WARNING and then
//! CRITICAL, naming the undelivered events; once the storage is released
//! the backlog is stored and health is OK again.

use std::time::Duration;

use owlet_tests::*;

fn health(agent: &Agent) -> serde_json::Value {
    agent.health().unwrap_or_default()
}

fn verdict(agent: &Agent) -> String {
    health(agent)["verdict"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_soc_that_stores_nothing_turns_health_warning_then_critical() {
    let mut soc = Soc::init();
    soc.start();
    let mut agent = soc.issue("acme", "delivery");
    agent
        .set("status", "undelivered_warning", "3s")
        .set("status", "undelivered_critical", "8s");
    agent.start();
    wait_until("the agent delivering", DEADLINE, || verdict(&agent) == "OK");

    // Hold the SOC's storage: its writes wait for the lock, then fail.
    let lock = rusqlite::Connection::open(&soc.db).unwrap();
    lock.busy_timeout(Duration::from_secs(30)).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    wait_until("health WARNING for undelivered events", DEADLINE, || {
        let h = health(&agent);
        h["verdict"] == "WARNING"
            && h["reasons"]
                .to_string()
                .contains("events are not being delivered")
    });
    wait_until("health CRITICAL for undelivered events", DEADLINE, || {
        let h = health(&agent);
        h["verdict"] == "CRITICAL"
            && h["reasons"]
                .to_string()
                .contains("events are not being delivered")
    });

    // Released: the backlog is stored, health recovers.
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    wait_until("health OK again", Duration::from_secs(120), || {
        verdict(&agent) == "OK"
    });
    let stored = soc.db().events().len();
    assert!(stored > 0);
    agent.stop();
}
