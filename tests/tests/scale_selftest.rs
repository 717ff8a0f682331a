//! `owlet selftest` against the scaled-out SOC: a real agent runs its
//! self-test through a stateless receiver (`[sink] type = "nats"`) on a
//! real 3-node JetStream cluster, and the real `owlet-soc writer` stores
//! both test events in PostgreSQL once each, outside the agent's sequence
//! (`seq` NULL), beside the running agent's events, whose sequence is
//! untouched.

use owlet_tests::*;

#[test]
fn a_self_test_through_a_bus_receiver_is_stored_once_outside_the_agents_sequence() {
    const N: u64 = 300;
    let scale = Scale::start(&[]);
    let OneReceiver {
        receiver,
        writer,
        mut agent,
    } = scale.one_receiver(100, N, &[]);
    agent.start();
    wait_until("the agent's first events in PostgreSQL", DEADLINE, || {
        !scale.stored("acme", "a").is_empty()
    });

    let (_, report) = agent.selftest(&[], &[]);
    for name in ["soc", "test_event", "failure_test"] {
        assert_eq!(
            selftest_step(&report, name)["status"],
            "pass",
            "{name}: {report:#}\n{}",
            receiver.log()
        );
    }

    let records = || {
        scale.query_strings(
            "SELECT alert_name FROM tenant_acme.events WHERE agent = 'a' AND seq IS NULL ORDER BY id",
        )
    };
    wait_until("both self-test records in PostgreSQL", DEADLINE, || {
        records().len() >= 2
    });
    scale.finish(&mut agent, N);
    assert_eq!(
        records(),
        ["selftest_operation", "selftest_failure"],
        "each record once, in order\n{}",
        writer.log()
    );
    drop((receiver, writer));
}
