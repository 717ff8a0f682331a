//! The scaled-out SOC end to end: two stateless receivers (`owlet-soc serve`
//! with `[sink] type = "nats"`) on a real 3-node JetStream cluster (R3), the
//! real `owlet-soc writer` into a real PostgreSQL, and a real agent whose
//! connection is cut mid-stream and resumes on the other receiver, while
//! the first one stays up (stale). Every event must be on the agent's
//! subject exactly once, in order, and in PostgreSQL exactly once: no
//! duplicate, no gap. The writer is killed -9 mid-stream and restarted.
//! (The faults one at a time, deterministically: `scale_faults.rs`.)

use std::time::Duration;

use owlet_tests::*;

#[test]
fn an_agent_moved_between_two_receivers_mid_stream_is_stored_exactly_once() {
    const RATE: u64 = 2_000;
    const N: u64 = 12_000;
    let scale = Scale::start(&[]);
    let TwoReceivers { one, two, switch } = scale.two_receivers();
    let mut writer = scale.writer("writer", &[]);

    let mut agent = scale.agent("acme", "a", &switch.address());
    agent.synthetic(RATE, N);
    agent.start();
    let stored = || scale.stored_count("acme", "a");
    wait_until("the first events in PostgreSQL", DEADLINE, || {
        stored() > 1_000
    });
    // The agent's connection moves from receiver 1 to receiver 2 mid-stream.
    let before_switch = stored();
    switch.switch();
    wait_until("the agent on receiver 2", DEADLINE, || {
        two.log().contains("agent connected")
    });
    // The writer dies between whatever it was doing, and comes back.
    wait_until("more events stored", DEADLINE, || stored() > 4_000);
    writer.kill9();
    let at_kill = stored();
    sleep(Duration::from_millis(500));
    writer = scale.writer("writer", &[]);
    assert_mid_stream(before_switch, N, "the handover");
    assert_mid_stream(at_kill, N, "the writer kill");
    scale.finish(&mut agent, N);
    assert!(
        one.log().contains("agent connected"),
        "receiver 1 never had the agent"
    );
    drop((one, two, writer));
}
