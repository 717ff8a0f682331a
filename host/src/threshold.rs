//! Threshold alerts over host samples: `cpu_high`, `memory_high`,
//! `swap_high`, `disk_full`, `load_high`, `process_count_high` (or `*_low`
//! with `below`) and `interface_down`.
//!
//! Guarantees:
//! * one alert when a condition has held for the threshold's `for` (new
//!   state DEGRADED, or DOWN for an interface), and one when it stops (same
//!   name, new state UP, severity INFO) — see [`crate::hold`];
//! * each subject is judged on its own: a threshold on every mount keeps one
//!   state per mount; a subject that disappears from the samples (a mount
//!   removed) is forgotten without an alert — except a watched interface,
//!   which counts as down while absent;
//! * the alert carries the threshold, the observed value and the top
//!   processes at that moment (see [`crate::evidence`]).

use std::collections::HashMap;
use std::time::Instant;

use owlet_proto::v1::{Alert, HostMetrics, Severity, State};

use crate::config::Threshold;
use crate::evidence::{self, Draft, Rank};
use crate::hold::{Hold, Transition};

/// An alert that is active now, for health.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Active {
    pub name: String,
    pub subject: String,
    pub message: String,
}

/// The state of every configured threshold.
#[derive(Debug, Default)]
pub struct Thresholds {
    rules: Vec<Threshold>,
    /// Keyed by (rule index, subject).
    holds: HashMap<(usize, String), (Hold, String)>,
}

/// One value a rule judges.
struct Observation {
    subject: String,
    value: f64,
    /// For interfaces: the state as the kernel says it.
    shown: String,
}

impl Thresholds {
    pub fn new(rules: Vec<Threshold>) -> Self {
        Self {
            rules,
            holds: HashMap::new(),
        }
    }

    /// Judges one sample; returns the alerts of the transitions it caused.
    pub fn evaluate(&mut self, m: &HostMetrics, now: Instant) -> Vec<Alert> {
        let mut alerts = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (index, rule) in self.rules.iter().enumerate() {
            for obs in observations(rule, m) {
                seen.insert((index, obs.subject.clone()));
                let condition = match (rule.metric.as_str(), rule.above, rule.below) {
                    ("interface_down", ..) => obs.value > 0.0,
                    (_, Some(limit), _) => obs.value > limit,
                    (_, None, Some(limit)) => obs.value < limit,
                    _ => false,
                };
                let entry = self
                    .holds
                    .entry((index, obs.subject.clone()))
                    .or_insert_with(|| (Hold::default(), String::new()));
                let Some(transition) = entry.0.update(condition, now, rule.hold) else {
                    continue;
                };
                let alert = build(rule, &obs, transition, m);
                entry.1 = if transition == Transition::Entered {
                    alert.message.clone()
                } else {
                    String::new()
                };
                alerts.push(alert);
            }
        }
        self.holds.retain(|key, _| seen.contains(key));
        alerts
    }

    /// Alerts active now.
    pub fn active(&self) -> Vec<Active> {
        let mut out: Vec<Active> = self
            .holds
            .iter()
            .filter(|(_, (hold, _))| hold.is_active())
            .map(|((index, subject), (_, message))| Active {
                name: alert_name(&self.rules[*index]),
                subject: subject.clone(),
                message: message.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.subject.cmp(&b.subject));
        out
    }
}

fn observations(rule: &Threshold, m: &HostMetrics) -> Vec<Observation> {
    let one = |value: f64| {
        vec![Observation {
            subject: rule.metric.clone(),
            value,
            shown: String::new(),
        }]
    };
    let percent = |used: u64, total: u64| {
        if total == 0 {
            0.0
        } else {
            used as f64 * 100.0 / total as f64
        }
    };
    match rule.metric.as_str() {
        // The first sample has no CPU figure yet (it needs two readings).
        "cpu_percent" if m.interval_seconds <= 0.0 => Vec::new(),
        "cpu_percent" => one(m.cpu_percent),
        "memory_used_percent" => one(percent(m.memory_used_bytes, m.memory_total_bytes)),
        // No swap: nothing to judge (a host without swap is not "0 % used").
        "swap_used_percent" if m.swap_total_bytes == 0 => Vec::new(),
        "swap_used_percent" => one(percent(m.swap_used_bytes, m.swap_total_bytes)),
        "load1" => one(m.load1),
        "load5" => one(m.load5),
        "load15" => one(m.load15),
        "process_count" => one(f64::from(m.process_count)),
        "disk_used_percent" => m
            .disks
            .iter()
            .filter(|d| {
                rule.mount
                    .as_deref()
                    .is_none_or(|mount| mount == d.mount_point)
            })
            .map(|d| Observation {
                subject: format!("disk_used_percent:{}", d.mount_point),
                value: percent(
                    d.total_bytes.saturating_sub(d.available_bytes),
                    d.total_bytes,
                ),
                shown: d.mount_point.clone(),
            })
            .collect(),
        "interface_down" => {
            let name = rule.interface.clone().unwrap_or_default();
            let state = m
                .networks
                .iter()
                .find(|n| n.interface == name)
                .map_or("absent", |n| n.oper_state.as_str());
            // "unknown" is what loopback and many virtual links report
            // while working.
            let down = !matches!(state, "up" | "unknown");
            vec![Observation {
                subject: format!("interface_down:{name}"),
                value: if down { 1.0 } else { 0.0 },
                shown: state.to_string(),
            }]
        }
        _ => Vec::new(),
    }
}

/// `cpu_percent` above → `cpu_high` and so on.
fn alert_name(rule: &Threshold) -> String {
    let base = match rule.metric.as_str() {
        "interface_down" => return "interface_down".into(),
        "disk_used_percent" if rule.below.is_none() => return "disk_full".into(),
        "cpu_percent" => "cpu",
        "memory_used_percent" => "memory",
        "swap_used_percent" => "swap",
        "disk_used_percent" => "disk_used",
        "load1" | "load5" | "load15" => "load",
        other => other,
    };
    let side = if rule.below.is_some() { "low" } else { "high" };
    format!("{base}_{side}")
}

fn build(rule: &Threshold, obs: &Observation, transition: Transition, m: &HostMetrics) -> Alert {
    let entered = transition == Transition::Entered;
    let mut labels = HashMap::new();
    labels.insert("metric".to_string(), rule.metric.clone());
    labels.insert("observed".to_string(), format!("{:.2}", obs.value));
    labels.insert(
        "for".to_string(),
        humantime::format_duration(rule.hold).to_string(),
    );
    let what = if rule.metric == "interface_down" {
        let name = rule.interface.clone().unwrap_or_default();
        labels.insert("interface".into(), name.clone());
        labels.insert("oper_state".into(), obs.shown.clone());
        if entered {
            format!("interface {name} is {} (not up)", obs.shown)
        } else {
            format!("interface {name} is {} again", obs.shown)
        }
    } else {
        let (word, limit) = match (rule.above, rule.below) {
            (Some(limit), _) => ("above", limit),
            (None, Some(limit)) => ("below", limit),
            _ => ("above", 0.0),
        };
        labels.insert("threshold".into(), format!("{word} {limit}"));
        if !obs.shown.is_empty() {
            labels.insert("mount".into(), obs.shown.clone());
        }
        let subject = if obs.shown.is_empty() {
            rule.metric.clone()
        } else {
            format!("{} on {}", rule.metric, obs.shown)
        };
        if entered {
            format!(
                "{subject} is {:.1}, {word} {limit} for {}",
                obs.value,
                humantime::format_duration(rule.hold)
            )
        } else {
            format!("{subject} is {:.1}, no longer {word} {limit}", obs.value)
        }
    };
    let rank = if matches!(
        rule.metric.as_str(),
        "memory_used_percent" | "swap_used_percent"
    ) {
        Rank::Memory
    } else {
        Rank::Cpu
    };
    let bad = if rule.metric == "interface_down" {
        State::Down
    } else {
        State::Degraded
    };
    let (old_state, new_state, severity) = if entered {
        (State::Up, bad, Severity::from(rule.severity))
    } else {
        (bad, State::Up, Severity::Info)
    };
    evidence::alert(
        Draft {
            name: alert_name(rule),
            subject: obs.subject.clone(),
            severity,
            old_state,
            new_state,
            message: what,
            labels,
        },
        m,
        rank,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use owlet_proto::v1::{DiskUsage, NetworkCounters, ProcessUsage};

    use super::*;
    use crate::config::Severity as Level;

    fn rule(metric: &str, above: Option<f64>, hold: u64) -> Threshold {
        Threshold {
            metric: metric.into(),
            above,
            below: None,
            hold: Duration::from_secs(hold),
            severity: Level::Critical,
            mount: None,
            interface: None,
        }
    }

    fn sample(cpu: f64) -> HostMetrics {
        HostMetrics {
            cpu_percent: cpu,
            interval_seconds: 30.0,
            top_processes: vec![ProcessUsage {
                pid: 4242,
                name: "xmrig".into(),
                comm: "sh".into(),
                exe: "/usr/bin/dash".into(),
                user: "www-data".into(),
                cpu_percent: 197.0,
                command_line: "./xmrig -o pool.example:3333".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn cpu_high_after_the_duration_names_the_miner_and_clears() {
        let mut t = Thresholds::new(vec![rule("cpu_percent", Some(90.0), 300)]);
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert!(t.evaluate(&sample(95.0), t0).is_empty());
        assert!(t.evaluate(&sample(97.0), t0 + s(270)).is_empty());
        let alerts = t.evaluate(&sample(99.0), t0 + s(300));
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!((a.source.as_str(), a.name.as_str()), ("host", "cpu_high"));
        assert_eq!(a.severity, Severity::Critical as i32);
        assert!(
            a.message.contains(
                "top processes: xmrig (exe /usr/bin/dash, comm sh, pid 4242, 197.0 % CPU"
            ),
            "{}",
            a.message
        );
        assert!(
            a.labels["top_processes"]
                .starts_with("xmrig (exe /usr/bin/dash, comm sh, pid 4242, user www-data"),
            "{}",
            a.labels["top_processes"]
        );
        assert_eq!(a.labels["top_process"], "xmrig");
        assert_eq!(a.labels["top_process_exe"], "/usr/bin/dash");
        assert_eq!(a.labels["top_process_comm"], "sh");
        assert_eq!(a.labels["threshold"], "above 90");
        assert_eq!(a.labels["observed"], "99.00");
        assert_eq!(t.active().len(), 1);
        assert!(t.evaluate(&sample(99.0), t0 + s(330)).is_empty());
        let cleared = t.evaluate(&sample(20.0), t0 + s(360));
        assert_eq!(cleared.len(), 1);
        assert_eq!(cleared[0].new_state, State::Up as i32);
        assert_eq!(cleared[0].severity, Severity::Info as i32);
        assert!(t.active().is_empty());
    }

    #[test]
    fn the_first_sample_says_nothing_about_cpu() {
        let mut r = rule("cpu_percent", None, 0);
        r.below = Some(5.0);
        let mut t = Thresholds::new(vec![r]);
        let first = HostMetrics::default();
        assert!(t.evaluate(&first, Instant::now()).is_empty());
        assert_eq!(t.evaluate(&sample(1.0), Instant::now())[0].name, "cpu_low");
    }

    #[test]
    fn every_mount_is_judged_on_its_own() {
        let mut t = Thresholds::new(vec![rule("disk_used_percent", Some(95.0), 0)]);
        let disk = |mount: &str, avail: u64| DiskUsage {
            mount_point: mount.into(),
            total_bytes: 100,
            available_bytes: avail,
            ..Default::default()
        };
        let m = HostMetrics {
            disks: vec![disk("/", 50), disk("/var", 2)],
            ..Default::default()
        };
        let alerts = t.evaluate(&m, Instant::now());
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].name, "disk_full");
        assert_eq!(alerts[0].subject, "disk_used_percent:/var");
        assert_eq!(alerts[0].labels["mount"], "/var");
    }

    #[test]
    fn an_interface_that_goes_down_or_disappears_is_down() {
        let mut r = rule("interface_down", None, 0);
        r.interface = Some("eth1".into());
        let mut t = Thresholds::new(vec![r]);
        let net = |state: &str| HostMetrics {
            networks: vec![NetworkCounters {
                interface: "eth1".into(),
                oper_state: state.into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let t0 = Instant::now();
        assert!(t.evaluate(&net("up"), t0).is_empty());
        let down = t.evaluate(&net("down"), t0);
        assert_eq!(down.len(), 1);
        assert_eq!(down[0].name, "interface_down");
        assert_eq!(down[0].new_state, State::Down as i32);
        assert_eq!(t.evaluate(&net("up"), t0).len(), 1);
        assert_eq!(t.evaluate(&HostMetrics::default(), t0).len(), 1);
    }
}
