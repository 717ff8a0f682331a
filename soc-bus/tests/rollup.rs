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
use std::time::Duration;

use owlet_soc_bus::rollup::{self, Tenants};
use owlet_soc_bus::scenario::{World, assert_same_as_sqlite, position, wait_rolled_up, world};

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
