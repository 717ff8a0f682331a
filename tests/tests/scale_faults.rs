//! The scaled-out SOC under faults, one at a time, with real processes: a
//! 3-node JetStream cluster (R3), PostgreSQL, receivers (`owlet-soc serve`,
//! `[sink] type = "nats"`), the `owlet-soc writer` and an agent with a
//! synthetic load (`owlet-loadgen`). After each fault the agent drains its
//! spool, and every event must be on its subject exactly once and in
//! PostgreSQL exactly once: no duplicate, no gap ([`Scale::assert_exactly_once`]).
//!
//! * a receiver killed -9 mid-stream (twice: the agent moves to the other
//!   receiver, then back to the first one restarted);
//! * the writer killed -9 right after a commit (a test-only hook holds it
//!   exactly there: soc-bus feature `fault-hooks`), with a second writer
//!   standing by that takes the tenant over at the committed position;
//! * PostgreSQL killed and restarted mid-stream: the same writer process
//!   reconnects by itself and says why in its log;
//! * an agent offline for longer than the JetStream duplicate window (1 s
//!   here) comes back and resends its tail.
//!
//! "Mid-stream" is asserted, not hoped for: each test checks that events
//! were still to come when the fault hit.

use std::time::Duration;

use nix::sys::signal::Signal;
use owlet_tests::*;

const RATE: u64 = 2_000;

/// Waits until the agent's stream is stored past `count`, failing early
/// when a process the test relies on exited.
fn wait_stored(scale: &Scale, what: &str, count: u64, procs: &mut [&mut Proc]) {
    wait_until(what, Duration::from_secs(120), || {
        for proc in procs.iter_mut() {
            if let Some(status) = proc.try_wait() {
                panic!("a process exited with {status}:\n{}", proc.log());
            }
        }
        scale.stored_count("acme", "a") > count
    });
}

/// One receiver, the writer and the agent producing `total` events,
/// once the first 1,000 of them are in PostgreSQL.
fn flowing(scale: &Scale, total: u64) -> OneReceiver {
    let mut running = scale.one_receiver(RATE, total, &[]);
    running.agent.start();
    wait_stored(
        scale,
        "the first events in PostgreSQL",
        1_000,
        &mut [&mut running.writer],
    );
    running
}

#[test]
fn a_receiver_killed_mid_stream_loses_and_repeats_nothing() {
    const N: u64 = 12_000;
    let scale = Scale::start(&[]);
    let dir = scale.dir.clone();
    let TwoReceivers {
        mut one,
        mut two,
        switch,
    } = scale.two_receivers();
    let mut writer = scale.writer("writer", &[]);
    let mut agent = scale.agent("acme", "a", &switch.address());
    agent.synthetic(RATE, N);
    agent.start();

    wait_stored(
        &scale,
        "the first events in PostgreSQL",
        1_000,
        &mut [&mut writer],
    );
    // Receiver 1 dies with batches in flight; new connections go to 2.
    one.kill9();
    let first_kill = scale.stored_count("acme", "a");
    switch.switch();
    wait_until("the agent on receiver 2", DEADLINE, || {
        two.log().contains("agent connected")
    });
    wait_stored(
        &scale,
        "events stored through receiver 2",
        first_kill + 2_000,
        &mut [&mut writer, &mut two],
    );
    // Receiver 1 comes back; receiver 2 dies; the agent returns to 1.
    one = serve(&scale.soc.config, "receiver-1", &dir);
    two.kill9();
    let second_kill = scale.stored_count("acme", "a");
    switch.switch();
    wait_until(
        "the agent back on the restarted receiver 1",
        DEADLINE,
        || one.log().matches("agent connected").count() >= 2,
    );
    assert_mid_stream(second_kill, N, "the second kill");
    scale.finish(&mut agent, N);
    drop((one, two, writer));
}

#[test]
fn the_writer_killed_right_after_a_commit_its_standby_resumes_after_that_commit() {
    const N: u64 = 8_000;
    // The active writer stops for good right after its 5th commit.
    const HOLD_AFTER: &str = "5";
    let scale = Scale::start(&[]);
    let OneReceiver {
        receiver,
        writer: mut active,
        mut agent,
    } = scale.one_receiver(
        RATE,
        N,
        &[("OWLET_FAULT_WRITER_HOLD_AFTER_COMMIT", HOLD_AFTER)],
    );
    wait_until(
        "the writer's fault hook to be armed (it is only in an owlet-soc built with soc-bus's \
         `fault-hooks` feature and debug assertions: `cargo build --workspace --bins` builds it so, \
         through tests/Cargo.toml)",
        DEADLINE,
        || {
            if let Some(status) = active.try_wait() {
                panic!("the writer exited with {status}:\n{}", active.log());
            }
            active.log().contains("fault hook armed")
        },
    );
    agent.start();
    wait_until("the writer held right after a commit", DEADLINE, || {
        active.log().contains("holding here until killed")
    });
    // A second writer on the same PostgreSQL: the tenant is held, so it
    // stands by.
    let mut standby = scale.writer("standby", &[]);
    wait_until("the second writer standing by", DEADLINE, || {
        standby
            .log()
            .contains("another writer stores this tenant; standing by")
    });
    let at_kill = scale.stored_count("acme", "a");
    assert_mid_stream(at_kill, N, "the writer's kill");
    active.kill9();
    // The position committed with the rows: it points at the last stored
    // message, so the standby neither skips nor repeats anything.
    let (position, last_stored) = scale.position_and_last_stored("acme");
    assert!(position > 0, "no committed position after 5 commits");
    assert_eq!(
        position, last_stored,
        "the committed position and the last stored message differ"
    );
    wait_until("the standby taking the tenant over", DEADLINE, || {
        standby.log().contains("storing the tenant's stream")
    });
    assert!(
        standby
            .log()
            .contains(&format!("\"from\":{}", position + 1)),
        "the standby must resume right after the committed position {position}:\n{}",
        standby.log()
    );
    wait_stored(&scale, "the standby storing", at_kill, &mut [&mut standby]);
    scale.finish(&mut agent, N);
    // What the operator sees: the tenant held (by the standby), nothing
    // left to store.
    let out = owlet_soc()
        .args(["writer", "--status", "--config"])
        .arg(&scale.writer_toml)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && text.contains("acme")
            && text.contains("lag 0 events, held by a writer"),
        "owlet-soc writer --status:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop((receiver, standby));
}

#[test]
fn postgres_restarted_mid_stream_the_writer_reconnects_by_itself() {
    const N: u64 = 10_000;
    let mut scale = Scale::start(&[]);
    let OneReceiver {
        receiver,
        mut writer,
        mut agent,
    } = flowing(&scale, N);
    // Killed (-9) and started again on the same data and port.
    scale.pg.restart();
    // Up again (else this names the server's log, not the writer).
    drop(scale.rt.block_on(scale.pg.client("owlet")));
    let at_restart = scale.stored_count("acme", "a");
    wait_until("the writer to log why it reconnects", DEADLINE, || {
        writer
            .log()
            .contains("the tenant's consumer stopped; reconnecting")
    });
    // The same writer process, not a restarted one, stores again.
    wait_stored(
        &scale,
        "the writer storing again after PostgreSQL's restart",
        at_restart,
        &mut [&mut writer],
    );
    assert!(
        at_restart < N,
        "all {N} events were stored before PostgreSQL restarted: the test proves little"
    );
    scale.finish(&mut agent, N);

    let log = writer.log();
    let reason = log
        .lines()
        .find(|l| l.contains("the tenant's consumer stopped; reconnecting"))
        .unwrap();
    assert!(
        reason.contains("PostgreSQL"),
        "the reconnect does not say that PostgreSQL went away: {reason}"
    );
    assert!(
        log.contains("storing again after reconnecting"),
        "the writer did not say it stores again:\n{log}"
    );
    assert!(writer.try_wait().is_none(), "the writer exited:\n{log}");
    drop((receiver, writer));
}

#[test]
fn an_agent_offline_longer_than_the_duplicate_window_resends_its_tail_exactly_once() {
    const N: u64 = 6_000;
    const WINDOW: Duration = Duration::from_secs(1);
    let scale = Scale::start(&[("duplicate_window", "1s")]);
    let OneReceiver {
        receiver,
        writer,
        mut agent,
    } = flowing(&scale, N);
    // Frozen with batches in flight: the receiver stores them and its acks
    // wait in the frozen agent's socket; killed, the agent never reads
    // them, so its spool still holds events the stream has (its tail).
    agent.signal(Signal::SIGSTOP);
    sleep(Duration::from_secs(1));
    agent.kill9();
    let offline = scale.stored_count("acme", "a");
    assert!(
        offline < N,
        "all {N} events were stored before the agent went offline: the test proves little"
    );
    // Offline for several duplicate windows: Nats-Msg-Id no longer dedupes.
    sleep(WINDOW * 4);
    // The same agent (same spool) comes back and produces more.
    agent.synthetic(RATE, 2_000);
    agent.start();
    let on_subject = scale.finish(&mut agent, offline + 2_000);
    let js = scale.jetstream();
    let stream_window = scale.rt.block_on(async {
        let mut stream = js
            .get_stream(owlet_soc_bus::stream_name("acme"))
            .await
            .unwrap();
        stream.info().await.unwrap().config.duplicate_window
    });
    assert_eq!(
        stream_window, WINDOW,
        "the tenant stream's duplicate window is not the configured one"
    );
    eprintln!("{} events on the subject", on_subject.len());
    drop((receiver, writer));
}
