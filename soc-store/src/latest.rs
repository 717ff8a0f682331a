//! Each check's latest state, kept on ingest (table `check_state`), so a
//! check board reads one row per check instead of scanning days of results
//! (the portal's overview of a tenant with millions of events). [`Latest`]
//! gathers a batch's runs; this store writes them with [`Latest::flush`],
//! the scaled-out SOC's writer (`owlet-soc-bus`) from [`Latest::runs`].
//!
//! Guarantees:
//! * **Same transaction.** The rows are written in the transaction that
//!   stores the results, so the table never disagrees with the log.
//! * **Latest wins.** A row moves only forward in the check's event time; an
//!   older result arriving late (a spooled tail) does not overwrite it.
//! * **Since when.** `since_us` is the event time of the first result of the
//!   current run of the same state; NULL when unknown (states carried over
//!   from a database of schema version 2, until the state next changes).

use std::collections::HashMap;

use rusqlite::{Transaction, params};

use crate::columns::Columns;

/// Schema step 2 → 3: the table, filled with each check's latest result.
pub fn migrate(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE check_state (
            agent      TEXT NOT NULL,
            check_id   TEXT NOT NULL,
            check_type TEXT,
            target     TEXT,
            state      TEXT,
            message    TEXT,
            time_us    INTEGER NOT NULL,
            last_id    INTEGER NOT NULL,
            since_us   INTEGER,
            PRIMARY KEY (agent, check_id)
        ) WITHOUT ROWID;",
    )?;
    let has_view: bool = tx
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'view' AND name = 'events'")?
        .exists([])?;
    if has_view {
        tx.execute_batch(
            "INSERT INTO check_state
                 (agent, check_id, check_type, target, state, message, time_us, last_id)
             SELECT agent, check_id, check_type, target, state, message, time_us, MAX(id)
             FROM events WHERE kind = 'check_result' AND check_id IS NOT NULL
             GROUP BY agent, check_id",
        )?;
    }
    Ok(())
}

/// Retention: forgets the states whose latest result was among the deleted
/// ids `first..=last` (a check that has not reported since; its next
/// result makes a new row).
pub fn forget(tx: &Transaction, first: i64, last: i64) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM check_state WHERE last_id BETWEEN ?1 AND ?2",
        params![first, last],
    )?;
    Ok(())
}

/// The latest result of each check in one append.
#[derive(Debug, Default)]
pub struct Latest<'a> {
    checks: HashMap<(&'a str, &'a str), Run<'a>>,
}

/// One check's latest result in an append.
#[derive(Debug)]
pub struct Run<'a> {
    pub agent: &'a str,
    pub check_id: &'a str,
    /// The latest result's columns.
    pub columns: &'a Columns,
    /// The latest result's id as [`Latest::add`] was given it.
    pub id: i64,
    /// Event time of the first result of the latest run of one state.
    pub run_start_us: i64,
    /// Whether the state changed within this append (else the run may have
    /// begun before it: the stored `since_us` stands if the state is equal).
    pub changed: bool,
}

impl<'a> Latest<'a> {
    /// Notes one stored event (only check results count).
    pub fn add(&mut self, agent: &'a str, id: i64, c: &'a Columns) {
        let Some(check) = c.check_id.as_deref().filter(|_| c.kind == "check_result") else {
            return;
        };
        match self.checks.get_mut(&(agent, check)) {
            Some(run) if c.time_us >= run.columns.time_us => {
                if run.columns.state != c.state {
                    run.run_start_us = c.time_us;
                    run.changed = true;
                }
                run.columns = c;
                run.id = id;
            }
            Some(_) => {}
            None => {
                self.checks.insert(
                    (agent, check),
                    Run {
                        agent,
                        check_id: check,
                        columns: c,
                        id,
                        run_start_us: c.time_us,
                        changed: false,
                    },
                );
            }
        }
    }

    /// Each check's run, in no particular order.
    pub fn runs(self) -> impl Iterator<Item = Run<'a>> {
        self.checks.into_values()
    }

    /// Writes the rows.
    pub fn flush(self, tx: &Transaction) -> rusqlite::Result<()> {
        if self.checks.is_empty() {
            return Ok(());
        }
        let mut upsert = tx.prepare_cached(
            "INSERT INTO check_state
                 (agent, check_id, check_type, target, state, message, time_us, last_id, since_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (agent, check_id) DO UPDATE SET
                 since_us = CASE WHEN ?10 = 0 AND check_state.state IS excluded.state
                                 THEN check_state.since_us ELSE excluded.since_us END,
                 check_type = excluded.check_type, target = excluded.target,
                 state = excluded.state, message = excluded.message,
                 time_us = excluded.time_us, last_id = excluded.last_id
             WHERE excluded.time_us >= check_state.time_us",
        )?;
        for run in self.runs() {
            let c = run.columns;
            upsert.execute(params![
                run.agent,
                run.check_id,
                c.check_type,
                c.target,
                c.state,
                c.message,
                c.time_us,
                run.id,
                run.run_start_us,
                run.changed,
            ])?;
        }
        Ok(())
    }
}
