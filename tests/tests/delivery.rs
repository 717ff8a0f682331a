//! Agent → SOC over mTLS: events arrive in order, exactly once.

use owlet_tests::*;

#[test]
fn synthetic_events_arrive_in_order_exactly_once() {
    const N: u64 = 5000;
    let mut soc = Soc::init();
    soc.start();
    let mut agent = soc.issue("acme", "a");
    agent.synthetic(2000, N);
    agent.start();

    let db = soc.db();
    agent.wait_synthetic_finished(DEADLINE);
    agent.drain_and_stop(DEADLINE);

    let events = db.events_of("acme", "a");
    let seqs = assert_delivered_exactly_once(&events, 0..N);
    assert!(
        events.iter().any(|e| e.kind == "agent_status"),
        "no heartbeat stored"
    );
    let (lost, _) = data_loss_totals(&events);
    assert_eq!(lost, 0, "data_loss reported on a healthy run");
    // Identity from the certificate; nothing else stored.
    assert!(
        db.events()
            .iter()
            .all(|e| e.tenant == "acme" && e.agent == "a")
    );
    let row = db.agent("acme", "a").expect("agent row");
    assert_eq!(
        row.acked_seq,
        *seqs.last().unwrap(),
        "acked_seq is the highest stored seq"
    );
}
