//! Resend after reconnect, made to happen deterministically: a [`Relay`]
//! between agent and SOC holds what the agent sends on its live connection,
//! then cuts that connection towards the agent only. The agent reconnects
//! and resends everything unacknowledged; once the SOC has stored all of it
//! through the new connection, the relay delivers the held batches on the
//! old connection, late. The SOC received those batches twice: it must drop
//! the second copies (nothing stored twice) and count them
//! (`duplicates_dropped` in `owlet-soc agents --json`), so a SOC without
//! dedupe fails here.

use owlet_tests::*;

#[test]
fn batches_the_soc_receives_twice_are_dropped_and_counted() {
    const N: u64 = 20_000;
    const HELD: usize = 64 * 1024;
    let mut soc = Soc::init();
    soc.start();
    let db = soc.db();
    let relay = Relay::start(&soc.address());
    let mut agent = soc.issue("acme", "a");
    agent.set("soc", "address", relay.address());
    agent.synthetic(2000, N);
    agent.start();
    wait_until("events stored through the relay", DEADLINE, || {
        db.synthetic_count("acme", "a") >= 500
    });

    assert_eq!(
        relay.hold(),
        1,
        "one live agent connection through the relay"
    );
    wait_until(
        &format!("the relay to hold {HELD} bytes of the agent's batches"),
        DEADLINE,
        || relay.held_bytes() >= HELD,
    );
    relay.cut_agent_side();
    // Everything the held connection can carry was accepted by now.
    let accepted = agent.spool_last_seq().expect("agent health after the cut");
    wait_until(
        &format!("the agent to reconnect and the SOC to store seq {accepted}"),
        DEADLINE,
        || {
            db.agent("acme", "a")
                .is_some_and(|a| a.acked_seq >= accepted)
        },
    );
    assert_eq!(
        soc.duplicates_dropped("acme", "a"),
        0,
        "duplicates dropped before the held batches were delivered"
    );

    let released = relay.release();
    assert!(
        released >= HELD,
        "the relay delivered {released} held bytes, expected at least {HELD}"
    );
    wait_until(
        "the SOC to count the late copies as dropped duplicates",
        DEADLINE,
        || soc.duplicates_dropped("acme", "a") > 0,
    );

    agent.wait_synthetic_finished(DEADLINE);
    agent.drain_and_stop(DEADLINE);
    let events = db.events_of("acme", "a");
    let seqs = assert_delivered_exactly_once(&events, 0..N);
    assert_eq!(data_loss_totals(&events).0, 0, "data_loss on a resend");
    let dropped = soc.duplicates_dropped("acme", "a");
    assert!(
        dropped <= *seqs.last().unwrap(),
        "{dropped} duplicates dropped, more than the {} events ever sent",
        seqs.last().unwrap()
    );
}
