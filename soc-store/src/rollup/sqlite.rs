//! The embedded SOC's rollups: the [`RollupStore`] of a tenant's SQLite
//! file, written inside [`crate::TenantLog::append`]'s transaction, and
//! the schema steps that made and reshaped the tables.
//!
//! Never: commit on its own (every statement runs in the caller's
//! transaction) or block on anything but SQLite.

use std::sync::LazyLock;

use prost::Message;
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Transaction, params, params_from_iter};

use super::acc::Cell;
use super::sql::{Dialect, HoursSql, TableSql, create_table, create_tables};
use super::store::{Put, RollupStore};
use super::{Rollup, TABLES};
use crate::columns::Columns;

static HOURS: LazyLock<HoursSql> = LazyLock::new(|| HoursSql::new(Dialect::Sqlite, ""));
static SQL: LazyLock<Vec<TableSql>> = LazyLock::new(|| TableSql::all(Dialect::Sqlite, ""));

/// Creates the rollup tables (schema step 1 → 2) and backfills them from
/// the events already stored.
pub fn migrate(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(&create_tables(Dialect::Sqlite, ""))?;
    backfill(tx)
}

/// Schema step 4 → 5: the bounded tables of a file made before step 5
/// were keyed `hour_us` first; they are copied into their current order
/// (a month's top list read 3 groups' rows for one).
pub fn group_first(tx: &Transaction) -> rusqlite::Result<()> {
    for t in TABLES.iter().filter(|t| t.rank.is_some()) {
        let old = format!("{}_before_v5", t.name);
        tx.execute_batch(&format!(
            "ALTER TABLE {name} RENAME TO {old};
             {create}
             INSERT INTO {name} SELECT * FROM {old};
             DROP TABLE {old};",
            name = t.name,
            create = create_table(t, Dialect::Sqlite, ""),
        ))?;
    }
    Ok(())
}

/// Rolls up every event already stored (a database from schema version 1),
/// partition by partition, flushing every 50,000 events to bound memory.
fn backfill(tx: &Transaction) -> rusqlite::Result<()> {
    let tables: Vec<String> = tx
        .prepare("SELECT name FROM partitions ORDER BY day")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let now = crate::time::micros(std::time::SystemTime::now());
    let mut rollup = Rollup::default();
    let mut pending = 0;
    for table in tables {
        let mut stmt = tx.prepare(&format!("SELECT agent, body FROM {table} ORDER BY id"))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let agent: String = row.get(0)?;
            let body: Vec<u8> = row.get(1)?;
            // A body that does not decode was never written so; its typed
            // columns were stored from the same bytes, so skip it here too.
            let Ok(event) = owlet_proto::v1::Event::decode(body.as_slice()) else {
                continue;
            };
            rollup.add(&agent, &Columns::of(&event));
            pending += 1;
            if pending == 50_000 {
                std::mem::take(&mut rollup).flush(tx, now)?;
                pending = 0;
            }
        }
    }
    rollup.flush(tx, now)
}

impl Rollup {
    /// Writes what was accumulated into the tenant file's rollup tables
    /// inside `tx`, then closes the hours that ended more than
    /// [`super::GRACE_US`] before `received_us` (the arrival time of the batch).
    pub fn flush(self, tx: &Transaction, received_us: i64) -> rusqlite::Result<()> {
        // Every future of `Sqlite` is ready when first polled.
        futures::executor::block_on(self.write_to(&mut Sqlite(tx), received_us))
    }
}

/// A tenant file's rollup tables, inside one transaction.
struct Sqlite<'a, 'c>(&'a Transaction<'c>);

fn to_value(c: &Cell) -> Value {
    match c {
        Cell::Int(i) => Value::Integer(*i),
        Cell::Real(r) => Value::Real(*r),
        Cell::Null => Value::Null,
        Cell::Text(t) => Value::Text(t.clone()),
    }
}

fn to_cell(v: Value) -> Cell {
    match v {
        Value::Integer(i) => Cell::Int(i),
        Value::Real(r) => Cell::Real(r),
        Value::Text(t) => Cell::Text(t),
        Value::Null | Value::Blob(_) => Cell::Null,
    }
}

/// `hour_us`, the keys, then the values, as statement parameters.
fn row(hour: i64, keys: &[String], values: &[Cell]) -> Vec<Value> {
    std::iter::once(Value::Integer(hour))
        .chain(keys.iter().map(|k| Value::Text(k.clone())))
        .chain(values.iter().map(to_value))
        .collect()
}

impl RollupStore for Sqlite<'_, '_> {
    type Error = rusqlite::Error;

    async fn add_events(&mut self, hour: i64, events: i64) -> rusqlite::Result<()> {
        self.0
            .prepare_cached(&HOURS.add)?
            .execute(params![hour, events])?;
        Ok(())
    }

    async fn is_pruned(&mut self, hour: i64) -> rusqlite::Result<bool> {
        Ok(self
            .0
            .prepare_cached(&HOURS.is_pruned)?
            .query_row(params![hour], |r| r.get::<_, i64>(0))
            .optional()?
            .is_some_and(|p| p != 0))
    }

    async fn select(
        &mut self,
        table: usize,
        hour: i64,
        keys: &[String],
    ) -> rusqlite::Result<Option<Vec<Cell>>> {
        let n = TABLES[table].values.len();
        self.0
            .prepare_cached(&SQL[table].select)?
            .query_row(params_from_iter(row(hour, keys, &[])), |r| {
                (0..n).map(|i| r.get::<_, Value>(i).map(to_cell)).collect()
            })
            .optional()
    }

    async fn put(
        &mut self,
        how: Put,
        table: usize,
        hour: i64,
        keys: &[String],
        values: &[Cell],
    ) -> rusqlite::Result<()> {
        let sql = match how {
            Put::Add => SQL[table].upsert.as_ref(),
            Put::Replace => Some(&SQL[table].replace),
        };
        if let Some(sql) = sql {
            self.0
                .prepare_cached(sql)?
                .execute(params_from_iter(row(hour, keys, values)))?;
        }
        Ok(())
    }

    async fn kept(&mut self, table: usize, hour: i64, group: &str) -> rusqlite::Result<i64> {
        self.0
            .prepare_cached(&SQL[table].kept)?
            .query_row(params![hour, group], |r| r.get(0))
    }

    async fn open_hours(&mut self, until: i64) -> rusqlite::Result<Vec<i64>> {
        self.0
            .prepare_cached(&HOURS.open)?
            .query_map(params![until], |r| r.get(0))?
            .collect()
    }

    async fn crowded(&mut self, table: usize, hour: i64) -> rusqlite::Result<Vec<String>> {
        self.0
            .prepare_cached(&SQL[table].crowded)?
            .query_map(params![hour], |r| r.get(0))?
            .collect()
    }

    async fn take_beyond(
        &mut self,
        table: usize,
        hour: i64,
        group: &str,
    ) -> rusqlite::Result<Vec<i64>> {
        let n = TABLES[table].values.len();
        let sums: Vec<Option<i64>> =
            self.0
                .query_row(&SQL[table].beyond_sums, params![hour, group], |r| {
                    (0..n).map(|i| r.get(i)).collect()
                })?;
        self.0
            .execute(&SQL[table].beyond_delete, params![hour, group])?;
        Ok(sums.into_iter().map(|s| s.unwrap_or(0)).collect())
    }

    async fn mark_pruned(&mut self, hour: i64) -> rusqlite::Result<()> {
        self.0
            .prepare_cached(&HOURS.close)?
            .execute(params![hour])?;
        Ok(())
    }
}
