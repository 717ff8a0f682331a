//! `owlet health` judges delivery, not only the connection: a real
//! `owlet-soc` whose storage is held (the test takes SQLite's write lock on
//! the tenant's event log, so every batch waits and then fails) keeps taking the
//! agent's connections, yet the agent's health turns WARNING and then
//! CRITICAL, naming the undelivered events; once the storage is released
//! the backlog is stored and the delivery reason is gone.

use std::time::Duration;

use owlet_tests::*;

fn health(agent: &Agent) -> serde_json::Value {
    agent.health().unwrap_or_default()
}

const UNDELIVERED: &str = "events are not being delivered";

/// Delivery is healthy: connected, acknowledged within the last seconds,
/// no delivery reason. Judged on the delivery figures, not the overall
/// verdict, so a busy or nearly full test machine (the host collector's own
/// WARNINGs) cannot decide this test.
fn delivering(agent: &Agent) -> bool {
    let h = health(agent);
    h["metrics"]["connection"] == "connected"
        && h["metrics"]["last_ack_age_seconds"]
            .as_u64()
            .is_some_and(|age| age <= 2)
        && !h["reasons"].to_string().contains(UNDELIVERED)
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
    wait_until("the agent delivering", DEADLINE, || delivering(&agent));

    // Hold the SOC's storage: its writes wait for the lock, then fail.
    let lock = soc.db().hold_write_lock("acme");
    wait_until("health WARNING for undelivered events", DEADLINE, || {
        let h = health(&agent);
        h["verdict"] == "WARNING" && h["reasons"].to_string().contains(UNDELIVERED)
    });
    wait_until("health CRITICAL for undelivered events", DEADLINE, || {
        let h = health(&agent);
        h["verdict"] == "CRITICAL" && h["reasons"].to_string().contains(UNDELIVERED)
    });

    // Released: the backlog is stored, health recovers.
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    wait_until("delivering again", Duration::from_secs(120), || {
        delivering(&agent)
    });
    let stored = soc.db().events().len();
    assert!(stored > 0);
    agent.stop();
}
