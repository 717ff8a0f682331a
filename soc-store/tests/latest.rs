//! `check_state`: each check's latest state and since when, kept on ingest.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use owlet_proto::v1::{CheckResult, Event, State, event::Kind};
use owlet_soc_store::{Batch, Store};

fn at(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_793_534_400 + s)
}

fn check(seq: u64, s: u64, id: &str, state: State) -> Event {
    Event {
        seq,
        time: Some(owlet_proto::timestamp(at(s))),
        kind: Some(Kind::CheckResult(CheckResult {
            check_id: id.into(),
            state: state as i32,
            result: state as i32,
            target: format!("{id}.example"),
            ..Default::default()
        })),
    }
}

fn append(store: &Store, events: &[Event]) {
    store
        .writer("acme")
        .unwrap()
        .append(
            &[Batch {
                agent: "s1",
                zone: "UTC",
                events,
                sequenced: true,
            }],
            at(10_000),
        )
        .unwrap();
}

/// `(state, since_us, time_us)` of a check.
fn state(store: &Store, check: &str) -> (String, Option<i64>, i64) {
    let reader = store.reader("acme").unwrap();
    reader
        .connection()
        .query_row(
            "SELECT state, since_us, time_us FROM check_state WHERE agent = 's1' AND check_id = ?1",
            [check],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
}

fn us(s: u64) -> i64 {
    owlet_soc_store::time::micros(at(s))
}

#[test]
fn the_latest_state_and_since_when_follow_the_results_across_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append(
        &store,
        &[
            check(1, 0, "web", State::Up),
            check(2, 10, "web", State::Up),
            check(3, 20, "web", State::Down),
            check(4, 30, "web", State::Down),
            check(5, 30, "dns", State::Up),
        ],
    );
    assert_eq!(state(&store, "web"), ("down".into(), Some(us(20)), us(30)));
    assert_eq!(state(&store, "dns"), ("up".into(), Some(us(30)), us(30)));
    // Still down in the next batch: since stays at the first DOWN.
    append(&store, &[check(6, 40, "web", State::Down)]);
    assert_eq!(state(&store, "web"), ("down".into(), Some(us(20)), us(40)));
    // Up and down again within one batch: a new DOWN run, since its start.
    append(
        &store,
        &[
            check(61, 41, "web", State::Up),
            check(62, 42, "web", State::Down),
        ],
    );
    assert_eq!(state(&store, "web"), ("down".into(), Some(us(42)), us(42)));
    // Up again in the batch after: since moves to it.
    append(
        &store,
        &[
            check(70, 50, "web", State::Up),
            check(80, 60, "web", State::Up),
        ],
    );
    assert_eq!(state(&store, "web"), ("up".into(), Some(us(50)), us(60)));
    // A late, older result (a spooled tail) does not overwrite it.
    append(&store, &[check(90, 45, "web", State::Down)]);
    assert_eq!(state(&store, "web"), ("up".into(), Some(us(50)), us(60)));
}

#[test]
fn a_version_2_database_gets_the_latest_states_backfilled() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append(
        &store,
        &[
            check(1, 0, "web", State::Up),
            check(2, 10, "web", State::Down),
        ],
    );
    let path = store.tenant_file("acme").unwrap();
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch(
        "DROP TABLE check_state;
         ALTER TABLE partitions DROP COLUMN min_time_us;
         ALTER TABLE partitions DROP COLUMN max_time_us;",
    )
    .unwrap();
    db.pragma_update(None, "user_version", 2).unwrap();
    drop(db);
    drop(store.writer("acme").unwrap());
    assert_eq!(state(&store, "web"), ("down".into(), None, us(10)));
    // The next change sets since again.
    append(&store, &[check(3, 20, "web", State::Up)]);
    assert_eq!(state(&store, "web"), ("up".into(), Some(us(20)), us(20)));
}
