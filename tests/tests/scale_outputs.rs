//! SIEM outputs of the scaled-out SOC with real processes: a 3-node
//! JetStream cluster (R3), PostgreSQL, a receiver (`owlet-soc serve`,
//! `[sink] type = "nats"`), `owlet-soc writer`, an agent with a synthetic
//! load, and two `owlet-soc outputs` processes on one `outputs.toml` whose
//! output sends to soc-outputs' own `_bulk` test server (HTTPS).
//!
//! Proves: one process sends the tenant while the other stands by; the
//! holder killed -9 mid-stream, the standby takes over and every event the
//! agent produced reaches the destination (at least once: resends only of
//! the batch in flight at the kill); SIGTERM stops a process cleanly (exit
//! 0); started again, it resumes after its cursor (nothing resent); and
//! `owlet-soc outputs --status` shows the output caught up.

#[path = "../../soc-outputs/tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::bulk::{Shared, bulk_handler};
use common::{HttpsServer, test_ca, token_file};
use owlet_tests::*;

fn outputs(scale: &Scale, name: &str, config: &std::path::Path) -> Proc {
    let mut cmd = owlet_soc();
    cmd.args(["outputs", "--config"])
        .arg(config)
        .env("NO_COLOR", "1");
    let mut proc = Proc::spawn(name, cmd, &scale.dir);
    wait_until(&format!("{name} to run"), DEADLINE, || {
        if let Some(status) = proc.try_wait() {
            panic!("{name} exited early with {status}:\n{}", proc.log());
        }
        proc.log().contains("owlet-soc outputs") && proc.log().contains("running")
    });
    proc
}

/// Seen failing: with `cursor::claim` not checking its advisory lock,
/// outputs-2 never stood by ("timed out … outputs-2 to stand by"); with
/// the SIGTERM handling removed from `owlet-soc outputs` (its stop future
/// never resolving), SIGTERM killed it instead of a clean exit 0.
#[test]
fn a_standby_outputs_process_takes_over_from_a_killed_one_and_nothing_is_lost() {
    const N: u64 = 6_000;
    let scale = Scale::start(&[]);
    // The destination's own CA (the SOC's is in scale.dir/ca already).
    let siem = scale.dir.join("siem");
    std::fs::create_dir(&siem).unwrap();
    let ca = test_ca(&siem);
    let index = Shared::default();
    let server = scale
        .rt
        .block_on(HttpsServer::start(&ca, 0, bulk_handler(index.clone())));
    let config = scale.dir.join("outputs.toml");
    std::fs::write(
        &config,
        format!(
            "[postgres]\nconnect = \"{}\"\n\n[[output]]\nname = \"es\"\ntype = \"elasticsearch\"\n\
             url = \"{}\"\ntenants = [\"acme\"]\nca_file = \"{}\"\ntoken_file = \"{}\"\n\
             batch_size = 200\npoll = \"100ms\"\nretry_min = \"200ms\"\nretry_max = \"2s\"\n",
            scale.pg.conninfo("owlet"),
            server.url(),
            ca.ca.display(),
            token_file(&siem, "s3cret").display(),
        ),
    )
    .unwrap();
    let OneReceiver {
        receiver,
        writer,
        mut agent,
    } = scale.one_receiver(2_000, N, &[]);
    agent.start();
    // The writer made its tables first (two processes creating the same
    // table at once can fail; systemd would start the loser again).
    wait_until("the first events in PostgreSQL", DEADLINE, || {
        scale.stored_count("acme", "a") > 0
    });
    let created = || index.lock().unwrap().created.len();
    let mut first = outputs(&scale, "outputs-1", &config);
    wait_until("the first documents", DEADLINE, || created() > 0);
    let mut second = outputs(&scale, "outputs-2", &config);
    wait_until("outputs-2 to stand by", DEADLINE, || {
        second.log().contains("standing by to take over")
    });
    wait_until("more documents", DEADLINE, || created() > 1_500);
    first.kill9();
    let at_kill = created();
    wait_until("outputs-2 to take over", DEADLINE, || {
        second.log().contains("holding the tenant's cursor")
    });
    let on_subject = scale.finish(&mut agent, N);
    assert!(
        (at_kill as u64) < on_subject.len() as u64,
        "everything was sent before the kill ({at_kill}): the test proves little"
    );
    let expected: HashSet<String> = on_subject.iter().map(|s| format!("acme/a/{s}")).collect();
    wait_until("every stored event at the destination", DEADLINE, || {
        created() >= expected.len()
    });
    wait_until("outputs-2's cursor at the last stored id", DEADLINE, || {
        let (position, last) = scale.output_position_and_last_id("es", "acme");
        position == last
    });
    {
        let ix = index.lock().unwrap();
        let got: HashSet<String> = ix.created.iter().cloned().collect();
        assert_eq!(got.len(), ix.created.len(), "created once each");
        let lost: Vec<_> = expected.difference(&got).collect();
        assert!(
            lost.is_empty(),
            "lost: {} e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        let extra: Vec<_> = got.difference(&expected).collect();
        assert!(extra.is_empty(), "not the agent's: {extra:?}");
        assert!(
            ix.attempts <= expected.len() + 200,
            "at least once, not everything again: {} attempts for {}",
            ix.attempts,
            expected.len()
        );
    }
    let shown = run_ok(
        owlet_soc()
            .args(["outputs", "--status", "--config"])
            .arg(&config),
    );
    assert!(
        shown.contains("es") && shown.contains("acme") && shown.contains("lag        0 events"),
        "{shown}"
    );
    let status = second.terminate(Duration::from_secs(20));
    assert!(status.success(), "SIGTERM: {status}\n{}", second.log());
    assert!(second.log().contains("owlet-soc outputs stopped"));
    let attempts = index.lock().unwrap().attempts;
    let mut again = outputs(&scale, "outputs-2", &config);
    wait_until("outputs-2 to hold the tenant again", DEADLINE, || {
        again.log().matches("holding the tenant's cursor").count() >= 2
    });
    sleep(Duration::from_secs(2));
    assert_eq!(
        index.lock().unwrap().attempts,
        attempts,
        "a restart resumes after the cursor"
    );
    again.terminate(Duration::from_secs(20));
    drop((receiver, writer));
}
