//! Every SQL block of SCHEMA.md runs against a filled store and answers
//! its question (a row each), so the analyst's examples stay true.

use std::time::{Duration, SystemTime};

use owlet_proto::v1::Event;
use owlet_proto::v1::{
    Alert, CheckResult, FileChange, FileChangeKind, FlowRecord, State, event::Kind,
};
use owlet_soc_store::{Batch, Policy, Store};

fn event(seq: u64, t: SystemTime, kind: Kind) -> Event {
    Event {
        seq,
        time: Some(owlet_proto::timestamp(t)),
        kind: Some(kind),
    }
}

fn start_of_today() -> SystemTime {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(now - now % 86_400)
}

fn sql_blocks(doc: &str) -> Vec<String> {
    doc.split("```sql\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap().to_string())
        .collect()
}

#[test]
fn the_example_queries_of_schema_md_answer_their_questions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = SystemTime::now();
    let minute = Duration::from_secs(60);
    let yesterday = start_of_today() - Duration::from_secs(86_400) + Duration::from_secs(3600);
    let events = vec![
        event(
            1,
            now - 2 * minute * 60,
            Kind::FileChange(FileChange {
                path: "/etc/ssh/sshd_config".into(),
                change: FileChangeKind::Modified as i32,
                new_sha256: "ab".repeat(32),
                changed_by: "root (uid 0) via vim".into(),
                ..Default::default()
            }),
        ),
        event(
            2,
            yesterday,
            Kind::FlowRecord(FlowRecord {
                src_addr: "10.0.0.5".into(),
                dst_addr: "192.0.2.9".into(),
                dst_port: 53,
                protocol: 17,
                bytes_out: 120,
                dns_query: "example.org".into(),
                ..Default::default()
            }),
        ),
        event(
            3,
            now - 60 * minute,
            Kind::FlowRecord(FlowRecord {
                src_addr: "10.0.0.7".into(),
                dst_addr: "192.0.2.9".into(),
                dns_query: "pool.example.net".into(),
                ..Default::default()
            }),
        ),
        event(
            4,
            now - 12 * minute,
            Kind::Alert(Alert {
                source: "check".into(),
                subject: "web".into(),
                name: "check_down".into(),
                new_state: State::Down as i32,
                ..Default::default()
            }),
        ),
        event(
            5,
            now - minute,
            Kind::Alert(Alert {
                source: "check".into(),
                subject: "web".into(),
                name: "check_up".into(),
                new_state: State::Up as i32,
                ..Default::default()
            }),
        ),
        event(
            6,
            now - minute,
            Kind::CheckResult(CheckResult {
                check_id: "web".into(),
                result: State::Up as i32,
                state: State::Up as i32,
                duration_us: 1500,
                ..Default::default()
            }),
        ),
    ];
    let mut log = store.writer("acme").unwrap();
    // An old day, deleted by retention, for the deletions example.
    let old = [event(
        0,
        now - Duration::from_secs(30 * 86_400),
        Kind::Alert(Alert::default()),
    )];
    log.append(
        &[Batch {
            agent: "sensor-1",
            zone: "Asia/Tokyo",
            events: &old,
            sequenced: false,
        }],
        now - Duration::from_secs(30 * 86_400),
    )
    .unwrap();
    log.append(
        &[Batch {
            agent: "sensor-1",
            zone: "Asia/Tokyo",
            events: &events,
            sequenced: true,
        }],
        now,
    )
    .unwrap();
    let policy = Policy {
        max_age: Some(Duration::from_secs(7 * 86_400)),
        max_bytes: None,
    };
    assert_eq!(log.enforce(&policy, now).unwrap().len(), 1);

    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/SCHEMA.md")).unwrap();
    let blocks = sql_blocks(&doc);
    assert_eq!(
        blocks.len(),
        8,
        "SCHEMA.md's examples changed: update this test's data"
    );
    let reader = store.reader("acme").unwrap();
    for sql in blocks {
        let (_, rows) = reader.sql(&sql).unwrap_or_else(|e| panic!("{e}\n{sql}"));
        assert!(!rows.is_empty(), "no answer from:\n{sql}");
    }
}
