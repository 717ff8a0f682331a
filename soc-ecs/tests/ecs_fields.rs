//! Every key of every document is a field of the pinned ECS version (or
//! under `owlet.*`), with that field's type, and the categorisation fields
//! take ECS's allowed values.
//!
//! Seen failing: with `tls.client.server_name` renamed to `tls.sni` in
//! `flow()`, `every_key_is_an_ecs_field_or_owlet` failed naming
//! "tls.sni (flow_record)"; with a flow's `event.type` set to "network",
//! `categorisation_takes_allowed_values` failed.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, UNIX_EPOCH};

use owlet_proto::v1::{
    AgentStatus, Alert, CaptureStats, CheckResult, CheckType, DataLoss, DataLossReason, DiskIo,
    DiskUsage, Event, FileChange, FileChangeKind, FlowEndReason, FlowRecord, HostMetrics,
    HttpDetail, IcmpDetail, MiningMatch, NameCount, NetworkCounters, ProcessUsage, ScanOffender,
    Severity, SnmpDetail, SnmpVarBind, State, Talker, TcpDetail, TopEntry, check_result::Detail,
    event::Kind,
};
use owlet_soc_ecs::{CUSTOM_PREFIX, ECS_VERSION, document};
use owlet_soc_store::StoredEvent;
use serde_json::Value;

const FIELDS: &str = include_str!("../ecs/fields-8.17.0.csv");
const ALLOWED: &str = include_str!("../ecs/allowed-values-8.17.0.txt");

/// ECS field name → ECS type, from the pinned CSV.
fn ecs_fields() -> HashMap<String, String> {
    let mut fields = HashMap::new();
    for line in FIELDS.lines().skip(1) {
        // ECS_Version,Indexed,Field_Set,Field,Type,...: the first five
        // columns are never quoted.
        let cols: Vec<&str> = line.splitn(6, ',').collect();
        assert_eq!(cols[0], ECS_VERSION, "{line}");
        fields.insert(cols[3].to_string(), cols[4].to_string());
    }
    assert!(fields.len() > 1500, "field list looks truncated");
    fields
}

fn ts(secs: u64) -> owlet_proto::Timestamp {
    owlet_proto::timestamp(UNIX_EPOCH + Duration::from_secs(secs))
}

const T: u64 = 1_793_534_400;

fn stored(id: i64, seq: Option<u64>, kind: Kind) -> StoredEvent {
    let event = Event {
        seq: seq.unwrap_or(0),
        time: Some(ts(T)),
        kind: Some(kind),
    };
    StoredEvent {
        id,
        tenant: "acme".into(),
        agent: "sensor-1".into(),
        seq,
        kind: event.kind_name().into(),
        time_us: (T * 1_000_000) as i64,
        received_us: (T * 1_000_000 + 1_500) as i64,
        zone: "Asia/Tokyo".into(),
        event: Some(event),
    }
}

fn checks() -> Vec<CheckResult> {
    let base = CheckResult {
        check_id: "web".into(),
        target: "https://intranet.example/health".into(),
        result: State::Down as i32,
        state: State::Down as i32,
        failure: 6,
        message: "HTTP 503".into(),
        duration_us: 12_345,
        resolved_address: "192.0.2.10".into(),
        ..Default::default()
    };
    vec![
        CheckResult {
            check_type: CheckType::Http as i32,
            detail: Some(Detail::Http(HttpDetail {
                status_code: 503,
                http_version: "HTTP/1.1".into(),
                dns_us: 10,
                connect_us: 20,
                tls_us: 30,
                first_byte_us: 40,
                total_us: 50,
                body_bytes: 60,
                redirects: 1,
                final_url: "https://intranet.example/health/".into(),
                cert_days_left: Some(-3),
                tls_verify_skipped: true,
            })),
            ..base.clone()
        },
        CheckResult {
            check_type: CheckType::Tcp as i32,
            target: "[2001:db8::5]:22".into(),
            resolved_address: "2001:db8::5".into(),
            result: State::Up as i32,
            failure: 0,
            detail: Some(Detail::Tcp(TcpDetail {
                connect_us: 100,
                tls_handshake_us: 200,
                cert_days_left: Some(40),
                banner: "SSH-2.0-OpenSSH_9.2".into(),
            })),
            ..base.clone()
        },
        CheckResult {
            check_type: CheckType::Icmp as i32,
            target: "router".into(),
            result: State::Degraded as i32,
            detail: Some(Detail::Icmp(IcmpDetail {
                sent: 5,
                received: 4,
                loss_percent: 20.0,
                rtt_min_us: 1,
                rtt_avg_us: 2,
                rtt_max_us: 3,
                jitter_us: 1,
            })),
            ..base.clone()
        },
        CheckResult {
            check_type: CheckType::Snmp as i32,
            target: "switch:161".into(),
            result: State::Unknown as i32,
            detail: Some(Detail::Snmp(SnmpDetail {
                version: "v3".into(),
                preset: "interfaces".into(),
                varbinds: vec![SnmpVarBind {
                    oid: "1.3.6.1.2.1.1.3.0".into(),
                    value: "12345".into(),
                    value_type: "TimeTicks".into(),
                }],
                metrics: [("if.2.in_bps".to_string(), 1234.5)].into(),
                reboot_detected: true,
            })),
            ..base.clone()
        },
        CheckResult {
            resolved_address: "not-an-address".into(),
            ..base
        },
    ]
}

/// One event of every kind, each filled as fully as the agent fills it,
/// and the variants that take other branches of the mapping.
fn samples() -> Vec<StoredEvent> {
    let mut kinds: Vec<Kind> = Vec::new();
    kinds.extend(checks().into_iter().map(Kind::CheckResult));
    for source in [
        "check", "host", "fim", "capture", "agent", "soc", "selftest", "",
    ] {
        kinds.push(Kind::Alert(Alert {
            source: source.into(),
            subject: if source == "fim" {
                "/etc/nftables.conf".into()
            } else {
                "web".into()
            },
            name: "check_down".into(),
            severity: Severity::Critical as i32,
            old_state: State::Up as i32,
            new_state: State::Down as i32,
            failure: 1,
            message: if source.is_empty() {
                String::new()
            } else {
                "web is down".into()
            },
            labels: [
                ("threshold".to_string(), "90".to_string()),
                ("cpu.observed".to_string(), "97".to_string()),
            ]
            .into(),
            last_result: (source == "check").then(|| checks().remove(0)),
        }));
    }
    kinds.push(Kind::HostMetrics(HostMetrics {
        cpu_percent: 12.5,
        cpu_core_percent: vec![10.0, 15.0],
        load1: 0.5,
        load5: 0.4,
        load15: 0.3,
        memory_total_bytes: 200,
        memory_used_bytes: 50,
        memory_available_bytes: 150,
        swap_total_bytes: 100,
        swap_used_bytes: 1,
        uptime_seconds: 3600,
        process_count: 120,
        disks: vec![DiskUsage {
            mount_point: "/".into(),
            device: "/dev/sda1".into(),
            file_system: "ext4".into(),
            total_bytes: 100,
            available_bytes: 10,
        }],
        networks: vec![NetworkCounters {
            interface: "eth0".into(),
            rx_bytes_per_second: 100.0,
            tx_bytes_per_second: 50.0,
            rx_packets_per_second: 2.0,
            tx_packets_per_second: 1.0,
            ..Default::default()
        }],
        top_processes: vec![ProcessUsage {
            pid: 42,
            name: "xmrig".into(),
            exe: "/tmp/xmrig".into(),
            user: "nobody".into(),
            cpu_percent: 99.0,
            memory_bytes: 1 << 20,
            ..Default::default()
        }],
        top_processes_by_memory: vec![ProcessUsage::default()],
        interval_seconds: 10.0,
        boot_time: Some(ts(T - 3600)),
        disk_io: vec![DiskIo {
            device: "sda".into(),
            read_bytes_per_second: 10.0,
            write_bytes_per_second: 20.0,
            ..Default::default()
        }],
        agent_cpu_percent: 0.5,
        agent_rss_bytes: 30 << 20,
        learning_percent: 50.0,
    }));
    let flow = FlowRecord {
        interface: "eth1".into(),
        src_addr: "10.0.0.5".into(),
        dst_addr: "192.0.2.1".into(),
        src_port: 40000,
        dst_port: 443,
        protocol: 6,
        vlan: 12,
        packets_out: 2,
        bytes_out: 100,
        packets_in: 3,
        bytes_in: 900,
        first_seen: Some(ts(T - 5)),
        last_seen: Some(ts(T - 1)),
        tcp_flags: 0x1b,
        end_reason: FlowEndReason::TcpFin as i32,
        ip_bytes_out: 80,
        ip_bytes_in: 860,
        tcp_flags_out: 0x1b,
        tcp_flags_in: 0x1b,
        initiator_by_syn: true,
        tls_sni: "example.org".into(),
        tls_alpn: vec!["h2".into(), "http/1.1".into()],
        http_method: "GET".into(),
        http_host: "example.org".into(),
        http_path: "/index.html".into(),
        stratum_methods: vec!["mining.subscribe".into()],
        ..Default::default()
    };
    kinds.push(Kind::FlowRecord(flow.clone()));
    kinds.push(Kind::FlowRecord(FlowRecord {
        src_addr: "2001:db8::1".into(),
        dst_addr: "2001:db8::53".into(),
        protocol: 17,
        dst_port: 53,
        end_reason: FlowEndReason::ActiveTimeout as i32,
        dns_query: "pool.example".into(),
        dns_qtype: 28,
        dns_rcode: Some(3),
        dns_answers: vec!["AAAA 2001:db8::9".into(), "odd".into()],
        tls_sni: String::new(),
        ..flow.clone()
    }));
    kinds.push(Kind::FlowRecord(FlowRecord {
        protocol: 1,
        icmp_type: Some(8),
        icmp_code: Some(0),
        src_addr: "garbage".into(),
        ..Default::default()
    }));
    for change in [
        FileChangeKind::Created,
        FileChangeKind::Modified,
        FileChangeKind::Deleted,
        FileChangeKind::Renamed,
        FileChangeKind::Attributes,
        FileChangeKind::Unspecified,
    ] {
        kinds.push(Kind::FileChange(FileChange {
            path: "/etc/nftables.conf".into(),
            change: change as i32,
            old_path: "/etc/nftables.conf.old".into(),
            old_sha256: "a".repeat(64),
            new_sha256: "b".repeat(64),
            old_size: 10,
            new_size: 20,
            old_mode: 0o100644,
            new_mode: 0o100600,
            uid: 0,
            gid: 0,
            owner: "root".into(),
            mtime: Some(ts(T - 60)),
            diff: "-a\n+b\n".into(),
            diff_truncated: true,
            changed_by: "uid=0(root) pid=4242 comm=vim".into(),
            tag: "firewall-rules".into(),
            severity: Severity::Warning as i32,
            inode: 1234,
            old_uid: 1,
            old_gid: 1,
            while_agent_stopped: true,
            coalesced: 3,
            redacted_lines: 1,
            hash_skipped: String::new(),
            file_type: ["file", "directory", "symlink"][change as usize % 3].into(),
            symlink_target: "/etc/x".into(),
            old_symlink_target: "/etc/y".into(),
            diff_skipped: "secret_file".into(),
        }));
    }
    kinds.push(Kind::AgentStatus(AgentStatus {
        agent_version: "0.1.0".into(),
        uptime_seconds: 60,
        spool_events: 5,
        spool_bytes: 500,
        spool_oldest_age_seconds: 2,
        connection: 2,
        last_ack_time: Some(ts(T - 1)),
        events_accepted: 100,
        events_dropped: 1,
        errors: [("uplink_connect".to_string(), 2)].into(),
        time_zone: "Asia/Tokyo".into(),
        utc_offset_seconds: 32_400,
        hw_profile: "small".into(),
        interval_seconds: 30,
        rss_bytes: 1 << 25,
        reconnects: 1,
        stopping: true,
    }));
    kinds.push(Kind::DataLoss(DataLoss {
        reason: DataLossReason::SpoolFull as i32,
        events_lost: 10,
        batches_lost: 1,
        first_seq: 5,
        last_seq: 14,
        lost_by_kind: [("flow_record".to_string(), 10)].into(),
        oldest: Some(ts(T - 100)),
        newest: Some(ts(T - 50)),
    }));
    kinds.push(Kind::CaptureStats(CaptureStats {
        interface: "eth1".into(),
        interval_seconds: 60.0,
        packets: 1000,
        bytes: 100_000,
        kernel_drops: 1,
        decode_errors: [("truncated".to_string(), 2)].into(),
        active_flows: 5,
        flows_evicted: 1,
        top_talkers: vec![Talker {
            addr: "10.0.0.5".into(),
            bytes: 1,
            packets: 1,
        }],
        top_destinations_by_bytes: vec![Talker::default()],
        top_ports_by_bytes: vec![TopEntry {
            key: "443/tcp".into(),
            bytes: 1,
            packets: 1,
        }],
        protocol_mix: vec![TopEntry::default()],
        new_flows: 10,
        new_flows_per_second: 0.16,
        top_dns_names: vec![NameCount {
            name: "example.org".into(),
            count: 3,
        }],
        scan_sources: 1,
        scanners: vec![ScanOffender::default()],
        mining_matches: 1,
        mining: vec![MiningMatch {
            via: 2,
            ..Default::default()
        }],
        fragments: 1,
        fragments_unattributed: 1,
        gre_packets: 1,
        vxlan_packets: 1,
        interval_start: Some(ts(T - 60)),
        ..Default::default()
    }));
    let mut out: Vec<StoredEvent> = kinds
        .into_iter()
        .enumerate()
        .map(|(i, k)| stored(i as i64 + 1, Some(i as u64 + 1), k))
        .collect();
    // A SOC record outside the sequence, an event of an unknown kind, and
    // a record whose bytes do not decode.
    out.push(stored(
        900,
        None,
        Kind::Alert(Alert {
            source: "soc".into(),
            name: "agent_silent".into(),
            severity: Severity::Critical as i32,
            ..Default::default()
        }),
    ));
    let mut unknown = stored(901, Some(901), Kind::Alert(Alert::default()));
    unknown.event.as_mut().unwrap().kind = None;
    unknown.kind = "unknown".into();
    out.push(unknown);
    let mut damaged = stored(902, Some(902), Kind::Alert(Alert::default()));
    damaged.event = None;
    out.push(damaged);
    out
}

/// Every leaf of `v` as (dotted key, value); arrays of objects are walked
/// into, with the array's key as the prefix (how ECS names `dns.answers.data`).
fn leaves<'a>(prefix: &str, v: &'a Value, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                assert!(
                    !k.is_empty() && !k.contains('.'),
                    "key {k:?} under {prefix}"
                );
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&key, child, out);
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            out.push((prefix.to_string(), v));
            for item in items {
                assert!(item.is_object(), "{prefix}: objects mixed with values");
                leaves(prefix, item, out);
            }
        }
        _ => out.push((prefix.to_string(), v)),
    }
}

/// Whether `v` fits ECS type `ty` (one value or an array of them).
fn fits(ty: &str, v: &Value) -> bool {
    if let Value::Array(items) = v {
        return !items.is_empty() && items.iter().all(|i| fits(ty, i));
    }
    match ty {
        "keyword" | "constant_keyword" | "wildcard" | "match_only_text" | "text" => v.is_string(),
        "long" => v.is_i64() || v.is_u64(),
        "float" | "scaled_float" | "double" => v.is_number(),
        "boolean" => v.is_boolean(),
        "ip" => v.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
        // RFC 3339 with an explicit numeric offset (never a bare local time).
        "date" => v.as_str().is_some_and(|s| {
            chrono::DateTime::parse_from_rfc3339(s).is_ok() && s.ends_with("+00:00")
        }),
        "object" | "flattened" | "nested" => v.is_object(),
        _ => false,
    }
}

#[test]
fn every_key_is_an_ecs_field_or_owlet() {
    let fields = ecs_fields();
    let mut problems = BTreeSet::new();
    let mut seen_kinds = BTreeSet::new();
    for e in samples() {
        let doc = document(&e);
        seen_kinds.insert(e.kind.clone());
        let mut all = Vec::new();
        leaves("", &doc, &mut all);
        for (key, value) in all {
            if key == CUSTOM_PREFIX || key.starts_with(&format!("{CUSTOM_PREFIX}.")) {
                continue;
            }
            // Keys below an ECS field of type object (labels.*) are the
            // user's own.
            let parent_object = fields.iter().any(|(name, ty)| {
                ty == "object" && key.starts_with(&format!("{name}.")) && name != "dns.answers"
            });
            if parent_object {
                assert!(value.is_string(), "{key}: labels are keywords");
                continue;
            }
            match fields.get(&key) {
                None => {
                    problems.insert(format!(
                        "{key} ({}): not an ECS {ECS_VERSION} field",
                        e.kind
                    ));
                }
                Some(ty) if ty == "object" && value.is_array() => {}
                Some(ty) if !fits(ty, value) => {
                    problems.insert(format!("{key} ({}): {value} is not an ECS {ty}", e.kind));
                }
                Some(_) => {}
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    for kind in owlet_proto::KIND_NAMES.iter().copied().chain(["unknown"]) {
        assert!(seen_kinds.contains(kind), "no sample of {kind}");
    }
}

#[test]
fn categorisation_takes_allowed_values() {
    let mut allowed: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut expected_types: HashMap<&str, Vec<&str>> = HashMap::new();
    for line in ALLOWED.lines().filter(|l| !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        let (Some(field), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        allowed.entry(field).or_default().push(value);
        if field == "event.category" {
            expected_types.insert(value, words.collect());
        }
    }
    let strings = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect(),
            _ => vec![],
        }
    };
    for e in samples() {
        let doc = document(&e);
        let event = &doc["event"];
        assert!(event["kind"].is_string(), "{}: no event.kind", e.kind);
        assert!(event["type"].is_array(), "{}: no event.type", e.kind);
        for field in ["kind", "category", "type", "outcome"] {
            for value in strings(&event[field]) {
                assert!(
                    allowed[format!("event.{field}").as_str()].contains(&value.as_str()),
                    "{}: event.{field} = {value:?} is not an ECS allowed value",
                    e.kind
                );
            }
        }
        let categories = strings(&event["category"]);
        for ty in strings(&event["type"]) {
            assert!(
                categories.is_empty()
                    || categories
                        .iter()
                        .any(|c| expected_types[c.as_str()].contains(&ty.as_str())),
                "{}: event.type {ty:?} is expected by none of {categories:?}",
                e.kind
            );
        }
    }
}

#[test]
fn ids_and_documents_are_stable() {
    for (a, b) in samples().iter().zip(samples().iter()) {
        let (da, db) = (document(a), document(b));
        assert_eq!(
            serde_json::to_string(&da).unwrap(),
            serde_json::to_string(&db).unwrap()
        );
        assert_eq!(da["event"]["id"], Value::from(a.event_id()));
    }
    let flow = &samples()[15];
    assert_eq!(flow.kind, "flow_record");
    assert_eq!(document(flow)["event"]["id"], "acme/sensor-1/16");
    let soc = samples().into_iter().find(|e| e.seq.is_none()).unwrap();
    assert_eq!(document(&soc)["event"]["id"], "acme/soc/900");
}

#[test]
fn a_flow_maps_its_endpoints_names_and_counts() {
    let flow = samples()
        .into_iter()
        .find(|e| e.kind == "flow_record")
        .unwrap();
    let d = document(&flow);
    assert_eq!(d["@timestamp"], "2026-11-01T12:00:00.000000+00:00");
    assert_eq!(d["event"]["timezone"], "Asia/Tokyo");
    assert_eq!(d["organization"]["id"], "acme");
    assert_eq!(d["observer"]["type"], "sensor");
    assert_eq!(d["observer"]["hostname"], "sensor-1");
    assert_eq!(d["source"]["ip"], "10.0.0.5");
    assert_eq!(d["source"]["port"], 40000);
    assert_eq!(d["destination"]["bytes"], 900);
    assert_eq!(d["network"]["transport"], "tcp");
    assert_eq!(d["network"]["bytes"], 1000);
    assert_eq!(d["tls"]["client"]["server_name"], "example.org");
    assert_eq!(d["url"]["domain"], "example.org");
    assert_eq!(d["event"]["duration"], 4_000_000_000u64);
    assert_eq!(
        d["message"],
        "flow 10.0.0.5:40000 -> 192.0.2.1:443 tcp, 1000 bytes, 5 packets sni example.org http example.org"
    );
}

#[test]
fn alerts_carry_rule_severity_and_labels() {
    let alert = samples()
        .into_iter()
        .find(|e| e.kind == "alert" && e.seq.is_some())
        .unwrap();
    let d = document(&alert);
    assert_eq!(d["event"]["kind"], "alert");
    assert_eq!(d["rule"]["name"], "check_down");
    assert_eq!(d["event"]["severity"], 3);
    assert_eq!(d["log"]["level"], "critical");
    assert_eq!(d["labels"]["cpu_observed"], "97");
    assert_eq!(d["url"]["full"], "https://intranet.example/health/");
    assert_eq!(d["http"]["response"]["status_code"], 503);
}

#[test]
fn a_file_change_maps_path_hash_mode_and_owner() {
    let deleted = samples()
        .into_iter()
        .find(|e| document(e)["event"]["action"] == "file_deleted")
        .unwrap();
    let d = document(&deleted);
    assert_eq!(d["file"]["path"], "/etc/nftables.conf");
    assert_eq!(d["file"]["name"], "nftables.conf");
    assert_eq!(d["file"]["directory"], "/etc");
    // A deleted file is described as it was.
    assert_eq!(d["file"]["hash"]["sha256"], "a".repeat(64));
    assert_eq!(d["file"]["mode"], "0644");
    assert_eq!(d["file"]["owner"], "root");
    assert_eq!(d["event"]["type"], serde_json::json!(["deletion"]));
    assert_eq!(d["tags"], serde_json::json!(["firewall-rules"]));
}

#[test]
fn export_renders_every_time_in_the_zone_it_is_given() {
    let tokyo = chrono::FixedOffset::east_opt(9 * 3600).unwrap();
    let in_tokyo = |us: i64| {
        chrono::DateTime::from_timestamp_micros(us)
            .unwrap()
            .with_timezone(&tokyo)
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
    };
    for e in samples() {
        let utc = document(&e);
        let local = owlet_soc_ecs::document_with_times(&e, &in_tokyo);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        leaves("", &utc, &mut a);
        leaves("", &local, &mut b);
        let fields = ecs_fields();
        for ((ka, va), (kb, vb)) in a.iter().zip(&b) {
            assert_eq!(ka, kb);
            let is_date = fields.get(ka).is_some_and(|t| t == "date")
                || va
                    .as_str()
                    .is_some_and(|v| chrono::DateTime::parse_from_rfc3339(v).is_ok());
            if is_date {
                let (ta, tb) = (
                    chrono::DateTime::parse_from_rfc3339(va.as_str().unwrap()).unwrap(),
                    chrono::DateTime::parse_from_rfc3339(vb.as_str().unwrap()).unwrap(),
                );
                assert_eq!(ta, tb, "{ka}: same instant");
                assert!(vb.as_str().unwrap().ends_with("+09:00"), "{ka}: {vb}");
            } else {
                assert_eq!(va, vb, "{ka}");
            }
        }
    }
}
