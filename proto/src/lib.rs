//! The owlet.v1 wire protocol: prost message types, tonic client and server
//! stubs, and proto3-JSON (serde) impls, all generated from
//! `proto/owlet/v1/*.proto` at build time without a system `protoc`.
//!
//! The `.proto` files are the contract; this crate adds only small helpers
//! that both ends need (event kind names, timestamp conversion, size limits).
#![forbid(unsafe_code)]

/// Generated code for package `owlet.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/owlet.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/owlet.v1.serde.rs"));
}

pub use pbjson_types::Timestamp;

/// An alert severity as an operator writes it in a configuration file
/// (`severity = "critical"` on a watch rule or a host threshold): the wire
/// `v1::Severity` without its "not set" value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigSeverity {
    Info,
    #[default]
    Warning,
    Critical,
}

impl From<ConfigSeverity> for v1::Severity {
    fn from(s: ConfigSeverity) -> Self {
        match s {
            ConfigSeverity::Info => v1::Severity::Info,
            ConfigSeverity::Warning => v1::Severity::Warning,
            ConfigSeverity::Critical => v1::Severity::Critical,
        }
    }
}

use std::time::{SystemTime, UNIX_EPOCH};

/// Largest encoded gRPC message either end accepts, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Most events one batch may carry.
pub const MAX_BATCH_EVENTS: usize = 10_000;

/// Wire protocol version spoken by this crate (`Hello.protocol_version`).
pub const PROTOCOL_VERSION: u32 = 1;

/// Converts a wall-clock time to a protobuf timestamp (UTC).
pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// The current UTC wall clock as a protobuf timestamp.
pub fn now() -> Timestamp {
    timestamp(SystemTime::now())
}

/// Microseconds since the Unix epoch of a protobuf timestamp (saturating).
pub fn timestamp_micros(t: &Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(t.nanos / 1_000))
}

/// A flow endpoint as people read it: `ADDR:PORT` for IPv4, `[ADDR]:PORT`
/// for IPv6 (so the port is not read as the address's last group), the
/// address alone for protocols without ports (ICMP, ICMPv6...). `addr` is
/// an address as text, `protocol` the IP protocol number.
pub fn endpoint(addr: &str, port: u32, protocol: u32) -> String {
    // TCP, UDP, SCTP: the protocols whose flows carry ports.
    let has_ports = matches!(protocol, 6 | 17 | 132);
    match (has_ports, addr.contains(':')) {
        (false, _) => addr.to_string(),
        (true, true) => format!("[{addr}]:{port}"),
        (true, false) => format!("{addr}:{port}"),
    }
}

/// Every event kind's name ([`v1::event::Kind::name`]), in field order:
/// what filters and exports accept.
pub const KIND_NAMES: &[&str] = &[
    "check_result",
    "alert",
    "host_metrics",
    "flow_record",
    "file_change",
    "agent_status",
    "data_loss",
    "capture_stats",
];

/// A DNS RR type's mnemonic (`A`, `AAAA`, `HTTPS`…), `TYPEn` for others
/// (RFC 3597): one table for the sensor's flow text and the SOC's exports.
pub fn dns_type_name(rtype: u32) -> String {
    match rtype {
        1 => "A".into(),
        2 => "NS".into(),
        5 => "CNAME".into(),
        6 => "SOA".into(),
        12 => "PTR".into(),
        15 => "MX".into(),
        16 => "TXT".into(),
        28 => "AAAA".into(),
        33 => "SRV".into(),
        64 => "SVCB".into(),
        65 => "HTTPS".into(),
        255 => "ANY".into(),
        n => format!("TYPE{n}"),
    }
}

impl v1::event::Kind {
    /// Stable snake_case name of the kind, as used in `DataLoss.lost_by_kind`,
    /// the SOC's storage and `owlet-soc tail`.
    pub fn name(&self) -> &'static str {
        use v1::event::Kind;
        match self {
            Kind::CheckResult(_) => "check_result",
            Kind::Alert(_) => "alert",
            Kind::HostMetrics(_) => "host_metrics",
            Kind::FlowRecord(_) => "flow_record",
            Kind::FileChange(_) => "file_change",
            Kind::AgentStatus(_) => "agent_status",
            Kind::DataLoss(_) => "data_loss",
            Kind::CaptureStats(_) => "capture_stats",
        }
    }
}

impl v1::Event {
    /// Kind name of the event, or "unknown" when a newer peer sent a kind this
    /// build does not know.
    pub fn kind_name(&self) -> &'static str {
        self.kind.as_ref().map_or("unknown", |k| k.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn every_kind_name_is_listed_once() {
        use v1::event::Kind;
        let kinds = [
            Kind::CheckResult(Default::default()),
            Kind::Alert(Default::default()),
            Kind::HostMetrics(Default::default()),
            Kind::FlowRecord(Default::default()),
            Kind::FileChange(Default::default()),
            Kind::AgentStatus(Default::default()),
            Kind::DataLoss(Default::default()),
            Kind::CaptureStats(Default::default()),
        ];
        let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
        assert_eq!(names, KIND_NAMES);
    }

    #[test]
    fn endpoints_bracket_ipv6_and_leave_portless_protocols_bare() {
        assert_eq!(endpoint("10.0.0.1", 80, 6), "10.0.0.1:80");
        assert_eq!(endpoint("fe80::3101", 546, 17), "[fe80::3101]:546");
        assert_eq!(endpoint("fe80::3101", 0, 58), "fe80::3101");
        assert_eq!(endpoint("10.0.0.1", 0, 1), "10.0.0.1");
    }

    #[test]
    fn event_round_trips_and_renders_as_proto3_json() {
        let event = v1::Event {
            seq: 7,
            time: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            kind: Some(v1::event::Kind::DataLoss(v1::DataLoss {
                reason: v1::DataLossReason::SpoolFull as i32,
                events_lost: 3,
                ..Default::default()
            })),
        };
        let bytes = event.encode_to_vec();
        let back = v1::Event::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.kind_name(), "data_loss");
        let json = serde_json::to_value(&back).unwrap();
        assert_eq!(json["time"], "2023-11-14T22:13:20+00:00");
        assert_eq!(json["data_loss"]["reason"], "DATA_LOSS_REASON_SPOOL_FULL");
    }

    #[test]
    fn timestamps_are_utc_micros() {
        let t = Timestamp {
            seconds: 2,
            nanos: 500_000,
        };
        assert_eq!(timestamp_micros(&t), 2_000_500);
    }
}
