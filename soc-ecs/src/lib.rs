//! owlet-soc-ecs: the Elastic Common Schema (ECS) document of a stored
//! event, the one shape every SIEM output (Elasticsearch `_bulk`, Splunk
//! HEC, syslog) and `export --format ecs` send.
//!
//! Invariants (each checked by `tests/ecs_fields.rs`):
//! * every key of a document is a field of the pinned ECS version
//!   ([`ECS_VERSION`], its field list checked in under `ecs/`), or lives
//!   under the one custom prefix [`CUSTOM_PREFIX`] (`owlet.*`);
//! * values have the ECS field's type (dates are RFC 3339 with an explicit
//!   offset, `ip` fields parse as addresses, `long` fields are integers);
//! * `event.kind`, `event.category`, `event.type` and `event.outcome` take
//!   only ECS's allowed values, and each `event.type` is one ECS expects
//!   for one of the document's categories;
//! * `event.id` is [`StoredEvent::event_id`], stable across resends and
//!   SOC restarts, so a SIEM can deduplicate on it;
//! * a document is a pure function of the stored event: building it twice
//!   gives the same bytes (a resend is a true duplicate).
//!
//! What it must never do: read anything but the event it is given (no
//! clock, no lookups), or drop an event: an event it cannot decode still
//! becomes a document that says so. The mapping table is `ECS.md`.
#![forbid(unsafe_code)]

use std::net::IpAddr;

use chrono::{DateTime, SecondsFormat};
use owlet_proto::Timestamp;
use owlet_proto::v1::{
    AgentStatus, Alert, CaptureStats, CheckResult, DataLoss, FileChange, FileChangeKind,
    FlowRecord, HostMetrics, State, check_result::Detail, event::Kind,
};
use owlet_soc_store::StoredEvent;
use owlet_soc_store::columns::{severity as severity_name, state as state_name};
use serde_json::{Map, Value, json};

/// The ECS version the documents follow (`ecs.version`), whose field list
/// is checked in as `ecs/fields-8.17.0.csv`.
pub const ECS_VERSION: &str = "8.17.0";

/// Every field that is not an ECS field lives below this one key.
pub const CUSTOM_PREFIX: &str = "owlet";

/// The ECS document of `e` (see `ECS.md` for the field by field mapping),
/// times in UTC written `+00:00`: what the SIEM outputs send.
pub fn document(e: &StoredEvent) -> Value {
    document_with_times(e, &rfc3339)
}

/// [`document`] with every time rendered by `time` (UTC µs → RFC 3339
/// with an explicit offset), for `export --format ecs --tz ZONE`:
/// `Format::Ecs(|e, zone| document_with_times(e, &|us| zone.rfc3339(us)))`.
pub fn document_with_times(e: &StoredEvent, time: &dyn Fn(i64) -> String) -> Value {
    let mut d = Doc {
        map: Map::new(),
        time,
    };
    d.set("@timestamp", time(e.time_us));
    d.set("ecs.version", ECS_VERSION);
    d.set("event.id", e.event_id());
    if let Some(seq) = e.seq {
        d.set("event.sequence", seq);
    }
    d.set("event.module", "owlet");
    d.set("event.dataset", format!("owlet.{}", e.kind));
    d.set("event.created", time(e.time_us));
    d.set("event.ingested", time(e.received_us));
    d.text("event.timezone", &e.zone);
    d.set("organization.id", e.tenant.as_str());
    d.set("organization.name", e.tenant.as_str());
    d.set("agent.id", e.agent.as_str());
    d.set("agent.name", e.agent.as_str());
    d.set("agent.type", "owlet");
    d.set("observer.hostname", e.agent.as_str());
    d.set("observer.name", e.agent.as_str());
    d.set("observer.type", "sensor");
    d.set("observer.vendor", "owlet");
    d.set("observer.product", "owlet");
    d.set("owlet.kind", e.kind.as_str());
    match e.event.as_ref().and_then(|ev| ev.kind.as_ref()) {
        Some(Kind::CheckResult(r)) => check(&mut d, r),
        Some(Kind::Alert(a)) => alert(&mut d, a),
        Some(Kind::HostMetrics(h)) => host(&mut d, &e.agent, h),
        Some(Kind::FlowRecord(f)) => flow(&mut d, f),
        Some(Kind::FileChange(f)) => file(&mut d, &e.agent, f),
        Some(Kind::AgentStatus(s)) => status(&mut d, &e.agent, s),
        Some(Kind::DataLoss(l)) => loss(&mut d, l),
        Some(Kind::CaptureStats(s)) => capture(&mut d, s),
        None => {
            d.classify("event", &[], &["info"], "unknown");
            let why = if e.event.is_none() {
                "the stored record does not decode (damaged file?)"
            } else {
                "an event of a kind this SOC does not know (a newer agent?)"
            };
            d.set("message", why);
        }
    }
    Value::Object(d.map)
}

/// A JSON object built by dotted ECS paths (`source.ip`), nested as ECS
/// and Elasticsearch expect (`{"source": {"ip": …}}`).
struct Doc<'a> {
    map: Map<String, Value>,
    /// Renders a UTC µs time (every date field goes through it).
    time: &'a dyn Fn(i64) -> String,
}

impl Doc<'_> {
    fn set(&mut self, path: &str, value: impl Into<Value>) {
        let mut map = &mut self.map;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                map.insert(part.to_string(), value.into());
                return;
            }
            let slot = map
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            map = match slot {
                Value::Object(m) => m,
                _ => unreachable!("made an object above"),
            };
        }
    }

    /// Sets a text field unless it is empty (proto3's "not reported").
    fn text(&mut self, path: &str, s: &str) {
        if !s.is_empty() {
            self.set(path, s);
        }
    }

    /// Sets a number unless it is 0 (proto3's "not reported").
    fn count(&mut self, path: &str, n: u64) {
        if n != 0 {
            self.set(path, n);
        }
    }

    fn time(&mut self, path: &str, t: &Option<Timestamp>) {
        if let Some(t) = t.as_ref().filter(|t| t.seconds != 0 || t.nanos != 0) {
            let text = (self.time)(owlet_proto::timestamp_micros(t));
            self.set(path, text);
        }
    }

    fn classify(&mut self, kind: &str, categories: &[&str], types: &[&str], action: &str) {
        self.set("event.kind", kind);
        if !categories.is_empty() {
            self.set("event.category", json!(categories));
        }
        self.set("event.type", json!(types));
        self.set("event.action", action);
    }

    fn severity(&mut self, v: i32) {
        if v != 0 {
            self.set("event.severity", v);
            self.set("log.level", severity_name(v));
        }
    }

    /// `source` or `destination`: the address, its `ip` when it is one,
    /// and the port for protocols that have ports.
    fn endpoint(&mut self, side: &str, addr: &str, port: Option<u32>) {
        if addr.is_empty() {
            return;
        }
        self.set(&format!("{side}.address"), addr);
        if let Ok(ip) = addr.parse::<IpAddr>() {
            self.set(&format!("{side}.ip"), ip.to_string());
        }
        if let Some(port) = port.filter(|p| *p != 0) {
            self.set(&format!("{side}.port"), port);
        }
    }
}

/// RFC 3339 in UTC with the offset written out (`+00:00`), microseconds.
pub fn rfc3339(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// `FAILURE_CLASS_HTTP_STATUS` → `http_status`: an enum's wire name
/// without its prefix, as the store's columns spell them.
fn enum_name(wire: &str, prefix: &str) -> String {
    wire.strip_prefix(prefix)
        .unwrap_or(wire)
        .to_ascii_lowercase()
}

fn failure_name(v: i32) -> Option<String> {
    use owlet_proto::v1::FailureClass;
    match FailureClass::try_from(v).unwrap_or(FailureClass::Unspecified) {
        FailureClass::Unspecified => None,
        f => Some(enum_name(f.as_str_name(), "FAILURE_CLASS_")),
    }
}

/// A map (alert labels, errors by class, losses by kind) as an object with
/// sorted keys, and no dots in them: Elasticsearch would read a dotted key
/// as nested objects (ECS says label keys have none).
fn object<V: Clone + Into<Value>>(m: &std::collections::HashMap<String, V>) -> Value {
    let mut sorted: Vec<_> = m.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    Value::Object(
        sorted
            .into_iter()
            .map(|(k, v)| (k.replace('.', "_"), v.clone().into()))
            .collect(),
    )
}

/// `host:port`, `[v6]:port` or a bare host.
fn split_host_port(target: &str) -> (&str, Option<u32>) {
    if let Some(rest) = target.strip_prefix('[')
        && let Some((host, port)) = rest.split_once("]:")
    {
        return (host, port.parse().ok());
    }
    match target.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(p) => (host, Some(p)),
            Err(_) => (target, None),
        },
        _ => (target, None),
    }
}

/// What a check aimed at and what it measured (for check results and the
/// result behind a check alert).
fn check_target(d: &mut Doc, r: &CheckResult) {
    d.text("owlet.check.id", &r.check_id);
    d.set(
        "owlet.check.type",
        enum_name(r.check_type().as_str_name(), "CHECK_TYPE_"),
    );
    d.text("owlet.check.target", &r.target);
    d.set("owlet.check.result", state_name(r.result));
    d.set("owlet.check.state", state_name(r.state));
    if let Some(f) = failure_name(r.failure) {
        d.set("owlet.check.failure", f);
    }
    d.set("owlet.check.duration_us", r.duration_us);
    match &r.detail {
        Some(Detail::Http(h)) => {
            let url = if h.final_url.is_empty() {
                &r.target
            } else {
                &h.final_url
            };
            d.text("url.full", url);
            if h.status_code != 0 {
                d.set("http.response.status_code", h.status_code);
            }
            d.text(
                "http.version",
                h.http_version.strip_prefix("HTTP/").unwrap_or(""),
            );
            d.count("http.response.body.bytes", h.body_bytes);
            d.set("owlet.check.http.dns_us", h.dns_us);
            d.set("owlet.check.http.connect_us", h.connect_us);
            d.set("owlet.check.http.tls_us", h.tls_us);
            d.set("owlet.check.http.first_byte_us", h.first_byte_us);
            d.set("owlet.check.http.total_us", h.total_us);
            d.set("owlet.check.http.redirects", h.redirects);
            if let Some(days) = h.cert_days_left {
                d.set("owlet.check.cert_days_left", days);
            }
            if h.tls_verify_skipped {
                d.set("owlet.check.http.tls_verify_skipped", true);
            }
        }
        Some(Detail::Tcp(t)) => {
            let (host, port) = split_host_port(&r.target);
            d.text("destination.domain", host);
            if let Some(port) = port {
                d.set("destination.port", port);
            }
            d.set("owlet.check.tcp.connect_us", t.connect_us);
            d.count("owlet.check.tcp.tls_handshake_us", t.tls_handshake_us);
            if let Some(days) = t.cert_days_left {
                d.set("owlet.check.cert_days_left", days);
            }
            d.text("owlet.check.tcp.banner", &t.banner);
        }
        Some(Detail::Icmp(i)) => {
            d.text("destination.domain", &r.target);
            d.set("owlet.check.icmp.sent", i.sent);
            d.set("owlet.check.icmp.received", i.received);
            d.set("owlet.check.icmp.loss_percent", i.loss_percent);
            d.set("owlet.check.icmp.rtt_min_us", i.rtt_min_us);
            d.set("owlet.check.icmp.rtt_avg_us", i.rtt_avg_us);
            d.set("owlet.check.icmp.rtt_max_us", i.rtt_max_us);
            d.set("owlet.check.icmp.jitter_us", i.jitter_us);
        }
        Some(Detail::Snmp(s)) => {
            let (host, port) = split_host_port(&r.target);
            d.text("destination.domain", host);
            if let Some(port) = port {
                d.set("destination.port", port);
            }
            d.text("owlet.check.snmp.version", &s.version);
            d.text("owlet.check.snmp.preset", &s.preset);
            if s.reboot_detected {
                d.set("owlet.check.snmp.reboot_detected", true);
            }
            let mut metrics: Vec<_> = s.metrics.iter().collect();
            metrics.sort_by(|a, b| a.0.cmp(b.0));
            if !metrics.is_empty() {
                // An array of name/value pairs, not an object keyed by
                // name: names hold dots ("if.2.in_bps").
                let list: Vec<Value> = metrics
                    .into_iter()
                    .map(|(k, v)| json!({"name": k, "value": v}))
                    .collect();
                d.set("owlet.check.snmp.metrics", list);
            }
            if !s.varbinds.is_empty() {
                let list: Vec<Value> = s
                    .varbinds
                    .iter()
                    .map(|v| json!({"oid": v.oid, "value": v.value, "type": v.value_type}))
                    .collect();
                d.set("owlet.check.snmp.varbinds", list);
            }
        }
        None => d.text("destination.domain", &r.target),
    }
    if !r.resolved_address.is_empty() {
        d.endpoint("destination", &r.resolved_address, None);
    }
}

fn check(d: &mut Doc, r: &CheckResult) {
    let web = matches!(r.detail, Some(Detail::Http(_)));
    let categories: &[&str] = if web {
        &["network", "web"]
    } else {
        &["network"]
    };
    d.classify("event", categories, &["info"], "check_result");
    d.set(
        "event.outcome",
        match r.result() {
            State::Up | State::Degraded => "success",
            State::Down => "failure",
            State::Unknown | State::Unspecified => "unknown",
        },
    );
    d.set("event.duration", r.duration_us.saturating_mul(1000));
    check_target(d, r);
    let message = if r.message.is_empty() {
        format!("check {} {}", r.check_id, state_name(r.result))
    } else {
        format!(
            "check {} {}: {}",
            r.check_id,
            state_name(r.result),
            r.message
        )
    };
    d.set("message", message);
}

fn alert(d: &mut Doc, a: &Alert) {
    // Each category here expects "info" (ECS allowed values).
    let categories: &[&str] = match a.source.as_str() {
        "check" => &["network"],
        "capture" => &["network", "intrusion_detection"],
        "fim" => &["file", "configuration"],
        _ => &["host"],
    };
    let action = if a.name.is_empty() {
        "alert"
    } else {
        a.name.as_str()
    };
    d.classify("alert", categories, &["info"], action);
    d.severity(a.severity);
    d.text("rule.name", &a.name);
    d.text("rule.id", &a.name);
    d.text("rule.category", &a.source);
    d.set("rule.ruleset", "owlet");
    d.text("owlet.alert.source", &a.source);
    d.text("owlet.alert.subject", &a.subject);
    d.set("owlet.alert.old_state", state_name(a.old_state));
    d.set("owlet.alert.new_state", state_name(a.new_state));
    if let Some(f) = failure_name(a.failure) {
        d.set("owlet.alert.failure", f);
    }
    if a.source == "fim" {
        d.text("file.path", &a.subject);
    }
    if !a.labels.is_empty() {
        d.set("labels", object(&a.labels));
    }
    if let Some(r) = &a.last_result {
        check_target(d, r);
    }
    let message = match (a.message.is_empty(), a.subject.is_empty()) {
        (false, _) => a.message.clone(),
        (true, false) => format!("{} {}", a.name, a.subject),
        (true, true) => a.name.clone(),
    };
    d.set("message", message);
}

fn host(d: &mut Doc, agent: &str, h: &HostMetrics) {
    d.classify("metric", &["host"], &["info"], "host_metrics");
    d.set("host.name", agent);
    // ECS: normalised by the number of cores, 0 to 1.
    d.set("host.cpu.usage", (h.cpu_percent / 100.0).clamp(0.0, 1.0));
    d.count("host.uptime", h.uptime_seconds);
    let interval = h.interval_seconds.max(0.0);
    let total = |f: &dyn Fn(&owlet_proto::v1::NetworkCounters) -> f64| -> u64 {
        (h.networks.iter().map(f).sum::<f64>() * interval).round() as u64
    };
    if !h.networks.is_empty() && interval > 0.0 {
        d.set(
            "host.network.ingress.bytes",
            total(&|n| n.rx_bytes_per_second),
        );
        d.set(
            "host.network.ingress.packets",
            total(&|n| n.rx_packets_per_second),
        );
        d.set(
            "host.network.egress.bytes",
            total(&|n| n.tx_bytes_per_second),
        );
        d.set(
            "host.network.egress.packets",
            total(&|n| n.tx_packets_per_second),
        );
    }
    if !h.disk_io.is_empty() && interval > 0.0 {
        let sum = |f: &dyn Fn(&owlet_proto::v1::DiskIo) -> f64| -> u64 {
            (h.disk_io.iter().map(f).sum::<f64>() * interval).round() as u64
        };
        d.set("host.disk.read.bytes", sum(&|io| io.read_bytes_per_second));
        d.set(
            "host.disk.write.bytes",
            sum(&|io| io.write_bytes_per_second),
        );
    }
    d.set("owlet.host.cpu_percent", h.cpu_percent);
    d.set("owlet.host.load1", h.load1);
    d.set("owlet.host.load5", h.load5);
    d.set("owlet.host.load15", h.load15);
    d.set("owlet.host.memory.total_bytes", h.memory_total_bytes);
    d.set("owlet.host.memory.used_bytes", h.memory_used_bytes);
    d.set(
        "owlet.host.memory.available_bytes",
        h.memory_available_bytes,
    );
    let memory_pct = (h.memory_total_bytes > 0)
        .then(|| h.memory_used_bytes as f64 * 100.0 / h.memory_total_bytes as f64);
    if let Some(pct) = memory_pct {
        d.set("owlet.host.memory.used_percent", pct);
    }
    d.count("owlet.host.swap.total_bytes", h.swap_total_bytes);
    d.count("owlet.host.swap.used_bytes", h.swap_used_bytes);
    d.count("owlet.host.process_count", h.process_count.into());
    let disks: Vec<Value> = h
        .disks
        .iter()
        .map(|disk| {
            let used = disk.total_bytes - disk.available_bytes.min(disk.total_bytes);
            let pct = if disk.total_bytes > 0 {
                used as f64 * 100.0 / disk.total_bytes as f64
            } else {
                0.0
            };
            json!({
                "mount_point": disk.mount_point,
                "device": disk.device,
                "file_system": disk.file_system,
                "total_bytes": disk.total_bytes,
                "available_bytes": disk.available_bytes,
                "used_percent": pct,
            })
        })
        .collect();
    let disk_pct = disks
        .iter()
        .filter_map(|v| v["used_percent"].as_f64())
        .reduce(f64::max);
    if let Some(pct) = disk_pct {
        d.set("owlet.host.disk_used_percent", pct);
    }
    if !disks.is_empty() {
        d.set("owlet.host.disks", disks);
    }
    let processes = |list: &[owlet_proto::v1::ProcessUsage]| -> Vec<Value> {
        list.iter()
            .map(|p| {
                json!({
                    "pid": p.pid, "name": p.name, "exe": p.exe, "user": p.user,
                    "cpu_percent": p.cpu_percent, "memory_bytes": p.memory_bytes,
                })
            })
            .collect()
    };
    if !h.top_processes.is_empty() {
        d.set("owlet.host.top_processes", processes(&h.top_processes));
    }
    if !h.top_processes_by_memory.is_empty() {
        d.set(
            "owlet.host.top_processes_by_memory",
            processes(&h.top_processes_by_memory),
        );
    }
    d.time("owlet.host.boot_time", &h.boot_time);
    d.set("owlet.host.agent_cpu_percent", h.agent_cpu_percent);
    d.count("owlet.host.agent_rss_bytes", h.agent_rss_bytes);
    d.set("owlet.host.learning_percent", h.learning_percent);
    let mut message = format!("cpu {:.1} %", h.cpu_percent);
    if let Some(pct) = memory_pct {
        message.push_str(&format!(", memory {pct:.1} %"));
    }
    if let Some(pct) = disk_pct {
        message.push_str(&format!(", fullest disk {pct:.1} %"));
    }
    message.push_str(&format!(", load {:.2}", h.load1));
    d.set("message", message);
}

/// ECS `network.transport` for an IANA protocol number.
fn transport(protocol: u32) -> Option<&'static str> {
    Some(match protocol {
        1 => "icmp",
        2 => "igmp",
        6 => "tcp",
        17 => "udp",
        47 => "gre",
        50 => "esp",
        58 => "ipv6-icmp",
        132 => "sctp",
        _ => return None,
    })
}

fn dns_rcode(rcode: u32) -> String {
    match rcode {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE{n}"),
    }
}

fn flow(d: &mut Doc, f: &FlowRecord) {
    use owlet_proto::v1::FlowEndReason;
    let ended = f.end_reason() != FlowEndReason::ActiveTimeout;
    let types: &[&str] = if ended {
        &["connection", "end"]
    } else {
        &["connection"]
    };
    d.classify("event", &["network"], types, "flow_record");
    let has_ports = matches!(f.protocol, 6 | 17 | 132);
    let port = |p: u32| has_ports.then_some(p);
    d.endpoint("source", &f.src_addr, port(f.src_port));
    d.endpoint("destination", &f.dst_addr, port(f.dst_port));
    d.set("source.bytes", f.bytes_out);
    d.set("source.packets", f.packets_out);
    d.set("destination.bytes", f.bytes_in);
    d.set("destination.packets", f.packets_in);
    if let Some(t) = transport(f.protocol) {
        d.set("network.transport", t);
    }
    d.set("network.iana_number", f.protocol.to_string());
    match f.src_addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => d.set("network.type", "ipv4"),
        Ok(IpAddr::V6(_)) => d.set("network.type", "ipv6"),
        Err(_) => {}
    }
    d.set("network.bytes", f.bytes_out.saturating_add(f.bytes_in));
    d.set(
        "network.packets",
        f.packets_out.saturating_add(f.packets_in),
    );
    if f.vlan != 0 {
        d.set("network.vlan.id", f.vlan.to_string());
    }
    let application = if !f.dns_query.is_empty() {
        Some("dns")
    } else if !f.tls_sni.is_empty() {
        Some("tls")
    } else if !f.http_method.is_empty() || !f.http_host.is_empty() {
        Some("http")
    } else {
        None
    };
    if let Some(p) = application {
        d.set("network.protocol", p);
    }
    d.text("observer.ingress.interface.name", &f.interface);
    d.time("event.start", &f.first_seen);
    d.time("event.end", &f.last_seen);
    if let (Some(a), Some(b)) = (&f.first_seen, &f.last_seen) {
        let us = owlet_proto::timestamp_micros(b) - owlet_proto::timestamp_micros(a);
        d.set("event.duration", us.max(0).saturating_mul(1000));
    }
    if !f.dns_query.is_empty() {
        d.set("dns.question.name", f.dns_query.as_str());
        if f.dns_qtype != 0 {
            d.set("dns.question.type", owlet_proto::dns_type_name(f.dns_qtype));
        }
        d.set(
            "dns.type",
            if f.dns_rcode.is_some() {
                "answer"
            } else {
                "query"
            },
        );
    }
    if let Some(rcode) = f.dns_rcode {
        d.set("dns.response_code", dns_rcode(rcode));
    }
    if !f.dns_answers.is_empty() {
        let answers: Vec<Value> = f
            .dns_answers
            .iter()
            .map(|a| match a.split_once(' ') {
                Some((t, data)) => json!({"type": t, "data": data}),
                None => json!({"data": a}),
            })
            .collect();
        d.set("dns.answers", answers);
    }
    d.text("tls.client.server_name", &f.tls_sni);
    if !f.tls_alpn.is_empty() {
        d.set("owlet.flow.tls_alpn_offered", json!(f.tls_alpn));
    }
    d.text("http.request.method", &f.http_method);
    d.text("url.domain", &f.http_host);
    d.text("url.path", &f.http_path);
    d.set(
        "owlet.flow.end_reason",
        enum_name(f.end_reason().as_str_name(), "FLOW_END_REASON_"),
    );
    if f.protocol == 6 {
        d.set("owlet.flow.tcp_flags", f.tcp_flags);
        d.set("owlet.flow.tcp_flags_out", f.tcp_flags_out);
        d.set("owlet.flow.tcp_flags_in", f.tcp_flags_in);
        d.set("owlet.flow.initiator_by_syn", f.initiator_by_syn);
    }
    d.count("owlet.flow.ip_bytes_out", f.ip_bytes_out);
    d.count("owlet.flow.ip_bytes_in", f.ip_bytes_in);
    if let Some(t) = f.icmp_type {
        d.set("owlet.flow.icmp_type", t);
    }
    if let Some(c) = f.icmp_code {
        d.set("owlet.flow.icmp_code", c);
    }
    if !f.stratum_methods.is_empty() {
        d.set("owlet.flow.stratum_methods", json!(f.stratum_methods));
    }
    let proto = transport(f.protocol)
        .map(str::to_string)
        .unwrap_or_else(|| format!("proto {}", f.protocol));
    let mut message = format!(
        "flow {} -> {} {proto}, {} bytes, {} packets",
        owlet_proto::endpoint(&f.src_addr, f.src_port, f.protocol),
        owlet_proto::endpoint(&f.dst_addr, f.dst_port, f.protocol),
        f.bytes_out.saturating_add(f.bytes_in),
        f.packets_out.saturating_add(f.packets_in),
    );
    for (what, name) in [
        ("dns", &f.dns_query),
        ("sni", &f.tls_sni),
        ("http", &f.http_host),
    ] {
        if !name.is_empty() {
            message.push_str(&format!(" {what} {name}"));
        }
    }
    d.set("message", message);
}

fn file(d: &mut Doc, agent: &str, f: &FileChange) {
    let (ty, action) = match f.change() {
        FileChangeKind::Created => ("creation", "created"),
        FileChangeKind::Modified => ("change", "modified"),
        FileChangeKind::Deleted => ("deletion", "deleted"),
        FileChangeKind::Renamed => ("change", "renamed"),
        FileChangeKind::Attributes => ("change", "attributes"),
        FileChangeKind::Unspecified => ("info", "unspecified"),
    };
    d.classify("event", &["file"], &[ty], &format!("file_{action}"));
    d.severity(f.severity);
    d.set("host.name", agent);
    d.set("file.path", f.path.as_str());
    let path = std::path::Path::new(&f.path);
    if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
        d.set("file.name", name);
    }
    if let Some(dir) = path.parent().and_then(|p| p.to_str()) {
        d.text("file.directory", dir);
    }
    let deleted = f.change() == FileChangeKind::Deleted;
    // A deleted file is described as it was; any other as it is now.
    let (sha, size, mode) = if deleted {
        (&f.old_sha256, f.old_size, f.old_mode)
    } else {
        (&f.new_sha256, f.new_size, f.new_mode)
    };
    d.text("file.hash.sha256", sha);
    d.set("file.size", size);
    if mode != 0 {
        d.set("file.mode", format!("{:04o}", mode & 0o7777));
    }
    d.set("file.uid", f.uid.to_string());
    d.set("file.gid", f.gid.to_string());
    d.text("file.owner", &f.owner);
    if f.inode != 0 {
        d.set("file.inode", f.inode.to_string());
    }
    d.time("file.mtime", &f.mtime);
    match f.file_type.as_str() {
        "file" => d.set("file.type", "file"),
        "directory" => d.set("file.type", "dir"),
        "symlink" => d.set("file.type", "symlink"),
        _ => {}
    }
    d.text("file.target_path", &f.symlink_target);
    if !f.tag.is_empty() {
        d.set("tags", json!([f.tag]));
    }
    d.set("owlet.file.action", action);
    d.text("owlet.file.old.path", &f.old_path);
    d.text("owlet.file.old.sha256", &f.old_sha256);
    d.set("owlet.file.old.size", f.old_size);
    if f.old_mode != 0 {
        d.set(
            "owlet.file.old.mode",
            format!("{:04o}", f.old_mode & 0o7777),
        );
    }
    d.set("owlet.file.old.uid", f.old_uid.to_string());
    d.set("owlet.file.old.gid", f.old_gid.to_string());
    d.text("owlet.file.old.symlink_target", &f.old_symlink_target);
    d.text("owlet.file.changed_by", &f.changed_by);
    d.text("owlet.file.diff", &f.diff);
    if f.diff_truncated {
        d.set("owlet.file.diff_truncated", true);
    }
    d.text("owlet.file.diff_skipped", &f.diff_skipped);
    d.text("owlet.file.hash_skipped", &f.hash_skipped);
    d.count("owlet.file.redacted_lines", f.redacted_lines.into());
    d.count("owlet.file.coalesced", f.coalesced.into());
    if f.while_agent_stopped {
        d.set("owlet.file.while_agent_stopped", true);
    }
    let mut message = format!("{} {action}", f.path);
    if !f.old_path.is_empty() {
        message.push_str(&format!(" (was {})", f.old_path));
    }
    if !f.changed_by.is_empty() {
        message.push_str(&format!(" by {}", f.changed_by));
    }
    d.set("message", message);
}

fn status(d: &mut Doc, agent: &str, s: &AgentStatus) {
    let action = if s.stopping { "stopping" } else { "heartbeat" };
    d.classify("metric", &["host"], &["info"], action);
    d.set("host.name", agent);
    d.text("agent.version", &s.agent_version);
    let connection = enum_name(s.connection().as_str_name(), "CONNECTION_STATE_");
    d.set("owlet.agent.uptime_seconds", s.uptime_seconds);
    d.set("owlet.agent.spool_events", s.spool_events);
    d.set("owlet.agent.spool_bytes", s.spool_bytes);
    d.set(
        "owlet.agent.spool_oldest_age_seconds",
        s.spool_oldest_age_seconds,
    );
    d.set("owlet.agent.connection", connection.as_str());
    d.time("owlet.agent.last_ack_time", &s.last_ack_time);
    d.set("owlet.agent.events_accepted", s.events_accepted);
    d.set("owlet.agent.events_dropped", s.events_dropped);
    if !s.errors.is_empty() {
        d.set("owlet.agent.errors", object(&s.errors));
    }
    d.text("owlet.agent.time_zone", &s.time_zone);
    d.set("owlet.agent.utc_offset_seconds", s.utc_offset_seconds);
    d.text("owlet.agent.hw_profile", &s.hw_profile);
    d.count("owlet.agent.interval_seconds", s.interval_seconds.into());
    d.count("owlet.agent.rss_bytes", s.rss_bytes);
    d.set("owlet.agent.reconnects", s.reconnects);
    if s.stopping {
        d.set("owlet.agent.stopping", true);
    }
    d.set(
        "message",
        format!(
            "{action}: {connection}, {} events spooled, {} dropped since start",
            s.spool_events, s.events_dropped
        ),
    );
}

fn loss(d: &mut Doc, l: &DataLoss) {
    let reason = enum_name(l.reason().as_str_name(), "DATA_LOSS_REASON_");
    d.classify("pipeline_error", &["host"], &["info"], "data_loss");
    d.severity(owlet_proto::v1::Severity::Warning as i32);
    d.time("event.start", &l.oldest);
    d.time("event.end", &l.newest);
    d.set("owlet.data_loss.reason", reason.as_str());
    d.set("owlet.data_loss.events_lost", l.events_lost);
    d.set("owlet.data_loss.batches_lost", l.batches_lost);
    d.count("owlet.data_loss.first_seq", l.first_seq);
    d.count("owlet.data_loss.last_seq", l.last_seq);
    if !l.lost_by_kind.is_empty() {
        d.set("owlet.data_loss.lost_by_kind", object(&l.lost_by_kind));
    }
    d.set(
        "message",
        format!("{} events lost on the sensor ({reason})", l.events_lost),
    );
}

fn capture(d: &mut Doc, s: &CaptureStats) {
    d.classify("metric", &["network"], &["info"], "capture_stats");
    d.text("observer.ingress.interface.name", &s.interface);
    d.set("network.bytes", s.bytes);
    d.set("network.packets", s.packets);
    d.time("event.start", &s.interval_start);
    if s.interval_seconds > 0.0 {
        d.set("event.duration", (s.interval_seconds * 1e9).round() as u64);
    }
    d.set("owlet.capture.kernel_drops", s.kernel_drops);
    d.set("owlet.capture.active_flows", s.active_flows);
    d.set("owlet.capture.flows_evicted", s.flows_evicted);
    d.set("owlet.capture.new_flows", s.new_flows);
    d.set("owlet.capture.new_flows_per_second", s.new_flows_per_second);
    d.set("owlet.capture.scan_sources", s.scan_sources);
    d.set("owlet.capture.mining_matches", s.mining_matches);
    d.count("owlet.capture.fragments", s.fragments);
    d.count(
        "owlet.capture.fragments_unattributed",
        s.fragments_unattributed,
    );
    d.count("owlet.capture.gre_packets", s.gre_packets);
    d.count("owlet.capture.vxlan_packets", s.vxlan_packets);
    if !s.decode_errors.is_empty() {
        d.set("owlet.capture.decode_errors", object(&s.decode_errors));
    }
    let talkers = |list: &[owlet_proto::v1::Talker]| -> Vec<Value> {
        list.iter()
            .map(|t| json!({"addr": t.addr, "bytes": t.bytes, "packets": t.packets}))
            .collect()
    };
    let entries = |list: &[owlet_proto::v1::TopEntry]| -> Vec<Value> {
        list.iter()
            .map(|t| json!({"key": t.key, "bytes": t.bytes, "packets": t.packets}))
            .collect()
    };
    for (key, list) in [
        ("owlet.capture.top_talkers", talkers(&s.top_talkers)),
        (
            "owlet.capture.top_destinations_by_bytes",
            talkers(&s.top_destinations_by_bytes),
        ),
        (
            "owlet.capture.top_ports_by_bytes",
            entries(&s.top_ports_by_bytes),
        ),
        ("owlet.capture.protocol_mix", entries(&s.protocol_mix)),
        (
            "owlet.capture.top_dns_names",
            s.top_dns_names
                .iter()
                .map(|n| json!({"name": n.name, "count": n.count}))
                .collect(),
        ),
        (
            "owlet.capture.scanners",
            s.scanners
                .iter()
                .map(|o| {
                    json!({"source": o.source, "destinations": o.destinations, "ports": o.ports,
                           "attempts": o.attempts, "completed": o.completed})
                })
                .collect(),
        ),
        (
            "owlet.capture.mining",
            s.mining
                .iter()
                .map(|m| {
                    json!({"client": m.client, "server": m.server, "port": m.port,
                           "via": enum_name(m.via().as_str_name(), "MINING_VIA_"), "what": m.what})
                })
                .collect(),
        ),
    ] {
        if !list.is_empty() {
            d.set(key, list);
        }
    }
    d.set(
        "message",
        format!(
            "capture {}: {} packets, {} bytes, {} kernel drops, {} new flows",
            s.interface, s.packets, s.bytes, s.kernel_drops, s.new_flows
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths_nest() {
        let mut d = Doc {
            map: Map::new(),
            time: &rfc3339,
        };
        d.set("a.b.c", 1);
        d.set("a.b.d", "x");
        d.set("a.e", true);
        assert_eq!(
            Value::Object(d.map),
            json!({"a": {"b": {"c": 1, "d": "x"}, "e": true}})
        );
    }

    #[test]
    fn times_carry_an_explicit_offset() {
        assert_eq!(
            rfc3339(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456+00:00"
        );
    }

    #[test]
    fn host_and_port_split() {
        assert_eq!(split_host_port("db:5432"), ("db", Some(5432)));
        assert_eq!(
            split_host_port("[2001:db8::1]:22"),
            ("2001:db8::1", Some(22))
        );
        assert_eq!(split_host_port("2001:db8::1"), ("2001:db8::1", None));
        assert_eq!(split_host_port("router"), ("router", None));
    }
}
