//! Agent kill -9 at several points mid-stream, restarted with the same state
//! dir: every event the spool accepted in ANY run reaches the SOC, nothing is
//! stored twice.
//!
//! The agent talks to the SOC through a [`Relay`]. Every other run is killed
//! with acknowledgements racing the kill; the others while the relay holds
//! what the agent sends (then the connection is severed), so the spool
//! holds an accepted, unacknowledged tail at the kill that only the
//! restarted agent can deliver.
//!
//! Before each kill the test records what the spool had accepted
//! (`spool_last_seq` from `owlet health`) and when the run was killed. At the
//! end every seq up to each recorded mark must be stored, as the event that
//! run (or an earlier one) made: a restarted spool that forgot an accepted
//! tail would hand those seqs to new events, and the SOC would either drop
//! them as duplicates of what it had or store a later run's events under
//! them. Checking only the last run would miss both.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use owlet_tests::*;
use rand::Rng;

#[test]
fn agent_kill9_mid_stream_loses_nothing_any_run_accepted_and_duplicates_nothing() {
    const LAST_RUN_TOTAL: u64 = 3000;
    const KILLS: usize = 4;
    let mut soc = Soc::init();
    soc.start();
    let db = soc.db();
    let relay = Relay::start(&soc.address());
    let mut agent = soc.issue("acme", "a");
    agent.set("soc", "address", relay.address());
    let mut rng = rand::rng();

    // Per killed run: (spool_last_seq just before the kill, time of the kill).
    let mut killed: Vec<(u64, SystemTime)> = Vec::new();
    for round in 0..KILLS {
        agent.synthetic(2000, 0);
        agent.start();
        let before = db.count();
        // Make sure this run really accepts and streams before it is killed
        // (a restarted agent first delivers the previous run's tail).
        wait_until(
            &format!("round {round}: events accepted and stored"),
            DEADLINE,
            || {
                db.count() > before
                    && agent
                        .health()
                        .and_then(|h| h["metrics"]["events_accepted"].as_u64())
                        .is_some_and(|n| n >= 200)
            },
        );
        let held = round % 2 == 1;
        if held {
            assert_eq!(relay.hold(), 1, "round {round}: one live agent connection");
            wait_until(
                &format!("round {round}: unacknowledged events in the spool"),
                DEADLINE,
                || agent.spool_events().is_some_and(|n| n > 0) && relay.held_bytes() > 0,
            );
        }
        sleep(Duration::from_millis(rng.random_range(100..2500)));
        let accepted = agent
            .spool_last_seq()
            .unwrap_or_else(|| panic!("round {round}: no health answer before the kill"));
        agent.kill9();
        killed.push((accepted, SystemTime::now()));
        if held {
            relay.sever();
        }
    }

    agent.synthetic(2000, LAST_RUN_TOTAL);
    agent.start();
    agent.wait_synthetic_finished(Duration::from_secs(120));
    agent.drain_and_stop(Duration::from_secs(120));

    let events = db.events_of("acme", "a");
    let seqs = assert_in_order_no_duplicates(&events);
    assert_contiguous(&seqs);
    let (lost, by_kind) = data_loss_totals(&events);
    assert_eq!(
        lost, 0,
        "data_loss after kill -9 (no bound was hit): {by_kind:?}"
    );

    // Every run's accepted events arrived, as that run's events.
    let by_seq: BTreeMap<u64, &Stored> = events
        .iter()
        .filter_map(|e| e.seq.map(|s| (s, e)))
        .collect();
    // Seqs start where the spool's clock-based numbering put them.
    let mut previous = seqs[0] - 1;
    for (run, (accepted, killed_at)) in killed.iter().enumerate() {
        assert!(
            *accepted > previous,
            "run {run} accepted nothing new (spool_last_seq {accepted}, previous run {previous}): its kill proves nothing"
        );
        for seq in previous + 1..=*accepted {
            let stored = by_seq.get(&seq).unwrap_or_else(|| {
                panic!(
                    "seq {seq}, accepted by run {run} (spool_last_seq {accepted} before its kill -9), never reached the SOC; stored seqs {:?}..={:?}",
                    seqs.first(),
                    seqs.last()
                )
            });
            assert!(
                stored.time() < *killed_at,
                "seq {seq} was accepted by run {run} (spool_last_seq {accepted} before its kill -9) but the SOC holds an event made after that kill under it: the restarted spool handed out an accepted seq again: {stored:?}"
            );
        }
        previous = *accepted;
    }

    // In seq order the synthetic counters are one run after another, each
    // counting from 0 without a gap (a killed run loses only what its spool
    // had not accepted yet: the end of its count). A run whose first events
    // went missing (say, under seqs the SOC already held) breaks this.
    let mut synthetic: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| e.synthetic_counter().map(|c| (e.seq.unwrap(), c)))
        .collect();
    synthetic.sort_unstable();
    let mut runs: Vec<Vec<u64>> = Vec::new();
    for (seq, counter) in synthetic {
        if counter == 0 {
            runs.push(Vec::new());
        }
        let run = runs.len();
        match runs.last_mut() {
            Some(counters) if counters.len() as u64 == counter => counters.push(counter),
            _ => panic!(
                "run {run}: synthetic counter {counter} at seq {seq} does not continue its run ({:?} stored before it): accepted events of a run are missing",
                runs.last().map(Vec::len)
            ),
        }
    }
    assert_eq!(
        runs.len(),
        KILLS + 1,
        "runs found in the stored counters (a run starts at counter 0)"
    );
    assert_eq!(
        runs[KILLS].len() as u64,
        LAST_RUN_TOTAL,
        "the last run's whole load arrived"
    );
    let row = db.agent("acme", "a").unwrap();
    assert_eq!(row.acked_seq, *seqs.iter().max().unwrap());
}
