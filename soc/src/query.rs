//! Read-side commands over the SQLite sink: `owlet-soc agents` and
//! `owlet-soc tail`. They open the database read-only, so they can run beside
//! a serving receiver (WAL allows concurrent readers).

use std::path::Path;
use std::time::Duration;

use owlet_proto::v1::{Event, event::Kind};
use prost::Message;
use rusqlite::{Connection, OpenFlags, params};
use serde::Serialize;

/// One row of `owlet-soc agents`.
#[derive(Debug, Clone, Serialize)]
pub struct AgentRow {
    pub tenant: String,
    pub agent_id: String,
    pub version: String,
    pub hw_profile: String,
    pub hostname: String,
    pub time_zone: String,
    /// "connected", "disconnected" or "silent".
    pub state: String,
    pub first_seen: String,
    pub last_seen: String,
    pub clock_offset_ms: i64,
    pub acked_seq: u64,
    /// Events received again after they were stored (resends at or below
    /// `acked_seq`), dropped by the SOC.
    pub duplicates_dropped: u64,
}

pub fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let db = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    db.busy_timeout(Duration::from_secs(5))?;
    Ok(db)
}

/// Whether `table` has `column` (databases written by an older owlet-soc
/// lack the newer columns until a serving SOC migrates them).
pub fn has_column(db: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    let mut stmt = db.prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?;
    stmt.exists(params![table, column])
}

pub fn agents(db: &Connection) -> rusqlite::Result<Vec<AgentRow>> {
    let duplicates = if has_column(db, "agents", "duplicates_dropped")? {
        "duplicates_dropped"
    } else {
        "0"
    };
    let mut stmt = db.prepare(&format!(
        "SELECT tenant, agent_id, version, hw_profile, hostname, time_zone, connected, silent,
                first_seen_us, last_seen_us, clock_offset_ms, acked_seq, {duplicates}
         FROM agents ORDER BY tenant, agent_id"
    ))?;
    stmt.query_map([], |r| {
        let connected: bool = r.get(6)?;
        let silent: bool = r.get(7)?;
        Ok(AgentRow {
            tenant: r.get(0)?,
            agent_id: r.get(1)?,
            version: r.get(2)?,
            hw_profile: r.get(3)?,
            hostname: r.get(4)?,
            time_zone: r.get(5)?,
            state: if silent {
                "silent"
            } else if connected {
                "connected"
            } else {
                "disconnected"
            }
            .to_string(),
            first_seen: rfc3339(r.get(8)?),
            last_seen: rfc3339(r.get(9)?),
            clock_offset_ms: r.get(10)?,
            acked_seq: r.get::<_, i64>(11)? as u64,
            duplicates_dropped: r.get::<_, i64>(12)? as u64,
        })
    })?
    .collect()
}

/// An event as stored, with who sent it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub row: i64,
    pub tenant: String,
    pub agent_id: String,
    pub received_us: i64,
    /// Decoded event; `None` if the stored bytes did not decode.
    pub event: Option<Event>,
}

/// Events stored after row `after`, oldest first, optionally for one agent
/// (`TENANT/AGENT` or just `AGENT`).
pub fn events_after(
    db: &Connection,
    after: i64,
    agent: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<StoredEvent>> {
    let (tenant, agent_id) = match agent.map(|a| a.split_once('/')) {
        Some(Some((t, a))) => (Some(t), Some(a)),
        Some(None) => (None, agent),
        None => (None, None),
    };
    let mut stmt = db.prepare_cached(
        "SELECT e.id, a.tenant, a.agent_id, e.received_us, e.body FROM events e JOIN agents a ON a.id = e.agent
         WHERE e.id > ?1 AND (?2 IS NULL OR a.tenant = ?2) AND (?3 IS NULL OR a.agent_id = ?3)
         ORDER BY e.id LIMIT ?4",
    )?;
    stmt.query_map(params![after, tenant, agent_id, limit as i64], |r| {
        let body: Vec<u8> = r.get(4)?;
        Ok(StoredEvent {
            row: r.get(0)?,
            tenant: r.get(1)?,
            agent_id: r.get(2)?,
            received_us: r.get(3)?,
            event: Event::decode(body.as_slice()).ok(),
        })
    })?
    .collect()
}

/// The last stored row id (0 when empty).
pub fn last_row(db: &Connection) -> rusqlite::Result<i64> {
    db.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))
}

/// Number of stored events.
pub fn event_count(db: &Connection) -> rusqlite::Result<i64> {
    db.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
}

/// One JSON object per event: agent identity plus the event in proto3 JSON.
pub fn json_line(stored: &StoredEvent) -> String {
    serde_json::json!({
        "tenant": stored.tenant,
        "agent": stored.agent_id,
        "received": rfc3339(stored.received_us),
        "event": stored.event,
    })
    .to_string()
}

/// One readable line per event.
pub fn text_line(stored: &StoredEvent) -> String {
    let Some(event) = &stored.event else {
        return format!(
            "{} {}/{} <undecodable event>",
            rfc3339(stored.received_us),
            stored.tenant,
            stored.agent_id
        );
    };
    let time = event
        .time
        .as_ref()
        .map_or_else(String::new, |t| rfc3339(owlet_proto::timestamp_micros(t)));
    let seq = if event.seq == 0 {
        "soc".to_string()
    } else {
        format!("#{}", event.seq)
    };
    format!(
        "{time} {}/{} {seq} {}: {}",
        stored.tenant,
        stored.agent_id,
        event.kind_name(),
        summary(event)
    )
}

fn summary(event: &Event) -> String {
    match &event.kind {
        Some(Kind::AgentStatus(s)) => format!(
            "up {}s, spool {} events / {} B, accepted {}, dropped {}, rss {} MiB",
            s.uptime_seconds,
            s.spool_events,
            s.spool_bytes,
            s.events_accepted,
            s.events_dropped,
            s.rss_bytes / (1024 * 1024)
        ),
        Some(Kind::DataLoss(d)) => format!(
            "{} events lost ({:?}), seq {}..{}, by kind {:?}",
            d.events_lost,
            d.reason(),
            d.first_seq,
            d.last_seq,
            d.lost_by_kind
        ),
        Some(Kind::Alert(a)) => format!(
            "[{:?}] {} {}: {}",
            a.severity(),
            a.name,
            a.subject,
            a.message
        ),
        Some(Kind::CheckResult(c)) => format!(
            "{} {} {} -> {:?} {} ({} ms)",
            c.check_id,
            format!("{:?}", c.check_type()).to_lowercase(),
            c.target,
            c.result(),
            c.message,
            c.duration_us / 1000
        ),
        Some(Kind::FlowRecord(f)) => flow_line(f),
        Some(Kind::CaptureStats(c)) => capture_line(c),
        Some(other) => format!("{other:?}").chars().take(160).collect(),
        None => "unknown kind (newer agent?)".to_string(),
    }
}

/// One flow record on one line: who talked to whom, how much each way.
pub fn flow_line(f: &owlet_proto::v1::FlowRecord) -> String {
    let proto = match f.protocol {
        6 => "tcp".to_string(),
        17 => "udp".to_string(),
        1 => "icmp".to_string(),
        58 => "icmp6".to_string(),
        other => format!("proto {other}"),
    };
    format!(
        "{proto} {}:{} -> {}:{} on {}: {} pkts / {} B out, {} pkts / {} B back ({:?})",
        f.src_addr,
        f.src_port,
        f.dst_addr,
        f.dst_port,
        f.interface,
        f.packets_out,
        f.bytes_out,
        f.packets_in,
        f.bytes_in,
        f.end_reason()
    )
}

/// A capture summary on one line: volume, health and the top talkers.
pub fn capture_line(c: &owlet_proto::v1::CaptureStats) -> String {
    let top = |entries: &[owlet_proto::v1::TopEntry]| {
        entries
            .iter()
            .take(3)
            .map(|e| format!("{} ({} B)", e.key, e.bytes))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let talkers = c
        .top_talkers
        .iter()
        .take(3)
        .map(|t| format!("{} ({} B)", t.addr, t.bytes))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{} over {:.0}s: {} pkts / {} B, {} new flows, {} kernel drops; top sources {talkers}; top ports {}",
        c.interface,
        c.interval_seconds,
        c.packets,
        c.bytes,
        c.new_flows,
        c.kernel_drops,
        top(&c.top_ports_by_bytes)
    )
}

fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
