//! Silent agents in the scaled-out SOC, judged by the writer that holds the
//! tenant, from the heartbeats on the agents' subjects.
//!
//! Each agent's row in `tenant_<t>.agents` carries, beside its mark, when
//! it was first seen, its last heartbeat (an `agent_status` event: when
//! the writer stored it), whether that heartbeat said goodbye, and whether
//! the agent is silent. Alerts are `owlet_soc_store::liveness`'s, the
//! embedded receiver's own: `agent_silent`, `agent_stopped`,
//! `agent_recovered`, stored in `events` outside the agent's sequence.
//!
//! Guarantees:
//! * **Whatever receiver the agent uses.** Heartbeats are read from the
//!   agent's subject, where every receiver publishes, so an agent moving
//!   between receivers (a load balancer, a receiver killed) is judged on
//!   all its heartbeats and is never called silent for the move.
//! * **Only when caught up.** Agents are judged only while the writer has
//!   stored everything in the tenant stream (nothing pending), so a writer
//!   catching up after an outage, or taking a tenant over, does not call
//!   agents silent whose heartbeats it has not read yet.
//! * **Once per change.** An overdue agent's alert and its `silent` flag
//!   commit in one transaction; a silent agent's next heartbeat, its
//!   `agent_recovered` alert and the flag's reset commit with the batch
//!   that carried the heartbeat. The state is in PostgreSQL, so a standby
//!   taking the tenant over goes on from it.

use std::time::{Duration, SystemTime};

use owlet_soc_store::liveness::Liveness;
use tokio_postgres::{Client, Transaction};

use crate::BusError;
use crate::partitions::Days;
use crate::writer::{Row, insert_records, pg_error, schema_of};

/// When an agent is judged silent, and how often agents are judged.
#[derive(Debug, Clone, Copy)]
pub struct LivenessConfig {
    /// An agent without a heartbeat for this long is silent.
    pub silent_after: Duration,
    /// How often a caught-up writer judges its tenants' agents.
    pub check_every: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            silent_after: Duration::from_secs(90),
            check_every: Duration::from_secs(5),
        }
    }
}

/// Records the heartbeats among a batch's `rows` (stored at `received_us`)
/// in `tx`, and the `agent_recovered` alert of each agent that was silent.
pub(crate) async fn note_heartbeats(
    tx: &Transaction<'_>,
    tenant: &str,
    rows: &[Row],
    received_us: i64,
) -> Result<(), BusError> {
    // The last heartbeat of each agent in the batch decides.
    let mut seen = std::collections::HashSet::new();
    let mut agents: Vec<&str> = Vec::new();
    let mut stopping: Vec<bool> = Vec::new();
    for row in rows.iter().rev() {
        if let Some(goodbye) = row.heartbeat
            && seen.insert(row.agent.as_str())
        {
            agents.push(&row.agent);
            stopping.push(goodbye);
        }
    }
    if agents.is_empty() {
        return Ok(());
    }
    let schema = schema_of(tenant);
    let recovered = tx
        .query(
            &format!("SELECT agent FROM {schema}.agents WHERE agent = ANY($1) AND silent"),
            &[&agents],
        )
        .await
        .map_err(pg_error)?;
    tx.execute(
        &format!(
            "UPDATE {schema}.agents a
                SET last_heartbeat_us = $3, stopping = b.stopping, silent = false
               FROM unnest($1::text[], $2::bool[]) AS b(agent, stopping)
              WHERE a.agent = b.agent"
        ),
        &[&agents, &stopping, &received_us],
    )
    .await
    .map_err(pg_error)?;
    let alerts: Vec<Row> = recovered
        .iter()
        .map(|r| {
            let agent: String = r.get(0);
            tracing::info!(%tenant, %agent, "writer: agent sending heartbeats again");
            let event = Liveness::Recovered.alert(
                &format!("{tenant}/{agent}"),
                Duration::ZERO,
                Duration::ZERO,
            );
            Row::soc_record(&agent, &event, received_us)
        })
        .collect();
    insert_records(tx, tenant, &alerts).await
}

/// Judges the tenant's agents at `now`: each one without a heartbeat for
/// `silent_after` (or, never having sent one, first seen that long ago)
/// gets its `agent_silent` or `agent_stopped` alert and is marked silent.
/// Returns how many were.
pub(crate) async fn judge(
    pg: &mut Client,
    tenant: &str,
    config: LivenessConfig,
    now: SystemTime,
    days: &mut Days,
) -> Result<usize, BusError> {
    let now_us = owlet_soc_store::time::micros(now);
    let cutoff = now_us - i64::try_from(config.silent_after.as_micros()).unwrap_or(i64::MAX);
    let schema = schema_of(tenant);
    let overdue = pg
        .query(
            &format!(
                "SELECT agent, coalesce(last_heartbeat_us, first_seen_us), stopping FROM {schema}.agents
                  WHERE NOT silent AND coalesce(last_heartbeat_us, first_seen_us) < $1"
            ),
            &[&cutoff],
        )
        .await
        .map_err(pg_error)?;
    if overdue.is_empty() {
        return Ok(0);
    }
    days.ensure(pg, tenant, now_us).await?;
    let mut agents = Vec::with_capacity(overdue.len());
    let mut alerts = Vec::with_capacity(overdue.len());
    for r in &overdue {
        let agent: String = r.get(0);
        let last: i64 = r.get(1);
        let stopping: bool = r.get(2);
        let quiet = Duration::from_micros(u64::try_from(now_us - last).unwrap_or(0));
        let liveness = Liveness::overdue(stopping);
        tracing::warn!(%tenant, %agent, quiet_s = quiet.as_secs(), ?liveness, "writer: agent overdue");
        let event = liveness.alert(&format!("{tenant}/{agent}"), quiet, config.silent_after);
        alerts.push(Row::soc_record(&agent, &event, now_us));
        agents.push(agent);
    }
    let tx = pg.transaction().await.map_err(pg_error)?;
    insert_records(&tx, tenant, &alerts).await?;
    tx.execute(
        &format!("UPDATE {schema}.agents SET silent = true WHERE agent = ANY($1)"),
        &[&agents],
    )
    .await
    .map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)?;
    Ok(agents.len())
}
