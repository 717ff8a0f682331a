//! The newest events of a selection (by event time, then log position),
//! read without sorting the whole range: the latest alerts and file changes
//! of a month, for the portal's lists and timelines and for reports.
//!
//! The `events` view unions every day partition, so `ORDER BY time_us DESC
//! LIMIT n` over it sorts every matching row of the range (a month's
//! 100,000 alerts, for 20 shown). Here each partition is asked for its own
//! newest `n` through its time index, newest partition first, and the
//! partitions are merged.
//!
//! Guarantees:
//! * the result equals `SELECT … FROM events WHERE … ORDER BY time_us DESC,
//!   id DESC LIMIT n` (tested against it, with events spooled into later
//!   partitions and clocks ahead of arrival);
//! * partitions are skipped by the range of event times each one holds
//!   (`partitions.min_time_us` / `max_time_us`, kept on ingest), never by
//!   the day they arrived: an event's own time can lie anywhere;
//! * the reading stops at the first partition that cannot hold a row newer
//!   than the `n`th found;
//! * at most `n` rows per partition are held, plus the `n` merged.

use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};

/// What [`newest_first`] selects.
#[derive(Debug, Clone, Copy)]
pub struct Newest<'a> {
    /// The select list, over the columns of `events`.
    pub columns: &'a str,
    /// A condition over the columns of `events` with `?` placeholders
    /// (`kind = 'alert' AND agent = ?`), bound to `values` in order.
    /// Write a kind as `kind = '…'` for SQLite to use its partial index.
    pub filter: &'a str,
    pub values: &'a [Value],
    /// Only events with `from_us <= time_us`.
    pub from_us: Option<i64>,
    /// Only events with `time_us < to_us`.
    pub to_us: Option<i64>,
    /// At most this many rows.
    pub limit: usize,
}

/// The rows `select` selects, newest first (`time_us DESC, id DESC`), each
/// made by `row` (which sees the select list's columns from index 0).
pub fn newest_first<T>(
    db: &Connection,
    select: &Newest<'_>,
    mut row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let limit = select.limit;
    if limit == 0 {
        return Ok(Vec::new());
    }
    let (from, to) = (
        select.from_us.unwrap_or(i64::MIN),
        select.to_us.unwrap_or(i64::MAX),
    );
    // Partitions that hold events of the range, newest event first.
    let spans: Vec<(String, i64)> = db
        .prepare_cached(
            "SELECT name, max_time_us FROM partitions
             WHERE max_time_us >= ?1 AND min_time_us < ?2
             ORDER BY max_time_us DESC",
        )?
        .query_map([from, to], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut values: Vec<Value> = select.values.to_vec();
    values.extend([Value::Integer(from), Value::Integer(to)]);
    // (time_us, id, row), newest first.
    let mut found: Vec<(i64, i64, T)> = Vec::new();
    for (table, max_time_us) in spans {
        if found.len() == limit && found[limit - 1].0 > max_time_us {
            break;
        }
        let sql = format!(
            "SELECT {columns}, time_us, id FROM {table}
             WHERE ({filter}) AND time_us >= ? AND time_us < ?
             ORDER BY time_us DESC, id DESC LIMIT {limit}",
            columns = select.columns,
            filter = select.filter,
        );
        let mut stmt = db.prepare(&sql)?;
        let n = stmt.column_count();
        let mut rows = stmt.query(params_from_iter(values.iter()))?;
        while let Some(r) = rows.next()? {
            found.push((r.get(n - 2)?, r.get(n - 1)?, row(r)?));
        }
        found.sort_by_key(|f| std::cmp::Reverse((f.0, f.1)));
        found.truncate(limit);
    }
    Ok(found.into_iter().map(|(_, _, t)| t).collect())
}
