//! A scenario for tests of what reads the scaled-out SOC's PostgreSQL
//! (rollups, reports): two tenants' workload (`owlet_soc_store::workload`)
//! published by receivers to a real 3-node JetStream cluster and stored by
//! the real writer in a real PostgreSQL, and the same stored events
//! appended, batch by batch (one append per writer batch, at its
//! `received_us`), to an embedded SQLite store: the reference the
//! PostgreSQL side is held against. Test builds only (feature `testkit`).

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use owlet_proto::v1::Event;
use owlet_soc_store::rollup::TABLES;
use owlet_soc_store::rollup::acc::Cell;
use owlet_soc_store::workload::{Rng, hour_of_events, late_flow};
use owlet_soc_store::{Batch, Store};
use prost::Message;
use tokio_postgres::Client;

use crate::rollup::CONSUMER;
use crate::testkit::{NatsCluster, Postgres};
use crate::writer::WriterConfig;
use crate::{Bus, BusConfig, Retention};

/// Two tenants, two agents each, with data of their own.
pub const TENANTS: [(&str, [&str; 2]); 2] = [("acme", ["s1", "s2"]), ("globex", ["g1", "g2"])];

pub struct World {
    pub cluster: NatsCluster,
    pub pg: Postgres,
    pub admin: Client,
    pub writer: tokio::task::JoinHandle<Result<(), crate::BusError>>,
    /// Stored events per tenant.
    pub stored: Vec<(String, i64)>,
}

/// The workload of one tenant's agent: four hours, flows heavy every
/// other hour, and late flows with keys no closed hour keeps.
pub fn agent_events(tenant: usize, agent: usize) -> Vec<(u64, Bytes)> {
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
pub async fn world() -> World {
    let cluster = NatsCluster::start(3);
    cluster.wait_ready().await;
    let bus = Bus::connect(&BusConfig::new(cluster.urls())).await.unwrap();
    let pg = Postgres::start();
    let admin = pg.client("owlet").await;
    let mut config = WriterConfig::new(pg.conninfo("owlet"));
    config.batch = 300;
    let writer = tokio::spawn(crate::writer::run(
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
        cluster,
        pg,
        admin,
        writer,
        stored,
    }
}

/// Waits until `sql` (one bigint) reaches `n` (an error, such as a table
/// the writer has not made yet, counts as 0); fails after two minutes.
pub async fn wait_until(pg: &Client, sql: &str, n: i64) {
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
pub fn position_sql(tenant: &str) -> String {
    format!(
        "SELECT coalesce((SELECT position FROM owlet_bus.cursors WHERE consumer = '{CONSUMER}' AND tenant = '{tenant}'), 0)"
    )
}

pub async fn position(admin: &Client, tenant: &str) -> i64 {
    admin
        .query_one(&position_sql(tenant), &[])
        .await
        .unwrap()
        .get(0)
}

/// Waits until the rollup consumer has rolled up every stored event of
/// `tenant`.
pub async fn wait_rolled_up(admin: &Client, tenant: &str) {
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
pub async fn sqlite_mirror(admin: &Client, tenant: &str, dir: &std::path::Path) -> Store {
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
pub type Tables = Vec<(&'static str, Vec<Vec<Cell>>)>;

fn key_cells(hour: i64, keys: impl Iterator<Item = String>) -> Vec<Cell> {
    std::iter::once(Cell::Int(hour))
        .chain(keys.map(Cell::Text))
        .collect()
}

fn sorted(mut rows: Vec<Vec<Cell>>) -> Vec<Vec<Cell>> {
    rows.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    rows
}

pub async fn pg_tables(admin: &Client, tenant: &str) -> Tables {
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
                cells.extend(crate::rollup::tables::values_of(r, t, 1 + n));
                cells
            })
            .collect();
        out.push((table.name, sorted(rows)));
    }
    out
}

pub fn sqlite_tables(store: &Store, tenant: &str) -> Tables {
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
pub async fn assert_same_as_sqlite(admin: &Client, tenant: &str) {
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
