//! The SOC is SIGKILLed mid-stream several times and restarted on the same
//! database while an agent streams synthetic load: every event is stored
//! exactly once and nothing the agent accepted is missing.
//!
//! This is what "the SOC acknowledges a batch only after its commit is
//! durable" is tested by: an ack that ran ahead of the commit lets the agent
//! delete events a killed SOC never stored (a gap in the stored seqs), and a
//! commit the SOC forgot about after restart makes it store a resent batch
//! twice. Half the kills land at a random point of the stream; the others
//! while the SOC's commits stall (the test holds the database's write lock,
//! like a disk that hangs), so those kills always find batches received and
//! not yet durable.

use std::time::Duration;

use owlet_tests::*;
use rand::Rng;

#[test]
fn soc_kill9_mid_stream_several_times_stores_every_event_exactly_once() {
    const RATE: u64 = 20_000;
    const N: u64 = 300_000;
    const KILLS: usize = 6;
    let mut soc = Soc::init();
    soc.start();
    let db = soc.db();
    let mut agent = soc.issue("acme", "a");
    agent.synthetic(RATE, N);
    agent.start();
    let mut rng = rand::rng();

    let mut under_load = 0;
    for round in 0..KILLS {
        let before = db.count();
        wait_until(
            &format!("round {round}: the (restarted) SOC to store events"),
            DEADLINE,
            || db.count() > before + 500,
        );
        // Odd rounds: the SOC's commits stall (the test holds the
        // database's write lock) and it is killed with batches received
        // and not committed.
        let stall = (round % 2 == 1).then(|| db.hold_write_lock("acme"));
        sleep(Duration::from_millis(rng.random_range(0..800)));
        if stall.is_some() {
            sleep(Duration::from_secs(1));
        }
        if !agent.log().contains("synthetic load finished") {
            under_load += 1;
        }
        soc.kill9();
        drop(stall);
        sleep(Duration::from_millis(rng.random_range(0..1000)));
        soc.start();
    }
    assert!(
        under_load >= KILLS / 2,
        "only {under_load} of {KILLS} kills happened while the load was produced: the test proves little"
    );

    agent.wait_synthetic_finished(Duration::from_secs(180));
    let accepted = agent
        .spool_last_seq()
        .expect("agent health after the load finished");
    agent.drain_and_stop(Duration::from_secs(120));

    let events = db.events_of("acme", "a");
    let seqs = assert_delivered_exactly_once(&events, 0..N);
    let (lost, by_kind) = data_loss_totals(&events);
    assert_eq!(lost, 0, "data_loss across SOC crashes: {by_kind:?}");
    let last = *seqs.last().unwrap();
    assert!(
        last >= accepted,
        "the SOC stored seqs up to {last}, the agent's spool had accepted {accepted}"
    );
    assert_eq!(
        db.agent("acme", "a").unwrap().acked_seq,
        last,
        "acked_seq is the highest stored seq"
    );
}
