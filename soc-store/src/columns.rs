//! The typed columns of an event: what an analyst filters and groups on,
//! decoded once at ingest. The original protobuf is stored beside them,
//! unaltered; these columns are a derived index of it and never replace it.
//!
//! Every column is documented in `soc-store/SCHEMA.md`; a column added here
//! must be added there and to a migration in `crate::schema`.

use rusqlite::ToSql;
pub use rusqlite::types::Value;

use owlet_proto::v1::{
    AgentStatus, Alert, CaptureStats, CheckResult, DataLoss, Event, FileChange, FlowRecord,
    HostMetrics, event::Kind,
};

/// The typed columns of one event (`None` is SQL NULL: not applicable to
/// this kind).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Columns {
    pub kind: &'static str,
    pub time_us: i64,
    pub severity: Option<&'static str>,
    pub check_id: Option<String>,
    pub check_type: Option<&'static str>,
    /// The check's debounced state (`up`, `down`, `degraded`, `unknown`),
    /// or an alert's new state.
    pub state: Option<&'static str>,
    /// One probe's raw result (check results only).
    pub result: Option<&'static str>,
    pub failure: Option<&'static str>,
    pub latency_us: Option<i64>,
    pub target: Option<String>,
    pub src_addr: Option<String>,
    pub src_port: Option<i64>,
    pub dst_addr: Option<String>,
    pub dst_port: Option<i64>,
    pub protocol: Option<i64>,
    pub bytes: Option<i64>,
    pub packets: Option<i64>,
    pub dns_name: Option<String>,
    pub tls_sni: Option<String>,
    pub http_host: Option<String>,
    pub file_path: Option<String>,
    pub file_action: Option<&'static str>,
    pub old_sha256: Option<String>,
    pub new_sha256: Option<String>,
    pub changed_by: Option<String>,
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    pub disk_percent: Option<f64>,
    pub load1: Option<f64>,
    pub alert_name: Option<String>,
    pub alert_subject: Option<String>,
    pub alert_source: Option<String>,
    pub message: Option<String>,
}

/// The column names in table order (after `id, agent, seq, received_us,
/// zone`), as used by the insert statement and `SCHEMA.md`.
pub const NAMES: &[&str] = &[
    "kind",
    "time_us",
    "severity",
    "check_id",
    "check_type",
    "state",
    "result",
    "failure",
    "latency_us",
    "target",
    "src_addr",
    "src_port",
    "dst_addr",
    "dst_port",
    "protocol",
    "bytes",
    "packets",
    "dns_name",
    "tls_sni",
    "http_host",
    "file_path",
    "file_action",
    "old_sha256",
    "new_sha256",
    "changed_by",
    "cpu_percent",
    "memory_percent",
    "disk_percent",
    "load1",
    "alert_name",
    "alert_subject",
    "alert_source",
    "message",
];

impl Columns {
    /// Decodes the columns of `event`. Never fails: what an event lacks
    /// stays NULL (an event of a kind this build does not know is stored
    /// with kind `unknown` and its time).
    pub fn of(event: &Event) -> Self {
        let mut c = Columns {
            kind: event.kind_name(),
            time_us: event.time.as_ref().map_or(0, owlet_proto::timestamp_micros),
            ..Default::default()
        };
        match &event.kind {
            Some(Kind::CheckResult(r)) => c.check(r),
            Some(Kind::Alert(a)) => c.alert(a),
            Some(Kind::HostMetrics(h)) => c.host(h),
            Some(Kind::FlowRecord(f)) => c.flow(f),
            Some(Kind::FileChange(f)) => c.file(f),
            Some(Kind::AgentStatus(s)) => c.status(s),
            Some(Kind::DataLoss(d)) => c.loss(d),
            Some(Kind::CaptureStats(s)) => c.capture(s),
            None => {}
        }
        c
    }

    /// The columns in [`NAMES`] order, borrowed for binding (no copies);
    /// `None` is SQL NULL, so a writer can bind only the columns an event
    /// has (a check result fills 11 of 33).
    pub fn cells(&self) -> [Option<&dyn ToSql>; 33] {
        [
            Some(&self.kind),
            Some(&self.time_us),
            self.severity.as_ref().map(|v| v as &dyn ToSql),
            self.check_id.as_ref().map(|v| v as &dyn ToSql),
            self.check_type.as_ref().map(|v| v as &dyn ToSql),
            self.state.as_ref().map(|v| v as &dyn ToSql),
            self.result.as_ref().map(|v| v as &dyn ToSql),
            self.failure.as_ref().map(|v| v as &dyn ToSql),
            self.latency_us.as_ref().map(|v| v as &dyn ToSql),
            self.target.as_ref().map(|v| v as &dyn ToSql),
            self.src_addr.as_ref().map(|v| v as &dyn ToSql),
            self.src_port.as_ref().map(|v| v as &dyn ToSql),
            self.dst_addr.as_ref().map(|v| v as &dyn ToSql),
            self.dst_port.as_ref().map(|v| v as &dyn ToSql),
            self.protocol.as_ref().map(|v| v as &dyn ToSql),
            self.bytes.as_ref().map(|v| v as &dyn ToSql),
            self.packets.as_ref().map(|v| v as &dyn ToSql),
            self.dns_name.as_ref().map(|v| v as &dyn ToSql),
            self.tls_sni.as_ref().map(|v| v as &dyn ToSql),
            self.http_host.as_ref().map(|v| v as &dyn ToSql),
            self.file_path.as_ref().map(|v| v as &dyn ToSql),
            self.file_action.as_ref().map(|v| v as &dyn ToSql),
            self.old_sha256.as_ref().map(|v| v as &dyn ToSql),
            self.new_sha256.as_ref().map(|v| v as &dyn ToSql),
            self.changed_by.as_ref().map(|v| v as &dyn ToSql),
            self.cpu_percent.as_ref().map(|v| v as &dyn ToSql),
            self.memory_percent.as_ref().map(|v| v as &dyn ToSql),
            self.disk_percent.as_ref().map(|v| v as &dyn ToSql),
            self.load1.as_ref().map(|v| v as &dyn ToSql),
            self.alert_name.as_ref().map(|v| v as &dyn ToSql),
            self.alert_subject.as_ref().map(|v| v as &dyn ToSql),
            self.alert_source.as_ref().map(|v| v as &dyn ToSql),
            self.message.as_ref().map(|v| v as &dyn ToSql),
        ]
    }

    pub fn values(&self) -> Vec<Value> {
        self.cells()
            .iter()
            .map(|v| match v.map(ToSql::to_sql) {
                Some(Ok(rusqlite::types::ToSqlOutput::Borrowed(r))) => Value::from(r),
                Some(Ok(rusqlite::types::ToSqlOutput::Owned(v))) => v,
                _ => Value::Null,
            })
            .collect()
    }

    fn check(&mut self, r: &CheckResult) {
        self.check_id = Some(r.check_id.clone());
        self.check_type = Some(check_type(r.check_type));
        self.state = Some(state(r.state));
        self.result = Some(state(r.result));
        self.failure = failure(r.failure);
        self.latency_us = Some(r.duration_us as i64);
        self.target = non_empty(&r.target);
        self.dst_addr = non_empty(&r.resolved_address);
        self.message = non_empty(&r.message);
    }

    fn alert(&mut self, a: &Alert) {
        self.severity = Some(severity(a.severity));
        self.state = Some(state(a.new_state));
        self.failure = failure(a.failure);
        self.alert_name = Some(a.name.clone());
        self.alert_subject = non_empty(&a.subject);
        self.alert_source = non_empty(&a.source);
        self.message = non_empty(&a.message);
        if let Some(r) = &a.last_result {
            self.check_id = non_empty(&r.check_id);
            self.check_type = Some(check_type(r.check_type));
            self.target = non_empty(&r.target);
        }
    }

    fn host(&mut self, h: &HostMetrics) {
        self.cpu_percent = Some(h.cpu_percent);
        if h.memory_total_bytes > 0 {
            self.memory_percent =
                Some(h.memory_used_bytes as f64 * 100.0 / h.memory_total_bytes as f64);
        }
        self.disk_percent = h
            .disks
            .iter()
            .filter(|d| d.total_bytes > 0)
            .map(|d| {
                (d.total_bytes - d.available_bytes.min(d.total_bytes)) as f64 * 100.0
                    / d.total_bytes as f64
            })
            .reduce(f64::max);
        self.load1 = Some(h.load1);
    }

    fn flow(&mut self, f: &FlowRecord) {
        self.src_addr = Some(f.src_addr.clone());
        self.dst_addr = Some(f.dst_addr.clone());
        self.src_port = Some(f.src_port.into());
        self.dst_port = Some(f.dst_port.into());
        self.protocol = Some(f.protocol.into());
        self.bytes = Some(f.bytes_out.saturating_add(f.bytes_in) as i64);
        self.packets = Some(f.packets_out.saturating_add(f.packets_in) as i64);
        self.dns_name = non_empty(&f.dns_query);
        self.tls_sni = non_empty(&f.tls_sni);
        self.http_host = non_empty(&f.http_host);
        self.target = non_empty(&f.interface);
    }

    fn file(&mut self, f: &FileChange) {
        self.severity = Some(severity(f.severity));
        self.file_path = Some(f.path.clone());
        self.file_action = Some(match f.change() {
            owlet_proto::v1::FileChangeKind::Created => "created",
            owlet_proto::v1::FileChangeKind::Modified => "modified",
            owlet_proto::v1::FileChangeKind::Deleted => "deleted",
            owlet_proto::v1::FileChangeKind::Renamed => "renamed",
            owlet_proto::v1::FileChangeKind::Attributes => "attributes",
            owlet_proto::v1::FileChangeKind::Unspecified => "unspecified",
        });
        self.old_sha256 = non_empty(&f.old_sha256);
        self.new_sha256 = non_empty(&f.new_sha256);
        self.changed_by = non_empty(&f.changed_by);
    }

    fn status(&mut self, s: &AgentStatus) {
        self.state = Some(if s.stopping { "stopping" } else { "running" });
    }

    fn loss(&mut self, d: &DataLoss) {
        self.severity = Some("warning");
        self.packets = None;
        self.message = Some(format!(
            "{} events lost ({})",
            d.events_lost,
            d.reason().as_str_name()
        ));
    }

    fn capture(&mut self, s: &CaptureStats) {
        self.target = non_empty(&s.interface);
        self.bytes = Some(s.bytes as i64);
        self.packets = Some(s.packets as i64);
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// `up`, `down`, `degraded`, `unknown` or `unspecified`.
pub fn state(v: i32) -> &'static str {
    use owlet_proto::v1::State;
    match State::try_from(v).unwrap_or(State::Unspecified) {
        State::Up => "up",
        State::Down => "down",
        State::Degraded => "degraded",
        State::Unknown => "unknown",
        State::Unspecified => "unspecified",
    }
}

/// `info`, `warning`, `critical` or `unspecified`.
pub fn severity(v: i32) -> &'static str {
    use owlet_proto::v1::Severity;
    match Severity::try_from(v).unwrap_or(Severity::Unspecified) {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
        Severity::Unspecified => "unspecified",
    }
}

fn check_type(v: i32) -> &'static str {
    use owlet_proto::v1::CheckType;
    match CheckType::try_from(v).unwrap_or(CheckType::Unspecified) {
        CheckType::Icmp => "icmp",
        CheckType::Tcp => "tcp",
        CheckType::Http => "http",
        CheckType::Snmp => "snmp",
        CheckType::Unspecified => "unspecified",
    }
}

fn failure(v: i32) -> Option<&'static str> {
    use owlet_proto::v1::FailureClass as F;
    Some(match F::try_from(v).unwrap_or(F::Unspecified) {
        F::Unspecified => return None,
        F::Timeout => "timeout",
        F::Refused => "refused",
        F::Unreachable => "unreachable",
        F::Dns => "dns",
        F::Tls => "tls",
        F::HttpStatus => "http_status",
        F::ContentMismatch => "content_mismatch",
        F::SnmpError => "snmp_error",
        F::SnmpAuth => "snmp_auth",
        F::Protocol => "protocol",
        F::PacketLoss => "packet_loss",
        F::CertExpiry => "cert_expiry",
        F::Local => "local",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use owlet_proto::v1::{DiskUsage, FlowRecord, Severity, State};

    #[test]
    fn a_flow_fills_endpoints_counts_and_names() {
        let e = Event {
            seq: 1,
            time: Some(owlet_proto::now()),
            kind: Some(Kind::FlowRecord(FlowRecord {
                src_addr: "10.0.0.5".into(),
                dst_addr: "192.0.2.1".into(),
                src_port: 40000,
                dst_port: 443,
                protocol: 6,
                bytes_out: 100,
                bytes_in: 900,
                packets_out: 2,
                packets_in: 3,
                tls_sni: "example.org".into(),
                ..Default::default()
            })),
        };
        let c = Columns::of(&e);
        assert_eq!(c.kind, "flow_record");
        assert_eq!(c.bytes, Some(1000));
        assert_eq!(c.packets, Some(5));
        assert_eq!(c.dst_port, Some(443));
        assert_eq!(c.tls_sni.as_deref(), Some("example.org"));
        assert_eq!(c.dns_name, None);
        assert_eq!(c.values().len(), NAMES.len());
    }

    #[test]
    fn an_alert_and_host_metrics_fill_their_columns() {
        let alert = Event {
            seq: 2,
            time: None,
            kind: Some(Kind::Alert(Alert {
                name: "check_down".into(),
                subject: "web".into(),
                severity: Severity::Critical as i32,
                new_state: State::Down as i32,
                ..Default::default()
            })),
        };
        let c = Columns::of(&alert);
        assert_eq!(
            (c.severity, c.state, c.alert_name.as_deref()),
            (Some("critical"), Some("down"), Some("check_down"))
        );
        let host = Event {
            seq: 3,
            time: None,
            kind: Some(Kind::HostMetrics(HostMetrics {
                cpu_percent: 12.5,
                memory_total_bytes: 200,
                memory_used_bytes: 50,
                disks: vec![
                    DiskUsage {
                        total_bytes: 100,
                        available_bytes: 10,
                        ..Default::default()
                    },
                    DiskUsage {
                        total_bytes: 100,
                        available_bytes: 60,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            })),
        };
        let c = Columns::of(&host);
        assert_eq!(c.memory_percent, Some(25.0));
        assert_eq!(c.disk_percent, Some(90.0));
    }
}
