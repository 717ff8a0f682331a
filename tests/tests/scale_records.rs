//! The records the scaled-out SOC makes about an agent, with real
//! processes: a stateless receiver (`[sink] type = "nats"`) on a real
//! 3-node JetStream cluster, the real `owlet-soc writer` and PostgreSQL.
//! * `owlet selftest` through the receiver: both test events stored once
//!   each, outside the agent's sequence (`seq` NULL), beside the running
//!   agent's events, whose sequence is untouched;
//! * `owlet-soc ca revoke` of a streaming agent: its stream ends and one
//!   `certificate_revoked` alert is stored, however often the receiver
//!   reads the CRL again.

use std::time::Duration;

use nix::sys::signal::Signal;

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

/// The agent streams through receiver 1, then moves to receiver 2: both
/// have seen its certificate when it is revoked, and both read the CRL
/// within 2 s of each other (one alert: `Nats-Msg-Id`, duplicate window
/// 6 s). The CRL read again later (SIGHUP) is past the window (still one
/// alert: each receiver records a serial once).
#[test]
fn a_revoked_agent_seen_by_two_receivers_gets_one_alert() {
    let scale = Scale::start(&[("duplicate_window", "6s")]);
    let TwoReceivers { one, two, switch } = scale.two_receivers();
    let writer = scale.writer("writer", &[]);
    let mut agent = scale.agent("acme", "a", &switch.address());
    agent.synthetic(50, 1_000_000);
    agent.start();
    wait_until("the agent's first events in PostgreSQL", DEADLINE, || {
        !scale.stored("acme", "a").is_empty()
    });
    switch.switch();
    wait_until("the agent on receiver 2", DEADLINE, || {
        two.log().contains("agent connected")
    });
    run_ok(
        owlet_soc()
            .args(["ca", "revoke", "--dir"])
            .arg(&scale.soc.ca_dir)
            .args([
                "--tenant",
                "acme",
                "--agent",
                "a",
                "--reason",
                "key-compromise",
            ]),
    );
    let alerts = || {
        scale.query_strings(
            "SELECT alert_name FROM tenant_acme.events WHERE agent = 'a' AND seq IS NULL ORDER BY id",
        )
    };
    wait_until(
        "the certificate_revoked alert in PostgreSQL",
        DEADLINE,
        || !alerts().is_empty(),
    );
    // Both receivers have read the CRL (2 s checks); then past the window.
    sleep(Duration::from_secs(8));
    for receiver in [&one, &two] {
        receiver.signal(Signal::SIGHUP);
    }
    sleep(Duration::from_secs(5));
    assert_eq!(
        alerts(),
        ["certificate_revoked"],
        "one alert\n{}",
        writer.log()
    );
    drop((one, two, writer, agent));
}
