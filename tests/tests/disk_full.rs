//! The spool's disk fills up during an outage (a 256 KiB tmpfs under the
//! spool, far below `spool.max_bytes`): events that cannot be written are
//! counted in a `write_failed` data-loss report that reaches the SOC once
//! space is free again, and everything that was written arrives exactly once.
//! Invariant 2 ("accepted → acknowledged or counted") across disk full.
//! Needs root (it mounts the tmpfs).

use std::time::Duration;

use owlet_proto::v1::{DataLossReason, event::Kind};
use owlet_tests::*;

#[test]
fn disk_full_losses_are_counted_and_reported_once_space_returns() {
    const N: u64 = 20_000;
    let mut soc = Soc::init(); // not started: the outage
    let mut agent = soc.issue("acme", "a");
    let spool_dir = agent.dir.join("spool-fs");
    let _tmpfs = Tmpfs::mount(&spool_dir, "256k");
    agent
        .set("spool", "dir", spool_dir.to_str().unwrap())
        .set("batch", "max_bytes", "16KiB")
        .set("spool", "segment_bytes", "32KiB")
        .set("status", "interval", "1h");
    agent.synthetic(20_000, N);
    agent.start();
    agent.wait_synthetic_finished(Duration::from_secs(120));
    wait_until("the agent to log a failed spool write", DEADLINE, || {
        agent.log().contains("could not write events to the spool")
    });
    assert!(agent.running(), "the agent died when its disk filled up");

    soc.start();
    let db = soc.db();
    wait_until("a write_failed data_loss event stored", DEADLINE, || {
        db.events().iter().any(|e| {
            matches!(&e.event.kind, Some(Kind::DataLoss(d))
                if d.reason == DataLossReason::WriteFailed as i32)
        })
    });
    agent.drain_and_stop(DEADLINE);

    let events = db.events_of("acme", "a");
    assert_in_order_no_duplicates(&events);
    let counters = synthetic_counters(&events);
    let stored = counters.len() as u64;
    assert!(
        stored > 0 && stored < N,
        "expected the disk to hold some but not all events, stored {stored}"
    );
    // What reached the disk first is what survives: the oldest events.
    assert_eq!(counters[0], 0, "the oldest event did not survive");
    let (lost, by_kind) = data_loss_totals(&events);
    assert_eq!(
        lost,
        by_kind.values().sum::<u64>(),
        "events_lost disagrees with lost_by_kind {by_kind:?}"
    );
    assert_eq!(
        by_kind.get("check_result").copied().unwrap_or(0) + stored,
        N,
        "lost {by_kind:?} + stored {stored} != generated {N}"
    );
}
