//! The scaled-out SOC's data: a tenant's schema `tenant_<t>` in the
//! PostgreSQL `owlet-soc writer` fills (`events` in day partitions,
//! `agents` with each agent's mark and liveness state), the rollup
//! consumer's `rollup_*` and the report schedule's `reports`.
//!
//! * **Tenant separation.** Every [`PgTenant`] reads through soc-report's
//!   [`SchemaSource`](owlet_soc_report::source::postgres::Postgres): a
//!   connection checked out of the guard's tenant's pool ([`pool`]),
//!   opened for that tenant alone, whose `search_path` is that tenant's
//!   schema alone and whose transactions are read-only; it goes back to
//!   that tenant's idle connections when the page is done and never
//!   serves another tenant. Every query here names its tables
//!   unqualified (`events`, `agents`, `reports`), so it reads the
//!   tenant's own and nothing else; a tenant name PostgreSQL would cut
//!   (`owlet_soc_bus::writer::check_tenant`) is not found.
//! * **Bounded connections.** Pages, the guard's [`Postgres::stores`], the
//!   live pollers and the tenant list share the [`pool`]'s cap
//!   (`[postgres] max_connections`); when it is exhausted the page is a 503
//!   and the log names the key to raise. A reused connection whose first
//!   query fails (its backend ended: a PostgreSQL restart) is closed and
//!   the page opens a new one.
//! * **What differs from the embedded portal**, because the writer does
//!   not store it: a sensor's host name and certificate expiry (receivers
//!   keep no inventory). The check board reads the writer's
//!   `check_state` (one row per check, with its "since"). A sensor's
//!   state comes from `agents` (the writer's liveness judgement: `silent`,
//!   `stopping`) and its last heartbeat; events carry the zone `UTC`
//!   (`owlet_soc_bus::stored::ZONE`).
//! * **Bounded memory.** Lists are limited; an export reads
//!   [`EXPORT_PAGE`] rows at a time (keyset on `(time_us, id)`, the
//!   embedded export's order) and writes each event outside the query.
//! * The catalogue questions that are not a tenant's data (which tenants
//!   exist: `owlet_bus.cursors` of the writer) use a short connection of
//!   their own, counted under the cap, and read no tenant's rows.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use owlet_proto::v1::Event;
use owlet_proto::v1::event::Kind;
use owlet_soc_export::{ExportError, Format, Summary, Zone};
use owlet_soc_report::schedule::StoredReport;
use owlet_soc_report::shelf::listing;
use owlet_soc_report::source::{Param, Row, Source};
use owlet_soc_store::{Filter, StoredEvent};
use prost::Message as _;
use tokio::runtime::Handle;

use super::pool::{Conn, Pool};
use super::{TenantData, internal};
use crate::data::{self, AlertRow, ChangeRow, CheckRow, ListFilter, Sensor};
use crate::web::PageError;

/// The PostgreSQL of the scaled-out SOC (`[postgres]` of portal.toml).
pub struct Postgres {
    pool: Arc<Pool>,
}

impl Postgres {
    /// At most `max_connections` open to `conninfo` (call within the
    /// runtime: the pool's idle reaper starts).
    pub fn new(conninfo: &str, max_connections: usize) -> Self {
        Self {
            pool: Pool::new(conninfo, max_connections),
        }
    }

    /// Connections the portal has open now, by its own count (PostgreSQL
    /// may still list one closed to make room while its backend exits).
    pub fn open_connections(&self) -> usize {
        self.pool.open()
    }

    /// `tenant`'s data, through a connection that sees its schema alone.
    pub fn tenant(&self, tenant: &str) -> Result<PgTenant, PageError> {
        if owlet_soc_bus::writer::check_tenant(tenant).is_err() {
            return Err(PageError::NotFound);
        }
        loop {
            let conn = self.pool.checkout(tenant)?;
            match conn.source().has_events() {
                Ok(has_events) => return Ok(PgTenant { conn, has_events }),
                // Idle while its backend ended (a PostgreSQL restart):
                // closed, and the next checkout reuses or opens another.
                Err(e) if conn.reused() => {
                    tracing::warn!(%tenant, "portal: a pooled PostgreSQL connection failed ({e}); opening another");
                    conn.discard();
                }
                Err(e) => return Err(internal(e)),
            }
        }
    }

    /// Whether `tenant`'s schema has events; `false` (logged) when
    /// PostgreSQL cannot be read.
    pub fn stores(&self, tenant: &str) -> bool {
        match self.tenant(tenant) {
            Ok(t) => t.has_events,
            Err(e) => {
                tracing::error!("portal: reading tenant {tenant} in PostgreSQL: {e:?}");
                false
            }
        }
    }

    /// The tenants the writer stores (its cursors), sorted; none when
    /// PostgreSQL cannot be read (logged).
    pub fn tenants(&self) -> Vec<String> {
        let listed = self
            .pool
            .place()
            .map_err(|e| e.to_string())
            .and_then(|_place| {
                Handle::current()
                    .block_on(async {
                        let pg =
                            owlet_soc_bus::writer::connect_postgres(self.pool.conninfo()).await?;
                        owlet_soc_bus::stored::tenants(&pg).await
                    })
                    .map_err(|e| e.to_string())
            });
        listed.unwrap_or_else(|e| {
            tracing::error!("portal: listing the tenants in PostgreSQL: {e}");
            Vec::new()
        })
    }
}

/// One tenant's schema, through its checked-out connection.
pub struct PgTenant {
    conn: Conn,
    has_events: bool,
}

/// Rows an export reads at a time.
const EXPORT_PAGE: usize = 500;

/// A query parameter the query owns until it runs.
#[derive(Clone)]
enum Value {
    Int(i64),
    Text(String),
}

fn params(values: &[Value]) -> Vec<Param<'_>> {
    values
        .iter()
        .map(|v| match v {
            Value::Int(i) => Param::Int(*i),
            Value::Text(t) => Param::Text(t),
        })
        .collect()
}

/// `?N` for the next value of `values`, which it pushes.
fn bind(values: &mut Vec<Value>, v: Value) -> String {
    values.push(v);
    format!("?{}", values.len())
}

/// ` AND column IN (?a, ?b, …)` for a non-empty `list`.
fn any_of(values: &mut Vec<Value>, column: &str, list: &[String]) -> String {
    if list.is_empty() {
        return String::new();
    }
    let marks: Vec<String> = list
        .iter()
        .map(|v| bind(values, Value::Text(v.clone())))
        .collect();
    format!(" AND {column} IN ({})", marks.join(", "))
}

/// The columns a [`StoredEvent`] is read from.
const EVENT_COLUMNS: &str = "id, agent, seq, kind, time_us, received_us, body";

fn stored_event(tenant: &str, r: &Row) -> StoredEvent {
    StoredEvent {
        id: r.int(0),
        tenant: tenant.to_string(),
        agent: r.text(1),
        seq: r.opt_int(2).and_then(|s| u64::try_from(s).ok()),
        kind: r.text(3),
        time_us: r.int(4),
        received_us: r.int(5),
        zone: owlet_soc_bus::stored::ZONE.to_string(),
        event: Event::decode(r.bytes(6)).ok(),
    }
}

impl PgTenant {
    fn rows(&self, sql: &str, values: &[Value]) -> Result<Vec<Row>, PageError> {
        Ok(self.conn.source().rows(sql, &params(values))?)
    }

    /// The newest events of `kind` `filter` selects, as `columns`.
    fn newest(
        &self,
        kind: &str,
        columns: &str,
        text_columns: &[&str],
        filter: &ListFilter,
    ) -> Result<Vec<Row>, PageError> {
        if !self.has_events {
            return Ok(Vec::new());
        }
        let mut values = Vec::new();
        let mut sql = format!(
            "SELECT {columns} FROM events WHERE kind = {}",
            bind(&mut values, Value::Text(kind.into()))
        );
        if let Some(a) = &filter.agent {
            sql += &format!(" AND agent = {}", bind(&mut values, Value::Text(a.clone())));
        }
        if let Some(s) = &filter.severity {
            sql += &format!(
                " AND severity = {}",
                bind(&mut values, Value::Text(s.clone()))
            );
        }
        if let Some(text) = &filter.text {
            let pattern = data::like_pattern(text);
            let ors: Vec<String> = text_columns
                .iter()
                .map(|c| {
                    let mark = bind(&mut values, Value::Text(pattern.clone()));
                    format!("{c} LIKE {mark} ESCAPE '\\'")
                })
                .collect();
            sql += &format!(" AND ({})", ors.join(" OR "));
        }
        if let Some(from) = filter.from_us {
            sql += &format!(" AND time_us >= {}", bind(&mut values, Value::Int(from)));
        }
        if let Some(to) = filter.to_us {
            sql += &format!(" AND time_us < {}", bind(&mut values, Value::Int(to)));
        }
        sql += &format!(
            " ORDER BY time_us DESC, id DESC LIMIT {}",
            filter.limit.clamp(1, 1000)
        );
        self.rows(&sql, &values)
    }

    /// The latest `agent_status` of `agent`, stored at or after `since_us`.
    fn status_of(&self, agent: &str, since_us: i64) -> Option<owlet_proto::v1::AgentStatus> {
        let rows = self
            .rows(
                "SELECT body FROM events WHERE kind = 'agent_status' AND agent = ?1
                 AND received_us >= ?2 ORDER BY id DESC LIMIT 1",
                &[Value::Text(agent.into()), Value::Int(since_us)],
            )
            .ok()?;
        match Event::decode(rows.first()?.bytes(0)).ok()?.kind {
            Some(Kind::AgentStatus(st)) => Some(st),
            _ => None,
        }
    }

    fn table_exists(&self, table: &str) -> Result<bool, PageError> {
        Ok(self
            .rows(
                "SELECT to_regclass(?1) IS NOT NULL",
                &[Value::Text(table.into())],
            )?
            .first()
            .is_some_and(|r| r.int(0) != 0))
    }
}

/// A failed read of an export, as its error.
fn read_error(e: PageError) -> ExportError {
    ExportError::Read(match e {
        PageError::Internal(m) | PageError::BadRequest(m) | PageError::Unavailable(m) => m,
        other => format!("{other:?}"),
    })
}

/// A sensor's state from the writer's judgement and its last heartbeat.
fn state_of(silent: bool, stopping: bool, late: bool) -> &'static str {
    if stopping && late {
        "stopped"
    } else if silent || late {
        "silent"
    } else {
        "connected"
    }
}

impl TenantData for PgTenant {
    fn has_events(&self) -> Result<bool, PageError> {
        Ok(self.has_events)
    }

    fn sensors(&self, silent_after: Duration, now_us: i64) -> Result<Vec<Sensor>, PageError> {
        if !self.table_exists("agents")? {
            return Ok(Vec::new());
        }
        let agents = self.rows(
            "SELECT agent, COALESCE(last_heartbeat_us, first_seen_us), stopping, silent,
                    last_heartbeat_us IS NOT NULL
             FROM agents ORDER BY agent",
            &[],
        )?;
        Ok(agents
            .iter()
            .map(|r| {
                let agent = r.text(0);
                let last_seen_us = r.int(1);
                let late = now_us - last_seen_us > silent_after.as_micros() as i64;
                let status = (r.int(4) != 0)
                    .then(|| self.status_of(&agent, last_seen_us))
                    .flatten();
                Sensor {
                    state: state_of(r.int(3) != 0, r.int(2) != 0, late),
                    last_seen_us,
                    version: status
                        .as_ref()
                        .map(|s| s.agent_version.clone())
                        .unwrap_or_default(),
                    hw_profile: status
                        .as_ref()
                        .map(|s| s.hw_profile.clone())
                        .unwrap_or_default(),
                    spool_events: status.as_ref().map(|s| s.spool_events),
                    spool_oldest_s: status.as_ref().map(|s| s.spool_oldest_age_seconds),
                    agent,
                    ..Default::default()
                }
            })
            .collect())
    }

    fn check_board(&self, now_us: i64, window_us: i64) -> Result<Vec<CheckRow>, PageError> {
        if !self.has_events {
            return Ok(Vec::new());
        }
        // The writer's check_state: one row per check (owlet_soc_bus checks).
        let rows = self.rows(
            "SELECT agent, check_id, COALESCE(check_type, ''), COALESCE(target, ''),
                    COALESCE(state, 'unknown'), COALESCE(message, ''), time_us, since_us
             FROM check_state WHERE time_us >= ?1 ORDER BY agent, check_id",
            &[Value::Int(now_us - window_us)],
        )?;
        Ok(rows
            .iter()
            .map(|r| CheckRow {
                agent: r.text(0),
                check_id: r.text(1),
                check_type: r.text(2),
                target: r.text(3),
                state: r.text(4),
                message: r.text(5),
                last_us: r.int(6),
                since_us: r.opt_int(7),
            })
            .collect())
    }

    fn alerts(&self, filter: &ListFilter) -> Result<Vec<AlertRow>, PageError> {
        let rows = self.newest(
            "alert",
            "id, agent, time_us, COALESCE(severity, ''), COALESCE(alert_name, ''),
             COALESCE(alert_subject, ''), COALESCE(alert_source, ''), COALESCE(message, ''),
             COALESCE(state, '')",
            &["alert_subject", "alert_name", "message"],
            filter,
        )?;
        Ok(data::raised(
            rows.iter()
                .map(|r| AlertRow {
                    id: r.int(0),
                    agent: r.text(1),
                    time_us: r.int(2),
                    severity: r.text(3),
                    name: r.text(4),
                    subject: r.text(5),
                    source: r.text(6),
                    message: r.text(7),
                    new_state: r.text(8),
                    cleared: false,
                })
                .collect(),
        ))
    }

    fn changes(&self, filter: &ListFilter) -> Result<Vec<ChangeRow>, PageError> {
        let rows = self.newest(
            "file_change",
            "id, agent, time_us, COALESCE(file_path, ''), COALESCE(file_action, ''),
             COALESCE(severity, ''), COALESCE(changed_by, ''), body",
            &["file_path"],
            filter,
        )?;
        Ok(rows
            .iter()
            .map(|r| ChangeRow {
                id: r.int(0),
                agent: r.text(1),
                time_us: r.int(2),
                path: r.text(3),
                action: r.text(4),
                severity: r.text(5),
                changed_by: r.text(6),
                while_stopped: data::while_stopped(r.bytes(7)),
            })
            .collect())
    }

    fn event(&self, id: i64) -> Result<Option<StoredEvent>, PageError> {
        if !self.has_events {
            return Ok(None);
        }
        let rows = self.rows(
            &format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1"),
            &[Value::Int(id)],
        )?;
        Ok(rows
            .first()
            .map(|r| stored_event(self.conn.source().tenant(), r)))
    }

    fn last_id(&self) -> Result<i64, PageError> {
        if !self.has_events {
            return Ok(0);
        }
        Ok(self
            .rows("SELECT COALESCE(MAX(id), 0) FROM events", &[])?
            .first()
            .map_or(0, |r| r.int(0)))
    }

    fn read_after(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>, PageError> {
        if !self.has_events {
            return Ok(Vec::new());
        }
        let rows = self.rows(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE id > ?1 ORDER BY id LIMIT {}",
                limit.clamp(1, 10_000)
            ),
            &[Value::Int(after)],
        )?;
        Ok(rows
            .iter()
            .map(|r| stored_event(self.conn.source().tenant(), r))
            .collect())
    }

    fn export(
        &self,
        filter: &Filter,
        format: Format,
        zone: &Zone,
        mut out: &mut dyn Write,
    ) -> Result<Summary, ExportError> {
        if !self.has_events {
            return owlet_soc_export::export_from(|_| Ok(()), format, zone, &mut out);
        }
        let mut values = Vec::new();
        let mut filters = String::new();
        if let Some(from) = filter.from_us {
            filters += &format!(" AND time_us >= {}", bind(&mut values, Value::Int(from)));
        }
        if let Some(to) = filter.to_us {
            filters += &format!(" AND time_us < {}", bind(&mut values, Value::Int(to)));
        }
        if let Some(after) = filter.after_id {
            filters += &format!(" AND id > {}", bind(&mut values, Value::Int(after)));
        }
        filters += &any_of(&mut values, "kind", &filter.kinds);
        filters += &any_of(&mut values, "agent", &filter.agents);
        filters += &any_of(&mut values, "severity", &filter.severities);
        let tenant = self.conn.source().tenant();
        owlet_soc_export::export_from(
            |each| {
                // Page by page (keyset on the export's order): at most
                // EXPORT_PAGE rows in memory, and each event is written
                // outside the query (the writer may block on the browser).
                let mut after: Option<(i64, i64)> = None;
                loop {
                    let mut page_values = values.clone();
                    let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE true{filters}");
                    if let Some((time_us, id)) = after {
                        let t = bind(&mut page_values, Value::Int(time_us));
                        let i = bind(&mut page_values, Value::Int(id));
                        sql += &format!(" AND (time_us, id) > ({t}, {i})");
                    }
                    sql += &format!(" ORDER BY time_us, id LIMIT {EXPORT_PAGE}");
                    let rows = self.rows(&sql, &page_values).map_err(read_error)?;
                    for r in &rows {
                        if each(stored_event(tenant, r)).is_break() {
                            return Ok(());
                        }
                    }
                    match rows.last() {
                        Some(last) if rows.len() == EXPORT_PAGE => {
                            after = Some((last.int(4), last.int(0)));
                        }
                        _ => return Ok(()),
                    }
                }
            },
            format,
            zone,
            &mut out,
        )
    }

    fn source(&self) -> Option<&dyn Source> {
        self.has_events.then_some(self.conn.source() as &dyn Source)
    }

    fn reports(&self) -> Result<Vec<StoredReport>, PageError> {
        if !self.table_exists("reports")? {
            return Ok(Vec::new());
        }
        let rows = self.rows("SELECT name FROM reports", &[])?;
        Ok(listing::periods(rows.iter().map(|r| r.text(0))))
    }

    fn report_file(&self, name: &str) -> Result<Option<Vec<u8>>, PageError> {
        if !listing::is_report_file(name) || !self.table_exists("reports")? {
            return Ok(None);
        }
        let rows = self.rows(
            "SELECT body FROM reports WHERE name = ?1",
            &[Value::Text(name.into())],
        )?;
        Ok(rows.first().map(|r| r.bytes(0).to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sensor_is_silent_when_judged_or_late_and_stopped_when_it_said_goodbye() {
        assert_eq!(state_of(false, false, false), "connected");
        assert_eq!(state_of(true, false, false), "silent");
        assert_eq!(state_of(false, false, true), "silent");
        assert_eq!(state_of(false, true, true), "stopped");
        assert_eq!(state_of(false, true, false), "connected");
    }

    #[test]
    fn list_values_are_bound_in_order() {
        let mut values = vec![Value::Int(1)];
        let sql = any_of(&mut values, "kind", &["alert".into(), "x'); DROP".into()]);
        assert_eq!(sql, " AND kind IN (?2, ?3)");
        assert_eq!(values.len(), 3);
        assert_eq!(any_of(&mut values, "agent", &[]), "");
    }
}
