//! The SOC is stopped for 60 s while the agent produces: after the restart
//! (same port, same database) everything arrives, nothing twice.

use std::time::Duration;

use owlet_tests::*;

#[test]
fn soc_outage_of_60s_loses_nothing_and_duplicates_nothing() {
    // ~200 events/s for ~70 s: production spans the whole outage.
    const N: u64 = 14_000;
    let mut soc = Soc::init();
    soc.start();
    let mut agent = soc.issue("acme", "a");
    agent.synthetic(200, N);
    agent.start();
    let db = soc.db();
    wait_until("the first synthetic events stored", DEADLINE, || {
        db.synthetic_count("acme", "a") >= 200
    });

    // SIGTERM; the graceful exit itself is asserted in its own test below.
    let _ = soc.stop_or_kill(Duration::from_secs(10));
    let at_stop = db.synthetic_count("acme", "a") as u64;
    sleep(Duration::from_secs(60));
    let health = agent.health().expect("agent health during the outage");
    assert_ne!(
        health["metrics"]["connection"], "connected",
        "agent connected to a stopped SOC: {health}"
    );
    assert!(
        health["spool_events"].as_u64().unwrap() > 0,
        "nothing spooled during the outage: {health}"
    );
    assert!(
        at_stop < N,
        "all events were delivered before the outage: the test proves nothing"
    );

    soc.start();
    agent.wait_synthetic_finished(Duration::from_secs(180));
    agent.drain_and_stop(DEADLINE);

    let events = db.events_of("acme", "a");
    assert_delivered_exactly_once(&events, 0..N);
    assert_eq!(
        data_loss_totals(&events).0,
        0,
        "data_loss during a short outage"
    );
}

#[test]
fn soc_exits_on_sigterm_while_an_agent_is_connected() {
    let mut soc = Soc::init();
    soc.start();
    let mut agent = soc.issue("acme", "a");
    agent.start();
    let db = soc.db();
    wait_until("a heartbeat stored", DEADLINE, || db.count() > 0);
    let status = soc.stop_or_kill(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "owlet-soc did not exit 0 within 30 s of SIGTERM while an agent stream was open (got {status:?}; None = had to SIGKILL)"
    );
    assert!(agent.running(), "agent exited when the SOC stopped");
    assert!(agent.stop().success());
}
