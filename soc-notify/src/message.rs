//! What a notification says, per the MSS guideline: the target (host,
//! address, path or URI), what was detected, the expected damage and the
//! recommended response, with the detection time in the tenant's zone and
//! an explicit offset.
//!
//! [`Incident`] is built once per event when it joins a group and kept in
//! the record, so a message composed later (after quiet hours, after a
//! restart) says exactly what the event said. [`compose`] folds a group's
//! incidents into one subject and body. Every text here is data from outside
//! (agents' paths, messages): it goes into plain-text mail, JSON and SNMP
//! octet strings, never into HTML or a shell.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use owlet_proto::v1::{Alert, FileChange, event::Kind};
use serde::{Deserialize, Serialize};

use crate::config::Severity;
use crate::rules::Candidate;

/// One event as a notification tells it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Stable id (`tenant/agent/seq`) the customer can quote.
    pub event_id: String,
    pub agent: String,
    pub kind: String,
    pub source: String,
    pub name: String,
    pub subject: String,
    pub severity: String,
    /// The event's own time, UTC µs: the detection time.
    pub detected_us: i64,
    pub target: String,
    pub detected: String,
    pub damage: String,
    pub response: String,
}

/// Expected damage and recommended response per alert name.
struct Advice {
    class: &'static str,
    damage: &'static str,
    response: &'static str,
}

/// The per-alert-name table. Names not listed get [`GENERIC`]; extend this
/// when a collector gains an alert.
fn advice(name: &str) -> &'static Advice {
    const TABLE: &[(&str, Advice)] = &[
        (
            "check_down",
            Advice {
                class: "availability: a monitored service stopped answering",
                damage: "users cannot reach the service; if the firewall or uplink itself is down, every service behind it is cut off",
                response: "confirm from another vantage point, check the device's power, link and process, and the failure class below (timeout vs refused vs DNS); escalate to the service owner",
            },
        ),
        (
            "check_degraded",
            Advice {
                class: "availability: a service is slow, lossy or near a limit",
                damage: "slow or unreliable service; often the first sign of an outage or of a certificate about to expire",
                response: "look at the observed value against its threshold, check load and links on the path, renew certificates near expiry",
            },
        ),
        (
            "check_unknown",
            Advice {
                class: "monitoring: a check could not be run",
                damage: "the service is not being watched until this is fixed",
                response: "check the agent's permissions and configuration for this check (`owlet health`)",
            },
        ),
        (
            "check_up",
            Advice {
                class: "availability: service recovered",
                damage: "none now; the outage before it may have had effects",
                response: "no action needed; note the outage's duration for the report",
            },
        ),
        (
            "agent_silent",
            Advice {
                class: "monitoring: the sensor stopped reporting",
                damage: "nothing on this customer's network is being watched; an attacker may have stopped the agent, or the sensor or its uplink failed",
                response: "check the sensor host and its uplink to the SOC; treat an unplanned stop as a possible compromise",
            },
        ),
        (
            "cpu_high",
            Advice {
                class: "host health: sustained high CPU",
                damage: "slow services; an unexplained rise may be a hidden crypto miner",
                response: "look at the top processes in the event; stop and investigate any process you do not recognise",
            },
        ),
        (
            "memory_high",
            Advice {
                class: "host health: memory nearly exhausted",
                damage: "processes may be killed by the kernel, services may fail",
                response: "find the process holding memory, restart or limit it, check for leaks",
            },
        ),
        (
            "swap_high",
            Advice {
                class: "host health: heavy swapping",
                damage: "severe slowdown of every service on the host",
                response: "reduce memory use or add memory; find the process responsible",
            },
        ),
        (
            "disk_full",
            Advice {
                class: "host health: a file system is nearly full",
                damage: "writes fail: logs lost, databases stop, services crash",
                response: "free space or grow the file system; check for runaway logs",
            },
        ),
        (
            "disk_used_high",
            Advice {
                class: "host health: a file system is filling",
                damage: "writes will fail when it is full",
                response: "free space or grow the file system before it fills",
            },
        ),
        (
            "load_high",
            Advice {
                class: "host health: high load",
                damage: "slow services",
                response: "look at the top processes and I/O wait",
            },
        ),
        (
            "interface_down",
            Advice {
                class: "network: an interface lost its link",
                damage: "traffic through this interface stops; monitoring of a mirror port stops",
                response: "check the cable, switch port and interface configuration",
            },
        ),
        (
            "host_rebooted",
            Advice {
                class: "change: the host rebooted",
                damage: "services were interrupted; an unplanned reboot may follow a crash or a tampering",
                response: "confirm the reboot was planned; if not, check the logs before the boot",
            },
        ),
        (
            "scan_detected",
            Advice {
                class: "attack: a network scan",
                damage: "reconnaissance before an attack: the scanner learns which services are exposed",
                response: "identify the source address; block it at the firewall if external, investigate the host if internal",
            },
        ),
        (
            "crypto_mining",
            Advice {
                class: "attack: crypto-mining traffic",
                damage: "stolen computing power and electricity; the miner shows that the host is compromised",
                response: "isolate the host, find and remove the miner and how it got in, rotate credentials",
            },
        ),
        (
            "anomaly",
            Advice {
                class: "host health: unusual behaviour against the learned baseline",
                damage: "depends on the cause; may be an attack or a failing service",
                response: "compare with the baseline in the event and with recent changes",
            },
        ),
        (
            "tls_unknown_issuer",
            Advice {
                class: "security: a certificate from an unknown issuer",
                damage: "possible interception (man in the middle) or a misconfigured service",
                response: "check the certificate chain; if unexpected, treat the connection as intercepted",
            },
        ),
        (
            "file_modified",
            Advice {
                class: "change/tamper: a watched file's content changed",
                damage: "an unplanned configuration change may open a backdoor or disable a protection",
                response: "compare the diff with planned changes; if unplanned, restore the file from a known good copy and find who changed it",
            },
        ),
        (
            "file_created",
            Advice {
                class: "change/tamper: a file appeared in a watched place",
                damage: "a new file may be a planted script, key or backdoor",
                response: "check whether it was planned; if not, quarantine it and find its origin",
            },
        ),
        (
            "file_deleted",
            Advice {
                class: "change/tamper: a watched file was removed",
                damage: "a removed configuration or log may disable a protection or hide traces",
                response: "restore it from a known good copy and find who removed it",
            },
        ),
        (
            "file_renamed",
            Advice {
                class: "change/tamper: a watched file was moved",
                damage: "a moved configuration may disable a protection",
                response: "check whether it was planned; if not, move it back and investigate",
            },
        ),
        (
            "file_attributes",
            Advice {
                class: "change/tamper: a watched file's owner or permissions changed",
                damage: "looser permissions may let others read secrets or change the file",
                response: "restore the owner and mode; find who changed them",
            },
        ),
    ];
    const GENERIC: Advice = Advice {
        class: "alert",
        damage: "depends on the alert; see what was detected",
        response: "review the event in the SOC portal and decide on escalation",
    };
    TABLE
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(&GENERIC, |(_, a)| a)
}

fn first_nonempty<'a>(items: impl IntoIterator<Item = Option<&'a str>>) -> Option<&'a str> {
    items.into_iter().flatten().find(|s| !s.is_empty())
}

fn alert_target(a: &Alert) -> String {
    let label = |k: &str| a.labels.get(k).map(String::as_str);
    let result = a.last_result.as_ref();
    let configured = first_nonempty([
        label("target"),
        label("url"),
        label("address"),
        label("path"),
        result.map(|r| r.target.as_str()),
    ]);
    let resolved = result
        .map(|r| r.resolved_address.as_str())
        .filter(|s| !s.is_empty());
    match (configured, resolved) {
        (Some(t), Some(addr)) if t != addr => format!("{t} ({addr})"),
        (Some(t), _) => t.to_string(),
        (None, Some(addr)) => addr.to_string(),
        (None, None) => a.subject.clone(),
    }
}

fn alert_detected(a: &Alert, class: &str) -> String {
    let mut out = format!("{class}. {} ({}", a.name, a.source);
    if !a.subject.is_empty() {
        out.push_str(&format!(", subject {}", a.subject));
    }
    out.push(')');
    let state = |s: i32| {
        owlet_proto::v1::State::try_from(s)
            .map(|s| s.as_str_name().trim_start_matches("STATE_").to_lowercase())
            .unwrap_or_else(|_| "unknown".into())
    };
    if a.old_state != 0 || a.new_state != 0 {
        out.push_str(&format!(
            "; state {} -> {}",
            state(a.old_state),
            state(a.new_state)
        ));
    }
    if let Ok(f) = owlet_proto::v1::FailureClass::try_from(a.failure)
        && f != owlet_proto::v1::FailureClass::Unspecified
    {
        out.push_str(&format!(
            "; failure {}",
            f.as_str_name()
                .trim_start_matches("FAILURE_CLASS_")
                .to_lowercase()
        ));
    }
    if !a.message.is_empty() {
        out.push_str(&format!(": {}", a.message));
    }
    let mut labels: Vec<_> = a.labels.iter().collect();
    labels.sort();
    for (k, v) in labels {
        out.push_str(&format!("; {k}={v}"));
    }
    out
}

fn file_detected(f: &FileChange, name: &str, class: &str) -> String {
    let mut out = format!("{class}. {name} {}", f.path);
    if !f.old_path.is_empty() {
        out.push_str(&format!(" (was {})", f.old_path));
    }
    if !f.tag.is_empty() {
        out.push_str(&format!(" [rule {}]", f.tag));
    }
    if !f.old_sha256.is_empty() || !f.new_sha256.is_empty() {
        out.push_str(&format!(
            "; sha256 {} -> {}",
            short(&f.old_sha256),
            short(&f.new_sha256)
        ));
    }
    if f.old_mode != f.new_mode && f.old_mode != 0 && f.new_mode != 0 {
        out.push_str(&format!("; mode {:o} -> {:o}", f.old_mode, f.new_mode));
    }
    if !f.changed_by.is_empty() {
        out.push_str(&format!("; changed by {}", f.changed_by));
    }
    if f.while_agent_stopped {
        out.push_str("; found at agent start (changed while the agent was stopped)");
    }
    if !f.diff.is_empty() {
        let lines = f.diff.lines().count();
        out.push_str(&format!(
            "; diff of {lines} line(s){} in the SOC portal",
            if f.diff_truncated { ", truncated" } else { "" }
        ));
    }
    out
}

fn short(h: &str) -> &str {
    if h.is_empty() {
        "-"
    } else {
        &h[..h.len().min(12)]
    }
}

impl Incident {
    pub fn of(c: &Candidate<'_>) -> Self {
        let e = c.event;
        let adv = advice(&c.name);
        let (target, detected) = match e.event.as_ref().and_then(|e| e.kind.as_ref()) {
            Some(Kind::Alert(a)) => (alert_target(a), alert_detected(a, adv.class)),
            Some(Kind::FileChange(f)) => (f.path.clone(), file_detected(f, &c.name, adv.class)),
            _ => (c.subject.clone(), adv.class.to_string()),
        };
        Incident {
            event_id: e.event_id(),
            agent: e.agent.clone(),
            kind: e.kind.clone(),
            source: c.source.clone(),
            name: c.name.clone(),
            subject: c.subject.clone(),
            severity: c.severity.name().to_string(),
            detected_us: e.time_us,
            target: format!("{target} (sensor {})", e.agent),
            detected,
            damage: adv.damage.to_string(),
            response: adv.response.to_string(),
        }
    }
}

/// A time for people: local time in `zone` with its offset and zone name.
pub fn local_time(us: i64, zone: Tz) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .unwrap_or_default()
        .with_timezone(&zone)
        .format(&format!("%Y-%m-%d %H:%M:%S%.3f %:z ({zone})"))
        .to_string()
}

/// RFC 3339 with the offset of `zone`, for machines (webhook, traps).
pub fn rfc3339(us: i64, zone: Tz) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .unwrap_or_default()
        .with_timezone(&zone)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
}

/// Most incidents told in full in one body; the rest are listed one line each.
pub const FULL_INCIDENTS: usize = 10;

/// A group's subject and plain-text body.
pub fn compose(
    tenant: &str,
    rule: &str,
    severity: Severity,
    incidents: &[Incident],
    zone: Tz,
    held_note: Option<&str>,
) -> (String, String) {
    let n = incidents.len();
    let first = incidents.first();
    let title = match (n, first) {
        (1, Some(i)) => format!("{} on {}", i.name, i.target),
        _ => {
            let mut names: Vec<(String, usize)> = Vec::new();
            for i in incidents {
                match names.iter_mut().find(|(n, _)| *n == i.name) {
                    Some((_, c)) => *c += 1,
                    None => names.push((i.name.clone(), 1)),
                }
            }
            let mut agents: Vec<&str> = incidents.iter().map(|i| i.agent.as_str()).collect();
            agents.sort();
            agents.dedup();
            format!(
                "{n} events: {} on {}",
                names
                    .iter()
                    .map(|(n, c)| format!("{n} x{c}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                agents.join(", ")
            )
        }
    };
    let subject = one_line(&format!(
        "[owlet {tenant}] {}: {title}",
        severity.name().to_uppercase()
    ));
    let mut body = String::new();
    body.push_str(&format!(
        "Tenant: {tenant}\nRule: {rule}\nSeverity: {}\n",
        severity.name()
    ));
    if let (Some(a), Some(b)) = (
        incidents.iter().map(|i| i.detected_us).min(),
        incidents.iter().map(|i| i.detected_us).max(),
    ) {
        if a == b {
            body.push_str(&format!("Detected: {}\n", local_time(a, zone)));
        } else {
            body.push_str(&format!(
                "Detected: {} to {}\n",
                local_time(a, zone),
                local_time(b, zone)
            ));
        }
    }
    body.push_str(&format!("Events: {n}\n"));
    if let Some(note) = held_note {
        body.push_str(&format!("Note: {note}\n"));
    }
    for (k, i) in incidents.iter().take(FULL_INCIDENTS).enumerate() {
        body.push_str(&format!(
            "\n--- {} of {n}: {} ({})\nTarget: {}\nWhat was detected: {}\nDetected at: {}\nExpected damage: {}\nRecommended response: {}\nEvent id: {}\n",
            k + 1,
            i.name,
            i.severity,
            i.target,
            i.detected,
            local_time(i.detected_us, zone),
            i.damage,
            i.response,
            i.event_id,
        ));
    }
    if n > FULL_INCIDENTS {
        body.push_str(&format!("\n--- the other {} events\n", n - FULL_INCIDENTS));
        for i in &incidents[FULL_INCIDENTS..] {
            body.push_str(&format!(
                "{}  {}  {}  {}  {}\n",
                local_time(i.detected_us, zone),
                i.severity,
                i.name,
                i.target,
                i.event_id
            ));
        }
    }
    (subject, body)
}

/// Removes line breaks (mail header injection) and bounds the length.
fn one_line(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > 200 {
        flat.chars().take(197).collect::<String>() + "..."
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use owlet_proto::v1::{Event, Severity as PSeverity, State};
    use owlet_soc_store::StoredEvent;

    fn stored(kind: Kind) -> StoredEvent {
        StoredEvent {
            id: 7,
            tenant: "acme".into(),
            agent: "fw1".into(),
            seq: Some(42),
            kind: "alert".into(),
            time_us: 1_796_000_000_000_000,
            received_us: 0,
            zone: "UTC".into(),
            event: Some(Event {
                seq: 42,
                time: None,
                kind: Some(kind),
            }),
        }
    }

    #[test]
    fn a_check_down_names_target_damage_and_response() {
        let mut a = Alert {
            source: "check".into(),
            subject: "web".into(),
            name: "check_down".into(),
            severity: PSeverity::Critical as i32,
            old_state: State::Up as i32,
            new_state: State::Down as i32,
            message: "connection refused\nX-Injected: yes".into(),
            ..Default::default()
        };
        a.labels
            .insert("target".into(), "https://shop.acme.example/".into());
        let e = stored(Kind::Alert(a));
        let c = Candidate::of(&e).unwrap();
        let i = Incident::of(&c);
        assert!(
            i.target.starts_with("https://shop.acme.example/"),
            "{}",
            i.target
        );
        assert!(i.detected.contains("up -> down"), "{}", i.detected);
        assert!(i.damage.contains("cannot reach"));
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        let (subject, body) = compose("acme", "r", Severity::Critical, &[i], tokyo, None);
        assert!(subject.starts_with("[owlet acme] CRITICAL: check_down on https://shop"));
        assert!(!subject.contains('\n'));
        assert!(body.contains("+09:00 (Asia/Tokyo)"), "{body}");
        assert!(body.contains("Recommended response: confirm"));
        assert!(body.contains("Event id: acme/fw1/42"));
    }
}
