//! The tenant database's schema: fixed tables, one table per day of
//! arrival (a partition), and the `events` view over all partitions.
//!
//! Versioned with `PRAGMA user_version`; [`migrate`] runs every step above
//! the file's version in one transaction at open, so a database from an
//! earlier release upgrades in place, and a database from a later release is
//! refused rather than misread.

use rusqlite::{Connection, Transaction};

use crate::columns::NAMES;

/// The schema version this build writes.
pub const VERSION: i64 = 5;

/// SQL type of each typed column (same order as [`NAMES`]).
const TYPES: &[&str] = &[
    "TEXT NOT NULL",
    "INTEGER NOT NULL",
    "TEXT",
    "TEXT",
    "TEXT",
    "TEXT",
    "TEXT",
    "TEXT",
    "INTEGER",
    "TEXT",
    "TEXT",
    "INTEGER",
    "TEXT",
    "INTEGER",
    "INTEGER",
    "INTEGER",
    "INTEGER",
    "TEXT",
    "TEXT",
    "TEXT",
    "TEXT",
    "TEXT",
    "TEXT",
    "TEXT",
    "TEXT",
    "REAL",
    "REAL",
    "REAL",
    "REAL",
    "TEXT",
    "TEXT",
    "TEXT",
    "TEXT",
];

/// Tables every tenant database has (version 1).
const FIXED: &str = "
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- One row per partition (a table events_YYYYMMDD of the events that
-- arrived on that UTC day); ids are the tenant's log positions.
CREATE TABLE partitions (
    name       TEXT PRIMARY KEY,
    day        TEXT NOT NULL UNIQUE,
    first_id   INTEGER NOT NULL,
    last_id    INTEGER NOT NULL,
    events     INTEGER NOT NULL,
    created_us INTEGER NOT NULL
);
-- Each agent's high-water mark, advanced in the transaction that stores
-- its events: the exactly-once guarantee.
CREATE TABLE agent_progress (
    agent              TEXT PRIMARY KEY,
    acked_seq          INTEGER NOT NULL DEFAULT 0,
    stored             INTEGER NOT NULL DEFAULT 0,
    duplicates_dropped INTEGER NOT NULL DEFAULT 0,
    last_stored_us     INTEGER
);
-- Every partition retention removed, with why.
CREATE TABLE deletions (
    id          INTEGER PRIMARY KEY,
    at_us       INTEGER NOT NULL,
    partition   TEXT NOT NULL,
    day         TEXT NOT NULL,
    first_id    INTEGER NOT NULL,
    last_id     INTEGER NOT NULL,
    events      INTEGER NOT NULL,
    bytes_before INTEGER NOT NULL,
    bytes_after INTEGER NOT NULL,
    reason      TEXT NOT NULL
);
";

/// Brings the database to [`VERSION`]. Returns the version found.
pub fn migrate(db: &mut Connection) -> rusqlite::Result<Result<i64, i64>> {
    let found: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > VERSION {
        return Ok(Err(found));
    }
    if found == VERSION {
        return Ok(Ok(found));
    }
    let tx = db.transaction()?;
    for step in found..VERSION {
        STEPS[step as usize](&tx)?;
    }
    tx.pragma_update(None, "user_version", VERSION)?;
    tx.commit()?;
    Ok(Ok(found))
}

/// `STEPS[v]` takes a database from version `v` to `v + 1`.
const STEPS: &[fn(&Transaction) -> rusqlite::Result<()>] = &[
    |tx| tx.execute_batch(FIXED),
    crate::rollup::migrate,
    crate::latest::migrate,
    time_bounds,
    crate::rollup::group_first,
];

/// Step 3 → 4: each partition's range of event times (`min_time_us`,
/// `max_time_us`, NULL while it holds no event), kept on ingest. A
/// partition is a day of *arrival*; an event's own time may lie anywhere
/// (spooled for weeks, or a sensor's clock ahead), so readers that want a
/// time range or the newest events skip partitions by these bounds rather
/// than by the day.
fn time_bounds(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(
        "ALTER TABLE partitions ADD COLUMN min_time_us INTEGER;
         ALTER TABLE partitions ADD COLUMN max_time_us INTEGER;",
    )?;
    let names: Vec<String> = tx
        .prepare("SELECT name FROM partitions")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for name in names {
        // Two index lookups (the partition's time index) per partition.
        tx.execute(
            &format!(
                "UPDATE partitions SET min_time_us = (SELECT MIN(time_us) FROM {name}),
                                       max_time_us = (SELECT MAX(time_us) FROM {name})
                 WHERE name = ?1"
            ),
            [&name],
        )?;
    }
    Ok(())
}

/// The partition table of a UTC day (`YYYY-MM-DD`).
pub fn partition_name(day: &str) -> String {
    format!("events_{}", day.replace('-', ""))
}

/// Creates the partition table of `day` with its indexes.
pub fn create_partition(tx: &Transaction, name: &str) -> rusqlite::Result<()> {
    let columns: Vec<String> = NAMES
        .iter()
        .zip(TYPES)
        .map(|(n, t)| format!("    {n} {t}"))
        .collect();
    tx.execute_batch(&format!(
        "CREATE TABLE {name} (
    id          INTEGER PRIMARY KEY,
    agent       TEXT NOT NULL,
    seq         INTEGER,
    received_us INTEGER NOT NULL,
    zone        TEXT NOT NULL,
{},
    body        BLOB NOT NULL
);
CREATE INDEX {name}_time ON {name}(time_us);
CREATE INDEX {name}_alerts ON {name}(time_us) WHERE kind = 'alert';
CREATE INDEX {name}_changes ON {name}(time_us) WHERE kind = 'file_change';",
        columns.join(",\n")
    ))
}

/// Rebuilds the `events` view over `partitions` (oldest first). SQLite caps
/// a compound SELECT at 500 terms, so the view unions one view per month
/// (`events_mYYYYMM`), each the union of that month's days.
pub fn rebuild_view(tx: &Transaction, partitions: &[(String, String)]) -> rusqlite::Result<()> {
    let old: Vec<String> = tx
        .prepare("SELECT name FROM sqlite_master WHERE type = 'view'")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for view in old {
        tx.execute_batch(&format!("DROP VIEW IF EXISTS \"{view}\""))?;
    }
    let all_columns = format!(
        "id, agent, seq, received_us, zone, {}, body",
        NAMES.join(", ")
    );
    if partitions.is_empty() {
        // An empty view with the right columns, so queries work from day one.
        let nulls: Vec<String> = all_columns
            .split(", ")
            .map(|c| format!("NULL AS {c}"))
            .collect();
        return tx.execute_batch(&format!(
            "CREATE VIEW events AS SELECT {} WHERE 0",
            nulls.join(", ")
        ));
    }
    let mut months: Vec<(String, Vec<&str>)> = Vec::new();
    for (name, day) in partitions {
        let month = day[..7].replace('-', "");
        match months.last_mut() {
            Some((m, tables)) if *m == month => tables.push(name),
            _ => months.push((month, vec![name])),
        }
    }
    for (month, tables) in &months {
        let union: Vec<String> = tables
            .iter()
            .map(|t| format!("SELECT {all_columns} FROM {t}"))
            .collect();
        tx.execute_batch(&format!(
            "CREATE VIEW events_m{month} AS {}",
            union.join(" UNION ALL ")
        ))?;
    }
    let union: Vec<String> = months
        .iter()
        .map(|(m, _)| format!("SELECT * FROM events_m{m}"))
        .collect();
    tx.execute_batch(&format!(
        "CREATE VIEW events AS {}",
        union.join(" UNION ALL ")
    ))
}
