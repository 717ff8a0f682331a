//! Each check's latest state in the scaled-out SOC (`tenant_<t>.check_state`),
//! kept by the writer as the embedded store keeps its own
//! (`owlet_soc_store::latest`): the portal's check board reads one row per
//! check instead of days of results.
//!
//! Guarantees:
//! * **Same transaction.** The rows are written in the transaction that
//!   stores the results and moves the writer's position, so the table
//!   never disagrees with `events`.
//! * **Latest wins.** A row moves only forward in the check's event time;
//!   an older result arriving late (a spooled tail) does not overwrite it.
//! * **Since when.** `since_us` is the event time of the first result of
//!   the current run of the same state; NULL for states backfilled from
//!   results stored before the table existed, until the state next changes.
//! * **Retention.** When a day partition is dropped, the states whose
//!   latest result arrived that day or before go with it ([`forget`]): a
//!   check that stopped reporting leaves the board, as in the embedded store.

use owlet_soc_store::latest::Latest;
use tokio_postgres::{Statement, Transaction};

use crate::BusError;
use crate::writer::{Row, pg_error, schema_of};

/// Creates the table (backfilled from the stored results when it is new)
/// and lets the tenant's role read it.
pub(crate) fn ddl(tenant: &str, role: &str) -> String {
    let schema = schema_of(tenant);
    format!(
        "DO $$ BEGIN
  IF to_regclass('{schema}.check_state') IS NULL THEN
    CREATE TABLE {schema}.check_state (
      agent text NOT NULL,
      check_id text NOT NULL,
      check_type text,
      target text,
      state text,
      message text,
      time_us bigint NOT NULL,
      received_us bigint NOT NULL,
      since_us bigint,
      PRIMARY KEY (agent, check_id)
    );
    INSERT INTO {schema}.check_state
        (agent, check_id, check_type, target, state, message, time_us, received_us)
      SELECT DISTINCT ON (agent, check_id)
             agent, check_id, check_type, target, state, message, time_us, received_us
        FROM {schema}.events WHERE kind = 'check_result' AND check_id IS NOT NULL
       ORDER BY agent, check_id, time_us DESC, id DESC;
  END IF;
END $$;
REVOKE ALL ON {schema}.check_state FROM PUBLIC;
GRANT SELECT ON {schema}.check_state TO {role};"
    )
}

/// Writes a batch's latest results (`$1`… the runs' columns as arrays,
/// `$10` when the batch was taken). `since_us` stays when the state is the
/// stored one and did not change within the batch.
pub(crate) fn upsert_sql(tenant: &str) -> String {
    let schema = schema_of(tenant);
    format!(
        "INSERT INTO {schema}.check_state AS c
     (agent, check_id, check_type, target, state, message, time_us, received_us, since_us)
  SELECT u.agent, u.check_id, u.check_type, u.target, u.state, u.message, u.time_us, $10,
         CASE WHEN NOT u.changed AND s.state IS NOT DISTINCT FROM u.state
              THEN s.since_us ELSE u.run_start_us END
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::bigint[], $8::bigint[], $9::bool[])
         AS u(agent, check_id, check_type, target, state, message, time_us, run_start_us, changed)
    LEFT JOIN {schema}.check_state s ON s.agent = u.agent AND s.check_id = u.check_id
ON CONFLICT (agent, check_id) DO UPDATE SET
  check_type = excluded.check_type, target = excluded.target, state = excluded.state,
  message = excluded.message, time_us = excluded.time_us,
  received_us = excluded.received_us, since_us = excluded.since_us
WHERE excluded.time_us >= c.time_us"
    )
}

/// Notes the latest result of each check among `rows` (the ones stored).
pub(crate) async fn note(
    tx: &Transaction<'_>,
    upsert: &Statement,
    rows: &[&Row],
    received_us: i64,
) -> Result<(), BusError> {
    let mut latest = Latest::default();
    for row in rows {
        latest.add(&row.agent, 0, &row.columns);
    }
    let runs: Vec<_> = latest.runs().collect();
    if runs.is_empty() {
        return Ok(());
    }
    let text = |f: &dyn Fn(&owlet_soc_store::Columns) -> Option<&str>| -> Vec<Option<&str>> {
        runs.iter().map(|r| f(r.columns)).collect()
    };
    let agents: Vec<&str> = runs.iter().map(|r| r.agent).collect();
    let checks: Vec<&str> = runs.iter().map(|r| r.check_id).collect();
    let types = text(&|c| c.check_type);
    let targets = text(&|c| c.target.as_deref());
    let states = text(&|c| c.state);
    let messages = text(&|c| c.message.as_deref());
    let times: Vec<i64> = runs.iter().map(|r| r.columns.time_us).collect();
    let starts: Vec<i64> = runs.iter().map(|r| r.run_start_us).collect();
    let changed: Vec<bool> = runs.iter().map(|r| r.changed).collect();
    tx.execute(
        upsert,
        &[
            &agents,
            &checks,
            &types,
            &targets,
            &states,
            &messages,
            &times,
            &starts,
            &changed,
            &received_us,
        ],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

/// Retention: forgets the states whose latest result arrived before
/// `before_us` (the end of the day partition just dropped).
pub(crate) async fn forget(
    pg: &tokio_postgres::Client,
    tenant: &str,
    before_us: i64,
) -> Result<u64, BusError> {
    pg.execute(
        &format!(
            "DELETE FROM {}.check_state WHERE received_us < $1",
            schema_of(tenant)
        ),
        &[&before_us],
    )
    .await
    .map_err(pg_error)
}
