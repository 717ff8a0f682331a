//! The spool bound is hit during an outage: the oldest events are dropped and
//! a `data_loss` event arrives with exact counts.

use std::time::Duration;

use owlet_tests::*;

#[test]
fn spool_bound_drops_oldest_and_reports_data_loss_exactly() {
    const N: u64 = 20_000;
    let mut soc = Soc::init(); // not started: the outage
    let mut agent = soc.issue("acme", "a");
    agent
        .set("batch", "max_bytes", "16KiB")
        .set("spool", "segment_bytes", "32KiB")
        .set("spool", "max_bytes", "128KiB")
        .set("status", "interval", "1h");
    agent.synthetic(20_000, N);
    agent.start();
    agent.wait_synthetic_finished(Duration::from_secs(120));
    sleep(Duration::from_secs(2));
    let health = agent.health().expect("agent health");
    assert!(
        health["spool_bytes"].as_u64().unwrap() <= 128 * 1024,
        "spool above its bound: {health}"
    );

    soc.start();
    let db = soc.db();
    wait_until("a data_loss event stored", DEADLINE, || {
        db.events().iter().any(|e| e.kind == "data_loss")
    });
    agent.drain_and_stop(DEADLINE);

    let events = db.events_of("acme", "a");
    let seqs = assert_in_order_no_duplicates(&events);
    let counters = synthetic_counters(&events);
    let stored = counters.len() as u64;
    assert!(
        stored > 0 && stored < N,
        "expected some but not all events to survive, got {stored}"
    );
    let (lost, by_kind) = data_loss_totals(&events);
    let losses: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.event.kind {
            Some(owlet_proto::v1::event::Kind::DataLoss(d)) => Some(format!(
                "seq {:?}: lost {} in {} batches, seqs {}..={}, {:?}",
                e.seq, d.events_lost, d.batches_lost, d.first_seq, d.last_seq, d.lost_by_kind
            )),
            _ => None,
        })
        .collect();
    let diagnosis = format!(
        "stored seqs {:?}..={:?} ({} events, {} synthetic, counters {:?}..={:?}); data_loss events:\n{}",
        seqs.first(),
        seqs.last(),
        seqs.len(),
        stored,
        counters.first(),
        counters.last(),
        losses.join("\n")
    );
    let lost_checks = by_kind.get("check_result").copied().unwrap_or(0);
    assert!(
        lost_checks > 0,
        "lost_by_kind has no check_result: {by_kind:?}"
    );
    assert_eq!(
        lost,
        by_kind.values().sum::<u64>(),
        "events_lost disagrees with lost_by_kind {by_kind:?}"
    );
    assert_eq!(
        lost_checks + stored,
        N,
        "lost ({lost_checks}) + stored ({stored}) != generated; {diagnosis}"
    );
    // The survivors are the newest, in order.
    assert_eq!(
        counters,
        (N - stored..N).collect::<Vec<_>>(),
        "surviving counters are not the newest; {diagnosis}"
    );
    // The lost seqs are exactly the reported ranges, so with them the seqs are contiguous.
    let mut all = seqs.clone();
    for e in &events {
        if let Some(owlet_proto::v1::event::Kind::DataLoss(d)) = &e.event.kind
            && d.first_seq > 0
        {
            all.extend(d.first_seq..=d.last_seq);
        }
    }
    assert_contiguous(&all);
}
