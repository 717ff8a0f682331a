//! The store's guarantees, each with a test that fails when it breaks.

use std::ops::ControlFlow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use owlet_proto::v1::{Alert, CheckResult, Event, FlowRecord, Severity, State, event::Kind};
use owlet_soc_store::{Batch, Cursors, Filter, Policy, Store, StoreError};

const DAY: Duration = Duration::from_secs(86_400);

fn at(days: u64) -> SystemTime {
    // 2026-11-01T12:00:00Z plus `days`.
    UNIX_EPOCH + Duration::from_secs(1_793_534_400) + DAY * days as u32
}

fn check(seq: u64, t: SystemTime, id: &str, state: State) -> Event {
    Event {
        seq,
        time: Some(owlet_proto::timestamp(t)),
        kind: Some(Kind::CheckResult(CheckResult {
            check_id: id.into(),
            state: state as i32,
            result: state as i32,
            duration_us: 1500,
            ..Default::default()
        })),
    }
}

fn flow(seq: u64, t: SystemTime, dst: &str, bytes: u64) -> Event {
    Event {
        seq,
        time: Some(owlet_proto::timestamp(t)),
        kind: Some(Kind::FlowRecord(FlowRecord {
            src_addr: "10.0.0.5".into(),
            dst_addr: dst.into(),
            dst_port: 443,
            protocol: 6,
            bytes_out: bytes,
            ..Default::default()
        })),
    }
}

fn batch<'a>(agent: &'a str, events: &'a [Event]) -> Batch<'a> {
    Batch {
        agent,
        zone: "Asia/Tokyo",
        events,
        sequenced: true,
    }
}

#[test]
fn each_sequence_number_is_stored_once_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let events: Vec<Event> = (1..=5).map(|s| check(s, at(0), "web", State::Up)).collect();
    {
        let mut log = store.writer("acme").unwrap();
        let done = log.append(&[batch("s1", &events[..3])], at(0)).unwrap();
        assert_eq!((done[0].acked_seq, done[0].stored), (3, 3));
    }
    let mut log = store.writer("acme").unwrap();
    assert_eq!(log.acked_seq("s1"), 3);
    // A resend of 1..=5 after a reconnect: 1..=3 are duplicates.
    let done = log.append(&[batch("s1", &events)], at(0)).unwrap();
    assert_eq!(
        (done[0].acked_seq, done[0].stored, done[0].duplicates),
        (5, 2, 3)
    );
    let reader = store.reader("acme").unwrap();
    let all = reader.read_after(0, 100).unwrap();
    let seqs: Vec<_> = all.iter().map(|e| e.seq.unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    let ids: Vec<_> = all.iter().map(|e| e.id).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    assert_eq!(all[0].zone, "Asia/Tokyo");
    assert_eq!(all[0].event_id(), "acme/s1/1");
}

#[test]
fn a_batch_with_two_runs_of_one_agent_keeps_the_mark_between_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut log = store.writer("acme").unwrap();
    let a: Vec<Event> = (1..=3).map(|s| check(s, at(0), "web", State::Up)).collect();
    let b: Vec<Event> = (2..=4).map(|s| check(s, at(0), "web", State::Up)).collect();
    let done = log
        .append(&[batch("s1", &a), batch("s1", &b)], at(0))
        .unwrap();
    assert_eq!(done[1].duplicates, 2);
    assert_eq!(
        store
            .reader("acme")
            .unwrap()
            .read_after(0, 10)
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn records_outside_the_sequence_never_touch_the_mark() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut log = store.writer("acme").unwrap();
    let soc = [Event {
        seq: 0,
        time: Some(owlet_proto::timestamp(at(0))),
        kind: Some(Kind::Alert(Alert {
            name: "agent_silent".into(),
            severity: Severity::Critical as i32,
            ..Default::default()
        })),
    }];
    for _ in 0..2 {
        log.append(
            &[Batch {
                agent: "s1",
                zone: "UTC",
                events: &soc,
                sequenced: false,
            }],
            at(0),
        )
        .unwrap();
    }
    assert_eq!(log.acked_seq("s1"), 0);
    let all = store.reader("acme").unwrap().read_after(0, 10).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].event_id(), "acme/soc/2");
}

#[test]
fn days_of_arrival_are_partitions_and_the_events_view_spans_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut log = store.writer("acme").unwrap();
    for day in 0..40u64 {
        let events = [flow(day + 1, at(day), "192.0.2.1", 100 * (day + 1))];
        log.append(&[batch("s1", &events)], at(day)).unwrap();
    }
    assert_eq!(log.usage().unwrap().partitions, 40);
    let reader = store.reader("acme").unwrap();
    let (_, rows) = reader
        .sql(
            "SELECT COUNT(*), SUM(bytes) FROM events WHERE kind = 'flow_record' AND dst_port = 443",
        )
        .unwrap();
    assert_eq!(
        rows,
        vec![vec!["40".to_string(), (100 * 40 * 41 / 2).to_string()]]
    );
    // Cursor reads cross partitions in order.
    let after = reader.read_after(35, 100).unwrap();
    assert_eq!(
        after.iter().map(|e| e.id).collect::<Vec<_>>(),
        [36, 37, 38, 39, 40]
    );
    // A time filter streams only what it selects.
    let mut seen = Vec::new();
    reader
        .scan(
            &Filter {
                from_us: Some(owlet_proto::timestamp_micros(&owlet_proto::timestamp(at(
                    10,
                )))),
                to_us: Some(owlet_proto::timestamp_micros(&owlet_proto::timestamp(at(
                    13,
                )))),
                ..Default::default()
            },
            |e| {
                seen.push(e.seq.unwrap());
                ControlFlow::Continue(())
            },
        )
        .unwrap();
    assert_eq!(seen, [11, 12, 13]);
}

#[test]
fn retention_by_age_deletes_whole_old_days_and_records_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut log = store.writer("acme").unwrap();
    for day in 0..10u64 {
        let events: Vec<Event> = (0..3)
            .map(|i| check(day * 3 + i + 1, at(day), "web", State::Up))
            .collect();
        log.append(&[batch("s1", &events)], at(day)).unwrap();
    }
    let policy = Policy {
        max_age: Some(DAY * 3),
        max_bytes: None,
    };
    let gone = log.enforce(&policy, at(9)).unwrap();
    // Days 0..=5 ended more than 3 days before day 9's noon.
    assert_eq!(gone.len(), 6, "{gone:?}");
    assert!(gone.iter().all(|d| d.reason == "max_age" && d.events == 3));
    assert_eq!(log.deletions().unwrap(), gone);
    let reader = store.reader("acme").unwrap();
    let left = reader.read_after(0, 100).unwrap();
    assert_eq!(left.first().unwrap().seq, Some(19));
    // Ids go on after deletions; the mark too.
    let events = [check(31, at(9), "web", State::Up)];
    log.append(&[batch("s1", &events)], at(9)).unwrap();
    assert_eq!(reader.last_id().unwrap(), 31);
}

#[test]
fn retention_takes_a_check_state_with_its_latest_result() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut log = store.writer("acme").unwrap();
    // Day 0: a check that never reports again; days 0..=9: "web".
    let retired = [check(1, at(0), "retired", State::Down)];
    log.append(&[batch("s1", &retired)], at(0)).unwrap();
    for day in 0..10u64 {
        let events = [check(day + 2, at(day), "web", State::Up)];
        log.append(&[batch("s1", &events)], at(day)).unwrap();
    }
    let checks = |log: &owlet_soc_store::TenantLog| -> Vec<String> {
        let db = rusqlite::Connection::open(log.path()).unwrap();
        let mut stmt = db
            .prepare("SELECT check_id FROM check_state ORDER BY 1")
            .unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    };
    assert_eq!(checks(&log), ["retired", "web"]);
    let policy = Policy {
        max_age: Some(DAY * 3),
        max_bytes: None,
    };
    log.enforce(&policy, at(9)).unwrap();
    assert_eq!(checks(&log), ["web"], "a state outlived its results");
    // The retired check reports again: it is back.
    let back = [check(12, at(9), "retired", State::Up)];
    log.append(&[batch("s1", &back)], at(9)).unwrap();
    assert_eq!(checks(&log), ["retired", "web"]);
}

#[test]
fn retention_by_capacity_deletes_oldest_first_but_never_today() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut log = store.writer("acme").unwrap();
    let mut seq = 0;
    for day in 0..6u64 {
        let events: Vec<Event> = (0..500)
            .map(|_| {
                seq += 1;
                flow(seq, at(day), "192.0.2.7", seq)
            })
            .collect();
        log.append(&[batch("s1", &events)], at(day)).unwrap();
    }
    log.checkpoint().unwrap();
    let full = log.usage().unwrap().used_bytes;
    let limit = full / 2;
    let gone = log
        .enforce(
            &Policy {
                max_age: None,
                max_bytes: Some(limit),
            },
            at(5),
        )
        .unwrap();
    assert!(!gone.is_empty());
    assert!(gone.iter().all(|d| d.reason == "max_bytes"));
    let used = log.usage().unwrap();
    assert!(used.used_bytes <= limit, "{used:?} over {limit}");
    assert!(
        used.file_bytes < full,
        "freed pages were not returned: {used:?}"
    );
    // Oldest first: what remains is the newest days.
    let days: Vec<_> = gone.iter().map(|d| d.day.clone()).collect();
    let mut sorted = days.clone();
    sorted.sort();
    assert_eq!(days, sorted);
    // A limit below one day's data keeps today's partition.
    log.enforce(
        &Policy {
            max_age: None,
            max_bytes: Some(1),
        },
        at(5),
    )
    .unwrap();
    assert_eq!(log.usage().unwrap().partitions, 1);
    assert_eq!(
        store
            .reader("acme")
            .unwrap()
            .read_after(0, 1000)
            .unwrap()
            .len(),
        500
    );
}

#[test]
fn a_tenant_deleted_while_its_writer_is_open_gets_a_new_database() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut writers = owlet_soc_store::Writers::new(Store::existing(dir.path()));
    let first = [check(1, at(0), "web", State::Up)];
    writers
        .get("acme")
        .unwrap()
        .append(&[batch("s1", &first)], at(0))
        .unwrap();
    store.delete_tenant("acme").unwrap();
    // The agent was not revoked yet and sends on: its events must land in
    // a file a reader can open, not in the unlinked one.
    let next = [check(2, at(0), "web", State::Down)];
    writers
        .get("acme")
        .unwrap()
        .append(&[batch("s1", &next)], at(0))
        .unwrap();
    let stored = store.reader("acme").unwrap().read_after(0, 10).unwrap();
    let seqs: Vec<Option<u64>> = stored.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [Some(2)]);
}

#[test]
fn a_reader_cannot_reach_another_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for tenant in ["acme", "globex"] {
        let events = [check(1, at(0), tenant, State::Up)];
        store
            .writer(tenant)
            .unwrap()
            .append(&[batch("s1", &events)], at(0))
            .unwrap();
    }
    let reader = store.reader("acme").unwrap();
    let other = store.tenant_file("globex").unwrap();
    let attach = format!("ATTACH DATABASE '{}' AS other", other.display());
    let err = reader.sql(&attach).unwrap_err().to_string();
    assert!(err.contains("too many attached databases"), "{err}");
    // Nor through a table-valued trick: the file is read-only anyway.
    assert!(reader.sql("DELETE FROM meta").is_err());
    let (_, rows) = reader.sql("SELECT DISTINCT check_id FROM events").unwrap();
    assert_eq!(rows, vec![vec!["acme".to_string()]]);
    // Names cannot climb out of the tenants directory.
    assert!(matches!(
        store.reader("../globex"),
        Err(StoreError::InvalidTenant { .. })
    ));
    match store.reader("initech") {
        Err(StoreError::UnknownTenant { known, .. }) => assert_eq!(known, "acme, globex"),
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn a_database_from_a_newer_release_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let path = {
        let log = store.writer("acme").unwrap();
        log.path().to_path_buf()
    };
    let db = rusqlite::Connection::open(&path).unwrap();
    db.pragma_update(None, "user_version", 99).unwrap();
    drop(db);
    match store.writer("acme") {
        Err(e @ StoreError::TooNew { .. }) => assert!(e.to_string().contains("newer")),
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn cursors_only_move_forward_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = Cursors::open(dir.path()).unwrap();
        c.advance("siem", "acme", 10, 10).unwrap();
        c.advance("siem", "acme", 5, 0).unwrap();
        c.failed("siem", "acme", "connection refused").unwrap();
    }
    let c = Cursors::open(dir.path()).unwrap();
    assert_eq!(c.get("siem", "acme").unwrap(), 10);
    assert_eq!(c.get("siem", "globex").unwrap(), 0);
    let all = c.all().unwrap();
    assert_eq!(
        (all[0].errors, all[0].last_error.as_deref()),
        (1, Some("connection refused"))
    );
}
