//! Against a real 3-node JetStream cluster, the real writer and a real
//! PostgreSQL: the rollup consumer (`owlet_soc_bus::rollup`) keeps the
//! same hourly rollups as the embedded SOC, exactly once.
//!
//! The workload (`owlet_soc_store::workload`: checks, host metrics, file
//! changes, alerts, flows with more sources and names than a closed hour
//! keeps, late flows with new keys) goes through receivers' publishes and
//! the writer into PostgreSQL; the same stored events, batch by batch
//! (each writer batch is one `received_us`), are appended to an embedded
//! SQLite store, whose rollups are the reference.
//!
//! Seen failing (each break made by hand, then undone):
//! * the cursor moved in a transaction of its own before the batch's
//!   figures (`rollup::step`): `…stopped_dead…` failed on
//!   "acme: a row of rollup_hours differs" (327 events counted in an hour
//!   of 1,456: the batches the stopped consumer had moved past were lost);
//! * the claim skipped (`cursor::claim` returning the position though
//!   another session holds its lock): `…standby…` failed on the same row
//!   with 1,756 (the standby rolled up what the holder did too);
//! * a batch's keys written in hash order (`Rollup::rows` a `HashMap`):
//!   `…equal_the_embedded_socs…` failed on rollup_talkers' `dst_port`
//!   OTHER row (a closed hour's free rows went to other keys than in
//!   SQLite).

use std::collections::HashSet;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use owlet_proto::v1::Event;
use owlet_soc_bus::rollup::{self, CONSUMER, Tenants, tables};
use owlet_soc_bus::testkit::{NatsCluster, Postgres};
use owlet_soc_bus::writer::WriterConfig;
use owlet_soc_bus::{Bus, BusConfig, Retention};
use owlet_soc_store::rollup::TABLES;
use owlet_soc_store::rollup::acc::Cell;
use owlet_soc_store::workload::{Rng, hour_of_events, late_flow};
use owlet_soc_store::{Batch, Store};
use prost::Message;
use tokio_postgres::Client;

/// Two tenants, two agents each, with data of their own.
const TENANTS: [(&str, [&str; 2]); 2] = [("acme", ["s1", "s2"]), ("globex", ["g1", "g2"])];

struct World {
    _cluster: NatsCluster,
    pg: Postgres,
    admin: Client,
    writer: tokio::task::JoinHandle<Result<(), owlet_soc_bus::BusError>>,
    /// Stored events per tenant.
    stored: Vec<(String, i64)>,
}

/// The workload of one tenant's agent: four hours, flows heavy every
/// other hour, and late flows with keys no closed hour keeps.
fn agent_events(tenant: usize, agent: usize) -> Vec<(u64, Bytes)> {
    let mut rng = Rng(0x5eed_0000_0000_0001 + (tenant * 2 + agent) as u64);
    let mut events: Vec<Event> = Vec::new();
    for hour in 0..4 {
        // Flow sources per tenant apart (10.<agent>.0.x vs 10.<agent+2>.0.x).
        events.extend(hour_of_events(
            &mut rng,
            tenant * 2 + agent,
            hour,
            hour % 2 == 0,
        ));
        events.extend(
            (0..40).map(|i| late_flow(hour, tenant as u64 * 1000 + agent as u64 * 100 + i)),
        );
    }
    events
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            e.seq = i as u64 + 1;
            (e.seq, Bytes::from(e.encode_to_vec()))
        })
        .collect()
}

/// A cluster, PostgreSQL and the writer (small batches, so the rollup
/// consumer sees many), with the workload of every tenant stored.
async fn world() -> World {
    let cluster = NatsCluster::start(3);
    cluster.wait_ready().await;
    let bus = Bus::connect(&BusConfig::new(cluster.urls())).await.unwrap();
    let pg = Postgres::start();
    let admin = pg.client("owlet").await;
    let mut config = WriterConfig::new(pg.conninfo("owlet"));
    config.batch = 300;
    let writer = tokio::spawn(owlet_soc_bus::writer::run(
        bus.jetstream().clone(),
        config,
        std::future::pending(),
    ));
    let mut stored = Vec::new();
    for (t, (tenant, agents)) in TENANTS.iter().enumerate() {
        let mut logs = Vec::new();
        for (a, agent) in agents.iter().enumerate() {
            let log = bus
                .agent(tenant, agent, Retention::default())
                .await
                .unwrap();
            logs.push((log, agent_events(t, a)));
        }
        // The agents' events interleaved, 250 at a time.
        let total: usize = logs.iter().map(|(_, e)| e.len()).sum();
        for start in (0..total).step_by(250) {
            for (log, events) in &mut logs {
                if start < events.len() {
                    log.append(&events[start..(start + 250).min(events.len())])
                        .await
                        .unwrap();
                }
            }
        }
        stored.push((tenant.to_string(), total as i64));
    }
    for (tenant, n) in &stored {
        wait_until(
            &admin,
            &format!("SELECT count(*) FROM tenant_{tenant}.events"),
            *n,
        )
        .await;
    }
    World {
        _cluster: cluster,
        pg,
        admin,
        writer,
        stored,
    }
}

/// Waits until `sql` (one bigint) reaches `n` (an error, such as a table
/// the writer has not made yet, counts as 0); fails after two minutes.
async fn wait_until(pg: &Client, sql: &str, n: i64) {
    let started = std::time::Instant::now();
    loop {
        let v: i64 = pg.query_one(sql, &[]).await.map_or(0, |r| r.get(0));
        if v >= n {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{sql} is {v} after 2 minutes, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The rollup consumer's position in `tenant`.
fn position_sql(tenant: &str) -> String {
    format!(
        "SELECT coalesce((SELECT position FROM owlet_bus.cursors WHERE consumer = '{CONSUMER}' AND tenant = '{tenant}'), 0)"
    )
}

async fn position(admin: &Client, tenant: &str) -> i64 {
    admin
        .query_one(&position_sql(tenant), &[])
        .await
        .unwrap()
        .get(0)
}

/// Waits until the rollup consumer has rolled up every stored event of
/// `tenant`.
async fn wait_rolled_up(admin: &Client, tenant: &str) {
    let last: i64 = admin
        .query_one(&format!("SELECT max(id) FROM tenant_{tenant}.events"), &[])
        .await
        .unwrap()
        .get(0);
    wait_until(admin, &position_sql(tenant), last).await;
}

/// The embedded SOC given the same stored events as PostgreSQL holds for
/// `tenant`, in the same batches (one append per writer batch, at its
/// `received_us`).
async fn sqlite_mirror(admin: &Client, tenant: &str, dir: &std::path::Path) -> Store {
    let store = Store::open(dir).unwrap();
    let mut log = store.writer(tenant).unwrap();
    let rows = admin
        .query(
            &format!(
                "SELECT agent, seq, received_us, body FROM tenant_{tenant}.events ORDER BY id"
            ),
            &[],
        )
        .await
        .unwrap();
    let mut i = 0;
    while i < rows.len() {
        let received_us: i64 = rows[i].get(2);
        let mut by_agent: Vec<(String, Vec<Event>)> = Vec::new();
        while i < rows.len() && rows[i].get::<_, i64>(2) == received_us {
            let agent: String = rows[i].get(0);
            let mut event = Event::decode(rows[i].get::<_, &[u8]>(3)).unwrap();
            event.seq = rows[i].get::<_, i64>(1) as u64;
            match by_agent.iter_mut().find(|(a, _)| *a == agent) {
                Some((_, events)) => events.push(event),
                None => by_agent.push((agent, vec![event])),
            }
            i += 1;
        }
        let batches: Vec<Batch> = by_agent
            .iter()
            .map(|(agent, events)| Batch {
                agent,
                zone: "UTC",
                events,
                sequenced: true,
            })
            .collect();
        let received = UNIX_EPOCH + Duration::from_micros(received_us as u64);
        log.append(&batches, received).unwrap();
    }
    store
}

/// Every row of every rollup table, sorted, as cells.
type Tables = Vec<(&'static str, Vec<Vec<Cell>>)>;

fn key_cells(hour: i64, keys: impl Iterator<Item = String>) -> Vec<Cell> {
    std::iter::once(Cell::Int(hour))
        .chain(keys.map(Cell::Text))
        .collect()
}

fn sorted(mut rows: Vec<Vec<Cell>>) -> Vec<Vec<Cell>> {
    rows.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    rows
}

async fn pg_tables(admin: &Client, tenant: &str) -> Tables {
    let mut out = Vec::new();
    let hours = admin
        .query(
            &format!("SELECT hour_us, events, pruned FROM tenant_{tenant}.rollup_hours"),
            &[],
        )
        .await
        .unwrap();
    out.push((
        "rollup_hours",
        sorted(
            hours
                .iter()
                .map(|r| (0..3).map(|i| Cell::Int(r.get(i))).collect())
                .collect(),
        ),
    ));
    for (t, table) in TABLES.iter().enumerate() {
        let rows = admin
            .query(
                &format!("SELECT * FROM tenant_{tenant}.{}", table.name),
                &[],
            )
            .await
            .unwrap();
        let n = table.keys.len();
        let rows = rows
            .iter()
            .map(|r| {
                let mut cells = key_cells(r.get(0), (1..=n).map(|i| r.get::<_, String>(i)));
                cells.extend(tables::values_of(r, t, 1 + n));
                cells
            })
            .collect();
        out.push((table.name, sorted(rows)));
    }
    out
}

fn sqlite_tables(store: &Store, tenant: &str) -> Tables {
    use rusqlite::types::Value;
    let reader = store.reader(tenant).unwrap();
    let db = reader.connection();
    let names = std::iter::once("rollup_hours").chain(TABLES.iter().map(|t| t.name));
    names
        .map(|name| {
            let mut stmt = db.prepare(&format!("SELECT * FROM {name}")).unwrap();
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |r| {
                    (0..n)
                        .map(|i| {
                            Ok(match r.get::<_, Value>(i)? {
                                Value::Integer(v) => Cell::Int(v),
                                Value::Real(v) => Cell::Real(v),
                                Value::Text(v) => Cell::Text(v),
                                _ => Cell::Null,
                            })
                        })
                        .collect()
                })
                .unwrap()
                .collect::<rusqlite::Result<Vec<Vec<Cell>>>>()
                .unwrap();
            (name, sorted(rows))
        })
        .collect()
}

/// The rollups of `tenant` in PostgreSQL equal the embedded SOC's for the
/// same stored batches, table by table and row by row.
async fn assert_same_as_sqlite(admin: &Client, tenant: &str) {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_mirror(admin, tenant, dir.path()).await;
    let want = sqlite_tables(&store, tenant);
    let got = pg_tables(admin, tenant).await;
    for ((name, want), (_, got)) in want.iter().zip(&got) {
        assert!(
            !want.is_empty(),
            "{tenant}: {name} is empty in SQLite: the workload misses it"
        );
        assert_eq!(
            want.len(),
            got.len(),
            "{tenant}: {name} has {} rows in SQLite, {} in PostgreSQL",
            want.len(),
            got.len()
        );
        for (w, g) in want.iter().zip(got) {
            assert_eq!(
                w, g,
                "{tenant}: a row of {name} differs (SQLite, PostgreSQL)"
            );
        }
    }
}

/// Lets `consumer` roll every tenant up to its last event, then holds
/// each tenant's rollups against SQLite's.
async fn assert_every_tenant_counted_once(
    world: World,
    consumer: tokio::task::JoinHandle<Result<(), owlet_soc_bus::BusError>>,
) {
    for (tenant, _) in &world.stored {
        wait_rolled_up(&world.admin, tenant).await;
    }
    for (tenant, _) in &world.stored {
        assert_same_as_sqlite(&world.admin, tenant).await;
    }
    consumer.abort();
    world.writer.abort();
}

/// The consumer of every tenant, until its task is aborted.
fn spawn_rollups(world: &World) -> tokio::task::JoinHandle<Result<(), owlet_soc_bus::BusError>> {
    tokio::spawn(rollup::run(
        world.pg.conninfo("owlet"),
        Tenants::default(),
        std::future::pending(),
    ))
}

/// (a) and (d): the same rollups as SQLite, a closed hour bounded to
/// TOP_N + OTHER, and each tenant's tables only its own data.
#[tokio::test(flavor = "multi_thread")]
async fn rollups_in_postgres_equal_the_embedded_socs_and_keep_tenants_apart() {
    let world = world().await;
    let consumer = spawn_rollups(&world);
    for (tenant, _) in &world.stored {
        wait_rolled_up(&world.admin, tenant).await;
    }
    for (tenant, n) in &world.stored {
        let events: i64 = world
            .admin
            .query_one(
                &format!("SELECT sum(events)::bigint FROM tenant_{tenant}.rollup_hours"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(events, *n, "{tenant}: events counted in rollup_hours");
        assert_same_as_sqlite(&world.admin, tenant).await;
    }
    // Bounded: a closed hour keeps at most TOP_N keys and OTHER per dimension,
    // and the workload does fold keys into OTHER.
    let most: i64 = world
        .admin
        .query_one(
            "SELECT max(n) FROM (SELECT count(*) n FROM tenant_acme.rollup_talkers GROUP BY hour_us, dimension) c",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        most,
        owlet_soc_store::rollup::TOP_N as i64 + 1,
        "rows of the fullest (hour, dimension)"
    );
    // Tenants apart: no agent, source or name of one tenant in the other's rollups.
    for (tenant, other_agents, other_prefix) in [
        ("acme", ["g1", "g2"], "10.2."),
        ("globex", ["s1", "s2"], "10.0."),
    ] {
        let agents: HashSet<String> = world
            .admin
            .query(&format!("SELECT agent FROM tenant_{tenant}.rollup_checks UNION SELECT agent FROM tenant_{tenant}.rollup_host"), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(
            other_agents.iter().all(|a| !agents.contains(*a)),
            "{tenant}'s rollups name {agents:?}"
        );
        let foreign: i64 = world
            .admin
            .query_one(&format!("SELECT count(*) FROM tenant_{tenant}.rollup_talkers WHERE key LIKE '{other_prefix}%'"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            foreign, 0,
            "{tenant}'s talkers hold the other tenant's sources"
        );
    }
    consumer.abort();
    world.writer.abort();
}

/// (b): the consumer stopped dead (its task dropped mid-transaction, its
/// connection with it) over and over, then run to the end: every figure
/// counted once, the same as SQLite's.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollup_consumer_stopped_dead_and_restarted_counts_each_event_once() {
    let world = world().await;
    let last: i64 = world
        .admin
        .query_one("SELECT max(id) FROM tenant_acme.events", &[])
        .await
        .unwrap()
        .get(0);
    let mut stopped_mid_run = 0;
    for round in 0..8u64 {
        let consumer = spawn_rollups(&world);
        tokio::time::sleep(Duration::from_millis(300 + round * 250)).await;
        consumer.abort();
        let _ = consumer.await;
        let now: i64 = position(&world.admin, "acme").await;
        stopped_mid_run += i32::from(now > 0 && now < last);
    }
    assert!(
        stopped_mid_run > 0,
        "the consumer was never stopped between its first and last commit"
    );
    let consumer = spawn_rollups(&world);
    assert_every_tenant_counted_once(world, consumer).await;
}

/// (b): two processes' consumers on one PostgreSQL: one holds the tenant,
/// the other stands by; the holder dies mid-run and the standby goes on
/// from the committed position: every figure counted once.
#[tokio::test(flavor = "multi_thread")]
async fn a_standby_rollup_consumer_takes_over_and_counts_each_event_once() {
    let world = world().await;
    let holder = spawn_rollups(&world);
    let started = std::time::Instant::now();
    loop {
        let now: i64 = position(&world.admin, "acme").await;
        if now > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the holder never committed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let standby = spawn_rollups(&world);
    tokio::time::sleep(Duration::from_millis(700)).await;
    holder.abort();
    let _ = holder.await;
    assert_every_tenant_counted_once(world, standby).await;
}
