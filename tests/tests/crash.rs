//! Agent kill -9 at several points mid-stream, restarted with the same state
//! dir: nothing the spool accepted is lost, nothing is stored twice.

use std::time::Duration;

use owlet_tests::*;
use rand::Rng;

#[test]
fn agent_kill9_mid_stream_loses_nothing_accepted_and_duplicates_nothing() {
    const LAST_RUN_TOTAL: u64 = 3000;
    let mut soc = Soc::init();
    soc.start();
    let db = soc.db();
    let mut agent = soc.issue("acme", "a");
    let mut rng = rand::rng();

    for round in 0..4 {
        agent.synthetic(2000, 0);
        agent.start();
        let before = db.count();
        // Make sure this run really streams before it is killed.
        wait_until(&format!("round {round}: events stored"), DEADLINE, || {
            db.count() > before
        });
        sleep(Duration::from_millis(rng.random_range(100..2500)));
        agent.kill9();
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
    // The last run's events have the highest seqs: its whole load arrived.
    let mut synthetic: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| e.synthetic_counter().map(|c| (e.seq.unwrap(), c)))
        .collect();
    synthetic.sort_unstable();
    let last: Vec<u64> = synthetic[synthetic.len() - LAST_RUN_TOTAL as usize..]
        .iter()
        .map(|(_, c)| *c)
        .collect();
    assert_eq!(
        last,
        (0..LAST_RUN_TOTAL).collect::<Vec<_>>(),
        "the last run's events, by seq"
    );
    let row = db.agent("acme", "a").unwrap();
    assert_eq!(row.acked_seq, *seqs.iter().max().unwrap());
}
