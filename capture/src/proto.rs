//! Conversion of flow records, summaries and alerts into `owlet.v1`
//! messages, so the agent only wraps them in events.

use owlet_proto::v1 as pb;

use crate::engine::{EndReason, FlowRecord};
use crate::summary::{CaptureAlert, MiningVia, Summary, Talker};

/// Capture time (ns since the epoch) as a protobuf timestamp (UTC).
pub fn timestamp(ns: u64) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: (ns / 1_000_000_000) as i64,
        nanos: (ns % 1_000_000_000) as i32,
    }
}

impl From<EndReason> for pb::FlowEndReason {
    fn from(r: EndReason) -> Self {
        match r {
            EndReason::IdleTimeout => pb::FlowEndReason::IdleTimeout,
            EndReason::ActiveTimeout => pb::FlowEndReason::ActiveTimeout,
            EndReason::TcpFin => pb::FlowEndReason::TcpFin,
            EndReason::TcpRst => pb::FlowEndReason::TcpRst,
            EndReason::Evicted => pb::FlowEndReason::CacheFull,
            EndReason::Shutdown => pb::FlowEndReason::Shutdown,
        }
    }
}

impl FlowRecord {
    /// The `FlowRecord` event payload for capture interface `interface`.
    pub fn to_proto(&self, interface: &str) -> pb::FlowRecord {
        let app = self.app.as_deref().cloned().unwrap_or_default();
        pb::FlowRecord {
            interface: interface.to_string(),
            src_addr: self.src.to_string(),
            dst_addr: self.dst.to_string(),
            src_port: self.src_port.into(),
            dst_port: self.dst_port.into(),
            protocol: self.protocol.into(),
            vlan: self.vlan.into(),
            packets_out: self.packets_out,
            bytes_out: self.bytes_out,
            packets_in: self.packets_in,
            bytes_in: self.bytes_in,
            first_seen: Some(timestamp(self.first_ns)),
            last_seen: Some(timestamp(self.last_ns)),
            tcp_flags: u32::from(self.tcp_flags_out | self.tcp_flags_in),
            end_reason: pb::FlowEndReason::from(self.end_reason).into(),
            ip_bytes_out: self.ip_bytes_out,
            ip_bytes_in: self.ip_bytes_in,
            tcp_flags_out: self.tcp_flags_out.into(),
            tcp_flags_in: self.tcp_flags_in.into(),
            icmp_type: self.icmp.map(|(t, _)| t.into()),
            icmp_code: self.icmp.map(|(_, c)| c.into()),
            initiator_by_syn: self.initiator_by_syn,
            dns_query: app.dns_query.unwrap_or_default(),
            dns_qtype: app.dns_qtype.unwrap_or_default().into(),
            dns_rcode: app.dns_rcode.map(u32::from),
            dns_answers: app.dns_answers,
            tls_sni: app.tls_sni.unwrap_or_default(),
            tls_alpn: app.tls_alpn,
            http_method: app.http_method.unwrap_or_default(),
            http_host: app.http_host.unwrap_or_default(),
            http_path: app.http_path.unwrap_or_default(),
            stratum_methods: app.stratum_methods.iter().map(|m| m.to_string()).collect(),
        }
    }
}

fn talkers(v: &[Talker]) -> Vec<pb::Talker> {
    v.iter()
        .map(|t| pb::Talker {
            addr: t.key.clone(),
            bytes: t.bytes,
            packets: t.packets,
        })
        .collect()
}

fn entries(v: &[Talker]) -> Vec<pb::TopEntry> {
    v.iter()
        .map(|t| pb::TopEntry {
            key: t.key.clone(),
            bytes: t.bytes,
            packets: t.packets,
        })
        .collect()
}

impl Summary {
    /// The `CaptureStats` event payload. `kernel_drops` is the live
    /// source's (PACKET_STATISTICS); 0 for a file.
    pub fn to_proto(&self, kernel_drops: u64) -> pb::CaptureStats {
        pb::CaptureStats {
            interface: self.interface.clone(),
            interval_seconds: self.end_ns.saturating_sub(self.start_ns) as f64 / 1e9,
            packets: self.packets,
            bytes: self.bytes,
            kernel_drops,
            decode_errors: self.decode_errors.iter().cloned().collect(),
            active_flows: self.active_flows,
            flows_evicted: self.flows_evicted,
            top_talkers: talkers(&self.top_sources_by_bytes),
            top_sources_by_packets: talkers(&self.top_sources_by_packets),
            top_destinations_by_bytes: talkers(&self.top_destinations_by_bytes),
            top_destinations_by_packets: talkers(&self.top_destinations_by_packets),
            top_ports_by_bytes: entries(&self.top_ports_by_bytes),
            top_ports_by_packets: entries(&self.top_ports_by_packets),
            top_conversations_by_bytes: entries(&self.top_conversations_by_bytes),
            top_conversations_by_packets: entries(&self.top_conversations_by_packets),
            protocol_mix: entries(&self.protocol_mix),
            new_flows: self.new_flows,
            new_flows_per_second: self.new_flows_per_second,
            top_dns_names: self
                .top_dns_names
                .iter()
                .map(|n| pb::NameCount {
                    name: n.name.clone(),
                    count: n.count,
                })
                .collect(),
            scan_sources: self.scan_sources,
            scanners: self
                .scanners
                .iter()
                .map(|s| pb::ScanOffender {
                    source: s.source.to_string(),
                    destinations: s.destinations,
                    ports: s.ports,
                    attempts: s.attempts,
                    completed: s.completed,
                })
                .collect(),
            mining_matches: self.mining_matches,
            mining: self
                .mining
                .iter()
                .map(|m| pb::MiningMatch {
                    client: m.client.to_string(),
                    server: m.server.to_string(),
                    port: m.port.into(),
                    via: match m.via {
                        MiningVia::Dns => pb::MiningVia::Dns,
                        MiningVia::Sni => pb::MiningVia::Sni,
                        MiningVia::Address => pb::MiningVia::Address,
                        MiningVia::Stratum => pb::MiningVia::Stratum,
                        MiningVia::HttpHost => pb::MiningVia::HttpHost,
                        MiningVia::DnsAnswer => pb::MiningVia::DnsAnswer,
                    }
                    .into(),
                    what: m.what.clone(),
                })
                .collect(),
            fragments: self.fragments,
            fragments_unattributed: self.fragments_unattributed,
            gre_packets: self.gre_packets,
            vxlan_packets: self.vxlan_packets,
            interval_start: Some(timestamp(self.start_ns)),
        }
    }
}

impl CaptureAlert {
    /// The `Alert` event payload (source "capture"). A scan is a warning;
    /// crypto-mining is critical (a compromised or misused host); a capture
    /// link lost is a warning (state DOWN), and back, information (UP).
    pub fn to_proto(&self) -> pb::Alert {
        let (severity, state) = match self.name {
            "crypto_mining" => (pb::Severity::Critical, pb::State::Unspecified),
            "capture_link_down" => (pb::Severity::Warning, pb::State::Down),
            "capture_link_up" => (pb::Severity::Info, pb::State::Up),
            _ => (pb::Severity::Warning, pb::State::Unspecified),
        };
        pb::Alert {
            source: "capture".into(),
            subject: self.subject.clone(),
            name: self.name.into(),
            severity: severity.into(),
            new_state: state.into(),
            message: self.message.clone(),
            labels: self.labels.iter().cloned().collect(),
            ..pb::Alert::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::AppMeta;

    #[test]
    fn link_alerts_say_down_and_up() {
        let alert = |name| CaptureAlert {
            name,
            subject: "eth1".into(),
            message: String::new(),
            labels: vec![],
        };
        let down = alert("capture_link_down").to_proto();
        assert_eq!(
            (down.severity(), down.new_state(), down.source.as_str()),
            (pb::Severity::Warning, pb::State::Down, "capture")
        );
        let up = alert("capture_link_up").to_proto();
        assert_eq!(
            (up.severity(), up.new_state()),
            (pb::Severity::Info, pb::State::Up)
        );
    }

    #[test]
    fn flow_record_round_trips_its_fields() {
        let r = FlowRecord {
            src: "10.0.0.1".parse().unwrap(),
            dst: "2001:db8::1".parse().unwrap(),
            src_port: 1,
            dst_port: 2,
            protocol: 6,
            vlan: 7,
            packets_out: 3,
            bytes_out: 300,
            ip_bytes_out: 258,
            packets_in: 4,
            bytes_in: 400,
            ip_bytes_in: 344,
            tcp_flags_out: 0x02,
            tcp_flags_in: 0x12,
            icmp: None,
            initiator_by_syn: true,
            first_ns: 1_500_000_000,
            last_ns: 2_000_000_001,
            end_reason: EndReason::Evicted,
            app: Some(Box::new(AppMeta {
                tls_sni: Some("x.example".into()),
                dns_rcode: Some(0),
                ..AppMeta::default()
            })),
        };
        let p = r.to_proto("eth1");
        assert_eq!(p.interface, "eth1");
        assert_eq!(p.dst_addr, "2001:db8::1");
        assert_eq!(p.tcp_flags, 0x12);
        assert_eq!(p.end_reason, pb::FlowEndReason::CacheFull as i32);
        assert_eq!(p.first_seen.unwrap().nanos, 500_000_000);
        assert_eq!(p.last_seen.unwrap().seconds, 2);
        assert_eq!(p.tls_sni, "x.example");
        assert_eq!(p.dns_rcode, Some(0));
        assert_eq!(p.icmp_type, None);
    }
}
