//! `newest_first` and the partitions' event-time bounds: the newest alerts
//! of a range read partition by partition equal the same query over the
//! `events` view, whatever day each event arrived on.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use owlet_proto::v1::{Alert, CheckResult, Event, State, event::Kind};
use owlet_soc_store::{Batch, Filter, Newest, Store, newest_first};
use rusqlite::types::Value;

const DAY: u64 = 86_400;

fn at(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_793_534_400 + s)
}

fn us(s: u64) -> i64 {
    owlet_soc_store::time::micros(at(s))
}

fn alert(seq: u64, s: u64, subject: &str) -> Event {
    Event {
        seq,
        time: Some(owlet_proto::timestamp(at(s))),
        kind: Some(Kind::Alert(Alert {
            name: "check_down".into(),
            subject: subject.into(),
            new_state: State::Down as i32,
            ..Default::default()
        })),
    }
}

fn check(seq: u64, s: u64) -> Event {
    Event {
        seq,
        time: Some(owlet_proto::timestamp(at(s))),
        kind: Some(Kind::CheckResult(CheckResult {
            check_id: "web".into(),
            ..Default::default()
        })),
    }
}

/// Six days of arrival, each holding events whose own times lie elsewhere.
/// Each event is an alert and a check result of that time.
fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut log = store.writer("acme").unwrap();
    // (agent, event seconds, arrival second)
    let arrivals: &[(&str, &[u64], u64)] = &[
        // Day 0: its own events.
        ("s1", &[100, 200, 300, 40_000], 41_000),
        // Day 1: s2 was offline for a day; its spool of day 0 arrives.
        ("s2", &[150, 250, 260, 80_000], DAY + 10),
        // Day 2: s3's clock is three days ahead of everyone's.
        ("s3", &[5 * DAY, 5 * DAY + 1], 2 * DAY + 10),
        // Day 3: ordinary events of that day, and one tie with day 0's.
        ("s1", &[3 * DAY + 5, 3 * DAY + 6, 300], 3 * DAY + 100),
        // Day 4: newer than day 3, older than day 2's clock-ahead events.
        ("s2", &[300, 4 * DAY + 50], 4 * DAY + 100),
        // Day 5: one more tie, alone in its partition (its newest time is
        // the tie's): it has the highest id, so it comes first.
        ("s3", &[300], 5 * DAY + 100),
    ];
    let mut seqs = std::collections::HashMap::<&str, u64>::new();
    for (agent, times, arrival) in arrivals {
        let mut events = Vec::new();
        for t in *times {
            let seq = seqs.entry(agent).or_default();
            *seq += 1;
            events.push(alert(*seq, *t, &format!("{agent}-{t}")));
            *seq += 1;
            events.push(check(*seq, *t));
        }
        log.append(
            &[Batch {
                agent,
                zone: "UTC",
                events: &events,
                sequenced: true,
            }],
            at(*arrival),
        )
        .unwrap();
    }
    drop(log);
    (dir, store)
}

/// `(time_us, id, subject)` of an alert.
type Found = Vec<(i64, i64, String)>;

/// The newest alerts through `newest_first` and through the `events` view.
fn both(
    store: &Store,
    filter: &str,
    values: &[Value],
    range: (Option<i64>, Option<i64>),
    limit: usize,
) -> (Found, Found) {
    let reader = store.reader("acme").unwrap();
    let db = reader.connection();
    let row = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?));
    let fast = newest_first(
        db,
        &Newest {
            columns: "time_us, id, COALESCE(alert_subject, '')",
            filter,
            values,
            from_us: range.0,
            to_us: range.1,
            limit,
        },
        row,
    )
    .unwrap();
    let mut values = values.to_vec();
    values.extend([
        Value::Integer(range.0.unwrap_or(i64::MIN)),
        Value::Integer(range.1.unwrap_or(i64::MAX)),
        Value::Integer(limit as i64),
    ]);
    let slow = db
        .prepare(&format!(
            "SELECT time_us, id, COALESCE(alert_subject, '') FROM events
             WHERE ({filter}) AND time_us >= ? AND time_us < ?
             ORDER BY time_us DESC, id DESC LIMIT ?"
        ))
        .unwrap()
        .query_map(rusqlite::params_from_iter(values.iter()), row)
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    (fast, slow)
}

#[test]
fn the_newest_alerts_equal_the_view_query_whatever_day_they_arrived() {
    let (_dir, store) = store();
    let ranges = [
        (None, None),
        (Some(us(0)), Some(us(DAY))),
        (Some(us(250)), Some(us(300))),
        (Some(us(4 * DAY)), None),
        (None, Some(us(260))),
        (None, Some(us(301))),
    ];
    for range in ranges {
        for limit in [1, 2, 3, 5, 8, 100] {
            for (filter, values) in [
                ("kind = 'alert'", vec![]),
                (
                    "kind = 'alert' AND agent = ?",
                    vec![Value::Text("s1".into())],
                ),
                ("kind = 'check_result'", vec![]),
            ] {
                let (fast, slow) = both(&store, filter, &values, range, limit);
                assert_eq!(fast, slow, "{filter} {range:?} limit {limit}");
            }
        }
    }
    // The clock-ahead events, which arrived three days before the newest
    // partition, come first.
    let (fast, _) = both(&store, "kind = 'alert'", &[], (None, None), 3);
    let subjects: Vec<&str> = fast.iter().map(|(_, _, s)| s.as_str()).collect();
    assert_eq!(
        subjects,
        [
            format!("s3-{}", 5 * DAY + 1),
            format!("s3-{}", 5 * DAY),
            format!("s2-{}", 4 * DAY + 50)
        ]
    );
    // Four alerts at 300 s, newest id first: days 5, 4, 3, 0.
    let (fast, _) = both(&store, "kind = 'alert'", &[], (None, Some(us(301))), 4);
    let subjects: Vec<&str> = fast.iter().map(|(_, _, s)| s.as_str()).collect();
    assert_eq!(subjects, ["s3-300", "s2-300", "s1-300", "s1-300"]);
    assert!(fast.windows(2).all(|w| w[0].1 > w[1].1), "{fast:?}");
}

#[test]
fn partitions_know_the_event_times_they_hold_and_scans_skip_by_them() {
    let (_dir, store) = store();
    let reader = store.reader("acme").unwrap();
    let bounds: Vec<(String, i64, i64)> = reader
        .connection()
        .prepare("SELECT day, min_time_us, max_time_us FROM partitions ORDER BY day")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let spans: Vec<(i64, i64)> = bounds.iter().map(|(_, a, b)| (*a, *b)).collect();
    assert_eq!(
        spans,
        [
            (us(100), us(40_000)),
            (us(150), us(80_000)),
            (us(5 * DAY), us(5 * DAY + 1)),
            (us(300), us(3 * DAY + 6)),
            (us(300), us(4 * DAY + 50)),
            (us(300), us(300)),
        ],
        "{bounds:?}"
    );
    // A scan of day 5 finds the clock-ahead events that arrived on day 2.
    let mut seen = Vec::new();
    reader
        .scan(
            &Filter {
                from_us: Some(us(5 * DAY)),
                kinds: vec!["alert".into()],
                ..Default::default()
            },
            |e| {
                seen.push(e.time_us);
                std::ops::ControlFlow::Continue(())
            },
        )
        .unwrap();
    assert_eq!(seen, [us(5 * DAY), us(5 * DAY + 1)]);
}

#[test]
fn a_version_3_database_gets_its_partitions_bounds_backfilled() {
    let (_dir, store) = store();
    let path = store.tenant_file("acme").unwrap();
    let db = rusqlite::Connection::open(&path).unwrap();
    let before: Vec<(Option<i64>, Option<i64>)> = bounds(&db);
    db.execute_batch(
        "ALTER TABLE partitions DROP COLUMN min_time_us;
         ALTER TABLE partitions DROP COLUMN max_time_us;",
    )
    .unwrap();
    db.pragma_update(None, "user_version", 3).unwrap();
    drop(db);
    drop(store.writer("acme").unwrap());
    let db = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(bounds(&db), before);
    assert!(before.iter().all(|(a, b)| a.is_some() && b.is_some()));
}

fn bounds(db: &rusqlite::Connection) -> Vec<(Option<i64>, Option<i64>)> {
    db.prepare("SELECT min_time_us, max_time_us FROM partitions ORDER BY day")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}
