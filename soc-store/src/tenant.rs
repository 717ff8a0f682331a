//! One tenant's event log, written by the SOC's single writer.
//!
//! Guarantees:
//! * **Exactly once.** An agent's events above its high-water mark are
//!   inserted and the mark advanced in one transaction; events at or below
//!   it are counted as duplicates and dropped. The mark lives in the same
//!   file as the events, so no crash can separate them.
//! * **Durable before acknowledged.** `synchronous = FULL` in WAL mode:
//!   [`TenantLog::append`] returns after the commit is on disk.
//! * **A log.** Every stored event gets the next id of the tenant's log
//!   (never reused, not even after retention deleted everything), so
//!   consumers can read it with a cursor.
//! * **Partitions by day of arrival** (UTC): retention deletes whole days.
//! * **A full disk damages nothing**: the transaction rolls back and the
//!   error says so ([`StoreError::DiskFull`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use owlet_proto::v1::Event;
use prost::Message;
use rusqlite::{Connection, OptionalExtension, ToSql, params};

use crate::columns::{Columns, NAMES};
use crate::error::{AtPath, Result, StoreError};
use crate::schema;
use crate::time::{micros, utc_day};

/// Bytes a WAL keeps after a checkpoint.
const WAL_LIMIT: i64 = 8 << 20;

/// Events of one agent to append, in sequence order.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub agent: &'a str,
    /// The agent's IANA time zone (from its hello), stored with each event.
    pub zone: &'a str,
    pub events: &'a [Event],
    /// The events carry the agent's sequence numbers (exactly once applies).
    /// `false` for records outside its sequence: alerts the SOC raises about
    /// the agent and self-test records (stored with `seq` NULL).
    pub sequenced: bool,
}

/// An event made ready for the log: its typed columns decoded and its
/// protobuf encoded. The receiver makes rows on the connection that
/// brought the events, so the single writer only writes.
#[derive(Debug, Clone)]
pub struct Row {
    seq: u64,
    columns: Columns,
    body: Vec<u8>,
}

impl Row {
    pub fn of(event: &Event) -> Self {
        Self {
            seq: event.seq,
            columns: Columns::of(event),
            body: event.encode_to_vec(),
        }
    }

    /// The agent's sequence number of the event.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn columns(&self) -> &Columns {
        &self.columns
    }

    /// The event's protobuf (`owlet.v1.Event`) as stored: encoded again from
    /// the decoded event (fields this build does not know are not kept).
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// [`Batch`] with its events made into [`Row`]s.
#[derive(Debug, Clone, Copy)]
pub struct RowBatch<'a> {
    pub agent: &'a str,
    pub zone: &'a str,
    pub rows: &'a [Row],
    pub sequenced: bool,
}

/// What appending one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Appended {
    /// The agent's high-water mark after the batch: safe to acknowledge.
    pub acked_seq: u64,
    pub stored: u64,
    pub duplicates: u64,
}

/// Storage use of a tenant's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Bytes in use (the file's pages minus free pages).
    pub used_bytes: u64,
    pub file_bytes: u64,
    pub partitions: u64,
}

/// The writer of one tenant's database.
pub struct TenantLog {
    pub(crate) db: Connection,
    pub(crate) path: PathBuf,
    /// The last id handed out.
    last_id: i64,
    /// The partition of the current day: (day, table).
    current: Option<(String, String)>,
    /// Agents' high-water marks (cache of `agent_progress`).
    marks: HashMap<String, u64>,
}

impl TenantLog {
    /// Opens (creating if needed) the tenant database at `path` and brings
    /// its schema up to date.
    pub fn open(path: &Path, tenant: &str) -> Result<Self> {
        let mut db = Connection::open(path).at(path)?;
        // Must precede the first table: lets retention return freed pages.
        db.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .at(path)?;
        db.pragma_update(None, "journal_mode", "WAL").at(path)?;
        db.pragma_update(None, "synchronous", "FULL").at(path)?;
        // A WAL that grew (a long reader held checkpoints back) shrinks to
        // this after its next checkpoint, rather than keeping the space.
        db.pragma_update(None, "journal_size_limit", WAL_LIMIT)
            .at(path)?;
        db.busy_timeout(Duration::from_secs(5)).at(path)?;
        // The inserts (one per set of columns present) and the rollups'
        // statements stay prepared across transactions.
        db.set_prepared_statement_cache_capacity(64);
        match schema::migrate(&mut db).at(path)? {
            Ok(_) => {}
            Err(found) => {
                return Err(StoreError::TooNew {
                    path: path.to_path_buf(),
                    found,
                    known: schema::VERSION,
                });
            }
        }
        db.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('tenant', ?1)",
            params![tenant],
        )
        .at(path)?;
        let last_id: i64 = db
            .query_row(
                "SELECT COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'last_id'), 0)",
                [],
                |r| r.get(0),
            )
            .at(path)?;
        let current = db
            .query_row(
                "SELECT day, name FROM partitions ORDER BY day DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .at(path)?;
        let marks = db
            .prepare("SELECT agent, acked_seq FROM agent_progress")
            .at(path)?
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .at(path)?
            .collect::<rusqlite::Result<_>>()
            .at(path)?;
        Ok(Self {
            db,
            path: path.to_path_buf(),
            last_id,
            current,
            marks,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The agent's high-water mark: the highest sequence number stored (0
    /// if none).
    pub fn acked_seq(&self, agent: &str) -> u64 {
        self.marks.get(agent).copied().unwrap_or(0)
    }

    /// Raises the agent's high-water mark to at least `seq` without storing
    /// anything (a mark carried over from an older release's database, whose
    /// events were already stored there). Durable on return.
    pub fn raise_mark(&mut self, agent: &str, seq: u64) -> Result<()> {
        if self.acked_seq(agent) >= seq {
            return Ok(());
        }
        self.db
            .execute(
                "INSERT INTO agent_progress (agent, acked_seq) VALUES (?1, ?2)
                 ON CONFLICT (agent) DO UPDATE SET acked_seq = MAX(acked_seq, ?2)",
                params![agent, seq as i64],
            )
            .at(&self.path)?;
        self.marks.insert(agent.to_string(), seq);
        Ok(())
    }

    /// The last id of the log (0 when nothing was ever stored).
    pub fn last_id(&self) -> i64 {
        self.last_id
    }

    /// Appends the batches in one transaction, durable on return. Events of
    /// a sequenced batch at or below its agent's mark are dropped and
    /// counted. All or nothing: on error nothing of any batch is stored.
    pub fn append(&mut self, batches: &[Batch], received: SystemTime) -> Result<Vec<Appended>> {
        let rows: Vec<Vec<Row>> = batches
            .iter()
            .map(|b| b.events.iter().map(Row::of).collect())
            .collect();
        let batches: Vec<RowBatch> = batches
            .iter()
            .zip(&rows)
            .map(|(b, rows)| RowBatch {
                agent: b.agent,
                zone: b.zone,
                rows,
                sequenced: b.sequenced,
            })
            .collect();
        self.append_rows(&batches, received)
    }

    /// [`TenantLog::append`] of events already made into rows.
    pub fn append_rows(
        &mut self,
        batches: &[RowBatch],
        received: SystemTime,
    ) -> Result<Vec<Appended>> {
        let result = self.append_inner(batches, received);
        if matches!(result, Err(StoreError::DiskFull { .. })) {
            // Moving the WAL into the database (and truncating it) is what
            // frees the WAL's space once the disk has room again; when it
            // has none yet this fails too, harmlessly.
            let _ = self.checkpoint();
        }
        result
    }

    fn append_inner(
        &mut self,
        batches: &[RowBatch],
        received: SystemTime,
    ) -> Result<Vec<Appended>> {
        let path = self.path.clone();
        let received_us = micros(received);
        let day = utc_day(received);
        let mut last_id = self.last_id;
        let mut marks: Vec<(String, u64)> = Vec::new();
        let tx = self.db.transaction().at(&path)?;
        let table = match &self.current {
            Some((d, t)) if *d == day => t.clone(),
            _ => {
                let name = schema::partition_name(&day);
                schema::create_partition(&tx, &name).at(&path)?;
                tx.execute(
                    "INSERT INTO partitions (name, day, first_id, last_id, events, created_us)
                     VALUES (?1, ?2, ?3, ?3, 0, ?4)",
                    params![name, day, last_id + 1, received_us],
                )
                .at(&path)?;
                let all = partitions(&tx).at(&path)?;
                schema::rebuild_view(&tx, &all).at(&path)?;
                name
            }
        };
        let mut results = Vec::with_capacity(batches.len());
        let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
        let mut rollup = crate::rollup::Rollup::default();
        let mut latest = crate::latest::Latest::default();
        {
            // One statement per set of columns present (a check result
            // binds 17 values, not 39), prepared once per transaction.
            let mut inserts: HashMap<u64, rusqlite::CachedStatement> = HashMap::new();
            for batch in batches {
                let mut mark = marks
                    .iter()
                    .rev()
                    .find(|(a, _)| a == batch.agent)
                    .map(|(_, m)| *m)
                    .unwrap_or_else(|| self.marks.get(batch.agent).copied().unwrap_or(0));
                let mut done = Appended::default();
                for row in batch.rows {
                    let seq = if batch.sequenced {
                        if row.seq <= mark {
                            done.duplicates += 1;
                            continue;
                        }
                        mark = row.seq;
                        Some(row.seq as i64)
                    } else {
                        None
                    };
                    last_id += 1;
                    let columns = &row.columns;
                    let mut values: [&dyn ToSql; 6 + NAMES.len()] =
                        [&rusqlite::types::Null; 6 + NAMES.len()];
                    values[..5].copy_from_slice(&[
                        &last_id as &dyn ToSql,
                        &batch.agent,
                        &seq,
                        &received_us,
                        &batch.zone,
                    ]);
                    let mut n = 5;
                    let mut present = 0u64;
                    for (i, cell) in columns.cells().into_iter().enumerate() {
                        if let Some(cell) = cell {
                            values[n] = cell;
                            n += 1;
                            present |= 1 << i;
                        }
                    }
                    values[n] = &row.body;
                    n += 1;
                    let insert = match inserts.entry(present) {
                        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert(tx.prepare_cached(&insert_sql(&table, present)).at(&path)?)
                        }
                    };
                    insert.execute(&values[..n]).at(&path)?;
                    min_time = min_time.min(columns.time_us);
                    max_time = max_time.max(columns.time_us);
                    rollup.add(batch.agent, columns);
                    latest.add(batch.agent, last_id, columns);
                    done.stored += 1;
                }
                done.acked_seq = mark;
                tx.execute(
                    "INSERT INTO agent_progress (agent, acked_seq, stored, duplicates_dropped, last_stored_us)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (agent) DO UPDATE SET acked_seq = MAX(acked_seq, ?2),
                        stored = stored + ?3, duplicates_dropped = duplicates_dropped + ?4,
                        last_stored_us = CASE WHEN ?3 > 0 THEN ?5 ELSE last_stored_us END",
                    params![batch.agent, mark as i64, done.stored as i64, done.duplicates as i64, received_us],
                )
                .at(&path)?;
                marks.push((batch.agent.to_string(), mark));
                results.push(done);
            }
        }
        if last_id > self.last_id {
            // MIN(NULL, x) is NULL in SQLite: a partition's first events
            // set the bounds through COALESCE.
            tx.execute(
                "UPDATE partitions SET last_id = ?2, events = events + ?3,
                    min_time_us = COALESCE(MIN(min_time_us, ?4), ?4),
                    max_time_us = COALESCE(MAX(max_time_us, ?5), ?5)
                 WHERE name = ?1",
                params![table, last_id, last_id - self.last_id, min_time, max_time],
            )
            .at(&path)?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('last_id', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = ?1",
                params![last_id.to_string()],
            )
            .at(&path)?;
        }
        rollup.flush(&tx, received_us).at(&path)?;
        latest.flush(&tx).at(&path)?;
        tx.commit().at(&path)?;
        self.last_id = last_id;
        self.current = Some((day, table));
        for (agent, mark) in marks {
            self.marks.insert(agent, mark);
        }
        Ok(results)
    }

    /// Storage use of the file.
    pub fn usage(&self) -> Result<Usage> {
        usage(&self.db, &self.path)
    }

    /// Runs a checkpoint so the WAL's pages reach the main file (and the
    /// WAL can be reused). Retention calls it before measuring.
    pub fn checkpoint(&self) -> Result<()> {
        self.db
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .at(&self.path)
    }
}

/// (stored, duplicates dropped) of `agent` in the tenant database `db`.
pub(crate) fn agent_counts(db: &Connection, path: &Path, agent: &str) -> Result<(u64, u64)> {
    Ok(db
        .query_row(
            "SELECT stored, duplicates_dropped FROM agent_progress WHERE agent = ?1",
            params![agent],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )
        .optional()
        .at(path)?
        .unwrap_or((0, 0)))
}

/// The insert into partition `table` of an event with the columns of
/// `present` (bit i: `NAMES[i]`); absent columns stay NULL.
fn insert_sql(table: &str, present: u64) -> String {
    let names: Vec<&str> = NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| present & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect();
    let placeholders = vec!["?"; 5 + names.len() + 1].join(", ");
    format!(
        "INSERT INTO {table} (id, agent, seq, received_us, zone, {}, body) VALUES ({placeholders})",
        names.join(", ")
    )
}

/// `(name, day)` of every partition, oldest first.
pub(crate) fn partitions(db: &Connection) -> rusqlite::Result<Vec<(String, String)>> {
    db.prepare("SELECT name, day FROM partitions ORDER BY day")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

pub(crate) fn usage(db: &Connection, path: &Path) -> Result<Usage> {
    let page: i64 = db
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .at(path)?;
    let pages: i64 = db
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .at(path)?;
    let free: i64 = db
        .query_row("PRAGMA freelist_count", [], |r| r.get(0))
        .at(path)?;
    let partitions: i64 = db
        .query_row("SELECT COUNT(*) FROM partitions", [], |r| r.get(0))
        .at(path)?;
    let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(Usage {
        used_bytes: ((pages - free).max(0) * page) as u64,
        file_bytes,
        partitions: partitions as u64,
    })
}
