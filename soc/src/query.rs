//! Read side of the control database (`owlet-soc agents`) and the text and
//! JSON renderings of stored events (`owlet-soc tail`). Everything opens
//! read-only, so it runs beside a serving receiver (WAL allows concurrent
//! readers).

use std::path::Path;
use std::time::Duration;

use owlet_proto::v1::{Event, event::Kind};
use owlet_soc_store::{Store, StoredEvent};
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
    /// "revoked" (its last certificate is revoked by the CRL the SOC
    /// enforces), "silent", "connected" or "disconnected".
    pub state: String,
    pub first_seen: String,
    pub last_seen: String,
    pub clock_offset_ms: i64,
    pub acked_seq: u64,
    /// Events received again after they were stored (resends at or below
    /// `acked_seq`), dropped by the SOC.
    pub duplicates_dropped: u64,
    /// When the agent last stored a self-test record (`owlet selftest`);
    /// `None` if it never did.
    pub last_selftest: Option<String>,
    /// What that self-test said: "pass" or "FAIL step, step" (its local
    /// steps); `None` if it never ran or the SOC did not record it.
    pub last_selftest_result: Option<String>,
    /// Events of the agent stored in its tenant's log.
    pub events_stored: u64,
    /// Serial of the certificate it last connected with (hex); `None`
    /// before a SOC that records it saw the agent.
    pub cert_serial: Option<String>,
    /// When that certificate expires.
    pub cert_expires: Option<String>,
    /// That certificate is revoked by the CRL the SOC enforces.
    pub cert_revoked: bool,
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

/// `column` when `agents` has it, else `missing` (an older database).
fn agents_column(
    db: &Connection,
    column: &'static str,
    missing: &'static str,
) -> rusqlite::Result<&'static str> {
    Ok(if has_column(db, "agents", column)? {
        column
    } else {
        missing
    })
}

/// The agents of the control database `db`, with their events counted in
/// `store`'s tenant logs.
pub fn agents(db: &Connection, store: &Store) -> rusqlite::Result<Vec<AgentRow>> {
    let duplicates = agents_column(db, "duplicates_dropped", "0")?;
    let selftest = agents_column(db, "last_selftest_us", "NULL")?;
    let selftest_result = agents_column(db, "last_selftest_result", "NULL")?;
    let serial = agents_column(db, "cert_serial", "NULL")?;
    let expires = agents_column(db, "cert_not_after_us", "NULL")?;
    let revoked = if db
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'revoked_certs'")?
        .exists([])?
    {
        "cert_serial IN (SELECT serial FROM revoked_certs)"
    } else {
        "0"
    };
    let mut stmt = db.prepare(&format!(
        "SELECT tenant, agent_id, version, hw_profile, hostname, time_zone, connected, silent,
                first_seen_us, last_seen_us, clock_offset_ms, acked_seq, {duplicates}, {selftest},
                {serial}, {expires}, COALESCE({revoked}, 0), {selftest_result}
         FROM agents ORDER BY tenant, agent_id"
    ))?;
    stmt.query_map([], |r| {
        let connected: bool = r.get(6)?;
        let silent: bool = r.get(7)?;
        let cert_revoked: bool = r.get(16)?;
        Ok(AgentRow {
            tenant: r.get(0)?,
            agent_id: r.get(1)?,
            version: r.get(2)?,
            hw_profile: r.get(3)?,
            hostname: r.get(4)?,
            time_zone: r.get(5)?,
            state: if cert_revoked {
                "revoked"
            } else if silent {
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
            last_selftest: r.get::<_, Option<i64>>(13)?.map(rfc3339),
            cert_serial: r.get(14)?,
            cert_expires: r.get::<_, Option<i64>>(15)?.map(rfc3339),
            cert_revoked,
            last_selftest_result: r.get(17)?,
            events_stored: 0,
        })
    })?
    .collect::<rusqlite::Result<Vec<AgentRow>>>()
    .map(|mut rows| {
        for row in &mut rows {
            row.events_stored = store
                .reader(&row.tenant)
                .and_then(|r| r.agent_counts(&row.agent_id))
                .map_or(0, |(stored, _)| stored);
        }
        rows
    })
}

/// "pass" or "FAIL step, step" from a self-test record's message ("owlet
/// selftest: operation test (local checks: 7 passed, 1 failed
/// (watched_paths))"); `None` for other records.
pub fn self_test_result(event: &Event) -> Option<String> {
    let Some(Kind::Alert(a)) = &event.kind else {
        return None;
    };
    if a.name != "selftest_operation" {
        return None;
    }
    if a.message.contains("none failed") {
        return Some("pass".into());
    }
    let failed = a
        .message
        .split_once("failed (")
        .map(|(_, rest)| rest.trim_end_matches(')').to_string())
        .unwrap_or_else(|| "see the record".into());
    Some(format!("FAIL {failed}"))
}

/// One JSON object per event: agent identity plus the event in proto3 JSON.
pub fn json_line(stored: &StoredEvent) -> String {
    serde_json::json!({
        "id": stored.event_id(),
        "tenant": stored.tenant,
        "agent": stored.agent,
        "zone": stored.zone,
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
            stored.agent
        );
    };
    let time = event
        .time
        .as_ref()
        .map_or_else(String::new, |t| rfc3339(owlet_proto::timestamp_micros(t)));
    let seq = if is_self_test(event) {
        "selftest".to_string()
    } else if event.seq == 0 {
        "soc".to_string()
    } else {
        format!("#{}", event.seq)
    };
    format!(
        "{time} {}/{} {seq} {}: {}",
        stored.tenant,
        stored.agent,
        event.kind_name(),
        summary(event)
    )
}

/// A self-test record: an alert of `owlet selftest`, stored outside the
/// agent's sequence.
pub fn is_self_test(event: &Event) -> bool {
    event.seq == 0 && matches!(&event.kind, Some(Kind::Alert(a)) if a.source == "selftest")
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
        Some(Kind::FileChange(f)) => file_change_line(f),
        Some(Kind::HostMetrics(h)) => host_line(h),
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
    let mut line = format!(
        "{proto} {} -> {} on {}: {} pkts / {} B out, {} pkts / {} B back ({:?})",
        owlet_proto::endpoint(&f.src_addr, f.src_port, f.protocol),
        owlet_proto::endpoint(&f.dst_addr, f.dst_port, f.protocol),
        f.interface,
        f.packets_out,
        f.bytes_out,
        f.packets_in,
        f.bytes_in,
        f.end_reason()
    );
    // The application names the capture saw, as an analyst greps for them.
    if !f.dns_query.is_empty() {
        line.push_str(&format!("; dns {}", f.dns_query));
        if !f.dns_answers.is_empty() {
            line.push_str(&format!(" -> {}", f.dns_answers.join(", ")));
        }
    }
    if !f.tls_sni.is_empty() {
        line.push_str(&format!("; sni {}", f.tls_sni));
    }
    if !f.http_host.is_empty() {
        line.push_str(&format!(
            "; http {} {}{}",
            f.http_method, f.http_host, f.http_path
        ));
    }
    line
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

/// One file change on one line: what happened to which file, the hashes,
/// who did it, and how big the diff is.
pub fn file_change_line(f: &owlet_proto::v1::FileChange) -> String {
    use owlet_proto::v1::FileChangeKind;
    let what = match f.change() {
        FileChangeKind::Created => "created".to_string(),
        FileChangeKind::Modified => "modified".to_string(),
        FileChangeKind::Deleted => "deleted".to_string(),
        FileChangeKind::Renamed => format!("renamed from {}", f.old_path),
        FileChangeKind::Attributes => format!(
            "attributes {:o} {}:{} -> {:o} {}:{}",
            f.old_mode, f.old_uid, f.old_gid, f.new_mode, f.uid, f.gid
        ),
        FileChangeKind::Unspecified => "changed".to_string(),
    };
    let short = |h: &str| {
        if h.is_empty() {
            "-".to_string()
        } else {
            h.chars().take(12).collect()
        }
    };
    let mut line = format!(
        "{} {what}: sha256 {} -> {}, by {}",
        f.path,
        short(&f.old_sha256),
        short(&f.new_sha256),
        if f.changed_by.is_empty() {
            "unknown"
        } else {
            &f.changed_by
        }
    );
    if !f.tag.is_empty() {
        line.push_str(&format!(" [{}]", f.tag));
    }
    if !f.diff.is_empty() {
        line.push_str(&format!(", diff {} lines", f.diff.lines().count()));
    }
    if f.redacted_lines > 0 {
        line.push_str(&format!(" ({} redacted)", f.redacted_lines));
    }
    if !f.diff_skipped.is_empty() {
        line.push_str(&format!(", no diff: {}", f.diff_skipped));
    }
    if f.coalesced > 1 {
        line.push_str(&format!(", {} writes", f.coalesced));
    }
    if f.while_agent_stopped {
        line.push_str(", while the agent was stopped");
    }
    line
}

/// A host health sample on one line: CPU, memory, load, the busiest process.
pub fn host_line(h: &owlet_proto::v1::HostMetrics) -> String {
    let percent = |used: u64, total: u64| {
        if total == 0 {
            0.0
        } else {
            used as f64 * 100.0 / total as f64
        }
    };
    let mut line = format!(
        "cpu {:.0}%, memory {:.0}% of {} MiB, load {:.2}, {} processes",
        h.cpu_percent,
        percent(h.memory_used_bytes, h.memory_total_bytes),
        h.memory_total_bytes / (1024 * 1024),
        h.load1,
        h.process_count
    );
    if let Some(top) = h.top_processes.first() {
        line.push_str(&format!(
            "; top {} (pid {}) {:.0}%",
            top.name, top.pid, top.cpu_percent
        ));
    }
    if h.learning_percent < 100.0 {
        line.push_str(&format!("; learning {:.0}%", h.learning_percent));
    }
    line
}

pub fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use owlet_proto::v1::{FileChange, FileChangeKind, HostMetrics, ProcessUsage};

    use super::*;

    #[test]
    fn flow_lines_bracket_ipv6_endpoints_and_leave_icmp_portless() {
        let udp6 = owlet_proto::v1::FlowRecord {
            src_addr: "fe80::a8c1:abff:fe12:3101".into(),
            src_port: 546,
            dst_addr: "ff02::1:2".into(),
            dst_port: 547,
            protocol: 17,
            interface: "eth1".into(),
            ..Default::default()
        };
        let line = flow_line(&udp6);
        assert!(
            line.starts_with("udp [fe80::a8c1:abff:fe12:3101]:546 -> [ff02::1:2]:547 on eth1"),
            "{line}"
        );
        let icmp6 = owlet_proto::v1::FlowRecord {
            protocol: 58,
            src_port: 0,
            dst_port: 0,
            ..udp6
        };
        let line = flow_line(&icmp6);
        assert!(
            line.starts_with("icmp6 fe80::a8c1:abff:fe12:3101 -> ff02::1:2 on eth1"),
            "{line}"
        );
    }

    #[test]
    fn a_file_change_line_names_the_file_the_change_and_who() {
        let change = FileChange {
            path: "/etc/nftables.conf".into(),
            change: FileChangeKind::Renamed as i32,
            old_path: "/etc/.nftables.conf.swp".into(),
            old_sha256: "a".repeat(64),
            new_sha256: "b".repeat(64),
            diff: "--- a\n+++ b\n-x\n+y\n".into(),
            redacted_lines: 1,
            tag: "firewall-rules".into(),
            while_agent_stopped: true,
            ..Default::default()
        };
        let line = file_change_line(&change);
        assert_eq!(
            line,
            "/etc/nftables.conf renamed from /etc/.nftables.conf.swp: sha256 aaaaaaaaaaaa -> bbbbbbbbbbbb, \
             by unknown [firewall-rules], diff 4 lines (1 redacted), while the agent was stopped"
        );
    }

    #[test]
    fn a_host_line_names_the_busiest_process() {
        let sample = HostMetrics {
            cpu_percent: 97.4,
            memory_total_bytes: 4 << 30,
            memory_used_bytes: 1 << 30,
            load1: 2.5,
            process_count: 120,
            top_processes: vec![ProcessUsage {
                pid: 4242,
                name: "xmrig".into(),
                cpu_percent: 95.0,
                ..Default::default()
            }],
            learning_percent: 100.0,
            ..Default::default()
        };
        assert_eq!(
            host_line(&sample),
            "cpu 97%, memory 25% of 4096 MiB, load 2.50, 120 processes; top xmrig (pid 4242) 95%"
        );
    }
}
