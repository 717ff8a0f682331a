//! Against a real 3-node JetStream cluster (R3) and a real PostgreSQL: the
//! exactly-once guarantees of owlet-soc-bus's publisher and writer.

use std::time::Duration;

use bytes::Bytes;
use owlet_soc_bus::testkit::{
    NatsCluster, Postgres, assert_contiguous, assert_exactly_once, ints, spawn_writer, stored_seqs,
    subject_seqs, tenant_of_today,
};
use owlet_soc_bus::writer::{MAX_TENANT_BYTES, WriterConfig, prepare_tenant};
use owlet_soc_bus::{Bus, BusConfig, Retention};
use prost::Message;

fn events(range: std::ops::RangeInclusive<u64>) -> Vec<(u64, Bytes)> {
    range
        .map(|seq| {
            let event = owlet_proto::v1::Event {
                seq,
                time: Some(owlet_proto::now()),
                kind: Some(owlet_proto::v1::event::Kind::CheckResult(
                    owlet_proto::v1::CheckResult {
                        check_id: format!("web-{}", seq % 7),
                        target: "https://example.org".into(),
                        duration_us: seq * 10,
                        ..Default::default()
                    },
                )),
            };
            (seq, Bytes::from(event.encode_to_vec()))
        })
        .collect()
}

async fn cluster_and_bus(window: Duration) -> (NatsCluster, Bus) {
    let cluster = NatsCluster::start(3);
    cluster.wait_ready().await;
    let mut config = BusConfig::new(cluster.urls());
    config.duplicate_window = window;
    let bus = Bus::connect(&config).await.unwrap();
    (cluster, bus)
}

/// Two receivers hold the same agent: B got its connection and wrote 1..=50;
/// A, stale (it recovered the mark before B wrote), still publishes 1..=60
/// after the duplicate window passed. `Nats-Msg-Id` cannot help any more;
/// the expected last subject sequence must.
async fn stale_receiver_after_the_window(expect_last: bool) -> Vec<u64> {
    let (_cluster, bus) = cluster_and_bus(Duration::from_secs(1)).await;
    let mut a = bus
        .agent("acme", "fw-1", Retention::default())
        .await
        .unwrap();
    if !expect_last {
        a = a.without_expected_sequence();
    }
    let mut b = bus
        .agent("acme", "fw-1", Retention::default())
        .await
        .unwrap();
    assert_eq!((a.mark(), b.mark()), (0, 0));
    assert_eq!(b.append(&events(1..=50)).await.unwrap().acked_seq, 50);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let done = a.append(&events(1..=60)).await.unwrap();
    assert_eq!(done.acked_seq, 60);
    subject_seqs(bus.jetstream(), "acme", "fw-1").await
}

#[tokio::test(flavor = "multi_thread")]
async fn two_receivers_of_one_agent_store_each_event_once_after_the_duplicate_window() {
    let seqs = stale_receiver_after_the_window(true).await;
    assert_exactly_once("the agent's subject", &seqs, 60);
}

/// The same run without `Nats-Expected-Last-Subject-Sequence` duplicates
/// events: the test above can fail, and fails for the reason it names.
#[tokio::test(flavor = "multi_thread")]
async fn without_the_expected_sequence_header_the_stale_receiver_duplicates() {
    let seqs = stale_receiver_after_the_window(false).await;
    assert!(
        seqs.len() > 60,
        "expected duplicates without the header, got {} messages",
        seqs.len()
    );
}

/// Within the duplicate window, a stale receiver resends a batch another
/// receiver stored (as after an ack lost in a leader election): JetStream
/// refuses the atomic batch for its duplicate `Nats-Msg-Id`s, and the
/// receiver learns the mark from the subject and goes on, at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_resent_within_the_duplicate_window_is_recognised_as_stored() {
    let (_cluster, bus) = cluster_and_bus(Duration::from_secs(120)).await;
    let mut a = bus
        .agent("acme", "fw-1", Retention::default())
        .await
        .unwrap();
    let mut b = bus
        .agent("acme", "fw-1", Retention::default())
        .await
        .unwrap();
    assert_eq!(b.append(&events(1..=50)).await.unwrap().acked_seq, 50);
    let started = std::time::Instant::now();
    let done = a.append(&events(1..=60)).await.unwrap();
    assert_eq!(done.acked_seq, 60);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the resent batch took {:?}: retried instead of recognised",
        started.elapsed()
    );
    let seqs = subject_seqs(bus.jetstream(), "acme", "fw-1").await;
    assert_exactly_once("the agent's subject", &seqs, 60);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mark_is_recovered_from_the_subject_by_a_new_receiver() {
    let (_cluster, bus) = cluster_and_bus(Duration::from_secs(120)).await;
    let mut a = bus
        .agent("acme.eu", "s.1", Retention::default())
        .await
        .unwrap();
    a.append(&events(1..=10)).await.unwrap();
    let other = Bus::connect(&BusConfig::new(vec![_cluster.urls()[2].clone()]))
        .await
        .unwrap();
    let mut b = other
        .agent("acme.eu", "s.1", Retention::default())
        .await
        .unwrap();
    assert_eq!(b.mark(), 10);
    let done = b.append(&events(5..=12)).await.unwrap();
    assert_eq!((done.acked_seq, done.published, done.skipped), (12, 2, 6));
    assert_exactly_once(
        "subject",
        &subject_seqs(bus.jetstream(), "acme.eu", "s.1").await,
        12,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_limits_become_the_stream_limits() {
    let (_cluster, bus) = cluster_and_bus(Duration::from_secs(60)).await;
    // A tenant keeping a day: the stream keeps that day.
    let day = Retention {
        max_age: Some(Duration::from_secs(86_400)),
        max_bytes: Some(1 << 30),
    };
    bus.ensure_stream("acme", day).await.unwrap();
    let mut stream = bus.jetstream().get_stream("OWLET_acme").await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.max_age, Duration::from_secs(86_400));
    assert_eq!(info.config.max_bytes, 1 << 30);
    assert_eq!(info.config.num_replicas, 3);
    assert_eq!(info.config.subjects, ["owlet.acme.>"]);
    assert_eq!(Retention::of_stream(&info.config), day);
    // A tenant keeping 400 days: the stream is a buffer of 7 days (the
    // default), and carries the 400 days for the writer's PostgreSQL.
    let long = Retention {
        max_age: Some(Duration::from_secs(400 * 86_400)),
        max_bytes: None,
    };
    bus.ensure_stream("globex", long).await.unwrap();
    let mut stream = bus.jetstream().get_stream("OWLET_globex").await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(
        info.config.max_age,
        owlet_soc_bus::publish::DEFAULT_BUFFER_MAX_AGE
    );
    assert_eq!(info.config.max_bytes, -1);
    assert_eq!(Retention::of_stream(&info.config), long);
}

/// The tenant stream's leader is killed while an agent's events are being
/// published and written: the subject and PostgreSQL hold each event once.
#[tokio::test(flavor = "multi_thread")]
async fn the_stream_leader_killed_mid_stream_loses_and_duplicates_nothing() {
    let (mut cluster, bus) = cluster_and_bus(Duration::from_secs(120)).await;
    let pg = Postgres::start();
    let admin = pg.client("owlet").await;
    let writer = spawn_writer(&bus, WriterConfig::new(pg.conninfo("owlet")));
    let mut log = bus
        .agent("acme", "fw-1", Retention::default())
        .await
        .unwrap();
    // Enough that the leader dies mid-stream also with atomic batches (one
    // ack per 50 events: thousands of events per second).
    const N: u64 = 15_000;
    let publisher = tokio::spawn(async move {
        for start in (1..=N).step_by(50) {
            log.append(&events(start..=start + 49)).await.unwrap();
        }
        log.mark()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut stream = bus.jetstream().get_stream("OWLET_acme").await.unwrap();
    let leader = stream
        .info()
        .await
        .unwrap()
        .cluster
        .clone()
        .unwrap()
        .leader
        .unwrap();
    assert!(!publisher.is_finished(), "the leader must die mid-stream");
    cluster.kill(&leader);
    assert_eq!(publisher.await.unwrap(), N);
    let seqs = subject_seqs(bus.jetstream(), "acme", "fw-1").await;
    assert_exactly_once("the agent's subject", &seqs, N);
    let stored = wait_for_rows(&admin, "acme", "fw-1", N).await;
    assert_exactly_once("PostgreSQL", &stored, N);
    writer.abort();
}

async fn wait_for_rows(pg: &tokio_postgres::Client, tenant: &str, agent: &str, n: u64) -> Vec<i64> {
    let started = std::time::Instant::now();
    loop {
        let seqs = stored_seqs(pg, tenant, agent).await;
        if seqs.len() as u64 >= n || started.elapsed() > Duration::from_secs(60) {
            // Give a duplicate (there must be none) the time to show.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return stored_seqs(pg, tenant, agent).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A cluster, PostgreSQL, and events `1..=n` of agent acme/fw-1 on the bus.
async fn published(n: u64) -> (NatsCluster, Bus, Postgres) {
    let (cluster, bus) = cluster_and_bus(Duration::from_secs(120)).await;
    let pg = Postgres::start();
    let mut log = bus
        .agent("acme", "fw-1", Retention::default())
        .await
        .unwrap();
    log.append(&events(1..=n)).await.unwrap();
    (cluster, bus, pg)
}

/// The writer stopped dead (its task dropped, mid-batch) over and over and
/// started again: each start resumes after the last commit, nothing twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_writer_stopped_mid_stream_and_restarted_stores_each_event_once() {
    const N: u64 = 3000;
    let (_cluster, bus, pg) = published(N).await;
    let admin = pg.client("owlet").await;
    let mut config = WriterConfig::new(pg.conninfo("owlet"));
    config.batch = 100;
    for round in 0..5 {
        let writer = spawn_writer(&bus, config.clone());
        tokio::time::sleep(Duration::from_millis(300 + round * 150)).await;
        writer.abort();
        let _ = writer.await;
    }
    let writer = spawn_writer(&bus, config);
    let stored = wait_for_rows(&admin, "acme", "fw-1", N).await;
    assert_exactly_once("PostgreSQL", &stored, N);
    writer.abort();
}

/// Events stored while the writer's position is behind them (the cursor
/// row lost, or restored from an older backup than the events): the first
/// 1,000 events and their agent's mark are in PostgreSQL, the position is
/// at the stream's start. A writer reads all 3,000: the stored ones are
/// dropped by the mark, the others stored once, and their ids follow the
/// stream's order (readers use `id` as a cursor).
#[tokio::test(flavor = "multi_thread")]
async fn events_stored_behind_the_position_come_again_and_are_absorbed() {
    const N: u64 = 3000;
    const COMMITTED: u64 = 1000;
    let (_cluster, bus, pg) = published(N).await;
    let admin = pg.client("owlet").await;
    let now_us = tenant_of_today(&admin, "acme").await;
    admin
        .batch_execute(&format!(
            "INSERT INTO tenant_acme.events (agent, seq, stream_seq, received_us, kind, time_us, body)
             SELECT 'fw-1', s, s, {now_us}, 'check_result', 0, '\\x00' FROM generate_series(1, {COMMITTED}) s;
             INSERT INTO tenant_acme.agents (agent, seq, first_seen_us) VALUES ('fw-1', {COMMITTED}, {now_us})"
        ))
        .await
        .unwrap();
    let mut config = WriterConfig::new(pg.conninfo("owlet"));
    config.batch = 512;
    let writer = spawn_writer(&bus, config);
    let stored = wait_for_rows(&admin, "acme", "fw-1", N).await;
    assert_exactly_once("PostgreSQL", &stored, N);
    assert_contiguous("PostgreSQL, in id order", &seqs_by_id(&admin).await, 1);
    writer.abort();
}

/// Two writers on one PostgreSQL: one holds the tenant, the other stands
/// by; the holder dies mid-stream (its task dropped, its connections with
/// it) and the standby goes on from the committed position: each event
/// stored once, in stream order by `id`.
#[tokio::test(flavor = "multi_thread")]
async fn a_standby_writer_takes_the_tenant_over_when_the_holder_dies() {
    const N: u64 = 6000;
    let (_cluster, bus) = cluster_and_bus(Duration::from_secs(120)).await;
    let pg = Postgres::start();
    let admin = pg.client("owlet").await;
    let mut log = bus
        .agent("acme", "fw-1", Retention::default())
        .await
        .unwrap();
    // Published over about 3 s, so the holder dies mid-stream.
    let publisher = tokio::spawn(async move {
        for start in (1..=N).step_by(100) {
            log.append(&events(start..=start + 99)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut config = WriterConfig::new(pg.conninfo("owlet"));
    config.batch = 100;
    let holder = spawn_writer(&bus, config.clone());
    wait_for_rows(&admin, "acme", "fw-1", 1).await;
    let standby = spawn_writer(&bus, config);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The standby reads nothing: one consumer on the stream, the holder's.
    let consumers = bus
        .jetstream()
        .get_stream("OWLET_acme")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .consumer_count;
    assert_eq!(consumers, 1, "only the holder consumes the tenant's stream");
    holder.abort();
    let _ = holder.await;
    let at_death = stored_seqs(&admin, "acme", "fw-1").await.len() as u64;
    assert!(at_death < N, "the holder must die mid-stream");
    publisher.await.unwrap();
    let stored = wait_for_rows(&admin, "acme", "fw-1", N).await;
    assert_exactly_once("PostgreSQL", &stored, N);
    assert_contiguous("PostgreSQL, in id order", &seqs_by_id(&admin).await, 1);
    standby.abort();
}

/// The tenant stream deleted and created again (an operator's mistake, or
/// a cluster rebuilt): its messages are numbered from 1 anew, so the
/// writer's position in the old stream means nothing. The writer notices
/// (the stream's creation time) and reads the new stream from its start.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_created_again_is_read_from_its_start() {
    let (_cluster, bus, pg) = published(1500).await;
    let admin = pg.client("owlet").await;
    let writer = spawn_writer(&bus, WriterConfig::new(pg.conninfo("owlet")));
    wait_for_rows(&admin, "acme", "fw-1", 1500).await;
    bus.jetstream().delete_stream("OWLET_acme").await.unwrap();
    // The new stream's sequences 1..=1000 are below the old position
    // (1500): a writer that kept it would skip them. The receiver that
    // created the stream notices it is gone and creates it again.
    let mut log = bus
        .agent("acme", "fw-1", Retention::default())
        .await
        .unwrap();
    log.append(&events(1501..=2500)).await.unwrap();
    let stored = wait_for_rows(&admin, "acme", "fw-1", 2500).await;
    assert_exactly_once("PostgreSQL", &stored, 2500);
    writer.abort();
}

/// What `owlet-soc writer --status` shows: the stream's end, the stored
/// position and the lag between them, whether a writer holds the tenant,
/// the partitions and the agents.
#[tokio::test(flavor = "multi_thread")]
async fn the_writers_status_shows_lag_holder_storage_and_agents() {
    let (_cluster, bus, pg) = published(3000).await;
    let admin = pg.client("owlet").await;
    let writer = spawn_writer(&bus, WriterConfig::new(pg.conninfo("owlet")));
    wait_for_rows(&admin, "acme", "fw-1", 3000).await;
    let status = owlet_soc_bus::status::tenants(bus.jetstream(), &admin)
        .await
        .unwrap();
    assert_eq!(status.len(), 1, "{status:?}");
    let acme = &status[0];
    assert_eq!(acme.tenant, "acme");
    assert_eq!(
        (acme.stream_last, acme.position, acme.lag),
        (Some(3000), 3000, 0)
    );
    assert!(acme.held, "the running writer holds the tenant");
    assert_eq!((acme.days, acme.agents, acme.silent), (1, 1, 0));
    assert!(acme.bytes > 0);
    writer.abort();
    let _ = writer.await;
    // Its connection gone, nobody holds the tenant; more events: a lag.
    let mut log = bus
        .agent("acme", "fw-1", Retention::default())
        .await
        .unwrap();
    log.append(&events(3001..=3010)).await.unwrap();
    let started = std::time::Instant::now();
    loop {
        let acme = owlet_soc_bus::status::tenants(bus.jetstream(), &admin)
            .await
            .unwrap()
            .remove(0);
        if !acme.held {
            assert_eq!(acme.lag, 10, "{acme:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still held: {acme:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The tenant's stored seqs in `id` order.
async fn seqs_by_id(admin: &tokio_postgres::Client) -> Vec<i64> {
    ints(admin, "SELECT seq FROM tenant_acme.events ORDER BY id").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_role_cannot_read_another_tenants_schema() {
    let pg = Postgres::start();
    let admin = pg.client("owlet").await;
    prepare_tenant(&admin, "a").await.unwrap();
    prepare_tenant(&admin, "b").await.unwrap();
    // Idempotent: a second writer (or a restart) prepares again.
    prepare_tenant(&admin, "b").await.unwrap();
    owlet_soc_bus::partitions::create_day(&admin, "b", 0)
        .await
        .unwrap();
    admin
        .batch_execute(
            "INSERT INTO tenant_b.events (agent, seq, stream_seq, received_us, kind, time_us, body) VALUES ('x', 1, 1, 0, 'alert', 0, '\\x00');
             ALTER ROLE owlet_tenant_a LOGIN; ALTER ROLE owlet_tenant_b LOGIN;",
        )
        .await
        .unwrap();
    let a = pg.client("owlet_tenant_a").await;
    assert_eq!(
        a.query("SELECT * FROM tenant_a.events", &[])
            .await
            .unwrap()
            .len(),
        0
    );
    for sql in [
        "SELECT * FROM tenant_b.events",
        "SELECT count(*) FROM tenant_b.events",
        // The day partition itself, and the agents' marks and liveness.
        "SELECT * FROM tenant_b.events_19700101",
        "SELECT * FROM tenant_b.agents",
        "INSERT INTO tenant_a.events (agent, seq, stream_seq, received_us, kind, time_us, body) VALUES ('x', 1, 1, 0, 'alert', 0, '\\x00')",
    ] {
        let e = a.query(sql, &[]).await.unwrap_err();
        assert_eq!(
            e.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {e}"
        );
    }
    let b = pg.client("owlet_tenant_b").await;
    assert_eq!(
        b.query("SELECT * FROM tenant_b.events", &[])
            .await
            .unwrap()
            .len(),
        1
    );
}

/// PostgreSQL cuts identifiers at 63 bytes: the longest tenant name the
/// SOC takes keeps its schema and role whole; one byte more (whose role
/// PostgreSQL would cut to the first one's) is refused by the writer and by
/// the receivers, naming the tenant and the limit.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_name_postgres_would_cut_is_refused_and_the_longest_is_kept_whole() {
    let pg = Postgres::start();
    let admin = pg.client("owlet").await;
    let longest = "t".repeat(MAX_TENANT_BYTES);
    prepare_tenant(&admin, &longest).await.unwrap();
    let whole = admin
        .query_one(
            "SELECT count(*) FROM pg_namespace n, pg_roles r WHERE n.nspname = $1 AND r.rolname = $2",
            &[&format!("tenant_{longest}"), &format!("owlet_tenant_{longest}")],
        )
        .await
        .unwrap();
    assert_eq!(whole.get::<_, i64>(0), 1, "schema and role not whole");
    let too_long = format!("{longest}x");
    let refused = prepare_tenant(&admin, &too_long)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains(&too_long) && refused.contains("63 bytes"),
        "{refused}"
    );
    let (_cluster, bus) = cluster_and_bus(Duration::from_secs(120)).await;
    let refused = bus
        .agent(&too_long, "fw-1", Retention::default())
        .await
        .err()
        .expect("a receiver must refuse the tenant")
        .to_string();
    assert!(refused.contains("63 bytes"), "{refused}");
}

/// A reader's cursor moved on its own (`Claim::advance_to`): never back,
/// with its figures; one session holds it, another gets `None` until the
/// holder's connection ends.
///
/// Seen failing: without `GREATEST` in `advance_to`, a stale holder's
/// advance to 5 set the position back from 10.
#[tokio::test(flavor = "multi_thread")]
async fn a_readers_cursor_never_moves_back_and_is_held_by_one_session() {
    let pg = Postgres::start();
    let (one, two) = (pg.client("owlet").await, pg.client("owlet").await);
    owlet_soc_bus::cursor::prepare(&one).await.unwrap();
    let mut claim = owlet_soc_bus::cursor::claim(&one, "output:es", "acme")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.position, 0);
    assert!(
        owlet_soc_bus::cursor::claim(&two, "output:es", "acme")
            .await
            .unwrap()
            .is_none(),
        "held by the first session"
    );
    claim.failed(&one, "es down").await.unwrap();
    claim.advance_to(&one, 10, 10).await.unwrap();
    claim.advance_to(&one, 5, 3).await.unwrap();
    let row = one
        .query_one(
            "SELECT position, delivered, errors, last_error FROM owlet_bus.cursors WHERE consumer = 'output:es' AND tenant = 'acme'",
            &[],
        )
        .await
        .unwrap();
    let figures: (i64, i64, i64, Option<String>) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(figures, (10, 13, 1, None));
    drop(one);
    let started = std::time::Instant::now();
    let taken = loop {
        if let Some(c) = owlet_soc_bus::cursor::claim(&two, "output:es", "acme")
            .await
            .unwrap()
        {
            break c;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the lock outlived its session"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(taken.position, 10);
}

/// Records the SOC makes about an agent (a self-test's): published on the
/// agent's records subject between its events, one of them twice (a
/// retry within the duplicate window). The writer stores each record once
/// with `seq` NULL, every event once, and the agent's mark is its events'
/// alone.
#[tokio::test(flavor = "multi_thread")]
async fn records_outside_the_agents_sequence_are_stored_once_beside_its_events() {
    let (_cluster, bus, pg) = published(100).await;
    let admin = pg.client("owlet").await;
    let record = |n: u64| {
        let mut event = owlet_proto::v1::Event::decode(events(n..=n)[0].1.clone()).unwrap();
        event.seq = 0;
        Bytes::from(event.encode_to_vec())
    };
    for (id, n) in [("selftest/1", 1), ("selftest/2", 2), ("selftest/1", 1)] {
        bus.publish_record("acme", "fw-1", Retention::default(), id, record(n))
            .await
            .unwrap();
    }
    let mut log = bus
        .agent("acme", "fw-1", Retention::default())
        .await
        .unwrap();
    assert_eq!(log.mark(), 100, "records do not move the agent's mark");
    log.append(&events(101..=150)).await.unwrap();
    let writer = spawn_writer(&bus, WriterConfig::new(pg.conninfo("owlet")));
    let stored = wait_for_rows(&admin, "acme", "fw-1", 150).await;
    assert_exactly_once("PostgreSQL", &stored, 150);
    let records = ints(
        &admin,
        "SELECT stream_seq FROM tenant_acme.events WHERE agent = 'fw-1' AND seq IS NULL ORDER BY id",
    )
    .await;
    assert_eq!(records, [101, 102], "each record once, in stream order");
    let mark = ints(
        &admin,
        "SELECT seq FROM tenant_acme.agents WHERE agent = 'fw-1'",
    )
    .await;
    assert_eq!(mark, [150]);
    writer.abort();
}
