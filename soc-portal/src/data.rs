//! What the pages show, read from one tenant's log (read-only, through
//! [`TenantReader`]) and the receiver's `soc.db` (read-only, one tenant's
//! rows): sensors, the check board, alerts, configuration changes.
//!
//! Guarantees: every function takes one tenant's reader or one tenant's
//! name and selects only that tenant's rows; every filter value is bound
//! as a parameter (a `LIKE` pattern is escaped), never formatted into SQL;
//! lists are bounded by a limit. Blocking: call from blocking threads.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use owlet_proto::v1::{Event, event::Kind};
use owlet_soc_store::{Newest, StoredEvent, TenantReader, newest_first};
use prost::Message;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, params};

pub type Result<T> = std::result::Result<T, owlet_soc_store::StoreError>;

fn sql_err(reader: &TenantReader, e: rusqlite::Error) -> owlet_soc_store::StoreError {
    owlet_soc_store::StoreError::sqlite(Path::new(reader.tenant()), e)
}

/// One sensor of the tenant, from `soc.db` and its latest heartbeat.
#[derive(Debug, Clone, Default)]
pub struct Sensor {
    pub agent: String,
    pub hostname: String,
    pub version: String,
    pub hw_profile: String,
    /// `connected`, `silent`, `stopped` (announced) or `disconnected`.
    pub state: &'static str,
    pub last_seen_us: i64,
    pub cert_expires_us: Option<i64>,
    pub spool_events: Option<u64>,
    pub spool_oldest_s: Option<u64>,
}

impl Sensor {
    pub fn needs_attention(&self) -> bool {
        matches!(self.state, "silent" | "disconnected")
    }
}

fn has_column(db: &Connection, column: &str) -> bool {
    db.prepare("SELECT 1 FROM pragma_table_info('agents') WHERE name = ?1")
        .and_then(|mut s| s.exists([column]))
        .unwrap_or(false)
}

/// The tenant's sensors. An absent `soc.db` (no receiver ran yet) is no
/// sensors, not an error.
pub fn sensors(
    control_db: &Path,
    tenant: &str,
    reader: Option<&TenantReader>,
    silent_after: Duration,
    now_us: i64,
) -> std::result::Result<Vec<Sensor>, rusqlite::Error> {
    if !control_db.exists() {
        return Ok(Vec::new());
    }
    let db = Connection::open_with_flags(
        control_db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    db.busy_timeout(Duration::from_secs(5))?;
    let expires = if has_column(&db, "cert_not_after_us") {
        "cert_not_after_us"
    } else {
        "NULL"
    };
    let stopping = if has_column(&db, "stopping") {
        "stopping"
    } else {
        "0"
    };
    let mut stmt = db.prepare(&format!(
        "SELECT agent_id, hostname, version, hw_profile, connected, silent, {stopping},
                last_seen_us, {expires}
         FROM agents WHERE tenant = ?1 ORDER BY agent_id"
    ))?;
    let mut out: Vec<Sensor> = stmt
        .query_map([tenant], |r| {
            let connected: bool = r.get(4)?;
            let silent: bool = r.get(5)?;
            let stopping: bool = r.get(6)?;
            let last_seen_us: i64 = r.get(7)?;
            let late = now_us - last_seen_us > silent_after.as_micros() as i64;
            Ok(Sensor {
                agent: r.get(0)?,
                hostname: r.get(1)?,
                version: r.get(2)?,
                hw_profile: r.get(3)?,
                state: if stopping && !connected {
                    "stopped"
                } else if silent || (connected && late) {
                    "silent"
                } else if connected {
                    "connected"
                } else {
                    "disconnected"
                },
                last_seen_us,
                cert_expires_us: r.get(8)?,
                ..Default::default()
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    if let Some(reader) = reader {
        for s in &mut out {
            if let Some(Kind::AgentStatus(st)) = latest_of(reader, "agent_status", &s.agent)
                .ok()
                .flatten()
                .and_then(|e| e.kind)
            {
                s.spool_events = Some(st.spool_events);
                s.spool_oldest_s = Some(st.spool_oldest_age_seconds);
            }
        }
    }
    Ok(out)
}

/// The latest event of `kind` from `agent` (newest id).
fn latest_of(reader: &TenantReader, kind: &str, agent: &str) -> Result<Option<Event>> {
    reader
        .connection()
        .query_row(
            "SELECT body FROM events WHERE kind = ?1 AND agent = ?2 ORDER BY id DESC LIMIT 1",
            params![kind, agent],
            |r| r.get::<_, Vec<u8>>(0),
        )
        .map(|b| Event::decode(b.as_slice()).ok())
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(sql_err(reader, e)),
        })
}

/// One check's latest state.
#[derive(Debug, Clone)]
pub struct CheckRow {
    pub agent: String,
    pub check_id: String,
    pub check_type: String,
    pub target: String,
    pub state: String,
    pub message: String,
    pub last_us: i64,
    /// When the current state began (the first result of its run), if known.
    pub since_us: Option<i64>,
}

/// Every check that reported within `window_us` before `now_us`, with its
/// latest result's state: one row per check from the store's `check_state`
/// (kept on ingest), not a scan of the window's results.
pub fn check_board(reader: &TenantReader, now_us: i64, window_us: i64) -> Result<Vec<CheckRow>> {
    let db = reader.connection();
    let mut stmt = db
        .prepare(
            "SELECT agent, check_id, COALESCE(check_type, ''), COALESCE(target, ''),
                    COALESCE(state, 'unknown'), COALESCE(message, ''), time_us, since_us
             FROM check_state WHERE time_us >= ?1 ORDER BY agent, check_id",
        )
        .map_err(|e| sql_err(reader, e))?;
    stmt.query_map([now_us - window_us], |r| {
        Ok(CheckRow {
            agent: r.get(0)?,
            check_id: r.get(1)?,
            check_type: r.get(2)?,
            target: r.get(3)?,
            state: r.get(4)?,
            message: r.get(5)?,
            last_us: r.get(6)?,
            since_us: r.get(7)?,
        })
    })
    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
    .map_err(|e| sql_err(reader, e))
}

/// What an alert or change list selects (each value bound, never inlined).
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub agent: Option<String>,
    pub severity: Option<String>,
    /// Substring of the path (changes) or subject/name/message (alerts).
    pub text: Option<String>,
    pub from_us: Option<i64>,
    pub to_us: Option<i64>,
    pub limit: i64,
}

impl ListFilter {
    /// The events of `kind` this filter selects, newest first, each made
    /// by `row`: read partition by partition ([`newest_first`]), so the
    /// newest 50 of a month's alerts do not sort the whole month.
    fn newest<T>(
        &self,
        reader: &TenantReader,
        kind: &str,
        columns: &str,
        text_columns: &[&str],
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let mut sql = format!("kind = '{kind}'");
        let mut values = Vec::new();
        if let Some(a) = &self.agent {
            sql.push_str(" AND agent = ?");
            values.push(Value::Text(a.clone()));
        }
        if let Some(s) = &self.severity {
            sql.push_str(" AND severity = ?");
            values.push(Value::Text(s.clone()));
        }
        if let Some(text) = &self.text {
            let pattern = like_pattern(text);
            let ors: Vec<String> = text_columns
                .iter()
                .map(|c| format!("{c} LIKE ? ESCAPE '\\'"))
                .collect();
            sql.push_str(&format!(" AND ({})", ors.join(" OR ")));
            values.extend(text_columns.iter().map(|_| Value::Text(pattern.clone())));
        }
        let select = Newest {
            columns,
            filter: &sql,
            values: &values,
            from_us: self.from_us,
            to_us: self.to_us,
            limit: self.limit.clamp(1, 1000) as usize,
        };
        newest_first(reader.connection(), &select, row).map_err(|e| sql_err(reader, e))
    }
}

/// A `LIKE … ESCAPE '\\'` pattern that finds `text` anywhere, its own `%`,
/// `_` and `\\` taken literally.
pub fn like_pattern(text: &str) -> String {
    format!(
        "%{}%",
        text.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    )
}

/// One raised alert.
#[derive(Debug, Clone)]
pub struct AlertRow {
    pub id: i64,
    pub agent: String,
    pub time_us: i64,
    pub severity: String,
    pub name: String,
    pub subject: String,
    pub source: String,
    pub message: String,
    pub new_state: String,
    /// A later alert of the same subject brought it back up.
    pub cleared: bool,
}

/// Raised alerts (new state not `up`), newest first.
pub fn alerts(reader: &TenantReader, filter: &ListFilter) -> Result<Vec<AlertRow>> {
    let all = filter.newest(
        reader,
        "alert",
        "id, agent, time_us, COALESCE(severity, ''), COALESCE(alert_name, ''),
         COALESCE(alert_subject, ''), COALESCE(alert_source, ''), COALESCE(message, ''),
         COALESCE(state, '')",
        &["alert_subject", "alert_name", "message"],
        |r| {
            Ok(AlertRow {
                id: r.get(0)?,
                agent: r.get(1)?,
                time_us: r.get(2)?,
                severity: r.get(3)?,
                name: r.get(4)?,
                subject: r.get(5)?,
                source: r.get(6)?,
                message: r.get(7)?,
                new_state: r.get(8)?,
                cleared: false,
            })
        },
    )?;
    Ok(raised(all))
}

/// The raised alerts among `all` (newest first), each marked `cleared`
/// when a later alert of its subject brought it back up.
pub fn raised(all: Vec<AlertRow>) -> Vec<AlertRow> {
    // Newest first: a clear seen before (later than) a raise clears it.
    let mut cleared: HashSet<(String, String, String)> = HashSet::new();
    let mut out = Vec::new();
    for mut a in all {
        let key = (a.agent.clone(), a.source.clone(), a.subject.clone());
        if a.new_state == "up" {
            cleared.insert(key);
            continue;
        }
        a.cleared = cleared.contains(&key);
        out.push(a);
    }
    out
}

/// One configuration (watched file) change.
#[derive(Debug, Clone)]
pub struct ChangeRow {
    pub id: i64,
    pub agent: String,
    pub time_us: i64,
    pub path: String,
    pub action: String,
    pub severity: String,
    pub changed_by: String,
    pub while_stopped: bool,
}

/// File changes, newest first.
pub fn changes(reader: &TenantReader, filter: &ListFilter) -> Result<Vec<ChangeRow>> {
    filter.newest(
        reader,
        "file_change",
        "id, agent, time_us, COALESCE(file_path, ''), COALESCE(file_action, ''),
         COALESCE(severity, ''), COALESCE(changed_by, ''), body",
        &["file_path"],
        |r| {
            let body: Vec<u8> = r.get(7)?;
            Ok(ChangeRow {
                id: r.get(0)?,
                agent: r.get(1)?,
                time_us: r.get(2)?,
                path: r.get(3)?,
                action: r.get(4)?,
                severity: r.get(5)?,
                changed_by: r.get(6)?,
                while_stopped: while_stopped(&body),
            })
        },
    )
}

/// Whether a stored file change (its protobuf `body`) happened while the
/// agent was stopped.
pub fn while_stopped(body: &[u8]) -> bool {
    matches!(
        Event::decode(body).ok().and_then(|e| e.kind),
        Some(Kind::FileChange(f)) if f.while_agent_stopped
    )
}

/// The event with log id `id`, if stored (and not deleted by retention).
pub fn event(reader: &TenantReader, id: i64) -> Result<Option<StoredEvent>> {
    Ok(reader
        .read_after(id - 1, 1)?
        .into_iter()
        .next()
        .filter(|e| e.id == id))
}

/// One line of a unified diff, classed for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffLine {
    /// `add`, `del`, `hunk` or `ctx`.
    pub class: &'static str,
    pub text: String,
}

/// Splits a (redacted) unified diff into classed lines.
pub fn diff_lines(diff: &str) -> Vec<DiffLine> {
    diff.lines()
        .map(|l| DiffLine {
            class: if l.starts_with("+++") || l.starts_with("---") || l.starts_with("@@") {
                "hunk"
            } else if l.starts_with('+') {
                "add"
            } else if l.starts_with('-') {
                "del"
            } else {
                "ctx"
            },
            text: l.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_lines_are_classed() {
        let d = diff_lines("--- a\n+++ b\n@@ -1 +1 @@\n-old\n+<b>new</b>\n same");
        let classes: Vec<_> = d.iter().map(|l| l.class).collect();
        assert_eq!(classes, ["hunk", "hunk", "hunk", "del", "add", "ctx"]);
        assert_eq!(d[4].text, "+<b>new</b>");
    }
}
