//! `soc.alternatives`: an agent whose first receiver cannot be reached
//! streams to the next one listed, says which one it could not reach and
//! why, and stays with the one that answered.

use std::time::Duration;

use owlet_tests::*;

#[test]
fn an_unreachable_first_receiver_is_passed_over_for_the_next_alternative() {
    const N: u64 = 2_000;
    let mut soc = Soc::init();
    soc.start();
    let mut agent = soc.issue("acme", "a");
    let reachable = agent.config["soc"]["address"].as_str().unwrap().to_string();
    // Nothing listens there: connecting is refused at once.
    let dead = format!("127.0.0.1:{}", free_port());
    agent
        .set("soc", "address", dead.clone())
        .set("soc", "alternatives", vec![reachable.clone()]);
    agent.synthetic(500, N);
    agent.start();
    let db = soc.db();
    agent.wait_synthetic_finished(Duration::from_secs(120));
    wait_until("every event stored", DEADLINE, || {
        db.synthetic_count("acme", "a") as u64 >= N
    });
    let log = agent.log();
    assert!(
        log.contains("cannot reach this receiver") && log.contains(&dead),
        "the agent does not say it passed over {dead}:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("connected to the SOC") && l.contains(&reachable)),
        "the agent does not say it connected to {reachable}:\n{log}"
    );
    agent.drain_and_stop(DEADLINE);
    assert_delivered_exactly_once(&db.events_of("acme", "a"), 0..N);
}
