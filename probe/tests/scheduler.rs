//! The scheduler through its public interface: events, damped alerts,
//! reload semantics, isolation from hanging targets, bounded channels.
mod common;

use std::time::Duration;

use common::*;
use owlet_probe::{CheckConfig, CheckTypeName, ProbeConfig, phase_offset, spawn};
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

    let (before, up) = alert_for(&mut rx, "web").await;
    assert_eq!(before.len(), 1, "first success moves UNKNOWN -> UP at once");
    assert_eq!(
        (up.name.as_str(), up.severity()),
        ("check_up", Severity::Info)
    );
    assert_eq!(
        (up.old_state(), up.new_state()),
        (State::Unknown, State::Up)
    );
    assert_eq!(up.source, "check");
    assert_eq!(up.labels["type"], "tcp");
    assert_eq!(up.labels["target"], format!("127.0.0.1:{port}"));
    assert_eq!(up.last_result.as_ref().unwrap().check_id, "web");

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
        if let Ev::A(a) = next(&mut rx).await {
            up.insert(a.subject);
        }
    }
    let mut moved2 = tcp("moved", p2, 100);
    moved2.down_after = 3;
    let added = tcp("added", p2, 100);
    h.reload(ProbeConfig {
        max_concurrency: 8,
        checks: vec![keep, moved2, added],
    });
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
    assert!(alert_subjects.contains(&("added", "check_up")));
    assert!(
        alert_subjects.contains(&("moved", "check_up")),
        "changed target: fresh state"
    );
    assert!(
        !alert_subjects.iter().any(|(s, _)| *s == "keep"),
        "unchanged check was restarted: {alert_subjects:?}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn hanging_target_does_not_delay_other_checks() {
    // A server that accepts and never answers HTTP.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut keep = Vec::new();
        loop {
            if let Ok((s, _)) = l.accept().await {
                keep.push(s);
            }
        }
    });
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
