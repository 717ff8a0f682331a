//! Against a real 3-node JetStream cluster and a real PostgreSQL: the
//! writer keeps each check's latest state (`check_state`, what the
//! scaled-out portal's check board reads) as the embedded store does.

use std::time::Duration;

use bytes::Bytes;
use owlet_proto::v1::{CheckResult, Event, State, event::Kind};
use owlet_soc_bus::testkit::{NatsCluster, Postgres, spawn_writer, stored_seqs, tenant_of_today};
use owlet_soc_bus::writer::{WriterConfig, prepare_tenant};
use owlet_soc_bus::{Bus, BusConfig, Retention};
use prost::Message;

/// A result of `check` at event time `time_us` in `state`.
fn result(seq: u64, check: &str, state: State, time_us: i64) -> (u64, Bytes) {
    let event = Event {
        seq,
        time: Some(owlet_proto::timestamp(
            std::time::UNIX_EPOCH + Duration::from_micros(time_us as u64),
        )),
        kind: Some(Kind::CheckResult(CheckResult {
            check_id: check.into(),
            target: format!("{check}.example.org:443"),
            state: state as i32,
            result: state as i32,
            message: format!("{check} {state:?}"),
            ..Default::default()
        })),
    };
    (seq, Bytes::from(event.encode_to_vec()))
}

/// `(check_id, state, time_us, since_us)` of agent fw-1, by check.
async fn board(pg: &tokio_postgres::Client) -> Vec<(String, String, i64, Option<i64>)> {
    pg.query(
        "SELECT check_id, state, time_us, since_us FROM tenant_acme.check_state
          WHERE agent = 'fw-1' ORDER BY check_id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

async fn wait_for(pg: &tokio_postgres::Client, n: usize) {
    let started = std::time::Instant::now();
    while stored_seqs(pg, "acme", "fw-1").await.len() < n {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{n} events not stored in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const S: i64 = 1_000_000;

#[tokio::test(flavor = "multi_thread")]
async fn each_checks_latest_state_and_since_when_are_kept_across_batches() {
    let cluster = NatsCluster::start(3);
    cluster.wait_ready().await;
    let bus = Bus::connect(&BusConfig::new(cluster.urls())).await.unwrap();
    let pg = Postgres::start();
    let admin = pg.client("owlet").await;
    let writer = spawn_writer(&bus, WriterConfig::new(pg.conninfo("owlet")));
    let mut log = bus
        .agent("acme", "fw-1", Retention::default())
        .await
        .unwrap();
    let t = 1_800_000_000 * S;
    // One batch: web up, up, then down; dns up.
    log.append(&[
        result(1, "web", State::Up, t + 100 * S),
        result(2, "web", State::Up, t + 200 * S),
        result(3, "web", State::Down, t + 300 * S),
        result(4, "dns", State::Up, t + 150 * S),
    ])
    .await
    .unwrap();
    wait_for(&admin, 4).await;
    assert_eq!(
        board(&admin).await,
        [
            ("dns".into(), "up".into(), t + 150 * S, Some(t + 150 * S)),
            ("web".into(), "down".into(), t + 300 * S, Some(t + 300 * S)),
        ]
    );
    // The next batch: web still down (since stays), an older web result
    // arriving late (ignored), dns goes down (since moves).
    log.append(&[
        result(5, "web", State::Down, t + 400 * S),
        result(6, "web", State::Up, t + 250 * S),
        result(7, "dns", State::Down, t + 500 * S),
    ])
    .await
    .unwrap();
    wait_for(&admin, 7).await;
    assert_eq!(
        board(&admin).await,
        [
            ("dns".into(), "down".into(), t + 500 * S, Some(t + 500 * S)),
            ("web".into(), "down".into(), t + 400 * S, Some(t + 300 * S)),
        ]
    );
    // A late result in a batch of its own (a spooled tail): no change.
    log.append(&[result(8, "web", State::Up, t + 350 * S)])
        .await
        .unwrap();
    wait_for(&admin, 8).await;
    assert_eq!(
        board(&admin).await[1],
        ("web".into(), "down".into(), t + 400 * S, Some(t + 300 * S)),
        "an older result does not overwrite the latest"
    );
    let readable: bool = admin
        .query_one(
            "SELECT has_table_privilege('owlet_tenant_acme', 'tenant_acme.check_state', 'SELECT')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(readable, "the tenant's role reads its check states");
    writer.abort();
}

/// A tenant stored before the table existed (an upgraded writer): the
/// table is made from the stored results, each check's latest, its
/// "since" unknown until the state next changes.
#[tokio::test(flavor = "multi_thread")]
async fn the_table_made_for_a_tenant_stored_before_is_filled_from_its_results() {
    let pg = Postgres::start();
    let admin = pg.client("owlet").await;
    let now_us = tenant_of_today(&admin, "acme").await;
    admin
        .batch_execute(&format!(
            "DROP TABLE tenant_acme.check_state;
             INSERT INTO tenant_acme.events (agent, seq, stream_seq, received_us, kind, time_us, check_id, state, body)
             VALUES ('fw-1', 1, 1, {now_us}, 'check_result', 100, 'web', 'up', '\\x00'),
                    ('fw-1', 2, 2, {now_us}, 'check_result', 300, 'web', 'down', '\\x00'),
                    ('fw-1', 3, 3, {now_us}, 'check_result', 200, 'web', 'up', '\\x00'),
                    ('fw-1', 4, 4, {now_us}, 'host_metrics', 400, NULL, NULL, '\\x00')"
        ))
        .await
        .unwrap();
    prepare_tenant(&admin, "acme").await.unwrap();
    assert_eq!(
        board(&admin).await,
        [("web".into(), "down".into(), 300, None)]
    );
    // Made once: prepared again, the rows stay as they are.
    admin
        .batch_execute("UPDATE tenant_acme.check_state SET since_us = 250")
        .await
        .unwrap();
    prepare_tenant(&admin, "acme").await.unwrap();
    assert_eq!(
        board(&admin).await,
        [("web".into(), "down".into(), 300, Some(250))]
    );
}
