//! The scaled-out SOC's hourly rollups: a consumer (cursor name
//! [`CONSUMER`] in `owlet_bus.cursors`) per tenant reads the events the
//! writer stored (`tenant_<t>.events`, by `id`) and keeps the tenant's
//! `rollup_*` tables ([`tables`]) — the same tables, columns and figures
//! as the embedded SOC's, written by the same code
//! (`owlet_soc_store::rollup`). Off the writer's hot path: the writer
//! commits events; rollups follow a moment later.
//!
//! Guarantees:
//! * **Exactly once.** A writer batch's rollup upserts and the consumer's
//!   cursor move past it ([`crate::cursor::Claim::advance`]) commit in one
//!   PostgreSQL transaction; a consumer killed anywhere (or its connection cut)
//!   rolls the whole batch back and resumes after the last commit, so no
//!   event counts twice and none is missed.
//! * **One holder per tenant.** The tenant is rolled up only under its
//!   cursor's advisory lock ([`crate::cursor::claim`]); another process
//!   running the consumer stands by and takes over at the committed
//!   position within [`STANDBY_POLL`] when the holder's connection ends.
//! * **The embedded SOC's batches.** The embedded SOC rolls up each
//!   append and then closes the hours that ended [`GRACE_US`] before it
//!   arrived; here each writer batch (the events sharing one
//!   `received_us`) is rolled up and closed the same way, in `id` order,
//!   so the same stored batches give the same rows, bounded tables
//!   included. A read stops before the last, possibly partial batch when
//!   it filled [`BATCH`]; a single writer batch larger than [`BATCH`] (the
//!   writer's batches are at most 2048) would be split, which can only
//!   move keys between a closed hour's kept rows and [`OTHER`]'s, never
//!   change a total.
//! * **Bounded memory**: at most [`BATCH`] events are read at a time.
//! * **Tenants apart**: one connection, one cursor, one schema per tenant.
//!
//! Never: write the tenant's events, or move its cursor outside the
//! transaction of the figures it counts.
//!
//! [`GRACE_US`]: owlet_soc_store::rollup::GRACE_US
//! [`OTHER`]: owlet_soc_store::rollup::OTHER

pub mod tables;

use std::collections::HashSet;
use std::time::Duration;

use owlet_soc_store::rollup::Rollup;
use owlet_soc_store::{Columns, StoredEvent};
use tokio_postgres::Client;

use crate::BusError;
use crate::cursor::{self, Claim};
use crate::stored;
use crate::writer::{STANDBY_POLL, check_tenant, connect_postgres, pg_error};
use tables::{Pg, TenantSql};

/// The rollup consumer's name in `owlet_bus.cursors`.
pub const CONSUMER: &str = "rollup";

/// Events read at a time: more than a writer batch holds, so a read
/// ends on a whole batch.
pub const BATCH: usize = 4096;

/// How long a caught-up consumer waits before reading again.
pub const POLL: Duration = Duration::from_secs(1);

/// Which tenants a process rolls up: every tenant the writer stores, or
/// the ones named.
#[derive(Debug, Clone, Default)]
pub struct Tenants(pub Option<HashSet<String>>);

impl Tenants {
    fn wants(&self, tenant: &str) -> bool {
        self.0.as_ref().is_none_or(|t| t.contains(tenant))
    }
}

/// Runs the rollup consumer until `stop` resolves: finds the tenants the
/// writer stores (every few seconds) and keeps one task each.
pub async fn run(
    conninfo: String,
    tenants: Tenants,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), BusError> {
    // Fail early, with the reason, when PostgreSQL is not reachable.
    let pg = connect_postgres(&conninfo).await?;
    cursor::prepare(&pg).await?;
    let mut running = HashSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    let discover = async {
        loop {
            match stored::tenants(&pg).await {
                Ok(found) => {
                    for tenant in found {
                        if tenants.wants(&tenant) && running.insert(tenant.clone()) {
                            tasks.spawn(tenant_loop(conninfo.clone(), tenant));
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "rollup: cannot list the stored tenants"),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    };
    tokio::select! {
        () = stop => {}
        () = discover => {}
    }
    tasks.abort_all();
    Ok(())
}

/// Rolls one tenant up forever, reconnecting after failures (pause 1 s,
/// doubling to 30 s), standing by while another process holds it.
async fn tenant_loop(conninfo: String, tenant: String) {
    let mut pause = Duration::from_secs(1);
    let mut standing_by = false;
    loop {
        match consume(&conninfo, &tenant).await {
            Err(e) => {
                standing_by = false;
                tracing::warn!(%tenant, error = %e, retry_in = ?pause,
                    "rollup: the tenant's consumer stopped; reconnecting (it resumes after the last committed batch)");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(30));
            }
            Ok(()) => {
                if !standing_by {
                    tracing::info!(%tenant, "rollup: another process rolls this tenant up (or the writer has not stored it yet); standing by to take over");
                    standing_by = true;
                }
                pause = Duration::from_secs(1);
                tokio::time::sleep(STANDBY_POLL).await;
            }
        }
    }
}

/// Rolls `tenant` up until something fails; returns `Ok` at once when
/// another process holds it (or the writer has not made its tables yet).
pub async fn consume(conninfo: &str, tenant: &str) -> Result<(), BusError> {
    check_tenant(tenant)?;
    let mut pg = connect_postgres(conninfo).await?;
    if !stored::table_exists(&pg, tenant).await? {
        return Ok(());
    }
    let Some(mut claim) = cursor::claim(&pg, CONSUMER, tenant).await? else {
        return Ok(());
    };
    tracing::info!(%tenant, position = claim.position, "rollup: holding the tenant; rolling up from there");
    prepare(&pg, tenant).await?;
    let sql = TenantSql::new(tenant);
    loop {
        if !step(&mut pg, &sql, tenant, &mut claim).await? {
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Creates `tenant`'s rollup tables (idempotent).
pub async fn prepare(pg: &Client, tenant: &str) -> Result<(), BusError> {
    pg.batch_execute(&tables::ddl(tenant))
        .await
        .map_err(pg_error)
}

/// Rolls up the next whole writer batches after the cursor, each in a
/// transaction of its own that moves the cursor past it (as the embedded
/// SOC rolls up each append in its transaction); false when there was
/// nothing to read.
pub async fn step(
    pg: &mut Client,
    sql: &TenantSql,
    tenant: &str,
    claim: &mut Claim,
) -> Result<bool, BusError> {
    let after = i64::try_from(claim.position).unwrap_or(i64::MAX);
    let events = stored::events_after(&*pg, tenant, after, BATCH).await?;
    let Some(batches) = whole_batches(&events) else {
        return Ok(false);
    };
    for batch in batches {
        let tx = pg.transaction().await.map_err(pg_error)?;
        let mut rollup = Rollup::default();
        for stored in batch {
            // A body that does not decode was never stored so (its typed
            // columns came from the same bytes): skipped, like SQLite's
            // backfill does.
            if let Some(event) = &stored.event {
                rollup.add(&stored.agent, &Columns::of(event));
            }
        }
        rollup
            .write_to(&mut Pg { tx: &tx, sql }, batch[0].received_us)
            .await?;
        let last = batch.last().map_or(after, |e| e.id);
        claim.advance(&tx, u64::try_from(last).unwrap_or(0)).await?;
        tx.commit().await.map_err(pg_error)?;
    }
    Ok(true)
}

/// `events` cut into writer batches (runs of one `received_us`), without
/// the last run when the read was full (it may go on after it); `None`
/// when there is nothing.
fn whole_batches(events: &[StoredEvent]) -> Option<Vec<&[StoredEvent]>> {
    let mut batches: Vec<&[StoredEvent]> = events
        .chunk_by(|a, b| a.received_us == b.received_us)
        .collect();
    if events.len() >= BATCH && batches.len() > 1 {
        batches.pop();
    }
    (!batches.is_empty()).then_some(batches)
}
