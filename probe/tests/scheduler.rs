//! The scheduler through its public interface: events, damped alerts,
//! reload semantics, isolation from hanging targets, bounded channels.
mod common;

use std::future::Future;
use std::time::Duration;

use common::*;
use owlet_probe::{
    CheckConfig, CheckType, CheckTypeName, ProbeConfig, ReloadOutcome, phase_offset, spawn,
};
use owlet_proto::v1::{Alert, CheckResult, Event, FailureClass, Severity, State, event::Kind};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

fn tcp(id: &str, port: u16, interval_ms: u64) -> CheckConfig {
    let mut c = CheckConfig::new(id, CheckTypeName::Tcp, format!("127.0.0.1:{port}"));
    c.interval = Duration::from_millis(interval_ms);
    c.timeout = Duration::from_millis(interval_ms.min(1000));
    c.down_after = 2;
    c.up_after = 2;
    c
}

async fn listen(port: u16) -> tokio::task::JoinHandle<()> {
    let l = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(async move {
        loop {
            let _ = l.accept().await;
        }
    })
}

enum Ev {
    R(CheckResult),
    A(Alert),
}

async fn next(rx: &mut mpsc::Receiver<Event>) -> Ev {
    let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no event within 10s")
        .unwrap();
    assert!(ev.time.is_some());
    assert_eq!(ev.seq, 0, "the pipeline assigns seq");
    match ev.kind.unwrap() {
        Kind::CheckResult(r) => Ev::R(r),
        Kind::Alert(a) => Ev::A(a),
        other => panic!("unexpected event {other:?}"),
    }
}

/// Waits for the next alert for `id`, returning the results seen before it.
async fn alert_for(rx: &mut mpsc::Receiver<Event>, id: &str) -> (Vec<CheckResult>, Alert) {
    let mut seen = Vec::new();
    loop {
        match next(rx).await {
            Ev::R(r) if r.check_id == id => seen.push(r),
            Ev::A(a) if a.subject == id => return (seen, a),
            _ => {}
        }
    }
}

#[tokio::test]
async fn results_and_damped_alerts() {
    let port = free_tcp_port();
    let server = listen(port).await;
    let (tx, mut rx) = mpsc::channel(16);
    let h = spawn(
        ProbeConfig {
            max_concurrency: 8,
            checks: vec![tcp("web", port, 150)],
        },
        tx,
    );

    // The first success moves UNKNOWN -> UP at once, without an alert (an
    // agent restart must not raise a `check_up` per check).
    let first = loop {
        match next(&mut rx).await {
            Ev::R(r) if r.check_id == "web" => break r,
            Ev::A(a) => panic!("startup UNKNOWN -> UP must not alert: {a:?}"),
            _ => {}
        }
    };
    assert_eq!((first.result(), first.state()), (State::Up, State::Up));

    server.abort();
    let _ = server.await;
    let (before, down) = alert_for(&mut rx, "web").await;
    let fails: Vec<_> = before
        .iter()
        .filter(|r| r.result() == State::Down)
        .collect();
    assert_eq!(fails.len(), 2, "down_after = 2 consecutive failures");
    assert_eq!(
        fails[0].state(),
        State::Up,
        "one failure does not change the damped state"
    );
    assert_eq!(fails[1].state(), State::Down);
    assert_eq!(
        (down.name.as_str(), down.severity()),
        ("check_down", Severity::Critical)
    );
    assert_eq!(
        (down.old_state(), down.new_state()),
        (State::Up, State::Down)
    );
    assert_eq!(down.source, "check");
    assert_eq!(down.labels["type"], "tcp");
    assert_eq!(down.labels["target"], format!("127.0.0.1:{port}"));
    assert_eq!(down.last_result.as_ref().unwrap().check_id, "web");
    assert_eq!(down.failure(), FailureClass::Refused);
    assert_eq!(down.last_result.as_ref().unwrap().result(), State::Down);
    assert!(down.message.contains("web"), "{}", down.message);

    let _server = listen(port).await;
    let (before, up) = alert_for(&mut rx, "web").await;
    assert_eq!(
        before.iter().filter(|r| r.result() == State::Up).count(),
        2,
        "up_after = 2"
    );
    assert_eq!((up.old_state(), up.new_state()), (State::Down, State::Up));
    h.shutdown().await;
}

#[tokio::test]
async fn reload_adds_removes_changes_and_keeps_unchanged() {
    let (p1, p2) = (free_tcp_port(), free_tcp_port());
    let _s1 = listen(p1).await;
    let _s2 = listen(p2).await;
    let (tx, mut rx) = mpsc::channel(64);
    let keep = tcp("keep", p1, 100);
    let gone = tcp("gone", p1, 100);
    let moved = tcp("moved", p1, 100);
    let h = spawn(
        ProbeConfig {
            max_concurrency: 8,
            checks: vec![keep.clone(), gone, moved],
        },
        tx,
    );
    let mut up = std::collections::HashSet::new();
    while up.len() < 3 {
        if let Ev::R(r) = next(&mut rx).await
            && r.state() == State::Up
        {
            up.insert(r.check_id);
        }
    }
    let mut moved2 = tcp("moved", p2, 100);
    moved2.down_after = 3;
    let added = tcp("added", p2, 100);
    let outcome = h.reload(ProbeConfig {
        max_concurrency: 8,
        checks: vec![keep, moved2, added],
    });
    assert_eq!(
        outcome,
        ReloadOutcome {
            added: vec!["added".into()],
            changed: vec!["moved".into()],
            removed: vec!["gone".into()],
        }
    );
    let ids: Vec<_> = h.states().into_iter().map(|s| s.id).collect();
    assert_eq!(
        ids,
        ["added", "keep", "moved"],
        "states() follows reload at once"
    );
    // Watch a while; events already in flight at reload time may still
    // arrive in the first moments, so only later ones are judged.
    let start = tokio::time::Instant::now();
    let settled = start + Duration::from_millis(250);
    let mut results = std::collections::HashMap::<String, Vec<CheckResult>>::new();
    let mut alerts = Vec::new();
    let until = start + Duration::from_millis(1500);
    while tokio::time::Instant::now() < until {
        let ev = tokio::time::timeout_at(until, rx.recv()).await;
        let late = tokio::time::Instant::now() > settled;
        match ev {
            Ok(Some(Event {
                kind: Some(Kind::CheckResult(r)),
                ..
            })) if late => results.entry(r.check_id.clone()).or_default().push(r),
            Ok(Some(Event {
                kind: Some(Kind::Alert(a)),
                ..
            })) => alerts.push(a),
            _ => {}
        }
    }
    assert!(!results.contains_key("gone"), "removed check still runs");
    assert!(results["added"].len() >= 3);
    assert!(
        results["moved"]
            .iter()
            .all(|r| r.target == format!("127.0.0.1:{p2}"))
    );
    assert!(results["keep"].len() >= 3);
    let alert_subjects: Vec<_> = alerts
        .iter()
        .map(|a| (a.subject.as_str(), a.name.as_str()))
        .collect();
    // The added check is announced; added and re-targeted checks start
    // fresh (quiet UNKNOWN -> UP); none was DOWN, so nothing is closed; the
    // unchanged check is untouched.
    assert_eq!(alert_subjects, [("added", "check_added")]);
    let announced = &alerts[0];
    assert_eq!(
        (
            announced.old_state(),
            announced.new_state(),
            announced.severity()
        ),
        (State::Unspecified, State::Unknown, Severity::Info)
    );
    assert_eq!(announced.labels["target"], format!("127.0.0.1:{p2}"));
    assert!(results["added"].iter().all(|r| r.state() == State::Up));
    assert!(results["moved"].iter().all(|r| r.state() == State::Up));
    h.shutdown().await;
}

#[tokio::test]
async fn hanging_target_does_not_delay_other_checks() {
    let (hang_port, _server) = silent_server().await;
    let fast_port = free_tcp_port();
    let _fast = listen(fast_port).await;
    let mut hang = CheckConfig::new(
        "hang",
        CheckTypeName::Http,
        format!("http://127.0.0.1:{hang_port}/"),
    );
    hang.interval = Duration::from_millis(500);
    hang.timeout = Duration::from_millis(500);
    let mut checks = vec![hang];
    for i in 0..3 {
        let mut c = CheckConfig::new(
            format!("hang{i}"),
            CheckTypeName::Http,
            format!("http://127.0.0.1:{hang_port}/x{i}"),
        );
        c.interval = Duration::from_millis(500);
        c.timeout = Duration::from_millis(500);
        checks.push(c);
    }
    checks.push(tcp("fast", fast_port, 100));
    let (tx, mut rx) = mpsc::channel(64);
    let h = spawn(
        ProbeConfig {
            max_concurrency: 8,
            checks,
        },
        tx,
    );
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    let (mut fast, mut hung) = (0, 0);
    while let Ok(Some(ev)) = tokio::time::timeout_at(until, rx.recv()).await {
        if let Some(Kind::CheckResult(r)) = ev.kind {
            if r.check_id == "fast" {
                fast += 1;
            } else {
                assert_eq!(r.failure(), FailureClass::Timeout);
                assert!(
                    r.duration_us < 1_600_000,
                    "hard timeout: {}us",
                    r.duration_us
                );
                hung += 1;
            }
        }
    }
    h.shutdown().await;
    assert!(
        fast >= 10,
        "fast check ran only {fast} times in 2s next to hanging ones"
    );
    assert!(hung >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hanging_checks_filling_the_limit_do_not_starve_a_healthy_one() {
    let (hang_port, server) = silent_server().await;
    let fast_port = free_tcp_port();
    let _fast = listen(fast_port).await;
    // 16 hanging checks, each wanting a slot for its whole 1 s interval,
    // against a limit of 4: four times more than the limit can hold.
    let mut checks: Vec<CheckConfig> = (0..16)
        .map(|i| {
            let mut c = CheckConfig::new(
                format!("hang{i}"),
                CheckTypeName::Http,
                format!("http://127.0.0.1:{hang_port}/h{i}"),
            );
            c.interval = Duration::from_secs(1);
            c.timeout = Duration::from_secs(1);
            c
        })
        .collect();
    checks.push(tcp("fast", fast_port, 200));
    let (tx, mut rx) = mpsc::channel(256);
    let h = spawn(
        ProbeConfig {
            max_concurrency: 4,
            checks,
        },
        tx,
    );
    let start = tokio::time::Instant::now();
    // The first round may take every slot (nothing is known to hang yet);
    // from then on the hanging checks hold at most half of them.
    let judged_from = start + Duration::from_secs(3);
    let until = start + Duration::from_secs(7);
    let (mut fast, mut hang_skips_reported) = (0, false);
    while let Ok(Some(ev)) = tokio::time::timeout_at(until, rx.recv()).await {
        if let Some(Kind::CheckResult(r)) = ev.kind {
            if r.check_id == "fast" {
                assert_eq!(r.result(), State::Up, "{}", r.message);
                if tokio::time::Instant::now() >= judged_from {
                    fast += 1;
                }
            } else if r.message.contains("skipped") {
                hang_skips_reported = true;
            }
        }
    }
    let stats = h.run_stats();
    h.shutdown().await;
    server.abort();
    // 200 ms interval over 4 s is 20 runs; a starved check gets a few.
    assert!(
        fast >= 10,
        "healthy check ran only {fast} times in 4 s next to hanging ones"
    );
    let hang_skipped: u64 = (0..16).map(|i| stats[&format!("hang{i}")].skipped).sum();
    assert!(
        hang_skipped > 0,
        "oversubscribed hanging checks must be skipped and counted: {stats:?}"
    );
    assert!(hang_skips_reported, "skips are reported in the next result");
    assert!(stats.contains_key("fast"));
}

#[tokio::test]
async fn removing_a_down_check_closes_its_alert() {
    let port = free_tcp_port(); // nothing listens: refused
    let mut c = tcp("doomed", port, 100);
    c.down_after = 1;
    let (tx, mut rx) = mpsc::channel(64);
    let h = spawn(
        ProbeConfig {
            max_concurrency: 8,
            checks: vec![c],
        },
        tx,
    );
    let (_, down) = alert_for(&mut rx, "doomed").await;
    assert_eq!(
        (down.name.as_str(), down.old_state(), down.new_state()),
        ("check_down", State::Unknown, State::Down),
        "startup UNKNOWN -> DOWN alerts"
    );
    h.reload(ProbeConfig {
        max_concurrency: 8,
        checks: vec![],
    });
    let (_, closed) = alert_for(&mut rx, "doomed").await;
    assert_eq!(closed.name, "check_removed");
    assert_eq!(
        (closed.old_state(), closed.new_state()),
        (State::Down, State::Unknown)
    );
    assert!(
        closed.message.contains("check removed"),
        "{}",
        closed.message
    );
    assert_eq!(closed.labels["type"], "tcp");
    assert!(!h.run_stats().contains_key("doomed"));
    assert!(h.states().is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn full_channel_applies_backpressure_and_shutdown_still_works() {
    let port = free_tcp_port();
    let _s = listen(port).await;
    let (tx, mut rx) = mpsc::channel(1);
    let checks = (0..50).map(|i| tcp(&format!("c{i}"), port, 50)).collect();
    let h = spawn(
        ProbeConfig {
            max_concurrency: 4,
            checks,
        },
        tx,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Only the channel's capacity is buffered; nothing queues unbounded.
    let mut n = 0;
    while rx.try_recv().is_ok() {
        n += 1;
    }
    assert!(n <= 2, "{n} events buffered with a channel of 1");
    tokio::time::timeout(Duration::from_secs(5), h.shutdown())
        .await
        .expect("shutdown hung");
}

#[test]
fn phase_offsets_are_stable_and_spread() {
    let iv = Duration::from_secs(30);
    assert_eq!(phase_offset("fw-ping", iv), phase_offset("fw-ping", iv));
    let offsets: std::collections::HashSet<_> = (0..100)
        .map(|i| phase_offset(&format!("check-{i}"), iv).as_secs())
        .collect();
    assert!(offsets.len() > 20, "offsets cluster: {offsets:?}");
    assert!((0..100).all(|i| phase_offset(&format!("check-{i}"), iv) < iv));
}

#[tokio::test]
async fn reload_outcome_is_sorted_and_unchanged_reload_is_empty() {
    let port = free_tcp_port();
    let (tx, _rx) = mpsc::channel(64);
    let cfg = |ids: &[&str], iv: u64| ProbeConfig {
        max_concurrency: 8,
        checks: ids.iter().map(|id| tcp(id, port, iv)).collect(),
    };
    let h = spawn(cfg(&["m", "b", "x"], 60_000), tx);
    assert_eq!(
        h.reload(cfg(&["x", "b", "m"], 60_000)),
        ReloadOutcome::default()
    );
    let out = h.reload(cfg(&["z", "x", "a", "b"], 60_000));
    assert_eq!(out.added, ["a", "z"]);
    assert_eq!(out.removed, ["m"]);
    assert!(out.changed.is_empty());
    let out = h.reload(cfg(&["z", "x", "a", "b"], 30_000));
    assert_eq!(out.changed, ["a", "b", "x", "z"]);
    h.shutdown().await;
}

#[tokio::test]
async fn states_show_every_check_with_its_damped_state() {
    let refused = free_tcp_port(); // nothing listens
    let mut down = tcp("down", refused, 100);
    down.down_after = 1;
    let mut idle = tcp("idle", refused, 100);
    idle.interval = Duration::from_secs(3600); // no result for a long time
    let (tx, mut rx) = mpsc::channel(64);
    let h = spawn(
        ProbeConfig {
            max_concurrency: 8,
            checks: vec![idle, down],
        },
        tx,
    );
    let before = h.states();
    assert_eq!(before.len(), 2);
    assert!(
        before
            .iter()
            .all(|s| s.state == State::Unknown && s.since.is_none())
    );
    let (_, a) = alert_for(&mut rx, "down").await;
    assert_eq!(a.name, "check_down");
    let st = h.states();
    let ids: Vec<_> = st.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["down", "idle"]);
    assert_eq!(
        (st[0].check_type, st[0].state),
        (CheckType::Tcp, State::Down)
    );
    assert!(st[0].since.is_some());
    assert!(st[0].message.contains("refused"), "{}", st[0].message);
    assert_eq!((st[1].state, st[1].since), (State::Unknown, None));
    assert_eq!(st[1].message, "");
    h.shutdown().await;
}

#[tokio::test]
async fn wait_ended_reports_a_closed_event_channel_and_not_a_shutdown() {
    let port = free_tcp_port();
    let (tx, rx) = mpsc::channel(4);
    let h = spawn(
        ProbeConfig {
            max_concurrency: 8,
            checks: vec![tcp("c", port, 100)],
        },
        tx,
    );
    let first = h.wait_ended();
    drop(rx);
    let reason = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("wait_ended did not resolve after the channel closed");
    assert!(reason.contains("event channel was closed"), "{reason}");
    // Resolves again, at once, for a later caller.
    let again = tokio::time::timeout(Duration::from_secs(10), h.wait_ended())
        .await
        .unwrap();
    assert_eq!(again, reason);
    h.shutdown().await;

    let (tx, _rx) = mpsc::channel(4);
    let h = spawn(ProbeConfig::default(), tx);
    let mut ended = Box::pin(h.wait_ended());
    h.shutdown().await;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(
        ended.as_mut().poll(&mut cx).is_pending(),
        "a shutdown is not an unexpected end"
    );
}
