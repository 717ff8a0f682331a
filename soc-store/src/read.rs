//! Reading one tenant's log: by cursor (consumers), by filter (export,
//! `tail`), or by the analyst's own SQL.
//!
//! Guarantees:
//! * a reader opens exactly one tenant's file, read-only, and cannot
//!   `ATTACH` another (the attach limit is 0), so no query through this API
//!   reaches across tenants;
//! * reading never blocks the writer (WAL) and sees only committed events;
//! * [`TenantReader::scan`] streams: memory does not grow with the result.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use owlet_proto::v1::Event;
use prost::Message;
use rusqlite::limits::Limit;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, params};

use crate::error::{AtPath, Result};

/// One stored event with where it sits in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Position in the tenant's log (the consumers' cursor).
    pub id: i64,
    pub tenant: String,
    pub agent: String,
    /// The agent's sequence number; `None` for records outside it (alerts
    /// the SOC raised, self-test records).
    pub seq: Option<u64>,
    pub kind: String,
    /// The event's own time (UTC µs).
    pub time_us: i64,
    pub received_us: i64,
    /// The agent's IANA time zone when the SOC received it.
    pub zone: String,
    /// The event as stored (the original protobuf decoded). `None` if the
    /// stored bytes do not decode (never written so; a damaged file).
    pub event: Option<Event>,
}

impl StoredEvent {
    /// A stable id a SIEM can deduplicate on: `tenant/agent/seq` for an
    /// agent's events (the same across resends and SOC restarts), and
    /// `tenant/soc/ID` for records outside the agent's sequence.
    pub fn event_id(&self) -> String {
        match self.seq {
            Some(seq) => format!("{}/{}/{}", self.tenant, self.agent, seq),
            None => format!("{}/soc/{}", self.tenant, self.id),
        }
    }
}

/// What [`TenantReader::scan`] selects. Empty fields select everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Event time at or after (UTC µs).
    pub from_us: Option<i64>,
    /// Event time before (UTC µs).
    pub to_us: Option<i64>,
    pub kinds: Vec<String>,
    pub agents: Vec<String>,
    /// Severities (`info`, `warning`, `critical`) of alerts and file changes.
    pub severities: Vec<String>,
    /// Only ids above this (a cursor).
    pub after_id: Option<i64>,
}

impl Filter {
    /// Whether `e` passes the filter (the same test `scan` makes in SQL),
    /// for events read by cursor.
    pub fn matches(&self, e: &StoredEvent) -> bool {
        let listed = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        self.from_us.is_none_or(|from| e.time_us >= from)
            && self.to_us.is_none_or(|to| e.time_us < to)
            && self.after_id.is_none_or(|after| e.id > after)
            && listed(&self.kinds, &e.kind)
            && listed(&self.agents, &e.agent)
            && (self.severities.is_empty()
                || e.event
                    .as_ref()
                    .and_then(|ev| crate::Columns::of(ev).severity)
                    .is_some_and(|s| listed(&self.severities, s)))
    }
}

/// A read-only view of one tenant's database.
pub struct TenantReader {
    db: Connection,
    path: PathBuf,
    tenant: String,
}

const SELECT: &str = "SELECT id, agent, seq, kind, time_us, received_us, zone, body";

impl TenantReader {
    /// Opens the tenant database at `path` read-only.
    pub fn open(path: &Path, tenant: &str) -> Result<Self> {
        let db = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .at(path)?;
        db.busy_timeout(Duration::from_secs(5)).at(path)?;
        // The boundary between tenants: no ATTACH of another file.
        db.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0).at(path)?;
        Ok(Self {
            db,
            path: path.to_path_buf(),
            tenant: tenant.to_string(),
        })
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The tenant's database file (its directory holds the tenant's other
    /// files: notifications, reports).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last id stored (0 if none).
    pub fn last_id(&self) -> Result<i64> {
        self.db
            .query_row(
                "SELECT COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'last_id'), 0)",
                [],
                |r| r.get(0),
            )
            .at(&self.path)
    }

    /// The latest `limit` deletions retention recorded, newest first.
    pub fn deletions(&self, limit: i64) -> Result<Vec<crate::Deletion>> {
        crate::retention::deletions(&self.db, &self.path, limit)
    }

    /// Runs the analyst's SQL over this tenant's file alone (read-only, no
    /// ATTACH), streaming: `header` gets the column names once, then `row`
    /// each row as text, until it returns `Break`. Memory does not grow
    /// with the result.
    pub fn sql_each(
        &self,
        query: &str,
        header: impl FnOnce(&[String]),
        mut row: impl FnMut(Vec<String>) -> ControlFlow<()>,
    ) -> Result<()> {
        let mut stmt = self.db.prepare(query).at(&self.path)?;
        let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        header(&names);
        let mut rows = stmt.query([]).at(&self.path)?;
        while let Some(r) = rows.next().at(&self.path)? {
            let values = (0..names.len())
                .map(|i| r.get::<_, Value>(i).map(text))
                .collect::<rusqlite::Result<Vec<String>>>()
                .at(&self.path)?;
            if row(values).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Events stored and duplicates dropped for `agent`.
    pub fn agent_counts(&self, agent: &str) -> Result<(u64, u64)> {
        crate::tenant::agent_counts(&self.db, &self.path, agent)
    }

    /// Up to `limit` events after id `after`, in log order.
    pub fn read_after(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>> {
        let mut out = Vec::new();
        let tables: Vec<String> = self
            .db
            .prepare_cached("SELECT name FROM partitions WHERE last_id > ?1 ORDER BY day")
            .at(&self.path)?
            .query_map(params![after], |r| r.get(0))
            .at(&self.path)?
            .collect::<rusqlite::Result<_>>()
            .at(&self.path)?;
        for table in tables {
            let want = limit - out.len();
            if want == 0 {
                break;
            }
            let mut stmt = self
                .db
                .prepare_cached(&format!(
                    "{SELECT} FROM {table} WHERE id > ?1 ORDER BY id LIMIT ?2"
                ))
                .at(&self.path)?;
            let rows = stmt
                .query_map(params![after, want as i64], |r| self.row(r))
                .at(&self.path)?;
            for row in rows {
                out.push(row.at(&self.path)?);
            }
        }
        Ok(out)
    }

    /// Calls `each` with every event `filter` selects, partition by
    /// partition (days of arrival, oldest first) and by event time within
    /// one, until it returns `Break`. Streams: one row in memory at a time.
    pub fn scan(
        &self,
        filter: &Filter,
        mut each: impl FnMut(StoredEvent) -> ControlFlow<()>,
    ) -> Result<()> {
        let (clause, values) = where_clause(filter);
        // Partitions holding events of the range (skipped by the event
        // times each holds, not by its day of arrival: an event's own time
        // can lie anywhere), in order of arrival.
        let tables: Vec<String> = self
            .db
            .prepare(
                "SELECT name FROM partitions WHERE max_time_us >= ?1 AND min_time_us < ?2 ORDER BY day",
            )
            .and_then(|mut stmt| {
                stmt.query_map(
                    [
                        filter.from_us.unwrap_or(i64::MIN),
                        filter.to_us.unwrap_or(i64::MAX),
                    ],
                    |r| r.get(0),
                )?
                .collect()
            })
            .at(&self.path)?;
        for table in tables {
            let mut stmt = self
                .db
                .prepare(&format!(
                    "{SELECT} FROM {table}{clause} ORDER BY time_us, id"
                ))
                .at(&self.path)?;
            let mut rows = stmt
                .query(rusqlite::params_from_iter(values.iter()))
                .at(&self.path)?;
            while let Some(r) = rows.next().at(&self.path)? {
                let event = self.row(r).at(&self.path)?;
                if each(event).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Runs a small query over this tenant's file alone (read-only, no
    /// ATTACH) and returns the column names and every row as text; for
    /// results of unknown size use [`TenantReader::sql_each`].
    pub fn sql(&self, query: &str) -> Result<(Vec<String>, Vec<Vec<String>>)> {
        let mut names = Vec::new();
        let mut rows = Vec::new();
        self.sql_each(
            query,
            |n| names = n.to_vec(),
            |r| {
                rows.push(r);
                ControlFlow::Continue(())
            },
        )?;
        Ok((names, rows))
    }

    /// When the condition `e` clears (an alert to state up) was raised:
    /// the event time of the latest earlier alert of the same agent, source
    /// and subject that was not a clear. `None` for other events, or when the
    /// raise is not in the log (deleted by retention, or before it).
    pub fn raised_at(&self, e: &StoredEvent) -> Result<Option<i64>> {
        let Some(owlet_proto::v1::event::Kind::Alert(a)) =
            e.event.as_ref().and_then(|ev| ev.kind.as_ref())
        else {
            return Ok(None);
        };
        if a.new_state != owlet_proto::v1::State::Up as i32 {
            return Ok(None);
        }
        use rusqlite::OptionalExtension;
        self.db
            .query_row(
                "SELECT time_us, state FROM events WHERE kind = 'alert' AND agent = ?1
                   AND alert_source IS ?2 AND alert_subject IS ?3 AND id < ?4
                 ORDER BY id DESC LIMIT 1",
                params![
                    e.agent,
                    (!a.source.is_empty()).then_some(&a.source),
                    (!a.subject.is_empty()).then_some(&a.subject),
                    e.id
                ],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()
            .map(|row| row.and_then(|(t, state)| (state != "up").then_some(t)))
            .at(&self.path)
    }

    /// The raw connection, read-only and confined to this tenant, for the
    /// store's own read-side modules.
    pub fn connection(&self) -> &Connection {
        &self.db
    }

    fn row(&self, r: &rusqlite::Row) -> rusqlite::Result<StoredEvent> {
        let body: Vec<u8> = r.get(7)?;
        Ok(StoredEvent {
            id: r.get(0)?,
            tenant: self.tenant.clone(),
            agent: r.get(1)?,
            seq: r.get::<_, Option<i64>>(2)?.map(|s| s as u64),
            kind: r.get(3)?,
            time_us: r.get(4)?,
            received_us: r.get(5)?,
            zone: r.get(6)?,
            event: Event::decode(body.as_slice()).ok(),
        })
    }
}

/// A value as the analyst reads it.
fn text(v: Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Integer(v) => v.to_string(),
        Value::Real(v) => v.to_string(),
        Value::Text(t) => t,
        Value::Blob(b) => format!("<{} bytes>", b.len()),
    }
}

/// ` WHERE …` for `filter` with its bound values (never the values inline).
fn where_clause(filter: &Filter) -> (String, Vec<Value>) {
    let mut terms = Vec::new();
    let mut values = Vec::new();
    if let Some(from) = filter.from_us {
        terms.push("time_us >= ?".to_string());
        values.push(Value::Integer(from));
    }
    if let Some(to) = filter.to_us {
        terms.push("time_us < ?".to_string());
        values.push(Value::Integer(to));
    }
    if let Some(after) = filter.after_id {
        terms.push("id > ?".to_string());
        values.push(Value::Integer(after));
    }
    for (column, list) in [
        ("kind", &filter.kinds),
        ("agent", &filter.agents),
        ("severity", &filter.severities),
    ] {
        if !list.is_empty() {
            terms.push(format!(
                "{column} IN ({})",
                vec!["?"; list.len()].join(", ")
            ));
            values.extend(list.iter().map(|v| Value::Text(v.clone())));
        }
    }
    if terms.is_empty() {
        (String::new(), values)
    } else {
        (format!(" WHERE {}", terms.join(" AND ")), values)
    }
}
