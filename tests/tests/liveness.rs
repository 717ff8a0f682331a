//! The monitor of the monitor: a SOC records `agent_silent` when a known
//! agent stops sending heartbeats, and `agent_recovered` when it returns; a
//! clean stop says goodbye and is `agent_stopped` (Info), not a crash.

use owlet_tests::*;

fn alerts(soc: &Soc, name: &str) -> Vec<Stored> {
    soc.db()
        .events_of("acme", "a")
        .into_iter()
        .filter(|e| e.kind == "alert" && e.alert_name() == Some(name))
        .collect()
}

#[test]
fn silent_agent_raises_agent_silent_then_agent_recovered() {
    let mut soc = Soc::init();
    soc.set_liveness("2s", "200ms");
    soc.start();
    let mut agent = soc.issue("acme", "a");
    agent.set("status", "interval", "500ms");
    agent.start();
    let db = soc.db();
    wait_until("two heartbeats stored", DEADLINE, || {
        db.events_of("acme", "a")
            .iter()
            .filter(|e| e.kind == "agent_status")
            .count()
            >= 2
    });
    assert!(
        alerts(&soc, "agent_silent").is_empty(),
        "agent_silent while heartbeats flow"
    );

    agent.kill9();
    wait_until("an agent_silent alert", DEADLINE, || {
        !alerts(&soc, "agent_silent").is_empty()
    });
    let silent = alerts(&soc, "agent_silent");
    assert_eq!(
        silent.len(),
        1,
        "one agent_silent alert per silence: {silent:?}"
    );
    assert_eq!(silent[0].seq, None, "SOC-raised alerts carry no agent seq");
    wait_until("agents.silent = 1", DEADLINE, || {
        db.agent("acme", "a").is_some_and(|a| a.silent)
    });

    agent.start();
    wait_until("an agent_recovered alert", DEADLINE, || {
        !alerts(&soc, "agent_recovered").is_empty()
    });
    let recovered = alerts(&soc, "agent_recovered");
    assert_eq!(recovered[0].seq, None);
    assert!(
        recovered[0].row > silent[0].row,
        "agent_recovered stored before agent_silent"
    );
    wait_until("agents.silent = 0", DEADLINE, || {
        db.agent("acme", "a").is_some_and(|a| !a.silent)
    });
    assert_eq!(
        alerts(&soc, "agent_silent").len(),
        1,
        "a second agent_silent after recovery"
    );
    assert!(agent.stop().success());
}

#[test]
fn a_clean_stop_is_agent_stopped_not_agent_silent() {
    let mut soc = Soc::init();
    soc.set_liveness("2s", "200ms");
    soc.start();
    let mut agent = soc.issue("acme", "a");
    agent.set("status", "interval", "500ms");
    agent.start();
    let db = soc.db();
    wait_until("a heartbeat stored", DEADLINE, || {
        db.events_of("acme", "a")
            .iter()
            .any(|e| e.kind == "agent_status")
    });
    // systemctl stop: SIGTERM, a clean shutdown that says goodbye.
    assert!(agent.stop().success());
    wait_until("an agent_stopped alert", DEADLINE, || {
        !alerts(&soc, "agent_stopped").is_empty()
    });
    let stopped = alerts(&soc, "agent_stopped");
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    // Well past the window: still no Critical agent_silent for it.
    sleep(std::time::Duration::from_secs(3));
    assert!(alerts(&soc, "agent_silent").is_empty());
    assert!(db.agent("acme", "a").is_some_and(|a| a.silent));

    // Started again: recovered; a crash after that is agent_silent.
    agent.start();
    wait_until("an agent_recovered alert", DEADLINE, || {
        !alerts(&soc, "agent_recovered").is_empty()
    });
    agent.kill9();
    wait_until("an agent_silent alert after the crash", DEADLINE, || {
        !alerts(&soc, "agent_silent").is_empty()
    });
    assert_eq!(alerts(&soc, "agent_stopped").len(), 1);
}
