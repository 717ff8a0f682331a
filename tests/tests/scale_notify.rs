//! Incident notifications of the scaled-out SOC with real processes: a
//! 3-node JetStream cluster, PostgreSQL, `owlet-soc writer`, a real SMTP
//! server (aiosmtpd, STARTTLS and AUTH: soc-notify's own) and two
//! `owlet-soc notify` processes on one `notify.toml`. Events are published
//! to the bus as a receiver publishes them.
//!
//! Proves: one process notifies the tenant while the other stands by; the
//! holder killed -9 while its deliveries are retrying (the SMTP server
//! down), the standby takes over at the committed position with the
//! record's retry state; every event is mailed exactly once (nothing lost,
//! nothing grouped twice, no delivered notification mailed again);
//! `owlet-soc notifications --notify-config` lists the record from
//! PostgreSQL; `owlet-soc notify --status` shows the five deliveries
//! waiting with the SMTP server's refusal as the last error, then the tenant caught up and held, then not held once the
//! process stopped; SIGTERM stops the process cleanly (exit 0) and,
//! started again, it mails nothing again.

#[path = "../../soc-notify/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::{SmtpServer, alert, smtp_channel};
use owlet_proto::v1::Severity;
use owlet_soc_bus::{Bus, BusConfig, Retention};
use owlet_tests::*;
use prost::Message;

fn notify(config: &Path, name: &str, dir: &Path) -> Proc {
    let mut cmd = owlet_soc();
    cmd.args(["notify", "--config"])
        .arg(config)
        .env("NO_COLOR", "1");
    let mut proc = Proc::spawn(name, cmd, dir);
    wait_until(&format!("{name} to run"), DEADLINE, || {
        if let Some(status) = proc.try_wait() {
            panic!("{name} exited early with {status}:\n{}", proc.log());
        }
        proc.log().contains("owlet-soc notify") && proc.log().contains("running")
    });
    proc
}

/// Publishes alerts `seqs` of agent `fw1` of acme (one subject each) as a
/// receiver does, and waits until the writer stored them.
fn publish(scale: &Scale, seqs: std::ops::RangeInclusive<u64>) {
    let last = *seqs.end() as i64;
    let events: Vec<(u64, Bytes)> = seqs
        .map(|seq| {
            let event = alert(seq, "check_down", Severity::Critical, &format!("site{seq}"));
            (seq, Bytes::from(event.encode_to_vec()))
        })
        .collect();
    scale.rt.block_on(async {
        let bus = Bus::connect(&BusConfig::new(scale.cluster.urls()))
            .await
            .unwrap();
        let mut log = bus
            .agent("acme", "fw1", Retention::default())
            .await
            .unwrap();
        log.append(&events).await.unwrap();
    });
    wait_until("the writer to store the alerts", DEADLINE, || {
        scale.stored("acme", "fw1").last() == Some(&last)
    });
}

/// How many mails name each event id.
fn mailed(mails: &[serde_json::Value]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for mail in mails {
        for line in mail["data"].as_str().unwrap().lines() {
            if let Some(id) = line.strip_prefix("Event id: ") {
                *seen.entry(id.trim().to_string()).or_default() += 1;
            }
        }
    }
    seen
}

/// The attempts of each delivery still retrying, by notification id.
fn attempts(scale: &Scale) -> HashMap<i64, i64> {
    scale
        .query(
            "SELECT notification_id, attempts FROM tenant_acme.deliveries WHERE status = 'retrying'",
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// One figure of the record in PostgreSQL.
fn count(scale: &Scale, sql: &str) -> i64 {
    scale.query(sql, &[]).first().map_or(-1, |row| row.get(0))
}

/// Seen failing: with `cursor::claim` not checking its advisory lock, both
/// processes notified ("timed out waiting for notify-2 to stand by"); with
/// the PostgreSQL ledger's `ingest` no longer moving the cursor in its
/// transaction, notify-2 took over at position 0 and grouped and mailed
/// the events of before the kill again ("acme/fw1/1 mailed 2 times");
/// with the ledger setting the attempts of waiting deliveries to 0 when it
/// claims a tenant (retry state not carried over), "notification 8: tried
/// 1 times by notify-1, then delivered by notify-2" (left: 1, right: 2).
#[test]
fn a_standby_notify_process_takes_over_from_a_killed_one_and_mails_each_event_once() {
    let scale = Scale::start(&[]);
    let writer = scale.writer("writer", &[]);
    let smtp_dir = scale.dir.join("smtp");
    std::fs::create_dir(&smtp_dir).unwrap();
    let smtp_port = free_port();
    let smtp = scale.rt.block_on(SmtpServer::start(&smtp_dir, smtp_port));
    let config = scale.dir.join("notify.toml");
    std::fs::write(
        &config,
        format!(
            "[postgres]\nconnect = \"{}\"\n\n[paths]\nstate_dir = \"notify-state\"\n\n\
             [tenants.acme]\ntime_zone = \"Asia/Tokyo\"\n\n\
             [notify]\npoll_interval = \"100ms\"\n\n[notify.retry]\ninitial = \"200ms\"\nmax = \"1s\"\ngive_up_after = \"10m\"\n\n\
             [[notify.rule]]\nname = \"each-site\"\ntenant = \"acme\"\ngroup_by = \"subject\"\n\
             group_window = \"200ms\"\nchannels = [\"mail\"]\n{}",
            scale.pg.conninfo("owlet"),
            smtp_channel(
                "mail",
                "acme",
                "noc@acme.test",
                smtp_port,
                &smtp.cert,
                &smtp.password_file
            ),
        ),
    )
    .unwrap();

    // Delivered before the kill: never mailed again.
    publish(&scale, 1..=3);
    let mut first = notify(&config, "notify-1", &scale.dir);
    wait_until("notify-1 to hold acme", DEADLINE, || {
        first.log().contains("holding the tenant's cursor")
    });
    let mut second = notify(&config, "notify-2", &scale.dir);
    wait_until("notify-2 to stand by", DEADLINE, || {
        second.log().contains("standing by to take over")
    });
    wait_until("the first three mails", DEADLINE, || {
        smtp.mails().len() >= 3
    });
    wait_until("them recorded delivered", DEADLINE, || {
        count(
            &scale,
            "SELECT count(*) FROM tenant_acme.notifications WHERE status = 'delivered'",
        ) == 3
    });

    // Retrying when the holder dies: the SMTP server is down.
    scale.rt.block_on(smtp.stop());
    publish(&scale, 4..=8);
    wait_until("five deliveries retrying", DEADLINE, || {
        count(
            &scale,
            "SELECT count(*) FROM tenant_acme.deliveries WHERE status = 'retrying' AND attempts >= 1",
        ) == 5
    });
    let retrying = run_ok(
        owlet_soc()
            .args(["notify", "--status", "--config"])
            .arg(&config),
    );
    assert!(
        retrying.contains("lag 0 events, held; errors ")
            && retrying.contains("last error: mail: Connection error")
            && retrying.contains(" 5 deliveries waiting, 0 failed; last delivered 20"),
        "{retrying}"
    );
    // Freeze the holder so its attempts stop where they are, read them,
    // bring the SMTP server back, then kill it: the standby takes over
    // with a server that accepts, so each retried delivery goes out on
    // its first attempt there, counted after the holder's own.
    first.signal(nix::sys::signal::Signal::SIGSTOP);
    let tried = attempts(&scale);
    assert_eq!(tried.len(), 5, "{tried:?}");
    let smtp = scale.rt.block_on(SmtpServer::start(&smtp_dir, smtp_port));
    first.kill9();
    wait_until("notify-2 to take over", DEADLINE, || {
        second.log().contains("holding the tenant's cursor")
    });
    publish(&scale, 9..=12);
    wait_until("every notification delivered", DEADLINE, || {
        count(
            &scale,
            "SELECT count(*) FROM tenant_acme.notifications WHERE status = 'delivered'",
        ) >= 12
    });
    sleep(Duration::from_secs(2)); // a mail sent twice would show now
    let seen = mailed(&smtp.mails());
    for seq in 1..=12 {
        let id = format!("acme/fw1/{seq}");
        let times = seen.get(&id).copied().unwrap_or(0);
        assert_eq!(times, 1, "{id} mailed {times} times");
    }
    assert_eq!(seen.len(), 12, "only acme's alerts: {seen:?}");
    assert_eq!(
        count(
            &scale,
            "SELECT count(*) FROM (SELECT log_id FROM tenant_acme.notification_events \
             GROUP BY log_id HAVING count(*) > 1) AS twice",
        ),
        0,
        "an event grouped twice"
    );
    // The retry state came over: each delivery notify-1 tried went out
    // from notify-2 on its first attempt there, after notify-1's.
    let delivered: HashMap<i64, i64> = scale
        .query(
            "SELECT notification_id, attempts FROM tenant_acme.deliveries WHERE status = 'delivered'",
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (id, before) in &tried {
        assert_eq!(
            delivered.get(id),
            Some(&(before + 1)),
            "notification {id}: tried {before} times by notify-1, then delivered by notify-2"
        );
    }
    let (position, last) = scale.cursor_and_last_id("notify", "acme");
    assert_eq!(position, last, "the position is past every stored event");

    let listed = run_ok(
        owlet_soc()
            .args(["notifications", "--tenant", "acme", "--notify-config"])
            .arg(&config),
    );
    assert_eq!(
        listed.matches(" delivered critical ").count(),
        12,
        "{listed}"
    );
    assert!(listed.contains("+09:00 (Asia/Tokyo)"), "{listed}");
    assert!(
        listed.contains("mail (smtp) to noc@acme.test: delivered"),
        "{listed}"
    );

    let caught_up = run_ok(
        owlet_soc()
            .args(["notify", "--status", "--config"])
            .arg(&config),
    );
    assert!(
        caught_up.contains("lag 0 events, held; errors ")
            && caught_up.contains(" 0 open, 0 deliveries waiting, 0 failed;"),
        "{caught_up}"
    );
    let status = second.terminate(Duration::from_secs(20));
    assert!(status.success(), "SIGTERM: {status}\n{}", second.log());
    assert!(second.log().contains("owlet-soc notify stopped"));
    let stopped = run_ok(
        owlet_soc()
            .args(["notify", "--status", "--config"])
            .arg(&config),
    );
    assert!(
        stopped.contains("NOT HELD: no owlet-soc notify runs for it"),
        "{stopped}"
    );
    let mut again = notify(&config, "notify-2", &scale.dir);
    wait_until("notify-2 to hold acme again", DEADLINE, || {
        again.log().matches("holding the tenant's cursor").count() >= 2
    });
    sleep(Duration::from_secs(2));
    assert_eq!(smtp.mails().len(), 12, "a restart resumes after the cursor");
    again.terminate(Duration::from_secs(20));
    scale.rt.block_on(smtp.stop());
    drop(writer);
}
